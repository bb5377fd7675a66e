/* Unit tests for postern/loop.h over loopback: accept/recv/send echo, 500
 * concurrent connections, an 8 MiB transfer through small socket buffers,
 * timers, close with operations pending, poll on a pipe, posting and
 * stopping from another thread, end of stream and reset, receive stop and
 * buffer-ring exhaustion; plus pn_parse_hostport() and pn_format_addr().
 */
#include "postern/buf.h"
#include "postern/loop.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Runs the loop until cond holds or ms passed. */
#define RUN_UNTIL(loop, cond, ms)                                             \
	do {                                                                  \
		uint64_t end_ = now_ms() + (ms);                              \
		while (!(cond) && now_ms() < end_)                            \
			pn_loop_run_once((loop), 10);                         \
	} while (0)

/* Runs the loop for about ms, whatever happens. */
static void run_for(struct pn_loop *loop, unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		pn_loop_run_once(loop, 5);
}

/* Every test runs twice: with the default ring, then with
 * PN_LOOP_DEFER_TASKRUN (see main). */
static unsigned int loop_flags;

static struct pn_loop *new_loop(unsigned int buf_size, unsigned int buf_count)
{
	struct pn_loop_settings set = { 0, 0, buf_size, buf_count, loop_flags };
	const char *error = NULL;
	struct pn_loop *loop = pn_loop_new(&set, &error);

	if (loop == NULL)
		fprintf(stderr, "pn_loop_new: %s\n", error);
	return loop;
}

static uint8_t pattern(size_t i, unsigned int seed)
{
	return (uint8_t)((i * 131u + seed * 17u + (i >> 8)) & 0xff);
}

/* A connected TCP pair over 127.0.0.1, both ends non-blocking. */
static int tcp_pair(int *a_r, int *b_r)
{
	const char *error;
	int lfd = pn_listen_tcp("127.0.0.1", 0, 8, &error);
	struct sockaddr_in sin;
	struct pollfd pfd;
	int a, b;

	if (lfd < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(pn_socket_port(lfd));
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a < 0 || connect(a, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(lfd);
		return -1;
	}
	pfd.fd = lfd;
	pfd.events = POLLIN;
	poll(&pfd, 1, 1000);
	b = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	close(lfd);
	if (b < 0) {
		close(a);
		return -1;
	}
	fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
	*a_r = a;
	*b_r = b;
	return 0;
}

static void addr_of_listener(int lfd, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(pn_socket_port(lfd));
}

/* ---- echo server on the loop ---- */

struct echo_srv {
	struct pn_loop *loop;
	pn_io_id lid;
	int accepted, closed, accept_errors;
	int sndbuf;		/* SO_SNDBUF for accepted sockets, 0 = default */
	const uint8_t *push;	/* if set: send this instead of echoing */
	size_t push_len;
	ssize_t push_res;
};

struct echo_conn {
	struct echo_srv *srv;
	pn_io_id id;
	struct pn_buf q, s;	/* queued, being sent */
	bool sending, eof;
};

static void echo_flush(struct echo_conn *c)
{
	struct pn_buf t = c->s;

	c->s = c->q;
	c->q = t;
	c->sending = true;
	if (pn_io_send(c->srv->loop, c->id, pn_buf_rptr(&c->s), pn_buf_len(&c->s)) < 0) {
		c->sending = false;
		pn_io_close(c->srv->loop, c->id);
	}
}

static void echo_on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct echo_conn *c = ctx;

	if (len <= 0) {
		c->eof = true;
		if (!c->sending)
			pn_io_close(c->srv->loop, c->id);
		return;
	}
	if (pn_buf_append(&c->q, data, (size_t)len) < 0) {
		pn_io_close(c->srv->loop, c->id);
		return;
	}
	if (!c->sending)
		echo_flush(c);
}

static void echo_on_send(void *ctx, ssize_t res)
{
	struct echo_conn *c = ctx;

	c->sending = false;
	if (c->srv->push != NULL) {
		c->srv->push_res = res;
		pn_io_close(c->srv->loop, c->id);
		return;
	}
	pn_buf_reset(&c->s);
	if (res < 0)
		pn_io_close(c->srv->loop, c->id);
	else if (pn_buf_len(&c->q) > 0)
		echo_flush(c);
	else if (c->eof)
		pn_io_close(c->srv->loop, c->id);
}

static void echo_on_close(void *ctx)
{
	struct echo_conn *c = ctx;

	c->srv->closed++;
	pn_buf_free(&c->q);
	pn_buf_free(&c->s);
	free(c);
}

static const struct pn_io_handlers echo_conn_h = {
	.on_recv = echo_on_recv,
	.on_send = echo_on_send,
	.on_close = echo_on_close,
};

static void echo_on_accept(void *ctx, int fd)
{
	struct echo_srv *srv = ctx;
	struct echo_conn *c;

	if (fd < 0) {
		srv->accept_errors++;
		return;
	}
	srv->accepted++;
	if (srv->sndbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &srv->sndbuf, sizeof(srv->sndbuf));
	c = calloc(1, sizeof(*c));
	c->srv = srv;
	pn_buf_init(&c->q, 1 << 20);
	pn_buf_init(&c->s, 1 << 20);
	c->id = pn_io_add(srv->loop, fd, 0, &echo_conn_h, c);
	if (c->id == PN_IO_NONE) {
		close(fd);
		free(c);
		return;
	}
	if (srv->push != NULL) {
		c->sending = true;
		pn_io_send(srv->loop, c->id, srv->push, srv->push_len);
	} else {
		pn_io_recv(srv->loop, c->id);
	}
}

static const struct pn_io_handlers echo_srv_h = { .on_accept = echo_on_accept };

static int echo_start(struct echo_srv *srv, struct pn_loop *loop, struct sockaddr_in *sin)
{
	const char *error;
	int lfd = pn_listen_tcp("127.0.0.1", 0, 1024, &error);

	if (lfd < 0)
		return -1;
	srv->loop = loop;
	addr_of_listener(lfd, sin);
	srv->lid = pn_io_add(loop, lfd, 0, &echo_srv_h, srv);
	if (srv->lid == PN_IO_NONE || pn_io_accept(loop, srv->lid) < 0)
		return -1;
	return 0;
}

/* ---- client on the loop ---- */

