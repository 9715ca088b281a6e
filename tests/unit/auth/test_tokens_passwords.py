"""Token and password primitives: pinned algorithm, exact claims, digests, constant-cost checks."""

from __future__ import annotations

import time

import jwt
import pytest

from rocketd.auth import passwords, tokens


def test_access_token_has_exactly_the_contract_claims() -> None:
    token = tokens.issue_access_token("s" * 64, "user-1", ["admin"], 900)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, "s" * 64, algorithms=["HS256"])
    assert set(claims) == {"sub", "roles", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 900


def test_decode_refuses_other_algorithms_and_wrong_secrets() -> None:
    now = int(time.time())
    payload = {"sub": "u", "roles": [], "iat": now, "exp": now + 60}
    assert tokens.decode_access_token("k" * 64, jwt.encode(payload, "k" * 64, "HS256")) is not None
    assert tokens.decode_access_token("k" * 64, jwt.encode(payload, "k" * 64, "HS384")) is None
    assert tokens.decode_access_token("k" * 64, jwt.encode(payload, "x" * 64, "HS256")) is None
    assert tokens.decode_access_token("", jwt.encode(payload, "k" * 64, "HS256")) is None
    assert tokens.decode_access_token("k" * 64, "garbage") is None


def test_refresh_token_digest_is_stable_and_not_the_token() -> None:
    token = tokens.new_refresh_token()
    assert tokens.refresh_token_digest(token) == tokens.refresh_token_digest(token)
    assert token not in tokens.refresh_token_digest(token)
    assert tokens.new_refresh_token() != token


def test_app_secret_is_32_random_bytes_hex() -> None:
    secret = tokens.new_app_secret()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert secret != tokens.new_app_secret()


async def test_unknown_account_is_checked_against_a_dummy_hash_of_the_same_cost() -> None:
    assert await passwords.verify_password("whatever", None, 4) is False
    # The dummy hash used for unknown accounts costs what a real one costs.
    assert passwords.hash_cost(passwords._dummy_hash(4)) == 4
    assert passwords.hash_cost(passwords._dummy_hash(5)) == 5


async def test_password_round_trip_and_rehash_detection() -> None:
    stored = await passwords.hash_password("correct horse", 4)
    assert await passwords.verify_password("correct horse", stored, 4)
    assert not await passwords.verify_password("wrong horse", stored, 4)
    assert not passwords.needs_rehash(stored, 4)
    assert passwords.needs_rehash(stored, 10)
    assert not await passwords.verify_password("x", "not-a-bcrypt-hash", 4)


def test_a_verified_token_answers_only_for_its_secret_and_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "u", "roles": ["r"], "iat": now, "exp": now + 60}, "k" * 64)
    claims = tokens.decode_access_token("k" * 64, token)
    assert claims is not None and claims.roles == ("r",)
    assert token in tokens._VERIFIED  # the second use is a lookup
    assert tokens.decode_access_token("k" * 64, token) == claims
    # Another secret (a rotated app secret, the platform secret) never accepts it.
    assert tokens.decode_access_token("x" * 64, token) is None
    monkeypatch.setattr(tokens.time, "time", lambda: now + 60.0)
    assert tokens.decode_access_token("k" * 64, token) is None
    assert token not in tokens._VERIFIED


def test_refused_tokens_are_not_remembered_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = int(time.time())
    forged = jwt.encode({"sub": "u", "roles": [], "iat": now, "exp": now + 60}, "x" * 64)
    assert tokens.decode_access_token("k" * 64, forged) is None
    assert forged not in tokens._VERIFIED
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    monkeypatch.setattr(tokens, "_VERIFIED", {})
    issued = [tokens.issue_access_token("k" * 64, f"u{i}", [], 60) for i in range(5)]
    for token in issued:
        assert tokens.decode_access_token("k" * 64, token) is not None
    assert list(tokens._VERIFIED) == issued[2:]


# --- the password policy -------------------------------------------------------------------------


def test_the_bundled_common_password_list_is_loaded_with_our_defaults() -> None:
    from rocketd.auth.common_passwords import common_passwords, is_common

    listed = common_passwords()
    assert len(listed) >= 10_000
    assert {"123456", "password", "qwerty", "changeme", "rocketd"} <= listed
    assert not any(entry.startswith("#") for entry in listed)  # comments are not passwords
    assert is_common("PassWord") and is_common("CHANGEME")
    assert not is_common("correct horse battery staple")


def rules_of(password: str, email: str | None = None, min_length: int = 8) -> list[str]:
    from rocketd.capabilities.permissions.model import Problems
    from rocketd.capabilities.users.users import PasswordPolicy, check_password

    problems = Problems()
    check_password(password, PasswordPolicy(min_length, 4), problems, email)
    return [detail.rule for detail in problems.invalid]


def test_check_password_refuses_common_passwords_and_the_email() -> None:
    assert rules_of("a-long-unusual-one") == []
    assert rules_of("sunshine") == ["common"]
    assert rules_of("123456", min_length=6) == ["common"]  # whatever the configured minimum
    assert rules_of("Sam.Smith@Example.com", "sam.smith@example.com") == ["email"]
    assert rules_of("sam.smith", "Sam.Smith@example.com") == ["email"]
    assert rules_of("sam.smith.1", "sam.smith@example.com") == []
    assert rules_of("sam.smith", None) == []  # no email known: nothing to compare with
