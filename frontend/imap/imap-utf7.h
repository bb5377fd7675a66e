/* Modified UTF-7 for IMAP mailbox names (RFC 3501 section 5.1.3) and a
 * strict UTF-8 decoder shared by the IMAP code.
 *
 * Conversions write into a bounded pn_buf (appending, not NUL-terminating)
 * and return 0, or -1 with *error_r set to a static message; on -1 the
 * buffer may hold a partial result. Both directions are strict, so that
 * decode and encode are exact inverses: every valid modified UTF-7 string has
 * one spelling, and imap_utf8_to_utf7(imap_utf7_to_utf8(s)) == s.
 */
#ifndef POSTERN_IMAP_UTF7_H
#define POSTERN_IMAP_UTF7_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"

/* Decodes modified UTF-7 to UTF-8. Rejects: bytes outside printable
 * US-ASCII, a "&" sequence without "-", characters outside the modified
 * BASE64 alphabet, non-zero or excess padding bits, unpaired UTF-16
 * surrogates, U+0000, printable US-ASCII written in BASE64, and two BASE64
 * runs back to back ("&...-&...-" must be one run). */
int imap_utf7_to_utf8(const char *src, size_t len, struct pn_buf *dest,
		      const char **error_r);
/* Encodes UTF-8 (validated: no overlongs, surrogates, values > U+10FFFF, or
 * U+0000) to modified UTF-7. */
int imap_utf8_to_utf7(const char *src, size_t len, struct pn_buf *dest,
		      const char **error_r);
/* True if src is valid modified UTF-7 (as imap_utf7_to_utf8 accepts). */
bool imap_utf7_is_valid(const char *src, size_t len);

/* Reads one well-formed UTF-8 character from s (RFC 3629: shortest form,
 * no surrogates, at most U+10FFFF). Returns its length 1..4 and the code
 * point in *cp_r, or 0 if s does not start with one (including a sequence
 * cut short by len). */
size_t imap_utf8_char(const unsigned char *s, size_t len, uint32_t *cp_r);

#endif
