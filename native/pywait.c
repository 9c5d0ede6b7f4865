/* pywait.c -- blocking from Python: gv_block (the one way every primitive
 * waits), interrupts (cancellation, timeout scopes), WaitQueue, Sema, sleep.
 *
 * gv_block is called with the GIL held, the object's spin lock held and the
 * caller's waiter pushed on the object's list.  A GVThread parks: the lock is
 * released by its worker after the switch-out (and the park timer armed
 * there), so a granter that takes the lock never sees a half-parked waiter.
 * An OS thread releases the lock and the GIL and sleeps on its waiter's
 * futex.  Either way the waiter re-takes the lock to learn how it ended
 * (wait.c explains the race rules).
 */
#include "pybridge.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

PyObject *gv_Cancelled;

static _Atomic uint64_t object_ids = 1;
uint64_t gv_next_object_id(void) { return atomic_fetch_add(&object_ids, 1); }

int gv_parse_timeout(PyObject *o, double *out) {
    if (o == NULL || o == Py_None) {
        *out = -1.0; /* forever */
        return 0;
    }
    double t = PyFloat_AsDouble(o);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a number, not NaN");
        return -1;
    }
    /* Longer than ~31 years is forever: the deadline arithmetic in ns would
     * overflow (and inf would be undefined behaviour). */
    *out = t < 0 ? 0.0 : (t > 1e9 ? -1.0 : t);
    return 0;
}

void gv_waiter_init(gv_waiter *w) {
    memset(w, 0, sizeof *w);
    w->g = gv_current();
    w->who = w->g ? (int64_t)w->g->id : -(int64_t)PyThread_get_thread_ident();
    w->since_ns = gv_now_ns();
}

/* Raise the pending interrupt of g (one-shot): Cancelled before TimeoutError.
 * Returns GV_BLOCK_ERROR with the exception set, or 0 if nothing was pending. */
int gv_deliver_interrupt(gv_gvt *g) {
    uint32_t bits = atomic_load(&g->intr);
    if (bits & GV_INT_CANCEL) {
        atomic_fetch_and(&g->intr, ~GV_INT_CANCEL);
        PyErr_SetString(gv_Cancelled, "the GVThread was cancelled");
        return GV_BLOCK_ERROR;
    }
    if (bits & GV_INT_TIMEOUT) {
        atomic_fetch_and(&g->intr, ~GV_INT_TIMEOUT);
        PyErr_SetString(PyExc_TimeoutError, "timeout() expired");
        return GV_BLOCK_ERROR;
    }
    return 0;
}

struct block_park {
    gv_spin *lock;
    gv_gvt *g;
    uint64_t deadline;
};

static void block_park_unlock(void *arg) {
    struct block_park *bp = arg;
    if (bp->deadline)
        gv_park_timer_arm(bp->g, bp->deadline);
    if (bp->lock)
        gv_spin_unlock(bp->lock);
}

static int block_gvthread(gv_spin *lock, gv_wlist *list, gv_waiter *w, double timeout,
                          int kind, uint64_t obj) {
    gv_gvt *g = w->g;
    if (timeout == 0.0 || atomic_load(&g->intr)) {
        if (list)
            gv_wlist_remove(list, w);
        if (lock)
            gv_spin_unlock(lock);
        return timeout == 0.0 && !atomic_load(&g->intr) ? GV_BLOCK_TIMEOUT
                                                        : gv_deliver_interrupt(g);
    }
    g->wait_kind = (uint8_t)kind;
    g->wait_obj = obj;
    g->park_seq = w->park_seq = atomic_load(&g->wake_seq);
    struct block_park bp = {lock, g, 0};
    if (timeout > 0) {
        bp.deadline = gv_now_ns() + (uint64_t)(timeout * 1e9);
        if (!bp.deadline)
            bp.deadline = 1;
    }
    PyThreadState *ts = PyThreadState_Get();
    gv_py_switch_out(ts);
    gv_park(block_park_unlock, &bp);
    gv_py_switch_in(ts);
    g->wait_kind = GV_WAIT_NONE;
    g->wait_obj = 0;
    if (bp.deadline)
        gv_park_timer_cancel(g);
    int granted = 0;
    if (lock) {
        gv_spin_lock(lock);
        granted = w->granted;
        if (!granted && list)
            gv_wlist_remove(list, w);
        gv_spin_unlock(lock);
    }
    if (granted)
        return GV_BLOCK_GRANTED;
    if (atomic_load(&g->intr))
        return gv_deliver_interrupt(g);
    return GV_BLOCK_TIMEOUT;
}

