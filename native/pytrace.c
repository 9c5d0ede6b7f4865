/* pytrace.c -- trace safepoints, armed on demand (CPython 3.11).
 *
 * Problem.  A Python GVThread looping in code that gvthread.compile did not
 * build (a script, an imported module) reaches no safepoint: it ignores its
 * preempt flag and cannot be cancelled (Handle.cancel, timeout(), the
 * kernel's interrupt).  3.12+ arm sys.monitoring events in its code from a
 * pending call (pymonitor.c); 3.11 has no sys.monitoring, and its pending
 * calls run in the main thread only.
 *
 * Rejected.  A signal (never run Python or switch from a handler while a
 * thread is in the eval loop: DESIGN.md).  Py_AddPendingCall (main thread
 * only).  PyThreadState_SetAsyncExc (an arbitrary exception, cannot yield).
 * sys.settrace / threading.settrace (Python-level, global or new-threads
 * only, audit hooks run on the caller).  Rewriting bytecode (code objects
 * are shared by every thread running them).
 *
 * Chosen: a C trace function put on the late GVThread's own tstate by a
 * per-runtime arming thread that holds the GIL.
 *  1. The monitor (timer.c), finding a Python GVThread flagged past its grace
 *     period while others wait, or interrupted, calls gv_py_arm_request ->
 *     gv_pytrace_request: it files (g, id) in a one-entry mailbox and wakes
 *     the arming thread by futex.  No lock, never blocks (timer lock held).
 *  2. The arming thread takes the GIL with a tstate of its own
 *     (PyEval_RestoreThread): up to one switch interval (5 ms), since the
 *     busy thread drops the GIL at its next eval-breaker check after
 *     take_gil's drop request.
 *  3. Holding the GIL, arm_locked re-checks everything: g's entry is a live
 *     Python GVThread with that id, tstate set, RUNNING, still flagged or
 *     interrupted, and its tstate has no trace or profile function and
 *     tracing == 0 (a debugger's, coverage's, a profiler's hook is never
 *     replaced; a tstate inside a trace function, ours while it yields
 *     included, is left alone).  It writes c_tracefunc = ours, c_traceobj =
 *     NULL, cframe->use_tracing = 255: the state _PyEval_SetTrace leaves, minus
 *     the audit event (user hooks would run on this thread) and any reference.
 *  4. The target, once it has the GIL back, ors use_tracing into its next
 *     opcode (DISPATCH), enters DO_TRACING and calls us at the next line
 *     change or backward jump, or at a RESUME (function entry, generator
 *     resume): on its own stack, tstate attached, at an instruction boundary,
 *     as a Python call of gvthread.safepoint() would be.  We disarm first
 *     (c_tracefunc = NULL; call_trace's LeaveTracing then recomputes
 *     use_tracing = 0: full speed again), then run pw_safepoint's body: a
 *     pending interrupt is raised by returning -1 with the exception set (the
 *     "trace function raised" path), a preempt flag yields.
 *
 * Why it is safe (3.11.7 ceval.c, ceval_gil.h, pystate.c):
 *  - Ordering.  The fields are written with the GIL held and read by the
 *    target only with the GIL held; the GIL's mutex orders our release
 *    before its next take_gil.  cframe is a local of the target's eval loop
 *    whose address escaped (tstate->cframe), so it is reloaded after any
 *    opaque call, take_gil included.
 *  - No bytecode of the target runs while we hold the GIL: it waits in
 *    take_gil, or is in a C call that released the GIL (tstate detached,
 *    maybe parked), or switched out.  tstate->cframe then points to the
 *    cframe of its innermost active eval loop (set at entry, restored before
 *    every return) or to root_cframe, on g's own stack or a borrowed one it
 *    is still inside (pycompile.c), mapped while g lives.  The value passes
 *    outward on return (prev->use_tracing = cframe.use_tracing) and inward
 *    on calls.  _PyEval_SetTrace, which takes any tstate (debuggers call it
 *    for other threads), writes the same fields the same way.
 *  - Liveness.  g sets and clears g->tstate itself under the GIL, clearing it
 *    before PyThreadState_Clear/Delete (pybridge.c gv_py_run); entries are
 *    never unmapped while the runtime lives and nothing stores a non-NULL
 *    tstate there without the GIL.  So under the GIL a non-NULL g->tstate with g->task set
 *    and the expected id is that GVThread's live tstate.
 *  - A C loop or blocking call runs no bytecode: the trace fires when it
 *    returns.  While a C loop holds the GIL the arming thread waits; the
 *    monitor hands the worker off after another grace period as before.
 *  - A user's trace function.  Present: we never arm (the loop is only
 *    handed off).  Installed after we armed: it replaces ours (nothing to
 *    drop: c_traceobj is NULL) and ours never runs.  We disarm only if
 *    c_tracefunc is still ours.  sys.gettrace() shows None while armed.
 *  - Events.  LINE, CALL and OPCODE run the safepoint (OPCODE events are
 *    asked for on the innermost frame, for loops that jump to themselves:
 *    opcode_events).  EXCEPTION is skipped
 *    (raising there would replace the exception in flight), and so is RETURN
 *    while an interrupt is pending (it may be unwinding): we stay armed.
 *  - Yielding inside the trace function: call_trace raised tracing (and
 *    cleared use_tracing) on this tstate, which travels with the GVThread;
 *    other GVThreads have tstates of their own.  The switch is pw_safepoint's
 *    (tstate detached first).  The trace fires on whichever thread runs g.
 *  - Shutdown.  Started with the runtime, stopped by gv_runtime_stop
 *    (Runtime.shutdown, atexit: before finalization, like the workers); it
 *    deletes its tstate under the GIL.  It never takes the GIL once
 *    _Py_IsFinalizing().  If it cannot be joined by the deadline (a C loop
 *    holds the GIL) it is left detached like a stuck worker and rt is
 *    leaked, not freed; a late take_gil at finalization ends the thread.
 *
 * Cost.  Nothing while nothing is late: the arming thread sleeps on its
 * futex and no trace function stays installed.  Measured (docs/HACKING.md):
 * cancel to join ~5.6 ms, mostly the GIL's switch interval; the loop runs at
 * its earlier speed after the safepoint.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pybridge.h"

#include <errno.h>
#include <time.h>

#if PY_VERSION_HEX < 0x030C0000
#include <frameobject.h>

/* Runs as c_tracefunc of a GVThread's tstate, in that GVThread. */
static int trace_safepoint(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg) {
    (void)obj;
    (void)frame;
    (void)arg;
    PyThreadState *ts = PyThreadState_Get();
    gv_gvt *g = gv_current();
    int mine = g && !g->native && g->tstate == (void *)ts;
    uint32_t intr = mine ? atomic_load_explicit(&g->intr, memory_order_relaxed) : 0;
    if (what == PyTrace_EXCEPTION || (intr && what == PyTrace_RETURN))
        return 0; /* stay armed: the next line or call delivers */
    if (ts->c_tracefunc == trace_safepoint && ts->c_traceobj == NULL)
        ts->c_tracefunc = NULL; /* call_trace's LeaveTracing recomputes use_tracing: 0 */
    if (!mine)
        return 0;
    if (what == PyTrace_OPCODE && frame &&
        atomic_load_explicit(&g->mon_armed, memory_order_relaxed) == 2 &&
        PyObject_SetAttrString((PyObject *)frame, "f_trace_opcodes", Py_False) < 0)
        PyErr_Clear();
    atomic_store_explicit(&g->mon_armed, 0, memory_order_relaxed); /* the monitor may ask again */
    gv_safepoint_tick();
    if (intr && gv_deliver_interrupt(g) < 0)
        return -1; /* raised into the traced frame */
    if (atomic_load_explicit(&g->preempt, memory_order_relaxed)) {
        atomic_store_explicit(&g->preempt, 0, memory_order_relaxed);
        gv_py_switch_out(ts);
        gv_preempt_yield();
        gv_py_switch_in(ts);
    }
    return 0;
}

