/* Modified UTF-7 (RFC 3501 section 5.1.3) <-> UTF-8 for mailbox names, and
 * the strict UTF-8 character reader the IMAP parser shares. Both directions
 * accept only the canonical form, so they are exact inverses.
 *
 * RFC 3501 section 5.1.3:
 *   In modified UTF-7, printable US-ASCII characters, except for "&",
 *   represent themselves; that is, characters with octet values 0x20-0x25
 *   and 0x27-0x7e.  The character "&" (0x26) is represented by the
 *   two-octet sequence "&-".
 *   All other characters (octet values 0x00-0x1f and 0x7f-0xff) are
 *   represented in modified BASE64, with a further modification from
 *   [UTF-7] that "," is used instead of "/".  Modified BASE64 MUST NOT be
 *   used to represent any printing US-ASCII character which can represent
 *   itself.
 *   "&" is used to shift to modified BASE64 and "-" to shift back to
 *   US-ASCII.  There is no implicit shift from BASE64 to US-ASCII, and
 *   null shifts ("-&" while in BASE64; note that "&-" while in US-ASCII
 *   means "&") are not permitted.  However, all names start in US-ASCII,
 *   and MUST end in US-ASCII; that is, a name that ends with a non-ASCII
 *   ISO-10646 character MUST end with a "-").
 * The BASE64 text carries UTF-16 (big-endian) code units.
 */
#include "imap-utf7.h"

#include <string.h>

static const char b64_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static bool is_printable(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* RFC 3629 section 4:
 *   UTF8-char   = UTF8-1 / UTF8-2 / UTF8-3 / UTF8-4
 *   UTF8-1      = %x00-7F
 *   UTF8-2      = %xC2-DF UTF8-tail
 *   UTF8-3      = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
 *                 %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
 *   UTF8-4      = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
 *                 %xF4 %x80-8F 2( UTF8-tail )
 *   UTF8-tail   = %x80-BF
 */
size_t imap_utf8_char(const unsigned char *s, size_t len, uint32_t *cp_r)
{
	unsigned char c, lo = 0x80, hi = 0xbf;
	size_t n;
	uint32_t cp;

	if (len == 0)
		return 0;
	c = s[0];
	if (c < 0x80) {
		*cp_r = c;
		return 1;
	}
	if (c < 0xc2) {
		return 0;
	} else if (c < 0xe0) {
		n = 2;
		cp = c & 0x1f;
	} else if (c < 0xf0) {
		n = 3;
		cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c < 0xf5) {
		n = 4;
		cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		unsigned char t = s[i];
		if (t < lo || t > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		cp = (cp << 6) | (t & 0x3f);
	}
	*cp_r = cp;
	return n;
}

static int put_utf8(struct pn_buf *dest, uint32_t cp)
{
	unsigned char b[4];
	size_t n;

	if (dest == NULL)
		return 0;
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return pn_buf_append(dest, b, n);
}

static int put_bytes(struct pn_buf *dest, const void *p, size_t n)
{
	return dest == NULL ? 0 : pn_buf_append(dest, p, n);
}

/* Decodes one BASE64 run src[*pos..] up to its "-" (dest may be NULL). */
static int decode_run(const unsigned char *s, size_t len, size_t *pos,
		      struct pn_buf *dest, const char **error_r)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;
	size_t i = *pos;

	for (; i < len && s[i] != '-'; i++) {
		int v = b64_value(s[i]);
		if (v < 0) {
			*error_r = "Invalid character in modified BASE64";
			return -1;
		}
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t unit = (bits >> nbits) & 0xffff;
		bits &= (1u << nbits) - 1;
		uint32_t cp;
		if (high != 0) {
			if (unit < 0xdc00 || unit > 0xdfff) {
				*error_r = "Unpaired UTF-16 surrogate";
				return -1;
			}
			cp = 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
			high = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high = unit;
			continue;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			*error_r = "Unpaired UTF-16 surrogate";
			return -1;
		} else {
			cp = unit;
		}
		if (cp == 0) {
			*error_r = "NUL character in mailbox name";
			return -1;
		}
		if (cp < 0x80 && is_printable((unsigned char)cp)) {
			*error_r = "Printable US-ASCII must not be BASE64-encoded";
			return -1;
		}
		if (put_utf8(dest, cp) < 0) {
			*error_r = "Mailbox name too long";
			return -1;
		}
	}
	if (i >= len) {
		*error_r = "Modified BASE64 not terminated with '-'";
		return -1;
	}
	if (high != 0) {
		*error_r = "Unpaired UTF-16 surrogate";
		return -1;
	}
	/* Only the final partial sextet's zero padding may be left over. */
	if (nbits >= 6 || bits != 0) {
		*error_r = "Invalid modified BASE64 length or padding";
		return -1;
	}
	*pos = i + 1;
	return 0;
}

static int utf7_decode(const char *src, size_t len, struct pn_buf *dest,
		       const char **error_r)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0;
	bool after_run = false;

	while (i < len) {
		unsigned char c = s[i];
		if (!is_printable(c)) {
			*error_r = "Invalid character in mailbox name (modified UTF-7)";
			return -1;
		}
		if (c != '&') {
			if (put_bytes(dest, &c, 1) < 0)
				goto too_long;
			i++;
			after_run = false;
			continue;
		}
		if (i + 1 < len && s[i + 1] == '-') {
			if (put_bytes(dest, "&", 1) < 0)
				goto too_long;
			i += 2;
			after_run = false;
			continue;
		}
		if (after_run) {
			*error_r = "Null shift (\"-&\") in modified UTF-7";
			return -1;
		}
		i++;
		if (decode_run(s, len, &i, dest, error_r) < 0)
			return -1;
		after_run = true;
	}
	return 0;
too_long:
	*error_r = "Mailbox name too long";
	return -1;
}

