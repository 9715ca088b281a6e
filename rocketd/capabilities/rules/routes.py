"""`/api/{app}/_admin/rules` (admin only): rule CRUD, from the rules kind.

Each change is validated (expressions and patterns compiled), saved and announced in one
transaction (`capabilities.rules.admin`); then this instance swaps in the new snapshot *before*
answering, so the next write is checked by the new rules.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.rules.admin import KINDS
from rocketd.capabilities.state_machines import routes as state_machine_routes
from rocketd.http.crud import add_kind_routes


def add_routes(app: web.Application) -> None:
    for kind in KINDS:
        add_kind_routes(app, kind)
    # The app factory does not list the state-machine capability yet (the INSTALLED list will):
    # until then its routes are registered with the rules', as they always were.
    state_machine_routes.add_routes(app)
