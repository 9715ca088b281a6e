"""systemd service-manager integration: the sd_notify datagram protocol, without libsystemd.

This module owns everything rocketd says to systemd:

* reading ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from the environment;
* sending newline-separated ``KEY=value`` notifications (``READY=1``, ``STOPPING=1``,
  ``STATUS=...``, ``WATCHDOG=1``, ``EXTEND_TIMEOUT_USEC=...``) as one datagram over an
  ``AF_UNIX``/``SOCK_DGRAM`` socket, to a filesystem path or an abstract address (``@name``);
* the watchdog keep-alive loop, optionally gated by an async health check so that a wedged
  daemon stops pinging and systemd restarts it.

Everything is a no-op when ``NOTIFY_SOCKET`` is unset (running in a terminal, in a container,
under another supervisor). Send failures are logged and swallowed: if systemd has gone away,
that must never take the daemon down with it.

Typical use by the server entry point::

    notifier = SystemdNotifier()
    ...                                     # start listening
    notifier.ready("listening on 0.0.0.0:8080")
    if notifier.watchdog_interval() is not None:
        watchdog_task = asyncio.create_task(notifier.run_watchdog(health))
    ...                                     # on SIGTERM
    notifier.stopping()
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["HealthCheck", "SystemdNotifier"]

_log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[bool]]
"""An async callable that returns False (or raises) when the daemon should not be kept alive."""

FieldValue = str | int | bool


def _parse_address(raw: str) -> str | None:
    """Turn a NOTIFY_SOCKET value into an AF_UNIX address, or None if it is not usable."""
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        # Linux abstract namespace: the leading '@' stands for a NUL byte.
        return "\0" + raw[1:]
    return None


def _format_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    # A newline would start a new assignment and could smuggle in e.g. READY=1.
    return str(value).replace("\r", " ").replace("\n", " ")


class SystemdNotifier:
    """Speaks the sd_notify protocol to the service manager named by ``NOTIFY_SOCKET``.

    ``environ`` defaults to :data:`os.environ`; tests pass their own mapping. The environment is
    read once, at construction; only the ``WATCHDOG_PID`` comparison with :func:`os.getpid` is
    made at call time, so a forked child never inherits the parent's watchdog duty.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw_socket = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = _parse_address(raw_socket) if raw_socket else None
        if raw_socket and self._address is None:
            _log.warning(
                "NOTIFY_SOCKET=%r is neither a path nor an @abstract name; "
                "systemd notifications are disabled",
                raw_socket,
            )
        self._watchdog_usec = self._parse_positive_int(env, "WATCHDOG_USEC")
        self._watchdog_pid = self._parse_positive_int(env, "WATCHDOG_PID")
        self._watchdog_pid_set = bool(env.get("WATCHDOG_PID"))
        self._failing = False

    @staticmethod
    def _parse_positive_int(env: Mapping[str, str], key: str) -> int | None:
        raw = env.get(key, "").strip()
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            _log.warning("ignoring %s=%r: not an integer", key, raw)
            return None
        if value <= 0:
            _log.warning("ignoring %s=%r: not positive", key, raw)
            return None
        return value

    # ------------------------------------------------------------------ state

    @property
    def enabled(self) -> bool:
        """True when there is a notification socket to talk to."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), or None if not wanted.

        None when notifications are disabled, ``WATCHDOG_USEC`` is unset/invalid, or
        ``WATCHDOG_PID`` is set and names a process other than this one.
        """
        if not self.enabled or self._watchdog_usec is None:
            return None
        if self._watchdog_pid_set and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2_000_000

    # ------------------------------------------------------------------ sending

    def notify(self, state: str | None = None, /, **fields: FieldValue) -> bool:
        """Send one notification; returns True if the datagram was handed to the kernel.

        Either a raw, already formatted ``state`` (``"READY=1\\nSTATUS=up"``), keyword fields
        (``notify(READY=1, STATUS="up")``), or both (raw text first). Field values have CR/LF
        replaced by spaces and booleans become ``1``/``0``. Returns False without doing anything
        when disabled, and False (after logging) when the send fails.
        """
        if self._address is None:
            return False
        lines: list[str] = []
        if state:
            lines.append(state.rstrip("\n"))
        lines.extend(f"{key}={_format_value(value)}" for key, value in fields.items())
        if not lines:
            raise ValueError("notify() needs a state string or at least one field")
        payload = "\n".join(lines).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never block the event loop: a full receive queue drops this notification.
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            # Warn once per outage, then stay quiet until a send succeeds again.
            level = logging.DEBUG if self._failing else logging.WARNING
            _log.log(level, "systemd notification to %r failed: %s", self._display_address, exc)
            self._failing = True
            return False
        if self._failing:
            _log.info("systemd notifications are being delivered again")
            self._failing = False
        return True

    @property
    def _display_address(self) -> str:
        addr = self._address or ""
        return "@" + addr[1:] if addr.startswith("\0") else addr

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (``READY=1``), optionally with a status line."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd we are shutting down (``STOPPING=1``)."""
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Set the free-form status line shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Send one keep-alive ping (``WATCHDOG=1``)."""
        return self.notify(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to finish starting or stopping (``EXTEND_TIMEOUT_USEC``).

        Useful while a slow step runs, e.g. the first ``initdb`` of the embedded PostgreSQL.
        """
        return self.notify(EXTEND_TIMEOUT_USEC=max(1, int(seconds * 1_000_000)))

    # ------------------------------------------------------------------ watchdog loop

    async def run_watchdog(self, health: HealthCheck | None = None) -> None:
        """Ping ``WATCHDOG=1`` every :meth:`watchdog_interval` seconds until cancelled.

        With ``health``, each tick first awaits it (bounded by one interval); when it returns
        False, raises, or times out the ping is skipped, so that if the daemon stays unhealthy
        systemd's ``WatchdogSec`` expires and it restarts the service. Returns at once when no
        watchdog is wanted. Ticks are scheduled on a fixed cadence so a slow health check does
        not push pings apart.
        """
        interval = self.watchdog_interval()
        if interval is None:
            return
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            if await self._healthy(health, interval):
                self.watchdog()
            next_tick += interval
            now = loop.time()
            if next_tick < now:
                # We overran (a slow health check); skip the missed ticks instead of bursting.
                next_tick = now
            await asyncio.sleep(next_tick - now)

    @staticmethod
    async def _healthy(health: HealthCheck | None, timeout: float) -> bool:
        if health is None:
            return True
        try:
            ok = await asyncio.wait_for(health(), timeout)
        except TimeoutError:
            _log.warning(
                "health check did not answer within %.1fs; skipping watchdog ping", timeout
            )
            return False
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("health check failed; skipping watchdog ping")
            return False
        if not ok:
            _log.warning("health check reported unhealthy; skipping watchdog ping")
            return False
        return True
