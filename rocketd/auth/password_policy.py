"""What a new password and a new account email must satisfy: one policy for app users (the
users capability) and platform users (rocketd.platform.account).

Pure functions returning the problem as (message, rule) or None; callers attach the field and
choose the error shape. Messages never quote the password.
"""

from __future__ import annotations

from typing import Final

from rocketd.auth import passwords
from rocketd.auth.common_passwords import is_common

MAX_EMAIL_LENGTH: Final = 254


def password_problem(
    password: str, min_length: int, email: str | None = None
) -> tuple[str, str] | None:
    """The first rule a password being set breaks (for the account of `email`, when known):
    `auth.password_min_length`, bcrypt's 72-byte limit, no NUL, not one of the commonest
    passwords, not the account's email or its local part."""
    if len(password) < min_length:
        return f"password must be at least {min_length} characters", "min_length"
    if len(password.encode()) > passwords.MAX_PASSWORD_BYTES:
        return f"password must be at most {passwords.MAX_PASSWORD_BYTES} bytes", "max_length"
    if "\x00" in password:
        return "password must not contain NUL characters", "type"
    if is_common(password):
        return (
            "password is one of the most common passwords; choose one that is harder to guess",
            "common",
        )
    if email and password.lower() in _email_forms(email):
        return "password must not be the account's email address", "email"
    return None


def _email_forms(email: str) -> set[str]:
    """The email and its local part, lower-cased: passwords an attacker tries first."""
    lowered = email.lower()
    return {lowered, lowered.rpartition("@")[0] or lowered}


def email_problem(email: str, where: str = "email") -> tuple[str, str] | None:
    """What is wrong with an account email being set (`where` names it in the message)."""
    if len(email) > MAX_EMAIL_LENGTH:
        return f"{where} must be at most {MAX_EMAIL_LENGTH} characters", "max_length"
    if not email.isprintable() or email != email.strip():
        return f"{where} must not contain control characters or surrounding spaces", "format"
    return None
