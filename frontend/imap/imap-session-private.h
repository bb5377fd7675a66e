/* Internals shared by the IMAP session engine's files (imap-session.c: core,
 * states, authentication, IDLE, notifications; imap-mailbox.c: mailbox
 * commands and APPEND; imap-fetch.c: FETCH, STORE, COPY/MOVE, EXPUNGE,
 * CLOSE; imap-search.c: SEARCH). Not a public interface.
 */
#ifndef POSTERN_IMAP_SESSION_PRIVATE_H
#define POSTERN_IMAP_SESSION_PRIVATE_H

#include "imap-session.h"
#include "imap-seqset.h"
#include "postern/buf.h"

struct mail_search_node;

enum imap_cmd {
	CMD_NONE = 0,
	CMD_OTHER,
	CMD_LOGIN,
	CMD_AUTHENTICATE,
	CMD_SELECT,
	CMD_CREATE,
	CMD_DELETE,
	CMD_RENAME,
	CMD_SUBSCRIBE,
	CMD_UNSUBSCRIBE,
	CMD_LIST,
	CMD_STATUS,
	CMD_APPEND,
	CMD_POLL,
	CMD_FETCH,
	CMD_STORE,
	CMD_COPY,
	CMD_EXPUNGE,
	CMD_CLOSE,
	CMD_SEARCH,
};

enum req_state { REQ_NONE, REQ_READY, REQ_WAIT };

enum auth_step { AUTH_NONE, AUTH_PLAIN_WAIT, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

/* A block allocated for the current command, freed when it ends. */
struct cmd_block {
	struct cmd_block *next;
	max_align_t data[];
};

struct fetch_item;
struct search_key;

struct pending_flags {
	uint32_t uid;
	uint64_t modseq;
	char *flags; /* formatted "(...)" */
};

struct imap_session {
	struct imap_settings set;
	struct imap_parser *parser;
	enum imap_state state;
	struct pn_buf out;
	size_t out_handed; /* bytes given in the last SEND */
	bool tls_active, tls_pending, tls_handed, close_pending, closed, disconnected;
	bool shutdown_wanted, out_overflow, idling;
	const char *close_reason;
	/* shutdown_wanted: the BYE text and close reason (static) */
	const char *shutdown_text, *shutdown_reason;
	unsigned int bad_count;

	/* The command being executed. */
	enum imap_cmd cmd;
	char *tag;
	bool uid_cmd;
	struct cmd_block *blocks;
	enum req_state req_state;
	struct imap_request req;
	int step; /* command-specific */

	/* AUTHENTICATE */
	enum auth_step auth_step;
	char auth_user[IMAP_MAX_USER_LEN + 1];
	char auth_authzid[IMAP_MAX_USER_LEN + 1];
	char auth_pass[IMAP_MAX_PASSWORD_LEN + 1];

	/* APPEND streaming */
	bool appending;
	struct pn_buf append_buf;

	/* LIST */
	const char **list_patterns;
	size_t list_pattern_n;
	bool list_subscribed_only, list_return_subscribed;
	bool list_special_only;	/* LIST (SPECIAL-USE): RFC 6154 3 */
	/* STATUS: requested items in order */
	unsigned int status_order[8];
	unsigned int status_n;

	/* FETCH */
	struct fetch_item *fetch_items;
	size_t fetch_n;
	bool fetch_set_seen;
	unsigned int fetch_need;
	bool fetch_changedsince_set;
	uint64_t fetch_changedsince;
	/* STORE UNCHANGEDSINCE: UIDs not changed */
	uint32_t *modified;
	size_t modified_n, modified_cap;

	/* SEARCH */
	struct search_key *search, *search_reg;
	uint32_t *search_hits;
	size_t search_n, search_cap;
	bool search_modseq;         /* a MODSEQ key was used */
	uint64_t search_max_modseq; /* highest MODSEQ of a hit */

	/* Selected mailbox: the client's view (sequence number i+1 = uids[i]). */
	char *mailbox;
	bool readonly;
	bool nomodseq;   /* the mailbox has no MODSEQs */
	bool condstore;  /* CONDSTORE enabled (RFC 7162 3.1) */
	uint32_t *uids;
	size_t count, cap;
	uint32_t recent;   /* \Recent count told to the client */
	uint32_t pend_recent; /* new \Recent messages not told yet */

