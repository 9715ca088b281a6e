"""Syntax tree -> a tree of Python closures, built once per expression.

Each node becomes a function `env -> value` that calls its children's functions; evaluating an
expression is one call of the root's function, with no tree walking, dispatch on node types or
parsing left for run time. Sub-expressions whose operands are all literals are folded into
constants here, so `9 ** 9 ** 9` or `1 / 0` fail when the expression is saved. Regular
expressions given as literals are compiled here too.

Nothing here looks up Python attributes: member access reads map keys (and `.length` of strings
and lists), so an expression can reach only the data its environment holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

import regex

from rocketd.engine import patterns
from rocketd.engine.expressions.errors import EvaluationError, ExpressionError
from rocketd.engine.expressions.functions import FUNCTIONS, METHODS, new_date
from rocketd.engine.expressions.limits import MAX_COLLECTION, MAX_MATCH_SUBJECT
from rocketd.engine.expressions.nodes import (
    Binary,
    Call,
    Conditional,
    Index,
    ItemExpression,
    ListLiteral,
    Literal,
    Logical,
    Member,
    MethodCall,
    Name,
    Node,
    Unary,
)
from rocketd.engine.expressions.operations import (
    ARITHMETIC,
    add,
    as_instant,
    equals,
    is_list,
    is_number,
    member_of,
    native,
    negate,
    order,
    plus,
    string_test,
    truthy,
    type_name,
)

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]

# Values that are safe to fold into a shared constant (immutable).
_FOLDABLE: Final = (type(None), bool, int, float, Decimal, str, date)


@dataclass(frozen=True, slots=True)
class _Code:
    run: Compiled
    constant: bool = False
    value: Any = None


def build(root: Node, source: str) -> Compiled:
    """The evaluation function of `root`. Raises `ExpressionError` for problems that show
    without an environment (a constant division by zero, an invalid literal regex, ...)."""
    return _Builder(source).code(root).run


def current_time(env: Env) -> datetime:
    """`now`: the environment's `now` when it holds a date or timestamp (one instant for the
    whole evaluation, and testable), else the current UTC time."""
    value = env.get("now")
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    return as_instant(native(value)) or datetime.now(UTC)


def _constant(value: Any) -> _Code:
    return _Code(lambda env: value, constant=True, value=value)


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.constants: set[int] = set()  # ids of the nodes that compiled to a constant

    def code(self, node: Node) -> _Code:
        built = self._code(node)
        if not built.constant and self.foldable(node):
            try:
                value = built.run({})
            except EvaluationError as exc:
                raise ExpressionError(exc.message, node.position, self.source) from None
            if isinstance(value, _FOLDABLE):
                built = _constant(value)
        if built.constant:
            self.constants.add(id(node))
        return built

    def foldable(self, node: Node) -> bool:
        """An operator, pure function or method whose operands are all constants computes the
        same value whenever it runs. (A conditional with a constant condition is folded by
        `conditional`.)"""
        children: tuple[Node, ...]
        if isinstance(node, Unary):
            children = (node.operand,)
        elif isinstance(node, Binary):
            children = (node.left, node.right)
        elif isinstance(node, Logical):
            children = node.operands
        elif isinstance(node, Call):
            if not FUNCTIONS[node.function].pure or node.function == "sum":
                return False
            children = node.args
        elif isinstance(node, MethodCall):
            children = (node.target, *node.args)
        else:
            return False
        return all(id(child) in self.constants for child in children)

    def _code(self, node: Node) -> _Code:
        if isinstance(node, Literal):
            return _constant(node.value)
        if isinstance(node, Name):
            return _Code(_name(node.name))
        if isinstance(node, Member):
            return _Code(_member(self.code(node.target).run, node.name))
        if isinstance(node, Index):
            return _Code(_index(self.code(node.target).run, self.code(node.index).run))
        if isinstance(node, ListLiteral):
            return _Code(_list([self.code(item).run for item in node.items]))
        if isinstance(node, Unary):
            return _Code(_unary(node.op, self.code(node.operand).run))
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Logical):
            return _Code(_logical(node.op, [self.code(n).run for n in node.operands]))
        if isinstance(node, Conditional):
            return self.conditional(node)
        if isinstance(node, Call):
            return _Code(self.call(node))
        if isinstance(node, MethodCall):
            return _Code(self.method_call(node))
        if isinstance(node, ItemExpression):
            return _Code(self.code(node.node).run)
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def binary(self, node: Binary) -> _Code:
        left, right = self.code(node.left), self.code(node.right)
        op = node.op
        if op == "matches":
            return _Code(self.matches(node, left, right))
        if op in ("==", "!=") and (left.constant or right.constant):
            fixed, other = (right.value, left.run) if right.constant else (left.value, right.run)
            return _Code(_compare_with_constant(other, fixed, negate_result=op == "!="))
        return _Code(_binary(op, left.run, right.run))

    def conditional(self, node: Conditional) -> _Code:
        condition = self.code(node.condition)
        then, otherwise = self.code(node.then), self.code(node.otherwise)
        if condition.constant:
            return then if truthy(condition.value) else otherwise
        test, if_true, if_false = condition.run, then.run, otherwise.run
        return _Code(lambda env: if_true(env) if truthy(test(env)) else if_false(env))

    def call(self, node: Call) -> Compiled:
        name = node.function
        args = [self.code(arg).run for arg in node.args]
        if name == "now" or (name == "new Date" and not args):
            return current_time
        if name == "new Date":
            (argument,) = args
            return lambda env: new_date(argument(env))
        if name == "sum":
            return _sum(args[0], args[1] if len(args) == 2 else None)
        function = FUNCTIONS[name].call
        assert function is not None  # only now/new Date/sum have no implementation
        if len(args) == 1:
            (only,) = args
            return lambda env: function(only(env))
        return lambda env: function(*[arg(env) for arg in args])

    def method_call(self, node: MethodCall) -> Compiled:
        target = self.code(node.target).run
        args = [self.code(arg).run for arg in node.args]
        method = METHODS[node.method].call

        def run(env: Env) -> Any:
            receiver = target(env)
            if receiver is None:
                return None
            return method(receiver, *[arg(env) for arg in args])

        return run

    def matches(self, node: Binary, subject: _Code, pattern: _Code) -> Compiled:
        run_subject = subject.run
        if pattern.constant:
            try:
                fixed = compile_pattern(pattern.value)
            except EvaluationError as exc:
                raise ExpressionError(exc.message, node.right.position, self.source) from None
            return lambda env: _search(fixed, run_subject(env))
        run_pattern = pattern.run
        return lambda env: _search(compile_pattern(run_pattern(env)), run_subject(env))


# --- closures ----------------------------------------------------------------------------------


def _name(name: str) -> Compiled:
    if name == "now":
        return current_time
    return lambda env: native(env.get(name))


def _member(target: Compiled, name: str) -> Compiled:
    def run(env: Env) -> Any:
        value = target(env)
        if isinstance(value, Mapping):
            return native(value.get(name))
        if name == "length" and isinstance(value, str | list | tuple):
            return len(value)
        return None  # nil (and any non-map) has no members: nil, as `old.status` on create

    return run


def _index(target: Compiled, index: Compiled) -> Compiled:
    def run(env: Env) -> Any:
        container, key = native(target(env)), native(index(env))
        if container is None or key is None:
            return None
        if isinstance(container, Mapping):
            return native(container.get(key)) if isinstance(key, str) else None
        if isinstance(container, str | list | tuple):
            if isinstance(key, bool) or not isinstance(key, int):
                raise EvaluationError(
                    f"a {type_name(container)} index must be an integer, got {type_name(key)}"
                )
            if -len(container) <= key < len(container):
                return native(container[key])
            return None
        return None

    return run


def _list(items: list[Compiled]) -> Compiled:
    return lambda env: [item(env) for item in items]


def _unary(op: str, operand: Compiled) -> Compiled:
    if op == "!":
        return lambda env: not truthy(operand(env))
    if op == "-":
        return lambda env: negate(operand(env))
    return lambda env: plus(operand(env))


def _compare_with_constant(other: Compiled, fixed: Any, *, negate_result: bool) -> Compiled:
    """`x == 'paid'` and friends: the common case (same plain type) without the general path."""
    fixed_type = type(fixed)
    if fixed_type in (str, bool, type(None)):

        def run(env: Env) -> bool:
            value = other(env)
            same = value == fixed if type(value) is fixed_type else equals(value, fixed)
            return not same if negate_result else same

        return run
    if negate_result:
        return lambda env: not equals(other(env), fixed)
    return lambda env: equals(other(env), fixed)


def _binary(op: str, left: Compiled, right: Compiled) -> Compiled:
    if op == "==":
        return lambda env: equals(left(env), right(env))
    if op == "!=":
        return lambda env: not equals(left(env), right(env))
    if op in ("<", "<=", ">", ">="):
        return lambda env: order(op, left(env), right(env))
    if op == "in":
        return lambda env: member_of(left(env), right(env))
    if op == "not in":
        return lambda env: not member_of(left(env), right(env))
    if op == "contains":
        return lambda env: member_of(right(env), left(env))
    if op in ("startsWith", "endsWith"):
        return lambda env: string_test(op, left(env), right(env))
    arithmetic = ARITHMETIC[op]
    return lambda env: arithmetic(left(env), right(env))


def _logical(op: str, operands: list[Compiled]) -> Compiled:
    """Short-circuit; like JavaScript, the result is the operand that decided (so
    `record.nickname || record.name` picks a value), which has the expected truthiness."""
    if op == "&&":

        def run_and(env: Env) -> Any:
            value = None
            for operand in operands:
                value = operand(env)
                if not truthy(value):
                    return value
            return value

        return run_and
    if op == "||":

        def run_or(env: Env) -> Any:
            value = None
            for operand in operands:
                value = operand(env)
                if truthy(value):
                    return value
            return value

        return run_or

    def run_coalesce(env: Env) -> Any:
        for operand in operands:
            value = operand(env)
            if value is not None:
                return value
        return None

    return run_coalesce


# --- sum() -------------------------------------------------------------------------------------


class _ItemScope(Mapping[str, Any]):
    """The environment of a `sum()` item expression: `it` is the item, a map item's keys are
    variables, and the enclosing environment's variables stay visible behind them."""

    __slots__ = ("item", "outer")

    def __init__(self, outer: Env, item: Any) -> None:
        self.outer = outer
        self.item = item

    def get(self, key: str, default: Any = None) -> Any:
        if key == "it":
            return self.item
        if isinstance(self.item, Mapping) and key in self.item:
            return self.item[key]
        return self.outer.get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key == "it":
            return self.item
        if isinstance(self.item, Mapping) and key in self.item:
            return self.item[key]
        return self.outer[key]

    def __iter__(self) -> Iterator[str]:
        keys = {"it", *self.outer}
        if isinstance(self.item, Mapping):
            keys.update(str(k) for k in self.item)
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _sum(items: Compiled, per_item: Compiled | None) -> Compiled:
    """SQL-like: nil items (or nil results of the item expression) are skipped; an empty or nil
    list sums to 0; anything else that is not a number is an error."""

    def run(env: Env) -> Any:
        values = native(items(env))
        if values is None:
            return 0
        if not is_list(values):
            raise EvaluationError(f"sum() needs a list, got {type_name(values)}")
        if len(values) > MAX_COLLECTION:
            raise EvaluationError(f"sum(): list is too long (more than {MAX_COLLECTION} items)")
        total: Any = 0
        for position, item in enumerate(values):
            value = native(item) if per_item is None else per_item(_ItemScope(env, item))
            if value is None:
                continue
            if not is_number(value):
                raise EvaluationError(
                    f"sum(): item {position} gives a {type_name(value)}, not a number"
                )
            total = add(total, value)
        return total

    return run


