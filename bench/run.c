/* The load generator's engine: one io_uring loop per thread, each running
 * the script on its share of the connections (closed loop, open loop on a
 * schedule, or idle), with per-thread histograms and counters merged at the
 * end; CPU from /proc/stat and server memory from /proc/PID/smaps_rollup.
 * See run.h.
 */
#include "run.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "postern/buf.h"
#include "postern/loop.h"
#include "postern/tls.h"

const char *const bn_err_names[BN_ERR_COUNT] = {
	"connect", "reset", "closed", "reply", "timeout", "tls", "protocol", "local",
};

#define IN_MAX (16u * 1024 * 1024)	/* unread received bytes per connection */
#define OUT_MAX (1u * 1024 * 1024)	/* one send job's own bytes */
#define TLS_OUT_MAX (1u * 1024 * 1024)
#define SWEEP_MS 50
#define RETRY_MS 10

struct shared {
	const struct bn_config *cfg;
	atomic_bool recording;
	atomic_uint_fast64_t units_started;
	atomic_uint_fast64_t units_done;
	atomic_uint_fast64_t user_next;
	atomic_uint_fast64_t held;
	atomic_uint_fast64_t idle_failed;
	atomic_uint_fast64_t msg_id;
	_Atomic uint64_t t0;		/* start of the recorded interval; 0 before */
};

enum conn_state { CS_IDLE, CS_WAIT, CS_CONNECTING, CS_RUNNING, CS_DONE };
enum wait_kind { W_NONE, W_UNIT, W_SLEEP, W_RETRY };
enum unit_go { UB_GO, UB_WAIT, UB_STOP };

struct thread;

struct conn {
	struct thread *t;
	unsigned int idx;
	pn_io_id sock, timer;
	enum conn_state state;
	enum wait_kind wait;
	unsigned int pc;
	uint64_t loop_left[BN_MAX_LOOP_DEPTH];
	struct bn_reader rd;
	bool in_expect;
	int append_phase;
	struct pn_buf in;
	/* the send job: own bytes, then up to two external pieces */
	struct pn_buf own;
	size_t own_off;
	const uint8_t *ext[2];
	size_t ext_len[2];
	bool job, send_busy;
	struct pn_buf hdr;
	const struct bn_body *body;
	/* TLS */
	struct pn_tls_conn *tls;
	struct pn_buf tls_out, tls_fly;
	/* session */
	char user[192];
	char tag[64];
	uint64_t nsend;
	uint64_t t_unit, t_step, t_connect, deadline;
	bool unit_fresh, unit_open, eof, held;
	bool replied;			/* this session read its first reply */
	uint64_t stream_send_left, stream_recv_left;
	unsigned int chunk;
};

/* Buffers that a closing socket's send may still read, freed at on_close. */
struct grave {
	struct thread *t;
	struct pn_buf own, fly;
};

