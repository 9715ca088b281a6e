"""The aiohttp application factory: middlewares in contract order, then the route families.

Route precedence matters (spec): `/api/_platform/...` and the fixed segments inside an app
(`auth`, `_admin`, ...) must win over the dynamic entity routes. Here that holds by pattern rather
than by order: `{app}` never matches `_platform` and `{entity}` never matches a fixed segment
(`rocketd.http.paths`), so the data routes are registered first, where aiohttp finds them fastest.
"""

from __future__ import annotations

from aiohttp import web

from rocketd.auth.accounts import PLATFORM_TABLES
from rocketd.capabilities.files import routes as routes_files
from rocketd.capabilities.permissions import routes as routes_admin_permissions
from rocketd.capabilities.rules import routes as routes_admin_rules
from rocketd.capabilities.schema_io import routes as routes_admin_schema
from rocketd.capabilities.ui_configs import routes as routes_ui_configs
from rocketd.capabilities.users import routes as routes_admin_users
from rocketd.capabilities.users.users import UserStates
from rocketd.capabilities.webhooks import routes as routes_admin_webhooks
from rocketd.capabilities.workflows import routes as routes_workflows
from rocketd.http.keys import PLATFORM_USERS, SERVICES
from rocketd.http.middlewares import auth_middleware, body_limit_middleware, trace_middleware
from rocketd.http.routes import (
    admin_metadata as routes_admin_metadata,
)
from rocketd.http.routes import (
    app_auth as routes_app_auth,
)
from rocketd.http.routes import (
    data as routes_data,
)
from rocketd.http.routes import (
    health as routes_health,
)
from rocketd.http.routes import (
    platform as routes_platform,
)
from rocketd.services import Services


def create_app(services: Services) -> web.Application:
    app = web.Application(
        middlewares=[trace_middleware, body_limit_middleware, auth_middleware],
        client_max_size=services.settings.server.max_body_size,
        # Long filter lists live in the query string: allow request lines up to 64 KiB so they
        # reach our parser (and its clear 400) instead of aiohttp's plain-text one.
        handler_args={"max_line_size": 65536},
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
