/* The POP3 adapter: drives the sans-IO engine (pop3/pop3-session.h) for a
 * connection (fe-conn.c) and carries out its requests against storage:
 *
 *   AUTH_VERIFY    fe_login_start (fe-login.h): the throttled password
 *                  check (a throttle refusal is -ERR [LOGIN-DELAY], RFC
 *                  2449 section 8.1.2), then a session slot and the
 *                  session registry entry. Too many sessions: the login is
 *                  accepted by the engine but MAILDROP_OPEN is answered
 *                  -ERR [IN-USE] (RFC 2449 section 8.1.1: authenticated,
 *                  but the maildrop cannot be had now), before any lock
 *   MAILDROP_OPEN  mail_lock_acquire ("{a:<id>}:lock:pop3" lease in Redis,
 *                  per node when Redis is down), then the INBOX listing with
 *                  UIDL "<uidvalidity>.<uid>"
 *   MESSAGE_GET    the body from the node's body cache (the one IMAP FETCH
 *                  uses, store-blob-cache.h) when it holds the listed
 *                  SHA-256: no statement, and the engine takes the bytes
 *                  straight from the cache entry. Else a body of at most
 *                  CACHE_FILL_MAX bytes (and an eighth of the cache) is
 *                  read whole in one statement and put into the cache; a
 *                  larger one (or any without a cache) in slices of
 *                  READ_CHUNK bytes, given to the engine as its output
 *                  buffer takes them (backpressure all the way to
 *                  PostgreSQL). \Seen set when asked
 *   UPDATE         expunge_messages in one statement (one transaction); the
 *                  change is published on the mailbox's Redis channel
 *   RELEASE        the lock is released
 *
 * Every asynchronous operation is counted in `outstanding`; next() returns
 * -1 only when the engine is over and nothing is outstanding, so callbacks
 * never outlive the session (fe-protocol.h). A callback answers the engine
 * and calls fe_conn_wakeup() as its very last step.
 */
#include "fe-protocol.h"

#include "postern/log.h"
#include "postern/mail-auth.h"
#include "postern/mail-maildrop.h"
#include "postern/store-blob-cache.h"
#include "postern/store-redis-ops.h"

#include "fe-backend.h"
#include "fe-login.h"
#include "fe-metrics.h"
#include "fe-node.h"
#include "fe-registry.h"
#include "pop3-session.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define READ_CHUNK (256 * 1024)
/* Largest body read whole for the cache (the cache refuses more than an
 * eighth of its size anyway): the whole body is then held once in the
 * cache, shared, rather than per session. */
#define CACHE_FILL_MAX (1024 * 1024)
#define VERB_MAX 4

struct fe_pop3 {
	struct fe_conn *conn;
	struct fe_thread *th;
	struct fe_node *node;
	const struct fe_session_info *info;
	struct pop3_session *s;
	unsigned int outstanding;
	bool gone;

	uint64_t account_id;
	struct fe_login *login;
	bool session_limit;		/* logged in, but no session slot */

	struct mail_lock *lock;
	uint64_t mailbox_id;
	uint32_t uidvalidity;

	/* the node's body cache (NULL: off) and, with it, the listing's
	 * UIDs, sizes and SHA-256 (ascending UID) */
	struct store_blob_cache *cache;
	size_t fill_max;		/* read whole and cache up to this */
	struct mail_maildrop_msg *listed;
	size_t nlisted;

	/* MESSAGE_GET in progress */
	uint32_t get_uid;
	uint64_t get_offset;
	const char *get_name;		/* "retr" or "top" */
	const uint8_t *pend;		/* bytes the engine did not take yet: */
	uint8_t *pend_buf;		/* in our copy, or */
	struct store_blob_cached *pend_held;	/* in a held cache entry */
	size_t pend_len, pend_off;
	bool pend_final;

	/* request timing for command_duration_seconds */
	struct timespec req_t0;

	/* command names, for commands_total */
	char verb[VERB_MAX + 1];
	size_t verb_len;
	bool in_verb, skip_line;
};

static struct fe_metrics *metrics(const struct fe_pop3 *p)
{
	return &p->node->metrics;
}

static void req_start(struct fe_pop3 *p)
{
	clock_gettime(CLOCK_MONOTONIC, &p->req_t0);
}

