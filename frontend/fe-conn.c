/* Client connections of the frontend: accept, the PROXY header (trusted
 * peers) or its refusal (anyone else), implicit TLS and STARTTLS on memory
 * BIOs, input and output buffering with backpressure, the idle and closing
 * timers, and driving the protocol adapter (fe-protocol.h). The contract is
 * in fe-conn.h.
 *
 * Buffers of a connection, each bounded:
 *   pre        raw bytes before the session starts (PROXY header, or the
 *              first bytes of an untrusted peer being checked for one)
 *   in         plaintext the session did not take yet (the socket is not
 *              read while it holds anything)
 *   tls_plain  output plaintext the TLS engine did not accept yet
 *   out        bytes for the socket, queued
 *   wbuf       bytes for the socket, being sent (one send in flight)
 * The session is asked for more output only while out + wbuf + tls_plain +
 * TLS pending output stay below output_buffer.
 *
 * Ending: a connection is freed once its io is closed (on_close) and its
 * session was destroyed (the adapter's next() returned -1, which it does
 * only when no asynchronous work of its own is outstanding).
 */
#include "fe-conn.h"

#include "postern/buf.h"
#include "postern/log.h"
#include "postern/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PRE_MAX (PN_PROXY_V2_MAX_HEADER + 65536)
#define IN_MAX (256 * 1024)
#define TLS_READ_CHUNK 16384
/* What a single SEND may add beyond output_buffer: engines hand out at
 * most a few tens of KiB at once; TLS adds a record's overhead. */
#define OUT_SLACK (1024 * 1024)

enum phase {
	PH_PROXY,	/* trusted peer: waiting for the PROXY header */
	PH_SNIFF,	/* untrusted peer: checking its first bytes for a PROXY signature */
	PH_SESSION,	/* bytes go to the session (through TLS if any) */
};

struct fe_conn {
	struct fe_conn_env *env;
	struct fe_conn *prev, *next;
	pn_io_id io;
	enum fe_service svc;
	const struct fe_protocol *proto;
	void *session;
	struct fe_session_info info;
	char session_id[48];
	struct sockaddr_storage peer;
	char peer_str[64];
	enum phase phase;
	enum fe_session_state state;
	bool counted;			/* state counted in the sessions gauge */
	bool proxy_local;		/* PROXY LOCAL: the balancer's own health check */

	struct pn_buf pre, in, tls_plain, out, wbuf;

	struct pn_tls_conn *tls;
	bool tls_starttls;		/* current TLS session came from STARTTLS */
	bool tls_hs_done;		/* handshake completion seen */
	bool tls_shut;			/* our close_notify queued */
	char tls_version[32];		/* facts from the PROXY SSL TLV */
	char tls_cipher[128];

	bool sending;
	bool recv_on;
	bool sock_dead;			/* peer gone or socket failed: no more I/O */
	bool disc_told;			/* proto->disconnected() called */
	bool session_over;		/* next() returned -1 */
	bool close_wanted;		/* CLOSE: close once the output is out */
	bool lingering;			/* SHUT_WR sent, waiting for EOF */
	bool io_closing, io_closed;
	bool in_pump, pump_again;
	bool shutdown_asked;
	bool session_started;		/* create() succeeded once */

	uint64_t accepted_ms, last_activity_ms, shutdown_ms, linger_ms, tls_start_ms;
	uint64_t timer_deadline;	/* 0: none armed */
	uint64_t bytes_in, bytes_out;
	const char *close_reason;
};

static void on_recv(void *ctx, const uint8_t *data, ssize_t len);
static void on_send(void *ctx, ssize_t res);
static void on_timer(void *ctx);
static void on_close(void *ctx);

static const struct pn_io_handlers conn_handlers = {
	.on_recv = on_recv,
	.on_send = on_send,
	.on_timer = on_timer,
	.on_close = on_close,
};

static void pump(struct fe_conn *c);

static uint64_t now_ms(struct fe_conn *c)
{
	return pn_loop_now_ms(c->env->loop);
}

/* ---- accessors for adapters ---- */

const struct fe_session_info *fe_conn_info(const struct fe_conn *conn)
{
	return &conn->info;
}

struct fe_thread *fe_conn_thread(const struct fe_conn *conn)
{
	return conn->env->thread;
}

