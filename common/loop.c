/* The io_uring event loop (see postern/loop.h for the contract).
 *
 * A loop holds one ring, a table of io slots handed out from a FIFO free
 * list, one provided-buffer ring shared by every multishot receive, and an
 * eventfd polled by the ring so that other threads can post work or stop the
 * loop. Each submission packs op | generation | slot index in user_data; a
 * completion goes to one handle_<op>(). Per slot, `pending` says which
 * operations the kernel still owns, `want` which ones the owner asked for;
 * the two are reconciled by the *_sync() functions, which (re)arm what is
 * wanted and not pending. Whatever cannot be done inside a callback (calling
 * on_close, delivering receive data held across a stop, re-arming a receive
 * that ran out of buffers) goes on a work list run after each batch, so that
 * an io closed from its own callback stays valid until the dispatch returns.
 */
#include "postern/loop.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum op {
	OP_IGNORE = 0,		/* cancels, timer updates: result not needed */
	OP_ACCEPT,
	OP_ACCEPT_RETRY,	/* a pause before re-arming accept (EMFILE & co) */
	OP_RECV,
	OP_SEND,
	OP_CONNECT,
	OP_POLL,
	OP_TIMER,
	OP_WAKE,		/* multishot poll on the loop's eventfd, slot 0 */
	OP_COUNT
};
#define OPBIT(op) ((uint16_t)(1u << (op)))

enum slot_state { SLOT_FREE = 0, SLOT_OPEN, SLOT_CLOSING };

#define WANT_ACCEPT 0x1
#define WANT_RECV 0x2
#define WANT_POLL 0x4

#define GEN_MASK 0xffffffu
#define ID_INDEX_BITS 20
#define ID_INDEX_MASK ((1u << ID_INDEX_BITS) - 1)
#define ID_GEN_MASK 0xfffu
#define BGID 0
#define MAX_SEND_CHUNK (1u << 30)
#define ACCEPT_PAUSE_MS 100
#define CQE_BATCH 128

struct io_slot {
	uint32_t gen;		/* 24 bits, bumped when the slot is freed */
	uint8_t state;		/* enum slot_state */
	uint8_t want;		/* WANT_*: what the owner asked for */
	bool in_work;		/* on the loop's work list */
	bool cancel_retry;	/* closing, and some cancels found no SQE */
	uint16_t pending;	/* OPBIT: operations the kernel owns */
	uint16_t cancelling;	/* OPBIT: cancel requested for these */
	uint16_t rearm;		/* OPBIT: arm from the work list (no SQE earlier) */
	bool flush;		/* held receive data to deliver from the work list */
	bool has_held_res;	/* end of stream or error kept while stopped */
	bool handoff;		/* pn_io_recv_handoff(): the multishot is ending */
	unsigned int flags;	/* PN_IO_* */
	int fd;
	uint32_t next_free;
	uint32_t next_work;
	const struct pn_io_handlers *h;
	void *ctx;
	/* send in progress (send_data != NULL) */
	const uint8_t *send_data;
	size_t send_len, send_done;
	/* poll */
	unsigned int poll_events;
	/* receive buffers held while stopped: a chain through loop->held_next */
	int32_t held_head, held_tail;
	int held_res;
	/* timer: the owner's deadline and the one the kernel timeout aims at */
	uint64_t deadline_ms;	/* 0 = none */
	uint64_t kdeadline_ms;
	struct __kernel_timespec ts;
	/* connect */
	socklen_t addrlen;
	struct sockaddr_storage addr;
};

struct post {
	struct post *next;
	void (*fn)(void *ctx);
	void *ctx;
};

struct pn_loop {
	struct io_uring ring;
	bool ring_ok;
	bool defer;			/* DEFER_TASKRUN: completions only when asked */
	bool disabled;			/* created disabled; the first run enables it */
	struct io_slot *slots;
	uint32_t nslots;		/* max_ios + 1: slot 0 is never handed out */
	uint32_t used;			/* high-water mark of slots handed out */
	uint32_t free_head, free_tail;	/* FIFO of freed slots; 0 = empty */
	uint32_t work_head, work_tail;	/* 0 = empty */
	unsigned int live;		/* slots not free */
	unsigned int inflight;		/* SQEs whose final CQE has not come */
	int in_dispatch;
	uint64_t now_ms;
	struct __kernel_timespec accept_pause;

	/* provided buffers */
	struct io_uring_buf_ring *br;
	size_t br_size;
	bool br_registered;
	uint8_t *bufs;
	size_t bufs_size;
	unsigned int buf_size, buf_count;
	int32_t *held_next;
	uint32_t *held_len;

	/* cross-thread wake-up */
	int efd;
	bool wake_armed;
	atomic_bool stop;
	pthread_mutex_t post_lock;
	struct post *post_head, *post_tail;

	struct pn_loop_stats stats;
};

static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint32_t slot_index(const struct pn_loop *loop, const struct io_slot *s)
{
	return (uint32_t)(s - loop->slots);
}

static inline uint64_t make_ud(const struct pn_loop *loop, enum op op,
			       const struct io_slot *s)
{
	return (uint64_t)op << 56 | (uint64_t)(s->gen & GEN_MASK) << 32 |
	       slot_index(loop, s);
}

static struct io_slot *lookup_any(struct pn_loop *loop, pn_io_id id)
{
	uint32_t idx = id & ID_INDEX_MASK;
	struct io_slot *s;

	if (idx == 0 || idx >= loop->used)
		return NULL;
	s = &loop->slots[idx];
	if (s->state == SLOT_FREE || (s->gen & ID_GEN_MASK) != id >> ID_INDEX_BITS)
		return NULL;
	return s;
}

/* The slot of an open io, or NULL with errno EBADF. */
static struct io_slot *lookup_open(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_any(loop, id);

	if (s == NULL || s->state != SLOT_OPEN) {
		errno = EBADF;
		return NULL;
	}
	return s;
}

