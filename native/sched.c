/* sched.c -- run queues, the thread loop, spawn/yield/park/wake, handoff,
 * native GVThreads and their C API.
 *
 * Model (after Go's runtime/proc.go, scaled down).  A runtime has N workers
 * (Go's P: run queues, a slot for the Python token, statistics) and the OS
 * threads that serve them (Go's M, gv_thr), one each until handoff.  A thread
 * runs a scheduler loop on its own stack (Go's g0) and switches into one
 * GVThread at a time; a GVThread switches back to its thread's loop, not
 * directly to another GVThread, so that everything done "after the
 * switch-out" (requeue, releasing a parker's lock, freeing a dead slot)
 * happens on a stack nobody else is running on.  One exception: a native
 * that yields while its worker's local native queue holds the next native
 * switches straight to it ("Direct native yield", below), and the incoming
 * GVThread requeues it once it is off its stack.
 *
 * Queues.  Every worker has a local run queue; there is one global queue
 * (spawns from ordinary threads, wakeups from the timer thread).  A queue is
 * four FIFOs, one per priority, and a bitmap of the non-empty ones, so the
 * highest runnable priority is one count-trailing-zeros away.  A worker with
 * nothing local takes from the global queue and then steals from the others.
 * Native GVThreads have their own local and global queues.
 *
 * The Python token.  Python GVThreads cannot run in parallel on a GIL build,
 * and two workers taking turns with the GIL made a yield-heavy workload 2x
 * slower than one worker (every release hands the GIL to the other thread).
 * So exactly one worker at a time -- the holder of rt->py_owner -- runs Python
 * GVThreads; it serves every Python queue.  The others run native GVThreads,
 * which need no token, or sleep.  A worker stuck inside one GVThread is handed
 * to a spare thread by the monitor (gv_handoff, below).
 *
 * Priorities are strict, except that a worker which has picked a higher level
 * 128 times in a row while a lower one waited serves the next lower level
 * once: no runnable GVThread waits forever, and short bursts stay strict.
 *
 * Sleeping.  An idle worker announces itself in rt->idle_mask and sleeps on
 * its own futex word.  Lost wakeups are excluded Dekker-style: the sleeper
 * sets its idle bit (seq_cst RMW, then a fence), then reads the queue
 * lengths; an enqueuer stores the length under the queue lock, fences, then
 * reads py_owner and idle_mask.  With a seq_cst fence on each side, at least
 * one side sees the other.  The token holder's own pushes to its local queue
 * (every yield) skip the fence: it looks at its own queue before it lets the
 * token go, in program order.
 */
#include "gv_internal.h"
#include "gvthread_native.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <time.h>

__attribute__((tls_model("initial-exec"))) _Thread_local gv_thr *gv_tls_thr;

/* A GVThread may resume on another thread after any switch.  The compiler
 * assumes a function runs on one thread and may reuse a TLS address computed
 * before the switch; reading TLS through this opaque function after every
 * switch makes it read the thread we are on now. */
__attribute__((noinline)) static gv_thr *cur_thr(void) {
    gv_thr *t = gv_tls_thr;
    __asm__ volatile("" : "+r"(t));
    return t;
}
gv_thr *gv_thr_now(void) { return cur_thr(); }

static inline int prio_highest(uint32_t bm) { return bm ? __builtin_ctz(bm) : -1; }
int gv_prio_highest(uint32_t bm) { return prio_highest(bm); }

/* ---------------------------------------------------------------- queues */

void gv_runq_push(gv_runq *q, gv_gvt *g) {
    int p = g->prio;
    g->next = NULL;
    gv_spin_lock(&q->lock);
    if (q->lv[p].tail)
        q->lv[p].tail->next = g;
    else
        q->lv[p].head = g;
    q->lv[p].tail = g;
    /* Only lock holders write bitmap/len; lock-free readers treat them as hints. */
    atomic_store_explicit(&q->bitmap, atomic_load_explicit(&q->bitmap, memory_order_relaxed) | (1u << p),
                          memory_order_relaxed);
    atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    gv_spin_unlock(&q->lock);
}

gv_gvt *gv_runq_pop(gv_runq *q, int prio) {
    gv_spin_lock(&q->lock);
    uint32_t bm = atomic_load_explicit(&q->bitmap, memory_order_relaxed);
    int p = prio < 0 ? prio_highest(bm) : prio;
    gv_gvt *g = NULL;
    if (p >= 0 && (bm & (1u << p))) {
        g = q->lv[p].head;
        q->lv[p].head = g->next;
        if (!g->next) {
            q->lv[p].tail = NULL;
            bm &= ~(1u << p);
            atomic_store_explicit(&q->bitmap, bm, memory_order_relaxed);
        }
        g->next = NULL;
        atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) - 1,
                              memory_order_relaxed);
    }
    gv_spin_unlock(&q->lock);
    return g;
}

static void notify(gv_runtime *rt);

/* Racy: a hint that some queue holds work, exact only after the fences
 * described under "Sleeping". */
bool gv_any_work(gv_runtime *rt);
static bool any_work(gv_runtime *rt) { return gv_any_work(rt); }
bool gv_any_work(gv_runtime *rt) {
    if (atomic_load_explicit(&rt->global.len, memory_order_relaxed))
        return true;
    for (int i = 0; i < rt->nworkers; i++)
        if (atomic_load_explicit(&rt->workers[i].local.len, memory_order_relaxed))
            return true;
    return false;
}

