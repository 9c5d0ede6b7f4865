/* gv_internal.h -- types shared by the files of the native core.
 *
 * Lock order (acquire in this order, never the reverse):
 *   handle waiter lock -> timer lock -> run queue lock -> pool (slot) lock
 *   region-table lock and the chunk-cache lock are leaves; so is CPython's
 *   pending-call lock, taken under the timer lock by gv_py_arm_request (3.12+;
 *   on 3.11 it only files a request and wakes the arming thread, pytrace.c,
 *   which takes the GIL and no lock of ours).
 * (A timed join adds its timer entry under the handle lock, from the park
 * unlock callback; the timer fires wakeups, which push to run queues, under
 * the timer lock.)
 * No lock is ever held across a context switch: a GVThread that parks hands
 * the lock to gv_park(), and its worker releases it after the switch-out.
 */
#ifndef GV_INTERNAL_H
#define GV_INTERNAL_H

#include "gv.h"
#include "arch/select.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#if GV_ASAN
#include <sanitizer/common_interface_defs.h>
/* A context switch to a stack [lo, lo + size) that will switch back here:
 * ASan must be told which stack it runs on (fiber annotations). */
#define GV_SWITCH(from, to, lo, size)                                          \
    do {                                                                       \
        void *gv_fake_ = NULL;                                                 \
        __sanitizer_start_switch_fiber(&gv_fake_, (lo), (size));               \
        gv_ctx_switch((from), (to));                                           \
        __sanitizer_finish_switch_fiber(gv_fake_, NULL, NULL);                 \
    } while (0)
#else
#define GV_SWITCH(from, to, lo, size) gv_ctx_switch((from), (to))
#endif

#define GV_CACHELINE 64
#define GV_NPRIO 4
#define GV_PAGE 4096u

