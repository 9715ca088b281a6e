"""`/api/{app}/_admin/state-machines` (admin only): state-machine CRUD, from the state-machine
kind. Each change is validated, saved and announced in one transaction
(`capabilities.state_machines.admin`); this instance reloads its snapshot before answering."""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.state_machines.admin import KINDS
from rocketd.http.crud import add_kind_routes


def add_routes(app: web.Application) -> None:
    for kind in KINDS:
        add_kind_routes(app, kind)
