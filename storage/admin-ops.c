/* Tenants, domains, accounts and aliases for posternctl and tests (see
 * postern/store-admin.h). Each public function is one transaction over
 * synchronous libpq; SQL errors are turned into one-line messages. */
#include "postern/store-admin.h"
#include "postern/store-address.h"
#include "postern/store-password.h"
#include "postern/store-pg.h"
#include "store-admin-private.h"
#include "store-private.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SQLSTATE_UNIQUE "23505"

const char *store_num_param(struct num_param_buf *b, int64_t v)
{
	if (v < 0)
		return NULL;
	snprintf(b->buf, sizeof(b->buf), "%" PRId64, v);
	return b->buf;
}

int store_tx_end(PGconn *conn, int ret, const char **error_r)
{
	if (ret < 0) {
		store_pg_rollback(conn);
		return -1;
	}
	return store_pg_commit(conn, error_r);
}

static int tenant_name_check(const char *name, const char **error_r)
{
	char clean[80];
	size_t len = strlen(name);

	if (len == 0 || len > STORE_TENANT_NAME_MAX)
		return store_error(error_r, "tenant name must be 1-%d characters",
				   STORE_TENANT_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return store_error(error_r, "malformed tenant name '%s' "
					   "(letters, digits, '.', '_', '-')",
					   store_clean(clean, sizeof(clean), name));
	}
	return 0;
}

int store_lookup_tenant(PGconn *conn, const char *name, bool lock, int64_t *id_r,
			const char **error_r)
{
	const char *params[1] = { name };
	PGresult *res;
	char clean[80];

	if (tenant_name_check(name, error_r) < 0)
		return -1;
	res = store_pg_exec(conn, lock ?
		"SELECT id FROM tenants WHERE lower(name) = lower($1) FOR UPDATE" :
		"SELECT id FROM tenants WHERE lower(name) = lower($1)",
		1, params, error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return store_error(error_r, "unknown tenant '%s'",
				   store_clean(clean, sizeof(clean), name));
	}
	*id_r = store_pg_int(res, 0, 0);
	PQclear(res);
	return 0;
}

/* domain must already be lower-case and valid. Returns 1 found, 0 not
 * found, -1 error. */
int store_find_domain(PGconn *conn, const char *domain, bool lock, int64_t *id_r,
		      int64_t *tenant_id_r, const char **error_r)
{
	const char *params[1] = { domain };
	PGresult *res = store_pg_exec(conn, lock ?
		"SELECT id, tenant_id FROM domains WHERE name = $1 FOR UPDATE" :
		"SELECT id, tenant_id FROM domains WHERE name = $1",
		1, params, error_r);
	int found;

	if (res == NULL)
		return -1;
	found = PQntuples(res) > 0;
	if (found) {
		*id_r = store_pg_int(res, 0, 0);
		*tenant_id_r = store_pg_int(res, 0, 1);
	}
	PQclear(res);
	return found;
}

static int lookup_domain(PGconn *conn, const char *name, bool lock, char *canon,
			 int64_t *id_r, int64_t *tenant_id_r, const char **error_r)
{
	char clean[80];
	const char *why;
	int rc;

	if (store_domain_parse(name, canon, STORE_DOMAIN_MAX + 1, &why) < 0)
		return store_error(error_r, "malformed domain '%s': %s",
				   store_clean(clean, sizeof(clean), name), why);
	rc = store_find_domain(conn, canon, lock, id_r, tenant_id_r, error_r);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return store_error(error_r, "unknown domain '%s'", canon);
	return 0;
}

/* The optional tenant and domain filters of the list commands as query
 * parameters $1 (tenant id) and $2 (domain id); NULL where not given. */
static int list_filter(PGconn *conn, const char *tenant, const char *domain,
		       struct num_param_buf *b1, struct num_param_buf *b2,
		       const char *params[2], const char **error_r)
{
	char canon[STORE_DOMAIN_MAX + 1];
	int64_t tid, did, dtid;

	params[0] = params[1] = NULL;
	if (tenant != NULL) {
		if (store_lookup_tenant(conn, tenant, false, &tid, error_r) < 0)
			return -1;
		params[0] = store_num_param(b1, tid);
	}
	if (domain != NULL) {
		if (lookup_domain(conn, domain, false, canon, &did, &dtid, error_r) < 0)
			return -1;
		params[1] = store_num_param(b2, did);
	}
	return 0;
}

