"""Path patterns shared by the route modules."""

from __future__ import annotations

# `{app}`: app names are lowercase letters, digits, `_` (and `-` in legacy upstream names, which
# then simply do not exist here). `_platform` never matches, so platform routes stay separate.
APP_PATH = "/api/{app:[a-z][a-z0-9_-]*}"
# `{entity}`: entity names; fixed segments (`auth`, `_admin`, ...) never match it.
ENTITY_PATH = APP_PATH + "/{entity:[a-z][a-z0-9_]*}"
