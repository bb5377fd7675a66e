/* The PostgreSQL blob backend (see postern/store-blob.h): bodies in
 * mail_blobs.body, references with the schema's blob_ref()/blob_unref().
 * A put first tries to add a reference without sending the body (one
 * short round trip when the body is already stored, the common case for a
 * message delivered to many recipients); only when the server answers
 * PN004 (not stored) does it send the body.
 */
#include "postern/store-blob.h"
#include "postern/store-pgpool.h"
#include "store-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct blob_pg {
	struct store_blob base;
	struct store_pgpool *pool;
};

static const char sql_ref[] = "SELECT blob_ref($1::bytea, $2::bigint, NULL, false, 1)";
static const char sql_store[] = "SELECT blob_ref($1::bytea, $2::bigint, $3::bytea, false, 1)";
static const char sql_get[] = "SELECT body FROM mail_blobs WHERE sha256 = $1::bytea";
static const char sql_unref[] = "SELECT blob_unref($1::bytea, 1)";
static const char sql_exists[] =
	"SELECT refcount FROM mail_blobs WHERE sha256 = $1::bytea AND body IS NOT NULL";

struct pg_op {
	struct blob_pg *bp;
	union {
		store_blob_put_cb *put;
		store_blob_get_cb *get;
		store_blob_release_cb *release;
		store_blob_exists_cb *exists;
	} cb;
	void *ctx;
	uint8_t sha[PN_SHA256_LEN];
	char size[24];
	size_t len;
	/* put: the body follows */
};

static int send_sha(struct blob_pg *bp, const char *sql, struct pg_op *op, int result_format,
		    store_pg_cb *cb)
{
	const char *values[1] = { (const char *)op->sha };
	int lengths[1] = { PN_SHA256_LEN }, formats[1] = { 1 };
	struct store_pg_query q = {
		.sql = sql, .nparams = 1, .values = values, .lengths = lengths,
		.formats = formats, .result_format = result_format,
	};

	return store_pgpool_query(bp->pool, &q, cb, op);
}

/* ---- put ---- */

static void put_stored(void *ctx, struct store_pg_reply *r)
{
	struct pg_op *op = ctx;

	op->cb.put(op->ctx, r->status, op->sha, r->status == STORE_OK, r->error);
	free(op);
}

static void put_refd(void *ctx, struct store_pg_reply *r)
{
	struct pg_op *op = ctx;
	const char *values[3] = { (const char *)op->sha, op->size, (const char *)(op + 1) };
	int lengths[3] = { PN_SHA256_LEN, 0, (int)op->len }, formats[3] = { 1, 0, 1 };
	struct store_pg_query q = {
		.sql = sql_store, .nparams = 3, .values = values, .lengths = lengths,
		.formats = formats,
	};

	if (r->status == STORE_OK) {
		/* deduplicated: only a reference was added */
		op->cb.put(op->ctx, STORE_OK, op->sha, false, "");
		free(op);
		return;
	}
	if (strcmp(r->sqlstate, "PN004") != 0) {
		op->cb.put(op->ctx, r->status, op->sha, false, r->error);
		free(op);
		return;
	}
	if (store_pgpool_query(op->bp->pool, &q, put_stored, op) < 0) {
		op->cb.put(op->ctx, STORE_TEMPORARY, op->sha, false, "cannot send the body");
		free(op);
	}
}

