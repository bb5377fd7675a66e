/* Health checks on the control loop.
 *
 * Per backend, a protocol probe every check_interval: connect, send a
 * PROXY v2 LOCAL header when the upstreams expect PROXY headers, read the
 * greeting and require its prefix ("* OK", "+OK", "220"), then say
 * LOGOUT/QUIT and wait briefly for the close (so the frontend does not see
 * a reset). Implicit-TLS backends, and all when check_probe is off, get a
 * connect-only probe. Per server with an admin address, GET /readyz: 200
 * is ready, 503 naming the "draining" check means draining (no new
 * connections, not a failure), anything else fails.
 *
 * Each result goes through the rise/fall state machine (lb-check.c); a
 * refused or reset connection takes the backend out at once, a timeout
 * counts as one failure. Passive results come from the relay threads:
 * every connect failure they saw is a hard failure here.
 */
#include "lb.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "postern/buf.h"
#include "postern/log.h"
#include "postern/proxy.h"

#define CHECK_IN_MAX 16384
#define GREETING_MAX_LINE 4096
#define CHECK_LINGER_MS 1000

enum check_kind { CHECK_GREETING, CHECK_CONNECT, CHECK_HTTP };

struct lb_check {
	struct lb *lb;
	enum check_kind kind;
	struct lb_backend *be;		/* probes */
	struct lb_server *srv;		/* /readyz */
	struct lb_check **owner;	/* &be->check or &srv->check, or NULL */
	pn_io_id io;
	int fd;
	uint64_t start_ms;
	struct pn_buf in;
	bool reported;
	bool lingering;
	bool closing;
};

static void check_close(struct lb_check *chk)
{
	if (chk->closing)
		return;
	chk->closing = true;
	pn_io_close(chk->lb->loop, chk->io);
}

static bool hard_error(int err)
{
	return err == ECONNREFUSED || err == ECONNRESET || err == EPIPE;
}

/* One result of a check. detail is copied. */
static void check_report(struct lb_check *chk, bool ok, bool hard, bool draining,
			 const char *detail)
{
	struct lb *lb = chk->lb;
	uint64_t now = pn_loop_now_ms(lb->loop);
	unsigned int rise = (unsigned int)lb->cfg.check_rise;
	unsigned int fall = (unsigned int)lb->cfg.check_fall;
	uint64_t next = chk->start_ms + lb->cfg.check_interval_ms;
	enum lb_health_change ch;

	if (chk->reported || chk->owner == NULL)
		return;
	chk->reported = true;
	if (chk->kind == CHECK_HTTP) {
		struct lb_server *s = chk->srv;

		s->last_check_ms = now;
		snprintf(s->last_check, sizeof(s->last_check), "%s", detail);
		s->next_check_ms = next > now ? next : now;
		if (!ok)
			pn_counter_inc(s->m_check_failures);
		if (draining != s->ready_draining) {
			s->ready_draining = draining;
			pn_info("event=server_%s server=%s via=readyz",
				draining ? "draining" : "ready", s->name);
		}
		ch = lb_health_report(&s->ready, ok, hard, rise, fall, now);
		if (ch != LB_HEALTH_SAME)
			pn_log(ch == LB_HEALTH_WENT_UP ? PN_LOG_INFO : PN_LOG_WARN,
			       "event=server_%s server=%s check=readyz detail=\"%s\"",
			       ch == LB_HEALTH_WENT_UP ? "up" : "down", s->name, s->last_check);
	} else {
		struct lb_backend *b = chk->be;

		b->last_check_ms = now;
		b->last_check_latency_ms = (uint32_t)(now - chk->start_ms);
		snprintf(b->last_check, sizeof(b->last_check), "%s", detail);
		b->next_check_ms = next > now ? next : now;
		if (!ok)
			pn_counter_inc(b->m_check_failures);
		ch = lb_health_report(&b->probe, ok, hard, rise, fall, now);
		if (ch != LB_HEALTH_SAME)
			pn_log(ch == LB_HEALTH_WENT_UP ? PN_LOG_INFO : PN_LOG_WARN,
			       "event=backend_%s backend=%s proto=%s addr=%s detail=\"%s\"",
			       ch == LB_HEALTH_WENT_UP ? "up" : "down", b->name,
			       lb_protos[b->proto].name, b->addr_text, b->last_check);
	}
	lb_update_weights(lb);
}

static void check_fail(struct lb_check *chk, int err, const char *what)
{
	char detail[96];

	snprintf(detail, sizeof(detail), "%s: %s", what, strerror(err));
	check_report(chk, false, hard_error(err), false, detail);
	check_close(chk);
}