# --- regular expressions -----------------------------------------------------------------------


def compile_pattern(pattern: Any) -> regex.Pattern[str]:
    """A `matches` pattern (Python regex syntax), within the pattern limits and compiled once
    (rocketd.engine.patterns). Raises `EvaluationError`."""
    pattern = native(pattern)
    if not isinstance(pattern, str):
        raise EvaluationError(f"matches needs a string pattern, got {type_name(pattern)}")
    try:
        return patterns.compile_pattern(pattern)
    except patterns.PatternError as exc:
        where = f" (character {exc.position} of the pattern)" if exc.position is not None else ""
        raise EvaluationError(f"invalid regular expression: {exc.reason}{where}") from None
    except patterns.PatternTimeout as exc:
        raise EvaluationError(f"regular expression not compiled: {exc}") from None


def _search(pattern: regex.Pattern[str], subject: Any) -> bool:
    """Unanchored search, like field `pattern` rules; a nil subject does not match."""
    subject = native(subject)
    if subject is None:
        return False
    if not isinstance(subject, str):
        raise EvaluationError(f"matches needs a string on its left, got {type_name(subject)}")
    if len(subject) > MAX_MATCH_SUBJECT:
        raise EvaluationError(
            f"matches: string is too long (more than {MAX_MATCH_SUBJECT} characters)"
        )
    try:
        return patterns.search(pattern, subject)
    except patterns.PatternTimeout as exc:
        if exc.budget_spent:
            raise EvaluationError(
                f"regular expressions took too long: {exc}; simplify them"
            ) from None
        raise EvaluationError(
            "regular expression took too long to match; simplify it (avoid nested repetition)"
        ) from None
