/* SMTP grammar helpers: envelope paths (RFC 5321 4.1.2 with the UTF-8 of
 * RFC 6531), address literals (RFC 5321 4.1.3), ESMTP parameters, xtext
 * (RFC 3461 4) and numbers. Pure functions over caller buffers; see
 * smtp-syntax.h for what is accepted and returned.
 */
#include "smtp-syntax.h"

#include <string.h>

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_hex_upper(unsigned char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

static bool is_hex(unsigned char c)
{
	return is_hex_upper(c) || (c >= 'a' && c <= 'f');
}

static unsigned char to_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* RFC 5322 3.2.3: atext = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" /
 * "'" / "*" / "+" / "-" / "/" / "=" / "?" / "^" / "_" / "`" / "{" / "|" /
 * "}" / "~" (ASCII only; UTF-8 is handled by the callers). */
static bool is_atext(unsigned char c)
{
	return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* RFC 3629 section 4: UTF8-2 / UTF8-3 / UTF8-4. */
size_t smtp_utf8_seq_len(const unsigned char *p, const unsigned char *end)
{
	size_t avail = (size_t)(end - p);
	unsigned char c = avail > 0 ? p[0] : 0;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	}
	return n;
}

bool smtp_word_eq(const char *p, size_t len, const char *word)
{
	size_t wl = strlen(word);

	if (len != wl)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (to_lower((unsigned char)p[i]) != to_lower((unsigned char)word[i]))
			return false;
	}
	return true;
}

bool smtp_param_is(const struct smtp_param *param, const char *name)
{
	return smtp_word_eq(param->key, param->key_len, name);
}

/* Dot-string = Atom *("." Atom), Atom = 1*atext (RFC 5321 4.1.2), with
 * UTF8-non-ascii allowed in atext (RFC 6531 3.3). Returns the number of
 * bytes of [p, end) that form a Dot-string (0 if none); sets *utf8. */
static size_t scan_dot_string(const unsigned char *p, const unsigned char *end,
			      bool *utf8)
{
	const unsigned char *s = p, *last_good = p;

	for (;;) {
		const unsigned char *atom = p;

		while (p < end) {
			if (*p < 0x80) {
				if (!is_atext(*p))
					break;
				p++;
			} else {
				size_t k = smtp_utf8_seq_len(p, end);
				if (k == 0)
					break;
				*utf8 = true;
				p += k;
			}
		}
		if (p == atom)
			return (size_t)(last_good - s);
		last_good = p;
		if (p < end && *p == '.' && p + 1 < end)
			p++;
		else
			return (size_t)(last_good - s);
	}
}

/* Let-dig and Ldh-str (RFC 5321 4.1.2) with U-labels (RFC 6531 3.3):
 * sub-domain = Let-dig [Ldh-str]; Domain = sub-domain *("." sub-domain).
 * Returns the length of the Domain at p, or 0 if there is none or a label
 * or the whole is too long. */
static size_t scan_domain(const unsigned char *p, const unsigned char *end, bool *utf8)
{
	const unsigned char *s = p;

	for (;;) {
		const unsigned char *label = p;
		bool last_hyphen = false;

		while (p < end) {
			if (*p < 0x80) {
				if (is_alnum(*p)) {
					last_hyphen = false;
				} else if (*p == '-' && p != label) {
					last_hyphen = true;
				} else {
					break;
				}
				p++;
			} else {
				size_t k = smtp_utf8_seq_len(p, end);
				if (k == 0)
					break;
				*utf8 = true;
				last_hyphen = false;
				p += k;
			}
		}
		if (p == label || last_hyphen || p - label > 63)
			return 0;
		if (p < end && *p == '.')
			p++;
		else
			break;
	}
	if (p - s > SMTP_DOMAIN_MAX)
		return 0;
	return (size_t)(p - s);
}

/* IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT (0..255). */
static bool ipv4_valid(const char *p, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned int v = 0;
		size_t digits = 0;

		if (part > 0) {
			if (i >= len || p[i] != '.')
				return false;
			i++;
		}
		while (i < len && is_digit((unsigned char)p[i]) && digits < 3) {
			v = v * 10 + (unsigned int)(p[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || v > 255)
			return false;
	}
	return i == len;
}

/* RFC 5321 4.1.3 IPv6-addr: eight 1*4HEXDIG groups separated by ":", at
 * most one "::" standing for one or more zero groups, and optionally an
 * IPv4 address as the last two groups. */
static bool ipv6_valid(const char *p, size_t len)
{
	size_t i = 0;
	int groups = 0;
	bool dcolon = false;

	if (len >= 2 && p[0] == ':' && p[1] == ':') {
		dcolon = true;
		i = 2;
	} else if (len == 0 || p[0] == ':') {
		return false;
	}
	while (i < len) {
		size_t j = i;

		while (j < len && is_hex((unsigned char)p[j]))
			j++;
		if (j < len && p[j] == '.') {
			if (!ipv4_valid(p + i, len - i))
				return false;
			groups += 2;
			break;
		}
		if (j == i || j - i > 4)
			return false;
		groups++;
		i = j;
		if (i == len)
			break;
		if (p[i] != ':')
			return false;
		i++;
		if (i < len && p[i] == ':') {
			if (dcolon)
				return false;
			dcolon = true;
			i++;
		} else if (i == len) {
			return false;
		}
	}
	return dcolon ? groups <= 7 : groups == 8;
}

/* address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]"; General-address-literal =
 * Standardized-tag ":" 1*dcontent, dcontent = %d33-90 / %d94-126.
 * Returns the length including the brackets, or 0. */
static size_t scan_address_literal(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *q = p + 1;
	const char *in;
	size_t len;

	if (p >= end || *p != '[')
		return 0;
	while (q < end && *q != ']') {
		if (*q < 33 || *q > 126 || *q == '[' || *q == '\\')
			return 0;
		q++;
	}
	if (q >= end)
		return 0;
	in = (const char *)p + 1;
	len = (size_t)(q - p) - 1;
	if (len > 5 && smtp_word_eq(in, 5, "IPv6:")) {
		if (!ipv6_valid(in + 5, len - 5))
			return 0;
	} else if (len > 0 && is_digit((unsigned char)in[0])) {
		if (!ipv4_valid(in, len))
			return 0;
	} else {
		/* Standardized-tag = Ldh-str, then ":" and at least one dcontent. */
		size_t t = 0;

		while (t < len && (is_alnum((unsigned char)in[t]) || in[t] == '-'))
			t++;
		if (t == 0 || in[t - 1] == '-' || t + 1 >= len || in[t] != ':')
			return 0;
	}
	return (size_t)(q - p) + 1;
}

/* Local-part = Dot-string / Quoted-string (RFC 5321 4.1.2);
 * QcontentSMTP = qtextSMTP / quoted-pairSMTP; qtextSMTP = %d32-33 /
 * %d35-91 / %d93-126 (and UTF8-non-ascii, RFC 6531); quoted-pairSMTP =
 * %d92 %d32-126. Writes the normalised local part to out (size
 * SMTP_LOCAL_PART_MAX + 3 at least) and returns its length, advancing *pp;
 * returns -1 on error. */
static int parse_local_part(const unsigned char **pp, const unsigned char *end,
			    char *out, bool *utf8)
{
	const unsigned char *p = *pp;
	size_t n;

	if (p < end && *p == '"') {
		unsigned char content[SMTP_LOCAL_PART_MAX];
		bool cutf8 = false;
		size_t cl = 0, o = 0;

		p++;
		while (p < end && *p != '"') {
			if (p - *pp >= SMTP_LOCAL_PART_MAX)
				return -1;
			if (*p == '\\') {
				if (p + 1 >= end || p[1] < 32 || p[1] > 126)
					return -1;
				content[cl++] = p[1];
				p += 2;
			} else if (*p >= 0x80) {
				size_t k = smtp_utf8_seq_len(p, end);
				if (k == 0 || cl + k > sizeof(content))
					return -1;
				memcpy(content + cl, p, k);
				cl += k;
				p += k;
				cutf8 = true;
			} else if (*p >= 32 && *p <= 126) {
				content[cl++] = *p++;
			} else {
				return -1;
			}
		}
		if (p >= end)
			return -1;
		p++; /* closing quote */
		if (p - *pp > SMTP_LOCAL_PART_MAX)
			return -1;
		if (cutf8)
			*utf8 = true;
		bool dummy = false;
		if (cl > 0 && scan_dot_string(content, content + cl, &dummy) == cl) {
			memcpy(out, content, cl);
			o = cl;
		} else {
			out[o++] = '"';
			for (size_t i = 0; i < cl; i++) {
				if (content[i] == '"' || content[i] == '\\')
					out[o++] = '\\';
				out[o++] = (char)content[i];
			}
			out[o++] = '"';
		}
		*pp = p;
		return (int)o;
	}
	n = scan_dot_string(p, end, utf8);
	if (n == 0 || n > SMTP_LOCAL_PART_MAX)
		return -1;
	memcpy(out, p, n);
	*pp = p + n;
	return (int)n;
}

/* Path = "<" [ A-d-l ":" ] Mailbox ">"; A-d-l = At-domain *( "," At-domain );
 * At-domain = "@" Domain; Mailbox = Local-part "@" ( Domain / address-literal );
 * Reverse-path = Path / "<>" (RFC 5321 4.1.2); "<Postmaster>" (4.1.1.3). */
int smtp_parse_path(const char **pp, const char *end_c, unsigned int flags,
		    char *addr, size_t addr_size, bool *utf8_r,
		    const char **error_r)
{
	const unsigned char *start = (const unsigned char *)*pp;
	const unsigned char *end = (const unsigned char *)end_c;
	const unsigned char *p = start;
	char local[SMTP_LOCAL_PART_MAX + 3];
	bool utf8 = false;
	size_t n;
	int ll;

	*utf8_r = false;
	if (addr_size < SMTP_ADDRESS_SIZE) {
		*error_r = "address buffer too small";
		return -1;
	}
	if (p >= end || *p != '<') {
		*error_r = "address must be enclosed in <>";
		return -1;
	}
	p++;
	if (p < end && *p == '>') {
		if ((flags & SMTP_PATH_ALLOW_NULL) == 0) {
			*error_r = "null address not allowed here";
			return -1;
		}
		addr[0] = '\0';
		*pp = (const char *)p + 1;
		return 0;
	}
	if ((flags & SMTP_PATH_ALLOW_POSTMASTER) != 0 && end - p >= 11 &&
	    smtp_word_eq((const char *)p, 11, "postmaster>")) {
		memcpy(addr, "Postmaster", 11);
		*pp = (const char *)p + 11;
		return 0;
	}
	/* A source route is checked for syntax, then ignored (RFC 5321 C). */
	if (p < end && *p == '@') {
		for (;;) {
			bool ignored = false;

			p++;
			n = scan_domain(p, end, &ignored);
			if (n == 0) {
				*error_r = "bad source route";
				return -1;
			}
			p += n;
			if (p < end && *p == ',' && p + 1 < end && p[1] == '@') {
				p++;
				continue;
			}
			if (p < end && *p == ':') {
				p++;
				break;
			}
			*error_r = "bad source route";
			return -1;
		}
	}
	ll = parse_local_part(&p, end, local, &utf8);
	if (ll < 0) {
		*error_r = "bad local part";
		return -1;
	}
	if (p >= end || *p != '@') {
		*error_r = "address needs @domain";
		return -1;
	}
	p++;
	const unsigned char *dom = p;
	if (p < end && *p == '[')
		n = scan_address_literal(p, end);
	else
		n = scan_domain(p, end, &utf8);
	if (n == 0) {
		*error_r = "bad domain";
		return -1;
	}
	p += n;
	if (p >= end || *p != '>') {
		*error_r = "address must end with >";
		return -1;
	}
	p++;
	if (p - start > SMTP_PATH_MAX) {
		*error_r = "address too long";
		return -1;
	}
	memcpy(addr, local, (size_t)ll);
	addr[ll] = '@';
	memcpy(addr + ll + 1, dom, n);
	addr[(size_t)ll + 1 + n] = '\0';
	*utf8_r = utf8;
	*pp = (const char *)p;
	return 0;
}

/* esmtp-param = esmtp-keyword ["=" esmtp-value];
 * esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
 * esmtp-value = 1*(%d33-60 / %d62-126) (RFC 5321 4.1.2), =/ UTF8-non-ascii
 * (RFC 6531 3.3). Parameters are separated by SP. */
int smtp_parse_param(const char **pp, const char *end_c, struct smtp_param *param_r)
{
	const unsigned char *p = (const unsigned char *)*pp;
	const unsigned char *end = (const unsigned char *)end_c;
	const unsigned char *k, *v;

	if (p == end)
		return 0;
	if (*p != ' ')
		return -1;
	while (p < end && *p == ' ')
		p++;
	if (p == end) {
		*pp = (const char *)p;
		return 0;
	}
	k = p;
	if (!is_alnum(*p))
		return -1;
	while (p < end && (is_alnum(*p) || *p == '-'))
		p++;
	param_r->key = (const char *)k;
	param_r->key_len = (size_t)(p - k);
	param_r->value = NULL;
	param_r->value_len = 0;
	if (p < end && *p == '=') {
		p++;
		v = p;
		while (p < end && *p != ' ') {
			if (*p >= 0x80) {
				size_t n = smtp_utf8_seq_len(p, end);
				if (n == 0)
					return -1;
				p += n;
			} else if (*p >= 33 && *p <= 126 && *p != '=') {
				p++;
			} else {
				return -1;
			}
		}
		if (p == v)
			return -1;
		param_r->value = (const char *)v;
		param_r->value_len = (size_t)(p - v);
	}
	if (p < end && *p != ' ')
		return -1;
	*pp = (const char *)p;
	return 1;
}

/* xtext = *( xchar / hexchar ); xchar = %x21-2A / %x2C-3C / %x3E-7E;
 * hexchar = "+" 2(%x30-39 / %x41-46) (RFC 3461 4). */
bool smtp_xtext_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '+') {
			if (i + 2 >= len)
				return false;
			if (!is_hex_upper(p[i + 1]) || !is_hex_upper(p[i + 2]))
				return false;
			i += 2;
		} else if (p[i] < 0x21 || p[i] > 0x7e || p[i] == '=') {
			return false;
		}
	}
	return true;
}

int smtp_parse_u64(const char *p, size_t len, uint64_t *value_r)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned int d;

		if (!is_digit((unsigned char)p[i]))
			return -1;
		d = (unsigned int)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*value_r = v;
	return 0;
}

bool smtp_helo_valid(const char *p, size_t len)
{
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x21 || c > 0x7e || strchr("()\\\";", c) != NULL)
			return false;
	}
	return true;
}
