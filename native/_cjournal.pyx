# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, autotestdict=False
# distutils: libraries = z
"""The journal decoder's three per-record loops in C: what a recovery spends its time in.

Each is the twin of a Python loop that stays the reference and the fallback
(``CHRONOWHEEL_NO_EXTENSIONS=1``, or no compiler): tests/test_native_decoder.py
holds each pair alike, verdicts and reasons byte for byte.

* :func:`walk` -- ``chronowheel._journal.format.walk_frames``: version-2 frames
  out of a buffer (length, CRC, record number), each payload decoded by the
  reader below, or by ``orjson.loads`` where the reader gives up.
* :func:`sound_jobs` -- ``chronowheel._journal.schema.sound_jobs_py``: the
  usual ``job`` record's schema, accepted in C; anything else is left to the
  Python check, which decides and words the fault. So this can only pass
  fewer records on to that check, never change a verdict.
* :class:`PlainJobs` -- ``chronowheel._journal.replay.PlainJobsPy``: a one-shot
  pending job's record replayed into its ``Job`` (a copy of a template ``Job``
  built, as ``_cwheel.JobPath`` does), and ``cancel``/``ack`` records; the
  rest goes back to the Python replay.

The reader (``cj_read``, :func:`read` for the tests) decodes the JSON that
``orjson.dumps`` writes of the usual record, in one pass and without a call:
what it returns is what ``orjson.loads`` returns (same types, key order,
floats correctly rounded), and on anything else (escapes, non-ASCII text,
exponents, big numbers, whitespace, a repeated key) it gives up and orjson
decides. Its keys are interned, so the checks after it find them by identity.

The CRC is zlib's own ``crc32`` in C, linked with ``-lz`` (the library that
Python's ``zlib`` module wraps, so the same function and the same result,
without a Python call per record); the module's ``distutils: libraries``
line links it.
"""

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.dict cimport PyDict_CheckExact, PyDict_Next, PyDict_Size
from cpython.list cimport PyList_AsTuple, PyList_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact, PyLong_FromUnsignedLongLong
from cpython.ref cimport PyObject, Py_DECREF
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

import sys

import orjson

cdef extern from "zlib.h":
    unsigned long crc32(unsigned long crc, const unsigned char* buf, unsigned int len) nogil

cdef extern from "Python.h":
    PyObject* cj_dict_get "PyDict_GetItemWithError"(object d, object key) except? NULL  # borrowed
    object PyMemoryView_FromMemory(char* mem, Py_ssize_t size, int flags)
    int PyBUF_READ
    bint PyFloat_CheckExact(object o)
    void cj_untrack "PyObject_GC_UnTrack"(object o)
    double PyFloat_AS_DOUBLE(object o)

