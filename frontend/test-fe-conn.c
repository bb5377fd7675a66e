/* Tests of the frontend connection layer (fe-conn.c) with a fake line
 * protocol over real loopback sockets: PROXY from trusted and untrusted
 * peers, implicit TLS, STARTTLS with injected plaintext, output
 * backpressure, idle timeout, drain goodbye, asynchronous requests that
 * outlive the client, and disconnects.
 */
#include "postern/testing.h"

#include "postern/loop.h"
#include "postern/proxy.h"
#include "postern/tls.h"

#include "../common/tls-testcert.h"
#include "fe-conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the fake protocol ---- */

struct fake {
	struct fe_conn *conn;
	char greeting[256];
	uint8_t in[4096];
	size_t in_len;
	char out[300];
	bool greeted, waiting_tls, closing, closed, gone, async_wait, async_done;
	uint64_t flood_left;
	bool bye_pending, starttls_owed;
	const char *bye;
	bool close_pending;
	uint8_t flood_chunk[16384];
};

static struct {
	int created, destroyed, disconnected, tls_started;
	uint64_t flood_produced;
	struct fake *async_session;
	struct pn_loop *loop;
	pn_io_id async_timer;
} fk;

static void *fake_create(struct fe_conn *conn, const struct fe_session_info *info,
			 const char **error_r)
{
	struct fake *f = calloc(1, sizeof(*f));

	f->conn = conn;
	snprintf(f->greeting, sizeof(f->greeting), "HELLO %s tls=%d secured=%d\r\n",
		 info->client_str, info->tls ? 1 : 0, info->secured ? 1 : 0);
	memset(f->flood_chunk, 'x', sizeof(f->flood_chunk));
	fk.created++;
	return f;
}

static size_t fake_feed(void *s, const uint8_t *data, size_t len)
{
	struct fake *f = s;
	size_t room = sizeof(f->in) - f->in_len;

	if (f->waiting_tls || f->closing)
		return len; /* dropped, like the real engines */
	if (len > room)
		len = room;
	memcpy(f->in + f->in_len, data, len);
	f->in_len += len;
	return len;
}

static int emit(struct fe_action *act, const char *text, struct fake *f)
{
	snprintf(f->out, sizeof(f->out), "%s", text);
	act->type = FE_ACT_SEND;
	act->data = (const uint8_t *)f->out;
	act->len = strlen(f->out);
	return 1;
}

static int fake_next(void *s, struct fe_action *act)
{
	struct fake *f = s;
	uint8_t *lf;
	char line[256];
	size_t n;

	memset(act, 0, sizeof(*act));
	if (f->closed)
		return -1;
	if (f->gone) {
		if (f->async_wait && !f->async_done)
			return 0;
		f->closed = true;
		return -1;
	}
	if (!f->greeted) {
		f->greeted = true;
		return emit(act, f->greeting, f);
	}
	if (f->bye_pending) {
		f->bye_pending = false;
		f->close_pending = true;
		return emit(act, f->bye, f);
	}
	if (f->close_pending) {
		f->close_pending = false;
		f->closing = true;
		act->type = FE_ACT_CLOSE;
		act->reason = "fake close";
		return 1;
	}
	if (f->closing) {
		f->closed = true;
		return -1;
	}
	if (f->flood_left > 0) {
		n = f->flood_left < sizeof(f->flood_chunk) ? f->flood_left : sizeof(f->flood_chunk);
		f->flood_left -= n;
		fk.flood_produced += n;
		act->type = FE_ACT_SEND;
		act->data = f->flood_chunk;
		act->len = n;
		return 1;
	}
	if (f->async_wait) {
		if (!f->async_done)
			return 0;
		f->async_wait = false;
		return emit(act, "DONE\r\n", f);
	}
	if (f->starttls_owed) {
		f->starttls_owed = false;
		act->type = FE_ACT_START_TLS;
		return 1;
	}
	if (f->waiting_tls)
		return 0;
	lf = memchr(f->in, '\n', f->in_len);
	if (lf == NULL)
		return 0;
	n = (size_t)(lf - f->in) + 1;
	snprintf(line, sizeof(line), "%.*s", (int)(n >= 2 ? n - 2 : 0), (const char *)f->in);
	memmove(f->in, f->in + n, f->in_len - n);
	f->in_len -= n;
	if (strcmp(line, "STARTTLS") == 0) {
		f->waiting_tls = true;
		f->starttls_owed = true;
		f->in_len = 0; /* the engine drops what followed the command */
		return emit(act, "OK begin tls\r\n", f);
	}
	if (strncmp(line, "FLOOD ", 6) == 0) {
		f->flood_left = strtoull(line + 6, NULL, 10);
		return fake_next(s, act);
	}
	if (strcmp(line, "ASYNC") == 0) {
		f->async_wait = true;
		f->async_done = false;
		fk.async_session = f;
		pn_io_timer_set(fk.loop, fk.async_timer, 100);
		return 0;
	}
	if (strcmp(line, "QUIT") == 0) {
		f->bye = "BYE quit\r\n";
		f->bye_pending = true;
		return fake_next(s, act);
	}
	snprintf(f->out, sizeof(f->out), "ECHO %s\r\n", line);
	act->type = FE_ACT_SEND;
	act->data = (const uint8_t *)f->out;
	act->len = strlen(f->out);
	return 1;
}

