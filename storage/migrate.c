/* Applies the embedded schema migrations (see postern/store-migrate.h). */
#include "postern/store-migrate.h"
#include "postern/store-pg.h"
#include "store-private.h"

#include <stdio.h>
#include <stdlib.h>

/* pg_advisory_lock key taken while migrating: "Postern" in ASCII. */
#define STORE_MIGRATE_LOCK "22640539801580142"

int store_migrate_latest(void)
{
	return store_migrations_count == 0 ? 0 :
		store_migrations[store_migrations_count - 1].version;
}

static int read_version(PGconn *conn, int *version_r, const char **error_r)
{
	PGresult *res = store_pg_exec(conn,
		"SELECT coalesce(max(version), 0) FROM schema_version", 0, NULL, error_r);

	if (res == NULL)
		return -1;
	*version_r = (int)store_pg_int(res, 0, 0);
	PQclear(res);
	return 0;
}

int store_schema_version(PGconn *conn, int *version_r, const char **error_r)
{
	PGresult *res = store_pg_exec(conn,
		"SELECT to_regclass('schema_version') IS NOT NULL", 0, NULL, error_r);
	int exists;

	if (res == NULL)
		return -1;
	exists = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!exists) {
		*version_r = 0;
		return 0;
	}
	return read_version(conn, version_r, error_r);
}

static int migrate_locked(PGconn *conn, int *from_r, int *to_r, const char **error_r)
{
	int version;

	if (store_pg_command(conn,
		"CREATE TABLE IF NOT EXISTS schema_version ("
		" version integer PRIMARY KEY,"
		" name text NOT NULL,"
		" applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL, error_r) < 0)
		return -1;
	if (read_version(conn, &version, error_r) < 0)
		return -1;
	*from_r = version;
	*to_r = version;
	if (version > store_migrate_latest())
		return store_error(error_r,
			"database schema version %d is newer than this build knows (%d): "
			"use a newer posternctl", version, store_migrate_latest());
	for (size_t i = 0; i < store_migrations_count; i++) {
		const struct store_migration *m = &store_migrations[i];
		char vbuf[16];
		const char *params[2] = { vbuf, m->name };

		if (m->version <= version)
			continue;
		snprintf(vbuf, sizeof(vbuf), "%d", m->version);
		if (store_pg_begin(conn, error_r) < 0)
			return -1;
		if (store_pg_script(conn, m->sql, error_r) < 0 ||
		    store_pg_command(conn,
			"INSERT INTO schema_version (version, name) VALUES ($1, $2)",
			2, params, error_r) < 0) {
			char why[STORE_ERROR_MAX];

			snprintf(why, sizeof(why), "%s", *error_r);
			store_pg_rollback(conn);
			return store_error(error_r, "migration %s failed: %s", m->name, why);
		}
		if (store_pg_commit(conn, error_r) < 0)
			return -1;
		*to_r = m->version;
	}
	return 0;
}

int store_migrate(PGconn *conn, int *from_r, int *to_r, const char **error_r)
{
	const char *unlock_err;
	int ret;

	if (store_pg_command(conn, "SELECT pg_advisory_lock(" STORE_MIGRATE_LOCK ")",
			     0, NULL, error_r) < 0)
		return -1;
	ret = migrate_locked(conn, from_r, to_r, error_r);
	/* On failure keep the first error; the unlock's own is secondary. */
	if (store_pg_command(conn, "SELECT pg_advisory_unlock(" STORE_MIGRATE_LOCK ")",
			     0, NULL, ret < 0 ? &unlock_err : error_r) < 0 && ret == 0)
		ret = -1;
	return ret;
}
