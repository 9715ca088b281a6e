"""Throttling of failed login-like attempts (logins, invite acceptance; later password reset).

Two counters decide whether an attempt may run:

- per account (the email, case-insensitively, within a scope the caller names: the platform, one
  app): after
  `account_max_failures` failures within `account_window` the account answers 429 for a backoff
  of `backoff_initial`; every further failure before the streak ends doubles it, up to
  `backoff_max`. The streak ends with a success, or once a whole window has passed since the last
  backoff ended without a failure;
- per client address (across the platform and every app): after `address_max_failures` failures
  within `address_window` the address answers 429 until the oldest of them leaves the window.

An attempt is counted as a failure *before* it runs (reserved), in one atomic step that first
checks both counters; a success takes the reservation back (and resets the account). So parallel
attempts cannot slip past the limit, and a throttled attempt is answered without looking at the
password (no bcrypt, nothing that depends on it): the right password gets the same 429 as a wrong
one. Throttled attempts change no counter, so hammering a throttled account or address does not
lengthen its wait; each backoff ends at most `backoff_max` after it began.

The state lives in a `ThrottleStore` shared by every instance (`throttle_stores`); time is the
store's clock, so instances with skewed clocks agree. The decisions themselves are pure functions
of (counter, limit, now), tested without a database.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Protocol, TypeVar

from rocketd.config import LoginThrottleSettings
from rocketd.errors import ApiError, RateLimited
from rocketd.logging import get_logger

log = get_logger("rocketd.auth.throttle")

# Doubling stops mattering long before this; it keeps 2**level finite.
MAX_LEVEL: Final = 32
# IPv6 clients usually hold a whole /64: count them per /64, not per address.
IPV6_PREFIX: Final = 64

T = TypeVar("T")


# --- the pure part -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One counter's rule. With a backoff it locks (accounts); without, it blocks until the
    window passes (addresses)."""

    max_failures: int
    window: timedelta
    backoff_initial: timedelta | None = None
    backoff_max: timedelta | None = None

    def backoff(self, level: int) -> timedelta:
        assert self.backoff_initial is not None and self.backoff_max is not None
        doubled: timedelta = self.backoff_initial * 2 ** min(level, MAX_LEVEL)
        return min(doubled, self.backoff_max)


@dataclass(frozen=True)
class Counter:
    """The state of one key: recent failures (oldest first, at most `max_failures` kept), the
    number of backoffs served in the current streak, and the end of the current backoff."""

    failures: tuple[datetime, ...] = ()
    level: int = 0
    locked_until: datetime | None = None


EMPTY: Final = Counter()


def _recent(counter: Counter, limit: Limit, now: datetime) -> tuple[datetime, ...]:
    return tuple(t for t in counter.failures if t > now - limit.window)


def blocked_until(counter: Counter, limit: Limit, now: datetime) -> datetime | None:
    """When `counter` stops refusing attempts, or None when it does not refuse them now."""
    if limit.backoff_initial is not None:
        locked = counter.locked_until
        return locked if locked is not None and locked > now else None
    recent = _recent(counter, limit, now)
    if len(recent) < limit.max_failures:
        return None
    return recent[-limit.max_failures] + limit.window


def record_failure(counter: Counter, limit: Limit, now: datetime) -> Counter:
    """`counter` after one more failure at `now` (which must not be blocked)."""
    level = counter.level
    if level and counter.locked_until is not None and now >= counter.locked_until + limit.window:
        level = 0  # a whole quiet window after the last backoff: the streak is over
    failures = (*_recent(counter, limit, now), now)[-limit.max_failures :]
    if limit.backoff_initial is not None and (level or len(failures) >= limit.max_failures):
        return Counter(failures, min(level + 1, MAX_LEVEL), now + limit.backoff(level))
    return Counter(failures, level, counter.locked_until)


def forget_failure(counter: Counter, at: datetime) -> Counter:
    """`counter` without the failure recorded at `at` (a reservation that turned out fine)."""
    failures = list(counter.failures)
    if at in failures:
        failures.remove(at)
    return replace(counter, failures=tuple(failures))


def remaining(counter: Counter, limit: Limit, now: datetime) -> int:
    """How many more failures `counter` takes before it refuses attempts."""
    if blocked_until(counter, limit, now) is not None:
        return 0
    if counter.level and limit.backoff_initial is not None:
        return 1  # in a streak: the next failure locks again
    return max(0, limit.max_failures - len(_recent(counter, limit, now)))


def resets_at(counter: Counter, limit: Limit, now: datetime) -> datetime:
    """When the counter is back to its full allowance, if nothing else fails."""
    until = blocked_until(counter, limit, now)
    if until is not None:
        return until
    recent = _recent(counter, limit, now)
    return recent[-1] + limit.window if recent else now


def expires_at(counter: Counter, limit: Limit) -> datetime | None:
    """When the stored counter means nothing any more (the store may drop it then)."""
    ends = [t + limit.window for t in counter.failures[-1:]]
    if counter.locked_until is not None:
        ends.append(counter.locked_until + limit.window)  # the streak's memory
    return max(ends) if ends else None


# --- the store -----------------------------------------------------------------------------------

# Stored: the counter and when it may be dropped; None deletes the key.
Stored = tuple[Counter, datetime] | None
Change = Callable[[Mapping[str, Counter], datetime], tuple[Mapping[str, Stored], T]]


