"""The expression sandbox: no way out to Python objects, bounded work, and every failure an
`ExpressionError` (at save time) or `EvaluationError` (at run time), never anything else."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from rocketd.expressions import (
    MAX_COLLECTION,
    MAX_DEPTH,
    MAX_NODES,
    MAX_PATTERN_LENGTH,
    MAX_SOURCE_LENGTH,
    MAX_STRING_LENGTH,
    EvaluationError,
    ExpressionError,
    compile_expression,
)


def rejected(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    return info.value


def fails(source: str, **env: Any) -> EvaluationError:
    expression = compile_expression(source)
    with pytest.raises(EvaluationError) as info:
        expression.evaluate(env)
    return info.value


class Secretive:
    """A Python object with attributes and methods that an expression must not reach."""

    secret = "s3cret"

    def delete_everything(self) -> str:
        return "deleted"


# --- escape attempts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("record.__class__", "names starting with '_' are not allowed ('__class__')"),
        ("record.__class__.__mro__", "names starting with '_' are not allowed ('__class__')"),
        ("record['__class__']", "names starting with '_' are not allowed ('__class__')"),
        ("record._private", "names starting with '_' are not allowed ('_private')"),
        ("__builtins__", "names starting with '_' are not allowed ('__builtins__')"),
        ("_", "names starting with '_' are not allowed ('_')"),
        ("().__class__.__bases__", "expected an expression inside '( )'"),
        (
            "''.__class__.__mro__[1].__subclasses__()",
            "names starting with '_' are not allowed ('__class__')",
        ),
        ("__import__('os').system('id')", "names starting with '_' are not allowed ('__import__')"),
        ("import os", "'import' is not supported in expressions"),
        ("import('os')", "'import' is not supported in expressions"),
        ("lambda: 1", "'lambda' is not supported in expressions"),
        ("(lambda x: x)(1)", "'lambda' is not supported in expressions"),
        ("x => x", "arrow functions are not supported"),
        ("record.lines.map(x => x * 2)", "arrow functions are not supported"),
        ("[x for x in record]", "expected ']' to close the list, found 'for'"),
        ("{x: 1 for x in y}", "map literals ('{...}') are not supported"),
        ("function() { return 1 }", "map literals ('{...}') are not supported"),
        ("function (x) (x)", "'function' is not supported in expressions"),
        (
            "eval('1 + 1')",
            "unknown function 'eval' (available: abs, ceil, date, float, floor, int, len, lower, max, min, now, round, string, sum, trim, upper)",
        ),
        (
            "exec('x = 1')",
            "unknown function 'exec' (available: abs, ceil, date, float, floor, int, len, lower, max, min, now, round, string, sum, trim, upper)",
        ),
        (
            "getattr(record, 'x')",
            "unknown function 'getattr' (available: abs, ceil, date, float, floor, int, len, lower, max, min, now, round, string, sum, trim, upper)",
        ),
        (
            "open('/etc/passwd')",
            "unknown function 'open' (available: abs, ceil, date, float, floor, int, len, lower, max, min, now, round, string, sum, trim, upper)",
        ),
        (
            "record.constructor.constructor('return process')()",
            "unknown method 'constructor()' (available: contains, endsWith, getTime, includes, startsWith, toISOString, toLowerCase, toUpperCase, trim)",
        ),
        ("(record.constructor)('x')", "only functions and methods can be called"),
        (
            "record.get('status')",
            "unknown method 'get()' (available: contains, endsWith, getTime, includes, startsWith, toISOString, toLowerCase, toUpperCase, trim)",
        ),
        (
            "'{0.__class__}'.format(record)",
            "unknown method 'format()' (available: contains, endsWith, getTime, includes, startsWith, toISOString, toLowerCase, toUpperCase, trim)",
        ),
        ("record.status = 'paid'", "'=' is assignment, which is not supported; compare with '=='"),
        ("a; b", "';' is not supported: an expression is a single expression"),
        ("`${record}`", "template strings are not supported; join strings with '+'"),
        ("new Function('return 1')", "'new' is only supported as 'new Date(...)'"),
        ("this.constructor", "'this' is not supported in expressions"),
        ("typeof record", "'typeof' is not supported in expressions"),
    ],
)
def test_escape_attempts_are_rejected_at_compile_time(source: str, message: str) -> None:
    assert rejected(source).message == message


def test_member_access_reads_map_keys_and_never_python_attributes() -> None:
    env = {"obj": Secretive(), "record": {"status": "paid"}, "text": "abc", "n": 5}
    for source in (
        "obj.secret",
        "obj.delete_everything",
        "record.keys",
        "record.items",
        "record.get",
        "record.pop",
        "text.upper",
        "text.join",
        "n.real",
        "n.bit_length",
        "record.status.startswith",
        "record.constructor",
        "record.prototype",
    ):
        assert compile_expression(source).evaluate(env) is None, source


def test_methods_are_the_languages_own_not_pythons() -> None:
    for source in ("obj.delete_everything()", "record.keys()", "text.upper()", "record.pop('a')"):
        assert "unknown method" in rejected(source).message


def test_opaque_values_in_the_environment_give_errors_not_crashes() -> None:
    env = {"obj": Secretive(), "things": {1, 2}, "raw": b"bytes"}
    assert fails("obj + 1", **env).message == "cannot add unsupported value (Secretive) and number"
    assert (
        fails("len(things)", **env).message
        == "len() needs a string, list or map, got unsupported value (set)"
    )
    assert fails("raw < 1", **env).message == "cannot compare unsupported value (bytes) and number"
    assert compile_expression("obj == 1").evaluate(env) is False
    assert compile_expression("obj ? 1 : 2").evaluate(env) == 1


def test_a_failing_environment_becomes_an_evaluation_error() -> None:
    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("database went away")

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("database went away")

    error = fails("record.status == 'x'", record=Exploding())
    assert "database went away" in error.message
    assert error.status == 422


def test_deeply_nested_data_is_an_evaluation_error() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    assert fails("a == b", a=deep, b=deep).message == "a value is nested too deeply to evaluate"


# --- bombs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("9**9**9", "result of '**' is too large (more than 4096 bits)"),
        ("2 ** 5000", "result of '**' is too large (more than 4096 bits)"),
        ("10.0 ** 100000", "result of '**' is too large"),
        ("'a' * 1000000", "cannot multiply string and number"),
        ("'ab' * 9**9", "cannot multiply string and number"),
    ],
)
def test_constant_bombs_are_rejected_at_compile_time(source: str, message: str) -> None:
    assert rejected(source).message == message


def test_runtime_bombs_are_evaluation_errors() -> None:
    assert fails("n ** n ** n", n=9).message == "result of '**' is too large (more than 4096 bits)"
    assert fails("s * n", s="ab", n=10**6).message == "cannot multiply string and number"
    assert fails("[1] * 1000000").message == "cannot multiply list and number"
    big = "x" * (MAX_STRING_LENGTH // 2 + 1)
    assert (
        fails("s + s", s=big).message
        == f"string is too long (more than {MAX_STRING_LENGTH} characters)"
    )
    items = list(range(MAX_COLLECTION // 2 + 1))
    assert fails("l + l", l=items).message == f"list is too long (more than {MAX_COLLECTION} items)"
    huge = list(range(MAX_COLLECTION + 1))
    assert (
        fails("sum(l)", l=huge).message
        == f"sum(): list is too long (more than {MAX_COLLECTION} items)"
    )
    assert fails("5 in l", l=huge).message == f"list is too long (more than {MAX_COLLECTION} items)"
    assert (
        fails("max(l)", l=huge).message
        == f"max(): list is too long (more than {MAX_COLLECTION} items)"
    )
    assert fails("l == l", l=huge).message == f"list is too long (more than {MAX_COLLECTION} items)"


def test_catastrophic_regex_backtracking_is_cut_short() -> None:
    expression = compile_expression("s matches '(a|aa)+$'")
    started = time.monotonic()
    with pytest.raises(EvaluationError) as info:
        expression.evaluate({"s": "a" * 5000 + "!"})
    assert time.monotonic() - started < 2
    assert info.value.message.startswith("regular expression took too long to match")


def test_regex_sizes_are_bounded() -> None:
    long_pattern = "'" + "a" * (MAX_PATTERN_LENGTH + 1) + "'"
    assert rejected(f"s matches {long_pattern}").message == (
        f"invalid regular expression: longer than {MAX_PATTERN_LENGTH} characters"
    )
    assert fails("s matches 'a'", s="a" * 100_001).message == (
        "matches: string is too long (more than 100000 characters)"
    )


# --- size and nesting limits -------------------------------------------------------------------


def test_deeply_nested_parentheses_are_rejected_without_recursion_errors() -> None:
    for depth in (MAX_DEPTH + 1, 500, 2000):
        source = "(" * depth + "1" + ")" * depth
        error = rejected(source)
        assert error.message == f"expression is nested too deeply (more than {MAX_DEPTH} levels)"
    assert compile_expression("(" * 30 + "1" + ")" * 30).evaluate({}) == 1


@pytest.mark.parametrize(
    "source",
    [
        "!" * 2000 + "true",
        "-" * 2000 + "1",
        "record" + ".a" * 200,
        "record" + "[0]" * 200,
        " + ".join(["x"] * 200),
        "a ? " * 200 + "1" + " : 2" * 200,
        "len(" * 200 + "x" + ")" * 200,
        "[" * 200 + "]" * 200,
    ],
)
def test_long_chains_are_rejected_as_too_deep(source: str) -> None:
    assert (
        rejected(source).message
        == f"expression is nested too deeply (more than {MAX_DEPTH} levels)"
    )


def test_long_logical_chains_are_flat_and_accepted() -> None:
    source = " || ".join(f"record.status == 's{i}'" for i in range(150))
    expression = compile_expression(source)
    assert expression.test({"record": {"status": "s149"}})
    assert not expression.test({"record": {"status": "nope"}})


def test_source_length_and_node_count_are_bounded() -> None:
    too_long = "1 + " * (MAX_SOURCE_LENGTH // 4) + "1"
    error = rejected(too_long)
    assert error.message == f"expression is too long (more than {MAX_SOURCE_LENGTH} characters)"
    assert error.position == MAX_SOURCE_LENGTH
    many = "[" + ",".join(["1"] * (MAX_NODES + 1)) + "]"
    assert len(many) < MAX_SOURCE_LENGTH
    assert rejected(many).message == f"expression is too complex (more than {MAX_NODES} parts)"


def test_number_literals_are_bounded() -> None:
    assert rejected("1" * 65).message == "number literal is too long (more than 64 characters)"
    assert rejected("1e999").message == "number 1e999 is out of range"


def test_worst_case_evaluation_is_quick() -> None:
    """The largest expression the limits allow, over large (allowed) values, stays fast."""
    clause = "(len(s) > 3 && 'k' in m && l[0] < 5 && s.startsWith('x'))"
    source = " || ".join([clause] * 50)
    assert len(source) <= MAX_SOURCE_LENGTH
    expression = compile_expression(source)
    env = {
        "s": "y" * 100_000,
        "m": {str(i): i for i in range(1000)},
        "l": list(range(MAX_COLLECTION)),
    }
    started = time.monotonic()
    for _ in range(10):
        assert expression.evaluate(env) is False
    assert time.monotonic() - started < 1


# --- unknown functions and arity ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("foo()", "unknown function 'foo'"),
        ("Math.max(1, 2)", "unknown method 'max()'"),
        ("record.size()", "unknown method 'size()'"),
        ("len()", "len(x) takes exactly 1 argument (0 given)"),
        ("len(a, b)", "len(x) takes exactly 1 argument (2 given)"),
        ("abs(1, 2)", "abs(x) takes exactly 1 argument (2 given)"),
        ("sum()", "sum(list, 'expr') takes 1 to 2 arguments (0 given)"),
        ("sum(a, 'x', 'y')", "sum(list, 'expr') takes 1 to 2 arguments (3 given)"),
        ("min()", "min(a, b, ...) takes 1 to 10000 arguments (0 given)"),
        ("s.endsWith('a', 'b')", "s.endsWith(suffix) takes exactly 1 argument (2 given)"),
        ("d.getTime(1)", "d.getTime() takes exactly 0 arguments (1 given)"),
        ("x.length()", "length is a property: write x.length, not x.length()"),
    ],
)
def test_unknown_functions_and_wrong_arity_are_compile_errors(source: str, message: str) -> None:
    assert rejected(source).message.startswith(message)
