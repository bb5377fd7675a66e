/* The POP3 maildrop (the account's INBOX) in PostgreSQL, and the
 * cluster-wide maildrop lock in Redis.
 *
 * Storage operations (maildrop.c) run on the asynchronous pool; each calls
 * its callback exactly once, later, on the pool's loop (the pool's
 * contract), or returns -1 (errno from store_pgpool_*) and calls nothing.
 * Data handed to a callback is valid during the call only.
 *
 * UIDL strings are "<uidvalidity>.<uid>" in decimal: stable across sessions
 * and nodes, the same for a message seen from IMAP, and new when the INBOX
 * is recreated (RFC 1939 section 7 asks that a unique-id never be reused).
 *
 * The lock (maildrop-lock.c), one per account and protocol name:
 * - always a per-process entry (so two sessions on one node never share a
 *   maildrop, and a lock is cheap to refuse locally), and
 * - a Redis lease "{a:<id>}:lock:<name>" (SET NX PX with a random token),
 *   renewed every lease/3 while held, released by its holder only; a node
 *   that dies leaves a lock that expires after the lease.
 * When Redis cannot be reached the lock is granted on the per-process entry
 * alone ("degraded"; DESIGN section 4: logins and mail keep working without
 * Redis) and the lock keeps trying to take the Redis lease at every renewal
 * tick. What this degrades: two POP3 sessions of one account on different
 * nodes may run at once while Redis is down. That is safe for the data:
 * expunges are idempotent (expunge_messages removes only UIDs that still
 * exist), a RETR of a message the other session removed gets "-ERR no
 * longer exists", and nothing is removed by a session that does not QUIT.
 * A PostgreSQL advisory lock would hold a pooled connection per POP3
 * session, which the pool cannot give; a lock table would need a schema
 * change for a state that is allowed to be lost.
 */
#ifndef POSTERN_MAIL_MAILDROP_H
#define POSTERN_MAIL_MAILDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/hash.h"
#include "postern/store-pgpool.h"
#include "postern/store-redis.h"
#include "postern/store-status.h"

struct pn_loop;
struct store_blob_cache;
struct store_blob_cached;

/* Most messages a listing returns (the oldest ones first); the rest stay
 * invisible to POP3 until some are removed. */
#define MAIL_MAILDROP_MAX_MESSAGES 1000000
/* Longest UIDL string: "4294967295.4294967295". */
#define MAIL_UIDL_MAX 22

struct mail_maildrop_msg {
	uint32_t uid;
	uint64_t size;		/* octets as stored (CRLF line ends) */
	uint8_t sha256[PN_SHA256_LEN];	/* the body's key (store-blob.h) */
};

struct mail_maildrop_listing {
	enum store_status status;	/* OK, or why not */
	const char *error;		/* "" on OK */
	bool no_inbox;			/* OK query, but the account has no INBOX */
	uint64_t mailbox_id;
	uint32_t uidvalidity;
	const struct mail_maildrop_msg *msgs;	/* ascending UID */
	size_t count;
};

typedef void mail_maildrop_list_cb(void *ctx, const struct mail_maildrop_listing *listing);
/* Lists the INBOX of account_id. */
int mail_maildrop_list(struct store_pgpool *pg, uint64_t account_id,
		       mail_maildrop_list_cb *cb, void *ctx);

/* Writes the UIDL string into buf (size >= MAIL_UIDL_MAX + 1). */
void mail_uidl_format(char *buf, size_t size, uint32_t uidvalidity, uint32_t uid);

/* Part of a message: data[0..len) from offset; eof when the message ends
 * there; gone when the message no longer exists. */
typedef void mail_maildrop_read_cb(void *ctx, enum store_status status, const uint8_t *data,
				   size_t len, bool eof, bool gone, const char *error);
/* Reads at most max bytes of the message body from offset. */
int mail_maildrop_read(struct store_pgpool *pg, uint64_t account_id, uint64_t mailbox_id,
		       uint32_t uid, uint64_t offset, size_t max,
		       mail_maildrop_read_cb *cb, void *ctx);

