"""The reusable benchmark harness: one `Bench` per scenario.

A `Bench` owns a scratch directory and a fresh management database name. It starts `rocketd
serve` (or the bare aiohttp baseline) as child processes on free loopback ports, drives wrk and
pgbench against them, and on close drops the management database and every app database that
this management database created. Servers are stopped with SIGTERM and must exit 0; anything
else is recorded as a failure of the scenario.

    with Bench(BenchConfig()) as bench:
        with bench.rocketd() as server:
            m = bench.wrk(server, "/health", name="rocketd GET /health")
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from bench.loadgen import (
    PgbenchRun,
    ToolMissing,
    WrkRun,
    find_pgbench,
    find_wrk,
    run_pgbench,
    run_wrk,
    tool_version,
)
from bench.processes import HOST, ServerProcess, free_port
from bench.report import Machine, Measurement

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432"
# Pause between a warm-up run and the measured run.
SETTLE_S = 2.0
# Inherited variables that would change what the server under test does.
_STRIPPED_ENV = ("DATABASE_URL", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS")


@dataclass(frozen=True)
class BenchConfig:
    pg_url: str = DEFAULT_PG_URL  # a PostgreSQL server URL without a database name
    duration_s: int = 10  # every measured run
    warmup_s: int = 2  # an unmeasured wrk run before each measured one
    log_level: str = "warning"


@dataclass
class Bench:
    config: BenchConfig
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="rocketd-bench-"))
        self.management_db = f"rocketbench_{os.getpid()}_{secrets.token_hex(3)}"
        self._servers = 0

    # --- databases ---------------------------------------------------------------------------

    def dsn(self, dbname: str) -> str:
        return f"{self.config.pg_url.rstrip('/')}/{dbname}"

    def query(
        self, dbname: str, statement: str, params: tuple[Any, ...] = ()
    ) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(statement.encode(), params)
            return cur.fetchall() if cur.description else []

    def database_exists(self, dbname: str) -> bool:
        return bool(
            self.query("postgres", "select 1 from pg_database where datname = %s", (dbname,))
        )

    def require_no_database(self, dbname: str) -> None:
        """Raise when `dbname` exists: a scenario creates its app's database itself, and one left
        by an interrupted run would be measured as it is."""
        if self.database_exists(dbname):
            raise RuntimeError(
                f"database {dbname} already exists (left over from an interrupted run?); "
                f"drop it first: dropdb -h 127.0.0.1 -U postgres {dbname}"
            )

    def app_databases(self) -> list[str]:
        """The app databases registered in this bench's management database."""
        if not self.database_exists(self.management_db):
            return []
        try:
            rows = self.query(self.management_db, "select db_name from _apps order by name")
        except psycopg.errors.UndefinedTable:  # the server stopped before creating its tables
            return []
        return [str(row[0]) for row in rows]

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname))
            )

    # --- servers -----------------------------------------------------------------------------

    def rocketd(self, *, nice: int = 0, **settings: str | int) -> ServerProcess:
        """A `rocketd serve` process (not started yet: use it as a context manager).

        `settings` are configuration keys in environment form without the prefix, e.g.
        `auth_bcrypt_cost=12` becomes ROCKET_AUTH_BCRYPT_COST=12. `nice` > 0 runs the process
        under `nice -n <nice>` (e.g. a background instance that must yield to the API one).
        """
        return self.rocketd_server(settings, nice=nice)

    def rocketd_server(
        self,
        settings: Mapping[str, str | int],
        *,
        nice: int = 0,
        executable: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        name: str = "rocketd",
    ) -> ServerProcess:
        """`rocketd(...)` with the settings as a mapping, and more: `executable` is another
        installation's `rocketd` (default: the one beside this Python); `extra_env` is set last,
        over everything else (whole variable names, e.g. ROCKET_LOG_LEVEL=info); `name` names the
        process in its log file and in failures."""
        port = free_port()
        env = self._child_env()
        env |= {
            "ROCKET_DATABASE_URL": self.dsn(self.management_db),
            "ROCKET_SERVER_HOST": HOST,
            "ROCKET_SERVER_PORT": str(port),
            # One process, as every published figure was measured; `ab --candidate-env
            # ROCKET_SERVER_WORKERS=2` (or a scenario's settings) asks for more.
            "ROCKET_SERVER_WORKERS": "1",
            "ROCKET_LOG_LEVEL": self.config.log_level,
            "ROCKET_LOG_FORMAT": "json",
            "ROCKET_DATA_DIR": str(self.workdir / "data"),
            "ROCKET_STORAGE_LOCAL_PATH": str(self.workdir / "uploads"),
        }
        env |= {f"ROCKET_{key.upper()}": str(value) for key, value in settings.items()}
        env |= dict(extra_env or {})
        if nice:
            name = f"{name}-nice{nice}"
        argv = [executable or _rocketd_executable(), "serve"]
        return self._server(name, argv, port, env, "/ready", nice=nice)

    def hello(self) -> ServerProcess:
        """The bare aiohttp baseline (bench/hello_server.py)."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.hello_server", "--port", str(port)]
        env = self._child_env() | {"PYTHONPATH": str(REPO_ROOT)}
        return self._server("bare-aiohttp", argv, port, env, "/health")

    def floor(self, dbname: str, jwt_secret: str, mode: str = "plain") -> ServerProcess:
        """The stack's floor (bench/floor_server.py) on the app database `dbname`, verifying
        tokens with the app's `jwt_secret` (passed in its environment, not on the command
        line); `mode` is `plain` or `lean`."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor_server", "--port", str(port)]
        argv += ["--dsn", self.dsn(dbname), "--mode", mode]
        env = self._child_env() | {"PYTHONPATH": str(REPO_ROOT), "FLOOR_JWT_SECRET": jwt_secret}
        return self._server(f"floor-{mode}", argv, port, env, "/health")

    def _server(
        self,
        name: str,
        argv: list[str],
        port: int,
        env: dict[str, str],
        ready_path: str,
        *,
        nice: int = 0,
    ) -> ServerProcess:
        self._servers += 1
        log_path = self.workdir / f"{self._servers:02d}-{name}.log"
        return ServerProcess(
            name,
            argv,
            port=port,
            env=env,
            cwd=self.workdir,
            log_path=log_path,
            ready_path=ready_path,
            nice=nice,
        )

    def _child_env(self) -> dict[str, str]:
        return {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("ROCKET_") and key not in _STRIPPED_ENV
        }

    def stop(self, server: ServerProcess) -> int:
        """SIGTERM the server; a non-zero exit becomes a failure of the scenario."""
        code = server.stop()
        if code != 0:
            self.failures.append(f"{server.name} exited {code} on SIGTERM (log: {server.log_path})")
        return code

    # --- load ----------------------------------------------------------------------------------

    def wrk(
        self,
        server: ServerProcess,
        path: str,
        *,
        name: str,
        connections: int = 32,
        threads: int = 1,
        body: str | None = None,
        duration_s: int | None = None,
    ) -> Measurement:
        """A warm-up run, a pause, then the measured run (`duration_s` or the configured one).

        The pause lets the server finish what the warm-up left in flight (a slow endpoint keeps
        working on requests whose connections wrk already closed). Responses other than 2xx
        count as errors.
        """
        run = WrkRun(url=server.url(path), connections=connections, threads=threads, body=body)
        if self.config.warmup_s > 0:
            run_wrk(_with_duration(run, self.config.warmup_s), name=f"{name} (warm-up)")
            time.sleep(SETTLE_S)
        duration = duration_s or self.config.duration_s
        measurement = run_wrk(_with_duration(run, duration), name=name)
        self._check_errors(measurement)
        return measurement

    def pgbench(
        self,
        dbname: str,
        script: Path,
        *,
        name: str,
        clients: int = 32,
        jobs: int = 2,
        variables: dict[str, str] | None = None,
    ) -> Measurement:
        run = PgbenchRun(
            dsn=self.dsn(dbname),
            script=script,
            clients=clients,
            jobs=jobs,
            duration_s=self.config.duration_s,
            variables=variables or {},
        )
        measurement = run_pgbench(run, name=name)
        self._check_errors(measurement)
        return measurement

    def _check_errors(self, measurement: Measurement) -> None:
        if measurement.errors:
            self.failures.append(f"{measurement.name}: {measurement.errors} errors")

    # --- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the databases this bench created and remove its scratch directory."""
        for dbname in [*self.app_databases(), self.management_db]:
            self.drop_database(dbname)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Bench:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _rocketd_executable() -> str:
    beside = Path(sys.executable).parent / "rocketd"
    if beside.exists():
        return str(beside)
    found = shutil.which("rocketd")
    if found is None:
        raise RuntimeError("rocketd is not installed in this environment (pip install -e .)")
    return found


