"""An in-process record of the list shapes each app was asked for recently, for index guidance.

A shape is an entity, its filters as (field, operator) pairs and its order; the record keeps how
often and when it was last seen, and the parameter values of its last request, so the guidance
can `EXPLAIN` the statement the list really runs with realistic values. Nothing here leaves the
process: the values are only ever sent back to the app's own database. Bounded per app (the
oldest shape goes first) and forgotten after `WINDOW_SECONDS`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

WINDOW_SECONDS: Final = 3600.0
MAX_SHAPES_PER_APP: Final = 200

Shape = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, bool], ...]]


@dataclass
class SeenShape:
    entity: str
    filters: tuple[tuple[str, str], ...]  # (field, operator)
    order: tuple[tuple[str, bool], ...]  # (field, descending), primary key last
    count: int
    last_seen: float  # time.time()
    params: Sequence[Any]  # the filter parameters of the last request


_SEEN: Final[dict[str, OrderedDict[Shape, SeenShape]]] = {}


def record(
    app: str,
    entity: str,
    filters: tuple[tuple[str, str], ...],
    order: tuple[tuple[str, bool], ...],
    params: Sequence[Any],
) -> None:
    shapes = _SEEN.setdefault(app, OrderedDict())
    key = (entity, filters, order)
    seen = shapes.get(key)
    now = time.time()
    if seen is None:
        shapes[key] = SeenShape(entity, filters, order, 1, now, params)
        if len(shapes) > MAX_SHAPES_PER_APP:
            shapes.popitem(last=False)
        return
    seen.count += 1
    seen.last_seen = now
    seen.params = params
    shapes.move_to_end(key)


def recent(app: str, window: float = WINDOW_SECONDS) -> list[SeenShape]:
    """The shapes of `app` seen within `window` seconds, most recent first."""
    shapes = _SEEN.get(app)
    if not shapes:
        return []
    cutoff = time.time() - window
    for key in [k for k, s in shapes.items() if s.last_seen < cutoff]:
        del shapes[key]
    return list(reversed(shapes.values()))


def forget(app: str) -> None:
    _SEEN.pop(app, None)
