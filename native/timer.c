/* timer.c -- the timer thread: a hierarchical timing wheel.
 *
 * Design (Varghese & Lauck; Linux's timer wheel).  Rejected: a binary heap
 * (O(log n) insert and, worse, O(n) cancel by search -- every timed wait that
 * ends early cancels its timer) and a sorted list.  Chosen: 4 levels of 64
 * slots; a tick is 2^19 ns (0.52 ms), so level 0 spans 34 ms, level 1 2.2 s,
 * level 2 2.4 min, level 3 2.5 h, and an overflow list holds the rest.  A
 * timer goes to the lowest level whose span covers its distance; when the
 * wheel's position crosses into a higher-level slot's range, that slot is
 * cascaded down.  Insert and cancel are O(1) (doubly linked slot lists).
 * Deadlines are rounded up to a tick, so a timer never fires early and at
 * most one tick (plus scheduling) late.
 *
 * The thread does not tick idly: with nothing armed it sleeps until an insert
 * signals it; otherwise it sleeps until the next occupied level-0 slot or the
 * next cascade boundary, whichever is first (bitmaps make both O(1)).
 *
 * Callbacks run on the timer thread with the timer lock held (lock order:
 * timer -> run queue); they must be short and must not touch the wheel.
 */
#include "gv_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define TW_BITS 6
#define TW_SLOTS 64
#define TW_LEVELS 4
#define TICK_SHIFT 19
#define OVERFLOW_LEVEL TW_LEVELS

static uint64_t ns_to_tick_up(uint64_t ns) {
    return (ns >> TICK_SHIFT) + ((ns & ((1ull << TICK_SHIFT) - 1)) != 0);
}

static void slot_link(gv_timer *t, gv_tnode *n, int level, int slot) {
    gv_tnode **head = level == OVERFLOW_LEVEL ? &t->overflow : &t->wheel[level][slot];
    n->level = (int16_t)level;
    n->slot = (int16_t)slot;
    n->prev = NULL;
    n->next = *head;
    if (*head)
        (*head)->prev = n;
    *head = n;
    if (level != OVERFLOW_LEVEL)
        t->occupied[level] |= 1ull << slot;
}

static void slot_unlink(gv_timer *t, gv_tnode *n) {
    int level = n->level, slot = n->slot;
    gv_tnode **head = level == OVERFLOW_LEVEL ? &t->overflow : &t->wheel[level][slot];
    if (n->prev)
        n->prev->next = n->next;
    else
        *head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    if (level != OVERFLOW_LEVEL && !*head)
        t->occupied[level] &= ~(1ull << slot);
    n->prev = n->next = NULL;
    n->level = -1;
}

static void place(gv_timer *t, gv_tnode *n) {
    if (n->when_tick < t->cur_tick)
        n->when_tick = t->cur_tick;
    uint64_t delta = n->when_tick - t->cur_tick;
    for (int level = 0; level < TW_LEVELS; level++) {
        if (delta < (1ull << (TW_BITS * (level + 1)))) {
            slot_link(t, n, level, (int)((n->when_tick >> (TW_BITS * level)) & (TW_SLOTS - 1)));
            return;
        }
    }
    slot_link(t, n, OVERFLOW_LEVEL, 0);
}