struct thread {
	unsigned int id;
	pthread_t th;
	struct shared *sh;
	const struct bn_config *cfg;
	struct pn_loop *loop;
	struct conn *conns;
	unsigned int nconns;
	pn_io_id sweep, drain;
	bool stopping, forced, finished;
	unsigned int active, closing;
	uint64_t next_intended, interval_ns;
	unsigned int target_next;
	unsigned int connecting, idle_next;
	uint8_t *pattern;
	size_t pattern_len;
	uint64_t rng;
	struct bn_results *r;
	const char *start_err;
	int rc;
	atomic_int up;		/* 0 starting, 1 running, -1 failed */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool recording(const struct thread *t)
{
	return atomic_load_explicit(&t->sh->recording, memory_order_relaxed);
}

static void advance(struct conn *c);
static void pump(struct conn *c);
static void on_recv(void *ctx, const uint8_t *data, ssize_t len);
static void on_send(void *ctx, ssize_t res);
static void on_connect(void *ctx, int res);
static void grave_close(void *ctx);
static const struct pn_io_handlers sock_handlers = {
	.on_recv = on_recv,
	.on_send = on_send,
	.on_connect = on_connect,
	.on_close = grave_close,
};
static void session_start(struct conn *c);
static void conn_error(struct conn *c, enum bn_err kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------ bookkeeping */

static void check_finish(struct thread *t)
{
	if (t->stopping && t->active == 0 && t->closing == 0 && !t->finished) {
		t->finished = true;
		pn_loop_stop(t->loop);
	}
}

static void conn_done(struct conn *c)
{
	if (c->state == CS_DONE)
		return;
	if (c->wait != W_NONE) {
		pn_io_timer_cancel(c->t->loop, c->timer);
		c->wait = W_NONE;
	}
	c->state = CS_DONE;
	c->t->active--;
	check_finish(c->t);
}

/* Time since start; 0 when start lies ahead (an open-loop unit started
 * up to half a millisecond before its intended time). */
static uint64_t since(uint64_t start)
{
	uint64_t now = now_ns();
	return now > start ? now - start : 0;
}

static void record_label(struct conn *c, int label, uint64_t start)
{
	struct thread *t = c->t;
	if (label >= 0 && recording(t))
		bn_hist_record(&t->r->labels[label], since(start));
}

/* One event of the time series, while recording. */
static void series_event(struct thread *t, enum bn_series_kind kind)
{
	uint64_t t0 = atomic_load_explicit(&t->sh->t0, memory_order_acquire);

	if (t->r->series.bucket_ns == 0)
		return;
	if (t0 == 0) {
		t->r->series.outside++;
		return;
	}
	bn_series_add(&t->r->series, t0, now_ns(), kind);
}

static void unit_done(struct conn *c)
{
	struct thread *t = c->t;
	c->unit_open = false;
	if (recording(t)) {
		t->r->units++;
		bn_hist_record(&t->r->unit, since(c->t_unit));
		series_event(t, BN_SERIES_DONE);
	}
	atomic_fetch_add_explicit(&t->sh->units_done, 1, memory_order_relaxed);
}

/* May a new unit start? Sets c->t_unit (intended start) on UB_GO; on
 * UB_WAIT a timer fires at the intended start. */
static enum unit_go unit_begin(struct conn *c)
{
	struct thread *t = c->t;
	const struct bn_config *cfg = t->cfg;

	if (t->stopping)
		return UB_STOP;
	if (cfg->count > 0 &&
	    atomic_fetch_add_explicit(&t->sh->units_started, 1, memory_order_relaxed) >= cfg->count)
		return UB_STOP;
	uint64_t now = now_ns();
	c->unit_fresh = true;
	c->unit_open = true;
	if (cfg->mode == BN_MODE_OPEN) {
		uint64_t intended = t->next_intended;
		t->next_intended += t->interval_ns;
		c->t_unit = intended;
		if (intended > now + 500000) {
			uint64_t ms = (intended - now + 999999) / 1000000;
			pn_io_timer_set(t->loop, c->timer, ms);
			c->wait = W_UNIT;
			return UB_WAIT;
		}
		return UB_GO;
	}
	c->t_unit = now;
	return UB_GO;
}

/* ------------------------------------------------------------ sockets */

static void grave_close(void *ctx)
{
	struct grave *g = ctx;
	struct thread *t = g->t;
	pn_buf_free(&g->own);
	pn_buf_free(&g->fly);
	free(g);
	t->closing--;
	check_finish(t);
}

static void close_sock(struct conn *c)
{
	struct thread *t = c->t;

	if (c->sock != PN_IO_NONE) {
		struct grave *g = calloc(1, sizeof(*g));
		if (g == NULL) {
			/* keep the buffers (not freed) and leave the io alone */
			pn_io_close(t->loop, c->sock);
		} else {
			g->t = t;
			if (c->send_busy) {
				/* the kernel may still read them: hand them over */
				g->own = c->own;
				g->fly = c->tls_fly;
				pn_buf_init(&c->own, OUT_MAX);
				pn_buf_init(&c->tls_fly, TLS_OUT_MAX);
			}
			pn_io_set_ctx(t->loop, c->sock, g);
			pn_io_close(t->loop, c->sock);
			t->closing++;
		}
		c->sock = PN_IO_NONE;
	}
	pn_tls_conn_free(&c->tls);
	pn_buf_reset(&c->in);
	pn_buf_shrink_if_empty(&c->in);
	pn_buf_reset(&c->own);
	pn_buf_reset(&c->tls_out);
	pn_buf_reset(&c->tls_fly);
	c->own_off = 0;
	c->ext_len[0] = c->ext_len[1] = 0;
	c->job = c->send_busy = false;
	c->in_expect = false;
	c->append_phase = 0;
	c->deadline = 0;
	c->stream_send_left = c->stream_recv_left = 0;
}

/* The session ended: ok when the script completed. */
static void session_end(struct conn *c, bool ok)
{
	struct thread *t = c->t;
	const struct bn_config *cfg = t->cfg;

	if (ok && cfg->script->unit_loop < 0)
		unit_done(c);
	if (recording(t) || cfg->mode == BN_MODE_IDLE) {
		if (ok)
			t->r->sessions++;
		else
			t->r->sessions_failed++;
	}
	close_sock(c);
	c->state = CS_IDLE;
	if (cfg->mode == BN_MODE_IDLE) {
		if (!c->held) {
			atomic_fetch_add(&t->sh->idle_failed, 1);
			t->connecting--;
		}
		conn_done(c);
		/* open the next ones */
		while (!t->stopping && t->connecting < cfg->connect_burst &&
		       t->idle_next < t->nconns) {
			t->connecting++;
			session_start(&t->conns[t->idle_next++]);
		}
		return;
	}
	if (t->stopping) {
		conn_done(c);
		return;
	}
	if (!ok) {
		/* do not spin on a server that refuses */
		c->wait = W_RETRY;
		c->state = CS_WAIT;
		pn_io_timer_set(t->loop, c->timer, RETRY_MS);
		return;
	}
	session_start(c);
}

static void conn_error(struct conn *c, enum bn_err kind, const char *fmt, ...)
{
	struct thread *t = c->t;

	if (t->forced) {
		close_sock(c);
		conn_done(c);
		return;
	}
	if (c->unit_open) {
		/* a failed unit still counts towards --count, or a run with
		 * errors would never end */
		c->unit_open = false;
		atomic_fetch_add_explicit(&t->sh->units_done, 1, memory_order_relaxed);
	}
	if (recording(t) || t->cfg->mode == BN_MODE_IDLE) {
		t->r->errors[kind]++;
		if (c->replied)
			t->r->failed_after_reply++;
		else
			t->r->failed_before_reply++;
		if (recording(t))
			series_event(t, c->replied ? BN_SERIES_FAIL_LATE : BN_SERIES_FAIL_EARLY);
		if (t->r->samples[kind][0] == '\0') {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(t->r->samples[kind], sizeof(t->r->samples[kind]), fmt, ap);
			va_end(ap);
		}
	}
	session_end(c, false);
}

static const char *step_name(const struct conn *c)
{
	const struct bn_script *s = c->t->cfg->script;
	const struct bn_step *st = c->pc < s->nsteps ? &s->steps[c->pc] : NULL;
	if (st != NULL && st->label >= 0)
		return s->labels[st->label];
	return "script";
}

static void set_user(struct conn *c)
{
	const struct bn_config *cfg = c->t->cfg;
	uint64_t range = (uint64_t)cfg->user_last - cfg->user_first + 1;
	uint64_t k = atomic_fetch_add_explicit(&c->t->sh->user_next, 1, memory_order_relaxed);
	unsigned int idx = cfg->user_first + (unsigned int)(k % range);
	if (bn_format_user(c->user, sizeof(c->user), cfg->user_pattern, idx) < 0)
		c->user[0] = '\0';
}

static void connect_now(struct conn *c)
{
	struct thread *t = c->t;
	const struct bn_config *cfg = t->cfg;
	unsigned int ti = t->target_next++ % cfg->ntargets;
	const struct sockaddr *sa = (const struct sockaddr *)&cfg->targets[ti];
	const char *err;

	c->pc = 0;
	c->nsend = 0;
	c->eof = false;
	c->replied = false;
	c->tag[0] = '\0';
	set_user(c);
	int fd = pn_socket_tcp(sa->sa_family, &err);
	if (fd < 0) {
		int e = errno;
		conn_error(c, BN_ERR_LOCAL, "%s: %s", err, strerror(e));
		return;
	}
	c->sock = pn_io_add(t->loop, fd, 0, &sock_handlers, c);
	if (c->sock == PN_IO_NONE) {
		close(fd);
		conn_error(c, BN_ERR_LOCAL, "no io slot: %s", strerror(errno));
		return;
	}
	c->state = CS_CONNECTING;
	c->t_connect = now_ns();
	if (cfg->script->unit_loop >= 0 || cfg->mode == BN_MODE_IDLE)
		c->t_unit = c->t_connect;
	c->t_step = c->t_unit; /* the greeting counts from the intended start */
	c->unit_fresh = false;
	c->deadline = c->t_connect + (uint64_t)cfg->timeout_ms * 1000000u;
	if (pn_io_connect(t->loop, c->sock, sa, cfg->target_lens[ti]) < 0)
		conn_error(c, BN_ERR_LOCAL, "connect submit: %s", strerror(errno));
}

static void session_start(struct conn *c)
{
	struct thread *t = c->t;

	if (t->stopping) {
		conn_done(c);
		return;
	}
	if (t->cfg->script->unit_loop < 0 && t->cfg->mode != BN_MODE_IDLE) {
		switch (unit_begin(c)) {
		case UB_STOP:
			conn_done(c);
			return;
		case UB_WAIT:
			c->state = CS_WAIT;
			return;
		case UB_GO:
			break;
		}
	}
	connect_now(c);
}

/* ------------------------------------------------------------ sending */

static bool job_piece(struct conn *c, const uint8_t **p_r, size_t *len_r)
{
	if (c->own_off < pn_buf_len(&c->own)) {
		*p_r = pn_buf_rptr(&c->own) + c->own_off;
		*len_r = pn_buf_len(&c->own) - c->own_off;
		return true;
	}
	for (int i = 0; i < 2; i++) {
		if (c->ext_len[i] > 0) {
			*p_r = c->ext[i];
			*len_r = c->ext_len[i];
			return true;
		}
	}
	return false;
}

static void job_consume(struct conn *c, size_t n)
{
	size_t own_left = pn_buf_len(&c->own) - c->own_off;
	if (own_left > 0) {
		size_t k = n < own_left ? n : own_left;
		c->own_off += k;
		n -= k;
	}
	for (int i = 0; i < 2 && n > 0; i++) {
		size_t k = n < c->ext_len[i] ? n : c->ext_len[i];
		c->ext[i] += k;
		c->ext_len[i] -= k;
		n -= k;
	}
	if (c->own_off == pn_buf_len(&c->own) && c->ext_len[0] == 0 && c->ext_len[1] == 0) {
		pn_buf_reset(&c->own);
		c->own_off = 0;
		c->job = false;
	}
}

static void stream_refill(struct conn *c)
{
	if (!c->job && c->stream_send_left > 0) {
		size_t n = c->chunk;
		if ((uint64_t)n > c->stream_send_left)
			n = (size_t)c->stream_send_left;
		c->stream_send_left -= n;
		c->ext[0] = c->t->pattern;
		c->ext_len[0] = n;
		c->job = true;
	}
}

static void pump(struct conn *c)
{
	struct thread *t = c->t;
	const uint8_t *p;
	size_t len;
	const char *err;

	if (c->sock == PN_IO_NONE || c->state != CS_RUNNING)
		return;
	if (c->tls == NULL) {
		stream_refill(c);
		if (c->send_busy || !job_piece(c, &p, &len))
			return;
		if (pn_io_send(t->loop, c->sock, p, len) < 0) {
			conn_error(c, BN_ERR_LOCAL, "send submit: %s", strerror(errno));
			return;
		}
		c->send_busy = true;
		return;
	}
	for (;;) {
		stream_refill(c);
		if (!job_piece(c, &p, &len))
			break;
		ssize_t n = pn_tls_write(c->tls, p, len, &err);
		if (n < 0) {
			conn_error(c, BN_ERR_TLS, "%s", err);
			return;
		}
		job_consume(c, (size_t)n);
		if ((size_t)n < len)
			break;
	}
	while (pn_tls_pending_out(c->tls) > 0) {
		size_t want = pn_tls_pending_out(c->tls);
		uint8_t *w = pn_buf_reserve(&c->tls_out, want);
		if (w == NULL) {
			if (pn_buf_len(&c->tls_out) > 0)
				break; /* send first */
			conn_error(c, BN_ERR_LOCAL, "TLS output over limit");
			return;
		}
		pn_buf_commit(&c->tls_out, pn_tls_take_out(c->tls, w, want));
	}
	if (!c->send_busy && pn_buf_len(&c->tls_out) > 0) {
		struct pn_buf tmp = c->tls_fly;
		c->tls_fly = c->tls_out;
		c->tls_out = tmp;
		pn_buf_reset(&c->tls_out);
		if (pn_io_send(t->loop, c->sock, pn_buf_rptr(&c->tls_fly),
			       pn_buf_len(&c->tls_fly)) < 0) {
			conn_error(c, BN_ERR_LOCAL, "send submit: %s", strerror(errno));
			return;
		}
		c->send_busy = true;
	}
}

static void on_send(void *ctx, ssize_t res)
{
	struct conn *c = ctx;
	struct thread *t = c->t;

	c->send_busy = false;
	if (res < 0) {
		const struct bn_script *s = t->cfg->script;
		if (c->pc < s->nsteps && s->steps[c->pc].kind == BN_STEP_WAIT_CLOSE)
			return; /* the server is closing: its FIN decides */
		conn_error(c, BN_ERR_RESET, "send during %s: %s", step_name(c), strerror((int)-res));
		return;
	}
	if (recording(t))
		t->r->bytes_out += (uint64_t)res;
	if (c->tls != NULL)
		pn_buf_reset(&c->tls_fly);
	else
		job_consume(c, (size_t)res);
	pump(c);
	if (c->state == CS_RUNNING && !c->job)
		advance(c);
}

static void tls_flush(struct conn *c)
{
	if (c->tls != NULL)
		pump(c);
}

static int start_tls(struct conn *c)
{
	const char *err;

	if (c->t->cfg->tls == NULL) {
		conn_error(c, BN_ERR_LOCAL, "the script starts TLS but no TLS context (--tls)");
		return -1;
	}
	c->tls = pn_tls_conn_new(c->t->cfg->tls, c->t->cfg->tls_server_name, &err);
	if (c->tls == NULL) {
		conn_error(c, BN_ERR_TLS, "%s", err);
		return -1;
	}
	/* DESIGN.md: plaintext received before STARTTLS completes is dropped */
	pn_buf_reset(&c->in);
	tls_flush(c);
	return c->state == CS_RUNNING ? 0 : -1;
}

/* Builds the send job of a step. new_command: latency counts from here. */
static void job_begin(struct conn *c, bool new_command)
{
	if (new_command) {
		c->t_step = c->unit_fresh ? c->t_unit : now_ns();
		c->unit_fresh = false;
	}
	c->job = true;
	pump(c);
}

static void set_tag_from_own(struct conn *c)
{
	const uint8_t *p = pn_buf_rptr(&c->own);
	size_t n = pn_buf_len(&c->own), k = 0;
	while (k < n && k < sizeof(c->tag) - 1 && p[k] != ' ' && p[k] != '\r')
		k++;
	memcpy(c->tag, p, k);
	c->tag[k] = '\0';
}

static int build_line(struct conn *c, const char *tmpl, uint64_t size)
{
	const struct bn_config *cfg = c->t->cfg;
	struct bn_vars v = { c->user, cfg->password, ++c->nsend, size };

	pn_buf_reset(&c->own);
	c->own_off = 0;
	if (bn_subst(&c->own, tmpl, &v) < 0 || pn_buf_append(&c->own, "\r\n", 2) < 0) {
		conn_error(c, BN_ERR_LOCAL, "send line over limit");
		return -1;
	}
	set_tag_from_own(c);
	return 0;
}

/* ------------------------------------------------------------ receiving */

static int feed_in(struct conn *c, const char **err)
{
	size_t used = 0;
	int rc = bn_reader_feed(&c->rd, pn_buf_rptr(&c->in), pn_buf_len(&c->in), &used, err);
	pn_buf_consume(&c->in, used);
	return rc;
}

static void reader_failed(struct conn *c, const char *err)
{
	if (strcmp(err, "unexpected reply") == 0 || strcmp(err, "command refused before its literal") == 0)
		conn_error(c, BN_ERR_REPLY, "%s: %s: %s", step_name(c), err, c->rd.sample);
	else
		conn_error(c, BN_ERR_PROTOCOL, "%s: %s: %s", step_name(c), err, c->rd.sample);
}

static void deliver(struct conn *c, const uint8_t *data, size_t len)
{
	if (pn_buf_append(&c->in, data, len) < 0) {
		conn_error(c, BN_ERR_PROTOCOL, "more than %u unread bytes during %s", IN_MAX,
			   step_name(c));
		return;
	}
}

static void on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct conn *c = ctx;
	struct thread *t = c->t;
	const char *err;

	if (len < 0) {
		const struct bn_script *s = t->cfg->script;
		if (c->pc < s->nsteps && s->steps[c->pc].kind == BN_STEP_WAIT_CLOSE &&
		    (len == -ECONNRESET || len == -EPIPE)) {
			c->eof = true; /* a reset after LOGOUT is a close */
			advance(c);
			return;
		}
		conn_error(c, BN_ERR_RESET, "receive during %s: %s", step_name(c), strerror((int)-len));
		return;
	}
	if (len == 0) {
		c->eof = true;
		if (c->tls != NULL) {
			pn_tls_feed_eof(c->tls);
		} else {
			advance(c);
			return;
		}
	} else {
		if (recording(t))
			t->r->bytes_in += (uint64_t)len;
		if (c->tls == NULL) {
			deliver(c, data, (size_t)len);
			if (c->state == CS_RUNNING)
				advance(c);
			return;
		}
		if (pn_tls_feed(c->tls, data, (size_t)len, &err) < 0) {
			conn_error(c, BN_ERR_TLS, "%s", err);
			return;
		}
	}
	/* TLS: decrypt everything there is */
	for (;;) {
		uint8_t buf[16384];
		ssize_t n = pn_tls_read(c->tls, buf, sizeof(buf), &err);
		if (n > 0) {
			deliver(c, buf, (size_t)n);
			if (c->state != CS_RUNNING)
				return;
			continue;
		}
		if (n == PN_TLS_AGAIN)
			break;
		if (n == PN_TLS_CLOSED) {
			c->eof = true;
			break;
		}
		if (c->eof && pn_buf_len(&c->in) == 0 && c->pc < t->cfg->script->nsteps &&
		    t->cfg->script->steps[c->pc].kind == BN_STEP_WAIT_CLOSE)
			break; /* FIN without close_notify after LOGOUT: still a close */
		conn_error(c, BN_ERR_TLS, "during %s: %s", step_name(c), err);
		return;
	}
	tls_flush(c);
	if (c->state == CS_RUNNING)
		advance(c);
}

static void on_connect(void *ctx, int res)
{
	struct conn *c = ctx;
	struct thread *t = c->t;

	if (res < 0) {
		conn_error(c, BN_ERR_CONNECT, "%s", strerror(-res));
		return;
	}
	if (recording(t))
		bn_hist_record(&t->r->connect, since(c->t_connect));
	c->state = CS_RUNNING;
	c->deadline = 0;
	if (pn_io_recv(t->loop, c->sock) < 0) {
		conn_error(c, BN_ERR_LOCAL, "recv submit: %s", strerror(errno));
		return;
	}
	if (t->cfg->tls_implicit && start_tls(c) < 0)
		return;
	advance(c);
}

/* ------------------------------------------------------------ the script */

static void arm_deadline(struct conn *c)
{
	c->deadline = now_ns() + (uint64_t)c->t->cfg->timeout_ms * 1000000u;
}

static void advance(struct conn *c)
{
	struct thread *t = c->t;
	const struct bn_config *cfg = t->cfg;
	const struct bn_script *s = cfg->script;
	const char *err;
	int rc;

	for (;;) {
		if (c->state != CS_RUNNING || c->wait != W_NONE)
			return;
		if (c->pc >= s->nsteps) {
			if (c->job || c->send_busy)
				return; /* let the last bytes go out */
			session_end(c, true);
			return;
		}
		const struct bn_step *st = &s->steps[c->pc];
		switch (st->kind) {
		case BN_STEP_SEND:
			if (c->job)
				return;
			if (build_line(c, st->text, 0) < 0)
				return;
			c->pc++;
			job_begin(c, true);
			break;
		case BN_STEP_BODY: {
			if (c->job)
				return;
			c->body = bn_bodies_pick(cfg->bodies, &t->rng);
			pn_buf_reset(&c->own);
			c->own_off = 0;
			uint64_t id = atomic_fetch_add_explicit(&t->sh->msg_id, 1, memory_order_relaxed);
			if (bn_message_header(&c->own, cfg->bodies, c->user, id) < 0) {
				conn_error(c, BN_ERR_LOCAL, "message header over limit");
				return;
			}
			c->ext[0] = c->body->smtp;
			c->ext_len[0] = c->body->smtp_len;
			c->pc++;
			job_begin(c, true);
			break;
		}
		case BN_STEP_APPEND:
			if (c->job)
				return;
			if (c->append_phase == 0) {
				c->body = bn_bodies_pick(cfg->bodies, &t->rng);
				uint64_t id = atomic_fetch_add_explicit(&t->sh->msg_id, 1,
									memory_order_relaxed);
				pn_buf_reset(&c->hdr);
				if (bn_message_header(&c->hdr, cfg->bodies, c->user, id) < 0) {
					conn_error(c, BN_ERR_LOCAL, "message header over limit");
					return;
				}
				uint64_t size = pn_buf_len(&c->hdr) + c->body->raw_len;
				if (build_line(c, st->text, size) < 0)
					return;
				if (st->literal_plus) {
					/* RFC 7888: no continuation wait */
					pn_buf_append(&c->own, pn_buf_rptr(&c->hdr), pn_buf_len(&c->hdr));
					c->ext[0] = c->body->raw;
					c->ext_len[0] = c->body->raw_len;
					c->ext[1] = (const uint8_t *)"\r\n";
					c->ext_len[1] = 2;
					c->pc++;
					job_begin(c, true);
					break;
				}
				c->append_phase = 1;
				bn_reader_start(&c->rd, BN_EXPECT_CONT, "", c->tag, 1);
				arm_deadline(c);
				job_begin(c, true);
				if (c->state != CS_RUNNING)
					return;
			}
			/* RFC 3501 section 7.5: wait for "+" before the literal */
			rc = feed_in(c, &err);
			if (rc < 0) {
				reader_failed(c, err);
				return;
			}
			if (rc == 0) {
				if (c->eof)
					conn_error(c, BN_ERR_CLOSED, "server closed during APPEND");
				return;
			}
			c->append_phase = 0;
			c->deadline = 0;
			pn_buf_reset(&c->own);
			c->own_off = 0;
			pn_buf_append(&c->own, pn_buf_rptr(&c->hdr), pn_buf_len(&c->hdr));
			c->ext[0] = c->body->raw;
			c->ext_len[0] = c->body->raw_len;
			c->ext[1] = (const uint8_t *)"\r\n";
			c->ext_len[1] = 2;
			c->pc++;
			job_begin(c, false);
			break;
		case BN_STEP_EXPECT:
			if (!c->in_expect) {
				bn_reader_start(&c->rd, st->mode, st->text, c->tag, st->times);
				c->in_expect = true;
				arm_deadline(c);
			}
			rc = feed_in(c, &err);
			if (rc < 0) {
				reader_failed(c, err);
				return;
			}
			if (rc == 0) {
				if (c->eof)
					conn_error(c, BN_ERR_CLOSED, "server closed during %s",
						   s->labels[st->label]);
				return;
			}
			record_label(c, st->label, c->t_step);
			c->replied = true;
			c->in_expect = false;
			c->deadline = 0;
			c->pc++;
			break;
		case BN_STEP_STREAM:
			if (!c->in_expect) {
				if (c->job)
					return;
				c->in_expect = true;
				c->stream_send_left = c->stream_recv_left = st->count;
				c->chunk = st->chunk;
				c->t_step = c->unit_fresh ? c->t_unit : now_ns();
				c->unit_fresh = false;
				arm_deadline(c);
				pump(c);
				if (c->state != CS_RUNNING)
					return;
			}
			if (pn_buf_len(&c->in) > 0) {
				size_t n = pn_buf_len(&c->in);
				if ((uint64_t)n > c->stream_recv_left)
					n = (size_t)c->stream_recv_left;
				c->stream_recv_left -= n;
				pn_buf_consume(&c->in, n);
				arm_deadline(c);
			}
			if (c->stream_recv_left > 0 || c->stream_send_left > 0 || c->job) {
				if (c->eof)
					conn_error(c, BN_ERR_CLOSED, "server closed during stream");
				return;
			}
			record_label(c, st->label, c->t_step);
			c->replied = true;
			c->in_expect = false;
			c->deadline = 0;
			c->pc++;
			break;
		case BN_STEP_STARTTLS:
			if (c->tls != NULL) {
				conn_error(c, BN_ERR_LOCAL, "starttls inside TLS");
				return;
			}
			c->pc++;
			if (start_tls(c) < 0)
				return;
			break;
		case BN_STEP_LOOP:
			c->loop_left[st->depth] = st->count;
			if ((int)c->pc == s->unit_loop) {
				switch (unit_begin(c)) {
				case UB_GO:
					c->pc++;
					break;
				case UB_WAIT:
					c->pc++;
					return;
				case UB_STOP:
					c->pc = st->jump;
					break;
				}
			} else {
				c->pc++;
			}
			break;
		case BN_STEP_END: {
			const struct bn_step *lp = &s->steps[st->jump];
			if ((int)st->jump == s->unit_loop) {
				unit_done(c);
				switch (unit_begin(c)) {
				case UB_GO:
					c->pc = st->jump + 1;
					break;
				case UB_WAIT:
					c->pc = st->jump + 1;
					return;
				case UB_STOP:
					c->pc++;
					break;
				}
			} else if (lp->count == 0) {
				c->pc = t->stopping ? c->pc + 1 : st->jump + 1;
			} else if (--c->loop_left[st->depth] > 0) {
				c->pc = st->jump + 1;
			} else {
				c->pc++;
			}
			break;
		}
		case BN_STEP_SLEEP:
			c->pc++;
			if (st->count > 0) {
				c->wait = W_SLEEP;
				pn_io_timer_set(t->loop, c->timer, st->count);
				return;
			}
			break;
		case BN_STEP_HOLD:
			if (!c->held) {
				c->held = true;
				if (cfg->mode == BN_MODE_IDLE) {
					t->r->held++;
					t->connecting--;
					atomic_fetch_add(&t->sh->held, 1);
					while (!t->stopping && t->connecting < cfg->connect_burst &&
					       t->idle_next < t->nconns) {
						t->connecting++;
						session_start(&t->conns[t->idle_next++]);
					}
				}
			}
			if (!t->stopping)
				return;
			c->pc++;
			break;
		case BN_STEP_WAIT_CLOSE:
			if (!c->in_expect) {
				if (c->job || c->send_busy)
					return;
				c->in_expect = true;
				c->t_step = now_ns();
				arm_deadline(c);
			}
			pn_buf_reset(&c->in); /* anything after the last reply is ignored */
			if (!c->eof)
				return;
			record_label(c, st->label, c->t_step);
			c->in_expect = false;
			c->pc++;
			session_end(c, true);
			return;
		case BN_STEP_CLOSE:
			if (c->job || c->send_busy)
				return;
			c->pc = s->nsteps;
			session_end(c, true);
			return;
		}
	}
}

/* ------------------------------------------------------------ timers */

static void on_conn_timer(void *ctx)
{
	struct conn *c = ctx;
	enum wait_kind w = c->wait;

	c->wait = W_NONE;
	switch (w) {
	case W_UNIT:
		if (c->state == CS_WAIT) {
			connect_now(c); /* a session unit */
			return;
		}
		advance(c);
		return;
	case W_SLEEP:
		advance(c);
		return;
	case W_RETRY:
		c->state = CS_IDLE;
		session_start(c);
		return;
	case W_NONE:
		return;
	}
}

static void on_sweep(void *ctx)
{
	struct thread *t = ctx;
	uint64_t now = now_ns();

	for (unsigned int i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];
		if (c->deadline != 0 && now > c->deadline &&
		    (c->state == CS_RUNNING || c->state == CS_CONNECTING)) {
			c->deadline = 0;
			if (c->state == CS_CONNECTING)
				conn_error(c, BN_ERR_TIMEOUT, "connect took over %u ms",
					   t->cfg->timeout_ms);
			else
				conn_error(c, BN_ERR_TIMEOUT, "no reply within %u ms during %s",
					   t->cfg->timeout_ms, step_name(c));
		}
	}
	pn_io_timer_set(t->loop, t->sweep, SWEEP_MS);
}

