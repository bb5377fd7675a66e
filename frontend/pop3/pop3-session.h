/* POP3 server session engine: RFC 1939 (POP3), RFC 2449 (CAPA, response
 * codes, PIPELINING), RFC 2595 (STLS), RFC 5034 (AUTH PLAIN / LOGIN),
 * RFC 3206 ([SYS/TEMP], [SYS/PERM], [AUTH]). Private to frontend/.
 * The SASL exchanges themselves (base64, "=" and "*", the PLAIN and LOGIN
 * messages and their checks) are frontend/sasl/sasl.h's, with this file's
 * user name and password limits.
 *
 * The engine is sans-IO: it does no I/O and no storage and includes no
 * ring, socket, database or TLS header. The daemon owns the connection and
 * the storage and drives the engine:
 *
 *   s = pop3_session_new(&settings);          greeting is the first SEND
 *   loop:
 *     while ((r = pop3_session_next(s, &act)) == 1)
 *         carry out act (see enum pop3_action_type);
 *     if (r < 0) { pop3_session_free(&s); close the socket if still open; }
 *     else wait for input (pop3_session_feed) or a storage result
 *          (pop3_session_*_result, pop3_session_message_data).
 *
 * pop3_session_next() returns 1 with an action, 0 when nothing can happen
 * until more input or a result arrives, -1 when the session is over: after
 * it returned CLOSE, or after pop3_session_disconnected() once everything
 * still owed (a RELEASE, the result of a request already handed out) was
 * returned. Nothing in the engine aborts on peer input.
 *
 * Requests (AUTH_VERIFY, MAILDROP_OPEN, MESSAGE_GET, UPDATE) are answered
 * later by the matching result call; at most one request is outstanding and
 * while it is, pipelined commands wait in the input buffer (RFC 2449
 * PIPELINING: processed in order, one at a time). RELEASE needs no answer.
 *
 * The maildrop lock: MAILDROP_OPEN asks the daemon to take the cluster-wide
 * lock and load the listing. For every MAILDROP_OPEN answered with
 * POP3_MAILDROP_OK the engine returns exactly one RELEASE later (after QUIT
 * and its UPDATE, on an error limit, shutdown or disconnect); on any other
 * answer the daemon holds no lock (it releases a lock it took before a
 * failure itself). UPDATE is only asked for after QUIT in the TRANSACTION
 * state with at least one message marked deleted; a connection that ends
 * any other way gets a RELEASE and no UPDATE, so nothing is removed.
 *
 * Memory and limits: input is buffered up to a fixed bound (see
 * pop3_session_feed); replies and message output go through a bounded
 * output buffer; a too long line is answered with -ERR and skipped up to its
 * LF without being buffered. Lines end with CRLF; a bare LF is accepted too.
 *
 * Lifetimes: pointers inside an action (SEND bytes, AUTH_VERIFY strings,
 * UPDATE uids) stay valid until the next call of any pop3_session_*
 * function on the session, except that the AUTH_VERIFY strings and UPDATE
 * uids stay valid until their result call. The engine wipes the password
 * from its memory when the verification is answered.
 *
 * Threads: a session is used by one thread at a time; settings may be
 * shared read-only by many sessions.
 */
#ifndef POP3_SESSION_H
#define POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest user name, authorization id and password accepted (octets). */
#define POP3_MAX_USER_LEN 255
#define POP3_MAX_PASSWORD_LEN 1024
/* RFC 1939 section 7: a unique-id is 1 to 70 characters 0x21..0x7E. */
#define POP3_MAX_UIDL_LEN 70

/* Defaults of struct pop3_settings (chosen and documented here):
 * - command line: RFC 2449 section 4 allows 255 octets with CRLF; we take
 *   1024 so that a long user name or password in PASS or an AUTH initial
 *   response from a client that ignores the limit still works.
 * - SASL response line (the base64 line after "+ "): 4096, enough for a
 *   PLAIN response with the longest user and password above.
 * - errors: after 10 answers counted as errors (unknown or malformed
 *   commands, commands in the wrong state, bad message numbers, too long
 *   lines, failed authentications) the reply carries "Too many errors" and
 *   the connection is closed.
 * - commands: 250000 per connection (RETR and DELE of 100000 messages with
 *   room to spare); the next command other than QUIT is refused and the
 *   connection closed. QUIT is always accepted, so marked deletions are
 *   never lost to the limit. */
