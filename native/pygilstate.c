/* pygilstate.c -- keep CPython's per-OS-thread gilstate slot on the running
 * GVThread.
 *
 * Hazard.  CPython remembers "the tstate of this OS thread" in a TSS key
 * (_PyRuntime autoTSSkey); PyGILState_Ensure(), used by cffi callbacks, ctypes
 * and many C extensions, trusts it, and on 3.12+ attaching a tstate rebinds
 * it and writes to the previous owner.  A worker thread runs many GVThreads,
 * each with its own tstate, so the slot must name the GVThread switched in
 * and be cleared when it is switched out; otherwise tstates leak, callbacks
 * run on another GVThread's tstate, and 3.13 aborts.  The key has no public
 * setter, which is why this one file is compiled as Py_BUILD_CORE.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_runtime.h"

void gv_gilstate_switch_in(void *tstate);
void gv_gilstate_switch_out(void *tstate);

static inline Py_tss_t *gilstate_key(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return &_PyRuntime.autoTSSkey;
#else
    return &_PyRuntime.gilstate.autoTSSkey;
#endif
}

/* Both run on the worker's own stack without the GIL; the tstate is parked,
 * so nothing else writes its _status bits meanwhile. */
void gv_gilstate_switch_in(void *tstate) {
    PyThread_tss_set(gilstate_key(), tstate);
#if PY_VERSION_HEX >= 0x030C0000
    ((PyThreadState *)tstate)->_status.bound_gilstate = 1;
#endif
}

void gv_gilstate_switch_out(void *tstate) {
    PyThread_tss_set(gilstate_key(), NULL);
#if PY_VERSION_HEX >= 0x030C0000
    ((PyThreadState *)tstate)->_status.bound_gilstate = 0;
#else
    (void)tstate;
#endif
}
