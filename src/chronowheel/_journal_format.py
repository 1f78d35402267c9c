"""The journal's bytes: file headers, record framing, and a sans-IO decoder.

A journal file is a 20-byte header (magic, format version, generation, CRC32
of those 16 bytes) followed by records, each ``u32 length | u32 crc32 |
payload``, where the CRC covers the length field and the payload, and the
payload is one orjson-encoded dict. Nothing here touches a file: the decoder
takes bytes in any pieces and hands back records, so it is tested byte by
byte (after h11 and LevelDB's ``log_format.md``).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Final, Literal, NamedTuple

import orjson

__all__ = [
    "HEADER_SIZE",
    "LOG",
    "MAX_PAYLOAD",
    "SNAPSHOT",
    "Decoder",
    "Ending",
    "Header",
    "Record",
    "encode_header",
    "frame",
]

LOG: Final = b"CWJL"
SNAPSHOT: Final = b"CWJS"
VERSION: Final = 1
MAX_PAYLOAD: Final = 1 << 26  # 64 MiB: a longer length field is damage, not data

_HEADER = struct.Struct("<4sIQI")  # magic, version, generation, crc32 of the first 16 bytes
_LENGTH = struct.Struct("<I")
_FRAME = struct.Struct("<II")  # length, crc32(length field + payload)
HEADER_SIZE: Final = _HEADER.size
_FRAME_SIZE: Final = _FRAME.size


class Header(NamedTuple):
    kind: bytes  # LOG or SNAPSHOT
    generation: int


class Record(NamedTuple):
    offset: int  # where its frame starts in the file
    payload: dict[str, Any]


class Ending(NamedTuple):
    """How the bytes ended: ``clean``, ``torn`` (an unfinished write), or ``corrupt``.

    ``offset`` is where the good bytes stop (a torn or corrupt journal is cut
    there); ``reason`` says what was wrong.
    """

    status: Literal["clean", "torn", "corrupt"]
    offset: int
    reason: str


def encode_header(kind: bytes, generation: int) -> bytes:
    head = struct.pack("<4sIQ", kind, VERSION, generation)
    return head + _LENGTH.pack(zlib.crc32(head))


def _crc(length_field: bytes | bytearray, payload: bytes | bytearray) -> int:
    return zlib.crc32(payload, zlib.crc32(length_field))


def frame(payload: bytes) -> bytes:
    """One record's bytes around an encoded payload."""
    length_field = _LENGTH.pack(len(payload))
    return length_field + _LENGTH.pack(_crc(length_field, payload)) + payload


class Decoder:
    """Splits a journal file's bytes into its header and records.

    ``feed`` returns the records completed so far and stops for good at the
    first bad one; ``finish`` then tells a torn tail (a write cut short by a
    crash: nothing after it but zeros or one unfinished record) from
    corruption (damage followed by more data), which must never be replayed.
    """

    def __init__(self) -> None:
        self.header: Header | None = None
        self._buffer = bytearray()
        self._base = 0  # file offset of _buffer[0]
        self._bad: tuple[int, str] | None = None  # (offset, reason) of the first bad frame

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        if self._bad is not None:
            return []
        if self.header is None and not self._read_header():
            return []
        records: list[Record] = []
        buffer = self._buffer
        position = 0
        while self._bad is None and len(buffer) - position >= _FRAME_SIZE:
            length, crc = _FRAME.unpack_from(buffer, position)
            if not 0 < length <= MAX_PAYLOAD:
                self._bad = (self._base + position, f"impossible record length {length}")
                break
            end = position + _FRAME_SIZE + length
            if end > len(buffer):
                break
            payload = buffer[position + _FRAME_SIZE : end]
            if _crc(buffer[position : position + 4], payload) != crc:
                self._bad = (self._base + position, "CRC mismatch")
                break
            try:
                decoded = orjson.loads(payload)
            except orjson.JSONDecodeError:
                decoded = None
            if not isinstance(decoded, dict) or not isinstance(decoded.get("t"), str):
                self._bad = (self._base + position, "payload is not a record")
                break
            records.append(Record(self._base + position, decoded))
            position = end
        del buffer[:position]
        self._base += position
        return records

    def _read_header(self) -> bool:
        if len(self._buffer) < HEADER_SIZE:
            return False
        magic, version, generation, crc = _HEADER.unpack_from(self._buffer)
        if crc != zlib.crc32(self._buffer[:16]) or magic not in (LOG, SNAPSHOT):
            self._bad = (0, "bad file header")
            return False
        if version != VERSION:
            self._bad = (0, f"unsupported journal format version {version}")
            return False
        self.header = Header(magic, generation)
        del self._buffer[:HEADER_SIZE]
        self._base = HEADER_SIZE
        return True

    def finish(self) -> Ending:
        """The verdict on the bytes after the last good record, once all are fed."""
        end = self._base + len(self._buffer)
        if self._bad is not None:
            offset, reason = self._bad
        elif self.header is None:
            return Ending("torn", 0, f"file header cut short at {end} bytes") if end else Ending("clean", 0, "")
        elif self._buffer:
            offset, reason = self._base, f"last record cut short ({len(self._buffer)} bytes)"
        else:
            return Ending("clean", end, "")
        rest = self._buffer[offset - self._base :]
        if not rest.strip(b"\0"):
            return Ending("torn", offset, f"{reason}; only zeros follow")
        # Zeros after an unfinished record: the file grew before its data landed (a tear, too).
        if offset and self._reaches_end(rest.rstrip(b"\0")) and not self._complete_frame_after(rest):
            return Ending("torn", offset, reason)
        return Ending("corrupt", offset, reason)

    @staticmethod
    def _reaches_end(rest: bytearray) -> bool:
        """True if the bad frame's claimed length takes it to the end of the file (or past)."""
        if len(rest) < _FRAME_SIZE:
            return True
        length: int = _LENGTH.unpack_from(rest)[0]
        return 0 < length <= MAX_PAYLOAD and _FRAME_SIZE + length >= len(rest)

    @staticmethod
    def _complete_frame_after(rest: bytearray) -> bool:
        """True if a well-formed frame starts anywhere after the bad one: then it is damage, not a tear."""
        for start in range(1, len(rest) - _FRAME_SIZE + 1):
            length, crc = _FRAME.unpack_from(rest, start)
            end = start + _FRAME_SIZE + length
            if (
                0 < length <= MAX_PAYLOAD
                and end <= len(rest)
                and _crc(rest[start : start + 4], rest[start + _FRAME_SIZE : end]) == crc
            ):
                return True
        return False
