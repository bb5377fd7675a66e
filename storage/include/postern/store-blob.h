/* The blob store: message bodies by SHA-256, stored once however many
 * messages use them, with a reference count.
 *
 * One interface (struct store_blob_ops), two implementations:
 * - PostgreSQL (blob-pg.c, the default): the bytes in mail_blobs.body.
 * - directory (blob-dir.c): the bytes in files on a shared filesystem,
 *   DIR/ab/cd/abcd...(64 hex digits), written to a temporary file in the
 *   same folder, fsync'ed, renamed into place and the folder fsync'ed; the
 *   file I/O runs on a worker pool (pn_workpool) and its callbacks come
 *   back on the loop. The mail_blobs row of an external body keeps hash,
 *   size and reference count (body NULL), so both backends count
 *   references in PostgreSQL with the schema's blob_ref()/blob_unref().
 *
 * Concurrency rule of the directory backend: a file is written inside the
 * transaction that took a reference (after blob_ref, which locks the row)
 * and deleted inside the transaction that dropped the last one (after
 * blob_unref deleted the row), so a put and a release of the same body on
 * any nodes are serialised by PostgreSQL's row lock and a put never loses
 * its file to a concurrent release. Whoever adds a reference to an
 * external body in its own transaction (deliver() with p_body_external)
 * follows the same rule: write the file after the reference, before
 * COMMIT. A commit that fails after a file was written leaves an
 * unreferenced file behind (harmless: the next put of that body reuses
 * it).
 *
 * Calls: 0 and exactly one callback later, on the loop, never from inside
 * the call; or -1 with errno (EINVAL: bad arguments or a body over
 * max_size; ENOMEM; ESHUTDOWN) and no callback. Failures of PostgreSQL
 * keep their temporary/permanent status; file I/O errors are temporary;
 * a missing blob, a body whose SHA-256 does not match the given one, or a
 * stored body of another size are permanent.
 */
#ifndef POSTERN_STORE_BLOB_H
#define POSTERN_STORE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/hash.h"
#include "postern/store-status.h"

struct pn_loop;
struct pn_workpool;
struct store_pgpool;
struct store_blob;

/* stored: this put sent or wrote the bytes (false: they were there
 * already, only a reference was added). */
typedef void store_blob_put_cb(void *ctx, enum store_status status,
			       const uint8_t sha256[PN_SHA256_LEN], bool stored,
			       const char *error);
/* data/len: the body (valid during the call) on STORE_OK. */
typedef void store_blob_get_cb(void *ctx, enum store_status status, const void *data,
			       size_t len, const char *error);
/* freed: that was the last reference; the bytes are gone. */
typedef void store_blob_release_cb(void *ctx, enum store_status status, bool freed,
				   const char *error);
/* exists: the bytes are stored; refs: the reference count (0 if none). */
typedef void store_blob_exists_cb(void *ctx, enum store_status status, bool exists,
				  int64_t refs, const char *error);

/* A backend. The public functions below check arguments and dispatch. */
struct store_blob_ops {
	const char *name;	/* "pg", "dir" */
	bool external;		/* bytes outside mail_blobs.body */
	int (*put)(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		   const void *body, size_t len, store_blob_put_cb *cb, void *ctx);
	int (*get)(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		   store_blob_get_cb *cb, void *ctx);
	int (*release)(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		       store_blob_release_cb *cb, void *ctx);
	int (*exists)(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		      store_blob_exists_cb *cb, void *ctx);
	void (*destroy)(struct store_blob *b);
};

/* Every backend's object starts with this. */
struct store_blob {
	const struct store_blob_ops *ops;
	size_t max_size;
};

#define STORE_BLOB_MAX_SIZE_DEFAULT ((size_t)64 << 20)

struct store_blob_settings {
	size_t max_size;	/* largest body; default 64 MiB */
};

/* PostgreSQL backend on pool (which must outlive it). set may be NULL. */
struct store_blob *store_blob_pg_new(struct store_pgpool *pool,
				     const struct store_blob_settings *set,
				     const char **error_r);
/* Directory backend: files under dir (created if missing), file I/O on
 * workers, references through pool. loop, pool and workers must outlive
 * it. set may be NULL. */
struct store_blob *store_blob_dir_new(struct pn_loop *loop, struct store_pgpool *pool,
				      struct pn_workpool *workers, const char *dir,
				      const struct store_blob_settings *set,
				      const char **error_r);
/* Frees the backend and sets *b NULL. No operation may be pending. */
void store_blob_free(struct store_blob **b);

/* Stores body (copied) and takes one reference. sha256 NULL: computed
 * here; else it must be the body's SHA-256 (checked by the backend). */
int store_blob_put(struct store_blob *b, const uint8_t *sha256, const void *body,
		   size_t len, store_blob_put_cb *cb, void *ctx);
int store_blob_get(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		   store_blob_get_cb *cb, void *ctx);
/* Drops one reference; the last one deletes the bytes. */
int store_blob_release(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		       store_blob_release_cb *cb, void *ctx);
int store_blob_exists(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		      store_blob_exists_cb *cb, void *ctx);

/* The backend's name and whether its bytes are external. */
const char *store_blob_name(const struct store_blob *b);
bool store_blob_external(const struct store_blob *b);

#endif
