/* The relay threads: each one runs a loop with its own SO_REUSEPORT
 * listener per protocol and serves the connections it accepts.
 *
 * L4 (the default): accept, check the limits, pick a backend (lb-algo.h
 * over the current snapshot), connect with a timeout, send the PROXY v2
 * header (client and local address), then relay bytes both ways.
 *
 * PROXY from clients: on a listener with proxy_accept_from, a peer in
 * those networks must send a PROXY v1/v2 header first (CONN_PROXYIN); the
 * client it names replaces the peer for limits, hashing and our own
 * header. Another peer whose first bytes are a PROXY header is closed.
 *
 * L7 (listeners named in `l7`): the balancer terminates TLS (implicit, or
 * STARTTLS) with the TLS engine on memory BIOs, speaks the protocol itself
 * up to the login (lb-login.h), picks the backend by consistent hashing of
 * the user (or domain) with bounded loads, connects, sends PROXY v2 with
 * the TLS facts as TLVs, replays the login, passes the frontend's answer
 * on, and relays from then on (decrypting and encrypting on the client
 * side). A failed login reads exactly as the frontend wrote it.
 *
 * Relaying uses the loop's provided-buffer multishot receive: a small
 * received chunk is copied into that direction's queue and handed to the
 * ring as a send (one in flight per direction), so all the sends of a
 * batch reach the kernel in one system call; a large one (4 KiB and more)
 * is sent at once with a non-blocking send() from the receive buffer and
 * only what the other side cannot take now is queued. A queue that reaches
 * relay_buffer stops receiving from its source (backpressure) until it has
 * drained below half. An idle L4 connection holds no buffer at all (an L7
 * one holds its TLS session).
 *
 * Splice (relay_splice, L4 without TLS): once a direction receives a large
 * piece (RELAY_SPLICE_MIN) after the upstream answered, its multishot
 * receive is handed off (pn_io_recv_handoff: what the kernel already took
 * is still relayed as above, in order), and from then on the direction
 * moves bytes source -> pipe -> destination with non-blocking splice()
 * calls on the loop thread, waiting with a one-shot poll on the socket
 * when one side has nothing or no room: the bytes are never copied into
 * the balancer. The pipe (64 KiB) is the direction's whole queue: nothing
 * is read while it holds bytes (backpressure). io_uring's own splice runs
 * in its worker threads and cost more (bench/README.md, finding 14).
 *
 * Failover: until the first byte from the upstream has been passed to the
 * client, a connection refused, reset, timed out or closed by the upstream
 * (in L7 also a refusing greeting) is retried on the next eligible backend
 * without the client noticing; in L4 the client's bytes sent meanwhile
 * are kept (up to relay_buffer) and replayed, in L7 the login is replayed.
 * Each such failure is reported to the health checker (passive check) and
 * takes the backend out of rotation at once. With nothing left to try, the
 * client gets its protocol's temporary refusal (L4 implicit-TLS listeners
 * just close: a plaintext line would mean nothing to a TLS client).
 *
 * End of stream is passed on as shutdown(SHUT_WR) (after close_notify on
 * a TLS client side) once the queue toward that side is empty; the
 * connection closes when both directions have ended. An error (reset) on
 * one side resets the other (SO_LINGER 0). After one direction ended the
 * idle timeout shrinks to LB_FIN_TIMEOUT_MS.
 */
#include "lb.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb-login.h"
#include "postern/buf.h"
#include "postern/cidr.h"
#include "postern/hash.h"
#include "postern/log.h"
#include "postern/proxy.h"
#include "postern/tls.h"

#define LB_FIN_TIMEOUT_MS 30000
#define LB_REFUSE_LINGER_MS 2000
#define LB_PROXYIN_TIMEOUT_MS 10000	/* a trusted proxy sends its header at once */
#define QUEUE_SLACK (64 * 1024)	/* a receive chunk, a header, a TLS flight */
#define TLS_CHUNK 16384
#define RELAY_RECV_BUF (64 * 1024)
#define RELAY_RECV_BUFS 256	/* 16 MiB per relay thread */
#define RELAY_INLINE_MIN 4096	/* dir_write: from here on send() at once */
#define RELAY_SPLICE_MIN 16384	/* a received piece this large turns splice on */

enum conn_state {
	CONN_PRELOGIN = 0,	/* L7: our own dialogue with the client */
	CONN_PROXYIN,		/* reading a trusted proxy's PROXY header */
	CONN_CONNECTING,	/* connecting to an upstream */
	CONN_REPLAY,		/* L7: replaying the login to the upstream */
	CONN_RELAY,
	CONN_REFUSING,		/* our last words sent, waiting for the close */
	CONN_CLOSING,
};

struct lb_dir {
	struct pn_buf q;	/* bytes for the destination, not handed on yet */
	struct pn_buf s;	/* the ring's send in flight (sending) */
	bool eof;		/* the source ended its stream */
	bool shut;		/* ... and that was passed on */
	bool sending;		/* a send of s is in the ring */
	bool stopped;		/* source not read: queue over relay_buffer */
	uint8_t sp;		/* SP_*: splice state */
	unsigned int sp_wait;	/* POLLIN on the source or POLLOUT on the
				 * destination the pump waits for, or 0 */
	int pr, pw;		/* the pipe (SP_ON), else -1 */
	uint32_t inpipe;	/* bytes in it */
};

enum {
	SP_OFF = 0,	/* the loop's receive and the queues */
	SP_HANDOFF,	/* the loop's receive is ending (pn_io_recv_handoff) */
	SP_ON,		/* splice through the pipe */
};

/* Send buffers of a failed upstream's send, which the kernel may still
 * read until that io's end: freed with the connection. */
struct lb_retired {
	struct lb_retired *next;
	struct pn_buf b;
};

struct lb_conn {
	struct lb_worker *w;
	struct lb_conn *prev, *next;
	enum lb_proto proto;
	uint8_t state;
	uint8_t attempts;
	uint8_t open_ios;
	bool answered;		/* an upstream byte went to the client */
	bool no_retry;		/* L4: the client's bytes no longer fit the replay */
	bool crecv, urecv;
	bool admitted, tracked;	/* counted by the limits */
	bool l7;
	bool tls_counted;
	bool goodbye_pending;	/* close_notify waits for the handshake */
	bool splice;		/* relay_splice */
	unsigned int cpoll, upoll;	/* poll events armed on cio / uio */
	bool sniff_proxy;	/* untrusted peer on a PROXY listener: check its
				 * first bytes for a header */
	uint8_t proxy;
	uint32_t relay_buffer;
	uint64_t idle_timeout_ms, connect_timeout_ms, login_deadline_ms;
	pn_io_id cio, uio;
	int cfd, ufd;
	struct lb_backend *be;
	const struct lb_backend *tried[LB_MAX_ATTEMPTS];
	struct lb_dir c2u, u2c;
	struct pn_buf replay;	/* L4: the client's bytes while not answered */
	struct lb_retired *retired;
	uint64_t last_ms;
	uint64_t connect_start_ms;
	uint64_t due_ms;	/* its deadline in the worker's heap ... */
	uint32_t hslot;		/* ... at this index, or NO_SLOT */
	/* L7 */
	struct pn_tls_conn *tls;	/* client side, once TLS is on */
	struct lb_login *login;		/* until the login is answered */
	struct lb_replay *rp;		/* while replaying it */
	struct pn_buf held;		/* client plaintext waiting for the relay */
	uint64_t route_key;
	struct sockaddr_storage caddr;
	socklen_t caddr_len;
};

static void conn_close(struct lb_conn *c, bool reset);
static void conn_start_upstream(struct lb_conn *c);
static void client_timer(struct lb_conn *c);
static void conn_upstream_failed(struct lb_conn *c, int err, const char *what);
static void conn_update_recv(struct lb_conn *c);
static void splice_pump(struct lb_conn *c, struct lb_dir *d);
static void conn_refuse(struct lb_conn *c, const char *msg, const char *reason);

static struct pn_loop *conn_loop(const struct lb_conn *c)
{
	return c->w->loop;
}

static const char *peer_text(const struct lb_conn *c, char *buf, size_t size)
{
	return pn_format_addr((const struct sockaddr *)&c->caddr, buf, size);
}

/* ---- deadlines ----
 *
 * Each connection has one deadline at a time (connect, login, idle or
 * refusal linger; client_timer() decides what it means when it comes). The
 * worker keeps them in a binary min-heap and one kernel timer aims at the
 * earliest: a connection that closes before its deadline costs no ring
 * operation at all, where a timer of its own cost an arm and a cancel (two
 * submissions, two completions). A later deadline for the earliest entry
 * leaves the kernel timer alone: it wakes early once and is re-aimed. */