#define POP3_DEFAULT_MAX_LINE 1024
#define POP3_DEFAULT_MAX_AUTH_LINE 4096
#define POP3_DEFAULT_MAX_ERRORS 10
#define POP3_DEFAULT_MAX_COMMANDS 250000
/* Limits are never set below the RFC 2449 minimum line of 255 octets. */
#define POP3_MIN_LINE 255

struct pop3_settings {
	/* Greeting "+OK <hostname> POP3 ready."; printable ASCII, 1..255. */
	const char *hostname;
	/* CAPA "IMPLEMENTATION <value>"; NULL or "" leaves the line out.
	 * Printable ASCII (spaces allowed), at most 255 octets. */
	const char *implementation;
	/* The connection is already TLS (implicit TLS, port 995 style). */
	bool tls_active;
	/* STLS may be offered (a certificate is configured). */
	bool stls_available;
	/* Plaintext USER/PASS and AUTH PLAIN/LOGIN are allowed without TLS
	 * (e.g. a listener on a trusted network behind the TLS-terminating
	 * balancer). Otherwise they are refused until TLS is active. */
	bool trusted;
	/* Whether RETR asks the daemon to set \Seen (MESSAGE_GET set_seen);
	 * TOP never does. Default true: a message fetched over POP3 shows as
	 * read in IMAP, as with Dovecot. */
	bool retr_sets_seen;
	/* 0 selects the default; smaller values are raised to POP3_MIN_LINE. */
	size_t max_line;	/* a command line, CRLF included */
	size_t max_auth_line;	/* a SASL response line, CRLF included */
	unsigned int max_errors;
	unsigned int max_commands;
};

/* Fills *set_r with the defaults: hostname "localhost", no IMPLEMENTATION,
 * no TLS, STLS not offered, untrusted, RETR sets \Seen, default limits. */
void pop3_settings_defaults(struct pop3_settings *set_r);
/* Returns 0 if the settings are usable, or -1 with *error_r set to a static
 * message (bad hostname or implementation string). */
int pop3_settings_check(const struct pop3_settings *set, const char **error_r);

enum pop3_state {
	POP3_STATE_AUTHORIZATION,
	POP3_STATE_TRANSACTION,
	POP3_STATE_UPDATE,	/* QUIT given in TRANSACTION, expunging */
	POP3_STATE_DONE,	/* closing or closed */
};

enum pop3_auth_mech {
	POP3_AUTH_MECH_USER,	/* USER + PASS */
	POP3_AUTH_MECH_PLAIN,	/* AUTH PLAIN (RFC 4616) */
	POP3_AUTH_MECH_LOGIN,	/* AUTH LOGIN */
};

enum pop3_action_type {
	/* Send send.data[0..send.len) to the client (through TLS if active). */
	POP3_ACTION_SEND = 1,
	/* The "+OK Begin TLS negotiation" reply was returned in a SEND before
	 * this. Discard every plaintext byte received so far that was not fed
	 * yet, start the TLS handshake and call pop3_session_tls_started()
	 * when it completed (close the connection if it fails). The engine
	 * already dropped the input it had buffered after the STLS line. */
	POP3_ACTION_START_TLS,
	/* Close the connection after sending what was returned before. The
	 * next pop3_session_next() returns -1. close.reason is a static
	 * string for the log ("quit", "too many errors", ...). */
	POP3_ACTION_CLOSE,
	/* Verify credentials; answer with pop3_session_auth_result().
	 * auth.authzid is "" unless AUTH PLAIN carried an authorization
	 * identity; Postern has no proxy authorization, so the daemon should
	 * refuse a non-empty authzid that differs from auth.user. */
	POP3_ACTION_AUTH_VERIFY,
	/* Take the maildrop lock for maildrop.account_id and load the INBOX
	 * listing; answer with pop3_session_maildrop_result(). */
	POP3_ACTION_MAILDROP_OPEN,
	/* Read message message.uid of the maildrop; answer with
	 * pop3_session_message_data() (one or more chunks, the last with
	 * final set) or pop3_session_message_fail(). message.set_seen asks to
	 * set \Seen on it. The engine does TOP's cutting itself, the daemon
	 * may still use message.top_lines to read less. */
	POP3_ACTION_MESSAGE_GET,
	/* Expunge update.uids[0..update.count) from the INBOX of
	 * update.account_id in one transaction; answer with
	 * pop3_session_update_result(). A RELEASE follows after the answer. */
	POP3_ACTION_UPDATE,
	/* Release the maildrop lock of maildrop.account_id. No answer. */
	POP3_ACTION_RELEASE,
};

