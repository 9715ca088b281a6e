"""`python -m bench floor`: rocketd against the stack's floor, in alternating rounds of one run.

The floor is bench/floor_server.py: `GET /health`, get by id and update by id on the data-api
set's seeded `order` entity, built from aiohttp, psycopg and pyjwt with nothing of rocketd
around them, in two modes (`plain`: the packages' idiomatic use with rocketd's pool settings;
`lean`: the cheapest use of them that the file knows). One `Bench`: rocketd (this checkout,
one process, instrumentation off) creates the app `benchdata`, its schema and 10,000 orders
(the data-api set's own setup, bench/ab_sets.py), then both floor servers start on the same app
database with the app's JWT secret, and all three answer the same token. Each server's answers
are checked (rocketd's against the database, the floor's against rocketd's). Then in each round
every variant (`GET /health`, get, update) runs once on each server, the servers' order rotated
from round to round, each run after the data reset and a pause, with the CPU of the server
process and of the app database's PostgreSQL backends read from /proc (`bench/cpu.py`).

Reported per server and variant: median req/s, server and PostgreSQL CPU µs per request, and
the variant's CPU over the same server's CPU per `GET /health` in the same round (the ratio
issue 18 sets targets for: get <= 3, update <= 6.5); per variant, rocketd / floor of the CPU
per request and of the throughput. Every ratio is the median of its per-round values.
Results: `bench/results/floor-[<tag>-]<date>.md` and `.json`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt

from bench.ab import HEALTH, HEALTH_VARIANT, Spread
from bench.ab_sets import DATA_API, Variant
from bench.cpu import CpuMeter
from bench.harness import (
    DEFAULT_PG_URL,
    RESULTS_DIR,
    SETTLE_S,
    Bench,
    BenchConfig,
    machine_info,
    preflight,
)
from bench.processes import ServerProcess, http_json
from bench.report import (
    Machine,
    Measurement,
    ScenarioResult,
    format_ms,
    format_rate,
    format_us,
    report_tail,
    write_result_files,
)
from bench.scenarios import data_api

ROCKETD = "rocketd"
FLOOR = "floor"
LEAN = "floor-lean"
SERVERS = (ROCKETD, FLOOR, LEAN)
FLOORS = {FLOOR: "plain", LEAN: "lean"}
GET, UPDATE = "get", "update"
VARIANTS = (HEALTH, GET, UPDATE)
# Issue 18's targets: a variant's server CPU per request over the same process's per GET /health.
TARGETS = {GET: 3.0, UPDATE: 6.5}
ROCKETD_ENV = {"ROCKET_INSTRUMENTATION_ENABLED": "false"}
MIN_ROUNDS = 5
# Below this many µs per request a part is idle (PostgreSQL during GET /health): no ratio.
IDLE_US = 1.0
JWT_TIMING_CALLS = 3000


@dataclass
class FloorRun:
    """One measured wrk run of one server."""

    server: str
    variant: str
    round: int  # 1-based
    position: int  # 0: this server ran first in the round's run of this variant
    cpu_us: dict[str, float]  # per request: server, postgres, load generator (unrounded)
    measurement: Measurement

    @property
    def rate(self) -> float:
        return self.measurement.rate


# --- ratios over rounds (pure) ----------------------------------------------------------------


def _by_round(runs: list[FloorRun], server: str, variant: str) -> dict[int, FloorRun]:
    return {r.round: r for r in runs if r.server == server and r.variant == variant}


def median_of(runs: list[FloorRun], server: str, variant: str, part: str) -> float | None:
    """The median over rounds of one part's CPU µs per request ("rate": req/s)."""
    values = [
        r.rate if part == "rate" else r.cpu_us[part]
        for r in _by_round(runs, server, variant).values()
        if part == "rate" or part in r.cpu_us
    ]
    return statistics.median(values) if values else None


def over_health(
    runs: list[FloorRun], server: str, variant: str, health_of: str | None = None
) -> Spread | None:
    """Per round: the server's CPU per request of `variant` over its CPU per GET /health, or
    over `health_of`'s (another server's) CPU per GET /health in the same round."""
    health = _by_round(runs, health_of or server, HEALTH)
    values = [
        run.cpu_us["server"] / health[n].cpu_us["server"]
        for n, run in sorted(_by_round(runs, server, variant).items())
        if n in health
        and run.cpu_us.get("server", 0.0) >= IDLE_US
        and health[n].cpu_us.get("server", 0.0) >= IDLE_US
    ]
    return Spread.of(values)