/* A loop that jumps to itself (`while True: pass`: one JUMP_BACKWARD) gives
 * no LINE event, since it neither changes line nor lands before the jump
 * it came from, and no CALL: ask for OPCODE events on the innermost frame,
 * as `frame.f_trace_opcodes = True` does.  Taking its frame object from
 * another thread under the GIL is what sys._current_frames() does.  Only a
 * flag that was off is set (returns 1: ours to clear at the safepoint); if
 * the safepoint comes from another frame first, the flag stays on that
 * frame, which matters only to a trace function installed later. */
static int opcode_events(PyThreadState *ts) {
    PyFrameObject *f = PyThreadState_GetFrame(ts);
    if (!f)
        return 0;
    int ours = 0;
    PyObject *v = PyObject_GetAttrString((PyObject *)f, "f_trace_opcodes");
    if (v == Py_False)
        ours = PyObject_SetAttrString((PyObject *)f, "f_trace_opcodes", Py_True) == 0;
    Py_XDECREF(v);
    PyErr_Clear();
    Py_DECREF(f);
    return ours;
}

/* With the GIL held by the arming thread: install the trace function on g's
 * tstate if g is still the GVThread asked for and still needs it. */
static int arm_locked(gv_runtime *rt, gv_gvt *g, uint64_t id) {
    if (atomic_load(&rt->stopping))
        return 0;
    uint32_t st = atomic_load_explicit(&g->state, memory_order_acquire);
    if (st == GV_FREE || !g->task || g->native || g->id != id)
        return 0;
    PyThreadState *ts = g->tstate;
    if (!ts || st != GV_RUNNING)
        return 0;
    if (!(atomic_load_explicit(&g->preempt, memory_order_relaxed) |
          atomic_load_explicit(&g->intr, memory_order_relaxed)))
        return 0; /* reached a safepoint meanwhile */
    if (ts->c_tracefunc == trace_safepoint && !ts->c_traceobj) {
        /* Still armed from before (it blocked in C since): it fires at the
         * next line or call. */
        atomic_store_explicit(&g->mon_armed, 1, memory_order_relaxed);
        return 1;
    }
    if (ts->c_tracefunc || ts->c_traceobj || ts->c_profilefunc || ts->c_profileobj ||
        ts->tracing)
        return 0; /* someone else's hook, or inside a trace function */
    ts->c_tracefunc = trace_safepoint;
    ts->cframe->use_tracing = 255; /* as _PyThreadState_UpdateTracingState */
    atomic_store_explicit(&g->mon_armed, 1 + opcode_events(ts), memory_order_relaxed);
    return 1;
}