static void on_drain(void *ctx)
{
	struct thread *t = ctx;

	/* time is up: close whatever still runs */
	t->forced = true;
	for (unsigned int i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];
		if (c->state == CS_DONE)
			continue;
		close_sock(c);
		conn_done(c);
	}
	check_finish(t);
}

static void thread_stop(void *ctx)
{
	struct thread *t = ctx;
	const struct bn_script *s = t->cfg->script;

	t->stopping = true;
	pn_io_timer_set(t->loop, t->drain, (uint64_t)(t->cfg->drain_s * 1000.0) + 1);
	for (unsigned int i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];
		switch (c->state) {
		case CS_DONE:
			break;
		case CS_IDLE:
			conn_done(c);
			break;
		case CS_WAIT: /* waiting to start a session */
			conn_done(c);
			break;
		case CS_CONNECTING:
			break;
		case CS_RUNNING:
			if (c->wait == W_UNIT) {
				pn_io_timer_cancel(t->loop, c->timer);
				c->wait = W_NONE;
				c->pc = s->steps[s->unit_loop].jump; /* the tail */
			}
			advance(c);
			break;
		}
	}
	check_finish(t);
}

static const struct pn_io_handlers conn_timer_handlers = { .on_timer = on_conn_timer };
static const struct pn_io_handlers sweep_handlers = { .on_timer = on_sweep };
static const struct pn_io_handlers drain_handlers = { .on_timer = on_drain };

