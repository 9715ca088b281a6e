"""Regular expressions written by users: the one place that checks, compiles and runs them.

Field `pattern` rules and `matches` (a literal, or a pattern taken from record data) all come
here. Compiling cannot be interrupted, and the `regex` engine writes counted repetitions out
when it compiles them, so `x{1000000000}` would hold the event loop, and grow memory, until the
process dies. `check_pattern` therefore reads the source first and refuses, before anything is
compiled, what could make compiling expensive (the limits below, documented in
docs/security.md, "Pattern limits"). Compiled patterns are cached, bounded by count and by size.

Matching has a time limit per match (`regex` checks it inside its match loop) and a shared
budget per write or expression evaluation (`time_budget`), so many matches or compiles that are
each cheap cannot add up to a stall either.

Nothing here knows about rules, expressions or HTTP: callers turn `PatternError` and
`PatternTimeout` into their own errors.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Final

import regex

# --- limits (docs/security.md, "Pattern limits") -----------------------------------------------
MAX_PATTERN_LENGTH: Final = 1000  # characters of a pattern's source
MAX_REPEAT_COUNT: Final = 1000  # each bound of a counted repetition {m}, {m,n}, {m,}, {,n}
# The source length with every counted repetition written out (`a{3}` counts as `aaa`, so
# nested counts multiply): what compiling costs, in time and memory, grows with it.
MAX_EXPANDED_LENGTH: Final = 10_000
MAX_GROUP_DEPTH: Final = 32  # groups inside groups (the engine's parser recurses per level)
# Inline flags that change nothing the checks rely on. Refused: x (verbose: spaces and #
# comments), V0/V1 (version 1 has nested classes), f (full case folding, costly for classes),
# and b, e, p, r (fuzzy-matching, POSIX and reverse modes).
ALLOWED_FLAGS: Final = "aimsuw"
MATCH_TIMEOUT_SECONDS: Final = 0.05  # wall-clock time of one match
# All compiling and matching of one write (every record and rule of it) or of one expression
# evaluation outside a write.
TIME_BUDGET_SECONDS: Final = 0.5
CACHE_ENTRIES: Final = 256
CACHE_EXPANDED_LENGTH: Final = 200_000  # the sum of the cached patterns' expanded lengths


class PatternError(Exception):
    """A pattern that is refused or does not compile. `reason` reads after "invalid pattern: ";
    `position` is the 0-based index in the source of the part at fault, when known."""

    def __init__(self, reason: str, position: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


class PatternTimeout(Exception):
    """A match ran out of time, or the write's (or evaluation's) budget is used up."""

    def __init__(self, budget_spent: bool) -> None:
        self.budget_spent = budget_spent
        super().__init__(
            f"regular expressions used up their time budget ({TIME_BUDGET_SECONDS} s)"
            if budget_spent
            else f"a match took longer than {MATCH_TIMEOUT_SECONDS} s"
        )


# --- checking the source -----------------------------------------------------------------------

# {m}, {m,}, {,n}, {m,n} and {,}: the engine's counted repetitions (no spaces allowed).
_COUNTED: Final = re.compile(r"\{([0-9]*)(?:(,)([0-9]*))?\}")
# (?flags) and (?flags:...) with flags to turn on and off: "(?i)", "(?-i:", "(?:".
_FLAG_GROUP: Final = re.compile(r"\(\?([A-Za-z0-9]*(?:-[A-Za-z0-9]*)?)[:)]")
# The braces of \p{...}, \P{...} and \N{...}: only characters that are not syntax, so whatever
# the engine makes of them, no repetition, group or class hides inside.
_ESCAPE_BRACES: Final = re.compile(r"\{[A-Za-z0-9 &_.:=/^-]*\}")
_HEX_ESCAPES: Final = {"x": 2, "u": 4, "U": 8}
_HEX: Final = re.compile(r"[0-9A-Fa-f]+")
# (?R), (?1), (?-1): calls of a group, not flags.
_GROUP_CALL: Final = re.compile(r"R|[0-9]+|-[0-9]+")
_GROUP_SYNTAX_LENGTH: Final = 2  # "(" and ")"; an extension's "?:" etc. is counted as written


@dataclass
class _Group:
    total: int = 0  # expanded length of the items before the last one
    last: int = 0  # expanded length of the last item (what a quantifier repeats)
    syntax: int = _GROUP_SYNTAX_LENGTH

    def add(self, length: int) -> None:
        self.total += self.last
        self.last = length

    def length(self) -> int:
        return self.total + self.last + self.syntax


@dataclass
class _Scan:
    source: str
    groups: list[_Group] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.groups.append(_Group(syntax=0))

    @property
    def current(self) -> _Group:
        return self.groups[-1]


def check_pattern(source: str) -> int:
    """The pattern's expanded length; raises `PatternError` when the source breaks a limit.

    Reads the source the way the `regex` engine (version 0 syntax) does, as far as the limits
    need: escapes, character classes, groups, comments, inline flags and quantifiers. What is
    ambiguous is refused rather than guessed: a `{` that is not a counted repetition (the engine
    may read it as a fuzzy-matching constraint), a `[` inside a class, flags outside
    `ALLOWED_FLAGS`. Syntax errors are left to the engine."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"longer than {MAX_PATTERN_LENGTH} characters")
    scan = _Scan(source)
    pos, end = 0, len(source)
    while pos < end:
        char = source[pos]
        if char == "\\":
            length = _escape_length(source, pos)
            scan.current.add(length)
            pos += length
        elif char == "[":
            length = _class_length(source, pos)
            scan.current.add(length)
            pos += length
        elif char == "(":
            pos = _open_group(scan, pos)
        elif char == ")":
            if len(scan.groups) > 1:
                group = scan.groups.pop()
                scan.current.add(group.length())
            else:
                scan.current.add(1)  # unbalanced: the engine reports it
            pos += 1
        elif char == "{":
            pos = _counted_repetition(scan, pos)
        elif char == "|":
            scan.current.add(1)
            scan.current.add(0)  # nothing for a quantifier to repeat after "|"
            pos += 1
        else:
            # Literals, ".", "^", "$" and the quantifiers *, + and ?, which repeat in a loop
            # (nothing is written out) and so count as written.
            scan.current.add(1)
            pos += 1
    while len(scan.groups) > 1:  # unclosed groups: the engine reports them
        group = scan.groups.pop()
        scan.current.add(group.length())
    expanded = scan.current.length()
    if expanded > MAX_EXPANDED_LENGTH:
        raise PatternError(
            f"too large once its counted repetitions are written out ({expanded} characters,"
            f" more than {MAX_EXPANDED_LENGTH}; nested counts multiply): use smaller counts"
        )
    return expanded