static void req_done(struct fe_pop3 *p, const char *name)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	fe_metrics_command_time(metrics(p), "pop3", name,
				(double)(t.tv_sec - p->req_t0.tv_sec) +
				(double)(t.tv_nsec - p->req_t0.tv_nsec) / 1e9);
}

static void log_error(const struct fe_pop3 *p, const char *what, const char *error)
{
	pn_warn("event=storage_error session=%s protocol=pop3 op=%s error=\"%s\"",
		p->info->session_id, what, error != NULL ? error : "");
}

/* ---- AUTH_VERIFY ---- */

static void auth_cb(void *ctx, const struct fe_login_result *res)
{
	struct fe_pop3 *p = ctx;
	enum pop3_auth_result r;
	const char *error;

	p->outstanding--;
	req_done(p, "login");
	switch (res->status) {
	case FE_LOGIN_OK:
		r = POP3_AUTH_OK;
		p->account_id = res->account_id;
		break;
	case FE_LOGIN_SESSION_LIMIT:
		/* RFC 2449 IN-USE goes with the maildrop: see MAILDROP_OPEN */
		r = POP3_AUTH_OK;
		p->account_id = res->account_id;
		p->session_limit = true;
		break;
	case FE_LOGIN_BAD:
		r = POP3_AUTH_BAD;
		break;
	case FE_LOGIN_DISABLED:
		r = POP3_AUTH_PERM_FAIL;
		break;
	case FE_LOGIN_THROTTLED:
		r = POP3_AUTH_LOGIN_DELAY;
		break;
	default:
		r = POP3_AUTH_TEMP_FAIL;
		break;
	}
	if (pop3_session_auth_result(p->s, r, res->account_id, &error) < 0)
		pn_error("event=pop3_bug session=%s error=\"%s\"", p->info->session_id, error);
	fe_conn_wakeup(p->conn);
}

static void start_auth(struct fe_pop3 *p, const struct pop3_action *a)
{
	const char *error;

	if (a->auth.authzid[0] != '\0' && strcmp(a->auth.authzid, a->auth.user) != 0) {
		/* No proxy authorization in Postern. */
		fe_metrics_login(metrics(p), "pop3", "bad");
		pn_info("event=login session=%s protocol=pop3 result=bad reason=\"authzid differs\"",
			p->info->session_id);
		pop3_session_auth_result(p->s, POP3_AUTH_BAD, 0, &error);
		return;
	}
	req_start(p);
	if (p->login == NULL ||
	    fe_login_start(p->login, a->auth.user, a->auth.password, auth_cb, p) < 0) {
		pop3_session_auth_result(p->s, POP3_AUTH_TEMP_FAIL, 0, &error);
		return;
	}
	p->outstanding++;
}

/* ---- MAILDROP_OPEN ---- */

static void maildrop_answer(struct fe_pop3 *p, enum pop3_maildrop_result r,
			    const struct pop3_message *msgs, size_t count)
{
	const char *error;

	if (r != POP3_MAILDROP_OK)
		mail_lock_release(&p->lock);
	if (pop3_session_maildrop_result(p->s, r, msgs, count, &error) < 0)
		pn_warn("event=maildrop_refused session=%s error=\"%s\"", p->info->session_id,
			error);
}

static void list_cb(void *ctx, const struct mail_maildrop_listing *l)
{
	struct fe_pop3 *p = ctx;
	struct pop3_message *msgs = NULL;
	char (*uidls)[MAIL_UIDL_MAX + 1] = NULL;

	p->outstanding--;
	req_done(p, "maildrop");
	if (l->status != STORE_OK || l->no_inbox) {
		log_error(p, "maildrop_list", l->no_inbox ? "no INBOX" : l->error);
		maildrop_answer(p, POP3_MAILDROP_TEMP_FAIL, NULL, 0);
		fe_conn_wakeup(p->conn);
		return;
	}
	p->mailbox_id = l->mailbox_id;
	p->uidvalidity = l->uidvalidity;
	if (p->cache != NULL && l->count > 0) {
		/* without this copy RETR simply reads PostgreSQL */
		p->listed = malloc(l->count * sizeof(*p->listed));
		if (p->listed != NULL) {
			memcpy(p->listed, l->msgs, l->count * sizeof(*p->listed));
			p->nlisted = l->count;
		}
	}
	if (l->count > 0) {
		msgs = calloc(l->count, sizeof(*msgs));
		uidls = calloc(l->count, sizeof(*uidls));
	}
	if (l->count > 0 && (msgs == NULL || uidls == NULL)) {
		maildrop_answer(p, POP3_MAILDROP_TEMP_FAIL, NULL, 0);
	} else {
		for (size_t i = 0; i < l->count; i++) {
			mail_uidl_format(uidls[i], sizeof(uidls[i]), l->uidvalidity, l->msgs[i].uid);
			msgs[i].uid = l->msgs[i].uid;
			msgs[i].size = l->msgs[i].size;
			msgs[i].uidl = uidls[i];
		}
		pn_debug("event=maildrop_open session=%s account=%" PRIu64 " messages=%zu",
			 p->info->session_id, p->account_id, l->count);
		maildrop_answer(p, POP3_MAILDROP_OK, msgs, l->count);
	}
	free(msgs);
	free(uidls);
	fe_conn_wakeup(p->conn);
}