static void fake_tls_started(void *s)
{
	struct fake *f = s;

	f->waiting_tls = false;
	fk.tls_started++;
}

static void fake_disconnected(void *s)
{
	struct fake *f = s;

	f->gone = true;
	fk.disconnected++;
}

static void fake_shutdown(void *s, enum fe_shutdown_reason reason)
{
	struct fake *f = s;

	if (f->closing || f->bye_pending)
		return;
	f->bye = reason == FE_SHUTDOWN_DRAIN ? "BYE drain\r\n" : "BYE idle\r\n";
	f->bye_pending = true;
	f->flood_left = 0;
}

static void fake_destroy(void **s)
{
	struct fake *f = *s;

	if (fk.async_session == f)
		fk.async_session = NULL;
	free(f);
	*s = NULL;
	fk.destroyed++;
}

static const struct fe_protocol fake_protocol = {
	.name = "fake",
	.create = fake_create,
	.feed = fake_feed,
	.next = fake_next,
	.tls_started = fake_tls_started,
	.disconnected = fake_disconnected,
	.shutdown = fake_shutdown,
	.destroy = fake_destroy,
};

static void async_fire(void *ctx)
{
	struct fake *f = fk.async_session;

	if (f == NULL)
		return;
	f->async_done = true;
	fe_conn_wakeup(f->conn);
}

static const struct pn_io_handlers async_handlers = { .on_timer = async_fire };

/* ---- harness ---- */

static struct pn_testcert cert;
static char certdir[PN_TESTCERT_PATH_MAX];
static struct pn_tls_ctx *server_tls, *client_tls;
static struct pn_cidr_list trusted, plain_ok;
static struct fe_conn_env env;
static int listen_fd = -1;
static uint16_t listen_port;

static void setup(void)
{
	const char *error;

	memset(&fk, 0, sizeof(fk));
	memset(&env, 0, sizeof(env));
	fk.loop = pn_loop_new(NULL, &error);
	fk.async_timer = pn_io_add(fk.loop, -1, 0, &async_handlers, NULL);
	env.loop = fk.loop;
	env.tls = server_tls;
	env.proxy_trusted = &trusted;
	env.plaintext_auth = &plain_ok;
	env.handshake_timeout_ms = 300;
	for (int i = 0; i < FE_SVC_COUNT; i++)
		env.idle_timeout_ms[i] = 5000;
	env.linger_ms = 300;
	env.goodbye_timeout_ms = 1000;
	env.output_buffer = 64 * 1024;
	env.max_conns = 100;
	env.node = "test";
	env.hostname = "test.example";
	env.start_time = 1;
	listen_fd = pn_listen_tcp("127.0.0.1", 0, 16, &error);
	listen_port = pn_socket_port(listen_fd);
}

static void run_ms(int ms)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		pn_loop_run_once(fk.loop, 5);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= ms)
			break;
	}
}

