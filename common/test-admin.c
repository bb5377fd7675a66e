/* Tests for postern/admin.h: a real server on 127.0.0.1 (port 0) with its
 * loop on a second thread, driven by plain blocking sockets: /metrics
 * parsed back, /healthz, /readyz flipping between 200 and 503, 404, 405,
 * garbage answered with 400 and a close, a request split across many small
 * writes, keep-alive and pipelining, HEAD, 100-continue, a large response,
 * a failing handler, the connection limit and the idle timeout. */
#include "postern/admin.h"
#include "postern/log.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a server on its own loop thread ---- */

struct server {
	struct pn_loop *loop;
	struct pn_admin *admin;
	pthread_t thread;
	uint16_t port;
};

static void *loop_thread(void *arg)
{
	struct server *s = arg;
	pn_loop_run(s->loop);
	return NULL;
}

static struct pn_loop *new_loop(const char **error_r)
{
	struct pn_loop_settings ls = { .ring_entries = 256, .max_ios = 256,
				       .recv_buf_size = 4096, .recv_buf_count = 64 };
	return pn_loop_new(&ls, error_r);
}

/* Starts a server; extra routes are added by the caller's setup() before
 * the loop thread starts. Returns 0 or -1. */
static int server_start(struct server *s, struct pn_admin_settings *set,
			int (*setup)(struct pn_admin *a))
{
	const char *error = NULL;

	memset(s, 0, sizeof(*s));
	s->loop = new_loop(&error);
	if (s->loop == NULL) {
		fprintf(stderr, "pn_loop_new: %s\n", error);
		return -1;
	}
	set->listen = "127.0.0.1:0";
	s->admin = pn_admin_new(s->loop, set, &error);
	if (s->admin == NULL) {
		fprintf(stderr, "pn_admin_new: %s\n", error);
		pn_loop_free(&s->loop);
		return -1;
	}
	if (setup != NULL && setup(s->admin) < 0) {
		pn_admin_free(&s->admin);
		pn_loop_free(&s->loop);
		return -1;
	}
	s->port = pn_admin_port(s->admin);
	if (pthread_create(&s->thread, NULL, loop_thread, s) != 0) {
		pn_admin_free(&s->admin);
		pn_loop_free(&s->loop);
		return -1;
	}
	return 0;
}

static void server_stop(struct server *s)
{
	pn_loop_stop(s->loop);
	pthread_join(s->thread, NULL);
	/* the loop thread is gone: this thread owns the loop now */
	pn_admin_free(&s->admin);
	CHECK(s->admin == NULL);
	pn_loop_free(&s->loop);
}

/* ---- a blocking HTTP client ---- */

struct client {
	int fd;
	char buf[1 << 21];
	size_t len;	/* bytes read and not yet used */
};

struct response {
	int status;
	char head[4096];	/* status line and fields, NUL-terminated */
	char *body;		/* malloc'd, NUL-terminated */
	size_t body_len;
};

static struct client *client_new(uint16_t port)
{
	struct client *c = calloc(1, sizeof(*c));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { .tv_sec = 5 };

	if (c == NULL)
		return NULL;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return NULL;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return c;
}

static void client_free(struct client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c);
}

static int client_send(struct client *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int client_send_str(struct client *c, const char *s)
{
	return client_send(c, s, strlen(s));
}

/* Reads more bytes into the buffer. Returns bytes read, 0 at EOF, -1 on an
 * error or timeout. */
static ssize_t client_fill(struct client *c)
{
	ssize_t n;

	if (c->len == sizeof(c->buf))
		return -1;
	/* EINTR happens without any signal: io_uring task work aimed at this
	 * thread interrupts a recv that has SO_RCVTIMEO set. */
	do
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		c->len += (size_t)n;
	return n;
}

static void response_free(struct response *r)
{
	free(r->body);
	r->body = NULL;
}

/* The value of field name in r->head (case-insensitive), copied to dst. */
static const char *field(const struct response *r, const char *name, char *dst, size_t size)
{
	const char *p = strstr(r->head, "\r\n");
	size_t nl = strlen(name);

	while (p != NULL && p[2] != '\0') {
		p += 2;
		const char *e = strstr(p, "\r\n");
		if (e == NULL)
			break;
		if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			snprintf(dst, size, "%.*s", (int)(e - v), v);
			return dst;
		}
		p = e;
	}
	return NULL;
}

