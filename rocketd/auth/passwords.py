"""Password hashing with bcrypt, off the event loop.

bcrypt releases the GIL while hashing, so running it in a worker thread keeps the event loop free.
Unknown accounts are checked against a dummy hash of the same cost, so a login for an email that
does not exist costs about as much as one with a wrong password (no user enumeration by timing).
Stored hashes with another cost than the configured one are re-hashed on the next good login.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache

import bcrypt

# bcrypt only looks at the first 72 bytes: longer passwords are refused when a hash is made, so
# no stored hash stands for a longer password; verification compares the first 72 bytes.
MAX_PASSWORD_BYTES = 72


class PasswordTooLong(ValueError):
    pass


def hash_password_sync(password: str, cost: int) -> str:
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=cost)).decode()


async def hash_password(password: str, cost: int) -> str:
    return await asyncio.to_thread(hash_password_sync, password, cost)


def _check(password: str, stored_hash: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode()[:MAX_PASSWORD_BYTES], stored_hash.encode())
    except ValueError:
        # A malformed stored hash never matches (and never raises to the caller).
        return False


async def verify_password(password: str, stored_hash: str | None, cost: int) -> bool:
    """True when `password` matches; with no stored hash, burn the same time and say False."""
    if stored_hash is None:
        await asyncio.to_thread(_check, password, _dummy_hash(cost))
        return False
    return await asyncio.to_thread(_check, password, stored_hash)


def hash_cost(stored_hash: str) -> int | None:
    """The cost factor of a `$2b$NN$...` hash, or None when it is not a bcrypt hash."""
    parts = stored_hash.split("$")
    if len(parts) < 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


def needs_rehash(stored_hash: str, cost: int) -> bool:
    return hash_cost(stored_hash) != cost


@lru_cache(maxsize=8)
def _dummy_hash(cost: int) -> str:
    return hash_password_sync("rocketd-dummy-password", cost)
