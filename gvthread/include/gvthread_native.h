/* gvthread_native.h -- the C API for native GVThreads.
 *
 * A native GVThread is a C function `void fn(void *arg)` that runs on a
 * GVThread stack without the GIL, in parallel with other native GVThreads
 * on the runtime's workers (gvthread.Runtime.spawn_native).  From inside one,
 * reach the runtime through the function table whose address
 * gvthread.native_api() returns:
 *
 *     const gv_native_api *api = (const gv_native_api *)(uintptr_t)addr;
 *     for (...) { work(); if (api->safepoint()) return;  // cancelled
 *     }
 *
 * Every function must be called from a native GVThread (they do nothing, or
 * return 0, elsewhere).  Include this header in your cffi module's source.
 */
#ifndef GVTHREAD_NATIVE_H
#define GVTHREAD_NATIVE_H

#include <stdint.h>

#define GV_NATIVE_API_VERSION 1

typedef struct gv_native_api {
    uint32_t version;               /* GV_NATIVE_API_VERSION */
    uint32_t size;                  /* sizeof(gv_native_api) */
    /* Let other GVThreads run. */
    void (*yield_now)(void);
    /* Yield if the time slice ran out (or a higher priority waits); cheap
     * otherwise.  Returns 1 if the GVThread was cancelled: return soon. */
    int (*safepoint)(void);
    /* Park for ns nanoseconds (the worker runs others meanwhile). */
    void (*sleep_ns)(uint64_t ns);
    /* Id of the calling GVThread (0 outside one). */
    uint64_t (*current_id)(void);
    /* Start fn(arg) as a detached native GVThread on the caller's runtime;
     * returns its id, 0 if the runtime is out of slots or shutting down. */
    uint64_t (*spawn)(void (*fn)(void *), void *arg);
    /* Send / receive on an int64 channel (Channel(kind="int64"); its
     * native_handle attribute is `chan`), shared with Python GVThreads.
     * 0: done; -1: the channel is closed (and, for recv, drained);
     * -2: the GVThread was cancelled; -3: not an int64 channel, or not
     * called from a native GVThread.  Block the GVThread, never the thread. */
    int (*chan_send_i64)(void *chan, int64_t value);
    int (*chan_recv_i64)(void *chan, int64_t *value);
} gv_native_api;

/* Forced preemption.  A native GVThread that runs past its time slice and
 * the grace period without a safepoint is interrupted by SIGURG and switched
 * out -- but only while it executes code registered as preemptible: code
 * that may be stopped at any instruction (it holds no lock, is not inside
 * malloc or another non-reentrant call, and calls nothing that is not also
 * preemptible).  Mark such functions GV_PREEMPTIBLE, define a range getter
 * once per module with GV_PREEMPTIBLE_RANGE(name), and hand the range to
 * gvthread.register_preemptible(lo, hi).  All registers, flags and the full
 * xsave state (AVX, AVX-512) are saved and restored: bit-exact. */
#define GV_PREEMPTIBLE __attribute__((section("gv_preemptible"), noinline, used))
#define GV_PREEMPTIBLE_RANGE(NAME)                                                   \
    extern char __start_gv_preemptible[] __attribute__((weak, visibility("hidden"))); \
    extern char __stop_gv_preemptible[] __attribute__((weak, visibility("hidden")));  \
    void NAME(uint64_t *lo, uint64_t *hi) {                                          \
        *lo = (uint64_t)(uintptr_t)__start_gv_preemptible;                           \
        *hi = (uint64_t)(uintptr_t)__stop_gv_preemptible;                            \
    }

#endif
