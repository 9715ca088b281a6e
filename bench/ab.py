"""`python -m bench ab`: two rocketd versions, A (baseline) and B (candidate), in alternating
rounds on the same machine, the same PostgreSQL and the same seeded data.

Per set (`bench/ab_sets.py`) one `Bench`: server A is started and builds the app and its seed,
then server B (another installation, same management database) starts on it; both stay up for
the whole set and are warmed once. Each round runs every chosen variant once per version, A
first in odd rounds and B first in even ones, each run after a data reset and a pause; the CPU
of the measured server process and of the app database's PostgreSQL backends comes from /proc
(`bench/cpu.py`). A `GET /health` variant runs in every round too, so CPU per request can be
put over CPU per health check of the same process. The headline per variant is the median of
the per-round B / A ratios (min and max beside it), for throughput and for CPU per request.
Results: `bench/results/ab-<set>[-<scenario>...]-<date>.md` and `.json`.
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

from bench.ab_sets import SETS, ABSet, Variant, label, select
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
from bench.loadgen import WrkRun, run_wrk
from bench.processes import ServerProcess
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
from bench.versions import DEFAULT_CACHE, Version, VersionError, cached, clear_cache, resolve

HEALTH = "GET /health"
HEALTH_CONNECTIONS = 32
MIN_ROUNDS_ISSUE_14 = 5
SIDES = ("A", "B")


# --- what one run and one variant give --------------------------------------------------------


@dataclass
class ABRun:
    """One measured wrk run of one version."""

    variant: str
    side: str  # "A" or "B"
    round: int  # 1-based
    first: bool  # this version ran first in the round
    cpu_us: dict[str, float]  # per request: rocketd, postgres, load generator (unrounded)
    measurement: Measurement

    @property
    def rate(self) -> float:
        return self.measurement.rate


@dataclass(frozen=True)
class Spread:
    """A median over rounds with its extremes."""

    median: float
    low: float
    high: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        return cls(statistics.median(values), min(values), max(values), values) if values else None

    def text(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f} to {self.high:.{digits}f})"


# Below this many µs per request a part is idle (e.g. PostgreSQL during GET /health): no ratio.
IDLE_US = 1.0


@dataclass
class VariantSummary:
    variant: str
    rate: dict[str, float]  # side -> median req/s
    throughput: Spread  # B / A per round
    server_us: dict[str, float]  # side -> median rocketd CPU µs per request
    server_cpu: Spread | None  # B / A per round
    postgres_us: dict[str, float]
    postgres_cpu: Spread | None
    over_health: dict[str, Spread]  # side -> rocketd CPU per request / per GET /health
    within_tolerance: bool | None


def _per_round(runs: list[ABRun], variant: str) -> list[tuple[ABRun, ABRun]]:
    by_round: dict[int, dict[str, ABRun]] = {}
    for run in runs:
        if run.variant == variant:
            by_round.setdefault(run.round, {})[run.side] = run
    return [(r["A"], r["B"]) for _, r in sorted(by_round.items()) if set(r) == set(SIDES)]


def _ratios(pairs: list[tuple[ABRun, ABRun]], part: str) -> list[float]:
    return [
        b.cpu_us[part] / a.cpu_us[part]
        for a, b in pairs
        if a.cpu_us.get(part, 0.0) >= IDLE_US and b.cpu_us.get(part, 0.0) >= IDLE_US
    ]


def _medians(pairs: list[tuple[ABRun, ABRun]], part: str) -> dict[str, float]:
    medians: dict[str, float] = {}
    for index, side in enumerate(SIDES):
        values = [pair[index].cpu_us[part] for pair in pairs if part in pair[index].cpu_us]
        if values:
            medians[side] = statistics.median(values)
    return medians


def summarize(runs: list[ABRun], variant: str, tolerance: float) -> VariantSummary | None:
    pairs = _per_round(runs, variant)
    throughput = Spread.of([b.rate / a.rate for a, b in pairs if a.rate])
    if throughput is None:
        return None
    health = {(r.round, r.side): r.cpu_us.get("rocketd") for r in runs if r.variant == HEALTH}
    over_health: dict[str, Spread] = {}
    for index, side in enumerate(SIDES):
        values = []
        for pair in pairs:
            run = pair[index]
            per_health = health.get((run.round, side))
            if variant != HEALTH and per_health and "rocketd" in run.cpu_us:
                values.append(run.cpu_us["rocketd"] / per_health)
        if (spread := Spread.of(values)) is not None:
            over_health[side] = spread
    server_cpu = Spread.of(_ratios(pairs, "rocketd"))
    within = None
    if server_cpu is not None:
        within = throughput.median >= 1 - tolerance and server_cpu.median <= 1 + tolerance
    return VariantSummary(
        variant=variant,
        rate={side: statistics.median(p[i].rate for p in pairs) for i, side in enumerate(SIDES)},
        throughput=throughput,
        server_us=_medians(pairs, "rocketd"),
        server_cpu=server_cpu,
        postgres_us=_medians(pairs, "postgres"),
        postgres_cpu=Spread.of(_ratios(pairs, "postgres")),
        over_health=over_health,
        within_tolerance=within,
    )


# --- the report -------------------------------------------------------------------------------


@dataclass
class ABReport:
    label: str
    title: str
    machine: Machine
    command: str
    versions: list[Version]
    config: dict[str, object]
    runs: list[ABRun] = field(default_factory=list)
    summaries: list[VariantSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str) + "\n"

    def to_markdown(self) -> str:
        tolerance = float(str(self.config["tolerance"]))
        lines = [f"# A/B benchmark: {self.label} ({self.machine.date})", "", self.title, ""]
        lines += [f"- {version.describe()}" for version in self.versions]
        lines += ["", "## Summary (median of per-round B / A, min to max)", ""]
        lines += _summary_table(self.summaries, tolerance)
        lines += ["", "## Two-core ceiling (for --workers 1 against --workers 2)", ""]
        lines += _ceiling_table(self.summaries)
        for summary in self.summaries:
            lines += ["", f"## Rounds: {summary.variant}", ""]
            lines += _rounds_table(_per_round(self.runs, summary.variant))
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


def _spread(spread: Spread | None) -> str:
    return "-" if spread is None else spread.text()


def _summary_table(summaries: list[VariantSummary], tolerance: float) -> list[str]:
    lines = [
        "| variant | req/s A | req/s B | throughput B/A | rocketd CPU µs/req A | B "
        "| rocketd CPU B/A | PostgreSQL CPU µs/req A | B | PostgreSQL CPU B/A "
        f"| rocketd CPU / health A | B | within {tolerance:.0%} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in summaries:
        verdict = {None: "-", True: "yes", False: "**no**"}[s.within_tolerance]
        lines.append(
            f"| {s.variant} | {format_rate(s.rate['A'])} | {format_rate(s.rate['B'])} "
            f"| {s.throughput.text()} | {format_us(s.server_us.get('A'))} | {format_us(s.server_us.get('B'))} "
            f"| {_spread(s.server_cpu)} | {format_us(s.postgres_us.get('A'))} "
            f"| {format_us(s.postgres_us.get('B'))} | {_spread(s.postgres_cpu)} "
            f"| {_spread(s.over_health.get('A'))} | {_spread(s.over_health.get('B'))} | {verdict} |"
        )
    return lines


def _ceiling_table(summaries: list[VariantSummary]) -> list[str]:
    """r and p (A's rocketd and PostgreSQL CPU per request) and 2·r/(r+p): with PostgreSQL on
    the same two cores, the most a second worker can multiply throughput by (docs/deploy.md)."""
    lines = [
        "| variant | r: rocketd µs/req A | p: PostgreSQL µs/req A | ceiling 2·r/(r+p) "
        "| throughput B/A |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        r, p = s.server_us.get("A"), s.postgres_us.get("A")
        ceiling = f"{2 * r / (r + p):.2f}" if r and p is not None else "-"
        lines.append(
            f"| {s.variant} | {format_us(r)} | {format_us(p)} | {ceiling} | {s.throughput.text()} |"
        )
    lines += [
        "",
        "Below 1, PostgreSQL needs more CPU per request than rocketd: one worker already keeps"
        " both cores busy through it, and the ceiling for a second worker is 1.",
    ]
    return lines


def _rounds_table(pairs: list[tuple[ABRun, ABRun]]) -> list[str]:
    lines = [
        "| round | first | req/s A | req/s B | B/A | p50 ms A | B | p99 ms A | B "
        "| rocketd µs/req A | B | B/A | PostgreSQL µs/req A | B |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for a, b in pairs:
        cpu_a, cpu_b = a.cpu_us.get("rocketd"), b.cpu_us.get("rocketd")
        cpu_ratio = f"{cpu_b / cpu_a:.3f}" if cpu_a and cpu_b else "-"
        lines.append(
            f"| {a.round} | {'A' if a.first else 'B'} | {format_rate(a.rate)} "
            f"| {format_rate(b.rate)} | {b.rate / a.rate if a.rate else 0.0:.3f} "
            f"| {format_ms(a.measurement.p50_ms)} | {format_ms(b.measurement.p50_ms)} "
            f"| {format_ms(a.measurement.p99_ms)} "
            f"| {format_ms(b.measurement.p99_ms)} | {format_us(cpu_a)} | {format_us(cpu_b)} | {cpu_ratio} "
            f"| {format_us(a.cpu_us.get('postgres'))} | {format_us(b.cpu_us.get('postgres'))} |"
        )
    return lines


# --- running one set --------------------------------------------------------------------------


@dataclass(frozen=True)
class ABConfig:
    bench: BenchConfig
    rounds: int
    tolerance: float


def _health(
    bench: Bench, server: ServerProcess, token: str, seconds: int, name: str
) -> Measurement:
    del bench, token  # /health needs neither
    run = WrkRun(url=server.url("/health"), duration_s=seconds, connections=HEALTH_CONNECTIONS)
    return run_wrk(run, name=name)


HEALTH_VARIANT = Variant(HEALTH, _health, resets=False)


class _Pair:
    """Both servers of a set and their tokens; measured runs go to `runs`."""

    def __init__(
        self, bench: Bench, abset: ABSet, servers: dict[str, ServerProcess], runs: list[ABRun]
    ) -> None:
        self.bench = bench
        self.abset = abset
        self.servers = servers
        self.tokens = {side: abset.login(server.port) for side, server in servers.items()}
        self.runs = runs

    def run(
        self, variant: Variant, side: str, seconds: int, name: str
    ) -> tuple[Measurement, dict[str, float]]:
        """One wrk run after the reset and the pause; the measurement (CPU per request rounded
        in its params) and the unrounded CPU µs per request of each part."""
        if variant.resets:
            self.abset.reset(self.bench)
        time.sleep(SETTLE_S)
        server = self.servers[side]
        with CpuMeter(self.abset.app_db, server.pid) as meter:
            measurement = variant.run(self.bench, server, self.tokens[side], seconds, name)
        meter.attach(measurement)
        return measurement, meter.per_request_us(measurement.requests)

    def measure(
        self, variant: Variant, side: str, round_no: int, first: bool, result: ScenarioResult
    ) -> None:
        seconds = self.bench.config.duration_s
        m, cpu = self.run(variant, side, seconds, f"{side} {variant.name}, round {round_no}")
        if m.errors:
            result.failures.append(f"{m.name}: {m.errors} errors")
        if variant.verify is not None:
            variant.verify(self.bench, m, result)
        self.runs.append(ABRun(variant.name, side, round_no, first, cpu, m))
        print(
            f"   round {round_no} {side} {variant.name}: {m.rate:,.0f} req/s, rocketd "
            f"{format_us(cpu.get('rocketd'))} µs/req, postgres {format_us(cpu.get('postgres'))} µs/req",
            flush=True,
        )


def run_set(
    abset: ABSet,
    variant_names: list[str],
    versions: dict[str, Version],
    config: ABConfig,
    result: ScenarioResult,
    runs: list[ABRun],
) -> None:
    """Set up once, then the alternating rounds; every measured run is appended to `runs`."""
    variants = [HEALTH_VARIANT, *(abset.variant(name) for name in variant_names)]
    with Bench(config.bench) as bench, abset.resources() as resource:
        servers = {
            side: bench.rocketd_server(
                abset.settings,
                executable=str(version.executable),
                extra_env=version.env,
                name=f"{side}-{version.role}",
            )
            for side, version in versions.items()
        }
        try:
            with servers["A"]:
                abset.prepare(bench, servers["A"], resource)
                with servers["B"]:
                    pair = _Pair(bench, abset, servers, runs)
                    for side in SIDES:
                        abset.check(bench, servers[side], pair.tokens[side], variant_names, result)
                    _warm_up(pair, variants)
                    for round_no in range(1, config.rounds + 1):
                        order = SIDES if round_no % 2 else SIDES[::-1]
                        for variant in variants:
                            for position, side in enumerate(order):
                                pair.measure(variant, side, round_no, position == 0, result)
                    bench.stop(servers["B"])
                bench.stop(servers["A"])
        finally:
            result.failures.extend(bench.failures)


def _warm_up(pair: _Pair, variants: list[Variant]) -> None:
    seconds = pair.bench.config.warmup_s
    if seconds <= 0:
        return
    for variant in variants:
        for side in SIDES:
            pair.run(variant, side, seconds, f"{side} {variant.name} (warm-up)")


def _notes(abset: ABSet, config: ABConfig, versions: dict[str, Version]) -> list[str]:
    bench = config.bench
    notes = [
        f"{config.rounds} rounds; in each, every variant ran once per version, A first in odd "
        "rounds and B first in even ones (so a drift of the machine's speed within a round "
        f"falls on both sides alike). Each run: {bench.duration_s} s of wrk (1 thread, "
        "keep-alive, the scenario's own script and connections), after the set's data reset "
        f"and a {SETTLE_S:.0f} s pause.",
        f"Both servers ({abset.title}) stay up for the whole set on one management database "
        "and one app database: A created the app, its metadata and seed, then B started on "
        f"them; each was warmed once ({bench.warmup_s} s per variant) before round 1. The "
        "reset before every run puts the data back to the seed, so every run of either "
        "version starts from the same rows.",
        "CPU per request: user + system time from /proc of the measured server process and of "
        "the PostgreSQL backends connected to the app database, over the measured run, divided "
        "by the requests wrk counted. The other server is idle meanwhile (its backends are "
        "counted with the database's, and use nothing).",
        f"`{HEALTH}` (32 connections) ran in every round on both servers; rocketd CPU / health "
        "is a variant's rocketd CPU per request over that process's CPU per health check in "
        "the same round (median of the rounds).",
        f"within {config.tolerance:.0%}: throughput B/A median >= {1 - config.tolerance:.2f} "
        f"and rocketd CPU B/A median <= {1 + config.tolerance:.2f}.",
    ]
    if config.rounds < MIN_ROUNDS_ISSUE_14:
        notes.append(
            f"Only {config.rounds} rounds: too few to judge a few-percent difference "
            f"(issue 14 asks for at least {MIN_ROUNDS_ISSUE_14})."
        )
    a, b = versions["A"], versions["B"]
    if a.code_digest == b.code_digest and a.env == b.env:
        notes.append("A and B run the same code with the same settings: an A/A run (noise).")
    return notes


# --- the command ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench ab",
        description="Compare two rocketd versions in alternating rounds (bench/README.md, "
        '"Comparing two versions").',
    )
    parser.add_argument(
        "names", nargs="*", help="sets or scenarios (default: data-api rules webhooks workflows)"
    )
    parser.add_argument("--baseline", help="A: a git ref or a checkout with a .venv")
    parser.add_argument(
        "--candidate", help="B: a git ref or a checkout with a .venv (default: this checkout)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument(
        "--baseline-env", action="append", default=[], metavar="KEY=VAL", help="for A's servers"
    )
    parser.add_argument(
        "--candidate-env", action="append", default=[], metavar="KEY=VAL", help="for B's servers"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per variant")
    parser.add_argument(
        "--tolerance", type=float, default=0.03, help="for the 'within' column (default 0.03)"
    )
    parser.add_argument(
        "--tag", help="names the comparison in the result files: ab-<tag>-<set>-<date>.md"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server URL")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE}"
    )
    parser.add_argument("--list", action="store_true", help="list sets, scenarios and variants")
    parser.add_argument(
        "--clear-cache", action="store_true", help="remove the cached checkouts, then exit"
    )
    return parser


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VAL, got {pair!r}")
        env[key] = value
    return env


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.clear_cache:
        for path in clear_cache(args.cache_dir):
            print(f"removed {path}")
        return 0
    if args.list:
        for name, abset in SETS.items():
            for scenario, variants in abset.scenarios.items():
                print(f"{name}: {scenario}: {', '.join(variants)}")
        print(f"cached checkouts in {args.cache_dir}: {len(cached(args.cache_dir))}")
        return 0
    if not args.baseline:
        parser.error("--baseline is required (a git ref or a checkout with a .venv)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    chosen = select(args.names)
    problem = preflight(args.pg_url)
    if problem:
        print(f"bench ab: {problem}", file=sys.stderr)
        return 2
    sides = {"A": ("baseline", args.baseline, args.baseline_env)}
    sides["B"] = ("candidate", args.candidate, args.candidate_env)
    try:
        versions = {
            side: resolve(spec, side=side, role=role, env=parse_env(env), cache=args.cache_dir)
            for side, (role, spec, env) in sides.items()
        }
    except VersionError as exc:
        print(f"bench ab: {exc}", file=sys.stderr)
        return 2
    for version in versions.values():
        print(version.describe(), flush=True)
    config = ABConfig(
        BenchConfig(pg_url=args.pg_url, duration_s=args.duration, warmup_s=args.warmup),
        rounds=args.rounds,
        tolerance=args.tolerance,
    )
    command = shlex.join([".venv/bin/python", "-m", "bench", "ab", *argv])
    failures: list[str] = []
    for set_name, variant_names in chosen.items():
        stem = label(set_name, variant_names, args.tag)
        report = _run_report(stem, set_name, variant_names, versions, config, command)
        md, js = report.write(args.results_dir)
        print(f"wrote {md} and {js.name}", flush=True)
        failures += report.failures
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _run_report(
    stem: str,
    set_name: str,
    variant_names: list[str],
    versions: dict[str, Version],
    config: ABConfig,
    command: str,
) -> ABReport:
    abset = SETS[set_name]
    print(f"== ab {set_name}: {', '.join(variant_names)} ...", flush=True)
    report = ABReport(
        label=stem,
        title=abset.title,
        machine=machine_info(config.bench.pg_url),
        command=command,
        versions=list(versions.values()),
        config={
            "rounds": config.rounds,
            "duration_s": config.bench.duration_s,
            "warmup_s": config.bench.warmup_s,
            "settle_s": SETTLE_S,
            "tolerance": config.tolerance,
            "variants": [HEALTH, *variant_names],
        },
        notes=_notes(abset, config, versions),
    )
    result = ScenarioResult(set_name, abset.title)
    try:
        run_set(abset, variant_names, versions, config, result, report.runs)
    except Exception as exc:
        traceback.print_exc()
        first_line = (str(exc).splitlines() or [""])[0]
        result.failures.append(f"crashed: {type(exc).__name__}: {first_line}")
    report.failures = result.failures
    report.notes += result.notes
    for name in [HEALTH, *variant_names]:
        summary = summarize(report.runs, name, config.tolerance)
        if summary is not None:
            report.summaries.append(summary)
    print("\n".join(_summary_table(report.summaries, config.tolerance)), flush=True)
    return report