/* Native GVThreads need no token: any idle thread may take them. */
static bool native_work(gv_runtime *rt);
bool gv_native_work(gv_runtime *rt) { return native_work(rt); }
static bool native_work(gv_runtime *rt) {
    if (atomic_load_explicit(&rt->nglobal.len, memory_order_relaxed))
        return true;
    for (int i = 0; i < rt->nworkers; i++)
        if (atomic_load_explicit(&rt->workers[i].nlocal.len, memory_order_relaxed))
            return true;
    return false;
}

static inline void rq_push(gv_runtime *rt, gv_runq *q, gv_gvt *g) {
    (void)rt;
    gv_runq_push(q, g);
}

static inline gv_gvt *rq_pop(gv_runtime *rt, gv_runq *q, int prio) {
    (void)rt;
    return gv_runq_pop(q, prio);
}

/* ---------------------------------------------------------------- wakeups */

void gv_worker_wake(gv_worker *w) {
    atomic_store(&w->park_word, 1);
    gv_futex_wake(&w->park_word, 1);
}

static void wake_one_idle(gv_runtime *rt) {
    for (;;) {
        uint64_t m = atomic_load(&rt->idle_mask);
        if (!m)
            return;
        unsigned start = atomic_fetch_add_explicit(&rt->wake_rr, 1, memory_order_relaxed) %
                         (unsigned)rt->nworkers;
        uint64_t rot = (m >> start) | (start ? m << (64 - start) : 0);
        int i = (int)((__builtin_ctzll(rot) + start) % 64);
        uint64_t bit = 1ull << i;
        if (atomic_compare_exchange_weak(&rt->idle_mask, &m, m & ~bit)) {
            gv_worker_wake(&rt->workers[i]);
            return;
        }
    }
}

/* Native work: wake a sleeper whoever holds the token (a Dekker pair with
 * worker_park as for Python work). */
static void notify_native(gv_runtime *rt) {
    atomic_thread_fence(memory_order_seq_cst);
    wake_one_idle(rt);
}

/* Called after making work runnable.  If a worker holds the Python token it
 * will find the work itself; otherwise wake one sleeper to take the token. */
static void notify(gv_runtime *rt) {
    atomic_thread_fence(memory_order_seq_cst); /* pairs with worker_park's */
    if (atomic_load(&rt->py_owner) != -1)
        return;
    wake_one_idle(rt); /* none idle: someone is awake and will look */
}

/* Priority preemption: if the worker running Python runs something of lower
 * priority than g, flag it now rather than at the end of its slice.  Racy
 * reads: a stale cur at worst flags a GVThread that has just switched out,
 * which then yields once at its next safepoint. */
static void preempt_for(gv_runtime *rt, gv_gvt *g) {
    int owner = atomic_load_explicit(&rt->py_owner, memory_order_relaxed);
    if (owner < 0 || !rt->slice_ticks)
        return;
    gv_worker *w = &rt->workers[owner];
    gv_thr *ot = gv_owner_thr(atomic_load_explicit(&w->owner, memory_order_relaxed));
    gv_gvt *cur = ot ? __atomic_load_n(&ot->cur, __ATOMIC_RELAXED) : NULL;
    if (cur && cur != g && g->prio < cur->prio &&
        !atomic_exchange_explicit(&cur->preempt, 1, memory_order_relaxed))
        __atomic_fetch_add(&w->stats.priority_preempts, 1, __ATOMIC_RELAXED);
}

void gv_ready(gv_gvt *g) {
    gv_runtime *rt = g->rt;
    uint32_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
    /* CREATED (spawn) or BLOCKED (a won wake): a waker only sees a parked
     * GVThread after its worker stored BLOCKED and released the park lock. */
    GV_CHECK(st == GV_CREATED || st == GV_BLOCKED, "bad GVThread state: made runnable twice");
    atomic_store_explicit(&g->state, GV_READY, memory_order_relaxed);
    gv_thr *t = cur_thr();
    if (g->native) {
        /* The local native queue of a worker that runs Python (holds the
         * token) may not be looked at for long: use the global one then. */
        gv_worker *p = (t && t->rt == rt) ? t->p : NULL;
        if (p && atomic_load_explicit(&rt->py_owner, memory_order_relaxed) == p->idx)
            p = NULL;
        rq_push(rt, p ? &p->nlocal : &rt->nglobal, g);
        notify_native(rt);
        return;
    }
    gv_runq *q = &rt->global;
    if (t && t->rt == rt && t->p) {
        q = &t->p->local;
    } else {
        /* From another thread (timer, an OS-thread notifier): straight to the
         * tail of the Python worker's own queue, so that a GVThread that
         * keeps yielding or being preempted cannot keep it waiting: the
         * global queue is only looked at every 61 picks when the local one
         * has work.  If the owner lets the token go meanwhile, it (or the
         * next owner, by stealing) still finds it: see "Sleeping". */
        int owner = atomic_load_explicit(&rt->py_owner, memory_order_relaxed);
        if (owner >= 0)
            q = &rt->workers[owner].local;
    }
    rq_push(rt, q, g);
    notify(rt);
    if (g->prio < GV_NPRIO - 1)
        preempt_for(rt, g);
}

int gv_wake_if(gv_gvt *g, uint32_t seq) {
    /* Acquire/Release: pairs with the parker's load of wake_seq in the park
     * that recorded seq; exactly one waker wins the CAS and readies g. */
    if (!atomic_compare_exchange_strong(&g->wake_seq, &seq, seq + 1))
        return 0;
    gv_ready(g);
    return 1;
}

/* ---------------------------------------------------------------- picking */

static gv_gvt *steal(gv_worker *w) {
    gv_runtime *rt = w->rt;
    for (int i = 1; i < rt->nworkers; i++) {
        gv_worker *v = &rt->workers[(w->idx + i) % rt->nworkers];
        if (!atomic_load_explicit(&v->local.bitmap, memory_order_relaxed))
            continue;
        gv_gvt *g = rq_pop(rt, &v->local, -1);
        if (g) {
            w->stats.steals++;
            return g;
        }
    }
    return NULL;
}