/* Reads one response (no body when head_request). Returns 0 or -1. */
static int client_read(struct client *c, struct response *r, bool head_request)
{
	char *end;
	char v[64];

	memset(r, 0, sizeof(*r));
	for (;;) {
		c->buf[c->len < sizeof(c->buf) ? c->len : sizeof(c->buf) - 1] = '\0';
		end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (end != NULL)
			break;
		if (client_fill(c) <= 0)
			return -1;
	}
	size_t head_len = (size_t)(end - c->buf) + 4;
	if (head_len >= sizeof(r->head))
		return -1;
	memcpy(r->head, c->buf, head_len);
	r->head[head_len] = '\0';
	if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
		return -1;
	size_t body_len = 0;
	if (field(r, "Content-Length", v, sizeof(v)) != NULL)
		body_len = strtoul(v, NULL, 10);
	if (head_request || r->status == 100)
		body_len = 0;
	while (c->len < head_len + body_len) {
		if (client_fill(c) <= 0)
			return -1;
	}
	r->body = malloc(body_len + 1);
	if (r->body == NULL)
		return -1;
	memcpy(r->body, c->buf + head_len, body_len);
	r->body[body_len] = '\0';
	r->body_len = body_len;
	memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
	c->len -= head_len + body_len;
	return 0;
}

/* True when the server closed the connection (EOF or reset) with no
 * further bytes. */
