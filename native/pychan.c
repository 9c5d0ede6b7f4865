/* pychan.c -- Channel and select: Go's channels for Python objects.
 *
 * A channel is a ring buffer of `capacity` references plus two wait lists,
 * senders and receivers, under one spin lock; capacity 0 is a rendezvous.
 * As in Go's runtime/chan.go, a value goes straight from a sender to a
 * waiting receiver (or the reverse), bypassing the buffer, and a receiver
 * that takes from a full buffer moves the oldest blocked sender's value in.
 *
 * References.  The buffer owns its items.  A blocked sender's waiter points
 * at its item without owning it (the sender's own frame does); whoever takes
 * it adds a reference.  A value handed to a blocked receiver is a new
 * reference, owned by that receiver from then on.  All of this runs with the
 * GIL held (every entry point is called from Python), so reference counting
 * is safe even when the spin lock is what orders the hand-off.
 *
 * select.  Locks every distinct channel of its cases in address order,
 * polls the cases in a random order (so no ready case is favoured, as in
 * Go), and if none is ready queues one waiter per case, all sharing one
 * gv_select_state: the first channel to claim one of them wins (wait.c), the
 * others skip the stale waiters.  The GVThread parks with all the locks
 * handed to its worker, like a single-channel park.
 */
#include "pybridge.h"

#include <errno.h>
#include <time.h>

PyObject *gv_ChannelClosed;
static PyObject *closed_sentinel; /* gvthread.CLOSED: a select on a closed channel */
static PyObject *str_int64, *str_object;

#define CH_WAKE_CLOSED 1

typedef struct ChannelObject {
    PyObject_HEAD
    gv_spin lock;
    Py_ssize_t cap;
    PyObject **buf;
    Py_ssize_t head, len;
    int closed;
    int i64;                    /* items are raw int64 values, not objects */
    gv_wlist sendq, recvq;
    uint64_t id;
    PyObject *name;
    struct ChannelObject *reg_prev, *reg_next; /* registry, under the GIL */
    PyObject *weakreflist;
} ChannelObject;

static PyTypeObject ChannelType;
static ChannelObject *registry;

static int ch_init(ChannelObject *ch, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"capacity", "name", "kind", NULL};
    Py_ssize_t cap = 0;
    PyObject *name = Py_None;
    const char *kind = "object";
    if (ch->id) {
        PyErr_SetString(PyExc_RuntimeError, "Channel.__init__ called twice");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|nOs:Channel", kwlist, &cap, &name, &kind))
        return -1;
    if (strcmp(kind, "object") == 0) {
        ch->i64 = 0;
    } else if (strcmp(kind, "int64") == 0) {
        ch->i64 = 1;
    } else {
        PyErr_Format(PyExc_ValueError, "channel kind must be 'object' or 'int64', not %R",
                     PyTuple_Size(args) > 2 ? PyTuple_GET_ITEM(args, 2) : Py_None);
        return -1;
    }
    if (cap < 0) {
        PyErr_SetString(PyExc_ValueError, "channel capacity must be >= 0");
        return -1;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "channel name must be a str");
        return -1;
    }
    if (cap > 0) {
        ch->buf = PyMem_Calloc((size_t)cap, sizeof(PyObject *));
        if (!ch->buf) {
            PyErr_NoMemory();
            return -1;
        }
    }
    ch->cap = cap;
    ch->id = gv_next_object_id();
    ch->name = name == Py_None ? NULL : Py_NewRef(name);
    ch->reg_next = registry;
    if (registry)
        registry->reg_prev = ch;
    registry = ch;
    return 0;
}

static int ch_traverse(ChannelObject *ch, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; !ch->i64 && i < ch->len; i++)
        Py_VISIT(ch->buf[(ch->head + i) % ch->cap]);
    Py_VISIT(ch->name);
    return 0;
}

static int ch_clear(ChannelObject *ch) {
    /* Only an unreachable channel is cleared: nobody can be blocked on it. */
    while (ch->len) {
        PyObject *o = ch->buf[ch->head];
        ch->buf[ch->head] = NULL;
        ch->head = (ch->head + 1) % ch->cap;
        ch->len--;
        if (!ch->i64)
            Py_DECREF(o);
    }
    Py_CLEAR(ch->name);
    return 0;
}

static void ch_dealloc(ChannelObject *ch) {
    PyObject_GC_UnTrack(ch);
    if (ch->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)ch);
    if (ch->id) {
        if (ch->reg_prev)
            ch->reg_prev->reg_next = ch->reg_next;
        else if (registry == ch)
            registry = ch->reg_next;
        if (ch->reg_next)
            ch->reg_next->reg_prev = ch->reg_prev;
    }
    ch_clear(ch);
    PyMem_Free(ch->buf);
    Py_TYPE(ch)->tp_free((PyObject *)ch);
}

