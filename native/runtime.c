/* runtime.c -- runtime lifecycle, the timer thread, statistics.
 *
 * Shutdown.  Workers stop at a scheduling point: a worker inside a GVThread
 * that never yields cannot be stopped, so gv_runtime_stop() joins with a
 * deadline and leaves such a worker detached (as CPython leaves daemon
 * threads: at finalization it exits when it next asks for the GIL).  The stack
 * region is unmapped only when no GVThread is left: a parked GVThread's
 * PyThreadState points into its slot until the interpreter frees it.
 *
 * Timer.  A binary heap of (deadline, GVThread, park number) under one mutex,
 * served by one thread.  A timer fires by gv_wake_if(), so it loses cleanly to
 * any other waker; a GVThread cancels its entry after it resumes, and because
 * firing happens under the same mutex, a cancelled entry never touches it.
 */
#include "gv_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- timer */

static void heap_swap(gv_timer *t, size_t a, size_t b) {
    gv_timer_ent e = t->heap[a];
    t->heap[a] = t->heap[b];
    t->heap[b] = e;
}
static void heap_up(gv_timer *t, size_t i) {
    while (i && t->heap[(i - 1) / 2].when > t->heap[i].when) {
        heap_swap(t, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}
static void heap_down(gv_timer *t, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && t->heap[l].when < t->heap[m].when) m = l;
        if (r < t->n && t->heap[r].when < t->heap[m].when) m = r;
        if (m == i) return;
        heap_swap(t, i, m);
        i = m;
    }
}
static void heap_remove_at(gv_timer *t, size_t i) {
    t->n--;
    if (i != t->n) {
        t->heap[i] = t->heap[t->n];
        heap_up(t, i);
        heap_down(t, i);
    }
}

void gv_timer_add(gv_runtime *rt, uint64_t when, gv_gvt *g, uint32_t seq) {
    gv_timer *t = &rt->timer;
    pthread_mutex_lock(&t->lock);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        gv_timer_ent *h = realloc(t->heap, cap * sizeof *h);
        GV_CHECK(h != NULL, "out of memory for timers");
        t->heap = h;
        t->cap = cap;
    }
    t->heap[t->n] = (gv_timer_ent){when, g, seq};
    heap_up(t, t->n++);
    if (t->heap[0].g == g && t->heap[0].seq == seq)
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void gv_timer_cancel(gv_runtime *rt, gv_gvt *g, uint32_t seq) {
    gv_timer *t = &rt->timer;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        if (t->heap[i].g == g && t->heap[i].seq == seq) {
            heap_remove_at(t, i);
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
}

static void *timer_main(void *arg) {
    gv_runtime *rt = arg;
    gv_timer *t = &rt->timer;
    gv_block_async_signals();
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        if (t->n == 0) {
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        uint64_t now = gv_now_ns();
        if (t->heap[0].when <= now) {
            gv_timer_ent e = t->heap[0];
            heap_remove_at(t, 0);
            gv_wake_if(e.g, e.seq); /* under the lock: see the file comment */
            continue;
        }
        struct timespec ts = {(time_t)(t->heap[0].when / 1000000000u),
                              (long)(t->heap[0].when % 1000000000u)};
        pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static void stop_timer(gv_runtime *rt) {
    gv_timer *t = &rt->timer;
    if (!t->started)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    t->started = 0;
}

gv_runtime *gv_runtime_new(const gv_config *cfg, int *err) {
    *err = GV_E_CONFIG;
    if (cfg->workers < 1 || cfg->workers > GV_MAX_WORKERS || cfg->max_gvthreads < 1 ||
        cfg->stack_size < GV_MIN_STACK || cfg->stack_size % GV_PAGE)
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
    atomic_store(&rt->py_owner, -1);
    atomic_store(&rt->next_id, 1);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt->timer.cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&rt->timer.lock, NULL);
    if (pthread_create(&rt->timer.thread, NULL, timer_main, rt) != 0) {
        *err = GV_E_THREAD;
        gv_runtime_free(rt);
        return NULL;
    }
    rt->timer.started = 1;
    for (int i = 0; i < cfg->workers; i++) {
        gv_worker *w = &rt->workers[i];
        w->rt = rt;
        w->idx = i;
        if (gv_worker_start(w) != 0) {
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
    for (int i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].started)
            gv_worker_wake(&rt->workers[i]);
    stop_timer(rt);
    int stuck = 0;
    uint64_t deadline = gv_now_ns() + (uint64_t)(timeout * 1e9);
    for (int i = 0; i < rt->nworkers; i++) {
        gv_worker *w = &rt->workers[i];
        if (!w->started)
            continue;
        while (!atomic_load(&w->exited) && gv_now_ns() < deadline) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (atomic_load(&w->exited)) {
            pthread_join(w->thread, NULL);
        } else {
            pthread_detach(w->thread);
            w->detached = 1;
            stuck = 1;
        }
        w->started = 0;
    }
    return stuck;
}

void gv_runtime_free(gv_runtime *rt) {
    stop_timer(rt);
    for (int i = 0; i < rt->nworkers; i++)
        if (rt->workers[i].started || rt->workers[i].detached)
            return; /* a running or detached worker may still touch rt: leak it */
    /* A GVThread left parked (shutdown without waiting) may still be woken,
     * e.g. by a handle of another runtime finishing, and its PyThreadState
     * points into its slot until the interpreter frees it: leak it all. */
    if (atomic_load(&rt->live) != 0)
        return;
    gv_slots_destroy(&rt->slots);
    gv_slots_destroy(&rt->metas);
    free(rt->timer.heap);
    free(rt->workers);
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
}

int gv_worker_stats_get(gv_runtime *rt, int worker, gv_worker_stats *out) {
    if (worker < 0 || worker >= rt->nworkers)
        return -1;
    /* Racy read of counters written by the worker alone: aligned 64-bit loads
     * do not tear on the targets we support, and stale is fine here. */
    *out = rt->workers[worker].stats;
    return 0;
}