static void lock_cb(void *ctx, enum mail_lock_status status, bool degraded)
{
	struct fe_pop3 *p = ctx;
	struct fe_backend *b = fe_thread_backend(p->th);

	p->outstanding--;
	if (status == MAIL_LOCK_IN_USE) {
		req_done(p, "maildrop");
		pn_info("event=maildrop_in_use session=%s account=%" PRIu64, p->info->session_id,
			p->account_id);
		maildrop_answer(p, POP3_MAILDROP_IN_USE, NULL, 0);
	} else if (status != MAIL_LOCK_OK || p->gone || b == NULL || b->pg == NULL) {
		req_done(p, "maildrop");
		maildrop_answer(p, POP3_MAILDROP_TEMP_FAIL, NULL, 0);
	} else {
		if (degraded) {
			pn_counter_inc(pn_metric_series(metrics(p)->lock_fallback, NULL));
			pn_warn("event=maildrop_lock_degraded session=%s account=%" PRIu64
				" detail=\"Redis unreachable: lock held on this node only\"",
				p->info->session_id, p->account_id);
		}
		if (mail_maildrop_list(b->pg, p->account_id, list_cb, p) == 0) {
			p->outstanding++;
			return; /* list_cb goes on */
		}
		maildrop_answer(p, POP3_MAILDROP_TEMP_FAIL, NULL, 0);
	}
	fe_conn_wakeup(p->conn);
}

static void start_maildrop(struct fe_pop3 *p, uint64_t account_id)
{
	struct fe_backend *b = fe_thread_backend(p->th);

	req_start(p);
	p->account_id = account_id;
	if (p->session_limit) {
		req_done(p, "maildrop");
		p->session_limit = false;
		pn_info("event=maildrop_in_use session=%s account=%" PRIu64
			" reason=\"session limit\"", p->info->session_id, account_id);
		maildrop_answer(p, POP3_MAILDROP_IN_USE, NULL, 0);
		return;
	}
	p->lock = mail_lock_acquire(p->th->loop, b != NULL ? b->redis : NULL, account_id, "pop3",
				    (unsigned int)p->node->cfg.pop3_lock_lease_ms, lock_cb, p);
	if (p->lock == NULL) {
		maildrop_answer(p, POP3_MAILDROP_TEMP_FAIL, NULL, 0);
		return;
	}
	p->outstanding++;
}

/* ---- MESSAGE_GET ---- */

static void read_cb(void *ctx, enum store_status status, const uint8_t *data, size_t len,
		    bool eof, bool gone, const char *error);

static void read_next(struct fe_pop3 *p)
{
	struct fe_backend *b = fe_thread_backend(p->th);
	const char *error;

	if (b == NULL || b->pg == NULL ||
	    mail_maildrop_read(b->pg, p->account_id, p->mailbox_id, p->get_uid, p->get_offset,
			       READ_CHUNK, read_cb, p) < 0) {
		pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &error);
		return;
	}
	p->outstanding++;
}

/* After the engine took a whole slice: the next one, or the end. */
static void slice_taken(struct fe_pop3 *p, bool final)
{
	size_t consumed;
	const char *error;

	if (final) {
		req_done(p, p->get_name);
		return;
	}
	if (pop3_session_message_complete(p->s)) {
		/* TOP has its lines: no need to read the rest. */
		pop3_session_message_data(p->s, NULL, 0, true, &consumed, &error);
		req_done(p, p->get_name);
		return;
	}
	read_next(p);
}

