"""`rocketd serve --workers N`: one supervisor process and N worker processes on one port.

Each worker is a whole rocketd instance (its own pools, actors, metadata listener, background
work and HTTP server) listening on the same address with SO_REUSEPORT, so the kernel spreads
connections over them. Everything that must stay correct across instances (webhook claims,
workflow steps, scheduled jobs behind session advisory locks) is therefore correct across
workers too.

The supervisor serves no request. It

* owns the data directory when the embedded PostgreSQL is used (rocketd.data_dir: the lock and
  the server), before any worker exists, and hands the workers its DSN by `fork`;
* forks the workers, and forks a new one after a crash, after a backoff (0.5 s doubling to 30 s,
  afresh after a minute of running). A worker that exits before the whole group was ever
  ready is a start-up failure the operator must fix: the group stops and the supervisor exits 1;
* talks to systemd for the group: `READY=1` once every worker listens, `STOPPING=1` on SIGTERM,
  and one watchdog: it pings while at least one worker answers its own health check and kills a
  worker that stopped answering it for `WatchdogSec` (at least three heartbeats; the backoff
  restart follows);
* on SIGHUP, reopens its own log and passes SIGHUP to every worker, which reloads (rocketd.runtime
  `Runtime.reload`: logs reopened, live settings applied);
* on SIGTERM or SIGINT, passes SIGTERM to every worker (each drains like a single-process
  server, within `server.shutdown_timeout`), waits for all, stops the embedded PostgreSQL and
  exits 0;
* with `metrics.enabled`, gives the group one `PROMETHEUS_MULTIPROC_DIR` (a private temporary
  directory, unless the operator set one), so a scrape of `/metrics` on any worker covers all.

A worker reports to the supervisor over a pipe, one byte per event (`WorkerNotifier` stands in
for the systemd notifier the runtime uses); every log line of a worker carries `worker` (its
index). Workers die with the supervisor (`PR_SET_PDEATHSIG`), so a killed supervisor never leaves
them serving on a database it no longer looks after.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rocketd.config import Settings
from rocketd.data_dir import EmbeddedDataDir
from rocketd.logging import bind_process_fields, configure_logging, get_logger
from rocketd.systemd import FieldValue, SystemdNotifier

__all__ = ["MAX_DEFAULT_WORKERS", "WorkerGroup", "WorkerNotifier", "worker_count"]

log = get_logger("rocketd.workers")

MAX_DEFAULT_WORKERS = 8
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
HEALTHY_AFTER = 60.0
HEARTBEAT = 1.0  # seconds between a worker's health reports when systemd wants a watchdog
MISSED_HEARTBEATS = 3
KILL_GRACE = 30.0  # beyond server.shutdown_timeout, before a worker that will not stop is killed

_READY, _HEARTBEAT, _STOPPING = b"R", b"W", b"S"
_PR_SET_PDEATHSIG = 1
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)

# What a worker process runs: (settings, index, notifier) -> exit code.
WorkerMain = Callable[[Settings, int, "WorkerNotifier"], int]


def worker_count(configured: int) -> int:
    """`server.workers` (or `--workers`), 0 meaning one per usable core, at most 8."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


class WorkerNotifier(SystemdNotifier):
    """The runtime's notifier inside a worker: READY, WATCHDOG and STOPPING go to the supervisor
    (one byte each on a pipe), never to systemd, which only hears the supervisor."""

    def __init__(self, fd: int, heartbeat: float | None) -> None:
        super().__init__(environ={})
        self._fd = fd
        self._heartbeat = heartbeat

    @property
    def enabled(self) -> bool:
        return True

    def watchdog_interval(self) -> float | None:
        return self._heartbeat

    def notify(self, state: str | None = None, /, **fields: FieldValue) -> bool:
        message = b"".join(
            byte
            for key, byte in (("READY", _READY), ("WATCHDOG", _HEARTBEAT), ("STOPPING", _STOPPING))
            if key in fields
        )
        if not message:
            return False
        try:
            os.write(self._fd, message)
        except OSError:  # the supervisor is gone (PDEATHSIG follows) or the pipe is full
            return False
        return True


@dataclass
class _Worker:
    index: int
    pid: int = 0
    pipe: int = -1
    started_at: float = 0.0
    ready: bool = False
    last_heartbeat: float = 0.0
    failures: int = 0
    restart_at: float | None = None  # when a crashed worker is due to be forked again


