/* arch/select.h -- picks the context-switch implementation, one line a target.
 *
 * Every port provides:
 *   gv_ctx                      saved context of a suspended stack
 *   void gv_ctx_init(gv_ctx *c, void *stack_lo, size_t size,
 *                    void (*fn)(void *), void *arg)
 *   void gv_ctx_switch(gv_ctx *from, gv_ctx *to)
 *   void gv_ctx_inherit_fp(gv_ctx *c)   after gv_ctx_init: c starts with the
 *                               caller's floating-point control state, not the
 *                               ABI default (a borrowed stack runs the same
 *                               GVThread, whose rounding mode must hold there)
 *   void *gv_ctx_sp(const gv_ctx *c)   the saved stack pointer of a switched-out
 *                               context, or NULL if the port cannot tell
 * A voluntary switch is a function call, so only what the ABI says survives a
 * call is saved.  Build with GVTHREAD_CTX=ucontext to force the fallback.
 */
#ifndef GV_ARCH_SELECT_H
#define GV_ARCH_SELECT_H

#if defined(GV_FORCE_UCONTEXT)
#  include "switch_ucontext.h"
#elif defined(__x86_64__) && defined(__linux__)
#  include "switch_x86_64_sysv.h"
#elif defined(__linux__)
#  include "switch_ucontext.h"
#else
#  error "gvthread: no context switch for this target; port arch/ or build with GVTHREAD_CTX=ucontext"
#endif

#ifndef GV_ASAN
#  if defined(__SANITIZE_ADDRESS__)
#    define GV_ASAN 1
#  else
#    define GV_ASAN 0
#  endif
#endif

#endif
