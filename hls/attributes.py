"""Attribute lists and values (RFC 8216bis §4.2): read as written, written back as read.

An attribute list is ``NAME=VALUE`` pairs separated by commas; a quoted string may hold commas, so the list
is tokenised, never split. Values are kept as their text (a quoted string keeps its quotes): a tag read
and dumped again carries exactly the attributes it came with, including ones this package does not know.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal

from .errors import PlaylistError

# One pair and the separator after it. Names are [A-Z0-9-] in the RFC; lower case and "_" are accepted
# because they are met in the wild and cost nothing to keep. Whitespace around a pair is tolerated.
# An unquoted value is runs of non-blanks joined by blanks, so that no two parts of the pattern can match
# the same blank (the match stays linear in the length of a hostile line).
_PAIR = re.compile(r'[ \t]*([A-Za-z0-9_-]+)=("[^"]*"|[^",\s]*(?:[ \t]+[^",\s]+)*)[ \t]*(,|$)')


def parse_attributes(text: str) -> dict[str, str]:
    """``A=1,B="x,y"`` → ``{"A": "1", "B": '"x,y"'}``. Raises PlaylistError on a malformed list."""
    attrs: dict[str, str] = {}
    pos, end = 0, len(text)
    if not text.strip(" \t"):
        return attrs
    while pos < end:
        m = _PAIR.match(text, pos)
        if m is None:
            raise PlaylistError(f"malformed attribute list at {text[pos:pos + 40]!r}")
        name, value, sep = m.groups()
        if name in attrs:
            raise PlaylistError(f"attribute {name} appears twice (RFC 8216bis §4.2)")
        attrs[name] = value
        pos = m.end()
        if not sep:
            break
    return attrs


def format_attributes(attrs: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in attrs.items())


def quote(value: str) -> str:
    """A quoted-string value (§4.2: no double quote, carriage return or line feed inside)."""
    if '"' in value or "\n" in value or "\r" in value:
        raise PlaylistError(f"cannot quote {value!r}: HLS quoted strings cannot contain '\"' or line breaks")
    return f'"{value}"'


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == '"' and value[-1] == '"' else value


def format_decimal(x: float) -> str:
    """A decimal-floating-point value (§4.2): positional, never an exponent, the shortest text that reads
    back as the same float (so a duration survives any number of parse/dump rounds)."""
    if not math.isfinite(x) or x < 0:
        raise PlaylistError(f"{x!r} is not a non-negative finite number")
    text = repr(float(x))   # the shortest text that reads back exactly: positional unless very small/large
    if "e" in text:
        text = format(Decimal(text), "f")
    return text if "." in text else text + ".0"


_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_INTEGER = re.compile(r"[0-9]{1,20}")


def read_decimal(text: str, what: str) -> float:
    """A non-negative decimal number (``2``, ``2.002``, ``.5``); PlaylistError naming ``what`` otherwise."""
    s = text.strip(" \t")
    if not _DECIMAL.fullmatch(s):
        raise PlaylistError(f"bad {what} {text!r}: expected a non-negative decimal number")
    x = float(s)
    if not math.isfinite(x):
        raise PlaylistError(f"bad {what} {text!r}: too large")
    return x


def read_integer(text: str, what: str) -> int:
    """A decimal-integer (§4.2: 0 to 2**64-1); PlaylistError naming ``what`` otherwise."""
    s = text.strip(" \t")
    if not _INTEGER.fullmatch(s) or int(s) >= 1 << 64:
        raise PlaylistError(f"bad {what} {text!r}: expected an integer from 0 to 2**64-1")
    return int(s)


def number(attrs: Mapping[str, str], name: str) -> float | None:
    """A numeric attribute, or None when absent or not a number (lenient: for reading, not validating)."""
    v = attrs.get(name)
    if v is None:
        return None
    try:
        x = float(unquote(v))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def string(attrs: Mapping[str, str], name: str) -> str | None:
    """An attribute's value without its quotes, or None when absent."""
    v = attrs.get(name)
    return None if v is None else unquote(v)
