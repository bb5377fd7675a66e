/* The SMTP adapter of postern-frontend: wraps the sans-IO SMTP/LMTP engine
 * (smtp/smtp-session.h) for the MX, submission (587 and 465) and LMTP
 * listeners and carries out its requests:
 *
 *   AUTH_VERIFY   fe_login_start() (fe-login.h), as POP3 does: the
 *                 throttled password check, a session slot, the session
 *                 registry entry. A throttle refusal and a session limit
 *                 are both answered 454 4.7.0 (RFC 4954 section 6,
 *                 "temporary authentication failure"): the client may try
 *                 again later, and the connection stays usable (QUIT, or
 *                 MX mail without AUTH), where a 421 would drop it
 *   SENDER_CHECK  mail_sender_check()   (submission only)
 *   RCPT_CHECK    mail_rcpt_check()     (relay allowed after AUTH)
 *   DELIVER       mail_deliver()        (one transaction, per-recipient
 *                                        statuses; LMTP answers each);
 *                 on submission first mail_throttle_message(): one message
 *                 of the tenant counted against its rate, and over the
 *                 rate every recipient gets 451 4.3.0 (try later)
 *
 * One mail_delivery per thread (its prepared statements are declared once
 * on the thread's pool; it publishes change notifications on the thread's
 * Redis client; it parses messages on the node's worker pool, the one of
 * the password checks, straight from the engine's buffer, not on the
 * loop), created with the thread's first SMTP session and freed when the
 * thread ends. At most one request is outstanding per
 * session (the engine's rule); after the client went away next() returns
 * -1 only once that request has come back, and a DELIVER that the engine
 * asks for after the client is gone is not started (the client never saw
 * a reply, so it will send the message again).
 */
#include "fe-smtp.h"

#include "fe-backend.h"
#include "fe-limits.h"
#include "fe-login.h"
#include "fe-metrics.h"
#include "fe-node.h"
#include "fe-registry.h"
#include "smtp/smtp-session.h"

#include "postern/log.h"
#include "postern/mail-auth.h"
#include "postern/mail-delivery.h"
#include "postern/store-pgpool.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the thread's delivery context ---- */

struct thread_delivery {
	struct store_pgpool *pool;
	struct mail_delivery *dlv;
};

static pthread_key_t td_key;
static pthread_once_t td_once = PTHREAD_ONCE_INIT;
static bool td_key_ok;

static void td_destroy(void *p)
{
	struct thread_delivery *td = p;

	/* every connection of the thread is gone when the thread ends */
	if (td->dlv != NULL && mail_delivery_busy(td->dlv) == 0)
		mail_delivery_free(&td->dlv);
	free(td);
}

static void td_init(void)
{
	td_key_ok = pthread_key_create(&td_key, td_destroy) == 0;
}

static struct mail_delivery *thread_delivery(struct store_pgpool *pool,
					     struct store_redis *redis, const char *postmaster,
					     struct pn_workpool *workers, struct pn_loop *loop,
					     unsigned int max_pending, const char **error_r)
{
	struct thread_delivery *td;

	(void)pthread_once(&td_once, td_init);
	if (!td_key_ok) {
		*error_r = "no thread key";
		return NULL;
	}
	td = pthread_getspecific(td_key);
	if (td != NULL && td->pool == pool)
		return td->dlv;
	if (td == NULL) {
		td = calloc(1, sizeof(*td));
		if (td == NULL || pthread_setspecific(td_key, td) != 0) {
			free(td);
			*error_r = "out of memory";
			return NULL;
		}
	}
	if (td->dlv != NULL) {
		/* a new pool on this thread (never in practice): the old
		 * context went with the old pool's statements */
		mail_delivery_free(&td->dlv);
	}
	{
		struct mail_delivery_settings set = {
			.pool = pool, .redis = redis, .postmaster = postmaster,
			.workers = workers, .loop = loop,
			/* half of the queue stays for password checks */
			.workers_max_pending = max_pending,
		};

		td->dlv = mail_delivery_new(&set, error_r);
	}
	td->pool = td->dlv != NULL ? pool : NULL;
	return td->dlv;
}

/* ---- the session ---- */

