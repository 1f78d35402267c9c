# cython: language_level=3
"""A job class whose instances can be built by copying a template: what goes in which slot.

``_cwheel.JobPath`` (a new job) and ``_cjournal.PlainJobs`` (a recovered
one) build each ``Job`` as a copy of one that ``Job(...)`` built, with the
arguments in their slots: ``Job.__init__`` was a quarter of a job's cost.
What goes where is learnt once, from two templates built with different
stand-ins: each argument's slot is where its stand-in landed, and every
other slot must hold the same object in both. A class that does anything
else (a ``__dict__``, a derived field, its own ``__new__``) is refused, and
its callers call it as usual. Inline functions only: each module that
cimports this compiles its own copy, so the two modules still build, and
load, independently.
"""

from cpython.object cimport PyObject

cdef extern from "_slots.h":
    object cw_new_instance(object type)
    PyObject* cw_get_slot(object o, Py_ssize_t offset) noexcept
    void cw_put_slot(object o, Py_ssize_t offset, PyObject* v) noexcept
    Py_ssize_t cw_member_offset(object d) noexcept

cdef enum:
    JOB_PARAMS = 8  # Job(id, key, task, args, kwargs, priority, due_wall, due_tick)
    MAX_JOB_FIELDS = 64

ctypedef struct Layout:
    Py_ssize_t nfields
    Py_ssize_t fields[MAX_JOB_FIELDS]  # the offsets of the slots no argument fills
    Py_ssize_t params[JOB_PARAMS]  # the offset of each argument's slot


cdef inline object learn_layout(object kind, Layout* layout, dict offsets):
    """A template ``kind(...)`` built, its slots in ``layout`` (and ``offsets``: name -> offset); None if refused."""
    if not isinstance(kind, type) or kind.__new__ is not object.__new__ or kind.__dictoffset__:
        return None
    mro = kind.__mro__
    for cls in mro[: len(mro) - 1]:  # all but object
        names = cls.__dict__.get("__slots__")
        if names is None:
            return None
        for name in (names,) if isinstance(names, str) else names:
            offset = cw_member_offset(cls.__dict__.get(name))
            if name != "__weakref__" and offset < 0:
                return None
            if offset >= 0:
                offsets[name] = offset
    if len(offsets) > MAX_JOB_FIELDS:
        return None
    first = [object() for _ in range(JOB_PARAMS)]
    second = [object() for _ in range(JOB_PARAMS)]
    try:
        template = kind(*first)
        other = kind(*second)
    except Exception:
        return None
    cdef Py_ssize_t i, n = 0, found = 0
    cdef Py_ssize_t at
    cdef PyObject* a
    for offset in offsets.values():
        at = offset
        a = cw_get_slot(template, at)
        for i in range(JOB_PARAMS):
            if a == <PyObject*>first[i]:
                if cw_get_slot(other, at) != <PyObject*>second[i]:
                    return None
                layout.params[i] = at
                found += 1
                break
        else:
            if a != cw_get_slot(other, at):
                return None
            layout.fields[n] = at
            n += 1
    if found != JOB_PARAMS:
        return None
    layout.nfields = n
    return template


cdef inline bint is_field(const Layout* layout, Py_ssize_t at) noexcept:
    """Whether the slot at ``at`` is one no argument fills (it keeps the template's object)."""
    cdef Py_ssize_t i
    for i in range(layout.nfields):
        if layout.fields[i] == at:
            return True
    return False


cdef inline object copy_template(
    object kind, const Layout* layout, object template, job_id, key, task, args, kwargs, priority, due_wall, due_tick
):
    """A new ``kind`` instance, as ``kind(job_id, ..., due_tick)`` would build it: the template's copy."""
    job = cw_new_instance(kind)
    cdef Py_ssize_t i
    for i in range(layout.nfields):
        cw_put_slot(job, layout.fields[i], cw_get_slot(template, layout.fields[i]))
    cw_put_slot(job, layout.params[0], <PyObject*>job_id)
    cw_put_slot(job, layout.params[1], <PyObject*>key)
    cw_put_slot(job, layout.params[2], <PyObject*>task)
    cw_put_slot(job, layout.params[3], <PyObject*>args)
    cw_put_slot(job, layout.params[4], <PyObject*>kwargs)
    cw_put_slot(job, layout.params[5], <PyObject*>priority)
    cw_put_slot(job, layout.params[6], <PyObject*>due_wall)
    cw_put_slot(job, layout.params[7], <PyObject*>due_tick)
    return job
