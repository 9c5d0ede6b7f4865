/* pybridge.h -- shared by the CPython-API files of the core (pybridge.c,
 * pywait.c, pychan.c): the Python side of parking, and the objects they share. */
#ifndef GV_PYBRIDGE_H
#define GV_PYBRIDGE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gv_internal.h"

#if PY_VERSION_HEX < 0x030D0000
#define gv_tstate_unchecked() _PyThreadState_UncheckedGet()
#else
#define gv_tstate_unchecked() PyThreadState_GetUnchecked()
#endif

extern PyObject *SchedError, *SlotsExhausted, *RuntimeShutdownError;
extern PyObject *gv_Cancelled;          /* gvthread.Cancelled (BaseException) */
extern PyObject *gv_ChannelClosed;      /* gvthread.ChannelClosed */

/* pycompile.c: builtins.compile/eval/exec on a borrowed stack inside GVThreads. */
PyObject *gv_py_install_compile_guard(PyObject *m, PyObject *unused);
PyObject *gv_py_borrowed_stacks(PyObject *m, PyObject *unused);

/* 3.12+ keep the current tstate per OS thread: detached means NULL.  3.11
 * keeps one process-wide "current" (whoever holds the GIL), which another
 * thread may have taken by now: detached means "not ours". */
static inline void check_detached(PyThreadState *ts) {
#if PY_VERSION_HEX >= 0x030C0000
    (void)ts;
    GV_CHECK(gv_tstate_unchecked() == NULL, "switching with the tstate attached");
#else
    GV_CHECK(gv_tstate_unchecked() != ts, "switching with the tstate attached");
#endif
}

/* Keeping the GIL (3.11 only).
 *
 * Detaching with PyEval_SaveThread releases the GIL, and the next GVThread
 * takes it again: four mutex operations per switch, and every release wakes
 * any other thread waiting for the GIL (the main thread joining), which then
 * finds it taken again.  That was half of a yield and most of a spawn+join.
 * On 3.11, PyThreadState_Swap(NULL) detaches the tstate without touching
 * the GIL, so a worker keeps the GIL from one Python GVThread to the next,
 * as a thread running greenlets does: holds_gil says the worker thread holds it
 * with no tstate attached, and the next GVThread attaches by a swap.  Other
 * threads still get the GIL through the eval loop's drop requests (every
 * switch interval).  (Offering the GIL every N switches was tried and made
 * things worse: each release-and-retake bumps the GIL's switch counter, so a
 * waiting thread never files its drop request and starves for up to a
 * second.)  An idle worker releases it through a tstate of its own
 * (PyEval_SaveThread needs one).  3.12 made PyThreadState_Swap
 * release and take the GIL, so 3.12+ keep the SaveThread/RestoreThread path.
 */
#if PY_VERSION_HEX < 0x030C0000
#define GV_KEEP_GIL 1
#else
#define GV_KEEP_GIL 0
#endif

/* On the GVThread's stack, tstate attached, GIL held: detach before a switch. */
static inline void gv_py_switch_out(PyThreadState *ts) {
#if GV_KEEP_GIL
    PyThreadState_Swap(NULL);
    gv_thr_now()->holds_gil = 1;
#else
    PyEval_SaveThread();
#endif
    check_detached(ts);
}

/* On the GVThread's stack after it was switched in, maybe on another worker. */
static inline void gv_py_switch_in(PyThreadState *ts) {
#if GV_KEEP_GIL
    gv_thr *w = gv_thr_now();
    if (w->holds_gil) {
        w->holds_gil = 0;
        PyThreadState_Swap(ts);
        return;
    }
#endif
    PyEval_RestoreThread(ts);
}


/* Blocking, for every primitive: see pywait.c. */
#define GV_BLOCK_GRANTED 1
#define GV_BLOCK_TIMEOUT 0
#define GV_BLOCK_ERROR (-1)
/* An OS thread ran Python signal handlers while off the list: whatever it
 * waited for may have happened meanwhile; the caller checks again. */
#define GV_BLOCK_RETRY 2
/* timeout in seconds (-1 forever) -> deadline in ns (0 forever), and back. */
static inline uint64_t gv_deadline_of(double timeout) {
    return timeout < 0 ? 0 : gv_now_ns() + (uint64_t)(timeout * 1e9) + 1;
}
static inline double gv_time_left(uint64_t deadline) {
    if (!deadline)
        return -1.0;
    uint64_t now = gv_now_ns();
    return now >= deadline ? 0.0 : (double)(deadline - now) / 1e9;
}
void gv_waiter_init(gv_waiter *w);
int gv_block(gv_spin *lock, gv_wlist *list, gv_waiter *w, double timeout, int kind,
             uint64_t obj);
int gv_deliver_interrupt(gv_gvt *g);
int gv_parse_timeout(PyObject *o, double *out);
uint64_t gv_next_object_id(void);
int gv_pywait_register(PyObject *m);
int gv_pychan_register(PyObject *m);
int gv_pymonitor_register(PyObject *m); /* pymonitor.c */

#endif
