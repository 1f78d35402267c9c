# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, autotestdict=False
"""The hierarchical timing wheel in C: a drop-in for ``chronowheel._wheel.TimerWheel``.

Same algorithm, same outputs (see the pure module for the design); only the
storage differs. Every timer is a 32-byte C struct in one growable slab, linked
into an intrusive doubly-linked list: a wheel slot's, the overflow list, or the
due batch. Its payload is the only Python object the wheel keeps per timer; the
slab is allocated with ``PyMem_Raw*`` so ``tracemalloc`` sees it. Priorities
live in a second array, by slab index, allocated with the first priority that
is not 0: the engine's volatile timers and most jobs never need it.

A handle is the int ``seq << 32 | index``: ``seq`` is the timer's insertion
sequence number, drawn from one counter for every wheel in the process, so a
handle to a fired or cancelled timer never matches the timer that later reuses
its slab entry, nor does one wheel's handle match another wheel's timer.

Arguments are checked as ``chronowheel._wheel_api`` says, with the pure wheel's
messages: an exact int of up to two digits (``PyLong_CheckExact``, a pointer
compare, then the digits read inline: ``cw_small_int``) is in range by
construction (handles, known to be ints by then, are read the same way); anything else takes ``_tick``, the slow path that tells int
subclasses from bools, floats and the rest and reads big ints with
``PyLong_AsLongLongAndOverflow``.

Due batch: the timers fired and not yet handed out, in (deadline, priority,
seq) order. Cancelling one leaves a tombstone in its place, as the pure wheel
leaves a stale entry in its ``_due`` list (it keeps the batch "under way" until
the drain passes it); rescheduling one takes it out of the batch and files it
afresh. A timer core's handle leaves a tombstone in a wheel slot too, within a
bound (``TimerWheel._drop``): unlinking there costs two cache misses at a
million timers, which a cancel need not pay.

The type is GC-tracked and its traverse visits the payloads, so a cycle
through a payload (wheel -> payload -> owner of the wheel) is collected just as
with the pure wheel's dicts; except while a ``TimerCore`` holding it is
``quiet`` (its engine's driver runs: see there), or while it hides its
payloads of one type (``hide``: a pool's wheel of jobs, while the driver runs).

``TimerCore`` and ``TimerHandle``: the engine's volatile timers (``call_later``,
``call_at``, the handle's methods and the driver's fire loop) in C, the twin of
``chronowheel._volatile``.
"""

cimport cython
from cpython.bool cimport PyBool_Check
from cpython.exc cimport PyErr_Clear, PyErr_Occurred
from cpython.float cimport PyFloat_AsDouble
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check, PyLong_CheckExact, PyLong_FromUnsignedLongLong
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport PyObject
from cpython.list cimport PyList_CheckExact
from cpython.tuple cimport PyTuple_CheckExact
from cpython.unicode cimport PyUnicode_CheckExact
from libc.math cimport INFINITY, ceil
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from _template cimport Layout, copy_template, cw_get_slot, cw_member_offset, cw_put_slot, is_field, learn_layout

import math
from asyncio import Future as _Future
from os import urandom as _urandom
from time import monotonic as _monotonic
from time import time as _wall

from chronowheel._limits import MAX_AHEAD as _MAX_AHEAD
from chronowheel._limits import MAX_DELAY as _MAX_DELAY

cdef extern from "Python.h":
    void* PyMem_RawMalloc(size_t n) nogil
    void* PyMem_RawCalloc(size_t n, size_t size) nogil
    void* PyMem_RawRealloc(void* p, size_t n) nogil
    void PyMem_RawFree(void* p) nogil
    void cw_incref "Py_INCREF"(PyObject* o) noexcept
    void cw_decref "Py_DECREF"(PyObject* o) noexcept
    int cw_list_append "PyList_Append"(object lst, PyObject* item) except -1
    int cw_is_tracked "PyObject_GC_IsTracked"(PyObject* o) noexcept
    PyObject* cw_dict_get "PyDict_GetItemWithError"(object d, object key) except? NULL  # borrowed
    PyObject* cw_dict_setdefault "PyDict_SetDefault"(object d, object key, object value) except NULL  # borrowed
    int cw_set_contains "PySet_Contains"(object s, object key) except -1
    unsigned long cw_thread_ident "PyThread_get_thread_ident"() noexcept
    void cw_track "PyObject_GC_Track"(PyObject* o) noexcept
    void cw_untrack "PyObject_GC_UnTrack"(PyObject* o) noexcept
    PyObject* cw_type "(PyObject*)Py_TYPE"(PyObject* o) noexcept
    PyObject* cw_sequence_item "PySequence_Fast_GET_ITEM"(object o, Py_ssize_t i) noexcept  # a tuple or list's, borrowed
    object cw_vectorcall "PyObject_Vectorcall"(object callable, PyObject** args, size_t nargsf, object kwnames)
    # Errors are checked by hand (_lookup must not raise): no ``except`` clause.
    unsigned long long cw_as_u64 "PyLong_AsUnsignedLongLong"(object o) noexcept
    bint PyUnicode_IS_COMPACT_ASCII(object o) noexcept
    void* PyUnicode_DATA(object o) noexcept
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    Py_ssize_t PyUnicode_GET_LENGTH(object o) noexcept
    ctypedef int (*visitproc)(PyObject*, void*)
    ctypedef int (*traverseproc)(PyObject*, visitproc, void*)
    ctypedef int (*inquiry)(PyObject*)
    ctypedef struct _TypeSlots "PyTypeObject":
        const char* tp_name
        traverseproc tp_traverse
        inquiry tp_clear


cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <intrin.h>
    static __inline int cw_ctz64(unsigned long long x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    static __inline int cw_bitlen64(unsigned long long x) {
        unsigned long i; if (!x) return 0; _BitScanReverse64(&i, x); return (int)i + 1;
    }
    #else
    #define cw_ctz64(x) __builtin_ctzll(x)
    #define cw_bitlen64(x) ((x) ? 64 - __builtin_clzll(x) : 0)
    #endif

    /* The value of an int (o is a PyLong: an int or a subclass) that is cheap to read, in *out, and 1;
       else 0 (read it the slow way). Up to two 30-bit digits on 3.11 (60 bits: always in int64),
       compact ints on 3.12+. */
    Py_LOCAL_INLINE(int) cw_small_long(PyObject* o, int64_t* out) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject*)o)) {
            *out = (int64_t)PyUnstable_Long_CompactValue((PyLongObject*)o);
            return 1;
        }
        return 0;
    #else
        const digit* d = ((PyLongObject*)o)->ob_digit;
        switch (Py_SIZE(o)) {
        case 0: *out = 0; return 1;
        case 1: *out = (int64_t)d[0]; return 1;
        case -1: *out = -(int64_t)d[0]; return 1;
        case 2: *out = ((int64_t)d[1] << PyLong_SHIFT) | (int64_t)d[0]; return 1;
        case -2: *out = -(((int64_t)d[1] << PyLong_SHIFT) | (int64_t)d[0]); return 1;
        default: return 0;
        }
    #endif
    }

    /* cw_small_long for an exact int only (not a bool, not a subclass), o any object. */
    #define cw_small_int(o, out) (PyLong_CheckExact(o) && cw_small_long((o), (out)))

    /* An exact float, or a small exact int, as a double: the fast read of a delay or a time, o any object. */
    static inline int cw_small_number(PyObject *o, double *out) {
        int64_t i;
        if (PyFloat_CheckExact(o)) { *out = PyFloat_AS_DOUBLE(o); return 1; }
        if (cw_small_int(o, &i)) { *out = (double)i; return 1; }
        return 0;
    }

    /* time.monotonic() to the bit: CPython's _PyTime_AsSecondsDouble of clock_gettime(CLOCK_MONOTONIC).
       Linux only; elsewhere the core calls time.monotonic itself (macOS reads another clock). */
    #if defined(__linux__)
    #include <time.h>
    #define CW_HAVE_MONOTONIC 1
    static double cw_monotonic(void) {
        struct timespec ts;
        int64_t ns;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        if (ns % 1000000000 == 0) return (double)(ns / 1000000000);
        return (double)ns / 1e9;
    }
    #else
    #define CW_HAVE_MONOTONIC 0
    static double cw_monotonic(void) { return 0.0; }
    #endif

    /* time.time() to the bit, the same way (CLOCK_REALTIME); elsewhere the job path calls time.time. */
    #if defined(__linux__)
    static double cw_realtime(void) {
        struct timespec ts;
        int64_t ns;
        clock_gettime(CLOCK_REALTIME, &ts);
        ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        if (ns % 1000000000 == 0) return (double)(ns / 1000000000);
        return (double)ns / 1e9;
    }
    #else
    static double cw_realtime(void) { return 0.0; }
    #endif
    """
    bint CW_HAVE_MONOTONIC
    double cw_monotonic() noexcept nogil
    double cw_realtime() noexcept nogil
    int cw_ctz64(unsigned long long x) nogil
    int cw_bitlen64(unsigned long long x) nogil
    bint cw_small_long(object o, int64_t* out) noexcept
    bint cw_small_int(object o, int64_t* out) noexcept
    bint cw_small_number(object o, double* out) noexcept

cdef enum:
    BITS = 6
    SLOTS = 64
    SLOT_MASK = 63
    MAX_LEVELS = 10
    ALL_SLOTS = 640  # MAX_LEVELS * SLOTS
    # ``where``: level * 64 + slot while filed in the wheel, then:
    W_OVERFLOW = 1022  # waiting beyond the top level
    W_DUE = 1023  # fired, in the due batch, not yet handed out
    W_TOMB = 1024  # cancelled and left in its list (the due batch, or a timer core's slot): a tombstone
    W_FREE = 1025  # on the free list
    WHERE_BITS = 11  # ``where`` shares a 64-bit word with the sequence number
    WHERE_MASK = 2047
    TOMB_SLACK = 4096  # tombstones a timer core's wheel may hold beyond half its pending timers (see _drop)

cdef uint32_t NIL = 0xFFFFFFFFu
cdef uint32_t MAX_TIMERS = 0xFFFFFFFEu
cdef int64_t TICK_MAX = 0x7FFFFFFFFFFFFFFF  # ticks and priorities: -TICK_MAX .. TICK_MAX
cdef str RANGE = "from -(2**63 - 1) to 2**63 - 1"

cdef uint64_t last_seq = 0  # the last sequence number handed out, by any wheel
cdef uint64_t SEQ_LIMIT = <uint64_t>1 << (64 - WHERE_BITS)  # 2**53: 28 years of 10M timers a second


cdef int64_t _tick(object value, str name) except? -1:
    """``value`` as a tick or priority: an int (an int subclass, not a bool) within +-TICK_MAX.

    The slow path: callers read a small exact int with ``cw_small_int`` first,
    so the hot calls pass no name and check no error.
    """
    cdef int overflow = 0
    cdef long long v
    if PyBool_Check(value) or not PyLong_Check(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < -TICK_MAX:
        raise ValueError(f"{name} must be an int {RANGE}, got {value!r}")
    return v


cdef int _check_handle(object handle) except -1:
    """A handle is an int (what ``add`` returned, maybe in an int subclass); anything else is refused.

    For what is not an exact int: callers test ``PyLong_CheckExact`` first.
    """
    if PyBool_Check(handle) or not PyLong_Check(handle):
        raise TypeError(f"handle must be an int returned by add(), got {type(handle).__name__}")
    return 0

ctypedef struct Timer:  # 32 bytes
    int64_t deadline
    uint64_t key  # seq << WHERE_BITS | where: its sequence number (0 while free) and the list it is on
    PyObject* payload  # owned reference; NULL when free or a tombstone
    uint32_t next  # list links (next doubles as the free-list link)
    uint32_t prev


cdef inline uint32_t _where(const Timer* t) noexcept nogil:
    return <uint32_t>(t.key & WHERE_MASK)


cdef inline void _set_where(Timer* t, uint32_t where) noexcept nogil:
    t.key = (t.key & ~<uint64_t>WHERE_MASK) | where


cdef inline bint _before(const Timer* a, const Timer* b, const Timer* base, const int64_t* prio) noexcept nogil:
    """(deadline, priority, seq) of ``a`` < that of ``b``: timers of the slab at ``base``, priorities ``prio``."""
    if a.deadline != b.deadline:
        return a.deadline < b.deadline
    if prio != NULL and prio[a - base] != prio[b - base]:
        return prio[a - base] < prio[b - base]
    return a.key < b.key  # seq decides: the where bits below it never do


# qsort passes no context: the wheel being sorted, set just before the call (under the GIL, which it keeps).
cdef const Timer* sort_base = NULL
cdef const int64_t* sort_prio = NULL


cdef int _cmp_timers(const void* x, const void* y) noexcept nogil:
    cdef const Timer* a = (<const Timer**>x)[0]
    cdef const Timer* b = (<const Timer**>y)[0]
    if _before(a, b, sort_base, sort_prio):
        return -1
    if _before(b, a, sort_base, sort_prio):
        return 1
    return 0


@cython.final
@cython.auto_pickle(False)
cdef class TimerWheel:
    """Hierarchical timing wheel: O(1) add, cancel and reschedule.

    ``advance(now)`` hands out every payload whose deadline is ``<= now``, in
    (deadline, priority, insertion) order, lower priority values first; a
    deadline already in the past is due at the next ``advance``. Handles
    returned by :meth:`add` are opaque: pass them back to :meth:`cancel` and
    :meth:`reschedule`. What is accepted and how the rest is refused:
    :class:`chronowheel._wheel_api.Wheel`.
    """

    cdef Timer* timers
    cdef int64_t* prio  # each timer's priority, by slab index: NULL until one is not 0 (most wheels: never)
    cdef uint32_t cap  # entries allocated (of both)
    cdef uint32_t used  # entries ever handed out (high-water mark)
    cdef uint32_t free_head
    cdef Py_ssize_t size  # pending timers: filed, overflowing or due (not tombstones)
    cdef Py_ssize_t tombs  # tombstones still in a list (see _drop)
    cdef int nlevels
    cdef int64_t now_
    cdef uint64_t masks[MAX_LEVELS]
    cdef uint32_t heads[ALL_SLOTS]
    cdef uint32_t tails[ALL_SLOTS]
    cdef uint32_t ov_head, ov_tail
    cdef uint32_t due_head, due_tail
    cdef Timer** scratch  # the level-0 batch being sorted
    cdef Py_ssize_t scratch_cap
    cdef bint quiet  # True: the collector is not shown the payloads (see TimerCore.quiet and hide())
    cdef object hidden  # None, or the type whose payloads are untracked while they wait here (see hide())
    cdef bint cored  # a TimerCore's: its fire loop and handles take payloads out without showing them, so no hide()
    cdef object _gc_anchor  # always None: it only makes Cython emit a GC-tracked type (see the end)

    def __cinit__(self, *args, **kwargs):
        self.timers = NULL
        self.prio = NULL
        self.cap = 0
        self.scratch = NULL
        self.scratch_cap = 0
        self._reset()
        self.nlevels = 6  # a usable default wheel even if __init__ never runs, as the pure one
        self.now_ = 0

    def __init__(self, levels=6, *, start=0):
        if isinstance(levels, bool) or not isinstance(levels, int):
            raise TypeError(f"levels must be an int, got {type(levels).__name__}")
        if not 1 <= levels <= MAX_LEVELS:
            raise ValueError(f"levels must be an int from 1 to {MAX_LEVELS}, got {levels!r}")
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"start must be an int, got {type(start).__name__}")
        if not 0 <= start <= TICK_MAX:
            raise ValueError(f"start must be an int from 0 to 2**63 - 1, got {start!r}")
        cdef int64_t first = start
        if self.used:
            self._release_all()
        self.nlevels = levels
        self.now_ = first

    def __dealloc__(self):
        self._release_all()
        PyMem_RawFree(self.scratch)
        self.scratch = NULL

    cdef void _reset(self) noexcept:
        """An empty wheel (the slab pointer is the caller's business)."""
        cdef int i
        self.used = 0
        self.free_head = NIL
        self.size = 0
        self.tombs = 0
        for i in range(MAX_LEVELS):
            self.masks[i] = 0
        for i in range(ALL_SLOTS):
            self.heads[i] = NIL
            self.tails[i] = NIL
        self.ov_head = self.ov_tail = NIL
        self.due_head = self.due_tail = NIL

    cdef void _release_all(self) noexcept:
        """Drop every timer. The wheel is empty and consistent before any payload is released."""
        cdef Timer* old = self.timers
        cdef uint32_t n = self.used
        cdef uint32_t i
        cdef PyObject* p
        self.timers = NULL
        self.cap = 0
        PyMem_RawFree(self.prio)
        self.prio = NULL
        self._reset()
        for i in range(n):
            p = old[i].payload
            if p != NULL:
                old[i].payload = NULL
                self._show(p)
                cw_decref(p)  # may run a finalizer that uses this (now empty) wheel
        PyMem_RawFree(old)

    # -- the public surface ------------------------------------------------------

    @property
    def now(self):
        """The tick the wheel has advanced to."""
        return self.now_

    @property
    def levels(self):
        return self.nlevels

    def __len__(self):
        """Timers added and not yet handed out or cancelled."""
        return self.size

    def __repr__(self):
        return f"<TimerWheel levels={self.nlevels} now={self.now_} pending={self.size}>"

    def add(self, deadline, object payload, priority=0):
        """File ``payload`` to fire at tick ``deadline``; return its handle."""
        # Everything that can fail comes before the first change.
        cdef int64_t d, p
        if not cw_small_int(deadline, &d):
            d = _tick(deadline, "deadline")
        if priority is 0:  # the default, and what the engine passes for most jobs: the cached small int
            p = 0
        elif not cw_small_int(priority, &p):
            p = _tick(priority, "priority")
        return self._add(d, p, payload)

    cdef object _add(self, int64_t d, int64_t p, object payload):
        """``add`` once its arguments are read: the handle (the job path calls it directly)."""
        cdef uint64_t seq = last_seq + 1
        cdef uint32_t idx
        cdef object handle
        self._reserve()
        if p != 0 and self.prio == NULL:
            self._add_priorities()
        idx = self.free_head if self.free_head != NIL else self.used
        if seq >> 32:
            handle = (PyLong_FromUnsignedLongLong(seq) << 32) | idx
        else:
            handle = PyLong_FromUnsignedLongLong(seq << 32 | idx)
        self._insert(d, p, payload)
        if self.hidden is not None and cw_type(<PyObject*>payload) == <PyObject*>self.hidden:
            if cw_is_tracked(<PyObject*>payload):
                cw_untrack(<PyObject*>payload)
        return handle

    def hide(self, kind):
        """Keep payloads of exactly type ``kind`` out of the cyclic collector while they wait here; None: show them.

        While hidden they are untracked (``gc.is_tracked`` is False: no
        collection walks them) and the wheel does not walk its payloads
        either; each is tracked again as it leaves the wheel (handed out by
        ``advance``, taken out by ``cancel``, dropped with the wheel or its
        ``__init__``) and all of them when this is set back to None. A timer
        core's wheel refuses (``ValueError``): the core's fire loop and
        handles take payloads out in C without showing them, at no cost.
        The caller's promise: the wheel stays reachable for as long as it
        hides (the engine hides its pools' wheels only while its driver runs),
        so nothing a hidden payload refers to can be garbage meanwhile. A
        dropped engine whose driver never ended keeps its jobs alive, as a
        quiet ``TimerCore`` does its timers.
        """
        if kind is not None and not isinstance(kind, type):
            raise TypeError(f"kind must be a type or None, got {type(kind).__name__}")
        if self.cored and kind is not None:
            raise ValueError("a timer core's wheel hides nothing: its core is quiet instead")
        if kind is self.hidden:
            return
        cdef uint32_t i
        cdef PyObject* p
        self._show_all()
        self.hidden = kind
        self.quiet = kind is not None
        if kind is None:
            return
        for i in range(self.used):
            p = self.timers[i].payload
            if p != NULL and cw_type(p) == <PyObject*>kind and cw_is_tracked(p):
                cw_untrack(p)

    def cancel(self, handle):
        """Remove a pending timer. False if it already fired or was cancelled."""
        if not PyLong_CheckExact(handle):
            _check_handle(handle)
        cdef uint32_t idx = self._lookup(handle)
        if idx == NIL:
            return False
        if self.hidden is not None:  # here, not in _cancel: the timer core's handles cancel on a wheel that never hides
            self._show(self.timers[idx].payload)
        self._cancel(idx)
        return True

    def reschedule(self, handle, deadline):
        """Move a pending timer to ``deadline``. False if it is no longer pending."""
        if not PyLong_CheckExact(handle):
            _check_handle(handle)
        cdef int64_t d
        if not cw_small_int(deadline, &d):
            d = _tick(deadline, "deadline")
        cdef uint32_t idx = self._lookup(handle)
        if idx == NIL:
            return False
        self._move(idx, d)
        return True

    def deadline(self, handle):
        """The tick a pending timer is due at, or None if ``handle`` names no pending timer."""
        if not PyLong_CheckExact(handle):
            _check_handle(handle)
        cdef uint32_t idx = self._lookup(handle)
        if idx == NIL:
            return None
        return self.timers[idx].deadline

    def next_expiry(self):
        """The earliest tick at which :meth:`advance` may have work, or None.

        Never later than the earliest deadline; may be earlier when a timer
        was lazily moved later (the wheel then wakes once to re-file it), or
        a timer core's handle cancelled one (its tombstone is freed then).
        """
        cdef uint32_t where = 0
        cdef uint64_t start = 0
        if self.due_head != NIL:
            return self.now_
        if self._next_slot(&where, &start):
            return start
        if self.ov_head != NIL:
            return self._next_window()
        return None

    def advance(self, now, limit=None):
        """Move to tick ``now`` and return the payloads due by then.

        With ``limit``, return at most that many; call again with the same
        ``now`` for the rest. Ticks never go backwards: a ``now`` behind the
        wheel's hands out what is due at the wheel's own tick.
        """
        cdef int64_t until
        if not cw_small_int(now, &until):
            until = _tick(now, "now")
        cdef Py_ssize_t lim = -1
        cdef Py_ssize_t count = 0
        cdef PyObject* payload
        if limit is not None:
            if not PyLong_CheckExact(limit) and (PyBool_Check(limit) or not PyLong_Check(limit)):
                raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
            if limit <= 0:
                raise ValueError(f"limit must be positive, got {limit!r}")
            if limit < <object>PY_SSIZE_T_MAX:
                lim = limit
        cdef list out = []
        while count != lim and self._pop_due(until, &payload):
            if self.hidden is not None:  # here, not in _pop_due: the timer core fires from a wheel that never hides
                self._show(payload)
            try:
                cw_list_append(out, payload)
            finally:
                cw_decref(payload)  # the list holds it now
            count += 1
        return out

    # -- internals -----------------------------------------------------------

    @cython.final
    cdef void _show(self, PyObject* p) noexcept:
        """Track a payload leaving a hiding wheel again, if the wheel hid it (callers test ``hidden`` first)."""
        if cw_type(p) == <PyObject*>self.hidden and not cw_is_tracked(p):
            cw_track(p)

    cdef void _show_all(self) noexcept:
        """Track every payload the wheel hid again."""
        cdef uint32_t i
        cdef PyObject* p
        if self.hidden is None:
            return
        for i in range(self.used):
            p = self.timers[i].payload
            if p != NULL:
                self._show(p)

    cdef int _reserve(self) except -1:
        """Make room for one more timer: the one change ``_insert`` makes that can fail."""
        if self.free_head == NIL and self.used == self.cap:
            self._grow()
        if last_seq + 1 >= SEQ_LIMIT:
            raise OverflowError("this process has filed 2**53 - 1 timers: no sequence numbers are left")
        return 0

    cdef uint32_t _insert(self, int64_t deadline, int64_t priority, object payload) noexcept:
        """File a new timer (after ``_reserve``) under the next sequence number; its slab index."""
        global last_seq
        cdef uint32_t idx
        if self.free_head != NIL:
            idx = self.free_head
            self.free_head = self.timers[idx].next
        else:
            idx = self.used
            self.used += 1
        last_seq += 1
        cdef Timer* t = &self.timers[idx]
        t.key = last_seq << WHERE_BITS
        if self.prio != NULL:
            self.prio[idx] = priority
        t.payload = <PyObject*>payload
        cw_incref(t.payload)
        self.size += 1
        self._file(idx, deadline)
        return idx

    cdef inline uint32_t _pending(self, uint32_t idx, uint64_t seq) noexcept:
        """``idx`` if the timer there is the pending one numbered ``seq``, else NIL."""
        if idx >= self.used or self.timers[idx].key >> WHERE_BITS != seq or _where(&self.timers[idx]) > W_DUE:
            return NIL
        return idx

    cdef void _cancel(self, uint32_t idx) noexcept:
        """Remove the pending timer at ``idx``."""
        cdef Timer* t = &self.timers[idx]
        cdef PyObject* payload = t.payload
        t.payload = NULL
        if _where(t) == W_DUE:
            _set_where(t, W_TOMB)  # the drain frees it when it gets there
            self.tombs += 1
        else:
            self._unlink(idx)
            self._free(idx)
        self.size -= 1
        cw_decref(payload)  # last: a finalizer may use the wheel

    cdef void _drop(self, uint32_t idx) noexcept:
        """Cancel the pending timer at ``idx`` for a timer core's handle: left in its list where the bound allows.

        Unlinking reads and writes the timer's two neighbours: at a million
        timers, cache misses that come after the handle's and the timer's
        own. A tombstone costs neither; whatever walks its list next (the
        slot coming up, a cascade, overflow coming in range) frees it, and
        ``next_expiry`` may name its slot (one wake-up that hands out
        nothing, as after a lazy move). Tombstones are bounded: past half the
        pending timers (plus ``TOMB_SLACK``) a cancel unlinks at once, so a
        wheel's entries never exceed one and a half times the most timers it
        held plus the slack, whatever is added and cancelled.
        """
        if self.tombs >= (self.size >> 1) + TOMB_SLACK:
            self._cancel(idx)
            return
        cdef Timer* t = &self.timers[idx]
        cdef PyObject* payload = t.payload
        t.payload = NULL
        _set_where(t, W_TOMB)
        self.tombs += 1
        self.size -= 1
        cw_decref(payload)  # last: a finalizer may use the wheel

    cdef void _move(self, uint32_t idx, int64_t deadline) noexcept:
        """Move the pending timer at ``idx`` to ``deadline``."""
        cdef Timer* t = &self.timers[idx]
        if _where(t) != W_DUE and deadline >= t.deadline:
            # Later: lazy. The old slot comes up first and re-files it then.
            t.deadline = deadline
            return
        self._unlink(idx)
        self._file(idx, deadline)

    cdef int _pop_due(self, int64_t until, PyObject** out) except -1:
        """Take the next payload due by tick ``until`` out of the wheel: 1 and a new reference in ``out``.

        0 once nothing more is due; the wheel has then moved to ``until``
        (never back). Popping one at a time keeps the batch in the wheel, so a
        callback may still cancel or move the timers after it.
        """
        cdef uint32_t idx
        cdef Timer* t
        cdef PyObject* payload
        if until < self.now_:
            until = self.now_
        while True:
            # Hand out what has already fired, freeing tombstones on the way.
            while self.due_head != NIL:
                idx = self.due_head
                t = &self.timers[idx]
                self.due_head = t.next
                if t.next != NIL:
                    self.timers[t.next].prev = NIL
                else:
                    self.due_tail = NIL
                payload = t.payload
                self._free(idx)
                if payload == NULL:
                    self.tombs -= 1
                    continue
                self.size -= 1
                out[0] = payload  # the wheel's reference, handed over
                return 1
            if not self._fire_next(until):
                self.now_ = until
                return 0

    cdef uint32_t _lookup(self, object handle) noexcept:
        """The slab index of the pending timer the int ``handle`` names, or NIL (callers checked it is an int)."""
        cdef uint64_t h
        cdef int64_t small
        if cw_small_long(handle, &small):  # up to 60 bits: every handle until 2**28 timers were added
            if small < 0:
                return NIL
            h = <uint64_t>small
        else:
            h = cw_as_u64(handle)
            if h == <uint64_t>-1 and PyErr_Occurred():
                PyErr_Clear()
                return self._lookup_big(handle)
        return self._pending(<uint32_t>(h & 0xFFFFFFFFu), h >> 32)

    cdef uint32_t _lookup_big(self, object handle) noexcept:
        """``_lookup`` for handles past 64 bits (sequence numbers past 2**32)."""
        cdef uint64_t seq
        cdef uint32_t idx
        try:
            if handle < 0:
                return NIL
            seq = handle >> 32
            idx = handle & 0xFFFFFFFF
        except Exception:  # OverflowError: no handle of ours is that large
            return NIL
        return self._pending(idx, seq)

    cdef int _grow(self) except -1:
        cdef uint64_t cap = self.cap
        cap = 64 if cap < 64 else cap * 2
        if cap > MAX_TIMERS:
            cap = MAX_TIMERS
        if cap <= self.cap:
            raise OverflowError("a TimerWheel holds at most 2**32 - 2 timers")
        cdef Timer* grown = <Timer*>PyMem_RawRealloc(self.timers, cap * sizeof(Timer))
        if grown == NULL:
            raise MemoryError()
        self.timers = grown
        cdef int64_t* prio
        if self.prio != NULL:  # a failure here leaves the slab bigger than ``cap`` says: harmless
            prio = <int64_t*>PyMem_RawRealloc(self.prio, cap * sizeof(int64_t))
            if prio == NULL:
                raise MemoryError()
            self.prio = prio
        self.cap = <uint32_t>cap
        return 0

    cdef int _add_priorities(self) except -1:
        """The first priority that is not 0: from now on every timer's is kept, the ones before it 0."""
        self.prio = <int64_t*>PyMem_RawCalloc(self.cap, sizeof(int64_t))
        if self.prio == NULL:
            raise MemoryError()
        return 0

    cdef inline void _free(self, uint32_t idx) noexcept:
        cdef Timer* t = &self.timers[idx]
        t.key = W_FREE  # seq 0
        t.payload = NULL
        t.prev = NIL
        t.next = self.free_head
        self.free_head = idx

    cdef inline void _append(self, uint32_t* head, uint32_t* tail, uint32_t idx) noexcept:
        cdef Timer* t = &self.timers[idx]
        t.next = NIL
        t.prev = tail[0]
        if tail[0] != NIL:
            self.timers[tail[0]].next = idx
        else:
            head[0] = idx
        tail[0] = idx

    cdef inline void _remove(self, uint32_t* head, uint32_t* tail, uint32_t idx) noexcept:
        cdef Timer* t = &self.timers[idx]
        if t.prev != NIL:
            self.timers[t.prev].next = t.next
        else:
            head[0] = t.next
        if t.next != NIL:
            self.timers[t.next].prev = t.prev
        else:
            tail[0] = t.prev

    cdef void _unlink(self, uint32_t idx) noexcept:
        """Take a pending timer out of whichever list holds it."""
        cdef uint32_t where = _where(&self.timers[idx])
        if where < W_OVERFLOW:
            self._remove(&self.heads[where], &self.tails[where], idx)
            if self.heads[where] == NIL:
                self.masks[where >> BITS] &= ~(<uint64_t>1 << (where & SLOT_MASK))
        elif where == W_OVERFLOW:
            self._remove(&self.ov_head, &self.ov_tail, idx)
        else:
            self._remove(&self.due_head, &self.due_tail, idx)

    cdef inline void _refile(self, uint32_t idx) noexcept:
        """File a timer of a list being emptied again (a cascade, overflow in range); free it if a tombstone."""
        if self.timers[idx].payload == NULL:
            self._free(idx)
            self.tombs -= 1
        else:
            self._file(idx, self.timers[idx].deadline)

    cdef void _file(self, uint32_t idx, int64_t deadline) noexcept:
        """Put a timer where its deadline belongs, seen from the current tick."""
        cdef Timer* t = &self.timers[idx]
        cdef int64_t now = self.now_
        cdef int level, slot
        cdef uint32_t where, cur
        t.deadline = deadline
        if deadline <= now:
            if self.due_head != NIL:
                # A drain is under way: join it in fire order, after its equals (as insort).
                _set_where(t, W_DUE)
                cur = self.due_tail
                while cur != NIL and _before(t, &self.timers[cur], self.timers, self.prio):
                    cur = self.timers[cur].prev
                t.prev = cur
                if cur == NIL:
                    t.next = self.due_head
                    self.due_head = idx
                else:
                    t.next = self.timers[cur].next
                    self.timers[cur].next = idx
                if t.next == NIL:
                    self.due_tail = idx
                else:
                    self.timers[t.next].prev = idx
                return
            level = 0
            slot = <int>(now & SLOT_MASK)
        else:
            level = (cw_bitlen64((<uint64_t>deadline ^ <uint64_t>now) | SLOT_MASK) - 1) // BITS
            if level >= self.nlevels:
                _set_where(t, W_OVERFLOW)
                self._append(&self.ov_head, &self.ov_tail, idx)
                return
            slot = <int>((<uint64_t>deadline >> (level * BITS)) & SLOT_MASK)
        where = level * SLOTS + slot
        _set_where(t, where)
        self._append(&self.heads[where], &self.tails[where], idx)
        self.masks[level] |= <uint64_t>1 << slot

    cdef bint _next_slot(self, uint32_t* where_out, uint64_t* start_out) noexcept:
        """The earliest occupied slot and its start tick; False if the wheel is empty."""
        cdef uint64_t now = <uint64_t>self.now_
        cdef uint64_t mask, ahead
        cdef int level, shift, digit, slot
        for level in range(self.nlevels):
            mask = self.masks[level]
            if not mask:
                continue
            shift = level * BITS
            digit = <int>((now >> shift) & SLOT_MASK)
            ahead = mask >> digit
            if ahead:
                slot = digit + cw_ctz64(ahead)
            else:  # a slot behind the hand: never happens; take the first one rather than read out of range
                slot = cw_ctz64(mask)
            where_out[0] = level * SLOTS + slot
            start_out[0] = (now & ~((<uint64_t>1 << (shift + BITS)) - 1)) + (<uint64_t>slot << shift)
            return True
        return False

    cdef inline uint64_t _next_window(self) noexcept:
        """First tick of the next top-level window, when overflow comes in range."""
        cdef int span = BITS * self.nlevels
        return ((<uint64_t>self.now_ >> span) + 1) << span

    cdef int _fire_next(self, int64_t now) except -1:
        """Process the next slot due by ``now``; 0 if there is none.

        A level-0 slot fills the due batch; a higher slot cascades its timers
        down; crossing into a new top-level window brings overflow in.
        """
        global sort_base, sort_prio
        cdef uint32_t where = 0
        cdef uint32_t idx, nxt
        cdef uint64_t start = 0
        cdef uint64_t window
        cdef int64_t lowest
        cdef int span
        cdef uint32_t prev
        cdef Py_ssize_t n, i, j
        cdef Timer* t
        cdef Timer** grown
        if not self._next_slot(&where, &start):
            if self.ov_head == NIL:
                return 0
            start = self._next_window()
            if start > <uint64_t>now:
                return 0
            # Straight to the window of the earliest overflow deadline (as the
            # pure wheel), not one window at a time.
            span = BITS * self.nlevels
            idx = self.ov_head
            lowest = self.timers[idx].deadline
            while idx != NIL:
                if self.timers[idx].deadline < lowest:
                    lowest = self.timers[idx].deadline
                idx = self.timers[idx].next
            window = (<uint64_t>lowest >> span) << span
            if window > start:
                if window > <uint64_t>now:
                    return 0
                start = window
            self.now_ = <int64_t>start
            idx = self.ov_head
            self.ov_head = self.ov_tail = NIL
            while idx != NIL:
                nxt = self.timers[idx].next
                self._refile(idx)
                idx = nxt
            return 1
        if start > <uint64_t>now:
            return 0
        if <int64_t>start > self.now_:
            self.now_ = <int64_t>start
        if where >= SLOTS:
            idx = self.heads[where]
            self.heads[where] = self.tails[where] = NIL
            self.masks[where >> BITS] &= ~(<uint64_t>1 << (where & SLOT_MASK))
            while idx != NIL:
                nxt = self.timers[idx].next
                self._refile(idx)
                idx = nxt
            return 1
        # Level 0: size the sort buffer before touching anything.
        n = 0
        idx = self.heads[where]
        while idx != NIL:
            n += 1
            idx = self.timers[idx].next
        if n > self.scratch_cap:
            grown = <Timer**>PyMem_RawRealloc(self.scratch, n * sizeof(Timer*))
            if grown == NULL:
                raise MemoryError()
            self.scratch = grown
            self.scratch_cap = n
        idx = self.heads[where]
        self.heads[where] = self.tails[where] = NIL
        self.masks[0] &= ~(<uint64_t>1 << where)
        n = 0
        while idx != NIL:
            t = &self.timers[idx]
            nxt = t.next
            if t.payload == NULL:  # a tombstone (see _drop)
                self._free(idx)
                self.tombs -= 1
            elif t.deadline <= <int64_t>start:
                self.scratch[n] = t
                n += 1
            else:  # moved later while filed here: file it again
                self._file(idx, t.deadline)
            idx = nxt
        if n == 0:
            return 1
        # Already in order, most often (a slot's list is in filing order, which is seq order for timers
        # neither moved nor of another priority): one pass tells, and spares sorting a big batch.
        i = 1
        while i < n and not _before(self.scratch[i], self.scratch[i - 1], self.timers, self.prio):
            i += 1
        if i < n and n <= 16:  # insertion sort from the first timer out of order: small batches
            while i < n:
                t = self.scratch[i]
                j = i - 1
                while j >= 0 and _before(t, self.scratch[j], self.timers, self.prio):
                    self.scratch[j + 1] = self.scratch[j]
                    j -= 1
                self.scratch[j + 1] = t
                i += 1
        elif i < n:
            sort_base = self.timers
            sort_prio = self.prio
            qsort(self.scratch, n, sizeof(Timer*), _cmp_timers)
        # The due batch is empty here (advance drained it): link the batch in order.
        prev = NIL
        for i in range(n):
            t = self.scratch[i]
            idx = <uint32_t>(t - self.timers)
            _set_where(t, W_DUE)
            t.prev = prev
            t.next = NIL
            if prev == NIL:
                self.due_head = idx
            else:
                self.timers[prev].next = idx
            prev = idx
        self.due_tail = prev
        if self.scratch_cap > 65536:  # do not keep a huge buffer after a huge batch
            PyMem_RawFree(self.scratch)
            self.scratch = NULL
            self.scratch_cap = 0
        return 1


# -- a recovery's refill --------------------------------------------------------------

cdef double C_MAX_AHEAD = _MAX_AHEAD
cdef tuple REFILL_SLOTS = ("_engine", "state", "_after", "_due_wall", "task", "priority", "_due_tick", "_timer", "id", "key")
cdef object refill_class = None  # the job class whose slot offsets refill_at holds (None: not learnt yet)
cdef Py_ssize_t refill_at[10]  # each REFILL_SLOTS name's offset in refill_class's instances
cdef object refill_refused = None  # the last class whose slots could not be learnt: not tried again each job


cdef bint _learn_refill(object kind) except -1:
    """The offsets of ``kind``'s REFILL_SLOTS, if each is a plain object slot; else False."""
    global refill_class, refill_refused
    cdef Py_ssize_t i
    cdef Py_ssize_t offsets[10]
    if kind is refill_refused:
        return False
    for i in range(10):
        offsets[i] = cw_member_offset(getattr(kind, REFILL_SLOTS[i], None))
        if offsets[i] < 0:
            refill_refused = kind
            return False
    for i in range(10):
        refill_at[i] = offsets[i]
    refill_class = kind
    return True


def refill(
    list jobs,
    Py_ssize_t start,
    object owner,
    double now,
    double since_epoch,
    double rate,
    dict wheels,
    dict indexed,
    dict keyed,
):
    """``chronowheel._refill.refill`` in C: file a recovery's waiting jobs from ``start``, no Python call each.

    The same steps, in the same order, to the bit (the tick is the same
    double arithmetic, then ``ceil``); the index of the first job it leaves
    to the caller: one not pending or failed, waiting for parents, of a task
    whose wheel is not a ``TimerWheel``, or with a field of an unusual type.
    """
    cdef Py_ssize_t index, count = len(jobs)
    cdef PyObject* slot
    cdef PyObject* wheel
    cdef double due, seconds, tick
    cdef int overflow = 0
    cdef long long priority
    cdef object due_tick, handle
    for index in range(start, count):
        job = jobs[index]
        if type(job) is not refill_class and not _learn_refill(type(job)):
            return index
        slot = cw_get_slot(job, refill_at[1])  # state: pending or failed (a retry's), as the Python loop's else
        if slot == NULL or not PyUnicode_CheckExact(<object>slot):
            return index
        if not (<str>slot == "pending" or <str>slot == "failed"):
            return index
        if cw_get_slot(job, refill_at[2]) != <PyObject*>None:  # _after: waits for its parents
            return index
        slot = cw_get_slot(job, refill_at[3])  # _due_wall
        if slot == NULL or not cw_small_number(<object>slot, &due):
            return index
        slot = cw_get_slot(job, refill_at[4])  # task
        if slot == NULL or not PyUnicode_CheckExact(<object>slot):
            return index
        wheel = cw_dict_get(wheels, <object>slot)
        if wheel == NULL or cw_type(wheel) != <PyObject*>TimerWheel:
            return index
        slot = cw_get_slot(job, refill_at[5])  # priority, negated in the wheel
        if slot == NULL or not PyLong_CheckExact(<object>slot):
            return index
        priority = PyLong_AsLongLongAndOverflow(<object>slot, &overflow)
        if overflow or not -TICK_MAX <= priority <= TICK_MAX:
            return index
        if cw_get_slot(job, refill_at[8]) == NULL:  # id
            return index
        seconds = due - now
        seconds = 0.0 if seconds < 0.0 else C_MAX_AHEAD if seconds > C_MAX_AHEAD else seconds
        tick = ceil((since_epoch + seconds) * rate)
        if not -9.2e18 < tick < 9.2e18:  # within int64: the Python loop says what is wrong
            return index
        cw_put_slot(job, refill_at[0], <PyObject*>owner)
        due_tick = <int64_t>tick
        cw_put_slot(job, refill_at[6], <PyObject*>due_tick)
        handle = (<TimerWheel><object>wheel)._add(<int64_t>tick, -priority, job)
        cw_put_slot(job, refill_at[7], <PyObject*>handle)
        indexed[<object>cw_get_slot(job, refill_at[8])] = job
        slot = cw_get_slot(job, refill_at[9])  # key
        if slot != NULL and slot != <PyObject*>None:
            cw_dict_setdefault(keyed, <object>slot, job)
    return count



# -- the engine's volatile timers ---------------------------------------------------

cdef enum:
    MAX_CORES = 65536

cdef uint64_t CANCELLED = <uint64_t>1 << 63  # TimerHandle.seq: cancel() was called
cdef uint64_t SEQ = ~CANCELLED
cdef double C_MAX_DELAY = _MAX_DELAY
cdef PyObject* cores[MAX_CORES]  # every live TimerCore by its id (borrowed: a core clears its entry); 0: none
cdef uint32_t next_core = 1


cdef str _delay_refused(object delay):
    return f"delay must be a number of seconds up to {_MAX_DELAY:g} (0 or less: due now), got {delay!r}"


cdef inline TimerCore _core_of(TimerHandle handle):
    """The handle's core, or None if that engine is gone (a function, not a method: no vtable in the handle)."""
    cdef PyObject* core = cores[handle.core]
    return None if core == NULL else <TimerCore>core


@cython.final
@cython.auto_pickle(False)
@cython.binding(False)
@cython.always_allow_keywords(False)
cdef class TimerHandle:
    """A volatile timer from ``call_later``/``call_at``, used as asyncio's ``TimerHandle``.

    Sixteen bytes of state and no reference, so the cyclic GC does not track
    it and a million of them cost a collection nothing: the timer's slab index
    and sequence number, and its engine's ``TimerCore`` by a small id. A handle
    does not keep its engine alive; once the engine is gone it names no timer.
    """

    cdef uint64_t seq  # the timer's sequence number; the CANCELLED bit once cancel() was called
    cdef uint32_t idx
    cdef uint32_t core

    def cancel(self):
        """Stop the timer; True if it was still pending."""
        cdef TimerCore core = _core_of(self)
        if core is None:
            self.seq |= CANCELLED
            return False
        if core.guard:
            core._check("cancel")
        self.seq |= CANCELLED
        cdef uint32_t idx = core.wheel._pending(self.idx, self.seq & SEQ)
        if idx == NIL:
            return False
        core.wheel._drop(idx)
        return True

    def reschedule(self, delay):
        """Move the timer to ``delay`` seconds from now (the session-expiry touch); True if pending.

        Moving it later is O(1) and lazy; the wheel re-files it only when its
        old slot comes due. A ``delay`` of 0 or less is due now.
        """
        cdef TimerCore core = _core_of(self)
        if core is None:
            return False
        cdef int64_t tick = core._after(delay)
        if core.guard:
            core._check("reschedule")
        cdef uint32_t idx = core.wheel._pending(self.idx, self.seq & SEQ)
        if idx == NIL:
            return False
        core.wheel._move(idx, tick)
        if tick < core.sleep_tick:
            core._wake()
        return True

    def when(self):
        """The time on the engine clock the timer is due at (its deadline's tick), or None once it is not pending."""
        cdef TimerCore core = _core_of(self)
        if core is None:
            return None
        cdef uint32_t idx = core.wheel._pending(self.idx, self.seq & SEQ)
        if idx == NIL:
            return None
        return core.epoch + core.wheel.timers[idx].deadline / core.rate

    def cancelled(self):
        """True once :meth:`cancel` was called, as asyncio's (whether or not the timer had fired)."""
        return self.seq & CANCELLED != 0

    def __repr__(self):
        if self.seq & CANCELLED:
            return "<TimerHandle cancelled>"
        when = self.when()
        return "<TimerHandle done>" if when is None else f"<TimerHandle when={when!r}>"


@cython.final
@cython.auto_pickle(False)
@cython.binding(False)
@cython.no_gc_clear  # its wheel stays set until it is freed: a handle's finalizer may still reach it
cdef class TimerCore:
    """One engine's volatile timers: ``call_later``, ``call_at``, and the fire loop, in C.

    Bound at engine construction, ``engine.call_later`` is :meth:`call_later`
    itself: no Python frame in between. The clock is read in C when it is
    ``time.monotonic`` (the system clock), else by calling ``time``.
    ``sleep_tick`` is the tick the driver sleeps until: filing anything
    earlier calls ``wake()``. While ``guard`` is up (the engine is stopped,
    sync jobs run in threads, or the loop is in debug mode) every call first
    asks ``check(name)``, which raises if the caller may not make it.
    """

    cdef readonly TimerWheel wheel
    cdef public int64_t sleep_tick
    cdef public bint guard
    cdef readonly double epoch
    cdef readonly double rate
    cdef object _time  # the clock's time(), or None: read in C
    cdef object _wake_call
    cdef object _check_call
    cdef uint32_t id
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        global next_core
        cdef uint32_t tries
        for tries in range(MAX_CORES):
            if next_core >= MAX_CORES:
                next_core = 1
            if cores[next_core] == NULL:
                self.id = next_core
                cores[next_core] = <PyObject*>self
                next_core += 1
                break
            next_core += 1
        else:
            raise RuntimeError(f"at most {MAX_CORES - 1} engines can be alive at once")
        self.wheel = TimerWheel()
        self.wheel.cored = True
        self.sleep_tick = -1

    def __init__(self, time, double epoch, double rate, wake, check):
        self._time = None if CW_HAVE_MONOTONIC and time is _monotonic else time
        self.epoch = epoch
        self.rate = rate
        self._wake_call = wake
        self._check_call = check

    def __dealloc__(self):
        if self.id and cores[self.id] == <PyObject*>self:
            cores[self.id] = NULL

    @property
    def quiet(self):
        """True while the driver runs: the collector is not shown the wheel's payloads.

        While its engine's driver runs, everything the wheel holds is reachable
        from the running loop (the driver's alarm or its task), so no cycle
        through it can be garbage: walking a million payloads at every
        collection would find nothing. The driver clears it as it ends (stop(),
        or the loop cancelling it), so a dropped engine is collected as usual.
        """
        return self.wheel.quiet

    @quiet.setter
    def quiet(self, bint value):
        self.wheel.quiet = value

    def time(self):
        """The engine clock, as the core reads it."""
        return self._now()

    cdef double _now(self) except? -1.0:
        if self._time is None:
            return cw_monotonic()
        return PyFloat_AsDouble(self._time())

    cdef int _check(self, str call) except -1:
        self._check_call(call)
        return 0

    cdef int _wake(self) except -1:
        self._wake_call()
        return 0

    cdef int64_t _after(self, object delay) except? -1:
        """The tick ``delay`` seconds from now; ``delay`` checked, the messages of ``chronowheel._limits``."""
        cdef double d
        if not cw_small_number(delay, &d):
            return self._after_any(delay)
        if d != d or d > C_MAX_DELAY or d == -INFINITY:
            raise ValueError(_delay_refused(delay))
        if d < 0:
            d = 0.0
        return <int64_t>ceil((self._now() - self.epoch + d) * self.rate)

    cdef int64_t _after_any(self, object delay) except? -1:
        """``_after`` for what is not a float or a small int: Python's arithmetic, as the pure twin."""
        try:
            if not -math.inf < delay <= _MAX_DELAY:
                raise ValueError(_delay_refused(delay))
            if delay is True or delay is False:
                raise TypeError
            if delay < 0:
                delay = delay * 0  # due now, in its own type: what does not mix with floats still fails below
            return math.ceil((self._now() - self.epoch + delay) * self.rate)
        except (TypeError, ArithmeticError):
            raise TypeError(f"delay must be a number of seconds, got {type(delay).__name__}") from None

    cdef int64_t _at(self, object when) except? -1:
        """The tick of time ``when`` on the engine clock; ``when`` checked."""
        cdef double w
        if not cw_small_number(when, &w):
            return self._at_any(when)
        if not (w > -INFINITY and w <= self._now() + C_MAX_DELAY):
            raise ValueError(
                f"when must be a finite time on the engine clock at most {_MAX_DELAY:g}s ahead, got {when!r}"
            )
        # Far in the past is due at once, as at the engine's first tick: no tick count overflows.
        return <int64_t>ceil((w - self.epoch) * self.rate) if w > self.epoch else 0

    cdef int64_t _at_any(self, object when) except? -1:
        try:
            if not -math.inf < when <= self._now() + _MAX_DELAY:
                raise ValueError(
                    f"when must be a finite time on the engine clock at most {_MAX_DELAY:g}s ahead, got {when!r}"
                )
            if when is True or when is False:
                raise TypeError
            return math.ceil((when - self.epoch) * self.rate) if when > self.epoch else 0
        except (TypeError, ArithmeticError):
            raise TypeError(f"when must be a number, got {type(when).__name__}") from None

    def call_later(self, delay, callback, *args):
        """Call ``callback(*args)`` after ``delay`` seconds (0 or less: due now); never journaled."""
        cdef int64_t tick = self._after(delay)
        if self.guard:
            self._check("call_later")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        # The payload is the callback itself when there are no args: nothing allocated.
        return self._file(tick, (callback, args) if args else callback)

    def call_at(self, when, callback, *args):
        """Call ``callback(*args)`` when the engine clock reaches ``when``; never journaled.

        A ``when`` in the past is due at once; one more than ``MAX_DELAY``
        seconds ahead is refused, as that delay is by ``call_later``.
        """
        cdef int64_t tick = self._at(when)
        if self.guard:
            self._check("call_at")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        return self._file(tick, (callback, args) if args else callback)

    def file(self, int64_t tick, payload):
        """File a callable (or ``(callable, args)``) at ``tick``: the engine's own timers (job timeouts)."""
        return self._file(tick, payload)

    cdef TimerHandle _file(self, int64_t tick, object payload):
        cdef TimerWheel wheel = self.wheel
        wheel._reserve()
        cdef TimerHandle handle = TimerHandle.__new__(TimerHandle)  # before the change: it may fail
        handle.idx = wheel._insert(tick, 0, payload)
        handle.seq = last_seq
        handle.core = self.id
        if tick < self.sleep_tick:
            self._wake()
        return handle

    def fire(self, now, Py_ssize_t limit, loop, counts):
        """Call the callbacks of up to ``limit`` timers due by tick ``now``, in order; how many ran.

        As asyncio's ``Handle._run``: SystemExit and KeyboardInterrupt go on
        to the caller (the rest of the batch stays due in the wheel), anything
        else a callback raises goes to ``loop``'s exception handler. Each
        timer is taken out of the wheel just before its call, so a callback
        may still cancel or move those after it. ``counts["fired"]`` grows by
        the number called.
        """
        cdef int64_t until
        if not cw_small_int(now, &until):
            until = _tick(now, "now")
        cdef Py_ssize_t n = 0
        cdef PyObject* p
        cdef object payload
        try:
            while n < limit and self.wheel._pop_due(until, &p):
                payload = <object>p
                cw_decref(p)
                n += 1
                try:
                    if PyTuple_CheckExact(payload):
                        (<tuple>payload)[0](*(<tuple>(<tuple>payload)[1]))
                    else:
                        payload()
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    loop.call_exception_handler(
                        {"message": f"chronowheel: timer callback {payload!r} raised", "exception": exc}
                    )
        finally:
            counts["fired"] += n
        return n


@cython.final
@cython.auto_pickle(False)
cdef class _Task:
    """What the job path reads of a registered task, read once: its spec's counts, name and priority, its wheel."""

    cdef object counts
    cdef object name
    cdef object priority
    cdef object wheel
    cdef bint native  # the wheel is a TimerWheel and -priority an int64: filed by ``TimerWheel._add``
    cdef int64_t negated
    # A journaled engine's: a new job's record around its id, args and due (``JobPath._record``); None: the dict's.
    cdef bytes middle  # ``","task":<name>,"args":``
    cdef bytes tail  # ``,"prio":<priority>,"att":<attempt>,"state":<state>}``

    def __init__(self, spec, wheel):
        cdef int64_t p = 0
        self.counts = spec.counts
        self.name = spec.name
        self.priority = spec.priority
        self.wheel = wheel
        self.native = type(wheel) is TimerWheel and cw_small_int(self.priority, &p)
        self.negated = -p


cdef tuple OPTION = ("option",)  # the keyword names of a call to orjson.dumps
cdef tuple LOOP = ("loop",)  # of a call to asyncio.Future
cdef bytes RECORD_HEAD = b'{"t":"job","id":"'
cdef bytes RECORD_DUE = b',"kwargs":{},"due":'

cdef enum:
    ID_BATCH = 4096  # ids made at a time (``_job._ID_BATCH``)


cdef const char* HEX = b"0123456789abcdef"


cdef object _new_ids(list ids):
    """``_job.new_job_id`` in C: ``ids`` (the pool) refilled from one ``os.urandom`` read, one of them taken.

    Each id is 32 hex digits written into its str (a slice of one long hex
    str per id, in Python, was a fifth of an in-memory ``schedule_nowait``).
    """
    data = _urandom(16 * ID_BATCH)
    cdef const unsigned char* raw = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef char* out
    cdef Py_ssize_t i, j
    for i in range(ID_BATCH):
        job_id = PyUnicode_New(32, 127)
        out = <char*>PyUnicode_DATA(job_id)
        for j in range(16):
            out[2 * j] = HEX[raw[16 * i + j] >> 4]
            out[2 * j + 1] = HEX[raw[16 * i + j] & 15]
        ids.append(job_id)
    return ids.pop()


cdef inline char* _put(char* at, const char* data, Py_ssize_t size) noexcept:
    memcpy(at, data, size)
    return at + size


cdef bint _hex_id(object job_id) except -1:
    """True if ``job_id`` is an exact str of hex digits (every id the pool hands out): JSON holds it as it is."""
    if not PyUnicode_CheckExact(job_id) or not PyUnicode_IS_COMPACT_ASCII(job_id):
        return False
    cdef const char* data = <const char*>PyUnicode_DATA(job_id)
    cdef Py_ssize_t i
    for i in range(PyUnicode_GET_LENGTH(job_id)):
        if not (48 <= data[i] <= 57 or 97 <= data[i] <= 102):  # 0-9, a-f
            return False
    return True


cdef bint _json_atoms(object args) except -1:
    """True if every item of ``args`` (a tuple or a list) is an exact str, bool, None, small int or finite float.

    Those come back from the journal as themselves, so the durable path
    needs no exactness walk; anything else takes the checked call.
    """
    cdef Py_ssize_t i, n = len(args)
    cdef PyObject* item
    cdef PyObject* kind
    cdef int64_t small
    cdef double number
    for i in range(n):
        item = cw_sequence_item(args, i)
        kind = cw_type(item)
        if kind == <PyObject*>str or item == <PyObject*>None or item == <PyObject*>True or item == <PyObject*>False:
            continue
        if kind == <PyObject*>float:
            number = PyFloat_AsDouble(<object>item)
            if number - number != 0.0:  # NaN or an infinity
                return False
            continue
        if not cw_small_int(<object>item, &small):
            return False
    return True


@cython.final
@cython.auto_pickle(False)
@cython.binding(False)
cdef class JobPath:
    """An in-memory engine's ``schedule_nowait`` for the usual call, in C; bound in the method's place.

    The usual call: a registered task (by name, an exact str, or by function),
    ``args`` a tuple or list of a count the task takes, ``delay`` an int or
    float from 0 to ``MAX_DELAY``, ``key`` None or a str no pending job holds,
    and nothing else, from the loop's thread while the core's guard is down.
    It files the job the Python method would, to the bit
    (``tests/test_job_path.py`` compares the two). Every other call goes to
    ``checked`` (``Engine.schedule_nowait`` itself) unchanged, before anything
    changed: it words the errors and does the rest.

    No Python frame at all: rather than call ``Job`` (its ``__init__`` was a
    quarter of the cost), each job is a copy of a template that ``Job`` built,
    with the arguments in their slots. What goes where is learnt at
    construction from two templates built with different stand-ins: each
    argument's slot is where its stand-in landed, and every other slot must
    hold the same object in both (``attempt``, ``state``, the Nones). A job
    class that does anything else (a dict, a derived field, a ``__new__``) is
    called as usual instead (``cloning`` is then False).
    """

    cdef TimerCore core
    cdef object timers  # its ``loop_thread``: None until the engine starts (once: an engine starts once)
    cdef bint bound  # it was set, to:
    cdef unsigned long thread
    cdef object engine  # each job's ``_engine``
    cdef object checked
    cdef object job
    cdef list ids
    cdef object wall  # the clock's wall(), or None: read in C
    cdef dict tasks
    cdef dict by_function
    cdef dict jobs
    cdef dict keyed
    cdef dict pools
    cdef dict known  # TaskSpec -> _Task (a spec never changes: re-registering a task makes a new one)
    cdef object template  # a job Job.__init__ built: what the slots no argument fills start as
    cdef readonly bint cloning
    cdef Layout layout  # which slot is which (``_template.pxd``)
    cdef Py_ssize_t engine_at
    cdef Py_ssize_t timer_at
    # A journaled engine's (``durable``, ``JournalStore.new_records``), else None: the store and its journal, the
    # journal's outbox, orjson's ``dumps`` and its option, the largest new record, what the template's ``attempt``
    # and ``state`` are (a new job's record says them).
    cdef object store  # its ``live``, read at each call (recovery replaces it)
    cdef object journal  # its ``_failure`` (then the method raises) and ``_loop`` (a commit's future's)
    cdef list pending  # the journal's outbox: the records in order, and the commits' futures and jobs
    cdef list batch
    cdef object hand_over
    cdef object call_soon  # the loop's
    cdef Py_ssize_t handover_max
    cdef object loop
    cdef object future  # asyncio.Future
    cdef object dumps
    cdef object option
    cdef Py_ssize_t limit
    cdef object attempt
    cdef object state
    cdef object scheduled  # ``Engine.schedule``, bound: every call the usual one is not
    cdef bint journaled  # ``durable`` was given

    def __init__(
        self, engine, checked, TimerCore core, timers, job, list ids, wall, registry, scheduled, durable=None
    ):
        self.engine = engine
        self.checked = checked
        self.scheduled = scheduled
        self.core = core
        self.timers = timers
        self.bound = False
        self.thread = 0
        self.job = job
        self.ids = ids
        self.wall = None if CW_HAVE_MONOTONIC and wall is _wall else wall
        self.tasks = registry.tasks
        self.by_function = registry.by_function
        self.jobs = registry.jobs
        self.keyed = registry.keyed
        self.pools = registry.pools
        self.known = {}
        self.cloning = self._learn(job)
        self.journaled = durable is not None
        if durable is not None:
            self.store, self.journal, self.dumps, self.option, self.limit = durable
            self.pending, self.batch, self.hand_over, self.handover_max = self.journal.outbox()
            self.future = _Future
            if self.cloning:
                self.attempt = self.template.attempt
                self.state = self.template.state

    cdef bint _learn(self, job) except -1:
        """Whether jobs can be copies of a template (``_template.pxd``) whose ``_engine`` and ``_timer`` are None."""
        offsets = {}
        template = learn_layout(job, &self.layout, offsets)
        if template is None:
            return False
        for name in ("_engine", "_timer"):
            if name not in offsets:
                return False
            at = offsets[name]
            if not is_field(&self.layout, at) or cw_get_slot(template, at) != <PyObject*>None:
                return False
        self.template = template
        self.engine_at = offsets["_engine"]
        self.timer_at = offsets["_timer"]
        return True

    def schedule_nowait(self, task, *extra, args=(), delay=None, key=None, **options):
        """``Engine.schedule_nowait``: the same arguments, the same job (and with a journal, the same record)."""
        if not extra and not options:
            job = self._file(task, args, delay, key, False)
            if job is not None:
                return job
        return self.checked(task, *extra, args=args, delay=delay, key=key, **options)

    @cython.binding(True)  # a CyFunction: asyncio.iscoroutinefunction() says yes, as for Engine.schedule (Starlette asks)
    async def schedule(self, task, *extra, args=(), delay=None, key=None, **options):
        """``Engine.schedule``: a coroutine too, run in C; the job, once its record is durable (with a journal)."""
        if not extra and not options:
            filed = self._file(task, args, delay, key, True)
            if filed is not None:
                if not self.journaled:
                    return filed
                return await filed
        return await self.scheduled(task, *extra, args=args, delay=delay, key=key, **options)

    cdef inline object _file(self, task, args, delay, key, bint awaited):
        """The usual call's job, filed (and with a journal, recorded); None for any other call, nothing changed.

        ``awaited`` (a journal's ``schedule()``): a future of the job, done once its record is durable.
        """
        cdef PyObject* found = NULL
        cdef double seconds
        cdef int64_t tick
        if self.core.guard or not self._usual(task, args, delay, key, &found, &seconds):
            return None
        cdef _Task spec = <_Task>found
        ids = self.ids
        job_id = ids.pop() if ids else _new_ids(ids)
        core = self.core
        tick = <int64_t>ceil((core._now() - core.epoch + seconds) * core.rate)
        wall = cw_realtime() if self.wall is None else PyFloat_AsDouble(self.wall())
        job_args = tuple(args)
        due_wall = wall + seconds
        if self.journaled:
            payload = self._record(job_id, key, spec, job_args, due_wall)
            if payload is None:  # orjson refused it (a str it cannot encode), or it is too large: the method says so
                ids.append(job_id)
                return None
        if self.cloning:
            job = self._clone(job_id, key, spec.name, job_args, {}, spec.priority, due_wall, tick)
        else:
            job = self.job(job_id, key, spec.name, job_args, {}, spec.priority, due_wall, tick)
            job._engine = self.engine
        durable = None
        if self.journaled:  # before the wheel (``_usual`` saw the journal sound)
            durable = self._journal_it(job_id, job, payload, awaited)
        if spec.native:
            handle = (<TimerWheel>spec.wheel)._add(tick, spec.negated, job)
        else:
            handle = spec.wheel.add(tick, job, -spec.priority)
        if self.cloning:
            cw_put_slot(job, self.timer_at, <PyObject*>handle)
        else:
            job._timer = handle
        self.jobs[job_id] = job
        if key is not None:
            cw_dict_setdefault(self.keyed, key, job)
        if tick < core.sleep_tick:
            core._wake()
        return job if durable is None else durable

    cdef object _journal_it(self, job_id, job, payload, bint awaited):
        """The store's ``recorded`` and, ``awaited``, the journal's ``durable`` of the job: its future, else None.

        What :meth:`Journal.append` and :meth:`Journal.durable` do, on the
        same lists (one outbox, so records keep their order whichever path
        appended them); the commit joins the batch before any hand-over.
        """
        cdef PyObject* call[1]
        cdef dict live = self.store.live
        live[job_id] = job
        pending = self.pending
        pending.append(payload)
        future = None
        if awaited:
            call[0] = <PyObject*>self.loop
            future = cw_vectorcall(self.future, call, 0, LOOP)  # asyncio.Future(loop=loop)
            self.batch.append(future)
            self.batch.append(job)
        if len(pending) == 1:
            self.call_soon(self.hand_over)  # at the end of the turn
        elif len(pending) >= self.handover_max:
            self.hand_over()
        return future

    cdef object _record(self, job_id, key, _Task spec, args, due_wall):
        """The new job's ``job`` record, as ``encode_job(job, new=True)`` encodes it; None if that would raise.

        Without a key, orjson encodes only ``[args, due]`` and the record is
        laid out around it (the task's parts encoded once): the dict's bytes,
        to the byte (``tests/test_native_durable_path.py`` compares them).
        """
        if key is None and spec.middle is not None and _hex_id(job_id):
            return self._spliced(job_id, spec, args, due_wall)
        record = {
            "t": "job",
            "id": job_id,
            "task": spec.name,
            "args": args,
            "kwargs": {},
            "due": due_wall,
            "prio": spec.priority,
            "att": self.attempt,
            "state": self.state,
        }
        if key is not None:
            record["key"] = key
        cdef PyObject* call[2]
        call[0] = <PyObject*>record
        call[1] = <PyObject*>self.option
        try:
            payload = cw_vectorcall(self.dumps, call, 1, OPTION)  # dumps(record, option=...), no dict of keywords
        except TypeError:  # orjson.JSONEncodeError
            return None
        if len(payload) > self.limit:
            return None
        return payload

    cdef object _spliced(self, job_id, _Task spec, args, due_wall):
        cdef PyObject* call[2]
        pair = [args, due_wall]
        call[0] = <PyObject*>pair
        call[1] = <PyObject*>self.option
        try:
            encoded = cw_vectorcall(self.dumps, call, 1, OPTION)  # b'[<args>,<due>]'
        except TypeError:  # orjson.JSONEncodeError
            return None
        cdef const char* data = PyBytes_AS_STRING(encoded)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(encoded), comma = size - 2
        while comma > 0 and data[comma] != b',':  # the due's digits hold none
            comma -= 1
        cdef Py_ssize_t id_size = PyUnicode_GET_LENGTH(job_id)
        cdef Py_ssize_t total = (
            len(RECORD_HEAD) + id_size + len(spec.middle) + comma - 1 + len(RECORD_DUE) + size - comma - 2 + len(spec.tail)
        )
        if total > self.limit:
            return None
        payload = PyBytes_FromStringAndSize(NULL, total)
        cdef char* at = PyBytes_AS_STRING(payload)
        at = _put(at, PyBytes_AS_STRING(RECORD_HEAD), len(RECORD_HEAD))
        at = _put(at, <const char*>PyUnicode_DATA(job_id), id_size)
        at = _put(at, PyBytes_AS_STRING(spec.middle), len(spec.middle))
        at = _put(at, data + 1, comma - 1)
        at = _put(at, PyBytes_AS_STRING(RECORD_DUE), len(RECORD_DUE))
        at = _put(at, data + comma + 1, size - comma - 2)
        _put(at, PyBytes_AS_STRING(spec.tail), len(spec.tail))
        return payload

    cdef object _clone(self, job_id, key, name, args, kwargs, priority, due_wall, due_tick):
        """A new job, as ``Job(...)`` would build it, with ``_engine`` set: the template's copy."""
        job = copy_template(
            self.job, &self.layout, self.template, job_id, key, name, args, kwargs, priority, due_wall, due_tick
        )
        cw_put_slot(job, self.engine_at, <PyObject*>self.engine)
        return job

    cdef bint _usual(self, task, args, delay, key, PyObject** spec, double* seconds) except -1:
        """True for the usual call, its task's ``_Task`` and its seconds in ``spec`` and ``seconds``; nothing changed."""
        if not self.bound:
            loop_thread = self.timers.loop_thread
            if loop_thread is not None:
                self.thread = loop_thread
                self.bound = True
        if self.bound and cw_thread_ident() != self.thread:
            return False
        if PyUnicode_CheckExact(task):
            spec[0] = cw_dict_get(self.tasks, task)
        else:
            try:
                spec[0] = cw_dict_get(self.by_function, task)
            except TypeError:  # unhashable: the checked call says what was passed
                return False
        if spec[0] == NULL:
            return False
        found = <object>spec[0]
        spec[0] = cw_dict_get(self.known, found)
        if spec[0] == NULL:
            self.known[found] = entry = _Task(found, self.pools[found.pool].wheel)
            if self.journaled and self.cloning:
                self._encode_parts(entry)
            spec[0] = <PyObject*>entry
        if not PyTuple_CheckExact(args) and not PyList_CheckExact(args):
            return False
        if not cw_set_contains((<_Task>spec[0]).counts, len(args)):
            return False
        if key is not None and (not PyUnicode_CheckExact(key) or not key or key in self.keyed):
            return False
        if not cw_small_number(delay, seconds):
            return False
        if not 0 <= seconds[0] <= C_MAX_DELAY:  # NaN is not
            return False
        if not self.journaled:
            return True
        # A journaled engine's: started (its jobs recovered, its writer running), its journal sound, jobs cloned,
        # args that JSON gives back as themselves.
        if self.loop is None:
            self.loop = self.journal._loop
            if self.loop is not None:
                self.call_soon = self.loop.call_soon
        return (
            self.bound and self.loop is not None and self.journal._failure is None and self.cloning and _json_atoms(args)
        )

    cdef int _encode_parts(self, _Task entry) except -1:
        """The task's parts of its jobs' records (``_Task.middle``, ``tail``); left None if orjson refuses them."""
        cdef PyObject* call[2]
        call[1] = <PyObject*>self.option
        parts = []
        for value in (entry.name, entry.priority, self.attempt, self.state):
            call[0] = <PyObject*>value
            try:
                parts.append(cw_vectorcall(self.dumps, call, 1, OPTION))
            except TypeError:
                return 0
        entry.middle = b'","task":' + parts[0] + b',"args":'
        entry.tail = b',"prio":' + parts[1] + b',"att":' + parts[2] + b',"state":' + parts[3] + b"}"
        return 0


# -- garbage collection ----------------------------------------------------------
# Cython only emits traverse/clear for object attributes (hence _gc_anchor);
# the payloads live in the C slab, so the type gets its own pair.

cdef int _traverse(PyObject* o, visitproc visit, void* arg) noexcept:
    cdef TimerWheel wheel = <TimerWheel><object>o
    cdef uint32_t i
    cdef int rc
    cdef PyObject* p
    if wheel.hidden is not None:
        rc = visit(<PyObject*>wheel.hidden, arg)
        if rc:
            return rc
    if wheel.quiet:
        return 0
    for i in range(wheel.used):
        p = wheel.timers[i].payload
        if p != NULL:
            rc = visit(p, arg)
            if rc:
                return rc
    return 0


cdef int _clear(PyObject* o) noexcept:
    cdef TimerWheel wheel = <TimerWheel><object>o
    wheel._release_all()
    wheel.hidden = None
    return 0


(<_TypeSlots*><PyObject*>TimerWheel).tp_traverse = _traverse
(<_TypeSlots*><PyObject*>TimerWheel).tp_clear = _clear
# The package re-homes its public classes to ``chronowheel``; a static type's
# module comes from its tp_name, so say it here (its __module__ is read-only).
(<_TypeSlots*><PyObject*>TimerWheel).tp_name = b"chronowheel.TimerWheel"
(<_TypeSlots*><PyObject*>TimerHandle).tp_name = b"chronowheel.TimerHandle"
