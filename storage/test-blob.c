/* One suite of blob-store tests run against both backends: PostgreSQL
 * (mail_blobs.body) and a directory (files on a worker pool, references in
 * PostgreSQL). Put/get/exists/release, deduplication (one copy, reference
 * counting, freed after the last release), concurrent puts of one body, a
 * wrong SHA-256, unknown blobs, the empty body and the size limit. Needs
 * the harness' PostgreSQL (POSTERN_PG_DSN); applies the schema migrations
 * first (idempotent).
 */
#include "postern/store-blob.h"
#include "postern/store-migrate.h"
#include "postern/store-pg.h"
#include "postern/store-pgpool.h"
#include "postern/workpool.h"
#include "store-test.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>

static const char *dsn;
static char blob_dir[256];

struct env {
	struct pn_loop *loop;
	struct store_pgpool *pool;
	struct pn_workpool *workers;
	struct store_blob *blob;
	PGconn *sync;			/* to look at mail_blobs directly */
};

struct result {
	bool done;
	enum store_status status;
	bool flag;			/* stored, freed or exists */
	int64_t refs;
	char error[200];
	uint8_t sha[PN_SHA256_LEN];
	uint8_t *data;
	size_t len;
};

static void put_cb(void *ctx, enum store_status st, const uint8_t sha[PN_SHA256_LEN],
		   bool stored, const char *error)
{
	struct result *r = ctx;

	r->done = true;
	r->status = st;
	r->flag = stored;
	memcpy(r->sha, sha, PN_SHA256_LEN);
	snprintf(r->error, sizeof(r->error), "%s", error);
}

static void get_cb(void *ctx, enum store_status st, const void *data, size_t len,
		   const char *error)
{
	struct result *r = ctx;

	r->done = true;
	r->status = st;
	snprintf(r->error, sizeof(r->error), "%s", error);
	free(r->data);
	r->data = NULL;
	r->len = len;
	if (st == STORE_OK) {
		r->data = malloc(len + 1);
		memcpy(r->data, data, len);
	}
}

static void release_cb(void *ctx, enum store_status st, bool freed, const char *error)
{
	struct result *r = ctx;

	r->done = true;
	r->status = st;
	r->flag = freed;
	snprintf(r->error, sizeof(r->error), "%s", error);
}

static void exists_cb(void *ctx, enum store_status st, bool exists, int64_t refs,
		      const char *error)
{
	struct result *r = ctx;

	r->done = true;
	r->status = st;
	r->flag = exists;
	r->refs = refs;
	snprintf(r->error, sizeof(r->error), "%s", error);
}

static bool env_open(struct env *e, bool dir)
{
	struct store_pgpool_settings set = { .dsn = dsn, .max_conns = 4 };
	const char *error;

	memset(e, 0, sizeof(*e));
	e->loop = pn_loop_new(NULL, NULL);
	e->pool = store_pgpool_new(e->loop, &set, &error);
	CHECK(e->pool != NULL);
	if (dir) {
		e->workers = pn_workpool_new(2, 64, &error);
		CHECK(e->workers != NULL);
		e->blob = store_blob_dir_new(e->loop, e->pool, e->workers, blob_dir, NULL, &error);
	} else {
		e->blob = store_blob_pg_new(e->pool, NULL, &error);
	}
	if (e->blob == NULL)
		fprintf(stderr, "blob backend: %s\n", error);
	CHECK(e->blob != NULL);
	if (store_pg_connect(dsn, &e->sync, &error) < 0) {
		fprintf(stderr, "connect: %s\n", error);
		e->sync = NULL;
	}
	CHECK(e->sync != NULL);
	return e->blob != NULL && e->sync != NULL;
}

static void env_close(struct env *e)
{
	store_blob_free(&e->blob);
	CHECK(e->blob == NULL);
	store_pgpool_free(&e->pool);
	pn_workpool_free(&e->workers);
	store_pg_close(&e->sync);
	pn_loop_free(&e->loop);
}

/* mail_blobs rows for sha: -1 none, else refcount; *has_body_r. */
static int64_t row_refs(struct env *e, const uint8_t sha[PN_SHA256_LEN], bool *has_body_r)
{
	char hex[PN_SHA256_HEX_LEN + 1];
	const char *params[1] = { hex };
	const char *error;
	PGresult *res;
	int64_t refs = -1;

	pn_hex_encode(sha, PN_SHA256_LEN, hex);
	res = store_pg_exec(e->sync, "SELECT refcount, body IS NOT NULL FROM mail_blobs "
			    "WHERE sha256 = decode($1, 'hex')", 1, params, &error);
	CHECK(res != NULL);
	if (res == NULL)
		return -2;
	if (PQntuples(res) == 1) {
		refs = store_pg_int(res, 0, 0);
		if (has_body_r != NULL)
			*has_body_r = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	}
	PQclear(res);
	return refs;
}

static bool file_present(const uint8_t sha[PN_SHA256_LEN])
{
	char hex[PN_SHA256_HEX_LEN + 1], path[512];
	struct stat st;

	pn_hex_encode(sha, PN_SHA256_LEN, hex);
	snprintf(path, sizeof(path), "%s/%.2s/%.2s/%s", blob_dir, hex, hex + 2, hex);
	return stat(path, &st) == 0;
}