cdef extern from *:
    """
    #include "structmember.h"
    /* A tuple subclass's instance (a NamedTuple's) of three items, as tuple.__new__(cls, items) builds it. */
    static PyObject* cj_triple(PyObject* cls, PyObject* a, PyObject* b, PyObject* c) {
        PyTypeObject* t = (PyTypeObject*)cls;
        PyObject* o = t->tp_alloc(t, 3);
        if (o == NULL) return NULL;
        Py_INCREF(a); PyTuple_SET_ITEM(o, 0, a);
        Py_INCREF(b); PyTuple_SET_ITEM(o, 1, b);
        Py_INCREF(c); PyTuple_SET_ITEM(o, 2, c);
        return o;
    }
    static PyObject* cj_new_instance(PyObject* type) {
        PyTypeObject* t = (PyTypeObject*)type;
        return t->tp_alloc(t, 0);
    }
    static inline PyObject* cj_get_slot(PyObject* o, Py_ssize_t offset) {
        return *(PyObject**)((char*)o + offset);
    }
    static inline void cj_put_slot(PyObject* o, Py_ssize_t offset, PyObject* v) {  /* v (or NULL) into a slot */
        PyObject* old = *(PyObject**)((char*)o + offset);
        Py_XINCREF(v);
        *(PyObject**)((char*)o + offset) = v;
        Py_XDECREF(old);
    }
    static Py_ssize_t cj_member_offset(PyObject* d) {  /* a writable object slot's offset, or -1 */
        PyMemberDef* m;
        if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)) return -1;
        m = ((PyMemberDescrObject*)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
        return m->offset;
    }
    static inline uint32_t cj_u32(const char* p) { uint32_t v; memcpy(&v, p, 4); return v; }  /* little-endian hosts */
    static inline uint64_t cj_u64(const char* p) { uint64_t v; memcpy(&v, p, 8); return v; }
    #if PY_BIG_ENDIAN
    #error "chronowheel._cjournal reads little-endian frames in place: not built on big-endian hosts"
    #endif
    """
    object cj_triple(object cls, object a, object b, object c)
    object cj_new_instance(object type)
    PyObject* cj_get_slot(object o, Py_ssize_t offset) noexcept
    void cj_put_slot(object o, Py_ssize_t offset, PyObject* v) noexcept
    Py_ssize_t cj_member_offset(object d) noexcept
    uint32_t cj_u32(const char* p) noexcept nogil
    uint64_t cj_u64(const char* p) noexcept nogil