static gv_gvt *pick(gv_worker *w) {
    gv_runtime *rt = w->rt;
    uint32_t lb = atomic_load_explicit(&w->local.bitmap, memory_order_relaxed);
    uint32_t gb = atomic_load_explicit(&rt->global.bitmap, memory_order_relaxed);
    uint32_t all = lb | gb;
    int p = prio_highest(all);
    if (p >= 0 && (all >> (p + 1))) {
        /* A lower level is waiting while we serve p. */
        if (++w->tick >= 128) {
            w->tick = 0;
            int q = prio_highest(all >> (p + 1)) + p + 1;
            gv_gvt *g = (lb & (1u << q)) ? rq_pop(rt, &w->local, q) : rq_pop(rt, &rt->global, q);
            if (g)
                return g;
        }
    }
    if (p >= 0) {
        gv_gvt *g = NULL;
        /* Same level in both: take the global one now and then, as Go does,
         * so spawns from outside are not starved by local churn. */
        if ((gb & (1u << p)) && (!(lb & (1u << p)) || ++w->gtick % 61 == 0))
            g = rq_pop(rt, &rt->global, p);
        if (!g && (lb & (1u << p)))
            g = rq_pop(rt, &w->local, p);
        if (!g)
            g = rq_pop(rt, &w->local, -1);
        if (!g)
            g = rq_pop(rt, &rt->global, -1);
        if (g)
            return g;
    }
    return steal(w);
}

static void worker_park(gv_worker *w) {
    gv_runtime *rt = w->rt;
    uint64_t bit = 1ull << w->idx;
    atomic_store(&w->park_word, 0);
    atomic_fetch_or(&rt->idle_mask, bit);
    atomic_thread_fence(memory_order_seq_cst); /* pairs with notify's */
    if (atomic_load(&rt->stopping) || native_work(rt) ||
        (any_work(rt) && atomic_load(&rt->py_owner) == -1)) {
        atomic_fetch_and(&rt->idle_mask, ~bit);
        return;
    }
    w->stats.parks++;
    uint64_t since = gv_now_ns();
    atomic_store_explicit(&w->park_since, since, memory_order_relaxed);
    while (atomic_load(&w->park_word) == 0 && !atomic_load(&rt->stopping))
        gv_futex_wait(&w->park_word, 0, -1);
    /* Cleared before idle_ns grows, so a racing reader (gv_worker_stats_get)
     * may miss this period for a moment but never counts it twice. */
    atomic_store_explicit(&w->park_since, 0, memory_order_relaxed);
    w->stats.idle_ns += gv_now_ns() - since;
    atomic_fetch_and(&rt->idle_mask, ~bit);
}

static void acct_flush(gv_thr *t) {
    if (t->acct_g) {
        t->acct_g->cpu_ticks += gv_ticks() - t->acct_t0;
        t->acct_g = NULL;
    }
}

static gv_gvt *pick_native(gv_worker *w) {
    gv_runtime *rt = w->rt;
    gv_gvt *g = NULL;
    /* The global queue first now and then, so local churn cannot starve it. */
    if (++w->ntick % 61 == 0 && atomic_load_explicit(&rt->nglobal.bitmap, memory_order_relaxed))
        g = gv_runq_pop(&rt->nglobal, -1);
    if (!g && atomic_load_explicit(&w->nlocal.bitmap, memory_order_relaxed))
        g = gv_runq_pop(&w->nlocal, -1);
    if (!g && atomic_load_explicit(&rt->nglobal.bitmap, memory_order_relaxed))
        g = gv_runq_pop(&rt->nglobal, -1);
    for (int i = 1; !g && i < rt->nworkers; i++) {
        gv_worker *v = &rt->workers[(w->idx + i) % rt->nworkers];
        if (atomic_load_explicit(&v->nlocal.bitmap, memory_order_relaxed) &&
            (g = gv_runq_pop(&v->nlocal, -1)))
            w->stats.steals++;
    }
    return g;
}

/* Give the Python token (and on 3.11 the GIL) up. */
static void drop_token(gv_worker *w, gv_thr *t) {
    acct_flush(t);
    gv_py_worker_release_gil(t);
    atomic_store(&w->rt->py_owner, -1); /* seq_cst store: a full fence on x86 too */
    atomic_thread_fence(memory_order_seq_cst);
}

static gv_gvt *find_runnable(gv_worker *w, gv_thr *t) {
    gv_runtime *rt = w->rt;
    for (;;) {
        if (atomic_load_explicit(&rt->stopping, memory_order_relaxed))
            return NULL;
        if (atomic_load_explicit(&rt->py_owner, memory_order_relaxed) != w->idx) {
            /* Without the token: take it if Python work waits and nobody holds
             * it (else a stream of native work would starve Python), else run
             * native work, else sleep. */
            int expect = -1;
            if (!any_work(rt) ||
                !atomic_compare_exchange_strong(&rt->py_owner, &expect, w->idx)) {
                gv_gvt *n = pick_native(w);
                if (n)
                    return n;
                worker_park(w);
                continue;
            }
        }
        gv_gvt *g = pick(w);
        if (g)
            return g;
        /* No Python work: a native GVThread may run long, so give the token
         * up first; whoever wants it next can take it. */
        g = pick_native(w);
        if (g) {
            drop_token(w, t);
            if (any_work(rt))
                notify(rt);
            return g;
        }
        /* Nothing anywhere: give the GIL and the token up, then look once
         * more, since an enqueuer that saw the token held woke nobody. */
        drop_token(w, t);
        if (any_work(rt) || native_work(rt))
            continue;
        if (atomic_load(&rt->live) == 0) {
            gv_slots_reset_if_empty(&rt->metas, 0);
            /* After a burst, the freed PyThreadStates sit in this worker's
             * malloc arena, and glibc keeps them; give them back too. */
            if (gv_slots_reset_if_empty(&rt->slots, 16) > 1024)
                malloc_trim(0);
        } else {
            gv_slots_trim(&rt->slots, 256);
        }
        worker_park(w);
    }
}

