/* Local delivery of inbound and submitted mail, asynchronous on the
 * PostgreSQL pool (postern/store-pgpool.h), for the SMTP / LMTP frontends.
 *
 * Three operations, each answering through its callback exactly once, later,
 * from the loop (never from inside the submitting call):
 *
 *   mail_rcpt_check()    RCPT TO: resolve a recipient (aliases, catch-all,
 *                        plus-addressing), relay check, disabled account,
 *                        quota with the SIZE hint.
 *   mail_sender_check()  MAIL FROM on submission: the address must be the
 *                        authenticated account's own or one of its aliases.
 *   mail_deliver()       end of DATA: store the message once and link it
 *                        into every local recipient's mailbox in one
 *                        transaction, queue non-local recipients of a
 *                        submission in the outbound queue in the same
 *                        transaction, report one status per recipient
 *                        after COMMIT, then publish a change notification
 *                        per mailbox on Redis (when a client is given).
 *                        The transaction is one statement, deliver_mail()
 *                        (storage/sql/005): one round trip, one commit.
 *
 * Decisions (docs/storage.md, "Delivery"):
 * - The body is the message with CRLF line ends (mail_crlf_normalize),
 *   preceded by "Return-Path: <sender>" and, when the transaction has
 *   exactly one local target mailbox, "Delivered-To: <recipient as given>".
 *   With several targets Delivered-To is left out (as Dovecot LMTP does): a
 *   per-recipient header would make the bodies differ (no deduplication)
 *   and a shared one would disclose the other (Bcc) recipients.
 * - user+tag@domain files into the account's mailbox named tag (exact name
 *   first, else a case-insensitive match) when the account was reached
 *   through the stripped address and such a mailbox exists, else INBOX.
 * - An alias with several destinations: the recipient is accepted when at
 *   least one destination takes the message; destinations over quota or
 *   disabled are skipped (logged). Remote alias destinations (forwarding)
 *   are queued in the outbound queue with the original envelope sender.
 * - Disabled accounts refuse mail (550 5.2.1), as the SMTP issue asks.
 * - RCPT TO:<Postmaster> without a domain (RFC 5321 4.5.1) is the address
 *   in the settings' postmaster, else postmaster@ the primary domain.
 * - Duplicate guard: when the message has a Message-ID and a target mailbox
 *   already holds a message with the same Message-ID saved within
 *   dedup_window_secs (an index probe, storage/sql/003), that target
 *   is acknowledged as delivered but not stored again. The check runs
 *   inside the delivery transaction after the target mailboxes are locked,
 *   so two concurrent retries cannot both store.
 *
 * Memory: every submitting call copies what it needs; the caller's buffers
 * are free as soon as it returns, except the message of a request with
 * message_kept (see there). Data given to a callback is valid during the
 * callback only.
 *
 * Threads: everything runs on the loop thread of the pool, except the parse
 * of a message for mail_deliver() (line ends, MIME structure, the ENVELOPE /
 * BODYSTRUCTURE cache) when the settings give a worker pool: it then runs
 * on a worker and the delivery goes on from the loop (the callback is
 * still called on the loop thread). A full worker queue parses on the loop
 * as without a pool.
 *
 * Errors: a submitting call returns a handle, or NULL with *error_r (bad
 * arguments, out of memory, the pool refused the request): no callback then.
 * mail_delivery_cancel() detaches the callback of an operation (e.g. the
 * client went away); a delivery already under way still completes (it is
 * then caught by the duplicate guard if the client retries).
 */
#ifndef POSTERN_MAIL_DELIVERY_H
#define POSTERN_MAIL_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_pgpool;
struct store_redis;
struct mail_delivery;
struct mail_op;

#define MAIL_DELIVERY_ADDRESS_MAX 320	/* longest envelope address taken */
#define MAIL_DELIVERY_MAX_RCPTS 1000	/* recipients per mail_deliver() */

