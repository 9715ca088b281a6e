"""Expression evaluations per second: five representative rule expressions, each compiled cold
(compile cache cleared every time) and evaluated warm (compiled once, evaluated repeatedly).

Standalone, no database: `.venv/bin/python bench/expressions_bench.py [--seconds 1.0]`.
Prints a Markdown table (the one in docs/expressions.md, "Performance").
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rocketd.expressions import clear_compile_cache, compile_expression

ENV: Mapping[str, Any] = {
    "record": {
        "status": "paid",
        "payment_date": None,
        "quantity": 3,
        "unit_price": Decimal("19.90"),
        "start_date": date(2026, 3, 10),
        "end_date": "2026-03-14",
        "title": "Draft: spring plan",
    },
    "old": {"status": "open"},
    "action": "update",
    "user": {"id": "7a1c0b9e-2f3d-4c5b-8a6e-1d2c3b4a5f60", "roles": ["agent", "manager"]},
    "now": datetime(2026, 2, 22, 10, 0, tzinfo=UTC),
    "related": {
        "lines": [{"quantity": i % 4 + 1, "price": Decimal(f"{i}.50")} for i in range(10)],
    },
}

# (what it stands for, source, expected value in ENV)
EXPRESSIONS: list[tuple[str, str, Any]] = [
    (
        "expression rule (spec)",
        "record.status == 'paid' && record.payment_date == nil",
        True,
    ),
    (
        "rule with old",
        "record.status == 'paid' && (old == nil || old.status != 'paid')",
        True,
    ),
    (
        "computed rule",
        "record.quantity * record.unit_price",
        Decimal("59.70"),
    ),
    (
        "dates (upstream example)",
        "new Date(record.end_date) >= new Date(record.start_date)",
        True,
    ),
    (
        "aggregate + roles",
        "!('admin' in user.roles) && sum(related.lines, 'quantity * price') > 100",
        True,
    ),
]


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of `work`: the best of three runs of about `seconds` / 3 each."""
    best = 0.0
    for _ in range(3):
        calls, started = 0, time.perf_counter()
        deadline = started + seconds / 3
        while True:
            for _ in range(100):
                work()
            calls += 100
            finished = time.perf_counter()
            if finished >= deadline:
                break
        best = max(best, calls / (finished - started))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per number")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print()
    print("| expression | source | compile (cold) /s | evaluate (warm) /s | evaluate µs |")
    print("|---|---|---:|---:|---:|")
    for label, source, expected in EXPRESSIONS:
        compiled = compile_expression(source)
        value = compiled.evaluate(ENV)
        if value != expected:
            print(f"{label}: got {value!r}, expected {expected!r}", file=sys.stderr)
            return 1

        def cold(source: str = source) -> object:
            clear_compile_cache()
            return compile_expression(source)

        def warm(expression: Any = compiled) -> object:
            return expression.evaluate(ENV)

        compiles = rate(cold, args.seconds)
        evaluations = rate(warm, args.seconds)
        shown = source.replace("|", "\\|")  # a Markdown table cell
        print(
            f"| {label} | `{shown}` | {compiles:,.0f} | {evaluations:,.0f} "
            f"| {1e6 / evaluations:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
