/* Shared between backend/mailbox*.c: the store object, the prepared
 * statements, reply classification and small text helpers. Private. */
#ifndef POSTERN_MAILBOX_PRIVATE_H
#define POSTERN_MAILBOX_PRIVATE_H

#include "postern/mail-mailbox.h"
#include "postern/store-pgpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mbox_stmt {
	MS_LIST,
	MS_STATUS,
	MS_SELECT,
	MS_CREATE,
	MS_DELETE,
	MS_RENAME,
	MS_SUBSCRIBE,
	MS_APPEND,
	MS_FETCH,
	MS_STORE,
	MS_COPY,
	MS_MOVE,
	MS_EXPUNGE,
	MS_CHANGES,
	MS_BODIES,
	MS_COUNT
};

struct mail_mbox_store {
	struct store_pgpool *pool;
	struct store_blob *blob;
	struct store_redis *redis;
	char node[64];
	size_t max_message_size;
	unsigned int fetch_chunk;
	struct store_blob_cache *cache;	/* NULL: none */
	const struct store_pg_stmt *stmt[MS_COUNT];
};

/* Maps a reply to an outcome (SQLSTATE PN001 nonexistent, PN002 full,
 * PN003 over quota, PN007 cannot, PN008 / 23505 exists, 23514 cannot). */
enum mail_mbox_result mbox_reply_result(const struct store_pg_reply *r);

/* Runs a prepared statement with text parameters (formats NULL) or the
 * given formats/lengths. */
int mbox_run(struct mail_mbox_store *st, enum mbox_stmt s, int n, const char *const *vals,
	     const int *lens, const int *fmts, store_pg_cb *cb, void *ctx);

/* Publishes a change of a mailbox (ignores every failure). uidnext 0: not
 * known. */
void mbox_notify(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		 uint64_t modseq, uint64_t uidnext);

/* UID set as the SQL of the statements: lo, hi and an int8multirange
 * literal (malloc'd, in *mr_r). Returns 0 or -1 (unsorted set, ENOMEM). */
int mbox_uidset_sql(const struct mail_uidset *set, char lo[24], char hi[24], char **mr_r);

/* Keyword lists of rows: for each row r of res, column col holds
 * space-separated words; fills lists[r] / counts[r] pointing into one
 * block (*mem_r, free()). Returns 0 or -1 (ENOMEM). */
int mbox_split_rows(const PGresult *res, int col, int nrows, const char *const **lists,
		    size_t *counts, void **mem_r);

/* A PostgreSQL text[] literal of quoted keywords (malloc'd) or NULL. */
char *mbox_keyword_array(const char *const *kw, size_t n);

/* Parses "1,2,3" into a malloc'd array. Returns 0 or -1. */
int mbox_parse_uids(const char *s, uint32_t **uids_r, size_t *count_r);

/* The chunked message scan behind FETCH and SEARCH: rows in UID order,
 * want_body adds the message bytes (from mail_blobs, or the blob store for
 * an external one). Parameters are added in order with mbox_scan_param();
 * the statement (sql, or the FETCH statement for NULL) must select the
 * columns of the FETCH statement, read UIDs from the parameter at 0-based
 * index from_idx on, and have a LIMIT of the scan's limit (scan->limit is
 * what mbox_scan_limit() returns). done_cb gets id 0. */
struct mbox_scan;
struct mbox_scan *mbox_scan_new(struct mail_mbox_store *st, bool want_body,
				mail_mbox_msg_cb *row_cb, mail_mbox_done_cb *done_cb, void *ctx);
unsigned int mbox_scan_limit(const struct mbox_scan *sc);
int mbox_scan_param(struct mbox_scan *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int mbox_scan_start(struct mbox_scan *sc, const char *sql, int from_idx);
/* Frees a scan that was not started (or whose start failed). */
void mbox_scan_abort(struct mbox_scan *sc);

uint64_t mbox_u64(const PGresult *res, int row, int col);

#endif
