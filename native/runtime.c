/* runtime.c -- runtime lifecycle and statistics.
 *
 * Shutdown.  Workers stop at a scheduling point: a worker inside a GVThread
 * that never yields cannot be stopped, so gv_runtime_stop() joins with a
 * deadline and leaves such a worker detached (as CPython leaves daemon
 * threads: at finalization it exits when it next asks for the GIL).  The stack
 * region is unmapped only when no GVThread is left: a parked GVThread's
 * PyThreadState points into its slot until the interpreter frees it.
 */
#include "gv_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- lifecycle */

gv_runtime *gv_runtime_new(const gv_config *cfg, int *err) {
    *err = GV_E_CONFIG;
    if (cfg->workers < 1 || cfg->workers > GV_MAX_WORKERS || cfg->max_gvthreads < 1 ||
        cfg->stack_size < GV_MIN_STACK || cfg->stack_size > GV_MAX_STACK ||
        cfg->stack_size % GV_PAGE)
        return NULL;
    gv_runtime *rt = aligned_alloc(GV_CACHELINE, (sizeof *rt + GV_CACHELINE - 1) & ~(size_t)(GV_CACHELINE - 1));
    if (!rt) {
        *err = GV_E_NOMEM;
        return NULL;
    }
    memset(rt, 0, sizeof *rt);
    rt->cfg = *cfg;
    int rc = gv_slots_init(&rt->slots, cfg->max_gvthreads, cfg->stack_size, 1);
    if (rc == GV_OK) {
        rc = gv_slots_init(&rt->metas, cfg->max_gvthreads, sizeof(gv_gvt), 0);
        if (rc != GV_OK)
            gv_slots_destroy(&rt->slots);
    }
    if (rc != GV_OK) {
        free(rt);
        *err = rc;
        return NULL;
    }
    rt->nworkers = cfg->workers;
    rt->workers = aligned_alloc(GV_CACHELINE, sizeof(gv_worker) * (size_t)cfg->workers);
    if (!rt->workers) {
        gv_slots_destroy(&rt->slots);
        gv_slots_destroy(&rt->metas);
        free(rt);
        *err = GV_E_NOMEM;
        return NULL;
    }
    memset(rt->workers, 0, sizeof(gv_worker) * (size_t)cfg->workers);
    int spares = cfg->max_spare_threads < 0 ? 0 : cfg->max_spare_threads > 256 ? 256
                                                 : cfg->max_spare_threads;
    rt->nthrs_max = cfg->workers + spares;
    rt->thrs = aligned_alloc(GV_CACHELINE, sizeof(gv_thr) * (size_t)rt->nthrs_max);
    if (!rt->thrs) {
        gv_slots_destroy(&rt->slots);
        gv_slots_destroy(&rt->metas);
        free(rt->workers);
        free(rt);
        *err = GV_E_NOMEM;
        return NULL;
    }
    memset(rt->thrs, 0, sizeof(gv_thr) * (size_t)rt->nthrs_max);
    pthread_mutex_init(&rt->spare_lock, NULL);
    atomic_store(&rt->py_owner, -1);
    atomic_store(&rt->next_id, 1);
    gv_ticks_calibrate();
    gv_forced_preempt_init();
    if (cfg->time_slice > 0) {
        rt->slice_ticks = (uint64_t)(cfg->time_slice * 1e9 * gv_ticks_per_ns);
        rt->grace_ticks = (uint64_t)((cfg->grace_period > 0 ? cfg->grace_period : 0) * 1e9 *
                                     gv_ticks_per_ns);
        /* Look 4 times a slice, but at least every 1 ms (a flag is then at
         * most a slice + 1 ms late) and at most every 0.5 ms. */
        double m = cfg->time_slice / 4;
        rt->monitor_ns = (uint64_t)((m > 0.001 ? 0.001 : m < 0.0005 ? 0.0005 : m) * 1e9);
        rt->mon_arm = cfg->monitor_safepoints != 0;
    }
    /* The arming thread first: the timer thread, which files its requests,
     * then sees armer.started (pthread_create orders the two). */
    if (gv_pytrace_start(rt) != 0 || gv_timer_start(rt) != 0) {
        *err = GV_E_THREAD;
        gv_runtime_stop(rt, 0, 1.0);
        gv_runtime_free(rt);
        return NULL;
    }
    for (int i = 0; i < cfg->workers; i++) {
        gv_worker *w = &rt->workers[i];
        w->rt = rt;
        w->idx = i;
        if (gv_thr_start(rt, w) != 0) {
            *err = GV_E_THREAD;
            gv_runtime_stop(rt, 0, 1.0);
            gv_runtime_free(rt);
            return NULL;
        }
    }
    *err = GV_OK;
    return rt;
}

