"""`rocketd backup` / `restore` with no database configured: each command starts the embedded
PostgreSQL in `data_dir` for itself, and uses the pg_dump/pg_restore of that server's version."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import rocketd

pytestmark = pytest.mark.e2e


def test_backup_and_restore_with_the_embedded_database(data_dir: Path) -> None:
    env = {
        "ROCKET_DATA_DIR": str(data_dir),
        "ROCKET_STORAGE_LOCAL_PATH": str(data_dir / "uploads"),
        "ROCKET_AUTH_BCRYPT_COST": "4",
        "ROCKET_LOG_LEVEL": "error",
    }
    archive = data_dir / "shop.tar"
    steps = [
        ("apps", "create", "shop"),
        ("backup", "shop", "--output", str(archive)),
        ("apps", "delete", "shop", "--yes"),
        ("restore", str(archive)),
    ]
    for step in steps:
        out = rocketd(*step, env=env)
        assert out.returncode == 0, (step, out.stderr)
    out = rocketd("apps", "list", env=env)
    assert out.stdout.split("\t")[:2] == ["shop", "active"], out.stdout
    with tarfile.open(archive) as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        manifest = json.loads(handle.read())
    server = manifest["postgres_server_version"].split(".")[0]
    assert manifest["pg_dump_version"].split(".")[0] == server
