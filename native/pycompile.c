/* pycompile.c -- compile(), eval() and exec() of source text, and marshal,
 * on a borrowed stack.
 *
 * CPython's parser and compiler recurse in C with bounds that ignore the
 * stack they run on (stack.c, "borrowed stacks", has the figures): inside a
 * GVThread a legal but deeply nested source crashed the process instead of
 * raising.  marshal likewise bounds its depth at 2,000 levels, sized for a
 * main thread.  A Runtime therefore replaces builtins.compile, eval and exec
 * and marshal.dumps, loads, dump and load with these wrappers, once per
 * process.  Outside a Python GVThread with little of its own stack left
 * (on_small_stack) they only forward.  Inside one, compile() and marshal run
 * whole on a borrowed 8 MiB stack; eval() and
 * exec() of a str or bytes compile it there exactly as they would (eval
 * strips leading blanks; "<string>"; the caller's __future__ flags, since a C
 * wrapper pushes no frame) and then run the code object on the GVThread's
 * own stack, where the recursion bound holds.  Code objects and everything
 * else go straight through, so every error message and result is CPython's
 * own (arguments eval/exec reject before parsing go straight through too).
 * One difference: audit hooks see a "compile" event for eval/exec of source
 * inside GVThreads.  The wrappers keep the originals' names, module, __self__
 * and signature text, so inspect, pickle and repr see the originals.
 */
#include "pybridge.h"

enum { W_COMPILE, W_EVAL, W_EXEC, W_DUMPS, W_LOADS, W_DUMP, W_LOAD, W_N };
static const char *const w_modules[W_N] = {"builtins", "builtins", "builtins", "marshal",
                                           "marshal", "marshal", "marshal"};
static const char *const w_names[W_N] = {"compile", "eval", "exec", "dumps",
                                         "loads", "dump", "load"};
static PyObject *w_orig[W_N]; /* the replaced functions (owned) */
static PyObject *s_builtins;  /* "__builtins__", interned */

/* The Python GVThread calling, if it runs on its own stack (not already on a
 * borrowed one) with less than half a borrowed stack left below it.  A
 * GVThread on the default 8 MiB stack parses and compiles on its own stack
 * unless it is already deep; the borrowed stack earns its place for
 * GVThreads spawned with small stacks and for deep callers. */
static gv_gvt *on_small_stack(void) {
    gv_gvt *g = gv_current();
    if (!g || g->native || g->slot == GV_NO_SLOT)
        return NULL;
    gv_runtime *rt = g->rt;
    char *base = g->own_map ? g->own_map : gv_slot_base(&rt->slots, g->slot);
    size_t len = g->own_map ? g->own_len : rt->slots.slot_size;
    char *sp = __builtin_frame_address(0);
    if (sp < base || sp >= base + len)
        return NULL; /* on a borrowed stack already */
    return (size_t)(sp - (char *)g->stack_lo) < GV_BIGSTACK_SIZE / 2 ? g : NULL;
}

/* The recursion budget while on the borrowed stack.  A GVThread starts with
 * its counter cut to what its slot holds (set_recursion_bound, pybridge.c),
 * and the compiler sizes its own depth limit from that counter, so on a slot
 * it gave up on ~100-deep literals: give the call the budget of a plain
 * thread, capped so that 8 MiB holds it whatever sys.setrecursionlimit says
 * (with 4,000 units, the deepest compile shapes of deep_source.py needed
 * 1-2 MiB on a 3.11 thread here). */
#define BIG_UNITS_CAP 4000
#if PY_VERSION_HEX >= 0x030D0000
#define PLAIN_UNITS(ts) Py_C_RECURSION_LIMIT
#define REMAINING(ts) ((ts)->c_recursion_remaining)
#elif PY_VERSION_HEX >= 0x030C0000
#define PLAIN_UNITS(ts) C_RECURSION_LIMIT
#define REMAINING(ts) ((ts)->c_recursion_remaining)
#else
#define PLAIN_UNITS(ts) ((ts)->recursion_limit)
#define REMAINING(ts) ((ts)->recursion_remaining)
#endif

struct vcall {
    PyObject *fn;
    PyObject *const *args;
    size_t nargsf;
    PyObject *kwnames;
    PyObject *res;
    gv_gvt *g;
};

