"""Tokens -> syntax tree, by precedence climbing (a Pratt parser).

Accepts the union of expr-lang and JavaScript syntax that Rocket metadata uses (spec
rules-state-workflows.md section 2) and nothing more. Everything that can be checked without an
environment is checked here: unknown functions and methods, wrong arity, names starting with `_`,
the size and nesting limits. Each error carries the position of the offending token.

Precedence, lowest first: `? :`, `??`, `|| or`, `&& and`, `== != === !==`,
`< <= > >= in not-in contains startsWith endsWith matches`, `+ -`, `* / %`, unary `- + ! not`,
`**` (right-associative; `-2 ** 2` is -4), then member access, indexing and calls.
"""

from __future__ import annotations

from typing import Final, TypeVar

from rocketd.expressions.errors import ExpressionError
from rocketd.expressions.functions import FUNCTIONS, METHODS, arity_problem
from rocketd.expressions.lexer import Token, tokenize
from rocketd.expressions.limits import MAX_DEPTH, MAX_NODES, MAX_SOURCE_LENGTH
from rocketd.expressions.nodes import (
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

_N = TypeVar("_N", bound=Node)

# Left binding power of each infix operator (as spelled in the source) and its canonical form.
_INFIX: Final[dict[str, tuple[int, str]]] = {
    "??": (2, "??"),
    "||": (3, "||"),
    "or": (3, "||"),
    "&&": (4, "&&"),
    "and": (4, "&&"),
    "==": (5, "=="),
    "===": (5, "=="),
    "!=": (5, "!="),
    "!==": (5, "!="),
    "<": (6, "<"),
    "<=": (6, "<="),
    ">": (6, ">"),
    ">=": (6, ">="),
    "in": (6, "in"),
    "contains": (6, "contains"),
    "startsWith": (6, "startsWith"),
    "endsWith": (6, "endsWith"),
    "matches": (6, "matches"),
    "+": (7, "+"),
    "-": (7, "-"),
    "*": (8, "*"),
    "/": (8, "/"),
    "%": (8, "%"),
    "**": (10, "**"),
}
_CONDITIONAL_POWER: Final = 1
_NOT_IN_POWER: Final = 6
_UNARY_POWER: Final = 9  # binds tighter than '*', looser than '**'
_RIGHT_ASSOCIATIVE: Final = frozenset({"**"})
_LOGICAL: Final = frozenset({"&&", "||", "??"})
_WORD_OPERATORS: Final = frozenset(
    {"and", "or", "in", "contains", "startsWith", "endsWith", "matches"}
)

_CONSTANTS: Final[dict[str, object]] = {
    "true": True,
    "false": False,
    "nil": None,
    "null": None,
    "undefined": None,
}
# Words of other languages that an author might try; named in the error instead of a vaguer one.
_UNSUPPORTED_WORDS: Final = frozenset(
    {
        "async",
        "await",
        "class",
        "const",
        "def",
        "delete",
        "else",
        "for",
        "function",
        "if",
        "import",
        "instanceof",
        "lambda",
        "let",
        "return",
        "this",
        "typeof",
        "var",
        "void",
        "while",
        "yield",
    }
)


class ParsedExpression:
    """What the parser hands the evaluator: the tree and the top-level variables it reads."""

    __slots__ = ("names", "root", "source")

    def __init__(self, source: str, root: Node, names: frozenset[str]) -> None:
        self.source = source
        self.root = root
        self.names = names


def parse(source: str, *, item_expression: bool = False) -> ParsedExpression:
    """Parse `source`; raises `ExpressionError` with the position of the first problem.
    `item_expression` is set for the per-item expression of `sum()`."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"expression is too long (more than {MAX_SOURCE_LENGTH} characters)",
            MAX_SOURCE_LENGTH,
            source,
        )
    parser = _Parser(source, tokenize(source), item_expression)
    root = parser.expression(0)
    token = parser.peek()
    if token.kind != "end":
        raise parser.error(
            f"unexpected {_describe(token)} (expected an operator or the end of the expression)",
            token,
        )
    return ParsedExpression(source, root, frozenset(parser.names))


class _Parser:
    def __init__(self, source: str, tokens: list[Token], item_expression: bool) -> None:
        self.source = source
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.node_count = 0
        self.heights: dict[int, int] = {}
        self.names: set[str] = set()
        self.item_expression = item_expression

    # --- tokens --------------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text == text

    def expect(self, text: str, context: str) -> Token:
        token = self.peek()
        if token.kind != "op" or token.text != text:
            raise self.error(f"expected '{text}' {context}, found {_describe(token)}", token)
        return self.advance()

    def error(self, message: str, token: Token | int) -> ExpressionError:
        position = token if isinstance(token, int) else token.position
        return ExpressionError(message, position, self.source)

    # --- nodes ---------------------------------------------------------------------------------

    def node(self, node: _N, *children: Node) -> _N:
        """Register `node`: counts it and checks the tree's height at once."""
        self.node_count += 1
        if self.node_count > MAX_NODES:
            raise self.error(
                f"expression is too complex (more than {MAX_NODES} parts)", node.position
            )
        height = 1 + max((self.heights[id(child)] for child in children), default=0)
        if height > MAX_DEPTH:
            raise self.error(
                f"expression is nested too deeply (more than {MAX_DEPTH} levels)", node.position
            )
        self.heights[id(node)] = height
        return node

    # --- grammar -------------------------------------------------------------------------------

    def expression(self, min_power: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"expression is nested too deeply (more than {MAX_DEPTH} levels)", self.peek()
            )
        left = self.postfix(self.prefix())
        while True:
            token = self.peek()
            if token.kind == "op" and token.text == "?":
                if _CONDITIONAL_POWER < min_power:
                    break
                left = self.conditional(left)
                continue
            if self.at_not_in():
                if _NOT_IN_POWER < min_power:
                    break
                self.advance()
                self.advance()
                right = self.expression(_NOT_IN_POWER + 1)
                left = self.node(Binary("not in", left, right, token.position), left, right)
                continue
            infix = self.infix_operator(token)
            if infix is None:
                break
            power, op = infix
            if power < min_power:
                break
            self.advance()
            right = self.expression(power if op in _RIGHT_ASSOCIATIVE else power + 1)
            left = self.combine(op, left, right, token.position)
        self.depth -= 1
        return left

    def infix_operator(self, token: Token) -> tuple[int, str] | None:
        if token.kind == "op" or (token.kind == "name" and token.text in _WORD_OPERATORS):
            return _INFIX.get(token.text)
        return None

    def at_not_in(self) -> bool:
        first, second = self.peek(), self.peek(1)
        return (first.kind, first.text, second.kind, second.text) == ("name", "not", "name", "in")

    def combine(self, op: str, left: Node, right: Node, position: int) -> Node:
        if op in _LOGICAL:
            # Chains are flattened so that a long `a || b || c ...` is not a deep tree.
            if isinstance(left, Logical) and left.op == op:
                operands = (*left.operands, right)
            else:
                operands = (left, right)
            return self.node(Logical(op, operands, position), *operands)
        return self.node(Binary(op, left, right, position), left, right)

    def conditional(self, condition: Node) -> Node:
        question = self.advance()
        then = self.expression(0)
        self.expect(":", "in a conditional 'cond ? a : b'")
        otherwise = self.expression(_CONDITIONAL_POWER)
        node = Conditional(condition, then, otherwise, question.position)
        return self.node(node, condition, then, otherwise)

    def prefix(self) -> Node:
        token = self.advance()
        if token.kind == "number" or token.kind == "string":
            return self.node(Literal(token.value, token.position))
        if token.kind == "name":
            return self.word(token)
        if token.kind == "end":
            raise self.error("unexpected end of expression", token)
        if token.text == "(":
            if self.at(")"):
                raise self.error("expected an expression inside '( )'", self.peek())
            inner = self.expression(0)
            self.expect(")", "to close '('")
            return inner
        if token.text == "[":
            return self.list_literal(token)
        if token.text in ("-", "+", "!"):
            operand = self.expression(_UNARY_POWER)
            return self.node(Unary(token.text, operand, token.position), operand)
        raise self.error(f"unexpected {_describe(token)}", token)

    def word(self, token: Token) -> Node:
        word = token.text
        if word in _CONSTANTS:
            return self.node(Literal(_CONSTANTS[word], token.position))
        if word == "not":
            operand = self.expression(_UNARY_POWER)
            return self.node(Unary("!", operand, token.position), operand)
        if word == "new":
            return self.new_date(token)
        if word in _WORD_OPERATORS:
            raise self.error(f"unexpected '{word}' (it needs a value on its left)", token)
        if word in _UNSUPPORTED_WORDS:
            raise self.error(f"'{word}' is not supported in expressions", token)
        self.check_name(word, token)
        if word == "Date" and self.at("."):
            raise self.error(
                "'Date' is only supported as 'new Date(x)'; use now() for the current time", token
            )
        if self.at("("):
            return self.call(word, token)
        self.names.add(word)
        return self.node(Name(word, token.position))

    def check_name(self, name: str, token: Token | int) -> None:
        if name.startswith("_"):
            raise self.error(f"names starting with '_' are not allowed ({name!r})", token)

    def new_date(self, token: Token) -> Node:
        target = self.peek()
        if target.kind != "name" or target.text != "Date" or self.peek(1).text != "(":
            raise self.error("'new' is only supported as 'new Date(...)'", token)
        self.advance()
        return self.call("new Date", token)

    def call(self, name: str, token: Token) -> Node:
        function = FUNCTIONS.get(name)
        if function is None:
            known = ", ".join(sorted(n for n in FUNCTIONS if " " not in n))
            raise self.error(f"unknown function '{name}' (available: {known})", token)
        if self.item_expression and name == "sum":
            raise self.error("sum() cannot be used inside a sum() item expression", token)
        args = self.arguments()
        problem = arity_problem(function.usage, function.min_args, function.max_args, len(args))
        if problem:
            raise self.error(problem, token)
        if name == "sum" and len(args) == 2:
            args = (args[0], self.item_expression_of(args[1]))
        return self.node(Call(name, args, token.position), *args)

    def item_expression_of(self, argument: Node) -> Node:
        if not isinstance(argument, Literal) or not isinstance(argument.value, str):
            raise self.error(
                "the second argument of sum() must be a quoted expression, e.g. 'price * quantity'",
                argument.position,
            )
        inner_source = argument.value
        try:
            parsed = parse(inner_source, item_expression=True)
        except ExpressionError as exc:
            # +1 for the opening quote; exact unless the literal holds escapes.
            raise ExpressionError(
                f"in sum() item expression: {exc.message}",
                argument.position + 1 + exc.position,
                self.source,
            ) from None
        return self.node(ItemExpression(parsed.root, inner_source, argument.position))

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(", "to start the arguments")
        args: list[Node] = []
        while not self.at(")"):
            args.append(self.expression(0))
            if not self.at(","):
                break
            self.advance()
        self.expect(")", "to close the arguments")
        return tuple(args)

    def list_literal(self, token: Token) -> Node:
        items: list[Node] = []
        while not self.at("]"):
            items.append(self.expression(0))
            if not self.at(","):
                break
            self.advance()
        self.expect("]", "to close the list")
        return self.node(ListLiteral(tuple(items), token.position), *items)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.kind != "op":
                return node
            if token.text in (".", "?."):
                self.advance()
                node = self.member(node)
            elif token.text == "[":
                self.advance()
                index = self.expression(0)
                self.expect("]", "to close '['")
                if isinstance(index, Literal) and isinstance(index.value, str):
                    self.check_name(index.value, index.position)
                node = self.node(Index(node, index, token.position), node, index)
            elif token.text == "(":
                raise self.error("only functions and methods can be called", token)
            else:
                return node

    def member(self, target: Node) -> Node:
        token = self.advance()
        if token.kind != "name":
            raise self.error(f"expected a name after '.', found {_describe(token)}", token)
        name = token.text
        self.check_name(name, token)
        if not self.at("("):
            return self.node(Member(target, name, token.position), target)
        method = METHODS.get(name)
        if method is None:
            if name == "length":
                raise self.error("length is a property: write x.length, not x.length()", token)
            known = ", ".join(sorted(METHODS))
            raise self.error(f"unknown method '{name}()' (available: {known})", token)
        args = self.arguments()
        problem = arity_problem(method.usage, method.min_args, method.max_args, len(args))
        if problem:
            raise self.error(problem, token)
        return self.node(MethodCall(target, name, args, token.position), target, *args)


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "string":
        return "a string"
    if token.kind == "number":
        return f"the number {token.text}"
    return f"'{token.text}'"
