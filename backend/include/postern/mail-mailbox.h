/* Mailbox operations for the IMAP and POP3 sessions: asynchronous calls on
 * the loop over the PostgreSQL pool (postern/store-pgpool.h), the blob store
 * and, when there is one, Redis for change notifications.
 *
 * I/O: every operation is one statement or one transaction on the pool
 * (the multi-step ones are SQL functions of storage/sql/002_mailbox_ops.sql,
 * so they are one round trip), with prepared statements declared once per
 * mail_mbox_store. Only APPEND to an external blob backend and FETCH of
 * message bytes from one use the blob store besides.
 *
 * Callbacks follow the storage contract: a call that returns 0 calls its
 * callback exactly once, later, from the loop (never from inside the call),
 * failures included; -1 (errno EINVAL for bad arguments, ENOMEM, ESHUTDOWN)
 * means no callback. Pointers given to a callback are valid during the call
 * only. Arguments are copied by the call. A mailbox name that is not
 * acceptable (see below) is -1 with errno EINVAL: answer NO [CANNOT].
 *
 * Names: mailbox names are in wire form (modified UTF-7, checked by the
 * protocol engine), hierarchy separator "/". "INBOX" is case-insensitive:
 * a name that is "inbox" or starts with "inbox/" in any case is used with
 * "INBOX" in upper case. A name must be 1..1024 printable ASCII bytes
 * without '*' or '%', without a leading "/" and without "//"; a trailing
 * "/" is dropped (CREATE "foo/").
 *
 * Change notifications: after every operation that changed a mailbox
 * commits (APPEND, STORE, COPY/MOVE, EXPUNGE, RENAME: the mailbox and its
 * inferiors, or INBOX whose messages moved; DELETE), a
 * short text "v=1 modseq=N [uidnext=N] node=NAME" is published on the
 * mailbox's Redis channel (store_rnotify_publish) when a Redis client was
 * given. A failed publish is ignored (sessions also poll).
 *
 * Blob bodies freed by expunge/delete in an external (directory) blob
 * backend are not removed here; that is the blob store's housekeeping.
 */
#ifndef POSTERN_MAIL_MAILBOX_H
#define POSTERN_MAIL_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct store_pgpool;
struct store_blob;
struct store_redis;
struct mail_mbox_store;

#define MAIL_MBOX_NAME_MAX 1024
#define MAIL_MBOX_PATTERN_MAX 1024
#define MAIL_MBOX_KEYWORD_MAX 64       /* bytes of one keyword */
#define MAIL_MBOX_KEYWORDS_MAX 64      /* keywords in one STORE/APPEND */
#define MAIL_MBOX_MESSAGE_MAX_DEFAULT ((size_t)64 << 20)

/* Outcomes, chosen for the IMAP response codes they map to. */
enum mail_mbox_result {
	MAIL_MBOX_OK = 0,
	MAIL_MBOX_TEMPFAIL,      /* service down, timeout...: NO [UNAVAILABLE] */
	MAIL_MBOX_FAILED,        /* other permanent failure: NO */
	MAIL_MBOX_NONEXISTENT,   /* no such mailbox: NO [NONEXISTENT] / [TRYCREATE] */
	MAIL_MBOX_ALREADYEXISTS, /* NO [ALREADYEXISTS] */
	MAIL_MBOX_CANNOT,        /* INBOX delete, \Noselect, bad name: NO [CANNOT] */
	MAIL_MBOX_OVERQUOTA,     /* NO [OVERQUOTA] */
	MAIL_MBOX_FULL,          /* UID space used up: NO [LIMIT] */
};

/* "ok", "tempfail", ... (static). */
const char *mail_mbox_result_name(enum mail_mbox_result r);

/* System flags: the bits of messages.flags. */
enum {
	MAIL_FLAG_SEEN = 1,
	MAIL_FLAG_ANSWERED = 2,
	MAIL_FLAG_FLAGGED = 4,
	MAIL_FLAG_DELETED = 8,
	MAIL_FLAG_DRAFT = 16,
};