static int block_thread(gv_spin *lock, gv_wlist *list, gv_waiter *w, double timeout) {
    uint64_t deadline = timeout < 0 ? UINT64_MAX : gv_now_ns() + (uint64_t)(timeout * 1e9);
    atomic_store(&w->futex, 0);
    if (lock)
        gv_spin_unlock(lock);
    for (;;) {
        if (atomic_load(&w->futex))
            break;
        uint64_t now = gv_now_ns();
        if (now >= deadline)
            break;
        uint64_t slice = deadline - now;
        if (slice > 1000000000ull)
            slice = 1000000000ull;
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = gv_futex_wait(&w->futex, 0, (int64_t)slice);
        Py_END_ALLOW_THREADS
        if (r != EINTR)
            continue;
        /* A signal: run the Python handlers, off the list so that nothing is
         * granted to us meanwhile; a handler that raises ends the wait. */
        if (lock) {
            gv_spin_lock(lock);
            if (w->granted) {
                gv_spin_unlock(lock);
                return GV_BLOCK_GRANTED; /* the handler runs at the next check */
            }
            if (list)
                gv_wlist_remove(list, w);
            gv_spin_unlock(lock);
        }
        if (PyErr_CheckSignals() < 0)
            return GV_BLOCK_ERROR;
        if (lock)
            return GV_BLOCK_RETRY; /* a grant may have gone elsewhere meanwhile */
    }
    int granted = 0;
    if (lock) {
        gv_spin_lock(lock);
        granted = w->granted;
        if (!granted && list)
            gv_wlist_remove(list, w);
        gv_spin_unlock(lock);
    }
    return granted ? GV_BLOCK_GRANTED : GV_BLOCK_TIMEOUT;
}

int gv_block(gv_spin *lock, gv_wlist *list, gv_waiter *w, double timeout, int kind,
             uint64_t obj) {
    if (w->g)
        return block_gvthread(lock, list, w, timeout, kind, obj);
    return block_thread(lock, list, w, timeout);
}

/* ------------------------------------------------------------ module functions */

static PyObject *pw_sleep_until_ns(uint64_t deadline) {
    gv_gvt *g = gv_current();
    if (g) {
        uint64_t now = gv_now_ns();
        gv_waiter w;
        gv_waiter_init(&w);
        double left = deadline == UINT64_MAX ? -1.0
                      : now >= deadline ? 0.0 : (double)(deadline - now) / 1e9;
        int r = block_gvthread(NULL, NULL, &w, left, GV_WAIT_SLEEP, 0);
        if (r == GV_BLOCK_ERROR)
            return NULL;
        Py_RETURN_NONE;
    }
    for (;;) {
        uint64_t now = gv_now_ns();
        if (now >= deadline)
            Py_RETURN_NONE;
        uint64_t left = deadline - now;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        int r;
        Py_BEGIN_ALLOW_THREADS
        r = nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
        if (r != 0 && PyErr_CheckSignals() < 0)
            return NULL;
    }
}