struct pn_workpool;
struct pn_loop;

struct mail_delivery_settings {
	struct store_pgpool *pool;	/* required; outlives the delivery */
	struct store_redis *redis;	/* optional: change notifications */
	/* optional, both or neither: mail_deliver() parses the message on
	 * workers, whose completions are posted to loop (the pool's loop);
	 * both outlive the delivery */
	struct pn_workpool *workers;
	struct pn_loop *loop;
	/* A parse goes to the workers only while fewer than this many jobs
	 * wait or run there (0: no bound), so that a pool shared with other
	 * work (password checks) keeps room for it; else it runs on the loop. */
	unsigned int workers_max_pending;
	unsigned int dedup_window_secs;	/* 0: 600 (10 minutes) */
	/* Where RCPT TO:<Postmaster> (RFC 5321 4.5.1: no domain, any case)
	 * goes: an address user@domain in one of our domains (an alias there
	 * may forward it anywhere), copied. NULL or "": postmaster@ the
	 * cluster's primary domain (the first created); without an account,
	 * alias or catch-all for it the recipient is UNKNOWN. */
	const char *postmaster;
};

/* Creates the delivery context and declares its prepared statements on the
 * pool (one mail_delivery per pool). Returns NULL with *error_r. */
struct mail_delivery *mail_delivery_new(const struct mail_delivery_settings *set,
					const char **error_r);
/* Frees the context and sets *d NULL. Only when mail_delivery_busy() is 0
 * (let operations finish first: cancelled ones finish by themselves). */
void mail_delivery_free(struct mail_delivery **d);
/* Operations under way (cancelled ones included). */
unsigned int mail_delivery_busy(const struct mail_delivery *d);
/* Detaches the operation's callback and sets *op NULL. The operation ends
 * by itself; a delivery still commits. NULL or *op NULL is fine. Not for
 * an operation whose callback already ran (the handle is dead then), nor
 * for a delivery with message_kept (it still reads the message). */
void mail_delivery_cancel(struct mail_op **op);

/* ---- RCPT ---- */

enum mail_rcpt_status {
	MAIL_RCPT_OK,		/* 250 2.1.5 */
	MAIL_RCPT_UNKNOWN,	/* 550 5.1.1 no such user in one of our domains */
	MAIL_RCPT_DISABLED,	/* 550 5.2.1 every local target is disabled */
	MAIL_RCPT_OVER_QUOTA,	/* 452 4.2.2 every local target is full */
	MAIL_RCPT_RELAY_DENIED,	/* 554 5.7.1 a domain not ours, relay not allowed */
	MAIL_RCPT_TEMPFAIL,	/* 451 4.3.0 database unavailable */
};

struct mail_rcpt_info {
	enum mail_rcpt_status status;
	/* On OK: the first local target (0 when only remote ones) and the
	 * number of local and remote targets. */
	uint64_t account_id, mailbox_id;
	unsigned int local_targets, remote_targets;
	const char *error;	/* "" or one line for the log (TEMPFAIL) */
};
typedef void mail_rcpt_cb(void *ctx, const struct mail_rcpt_info *info);

/* Checks one recipient (the address as in RCPT TO, without <>). size_hint
 * is the SIZE= of MAIL FROM (0 when not given). allow_relay: a domain that
 * is not ours is accepted (authenticated submission: it will be queued);
 * else it is RELAY_DENIED. */
struct mail_op *mail_rcpt_check(struct mail_delivery *d, const char *address,
				uint64_t size_hint, bool allow_relay,
				mail_rcpt_cb *cb, void *ctx, const char **error_r);

/* ---- MAIL FROM on submission ---- */

enum mail_sender_status {
	MAIL_SENDER_OK,		/* 250 2.1.0 */
	MAIL_SENDER_DENIED,	/* 553 5.7.1 */
	MAIL_SENDER_TEMPFAIL,	/* 451 4.3.0 */
};
typedef void mail_sender_cb(void *ctx, enum mail_sender_status status, const char *error);

