/* The directory blob backend (see postern/store-blob.h): bodies in files
 * named by their hex SHA-256 under two levels of fan-out folders
 * (DIR/ab/cd/abcd...), references in mail_blobs through the PostgreSQL
 * pool. Each operation is a small chain of steps: transaction steps on the
 * loop (pgpool callbacks) and one file step on a worker thread (write,
 * read, unlink or stat), whose completion is posted back to the loop.
 * Files are written to a temporary name in their folder, fsync'ed, renamed
 * and the folder fsync'ed, so a reader sees a whole body or none.
 */
#include "postern/store-blob.h"
#include "postern/log.h"
#include "postern/loop.h"
#include "postern/store-pgpool.h"
#include "postern/workpool.h"
#include "store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct blob_dir {
	struct store_blob base;
	struct pn_loop *loop;
	struct store_pgpool *pool;
	struct pn_workpool *workers;
	char *dir;
	atomic_uint tmp_seq;
};

enum dir_kind {
	DIR_PUT,
	DIR_GET,
	DIR_RELEASE,
	DIR_EXISTS,
};

struct dir_op {
	struct blob_dir *bd;
	enum dir_kind kind;
	union {
		store_blob_put_cb *put;
		store_blob_get_cb *get;
		store_blob_release_cb *release;
		store_blob_exists_cb *exists;
	} cb;
	void *ctx;
	uint8_t sha[PN_SHA256_LEN];
	char hex[PN_SHA256_HEX_LEN + 1];
	char size[24];
	struct store_pgtx *tx;
	/* put: the body; get: what was read */
	uint8_t *body;
	size_t len;
	/* worker results */
	int err;		/* errno of the file step, 0 if fine */
	const char *problem;	/* a permanent problem found by the worker */
	bool stored, freed, exists;
	int phase;		/* release: 0 to trash, 1 delete, 2 restore */
	unsigned int trash_seq;
	int64_t refs;
	/* outcome to report after a ROLLBACK */
	enum store_status st;
	char msg[200];
};

static const char sql_ref_ext[] = "SELECT blob_ref($1::bytea, $2::bigint, NULL, true, 1)";
static const char sql_unref[] = "SELECT blob_unref($1::bytea, 1)";
static const char sql_refs[] = "SELECT refcount FROM mail_blobs WHERE sha256 = $1::bytea";

/* ---- paths and file steps (worker threads) ---- */

/* DIR/ab/cd/<hex>; with tmp, DIR/ab/cd/.<hex>.tmp.<pid>.<n> (a file being
 * written), with -tmp DIR/ab/cd/.<hex>.del.<pid>.<n> (a file being
 * deleted). */
