"""A C kernel run as native GVThreads next to Python GVThreads.

Each row of a Mandelbrot image is computed by a C function running as a native
GVThread: no GIL, in parallel on every worker, preemptible at its safepoints.
Finished row numbers come back to Python over an int64 channel, while a Python
GVThread keeps ticking every 10 ms to show it is not starved.

    python examples/native/mandel_native.py [rows] [workers]
"""
import os
import sys
import tempfile
import time

import cffi

import gvthread

SOURCE = r"""
#include <stdint.h>
#include "gvthread_native.h"

typedef struct { uint64_t api, chan; int row, width, height, maxiter; uint8_t *out; } task;

void render_row(void *arg) {
    task *t = arg;
    const gv_native_api *api = (const gv_native_api *)(uintptr_t)t->api;
    double y0 = (t->row / (double)t->height) * 2.4 - 1.2;
    for (int x = 0; x < t->width; x++) {
        double x0 = (x / (double)t->width) * 3.5 - 2.5, a = 0, b = 0;
        int i = 0;
        while (a * a + b * b <= 4.0 && i < t->maxiter) {
            double na = a * a - b * b + x0;
            b = 2 * a * b + y0;
            a = na;
            i++;
        }
        t->out[x] = (uint8_t)(i * 255 / t->maxiter);
        if ((x & 63) == 0 && api->safepoint())   /* yield if the slice ran out */
            return;                               /* cancelled */
    }
    api->chan_send_i64((void *)(uintptr_t)t->chan, t->row);
}
"""


def build():
    ffi = cffi.FFI()
    ffi.cdef("""
        typedef struct { uint64_t api, chan; int row, width, height, maxiter; uint8_t *out; } task;
        void render_row(void *arg);
    """)
    ffi.set_source("_mandel_native", SOURCE, include_dirs=[gvthread.native_include()],
                   extra_compile_args=["-O2"])
    tmp = tempfile.mkdtemp(prefix="gvthread-native-example-")
    path = ffi.compile(tmpdir=tmp)
    sys.path.insert(0, os.path.dirname(path))
    import _mandel_native
    return _mandel_native


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 240
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else None
    mod = build()
    ffi, lib = mod.ffi, mod.lib
    width, maxiter = rows * 3, 3000
    image = [ffi.new("uint8_t[]", width) for _ in range(rows)]
    with gvthread.Runtime(workers=workers) as rt:
        done = gvthread.Channel(rows, kind="int64")
        tasks = [ffi.new("task *", {"api": gvthread.native_api(), "chan": done.native_handle,
                                    "row": r, "width": width, "height": rows,
                                    "maxiter": maxiter, "out": image[r]})
                 for r in range(rows)]
        gaps = []

        def ticker(stop):
            last = time.monotonic()
            while not stop:
                gvthread.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        stop = []
        tick = rt.spawn(ticker, stop, name="ticker")
        t0 = time.monotonic()
        for t in tasks:
            rt.spawn_native(lib.render_row, t, name="row")
        finished = sorted(done.recv() for _ in range(rows))
        elapsed = time.monotonic() - t0
        stop.append(True)
        tick.join()
        st = rt.stats()
    assert finished == list(range(rows))
    shades = " .:-=+*#%@"
    for r in range(0, rows, max(1, rows // 24)):
        line = bytes(image[r])
        print("".join(shades[min(9, v * 10 // 256)] for v in line[::max(1, width // 72)]))
    print(f"\n{rows} rows x {width} px on {rt.workers} workers in {elapsed:.2f} s; "
          f"Python ticker: {len(gaps)} ticks, worst gap {max(gaps) * 1e3:.1f} ms; "
          f"cooperative preemptions {st['coop_preemptions']}")


if __name__ == "__main__":
    main()
