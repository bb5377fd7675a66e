/* The admin HTTP server on the event loop: the listener, one connection
 * state per client (parser, a stash for bytes the parser cannot take yet,
 * the response queue and the response in flight), routing, and the
 * built-in /healthz, /readyz and /metrics. See postern/admin.h.
 *
 * Flow per connection: received bytes go into the parser (or the stash when
 * the parser is full); complete requests are answered in order into the
 * queue while the queue is below QUEUE_HIGH; the queue is sent one batch at
 * a time (out holds the batch the loop is sending, so the queue may grow
 * meanwhile without moving it). When the stash holds bytes, receiving is
 * paused until the client has read enough responses. A connection that must
 * close (error, "Connection: close") sends its last response, shuts down
 * its write side and reads until the client's EOF for at most LINGER_MS,
 * so that unread request bytes do not turn the close into a reset that
 * would destroy the response before the client read it.
 */
#include "postern/admin.h"
#include "postern/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_IDLE_TIMEOUT_MS 10000
#define DEFAULT_MAX_RESPONSE (8u * 1024 * 1024)
#define QUEUE_HIGH (64 * 1024)	/* stop answering while this much is unsent */
#define HEAD_ROOM 4096		/* status line and fields of one response */
#define STASH_MAX (1024 * 1024)	/* one receive batch beyond the parser */
#define LINGER_MS 2000
#define MAX_ROUTE_METHOD 32
#define MAX_ROUTE_PATH 1024
#define MAX_CHECKS_JSON (64 * 1024)

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define APPLICATION_JSON "application/json"

struct route {
	char *method;
	char *path;
	pn_admin_handler_fn *fn;
	void *ctx;
};

struct conn {
	struct pn_admin *admin;
	struct conn *prev, *next;
	pn_io_id io;
	struct pn_http_parser *parser;
	struct pn_buf stash;	/* received, not yet taken by the parser */
	struct pn_buf queue;	/* answered, not yet handed to the loop */
	struct pn_buf out;	/* being sent by the loop */
	bool sending;
	bool recv_on;
	bool close_after_send;	/* no more requests: answer what is queued, close */
	bool peer_eof;
	bool lingering;		/* write side shut, waiting for the client's EOF */
	bool closing;
};

struct pn_admin {
	struct pn_loop *loop;
	pn_io_id listener;
	uint16_t port;
	unsigned int max_connections;
	uint64_t idle_timeout_ms;
	size_t max_response;
	struct pn_http_limits limits;
	struct pn_metrics *metrics;
	pn_admin_ready_fn *ready;
	void *ready_ctx;
	atomic_bool draining;

	struct route *routes;
	size_t route_count, route_cap;
	struct conn *conns;
	unsigned int conn_count;
	struct pn_buf body;	/* a handler's response body, reused */
};

struct pn_admin_checks {
	struct pn_buf json;	/* the members of the "checks" array */
	unsigned int count;
	bool all_ok;
	bool overflow;
};

static void conn_on_recv(void *ctx, const uint8_t *data, ssize_t len);
static void conn_on_send(void *ctx, ssize_t res);
static void conn_on_timer(void *ctx);
static void conn_on_close(void *ctx);
static void listener_on_accept(void *ctx, int fd);

static const struct pn_io_handlers conn_handlers = {
	.on_recv = conn_on_recv,
	.on_send = conn_on_send,
	.on_timer = conn_on_timer,
	.on_close = conn_on_close,
};

static const struct pn_io_handlers listener_handlers = {
	.on_accept = listener_on_accept,
};

/* ---- JSON ---- */

/* A JSON string (RFC 8259 §7): quote, backslash and control bytes escaped;
 * other bytes, UTF-8 included, as they are. */
static int json_string(struct pn_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	if (pn_buf_append(b, "\"", 1) < 0)
		return -1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		int r;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			r = pn_buf_append(b, e, 2);
		} else if (c < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
			r = pn_buf_append(b, e, 6);
		} else {
			r = pn_buf_append(b, s, 1);
		}
		if (r < 0)
			return -1;
	}
	return pn_buf_append(b, "\"", 1);
}