/* The bit of a system flag name ("\Seen", any case), 0 for anything else
 * (a keyword, or "\Recent" which is not stored). */
unsigned int mail_flag_bit(const char *name);
/* "\Seen" ... for one bit (static), NULL for other values. */
const char *mail_flag_name(unsigned int bit);
/* A keyword is an IMAP atom (RFC 3501 9: no CTL, space, "(){%*\"\\]")
 * of 1..MAIL_MBOX_KEYWORD_MAX bytes, not starting with '\'. */
bool mail_keyword_valid(const char *kw);

/* Normalises a mailbox name into out (size >= MAIL_MBOX_NAME_MAX + 1):
 * INBOX prefix upper-cased, trailing '/' dropped. Returns 0, or -1 when
 * the name is not acceptable (see the file comment). */
int mail_mbox_name_normalize(const char *name, char *out, size_t size);

/* ---- the store ---- */

struct store_blob_cache;

struct mail_mbox_settings {
	struct store_pgpool *pool;   /* required */
	struct store_blob *blob;     /* NULL: bodies in mail_blobs.body */
	struct store_redis *redis;   /* NULL: no notifications */
	const char *node;            /* in notifications; default "node" */
	size_t max_message_size;     /* APPEND limit; default 64 MiB */
	unsigned int fetch_chunk;    /* messages per query with bytes; default 32 */
	/* NULL: no cache. Else FETCH reads the rows without the bytes, takes
	 * the bodies it finds here (by the row's SHA-256) and reads only the
	 * others, in one more query per chunk, putting them in. Shared by
	 * stores of several threads; outlives the store. */
	struct store_blob_cache *cache;
};

/* Declares the prepared statements on the pool (names "mbox_*"; so one
 * store per pool). Everything given must outlive the store. Returns NULL
 * with *error_r. */
struct mail_mbox_store *mail_mbox_store_new(const struct mail_mbox_settings *set,
					    const char **error_r);
/* No operation may be pending. Sets *st NULL. */
void mail_mbox_store_free(struct mail_mbox_store **st);

/* Called for operations that only succeed or fail. id: the mailbox id
 * (CREATE, RENAME: of the mailbox now named new_name), else 0. */
typedef void mail_mbox_done_cb(void *ctx, enum mail_mbox_result res, uint64_t id,
			       const char *error);

/* ---- LIST / LSUB (RFC 3501 6.3.8, 6.3.9; RFC 3348 CHILDREN; RFC 6154) ---- */

struct mail_mbox_info {
	const char *name;
	uint64_t id;              /* 0 for a name that only exists as a superior */
	const char *special_use;  /* "\Sent" ..., or NULL */
	bool subscribed;
	bool noselect;            /* \Noselect (deleted with inferiors, or implied) */
	bool has_children;        /* \HasChildren, else \HasNoChildren */
};

typedef void mail_mbox_list_cb(void *ctx, enum mail_mbox_result res,
			       const struct mail_mbox_info *boxes, size_t count,
			       const char *error);

/* Mailboxes of the account matching reference + pattern, sorted by name.
 * lsub: only subscribed ones (superiors of subscribed names that match a
 * trailing '%' come as \Noselect, RFC 3501 6.3.9). An empty pattern gives
 * one entry with name "" and noselect (the hierarchy delimiter request). */
int mail_mbox_list(struct mail_mbox_store *st, uint64_t account_id, const char *reference,
		   const char *pattern, bool lsub, mail_mbox_list_cb *cb, void *ctx);

/* Pure helpers of LIST, exposed for tests. mail_mbox_list_canonical()
 * combines reference and pattern (RFC 3501 6.3.8: the pattern is taken as
 * is when it starts with '/', else appended to the reference) into out.
 * Returns 0 or -1 when it does not fit. mail_mbox_list_match() matches a
 * normalised name against a canonical pattern ('*' anything, '%' anything
 * but '/'; the "INBOX" part of a name compares case-insensitively). */
