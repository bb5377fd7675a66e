/* Base64 encoder and strict decoder (RFC 4648 section 4). The 6-bit value to
 * character mapping in both directions is computed with branch-free range
 * arithmetic (see b64_char and b64_value), so secrets are not decoded
 * through table lookups indexed by secret bytes.
 */
#include "postern/base64.h"

/* Right shift of a negative int is arithmetic on every compiler we build
 * with (gcc, clang); "(x >> 8)" below is therefore -1 when x < 0 (and
 * x > -256) and 0 when 0 <= x < 256. */

/* RFC 4648 table 1: 0..25 'A'..'Z', 26..51 'a'..'z', 52..61 '0'..'9',
 * 62 '+', 63 '/'. v is in 0..63. */
static char b64_char(unsigned int v)
{
	int x = (int)v;
	int diff = 'A';

	diff += ((25 - x) >> 8) & ('a' - 'A' - 26);	/* past 'Z': to 'a' */
	diff -= ((51 - x) >> 8) & ('a' - '0' + 26);	/* past 'z': to '0' */
	diff -= ((61 - x) >> 8) & ('0' + 10 - '+');	/* past '9': to '+' */
	diff += ((62 - x) >> 8) & ('/' - '+' - 1);	/* past '+': to '/' */
	return (char)(x + diff);
}

/* The inverse of b64_char: the 6-bit value of c, or -1 if c is not in the
 * alphabet. Each term adds (c - offset + 1) when lo <= c <= hi, else 0;
 * the terms' ranges do not overlap, and the sum starts at -1. */
static int b64_value(uint8_t uc)
{
	int c = uc;
	int ret = -1;

	ret += (((('A' - 1) - c) & (c - ('Z' + 1))) >> 8) & (c - 'A' + 1);
	ret += (((('a' - 1) - c) & (c - ('z' + 1))) >> 8) & (c - 'a' + 27);
	ret += (((('0' - 1) - c) & (c - ('9' + 1))) >> 8) & (c - '0' + 53);
	ret += (((('+' - 1) - c) & (c - ('+' + 1))) >> 8) & 63;
	ret += (((('/' - 1) - c) & (c - ('/' + 1))) >> 8) & 64;
	return ret;
}

ssize_t pn_base64_encode(const void *srcv, size_t len, char *dst, size_t dst_size)
{
	const uint8_t *src = srcv;
	size_t need, o = 0, i = 0;

	if (len > PN_BASE64_MAX_INPUT)
		return -1;
	need = PN_BASE64_ENCODED_LEN(len);
	if (dst_size < need + 1)
		return -1;

	/* RFC 4648 section 4: 24-bit groups into four 6-bit characters. */
	for (; len - i >= 3; i += 3) {
		uint32_t g = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		dst[o++] = b64_char(g >> 18);
		dst[o++] = b64_char((g >> 12) & 63);
		dst[o++] = b64_char((g >> 6) & 63);
		dst[o++] = b64_char(g & 63);
	}
	/* A final group of 8 or 16 bits is padded with zero bits to a whole
	 * character and with '=' to four characters. */
	if (len - i == 1) {
		uint32_t g = (uint32_t)src[i] << 16;
		dst[o++] = b64_char(g >> 18);
		dst[o++] = b64_char((g >> 12) & 63);
		dst[o++] = '=';
		dst[o++] = '=';
	} else if (len - i == 2) {
		uint32_t g = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
		dst[o++] = b64_char(g >> 18);
		dst[o++] = b64_char((g >> 12) & 63);
		dst[o++] = b64_char((g >> 6) & 63);
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return (ssize_t)o;
}

int pn_base64_decode(const char *src, size_t len, void *dstv, size_t dst_size,
		     unsigned int flags, size_t *len_r, const char **error_r)
{
	uint8_t *dst = dstv;
	size_t pad = 0, out_len, o = 0;

	*len_r = 0;
	if (len == 0)
		return 0;
	/* RFC 4648 section 4: the encoded output is always a whole number of
	 * 4-character quanta when padding is used (and we require it). */
	if (len % 4 != 0) {
		*error_r = "base64: length is not a multiple of 4";
		return -1;
	}
	if (src[len - 1] == '=')
		pad = src[len - 2] == '=' ? 2 : 1;
	out_len = len / 4 * 3 - pad;
	if (out_len > dst_size) {
		*error_r = "base64: decoded data too large for the buffer";
		return -1;
	}

	/* All quanta but the last hold 4 alphabet characters, 3 bytes. Any '='
	 * here fails b64_value() as "bad character", which is what it is. */
	size_t body = len - 4;
	for (size_t i = 0; i < body; i += 4) {
		int a = b64_value((uint8_t)src[i]), b = b64_value((uint8_t)src[i + 1]);
		int c = b64_value((uint8_t)src[i + 2]), d = b64_value((uint8_t)src[i + 3]);
		if ((a | b | c | d) < 0) {
			*error_r = "base64: invalid character";
			return -1;
		}
		uint32_t g = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		dst[o++] = (uint8_t)(g >> 16);
		dst[o++] = (uint8_t)(g >> 8);
		dst[o++] = (uint8_t)g;
	}

	/* The last quantum: 4 - pad characters, then pad '='. "x===" cannot
	 * happen (pad <= 2, and src[len-3] == '=' fails as a bad character). */
	const char *q = src + body;
	int v[4] = { 0, 0, 0, 0 };
	for (size_t k = 0; k < 4 - pad; k++) {
		v[k] = b64_value((uint8_t)q[k]);
		if (v[k] < 0) {
			*error_r = q[k] == '=' ? "base64: misplaced padding"
					       : "base64: invalid character";
			return -1;
		}
	}
	uint32_t g = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
	/* RFC 4648 section 3.5: the pad bits of the last character must be
	 * zero in a canonical encoding: 4 bits with "==", 2 bits with "=". */
	if ((flags & PN_BASE64_STRICT) != 0 &&
	    ((pad == 2 && (g & 0xffff) != 0) || (pad == 1 && (g & 0xff) != 0))) {
		*error_r = "base64: non-zero trailing bits";
		return -1;
	}
	dst[o++] = (uint8_t)(g >> 16);
	if (pad < 2)
		dst[o++] = (uint8_t)(g >> 8);
	if (pad < 1)
		dst[o++] = (uint8_t)g;
	*len_r = o;
	return 0;
}
