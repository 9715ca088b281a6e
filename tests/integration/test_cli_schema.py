"""`rocketd export APP`, `rocketd import APP FILE` and `rocketd diff APP FILE` straight against the
database."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import rocketd
from tests.support.databases import dsn_for, unique_name
from tests.support.paths import ROOT


def cli_env(pg_dsn: str, management_db: str) -> dict[str, str]:
    return {
        "ROCKET_DATABASE_URL": dsn_for(pg_dsn, management_db),
        "ROCKET_AUTH_BCRYPT_COST": "4",
        "ROCKET_LOG_LEVEL": "error",
    }


def test_import_then_export_round_trip(pg_dsn: str, management_db: str, tmp_path: Path) -> None:
    env = cli_env(pg_dsn, management_db)
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


def test_diff_prints_what_an_import_would_change(
    pg_dsn: str, management_db: str, tmp_path: Path
) -> None:
    env = cli_env(pg_dsn, management_db)
    name = unique_name("cli")
    assert rocketd("apps", "create", name, env=env).returncode == 0
    example = ROOT / "examples" / "invoicing.json"
    out = rocketd("diff", name, str(example), env=env)
    assert out.returncode == 0, out.stderr
    diff = json.loads(out.stdout)
    assert diff["summary"]["added"] == 7 and diff["summary"]["import"]["create"] == 7
    assert [e["key"] for e in diff["entities"]["added"]] == ["customer", "invoice", "item", "tag"]

    assert rocketd("import", name, str(example), env=env).returncode == 0
    document = json.loads(example.read_text())
    document["entities"][0]["fields"][1]["type"] = "text"  # customer.name
    out = rocketd("diff", name, "-", env=env, stdin=json.dumps(document))
    assert out.returncode == 0, out.stderr
    (changed,) = json.loads(out.stdout)["entities"]["changed"]
    assert changed["changes"] == [{"path": "fields[name].type", "old": "string", "new": "text"}]

    out = rocketd("diff", name, "-", env=env, stdin='{"version": 1, "entities": [7]}')
    assert out.returncode == 1 and "Import would reject the document" in out.stderr
    assert "entities[0]: must be an object" in out.stderr
    out = rocketd("diff", name, str(tmp_path / "missing.json"), env=env)
    assert out.returncode == 1 and "cannot read" in out.stderr
    assert rocketd("apps", "delete", name, "--yes", env=env).returncode == 0
