"""AMF0, the value encoding of RTMP commands and metadata: what publishers send (numbers, booleans,
strings, objects, ECMA and strict arrays, null) decoded into plain Python values, and the few replies a
server writes encoded back.

Hostile input raises ``AmfError`` and nothing else: lengths are checked against what is there, nesting
is bounded, and AMF0 references and AMF3 values (which no publisher needs) are refused.
"""

from __future__ import annotations

import struct

AmfValue = float | bool | str | None | dict[str, "AmfValue"] | list["AmfValue"]

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED, REFERENCE, ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, \
    LONG_STRING = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C
MAX_DEPTH = 16
MAX_ITEMS = 4096

_DOUBLE = struct.Struct(">d")


class AmfError(ValueError):
    """Bytes that are not the AMF0 this server reads."""


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise AmfError(f"AMF0 value runs past the end ({n} bytes wanted at offset {self.pos})")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def utf8(self, n: int) -> str:
        return self.take(n).decode("utf-8", "replace")

    def value(self, depth: int = 0) -> AmfValue:
        if depth > MAX_DEPTH:
            raise AmfError("AMF0 values nested too deep")
        marker = self.u8()
        if marker == NUMBER:
            return float(_DOUBLE.unpack(self.take(8))[0])
        if marker == BOOLEAN:
            return self.u8() != 0
        if marker == STRING:
            return self.utf8(self.u16())
        if marker == LONG_STRING:
            return self.utf8(self.u32())
        if marker in (NULL, UNDEFINED):
            return None
        if marker == OBJECT:
            return self.properties(depth)
        if marker == ECMA_ARRAY:
            self.take(4)  # the count is a hint; the end marker is what ends it
            return self.properties(depth)
        if marker == STRICT_ARRAY:
            n = self.u32()
            if n > MAX_ITEMS:
                raise AmfError(f"AMF0 strict array of {n} items")
            return [self.value(depth + 1) for _ in range(n)]
        if marker == DATE:
            ms = float(_DOUBLE.unpack(self.take(8))[0])
            self.take(2)  # time zone, unused by the format
            return ms
        if marker == REFERENCE:
            raise AmfError("AMF0 references are not supported")
        raise AmfError(f"unknown AMF0 marker 0x{marker:02x}")

    def properties(self, depth: int) -> dict[str, AmfValue]:
        out: dict[str, AmfValue] = {}
        while True:
            name = self.utf8(self.u16())
            if name == "" and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return out
            if len(out) >= MAX_ITEMS:
                raise AmfError("AMF0 object with too many properties")
            out[name] = self.value(depth + 1)


def decode(data: bytes) -> list[AmfValue]:
    """Every AMF0 value in ``data``, in order."""
    r = _Reader(data)
    out: list[AmfValue] = []
    while r.pos < len(data):
        if len(out) >= MAX_ITEMS:
            raise AmfError("too many AMF0 values")
        out.append(r.value())
    return out


def _encode_into(out: bytearray, v: AmfValue) -> None:
    if v is None:
        out.append(NULL)
    elif isinstance(v, bool):
        out += bytes((BOOLEAN, 1 if v else 0))
    elif isinstance(v, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(v))
    elif isinstance(v, str):
        raw = v.encode()
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += len(raw).to_bytes(2, "big") + raw
        else:
            out.append(LONG_STRING)
            out += len(raw).to_bytes(4, "big") + raw
    elif isinstance(v, dict):
        out.append(OBJECT)
        for k, item in v.items():
            key = k.encode()
            out += len(key).to_bytes(2, "big") + key
            _encode_into(out, item)
        out += b"\x00\x00" + bytes((OBJECT_END,))
    elif isinstance(v, list):
        out.append(STRICT_ARRAY)
        out += len(v).to_bytes(4, "big")
        for item in v:
            _encode_into(out, item)
    else:  # pragma: no cover - the type says this cannot happen
        raise TypeError(f"cannot encode {type(v).__name__} as AMF0")


def encode(*values: AmfValue) -> bytes:
    out = bytearray()
    for v in values:
        _encode_into(out, v)
    return bytes(out)


__all__ = ["AmfValue", "AmfError", "decode", "encode"]