struct client {
	struct pn_loop *loop;
	pn_io_id id;
	unsigned int seed;
	uint8_t *out;
	size_t out_len, got;
	int connect_res, recv_err, send_res;
	bool mismatch, connected, closed;
	bool recv_only;		/* expects out but does not send it */
	int *closed_count;
};

static void client_on_connect(void *ctx, int res)
{
	struct client *c = ctx;

	c->connect_res = res;
	if (res < 0) {
		pn_io_close(c->loop, c->id);
		return;
	}
	c->connected = true;
	pn_io_recv(c->loop, c->id);
	if (c->out_len > 0 && !c->recv_only)
		pn_io_send(c->loop, c->id, c->out, c->out_len);
}

static void client_on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct client *c = ctx;

	if (len <= 0) {
		c->recv_err = len == 0 ? -1 : (int)len;
		pn_io_close(c->loop, c->id);
		return;
	}
	for (ssize_t i = 0; i < len; i++) {
		if (c->got + (size_t)i >= c->out_len ||
		    data[i] != pattern(c->got + (size_t)i, c->seed)) {
			c->mismatch = true;
			break;
		}
	}
	c->got += (size_t)len;
	if (c->got >= c->out_len)
		pn_io_close(c->loop, c->id);
}

static void client_on_send(void *ctx, ssize_t res)
{
	struct client *c = ctx;

	c->send_res = (int)res;
}

static void client_on_close(void *ctx)
{
	struct client *c = ctx;

	c->closed = true;
	if (c->closed_count != NULL)
		(*c->closed_count)++;
}

static const struct pn_io_handlers client_h = {
	.on_recv = client_on_recv,
	.on_send = client_on_send,
	.on_connect = client_on_connect,
	.on_close = client_on_close,
};

