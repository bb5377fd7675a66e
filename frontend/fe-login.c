/* The shared login hook of the protocol adapters: throttled password check,
 * session slot, registry entry, log line and metric; see fe-login.h.
 */
#include "fe-login.h"

#include "postern/log.h"
#include "postern/mail-auth.h"

#include "fe-backend.h"
#include "fe-limits.h"
#include "fe-metrics.h"
#include "fe-node.h"
#include "fe-protocol.h"
#include "fe-registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fe_login {
	struct fe_conn *conn;
	struct fe_thread *th;
	const char *proto;
	fe_login_cb *cb;
	void *ctx;
	bool busy;		/* a request of ours is in flight */
	bool freed;		/* fe_login_free() came while busy */
	bool gone;
	bool logged_in;
	char user[MAIL_AUTH_USER_MAX + 1];	/* as given, for the log */
	struct mail_auth_result auth;		/* kept while the slot is asked for */
	char address[MAIL_AUTH_USER_MAX + 1];
	struct mail_throttle_session *slot;
	struct fe_registry_entry *reg;
};

static void release(struct fe_login *l)
{
	struct mail_throttle *t = fe_thread_throttle(l->th);

	if (l->slot != NULL) {
		if (t != NULL)
			mail_throttle_session_close(t, &l->slot);
		else
			l->slot = NULL; /* the instance is gone, and the handle with it */
	}
	fe_registry_remove(&l->reg);
}

static const char *status_name(enum fe_login_status st)
{
	switch (st) {
	case FE_LOGIN_OK: return "ok";
	case FE_LOGIN_BAD: return "bad";
	case FE_LOGIN_DISABLED: return "disabled";
	case FE_LOGIN_THROTTLED: return "throttled";
	case FE_LOGIN_SESSION_LIMIT: return "session_limit";
	default: return "tempfail";
	}
}

/* Logs, counts and answers; may free l (the adapter's callback may end
 * the session). */
static void finish(struct fe_login *l, struct fe_login_result *res)
{
	const struct fe_session_info *info;
	struct fe_node *node = fe_thread_node(l->th);
	char quser[sizeof(l->user) * 4 + 3];

	l->busy = false;
	fe_metrics_login(&node->metrics, l->proto, status_name(res->status));
	if (l->freed) {
		/* the session (and its connection) may be gone: touch neither */
		release(l);
		free(l);
		return;
	}
	info = fe_conn_info(l->conn);
	pn_info("event=login session=%s protocol=%s client=%s user=%s result=%s reason=\"%s\""
		" limit=%s", info->session_id, l->proto, info->client_str,
		pn_log_quote(quser, sizeof(quser), l->user, strlen(l->user)),
		status_name(res->status), res->reason != NULL ? res->reason : "",
		mail_throttle_kind_name(res->kind));
	l->cb(l->ctx, res);
}

static void slot_cb(void *ctx, const struct mail_throttle_verdict *v,
		    struct mail_throttle_session *session)
{
	struct fe_login *l = ctx;
	struct fe_login_result res = {
		.account_id = l->auth.account_id,
		.tenant_id = l->auth.tenant_id,
		.address = l->address,
		.kind = v->kind,
	};

	if (session == NULL && v->refuse) {
		res.status = FE_LOGIN_SESSION_LIMIT;
		res.reason = v->reason[0] != '\0' ? v->reason : "Too many sessions";
		res.retry_after_ms = v->retry_after_ms;
		finish(l, &res);
		return;
	}
	l->slot = session;	/* NULL without a throttle */
	if (l->gone || l->freed) {
		/* nobody to serve: give the slot back at once */
		release(l);
		res.status = FE_LOGIN_TEMPFAIL;
		res.reason = "client gone";
		finish(l, &res);
		return;
	}
	res.status = FE_LOGIN_OK;
	res.reason = "ok";
	res.kind = MAIL_THROTTLE_NONE;
	l->logged_in = true;
	fe_conn_set_state(l->conn, FE_STATE_AUTHENTICATED);
	l->reg = fe_registry_add(l->th, l->auth.account_id, l->proto, l->address,
				 fe_conn_info(l->conn)->client_str,
				 fe_conn_info(l->conn)->session_id);
	finish(l, &res);
}