static void vcall_run(void *p) {
    struct vcall *v = p;
    PyThreadState *ts = PyThreadState_Get();
    int units = v->g->rec_units;
    int plain = PLAIN_UNITS(ts) < BIG_UNITS_CAP ? PLAIN_UNITS(ts) : BIG_UNITS_CAP;
    int extra = plain > units ? plain - units : 0;
    REMAINING(ts) += extra;
    v->g->big_extra = extra; /* for sys.setrecursionlimit called in here (pybridge.c) */
    v->res = PyObject_Vectorcall(v->fn, v->args, v->nargsf, v->kwnames);
    v->g->big_extra = 0;
    REMAINING(ts) -= extra; /* balanced by CPython across the call */
}

/* fn(*args) on a borrowed stack for g (from on_small_stack), or here if g is NULL. */
static PyObject *call_deep(gv_gvt *g, PyObject *fn, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    if (g) {
        struct vcall v = {fn, args, nargsf, kwnames, NULL, g};
        if (gv_call_on_bigstack(g, vcall_run, &v))
            return v.res;
        /* No stack to borrow (mmap failed): CPython's own behaviour. */
    }
    return PyObject_Vectorcall(fn, args, nargsf, kwnames);
}

/* Wrappers that make the whole call on a borrowed stack. */
#define WHOLE_CALL(fname, idx)                                                              \
    static PyObject *fname(PyObject *self, PyObject *const *args, Py_ssize_t nargs,        \
                           PyObject *kwnames) {                                             \
        (void)self;                                                                         \
        return call_deep(on_small_stack(), w_orig[idx], args, (size_t)nargs, kwnames);      \
    }
WHOLE_CALL(w_compile, W_COMPILE)
/* marshal bounds its own recursion at 2,000 levels, sized for a main thread's stack. */
WHOLE_CALL(w_dumps, W_DUMPS)
WHOLE_CALL(w_loads, W_LOADS)
WHOLE_CALL(w_dump, W_DUMP)
WHOLE_CALL(w_load, W_LOAD)

/* eval(source) skips leading spaces and tabs before parsing; compile() does not. */
static PyObject *eval_source(PyObject *src) {
    if (PyUnicode_Check(src)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(src), i = 0;
        while (i < n) {
            Py_UCS4 ch = PyUnicode_READ_CHAR(src, i);
            if (ch != ' ' && ch != '\t')
                break;
            i++;
        }
        return PyUnicode_Substring(src, i, n);
    }
    const char *s = PyBytes_AS_STRING(src);
    Py_ssize_t n = PyBytes_GET_SIZE(src), i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return PyBytes_FromStringAndSize(s + i, n - i);
}

/* Argument `pos` (positional) or keyword `name`, or NULL. */
static PyObject *arg_of(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                        Py_ssize_t pos, const char *name) {
    if (pos < nargs)
        return args[pos];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++)
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), name) == 0)
            return args[nargs + i];
    return NULL;
}

/* May eval/exec of this call be split into a compile here and a run of the
 * code object?  Only if CPython would reach the parser with these arguments:
 * otherwise its own error (keywords it refuses, a globals that is no dict, no
 * frame to take globals from) must win over a SyntaxError, so the call goes
 * straight through.  A dict globals gets its __builtins__ first, as CPython
 * does before parsing.  -1: error set. */
static int splittable(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 1 || nargs > 3)
        return 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
#if PY_VERSION_HEX >= 0x030D0000 /* 3.13 takes globals= and locals= */
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "globals") == 0 && nargs < 2)
            continue;
        if (PyUnicode_CompareWithASCIIString(k, "locals") == 0 && nargs < 3)
            continue;
#endif
        return 0;
    }
    PyObject *g = arg_of(args, nargs, kwnames, 1, "globals");
    PyObject *l = arg_of(args, nargs, kwnames, 2, "locals");
    if (l && l != Py_None && !PyMapping_Check(l))
        return 0;
    if (!g || g == Py_None)
        return PyEval_GetFrame() != NULL;
    if (!PyDict_Check(g))
        return 0;
    int has = PyDict_Contains(g, s_builtins);
    if (has == 0)
        has = PyDict_SetItem(g, s_builtins, PyEval_GetBuiltins()) == 0 ? 1 : -1;
    return has < 0 ? -1 : 1;
}

