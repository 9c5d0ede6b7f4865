/* pycompile.c -- compile(), eval() and exec() of source text, on a borrowed stack.
 *
 * CPython's parser and compiler recurse in C with bounds that ignore the
 * stack they run on (stack.c, "borrowed stacks", has the figures): inside a
 * GVThread a legal but deeply nested source crashed the process instead of
 * raising.  A Runtime therefore replaces builtins.compile, eval and exec with
 * these wrappers, once per process.  Outside a Python GVThread's own slot
 * they only forward.  Inside one, compile() runs whole on a borrowed 8 MiB
 * stack; eval() and exec() of a str or bytes compile it there exactly as they
 * would (eval strips leading blanks; "<string>"; the caller's __future__
 * flags, since a C wrapper pushes no frame) and then run the code object on
 * the GVThread's own stack, where the recursion bound holds.  Code objects
 * and everything else go straight through, so every error message and
 * result is CPython's own (arguments eval/exec reject before parsing go
 * straight through too).  One difference: audit hooks see a "compile" event
 * for eval/exec of source inside GVThreads.  The wrappers keep the originals' names, module,
 * __self__ and signature text, so inspect, pickle and repr see builtins.
 */
#include "pybridge.h"

enum { W_COMPILE, W_EVAL, W_EXEC, W_N };
static const char *const w_names[W_N] = {"compile", "eval", "exec"};
static PyObject *w_orig[W_N]; /* the replaced builtins (owned) */

/* The Python GVThread calling, if it runs on its own slot (not already on a
 * borrowed stack, and with a slot smaller than a borrowed stack). */
static gv_gvt *on_small_stack(void) {
    gv_gvt *g = gv_current();
    if (!g || g->native || g->slot == GV_NO_SLOT)
        return NULL;
    gv_runtime *rt = g->rt;
    if (rt->cfg.stack_size >= GV_BIGSTACK_SIZE)
        return NULL;
    char *base = gv_slot_base(&rt->slots, g->slot);
    char *sp = __builtin_frame_address(0);
    return sp >= base && sp < base + rt->slots.slot_size ? g : NULL;
}

/* The recursion budget while on the borrowed stack.  A GVThread starts with
 * its counter cut to what its slot holds (set_recursion_bound, pybridge.c),
 * and the compiler sizes its own depth limit from that counter, so on a slot
 * it gave up on ~100-deep literals: give the call the budget of a plain
 * thread, capped at what 8 MiB holds whatever sys.setrecursionlimit says
 * (3.11's compiler allows 3 levels per unit; 4,000 units took ~3 MiB here). */
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
    int units;              /* the slot's budget, rt->py_recursion_units */
};

static void vcall_run(void *p) {
    struct vcall *v = p;
    PyThreadState *ts = PyThreadState_Get();
    int plain = PLAIN_UNITS(ts) < BIG_UNITS_CAP ? PLAIN_UNITS(ts) : BIG_UNITS_CAP;
    int extra = plain > v->units ? plain - v->units : 0;
    REMAINING(ts) += extra;
    v->res = PyObject_Vectorcall(v->fn, v->args, v->nargsf, v->kwnames);
    REMAINING(ts) -= extra; /* balanced by CPython across the call */
}

static PyObject *call_deep(PyObject *fn, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    gv_gvt *g = on_small_stack();
    if (g) {
        struct vcall v = {fn, args, nargsf, kwnames, NULL, g->rt->py_recursion_units};
        if (gv_call_on_bigstack(g, vcall_run, &v))
            return v.res;
        /* No stack to borrow (mmap failed): CPython's own behaviour. */
    }
    return PyObject_Vectorcall(fn, args, nargsf, kwnames);
}

static PyObject *w_compile(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames) {
    (void)self;
    return call_deep(w_orig[W_COMPILE], args, (size_t)nargs, kwnames);
}

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

/* Would eval/exec reject these arguments before parsing?  Then the original
 * must see them first, so that its TypeError wins over a SyntaxError. */
static int rejected_before_parsing(PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames) {
    PyObject *g = arg_of(args, nargs, kwnames, 1, "globals");
    PyObject *l = arg_of(args, nargs, kwnames, 2, "locals");
    return (g && g != Py_None && !PyDict_Check(g)) ||
           (l && l != Py_None && !PyMapping_Check(l)) ||
           arg_of(args, nargs, kwnames, 3, "closure") != NULL; /* exec: code objects only */
}

static PyObject *run_source(int which, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    PyObject *fn = w_orig[which];
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *copy[8];
    if (nargs < 1 || total > 8 || !(PyUnicode_Check(args[0]) || PyBytes_Check(args[0])) ||
        !on_small_stack() || rejected_before_parsing(args, nargs, kwnames))
        return PyObject_Vectorcall(fn, args, (size_t)nargs, kwnames);
    PyObject *src = which == W_EVAL ? eval_source(args[0]) : Py_NewRef(args[0]);
    if (!src)
        return NULL;
    PyObject *cargs[3] = {src, NULL, NULL};
    cargs[1] = PyUnicode_FromString("<string>");
    cargs[2] = PyUnicode_FromString(which == W_EVAL ? "eval" : "exec");
    PyObject *code = cargs[1] && cargs[2] ? call_deep(w_orig[W_COMPILE], cargs, 3, NULL) : NULL;
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
};

PyObject *gv_py_install_compile_guard(PyObject *m, PyObject *unused) {
    (void)m;
    (void)unused;
    if (w_orig[W_COMPILE])
        Py_RETURN_NONE; /* once per process: the wrappers forward outside GVThreads */
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (!builtins)
        return NULL;
    PyObject *orig[W_N] = {NULL}, *wrap[W_N] = {NULL}, *res = NULL;
    PyObject *modname = PyUnicode_FromString("builtins");
    if (!modname)
        goto out;
    for (int i = 0; i < W_N; i++) {
        orig[i] = PyObject_GetAttrString(builtins, w_names[i]);
        if (!orig[i])
            goto out;
        /* The original's raw doc carries its signature line (__text_signature__). */
        if (PyCFunction_Check(orig[i]))
            w_defs[i].ml_doc = ((PyCFunctionObject *)orig[i])->m_ml->ml_doc;
        wrap[i] = PyCFunction_NewEx(&w_defs[i], builtins, modname);
        if (!wrap[i])
            goto out;
    }
    for (int i = 0; i < W_N; i++) {
        if (PyObject_SetAttrString(builtins, w_names[i], wrap[i]) < 0) {
            for (int j = 0; j < i; j++) /* all or nothing */
                PyObject_SetAttrString(builtins, w_names[j], orig[j]);
            goto out;
        }
    }
    for (int i = 0; i < W_N; i++)
        w_orig[i] = Py_NewRef(orig[i]);
    res = Py_NewRef(Py_None);
out:
    for (int i = 0; i < W_N; i++) {
        Py_XDECREF(orig[i]);
        Py_XDECREF(wrap[i]);
    }
    Py_XDECREF(modname);
    Py_DECREF(builtins);
    return res;
}
