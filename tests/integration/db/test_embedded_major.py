"""A data directory whose cluster another PostgreSQL major made: `rocketd serve` says so in one
line pointing at the upgrade path, exits 1, and changes nothing (no traceback, no initdb)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.support.cli import rocketd


def test_serve_refuses_a_cluster_of_another_major_with_one_clear_line() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="rocketd-major-"))
    try:
        cluster = data_dir / "postgres"
        cluster.mkdir(mode=0o700)
        (cluster / "PG_VERSION").write_text("9.6\n")
        out = rocketd("serve", env={"ROCKET_DATA_DIR": str(data_dir), "ROCKET_LOG_LEVEL": "error"})
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(
            "rocketd: cannot start: the embedded cluster was created by PostgreSQL 9.6"
        )
        assert "Upgrading the embedded PostgreSQL" in lines[0]
        assert "Traceback" not in out.stderr
        assert sorted(p.name for p in cluster.iterdir()) == ["PG_VERSION"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