static void buf_push(ChannelObject *ch, void *o) {
    ch->buf[(ch->head + ch->len) % ch->cap] = (PyObject *)o;
    ch->len++;
}

static void *buf_pop(ChannelObject *ch) {
    void *o = ch->buf[ch->head];
    ch->buf[ch->head] = NULL;
    ch->head = (ch->head + 1) % ch->cap;
    ch->len--;
    return o;
}

/* Items travel as `void *`: a PyObject* on object channels, a raw int64 on
 * int64 channels.  A blocked sender lends its item; whoever takes it makes
 * it owned (a new reference for an object). */
static inline void *item_take(ChannelObject *ch, void *lent) {
    return ch->i64 ? lent : (void *)Py_NewRef((PyObject *)lent);
}

/* Python value -> item to lend (borrowed object, or the int64); -1 on error. */
static int item_from_py(ChannelObject *ch, PyObject *o, void **out) {
    if (!ch->i64) {
        *out = o;
        return 0;
    }
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "an int64 channel carries ints, not %.100s",
                         Py_TYPE(o)->tp_name);
        }
        return -1;
    }
    *out = (void *)(intptr_t)v;
    return 0;
}

/* Owned item -> new Python reference (after the lock is released). */
static PyObject *item_to_py(ChannelObject *ch, void *item) {
    return ch->i64 ? PyLong_FromLongLong((long long)(intptr_t)item) : (PyObject *)item;
}

/* Under ch->lock.  Returns 1 and gives the item away (owned by the receiver
 * or the buffer) if a send can complete now. */
static int try_send_locked(ChannelObject *ch, void *item) {
    gv_waiter *w = gv_wlist_claim(&ch->recvq);
    if (w) {
        w->data = item_take(ch, item);
        gv_waiter_wake(w);
        return 1;
    }
    if (ch->len < ch->cap) {
        buf_push(ch, item_take(ch, item));
        return 1;
    }
    return 0;
}

/* Under ch->lock.  Returns 1 with an owned item in *out if a value can be
 * received now. */
static int try_recv_locked(ChannelObject *ch, void **out) {
    if (ch->len > 0) {
        *out = buf_pop(ch);
        gv_waiter *w = gv_wlist_claim(&ch->sendq); /* the buffer has room again */
        if (w) {
            buf_push(ch, item_take(ch, w->data));
            gv_waiter_wake(w);
        }
        return 1;
    }
    gv_waiter *w = gv_wlist_claim(&ch->sendq);
    if (w) {
        *out = item_take(ch, w->data);
        gv_waiter_wake(w);
        return 1;
    }
    return 0;
}

static PyObject *raise_closed(const char *what) {
    PyErr_SetString(gv_ChannelClosed, what);
    return NULL;
}

static PyObject *timeout_error(const char *op) {
    PyErr_Format(PyExc_TimeoutError, "channel %s timed out", op);
    return NULL;
}

static PyObject *ch_send(ChannelObject *ch, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"item", "timeout", NULL};
    PyObject *item, *tobj = Py_None;
    double timeout;
    void *it;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:send", kwlist, &item, &tobj) ||
        gv_parse_timeout(tobj, &timeout) < 0 || item_from_py(ch, item, &it) < 0)
        return NULL;
    uint64_t deadline = gv_deadline_of(timeout);
    gv_waiter w;
    int r;
    do {
        gv_spin_lock(&ch->lock);
        if (ch->closed) {
            gv_spin_unlock(&ch->lock);
            return raise_closed("send on a closed channel");
        }
        if (try_send_locked(ch, it)) {
            gv_spin_unlock(&ch->lock);
            Py_RETURN_NONE;
        }
        gv_waiter_init(&w);
        w.data = it;
        gv_wlist_push(&ch->sendq, &w);
        r = gv_block(&ch->lock, &ch->sendq, &w, gv_time_left(deadline), GV_WAIT_CHANNEL_SEND,
                     ch->id);
    } while (r == GV_BLOCK_RETRY);
    if (r == GV_BLOCK_ERROR)
        return NULL;
    if (r == GV_BLOCK_TIMEOUT)
        return timeout_error("send");
    if (w.flags & CH_WAKE_CLOSED)
        return raise_closed("send on a closed channel");
    Py_RETURN_NONE;
}