/* Asserts that survive NDEBUG: a broken scheduler invariant is fatal. */
#define GV_CHECK(cond, msg)                                                    \
    do {                                                                       \
        if (__builtin_expect(!(cond), 0))                                      \
            gv_fatal(__FILE__, __LINE__, #cond, msg);                          \
    } while (0)
#define GV_CT_ASSERT(cond, msg) _Static_assert(cond, msg)

__attribute__((noreturn)) void gv_fatal(const char *file, int line,
                                        const char *cond, const char *msg);

/* ---- spin lock: short critical sections only (queue pointer updates) ---- */
typedef struct { atomic_int v; } gv_spin;
static inline void gv_spin_lock(gv_spin *l) {
    /* Acquire: pairs with the Release store in gv_spin_unlock. */
    if (__builtin_expect(atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0, 1))
        return;
    void gv_spin_lock_slow(gv_spin *l);
    gv_spin_lock_slow(l);
}
static inline void gv_spin_unlock(gv_spin *l) {
    /* Release: pairs with the Acquire exchange in gv_spin_lock. */
    atomic_store_explicit(&l->v, 0, memory_order_release);
}

/* ---- futex ---- */
int gv_futex_wait(atomic_uint *word, unsigned expected, int64_t timeout_ns);
void gv_futex_wake(atomic_uint *word, int n);
uint64_t gv_now_ns(void); /* CLOCK_MONOTONIC */
uint64_t gv_coarse_ns(void); /* CLOCK_MONOTONIC_COARSE: a few ms resolution, cheap */
/* Cycle counter for per-switch accounting (invariant TSC on x86_64; the
 * monotonic clock elsewhere); gv_ticks_per_ns is calibrated once. */
static inline uint64_t gv_ticks(void) {
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return gv_now_ns();
#endif
}
extern double gv_ticks_per_ns;
void gv_ticks_calibrate(void);

/* ---- GVThread states.  Written by the owner of the transition (below),
 * read racily by inspection, which tolerates a stale value. ---- */
enum gv_state {
    GV_CREATED = 0,   /* slot and metadata set up; not yet in a queue */
    GV_READY = 1,     /* in exactly one run queue; the queue owns it */
    GV_RUNNING = 2,   /* on a worker; that worker owns it */
    GV_BLOCKED = 3,   /* parked; owned by the wait object (join list, timer) */
    GV_PREEMPTED = 4, /* forced off a worker; owned by a run queue (issue 4) */
    GV_FINISHED = 5,  /* returned or raised; slot being released */
    GV_CANCELLED = 6, /* finished by cancellation (issue 3) */
    GV_FREE = 7,      /* metadata entry not in use (internal, never shown) */
};
#define GV_NO_SLOT 0xffffffffu
#define GV_OWN_SLOT 0xfffffffeu /* the GVThread has its own stack mapping (own_map) */

/* What the worker does after a GVThread switches back to it. */
enum gv_after { GV_AFTER_NONE, GV_AFTER_YIELD, GV_AFTER_PREEMPT, GV_AFTER_FORCED, GV_AFTER_PARK,
                GV_AFTER_EXIT };

/* What a BLOCKED GVThread waits on; values match gvthread.WaitKind. */
enum gv_wait_kind {
    GV_WAIT_NONE = 0, GV_WAIT_JOIN = 1, GV_WAIT_CHANNEL_SEND = 2, GV_WAIT_CHANNEL_RECV = 3,
    GV_WAIT_SELECT = 4, GV_WAIT_MUTEX = 5, GV_WAIT_CONDVAR = 6, GV_WAIT_RWLOCK = 7,
    GV_WAIT_SEMAPHORE = 8, GV_WAIT_BARRIER = 9, GV_WAIT_WAITGROUP = 10, GV_WAIT_ONCE = 11,
    GV_WAIT_EVENT = 12, GV_WAIT_SLEEP = 13, GV_WAIT_BLOCKING = 14, GV_WAIT_OTHER = 15,
};

typedef struct gv_worker gv_worker;
typedef struct gv_gvt gv_gvt;
typedef struct gv_runtime gv_runtime_t;

/* A timer: armed in one runtime's wheel, fired on its timer thread. */
typedef struct gv_tnode {
    struct gv_tnode *prev, *next;
    uint64_t when_tick;
    int16_t level;              /* -1: not armed */
    int16_t slot;
    void (*fire)(struct gv_tnode *);
} gv_tnode;

/* Interrupt bits (gv_gvt.intr), delivered at the next blocking point or
 * safepoint, one-shot. */
#define GV_INT_CANCEL 1u
#define GV_INT_TIMEOUT 2u

/* Per-GVThread metadata, one entry of the runtime's dense metadata pool
 * (rt->metas), taken at spawn; the stack slot is bound at the first run. */
struct gv_gvt {
    gv_ctx ctx;                 /* offset 0: the switch code stores sp here */
    gv_gvt *next;               /* run queue / wait list link */
    struct gv_runtime *rt;
    uint64_t id;
    _Atomic uint32_t state;     /* enum gv_state */
    uint8_t prio;               /* 0 = critical .. 3 = low */
    uint8_t after;              /* enum gv_after, set by the GVThread itself */
    uint8_t wait_kind;          /* enum gv_wait_kind, for inspection */
    uint8_t native;             /* 1: a C function run without the GIL */
    uint32_t slot;              /* stack slot, GV_NO_SLOT until the first run */
    uint32_t meta;              /* index of this struct in rt->metas */
    int32_t last_worker;        /* -1 before the first run */
    uint64_t wait_obj;          /* id of what a BLOCKED GVThread waits on */
    uint32_t park_seq;          /* wake_seq value of the current park */
    _Atomic uint32_t mon_armed; /* 1: its safepoints are armed (pymonitor.c, pytrace.c; 2:
                                   3.11, with OPCODE events asked on its frame);
                                   set by it in the pending call, cleared by the monitor
                                   when it flags a new slice */
    void (*park_unlock)(void *);
    void *park_arg;
    _Atomic uint32_t wake_seq;  /* bumped by each successful wake (CAS from the
                                   park's value): one waker wins a park */
    int32_t big_extra;          /* recursion units added for a borrowed-stack call
                                   (pycompile.c), 0 outside one */
    _Atomic uint32_t intr;      /* GV_INT_* pending; set by gv_interrupt */
    _Atomic uint32_t force_req; /* monitor asked SIGURG to force it off (preempt.c) */
    _Atomic uint32_t preempt;   /* set by the monitor or a higher-priority wakeup;
                                   cleared at switch-in; read at safepoints */
    uint32_t preemptions;       /* times it yielded because flagged */
    uint64_t cpu_ticks;         /* TSC ticks spent switched in, charged one switch late
                                   (sched.c, start_slice) */
    uint64_t slice_t0;          /* TSC at its latest switch-in: inspection adds the
                                   running slice of a RUNNING GVThread to cpu_ticks;
                                   the monitor tells a late interrupted one by it */
    uint32_t ptimer_seq;        /* park the park timer belongs to */
    gv_tnode ptimer;            /* the park timeout (timer.c) */
    void (*nfn)(void *);        /* native GVThreads: the function and its argument */
    void *narg;
    void *tstate;               /* PyThreadState*, NULL when not alive in Python */
    void *task;                 /* strong ref to the Handle (PyObject*) */
    void *chunk_hint;           /* in-slot first data-stack chunk, until taken */
    uint64_t created_ns, started_ns;
    uint64_t switches;
    /* A native that yielded straight to this one (sched.c, "Direct native
     * yield"): set by it just before the switch, while it still runs on its
     * own stack; queued by this one as soon as it resumes. */
    gv_gvt *yielder;
    void *stack_lo;             /* lowest usable stack byte (above the guard) */
    size_t stack_size;          /* usable bytes from stack_lo up; while a borrowed-stack call
                                   runs, both describe the borrowed stack */
    int32_t rec_units;          /* recursion units its own stack holds (pybridge.c) */
    void *own_map;              /* its own stack mapping (spawn(stack_size=)); NULL: a slot */
    size_t own_len;
} __attribute__((aligned(GV_CACHELINE)));

GV_CT_ASSERT(offsetof(gv_gvt, ctx) == 0, "the switch code stores sp at offset 0");
GV_CT_ASSERT(sizeof(gv_gvt) % GV_CACHELINE == 0, "gvt is whole cache lines");
GV_CT_ASSERT(sizeof(gv_gvt) <= 320 || GV_CTX_UCONTEXT, "gvt stays five cache lines");

/* ---- run queue: FIFO per priority, bitmap of non-empty levels ---- */
typedef struct gv_runq {
    gv_spin lock;
    _Atomic uint32_t bitmap;    /* bit p set <=> lv[p] non-empty; racy reads OK:
                                   a reader re-checks under the lock */
    _Atomic uint32_t len;
    struct { gv_gvt *head, *tail; } lv[GV_NPRIO];
} __attribute__((aligned(GV_CACHELINE))) gv_runq;

void gv_runq_push(gv_runq *q, gv_gvt *g);
gv_gvt *gv_runq_pop(gv_runq *q, int prio);   /* prio -1: highest non-empty */

/* ---- pools: one MAP_NORESERVE region, fixed-size items, LIFO free stack.
 * Used twice per runtime: for stacks (page-multiple slots with guard pages)
 * and for the dense gv_gvt metadata array. ---- */
struct gv_slots {
    char *base;
    size_t slot_size;
    uint32_t nslots;
    uint32_t high_water;        /* slots [0, high_water) have been handed out */
    uint32_t *free_stack;       /* released slot indices, LIFO */
    uint32_t nfree;
    uint32_t clean_below;       /* free_stack[0, clean_below) are madvised */
    uint32_t in_use;
    int stacks;                 /* 1: stack slots (guard page, canary) */
    uint32_t guarded;           /* slots [0, guarded) have their guard page */
    int guard;                  /* 1 if MADV_GUARD_INSTALL works here */
    pthread_mutex_t lock;
};
int gv_slots_init(struct gv_slots *s, uint32_t nslots, size_t slot_size, int stacks);
void gv_slots_destroy(struct gv_slots *s);
int64_t gv_slots_alloc(struct gv_slots *s);
void gv_slots_release(struct gv_slots *s, uint32_t idx);
void gv_slots_trim(struct gv_slots *s, uint32_t keep_hot);
uint32_t gv_slots_reset_if_empty(struct gv_slots *s, uint32_t keep_hot);
/* Stack regions of live runtimes, for the arena hook: a data-stack chunk
 * inside one was carved from a slot and must not be freed or cached. */
void gv_region_register(char *lo, char *hi);
void gv_region_unregister(char *lo);
int gv_region_contains(const void *p);
static inline char *gv_slot_base(struct gv_slots *s, uint32_t idx) {
    return s->base + (size_t)idx * s->slot_size;
}
#define GV_CANARY 0x6776746872656164ull /* "gvthread" */
/* Borrowed stacks (stack.c; Go's systemstack): run fn(arg) for GVThread g,
 * the caller, on an 8 MiB stack taken from a process-wide pool, for C code
 * whose recursion no counter bounds (CPython's parser and compiler).  g may
 * park and move to another worker meanwhile; the stack stays its own until
 * fn returns.  Returns 0 if no stack could be had (fn did not run). */
#define GV_BIGSTACK_SIZE ((size_t)8 << 20)
int gv_call_on_bigstack(gv_gvt *g, void (*fn)(void *), void *arg);
void gv_bigstack_counts(int *mapped, int *pooled);
#define GV_CHUNK_BYTES (16u * 1024u)    /* CPython's _PY_DATA_STACK_CHUNK_SIZE */
#define GV_SLOT_TOP_PAD 1024u           /* see slot layout in stack.c */
/* Stacks of their own (spawn(stack_size=)): len bytes laid out as a slot,
 * guarded.  NULL if the mapping failed. */
char *gv_own_stack_map(size_t len);
void gv_own_stack_unmap(char *base, size_t len);
/* Give back the pages of a stack [base, base+len) (slot layout) below sp, if
 * its mark shows it went deep since the last time (stack.c, "Giving back
 * deep pages").  Returns 1 if it gave pages back. */
int gv_stack_shrink(char *base, size_t len, const char *sp, const char *data_top);
#if GV_ASAN
void gv_stack_unpoison_exit(char *base, size_t len, const char *sp); /* stack.c */
#endif
/* pybridge.c: the top of a parked tstate's CPython data stack (its frames). */
const char *gv_py_data_top(void *tstate);

/* ---- worker threads and workers (Go's M and P) ----
 *
 * A worker (gv_worker, Go's P) is a run queue, a slot for the Python token
 * and statistics.  A thread (gv_thr, Go's M) is an OS thread with its own
 * scheduler stack that serves one worker at a time.  They are one-to-one
 * until a thread gets stuck inside a GVThread (a blocking call, a C loop):
 * then the monitor hands its worker to a spare thread (handoff), and the
 * stuck thread, once its GVThread switches out, becomes a spare itself.
 *
 * Ownership of a worker is the word `owner`: the serving thread's address,
 * with bit 0 set while that thread is inside a GVThread.  Only then may the
 * monitor take the worker away, by a CAS from (thr | 1); the thread takes
 * its worker back after each switch-out by a CAS from (thr | 1) to thr, and
 * if that fails it has lost the worker.  So the worker is never served by
 * two threads at once. */
typedef struct gv_thr gv_thr;
struct gv_thr {
    gv_ctx sched_ctx;           /* this thread's own stack (Go's g0) */
    struct gv_runtime *rt;
    struct gv_worker *p;        /* the worker it serves; NULL for a spare */
    gv_gvt *cur;                /* the GVThread switched in, or NULL */
    int idx;                    /* index in rt->thrs */
    pthread_t thread;
    int started;
    int detached;
    _Atomic int exited;
    _Atomic uint32_t spare_word;/* futex a spare sleeps on; 1 = given a worker */
    gv_thr *next_spare;
    /* CPU time is charged one switch late, from one TSC read per switch-in
     * (reading it at the switch-out too cost ~10 ns a switch here): the last
     * GVThread this thread ran, and when it was switched in.  Flushed before
     * the thread lets its worker or the Python token go, because only then
     * could that GVThread run (and end) elsewhere. */
    void *sigaltstack_mem;      /* the alternate stack SIGURG runs on (preempt.c) */
    gv_gvt *acct_g;
    uint64_t acct_t0;
    /* 3.11 only (pybridge.h, "Keeping the GIL"): this thread holds the GIL
     * with no tstate attached, between two Python GVThreads. */
    int holds_gil;
    void *idle_ts;              /* tstate used only to release (3.11) or take the GIL
                                   from the scheduler stack */
#if GV_ASAN
    const void *asan_stack_lo;
    size_t asan_stack_size;
#endif
} __attribute__((aligned(GV_CACHELINE)));
GV_CT_ASSERT(offsetof(gv_thr, sched_ctx) == 0, "sched ctx first");

struct gv_worker {
    struct gv_runtime *rt;
    _Atomic uintptr_t owner;    /* serving gv_thr*, | 1 while inside a GVThread */
    int idx;
    uint32_t tick;              /* picks of a higher level while a lower one waited */
    uint32_t gtick;             /* same-level picks, for the 1-in-61 global check */
    uint32_t ntick;             /* native picks, for the 1-in-61 global check */
    _Atomic uint32_t park_word; /* futex; 1 = woken */
    _Atomic uint64_t park_since; /* gv_now_ns() at park while parked, else 0 */
    gv_worker_stats stats;
    /* Preemption monitor (timer.c).  The serving thread writes slice_start
     * (TSC at switch-in, 0 when not in a GVThread) and activity (bumped at
     * every switch-in and safepoint); the monitor reads both racily, and a
     * stale value only delays a decision by one monitor period. */
    _Atomic uint64_t slice_start;
    _Atomic uint64_t activity;
    uint64_t mon_flag_tsc;      /* monitor-private: when it set the flag */
    uint64_t mon_flag_act;      /* monitor-private: activity at that moment */
    gv_gvt *mon_flag_g;         /* monitor-private: whom it flagged */
    uint64_t mon_slice;         /* monitor-private: slice_start of the flagged slice */
    int mon_overrun;            /* monitor-private: 1 overrun seen, 2 handed off */
    uint64_t mon_arm_tsc;       /* monitor-private: first sys.monitoring arm request, 0: none */
    gv_runq local;
    gv_runq nlocal;             /* native GVThreads: any thread may run them */
} __attribute__((aligned(GV_CACHELINE)));
GV_CT_ASSERT(sizeof(gv_worker) % GV_CACHELINE == 0, "worker is whole cache lines");

static inline gv_thr *gv_owner_thr(uintptr_t word) { return (gv_thr *)(word & ~(uintptr_t)1); }

/* ---- wait lists (wait.c) ---- */
typedef struct gv_select_state {
    _Atomic int done;           /* CAS 0 -> 1 by the one case that wins */
    int winner;                 /* case index of the winner */
} gv_select_state;

typedef struct gv_waiter gv_waiter;
struct gv_waiter {
    gv_waiter *prev, *next;
    gv_gvt *g;                  /* NULL: an OS thread, blocked on futex */
    uint32_t park_seq;
    _Atomic uint32_t futex;     /* OS-thread waiter: 1 once woken */
    _Atomic uint32_t *wake_word;/* the futex to set (a select's cases share one);
                                   NULL: &futex */
    int queued;                 /* in a list */
    int granted;                /* set by the waker under the list's lock */
    int64_t who;                /* GVThread id, or -(OS thread ident) */
    uint64_t since_ns;          /* when it started waiting (fairness) */
    void *data;                 /* what a grant gives (a channel item...) */
    int flags;                  /* per-primitive (channel: closed wake) */
    int case_index;
    gv_select_state *sel;       /* non-NULL: one case of a select */
};
typedef struct gv_wlist { gv_waiter *head, *tail; uint32_t n; } gv_wlist;
void gv_wlist_push(gv_wlist *l, gv_waiter *w);
void gv_wlist_push_front(gv_wlist *l, gv_waiter *w);
void gv_wlist_remove(gv_wlist *l, gv_waiter *w);
gv_waiter *gv_wlist_claim(gv_wlist *l);
void gv_waiter_wake(gv_waiter *w);

/* ---- timer wheel (timer.c) ---- */
typedef struct gv_timer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    gv_tnode *wheel[4][64];
    uint64_t occupied[4];       /* bit s of level l: wheel[l][s] non-empty */
    gv_tnode *overflow;         /* farther than level 3 reaches */
    uint64_t cur_tick;          /* ticks before this one are processed */
    uint64_t sleep_until;       /* tick the thread sleeps until; 0 when awake */
    _Atomic int monitor_asleep; /* no worker was running: a switch-in kicks it */
    size_t n;                   /* armed nodes */
    int stop;
    int started;
    pthread_t thread;
} gv_timer;

