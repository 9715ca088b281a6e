"""Access tokens (HS256 JWTs) and opaque refresh tokens.

Access-token claims are exactly the contract's: `sub`, `roles`, `iat`, `exp`. Verification pins
the algorithm to HS256 (a token declaring `none`, RS256 or HS512 is invalid) and requires every
claim. Refresh tokens are random UUID v4 strings handed to the client once; only their SHA-256
digest is stored, and digests are compared by the database index (equality on a digest of a
high-entropy secret reveals nothing useful by timing).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    sub: str
    roles: tuple[str, ...]
    iat: int
    exp: int


def issue_access_token(secret: str, subject: str, roles: list[str], ttl_seconds: int) -> str:
    now = int(time.time())
    payload = {"sub": subject, "roles": list(roles), "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


# Verified tokens -> (the secret that verified them, their claims), so a token is checked by
# HMAC once and then looked up until it expires: a client sends the same access token with every
# request. Only successful verifications are stored (a forged or garbled token pays the full check
# every time), the key is the whole token including its signature, and an entry answers only for
# the secret that verified it (another secret cannot also have signed it: that would be an HMAC
# forgery), so a rotated app secret invalidates its tokens at once. Bounded: the oldest entries go.
_VERIFIED: dict[str, tuple[str, Claims]] = {}
VERIFIED_CACHE_SIZE = 10_000


def decode_access_token(secret: str, token: str) -> Claims | None:
    """The token's claims when it is an unexpired HS256 token signed with `secret`, else None."""
    if not secret:
        return None
    cached = _VERIFIED.get(token)
    if cached is not None:
        signer, claims = cached
        if time.time() >= claims.exp:
            del _VERIFIED[token]
            return None
        return claims if signer == secret else None
    verified = _verify(secret, token)
    if verified is not None:
        if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
            del _VERIFIED[next(iter(_VERIFIED))]
        _VERIFIED[token] = (secret, verified)
    return verified


def _verify(secret: str, token: str) -> Claims | None:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.PyJWTError:
        return None
    sub = payload.get("sub")
    roles = payload.get("roles", [])
    if not isinstance(sub, str) or not isinstance(roles, list):
        return None
    if not all(isinstance(r, str) for r in roles):
        return None
    return Claims(sub=sub, roles=tuple(roles), iat=int(payload["iat"]), exp=int(payload["exp"]))


def new_refresh_token() -> str:
    return str(uuid.uuid4())


def refresh_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_app_secret() -> str:
    """32 random bytes, hex: the contract's per-app (and generated platform) secret."""
    return secrets.token_hex(32)