def between(
    runs: list[FloorRun], numerator: str, denominator: str, variant: str, part: str
) -> Spread | None:
    """Per round: `numerator`'s value of `part` over `denominator`'s, for `variant`; `part` is a
    CPU part ("server", "postgres") or "rate" (req/s)."""
    num = _by_round(runs, numerator, variant)
    den = _by_round(runs, denominator, variant)
    values = []
    for n in sorted(set(num) & set(den)):
        if part == "rate":
            if den[n].rate:
                values.append(num[n].rate / den[n].rate)
        elif num[n].cpu_us.get(part, 0.0) >= IDLE_US and den[n].cpu_us.get(part, 0.0) >= IDLE_US:
            values.append(num[n].cpu_us[part] / den[n].cpu_us[part])
    return Spread.of(values)


def rotation(servers: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    """The servers' order in round `round_no` (1-based): rotated by one place each round, so
    each server runs first, second and third equally often over a multiple of len(servers)."""
    shift = (round_no - 1) % len(servers)
    return servers[shift:] + servers[:shift]


# --- the report -------------------------------------------------------------------------------


@dataclass
class FloorReport:
    label: str
    machine: Machine
    command: str
    config: dict[str, object]
    runs: list[FloorRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures of the summary tables, for the JSON file."""
        per_server = {
            server: {
                variant: {
                    "rate": median_of(self.runs, server, variant, "rate"),
                    "server_us": median_of(self.runs, server, variant, "server"),
                    "postgres_us": median_of(self.runs, server, variant, "postgres"),
                    "over_health": _spread_dict(over_health(self.runs, server, variant)),
                }
                for variant in VARIANTS
            }
            for server in SERVERS
        }
        rocketd_over = {
            floor: {
                variant: {
                    part: _spread_dict(between(self.runs, ROCKETD, floor, variant, part))
                    for part in ("server", "postgres", "rate")
                }
                for variant in VARIANTS
            }
            for floor in FLOORS
        }
        lean_over_rocketd_health = {
            variant: _spread_dict(over_health(self.runs, LEAN, variant, ROCKETD))
            for variant in TARGETS
        }
        return {
            "per_server": per_server,
            "rocketd_over_floor": rocketd_over,
            "lean_over_rocketd_health": lean_over_rocketd_health,
        }

    def to_json(self) -> str:
        data = asdict(self) | {"summary": self.summary()}
        return json.dumps(data, indent=2, default=str) + "\n"

    def to_markdown(self) -> str:
        lines = [f"# The stack's floor: rocketd against a bare server ({self.machine.date})", ""]
        lines += ["## Per server (medians over the rounds)", "", *_server_table(self.runs)]
        lines += ["", "## Issue 18's ratios (median of the per-round ratios, min to max)", ""]
        lines += _target_table(self.runs)
        lines += ["", "## rocketd over the floor (median of the per-round ratios, min to max)", ""]
        lines += _versus_table(self.runs)
        for variant in VARIANTS:
            lines += ["", f"## Rounds: {variant}", "", *_rounds_table(self.runs, variant)]
        lines += report_tail(self.notes, self.failures, self.machine, self.command)
        return "\n".join(lines).rstrip() + "\n"

    def write(self, results_dir: Path) -> tuple[Path, Path]:
        return write_result_files(
            results_dir,
            f"{self.label}-{self.machine.date}",
            failed=bool(self.failures),
            markdown=self.to_markdown(),
            json_text=self.to_json(),
        )


def _spread_dict(spread: Spread | None) -> dict[str, Any] | None:
    return None if spread is None else asdict(spread)


def _ratio(spread: Spread | None, digits: int = 2) -> str:
    return "-" if spread is None else spread.text(digits)


def _server_table(runs: list[FloorRun]) -> list[str]:
    lines = [
        "| server | variant | req/s | server CPU µs/req | PostgreSQL CPU µs/req "
        "| server CPU / health |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for server in SERVERS:
        for variant in VARIANTS:
            rate = median_of(runs, server, variant, "rate")
            health = "1" if variant == HEALTH else _ratio(over_health(runs, server, variant))
            lines.append(
                f"| {server} | {variant} | {format_rate(rate) if rate is not None else '-'} "
                f"| {format_us(median_of(runs, server, variant, 'server'))} "
                f"| {format_us(median_of(runs, server, variant, 'postgres'))} | {health} |"
            )
    return lines


def _target_table(runs: list[FloorRun]) -> list[str]:
    columns = [(server, None) for server in SERVERS] + [(LEAN, ROCKETD)]
    names = [*SERVERS, f"{LEAN} over {ROCKETD}'s health"]
    lines = [
        "| variant | target | " + " | ".join(names) + " |",
        "| --- | ---: | " + " | ".join("---" for _ in names) + " |",
    ]
    for variant, target in TARGETS.items():
        cells = []
        for server, health_of in columns:
            spread = over_health(runs, server, variant, health_of)
            verdict = "" if spread is None else " met" if spread.median <= target else " missed"
            cells.append(_ratio(spread) + verdict)
        lines.append(f"| {variant} / health | <= {target} | " + " | ".join(cells) + " |")
    return [
        *lines,
        "",
        f"The last column puts {LEAN}'s CPU per request over rocketd's CPU per `GET /health` in "
        "the same round: the ratio rocketd would show if its get or update cost what the "
        "lean floor's does while its `/health` cost what it does now.",
    ]


def _versus_table(runs: list[FloorRun]) -> list[str]:
    lines = [
        "| variant | floor | server CPU rocketd / floor | PostgreSQL CPU rocketd / floor "
        "| req/s rocketd / floor |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for variant in VARIANTS:
        for floor in FLOORS:
            lines.append(
                f"| {variant} | {floor} | {_ratio(between(runs, ROCKETD, floor, variant, 'server'))}"
                f" | {_ratio(between(runs, ROCKETD, floor, variant, 'postgres'))}"
                f" | {_ratio(between(runs, ROCKETD, floor, variant, 'rate'))} |"
            )
    return lines


def _rounds_table(runs: list[FloorRun], variant: str) -> list[str]:
    lines = [
        "| round | server | order | req/s | p50 ms | p99 ms | server µs/req | PostgreSQL µs/req |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    chosen = sorted(
        (r for r in runs if r.variant == variant), key=lambda r: (r.round, SERVERS.index(r.server))
    )
    for r in chosen:
        m = r.measurement
        lines.append(
            f"| {r.round} | {r.server} | {r.position + 1} | {format_rate(m.rate)} "
            f"| {format_ms(m.p50_ms)} | {format_ms(m.p99_ms)} | {format_us(r.cpu_us.get('server'))} "
            f"| {format_us(r.cpu_us.get('postgres'))} |"
        )
    return lines


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorConfig:
    bench: BenchConfig
    rounds: int


class _Servers:
    """The three servers, the one token they all accept, and the measured runs."""

    def __init__(
        self,
        bench: Bench,
        servers: dict[str, ServerProcess],
        token: str,
        runs: list[FloorRun],
    ) -> None:
        self.bench = bench
        self.servers = servers
        self.token = token
        self.runs = runs

    def run(
        self, variant: Variant, server: str, seconds: int, name: str
    ) -> tuple[Measurement, dict[str, float]]:
        """One wrk run after the reset and the pause; unrounded CPU µs per request by part."""
        if variant.resets:
            DATA_API.reset(self.bench)
        time.sleep(SETTLE_S)
        process = self.servers[server]
        with CpuMeter(DATA_API.app_db, process.pid) as meter:
            m = variant.run(self.bench, process, self.token, seconds, name)
        meter.attach(m)
        cpu = meter.per_request_us(m.requests)
        if "rocketd" in cpu:  # bench/cpu.py names the measured server process "rocketd"
            cpu["server"] = cpu.pop("rocketd")
        return m, cpu

    def measure(
        self, variant: Variant, server: str, round_no: int, position: int, result: ScenarioResult
    ) -> None:
        seconds = self.bench.config.duration_s
        m, cpu = self.run(variant, server, seconds, f"{server} {variant.name}, round {round_no}")
        if m.errors:
            result.failures.append(f"{m.name}: {m.errors} errors")
        self.runs.append(FloorRun(server, variant.name, round_no, position, cpu, m))
        print(
            f"   round {round_no} {server} {variant.name}: {m.rate:,.0f} req/s, server "
            f"{format_us(cpu.get('server'))} µs/req, postgres {format_us(cpu.get('postgres'))} µs/req",
            flush=True,
        )


def _jwt_secret(bench: Bench) -> str:
    rows = bench.query(
        bench.management_db, "select jwt_secret from _apps where name = %s", (data_api.APP_NAME,)
    )
    return str(rows[0][0])


def check_floor(
    bench: Bench, rocketd: ServerProcess, floor: ServerProcess, token: str
) -> list[str]:
    """The floor answers as rocketd does: the same get and update bodies for the same rows, the
    same statuses for an unknown id, a forged token and a missing one. Data reset afterwards."""
    problems: list[str] = []
    path = data_api.ORDER_PATH
    get_id = bench.query(data_api.APP_DB, "select id from orders where number = 'O-4242'")[0][0]
    put_id = bench.query(data_api.APP_DB, "select id from orders where number = 'O-4241'")[0][0]
    missing = "00000000-0000-4000-8000-000000000000"
    forged = jwt.encode({"sub": "x", "iat": 0, "exp": 2**31}, "f" * 64, algorithm="HS256")
    probes: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
        ("GET", f"{path}/{get_id}", None, token),
        ("PUT", f"{path}/{put_id}", data_api.UPDATE_BODY, token),
        ("GET", f"{path}/{missing}", None, token),
        ("PUT", f"{path}/{missing}", data_api.UPDATE_BODY, token),
        ("GET", f"{path}/{get_id}", None, forged),
        ("GET", f"{path}/{get_id}", None, None),
    ]
    for method, url, body, bearer in probes:
        answers = []
        for server in (rocketd, floor):
            answers.append(http_json(server.port, method, url, body, token=bearer))
            DATA_API.reset(bench)
        (want_status, want), (got_status, got) = answers
        same_body = got == want if want_status == 200 else True
        if got_status != want_status or not same_body:
            problems.append(
                f"{floor.name}: {method} {url} answered {got_status} {got}, "
                f"rocketd {want_status} {want}"
            )
    return problems


def jwt_decode_us(secret: str, token: str, calls: int = JWT_TIMING_CALLS) -> float:
    """CPU µs of one `jwt.decode` as the floor's plain mode calls it, in this process."""
    start = time.process_time()
    for _ in range(calls):
        jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "iat", "exp"]})
    return (time.process_time() - start) * 1e6 / calls


def run_floor(
    config: FloorConfig, result: ScenarioResult, notes: list[str], runs: list[FloorRun]
) -> None:
    """Set up, check, warm up, then the rounds; every measured run is appended to `runs`."""
    variants = [HEALTH_VARIANT, DATA_API.variant(GET), DATA_API.variant(UPDATE)]
    with Bench(config.bench) as bench:
        rocketd = bench.rocketd_server(DATA_API.settings, extra_env=ROCKETD_ENV, name=ROCKETD)
        try:
            with rocketd:
                DATA_API.prepare(bench, rocketd, None)
                secret = _jwt_secret(bench)
                floors = {
                    name: bench.floor(DATA_API.app_db, secret, mode)
                    for name, mode in FLOORS.items()
                }
                with floors[FLOOR], floors[LEAN]:
                    token = DATA_API.login(rocketd.port)
                    DATA_API.check(bench, rocketd, token, [GET, UPDATE], result)
                    for floor in floors.values():
                        result.failures += check_floor(bench, rocketd, floor, token)
                    notes.append(
                        f"One `jwt.decode` of the bench token (HS256, 3 claims required) costs "
                        f"{jwt_decode_us(secret, token):.1f} µs of CPU in the harness process "
                        f"(mean of {JWT_TIMING_CALLS} calls): what the plain floor pays per "
                        "request and the lean floor and rocketd (verified-token cache) do not."
                    )
                    servers = _Servers(bench, {ROCKETD: rocketd, **floors}, token, runs)
                    _warm_up(servers, variants)
                    for round_no in range(1, config.rounds + 1):
                        order = rotation(SERVERS, round_no)
                        for variant in variants:
                            for position, server in enumerate(order):
                                servers.measure(variant, server, round_no, position, result)
                    for floor in floors.values():
                        bench.stop(floor)
                bench.stop(rocketd)
        finally:
            result.failures.extend(bench.failures)


