"""A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the tests' PostgreSQL.

Installed with apt when missing (as root; skipped when `pgbouncer` is on the PATH already) and
started once per session by the `pgbouncer_dsn` fixture. Every database of the server is
reachable through it (`* =`), so app databases created during a test are too. Clients are
trusted (it listens on 127.0.0.1 only); towards PostgreSQL it logs in as the server DSN's user,
with its password when it has one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.support.orphans import die_with_test_process, owned_tempdir
from tests.support.processes import free_port

UNPRIVILEGED = "nobody"  # PgBouncer refuses to run as root


def ensure_installed() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("pgbouncer is not installed: `sudo apt-get install pgbouncer`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "pgbouncer"], check=True, env=env)
    return "/usr/sbin/pgbouncer"


def _config(server_dsn: str, port: int, workdir: Path) -> str:
    server = urlsplit(server_dsn)
    login = f"host={server.hostname or '127.0.0.1'} port={server.port or 5432}"
    login += f" user={server.username or 'postgres'}"
    if server.password:
        login += f" password={server.password}"
    return f"""[databases]
* = {login}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "userlist.txt"}
pool_mode = transaction
admin_users = postgres
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = {workdir / "pgbouncer.log"}
pidfile = {workdir / "pgbouncer.pid"}
"""


@contextmanager
def running_pgbouncer(server_dsn: str) -> Iterator[str]:
    """Start PgBouncer in front of `server_dsn`; yield its DSN (database `postgres`)."""
    binary = ensure_installed()
    workdir = owned_tempdir("pgbouncer", 0o777)  # its log and pid file are written as `nobody`
    port = free_port()
    (workdir / "userlist.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(_config(server_dsn, port, workdir))
    for name in ("userlist.txt", "pgbouncer.ini"):
        (workdir / name).chmod(0o644)
    # Started as the unprivileged user rather than with `-u`: PgBouncer's own switch of user
    # would clear the signal it gets when the test process dies.
    account: dict[str, Any] = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam(UNPRIVILEGED)
        account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    proc = subprocess.Popen(
        [binary, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_test_process(),
        **account,
    )
    server = urlsplit(server_dsn)
    user = server.username or "postgres"
    dsn = urlunsplit(server._replace(netloc=f"{user}@127.0.0.1:{port}", path="/postgres"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("select 1")
                break
            except psycopg.Error:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "pgbouncer.log"
                    raise RuntimeError(
                        f"pgbouncer did not start: {log.read_text() if log.exists() else ''}"
                    ) from None
                time.sleep(0.1)
        yield dsn
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
