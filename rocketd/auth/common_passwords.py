"""The commonest passwords, refused wherever a password is set
(`rocketd.auth.password_policy`).

The list is bundled data (`common_passwords.txt`): the 10,000 most frequent passwords of a public
leaked-password corpus, plus rocketd's own defaults (`changeme`: the seeded accounts may keep it,
but nobody may set it through the API). Matching ignores case: `Password` is as guessable as
`password`. Loaded once, on first use.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("rocketd.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.lower() for line in text.splitlines() if line and not line.startswith("#")
    )


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()
