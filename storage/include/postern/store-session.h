/* The session registry in Redis: who is logged in, on which node.
 *
 * Layout (docs/redis-keys.md has the full description):
 *   key    {a:<account_id>}:sessions         a hash, one per account
 *   field  <node>/<session id>               unique per live session
 *   value  v=1 node=fe1 proto=imap client=192.0.2.10:50123
 *          since=1764268800 seen=1764268830 user=demo@example.test
 * A frontend HSETs the field at login, refreshes seen= and the key's
 * EXPIRE every STORE_SESSION_HEARTBEAT_SECS, and HDELs the field at logout.
 * Readers treat a record whose seen= is older than STORE_SESSION_TTL_SECS
 * as stale (its node died) and writers may HDEL it.
 *
 * This file holds the pure parts (key names, record format); who.c reads
 * the registry with synchronous hiredis for posternctl.
 */
#ifndef POSTERN_STORE_SESSION_H
#define POSTERN_STORE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/store-address.h"

#define STORE_SESSION_HEARTBEAT_SECS 30
#define STORE_SESSION_TTL_SECS 120
/* Longest record value written or accepted. */
#define STORE_SESSION_RECORD_MAX 512
/* Longest key: "{a:" + 20 digits + "}:sessions". */
#define STORE_SESSION_KEY_MAX 40

struct store_session_record {
	char node[64];       /* node name, as in pn_log_set_node() */
	char proto[16];      /* imap, pop3, submission, smtp, lmtp */
	char client[64];     /* client address "ip:port" ("[v6]:port") */
	char user[STORE_ADDRESS_MAX + 1]; /* login address */
	int64_t since;       /* login time, Unix seconds */
	int64_t seen;        /* last heartbeat, Unix seconds */
};

/* Writes "{a:<id>}:sessions" into buf. Returns its length, or -1 if size
 * is too small (STORE_SESSION_KEY_MAX is always enough). */
int store_session_key(uint64_t account_id, char *buf, size_t size);

/* Reads the account id from a key written by store_session_key(). Returns
 * 0, or -1 if the key has another shape. */
int store_session_key_parse(const char *key, size_t len, uint64_t *account_id_r);

/* Formats a record value into buf (NUL-terminated). Values must be non-empty
 * printable ASCII or UTF-8 without spaces (user may be empty).
 * Returns the length, or -1 with *error_r. */
int store_session_record_format(const struct store_session_record *rec,
				char *buf, size_t size, const char **error_r);

/* Parses a record value (not NUL-terminated; at most STORE_SESSION_RECORD_MAX
 * bytes). Unknown keys are skipped so newer writers can add some; node,
 * proto and since are required, seen defaults to since. Returns 0, or -1
 * with *error_r. */
int store_session_record_parse(const char *s, size_t len,
			       struct store_session_record *rec_r,
			       const char **error_r);

/* True if the record's last heartbeat is older than STORE_SESSION_TTL_SECS
 * at time now (Unix seconds). */
bool store_session_record_stale(const struct store_session_record *rec, int64_t now);

#endif