def _escape_length(source: str, pos: int) -> int:
    """The length of the escape at `pos`, as far as the engine reads it as one element."""
    letter = source[pos + 1 : pos + 2]
    if letter in ("p", "P", "N"):
        braces = _ESCAPE_BRACES.match(source, pos + 2)
        if braces is not None:
            return 2 + len(braces.group())
        if letter != "N" and source[pos + 2 : pos + 3].isalpha():
            return 3  # \pL
    digits = _HEX_ESCAPES.get(letter, 0)
    text = source[pos + 2 : pos + 2 + digits]
    if digits and len(text) == digits and _HEX.fullmatch(text):
        return 2 + digits  # \x41, \u00e9, \U0001F600
    # Any other escape: a backslash and one character. What may follow (digits of a group
    # reference, a <name>) is read as literals, which is never more than the engine reads.
    return 2 if letter else 1


def _class_length(source: str, pos: int) -> int:
    """The length of the character class starting at `pos` (version 0 rules: the first member
    may be "]", escapes are skipped, the first other "]" ends it)."""
    index = pos + 1
    if source.startswith("^", index):
        index += 1
    first = True
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
        elif char == "]" and not first:
            return index + 1 - pos
        elif char == "[":
            raise PatternError(
                r"a [ inside a character class must be escaped as \[ (POSIX classes such as"
                r" [:alpha:] are not supported; use \p{Alpha})",
                index,
            )
        else:
            index += 1
        first = False
    return len(source) - pos  # unterminated: the engine reports it


def _open_group(scan: _Scan, pos: int) -> int:
    source = scan.source
    if source.startswith("(?#", pos):
        # A comment runs to the first ")" not escaped by a backslash.
        index = pos + 3
        while index < len(source) and source[index] != ")":
            index += 2 if source[index] == "\\" else 1
        return index + 1
    flags = _FLAG_GROUP.match(source, pos)
    if flags is not None and not _GROUP_CALL.fullmatch(flags.group(1)):
        refused = [flag for flag in flags.group(1) if flag not in ALLOWED_FLAGS + "-"]
        if refused:
            allowed = ", ".join(ALLOWED_FLAGS)
            raise PatternError(
                f"inline flag {refused[0]!r} is not supported (allowed: {allowed})", pos
            )
        if flags.group().endswith(")"):
            # "(?i)": flags for the rest of the pattern, not an element a quantifier repeats.
            return flags.end()
    if len(scan.groups) > MAX_GROUP_DEPTH:
        raise PatternError(f"groups are nested more than {MAX_GROUP_DEPTH} deep", pos)
    scan.groups.append(_Group())
    return pos + 1


def _counted_repetition(scan: _Scan, pos: int) -> int:
    counted = _COUNTED.match(scan.source, pos)
    if counted is None or not (counted.group(1) or counted.group(2)):
        raise PatternError(
            r"a { that does not start a counted repetition such as {2,5} must be escaped as \{"
            " (fuzzy matching is not supported)",
            pos,
        )
    bounds = [int(text) for text in (counted.group(1), counted.group(3)) if text]
    for bound in bounds:
        if bound > MAX_REPEAT_COUNT:
            raise PatternError(
                f"repetition {counted.group()} repeats more than {MAX_REPEAT_COUNT} times", pos
            )
    scan.current.last *= max([1, *bounds])
    return counted.end()


