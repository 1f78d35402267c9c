"""Journal files built by hand, in format version 2 or in version 1, for the tests that damage or forge them.

Version 2 is built with the module's own :class:`Encoder`; version 1 with the
framing it had (``u32 length | u32 crc32 | payload`` after a 20-byte header),
written out here so that a test of the version-1 reader does not depend on
the writer it reads for.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from chronowheel._journal.format import LOG, Decoder, Encoder

IDENTITY = bytes(range(16))  # the identity of the journals the tests forge
OTHER = bytes(range(100, 116))  # another journal's


class Layout(NamedTuple):
    data: bytes
    offsets: list[int]  # where each record's frame starts
    payloads: list[dict[str, Any]]
    header_size: int
    frame_size: int

    def end_of(self, index: int) -> int:
        """Where record ``index``'s frame ends."""
        return self.offsets[index + 1] if index + 1 < len(self.offsets) else len(self.data)

    def record_at(self, position: int) -> int:
        """The index of the record whose frame holds byte ``position`` (-1: the file header)."""
        return sum(offset <= position for offset in self.offsets) - 1

    def frame(self, index: int) -> bytes:
        return self.data[self.offsets[index] : self.end_of(index)]


def build(
    payloads: list[dict[str, Any]],
    kind: bytes = LOG,
    generation: int = 1,
    seq: int = 1,
    identity: bytes = IDENTITY,
) -> Layout:
    """A version-2 file: a log numbered from ``seq``, or a snapshot covering the records before ``seq``."""
    encoder = Encoder(kind, identity, generation, seq)
    data = bytearray(encoder.header)
    offsets = []
    for payload in payloads:
        offsets.append(len(data))
        data += encoder.frames([orjson.dumps(payload)])
    return Layout(bytes(data), offsets, payloads, len(encoder.header), 16)


def v1_header(kind: bytes, generation: int, version: int = 1) -> bytes:
    head = struct.pack("<4sIQ", kind, version, generation)
    return head + struct.pack("<I", zlib.crc32(head))


def v1_frame(payload: bytes) -> bytes:
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def build_v1(payloads: list[dict[str, Any]], kind: bytes = LOG, generation: int = 1) -> Layout:
    """A version-1 file, as chronowheel wrote them before the journal had an identity."""
    data = bytearray(v1_header(kind, generation))
    offsets = []
    for payload in payloads:
        offsets.append(len(data))
        data += v1_frame(orjson.dumps(payload))
    return Layout(bytes(data), offsets, payloads, 20, 8)


def next_frames(path: Path, payloads: list[dict[str, Any]], *, raw: list[bytes] | None = None) -> bytes:
    """What appending ``payloads`` (or ``raw`` payload bytes) to the version-2 log at ``path`` writes.

    Numbered on from its last record, the CRCs seeded by its header: as the writer would.
    """
    data = path.read_bytes()
    decoder = Decoder()
    decoder.feed(data)
    header = decoder.header
    assert header is not None
    assert header.version == 2
    encoder = Encoder(header.kind, header.identity, header.generation, header.seq, decoder.next_seq)
    return encoder.frames(raw if raw is not None else [orjson.dumps(payload) for payload in payloads])


def append(path: Path, *payloads: dict[str, Any]) -> None:
    """Append well-framed records (right numbers, right CRCs) to a version-2 log: they are only as sound as they are."""
    frames = next_frames(path, list(payloads))
    with open(path, "ab") as file:
        file.write(frames)