int mail_mbox_list_canonical(const char *reference, const char *pattern, char *out,
			     size_t size);
bool mail_mbox_list_match(const char *pattern, const char *name);

/* ---- STATUS ---- */

struct mail_mbox_status {
	uint64_t id;
	uint32_t messages, recent, unseen, uidnext, uidvalidity;
	uint64_t highestmodseq, size;
};
typedef void mail_mbox_status_cb(void *ctx, enum mail_mbox_result res,
				 const struct mail_mbox_status *status, const char *error);
/* recent: messages no session has claimed as \Recent yet. A \Noselect
 * name is MAIL_MBOX_CANNOT. */
int mail_mbox_status(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     mail_mbox_status_cb *cb, void *ctx);

/* ---- SELECT / EXAMINE ---- */

struct mail_mbox_selected {
	uint64_t id;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;
	const uint32_t *uids;     /* ascending */
	size_t count;
	/* UIDs above recent_after are \Recent. With SELECT (claim) this
	 * session is the only one that sees them so; EXAMINE claims nothing. */
	uint32_t recent_after;
	uint32_t recent;          /* how many */
	uint32_t unseen;
	uint32_t first_unseen_uid; /* 0: none */
	const char *const *keywords; /* keywords in use */
	size_t keyword_count;
};
typedef void mail_mbox_select_cb(void *ctx, enum mail_mbox_result res,
				 const struct mail_mbox_selected *sel, const char *error);
/* claim_recent: SELECT (true) or EXAMINE (false). A \Noselect name is
 * MAIL_MBOX_CANNOT. */
int mail_mbox_select(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     bool claim_recent, mail_mbox_select_cb *cb, void *ctx);

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE ---- */

int mail_mbox_create(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     mail_mbox_done_cb *cb, void *ctx);
/* INBOX: MAIL_MBOX_CANNOT. With inferiors: messages removed, \Noselect. */
int mail_mbox_delete(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     mail_mbox_done_cb *cb, void *ctx);
/* RENAME of INBOX moves its messages to a new mailbox new_name. */
int mail_mbox_rename(struct mail_mbox_store *st, uint64_t account_id, const char *old_name,
		     const char *new_name, mail_mbox_done_cb *cb, void *ctx);
int mail_mbox_subscribe(struct mail_mbox_store *st, uint64_t account_id, const char *name,
			bool subscribe, mail_mbox_done_cb *cb, void *ctx);

/* ---- UID sets ---- */

/* Ascending, non-overlapping, non-adjacent inclusive ranges. */
struct mail_uid_range {
	uint32_t lo, hi;
};
struct mail_uidset {
	const struct mail_uid_range *ranges;
	size_t count;                /* 0: the empty set */
};

/* ---- APPEND ---- */

struct mail_mbox_append {
	const char *mailbox;
	const uint8_t *data;          /* the message, CRLF line ends */
	size_t len;
	unsigned int flags;           /* MAIL_FLAG_* */
	const char *const *keywords;
	size_t keyword_count;
	bool has_date;                /* else now, in the zone of delivery */
	time_t date;
	int date_tz;                  /* has_date: its zone, minutes east of
				       * UTC (-5999..5999, else EINVAL) */
};
/* APPENDUID data (RFC 4315). */
typedef void mail_mbox_append_cb(void *ctx, enum mail_mbox_result res, uint64_t mailbox_id,
				 uint32_t uidvalidity, uint32_t uid, uint64_t modseq,
				 const char *error);
/* The body is stored once per SHA-256 (deliver_message()), ENVELOPE,
 * BODYSTRUCTURE and the header fields are cached from the MIME parser. A
 * missing or \Noselect mailbox is MAIL_MBOX_NONEXISTENT (TRYCREATE). A
 * message over max_message_size is -1 with errno EFBIG (NO [TOOBIG]); a
 * bad name, flag or keyword -1 with EINVAL. */
