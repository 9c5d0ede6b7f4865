/* pybridge.c -- Python GVThreads: the CPython side of the native core.
 *
 * The mechanism (proven on 3.11, 3.12 and 3.13 by an experiment; see
 * docs/ARCHITECTURE.md):
 *  - every GVThread owns a PyThreadState, created by its entry code on its own
 *    stack (so it is bound to the worker that first runs it);
 *  - to switch, a GVThread first detaches its tstate and releases the GIL
 *    (PyEval_SaveThread), switches stacks, and re-attaches on whichever worker
 *    resumes it.  Switching with the tstate attached aborts 3.13 and deadlocks
 *    3.11/3.12 in take_gil, so the yield path checks it (always, not only in
 *    debug builds);
 *  - the gilstate slot follows the running GVThread (pygilstate.c);
 *  - the C recursion allowance of each tstate is cut to what its stack holds,
 *    or C-level recursion such as sorted(key=...) overflows a 256 KiB stack
 *    into SIGSEGV instead of raising RecursionError;
 *  - the first frame data-stack chunk of each tstate is carved out of the
 *    GVThread's own slot through the public arena-allocator hook, and later
 *    16 KiB chunks are cached, so a spawn maps nothing;
 *  - tstates are never pooled: the ContextVar cache is keyed on the tstate
 *    pointer and would hand the next GVThread a freed value.
 *
 * Everything here that touches Python objects runs with the GIL held.
 * Inspection scans the metadata pool under the GIL (see scan_next).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pybridge.h"

#include <errno.h>
#include <string.h>

PyObject *SchedError, *SlotsExhausted, *RuntimeShutdownError;
static PyObject *state_enum_members;   /* tuple State(0..6), set from Python */
static PyObject *prio_enum_members;    /* tuple Priority(0..3) */

/* ------------------------------------------------------------ arena hook */

static PyObjectArenaAllocator prev_arena;
#define CHUNK_CACHE_MAX 64
static void *chunk_cache[CHUNK_CACHE_MAX];
static int chunk_cached;
static gv_spin arena_lock;

static void *arena_alloc(void *ctx, size_t size) {
    (void)ctx;
    gv_gvt *g = gv_current();
    if (g && g->chunk_hint && size <= GV_CHUNK_BYTES) {
        void *p = g->chunk_hint; /* the tstate's first data-stack chunk */
        g->chunk_hint = NULL;
        return p;
    }
    if (size == GV_CHUNK_BYTES) {
        void *p = NULL;
        gv_spin_lock(&arena_lock);
        if (chunk_cached)
            p = chunk_cache[--chunk_cached];
        gv_spin_unlock(&arena_lock);
        if (p)
            return p;
    }
    return prev_arena.alloc(prev_arena.ctx, size);
}

static void arena_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (gv_region_contains(ptr))
        return; /* in-slot chunk: the slot's release reclaims it */
    if (size == GV_CHUNK_BYTES) {
        gv_spin_lock(&arena_lock);
        if (chunk_cached < CHUNK_CACHE_MAX) {
            chunk_cache[chunk_cached++] = ptr;
            ptr = NULL;
        }
        gv_spin_unlock(&arena_lock);
        if (!ptr)
            return;
    }
    prev_arena.free(prev_arena.ctx, ptr, size);
}

static void install_arena_hook(void) {
    PyObjectArenaAllocator a = {NULL, arena_alloc, arena_free};
    PyObject_GetArenaAllocator(&prev_arena);
    PyObject_SetArenaAllocator(&a);
}

/* ------------------------------------------------------------ worker GIL */

void gv_py_worker_init(gv_thr *w) { (void)w; }

void gv_py_worker_release_gil(gv_thr *w) {
#if GV_KEEP_GIL
    if (w->holds_gil) {
        if (!w->idle_ts) {
            /* Made the first time it is needed: a GVThread has run, so the
             * interpreter is known.  PyThreadState_New binds the gilstate
             * slot of this thread if empty; it must stay empty here. */
            PyThreadState *ts = PyThreadState_New((PyInterpreterState *)w->rt->interp);
            GV_CHECK(ts != NULL, "PyThreadState_New failed");
            gv_gilstate_switch_out(ts);
            w->idle_ts = ts;
        }
        w->holds_gil = 0;
        PyThreadState_Swap(w->idle_ts);
        PyEval_SaveThread();
    }
#else
    (void)w;
#endif
}

/* The thread's own tstate (3.11: to release the GIL; all versions: to finish
 * native GVThreads' Handles) goes with the thread. */