static PyObject *ch_recv_impl(ChannelObject *ch, double timeout, int stop_iteration) {
    uint64_t deadline = gv_deadline_of(timeout);
    gv_waiter w;
    int r;
    do {
        gv_spin_lock(&ch->lock);
        void *o;
        if (try_recv_locked(ch, &o)) {
            gv_spin_unlock(&ch->lock);
            return item_to_py(ch, o);
        }
        if (ch->closed) {
            gv_spin_unlock(&ch->lock);
            if (stop_iteration)
                return NULL; /* StopIteration, implicitly */
            return raise_closed("channel closed");
        }
        gv_waiter_init(&w);
        gv_wlist_push(&ch->recvq, &w);
        r = gv_block(&ch->lock, &ch->recvq, &w, gv_time_left(deadline), GV_WAIT_CHANNEL_RECV,
                     ch->id);
    } while (r == GV_BLOCK_RETRY);
    if (r == GV_BLOCK_ERROR)
        return NULL;
    if (r == GV_BLOCK_TIMEOUT)
        return timeout_error("recv");
    if (w.flags & CH_WAKE_CLOSED) {
        if (stop_iteration)
            return NULL;
        return raise_closed("channel closed");
    }
    return item_to_py(ch, w.data);
}

static PyObject *ch_recv(ChannelObject *ch, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *tobj = Py_None;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:recv", kwlist, &tobj) ||
        gv_parse_timeout(tobj, &timeout) < 0)
        return NULL;
    return ch_recv_impl(ch, timeout, 0);
}

static PyObject *ch_iternext(ChannelObject *ch) { return ch_recv_impl(ch, -1.0, 1); }

static PyObject *ch_try_send(ChannelObject *ch, PyObject *item) {
    void *it;
    if (item_from_py(ch, item, &it) < 0)
        return NULL;
    gv_spin_lock(&ch->lock);
    if (ch->closed) {
        gv_spin_unlock(&ch->lock);
        return raise_closed("send on a closed channel");
    }
    int ok = try_send_locked(ch, it);
    gv_spin_unlock(&ch->lock);
    return PyBool_FromLong(ok);
}

/* try_recv() -> (True, value) | (False, None); ChannelClosed once drained. */
static PyObject *ch_try_recv(ChannelObject *ch, PyObject *unused) {
    (void)unused;
    gv_spin_lock(&ch->lock);
    void *o;
    int got = try_recv_locked(ch, &o);
    int closed = ch->closed;
    gv_spin_unlock(&ch->lock);
    if (got) {
        PyObject *v = item_to_py(ch, o);
        return v ? Py_BuildValue("(ON)", Py_True, v) : NULL;
    }
    if (closed)
        return raise_closed("channel closed");
    return Py_BuildValue("(OO)", Py_False, Py_None);
}

static PyObject *ch_close(ChannelObject *ch, PyObject *unused) {
    (void)unused;
    gv_spin_lock(&ch->lock);
    if (ch->closed) {
        gv_spin_unlock(&ch->lock);
        return raise_closed("close of a closed channel");
    }
    ch->closed = 1;
    gv_waiter *w;
    /* Receivers waiting means the buffer is empty: they all get "closed". */
    while ((w = gv_wlist_claim(&ch->recvq))) {
        w->flags |= CH_WAKE_CLOSED;
        w->data = NULL;
        gv_waiter_wake(w);
    }
    while ((w = gv_wlist_claim(&ch->sendq))) {
        w->flags |= CH_WAKE_CLOSED;
        gv_waiter_wake(w);
    }
    gv_spin_unlock(&ch->lock);
    Py_RETURN_NONE;
}

static Py_ssize_t ch_len(ChannelObject *ch) { return ch->len; }

static PyObject *ch_get_capacity(ChannelObject *ch, void *c) {
    (void)c;
    return PyLong_FromSsize_t(ch->cap);
}
static PyObject *ch_get_closed(ChannelObject *ch, void *c) {
    (void)c;
    return PyBool_FromLong(ch->closed);
}
static PyObject *ch_get_id(ChannelObject *ch, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(ch->id);
}
static PyObject *ch_get_name(ChannelObject *ch, void *c) {
    (void)c;
    if (ch->name)
        return Py_NewRef(ch->name);
    return PyUnicode_FromFormat("channel-%llu", (unsigned long long)ch->id);
}

static PyObject *ch_repr(ChannelObject *ch) {
    PyObject *name = ch_get_name(ch, NULL);
    if (!name)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("<gvthread.Channel id=%llu name=%R capacity=%zd len=%zd%s>",
                                       (unsigned long long)ch->id, name, ch->cap, ch->len,
                                       ch->closed ? " closed" : "");
    Py_DECREF(name);
    return r;
}

