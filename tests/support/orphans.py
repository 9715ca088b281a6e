"""What a killed test run would leave running, and how it is kept from outliving the run.

Two kinds of processes can outlive a test process that is killed (SIGKILL, a CI timeout):

* Its direct children (`rocketd serve`, PgBouncer). They are started with
  `preexec_fn=die_with_test_process()`: the kernel sends them SIGTERM when the test process
  dies (`PR_SET_PDEATHSIG`), and they shut down as on any SIGTERM (rocketd stops its workers and
  its embedded PostgreSQL). The signal is tied to the *thread* that started the child, so it is
  only set up when that thread is the main thread, which lives as long as the process; a child
  started from another thread (`asyncio.to_thread`) gets none.
* PostgreSQL clusters started with `pg_ctl`, which detach from whoever started them (the replica
  pair of tests/support/replica.py, the embedded PostgreSQL of a `rocketd serve` that was killed
  before it could stop it). They live in directories made by `owned_tempdir`, which records the
  test process that made them. `sweep()`, run when a test session starts, looks at those
  directories only (`rocketd-test-*` in the temporary directory, with an owner record): where
  the owner is gone, it stops the clusters inside (`pg_ctl stop -m immediate`) and removes the
  directory (`remove_owned_dir`, which fixtures also use on their own directories). It never
  touches a directory whose owner still runs, one without an owner record, anything outside
  these directories, or a cluster on port 5432 (the machine's own server).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rocketd.db.pg_binaries import (
    candidate_bindirs,
    extra_envs,
    major_of,
    reported_version,
    subprocess_env,
)

PREFIX = "rocketd-test-"
OWNER_FILE = ".rocketd-test-owner"  # "<pid> <start time in clock ticks>" of the test process
RESERVED_PORT = 5432  # the machine's own PostgreSQL: never stopped, whatever the directory says
CLUSTER_DEPTH = 3  # how deep below an owned directory clusters are looked for

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- direct children


def die_with_test_process(
    then: Callable[[], None] | None = None,
) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that has the child sent SIGTERM when this process
    dies, followed by `then` (another preexec step, or None). Off the main thread it is just
    `then`: the signal would come when the calling thread ends, not the process."""
    if threading.current_thread() is not threading.main_thread():
        return then
    parent = os.getpid()
    prctl = _libc.prctl
    term = int(signal.SIGTERM)

    def preexec() -> None:  # in the child, before exec: nothing that imports or allocates much
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # the test process died before prctl took effect
            os.kill(os.getpid(), term)
        if then is not None:
            then()

    return preexec


# ------------------------------------------------------------------------ owned directories


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/<pid>/stat), None when it is gone or
    a zombie that nobody reaped yet; with the pid it names one process, even after the pid is
    reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    if len(fields) <= 19 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def owned_tempdir(kind: str, mode: int = 0o755, root: Path | None = None) -> Path:
    """A new `rocketd-test-<kind>-*` directory in the temporary directory (or `root`), recording
    this process as its owner, so that a later session's `sweep` cleans it up if this one is
    killed. `mode` 0o755 or wider lets PostgreSQL, run as another account under root, enter it."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-", dir=root))
    path.chmod(mode)
    pid = os.getpid()
    start = _start_time(pid)
    assert start is not None, "/proc must be readable: the sweep identifies owners by it"
    (path / OWNER_FILE).write_text(f"{pid} {start}\n")
    return path


def _owner_alive(directory: Path) -> bool | None:
    """Whether the process that made `directory` still runs; None without a readable record."""
    try:
        pid_text, start = (directory / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return _start_time(pid) == start


# --------------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int | None


def _clusters(directory: Path) -> Iterator[Path]:
    """PostgreSQL data directories below `directory` (not following links)."""
    for current, subdirs, files in os.walk(directory, onerror=lambda error: None):
        here = Path(current)
        if "PG_VERSION" in files and "global" in subdirs:
            subdirs.clear()
            yield here
        elif len(here.relative_to(directory).parts) >= CLUSTER_DEPTH:
            subdirs.clear()


def _postmaster(cluster: Path) -> _Postmaster | None:
    """The postmaster serving `cluster`, if one runs: the pid in postmaster.pid, provided that
    process's working directory is this cluster (a stale file's pid may be anybody now)."""
    try:
        lines = (cluster / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError, IndexError):
        return None
    if cwd != str(cluster.resolve()):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    return _Postmaster(pid, port)


def _pg_ctl(major: str) -> tuple[Path, dict[str, str]] | None:
    """A `pg_ctl` that runs, of PostgreSQL `major` when there is one, and its environment."""
    fallback: tuple[Path, dict[str, str]] | None = None
    for bindir in candidate_bindirs():
        pg_ctl = bindir / "pg_ctl"
        for extra in extra_envs(bindir):
            env = subprocess_env(extra)
            version = reported_version(pg_ctl, env)
            if version is None:
                continue
            if major_of(version) == major:
                return pg_ctl, env
            fallback = fallback or (pg_ctl, env)
            break
    return fallback


def _stop(cluster: Path) -> None:
    """`pg_ctl stop -m immediate`, as the cluster's owner when we are root (pg_ctl refuses root)."""
    try:
        major = (cluster / "PG_VERSION").read_text().strip()
    except OSError:
        return
    found = _pg_ctl(major)
    if found is None:
        return
    pg_ctl, env = found
    account: dict[str, Any] = {}
    owner = cluster.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        account = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # the caller checks the result
        subprocess.run(
            [str(pg_ctl), "stop", "-D", str(cluster), "-m", "immediate", "-w", "-t", "60"],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=90,
            check=False,
            **account,
        )


# -------------------------------------------------------------------------------- the sweep


def remove_owned_dir(directory: Path) -> str | None:
    """Stop the clusters running below `directory` and remove it; or, when that cannot be done,
    say why and keep it (a removed data directory would hide a running server from the next
    sweep)."""
    running = [(c, p) for c in _clusters(directory) if (p := _postmaster(c)) is not None]
    if any(p.port == RESERVED_PORT for _, p in running):
        return f"{directory}: a cluster there listens on {RESERVED_PORT}"
    for cluster, _ in running:
        _stop(cluster)
    still = [str(c) for c, _ in running if _postmaster(c) is not None]
    if still:
        return f"{directory}: would not stop: {', '.join(still)}"
    shutil.rmtree(directory, ignore_errors=True)
    return None


@dataclass
class SweepReport:
    removed: list[Path]
    kept: list[str]  # directories of dead owners that could not be cleaned up, and why


def sweep(root: Path | None = None) -> SweepReport:
    """Clean up (`remove_owned_dir`) every owned directory in the temporary directory (or
    `root`) whose owner process is gone."""
    report = SweepReport([], [])
    base = root or Path(tempfile.gettempdir())
    for directory in sorted(base.glob(PREFIX + "*")):
        if directory.is_symlink() or not directory.is_dir() or _owner_alive(directory) is not False:
            continue
        reason = remove_owned_dir(directory)
        if reason is None:
            report.removed.append(directory)
        else:
            report.kept.append(reason)
    return report
