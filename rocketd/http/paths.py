"""Path patterns shared by the route modules."""

from __future__ import annotations

# `{app}`: app names are lowercase letters, digits, `_` (and `-` in legacy upstream names, which
# then simply do not exist here). `_platform` never matches, so platform routes stay separate.
APP_PATH = "/api/{app:[a-z][a-z0-9_-]*}"
# `{entity}`: entity names. Fixed segments never match it: those starting with `_` by the first
# character, `auth` (the one reserved name without `_`) by the lookahead. So the data routes can
# be registered first: aiohttp tries the `/api/...` resources in registration order, and the hot
# routes then resolve in one or two regex matches instead of after every admin route.
ENTITY_PATH = APP_PATH + "/{entity:(?!auth(?![a-z0-9_]))[a-z][a-z0-9_]*}"
# `{id}` of a record: anything but a segment starting with `_`, which is left to the entity's
# sub-routes (`/{entity}/_bulk`, `/_export`, `/_aggregate`, ...) that capabilities register
# after the data routes. Ids and slugs that start with `_` are refused when written (422), so no
# record can ever be addressed by one.
RECORD_PATH = ENTITY_PATH + "/{id:[^_/][^/]*}"