/* Is address (user@domain, or user+tag@domain) the address of account_id
 * or the source of an alias whose destination is that account's address?
 * The null sender "" is DENIED. */
struct mail_op *mail_sender_check(struct mail_delivery *d, uint64_t account_id,
				  const char *address, mail_sender_cb *cb, void *ctx,
				  const char **error_r);

/* ---- DATA ---- */

enum mail_deliver_status {
	MAIL_DELIVER_OK,		/* 250 2.0.0 stored (or a duplicate, or queued) */
	MAIL_DELIVER_TEMPFAIL,		/* 451 4.3.0 */
	MAIL_DELIVER_OVER_QUOTA,	/* 452 4.2.2 mailbox full */
	MAIL_DELIVER_QUOTA_EXCEEDED,	/* 552 5.2.2 bigger than the whole quota */
	MAIL_DELIVER_SENDER_DENIED,	/* 553 5.7.1 From: not the account's */
	MAIL_DELIVER_UNKNOWN,		/* 550 5.1.1 recipient gone since RCPT */
	MAIL_DELIVER_DISABLED,		/* 550 5.2.1 */
	MAIL_DELIVER_RELAY_DENIED,	/* 554 5.7.1 */
	MAIL_DELIVER_PERMFAIL,		/* 554 5.0.0 */
};

struct mail_deliver_request {
	const char *mail_from;		/* reverse-path; "" is the null sender */
	const char *const *rcpts;	/* envelope recipients as given, in order */
	size_t rcpt_count;		/* 1..MAIL_DELIVERY_MAX_RCPTS */
	const uint8_t *message;		/* the data (with the Received: header) */
	size_t message_len;
	/* The caller keeps message valid and unchanged until the callback
	 * runs, and does not cancel the operation: then it is not copied
	 * (when it has CRLF line ends only, as the SMTP engine's always has)
	 * and may be read by a worker thread meanwhile. false: copied. */
	bool message_kept;
	/* Authenticated submission: the account. Non-local recipients are
	 * queued and every From: address must be the account's (else every
	 * recipient gets SENDER_DENIED). 0 for MX and LMTP: non-local
	 * recipients are RELAY_DENIED. */
	uint64_t account_id;
	const char *envid;		/* RFC 3461 ENVID or NULL */
	const char *ret;		/* "FULL", "HDRS" or NULL */
};

struct mail_deliver_rcpt {
	enum mail_deliver_status status;
	unsigned int stored;		/* mailboxes that got a new message */
	unsigned int duplicates;	/* targets skipped by the duplicate guard */
	bool queued;			/* a remote target went to the queue */
};

struct mail_deliver_result {
	const struct mail_deliver_rcpt *rcpts;	/* rcpt_count entries, in order */
	size_t count;
	const char *id;		/* 16 hex digits of the body's SHA-256 ("" if none) */
	uint64_t queue_id;	/* outbound queue entry, 0 if none */
	const char *error;	/* "" or one line for the log */
};
typedef void mail_deliver_cb(void *ctx, const struct mail_deliver_result *res);

/* Delivers the message to the recipients (see the decisions above). Every
 * recipient's status is final once the callback runs: OK means committed. */
struct mail_op *mail_deliver(struct mail_delivery *d, const struct mail_deliver_request *req,
			     mail_deliver_cb *cb, void *ctx, const char **error_r);

/* The Redis change message published on a mailbox's channel
 * ({a:<account>}:mbox:<mailbox>) after a delivery stored uid with modseq,
 * in the format of docs/redis-keys.md: "v=1 modseq=<modseq> uidnext=<uid+1>".
 * Writes it into buf; returns its length or -1 if it does not fit. */
int mail_delivery_notify_format(char *buf, size_t size, uint64_t uid, uint64_t modseq);

#endif
