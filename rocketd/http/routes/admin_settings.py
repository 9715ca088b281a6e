"""`/api/{app}/_admin/settings` (admin only): the app's settings, one object per section.

`GET` answers every declared section with its effective values (defaults filled in); `PUT` takes
`{section: {key: value}}` for any subset of sections and keys (a key sent as null returns to its
default), validates all of it before writing anything (422 naming each key at fault), and
answers like `GET`. A change is announced like any metadata change; this instance reloads before
answering.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rocketd.engine.app_settings import (
    KERNEL_SECTIONS,
    AppSettingsSection,
    read_settings,
    update_settings,
)
from rocketd.http.bodies import read_json_object
from rocketd.http.crud import admin_call, answer
from rocketd.http.keys import APP_ACTOR, APP_SETTINGS_SECTIONS
from rocketd.http.paths import APP_PATH
from rocketd.http.policy import app_admin
from rocketd.http.responses import data


def settings_sections(request: web.Request) -> tuple[AppSettingsSection[Any], ...]:
    """The sections of the installed capabilities (the kernel's when the app sets none)."""
    return request.app.get(APP_SETTINGS_SECTIONS, KERNEL_SECTIONS)


@app_admin
async def get_settings(request: web.Request) -> web.StreamResponse:
    return data(await read_settings(request[APP_ACTOR].pool, settings_sections(request)))


@app_admin
async def put_settings(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    pool = request[APP_ACTOR].pool
    saved = await update_settings(pool, admin_call(request), settings_sections(request), body)
    return await answer(request, saved)


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{APP_PATH}/_admin/settings", get_settings)
    app.router.add_put(f"{APP_PATH}/_admin/settings", put_settings)