void pn_admin_check(struct pn_admin_checks *c, const char *name, bool ok, const char *detail)
{
	size_t before = pn_buf_len(&c->json);

	if (!ok)
		c->all_ok = false;
	if (c->overflow)
		return;
	if ((c->count > 0 && pn_buf_append(&c->json, ",", 1) < 0) ||
	    pn_buf_append_str(&c->json, "{\"name\":") < 0 ||
	    json_string(&c->json, name != NULL ? name : "") < 0 ||
	    pn_buf_append_str(&c->json, ok ? ",\"ok\":true" : ",\"ok\":false") < 0 ||
	    (detail != NULL && (pn_buf_append_str(&c->json, ",\"detail\":") < 0 ||
				json_string(&c->json, detail) < 0)) ||
	    pn_buf_append(&c->json, "}", 1) < 0) {
		c->overflow = true;
		c->json.end = c->json.start + before;
		return;
	}
	c->count++;
}

/* ---- built-in routes ---- */

static int healthz(void *ctx, const struct pn_admin_request *req, struct pn_admin_response *resp)
{
	return pn_buf_append_str(resp->body, "ok\n");
}

static int readyz(void *ctx, const struct pn_admin_request *req, struct pn_admin_response *resp)
{
	struct pn_admin *a = ctx;
	struct pn_admin_checks checks;
	int r;

	pn_buf_init(&checks.json, MAX_CHECKS_JSON);
	checks.count = 0;
	checks.all_ok = true;
	checks.overflow = false;
	if (atomic_load(&a->draining))
		pn_admin_check(&checks, "draining", false, "the node is shutting down");
	if (a->ready != NULL)
		a->ready(a->ready_ctx, &checks);
	if (checks.overflow)
		checks.all_ok = false;
	resp->status = checks.all_ok ? 200 : 503;
	resp->content_type = APPLICATION_JSON;
	r = pn_buf_printf(resp->body, "{\"status\":\"%s\",\"checks\":[",
			  checks.all_ok ? "ready" : "not ready");
	if (r == 0 && pn_buf_len(&checks.json) > 0)
		r = pn_buf_append(resp->body, pn_buf_rptr(&checks.json), pn_buf_len(&checks.json));
	if (r == 0)
		r = pn_buf_append_str(resp->body, checks.overflow ?
				      "],\"error\":\"too many checks to list\"}\n" : "]}\n");
	pn_buf_free(&checks.json);
	return r;
}

static int metrics(void *ctx, const struct pn_admin_request *req, struct pn_admin_response *resp)
{
	struct pn_admin *a = ctx;

	resp->content_type = PN_METRICS_CONTENT_TYPE;
	if (pn_metrics_render(a->metrics, resp->body) < 0) {
		pn_error("event=admin_metrics_too_large max_response=%zu", a->max_response);
		return -1;
	}
	return 0;
}

/* ---- routes ---- */

static bool token_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++) {
		unsigned char c = (unsigned char)*s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", c) != NULL))
			return false;
	}
	return n > 0 && n <= max;
}

static bool path_ok(const char *s)
{
	size_t n = 0;

	if (s[0] != '/')
		return false;
	for (; *s != '\0'; s++, n++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
			return false;
	}
	return n <= MAX_ROUTE_PATH;
}