const char *fe_conn_tls_version(const struct fe_conn *conn)
{
	if (conn->tls != NULL && conn->tls_hs_done)
		return pn_tls_protocol(conn->tls);
	return conn->tls_version[0] != '\0' ? conn->tls_version : NULL;
}

const char *fe_conn_tls_cipher(const struct fe_conn *conn)
{
	if (conn->tls != NULL && conn->tls_hs_done)
		return pn_tls_cipher(conn->tls);
	return conn->tls_cipher[0] != '\0' ? conn->tls_cipher : NULL;
}

void fe_conn_set_state(struct fe_conn *c, enum fe_session_state state)
{
	struct fe_metrics *m = c->env->metrics;

	if (state >= FE_STATE_COUNT || (c->counted && c->state == state))
		return;
	if (m != NULL) {
		if (c->counted)
			pn_gauge_dec(m->session_series[c->svc][c->state]);
		pn_gauge_inc(m->session_series[c->svc][state]);
	}
	c->counted = true;
	c->state = state;
}

struct fe_conn *fe_conn_env_next(struct fe_conn_env *env, struct fe_conn *conn)
{
	return conn == NULL ? env->conns : conn->next;
}

bool fe_conn_shutdown_asked(const struct fe_conn *conn)
{
	return conn->shutdown_asked;
}

/* ---- output ---- */

static size_t out_pending(const struct fe_conn *c)
{
	size_t n = pn_buf_len(&c->out) + pn_buf_len(&c->wbuf) + pn_buf_len(&c->tls_plain);

	if (c->tls != NULL)
		n += pn_tls_pending_out(c->tls);
	return n;
}

/* Marks the socket unusable: no more reads or writes. The session is told
 * from pump(). */
static void sock_fail(struct fe_conn *c, const char *reason)
{
	if (c->sock_dead)
		return;
	c->sock_dead = true;
	if (c->close_reason == NULL)
		c->close_reason = reason;
	pn_buf_free(&c->out);
	pn_buf_free(&c->tls_plain);
	pn_buf_free(&c->in);
	pn_buf_free(&c->pre);
}

/* Moves ciphertext the TLS engine produced into out. */
static void tls_move_out(struct fe_conn *c)
{
	while (c->tls != NULL && pn_tls_pending_out(c->tls) > 0) {
		size_t want = pn_tls_pending_out(c->tls);
		uint8_t *p = pn_buf_reserve(&c->out, want);

		if (p == NULL) {
			sock_fail(c, "output overflow");
			return;
		}
		pn_buf_commit(&c->out, pn_tls_take_out(c->tls, p, want));
	}
}

/* Gives the TLS engine the plaintext it did not take before. */
static void tls_push_plain(struct fe_conn *c)
{
	const char *error;

	while (c->tls != NULL && pn_buf_len(&c->tls_plain) > 0 && !c->sock_dead) {
		ssize_t n = pn_tls_write(c->tls, pn_buf_rptr(&c->tls_plain),
					 pn_buf_len(&c->tls_plain), &error);
		if (n < 0) {
			pn_debug("event=tls_error session=%s error=%s", c->session_id, error);
			sock_fail(c, "tls error");
			return;
		}
		if (n == 0)
			break;
		pn_buf_consume(&c->tls_plain, (size_t)n);
		tls_move_out(c);
	}
	if (pn_buf_len(&c->tls_plain) == 0)
		pn_buf_shrink_if_empty(&c->tls_plain);
}

/* Queues plaintext from the session (through TLS when active). */
static void queue_plain(struct fe_conn *c, const uint8_t *data, size_t len)
{
	const char *error;

	if (c->sock_dead || c->disc_told || len == 0)
		return;
	if (c->tls == NULL) {
		if (pn_buf_append(&c->out, data, len) < 0)
			sock_fail(c, "output overflow");
		return;
	}
	if (pn_buf_len(&c->tls_plain) == 0) {
		ssize_t n = pn_tls_write(c->tls, data, len, &error);
		if (n < 0) {
			pn_debug("event=tls_error session=%s error=%s", c->session_id, error);
			sock_fail(c, "tls error");
			return;
		}
		data += n;
		len -= (size_t)n;
		tls_move_out(c);
	}
	if (len > 0 && pn_buf_append(&c->tls_plain, data, len) < 0)
		sock_fail(c, "output overflow");
}

