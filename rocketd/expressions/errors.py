"""The two failures of the expression language.

`ExpressionError` is a compile-time problem (syntax, unknown function, wrong arity, a limit
exceeded) and carries the 0-based character `position` in the source. `EvaluationError` is a
runtime problem (adding a string to a number, dividing by zero, a regex that runs too long).

Both are `ValidationFailed` (422) so that a caller who forgets to catch one still answers a
client error, never a 500; callers that know better (rules, guards, workflow conditions) catch
them and word their own details.
"""

from __future__ import annotations

from typing import Any, Final

from rocketd.errors import ErrorDetail, ValidationFailed

# Characters of source shown on each side of the error position.
EXCERPT_RADIUS: Final = 30


class ExpressionError(ValidationFailed):
    """An expression that does not compile. `str()` is
    `"{message} at position {n}: {excerpt}"` followed by a caret line under the position."""

    def __init__(self, message: str, position: int, source: str = "") -> None:
        super().__init__(message, [ErrorDetail(message, rule="expression")])
        self.position = position
        self.source = source

    def with_source(self, source: str, offset: int = 0) -> ExpressionError:
        """The same error placed in `source`, `offset` characters further on."""
        return ExpressionError(self.message, self.position + offset, source)

    def __str__(self) -> str:
        head = f"{self.message} at position {self.position}"
        if not self.source:
            return head
        start = max(0, self.position - EXCERPT_RADIUS)
        end = min(len(self.source), self.position + EXCERPT_RADIUS)
        before = ("..." if start > 0 else "") + self.source[start : self.position]
        after = self.source[self.position : end] + ("..." if end < len(self.source) else "")
        # Newlines and tabs would break the caret's alignment.
        before, after = (part.translate(_FLATTEN) for part in (before, after))
        prefix = f"{head}: "
        return f"{prefix}{before}{after}\n{' ' * (len(prefix) + len(before))}^"

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["error"]["message"] = f"invalid expression: {self.message} at position {self.position}"
        return body


class EvaluationError(ValidationFailed):
    """An expression that compiled but cannot be evaluated against this environment."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [ErrorDetail(message, rule="expression")])


_FLATTEN: Final = str.maketrans({"\n": " ", "\r": " ", "\t": " "})