static void teardown(void)
{
	/* Let everything close. */
	for (int i = 0; i < 200 && env.conn_count > 0; i++)
		run_ms(5);
	CHECK_INT(env.conn_count, 0);
	pn_io_close(fk.loop, fk.async_timer);
	run_ms(5);
	pn_loop_free(&fk.loop);
	close(listen_fd);
}

/* Connects a client (from src, e.g. "127.0.0.2") and hands the accepted
 * side to fe_conn_accept for svc. Returns the client fd (non-blocking). */
static int connect_client(const char *src, enum fe_service svc)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(listen_port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), sfd;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (src != NULL) {
		struct sockaddr_in ca = { .sin_family = AF_INET };
		inet_pton(AF_INET, src, &ca.sin_addr);
		CHECK_INT(bind(fd, (struct sockaddr *)&ca, sizeof(ca)), 0);
	}
	CHECK_INT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	CHECK(sfd >= 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	CHECK_INT(fe_conn_accept(&env, sfd, svc, &fake_protocol), 0);
	return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			run_ms(2);
			continue;
		}
		CHECK(n > 0);
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

/* Reads into buf until needle shows up, EOF, or timeout. Returns bytes
 * read; *eof_r tells whether the peer closed. */
static size_t read_until(int fd, char *buf, size_t size, const char *needle, int timeout_ms,
			 bool *eof_r)
{
	size_t len = 0;
	struct timespec a, b;

	*eof_r = false;
	buf[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
		if (n > 0) {
			len += (size_t)n;
			buf[len] = '\0';
			if (needle != NULL && strstr(buf, needle) != NULL)
				return len;
			continue;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			*eof_r = true;
			return len;
		}
		pn_loop_run_once(fk.loop, 5);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= timeout_ms)
			return len;
	}
}

/* ---- TLS client over the raw socket ---- */

struct tclient {
	int fd;
	struct pn_tls_conn *tls;
	bool eof;
};

static void tc_flush(struct tclient *t)
{
	uint8_t buf[65536];

	while (pn_tls_pending_out(t->tls) > 0) {
		size_t n = pn_tls_take_out(t->tls, buf, sizeof(buf));
		send_all(t->fd, buf, n);
	}
}

/* Reads plaintext until needle or timeout; handshake included. */
static size_t tc_read_until(struct tclient *t, char *out, size_t size, const char *needle,
			    int timeout_ms)
{
	size_t len = 0;
	struct timespec a, b;
	const char *error;

	out[0] = '\0';
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		uint8_t raw[16384];
		ssize_t n, r;

		tc_flush(t);
		n = recv(t->fd, raw, sizeof(raw), 0);
		if (n > 0)
			CHECK_INT(pn_tls_feed(t->tls, raw, (size_t)n, &error), 0);
		else if (n == 0)
			t->eof = true;
		while ((r = pn_tls_read(t->tls, out + len, size - 1 - len, &error)) > 0) {
			len += (size_t)r;
			out[len] = '\0';
		}
		tc_flush(t);
		if (needle != NULL && strstr(out, needle) != NULL)
			return len;
		if (t->eof || r < 0)
			return len;
		pn_loop_run_once(fk.loop, 5);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= timeout_ms)
			return len;
	}
}

static void tc_write(struct tclient *t, const char *s)
{
	const char *error;

	CHECK_INT(pn_tls_write(t->tls, s, strlen(s), &error), (long long)strlen(s));
	tc_flush(t);
}

/* ---- tests ---- */

PN_TEST(test_untrusted_plain)
{
	char buf[4096];
	bool eof;
	int fd;

	setup();
	fd = connect_client(NULL, FE_SVC_POP3);
	read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
	CHECK(strstr(buf, "HELLO 127.0.0.1:") != NULL);
	CHECK(strstr(buf, "tls=0 secured=1") != NULL);
	/* "P" could start "PROXY ": held until it diverges */
	send_str(fd, "PING\r\nQUIT\r\n");
	read_until(fd, buf, sizeof(buf), "BYE", 1000, &eof);
	CHECK(strstr(buf, "ECHO PING\r\nBYE quit\r\n") != NULL);
	read_until(fd, buf, sizeof(buf), NULL, 1000, &eof);
	CHECK(eof);
	close(fd);
	teardown();
	CHECK_INT(fk.created, 1);
	CHECK_INT(fk.destroyed, 1);
}

