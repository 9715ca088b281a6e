"""Pattern limits (rocketd.expressions.patterns): what the source check accepts and refuses, that it
never counts less than the `regex` engine would compile, the compile cache's bounds and the time
limits of matching.

Nothing here compiles a pattern the check refuses in this process: a mistake would freeze the
test run. The paths that compile user patterns (rules, literal and dynamic `matches`) are
exercised with huge counts in a child process with a deadline and a memory cap instead.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import regex
from regex import _regex_core

from rocketd.expressions import EvaluationError, compile_expression, patterns
from rocketd.expressions.patterns import (
    MAX_EXPANDED_LENGTH,
    MAX_GROUP_DEPTH,
    MAX_PATTERN_LENGTH,
    PatternError,
    PatternTimeout,
    check_pattern,
    compile_pattern,
    search,
    time_budget,
)
from tests.support.paths import ROOT

REALISTIC = [
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$",
    # The HTML standard's e-mail pattern (braces and a | inside a class).
    r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
    r"^\+?[0-9]{1,3}[-. ]?\(?[0-9]{3}\)?[-. ]?[0-9]{3}[-. ]?[0-9]{4}$",
    r"^\+[1-9]\d{1,14}$",
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
    r"^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)$",
    r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$",
    r"^INV-[0-9]+$",
    r"(?i)^[a-z0-9]+(?:-[a-z0-9]+)*$",
    r"^\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+)*$",
    r"^(?P<user>\w+)@(?P=user)\.example$",
    r"^(?=.*\d)(?=.*[a-z])(?=.*[A-Z]).{8,128}$",
    r"^https?://[^\s/$.?#].[^\s]*$",
    r"\{\{\s*\w+\s*\}\}",
    r"(?#a comment)^x$",
]


def refusal(source: str) -> PatternError:
    with pytest.raises(PatternError) as info:
        check_pattern(source)
    return info.value


# --- what is accepted --------------------------------------------------------------------------


@pytest.mark.parametrize("source", REALISTIC)
def test_realistic_patterns_are_accepted_and_compile(source: str) -> None:
    assert check_pattern(source) <= MAX_EXPANDED_LENGTH
    assert isinstance(compile_pattern(source), regex.Pattern)


def test_accepted_patterns_match_as_python_regexes() -> None:
    email = compile_pattern(REALISTIC[1])
    assert search(email, "ada@example.org")
    assert not search(email, "ada@example")
    assert search(compile_pattern(r"\{\{\s*\w+\s*\}\}"), "Hello {{ name }}")


def test_the_expanded_length_writes_counted_repetitions_out() -> None:
    assert check_pattern("abc") == 3
    assert check_pattern("a{3}") == 3
    assert check_pattern("(ab){2,5}") == 5 * len("(ab)")
    assert check_pattern("a*b+c?") == 6  # loops are not written out
    assert check_pattern(r"\p{L}{10}") == 10 * len(r"\p{L}")
    assert check_pattern("[a-z]{2}") == 2 * len("[a-z]")


# --- what is refused ---------------------------------------------------------------------------


def test_a_huge_counted_repetition_is_refused_where_it_is() -> None:
    error = refusal("x{1000000000}")
    assert error.reason == "repetition {1000000000} repeats more than 1000 times"
    assert error.position == 1


@pytest.mark.parametrize("count", ["{1001}", "{0,1001}", "{1001,}", "{,1001}", "{2,99999999999}"])
def test_every_bound_of_a_counted_repetition_is_limited(count: str) -> None:
    assert "repeats more than 1000 times" in refusal("x" + count).reason


@pytest.mark.parametrize("count", ["{1000}", "{0,1000}", "{1000,}", "{,1000}", "{,}"])
def test_counts_up_to_the_limit_are_accepted(count: str) -> None:
    check_pattern("x" + count)


@pytest.mark.parametrize(
    "source",
    [
        "(a{100}){100}",
        "(?:(?:x{10}){10}){101}",
        "(?:x{1000})(?i){1000}",  # an inline flag is not what the count repeats
        "(?:x{1000})(?#note){1000}",  # nor is a comment
        "x{1000}" * 11,  # siblings add up
        r"(?:\p{L}{1000}){3}",
        "(?:a|b{1000}){11}",
    ],
)
def test_nested_and_added_up_counts_are_refused(source: str) -> None:
    reason = refusal(source).reason
    assert reason.startswith("too large once its counted repetitions are written out")
    assert f"more than {MAX_EXPANDED_LENGTH}" in reason


def test_counts_just_under_the_expanded_limit_are_accepted() -> None:
    assert check_pattern("(a{99}){99}") == 99 * 101
    assert check_pattern("x{1000}" * 10) == MAX_EXPANDED_LENGTH


def test_over_long_patterns_are_refused() -> None:
    assert refusal("a" * (MAX_PATTERN_LENGTH + 1)).reason == (
        f"longer than {MAX_PATTERN_LENGTH} characters"
    )
    check_pattern("a" * MAX_PATTERN_LENGTH)


@pytest.mark.parametrize(
    ("source", "position"),
    [("(?:foo){e<=1}", 7), ("x{1, 5}", 1), ("{abc}", 0), ("a{}", 1), ("a{2,3", 1)],
)
def test_braces_that_are_not_counted_repetitions_are_refused(source: str, position: int) -> None:
    error = refusal(source)
    assert "must be escaped as \\{ (fuzzy matching is not supported)" in error.reason
    assert error.position == position


@pytest.mark.parametrize("flags", ["(?x)", "(?f)", "(?V1)", "(?b)", "(?e)", "(?p)", "(?r)"])
def test_inline_flags_outside_the_allowed_set_are_refused(flags: str) -> None:
    error = refusal(flags + "a")
    assert error.reason == (
        f"inline flag {flags[2]!r} is not supported (allowed: a, i, m, s, u, w)"
    )
    assert error.position == 0
    assert "not supported" in refusal(f"a(?i{flags[2]}:b)").reason


@pytest.mark.parametrize("source", ["(?i)a", "(?ms)^a$", "(?-i:a)", "(?a:\\w)", "(?u)(?w)\\b"])
def test_allowed_inline_flags_compile(source: str) -> None:
    compile_pattern(source)


def test_a_nested_class_is_refused() -> None:
    error = refusal("[[:alpha:]]+")
    assert error.reason.startswith("a [ inside a character class must be escaped as \\[")
    assert error.position == 1
    check_pattern(r"[\[\]]+")


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        # Inside a class, braces are characters: nothing is repeated.
        ("[]x{1000000000}]", False),
        ("[^]x{1000000000}]", False),
        (r"[\]x{1000000000}]", False),
        # An escaped backslash ends the class; the count is real.
        (r"[\\]x{1000000000}", True),
        # A comment ends at the first ")" that is not escaped.
        (r"(?#\)x{1000000000})a", False),
        ("(?#)x{1000000000}", True),
        # \p{ and \N{ without a valid name are literals; the count after them is real.
        (r"\p{x{1000000000}", True),
        (r"\N{x{1000000000}", True),
        (r"\{1000000000}", False),
    ],
)
def test_classes_comments_and_escapes_neither_hide_nor_invent_counts(
    source: str, refused: bool
) -> None:
    if refused:
        refusal(source)
    else:
        assert check_pattern(source) < 100
        assert _largest_count(source) <= 1  # and the engine agrees: no repetition at all


def test_groups_nested_too_deeply_are_refused() -> None:
    deepest = "(" * MAX_GROUP_DEPTH + "a" + ")" * MAX_GROUP_DEPTH
    compile_pattern(deepest)
    error = refusal("(" + deepest + ")")
    assert error.reason == f"groups are nested more than {MAX_GROUP_DEPTH} deep"
    assert error.position == MAX_GROUP_DEPTH


def test_invalid_syntax_is_the_engines_error() -> None:
    with pytest.raises(PatternError) as info:
        compile_pattern("^(abc")
    assert info.value.reason == "missing )"
    assert info.value.position == 5


# --- the check against the engine's own parser -------------------------------------------------
# Tests only: rocketd never uses the engine's private parser. For every pattern both accept, the
# check's expanded length is at least what the engine's parse tree expands to (each element
# once, times the counts around it), so a count the check missed would show here.

_REPEATS = (_regex_core.GreedyRepeat, _regex_core.LazyRepeat, _regex_core.PossessiveRepeat)


def _parse_tree(source: str) -> Any:
    flags = 0
    while True:
        text = _regex_core.Source(source)
        info = _regex_core.Info(flags, text.char_type, {})
        try:
            tree = _regex_core._parse_pattern(text, info)
        except _regex_core._UnscopedFlagSet:
            flags = info.global_flags
            continue
        if text.pos != len(source):
            raise regex.error("unbalanced parenthesis")
        return tree


def _children(node: Any) -> list[Any]:
    found: list[Any] = []
    for value in vars(node).values():
        if isinstance(value, _regex_core.RegexBase):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(v for v in value if isinstance(v, _regex_core.RegexBase))
    return found


def _engine_size(node: Any) -> int:
    if isinstance(node, _REPEATS):
        return max(1, node.min_count, node.max_count or 0) * _engine_size(node.subpattern)
    children = _children(node)
    if not children:
        return 0 if isinstance(node, _regex_core.Sequence | _regex_core.Branch) else 1
    return sum(_engine_size(child) for child in children)


def _largest_count(source: str) -> int:
    def largest(node: Any) -> int:
        own = max(node.min_count, node.max_count or 0) if isinstance(node, _REPEATS) else 0
        return max([own, *(largest(child) for child in _children(node))])

    return largest(_parse_tree(source))


_TOKENS = [
    *"abx\\[](){},0159|?*+^-:#pPN<>=!ieds&.$ ",
    *["{3}", "{2,7}", "{,9}", "{999}", "{1000}", "(?:", "(?i)", "(?#", r"\p{L}", "[:", ":]"],
    *["(?<n>", r"\g<n>", "(?P=n)", "(?(1)", "(?", "x{", r"\x4", r"\u00e9", r"\N{", "(?R)"],
]


def test_the_check_never_counts_less_than_the_engine_parses() -> None:
    generator = random.Random(13)
    compared = 0
    for _ in range(12_000):
        source = "".join(generator.choice(_TOKENS) for _ in range(generator.randint(1, 24)))
        try:
            checked = check_pattern(source)
        except PatternError:
            continue
        try:
            tree = _parse_tree(source)
        except (regex.error, _regex_core.ParseError):
            continue
        compared += 1
        assert _engine_size(tree) <= checked, source
    assert compared > 1000  # enough accepted, valid patterns were compared


# --- compiling: each path, with a deadline and a memory cap ------------------------------------

_EVERY_COMPILE_PATH = textwrap.dedent(
    """
    import json, sys
    from rocketd.expressions import EvaluationError, ExpressionError, compile_expression
    from rocketd.metadata.parse import MetadataError
    from rocketd.capabilities.rules.model import parse_rule

    source = sys.argv[1]
    out = {}
    rule = {"entity": "e", "hook": "before_write", "type": "field",
            "definition": {"field": "code", "operator": "pattern", "value": source}}
    try:
        parse_rule(rule)
    except MetadataError as exc:
        out["field rule"] = exc.details[0].message
    try:
        compile_expression("s matches '" + source + "'")
    except ExpressionError as exc:
        out["matches literal"] = exc.message
    try:
        compile_expression("s matches p").evaluate({"s": "x", "p": source})
    except EvaluationError as exc:
        out["matches from data"] = exc.message
    print(json.dumps(out))
    """
)


def _capped_memory() -> None:  # in the child, before exec
    limit = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_capped(script: str, *args: str, deadline: float = 60) -> subprocess.CompletedProcess[str]:
    """`script` in a child Python with 2 GB of address space, killed after `deadline` seconds:
    a pattern that freezes the compiler fails the test instead of hanging the run."""
    try:
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=deadline,
            preexec_fn=_capped_memory,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still compiling after {deadline} s: the pattern froze the compiler")


HUGE = "repetition {1000000000} repeats more than 1000 times"
NESTED = (
    "too large once its counted repetitions are written out (1004004000 characters, more than"
    " 10000; nested counts multiply): use smaller counts"
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "x{1000000000}",
            {
                "field rule": f"invalid pattern: {HUGE} at position 1",
                "matches literal": f"invalid regular expression: {HUGE} (character 1 of the pattern)",
                "matches from data": f"invalid regular expression: {HUGE} (character 1 of the pattern)",
            },
        ),
        (
            "(?:(?:x{1000}){1000}){1000}",
            {
                "field rule": f"invalid pattern: {NESTED}",
                "matches literal": f"invalid regular expression: {NESTED}",
                "matches from data": f"invalid regular expression: {NESTED}",
            },
        ),
    ],
)
def test_every_compile_path_refuses_a_huge_count_before_compiling(
    source: str, expected: dict[str, str]
) -> None:
    done = run_capped(_EVERY_COMPILE_PATH, source)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == expected


_WORST_ACCEPTED = textwrap.dedent(
    """
    import sys, time
    from rocketd.expressions.patterns import check_pattern, compile_pattern
    worst = 0.0
    for source in sys.argv[1:]:
        check_pattern(source)
        started = time.perf_counter()
        compile_pattern(source)
        worst = max(worst, time.perf_counter() - started)
    print(worst)
    """
)


def test_the_costliest_accepted_patterns_compile_quickly() -> None:
    worst_cases = [
        "x{1000}" * 10,
        "(?:x{97}){97}",
        "(a{99}){99}",
        "[a-z0-9_.+-]{833}",
        r"(?i)[\p{L}\p{N}]{833}",
        r"(?:\X){800}(?:\R){800}",
        "(?:(?:(?:x{20}){20}){20})",
        "(" * 32 + "a{300}" + ")" * 32,
    ]
    done = run_capped(_WORST_ACCEPTED, *worst_cases)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout) < 2  # seconds: generous; they take milliseconds


# --- the cache ---------------------------------------------------------------------------------


def test_a_pattern_is_compiled_once() -> None:
    assert compile_pattern("^cached-once$") is compile_pattern("^cached-once$")


def test_the_cache_is_bounded_by_count_and_by_size() -> None:
    patterns.clear_cache()
    for n in range(patterns.CACHE_ENTRIES + 50):
        compile_pattern(f"^small-{n}$")
    assert patterns.cache_info()[0] == patterns.CACHE_ENTRIES
    patterns.clear_cache()
    for n in range(30):
        compile_pattern("x{1000}" * 9 + f"y{n}")
    count, size = patterns.cache_info()
    assert size <= patterns.CACHE_EXPANDED_LENGTH
    assert count == patterns.CACHE_EXPANDED_LENGTH // (9000 + 2)
    patterns.clear_cache()


# --- matching time -----------------------------------------------------------------------------

BACKTRACKING = r"(a|aa)+$"
SUBJECT = "a" * 5000 + "!"


def test_a_match_that_runs_too_long_times_out() -> None:
    with pytest.raises(PatternTimeout) as info:
        search(compile_pattern(BACKTRACKING), SUBJECT)
    assert info.value.budget_spent is False


def test_a_budget_is_shared_by_every_match_and_compile_inside_it() -> None:
    slow = compile_pattern(BACKTRACKING)
    started = time.monotonic()
    with time_budget(0.3):
        spent = []
        while not spent or not spent[-1]:
            with pytest.raises(PatternTimeout) as info:
                search(slow, SUBJECT)
            spent.append(info.value.budget_spent)
            assert len(spent) < 20
        assert spent[0] is False  # the first ones hit their own limit
        with time_budget(10):  # an inner budget does not start afresh
            with pytest.raises(PatternTimeout) as info:
                search(compile_pattern("^fine$"), "fine")
            assert info.value.budget_spent
            with pytest.raises(PatternTimeout):
                compile_pattern("^not-cached-while-the-budget-is-spent$")
    assert time.monotonic() - started < 5
    assert search(compile_pattern("^fine$"), "fine")  # outside: no budget spent


def test_an_evaluation_over_many_patterns_from_data_stops_at_its_budget() -> None:
    # 10,000 different costly patterns would compile for about a minute without the budget.
    expression = compile_expression("sum(record.items, '(s matches p) ? 1 : 0')")
    items = [{"s": "x", "p": "x{1000}" * 9 + f"y{n}"} for n in range(10_000)]
    started = time.monotonic()
    with pytest.raises(EvaluationError) as info:
        expression.evaluate({"record": {"items": items}})
    assert "used up their time budget" in info.value.message
    assert time.monotonic() - started < 20
    patterns.clear_cache()
