"""Native GVThread figures: C<->C yield and channel ping-pong vs Go, snapshot latency.

The C side is a small cffi module (``SOURCE`` below) whose functions run as native
GVThreads (``Runtime.spawn_native``) and reach the runtime through
``gvthread.native_api()`` (``gvthread/include/gvthread_native.h``). It is compiled **once
per run**, by the first child that needs it, into a cache directory under /tmp keyed by
a hash of everything that goes into it (the C source and cdef, the header, the Python
ABI and cffi version): ``/tmp/gvthread-bench-native-<uid>/<key>/``. A later run with the
same key reuses it; a build goes to a private temporary directory first and is renamed
into place, so concurrent runs never see half a module. The Go peer is built the same
way (``go build``, once per source hash) into the same cache.

Figures (every sample in a fresh child, as in ``bench.core``):

- ``native.yield``: two native GVThreads on ``Runtime(workers=1)`` each call
  ``api->yield_now()`` n times; ns per switch (2n switches). The clock runs in C, from
  the moment both have started (a barrier) until the second one finishes. Peer: Go's
  ``runtime.Gosched`` ping-pong, two goroutines with ``GOMAXPROCS=1``, timed the same
  way. Target (issue 4): <= 40 ns; the goal, 20 ns, is reported as ideal.
- ``native.chan_pingpong``: two native GVThreads on ``Runtime(workers=1)`` bounce an
  int64 over two unbuffered ``Channel(0, kind="int64")`` (ping and pong) n round trips;
  messages per second (2n messages). Peer: the same in Go, two unbuffered ``chan int64``,
  ``GOMAXPROCS=1``. Target: ratio >= 1.0.
- ``native.snapshot_p50`` / ``_p99`` / ``_call_p99``: on ``Runtime()`` (default
  workers), 4 busy Python GVThreads (a loop built by ``gvthread.compile``, so it has
  safepoints) and 4 busy native GVThreads (a C loop calling ``api->safepoint()`` every
  4096 iterations) run while the main thread (an ordinary thread) calls
  ``Runtime.snapshot()`` ``calls`` times, sleeping ``pause`` before each. p50 and p99
  (nearest rank, ms) are taken from the moment the sleep is due to the moment the call
  returns: the wake-up, getting the GIL back from the Python GVThreads (up to the 5 ms
  switch interval, and more) and the call itself; that is what a caller on an ordinary
  thread waits. ``_call_p99`` is the call alone, once the GIL is held. Peer ("idle"):
  the same calls on a runtime with nothing running. Target: p99 <= 50 ms. The three
  lines read the same runs (one run per side and repeat, see ``snapshot_latency``).

Who spawns the natives (``spawn_from``). The ping-pong figures have one native spawn its
peer with ``api->spawn`` (both then share the worker's local native queue);
``spawn_from="main"`` spawns both with ``Runtime.spawn_native`` from the main thread
instead. (When this suite was written, natives requeued locally starved the global native
queue, and the main-thread variant hung; the runtime now requeues them globally when
others wait there, and both variants finish. ``info["stalled"]`` in the snapshot figure
lists natives that made no progress during a sample: it should stay empty.)

When ``go`` is not on PATH (checked when the suite is loaded, and again in the child),
the Go peers are labelled ``go:absent``, report 0 and carry no ratio target, so the line
is still printed and only our own targets decide it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ._runner import Figure, Side, Target
from ._util import gc_paused, scratch_dir, shared_sample

__all__ = ["FIGURES"]

_MODULE = "_gvbenchnat"

CDEF = """
typedef struct {
    uint64_t api;       /* gvthread.native_api() */
    uint64_t n;         /* iterations / round trips */
    uint64_t ping;      /* Channel(0, kind="int64").native_handle */
    uint64_t pong;
    int arrived;        /* barrier */
    int done;
    uint64_t t0, t1;    /* CLOCK_MONOTONIC ns: both started .. the second finished */
    int rc;             /* first nonzero channel return code, or a check failure (-100) */
    int stop;           /* busy loops run until this is set */
    uint64_t iters;     /* busy loops: iterations so far (relaxed atomic) */
    uint64_t safepoints;
    int cancelled;
    int exited;         /* busy loops: set on the way out */
    uint64_t id;        /* api->spawn's id, when a launcher spawned it */
} bench;
void yielder(void *arg);
void pinger(void *arg);
void ponger(void *arg);
void yield_pair(void *arg);
void pingpong_pair(void *arg);
void busy(void *arg);
void busy_launcher(void *arg);
uint64_t load_iters(bench *b);
void set_stop(bench *b);
typedef struct {
    uint64_t end_tsc;   /* spin until the TSC reaches this */
    uint64_t thresh;    /* record gaps longer than this many TSC ticks */
    uint64_t cap;       /* room in gap[] and forced[] */
    uint64_t *gap;      /* gap lengths, TSC ticks */
    uint8_t *forced;    /* 1: a forced preemption happened inside that gap */
    uint64_t ngaps;
    uint64_t nforced;
    uint64_t iters;
    int supported;      /* 0: not built for x86_64 */
    int ready, done;    /* signal_spin: started / finished */
    uint64_t period_ns; /* signal_sender: one signal this often */
    uint64_t sent;
    uint64_t tid;       /* signal_spin's pthread_t */
} fspin;
void forced_spin(void *arg);
void signal_spin(fspin *f);
void signal_sender(fspin *f);
uint64_t tsc_now(void);
void fspin_range(uint64_t *lo, uint64_t *hi);
"""

SOURCE = r"""
#include <stdint.h>
#include <time.h>
#include "gvthread_native.h"
typedef struct {
    uint64_t api; uint64_t n; uint64_t ping; uint64_t pong;
    int arrived; int done; uint64_t t0, t1; int rc; int stop;
    uint64_t iters; uint64_t safepoints; int cancelled; int exited; uint64_t id;
} bench;
static const gv_native_api *A(bench *b) { return (const gv_native_api *)(uintptr_t)b->api; }
static uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
/* Both players arrive, yielding until the other one has; the first one past the
 * barrier starts the clock. */