#define NO_SLOT UINT32_MAX

static void heap_place(struct lb_worker *w, uint32_t i, struct lb_conn *c)
{
	w->theap[i] = c;
	c->hslot = i;
}

static void heap_up(struct lb_worker *w, uint32_t i)
{
	struct lb_conn *c = w->theap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (w->theap[parent]->due_ms <= c->due_ms)
			break;
		heap_place(w, i, w->theap[parent]);
		i = parent;
	}
	heap_place(w, i, c);
}

static void heap_down(struct lb_worker *w, uint32_t i)
{
	struct lb_conn *c = w->theap[i];

	for (;;) {
		uint32_t k = 2 * i + 1;

		if (k >= w->theap_n)
			break;
		if (k + 1 < w->theap_n && w->theap[k + 1]->due_ms < w->theap[k]->due_ms)
			k++;
		if (c->due_ms <= w->theap[k]->due_ms)
			break;
		heap_place(w, i, w->theap[k]);
		i = k;
	}
	heap_place(w, i, c);
}

static void heap_remove(struct lb_worker *w, struct lb_conn *c)
{
	uint32_t i = c->hslot;
	struct lb_conn *last;

	if (i == NO_SLOT)
		return;
	c->hslot = NO_SLOT;
	last = w->theap[--w->theap_n];
	if (last == c)
		return;
	heap_place(w, i, last);
	heap_up(w, i);
	heap_down(w, last->hslot);
}

/* Aims the worker's kernel timer at the earliest deadline. */
static int worker_timer_aim(struct lb_worker *w, uint64_t now)
{
	uint64_t due;

	if (w->theap_n == 0)
		return 0; /* a pending wake-up finds nothing and stops */
	due = w->theap[0]->due_ms;
	return pn_io_timer_set(w->loop, w->tio, due > now ? due - now : 1);
}

/* Sets c's deadline ms from now (replacing the one it had); client_timer()
 * runs then. Returns 0, or -1 (out of memory, no SQE). */
static int conn_timer_set(struct lb_conn *c, uint64_t ms)
{
	struct lb_worker *w = c->w;
	uint64_t now = pn_loop_now_ms(w->loop);

	if (c->state == CONN_CLOSING)
		return 0; /* out of the heap for good: it is about to be freed */
	/* At least 1 ms: a deadline set from client_timer() is never due in
	 * the same pass of worker_timer(). */
	c->due_ms = now + (ms > 0 ? ms : 1);
	if (c->hslot == NO_SLOT) {
		if (w->theap_n == w->theap_cap) {
			uint32_t cap = w->theap_cap > 0 ? w->theap_cap * 2 : 64;
			struct lb_conn **h = realloc(w->theap, cap * sizeof(*h));

			if (h == NULL)
				return -1;
			w->theap = h;
			w->theap_cap = cap;
		}
		heap_place(w, w->theap_n++, c);
	}
	heap_up(w, c->hslot);
	heap_down(w, c->hslot);
	return w->theap[0] == c ? worker_timer_aim(w, now) : 0;
}

static void worker_timer(void *ctx)
{
	struct lb_worker *w = ctx;
	uint64_t now = pn_loop_now_ms(w->loop);

	while (w->theap_n > 0 && w->theap[0]->due_ms <= now) {
		struct lb_conn *c = w->theap[0];

		heap_remove(w, c);
		client_timer(c);
	}
	if (worker_timer_aim(w, now) < 0)
		pn_error("event=timer_failed worker=%u error=%s", w->idx, strerror(errno));
}

static const struct pn_io_handlers worker_timer_handlers = { .on_timer = worker_timer };

/* ---- picking ---- */

static void worker_refresh_pickers(struct lb_worker *w, const struct lb_snapshot *s)
{
	const char *err = NULL;

	if (w->pickers_ok && w->picker_gen == s->gen)
		return;
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		lb_picker_free(&w->pickers[p]);
	w->pickers_ok = true;
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		struct lb_node nodes[LB_POOL_MAX];
		const struct lb_pool *pool = &s->pool[p];
		/* L7 routes users: consistent hashing with bounded loads. */
		enum lb_algo algo = s->l7[p] ? LB_ALGO_CHASH : s->algo;

		for (size_t i = 0; i < pool->n; i++)
			nodes[i] = (struct lb_node){ pool->be[i]->id, 0, 0 };
		if (lb_picker_init(&w->pickers[p], algo, nodes, pool->n, s->balance_pct,
				   &err) < 0) {
			pn_error("event=picker_failed worker=%u error=%s", w->idx, err);
			w->pickers_ok = false;
		} else if (algo == LB_ALGO_ROUNDROBIN) {
			lb_rr_stagger(&w->pickers[p].rr, w->idx);
		}
	}
	w->picker_gen = s->gen;
}

static bool was_tried(const struct lb_conn *c, const struct lb_backend *be)
{
	for (unsigned int i = 0; i < c->attempts; i++)
		if (c->tried[i] == be)
			return true;
	return false;
}

static struct lb_backend *pick_backend(struct lb_conn *c, const struct lb_snapshot *s)
{
	struct lb_worker *w = c->w;
	const struct lb_pool *pool = &s->pool[c->proto];
	struct lb_node nodes[LB_POOL_MAX];
	ssize_t k;

	worker_refresh_pickers(w, s);
	if (!w->pickers_ok || pool->n == 0)
		return NULL;
	for (size_t i = 0; i < pool->n; i++) {
		struct lb_backend *be = pool->be[i];
		uint32_t weight = atomic_load_explicit(&be->eff_weight, memory_order_relaxed);

		if (atomic_load_explicit(&be->passive_down, memory_order_relaxed) ||
		    was_tried(c, be))
			weight = 0;
		nodes[i] = (struct lb_node){ be->id, weight,
			atomic_load_explicit(&be->active, memory_order_relaxed) };
	}
	k = lb_picker_pick(&w->pickers[c->proto], nodes, pool->n,
			   c->l7 ? c->route_key :
				   lb_source_key((const struct sockaddr *)&c->caddr));
	return k < 0 ? NULL : pool->be[k];
}

static void release_backend(struct lb_conn *c)
{
	struct lb_backend *be = c->be;

	if (be == NULL)
		return;
	c->be = NULL;
	pn_gauge_dec(be->m_active);
	/* The last touch of be: after this the control thread may free it. */
	atomic_fetch_sub_explicit(&be->active, 1, memory_order_release);
}

/* ---- sending ---- */

/* Bytes waiting for d's destination: queued and in flight. */
static size_t dir_pending(const struct lb_dir *d)
{
	return pn_buf_len(&d->q) + pn_buf_len(&d->s);
}

/* Hands d's queue to the ring as one send (d must not be sending). */
static int dir_send(struct lb_conn *c, struct lb_dir *d, pn_io_id dst_io)
{
	struct pn_buf t = d->s;

	d->s = d->q;
	d->q = t;
	if (pn_io_send(conn_loop(c), dst_io, pn_buf_rptr(&d->s), pn_buf_len(&d->s)) < 0)
		return -1;
	d->sending = true;
	return 0;
}

/* Sends data on to the destination of d. Small pieces (the lines of a mail
 * dialogue) are copied and sent through the ring, so that the sends of a
 * whole batch of completions go to the kernel in the loop's one system
 * call, instead of one send() each, every one of which may wake the
 * receiver and be preempted by it on the way out. Large ones (a relayed
 * stream) are sent at once, from the receive buffer, saving the copy; what
 * the socket does not take is queued. Order is kept: nothing bypasses a
 * queue or a send in flight. Returns 0, or -1 on a send error. */
static int dir_write(struct lb_conn *c, struct lb_dir *d, pn_io_id dst_io, int dst_fd,
		     const uint8_t *data, size_t len)
{
	if (len >= RELAY_INLINE_MIN && !d->sending && pn_buf_len(&d->q) == 0) {
		ssize_t n = send(dst_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return -1;
			n = 0;
		}
		data += n;
		len -= (size_t)n;
	}
	if (len == 0)
		return 0;
	if (d->sp == SP_HANDOFF && pn_buf_room(&d->q) < len)
		d->q.max = pn_buf_len(&d->q) + len; /* what the ending receive
						     * took: bounded by the
						     * socket's receive buffer */
	if (pn_buf_append(&d->q, data, len) < 0) {
		errno = ENOBUFS; /* cannot happen: the source stops at relay_buffer */
		return -1;
	}
	return d->sending ? 0 : dir_send(c, d, dst_io);
}