int store_parse_address_arg(const char *address, struct store_address *addr_r,
			    char *canon, size_t canon_size, const char **error_r)
{
	char clean[80];
	const char *why;

	if (store_address_parse(address, addr_r, &why) < 0)
		return store_error(error_r, "malformed address '%s': %s",
				   store_clean(clean, sizeof(clean), address), why);
	snprintf(canon, canon_size, "%s@%s", addr_r->local, addr_r->domain);
	return 0;
}

/* Finds an account by address (locked FOR UPDATE when lock). */
static int lookup_account(PGconn *conn, const char *address, bool lock,
			  int64_t *id_r, const char **error_r)
{
	struct store_address addr;
	char canon[STORE_ADDRESS_BUF];
	const char *params[1] = { canon };
	PGresult *res;

	if (store_parse_address_arg(address, &addr, canon, sizeof(canon), error_r) < 0)
		return -1;
	res = store_pg_exec(conn, lock ?
		"SELECT id FROM accounts WHERE lower(address) = lower($1) FOR UPDATE" :
		"SELECT id FROM accounts WHERE lower(address) = lower($1)",
		1, params, error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return store_error(error_r, "unknown account '%s'", canon);
	}
	*id_r = store_pg_int(res, 0, 0);
	PQclear(res);
	return 0;
}

/* ---- tenants ---- */

static int tenant_add(PGconn *conn, const char *name, int64_t qb, int64_t qm,
		      const char **error_r)
{
	struct num_param_buf b1, b2;
	const char *params[3] = { name, store_num_param(&b1, qb), store_num_param(&b2, qm) };
	const char *p1[1] = { name };
	PGresult *res;
	char clean[80];

	if (tenant_name_check(name, error_r) < 0)
		return -1;
	res = store_pg_exec(conn, "SELECT 1 FROM tenants WHERE lower(name) = lower($1)",
			    1, p1, error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0) {
		PQclear(res);
		return store_error(error_r, "tenant '%s' already exists",
				   store_clean(clean, sizeof(clean), name));
	}
	PQclear(res);
	if (store_pg_command(conn,
		"INSERT INTO tenants (name, quota_bytes, quota_messages) VALUES ($1, $2, $3)",
		3, params, error_r) < 0) {
		if (strcmp(store_pg_last_sqlstate(), SQLSTATE_UNIQUE) == 0)
			return store_error(error_r, "tenant '%s' already exists",
					   store_clean(clean, sizeof(clean), name));
		return -1;
	}
	return 0;
}

int store_tenant_add(PGconn *conn, const char *name, int64_t quota_bytes,
		     int64_t quota_messages, const char **error_r)
{
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, tenant_add(conn, name, quota_bytes, quota_messages,
					     error_r), error_r);
}

/* Runs a statement calling delete_account() for the accounts it selects
 * with $1 = arg. */
static int delete_accounts(PGconn *conn, const char *sql, const char *arg,
			   const char **error_r)
{
	const char *params[1] = { arg };

	return store_pg_command(conn, sql, 1, params, error_r);
}

static int tenant_remove(PGconn *conn, const char *name, bool force,
			 const char **error_r)
{
	struct num_param_buf b;
	int64_t id, ndomains;
	const char *params[1];
	PGresult *res;
	char clean[80];

	if (store_lookup_tenant(conn, name, true, &id, error_r) < 0)
		return -1;
	params[0] = store_num_param(&b, id);
	res = store_pg_exec(conn, "SELECT count(*) FROM domains WHERE tenant_id = $1",
			    1, params, error_r);
	if (res == NULL)
		return -1;
	ndomains = store_pg_int(res, 0, 0);
	PQclear(res);
	if (ndomains > 0 && !force)
		return store_error(error_r, "tenant '%s' still has %" PRId64 " domain%s "
				   "(remove them first or use --force)",
				   store_clean(clean, sizeof(clean), name), ndomains,
				   ndomains == 1 ? "" : "s");
	if (delete_accounts(conn,
		"SELECT delete_account(id) FROM (SELECT id FROM accounts"
		" WHERE tenant_id = $1 ORDER BY id) AS a", params[0], error_r) < 0 ||
	    store_pg_command(conn, "DELETE FROM aliases WHERE tenant_id = $1",
			     1, params, error_r) < 0 ||
	    store_pg_command(conn, "DELETE FROM domains WHERE tenant_id = $1",
			     1, params, error_r) < 0 ||
	    store_pg_command(conn,
		"SELECT outbound_finish(id) FROM (SELECT id FROM outbound_queue"
		" WHERE tenant_id = $1 ORDER BY id) AS q", 1, params, error_r) < 0 ||
	    store_pg_command(conn, "DELETE FROM tenants WHERE id = $1",
			     1, params, error_r) < 0)
		return -1;
	return 0;
}