/* ------------------------------------------------------------ threads */

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	const struct bn_config *cfg = t->cfg;
	struct pn_loop_settings set = {
		.ring_entries = 4096,
		.max_ios = t->nconns * 4 + 1024,
		.recv_buf_size = 16384,
		.recv_buf_count = 512,
	};

	t->loop = pn_loop_new(&set, &t->start_err);
	if (t->loop == NULL) {
		t->rc = -1;
		atomic_store(&t->up, -1);
		return NULL;
	}
	t->sweep = pn_io_add(t->loop, -1, 0, &sweep_handlers, t);
	t->drain = pn_io_add(t->loop, -1, 0, &drain_handlers, t);
	if (t->sweep == PN_IO_NONE || t->drain == PN_IO_NONE) {
		t->start_err = "no io slot for timers";
		t->rc = -1;
		pn_loop_free(&t->loop);
		atomic_store(&t->up, -1);
		return NULL;
	}
	pn_io_timer_set(t->loop, t->sweep, SWEEP_MS);
	t->active = t->nconns;
	for (unsigned int i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];
		c->timer = pn_io_add(t->loop, -1, 0, &conn_timer_handlers, c);
		if (c->timer == PN_IO_NONE) {
			t->start_err = "no io slot for connection timers";
			t->rc = -1;
			pn_loop_free(&t->loop);
			atomic_store(&t->up, -1);
			return NULL;
		}
	}
	t->next_intended = now_ns();
	if (cfg->mode == BN_MODE_IDLE) {
		while (t->connecting < cfg->connect_burst && t->idle_next < t->nconns) {
			t->connecting++;
			session_start(&t->conns[t->idle_next++]);
		}
	} else {
		for (unsigned int i = 0; i < t->nconns; i++)
			session_start(&t->conns[i]);
	}
	atomic_store(&t->up, 1);
	if (pn_loop_run(t->loop) < 0) {
		t->start_err = "ring failure";
		t->rc = -1;
	}
	pn_loop_free(&t->loop);
	return NULL;
}

