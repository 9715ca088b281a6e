"""SQL fingerprints: the statement's shape, never its values."""

from __future__ import annotations

from rocketd.db.traced_cursor import MAX_FINGERPRINT, fingerprint


def test_literals_and_placeholders_become_question_marks() -> None:
    text = "select * from t where a = 'o''brien' and b = 42 and c = %s and d = $1 and e = 1.5"
    assert (
        fingerprint(text) == "select * from t where a = ? and b = ? and c = ? and d = ? and e = ?"
    )


def test_whitespace_is_collapsed_and_the_length_capped() -> None:
    assert fingerprint("select\n   1\n") == "select ?"
    assert len(fingerprint("select " + "x, " * 2000 + "y")) == MAX_FINGERPRINT


def test_identifiers_with_digits_are_kept() -> None:
    assert fingerprint('insert into "t2" (c1) values (%(v)s)') == 'insert into "t2" (c1) values (?)'