PN_TEST(test_untrusted_proxy_refused)
{
	static const char *const headers[] = {
		"PROXY TCP4 192.0.2.1 192.0.2.2 5555 110\r\nHELP\r\n",
		"\r\n\r\n\0\r\nQUIT\n",
	};
	for (size_t i = 0; i < 2; i++) {
		char buf[4096];
		bool eof;
		int fd;

		setup();
		fd = connect_client(NULL, FE_SVC_POP3);
		read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
		CHECK(strncmp(buf, "HELLO", 5) == 0);
		/* byte at a time: nothing is passed on while it could be a
		 * header, and the signature is refused once complete */
		for (const char *p = headers[i]; p < headers[i] + (i == 0 ? 6 : 12); p++) {
			send_all(fd, p, 1);
			run_ms(3);
		}
		send_str(fd, "\r\n");
		read_until(fd, buf, sizeof(buf), NULL, 1000, &eof);
		CHECK(eof);
		CHECK(strstr(buf, "ECHO") == NULL);
		close(fd);
		teardown();
		CHECK_INT(fk.destroyed, fk.created);
	}
}

PN_TEST(test_trusted_proxy_v1_and_v2)
{
	char buf[4096];
	bool eof;
	int fd;

	pn_cidr_list_parse("127.0.0.2/32", &trusted, &(const char *){ NULL });
	/* v1, with a command in the same segment */
	setup();
	fd = connect_client("127.0.0.2", FE_SVC_POP3);
	run_ms(20);
	CHECK_INT(recv(fd, buf, sizeof(buf), 0), -1); /* no greeting before the header */
	send_str(fd, "PROXY TCP4 192.0.2.1 192.0.2.2 5555 110\r\nPING\r\n");
	read_until(fd, buf, sizeof(buf), "ECHO PING", 1000, &eof);
	CHECK(strstr(buf, "HELLO 192.0.2.1:5555 tls=0 secured=0\r\n") != NULL);
	CHECK(strstr(buf, "ECHO PING") != NULL);
	close(fd);
	teardown();

	/* v2 with an SSL TLV: the balancer terminated TLS */
	{
		struct pn_proxy_header h;
		uint8_t hb[512];
		const char *error;
		int n;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h.src;

		pn_proxy_header_init(&h);
		h.command = PN_PROXY_CMD_PROXY;
		h.has_addrs = true;
		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, "2001:db8::7", &s6->sin6_addr);
		s6->sin6_port = htons(4242);
		s6 = (struct sockaddr_in6 *)&h.dst;
		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
		s6->sin6_port = htons(995);
		h.has_tls = true;
		h.tls.client = PN_PP2_CLIENT_SSL;
		snprintf(h.tls.version, sizeof(h.tls.version), "TLSv1.3");
		n = pn_proxy_v2_encode(&h, hb, sizeof(hb), &error);
		CHECK(n > 0);
		setup();
		env.handshake_timeout_ms = 5000;
		fd = connect_client("127.0.0.2", FE_SVC_POP3);
		for (int i = 0; i < n; i++) { /* byte at a time */
			send_all(fd, hb + i, 1);
			run_ms(1);
		}
		read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
		CHECK_STR(buf, "HELLO [2001:db8::7]:4242 tls=1 secured=1\r\n");
		close(fd);
		teardown();
	}

	/* bad header from a trusted peer: closed */
	setup();
	fd = connect_client("127.0.0.2", FE_SVC_POP3);
	send_str(fd, "USER bob\r\n");
	read_until(fd, buf, sizeof(buf), NULL, 1000, &eof);
	CHECK(eof);
	CHECK_INT(strlen(buf), 0);
	close(fd);
	teardown();
	CHECK_INT(fk.created, 0);

	/* no header at all: closed after handshake_timeout */
	setup();
	fd = connect_client("127.0.0.2", FE_SVC_POP3);
	read_until(fd, buf, sizeof(buf), NULL, 2000, &eof);
	CHECK(eof);
	close(fd);
	teardown();
	pn_cidr_list_free(&trusted);
}

