"""Two rocketd configurations counted by the kernel: one data-API set served by side A and side
B (by default `--workers 1` and `--workers 2`: why a second worker gains less than the two-core
ceiling says) in alternating rounds, each measured run counted as well as timed.

Besides throughput and CPU per request (`bench/cpu.py`), each run attaches `perf stat` (Debian's
linux-perf; software events and tracepoints, which work where hardware counters do not) to the
rocketd processes and, separately, to the app database's PostgreSQL backends, and reports per
request: system calls, context switches (a process going to sleep or being preempted) and CPU
migrations. A thread samples `pg_stat_activity` every 10 ms meanwhile and reports what the
app's active backends were waiting on (`wait_event_type:wait_event`, `CPU` when nothing), so a
PostgreSQL cost that grows with a second worker shows whether it is lock or WAL waiting.

    .venv/bin/python -m bench.kernel_profile [--rounds 3] [--seconds 10] [create update get]
    .venv/bin/python -m bench.kernel_profile --tag instr --a-env ROCKET_SERVER_WORKERS=1 \
        --b-env ROCKET_SERVER_WORKERS=1 --b-env ROCKET_INSTRUMENTATION_ENABLED=true get create

It needs root (or the PostgreSQL user) to attach perf to the backends. Each side's environment
starts from one worker with instrumentation off; `--a-env` / `--b-env` (`KEY=VALUE`, repeated)
replace those defaults for that side (the default B is two workers). Output: a markdown table
per scenario on standard output and in `bench/results/kernel-profile-<tag>-<date>.md`.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg

from bench.ab_sets import DATA_API
from bench.cpu import CpuMeter, process_tree
from bench.harness import RESULTS_DIR, Bench, BenchConfig
from bench.processes import ServerProcess, exit_on_sigterm

EVENTS = (
    "raw_syscalls:sys_enter",
    "context-switches",
    "cpu-migrations",
    # minor faults: dear where the guest's page tables are shadowed by the host (nested PVM)
    "page-faults",
)
# With --by-syscall: every system call counted on its own too (the rows that differ most).
BY_SYSCALL = "syscalls:sys_enter_*"
SYSCALL_ROWS = 12
WAIT_POLL_S = 0.01
SIDES = ("A", "B")
BASE_ENV = {"ROCKET_SERVER_WORKERS": "1", "ROCKET_INSTRUMENTATION_ENABLED": "false"}
DEFAULT_B = ("ROCKET_SERVER_WORKERS=2",)


@dataclass
class Run:
    side: str
    rate: float
    cpu_us: dict[str, float]
    kernel: dict[str, dict[str, float]]  # part -> event -> count per request
    waits: Counter[str] = field(default_factory=Counter)


def switches(pids: list[int]) -> dict[str, float]:
    """Voluntary (the process went to sleep: nothing to do, or waiting) and involuntary (the
    scheduler took the core away) context switches of `pids` so far, from /proc."""
    totals = {"voluntary switches": 0.0, "involuntary switches": 0.0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("voluntary_ctxt_switches:"):
                totals["voluntary switches"] += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                totals["involuntary switches"] += int(line.split()[1])
    return totals


def backends(admin: psycopg.Connection[tuple[int]], dbname: str) -> list[int]:
    rows = admin.execute(
        "select pid from pg_stat_activity where datname = %s and backend_type = 'client backend'",
        (dbname,),
    ).fetchall()
    return [row[0] for row in rows]


class PerfStat:
    """`perf stat` counting EVENTS over `pids` until stopped."""

    def __init__(self, pids: list[int], out: Path, by_syscall: bool = False) -> None:
        self.out = out
        events = ",".join((*EVENTS, BY_SYSCALL) if by_syscall else EVENTS)
        argv = ["perf", "stat", "-x", ",", "-o", str(out), "-e", events]
        argv += ["-p", ",".join(str(p) for p in pids)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, float]:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        counts: dict[str, float] = {}
        for line in self.out.read_text().splitlines():
            fields = line.split(",")
            if len(fields) < 3 or not fields[0].strip().isdigit():
                continue
            if fields[2] in EVENTS or fields[2].startswith("syscalls:sys_enter_"):
                counts[fields[2]] = float(fields[0])
        return counts


class WaitSampler:
    """What the app database's active backends wait on, sampled from another connection."""

    def __init__(self, dsn: str, dbname: str) -> None:
        self.dsn = dsn
        self.dbname = dbname
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="wait-sampler", daemon=True)

    def _poll(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(WAIT_POLL_S):
                rows = conn.execute(
                    "select coalesce(wait_event_type || ':' || wait_event, 'CPU') "
                    "from pg_stat_activity where datname = %s and state = 'active' "
                    "and pid <> pg_backend_pid()",
                    (self.dbname,),
                ).fetchall()
                self.counts.update(row[0] for row in rows)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(
    bench: Bench,
    servers: dict[str, ServerProcess],
    tokens: dict[str, str],
    op: str,
    side: str,
    seconds: int,
    scratch: Path,
    by_syscall: bool = False,
) -> Run:
    variant = DATA_API.variant(op)
    DATA_API.reset(bench)
    time.sleep(2.0)
    server = servers[side]
    assert server.pid is not None, "the server is running"
    with psycopg.connect(bench.dsn("postgres"), autocommit=True) as admin:
        pg_pids = backends(admin, DATA_API.app_db)
    pids = {"rocketd": process_tree(server.pid), "postgres": pg_pids}
    perf = {
        part: PerfStat(found, scratch / f"{side}-{part}.txt", by_syscall)
        for part, found in pids.items()
    }
    before = {part: switches(found) for part, found in pids.items()}
    time.sleep(0.3)  # perf attached
    sampler = WaitSampler(bench.dsn("postgres"), DATA_API.app_db)
    with CpuMeter(DATA_API.app_db, server.pid) as meter, sampler:
        m = variant.run(bench, server, tokens[side], seconds, f"{side} {op}")
    counts = {part: stat.stop() for part, stat in perf.items()}
    for part, found in pids.items():
        after = switches(found)
        counts[part].update({kind: after[kind] - before[part][kind] for kind in after})
    requests = max(m.requests, 1)
    kernel = {
        part: {event: value / requests for event, value in events.items()}
        for part, events in counts.items()
    }
    return Run(side, m.rate, meter.per_request_us(m.requests), kernel, sampler.counts)


def _median(runs: list[Run], get: Callable[[Run], float]) -> float:
    values = [get(run) for run in runs]
    return statistics.median(values) if values else 0.0


def _cpu(run: Run, part: str) -> float:
    return run.cpu_us.get(part, 0.0)


def _counted(part: str, event: str) -> Callable[[Run], float]:
    """A run's count per request of `event` in `part` (0 when perf did not report it)."""
    return lambda run: run.kernel[part].get(event, 0.0)


def table(op: str, runs: list[Run]) -> list[str]:
    by_side = {side: [r for r in runs if r.side == side] for side in SIDES}
    lines = [
        f"### {op}",
        "",
        "| per request (median of rounds) | A | B | B / A |",
        "| --- | ---: | ---: | ---: |",
    ]

    def medians(get: Callable[[Run], float]) -> tuple[float, float]:
        return _median(by_side["A"], get), _median(by_side["B"], get)

    def row(label: str, get: Callable[[Run], float], digits: int = 1) -> None:
        a, b = medians(get)
        ratio = f"{b / a:.2f}" if a else "-"
        lines.append(f"| {label} | {a:,.{digits}f} | {b:,.{digits}f} | {ratio} |")

    def moved(part: str, event: str) -> float:
        a, b = medians(_counted(part, event))
        return abs(b - a)

    row("throughput (req/s)", lambda r: r.rate, 0)
    for part in ("rocketd", "postgres"):
        row(f"{part} CPU µs", functools.partial(_cpu, part=part), 0)
        for event in (*EVENTS, "voluntary switches", "involuntary switches"):
            row(f"{part} {event}", _counted(part, event), 2)
        calls = {e for one in runs for e in one.kernel[part] if e.startswith("syscalls:")}
        busiest = sorted(calls, key=functools.partial(moved, part), reverse=True)
        for event in busiest[:SYSCALL_ROWS]:
            row(f"{part} {event.removeprefix('syscalls:sys_enter_')}", _counted(part, event), 2)
    lines += ["", "PostgreSQL active backends, share of samples by wait event:", ""]
    lines += ["| wait | A | B |", "| --- | ---: | ---: |"]
    totals = {side: Counter[str]() for side in SIDES}
    for run in runs:
        totals[run.side].update(run.waits)
    names = sorted(set(totals["A"]) | set(totals["B"]), key=lambda n: -totals["B"][n])
    for name in names[:10]:
        shares = []
        for side in SIDES:
            whole = sum(totals[side].values()) or 1
            shares.append(f"{100 * totals[side][name] / whole:.1f} %")
        lines.append(f"| {name} | {' | '.join(shares)} |")
    return [*lines, ""]


def side_env(pairs: list[str] | None, default: tuple[str, ...] = ()) -> dict[str, str]:
    """BASE_ENV with `KEY=VALUE` pairs (or `default` when none were given) over it."""
    env = dict(BASE_ENV)
    for pair in pairs or default:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"not KEY=VALUE: {pair!r}")
        env[key] = value
    return env


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ops", nargs="*", default=["create", "update", "get"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--a-env", action="append", help="KEY=VALUE for side A (repeatable)")
    parser.add_argument("--b-env", action="append", help="KEY=VALUE for side B (repeatable)")
    parser.add_argument(
        "--by-syscall", action="store_true", help="count each system call too (slower)"
    )
    parser.add_argument("--tag", default="workers", help="result file kernel-profile-<tag>-<date>")
    args = parser.parse_args()
    envs = {"A": side_env(args.a_env), "B": side_env(args.b_env, DEFAULT_B)}
    if shutil.which("perf") is None:
        print("perf is missing: apt-get install linux-perf")
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="kernel-profile-"))
    results: dict[str, list[Run]] = {op: [] for op in args.ops}
    with Bench(BenchConfig(duration_s=args.seconds)) as bench:
        servers = {
            side: bench.rocketd_server(DATA_API.settings, extra_env=env, name=f"{side}-rocketd")
            for side, env in envs.items()
        }
        with servers["A"]:
            DATA_API.prepare(bench, servers["A"], None)
            with servers["B"]:
                tokens = {side: DATA_API.login(s.port) for side, s in servers.items()}
                for op in args.ops:  # warm-up: pools and caches of both
                    for side in SIDES:
                        DATA_API.variant(op).run(bench, servers[side], tokens[side], 2, "warm")
                for round_no in range(1, args.rounds + 1):
                    order = SIDES if round_no % 2 else SIDES[::-1]
                    for op in args.ops:
                        for side in order:
                            run = measure(
                                bench,
                                servers,
                                tokens,
                                op,
                                side,
                                args.seconds,
                                scratch,
                                args.by_syscall,
                            )
                            results[op].append(run)
                            print(
                                f"round {round_no} {op} {side}: {run.rate:,.0f} req/s "
                                f"cpu {run.cpu_us} kernel {run.kernel}",
                                flush=True,
                            )
                bench.stop(servers["B"])
            bench.stop(servers["A"])
        failures = list(bench.failures)
    described = {side: ", ".join(f"{k}={v}" for k, v in env.items()) for side, env in envs.items()}
    lines = [
        f"# Two configurations counted by the kernel: {args.tag} ({date.today().isoformat()})",
        "",
        f"- A: {described['A']}",
        f"- B: {described['B']}",
        "",
        f"{args.rounds} alternating rounds of {args.seconds} s per scenario, wrk 32 connections; "
        "`python -m bench.kernel_profile`. perf's tracepoint makes every system call dearer: "
        "read the counts here, CPU per request from `python -m bench ab`.",
        "",
    ]
    for op, runs in results.items():
        lines += table(op, runs)
    if failures:
        lines += ["Failures:", "", *(f"- {f}" for f in failures), ""]
    text = "\n".join(lines)
    print(text)
    out = RESULTS_DIR / f"kernel-profile-{args.tag}-{date.today().isoformat()}.md"
    out.write_text(text)
    print(f"written to {out}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