static PyObject *pw_sleep(PyObject *m, PyObject *arg) {
    (void)m;
    double s;
    if (arg == Py_None) {
        PyErr_SetString(PyExc_TypeError, "sleep() needs a number of seconds");
        return NULL;
    }
    if (gv_parse_timeout(arg, &s) < 0)
        return NULL;
    if (s < 0) { /* forever */
        gv_gvt *g = gv_current();
        if (g)
            return pw_sleep_until_ns(UINT64_MAX);
        PyErr_SetString(PyExc_OverflowError, "sleep length is too large");
        return NULL;
    }
    gv_gvt *g = gv_current();
    if (g && s == 0.0) {
        if (atomic_load(&g->intr) && gv_deliver_interrupt(g) < 0)
            return NULL;
        PyThreadState *ts = PyThreadState_Get();
        gv_py_switch_out(ts);
        gv_yield();
        gv_py_switch_in(ts);
        Py_RETURN_NONE;
    }
    return pw_sleep_until_ns(gv_now_ns() + (uint64_t)(s * 1e9));
}

static PyObject *pw_sleep_until(PyObject *m, PyObject *arg) {
    (void)m;
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred())
        return NULL;
    if (isnan(d)) {
        PyErr_SetString(PyExc_ValueError, "deadline must be a number");
        return NULL;
    }
    return pw_sleep_until_ns(d <= 0 ? 0 : (uint64_t)(d * 1e9));
}

/* safepoint(): tell the monitor we are making progress, deliver a pending
 * interrupt, and yield if the slice ran out (or a higher priority waits). */
static PyObject *pw_safepoint(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    gv_gvt *g = gv_current();
    if (!g)
        Py_RETURN_NONE;
    gv_safepoint_tick();
    if (atomic_load_explicit(&g->intr, memory_order_relaxed) && gv_deliver_interrupt(g) < 0)
        return NULL;
    if (atomic_load_explicit(&g->preempt, memory_order_relaxed)) {
        atomic_store_explicit(&g->preempt, 0, memory_order_relaxed);
        PyThreadState *ts = PyThreadState_Get();
        gv_py_switch_out(ts);
        gv_preempt_yield();
        gv_py_switch_in(ts);
    }
    Py_RETURN_NONE;
}

/* The flag that code built by gvthread.compile tests at loop back-edges and
 * function entries: `if __gvpreempt__: __gvsafepoint__()`.  Its truth is read
 * in C (nb_bool), so the test costs a cached builtin load and one call, and
 * nothing is allocated. */
static int pflag_bool(PyObject *self) {
    (void)self;
    gv_gvt *g = gv_current();
    return g && (atomic_load_explicit(&g->preempt, memory_order_relaxed) |
                 atomic_load_explicit(&g->intr, memory_order_relaxed));
}

static PyNumberMethods pflag_as_number = {.nb_bool = pflag_bool};

static PyObject *pflag_repr(PyObject *self) {
    (void)self;
    return PyUnicode_FromString("<gvthread preempt flag>");
}

static PyTypeObject PreemptFlagType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread._core.PreemptFlag",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "True when the calling GVThread should reach a safepoint.",
    .tp_as_number = &pflag_as_number,
    .tp_repr = pflag_repr,
};

static PyObject *pw_current_handle(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    gv_gvt *g = gv_current();
    if (!g || !g->task)
        Py_RETURN_NONE;
    return Py_NewRef((PyObject *)g->task);
}

static PyObject *pw_next_object_id(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    return PyLong_FromUnsignedLongLong(gv_next_object_id());
}

/* ------------------------------------------------------------ Deadline (timeout scopes) */

typedef struct {
    PyObject_HEAD
    gv_tnode node;
    gv_gvt *g;
    _Atomic int fired;
} DeadlineObject;

static void deadline_fire(gv_tnode *n) {
    DeadlineObject *d = (DeadlineObject *)((char *)n - offsetof(DeadlineObject, node));
    atomic_store(&d->fired, 1);
    gv_interrupt(d->g, GV_INT_TIMEOUT);
}