int pn_admin_route(struct pn_admin *a, const char *method, const char *path,
		   pn_admin_handler_fn *fn, void *ctx, const char **error_r)
{
	struct route *r;

	if (method == NULL || !token_ok(method, MAX_ROUTE_METHOD)) {
		*error_r = "route method is not an HTTP token";
		return -1;
	}
	if (path == NULL || !path_ok(path)) {
		*error_r = "route path must start with '/' and hold no blank, '?' or '#'";
		return -1;
	}
	if (fn == NULL) {
		*error_r = "route without a handler";
		return -1;
	}
	for (size_t i = 0; i < a->route_count; i++) {
		if (strcmp(a->routes[i].method, method) == 0 &&
		    strcmp(a->routes[i].path, path) == 0) {
			*error_r = "method and path already routed";
			return -1;
		}
	}
	if (a->route_count == a->route_cap) {
		size_t cap = a->route_cap != 0 ? a->route_cap * 2 : 8;
		struct route *n = realloc(a->routes, cap * sizeof(*n));
		if (n == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		a->routes = n;
		a->route_cap = cap;
	}
	r = &a->routes[a->route_count];
	r->method = strdup(method);
	r->path = strdup(path);
	if (r->method == NULL || r->path == NULL) {
		free(r->method);
		free(r->path);
		*error_r = "out of memory";
		return -1;
	}
	r->fn = fn;
	r->ctx = ctx;
	a->route_count++;
	return 0;
}

/* The Allow field for a path: its methods, plus HEAD where GET is routed. */
static void allow_field(const struct pn_admin *a, const char *path, char *dst, size_t size)
{
	size_t o = 0;
	bool get = false, head = false;
	int n;

	n = snprintf(dst, size, "Allow: ");
	o = (size_t)n;
	for (size_t i = 0; i < a->route_count; i++) {
		const char *m = a->routes[i].method;
		if (strcmp(a->routes[i].path, path) != 0)
			continue;
		get = get || strcmp(m, "GET") == 0;
		head = head || strcmp(m, "HEAD") == 0;
		if (o < size) {
			n = snprintf(dst + o, size - o, "%s%s", o > 7 ? ", " : "", m);
			o += n > 0 ? (size_t)n : 0;
		}
	}
	if (get && !head && o < size) {
		n = snprintf(dst + o, size - o, ", HEAD");
		o += n > 0 ? (size_t)n : 0;
	}
	if (o + 3 > size) {
		/* cannot happen with MAX_ROUTE_METHOD-sized methods and a few
		 * routes per path; keep the field well-formed anyway */
		snprintf(dst, size, "Allow: GET\r\n");
		return;
	}
	snprintf(dst + o, size - o, "\r\n");
}

/* ---- connections ---- */

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	pn_io_close(c->admin->loop, c->io);
}

/* Queues one response; on failure (out of memory) the connection closes. */
static void queue_response(struct conn *c, const struct pn_http_response *resp)
{
	if (pn_http_write_response(&c->queue, resp) < 0) {
		pn_warn("event=admin_queue_failed status=%d", resp->status);
		conn_close(c);
	}
	if (!resp->keep_alive)
		c->close_after_send = true;
}

static void answer(struct conn *c, const struct pn_http_request *hr)
{
	struct pn_admin *a = c->admin;
	const struct route *match = NULL;
	bool head = strcmp(hr->method, "HEAD") == 0, path_known = false;
	char allow[512], quoted[160];

	for (size_t i = 0; i < a->route_count; i++) {
		const struct route *r = &a->routes[i];
		if (strcmp(r->path, hr->path) != 0)
			continue;
		path_known = true;
		if (strcmp(r->method, hr->method) == 0)
			match = r;
		else if (head && match == NULL && strcmp(r->method, "GET") == 0)
			match = r;
	}

	pn_buf_reset(&a->body);
	struct pn_admin_response resp = { .status = 200, .content_type = TEXT_PLAIN,
					  .body = &a->body };
	const char *extra = NULL;
	if (match != NULL) {
		struct pn_admin_request req = {
			.method = hr->method, .path = hr->path, .query = hr->query,
			.body = hr->body, .body_len = hr->body_len, .http = hr,
		};
		int r = match->fn(match->ctx, &req, &resp);
		if (r == 0 && (resp.status < 100 || resp.status > 599 || resp.content_type == NULL ||
			       strpbrk(resp.content_type, "\r\n") != NULL)) {
			pn_error("event=admin_bad_handler_response path=%s status=%d", match->path,
				 resp.status);
			r = -1;
		}
		if (r < 0) {
			pn_buf_reset(&a->body);
			pn_buf_append_str(&a->body, "internal error\n");
			resp.status = 500;
			resp.content_type = TEXT_PLAIN;
		}
	} else if (path_known) {
		allow_field(a, hr->path, allow, sizeof(allow));
		extra = allow;
		resp.status = 405;
		pn_buf_append_str(&a->body, "method not allowed\n");
	} else {
		resp.status = 404;
		pn_buf_append_str(&a->body, "not found\n");
	}
	if (pn_log_enabled(PN_LOG_DEBUG)) {
		pn_log_quote(quoted, sizeof(quoted), hr->path, strlen(hr->path));
		pn_debug("event=admin_request method=%s path=%s status=%d bytes=%zu", hr->method,
			 quoted, resp.status, pn_buf_len(&a->body));
	}
	queue_response(c, &(struct pn_http_response){
		.status = resp.status, .content_type = resp.content_type,
		.body = pn_buf_len(&a->body) > 0 ? pn_buf_rptr(&a->body) : NULL,
		.body_len = pn_buf_len(&a->body), .extra_headers = extra,
		.keep_alive = hr->keep_alive && !c->peer_eof, .head_only = head });
	/* a big body (metrics) is not kept between requests */
	if (a->body.cap > QUEUE_HIGH)
		pn_buf_free(&a->body);
}