void gv_py_worker_fini(gv_thr *w) {
    PyThreadState *ts = w->idle_ts;
    w->idle_ts = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    int finalizing = Py_IsFinalizing();
#else
    int finalizing = _Py_IsFinalizing();
#endif
    if (ts && !finalizing) {
        gv_gilstate_switch_in(ts);
        PyEval_RestoreThread(ts);
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
    /* else: finalization frees it with the other tstates */
}

/* ------------------------------------------------------------ Handle */

typedef struct {
    PyObject_HEAD
    uint64_t id;
    PyObject *name;             /* str, or NULL until asked (default name) */
    int prio;
    uint32_t final_state;       /* valid once g == NULL */
    gv_gvt *g;                  /* while alive; cleared under the GIL at finish */
    PyObject *fn, *args, *kwargs, *ctx;   /* dropped when the GVThread ends */
    PyObject *result, *exc;
    gv_spin lock;               /* guards waiters and done */
    _Atomic uint32_t done;
    int cancel_requested;
    gv_wlist waiters;           /* joiners: parked GVThreads and blocked threads */
} HandleObject;

static PyTypeObject HandleType;

static int handle_traverse(HandleObject *h, visitproc visit, void *arg) {
    Py_VISIT(h->name);
    Py_VISIT(h->fn);
    Py_VISIT(h->args);
    Py_VISIT(h->kwargs);
    Py_VISIT(h->ctx);
    Py_VISIT(h->result);
    Py_VISIT(h->exc);
    return 0;
}

static int handle_clear(HandleObject *h) {
    Py_CLEAR(h->name);
    Py_CLEAR(h->fn);
    Py_CLEAR(h->args);
    Py_CLEAR(h->kwargs);
    Py_CLEAR(h->ctx);
    Py_CLEAR(h->result);
    Py_CLEAR(h->exc);
    return 0;
}

static void handle_dealloc(HandleObject *h) {
    PyObject_GC_UnTrack(h);
    handle_clear(h);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static uint32_t handle_state(HandleObject *h) {
    return h->g ? atomic_load_explicit(&h->g->state, memory_order_relaxed) : h->final_state;
}

static PyObject *enum_member(PyObject *members, long i) {
    if (members && i >= 0 && i < PyTuple_GET_SIZE(members))
        return Py_NewRef(PyTuple_GET_ITEM(members, i));
    return PyLong_FromLong(i);
}

static PyObject *handle_get_id(HandleObject *h, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(h->id);
}
static PyObject *handle_get_name(HandleObject *h, void *c) {
    (void)c;
    if (!h->name) {
        h->name = PyUnicode_FromFormat("gvthread-%llu", (unsigned long long)h->id);
        if (!h->name)
            return NULL;
    }
    return Py_NewRef(h->name);
}
static PyObject *handle_get_priority(HandleObject *h, void *c) {
    (void)c;
    return enum_member(prio_enum_members, h->prio);
}
static PyObject *handle_get_state(HandleObject *h, void *c) {
    (void)c;
    return enum_member(state_enum_members, (long)handle_state(h));
}

static PyObject *handle_done(HandleObject *h, PyObject *unused) {
    (void)unused;
    return PyBool_FromLong(atomic_load(&h->done) != 0);
}

static PyObject *handle_outcome(HandleObject *h) {
    if (h->exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(h->exc), h->exc);
        return NULL;
    }
    return Py_NewRef(h->result ? h->result : Py_None);
}

static PyObject *handle_join(HandleObject *h, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *tobj = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:join", kwlist, &tobj) ||
        gv_parse_timeout(tobj, &timeout) < 0)
        return NULL;
    if (!atomic_load(&h->done)) {
        gv_gvt *me = gv_current();
        if (me && me->task == (void *)h) {
            PyErr_SetString(PyExc_RuntimeError, "a GVThread cannot join itself");
            return NULL;
        }
        gv_waiter w;
        gv_waiter_init(&w);
        uint64_t deadline = gv_deadline_of(timeout);
        for (;;) {
            gv_spin_lock(&h->lock);
            if (atomic_load(&h->done)) {
                gv_spin_unlock(&h->lock);
                break;
            }
            w.granted = 0;
            gv_wlist_push(&h->waiters, &w);
            int r = gv_block(&h->lock, &h->waiters, &w, gv_time_left(deadline), GV_WAIT_JOIN,
                             h->id);
            if (r == GV_BLOCK_ERROR)
                return NULL;
            if (r == GV_BLOCK_GRANTED)
                break;
            if (r == GV_BLOCK_TIMEOUT) {
                /* PyUnicode_FromFormat has no %g (3.12 raises SystemError for it). */
                PyObject *t = PyFloat_FromDouble(timeout);
                if (t) {
                    PyErr_Format(PyExc_TimeoutError, "GVThread %llu did not finish within %R s",
                                 (unsigned long long)h->id, t);
                    Py_DECREF(t);
                }
                return NULL;
            }
        }
    }
    return handle_outcome(h);
}

/* cancel() -> bool: ask the GVThread to stop (Cancelled at its next blocking
 * point or safepoint; at once if parked).  False if it has already ended. */
static PyObject *handle_cancel(HandleObject *h, PyObject *unused) {
    (void)unused;
    if (atomic_load(&h->done) || !h->g)
        Py_RETURN_FALSE;
    h->cancel_requested = 1;
    gv_interrupt(h->g, GV_INT_CANCEL); /* h->g stays valid while we hold the GIL */
    Py_RETURN_TRUE;
}

static PyObject *handle_cancelled(HandleObject *h, PyObject *unused) {
    (void)unused;
    return PyBool_FromLong(atomic_load(&h->done) && h->final_state == GV_CANCELLED);
}

static PyObject *handle_repr(HandleObject *h) {
    PyObject *name = handle_get_name(h, NULL);
    if (!name)
        return NULL;
    PyObject *member = handle_get_state(h, NULL);
    PyObject *st = member && PyObject_HasAttrString(member, "name")
                       ? PyObject_GetAttrString(member, "name") : Py_XNewRef(member);
    Py_XDECREF(member);
    if (!st) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<gvthread.Handle id=%llu name=%R state=%S>",
                                       (unsigned long long)h->id, name, st);
    Py_DECREF(name);
    Py_DECREF(st);
    return r;
}