int mail_mbox_append(struct mail_mbox_store *st, uint64_t account_id,
		     const struct mail_mbox_append *req, mail_mbox_append_cb *cb, void *ctx);

/* ---- FETCH ---- */

enum {
	MAIL_FETCH_BODY = 1 << 0,     /* the message bytes too */
};

struct mail_mbox_msg {
	uint32_t uid;
	uint64_t modseq;
	unsigned int flags;           /* MAIL_FLAG_* */
	const char *const *keywords;
	size_t keyword_count;
	time_t internaldate;
	int internaldate_tz;          /* its zone, minutes east of UTC */
	uint64_t size;
	const char *envelope;         /* cached IMAP values, or NULL */
	const char *bodystructure;
	const uint8_t *data;          /* MAIL_FETCH_BODY, else NULL */
	size_t data_len;
};
/* Per message, ascending UID, messages of the set that exist. */
typedef void mail_mbox_msg_cb(void *ctx, const struct mail_mbox_msg *msg);
/* Messages of uids in mailbox_id. msg_cb runs for each message, then
 * done_cb once (also after a failure part way). */
int mail_mbox_fetch(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		    const struct mail_uidset *uids, unsigned int what,
		    mail_mbox_msg_cb *msg_cb, mail_mbox_done_cb *done_cb, void *ctx);

/* ---- STORE (RFC 3501 6.4.6; UNCHANGEDSINCE of RFC 7162 3.1.3) ---- */

enum mail_store_mode { MAIL_STORE_REPLACE, MAIL_STORE_ADD, MAIL_STORE_REMOVE };

struct mail_mbox_store_req {
	const struct mail_uidset *uids;
	enum mail_store_mode mode;
	unsigned int flags;
	const char *const *keywords;
	size_t keyword_count;
	uint64_t unchangedsince;      /* 0: none */
};
struct mail_mbox_stored {
	uint32_t uid;
	uint64_t modseq;
	unsigned int flags;
	const char *const *keywords;
	size_t keyword_count;
	bool updated;                 /* false: MODSEQ > unchangedsince (MODIFIED) */
};
/* Messages whose flags changed (and those refused by UNCHANGEDSINCE);
 * untouched ones are not reported. */
typedef void mail_mbox_store_cb(void *ctx, enum mail_mbox_result res,
				const struct mail_mbox_stored *msgs, size_t count,
				const char *error);
int mail_mbox_store_flags(struct mail_mbox_store *st, uint64_t account_id,
			  uint64_t mailbox_id, const struct mail_mbox_store_req *req,
			  mail_mbox_store_cb *cb, void *ctx);

/* ---- COPY / MOVE (RFC 4315 COPYUID, RFC 6851) ---- */

typedef void mail_mbox_copy_cb(void *ctx, enum mail_mbox_result res,
			       uint32_t dst_uidvalidity, const uint32_t *src_uids,
			       const uint32_t *dst_uids, size_t count, const char *error);
/* A missing or \Noselect destination is MAIL_MBOX_NONEXISTENT. */
int mail_mbox_copy(struct mail_mbox_store *st, uint64_t account_id, uint64_t src_mailbox_id,
		   const struct mail_uidset *uids, const char *dst_name, bool move,
		   mail_mbox_copy_cb *cb, void *ctx);

/* ---- EXPUNGE ---- */

typedef void mail_mbox_expunge_cb(void *ctx, enum mail_mbox_result res,
				  const uint32_t *uids, size_t count, uint64_t modseq,
				  const char *error);
/* Removes the \Deleted messages; uids non-NULL: only those (UID EXPUNGE).
 * Returns the expunged UIDs ascending. */
int mail_mbox_expunge(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		      const struct mail_uidset *uids, mail_mbox_expunge_cb *cb, void *ctx);

/* ---- changes since (NOOP, IDLE, after a notification) ---- */