/* Starts a send if none is in flight. */
static void flush(struct fe_conn *c)
{
	struct pn_buf tmp;

	if (c->sending || c->sock_dead || c->io_closing || pn_buf_len(&c->out) == 0)
		return;
	tmp = c->wbuf;
	c->wbuf = c->out;
	c->out = tmp;
	pn_buf_reset(&c->out);
	if (pn_io_send(c->env->loop, c->io, pn_buf_rptr(&c->wbuf), pn_buf_len(&c->wbuf)) < 0) {
		sock_fail(c, "send failed");
		return;
	}
	c->sending = true;
}

/* ---- input ---- */

static void update_recv(struct fe_conn *c)
{
	bool want = !c->sock_dead && !c->io_closing &&
		    (c->lingering || pn_buf_len(&c->in) == 0);

	if (want == c->recv_on)
		return;
	if (want) {
		if (pn_io_recv(c->env->loop, c->io) < 0) {
			sock_fail(c, "recv failed");
			return;
		}
	} else {
		pn_io_recv_stop(c->env->loop, c->io);
	}
	c->recv_on = want;
}

/* Plaintext for the session: fed at once when nothing waits before it. */
static void deliver_plain(struct fe_conn *c, const uint8_t *data, size_t len)
{
	size_t n = 0;

	if (c->session == NULL || c->session_over || c->sock_dead)
		return;
	if (pn_buf_len(&c->in) == 0)
		n = c->proto->feed(c->session, data, len);
	if (n < len && pn_buf_append(&c->in, data + n, len - n) < 0)
		sock_fail(c, "input overflow");
}

/* Feeds buffered input. Returns true if the session took anything. */
static bool feed_pending(struct fe_conn *c)
{
	bool progress = false;

	while (pn_buf_len(&c->in) > 0 && c->session != NULL && !c->session_over) {
		size_t n = c->proto->feed(c->session, pn_buf_rptr(&c->in), pn_buf_len(&c->in));
		if (n == 0)
			break;
		pn_buf_consume(&c->in, n);
		progress = true;
	}
	if (pn_buf_len(&c->in) == 0)
		pn_buf_shrink_if_empty(&c->in);
	return progress;
}

static void tls_check_handshake(struct fe_conn *c)
{
	if (c->tls_hs_done || c->tls == NULL || !pn_tls_handshake_done(c->tls))
		return;
	c->tls_hs_done = true;
	fe_metrics_tls(c->env->metrics, c->svc, c->tls_starttls, true);
	pn_debug("event=tls_ok session=%s protocol=%s cipher=%s resumed=%d", c->session_id,
		 pn_tls_protocol(c->tls), pn_tls_cipher(c->tls),
		 pn_tls_session_reused(c->tls) ? 1 : 0);
	if (c->state == FE_STATE_CONNECTING)
		fe_conn_set_state(c, FE_STATE_UNAUTHENTICATED);
	if (c->tls_starttls && c->session != NULL && !c->session_over)
		c->proto->tls_started(c->session);
}

/* Decrypts what the TLS engine holds while the session takes it. Returns
 * true if any plaintext was delivered. */
static bool tls_read_more(struct fe_conn *c)
{
	uint8_t buf[TLS_READ_CHUNK];
	const char *error;
	bool progress = false;

	while (c->tls != NULL && !c->sock_dead && pn_buf_len(&c->in) == 0) {
		ssize_t n = pn_tls_read(c->tls, buf, sizeof(buf), &error);

		tls_check_handshake(c);
		tls_move_out(c);
		if (n > 0) {
			deliver_plain(c, buf, (size_t)n);
			progress = true;
			continue;
		}
		if (n == PN_TLS_AGAIN)
			break;
		if (n == PN_TLS_CLOSED) {
			sock_fail(c, "client closed tls");
		} else {
			if (!c->tls_hs_done)
				fe_metrics_tls(c->env->metrics, c->svc, c->tls_starttls, false);
			pn_info("event=tls_failed session=%s client=%s handshake=%s error=%s",
				c->session_id, c->info.client_str,
				c->tls_hs_done ? "done" : "incomplete", error);
			/* Send the alert that tells the client why. */
			tls_move_out(c);
			c->close_wanted = true;
			c->close_reason = "tls error";
			if (c->session != NULL && !c->disc_told) {
				c->disc_told = true;
				c->proto->disconnected(c->session);
			}
		}
		break;
	}
	return progress;
}

