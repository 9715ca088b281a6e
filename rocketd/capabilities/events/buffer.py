"""The in-memory event buffer: per-app queues of finished rows, bounded in total.

Requests only append (never wait, never fail): when the buffer is full the oldest rows of that
app's queue make room, then the new ones are dropped, and every row lost is counted. A queue
reaching the batch size wakes the flusher; otherwise it flushes on its interval.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from rocketd.tracing import EventRow


@dataclass
class AppQueue:
    """One app's waiting rows and the app's pool, kept from the last request: the flusher opens
    its own connection to the app's database with the pool's conninfo and options."""

    pool: AsyncConnectionPool[Any]
    rows: deque[EventRow] = field(default_factory=deque)


class EventBuffer:
    def __init__(self, capacity: int, batch_size: int, wake: Callable[[], None]) -> None:
        self.capacity = capacity
        self.batch_size = batch_size
        self._wake = wake
        self.queues: dict[str, AppQueue] = {}
        self.size = 0
        self.dropped = 0

    def add(self, app: str, pool: AsyncConnectionPool[Any], rows: list[EventRow]) -> None:
        queue = self.queues.get(app)
        if queue is None:
            queue = self.queues[app] = AppQueue(pool)
        else:
            queue.pool = pool
        overflow = self.size + len(rows) - self.capacity
        if overflow > 0:
            self._make_room(queue, rows, overflow)
        queue.rows.extend(rows)
        self.size += len(rows)
        if len(queue.rows) >= self.batch_size:
            self._wake()

    def _make_room(self, queue: AppQueue, rows: list[EventRow], overflow: int) -> None:
        """Drop `overflow` rows: this app's oldest first, then the newest that still do not fit."""
        older = min(overflow, len(queue.rows))
        for _ in range(older):
            queue.rows.popleft()
        self.size -= older
        self.dropped += older
        newer = overflow - older
        if newer > 0:
            del rows[len(rows) - newer :]
            self.dropped += newer

    def take(self, app: str, limit: int) -> tuple[AppQueue, list[EventRow]] | None:
        """Up to `limit` rows of `app`, oldest first, removed from the buffer."""
        queue = self.queues.get(app)
        if queue is None or not queue.rows:
            return None
        waiting = queue.rows
        count = min(limit, len(waiting))
        if count == len(waiting):  # the usual case: all of them, at C speed
            rows = list(waiting)
            waiting.clear()
        else:
            popleft = waiting.popleft
            rows = [popleft() for _ in range(count)]
        self.size -= count
        return queue, rows

    def give_back(self, app: str, rows: list[EventRow]) -> None:
        """Rows taken by a write that was cancelled, back at the front of their queue."""
        queue = self.queues.get(app)
        if queue is not None:
            queue.rows.extendleft(reversed(rows))
            self.size += len(rows)

    def apps_waiting(self) -> list[str]:
        return [name for name, queue in self.queues.items() if queue.rows]