static PyObject *ch_iter(PyObject *self) { return Py_NewRef(self); }

/* Copy what inspection needs under the lock, then build Python objects. */
static PyObject *ch_info(ChannelObject *ch, Py_ssize_t preview_max);

static PyObject *ch_statistics(ChannelObject *ch, PyObject *unused) {
    (void)unused;
    return ch_info(ch, 0);
}

static PyMethodDef ch_methods[] = {
    {"send", (PyCFunction)(void (*)(void))ch_send, METH_VARARGS | METH_KEYWORDS,
     "send(item, timeout=None): block until a receiver or the buffer takes it.\n"
     "ChannelClosed if the channel is (or gets) closed; TimeoutError on timeout."},
    {"recv", (PyCFunction)(void (*)(void))ch_recv, METH_VARARGS | METH_KEYWORDS,
     "recv(timeout=None): the next item; after close, the queued ones, then ChannelClosed."},
    {"try_send", (PyCFunction)ch_try_send, METH_O, "try_send(item) -> bool, never blocks."},
    {"try_recv", (PyCFunction)ch_try_recv, METH_NOARGS,
     "try_recv() -> (True, item) or (False, None), never blocks; ChannelClosed once drained."},
    {"close", (PyCFunction)ch_close, METH_NOARGS,
     "Close: receivers drain what is queued, then get ChannelClosed; senders get it at once."},
    {"statistics", (PyCFunction)ch_statistics, METH_NOARGS,
     "dict: id, name, capacity, length, closed, senders, receivers (waiting ids)."},
    {NULL, NULL, 0, NULL},
};

static PyObject *ch_get_native_handle(ChannelObject *ch, void *c);
static PyObject *ch_get_kind(ChannelObject *ch, void *c);

