"""Builds _gvnatdemo: small C functions run as native GVThreads by the tests."""
import cffi

import gvthread

CDEF = """
typedef struct {
    uint64_t api;          /* gvthread.native_api() */
    uint64_t n;            /* iterations */
    uint64_t out;          /* result */
    uint64_t id;           /* current_id() seen inside */
    int cancelled;         /* safepoint() said so */
    int peers_seen;        /* rendezvous: how many arrived */
    int timed_out;
    uint64_t chan;         /* Channel(kind="int64").native_handle */
    int64_t sum;
    int rc;                /* last channel return code */
} job;
extern int arrived;
void spin(void *arg);
void spin_safepoints(void *arg);
void rendezvous(void *arg);
void sleeper(void *arg);
void spawner(void *arg);
void producer(void *arg);
void consumer(void *arg);
void yield_until_flag(void *arg);
void set_flag(void *arg);
void yield_n(void *arg);
void launch(void *arg);
"""

SOURCE = r"""
#include <stdint.h>
#include <time.h>
#include "gvthread_native.h"
typedef struct {
    uint64_t api; uint64_t n; uint64_t out; uint64_t id;
    int cancelled; int peers_seen; int timed_out;
    uint64_t chan; int64_t sum; int rc;
} job;
int arrived;
static const gv_native_api *A(job *j) { return (const gv_native_api *)(uintptr_t)j->api; }
static uint64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
void spin(void *arg) {
    job *j = arg; uint64_t x = 0;
    for (uint64_t i = 0; i < j->n; i++) x += i * i ^ (x >> 3);
    j->out = x; j->id = A(j)->current_id();
}
void spin_safepoints(void *arg) {
    job *j = arg; uint64_t x = 0;
    for (uint64_t i = 0; i < j->n; i++) {
        x += i * i ^ (x >> 3);
        if ((i & 0x3fff) == 0 && A(j)->safepoint()) { j->cancelled = 1; break; }
    }
    j->out = x;
}
/* Spins, with no safepoint, until every peer has arrived: only threads that
 * really run at the same time get there. */
void rendezvous(void *arg) {
    job *j = arg;
    int me = __atomic_add_fetch(&arrived, 1, __ATOMIC_SEQ_CST);
    (void)me;
    uint64_t end = now_ns() + 5000000000ull;
    while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) < (int)j->n) {
        if (now_ns() > end) { j->timed_out = 1; break; }
    }
    j->peers_seen = __atomic_load_n(&arrived, __ATOMIC_SEQ_CST);
}
void sleeper(void *arg) {
    job *j = arg; uint64_t t0 = now_ns();
    A(j)->sleep_ns(j->n);
    j->out = now_ns() - t0;
}
static void child(void *arg) {
    job *j = arg; __atomic_add_fetch(&j->out, 1, __ATOMIC_SEQ_CST);
}
void spawner(void *arg) {
    job *j = arg;
    for (uint64_t i = 0; i < j->n; i++) A(j)->spawn(child, j);
    while (__atomic_load_n(&j->out, __ATOMIC_SEQ_CST) < j->n) A(j)->yield_now();
}
/* Sends 0..n-1 (negated when odd, to cross the sign), then returns. */
void producer(void *arg) {
    job *j = arg; void *ch = (void *)(uintptr_t)j->chan;
    for (uint64_t i = 0; i < j->n; i++) {
        int64_t v = (i & 1) ? -(int64_t)i : (int64_t)i;
        if ((j->rc = A(j)->chan_send_i64(ch, v)) != 0) return;
        j->sum += v;
    }
}
/* Yields until another GVThread set the flag (cancelled flag doubles as it). */
void yield_until_flag(void *arg) {
    job *j = arg;
    while (!__atomic_load_n(&j->peers_seen, __ATOMIC_SEQ_CST)) { A(j)->yield_now(); j->out++; }
}
void set_flag(void *arg) { job *j = arg; __atomic_store_n(&j->peers_seen, 1, __ATOMIC_SEQ_CST); }
/* Yields n times, counting them in out. */
void yield_n(void *arg) {
    job *j = arg;
    for (uint64_t i = 0; i < j->n; i++) {
        A(j)->yield_now();
        __atomic_add_fetch(&j->out, 1, __ATOMIC_RELAXED);
    }
}
/* j[0].n peers: j[i] (i = 1..n) runs yield_n if j[i].sum is 0, else
 * yield_until_flag; spawned with api->spawn, so they share the launcher's
 * worker's local native queue (the direct native yield's case). */
void launch(void *arg) {
    job *j = arg;
    for (uint64_t i = 1; i <= j[0].n; i++)
        if (!(j[i].id = A(j)->spawn(j[i].sum ? yield_until_flag : yield_n, &j[i]))) j[0].rc = -101;
}
/* Receives until the channel is closed and drained. */
void consumer(void *arg) {
    job *j = arg; void *ch = (void *)(uintptr_t)j->chan; int64_t v;
    while ((j->rc = A(j)->chan_recv_i64(ch, &v)) == 0) { j->sum += v; j->out++; }
}
"""


def build(tmpdir):
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source("_gvnatdemo", SOURCE, include_dirs=[gvthread.native_include()],
                   extra_compile_args=["-O2"])
    return ffi.compile(tmpdir=str(tmpdir))
