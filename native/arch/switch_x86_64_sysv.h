/* x86_64, System V ABI (Linux).
 *
 * Register convention: rbx, rbp, r12-r15 and rsp are callee-saved; so are the
 * MXCSR control bits and the x87 control word.  Everything else is clobbered
 * by any call, so a voluntary switch (which is a call) need not save it.
 * Forced switches from a signal are issue 4's and save the full state.
 *
 * Saved frame on the suspended stack, from gv_ctx.sp upward:
 *   [sp+0]  MXCSR (4 bytes) | x87 CW (2 bytes) | pad
 *   [sp+8]  r15, r14, r13, r12, rbx, rbp
 *   [sp+56] return address
 */
#ifndef GV_SWITCH_X86_64_SYSV_H
#define GV_SWITCH_X86_64_SYSV_H

#include <stddef.h>
#include <stdint.h>

#define GV_CTX_ASM 1
#define GV_CTX_UCONTEXT 0
#define GV_CTX_NAME "x86_64-sysv-asm"

typedef struct gv_ctx { void *sp; } gv_ctx;

void gv_ctx_switch(gv_ctx *from, gv_ctx *to);
void gv_ctx_entry(void);   /* first return target of a new context */

static inline void gv_ctx_init(gv_ctx *c, void *stack_lo, size_t size,
                               void (*fn)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
    /* After `ret` pops the entry address, rsp == top (16-aligned), so the
     * `call` in gv_ctx_entry gives fn the alignment the ABI promises. */
    uint64_t *sp = (uint64_t *)(top - 8);
    *sp = (uint64_t)(uintptr_t)gv_ctx_entry;
    *--sp = 0;                              /* rbp */
    *--sp = (uint64_t)(uintptr_t)fn;        /* rbx */
    *--sp = (uint64_t)(uintptr_t)arg;       /* r12 */
    *--sp = 0;                              /* r13 */
    *--sp = 0;                              /* r14 */
    *--sp = 0;                              /* r15 */
    *--sp = 0x1F80u | ((uint64_t)0x037Fu << 32); /* default MXCSR, x87 CW */
    c->sp = sp;
}

/* The saved stack pointer of a switched-out context. */
static inline void *gv_ctx_sp(const gv_ctx *c) { return c->sp; }

static inline void gv_ctx_inherit_fp(gv_ctx *c) {
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    *(uint64_t *)c->sp = mxcsr | ((uint64_t)cw << 32); /* the word gv_ctx_switch loads */
}

#endif
