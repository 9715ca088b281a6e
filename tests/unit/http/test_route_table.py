"""The route table: data routes are registered first (fast to resolve), so their patterns must
never match a fixed segment of the app's URL space."""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from rocketd.capabilities import INSTALLED
from rocketd.http.app import create_app
from rocketd.http.paths import ENTITY_PATH
from rocketd.http.routes import (
    app_auth as routes_app_auth,
)
from rocketd.http.routes import (
    data as routes_data,
)
from rocketd.http.routes import (
    platform as routes_platform,
)
from rocketd.metadata import RESERVED_ENTITY_NAMES

_ENTITY_RE = re.compile(ENTITY_PATH.split("{entity:", 1)[1][:-1])


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    services = mock.MagicMock()
    services.capabilities = INSTALLED
    services.settings.storage.driver = "local"
    services.settings.storage.local_path = str(tmp_path)
    return create_app(services)


def test_no_fixed_segment_of_an_app_matches_the_entity_pattern(app: web.Application) -> None:
    fixed = set()
    for resource in app.router.resources():
        parts = resource.canonical.split("/")
        if resource.canonical.startswith("/api/{app}/") and not parts[3].startswith("{"):
            fixed.add(parts[3])
    assert {"auth", "_admin", "_files", "_workflows", "_ui"} <= fixed
    for segment in fixed | RESERVED_ENTITY_NAMES:
        assert not _ENTITY_RE.fullmatch(segment), segment


@pytest.mark.parametrize("name", ["authors", "author", "auth_log", "orders", "a", "x_auth"])
def test_entity_names_near_reserved_ones_still_match(name: str) -> None:
    assert _ENTITY_RE.fullmatch(name)


@pytest.mark.parametrize(
    ("method", "path", "module"),
    [
        ("POST", "/api/shop/auth/login", routes_app_auth),
        ("POST", "/api/_platform/auth/login", routes_platform),
        ("GET", "/api/_platform/apps", routes_platform),
        ("GET", "/api/shop/authors", routes_data),
        ("GET", "/api/shop/orders/123", routes_data),
        ("PUT", "/api/shop/auth_log/7", routes_data),
    ],
)
async def test_paths_resolve_to_their_family(
    app: web.Application, method: str, path: str, module: object
) -> None:
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    handler = match.handler
    assert getattr(handler, "__module__", None) == module.__name__  # type: ignore[attr-defined]


async def test_the_data_routes_are_tried_first(app: web.Application) -> None:
    api = [r for r in app.router.resources() if r.canonical.startswith("/api/")]
    assert api[0].canonical.endswith("/{entity}")
    assert api[1].canonical.endswith("/{entity}/{id}")
