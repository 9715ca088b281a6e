"""`/api/{app}/_admin/permissions` (admin only): permission policy CRUD, from the permissions
kind. Each change is saved and announced in one transaction (`capabilities.permissions.admin`);
then this instance reloads its AppSnapshot before answering, so the next request obeys it."""

from __future__ import annotations

from aiohttp import web

from rocketd.capabilities.permissions.admin import KINDS
from rocketd.http.crud import add_kind_routes


def add_routes(app: web.Application) -> None:
    for kind in KINDS:
        add_kind_routes(app, kind)