cdef extern from *:
    """
    /* A JSON reader for what orjson.dumps writes of the usual record: objects, arrays, ASCII strings without
       escapes, ints of up to 18 digits, floats of the form -?digits.digits with up to 17 digits, true, false,
       null, and no whitespace. On anything else it gives up (NULL, no error set) and the caller hands the
       payload to orjson.loads, which decides: so what it returns is what orjson.loads would, or nothing.
       Known keys and values (the records' field names, states, types) come back as one interned str each. */
    #define CJ_MAX_DEPTH 64
    #define CJ_MAX_KNOWN 48
    #define CJ_KNOWN_LENGTH 16  /* known strings are shorter */
    #define CJ_PER_LENGTH 12
    static PyObject* cj_known[CJ_KNOWN_LENGTH][CJ_PER_LENGTH];  /* by length: a few to compare, not all */
    static int cj_nknown[CJ_KNOWN_LENGTH];
    static int cj_set_known(PyObject* s) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        if (!PyUnicode_IS_COMPACT_ASCII(s) || n >= CJ_KNOWN_LENGTH || cj_nknown[n] >= CJ_PER_LENGTH) {
            PyErr_SetString(PyExc_ValueError, "not a short ASCII string, or too many of its length");
            return -1;
        }
        cj_known[n][cj_nknown[n]++] = s;
        return 0;
    }

    /* The bytes a string the reader takes may hold: printable ASCII but the quote and the backslash. */
    static unsigned char cj_plain[256];
    static void cj_init_plain(void) {
        int c;
        for (c = 0x20; c < 0x7f; c++) cj_plain[c] = c != '"' && c != '\\\\';
    }

    typedef struct { const unsigned char* p; const unsigned char* end; int depth; } cj_reader;
    static PyObject* cj_value(cj_reader* r);

    static PyObject* cj_string(cj_reader* r) {  /* r->p just past the opening quote */
        const unsigned char* start = r->p;
        const unsigned char* p = start;
        const unsigned char* end = r->end;
        Py_ssize_t n, i;
        PyObject* s;
        while (p < end && cj_plain[*p]) p++;
        if (p >= end || *p != '"') return NULL;  /* an escape, a control or non-ASCII character: orjson's */
        n = p - start;
        r->p = p + 1;
        if (n < CJ_KNOWN_LENGTH) {
            for (i = 0; i < cj_nknown[n]; i++) {
                PyObject* k = cj_known[n][i];
                if (*PyUnicode_1BYTE_DATA(k) == *start && memcmp(PyUnicode_1BYTE_DATA(k), start, (size_t)n) == 0) {
                    Py_INCREF(k);
                    return k;
                }
            }
        }
        s = PyUnicode_New(n, 127);
        if (s == NULL) return NULL;
        memcpy(PyUnicode_1BYTE_DATA(s), start, (size_t)n);
        return s;
    }

    /* m / 10**k, correctly rounded (k <= 17), in *out and 1; or 0: then dtoa decides. Clinger's fast path when m
       fits in a double's 53 bits (both operands exact, one rounding); else the quotient's double or a neighbour,
       whichever is proven, in 128-bit integers, to be within half an ulp of m / 10**k (ties to even). */
    static const double cj_tens[18] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
                                        1e14, 1e15, 1e16, 1e17};
    #if defined(__SIZEOF_INT128__)
    static const uint64_t cj_tens_exact[18] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
        10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL};
    static int cj_nearest(uint64_t m, int k, double c) {  /* is c the double nearest to m / 10**k? */
        int e, s;
        uint64_t M;
        unsigned __int128 lhs, mid, diff, half;
        double f = frexp(c, &e);  /* c = f * 2**e, f in [0.5, 1) */
        M = (uint64_t)ldexp(f, 53);  /* c = M * 2**(e - 53), M in [2**52, 2**53) */
        s = 54 - e;  /* 1 - (e - 53): c's half ulp is 2**(e - 54) */
        if (M == (1ULL << 52) || s <= 0 || s > 64) return 0;  /* a power of two rounds unevenly: dtoa */
        lhs = (unsigned __int128)m << s;  /* m / 10**k and c, both times 2**s * 10**k */
        mid = (unsigned __int128)(2 * M) * cj_tens_exact[k];
        diff = lhs > mid ? lhs - mid : mid - lhs;
        half = cj_tens_exact[k];
        return diff < half || (diff == half && (M & 1) == 0);
    }
    #endif
    static int cj_decimal(uint64_t m, int k, double* out) {
        double c;
        if (m <= (1ULL << 53)) { *out = (double)m / cj_tens[k]; return 1; }
    #if defined(__SIZEOF_INT128__)
        c = (double)m / cj_tens[k];
        if (cj_nearest(m, k, c)) { *out = c; return 1; }
        if (cj_nearest(m, k, nextafter(c, INFINITY))) { *out = nextafter(c, INFINITY); return 1; }
        if (cj_nearest(m, k, nextafter(c, 0.0))) { *out = nextafter(c, 0.0); return 1; }
    #endif
        (void)c;
        return 0;
    }

    static PyObject* cj_number(cj_reader* r) {
        const unsigned char* p = r->p;
        const unsigned char* end = r->end;
        const unsigned char* start = p;
        int negative = 0, digits = 0, fraction = 0;
        uint64_t value = 0;
        double d;
        char text[40];
        if (*p == '-') { negative = 1; p++; }
        if (p >= end || *p < '0' || *p > '9') return NULL;
        if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9') return NULL;  /* a leading zero */
        while (p < end && *p >= '0' && *p <= '9') {
            value = value * 10 + (uint64_t)(*p - '0'); p++;
            if (++digits > 18) return NULL;
        }
        if (p < end && (*p == 'e' || *p == 'E')) return NULL;
        if (p >= end || *p != '.') {
            if (negative && value == 0) return NULL;  /* -0: leave it to orjson */
            r->p = p;
            return PyLong_FromLongLong(negative ? -(long long)value : (long long)value);
        }
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') {
            value = value * 10 + (uint64_t)(*p - '0'); p++; fraction++;
            if (++digits > 17) return NULL;
        }
        if (p < end && (*p == 'e' || *p == 'E')) return NULL;
        r->p = p;
        if (!cj_decimal(value, fraction, &d)) {
            memcpy(text, start, (size_t)(p - start));
            text[p - start] = 0;
            d = PyOS_string_to_double(text, NULL, NULL);  /* correctly rounded, whatever the locale */
            if (d == -1.0 && PyErr_Occurred()) return NULL;
            return PyFloat_FromDouble(d);
        }
        return PyFloat_FromDouble(negative ? -d : d);
    }

    static PyObject* cj_array(cj_reader* r) {  /* r->p just past the '[' */
        PyObject* list = PyList_New(0);
        PyObject* item;
        if (list == NULL) return NULL;
        if (r->p < r->end && *r->p == ']') { r->p++; return list; }
        for (;;) {
            item = cj_value(r);
            if (item == NULL) { Py_DECREF(list); return NULL; }
            if (PyList_Append(list, item) < 0) { Py_DECREF(item); Py_DECREF(list); return NULL; }
            Py_DECREF(item);
            if (r->p >= r->end) { Py_DECREF(list); return NULL; }
            if (*r->p == ']') { r->p++; return list; }
            if (*r->p != ',') { Py_DECREF(list); return NULL; }
            r->p++;
        }
    }

    static PyObject* cj_object(cj_reader* r) {  /* r->p just past the '{' */
        PyObject* dict;
        PyObject* key;
        PyObject* item;
        Py_ssize_t pairs = 0;
        if (r->p < r->end && *r->p == '}') { r->p++; return PyDict_New(); }
        /* a record: room for a job record's fields, without a resize; a nested dict (kwargs) stays small */
        dict = r->depth == 1 ? _PyDict_NewPresized(10) : PyDict_New();
        if (dict == NULL) return NULL;
        for (;;) {
            if (r->p >= r->end || *r->p != '"') { Py_DECREF(dict); return NULL; }
            r->p++;
            key = cj_string(r);
            if (key == NULL) { Py_DECREF(dict); return NULL; }
            if (r->p >= r->end || *r->p != ':') { Py_DECREF(key); Py_DECREF(dict); return NULL; }
            r->p++;
            item = cj_value(r);
            if (item == NULL) { Py_DECREF(key); Py_DECREF(dict); return NULL; }
            if (PyDict_SetItem(dict, key, item) < 0) { Py_DECREF(key); Py_DECREF(item); Py_DECREF(dict); return NULL; }
            Py_DECREF(key);
            Py_DECREF(item);
            if (PyDict_GET_SIZE(dict) != ++pairs) { Py_DECREF(dict); return NULL; }  /* a repeated key */
            if (r->p >= r->end) { Py_DECREF(dict); return NULL; }
            if (*r->p == '}') { r->p++; return dict; }
            if (*r->p != ',') { Py_DECREF(dict); return NULL; }
            r->p++;
        }
    }

    static PyObject* cj_literal(cj_reader* r, const char* word, Py_ssize_t n, PyObject* value) {
        if (r->end - r->p < n || memcmp(r->p, word, (size_t)n) != 0) return NULL;
        r->p += n;
        Py_INCREF(value);
        return value;
    }

    static PyObject* cj_value(cj_reader* r) {
        PyObject* value;
        if (r->p >= r->end) return NULL;
        switch (*r->p) {
        case '"': r->p++; return cj_string(r);
        case '{': case '[':
            if (++r->depth > CJ_MAX_DEPTH) return NULL;
            value = *r->p++ == '{' ? cj_object(r) : cj_array(r);
            r->depth--;
            return value;
        case 't': return cj_literal(r, "true", 4, Py_True);
        case 'f': return cj_literal(r, "false", 5, Py_False);
        case 'n': return cj_literal(r, "null", 4, Py_None);
        default: return cj_number(r);
        }
    }

    /* The payload decoded, or NULL: with an error set, that error; without, orjson.loads must decide. */
    static PyObject* cj_read(const char* data, Py_ssize_t size) {
        cj_reader r;
        PyObject* value;
        r.p = (const unsigned char*)data;
        r.end = r.p + size;
        r.depth = 0;
        value = cj_value(&r);
        if (value != NULL && r.p != r.end) { Py_DECREF(value); return NULL; }
        if (value == NULL && PyErr_ExceptionMatches(PyExc_MemoryError) == 0) PyErr_Clear();
        return value;
    }
    """
    int cj_set_known(object s) except -1
    void cj_init_plain() noexcept
    PyObject* cj_read(const char* data, Py_ssize_t size) except? NULL

