"""The journal's bytes: file headers, record framing, and a sans-IO decoder.

Format version 2 (written since the journal got an identity and sequence numbers):

* a 44-byte file header: magic (``CWJL`` log, ``CWJS`` snapshot), format
  version, the journal's identity (16 random bytes made when the journal was
  created), the generation, a sequence number (a log's: the number of its
  first record; a snapshot's: the first record it does not cover), and the
  CRC32 of those 40 bytes;
* then records, each ``u32 crc | u32 length | u64 sequence number | payload``,
  where the CRC covers everything after it (length, number, payload) and is
  seeded with the file header's CRC, so a record is bound to its file: one
  copied from another journal, or another file of this one, fails its CRC. A
  log's records are numbered on from the header's number without a gap; a
  snapshot's from 0. The payload is one orjson-encoded dict.

Version 3 is version 2 for a snapshot that may hold ``jobs`` chunks (a few
thousand usual jobs in one record, as columns: see ``records.encode_jobs``):
the same header and framing, only the version field differs, so a
chronowheel that knows only version 2 refuses the file by its version
instead of taking a chunk for damage. Snapshots are written in version 3,
logs in version 2; a version-2 snapshot is still read.

Version 1 (read, never written): a 20-byte header (magic, version,
generation, CRC32 of those 16 bytes), records ``u32 length | u32 crc32 |
payload`` with the CRC over the length field and the payload, no identity,
no numbers.

Nothing here touches a file: the decoder takes bytes in any pieces and hands
back records, so it is tested byte by byte (after h11 and LevelDB's
``log_format.md``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, NamedTuple

import orjson

from . import native

__all__ = [
    "IDENTITY_SIZE",
    "LOG",
    "MAX_PAYLOAD",
    "SNAPSHOT",
    "SNAPSHOT_VERSION",
    "VERSION",
    "Check",
    "Decoder",
    "Encoder",
    "Ending",
    "Header",
    "Record",
    "Walk",
    "encode_header",
    "frame",
    "walk_frames",
    "frame_records",
]

LOG: Final = b"CWJL"
SNAPSHOT: Final = b"CWJS"
VERSION: Final = 2  # a log's
SNAPSHOT_VERSION: Final = 3  # a snapshot's: version 2 with jobs chunks
MAX_PAYLOAD: Final = 1 << 26  # 64 MiB: a longer length field is damage, not data
IDENTITY_SIZE: Final = 16

_START = struct.Struct("<4sI")  # magic, version: what every version's header starts with
_HEADER_1 = struct.Struct("<4sIQI")  # magic, version, generation, crc32 of the first 16 bytes
_HEADER_2 = struct.Struct("<4sI16sQQI")  # magic, version, identity, generation, seq, crc32 of the first 40 bytes
_HEADER_SIZES: Final = {1: _HEADER_1.size, 2: _HEADER_2.size, 3: _HEADER_2.size}
_U32 = struct.Struct("<I")
_FRAME_1 = struct.Struct("<II")  # length, crc32(length field + payload)
_FRAME_2 = struct.Struct("<IIQ")  # crc32(the rest, seeded with the header's crc), length, seq
_BODY_2 = struct.Struct("<IQ")  # length, seq: what a version-2 frame's CRC covers before the payload


class Header(NamedTuple):
    kind: bytes  # LOG or SNAPSHOT
    generation: int
    identity: bytes = b""  # the journal's; empty in version 1
    seq: int = 0  # a log's first record number; a snapshot's first record not in it (version 1: 0)
    version: int = VERSION


class Record(NamedTuple):
    offset: int  # where its frame starts in the file
    payload: dict[str, Any]
    seq: int | None = None  # its sequence number (None in version 1)


class Ending(NamedTuple):
    """How the bytes ended: ``clean``, ``torn`` (an unfinished write), or ``corrupt``.

    ``offset`` is where the good bytes stop (a torn or corrupt journal is cut
    there); ``reason`` says what was wrong.
    """

    status: Literal["clean", "torn", "corrupt"]
    offset: int
    reason: str


Check = Callable[[list[dict[str, Any]]], tuple[int, str] | None]
"""The records' schema, over a run of decoded payloads: None if all are sound, else (index, fault) of the first not.

A run rather than one payload: the usual record is checked in a loop with
no Python call of its own (a million of them at a start).
"""


def encode_header(kind: bytes, identity: bytes, generation: int, seq: int) -> bytes:
    """A version-2 file header (version 3 for a snapshot); its last 4 bytes (its CRC) seed its records' CRCs."""
    head = _HEADER_2.pack(kind, SNAPSHOT_VERSION if kind == SNAPSHOT else VERSION, identity, generation, seq, 0)[:-4]
    return head + _U32.pack(zlib.crc32(head))


def _seed(header: bytes | bytearray) -> int:
    seed: int = _U32.unpack_from(header, len(header) - 4)[0]
    return seed


def frame(payload: bytes, seq: int, seed: int) -> bytes:
    """One version-2 record's bytes around an encoded payload."""
    body = _BODY_2.pack(len(payload), seq)
    return _U32.pack(zlib.crc32(payload, zlib.crc32(body, seed))) + body + payload


