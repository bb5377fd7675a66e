/* Password logins: the account row from PostgreSQL (asynchronous pool),
 * then (when throttled) the throttle's verdict, then store_password_verify()
 * on a worker thread, then the throttle told the outcome and the answer held
 * for the verdict's delay on a loop timer, then the callback on the loop.
 * See postern/mail-auth.h.
 */
#include "postern/mail-auth.h"

#include "postern/loop.h"
#include "postern/store-password.h"
#include "postern/workpool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_COPY_MAX 512
/* The login lookup's prepared statement, declared on first use per pool. */
#define AUTH_LOOKUP_STMT "mail_auth_lookup"

struct auth_req {
	struct pn_loop *loop;
	struct pn_workpool *workers;
	mail_auth_cb *cb;
	void *ctx;
	char user[MAIL_AUTH_USER_MAX + 1];
	char password[MAIL_AUTH_PASSWORD_MAX + 1];
	char hash[HASH_COPY_MAX];
	char address[MAIL_AUTH_USER_MAX + 1];
	bool found, has_hash, enabled, check;
	uint64_t account_id, tenant_id;
	int verify_rc;			/* 1 match, 0 no, -1 bad stored hash */
	enum mail_auth_status status;
	const char *reason;

	/* throttling */
	struct mail_throttle *throttle;	/* NULL: none */
	char client_ip[MAIL_THROTTLE_ADDR_MAX];
	enum mail_throttle_kind kind;
	unsigned int retry_after_ms, delay_ms;
	bool degraded;
	pn_io_id hold_io;
	struct mail_auth_result held;
};

const char *mail_auth_status_name(enum mail_auth_status status)
{
	switch (status) {
	case MAIL_AUTH_OK:
		return "ok";
	case MAIL_AUTH_BAD:
		return "bad";
	case MAIL_AUTH_DISABLED:
		return "disabled";
	case MAIL_AUTH_THROTTLED:
		return "throttled";
	default:
		return "tempfail";
	}
}

/* A yescrypt hash nobody's password matches, so that unknown users cost as
 * much as known ones. Made once, on the first worker that needs it. */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[STORE_PASSWORD_HASH_MAX];

static void make_dummy(void)
{
	const char *error;

	if (store_password_hash("postern-dummy-password", dummy_hash, sizeof(dummy_hash),
				&error) < 0)
		dummy_hash[0] = '\0';
}

static void req_free(struct auth_req *r)
{
	explicit_bzero(r->password, sizeof(r->password));
	explicit_bzero(r->hash, sizeof(r->hash));
	free(r);
}

/* Worker thread: the expensive part. */
static void verify_work(void *ctx)
{
	struct auth_req *r = ctx;
	const char *error;

	if (!r->check)
		return;
	if (r->found && r->has_hash) {
		r->verify_rc = store_password_verify(r->hash, r->password, &error);
	} else {
		pthread_once(&dummy_once, make_dummy);
		if (dummy_hash[0] != '\0')
			(void)store_password_verify(dummy_hash, r->password, &error);
		r->verify_rc = 0;
	}
	explicit_bzero(r->password, sizeof(r->password));
}

static void fill_who(const struct auth_req *r, struct mail_throttle_who *who)
{
	who->address = r->client_ip;
	who->account_id = r->found ? r->account_id : 0;
	who->tenant_id = r->found ? r->tenant_id : 0;
}

static void hold_fired(void *ctx)
{
	struct auth_req *r = ctx;

	r->cb(r->ctx, &r->held);
	explicit_bzero(r->hash, sizeof(r->hash));
	pn_io_close(r->loop, r->hold_io);	/* hold_closed frees r */
}

static void hold_closed(void *ctx)
{
	req_free(ctx);
}

static const struct pn_io_handlers hold_handlers = {
	.on_timer = hold_fired,
	.on_close = hold_closed,
};

/* Loop thread: the answer, at once or after the throttle's delay. */
static void verify_done(void *ctx)
{
	struct auth_req *r = ctx;
	struct mail_auth_result res = { .status = r->status, .reason = r->reason };

	if (r->check) {
		if (r->verify_rc == 1) {
			res.status = r->enabled ? MAIL_AUTH_OK : MAIL_AUTH_DISABLED;
			res.reason = r->enabled ? "ok" : "account disabled";
		} else {
			res.status = MAIL_AUTH_BAD;
			if (!r->found)
				res.reason = "unknown user";
			else if (!r->has_hash)
				res.reason = "no password set";
			else if (r->verify_rc < 0)
				res.reason = "unusable stored hash";
			else
				res.reason = "wrong password";
		}
		if (res.status == MAIL_AUTH_OK || res.status == MAIL_AUTH_DISABLED) {
			res.account_id = r->account_id;
			res.tenant_id = r->tenant_id;
			res.address = r->address;
		}
		if (r->throttle != NULL) {
			struct mail_throttle_who who;

			/* The right password counts as a success even for a
			 * disabled account: it was not a guess. */
			fill_who(r, &who);
			(void)mail_throttle_auth_result(r->throttle, &who,
							res.status != MAIL_AUTH_BAD, NULL, NULL);
		}
	}
	res.throttle_kind = r->kind;
	res.retry_after_ms = r->retry_after_ms;
	res.delay_ms = r->delay_ms;
	res.throttle_degraded = r->degraded;
	if (r->check && r->delay_ms > 0) {
		r->hold_io = pn_io_add(r->loop, -1, 0, &hold_handlers, r);
		if (r->hold_io != PN_IO_NONE &&
		    pn_io_timer_set(r->loop, r->hold_io, r->delay_ms) == 0) {
			r->held = res;
			return;
		}
		if (r->hold_io != PN_IO_NONE) {
			/* no timer: answer now; hold_closed frees r */
			r->cb(r->ctx, &res);
			pn_io_close(r->loop, r->hold_io);
			return;
		}
	}
	r->cb(r->ctx, &res);
	req_free(r);
}

