/* Administrative operations on the store: tenants, domains, accounts,
 * aliases and the Dovecot passwd-file import. posternctl is a thin layer
 * over these; tests and later tools call them directly.
 *
 * Contract shared by every function:
 * - Synchronous libpq on the caller's connection (blocking: tools, tests and
 *   start-up code only, never a loop thread).
 * - Each call is one transaction: when it fails nothing has changed.
 * - Returns 0 on success, -1 with a one-line *error_r (per-thread buffer,
 *   valid until the next failing store_ call in the thread): malformed
 *   address or name, unknown tenant/domain/account, duplicate, a tenant or
 *   domain that still has accounts without force, or a database error.
 * - Names are matched case-insensitively (tenants, domains, addresses);
 *   domains are stored lower-case, local parts as given.
 * - List callbacks get rows whose strings live only during the callback.
 *
 * Tenant names are 1-64 characters [A-Za-z0-9._-] starting with a letter or
 * digit: they end up in metric labels and log lines.
 */
#ifndef POSTERN_STORE_ADMIN_H
#define POSTERN_STORE_ADMIN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define STORE_TENANT_NAME_MAX 64

/* Limits use -1 for "no limit" throughout. */
struct store_tenant_info {
	int64_t id;
	const char *name;
	int64_t quota_bytes, quota_messages;
	int64_t domains, accounts;
	int64_t used_bytes, used_messages;
};

struct store_domain_info {
	int64_t id;
	const char *name;
	const char *tenant;
	int64_t accounts, aliases;	/* aliases: distinct sources, not destinations */
};

struct store_user_info {
	int64_t id;
	const char *address;
	const char *tenant;
	bool enabled;
	int64_t quota_bytes, quota_messages;
	int64_t used_bytes, used_messages;
};

struct store_alias_info {
	const char *source;       /* "local@domain", or "@domain" for a catch-all */
	const char *destination;
	const char *tenant;
};

typedef void store_tenant_cb(const struct store_tenant_info *t, void *ctx);
typedef void store_domain_cb(const struct store_domain_info *d, void *ctx);
typedef void store_user_cb(const struct store_user_info *u, void *ctx);
typedef void store_alias_cb(const struct store_alias_info *a, void *ctx);

int store_tenant_add(PGconn *conn, const char *name, int64_t quota_bytes,
		     int64_t quota_messages, const char **error_r);
/* Without force, refuses a tenant that still has domains. With force,
 * removes its accounts (and their mail), aliases, domains and queued
 * outbound mail too. */
int store_tenant_remove(PGconn *conn, const char *name, bool force,
			const char **error_r);
int store_tenant_list(PGconn *conn, store_tenant_cb *cb, void *ctx,
		      const char **error_r);

int store_domain_add(PGconn *conn, const char *domain, const char *tenant,
		     const char **error_r);
/* Without force, refuses a domain that still has accounts (its aliases go
 * with it either way). With force, removes the accounts and their mail. */
int store_domain_remove(PGconn *conn, const char *domain, bool force,
			const char **error_r);
/* tenant NULL: all tenants. */
int store_domain_list(PGconn *conn, const char *tenant, store_domain_cb *cb,
		      void *ctx, const char **error_r);

struct store_user_params {
	const char *password;       /* plain text, hashed with yescrypt; or */
	const char *password_hash;  /* a stored string store_password_verify() accepts */
	int64_t quota_bytes, quota_messages;
	bool disabled;
};

/* Creates the account (with its standard mailboxes) in the tenant owning
 * the address's domain. Exactly one of password / password_hash is set. */
int store_user_add(PGconn *conn, const char *address,
		   const struct store_user_params *params, const char **error_r);
int store_user_set_password(PGconn *conn, const char *address,
			    const char *password, const char **error_r);
/* quota_messages is changed only if set_messages is true. */
int store_user_set_quota(PGconn *conn, const char *address, int64_t quota_bytes,
			 bool set_messages, int64_t quota_messages,
			 const char **error_r);
int store_user_set_enabled(PGconn *conn, const char *address, bool enabled,
			   const char **error_r);
/* Finds the account of an address: *id_r is its accounts.id. Errors:
 * malformed address, "unknown account '<address>'", database error. */
int store_user_lookup(PGconn *conn, const char *address, int64_t *id_r,
		      const char **error_r);
/* Removes the account with all its mailboxes and mail. */
int store_user_remove(PGconn *conn, const char *address, const char **error_r);
/* tenant / domain NULL: no filter. */
int store_user_list(PGconn *conn, const char *tenant, const char *domain,
		    store_user_cb *cb, void *ctx, const char **error_r);
/* Checks a login: 1 accepted, 0 refused (unknown account, disabled or wrong
 * password; *error_r says which), -1 error. */
int store_user_authenticate(PGconn *conn, const char *address, const char *password,
			    const char **error_r);

/* Adds source -> each of dests (all or nothing). source is an address of a
 * local domain or "@domain" (the domain's catch-all); a destination is any
 * address. An existing pair is a duplicate. */
int store_alias_add(PGconn *conn, const char *source, const char *const *dests,
		    size_t ndests, const char **error_r);
/* Removes source -> each of dests, or every destination of source when
 * ndests is 0. Something named that does not exist is an error. */
int store_alias_remove(PGconn *conn, const char *source, const char *const *dests,
		       size_t ndests, const char **error_r);
int store_alias_list(PGconn *conn, const char *tenant, const char *domain,
		     store_alias_cb *cb, void *ctx, const char **error_r);

struct store_import_result {
	unsigned users;
	unsigned domains_created;
};

/* Imports a Dovecot passwd-file (postern/store-passwd-file.h) into tenant,
 * all users or none. Hashes are stored as they are ({PLAIN} passwords are
 * hashed with yescrypt first). A user whose domain does not exist is an
 * error unless create_domains is set, which creates the domain in tenant; a
 * domain of another tenant is always an error. Errors name the line. */
int store_import_passwd(PGconn *conn, FILE *in, const char *tenant,
			bool create_domains, struct store_import_result *result_r,
			const char **error_r);

#endif
