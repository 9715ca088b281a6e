"""Sizes of the end-to-end scenarios: a small one that `./scripts/test` (and so CI) runs, and
the full one under the `full` marker, which it leaves out (`./scripts/test -m full` runs those).

The small size still exercises the behaviour under test (a kill mid-stream, several
dispatchers racing for the same rows, timeouts due at one instant); the full size is the volume
an issue asked for, which keeps the suite too long for every CI run on two cores.
"""

from __future__ import annotations

from typing import Any

import pytest


def sizes(small: int, full: int) -> list[Any]:
    """Parameters of a scenario's size: `small` by default, `full` marked `full`."""
    return [small, pytest.param(full, marks=pytest.mark.full)]
