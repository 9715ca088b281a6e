"""Machine instructions per request, counted by valgrind's callgrind: a measure that does not
move with the other tenants of a shared machine, for telling apart what a change costs and what
the machine's noise is.

Each mode (instrumentation `off`, or on at a sampling rate: `0`, `0.1`, `1`) gets its own
server process under `valgrind --tool=callgrind`: a `Runtime` behind aiohttp's test server with
the data-api set's `order` entity (the set-up of `bench.events_profile`), serving `get`,
`create`, `nested` (an order with 5 lines), `update` or `list` requests that another process
sends (not under valgrind: callgrind does not follow children). After each batch the load
process calls a mark route whose handler calls `os.getppid()`, and callgrind is started with
`--dump-before=getppid`: it writes the counts since the last mark to a file of their own. So
each batch's count covers exactly its requests (and the idle event loop between them, the same
for every mode), and the server's start and set-up stay out of every batch.

What the counts leave out: time. A cache miss costs one instruction here and a hundred cycles on
the machine, so a ratio of instructions is not a ratio of throughput (`python -m bench ab`
measures that); it tells what work a mode adds, exactly enough to see a few hundred instructions
per request move. Under callgrind the server runs about 50 times slower, so the EventFlusher's
interval is stretched by `--flush-scale` (default 50): it writes as many rows per flush as at
full speed, and its per-flush costs are not multiplied.

    .venv/bin/python -m bench.instructions [--requests 400] [--batches 3]
        [--modes off,0,0.1,1] [--jobs 2] [get create]

Needs valgrind (Debian's package) and the PostgreSQL of `--pg-url`; writes the callgrind files
to `--out` (default a temporary directory, removed afterwards) for `callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg import sql

from bench.events_profile import MARK_PATH, _load, set_up, settings_for
from bench.processes import exit_on_sigterm
from bench.versions import VersionError
from bench.versions import _git as git
from rocketd.http.app import create_app
from rocketd.logging import configure_logging
from rocketd.runtime import Runtime

MODES = ("off", "0", "0.1", "1")
OPS = ("get", "create", "nested", "list", "update")
# the libc function the mark route calls: callgrind dumps its counts before each call
MARK_FUNCTION = "getppid"
NATIVE_FLUSH_MS = 100
_SUMMARY = re.compile(r"^summary:\s+(\d+)\s*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one server process does (the `--serve` child reads it as JSON)."""

    mode: str
    op: str
    requests: int
    batches: int
    flush_ms: int
    dsn: str

    @property
    def stem(self) -> str:
        """The name of its callgrind files (no dot of its own: `<stem>.<pid>.<dump>`)."""
        return f"{self.op}-{self.mode.replace('.', '_')}"


def batch_counts(out_dir: Path, stem: str) -> list[int]:
    """The instruction count of each dump `<stem>.<pid>.<n>` in `out_dir`, in dump order: the
    first is the start, the set-up and the warm-up batch; then one per measured batch. (The
    final file, without a part number, is what ran after the last mark: the shutdown.)"""
    parts: list[tuple[int, int]] = []
    name = re.compile(rf"{re.escape(stem)}\.\d+\.(\d+)")
    for path in out_dir.iterdir():
        number = name.fullmatch(path.name)
        if number is None:
            continue
        found = _SUMMARY.search(path.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"no summary line in {path}")
        parts.append((int(number.group(1)), int(found.group(1))))
    return [count for _, count in sorted(parts)]


def per_request(counts: Sequence[int], requests: int) -> list[float]:
    """Instructions per request of each measured batch (the first dump is not one)."""
    if len(counts) < 2:
        raise RuntimeError(f"expected a dump per batch after the first, got {len(counts)}")
    return [count / requests for count in counts[1:]]


# --- the server process (under callgrind) -------------------------------------------------


async def serve(plan: Plan) -> None:
    dbname = f"rocketd_instr_{secrets.token_hex(4)}"
    base = plan.dsn.rsplit("/", 1)[0]
    with psycopg.connect(plan.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    data_dir = tempfile.mkdtemp(prefix="rocketd-instr-")
    enabled = plan.mode != "off"
    settings = settings_for(
        f"{base}/{dbname}", data_dir, enabled, sampling_rate=float(plan.mode) if enabled else 1.0
    )
    settings = dataclasses.replace(
        settings,
        instrumentation=dataclasses.replace(
            settings.instrumentation, flush_interval_ms=plan.flush_ms
        ),
    )
    runtime = Runtime(settings)
    await runtime.start(http=False)
    assert runtime.services is not None

    async def mark(request: web.Request) -> web.Response:
        os.getppid()  # callgrind dumps here (--dump-before=getppid)
        return web.json_response({})

    web_app = create_app(runtime.services)
    web_app.router.add_get(MARK_PATH, mark)
    client: TestClient[Any, Any] = TestClient(TestServer(web_app))
    await client.start_server()
    apps: list[str] = []
    try:
        fixture = await set_up(client, lines=plan.op == "nested")
        apps.append(f"rocket_{fixture.app}")
        url = str(client.make_url("/"))
        # a warm-up batch (pools, caches, specialised bytecode), then the measured ones; the
        # requests carry no X-Trace-ID: the server samples its own ids, as in production
        await _load(url, fixture, plan.op, plan.requests, [None] * (plan.batches + 1))
    finally:
        await client.close()
        await runtime.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        with psycopg.connect(plan.dsn, autocommit=True) as admin:
            for name in [*apps, dbname]:
                admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )


# --- the driver ----------------------------------------------------------------------------


def run_mode(plan: Plan, out_dir: Path, log_dir: Path) -> list[float]:
    """One server under callgrind for `plan`; instructions per request of each batch."""
    stem = plan.stem
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--dump-before={MARK_FUNCTION}",
        f"--callgrind-out-file={out_dir / stem}.%p",
        sys.executable,
        "-m",
        "bench.instructions",
        "--serve",
        json.dumps(dataclasses.asdict(plan)),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    with (log_dir / f"{stem}.log").open("wb") as log:
        done = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{stem}: the server under callgrind failed; see {log_dir}/{stem}.log")
    return per_request(batch_counts(out_dir, stem), plan.requests)


def main() -> int:
    exit_on_sigterm()
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        configure_logging(level="warning")
        uvloop.run(serve(Plan(**json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", help=f"{', '.join(OPS)} (default: get create)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=400, help="requests per batch")
    parser.add_argument("--batches", type=int, default=3, help="measured batches per mode")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--flush-scale", type=float, default=50.0)
    parser.add_argument("--jobs", type=int, default=2, help="servers under callgrind at once")
    parser.add_argument("--out", default="", help="keep the callgrind files here")
    parser.add_argument(
        "--results-dir",
        default="",
        help="also write the table to instructions-[TAG-]<date>.md there (bench/results)",
    )
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    ops = args.ops or ["get", "create"]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(ops) <= set(OPS):
        parser.error(f"operations: {', '.join(OPS)}")
    for mode in modes:
        if mode != "off" and not 0.0 <= _rate(mode) <= 1.0:
            parser.error(f"a mode is off or a sampling rate in [0, 1], got {mode}")
    if shutil.which("valgrind") is None:
        print("valgrind is not on the PATH (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    flush_ms = round(NATIVE_FLUSH_MS * args.flush_scale)
    plans = [
        Plan(mode, op, args.requests, args.batches, flush_ms, args.pg_url)
        for op in ops
        for mode in modes
    ]
    keep = Path(args.out) if args.out else None
    with tempfile.TemporaryDirectory(prefix="rocketd-callgrind-") as scratch:
        out_dir = keep or Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda p: run_mode(p, out_dir, out_dir), plans))
    table = report(plans, results, args.requests)
    print(table)
    if args.results_dir:
        path = write_results(Path(args.results_dir), args.tag, table, sys.argv[1:])
        print(f"\nwritten to {path}")
    return 0


def write_results(directory: Path, tag: str, table: str, argv: Sequence[str]) -> Path:
    """The table as `instructions-[tag-]<date>.md` in `directory`, with the command and the
    commit it measured (and whether `rocketd/` had changes not committed)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = git(repo, "rev-parse", "--short", "HEAD")
        modified = bool(git(repo, "status", "--porcelain", "--untracked-files=no", "--", "rocketd"))
    except VersionError:  # not a git checkout: the file says so
        commit, modified = "unknown", False
    stamp = time.strftime("%Y-%m-%d")
    path = directory / f"instructions-{tag + '-' if tag else ''}{stamp}.md"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# Instructions per request under callgrind ({stamp})\n\n"
        f"- commit: `{commit}`{' with changes to rocketd/ not committed' if modified else ''}\n"
        f"- command: `python -m bench.instructions {' '.join(argv)}`\n"
        f"- load average at the end: {os.getloadavg()[0]:.2f} (other work slows batching, so\n"
        "  counts from a busy machine spread more between batches)\n\n"
        f"{table}\n"
    )
    return path


def _rate(mode: str) -> float:
    try:
        return float(mode)
    except ValueError:
        return -1.0


def report(plans: Sequence[Plan], results: Sequence[Sequence[float]], requests: int) -> str:
    """A markdown table: per op and mode, the median instructions per request, each batch's,
    and the ratio to the first mode of that op."""
    lines = [
        f"Instructions per request (callgrind), median of the batches of {requests} requests",
        "",
        "| op | mode | per request | batches | vs first mode |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    first: dict[str, float] = {}
    for plan, counts in zip(plans, results, strict=True):
        median = statistics.median(counts)
        base = first.setdefault(plan.op, median)
        batches = ", ".join(f"{c:,.0f}" for c in counts)
        lines.append(
            f"| {plan.op} | {plan.mode} | {median:,.0f} | {batches} | {median / base:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
