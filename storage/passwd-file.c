/* Dovecot passwd-file line parser (see postern/store-passwd-file.h). */
#include "postern/store-passwd-file.h"
#include "store-private.h"

#include <string.h>
#include <strings.h>

/* A Dovecot quota limit value: digits, an optional unit (b, k, M, G, T,
 * case-insensitive, also with a trailing B), default_shift for none. */
static int quota_value(const char *s, size_t len, int default_shift, int64_t *v_r)
{
	int64_t v = 0;
	size_t i = 0;
	int shift = default_shift;

	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (i == 0)
		return -1;
	if (i < len) {
		switch (s[i]) {
		case 'b': case 'B': shift = 0; break;
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -1;
		}
		i++;
		if (i < len && shift != 0 && (s[i] == 'b' || s[i] == 'B'))
			i++;
		if (i != len)
			return -1;
	}
	if (v > (INT64_MAX >> shift))
		return -1;
	*v_r = v << shift;
	return 0;
}

/* "*:storage=1G:messages=10" -> limits. Other mailboxes: skipped. */
static int quota_rule(const char *s, size_t len, struct store_passwd_entry *e,
		      const char **error_r)
{
	const char *end = s + len, *p;

	if (len < 2 || s[0] != '*' || s[1] != ':')
		return 0;
	p = s + 2;
	while (p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *lim_end = colon != NULL ? colon : end;
		const char *eq = memchr(p, '=', (size_t)(lim_end - p));
		int64_t v;

		if (eq == NULL) {
			/* "ignore" and other bare words: nothing to take */
		} else {
			size_t klen = (size_t)(eq - p);
			const char *val = eq + 1;
			size_t vlen = (size_t)(lim_end - val);
			int shift;
			bool messages = false;

			if (klen == 7 && strncasecmp(p, "storage", 7) == 0)
				shift = 10;
			else if (klen == 5 && strncasecmp(p, "bytes", 5) == 0)
				shift = 0;
			else if (klen == 8 && strncasecmp(p, "messages", 8) == 0) {
				shift = 0;
				messages = true;
			} else {
				return store_error(error_r, "unknown quota limit in rule");
			}
			if (vlen > 0 && (val[0] == '+' || val[0] == '-' || val[vlen - 1] == '%')) {
				/* relative to another rule: no meaning here */
			} else if (messages) {
				if (vlen == 0 || val[vlen - 1] < '0' || val[vlen - 1] > '9' ||
				    quota_value(val, vlen, 0, &v) < 0)
					return store_error(error_r, "bad messages limit in quota rule");
				e->has_quota_messages = true;
				e->quota_messages = v == 0 ? -1 : v;
			} else {
				if (quota_value(val, vlen, shift, &v) < 0)
					return store_error(error_r, "bad size in quota rule");
				e->has_quota_bytes = true;
				e->quota_bytes = v == 0 ? -1 : v;
			}
		}
		if (colon == NULL)
			break;
		p = colon + 1;
	}
	return 0;
}

static bool is_quota_rule_key(const char *k, size_t klen)
{
	static const char prefix[] = "userdb_";
	static const char key[] = "quota_rule";

	if (klen >= sizeof(prefix) - 1 && strncmp(k, prefix, sizeof(prefix) - 1) == 0) {
		k += sizeof(prefix) - 1;
		klen -= sizeof(prefix) - 1;
	}
	if (klen < sizeof(key) - 1 || strncmp(k, key, sizeof(key) - 1) != 0)
		return false;
	for (size_t i = sizeof(key) - 1; i < klen; i++) {
		if (k[i] < '0' || k[i] > '9')
			return false;
	}
	return true;
}

static int extra_fields(const char *s, size_t len, struct store_passwd_entry *e,
			const char **error_r)
{
	const char *end = s + len, *p = s;

	while (p < end) {
		const char *sp, *eq;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end)
			break;
		sp = p;
		while (sp < end && *sp != ' ' && *sp != '\t')
			sp++;
		eq = memchr(p, '=', (size_t)(sp - p));
		if (eq != NULL && is_quota_rule_key(p, (size_t)(eq - p))) {
			if (quota_rule(eq + 1, (size_t)(sp - eq - 1), e, error_r) < 0)
				return -1;
		}
		p = sp;
	}
	return 0;
}

int store_passwd_line_parse(const char *line, size_t len,
			    struct store_passwd_entry *entry_r,
			    const char **error_r)
{
	const char *fields[7];
	size_t flen[7];
	const char *p = line, *end;
	int nfields = 0;
	const char *extra = NULL;
	size_t extra_len = 0, i;

	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > STORE_PASSWD_LINE_MAX)
		return store_error(error_r, "line longer than %d bytes", STORE_PASSWD_LINE_MAX);
	if (memchr(line, '\0', len) != NULL || memchr(line, '\n', len) != NULL)
		return store_error(error_r, "NUL or newline inside the line");
	for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	if (i == len || line[i] == '#')
		return 0;

	end = line + len;
	while (nfields < 7) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *fend = colon != NULL ? colon : end;

		fields[nfields] = p;
		flen[nfields] = (size_t)(fend - p);
		nfields++;
		if (colon == NULL)
			break;
		p = colon + 1;
		if (nfields == 7) {
			extra = p;
			extra_len = (size_t)(end - p);
		}
	}

	memset(entry_r, 0, sizeof(*entry_r));
	entry_r->quota_bytes = -1;
	entry_r->quota_messages = -1;
	if (flen[0] == 0)
		return store_error(error_r, "empty user name");
	if (flen[0] > STORE_ADDRESS_MAX)
		return store_error(error_r, "user name longer than %d bytes", STORE_ADDRESS_MAX);
	memcpy(entry_r->user, fields[0], flen[0]);
	entry_r->user[flen[0]] = '\0';
	if (nfields < 2 || flen[1] == 0)
		return store_error(error_r, "no password for this user");
	if (flen[1] > STORE_PASSWD_FIELD_MAX)
		return store_error(error_r, "password field longer than %d bytes",
				   STORE_PASSWD_FIELD_MAX);
	memcpy(entry_r->password, fields[1], flen[1]);
	entry_r->password[flen[1]] = '\0';
	if (extra != NULL && extra_fields(extra, extra_len, entry_r, error_r) < 0)
		return -1;
	return 1;
}