static PyMethodDef handle_methods[] = {
    {"join", (PyCFunction)(void (*)(void))handle_join, METH_VARARGS | METH_KEYWORDS,
     "join(timeout=None): wait for the GVThread; return its result or raise its exception.\n"
     "Parks the caller in a GVThread, blocks the OS thread elsewhere."},
    {"done", (PyCFunction)handle_done, METH_NOARGS, "True once the GVThread has ended."},
    {"cancel", (PyCFunction)handle_cancel, METH_NOARGS,
     "cancel() -> bool: Cancelled is raised in the GVThread at its next blocking point\n"
     "or safepoint (at once if it is parked). False if it has already ended."},
    {"cancelled", (PyCFunction)handle_cancelled, METH_NOARGS,
     "True if the GVThread ended by cancellation."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    {"id", (getter)handle_get_id, NULL, "GVThread id (unique in its runtime)", NULL},
    {"name", (getter)handle_get_name, NULL, "name given at spawn, or gvthread-<id>", NULL},
    {"priority", (getter)handle_get_priority, NULL, "Priority", NULL},
    {"state", (getter)handle_get_state, NULL, "State, read racily", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread.Handle",
    .tp_basicsize = sizeof(HandleObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Join handle of a GVThread, returned by spawn().",
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_repr = (reprfunc)handle_repr,
    .tp_methods = handle_methods,
    .tp_getset = handle_getset,
};

/* A Handle not yet bound to a GVThread; name is a str or None. */
static HandleObject *handle_new(PyObject *name, int prio) {
    HandleObject *h = PyObject_GC_New(HandleObject, &HandleType);
    if (!h)
        return NULL;
    h->id = 0;
    h->name = name == Py_None ? NULL : Py_NewRef(name);
    h->prio = prio;
    h->final_state = GV_CREATED;
    h->g = NULL;
    h->fn = h->args = h->kwargs = h->ctx = NULL;
    h->result = h->exc = NULL;
    atomic_store_explicit(&h->lock.v, 0, memory_order_relaxed);
    atomic_store_explicit(&h->done, 0, memory_order_relaxed);
    h->cancel_requested = 0;
    h->waiters = (gv_wlist){NULL, NULL, 0};
    PyObject_GC_Track(h);
    return h;
}

/* Under the GIL, on the finishing GVThread. */
static void finish_handle(HandleObject *h, PyObject *res, PyObject *exc) {
    h->result = res;
    h->exc = exc;
    h->final_state = (exc && h->cancel_requested && PyErr_GivenExceptionMatches(exc, gv_Cancelled))
                         ? GV_CANCELLED : GV_FINISHED;
    h->g = NULL;
    gv_spin_lock(&h->lock);
    atomic_store(&h->done, 1);
    for (gv_waiter *w; (w = gv_wlist_claim(&h->waiters));)
        gv_waiter_wake(w);
    gv_spin_unlock(&h->lock);
}

/* ------------------------------------------------------------ running */

/* The recursion bound a C stack of `bytes` holds: the stack less 48 KiB of
 * headroom for RecursionError handling and C code called from the deepest
 * level, at a cost per unit measured on real recursion: sorted(key=...) took
 * ~5 KB of C stack per level here; the values below survived a dozen
 * recursion patterns (sorted, map, repr, __getattr__, json, pickle, deepcopy,
 * generators, __eq__) at stack sizes from 64 KiB to 64 MiB on 3.11-3.13,
 * where half of them crashed without a bound
 * (tests/integration/scripts/recursion_patterns.py). */
static int recursion_units(size_t bytes) {
    long avail = (long)bytes - 48 * 1024;
#if PY_VERSION_HEX >= 0x030C0000
    long per_unit = 3 * 1024;
#else
    long per_unit = 5 * 1024 / 2;
#endif
    long units = avail / per_unit;
    return units < 8 ? 8 : (int)(units > 1000000 ? 1000000 : units);
}

static void set_recursion_bound(PyThreadState *ts, int units) {
#if PY_VERSION_HEX >= 0x030C0000
    if (ts->c_recursion_remaining > units)
        ts->c_recursion_remaining = units;
#else
    /* 3.11 resets a tstate's limit to the interpreter's whenever the depth
     * (limit - remaining) is below it, so a lower limit does not stick.
     * Start the GVThread "pre-deep" instead: depth = limit - units, and it
     * reaches the interpreter's limit after `units` more levels.  The one
     * counter covers Python and C recursion alike on 3.11. */
    if (ts->recursion_remaining > units)
        ts->recursion_remaining = units;
#endif
}

/* Read by the worker at a park (sched.c, shrink_stack), without the GIL: the
 * tstate is detached and only its own GVThread, switched out, moves it. */
const char *gv_py_data_top(void *tstate) {
    return (const char *)((PyThreadState *)tstate)->datastack_top;
}

static PyObject *fetch_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb && v)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

void gv_py_run(gv_gvt *g) {
    gv_runtime *rt = g->rt;
    PyThreadState *ts = PyThreadState_New((PyInterpreterState *)rt->interp);
    GV_CHECK(ts != NULL, "PyThreadState_New failed");
    gv_py_switch_in(ts);
    g->tstate = ts;
    /* Its own stack, the slot or a mapping of its own (not yet a borrowed one). */
    g->rec_units = recursion_units(g->stack_size);
    set_recursion_bound(ts, g->rec_units);
    HandleObject *h = g->task;
    PyObject *ctx = h->ctx, *res = NULL, *exc = NULL;
    h->ctx = NULL;
    if (atomic_load(&g->intr) & GV_INT_CANCEL) {
        /* Cancelled before it first ran: the function never starts. */
        gv_deliver_interrupt(g);
        exc = fetch_exception();
    } else if (PyContext_Enter(ctx) == 0) {
        res = PyObject_Call(h->fn, h->args, h->kwargs);
        if (!res)
            exc = fetch_exception();
        if (PyContext_Exit(ctx) < 0)
            PyErr_Clear(); /* only if user code left a context it entered */
    } else {
        exc = fetch_exception();
    }
    Py_DECREF(ctx);
    Py_CLEAR(h->fn);
    Py_CLEAR(h->args);
    Py_CLEAR(h->kwargs);
    /* Joiners may run before this GVThread's slot is released (on its
     * worker, after the switch-out); spawn waits for such stragglers rather
     * than report exhaustion.  Release: pairs with spawn's Acquire load. */
    atomic_fetch_add_explicit(&rt->exiting, 1, memory_order_release);
    finish_handle(h, res, exc);
    /* Under the GIL: from here inspection no longer sees this GVThread. */
    g->task = NULL;
    g->tstate = NULL;
    Py_DECREF(h); /* the reference the GVThread held; may run finalizers */
    PyThreadState_Clear(ts);
#if GV_KEEP_GIL
    PyThreadState_Swap(NULL);
    PyThreadState_Delete(ts);
    gv_thr_now()->holds_gil = 1;
#else
    PyThreadState_DeleteCurrent(); /* releases the GIL */
#endif
}

/* On the thread's scheduler stack, no GIL held: a native GVThread ended. */
void gv_py_native_exit(gv_thr *t, gv_gvt *g) {
    /* finish_exit() counts every exit out of `exiting`; natives count in here. */
    atomic_fetch_add_explicit(&g->rt->exiting, 1, memory_order_release);
    HandleObject *h = g->task;
    if (!h)
        return; /* detached (spawned from C): nobody to tell */
    PyThreadState *ts = t->idle_ts;
    if (!ts) {
        ts = PyThreadState_New((PyInterpreterState *)g->rt->interp);
        GV_CHECK(ts != NULL, "PyThreadState_New failed");
        gv_gilstate_switch_out(ts);
        t->idle_ts = ts;
    }
    gv_gilstate_switch_in(ts);
    PyEval_RestoreThread(ts);
    finish_handle(h, Py_NewRef(Py_None), NULL);
    g->task = NULL;
    Py_DECREF(h);
    PyEval_SaveThread();
    gv_gilstate_switch_out(ts);
}

/* ------------------------------------------------------------ Core */

typedef struct CoreObject {
    PyObject_HEAD
    gv_runtime *rt;
    struct CoreObject *prev, *next; /* live_cores, under the GIL */
} CoreObject;

/* Cores with a runtime, and runtimes left allocated at shutdown because a
 * GVThread still runs in them: for sys.setrecursionlimit's fix-up (3.11). */
static CoreObject *live_cores;
static gv_runtime **stuck_rts;
static Py_ssize_t n_stuck;

static int keep_stuck(gv_runtime *rt) {
    gv_runtime **a = PyMem_Realloc(stuck_rts, (size_t)(n_stuck + 1) * sizeof *a);
    if (!a) {
        PyErr_NoMemory();
        return -1;
    }
    stuck_rts = a;
    stuck_rts[n_stuck++] = rt;
    return 0;
}

static void core_link(CoreObject *c) {
    c->prev = NULL;
    c->next = live_cores;
    if (live_cores)
        live_cores->prev = c;
    live_cores = c;
}

static void core_unlink(CoreObject *c) {
    if (c->prev)
        c->prev->next = c->next;
    else if (live_cores == c)
        live_cores = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static PyTypeObject CoreType;

static int core_init(CoreObject *self, PyObject *args, PyObject *kw) {
    unsigned long long addr;
    if (!PyArg_ParseTuple(args, "K:Core", &addr))
        return -1;
    (void)kw;
    gv_runtime *rt = (gv_runtime *)(uintptr_t)addr;
    if (!rt) {
        PyErr_SetString(PyExc_ValueError, "null runtime");
        return -1;
    }
    if (self->rt)
        core_unlink(self);
    self->rt = rt;
    core_link(self);
    rt->interp = PyInterpreterState_Get();
    rt->pycore = self;
    rt->py_recursion_units =
        recursion_units(rt->cfg.stack_size - (GV_PAGE + GV_SLOT_TOP_PAD + GV_CHUNK_BYTES));
    return 0;
}

static void core_dealloc(CoreObject *self) {
    if (self->rt && self->rt->pycore == self)
        self->rt->pycore = NULL;
    if (self->rt)
        core_unlink(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Called by Runtime.shutdown() before the runtime may be freed, with
 * stuck=True when it will not be: a worker still runs a GVThread in it. */
static PyObject *core_detach(CoreObject *self, PyObject *stuck_arg) {
    int stuck = PyObject_IsTrue(stuck_arg);
    if (stuck < 0)
        return NULL;
    if (self->rt && self->rt->pycore == self)
        self->rt->pycore = NULL;
    if (self->rt) {
        core_unlink(self);
        if (stuck && keep_stuck(self->rt) < 0)
            return NULL;
    }
    self->rt = NULL;
    Py_RETURN_NONE;
}

static int core_check(CoreObject *self) {
    if (!self->rt) {
        PyErr_SetString(RuntimeShutdownError, "the runtime is shut down");
        return -1;
    }
    return 0;
}

/* spawn(fn, args, kwargs, prio, name) -> Handle; validation of prio and
 * packing of args is the facade's job. */
static PyObject *priority_coercer; /* gvthread._types.coerce_priority */
static PyObject *default_core_getter; /* returns the default runtime's Core */
static PyObject *str_name, *str_priority, *str_stack_size;

/* Priority, its int value, or its name -> 0..3; -1 with ValueError set. */
static long coerce_priority(PyObject *p) {
    if (PyLong_Check(p) && !PyBool_Check(p)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(p, &overflow);
        if (!overflow && v >= 0 && v < GV_NPRIO)
            return v;
        if (v == -1 && PyErr_Occurred())
            return -1;
    }
    if (!priority_coercer) {
        PyErr_SetString(PyExc_ValueError, "unknown priority");
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(priority_coercer, p); /* raises ValueError */
    if (!r)
        return -1;
    long v = PyLong_AsLong(r);
    Py_DECREF(r);
    return v;
}

static PyObject *do_spawn(CoreObject *self, PyObject *fn, PyObject *fargs, PyObject *fkw,
                          long prio, PyObject *name, size_t stack);

/* spawn(stack_size=...) -> bytes; 0 with an exception set.  None: 0, no error. */
static size_t coerce_stack_size(PyObject *v) {
    if (v == Py_None)
        return 0;
    if (!PyLong_Check(v) || PyBool_Check(v)) {
        PyErr_Format(PyExc_TypeError, "stack_size must be an int, not %.100s",
                     Py_TYPE(v)->tp_name);
        return 0;
    }
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (n == -1 && PyErr_Occurred())
        return 0;
    if (overflow || n < GV_MIN_STACK || (unsigned long long)n > GV_MAX_STACK) {
        PyErr_Format(PyExc_ValueError, "stack_size %R is outside %d..%llu bytes", v,
                     GV_MIN_STACK, (unsigned long long)GV_MAX_STACK);
        return 0;
    }
    if (n % GV_PAGE) {
        PyErr_Format(PyExc_ValueError, "stack_size %lld is not a multiple of the page size %d",
                     n, (int)GV_PAGE);
        return 0;
    }
    return (size_t)n;
}

/* spawn(fn, *args, name=None, priority=Priority.NORMAL, **kwargs) -> Handle.
 * In C because it is the hot path of every spawn: the Python-level wrapper
 * cost a quarter of a spawn. */
static PyObject *spawn_vector(CoreObject *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "spawn() missing the callable to run");
        return NULL;
    }
    PyObject *name = Py_None, *kwargs = NULL, *res = NULL;
    long prio = 2;
    size_t stack = 0;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i), *v = args[nargs + i];
        if (k == str_name || PyUnicode_Compare(k, str_name) == 0) {
            name = v;
        } else if (k == str_priority || PyUnicode_Compare(k, str_priority) == 0) {
            if ((prio = coerce_priority(v)) < 0)
                goto done;
        } else if (k == str_stack_size || PyUnicode_Compare(k, str_stack_size) == 0) {
            if (!(stack = coerce_stack_size(v)) && PyErr_Occurred())
                goto done;
        } else {
            if (!kwargs && !(kwargs = PyDict_New()))
                goto done;
            if (PyDict_SetItem(kwargs, k, v) < 0)
                goto done;
        }
    }
    PyObject *fargs = PyTuple_New(nargs - 1);
    if (!fargs)
        goto done;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(fargs, i - 1, Py_NewRef(args[i]));
    res = do_spawn(self, args[0], fargs, kwargs, prio, name, stack);
    Py_DECREF(fargs);
done:
    Py_XDECREF(kwargs);
    return res;
}

static PyObject *core_spawn(CoreObject *self, PyObject *const *args, Py_ssize_t nargsf,
                            PyObject *kwnames) {
    return spawn_vector(self, args, (size_t)nargsf, kwnames);
}

static PyObject *do_spawn(CoreObject *self, PyObject *fn, PyObject *fargs, PyObject *fkw,
                          long prio, PyObject *name, size_t stack) {
    if (core_check(self) < 0)
        return NULL;
    if (stack == self->rt->cfg.stack_size)
        stack = 0; /* the runtime's own size: a slot */
    if (!PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "spawn() needs a callable, not %.100s",
                     Py_TYPE(fn)->tp_name);
        return NULL;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    HandleObject *h = handle_new(name, (int)prio);
    if (!h)
        return NULL;
    h->fn = Py_NewRef(fn);
    h->args = Py_NewRef(fargs);
    h->kwargs = fkw ? Py_NewRef(fkw) : NULL;
    h->ctx = PyContext_CopyCurrent();
    if (!h->ctx) {
        Py_DECREF(h);
        return NULL;
    }
    char *own = NULL;
    if (stack && !(own = gv_own_stack_map(stack))) {
        Py_DECREF(h);
        PyErr_Format(PyExc_MemoryError, "cannot map a stack of %zu bytes (errno %d)", stack,
                     errno);
        return NULL;
    }
    gv_gvt *g;
    int rc = gv_spawn_prepare(self->rt, (int)prio, h, &g);
    if (rc == GV_E_EXHAUSTED &&
        atomic_load_explicit(&self->rt->exiting, memory_order_acquire)) {
        /* Some GVThreads have ended but not yet given their slot back: that
         * takes their worker a switch, not the GIL.  Wait up to 50 ms. */
        uint64_t until = gv_now_ns() + 50000000u;
        Py_BEGIN_ALLOW_THREADS
        while (rc == GV_E_EXHAUSTED && gv_now_ns() < until &&
               atomic_load_explicit(&self->rt->exiting, memory_order_acquire)) {
            sched_yield();
            rc = gv_spawn_prepare(self->rt, (int)prio, h, &g);
        }
        Py_END_ALLOW_THREADS
    }
    if (rc != GV_OK) {
        if (own)
            gv_own_stack_unmap(own, stack);
        Py_DECREF(h);
        if (rc == GV_E_EXHAUSTED)
            PyErr_Format(SlotsExhausted, "all %u GVThread slots are in use (max_gvthreads)",
                         self->rt->cfg.max_gvthreads);
        else
            PyErr_SetString(RuntimeShutdownError, "the runtime is shut down");
        return NULL;
    }
    if (own)
        gv_spawn_own_stack(g, own, stack);
    h->g = g;
    h->id = g->id;
    Py_INCREF(h); /* held by the GVThread until it ends */
    gv_spawn_start(g);
    return (PyObject *)h;
}

typedef struct {
    uint64_t id, created, started, switches, wait_obj;
    uint32_t state;
    int worker, prio, wait_kind;
    HandleObject *h;
} snap_row;

/* Inspection scans the dense metadata array under the GIL.  An entry is a
 * live Python GVThread while its task is set: spawn sets it and the GVThread
 * clears it, both under the GIL, so no entry changes meaning during a scan
 * that runs no Python code.  Workers may concurrently move states on and
 * release (or zero) entries whose task is already NULL; that is harmless. */
static gv_gvt *scan_next(gv_runtime *rt, uint32_t *pos) {
    uint32_t hw = rt->metas.high_water; /* racy: a stale bound only adds zero pages */
    while (*pos < hw) {
        gv_gvt *g = gv_meta_at(rt, (*pos)++);
        uint32_t st = atomic_load_explicit(&g->state, memory_order_acquire);
        if (st != GV_FREE && (g->task || g->native))
            return g;
    }
    return NULL;
}

/* sys.setrecursionlimit on 3.11.
 *
 * 3.11's Py_SetRecursionLimit rewrites every tstate's counter to keep its
 * depth (limit - remaining) under the new limit.  A Python GVThread's counter
 * is cut to what its slot holds (set_recursion_bound: remaining = B - d, with
 * B = min(units, limit) and d its real depth), which that rewrite undid: after
 * a common sys.setrecursionlimit(10000), C recursion in any GVThread ran
 * past its slot into SIGSEGV; after a lower limit, every GVThread hit
 * RecursionError at once.  The wrapper below lets CPython do its rewrite and
 * then moves each GVThread back to B(new) - d.  The caller, if a GVThread,
 * is shown to CPython at its real depth first, so that "the limit is too low"
 * is judged as on a plain thread.  3.12+ keep the C counter apart from the
 * limit, so they need none of it. */
#if PY_VERSION_HEX < 0x030C0000
static PyObject *orig_setrecursionlimit;

static int slot_budget(gv_gvt *g, int limit) {
    return g->rec_units < limit ? g->rec_units : limit;
}

/* Every live Python GVThread of rt but the caller: from CPython's rewrite for
 * old -> new back to B(new) - d. */
static void shift_bounds(gv_runtime *rt, int old, int new, PyThreadState *skip) {
    uint32_t pos = 0;
    for (gv_gvt *g; (g = scan_next(rt, &pos));)
        if (!g->native && g->tstate && g->tstate != skip)
            ((PyThreadState *)g->tstate)->recursion_remaining +=
                (slot_budget(g, new) - slot_budget(g, old)) - (new - old);
}

static PyObject *w_setrecursionlimit(PyObject *self, PyObject *arg) {
    (void)self;
    int old = Py_GetRecursionLimit();
    gv_gvt *me = gv_current();
    PyThreadState *my_ts = me && !me->native ? (PyThreadState *)me->tstate : NULL;
    int my_rem = 0, my_depth = 0;
    if (my_ts) { /* on a borrowed stack, big_extra of the counter is on loan */
        my_rem = my_ts->recursion_remaining;
        my_depth = slot_budget(me, old) - (my_rem - me->big_extra);
        my_ts->recursion_remaining = old - my_depth;
    }
    PyObject *r = PyObject_CallOneArg(orig_setrecursionlimit, arg);
    int new = Py_GetRecursionLimit();
    if (r && new != old) {
        for (CoreObject *c = live_cores; c; c = c->next)
            shift_bounds(c->rt, old, new, my_ts);
        for (Py_ssize_t i = 0; i < n_stuck; i++)
            shift_bounds(stuck_rts[i], old, new, my_ts);
    }
    if (my_ts)
        my_ts->recursion_remaining =
            r ? slot_budget(me, new) - my_depth + me->big_extra : my_rem;
    return r;
}

static PyMethodDef w_setrecursionlimit_def = {
    "setrecursionlimit", w_setrecursionlimit, METH_O, NULL};
#endif

static PyObject *mod_install_recursion_guard(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
#if PY_VERSION_HEX < 0x030C0000
    if (orig_setrecursionlimit)
        Py_RETURN_NONE; /* once per process: outside GVThreads it only forwards */
    PyObject *sys = PyImport_ImportModule("sys");
    if (!sys)
        return NULL;
    PyObject *orig = PyObject_GetAttrString(sys, "setrecursionlimit");
    PyObject *name = PyUnicode_FromString("sys"), *w = NULL;
    if (orig && name) {
        if (PyCFunction_Check(orig)) /* its raw doc carries the signature */
            w_setrecursionlimit_def.ml_doc = ((PyCFunctionObject *)orig)->m_ml->ml_doc;
        w = PyCFunction_NewEx(&w_setrecursionlimit_def, sys, name);
    }
    int rc = w ? PyObject_SetAttrString(sys, "setrecursionlimit", w) : -1;
    Py_XDECREF(w);
    Py_XDECREF(name);
    Py_DECREF(sys);
    if (rc < 0) {
        Py_XDECREF(orig);
        return NULL;
    }
    orig_setrecursionlimit = orig;
#endif
    Py_RETURN_NONE;
}

static PyObject *snap_name(gv_gvt *g) {
    return g->task ? handle_get_name((HandleObject *)g->task, NULL)
                   : PyUnicode_FromFormat("native-%llu", (unsigned long long)g->id);
}

/* CPU seconds g has run.  A GVThread that never yields is charged only at
 * its next switch, so while it runs its current slice is added here.  Read
 * racily: a snapshot taken as g switches in may add the previous slice once
 * more, or, as g switches out, miss the one just ended, for that moment only. */
static double snap_cpu(gv_gvt *g, uint32_t state) {
    uint64_t ticks = g->cpu_ticks;
    if (state == GV_RUNNING) {
        uint64_t t0 = __atomic_load_n(&g->slice_t0, __ATOMIC_RELAXED), now = gv_ticks();
        if (t0 && now > t0)
            ticks += now - t0;
    }
    return (double)ticks / gv_ticks_per_ns / 1e9;
}

static PyObject *snap_tuple(gv_gvt *g, PyObject *name /* stolen */) {
    uint32_t state = atomic_load_explicit(&g->state, memory_order_relaxed);
    return Py_BuildValue(
        "(KNNNNdNKiKdI)", (unsigned long long)g->id, name,
        enum_member(state_enum_members, (long)state), enum_member(prio_enum_members, g->prio),
        g->last_worker < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(g->last_worker),
        (double)g->created_ns / 1e9,
        g->started_ns ? PyFloat_FromDouble((double)g->started_ns / 1e9) : Py_NewRef(Py_None),
        (unsigned long long)g->switches, (int)g->wait_kind, (unsigned long long)g->wait_obj,
        snap_cpu(g, state), (unsigned int)g->preemptions);
}

/* snapshot(start=0, limit=-1, states=0, prios=0, name=None)
 *     -> (rows, next_start or None, matched)
 * One page of live GVThreads in slot order, from slot position `start`:
 * at most `limit` rows (-1: all) of those whose state bit is in `states` and
 * priority bit in `prios` (0: any) and whose name contains `name`.
 * `matched` counts every match in the whole table, so a client can show
 * "page 1 of N" without fetching the rest; without a name filter counting
 * builds no Python objects, so the first page of 100,000 stays cheap. */
static PyObject *core_snapshot(CoreObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"start", "limit", "states", "prios", "name", NULL};
    unsigned int start = 0, states = 0, prios = 0;
    Py_ssize_t limit = -1;
    PyObject *needle = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|InIIO:snapshot", kwlist, &start, &limit,
                                     &states, &prios, &needle) ||
        core_check(self) < 0)
        return NULL;
    if (needle != Py_None && !PyUnicode_Check(needle)) {
        PyErr_SetString(PyExc_TypeError, "snapshot: name must be a str or None");
        return NULL;
    }
    if (needle != Py_None && PyUnicode_GET_LENGTH(needle) == 0)
        needle = Py_None;
    gv_runtime *rt = self->rt;
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    int gc_was = PyGC_Disable(); /* no finalizer may run Python mid-scan */
    uint32_t pos = start;
    Py_ssize_t matched = 0;
    long long next = -1;
    for (gv_gvt *g; (g = scan_next(rt, &pos));) {
        uint32_t state = atomic_load_explicit(&g->state, memory_order_relaxed);
        if (states && !(states & (1u << state)))
            continue;
        if (prios && !(prios & (1u << g->prio)))
            continue;
        PyObject *name = NULL;
        if (needle != Py_None) {
            if (!(name = snap_name(g)))
                goto fail;
            Py_ssize_t at = PyUnicode_Find(name, needle, 0, PY_SSIZE_T_MAX, 1);
            if (at < 0) {
                Py_DECREF(name);
                if (at == -2)
                    goto fail;
                continue;
            }
        }
        matched++;
        if (limit >= 0 && PyList_GET_SIZE(list) >= limit) {
            if (next < 0)
                next = (long long)pos - 1;
            Py_XDECREF(name);
            continue;
        }
        if (!name && !(name = snap_name(g)))
            goto fail;
        PyObject *t = snap_tuple(g, name);
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
    }
    if (gc_was)
        PyGC_Enable();
    return Py_BuildValue("(NNn)", list, next < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(next),
                         matched);
