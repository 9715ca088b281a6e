"""The `rocketd` CLI: version, check-config, and `apps` straight against the database."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import rocketd
from tests.support.databases import dsn_for, unique_name
from tests.support.paths import ROOT


def test_version_prints_the_package_version() -> None:
    from rocketd import __version__

    out = rocketd("version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"rocketd {__version__}"


def test_check_config_accepts_the_shipped_file_and_reports_embedded(tmp_path: Path) -> None:
    out = rocketd("check-config", "--config", str(ROOT / "etc" / "rocket.yaml"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("config OK:")
    assert "embedded PostgreSQL" in out.stdout
    assert "background_work=on" in out.stdout
    out = rocketd("check-config", env={"ROCKET_BACKGROUND_WORK": "false"})
    assert out.returncode == 0, out.stderr
    assert "background_work=off" in out.stdout


def test_check_config_names_the_bad_key_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server:\n  port: abc\n")
    out = rocketd("check-config", "--config", str(cfg))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "server.port" in lines[0]
    cfg.write_text("servr:\n  port: 1\n")
    out = rocketd("check-config", "--strict", "--config", str(cfg))
    assert out.returncode == 1 and "servr" in out.stderr
    out = rocketd("check-config", env={"ROCKET_SERVER_PORT": "99999"})
    assert out.returncode == 1 and "ROCKET_SERVER_PORT" in out.stderr


def test_unknown_settings_warn_and_fail_check_config_strict(tmp_path: Path) -> None:
    cfg = tmp_path / "rocket.yaml"
    cfg.write_text("server:\n  prot: 8081\n")
    env = {"ROCKET_DATABSE_URL": "postgresql://x/y", "ROCKET_LOG_FORMAT": "json"}
    out = rocketd("check-config", "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stderr
    assert "server.prot: unknown key, did you mean server.port?" in out.stdout
    assert "ROCKET_DATABSE_URL: unknown variable, did you mean ROCKET_DATABASE_URL?" in out.stdout
    out = rocketd("check-config", "--strict", "--config", str(cfg), env=env)
    assert out.returncode == 1
    assert out.stderr.startswith("rocketd: configuration error: server.prot: unknown key")
    assert "did you mean ROCKET_DATABASE_URL?" in out.stderr
    cfg.write_text("server:\n  port: 8081\n")
    out = rocketd("check-config", "--strict", "--config", str(cfg))
    assert out.returncode == 0, out.stderr


def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    out = rocketd("serve", env={"ROCKET_LOG_FORMAT": "fancy"})
    assert out.returncode == 1
    assert "log.format" in out.stderr


def test_apps_create_list_delete_against_the_database(pg_dsn: str, management_db: str) -> None:
    env = {
        "ROCKET_DATABASE_URL": dsn_for(pg_dsn, management_db),
        "ROCKET_AUTH_BCRYPT_COST": "4",
        "ROCKET_LOG_LEVEL": "error",
    }
    name = unique_name("cli")
    out = rocketd("apps", "create", name, "--display-name", "From CLI", env=env)
    assert out.returncode == 0, out.stderr
    assert f"created app {name}" in out.stdout
    out = rocketd("apps", "list", env=env)
    assert out.returncode == 0
    assert name in out.stdout and "From CLI" in out.stdout and "active" in out.stdout
    out = rocketd("apps", "create", name, env=env)
    assert out.returncode == 1 and "already exists" in out.stderr
    out = rocketd("apps", "create", "Bad-Name", env=env)
    assert out.returncode == 1 and "lowercase" in out.stderr
    out = rocketd("apps", "delete", name, env=env, stdin="")
    assert out.returncode == 2  # no --yes and no terminal to ask on: refuse
    out = rocketd("apps", "delete", name, "--yes", env=env)
    assert out.returncode == 0, out.stderr
    out = rocketd("apps", "list", env=env)
    assert name not in out.stdout
    out = rocketd("apps", "delete", "nosuchapp", "--yes", env=env)
    assert out.returncode == 1 and "not found" in out.stderr.lower()