int gv_runtime_wait_idle(gv_runtime *rt, double timeout) {
    uint64_t deadline = gv_now_ns() + (uint64_t)(timeout * 1e9);
    for (;;) {
        /* Acquire: pairs with the Release decrement in finish_exit. */
        unsigned v = atomic_load_explicit(&rt->live, memory_order_acquire);
        if (v == 0)
            return 1;
        uint64_t now = gv_now_ns();
        if (now >= deadline)
            return 0;
        gv_futex_wait(&rt->live, v, (int64_t)(deadline - now));
    }
}

int gv_runtime_stop(gv_runtime *rt, int wait, double timeout) {
    if (wait)
        while (!gv_runtime_wait_idle(rt, 3600.0))
            ;
    atomic_store(&rt->stopping, 1);
    gv_timer_stop(rt); /* no handoff starts a thread after this, nor an arm request */
    int n = atomic_load(&rt->nthrs);
    for (int i = 0; i < rt->nworkers; i++)
        gv_worker_wake(&rt->workers[i]);
    for (int i = 0; i < n; i++) {
        atomic_store(&rt->thrs[i].spare_word, 1);
        gv_futex_wake(&rt->thrs[i].spare_word, 1);
    }
    uint64_t deadline = gv_now_ns() + (uint64_t)(timeout * 1e9);
    /* 3.11: the arming thread takes the GIL, so it is stopped before
     * finalization like the workers (pytrace.c); our caller released the GIL
     * (cffi).  One deadline for all: a C loop holding the GIL delays both. */
    int stuck = gv_pytrace_stop(rt, deadline);
    for (int i = 0; i < n; i++) {
        gv_thr *t = &rt->thrs[i];
        if (!t->started)
            continue;
        while (!atomic_load(&t->exited) && gv_now_ns() < deadline) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (atomic_load(&t->exited)) {
            pthread_join(t->thread, NULL);
        } else {
            pthread_detach(t->thread);
            t->detached = 1;
            stuck = 1;
        }
        t->started = 0;
    }
    return stuck;
}

void gv_runtime_free(gv_runtime *rt) {
    gv_timer_stop(rt);
    if (gv_pytrace_stop(rt, gv_now_ns() + 1000000000u))
        return; /* the arming thread was left behind and may still read rt */
    for (int i = 0; i < atomic_load(&rt->nthrs); i++)
        if (rt->thrs[i].started || rt->thrs[i].detached)
            return; /* a running or detached thread may still touch rt: leak it */
    /* A GVThread left parked (shutdown without waiting) may still be woken,
     * e.g. by a handle of another runtime finishing, and its PyThreadState
     * points into its slot until the interpreter frees it: leak it all. */
    if (atomic_load(&rt->live) != 0)
        return;
    gv_slots_destroy(&rt->slots);
    gv_slots_destroy(&rt->metas);
    free(rt->workers);
    free(rt->thrs);
    free(rt);
}

int gv_runtime_workers(gv_runtime *rt) { return rt->nworkers; }

void gv_runtime_trim(gv_runtime *rt) {
    gv_slots_reset_if_empty(&rt->metas, 0);
    if (!gv_slots_reset_if_empty(&rt->slots, 0))
        gv_slots_trim(&rt->slots, 0);
}

void gv_runtime_stats_get(gv_runtime *rt, gv_runtime_stats *out) {
    out->spawned = atomic_load_explicit(&rt->spawned, memory_order_relaxed);
    out->finished = atomic_load_explicit(&rt->finished, memory_order_relaxed);
    out->live = atomic_load_explicit(&rt->live, memory_order_relaxed);
    out->slots_in_use = gv_slots_test_in_use(&rt->slots);
    out->guard_pages = rt->slots.guard;
    out->own_stacks = atomic_load_explicit(&rt->own_stacks, memory_order_relaxed);
    out->stack_trims = atomic_load_explicit(&rt->stack_trims, memory_order_relaxed);
    out->trace_arm_requests = atomic_load_explicit(&rt->armer.served, memory_order_relaxed);
    out->trace_arms = atomic_load_explicit(&rt->armer.armed, memory_order_relaxed);
}

int gv_worker_stats_get(gv_runtime *rt, int worker, gv_worker_stats *out) {
    if (worker < 0 || worker >= rt->nworkers)
        return -1;
    /* Racy read of counters written by the worker alone: aligned 64-bit loads
     * do not tear on the targets we support, and stale is fine here. */
    *out = rt->workers[worker].stats;
    uint64_t since = atomic_load_explicit(&rt->workers[worker].park_since, memory_order_relaxed);
    if (since) { /* parked now: count the idle time so far */
        uint64_t now = gv_now_ns();
        if (now > since)
            out->idle_ns += now - since;
    }
    return 0;
}
