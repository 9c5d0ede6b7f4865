"""cffi builder (API mode) for gvthread._native.

Environment switches, read at build time (pip install / setup.py build_ext):
  GVTHREAD_BUILD=debug   assertions on (-UNDEBUG), -O1 -g, ASan + UBSan
  GVTHREAD_CTX=ucontext  the portable context switch instead of the asm one
Warnings are errors in every build.
"""
import os
import re
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["ctx.c", "stack.c", "sched.c", "wait.c", "timer.c", "runtime.c", "pybridge.c",
           "pywait.c", "pychan.c", "preempt.c", "pygilstate.c",
           "pymonitor.c", "pytrace.c", "pycompile.c"]


def _cdef() -> str:
    with open(os.path.join(HERE, "gv.h")) as f:
        text = f.read()
    block = re.search(r"/\* GV_CDEF_BEGIN \*/(.*)/\* GV_CDEF_END \*/", text, re.S).group(1)
    # cffi's parser wants plain declarations: drop comments, keep #defines of ints.
    block = re.sub(r"/\*.*?\*/", "", block, flags=re.S)
    return block


def _flags():
    debug = os.environ.get("GVTHREAD_BUILD", "") == "debug"
    cflags = ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
              "-Wno-missing-field-initializers", "-fno-strict-aliasing",
              # Nothing but cffi's module init needs exporting; hidden symbols
              # also spare every internal call a trip through the PLT.
              "-fvisibility=hidden"]
    macros = [("_CFFI_NO_LIMITED_API", None), ("_GNU_SOURCE", None)]
    ldflags = []
    if debug:
        cflags += ["-O1", "-g", "-UNDEBUG", "-fno-omit-frame-pointer",
                   "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        ldflags += ["-fsanitize=address,undefined"]
        macros.append(("GV_DEBUG", "1"))
    else:
        cflags += ["-O2"]
    if os.environ.get("GVTHREAD_CTX", "") == "ucontext":
        macros.append(("GV_FORCE_UCONTEXT", "1"))
    return cflags, macros, ldflags


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
_cflags, _macros, _ldflags = _flags()
ffibuilder.set_source(
    "gvthread._native",
    '#include "gv.h"\n',
    sources=[os.path.join("native", s) for s in SOURCES],
    include_dirs=[HERE, os.path.join(os.path.dirname(HERE), "gvthread", "include"),
                  os.path.join(sysconfig.get_paths()["include"])],
    define_macros=_macros,
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
    py_limited_api=False,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