/* ------------------------------------------------------------ /proc */

static int read_cpu(uint64_t *busy_r, uint64_t *total_r)
{
	FILE *f = fopen("/proc/stat", "r");
	unsigned long long v[10] = { 0 };

	if (f == NULL)
		return -1;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
		       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	fclose(f);
	if (n < 4)
		return -1;
	/* user nice system idle iowait irq softirq steal (guest is in user) */
	uint64_t idle = v[3] + v[4];
	uint64_t total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	*busy_r = total - idle;
	*total_r = total;
	return 0;
}

static double self_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int add_rollup(pid_t pid, struct bn_mem *m)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long kb;
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			m->rss_kb += kb;
		else if (sscanf(line, "Pss: %llu kB", &kb) == 1)
			m->pss_kb += kb;
		else if (sscanf(line, "Private_Clean: %llu kB", &kb) == 1 ||
			 sscanf(line, "Private_Dirty: %llu kB", &kb) == 1)
			m->private_kb += kb;
	}
	fclose(f);
	m->processes++;
	return 0;
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *rp = strrchr(buf, ')'); /* comm may hold spaces and parens */
	int ppid;
	char state;
	if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
		return -1;
	return (pid_t)ppid;
}

int bn_read_mem(pid_t pid, struct bn_mem *mem_r)
{
	memset(mem_r, 0, sizeof(*mem_r));
	if (add_rollup(pid, mem_r) < 0)
		return -1;
	/* descendants: walk every process up to pid (or init) */
	DIR *d = opendir("/proc");
	struct dirent *e;
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid_t p = (pid_t)atoi(e->d_name), q = p;
		if (p == pid)
			continue;
		for (int depth = 0; depth < 32 && q > 1; depth++) {
			q = parent_of(q);
			if (q == pid) {
				add_rollup(p, mem_r);
				break;
			}
		}
	}
	closedir(d);
	return 0;
}

