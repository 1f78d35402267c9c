# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, autotestdict=False
# distutils: libraries = z
"""The journal's record framing in C (the twin of ``chronowheel._journal.format.frame_records``), and the loop's
settling of a durable hand-over's commits (the twin of ``chronowheel._journal.writer.settle``).

The writer thread frames each hand-over of records whole. In Python that was
three calls and four objects per record, all of it holding the GIL against
the event loop; here the payloads are gathered under the GIL (a reference
taken on each) and the frames are laid out and CRC'd (zlib's ``crc32``, one
call a record over its length, number and payload, which lie side by side in
the output) with the GIL released. The bytes are the pure function's, to
the bit (``tests/test_journal_format.py`` compares the two).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from "zlib.h":
    unsigned long crc32(unsigned long crc, const unsigned char* buf, unsigned int length) nogil

cdef extern from "Python.h":
    PyObject* cw_list_item "PyList_GET_ITEM"(object o, Py_ssize_t i) noexcept  # borrowed
    void cw_incref "Py_INCREF"(PyObject* o) noexcept
    void cw_decref "Py_DECREF"(PyObject* o) noexcept

cdef enum:
    FRAME = 16  # u32 crc | u32 length | u64 record number

ctypedef struct Piece:
    PyObject* payload  # a reference held while the GIL is released
    const unsigned char* data
    Py_ssize_t size


cdef inline void _put_u32(unsigned char* at, uint32_t value) noexcept nogil:
    at[0] = value & 0xFF
    at[1] = (value >> 8) & 0xFF
    at[2] = (value >> 16) & 0xFF
    at[3] = (value >> 24) & 0xFF


cdef inline void _put_u64(unsigned char* at, uint64_t value) noexcept nogil:
    _put_u32(at, <uint32_t>(value & 0xFFFFFFFFu))
    _put_u32(at + 4, <uint32_t>(value >> 32))


def frame_records(list payloads not None, uint32_t seed, uint64_t seq):
    """``payloads`` (bytes) as version-2 records numbered from ``seq``, CRCs seeded with ``seed``: one bytes."""
    cdef Py_ssize_t n = len(payloads), i, taken = 0, total = 0, size
    cdef Piece* pieces = <Piece*>PyMem_Malloc(max(n, 1) * sizeof(Piece))
    cdef unsigned char* at
    cdef PyObject* item
    if pieces == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            item = cw_list_item(payloads, i)
            if not PyBytes_CheckExact(<object>item):
                raise TypeError(f"payloads[{i}] must be bytes, got {type(<object>item).__name__}")
            size = PyBytes_GET_SIZE(<object>item)
            if size > 0xFFFFFFFF - FRAME:
                raise ValueError(f"payloads[{i}] is {size:,} bytes: more than a record's length field holds")
            cw_incref(item)  # whatever happens to the list while the GIL is released
            pieces[i].payload = item
            pieces[i].data = <const unsigned char*>PyBytes_AS_STRING(<object>item)
            pieces[i].size = size
            taken += 1
            total += FRAME + size
        data = PyBytes_FromStringAndSize(NULL, total)
        at = <unsigned char*>PyBytes_AS_STRING(data)
        with nogil:
            for i in range(n):
                size = pieces[i].size
                _put_u32(at + 4, <uint32_t>size)
                _put_u64(at + 8, seq + <uint64_t>i)
                memcpy(at + FRAME, pieces[i].data, size)
                _put_u32(at, <uint32_t>crc32(seed, at + 4, <unsigned int>(FRAME - 4 + size)))
                at += FRAME + size
        return data
    finally:
        for i in range(taken):
            cw_decref(pieces[i].payload)
        PyMem_Free(pieces)


def settle(list pairs not None):
    """Set each future of ``pairs`` (future, value, future, value, ...) to its value, unless it is done.

    The twin of ``chronowheel._journal.writer.settle``: the loop's one call
    per durable hand-over, in C rather than a Python loop over its commits.
    """
    cdef Py_ssize_t i = 0
    if len(pairs) % 2:
        raise ValueError(f"pairs must hold a value for each future, got {len(pairs)} items")
    while i + 1 < len(pairs):  # re-read: a future's methods are not ours
        future = pairs[i]
        if not future.done():
            future.set_result(pairs[i + 1])
        i += 2
