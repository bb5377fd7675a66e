/* Password logins for every protocol (POP3 USER/PASS and SASL PLAIN/LOGIN,
 * IMAP LOGIN, SMTP AUTH): the account is looked up in PostgreSQL through the
 * asynchronous pool, and the stored hash is checked on a worker thread
 * (yescrypt and Argon2 cost tens of milliseconds by design, far too long
 * for a loop thread).
 *
 * I/O: the lookup runs on the pool's loop; the hash check on the worker
 * pool; the callback on the loop thread, exactly once, never from inside
 * mail_auth_login(). The password is copied, and wiped from memory as soon
 * as it has been checked. Nothing is logged here; the caller logs the
 * outcome (never the password).
 *
 * Throttling (mail_auth_login_throttled): between the account lookup and
 * the hash check, mail_throttle_auth_check() (postern/mail-throttle.h)
 * decides with the account and tenant the lookup found (0 for an unknown
 * user: only the client address counts). A refusal is answered
 * MAIL_AUTH_THROTTLED without checking the password; otherwise the
 * password is checked, mail_throttle_auth_result() records the outcome,
 * and the answer (whatever it is, so that a fast answer does not tell a
 * guesser the password was right) is held on a loop timer for the
 * verdict's delay_ms. Temporary failures are not counted.
 *
 * Timing: an unknown user, a user without a password and a malformed name
 * are checked against a dummy yescrypt hash, so that a failed login takes
 * about as long whether or not the account exists.
 */
#ifndef POSTERN_MAIL_AUTH_H
#define POSTERN_MAIL_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "postern/mail-throttle.h"

#include "postern/store-pgpool.h"

struct pn_loop;
struct pn_workpool;

enum mail_auth_status {
	MAIL_AUTH_OK,		/* right password, account enabled */
	MAIL_AUTH_BAD,		/* unknown user, wrong or no password */
	MAIL_AUTH_DISABLED,	/* right password, logins refused for the account */
	MAIL_AUTH_TEMPFAIL,	/* PostgreSQL unavailable, worker queue full, ... */
	/* Refused by the throttle without checking the password (only from
	 * mail_auth_login_throttled): IMAP "NO [UNAVAILABLE]", POP3
	 * "-ERR [LOGIN-DELAY]", SMTP "454 4.7.0". */
	MAIL_AUTH_THROTTLED,
};

struct mail_auth_result {
	enum mail_auth_status status;
	uint64_t account_id;	/* OK and DISABLED */
	uint64_t tenant_id;
	const char *address;	/* OK and DISABLED: the stored address */
	/* A short static reason for the log ("unknown user", "wrong
	 * password", "postgres: timeout"...), never secret. */
	const char *reason;
	/* THROTTLED: the limit that refused and roughly when trying again
	 * makes sense (0: unknown). Otherwise: the limit that delayed the
	 * answer (MAIL_THROTTLE_NONE when none) and the delay. */
	enum mail_throttle_kind throttle_kind;
	unsigned int retry_after_ms;
	unsigned int delay_ms;
	/* The throttle decided from per-node counters (Redis down). */
	bool throttle_degraded;
};

typedef void mail_auth_cb(void *ctx, const struct mail_auth_result *result);

/* The longest user name and password looked at; longer ones are BAD. */
#define MAIL_AUTH_USER_MAX 254
#define MAIL_AUTH_PASSWORD_MAX 1024

/* Starts a login check. loop is the caller's (and the pool's) loop; pg may
 * be NULL (no database configured: every login is TEMPFAIL). Returns 0 (cb
 * will be called), or -1 with errno ENOMEM or EAGAIN (the worker queue is
 * full) and no callback: the caller answers "try again later" itself. */
int mail_auth_login(struct pn_loop *loop, struct store_pgpool *pg,
		    struct pn_workpool *workers, const char *user, const char *password,
		    mail_auth_cb *cb, void *ctx);

/* Throttling around a login. */
struct mail_auth_throttle {
	struct mail_throttle *throttle;	/* NULL: no throttling (as mail_auth_login) */
	/* The client's IP as text (from PROXY when trusted), without port;
	 * required with throttle. Copied. */
	const char *client_ip;
};

/* mail_auth_login() with throttling (see above); th may be NULL. The
 * throttle and loop must be the same thread's and outlive the callback.
 * Same returns as mail_auth_login(). */
int mail_auth_login_throttled(struct pn_loop *loop, struct store_pgpool *pg,
			      struct pn_workpool *workers, const struct mail_auth_throttle *th,
			      const char *user, const char *password, mail_auth_cb *cb,
			      void *ctx);

/* "ok", "bad", "disabled", "tempfail", "throttled" (metric label values). */
const char *mail_auth_status_name(enum mail_auth_status status);

#endif
