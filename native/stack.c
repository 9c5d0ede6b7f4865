/* stack.c -- the stack region and its slot allocator.
 *
 * Design.  All GVThread stacks of a runtime live in ONE anonymous mapping,
 * reserved with MAP_NORESERVE and sliced into fixed-size slots.  Rejected:
 *  - one mmap per stack: a system call per spawn and a VMA per GVThread;
 *  - one mprotect'ed guard page per slot: every mprotect splits the VMA, and
 *    the process dies near 32,700 slots (vm.max_map_count = 65,530);
 *  - growable (copying) stacks: C frames hold pointers into the stack.
 * Chosen: guard pages by MADV_GUARD_INSTALL (Linux >= 6.13), which marks
 * page-table entries and leaves the VMA whole; where the kernel lacks it, a
 * canary word at the bottom of each stack, checked by the worker at every
 * switch-out.  Memory of a dead slot goes back with MADV_DONTNEED, lazily:
 * the most recently freed slots stay warm (LIFO reuse makes the next spawn
 * find its pages mapped) and the rest are trimmed when a worker goes idle.
 *
 * Slots are as deep as a thread's stack (8 MiB by default), so a GVThread
 * runs what a thread runs: the reservation is address space, not memory
 * (1M slots reserve 8 TiB of the 128 TiB user half).  Transparent huge
 * pages are off, so a stack's first touch maps 4 KiB, never 2 MiB, and the
 * region starts one page below a 2 MiB boundary, so that a parked GVThread
 * needs one page-table page (gv_slots_init).  Pages a deep call touched, C
 * frames or CPython's data stack, go back at a park or the exit
 * (gv_stack_shrink below).  A GVThread spawned with another size
 * gets a mapping of its own in the same layout (gv_own_stack_map).
 *
 * Slot layout, low to high addresses (T = top of slot, page aligned):
 *   [guard page][ C stack, grows down ...  | first data-stack chunk ][pad]
 *                                          ^ C = T - 16K - 1K = initial sp
 * C sits 3 KiB into its page: the hot top of the C stack and the start of
 * the CPython data-stack chunk (which grows up) share that one page, so a
 * parked Python GVThread usually costs one page of stack memory.  The
 * metadata (gv_gvt) lives in a separate dense pool, taken at spawn; a slot
 * is bound when the GVThread first runs (sched.c, bind_stack).
 */
#include "gv_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define HUGE_ALIGN ((size_t)2 << 20)

#if GV_ASAN
#include <sanitizer/asan_interface.h>
#endif

void gv_fatal(const char *file, int line, const char *cond, const char *msg) {
    fprintf(stderr, "gvthread: fatal: %s (%s) at %s:%d\n", msg, cond, file, line);
    fflush(stderr);
    abort();
}

void gv_spin_lock_slow(gv_spin *l) {
    for (unsigned n = 0;; n++) {
        /* Acquire: pairs with the Release store in gv_spin_unlock. */
        if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0)
            return;
        if (n < 64)
            __builtin_ia32_pause();
        else
            sched_yield(); /* holder was descheduled: let it finish */
    }
}

int gv_futex_wait(atomic_uint *word, unsigned expected, int64_t timeout_ns) {
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tp = &ts;
    }
    long r = syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, expected,
                     tp, NULL, 0);
    return r == 0 ? 0 : errno;
}

