"""A PostgreSQL primary and a real streaming replica of it, made for the test session.

The shared test server does not allow replication connections, so the harness makes its own
pair with the Debian PostgreSQL 15 binaries (`/usr/lib/postgresql/15/bin`, or whatever
`find_postgres_bindir` finds): `initdb` a primary (its default pg_hba.conf trusts local
replication), start it on a free port, `pg_basebackup -R -X stream` a copy, start that as a hot
standby on a second port. Both listen on 127.0.0.1 only, `trust` auth, fsync off. As root they
run as the `postgres` user (PostgreSQL refuses root). `pg_ctl` detaches them: should the test
process be killed before it stops them, the next session's sweep does (tests/support/orphans.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rocketd.db.embedded import find_postgres_bindir
from tests.support.orphans import owned_tempdir
from tests.support.processes import free_port

DEBIAN_BINDIR = Path("/usr/lib/postgresql/15/bin")


def _bindir() -> Path:
    return DEBIAN_BINDIR if (DEBIAN_BINDIR / "pg_basebackup").exists() else find_postgres_bindir()


def _run(bindir: Path, *args: str, timeout: float = 120) -> None:
    account: dict[str, Any] = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.run(
        [str(bindir / args[0]), *args[1:]],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **account,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {proc.stdout}\n{proc.stderr}")


def _start(bindir: Path, data: Path, port: int, log: Path) -> None:
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}"
    options += " -c fsync=off -c full_page_writes=off"
    _run(bindir, "pg_ctl", "start", "-w", "-D", str(data), "-l", str(log), "-o", options)


@contextmanager
def primary_with_replica() -> Iterator[tuple[str, str]]:
    """Yield (primary DSN, replica DSN), both superuser `postgres`, database `postgres`."""
    bindir = _bindir()
    base = owned_tempdir("replica", 0o777)  # written by the postgres user under root
    primary, replica = base / "primary", base / "replica"
    primary_port, replica_port = free_port(), free_port()
    started: list[Path] = []
    try:
        _run(bindir, "initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "--no-sync")
        _start(bindir, primary, primary_port, base / "primary.log")
        started.append(primary)
        _run(
            bindir,
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary_port),
            "-U",
            "postgres",
            "-D",
            str(replica),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        )
        _start(bindir, replica, replica_port, base / "replica.log")
        started.append(replica)
        yield (
            f"postgresql://postgres@127.0.0.1:{primary_port}/postgres",
            f"postgresql://postgres@127.0.0.1:{replica_port}/postgres",
        )
    finally:
        for data in reversed(started):
            try:
                _run(bindir, "pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(data))
            except RuntimeError:
                pass
        shutil.rmtree(base, ignore_errors=True)
