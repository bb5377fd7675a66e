/* The login hook every protocol adapter shares (POP3, SMTP AUTH, IMAP):
 * one call takes a user name and password through the cluster-wide
 * protection and the session registry, and answers with one status the
 * adapter maps to its protocol's words:
 *
 *   1. mail_auth_login_throttled() (postern/mail-auth.h) with the thread's
 *      throttle (fe-limits.h): the account lookup, the throttle's verdict
 *      (refusal, or a delay the answer is held for), the hash check, the
 *      outcome counted;
 *   2. on success, mail_throttle_session_open(): a session slot per user
 *      and client address, per account, per tenant, across all nodes;
 *   3. on success, the connection's state becomes AUTHENTICATED and the
 *      session appears in the Redis session registry (fe-registry.h), which
 *      also makes it reachable by `posternctl kick`.
 * The login is logged (event=login, never the password) and counted in
 * postern_logins_total{protocol,result}. fe_login_free() at the end of the
 * session gives the slot back and removes the registry entry.
 *
 * Loop thread of the connection only.
 */
#ifndef FE_LOGIN_H
#define FE_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "postern/mail-throttle.h"

struct fe_conn;
struct fe_login;

enum fe_login_status {
	FE_LOGIN_OK,
	/* wrong password or unknown user: IMAP NO [AUTHENTICATIONFAILED],
	 * POP3 -ERR [AUTH], SMTP 535 5.7.8 */
	FE_LOGIN_BAD,
	/* right password, logins refused for the account */
	FE_LOGIN_DISABLED,
	/* storage unavailable: IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP],
	 * SMTP 454 4.7.0 */
	FE_LOGIN_TEMPFAIL,
	/* too many failed logins (address, account or tenant), refused
	 * without checking the password: IMAP NO [UNAVAILABLE], POP3
	 * -ERR [LOGIN-DELAY], SMTP 454 4.7.0 */
	FE_LOGIN_THROTTLED,
	/* right password, but too many concurrent sessions (user and address,
	 * account or tenant): IMAP NO [LIMIT], POP3 -ERR [IN-USE], SMTP
	 * 454 4.7.0 */
	FE_LOGIN_SESSION_LIMIT,
};

struct fe_login_result {
	enum fe_login_status status;
	uint64_t account_id;		/* OK (and SESSION_LIMIT, DISABLED) */
	uint64_t tenant_id;
	const char *address;		/* OK: the stored address */
	/* Static. THROTTLED and SESSION_LIMIT: one line fit for the client
	 * ("Too many sessions for this user"); otherwise for the log. */
	const char *reason;
	enum mail_throttle_kind kind;	/* THROTTLED / SESSION_LIMIT: which limit */
	unsigned int retry_after_ms;	/* THROTTLED: 0 when unknown */
};

typedef void fe_login_cb(void *ctx, const struct fe_login_result *res);

/* One per session. proto: the session registry's name ("imap", "pop3",
 * "smtp", "submission", "lmtp"), a static string. NULL when out of memory. */
struct fe_login *fe_login_new(struct fe_conn *conn, const char *proto);
/* Starts a login. Returns 0: cb(ctx, ...) is called later from the loop,
 * exactly once (unless fe_login_free() came first); -1: no callback (a
 * login in progress, no memory, worker queue full) and the adapter answers
 * a temporary failure itself. After a successful login, a new one first
 * gives the old slot and registry entry back (POP3 may log in again after
 * its maildrop was refused). The password is copied and wiped. */
int fe_login_start(struct fe_login *l, const char *user, const char *password,
		   fe_login_cb *cb, void *ctx);
/* The client went away: a login that completes now does not register the
 * session (its slot is given back at once). */
void fe_login_disconnected(struct fe_login *l);
/* True once a login succeeded. */
bool fe_login_logged_in(const struct fe_login *l);
/* Logout: gives the session slot back, removes the registry entry; a login
 * still in progress is forgotten (no callback). Sets *l NULL; NULL is fine. */
void fe_login_free(struct fe_login **l);

#endif
