"""Source text -> tokens. Knows characters, quotes, escapes and numbers; nothing about grammar.

Rejects at once what has no place in the language (`=`, `=>`, `;`, `{`, backticks, ...) with a
message that says what to write instead, so the author sees the real mistake rather than a
parser error further on.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from rocketd.expressions.errors import ExpressionError
from rocketd.expressions.limits import MAX_NUMBER_LITERAL_LENGTH

TokenKind = Literal["number", "string", "name", "op", "end"]

# Longest first: "===" must win over "==", "?." over "?".
OPERATORS: Final = (
    "===",
    "!==",
    "==",
    "!=",
    "<=",
    ">=",
    "&&",
    "||",
    "??",
    "?.",
    "**",
    "<",
    ">",
    "!",
    "+",
    "-",
    "*",
    "/",
    "%",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "?",
    ":",
)

# Characters (or pairs) that are not part of the language, and what to say about them.
REFUSED: Final = (
    ("=>", "arrow functions are not supported"),
    ("=", "'=' is assignment, which is not supported; compare with '=='"),
    ("&", "'&' is not supported; use '&&' (logical and)"),
    ("|", "'|' is not supported; use '||' (logical or)"),
    ("^", "'^' is not supported; use '**' for powers"),
    ("~", "'~' is not supported"),
    (";", "';' is not supported: an expression is a single expression"),
    ("{", "map literals ('{...}') are not supported"),
    ("}", "map literals ('{...}') are not supported"),
    ("`", "template strings are not supported; join strings with '+'"),
    ("#", "'#' is not supported"),
    ("@", "'@' is not supported"),
    ("\\", "a backslash is only allowed inside a string"),
)

_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
}


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the operator or name as written; the raw literal for numbers and strings
    position: int
    value: object = None  # int | Decimal for numbers, str for strings


def tokenize(source: str) -> list[Token]:
    """Every token of `source`, ending with one `end` token. Raises `ExpressionError`."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
        elif _is_digit(ch):
            token = _number(source, i)
            tokens.append(token)
            i += len(token.text)
        elif ch in "'\"":
            token = _string(source, i)
            tokens.append(token)
            i += len(token.text)
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            start = i
            while i < n and source[i].isascii() and (source[i].isalnum() or source[i] == "_"):
                i += 1
            tokens.append(Token("name", source[start:i], start))
        else:
            op = _operator(source, i)
            tokens.append(Token("op", op, i))
            i += len(op)
    tokens.append(Token("end", "", n))
    return tokens


def _operator(source: str, i: int) -> str:
    for op in OPERATORS:
        if source.startswith(op, i):
            # "a?.5:1" is a conditional with the number .5, as in JavaScript.
            if op == "?." and _is_digit(source[i + 2 : i + 3]):
                return "?"
            return op
    for text, message in REFUSED:
        if source.startswith(text, i):
            raise ExpressionError(message, i, source)
    raise ExpressionError(f"unexpected character {source[i]!r}", i, source)


def _number(source: str, start: int) -> Token:
    i, n = start, len(source)
    while i < n and _is_digit(source[i]):
        i += 1
    is_decimal = False
    if i + 1 < n and source[i] == "." and _is_digit(source[i + 1]):
        is_decimal = True
        i += 1
        while i < n and _is_digit(source[i]):
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and _is_digit(source[j]):
            is_decimal = True
            i = j
            while i < n and _is_digit(source[i]):
                i += 1
    if i < n and (source[i].isalnum() or source[i] == "_"):
        raise ExpressionError(f"invalid number {source[start : i + 1]!r}", start, source)
    text = source[start:i]
    if len(text) > MAX_NUMBER_LITERAL_LENGTH:
        raise ExpressionError(
            f"number literal is too long (more than {MAX_NUMBER_LITERAL_LENGTH} characters)",
            start,
            source,
        )
    if not is_decimal:
        return Token("number", text, start, int(text))
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the scan above only lets valid text through
        raise ExpressionError(f"invalid number {text!r}", start, source) from None
    if abs(value.adjusted()) > 400:
        raise ExpressionError(f"number {text} is out of range", start, source)
    return Token("number", text, start, value)


def _string(source: str, start: int) -> Token:
    quote = source[start]
    out: list[str] = []
    i, n = start + 1, len(source)
    while i < n:
        ch = source[i]
        if ch == quote:
            return Token("string", source[start : i + 1], start, "".join(out))
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            break
        code = source[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code in "xu":
            char, length = _code_point(source, i)
            out.append(char)
            i += length
        else:
            # Unknown escapes keep their backslash, so '\d+' and '\\d+' both reach a regex as \d+.
            out.append("\\" + code)
            i += 2
    raise ExpressionError(f"unterminated string (missing closing {quote})", start, source)


def _code_point(source: str, i: int) -> tuple[str, int]:
    """The character of `\\xHH`, `\\uHHHH` or `\\u{H...}` at `i`, and the escape's length."""
    kind = source[i + 1]
    if kind == "u" and source.startswith("{", i + 2):
        end = source.find("}", i + 3)
        digits = source[i + 3 : end] if end != -1 else ""
        length = end - i + 1
    else:
        width = 2 if kind == "x" else 4
        digits = source[i + 2 : i + 2 + width]
        length = 2 + width
        if len(digits) != width:
            digits = ""
    if not digits or len(digits) > 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ExpressionError(f"invalid \\{kind} escape in string", i, source)
    value = int(digits, 16)
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        raise ExpressionError(f"invalid \\{kind} escape in string", i, source)
    return chr(value), length


def _is_digit(ch: str) -> bool:
    return len(ch) == 1 and "0" <= ch <= "9"
