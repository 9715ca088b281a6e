"""The pieces of `serve --workers` that need no process: the count and the worker's notifier."""

from __future__ import annotations

import os

from rocketd.workers import MAX_DEFAULT_WORKERS, WorkerNotifier, worker_count


def test_zero_workers_means_one_per_core_capped() -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count(0) == max(1, min(cores, MAX_DEFAULT_WORKERS))
    assert worker_count(3) == 3


def test_a_worker_reports_to_its_supervisor_not_to_systemd() -> None:
    read_end, write_end = os.pipe()
    try:
        notifier = WorkerNotifier(write_end, heartbeat=1.0)
        assert notifier.watchdog_interval() == 1.0
        assert notifier.ready("listening") and notifier.watchdog() and notifier.stopping()
        assert notifier.notify(STATUS="anything") is False  # nothing the supervisor needs
        assert os.read(read_end, 16) == b"RWS"
        assert WorkerNotifier(write_end, heartbeat=None).watchdog_interval() is None
    finally:
        os.close(read_end)
        os.close(write_end)