/* ------------------------------------------------------------ the run */

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void merge(struct bn_results *dst, const struct bn_results *src)
{
	dst->units += src->units;
	dst->sessions += src->sessions;
	dst->sessions_failed += src->sessions_failed;
	dst->bytes_in += src->bytes_in;
	dst->bytes_out += src->bytes_out;
	dst->held += src->held;
	dst->failed_before_reply += src->failed_before_reply;
	dst->failed_after_reply += src->failed_after_reply;
	bn_hist_merge(&dst->unit, &src->unit);
	bn_hist_merge(&dst->connect, &src->connect);
	for (unsigned int i = 0; i < BN_MAX_LABELS; i++)
		bn_hist_merge(&dst->labels[i], &src->labels[i]);
	for (unsigned int k = 0; k < BN_ERR_COUNT; k++) {
		dst->errors[k] += src->errors[k];
		if (dst->samples[k][0] == '\0')
			memcpy(dst->samples[k], src->samples[k], sizeof(dst->samples[k]));
	}
}

static void results_init(struct bn_results *r)
{
	memset(r, 0, offsetof(struct bn_results, unit));
	bn_hist_init(&r->unit);
	bn_hist_init(&r->connect);
	for (unsigned int i = 0; i < BN_MAX_LABELS; i++)
		bn_hist_init(&r->labels[i]);
	memset(r->errors, 0, sizeof(*r) - offsetof(struct bn_results, errors));
}