static PyGetSetDef ch_getset[] = {
    {"capacity", (getter)ch_get_capacity, NULL, "buffer size; 0 is a rendezvous", NULL},
    {"closed", (getter)ch_get_closed, NULL, "True once closed", NULL},
    {"id", (getter)ch_get_id, NULL, "process-unique id", NULL},
    {"name", (getter)ch_get_name, NULL, "name given, or channel-<id>", NULL},
    {"kind", (getter)ch_get_kind, NULL, "'object', or 'int64' (shared with native GVThreads)", NULL},
    {"native_handle", (getter)ch_get_native_handle, NULL,
     "int64 channels: the address native GVThreads pass to chan_send_i64/chan_recv_i64;\n"
     "keep the Channel alive while they use it", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods ch_as_seq = {.sq_length = (lenfunc)ch_len};

static PyTypeObject ChannelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gvthread.Channel",
    .tp_basicsize = sizeof(ChannelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Channel(capacity=0, name=None): a bounded MPMC channel; capacity 0 is a\n"
              "rendezvous, as Go's unbuffered channel.  Iterating receives until closed.",
    .tp_init = (initproc)ch_init,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)ch_dealloc,
    .tp_traverse = (traverseproc)ch_traverse,
    .tp_clear = (inquiry)ch_clear,
    .tp_repr = (reprfunc)ch_repr,
    .tp_iter = ch_iter,
    .tp_iternext = (iternextfunc)ch_iternext,
    .tp_methods = ch_methods,
    .tp_getset = ch_getset,
    .tp_as_sequence = &ch_as_seq,
    .tp_weaklistoffset = offsetof(ChannelObject, weakreflist),
};

/* ------------------------------------------------------------ from native GVThreads */

/* Native GVThreads use int64 channels without the GIL: nothing below touches
 * a Python object (int64 items are plain values).  They have no timeouts, so
 * the only wake without a grant is an interrupt. */
static void spin_unlock_cb(void *l) { gv_spin_unlock(l); }

static int native_block(ChannelObject *ch, gv_wlist *list, gv_waiter *w, int kind) {
    gv_gvt *g = w->g;
    if (atomic_load(&g->intr) & GV_INT_CANCEL) {
        gv_wlist_remove(list, w);
        gv_spin_unlock(&ch->lock);
        return -2;
    }
    g->wait_kind = (uint8_t)kind;
    g->wait_obj = ch->id;
    g->park_seq = w->park_seq = atomic_load(&g->wake_seq);
    gv_park(spin_unlock_cb, &ch->lock);
    g->wait_kind = GV_WAIT_NONE;
    g->wait_obj = 0;
    gv_spin_lock(&ch->lock);
    int granted = w->granted;
    if (!granted)
        gv_wlist_remove(list, w);
    gv_spin_unlock(&ch->lock);
    return granted ? 1 : 0;
}

static gv_gvt *native_caller(ChannelObject *ch) {
    gv_gvt *g = gv_current();
    return g && g->native && ch && ch->i64 ? g : NULL;
}

int gv_chan_native_send(void *chp, int64_t v) {
    ChannelObject *ch = chp;
    gv_gvt *g = native_caller(ch);
    if (!g)
        return -3;
    for (;;) {
        gv_spin_lock(&ch->lock);
        if (ch->closed) {
            gv_spin_unlock(&ch->lock);
            return -1;
        }
        if (try_send_locked(ch, (void *)(intptr_t)v)) {
            gv_spin_unlock(&ch->lock);
            return 0;
        }
        gv_waiter w;
        memset(&w, 0, sizeof w);
        w.g = g;
        w.who = (int64_t)g->id;
        w.data = (void *)(intptr_t)v;
        gv_wlist_push(&ch->sendq, &w);
        if (native_block(ch, &ch->sendq, &w, GV_WAIT_CHANNEL_SEND) == 1)
            return (w.flags & CH_WAKE_CLOSED) ? -1 : 0;
        if (atomic_load(&g->intr) & GV_INT_CANCEL)
            return -2;
    }
}

int gv_chan_native_recv(void *chp, int64_t *out) {
    ChannelObject *ch = chp;
    gv_gvt *g = native_caller(ch);
    if (!g || !out)
        return -3;
    for (;;) {
        gv_spin_lock(&ch->lock);
        void *o;
        if (try_recv_locked(ch, &o)) {
            gv_spin_unlock(&ch->lock);
            *out = (int64_t)(intptr_t)o;
            return 0;
        }
        if (ch->closed) {
            gv_spin_unlock(&ch->lock);
            return -1;
        }
        gv_waiter w;
        memset(&w, 0, sizeof w);
        w.g = g;
        w.who = (int64_t)g->id;
        gv_wlist_push(&ch->recvq, &w);
        if (native_block(ch, &ch->recvq, &w, GV_WAIT_CHANNEL_RECV) == 1) {
            if (w.flags & CH_WAKE_CLOSED)
                return -1;
            *out = (int64_t)(intptr_t)w.data;
            return 0;
        }
        if (atomic_load(&g->intr) & GV_INT_CANCEL)
            return -2;
    }
}

static PyObject *ch_get_native_handle(ChannelObject *ch, void *c) {
    (void)c;
    if (!ch->i64) {
        PyErr_SetString(PyExc_TypeError, "only an int64 channel (kind='int64') has a native handle");
        return NULL;
    }
    return PyLong_FromVoidPtr(ch);
}

static PyObject *ch_get_kind(ChannelObject *ch, void *c) {
    (void)c;
    return Py_NewRef(ch->i64 ? str_int64 : str_object);
}

/* ------------------------------------------------------------ inspection */

static PyObject *ids_list(int64_t *ids, size_t n) {
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *v = PyLong_FromLongLong(ids[i]);
        if (!v) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, v);
    }
    return l;
}

static PyObject *ch_info(ChannelObject *ch, Py_ssize_t preview_max) {
    /* Bounded: at most 64 waiter ids a side and preview_max items. */
    enum { MAXW = 64 };
    int64_t snd[MAXW], rcv[MAXW];
    size_t ns = 0, nr = 0;
    if (preview_max > 1000)
        preview_max = 1000;
    void **items = preview_max ? PyMem_Malloc(sizeof(void *) * (size_t)preview_max) : NULL;
    if (preview_max && !items)
        return PyErr_NoMemory();
    Py_ssize_t nitems = 0;
    gv_spin_lock(&ch->lock);
    for (gv_waiter *w = ch->sendq.head; w && ns < MAXW; w = w->next)
        snd[ns++] = w->who;
    for (gv_waiter *w = ch->recvq.head; w && nr < MAXW; w = w->next)
        rcv[nr++] = w->who;
    for (; nitems < preview_max && nitems < ch->len; nitems++)
        items[nitems] = item_take(ch, ch->buf[(ch->head + nitems) % ch->cap]);
    Py_ssize_t len = ch->len;
    int closed = ch->closed;
    uint32_t nsend = ch->sendq.n, nrecv = ch->recvq.n;
    gv_spin_unlock(&ch->lock);
    PyObject *preview = PyList_New(nitems);
    for (Py_ssize_t i = 0; i < nitems; i++) {
        PyObject *v = item_to_py(ch, items[i]);
        if (preview && v)
            PyList_SET_ITEM(preview, i, v);
        else
            Py_XDECREF(v);
    }
    PyMem_Free(items);
    PyObject *name = ch_get_name(ch, NULL);
    PyObject *d = (preview && name) ? Py_BuildValue(
        "{sKsNsnsnsOsNsNsIsIsN}", "id", (unsigned long long)ch->id, "name", name,
        "capacity", ch->cap, "length", len, "closed", closed ? Py_True : Py_False,
        "senders", ids_list(snd, ns), "receivers", ids_list(rcv, nr),
        "senders_waiting", nsend, "receivers_waiting", nrecv, "items", preview) : NULL;
    if (d && PyDict_SetItemString(d, "kind", ch->i64 ? str_int64 : str_object) < 0)
        Py_CLEAR(d);
    if (!d) {
        Py_XDECREF(preview);
        if (!preview)
            Py_XDECREF(name);
    }
    return d;
}