static void deadline_dealloc(DeadlineObject *d) {
    if (d->g)
        gv_tnode_cancel(d->g->rt, &d->node);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyObject *deadline_get_fired(DeadlineObject *d, void *c) {
    (void)c;
    return PyBool_FromLong(atomic_load(&d->fired));
}

static PyGetSetDef deadline_getset[] = {
    {"fired", (getter)deadline_get_fired, NULL, "True once the deadline passed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DeadlineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread._core.Deadline",
    .tp_basicsize = sizeof(DeadlineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)deadline_dealloc,
    .tp_getset = deadline_getset,
};

/* deadline_push(when) -> Deadline: interrupt the calling GVThread with
 * TimeoutError at time.monotonic() == when. */
static PyObject *pw_deadline_push(PyObject *m, PyObject *arg) {
    (void)m;
    gv_gvt *g = gv_current();
    if (!g) {
        PyErr_SetString(PyExc_RuntimeError, "timeout() works inside a GVThread only");
        return NULL;
    }
    double when = PyFloat_AsDouble(arg);
    if (when == -1.0 && PyErr_Occurred())
        return NULL;
    if (isnan(when)) {
        PyErr_SetString(PyExc_ValueError, "deadline must be a number");
        return NULL;
    }
    DeadlineObject *d = PyObject_New(DeadlineObject, &DeadlineType);
    if (!d)
        return NULL;
    memset(&d->node, 0, sizeof d->node);
    d->node.level = -1;
    d->node.fire = deadline_fire;
    d->g = g;
    atomic_store(&d->fired, 0);
    gv_tnode_arm(g->rt, &d->node, when <= 0 ? 0 : (uint64_t)(when * 1e9));
    return (PyObject *)d;
}

/* deadline_pop(d) -> fired: disarm; a TimeoutError it raised but that was not
 * delivered yet is dropped, so it cannot escape the scope that set it. */
static PyObject *pw_deadline_pop(PyObject *m, PyObject *arg) {
    (void)m;
    if (!PyObject_TypeCheck(arg, &DeadlineType)) {
        PyErr_SetString(PyExc_TypeError, "deadline_pop needs a Deadline");
        return NULL;
    }
    DeadlineObject *d = (DeadlineObject *)arg;
    if (!d->g)
        Py_RETURN_FALSE;
    gv_tnode_cancel(d->g->rt, &d->node); /* after this, deadline_fire cannot run */
    int fired = atomic_load(&d->fired);
    if (fired)
        atomic_fetch_and(&d->g->intr, ~GV_INT_TIMEOUT);
    d->g = NULL;
    return PyBool_FromLong(fired);
}

/* ------------------------------------------------------------ WaitQueue */

typedef struct {
    PyObject_HEAD
    gv_spin lock;
    gv_wlist waiters;
    _Atomic uint64_t seq;
    int kind;
    uint64_t obj_id;
} WaitQueueObject;

static int wq_init(WaitQueueObject *q, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"kind", "obj_id", NULL};
    int kind = GV_WAIT_OTHER;
    unsigned long long obj = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|iK:WaitQueue", kwlist, &kind, &obj))
        return -1;
    q->kind = kind;
    q->obj_id = obj ? obj : gv_next_object_id();
    return 0;
}

static PyObject *wq_get_seq(WaitQueueObject *q, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(atomic_load(&q->seq));
}

static PyObject *wq_get_obj_id(WaitQueueObject *q, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(q->obj_id);
}

static PyObject *wq_wait(WaitQueueObject *q, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"seq", "timeout", NULL};
    unsigned long long seq;
    PyObject *tobj = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "K|O:wait", kwlist, &seq, &tobj) ||
        gv_parse_timeout(tobj, &timeout) < 0)
        return NULL;
    gv_waiter w;
    gv_waiter_init(&w);
    gv_spin_lock(&q->lock);
    if (atomic_load(&q->seq) != seq) {
        gv_spin_unlock(&q->lock);
        Py_RETURN_TRUE;
    }
    gv_wlist_push(&q->waiters, &w);
    int r = gv_block(&q->lock, &q->waiters, &w, timeout, q->kind, q->obj_id);
    if (r == GV_BLOCK_ERROR)
        return NULL;
    /* RETRY is a spurious wakeup, which callers of wait() must allow anyway. */
    return PyBool_FromLong(r != GV_BLOCK_TIMEOUT);
}

