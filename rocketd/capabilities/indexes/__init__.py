"""Declared indexes: the background builder of the indexes entities declare (`indexed: true`,
`indexes: [...]`) and the guidance route that says which lists scan without one.

The kernel owns the metadata (`metadata.parse`), the wish list and the DDL
(`db.declared_indexes`); this capability runs the builds (`builder.py`) on instances with
background work.
"""

from __future__ import annotations

from rocketd.capabilities.indexes import routes
from rocketd.capabilities.indexes.builder import SIGNAL, SWEEP_INTERVAL, IndexBuilder, sweep_indexes
from rocketd.extensions import Capability, StartContext


async def start(ctx: StartContext) -> None:
    """Background instances build; API-only ones only record what to build."""
    if ctx.scheduler is None:
        return
    builder = IndexBuilder(ctx.settings, ctx.directory)
    await ctx.supervisor.add(builder)
    ctx.directory.add_signal_handler(SIGNAL, builder.wake)
    ctx.scheduler.add_job("index-builds", SWEEP_INTERVAL, sweep_indexes(ctx.directory, builder))


CAPABILITY = Capability(name="indexes", add_routes=routes.add_routes, start=start)

__all__ = ["CAPABILITY"]
