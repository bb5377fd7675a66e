/* Session registry key names and the record format (see
 * postern/store-session.h and docs/redis-keys.md). */
#include "postern/store-session.h"
#include "store-private.h"

#include <stdio.h>
#include <string.h>

static const char key_prefix[] = "{a:";
static const char key_suffix[] = "}:sessions";

int store_session_key(uint64_t account_id, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%llu%s", key_prefix,
			 (unsigned long long)account_id, key_suffix);

	return n < 0 || (size_t)n >= size ? -1 : n;
}

int store_session_key_parse(const char *key, size_t len, uint64_t *account_id_r)
{
	size_t pl = sizeof(key_prefix) - 1, sl = sizeof(key_suffix) - 1;
	uint64_t v = 0;
	size_t i;

	if (len <= pl + sl || memcmp(key, key_prefix, pl) != 0 ||
	    memcmp(key + len - sl, key_suffix, sl) != 0)
		return -1;
	if (len - pl - sl > 20 || (key[pl] == '0' && len - pl - sl > 1))
		return -1;
	for (i = pl; i < len - sl; i++) {
		unsigned d;

		if (key[i] < '0' || key[i] > '9')
			return -1;
		d = (unsigned)(key[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*account_id_r = v;
	return 0;
}

/* A value byte: printable ASCII except space, or any byte of a multi-byte
 * UTF-8 sequence (checked for well-formedness by the address code when it
 * matters; here only kept on one token). */
static bool value_byte(unsigned char c)
{
	return (c > 0x20 && c < 0x7f) || c >= 0x80;
}

static bool value_ok(const char *v, bool may_be_empty)
{
	if (v[0] == '\0')
		return may_be_empty;
	for (; *v != '\0'; v++) {
		if (!value_byte((unsigned char)*v))
			return false;
	}
	return true;
}

int store_session_record_format(const struct store_session_record *rec,
				char *buf, size_t size, const char **error_r)
{
	int n;

	if (!value_ok(rec->node, false) || !value_ok(rec->proto, false) ||
	    !value_ok(rec->client, false) || !value_ok(rec->user, true))
		return store_error(error_r, "session record value empty or with a space");
	if (rec->since < 0 || rec->seen < 0)
		return store_error(error_r, "session record time is negative");
	n = snprintf(buf, size, "v=1 node=%s proto=%s client=%s since=%lld seen=%lld user=%s",
		     rec->node, rec->proto, rec->client, (long long)rec->since,
		     (long long)rec->seen, rec->user);
	if (n < 0 || (size_t)n >= size || n > STORE_SESSION_RECORD_MAX)
		return store_error(error_r, "session record too long");
	return n;
}

static int copy_value(char *dst, size_t dstsize, const char *v, size_t vlen)
{
	if (vlen >= dstsize)
		return -1;
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
	return 0;
}

static int parse_time(const char *v, size_t vlen, int64_t *t_r)
{
	int64_t t = 0;

	if (vlen == 0 || vlen > 15)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		t = t * 10 + (v[i] - '0');
	}
	*t_r = t;
	return 0;
}

int store_session_record_parse(const char *s, size_t len,
			       struct store_session_record *rec_r,
			       const char **error_r)
{
	const char *p = s, *end = s + len;
	bool have_since = false, have_seen = false, have_version = false;
	unsigned int seen_fields = 0;

	if (len > STORE_SESSION_RECORD_MAX)
		return store_error(error_r, "session record too long");
	memset(rec_r, 0, sizeof(*rec_r));
	while (p < end) {
		const char *tok_end, *eq;
		size_t klen, vlen;
		const char *v;
		int rc = 0;

		if (*p == ' ') {
			p++;
			continue;
		}
		tok_end = memchr(p, ' ', (size_t)(end - p));
		if (tok_end == NULL)
			tok_end = end;
		eq = memchr(p, '=', (size_t)(tok_end - p));
		if (eq == NULL)
			return store_error(error_r, "session record field without '='");
		klen = (size_t)(eq - p);
		v = eq + 1;
		vlen = (size_t)(tok_end - v);
		for (size_t i = 0; i < vlen; i++) {
			if (!value_byte((unsigned char)v[i]))
				return store_error(error_r, "control byte in session record");
		}
		/* Each known field once: a repeated one is malformed (and would
		 * leave the first value's tail behind the second). Unknown keys
		 * are skipped, for records written by newer nodes. */
		enum { F_V = 1, F_NODE = 2, F_PROTO = 4, F_CLIENT = 8, F_USER = 16,
		       F_SINCE = 32, F_SEEN = 64 } field = 0;

		if (klen == 1 && p[0] == 'v')
			field = F_V;
		else if (klen == 4 && memcmp(p, "node", 4) == 0)
			field = F_NODE;
		else if (klen == 5 && memcmp(p, "proto", 5) == 0)
			field = F_PROTO;
		else if (klen == 6 && memcmp(p, "client", 6) == 0)
			field = F_CLIENT;
		else if (klen == 4 && memcmp(p, "user", 4) == 0)
			field = F_USER;
		else if (klen == 5 && memcmp(p, "since", 5) == 0)
			field = F_SINCE;
		else if (klen == 4 && memcmp(p, "seen", 4) == 0)
			field = F_SEEN;
		if ((seen_fields & (unsigned int)field) != 0)
			return store_error(error_r, "repeated field in session record");
		seen_fields |= (unsigned int)field;
		switch (field) {
		case F_V:
			if (vlen != 1 || v[0] != '1')
				return store_error(error_r, "unknown session record version");
			have_version = true;
			break;
		case F_NODE:
			rc = copy_value(rec_r->node, sizeof(rec_r->node), v, vlen);
			break;
		case F_PROTO:
			rc = copy_value(rec_r->proto, sizeof(rec_r->proto), v, vlen);
			break;
		case F_CLIENT:
			rc = copy_value(rec_r->client, sizeof(rec_r->client), v, vlen);
			break;
		case F_USER:
			rc = copy_value(rec_r->user, sizeof(rec_r->user), v, vlen);
			break;
		case F_SINCE:
			rc = parse_time(v, vlen, &rec_r->since);
			have_since = true;
			break;
		case F_SEEN:
			rc = parse_time(v, vlen, &rec_r->seen);
			have_seen = true;
			break;
		default:
			break;
		}
		if (rc < 0)
			return store_error(error_r, "bad or too long value in session record");
		p = tok_end;
	}
	if (!have_version || rec_r->node[0] == '\0' || rec_r->proto[0] == '\0' || !have_since)
		return store_error(error_r, "session record lacks v, node, proto or since");
	if (!have_seen)
		rec_r->seen = rec_r->since;
	return 0;
}

bool store_session_record_stale(const struct store_session_record *rec, int64_t now)
{
	return rec->seen + STORE_SESSION_TTL_SECS < now;
}
