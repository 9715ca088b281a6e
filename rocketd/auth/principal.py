"""Who is calling: the authenticated user as the engine sees it (no HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: tuple[str, ...]
    via_platform: bool = False

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles
