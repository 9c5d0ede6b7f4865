/* gv.h -- the public header of the GVThread native core.
 *
 * Everything declared here is bound by cffi (native/build.py parses the block
 * between the GV_CDEF markers).  Types used only inside the core live in
 * gv_internal.h.  Python-object handling (spawn, join, Handle) is not here: it
 * is CPython-API code in pybridge.c, registered as the module gvthread._core,
 * because it must hold the GIL across the calls that usually do not block.
 */
#ifndef GV_H
#define GV_H

#include <stdint.h>
#include <stddef.h>

/* GV_CDEF_BEGIN */
typedef struct gv_runtime gv_runtime;
typedef struct gv_slots gv_slots_t;

typedef struct gv_config {
    int workers;              /* worker OS threads, 1..GV_MAX_WORKERS */
    size_t stack_size;        /* bytes per slot, page multiple, GV_MIN_STACK..GV_MAX_STACK */
    uint32_t max_gvthreads;   /* slots reserved up front */
    double time_slice;        /* seconds a GVThread runs before it is asked to yield; 0: never */
    double grace_period;      /* seconds after the ask before the runtime forces the issue */
    int max_spare_threads;    /* OS threads that may take over a stuck worker's queue */
    int monitor_safepoints;   /* arm safepoints in a stuck Python GVThread's code before
                                 handing its worker off: sys.monitoring (3.12+,
                                 pymonitor.c) or a trace function (3.11, pytrace.c) */
} gv_config;

typedef struct gv_worker_stats {
    uint64_t switches;        /* GVThreads switched in by this worker */
    uint64_t yields;          /* voluntary yields that went back to a run queue */
    uint64_t migrations;      /* switched in here after last running elsewhere */
    uint64_t steals;          /* GVThreads taken from another worker's queue */
    uint64_t parks;           /* times this worker went idle on its futex */
    uint64_t blocks;          /* GVThreads that parked (join, ...) */
    uint64_t preempt_requests;/* slices that ran out: the preempt flag was set */
    uint64_t priority_preempts; /* flags set because a higher priority became runnable */
    uint64_t coop_preemptions;/* GVThreads that yielded at a safepoint because flagged */
    uint64_t forced_preemptions; /* forced off the worker (issue 4: native, SIGURG) */
    uint64_t handoffs;        /* run queue handed to a spare thread (stuck worker) */
    uint64_t overruns;        /* flagged, and no safepoint within the grace period */
    uint64_t direct_yields;   /* native yields that switched straight to the next native
                                 (also counted in switches and yields) */
    uint64_t idle_ns;         /* time parked with nothing to run, up to the read */
} gv_worker_stats;

typedef struct gv_runtime_stats {
    uint64_t spawned;
    uint64_t finished;
    uint32_t live;
    uint32_t slots_in_use;
    int guard_pages;          /* 1: MADV_GUARD_INSTALL, 0: canary */
    uint32_t own_stacks;      /* GVThreads on a stack of their own (spawn(stack_size=)) */
    uint64_t stack_trims;     /* deep stack pages given back (at a park or an exit) */
    uint64_t trace_arm_requests; /* 3.11: requests served by the arming thread (pytrace.c) */
    uint64_t trace_arms;      /* 3.11: of those, trace safepoints installed */
} gv_runtime_stats;

/* Errors returned by gv_runtime_new and gv_spawn_prepare. */
#define GV_OK              0
#define GV_E_CONFIG       -1
#define GV_E_NOMEM        -2
#define GV_E_THREAD       -3
#define GV_E_EXHAUSTED    -4
#define GV_E_SHUTDOWN     -5

#define GV_MIN_STACK      65536
#define GV_DEFAULT_STACK  8388608       /* 8 MiB, a main thread's */
#define GV_MAX_STACK      17179869184   /* 16 GiB */
#define GV_MAX_WORKERS    64

gv_runtime *gv_runtime_new(const gv_config *cfg, int *err);
/* Stop the workers.  wait=1 first waits for every GVThread to finish.
 * Returns 0 when every worker was joined, 1 when some worker stayed inside a
 * GVThread past the deadline (it is left running, detached). */
int gv_runtime_stop(gv_runtime *rt, int wait, double timeout);
/* Free the runtime; its stack region is unmapped only if no GVThread is left. */
void gv_runtime_free(gv_runtime *rt);
/* 1 once no GVThread is alive, 0 if timeout (seconds) passed first. */
int gv_runtime_wait_idle(gv_runtime *rt, double timeout);
int gv_runtime_workers(gv_runtime *rt);
void gv_runtime_stats_get(gv_runtime *rt, gv_runtime_stats *out);
int gv_worker_stats_get(gv_runtime *rt, int worker, gv_worker_stats *out);
/* Release the pages of free slots beyond a small hot set (also done when idle). */
void gv_runtime_trim(gv_runtime *rt);

/* Test hooks: the slot allocator and the priority bitmap on their own. */
gv_slots_t *gv_slots_test_new(uint32_t nslots, size_t slot_size);
void gv_slots_test_free(gv_slots_t *s);
int64_t gv_slots_test_alloc(gv_slots_t *s);
void gv_slots_test_release(gv_slots_t *s, uint32_t idx);
uint32_t gv_slots_test_in_use(gv_slots_t *s);
int gv_prio_highest(uint32_t bitmap);

/* Code in [lo, hi) may be preempted by SIGURG at any instruction (native
 * GVThreads only).  0 ok, -1 bad range or table full. */
int gv_register_preemptible(uintptr_t lo, uintptr_t hi);
int gv_forced_preempt_available(void);

/* Registers gvthread._core (the CPython-API half) in sys.modules. */
int gv_pymodule_init(void);
/* GV_CDEF_END */

#endif
