"""`python -m bench [name ...]`: run scenario sets or single scenarios and write their reports.

A name is a set (`foundation`) or a scenario (`health`, `login`); no name runs every set.
`python -m bench ab ...` compares two rocketd versions instead (bench/ab.py), `python -m bench
floor ...` rocketd with the stack's floor (bench/floor.py).
Exit status: 0 when every scenario ran clean, 1 when one failed or crashed, 2 when a tool or
PostgreSQL is missing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
from pathlib import Path

from bench.ab import main as ab_main
from bench.floor import main as floor_main
from bench.harness import (
    DEFAULT_PG_URL,
    RESULTS_DIR,
    Bench,
    BenchConfig,
    machine_info,
    preflight,
)
from bench.processes import exit_on_sigterm
from bench.report import (
    Machine,
    Report,
    ScenarioResult,
    measurement_table,
    merge_repeats,
    ratio_table,
)
from bench.scenarios import SETS, Scenario


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="sets or scenarios (default: every set)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up per run")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server URL")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each scenario N times; report the medians"
    )
    parser.add_argument("--list", action="store_true", help="list sets and scenarios, then exit")
    return parser


def select(names: list[str]) -> dict[str, list[str]]:
    """Map the requested names to {set: [scenario, ...]}, in the sets' own order."""
    wanted = set(names) if names else set(SETS)
    chosen: dict[str, list[str]] = {}
    for set_name, scenarios in SETS.items():
        picked = [s for s in scenarios if set_name in wanted or s in wanted]
        if picked:
            chosen[set_name] = picked
    known = set(SETS) | {s for scenarios in SETS.values() for s in scenarios}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"unknown set or scenario: {', '.join(sorted(unknown))}")
    return chosen


def _label(set_name: str, picked: list[str]) -> str:
    everything = list(SETS[set_name])
    return set_name if picked == everything else "-".join([set_name, *picked])


def run_scenario(name: str, scenario: Scenario, config: BenchConfig) -> ScenarioResult:
    print(f"== {name} ...", flush=True)
    with Bench(config) as bench:
        try:
            result = scenario(bench)
        except Exception as exc:
            traceback.print_exc()
            first_line = (str(exc).splitlines() or [""])[0]
            result = ScenarioResult(
                name, "crashed", failures=[f"{type(exc).__name__}: {first_line}"]
            )
        result.failures.extend(bench.failures)
    _print_result(result)
    return result


def _print_result(result: ScenarioResult) -> None:
    lines = [*measurement_table(result.measurements), ""]
    if result.ratios:
        lines += [*ratio_table(result.ratios), ""]
    lines += [f"FAILED: {failure}" for failure in result.failures]
    print("\n".join(lines), flush=True)


def run_set(
    label: str,
    scenarios: dict[str, Scenario],
    config: BenchConfig,
    machine: Machine,
    out: Path,
    repeat: int = 1,
) -> Report:
    command = shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
    report = Report(label, machine, command)
    for name, scenario in scenarios.items():
        runs = [run_scenario(name, scenario, config) for _ in range(max(1, repeat))]
        report.scenarios.append(merge_repeats(runs))
    md, js = report.write(out)
    print(f"wrote {md} and {js.name}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ab"]:
        return ab_main(argv[1:])
    if argv[:1] == ["floor"]:
        return floor_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.list:
        for set_name, scenarios in SETS.items():
            print(f"{set_name}: {' '.join(scenarios)}")
        return 0
    chosen = select(args.names)
    problem = preflight(args.pg_url)
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    config = BenchConfig(pg_url=args.pg_url, duration_s=args.duration, warmup_s=args.warmup)
    machine = machine_info(args.pg_url)
    failures: list[str] = []
    for set_name, picked in chosen.items():
        scenarios = {name: SETS[set_name][name] for name in picked}
        report = run_set(
            _label(set_name, picked), scenarios, config, machine, args.results_dir, args.repeat
        )
        failures += report.failures
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