static struct io_slot *lookup_open_fd(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open(loop, id);

	if (s != NULL && s->fd < 0) {
		errno = EBADF;
		return NULL;
	}
	return s;
}

static void work_add(struct pn_loop *loop, struct io_slot *s)
{
	uint32_t idx = slot_index(loop, s);

	if (s->in_work)
		return;
	s->in_work = true;
	s->next_work = 0;
	if (loop->work_tail != 0)
		loop->slots[loop->work_tail].next_work = idx;
	else
		loop->work_head = idx;
	loop->work_tail = idx;
}

/* An SQE, submitting what is queued if the SQ is full; NULL if none. Every
 * SQE we take yields exactly one final CQE, counted in inflight. */
static struct io_uring_sqe *get_sqe(struct pn_loop *loop)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

	if (sqe == NULL) {
		io_uring_submit(&loop->ring);
		sqe = io_uring_get_sqe(&loop->ring);
		if (sqe == NULL)
			return NULL;
	}
	loop->inflight++;
	return sqe;
}

/* ---- provided buffers ---- */

static inline uint8_t *buf_addr(const struct pn_loop *loop, unsigned int bid)
{
	return loop->bufs + (size_t)bid * loop->buf_size;
}

static void buf_return(struct pn_loop *loop, unsigned int bid)
{
	io_uring_buf_ring_add(loop->br, buf_addr(loop, bid), loop->buf_size,
			      (unsigned short)bid,
			      io_uring_buf_ring_mask(loop->buf_count), 0);
	io_uring_buf_ring_advance(loop->br, 1);
}

static void held_push(struct pn_loop *loop, struct io_slot *s, unsigned int bid,
		      uint32_t len)
{
	loop->held_next[bid] = -1;
	loop->held_len[bid] = len;
	if (s->held_tail >= 0)
		loop->held_next[s->held_tail] = (int32_t)bid;
	else
		s->held_head = (int32_t)bid;
	s->held_tail = (int32_t)bid;
}

static void held_release(struct pn_loop *loop, struct io_slot *s)
{
	while (s->held_head >= 0) {
		int32_t bid = s->held_head;

		s->held_head = loop->held_next[bid];
		buf_return(loop, (unsigned int)bid);
	}
	s->held_tail = -1;
	s->has_held_res = false;
}

/* ---- arming operations ---- */

static void timer_ts(struct io_slot *s, uint64_t now)
{
	uint64_t left = s->deadline_ms > now ? s->deadline_ms - now : 0;

	s->ts.tv_sec = (long long)(left / 1000u);
	s->ts.tv_nsec = (long long)(left % 1000u) * 1000000;
}

/* Queues op for s. Returns 0, or -1 (ENOMEM) when no SQE is to be had. */
static int arm(struct pn_loop *loop, struct io_slot *s, enum op op)
{
	struct io_uring_sqe *sqe = get_sqe(loop);
	size_t chunk;

	if (sqe == NULL) {
		errno = ENOMEM;
		return -1;
	}
	switch (op) {
	case OP_ACCEPT:
		io_uring_prep_multishot_accept(sqe, s->fd, NULL, NULL,
					       SOCK_NONBLOCK | SOCK_CLOEXEC);
		break;
	case OP_ACCEPT_RETRY:
		io_uring_prep_timeout(sqe, &loop->accept_pause, 0, 0);
		break;
	case OP_RECV:
		io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BGID;
		break;
	case OP_SEND:
		chunk = s->send_len - s->send_done;
		if (chunk > MAX_SEND_CHUNK)
			chunk = MAX_SEND_CHUNK;
		io_uring_prep_send(sqe, s->fd, s->send_data + s->send_done, chunk,
				   MSG_NOSIGNAL);
		break;
	case OP_CONNECT:
		io_uring_prep_connect(sqe, s->fd, (struct sockaddr *)&s->addr,
				      s->addrlen);
		break;
	case OP_POLL:
		io_uring_prep_poll_add(sqe, s->fd, s->poll_events);
		break;
	case OP_TIMER:
		timer_ts(s, clock_ms());
		io_uring_prep_timeout(sqe, &s->ts, 0, 0);
		s->kdeadline_ms = s->deadline_ms;
		break;
	case OP_IGNORE:
	case OP_WAKE:
	case OP_COUNT:
		abort(); /* our bug: not a per-io operation */
	}
	io_uring_sqe_set_data64(sqe, make_ud(loop, op, s));
	s->pending |= OPBIT(op);
	return 0;
}

/* Arms op from inside the loop; without an SQE, retries from the work list. */
static void arm_or_retry(struct pn_loop *loop, struct io_slot *s, enum op op)
{
	if (arm(loop, s, op) < 0) {
		s->rearm |= OPBIT(op);
		work_add(loop, s);
	}
}

static void recv_sync(struct pn_loop *loop, struct io_slot *s)
{
	if (s->state == SLOT_OPEN && (s->want & WANT_RECV) &&
	    !(s->pending & OPBIT(OP_RECV)) && !s->has_held_res)
		arm_or_retry(loop, s, OP_RECV);
}

static void accept_sync(struct pn_loop *loop, struct io_slot *s)
{
	if (s->state == SLOT_OPEN && (s->want & WANT_ACCEPT) &&
	    !(s->pending & (OPBIT(OP_ACCEPT) | OPBIT(OP_ACCEPT_RETRY))))
		arm_or_retry(loop, s, OP_ACCEPT);
}

static void poll_sync(struct pn_loop *loop, struct io_slot *s)
{
	if (s->state == SLOT_OPEN && (s->want & WANT_POLL) &&
	    !(s->pending & OPBIT(OP_POLL)))
		arm_or_retry(loop, s, OP_POLL);
}

static void send_sync(struct pn_loop *loop, struct io_slot *s)
{
	if (s->state == SLOT_OPEN && s->send_data != NULL &&
	    !(s->pending & OPBIT(OP_SEND)))
		arm_or_retry(loop, s, OP_SEND);
}