@dataclass
class WorkerGroup:
    """The supervisor of `count` workers running `main`; `run()` returns the exit code."""

    settings: Settings
    count: int
    main: WorkerMain
    notifier: SystemdNotifier = field(default_factory=SystemdNotifier)
    workers: list[_Worker] = field(default_factory=list)
    _ever_ready: bool = False
    _signals: list[int] = field(default_factory=list)

    def run(self) -> int:
        # Before anything imports prometheus-client: it picks its storage at import.
        metrics_dir = self._share_metrics()
        embedded: EmbeddedDataDir | None = None
        if not self.settings.database.configured:
            from rocketd.runtime import settings_for_embedded

            embedded = EmbeddedDataDir(self.settings.data_dir)
            self.notifier.extend_timeout(120)
            self.settings = settings_for_embedded(self.settings, embedded.start())
        try:
            return self._supervise()
        finally:
            if embedded is not None:
                embedded.stop()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    def _share_metrics(self) -> Path | None:
        """With `/metrics` on, a private PROMETHEUS_MULTIPROC_DIR for the group (unless the
        operator set one): every worker writes its values there, and one scrape of any worker
        reports them all (rocketd.capabilities.events.metrics)."""
        if not self.settings.metrics.enabled or os.environ.get(METRICS_DIR_ENV):
            return None
        path = Path(tempfile.mkdtemp(prefix="rocketd-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(path)
        return path

    @staticmethod
    def _metrics_forget(pid: int) -> None:
        """Drop a dead worker's live gauges from the shared metrics (its counters stay)."""
        if os.environ.get(METRICS_DIR_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

    # ---------------------------------------------------------------- the loop

    def _supervise(self) -> int:
        server = self.settings.server
        log.info("starting workers", workers=self.count, address=f"{server.host}:{server.port}")
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _HANDLED}
        old_wakeup = signal.set_wakeup_fd(wake_write)
        try:
            self.workers = [_Worker(i) for i in range(self.count)]
            for worker in self.workers:
                self._fork(worker)
            failed = self._loop(wake_read)
            self._stop_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)
        log.info("stopped", workers=self.count)
        return 1 if failed else 0

    def _reload(self) -> None:
        """SIGHUP: reopen this process's log (after logrotate), then let every worker reload."""
        logs = self.settings.log
        with contextlib.suppress(OSError):  # the old handler stays when the file cannot open
            configure_logging(logs.level, logs.format, file=logs.file)
        self._forward(signal.SIGHUP)
        log.info("reload passed to the workers", workers=len(self.workers))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _loop(self, wake_read: int) -> bool:
        """Until SIGTERM/SIGINT (False) or a start-up failure (True)."""
        watchdog = self.notifier.watchdog_interval()
        next_ping = time.monotonic()
        while True:
            pipes = {w.pipe: w for w in self.workers if w.pipe >= 0}
            readable, _, _ = select.select([wake_read, *pipes], [], [], 0.25)
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            for fd in readable:
                if fd in pipes:
                    self._read_reports(pipes[fd])
            while self._signals:
                received = self._signals.pop(0)
                if received in (signal.SIGTERM, signal.SIGINT):
                    return False
                if received == signal.SIGHUP:
                    self._reload()
            if self._reap():
                return True
            now = time.monotonic()
            self._restart_due(now)
            self._kill_silent(now)
            if watchdog is not None and now >= next_ping:
                next_ping = now + watchdog
                if any(self._healthy(w, now) for w in self.workers):
                    self.notifier.watchdog()
                else:
                    log.warning("no worker is healthy; skipping the watchdog ping")

    def _read_reports(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.pipe, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting
            os.close(worker.pipe)
            worker.pipe = -1
            return
        now = time.monotonic()
        if _HEARTBEAT in data or _READY in data:
            worker.last_heartbeat = now
        if _READY in data and not worker.ready:
            worker.ready = True
            log.info("worker listening", worker=worker.index, pid=worker.pid)
            if not self._ever_ready and all(w.ready for w in self.workers):
                self._ever_ready = True
                server = self.settings.server
                self.notifier.ready(
                    f"{self.count} workers listening on {server.host}:{server.port}"
                )

    def _reap(self) -> bool:
        """Collect exited workers and plan their restart; True on a start-up failure."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return False
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            self._forget(worker)
            self._metrics_forget(pid)
            how = _describe_exit(status)
            if not self._ever_ready:
                log.error("a worker failed to start; stopping", worker=worker.index, exit=how)
                return True
            ran = time.monotonic() - worker.started_at
            worker.failures = 1 if ran >= HEALTHY_AFTER else worker.failures + 1
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (worker.failures - 1))
            worker.restart_at = time.monotonic() + delay
            log.error(
                "worker exited; restarting it",
                worker=worker.index,
                exit=how,
                ran_seconds=round(ran, 1),
                restart_in=delay,
            )

    def _restart_due(self, now: float) -> None:
        for worker in self.workers:
            if worker.restart_at is not None and now >= worker.restart_at:
                worker.restart_at = None
                self._fork(worker)

    def _healthy(self, worker: _Worker, now: float) -> bool:
        return worker.pid > 0 and worker.ready and now - worker.last_heartbeat <= self._silence

    @property
    def _silence(self) -> float:
        """How long a worker may go without a health report: three heartbeats, or as long as
        systemd would give a single process (`WatchdogSec`, twice the ping interval), if longer;
        a busy machine slows a worker's loop without making it stuck."""
        interval = self.notifier.watchdog_interval() or 0.0
        return max(HEARTBEAT * MISSED_HEARTBEATS, 2 * interval)

    def _kill_silent(self, now: float) -> None:
        """Kill a ready worker that stopped reporting health (only with a watchdog)."""
        if self.notifier.watchdog_interval() is None:
            return
        for worker in self.workers:
            if worker.pid > 0 and worker.ready and not self._healthy(worker, now):
                log.error(
                    "worker stopped answering its health check; killing it",
                    worker=worker.index,
                    pid=worker.pid,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                worker.ready = False  # reaped (and restarted) on the next turn

    def _forward(self, sig: int) -> None:
        """Pass `sig` to every live worker (SIGHUP: each worker does what a single process
        would; the supervisor itself has nothing to reload)."""
        log.info("passing a signal to the workers", signal=signal.Signals(sig).name)
        for worker in self.workers:
            if worker.pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, sig)

    def _stop_all(self) -> None:
        self.notifier.stopping("stopping workers")
        log.info("shutting down workers", workers=self.count)
        for worker in self.workers:
            worker.restart_at = None
            if worker.pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.shutdown_timeout + KILL_GRACE
        while any(w.pid > 0 for w in self.workers):
            if time.monotonic() > deadline:
                for worker in self.workers:
                    if worker.pid > 0:
                        log.error("worker did not stop in time; killing it", worker=worker.index)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGKILL)
                deadline = float("inf")
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)  # polled, so the deadline above is kept
                continue
            for worker in self.workers:
                if worker.pid == pid:
                    log.info("worker stopped", worker=worker.index, exit=_describe_exit(status))
                    self._forget(worker)

    # ---------------------------------------------------------------- one worker

    def _fork(self, worker: _Worker) -> None:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        heartbeat = HEARTBEAT if self.notifier.watchdog_interval() is not None else None
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_end)
                _die_with_parent()
                for sig in _HANDLED:
                    signal.signal(sig, signal.SIG_DFL)
                # Until its runtime handles SIGHUP (a reload), one must not end the worker.
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                signal.set_wakeup_fd(-1)
                for other in self.workers:
                    if other.pipe >= 0:
                        os.close(other.pipe)
                os.environ.pop("NOTIFY_SOCKET", None)  # only the supervisor talks to systemd
                _log_worker_key(worker.index)
                code = self.main(self.settings, worker.index, WorkerNotifier(write_end, heartbeat))
            except BaseException:
                log.exception("worker crashed", worker=worker.index)
            finally:
                os._exit(code)
        os.close(write_end)
        os.set_blocking(read_end, False)
        worker.pid, worker.pipe = pid, read_end
        worker.started_at = worker.last_heartbeat = time.monotonic()
        worker.ready = False
        log.info("worker started", worker=worker.index, pid=pid)

    @staticmethod
    def _forget(worker: _Worker) -> None:
        if worker.pipe >= 0:
            os.close(worker.pipe)
        worker.pid, worker.pipe, worker.ready = 0, -1, False


def _log_worker_key(index: int) -> None:
    """Every log line of this process carries `worker` (a process field, not a context
    variable: the request middleware clears those for each request)."""
    bind_process_fields(worker=index)


def _die_with_parent() -> None:
    """SIGKILL this process when the supervisor dies (Linux `prctl(PR_SET_PDEATHSIG)`)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os._exit(1)


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
