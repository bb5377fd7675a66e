/* `posternctl import-passwd`: loads a Dovecot passwd-file into one tenant
 * in a single transaction (see store_import_passwd() in
 * postern/store-admin.h). */
#include "postern/store-admin.h"
#include "postern/store-passwd-file.h"
#include "postern/store-password.h"
#include "postern/store-pg.h"
#include "store-admin-private.h"
#include "store-private.h"

#include <string.h>
#include <strings.h>

static bool is_plain(const char *pw, const char **text_r)
{
	static const char *const names[] = { "{PLAIN}", "{CLEARTEXT}", "{CLEAR}" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);

		if (strncasecmp(pw, names[i], n) == 0) {
			*text_r = pw + n;
			return true;
		}
	}
	return false;
}

static int import_entry(PGconn *conn, const struct store_passwd_entry *e,
			int64_t tenant_id, const char *tenant, bool create_domains,
			struct store_import_result *result, const char **error_r)
{
	char hash[STORE_PASSWORD_HASH_MAX];
	struct store_address addr;
	char canon[STORE_ADDRESS_BUF];
	struct num_param_buf b;
	int64_t did, dtid;
	const char *stored = e->password, *plain, *why;
	int rc;

	if (store_parse_address_arg(e->user, &addr, canon, sizeof(canon), error_r) < 0)
		return -1;
	if (is_plain(e->password, &plain)) {
		/* Never store a clear-text password: hash it now. */
		if (store_password_hash(plain, hash, sizeof(hash), &why) < 0)
			return store_error(error_r, "cannot hash the password of '%s': %s",
					   canon, why);
		stored = hash;
	} else if (store_password_check_format(e->password, &why) < 0) {
		return store_error(error_r, "bad password hash for '%s': %s", canon, why);
	}
	rc = store_find_domain(conn, addr.domain, false, &did, &dtid, error_r);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		const char *params[2] = { store_num_param(&b, tenant_id), addr.domain };
		PGresult *res;

		if (!create_domains)
			return store_error(error_r, "unknown domain '%s' "
					   "(add it first or use --create-domains)", addr.domain);
		res = store_pg_exec(conn, "INSERT INTO domains (tenant_id, name)"
				    " VALUES ($1, $2) RETURNING id", 2, params, error_r);
		if (res == NULL)
			return -1;
		did = store_pg_int(res, 0, 0);
		dtid = tenant_id;
		PQclear(res);
		result->domains_created++;
	} else if (dtid != tenant_id) {
		return store_error(error_r, "domain '%s' belongs to another tenant than '%s'",
				   addr.domain, tenant);
	}
	if (store_insert_account(conn, &addr, did, tenant_id, stored,
				 e->has_quota_bytes ? e->quota_bytes : -1,
				 e->has_quota_messages ? e->quota_messages : -1,
				 true, error_r) < 0)
		return -1;
	result->users++;
	return 0;
}

static int import_all(PGconn *conn, FILE *in, const char *tenant, bool create_domains,
		      struct store_import_result *result, const char **error_r)
{
	char line[STORE_PASSWD_LINE_MAX + 3];
	struct store_passwd_entry entry;
	unsigned lineno = 0;
	int64_t tid;

	if (store_lookup_tenant(conn, tenant, false, &tid, error_r) < 0)
		return -1;
	while (fgets(line, sizeof(line), in) != NULL) {
		size_t len = strlen(line);
		const char *why;
		int rc;

		lineno++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n')
			return store_error(error_r, "line %u: longer than %d bytes", lineno,
					   STORE_PASSWD_LINE_MAX);
		rc = store_passwd_line_parse(line, len, &entry, &why);
		if (rc < 0)
			return store_error(error_r, "line %u: %s", lineno, why);
		if (rc > 0 && import_entry(conn, &entry, tid, tenant, create_domains, result,
					   &why) < 0)
			return store_error(error_r, "line %u: %s", lineno, why);
		explicit_bzero(&entry, sizeof(entry));
	}
	explicit_bzero(line, sizeof(line));
	if (ferror(in))
		return store_error(error_r, "read error after line %u", lineno);
	return 0;
}

int store_import_passwd(PGconn *conn, FILE *in, const char *tenant,
			bool create_domains, struct store_import_result *result_r,
			const char **error_r)
{
	struct store_import_result result = { 0, 0 };
	int ret;

	if (store_pg_begin(conn, error_r) < 0)
		return -1;
	ret = store_tx_end(conn, import_all(conn, in, tenant, create_domains, &result,
					    error_r), error_r);
	if (ret == 0)
		*result_r = result;
	return ret;
}
