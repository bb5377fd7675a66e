/* A deadline timer on one loop io, shared by the asynchronous storage
 * clients (pgpool.c, redis.c): owners keep several deadlines (connect,
 * statement, queue, retry, deferred callbacks) and ask for the earliest
 * with store_timer_want(); the on_timer handler calls store_timer_fired()
 * first, handles what is due, then asks again for the next one.
 * Deadlines are pn_loop_now_ms() values; 0 means "none".
 */
#ifndef POSTERN_STORE_TIMER_H
#define POSTERN_STORE_TIMER_H

#include <stdint.h>

#include "postern/loop.h"

struct store_timer {
	struct pn_loop *loop;
	pn_io_id io;
	uint64_t at;	/* armed deadline, 0 when not armed */
};

/* Adds the timer io with handlers h (on_timer, on_close that accepts a
 * NULL ctx). Returns 0 or -1 (no loop slot). */
int store_timer_init(struct store_timer *t, struct pn_loop *loop,
		     const struct pn_io_handlers *h, void *ctx);
/* Makes the timer fire no later than at (at <= now: at once, from the
 * loop). Keeps an earlier deadline already armed. */
void store_timer_want(struct store_timer *t, uint64_t at);
/* Call first in on_timer: nothing is armed any more. */
void store_timer_fired(struct store_timer *t);
/* Closes the io; on_close then gets a NULL ctx. */
void store_timer_close(struct store_timer *t);

#endif
