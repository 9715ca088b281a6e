"""`compile_expression`: source text -> an `Expression` ready to evaluate, cached by source.

The only entry point that turns text into something runnable. Compiling is parse + build
(see parser.py, evaluator.py) and happens when metadata is saved or loaded; `evaluate` only
calls the compiled closures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rocketd.engine import patterns
from rocketd.engine.expressions.errors import EvaluationError, ExpressionError
from rocketd.engine.expressions.evaluator import build
from rocketd.engine.expressions.operations import truthy
from rocketd.engine.expressions.parser import parse

COMPILE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Expression:
    """A compiled expression. Equal (and hashable) by source."""

    source: str
    _names: frozenset[str] = field(repr=False, compare=False)
    _run: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)

    @property
    def names(self) -> frozenset[str]:
        """The top-level variables the expression reads (`{"record", "old"}`), so a caller can
        refuse at save time a variable its context does not provide. Names used only inside a
        `sum()` item expression are not included (they are the items' keys)."""
        return self._names

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """The expression's value in `env`. Raises `EvaluationError` only. Its regular
        expressions share the running write's time budget, or one of their own."""
        budget = patterns.start_budget()
        try:
            return self._run(env)
        except EvaluationError:
            raise
        except RecursionError:
            raise EvaluationError("a value is nested too deeply to evaluate") from None
        except Exception as exc:
            # A defect here must still be a 422 naming the expression, never a 500.
            raise EvaluationError(f"cannot evaluate {self.source!r}: {exc}") from exc
        finally:
            patterns.end_budget(budget)

    def test(self, env: Mapping[str, Any]) -> bool:
        """The truthiness of `evaluate(env)`: what rules, guards and conditions use."""
        return truthy(self.evaluate(env))


def compile_expression(source: str) -> Expression:
    """Compile `source`; raises `ExpressionError` (with the position) when it is not a valid
    expression. Compiled expressions are cached by source, so reloading metadata is cheap."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, got {type(source).__name__}", 0)
    return _compile(source)


@functools.lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _compile(source: str) -> Expression:
    if not source.strip():
        raise ExpressionError("expression is empty", 0, source)
    parsed = parse(source)
    return Expression(source, parsed.names, build(parsed.root, source))


def clear_compile_cache() -> None:
    """Forget every compiled expression (benchmarks measure cold compiles with it)."""
    _compile.cache_clear()