static int pg_put(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN], const void *body,
		  size_t len, store_blob_put_cb *cb, void *ctx)
{
	struct blob_pg *bp = (struct blob_pg *)b;
	const char *values[2];
	int lengths[2] = { PN_SHA256_LEN, 0 }, formats[2] = { 1, 0 };
	struct store_pg_query q = {
		.sql = sql_ref, .nparams = 2, .values = values, .lengths = lengths,
		.formats = formats,
	};
	struct pg_op *op;

	if (len > (size_t)INT32_MAX) {
		errno = EINVAL;
		return -1;
	}
	op = malloc(sizeof(*op) + len);
	if (op == NULL)
		return -1;
	memset(op, 0, sizeof(*op));
	op->bp = bp;
	op->cb.put = cb;
	op->ctx = ctx;
	memcpy(op->sha, sha256, PN_SHA256_LEN);
	snprintf(op->size, sizeof(op->size), "%zu", len);
	memcpy(op + 1, body, len);
	op->len = len;
	values[0] = (const char *)op->sha;
	values[1] = op->size;
	if (store_pgpool_query(bp->pool, &q, put_refd, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

/* ---- get, release, exists ---- */

static struct pg_op *op_new(struct blob_pg *bp, const uint8_t sha256[PN_SHA256_LEN], void *ctx)
{
	struct pg_op *op = calloc(1, sizeof(*op));

	if (op != NULL) {
		op->bp = bp;
		op->ctx = ctx;
		memcpy(op->sha, sha256, PN_SHA256_LEN);
	}
	return op;
}

static void get_done(void *ctx, struct store_pg_reply *r)
{
	struct pg_op *op = ctx;

	if (r->status != STORE_OK)
		op->cb.get(op->ctx, r->status, NULL, 0, r->error);
	else if (PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, 0))
		op->cb.get(op->ctx, STORE_PERMANENT, NULL, 0, "blob not found");
	else
		op->cb.get(op->ctx, STORE_OK, PQgetvalue(r->res, 0, 0),
			   (size_t)PQgetlength(r->res, 0, 0), "");
	free(op);
}

static int pg_get(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		  store_blob_get_cb *cb, void *ctx)
{
	struct blob_pg *bp = (struct blob_pg *)b;
	struct pg_op *op = op_new(bp, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.get = cb;
	if (send_sha(bp, sql_get, op, 1, get_done) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

static void release_done(void *ctx, struct store_pg_reply *r)
{
	struct pg_op *op = ctx;
	bool freed = r->status == STORE_OK && PQntuples(r->res) == 1 &&
		     strcmp(PQgetvalue(r->res, 0, 0), "t") == 0;

	op->cb.release(op->ctx, r->status, freed, r->error);
	free(op);
}

static int pg_release(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		      store_blob_release_cb *cb, void *ctx)
{
	struct blob_pg *bp = (struct blob_pg *)b;
	struct pg_op *op = op_new(bp, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.release = cb;
	if (send_sha(bp, sql_unref, op, 0, release_done) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

static void exists_done(void *ctx, struct store_pg_reply *r)
{
	struct pg_op *op = ctx;
	int64_t refs = 0;

	if (r->status == STORE_OK && PQntuples(r->res) == 1)
		refs = strtoll(PQgetvalue(r->res, 0, 0), NULL, 10);
	op->cb.exists(op->ctx, r->status, refs > 0, refs, r->error);
	free(op);
}

static int pg_exists(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		     store_blob_exists_cb *cb, void *ctx)
{
	struct blob_pg *bp = (struct blob_pg *)b;
	struct pg_op *op = op_new(bp, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.exists = cb;
	if (send_sha(bp, sql_exists, op, 0, exists_done) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

static void pg_destroy(struct store_blob *b)
{
	free(b);
}

static const struct store_blob_ops blob_pg_ops = {
	.name = "pg",
	.external = false,
	.put = pg_put,
	.get = pg_get,
	.release = pg_release,
	.exists = pg_exists,
	.destroy = pg_destroy,
};

struct store_blob *store_blob_pg_new(struct store_pgpool *pool,
				     const struct store_blob_settings *set,
				     const char **error_r)
{
	struct blob_pg *bp;

	if (pool == NULL) {
		store_error(error_r, "blob store: no PostgreSQL pool");
		return NULL;
	}
	bp = calloc(1, sizeof(*bp));
	if (bp == NULL) {
		store_error(error_r, "out of memory");
		return NULL;
	}
	bp->base.ops = &blob_pg_ops;
	bp->base.max_size = set != NULL && set->max_size != 0 ? set->max_size :
			    STORE_BLOB_MAX_SIZE_DEFAULT;
	bp->pool = pool;
	return &bp->base;
}