/* The arming thread of 3.11 trace safepoints (pytrace.c); idle on 3.12+. */
typedef struct gv_armer {
    pthread_t thread;
    int started;                /* running; joined (or detached) by gv_pytrace_stop */
    int detached;               /* left behind at stop: rt must not be freed */
    _Atomic uint32_t word;      /* futex: bumped by each request and by stop */
    _Atomic int stop;
    _Atomic int exited;         /* set by the thread as its last act */
    /* The one outstanding request: the GVThread and its id, written by the
     * monitor (timer thread) when req_g is NULL, cleared by the arming thread
     * once it has been served.  Release of req_g pairs with the thread's
     * Acquire load, so req_id is read after it. */
    _Atomic uint64_t req_id;
    gv_gvt *_Atomic req_g;
    _Atomic uint64_t served;    /* requests taken (tests, docs/HACKING.md) */
    _Atomic uint64_t armed;     /* of those, trace functions installed */
} gv_armer;

struct gv_runtime {
    gv_config cfg;
    struct gv_slots slots;      /* stacks */
    struct gv_slots metas;      /* gv_gvt array; an entry per live GVThread */
    gv_runq global;
    gv_runq nglobal;            /* native GVThreads from outside a worker */
    gv_worker *workers;
    int nworkers;
    gv_thr *thrs;               /* nworkers + max_spare threads, made on demand */
    int nthrs_max;
    _Atomic int nthrs;          /* started so far */
    pthread_mutex_t spare_lock;
    gv_thr *spares;             /* idle spare threads */
    /* The Python token: index of the one worker allowed to run Python
     * GVThreads, or -1.  A GIL build runs Python on one OS thread at a time
     * anyway; two workers taking turns would bounce the GIL on every yield. */
    _Atomic int py_owner;
    _Atomic uint64_t idle_mask; /* workers parked (or about to) on their futex */
    _Atomic uint32_t wake_rr;
    _Atomic int stopping;
    _Atomic uint64_t next_id;
    _Atomic uint32_t live;      /* futex: spawned and not yet released */
    _Atomic uint32_t exiting;   /* ended in Python, slot not yet released */
    _Atomic uint64_t spawned, finished;
    _Atomic uint64_t stack_trims;   /* gv_stack_shrink calls that gave pages back */
    _Atomic uint32_t own_stacks;    /* live GVThreads with own_map set */
    gv_timer timer;
    void *interp;               /* PyInterpreterState* of the creator */
    void *pycore;               /* borrowed: the gvthread._core.Core object */
    int py_recursion_units;     /* recursion bound of a default-stack GVThread (pybridge.c) */
    uint64_t slice_ticks;       /* time_slice in gv_ticks; 0: no preemption */
    uint64_t grace_ticks;
    uint64_t monitor_ns;        /* how often the monitor looks while workers run */
    int mon_arm;                /* gv_config.monitor_safepoints */
    gv_armer armer;             /* 3.11: trace safepoints (pytrace.c) */
};