void gv_futex_wake(atomic_uint *word, int n) {
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

double gv_ticks_per_ns = 1.0;

/* Once per process: ~1 ms against CLOCK_MONOTONIC is good to 0.1%. */
void gv_ticks_calibrate(void) {
    static int done;
    if (done)
        return;
#if defined(__x86_64__)
    uint64_t n0 = gv_now_ns(), t0 = gv_ticks(), n1;
    do
        n1 = gv_now_ns();
    while (n1 - n0 < 1000000);
    uint64_t t1 = gv_ticks();
    gv_ticks_per_ns = (double)(t1 - t0) / (double)(n1 - n0);
    if (gv_ticks_per_ns <= 0)
        gv_ticks_per_ns = 1.0;
#endif
    done = 1;
}

uint64_t gv_coarse_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gv_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int gv_slots_init(struct gv_slots *s, uint32_t nslots, size_t slot_size, int stacks) {
    memset(s, 0, sizeof *s);
    if (nslots == 0 || slot_size == 0 || (stacks && (slot_size < GV_MIN_STACK || slot_size % GV_PAGE)))
        return GV_E_CONFIG;
    size_t total = (size_t)nslots * slot_size;
    if (total / slot_size != nslots)
        return GV_E_CONFIG;
    /* Stack regions start one page below a 2 MiB boundary.  With slots a
     * multiple of 2 MiB, a slot's top then ends one page short of a boundary:
     * its hot top pages, its mark page (below) and the guard page of the slot
     * above share one page-table page, so a parked GVThread costs one
     * page-table page, not two (the guards of a 2 MiB-aligned layout each
     * needed a page-table page of their own). */
    size_t align = stacks ? HUGE_ALIGN : 0;
    if (total + align < total)
        return GV_E_CONFIG;
    char *m = mmap(NULL, total + align, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return GV_E_NOMEM;
    char *p = m;
    if (align) {
        p = (char *)((((uintptr_t)m + GV_PAGE + align - 1) & ~(uintptr_t)(align - 1)) - GV_PAGE);
        if (p > m)
            munmap(m, (size_t)(p - m));
        if (p + total < m + total + align)
            munmap(p + total, (size_t)(m + total + align - (p + total)));
        /* A transparent huge page would turn one touched stack page into
         * 2 MiB where THP is "always". */
        madvise(p, total, MADV_NOHUGEPAGE);
    }
    /* The free stack is as large as the slot count but only its used prefix
     * is ever touched, so it costs nothing up front either. */
    void *fs = mmap(NULL, (size_t)nslots * sizeof(uint32_t), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (fs == MAP_FAILED) {
        munmap(p, total);
        return GV_E_NOMEM;
    }
    s->base = p;
    s->slot_size = slot_size;
    s->nslots = nslots;
    s->free_stack = fs;
    s->stacks = stacks;
    s->guard = stacks && madvise(p, GV_PAGE, MADV_GUARD_INSTALL) == 0;
    if (stacks)
        gv_region_register(p, p + total);
    pthread_mutex_init(&s->lock, NULL);
    return GV_OK;
}

static gv_spin region_lock;
static struct gv_region { char *lo, *hi; } *region_tab;
static size_t region_n, region_cap;

void gv_region_register(char *lo, char *hi) {
    gv_spin_lock(&region_lock);
    if (region_n == region_cap) {
        size_t cap = region_cap ? region_cap * 2 : 16;
        struct gv_region *t = realloc(region_tab, cap * sizeof *t);
        GV_CHECK(t != NULL, "out of memory for the region table");
        region_tab = t;
        region_cap = cap;
    }
    region_tab[region_n++] = (struct gv_region){lo, hi};
    gv_spin_unlock(&region_lock);
}

void gv_region_unregister(char *lo) {
    gv_spin_lock(&region_lock);
    for (size_t i = 0; i < region_n; i++) {
        if (region_tab[i].lo == lo) {
            region_tab[i] = region_tab[--region_n];
            break;
        }
    }
    gv_spin_unlock(&region_lock);
}

int gv_region_contains(const void *p) {
    int found = 0;
    gv_spin_lock(&region_lock);
    for (size_t i = 0; i < region_n && !found; i++)
        found = (const char *)p >= region_tab[i].lo && (const char *)p < region_tab[i].hi;
    gv_spin_unlock(&region_lock);
    return found;
}

void gv_slots_destroy(struct gv_slots *s) {
    if (s->base) {
        if (s->stacks)
            gv_region_unregister(s->base);
        munmap(s->base, (size_t)s->nslots * s->slot_size);
        munmap(s->free_stack, (size_t)s->nslots * sizeof(uint32_t));
        pthread_mutex_destroy(&s->lock);
    }
    s->base = NULL;
}

static void slot_prepare_new(struct gv_slots *s, uint32_t idx) {
    /* Guards outlive MADV_DONTNEED, so a slot is guarded once in its life. */
    if (s->guard && idx >= s->guarded) {
        if (idx != 0) /* slot 0's guard went in with the probe */
            GV_CHECK(madvise(gv_slot_base(s, idx), GV_PAGE, MADV_GUARD_INSTALL) == 0,
                     "guard install");
        s->guarded = idx + 1;
    }
}

int64_t gv_slots_alloc(struct gv_slots *s) {
    int64_t idx;
    pthread_mutex_lock(&s->lock);
    if (s->nfree) {
        idx = s->free_stack[--s->nfree];
        if (s->clean_below > s->nfree)
            s->clean_below = s->nfree;
    } else if (s->high_water < s->nslots) {
        idx = s->high_water++;
        slot_prepare_new(s, (uint32_t)idx);
    } else {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    s->in_use++;
    pthread_mutex_unlock(&s->lock);
    char *b = gv_slot_base(s, (uint32_t)idx);
    if (s->stacks) {
        if (!s->guard)
            *(uint64_t *)(b + GV_PAGE) = GV_CANARY;
    } else {
        (void)b;
    }
    return idx;
}

void gv_slots_release(struct gv_slots *s, uint32_t idx) {
    pthread_mutex_lock(&s->lock);
    GV_CHECK(idx < s->high_water && s->in_use > 0, "release of a slot never handed out");
    s->free_stack[s->nfree++] = idx;
    s->in_use--;
    pthread_mutex_unlock(&s->lock);
}

/* Give back the pages of free slots, keeping the keep_hot most recent ones
 * warm.  Works in batches so spawners are not held off for long. */
void gv_slots_trim(struct gv_slots *s, uint32_t keep_hot) {
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->nfree <= keep_hot || s->clean_below >= s->nfree - keep_hot) {
            pthread_mutex_unlock(&s->lock);
            return;
        }
        uint32_t end = s->nfree - keep_hot;
        uint32_t stop = s->clean_below + 64 < end ? s->clean_below + 64 : end;
        for (uint32_t i = s->clean_below; i < stop; i++) {
            char *b = gv_slot_base(s, s->free_stack[i]);
            /* Guard markers survive MADV_DONTNEED; skip the guard page anyway. */
            madvise(b + GV_PAGE, s->slot_size - GV_PAGE, MADV_DONTNEED);
        }
        s->clean_below = stop;
        pthread_mutex_unlock(&s->lock);
    }
}

/* When nothing is in use, give back everything above the first keep_hot
 * items in one madvise and forget the rest were ever handed out.  Returns
 * how many items had been handed out (0 if it did nothing).  Much cheaper
 * than trimming slot by slot after a burst. */
uint32_t gv_slots_reset_if_empty(struct gv_slots *s, uint32_t keep_hot) {
    pthread_mutex_lock(&s->lock);
    if (s->in_use != 0 || s->high_water <= keep_hot) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    uintptr_t lo = (uintptr_t)(s->base + (size_t)keep_hot * s->slot_size);
    uintptr_t hi = (uintptr_t)(s->base + (size_t)s->high_water * s->slot_size);
    lo = (lo + GV_PAGE - 1) & ~(uintptr_t)(GV_PAGE - 1);
    /* Guard markers survive MADV_DONTNEED, and slots above high_water get
     * theirs installed again anyway when handed out. */
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
    uint32_t was = s->high_water;
    s->high_water = keep_hot;
    s->nfree = keep_hot;
    for (uint32_t i = 0; i < keep_hot; i++)
        s->free_stack[i] = keep_hot - 1 - i;
    s->clean_below = 0;
    pthread_mutex_unlock(&s->lock);
    return was;
}

/* ---- stacks of their own ----
 *
 * spawn(stack_size=) asks for a stack other than the runtime's slot size: it
 * gets a mapping of its own, laid out as a slot (guard page at the bottom,
 * room for a data-stack chunk at the top, which it takes from the pool
 * instead: no region to register for the arena hook), mapped at spawn so that a failure
 * is the spawner's MemoryError, and unmapped when the GVThread ends.  The
 * guard is a guard marker where the kernel has MADV_GUARD_INSTALL (one VMA),
 * else PROT_NONE (two VMAs: vm.max_map_count bounds how many such GVThreads
 * can live at once, and mmap failing says so). */
char *gv_own_stack_map(size_t len) {
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (madvise(m, GV_PAGE, MADV_GUARD_INSTALL) != 0 && mprotect(m, GV_PAGE, PROT_NONE) != 0) {
        munmap(m, len);
        return NULL;
    }
    if (len >= HUGE_ALIGN)
        madvise(m, len, MADV_NOHUGEPAGE);
    return m;
}

void gv_own_stack_unmap(char *base, size_t len) {
#if GV_ASAN
    /* Frames that never returned left poison; a later mapping may land here. */
    __asan_unpoison_memory_region(base + GV_PAGE, len - GV_PAGE);
#endif
    munmap(base, len);
}

#if GV_ASAN
/* A GVThread's last frames never return, so their redzones stay poisoned for
 * the next GVThread of the slot.  They lie between the exit's sp and the top:
 * only that is unpoisoned (the whole 8 MiB slot is 1 MiB of shadow to write,
 * and 100,000 exits of it took the debug build past the machine's memory). */
void gv_stack_unpoison_exit(char *base, size_t len, const char *sp) {
    char *lo = (char *)(((uintptr_t)sp & ~(uintptr_t)(GV_PAGE - 1)) - GV_PAGE);
    if (lo < base + GV_PAGE || lo >= base + len)
        lo = base + GV_PAGE;
    __asan_unpoison_memory_region(lo, (size_t)(base + len - lo));
}
#endif

/* ---- giving back deep pages ----
 *
 * A deep call (an import, a deep recursion) touches stack pages that stay
 * resident after it returns: with thread-sized stacks, a million GVThreads
 * that each went deep once would keep every page.  Each stack has a mark
 * page, the one holding the byte KEEP bytes below its initial sp.  Nothing writes
 * it at spawn (that would cost a page per GVThread): a fresh or given-back
 * page reads as zeros, and a call that went below it wrote its frames there.
 * So at a park (from the worker, before any waker can resume the GVThread)
 * and at the exit, a mark page with a non-zero word, with sp back above it,
 * means "went deep since the last look": the pages below sp's (less one, for
 * the red zone) go back with MADV_DONTNEED, which zeroes the mark page again.
 * A word in each cache line of the page is read, not one word for the
 * page: a frame's unwritten locals (a sort's 2 KiB merge buffer, say) often
 * cover a given word.  An untouched mark page is the kernel's shared zero
 * page, so the common read is of one cache-hot physical page and costs no
 * memory.  Only frames that leave all 64 sampled words zero hide the
 * excursion: its pages then stay until the slot is trimmed.  A GVThread parked deeper than the mark page keeps what
 * it uses. */
#define STACK_KEEP ((size_t)32 << 10)

/* Read without ASan's check: the mark page may lie inside dead frames' redzones. */
#if GV_ASAN
__attribute__((no_sanitize_address))
#endif
static int page_written(const uint64_t *p) {
    const volatile uint64_t *v = p;
    /* One word of each 64-byte line, the word's place in the line turning
     * with the line, so that frames of one repeating size cannot put only
     * their unwritten or NULL words under every sample.  Every park and exit
     * reads this page, mostly the zero page: all 512 words cost 5.5% of a
     * spawn+join, these 64 a fraction of it. */
    for (size_t line = 0; line < GV_PAGE / 64; line += 8) {
        uint64_t acc = 0;
        for (size_t k = 0; k < 8; k++)
            acc |= v[(line + k) * 8 + k];
        if (acc)
            return 1;
    }
    return 0;
}

int gv_stack_shrink(char *base, size_t len, const char *sp, const char *data_top) {
    char *top = base + len - GV_SLOT_TOP_PAD - GV_CHUNK_BYTES; /* the initial sp */
    if (len < STACK_KEEP + 4 * GV_PAGE + GV_SLOT_TOP_PAD + GV_CHUNK_BYTES)
        return 0;
    int gave = 0;
    /* CPython's frames grow up from the in-slot chunk (at top); above
     * data_top it holds nothing live, and the pad above the chunk nothing at
     * all.  A deep Python call fills the chunk's pages, and they would stay
     * with the parked GVThread: the page after data_top's, once written,
     * says so. */
    if (data_top && data_top >= top && data_top < top + GV_CHUNK_BYTES) {
        uintptr_t dlo = ((uintptr_t)data_top + GV_PAGE - 1) & ~(uintptr_t)(GV_PAGE - 1);
        if (dlo < (uintptr_t)(base + len) && page_written((const uint64_t *)dlo)) {
            madvise((void *)dlo, (uintptr_t)(base + len) - dlo, MADV_DONTNEED);
            gave = 1;
        }
    }
    uintptr_t mark = ((uintptr_t)(top - STACK_KEEP) & ~(uintptr_t)(GV_PAGE - 1));
    uintptr_t hi = ((uintptr_t)sp & ~(uintptr_t)(GV_PAGE - 1)) - GV_PAGE;
    if (hi < mark + GV_PAGE || !page_written((const uint64_t *)mark))
        return gave;
    /* The first usable page stays: it holds the canary where there are no
     * guard markers, and costs nothing where the stack never reached it. */
    uintptr_t lo = (uintptr_t)base + 2 * GV_PAGE;
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
    return 1;
}

/* ---- test hooks ---- */
gv_slots_t *gv_slots_test_new(uint32_t nslots, size_t slot_size) {
    gv_slots_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (gv_slots_init(s, nslots, slot_size, 1) != GV_OK) {
        free(s);
        return NULL;
    }
    return s;
}
void gv_slots_test_free(gv_slots_t *s) {
    if (s) {
        gv_slots_destroy(s);
        free(s);
    }
}
int64_t gv_slots_test_alloc(gv_slots_t *s) { return gv_slots_alloc(s); }
void gv_slots_test_release(gv_slots_t *s, uint32_t idx) { gv_slots_release(s, idx); }
uint32_t gv_slots_test_in_use(gv_slots_t *s) {
    pthread_mutex_lock(&s->lock);
    uint32_t n = s->in_use;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- borrowed stacks ----
 *
 * Why: the recursion bound (pybridge.c) covers only what CPython counts.
 * CPython's parser counts its depth against its own limit (6,000 rule
 * levels) and its compiler against sys.getrecursionlimit() x 3, neither of
 * which knows the stack size: a legal `eval("[" * 199 + "]" * 199)` needs
 * 256-512 KiB and a 20,000-deep unary minus 0.5-1 MiB before CPython reports
 * an error.  The default 8 MiB slot holds them, as a thread's stack does; a
 * GVThread spawned with a small stack, or already deep in its own, would
 * crash.  pycompile.c runs compile() and marshal on one of these for those
 * callers only (on_small_stack), as deep as a main thread's stack.
 *
 * A stack is an 8 MiB MAP_NORESERVE mapping with a guard page (a guard
 * marker where the kernel has MADV_GUARD_INSTALL, else PROT_NONE).  One is
 * needed per GVThread inside a borrowed call at that moment, usually at most
 * one per worker; up to BIG_POOL_MAX free ones are kept, the rest unmapped,
 * and at most BIG_LIVE_MAX exist.  Pages a deep call touched are given back
 * when the stack returns to the pool: a canary word 256 KiB below the top
 * tells whether the call went that deep. */
#define BIG_KEEP ((size_t)256 << 10)
/* Free stacks kept for reuse; more are unmapped.  The usual load is one per
 * worker compiling at that moment. */
#define BIG_POOL_MAX 16
/* Stacks mapped at once, in use or free.  Each GVThread parked inside a
 * borrowed call (an audit hook, marshal.load on a socket) holds one; past
 * this, callers run on their own slot as CPython would, rather than let
 * mappings exhaust vm.max_map_count for the whole process. */
#define BIG_LIVE_MAX 4096

typedef struct gv_bigstack {
    struct gv_bigstack *next;
    char *lo;               /* lowest usable byte, above the guard page */
} gv_bigstack;

static gv_spin big_lock;
static gv_bigstack *big_free;
static int big_nfree, big_live;

static uint64_t *big_mark(gv_bigstack *b) {
    return (uint64_t *)(b->lo + GV_BIGSTACK_SIZE - BIG_KEEP);
}

static gv_bigstack *big_take(void) {
    gv_spin_lock(&big_lock);
    gv_bigstack *b = big_free;
    if (b) {
        big_free = b->next;
        big_nfree--;
    } else if (big_live < BIG_LIVE_MAX) {
        big_live++; /* reserved; given back below if the mapping fails */
    } else {
        gv_spin_unlock(&big_lock);
        return NULL;
    }
    gv_spin_unlock(&big_lock);
    if (b)
        return b;
    char *m = MAP_FAILED;
    b = malloc(sizeof *b);
    if (b)
        m = mmap(NULL, GV_BIGSTACK_SIZE + GV_PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    /* The guard: page-table markers where the kernel has them (one VMA), else
     * mprotect (two). */
    if (m != MAP_FAILED && madvise(m, GV_PAGE, MADV_GUARD_INSTALL) != 0 &&
        mprotect(m, GV_PAGE, PROT_NONE) != 0) {
        munmap(m, GV_BIGSTACK_SIZE + GV_PAGE);
        m = MAP_FAILED;
    }
    if (m == MAP_FAILED) {
        free(b);
        gv_spin_lock(&big_lock);
        big_live--;
        gv_spin_unlock(&big_lock);
        return NULL;
    }
    b->lo = m + GV_PAGE;
    *big_mark(b) = GV_CANARY;
    return b;
}

static void big_give(gv_bigstack *b) {
    /* Still ours here: once on the free list another caller may be running on it. */
    if (*big_mark(b) != GV_CANARY) { /* the call went deep: let those pages go */
        madvise(b->lo, GV_BIGSTACK_SIZE - BIG_KEEP + sizeof(uint64_t), MADV_DONTNEED);
        *big_mark(b) = GV_CANARY;
    }
    gv_spin_lock(&big_lock);
    int keep = big_nfree < BIG_POOL_MAX;
    if (keep) {
        b->next = big_free;
        big_free = b;
        big_nfree++;
    } else {
        big_live--;
    }
    gv_spin_unlock(&big_lock);
    if (!keep) {
        munmap(b->lo - GV_PAGE, GV_BIGSTACK_SIZE + GV_PAGE);
        free(b);
    }
}

void gv_bigstack_counts(int *mapped, int *pooled) {
    gv_spin_lock(&big_lock);
    *mapped = big_live;
    *pooled = big_nfree;
    gv_spin_unlock(&big_lock);
}

struct big_call {
    gv_ctx back;            /* the caller, on its slot */
    gv_ctx here;            /* the call, on the borrowed stack */
    void (*fn)(void *);
    void *arg;
    const void *back_lo;    /* the slot's stack bounds, for ASan */
    size_t back_size;
};

static void big_entry(void *p) {
    struct big_call *c = p;
#if GV_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    c->fn(c->arg);
#if GV_ASAN
    /* NULL: this context ends here, ASan may drop its fake frames. */
    __sanitizer_start_switch_fiber(NULL, c->back_lo, c->back_size);
#endif
    gv_ctx_switch(&c->here, &c->back);
    GV_CHECK(0, "a finished borrowed-stack call was resumed");
}

int gv_call_on_bigstack(gv_gvt *g, void (*fn)(void *), void *arg) {
    gv_bigstack *b = big_take();
    if (!b)
        return 0;
    struct big_call c = {.fn = fn, .arg = arg, .back_lo = g->stack_lo,
                         .back_size = g->stack_size};
    gv_ctx_init(&c.here, b->lo, GV_BIGSTACK_SIZE, big_entry, &c);
    gv_ctx_inherit_fp(&c.here); /* same GVThread: its rounding mode holds there too */
    /* While fn runs, g's stack is the borrowed one: if g parks in there, the
     * scheduler's ASan annotations at its next switch-in must name it. */
    g->stack_lo = b->lo;
    g->stack_size = GV_BIGSTACK_SIZE;
    GV_SWITCH(&c.back, &c.here, b->lo, GV_BIGSTACK_SIZE);
    g->stack_lo = (void *)c.back_lo;
    g->stack_size = c.back_size;
    big_give(b);
    return 1;
}