static int client_start(struct client *c, struct pn_loop *loop,
			const struct sockaddr_in *sin, size_t len, unsigned int seed,
			int rcvbuf)
{
	const char *error;
	int fd = pn_socket_tcp(AF_INET, &error);

	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->seed = seed;
	c->connect_res = 1;
	c->out_len = len;
	c->out = malloc(len ? len : 1);
	for (size_t i = 0; i < len; i++)
		c->out[i] = pattern(i, seed);
	if (fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	c->id = pn_io_add(loop, fd, 0, &client_h, c);
	if (c->id == PN_IO_NONE)
		return -1;
	return pn_io_connect(loop, c->id, (const struct sockaddr *)sin, sizeof(*sin));
}

/* ---- tests ---- */

PN_TEST(test_hostport)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char buf[64];

	CHECK_INT(pn_parse_hostport("127.0.0.1:143", &ss, &len), 0);
	CHECK_INT(ss.ss_family, AF_INET);
	CHECK_INT(len, sizeof(struct sockaddr_in));
	CHECK_STR(pn_format_addr((struct sockaddr *)&ss, buf, sizeof(buf)), "127.0.0.1:143");

	CHECK_INT(pn_parse_hostport("[::1]:993", &ss, &len), 0);
	CHECK_INT(ss.ss_family, AF_INET6);
	CHECK_INT(len, sizeof(struct sockaddr_in6));
	CHECK_STR(pn_format_addr((struct sockaddr *)&ss, buf, sizeof(buf)), "[::1]:993");

	CHECK_INT(pn_parse_hostport("[2001:db8::25]:65535", &ss, &len), 0);
	CHECK_STR(pn_format_addr((struct sockaddr *)&ss, buf, sizeof(buf)),
		  "[2001:db8::25]:65535");
	CHECK_INT(pn_parse_hostport("[fe80::1%7]:25", &ss, &len), 0);
	CHECK_INT(((struct sockaddr_in6 *)&ss)->sin6_scope_id, 7);
	CHECK_STR(pn_format_addr((struct sockaddr *)&ss, buf, sizeof(buf)), "[fe80::1%7]:25");

	CHECK_INT(pn_parse_hostport(":0", &ss, &len), 0);
	CHECK_STR(pn_format_addr((struct sockaddr *)&ss, buf, sizeof(buf)), "0.0.0.0:0");

	/* refused */
	CHECK_INT(pn_parse_hostport("127.0.0.1", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("127.0.0.1:", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("127.0.0.1:65536", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("127.0.0.1:-1", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("127.0.0.1:25x", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("127.0.0.256:25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("::1:25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("[::1]25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("[::1:25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("[127.0.0.1]:25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("[]:25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("mail.example.com:25", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("", &ss, &len), -1);
	CHECK_INT(pn_parse_hostport("[fe80::1%]:25", &ss, &len), -1);

	/* truncation stays NUL-terminated */
	pn_parse_hostport("[2001:db8::25]:65535", &ss, &len);
	pn_format_addr((struct sockaddr *)&ss, buf, 6);
	CHECK_STR(buf, "[2001");
}

PN_TEST(test_listen_helpers)
{
	const char *error = NULL;
	int fd = pn_listen_tcp("::1", 0, 16, &error);

	CHECK(fd >= 0);
	CHECK(pn_socket_port(fd) != 0);
	close(fd);
	fd = pn_listen_tcp("[::1]", 0, 16, &error);
	CHECK(fd >= 0);
	close(fd);
	fd = pn_listen_tcp(NULL, 0, 16, &error);
	CHECK(fd >= 0);
	CHECK(pn_socket_port(fd) != 0);
	close(fd);
	CHECK_INT(pn_listen_tcp("localhost", 0, 16, &error), -1);
	CHECK(pn_socket_tcp(AF_UNIX, &error) < 0);
}

PN_TEST(test_echo_one)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct echo_srv srv = { 0 };
	struct sockaddr_in sin;
	struct client c;
	int closed = 0;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	CHECK_INT(echo_start(&srv, loop, &sin), 0);
	CHECK_INT(client_start(&c, loop, &sin, 11, 1, 0), 0);
	c.closed_count = &closed;
	RUN_UNTIL(loop, c.closed && srv.closed == 1, 2000);
	CHECK_INT(c.connect_res, 0);
	CHECK_INT(c.send_res, 11);
	CHECK_INT(c.got, 11);
	CHECK(!c.mismatch);
	CHECK_INT(closed, 1);
	CHECK_INT(srv.accepted, 1);
	CHECK_INT(srv.closed, 1); /* the server saw end of stream and closed */
	CHECK_INT(pn_loop_io_count(loop), 1);
	CHECK_INT(pn_io_close(loop, srv.lid), 0);
	CHECK_INT(pn_io_close(loop, srv.lid), -1);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);
	free(c.out);
	pn_loop_free(&loop);
	CHECK(loop == NULL);
}

#define NCONN 500

PN_TEST(test_echo_500)
{
	/* Few buffers for 500 connections: the ring runs dry now and then. */
	struct pn_loop *loop = new_loop(4096, 64);
	struct echo_srv srv = { 0 };
	struct sockaddr_in sin;
	static struct client cs[NCONN];
	struct pn_loop_stats st;
	int closed = 0, ok = 0, started = 0;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	CHECK_INT(echo_start(&srv, loop, &sin), 0);
	for (int i = 0; i < NCONN; i++) {
		if (client_start(&cs[i], loop, &sin, 2000 + (size_t)(i * 37) % 6000,
				 (unsigned int)i, 0) == 0)
			started++;
		cs[i].closed_count = &closed;
	}
	CHECK_INT(started, NCONN);
	RUN_UNTIL(loop, closed == NCONN && srv.closed == NCONN, 4000);
	for (int i = 0; i < NCONN; i++) {
		if (cs[i].connect_res == 0 && cs[i].got == cs[i].out_len &&
		    !cs[i].mismatch && cs[i].send_res == (int)cs[i].out_len)
			ok++;
		free(cs[i].out);
	}
	CHECK_INT(ok, NCONN);
	CHECK_INT(srv.accepted, NCONN);
	CHECK_INT(srv.closed, NCONN);
	CHECK_INT(srv.accept_errors, 0);
	pn_loop_get_stats(loop, &st);
	CHECK(st.completions > 3 * NCONN);
	CHECK_INT(pn_loop_io_count(loop), 1);
	pn_loop_free(&loop);
}

PN_TEST(test_large_transfer)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct echo_srv srv = { 0 };
	struct sockaddr_in sin;
	struct client c;
	struct pn_loop_stats st;
	const size_t len = 8u << 20;
	uint8_t *data = malloc(len);

	if (loop == NULL) {
		CHECK(0);
		free(data);
		return;
	}
	for (size_t i = 0; i < len; i++)
		data[i] = pattern(i, 99);
	srv.sndbuf = 4096;
	srv.push = data;
	srv.push_len = len;
	srv.push_res = 1;
	CHECK_INT(echo_start(&srv, loop, &sin), 0);
	/* The client only receives; it checks the pattern of the push. */
	CHECK_INT(client_start(&c, loop, &sin, len, 99, 4096), 0);
	c.recv_only = true;
	RUN_UNTIL(loop, c.closed && srv.closed == 1, 4000);
	CHECK_INT(c.got, len);
	CHECK(!c.mismatch);
	CHECK_INT(srv.push_res, (ssize_t)len);
	pn_loop_get_stats(loop, &st);
	CHECK(st.short_sends > 0);
	free(c.out);
	free(data);
	pn_loop_free(&loop);
}

/* ---- timers ---- */

struct timer_ctx {
	struct pn_loop *loop;
	pn_io_id id;
	int fired;
	uint64_t fired_at;
	int repeat;		/* re-arm from the callback this many times */
	int closed;
};

static void t_on_timer(void *ctx)
{
	struct timer_ctx *t = ctx;

	t->fired++;
	t->fired_at = now_ms();
	if (t->repeat > 0) {
		t->repeat--;
		pn_io_timer_set(t->loop, t->id, 5);
	}
}

static void t_on_close(void *ctx)
{
	struct timer_ctx *t = ctx;

	t->closed++;
}

static const struct pn_io_handlers timer_h = { .on_timer = t_on_timer,
					       .on_close = t_on_close };

PN_TEST(test_timer)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct timer_ctx t = { 0 };
	uint64_t start;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	t.loop = loop;
	t.id = pn_io_add(loop, -1, 0, &timer_h, &t);
	CHECK(t.id != PN_IO_NONE);

	/* fires once, not earlier than asked */
	start = now_ms();
	CHECK_INT(pn_io_timer_set(loop, t.id, 30), 0);
	RUN_UNTIL(loop, t.fired > 0, 1000);
	CHECK_INT(t.fired, 1);
	CHECK(t.fired_at >= start + 30);
	run_for(loop, 40);
	CHECK_INT(t.fired, 1);

	/* replaced by an earlier deadline: fires once, at the earlier one */
	t.fired = 0;
	start = now_ms();
	CHECK_INT(pn_io_timer_set(loop, t.id, 1000), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_timer_set(loop, t.id, 20), 0);
	RUN_UNTIL(loop, t.fired > 0, 2000);
	CHECK_INT(t.fired, 1);
	CHECK(t.fired_at >= start + 20 && t.fired_at < start + 500);
	run_for(loop, 30);
	CHECK_INT(t.fired, 1);

	/* replaced by a later deadline: does not fire at the first one */
	t.fired = 0;
	start = now_ms();
	CHECK_INT(pn_io_timer_set(loop, t.id, 10), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_timer_set(loop, t.id, 80), 0);
	RUN_UNTIL(loop, t.fired > 0, 2000);
	CHECK_INT(t.fired, 1);
	CHECK(t.fired_at >= start + 80);

	/* cancelled: never fires; set again after cancel: fires */
	t.fired = 0;
	CHECK_INT(pn_io_timer_set(loop, t.id, 10), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_timer_cancel(loop, t.id), 0);
	run_for(loop, 40);
	CHECK_INT(t.fired, 0);
	CHECK_INT(pn_io_timer_cancel(loop, t.id), 0);
	CHECK_INT(pn_io_timer_set(loop, t.id, 10), 0);
	CHECK_INT(pn_io_timer_cancel(loop, t.id), 0);
	CHECK_INT(pn_io_timer_set(loop, t.id, 15), 0);
	RUN_UNTIL(loop, t.fired > 0, 1000);
	CHECK_INT(t.fired, 1);

	/* re-armed from its own callback */
	t.fired = 0;
	t.repeat = 3;
	CHECK_INT(pn_io_timer_set(loop, t.id, 0), 0);
	RUN_UNTIL(loop, t.fired == 4, 1000);
	CHECK_INT(t.fired, 4);

	/* a pending timer at close: no on_timer, on_close once */
	t.fired = 0;
	CHECK_INT(pn_io_timer_set(loop, t.id, 10), 0);
	CHECK_INT(pn_io_close(loop, t.id), 0);
	CHECK_INT(t.closed, 0); /* never from inside pn_io_close() */
	CHECK_INT(pn_io_timer_set(loop, t.id, 10), -1);
	CHECK_INT(errno, EBADF);
	run_for(loop, 40);
	CHECK_INT(t.fired, 0);
	CHECK_INT(t.closed, 1);
	CHECK_INT(pn_loop_io_count(loop), 0);
	pn_loop_free(&loop);
}

/* ---- close with operations pending ---- */

struct watch {
	struct pn_loop *loop;
	pn_io_id id;
	int recvs, polls, timers, sends, closes, eofs;
	int close_in_recv;	/* close own io from on_recv */
	size_t bytes;
	int last_err;
};

static void w_on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct watch *w = ctx;

	if (len > 0) {
		w->recvs++;
		w->bytes += (size_t)len;
	} else if (len == 0) {
		w->eofs++;
	} else {
		w->last_err = (int)len;
	}
	if (w->close_in_recv) {
		CHECK_INT(pn_io_close(w->loop, w->id), 0);
		/* the io is closing: everything is refused now */
		CHECK_INT(pn_io_recv(w->loop, w->id), -1);
		CHECK_INT(pn_io_close(w->loop, w->id), -1);
	}
}

static void w_on_poll(void *ctx, int revents)
{
	struct watch *w = ctx;

	w->polls++;
	w->last_err = revents;
}

static void w_on_timer(void *ctx)
{
	struct watch *w = ctx;

	w->timers++;
}

static void w_on_send(void *ctx, ssize_t res)
{
	struct watch *w = ctx;

	w->sends++;
	w->last_err = (int)res;
}

static void w_on_close(void *ctx)
{
	struct watch *w = ctx;

	w->closes++;
}

static const struct pn_io_handlers watch_h = {
	.on_recv = w_on_recv,
	.on_send = w_on_send,
	.on_poll = w_on_poll,
	.on_timer = w_on_timer,
	.on_close = w_on_close,
};

PN_TEST(test_close_pending)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct watch w = { 0 };
	int a, b;

	if (loop == NULL || tcp_pair(&a, &b) < 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	w.loop = loop;
	w.id = pn_io_add(loop, b, 0, &watch_h, &w);
	CHECK_INT(pn_io_recv(loop, w.id), 0);
	CHECK_INT(pn_io_recv(loop, w.id), -1);
	CHECK_INT(errno, EBUSY);
	CHECK_INT(pn_io_timer_set(loop, w.id, 20), 0);
	CHECK_INT(pn_io_poll(loop, w.id, POLLPRI), 0);
	CHECK_INT(pn_io_poll(loop, w.id, POLLPRI), -1);
	CHECK_INT(errno, EBUSY);
	pn_loop_run_once(loop, 0); /* everything is in the kernel now */
	CHECK_INT(pn_io_close(loop, w.id), 0);
	CHECK_INT(w.closes, 0);
	/* data, a timer that would have fired: nothing reaches the owner */
	CHECK_INT(write(a, "late", 4), 4);
	run_for(loop, 50);
	CHECK_INT(w.closes, 1);
	CHECK_INT(w.recvs + w.polls + w.timers, 0);
	CHECK_INT(pn_loop_io_count(loop), 0);
	/* the fd was closed by the loop: the peer sees end of stream, or a
	 * reset since "late" was never read */
	{
		char c;
		struct pollfd pfd = { .fd = a, .events = POLLIN };
		ssize_t r;

		poll(&pfd, 1, 1000);
		r = read(a, &c, 1);
		CHECK(r == 0 || (r < 0 && errno == ECONNRESET));
	}
	close(a);

	/* an io closed from its own on_recv while more data is queued */
	memset(&w, 0, sizeof(w));
	w.loop = loop;
	w.close_in_recv = 1;
	CHECK_INT(tcp_pair(&a, &b), 0);
	for (int i = 0; i < 50; i++)
		CHECK_INT(write(a, "0123456789", 10), 10);
	w.id = pn_io_add(loop, b, 0, &watch_h, &w);
	CHECK_INT(pn_io_recv(loop, w.id), 0);
	RUN_UNTIL(loop, w.closes > 0, 1000);
	run_for(loop, 20);
	CHECK_INT(w.recvs, 1);
	CHECK_INT(w.closes, 1);
	close(a);

	/* PN_IO_NO_CLOSE leaves the fd open */
	memset(&w, 0, sizeof(w));
	w.loop = loop;
	CHECK_INT(tcp_pair(&a, &b), 0);
	w.id = pn_io_add(loop, b, PN_IO_NO_CLOSE, &watch_h, &w);
	CHECK_INT(pn_io_recv(loop, w.id), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_close(loop, w.id), 0);
	RUN_UNTIL(loop, w.closes > 0, 1000);
	CHECK_INT(w.closes, 1);
	CHECK(fcntl(b, F_GETFD) >= 0);
	CHECK_INT(write(b, "x", 1), 1);
	close(a);
	close(b);

	/* a stale id is refused even after its slot was reused */
	{
		pn_io_id old = w.id, fresh;

		fresh = pn_io_add(loop, -1, 0, &watch_h, &w);
		CHECK(fresh != PN_IO_NONE && fresh != old);
		CHECK_INT(pn_io_timer_set(loop, old, 1), -1);
		CHECK_INT(errno, EBADF);
		CHECK_INT(pn_io_recv(loop, fresh), -1); /* no fd */
		CHECK_INT(errno, EBADF);
		CHECK_INT(pn_io_close(loop, fresh), 0);
	}
	pn_loop_free(&loop);
}

PN_TEST(test_table_full)
{
	struct pn_loop_settings set = { 8, 3, 1024, 4, loop_flags };
	const char *error;
	struct pn_loop *loop = pn_loop_new(&set, &error);
	struct watch w = { 0 };
	pn_io_id ids[3];

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	for (int i = 0; i < 3; i++)
		ids[i] = pn_io_add(loop, -1, 0, &watch_h, &w);
	CHECK(ids[2] != PN_IO_NONE);
	CHECK(pn_io_add(loop, -1, 0, &watch_h, &w) == PN_IO_NONE);
	CHECK_INT(errno, ENOMEM);
	pn_io_close(loop, ids[1]);
	RUN_UNTIL(loop, w.closes == 1, 1000);
	CHECK(pn_io_add(loop, -1, 0, &watch_h, &w) != PN_IO_NONE);
	/* free with ios still open: no on_close, no leak */
	pn_loop_free(&loop);
	CHECK_INT(w.closes, 1);

	set.recv_buf_count = 3;
	CHECK(pn_loop_new(&set, &error) == NULL);
}

/* ---- poll ---- */

PN_TEST(test_poll_pipe)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct watch w = { 0 };
	int p[2];
	char c;

	if (loop == NULL || pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	w.loop = loop;
	w.id = pn_io_add(loop, p[0], 0, &watch_h, &w);
	CHECK_INT(pn_io_poll(loop, w.id, POLLIN), 0);
	run_for(loop, 20);
	CHECK_INT(w.polls, 0);
	CHECK_INT(write(p[1], "a", 1), 1);
	RUN_UNTIL(loop, w.polls > 0, 1000);
	CHECK_INT(w.polls, 1);
	CHECK(w.last_err & POLLIN);
	/* one-shot: no second call without re-arming */
	run_for(loop, 20);
	CHECK_INT(w.polls, 1);
	CHECK_INT(read(p[0], &c, 1), 1);

	/* cancelled: no call even when the pipe becomes readable */
	CHECK_INT(pn_io_poll(loop, w.id, POLLIN), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_poll_cancel(loop, w.id), 0);
	CHECK_INT(write(p[1], "b", 1), 1);
	run_for(loop, 30);
	CHECK_INT(w.polls, 1);

	/* cancel and poll again at once (the adapters' interest change) */
	CHECK_INT(read(p[0], &c, 1), 1);
	CHECK_INT(pn_io_poll(loop, w.id, POLLIN), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_poll_cancel(loop, w.id), 0);
	CHECK_INT(pn_io_poll(loop, w.id, POLLOUT | POLLIN), 0);
	run_for(loop, 20);
	CHECK_INT(w.polls, 1);
	CHECK_INT(write(p[1], "c", 1), 1);
	RUN_UNTIL(loop, w.polls > 1, 1000);
	CHECK_INT(w.polls, 2);
	CHECK(w.last_err & POLLIN);

	/* the write end: POLLOUT at once */
	{
		struct watch w2 = { 0 };
		pn_io_id id2 = pn_io_add(loop, p[1], 0, &watch_h, &w2);

		CHECK_INT(pn_io_poll(loop, id2, POLLOUT), 0);
		RUN_UNTIL(loop, w2.polls > 0, 1000);
		CHECK(w2.last_err & POLLOUT);
		pn_io_close(loop, id2);
		RUN_UNTIL(loop, w2.closes > 0, 1000);
		CHECK_INT(w2.closes, 1);
	}
	/* the read end now sees the writer gone */
	CHECK_INT(read(p[0], &c, 1), 1);
	CHECK_INT(pn_io_poll(loop, w.id, POLLIN), 0);
	RUN_UNTIL(loop, w.polls > 2, 1000);
	CHECK(w.last_err & POLLHUP);
	pn_io_close(loop, w.id);
	RUN_UNTIL(loop, w.closes > 0, 1000);
	pn_loop_free(&loop);
}

/* ---- other threads ---- */

struct post_state {
	struct pn_loop *loop;
	int seen[100];
	int n;
	int order_ok;
};

struct post_item {
	struct post_state *st;
	int value;
};

static struct post_item items[100];

static void on_post(void *ctx)
{
	struct post_item *it = ctx;

	if (it->value != it->st->n)
		it->st->order_ok = 0;
	it->st->seen[it->st->n++ % 100] = it->value;
}

static void stop_from_loop(void *ctx)
{
	pn_loop_stop(ctx);
}

static void *poster(void *arg)
{
	struct post_state *st = arg;
	struct timespec ts = { 0, 2 * 1000000 };

	for (int i = 0; i < 100; i++) {
		items[i].st = st;
		items[i].value = i;
		pn_loop_post(st->loop, on_post, &items[i]);
		if (i % 25 == 0)
			nanosleep(&ts, NULL);
	}
	/* posted, so that it comes after the posts above */
	pn_loop_post(st->loop, stop_from_loop, st->loop);
	return NULL;
}

static void *stopper(void *arg)
{
	struct timespec ts = { 0, 30 * 1000000 };

	nanosleep(&ts, NULL);
	pn_loop_stop(arg);
	return NULL;
}

PN_TEST(test_post_stop_threads)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct post_state st = { 0 };
	pthread_t th;
	uint64_t start;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	st.loop = loop;
	st.order_ok = 1;
	CHECK_INT(pthread_create(&th, NULL, poster, &st), 0);
	CHECK_INT(pn_loop_run(loop), 0);
	pthread_join(th, NULL);
	/* stop came after the posts, and posts run in order */
	CHECK_INT(st.n, 100);
	CHECK_INT(st.order_ok, 1);

	/* an idle loop blocked in the kernel is woken by another thread */
	start = now_ms();
	CHECK_INT(pthread_create(&th, NULL, stopper, loop), 0);
	CHECK_INT(pn_loop_run(loop), 0);
	pthread_join(th, NULL);
	CHECK(now_ms() - start >= 25);
	CHECK(now_ms() - start < 2000);

	/* stop from a posted function on the loop thread itself */
	CHECK_INT(pn_loop_post(loop, stop_from_loop, loop), 0);
	CHECK_INT(pn_loop_run(loop), 0);

	/* a post that never runs is freed by pn_loop_free */
	CHECK_INT(pn_loop_post(loop, on_post, &items[0]), 0);
	pn_loop_free(&loop);
	CHECK_INT(st.n, 100);
}

/* ---- end of stream, reset, send errors ---- */

PN_TEST(test_peer_close_and_reset)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct watch w = { 0 };
	struct linger lg = { 1, 0 };
	int a, b;

	if (loop == NULL || tcp_pair(&a, &b) < 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	w.loop = loop;
	w.id = pn_io_add(loop, b, 0, &watch_h, &w);
	CHECK_INT(pn_io_recv(loop, w.id), 0);
	CHECK_INT(write(a, "bye", 3), 3);
	close(a);
	RUN_UNTIL(loop, w.eofs > 0, 1000);
	CHECK_INT(w.bytes, 3);
	CHECK_INT(w.eofs, 1);
	/* receiving stopped after the end: no repeated len 0 */
	run_for(loop, 20);
	CHECK_INT(w.eofs, 1);
	/* a send to the closed peer: an error, not SIGPIPE */
	{
		static uint8_t big[1 << 16];

		for (int i = 0; i < 20 && w.sends == 0; i++) {
			w.last_err = 0;
			CHECK_INT(pn_io_send(loop, w.id, big, sizeof(big)), 0);
			RUN_UNTIL(loop, w.sends > 0, 1000);
			if (w.last_err > 0)
				w.sends = 0;
		}
		CHECK(w.last_err == -EPIPE || w.last_err == -ECONNRESET);
	}
	pn_io_close(loop, w.id);
	RUN_UNTIL(loop, w.closes > 0, 1000);

	/* reset: -ECONNRESET */
	memset(&w, 0, sizeof(w));
	w.loop = loop;
	CHECK_INT(tcp_pair(&a, &b), 0);
	w.id = pn_io_add(loop, b, 0, &watch_h, &w);
	CHECK_INT(pn_io_recv(loop, w.id), 0);
	pn_loop_run_once(loop, 0);
	setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(a);
	RUN_UNTIL(loop, w.last_err != 0, 1000);
	CHECK_INT(w.last_err, -ECONNRESET);
	CHECK_INT(w.eofs, 0);
	pn_io_close(loop, w.id);
	RUN_UNTIL(loop, w.closes > 0, 1000);

	/* connect refused */
	{
		const char *error;
		int lfd = pn_listen_tcp("127.0.0.1", 0, 1, &error);
		struct sockaddr_in sin;
		struct client c;

		addr_of_listener(lfd, &sin);
		close(lfd);
		CHECK_INT(client_start(&c, loop, &sin, 1, 0, 0), 0);
		RUN_UNTIL(loop, c.closed, 1000);
		CHECK_INT(c.connect_res, -ECONNREFUSED);
		free(c.out);
	}
	CHECK_INT(pn_loop_io_count(loop), 0);
	pn_loop_free(&loop);
}

/* ---- receive stop, held data, buffer exhaustion ---- */

struct collector {
	struct pn_loop *loop;
	pn_io_id id;
	uint8_t data[1 << 17];
	size_t len;
	int calls, eofs, errors, closes;
	int stop_after;		/* pn_io_recv_stop() after this many calls */
	int handoff_after;	/* pn_io_recv_handoff() after this many calls */
	int cancels;		/* on_recv(-ECANCELED): the handoff ended */
};

static void col_on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct collector *c = ctx;

	c->calls++;
	if (len > 0 && c->len + (size_t)len <= sizeof(c->data)) {
		memcpy(c->data + c->len, data, (size_t)len);
		c->len += (size_t)len;
	} else if (len == 0) {
		c->eofs++;
	} else if (len == -ECANCELED) {
		c->cancels++;
	} else {
		c->errors++;
	}
	if (c->stop_after > 0 && c->calls == c->stop_after)
		CHECK_INT(pn_io_recv_stop(c->loop, c->id), 0);
	if (c->handoff_after > 0 && c->calls == c->handoff_after)
		CHECK_INT(pn_io_recv_handoff(c->loop, c->id), 0);
}

static void col_on_close(void *ctx)
{
	struct collector *c = ctx;

	c->closes++;
}

static const struct pn_io_handlers col_h = { .on_recv = col_on_recv,
					     .on_close = col_on_close };

static bool pattern_ok(const uint8_t *p, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(i, seed))
			return false;
	return true;
}

/* Writes len bytes of the pattern, blocking as needed. */
static void write_pattern(int fd, size_t off, size_t len, unsigned int seed)
{
	uint8_t buf[4096];

	while (len > 0) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);
		ssize_t w;

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i, seed);
		w = write(fd, buf, n);
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			poll(&pfd, 1, 100);
			continue;
		}
		if (w <= 0)
			return;
		off += (size_t)w;
		len -= (size_t)w;
	}
}

