/* Schema migrations: storage/sql/NNN_name.sql, embedded into the library
 * at build time (storage/embed-sql.cmake), applied in order.
 *
 * The database records what it has in schema_version(version, name,
 * applied_at), a table the migrator creates itself. Each migration runs in
 * its own transaction together with its schema_version row, so a failed
 * migration leaves the database at the previous version. A session-level
 * advisory lock makes concurrent migrators (several nodes starting at once)
 * wait for each other. Objects go into the first schema of search_path.
 *
 * Synchronous libpq: tools, tests and daemon start-up only, never a loop
 * thread.
 */
#ifndef POSTERN_STORE_MIGRATE_H
#define POSTERN_STORE_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

struct store_migration {
	int version;       /* 1, 2, ... from the file name's NNN */
	const char *name;  /* "001_initial" */
	const char *sql;   /* the file's text */
};

/* Generated at build time, ordered by version, numbered 1..count. */
extern const struct store_migration store_migrations[];
extern const size_t store_migrations_count;

/* Highest version this build knows. */
int store_migrate_latest(void);

/* Reads the database's schema version (0 when nothing was applied).
 * Returns 0 or -1 with *error_r. */
int store_schema_version(PGconn *conn, int *version_r, const char **error_r);

/* Applies every migration newer than the database's version. Sets *from_r
 * and *to_r to the versions before and after. Refuses (-1, nothing done) a
 * database whose version is newer than store_migrate_latest(). Idempotent:
 * a second run applies nothing. Returns 0 or -1 with *error_r. */
int store_migrate(PGconn *conn, int *from_r, int *to_r, const char **error_r);

#endif