/* ---- scheduler API used by pybridge.c ---- */
extern _Thread_local gv_thr *gv_tls_thr;
static inline gv_gvt *gv_current(void) {
    gv_thr *t = gv_tls_thr;
    return t ? t->cur : NULL;
}
int gv_spawn_prepare(gv_runtime *rt, int prio, void *task, gv_gvt **out);
/* Between prepare and start: g runs on map (from gv_own_stack_map), which it
 * owns from here on and which is unmapped when it ends. */
void gv_spawn_own_stack(gv_gvt *g, char *map, size_t len);
void gv_spawn_start(gv_gvt *g);
void gv_ready(gv_gvt *g);
void gv_yield(void);
void gv_preempt_yield(void);
void gv_safepoint_tick(void);  /* a safepoint was reached: the monitor sees progress */
void gv_monitor(gv_runtime *rt); /* timer.c: the preemption monitor */
void gv_monitor_kick(gv_runtime *rt);
/* Park the current GVThread.  unlock(arg) runs on the worker after the switch
 * out, so a waker holding the same lock cannot see a half-parked GVThread. */
void gv_park(void (*unlock)(void *), void *arg);
/* Make g runnable if it is still in the park numbered seq; for racing wakers. */
int gv_wake_if(gv_gvt *g, uint32_t seq);
int gv_timer_start(gv_runtime *rt);
void gv_timer_stop(gv_runtime *rt);
void gv_tnode_arm(gv_runtime *rt, gv_tnode *n, uint64_t when_ns);
int gv_tnode_cancel(gv_runtime *rt, gv_tnode *n); /* 1 if it was armed */
/* The park timeout of g: arm from the park's unlock callback (after the
 * switch-out), cancel after g resumes. */