PN_TEST(test_recv_stop)
{
	struct pn_loop *loop = new_loop(256, 8);
	static struct collector c;
	int a, b;

	if (loop == NULL || tcp_pair(&a, &b) < 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	memset(&c, 0, sizeof(c));
	c.loop = loop;
	c.id = pn_io_add(loop, b, 0, &col_h, &c);
	CHECK_INT(pn_io_recv_stop(loop, c.id), 0); /* not on: fine */
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	write_pattern(a, 0, 100, 5);
	RUN_UNTIL(loop, c.len == 100, 1000);
	CHECK_INT(c.len, 100);

	/* stopped: no callback while data arrives */
	CHECK_INT(pn_io_recv_stop(loop, c.id), 0);
	write_pattern(a, 100, 1000, 5);
	run_for(loop, 40);
	CHECK_INT(c.len, 100);
	/* resumed: everything, in order, never from inside pn_io_recv() */
	{
		int calls = c.calls;

		CHECK_INT(pn_io_recv(loop, c.id), 0);
		CHECK_INT(c.calls, calls);
	}
	RUN_UNTIL(loop, c.len == 1100, 1000);
	CHECK_INT(c.len, 1100);
	CHECK(pattern_ok(c.data, c.len, 5));

	/* stop from inside on_recv with more already on its way; the stop
	 * and end of stream are kept until resumed */
	c.stop_after = c.calls + 1;
	write_pattern(a, 1100, 3000, 5);
	close(a);
	run_for(loop, 50);
	CHECK_INT(c.calls, c.stop_after);
	CHECK_INT(c.eofs, 0);
	c.stop_after = 0;
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	RUN_UNTIL(loop, c.eofs > 0, 1000);
	CHECK_INT(c.len, 4100);
	CHECK(pattern_ok(c.data, c.len, 5));
	CHECK_INT(c.eofs, 1);
	CHECK_INT(c.errors, 0);

	/* data and end of stream already in the socket, stopped after the
	 * first piece: the rest and the end are kept and come after resume */
	CHECK_INT(tcp_pair(&a, &b), 0);
	memset(&c, 0, sizeof(c));
	c.loop = loop;
	c.stop_after = 1;
	write_pattern(a, 0, 1000, 7);
	close(a);
	c.id = pn_io_add(loop, b, 0, &col_h, &c);
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	run_for(loop, 30);
	CHECK_INT(c.calls, 1);
	c.stop_after = 0;
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	RUN_UNTIL(loop, c.eofs > 0, 1000);
	CHECK_INT(c.len, 1000);
	CHECK(pattern_ok(c.data, c.len, 7));
	CHECK_INT(c.eofs, 1);
	pn_io_close(loop, c.id);
	RUN_UNTIL(loop, c.closes > 0, 1000);

	/* stop then resume at once, before the kernel saw the cancel */
	CHECK_INT(tcp_pair(&a, &b), 0);
	memset(&c, 0, sizeof(c));
	c.loop = loop;
	c.id = pn_io_add(loop, b, 0, &col_h, &c);
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	pn_loop_run_once(loop, 0);
	CHECK_INT(pn_io_recv_stop(loop, c.id), 0);
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	write_pattern(a, 0, 2000, 6);
	RUN_UNTIL(loop, c.len == 2000, 1000);
	CHECK_INT(c.len, 2000);
	CHECK(pattern_ok(c.data, c.len, 6));
	/* closing with held data returns the buffers: the loop still works */
	CHECK_INT(pn_io_recv_stop(loop, c.id), 0);
	write_pattern(a, 2000, 1500, 6);
	run_for(loop, 20);
	pn_io_close(loop, c.id);
	RUN_UNTIL(loop, c.closes > 0, 1000);
	CHECK_INT(c.closes, 1);
	CHECK_INT(c.len, 2000);
	close(a);
	pn_loop_free(&loop);
}

/* Reads fd (non-blocking) into c->data until want bytes or end of stream;
 * returns whether it saw the end. */
static bool read_rest(struct collector *c, int fd, size_t want)
{
	uint64_t deadline = now_ms() + 2000;

	while (c->len < want && now_ms() < deadline) {
		ssize_t n = read(fd, c->data + c->len, sizeof(c->data) - c->len);

		if (n == 0)
			return true;
		if (n > 0) {
			c->len += (size_t)n;
		} else {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };

			poll(&pfd, 1, 100);
		}
	}
	return read(fd, c->data + c->len, 1) == 0;
}