struct pop3_action {
	enum pop3_action_type type;
	union {
		struct {
			const uint8_t *data;
			size_t len;
		} send;
		struct {
			const char *reason;
		} close;
		struct {
			enum pop3_auth_mech mech;
			const char *authzid;
			const char *user;
			const char *password;
		} auth;
		struct {
			uint64_t account_id;
		} maildrop;	/* MAILDROP_OPEN and RELEASE */
		struct {
			uint64_t account_id;
			uint32_t msgno;		/* 1-based POP3 message number */
			uint32_t uid;
			uint64_t size;		/* size from the listing */
			bool top;		/* TOP (else RETR) */
			uint32_t top_lines;	/* TOP: body lines wanted */
			bool set_seen;
		} message;
		struct {
			uint64_t account_id;
			const uint32_t *uids;
			size_t count;
		} update;
	};
};

/* One message of the maildrop listing, in POP3 order (message 1 first;
 * normally ascending UID). */
struct pop3_message {
	uint32_t uid;
	/* Octets of the message as stored, with CRLF line ends: what RETR
	 * sends before byte-stuffing (RFC 1939 section 5, LIST). */
	uint64_t size;
	/* RFC 1939 section 7 unique-id: 1..70 characters 0x21..0x7E, NUL
	 * terminated; stable across sessions (UIDVALIDITY + UID). */
	const char *uidl;
};

enum pop3_auth_result {
	POP3_AUTH_OK,		/* "+OK", then MAILDROP_OPEN for account_id */
	POP3_AUTH_BAD,		/* "-ERR [AUTH] ..." (counts as an error) */
	POP3_AUTH_TEMP_FAIL,	/* "-ERR [SYS/TEMP] ..." */
	POP3_AUTH_PERM_FAIL,	/* "-ERR [SYS/PERM] ..." (e.g. account disabled) */
	POP3_AUTH_LOGIN_DELAY,	/* "-ERR [LOGIN-DELAY] ..." */
};

enum pop3_maildrop_result {
	POP3_MAILDROP_OK,	/* lock taken, listing loaded */
	POP3_MAILDROP_IN_USE,	/* "-ERR [IN-USE] ...": locked elsewhere */
	POP3_MAILDROP_TEMP_FAIL,	/* "-ERR [SYS/TEMP] ..." */
	POP3_MAILDROP_PERM_FAIL,	/* "-ERR [SYS/PERM] ..." */
};

enum pop3_message_failure {
	POP3_MESSAGE_GONE,	/* "-ERR Message no longer exists." */
	POP3_MESSAGE_TEMP_FAIL,	/* "-ERR [SYS/TEMP] ..." */
};

enum pop3_close_reason {
	POP3_CLOSE_SHUTDOWN,	/* "-ERR [SYS/TEMP] Server shutting down." */
	POP3_CLOSE_IDLE,	/* RFC 1939 autologout: "-ERR Disconnected for inactivity." */
	POP3_CLOSE_KICK,	/* posternctl kick: "-ERR Disconnected by the administrator." */
};

struct pop3_session;

/* Creates a session; the greeting is the first SEND. set is copied, but
 * its strings are borrowed and must outlive the session. Returns NULL if
 * the settings fail pop3_settings_check() or memory ran out. */
