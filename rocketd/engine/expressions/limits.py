"""The bounds that keep compiling and evaluating an expression cheap, whatever its author wrote.

Compile-time limits make a hostile expression fail when it is saved; evaluation-time limits stop
an expression that is fine on its own from doing unbounded work on large values. Regular
expressions have limits of their own, shared with field `pattern` rules (rocketd.engine.patterns).
"""

from __future__ import annotations

from typing import Final

# --- compile time ------------------------------------------------------------------------------
MAX_SOURCE_LENGTH: Final = 4096  # characters of source
MAX_DEPTH: Final = 64  # nesting of the syntax tree (parentheses, operators, member chains)
MAX_NODES: Final = 1000  # syntax-tree nodes
MAX_NUMBER_LITERAL_LENGTH: Final = 64  # characters of one number literal

# --- evaluation time ---------------------------------------------------------------------------
MAX_STRING_LENGTH: Final = 1_000_000  # characters of a string the expression builds
MAX_COLLECTION: Final = 10_000  # items of a list built, searched, compared or summed
MAX_INT_BITS: Final = 4096  # bits of an integer result (`**`, `*`)
MAX_MATCH_SUBJECT: Final = 100_000  # characters of the string a regex is matched against
MAX_ROUND_DIGITS: Final = 20  # digits after the point for round(x, digits)
