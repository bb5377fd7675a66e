/* IMAP server session engine: RFC 3501 (IMAP4rev1) with LITERAL+ (RFC 7888),
 * SASL-IR (RFC 4959), IDLE (RFC 2177), UIDPLUS (RFC 4315), MOVE (RFC 6851),
 * UNSELECT (RFC 3691), NAMESPACE (RFC 2342), ID (RFC 2971), ENABLE
 * (RFC 5161), SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348), BINARY
 * (RFC 3516: FETCH BINARY[part]<partial>, BINARY.PEEK, BINARY.SIZE) and
 * CONDSTORE (RFC 7162 section 3: MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE,
 * SEARCH MODSEQ, STATUS HIGHESTMODSEQ, NOMODSEQ; not QRESYNC).
 *
 * The engine is sans-IO: no I/O, no storage; it includes no ring, socket,
 * database or TLS header. The daemon owns the connection and the storage:
 *
 *   s = imap_session_new(&settings);            greeting is the first SEND
 *   loop:
 *     while ((r = imap_session_next(s, &act)) == 1)
 *         carry out act (see enum imap_action_type);
 *     if (r < 0) { imap_session_free(&s); close the socket; }
 *     else wait for input (imap_session_feed), a result call or a
 *          mailbox change (imap_session_notify).
 *
 * next() returns 1 with an action, 0 when nothing can happen until more
 * input, a result or a notification arrives, -1 when the session is over
 * (after CLOSE was returned, or after imap_session_disconnected()).
 *
 * Requests. IMAP_ACTION_REQUEST hands out act.req (one at a time, in command
 * order: pipelined commands wait in the parser until the request is
 * answered). The daemon answers with the result call named at each request
 * type below; every request is finished by exactly one "final" result call.
 * act.req and everything it points to stay valid until that final call.
 *
 * Message data (FETCH and SEARCH). The engine parses FETCH attributes and
 * SEARCH keys itself and asks for per-message data with one
 * IMAP_REQ_MESSAGES request naming the UIDs and the data needed
 * (IMAP_NEED_*). The daemon calls imap_session_message() once per UID that
 * still exists, in the order given (skipping expunged ones), and then
 * imap_session_result(). The engine extracts BODY[section] data with the
 * backend MIME library, so the daemon only ever supplies whole messages.
 * SEARCH design: the engine evaluates the search tree on the supplied data
 * (flags, dates, sizes, and the message bytes only when a header/body key
 * or a SENT* key needs them). This keeps one correct implementation of every
 * RFC 3501 6.4.4 key beside the parser, at the cost of reading messages for
 * text searches; a database-side evaluator can be added later for speed.
 *
 * Mailbox changes from other sessions: imap_session_notify() at any time
 * while a mailbox is selected. During IDLE the untagged responses go out at
 * once; otherwise they are held and sent before the tagged reply of the next
 * command. EXPUNGE responses are withheld during FETCH, STORE and SEARCH
 * (RFC 3501 7.4.1; UID variants allow them). Message sequence numbers are
 * kept consistent with what the client was told.
 *
 * Memory: input is buffered by the parser (see imap_parser_room()); output
 * goes through a buffer bounded by settings.max_output; after each
 * imap_session_message() call the daemon should drain the SENDs before
 * giving the next message. Pointers in an action stay valid until the next
 * call of any imap_session_* function, except act.req (see above).
 *
 * Not implemented (not advertised; the commands or arguments get BAD):
 * IMAP4rev2, QRESYNC, MULTIAPPEND,
 * SEARCHRES ("$"), ESEARCH, UTF8=ACCEPT. LIST accepts the RFC 5258
 * selection options SUBSCRIBED/REMOTE/RECURSIVEMATCH/SPECIAL-USE and return
 * options SUBSCRIBED/CHILDREN/SPECIAL-USE and pattern lists, without
 * advertising LIST-EXTENDED (RECURSIVEMATCH has no effect).
 *
 * Threads: one thread at a time per session.
 */
#ifndef POSTERN_IMAP_SESSION_H
#define POSTERN_IMAP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "imap-parser.h"