int store_tenant_remove(PGconn *conn, const char *name, bool force,
			const char **error_r)
{
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, tenant_remove(conn, name, force, error_r), error_r);
}

int store_tenant_list(PGconn *conn, store_tenant_cb *cb, void *ctx,
		      const char **error_r)
{
	PGresult *res = store_pg_exec(conn,
		"SELECT t.id, t.name, t.quota_bytes, t.quota_messages,"
		" (SELECT count(*) FROM domains d WHERE d.tenant_id = t.id),"
		" (SELECT count(*) FROM accounts a WHERE a.tenant_id = t.id),"
		" coalesce(u.bytes, 0), coalesce(u.messages, 0)"
		" FROM tenants t LEFT JOIN tenant_usage_total u ON u.tenant_id = t.id"
		" ORDER BY lower(t.name)", 0, NULL, error_r);

	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_tenant_info t = {
			.id = store_pg_int(res, i, 0),
			.name = PQgetvalue(res, i, 1),
			.quota_bytes = store_pg_int(res, i, 2),
			.quota_messages = store_pg_int(res, i, 3),
			.domains = store_pg_int(res, i, 4),
			.accounts = store_pg_int(res, i, 5),
			.used_bytes = store_pg_int(res, i, 6),
			.used_messages = store_pg_int(res, i, 7),
		};
		cb(&t, ctx);
	}
	PQclear(res);
	return 0;
}

/* ---- domains ---- */

static int domain_add(PGconn *conn, const char *domain, const char *tenant,
		      const char **error_r)
{
	char canon[STORE_DOMAIN_MAX + 1], clean[80];
	struct num_param_buf b;
	int64_t tid, did, dtid;
	const char *why;
	const char *params[2];
	int rc;

	if (store_domain_parse(domain, canon, sizeof(canon), &why) < 0)
		return store_error(error_r, "malformed domain '%s': %s",
				   store_clean(clean, sizeof(clean), domain), why);
	if (store_lookup_tenant(conn, tenant, false, &tid, error_r) < 0)
		return -1;
	rc = store_find_domain(conn, canon, false, &did, &dtid, error_r);
	if (rc < 0)
		return -1;
	if (rc > 0)
		return store_error(error_r, "domain '%s' already exists", canon);
	params[0] = store_num_param(&b, tid);
	params[1] = canon;
	if (store_pg_command(conn, "INSERT INTO domains (tenant_id, name) VALUES ($1, $2)",
			     2, params, error_r) < 0) {
		if (strcmp(store_pg_last_sqlstate(), SQLSTATE_UNIQUE) == 0)
			return store_error(error_r, "domain '%s' already exists", canon);
		return -1;
	}
	return 0;
}

int store_domain_add(PGconn *conn, const char *domain, const char *tenant,
		     const char **error_r)
{
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, domain_add(conn, domain, tenant, error_r), error_r);
}