/* Files in the leaf folder of sha, temporary ones included. */
static int files_in_leaf(const uint8_t sha[PN_SHA256_LEN])
{
	char hex[PN_SHA256_HEX_LEN + 1], path[512];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	pn_hex_encode(sha, PN_SHA256_LEN, hex);
	snprintf(path, sizeof(path), "%s/%.2s/%.2s", blob_dir, hex, hex + 2);
	dir = opendir(path);
	if (dir == NULL)
		return 0;
	while ((d = readdir(dir)) != NULL)
		if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
			n++;
	closedir(dir);
	return n;
}

static void make_body(char *buf, size_t len, const char *tag)
{
	int n = snprintf(buf, len, "From: a@example.test\r\nSubject: %s %ld %llu\r\n\r\n",
			 tag, (long)getpid(), (unsigned long long)st_now_ms());

	for (size_t i = (size_t)n; i < len; i++)
		buf[i] = (char)('a' + i % 26);
}

static void run_put(struct env *e, const void *body, size_t len, const uint8_t *sha,
		    struct result *r)
{
	memset(r, 0, sizeof(*r));
	CHECK_INT(store_blob_put(e->blob, sha, body, len, put_cb, r), 0);
	CHECK(!r->done);
	CHECK(st_run_until(e->loop, &r->done, 5000));
}

static void run_exists(struct env *e, const uint8_t sha[PN_SHA256_LEN], struct result *r)
{
	memset(r, 0, sizeof(*r));
	CHECK_INT(store_blob_exists(e->blob, sha, exists_cb, r), 0);
	CHECK(st_run_until(e->loop, &r->done, 5000));
}

static void run_release(struct env *e, const uint8_t sha[PN_SHA256_LEN], struct result *r)
{
	memset(r, 0, sizeof(*r));
	CHECK_INT(store_blob_release(e->blob, sha, release_cb, r), 0);
	CHECK(st_run_until(e->loop, &r->done, 5000));
}

static void run_get(struct env *e, const uint8_t sha[PN_SHA256_LEN], struct result *r)
{
	free(r->data);
	memset(r, 0, sizeof(*r));
	CHECK_INT(store_blob_get(e->blob, sha, get_cb, r), 0);
	CHECK(!r->done);
	CHECK(st_run_until(e->loop, &r->done, 5000));
}

/* ---- the shared cases ---- */