/* Raw bytes from the socket once the session runs. */
static void stream_in(struct fe_conn *c, const uint8_t *data, size_t len)
{
	const char *error;

	if (c->sock_dead || len == 0)
		return;
	if (c->tls == NULL) {
		deliver_plain(c, data, len);
		return;
	}
	if (c->disc_told)
		return; /* TLS failed; waiting to close */
	if (pn_tls_feed(c->tls, data, len, &error) < 0) {
		pn_info("event=tls_failed session=%s client=%s error=%s", c->session_id,
			c->info.client_str, error);
		sock_fail(c, "tls input overflow");
		return;
	}
	tls_read_more(c);
}

/* ---- session start ---- */

static void format_client(struct fe_conn *c)
{
	const struct sockaddr *sa = (const struct sockaddr *)&c->info.client;

	pn_format_addr(sa, c->info.client_str, sizeof(c->info.client_str));
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->info.client_ip,
			  sizeof(c->info.client_ip));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
			  c->info.client_ip, sizeof(c->info.client_ip));
	else
		snprintf(c->info.client_ip, sizeof(c->info.client_ip), "unknown");
}

static int start_session(struct fe_conn *c)
{
	const char *error;

	format_client(c);
	c->info.secured = pn_cidr_list_match(c->env->plaintext_auth,
					     (const struct sockaddr *)&c->info.client);
	if (fe_service_implicit_tls(c->svc)) {
		if (c->env->tls == NULL)
			return -1;
		c->tls = pn_tls_conn_new(c->env->tls, NULL, &error);
		if (c->tls == NULL) {
			pn_warn("event=tls_conn_failed session=%s error=%s", c->session_id, error);
			return -1;
		}
		c->info.tls = true;
		c->tls_start_ms = now_ms(c);
	}
	c->info.tls_available = c->env->tls != NULL && !c->info.tls;
	if (c->info.tls && c->tls == NULL) {
		c->info.tls_version = c->tls_version[0] != '\0' ? c->tls_version : NULL;
		c->info.tls_cipher = c->tls_cipher[0] != '\0' ? c->tls_cipher : NULL;
	}
	if (c->info.tls)
		c->info.secured = true;
	c->session = c->proto->create(c, &c->info, &error);
	if (c->session == NULL) {
		pn_warn("event=session_failed session=%s protocol=%s error=%s", c->session_id,
			c->proto->name, error);
		return -1;
	}
	c->session_started = true;
	fe_conn_set_state(c, c->tls != NULL ? FE_STATE_CONNECTING : FE_STATE_UNAUTHENTICATED);
	/* The balancer's health checks (PROXY LOCAL, several a second per
	 * listener) log at debug level, so that info shows the clients. */
	pn_log(c->proxy_local ? PN_LOG_DEBUG : PN_LOG_INFO,
	       "event=connect session=%s service=%s client=%s peer=%s tls=%s", c->session_id,
	       fe_service_name(c->svc), c->info.client_str, c->peer_str,
	       c->tls != NULL ? "implicit" : c->info.tls ? "proxy" : "no");
	return 0;
}

/* Trusted peer: the bytes so far may hold the PROXY header. */
static void proxy_in(struct fe_conn *c, const uint8_t *data, size_t len)
{
	struct pn_proxy_header hdr;
	const char *error;
	int n;

	if (pn_buf_append(&c->pre, data, len) < 0) {
		fe_conn_abort(c, "proxy header too long");
		return;
	}
	n = pn_proxy_decode(pn_buf_rptr(&c->pre), pn_buf_len(&c->pre), 0, &hdr, &error);
	if (n == 0) {
		if (pn_buf_len(&c->pre) >= PN_PROXY_V2_MAX_HEADER) {
			fe_metrics_connection(c->env->metrics, c->svc, "proxy_bad");
			fe_conn_abort(c, "proxy header too long");
		}
		return;
	}
	if (n < 0) {
		pn_warn("event=proxy_bad session=%s peer=%s error=%s", c->session_id,
			c->peer_str, error);
		fe_metrics_connection(c->env->metrics, c->svc, "proxy_bad");
		fe_conn_abort(c, "bad proxy header");
		return;
	}
	if (hdr.command == PN_PROXY_CMD_PROXY && hdr.has_addrs)
		c->info.client = hdr.src;
	c->proxy_local = hdr.command == PN_PROXY_CMD_LOCAL;
	if (hdr.has_tls && (hdr.tls.client & PN_PP2_CLIENT_SSL)) {
		/* The balancer terminated TLS for this client. */
		c->info.tls = true;
		snprintf(c->tls_version, sizeof(c->tls_version), "%s", hdr.tls.version);
		snprintf(c->tls_cipher, sizeof(c->tls_cipher), "%s", hdr.tls.cipher);
	}
	c->phase = PH_SESSION;
	if (start_session(c) < 0) {
		fe_conn_abort(c, "session start failed");
		return;
	}
	fe_metrics_connection(c->env->metrics, c->svc, c->proxy_local ? "local" : "accepted");
	if (pn_buf_len(&c->pre) > (size_t)n) {
		struct pn_buf rest = c->pre;

		pn_buf_init(&c->pre, PRE_MAX);
		pn_buf_consume(&rest, (size_t)n);
		stream_in(c, pn_buf_rptr(&rest), pn_buf_len(&rest));
		pn_buf_free(&rest);
	} else {
		pn_buf_free(&c->pre);
	}
}