static int domain_remove(PGconn *conn, const char *domain, bool force,
			 const char **error_r)
{
	char canon[STORE_DOMAIN_MAX + 1];
	struct num_param_buf b;
	int64_t id, tid, naccounts;
	const char *params[1];
	PGresult *res;

	if (lookup_domain(conn, domain, true, canon, &id, &tid, error_r) < 0)
		return -1;
	params[0] = store_num_param(&b, id);
	res = store_pg_exec(conn, "SELECT count(*) FROM accounts WHERE domain_id = $1",
			    1, params, error_r);
	if (res == NULL)
		return -1;
	naccounts = store_pg_int(res, 0, 0);
	PQclear(res);
	if (naccounts > 0 && !force)
		return store_error(error_r, "domain '%s' still has %" PRId64 " account%s "
				   "(remove them first or use --force)", canon, naccounts,
				   naccounts == 1 ? "" : "s");
	if (delete_accounts(conn,
		"SELECT delete_account(id) FROM (SELECT id FROM accounts"
		" WHERE domain_id = $1 ORDER BY id) AS a", params[0], error_r) < 0 ||
	    store_pg_command(conn, "DELETE FROM aliases WHERE domain_id = $1",
			     1, params, error_r) < 0 ||
	    store_pg_command(conn, "DELETE FROM domains WHERE id = $1",
			     1, params, error_r) < 0)
		return -1;
	return 0;
}

int store_domain_remove(PGconn *conn, const char *domain, bool force,
			const char **error_r)
{
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, domain_remove(conn, domain, force, error_r), error_r);
}

int store_domain_list(PGconn *conn, const char *tenant, store_domain_cb *cb,
		      void *ctx, const char **error_r)
{
	struct num_param_buf b;
	const char *params[1] = { NULL };
	int64_t tid;
	PGresult *res;

	if (tenant != NULL) {
		if (store_lookup_tenant(conn, tenant, false, &tid, error_r) < 0)
			return -1;
		params[0] = store_num_param(&b, tid);
	}
	res = store_pg_exec(conn,
		"SELECT d.id, d.name, t.name,"
		" (SELECT count(*) FROM accounts a WHERE a.domain_id = d.id),"
		" (SELECT count(DISTINCT lower(al.source)) FROM aliases al"
		"  WHERE al.domain_id = d.id)"
		" FROM domains d JOIN tenants t ON t.id = d.tenant_id"
		" WHERE $1::bigint IS NULL OR d.tenant_id = $1"
		" ORDER BY d.name", 1, params, error_r);
	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_domain_info d = {
			.id = store_pg_int(res, i, 0),
			.name = PQgetvalue(res, i, 1),
			.tenant = PQgetvalue(res, i, 2),
			.accounts = store_pg_int(res, i, 3),
			.aliases = store_pg_int(res, i, 4),
		};
		cb(&d, ctx);
	}
	PQclear(res);
	return 0;
}

/* ---- accounts ---- */

int store_insert_account(PGconn *conn, const struct store_address *addr,
			 int64_t domain_id, int64_t tenant_id, const char *hash,
			 int64_t quota_bytes, int64_t quota_messages, bool enabled,
			 const char **error_r)
{
	char canon[STORE_ADDRESS_BUF];
	struct num_param_buf b1, b2, b3, b4;
	const char *p1[1] = { canon };
	const char *params[7] = {
		store_num_param(&b1, tenant_id), store_num_param(&b2, domain_id),
		addr->local, hash, enabled ? "true" : "false",
		store_num_param(&b3, quota_bytes), store_num_param(&b4, quota_messages),
	};
	PGresult *res;

	snprintf(canon, sizeof(canon), "%s@%s", addr->local, addr->domain);
	res = store_pg_exec(conn, "SELECT 1 FROM accounts WHERE lower(address) = lower($1)",
			    1, p1, error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0) {
		PQclear(res);
		return store_error(error_r, "account '%s' already exists", canon);
	}
	PQclear(res);
	if (store_pg_command(conn,
		"INSERT INTO accounts (tenant_id, domain_id, local_part, password_hash,"
		" enabled, quota_bytes, quota_messages) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		7, params, error_r) < 0) {
		if (strcmp(store_pg_last_sqlstate(), SQLSTATE_UNIQUE) == 0)
			return store_error(error_r, "account '%s' already exists", canon);
		return -1;
	}
	return 0;
}

static int user_add(PGconn *conn, const char *address, const char *hash,
		    const struct store_user_params *p, const char **error_r)
{
	struct store_address addr;
	char canon[STORE_ADDRESS_BUF];
	int64_t did, tid;
	int rc;

	if (store_parse_address_arg(address, &addr, canon, sizeof(canon), error_r) < 0)
		return -1;
	rc = store_find_domain(conn, addr.domain, false, &did, &tid, error_r);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return store_error(error_r, "unknown domain '%s'", addr.domain);
	return store_insert_account(conn, &addr, did, tid, hash, p->quota_bytes,
				    p->quota_messages, !p->disabled, error_r);
}

int store_user_add(PGconn *conn, const char *address,
		   const struct store_user_params *p, const char **error_r)
{
	char hash[STORE_PASSWORD_HASH_MAX];
	struct store_address addr;
	char canon[STORE_ADDRESS_BUF];
	const char *stored;
	const char *why;

	/* Cheap checks before the expensive hash. */
	if (store_parse_address_arg(address, &addr, canon, sizeof(canon), error_r) < 0)
		return -1;
	if ((p->password == NULL) == (p->password_hash == NULL))
		return store_error(error_r, "a password (or a password hash) is required");
	if (p->password != NULL) {
		if (store_password_hash(p->password, hash, sizeof(hash), &why) < 0)
			return store_error(error_r, "cannot hash the password: %s", why);
		stored = hash;
	} else {
		if (store_password_check_format(p->password_hash, &why) < 0)
			return store_error(error_r, "bad password hash: %s", why);
		stored = p->password_hash;
	}
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, user_add(conn, address, stored, p, error_r), error_r);
}

