/* IMAP FETCH data computed from a parsed message: ENVELOPE, BODY and
 * BODYSTRUCTURE exactly as RFC 3501 section 7.4.2 (and RFC 9051 7.5.2)
 * define them, written as complete IMAP values (outer parentheses
 * included) ready to follow "ENVELOPE " / "BODYSTRUCTURE " in a FETCH
 * response, and to be cached.
 *
 * Conventions (the same as Dovecot's, so clients see familiar output):
 * - strings are quoted ("\"" and "\\" escaped) unless they hold 8-bit bytes
 *   or CR/LF, then they are literals "{n}\r\n...".
 * - header values are sent raw (encoded words kept), unfolded.
 * - types, subtypes and parameters keep their case; defaults are written in
 *   lower case: "text" "plain", ("charset" "us-ascii") for a text part with
 *   no charset, "7bit" for a missing or invalid transfer encoding.
 * - a multipart without body parts gets one empty text/plain part, since
 *   the grammar needs at least one; an opaque part (see mail-message.h) is
 *   written as "application" "octet-stream".
 * - BODYSTRUCTURE extension data is always complete: body-fld-md5 (the
 *   Content-MD5 value or NIL), disposition, language (always a list) and
 *   location for a leaf; parameters, disposition, language and location for
 *   a multipart.
 * Pure code; output goes to a bounded pn_buf owned by the caller.
 */
#ifndef POSTERN_MAIL_IMAP_H
#define POSTERN_MAIL_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pn_buf;
struct mail_message;
struct mail_part;
struct mail_envelope;

/* Appends the ENVELOPE of the message (part NULL) or of the message part
 * part (the root, or the child of a message/rfc822 part). Sender and
 * Reply-To default to From as RFC 3501 says. Returns 0, or -1 if out is
 * full (out may then hold a partial value: reset it). */
int mail_envelope_write(const struct mail_message *msg,
			const struct mail_part *part, struct pn_buf *out);

/* Appends BODYSTRUCTURE (extensible true) or BODY (false) of the message.
 * Returns 0, or -1 if out is full. */
int mail_bodystructure_write(const struct mail_message *msg, struct pn_buf *out,
			     bool extensible);

/* Appends NIL (s NULL), a quoted string or a literal, as above. Returns 0,
 * or -1 if out is full. */
int mail_imap_append_nstring(struct pn_buf *out, const char *s);
/* The same for s[0..len); NUL bytes are dropped. */
int mail_imap_append_string_n(struct pn_buf *out, const uint8_t *s, size_t len);

#endif