static void answer_error(struct conn *c)
{
	int status = pn_http_parser_error_status(c->parser);
	const char *why = pn_http_parser_error(c->parser);
	char body[160];
	int n;

	pn_debug("event=admin_bad_request status=%d reason=\"%s\"", status, why);
	n = snprintf(body, sizeof(body), "%s\n", why != NULL ? why : "bad request");
	queue_response(c, &(struct pn_http_response){
		.status = status, .content_type = TEXT_PLAIN, .body = body,
		.body_len = n > 0 ? (size_t)n : 0, .keep_alive = false });
}

static void start_send(struct conn *c)
{
	struct pn_buf t;

	if (c->closing || c->sending || pn_buf_len(&c->queue) == 0)
		return;
	t = c->out;
	c->out = c->queue;
	c->queue = t;
	if (pn_io_send(c->admin->loop, c->io, pn_buf_rptr(&c->out), pn_buf_len(&c->out)) < 0) {
		pn_warn("event=admin_send_failed errno=%d", errno);
		conn_close(c);
		return;
	}
	c->sending = true;
}

/* Everything queued went out: close, or shut the write side and wait. */
static void maybe_finish(struct conn *c)
{
	struct pn_loop *loop = c->admin->loop;

	if (c->closing || !c->close_after_send || c->sending || pn_buf_len(&c->queue) > 0)
		return;
	if (c->peer_eof) {
		conn_close(c);
		return;
	}
	if (!c->lingering) {
		c->lingering = true;
		shutdown(pn_io_fd(loop, c->io), SHUT_WR);
		pn_io_timer_set(loop, c->io, LINGER_MS);
	}
}

/* Answers what can be answered and sets receiving and sending to match. */
static void pump(struct conn *c)
{
	struct pn_loop *loop = c->admin->loop;
	struct pn_http_request req;

	while (!c->closing && !c->close_after_send) {
		if (pn_buf_len(&c->stash) > 0) {
			size_t n = pn_http_parser_feed(c->parser, pn_buf_rptr(&c->stash),
						       pn_buf_len(&c->stash));
			pn_buf_consume(&c->stash, n);
		}
		if (pn_buf_len(&c->queue) >= QUEUE_HIGH)
			break; /* the client reads too slowly: wait */
		int r = pn_http_parser_next(c->parser, &req);
		if (r == 1) {
			answer(c, &req);
			pn_io_timer_set(loop, c->io, c->admin->idle_timeout_ms);
			continue;
		}
		if (r < 0) {
			answer_error(c);
			break;
		}
		if (pn_http_parser_take_continue(c->parser) &&
		    pn_buf_append_str(&c->queue, PN_HTTP_CONTINUE) < 0) {
			conn_close(c);
			break;
		}
		if (pn_buf_len(&c->stash) > 0) {
			/* next() dropped the request it returned last: room */
			size_t n = pn_http_parser_feed(c->parser, pn_buf_rptr(&c->stash),
						       pn_buf_len(&c->stash));
			pn_buf_consume(&c->stash, n);
			if (n > 0)
				continue;
			/* a full parser that wants more cannot happen (see
			 * pn_http_parser_feed); do not spin if it does */
			pn_error("event=admin_parser_stuck");
			conn_close(c);
			break;
		}
		if (c->peer_eof)
			c->close_after_send = true; /* a partial request is dropped */
		break;
	}
	if (c->closing)
		return;

	/* Receive while there is room; after the last response only to
	 * drain (and drop) what the client still sends. */
	bool want = !c->peer_eof && (c->close_after_send || pn_buf_len(&c->stash) == 0);
	if (want && !c->recv_on) {
		if (pn_io_recv(loop, c->io) < 0) {
			conn_close(c);
			return;
		}
		c->recv_on = true;
	} else if (!want && c->recv_on) {
		pn_io_recv_stop(loop, c->io);
		c->recv_on = false;
	}
	start_send(c);
	maybe_finish(c);
}

