"""Cost of one log line, the way rocketd writes them: its own request line (structlog, rendered
straight into the sink), the same line carrying a webhook URL and a DSN (what redaction costs),
and a library's warning (stdlib `logging` through `ProcessorFormatter`). JSON to /dev/null.

Standalone, no database: `.venv/bin/python bench/logging_bench.py [--lines 20000]`.
Prints microseconds per line for each kind (numbers from a loaded machine are noisy: compare
runs made one after the other).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

from rocketd.logging import configure_logging, get_logger


def per_line(write: Callable[[], None], lines: int) -> float:
    started = time.perf_counter()
    for _ in range(lines):
        write()
    return (time.perf_counter() - started) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines per kind")
    args = parser.parse_args()
    with open("/dev/null", "w", encoding="utf-8") as sink:
        configure_logging("info", "json", stream=sink)
        own = get_logger("rocketd.http")
        library = logging.getLogger("psycopg.pool")
        kinds: list[tuple[str, Callable[[], None]]] = [
            (
                "request line",
                lambda: own.info(
                    "request", method="GET", path="/api/shop/note", status=200, duration_ms=1.2
                ),
            ),
            (
                "line with secrets to redact",
                lambda: own.warning(
                    "webhook attempt failed",
                    url="https://hooks.example.com/services/T0/B0/XYZ",
                    database="postgresql://rocket:pw@db:5432/rocket",
                ),
            ),
            ("library warning", lambda: library.warning("pool %s is %d%% full", "main", 90)),
            ("filtered debug line", lambda: own.debug("not written", x=1)),
        ]
        print("| line | µs per line |")
        print("|---|---|")
        for name, write in kinds:
            print(f"| {name} | {per_line(write, args.lines):.1f} |")


if __name__ == "__main__":
    main()
