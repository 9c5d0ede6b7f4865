/* ctx.c -- the context switch bodies (the declarations are in arch/).
 * The asm is a top-level asm block so setuptools compiles it as C. */
#include "gv_internal.h"

#include <string.h>

#if GV_CTX_ASM && defined(__x86_64__)
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl gv_ctx_switch\n"
    ".hidden gv_ctx_switch\n"
    ".type gv_ctx_switch,@function\n"
    "gv_ctx_switch:\n"
    "    .cfi_startproc\n"
    "    endbr64\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq (%rsi), %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    "    .cfi_endproc\n"
    ".size gv_ctx_switch, .-gv_ctx_switch\n"
    "\n"
    ".p2align 4\n"
    ".globl gv_ctx_entry\n"
    ".hidden gv_ctx_entry\n"
    ".type gv_ctx_entry,@function\n"
    "gv_ctx_entry:\n"
    "    .cfi_startproc\n"
    /* The bottom frame of every GVThread stack: tell unwinders (gdb,
     * pthread_exit's forced unwind) that the chain ends here. */
    "    .cfi_undefined rip\n"
    "    endbr64\n"
    "    movq %r12, %rdi\n"
    "    callq *%rbx\n"
    "    ud2\n"
    "    .cfi_endproc\n"
    ".size gv_ctx_entry, .-gv_ctx_entry\n");
#endif

#if GV_CTX_UCONTEXT
static void gv_uc_entry(unsigned int fn_lo, unsigned int fn_hi,
                        unsigned int arg_lo, unsigned int arg_hi) {
    /* makecontext passes ints only: pointers travel in two halves. */
    void (*fn)(void *) = (void (*)(void *))(uintptr_t)(
        ((uint64_t)fn_hi << 32) | fn_lo);
    void *arg = (void *)(uintptr_t)(((uint64_t)arg_hi << 32) | arg_lo);
    fn(arg);
    gv_fatal(__FILE__, __LINE__, "fn returned", "a GVThread entry returned");
}

void gv_ctx_init(gv_ctx *c, void *stack_lo, size_t size,
                 void (*fn)(void *), void *arg) {
    memset(c, 0, sizeof *c);
    GV_CHECK(getcontext(&c->uc) == 0, "getcontext");
    c->uc.uc_stack.ss_sp = stack_lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    uint64_t f = (uint64_t)(uintptr_t)fn, a = (uint64_t)(uintptr_t)arg;
    makecontext(&c->uc, (void (*)(void))gv_uc_entry, 4,
                (unsigned int)f, (unsigned int)(f >> 32),
                (unsigned int)a, (unsigned int)(a >> 32));
}

void gv_ctx_switch(gv_ctx *from, gv_ctx *to) {
    GV_CHECK(swapcontext(&from->uc, &to->uc) == 0, "swapcontext");
}
#endif
