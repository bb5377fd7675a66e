/* Base64 (RFC 4648 section 4, the standard alphabet with '=' padding).
 *
 * Pure functions into caller buffers: no allocation, no I/O. The decoder is
 * strict as RFC 4648 section 3.3 asks: no whitespace, no characters outside
 * the alphabet, padding required and only where it belongs. Character
 * classification is done with arithmetic instead of table lookups so that
 * decoding a secret (a SASL PLAIN response) takes no data-dependent memory
 * accesses; only the position of the first bad character can leak through
 * timing.
 */
#ifndef POSTERN_BASE64_H
#define POSTERN_BASE64_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Characters in the encoding of n bytes (without the NUL): 4 * ceil(n / 3).
 * Only meaningful for n <= PN_BASE64_MAX_INPUT. */
#define PN_BASE64_ENCODED_LEN(n) ((((size_t)(n) + 2) / 3) * 4)
/* Bytes needed to decode n characters (exact for valid input without
 * padding, an upper bound otherwise). */
#define PN_BASE64_DECODED_MAX(n) (((size_t)(n) / 4) * 3)
/* Largest input pn_base64_encode() accepts (so the length cannot overflow). */
#define PN_BASE64_MAX_INPUT ((SIZE_MAX - 1) / 4 * 3)

/* Flags for pn_base64_decode(). */
enum pn_base64_flags {
	/* Also reject non-zero bits after the last full byte ("QR==" instead of
	 * "QQ=="), RFC 4648 section 3.5: only the canonical encoding of each
	 * byte string is accepted. */
	PN_BASE64_STRICT = 0x1,
};

/* Encodes src[0..len) into dst as a NUL-terminated string. dst_size must be
 * at least PN_BASE64_ENCODED_LEN(len) + 1. Returns the number of characters
 * written (without the NUL), or -1 (dst untouched) if dst is too small or
 * len exceeds PN_BASE64_MAX_INPUT. */
ssize_t pn_base64_encode(const void *src, size_t len, char *dst, size_t dst_size);

/* Decodes src[0..len) (not necessarily NUL-terminated) into dst.
 * Returns 0 and sets *len_r to the number of bytes written, or -1 with
 * *error_r set to a static message: length not a multiple of 4, a character
 * outside the alphabet (including whitespace and NUL), misplaced or excess
 * '=', non-zero trailing bits (only with PN_BASE64_STRICT), or the decoded
 * data not fitting in dst_size bytes (checked before anything is written).
 * After other errors dst may hold a partial result; *len_r is then 0.
 * An empty input decodes to zero bytes. */
int pn_base64_decode(const char *src, size_t len, void *dst, size_t dst_size,
		     unsigned int flags, size_t *len_r, const char **error_r);

#endif