static void conn_on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct conn *c = ctx;

	if (c == NULL || c->closing)
		return;
	if (len < 0) {
		conn_close(c);
		return;
	}
	if (len == 0) {
		c->peer_eof = true;
		c->recv_on = false; /* the loop stopped receiving */
		if (c->lingering) {
			conn_close(c);
			return;
		}
		pump(c);
		return;
	}
	if (c->close_after_send)
		return; /* nothing after the last request is read */
	size_t n = 0;
	if (pn_buf_len(&c->stash) == 0)
		n = pn_http_parser_feed(c->parser, data, (size_t)len);
	if (n < (size_t)len && pn_buf_append(&c->stash, data + n, (size_t)len - n) < 0) {
		pn_warn("event=admin_stash_full");
		conn_close(c);
		return;
	}
	pump(c);
}

static void conn_on_send(void *ctx, ssize_t res)
{
	struct conn *c = ctx;

	if (c == NULL || c->closing)
		return;
	c->sending = false;
	if (res < 0) {
		conn_close(c);
		return;
	}
	if (c->out.cap > QUEUE_HIGH)
		pn_buf_free(&c->out); /* do not keep a big metrics page around */
	else
		pn_buf_reset(&c->out);
	pump(c);
}

static void conn_on_timer(void *ctx)
{
	struct conn *c = ctx;

	if (c == NULL)
		return;
	pn_debug("event=admin_timeout lingering=%d", (int)c->lingering);
	conn_close(c);
}

static void conn_free(struct conn *c)
{
	pn_http_parser_free(&c->parser);
	pn_buf_free(&c->stash);
	pn_buf_free(&c->queue);
	pn_buf_free(&c->out);
	free(c);
}

static void conn_unlink(struct conn *c)
{
	struct pn_admin *a = c->admin;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	a->conn_count--;
}

static void conn_on_close(void *ctx)
{
	struct conn *c = ctx;

	if (c == NULL)
		return;
	conn_unlink(c);
	conn_free(c);
}

static void listener_on_accept(void *ctx, int fd)
{
	struct pn_admin *a = ctx;
	struct conn *c;
	int one = 1;

	if (a == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (fd < 0) {
		pn_warn("event=admin_accept_failed errno=%d", -fd);
		return;
	}
	if (a->conn_count >= a->max_connections) {
		pn_debug("event=admin_connection_refused reason=limit limit=%u",
			 a->max_connections);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->parser = pn_http_parser_new(&a->limits)) == NULL) {
		free(c);
		close(fd);
		return;
	}
	c->admin = a;
	pn_buf_init(&c->stash, STASH_MAX);
	/* queue and out trade places for every send: same bound */
	pn_buf_init(&c->queue, QUEUE_HIGH + a->max_response + HEAD_ROOM);
	pn_buf_init(&c->out, QUEUE_HIGH + a->max_response + HEAD_ROOM);
	c->io = pn_io_add(a->loop, fd, 0, &conn_handlers, c);
	if (c->io == PN_IO_NONE) {
		pn_warn("event=admin_io_add_failed errno=%d", errno);
		close(fd);
		conn_free(c);
		return;
	}
	c->next = a->conns;
	if (a->conns != NULL)
		a->conns->prev = c;
	a->conns = c;
	a->conn_count++;
	if (pn_io_timer_set(a->loop, c->io, a->idle_timeout_ms) < 0) {
		conn_close(c);
		return;
	}
	pump(c); /* starts receiving */
}

/* ---- the server ---- */

