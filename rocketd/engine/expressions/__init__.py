"""The expression language of rules, state-machine guards, workflow conditions and webhook
conditions (spec rules-state-workflows.md section 2; upstream-gaps S1, C6).

It accepts the union of the dialects found in Rocket metadata: expr-lang (`nil`, `and`, `in`,
`matches`, `len()`), JavaScript (`===`, `null`, `new Date(x)`, `.startsWith()`, `.length`) and
the admin UI's `.contains()`. See docs/expressions.md for the language reference.

Decision: a small compiler of our own, not a library with a syntax adapter.

- No maintained Python library accepts this syntax. CEL (cel-python) has no `===`, `nil`,
  `and`/`or` words, `new Date()` or the null-tolerant member access the spec requires
  (`old.status` on create); simpleeval evaluates Python syntax through Python's own `ast` and
  operators, so `===`, `&&`, `nil`, `a ? b : c` and `'x'.startsWith()` would all need rewriting
  of source text before parsing, where positions and precedence get lost, and its sandbox is a
  deny-list over Python objects rather than the absence of any path to them.
- The semantics are ours to fix anyway (nil-safe member access, `==` by value across
  int/float/Decimal with no string coercion, dates against ISO strings, JavaScript `%`), and
  an adapter would have to override most of a library's operators.
- A hand-written tokenizer and Pratt parser (~500 lines) report every error with its position,
  check functions and arity at save time, and compile to a tree of closures: no `eval`, `exec`
  or Python `ast`, no attribute access at all (member access reads map keys only), no loops,
  bounded sizes (limits.py) and fast evaluation.
- `matches` uses the `regex` package (a well-kept drop-in for `re`, also used by field
  `pattern` rules) for its per-match timeout, which bounds catastrophic backtracking; patterns
  are checked, compiled and matched by rocketd.engine.patterns, under the pattern limits.

Modules: lexer (characters -> tokens), parser (tokens -> nodes), evaluator (nodes -> closures,
constant folding), operations (what each operator means), functions (built-ins and methods),
expression (`compile_expression`, `Expression`), errors, limits.
"""

from __future__ import annotations

from rocketd.engine.expressions.errors import EvaluationError, ExpressionError
from rocketd.engine.expressions.expression import (
    Expression,
    clear_compile_cache,
    compile_expression,
)
from rocketd.engine.expressions.functions import FUNCTIONS, METHODS
from rocketd.engine.expressions.limits import (
    MAX_COLLECTION,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_MATCH_SUBJECT,
    MAX_NODES,
    MAX_SOURCE_LENGTH,
    MAX_STRING_LENGTH,
)
from rocketd.engine.expressions.operations import truthy
from rocketd.engine.patterns import MATCH_TIMEOUT_SECONDS, MAX_PATTERN_LENGTH

__all__ = [
    "FUNCTIONS",
    "MATCH_TIMEOUT_SECONDS",
    "MAX_COLLECTION",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_MATCH_SUBJECT",
    "MAX_NODES",
    "MAX_PATTERN_LENGTH",
    "MAX_SOURCE_LENGTH",
    "MAX_STRING_LENGTH",
    "METHODS",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "clear_compile_cache",
    "compile_expression",
    "truthy",
]