DEF FRAME = 16  # u32 crc | u32 length | u64 record number
DEF MAX_PAYLOAD = 1 << 26  # format.MAX_PAYLOAD: a longer length field is damage, not data
DEF TIME_MAX = 2000000000000  # schema.TIME_MAX (2e12 s), exactly
DEF PRIORITY_MAX = 0x7FFFFFFFFFFFFFFF  # schema.PRIORITY_MAX
DEF JOB_PARAMS = 8  # Job(id, key, task, args, kwargs, priority, due_wall, due_tick)
DEF MAX_JOB_FIELDS = 64

cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef object _ZERO = 0
# Strings the reader hands out as one interned object each: every field name of a record, and its usual values.
_KNOWN = tuple(
    sys.intern(text)
    for text in (
        "t", "id", "task", "args", "kwargs", "due", "prio", "att", "state", "key", "err", "etype", "emsg",
        "parent", "series", "after", "rec", "anchor", "nominal", "misfire", "grace", "overlap", "exp", "value",
        "why", "lost", "count", "job", "move", "cancel", "ack", "done", "end", "pending", "failed", "dead",
        "running", "paused", "succeeded", "cancelled",
    )
)
for _text in _KNOWN:
    cj_set_known(_text)
cj_init_plain()
# A job record's fields in the order the engine writes them (``records.encode_job``), its key last if it has one.
cdef tuple _ORDER = tuple(
    sys.intern(name) for name in ("t", "id", "task", "args", "kwargs", "due", "prio", "att", "state", "key")
)
cdef PyObject* _order[10]
for _i in range(10):
    _order[_i] = <PyObject*>_ORDER[_i]