static int send_all(int fd, const void *data, size_t len)
{
	/* Small writes on a fresh socket: the send buffer takes them whole. */
	ssize_t n = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

	return n == (ssize_t)len ? 0 : -1;
}

static void check_connected(void *ctx, int res)
{
	struct lb_check *chk = ctx;
	struct lb *lb = chk->lb;

	if (chk->closing)
		return;
	if (res < 0) {
		check_fail(chk, -res, "connect");
		return;
	}
	if (chk->kind == CHECK_CONNECT) {
		check_report(chk, true, false, false, "connected");
		check_close(chk);
		return;
	}
	if (chk->kind == CHECK_GREETING && lb->cfg.proxy_protocol == LB_PROXY_V2) {
		struct pn_proxy_header h;
		uint8_t hdr[64];
		const char *err = NULL;
		int n;

		pn_proxy_header_init(&h); /* LOCAL: a check by the proxy itself */
		n = pn_proxy_v2_encode(&h, hdr, sizeof(hdr), &err);
		if (n < 0 || send_all(chk->fd, hdr, (size_t)n) < 0) {
			check_fail(chk, errno, "send");
			return;
		}
	} else if (chk->kind == CHECK_HTTP) {
		char req[256];
		int n = snprintf(req, sizeof(req),
				 "GET /readyz HTTP/1.1\r\nHost: %s\r\nUser-Agent: postern-balancer\r\n"
				 "Connection: close\r\n\r\n", chk->srv->admin_text);

		if (n <= 0 || (size_t)n >= sizeof(req) || send_all(chk->fd, req, (size_t)n) < 0) {
			check_fail(chk, errno, "send");
			return;
		}
	}
	if (pn_io_recv(lb->loop, chk->io) < 0)
		check_fail(chk, errno, "recv");
}

static void greeting_result(struct lb_check *chk)
{
	const char *prefix = lb_protos[chk->be->proto].greeting_prefix;
	int r = lb_greeting_check(prefix, pn_buf_rptr(&chk->in), pn_buf_len(&chk->in),
				  GREETING_MAX_LINE);
	char line[64], detail[96];

	if (r == 0)
		return;
	if (r > 0) {
		const char *logout = lb_protos[chk->be->proto].logout;

		check_report(chk, true, false, false, "greeting ok");
		/* Say goodbye and wait for the close; the result stands. */
		if (send_all(chk->fd, logout, strlen(logout)) < 0) {
			check_close(chk);
			return;
		}
		chk->lingering = true;
		pn_io_timer_set(chk->lb->loop, chk->io, CHECK_LINGER_MS);
		return;
	}
	pn_log_quote(line, sizeof(line), (const char *)pn_buf_rptr(&chk->in),
		     pn_buf_len(&chk->in) > 40 ? 40 : pn_buf_len(&chk->in));
	snprintf(detail, sizeof(detail), "bad greeting %s", line);
	check_report(chk, false, false, false, detail);
	check_close(chk);
}

static void http_result(struct lb_check *chk, bool eof)
{
	struct lb_readyz rz;
	int r = lb_readyz_parse(pn_buf_rptr(&chk->in), pn_buf_len(&chk->in), eof,
				CHECK_IN_MAX, &rz);
	char detail[96];

	if (r == 0)
		return;
	if (r < 0) {
		check_report(chk, false, false, false, "readyz: malformed answer");
	} else if (rz.status == 200) {
		check_report(chk, true, false, false, "readyz 200");
	} else if (rz.draining) {
		/* Alive and saying so: not a failure, just no new work. */
		check_report(chk, true, false, true, "readyz 503 draining");
	} else {
		snprintf(detail, sizeof(detail), "readyz %d", rz.status);
		check_report(chk, false, false, false, detail);
	}
	check_close(chk);
}

static void check_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct lb_check *chk = ctx;

	if (chk->closing)
		return;
	if (chk->lingering) {
		if (len <= 0)
			check_close(chk);
		return;
	}
	if (len < 0) {
		check_fail(chk, (int)-len, "recv");
		return;
	}
	if (len == 0) {
		if (chk->kind == CHECK_HTTP) {
			http_result(chk, true);
			if (!chk->closing)
				check_close(chk);
		} else {
			check_report(chk, false, false, false, "closed before the greeting");
			check_close(chk);
		}
		return;
	}
	if (pn_buf_append(&chk->in, data, (size_t)len) < 0) {
		check_report(chk, false, false, false, "answer too long");
		check_close(chk);
		return;
	}
	if (chk->kind == CHECK_HTTP)
		http_result(chk, false);
	else
		greeting_result(chk);
}