def frame_records(payloads: list[bytes], seed: int, seq: int) -> bytes:
    """Version-2 records around encoded payloads, numbered from ``seq``, CRCs seeded with ``seed``: one bytes.

    The pure twin of the native ``chronowheel._cframe.frame_records`` (the
    writer thread's, when built: it frames without holding the GIL).
    """
    crc32, pack_body, pack_crc = zlib.crc32, _BODY_2.pack, _U32.pack
    parts: list[bytes] = []
    for payload in payloads:
        body = pack_body(len(payload), seq)
        parts += (pack_crc(crc32(payload, crc32(body, seed))), body, payload)
        seq += 1
    return b"".join(parts)


_frame_records: Final = frame_records if native.frame_records is None else native.frame_records


class Encoder:
    """Frames one file's records: the writer's half of :class:`Decoder`.

    ``seq`` goes in the header; the records are numbered from ``next_seq``
    (default: ``seq`` for a log, 0 for a snapshot; a log appended to again
    goes on from its last record).
    """

    def __init__(self, kind: bytes, identity: bytes, generation: int, seq: int, next_seq: int | None = None) -> None:
        self.header = encode_header(kind, identity, generation, seq)
        self.identity = identity
        self.generation = generation
        self.first = seq
        self.seq = (0 if kind == SNAPSHOT else seq) if next_seq is None else next_seq  # the next record's number
        self._seed = _seed(self.header)

    def frames(self, payloads: Iterable[bytes]) -> bytes:
        """The next records' bytes, numbered on from the last: one bytes for a whole hand-over."""
        items = payloads if isinstance(payloads, list) else list(payloads)
        data = _frame_records(items, self._seed, self.seq)
        self.seq += len(items)
        return data


class Decoder:
    """Splits a journal file's bytes into its header and records.

    ``feed`` returns the records completed so far and stops for good at the
    first bad one; ``finish`` then tells a torn tail (a write cut short by a
    crash: nothing after it but zeros or one unfinished record) from
    corruption (damage followed by more data), which must never be replayed.
    A record whose frame is sound (its CRC holds) but which is out of
    sequence, or fails ``check``, was written whole: it is corrupt wherever it
    is, never torn.
    """

    def __init__(self, check: Check | None = None) -> None:
        self.header: Header | None = None
        self.next_seq = 0  # the sequence number the next record must carry (version 2)
        self._check = check
        self._buffer = bytearray()
        self._base = 0  # file offset of _buffer[0]
        self._seed = 0
        self._bad: tuple[int, str, bool] | None = None  # (offset, reason, whole frame) of the first bad one

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        if self._bad is not None:
            return []
        if self.header is None and not self._read_header():
            return []
        return self._feed_1() if self.header.version == 1 else self._feed_2()  # type: ignore[union-attr]

    def _feed_2(self) -> list[Record]:
        """Frames first (length, CRC, number, JSON), then the schema over their run: the first fault stops both."""
        base = self._base
        records, payloads, position, seq, bad = _walk(self._buffer, self._seed, self.next_seq, base, Record)
        if bad is not None:
            self._bad = bad
        fault = None if self._check is None or not payloads else self._check(payloads)
        if fault is not None:  # a sound frame with a bad record: it is where the good bytes stop
            index, reason = fault
            bad_record = records[index]
            del records[index:]
            self._bad = (bad_record.offset, reason, True)
            seq, position = bad_record.seq, bad_record.offset - base  # type: ignore[assignment]  # version 2: set
        self.next_seq = seq
        del self._buffer[:position]
        self._base += position
        return records

    def _feed_1(self) -> list[Record]:
        records: list[Record] = []
        buffer = self._buffer
        position = 0
        while len(buffer) - position >= 8:
            length, crc = _FRAME_1.unpack_from(buffer, position)
            if not 0 < length <= MAX_PAYLOAD:
                self._bad = (self._base + position, f"impossible record length {length}", False)
                break
            end = position + 8 + length
            if end > len(buffer):
                break
            payload = buffer[position + 8 : end]
            if zlib.crc32(payload, zlib.crc32(buffer[position : position + 4])) != crc:
                self._bad = (self._base + position, "CRC mismatch", False)
                break
            decoded = _problem(payload, orjson.loads, self._check)
            if isinstance(decoded, str):
                self._bad = (self._base + position, decoded, True)
                break
            records.append(Record(self._base + position, decoded))
            position = end
        del buffer[:position]
        self._base += position
        return records

    def _read_header(self) -> bool:
        buffer = self._buffer
        if len(buffer) < _START.size:
            return False
        magic, version = _START.unpack_from(buffer)
        if magic not in (LOG, SNAPSHOT):
            self._bad = (0, "bad file header", False)
            return False
        size = _HEADER_SIZES.get(version)
        if size is None or (version == SNAPSHOT_VERSION and magic != SNAPSHOT):  # version 3 is a snapshot's only
            self._bad = (0, f"unsupported journal format version {version}", False)
            return False
        if len(buffer) < size:
            return False
        if zlib.crc32(buffer[: size - 4]) != _U32.unpack_from(buffer, size - 4)[0]:
            self._bad = (0, "bad file header", False)
            return False
        if version == 1:
            generation = _HEADER_1.unpack_from(buffer)[2]
            self.header = Header(magic, generation, version=1)
        else:
            identity, generation, seq = _HEADER_2.unpack_from(buffer)[2:5]
            self.header = Header(magic, generation, identity, seq, version)
            self.next_seq = 0 if magic == SNAPSHOT else seq
            self._seed = _seed(buffer[:size])
        del buffer[:size]
        self._base = size
        return True

    def finish(self) -> Ending:
        """The verdict on the bytes after the last good record, once all are fed."""
        end = self._base + len(self._buffer)
        if self._bad is not None:
            offset, reason, whole = self._bad
            if whole:
                return Ending("corrupt", offset, reason)
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

    def _frame_at(self, data: bytearray, start: int) -> tuple[int, bool]:
        """The length field of the frame at ``start``, and whether the whole frame is there and sound."""
        if self.header is not None and self.header.version == 1:
            length, crc = _FRAME_1.unpack_from(data, start)
            end = start + 8 + length
            sound = end <= len(data) and zlib.crc32(data[start + 8 : end], zlib.crc32(data[start : start + 4])) == crc
        else:
            crc, length, _ = _FRAME_2.unpack_from(data, start)
            end = start + 16 + length
            sound = end <= len(data) and zlib.crc32(data[start + 4 : end], self._seed) == crc
        return length, 0 < length <= MAX_PAYLOAD and sound

    def _frame_size(self) -> int:
        return 8 if self.header is not None and self.header.version == 1 else 16

    def _reaches_end(self, rest: bytearray) -> bool:
        """True if the bad frame's claimed length takes it to the end of the file (or past)."""
        size = self._frame_size()
        if len(rest) < size:
            return True
        length = self._frame_at(rest, 0)[0]
        return 0 < length <= MAX_PAYLOAD and size + length >= len(rest)

    def _complete_frame_after(self, rest: bytearray) -> bool:
        """True if a well-formed frame starts anywhere after the bad one: then it is damage, not a tear."""
        return any(self._frame_at(rest, start)[1] for start in range(1, len(rest) - self._frame_size() + 1))