/* ---------------------------------------------------------------- running */

/* g's own stack, whatever a borrowed-stack call has put in stack_lo. */
static inline char *own_stack(gv_runtime *rt, gv_gvt *g, size_t *len) {
    if (g->own_map) {
        *len = g->own_len;
        return g->own_map;
    }
    *len = rt->slots.slot_size;
    return gv_slot_base(&rt->slots, g->slot);
}

/* Deep pages of a parked or finished stack go back (stack.c); sp NULL: all
 * of it is dead. */
static void shrink_stack(gv_runtime *rt, gv_gvt *g, const char *sp) {
    size_t len;
    char *base = own_stack(rt, g, &len);
    if (!sp)
        sp = base + len - GV_SLOT_TOP_PAD - GV_CHUNK_BYTES;
    else if (sp < base || sp >= base + len)
        return; /* parked inside a borrowed-stack call: that stack is not ours to trim */
    /* A finished GVThread's tstate is gone; its chunk is dead with the rest. */
    const char *data_top = g->tstate && !g->own_map ? gv_py_data_top(g->tstate) : NULL;
    if (gv_stack_shrink(base, len, sp, data_top))
        atomic_fetch_add_explicit(&rt->stack_trims, 1, memory_order_relaxed);
}

static void finish_exit(gv_runtime *rt, gv_gvt *g) {
    if (g->own_map) {
        gv_own_stack_unmap(g->own_map, g->own_len);
        atomic_fetch_sub_explicit(&rt->own_stacks, 1, memory_order_relaxed);
    } else {
#if GV_ASAN
        gv_stack_unpoison_exit(gv_slot_base(&rt->slots, g->slot), rt->slots.slot_size,
                               gv_ctx_sp(&g->ctx));
#endif
        shrink_stack(rt, g, NULL);
        gv_slots_release(&rt->slots, g->slot);
    }
    atomic_store_explicit(&g->state, GV_FREE, memory_order_relaxed);
    gv_slots_release(&rt->metas, g->meta);
    atomic_fetch_sub_explicit(&rt->exiting, 1, memory_order_release);
    atomic_fetch_add_explicit(&rt->finished, 1, memory_order_relaxed);
    /* Release: pairs with the Acquire load in gv_runtime_wait_idle. */
    if (atomic_fetch_sub_explicit(&rt->live, 1, memory_order_acq_rel) == 1)
        gv_futex_wake(&rt->live, 1 << 30);
}

static void gv_entry(void *arg);

/* A stack in slot layout (stack.c) at [base, base + len), for g's first run. */
static void layout_stack(gv_gvt *g, char *base, size_t len, int guarded) {
    char *chunk = base + len - GV_SLOT_TOP_PAD - GV_CHUNK_BYTES;
    g->chunk_hint = chunk;
    g->stack_lo = base + GV_PAGE + (guarded ? 0 : 16);
    g->stack_size = (size_t)(chunk - (char *)g->stack_lo);
    gv_ctx_init(&g->ctx, g->stack_lo, g->stack_size, gv_entry, g);
}

/* A GVThread gets its stack when it first runs, not when spawned: a burst of
 * spawns of short callables then reuses one warm slot instead of faulting in
 * a fresh page each.  A metadata entry was reserved at spawn and there are as
 * many slots as entries, so this cannot fail. */
static void bind_stack(gv_runtime *rt, gv_gvt *g) {
    int64_t idx = gv_slots_alloc(&rt->slots);
    GV_CHECK(idx >= 0, "no stack slot for a reserved GVThread");
    g->slot = (uint32_t)idx;
    layout_stack(g, gv_slot_base(&rt->slots, (uint32_t)idx), rt->slots.slot_size,
                 rt->slots.guard);
}

void gv_spawn_own_stack(gv_gvt *g, char *map, size_t len) {
    g->slot = GV_OWN_SLOT;
    g->own_map = map;
    g->own_len = len;
    layout_stack(g, map, len, 1);
    g->chunk_hint = NULL; /* not in a registered region: the arena hook must free it */
    atomic_fetch_add_explicit(&g->rt->own_stacks, 1, memory_order_relaxed);
}

/* The bottom canary, where the stack has no guard marker. */
static inline void check_canary(gv_runtime *rt, gv_gvt *g) {
    if (!rt->slots.guard && !g->own_map)
        GV_CHECK(*(uint64_t *)(gv_slot_base(&rt->slots, g->slot) + GV_PAGE) == GV_CANARY,
                 "GVThread stack overflow (canary overwritten)");
}

