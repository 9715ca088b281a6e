"""slugify and the order of slug candidates (the retry against the database is in
tests/integration/engine/write/test_writes.py)."""

from __future__ import annotations

import re

import pytest

from rocketd.engine.write.slugs import (
    LAST_NUMBERED_SUFFIX,
    RANDOM_SUFFIX_ATTEMPTS,
    slug_candidates,
    slugify,
)


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Crème Brûlée 2!", "creme-brulee-2"),
        ("Hello, World", "hello-world"),
        ("  --Already-a-slug--  ", "already-a-slug"),
        ("Ångström über Straße", "angstrom-uber-stra-e"),
        ("multiple   spaces\tand\nlines", "multiple-spaces-and-lines"),
        ("UPPER_case_underscores", "upper-case-underscores"),
        ("日本語", ""),
        ("!!!", ""),
        ("", ""),
        ("İstanbul", "istanbul"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_slugify_output_only_has_the_slug_alphabet() -> None:
    slug = slugify("Ça marche? Oui — 100 % (vraiment) ñ")
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug), slug


def test_candidates_are_the_base_then_numbered_then_random() -> None:
    candidates = list(slug_candidates("post"))
    assert candidates[:3] == ["post", "post-2", "post-3"]
    assert candidates[LAST_NUMBERED_SUFFIX - 1] == f"post-{LAST_NUMBERED_SUFFIX}"
    randoms = candidates[LAST_NUMBERED_SUFFIX:]
    assert len(randoms) == RANDOM_SUFFIX_ATTEMPTS
    assert all(re.fullmatch(r"post-[0-9a-z]{6}", c) for c in randoms), randoms
    assert len(set(candidates)) == len(candidates)
