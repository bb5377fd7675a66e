/* Syntax checks for addresses, domains, sizes and counts (see
 * postern/store-address.h): used by posternctl, the passwd-file importer and
 * the admin operations before anything reaches the database. */
#include "postern/store-address.h"
#include "store-private.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 5322 3.2.3:
 *   atext = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 *           "-" / "/" / "=" / "?" / "^" / "_" / "`" / "{" / "|" / "}" / "~"
 * RFC 6531 3.3 adds UTF8-non-ascii. */
static bool atext_ascii(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Length of the well-formed UTF-8 sequence (RFC 3629 4) at p, which starts
 * with a byte >= 0x80, or 0 if it is not well-formed. */
static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;       /* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f;       /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;       /* nothing above U+10FFFF */
	} else {
		return 0;
	}
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

/* RFC 5321 4.1.2: Dot-string = Atom *("." Atom) */
static int local_part_check(const char *s, size_t len, const char **error_r)
{
	const unsigned char *p = (const unsigned char *)s;
	bool atom_empty = true;

	if (len == 0)
		return store_error(error_r, "empty local part");
	if (len > STORE_LOCAL_PART_MAX)
		return store_error(error_r, "local part longer than %d bytes",
				   STORE_LOCAL_PART_MAX);
	for (size_t i = 0; i < len;) {
		if (p[i] == '.') {
			if (atom_empty)
				return store_error(error_r, "misplaced '.' in local part");
			atom_empty = true;
			i++;
		} else if (p[i] < 0x80) {
			if (!atext_ascii(p[i]))
				return store_error(error_r,
						   "character not allowed in local part");
			atom_empty = false;
			i++;
		} else {
			size_t n = utf8_seq_len(p + i, len - i);

			if (n == 0)
				return store_error(error_r, "invalid UTF-8 in local part");
			atom_empty = false;
			i += n;
		}
	}
	if (atom_empty)
		return store_error(error_r, "misplaced '.' in local part");
	return 0;
}

/* RFC 5321 4.1.2:
 *   Domain     = sub-domain *("." sub-domain)
 *   sub-domain = Let-dig [Ldh-str]
 *   Ldh-str    = *( ALPHA / DIGIT / "-" ) Let-dig
 * Writes the lower-cased name into out (size > STORE_DOMAIN_MAX). */
static int domain_check(const char *s, size_t len, char *out, const char **error_r)
{
	size_t label = 0;

	if (len == 0)
		return store_error(error_r, "empty domain");
	if (len > STORE_DOMAIN_MAX)
		return store_error(error_r, "domain longer than %d bytes", STORE_DOMAIN_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return store_error(error_r, "empty label or misplaced '-' in domain");
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			label++;
		} else if (c >= 'A' && c <= 'Z') {
			c = (char)(c - 'A' + 'a');
			label++;
		} else if (c == '-') {
			if (label == 0)
				return store_error(error_r, "label starts with '-' in domain");
			label++;
		} else {
			return store_error(error_r, "character not allowed in domain");
		}
		if (label > STORE_LABEL_MAX)
			return store_error(error_r, "domain label longer than %d bytes",
					   STORE_LABEL_MAX);
		out[i] = c;
	}
	if (label == 0 || s[len - 1] == '-')
		return store_error(error_r, "empty label or misplaced '-' in domain");
	out[len] = '\0';
	return 0;
}

int store_domain_parse(const char *s, char *domain_r, size_t size,
		       const char **error_r)
{
	char tmp[STORE_DOMAIN_MAX + 1];

	if (size <= STORE_DOMAIN_MAX)
		return store_error(error_r, "domain buffer too small");
	if (domain_check(s, strlen(s), tmp, error_r) < 0)
		return -1;
	memcpy(domain_r, tmp, strlen(tmp) + 1);
	return 0;
}

static int address_parse(const char *s, bool allow_catchall,
			 struct store_address *addr_r, const char **error_r)
{
	const char *at = strrchr(s, '@');
	size_t len = strlen(s), llen;

	if (at == NULL)
		return store_error(error_r, "missing '@'");
	if (len > STORE_ADDRESS_MAX)
		return store_error(error_r, "address longer than %d bytes", STORE_ADDRESS_MAX);
	llen = (size_t)(at - s);
	if (llen == 0 && allow_catchall) {
		addr_r->local[0] = '\0';
	} else {
		if (local_part_check(s, llen, error_r) < 0)
			return -1;
		memcpy(addr_r->local, s, llen);
		addr_r->local[llen] = '\0';
	}
	return domain_check(at + 1, len - llen - 1, addr_r->domain, error_r);
}

int store_address_parse(const char *s, struct store_address *addr_r,
			const char **error_r)
{
	return address_parse(s, false, addr_r, error_r);
}

int store_alias_source_parse(const char *s, struct store_address *addr_r,
			     const char **error_r)
{
	return address_parse(s, true, addr_r, error_r);
}

size_t store_local_part_base_len(const char *local)
{
	const char *plus = strchr(local, '+');

	if (plus == NULL || plus == local)
		return strlen(local);
	return (size_t)(plus - local);
}

static bool is_unlimited(const char *s)
{
	return strcasecmp(s, "unlimited") == 0 || strcasecmp(s, "none") == 0;
}

/* Reads digits into *v_r; returns the first byte after them, or NULL when
 * there are none or the value passes INT64_MAX. */
static const char *parse_digits(const char *s, int64_t *v_r)
{
	int64_t v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		int d = *p - '0';

		if (v > (INT64_MAX - d) / 10)
			return NULL;
		v = v * 10 + d;
	}
	if (p == s)
		return NULL;
	*v_r = v;
	return p;
}

int store_size_parse(const char *s, int64_t *bytes_r, const char **error_r)
{
	static const struct {
		const char *unit;
		int shift;
	} units[] = {
		{ "", 0 }, { "B", 0 },
		{ "K", 10 }, { "KB", 10 }, { "KiB", 10 },
		{ "M", 20 }, { "MB", 20 }, { "MiB", 20 },
		{ "G", 30 }, { "GB", 30 }, { "GiB", 30 },
		{ "T", 40 }, { "TB", 40 }, { "TiB", 40 },
	};
	int64_t v;
	const char *p;

	if (is_unlimited(s)) {
		*bytes_r = -1;
		return 0;
	}
	p = parse_digits(s, &v);
	if (p == NULL)
		return store_error(error_r, "bad size (expected e.g. 500M, 1G, unlimited)");
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].unit) != 0)
			continue;
		if (v > (INT64_MAX >> units[i].shift))
			return store_error(error_r, "size too large");
		v <<= units[i].shift;
		*bytes_r = v == 0 ? -1 : v;
		return 0;
	}
	return store_error(error_r, "bad size unit (use B, K, M, G or T)");
}

int store_count_parse(const char *s, int64_t *count_r, const char **error_r)
{
	int64_t v;
	const char *p;

	if (is_unlimited(s)) {
		*count_r = -1;
		return 0;
	}
	p = parse_digits(s, &v);
	if (p == NULL || *p != '\0')
		return store_error(error_r, "bad count (expected a number or unlimited)");
	*count_r = v == 0 ? -1 : v;
	return 0;
}

void store_size_format(int64_t bytes, char *buf, size_t size)
{
	static const char units[] = "KMGT";
	int u = -1;

	if (bytes < 0) {
		snprintf(buf, size, "unlimited");
		return;
	}
	while (bytes != 0 && u < 3 && bytes % 1024 == 0) {
		bytes /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, size, "%lld", (long long)bytes);
	else
		snprintf(buf, size, "%lld%c", (long long)bytes, units[u]);
}
