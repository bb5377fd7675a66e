/* Parser for one line of a Dovecot passwd-file, for `posternctl
 * import-passwd`.
 *
 * Line format (Dovecot's passwd-file driver):
 *   user:password:uid:gid:gecos:home:shell:extra_fields
 * Every field after the password is optional; uid, gid, gecos, home and
 * shell are ignored (Postern has no system users or home directories).
 * extra_fields is the rest of the line (it may contain ':'), a space
 * separated list of key=value. The quota rule is understood, with or without
 * the userdb_ prefix and with a numbered suffix (quota_rule2, ...):
 *   userdb_quota_rule=*:storage=1G      storage without a unit is in KiB
 *   userdb_quota_rule=*:bytes=1000000   bytes without a unit is in bytes
 *   userdb_quota_rule=*:messages=1000
 *   (several limits may follow one another: *:storage=1G:messages=1000)
 * Rules for a single mailbox (Trash:storage=+100M), relative limits and
 * "ignore" are skipped: the store has one quota per account. Other extra
 * fields are skipped too. Empty lines and lines starting with '#' are not
 * entries.
 *
 * Pure function, no I/O; the entry is copied into the caller's struct.
 */
#ifndef POSTERN_STORE_PASSWD_FILE_H
#define POSTERN_STORE_PASSWD_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/store-address.h"

/* Longest line accepted (the importer refuses longer ones). */
#define STORE_PASSWD_LINE_MAX 4096
/* Longest password field accepted. */
#define STORE_PASSWD_FIELD_MAX 1024

struct store_passwd_entry {
	char user[STORE_ADDRESS_MAX + 1];        /* as written */
	char password[STORE_PASSWD_FIELD_MAX + 1]; /* e.g. "{SHA512-CRYPT}$6$..." */
	bool has_quota_bytes, has_quota_messages;
	int64_t quota_bytes, quota_messages;     /* -1: no limit */
};

/* Parses line[0..len) (a trailing "\n" or "\r\n" is allowed). Returns 1 with
 * *entry_r filled, 0 for a blank or comment line, -1 with *error_r for a
 * malformed line (NUL byte, too long, empty user or password, bad quota). */
int store_passwd_line_parse(const char *line, size_t len,
			    struct store_passwd_entry *entry_r,
			    const char **error_r);

#endif