# --- compiling ---------------------------------------------------------------------------------


class _CompiledCache:
    """Least recently used compiled patterns, bounded by count and by expanded length."""

    def __init__(self, entries: int, expanded: int) -> None:
        self.entries = entries
        self.expanded = expanded
        self._items: OrderedDict[str, tuple[regex.Pattern[str], int]] = OrderedDict()
        self._size = 0

    def get(self, source: str) -> regex.Pattern[str] | None:
        item = self._items.get(source)
        if item is None:
            return None
        self._items.move_to_end(source)
        return item[0]

    def put(self, source: str, pattern: regex.Pattern[str], size: int) -> None:
        if source in self._items:
            return
        self._items[source] = (pattern, size)
        self._size += size
        while len(self._items) > self.entries or self._size > self.expanded:
            _, (_, dropped) = self._items.popitem(last=False)
            self._size -= dropped

    def clear(self) -> None:
        self._items.clear()
        self._size = 0

    def info(self) -> tuple[int, int]:
        return len(self._items), self._size


_CACHE: Final = _CompiledCache(CACHE_ENTRIES, CACHE_EXPANDED_LENGTH)


def compile_pattern(source: str) -> regex.Pattern[str]:
    """`source` compiled by the `regex` engine (Python syntax), after `check_pattern`.

    Raises `PatternError` (refused or invalid) or `PatternTimeout` (the running budget is used
    up)."""
    cached = _CACHE.get(source)
    if cached is not None:
        return cached
    budget = _BUDGET.get()
    if budget is not None and budget.remaining <= 0:
        raise PatternTimeout(budget_spent=True)
    started = time.perf_counter()
    try:
        expanded = check_pattern(source)
        # Not the engine's own cache: it keeps 500 patterns whatever their size.
        pattern = regex.compile(source, cache_pattern=False)
    except regex.error as exc:
        raise PatternError(exc.msg, exc.pos) from None
    except RecursionError:  # pragma: no cover - MAX_GROUP_DEPTH keeps the parser shallow
        raise PatternError("nested too deeply") from None
    finally:
        if budget is not None:
            budget.spend(time.perf_counter() - started)
    _CACHE.put(source, pattern, expanded)
    return pattern


def clear_cache() -> None:
    """Forget every compiled pattern (tests and benchmarks)."""
    _CACHE.clear()


def cache_info() -> tuple[int, int]:
    """(patterns cached, the sum of their expanded lengths)."""
    return _CACHE.info()


# --- matching ----------------------------------------------------------------------------------


class _Budget:
    __slots__ = ("remaining",)

    def __init__(self, seconds: float) -> None:
        self.remaining = seconds

    def spend(self, seconds: float) -> None:
        self.remaining -= seconds


_BUDGET: ContextVar[_Budget | None] = ContextVar("rocketd_pattern_budget", default=None)


def start_budget(seconds: float = TIME_BUDGET_SECONDS) -> Token[_Budget | None] | None:
    """Share `seconds` of compiling and matching among everything until `end_budget` (one write,
    or one expression evaluation). None, and nothing started, inside a running budget: the
    outer one keeps counting. The pair is cheaper than `time_budget` on hot paths."""
    if _BUDGET.get() is not None:
        return None
    return _BUDGET.set(_Budget(seconds))


def end_budget(token: Token[_Budget | None] | None) -> None:
    if token is not None:
        _BUDGET.reset(token)


class time_budget:
    """`start_budget` ... `end_budget` around a block (a class, not a generator: every write
    opens one)."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float = TIME_BUDGET_SECONDS) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        self._token = start_budget(self._seconds)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        end_budget(self._token)


def search(pattern: regex.Pattern[str], subject: str) -> bool:
    """Whether `pattern` is found anywhere in `subject`; raises `PatternTimeout` when the match
    runs out of time (its own limit or what is left of the running budget)."""
    budget = _BUDGET.get()
    if budget is None:
        try:
            return pattern.search(subject, timeout=MATCH_TIMEOUT_SECONDS) is not None
        except TimeoutError:
            raise PatternTimeout(budget_spent=False) from None
    timeout = min(MATCH_TIMEOUT_SECONDS, budget.remaining)
    if timeout <= 0:
        raise PatternTimeout(budget_spent=True)
    started = time.perf_counter()
    try:
        return pattern.search(subject, timeout=timeout) is not None
    except TimeoutError:
        raise PatternTimeout(budget_spent=timeout < MATCH_TIMEOUT_SECONDS) from None
    finally:
        budget.spend(time.perf_counter() - started)