void gv_park_timer_arm(gv_gvt *g, uint64_t when_ns);
void gv_park_timer_cancel(gv_gvt *g);
/* Set interrupt bits on g and wake it if it is parked (see wait.c). */
void gv_interrupt(gv_gvt *g, uint32_t bits);
int gv_thr_start(gv_runtime *rt, gv_worker *p);
/* preempt.c: forced preemption of native GVThreads */
int gv_register_preemptible(uintptr_t lo, uintptr_t hi);
int gv_forced_preempt_init(void);
int gv_forced_preempt_available(void);
void *gv_thread_sigaltstack(void);
void gv_thread_sigaltstack_free(void *mem);
void gv_force_preempt(gv_thr *t, gv_gvt *g);
void gv_block_async_signals(void);
void gv_worker_wake(gv_worker *w);
static inline gv_gvt *gv_meta_at(gv_runtime *rt, uint32_t i) {
    return (gv_gvt *)gv_slot_base(&rt->metas, i);
}
/* Defined by pybridge.c: runs the Python callable of g on g's stack. */
void gv_py_run(gv_gvt *g);
/* Defined by pybridge.c: complete the Handle of a native GVThread that ended
 * (takes the GIL with the thread's own tstate). */
void gv_py_native_exit(gv_thr *t, gv_gvt *g);
/* A native GVThread: fn(arg) without the GIL; task may be NULL (detached). */
uint64_t gv_spawn_native_raw(gv_runtime *rt, int prio, void *task, void (*fn)(void *), void *arg);
struct gv_native_api;
const struct gv_native_api *gv_native_api_get(void);
int gv_chan_native_send(void *chan, int64_t value);   /* pychan.c */
int gv_chan_native_recv(void *chan, int64_t *value);
/* Defined by pybridge.c: worker-side GIL bookkeeping (no-ops on 3.12+). */
void gv_py_worker_init(gv_thr *t);
void gv_py_worker_release_gil(gv_thr *t);
void gv_py_worker_fini(gv_thr *t);
gv_thr *gv_thr_now(void);
/* Monitor: give the stuck worker w to a spare thread (sched.c). */
int gv_handoff(gv_runtime *rt, gv_worker *w, uintptr_t stuck_owner);
bool gv_any_work(gv_runtime *rt);
bool gv_native_work(gv_runtime *rt);
/* pymonitor.c: ask g's thread (by a CPython pending call) to arm sys.monitoring
 * safepoints in the code g runs.  Callable without the GIL; 0 if it cannot. */
int gv_py_arm_request(gv_runtime *rt, gv_gvt *g);
/* pytrace.c (3.11): the arming thread of trace safepoints.  start: 0 ok or
 * not needed (3.12+, no slice); stop (deadline in gv_now_ns): 1 if it had to
 * be left detached. */
int gv_pytrace_start(gv_runtime *rt);
int gv_pytrace_stop(gv_runtime *rt, uint64_t deadline);
int gv_pytrace_request(gv_runtime *rt, gv_gvt *g);
void gv_gilstate_switch_in(void *tstate);   /* pygilstate.c */
void gv_gilstate_switch_out(void *tstate);

#endif
