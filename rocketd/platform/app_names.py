"""Rules for app names: what may become `/api/<app>/...` and the database `rocket_<app>`.

Pure code (no I/O). Hyphens are refused (upstream accepts them, then fails creating the database);
names that would collide with PostgreSQL's own databases or our URL space are reserved.
"""

from __future__ import annotations

import re

from rocketd.errors import ValidationFailed

DB_PREFIX = "rocket_"
PG_IDENTIFIER_MAX = 63
MAX_APP_NAME = PG_IDENTIFIER_MAX - len(DB_PREFIX)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_APP_NAMES = frozenset(
    {"postgres", "template0", "template1", "platform", "public", "information_schema", "api"}
)
RESERVED_PREFIXES = ("pg_",)

NAME_RULE_MESSAGE = (
    "App name must be lowercase letters, numbers and underscores (start with a letter, "
    f"at most {MAX_APP_NAME} characters)"
)


def db_name_for(app_name: str) -> str:
    return DB_PREFIX + app_name


def validate_app_name(name: object) -> str:
    """Return the name when it is acceptable, else raise a 422 naming the rule it breaks."""
    if name is None or name == "":
        raise ValidationFailed("App name is required")
    if not isinstance(name, str):
        raise ValidationFailed("App name must be a string")
    if not _NAME_RE.match(name) or len(name) > MAX_APP_NAME:
        raise ValidationFailed(NAME_RULE_MESSAGE)
    if name in RESERVED_APP_NAMES or name.startswith(RESERVED_PREFIXES):
        raise ValidationFailed(f"App name '{name}' is reserved; choose another name")
    return name