struct fe_smtp {
	struct fe_conn *conn;
	struct smtp_session *s;
	enum smtp_mode mode;
	const struct fe_session_info *info;
	struct fe_thread *th;
	struct mail_delivery *dlv;	/* NULL without PostgreSQL */
	struct store_pgpool *pool;
	bool gone;
	bool pending;			/* a request of ours is under way */
	struct fe_login *login;		/* AUTH: slot and registry entry */
	uint64_t tenant_id;		/* after AUTH */
	/* DELIVER waiting for the tenant's message rate */
	const struct smtp_envelope *rate_env;
	const uint8_t *rate_msg;
	size_t rate_msg_len;
};

static const char *proto_name(const struct fe_smtp *f)
{
	return f->mode == SMTP_MODE_SUBMISSION ? "submission" :
		f->mode == SMTP_MODE_LMTP ? "lmtp" : "smtp";
}

static void login_metric(const struct fe_smtp *f, const char *result)
{
	if (f->th != NULL && f->th->node != NULL)
		fe_metrics_login(&f->th->node->metrics, proto_name(f), result);
}

static void smtp_wake(struct fe_smtp *f)
{
	f->pending = false;
	fe_conn_wakeup(f->conn);	/* may destroy f: last action */
}

static void *fs_create(struct fe_conn *conn, const struct fe_session_info *info,
		       const char **error_r)
{
	struct fe_smtp *f = calloc(1, sizeof(*f));
	struct fe_thread *th = fe_conn_thread(conn);
	struct smtp_settings set = { 0 };

	if (f == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	f->conn = conn;
	f->info = info;
	f->th = th;
	switch (info->service) {
	case FE_SVC_SUBMISSION:
	case FE_SVC_SUBMISSIONS:
		f->mode = SMTP_MODE_SUBMISSION;
		break;
	case FE_SVC_LMTP:
		f->mode = SMTP_MODE_LMTP;
		break;
	default:
		f->mode = SMTP_MODE_MX;
		break;
	}
	if (th != NULL) {
		if (th->backend != NULL && th->backend->pg != NULL) {
			const char *error = NULL;

			f->pool = th->backend->pg;
			f->dlv = thread_delivery(f->pool, th->backend->redis,
						 th->node != NULL ? th->node->cfg.postmaster_address :
						 NULL, th->node != NULL ? th->node->auth_pool : NULL,
						 th->loop, th->node != NULL ?
						 (unsigned int)th->node->cfg.auth_queue / 2 + 1 : 1,
						 &error);
			if (f->dlv == NULL)
				pn_warn("event=smtp_delivery_unavailable error=\"%s\"", error);
		}
	}
	set.mode = f->mode;
	set.hostname = info->hostname;
	set.client_addr = info->client_ip;
	set.session_id = info->session_id;
	set.tls_active = info->tls;
	set.tls_info.version = info->tls_version;
	set.tls_info.cipher = info->tls_cipher;
	set.starttls_available = info->tls_available;
	set.trusted = info->secured;
	f->s = smtp_session_new(&set, error_r);
	if (f->s == NULL) {
		/* a session id the engine does not take: go on without */
		set.session_id = NULL;
		f->s = smtp_session_new(&set, error_r);
	}
	if (f->s == NULL) {
		free(f);
		return NULL;
	}
	f->login = fe_login_new(conn, proto_name(f));
	if (f->login == NULL) {
		smtp_session_free(&f->s);
		free(f);
		*error_r = "out of memory";
		return NULL;
	}
	return f;
}

static size_t fs_feed(void *p, const uint8_t *data, size_t len)
{
	struct fe_smtp *f = p;

	/* the engine takes at most its input room, except message content,
	 * which it decodes straight from data (no copy in between) */
	return smtp_session_feed(f->s, data, len);
}

/* ---- AUTH ---- */

static void auth_cb(void *ctx, const struct fe_login_result *res)
{
	struct fe_smtp *f = ctx;
	enum smtp_auth_status st;

	switch (res->status) {
	case FE_LOGIN_OK: st = SMTP_AUTH_OK; break;
	case FE_LOGIN_TEMPFAIL:
	case FE_LOGIN_THROTTLED:
	case FE_LOGIN_SESSION_LIMIT:
		st = SMTP_AUTH_TEMPFAIL;	/* 454 4.7.0 */
		break;
	default: st = SMTP_AUTH_BAD; break;	/* a disabled account too */
	}
	if (st == SMTP_AUTH_OK)
		f->tenant_id = res->tenant_id;
	(void)smtp_session_auth_result(f->s, st, res->account_id,
				       st == SMTP_AUTH_OK ? res->address : NULL);
	smtp_wake(f);
}

static void auth_start(struct fe_smtp *f, const struct smtp_action *a)
{
	/* no proxy authorisation: authzid must be empty or the user itself */
	if (a->u.auth.authzid[0] != '\0' &&
	    strcmp(a->u.auth.authzid, a->u.auth.authcid) != 0) {
		login_metric(f, "bad");
		pn_info("event=login session=%s protocol=%s result=bad"
			" reason=\"authzid differs\"", f->info->session_id, proto_name(f));
		(void)smtp_session_auth_result(f->s, SMTP_AUTH_BAD, 0, NULL);
		return;
	}
	f->pending = true;
	if (f->login == NULL ||
	    fe_login_start(f->login, a->u.auth.authcid, a->u.auth.password, auth_cb, f) < 0) {
		f->pending = false;
		if (f->login == NULL)
			login_metric(f, "tempfail");
		(void)smtp_session_auth_result(f->s, SMTP_AUTH_TEMPFAIL, 0, NULL);
	}
}

/* ---- MAIL FROM, RCPT ---- */

static void sender_done(void *ctx, enum mail_sender_status status, const char *error)
{
	struct fe_smtp *f = ctx;

	(void)error;
	(void)smtp_session_sender_result(f->s, status == MAIL_SENDER_OK ? SMTP_SENDER_OK :
					 status == MAIL_SENDER_DENIED ? SMTP_SENDER_DENIED :
					 SMTP_SENDER_TEMPFAIL);
	smtp_wake(f);
}

static void sender_start(struct fe_smtp *f, const struct smtp_action *a)
{
	const struct smtp_envelope *env = a->u.sender.env;
	const char *error = NULL;

	if (f->dlv == NULL || !env->authenticated) {
		(void)smtp_session_sender_result(f->s, f->dlv == NULL ? SMTP_SENDER_TEMPFAIL :
						 SMTP_SENDER_DENIED);
		return;
	}
	f->pending = true;
	if (mail_sender_check(f->dlv, env->account_id, a->u.sender.address, sender_done, f,
			      &error) == NULL) {
		f->pending = false;
		(void)smtp_session_sender_result(f->s, SMTP_SENDER_DENIED);
	}
}

static void rcpt_done(void *ctx, const struct mail_rcpt_info *info)
{
	struct fe_smtp *f = ctx;
	enum smtp_rcpt_status st;

	switch (info->status) {
	case MAIL_RCPT_OK: st = SMTP_RCPT_OK; break;
	case MAIL_RCPT_UNKNOWN: st = SMTP_RCPT_UNKNOWN; break;
	case MAIL_RCPT_DISABLED: st = SMTP_RCPT_DISABLED; break;
	case MAIL_RCPT_OVER_QUOTA: st = SMTP_RCPT_OVER_QUOTA; break;
	case MAIL_RCPT_RELAY_DENIED: st = SMTP_RCPT_RELAY_DENIED; break;
	default: st = SMTP_RCPT_TEMPFAIL; break;
	}
	if (info->status == MAIL_RCPT_TEMPFAIL)
		pn_warn("event=rcpt_check_failed error=\"%s\"", info->error);
	(void)smtp_session_rcpt_result(f->s, st, info->account_id);
	smtp_wake(f);
}

static void rcpt_start(struct fe_smtp *f, const struct smtp_action *a)
{
	const struct smtp_envelope *env = a->u.rcpt.env;
	bool relay = f->mode == SMTP_MODE_SUBMISSION && env->authenticated;
	const char *error = NULL;

	if (f->dlv == NULL) {
		(void)smtp_session_rcpt_result(f->s, SMTP_RCPT_TEMPFAIL, 0);
		return;
	}
	f->pending = true;
	if (mail_rcpt_check(f->dlv, a->u.rcpt.rcpt->address, env->size, relay, rcpt_done, f,
			    &error) == NULL) {
		f->pending = false;
		/* an address delivery cannot take (too long, control bytes) */
		(void)smtp_session_rcpt_result(f->s, SMTP_RCPT_UNKNOWN, 0);
	}
}

/* ---- DATA ---- */

static enum smtp_deliver_status deliver_status(enum mail_deliver_status st)
{
	switch (st) {
	case MAIL_DELIVER_OK: return SMTP_DELIVER_OK;
	case MAIL_DELIVER_TEMPFAIL: return SMTP_DELIVER_TEMPFAIL;
	case MAIL_DELIVER_OVER_QUOTA: return SMTP_DELIVER_OVER_QUOTA;
	case MAIL_DELIVER_QUOTA_EXCEEDED: return SMTP_DELIVER_QUOTA_EXCEEDED;
	case MAIL_DELIVER_SENDER_DENIED: return SMTP_DELIVER_SENDER_DENIED;
	default: return SMTP_DELIVER_PERMFAIL;
	}
}

static void deliver_done(void *ctx, const struct mail_deliver_result *res)
{
	struct fe_smtp *f = ctx;
	enum smtp_deliver_status st[MAIL_DELIVERY_MAX_RCPTS];

	for (size_t i = 0; i < res->count && i < MAIL_DELIVERY_MAX_RCPTS; i++)
		st[i] = deliver_status(res->rcpts[i].status);
	if (res->error[0] != '\0')
		pn_info("event=deliver_note id=%s error=\"%s\"", res->id, res->error);
	(void)smtp_session_deliver_result(f->s, st, res->count, res->id);
	smtp_wake(f);
}

static void deliver_fail(struct fe_smtp *f, const struct smtp_envelope *env,
			 enum smtp_deliver_status status)
{
	enum smtp_deliver_status st[MAIL_DELIVERY_MAX_RCPTS];
	size_t n = env->rcpt_count < MAIL_DELIVERY_MAX_RCPTS ? env->rcpt_count :
		MAIL_DELIVERY_MAX_RCPTS;

	for (size_t i = 0; i < n; i++)
		st[i] = status;
	(void)smtp_session_deliver_result(f->s, st, env->rcpt_count, NULL);
}

static void deliver_go(struct fe_smtp *f, const struct smtp_envelope *env,
		       const uint8_t *message, size_t message_len)
{
	const char *rcpts[MAIL_DELIVERY_MAX_RCPTS];
	struct mail_deliver_request req = { 0 };
	const char *error = NULL;

	for (size_t i = 0; i < env->rcpt_count; i++)
		rcpts[i] = env->rcpts[i].address;
	req.mail_from = env->mail_from;
	req.rcpts = rcpts;
	req.rcpt_count = env->rcpt_count;
	req.message = message;
	req.message_len = message_len;
	/* the engine's buffer: unchanged until smtp_session_deliver_result(),
	 * and f stays (pending) until deliver_done; never cancelled */
	req.message_kept = true;
	req.account_id = f->mode == SMTP_MODE_SUBMISSION && env->authenticated ?
		env->account_id : 0;
	/* ENVID stays as sent (xtext); RET as its keyword */
	req.envid = env->envid;
	req.ret = env->ret == SMTP_RET_FULL ? "FULL" : env->ret == SMTP_RET_HDRS ? "HDRS" : NULL;
	f->pending = true;
	if (mail_deliver(f->dlv, &req, deliver_done, f, &error) == NULL) {
		f->pending = false;
		pn_warn("event=deliver_failed error=\"%s\"", error);
		deliver_fail(f, env, SMTP_DELIVER_TEMPFAIL);
	}
}

static void rate_cb(void *ctx, const struct mail_throttle_verdict *v)
{
	struct fe_smtp *f = ctx;
	const struct smtp_envelope *env = f->rate_env;

	f->rate_env = NULL;
	if (f->gone) {
		/* the client never saw a reply: it sends the message again */
		deliver_fail(f, env, SMTP_DELIVER_TEMPFAIL);
	} else if (v->refuse) {
		pn_info("event=tenant_rate_refused session=%s tenant=%" PRIu64 " count=%" PRId64
			" reason=\"%s\"", f->info->session_id, f->tenant_id, v->count, v->reason);
		deliver_fail(f, env, SMTP_DELIVER_TEMPFAIL);
	} else {
		deliver_go(f, env, f->rate_msg, f->rate_msg_len);
		if (f->pending)
			return; /* deliver_done wakes the connection */
	}
	smtp_wake(f);
}

static void deliver_start(struct fe_smtp *f, const struct smtp_action *a)
{
	const struct smtp_envelope *env = a->u.deliver.env;
	struct mail_throttle *t = fe_thread_throttle(f->th);

	if (f->dlv == NULL || env->rcpt_count == 0 || env->rcpt_count > MAIL_DELIVERY_MAX_RCPTS) {
		deliver_fail(f, env, SMTP_DELIVER_TEMPFAIL);
		return;
	}
	if (f->mode == SMTP_MODE_SUBMISSION && env->authenticated && f->tenant_id != 0 &&
	    t != NULL) {
		f->rate_env = env;
		f->rate_msg = a->u.deliver.message;
		f->rate_msg_len = a->u.deliver.message_len;
		f->pending = true;
		if (mail_throttle_message(t, f->tenant_id, 1, rate_cb, f) == 0)
			return; /* rate_cb goes on */
		f->pending = false;
		f->rate_env = NULL;
	}
	deliver_go(f, env, a->u.deliver.message, a->u.deliver.message_len);
}

/* ---- the adapter ---- */

static int fs_next(void *p, struct fe_action *act_r)
{
	struct fe_smtp *f = p;
	struct smtp_action a;
	int r;

	for (;;) {
		if (f->pending)
			return 0;
		if (f->gone)
			return -1;
		r = smtp_session_next(f->s, &a);
		if (r <= 0)
			return r;
		switch (a.type) {
		case SMTP_ACTION_SEND:
			act_r->type = FE_ACT_SEND;
			act_r->data = a.u.send.data;
			act_r->len = a.u.send.len;
			return 1;
		case SMTP_ACTION_START_TLS:
			act_r->type = FE_ACT_START_TLS;
			if (a.u.start_tls.discarded > 0)
				pn_info("event=starttls_injection discarded=%zu",
					a.u.start_tls.discarded);
			return 1;
		case SMTP_ACTION_CLOSE:
			act_r->type = FE_ACT_CLOSE;
			act_r->reason = "smtp: closed by the session";
			return 1;
		case SMTP_ACTION_AUTH_VERIFY:
			auth_start(f, &a);
			break;
		case SMTP_ACTION_SENDER_CHECK:
			sender_start(f, &a);
			break;
		case SMTP_ACTION_RCPT_CHECK:
			rcpt_start(f, &a);
			break;
		case SMTP_ACTION_DELIVER:
			deliver_start(f, &a);
			break;
		}
	}
}

static void fs_tls_started(void *p)
{
	struct fe_smtp *f = p;
	struct smtp_tls_info info = {
		.version = fe_conn_tls_version(f->conn),
		.cipher = fe_conn_tls_cipher(f->conn),
	};

	(void)smtp_session_tls_started(f->s, &info);
}

static void fs_disconnected(void *p)
{
	struct fe_smtp *f = p;

	f->gone = true;
	fe_login_disconnected(f->login);
}

static void fs_shutdown(void *p, enum fe_shutdown_reason reason)
{
	struct fe_smtp *f = p;

	/* drain and kick alike: 421 4.3.2 */
	smtp_session_shutdown(f->s, reason == FE_SHUTDOWN_IDLE ? SMTP_SHUTDOWN_TIMEOUT :
			      SMTP_SHUTDOWN_DRAIN);
}

static void fs_destroy(void **p)
{
	struct fe_smtp *f = *p;

	if (f == NULL)
		return;
	fe_login_free(&f->login);	/* slot back, registry entry removed */
	smtp_session_free(&f->s);
	free(f);
	*p = NULL;
}

const struct fe_protocol fe_protocol_smtp = {
	.name = "smtp",
	.create = fs_create,
	.feed = fs_feed,
	.next = fs_next,
	.tls_started = fs_tls_started,
	.disconnected = fs_disconnected,
	.shutdown = fs_shutdown,
	.destroy = fs_destroy,
};
