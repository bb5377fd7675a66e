/* Charset conversion to UTF-8: built-in UTF-8, US-ASCII, ISO-8859-1,
 * ISO-8859-15 and Windows-1252 (ISO-8859-1 is read as Windows-1252, as
 * browsers do: real mail labelled Latin-1 uses 0x80-0x9F that way), glibc
 * iconv for the rest, and a fallback for 8-bit text of unknown charset:
 * valid UTF-8 sequences are kept, other bytes read as Windows-1252. */
#include "mime-private.h"

#include "postern/buf.h"
#include "postern/mail-decode.h"

#include <errno.h>
#include <iconv.h>
#include <strings.h>

/* Windows-1252 0x80..0x9F; the five unassigned bytes map to the C1
 * control of the same value. */
static const uint16_t cp1252_c1[32] = {
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

enum builtin_cs {
	CS_UNKNOWN,
	CS_ASCII,
	CS_UTF8,
	CS_CP1252, /* also ISO-8859-1 */
	CS_LATIN9, /* ISO-8859-15 */
};

static enum builtin_cs charset_lookup(const char *name)
{
	static const struct {
		const char *name;
		enum builtin_cs cs;
	} names[] = {
		{ "utf-8", CS_UTF8 },        { "utf8", CS_UTF8 },
		{ "us-ascii", CS_ASCII },    { "ascii", CS_ASCII },
		{ "ansi_x3.4-1968", CS_ASCII }, { "iso646-us", CS_ASCII },
		{ "us", CS_ASCII },
		{ "iso-8859-1", CS_CP1252 }, { "iso8859-1", CS_CP1252 },
		{ "iso_8859-1", CS_CP1252 }, { "iso_8859-1:1987", CS_CP1252 },
		{ "latin1", CS_CP1252 },     { "latin-1", CS_CP1252 },
		{ "l1", CS_CP1252 },         { "cp819", CS_CP1252 },
		{ "iso-ir-100", CS_CP1252 },
		{ "windows-1252", CS_CP1252 }, { "cp1252", CS_CP1252 },
		{ "x-cp1252", CS_CP1252 },
		{ "iso-8859-15", CS_LATIN9 }, { "iso8859-15", CS_LATIN9 },
		{ "iso_8859-15", CS_LATIN9 }, { "latin-9", CS_LATIN9 },
		{ "latin9", CS_LATIN9 },     { "l9", CS_LATIN9 },
	};
	if (name == NULL || name[0] == '\0')
		return CS_ASCII;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i].name) == 0)
			return names[i].cs;
	}
	return CS_UNKNOWN;
}

int mime_utf8_put(struct pn_buf *out, uint32_t cp)
{
	uint8_t b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xC0 | (cp >> 6));
		b[1] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xE0 | (cp >> 12));
		b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xF0 | (cp >> 18));
		b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 4;
	}
	return pn_buf_append(out, b, n);
}

/* Length of the well-formed UTF-8 sequence at in[0..len) (RFC 3629 4:
 * no overlongs, no surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq(const uint8_t *in, size_t len)
{
	uint8_t c = in[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return len >= 2 && (in[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if (len < 3 || (in[1] & 0xC0) != 0x80 || (in[2] & 0xC0) != 0x80)
			return 0;
		if ((c == 0xE0 && in[1] < 0xA0) || (c == 0xED && in[1] > 0x9F))
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (len < 4 || (in[1] & 0xC0) != 0x80 || (in[2] & 0xC0) != 0x80 ||
		    (in[3] & 0xC0) != 0x80)
			return 0;
		if ((c == 0xF0 && in[1] < 0x90) || (c == 0xF4 && in[1] > 0x8F))
			return 0;
		return 4;
	}
	return 0;
}

bool mail_utf8_valid(const uint8_t *in, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t n = utf8_seq(in + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

static uint32_t cp1252_to_ucs(uint8_t c)
{
	return c >= 0x80 && c < 0xA0 ? cp1252_c1[c - 0x80] : c;
}

static uint32_t latin9_to_ucs(uint8_t c)
{
	switch (c) {
	case 0xA4: return 0x20AC;
	case 0xA6: return 0x0160;
	case 0xA8: return 0x0161;
	case 0xB4: return 0x017D;
	case 0xB8: return 0x017E;
	case 0xBC: return 0x0152;
	case 0xBD: return 0x0153;
	case 0xBE: return 0x0178;
	default: return c;
	}
}

/* Copies runs of ASCII in one go and converts the other bytes one by
 * one with map, or (map NULL) keeps well-formed UTF-8 and reads the rest
 * as Windows-1252. */