Fault = tuple[int, str, bool]
"""A bad frame: its file offset, what is wrong, and whether the frame is whole (then it is never a tear)."""
Walk = Callable[
    [bytearray, int, int, int, type[Record]],
    tuple[list[Record], list[dict[str, Any]], int, int, Fault | None],
]
"""Walks a buffer's version-2 frames: (records, their payloads, where the good bytes stop, the next number, fault)."""


def walk_frames(
    buffer: bytearray, seed: int, seq: int, base: int, record: type[Record]
) -> tuple[list[Record], list[dict[str, Any]], int, int, Fault | None]:
    """The whole version-2 frames at the start of ``buffer`` (at file offset ``base``), up to the first bad one.

    ``seed`` is the file header's CRC, ``seq`` the number the first frame must
    carry. A frame cut short by the end of the buffer stops the walk with no
    fault: more bytes may complete it. The twin of ``_cjournal.walk`` (used
    when it is built): this is every record a recovery reads.
    """
    records: list[Record] = []
    payloads: list[dict[str, Any]] = []
    crc32, loads, unpack = zlib.crc32, orjson.loads, _FRAME_2.unpack_from
    append, keep, new_record = records.append, payloads.append, tuple.__new__  # Record(...): a frame each
    bad: Fault | None = None
    position, size = 0, len(buffer)
    view = memoryview(buffer)
    try:
        while size - position >= 16:
            crc, length, number = unpack(buffer, position)
            if not 0 < length <= MAX_PAYLOAD:
                bad = (base + position, f"impossible record length {length}", False)
                break
            end = position + 16 + length
            if end > size:
                break
            if crc32(view[position + 4 : end], seed) != crc:
                bad = (base + position, "CRC mismatch", False)
                break
            if number != seq:
                bad = (base + position, _out_of_order(number, seq), True)
                break
            try:  # _problem, inlined
                decoded = loads(view[position + 16 : end])
            except orjson.JSONDecodeError:
                decoded = None
            if decoded.__class__ is not dict or decoded.get("t").__class__ is not str:
                bad = (base + position, "payload is not a record", True)
                break
            append(new_record(record, (base + position, decoded, seq)))
            keep(decoded)
            seq += 1
            position = end
    finally:
        view.release()
    return records, payloads, position, seq, bad


_walk: Walk = walk_frames if native.walk is None else native.walk


def _out_of_order(number: int, expected: int) -> str:
    return f"record number {number} where {expected} was expected: records out of order, repeated or missing"


def _problem(payload: Any, loads: Callable[[Any], Any], check: Check | None) -> dict[str, Any] | str:
    """The decoded record, or what is wrong with it."""
    try:
        decoded = loads(payload)
    except orjson.JSONDecodeError:
        return "payload is not a record"
    if decoded.__class__ is not dict or decoded.get("t").__class__ is not str:
        return "payload is not a record"
    if check is not None:
        fault = check([decoded])
        if fault is not None:
            return fault[1]
    return decoded