static void pend_clear(struct fe_pop3 *p)
{
	free(p->pend_buf);
	p->pend_buf = NULL;
	if (p->pend_held != NULL)
		store_blob_cache_release(p->cache, &p->pend_held);
	p->pend = NULL;
	p->pend_len = p->pend_off = 0;
}

/* Gives the engine what it will take of data; keeps the rest in pend:
 * by reference when held (a cache entry; the hold is ours now), else as a
 * copy. */
static void give_data(struct fe_pop3 *p, const uint8_t *data, size_t len, bool final,
		      struct store_blob_cached *held)
{
	size_t consumed = 0;
	const char *error;

	if (pop3_session_message_data(p->s, data, len, final, &consumed, &error) < 0) {
		pn_error("event=pop3_bug session=%s error=\"%s\"", p->info->session_id, error);
		if (held != NULL)
			store_blob_cache_release(p->cache, &held);
		return;
	}
	if (consumed < len) {
		if (held != NULL) {
			p->pend_held = held;
			p->pend = data + consumed;
		} else {
			p->pend_buf = malloc(len - consumed);
			if (p->pend_buf == NULL) {
				pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &error);
				return;
			}
			memcpy(p->pend_buf, data + consumed, len - consumed);
			p->pend = p->pend_buf;
		}
		p->pend_len = len - consumed;
		p->pend_off = 0;
		p->pend_final = final;
		return;
	}
	if (held != NULL)
		store_blob_cache_release(p->cache, &held);
	slice_taken(p, final);
}

static void read_cb(void *ctx, enum store_status status, const uint8_t *data, size_t len,
		    bool eof, bool gone, const char *error)
{
	struct fe_pop3 *p = ctx;
	const char *e2;

	p->outstanding--;
	if (p->gone) {
		pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &e2);
	} else if (status != STORE_OK) {
		log_error(p, "message_read", error);
		pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &e2);
	} else if (gone) {
		pop3_session_message_fail(p->s, POP3_MESSAGE_GONE, &e2);
	} else {
		p->get_offset += len;
		give_data(p, data, len, eof, NULL);
	}
	fe_conn_wakeup(p->conn);
}

/* A whole body read for the cache (a miss). */
static void body_cb(void *ctx, struct mail_maildrop_body *b)
{
	struct fe_pop3 *p = ctx;
	const char *e2;

	p->outstanding--;
	if (p->gone) {
		pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &e2);
	} else if (b->status != STORE_OK) {
		log_error(p, "message_read", b->error);
		pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &e2);
	} else if (b->gone) {
		pop3_session_message_fail(p->s, POP3_MESSAGE_GONE, &e2);
	} else {
		struct store_blob_cached *held = b->cached;

		b->cached = NULL;	/* ours now (give_data keeps or releases it) */
		p->get_offset = b->len;
		give_data(p, b->data, b->len, true, held);
	}
	fe_conn_wakeup(p->conn);
}