class ThrottleStore(Protocol):
    async def update(self, keys: Sequence[str], change: Change[T]) -> T:
        """Atomically (against every instance): read the counters of `keys` (missing ones are
        `EMPTY`), call `change(counters, now)` with the store's clock, write what it returns for
        each key it names, and return its result."""
        ...

    async def purge(self) -> int:
        """Drop expired counters; the number dropped."""
        ...

    async def close(self) -> None:
        """Release what the store holds of its own (connections)."""
        ...


# --- the throttle --------------------------------------------------------------------------------


def account_key(scope: str, email: str) -> str:
    """The account's key: case-insensitive, fixed length (the email is whatever was typed)."""
    digest = hashlib.sha256(email.lower().encode("utf-8", "surrogatepass")).hexdigest()
    return f"account:{scope}:{digest}"


def address_key(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address[:100]}"
    if isinstance(parsed, ipaddress.IPv6Address):
        return f"address:{ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False)}"
    return f"address:{parsed}"


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


@dataclass(frozen=True)
class Reservation:
    """An attempt that was allowed and counted; `headers` describe the tighter counter."""

    at: datetime
    keys: tuple[str, ...]
    headers: dict[str, str]


class LoginThrottle:
    """Counts failed attempts per account and per client address; see the module docstring."""

    def __init__(self, store: ThrottleStore, settings: LoginThrottleSettings) -> None:
        self._store = store
        self.apply(settings)

    def apply(self, settings: LoginThrottleSettings) -> None:
        """Take new limits (SIGHUP); counters already stored are kept and judged by them."""
        self._enabled = settings.enabled
        self.account_limit = Limit(
            settings.account_max_failures,
            timedelta(seconds=settings.account_window),
            timedelta(seconds=settings.backoff_initial),
            timedelta(seconds=max(settings.backoff_max, settings.backoff_initial)),
        )
        self.address_limit = Limit(
            settings.address_max_failures, timedelta(seconds=settings.address_window)
        )

    @property
    def store(self) -> ThrottleStore:
        return self._store

    @asynccontextmanager
    async def attempt(
        self, *, address: str, scope: str, account: str | None = None
    ) -> AsyncIterator[None]:
        """Run one attempt from client `address` (on `account` of `scope`, when the attempt names
        one): 429 `RATE_LIMITED` before the body when a counter refuses it; the body leaving
        normally is a success, an exception a failure (an `ApiError` gets the `RateLimit-*`
        headers of the tighter counter)."""
        if not self._enabled:
            yield
            return
        limits = {address_key(address): self.address_limit}
        if account is not None:
            limits[account_key(scope, account)] = self.account_limit
        reservation = await self._reserve(limits)
        try:
            yield
        except ApiError as err:
            err.headers.update(reservation.headers)
            raise
        try:
            await self._release(reservation, limits)
        except Exception:
            # The attempt succeeded; failing to take its reservation back only leaves one counted
            # failure that expires with its window. The client still gets its answer.
            log.warning("could not release a login throttle reservation", exc_info=True)

    async def _reserve(self, limits: Mapping[str, Limit]) -> Reservation:
        def change(
            counters: Mapping[str, Counter], now: datetime
        ) -> tuple[Mapping[str, Stored], Reservation | RateLimited]:
            refusals = [
                (until, limit)
                for key, limit in limits.items()
                if (until := blocked_until(counters[key], limit, now)) is not None
            ]
            if refusals:
                until, limit = max(refusals, key=lambda r: r[0])
                return {}, _refusal(until - now, limit)
            written: dict[str, Stored] = {}
            tightest: tuple[int, Limit, datetime] | None = None
            for key, limit in limits.items():
                after = record_failure(counters[key], limit, now)
                written[key] = _stored(after, limit)
                left = remaining(after, limit, now)
                if tightest is None or left < tightest[0]:
                    tightest = (left, limit, resets_at(after, limit, now))
            assert tightest is not None
            left, limit, reset = tightest
            return written, Reservation(now, tuple(limits), _headers(limit, left, reset - now))

        outcome = await self._store.update(sorted(limits), change)
        if isinstance(outcome, RateLimited):
            raise outcome
        return outcome

    async def _release(self, reservation: Reservation, limits: Mapping[str, Limit]) -> None:
        """A success: the account starts over, the address forgets this attempt."""

        def change(
            counters: Mapping[str, Counter], now: datetime
        ) -> tuple[Mapping[str, Stored], None]:
            written: dict[str, Stored] = {}
            for key, limit in limits.items():
                if limit is self.account_limit:
                    written[key] = None
                else:
                    written[key] = _stored(forget_failure(counters[key], reservation.at), limit)
            return written, None

        await self._store.update(sorted(limits), change)


def _stored(counter: Counter, limit: Limit) -> Stored:
    ends = expires_at(counter, limit)
    return None if ends is None else (counter, ends)


def _headers(limit: Limit, left: int, reset: timedelta) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit.max_failures),
        "RateLimit-Remaining": str(left),
        "RateLimit-Reset": str(_seconds(reset)),
    }


def _refusal(wait: timedelta, limit: Limit) -> RateLimited:
    seconds = _seconds(wait)
    return RateLimited(
        f"Too many failed attempts; try again in {seconds} seconds",
        headers={"Retry-After": str(seconds), **_headers(limit, 0, wait)},
    )