static long wq_notify_n(WaitQueueObject *q, long n) {
    long woken = 0;
    gv_spin_lock(&q->lock);
    atomic_fetch_add(&q->seq, 1);
    gv_waiter *w;
    while ((n < 0 || woken < n) && (w = gv_wlist_claim(&q->waiters))) {
        gv_waiter_wake(w);
        woken++;
    }
    gv_spin_unlock(&q->lock);
    return woken;
}

static PyObject *wq_notify(WaitQueueObject *q, PyObject *args) {
    long n = 1;
    if (!PyArg_ParseTuple(args, "|l:notify", &n))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "notify(n) needs n >= 0");
        return NULL;
    }
    return PyLong_FromLong(wq_notify_n(q, n));
}

static PyObject *wq_notify_all(WaitQueueObject *q, PyObject *unused) {
    (void)unused;
    return PyLong_FromLong(wq_notify_n(q, -1));
}

/* Waiter ids of a list, copied under its lock (no Python code under it). */
static PyObject *waiter_ids(gv_spin *lock, gv_wlist *l) {
    for (;;) {
        gv_spin_lock(lock);
        uint32_t n = l->n;
        gv_spin_unlock(lock);
        int64_t *ids = PyMem_Malloc(sizeof(int64_t) * (n + 1));
        if (!ids)
            return PyErr_NoMemory();
        gv_spin_lock(lock);
        if (l->n > n) {
            gv_spin_unlock(lock);
            PyMem_Free(ids);
            continue;
        }
        n = 0;
        for (gv_waiter *w = l->head; w; w = w->next)
            ids[n++] = w->who;
        gv_spin_unlock(lock);
        PyObject *list = PyList_New(n);
        for (uint32_t i = 0; list && i < n; i++) {
            PyObject *v = PyLong_FromLongLong(ids[i]);
            if (!v) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, i, v);
        }
        PyMem_Free(ids);
        return list;
    }
}

static PyObject *wq_waiters(WaitQueueObject *q, PyObject *unused) {
    (void)unused;
    return waiter_ids(&q->lock, &q->waiters);
}

static Py_ssize_t wq_len(WaitQueueObject *q) { return q->waiters.n; }