/* Moves the TLS engine's ciphertext toward the client. */
static int tls_flush(struct lb_conn *c)
{
	uint8_t buf[TLS_CHUNK];

	while (c->tls != NULL && pn_tls_pending_out(c->tls) > 0) {
		size_t n = pn_tls_take_out(c->tls, buf, sizeof(buf));

		if (dir_write(c, &c->u2c, c->cio, c->cfd, buf, n) < 0)
			return -1;
	}
	return 0;
}

/* Plaintext for the client: through TLS when it is on. Returns 0 or -1. */
static int client_out(struct lb_conn *c, const uint8_t *data, size_t len)
{
	const char *err = NULL;

	if (c->tls == NULL)
		return dir_write(c, &c->u2c, c->cio, c->cfd, data, len);
	while (len > 0) {
		ssize_t n = pn_tls_write(c->tls, data, len, &err);

		if (n < 0)
			return -1;
		if (tls_flush(c) < 0)
			return -1;
		if (n == 0 && pn_tls_pending_out(c->tls) == 0)
			return -1; /* no progress possible */
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Ends the destination's stream once everything before the end went out. */
static void dir_maybe_shut(struct lb_conn *c, struct lb_dir *d, int dst_fd)
{
	if (d->eof && !d->shut && !d->sending && pn_buf_len(&d->q) == 0 && d->inpipe == 0) {
		const struct lb_dir *back = d == &c->c2u ? &c->u2c : &c->c2u;

		/* The last end of a relay: the close that follows sends the
		 * same FIN (one system call less per connection), as long as
		 * dst_fd has nothing unread, which a TCP end read from it
		 * guarantees; a TLS close_notify from the client does not. */
		if (!(c->state == CONN_RELAY && back->shut && (d == &c->c2u || c->tls == NULL)))
			shutdown(dst_fd, SHUT_WR);
		d->shut = true;
		/* A half-closed connection gets the shorter idle timeout. */
		if (c->idle_timeout_ms > LB_FIN_TIMEOUT_MS)
			c->idle_timeout_ms = LB_FIN_TIMEOUT_MS;
	}
	if (c->state == CONN_RELAY && c->c2u.shut && c->u2c.shut)
		conn_close(c, false);
}

/* The ring's send toward d's destination ended (res: bytes, or -errno). */
static void dir_sent(struct lb_conn *c, struct lb_dir *d, pn_io_id dst_io, int dst_fd,
		     ssize_t res)
{
	d->sending = false;
	pn_buf_free(&d->s); /* idle connections hold no buffer */
	if (c->state == CONN_CLOSING)
		return;
	if (res < 0) {
		/* Toward an upstream that has not answered yet (our header,
		 * the replay, an L7 login): try the next one. */
		if (d == &c->c2u && !c->answered &&
		    (c->state == CONN_RELAY || c->state == CONN_REPLAY))
			conn_upstream_failed(c, (int)-res, "send");
		else
			conn_close(c, true);
		return;
	}
	if (pn_buf_len(&d->q) > 0 && dir_send(c, d, dst_io) < 0) {
		conn_close(c, true);
		return;
	}
	conn_update_recv(c);
	if (d->sp == SP_ON) {
		splice_pump(c, d);
		return;
	}
	if (c->state == CONN_RELAY || (c->state == CONN_REFUSING && d == &c->u2c))
		dir_maybe_shut(c, d, dst_fd);
}

/* Turns receiving on or off on each side to match the queues. */
static void conn_update_recv(struct lb_conn *c)
{
	struct pn_loop *loop = conn_loop(c);
	bool want_c, want_u;

	if (c->state != CONN_RELAY)
		return;
	for (int i = 0; i < 2; i++) {
		struct lb_dir *d = i == 0 ? &c->c2u : &c->u2c;
		size_t len = dir_pending(d);

		if (!d->stopped && len >= c->relay_buffer)
			d->stopped = true;
		else if (d->stopped && len < c->relay_buffer / 2)
			d->stopped = false;
	}
	want_c = !c->c2u.eof && !c->c2u.stopped;
	want_u = !c->u2c.eof && !c->u2c.stopped;
	if (c->c2u.sp == SP_OFF && want_c != c->crecv) {
		if (want_c ? pn_io_recv(loop, c->cio) : pn_io_recv_stop(loop, c->cio)) {
			conn_close(c, true);
			return;
		}
		c->crecv = want_c;
	}
	if (c->u2c.sp == SP_OFF && want_u != c->urecv) {
		if (want_u ? pn_io_recv(loop, c->uio) : pn_io_recv_stop(loop, c->uio)) {
			conn_close(c, true);
			return;
		}
		c->urecv = want_u;
	}
}

static int client_recv_on(struct lb_conn *c)
{
	if (c->crecv)
		return 0;
	if (pn_io_recv(conn_loop(c), c->cio) < 0)
		return -1;
	c->crecv = true;
	return 0;
}

static void client_recv_off(struct lb_conn *c)
{
	if (!c->crecv)
		return;
	pn_io_recv_stop(conn_loop(c), c->cio);
	c->crecv = false;
}

/* ---- refusing ---- */

/* Says msg (may be NULL) and ends the client's side gracefully: the write
 * side is shut once msg went out (after close_notify on TLS), and we read
 * (dropping it) until the client closes, so that unread bytes do not turn
 * our close into a reset that destroys the message. */
static void conn_say_goodbye(struct lb_conn *c, const char *msg)
{
	const char *err = NULL;

	if (c->state == CONN_CLOSING)
		return;
	if (c->tls == NULL && lb_protos[c->proto].implicit_tls) {
		/* L4 on a TLS port: a plaintext line would mean nothing. */
		conn_close(c, false);
		return;
	}
	c->state = CONN_REFUSING;
	if (msg != NULL && client_out(c, (const uint8_t *)msg, strlen(msg)) < 0) {
		conn_close(c, false);
		return;
	}
	if (c->tls != NULL && !pn_tls_handshake_done(c->tls)) {
		/* The words are held until the handshake is done: shutting
		 * down now would drop them (client_tls_in finishes this). */
		c->goodbye_pending = true;
	} else {
		if (c->tls != NULL && (pn_tls_shutdown(c->tls, &err) < 0 || tls_flush(c) < 0)) {
			conn_close(c, false);
			return;
		}
		c->u2c.eof = true;
		dir_maybe_shut(c, &c->u2c, c->cfd);
	}
	if (client_recv_on(c) < 0) {
		conn_close(c, false);
		return;
	}
	conn_timer_set(c, LB_REFUSE_LINGER_MS);
}

static void conn_refuse(struct lb_conn *c, const char *msg, const char *reason)
{
	struct lb *lb = c->w->lb;
	char peer[64];

	pn_counter_inc(pn_metric_series(lb->m.refused,
					PN_LABELS(lb_protos[c->proto].name, reason)));
	atomic_fetch_add_explicit(&lb->refused_n[c->proto], 1, memory_order_relaxed);
	pn_info("event=refused proto=%s peer=%s reason=%s attempts=%u",
		lb_protos[c->proto].name, peer_text(c, peer, sizeof(peer)), reason,
		c->attempts);
	conn_say_goodbye(c, msg);
}

/* ---- closing ---- */

static void set_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void conn_close(struct lb_conn *c, bool reset)
{
	struct lb *lb = c->w->lb;
	struct pn_loop *loop = conn_loop(c);

	if (c->state == CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	heap_remove(c->w, c);
	if (reset) {
		set_reset(c->cfd);
		set_reset(c->ufd);
	}
	if (c->uio != PN_IO_NONE)
		pn_io_close(loop, c->uio);
	pn_io_close(loop, c->cio);
	c->uio = PN_IO_NONE;
	release_backend(c);
	if (c->admitted) {
		lb_limits_release(lb->limits, (const struct sockaddr *)&c->caddr, c->tracked);
		c->admitted = false;
	}
	pn_gauge_dec(lb->m.active_s);
}

static void worker_maybe_exit(struct lb_worker *w)
{
	if (w->quitting && w->nconns == 0 && w->nlisteners_open == 0)
		pn_loop_stop(w->loop);
}

static void conn_free(struct lb_conn *c)
{
	for (int i = 0; i < 2; i++) {
		struct lb_dir *d = i == 0 ? &c->c2u : &c->u2c;

		if (d->pr >= 0)
			close(d->pr);
		if (d->pw >= 0)
			close(d->pw);
	}
	pn_buf_free(&c->c2u.q);
	pn_buf_free(&c->u2c.q);
	pn_buf_free(&c->c2u.s);
	pn_buf_free(&c->u2c.s);
	while (c->retired != NULL) {
		struct lb_retired *r = c->retired;

		c->retired = r->next;
		pn_buf_free(&r->b);
		free(r);
	}
	pn_buf_free(&c->replay);
	pn_buf_free(&c->held);
	pn_tls_conn_free(&c->tls);
	lb_login_free(&c->login);
	lb_replay_free(&c->rp);
	free(c);
}

static void conn_io_closed(void *ctx)
{
	struct lb_conn *c = ctx;
	struct lb_worker *w = c->w;

	if (--c->open_ios > 0 || c->state != CONN_CLOSING)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	conn_free(c);
	w->nconns--;
	atomic_store_explicit(&w->nconns_shared, w->nconns, memory_order_relaxed);
	worker_maybe_exit(w);
}

/* ---- upstream side ---- */

/* The current upstream failed before answering: note it, try the next. */
static void conn_upstream_failed(struct lb_conn *c, int err, const char *what)
{
	struct lb *lb = c->w->lb;
	struct lb_backend *be = c->be;
	char peer[64];

	if (be != NULL) {
		pn_counter_inc(be->m_connect_failures);
		/* Out of rotation for every thread, now; the control thread
		 * turns this into a health state change. */
		atomic_store(&be->passive_down, true);
		atomic_fetch_add(&be->passive_fails, 1);
		pn_warn("event=upstream_failed proto=%s backend=%s addr=%s peer=%s what=\"%s\" "
			"error=\"%s\"", lb_protos[c->proto].name, be->name, be->addr_text,
			peer_text(c, peer, sizeof(peer)), what, strerror(err));
		if (c->attempts < LB_MAX_ATTEMPTS)
			c->tried[c->attempts++] = be;
		release_backend(c);
		pn_loop_post(lb->loop, lb_control_wake, lb);
	}
	if (c->uio != PN_IO_NONE) {
		set_reset(c->ufd);
		pn_io_close(conn_loop(c), c->uio);
		c->uio = PN_IO_NONE;
		c->ufd = -1;
	}
	lb_replay_free(&c->rp);
	if (c->no_retry || c->attempts >= LB_MAX_ATTEMPTS) {
		conn_close(c, true);
		return;
	}
	/* The new upstream gets the header and the replay; nothing queued for
	 * the old one is kept. */
	pn_buf_free(&c->c2u.q);
	if (c->c2u.sending) {
		/* The old upstream's send may still read its buffer. */
		struct lb_retired *r = malloc(sizeof(*r));

		if (r == NULL) {
			conn_close(c, true);
			return;
		}
		r->b = c->c2u.s;
		r->next = c->retired;
		c->retired = r;
		pn_buf_init(&c->c2u.s, c->c2u.q.max);
	}
	c->c2u.shut = c->c2u.sending = c->c2u.stopped = false;
	c->u2c.eof = false;
	c->urecv = false;
	client_recv_off(c);
	c->state = CONN_CONNECTING;
	conn_start_upstream(c);
}

static int proxy_header(struct lb_conn *c, uint8_t *hdr, size_t size)
{
	struct pn_proxy_header h;
	socklen_t len = sizeof(h.dst);
	const char *err = NULL;
	int n;

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	memcpy(&h.src, &c->caddr, sizeof(h.src));
	if (c->tls != NULL) {
		/* The balancer terminated TLS: tell the frontend how. */
		const char *v = pn_tls_protocol(c->tls), *ci = pn_tls_cipher(c->tls);
		const char *sni = pn_tls_server_name(c->tls);

		h.has_tls = true;
		h.tls.client = PN_PP2_CLIENT_SSL;
		h.tls.verify = 0;
		snprintf(h.tls.version, sizeof(h.tls.version), "%s", v != NULL ? v : "");
		snprintf(h.tls.cipher, sizeof(h.tls.cipher), "%s", ci != NULL ? ci : "");
		if (sni != NULL)
			snprintf(h.authority, sizeof(h.authority), "%s", sni);
	}
	if (c->w->lb->listen_fixed[c->proto])
		memcpy(&h.dst, &c->w->lb->listen_ss[c->proto], sizeof(h.dst));
	else if (getsockname(c->cfd, (struct sockaddr *)&h.dst, &len) < 0)
		h.has_addrs = false;
	if (!h.has_addrs || (n = pn_proxy_v2_encode(&h, hdr, size, &err)) < 0) {
		/* Unknown families: say LOCAL rather than lie. */
		pn_proxy_header_init(&h);
		n = pn_proxy_v2_encode(&h, hdr, size, &err);
	}
	return n;
}

static void upstream_connected(void *ctx, int res)
{
	struct lb_conn *c = ctx;
	struct pn_loop *loop = conn_loop(c);
	uint8_t hdr[1024];
	int hlen = 0;

	if (c->state != CONN_CONNECTING)
		return;
	if (res < 0) {
		conn_upstream_failed(c, -res, "connect");
		return;
	}
	pn_histogram_observe(c->be->m_connect_seconds,
			     (double)(pn_loop_now_ms(loop) - c->connect_start_ms) / 1000.0);
	if (c->proxy == LB_PROXY_V2)
		hlen = proxy_header(c, hdr, sizeof(hdr));
	if (hlen > 0 && dir_write(c, &c->c2u, c->uio, c->ufd, hdr, (size_t)hlen) < 0) {
		conn_upstream_failed(c, errno, "send");
		return;
	}
	if (c->l7) {
		/* The login goes first; the client waits for its answer. */
		c->rp = lb_replay_new(lb_protos[c->proto].family, lb_login_credentials(c->login));
		if (c->rp == NULL || pn_io_recv(loop, c->uio) < 0) {
			conn_close(c, true);
			return;
		}
		c->urecv = true;
		c->state = CONN_REPLAY;
		return;
	}
	c->state = CONN_RELAY;
	if (pn_buf_len(&c->replay) > 0 &&
	    dir_write(c, &c->c2u, c->uio, c->ufd, pn_buf_rptr(&c->replay),
		      pn_buf_len(&c->replay)) < 0) {
		conn_upstream_failed(c, errno, "send");
		return;
	}
	conn_update_recv(c);
	if (c->state == CONN_RELAY)
		dir_maybe_shut(c, &c->c2u, c->ufd);
}

/* L7: the login was answered; from here on it is a relay. */
static void l7_relay(struct lb_conn *c)
{
	struct lb *lb = c->w->lb;
	const uint8_t *rest;
	size_t len;

	if (!lb_replay_login_ok(c->rp))
		pn_counter_inc(lb->m.login_failures_s[c->proto]);
	lb_replay_rest(c->rp, &rest, &len);
	c->state = CONN_RELAY;
	if ((len > 0 && client_out(c, rest, len) < 0) ||
	    (pn_buf_len(&c->held) > 0 &&
	     dir_write(c, &c->c2u, c->uio, c->ufd, pn_buf_rptr(&c->held),
		       pn_buf_len(&c->held)) < 0)) {
		conn_close(c, true);
		return;
	}
	pn_buf_free(&c->held);
	lb_replay_free(&c->rp);
	lb_login_free(&c->login);
	/* From login to relay: the idle timeout takes over. */
	conn_timer_set(c, c->idle_timeout_ms);
	conn_update_recv(c);
}

static void l7_replay_recv(struct lb_conn *c, const uint8_t *data, size_t len)
{
	struct lb_replay_event ev;
	int k;

	lb_replay_feed(c->rp, data, len);
	while ((k = lb_replay_next(c->rp, &ev)) == 1) {
		switch (ev.type) {
		case LB_REPLAY_SEND:
			if (dir_write(c, &c->c2u, c->uio, c->ufd, ev.data, ev.len) < 0) {
				conn_upstream_failed(c, errno, "send");
				return;
			}
			break;
		case LB_REPLAY_FORWARD:
			c->answered = true;
			if (client_out(c, ev.data, ev.len) < 0) {
				conn_close(c, true);
				return;
			}
			break;
		case LB_REPLAY_DONE:
			l7_relay(c);
			return;
		case LB_REPLAY_FAIL:
			if (c->answered) {
				conn_close(c, true);
				return;
			}
			conn_upstream_failed(c, EPROTO, ev.reason);
			return;
		}
	}
}

/* ---- splice ---- */

/* Arms (or cancels) the one-shot polls the pumps of both directions wait
 * for: on the client socket POLLIN for c2u and POLLOUT for u2c, and the
 * other way round on the upstream socket. */
static void splice_polls(struct lb_conn *c)
{
	struct pn_loop *loop = conn_loop(c);
	unsigned int cm = (c->c2u.sp_wait & POLLIN) | (c->u2c.sp_wait & POLLOUT);
	unsigned int um = (c->u2c.sp_wait & POLLIN) | (c->c2u.sp_wait & POLLOUT);

	if (cm != c->cpoll) {
		if (c->cpoll != 0)
			pn_io_poll_cancel(loop, c->cio);
		c->cpoll = cm;
		if (cm != 0 && pn_io_poll(loop, c->cio, cm) < 0) {
			conn_close(c, true);
			return;
		}
	}
	if (um != c->upoll) {
		if (c->upoll != 0)
			pn_io_poll_cancel(loop, c->uio);
		c->upoll = um;
		if (um != 0 && pn_io_poll(loop, c->uio, um) < 0)
			conn_close(c, true);
	}
}

/* Moves d's bytes until one side has nothing or no room (then waits for
 * its poll), the source ended (then passes the end on) or an error
 * (resets both sides). Runs once the queue before the switch drained. */
static void splice_pump(struct lb_conn *c, struct lb_dir *d)
{
	int src = d == &c->c2u ? c->cfd : c->ufd, dst = d == &c->c2u ? c->ufd : c->cfd;

	if (c->state != CONN_RELAY || d->sp != SP_ON || d->sp_wait != 0 || d->sending ||
	    pn_buf_len(&d->q) > 0 || d->shut)
		return;
	for (;;) {
		ssize_t n;

		if (d->inpipe > 0) {
			n = splice(d->pr, NULL, dst, NULL, d->inpipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n <= 0)
				goto fail;
			d->inpipe -= (uint32_t)n;
			continue;
		}
		if (d->eof) {
			dir_maybe_shut(c, d, dst);
			return;
		}
		n = splice(src, NULL, d->pw, NULL, RELAY_RECV_BUF,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			goto fail;
		if (n == 0) {
			d->eof = true;
			continue;
		}
		d->inpipe += (uint32_t)n;
		c->last_ms = pn_loop_now_ms(conn_loop(c));
		pn_counter_add(d == &c->c2u ? c->be->m_bytes_to : c->be->m_bytes_from,
			       (uint64_t)n);
	}
	d->sp_wait = d->inpipe > 0 ? POLLOUT : POLLIN;
	splice_polls(c);
	return;
fail:
	conn_close(c, true);
}

/* A poll of the client (client) or upstream socket fired. */
static void splice_polled(struct lb_conn *c, bool client, int revents)
{
	struct lb_dir *in = client ? &c->c2u : &c->u2c, *out = client ? &c->u2c : &c->c2u;
	const unsigned int any = POLLERR | POLLHUP | POLLRDHUP;

	if (client)
		c->cpoll = 0;
	else
		c->upoll = 0;
	if (c->state != CONN_RELAY)
		return;
	if (revents < 0) {
		conn_close(c, true);
		return;
	}
	if ((in->sp_wait & POLLIN) && (revents & (POLLIN | any))) {
		in->sp_wait = 0;
		splice_pump(c, in);
	}
	if (c->state == CONN_RELAY && (out->sp_wait & POLLOUT) && (revents & (POLLOUT | any))) {
		out->sp_wait = 0;
		splice_pump(c, out);
	}
	if (c->state == CONN_RELAY)
		splice_polls(c);
}

static void client_polled(void *ctx, int revents)
{
	splice_polled(ctx, true, revents);
}

static void upstream_polled(void *ctx, int revents)
{
	splice_polled(ctx, false, revents);
}

/* d just relayed a piece of len bytes: a large one on a plain L4 relay
 * hands its receive off (the switch happens at the final on_recv). */
static void splice_maybe(struct lb_conn *c, struct lb_dir *d, size_t len)
{
	pn_io_id src = d == &c->c2u ? c->cio : c->uio;

	if (!c->splice || len < RELAY_SPLICE_MIN || d->sp != SP_OFF || c->l7 ||
	    c->tls != NULL || !c->answered || c->state != CONN_RELAY || d->eof ||
	    !(d == &c->c2u ? c->crecv : c->urecv))
		return;
	if (pn_io_recv_handoff(conn_loop(c), src) == 0)
		d->sp = SP_HANDOFF;
}

/* The handoff of d's receive completed: splice from now on. Without a pipe
 * (out of descriptors) the loop's receive simply goes on. */
static void splice_start(struct lb_conn *c, struct lb_dir *d)
{
	int p[2];

	if (d == &c->c2u)
		c->crecv = false;
	else
		c->urecv = false;
	if (c->state != CONN_RELAY)
		return;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
		conn_update_recv(c);
		return;
	}
	d->pr = p[0];
	d->pw = p[1];
	d->sp = SP_ON;
	splice_pump(c, d);
}

/* The upstream's stream ended: pass it on (close_notify first on TLS). */
static void upstream_eof(struct lb_conn *c)
{
	const char *err = NULL;

	c->u2c.eof = true;
	if (c->tls != NULL && (pn_tls_shutdown(c->tls, &err) < 0 || tls_flush(c) < 0)) {
		conn_close(c, true);
		return;
	}
	dir_maybe_shut(c, &c->u2c, c->cfd);
}

static void upstream_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct lb_conn *c = ctx;

	if (c->state != CONN_RELAY && c->state != CONN_REPLAY)
		return;
	if (len > 0) {
		c->last_ms = pn_loop_now_ms(conn_loop(c));
		pn_counter_add(c->be->m_bytes_from, (uint64_t)len);
		if (c->state == CONN_REPLAY) {
			l7_replay_recv(c, data, (size_t)len);
			return;
		}
		if (!c->answered) {
			c->answered = true;
			pn_buf_free(&c->replay);
		}
		if (client_out(c, data, (size_t)len) < 0) {
			conn_close(c, true);
			return;
		}
		splice_maybe(c, &c->u2c, (size_t)len);
		conn_update_recv(c);
		return;
	}
	c->urecv = false;
	if (c->u2c.sp == SP_HANDOFF) {
		c->u2c.sp = SP_OFF;
		if (len == -ECANCELED) {
			splice_start(c, &c->u2c);
			return;
		}
	}
	/* Closed or reset before saying anything (and not because the client
	 * left first): a dying upstream, try the next one. */
	if (!c->answered && !c->c2u.eof) {
		conn_upstream_failed(c, len == 0 ? ECONNRESET : (int)-len,
				     len == 0 ? "closed" : "recv");
		return;
	}
	if (len < 0 || c->state != CONN_RELAY) {
		conn_close(c, true);
		return;
	}
	upstream_eof(c);
}

static void upstream_sent(void *ctx, ssize_t res)
{
	struct lb_conn *c = ctx;

	dir_sent(c, &c->c2u, c->uio, c->ufd, res);
}

static const struct pn_io_handlers upstream_handlers = {
	.on_recv = upstream_recv,
	.on_connect = upstream_connected,
	.on_send = upstream_sent,
	.on_poll = upstream_polled,
	.on_close = conn_io_closed,
};

/* When the client timer is due: the connect deadline while connecting,
 * the login deadline before the login is answered, else the idle one. */
static uint64_t timer_due(const struct lb_conn *c, uint64_t now)
{
	uint64_t due;

	if (c->state == CONN_RELAY || c->state == CONN_REFUSING)
		return c->last_ms + c->idle_timeout_ms;
	due = c->l7 ? c->login_deadline_ms : c->last_ms + c->idle_timeout_ms;
	if (c->state == CONN_CONNECTING && c->connect_start_ms + c->connect_timeout_ms < due)
		due = c->connect_start_ms + c->connect_timeout_ms;
	return due > now ? due : now;
}

static void conn_start_upstream(struct lb_conn *c)
{
	struct lb *lb = c->w->lb;
	struct pn_loop *loop = conn_loop(c);
	const struct lb_snapshot *s = atomic_load_explicit(&lb->snap, memory_order_acquire);
	struct lb_backend *be;
	const char *err = NULL;
	int fd;

	be = pick_backend(c, s);
	if (be == NULL) {
		conn_refuse(c, lb_protos[c->proto].refusal_unavailable, "no_backend");
		return;
	}
	atomic_fetch_add_explicit(&be->active, 1, memory_order_relaxed);
	c->be = be;
	pn_gauge_inc(be->m_active);
	pn_counter_inc(be->m_total);
	fd = pn_socket_tcp(be->addr.ss_family, &err);
	if (fd < 0) {
		pn_error("event=socket_failed error=%s", err);
		release_backend(c);
		conn_close(c, true);
		return;
	}
	c->uio = pn_io_add(loop, fd, 0, &upstream_handlers, c);
	if (c->uio == PN_IO_NONE) {
		close(fd);
		release_backend(c);
		conn_close(c, true);
		return;
	}
	c->ufd = fd;
	c->open_ios++;
	c->connect_start_ms = pn_loop_now_ms(loop);
	/* One deadline per connection: the connect deadline now, the idle
	 * (or login) one later; an L4 connection sets it once. */
	if (conn_timer_set(c, timer_due(c, c->connect_start_ms) - c->connect_start_ms) < 0 ||
	    pn_io_connect(loop, c->uio, (const struct sockaddr *)&be->addr, be->addr_len) < 0)
		conn_upstream_failed(c, errno, "connect");
}

/* ---- client side ---- */

/* L7: the hash key of the login, by user or by domain, case-folded. */
static uint64_t route_key(const struct lb_credentials *cred, enum lb_l7_route route)
{
	const char *u = lb_credentials_route_user(cred);
	char buf[LB_LOGIN_MAX_CRED + 1];
	size_t n = 0;

	if (route == LB_ROUTE_DOMAIN) {
		const char *at = strrchr(u, '@');

		if (at != NULL)
			u = at + 1;
	}
	for (; u[n] != '\0' && n < LB_LOGIN_MAX_CRED; n++)
		buf[n] = (char)tolower((unsigned char)u[n]);
	return pn_hash64(buf, n, 0x6c372d726f757465ull /* "l7-route" */);
}

/* L7: carries out the login engine's events. */
static void l7_login_events(struct lb_conn *c)
{
	struct lb *lb = c->w->lb;
	struct lb_login_event ev;
	const struct lb_snapshot *s;
	const uint8_t *rest;
	size_t rest_len;
	const char *err = NULL;
	int k;

	while ((k = lb_login_next(c->login, &ev)) == 1) {
		switch (ev.type) {
		case LB_LOGIN_REPLY:
			if (client_out(c, ev.data, ev.len) < 0) {
				conn_close(c, true);
				return;
			}
			break;
		case LB_LOGIN_STARTTLS:
			c->tls = pn_tls_conn_new(lb->tls, NULL, &err);
			if (c->tls == NULL) {
				pn_error("event=tls_failed error=\"%s\"", err);
				conn_close(c, true);
				return;
			}
			break;
		case LB_LOGIN_AUTH:
			s = atomic_load_explicit(&lb->snap, memory_order_acquire);
			c->route_key = route_key(lb_login_credentials(c->login), s->l7_route);
			lb_login_rest(c->login, &rest, &rest_len);
			if (rest_len > 0 && pn_buf_append(&c->held, rest, rest_len) < 0) {
				conn_close(c, true);
				return;
			}
			client_recv_off(c);
			c->state = CONN_CONNECTING;
			conn_start_upstream(c);
			return;
		case LB_LOGIN_CLOSE:
			conn_say_goodbye(c, NULL);
			return;
		}
	}
}

/* Client plaintext (decrypted when TLS is on). */
static void client_plain(struct lb_conn *c, const uint8_t *data, size_t len)
{
	switch (c->state) {
	case CONN_PRELOGIN:
		if (lb_login_feed(c->login, data, len) < 0) {
			conn_close(c, false);
			return;
		}
		l7_login_events(c);
		return;
	case CONN_CONNECTING:
		if (!c->l7) {
			/* L4: bytes that arrived with a PROXY header, or a
			 * receive that was in flight when reading stopped:
			 * sent after our header. */
			if (pn_buf_append(&c->replay, data, len) < 0)
				conn_close(c, true);
			return;
		}
		/* fall through */
	case CONN_REPLAY:
		/* L7: sent after the login, before its answer; the relay
		 * passes it on. */
		if (pn_buf_append(&c->held, data, len) < 0)
			conn_close(c, true);
		return;
	case CONN_RELAY:
		if (!c->answered && !c->l7 && !c->no_retry &&
		    pn_buf_append(&c->replay, data, len) < 0) {
			c->no_retry = true;
			pn_buf_free(&c->replay);
		}
		pn_counter_add(c->be->m_bytes_to, (uint64_t)len);
		if (dir_write(c, &c->c2u, c->uio, c->ufd, data, len) < 0) {
			if (!c->answered)
				conn_upstream_failed(c, errno, "send");
			else
				conn_close(c, true);
			return;
		}
		splice_maybe(c, &c->c2u, len);
		return;
	default:
		return; /* refusing: dropped */
	}
}

/* The client's stream ended (TCP end, or TLS close_notify). */
static void client_plain_eof(struct lb_conn *c)
{
	if (c->state != CONN_RELAY) {
		conn_close(c, false);
		return;
	}
	c->c2u.eof = true;
	dir_maybe_shut(c, &c->c2u, c->ufd);
}

/* Ciphertext from the client: decrypt, hand on, send what TLS produced. */
static void client_tls_in(struct lb_conn *c, const uint8_t *data, size_t len, bool eof)
{
	struct lb *lb = c->w->lb;
	uint8_t buf[TLS_CHUNK];
	struct pn_tls_conn *tls = c->tls;
	const char *err = NULL;

	if (eof)
		pn_tls_feed_eof(tls);
	else if (pn_tls_feed(tls, data, len, &err) < 0)
		goto fail;
	for (;;) {
		ssize_t n = pn_tls_read(tls, buf, sizeof(buf), &err);

		if (!c->tls_counted && pn_tls_handshake_done(tls)) {
			c->tls_counted = true;
			pn_counter_inc(lb->m.tls_handshakes_s[c->proto]);
		}
		if (n > 0) {
			client_plain(c, buf, (size_t)n);
			if (c->state == CONN_CLOSING || c->tls != tls)
				return;
			continue;
		}
		if (n == PN_TLS_AGAIN)
			break;
		if (n == PN_TLS_CLOSED) {
			if (tls_flush(c) < 0) {
				conn_close(c, true);
				return;
			}
			client_plain_eof(c);
			return;
		}
		goto fail;
	}
	if (c->goodbye_pending && pn_tls_handshake_done(tls)) {
		c->goodbye_pending = false;
		if (pn_tls_shutdown(tls, &err) < 0)
			goto fail;
		c->u2c.eof = true;
	}
	if (tls_flush(c) < 0) {
		conn_close(c, true);
		return;
	}
	if (c->state == CONN_REFUSING)
		dir_maybe_shut(c, &c->u2c, c->cfd);
	return;
fail:
	if (c->state != CONN_REFUSING && !eof) {
		char peer[64];

		pn_info("event=tls_error proto=%s peer=%s error=\"%s\"", lb_protos[c->proto].name,
			peer_text(c, peer, sizeof(peer)), err != NULL ? err : "?");
	}
	tls_flush(c); /* the alert, if any */
	conn_close(c, false);
}

static int conn_begin(struct lb_conn *c, const struct lb_snapshot *s);

/* A PROXY header's beginning: the v2 signature (its first 4 bytes already,
 * "\r\n\r\n", which no client of ours starts with), or the v1 "PROXY ".
 * Only the first chunk is looked at: a header split before these bytes
 * passes as protocol bytes, which the frontend (behind our own header)
 * does not trust either. */
static bool looks_like_proxy(const uint8_t *data, size_t len)
{
	size_t n = len < PN_PROXY_V2_SIG_LEN ? len : PN_PROXY_V2_SIG_LEN;

	if (len >= 4 && memcmp(data, pn_proxy_v2_signature, n) == 0)
		return true;
	return len >= 6 && memcmp(data, "PROXY ", 6) == 0;
}

/* A trusted proxy's header (HAProxy's proxy-protocol.txt, v2 section 2.2,
 * v1 section 2.1): collected in held until complete, then the client
 * address it names replaces the peer's (limits, source hashing and our own
 * PROXY header use it); LOCAL or UNKNOWN keep the peer's. Bytes after it
 * are the client's. Anything else closes the connection, as the frontend
 * does with a trusted peer that sends no header. */
static void proxy_in(struct lb_conn *c, const uint8_t *data, size_t len)
{
	struct pn_proxy_header h;
	const char *err = NULL;
	char peer[64];
	uint8_t *rest = NULL;
	size_t rest_len = 0;
	int n;

	if (len == 0 || pn_buf_append(&c->held, data, len) < 0) {
		conn_close(c, false);
		return;
	}
	n = pn_proxy_decode(pn_buf_rptr(&c->held), pn_buf_len(&c->held), 0, &h, &err);
	if (n == 0)
		return;
	if (n < 0) {
		pn_warn("event=proxy_refused proto=%s peer=%s reason=\"%s\"",
			lb_protos[c->proto].name, peer_text(c, peer, sizeof(peer)), err);
		pn_counter_inc(pn_metric_series(c->w->lb->m.refused,
						PN_LABELS(lb_protos[c->proto].name, "proxy_bad")));
		conn_close(c, false);
		return;
	}
	if (h.command == PN_PROXY_CMD_PROXY && h.has_addrs &&
	    (h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6)) {
		memcpy(&c->caddr, &h.src, sizeof(c->caddr));
		c->caddr_len = h.src.ss_family == AF_INET ? sizeof(struct sockaddr_in)
							  : sizeof(struct sockaddr_in6);
	}
	rest_len = pn_buf_len(&c->held) - (size_t)n;
	if (rest_len > 0) {
		rest = malloc(rest_len);
		if (rest == NULL) {
			conn_close(c, true);
			return;
		}
		memcpy(rest, pn_buf_rptr(&c->held) + n, rest_len);
	}
	pn_buf_free(&c->held);
	pn_debug("event=proxy_accepted proto=%s client=%s", lb_protos[c->proto].name,
		 peer_text(c, peer, sizeof(peer)));
	if (!c->l7)
		client_recv_off(c); /* L4 reads the client once connected */
	c->state = CONN_CONNECTING;
	if (conn_begin(c, atomic_load_explicit(&c->w->lb->snap, memory_order_acquire)) < 0) {
		free(rest);
		conn_close(c, true);
		return;
	}
	if (rest_len > 0 && c->state != CONN_CLOSING) {
		if (c->tls != NULL)
			client_tls_in(c, rest, rest_len, false);
		else if (c->l7 || c->state == CONN_CONNECTING)
			client_plain(c, rest, rest_len);
		else if (c->state != CONN_REFUSING)
			conn_close(c, true);
	}
	free(rest);
}

static void client_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct lb_conn *c = ctx;

	if (c->state == CONN_CLOSING)
		return;
	if (len <= 0 && c->c2u.sp == SP_HANDOFF) {
		c->c2u.sp = SP_OFF;
		if (len == -ECANCELED) {
			c->crecv = false;
			splice_start(c, &c->c2u);
			return;
		}
	}
	if (len < 0) {
		c->crecv = false;
		conn_close(c, c->state == CONN_RELAY);
		return;
	}
	if (len > 0)
		c->last_ms = pn_loop_now_ms(conn_loop(c));
	else
		c->crecv = false;
	if (c->state == CONN_PROXYIN) {
		proxy_in(c, data, (size_t)len);
		return;
	}
	if (c->sniff_proxy && len > 0) {
		c->sniff_proxy = false;
		if (looks_like_proxy(data, (size_t)len)) {
			char peer[64];

			pn_warn("event=proxy_refused proto=%s peer=%s reason=\"PROXY header "
				"from a peer not in proxy_accept_from\"", lb_protos[c->proto].name,
				peer_text(c, peer, sizeof(peer)));
			pn_counter_inc(pn_metric_series(c->w->lb->m.refused,
							PN_LABELS(lb_protos[c->proto].name,
								  "proxy_untrusted")));
			conn_close(c, false);
			return;
		}
	}
	if (c->tls != NULL)
		client_tls_in(c, data, (size_t)len, len == 0);
	else if (len > 0)
		client_plain(c, data, (size_t)len);
	else
		client_plain_eof(c);
	if (c->state == CONN_RELAY)
		conn_update_recv(c);
}

static void client_sent(void *ctx, ssize_t res)
{
	struct lb_conn *c = ctx;

	dir_sent(c, &c->u2c, c->cio, c->cfd, res);
}

/* c's deadline came (worker_timer). */
static void client_timer(struct lb_conn *c)
{
	struct pn_loop *loop = conn_loop(c);
	uint64_t now = pn_loop_now_ms(loop), idle = now - c->last_ms;
	char peer[64];

	switch (c->state) {
	case CONN_CLOSING:
		return;
	case CONN_REFUSING:
		conn_close(c, false);
		return;
	case CONN_PROXYIN:
		pn_info("event=proxy_timeout proto=%s peer=%s", lb_protos[c->proto].name,
			peer_text(c, peer, sizeof(peer)));
		conn_close(c, false);
		return;
	case CONN_CONNECTING:
		if (c->uio != PN_IO_NONE && now >= c->connect_start_ms + c->connect_timeout_ms) {
			conn_upstream_failed(c, ETIMEDOUT, "connect");
			return;
		}
		/* fall through */
	case CONN_PRELOGIN:
	case CONN_REPLAY:
		if (c->l7 && now >= c->login_deadline_ms) {
			pn_info("event=login_timeout proto=%s peer=%s", lb_protos[c->proto].name,
				peer_text(c, peer, sizeof(peer)));
			conn_say_goodbye(c, lb_protos[c->proto].login_timeout);
			return;
		}
		conn_timer_set(c, timer_due(c, now) - now);
		return;
	default:
		break;
	}
	if (idle >= c->idle_timeout_ms) {
		pn_info("event=idle_timeout proto=%s peer=%s idle_ms=%llu",
			lb_protos[c->proto].name, peer_text(c, peer, sizeof(peer)),
			(unsigned long long)idle);
		conn_close(c, false);
		return;
	}
	conn_timer_set(c, c->idle_timeout_ms - idle);
}

static const struct pn_io_handlers client_handlers = {
	.on_recv = client_recv,
	.on_send = client_sent,
	.on_poll = client_polled,
	.on_close = conn_io_closed,
};

/* ---- accepting ---- */

/* L7: our greeting (through TLS on implicit-TLS ports). Returns 0 or -1. */
static int l7_start(struct lb_conn *c, const struct lb_snapshot *s)
{
	struct lb *lb = c->w->lb;
	struct lb_login_settings set = {
		.family = lb_protos[c->proto].family,
		.tls = lb_protos[c->proto].implicit_tls,
		.starttls = lb->tls != NULL,
		.require_tls = s->l7_require_tls,
		.hostname = s->hostname,
		.smtp_size = s->smtp_size,
	};
	const char *err = NULL;

	if (set.tls) {
		c->tls = pn_tls_conn_new(lb->tls, NULL, &err);
		if (c->tls == NULL) {
			pn_error("event=tls_failed error=\"%s\"", err);
			return -1;
		}
	}
	c->login = lb_login_new(&set);
	if (c->login == NULL)
		return -1;
	c->state = CONN_PRELOGIN;
	l7_login_events(c);
	if (c->state == CONN_PRELOGIN && client_recv_on(c) < 0)
		return -1;
	return 0;
}

static void listener_accept(void *ctx, int fd)
{
	struct lb_listener *l = ctx;
	struct lb_worker *w = l->w;
	struct lb *lb = w->lb;
	const struct lb_snapshot *s;
	struct lb_conn *c;

	if (fd < 0) {
		pn_warn("event=accept_failed proto=%s error=%s", lb_protos[l->proto].name,
			strerror(-fd));
		return;
	}
	if (!w->accepting) {
		close(fd);
		return;
	}
	/* (TCP_NODELAY comes from the listener: lb_worker_init.) */
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->caddr_len = sizeof(c->caddr);
	if (getpeername(fd, (struct sockaddr *)&c->caddr, &c->caddr_len) < 0) {
		free(c);
		close(fd);
		return;
	}
	c->cio = pn_io_add(w->loop, fd, 0, &client_handlers, c);
	if (c->cio == PN_IO_NONE) {
		free(c);
		close(fd);
		return;
	}
	s = atomic_load_explicit(&lb->snap, memory_order_acquire);
	c->w = w;
	c->proto = l->proto;
	c->state = CONN_CONNECTING;
	c->cfd = fd;
	c->ufd = -1;
	c->uio = PN_IO_NONE;
	c->hslot = NO_SLOT;
	c->open_ios = 1;
	c->l7 = s->l7[l->proto];
	c->proxy = (uint8_t)s->proxy;
	c->relay_buffer = s->relay_buffer;
	c->idle_timeout_ms = s->idle_timeout_ms;
	c->connect_timeout_ms = s->connect_timeout_ms;
	c->last_ms = pn_loop_now_ms(w->loop);
	c->login_deadline_ms = c->last_ms + s->login_timeout_ms;
	c->splice = s->relay_splice;
	c->c2u.pr = c->c2u.pw = c->u2c.pr = c->u2c.pw = -1;
	pn_buf_init(&c->c2u.q, s->relay_buffer + QUEUE_SLACK);
	pn_buf_init(&c->u2c.q, s->relay_buffer + QUEUE_SLACK);
	pn_buf_init(&c->c2u.s, s->relay_buffer + QUEUE_SLACK);
	pn_buf_init(&c->u2c.s, s->relay_buffer + QUEUE_SLACK);
	pn_buf_init(&c->replay, s->relay_buffer);
	pn_buf_init(&c->held, s->relay_buffer);
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	atomic_store_explicit(&w->nconns_shared, w->nconns, memory_order_relaxed);
	pn_counter_inc(lb->m.accepted_s[l->proto]);
	pn_gauge_inc(lb->m.active_s);
	if (lb->proxy_accept[l->proto].count > 0) {
		if (pn_cidr_list_match(&lb->proxy_accept[l->proto],
				       (const struct sockaddr *)&c->caddr)) {
			/* The header first; limits and all the rest apply to
			 * the client it names. */
			c->state = CONN_PROXYIN;
			if (client_recv_on(c) < 0 ||
			    conn_timer_set(c, LB_PROXYIN_TIMEOUT_MS) < 0)
				conn_close(c, true);
			return;
		}
		c->sniff_proxy = true;
	}
	if (conn_begin(c, s) < 0)
		conn_close(c, true);
}

/* Limits, then the L7 greeting or the L4 upstream. Returns 0 (the
 * connection goes on, or was refused), or -1: close it. */
static int conn_begin(struct lb_conn *c, const struct lb_snapshot *s)
{
	struct lb *lb = c->w->lb;
	struct pn_loop *loop = conn_loop(c);
	enum lb_limit_verdict v;

	c->last_ms = pn_loop_now_ms(loop);
	c->login_deadline_ms = c->last_ms + s->login_timeout_ms;
	if (c->l7)
		conn_timer_set(c, s->login_timeout_ms);
	/* (L4: conn_start_upstream sets the timer, to the connect deadline.) */

	v = lb_limits_admit(lb->limits, (const struct sockaddr *)&c->caddr,
			    pn_loop_now_ms(loop), &c->tracked);
	if (v == LB_LIMIT_OK)
		c->admitted = true;
	/* (lb_init refuses L7 on implicit-TLS ports without a certificate.) */
	if (c->l7 && ((lb->tls == NULL && lb_protos[c->proto].implicit_tls) ||
		      l7_start(c, s) < 0))
		return -1;
	if (v != LB_LIMIT_OK) {
		/* In L7 the greeting went first; the refusal follows it. */
		conn_refuse(c, lb_protos[c->proto].refusal_limit,
			    v == LB_LIMIT_TOTAL ? "limit_total" :
			    v == LB_LIMIT_SOURCE ? "limit_source" : "limit_rate");
		return 0;
	}
	if (!c->l7)
		conn_start_upstream(c);
	return 0;
}

static void listener_closed(void *ctx)
{
	struct lb_listener *l = ctx;
	struct lb_worker *w = l->w;

	w->nlisteners_open--;
	worker_maybe_exit(w);
}

static const struct pn_io_handlers listener_handlers = {
	.on_accept = listener_accept,
	.on_close = listener_closed,
};

/* ---- the worker ---- */

int lb_worker_init(struct lb_worker *w, struct lb *lb, unsigned int idx,
		   const int *listen_fds, const char **error_r)
{
	memset(w, 0, sizeof(*w));
	w->lb = lb;
	w->idx = idx;
	/* Larger receive buffers than the default: fewer completions and
	 * sends per megabyte relayed. The ring is shared by the thread's
	 * connections, so this costs nothing per idle connection. */
	/* Completions deferred to the loop's wait: the relay makes most of
	 * its socket calls directly, and each would otherwise run the ring's
	 * pending work on its way out. */
	w->loop = pn_loop_new(&(struct pn_loop_settings){ .recv_buf_size = RELAY_RECV_BUF,
							 .recv_buf_count = RELAY_RECV_BUFS,
							 .flags = PN_LOOP_DEFER_TASKRUN },
			      error_r);
	if (w->loop == NULL)
		return -1;
	w->tio = pn_io_add(w->loop, -1, 0, &worker_timer_handlers, w);
	if (w->tio == PN_IO_NONE) {
		*error_r = "cannot add the relay timer";
		return -1;
	}
	w->accepting = true;
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		struct lb_listener *l = &w->listeners[p];

		l->w = w;
		l->proto = (enum lb_proto)p;
		l->io = PN_IO_NONE;
		if (listen_fds[p] < 0)
			continue;
		/* Relayed bytes go out at once, as upstream (pn_socket_tcp).
		 * Accepted sockets inherit it: no setsockopt per connection. */
		if (pn_socket_nodelay(listen_fds[p]) < 0) {
			close(listen_fds[p]);
			*error_r = "setsockopt(TCP_NODELAY) on a listener failed";
			return -1;
		}
		l->io = pn_io_add(w->loop, listen_fds[p], 0, &listener_handlers, l);
		if (l->io == PN_IO_NONE) {
			close(listen_fds[p]);
			*error_r = "cannot register a listener";
			return -1;
		}
		w->nlisteners_open++;
		if (pn_io_accept(w->loop, l->io) < 0) {
			*error_r = "cannot start accepting";
			return -1;
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct lb_worker *w = arg;

	if (pn_loop_run(w->loop) < 0)
		pn_error("event=loop_failed worker=%u", w->idx);
	atomic_store(&w->exited, true);
	/* Wake the control thread so it notices at once. */
	pn_loop_post(w->lb->loop, lb_control_wake, w->lb);
	return NULL;
}

int lb_worker_start(struct lb_worker *w)
{
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

void lb_worker_free(struct lb_worker *w)
{
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		lb_picker_free(&w->pickers[p]);
	/* Connections still open (a loop failure) are dropped with the loop. */
	while (w->conns != NULL) {
		struct lb_conn *c = w->conns;

		w->conns = c->next;
		if (c->state != CONN_CLOSING) {
			release_backend(c);
			if (c->admitted)
				lb_limits_release(w->lb->limits,
						  (const struct sockaddr *)&c->caddr, c->tracked);
		}
		conn_free(c);
	}
	if (w->loop != NULL)
		pn_loop_free(&w->loop);
	free(w->theap);
	w->theap = NULL;
	w->theap_n = w->theap_cap = 0;
}

static void do_stop_accepting(void *ctx)
{
	struct lb_worker *w = ctx;

	if (!w->accepting)
		return;
	w->accepting = false;
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		if (w->listeners[p].io != PN_IO_NONE) {
			pn_io_close(w->loop, w->listeners[p].io);
			w->listeners[p].io = PN_IO_NONE;
		}
	}
}

static void do_quit(void *ctx)
{
	struct lb_worker *w = ctx;

	do_stop_accepting(w);
	w->quitting = true;
	for (struct lb_conn *c = w->conns; c != NULL; c = c->next)
		conn_close(c, false);
	worker_maybe_exit(w);
}

static void do_epoch(void *ctx)
{
	struct lb_worker *w = ctx;

	atomic_store(&w->seen_epoch, atomic_load(&w->lb->epoch));
}

void lb_worker_post_stop_accepting(struct lb_worker *w)
{
	if (pn_loop_post(w->loop, do_stop_accepting, w) < 0)
		pn_error("event=post_failed worker=%u what=stop_accepting", w->idx);
}

void lb_worker_post_quit(struct lb_worker *w)
{
	if (pn_loop_post(w->loop, do_quit, w) < 0)
		pn_error("event=post_failed worker=%u what=quit", w->idx);
}

void lb_worker_post_epoch(struct lb_worker *w)
{
	if (pn_loop_post(w->loop, do_epoch, w) < 0)
		pn_error("event=post_failed worker=%u what=epoch", w->idx);
}