static int blob_path(const struct blob_dir *bd, const char *hex, int tmp,
		     char *buf, size_t size)
{
	int n;

	if (tmp != 0)
		n = snprintf(buf, size, "%s/%.2s/%.2s/.%s.%s.%ld.%d", bd->dir, hex, hex + 2,
			     hex, tmp > 0 ? "tmp" : "del", (long)getpid(), tmp > 0 ? tmp : -tmp);
	else
		n = snprintf(buf, size, "%s/%.2s/%.2s/%s", bd->dir, hex, hex + 2, hex);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* mkdir that accepts an existing folder; fsyncs the parent when it made
 * one, so the new entry survives a crash. */
static int make_dir(const char *path, const char *parent)
{
	if (mkdir(path, 0750) == 0)
		return fsync_dir(parent);
	return errno == EEXIST ? 0 : -1;
}

static int ensure_dirs(const struct blob_dir *bd, const char *hex)
{
	char l1[PATH_MAX], l2[PATH_MAX];

	if (snprintf(l1, sizeof(l1), "%s/%.2s", bd->dir, hex) >= (int)sizeof(l1) ||
	    snprintf(l2, sizeof(l2), "%s/%.2s/%.2s", bd->dir, hex, hex + 2) >= (int)sizeof(l2)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (make_dir(l1, bd->dir) < 0 || make_dir(l2, l1) < 0)
		return -1;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Verifies the body's hash, then writes the file unless it is there. */
static void work_put(struct dir_op *op)
{
	struct blob_dir *bd = op->bd;
	char path[PATH_MAX], tmp[PATH_MAX], folder[PATH_MAX];
	uint8_t sum[PN_SHA256_LEN];
	const char *error;
	struct stat st;
	int fd;

	if (pn_sha256(op->body, op->len, sum, &error) < 0) {
		op->err = ENOMEM;
		return;
	}
	if (memcmp(sum, op->sha, PN_SHA256_LEN) != 0) {
		op->problem = "body does not match its SHA-256";
		return;
	}
	if (blob_path(bd, op->hex, 0, path, sizeof(path)) < 0 ||
	    blob_path(bd, op->hex, (int)(atomic_fetch_add(&bd->tmp_seq, 1) % INT_MAX) + 1,
		      tmp, sizeof(tmp)) < 0) {
		op->err = ENAMETOOLONG;
		return;
	}
	if (stat(path, &st) == 0) {
		if ((uint64_t)st.st_size == op->len)
			return; /* deduplicated */
		/* a truncated leftover: replace it below */
	} else if (errno != ENOENT) {
		op->err = errno;
		return;
	}
	if (ensure_dirs(bd, op->hex) < 0) {
		op->err = errno;
		return;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		op->err = errno;
		return;
	}
	if (write_all(fd, op->body, op->len) < 0 || fsync(fd) < 0) {
		op->err = errno;
		close(fd);
		unlink(tmp);
		return;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		op->err = errno;
		unlink(tmp);
		return;
	}
	snprintf(folder, sizeof(folder), "%s/%.2s/%.2s", bd->dir, op->hex, op->hex + 2);
	if (fsync_dir(folder) < 0) {
		op->err = errno;
		return;
	}
	op->stored = true;
}

static void work_get(struct dir_op *op)
{
	char path[PATH_MAX];
	uint8_t sum[PN_SHA256_LEN];
	const char *error;
	struct stat st;
	size_t got = 0;
	int fd;

	if (blob_path(op->bd, op->hex, 0, path, sizeof(path)) < 0) {
		op->err = ENAMETOOLONG;
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			op->problem = "blob not found";
		else
			op->err = errno;
		return;
	}
	if (fstat(fd, &st) < 0) {
		op->err = errno;
		close(fd);
		return;
	}
	if ((uint64_t)st.st_size > op->bd->base.max_size) {
		op->problem = "stored blob is larger than the limit";
		close(fd);
		return;
	}
	op->body = malloc((size_t)st.st_size + 1);
	if (op->body == NULL) {
		op->err = ENOMEM;
		close(fd);
		return;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, op->body + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			op->err = n < 0 ? errno : EIO;
			close(fd);
			return;
		}
		got += (size_t)n;
	}
	close(fd);
	op->len = got;
	if (pn_sha256(op->body, op->len, sum, &error) < 0) {
		op->err = ENOMEM;
		return;
	}
	if (memcmp(sum, op->sha, PN_SHA256_LEN) != 0)
		op->problem = "stored blob is corrupt (SHA-256 mismatch)";
}

/* The last reference is going: inside the transaction the file moves
 * aside (phase 0); after COMMIT it is deleted (1), after a failed COMMIT
 * it moves back (2; the body is content-addressed, so replacing a file a
 * concurrent put wrote meanwhile changes nothing). */
static void work_release(struct dir_op *op)
{
	char path[PATH_MAX], trash[PATH_MAX], folder[PATH_MAX];
	int rc;

	if (blob_path(op->bd, op->hex, 0, path, sizeof(path)) < 0 ||
	    blob_path(op->bd, op->hex, -(int)op->trash_seq, trash, sizeof(trash)) < 0) {
		op->err = ENAMETOOLONG;
		return;
	}
	if (op->phase == 0)
		rc = rename(path, trash);
	else if (op->phase == 1)
		rc = unlink(trash);
	else
		rc = rename(trash, path);
	if (rc < 0) {
		if (errno != ENOENT)
			op->err = errno;
		return;
	}
	/* durability of the folder entry only: the rename itself stands, so
	 * an fsync failure must not make us roll back with the file moved */
	snprintf(folder, sizeof(folder), "%s/%.2s/%.2s", op->bd->dir, op->hex, op->hex + 2);
	fsync_dir(folder);
}

static void work_exists(struct dir_op *op)
{
	char path[PATH_MAX];
	struct stat st;

	if (blob_path(op->bd, op->hex, 0, path, sizeof(path)) < 0) {
		op->err = ENAMETOOLONG;
		return;
	}
	if (stat(path, &st) == 0)
		op->exists = true;
	else if (errno != ENOENT)
		op->err = errno;
}

static void work(void *ctx)
{
	struct dir_op *op = ctx;

	switch (op->kind) {
	case DIR_PUT:
		work_put(op);
		break;
	case DIR_GET:
		work_get(op);
		break;
	case DIR_RELEASE:
		work_release(op);
		break;
	case DIR_EXISTS:
		work_exists(op);
		break;
	}
}

/* ---- finishing (loop thread) ---- */

static void warn_blob(const struct dir_op *op, const char *what)
{
	pn_warn("event=blob_dir_problem blob=%s what=\"%s\" error=\"%s\"", op->hex, what,
		op->err != 0 ? strerror(op->err) : "");
}

static void op_free(struct dir_op *op)
{
	free(op->body);
	free(op);
}

static void finish(struct dir_op *op, enum store_status st, const char *msg)
{
	if (msg == NULL)
		msg = "";
	switch (op->kind) {
	case DIR_PUT:
		op->cb.put(op->ctx, st, op->sha, st == STORE_OK && op->stored, msg);
		break;
	case DIR_GET:
		op->cb.get(op->ctx, st, st == STORE_OK ? op->body : NULL,
			   st == STORE_OK ? op->len : 0, msg);
		break;
	case DIR_RELEASE:
		op->cb.release(op->ctx, st, st == STORE_OK && op->freed, msg);
		break;
	case DIR_EXISTS:
		op->cb.exists(op->ctx, st, st == STORE_OK && op->exists,
			      st == STORE_OK ? op->refs : 0, msg);
		break;
	}
	op_free(op);
}

static void finish_posted(void *ctx)
{
	struct dir_op *op = ctx;

	finish(op, op->st, op->msg);
}

static void rolled_back(void *ctx, struct store_pg_reply *r)
{
	struct dir_op *op = ctx;

	(void)r;
	finish(op, op->st, op->msg);
}

/* Ends the transaction with ROLLBACK, then reports st/msg. */
static void fail_tx(struct dir_op *op, enum store_status st, const char *msg)
{
	op->st = st;
	snprintf(op->msg, sizeof(op->msg), "%s", msg);
	if (op->tx == NULL || store_pgtx_rollback(&op->tx, rolled_back, op) < 0)
		finish(op, st, msg);
}

static void file_done(void *ctx);
static int run_worker(struct dir_op *op);

static void committed(void *ctx, struct store_pg_reply *r)
{
	struct dir_op *op = ctx;

	if (op->kind == DIR_RELEASE && op->freed) {
		/* delete the file set aside, or put it back */
		op->st = r->status;
		snprintf(op->msg, sizeof(op->msg), "%s", r->error);
		op->phase = r->status == STORE_OK ? 1 : 2;
		if (run_worker(op) == 0)
			return;
		if (r->status == STORE_OK)
			warn_blob(op, "left a file to delete");
		else
			warn_blob(op, "could not restore a file");
	}
	finish(op, r->status, r->error);
}

/* Hands the file step to a worker. */
static int run_worker(struct dir_op *op)
{
	op->err = 0;
	op->problem = NULL;
	return pn_workpool_submit(op->bd->workers, op->bd->loop, work, file_done, op);
}

static void file_done(void *ctx)
{
	struct dir_op *op = ctx;
	char msg[200];

	if (op->err != 0)
		snprintf(msg, sizeof(msg), "blob file %s: %s", op->hex, strerror(op->err));
	if (op->kind == DIR_RELEASE && op->phase != 0) {
		if (op->err != 0)
			warn_blob(op, op->phase == 1 ? "cannot delete a file set aside" :
				     "cannot restore a file set aside");
		finish(op, op->st, op->msg);
		return;
	}
	switch (op->kind) {
	case DIR_PUT:
	case DIR_RELEASE:
		if (op->problem != NULL)
			fail_tx(op, STORE_PERMANENT, op->problem);
		else if (op->err != 0)
			fail_tx(op, STORE_TEMPORARY, msg);
		else if (store_pgtx_commit(&op->tx, committed, op) < 0)
			fail_tx(op, STORE_TEMPORARY, "cannot commit");
		return;
	case DIR_GET:
	case DIR_EXISTS:
		if (op->problem != NULL)
			finish(op, STORE_PERMANENT, op->problem);
		else if (op->err != 0)
			finish(op, STORE_TEMPORARY, msg);
		else
			finish(op, STORE_OK, "");
		return;
	}
}

/* A step on the loop failed to hand over to a worker. */
static void worker_refused(struct dir_op *op, bool in_tx)
{
	const char *msg = errno == EAGAIN ? "blob workers busy" : "cannot queue blob file work";

	if (in_tx)
		fail_tx(op, STORE_TEMPORARY, msg);
	else
		finish(op, STORE_TEMPORARY, msg);
}

/* ---- the transaction steps ---- */

static int tx_sha_query(struct dir_op *op, const char *sql, int nparams, store_pg_cb *cb)
{
	const char *values[2] = { (const char *)op->sha, op->size };
	int lengths[2] = { PN_SHA256_LEN, 0 }, formats[2] = { 1, 0 };
	struct store_pg_query q = {
		.sql = sql, .nparams = nparams, .values = values, .lengths = lengths,
		.formats = formats,
	};

	if (op->tx != NULL)
		return store_pgtx_query(op->tx, &q, cb, op);
	return store_pgpool_query(op->bd->pool, &q, cb, op);
}

/* put: the reference is taken (row locked); now the file */
static void put_refd(void *ctx, struct store_pg_reply *r)
{
	struct dir_op *op = ctx;

	if (r->status != STORE_OK) {
		fail_tx(op, r->status, r->error);
		return;
	}
	if (run_worker(op) < 0)
		worker_refused(op, true);
}

/* release: the reference is dropped; the last one removes the file */
static void release_unrefd(void *ctx, struct store_pg_reply *r)
{
	struct dir_op *op = ctx;

	if (r->status != STORE_OK) {
		fail_tx(op, r->status, r->error);
		return;
	}
	op->freed = PQntuples(r->res) == 1 && strcmp(PQgetvalue(r->res, 0, 0), "t") == 0;
	if (!op->freed) {
		if (store_pgtx_commit(&op->tx, committed, op) < 0)
			fail_tx(op, STORE_TEMPORARY, "cannot commit");
		return;
	}
	op->trash_seq = (atomic_fetch_add(&op->bd->tmp_seq, 1) % INT_MAX) + 1;
	if (run_worker(op) < 0)
		worker_refused(op, true);
}

static void begun(void *ctx, struct store_pgtx *tx, struct store_pg_reply *r)
{
	struct dir_op *op = ctx;
	int rc;

	if (r->status != STORE_OK) {
		finish(op, r->status, r->error);
		return;
	}
	op->tx = tx;
	if (op->kind == DIR_PUT)
		rc = tx_sha_query(op, sql_ref_ext, 2, put_refd);
	else
		rc = tx_sha_query(op, sql_unref, 1, release_unrefd);
	if (rc < 0)
		fail_tx(op, STORE_TEMPORARY, "cannot send the statement");
}

static void exists_refs(void *ctx, struct store_pg_reply *r)
{
	struct dir_op *op = ctx;

	if (r->status != STORE_OK) {
		finish(op, r->status, r->error);
		return;
	}
	op->refs = PQntuples(r->res) == 1 ? strtoll(PQgetvalue(r->res, 0, 0), NULL, 10) : 0;
	if (run_worker(op) < 0)
		worker_refused(op, false);
}

/* ---- ops ---- */

static struct dir_op *op_new(struct blob_dir *bd, enum dir_kind kind,
			     const uint8_t sha256[PN_SHA256_LEN], void *ctx)
{
	struct dir_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->bd = bd;
	op->kind = kind;
	op->ctx = ctx;
	memcpy(op->sha, sha256, PN_SHA256_LEN);
	pn_hex_encode(op->sha, PN_SHA256_LEN, op->hex);
	return op;
}

static int dir_put(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN], const void *body,
		   size_t len, store_blob_put_cb *cb, void *ctx)
{
	struct blob_dir *bd = (struct blob_dir *)b;
	struct dir_op *op = op_new(bd, DIR_PUT, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.put = cb;
	op->body = malloc(len > 0 ? len : 1);
	if (op->body == NULL) {
		free(op);
		return -1;
	}
	memcpy(op->body, body, len);
	op->len = len;
	snprintf(op->size, sizeof(op->size), "%zu", len);
	if (store_pgtx_begin(bd->pool, NULL, begun, op) < 0) {
		op_free(op);
		return -1;
	}
	return 0;
}

static int dir_release(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		       store_blob_release_cb *cb, void *ctx)
{
	struct blob_dir *bd = (struct blob_dir *)b;
	struct dir_op *op = op_new(bd, DIR_RELEASE, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.release = cb;
	if (store_pgtx_begin(bd->pool, NULL, begun, op) < 0) {
		op_free(op);
		return -1;
	}
	return 0;
}

static int dir_get(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		   store_blob_get_cb *cb, void *ctx)
{
	struct blob_dir *bd = (struct blob_dir *)b;
	struct dir_op *op = op_new(bd, DIR_GET, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.get = cb;
	if (run_worker(op) < 0) {
		/* report it from the loop, not inside this call */
		op->st = STORE_TEMPORARY;
		snprintf(op->msg, sizeof(op->msg), "%s", errno == EAGAIN ?
			 "blob workers busy" : "cannot queue blob file work");
		if (pn_loop_post(bd->loop, finish_posted, op) < 0) {
			op_free(op);
			return -1;
		}
	}
	return 0;
}

static int dir_exists(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		      store_blob_exists_cb *cb, void *ctx)
{
	struct blob_dir *bd = (struct blob_dir *)b;
	struct dir_op *op = op_new(bd, DIR_EXISTS, sha256, ctx);

	if (op == NULL)
		return -1;
	op->cb.exists = cb;
	if (tx_sha_query(op, sql_refs, 1, exists_refs) < 0) {
		op_free(op);
		return -1;
	}
	return 0;
}

static void dir_destroy(struct store_blob *b)
{
	struct blob_dir *bd = (struct blob_dir *)b;

	free(bd->dir);
	free(bd);
}

static const struct store_blob_ops blob_dir_ops = {
	.name = "dir",
	.external = true,
	.put = dir_put,
	.get = dir_get,
	.release = dir_release,
	.exists = dir_exists,
	.destroy = dir_destroy,
};

struct store_blob *store_blob_dir_new(struct pn_loop *loop, struct store_pgpool *pool,
				      struct pn_workpool *workers, const char *dir,
				      const struct store_blob_settings *set,
				      const char **error_r)
{
	struct blob_dir *bd;
	size_t len = dir != NULL ? strlen(dir) : 0;

	if (loop == NULL || pool == NULL || workers == NULL || len == 0 ||
	    len > PATH_MAX - 2 * PN_SHA256_HEX_LEN) {
		store_error(error_r, "blob directory: bad arguments or folder name too long");
		return NULL;
	}
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		store_error(error_r, "blob directory %s: %s", dir, strerror(errno));
		return NULL;
	}
	bd = calloc(1, sizeof(*bd));
	if (bd == NULL || (bd->dir = strdup(dir)) == NULL) {
		free(bd);
		store_error(error_r, "out of memory");
		return NULL;
	}
	while (len > 1 && bd->dir[len - 1] == '/')
		bd->dir[--len] = '\0';
	bd->base.ops = &blob_dir_ops;
	bd->base.max_size = set != NULL && set->max_size != 0 ? set->max_size :
			    STORE_BLOB_MAX_SIZE_DEFAULT;
	bd->loop = loop;
	bd->pool = pool;
	bd->workers = workers;
	atomic_init(&bd->tmp_seq, 0);
	return &bd->base;
}