static PyMethodDef wq_methods[] = {
    {"wait", (PyCFunction)(void (*)(void))wq_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(seq, timeout=None) -> bool: True at once if seq is stale, else block until\n"
     "notified (True) or the timeout passes (False)."},
    {"notify", (PyCFunction)wq_notify, METH_VARARGS,
     "notify(n=1) -> int: bump seq, wake up to n waiters, oldest first."},
    {"notify_all", (PyCFunction)wq_notify_all, METH_NOARGS, "Bump seq, wake every waiter."},
    {"waiters", (PyCFunction)wq_waiters, METH_NOARGS,
     "Ids of the waiters (GVThread ids; OS threads as negative idents)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef wq_getset[] = {
    {"seq", (getter)wq_get_seq, NULL, "epoch: bumped by every notify", NULL},
    {"obj_id", (getter)wq_get_obj_id, NULL, "id shown in snapshot wait_obj", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods wq_as_seq = {.sq_length = (lenfunc)wq_len};

static PyTypeObject WaitQueueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread._core.WaitQueue",
    .tp_basicsize = sizeof(WaitQueueObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Futex-like wait queue: an epoch and FIFO waiters (GVThreads park, threads block).",
    .tp_init = (initproc)wq_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = wq_methods,
    .tp_getset = wq_getset,
    .tp_as_sequence = &wq_as_seq,
};

/* ------------------------------------------------------------ Sema */

#define SEMA_HANDOFF 1

typedef struct {
    PyObject_HEAD
    gv_spin lock;
    gv_wlist waiters;
    int64_t value;
    uint64_t fair_ns;
    int kind;
    uint64_t obj_id;
} SemaObject;

static int sema_init(SemaObject *s, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"value", "kind", "obj_id", "fair_after", NULL};
    long long value = 1;
    int kind = GV_WAIT_OTHER;
    unsigned long long obj = 0;
    double fair = 0.001;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|LiKd:Sema", kwlist, &value, &kind, &obj, &fair))
        return -1;
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
        return -1;
    }
    s->value = value;
    s->kind = kind;
    s->obj_id = obj ? obj : gv_next_object_id();
    s->fair_ns = fair <= 0 ? 0 : (uint64_t)(fair * 1e9);
    return 0;
}

static PyObject *sema_acquire(SemaObject *s, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *tobj = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:acquire", kwlist, &tobj) ||
        gv_parse_timeout(tobj, &timeout) < 0)
        return NULL;
    gv_spin_lock(&s->lock);
    if (s->value > 0) { /* the uncontended path: no waiter set up */
        s->value--;
        gv_spin_unlock(&s->lock);
        Py_RETURN_TRUE;
    }
    gv_spin_unlock(&s->lock);
    uint64_t deadline = timeout < 0 ? 0 : gv_now_ns() + (uint64_t)(timeout * 1e9);
    gv_waiter w;
    gv_waiter_init(&w);
    for (;;) {
        gv_spin_lock(&s->lock);
        if (s->value > 0) {
            s->value--;
            gv_spin_unlock(&s->lock);
            Py_RETURN_TRUE;
        }
        double left = -1.0;
        if (timeout >= 0) {
            uint64_t now = gv_now_ns();
            left = now >= deadline ? 0.0 : (double)(deadline - now) / 1e9;
        }
        /* since_ns stays from the first attempt: starvation accumulates,
         * and a waiter that was woken and lost to a barger goes back to the
         * head of the line, as in Go's sync.Mutex. */
        int again = w.granted;
        w.granted = 0;
        w.flags = 0;
        if (again)
            gv_wlist_push_front(&s->waiters, &w);
        else
            gv_wlist_push(&s->waiters, &w);
        int r = gv_block(&s->lock, &s->waiters, &w, left, s->kind, s->obj_id);
        if (r == GV_BLOCK_ERROR)
            return NULL;
        if (r == GV_BLOCK_TIMEOUT)
            Py_RETURN_FALSE;
        if (r == GV_BLOCK_GRANTED && (w.flags & SEMA_HANDOFF))
            Py_RETURN_TRUE; /* the permit was handed to us */
        /* woken to retry (or a signal handler ran): loop */
    }
}

static PyObject *sema_try_acquire(SemaObject *s, PyObject *unused) {
    (void)unused;
    gv_spin_lock(&s->lock);
    int ok = s->value > 0;
    if (ok)
        s->value--;
    gv_spin_unlock(&s->lock);
    return PyBool_FromLong(ok);
}

static PyObject *sema_release(SemaObject *s, PyObject *args) {
    long n = 1;
    if (!PyArg_ParseTuple(args, "|l:release", &n))
        return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "release(n) needs n >= 1");
        return NULL;
    }
    gv_spin_lock(&s->lock);
    uint64_t now = gv_now_ns(); /* under the lock: no waiter is newer than now */
    for (long i = 0; i < n; i++) {
        gv_waiter *head = s->waiters.head;
        if (head && now - head->since_ns >= s->fair_ns) {
            /* Starved: hand the permit over, no barging (Go's starvation mode). */
            gv_waiter *w = gv_wlist_claim(&s->waiters);
            w->flags = SEMA_HANDOFF;
            gv_waiter_wake(w);
            continue;
        }
        s->value++;
        gv_waiter *w = gv_wlist_claim(&s->waiters);
        if (w)
            gv_waiter_wake(w); /* retry; may lose to a barger, then waits on */
    }
    gv_spin_unlock(&s->lock);
    Py_RETURN_NONE;
}

