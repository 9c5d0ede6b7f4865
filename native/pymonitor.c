/* pymonitor.c -- sys.monitoring safepoints, armed on demand (CPython 3.12+).
 *
 * Problem.  A Python GVThread in a loop with no safepoint (code not built
 * by gvthread.compile) ignores its preempt flag; before this file the only
 * remedy was handoff (its worker's queue moves to a spare thread, and the
 * loop then shares the GIL with the rest).  PEP 669 lets us put a safepoint
 * into such code on demand: sys.monitoring.set_local_events(tool, code,
 * JUMP | PY_START | PY_RESUME) instruments one code object, the callback
 * runs our safepoint, and setting the events back to 0 restores the plain
 * bytecode.  Global events (set_events) and trace hooks are rejected: they
 * cost 35-90 ms to toggle with 100K GVThreads (DESIGN.md), and hit code that
 * was never late.
 *
 * Who arms.  set_local_events needs the GIL and must name the code the late
 * GVThread runs, but the monitor is a C timer thread without Python.
 * Rejected: a Python watcher thread woken by the monitor (one more thread,
 * a GIL round trip of up to a switch interval, and it would read another
 * thread's frames while they are live); Py_AddPendingCall (3.12+ runs those
 * in the main thread only); a signal (never switch, nor run Python, from a
 * handler while a thread is in the eval loop: DESIGN.md, "Must").  Chosen:
 * a pending call for *any* thread of the interpreter,
 * _PyEval_AddPendingCall(interp, fn, g, 0): exported by 3.12 and 3.13 (for
 * _testinternalcapi), declared in internal/pycore_ceval.h, hence
 * Py_BUILD_CORE here.  The eval loop of the thread that holds the GIL runs
 * it at its next eval-breaker check (a back-edge, a call, a RESUME): with a
 * busy loop that is the late GVThread itself, microseconds later, with its
 * own frames on top of its tstate.  arm_pending checks that the calling
 * GVThread is the one asked for and still flagged, and calls the Python
 * hook (gvthread._monitor.arm), which arms the code of its frames.  It never
 * switches: the pending-call machinery is busy until the call returns.  The
 * switch happens later, in the sys.monitoring callback, an ordinary Python
 * call on the GVThread's own stack like any other safepoint.
 *
 * A pending call may run on another thread (another GVThread got the GIL
 * first, or the main thread): it compares g with the caller's GVThread
 * without dereferencing it, does nothing, and the monitor asks again next
 * period; after a further grace period it hands the worker off as before
 * (timer.c).  At most MAX_OUTSTANDING requests are in CPython's queue at a
 * time (3.12's holds 32, shared with other users of the API).
 *
 * 3.11 has no sys.monitoring, and its pending calls run in the main thread
 * only: gv_py_arm_request asks pytrace.c instead, which installs a C trace
 * function on the late GVThread's tstate from an arming thread.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#if PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_ceval.h"
#endif

#include "gv_internal.h"

int gv_pymonitor_register(PyObject *m);

#define MAX_OUTSTANDING 16

/* The Python hook: gvthread._monitor.arm, or NULL (3.11, disabled, or no
 * tool id free).  Written under the GIL by set_monitor_hook; read by the
 * monitor without it (only to decide whether to post: a stale read costs one
 * pending call that finds no hook). */
static _Atomic int outstanding; /* posted and not yet run */

#if PY_VERSION_HEX >= 0x030C0000
static PyObject *_Atomic arm_hook;

/* Runs with the GIL, in whatever thread of the interpreter checked its eval
 * breaker first. */
static int arm_pending(void *arg) {
    atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
    gv_gvt *g = gv_current();
    /* g == arg: the GVThread asked for runs here (a stale arg is only
     * compared, never dereferenced).  Flagged: it has not reached a
     * safepoint since (the flag is cleared there and at switch-in). */
    if (!g || (void *)g != arg || g->native ||
        !(atomic_load_explicit(&g->preempt, memory_order_relaxed) |
          atomic_load_explicit(&g->intr, memory_order_relaxed)))
        return 0;
    PyObject *hook = atomic_load_explicit(&arm_hook, memory_order_relaxed);
    if (!hook)
        return 0;
    Py_INCREF(hook);
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = PyObject_CallNoArgs(hook);
    if (r) {
        if (PyObject_IsTrue(r) == 1)
            atomic_store_explicit(&g->mon_armed, 1, memory_order_relaxed); /* monitor reads */
        Py_DECREF(r);
    }
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(hook);
    PyErr_SetRaisedException(exc);
    Py_DECREF(hook);
    return 0; /* never an error: that would raise in the interrupted code */
}
#endif

int gv_py_arm_request(gv_runtime *rt, gv_gvt *g) {
#if PY_VERSION_HEX >= 0x030C0000
    void *interp = rt->interp;
    if (!interp || !atomic_load_explicit(&arm_hook, memory_order_relaxed))
        return 0;
    if (atomic_fetch_add_explicit(&outstanding, 1, memory_order_relaxed) >= MAX_OUTSTANDING) {
        atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
        return 0;
    }
    if (_PyEval_AddPendingCall((PyInterpreterState *)interp, arm_pending, g, 0) != 0) {
        atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
        return 0;
    }
    return 1;
#else
    return gv_pytrace_request(rt, g); /* 3.11: a trace function, pytrace.c */
#endif
}

/* _core.set_monitor_hook(fn or None).  The previous hook is leaked on
 * purpose: a pending call may be about to call it without a reference. */
static PyObject *pm_set_monitor_hook(PyObject *m, PyObject *fn) {
    (void)m;
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_monitor_hook: a callable or None");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (fn != Py_None)
        Py_INCREF(fn);
    atomic_store_explicit(&arm_hook, fn == Py_None ? NULL : fn, memory_order_relaxed);
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE; /* no sys.monitoring before 3.12 */
#endif
}

static PyObject *pm_monitor_outstanding(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    return PyLong_FromLong(atomic_load(&outstanding));
}

static PyMethodDef pm_functions[] = {
    {"set_monitor_hook", pm_set_monitor_hook, METH_O,
     "set_monitor_hook(fn): fn() arms sys.monitoring safepoints in the caller's frames "
     "(3.12+; returns False on 3.11)."},
    {"monitor_outstanding", pm_monitor_outstanding, METH_NOARGS,
     "Arm requests posted and not yet run (tests)."},
    {NULL, NULL, 0, NULL},
};

int gv_pymonitor_register(PyObject *m) { return PyModule_AddFunctions(m, pm_functions); }
