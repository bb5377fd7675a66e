/* SMTP / LMTP session engine (sans-IO; private to frontend/).
 *
 * One struct smtp_session per connection speaks the server side of the whole
 * dialogue (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
 * ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS and AUTH; LMTP, RFC 2033)
 * for the MX, submission and LMTP listeners. It does no I/O and no storage:
 *
 *   daemon: recv -> smtp_session_feed(bytes)
 *           loop smtp_session_next(&action) while it returns 1:
 *             SEND          write action.send.data (copy it now)
 *             START_TLS     start the TLS handshake, then
 *                           smtp_session_tls_started()
 *             CLOSE         close the connection after the writes queued
 *             AUTH_VERIFY   check the credentials  -> smtp_session_auth_result()
 *             SENDER_CHECK  may this account use this sender?
 *                                                  -> smtp_session_sender_result()
 *             RCPT_CHECK    resolve a recipient    -> smtp_session_rcpt_result()
 *             DELIVER       store the message      -> smtp_session_deliver_result()
 *           0: nothing more until more input or a result; -1: fatal, close.
 *
 * Requests. At most one request is outstanding. While it is, no later
 * command runs (replies keep their order), next() returns 0 (or SEND for
 * replies already due), and feed() keeps buffering input. The result call
 * may come at any later time; a result call that does not answer the
 * outstanding request (none, or another kind, or a wrong recipient count)
 * returns -1 and changes nothing.
 *
 * Pipelining (RFC 2920). next() runs every complete command in the input
 * and collects the replies in one SEND, returned when no complete command
 * is left, when 16 KiB of replies are waiting, and before any other action
 * (START_TLS, CLOSE and every request), so the replies queued before a
 * request go out while it is outstanding. A client that does not pipeline
 * simply never has more than one command buffered.
 *
 * Lifetimes. The SEND bytes are valid until the next call on the session
 * other than smtp_session_feed() and smtp_session_input_room(); copy them
 * at once. The strings and structs of a request are valid until its result
 * call (or smtp_session_free): the DELIVER message can be stored
 * asynchronously without copying. Feeding input never invalidates them.
 *
 * Input bound. feed() takes at most smtp_session_input_room() bytes and
 * returns how many it took; the daemon keeps the rest and feeds it after
 * next() has made room (the buffer is at least input_buffer bytes, default
 * 64 KiB). next() always makes room unless a request is outstanding, so a
 * daemon that stops reading while the room is 0 never deadlocks.
 *
 * STARTTLS (RFC 3207) and the command-injection defence. The reply
 * "220 2.0.0 Ready to start TLS" is sent (SEND), then START_TLS is returned;
 * at that moment every input byte after the STARTTLS line has been thrown
 * away (action.start_tls.discarded counts them, for logging), and bytes fed
 * before smtp_session_tls_started() are thrown away too. The daemon must
 * likewise drop any plaintext it received but had not fed, and feed only
 * decrypted bytes afterwards. The session forgets the EHLO, the
 * authentication and the transaction; the client must EHLO again.
 *
 * Replies. Every reply but the greeting, the EHLO/HELO/LHLO reply, 334 and
 * 354 carries an enhanced status code (RFC 2034 section 3 exempts those).
 *   220 greeting; 220 2.0.0 Ready to start TLS      221 2.0.0 Bye
 *   214 2.0.0 help      235 2.7.0 authenticated      252 2.5.0 VRFY
 *   250 2.0.0 ok (NOOP, RSET, message accepted)  250 2.1.0 sender ok
 *   250 2.1.5 recipient ok      334 SASL challenge      354 start data
 *   421 4.7.0 too many errors / commands, forbidden command (HTTP), closes
 *   421 4.3.2 shutting down; 421 4.4.2 timeout (smtp_session_shutdown)
 *   451 4.3.0 temporary failure (sender/recipient check, delivery)
 *   452 4.5.3 too many recipients      452 4.2.2 mailbox full
 *   454 4.7.0 temporary authentication failure
 *   500 5.5.2 unknown command, bad line end, bad bytes in a command line
 *   500 5.5.6 line too long (over max_line with CR LF, RFC 5321 4.5.3.1.4)
 *   501 5.5.4 bad arguments      501 5.1.7 / 5.1.3 bad sender / recipient
 *   501 5.5.2 bad base64 (RFC 4954)      501 5.7.0 AUTH cancelled with "*"
 *   502 5.5.1 not offered here (EXPN, AUTH outside submission, STARTTLS
 *             without TLS available)
 *   503 5.5.1 bad sequence      504 5.5.4 unknown AUTH mechanism
 *   530 5.7.0 authentication required (submission)
 *   535 5.7.8 bad credentials      538 5.7.11 AUTH needs TLS
 *   550 5.1.1 unknown user      550 5.2.1 mailbox disabled
 *   550 5.6.0 message with a bare CR or LF, or a line over max_data_line
 *   552 5.3.4 too big (SIZE= at MAIL, or the data itself)
 *   553 5.7.1 sender not owned by the account (submission), null sender on
 *             submission      553 5.6.7 UTF-8 address without SMTPUTF8
 *   554 5.7.1 relaying denied      554 5.5.1 no valid recipients at DATA
 *   555 5.5.4 unknown or repeated MAIL / RCPT parameter
 *   552 5.2.2 / 553 5.7.1 (From: header) / 554 5.0.0 from DELIVER results
 * Errors that count toward max_errors: unknown or malformed commands, bad
 * sequence, too long lines, failed AUTH, a sender the account does not own,
 * unknown / disabled / relay-denied recipients. Not counted: too many
 * recipients, a too big SIZE=, temporary failures, quota, refused messages,
 * delivery results.
 *
 * DATA. The content rules and the smuggling defence are those of
 * smtp-data.h: only CR LF "." CR LF ends DATA, dot-stuffing is removed, and
 * a message holding a bare CR or bare LF anywhere (DATA or BDAT) is read to
 * its end and then refused with 550 5.6.0, never stored. Lines may exceed
 * RFC 5322's 998 octets up to max_data_line (default 65536, without CR LF);
 * longer ones get the message refused with 550 5.6.0. The message is
 * bounded by max_message_size (counted after unstuffing, without our
 * Received: header): past it the rest is read and dropped and the reply is
 * 552 5.3.4; the engine never holds more than the header plus
 * max_message_size bytes of message. BDAT chunks are read exactly as
 * counted, with the same checks; a BDAT that fails (bad sequence, too big)
 * still has its bytes read and dropped, and so does every later chunk of
 * that transaction, until BDAT LAST or RSET.
 *
 * Received: (RFC 5321 4.4, protocol names of RFC 3848 / RFC 6531) is
 * prepended by the engine:
 *   Received: from <helo> (<client address>)
 *   	by <hostname> (Postern) with ESMTPSA id <session id>.<n>
 *   	(using <TLS version> with cipher <cipher>)
 *   	(authenticated as <canonical address>)
 *   	for <recipient>; <RFC 5322 date, UTC>
 * "id" only when a session id is configured, "using" only under TLS,
 * "authenticated" only after AUTH, "for" only with exactly one recipient.
 * The daemon adds Return-Path: and Delivered-To: at final delivery.
 *
 * LMTP: LHLO instead of EHLO/HELO (which get 500 5.5.1); after the end of
 * the data (DATA, or BDAT LAST) one reply per accepted recipient, in RCPT
 * order, including when the message is refused as a whole. In SMTP the
 * single reply after DATA is 250 only when every recipient was delivered;
 * otherwise the first temporary failure, or else the first permanent one
 * (no acknowledged recipient can ever be lost this way; the daemon should
 * deliver SMTP messages in one transaction so this never matters).
 *
 * AUTH (RFC 4954, submission only): PLAIN (RFC 4616) and LOGIN, with an
 * initial response or not ("=" is an empty one), offered and accepted only
 * under TLS unless the listener is trusted. Command and SASL lines of AUTH
 * may be up to 12288 octets (RFC 4954 section 4). The exchange is
 * frontend/sasl/sasl.h's, with its default limits and checks: identities
 * and passwords of at most 255 octets, without NUL, identities without
 * control characters, PLAIN fields in UTF-8. The password is wiped from
 * memory once the result is in.
 */