cdef inline bint _in_order(object record, PyObject** out) noexcept:
    """A job record's values in ``out`` in the engine's field order, if its keys are those, in that order, as the
    reader's own interned strings (one pass over the dict, no lookup); else False: then look them up."""
    cdef Py_ssize_t position = 0, i = 0, size = PyDict_Size(record)
    cdef PyObject* key
    cdef PyObject* value
    if size != 9 and size != 10:
        return False
    while PyDict_Next(record, &position, &key, &value):
        if key != _order[i]:
            return False
        out[i] = value
        i += 1
    return True


def read(bytes payload):
    """What ``orjson.loads(payload)`` returns, when the payload is of the shape the reader knows; else None."""
    decoded = cj_read(payload, len(payload))
    if decoded == NULL:
        return None
    value = <object>decoded
    Py_DECREF(value)  # cj_read's reference: ``value`` holds its own
    return value


def walk(bytearray buffer, unsigned long seed, seq, Py_ssize_t base, record):
    """``format.walk_frames`` in C: the same records, position, next number and first fault."""
    cdef list records = []
    cdef list payloads = []
    cdef const char* data = PyByteArray_AS_STRING(buffer)
    cdef Py_ssize_t size = PyByteArray_GET_SIZE(buffer), position = 0, end
    cdef uint32_t crc, length
    cdef uint64_t number, expected
    cdef bint exhausted = False  # the next number is 2**64: no record can carry it
    bad = None
    if seq >= (1 << 64):
        exhausted, expected = True, 0
    else:
        expected = seq
    while size - position >= FRAME:
        crc, length, number = cj_u32(data + position), cj_u32(data + position + 4), cj_u64(data + position + 8)
        if not 0 < length <= MAX_PAYLOAD:
            bad = (base + position, f"impossible record length {length}", False)
            break
        end = position + FRAME + length
        if end > size:
            break
        if crc32(seed, <const unsigned char*>data + position + 4, <unsigned int>(FRAME - 4 + length)) != crc:
            bad = (base + position, "CRC mismatch", False)
            break
        if exhausted or number != expected:
            wanted = (1 << 64) if exhausted else PyLong_FromUnsignedLongLong(expected)
            bad = (
                base + position,
                f"record number {number} where {wanted} was expected: records out of order, repeated or missing",
                True,
            )
            break
        found = cj_read(data + position + FRAME, length)
        if found != NULL:
            decoded = <object>found
            Py_DECREF(decoded)  # cj_read's reference: ``decoded`` holds its own
        else:
            view = PyMemoryView_FromMemory(<char*>data + position + FRAME, length, PyBUF_READ)
            try:
                decoded = _loads(view)
            except _JSONDecodeError:
                decoded = None
            del view
        if not PyDict_CheckExact(decoded) or not PyUnicode_CheckExact(decoded.get("t")):
            bad = (base + position, "payload is not a record", True)
            break
        records.append(cj_triple(record, base + position, decoded, PyLong_FromUnsignedLongLong(number)))
        payloads.append(decoded)
        if expected == <uint64_t>0xFFFFFFFFFFFFFFFF:
            exhausted = True
        expected += 1
        position = end
    return records, payloads, position, (1 << 64) if exhausted else PyLong_FromUnsignedLongLong(expected), bad


