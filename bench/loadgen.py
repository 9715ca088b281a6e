"""The two load generators, wrk (HTTP) and pgbench (SQL): finding them, running them, parsing them.

The parsers are plain functions over the tools' text output, so they can be checked on a saved
sample without running anything.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Measurement

BENCH_DIR = Path(__file__).resolve().parent
POST_JSON_LUA = BENCH_DIR / "wrk" / "post_json.lua"
SQL_DIR = BENCH_DIR / "sql"

WRK_INSTALL_HINT = "wrk is not installed: `apt-get update && apt-get install -y wrk` (Debian)"
PGBENCH_INSTALL_HINT = (
    "pgbench is not installed: it ships with the PostgreSQL server package on Debian "
    "(`apt-get install -y postgresql-15`, binary in /usr/lib/postgresql/15/bin/pgbench)"
)

# Grace added to the run time before a load generator is considered hung.
_TOOL_GRACE_S = 60.0


class ToolMissing(RuntimeError):
    """A load generator is not installed; the message says how to install it."""


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise ToolMissing(WRK_INSTALL_HINT)
    return path


def find_pgbench() -> str:
    path = shutil.which("pgbench")
    if path is not None:
        return path
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), key=_pg_major)
    if not candidates:
        raise ToolMissing(PGBENCH_INSTALL_HINT)
    return candidates[-1]


def _pg_major(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", path)
    return int(match.group(1)) if match else 0


def tool_version(argv: list[str]) -> str:
    """First line of `argv` (e.g. `wrk --version`), whatever stream and exit code it uses."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0] if text else "unknown"


# --- wrk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkRun:
    """One wrk invocation. `body` set means POST with that JSON body (via post_json.lua)."""

    url: str
    duration_s: int = 10
    connections: int = 32
    threads: int = 1
    timeout_s: int = 10
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def argv(self, wrk: str) -> list[str]:
        argv = [
            wrk,
            f"--threads={self.threads}",
            f"--connections={self.connections}",
            f"--duration={self.duration_s}s",
            f"--timeout={self.timeout_s}s",
            "--latency",
        ]
        for name, value in self.headers.items():
            argv += ["--header", f"{name}: {value}"]
        if self.body is not None:
            argv += ["--script", str(POST_JSON_LUA)]
        return [*argv, self.url]

    def params(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "threads": self.threads,
            "duration_s": self.duration_s,
            "method": "GET" if self.body is None else "POST",
        }


def run_wrk(run: WrkRun, name: str) -> Measurement:
    env = dict(os.environ)
    if run.body is not None:
        env["BENCH_BODY"] = run.body
    proc = subprocess.run(
        run.argv(find_wrk()),
        capture_output=True,
        text=True,
        env=env,
        timeout=run.duration_s + _TOOL_GRACE_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout, name=name, params=run.params())


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise ValueError(f"wrk/pgbench output has no {pattern!r}:\n{text}")
    return match


def parse_wrk(output: str, *, name: str, params: dict[str, object]) -> Measurement:
    """Requests/s, latency average and p50/p99 (needs `--latency`), error counts."""
    percentiles = {
        int(pct): _duration_ms(value)
        for pct, value in re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    socket_errors = re.search(r"^\s*Socket errors: (.*)$", output, re.MULTILINE)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Measurement(
        name=name,
        tool="wrk",
        rate=float(_search(r"^Requests/sec:\s+([\d.]+)", output).group(1)),
        unit="req/s",
        requests=int(_search(r"^\s+(\d+) requests in", output).group(1)),
        avg_ms=_duration_ms(_search(r"^\s+Latency\s+(\S+)", output).group(1)),
        p50_ms=percentiles.get(50),
        p99_ms=percentiles.get(99),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
        params=params,
    )


# --- pgbench ---------------------------------------------------------------------------------
#
# Only tps and the average latency are taken from pgbench. Its per-transaction log (`-l`) is too
# coarse for percentiles when a thread drives several clients (it reuses clock readings): in a
# 32-client, 2-thread `select 1` run over half of the transactions were logged at 0 µs. The
# average pgbench prints for a plain `-T` run is clients x duration / transactions (Little's law).


@dataclass(frozen=True)
class PgbenchRun:
    """One pgbench invocation: `-n -f script -M prepared -c N -j J -T seconds` on `dsn`."""

    dsn: str
    script: Path
    clients: int = 32
    jobs: int = 2
    duration_s: int = 10
    variables: dict[str, str] = field(default_factory=dict)

    def argv(self, pgbench: str) -> list[str]:
        argv = [pgbench, "-n", "-f", str(self.script), "-M", "prepared"]
        argv += ["-c", str(self.clients), "-j", str(self.jobs), "-T", str(self.duration_s)]
        for key, value in self.variables.items():
            argv += ["-D", f"{key}={value}"]
        return [*argv, self.dsn]

    def params(self) -> dict[str, object]:
        return {
            "connections": self.clients,
            "threads": self.jobs,
            "duration_s": self.duration_s,
            "script": self.script.name,
        }


def run_pgbench(run: PgbenchRun, name: str) -> Measurement:
    proc = subprocess.run(
        run.argv(find_pgbench()),
        capture_output=True,
        text=True,
        timeout=run.duration_s + _TOOL_GRACE_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return parse_pgbench(proc.stdout, name=name, params=run.params())


def parse_pgbench(output: str, *, name: str, params: dict[str, object]) -> Measurement:
    """tps without the initial connection time, average latency, failed transactions."""
    failed = re.search(r"^number of failed transactions: (\d+)", output, re.MULTILINE)
    processed = _search(r"^number of transactions actually processed: (\d+)", output)
    return Measurement(
        name=name,
        tool="pgbench",
        rate=float(_search(r"^tps = ([\d.]+) \(without initial", output).group(1)),
        unit="tps",
        requests=int(processed.group(1)),
        avg_ms=float(_search(r"^latency average = ([\d.]+) ms", output).group(1)),
        p50_ms=None,
        p99_ms=None,
        errors=int(failed.group(1)) if failed else 0,
        params=params,
    )