/* Defaults of struct imap_settings. */
#define IMAP_DEFAULT_MAX_BAD 10              /* bad commands in a row -> BYE */
#define IMAP_DEFAULT_MAX_APPEND (64u * 1024 * 1024)
#define IMAP_DEFAULT_MAX_OUTPUT (128u * 1024 * 1024)
#define IMAP_DEFAULT_MAX_MESSAGES 10000000u  /* UIDs in one SELECT */
/* Largest literal accepted before authentication (LOGIN, AUTHENTICATE). */
#define IMAP_PREAUTH_MAX_LITERAL 8192u
#define IMAP_MAX_USER_LEN 255
#define IMAP_MAX_PASSWORD_LEN 1024

struct imap_settings {
	const char *hostname;   /* greeting text; printable ASCII */
	bool tls_active;        /* implicit TLS listener (993 style) */
	bool starttls_available; /* a certificate is configured */
	/* Plaintext LOGIN/AUTHENTICATE allowed without TLS (loopback or
	 * behind a TLS-terminating balancer); else LOGINDISABLED. */
	bool trusted;
	unsigned int max_bad;   /* 0: default */
	size_t max_append;      /* 0: default */
	size_t max_output;      /* 0: default */
	uint32_t max_messages;  /* 0: default */
	/* Parser limits (zero fields: parser defaults). */
	struct imap_parser_limits parser;
};

void imap_settings_defaults(struct imap_settings *set_r);

enum imap_state {
	IMAP_STATE_NOT_AUTHENTICATED,
	IMAP_STATE_AUTHENTICATED,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};

enum imap_action_type {
	/* Send send.data[0..send.len) to the client. */
	IMAP_ACTION_SEND = 1,
	/* "OK Begin TLS" was sent before this. Drop every plaintext byte not
	 * fed yet, run the handshake, then imap_session_tls_started() (or
	 * close on failure). The engine already dropped buffered input. */
	IMAP_ACTION_START_TLS,
	/* Close after sending what came before; next() then returns -1.
	 * close_reason is static text for the log. */
	IMAP_ACTION_CLOSE,
	/* A typed request in act.req; see enum imap_request_type. */
	IMAP_ACTION_REQUEST,
};

enum imap_request_type {
	/* Verify req.auth; final: imap_session_auth_result(). */
	IMAP_REQ_AUTH_VERIFY = 1,
	/* All mailboxes of the user; final: imap_session_list_result().
	 * The engine matches reference + pattern and computes CHILDREN. */
	IMAP_REQ_MAILBOX_LIST,
	/* req.mailbox, req.status_items; final: imap_session_status_result(). */
	IMAP_REQ_MAILBOX_STATUS,
	/* req.mailbox, req.readonly (EXAMINE); final:
	 * imap_session_select_result(). */
	IMAP_REQ_MAILBOX_SELECT,
	/* req.mailbox (and req.new_name for RENAME; RENAME of INBOX moves
	 * its messages into a new mailbox and leaves INBOX empty, RFC 3501
	 * 6.3.5); final: imap_session_result(). */
	IMAP_REQ_MAILBOX_CREATE,
	IMAP_REQ_MAILBOX_DELETE,
	IMAP_REQ_MAILBOX_RENAME,
	IMAP_REQ_MAILBOX_SUBSCRIBE,
	IMAP_REQ_MAILBOX_UNSUBSCRIBE,
	/* Store req.data[0..req.data_len) into req.mailbox with req.flags and
	 * the internal date (req.has_date, else now); final:
	 * imap_session_append_result(). */
	IMAP_REQ_APPEND,
	/* Data of req.uids of the selected mailbox, req.need (IMAP_NEED_*):
	 * imap_session_message() per existing UID, then imap_session_result(). */
	IMAP_REQ_MESSAGES,
	/* Change flags of req.uids: req.store_op with req.flags (\Recent is
	 * never among them). Report each changed message with
	 * imap_session_message() (uid, flags and new modseq only), each one
	 * refused by req.unchangedsince with imap_session_store_modified(),
	 * then imap_session_result(). req.silent: the engine sends no FETCH
	 * for them (still report them). */
	IMAP_REQ_STORE,
	/* Copy (req.move: move) req.uids to req.mailbox; final:
	 * imap_session_copy_result(). */
	IMAP_REQ_COPY,
	/* Expunge messages flagged \Deleted; with req.uid_count > 0 only those
	 * UIDs (UID EXPUNGE); req.silent for CLOSE. Final:
	 * imap_session_expunge_result(). */
	IMAP_REQ_EXPUNGE,
	/* NOOP/CHECK: report changes with imap_session_notify(), then
	 * imap_session_result(). */
	IMAP_REQ_POLL,
};

