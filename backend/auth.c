/* Password logins: the account row from PostgreSQL (asynchronous pool),
 * then store_password_verify() on a worker thread, then the callback on the
 * loop. See postern/mail-auth.h.
 */
#include "postern/mail-auth.h"

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

/* Loop thread: the answer. */
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
	if (pn_workpool_submit(r->workers, r->loop, verify_work, verify_done, r) < 0)
		finish_now(r, MAIL_AUTH_TEMPFAIL, "password workers busy");
}

int mail_auth_login(struct pn_loop *loop, struct store_pgpool *pg,
		    struct pn_workpool *workers, const char *user, const char *password,
		    mail_auth_cb *cb, void *ctx)
{
	static const char sql[] =
		"SELECT id, tenant_id, address, password_hash, enabled FROM accounts "
		"WHERE lower(address) = lower($1)";
	struct auth_req *r = calloc(1, sizeof(*r));
	size_t ulen = strlen(user), plen = strlen(password);
	const char *params[1];

	if (r == NULL) {
		errno = ENOMEM;
		return -1;
	}
	r->loop = loop;
	r->workers = workers;
	r->cb = cb;
	r->ctx = ctx;
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
	if (store_pgpool_exec(pg, sql, 1, params, lookup_done, r) < 0) {
		int e = errno;
		req_free(r);
		errno = e == ENOMEM ? ENOMEM : EAGAIN;
		return -1;
	}
	return 0;
}