/* Runs `sql` with ($1 = account id, $2, $3 = extra) on the account named by
 * address, inside a transaction. */
static int account_update(PGconn *conn, const char *address, const char *sql,
			  int nextra, const char *extra1, const char *extra2,
			  const char **error_r)
{
	struct num_param_buf b;
	const char *params[3];
	int64_t id;
	int ret;

	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	ret = lookup_account(conn, address, true, &id, error_r);
	if (ret == 0) {
		params[0] = store_num_param(&b, id);
		params[1] = extra1;
		params[2] = extra2;
		ret = store_pg_command(conn, sql, 1 + nextra, params, error_r);
	}
	return store_tx_end(conn, ret, error_r);
}

int store_user_set_password(PGconn *conn, const char *address,
			    const char *password, const char **error_r)
{
	char hash[STORE_PASSWORD_HASH_MAX];
	struct store_address addr;
	char canon[STORE_ADDRESS_BUF];
	const char *why;

	if (store_parse_address_arg(address, &addr, canon, sizeof(canon), error_r) < 0)
		return -1;
	if (store_password_hash(password, hash, sizeof(hash), &why) < 0)
		return store_error(error_r, "cannot hash the password: %s", why);
	return account_update(conn, address,
			      "UPDATE accounts SET password_hash = $2 WHERE id = $1",
			      1, hash, NULL, error_r);
}

int store_user_set_quota(PGconn *conn, const char *address, int64_t quota_bytes,
			 bool set_messages, int64_t quota_messages,
			 const char **error_r)
{
	struct num_param_buf b1, b2;

	if (set_messages)
		return account_update(conn, address,
			"UPDATE accounts SET quota_bytes = $2, quota_messages = $3 WHERE id = $1",
			2, store_num_param(&b1, quota_bytes),
			store_num_param(&b2, quota_messages), error_r);
	return account_update(conn, address,
			      "UPDATE accounts SET quota_bytes = $2 WHERE id = $1",
			      1, store_num_param(&b1, quota_bytes), NULL, error_r);
}

int store_user_set_enabled(PGconn *conn, const char *address, bool enabled,
			   const char **error_r)
{
	return account_update(conn, address,
			      "UPDATE accounts SET enabled = $2 WHERE id = $1",
			      1, enabled ? "true" : "false", NULL, error_r);
}

int store_user_lookup(PGconn *conn, const char *address, int64_t *id_r,
		      const char **error_r)
{
	return lookup_account(conn, address, false, id_r, error_r);
}

int store_user_remove(PGconn *conn, const char *address, const char **error_r)
{
	return account_update(conn, address, "SELECT delete_account($1)", 0, NULL, NULL,
			      error_r);
}