enum imap_auth_mech {
	IMAP_AUTH_LOGIN_CMD,   /* the LOGIN command */
	IMAP_AUTH_PLAIN,       /* AUTHENTICATE PLAIN */
	IMAP_AUTH_LOGIN,       /* AUTHENTICATE LOGIN */
};

enum imap_store_op { IMAP_STORE_REPLACE, IMAP_STORE_ADD, IMAP_STORE_REMOVE };

/* STATUS items. */
enum {
	IMAP_STATUS_MESSAGES = 1 << 0,
	IMAP_STATUS_RECENT = 1 << 1,
	IMAP_STATUS_UIDNEXT = 1 << 2,
	IMAP_STATUS_UIDVALIDITY = 1 << 3,
	IMAP_STATUS_UNSEEN = 1 << 4,
	IMAP_STATUS_HIGHESTMODSEQ = 1 << 5,
};

/* What IMAP_REQ_MESSAGES asks for. */
enum {
	IMAP_NEED_FLAGS = 1 << 0,
	IMAP_NEED_INTERNALDATE = 1 << 1,
	IMAP_NEED_SIZE = 1 << 2,
	IMAP_NEED_ENVELOPE = 1 << 3,
	IMAP_NEED_BODYSTRUCTURE = 1 << 4,
	IMAP_NEED_MESSAGE = 1 << 5, /* the whole message bytes */
	IMAP_NEED_MODSEQ = 1 << 6,
};

struct imap_request {
	enum imap_request_type type;
	struct {
		enum imap_auth_mech mech;
		const char *authzid; /* "" unless PLAIN carried one */
		const char *user, *password;
	} auth;
	/* Mailbox names in wire form (modified UTF-7, validated), "INBOX"
	 * spelt in upper case whatever the client sent. */
	const char *mailbox;
	const char *new_name;
	bool readonly;
	unsigned int status_items;
	bool lsub;            /* LIST: the command was LSUB */
	/* APPEND */
	const char *const *flags;
	size_t flag_count;
	bool has_date;
	time_t date;
	int date_tz;          /* minutes east of UTC */
	const uint8_t *data;
	size_t data_len;
	/* MESSAGES, STORE, COPY, EXPUNGE: UIDs in ascending order. */
	const uint32_t *uids;
	size_t uid_count;
	unsigned int need;
	enum imap_store_op store_op;
	bool silent;
	bool move;
	/* STORE (UNCHANGEDSINCE n): change only messages whose MODSEQ is
	 * at most n; report the others with imap_session_store_modified(). */
	bool has_unchangedsince;
	uint64_t unchangedsince;
};

struct imap_action {
	enum imap_action_type type;
	union {
		struct {
			const uint8_t *data;
			size_t len;
		} send;
		const char *close_reason;
		const struct imap_request *req;
	};
};

/* Outcomes; each maps to a fixed response text. */
enum imap_result {
	IMAP_RESULT_OK = 0,
	IMAP_RESULT_NO,            /* NO, generic failure */
	IMAP_RESULT_NONEXISTENT,   /* NO [NONEXISTENT] */
	IMAP_RESULT_ALREADYEXISTS, /* NO [ALREADYEXISTS] */
	IMAP_RESULT_TRYCREATE,     /* NO [TRYCREATE] (APPEND/COPY target) */
	IMAP_RESULT_OVERQUOTA,     /* NO [OVERQUOTA] */
	IMAP_RESULT_NOPERM,        /* NO [NOPERM] */
	IMAP_RESULT_INUSE,         /* NO [INUSE] */
	IMAP_RESULT_CANNOT,        /* NO [CANNOT] (e.g. delete INBOX) */
	IMAP_RESULT_AUTH_FAILED,   /* NO [AUTHENTICATIONFAILED] */
	IMAP_RESULT_TEMPFAIL,      /* NO [UNAVAILABLE] */
	IMAP_RESULT_LIMIT,         /* NO [LIMIT] (RFC 5530: too many sessions) */
};