int bn_run(const struct bn_config *cfg, struct bn_results *res, const char **error_r)
{
	struct shared sh;
	struct thread *ts = calloc(cfg->threads, sizeof(*ts));
	struct conn *conns = calloc(cfg->conns > 0 ? cfg->conns : 1, sizeof(*conns));
	size_t max_chunk = 0;
	uint8_t *pattern = NULL;
	unsigned int started = 0;
	int rc = 0;

	results_init(res);
	res->nlabels = cfg->script->nlabels;
	res->npids = cfg->npids;
	res->cores = (unsigned int)sysconf(_SC_NPROCESSORS_ONLN);
	if (ts == NULL || conns == NULL) {
		free(ts);
		free(conns);
		*error_r = "out of memory";
		return -1;
	}
	for (unsigned int i = 0; i < cfg->script->nsteps; i++) {
		if (cfg->script->steps[i].kind == BN_STEP_STREAM &&
		    cfg->script->steps[i].chunk > max_chunk)
			max_chunk = cfg->script->steps[i].chunk;
	}
	if (max_chunk > 0) {
		pattern = malloc(max_chunk);
		if (pattern == NULL) {
			free(ts);
			free(conns);
			*error_r = "out of memory";
			return -1;
		}
		for (size_t i = 0; i < max_chunk; i++)
			pattern[i] = (uint8_t)('a' + i % 26);
	}
	memset(&sh, 0, sizeof(sh));
	sh.cfg = cfg;
	/* Without a warm-up, record from the first unit: turning recording on
	 * only after the threads are running would lose the units that finish
	 * in between, while they still count towards --count. */
	bool record_from_start = cfg->mode != BN_MODE_IDLE && cfg->warmup_s <= 0;
	atomic_init(&sh.recording, record_from_start);
	if (cfg->mode == BN_MODE_IDLE) {
		for (unsigned int i = 0; i < cfg->npids; i++)
			bn_read_mem(cfg->pids[i], &res->mem_before[i]);
	}

	unsigned int off = 0;
	for (unsigned int i = 0; i < cfg->threads; i++) {
		struct thread *t = &ts[i];
		unsigned int n = cfg->conns / cfg->threads + (i < cfg->conns % cfg->threads ? 1 : 0);
		t->id = i;
		t->sh = &sh;
		t->cfg = cfg;
		t->conns = conns + off;
		t->nconns = n;
		t->target_next = i;
		t->pattern = pattern;
		t->rng = UINT64_C(0x2545F4914F6CDD1D) * (i + 1);
		double per_thread = cfg->rate / cfg->threads;
		t->interval_ns = per_thread > 0 ? (uint64_t)(1e9 / per_thread) : 0;
		atomic_init(&t->up, 0);
		t->r = malloc(sizeof(*t->r));
		if (t->r == NULL) {
			*error_r = "out of memory";
			rc = -1;
			break;
		}
		results_init(t->r);
		if (cfg->series_bucket_ns > 0 && cfg->mode != BN_MODE_IDLE &&
		    bn_series_init(&t->r->series, cfg->series_bucket_ns,
				   (uint64_t)((cfg->duration_s + 1.0) * 1e9), error_r) < 0) {
			rc = -1;
			break;
		}
		for (unsigned int k = 0; k < n; k++) {
			struct conn *c = &t->conns[k];
			c->t = t;
			c->idx = k;
			c->sock = PN_IO_NONE;
			bn_reader_init(&c->rd);
			pn_buf_init(&c->in, IN_MAX);
			pn_buf_init(&c->own, OUT_MAX);
			pn_buf_init(&c->hdr, 8192);
			pn_buf_init(&c->tls_out, TLS_OUT_MAX);
			pn_buf_init(&c->tls_fly, TLS_OUT_MAX);
		}
		off += n;
	}
	uint64_t busy0 = 0, total0 = 0, busy1 = 0, total1 = 0;
	double cpu0 = 0;
	uint64_t t0 = 0, t1 = 0;
	if (record_from_start) {
		read_cpu(&busy0, &total0);
		cpu0 = self_cpu();
		t0 = now_ns();
		atomic_store(&sh.t0, t0);
	}
	for (unsigned int i = 0; rc == 0 && i < cfg->threads; i++) {
		if (pthread_create(&ts[i].th, NULL, thread_main, &ts[i]) != 0) {
			*error_r = "pthread_create failed";
			rc = -1;
			break;
		}
		started++;
	}

	if (rc == 0 && cfg->mode == BN_MODE_IDLE) {
		uint64_t limit = now_ns() + (uint64_t)((30.0 + cfg->conns / 100.0) * 1e9);
		while (now_ns() < limit) {
			uint64_t done = atomic_load(&sh.held) + atomic_load(&sh.idle_failed);
			bool dead = false;
			for (unsigned int i = 0; i < started; i++)
				dead = dead || atomic_load(&ts[i].up) < 0;
			if (done >= cfg->conns || dead)
				break;
			sleep_ns(20000000);
		}
		sleep_ns((uint64_t)(cfg->settle_s * 1e9));
		for (unsigned int i = 0; i < cfg->npids; i++)
			bn_read_mem(cfg->pids[i], &res->mem_after[i]);
		atomic_store(&sh.recording, true);
		read_cpu(&busy0, &total0);
		cpu0 = self_cpu();
		t0 = now_ns();
		sleep_ns((uint64_t)(cfg->hold_s * 1e9));
	} else if (rc == 0) {
		if (!record_from_start) {
			sleep_ns((uint64_t)(cfg->warmup_s * 1e9));
			read_cpu(&busy0, &total0);
			cpu0 = self_cpu();
			t0 = now_ns();
			atomic_store(&sh.t0, t0);
			atomic_store(&sh.recording, true);
		}
		uint64_t end = cfg->duration_s > 0 ? t0 + (uint64_t)(cfg->duration_s * 1e9) : UINT64_MAX;
		for (;;) {
			uint64_t now = now_ns();
			if (now >= end)
				break;
			if (cfg->count > 0 && atomic_load(&sh.units_done) >= cfg->count)
				break;
			bool dead = false;
			for (unsigned int i = 0; i < started; i++)
				dead = dead || atomic_load(&ts[i].up) < 0;
			if (dead)
				break;
			uint64_t step = end - now < 10000000 ? end - now : 10000000;
			sleep_ns(step);
		}
	}
	atomic_store(&sh.recording, false);
	t1 = now_ns();
	read_cpu(&busy1, &total1);
	res->self_cpu_s = self_cpu() - cpu0;
	long hz = sysconf(_SC_CLK_TCK);
	res->machine_busy_s = (double)(busy1 - busy0) / (double)hz;
	res->machine_total_s = (double)(total1 - total0) / (double)hz;
	res->elapsed_s = (double)(t1 - t0) / 1e9;
	res->start_mono_ns = t0;

	for (unsigned int i = 0; i < started; i++) {
		/* a thread whose loop failed to start has already returned */
		while (atomic_load(&ts[i].up) == 0)
			sleep_ns(1000000);
		if (atomic_load(&ts[i].up) > 0)
			pn_loop_post(ts[i].loop, thread_stop, &ts[i]);
	}
	for (unsigned int i = 0; i < started; i++)
		pthread_join(ts[i].th, NULL);
	for (unsigned int i = 0; i < cfg->threads; i++) {
		if (ts[i].rc != 0 && rc == 0) {
			*error_r = ts[i].start_err != NULL ? ts[i].start_err : "thread failed";
			rc = -1;
		}
		if (ts[i].r != NULL) {
			merge(res, ts[i].r);
			if (bn_series_merge(&res->series, &ts[i].r->series) < 0 && rc == 0) {
				*error_r = "time series: out of memory";
				rc = -1;
			}
			bn_series_free(&ts[i].r->series);
			free(ts[i].r);
		}
	}
	for (unsigned int k = 0; k < off; k++) {
		struct conn *c = &conns[k];
		pn_tls_conn_free(&c->tls);
		bn_reader_free(&c->rd);
		pn_buf_free(&c->in);
		pn_buf_free(&c->own);
		pn_buf_free(&c->hdr);
		pn_buf_free(&c->tls_out);
		pn_buf_free(&c->tls_fly);
	}
	free(pattern);
	free(conns);
	free(ts);
	return rc;
}

void bn_results_free(struct bn_results *res)
{
	bn_series_free(&res->series);
}
