/* wait.c -- wait lists, grants and interrupts: the mechanism under every
 * blocking primitive (join, WaitQueue, Sema, channels, select, sleep).
 *
 * A blocked caller -- a parked GVThread or an OS thread on a futex -- is a
 * gv_waiter on its own stack, linked into the wait list of the object it
 * blocks on, under that object's lock.  Three things can end the wait:
 *  - a grant: the object's owner of the event (unlock, notify, send...)
 *    removes the waiter under the object's lock, fills in what it is given,
 *    sets `granted`, and wakes it;
 *  - the park timer (timer.c), for a GVThread with a timeout;
 *  - an interrupt (cancellation, an expired timeout() scope), GVThreads only.
 * Whatever ends it, the woken side takes the object's lock again and removes
 * itself if nobody granted it, so every outcome is decided under that lock:
 * a grant that races with a timeout or an interrupt wins (the caller keeps
 * what it was given), and the interrupt is delivered at the next blocking
 * point instead.
 *
 * Why a GVThread is only woken through gv_wake_if(g, park_seq): the waker
 * and the timer may both try; exactly one CAS on wake_seq succeeds.
 *
 * Interrupts are not serialized by any object lock, so they rely on the park
 * protocol instead.  gv_interrupt sets the bit, then wakes g if its state is
 * BLOCKED; the worker parking g stores BLOCKED, then (after releasing the
 * object lock) looks at the bits and wakes g itself if one is set.  Both
 * sides are seq_cst, so at least one of them sees the other (Dekker).
 */
#include "gv_internal.h"

void gv_wlist_push(gv_wlist *l, gv_waiter *w) {
    w->next = NULL;
    w->prev = l->tail;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    l->n++;
    w->queued = 1;
}

void gv_wlist_push_front(gv_wlist *l, gv_waiter *w) {
    w->prev = NULL;
    w->next = l->head;
    if (l->head)
        l->head->prev = w;
    else
        l->tail = w;
    l->head = w;
    l->n++;
    w->queued = 1;
}

void gv_wlist_remove(gv_wlist *l, gv_waiter *w) {
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = 0;
    l->n--;
}

/* Under the lock of l: the first waiter that can still be granted (a select
 * waiter whose select already completed elsewhere is dropped), removed and
 * claimed; NULL if none.  The caller fills in data, then gv_waiter_wake(). */
gv_waiter *gv_wlist_claim(gv_wlist *l) {
    gv_waiter *w;
    while ((w = l->head)) {
        gv_wlist_remove(l, w);
        if (w->sel) {
            int expect = 0;
            /* Acq_rel: the winning case is published to the selecting side,
             * which reads it after it reacquires this lock. */
            if (!atomic_compare_exchange_strong(&w->sel->done, &expect, 1))
                continue;
            w->sel->winner = w->case_index;
        }
        w->granted = 1;
        return w;
    }
    return NULL;
}

/* Wake a claimed waiter.  Still under the lock of the list it was in: the
 * waiter cannot return (and free itself) until it has taken that lock. */
void gv_waiter_wake(gv_waiter *w) {
    if (w->g) {
        gv_wake_if(w->g, w->park_seq);
    } else {
        _Atomic uint32_t *word = w->wake_word ? w->wake_word : &w->futex;
        atomic_store(word, 1);
        gv_futex_wake(word, 1);
    }
}

void gv_interrupt(gv_gvt *g, uint32_t bits) {
    atomic_fetch_or(&g->intr, bits);
    if (atomic_load(&g->state) == GV_BLOCKED)
        gv_wake_if(g, g->park_seq);
}
