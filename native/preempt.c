/* preempt.c -- forced preemption of native GVThreads by SIGURG.
 *
 * Go's asyncPreempt, for C.  A native GVThread that reaches no safepoint for
 * its time slice plus the grace period is sent SIGURG on its thread.  The
 * handler does not switch (nothing is rescheduled inside a signal handler):
 * if the interrupted instruction lies in code registered as preemptible
 * (async-safe: no locks held, no libc state half-updated, no GIL -- natives
 * never hold it), it rewrites the saved context so that, on return from the
 * handler, the thread enters gv_async_preempt, a stub that saves every
 * general register, the flags and the full xsave state on the GVThread's own
 * stack, and then switches like a voluntary yield.  Resumed later, on any
 * thread, the stub restores it all and jumps back to the interrupted
 * instruction: bit-exact.  fxsave alone would lose the upper halves of the
 * YMM/ZMM registers.
 *
 * The System V red zone: the interrupted C code may keep data in the 128
 * bytes below its rsp.  The handler leaves them alone: the return address
 * goes at rsp-136 and the stub's frame below that; the stub ends with
 * `mov (%rsp), %rsp` (back to the interrupted rsp) and `jmp *-136(%rsp)`,
 * so no register is needed to get back.  The signal runs on an alternate
 * stack, so nothing else writes below rsp meanwhile.
 *
 * Code that is not registered is never forced (the monitor falls back to
 * handing the worker's queue to a spare thread).
 */
#include "gv_internal.h"

#include <cpuid.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>

#if defined(__x86_64__) && GV_CTX_ASM
#define GV_FORCED 1
#else
#define GV_FORCED 0
#endif

#define MAX_RANGES 64
static struct { _Atomic uintptr_t lo, hi; } ranges[MAX_RANGES];
static _Atomic int nranges;
static int installed;                 /* handler in place; forcing possible */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

int gv_forced_preempt_init(void);

int gv_register_preemptible(uintptr_t lo, uintptr_t hi) {
    if (hi <= lo)
        return -1;
    gv_forced_preempt_init();
    int n = atomic_load(&nranges);
    for (int i = 0; i < n; i++)
        if (atomic_load(&ranges[i].lo) == lo && atomic_load(&ranges[i].hi) == hi)
            return 0;
    pthread_mutex_lock(&install_lock);
    n = atomic_load(&nranges);
    if (n >= MAX_RANGES) {
        pthread_mutex_unlock(&install_lock);
        return -1;
    }
    atomic_store(&ranges[n].lo, lo);
    atomic_store(&ranges[n].hi, hi);
    atomic_store(&nranges, n + 1); /* Release: the handler reads count, then ranges */
    pthread_mutex_unlock(&install_lock);
    return 0;
}

#if GV_FORCED
static uint32_t xsave_size;           /* CPUID 0xD: bytes for the enabled state */

static int in_preemptible(uintptr_t pc) {
    int n = atomic_load(&nranges);
    for (int i = 0; i < n; i++)
        if (pc >= atomic_load(&ranges[i].lo) && pc < atomic_load(&ranges[i].hi))
            return 1;
    return 0;
}

void gv_async_preempt(void);
void gv_async_preempt_switch(void);

