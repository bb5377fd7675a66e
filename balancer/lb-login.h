/* L7 mode, sans-IO: the balancer's own pre-login dialogue with a client
 * (struct lb_login) and the replay of the captured login to the chosen
 * frontend (struct lb_replay), for IMAP, POP3 and SMTP submission. Neither
 * reads a socket or touches TLS: the owner feeds plaintext and carries out
 * the events, the way nginx's mail proxy and Dovecot's login proxy work.
 *
 * Client side, per connection:
 *
 *   l = lb_login_new(&settings);
 *   loop:   lb_login_feed(l, plaintext, len)        (-1: input over the bound)
 *           while ((r = lb_login_next(l, &ev)) == 1) carry out ev
 *           r == 0: need more input; r == -1: cannot happen after a CLOSE
 *
 *   LB_LOGIN_REPLY     send ev.data[0..ev.len) to the client (valid until
 *                      the next call); the first event is the greeting
 *   LB_LOGIN_STARTTLS  the go-ahead went out in the previous REPLY: start
 *                      TLS on the client connection now. Every plaintext
 *                      byte the client sent after the STARTTLS command
 *                      line has been discarded; feed only decrypted bytes
 *                      from here on
 *   LB_LOGIN_AUTH      the client logged in: lb_login_credentials() holds
 *                      what to replay; lb_login_rest() the bytes it sent
 *                      after the login command (to pass on later)
 *   LB_LOGIN_CLOSE     close after sending the previous replies (LOGOUT,
 *                      QUIT, too many bad commands, a line too long)
 *
 * No event follows AUTH or CLOSE. Login is refused in plaintext when
 * require_tls is set (IMAP LOGINDISABLED, POP3 and SMTP say TLS first).
 *
 * Upstream side, after AUTH, once connected (and the PROXY header sent):
 *
 *   r = lb_replay_new(family, credentials);
 *   loop:   lb_replay_feed(r, upstream bytes, len)
 *           while ((k = lb_replay_next(r, &ev)) == 1) carry out ev
 *
 *   LB_REPLAY_SEND     send ev.data to the upstream
 *   LB_REPLAY_FORWARD  send ev.data to the client (the frontend's answer to
 *                      the login, and untagged lines before it)
 *   LB_REPLAY_DONE     the login is answered (OK or NO alike: a failed
 *                      login reads exactly as the frontend wrote it); relay
 *                      from now on, starting with lb_replay_rest() (upstream
 *                      bytes after the answer) and lb_login_rest()
 *   LB_REPLAY_FAIL     the upstream is not usable (no greeting, a refusal
 *                      greeting, EHLO refused, garbage): nothing of it
 *                      reached the client, try another upstream
 *
 * Limits: a command line is at most LB_LOGIN_MAX_LINE bytes, a user name,
 * authorization id or password at most LB_LOGIN_MAX_CRED bytes, at most
 * LB_LOGIN_MAX_ERRORS bad commands; an upstream line at most
 * LB_REPLAY_MAX_LINE. Beyond them the client is told and closed, or the
 * upstream fails.
 */
#ifndef POSTERN_LB_LOGIN_H
#define POSTERN_LB_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lb-config.h"
#include "postern/buf.h"

#define LB_LOGIN_MAX_LINE 8192
#define LB_LOGIN_MAX_CRED 256
#define LB_LOGIN_MAX_ERRORS 10
#define LB_REPLAY_MAX_LINE 16384

enum lb_login_mech {
	LB_MECH_LOGIN = 0,	/* a user name and a password: IMAP LOGIN, POP3
				 * USER/PASS, SMTP AUTH LOGIN */
	LB_MECH_PLAIN,		/* SASL PLAIN (RFC 4616): authzid, authcid, password */
};

/* What the client logged in with. Strings are NUL-terminated; the password
 * may hold any byte but NUL, CR and LF. */
struct lb_credentials {
	enum lb_login_mech mech;
	char authzid[LB_LOGIN_MAX_CRED + 1];	/* PLAIN only; "" = none */
	char user[LB_LOGIN_MAX_CRED + 1];
	char pass[LB_LOGIN_MAX_CRED + 1];
	char tag[LB_LOGIN_MAX_CRED + 1];	/* IMAP: the client's command tag */
	char helo[LB_LOGIN_MAX_CRED + 1];	/* SMTP: the client's EHLO name */
};