/* channels_info(preview_max) -> [dict, ...] for every live channel. */
static PyObject *pc_channels_info(PyObject *m, PyObject *arg) {
    (void)m;
    Py_ssize_t pmax = PyLong_AsSsize_t(arg);
    if (pmax == -1 && PyErr_Occurred())
        return NULL;
    if (pmax < 0)
        pmax = 0;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    /* Collect strong references first: building the dicts may run the GC,
     * which may free channels and edit the registry. */
    PyObject *chans = PyList_New(0);
    for (ChannelObject *ch = registry; chans && ch; ch = ch->reg_next)
        if (Py_REFCNT(ch) > 0 && PyList_Append(chans, (PyObject *)ch) < 0)
            Py_CLEAR(chans);
    if (!chans) {
        Py_DECREF(out);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(chans); i++) {
        PyObject *d = ch_info((ChannelObject *)PyList_GET_ITEM(chans, i), pmax);
        if (!d || PyList_Append(out, d) < 0) {
            Py_XDECREF(d);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(d);
    }
    Py_DECREF(chans);
    return out;
}

/* ------------------------------------------------------------ select */

typedef struct {
    ChannelObject *ch;
    int is_send;
    void *val;                  /* the item to send (lent) */
} sel_case;

static uint64_t sel_rand(void) {
    static _Thread_local uint64_t s;
    if (!s)
        s = gv_now_ns() | 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static int ptr_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(ChannelObject *const *)a, y = (uintptr_t)*(ChannelObject *const *)b;
    return x < y ? -1 : x > y;
}

struct sel_park {
    ChannelObject **locks;
    int nlocks;
    gv_gvt *g;
    uint64_t deadline;
};

static void lock_all(ChannelObject **l, int n) {
    for (int i = 0; i < n; i++)
        gv_spin_lock(&l[i]->lock);
}
static void unlock_all(ChannelObject **l, int n) {
    for (int i = n - 1; i >= 0; i--)
        gv_spin_unlock(&l[i]->lock);
}

static void sel_park_unlock(void *arg) {
    struct sel_park *sp = arg;
    if (sp->deadline)
        gv_park_timer_arm(sp->g, sp->deadline);
    unlock_all(sp->locks, sp->nlocks);
}

/* Poll the cases in the order perm; under all the locks.  Returns the index
 * of the case that completed (and sets *out for a recv), -1 if none, or -2
 * with ChannelClosed set for a send on a closed channel. */
static int sel_poll(sel_case *cs, int *perm, int n, void **out) {
    for (int k = 0; k < n; k++) {
        int i = perm[k];
        ChannelObject *ch = cs[i].ch;
        if (cs[i].is_send) {
            if (ch->closed) {
                raise_closed("send on a closed channel");
                return -2;
            }
            if (try_send_locked(ch, cs[i].val)) {
                *out = NULL;
                return i;
            }
        } else {
            void *o;
            if (try_recv_locked(ch, &o)) {
                *out = o;  /* an owned item: converted after the locks go */
                return i;
            }
            if (ch->closed) {
                *out = closed_sentinel; /* borrowed, never an item */
                return i;
            }
        }
    }
    return -1;
}

/* select(cases, timeout=None, default=False) -> (index, value)
 * cases: a sequence of (channel, "recv") or (channel, "send", value). */
static PyObject *pc_select(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"cases", "timeout", "default", NULL};
    PyObject *cases_obj, *tobj = Py_None;
    int has_default = 0;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Op:select", kwlist, &cases_obj, &tobj,
                                     &has_default) ||
        gv_parse_timeout(tobj, &timeout) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(cases_obj, "select() needs a sequence of cases");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0 && !has_default && timeout < 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "select() with no cases would block forever");
        return NULL;
    }
    if (n > 1024) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "select() takes at most 1024 cases");
        return NULL;
    }
    sel_case *cs = PyMem_Calloc((size_t)n + 1, sizeof *cs);
    int *perm = PyMem_Calloc((size_t)n + 1, sizeof *perm);
    ChannelObject **locks = PyMem_Calloc((size_t)n + 1, sizeof *locks);
    gv_waiter *ws = PyMem_Calloc((size_t)n + 1, sizeof *ws);
    PyObject *result = NULL;
    if (!cs || !perm || !locks || !ws) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t clen = PyTuple_Check(c) ? PyTuple_GET_SIZE(c) : -1;
        PyObject *op = clen >= 2 ? PyTuple_GET_ITEM(c, 1) : NULL;
        if (clen < 2 || !PyObject_TypeCheck(PyTuple_GET_ITEM(c, 0), &ChannelType) ||
            !PyUnicode_Check(op)) {
            PyErr_Format(PyExc_TypeError,
                         "select case %zd must be (channel, 'recv') or (channel, 'send', value)", i);
            goto out;
        }
        cs[i].ch = (ChannelObject *)PyTuple_GET_ITEM(c, 0);
        if (clen == 2 && PyUnicode_CompareWithASCIIString(op, "recv") == 0) {
            cs[i].is_send = 0;
        } else if (clen == 3 && PyUnicode_CompareWithASCIIString(op, "send") == 0) {
            cs[i].is_send = 1;
            if (item_from_py(cs[i].ch, PyTuple_GET_ITEM(c, 2), &cs[i].val) < 0)
                goto out;
        } else {
            PyErr_Format(PyExc_TypeError,
                         "select case %zd must be (channel, 'recv') or (channel, 'send', value)", i);
            goto out;
        }
        perm[i] = (int)i;
        locks[i] = cs[i].ch;
    }
    /* Random poll order (Fisher-Yates), so no ready case is favoured. */
    for (Py_ssize_t i = n - 1; i > 0; i--) {
        int j = (int)(sel_rand() % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    qsort(locks, (size_t)n, sizeof *locks, ptr_cmp);
    int nl = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (nl == 0 || locks[nl - 1] != locks[i])
            locks[nl++] = locks[i];

    void *val = NULL;
    lock_all(locks, nl);
    int won = sel_poll(cs, perm, (int)n, &val);
    if (won != -1 || has_default || timeout == 0.0) {
        unlock_all(locks, nl);
        if (won == -2)
            goto out;
        if (won >= 0) {
            PyObject *v = cs[won].is_send ? Py_NewRef(Py_None)
                          : val == closed_sentinel ? Py_NewRef(closed_sentinel)
                                                   : item_to_py(cs[won].ch, val);
            result = v ? Py_BuildValue("(nN)", (Py_ssize_t)won, v) : NULL;
        }
        else if (has_default)
            result = Py_BuildValue("(OO)", Py_None, Py_None);
        else
            timeout_error("select");
        goto out;
    }

    /* Block on every case at once. */
    gv_select_state st = {0, -1};
    gv_gvt *g = gv_current();
    for (Py_ssize_t i = 0; i < n; i++) {
        gv_waiter_init(&ws[i]);
        ws[i].sel = &st;
        ws[i].case_index = (int)i;
        ws[i].wake_word = &ws[0].futex;
        if (cs[i].is_send)
            ws[i].data = cs[i].val;
        gv_wlist_push(cs[i].is_send ? &cs[i].ch->sendq : &cs[i].ch->recvq, &ws[i]);
    }
    int interrupted = 0, sig_error = 0;
    if (g) {
        if (atomic_load(&g->intr)) {
            interrupted = 1;
        } else {
            g->wait_kind = GV_WAIT_SELECT;
            g->wait_obj = cs[0].ch->id;
            uint32_t seq = atomic_load(&g->wake_seq);
            g->park_seq = seq;
            for (Py_ssize_t i = 0; i < n; i++)
                ws[i].park_seq = seq;
            struct sel_park sp = {locks, nl, g, 0};
            if (timeout > 0)
                sp.deadline = gv_now_ns() + (uint64_t)(timeout * 1e9) + 1;
            PyThreadState *ts = PyThreadState_Get();
            gv_py_switch_out(ts);
            gv_park(sel_park_unlock, &sp);
            gv_py_switch_in(ts);
            g->wait_kind = GV_WAIT_NONE;
            g->wait_obj = 0;
            if (sp.deadline)
                gv_park_timer_cancel(g);
            lock_all(locks, nl);
        }
    } else {
        uint64_t deadline = timeout < 0 ? UINT64_MAX : gv_now_ns() + (uint64_t)(timeout * 1e9);
        unlock_all(locks, nl);
        for (;;) {
            if (atomic_load(&ws[0].futex))
                break;
            uint64_t now = gv_now_ns();
            if (now >= deadline)
                break;
            uint64_t slice = deadline - now > 1000000000ull ? 1000000000ull : deadline - now;
            int r;
            Py_BEGIN_ALLOW_THREADS
            r = gv_futex_wait(&ws[0].futex, 0, (int64_t)slice);
            Py_END_ALLOW_THREADS
            if (r == EINTR && !atomic_load(&ws[0].futex) && PyErr_CheckSignals() < 0) {
                sig_error = 1; /* the cases are withdrawn below; a late win is undone */
                break;
            }
        }
        lock_all(locks, nl);
    }
    /* Under all locks: withdraw the cases that did not win. */
    int winner = atomic_load(&st.done) ? st.winner : -1;
    if (!atomic_load(&st.done))
        atomic_store(&st.done, 1); /* no waker may claim a case from now on */
    for (Py_ssize_t i = 0; i < n; i++)
        gv_wlist_remove(cs[i].is_send ? &cs[i].ch->sendq : &cs[i].ch->recvq, &ws[i]);
    unlock_all(locks, nl);
    if (winner >= 0) {
        gv_waiter *w = &ws[winner];
        if (sig_error) {
            /* A signal handler raised, but a case completed meanwhile: keep
             * the value (a receive cannot be undone); the exception stands. */
            if (!cs[winner].is_send && !(w->flags & CH_WAKE_CLOSED) && !cs[winner].ch->i64)
                Py_XDECREF((PyObject *)w->data);
            goto out;
        }
        if (cs[winner].is_send) {
            if (w->flags & CH_WAKE_CLOSED)
                raise_closed("send on a closed channel");
            else
                result = Py_BuildValue("(nO)", (Py_ssize_t)winner, Py_None);
        } else if (w->flags & CH_WAKE_CLOSED) {
            result = Py_BuildValue("(nO)", (Py_ssize_t)winner, closed_sentinel);
        } else {
            PyObject *v = item_to_py(cs[winner].ch, w->data);
            result = v ? Py_BuildValue("(nN)", (Py_ssize_t)winner, v) : NULL;
        }
        goto out;
    }
    if (sig_error)
        goto out;
    if (interrupted || (g && atomic_load(&g->intr))) {
        gv_deliver_interrupt(g);
        goto out;
    }
    timeout_error("select");
out:
    PyMem_Free(cs);
    PyMem_Free(perm);
    PyMem_Free(locks);
    PyMem_Free(ws);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef pc_functions[] = {
    {"select", (PyCFunction)(void (*)(void))pc_select, METH_VARARGS | METH_KEYWORDS,
     "select(cases, timeout=None, default=False) -> (index, value)\n\n"
     "cases: (channel, 'recv') or (channel, 'send', value).  Waits until one case can\n"
     "complete; when several can, picks one at random, as Go does.  A recv case on a\n"
     "closed, drained channel completes with gvthread.CLOSED.  default=True returns\n"
     "(None, None) at once if none is ready; a timeout raises TimeoutError."},
    {"channels_info", pc_channels_info, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

int gv_pychan_register(PyObject *m) {
    if (PyType_Ready(&ChannelType) < 0)
        return -1;
    gv_ChannelClosed = PyErr_NewExceptionWithDoc(
        "gvthread.ChannelClosed",
        "Receiving from a closed, drained channel, or sending on a closed one.", PyExc_Exception,
        NULL);
    closed_sentinel = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    str_int64 = PyUnicode_InternFromString("int64");
    str_object = PyUnicode_InternFromString("object");
    if (!str_int64 || !str_object)
        return -1;
    if (!gv_ChannelClosed || !closed_sentinel ||
        PyModule_AddObjectRef(m, "ChannelClosed", gv_ChannelClosed) < 0 ||
        PyModule_AddObjectRef(m, "CLOSED", closed_sentinel) < 0 ||
        PyModule_AddObjectRef(m, "Channel", (PyObject *)&ChannelType) < 0 ||
        PyModule_AddFunctions(m, pc_functions) < 0)
        return -1;
    return 0;
}
