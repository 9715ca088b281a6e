"""`python -m bench.profile [op ...]`: where rocketd's CPU goes on the data API, sampled by py-spy.

One rocketd process on the data-api set's seeded app (`bench/ab_sets.py` DATA_API: 10,000
orders); for each operation (list, get, create, update, nested; default all) a warm-up wrk run,
then a measured wrk run while `py-spy record` samples the server process. Per operation it
writes `<out>/<op>.txt` (py-spy's collapsed stacks) and prints two top-N tables in Markdown:
functions by own samples ("self") and by samples with the function anywhere on the stack
("total"), each as a share of the samples of the run, next to the run's CPU µs per request
(from /proc, `bench/cpu.py`). `--svg` also writes py-spy's flame graph `<out>/<op>.svg` (a
second run).

py-spy must be installed (`.venv/bin/pip install py-spy`) and allowed to ptrace the server
(root, or kernel.yama.ptrace_scope = 0). Sampling costs the server a little CPU, so take the µs
per request of these runs as context only; measure with `python -m bench ab`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.ab_sets import DATA_API
from bench.cpu import CpuMeter
from bench.harness import DEFAULT_PG_URL, SETTLE_S, Bench, BenchConfig
from bench.processes import exit_on_sigterm
from bench.report import Measurement, ScenarioResult

OPS = ("get", "list", "create", "update", "nested")
SAMPLE_RATE = 250  # per second


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def frame_name(frame: str) -> str:
    """`handle (rocketd/http/crud.py:42)` -> `handle (rocketd/http/crud.py)`: lines apart, one
    function is one row."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/rocketd/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/rocketd/":
                path = "rocketd/" + path
            break
    return f"{name} ({path})" if path else name


def sample_counts(collapsed: str) -> tuple[Counter[str], Counter[str], int]:
    """py-spy's collapsed output as samples per function: where it was the running frame
    ("own"), where it was anywhere on the stack ("total"), and the number of samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        # The first frame is the thread ("process 123:..."/"thread (...)") in some modes.
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    return own, total, samples


def top_tables(collapsed: str, n: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Self and total shares of the `n` heaviest functions in py-spy's collapsed output."""
    own, total, samples = sample_counts(collapsed)
    if samples == 0:
        return [], []

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100.0 * c / samples) for name, c in counter.most_common(n)]

    return shares(own), shares(total)


def _table(title: str, rows: list[tuple[str, float]]) -> str:
    lines = [f"| {title} | % of samples |", "| --- | ---: |"]
    lines += [f"| `{name}` | {share:.1f} |" for name, share in rows]
    return "\n".join(lines)


def _record(
    pid: int, out: Path, fmt: str, seconds: int, run_load: Callable[[], Measurement]
) -> Measurement:
    spy = subprocess.Popen(
        [
            _py_spy(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(SAMPLE_RATE),
            "--duration",
            str(seconds),
            "--format",
            fmt,
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return run_load()
    finally:
        spy.wait(timeout=seconds + 60)


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("ops", nargs="*", help=f"operations (default: {' '.join(OPS)})")
    parser.add_argument("--duration", type=int, default=10, help="seconds per sampled run")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    parser.add_argument("--svg", action="store_true", help="also write flame graph SVGs")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = DATA_API
    result = ScenarioResult("profile", "py-spy profile of the data API")
    with Bench(BenchConfig(pg_url=args.pg_url, duration_s=args.duration)) as bench:
        with bench.rocketd_server(dataset.settings) as server:
            dataset.prepare(bench, server, None)
            token = dataset.login(server.port)
            assert server.pid is not None
            for op in args.ops or OPS:
                if op not in dataset.scenarios:
                    raise SystemExit(f"unknown operation {op}; choose from {', '.join(OPS)}")
                run = dataset.variant(op).run
                dataset.reset(bench)
                run(bench, server, token, 2, f"{op} (warm-up)")
                time.sleep(SETTLE_S)
                raw = args.out / f"{op}.txt"
                with CpuMeter(dataset.app_db, server.pid) as meter:
                    measured = _record(
                        server.pid,
                        raw,
                        "raw",
                        args.duration,
                        partial(run, bench, server, token, args.duration, op),
                    )
                meter.attach(measured)
                per_request = measured.params.get("cpu_us_per_request")
                cpu = per_request.get("rocketd", "?") if isinstance(per_request, dict) else "?"
                own, total = top_tables(raw.read_text(), args.top)
                print(f"\n### {op}\n")
                print(
                    f"{measured.rate:.0f} req/s; rocketd CPU {cpu} µs per request (under py-spy)\n"
                )
                print(_table("self", own) + "\n")
                print(_table("total (on the stack)", total) + "\n", flush=True)
                if args.svg:
                    dataset.reset(bench)
                    time.sleep(SETTLE_S)
                    _record(
                        server.pid,
                        args.out / f"{op}.svg",
                        "flamegraph",
                        args.duration,
                        partial(run, bench, server, token, args.duration, op),
                    )
            dataset.reset(bench)
            bench.stop(server)
    for failure in [*result.failures, *bench.failures]:
        print(f"failure: {failure}", file=sys.stderr)
    return 1 if result.failures or bench.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