int imap_utf7_to_utf8(const char *src, size_t len, struct pn_buf *dest,
		      const char **error_r)
{
	return utf7_decode(src, len, dest, error_r);
}

bool imap_utf7_is_valid(const char *src, size_t len)
{
	const char *error;

	return utf7_decode(src, len, NULL, &error) == 0;
}

int imap_utf8_to_utf7(const char *src, size_t len, struct pn_buf *dest,
		      const char **error_r)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		if (is_printable(c)) {
			int r = c == '&' ? pn_buf_append(dest, "&-", 2)
					 : pn_buf_append(dest, &c, 1);
			if (r < 0)
				goto too_long;
			i++;
			continue;
		}
		/* A run of characters that need BASE64, as one shift. */
		uint32_t bits = 0;
		unsigned nbits = 0;
		if (pn_buf_append(dest, "&", 1) < 0)
			goto too_long;
		while (i < len && !is_printable(s[i])) {
			uint32_t cp, units[2];
			size_t nunits = 1;
			size_t l = imap_utf8_char(s + i, len - i, &cp);
			if (l == 0) {
				*error_r = "Invalid UTF-8 in mailbox name";
				return -1;
			}
			if (cp == 0) {
				*error_r = "NUL character in mailbox name";
				return -1;
			}
			i += l;
			if (cp >= 0x10000) {
				units[0] = 0xd800 + ((cp - 0x10000) >> 10);
				units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
				nunits = 2;
			} else {
				units[0] = cp;
			}
			for (size_t u = 0; u < nunits; u++) {
				bits = (bits << 16) | units[u];
				nbits += 16;
				while (nbits >= 6) {
					nbits -= 6;
					char ch = b64_chars[(bits >> nbits) & 0x3f];
					if (pn_buf_append(dest, &ch, 1) < 0)
						goto too_long;
				}
				bits &= (1u << nbits) - 1;
			}
		}
		if (nbits > 0) {
			char ch = b64_chars[(bits << (6 - nbits)) & 0x3f];
			if (pn_buf_append(dest, &ch, 1) < 0)
				goto too_long;
		}
		if (pn_buf_append(dest, "-", 1) < 0)
			goto too_long;
	}
	return 0;
too_long:
	*error_r = "Mailbox name too long";
	return -1;
}