/* Splits "host:port" / "[v6]:port" / ":port" for pn_listen_tcp(). */
static int split_listen(const char *s, char *host, size_t hostsize, uint16_t *port_r,
			bool *any_r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *colon;
	size_t hl;

	if (pn_parse_hostport(s, &ss, &len) < 0)
		return -1;
	*port_r = ss.ss_family == AF_INET6 ?
		ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
		ntohs(((struct sockaddr_in *)&ss)->sin_port);
	colon = strrchr(s, ':');
	hl = (size_t)(colon - s);
	if (hl >= hostsize)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*any_r = hl == 0;
	return 0;
}

struct pn_admin *pn_admin_new(struct pn_loop *loop, const struct pn_admin_settings *set,
			      const char **error_r)
{
	struct pn_admin *a;
	char host[128];
	uint16_t port;
	bool any;
	int fd;

	if (set->listen == NULL ||
	    split_listen(set->listen, host, sizeof(host), &port, &any) < 0) {
		*error_r = "admin listen address is not a numeric host:port";
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	a->loop = loop;
	a->max_connections = set->max_connections != 0 ? set->max_connections :
							 DEFAULT_MAX_CONNECTIONS;
	a->idle_timeout_ms = set->idle_timeout_ms != 0 ? set->idle_timeout_ms :
							 DEFAULT_IDLE_TIMEOUT_MS;
	a->max_response = set->max_response != 0 ? set->max_response : DEFAULT_MAX_RESPONSE;
	a->limits = set->limits;
	a->metrics = set->metrics;
	a->ready = set->ready;
	a->ready_ctx = set->ready_ctx;
	pn_buf_init(&a->body, a->max_response);

	if (pn_admin_route(a, "GET", "/healthz", healthz, a, error_r) < 0 ||
	    pn_admin_route(a, "GET", "/readyz", readyz, a, error_r) < 0 ||
	    (a->metrics != NULL && pn_admin_route(a, "GET", "/metrics", metrics, a, error_r) < 0))
		goto fail;

	/* ":port" means every IPv4 address, as pn_parse_hostport reads it */
	fd = pn_listen_tcp(any ? "0.0.0.0" : host, port, 128, error_r);
	if (fd < 0)
		goto fail;
	a->port = pn_socket_port(fd);
	a->listener = pn_io_add(loop, fd, 0, &listener_handlers, a);
	if (a->listener == PN_IO_NONE) {
		close(fd);
		*error_r = "cannot add the admin listener to the loop";
		goto fail;
	}
	if (pn_io_accept(loop, a->listener) < 0) {
		*error_r = "cannot start accepting admin connections";
		pn_io_set_ctx(loop, a->listener, NULL);
		pn_io_close(loop, a->listener);
		goto fail;
	}
	pn_info("event=admin_listen addr=%s port=%u", any ? "0.0.0.0" : host,
		(unsigned int)a->port);
	return a;
fail:
	for (size_t i = 0; i < a->route_count; i++) {
		free(a->routes[i].method);
		free(a->routes[i].path);
	}
	free(a->routes);
	pn_buf_free(&a->body);
	free(a);
	return NULL;
}

void pn_admin_free(struct pn_admin **ap)
{
	struct pn_admin *a = *ap;
	struct conn *c, *next;

	if (a == NULL)
		return;
	*ap = NULL;
	/* Closes run to completion later; their callbacks get a NULL ctx and
	 * do nothing, so everything can be freed now. */
	for (c = a->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->closing)
			pn_io_close(a->loop, c->io);
		pn_io_set_ctx(a->loop, c->io, NULL);
		conn_free(c);
	}
	pn_io_close(a->loop, a->listener);
	pn_io_set_ctx(a->loop, a->listener, NULL);
	for (size_t i = 0; i < a->route_count; i++) {
		free(a->routes[i].method);
		free(a->routes[i].path);
	}
	free(a->routes);
	pn_buf_free(&a->body);
	free(a);
}

uint16_t pn_admin_port(const struct pn_admin *a)
{
	return a->port;
}

unsigned int pn_admin_connection_count(const struct pn_admin *a)
{
	return a->conn_count;
}

void pn_admin_set_draining(struct pn_admin *a, bool draining)
{
	atomic_store(&a->draining, draining);
}