/* The name to route by: the authorization id when one was given (the
 * mailbox the session acts on), else the user name. */
const char *lb_credentials_route_user(const struct lb_credentials *c);

struct lb_login_settings {
	enum lb_family family;
	bool tls;		/* the connection is TLS already (implicit TLS) */
	bool starttls;		/* STARTTLS/STLS may be offered (a certificate is set) */
	bool require_tls;	/* no login in plaintext */
	const char *hostname;	/* in greetings; NULL: "postern" */
	uint64_t smtp_size;	/* SMTP SIZE advertised; 0: none */
};

enum lb_login_ev_type {
	LB_LOGIN_REPLY = 1,
	LB_LOGIN_STARTTLS,
	LB_LOGIN_AUTH,
	LB_LOGIN_CLOSE,
};

struct lb_login_event {
	enum lb_login_ev_type type;
	const uint8_t *data;
	size_t len;
};

struct lb_login;

/* Returns NULL when out of memory. Strings in set are copied. */
struct lb_login *lb_login_new(const struct lb_login_settings *set);
/* Wipes the credentials and frees; sets *l to NULL. */
void lb_login_free(struct lb_login **l);
/* Appends client plaintext. Returns 0, or -1 if more than the bound is
 * waiting (the owner should stop reading and close). */
int lb_login_feed(struct lb_login *l, const void *data, size_t len);
/* See the top of the file. */
int lb_login_next(struct lb_login *l, struct lb_login_event *ev_r);
/* Valid after LB_LOGIN_AUTH. */
const struct lb_credentials *lb_login_credentials(const struct lb_login *l);
/* Bytes the client sent after the login command (valid until free). */
void lb_login_rest(const struct lb_login *l, const uint8_t **data_r, size_t *len_r);
/* True once the client connection is TLS (implicit, or after STARTTLS). */
bool lb_login_tls(const struct lb_login *l);

enum lb_replay_ev_type {
	LB_REPLAY_SEND = 1,
	LB_REPLAY_FORWARD,
	LB_REPLAY_DONE,
	LB_REPLAY_FAIL,
};

struct lb_replay_event {
	enum lb_replay_ev_type type;
	const uint8_t *data;
	size_t len;
	const char *reason;	/* FAIL: a static message for the log */
};

struct lb_replay;

/* Copies the credentials. Returns NULL when out of memory. */
struct lb_replay *lb_replay_new(enum lb_family family, const struct lb_credentials *c);
void lb_replay_free(struct lb_replay **r);
/* Appends upstream bytes. Returns 0, or -1 over the bound (then next()
 * reports FAIL). */
int lb_replay_feed(struct lb_replay *r, const void *data, size_t len);
int lb_replay_next(struct lb_replay *r, struct lb_replay_event *ev_r);
/* After LB_REPLAY_DONE: whether the frontend accepted the login. */
bool lb_replay_login_ok(const struct lb_replay *r);
/* Upstream bytes after the login answer (valid until free). */
void lb_replay_rest(const struct lb_replay *r, const uint8_t **data_r, size_t *len_r);

/* ---- shared helpers of the per-protocol files (lb-login*.c) ---- */

/* Decodes a SASL PLAIN response (base64 of authzid NUL authcid NUL
 * passwd, RFC 4616 section 2) into c (mech PLAIN). Returns 0, or -1 for bad
 * base64, a wrong number of NULs, an empty authcid or password, a field
 * over LB_LOGIN_MAX_CRED or a CR or LF in a field. */
int lb_sasl_plain_decode(const char *b64, size_t len, struct lb_credentials *c);
/* Base64 of authzid NUL user NUL pass into out (cleared first; bounded). */
int lb_sasl_plain_encode(const struct lb_credentials *c, struct pn_buf *out);
/* Decodes base64 text into a NUL-terminated credential field (no NUL, CR
 * or LF inside, at most LB_LOGIN_MAX_CRED bytes). Returns 0 or -1. */
int lb_b64_field(const char *b64, size_t len, char *dst);

#endif