#ifndef SMTP_SESSION_H
#define SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum smtp_mode {
	SMTP_MODE_MX,		/* port 25: anyone may send to our domains */
	SMTP_MODE_SUBMISSION,	/* 587 / 465: AUTH required (RFC 6409) */
	SMTP_MODE_LMTP,		/* RFC 2033, for an MTA in front of us */
};

#define SMTP_DEFAULT_MAX_LINE 1000		/* RFC 5321 4.5.3.1.4, with CR LF */
#define SMTP_DEFAULT_MAX_MESSAGE_SIZE (50u * 1024 * 1024)
#define SMTP_DEFAULT_MAX_RECIPIENTS 100		/* RFC 5321 4.5.3.1.8 */
#define SMTP_DEFAULT_MAX_ERRORS 10
/* Commands per session: a bound on a runaway session, not on a busy
 * one. An MTA keeps its connection to us for minutes and sends three
 * commands per message: at 10000 one client delivering 600 messages/s was
 * cut off with 421 after about 5 seconds (seen in bench/README.md finding
 * 9). The same as POP3's. */
#define SMTP_DEFAULT_MAX_COMMANDS 250000
#define SMTP_DEFAULT_MAX_DATA_LINE 65536	/* RFC 5322 says 998 */
#define SMTP_DEFAULT_INPUT_BUFFER (64 * 1024)
/* RFC 4954 section 4: AUTH lines may be this long. */
#define SMTP_AUTH_LINE_MAX 12288