static bool client_closed(struct client *c)
{
	if (c->len > 0)
		return false;
	ssize_t n = client_fill(c);
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One request on a fresh connection. */
static int request(uint16_t port, const char *text, struct response *r)
{
	struct client *c = client_new(port);
	int ret = -1;

	if (c != NULL && client_send_str(c, text) == 0)
		ret = client_read(c, r, strncmp(text, "HEAD ", 5) == 0);
	if (ret < 0 && getenv("POSTERN_TEST_DEBUG") != NULL)
		fprintf(stderr, "request failed: errno=%d buffered=%zu\n", errno, c ? c->len : 0);
	client_free(c);
	return ret;
}

/* ---- test fixtures ---- */

struct readiness {
	atomic_int postgres_ok;
	atomic_int redis_ok;
};

static void ready_cb(void *ctx, struct pn_admin_checks *checks)
{
	struct readiness *r = ctx;
	pn_admin_check(checks, "postgres", atomic_load(&r->postgres_ok), NULL);
	pn_admin_check(checks, "redis", atomic_load(&r->redis_ok),
		       atomic_load(&r->redis_ok) ? NULL : "connect: \"refused\"\n");
}

static int echo(void *ctx, const struct pn_admin_request *req, struct pn_admin_response *resp)
{
	resp->content_type = "application/octet-stream";
	resp->status = 201;
	if (pn_buf_printf(resp->body, "%s %s q=%s len=%zu:", req->method, req->path,
			  req->query != NULL ? req->query : "(none)", req->body_len) < 0)
		return -1;
	return pn_buf_append(resp->body, req->body, req->body_len);
}

static int failing(void *ctx, const struct pn_admin_request *req, struct pn_admin_response *resp)
{
	pn_buf_append_str(resp->body, "partial");
	return -1;
}

#define BIG_BODY (1536 * 1024)

static int big(void *ctx, const struct pn_admin_request *req, struct pn_admin_response *resp)
{
	uint8_t *w = pn_buf_reserve(resp->body, BIG_BODY);
	if (w == NULL)
		return -1;
	for (size_t i = 0; i < BIG_BODY; i++)
		w[i] = (uint8_t)('a' + i % 26);
	pn_buf_commit(resp->body, BIG_BODY);
	return 0;
}

static int setup_routes(struct pn_admin *a)
{
	const char *error = NULL;
	if (pn_admin_route(a, "POST", "/echo", echo, NULL, &error) < 0 ||
	    pn_admin_route(a, "PUT", "/echo", echo, NULL, &error) < 0 ||
	    pn_admin_route(a, "GET", "/fail", failing, NULL, &error) < 0 ||
	    pn_admin_route(a, "GET", "/big", big, NULL, &error) < 0) {
		fprintf(stderr, "pn_admin_route: %s\n", error);
		return -1;
	}
	/* duplicates and malformed routes are refused */
	CHECK_INT(pn_admin_route(a, "GET", "/healthz", echo, NULL, &error), -1);
	CHECK_INT(pn_admin_route(a, "G T", "/x", echo, NULL, &error), -1);
	CHECK_INT(pn_admin_route(a, "GET", "x", echo, NULL, &error), -1);
	CHECK_INT(pn_admin_route(a, "GET", "/x?y", echo, NULL, &error), -1);
	CHECK_INT(pn_admin_route(a, "GET", "/x", NULL, NULL, &error), -1);
	return 0;
}

static struct readiness readiness;
static struct pn_metrics *registry;
static struct server srv;
static bool srv_up;

/* One server with metrics, readiness and the extra routes for most tests. */
static bool start_main_server(void)
{
	struct pn_admin_settings set = { 0 };
	const char *error = NULL;
	static const char *const labels[] = { "path", NULL };
	static const double bounds[] = { 0.01, 0.1, 1 };

	registry = pn_metrics_new();
	struct pn_metric *reqs = pn_metrics_add(registry, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "test_requests_total", .help = "Requests.",
					  .labels = labels }, &error);
	struct pn_metric *lat = pn_metrics_add(registry, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "test_latency_seconds", .help = "Latency.",
					  .buckets = bounds, .bucket_count = 3 }, &error);
	if (reqs == NULL || lat == NULL)
		return false;
	pn_counter_add(pn_metric_series(reqs, PN_LABELS("/a\"b")), 7);
	pn_histogram_observe(pn_metric_series(lat, NULL), 0.05);
	pn_histogram_observe(pn_metric_series(lat, NULL), 0.5);
	pn_histogram_observe(pn_metric_series(lat, NULL), 5);

	atomic_store(&readiness.postgres_ok, 1);
	atomic_store(&readiness.redis_ok, 1);
	set.metrics = registry;
	set.ready = ready_cb;
	set.ready_ctx = &readiness;
	srv_up = server_start(&srv, &set, setup_routes) == 0;
	return srv_up;
}

static void stop_main_server(void)
{
	if (srv_up)
		server_stop(&srv);
	pn_metrics_free(&registry);
}

/* ---- tests ---- */

