"""Benchmark results: what was measured, the ratios between measurements, and the report files.

A run writes `bench/results/<set>-<YYYY-MM-DD>.md` (tables and machine notes, for people) and a
`.json` of the same data next to it (for tools and later comparisons). A second run of the same
set on the same day overwrites both; a run with failures writes `...-failed.md/.json` instead.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass
class Measurement:
    """One load-generator run: a throughput and its latency distribution."""

    name: str
    tool: str  # "wrk", "pgbench" or "python"
    rate: float
    unit: str  # "req/s", "tps", "ops/s"
    requests: int
    avg_ms: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    params: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Ratio:
    """`numerator.rate / denominator.rate`, with what it means."""

    name: str
    numerator: str
    denominator: str
    value: float
    meaning: str


def combine_runs(name: str, runs: list[Measurement], connections: int, **extra: Any) -> Measurement:
    """One wrk measurement from several rounds of the same load: mean rate and latencies,
    summed counts, and the per-round rates kept in `params` (plus `extra`)."""

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.fmean(known) if known else None

    return Measurement(
        name=name,
        tool="wrk",
        rate=statistics.fmean(m.rate for m in runs),
        unit="req/s",
        requests=sum(m.requests for m in runs),
        avg_ms=statistics.fmean(m.avg_ms for m in runs),
        p50_ms=mean([m.p50_ms for m in runs]),
        p99_ms=mean([m.p99_ms for m in runs]),
        errors=sum(m.errors for m in runs),
        params={
            "connections": connections,
            "threads": 1,
            "duration_s": runs[0].params.get("duration_s"),
            "runs": len(runs),
            "run_rates": [round(m.rate) for m in runs],
            **extra,
        },
    )


def ratio(name: str, num: Measurement, den: Measurement, meaning: str) -> Ratio:
    return Ratio(name, num.name, den.name, num.rate / den.rate if den.rate else 0.0, meaning)


@dataclass
class ScenarioResult:
    name: str
    title: str
    measurements: list[Measurement] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Machine:
    date: str
    cores: int
    cpu_model: str
    postgres_version: str
    rocketd_commit: str
    python_version: str
    wrk_version: str
    pgbench_version: str
    loadavg_at_start: str


@dataclass
class Report:
    set_name: str
    machine: Machine
    command: str
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"{s.name}: {f}" for s in self.scenarios for f in s.failures]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def to_markdown(self) -> str:
        lines = [f"# Benchmark results: {self.set_name} ({self.machine.date})", ""]
        for scenario in self.scenarios:
            lines += _scenario_markdown(scenario)
        lines += machine_markdown(self.machine, self.command)
        return "\n".join(lines).rstrip() + "\n"

    def write(self, results_dir: Path) -> tuple[Path, Path]:
        """Write the .md and .json; a report with failures gets a `-failed` suffix, so a
        broken run never replaces a clean one."""
        return write_result_files(
            results_dir,
            f"{self.set_name}-{self.machine.date}",
            failed=bool(self.failures),
            markdown=self.to_markdown(),
            json_text=self.to_json(),
        )


def write_result_files(
    results_dir: Path, stem: str, *, failed: bool, markdown: str, json_text: str
) -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.json` in `results_dir`, `<stem>-failed.*` when `failed`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    base = results_dir / f"{stem}{'-failed' if failed else ''}"
    md, js = base.with_suffix(".md"), base.with_suffix(".json")
    md.write_text(markdown)
    js.write_text(json_text)
    return md, js


def percentile(sorted_values: list[int] | list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def format_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def format_us(value: float | None) -> str:
    """Microseconds as a whole number with thousands separators; `-` when unknown."""
    return "-" if value is None else f"{value:,.0f}"


def report_tail(notes: list[str], failures: list[str], machine: Machine, command: str) -> list[str]:
    """The closing sections of a report: its notes, its failures, then the machine."""
    return [
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in notes),
        *(f"- **FAILED:** {failure}" for failure in failures),
        "",
        *machine_markdown(machine, command),
    ]


def measurement_table(measurements: list[Measurement]) -> list[str]:
    lines = [
        "| measurement | tool | conns | throughput | p50 ms | p99 ms | avg ms | count | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measurements:
        conns = m.params.get("connections", "-")
        lines.append(
            f"| {m.name} | {m.tool} | {conns} | {format_rate(m.rate)} {m.unit} | {format_ms(m.p50_ms)} "
            f"| {format_ms(m.p99_ms)} | {format_ms(m.avg_ms)} | {m.requests:,} | {m.errors} |"
        )
    return lines


def ratio_table(ratios: list[Ratio]) -> list[str]:
    lines = ["| ratio | value | meaning |", "| --- | ---: | --- |"]
    lines += [f"| {r.name} | {r.value:.3f} | {r.meaning} |" for r in ratios]
    return lines


def _scenario_markdown(scenario: ScenarioResult) -> list[str]:
    lines = [f"## {scenario.name}: {scenario.title}", ""]
    lines += [*measurement_table(scenario.measurements), ""]
    if scenario.ratios:
        lines += [*ratio_table(scenario.ratios), ""]
    lines += [f"- {note}" for note in scenario.notes]
    lines += [f"- **FAILED:** {failure}" for failure in scenario.failures]
    return [*lines, ""]


def machine_markdown(machine: Machine, command: str) -> list[str]:
    return [
        "## Machine",
        "",
        f"- cores: {machine.cores} ({machine.cpu_model})",
        f"- PostgreSQL: {machine.postgres_version}",
        f"- rocketd commit: {machine.rocketd_commit}",
        f"- Python: {machine.python_version}",
        f"- wrk: {machine.wrk_version}",
        f"- pgbench: {machine.pgbench_version}",
        f"- load average at start (1/5/15 min): {machine.loadavg_at_start}",
        f"- command: `{command}`",
        "",
    ]


def merge_repeats(results: list[ScenarioResult]) -> ScenarioResult:
    """Several runs of one scenario as one result: every run's measurements and ratios under
    `run k: `, then each ratio's median over the runs (the figure to quote on a noisy machine),
    the last run's notes and every run's failures."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    merged = ScenarioResult(first.name, f"{first.title} ({len(results)} runs)")
    for k, result in enumerate(results, 1):
        merged.measurements += [replace(m, name=f"run {k}: {m.name}") for m in result.measurements]
        merged.ratios += [replace(r, name=f"run {k}: {r.name}") for r in result.ratios]
        merged.failures += [f"run {k}: {failure}" for failure in result.failures]
    for ratio in first.ratios:
        values = [r.value for result in results for r in result.ratios if r.name == ratio.name]
        merged.ratios.append(
            replace(
                ratio,
                name=f"median of {len(values)} runs: {ratio.name}",
                value=statistics.median(values),
                meaning=f"{ratio.meaning}; runs: " + ", ".join(f"{v:.3f}" for v in values),
            )
        )
    merged.notes = [
        f"{len(results)} runs of the whole scenario one after the other (`--repeat`); the "
        "notes below are the last run's, the per-run verdicts in them apply to that run only, "
        "and the medians above are the figures to compare with the targets.",
        *results[-1].notes,
    ]
    return merged


def verdict_note(label: str, target: float, verdicts: dict[str, float]) -> str:
    """`target <label> >= T: <name> <value> meets|MISSES it; ... (met by: ...).`, one line for a
    ratio measured in several deployments."""
    met = [name for name, value in verdicts.items() if value >= target]
    return (
        f"target {label} >= {target}: "
        + "; ".join(
            f"{name} {value:.3f} {'meets' if value >= target else 'MISSES'} it"
            for name, value in verdicts.items()
        )
        + (f" (met by: {', '.join(met)})." if met else " (met by none).")
    )