/* Untrusted peer: refuse a PROXY header, pass anything else on. */
static const char proxy_v1_sig[] = "PROXY ";

static void sniff_in(struct fe_conn *c, const uint8_t *data, size_t len)
{
	size_t have, n1 = sizeof(proxy_v1_sig) - 1;
	const uint8_t *p;
	bool v1, v2;

	if (pn_buf_append(&c->pre, data, len) < 0) {
		fe_conn_abort(c, "input overflow");
		return;
	}
	p = pn_buf_rptr(&c->pre);
	have = pn_buf_len(&c->pre);
	v2 = memcmp(p, pn_proxy_v2_signature, have < PN_PROXY_V2_SIG_LEN ? have : PN_PROXY_V2_SIG_LEN) == 0;
	v1 = memcmp(p, proxy_v1_sig, have < n1 ? have : n1) == 0;
	if ((v2 && have >= PN_PROXY_V2_SIG_LEN) || (v1 && have >= n1)) {
		pn_warn("event=proxy_refused session=%s peer=%s reason=untrusted_peer",
			c->session_id, c->peer_str);
		fe_metrics_connection(c->env->metrics, c->svc, "proxy_untrusted");
		fe_conn_abort(c, "proxy header from untrusted peer");
		return;
	}
	if (v1 || v2)
		return; /* could still become one: wait */
	c->phase = PH_SESSION;
	{
		struct pn_buf rest = c->pre;

		pn_buf_init(&c->pre, PRE_MAX);
		stream_in(c, pn_buf_rptr(&rest), pn_buf_len(&rest));
		pn_buf_free(&rest);
	}
}

/* ---- the pump ---- */

static void do_action(struct fe_conn *c, const struct fe_action *act)
{
	const char *error;

	switch (act->type) {
	case FE_ACT_SEND:
		queue_plain(c, act->data, act->len);
		break;
	case FE_ACT_START_TLS:
		if (c->sock_dead)
			break;
		if (c->env->tls == NULL || c->tls != NULL) {
			sock_fail(c, "starttls impossible");
			break;
		}
		/* Plaintext that arrived after the STARTTLS command is never
		 * given to the TLS session (command injection). */
		pn_buf_free(&c->in);
		c->tls = pn_tls_conn_new(c->env->tls, NULL, &error);
		if (c->tls == NULL) {
			pn_warn("event=tls_conn_failed session=%s error=%s", c->session_id, error);
			sock_fail(c, "tls setup failed");
			break;
		}
		c->tls_starttls = true;
		c->tls_start_ms = now_ms(c);
		break;
	case FE_ACT_CLOSE:
		c->close_wanted = true;
		if (c->close_reason == NULL)
			c->close_reason = act->reason != NULL ? act->reason : "closed";
		break;
	}
}