static PyObject *sema_get_value(SemaObject *s, void *c) {
    (void)c;
    return PyLong_FromLongLong(s->value);
}

static PyObject *sema_get_obj_id(SemaObject *s, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(s->obj_id);
}

static PyObject *sema_waiters(SemaObject *s, PyObject *unused) {
    (void)unused;
    return waiter_ids(&s->lock, &s->waiters);
}

static Py_ssize_t sema_len(SemaObject *s) { return s->waiters.n; }

static PyMethodDef sema_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sema_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(timeout=None) -> bool"},
    {"try_acquire", (PyCFunction)sema_try_acquire, METH_NOARGS, "Take a permit if one is free."},
    {"release", (PyCFunction)sema_release, METH_VARARGS,
     "release(n=1): a waiter starved past fair_after gets the permit handed over."},
    {"waiters", (PyCFunction)sema_waiters, METH_NOARGS, "Ids of the waiters."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sema_getset[] = {
    {"value", (getter)sema_get_value, NULL, "free permits", NULL},
    {"obj_id", (getter)sema_get_obj_id, NULL, "id shown in snapshot wait_obj", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods sema_as_seq = {.sq_length = (lenfunc)sema_len};

static PyTypeObject SemaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread._core.Sema",
    .tp_basicsize = sizeof(SemaObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counting semaphore with FIFO waiters and handoff to starved waiters.",
    .tp_init = (initproc)sema_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = sema_methods,
    .tp_getset = sema_getset,
    .tp_as_sequence = &sema_as_seq,
};

/* ------------------------------------------------------------ registration */

static PyMethodDef pw_functions[] = {
    {"sleep", pw_sleep, METH_O, "sleep(seconds): park the GVThread (or the thread)."},
    {"sleep_until", pw_sleep_until, METH_O, "sleep_until(deadline in time.monotonic() seconds)"},
    {"safepoint", pw_safepoint, METH_NOARGS,
     "Deliver a pending cancellation or timeout; cheap otherwise."},
    {"current_handle", pw_current_handle, METH_NOARGS, "Handle of the calling GVThread, or None."},
    {"next_object_id", pw_next_object_id, METH_NOARGS, "A process-unique id for a primitive."},
    {"deadline_push", pw_deadline_push, METH_O, NULL},
    {"deadline_pop", pw_deadline_pop, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

int gv_pywait_register(PyObject *m) {
    if (PyType_Ready(&WaitQueueType) < 0 || PyType_Ready(&SemaType) < 0 ||
        PyType_Ready(&DeadlineType) < 0 || PyType_Ready(&PreemptFlagType) < 0)
        return -1;
    PyObject *flag = PyType_GenericAlloc(&PreemptFlagType, 0);
    if (!flag || PyModule_AddObject(m, "preempt_flag", flag) < 0) {
        Py_XDECREF(flag);
        return -1;
    }
    gv_Cancelled = PyErr_NewExceptionWithDoc(
        "gvthread.Cancelled",
        "Raised in a cancelled GVThread at its next blocking point or safepoint.",
        PyExc_BaseException, NULL);
    if (!gv_Cancelled || PyModule_AddObjectRef(m, "Cancelled", gv_Cancelled) < 0 ||
        PyModule_AddObjectRef(m, "WaitQueue", (PyObject *)&WaitQueueType) < 0 ||
        PyModule_AddObjectRef(m, "Sema", (PyObject *)&SemaType) < 0 ||
        PyModule_AddObjectRef(m, "Deadline", (PyObject *)&DeadlineType) < 0 ||
        PyModule_AddFunctions(m, pw_functions) < 0)
        return -1;
    return 0;
}