fail:
    if (gc_was)
        PyGC_Enable();
    Py_DECREF(list);
    return NULL;
}

/* stack(id) -> [(filename, lineno, function), ...] innermost first. */
static PyObject *core_stack(CoreObject *self, PyObject *arg) {
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if ((id == (unsigned long long)-1 && PyErr_Occurred()) || core_check(self) < 0)
        return NULL;
    gv_runtime *rt = self->rt;
    uint32_t pos = 0;
    gv_gvt *g;
    while ((g = scan_next(rt, &pos)) && g->id != id)
        ;
    if (!g) {
        PyErr_Format(PyExc_KeyError, "no live GVThread with id %llu", id);
        return NULL;
    }
    PyThreadState *ts = g->tstate;
    PyObject *list = PyList_New(0);
    if (!list || !ts)
        return list; /* not started yet: no frames */
    /* The tstate cannot die while we hold the GIL and run no Python code;
     * with the collector off, nothing below runs Python code. */
    int gc_was = PyGC_Disable();
    PyFrameObject *f = PyThreadState_GetFrame(ts);
    while (f) {
        PyCodeObject *code = PyFrame_GetCode(f);
        PyObject *t = Py_BuildValue("(OiO)", code->co_filename, PyFrame_GetLineNumber(f),
                                    code->co_name);
        Py_DECREF(code);
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(f);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(t);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    if (gc_was)
        PyGC_Enable();
    return list;
}

/* handle(id) -> the Handle of a live GVThread, so that an inspector (the
 * kernel) can cancel or join one it did not spawn. */
static PyObject *core_handle(CoreObject *self, PyObject *arg) {
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if ((id == (unsigned long long)-1 && PyErr_Occurred()) || core_check(self) < 0)
        return NULL;
    uint32_t pos = 0;
    gv_gvt *g;
    while ((g = scan_next(self->rt, &pos)) && g->id != id)
        ;
    if (!g || !g->task) {
        PyErr_Format(PyExc_KeyError, "no live GVThread with id %llu", id);
        return NULL;
    }
    return Py_NewRef((PyObject *)g->task);
}

/* spawn_native(fn_addr, arg_addr, prio, name) -> Handle */
static PyObject *core_spawn_native(CoreObject *self, PyObject *args) {
    unsigned long long fn, arg;
    int prio;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "KKiO:spawn_native", &fn, &arg, &prio, &name) ||
        core_check(self) < 0)
        return NULL;
    if (!fn) {
        PyErr_SetString(PyExc_ValueError, "spawn_native: null function pointer");
        return NULL;
    }
    if (prio < 0 || prio >= GV_NPRIO) {
        PyErr_Format(PyExc_ValueError, "unknown priority %d", prio);
        return NULL;
    }
    HandleObject *h = handle_new(name, prio);
    if (!h)
        return NULL;
    gv_gvt *g;
    int rc = gv_spawn_prepare(self->rt, prio, h, &g);
    if (rc != GV_OK) {
        Py_DECREF(h);
        if (rc == GV_E_EXHAUSTED)
            PyErr_Format(SlotsExhausted, "all %u GVThread slots are in use (max_gvthreads)",
                         self->rt->cfg.max_gvthreads);
        else
            PyErr_SetString(RuntimeShutdownError, "the runtime is shut down");
        return NULL;
    }
    g->native = 1;
    g->nfn = (void (*)(void *))(uintptr_t)fn;
    g->narg = (void *)(uintptr_t)arg;
    h->g = g;
    h->id = g->id;
    Py_INCREF(h); /* held by the GVThread until it ends */
    gv_spawn_start(g);
    return (PyObject *)h;
}