PN_TEST(test_recv_handoff)
{
	struct pn_loop *loop = new_loop(256, 8);
	static struct collector c;
	int a, b;

	if (loop == NULL || tcp_pair(&a, &b) < 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	memset(&c, 0, sizeof(c));
	c.loop = loop;
	c.id = pn_io_add(loop, b, 0, &col_h, &c);
	/* not receiving: nothing to hand off */
	CHECK_INT(pn_io_recv_handoff(loop, c.id), -1);
	CHECK_INT(errno, EAGAIN);
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	pn_loop_run_once(loop, 0);

	/* handed off from inside on_recv with more on its way: what the
	 * multishot took comes first, then -ECANCELED, then the fd has the
	 * rest, in order */
	c.handoff_after = 1;
	write_pattern(a, 0, 3000, 8);
	RUN_UNTIL(loop, c.cancels > 0, 1000);
	CHECK_INT(c.cancels, 1);
	CHECK(c.len >= 1 && c.len <= 3000);
	CHECK_INT(pn_io_recv_handoff(loop, c.id), -1); /* over: receiving is off */
	write_pattern(a, 3000, 1000, 8);
	close(a);
	CHECK(read_rest(&c, b, 4000));
	CHECK_INT(c.len, 4000);
	CHECK(pattern_ok(c.data, c.len, 8));
	run_for(loop, 20);
	CHECK_INT(c.eofs, 0);
	CHECK_INT(c.errors, 0);
	pn_io_close(loop, c.id);
	RUN_UNTIL(loop, c.closes > 0, 1000);

	/* the end of stream already in the socket: either the multishot meets
	 * it (reported as usual) or the fd does */
	CHECK_INT(tcp_pair(&a, &b), 0);
	memset(&c, 0, sizeof(c));
	c.loop = loop;
	c.handoff_after = 1;
	write_pattern(a, 0, 1000, 9);
	close(a);
	c.id = pn_io_add(loop, b, 0, &col_h, &c);
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	RUN_UNTIL(loop, c.cancels + c.eofs > 0, 1000);
	CHECK_INT(c.cancels + c.eofs, 1);
	if (c.cancels == 1)
		CHECK(read_rest(&c, b, 1000));
	CHECK_INT(c.len, 1000);
	CHECK(pattern_ok(c.data, c.len, 9));
	CHECK_INT(c.errors, 0);
	pn_io_close(loop, c.id);
	RUN_UNTIL(loop, c.closes > 0, 1000);
	pn_loop_free(&loop);
}

PN_TEST(test_enobufs)
{
	/* two 256-byte buffers for 32 KiB already waiting in the socket */
	struct pn_loop *loop = new_loop(256, 2);
	static struct collector c;
	struct pn_loop_stats st;
	int a, b;

	if (loop == NULL || tcp_pair(&a, &b) < 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	memset(&c, 0, sizeof(c));
	c.loop = loop;
	write_pattern(a, 0, 32768, 8);
	c.id = pn_io_add(loop, b, 0, &col_h, &c);
	CHECK_INT(pn_io_recv(loop, c.id), 0);
	RUN_UNTIL(loop, c.len == 32768, 3000);
	CHECK_INT(c.len, 32768);
	CHECK(pattern_ok(c.data, c.len, 8));
	CHECK_INT(c.errors, 0);
	pn_loop_get_stats(loop, &st);
	CHECK(st.recv_enobufs > 0);
	close(a);
	RUN_UNTIL(loop, c.eofs > 0, 1000);
	CHECK_INT(c.eofs, 1);
	pn_loop_free(&loop);
}

/* ---- accept errors ---- */

struct acc {
	struct pn_loop *loop;
	int accepted, errors, last_err;
	struct rlimit saved;
	bool restore;
};

static void acc_on_accept(void *ctx, int fd)
{
	struct acc *a = ctx;

	if (fd >= 0) {
		a->accepted++;
		close(fd);
		return;
	}
	a->errors++;
	a->last_err = fd;
	if (a->restore) {
		setrlimit(RLIMIT_NOFILE, &a->saved);
		a->restore = false;
	}
}

static const struct pn_io_handlers acc_h = { .on_accept = acc_on_accept };

static void nested_run(void *ctx)
{
	struct acc *a = ctx;

	CHECK_INT(pn_loop_run_once(a->loop, 0), -1);
	CHECK_INT(errno, EDEADLK);
	a->accepted = 100;
}

PN_TEST(test_accept_errors)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct acc a = { 0 };
	struct pn_loop_stats st;
	struct sockaddr_in sin;
	struct rlimit low;
	const char *error;
	pn_io_id id;
	int lfd, cfd, spare;
	uint64_t start;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	a.loop = loop;
	/* not listening: a fatal error, reported once, accepting stops */
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	id = pn_io_add(loop, lfd, 0, &acc_h, &a);
	CHECK_INT(pn_io_accept(loop, id), 0);
	CHECK_INT(pn_io_accept(loop, id), -1);
	CHECK_INT(errno, EBUSY);
	RUN_UNTIL(loop, a.errors > 0, 1000);
	run_for(loop, 20);
	CHECK_INT(a.errors, 1);
	CHECK_INT(a.last_err, -EINVAL);
	CHECK_INT(pn_io_fd(loop, id), lfd);
	pn_io_close(loop, id);
	CHECK_INT(pn_io_fd(loop, id), -1);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000); /* fd closed */

	/* out of fds: reported, paused, re-armed, then accepts */
	memset(&a, 0, sizeof(a));
	a.loop = loop;
	lfd = pn_listen_tcp("127.0.0.1", 0, 16, &error);
	addr_of_listener(lfd, &sin);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_INT(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	id = pn_io_add(loop, lfd, 0, &acc_h, &a);
	spare = dup(0);
	close(spare);
	getrlimit(RLIMIT_NOFILE, &a.saved);
	low = a.saved;
	low.rlim_cur = (rlim_t)spare;
	a.restore = true;
	CHECK_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
	start = now_ms();
	CHECK_INT(pn_io_accept(loop, id), 0);
	pn_loop_run_once(loop, 0);
	if (a.restore) /* the accept was not even tried: never leave it low */
		setrlimit(RLIMIT_NOFILE, &a.saved);
	RUN_UNTIL(loop, a.accepted > 0, 2000);
	CHECK_INT(a.accepted, 1);
	CHECK(a.errors >= 1);
	CHECK(a.last_err == -EMFILE);
	CHECK(now_ms() - start >= 90); /* paused before trying again */
	pn_loop_get_stats(loop, &st);
	CHECK(st.accept_rearms >= 1);
	close(cfd);

	/* pn_loop_run_once() from a callback is refused */
	CHECK_INT(pn_loop_post(loop, nested_run, &a), 0);
	RUN_UNTIL(loop, a.accepted == 100, 1000);
	CHECK_INT(a.accepted, 100);
	CHECK(pn_loop_now_ms(loop) > 0);
	pn_io_close(loop, id);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);
	pn_loop_free(&loop);
}