PN_TEST(test_implicit_tls)
{
	struct tclient t = { 0 };
	const char *error;
	char buf[4096];

	setup();
	t.fd = connect_client(NULL, FE_SVC_POP3S);
	t.tls = pn_tls_conn_new(client_tls, "localhost", &error);
	tc_read_until(&t, buf, sizeof(buf), "\r\n", 2000);
	CHECK(strstr(buf, "HELLO 127.0.0.1:") != NULL && strstr(buf, "tls=1") != NULL);
	tc_write(&t, "PING\r\nQUIT\r\n");
	tc_read_until(&t, buf, sizeof(buf), "BYE quit", 2000);
	CHECK(strstr(buf, "ECHO PING\r\nBYE quit\r\n") != NULL);
	/* close_notify then EOF */
	tc_read_until(&t, buf, sizeof(buf), NULL, 2000);
	pn_tls_conn_free(&t.tls);
	close(t.fd);
	teardown();
	CHECK_INT(fk.destroyed, 1);
}

PN_TEST(test_starttls_discards_injected)
{
	struct tclient t = { 0 };
	const char *error;
	char buf[4096];
	bool eof;

	setup();
	t.fd = connect_client(NULL, FE_SVC_POP3);
	read_until(t.fd, buf, sizeof(buf), "\r\n", 1000, &eof);
	/* the injected line arrives in the same segment as STARTTLS */
	send_str(t.fd, "STARTTLS\r\nINJECTED\r\n");
	read_until(t.fd, buf, sizeof(buf), "OK begin tls\r\n", 1000, &eof);
	CHECK_STR(buf, "OK begin tls\r\n");
	t.tls = pn_tls_conn_new(client_tls, "localhost", &error);
	tc_write(&t, "AFTER\r\n");
	tc_read_until(&t, buf, sizeof(buf), "ECHO AFTER", 2000);
	CHECK_STR(buf, "ECHO AFTER\r\n");
	CHECK_INT(fk.tls_started, 1);
	pn_tls_conn_free(&t.tls);
	close(t.fd);
	teardown();
}

PN_TEST(test_backpressure)
{
	char *buf = malloc(1 << 20);
	uint64_t total = 4u << 20, got = 0;
	bool eof;
	int fd;

	setup();
	fd = connect_client(NULL, FE_SVC_POP3);
	read_until(fd, buf, 4096, "\r\n", 1000, &eof);
	send_str(fd, "FLOOD 4194304\r\n");
	run_ms(100);
	/* the client does not read: the kernel buffers fill, then the
	 * session is no longer asked for output */
	CHECK(fk.flood_produced < total);
	CHECK(fk.flood_produced > 0);
	{
		uint64_t before = fk.flood_produced;
		run_ms(50);
		CHECK(fk.flood_produced == before);
	}
	while (got < total) {
		ssize_t n = recv(fd, buf, 1 << 20, 0);
		if (n > 0) {
			got += (uint64_t)n;
			continue;
		}
		if (n == 0 || errno != EAGAIN)
			break;
		run_ms(1);
	}
	CHECK(got == total);
	CHECK(fk.flood_produced == total);
	close(fd);
	teardown();
	free(buf);
}

PN_TEST(test_idle_and_drain)
{
	char buf[4096];
	bool eof;
	int fd;

	setup();
	env.idle_timeout_ms[FE_SVC_POP3] = 200;
	fd = connect_client(NULL, FE_SVC_POP3);
	read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
	read_until(fd, buf, sizeof(buf), "BYE", 2000, &eof);
	CHECK_STR(buf, "BYE idle\r\n");
	read_until(fd, buf, sizeof(buf), NULL, 1000, &eof);
	CHECK(eof);
	close(fd);
	teardown();

	setup();
	fd = connect_client(NULL, FE_SVC_POP3);
	read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
	fe_conn_shutdown(env.conns, FE_SHUTDOWN_DRAIN);
	read_until(fd, buf, sizeof(buf), "BYE", 1000, &eof);
	CHECK_STR(buf, "BYE drain\r\n");
	read_until(fd, buf, sizeof(buf), NULL, 1000, &eof);
	CHECK(eof);
	close(fd);
	teardown();
}