static PyObject *core_recursion_units(CoreObject *self, PyObject *unused) {
    (void)unused;
    if (core_check(self) < 0)
        return NULL;
    return PyLong_FromLong(self->rt->py_recursion_units);
}

static PyMethodDef core_methods[] = {
    {"spawn", (PyCFunction)(void (*)(void))core_spawn, METH_FASTCALL | METH_KEYWORDS,
     "spawn(fn, *args, name=None, priority=Priority.NORMAL, **kwargs) -> Handle"},
    {"snapshot", (PyCFunction)(void (*)(void))core_snapshot, METH_VARARGS | METH_KEYWORDS, NULL},
    {"stack", (PyCFunction)core_stack, METH_O, NULL},
    {"handle", (PyCFunction)core_handle, METH_O, NULL},
    {"recursion_units", (PyCFunction)core_recursion_units, METH_NOARGS, NULL},
    {"detach", (PyCFunction)core_detach, METH_O, NULL},
    {"spawn_native", (PyCFunction)core_spawn_native, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread._core.Core",
    .tp_basicsize = sizeof(CoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The Python face of one native runtime (see gvthread.Runtime).",
    .tp_init = (initproc)core_init,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
};

/* ------------------------------------------------------------ module */

static PyObject *mod_yield_now(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    gv_gvt *g = gv_current();
    if (!g) {
        Py_BEGIN_ALLOW_THREADS
        sched_yield();
        Py_END_ALLOW_THREADS
        Py_RETURN_NONE;
    }
    if (atomic_load_explicit(&g->intr, memory_order_relaxed) && gv_deliver_interrupt(g) < 0)
        return NULL; /* yield_now is a safepoint */
    PyThreadState *ts = PyThreadState_Get();
    gv_py_switch_out(ts);
    gv_yield();
    gv_py_switch_in(ts);
    Py_RETURN_NONE;
}

static PyObject *mod_current_id(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    gv_gvt *g = gv_current();
    if (!g)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(g->id);
}

static PyObject *mod_is_in_gvthread(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    return PyBool_FromLong(gv_current() != NULL);
}

static PyObject *mod_current_core(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    gv_gvt *g = gv_current();
    if (!g || !g->rt->pycore)
        Py_RETURN_NONE;
    return Py_NewRef((PyObject *)g->rt->pycore);
}

/* gvthread.spawn: on the runtime of the calling GVThread, else the default. */
static PyObject *mod_spawn(PyObject *m, PyObject *const *args, Py_ssize_t nargsf,
                           PyObject *kwnames) {
    (void)m;
    gv_gvt *g = gv_current();
    if (g && g->rt->pycore)
        return spawn_vector((CoreObject *)g->rt->pycore, args, (size_t)nargsf, kwnames);
    if (!default_core_getter) {
        PyErr_SetString(SchedError, "no default runtime");
        return NULL;
    }
    PyObject *core = PyObject_CallNoArgs(default_core_getter);
    if (!core)
        return NULL;
    if (!PyObject_TypeCheck(core, &CoreType)) {
        Py_DECREF(core);
        PyErr_SetString(PyExc_TypeError, "default runtime getter must return a Core");
        return NULL;
    }
    PyObject *r = spawn_vector((CoreObject *)core, args, (size_t)nargsf, kwnames);
    Py_DECREF(core);
    return r;
}

static PyObject *mod_native_api(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    return PyLong_FromVoidPtr((void *)gv_native_api_get());
}

static PyObject *mod_set_hooks(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *coercer, *getter;
    if (!PyArg_ParseTuple(args, "OO", &coercer, &getter))
        return NULL;
    Py_XSETREF(priority_coercer, Py_NewRef(coercer));
    Py_XSETREF(default_core_getter, Py_NewRef(getter));
    Py_RETURN_NONE;
}

static PyObject *mod_stack_free(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    gv_gvt *g = gv_current();
    if (!g)
        Py_RETURN_NONE;
    return PyLong_FromLong((long)((char *)__builtin_frame_address(0) - (char *)g->stack_lo));
}

static PyObject *mod_set_enums(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *st, *pr;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &st, &PyTuple_Type, &pr))
        return NULL;
    Py_XSETREF(state_enum_members, Py_NewRef(st));
    Py_XSETREF(prio_enum_members, Py_NewRef(pr));
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"yield_now", mod_yield_now, METH_NOARGS,
     "Let other runnable GVThreads run; outside a GVThread, yield the OS thread."},
    {"current_id", mod_current_id, METH_NOARGS, "Id of the calling GVThread, or None."},
    {"is_in_gvthread", mod_is_in_gvthread, METH_NOARGS, "True inside a GVThread."},
    {"current_core", mod_current_core, METH_NOARGS, NULL},
    {"stack_free", mod_stack_free, METH_NOARGS,
     "Bytes of C stack left below the caller (None outside a GVThread)."},
    {"install_recursion_guard", mod_install_recursion_guard, METH_NOARGS,
     "3.11: wrap sys.setrecursionlimit so that GVThreads keep their stack-sized\n"
     "recursion bound across it; a no-op on 3.12+.  Once per process."},
    {"install_compile_guard", gv_py_install_compile_guard, METH_NOARGS,
     "Replace builtins.compile/eval/exec and marshal.dumps/loads/dump/load with\n"
     "wrappers that run on a borrowed 8 MiB stack inside GVThreads\n"
     "(native/pycompile.c); once per process."},
    {"borrowed_stacks", gv_py_borrowed_stacks, METH_NOARGS,
     "Borrowed 8 MiB stacks of the process: {'mapped': in use or pooled, 'pooled': free}."},
    {"set_enums", mod_set_enums, METH_VARARGS, NULL},
    {"set_hooks", mod_set_hooks, METH_VARARGS, NULL},
    {"native_api", mod_native_api, METH_NOARGS,
     "Address of the gv_native_api function table (native/gvthread_native.h)."},
    {"spawn", (PyCFunction)(void (*)(void))mod_spawn, METH_FASTCALL | METH_KEYWORDS,
     "spawn(fn, *args, name=None, priority=Priority.NORMAL, **kwargs) -> Handle\n\n"
     "Start fn(*args, **kwargs) as a GVThread on the runtime of the calling\n"
     "GVThread, or else on the default runtime."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef coremodule = {
    PyModuleDef_HEAD_INIT, "gvthread._core",
    "CPython-API half of gvthread._native: spawn, yield, join, inspection.", -1,
    mod_methods, NULL, NULL, NULL, NULL,
};

static PyObject *make_module(void) {
    if (PyType_Ready(&HandleType) < 0 || PyType_Ready(&CoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&coremodule);
    if (!m)
        return NULL;
    str_name = PyUnicode_InternFromString("name");
    str_priority = PyUnicode_InternFromString("priority");
    str_stack_size = PyUnicode_InternFromString("stack_size");
    if (!str_name || !str_priority || !str_stack_size) {
        Py_DECREF(m);
        return NULL;
    }
    SchedError = PyErr_NewExceptionWithDoc("gvthread.SchedError",
                                           "Base of the scheduler's errors.",
                                           PyExc_RuntimeError, NULL);
    SlotsExhausted = SchedError ? PyErr_NewExceptionWithDoc(
        "gvthread.SlotsExhausted", "Every GVThread slot (max_gvthreads) is in use.",
        SchedError, NULL) : NULL;
    RuntimeShutdownError = SchedError ? PyErr_NewExceptionWithDoc(
        "gvthread.RuntimeShutdownError", "The runtime was shut down.", SchedError, NULL) : NULL;
    if (!RuntimeShutdownError ||
        PyModule_AddObjectRef(m, "SchedError", SchedError) < 0 ||
        PyModule_AddObjectRef(m, "SlotsExhausted", SlotsExhausted) < 0 ||
        PyModule_AddObjectRef(m, "RuntimeShutdownError", RuntimeShutdownError) < 0 ||
        PyModule_AddObjectRef(m, "Handle", (PyObject *)&HandleType) < 0 ||
        PyModule_AddObjectRef(m, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddStringConstant(m, "CTX_IMPL", GV_CTX_NAME) < 0 ||
        PyModule_AddIntConstant(m, "ASAN", GV_ASAN) < 0 ||
        gv_pywait_register(m) < 0 || gv_pychan_register(m) < 0 ||
        gv_pymonitor_register(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

int gv_pymodule_init(void) {
    PyGILState_STATE st = PyGILState_Ensure();
    int rc = -1;
    PyObject *mods = PyImport_GetModuleDict();
    if (PyDict_GetItemString(mods, "gvthread._core")) {
        rc = 0;
    } else {
        PyObject *m = make_module();
        if (m) {
            rc = PyDict_SetItemString(mods, "gvthread._core", m);
            Py_DECREF(m);
            if (rc == 0)
                install_arena_hook();
        }
        if (rc < 0)
            PyErr_Print();
    }
    PyGILState_Release(st);
    return rc;
}
