# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, autotestdict=False
# distutils: libraries = z
"""The journal decoder's three per-record loops in C: what a recovery spends its time in.

Each is the twin of a Python loop that stays the reference and the fallback
(``CHRONOWHEEL_NO_EXTENSIONS=1``, or no compiler): tests/test_native_decoder.py
holds each pair alike, verdicts and reasons byte for byte.

* :func:`walk` -- ``chronowheel._journal.format.walk_frames``: version-2 frames
  out of a buffer (length, CRC, record number), each payload decoded by
  ``orjson.loads`` straight from the buffer (a memoryview, no copy).
* :func:`sound_jobs` -- ``chronowheel._journal.schema.sound_jobs_py``: the
  usual ``job`` record's schema, accepted in C; anything else is left to the
  Python check, which decides and words the fault. So this can only pass
  fewer records on to that check, never change a verdict.
* :class:`PlainJobs` -- ``chronowheel._journal.replay.PlainJobsPy``: a one-shot
  pending job's record replayed into its ``Job`` (a copy of a template ``Job``
  built, as ``_cwheel.JobPath`` does), and ``cancel``/``ack`` records; the
  rest goes back to the Python replay. ``columns``: a snapshot's ``jobs``
  chunk into its ``Job``s, straight from its columns.

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
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_CheckExact
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from _template cimport Layout, copy_template, cw_put_slot, is_field, learn_layout

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
    static inline uint32_t cj_u32(const char* p) { uint32_t v; memcpy(&v, p, 4); return v; }  /* little-endian hosts */
    static inline uint64_t cj_u64(const char* p) { uint64_t v; memcpy(&v, p, 8); return v; }
    #if PY_BIG_ENDIAN
    #error "chronowheel._cjournal reads little-endian frames in place: not built on big-endian hosts"
    #endif
    """
    object cj_triple(object cls, object a, object b, object c)
    uint32_t cj_u32(const char* p) noexcept nogil
    uint64_t cj_u64(const char* p) noexcept nogil


DEF FRAME = 16  # u32 crc | u32 length | u64 record number
DEF MAX_PAYLOAD = 1 << 26  # format.MAX_PAYLOAD: a longer length field is damage, not data
DEF TIME_MAX = 2000000000000  # schema.TIME_MAX (2e12 s), exactly
DEF PRIORITY_MAX = 0x7FFFFFFFFFFFFFFF  # schema.PRIORITY_MAX

cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef object _ZERO = 0
# A job record's fields in the order the engine writes them (``records.encode_job``), its key last if it has one:
# the key objects orjson hands out for them. orjson keeps one str per short key it decoded (its key cache), so the
# records it decodes later carry these very objects, and _in_order matches them by identity; a key that is not one
# of them (the cache evicted it, or another decoder made the dict) makes the check look the fields up instead.
cdef tuple _ORDER = tuple(
    orjson.loads(
        orjson.dumps(dict.fromkeys(("t", "id", "task", "args", "kwargs", "due", "prio", "att", "state", "key"), 0))
    )
)
cdef PyObject* _order[10]
for _i in range(10):
    _order[_i] = <PyObject*>_ORDER[_i]


cdef inline bint _in_order(object record, PyObject** out) noexcept:
    """A job record's values in ``out`` in the engine's field order, if its keys are those, in that order, as
    orjson's own key objects (one pass over the dict, no lookup); else False: then look them up."""
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
    cdef Layout layout  # which slot is which (``_template.pxd``)
    cdef Py_ssize_t attempt_at

    def __init__(self, job):
        self.job = job
        self.cloning = self._learn(job)

    cdef bint _learn(self, job) except -1:
        """Whether jobs can be copies of a template (``_template.pxd``) whose ``attempt`` no argument fills."""
        offsets = {}
        template = learn_layout(job, &self.layout, offsets)
        if template is None or "attempt" not in offsets or not is_field(&self.layout, offsets["attempt"]):
            return False
        self.template = template
        self.attempt_at = offsets["attempt"]
        return True

    cdef object _build(self, job_id, key, task, args, kwargs, priority, due, attempt):
        if not self.cloning:
            job = self.job(job_id, key, task, args, kwargs, priority, due, _ZERO)
            job.attempt = attempt
            return job
        job = copy_template(self.job, &self.layout, self.template, job_id, key, task, args, kwargs, priority, due, _ZERO)
        cw_put_slot(job, self.attempt_at, <PyObject*>attempt)
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
            if _in_order(record, values):  # orjson's record: its values without a lookup
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

    def columns(self, dict record, Py_ssize_t start, dict live, dict tasks):
        """A ``jobs`` chunk's jobs from ``start`` onto ``live``; the index of the first whose task is not in ``tasks``.

        The chunk is checked by the schema before; its columns are read as
        lists of its ``id`` column's length whatever they hold (a wrong one
        raises, never reads past a list).
        """
        cdef list ids = record["id"], names = record["task"], arguments = record["args"], dues = record["due"]
        cdef list priorities = record["prio"], attempts = record["att"], keys = record["key"]
        cdef object found = record.get("kwargs")
        cdef list kwargs = None if found is None else <list?>found
        cdef Py_ssize_t index, count = len(ids)
        cdef PyObject* task
        for column in (names, arguments, dues, priorities, attempts, keys, ids if kwargs is None else kwargs):
            if len(<list?>column) != count:
                raise ValueError("a jobs chunk's columns differ in length")
        name = registered = None  # the last task name looked up, and its value in ``tasks``
        for index in range(start, count):
            if name is None or not PyUnicode_CheckExact(names[index]) or <str>names[index] != name:
                task = cj_dict_get(tasks, names[index])
                if task == NULL:
                    return index
                name, registered = names[index], <object>task
            live[ids[index]] = self._build(
                ids[index],
                keys[index],
                registered,
                _args(<list?>arguments[index]),
                {} if kwargs is None else kwargs[index],
                priorities[index],
                dues[index],
                attempts[index],
            )
        return count
