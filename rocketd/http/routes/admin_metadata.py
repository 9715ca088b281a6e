"""`/api/{app}/_admin/entities` and `/_admin/relations`: the kernel's metadata CRUD (admin only).

Both kinds run on the generic admin runner (engine.metadata_admin, engine.admin): each change is
saved, migrated and announced in one transaction; then this instance swaps in the new snapshot
*before* answering, so the next request sees the change.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.engine.metadata_admin import KERNEL_KINDS
from rocketd.http.crud import add_kind_routes


def add_routes(app: web.Application) -> None:
    for kind in KERNEL_KINDS:
        add_kind_routes(app, kind)