static void conn_free(struct fe_conn *c)
{
	struct fe_conn_env *env = c->env;
	uint64_t ms = now_ms(c) - c->accepted_ms;

	if (c->counted && env->metrics != NULL)
		pn_gauge_dec(env->metrics->session_series[c->svc][c->state]);
	pn_log(c->session_started && !c->proxy_local ? PN_LOG_INFO : PN_LOG_DEBUG,
	       "event=disconnect session=%s service=%s client=%s reason=\"%s\" "
	       "duration_ms=%" PRIu64 " bytes_in=%" PRIu64 " bytes_out=%" PRIu64,
	       c->session_id, fe_service_name(c->svc), c->info.client_str,
	       c->close_reason != NULL ? c->close_reason : "closed", ms, c->bytes_in,
	       c->bytes_out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		env->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	env->conn_count--;
	pn_tls_conn_free(&c->tls);
	pn_buf_free(&c->pre);
	pn_buf_free(&c->in);
	pn_buf_free(&c->tls_plain);
	pn_buf_free(&c->out);
	pn_buf_free(&c->wbuf);
	free(c);
	if (env->on_conn_freed != NULL)
		env->on_conn_freed(env);
}

static void arm_timer(struct fe_conn *c);

static void io_close(struct fe_conn *c)
{
	if (c->io_closing)
		return;
	c->io_closing = true;
	c->recv_on = false;
	pn_io_close(c->env->loop, c->io);
}

/* Decides whether the connection can close or be freed. Returns true if c
 * was freed. */
static bool maybe_finish(struct fe_conn *c)
{
	if (c->session != NULL && c->session_over) {
		c->proto->destroy(&c->session);
		c->session = NULL;
	}
	if (!c->io_closing) {
		bool no_session = c->session_started && c->session == NULL;

		if (c->sock_dead) {
			io_close(c);
		} else if ((c->close_wanted || no_session) && out_pending(c) == 0 &&
			   !c->sending) {
			if (c->tls != NULL && c->tls_hs_done && !c->tls_shut && !c->disc_told) {
				const char *error;

				c->tls_shut = true;
				if (pn_tls_shutdown(c->tls, &error) == 0)
					tls_move_out(c);
				if (pn_buf_len(&c->out) > 0) {
					flush(c);
					return false;
				}
			}
			if (!c->lingering) {
				int fd = pn_io_fd(c->env->loop, c->io);

				fe_conn_set_state(c, FE_STATE_CLOSING);
				if (fd < 0 || shutdown(fd, SHUT_WR) < 0) {
					io_close(c);
				} else {
					c->lingering = true;
					c->linger_ms = now_ms(c);
					pn_buf_free(&c->in);
					update_recv(c);
					arm_timer(c);
				}
			}
		} else if (c->close_wanted) {
			fe_conn_set_state(c, FE_STATE_CLOSING);
		}
	}
	if (c->io_closed && c->session == NULL) {
		conn_free(c);
		return true;
	}
	return false;
}

static void pump(struct fe_conn *c)
{
	if (c->in_pump) {
		c->pump_again = true;
		return;
	}
	c->in_pump = true;
	do {
		c->pump_again = false;
		if (c->session == NULL || c->session_over)
			break;
		if (c->sock_dead && !c->disc_told) {
			c->disc_told = true;
			c->proto->disconnected(c->session);
		}
		feed_pending(c);
		if (c->tls != NULL && pn_buf_len(&c->in) == 0 && c->phase == PH_SESSION)
			tls_read_more(c);
		while (!c->session_over) {
			struct fe_action act;
			int r;

			if (!c->sock_dead && out_pending(c) >= c->env->output_buffer)
				break;
			r = c->proto->next(c->session, &act);
			if (r == 0)
				break;
			if (r < 0) {
				c->session_over = true;
				break;
			}
			do_action(c, &act);
			if (c->sock_dead && !c->disc_told) {
				c->disc_told = true;
				c->proto->disconnected(c->session);
			}
		}
		if (!c->session_over && pn_buf_len(&c->in) > 0 && feed_pending(c))
			c->pump_again = true;
		if (!c->session_over && c->tls != NULL && pn_buf_len(&c->in) == 0 &&
		    c->phase == PH_SESSION && !c->sock_dead && !c->disc_told &&
		    tls_read_more(c))
			c->pump_again = true;
	} while (c->pump_again);
	c->in_pump = false;
	flush(c);
	update_recv(c);
	maybe_finish(c);
}

void fe_conn_wakeup(struct fe_conn *conn)
{
	pump(conn);
}

/* ---- timers ---- */

static bool in_handshake(const struct fe_conn *c)
{
	return c->tls != NULL && !c->tls_hs_done;
}

static uint64_t next_deadline(struct fe_conn *c)
{
	uint64_t d;

	if (c->io_closing)
		return 0;
	if (c->lingering)
		return c->linger_ms + c->env->linger_ms;
	if (c->phase == PH_PROXY)
		return c->accepted_ms + c->env->handshake_timeout_ms;
	if (c->shutdown_asked)
		return c->shutdown_ms + c->env->goodbye_timeout_ms;
	d = c->last_activity_ms + c->env->idle_timeout_ms[c->svc];
	if (in_handshake(c) && c->tls_start_ms + c->env->handshake_timeout_ms < d)
		d = c->tls_start_ms + c->env->handshake_timeout_ms;
	return d;
}

static void arm_timer(struct fe_conn *c)
{
	uint64_t d = next_deadline(c), now = now_ms(c);

	if (d == 0 || d == c->timer_deadline)
		return;
	/* The timer fires at the old deadline when activity moved the idle
	 * deadline later; it re-arms then (one timer per idle period). */
	if (c->timer_deadline != 0 && c->timer_deadline < d && c->timer_deadline > now)
		return;
	c->timer_deadline = d;
	pn_io_timer_set(c->env->loop, c->io, d > now ? d - now : 1);
}

static void on_timer(void *ctx)
{
	struct fe_conn *c = ctx;
	uint64_t now = now_ms(c), d;

	c->timer_deadline = 0;
	d = next_deadline(c);
	if (d == 0)
		return;
	if (now < d) {
		arm_timer(c);
		return;
	}
	if (c->lingering) {
		io_close(c);
		maybe_finish(c);
		return;
	}
	if (c->phase == PH_PROXY) {
		pn_info("event=proxy_timeout session=%s peer=%s", c->session_id, c->peer_str);
		fe_metrics_connection(c->env->metrics, c->svc, "proxy_timeout");
		fe_conn_abort(c, "proxy header timeout");
		return;
	}
	if (c->shutdown_asked) {
		fe_conn_abort(c, "goodbye not delivered in time");
		return;
	}
	if (in_handshake(c) && now >= c->tls_start_ms + c->env->handshake_timeout_ms) {
		pn_info("event=tls_timeout session=%s client=%s", c->session_id,
			c->info.client_str);
		fe_metrics_tls(c->env->metrics, c->svc, c->tls_starttls, false);
		fe_conn_abort(c, "tls handshake timeout");
		return;
	}
	pn_info("event=idle_timeout session=%s client=%s", c->session_id, c->info.client_str);
	fe_conn_shutdown(c, FE_SHUTDOWN_IDLE);
}

/* ---- loop callbacks ---- */

static void on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct fe_conn *c = ctx;

	if (len <= 0) {
		c->recv_on = false;
		if (c->tls != NULL && len == 0 && !c->sock_dead && !c->lingering)
			pn_tls_feed_eof(c->tls);
		if (c->lingering) {
			io_close(c);
			maybe_finish(c);
			return;
		}
		if (c->phase != PH_SESSION && c->session == NULL) {
			c->close_reason = len == 0 ? "client closed before the session" : "recv error";
			c->sock_dead = true;
			io_close(c);
			maybe_finish(c);
			return;
		}
		sock_fail(c, len == 0 ? "client closed" : "connection error");
		pump(c);
		return;
	}
	c->bytes_in += (uint64_t)len;
	if (c->env->metrics != NULL)
		pn_counter_add(c->env->metrics->bytes_in[c->svc], (uint64_t)len);
	if (c->lingering || c->sock_dead)
		return; /* discarded */
	c->last_activity_ms = now_ms(c);
	switch (c->phase) {
	case PH_PROXY:
		proxy_in(c, data, (size_t)len);
		if (c->io_closing) {
			maybe_finish(c);
			return;
		}
		break;
	case PH_SNIFF:
		sniff_in(c, data, (size_t)len);
		if (c->io_closing) {
			maybe_finish(c);
			return;
		}
		break;
	case PH_SESSION:
		stream_in(c, data, (size_t)len);
		break;
	}
	arm_timer(c);
	pump(c);
}