static PyObject *run_source(int which, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    PyObject *fn = w_orig[which];
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *copy[8];
    gv_gvt *g = NULL;
    if (nargs < 1 || total > 8 || !(PyUnicode_Check(args[0]) || PyBytes_Check(args[0])) ||
        !(g = on_small_stack()))
        return PyObject_Vectorcall(fn, args, (size_t)nargs, kwnames);
    int split = splittable(args, nargs, kwnames);
    if (split < 0)
        return NULL;
    if (!split)
        return PyObject_Vectorcall(fn, args, (size_t)nargs, kwnames);
    PyObject *src = which == W_EVAL ? eval_source(args[0]) : Py_NewRef(args[0]);
    if (!src)
        return NULL;
    PyObject *cargs[3] = {src, NULL, NULL};
    cargs[1] = PyUnicode_FromString("<string>");
    cargs[2] = PyUnicode_FromString(which == W_EVAL ? "eval" : "exec");
    PyObject *code = cargs[1] && cargs[2] ? call_deep(g, w_orig[W_COMPILE], cargs, 3, NULL) : NULL;
    Py_DECREF(src);
    Py_XDECREF(cargs[1]);
    Py_XDECREF(cargs[2]);
    if (!code)
        return NULL;
    copy[0] = code;
    for (Py_ssize_t i = 1; i < total; i++)
        copy[i] = args[i];
    PyObject *res = PyObject_Vectorcall(fn, copy, (size_t)nargs, kwnames);
    Py_DECREF(code);
    return res;
}

static PyObject *w_eval(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames) {
    (void)self;
    return run_source(W_EVAL, args, nargs, kwnames);
}

static PyObject *w_exec(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames) {
    (void)self;
    return run_source(W_EXEC, args, nargs, kwnames);
}

static PyMethodDef w_defs[W_N] = {
    {"compile", (PyCFunction)(void (*)(void))w_compile, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"eval", (PyCFunction)(void (*)(void))w_eval, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"exec", (PyCFunction)(void (*)(void))w_exec, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"dumps", (PyCFunction)(void (*)(void))w_dumps, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"loads", (PyCFunction)(void (*)(void))w_loads, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"dump", (PyCFunction)(void (*)(void))w_dump, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"load", (PyCFunction)(void (*)(void))w_load, METH_FASTCALL | METH_KEYWORDS, NULL},
};

/* Undo the first n replacements, keeping the error that stopped the install. */
static void undo(PyObject **mods, PyObject **orig, int n) {
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
#endif
    for (int j = 0; j < n; j++)
        if (PyObject_SetAttrString(mods[j], w_names[j], orig[j]) < 0)
            PyErr_Clear();
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(t, v, tb);
#endif
}

PyObject *gv_py_install_compile_guard(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    if (w_orig[W_COMPILE])
        Py_RETURN_NONE; /* once per process: the wrappers forward outside GVThreads */
    if (!s_builtins && !(s_builtins = PyUnicode_InternFromString("__builtins__")))
        return NULL;
    PyObject *mods[W_N] = {NULL}, *orig[W_N] = {NULL}, *wrap[W_N] = {NULL}, *res = NULL;
    int set = 0;
    for (int i = 0; i < W_N; i++) {
        mods[i] = PyImport_ImportModule(w_modules[i]);
        PyObject *modname = mods[i] ? PyUnicode_FromString(w_modules[i]) : NULL;
        orig[i] = modname ? PyObject_GetAttrString(mods[i], w_names[i]) : NULL;
        if (orig[i] && PyCFunction_Check(orig[i])) /* its raw doc carries the signature */
            w_defs[i].ml_doc = ((PyCFunctionObject *)orig[i])->m_ml->ml_doc;
        wrap[i] = orig[i] ? PyCFunction_NewEx(&w_defs[i], mods[i], modname) : NULL;
        Py_XDECREF(modname);
        if (!wrap[i])
            goto out;
    }
    for (; set < W_N; set++)
        if (PyObject_SetAttrString(mods[set], w_names[set], wrap[set]) < 0)
            goto out;
    for (int i = 0; i < W_N; i++)
        w_orig[i] = Py_NewRef(orig[i]);
    res = Py_NewRef(Py_None);
out:
    if (!res)
        undo(mods, orig, set); /* all or nothing */
    for (int i = 0; i < W_N; i++) {
        Py_XDECREF(mods[i]);
        Py_XDECREF(orig[i]);
        Py_XDECREF(wrap[i]);
    }
    return res;
}

PyObject *gv_py_borrowed_stacks(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    int mapped, pooled;
    gv_bigstack_counts(&mapped, &pooled);
    return Py_BuildValue("{sisi}", "mapped", mapped, "pooled", pooled);
}