def _with_duration(run: WrkRun, seconds: int) -> WrkRun:
    return WrkRun(
        url=run.url,
        duration_s=seconds,
        connections=run.connections,
        threads=run.threads,
        timeout_s=run.timeout_s,
        body=run.body,
        headers=run.headers,
    )


def preflight(pg_url: str) -> str | None:
    """What is missing to run anything (a load generator, PostgreSQL), or None."""
    try:
        find_wrk()
        find_pgbench()
        with psycopg.connect(f"{pg_url.rstrip('/')}/postgres", connect_timeout=5):
            pass
    except ToolMissing as exc:
        return str(exc)
    except psycopg.OperationalError as exc:
        return f"PostgreSQL is not reachable at {pg_url}: {exc}"
    return None


# --- machine notes ---------------------------------------------------------------------------


def machine_info(pg_url: str = DEFAULT_PG_URL) -> Machine:
    return Machine(
        date=date.today().isoformat(),
        cores=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        postgres_version=_postgres_version(pg_url),
        rocketd_commit=_git_commit(),
        python_version=platform.python_version(),
        wrk_version=tool_version([find_wrk(), "--version"]),
        pgbench_version=tool_version([find_pgbench(), "--version"]),
        loadavg_at_start=" / ".join(f"{x:.2f}" for x in os.getloadavg()),
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _postgres_version(pg_url: str) -> str:
    with psycopg.connect(f"{pg_url.rstrip('/')}/postgres", autocommit=True) as conn:
        row = conn.execute("select version()").fetchone()
    return str(row[0]).split(" on ")[0] if row else "unknown"


def _git(*args: str) -> str:
    # --no-optional-locks: read only, never refresh the index under someone else's feet.
    proc = subprocess.run(
        ["git", "--no-optional-locks", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return proc.stdout.strip()


def _git_commit() -> str:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} (tracked files modified)" if dirty else commit