void gv_tnode_arm(gv_runtime *rt, gv_tnode *n, uint64_t when_ns) {
    gv_timer *t = &rt->timer;
    pthread_mutex_lock(&t->lock);
    GV_CHECK(n->level < 0, "timer armed twice");
    n->when_tick = ns_to_tick_up(when_ns);
    place(t, n);
    t->n++;
    if (n->when_tick < t->sleep_until)
        pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

int gv_tnode_cancel(gv_runtime *rt, gv_tnode *n) {
    gv_timer *t = &rt->timer;
    int was = 0;
    pthread_mutex_lock(&t->lock);
    if (n->level >= 0) {
        slot_unlink(t, n);
        t->n--;
        was = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return was;
}

static void cascade(gv_timer *t, int level, int slot) {
    gv_tnode *n = t->wheel[level][slot];
    t->wheel[level][slot] = NULL;
    t->occupied[level] &= ~(1ull << slot);
    while (n) {
        gv_tnode *next = n->next;
        place(t, n);
        n = next;
    }
}

static void cascade_overflow(gv_timer *t) {
    gv_tnode *n = t->overflow;
    t->overflow = NULL;
    while (n) {
        gv_tnode *next = n->next;
        place(t, n);
        n = next;
    }
}

/* The next tick at or after t at which something must happen. */
static uint64_t next_event(gv_timer *t) {
    uint64_t c = t->cur_tick, best = UINT64_MAX;
    uint64_t b0 = t->occupied[0];
    if (b0) {
        unsigned r = (unsigned)(c & (TW_SLOTS - 1));
        uint64_t rot = (b0 >> r) | (r ? b0 << (64 - r) : 0);
        best = c + (uint64_t)__builtin_ctzll(rot);
    }
    if (t->occupied[1] || t->occupied[2] || t->occupied[3] || t->overflow) {
        uint64_t boundary = (c | (TW_SLOTS - 1)) + 1;
        if ((c & (TW_SLOTS - 1)) == 0)
            boundary = c; /* a cascade is due at c itself */
        if (boundary < best)
            best = boundary;
    }
    return best;
}

/* Process every tick up to and including now_tick. */
static void advance(gv_timer *t, uint64_t now_tick) {
    for (;;) {
        if (t->n == 0) {
            t->cur_tick = now_tick + 1;
            return;
        }
        uint64_t e = next_event(t);
        if (e > now_tick) {
            t->cur_tick = now_tick + 1;
            return;
        }
        t->cur_tick = e;
        uint64_t c = e;
        if ((c & ((1ull << (TW_BITS * TW_LEVELS)) - 1)) == 0)
            cascade_overflow(t);
        for (int level = TW_LEVELS - 1; level >= 1; level--)
            if ((c & ((1ull << (TW_BITS * level)) - 1)) == 0)
                cascade(t, level, (int)((c >> (TW_BITS * level)) & (TW_SLOTS - 1)));
        int s = (int)(c & (TW_SLOTS - 1));
        while (t->wheel[0][s]) {
            gv_tnode *n = t->wheel[0][s];
            slot_unlink(t, n);
            t->n--;
            n->fire(n);
        }
        t->cur_tick = c + 1;
    }
}

/* ---- the preemption monitor (Go's sysmon, cut down) ----
 *
 * Every monitor period while some worker runs a GVThread: a GVThread past
 * its time slice gets its preempt flag set (it yields at its next safepoint);
 * one still flagged, with no safepoint reached, past the grace period is an
 * overrun.  Then, if another GVThread waits (or an interrupt does):
 *   - a native GVThread is forced off by SIGURG (preempt.c), or handed off;
 *   - a Python GVThread first gets safepoints armed in the code it runs:
 *     sys.monitoring events on 3.12+ (pymonitor.c, asked again every period
 *     until its pending call ran), a trace function on its tstate on 3.11
 *     (pytrace.c, by the arming thread); if that does not bring it to a
 *     safepoint within another grace period (a blocking call, a C loop: no
 *     bytecode runs), or cannot be asked, its worker is handed off;
 *   - otherwise (monitor_safepoints=False) it is handed off at once.
 * A Python GVThread with an interrupt pending is asked for once it has run
 * past slice + grace, whether flagged or not (mon_interrupts).
 * Reads of the workers' fields are racy by design: a stale value delays a
 * decision by one period.  Runs on the timer thread, under the timer lock,
 * and takes no other lock but CPython's pending-call lock (a leaf). */
static int any_running(gv_runtime *rt) {
    for (int i = 0; i < rt->nworkers; i++)
        if (atomic_load_explicit(&rt->workers[i].slice_start, memory_order_relaxed))
            return 1;
    /* A thread left inside a GVThread by a handoff serves no worker. */
    int n = atomic_load_explicit(&rt->nthrs, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if (__atomic_load_n(&rt->thrs[i].cur, __ATOMIC_RELAXED))
            return 1;
    return 0;
}

/* An interrupt (cancel, timeout) for a Python GVThread that has run past
 * slice + grace without a safepoint: ask for a safepoint in its code, flagged
 * or not, and also after its worker was handed off (the worker loop of
 * gv_monitor no longer sees it: it is found through its thread).  Not
 * sooner: a GVThread that is about to reach a blocking call takes the
 * interrupt there, where code expects it; armed at once, a cancel landed
 * between a Mutex's lock() returning and the unlock() after it, and the
 * lock was never released (test_sync_stress.py on 3.12).  The request is
 * filed only while g is not armed; the arming side re-checks everything
 * (pymonitor.c, pytrace.c).  cur and g's fields are read racily: g's entry
 * is never unmapped, and a stale read files one request that finds nothing
 * to do, or none this period. */
static void mon_interrupts(gv_runtime *rt, uint64_t now) {
    if (!rt->mon_arm)
        return;
    uint64_t late = rt->slice_ticks + rt->grace_ticks;
    int n = atomic_load_explicit(&rt->nthrs, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        gv_gvt *g = __atomic_load_n(&rt->thrs[i].cur, __ATOMIC_RELAXED);
        if (!g || g->native || !atomic_load_explicit(&g->intr, memory_order_relaxed) ||
            atomic_load_explicit(&g->mon_armed, memory_order_relaxed))
            continue;
        uint64_t t0 = __atomic_load_n(&g->slice_t0, __ATOMIC_RELAXED);
        if (t0 && now > t0 && now - t0 >= late)
            gv_py_arm_request(rt, g);
    }
}

/* A Python GVThread past slice + grace without a safepoint, on a runtime
 * with monitor_safepoints: arm sys.monitoring safepoints in its code first,
 * hand its worker off only if that did not work within a grace period. */
static void mon_python_overrun(gv_runtime *rt, gv_worker *w, gv_gvt *g, uintptr_t owner,
                               uint64_t now) {
    int work = gv_any_work(rt) && !atomic_load(&rt->stopping);
    if (w->mon_arm_tsc && now - w->mon_arm_tsc >= rt->grace_ticks) {
        if (work && gv_handoff(rt, w, owner)) {
            w->mon_overrun = 2;
            return;
        }
        /* No spare thread to take the queue: keep asking.  An arm can fail
         * for a while (3.11: g was in a C call holding the GIL). */
    }
    /* Arm only if someone waits: a lone loop runs on undisturbed. */
    if (!work && !atomic_load_explicit(&g->intr, memory_order_relaxed))
        return;
    if (atomic_load_explicit(&g->mon_armed, memory_order_relaxed))
        return; /* armed: its next back-edge or call runs the safepoint */
    if (gv_py_arm_request(rt, g)) {
        if (!w->mon_arm_tsc)
            w->mon_arm_tsc = now;
    } else if (!w->mon_arm_tsc && work && gv_handoff(rt, w, owner)) {
        w->mon_overrun = 2; /* cannot ask (no hook, queue full): hand off as before */
    }
}

void gv_monitor(gv_runtime *rt) {
    uint64_t now = gv_ticks();
    for (int i = 0; i < rt->nworkers; i++) {
        gv_worker *w = &rt->workers[i];
        uint64_t start = atomic_load_explicit(&w->slice_start, memory_order_relaxed);
        uintptr_t owner = atomic_load_explicit(&w->owner, memory_order_acquire);
        gv_thr *ot = gv_owner_thr(owner);
        gv_gvt *g = (owner & 1) && ot ? __atomic_load_n(&ot->cur, __ATOMIC_RELAXED) : NULL;
        if (!start || !g || now < start) {
            w->mon_flag_g = NULL;
            continue;
        }
        uint64_t act = atomic_load_explicit(&w->activity, memory_order_relaxed);
        if (w->mon_flag_g && (w->mon_flag_g != g || w->mon_slice != start))
            w->mon_flag_g = NULL; /* that slice ended: a new one runs */
        if (!w->mon_flag_g) {
            if (now - start >= rt->slice_ticks) {
                atomic_store_explicit(&g->preempt, 1, memory_order_relaxed);
                __atomic_fetch_add(&w->stats.preempt_requests, 1, __ATOMIC_RELAXED);
                w->mon_flag_g = g;
                w->mon_slice = start;
                w->mon_flag_tsc = now;
                w->mon_flag_act = act;
                w->mon_overrun = 0;
                w->mon_arm_tsc = 0;
                atomic_store_explicit(&g->mon_armed, 0, memory_order_relaxed);
            }
        } else if (!w->mon_overrun && act == w->mon_flag_act &&
                   now - w->mon_flag_tsc >= rt->grace_ticks) {
            /* Flagged and no safepoint since: a blocking call, a C loop, or
             * code without safepoints.  If others wait, hand the worker to
             * a spare thread (Go's sysmon handoff); the stuck GVThread goes
             * on where it is and rejoins the queues when it switches out. */
            __atomic_fetch_add(&w->stats.overruns, 1, __ATOMIC_RELAXED);
            w->mon_overrun = 1;
            if (g->native && gv_forced_preempt_available())
                gv_force_preempt(ot, g); /* SIGURG; declined outside preemptible code */
            else if (!g->native && rt->mon_arm)
                mon_python_overrun(rt, w, g, owner, now);
            else if (gv_any_work(rt) && !atomic_load(&rt->stopping))
                gv_handoff(rt, w, owner);
        } else if (w->mon_overrun == 1 && !g->native && rt->mon_arm && act == w->mon_flag_act) {
            mon_python_overrun(rt, w, g, owner, now);
        } else if (w->mon_overrun && g->native && act == w->mon_flag_act &&
                   atomic_load_explicit(&g->force_req, memory_order_relaxed)) {
            /* The signal found it outside preemptible code: hand the queue off
             * if anything waits, else try again next period. */
            if ((gv_any_work(rt) || gv_native_work(rt)) && !atomic_load(&rt->stopping) &&
                gv_handoff(rt, w, owner))
                atomic_store_explicit(&g->force_req, 0, memory_order_relaxed);
            else
                gv_force_preempt(ot, g);
        }
    }
    mon_interrupts(rt, now);
}

/* A worker starts a slice while the monitor sleeps: wake it (once). */
void gv_monitor_kick(gv_runtime *rt) {
    gv_timer *t = &rt->timer;
    if (atomic_exchange(&t->monitor_asleep, 0)) {
        pthread_mutex_lock(&t->lock);
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
    }
}

static void *timer_main(void *arg) {
    gv_runtime *rt = arg;
    gv_timer *t = &rt->timer;
    gv_block_async_signals();
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        uint64_t now = gv_now_ns();
        advance(t, now >> TICK_SHIFT);
        int busy = rt->slice_ticks && any_running(rt);
        if (busy)
            gv_monitor(rt);
        uint64_t e = t->n ? next_event(t) : UINT64_MAX;
        uint64_t wake_ns = e == UINT64_MAX ? UINT64_MAX : e << TICK_SHIFT;
        if (busy && now + rt->monitor_ns < wake_ns)
            wake_ns = now + rt->monitor_ns;
        if (!busy && rt->slice_ticks) {
            /* A switch-in kicks us; the 100 ms cap covers a kick lost in the
             * race between this store and a worker's look at it. */
            atomic_store(&t->monitor_asleep, 1);
            if (atomic_load(&rt->live) && now + 100000000u < wake_ns)
                wake_ns = now + 100000000u;
        }
        t->sleep_until = wake_ns == UINT64_MAX ? UINT64_MAX : ns_to_tick_up(wake_ns);
        if (wake_ns == UINT64_MAX) {
            pthread_cond_wait(&t->cond, &t->lock);
        } else {
            struct timespec ts = {(time_t)(wake_ns / 1000000000u), (long)(wake_ns % 1000000000u)};
            pthread_cond_timedwait(&t->cond, &t->lock, &ts);
        }
        atomic_store(&t->monitor_asleep, 0);
        t->sleep_until = 0;
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int gv_timer_start(gv_runtime *rt) {
    gv_timer *t = &rt->timer;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->lock, NULL);
    t->cur_tick = gv_now_ns() >> TICK_SHIFT;
    if (pthread_create(&t->thread, NULL, timer_main, rt) != 0)
        return -1;
    t->started = 1;
    return 0;
}

void gv_timer_stop(gv_runtime *rt) {
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

/* ---- the park timeout of a GVThread: one node embedded in its metadata ---- */

static void park_timer_fire(gv_tnode *n) {
    gv_gvt *g = (gv_gvt *)((char *)n - offsetof(gv_gvt, ptimer));
    gv_wake_if(g, g->ptimer_seq);
}

void gv_park_timer_arm(gv_gvt *g, uint64_t when_ns) {
    g->ptimer.fire = park_timer_fire;
    g->ptimer_seq = g->park_seq;
    gv_tnode_arm(g->rt, &g->ptimer, when_ns);
}

void gv_park_timer_cancel(gv_gvt *g) { gv_tnode_cancel(g->rt, &g->ptimer); }