int store_user_list(PGconn *conn, const char *tenant, const char *domain,
		    store_user_cb *cb, void *ctx, const char **error_r)
{
	struct num_param_buf b1, b2;
	const char *params[2];
	PGresult *res;

	if (list_filter(conn, tenant, domain, &b1, &b2, params, error_r) < 0)
		return -1;
	res = store_pg_exec(conn,
		"SELECT a.id, a.address, t.name, a.enabled, a.quota_bytes, a.quota_messages,"
		" u.bytes, u.messages"
		" FROM accounts a JOIN tenants t ON t.id = a.tenant_id"
		" JOIN account_usage u ON u.account_id = a.id"
		" WHERE ($1::bigint IS NULL OR a.tenant_id = $1)"
		" AND ($2::bigint IS NULL OR a.domain_id = $2)"
		" ORDER BY lower(a.address)", 2, params, error_r);
	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_user_info u = {
			.id = store_pg_int(res, i, 0),
			.address = PQgetvalue(res, i, 1),
			.tenant = PQgetvalue(res, i, 2),
			.enabled = PQgetvalue(res, i, 3)[0] == 't',
			.quota_bytes = store_pg_int(res, i, 4),
			.quota_messages = store_pg_int(res, i, 5),
			.used_bytes = store_pg_int(res, i, 6),
			.used_messages = store_pg_int(res, i, 7),
		};
		cb(&u, ctx);
	}
	PQclear(res);
	return 0;
}

int store_user_authenticate(PGconn *conn, const char *address, const char *password,
			    const char **error_r)
{
	struct store_address addr;
	char canon[STORE_ADDRESS_BUF];
	const char *params[1] = { canon };
	char hash[STORE_PASSWD_HASH_COPY];
	bool enabled, has_hash;
	const char *why;
	PGresult *res;
	int rc;

	if (store_parse_address_arg(address, &addr, canon, sizeof(canon), error_r) < 0)
		return -1;
	res = store_pg_exec(conn,
		"SELECT enabled, password_hash FROM accounts WHERE lower(address) = lower($1)",
		1, params, error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		store_error(error_r, "unknown account '%s'", canon);
		return 0;
	}
	enabled = PQgetvalue(res, 0, 0)[0] == 't';
	has_hash = !PQgetisnull(res, 0, 1);
	snprintf(hash, sizeof(hash), "%s", has_hash ? PQgetvalue(res, 0, 1) : "");
	PQclear(res);
	if (!enabled) {
		store_error(error_r, "account '%s' is disabled", canon);
		return 0;
	}
	if (!has_hash) {
		store_error(error_r, "account '%s' has no password", canon);
		return 0;
	}
	rc = store_password_verify(hash, password, &why);
	explicit_bzero(hash, sizeof(hash));
	if (rc < 0)
		return store_error(error_r, "stored password of '%s': %s", canon, why);
	if (rc == 0)
		store_error(error_r, "wrong password for '%s'", canon);
	return rc;
}

/* ---- aliases ---- */

static int alias_source(PGconn *conn, const char *source, struct store_address *addr,
			char *canon, size_t canon_size, int64_t *did_r, int64_t *tid_r,
			const char **error_r)
{
	char clean[80];
	const char *why;
	int rc;

	if (store_alias_source_parse(source, addr, &why) < 0)
		return store_error(error_r, "malformed alias source '%s': %s",
				   store_clean(clean, sizeof(clean), source), why);
	snprintf(canon, canon_size, "%s@%s", addr->local, addr->domain);
	rc = store_find_domain(conn, addr->domain, false, did_r, tid_r, error_r);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return store_error(error_r, "unknown domain '%s'", addr->domain);
	return 0;
}