def _warm_up(servers: _Servers, variants: list[Variant]) -> None:
    seconds = servers.bench.config.warmup_s
    if seconds <= 0:
        return
    for variant in variants:
        for server in SERVERS:
            servers.run(variant, server, seconds, f"{server} {variant.name} (warm-up)")


def _notes(config: FloorConfig) -> list[str]:
    b = config.bench
    notes = [
        f"{config.rounds} rounds; in each, every variant ran once on each server, the servers' "
        "order rotated by one place per round (order column of the round tables). Each run: "
        f"{b.duration_s} s of wrk (1 thread, 32 connections, keep-alive; get and update through "
        'wrk/data_api.lua: a random seeded order per request, update `PUT {"status": '
        f'"sent"}}`), after the data reset (get, update) and a {SETTLE_S:.0f} s pause. Every '
        f"server was warmed once ({b.warmup_s} s per variant) before round 1.",
        "rocketd: this checkout, `rocketd serve` with one worker, instrumentation off "
        "(ROCKET_INSTRUMENTATION_ENABLED=false), log level warning, default settings otherwise "
        "(app pool of 5 connections, prepared statements); it created the app `benchdata`, the "
        "`order` entity and 10,000 seeded orders (the data-api set's setup), and its token is "
        "the one every server was sent.",
        "floor (bench/floor_server.py --mode plain): aiohttp on uvloop, access log off, "
        "bench/hello_server.py's `/health`; per request `jwt.decode` (HS256 pinned), "
        "psycopg_pool `AsyncConnectionPool` with rocketd's app-pool settings (max 5, min 0, "
        "max_idle 300 s, timeout 5 s, autocommit, prepare threshold 5), `pool.connection()`, "
        "`conn.execute`; update in `conn.transaction()`: SELECT ... FOR UPDATE, UPDATE ... "
        'RETURNING; the row encoded by `web.json_response` as `{"data": record}`.',
        "floor-lean (--mode lean): the same packages used as cheaply as that file knows: the "
        "pool's 5 connections taken at start and handed between requests through an "
        "`asyncio.Queue`, one cursor per connection with its statements prepared on first use, "
        "BEGIN / COMMIT as simple queries, each token verified once and then looked up. Its "
        "queue lets a new request take a connection given back before the waiter it woke "
        "runs, so its p99 latency is not comparable with the others' (its figure is the CPU).",
        "Before measuring: rocketd's get and update answers were checked against the database; "
        "each floor server's answers against rocketd's (get and update bodies equal; the same "
        "status for an unknown id, a forged token and no token).",
        "CPU per request: user + system time from /proc of the measured server process and of "
        "the PostgreSQL backends connected to the app database, over the run, divided by the "
        "requests wrk counted. The other servers are idle meanwhile. A ratio to health is a "
        "variant's server CPU per request over the same process's CPU per `GET /health` in "
        "the same round; every ratio reported is the median of its per-round values.",
    ]
    if config.rounds < MIN_ROUNDS:
        notes.append(f"Only {config.rounds} rounds (fewer than {MIN_ROUNDS}).")
    return notes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench floor",
        description="rocketd against the stack's floor (bench/floor_server.py) in alternating "
        'rounds: GET /health, get and update by id (bench/README.md, "The stack\'s floor").',
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per variant")
    parser.add_argument("--tag", help="result files floor-<tag>-<date>.md")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server URL")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    problem = preflight(args.pg_url)
    if problem:
        print(f"bench floor: {problem}", file=sys.stderr)
        return 2
    config = FloorConfig(
        BenchConfig(pg_url=args.pg_url, duration_s=args.duration, warmup_s=args.warmup),
        rounds=args.rounds,
    )
    label = "-".join(["floor", args.tag] if args.tag else ["floor"])
    report = FloorReport(
        label=label,
        machine=machine_info(args.pg_url),
        command=shlex.join([".venv/bin/python", "-m", "bench", "floor", *argv]),
        config={
            "rounds": config.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "settle_s": SETTLE_S,
            "servers": list(SERVERS),
            "variants": list(VARIANTS),
            "rocketd_env": ROCKETD_ENV,
        },
        notes=_notes(config),
    )
    print("== floor: rocketd, floor, floor-lean ...", flush=True)
    result = ScenarioResult("floor", "rocketd against the stack's floor")
    try:
        run_floor(config, result, report.notes, report.runs)
    except Exception as exc:
        traceback.print_exc()
        first_line = (str(exc).splitlines() or [""])[0]
        result.failures.append(f"crashed: {type(exc).__name__}: {first_line}")
    report.failures = result.failures
    report.notes += result.notes
    print("\n".join(_server_table(report.runs)), flush=True)
    print("\n".join(_target_table(report.runs)), flush=True)
    md, js = report.write(args.results_dir)
    print(f"wrote {md} and {js.name}", flush=True)
    for failure in report.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if report.failures else 0