struct mail_mbox_flagmsg {
	uint32_t uid;
	uint64_t modseq;
	unsigned int flags;
	const char *const *keywords;
	size_t keyword_count;
};
struct mail_mbox_changes {
	/* The mailbox's name now: differs from the one selected when
	 * another session renamed it (or a superior) away. */
	const char *name;
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq;       /* pass as since_modseq next time */
	uint32_t recent_after;        /* new UIDs above it are this session's \Recent */
	const uint32_t *expunged;     /* below known_uidnext, ascending */
	size_t expunged_count;
	const struct mail_mbox_flagmsg *changed; /* below known_uidnext */
	size_t changed_count;
	const struct mail_mbox_flagmsg *added;   /* from known_uidnext on */
	size_t added_count;
};
typedef void mail_mbox_changes_cb(void *ctx, enum mail_mbox_result res,
				  const struct mail_mbox_changes *ch, const char *error);
/* claim_recent: SELECTed (not EXAMINEd) sessions claim new messages as
 * their \Recent ones. A deleted mailbox (or one that became \Noselect)
 * is MAIL_MBOX_NONEXISTENT; a renamed one is OK with its new ch->name. */
int mail_mbox_changes(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		      uint64_t since_modseq, uint32_t known_uidnext, bool claim_recent,
		      mail_mbox_changes_cb *cb, void *ctx);

/* ---- SEARCH (RFC 3501 6.4.4) ---- */

/* The protocol engine builds the tree. Message sequence numbers, \Recent,
 * NEW and OLD are per session: the engine turns them into UID sets
 * (NEW = RECENT UNSEEN). FROM/TO/CC/BCC/SUBJECT are HEADER with that
 * name. Strings are UTF-8 (the engine converts the CHARSET). */
enum mail_sk_type {
	MAIL_SK_ALL = 1,
	MAIL_SK_AND,          /* every child (an empty AND is ALL) */
	MAIL_SK_OR,           /* any child */
	MAIL_SK_NOT,          /* the one child does not match */
	MAIL_SK_UIDSET,       /* uids */
	MAIL_SK_FLAG,         /* flag bit set (ANSWERED, UNSEEN = NOT FLAG...) */
	MAIL_SK_KEYWORD,      /* str (case-insensitive) */
	MAIL_SK_BEFORE,       /* internal date, day in its own zone */
	MAIL_SK_ON,
	MAIL_SK_SINCE,
	MAIL_SK_SENTBEFORE,   /* Date: header, day in its own zone */
	MAIL_SK_SENTON,
	MAIL_SK_SENTSINCE,
	MAIL_SK_LARGER,       /* size > num */
	MAIL_SK_SMALLER,      /* size < num */
	MAIL_SK_MODSEQ,       /* modseq >= num */
	MAIL_SK_HEADER,       /* header field name contains str */
	MAIL_SK_BODY,         /* body text contains str */
	MAIL_SK_TEXT,         /* header or body contains str */
};

struct mail_search_node {
	enum mail_sk_type type;
	struct mail_search_node *children;  /* AND, OR, NOT */
	struct mail_search_node *next;      /* sibling */
	struct mail_uidset uids;
	unsigned int flag;
	long day;                           /* days since 1970-01-01 */
	uint64_t num;
	const char *name;                   /* HEADER field name */
	const char *str;
};

#define MAIL_SEARCH_MAX_NODES 256
#define MAIL_SEARCH_MAX_DEPTH 32

typedef void mail_mbox_search_cb(void *ctx, enum mail_mbox_result res,
				 const uint32_t *uids, size_t count, const char *error);
/* Matching UIDs of mailbox_id, ascending. Flags, keywords, dates, sizes,
 * MODSEQ and UID sets become SQL; SENT* and text keys are decided on the
 * parsed message (mail_search_header/body/text) for the candidates SQL
 * left. A tree over the limits above is EINVAL. */
int mail_mbox_search(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		     const struct mail_search_node *tree, mail_mbox_search_cb *cb, void *ctx);

#endif