/* SPECIAL-USE attributes of a mailbox (RFC 6154). */
enum {
	IMAP_MBOX_SENT = 1 << 0,
	IMAP_MBOX_DRAFTS = 1 << 1,
	IMAP_MBOX_TRASH = 1 << 2,
	IMAP_MBOX_JUNK = 1 << 3,
	IMAP_MBOX_ARCHIVE = 1 << 4,
	IMAP_MBOX_ALL = 1 << 5,
	IMAP_MBOX_FLAGGED = 1 << 6,
};

struct imap_mailbox_info {
	const char *name;      /* wire form, "/" separated */
	unsigned int special_use;
	bool subscribed;
	bool noselect;
};

struct imap_status_result {
	enum imap_result result;
	uint32_t messages, recent, uidnext, uidvalidity, unseen;
	uint64_t highestmodseq;
};

struct imap_select_result {
	enum imap_result result;
	/* The mailbox's messages in ascending UID order (copied). */
	const uint32_t *uids;
	size_t count;
	/* \Recent count: SELECT, the messages this session claimed;
	 * EXAMINE, those nobody claimed yet (RFC 3501 6.3.2) */
	uint32_t recent;
	uint32_t first_unseen; /* sequence number, 0 for none */
	uint32_t uidvalidity, uidnext;
	uint64_t highestmodseq; /* 0: the mailbox has no MODSEQs (NOMODSEQ) */
	/* Defined flags (system flags and keywords in use); NULL: the five
	 * system flags. Keywords may be created (PERMANENTFLAGS gets \*)
	 * unless readonly. */
	const char *const *flags;
	size_t flag_count;
};

struct imap_message_data {
	uint32_t uid;
	const char *const *flags; /* incl. \Recent if this session owns it */
	size_t flag_count;
	time_t internaldate;
	int internaldate_tz;
	uint64_t size;            /* RFC822.SIZE (CRLF bytes) */
	uint64_t modseq;          /* IMAP_NEED_MODSEQ (and always for STORE) */
	/* Cached IMAP values (outer parentheses included); NULL makes the
	 * engine compute them from data when that was supplied. */
	const char *envelope;
	const char *bodystructure;
	const uint8_t *data;      /* IMAP_NEED_MESSAGE: the whole message */
	size_t data_len;
};

enum imap_notify_type {
	IMAP_NOTIFY_EXISTS = 1,  /* a new message uid (ascending) */
	IMAP_NOTIFY_EXPUNGE,     /* message uid is gone */
	IMAP_NOTIFY_FLAGS,       /* message uid has flags */
};

struct imap_notify {
	enum imap_notify_type type;
	uint32_t uid;
	uint64_t modseq; /* FLAGS: the message's new MODSEQ (0: unknown) */
	/* EXISTS: this session owns the message as \Recent (RFC 3501
	 * 2.3.2); the engine then sends "* n RECENT" with the new count. */
	bool recent;
	const char *const *flags;
	size_t flag_count;
};

struct imap_session;

/* Creates a session (settings copied, strings borrowed). NULL if out of
 * memory or the hostname is not printable ASCII. */
struct imap_session *imap_session_new(const struct imap_settings *set);
void imap_session_free(struct imap_session **s);

/* Takes up to len bytes from the client; returns how many were taken
 * (fewer when the input buffer is full: feed the rest after next() made
 * progress). Bytes fed while TLS is pending or after CLOSE are dropped. */
size_t imap_session_feed(struct imap_session *s, const void *data, size_t len);
int imap_session_next(struct imap_session *s, struct imap_action *act_r);

void imap_session_tls_started(struct imap_session *s);
/* The client went away: no more SENDs; an outstanding request must still be
 * answered, then next() returns -1. */
void imap_session_disconnected(struct imap_session *s);
/* Drain: "* BYE [UNAVAILABLE] Server shutting down" and CLOSE at the next
 * command boundary (after an outstanding request, or at once during IDLE).
 * Same as imap_session_end(s, IMAP_END_SHUTDOWN). */
void imap_session_shutdown(struct imap_session *s);

