"""What a `rocketd serve` owns in its `data_dir` when it runs the embedded PostgreSQL.

Two things, always together:

* the **data-directory lock**, `<data_dir>/rocketd.lock`: an exclusive `flock` held for the whole
  life of the server (its pid is written inside). A second `rocketd serve` on the same data
  directory finds it taken and refuses to start, naming the holder, instead of sharing the port
  through SO_REUSEPORT and losing its database when the first one stops. CLI commands (`apps`,
  `backup`, ...) take it *shared* while they run: they may start the embedded server for
  themselves only when no server holds the directory, and a server does not start under them.
* the **embedded PostgreSQL**: started (or, when a crashed rocketd left one running, adopted)
  once the lock is held, and stopped on a clean shutdown. Holding the lock proves no other rocketd
  runs on the directory, so a live postmaster found there is an orphan and becomes ours.

With an external database nothing here is used: several instances may then share a `data_dir`
(e.g. for the local file storage), which the lock would forbid. `rocketd serve --workers N` takes
both in the supervisor process, never in a worker (rocketd.workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from rocketd.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from rocketd.logging import get_logger

__all__ = ["DataDirLock", "DataDirLocked", "EmbeddedDataDir"]

LOCK_FILE = "rocketd.lock"

log = get_logger("rocketd.data_dir")


class DataDirLocked(EmbeddedPostgresError):
    """Another rocketd process holds the data directory; the text says which and what to do."""


class DataDirLock:
    """The `flock` on `<data_dir>/rocketd.lock` (released by `release()` or process exit)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire_exclusive(self) -> None:
        """Take the lock for a server, or raise `DataDirLocked` naming the process holding it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise DataDirLocked(
                f"the data directory {self.data_dir} is in use by {who}: a second `rocketd"
                " serve` cannot share its embedded PostgreSQL. Stop the other one first, or"
                " give this one another data_dir (ROCKET_DATA_DIR) or a database URL"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def acquire_shared(self) -> bool:
        """Take the lock for a command; False (and nothing held) when a server holds it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def _open(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _holder(fd: int) -> str:
    """Who holds the lock `fd` could not take: a server (its pid is in the file) or commands."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        with contextlib.suppress(OSError, ValueError):
            return f"another rocketd server (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        return "another rocketd server"
    return "a rocketd command (apps, backup, restore, ...) running right now"


class EmbeddedDataDir:
    """The lock and the embedded PostgreSQL of one data directory, owned by one server.

    `start()` and `stop()` block (pg_ctl); call them before the event loop or in a thread.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.lock = DataDirLock(data_dir)
        self.postgres = EmbeddedPostgres(self.lock.data_dir)

    def start(self) -> str:
        """Lock the directory, then start or adopt the embedded PostgreSQL; return its DSN."""
        self.lock.acquire_exclusive()
        try:
            return self.postgres.start(adopt=True)
        except BaseException:
            self.lock.release()
            raise

    def stop(self) -> None:
        """Stop the embedded PostgreSQL (whoever started it), then release the lock."""
        try:
            if self.postgres.owned:
                self.postgres.stop()
        finally:
            self.lock.release()