static void on_send(void *ctx, ssize_t res)
{
	struct fe_conn *c = ctx;

	c->sending = false;
	if (res < 0) {
		sock_fail(c, "send error");
		pump(c);
		return;
	}
	c->bytes_out += (uint64_t)res;
	if (c->env->metrics != NULL)
		pn_counter_add(c->env->metrics->bytes_out[c->svc], (uint64_t)res);
	pn_buf_reset(&c->wbuf);
	if (pn_buf_len(&c->out) == 0)
		pn_buf_shrink_if_empty(&c->wbuf);
	c->last_activity_ms = now_ms(c);
	tls_push_plain(c);
	pump(c);
}

static void on_close(void *ctx)
{
	struct fe_conn *c = ctx;

	c->io_closed = true;
	c->sending = false;
	if (c->session != NULL && !c->session_over) {
		c->sock_dead = true;
		pump(c);
		return;
	}
	maybe_finish(c);
}

/* ---- public ---- */

int fe_conn_accept(struct fe_conn_env *env, int fd, enum fe_service svc,
		   const struct fe_protocol *proto)
{
	struct fe_conn *c;
	socklen_t plen = sizeof(struct sockaddr_storage);
	bool trusted;

	if (env->conn_count >= env->max_conns) {
		fe_metrics_connection(env->metrics, svc, "limit");
		close(fd);
		return -1;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return -1;
	}
	if (getpeername(fd, (struct sockaddr *)&c->peer, &plen) < 0)
		c->peer.ss_family = AF_UNSPEC;
	pn_format_addr((struct sockaddr *)&c->peer, c->peer_str, sizeof(c->peer_str));
	c->env = env;
	c->svc = svc;
	c->proto = proto;
	c->info.service = svc;
	c->info.client = c->peer;
	format_client(c);
	c->info.node = env->node;
	c->info.hostname = env->hostname;
	c->info.session_id = c->session_id;
	snprintf(c->session_id, sizeof(c->session_id), "%" PRIx64 ".%u.%" PRIu64,
		 env->start_time, env->thread_index, ++env->session_seq);
	pn_buf_init(&c->pre, PRE_MAX);
	pn_buf_init(&c->in, IN_MAX);
	pn_buf_init(&c->tls_plain, env->output_buffer + OUT_SLACK);
	pn_buf_init(&c->out, 2 * env->output_buffer + OUT_SLACK);
	pn_buf_init(&c->wbuf, 2 * env->output_buffer + OUT_SLACK);
	c->accepted_ms = c->last_activity_ms = pn_loop_now_ms(env->loop);
	c->io = pn_io_add(env->loop, fd, 0, &conn_handlers, c);
	if (c->io == PN_IO_NONE) {
		close(fd);
		free(c);
		return -1;
	}
	c->next = env->conns;
	if (env->conns != NULL)
		env->conns->prev = c;
	env->conns = c;
	env->conn_count++;

	trusted = pn_cidr_list_match(env->proxy_trusted, (const struct sockaddr *)&c->peer);
	if (trusted) {
		c->phase = PH_PROXY;
		fe_conn_set_state(c, FE_STATE_CONNECTING);
	} else {
		c->phase = PH_SNIFF;
		if (start_session(c) < 0) {
			fe_metrics_connection(env->metrics, svc, "error");
			c->sock_dead = true;
			c->close_reason = "session start failed";
			io_close(c);
			return 0;
		}
		fe_metrics_connection(env->metrics, svc, "accepted");
	}
	arm_timer(c);
	c->recv_on = false;
	update_recv(c);
	pump(c);
	return 0;
}

void fe_conn_shutdown(struct fe_conn *c, enum fe_shutdown_reason reason)
{
	if (c->shutdown_asked || c->io_closing)
		return;
	c->shutdown_asked = true;
	c->shutdown_ms = now_ms(c);
	if (c->session == NULL || c->session_over || c->phase == PH_PROXY || in_handshake(c)) {
		fe_conn_abort(c, reason == FE_SHUTDOWN_DRAIN ? "drain" :
			      reason == FE_SHUTDOWN_KICK ? "kick" : "idle");
		return;
	}
	if (c->close_reason == NULL)
		c->close_reason = reason == FE_SHUTDOWN_DRAIN ? "drain" :
			reason == FE_SHUTDOWN_KICK ? "kick" : "idle timeout";
	c->proto->shutdown(c->session, reason);
	arm_timer(c);
	pump(c);
}

void fe_conn_abort(struct fe_conn *c, const char *reason)
{
	c->shutdown_asked = true;
	if (c->close_reason == NULL)
		c->close_reason = reason;
	if (!c->sock_dead)
		sock_fail(c, reason);
	io_close(c);
	if (c->session != NULL)
		pump(c);
	else
		maybe_finish(c);
}