/* Why the node ends a session; each has its own BYE text. */
enum imap_end_reason {
	IMAP_END_SHUTDOWN,	/* "* BYE [UNAVAILABLE] Server shutting down" */
	IMAP_END_IDLE,		/* RFC 3501 5.4 autologout: "* BYE Autologout; idle for too long" */
	IMAP_END_KICK,		/* posternctl kick: "* BYE Disconnected by the administrator." */
};
/* Ends the session like imap_session_shutdown(), with why's text. */
void imap_session_end(struct imap_session *s, enum imap_end_reason why);
/* The selected mailbox was deleted or renamed by another session: "* BYE
 * Selected mailbox was deleted, have to disconnect." and CLOSE, at the
 * same point as imap_session_shutdown() (at once during IDLE or between
 * commands, else after the running command's reply). Ignored unless a
 * mailbox is selected, or when a shutdown is already under way. The
 * session's own DELETE of its selected mailbox needs no call: the engine
 * then leaves the Selected state itself; its own RENAME makes the engine
 * follow the new name. */
void imap_session_mailbox_gone(struct imap_session *s);

/* Result calls. Each returns 0, or -1 with *error_r (static) when no
 * matching request is outstanding or the answer is invalid (a daemon
 * bug; nothing changes). */
int imap_session_auth_result(struct imap_session *s, enum imap_result result,
			     const char **error_r);
int imap_session_list_result(struct imap_session *s, enum imap_result result,
			     const struct imap_mailbox_info *boxes, size_t count,
			     const char **error_r);
int imap_session_status_result(struct imap_session *s,
			       const struct imap_status_result *res,
			       const char **error_r);
int imap_session_select_result(struct imap_session *s,
			       const struct imap_select_result *res,
			       const char **error_r);
int imap_session_append_result(struct imap_session *s, enum imap_result result,
			       uint32_t uidvalidity, uint32_t uid,
			       const char **error_r);
/* src_uids[i] was copied to dst_uids[i]; count 0 gives no COPYUID. For a
 * successful move the engine sends EXPUNGE for every UID of the request. */
int imap_session_copy_result(struct imap_session *s, enum imap_result result,
			     uint32_t uidvalidity, const uint32_t *src_uids,
			     const uint32_t *dst_uids, size_t count,
			     const char **error_r);
int imap_session_expunge_result(struct imap_session *s, enum imap_result result,
				const uint32_t *uids, size_t count,
				const char **error_r);
/* Per-message data of MESSAGES and STORE (not final). -1 also when the
 * output buffer is full (drain SENDs and retry) or the data is unusable. */
int imap_session_message(struct imap_session *s,
			 const struct imap_message_data *md, const char **error_r);
/* STORE with UNCHANGEDSINCE: message uid was not changed because its
 * MODSEQ is higher (RFC 7162 3.1.3); not final. */
int imap_session_store_modified(struct imap_session *s, uint32_t uid,
				const char **error_r);
/* Final answer of CREATE/DELETE/RENAME/(UN)SUBSCRIBE, MESSAGES, STORE,
 * POLL. */
int imap_session_result(struct imap_session *s, enum imap_result result,
			const char **error_r);

/* A change of the selected mailbox (see the file comment). Ignored when no
 * mailbox is selected, for an EXISTS whose UID is not above every known
 * one, and for EXPUNGE/FLAGS of a message the client does not know. Call
 * next() afterwards: during IDLE the update is a SEND at once. Flags are
 * copied. Changes made by this session's own requests (STORE, EXPUNGE,
 * MOVE) are reported by their results; do not notify them again (a FLAGS
 * echo would only repeat a FETCH response). New messages from its own
 * APPEND or COPY into the selected mailbox must be notified as EXISTS.
 * Returns 0, or -1 if out of memory. */
int imap_session_notify(struct imap_session *s, const struct imap_notify *n);

enum imap_state imap_session_state(const struct imap_session *s);
/* The selected mailbox (wire form; the name given to the last successful
 * MAILBOX_SELECT) or NULL; the daemon watches it for changes to notify.
 * *readonly_r (may be NULL) tells EXAMINE. Valid until the next call. */
const char *imap_session_mailbox(const struct imap_session *s, bool *readonly_r);
/* Messages in the client's view of the selected mailbox (0 if none). */
size_t imap_session_message_count(const struct imap_session *s);
/* True while the session is in IDLE (the daemon may watch the mailbox). */
bool imap_session_idling(const struct imap_session *s);

#endif
