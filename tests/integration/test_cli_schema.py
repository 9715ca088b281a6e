"""`rocketd export APP` and `rocketd import APP FILE` straight against the database."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import rocketd
from tests.support.databases import dsn_for, unique_name
from tests.support.paths import ROOT


def test_import_then_export_round_trip(pg_dsn: str, management_db: str, tmp_path: Path) -> None:
    env = {
        "ROCKET_DATABASE_URL": dsn_for(pg_dsn, management_db),
        "ROCKET_AUTH_BCRYPT_COST": "4",
        "ROCKET_LOG_LEVEL": "error",
    }
    name = unique_name("cli")
    assert rocketd("apps", "create", name, env=env).returncode == 0

    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    out = rocketd("import", name, str(bad), env=env)
    assert out.returncode == 1 and "cannot read" in out.stderr

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"version": 1, "relations": [
        {"name": "r", "type": "one_to_many", "source": "a", "target": "b",
         "source_key": "id", "target_key": "a_id"}]}))  # fmt: skip
    out = rocketd("import", name, str(broken), env=env)
    assert out.returncode == 1 and "Import rejected" in out.stderr
    assert "source entity not found: a" in out.stderr

    example = ROOT / "examples" / "helpdesk.json"
    out = rocketd("import", name, str(example), env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["summary"]["entities"] == 4 and report["summary"]["records"] == 9

    out = rocketd("export", name, env=env)
    assert out.returncode == 0, out.stderr
    exported = json.loads(out.stdout)
    assert [e["name"] for e in exported["entities"]] == ["agent", "label", "reply", "ticket"]
    assert len(exported["ui_configs"]) == 3

    out = rocketd("export", "no-such-app", env=env)
    assert out.returncode == 1
    assert rocketd("apps", "delete", name, "--yes", env=env).returncode == 0