/* The listing's entry of uid, or NULL. */
static const struct mail_maildrop_msg *listed_msg(const struct fe_pop3 *p, uint32_t uid)
{
	size_t lo = 0, hi = p->nlisted;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->listed[mid].uid == uid)
			return &p->listed[mid];
		if (p->listed[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Starts reading the body: from the cache at once, whole for the cache,
 * or in slices. */
static void get_body(struct fe_pop3 *p)
{
	struct fe_backend *b = fe_thread_backend(p->th);
	const struct mail_maildrop_msg *m = p->cache != NULL ? listed_msg(p, p->get_uid) : NULL;
	struct store_blob_cached *hit = mail_maildrop_cached(p->cache, m);
	const char *error;

	if (hit != NULL) {
		size_t len;
		const uint8_t *data = store_blob_cached_data(hit, &len);

		p->get_offset = len;
		give_data(p, data, len, true, hit);
		return;
	}
	if (m != NULL && m->size <= p->fill_max && b != NULL && b->pg != NULL) {
		if (mail_maildrop_read_body(b->pg, p->cache, p->account_id, p->mailbox_id,
					    p->get_uid, p->fill_max, body_cb, p) < 0) {
			pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &error);
			return;
		}
		p->outstanding++;
		return;
	}
	read_next(p);
}

static void seen_cb(void *ctx, enum store_status status, const char *error)
{
	struct fe_pop3 *p = ctx;

	p->outstanding--;
	if (status != STORE_OK)
		log_error(p, "set_seen", error);
	fe_conn_wakeup(p->conn);
}

static void start_get(struct fe_pop3 *p, const struct pop3_action *a)
{
	struct fe_backend *b = fe_thread_backend(p->th);

	req_start(p);
	p->get_uid = a->message.uid;
	p->get_offset = 0;
	p->get_name = a->message.top ? "top" : "retr";
	if (a->message.set_seen && b != NULL && b->pg != NULL &&
	    mail_maildrop_set_seen(b->pg, a->message.account_id, p->mailbox_id, a->message.uid,
				   seen_cb, p) == 0)
		p->outstanding++;
	get_body(p);
}

/* ---- UPDATE ---- */

static void publish_cb(void *ctx, enum store_status status, int64_t value, const char *error)
{
}

static void expunge_cb(void *ctx, enum store_status status, uint64_t modseq, size_t expunged,
		       const char *error)
{
	struct fe_pop3 *p = ctx;
	struct fe_backend *b = fe_thread_backend(p->th);
	const char *e2;

	p->outstanding--;
	req_done(p, "update");
	if (status != STORE_OK) {
		log_error(p, "expunge", error);
	} else {
		pn_info("event=pop3_update session=%s account=%" PRIu64 " expunged=%zu modseq=%" PRIu64,
			p->info->session_id, p->account_id, expunged, modseq);
		if (expunged > 0 && b != NULL && b->redis != NULL) {
			/* IMAP sessions of this mailbox on any node learn of the
			 * expunge (best effort; they resync from PostgreSQL). */
			char msg[64];
			int n = snprintf(msg, sizeof(msg), "expunge modseq=%" PRIu64, modseq);
			(void)store_rnotify_publish(b->redis, p->account_id, p->mailbox_id, msg,
						    (size_t)n, publish_cb, NULL);
		}
	}
	pop3_session_update_result(p->s, status == STORE_OK, &e2);
	fe_conn_wakeup(p->conn);
}

static void start_update(struct fe_pop3 *p, const struct pop3_action *a)
{
	struct fe_backend *b = fe_thread_backend(p->th);
	const char *error;

	req_start(p);
	if (b == NULL || b->pg == NULL ||
	    mail_maildrop_expunge(b->pg, a->update.account_id, p->mailbox_id, a->update.uids,
				  a->update.count, expunge_cb, p) < 0) {
		pop3_session_update_result(p->s, false, &error);
		return;
	}
	p->outstanding++;
}

/* ---- the adapter ---- */

static void *pop3_create(struct fe_conn *conn, const struct fe_session_info *info,
			 const char **error_r)
{
	struct fe_pop3 *p = calloc(1, sizeof(*p));
	struct pop3_settings set;

	if (p == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	p->conn = conn;
	p->th = fe_conn_thread(conn);
	p->node = fe_thread_node(p->th);
	p->info = info;
	pop3_settings_defaults(&set);
	set.hostname = info->hostname;
	set.implementation = "Postern";
	set.tls_active = info->tls;
	set.stls_available = info->tls_available;
	set.trusted = info->secured;
	set.retr_sets_seen = p->node->cfg.pop3_retr_sets_seen;
	p->cache = p->node->blob_cache;
	if (p->cache != NULL) {
		struct store_blob_cache_stats st;

		store_blob_cache_get_stats(p->cache, &st);
		p->fill_max = st.max_bytes / 8 < CACHE_FILL_MAX ? (size_t)(st.max_bytes / 8)
								  : CACHE_FILL_MAX;
	}
	p->s = pop3_session_new(&set);
	p->login = fe_login_new(conn, "pop3");
	if (p->s == NULL || p->login == NULL) {
		pop3_session_free(&p->s);
		fe_login_free(&p->login);
		free(p);
		*error_r = "cannot create the POP3 session";
		return NULL;
	}
	return p;
}

/* Counts command names in the bytes the engine took (first word of each
 * line, known POP3 commands only: SASL response lines are not commands and
 * arguments are never looked at). */
static void count_commands(struct fe_pop3 *p, const uint8_t *data, size_t len)
{
	static const char *const known[] = {
		"user", "pass", "apop", "auth", "stat", "list", "retr", "dele", "noop",
		"rset", "quit", "top", "uidl", "capa", "stls",
	};

	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];

		if (c == '\n') {
			p->skip_line = false;
			p->verb_len = 0;
			continue;
		}
		if (p->skip_line)
			continue;
		if (c == ' ' || c == '\r') {
			p->verb[p->verb_len] = '\0';
			for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
				if (strcasecmp(p->verb, known[k]) == 0)
					fe_metrics_command(metrics(p), "pop3", known[k]);
			p->skip_line = true;
			continue;
		}
		if (p->verb_len == VERB_MAX) {
			p->skip_line = true;
			continue;
		}
		p->verb[p->verb_len++] = (char)c;
	}
}

