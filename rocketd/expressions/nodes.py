"""The syntax tree the parser builds and the evaluator compiles. Plain frozen data, no behaviour.

Operators are stored in one canonical spelling: `===` is `==`, `!==` is `!=`, `and` is `&&`,
`or` is `||`, `not` is `!`, `not in` is `not in`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Literal:
    value: object
    position: int


@dataclass(frozen=True, slots=True)
class ListLiteral:
    items: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Name:
    """A top-level variable (`record`, `old`, `user`, ...); an absent one is nil."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Member:
    """`target.name` (also `target?.name`): a map key, or `.length` of a string or list."""

    target: Node
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Index:
    """`target[index]`: a list position or a map key."""

    target: Node
    index: Node
    position: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-", "+", "!"
    operand: Node
    position: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # arithmetic, comparison, "in", "not in", "contains", "startsWith", ...
    left: Node
    right: Node
    position: int


@dataclass(frozen=True, slots=True)
class Logical:
    """`&&`, `||` or `??` over two or more operands (chains are flattened), short-circuit."""

    op: str
    operands: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Conditional:
    condition: Node
    then: Node
    otherwise: Node
    position: int


@dataclass(frozen=True, slots=True)
class ItemExpression:
    """The per-item expression of `sum(list, '...')`, parsed from its string literal."""

    node: Node
    source: str
    position: int


@dataclass(frozen=True, slots=True)
class Call:
    """A built-in function call; `new Date(x)` is the function `"new Date"`."""

    function: str
    args: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class MethodCall:
    """`target.method(args)`; a nil target gives nil."""

    target: Node
    method: str
    args: tuple[Node, ...]
    position: int


Node = (
    Literal
    | ListLiteral
    | Name
    | Member
    | Index
    | Unary
    | Binary
    | Logical
    | Conditional
    | ItemExpression
    | Call
    | MethodCall
)
