"""The installed write stages, in the order they run, are exactly the table in docs/rules.md."""

from __future__ import annotations

import re

import pytest

from rocketd.capabilities import INSTALLED
from rocketd.engine.pipeline import ALL_MODES, Phase, Stage, WriteMode, order_stages
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "rules.md"
ROW = re.compile(r"^\| (\w+) \| (\d+) \| `([\w.]+)` \| ([A-Z, ]+) \| (yes|no) \|$")


def documented() -> list[tuple[str, int, str, str, bool]]:
    section = DOC.read_text().split("## The write pipeline", 1)[1].split("\n## ", 1)[0]
    rows = [ROW.match(line) for line in section.splitlines()]
    return [(m[1], int(m[2]), m[3], m[4], m[5] == "yes") for m in rows if m is not None]


def modes_text(modes: WriteMode) -> str:
    return ", ".join(
        m.name or "" for m in (WriteMode.API, WriteMode.SYSTEM, WriteMode.IMPORT) if m in modes
    )


def installed() -> list[tuple[str, int, str, str, bool]]:
    stages = order_stages(stage for cap in INSTALLED for stage in cap.stages)
    return [(s.phase.value, s.order, s.name, modes_text(s.modes), s.children) for s in stages]


def test_the_documented_order_is_the_installed_order() -> None:
    table = documented()
    assert table, "docs/rules.md has no stage table under '## The write pipeline'"
    assert installed() == table


def test_the_table_lists_phases_in_the_order_they_run() -> None:
    phases = [row[0] for row in documented()]
    rank = [list(Phase).index(Phase(p)) for p in phases]
    assert rank == sorted(rank)


async def _noop(ctx: object) -> None:
    return None


def test_two_stages_in_one_slot_are_refused() -> None:
    one = Stage("a.x", Phase.AFTER_WRITE, 10, _noop)
    two = Stage("b.y", Phase.AFTER_WRITE, 10, _noop)
    with pytest.raises(ValueError, match="share after_write order 10"):
        order_stages([one, two])


def test_a_stage_with_all_modes_reads_as_all_three() -> None:
    assert modes_text(ALL_MODES) == "API, SYSTEM, IMPORT"