/* TLS details for Received:; strings are copied. NULL means unknown. */
struct smtp_tls_info {
	const char *version;	/* "TLSv1.3" */
	const char *cipher;	/* "TLS_AES_256_GCM_SHA384" */
};

struct smtp_settings {
	enum smtp_mode mode;
	/* Our name for the greeting, EHLO and Received: (required; printable
	 * ASCII without spaces, at most 255 octets). */
	const char *hostname;
	/* The client's address as a string ("192.0.2.1", "2001:db8::1"), from
	 * the socket or PROXY header; NULL or "" shows as "unknown". */
	const char *client_addr;
	/* Optional id for logs and Received: ("id <session_id>.<n>"); letters,
	 * digits, "-", "_" and "." only, at most 64 octets. */
	const char *session_id;
	/* Implicit TLS listener (465): TLS is active from the start. */
	bool tls_active;
	struct smtp_tls_info tls_info;	/* when tls_active */
	/* STARTTLS may be offered (a certificate is configured). */
	bool starttls_available;
	/* AUTH is allowed without TLS (e.g. a loopback or internal listener). */
	bool trusted;
	/* Limits; 0 means the default above. */
	size_t max_line;		/* command line with CR LF (>= 512) */
	uint64_t max_message_size;	/* SIZE and the data limit */
	unsigned int max_recipients;
	unsigned int max_errors;
	unsigned int max_commands;	/* commands per session */
	size_t max_data_line;		/* data line without CR LF (>= 998) */
	size_t input_buffer;		/* >= SMTP_AUTH_LINE_MAX + 2 */
	/* Clock for Received:; NULL means time(). */
	time_t (*clock)(void);
};

enum smtp_action_type {
	SMTP_ACTION_SEND = 1,
	SMTP_ACTION_START_TLS,
	SMTP_ACTION_CLOSE,
	SMTP_ACTION_AUTH_VERIFY,
	SMTP_ACTION_SENDER_CHECK,
	SMTP_ACTION_RCPT_CHECK,
	SMTP_ACTION_DELIVER,
};