cdef inline bint _id(PyObject* value) noexcept:
    """A non-empty exact str."""
    return value != NULL and PyUnicode_CheckExact(<object>value) and len(<object>value) != 0


cdef inline bint _int_within(PyObject* value, int64_t low, int64_t high) except -1:
    """An exact int from ``low`` to ``high``."""
    cdef int overflow = 0
    cdef long long v
    if value == NULL or not PyLong_CheckExact(<object>value):
        return False
    v = PyLong_AsLongLongAndOverflow(<object>value, &overflow)
    return overflow == 0 and low <= v <= high


cdef inline bint _time(PyObject* value) except -1:
    """An exact float or int within ±TIME_MAX."""
    cdef double d
    if value == NULL:
        return False
    if PyFloat_CheckExact(<object>value):
        d = PyFloat_AS_DOUBLE(<object>value)
        return -<double>TIME_MAX <= d <= <double>TIME_MAX
    return _int_within(value, -TIME_MAX, TIME_MAX)


cdef inline bint _state(PyObject* value) noexcept:
    """One of the plain states: pending, failed, dead, paused (an exact str)."""
    if value == NULL or not PyUnicode_CheckExact(<object>value):
        return False
    state = <str>value
    return state == "pending" or state == "failed" or state == "dead" or state == "paused"


cdef bint _sound_job(object record) except -1:
    """``schema.sound_jobs_py``'s test of one record, or less: a record it refuses goes to the full check."""
    cdef PyObject* kind
    cdef PyObject* value
    cdef Py_ssize_t size
    cdef PyObject* values[10]
    if not PyDict_CheckExact(record):
        return False
    size = PyDict_Size(record)
    if size != 9 and size != 10:
        return False
    if _in_order(record, values):
        return (
            PyUnicode_CheckExact(<object>values[0])
            and <str>values[0] == "job"
            and _id(values[1])
            and _id(values[2])
            and PyList_CheckExact(<object>values[3])
            and PyDict_CheckExact(<object>values[4])
            and _time(values[5])
            and _int_within(values[6], -PRIORITY_MAX, PRIORITY_MAX)
            and _int_within(values[7], 0, PRIORITY_MAX)
            and _state(values[8])
            and (size == 9 or _id(values[9]))
        )
    kind = cj_dict_get(record, "t")
    if kind == NULL or not PyUnicode_CheckExact(<object>kind) or <object>kind != "job":
        return False
    if not (_id(cj_dict_get(record, "id")) and _id(cj_dict_get(record, "task"))):
        return False
    value = cj_dict_get(record, "args")
    if value == NULL or not PyList_CheckExact(<object>value):
        return False
    value = cj_dict_get(record, "kwargs")
    if value == NULL or not PyDict_CheckExact(<object>value):
        return False
    if not _time(cj_dict_get(record, "due")):
        return False
    if not _int_within(cj_dict_get(record, "prio"), -PRIORITY_MAX, PRIORITY_MAX):
        return False
    if not _int_within(cj_dict_get(record, "att"), 0, PRIORITY_MAX):
        return False
    return _state(cj_dict_get(record, "state")) and (size == 9 or _id(cj_dict_get(record, "key")))