static void timer_sync(struct pn_loop *loop, struct io_slot *s)
{
	if (s->state == SLOT_OPEN && s->deadline_ms != 0 &&
	    !(s->pending & OPBIT(OP_TIMER)))
		arm_or_retry(loop, s, OP_TIMER);
}

/* Asks the kernel to cancel op of s (once). Returns 0, or -1 without SQE. */
static int cancel_op(struct pn_loop *loop, struct io_slot *s, enum op op)
{
	struct io_uring_sqe *sqe;

	if (!(s->pending & OPBIT(op)) || (s->cancelling & OPBIT(op)))
		return 0;
	sqe = get_sqe(loop);
	if (sqe == NULL)
		return -1;
	io_uring_prep_cancel64(sqe, make_ud(loop, op, s), 0);
	io_uring_sqe_set_data64(sqe, 0);
	s->cancelling |= OPBIT(op);
	return 0;
}

static void cancel_all(struct pn_loop *loop, struct io_slot *s)
{
	s->cancel_retry = false;
	for (int op = OP_ACCEPT; op < OP_WAKE; op++) {
		if (cancel_op(loop, s, (enum op)op) < 0) {
			s->cancel_retry = true;
			work_add(loop, s);
			return;
		}
	}
}

/* ---- slots ---- */

static struct io_slot *slot_alloc(struct pn_loop *loop)
{
	struct io_slot *s;
	uint32_t idx;

	if (loop->free_head != 0) {
		idx = loop->free_head;
		loop->free_head = loop->slots[idx].next_free;
		if (loop->free_head == 0)
			loop->free_tail = 0;
	} else if (loop->used < loop->nslots) {
		idx = loop->used++;
	} else {
		return NULL;
	}
	s = &loop->slots[idx];
	uint32_t gen = s->gen;
	memset(s, 0, offsetof(struct io_slot, addr));
	s->gen = gen;
	s->held_head = s->held_tail = -1;
	loop->live++;
	return s;
}

static void slot_free(struct pn_loop *loop, struct io_slot *s)
{
	uint32_t idx = slot_index(loop, s);

	s->state = SLOT_FREE;
	s->gen = (s->gen + 1) & GEN_MASK;
	s->h = NULL;
	s->ctx = NULL;
	s->next_free = 0;
	if (loop->free_tail != 0)
		loop->slots[loop->free_tail].next_free = idx;
	else
		loop->free_head = idx;
	loop->free_tail = idx;
	loop->live--;
}

/* The last step of a close: nothing is pending any more. */
static void finalize(struct pn_loop *loop, struct io_slot *s)
{
	const struct pn_io_handlers *h = s->h;
	void *ctx = s->ctx;

	held_release(loop, s);
	if (s->fd >= 0 && !(s->flags & PN_IO_NO_CLOSE))
		close(s->fd);
	slot_free(loop, s);
	if (h != NULL && h->on_close != NULL)
		h->on_close(ctx);
}

/* ---- completion handlers: one per operation ---- */

