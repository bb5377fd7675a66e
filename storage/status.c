/* Names of the storage outcomes (postern/store-status.h) and the deadline
 * timer shared by the asynchronous storage clients (store-timer.h). */
#include "postern/store-status.h"
#include "postern/loop.h"
#include "store-timer.h"

const char *store_status_name(enum store_status status)
{
	switch (status) {
	case STORE_OK:
		return "ok";
	case STORE_TEMPORARY:
		return "temporary";
	case STORE_PERMANENT:
		return "permanent";
	}
	return "unknown";
}

int store_timer_init(struct store_timer *t, struct pn_loop *loop,
		     const struct pn_io_handlers *h, void *ctx)
{
	t->loop = loop;
	t->at = 0;
	t->io = pn_io_add(loop, -1, 0, h, ctx);
	return t->io == PN_IO_NONE ? -1 : 0;
}

void store_timer_want(struct store_timer *t, uint64_t at)
{
	uint64_t now;

	if (t->io == PN_IO_NONE)
		return;
	if (at == 0)
		at = 1;
	if (t->at != 0 && t->at <= at)
		return;
	now = pn_loop_now_ms(t->loop);
	if (pn_io_timer_set(t->loop, t->io, at > now ? at - now : 0) == 0)
		t->at = at;
}

void store_timer_fired(struct store_timer *t)
{
	t->at = 0;
}

void store_timer_close(struct store_timer *t)
{
	if (t->io != PN_IO_NONE) {
		pn_io_close(t->loop, t->io);
		pn_io_set_ctx(t->loop, t->io, NULL);
		t->io = PN_IO_NONE;
	}
	t->at = 0;
}