static int convert_8bit(const uint8_t *in, size_t len, struct pn_buf *out,
			uint32_t (*map)(uint8_t))
{
	size_t i = 0, run = 0;
	while (i < len) {
		if (in[i] < 0x80) {
			i++;
			continue;
		}
		if (pn_buf_append(out, in + run, i - run) < 0)
			return -1;
		size_t n = map == NULL ? utf8_seq(in + i, len - i) : 0;
		if (n > 1) {
			if (pn_buf_append(out, in + i, n) < 0)
				return -1;
			i += n;
		} else {
			uint32_t cp = map != NULL ? map(in[i]) : cp1252_to_ucs(in[i]);
			if (mime_utf8_put(out, cp) < 0)
				return -1;
			i++;
		}
		run = i;
	}
	return pn_buf_append(out, in + run, len - run);
}

int mime_raw_to_utf8(const uint8_t *in, size_t len, struct pn_buf *out)
{
	return convert_8bit(in, len, out, NULL);
}

/* UTF-8 with every ill-formed byte replaced by U+FFFD. */
static int utf8_sanitize(const uint8_t *in, size_t len, struct pn_buf *out)
{
	size_t i = 0, run = 0;
	while (i < len) {
		size_t n = utf8_seq(in + i, len - i);
		if (n > 0) {
			i += n;
			continue;
		}
		if (pn_buf_append(out, in + run, i - run) < 0 ||
		    mime_utf8_put(out, 0xFFFD) < 0)
			return -1;
		run = ++i;
	}
	return pn_buf_append(out, in + run, len - run);
}

/* Through iconv. Returns 0, 1 if iconv does not know the charset, -1 if
 * out is full. */
static int convert_iconv(const char *charset, const uint8_t *in, size_t len,
			 struct pn_buf *out)
{
	iconv_t cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return 1;
	char *ip = (char *)in;
	size_t ileft = len;
	int ret = 0;
	bool flush = false;
	for (;;) {
		size_t room = pn_buf_room(out);
		size_t want = ileft * 4 + 16;
		if (want > 65536)
			want = 65536;
		if (want > room)
			want = room;
		if (want == 0) {
			ret = -1;
			break;
		}
		uint8_t *w = pn_buf_reserve(out, want);
		if (w == NULL) {
			ret = -1;
			break;
		}
		char *op = (char *)w;
		size_t oleft = want;
		size_t r = flush ? iconv(cd, NULL, NULL, &op, &oleft)
				 : iconv(cd, &ip, &ileft, &op, &oleft);
		int err = errno;
		pn_buf_commit(out, want - oleft);
		if (r != (size_t)-1) {
			if (flush)
				break;
			flush = true;
			continue;
		}
		if (err == E2BIG) {
			if (want == room && oleft == want) {
				ret = -1;
				break;
			}
			continue;
		}
		/* EILSEQ: an invalid byte; EINVAL: a sequence cut at the end. */
		if (mime_utf8_put(out, 0xFFFD) < 0) {
			ret = -1;
			break;
		}
		if (err == EINVAL || ileft == 0) {
			ileft = 0;
			flush = true;
			continue;
		}
		ip++;
		ileft--;
	}
	iconv_close(cd);
	return ret;
}

/* Only plain charset names reach iconv_open(): no "//" suffixes (which
 * select iconv options), no paths, nothing long. */
static bool iconv_name_ok(const char *name)
{
	size_t i;
	for (i = 0; name[i] != '\0'; i++) {
		char c = name[i];
		if (i >= 40 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '-' || c == '_' ||
				 c == '.' || c == ':'))
			return false;
	}
	return i > 0;
}

int mail_charset_to_utf8(const char *charset, const uint8_t *in, size_t len,
			 struct pn_buf *out)
{
	switch (charset_lookup(charset)) {
	case CS_UTF8:
		return utf8_sanitize(in, len, out);
	case CS_ASCII:
		return mime_raw_to_utf8(in, len, out);
	case CS_CP1252:
		return convert_8bit(in, len, out, cp1252_to_ucs);
	case CS_LATIN9:
		return convert_8bit(in, len, out, latin9_to_ucs);
	case CS_UNKNOWN:
		break;
	}
	if (iconv_name_ok(charset)) {
		int ret = convert_iconv(charset, in, len, out);
		if (ret <= 0)
			return ret;
	}
	return mime_raw_to_utf8(in, len, out) < 0 ? -1 : 1;
}