/* Entered by return from the signal handler, on the GVThread's stack, with
 * every register as the interrupted code left it and [rsp] = its rsp. */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl gv_async_preempt\n"
    ".hidden gv_async_preempt\n"
    ".type gv_async_preempt,@function\n"
    "gv_async_preempt:\n"
    "    pushfq\n"
    "    pushq %rax\n pushq %rbx\n pushq %rcx\n pushq %rdx\n pushq %rsi\n pushq %rdi\n"
    "    pushq %rbp\n pushq %r8\n pushq %r9\n pushq %r10\n pushq %r11\n pushq %r12\n"
    "    pushq %r13\n pushq %r14\n pushq %r15\n"
    "    movq %rsp, %rbx\n"
    "    movl gv_xsave_reserve(%rip), %eax\n"
    "    subq %rax, %rsp\n"
    "    andq $-64, %rsp\n"
    /* The xsave header (bytes 512..575) must be zero for xrstor. */
    "    xorl %eax, %eax\n"
    "    movq %rax, 512(%rsp)\n movq %rax, 520(%rsp)\n movq %rax, 528(%rsp)\n"
    "    movq %rax, 536(%rsp)\n movq %rax, 544(%rsp)\n movq %rax, 552(%rsp)\n"
    "    movq %rax, 560(%rsp)\n movq %rax, 568(%rsp)\n"
    "    movl $-1, %eax\n movl $-1, %edx\n"
    "    xsave (%rsp)\n"
    "    cld\n"
    "    call gv_async_preempt_switch\n"
    "    movl $-1, %eax\n movl $-1, %edx\n"
    "    xrstor (%rsp)\n"
    "    movq %rbx, %rsp\n"
    "    popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %r11\n popq %r10\n"
    "    popq %r9\n popq %r8\n popq %rbp\n popq %rdi\n popq %rsi\n popq %rdx\n"
    "    popq %rcx\n popq %rbx\n popq %rax\n"
    "    popfq\n"
    "    movq (%rsp), %rsp\n"
    "    jmp *-136(%rsp)\n"
    ".size gv_async_preempt, .-gv_async_preempt\n");

__attribute__((visibility("hidden"))) uint32_t gv_xsave_reserve;

__attribute__((no_sanitize_address, no_sanitize_undefined)) static void urg_handler(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    (void)si;
    gv_thr *t = gv_tls_thr;
    gv_gvt *g = t ? t->cur : NULL;
    if (!g || !g->native || !atomic_load_explicit(&g->force_req, memory_order_relaxed))
        return;
    ucontext_t *uc = ucv;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    if (!in_preemptible(pc))
        return; /* not at an async-safe point: the monitor tries again */
    atomic_store_explicit(&g->force_req, 0, memory_order_relaxed);
    *(uintptr_t *)(sp - 136) = pc;
    uintptr_t nsp = (sp - 144) & ~(uintptr_t)15;
    *(uintptr_t *)nsp = sp;
    uc->uc_mcontext.gregs[REG_RSP] = (greg_t)nsp;
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)gv_async_preempt;
}
#endif

/* Once per process: the handler, and the xsave size of this CPU. */
int gv_forced_preempt_init(void) {
#if GV_FORCED
    pthread_mutex_lock(&install_lock);
    if (!installed) {
        unsigned a, b, c, d;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_OSXSAVE) &&
            __get_cpuid_count(0xD, 0, &a, &b, &c, &d) && b > 0 && b <= 16384) {
            xsave_size = b;
            gv_xsave_reserve = (b + 63 + 63) & ~63u;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = urg_handler;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
            sigemptyset(&sa.sa_mask);
            installed = sigaction(SIGURG, &sa, NULL) == 0;
        }
    }
    pthread_mutex_unlock(&install_lock);
    return installed;
#else
    return 0;
#endif
}

/* Forcing is possible: the handler is in and some code is registered. */
int gv_forced_preempt_available(void) { return installed && atomic_load(&nranges) > 0; }

/* Per worker thread: the alternate signal stack the handler runs on. */
void *gv_thread_sigaltstack(void) {
#if GV_FORCED
    if (!installed)
        return NULL;
    stack_t ss;
    ss.ss_size = 64 * 1024;
    ss.ss_sp = malloc(ss.ss_size);
    ss.ss_flags = 0;
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) {
        free(ss.ss_sp);
        return NULL;
    }
    sigset_t urg;
    sigemptyset(&urg);
    sigaddset(&urg, SIGURG);
    pthread_sigmask(SIG_UNBLOCK, &urg, NULL);
    return ss.ss_sp;
#else
    return NULL;
#endif
}

void gv_thread_sigaltstack_free(void *mem) {
    if (!mem)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(mem);
}

/* The monitor: ask the thread running g to be forced off it. */
void gv_force_preempt(gv_thr *t, gv_gvt *g) {
#if GV_FORCED
    if (!installed || !atomic_load(&nranges))
        return;
    atomic_store_explicit(&g->force_req, 1, memory_order_relaxed);
    pthread_kill(t->thread, SIGURG);
#else
    (void)t;
    (void)g;
#endif
}