static size_t pop3_feed(void *s, const uint8_t *data, size_t len)
{
	struct fe_pop3 *p = s;
	size_t n = pop3_session_feed(p->s, data, len);

	count_commands(p, data, n);
	return n;
}

static int pop3_next(void *s, struct fe_action *act)
{
	struct fe_pop3 *p = s;
	struct pop3_action a;

	memset(act, 0, sizeof(*act));
	for (;;) {
		int r;

		if (p->pend_off < p->pend_len) {
			size_t consumed = 0;
			const char *error;

			pop3_session_message_data(p->s, p->pend + p->pend_off,
						  p->pend_len - p->pend_off, p->pend_final,
						  &consumed, &error);
			p->pend_off += consumed;
			if (p->pend_off == p->pend_len) {
				bool final = p->pend_final;

				pend_clear(p);
				slice_taken(p, final);
			}
		}
		r = pop3_session_next(p->s, &a);
		if (r < 0)
			return p->outstanding > 0 ? 0 : -1;
		if (r == 0)
			return 0;
		switch (a.type) {
		case POP3_ACTION_SEND:
			act->type = FE_ACT_SEND;
			act->data = a.send.data;
			act->len = a.send.len;
			return 1;
		case POP3_ACTION_START_TLS:
			act->type = FE_ACT_START_TLS;
			return 1;
		case POP3_ACTION_CLOSE:
			act->type = FE_ACT_CLOSE;
			act->reason = a.close.reason;
			return 1;
		case POP3_ACTION_AUTH_VERIFY:
			start_auth(p, &a);
			break;
		case POP3_ACTION_MAILDROP_OPEN:
			start_maildrop(p, a.maildrop.account_id);
			break;
		case POP3_ACTION_MESSAGE_GET:
			start_get(p, &a);
			break;
		case POP3_ACTION_UPDATE:
			start_update(p, &a);
			break;
		case POP3_ACTION_RELEASE:
			mail_lock_release(&p->lock);
			break;
		}
	}
}

static void pop3_tls_started(void *s)
{
	struct fe_pop3 *p = s;

	pop3_session_tls_started(p->s);
}

static void pop3_disconnected(void *s)
{
	struct fe_pop3 *p = s;

	p->gone = true;
	fe_login_disconnected(p->login);
	pop3_session_disconnected(p->s);
	if (p->pend != NULL) {
		/* A message was half given, no read in flight: end the request. */
		const char *error;

		pend_clear(p);
		pop3_session_message_fail(p->s, POP3_MESSAGE_TEMP_FAIL, &error);
	}
}

static void pop3_shutdown(void *s, enum fe_shutdown_reason reason)
{
	struct fe_pop3 *p = s;

	pop3_session_shutdown(p->s, reason == FE_SHUTDOWN_IDLE ? POP3_CLOSE_IDLE :
				    reason == FE_SHUTDOWN_KICK ? POP3_CLOSE_KICK :
				    POP3_CLOSE_SHUTDOWN);
}

static void pop3_destroy(void **s)
{
	struct fe_pop3 *p = *s;

	mail_lock_release(&p->lock);
	fe_login_free(&p->login);	/* slot back, registry entry removed */
	pop3_session_free(&p->s);
	pend_clear(p);
	free(p->listed);
	free(p);
	*s = NULL;
}

const struct fe_protocol fe_protocol_pop3 = {
	.name = "pop3",
	.create = pop3_create,
	.feed = pop3_feed,
	.next = pop3_next,
	.tls_started = pop3_tls_started,
	.disconnected = pop3_disconnected,
	.shutdown = pop3_shutdown,
	.destroy = pop3_destroy,
};