/* ---- one thread sets up, another runs, the first frees ---- */

static void *run_echo_thread(void *arg)
{
	struct pn_loop *loop = arg;

	pn_loop_run(loop);
	return NULL;
}

static void stop_loop(void *ctx)
{
	pn_loop_stop(ctx);
}

/* The balancer's and the frontend's shape: ios added and armed on the main
 * thread, the loop run by a worker thread (with PN_LOOP_DEFER_TASKRUN the
 * worker becomes the ring's only submitter), freed by the main thread after
 * the worker ended, with operations still pending (the listener's accept). */
PN_TEST(test_other_thread_runs)
{
	struct pn_loop *loop = new_loop(0, 0);
	struct echo_srv srv = { 0 };
	struct sockaddr_in sin;
	char buf[16];
	pthread_t th;
	int fd;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	CHECK_INT(echo_start(&srv, loop, &sin), 0);
	CHECK_INT(pthread_create(&th, NULL, run_echo_thread, loop), 0);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_INT(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	CHECK_INT(send(fd, "hello", 5, 0), 5);
	CHECK_INT(shutdown(fd, SHUT_WR), 0);
	CHECK_INT(recv(fd, buf, 5, MSG_WAITALL), 5);
	CHECK_MEM(buf, 5, "hello", 5);
	CHECK_INT(recv(fd, buf, sizeof(buf), 0), 0); /* the server closed */
	close(fd);
	CHECK_INT(pn_loop_post(loop, stop_loop, loop), 0);
	pthread_join(th, NULL);
	CHECK_INT(srv.accepted, 1);
	CHECK_INT(srv.closed, 1);
	pn_loop_free(&loop);
	CHECK(loop == NULL);
}

/* Linux copies TCP_NODELAY from a listener to the sockets it accepts: the
 * balancer sets it once per listener instead of once per connection. */
PN_TEST(test_nodelay_inherited)
{
	const char *error;
	int lfd = pn_listen_tcp("127.0.0.1", 0, 8, &error);
	struct sockaddr_in sin;
	int a, b, on = 0;
	socklen_t len = sizeof(on);

	CHECK(lfd >= 0);
	if (lfd < 0)
		return;
	CHECK_INT(pn_socket_nodelay(lfd), 0);
	addr_of_listener(lfd, &sin);
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_INT(connect(a, (struct sockaddr *)&sin, sizeof(sin)), 0);
	b = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	CHECK(b >= 0);
	CHECK_INT(getsockopt(b, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
	CHECK(on != 0);
	close(a);
	close(b);
	close(lfd);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
	     PN_TEST_CASE(test_hostport),
	     PN_TEST_CASE(test_listen_helpers),
	     PN_TEST_CASE(test_echo_one),
	     PN_TEST_CASE(test_echo_500),
	     PN_TEST_CASE(test_large_transfer),
	     PN_TEST_CASE(test_timer),
	     PN_TEST_CASE(test_close_pending),
	     PN_TEST_CASE(test_table_full),
	     PN_TEST_CASE(test_poll_pipe),
	     PN_TEST_CASE(test_post_stop_threads),
	     PN_TEST_CASE(test_peer_close_and_reset),
	     PN_TEST_CASE(test_recv_stop),
	     PN_TEST_CASE(test_recv_handoff),
	     PN_TEST_CASE(test_enobufs),
	     PN_TEST_CASE(test_accept_errors),
	     PN_TEST_CASE(test_other_thread_runs),
	     PN_TEST_CASE(test_nodelay_inherited),
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	int rc = pn_test_run("test-loop", cases, n);

	loop_flags = PN_LOOP_DEFER_TASKRUN;
	return pn_test_run("test-loop(defer_taskrun)", cases, n) != 0 ? 1 : rc;
}