PN_TEST(test_async_outlives_client)
{
	char buf[4096];
	bool eof;
	int fd;

	setup();
	fd = connect_client(NULL, FE_SVC_POP3);
	read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
	send_str(fd, "ASYNC\r\n");
	read_until(fd, buf, sizeof(buf), "DONE", 1000, &eof);
	CHECK_STR(buf, "DONE\r\n");

	/* the client leaves while a request is outstanding: the session
	 * lives on until the result, then ends */
	send_str(fd, "ASYNC\r\n");
	run_ms(20);
	close(fd);
	run_ms(30);
	CHECK_INT(fk.disconnected, 1);
	CHECK_INT(fk.destroyed, 0);
	CHECK_INT(env.conn_count, 1);
	run_ms(150);
	CHECK_INT(fk.destroyed, 1);
	CHECK_INT(env.conn_count, 0);
	teardown();
}

PN_TEST(test_abort_and_limit)
{
	char buf[4096];
	bool eof;
	int fd, fd2;

	setup();
	env.max_conns = 1;
	fd = connect_client(NULL, FE_SVC_POP3);
	read_until(fd, buf, sizeof(buf), "\r\n", 1000, &eof);
	{
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(listen_port) };
		int sfd;

		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		fd2 = socket(AF_INET, SOCK_STREAM, 0);
		CHECK_INT(connect(fd2, (struct sockaddr *)&sa, sizeof(sa)), 0);
		sfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
		CHECK_INT(fe_conn_accept(&env, sfd, FE_SVC_POP3, &fake_protocol), -1);
		fcntl(fd2, F_SETFL, O_NONBLOCK);
		read_until(fd2, buf, sizeof(buf), NULL, 500, &eof);
		CHECK(eof);
		close(fd2);
	}
	fe_conn_abort(env.conns, "test");
	read_until(fd, buf, sizeof(buf), NULL, 1000, &eof);
	CHECK(eof);
	close(fd);
	teardown();
	CHECK_INT(fk.disconnected, 1);
	CHECK_INT(fk.destroyed, 1);
}

static int run(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_untrusted_plain),
		PN_TEST_CASE(test_untrusted_proxy_refused),
		PN_TEST_CASE(test_trusted_proxy_v1_and_v2),
		PN_TEST_CASE(test_implicit_tls),
		PN_TEST_CASE(test_starttls_discards_injected),
		PN_TEST_CASE(test_backpressure),
		PN_TEST_CASE(test_idle_and_drain),
		PN_TEST_CASE(test_async_outlives_client),
		PN_TEST_CASE(test_abort_and_limit),
	};
	return pn_test_run("test-fe-conn", cases, sizeof(cases) / sizeof(cases[0]));
}

int pn_test_failures_;

int main(void)
{
	const char *error;
	int r;

	if (pn_testcert_dir(certdir) < 0 ||
	    pn_testcert_make(certdir, "server", "localhost", "DNS:localhost", &cert) < 0) {
		fprintf(stderr, "cannot make a test certificate\n");
		return 1;
	}
	server_tls = pn_tls_ctx_new_server(&(struct pn_tls_settings){ .cert_file = cert.cert,
								      .key_file = cert.key },
					   &error);
	client_tls = pn_tls_ctx_new_client(&(struct pn_tls_settings){ .verify_peer = false },
					   &error);
	if (server_tls == NULL || client_tls == NULL) {
		fprintf(stderr, "tls: %s\n", error);
		return 1;
	}
	pn_cidr_list_parse("127.0.0.0/8", &plain_ok, &error);
	r = run();
	pn_cidr_list_free(&plain_ok);
	pn_tls_ctx_free(&server_tls);
	pn_tls_ctx_free(&client_tls);
	pn_testcert_remove(&cert);
	rmdir(certdir);
	return r;
}