/* DSN (RFC 3461) NOTIFY= bits; 0 means the parameter was not given. */
enum smtp_notify {
	SMTP_NOTIFY_NEVER = 0x1,
	SMTP_NOTIFY_SUCCESS = 0x2,
	SMTP_NOTIFY_FAILURE = 0x4,
	SMTP_NOTIFY_DELAY = 0x8,
};

enum smtp_dsn_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };
enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

struct smtp_rcpt {
	/* The mailbox without "<>": local part (unquoted when it can be) "@"
	 * domain as sent, or "Postmaster" for RCPT TO:<Postmaster>. */
	const char *address;
	unsigned int notify;		/* enum smtp_notify bits */
	const char *orcpt;		/* ORCPT= as sent (addr-type;xtext), or NULL */
	uint64_t id;			/* from smtp_session_rcpt_result() */
};

struct smtp_envelope {
	const char *helo;		/* EHLO/HELO/LHLO argument */
	const char *mail_from;		/* "" for the null sender <> */
	enum smtp_body body;
	bool smtputf8;
	uint64_t size;			/* SIZE=, 0 when not given */
	const char *auth;		/* AUTH= as sent (xtext), or NULL */
	enum smtp_dsn_ret ret;
	const char *envid;		/* ENVID= as sent (xtext), or NULL */
	bool tls;			/* TLS active */
	bool authenticated;
	uint64_t account_id;		/* when authenticated */
	const char *account_address;	/* when authenticated, else NULL */
	const struct smtp_rcpt *rcpts;	/* accepted recipients, RCPT order */
	size_t rcpt_count;
};

struct smtp_action {
	enum smtp_action_type type;
	union {
		struct {
			const uint8_t *data;
			size_t len;
		} send;
		struct {
			size_t discarded;	/* injected plaintext thrown away */
		} start_tls;
		struct {
			const char *mechanism;	/* "PLAIN" or "LOGIN" */
			const char *authzid;	/* "" when none */
			const char *authcid;
			const char *password;
		} auth;
		struct {
			const struct smtp_envelope *env;
			const char *address;	/* == env->mail_from */
		} sender;
		struct {
			/* env holds the recipients accepted so far. */
			const struct smtp_envelope *env;
			const struct smtp_rcpt *rcpt;
		} rcpt;
		struct {
			const struct smtp_envelope *env;
			/* Received: header followed by the message. */
			const uint8_t *message;
			size_t message_len;
			size_t received_len;	/* length of our Received: */
		} deliver;
	} u;
};

enum smtp_auth_status {
	SMTP_AUTH_OK,		/* 235 2.7.0 */
	SMTP_AUTH_BAD,		/* 535 5.7.8 (counts as an error) */
	SMTP_AUTH_TEMPFAIL,	/* 454 4.7.0 */
};

enum smtp_sender_status {
	SMTP_SENDER_OK,		/* 250 2.1.0 */
	SMTP_SENDER_DENIED,	/* 553 5.7.1 */
	SMTP_SENDER_TEMPFAIL,	/* 451 4.3.0 */
};

enum smtp_rcpt_status {
	SMTP_RCPT_OK,		/* 250 2.1.5 */
	SMTP_RCPT_UNKNOWN,	/* 550 5.1.1 */
	SMTP_RCPT_RELAY_DENIED,	/* 554 5.7.1 */
	SMTP_RCPT_DISABLED,	/* 550 5.2.1 */
	SMTP_RCPT_OVER_QUOTA,	/* 452 4.2.2 */
	SMTP_RCPT_TEMPFAIL,	/* 451 4.3.0 */
};

