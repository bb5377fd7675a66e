/* Helpers shared by admin-ops.c and import-passwd.c (not installed). All
 * follow the contract of postern/store-admin.h but run inside the caller's
 * transaction. */
#ifndef POSTERN_STORE_ADMIN_PRIVATE_H
#define POSTERN_STORE_ADMIN_PRIVATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/store-address.h"

/* Room for a stored password hash read back from the database. */
#define STORE_PASSWD_HASH_COPY 1100

struct num_param_buf {
	char buf[24];
};

/* Text form of v for a query parameter, in b; NULL (SQL NULL) if v < 0. */
const char *store_num_param(struct num_param_buf *b, int64_t v);

/* Commits if ret is 0, else rolls back. Returns 0 or -1. */
int store_tx_end(PGconn *conn, int ret, const char **error_r);

/* Finds a tenant by name (checked first), FOR UPDATE when lock. */
int store_lookup_tenant(PGconn *conn, const char *name, bool lock, int64_t *id_r,
			const char **error_r);

/* Finds a lower-case, valid domain name. Returns 1 found, 0 not found, -1
 * error. */
int store_find_domain(PGconn *conn, const char *domain, bool lock, int64_t *id_r,
		      int64_t *tenant_id_r, const char **error_r);

/* Parses an address argument; canon gets "local@domain" with the domain
 * lower-cased. Errors say "malformed address '...': why". */
int store_parse_address_arg(const char *address, struct store_address *addr_r,
			    char *canon, size_t canon_size, const char **error_r);

/* Inserts an account after checking it is not a duplicate. Limits -1: none. */
int store_insert_account(PGconn *conn, const struct store_address *addr,
			 int64_t domain_id, int64_t tenant_id, const char *hash,
			 int64_t quota_bytes, int64_t quota_messages, bool enabled,
			 const char **error_r);

#endif