static void barrier(bench *b) {
    const gv_native_api *api = A(b);
    __atomic_add_fetch(&b->arrived, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->arrived, __ATOMIC_SEQ_CST) < 2) api->yield_now();
    uint64_t zero = 0, t = now_ns();
    __atomic_compare_exchange_n(&b->t0, &zero, t, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static void finish(bench *b) {
    uint64_t t = now_ns();
    if (__atomic_add_fetch(&b->done, 1, __ATOMIC_SEQ_CST) == 2)
        __atomic_store_n(&b->t1, t, __ATOMIC_SEQ_CST);
}
void yielder(void *arg) {
    bench *b = arg; const gv_native_api *api = A(b);
    barrier(b);
    void (*yield_now)(void) = api->yield_now;
    for (uint64_t i = 0; i < b->n; i++) yield_now();
    finish(b);
}
static void fail(bench *b, int rc) {
    int zero = 0;
    __atomic_compare_exchange_n(&b->rc, &zero, rc, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
void pinger(void *arg) {
    bench *b = arg; const gv_native_api *api = A(b);
    void *ping = (void *)(uintptr_t)b->ping, *pong = (void *)(uintptr_t)b->pong;
    int rc; int64_t v;
    barrier(b);
    for (uint64_t i = 0; i < b->n; i++) {
        if ((rc = api->chan_send_i64(ping, (int64_t)i)) != 0) { fail(b, rc); break; }
        if ((rc = api->chan_recv_i64(pong, &v)) != 0) { fail(b, rc); break; }
        if (v != (int64_t)i + 1) { fail(b, -100); break; }
    }
    finish(b);
}
void ponger(void *arg) {
    bench *b = arg; const gv_native_api *api = A(b);
    void *ping = (void *)(uintptr_t)b->ping, *pong = (void *)(uintptr_t)b->pong;
    int rc; int64_t v;
    barrier(b);
    for (uint64_t i = 0; i < b->n; i++) {
        if ((rc = api->chan_recv_i64(ping, &v)) != 0) { fail(b, rc); break; }
        if ((rc = api->chan_send_i64(pong, v + 1)) != 0) { fail(b, rc); break; }
    }
    finish(b);
}
/* Spins until stop is set, with a safepoint every 4096 iterations. */
void busy(void *arg) {
    bench *b = arg; const gv_native_api *api = A(b);
    uint64_t x = 1, i = 0;
    while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        if ((++i & 0xfff) == 0) {
            __atomic_store_n(&b->iters, i, __ATOMIC_RELAXED);
            b->safepoints++;
            if (api->safepoint()) { b->cancelled = 1; break; }
        }
    }
    __atomic_store_n(&b->iters, i + (x == 0), __ATOMIC_RELAXED);
    __atomic_store_n(&b->exited, 1, __ATOMIC_SEQ_CST);
}
/* Launchers: spawn the peer(s) with api->spawn, from inside a native GVThread, so
 * that they go to this worker's native queue (see spawn_from in the Python part). */
static void wait_done(bench *b) {
    while (__atomic_load_n(&b->done, __ATOMIC_SEQ_CST) < 2) A(b)->yield_now();
}
void yield_pair(void *arg) {
    bench *b = arg;
    if (!A(b)->spawn(yielder, b)) { fail(b, -101); return; }
    yielder(b);
    wait_done(b);
}
void pingpong_pair(void *arg) {
    bench *b = arg;
    if (!A(b)->spawn(ponger, b)) { fail(b, -101); return; }
    pinger(b);
    wait_done(b);
}
/* b[0].n busy loops on b[0..n-1]. */
void busy_launcher(void *arg) {
    bench *b = arg;
    for (uint64_t i = 0; i < b[0].n; i++)
        if (!(b[i].id = A(b)->spawn(busy, &b[i]))) { fail(b, -101); return; }
}
uint64_t load_iters(bench *b) { return __atomic_load_n(&b->iters, __ATOMIC_RELAXED); }
void set_stop(bench *b) { __atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED); }

/* Forced-preemption round trip (bench.preempt).  A native GVThread reads the
 * TSC in a tight loop and records every gap between two reads longer than
 * `thresh`: while it is forced off its worker by SIGURG, the TSC goes on, so
 * a gap spans signal delivery, the handler, gv_async_preempt's register and
 * xsave saves, the switch to the scheduler, the requeue and pick, the switch
 * back and the restores.  The other gaps are the machine's own (interrupts,
 * the hypervisor).  To tell them apart exactly: the handler stores the
 * interrupted pc at rsp-136, just below the red zone, where this leaf loop
 * never writes (its rsp does not move); a mark kept there is overwritten by
 * a forced preemption and by nothing else (the signal runs on an alternate
 * stack).  The loop is registered as preemptible: it calls nothing and holds
 * nothing. */
typedef struct {
    uint64_t end_tsc; uint64_t thresh; uint64_t cap; uint64_t *gap; uint8_t *forced;
    uint64_t ngaps; uint64_t nforced; uint64_t iters; int supported;
    int ready, done; uint64_t period_ns; uint64_t sent; uint64_t tid;
} fspin;
#if defined(__x86_64__)
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#define FSPIN_MARK 0x6776667370696e21ull
GV_PREEMPTIBLE void forced_spin(void *arg) {
    fspin *f = arg;
    uint64_t sp;
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
    volatile uint64_t *mark = (volatile uint64_t *)(uintptr_t)(sp - 136);
    *mark = FSPIN_MARK;
    uint64_t end = f->end_tsc, thresh = f->thresh, cap = f->cap, n = 0, nf = 0, it = 0;
    uint64_t prev = __builtin_ia32_rdtsc();
    for (;;) {
        uint64_t now = __builtin_ia32_rdtsc();
        it++;
        if (now - prev > thresh) {
            uint8_t forced = *mark != FSPIN_MARK;
            if (forced) { *mark = FSPIN_MARK; nf++; }
            if (n < cap) { f->gap[n] = now - prev; f->forced[n] = forced; n++; }
        }
        prev = now;
        if (now >= end) break;
    }
    f->ngaps = n; f->nforced = nf; f->iters = it; f->supported = 1;
}
uint64_t tsc_now(void) { return __builtin_ia32_rdtsc(); }

/* The peer: the same loop on an ordinary thread, interrupted by a signal with
 * a handler that does nothing (on an alternate stack, like SIGURG's) but
 * count, sent by another thread every period_ns: what the kernel and the
 * machine charge for a signal round trip, which a forced preemption pays too. */
static volatile uint64_t sig_seen;
static void sig_noop(int sig) { (void)sig; sig_seen++; }
void signal_spin(fspin *f) {
    stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_handler = sig_noop;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    f->tid = (uint64_t)pthread_self();
    __atomic_store_n(&f->ready, 1, __ATOMIC_SEQ_CST);
    uint64_t end = f->end_tsc, thresh = f->thresh, cap = f->cap, n = 0, nf = 0, it = 0;
    uint64_t seen = sig_seen;
    uint64_t prev = __builtin_ia32_rdtsc();
    for (;;) {
        uint64_t now = __builtin_ia32_rdtsc();
        it++;
        if (now - prev > thresh) {
            uint8_t sig = sig_seen != seen;
            if (sig) { seen = sig_seen; nf++; }
            if (n < cap) { f->gap[n] = now - prev; f->forced[n] = sig; n++; }
        }
        prev = now;
        if (now >= end) break;
    }
    f->ngaps = n; f->nforced = nf; f->iters = it; f->supported = 1;
    __atomic_store_n(&f->done, 1, __ATOMIC_SEQ_CST);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
}
void signal_sender(fspin *f) {
    while (!__atomic_load_n(&f->ready, __ATOMIC_SEQ_CST)) {}
    struct timespec ts = {0, (long)f->period_ns};
    while (!__atomic_load_n(&f->done, __ATOMIC_SEQ_CST)) {
        nanosleep(&ts, NULL);
        if (__atomic_load_n(&f->done, __ATOMIC_SEQ_CST)) break;
        pthread_kill((pthread_t)f->tid, SIGUSR2);
        f->sent++;
    }
}
#else
void forced_spin(void *arg) { ((fspin *)arg)->supported = 0; }
void signal_spin(fspin *f) { f->supported = 0; f->done = 1; }
void signal_sender(fspin *f) { (void)f; }
uint64_t tsc_now(void) { return 0; }
#endif
GV_PREEMPTIBLE_RANGE(fspin_range)
"""

GO_SOURCE = r"""
// gvthread bench peer: Gosched and unbuffered-channel ping-pong between two goroutines.
// usage: gvbench gosched|chan N WARMUP  -> prints "elapsed_ns ops"
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var base = time.Now()

func now() int64 { return int64(time.Since(base)) } // monotonic

type pair struct {
	arrived, done int32
	t0, t1        int64
}

func (p *pair) barrier() {
	atomic.AddInt32(&p.arrived, 1)
	for atomic.LoadInt32(&p.arrived) < 2 {
		runtime.Gosched()
	}
	atomic.CompareAndSwapInt64(&p.t0, 0, now())
}

func (p *pair) finish() {
	t := now()
	if atomic.AddInt32(&p.done, 1) == 2 {
		atomic.StoreInt64(&p.t1, t)
	}
}

func gosched(n int) (int64, int) {
	var p pair
	var wg sync.WaitGroup
	wg.Add(2)
	player := func() {
		defer wg.Done()
		p.barrier()
		for i := 0; i < n; i++ {
			runtime.Gosched()
		}
		p.finish()
	}
	go player()
	go player()
	wg.Wait()
	return p.t1 - p.t0, 2 * n
}

func chanPingPong(n int) (int64, int) {
	var p pair
	var wg sync.WaitGroup
	ping, pong := make(chan int64), make(chan int64)
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.barrier()
		for i := 0; i < n; i++ {
			ping <- int64(i)
			if v := <-pong; v != int64(i)+1 {
				panic("bad value")
			}
		}
		p.finish()
	}()
	go func() {
		defer wg.Done()
		p.barrier()
		for i := 0; i < n; i++ {
			v := <-ping
			pong <- v + 1
		}
		p.finish()
	}()
	wg.Wait()
	return p.t1 - p.t0, 2 * n
}

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	warmup, _ := strconv.Atoi(os.Args[3])
	f := gosched
	if os.Args[1] == "chan" {
		f = chanPingPong
	}
	f(warmup)
	elapsed, ops := f(n)
	fmt.Println(elapsed, ops, runtime.GOMAXPROCS(0), runtime.Version())
}
"""


# -- build cache -----------------------------------------------------------------------

def _cache_root() -> str:
    return os.path.join(tempfile.gettempdir(), f"gvthread-bench-native-{os.getuid()}")


def _cached_build(key: str, build) -> str:
    """The directory ``<cache root>/<key>``, made by ``build(tmpdir)`` if absent.

    ``build`` fills a private temporary directory, which is then renamed into place:
    whoever renames first wins, and nobody ever sees a half-built directory.
    """
    root = _cache_root()
    final = os.path.join(root, key)
    if os.path.isdir(final):
        return final
    os.makedirs(root, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=root)
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _load_native():
    """The compiled cffi module (``ffi``, ``lib``), built once per key."""
    import sysconfig

    import cffi

    import gvthread

    inc = gvthread.native_include()
    with open(os.path.join(inc, "gvthread_native.h"), "rb") as f:
        header = f.read()
    h = hashlib.sha256()
    for part in (CDEF.encode(), SOURCE.encode(), header, cffi.__version__.encode(),
                 sys.version.encode(), str(sysconfig.get_config_var("EXT_SUFFIX")).encode()):
        h.update(part)
        h.update(b"\0")
    key = "c-" + h.hexdigest()[:16]

    def build(tmp):
        ffi = cffi.FFI()
        ffi.cdef(CDEF)
        ffi.set_source(_MODULE, SOURCE, include_dirs=[inc], extra_compile_args=["-O2"])
        ffi.compile(tmpdir=tmp)
        for name in os.listdir(tmp):        # keep the module, drop the objects
            if not (name.startswith(_MODULE) and name.endswith(".so")):
                p = os.path.join(tmp, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    path = _cached_build(key, build)
    so = [n for n in os.listdir(path) if n.startswith(_MODULE) and n.endswith(".so")]
    if len(so) != 1:
        raise RuntimeError(f"{path}: expected one {_MODULE}*.so, found {so}")
    spec = importlib.util.spec_from_file_location(_MODULE, os.path.join(path, so[0]))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _go() -> str | None:
    return shutil.which("go")


def _go_binary(go: str) -> str:
    """The Go peer, built once per (source, go version)."""
    env = _go_env()
    version = subprocess.run([go, "version"], capture_output=True, text=True, env=env,
                             check=True).stdout.strip()
    key = "go-" + hashlib.sha256((GO_SOURCE + "\0" + version).encode()).hexdigest()[:16]

    def build(tmp):
        src = os.path.join(tmp, "main.go")
        with open(src, "w") as f:
            f.write(GO_SOURCE)
        proc = subprocess.run([go, "build", "-o", os.path.join(tmp, "gvbench"), src],
                              capture_output=True, text=True, env=env, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"go build failed:\n{proc.stdout}{proc.stderr}")

    return os.path.join(_cached_build(key, build), "gvbench")


def _go_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")      # never try to download a toolchain
    # Go's build cache goes beside ours, not in the user's home (unless GOCACHE says).
    env.setdefault("GOCACHE", os.path.join(_cache_root(), "gocache"))
    return env


def go_pingpong(mode: str, n: int, warmup: int, unit: str):
    """Go peer: ``gosched`` (ns per switch) or ``chan`` (messages per second), run with
    GOMAXPROCS=1. Reports 0 with ``info.go = None`` when go is not on PATH."""
    go = _go()
    if go is None:
        return {"value": 0.0, "info": {"go": None, "note": "go not on PATH"}}
    exe = _go_binary(go)
    env = _go_env()
    env["GOMAXPROCS"] = "1"
    out = subprocess.run([exe, mode, str(n), str(warmup)], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    elapsed, ops, procs, version = int(out[0]), int(out[1]), int(out[2]), out[3]
    value = elapsed / ops if unit == "ns" else ops * 1e9 / elapsed
    return {"value": value, "info": {"elapsed_ns": elapsed, "ops": ops,
                                     "gomaxprocs": procs, "go": version}}


# -- 1 and 2: yield and channel ping-pong ----------------------------------------------

def _pair(rt, nat, n: int, kind: str, spawn_from: str, chans=None) -> int:
    """Run one ping-pong of ``kind`` ("yield" or "chan"); returns the elapsed ns.

    ``spawn_from="native"``: the main thread spawns one native GVThread, which spawns
    its peer with ``api->spawn`` and then plays. ``"main"``: the main thread spawns
    both players with ``Runtime.spawn_native`` (see "Who spawns the natives" above).
    """
    ffi, lib = nat.ffi, nat.lib
    import gvthread

    b = ffi.new("bench *", {"api": gvthread.native_api(), "n": n})
    if chans is not None:
        b.ping, b.pong = chans[0].native_handle, chans[1].native_handle
    if spawn_from == "native":
        fn = lib.yield_pair if kind == "yield" else lib.pingpong_pair
        hs = [rt.spawn_native(fn, b, name=f"{kind}-pair")]
    else:
        fns = ("yielder", "yielder") if kind == "yield" else ("pinger", "ponger")
        hs = [rt.spawn_native(getattr(lib, f), b, name=f) for f in fns]
    for h in hs:
        h.join()
    if b.rc != 0:
        raise RuntimeError(f"native side failed: rc {b.rc}")
    if b.done != 2 or not b.t0 or not b.t1:
        raise RuntimeError(f"players did not finish: done={b.done} t0={b.t0} t1={b.t1}")
    return b.t1 - b.t0


def yield_native(n: int, warmup: int, workers: int = 1, spawn_from: str = "native"):
    """ns per switch of two native GVThreads calling api->yield_now() n times each."""
    import gvthread

    nat = _load_native()
    rt = gvthread.Runtime(workers=workers)
    try:
        _pair(rt, nat, warmup, "yield", spawn_from)
        s0 = rt.stats()["switches"]
        with gc_paused():
            elapsed = _pair(rt, nat, n, "yield", spawn_from)
        s1 = rt.stats()["switches"]
        yield {"value": elapsed / (2 * n),
               "info": {"switches": 2 * n, "elapsed_ns": elapsed,
                        "runtime_switches": s1 - s0, "workers": workers}}
    finally:
        rt.shutdown()


def chan_native(n: int, warmup: int, workers: int = 1, spawn_from: str = "native"):
    """Messages per second between two native GVThreads over two unbuffered int64
    channels (ping, pong): n round trips, 2n messages."""
    import gvthread

    nat = _load_native()
    rt = gvthread.Runtime(workers=workers)
    try:
        chans = (gvthread.Channel(0, kind="int64"), gvthread.Channel(0, kind="int64"))
        _pair(rt, nat, warmup, "chan", spawn_from, chans)
        s0 = rt.stats()["switches"]
        with gc_paused():
            elapsed = _pair(rt, nat, n, "chan", spawn_from, chans)
        s1 = rt.stats()["switches"]
        yield {"value": 2 * n * 1e9 / elapsed,
               "info": {"messages": 2 * n, "elapsed_ns": elapsed,
                        "ns_per_msg": elapsed / (2 * n),
                        "runtime_switches": s1 - s0, "workers": workers}}
    finally:
        rt.shutdown()


# -- 3: snapshot latency ---------------------------------------------------------------

PY_BUSY_SRC = '''
def busy(state, i):
    iters = state["iters"]
    n = 0
    while not state["stop"]:
        n += 1
        if not n & 0xfff:
            iters[i] = n
    iters[i] = n
    return n
'''


def _pct(sorted_ms: list, p: float) -> float:
    """Nearest-rank percentile."""
    import math
    k = max(1, math.ceil(p / 100.0 * len(sorted_ms)))
    return sorted_ms[k - 1]


def _snapshot_run(busy: bool, calls: int, pause: float, py_busy: int = 4,
                  native_busy: int = 4, workers=None, spawn_from: str = "main",
                  wait_s: float = 30.0) -> dict:
    """One run of the snapshot test; returns the whole sample (ms).

    ``p50``/``p99``: from the moment the main thread's sleep is due to the moment
    snapshot() returns (the wake-up, getting the GIL back from the busy Python
    GVThreads, and the call); ``call_p50``/``call_p99``: the call alone. With ``busy``,
    ``py_busy`` + ``native_busy`` busy GVThreads run meanwhile; the natives are spawned
    by the main thread (``spawn_from="main"``) or by a native launcher with
    ``api->spawn`` (``"native"``).
    """
    import gvthread

    rt = gvthread.Runtime(workers=workers)
    state = {"stop": False, "iters": [0] * py_busy}
    nbs, handles = [], []
    try:
        if busy:
            nat = _load_native()
            ns: dict = {}
            exec(gvthread.compile(PY_BUSY_SRC, "<bench-native-busy>", "exec"), ns)
            pybusy = ns["busy"]
            api = gvthread.native_api()
            arr = nat.ffi.new("bench[]", [{"api": api} for _ in range(native_busy)])
            nbs = [arr + i for i in range(native_busy)]
            if spawn_from == "native":
                arr[0].n = native_busy
                rt.spawn_native(nat.lib.busy_launcher, arr, name="launcher").join()
                if arr[0].rc:
                    raise RuntimeError(f"api->spawn failed (rc {arr[0].rc})")
            else:
                for i, b in enumerate(nbs):
                    handles.append(rt.spawn_native(nat.lib.busy, b, name=f"cbusy{i}"))
            for i in range(py_busy):
                handles.append(rt.spawn(pybusy, state, i, name=f"pybusy{i}"))
            # Every Python busy loop and at least one native one has made progress.
            # Not every native: the runtime starves some of them (see FIGURES); the
            # ones that made none during the measurement are listed in info["stalled"].
            deadline = time.monotonic() + wait_s
            while not (any(nat.lib.load_iters(b) > 0 for b in nbs) and all(state["iters"])):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"busy GVThreads did not start: native "
                        f"{[nat.lib.load_iters(b) for b in nbs]}, python {state['iters']}")
                time.sleep(0.005)
            time.sleep(0.05)
            it0 = [nat.lib.load_iters(b) for b in nbs]
            py0 = list(state["iters"])
        snapshot, perf, sleep = rt.snapshot, time.perf_counter_ns, time.sleep
        pause_ns = int(pause * 1e9)
        rows = len(snapshot())               # warm-up call
        lat, call = [], []
        with gc_paused():
            t_start = perf()
            for _ in range(calls):
                # From the moment the sleep is due: the wake-up, getting the GIL back
                # from the busy Python GVThreads, and the call itself.
                due = perf() + pause_ns
                sleep(pause)
                t0 = perf()
                snapshot()
                t1 = perf()
                lat.append(t1 - due)
                call.append(t1 - t0)
            t_end = perf()
        st = rt.stats()
        keep = ("switches", "coop_preemptions", "forced_preemptions", "overruns",
                "handoffs", "steals")
        info = {"calls": calls, "rows": rows, "workers": rt.workers,
                "stats": {k: st[k] for k in keep if k in st},
                "max_ms": max(lat) / 1e6, "pause_s": pause, "span_s": (t_end - t_start) / 1e9}
        if busy:
            info["native_iters"] = [nat.lib.load_iters(b) - i0 for b, i0 in zip(nbs, it0)]
            info["py_iters"] = [a - b for a, b in zip(state["iters"], py0)]
            # A busy loop that made no progress across the measurement was starved.
            stalled = ([f"cbusy{i}" for i, d in enumerate(info["native_iters"]) if d == 0]
                       + [f"pybusy{i}" for i, d in enumerate(info["py_iters"]) if d == 0])
            if stalled:
                info["stalled"] = stalled
        lat_ms = sorted(x / 1e6 for x in lat)
        call_ms = sorted(x / 1e6 for x in call)
        info.update(p50=_pct(lat_ms, 50), p99=_pct(lat_ms, 99),
                    call_p50=_pct(call_ms, 50), call_p99=_pct(call_ms, 99),
                    call_max_ms=call_ms[-1])
        return info
    finally:
        state["stop"] = True
        for b in nbs:
            nat.lib.set_stop(b)
        for h in handles:
            h.join(timeout=30)
        deadline = time.monotonic() + 30
        while not all(b.exited for b in nbs) and time.monotonic() < deadline:
            time.sleep(0.005)
        rt.shutdown()


# -- sharing one run between the p50, p99 and call figures -----------------------------
#
# As in bench.preempt: the n-th child that needs a side's n-th run for some metric makes
# the run and stores the whole sample in a scratch directory private to the parent
# ``python -m bench native`` process; the children that need the same run for another
# metric read it back. Every run is still made in a fresh child and the sides still
# alternate; the three lines describe the same runs, and the suite pays one run per side
# and repeat instead of one per figure. A child run by hand measures every time.

def snapshot_latency(metric: str, **params):
    """``metric`` (p50, p99, call_p50, call_p99; ms) of one run of the snapshot test."""
    sample = shared_sample(scratch_dir("native", os.path.join(_cache_root(), "runs")),
                           params, metric, lambda: _snapshot_run(**params))
    return {"value": sample[metric], "info": sample}


# -- the figures -----------------------------------------------------------------------

_GO_PRESENT = _go() is not None
_GO_LABEL = "go" if _GO_PRESENT else "go:absent"

_YIELD = {"n": 2_000_000, "warmup": 50_000}
_YIELD_Q = {"n": 500_000, "warmup": 20_000}
_CHAN = {"n": 500_000, "warmup": 20_000}
_CHAN_Q = {"n": 100_000, "warmup": 10_000}
_SNAP = {"calls": 200, "pause": 0.002}
_SNAP_Q = {"calls": 200, "pause": 0.001}


def _snap_side(label: str, metric: str, busy: bool) -> Side:
    return Side(label, "snapshot_latency", {"metric": metric, "busy": busy, **_SNAP},
                _SNAP_Q)


_SNAP_DOC = ("Runtime.snapshot() from the main thread (an ordinary thread), {what}, with 4 "
             "busy Python GVThreads (loop built by gvthread.compile) and 4 busy native "
             "GVThreads (api->safepoint() every 4096 iterations) on Runtime(); vs the same "
             "calls with nothing running")


def pair_figures(yield_name: str, chan_name: str) -> list:
    """The C<->C yield and channel ping-pong figures, each beside its Go peer; also
    printed by ``python -m bench preempt`` (issue 4's acceptance), under its own names.
    The suite that uses them must import ``yield_native``, ``chan_native`` and
    ``go_pingpong`` (the children look the functions up in the suite's module)."""
    return [
        Figure(
            yield_name, "ns/switch",
            ours=Side("gvthread", "yield_native", {**_YIELD, "workers": 1}, _YIELD_Q),
            peer=Side(_GO_LABEL, "go_pingpong", {"mode": "gosched", "unit": "ns", **_YIELD},
                      _YIELD_Q),
            targets=(Target("value", "<=", 40), Target("value", "<=", 20, ideal=True)),
            doc="two native GVThreads call api->yield_now() on Runtime(workers=1), vs two "
                "goroutines calling runtime.Gosched with GOMAXPROCS=1"
                + ("" if _GO_PRESENT else " (go not on PATH: peer not measured)"),
        ),
        Figure(
            chan_name, "msgs/s",
            ours=Side("gvthread", "chan_native", {**_CHAN, "workers": 1}, _CHAN_Q),
            peer=Side(_GO_LABEL, "go_pingpong", {"mode": "chan", "unit": "msgs", **_CHAN},
                      _CHAN_Q),
            targets=(Target("ratio", ">=", 1.0),) if _GO_PRESENT else (),
            doc="two native GVThreads bounce an int64 over two unbuffered "
                "Channel(0, kind='int64') on Runtime(workers=1), vs two goroutines over two "
                "unbuffered chan int64 with GOMAXPROCS=1"
                + ("" if _GO_PRESENT else " (go not on PATH: peer not measured)"),
        ),
    ]


FIGURES = pair_figures("native.yield", "native.chan_pingpong") + [
    Figure(
        "native.snapshot_p50", "ms",
        ours=_snap_side("gvthread", "p50", True),
        peer=_snap_side("idle", "p50", False),
        doc=_SNAP_DOC.format(what="p50 from the sleep's due time to the result "
                                  "(wake-up + GIL + call)"),
    ),
    Figure(
        "native.snapshot_p99", "ms",
        ours=_snap_side("gvthread", "p99", True),
        peer=_snap_side("idle", "p99", False),
        targets=(Target("value", "<=", 50),),
        doc=_SNAP_DOC.format(what="p99 from the sleep's due time to the result "
                                  "(wake-up + GIL + call)"),
    ),
    Figure(
        "native.snapshot_call_p99", "ms",
        ours=_snap_side("gvthread", "call_p99", True),
        peer=_snap_side("idle", "call_p99", False),
        doc=_SNAP_DOC.format(what="p99 of the call alone, GIL already held"),
    ),
]