static bool accept_error_pauses(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static bool accept_error_fatal(int err)
{
	return err == EBADF || err == EINVAL || err == ENOTSOCK || err == EOPNOTSUPP;
}

static void handle_accept(struct pn_loop *loop, struct io_slot *s, int res,
			  unsigned int flags, bool cancelled)
{
	bool open = s->state == SLOT_OPEN && (s->want & WANT_ACCEPT);

	if (res >= 0) {
		if (open && s->h->on_accept != NULL)
			s->h->on_accept(s->ctx, res);
		else
			close(res);
	} else if (open && !(res == -ECANCELED && cancelled)) {
		if (accept_error_fatal(-res))
			s->want &= ~WANT_ACCEPT;
		if (s->h->on_accept != NULL)
			s->h->on_accept(s->ctx, res);
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	if (s->state != SLOT_OPEN || !(s->want & WANT_ACCEPT) ||
	    (s->pending & (OPBIT(OP_ACCEPT) | OPBIT(OP_ACCEPT_RETRY))))
		return;
	loop->stats.accept_rearms++;
	if (res < 0 && accept_error_pauses(-res))
		arm_or_retry(loop, s, OP_ACCEPT_RETRY);
	else
		arm_or_retry(loop, s, OP_ACCEPT);
}

static void handle_accept_retry(struct pn_loop *loop, struct io_slot *s, int res,
				unsigned int flags, bool cancelled)
{
	accept_sync(loop, s);
}

/* A completion of a multishot receive being handed off: its data goes to
 * the owner as usual; its end (the cancel, or any other) is reported as
 * -ECANCELED (the stream is the owner's now), an end of stream or an error
 * as itself. */
static void handoff_recv(struct pn_loop *loop, struct io_slot *s, int res,
			 unsigned int flags, int bid)
{
	if (res > 0 && bid >= 0) {
		if (s->h->on_recv != NULL)
			s->h->on_recv(s->ctx, buf_addr(loop, (unsigned int)bid), res);
		buf_return(loop, (unsigned int)bid);
		if (flags & IORING_CQE_F_MORE)
			return;
		res = -ECANCELED;
	} else if (bid >= 0) {
		buf_return(loop, (unsigned int)bid);
	}
	if (flags & IORING_CQE_F_MORE)
		return;
	s->handoff = false;
	s->want &= ~WANT_RECV;
	if (res == -ENOBUFS || res > 0)
		res = -ECANCELED;
	if (s->state == SLOT_OPEN && s->h->on_recv != NULL)
		s->h->on_recv(s->ctx, NULL, res);
}

static void handle_recv(struct pn_loop *loop, struct io_slot *s, int res,
			unsigned int flags, bool cancelled)
{
	bool has_buf = (flags & IORING_CQE_F_BUFFER) != 0;
	unsigned int bid = flags >> IORING_CQE_BUFFER_SHIFT;

	if (s->state != SLOT_OPEN) {
		if (has_buf)
			buf_return(loop, bid);
		return;
	}
	if (s->handoff) {
		handoff_recv(loop, s, res, flags, has_buf ? (int)bid : -1);
		return;
	}
	if (res > 0 && has_buf) {
		if ((s->want & WANT_RECV) && s->held_head < 0) {
			if (s->h->on_recv != NULL)
				s->h->on_recv(s->ctx, buf_addr(loop, bid), res);
			buf_return(loop, bid);
		} else {
			held_push(loop, s, bid, (uint32_t)res);
		}
	} else {
		if (has_buf)
			buf_return(loop, bid);
		if (res == -ENOBUFS) {
			/* The ring ran dry: buffers come back during this
			 * batch, so re-arm from the work list after it. */
			loop->stats.recv_enobufs++;
			s->rearm |= OPBIT(OP_RECV);
			work_add(loop, s);
			return;
		}
		if (res == -ECANCELED && cancelled) {
			/* pn_io_recv_stop(): nothing to report */
		} else if ((s->want & WANT_RECV) && s->held_head < 0) {
			s->want &= ~WANT_RECV;
			if (s->h->on_recv != NULL)
				s->h->on_recv(s->ctx, NULL, res);
		} else if (!s->has_held_res) {
			/* Stopped (or data still held): report it in turn. */
			s->has_held_res = true;
			s->held_res = res;
		}
	}
	if (!(flags & IORING_CQE_F_MORE))
		recv_sync(loop, s);
}

/* Delivers receive data held while stopped (from the work list). */
static void recv_flush(struct pn_loop *loop, struct io_slot *s)
{
	while (s->state == SLOT_OPEN && (s->want & WANT_RECV) && s->held_head >= 0) {
		int32_t bid = s->held_head;

		s->held_head = loop->held_next[bid];
		if (s->held_head < 0)
			s->held_tail = -1;
		if (s->h->on_recv != NULL)
			s->h->on_recv(s->ctx, buf_addr(loop, (unsigned int)bid),
				      (ssize_t)loop->held_len[bid]);
		buf_return(loop, (unsigned int)bid);
	}
	if (s->state == SLOT_OPEN && (s->want & WANT_RECV) && s->held_head < 0 &&
	    s->has_held_res) {
		s->has_held_res = false;
		s->want &= ~WANT_RECV;
		if (s->h->on_recv != NULL)
			s->h->on_recv(s->ctx, NULL, s->held_res);
	}
}

static void handle_send(struct pn_loop *loop, struct io_slot *s, int res,
			unsigned int flags, bool cancelled)
{
	ssize_t total;

	if (s->state != SLOT_OPEN || s->send_data == NULL)
		return;
	if (res == 0)
		res = -EPIPE; /* a send of > 0 bytes that sent nothing */
	if (res < 0) {
		s->send_data = NULL;
		if (s->h->on_send != NULL)
			s->h->on_send(s->ctx, res);
		return;
	}
	s->send_done += (size_t)res;
	if (s->send_done < s->send_len) {
		loop->stats.short_sends++;
		arm_or_retry(loop, s, OP_SEND);
		return;
	}
	total = (ssize_t)s->send_len;
	s->send_data = NULL;
	if (s->h->on_send != NULL)
		s->h->on_send(s->ctx, total);
}

static void handle_connect(struct pn_loop *loop, struct io_slot *s, int res,
			   unsigned int flags, bool cancelled)
{
	if (s->state == SLOT_OPEN && s->h->on_connect != NULL)
		s->h->on_connect(s->ctx, res);
}

static void handle_poll(struct pn_loop *loop, struct io_slot *s, int res,
			unsigned int flags, bool cancelled)
{
	if (s->state != SLOT_OPEN)
		return;
	if (cancelled || !(s->want & WANT_POLL)) {
		/* A poll the owner cancelled; it may want a new one. */
		poll_sync(loop, s);
		return;
	}
	s->want &= ~WANT_POLL;
	if (s->h->on_poll != NULL)
		s->h->on_poll(s->ctx, res);
}

/* The kernel timeout only wakes us; the deadline decides whether it fires. */
static void handle_timer(struct pn_loop *loop, struct io_slot *s, int res,
			 unsigned int flags, bool cancelled)
{
	if (s->state != SLOT_OPEN || s->deadline_ms == 0)
		return;
	if (clock_ms() >= s->deadline_ms) {
		s->deadline_ms = 0;
		if (s->h->on_timer != NULL)
			s->h->on_timer(s->ctx);
	} else {
		timer_sync(loop, s);
	}
}

static void arm_wake(struct pn_loop *loop)
{
	struct io_uring_sqe *sqe = get_sqe(loop);

	if (sqe == NULL)
		return; /* retried at the start of the next batch */
	io_uring_prep_poll_multishot(sqe, loop->efd, POLLIN);
	io_uring_sqe_set_data64(sqe, (uint64_t)OP_WAKE << 56);
	loop->wake_armed = true;
}

static unsigned int run_posts(struct pn_loop *loop)
{
	struct post *p, *next;
	unsigned int n = 0;

	pthread_mutex_lock(&loop->post_lock);
	p = loop->post_head;
	loop->post_head = loop->post_tail = NULL;
	pthread_mutex_unlock(&loop->post_lock);
	for (; p != NULL; p = next) {
		next = p->next;
		p->fn(p->ctx);
		free(p);
		n++;
	}
	return n;
}

static void handle_wake(struct pn_loop *loop, int res, unsigned int flags)
{
	uint64_t v;

	if (read(loop->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already drained by an earlier wake-up */
	}
	if (!(flags & IORING_CQE_F_MORE)) {
		loop->wake_armed = false;
		arm_wake(loop);
	}
	run_posts(loop);
}

typedef void handler_fn(struct pn_loop *loop, struct io_slot *s, int res,
			unsigned int flags, bool cancelled);

static handler_fn *const handlers[OP_COUNT] = {
	[OP_ACCEPT] = handle_accept,
	[OP_ACCEPT_RETRY] = handle_accept_retry,
	[OP_RECV] = handle_recv,
	[OP_SEND] = handle_send,
	[OP_CONNECT] = handle_connect,
	[OP_POLL] = handle_poll,
	[OP_TIMER] = handle_timer,
};

static void dispatch(struct pn_loop *loop, uint64_t ud, int res, unsigned int flags)
{
	enum op op = (enum op)(ud >> 56);
	uint32_t gen = (uint32_t)(ud >> 32) & GEN_MASK;
	uint32_t idx = (uint32_t)ud;
	struct io_slot *s;
	bool cancelled;

	if (!(flags & IORING_CQE_F_MORE))
		loop->inflight--;
	if (op == OP_WAKE) {
		handle_wake(loop, res, flags);
		return;
	}
	if (op == OP_IGNORE || op >= OP_COUNT || handlers[op] == NULL ||
	    idx == 0 || idx >= loop->used || loop->slots[idx].gen != gen ||
	    loop->slots[idx].state == SLOT_FREE) {
		/* Cannot happen for a slot (it is freed only when nothing is
		 * pending); still never lose a ring buffer. */
		if (flags & IORING_CQE_F_BUFFER)
			buf_return(loop, flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	s = &loop->slots[idx];
	cancelled = (s->cancelling & OPBIT(op)) != 0;
	if (!(flags & IORING_CQE_F_MORE)) {
		s->pending &= (uint16_t)~OPBIT(op);
		s->cancelling &= (uint16_t)~OPBIT(op);
	}
	handlers[op](loop, s, res, flags, cancelled);
	if (s->state == SLOT_CLOSING && s->pending == 0)
		work_add(loop, s);
}

/* ---- work list ---- */

static void process_work(struct pn_loop *loop, struct io_slot *s)
{
	uint16_t rearm;

	if (s->state == SLOT_CLOSING) {
		if (s->cancel_retry)
			cancel_all(loop, s);
		if (s->pending == 0)
			finalize(loop, s);
		return;
	}
	if (s->state != SLOT_OPEN)
		return;
	/* Cancels that found no SQE when the owner asked for them. */
	if (!(s->want & WANT_RECV))
		cancel_op(loop, s, OP_RECV);
	if (!(s->want & WANT_POLL))
		cancel_op(loop, s, OP_POLL);
	if (s->flush) {
		s->flush = false;
		recv_flush(loop, s);
	}
	rearm = s->rearm;
	s->rearm = 0;
	if (rearm & OPBIT(OP_ACCEPT_RETRY)) {
		if (s->state == SLOT_OPEN && (s->want & WANT_ACCEPT) &&
		    !(s->pending & (OPBIT(OP_ACCEPT) | OPBIT(OP_ACCEPT_RETRY))))
			arm_or_retry(loop, s, OP_ACCEPT_RETRY);
	}
	accept_sync(loop, s);
	recv_sync(loop, s);
	send_sync(loop, s);
	poll_sync(loop, s);
	timer_sync(loop, s);
	if (rearm & OPBIT(OP_CONNECT) && s->state == SLOT_OPEN &&
	    !(s->pending & OPBIT(OP_CONNECT)))
		arm_or_retry(loop, s, OP_CONNECT);
}

static unsigned int run_work(struct pn_loop *loop)
{
	unsigned int n = 0;

	/* A few passes: work done here may queue more (a flush that closes);
	 * whatever is left waits for the next batch, which then won't block. */
	for (int pass = 0; pass < 8 && loop->work_head != 0; pass++) {
		uint32_t idx = loop->work_head;

		loop->work_head = loop->work_tail = 0;
		while (idx != 0) {
			struct io_slot *s = &loop->slots[idx];

			idx = s->next_work;
			s->in_work = false;
			process_work(loop, s);
			n++;
		}
	}
	return n;
}

/* ---- the loop ---- */

static int setup_buffers(struct pn_loop *loop, const char **error_r)
{
	struct io_uring_buf_reg reg;
	int mask = io_uring_buf_ring_mask(loop->buf_count);

	loop->br_size = loop->buf_count * sizeof(struct io_uring_buf);
	loop->br = mmap(NULL, loop->br_size, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (loop->br == MAP_FAILED) {
		loop->br = NULL;
		*error_r = "mmap of the buffer ring failed";
		return -1;
	}
	loop->bufs_size = (size_t)loop->buf_count * loop->buf_size;
	loop->bufs = mmap(NULL, loop->bufs_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (loop->bufs == MAP_FAILED) {
		loop->bufs = NULL;
		*error_r = "mmap of the receive buffers failed";
		return -1;
	}
	loop->held_next = calloc(loop->buf_count, sizeof(*loop->held_next));
	loop->held_len = calloc(loop->buf_count, sizeof(*loop->held_len));
	if (loop->held_next == NULL || loop->held_len == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)loop->br;
	reg.ring_entries = loop->buf_count;
	reg.bgid = BGID;
	if (io_uring_register_buf_ring(&loop->ring, &reg, 0) < 0) {
		*error_r = "io_uring_register_buf_ring failed (kernel older than 5.19?)";
		return -1;
	}
	loop->br_registered = true;
	io_uring_buf_ring_init(loop->br);
	for (unsigned int i = 0; i < loop->buf_count; i++)
		io_uring_buf_ring_add(loop->br, buf_addr(loop, i), loop->buf_size,
				      (unsigned short)i, mask, (int)i);
	io_uring_buf_ring_advance(loop->br, (int)loop->buf_count);
	return 0;
}

struct pn_loop *pn_loop_new(const struct pn_loop_settings *set, const char **error_r)
{
	struct pn_loop_settings def = { 1024, 65536, 16384, 1024, 0 };
	struct io_uring_params params;
	struct pn_loop *loop;
	int ret;

	if (set == NULL)
		set = &def;
	def.ring_entries = set->ring_entries ? set->ring_entries : 1024;
	def.max_ios = set->max_ios ? set->max_ios : 65536;
	def.recv_buf_size = set->recv_buf_size ? set->recv_buf_size : 16384;
	def.recv_buf_count = set->recv_buf_count ? set->recv_buf_count : 1024;
	if (def.max_ios >= ID_INDEX_MASK) {
		*error_r = "max_ios must be below 1048575";
		return NULL;
	}
	if (def.recv_buf_count > 32768 ||
	    (def.recv_buf_count & (def.recv_buf_count - 1)) != 0) {
		*error_r = "recv_buf_count must be a power of 2 up to 32768";
		return NULL;
	}
	if (def.recv_buf_size > (1u << 30)) {
		*error_r = "recv_buf_size too large";
		return NULL;
	}
	loop = calloc(1, sizeof(*loop));
	if (loop == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	loop->efd = -1;
	pthread_mutex_init(&loop->post_lock, NULL);
	atomic_init(&loop->stop, false);
	loop->buf_size = def.recv_buf_size;
	loop->buf_count = def.recv_buf_count;
	loop->nslots = def.max_ios + 1;
	loop->used = 1; /* slot 0 is never handed out, so no id is 0 */
	loop->accept_pause.tv_sec = 0;
	loop->accept_pause.tv_nsec = ACCEPT_PAUSE_MS * 1000000LL;
	/* Untouched slots stay untouched pages: calloc of a big table is lazy
	 * and slots are handed out from a high-water mark. */
	loop->slots = calloc(loop->nslots, sizeof(*loop->slots));
	if (loop->slots == NULL) {
		*error_r = "out of memory";
		goto fail;
	}

	ret = -EINVAL;
	if (set->flags & PN_LOOP_DEFER_TASKRUN) {
		/* Disabled until the thread that runs it enables it: that
		 * thread becomes the single issuer. */
		memset(&params, 0, sizeof(params));
		params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
			       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			       IORING_SETUP_R_DISABLED;
		params.cq_entries = def.ring_entries * 4;
		ret = io_uring_queue_init_params(def.ring_entries, &loop->ring, &params);
		if (ret == 0)
			loop->defer = loop->disabled = true;
	}
	if (ret == -EINVAL) {
		memset(&params, 0, sizeof(params));
		params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
			       IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
		params.cq_entries = def.ring_entries * 4;
		ret = io_uring_queue_init_params(def.ring_entries, &loop->ring, &params);
	}
	if (ret == -EINVAL) {
		memset(&params, 0, sizeof(params));
		params.flags = IORING_SETUP_CQSIZE;
		params.cq_entries = def.ring_entries * 4;
		ret = io_uring_queue_init_params(def.ring_entries, &loop->ring, &params);
	}
	if (ret < 0) {
		*error_r = ret == -ENOMEM ? "io_uring_queue_init: out of locked memory" :
			   ret == -EPERM ? "io_uring_queue_init: not permitted" :
			   "io_uring_queue_init failed";
		goto fail;
	}
	loop->ring_ok = true;
	if (setup_buffers(loop, error_r) < 0)
		goto fail;
	loop->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->efd < 0) {
		*error_r = "eventfd failed";
		goto fail;
	}
	arm_wake(loop);
	if (!loop->wake_armed) {
		*error_r = "no SQE for the wake-up poll";
		goto fail;
	}
	loop->now_ms = clock_ms();
	return loop;
fail:
	pn_loop_free(&loop);
	return NULL;
}

/* Cancels everything in flight and waits (bounded) until the kernel let
 * go of every buffer, timespec and address we gave it. */
static void drain(struct pn_loop *loop)
{
	struct io_uring_sqe *sqe;

	if (loop->inflight == 0)
		return;
	sqe = get_sqe(loop);
	if (sqe != NULL) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY |
					       IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, 0);
	}
	for (int i = 0; i < 20 && loop->inflight > 0; i++) {
		struct __kernel_timespec ts = { 0, 50 * 1000000LL };
		struct io_uring_cqe *cqe;
		struct io_uring_cqe *cqes[CQE_BATCH];
		unsigned int n;

		if (io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL) ==
		    -EEXIST)
			break; /* not the single issuer: see PN_LOOP_DEFER_TASKRUN */
		n = io_uring_peek_batch_cqe(&loop->ring, cqes, CQE_BATCH);
		for (unsigned int j = 0; j < n; j++) {
			if (!(cqes[j]->flags & IORING_CQE_F_MORE))
				loop->inflight--;
			if (cqes[j]->res >= 0 && cqes[j]->user_data >> 56 == OP_ACCEPT)
				close(cqes[j]->res);
		}
		io_uring_cq_advance(&loop->ring, n);
	}
}

void pn_loop_free(struct pn_loop **loopp)
{
	struct pn_loop *loop = *loopp;
	struct post *p, *next;

	if (loop == NULL)
		return;
	*loopp = NULL;
	if (loop->ring_ok)
		drain(loop);
	for (uint32_t i = 1; i < loop->used; i++) {
		struct io_slot *s = &loop->slots[i];

		if (s->state != SLOT_FREE && s->fd >= 0 &&
		    !(s->flags & PN_IO_NO_CLOSE))
			close(s->fd);
	}
	if (loop->ring_ok) {
		if (loop->br_registered)
			io_uring_unregister_buf_ring(&loop->ring, BGID);
		io_uring_queue_exit(&loop->ring);
	}
	if (loop->br != NULL)
		munmap(loop->br, loop->br_size);
	if (loop->bufs != NULL)
		munmap(loop->bufs, loop->bufs_size);
	free(loop->held_next);
	free(loop->held_len);
	free(loop->slots);
	if (loop->efd >= 0)
		close(loop->efd);
	for (p = loop->post_head; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	pthread_mutex_destroy(&loop->post_lock);
	free(loop);
}

static unsigned int reap(struct pn_loop *loop)
{
	struct io_uring_cqe *cqes[CQE_BATCH];
	struct {
		uint64_t ud;
		int res;
		unsigned int flags;
	} batch[CQE_BATCH];
	unsigned int total = 0;

	/* A few rounds at most, so that the work list gets its turn. */
	for (int round = 0; round < 8; round++) {
		unsigned int n = io_uring_peek_batch_cqe(&loop->ring, cqes, CQE_BATCH);

		if (n == 0)
			break;
		for (unsigned int i = 0; i < n; i++) {
			batch[i].ud = cqes[i]->user_data;
			batch[i].res = cqes[i]->res;
			batch[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&loop->ring, n);
		for (unsigned int i = 0; i < n; i++)
			dispatch(loop, batch[i].ud, batch[i].res, batch[i].flags);
		total += n;
		loop->stats.completions += n;
	}
	return total;
}

/* Makes the calling thread the ring's single issuer (PN_LOOP_DEFER_TASKRUN):
 * liburing 2.3 does not export io_uring_enable_rings(). */
static int enable_ring(struct pn_loop *loop)
{
	if (syscall(__NR_io_uring_register, loop->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
		    NULL, 0) < 0)
		return -1;
	loop->disabled = false;
	return 0;
}

/* One batch (see pn_loop_run_once). submit_after: hand what the callbacks
 * queued to the kernel before returning; pn_loop_run() leaves it to its
 * next batch's wait, which follows at once: one system call less per
 * batch. */
static int run_batch(struct pn_loop *loop, int timeout_ms, bool submit_after)
{
	struct io_uring_cqe *cqe;
	unsigned int n;
	int ret;

	if (loop->in_dispatch) {
		errno = EDEADLK; /* called from a callback */
		return -1;
	}
	if (loop->disabled && enable_ring(loop) < 0)
		return -1;
	loop->in_dispatch++;
	if (!loop->wake_armed)
		arm_wake(loop);
	n = run_work(loop);
	if (n > 0 || loop->work_head != 0)
		timeout_ms = 0;
	if (timeout_ms == 0) {
		/* Deferred completions are only produced when asked for. */
		ret = loop->defer ? io_uring_submit_and_get_events(&loop->ring) :
				    io_uring_submit(&loop->ring);
	} else if (timeout_ms < 0) {
		ret = io_uring_submit_and_wait(&loop->ring, 1);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ms / 1000,
			.tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};
		ret = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, &ts, NULL);
	}
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN &&
	    ret != -EBUSY) {
		loop->in_dispatch--;
		errno = -ret;
		return -1;
	}
	loop->now_ms = clock_ms();
	n += reap(loop);
	n += run_work(loop);
	/* Hand over what the callbacks queued now rather than at the next
	 * wait: a peer may be waiting on it. */
	if (submit_after)
		io_uring_submit(&loop->ring);
	loop->in_dispatch--;
	return (int)n;
}

int pn_loop_run_once(struct pn_loop *loop, int timeout_ms)
{
	return run_batch(loop, timeout_ms, true);
}

int pn_loop_run(struct pn_loop *loop)
{
	int rc = 0;

	while (!atomic_load(&loop->stop)) {
		if (run_batch(loop, -1, false) < 0) {
			rc = -1;
			break;
		}
	}
	io_uring_submit(&loop->ring);
	atomic_store(&loop->stop, false);
	return rc;
}

static void wake(struct pn_loop *loop)
{
	uint64_t one = 1;

	if (write(loop->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, a wake-up is pending */
	}
}

void pn_loop_stop(struct pn_loop *loop)
{
	atomic_store(&loop->stop, true);
	wake(loop);
}

int pn_loop_post(struct pn_loop *loop, void (*fn)(void *ctx), void *ctx)
{
	struct post *p = malloc(sizeof(*p));

	if (p == NULL) {
		errno = ENOMEM;
		return -1;
	}
	p->next = NULL;
	p->fn = fn;
	p->ctx = ctx;
	pthread_mutex_lock(&loop->post_lock);
	if (loop->post_tail != NULL)
		loop->post_tail->next = p;
	else
		loop->post_head = p;
	loop->post_tail = p;
	pthread_mutex_unlock(&loop->post_lock);
	wake(loop);
	return 0;
}

uint64_t pn_loop_now_ms(struct pn_loop *loop)
{
	return loop->now_ms;
}

unsigned int pn_loop_io_count(const struct pn_loop *loop)
{
	return loop->live;
}

void pn_loop_get_stats(const struct pn_loop *loop, struct pn_loop_stats *stats_r)
{
	*stats_r = loop->stats;
}

/* ---- ios ---- */

pn_io_id pn_io_add(struct pn_loop *loop, int fd, unsigned int flags,
		   const struct pn_io_handlers *h, void *ctx)
{
	struct io_slot *s;

	if (h == NULL) {
		errno = EINVAL;
		return PN_IO_NONE;
	}
	s = slot_alloc(loop);
	if (s == NULL) {
		errno = ENOMEM;
		return PN_IO_NONE;
	}
	s->state = SLOT_OPEN;
	s->fd = fd;
	s->flags = flags;
	s->h = h;
	s->ctx = ctx;
	return (pn_io_id)((s->gen & ID_GEN_MASK) << ID_INDEX_BITS) |
	       slot_index(loop, s);
}

int pn_io_fd(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open(loop, id);

	return s != NULL ? s->fd : -1;
}

void pn_io_set_ctx(struct pn_loop *loop, pn_io_id id, void *ctx)
{
	struct io_slot *s = lookup_any(loop, id);

	if (s != NULL)
		s->ctx = ctx;
}

int pn_io_accept(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	if (s->want & WANT_ACCEPT) {
		errno = EBUSY;
		return -1;
	}
	if (!(s->pending & (OPBIT(OP_ACCEPT) | OPBIT(OP_ACCEPT_RETRY))) &&
	    arm(loop, s, OP_ACCEPT) < 0)
		return -1;
	s->want |= WANT_ACCEPT;
	return 0;
}

int pn_io_recv(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	if (s->want & WANT_RECV) {
		errno = EBUSY;
		return -1;
	}
	if (s->held_head >= 0 || s->has_held_res) {
		/* Deliver what was kept first, after this call returns. */
		s->want |= WANT_RECV;
		s->flush = true;
		work_add(loop, s);
		return 0;
	}
	/* A multishot whose cancel is still under way simply carries on. */
	if (!(s->pending & OPBIT(OP_RECV)) && arm(loop, s, OP_RECV) < 0)
		return -1;
	s->want |= WANT_RECV;
	return 0;
}

int pn_io_recv_stop(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	s->want &= ~WANT_RECV;
	/* Without an SQE the multishot goes on for now: what it brings is
	 * held, and the work list retries the cancel. */
	if (cancel_op(loop, s, OP_RECV) < 0)
		work_add(loop, s);
	return 0;
}

int pn_io_recv_handoff(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	if (!(s->want & WANT_RECV) || !(s->pending & OPBIT(OP_RECV)) || s->handoff ||
	    (s->cancelling & OPBIT(OP_RECV)) || s->held_head >= 0 || s->has_held_res) {
		errno = EAGAIN;
		return -1;
	}
	if (cancel_op(loop, s, OP_RECV) < 0) {
		errno = ENOMEM;
		return -1;
	}
	s->handoff = true;
	return 0;
}

int pn_io_send(struct pn_loop *loop, pn_io_id id, const void *data, size_t len)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	if (data == NULL || len == 0 || len > (size_t)SSIZE_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (s->send_data != NULL) {
		errno = EBUSY;
		return -1;
	}
	s->send_data = data;
	s->send_len = len;
	s->send_done = 0;
	if (!(s->pending & OPBIT(OP_SEND)) && arm(loop, s, OP_SEND) < 0) {
		s->send_data = NULL;
		return -1;
	}
	return 0;
}

int pn_io_connect(struct pn_loop *loop, pn_io_id id, const struct sockaddr *addr,
		  socklen_t addrlen)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	if (addr == NULL || addrlen == 0 || addrlen > sizeof(s->addr)) {
		errno = EINVAL;
		return -1;
	}
	if (s->pending & OPBIT(OP_CONNECT)) {
		errno = EBUSY;
		return -1;
	}
	memcpy(&s->addr, addr, addrlen);
	s->addrlen = addrlen;
	return arm(loop, s, OP_CONNECT);
}

int pn_io_poll(struct pn_loop *loop, pn_io_id id, unsigned int events)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	if (s->want & WANT_POLL) {
		errno = EBUSY;
		return -1;
	}
	s->poll_events = events;
	/* If a cancelled poll is still in the kernel, its completion arms
	 * this one (handle_poll). */
	if (!(s->pending & OPBIT(OP_POLL)) && arm(loop, s, OP_POLL) < 0)
		return -1;
	s->want |= WANT_POLL;
	return 0;
}

int pn_io_poll_cancel(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open_fd(loop, id);

	if (s == NULL)
		return -1;
	s->want &= ~WANT_POLL;
	/* handle_poll() drops the result anyway (want is clear); without an
	 * SQE now, the work list retries the cancel. */
	if (cancel_op(loop, s, OP_POLL) < 0)
		work_add(loop, s);
	return 0;
}

int pn_io_timer_set(struct pn_loop *loop, pn_io_id id, uint64_t ms)
{
	struct io_slot *s = lookup_open(loop, id);
	uint64_t now, old;

	if (s == NULL)
		return -1;
	if (ms > UINT64_MAX / 4) {
		errno = EINVAL;
		return -1;
	}
	now = clock_ms();
	old = s->deadline_ms;
	s->deadline_ms = now + ms;
	if (s->deadline_ms == 0)
		s->deadline_ms = 1;
	if (!(s->pending & OPBIT(OP_TIMER))) {
		if (arm(loop, s, OP_TIMER) < 0) {
			s->deadline_ms = old;
			return -1;
		}
	} else if (s->deadline_ms < s->kdeadline_ms) {
		/* Bring the kernel timeout forward. If it already fired, its
		 * completion is on the way and handle_timer() re-arms. A later
		 * deadline needs nothing: the early wake-up re-arms. */
		struct io_uring_sqe *sqe = get_sqe(loop);

		if (sqe == NULL) {
			s->deadline_ms = old;
			errno = ENOMEM;
			return -1;
		}
		timer_ts(s, now);
		io_uring_prep_timeout_update(sqe, &s->ts, make_ud(loop, OP_TIMER, s), 0);
		io_uring_sqe_set_data64(sqe, 0);
		s->kdeadline_ms = s->deadline_ms;
	}
	return 0;
}

int pn_io_timer_cancel(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open(loop, id);

	if (s == NULL)
		return -1;
	s->deadline_ms = 0;
	if (s->pending & OPBIT(OP_TIMER)) {
		if (cancel_op(loop, s, OP_TIMER) == 0)
			s->kdeadline_ms = UINT64_MAX;
		/* else the kernel timeout stays; handle_timer() ignores it */
	}
	return 0;
}

int pn_io_close(struct pn_loop *loop, pn_io_id id)
{
	struct io_slot *s = lookup_open(loop, id);

	if (s == NULL)
		return -1;
	s->state = SLOT_CLOSING;
	s->want = 0;
	s->send_data = NULL;
	s->deadline_ms = 0;
	s->rearm = 0;
	s->flush = false;
	if (s->pending != 0) {
		cancel_all(loop, s);
		/* Let the kernel take its file references now, so that the
		 * owner of a foreign fd may close it as soon as we return. Our
		 * own fd is closed only after the last completion: its cancels
		 * go with the batch. */
		if (s->flags & PN_IO_NO_CLOSE)
			io_uring_submit(&loop->ring);
	} else {
		work_add(loop, s);
	}
	return 0;
}