static int alias_add(PGconn *conn, const char *source, const char *const *dests,
		     size_t n, const char **error_r)
{
	struct store_address src, dst;
	char scanon[STORE_ADDRESS_BUF], dcanon[STORE_ADDRESS_BUF];
	struct num_param_buf b1, b2;
	int64_t did, tid;

	if (n == 0)
		return store_error(error_r, "an alias needs at least one destination");
	if (alias_source(conn, source, &src, scanon, sizeof(scanon), &did, &tid,
			 error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *p1[2] = { scanon, dcanon };
		const char *params[4] = {
			store_num_param(&b1, tid), store_num_param(&b2, did),
			src.local[0] != '\0' ? src.local : NULL, dcanon,
		};
		PGresult *res;

		if (store_parse_address_arg(dests[i], &dst, dcanon, sizeof(dcanon),
					    error_r) < 0)
			return -1;
		if (strcasecmp(scanon, dcanon) == 0)
			return store_error(error_r, "alias '%s' points to itself", scanon);
		res = store_pg_exec(conn, "SELECT 1 FROM aliases"
				    " WHERE lower(source) = lower($1) AND lower(destination) = lower($2)",
				    2, p1, error_r);
		if (res == NULL)
			return -1;
		if (PQntuples(res) > 0) {
			PQclear(res);
			return store_error(error_r, "alias '%s' -> '%s' already exists",
					   scanon, dcanon);
		}
		PQclear(res);
		if (store_pg_command(conn,
			"INSERT INTO aliases (tenant_id, domain_id, local_part, destination)"
			" VALUES ($1, $2, $3, $4)", 4, params, error_r) < 0) {
			if (strcmp(store_pg_last_sqlstate(), SQLSTATE_UNIQUE) == 0)
				return store_error(error_r, "alias '%s' -> '%s' already exists",
						   scanon, dcanon);
			return -1;
		}
	}
	return 0;
}

int store_alias_add(PGconn *conn, const char *source, const char *const *dests,
		    size_t ndests, const char **error_r)
{
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, alias_add(conn, source, dests, ndests, error_r), error_r);
}

static int alias_remove(PGconn *conn, const char *source, const char *const *dests,
			size_t n, const char **error_r)
{
	struct store_address src, dst;
	char scanon[STORE_ADDRESS_BUF], dcanon[STORE_ADDRESS_BUF];
	char clean[80];
	const char *why;
	PGresult *res;

	if (store_alias_source_parse(source, &src, &why) < 0)
		return store_error(error_r, "malformed alias source '%s': %s",
				   store_clean(clean, sizeof(clean), source), why);
	snprintf(scanon, sizeof(scanon), "%s@%s", src.local, src.domain);
	if (n == 0) {
		const char *params[1] = { scanon };

		res = store_pg_exec(conn, "DELETE FROM aliases WHERE lower(source) = lower($1)",
				    1, params, error_r);
		if (res == NULL)
			return -1;
		if (strcmp(PQcmdTuples(res), "0") == 0) {
			PQclear(res);
			return store_error(error_r, "no alias '%s'", scanon);
		}
		PQclear(res);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const char *params[2] = { scanon, dcanon };

		if (store_parse_address_arg(dests[i], &dst, dcanon, sizeof(dcanon),
					    error_r) < 0)
			return -1;
		res = store_pg_exec(conn, "DELETE FROM aliases WHERE lower(source) = lower($1)"
				    " AND lower(destination) = lower($2)", 2, params, error_r);
		if (res == NULL)
			return -1;
		if (strcmp(PQcmdTuples(res), "0") == 0) {
			PQclear(res);
			return store_error(error_r, "no alias '%s' -> '%s'", scanon, dcanon);
		}
		PQclear(res);
	}
	return 0;
}

int store_alias_remove(PGconn *conn, const char *source, const char *const *dests,
		       size_t ndests, const char **error_r)
{
	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	return store_tx_end(conn, alias_remove(conn, source, dests, ndests, error_r),
			    error_r);
}

int store_alias_list(PGconn *conn, const char *tenant, const char *domain,
		     store_alias_cb *cb, void *ctx, const char **error_r)
{
	struct num_param_buf b1, b2;
	const char *params[2];
	PGresult *res;

	if (list_filter(conn, tenant, domain, &b1, &b2, params, error_r) < 0)
		return -1;
	res = store_pg_exec(conn,
		"SELECT al.source, al.destination, t.name"
		" FROM aliases al JOIN tenants t ON t.id = al.tenant_id"
		" WHERE ($1::bigint IS NULL OR al.tenant_id = $1)"
		" AND ($2::bigint IS NULL OR al.domain_id = $2)"
		" ORDER BY lower(al.source), al.id", 2, params, error_r);
	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		struct store_alias_info a = {
			.source = PQgetvalue(res, i, 0),
			.destination = PQgetvalue(res, i, 1),
			.tenant = PQgetvalue(res, i, 2),
		};
		cb(&a, ctx);
	}
	PQclear(res);
	return 0;
}