#define RETRY_NS 20000000u /* 20 ms */

static int is_finalizing(void) { return _Py_IsFinalizing(); }

static void *armer_main(void *arg) {
    gv_runtime *rt = arg;
    gv_armer *a = &rt->armer;
    PyThreadState *ts = NULL;
    /* A request refused under the GIL (a user's trace function, a C loop that
     * left the flag set) is not tried again for the same GVThread within
     * RETRY_NS: each try makes the busy thread hand us the GIL. */
    gv_gvt *last_g = NULL;
    uint64_t last_id = 0, last_ns = 0;
    gv_block_async_signals();
    for (;;) {
        uint32_t w = atomic_load(&a->word);
        if (atomic_load(&a->stop))
            break;
        /* Acquire: pairs with the Release CAS in gv_pytrace_request. */
        gv_gvt *g = atomic_load_explicit(&a->req_g, memory_order_acquire);
        if (!g) {
            gv_futex_wait(&a->word, w, -1);
            continue;
        }
        uint64_t id = atomic_load_explicit(&a->req_id, memory_order_relaxed);
        uint64_t now = gv_now_ns();
        int retry_soon = g == last_g && id == last_id && now - last_ns < RETRY_NS;
        /* rt->interp is written once, by core_init under the GIL, before
         * any GVThread of rt exists; a request names one that ran, so the
         * plain read sees it (or NULL: nothing to arm). */
        if (rt->interp && !retry_soon && !is_finalizing()) {
            atomic_fetch_add_explicit(&a->served, 1, memory_order_relaxed);
            if (!ts) {
                /* Binds this thread's gilstate slot (empty: ours alone). */
                ts = PyThreadState_New((PyInterpreterState *)rt->interp);
                GV_CHECK(ts != NULL, "PyThreadState_New failed");
            }
            PyEval_RestoreThread(ts);
            int ok = arm_locked(rt, g, id);
            PyEval_SaveThread();
            if (ok) {
                atomic_fetch_add_explicit(&a->armed, 1, memory_order_relaxed);
                last_g = NULL;
            } else {
                last_g = g;
                last_id = id;
                last_ns = now;
            }
        }
        atomic_store_explicit(&a->req_g, NULL, memory_order_release);
    }
    if (ts && !is_finalizing()) {
        PyEval_RestoreThread(ts);
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    atomic_store(&a->exited, 1);
    return NULL;
}

int gv_pytrace_start(gv_runtime *rt) {
    if (!rt->slice_ticks || !rt->mon_arm)
        return 0; /* never asked */
    gv_armer *a = &rt->armer;
    if (pthread_create(&a->thread, NULL, armer_main, rt) != 0)
        return -1;
    a->started = 1;
    return 0;
}

int gv_pytrace_stop(gv_runtime *rt, uint64_t deadline) {
    gv_armer *a = &rt->armer;
    if (!a->started)
        return a->detached;
    atomic_store(&a->stop, 1);
    atomic_fetch_add(&a->word, 1);
    gv_futex_wake(&a->word, 1);
    while (!atomic_load(&a->exited) && gv_now_ns() < deadline) {
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    a->started = 0;
    if (atomic_load(&a->exited)) {
        pthread_join(a->thread, NULL);
        return 0;
    }
    pthread_detach(a->thread); /* waiting for a GIL that a C loop holds */
    a->detached = 1;
    return 1;
}

/* The monitor, under the timer lock: ask for g to be armed.  1 if g's
 * request is outstanding (filed now or before), 0 if another one is. */
int gv_pytrace_request(gv_runtime *rt, gv_gvt *g) {
    gv_armer *a = &rt->armer;
    if (!a->started || atomic_load_explicit(&a->stop, memory_order_relaxed))
        return 0;
    gv_gvt *cur = atomic_load_explicit(&a->req_g, memory_order_relaxed);
    if (cur)
        return cur == g;
    /* The id is read racily: g may have ended and its entry been reused.
     * The arming thread compares it under the GIL; a wrong one only makes
     * it do nothing (or arm a GVThread that is flagged too). */
    atomic_store_explicit(&a->req_id, g->id, memory_order_relaxed);
    gv_gvt *expect = NULL;
    /* Release: pairs with the Acquire load in armer_main (req_id first). */
    if (!atomic_compare_exchange_strong_explicit(&a->req_g, &expect, g, memory_order_release,
                                                 memory_order_relaxed))
        return expect == g;
    atomic_fetch_add(&a->word, 1);
    gv_futex_wake(&a->word, 1);
    return 1;
}

#else /* 3.12+: sys.monitoring instead (pymonitor.c) */

int gv_pytrace_start(gv_runtime *rt) {
    (void)rt;
    return 0;
}

int gv_pytrace_stop(gv_runtime *rt, uint64_t deadline) {
    (void)deadline;
    return rt->armer.detached;
}

int gv_pytrace_request(gv_runtime *rt, gv_gvt *g) {
    (void)rt;
    (void)g;
    return 0;
}
#endif
