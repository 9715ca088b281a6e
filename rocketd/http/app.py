"""The aiohttp application factory: middlewares in contract order, then the route families.

Route precedence matters (spec): `/api/_platform/...` and the fixed segments inside an app
(`auth`, `_admin`, ...) must win over the dynamic entity routes. Here that holds by pattern rather
than by order: `{app}` never matches `_platform` and `{entity}` never matches a fixed segment
(`rocketd.http.paths`), so the data routes are registered first, where aiohttp finds them fastest.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.auth.accounts import PLATFORM_TABLES
from rocketd.auth.user_states import UserStates
from rocketd.engine.tracer import REQUEST_OBSERVER
from rocketd.extensions import settings_sections
from rocketd.http.crud import add_kind_routes
from rocketd.http.keys import APP_SETTINGS_SECTIONS, OBSERVE_REQUEST, PLATFORM_USERS, SERVICES
from rocketd.http.middlewares import request_middleware
from rocketd.http.routes import admin_metadata, admin_settings, app_auth, data, health, platform
from rocketd.http.server import parser_limits
from rocketd.services import Services


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[request_middleware],
        client_max_size=services.settings.server.max_body_size,
        # The request line and header limits (`server.max_request_line` defaults to 64 KiB: long
        # filter lists live in the query string). Refusals are answered by rocketd.http.server.
        handler_args=parser_limits(services.settings.server),
    )
    app[SERVICES] = services
    app[OBSERVE_REQUEST] = services.directory.services.get(REQUEST_OBSERVER)
    app[PLATFORM_USERS] = UserStates(services.management_pool, PLATFORM_TABLES.users)
    health.add_routes(app)
    data.add_routes(app)  # first: the hot path; `{entity}` never matches a fixed segment
    platform.add_routes(app)
    app_auth.add_routes(app)
    admin_metadata.add_routes(app)
    admin_settings.add_routes(app)
    app[APP_SETTINGS_SECTIONS] = settings_sections(services.capabilities)
    for capability in services.capabilities:  # rocketd.capabilities.INSTALLED, in order
        for kind in capability.kinds:  # five admin routes per metadata kind
            add_kind_routes(app, kind)
        if capability.add_routes is not None:
            capability.add_routes(app)
    return app