/* ---- message bodies through the body cache (store-blob-cache.h) ----
 *
 * RETR/TOP of a listed message: mail_maildrop_cached() first (no I/O);
 * on a miss, mail_maildrop_read_body() reads the whole body in one
 * statement and puts it into the cache, so the next RETR/TOP of it (in
 * this session, or any session of the process that reaches the same
 * SHA-256 through its own rows) is served from memory. Bodies larger than
 * the caller wants to hold at once are read with mail_maildrop_read() in
 * slices and not cached.
 *
 * A hit does not ask PostgreSQL whether the message still exists: a
 * message that an IMAP session expunged after the listing is still served
 * as listed when its body is in memory (the bytes are the ones the
 * listing named); a miss reports it gone, as mail_maildrop_read() does. */

/* The cached body of a listed message with a hold on it, or NULL (cache
 * NULL or a miss; counted in the cache's statistics). Release the hold
 * with store_blob_cache_release(). */
struct store_blob_cached *mail_maildrop_cached(struct store_blob_cache *cache,
					       const struct mail_maildrop_msg *msg);

struct mail_maildrop_body {
	enum store_status status;	/* OK, or why not */
	const char *error;		/* "" on OK */
	bool gone;			/* OK, but the message no longer exists */
	const uint8_t *data;		/* the whole body: valid during the call, */
	size_t len;			/* or while the callee holds `cached` */
	/* the cache entry data points into, or NULL (no cache, or the body
	 * was not kept: too large for it, out of memory). The callback may
	 * take the hold (set it NULL and release it later); otherwise it is
	 * released after the call. */
	struct store_blob_cached *cached;
};
typedef void mail_maildrop_body_cb(void *ctx, struct mail_maildrop_body *body);
/* Reads the whole body of uid in one statement (binary, no hex) and puts
 * it into cache (may be NULL) under the SHA-256 of its row. A body longer
 * than max bytes is refused (STORE_PERMANENT, "message too large"): the
 * caller decides with the listed size and reads such bodies in slices. */
int mail_maildrop_read_body(struct store_pgpool *pg, struct store_blob_cache *cache,
			    uint64_t account_id, uint64_t mailbox_id, uint32_t uid, size_t max,
			    mail_maildrop_body_cb *cb, void *ctx);

typedef void mail_maildrop_done_cb(void *ctx, enum store_status status, const char *error);
/* Sets \Seen on one message (store_flags: a new MODSEQ when it changes). */
int mail_maildrop_set_seen(struct store_pgpool *pg, uint64_t account_id, uint64_t mailbox_id,
			   uint32_t uid, mail_maildrop_done_cb *cb, void *ctx);

typedef void mail_maildrop_expunge_cb(void *ctx, enum store_status status, uint64_t modseq,
				      size_t expunged, const char *error);
/* Removes uids[0..count) from the mailbox in one transaction
 * (expunge_messages). UIDs that are already gone are skipped. */
int mail_maildrop_expunge(struct store_pgpool *pg, uint64_t account_id, uint64_t mailbox_id,
			  const uint32_t *uids, size_t count,
			  mail_maildrop_expunge_cb *cb, void *ctx);

/* ---- the lock ---- */

enum mail_lock_status {
	MAIL_LOCK_OK,		/* held (see degraded) */
	MAIL_LOCK_IN_USE,	/* another session holds it */
	MAIL_LOCK_TEMPFAIL,	/* could not be decided (no memory) */
};

struct mail_lock;
/* degraded: granted on this process only, Redis was unreachable. */
typedef void mail_lock_cb(void *ctx, enum mail_lock_status status, bool degraded);

/* Takes the lock of (account_id, name) for a session on loop; redis may be
 * NULL (process-wide lock only). name: "pop3". The callback runs once,
 * later, on loop; afterwards the lock renews itself until released.
 * Returns the lock (release it in every case, also after IN_USE), or NULL
 * with errno ENOMEM and no callback. */
struct mail_lock *mail_lock_acquire(struct pn_loop *loop, struct store_redis *redis,
				    uint64_t account_id, const char *name,
				    unsigned int lease_ms, mail_lock_cb *cb, void *ctx);
/* Releases the lock (if held) and sets *lock NULL; no callback after this.
 * The Redis release is sent in the background. */
void mail_lock_release(struct mail_lock **lock);
/* True while the lock is held on this process only (Redis down). */
bool mail_lock_degraded(const struct mail_lock *lock);

#endif
