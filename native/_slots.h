/* A plain class's instances built slot by slot: how the job path (_cwheel) and the recovery replay
   (_cjournal) copy a template Job without calling its __init__. */
#ifndef CHRONOWHEEL_SLOTS_H
#define CHRONOWHEEL_SLOTS_H
#include "Python.h"
#include "structmember.h"

static PyObject* cw_new_instance(PyObject* type) {
    PyTypeObject* t = (PyTypeObject*)type;
    return t->tp_alloc(t, 0);
}
static inline PyObject* cw_get_slot(PyObject* o, Py_ssize_t offset) {
    return *(PyObject**)((char*)o + offset);
}
static inline void cw_put_slot(PyObject* o, Py_ssize_t offset, PyObject* v) {  /* v (or NULL) into a slot */
    PyObject* old = *(PyObject**)((char*)o + offset);
    Py_XINCREF(v);
    *(PyObject**)((char*)o + offset) = v;
    Py_XDECREF(old);
}
static Py_ssize_t cw_member_offset(PyObject* d) {  /* a writable object slot's offset, or -1 */
    PyMemberDef* m;
    if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)) return -1;
    m = ((PyMemberDescrObject*)d)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
    return m->offset;
}
#endif