def sound_jobs(list records, Py_ssize_t start):
    """``schema.sound_jobs_py`` in C: the index of the first record from ``start`` it does not pass."""
    cdef Py_ssize_t index, count = len(records)
    for index in range(start, count):
        if not _sound_job(records[index]):
            return index
    return count


cdef tuple _args(list args):
    """``tuple(args)``, left out of the cyclic GC when it holds only atoms (as the collector itself would leave it)."""
    cdef tuple result = PyList_AsTuple(args)
    cdef Py_ssize_t i
    for i in range(len(result)):
        kind = type(result[i])
        if not (kind is int or kind is str or kind is float or kind is bool or result[i] is None):
            return result
    cj_untrack(result)
    return result


@cython.final
@cython.auto_pickle(False)
cdef class PlainJobs:
    """``replay.PlainJobsPy`` in C: the records a run of replay handles without a Python call each.

    A one-shot pending job's record of the usual shape (nine fields, or ten
    with its key) whose task is registered becomes its ``Job``, built as
    ``Job(...)`` builds it then given its attempt count: a copy of a template
    ``Job`` built with stand-ins, with the record's values in their slots
    (what goes where is learnt at construction, as ``_cwheel.JobPath``
    learns it; a job class that does more than fill slots is called instead,
    ``cloning`` False). A ``cancel`` or ``ack`` record drops its job. Any
    other record stops the loop: the Python replay takes it.
    """

    cdef object job
    cdef object template
    cdef readonly bint cloning
    cdef Py_ssize_t nfields
    cdef Py_ssize_t fields[MAX_JOB_FIELDS]  # the offsets of the slots no argument fills
    cdef Py_ssize_t params[JOB_PARAMS]  # the offset of each argument's slot
    cdef Py_ssize_t attempt_at

    def __init__(self, job):
        self.job = job
        self.cloning = self._learn(job)

    cdef bint _learn(self, job) except -1:
        if not isinstance(job, type) or job.__new__ is not object.__new__ or job.__dictoffset__:
            return False
        offsets = {}
        mro = job.__mro__
        for cls in mro[: len(mro) - 1]:  # all but object
            names = cls.__dict__.get("__slots__")
            if names is None:
                return False
            for name in (names,) if isinstance(names, str) else names:
                offset = cj_member_offset(cls.__dict__.get(name))
                if name != "__weakref__" and offset < 0:
                    return False
                if offset >= 0:
                    offsets[name] = offset
        if len(offsets) > MAX_JOB_FIELDS or "attempt" not in offsets:
            return False
        first = [object() for _ in range(JOB_PARAMS)]
        second = [object() for _ in range(JOB_PARAMS)]
        try:
            template = job(*first)
            other = job(*second)
        except Exception:
            return False
        cdef Py_ssize_t i, n = 0, found = 0
        cdef PyObject* a
        cdef Py_ssize_t offset_
        for name, offset in offsets.items():
            offset_ = offset
            a = cj_get_slot(template, offset_)
            for i in range(JOB_PARAMS):
                if a == <PyObject*>first[i]:
                    if cj_get_slot(other, offset_) != <PyObject*>second[i] or name == "attempt":
                        return False
                    self.params[i] = offset_
                    found += 1
                    break
            else:
                if a != cj_get_slot(other, offset_):
                    return False
                self.fields[n] = offset_
                n += 1
        if found != JOB_PARAMS:
            return False
        self.nfields = n
        self.template = template
        self.attempt_at = offsets["attempt"]
        return True

    cdef object _build(self, job_id, key, task, args, kwargs, priority, due, attempt):
        cdef Py_ssize_t i
        if not self.cloning:
            job = self.job(job_id, key, task, args, kwargs, priority, due, _ZERO)
            job.attempt = attempt
            return job
        job = cj_new_instance(self.job)
        template = self.template
        for i in range(self.nfields):
            cj_put_slot(job, self.fields[i], cj_get_slot(template, self.fields[i]))
        cj_put_slot(job, self.params[0], <PyObject*>job_id)
        cj_put_slot(job, self.params[1], <PyObject*>key)
        cj_put_slot(job, self.params[2], <PyObject*>task)
        cj_put_slot(job, self.params[3], <PyObject*>args)
        cj_put_slot(job, self.params[4], <PyObject*>kwargs)
        cj_put_slot(job, self.params[5], <PyObject*>priority)
        cj_put_slot(job, self.params[6], <PyObject*>due)
        cj_put_slot(job, self.params[7], <PyObject*>_ZERO)
        cj_put_slot(job, self.attempt_at, <PyObject*>attempt)
        return job

    def replay(self, list records, Py_ssize_t start, dict live, dict tasks):
        """Replay records from ``start`` onto ``live``; the index of the first one left to the Python replay."""
        cdef Py_ssize_t index, count = len(records), size
        cdef PyObject* kind
        cdef PyObject* task
        cdef PyObject* key
        cdef PyObject* values[10]
        name = registered = None  # the last task name looked up, and its value in ``tasks``
        for index in range(start, count):
            record = records[index]
            if not PyDict_CheckExact(record):
                return index
            if _in_order(record, values):  # the reader's record: its values without a lookup
                if PyUnicode_CheckExact(<object>values[0]) and <str>values[0] == "job":
                    if <object>values[8] != "pending":
                        return index
                    # A run holds jobs of a few tasks: a name equal to the last one's is not looked up again.
                    if name is None or not PyUnicode_CheckExact(<object>values[2]) or <str>values[2] != name:
                        task = cj_dict_get(tasks, <object>values[2])
                        if task == NULL:
                            return index
                        name, registered = <object>values[2], <object>task
                    if not PyList_CheckExact(<object>values[3]):
                        return index
                    live[<object>values[1]] = self._build(
                        <object>values[1],
                        <object>values[9] if PyDict_Size(record) == 10 else None,
                        registered,
                        _args(<object>values[3]),
                        <object>values[4],
                        <object>values[6],
                        <object>values[5],
                        <object>values[7],
                    )
                    continue
                return index
            kind = cj_dict_get(record, "t")
            if kind == NULL or not PyUnicode_CheckExact(<object>kind):
                return index
            if <object>kind == "job":
                size = PyDict_Size(record)
                if size > 10 or <object>record["state"] != "pending":
                    return index
                key = cj_dict_get(record, "key")
                if size == 10 and key == NULL:
                    return index
                task = cj_dict_get(tasks, record["task"])
                if task == NULL:
                    return index
                args = record["args"]
                if not PyList_CheckExact(args):
                    return index
                job_id = record["id"]
                live[job_id] = self._build(
                    job_id,
                    None if key == NULL else <object>key,
                    <object>task,
                    _args(args),
                    record["kwargs"],
                    record["prio"],
                    record["due"],
                    record["att"],
                )
            elif <object>kind == "cancel" or <object>kind == "ack":
                live.pop(record["id"], None)
            else:
                return index
        return count