	/* Changes not yet told to the client. */
	uint32_t *pend_new;
	size_t pend_new_n, pend_new_cap;
	uint32_t *pend_exp;
	size_t pend_exp_n, pend_exp_cap;
	struct pending_flags *pend_flags;
	size_t pend_flags_n, pend_flags_cap;
};

/* --- imap-session.c --------------------------------------------------- */
void *cmd_alloc(struct imap_session *s, size_t size);
char *cmd_strndup(struct imap_session *s, const char *str, size_t len);
void out_str(struct imap_session *s, const char *str);
void out_mem(struct imap_session *s, const void *data, size_t len);
void out_printf(struct imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Writes the quoted form of str (escaping '"' and '\'). */
void out_quoted(struct imap_session *s, const char *str, size_t len);
/* Tagged completion: flushes allowed notifications, writes "tag text",
 * ends the command. BAD counts toward the bad-command limit. */
void cmd_done(struct imap_session *s, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void cmd_request(struct imap_session *s, enum imap_request_type type);
const char *result_text(enum imap_result r);
/* Validates a flag list argument (a list, or one flag atom) into
 * *flags_r (command memory). Returns 0, or -1 after answering BAD. */
int parse_flags(struct imap_session *s, const struct imap_arg *arg,
		const char *const **flags_r, size_t *count_r, bool allow_list_only);
void out_flags(struct imap_session *s, const char *const *flags, size_t n);
/* Sequence numbers of the view: 1-based index of uid, 0 if absent. */
uint32_t view_seq(const struct imap_session *s, uint32_t uid);
/* Removes the messages uids[0..n) (any order, unknown ones ignored) from
 * the view, writing their EXPUNGE responses; O(count + n log n). */
void view_expunge(struct imap_session *s, const uint32_t *uids, size_t n);
void view_clear(struct imap_session *s);
/* Resolves a sequence set (or UID set) to ascending UIDs in the view.
 * Returns 0, or -1 after answering BAD. */
int resolve_set(struct imap_session *s, const struct imap_arg *arg, bool uid,
		uint32_t **uids_r, size_t *count_r);
bool is_atom_safe(const char *str, size_t len);
/* Appends uids[0..n) (ascending) as an RFC 4315 uid-set ("1:3,7"). */
void uidset_str(const uint32_t *uids, size_t n, struct pn_buf *b);
/* Turns CONDSTORE on; false (after answering BAD) when the selected
 * mailbox has no MODSEQs. */
bool condstore_enable(struct imap_session *s);

/* --- imap-mailbox.c --------------------------------------------------- */
/* Validates a mailbox argument; returns its wire name in command memory, or
 * NULL after answering NO/BAD. */
const char *mailbox_arg(struct imap_session *s, const struct imap_arg *arg);
void cmd_select(struct imap_session *s, const struct imap_arg *args, bool readonly);
void cmd_mailbox_op(struct imap_session *s, enum imap_cmd cmd, const struct imap_arg *args);
void cmd_list(struct imap_session *s, const struct imap_arg *args, bool lsub);
void cmd_status(struct imap_session *s, const struct imap_arg *args);
void cmd_append(struct imap_session *s, const struct imap_event *ev);
void append_data(struct imap_session *s, const struct imap_event *ev);
void append_continued(struct imap_session *s, const struct imap_event *ev);
bool list_match(const char *pattern, const char *name);

/* --- imap-fetch.c ----------------------------------------------------- */
void cmd_fetch(struct imap_session *s, const struct imap_arg *args);
void cmd_store(struct imap_session *s, const struct imap_arg *args);
void cmd_copy(struct imap_session *s, const struct imap_arg *args, bool move);
void cmd_expunge(struct imap_session *s, const struct imap_arg *args);
void cmd_close(struct imap_session *s, bool expunge);
int fetch_message(struct imap_session *s, const struct imap_message_data *md,
		  const char **error_r);
void fetch_free(struct imap_session *s);

/* --- imap-search.c ---------------------------------------------------- */
void cmd_search(struct imap_session *s, const struct imap_arg *args);
int search_message(struct imap_session *s, const struct imap_message_data *md,
		   const char **error_r);
void search_finish(struct imap_session *s);
void search_free(struct imap_session *s);

#endif
