"""The aiohttp application factory: middlewares in contract order, then the route families.

Route precedence matters (spec): `/api/_platform/...` and the fixed segments inside an app
(`auth`, `_admin`, ...) must win over the dynamic entity routes. Here that holds by pattern rather
than by order: `{app}` never matches `_platform` and `{entity}` never matches a fixed segment
(`rocketd.http.paths`), so the data routes are registered first, where aiohttp finds them fastest.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.auth.accounts import PLATFORM_TABLES
from rocketd.auth.users import UserStates
from rocketd.http import (
    routes_admin_metadata,
    routes_admin_permissions,
    routes_admin_rules,
    routes_admin_schema,
    routes_admin_users,
    routes_admin_webhooks,
    routes_app_auth,
    routes_data,
    routes_files,
    routes_health,
    routes_platform,
    routes_ui_configs,
    routes_workflows,
)
from rocketd.http.keys import PLATFORM_USERS, SERVICES
from rocketd.http.middlewares import auth_middleware, body_limit_middleware, trace_middleware
from rocketd.http.server import parser_limits
from rocketd.services import Services


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[trace_middleware, body_limit_middleware, auth_middleware],
        client_max_size=services.settings.server.max_body_size,
        # The request line and header limits (`server.max_request_line` defaults to 64 KiB: long
        # filter lists live in the query string). Refusals are answered by rocketd.http.server.
        handler_args=parser_limits(services.settings.server),
    )
    app[SERVICES] = services
    app[PLATFORM_USERS] = UserStates(services.management_pool, PLATFORM_TABLES.users)
    routes_health.add_routes(app)
    routes_data.add_routes(app)  # first: the hot path; `{entity}` never matches a fixed segment
    routes_platform.add_routes(app)
    routes_app_auth.add_routes(app)
    routes_admin_metadata.add_routes(app)
    routes_admin_users.add_routes(app)
    routes_admin_permissions.add_routes(app)
    routes_admin_rules.add_routes(app)
    routes_workflows.add_routes(app)
    routes_admin_webhooks.add_routes(app)
    routes_admin_schema.add_routes(app)
    routes_files.add_routes(app)
    routes_ui_configs.add_routes(app)
    return app
