/* Portable fallback: POSIX ucontext.  Slower (swapcontext saves and restores
 * the signal mask with a system call), but works wherever glibc does; CI
 * builds and tests it so the asm ports always have a reference to diff. */
#ifndef GV_SWITCH_UCONTEXT_H
#define GV_SWITCH_UCONTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#define GV_CTX_ASM 0
#define GV_CTX_UCONTEXT 1
#define GV_CTX_NAME "ucontext"

typedef struct gv_ctx { ucontext_t uc; } gv_ctx;

void gv_ctx_init(gv_ctx *c, void *stack_lo, size_t size,
                 void (*fn)(void *), void *arg);
void gv_ctx_switch(gv_ctx *from, gv_ctx *to);
/* getcontext in gv_ctx_init already took the caller's floating-point state. */
static inline void gv_ctx_inherit_fp(gv_ctx *c) { (void)c; }
/* The saved stack pointer of a switched-out context; NULL: not known here
 * (mcontext layout is per arch), so parked stacks are not shrunk. */
static inline void *gv_ctx_sp(const gv_ctx *c) { (void)c; return NULL; }

#endif
