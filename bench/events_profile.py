"""What tracing costs rocketd's own process on the real path: the data-api set's `order` entity
served by a `Runtime` in this process behind aiohttp's test server (a loopback socket), `get` and
`create` requests sent by another process (aiohttp, 16 connections), with
`instrumentation.enabled` false and true in alternating rounds (each round a fresh runtime on
the same app, like `python -m bench ab`), uvloop as `rocketd serve` runs.

For each round it reports the CPU time of this process per request (`time.process_time`: the
server and, when on, the EventFlusher writing the rows, which it is given time to finish inside
the measured window), and the CPU the app database's PostgreSQL backends spent
(`/proc/<pid>/stat` of each backend, so it must run as the PostgreSQL user or root on the same
machine). The difference between the modes is what tracing costs.

`--py-spy DIR` samples the last round of each mode with py-spy (`pip install py-spy`; it must be
allowed to ptrace this process) and prints the functions that cost the most µs per request more
with tracing on, by own samples and by samples anywhere on the stack (raw stacks in
DIR/<op>-<mode>.txt).

    .venv/bin/python -m bench.events_profile [--requests 3000] [--rounds 3] [get create]

A microbenchmark of CPU per request, not a throughput measure (`python -m bench ab` is).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg import sql

from bench.processes import exit_on_sigterm
from bench.profile import sample_counts
from bench.scenarios.data_api import (
    CREATE_FIELDS,
    LINE_ENTITY,
    NESTED_LINES,
    ORDER_ENTITY,
    ORDER_LINES,
    UPDATE_BODY,
)
from rocketd.config import (
    AuthSettings,
    DatabaseSettings,
    InstrumentationSettings,
    LogSettings,
    ServerSettings,
    Settings,
)
from rocketd.http.app import create_app
from rocketd.logging import configure_logging
from rocketd.runtime import Runtime

CONCURRENCY = 16
SEED = 500
FLUSH_GRACE_S = 0.5  # the flusher's interval is 100 ms: every row is written by then
PY_SPY_RATE = 400
MARK_PATH = "/_bench/mark"
# X-Trace-ID heads: sampled at any rate above 0, and only at rate 1 (tracer.sampled)
TRACED_HEAD = "00000000"
# `list` (bench.instructions): the data-api set's list shape (a filter, a sort, a page of 25 and
# the total) on this set-up's seed, whose rows are all drafts: every one of them matches.
LIST_QUERY = "filter[status]=draft&sort=-created_at&per_page=25"
UNTRACED_HEAD = "ffffffff"


@dataclasses.dataclass
class Fixture:
    app: str
    token: str
    ids: list[str]


def settings_for(dsn: str, data_dir: str, traced: bool, sampling_rate: float = 1.0) -> Settings:
    return Settings(
        server=ServerSettings(host="127.0.0.1", port=0),
        database=DatabaseSettings(url=dsn),
        auth=AuthSettings(bcrypt_cost=4, access_token_ttl=3600),
        log=LogSettings(level="warning"),
        instrumentation=InstrumentationSettings(enabled=traced, sampling_rate=sampling_rate),
        data_dir=data_dir,
    )


async def _json(client: TestClient[Any, Any], method: str, path: str, **kw: Any) -> Any:
    resp = await client.request(method, path, **kw)
    body = await resp.json()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {body}")
    return body["data"]


async def set_up(client: TestClient[Any, Any], *, lines: bool = False) -> Fixture:
    """An app with the data-api set's `order` entity and its seed; with `lines`, also its
    `line` entity and the `order_lines` relation (nested creates)."""
    login = {"email": "platform@localhost", "password": "changeme"}
    platform = await _json(client, "POST", "/api/_platform/auth/login", json=login)
    name = f"evbench{secrets.token_hex(3)}"
    await _json(
        client,
        "POST",
        "/api/_platform/apps",
        json={"name": name},
        headers={"Authorization": f"Bearer {platform['access_token']}"},
    )
    admin = {"email": "admin@localhost", "password": "changeme"}
    token = (await _json(client, "POST", f"/api/{name}/auth/login", json=admin))["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    await _json(client, "POST", f"/api/{name}/_admin/entities", json=ORDER_ENTITY, headers=auth)
    if lines:
        await _json(client, "POST", f"/api/{name}/_admin/entities", json=LINE_ENTITY, headers=auth)
        await _json(client, "POST", f"/api/{name}/_admin/relations", json=ORDER_LINES, headers=auth)
    ids = []
    for number in range(SEED):
        body = {**CREATE_FIELDS, "number": f"seed-{number}"}
        ids.append(
            (await _json(client, "POST", f"/api/{name}/order", json=body, headers=auth))["id"]
        )
    return Fixture(name, token, ids)


async def _drive(
    session: aiohttp.ClientSession,
    fixture: Fixture,
    op: str,
    requests: int,
    tag: str,
    trace_head: str | None = None,
) -> None:
    """`requests` requests of `op` on CONCURRENCY connections (run in the load process); with
    `trace_head`, each carries an `X-Trace-ID` starting with it (which decides sampling)."""
    auth = {"Authorization": f"Bearer {fixture.token}"}
    path = f"/api/{fixture.app}/order"
    counter = iter(range(requests))

    async def worker() -> None:
        headers = dict(auth)
        for n in counter:
            if trace_head is not None:
                headers["X-Trace-ID"] = f"{trace_head}{str(uuid.uuid4())[8:]}"
            if op == "get":
                url = f"{path}/{fixture.ids[n % len(fixture.ids)]}"
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    expected = 200
            elif op == "list":
                async with session.get(f"{path}?{LIST_QUERY}", headers=headers) as resp:
                    await resp.read()
                    expected = 200
            elif op == "update":
                url = f"{path}/{fixture.ids[n % len(fixture.ids)]}"
                async with session.put(url, json=UPDATE_BODY, headers=headers) as resp:
                    await resp.read()
                    expected = 200
            else:  # create; nested: the order with NESTED_CHILDREN lines, in one request
                body: dict[str, Any] = {**CREATE_FIELDS, "number": f"{tag}-{n}"}
                if op == "nested":
                    body["order_lines"] = {"data": NESTED_LINES}
                async with session.post(path, json=body, headers=headers) as resp:
                    await resp.read()
                    expected = 201
            if resp.status != expected:
                raise RuntimeError(f"{op}: {resp.status}")

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _send(spec: dict[str, Any]) -> None:
    fixture = Fixture(**spec["fixture"])
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(spec["url"], connector=connector) as session:
        batches = spec.get("batches")
        if batches is None:
            await _drive(session, fixture, spec["op"], spec["requests"], spec["tag"])
            return
        for number, head in enumerate(batches):
            tag = f"{spec['tag']}-{number}"
            await _drive(session, fixture, spec["op"], spec["requests"], tag, head)
            await asyncio.sleep(FLUSH_GRACE_S)  # the flusher writes the batch's rows
            async with session.get(MARK_PATH, params={"batch": str(number)}) as resp:
                await resp.read()


def _load_process() -> None:
    """The load process: reads what to send from standard input (JSON), sends it."""
    uvloop.run(_send(json.load(sys.stdin)))


async def _load(
    base_url: str,
    fixture: Fixture,
    op: str,
    requests: int,
    batches: list[str | None] | None = None,
) -> None:
    """Send the requests from another process, so this one's CPU time is the server's alone;
    with `batches` (one X-Trace-ID head each), `requests` per batch, each followed by a mark."""
    spec = {
        "url": base_url,
        "fixture": dataclasses.asdict(fixture),
        "op": op,
        "requests": requests,
        "tag": secrets.token_hex(4),
        "batches": batches,
    }
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.events_profile", "--load", stdin=asyncio.subprocess.PIPE
    )
    await load.communicate(json.dumps(spec).encode())
    if load.returncode != 0:
        raise RuntimeError(f"the load process failed ({load.returncode})")


def _backend_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _backends(admin: psycopg.Connection[Any], dbname: str) -> list[int]:
    rows = admin.execute(
        "select pid from pg_stat_activity where datname = %s", (dbname,)
    ).fetchall()
    return [int(row[0]) for row in rows]


@dataclasses.dataclass
class Sample:
    rocketd_us: float
    postgres_us: float


async def measure(
    dsn: str,
    admin: psycopg.Connection[Any],
    data_dir: str,
    traced: bool,
    fixture: Fixture | None,
    ops: list[str],
    requests: int,
    spy_dir: Path | None,
) -> tuple[Fixture, dict[str, Sample]]:
    runtime = Runtime(settings_for(dsn, data_dir, traced))
    await runtime.start(http=False)
    assert runtime.services is not None
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(runtime.services)))
    await client.start_server()
    samples: dict[str, Sample] = {}
    try:
        if fixture is None:
            fixture = await set_up(client)
        dbname = f"rocket_{fixture.app}"
        tick = os.sysconf("SC_CLK_TCK")
        base_url = str(client.make_url("/"))
        for op in ops:
            await _load(base_url, fixture, op, min(500, requests))  # warm-up: pools, caches
            await asyncio.sleep(FLUSH_GRACE_S)
            pids = _backends(admin, dbname)
            pg_before = _backend_ticks(pids)
            mode = "on" if traced else "off"
            spy = _start_py_spy(spy_dir / f"{op}-{mode}.txt") if spy_dir is not None else None
            cpu_before = time.process_time()
            await _load(base_url, fixture, op, requests)
            await asyncio.sleep(FLUSH_GRACE_S)
            cpu = time.process_time() - cpu_before
            pg = (_backend_ticks(pids) - pg_before) / tick
            if spy is not None:
                _stop_py_spy(spy)
            samples[op] = Sample(cpu / requests * 1e6, pg / requests * 1e6)
    finally:
        await client.close()
        await runtime.stop()
    return fixture, samples


async def measure_interleaved(
    dsn: str,
    admin: psycopg.Connection[Any],
    data_dir: str,
    ops: list[str],
    requests: int,
    rounds: int,
) -> dict[tuple[bool, str], list[Sample]]:
    """One runtime sampling half of the traces; batches of requests whose trace ids are sampled
    and batches whose ids are not, alternating, each batch's CPU read at the marks the load
    process sends after it (and after the flusher wrote its rows)."""
    runtime = Runtime(settings_for(dsn, data_dir, True, sampling_rate=0.5))
    await runtime.start(http=False)
    assert runtime.services is not None
    marks: list[tuple[float, float]] = []
    pids: list[int] = []

    async def mark(request: web.Request) -> web.Response:
        marks.append((time.process_time(), _backend_ticks(pids) / os.sysconf("SC_CLK_TCK")))
        return web.json_response({})

    web_app = create_app(runtime.services)
    web_app.router.add_get(MARK_PATH, mark)
    client: TestClient[Any, Any] = TestClient(TestServer(web_app))
    await client.start_server()
    results: dict[tuple[bool, str], list[Sample]] = {}
    try:
        fixture = await set_up(client)
        pids.extend(_backends(admin, f"rocket_{fixture.app}"))
        base_url = str(client.make_url("/"))
        heads: list[str | None] = [TRACED_HEAD, UNTRACED_HEAD] * rounds
        for op in ops:
            await _load(base_url, fixture, op, min(500, requests))  # warm-up: pools, caches
            pids[:] = _backends(admin, f"rocket_{fixture.app}")
            marks.clear()
            await _load(base_url, fixture, op, 0, [None])  # the mark before the first batch
            await _load(base_url, fixture, op, requests, heads)  # a mark after each batch
            assert len(marks) == len(heads) + 1, (len(marks), len(heads))
            for head, (before, after) in zip(heads, itertools.pairwise(marks), strict=True):
                sample = Sample(
                    (after[0] - before[0]) / requests * 1e6,
                    (after[1] - before[1]) / requests * 1e6,
                )
                results.setdefault((head == TRACED_HEAD, op), []).append(sample)
    finally:
        await client.close()
        await runtime.stop()
    return results


def _start_py_spy(out: Path) -> subprocess.Popen[bytes]:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    process = subprocess.Popen(
        [
            found,
            "record",
            "--pid",
            str(os.getpid()),
            "--rate",
            str(PY_SPY_RATE),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the run starts
    return process


def _stop_py_spy(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(2)  # SIGINT: py-spy writes its output and exits
    process.wait(timeout=30)


async def run(args: argparse.Namespace) -> None:
    name = f"rocketbench_evprof_{secrets.token_hex(4)}"
    dsn = DatabaseSettings(url=args.pg_url).dsn(name)
    spy_dir = Path(args.py_spy) if args.py_spy else None
    if spy_dir is not None:
        spy_dir.mkdir(parents=True, exist_ok=True)
    with (
        psycopg.connect(args.pg_url, autocommit=True) as admin,
        tempfile.TemporaryDirectory() as data_dir,
    ):
        fixture: Fixture | None = None
        results: dict[tuple[bool, str], list[Sample]] = {}
        try:
            if args.interleaved:
                results = await measure_interleaved(
                    dsn, admin, data_dir, args.ops, args.requests, args.rounds
                )
            for round_no in range(0 if args.interleaved else args.rounds):
                for traced in (False, True):
                    spy = spy_dir if round_no == args.rounds - 1 else None
                    fixture, samples = await measure(
                        dsn, admin, data_dir, traced, fixture, args.ops, args.requests, spy
                    )
                    for op, sample in samples.items():
                        results.setdefault((traced, op), []).append(sample)
        finally:
            apps = []
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    apps = [r[0] for r in conn.execute("select db_name from _apps").fetchall()]
            except psycopg.Error:
                pass
            for db in [*apps, name]:
                admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db))
                )
    if args.interleaved:
        print(
            f"CPU per request, medians of {args.rounds} alternating batches of {args.requests}"
            " requests each untraced (off) and traced (on), one server sampling half the traces"
        )
    else:
        print(f"CPU per request, medians of {args.rounds} rounds of {args.requests} requests")
    print()
    print("| op | rocketd process off µs | on µs | added | PostgreSQL off µs | on µs | added |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for op in args.ops:
        off = results[(False, op)]
        on = results[(True, op)]
        r_off = statistics.median(s.rocketd_us for s in off)
        r_on = statistics.median(s.rocketd_us for s in on)
        p_off = statistics.median(s.postgres_us for s in off)
        p_on = statistics.median(s.postgres_us for s in on)
        print(
            f"| {op} | {r_off:.0f} | {r_on:.0f} | {r_on - r_off:+.0f} "
            f"| {p_off:.0f} | {p_on:.0f} | {p_on - p_off:+.0f} |"
        )
    if args.interleaved:
        print()
        print("Added µs per request, each traced batch against the untraced batch after it:")
        for op in args.ops:
            pairs = zip(results[(True, op)], results[(False, op)], strict=True)
            added = sorted(on.rocketd_us - off.rocketd_us for on, off in pairs)
            quartiles = statistics.quantiles(added, n=4)
            print(
                f"- {op}: median {statistics.median(added):+.0f}, quartiles"
                f" {quartiles[0]:+.0f} to {quartiles[2]:+.0f}"
            )
    if spy_dir is not None and not args.interleaved:
        for op in args.ops:
            cpu = {
                mode: results[(traced, op)][-1].rocketd_us
                for mode, traced in (("off", False), ("on", True))
            }
            print(f"\n{op}: µs per request by function (py-spy, last round), most added first")
            print(_added_table(spy_dir, op, cpu, args.top))


def _per_request(path: Path, cpu_us: float) -> tuple[Counter[str], Counter[str]]:
    """µs per request by function, own samples and anywhere on the stack: each function's share
    of the run's samples times the run's CPU per request."""
    own, total, samples = sample_counts(path.read_text())
    scale = cpu_us / samples if samples else 0.0
    return (
        Counter({k: v * scale for k, v in own.items()}),
        Counter({k: v * scale for k, v in total.items()}),
    )


def _added_table(spy_dir: Path, op: str, cpu: dict[str, float], top: int) -> str:
    own_off, total_off = _per_request(spy_dir / f"{op}-off.txt", cpu["off"])
    own_on, total_on = _per_request(spy_dir / f"{op}-on.txt", cpu["on"])
    lines = ["| own time | off | on | added | anywhere on the stack | off | on | added |"]
    lines.append("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")

    def added(off: Counter[str], on: Counter[str]) -> list[tuple[str, float, float]]:
        names = set(off) | set(on)
        ranked = sorted(names, key=lambda n: on.get(n, 0.0) - off.get(n, 0.0), reverse=True)
        return [(n, off.get(n, 0.0), on.get(n, 0.0)) for n in ranked[:top]]

    for (a, a_off, a_on), (b, b_off, b_on) in zip(
        added(own_off, own_on), added(total_off, total_on), strict=True
    ):
        lines.append(
            f"| `{a}` | {a_off:.1f} | {a_on:.1f} | {a_on - a_off:+.1f} "
            f"| `{b}` | {b_off:.1f} | {b_on:.1f} | {b_on - b_off:+.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    exit_on_sigterm()
    if sys.argv[1:] == ["--load"]:
        _load_process()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", help="get, create (default: both)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="one server, batches of traced and untraced requests alternating (--rounds pairs)",
    )
    parser.add_argument("--py-spy", default="", help="sample the last round of each mode")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    args.ops = args.ops or ["get", "create"]
    if not set(args.ops) <= {"get", "create"}:
        parser.error("operations: get, create")
    configure_logging(level="warning")
    uvloop.run(run(args))  # as `rocketd serve` runs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