struct pop3_session *pop3_session_new(const struct pop3_settings *set);
/* Frees the session (wiping secrets) and sets *s to NULL. It returns no
 * actions: call it after next() returned -1, or after carrying out a
 * RELEASE yourself when pop3_session_holds_maildrop() says so. */
void pop3_session_free(struct pop3_session **s);

/* Takes up to len bytes from the client (plaintext, after TLS if any).
 * Returns how many were taken: fewer than len when the input buffer is full
 * because commands wait behind an outstanding request; keep the rest, stop
 * reading, and feed it again after next() made progress. Bytes fed while
 * the engine waits for TLS to start, after CLOSE or after a disconnect are
 * taken and dropped. */
size_t pop3_session_feed(struct pop3_session *s, const void *data, size_t len);

/* Returns the next action (see the file comment). */
int pop3_session_next(struct pop3_session *s, struct pop3_action *act_r);

/* The TLS handshake asked for by START_TLS completed. The session stays in
 * the AUTHORIZATION state with nothing remembered from before (RFC 2595
 * section 4). */
void pop3_session_tls_started(struct pop3_session *s);

/* The client went away (EOF, reset, TLS failure, write error). No further
 * SEND is returned; a held lock is released (RELEASE) without UPDATE. A
 * request already handed out must still be answered. */
void pop3_session_disconnected(struct pop3_session *s);

/* Asks the session to end with a goodbye (drain on SIGTERM, idle timer).
 * Done at the next command boundary: an outstanding request is finished
 * first. The goodbye is followed by RELEASE (if held) and CLOSE; nothing
 * is expunged. A second call, or a call on an ending session, is ignored. */
void pop3_session_shutdown(struct pop3_session *s, enum pop3_close_reason reason);

/* Answers AUTH_VERIFY; account_id is used only with POP3_AUTH_OK.
 * The result calls return 0, or -1 with *error_r set (a static message)
 * when no such request was handed out, or the answer is invalid; -1 means a
 * bug in the caller and changes nothing, except where said otherwise. */
int pop3_session_auth_result(struct pop3_session *s, enum pop3_auth_result result,
			     uint64_t account_id, const char **error_r);

/* Answers MAILDROP_OPEN. With POP3_MAILDROP_OK, msgs[0..count) is copied.
 * An invalid listing (a bad UIDL string, too many messages) returns -1 and
 * is also treated as a temporary failure: the client gets -ERR [SYS/TEMP]
 * and, since the lock was taken, a RELEASE follows. */
int pop3_session_maildrop_result(struct pop3_session *s, enum pop3_maildrop_result result,
				 const struct pop3_message *msgs, size_t count,
				 const char **error_r);

/* Gives bytes of the message asked for by MESSAGE_GET. Takes up to len of
 * them and sets *consumed_r; when fewer than len were taken the output
 * buffer is full: return the SEND from next() and pass the rest again.
 * final marks the end of the message; it takes effect only once the whole
 * chunk was taken (*consumed_r == len), after which the request is done.
 * The "+OK" line is sent with the first chunk. */
int pop3_session_message_data(struct pop3_session *s, const void *data, size_t len,
			      bool final, size_t *consumed_r, const char **error_r);
/* True when the current TOP has all the lines it needs, so the daemon may
 * stop reading and call pop3_session_message_data(s, NULL, 0, true, ...). */
bool pop3_session_message_complete(const struct pop3_session *s);
/* Fails MESSAGE_GET. Before any data was given the client gets -ERR and the
 * session goes on; after that the response cannot be completed and the
 * session ends (RELEASE, CLOSE) with nothing expunged. */
int pop3_session_message_fail(struct pop3_session *s, enum pop3_message_failure failure,
			      const char **error_r);

/* Answers UPDATE: ok means the deleted messages were expunged; otherwise
 * the client gets "-ERR [SYS/TEMP] ..." (RFC 1939 section 6). Either way
 * RELEASE and CLOSE follow. */
int pop3_session_update_result(struct pop3_session *s, bool ok, const char **error_r);

enum pop3_state pop3_session_state(const struct pop3_session *s);
/* True while the session holds a maildrop lock it has not yet returned a
 * RELEASE for. */
bool pop3_session_holds_maildrop(const struct pop3_session *s);

#endif