static void auth_cb(void *ctx, const struct mail_auth_result *a)
{
	struct fe_login *l = ctx;
	struct mail_throttle *t = fe_thread_throttle(l->th);
	struct fe_login_result res = {
		.account_id = a->account_id,
		.tenant_id = a->tenant_id,
		.reason = a->reason,
		.kind = a->throttle_kind,
		.retry_after_ms = a->retry_after_ms,
	};

	switch (a->status) {
	case MAIL_AUTH_OK:
		break;
	case MAIL_AUTH_BAD: res.status = FE_LOGIN_BAD; break;
	case MAIL_AUTH_DISABLED: res.status = FE_LOGIN_DISABLED; break;
	case MAIL_AUTH_THROTTLED: res.status = FE_LOGIN_THROTTLED; break;
	default: res.status = FE_LOGIN_TEMPFAIL; break;
	}
	if (a->status != MAIL_AUTH_OK || l->freed || l->gone) {
		if (a->status == MAIL_AUTH_OK) {
			res.status = FE_LOGIN_TEMPFAIL;
			res.reason = "client gone";
		}
		finish(l, &res);
		return;
	}
	l->auth = *a;
	snprintf(l->address, sizeof(l->address), "%s", a->address != NULL ? a->address : "");
	l->auth.address = NULL;
	l->auth.reason = NULL;
	if (t != NULL) {
		struct mail_throttle_who who = {
			.address = fe_conn_info(l->conn)->client_ip,
			.account_id = a->account_id,
			.tenant_id = a->tenant_id,
		};

		if (mail_throttle_session_open(t, &who, slot_cb, l) == 0)
			return; /* slot_cb goes on */
		pn_warn("event=session_slot_failed session=%s error=\"%s\"",
			fe_conn_info(l->conn)->session_id, strerror(errno));
	}
	/* no throttle (or no memory for it): the login stands unlimited */
	{
		struct mail_throttle_verdict v = { .reason = "" };

		slot_cb(l, &v, NULL);
	}
}

struct fe_login *fe_login_new(struct fe_conn *conn, const char *proto)
{
	struct fe_login *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->conn = conn;
	l->th = fe_conn_thread(conn);
	l->proto = proto;
	return l;
}

int fe_login_start(struct fe_login *l, const char *user, const char *password,
		   fe_login_cb *cb, void *ctx)
{
	struct fe_node *node = fe_thread_node(l->th);
	struct fe_backend *b = fe_thread_backend(l->th);
	struct mail_auth_throttle th = {
		.throttle = fe_thread_throttle(l->th),
		.client_ip = fe_conn_info(l->conn)->client_ip,
	};

	if (l->busy) {
		errno = EALREADY;
		return -1;
	}
	if (l->logged_in) {
		/* a new login (POP3 after its maildrop was refused): the old
		 * slot and entry go first */
		release(l);
		l->logged_in = false;
	}
	snprintf(l->user, sizeof(l->user), "%s", user);
	l->cb = cb;
	l->ctx = ctx;
	if (mail_auth_login_throttled(l->th->loop, b != NULL ? b->pg : NULL, node->auth_pool,
				      &th, user, password, auth_cb, l) < 0) {
		fe_metrics_login(&node->metrics, l->proto, "tempfail");
		return -1;
	}
	l->busy = true;
	return 0;
}

void fe_login_disconnected(struct fe_login *l)
{
	if (l != NULL)
		l->gone = true;
}

bool fe_login_logged_in(const struct fe_login *l)
{
	return l != NULL && l->logged_in;
}

void fe_login_free(struct fe_login **lp)
{
	struct fe_login *l = *lp;

	if (l == NULL)
		return;
	*lp = NULL;
	if (l->busy) {
		/* the callback in flight frees it */
		l->freed = true;
		return;
	}
	release(l);
	free(l);
}