static void case_dedup(bool dir)
{
	struct env e;
	static char body[200000];
	struct result r = { 0 }, g = { 0 };
	uint8_t sha[PN_SHA256_LEN];
	bool has_body = false;

	if (!env_open(&e, dir))
		goto out;
	make_body(body, sizeof(body), "dedup");
	CHECK_INT(pn_sha256(body, sizeof(body), sha, NULL), 0);

	/* first put stores the bytes */
	run_put(&e, body, sizeof(body), NULL, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(r.flag);
	CHECK_MEM(r.sha, PN_SHA256_LEN, sha, PN_SHA256_LEN);
	CHECK_INT(row_refs(&e, sha, &has_body), 1);
	CHECK(has_body == !dir);
	if (dir) {
		CHECK(file_present(sha));
		CHECK_INT(files_in_leaf(sha), 1); /* no temporary left */
	}
	run_exists(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(r.flag);
	CHECK_INT(r.refs, 1);
	run_get(&e, sha, &g);
	CHECK_INT(g.status, STORE_OK);
	CHECK_MEM(g.data, g.len, body, sizeof(body));

	/* the same body again (given its hash): one copy, two references */
	run_put(&e, body, sizeof(body), sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(!r.flag);
	CHECK_INT(row_refs(&e, sha, NULL), 2);
	if (dir)
		CHECK_INT(files_in_leaf(sha), 1);

	/* first release keeps it */
	run_release(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(!r.flag);
	run_exists(&e, sha, &r);
	CHECK(r.flag);
	CHECK_INT(r.refs, 1);
	run_get(&e, sha, &g);
	CHECK_INT(g.status, STORE_OK);

	/* the last one frees it */
	run_release(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(r.flag);
	CHECK_INT(row_refs(&e, sha, NULL), -1);
	if (dir) {
		CHECK(!file_present(sha));
		CHECK_INT(files_in_leaf(sha), 0);
	}
	run_exists(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(!r.flag);
	CHECK_INT(r.refs, 0);
	run_get(&e, sha, &g);
	CHECK_INT(g.status, STORE_PERMANENT);
	CHECK(strstr(g.error, "not found") != NULL);

	/* stored again after being freed */
	run_put(&e, body, sizeof(body), NULL, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(r.flag);
	run_release(&e, sha, &r);
	CHECK(r.flag);
	free(g.data);
out:
	env_close(&e);
}

static void case_concurrent(bool dir)
{
	struct env e;
	static char body[50000];
	enum { N = 6 };
	struct result r[N], x = { 0 };
	uint8_t sha[PN_SHA256_LEN];
	int stored = 0;

	if (!env_open(&e, dir))
		goto out;
	make_body(body, sizeof(body), "concurrent");
	pn_sha256(body, sizeof(body), sha, NULL);
	for (int i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		CHECK_INT(store_blob_put(e.blob, NULL, body, sizeof(body), put_cb, &r[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		CHECK(st_run_until(e.loop, &r[i].done, 8000));
		CHECK_INT(r[i].status, STORE_OK);
		if (r[i].flag)
			stored++;
	}
	CHECK(stored >= 1);
	if (dir) {
		/* the row lock serialises the puts: exactly one wrote */
		CHECK_INT(stored, 1);
		CHECK_INT(files_in_leaf(sha), 1);
	}
	CHECK_INT(row_refs(&e, sha, NULL), N);
	for (int i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		CHECK_INT(store_blob_release(e.blob, sha, release_cb, &r[i]), 0);
	}
	stored = 0;
	for (int i = 0; i < N; i++) {
		CHECK(st_run_until(e.loop, &r[i].done, 8000));
		CHECK_INT(r[i].status, STORE_OK);
		if (r[i].flag)
			stored++;
	}
	CHECK_INT(stored, 1); /* exactly one release was the last */
	run_exists(&e, sha, &x);
	CHECK(!x.flag);
	if (dir)
		CHECK_INT(files_in_leaf(sha), 0);
out:
	env_close(&e);
}

static void case_errors(bool dir)
{
	struct env e;
	char body[1000];
	struct result r = { 0 }, g = { 0 };
	uint8_t sha[PN_SHA256_LEN], wrong[PN_SHA256_LEN];

	if (!env_open(&e, dir))
		goto out;
	make_body(body, sizeof(body), "errors");
	pn_sha256(body, sizeof(body), sha, NULL);
	memcpy(wrong, sha, sizeof(wrong));
	wrong[0] ^= 0xff;
	/* a hash that is not the body's: refused, nothing stored */
	run_put(&e, body, sizeof(body), wrong, &r);
	CHECK_INT(r.status, STORE_PERMANENT);
	CHECK_INT(row_refs(&e, wrong, NULL), -1);
	if (dir)
		CHECK(!file_present(wrong));
	/* unknown blobs */
	run_get(&e, sha, &g);
	CHECK_INT(g.status, STORE_PERMANENT);
	run_exists(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(!r.flag);
	run_release(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	CHECK(!r.flag);
	/* the empty body is a body like any other */
	run_put(&e, "", 0, NULL, &r);
	CHECK_INT(r.status, STORE_OK);
	run_get(&e, r.sha, &g);
	CHECK_INT(g.status, STORE_OK);
	CHECK_INT(g.len, 0);
	memcpy(sha, r.sha, sizeof(sha));
	run_release(&e, sha, &r);
	CHECK_INT(r.status, STORE_OK);
	/* arguments */
	errno = 0;
	CHECK_INT(store_blob_put(e.blob, NULL, NULL, 5, put_cb, &r), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(store_blob_put(e.blob, NULL, body, STORE_BLOB_MAX_SIZE_DEFAULT + 1, put_cb, &r), -1);
	CHECK_INT(store_blob_get(e.blob, NULL, get_cb, &g), -1);
	CHECK_STR(store_blob_name(e.blob), dir ? "dir" : "pg");
	CHECK(store_blob_external(e.blob) == dir);
	free(g.data);
out:
	env_close(&e);
}

PN_TEST(test_pg_dedup) { case_dedup(false); }
PN_TEST(test_dir_dedup) { case_dedup(true); }
PN_TEST(test_pg_concurrent) { case_concurrent(false); }
PN_TEST(test_dir_concurrent) { case_concurrent(true); }
PN_TEST(test_pg_errors) { case_errors(false); }
PN_TEST(test_dir_errors) { case_errors(true); }

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int migrate(void)
{
	PGconn *c;
	const char *error;
	int from, to;

	if (store_pg_connect(dsn, &c, &error) < 0) {
		fprintf(stderr, "test-blob: %s\n", error);
		return -1;
	}
	if (store_migrate(c, &from, &to, &error) < 0) {
		fprintf(stderr, "test-blob: migrate: %s\n", error);
		store_pg_close(&c);
		return -1;
	}
	store_pg_close(&c);
	return 0;
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_pg_dedup),
		PN_TEST_CASE(test_dir_dedup),
		PN_TEST_CASE(test_pg_concurrent),
		PN_TEST_CASE(test_dir_concurrent),
		PN_TEST_CASE(test_pg_errors),
		PN_TEST_CASE(test_dir_errors),
	};
	int rc;

	dsn = getenv("POSTERN_PG_DSN");
	if (dsn == NULL)
		return pn_test_skip("test-blob", "POSTERN_PG_DSN not set (run tests/run)");
	if (migrate() < 0)
		return 1;
	snprintf(blob_dir, sizeof(blob_dir), "%s/postern-test-blob-XXXXXX",
		 getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(blob_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = pn_test_run("test-blob", cases, sizeof(cases) / sizeof(cases[0]));
	nftw(blob_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