static inline void bump(_Atomic uint64_t *c) {
    /* Only the serving thread writes it: a plain increment, no locked RMW. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* The switch-in bookkeeping shared by run_one and the direct native yield:
 * g leaves its run queue for p's thread (stats, state, a fresh slice). */
static inline void mark_running(gv_runtime *rt, gv_worker *p, gv_gvt *g) {
    /* Only a run queue hands out GVThreads, and only READY ones are queued. */
    uint32_t st0 = atomic_load_explicit(&g->state, memory_order_relaxed);
    GV_CHECK(st0 == GV_READY || st0 == GV_PREEMPTED,
             "bad GVThread state: picked from a run queue but not READY");
    if (g->slot == GV_NO_SLOT)
        bind_stack(rt, g);
    if (g->last_worker >= 0 && g->last_worker != p->idx)
        p->stats.migrations++;
    g->last_worker = p->idx;
    if (!g->started_ns)
        g->started_ns = gv_coarse_ns();
    atomic_store_explicit(&g->state, GV_RUNNING, memory_order_relaxed);
    g->after = GV_AFTER_NONE;
    g->switches++;
    p->stats.switches++;
    atomic_store_explicit(&g->preempt, 0, memory_order_relaxed); /* a fresh slice */
}

/* One TSC read per switch: it charges the GVThread t ran so far and starts g's
 * slice, which the monitor (timer.c) reads with the activity count. */
static inline void start_slice(gv_thr *t, gv_worker *p, gv_gvt *g) {
    uint64_t t0 = gv_ticks();
    if (t->acct_g)
        t->acct_g->cpu_ticks += t0 - t->acct_t0;
    t->acct_g = g;
    t->acct_t0 = t0;
    __atomic_store_n(&g->slice_t0, t0, __ATOMIC_RELAXED);
    atomic_store_explicit(&p->slice_start, t0, memory_order_relaxed);
    bump(&p->activity);
}

/* Run g on thread t serving worker p.  Returns 0 if p was handed to another
 * thread while g ran (t must then become a spare). */
static int run_one(gv_thr *t, gv_worker *p, gv_gvt *g) {
    gv_runtime *rt = t->rt;
    mark_running(rt, p, g);
    __atomic_store_n(&t->cur, g, __ATOMIC_RELAXED);
    if (g->tstate)
        gv_gilstate_switch_in(g->tstate);
    else if (g->native)
        gv_py_worker_release_gil(t); /* 3.11: a native GVThread runs without the GIL */
    start_slice(t, p, g);
    /* From here until the switch-out, the monitor may hand p to a spare. */
    atomic_store_explicit(&p->owner, (uintptr_t)t | 1, memory_order_release);
    if (atomic_load_explicit(&rt->timer.monitor_asleep, memory_order_relaxed))
        gv_monitor_kick(rt);
    GV_SWITCH(&t->sched_ctx, &g->ctx, g->stack_lo, g->stack_size);
    /* Natives may have yielded directly to one another meanwhile: the one
     * that switched back here is the current one, not necessarily g. */
    g = t->cur;
    GV_CHECK(g->yielder == NULL, "direct yield left a GVThread unqueued");
    /* Take p back, unless the monitor gave it away (then never touch p). */
    uintptr_t mine = (uintptr_t)t | 1;
    int kept = atomic_compare_exchange_strong(&p->owner, &mine, (uintptr_t)t);
    __atomic_store_n(&t->cur, NULL, __ATOMIC_RELAXED);
    if (kept) {
        atomic_store_explicit(&p->slice_start, 0, memory_order_relaxed);
    } else {
        t->p = NULL;
        p = NULL;
        acct_flush(t); /* g may run on the new owner's thread next */
    }
    if (g->after == GV_AFTER_EXIT)
        t->acct_g = NULL; /* its entry is about to be freed: nothing to charge */
    check_canary(rt, g);
    switch (g->after) {
    case GV_AFTER_YIELD:
    case GV_AFTER_PREEMPT:
    case GV_AFTER_FORCED:
        if (g->tstate)
            gv_gilstate_switch_out(g->tstate);
        if (g->after != GV_AFTER_YIELD) {
            g->preemptions++;
            if (p) {
                if (g->after == GV_AFTER_FORCED)
                    p->stats.forced_preemptions++;
                else
                    p->stats.coop_preemptions++;
            }
            atomic_store_explicit(&g->state, GV_PREEMPTED, memory_order_relaxed);
        } else {
            if (p)
                p->stats.yields++;
            atomic_store_explicit(&g->state, GV_READY, memory_order_relaxed);
        }
        if (g->native) {
            /* A forced-off native goes to the global queue, as Go does with a
             * preempted goroutine: any idle worker may pick it up.  So does
             * any native requeued while the global queue holds others, or
             * else a yielding native would keep them waiting for ever. */
            int global = !p || g->after == GV_AFTER_FORCED ||
                         atomic_load_explicit(&rt->nglobal.len, memory_order_relaxed) ||
                         atomic_load_explicit(&rt->py_owner, memory_order_relaxed) == p->idx;
            rq_push(rt, global ? &rt->nglobal : &p->nlocal, g);
            if (global)
                notify_native(rt);
            break;
        }
        if (!p) {
            rq_push(rt, &rt->global, g);
            notify(rt);
            break;
        }
        /* Behind whatever waits in the global queue at its level or above:
         * the local queue is preferred at equal priority, so requeueing
         * locally would let a yielding GVThread starve the global one. */
        rq_push(rt,
                (atomic_load_explicit(&rt->global.bitmap, memory_order_relaxed) &
                 ((2u << g->prio) - 1)) ? &rt->global : &p->local,
                g);
        break;
    case GV_AFTER_PARK: {
        if (g->tstate)
            gv_gilstate_switch_out(g->tstate);
        if (p)
            p->stats.blocks++;
        void (*unlock)(void *) = g->park_unlock;
        void *arg = g->park_arg;
        g->park_unlock = NULL;
        /* Before the unlock: until then no waker can resume g on its stack. */
        shrink_stack(rt, g, gv_ctx_sp(&g->ctx));
        atomic_store(&g->state, GV_BLOCKED); /* seq_cst: see wait.c on interrupts */
        if (unlock)
            unlock(arg); /* from here on a waker may ready g */
        if (atomic_load(&g->intr))
            gv_wake_if(g, g->park_seq);
        break;
    }
    case GV_AFTER_EXIT:
        atomic_store_explicit(&g->state, GV_FINISHED, memory_order_relaxed);
        if (g->native)
            gv_py_native_exit(t, g);
        finish_exit(rt, g);
        break;
    default:
        GV_CHECK(0, "bad after-switch action");
    }
    return kept;
}

/* ---------------------------------------------------------------- spares */

/* A thread without a worker waits here to be given one (handoff). */
static int spare_wait(gv_thr *t) {
    gv_runtime *rt = t->rt;
    pthread_mutex_lock(&rt->spare_lock);
    atomic_store(&t->spare_word, 0);
    t->next_spare = rt->spares;
    rt->spares = t;
    pthread_mutex_unlock(&rt->spare_lock);
    while (!atomic_load(&t->spare_word) && !atomic_load(&rt->stopping))
        gv_futex_wait(&t->spare_word, 0, -1);
    return !atomic_load(&rt->stopping) && t->p;
}

static void *thr_main(void *arg);

/* Called by the monitor (timer thread) for a worker whose thread has been
 * inside one GVThread past the grace period while others wait: give the
 * worker to a spare thread, starting one if the pool has room. */
int gv_handoff(gv_runtime *rt, gv_worker *p, uintptr_t stuck) {
    if (!(stuck & 1))
        return 0;
    gv_thr *s = NULL;
    pthread_mutex_lock(&rt->spare_lock);
    if (rt->spares) {
        s = rt->spares;
        rt->spares = s->next_spare;
    }
    pthread_mutex_unlock(&rt->spare_lock);
    int fresh = 0;
    if (!s) {
        int n = atomic_load(&rt->nthrs);
        if (n >= rt->nthrs_max)
            return 0;
        s = &rt->thrs[n];
        s->rt = rt;
        s->idx = n;
        fresh = 1;
    }
    if (!atomic_compare_exchange_strong(&p->owner, &stuck, (uintptr_t)s)) {
        if (!fresh) { /* it switched out meanwhile: the spare goes back */
            pthread_mutex_lock(&rt->spare_lock);
            s->next_spare = rt->spares;
            rt->spares = s;
            pthread_mutex_unlock(&rt->spare_lock);
        }
        return 0;
    }
    s->p = p;
    __atomic_fetch_add(&p->stats.handoffs, 1, __ATOMIC_RELAXED);
    if (fresh) {
        if (pthread_create(&s->thread, NULL, thr_main, s) != 0) {
            s->p = NULL;
            atomic_store(&p->owner, stuck); /* the stuck thread keeps it after all */
            return 0;
        }
        s->started = 1;
        atomic_fetch_add(&rt->nthrs, 1);
    } else {
        atomic_store(&s->spare_word, 1);
        gv_futex_wake(&s->spare_word, 1);
    }
    return 1;
}

static void *thr_main(void *arg) {
    gv_thr *t = arg;
    gv_runtime *rt = t->rt;
    gv_tls_thr = t;
#if GV_ASAN
    pthread_attr_t attr;
    void *lo;
    pthread_getattr_np(pthread_self(), &attr);
    pthread_attr_getstack(&attr, &lo, &t->asan_stack_size);
    t->asan_stack_lo = lo;
    pthread_attr_destroy(&attr);
#endif
    gv_block_async_signals();
    t->sigaltstack_mem = gv_thread_sigaltstack(); /* and unblocks SIGURG */
    gv_py_worker_init(t);
    for (;;) {
        gv_worker *p = t->p;
        if (!p) {
            gv_py_worker_release_gil(t); /* a spare holds nothing */
            if (!spare_wait(t))
                break;
            continue;
        }
        gv_gvt *g = find_runnable(p, t);
        if (!g)
            break;
        run_one(t, p, g);
    }
    if (t->p && atomic_load(&rt->py_owner) == t->p->idx)
        atomic_store(&rt->py_owner, -1);
    gv_py_worker_release_gil(t);
    gv_py_worker_fini(t);
    gv_thread_sigaltstack_free(t->sigaltstack_mem);
    atomic_store(&t->exited, 1);
    return NULL;
}

/* ---------------------------------------------------------------- GVThread side */

static inline void requeue_yielder(gv_gvt *g);

static void gv_entry(void *arg) {
    gv_gvt *g = arg;
#if GV_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    requeue_yielder(g);
    if (g->native)
        g->nfn(g->narg); /* no GIL, no tstate: plain C on this stack */
    else
        gv_py_run(g);
    gv_thr *t = cur_thr();
    g->after = GV_AFTER_EXIT;
#if GV_ASAN
    __sanitizer_start_switch_fiber(NULL, t->asan_stack_lo, t->asan_stack_size);
#endif
    gv_ctx_switch(&g->ctx, &t->sched_ctx);
    GV_CHECK(0, "a finished GVThread was resumed");
}

/* After every switch into g's stack: if the code that switched here was a
 * direct native yield, the yielder is not in any queue yet (it was still
 * running on its own stack): queue it now that nobody runs there, on the
 * local native queue of the worker it yielded on. */
static inline void requeue_yielder(gv_gvt *g) {
    gv_gvt *y = g->yielder;
    if (__builtin_expect(y != NULL, 0)) {
        g->yielder = NULL;
        gv_runq_push(&y->rt->workers[y->last_worker].nlocal, y);
    }
}

static void switch_to_thr(gv_thr *t, gv_gvt *g) {
    GV_SWITCH(&g->ctx, &t->sched_ctx, t->asan_stack_lo, t->asan_stack_size);
    requeue_yielder(g); /* resumed by a direct yield, maybe */
}

/* ---- Direct native yield ----
 *
 * A native GVThread g that yields while its worker's local native queue holds
 * another native n of its priority or higher switches straight to n, without
 * the round trip through the thread's scheduler stack (run_one's after-switch
 * and find_runnable): one context switch instead of two, one queue lock
 * instead of two.  It does everything that round trip would have done, in the
 * same order of decisions:
 *
 * - only when the slow path would pick n from the local native queue: the
 *   runtime is not stopping, the global native queue is empty (else g would
 *   be requeued there and the 1-in-61 check might serve it), the thread does
 *   not hold the Python token nor could take it for waiting Python work
 *   (find_runnable's rule), it holds no GIL (3.11), and it still owns its
 *   worker: the CAS from (t | 1) to t that run_one does after a switch-out,
 *   so the monitor cannot hand the worker off while we update it;
 * - the switch-in of n as in run_one: state, stats (switches, yields,
 *   migrations), a fresh slice (preempt flag cleared, slice_start = one TSC
 *   read, also used to charge g's CPU time), activity bumped, the canary of
 *   g checked, ownership given back as (t | 1) with Release;
 * - g is queued only after the switch, by whichever code runs first on n's
 *   stack (requeue_yielder, through n->yielder: after gv_ctx_switch in
 *   switch_to_thr and in yield_direct, or at the top of gv_entry), onto the
 *   local native queue of the worker g ran on (g->last_worker).  Pushing it
 *   before would let another worker steal it and run it on the stack we are
 *   still using.
 *
 * Nothing here is a forced-preemption point: the SIGURG handler declines
 * outside registered code, so it never interrupts this path midway. */
static int yield_direct(gv_thr *t, gv_gvt *g) {
    gv_worker *p = t->p;
    gv_runtime *rt = g->rt;
    /* Racy hints, as in find_runnable; a stale one only picks the slow path
     * or defers a decision by one yield. */
    if (!p || t->holds_gil || atomic_load_explicit(&rt->stopping, memory_order_relaxed) ||
        atomic_load_explicit(&rt->nglobal.len, memory_order_relaxed))
        return 0;
    int owner = atomic_load_explicit(&rt->py_owner, memory_order_relaxed);
    if (owner == p->idx || (owner == -1 && any_work(rt)))
        return 0;
    gv_runq *q = &p->nlocal;
    uint32_t bm = atomic_load_explicit(&q->bitmap, memory_order_relaxed);
    if (!bm || prio_highest(bm) > g->prio)
        return 0;
    uintptr_t mine = (uintptr_t)t | 1;
    if (!atomic_compare_exchange_strong(&p->owner, &mine, (uintptr_t)t))
        return 0; /* handed off: the slow path sees it too and gives g up */
    /* Pop n under the lock (another worker may be stealing). */
    gv_spin_lock(&q->lock);
    bm = atomic_load_explicit(&q->bitmap, memory_order_relaxed);
    int lv = prio_highest(bm);
    if (lv < 0 || lv > g->prio) {
        gv_spin_unlock(&q->lock);
        /* Release: pairs with the monitor's Acquire load of owner. */
        atomic_store_explicit(&p->owner, mine, memory_order_release);
        return 0;
    }
    gv_gvt *n = q->lv[lv].head;
    q->lv[lv].head = n->next;
    if (!n->next) {
        q->lv[lv].tail = NULL;
        atomic_store_explicit(&q->bitmap, bm & ~(1u << lv), memory_order_relaxed);
    }
    n->next = NULL;
    atomic_store_explicit(&q->len, atomic_load_explicit(&q->len, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    gv_spin_unlock(&q->lock);
    p->ntick++; /* a native pick, as pick_native counts them */

    /* g's switch-out, as run_one's GV_AFTER_YIELD. */
    check_canary(rt, g);
    p->stats.yields++;
    p->stats.direct_yields++;
    atomic_store_explicit(&g->state, GV_READY, memory_order_relaxed);

    /* n's switch-in, as run_one (no tstate: natives run without the GIL). */
    mark_running(rt, p, n);
    __atomic_store_n(&t->cur, n, __ATOMIC_RELAXED);
    start_slice(t, p, n); /* charges g from its switch-in to now */
    n->yielder = g; /* queued by n once we are off this stack (requeue_yielder) */
    /* Release: pairs with the monitor's Acquire load of owner. */
    atomic_store_explicit(&p->owner, mine, memory_order_release);
    if (atomic_load_explicit(&rt->timer.monitor_asleep, memory_order_relaxed))
        gv_monitor_kick(rt);
    GV_SWITCH(&g->ctx, &n->ctx, n->stack_lo, n->stack_size);
    requeue_yielder(g);
    return 1;
}

/* A native's yield: directly to the next local native when it can, else
 * through the scheduler loop. */
static void native_yield(gv_thr *t, gv_gvt *g) {
    if (!yield_direct(t, g)) {
        g->after = GV_AFTER_YIELD;
        switch_to_thr(t, g);
    }
}

void gv_yield(void) {
    gv_thr *t = cur_thr();
    gv_gvt *g = t->cur;
    g->after = GV_AFTER_YIELD;
    switch_to_thr(t, g);
}

/* At a safepoint of a flagged GVThread: back to a run queue as PREEMPTED. */
void gv_preempt_yield(void) {
    gv_thr *t = cur_thr();
    gv_gvt *g = t->cur;
    g->after = GV_AFTER_PREEMPT;
    switch_to_thr(t, g);
}

/* Called by gv_async_preempt (preempt.c) with all of g's state saved on its
 * stack: switch out as a forced preemption. */
void gv_async_preempt_switch(void) {
    gv_thr *t = cur_thr();
    gv_gvt *g = t->cur;
    g->after = GV_AFTER_FORCED;
    switch_to_thr(t, g);
}

void gv_safepoint_tick(void) {
    gv_thr *t = gv_tls_thr;
    if (t->p)
        bump(&t->p->activity);
}

void gv_park(void (*unlock)(void *), void *arg) {
    gv_thr *t = cur_thr();
    gv_gvt *g = t->cur;
    g->park_unlock = unlock;
    g->park_arg = arg;
    g->after = GV_AFTER_PARK;
    switch_to_thr(t, g);
}

/* ---------------------------------------------------------------- spawn */

int gv_spawn_prepare(gv_runtime *rt, int prio, void *task, gv_gvt **out) {
    if (atomic_load_explicit(&rt->stopping, memory_order_relaxed))
        return GV_E_SHUTDOWN;
    int64_t idx = gv_slots_alloc(&rt->metas);
    if (idx < 0)
        return GV_E_EXHAUSTED;
    gv_gvt *g = gv_meta_at(rt, (uint32_t)idx);
    memset(g, 0, sizeof *g);
    g->rt = rt;
    g->meta = (uint32_t)idx;
    g->slot = GV_NO_SLOT;
    g->prio = (uint8_t)prio;
    g->task = task;
    g->id = atomic_fetch_add_explicit(&rt->next_id, 1, memory_order_relaxed);
    g->last_worker = -1;
    g->ptimer.level = -1;
    g->created_ns = gv_coarse_ns();
    atomic_fetch_add_explicit(&rt->live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rt->spawned, 1, memory_order_relaxed);
    /* Release: inspection scans the metadata array and trusts an entry whose
     * state it reads (Acquire) as other than GV_FREE. */
    atomic_store_explicit(&g->state, GV_CREATED, memory_order_release);
    *out = g;
    return GV_OK;
}

void gv_spawn_start(gv_gvt *g) { gv_ready(g); }

/* Asynchronous signals belong to the main thread (CPython runs Python signal
 * handlers there only); the runtime's own threads must not take them. */
void gv_block_async_signals(void) {
    sigset_t set;
    sigfillset(&set);
    sigdelset(&set, SIGSEGV);
    sigdelset(&set, SIGBUS);
    sigdelset(&set, SIGFPE);
    sigdelset(&set, SIGILL);
    sigdelset(&set, SIGABRT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Start the thread that first serves worker p. */
int gv_thr_start(gv_runtime *rt, gv_worker *p) {
    int n = atomic_load(&rt->nthrs);
    gv_thr *t = &rt->thrs[n];
    t->rt = rt;
    t->idx = n;
    t->p = p;
    atomic_store(&p->owner, (uintptr_t)t);
    if (pthread_create(&t->thread, NULL, thr_main, t) != 0)
        return -1;
    t->started = 1;
    atomic_fetch_add(&rt->nthrs, 1);
    return 0;
}

/* ---------------------------------------------------------------- native C API */

static gv_gvt *native_self(void) {
    gv_thr *t = cur_thr();
    gv_gvt *g = t ? t->cur : NULL;
    return g && g->native ? g : NULL;
}

static void napi_yield(void) {
    gv_thr *t = cur_thr();
    gv_gvt *g = t ? t->cur : NULL;
    if (g && g->native)
        native_yield(t, g);
}

static int napi_safepoint(void) {
    gv_gvt *g = native_self();
    if (!g)
        return 0;
    gv_safepoint_tick();
    if (atomic_load_explicit(&g->preempt, memory_order_relaxed)) {
        atomic_store_explicit(&g->preempt, 0, memory_order_relaxed);
        gv_preempt_yield();
    }
    return (atomic_load_explicit(&g->intr, memory_order_relaxed) & GV_INT_CANCEL) != 0;
}

struct napi_sleep { gv_gvt *g; uint64_t deadline; };

static void napi_sleep_unlock(void *arg) {
    struct napi_sleep *s = arg;
    gv_park_timer_arm(s->g, s->deadline);
}

static void napi_sleep_ns(uint64_t ns) {
    gv_gvt *g = native_self();
    if (!g)
        return;
    if (ns == 0) {
        native_yield(cur_thr(), g);
        return;
    }
    g->wait_kind = GV_WAIT_SLEEP;
    g->park_seq = atomic_load(&g->wake_seq);
    struct napi_sleep s = {g, gv_now_ns() + ns};
    gv_park(napi_sleep_unlock, &s);
    g->wait_kind = GV_WAIT_NONE;
    gv_park_timer_cancel(g);
}

static uint64_t napi_current_id(void) {
    gv_gvt *g = native_self();
    return g ? g->id : 0;
}

uint64_t gv_spawn_native_raw(gv_runtime *rt, int prio, void *task, void (*fn)(void *), void *arg) {
    gv_gvt *g;
    if (gv_spawn_prepare(rt, prio, task, &g) != GV_OK)
        return 0;
    g->native = 1;
    g->nfn = fn;
    g->narg = arg;
    uint64_t id = g->id;
    gv_spawn_start(g);
    return id;
}

static uint64_t napi_spawn(void (*fn)(void *), void *arg) {
    gv_gvt *g = native_self();
    if (!g || !fn)
        return 0;
    return gv_spawn_native_raw(g->rt, g->prio, NULL, fn, arg);
}

static const gv_native_api native_api = {
    GV_NATIVE_API_VERSION, sizeof(gv_native_api), napi_yield, napi_safepoint, napi_sleep_ns,
    napi_current_id, napi_spawn, gv_chan_native_send, gv_chan_native_recv,
};

const gv_native_api *gv_native_api_get(void) { return &native_api; }