PN_TEST(test_healthz)
{
	struct response r;
	char v[128];

	CHECK_INT(request(srv.port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(r.body, "ok\n");
	CHECK_STR(field(&r, "Content-Type", v, sizeof(v)), "text/plain; charset=utf-8");
	CHECK(field(&r, "Date", v, sizeof(v)) != NULL);
	response_free(&r);
	/* HTTP/1.0 without Host; a query string does not change the route */
	CHECK_INT(request(srv.port, "GET /healthz?verbose=1 HTTP/1.0\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(field(&r, "Connection", v, sizeof(v)), "close");
	response_free(&r);
}

/* Value of the sample line "name{labels} value" or "name value" in text. */
static bool sample(const char *text, const char *series, double *v_r)
{
	size_t sl = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[sl] == ' ') {
			*v_r = strtod(p + sl + 1, NULL);
			return true;
		}
		p += sl;
	}
	return false;
}

PN_TEST(test_metrics)
{
	struct response r;
	char v[128];
	double d = -1;

	CHECK_INT(request(srv.port, "GET /metrics HTTP/1.1\r\nHost: t\r\n"
				    "Accept: text/plain;version=0.0.4\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	CHECK(field(&r, "Content-Type", v, sizeof(v)) != NULL &&
	      strncmp(v, "text/plain; version=0.0.4", 25) == 0);
	CHECK(strstr(r.body, "# HELP postern_test_requests_total Requests.\n"
			     "# TYPE postern_test_requests_total counter\n") != NULL);
	CHECK(sample(r.body, "postern_test_requests_total{path=\"/a\\\"b\"}", &d) && d == 7);
	CHECK(strstr(r.body, "# TYPE postern_test_latency_seconds histogram\n") != NULL);
	CHECK(sample(r.body, "postern_test_latency_seconds_bucket{le=\"0.01\"}", &d) && d == 0);
	CHECK(sample(r.body, "postern_test_latency_seconds_bucket{le=\"0.1\"}", &d) && d == 1);
	CHECK(sample(r.body, "postern_test_latency_seconds_bucket{le=\"1\"}", &d) && d == 2);
	CHECK(sample(r.body, "postern_test_latency_seconds_bucket{le=\"+Inf\"}", &d) && d == 3);
	CHECK(sample(r.body, "postern_test_latency_seconds_count", &d) && d == 3);
	CHECK(sample(r.body, "postern_test_latency_seconds_sum", &d) && d > 5.549 && d < 5.551);
	/* every line is a comment or a sample "name value" */
	for (char *line = r.body; *line != '\0';) {
		char *nl = strchr(line, '\n');
		CHECK(nl != NULL);
		if (nl == NULL)
			break;
		if (line[0] != '#')
			CHECK(memchr(line, ' ', (size_t)(nl - line)) != NULL);
		line = nl + 1;
	}
	response_free(&r);
	/* HEAD: the same length, no body */
	CHECK_INT(request(srv.port, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	CHECK(field(&r, "Content-Length", v, sizeof(v)) != NULL && atoi(v) > 100);
	CHECK_INT(r.body_len, 0);
	response_free(&r);
}

PN_TEST(test_readyz)
{
	struct response r;
	char v[128];

	CHECK_INT(request(srv.port, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(field(&r, "Content-Type", v, sizeof(v)), "application/json");
	CHECK_STR(r.body, "{\"status\":\"ready\",\"checks\":[{\"name\":\"postgres\",\"ok\":true},"
			  "{\"name\":\"redis\",\"ok\":true}]}\n");
	response_free(&r);

	atomic_store(&readiness.redis_ok, 0);
	CHECK_INT(request(srv.port, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 503);
	CHECK_STR(r.body, "{\"status\":\"not ready\",\"checks\":[{\"name\":\"postgres\",\"ok\":true},"
			  "{\"name\":\"redis\",\"ok\":false,"
			  "\"detail\":\"connect: \\\"refused\\\"\\u000a\"}]}\n");
	response_free(&r);

	atomic_store(&readiness.redis_ok, 1);
	CHECK_INT(request(srv.port, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	response_free(&r);

	/* draining (set from this thread) fails readiness, health stays fine */
	pn_admin_set_draining(srv.admin, true);
	CHECK_INT(request(srv.port, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 503);
	CHECK(strstr(r.body, "{\"name\":\"draining\",\"ok\":false,") != NULL);
	response_free(&r);
	CHECK_INT(request(srv.port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	response_free(&r);
	pn_admin_set_draining(srv.admin, false);
	CHECK_INT(request(srv.port, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	response_free(&r);
}

PN_TEST(test_not_found_and_method)
{
	struct response r;
	char v[128];

	CHECK_INT(request(srv.port, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 404);
	response_free(&r);
	CHECK_INT(request(srv.port, "GET /healthz/ HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 404);
	response_free(&r);
	CHECK_INT(request(srv.port, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
			  &r), 0);
	CHECK_INT(r.status, 405);
	CHECK_STR(field(&r, "Allow", v, sizeof(v)), "GET, HEAD");
	response_free(&r);
	CHECK_INT(request(srv.port, "DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 405);
	CHECK_STR(field(&r, "Allow", v, sizeof(v)), "POST, PUT");
	response_free(&r);
}

PN_TEST(test_handlers)
{
	struct response r;
	char v[128];

	CHECK_INT(request(srv.port, "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\n"
				    "Content-Length: 5\r\n\r\nhello", &r), 0);
	CHECK_INT(r.status, 201);
	CHECK_STR(r.body, "POST /echo q=x=1 len=5:hello");
	CHECK_STR(field(&r, "Content-Type", v, sizeof(v)), "application/octet-stream");
	response_free(&r);
	/* a failing handler gives 500, without its partial body */
	CHECK_INT(request(srv.port, "GET /fail HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 500);
	CHECK(strstr(r.body, "partial") == NULL);
	response_free(&r);
	/* a large body goes out whole (short writes resumed by the loop) */
	CHECK_INT(request(srv.port, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	CHECK_INT(r.body_len, BIG_BODY);
	bool same = r.body_len == BIG_BODY;
	for (size_t i = 0; same && i < BIG_BODY; i++)
		same = r.body[i] == (char)('a' + i % 26);
	CHECK(same);
	response_free(&r);
}

PN_TEST(test_garbage_gets_400_and_close)
{
	struct client *c = client_new(srv.port);
	struct response r;
	char v[128];

	CHECK(c != NULL);
	if (c == NULL)
		return;
	CHECK_INT(client_send_str(c, "HELLO THERE\r\n\r\nmore garbage after it"), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 400);
	CHECK_STR(field(&r, "Connection", v, sizeof(v)), "close");
	response_free(&r);
	CHECK(client_closed(c));
	client_free(c);

	/* binary junk (a TLS ClientHello start) too */
	c = client_new(srv.port);
	CHECK(c != NULL);
	if (c == NULL)
		return;
	CHECK_INT(client_send(c, "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n", 13), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 400);
	response_free(&r);
	CHECK(client_closed(c));
	client_free(c);

	/* limits map to their status codes: chunked bodies are refused */
	CHECK_INT(request(srv.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
				    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 411);
	response_free(&r);
}

PN_TEST(test_split_request)
{
	static const char text[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nUser-Agent: slow\r\n\r\n";
	struct client *c = client_new(srv.port);
	struct response r;
	int one = 1;

	CHECK(c != NULL);
	if (c == NULL)
		return;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (size_t i = 0; i < sizeof(text) - 1; i++) {
		CHECK_INT(client_send(c, text + i, 1), 0);
		usleep(500);
	}
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(r.body, "ok\n");
	response_free(&r);
	client_free(c);
}

PN_TEST(test_keep_alive_and_pipelining)
{
	struct client *c = client_new(srv.port);
	struct response r;
	char v[128];

	CHECK(c != NULL);
	if (c == NULL)
		return;
	/* two requests one after the other on one connection */
	CHECK_INT(client_send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 200);
	CHECK(field(&r, "Connection", v, sizeof(v)) == NULL);
	response_free(&r);
	CHECK_INT(client_send_str(c, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 200);
	CHECK(strncmp(r.body, "{\"status\":\"ready\"", 17) == 0);
	response_free(&r);

	/* three pipelined in one write: answered in order; the last closes */
	CHECK_INT(client_send_str(c,
		"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
		"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
		"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz"
		"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 201);
	CHECK_STR(r.body, "POST /echo q=(none) len=3:abc");
	response_free(&r);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 404);
	response_free(&r);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 201);
	CHECK_STR(r.body, "PUT /echo q=(none) len=1:z");
	CHECK_STR(field(&r, "Connection", v, sizeof(v)), "close");
	response_free(&r);
	/* the request after "Connection: close" is not answered */
	CHECK(client_closed(c));
	client_free(c);
}

PN_TEST(test_expect_continue)
{
	struct client *c = client_new(srv.port);
	struct response r;

	CHECK(c != NULL);
	if (c == NULL)
		return;
	CHECK_INT(client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
				     "Expect: 100-continue\r\n\r\n"), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 100);
	response_free(&r);
	CHECK_INT(client_send_str(c, "body"), 0);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 201);
	CHECK_STR(r.body, "POST /echo q=(none) len=4:body");
	response_free(&r);
	client_free(c);
}

PN_TEST(test_peer_half_close)
{
	/* a client that shuts its write side after the request still gets
	 * the answer, then the server closes */
	struct client *c = client_new(srv.port);
	struct response r;

	CHECK(c != NULL);
	if (c == NULL)
		return;
	CHECK_INT(client_send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	shutdown(c->fd, SHUT_WR);
	CHECK_INT(client_read(c, &r, false), 0);
	CHECK_INT(r.status, 200);
	response_free(&r);
	CHECK(client_closed(c));
	client_free(c);
}

struct sender {
	struct client *c;
	const char *data;
	size_t len;
	int result;
};

static void *sender_run(void *arg)
{
	struct sender *s = arg;
	s->result = client_send(s->c, s->data, s->len);
	return NULL;
}

#define BULK_REQUESTS 12

PN_TEST(test_backpressure)
{
	/* Many pipelined requests for large answers, each request ~10 KB, from
	 * a client that writes them all before reading anything: the server
	 * must stop answering (queue), then stop taking requests (parser full,
	 * stash, receive paused) and resume as the client reads; every answer
	 * arrives whole and in order. */
	struct client *c = client_new(srv.port);
	char pad[10000];
	char *all = malloc(BULK_REQUESTS * (sizeof(pad) + 100));
	size_t len = 0;
	struct response r;
	pthread_t th;

	CHECK(c != NULL && all != NULL);
	if (c == NULL || all == NULL) {
		client_free(c);
		free(all);
		return;
	}
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	size_t cap = BULK_REQUESTS * (sizeof(pad) + 100);
	for (int i = 0; i < BULK_REQUESTS; i++)
		len += (size_t)snprintf(all + len, cap - len, "GET /big HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\n\r\n",
				       pad);
	struct sender snd = { c, all, len, -1 };
	CHECK_INT(pthread_create(&th, NULL, sender_run, &snd), 0);
	usleep(100000); /* let the server fill up before anything is read */
	int got = 0;
	for (int i = 0; i < BULK_REQUESTS; i++) {
		if (client_read(c, &r, false) < 0)
			break;
		if (r.status == 200 && r.body_len == BIG_BODY && r.body[0] == 'a' &&
		    r.body[BIG_BODY - 1] == (char)('a' + (BIG_BODY - 1) % 26))
			got++;
		response_free(&r);
	}
	pthread_join(th, NULL);
	CHECK_INT(snd.result, 0);
	CHECK_INT(got, BULK_REQUESTS);
	client_free(c);
	free(all);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

PN_TEST(test_limits_and_idle_timeout)
{
	struct server s;
	struct pn_admin_settings set = { .max_connections = 3, .idle_timeout_ms = 300 };
	struct client *c[4] = { NULL };
	struct response r;

	if (server_start(&s, &set, NULL) < 0) {
		CHECK(0);
		return;
	}
	/* three connections, each proven accepted by a keep-alive answer */
	for (int i = 0; i < 3; i++) {
		c[i] = client_new(s.port);
		CHECK(c[i] != NULL);
		if (c[i] == NULL)
			goto out;
		CHECK_INT(client_send_str(c[i], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
		CHECK_INT(client_read(c[i], &r, false), 0);
		CHECK_INT(r.status, 200);
		response_free(&r);
	}
	/* the fourth is closed at once */
	c[3] = client_new(s.port);
	CHECK(c[3] != NULL);
	if (c[3] == NULL)
		goto out;
	client_send_str(c[3], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
	CHECK(client_closed(c[3]));
	/* /metrics is not routed without a registry */
	CHECK_INT(client_send_str(c[0], "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
	CHECK_INT(client_read(c[0], &r, false), 0);
	CHECK_INT(r.status, 404);
	response_free(&r);

	/* idle: a silent connection and a half-sent request are both closed
	 * about idle_timeout_ms after their last answer */
	CHECK_INT(client_send_str(c[1], "GET /heal"), 0);
	uint64_t start = now_ms();
	CHECK(client_closed(c[0]));
	CHECK(client_closed(c[1]));
	CHECK(client_closed(c[2]));
	uint64_t took = now_ms() - start;
	CHECK(took >= 200 && took < 3000);
	/* slots are free again */
	CHECK_INT(request(s.port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
	CHECK_INT(r.status, 200);
	response_free(&r);
out:
	for (int i = 0; i < 4; i++)
		client_free(c[i]);
	server_stop(&s);
}

PN_TEST(test_bad_listen)
{
	struct pn_loop *loop;
	const char *error = NULL;
	struct pn_admin_settings set = { .listen = "localhost:9100" };

	loop = new_loop(&error);
	CHECK(loop != NULL);
	if (loop == NULL)
		return;
	CHECK(pn_admin_new(loop, &set, &error) == NULL);
	CHECK(error != NULL && strstr(error, "numeric") != NULL);
	set.listen = "127.0.0.1";
	CHECK(pn_admin_new(loop, &set, &error) == NULL);
	set.listen = "[::1]:0";
	struct pn_admin *a = pn_admin_new(loop, &set, &error);
	if (a != NULL) { /* IPv6 may be off */
		CHECK(pn_admin_port(a) != 0);
		pn_admin_free(&a);
		CHECK(a == NULL);
	}
	/* freeing a server with connections open (one mid-request, one
	 * mid-response) releases everything (ASan checks for leaks) */
	set.listen = "127.0.0.1:0";
	a = pn_admin_new(loop, &set, &error);
	CHECK(a != NULL);
	if (a != NULL) {
		struct client *c1 = client_new(pn_admin_port(a));
		struct client *c2 = client_new(pn_admin_port(a));
		if (c1 != NULL)
			client_send_str(c1, "GET /hea");
		if (c2 != NULL)
			client_send_str(c2, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		for (int i = 0; i < 50 && pn_admin_connection_count(a) < 2; i++)
			pn_loop_run_once(loop, 10);
		CHECK_INT(pn_admin_connection_count(a), 2);
		pn_loop_run_once(loop, 10);
		pn_admin_free(&a);
		for (int i = 0; i < 5; i++)
			pn_loop_run_once(loop, 0);
		CHECK(c1 == NULL || client_closed(c1));
		client_free(c1);
		client_free(c2);
	}
	pn_loop_free(&loop);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_healthz),
		PN_TEST_CASE(test_metrics),
		PN_TEST_CASE(test_readyz),
		PN_TEST_CASE(test_not_found_and_method),
		PN_TEST_CASE(test_handlers),
		PN_TEST_CASE(test_garbage_gets_400_and_close),
		PN_TEST_CASE(test_split_request),
		PN_TEST_CASE(test_keep_alive_and_pipelining),
		PN_TEST_CASE(test_expect_continue),
		PN_TEST_CASE(test_peer_half_close),
		PN_TEST_CASE(test_backpressure),
		PN_TEST_CASE(test_limits_and_idle_timeout),
		PN_TEST_CASE(test_bad_listen),
	};
	const char *error = NULL;
	struct pn_loop *probe = new_loop(&error);
	int ret;

	if (getenv("POSTERN_TEST_DEBUG") != NULL)
		pn_log_set_level(PN_LOG_DEBUG);
	if (probe == NULL)
		return pn_test_skip("admin", error != NULL ? error : "no io_uring");
	pn_loop_free(&probe);
	if (!start_main_server()) {
		stop_main_server();
		fprintf(stderr, "admin: cannot start the server\n");
		return 1;
	}
	ret = pn_test_run("admin", cases, sizeof(cases) / sizeof(cases[0]));
	stop_main_server();
	return ret;
}