enum smtp_deliver_status {
	SMTP_DELIVER_OK,		/* 250 2.0.0 */
	SMTP_DELIVER_TEMPFAIL,		/* 451 4.3.0 */
	SMTP_DELIVER_OVER_QUOTA,	/* 452 4.2.2 */
	SMTP_DELIVER_QUOTA_EXCEEDED,	/* 552 5.2.2 (message bigger than quota) */
	SMTP_DELIVER_SENDER_DENIED,	/* 553 5.7.1 (From: not the account's) */
	SMTP_DELIVER_PERMFAIL,		/* 554 5.0.0 */
};

enum smtp_shutdown_reason {
	/* SIGTERM drain: 421 4.3.2 at the next command boundary; a DATA or
	 * BDAT transfer in progress is read to its end and answered first. */
	SMTP_SHUTDOWN_DRAIN,
	/* Idle timeout: 421 4.4.2 at once, even in the middle of DATA. */
	SMTP_SHUTDOWN_TIMEOUT,
};

struct smtp_session;

/* Creates a session and queues the greeting (the first next() returns it).
 * Settings are copied. Returns NULL with *error_r (static) on a bad setting
 * or out of memory. */
struct smtp_session *smtp_session_new(const struct smtp_settings *set,
				      const char **error_r);
/* Frees the session (wiping secrets) and sets *s to NULL; NULL is fine. */
void smtp_session_free(struct smtp_session **s);

/* Buffers up to smtp_session_input_room() bytes of client input and returns
 * how many were taken. After CLOSE, and between START_TLS and
 * smtp_session_tls_started(), input is taken and thrown away. Inside DATA
 * with nothing buffered, the message content is decoded (dot-unstuffed)
 * from data straight into the message buffer, so all of data up to the end
 * of the data may be taken, more than the input room; what follows the
 * end is buffered as above. */
size_t smtp_session_feed(struct smtp_session *s, const void *data, size_t len);
size_t smtp_session_input_room(const struct smtp_session *s);

/* Returns 1 with *action_r filled, 0 when nothing more can happen until
 * more input or a result, -1 after a fatal error (out of memory): close. */
int smtp_session_next(struct smtp_session *s, struct smtp_action *action_r);

/* Answers AUTH_VERIFY. On OK, account_id and address (the canonical
 * address, copied; required) identify the account for Received: and
 * SENDER_CHECK. Returns 0, or -1 if no AUTH_VERIFY is outstanding or an OK
 * comes without an address. */
int smtp_session_auth_result(struct smtp_session *s, enum smtp_auth_status status,
			     uint64_t account_id, const char *address);
/* Answers SENDER_CHECK. Returns 0, or -1 if none is outstanding. */
int smtp_session_sender_result(struct smtp_session *s, enum smtp_sender_status status);
/* Answers RCPT_CHECK; rcpt_id is kept with an accepted recipient and given
 * back in DELIVER. Returns 0, or -1 if none is outstanding. */
int smtp_session_rcpt_result(struct smtp_session *s, enum smtp_rcpt_status status,
			     uint64_t rcpt_id);
/* Answers DELIVER with one status per recipient of the envelope, in its
 * order (count must equal env->rcpt_count). queue_id, if not NULL, is shown
 * in the 250 reply ("queued as ..."; letters, digits and "-_." are kept,
 * other characters dropped). Returns 0, or -1 if no DELIVER is outstanding
 * or count is wrong. */
int smtp_session_deliver_result(struct smtp_session *s,
				const enum smtp_deliver_status *status, size_t count,
				const char *queue_id);
/* Answers START_TLS once the handshake is done; info is copied (NULL
 * means unknown). Returns 0, or -1 if no START_TLS is outstanding. */
int smtp_session_tls_started(struct smtp_session *s, const struct smtp_tls_info *info);

/* Asks the session to say goodbye (see enum smtp_shutdown_reason); the 421
 * and CLOSE come out of next(). If a request or the TLS handshake is
 * outstanding, they follow its result (a daemon that gives up on a
 * handshake simply closes). */
void smtp_session_shutdown(struct smtp_session *s, enum smtp_shutdown_reason reason);

#endif
