/* A small pool of worker threads for CPU-heavy work that must not run on a
 * loop thread (password hashing: yescrypt and Argon2 cost tens of
 * milliseconds each by design).
 *
 * pn_workpool_submit(pool, loop, work, done, ctx): work(ctx) runs on a worker
 * thread; afterwards done(ctx) runs on loop's thread (through pn_loop_post).
 * ctx must stay valid until done runs. The queue is bounded: submit fails
 * (returns -1, errno EAGAIN) when max_queue jobs are waiting, so a flood of
 * logins cannot queue unbounded work; callers answer "try again later".
 */
#ifndef POSTERN_WORKPOOL_H
#define POSTERN_WORKPOOL_H

#include <stddef.h>

struct pn_loop;
struct pn_workpool;

/* threads >= 1; max_queue >= 1. Returns NULL with *error_r on failure. */
struct pn_workpool *pn_workpool_new(unsigned int threads, unsigned int max_queue,
				    const char **error_r);
/* Stops the threads after the jobs already queued have run; their done
 * callbacks are still posted to their loops. Sets *pool to NULL. */
void pn_workpool_free(struct pn_workpool **pool);

/* Returns 0, or -1 with errno EAGAIN (queue full) or ENOMEM. */
int pn_workpool_submit(struct pn_workpool *pool, struct pn_loop *loop,
		       void (*work)(void *ctx), void (*done)(void *ctx), void *ctx);
/* Jobs waiting or running now. */
unsigned int pn_workpool_pending(struct pn_workpool *pool);

#endif