static void finish_now(struct auth_req *r, enum mail_auth_status status, const char *reason)
{
	r->check = false;
	r->status = status;
	r->reason = reason;
	verify_done(r);
}

static void submit_verify(struct auth_req *r)
{
	if (pn_workpool_submit(r->workers, r->loop, verify_work, verify_done, r) < 0)
		finish_now(r, MAIL_AUTH_TEMPFAIL, "password workers busy");
}

static void check_done(void *ctx, const struct mail_throttle_verdict *v)
{
	struct auth_req *r = ctx;

	r->kind = v->kind;
	r->degraded = v->degraded;
	if (v->refuse) {
		r->retry_after_ms = v->retry_after_ms;
		finish_now(r, MAIL_AUTH_THROTTLED, v->reason[0] != '\0' ? v->reason :
			   "too many failed logins");
		return;
	}
	r->delay_ms = v->delay_ms;
	submit_verify(r);
}

static void lookup_done(void *ctx, struct store_pg_reply *reply)
{
	struct auth_req *r = ctx;
	PGresult *res = reply->res;

	if (reply->status != STORE_OK) {
		finish_now(r, MAIL_AUTH_TEMPFAIL, reply->status == STORE_TEMPORARY ?
			   "postgres unavailable" : "postgres error");
		return;
	}
	if (PQntuples(res) > 0) {
		const char *hash = PQgetvalue(res, 0, 3);

		r->found = true;
		r->account_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		r->tenant_id = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
		snprintf(r->address, sizeof(r->address), "%s", PQgetvalue(res, 0, 2));
		r->has_hash = !PQgetisnull(res, 0, 3) && strlen(hash) < sizeof(r->hash);
		if (r->has_hash)
			memcpy(r->hash, hash, strlen(hash) + 1);
		r->enabled = PQgetvalue(res, 0, 4)[0] == 't';
	}
	r->check = true;
	if (r->throttle != NULL) {
		struct mail_throttle_who who;

		fill_who(r, &who);
		if (mail_throttle_auth_check(r->throttle, &who, check_done, r) == 0)
			return; /* check_done goes on */
		/* no memory for the check: verify unthrottled */
	}
	submit_verify(r);
}

int mail_auth_login(struct pn_loop *loop, struct store_pgpool *pg,
		    struct pn_workpool *workers, const char *user, const char *password,
		    mail_auth_cb *cb, void *ctx)
{
	return mail_auth_login_throttled(loop, pg, workers, NULL, user, password, cb, ctx);
}

int mail_auth_login_throttled(struct pn_loop *loop, struct store_pgpool *pg,
			      struct pn_workpool *workers, const struct mail_auth_throttle *th,
			      const char *user, const char *password, mail_auth_cb *cb,
			      void *ctx)
{
	static const char sql[] =
		"SELECT id, tenant_id, address, password_hash, enabled FROM accounts "
		"WHERE lower(address) = lower($1)";
	struct auth_req *r = calloc(1, sizeof(*r));
	size_t ulen = strlen(user), plen = strlen(password);
	const char *params[1];
	const struct store_pg_stmt *stmt;
	const char *error;
	int rc;

	if (r == NULL) {
		errno = ENOMEM;
		return -1;
	}
	r->loop = loop;
	r->workers = workers;
	r->cb = cb;
	r->ctx = ctx;
	r->hold_io = PN_IO_NONE;
	if (th != NULL && th->throttle != NULL && th->client_ip != NULL &&
	    strlen(th->client_ip) < sizeof(r->client_ip)) {
		r->throttle = th->throttle;
		memcpy(r->client_ip, th->client_ip, strlen(th->client_ip) + 1);
	}
	if (ulen > MAIL_AUTH_USER_MAX || plen > MAIL_AUTH_PASSWORD_MAX || ulen == 0 ||
	    pg == NULL) {
		/* Nothing to look up: through the workers all the same, for the
		 * timing and so that the callback comes later. */
		r->check = pg != NULL;
		r->status = MAIL_AUTH_TEMPFAIL;
		r->reason = "no database configured";
		if (plen <= MAIL_AUTH_PASSWORD_MAX)
			memcpy(r->password, password, plen + 1);
		if (pn_workpool_submit(workers, loop, verify_work, verify_done, r) < 0) {
			req_free(r);
			errno = EAGAIN;
			return -1;
		}
		return 0;
	}
	memcpy(r->user, user, ulen + 1);
	memcpy(r->password, password, plen + 1);
	params[0] = r->user;
	/* Prepared once per pool (connection) and planned once: the lookup
	 * runs on every login. Without it (out of memory) the plain query. */
	stmt = store_pgpool_find(pg, AUTH_LOOKUP_STMT);
	if (stmt == NULL)
		stmt = store_pgpool_declare(pg, AUTH_LOOKUP_STMT, sql, 1, NULL, &error);
	if (stmt != NULL) {
		struct store_pg_query q = { .stmt = stmt, .nparams = 1, .values = params,
					    .priority = true };

		rc = store_pgpool_query(pg, &q, lookup_done, r);
	} else {
		rc = store_pgpool_exec(pg, sql, 1, params, lookup_done, r);
	}
	if (rc < 0) {
		int e = errno;
		req_free(r);
		errno = e == ENOMEM ? ENOMEM : EAGAIN;
		return -1;
	}
	return 0;
}