static void check_timer(void *ctx)
{
	struct lb_check *chk = ctx;

	if (!chk->lingering)
		check_report(chk, false, false, false, "timeout");
	check_close(chk);
}

static void check_closed(void *ctx)
{
	struct lb_check *chk = ctx;

	chk->lb->nchecks--;
	if (chk->owner != NULL && *chk->owner == chk)
		*chk->owner = NULL;
	pn_buf_free(&chk->in);
	free(chk);
}

static const struct pn_io_handlers check_handlers = {
	.on_connect = check_connected,
	.on_recv = check_recv,
	.on_timer = check_timer,
	.on_close = check_closed,
};

static void check_start(struct lb *lb, enum check_kind kind, struct lb_backend *be,
			struct lb_server *srv, const struct sockaddr_storage *addr,
			socklen_t addr_len, uint64_t now)
{
	struct lb_check *chk = calloc(1, sizeof(*chk));
	const char *err = NULL;
	uint64_t *next = be != NULL ? &be->next_check_ms : &srv->next_check_ms;

	*next = now + lb->cfg.check_interval_ms; /* if anything below fails */
	if (chk == NULL)
		return;
	chk->lb = lb;
	chk->kind = kind;
	chk->be = be;
	chk->srv = srv;
	chk->owner = be != NULL ? &be->check : &srv->check;
	chk->start_ms = now;
	pn_buf_init(&chk->in, CHECK_IN_MAX);
	chk->fd = pn_socket_tcp(addr->ss_family, &err);
	if (chk->fd < 0) {
		pn_error("event=check_socket_failed error=%s", err);
		free(chk);
		return;
	}
	chk->io = pn_io_add(lb->loop, chk->fd, 0, &check_handlers, chk);
	if (chk->io == PN_IO_NONE) {
		close(chk->fd);
		free(chk);
		return;
	}
	lb->nchecks++;
	*chk->owner = chk;
	if (pn_io_timer_set(lb->loop, chk->io, lb->cfg.check_timeout_ms) < 0 ||
	    pn_io_connect(lb->loop, chk->io, (const struct sockaddr *)addr, addr_len) < 0)
		check_fail(chk, errno, "connect");
}

void lb_health_tick(struct lb *lb, uint64_t now)
{
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next) {
		enum check_kind kind;

		if (b->retired || b->check != NULL || now < b->next_check_ms)
			continue;
		kind = lb->cfg.check_probe && !lb_protos[b->proto].implicit_tls ?
			       CHECK_GREETING : CHECK_CONNECT;
		check_start(lb, kind, b, NULL, &b->addr, b->addr_len, now);
	}
	if (!lb->cfg.check_http)
		return;
	for (struct lb_server *s = lb->servers; s != NULL; s = s->next) {
		if (s->retired || !s->has_admin || s->check != NULL || now < s->next_check_ms)
			continue;
		check_start(lb, CHECK_HTTP, NULL, s, &s->admin, s->admin_len, now);
	}
}

void lb_health_passive(struct lb *lb, uint64_t now)
{
	bool changed = false;

	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next) {
		uint64_t fails = atomic_load(&b->passive_fails);

		if (fails == b->passive_seen)
			continue;
		b->passive_seen = fails;
		b->last_check_ms = now;
		snprintf(b->last_check, sizeof(b->last_check), "connect failed (passive)");
		if (lb_health_report(&b->probe, false, true, (unsigned int)lb->cfg.check_rise,
				     (unsigned int)lb->cfg.check_fall, now) == LB_HEALTH_WENT_DOWN)
			pn_warn("event=backend_down backend=%s proto=%s addr=%s "
				"detail=\"connect failed (passive)\"", b->name,
				lb_protos[b->proto].name, b->addr_text);
		/* Check again soon rather than a full interval later. */
		if (b->check == NULL && b->next_check_ms > now + lb->cfg.check_interval_ms)
			b->next_check_ms = now + lb->cfg.check_interval_ms;
		changed = true;
	}
	if (!changed)
		return;
	lb_update_weights(lb);
	/* eff_weight now keeps them out: the workers' flag may go. */
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next)
		if (atomic_load(&b->passive_fails) == b->passive_seen)
			atomic_store(&b->passive_down, false);
}

void lb_check_cancel(struct lb *lb, struct lb_check **check)
{
	struct lb_check *chk = *check;

	if (chk == NULL)
		return;
	*check = NULL;
	chk->owner = NULL;
	check_close(chk);
}
