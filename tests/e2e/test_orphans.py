"""The harness's guard against processes outliving a killed test run (tests/support/orphans.py):
children die with the process that started them on its main thread, and a session's sweep stops
and removes the PostgreSQL clusters that dead test processes left, and nothing else."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from rocketd.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from tests.support.helpers import wait_until
from tests.support.orphans import (
    OWNER_FILE,
    RESERVED_PORT,
    die_with_test_process,
    owned_tempdir,
    sweep,
)
from tests.support.paths import ROOT


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (the state) on; empty when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaps yet counts as gone)."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.cluster_dir / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.fixture
def sweep_root() -> Iterator[Path]:
    """A directory to sweep instead of the real temporary directory. It is owned itself: should
    this test be killed, the next session's sweep stops the clusters it started in there."""
    root = owned_tempdir("sweep")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def clusters() -> Iterator[list[EmbeddedPostgres]]:
    started: list[EmbeddedPostgres] = []
    yield started
    for pg in started:
        with contextlib.suppress(EmbeddedPostgresError):
            pg.stop(mode="immediate")


def started_cluster(directory: Path, clusters: list[EmbeddedPostgres]) -> EmbeddedPostgres:
    """What `rocketd serve` leaves when it is killed: its embedded PostgreSQL, running."""
    pg = EmbeddedPostgres(directory, fast=True)
    clusters.append(pg)
    pg.start()
    return pg


def dead_owner(directory: Path) -> None:
    """Record a process that is gone as the directory's owner: a pid that is not running now
    (or, should it be reused, one with another start time)."""
    code = "import os; print(os.getpid())"
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    (directory / OWNER_FILE).write_text(f"{finished.stdout.strip()} 1\n")


async def test_a_sweep_stops_and_removes_what_dead_owners_left_and_keeps_the_rest(
    sweep_root: Path, clusters: list[EmbeddedPostgres]
) -> None:
    dead = owned_tempdir("dead", root=sweep_root)
    dead_owner(dead)
    left = started_cluster(dead, clusters)
    left_pid = postmaster_pid(left)
    reused = owned_tempdir("reused", root=sweep_root)  # our pid, but another process's start
    (reused / OWNER_FILE).write_text(f"{os.getpid()} 1\n")
    zombie = owned_tempdir("zombie", root=sweep_root)  # an owner that exited, not yet reaped
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    await wait_until(lambda: stat_fields(exited.pid)[:1] == ["Z"], "the child to exit")
    (zombie / OWNER_FILE).write_text(f"{exited.pid} {stat_fields(exited.pid)[19]}\n")
    live = owned_tempdir("live", root=sweep_root)
    kept = started_cluster(live, clusters)
    kept_pid = postmaster_pid(kept)
    unowned = sweep_root / "rocketd-test-unowned-1"  # no owner record: not ours to judge
    unowned.mkdir()

    report = sweep(sweep_root)
    exited.wait()

    assert report.removed == sorted([dead, reused, zombie]) and report.kept == []
    assert not dead.exists() and not reused.exists() and not zombie.exists()
    await wait_until(lambda: not running(left_pid), "the leftover postmaster to exit")
    assert live.exists() and unowned.exists()
    assert running(kept_pid)
    with psycopg.connect(kept.dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_sweep_never_stops_a_cluster_on_5432(sweep_root: Path) -> None:
    """Even in a directory of a dead owner: a process claiming 5432 stays, and so do its files."""
    dead = owned_tempdir("dead", root=sweep_root)
    dead_owner(dead)
    cluster = dead / "postgres"
    (cluster / "global").mkdir(parents=True)
    (cluster / "PG_VERSION").write_text("15\n")
    stand_in = subprocess.Popen(["sleep", "300"], cwd=cluster, preexec_fn=die_with_test_process())
    try:
        (cluster / "postmaster.pid").write_text(
            f"{stand_in.pid}\n{cluster}\n1700000000\n{RESERVED_PORT}\n/tmp\n127.0.0.1\n"
        )
        report = sweep(sweep_root)
        assert report.removed == []
        assert report.kept == [f"{dead}: a cluster there listens on {RESERVED_PORT}"]
        assert stand_in.poll() is None and (cluster / "postmaster.pid").exists()
    finally:
        stand_in.kill()
        stand_in.wait(timeout=10)


PARENT = """
import subprocess, sys, threading
from tests.support.orphans import die_with_test_process

main = subprocess.Popen(["sleep", "300"], preexec_fn=die_with_test_process())
spawned = []
thread = threading.Thread(
    target=lambda: spawned.append(
        subprocess.Popen(["sleep", "300"], preexec_fn=die_with_test_process())
    )
)
thread.start()
thread.join()  # had this child got the signal, it would come now, as the thread ends
print(main.pid, spawned[0].pid, flush=True)
sys.stdin.read()
"""


async def test_children_die_with_the_process_that_started_them_on_its_main_thread() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_test_process(),
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    from_main, from_thread = (int(pid) for pid in line.split())
    try:
        assert running(from_main) and running(from_thread)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        await wait_until(lambda: not running(from_main), "the main thread's child to exit")
        assert running(from_thread), "a child started off the main thread got the signal"
    finally:
        for pid in (from_main, from_thread):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait(timeout=10)
