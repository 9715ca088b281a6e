"""Typed keys for state kept on the aiohttp application and on requests."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from rocketd.actors.app import AppActor
    from rocketd.auth.principal import Principal
    from rocketd.auth.user_states import UserStates
    from rocketd.engine.app_settings import AppSettingsSection
    from rocketd.engine.tracer import RequestObserver
    from rocketd.services import Services

SERVICES: web.AppKey[Services] = web.AppKey("rocketd.services")
# Existence/active state of platform users, checked for every platform token (S9).
PLATFORM_USERS: web.AppKey[UserStates] = web.AppKey("rocketd.platform_users")
# The per-app settings sections of the installed capabilities (unset: the kernel's).
APP_SETTINGS_SECTIONS: web.AppKey[tuple[AppSettingsSection[Any], ...]] = web.AppKey(
    "rocketd.app_settings_sections"
)
# Told about every answered request (metrics), when a capability provides one.
OBSERVE_REQUEST: web.AppKey[RequestObserver | None] = web.AppKey("rocketd.observe_request")
# Set when the server stops: /ready answers 503 and responses close their connection.
DRAINING: web.AppKey[asyncio.Event] = web.AppKey("rocketd.draining")
# The AppActor of the `{app}` in the path, set by the auth middleware.
APP_ACTOR: web.RequestKey[AppActor] = web.RequestKey("rocketd.app_actor")
# Who is calling, set by the auth middleware on every authenticated route.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("rocketd.principal")
# The request's trace id (the accepted `X-Trace-ID`, or a new one), set by the trace middleware.
TRACE_ID: web.RequestKey[str] = web.RequestKey("rocketd.trace_id")
