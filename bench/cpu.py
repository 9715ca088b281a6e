"""Where the CPU of a measured run went, read from /proc: the rocketd process, the PostgreSQL
backends of one database, and the load generator.

A `CpuMeter` wraps one run (`with CpuMeter(app_db, server.pid) as meter: ...`); afterwards
`meter.seconds` holds CPU seconds per part and the wall time, and `meter.attach(measurement)`
puts CPU per request (µs) and cores busy into the measurement's params. The figures are the
processes' own user + system time, so other work on a shared machine does not inflate them
(it can still slow them through caches and frequency, which is why ratios are taken in
alternating rounds).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

from bench.report import Measurement

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPU_POLL_S = 0.1
# The parts in the order they are reported.
PARTS = ("rocketd", "postgres", "load generator")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (the workers of `serve --workers N` under their
    supervisor), parents first."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry)] = int(stat[1])
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, its in parents.items() if its == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def tree_cpu_s(pid: int) -> float | None:
    """`process_cpu_s` of `pid` plus its live descendants, None when `pid` is gone."""
    own = process_cpu_s(pid)
    if own is None:
        return None
    return own + sum(process_cpu_s(child) or 0.0 for child in process_tree(pid)[1:])


def children_cpu_s() -> float:
    """CPU seconds of this process's children that have exited (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU used during a run by the rocketd process `rocketd_pid` (if given), the PostgreSQL
    backends connected to `dbname` (found by their process title, so other databases' work on
    the same server does not count) and the load generator (a child of this process, counted
    once it exited).

    Backends are polled every CPU_POLL_S from a thread, so backends that start and exit within
    the run (pgbench's) are counted up to their last poll.
    """

    def __init__(self, dbname: str, rocketd_pid: int | None = None) -> None:
        self._rocketd_pid = rocketd_pid
        self._marker = f" {dbname} ".encode()
        self._classified: dict[int, bool] = {}
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="cpu-meter", daemon=True)
        self.seconds: dict[str, float] = {}

    def _is_backend(self, pid: int) -> bool:
        known = self._classified.get(pid)
        if known is None:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                cmdline = b""
            known = cmdline.startswith(b"postgres: ") and self._marker in cmdline
            self._classified[pid] = known
        return known

    def _sample(self, *, starting: bool) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or not self._is_backend(int(entry)):
                continue
            pid = int(entry)
            cpu = process_cpu_s(pid)
            if cpu is None:
                continue
            # A backend first seen after the start was born during the run: it starts at 0.
            self._first.setdefault(pid, cpu if starting else 0.0)
            self._last[pid] = cpu

    def _poll(self) -> None:
        while not self._stop.wait(CPU_POLL_S):
            self._sample(starting=False)

    def __enter__(self) -> CpuMeter:
        self._children0 = children_cpu_s()
        self._rocketd0 = tree_cpu_s(self._rocketd_pid) if self._rocketd_pid else None
        self._sample(starting=True)
        self._wall0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(starting=False)
        self.seconds = {
            "wall": time.monotonic() - self._wall0,
            "postgres": sum(self._last[pid] - self._first[pid] for pid in self._last),
            "load generator": children_cpu_s() - self._children0,
        }
        if self._rocketd_pid and self._rocketd0 is not None:
            now = tree_cpu_s(self._rocketd_pid)
            if now is not None:
                self.seconds["rocketd"] = now - self._rocketd0

    def per_request_us(self, requests: int) -> dict[str, float]:
        """CPU µs per request of each part measured (unrounded); empty without requests."""
        if not requests:
            return {}
        return {k: self.seconds[k] * 1e6 / requests for k in PARTS if k in self.seconds}

    def attach(self, measurement: Measurement) -> None:
        """Put CPU per request (µs) and cores busy into the measurement's params."""
        wall = self.seconds.get("wall", 0.0)
        per_request = self.per_request_us(measurement.requests)
        if not per_request or not wall:
            return
        measurement.params["cpu_us_per_request"] = {k: round(v) for k, v in per_request.items()}
        measurement.params["cores_busy"] = {
            k: round(self.seconds[k] / wall, 2) for k in per_request
        }


def cpu_note(m: Measurement) -> str | None:
    """`CPU per request, <name>: rocketd N µs (C cores), ...` from a measurement's params."""
    per_request = m.params.get("cpu_us_per_request")
    cores = m.params.get("cores_busy")
    if not isinstance(per_request, dict) or not isinstance(cores, dict):
        return None
    unit = "request" if m.tool == "wrk" else "transaction"
    parts = ", ".join(f"{k} {v} µs ({cores[k]:.2f} cores)" for k, v in per_request.items())
    return f"CPU per {unit}, {m.name}: {parts}."
