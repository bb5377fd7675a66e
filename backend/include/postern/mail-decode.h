/* Decoding of message text for IMAP SEARCH and for display: charsets to
 * UTF-8, base64 and quoted-printable bodies, RFC 2047 encoded words, case
 * folding, and the decoded text of headers and text parts with
 * case-insensitive substring search.
 *
 * Pure code, no I/O (iconv from glibc converts charsets we have no table
 * for; glibc may load its converter modules on first use). Every output goes
 * to a bounded pn_buf owned by the caller; -1 always means "out is full".
 */
#ifndef POSTERN_MAIL_DECODE_H
#define POSTERN_MAIL_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pn_buf;
struct mail_message;
struct mail_part;

/* Converts in[0..len) from charset (a MIME charset name, case-insensitive;
 * NULL means US-ASCII) to UTF-8, appended to out. Built in: UTF-8,
 * US-ASCII, ISO-8859-1, ISO-8859-15, Windows-1252 and their usual aliases;
 * other charsets through iconv. Bytes that are invalid in the charset
 * become U+FFFD. US-ASCII text with 8-bit bytes (mislabelled) is read as
 * UTF-8 if valid, else as Windows-1252; so is text in an unknown charset.
 * Returns 0, 1 if the charset was unknown (text converted by that
 * fallback), -1 if out is full. */
int mail_charset_to_utf8(const char *charset, const uint8_t *in, size_t len,
			 struct pn_buf *out);
/* True if in[0..len) is well-formed UTF-8. */
bool mail_utf8_valid(const uint8_t *in, size_t len);

/* Base64 (RFC 2045 6.8): characters outside the alphabet (line ends,
 * spaces, garbage) are skipped; decoding stops at the first '=' pad.
 * Returns 0, or -1 if out is full. */
int mail_base64_decode(const uint8_t *in, size_t len, struct pn_buf *out);
/* Quoted-printable (RFC 2045 6.7): "=XX" (either case), soft line breaks,
 * whitespace at the end of lines dropped; a malformed "=" is kept as is.
 * Returns 0, or -1 if out is full. */
int mail_qp_decode(const uint8_t *in, size_t len, struct pn_buf *out);

/* Decodes a header value to UTF-8 (RFC 2047): encoded words in B and Q
 * encoding, whitespace between adjacent encoded words dropped, adjacent
 * words of one charset joined before conversion (so a character split
 * across two words survives). Liberal in what it accepts: encoded words
 * inside other words and inside quoted strings are decoded too. Line ends
 * of folded lines are removed and 8-bit bytes outside encoded words are
 * read as UTF-8 if valid, else Windows-1252. Returns 0, or -1 if out is
 * full. */
int mail_rfc2047_decode(const uint8_t *in, size_t len, struct pn_buf *out);

/* Appends the case-folded form of UTF-8 text (simple lower-case mapping of
 * ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; invalid sequences
 * become U+FFFD). Two strings that differ only in case fold equal. Returns
 * 0, or -1 if out is full. */
int mail_casefold_utf8(const uint8_t *in, size_t len, struct pn_buf *out);

/* Appends the decoded text of a part's header: for name NULL every field as
 * "Name: value\n", else only the values of the fields called name (one per
 * line), each through mail_rfc2047_decode(). Returns 0, or -1 if full. */
int mail_header_text(const struct mail_message *msg,
		     const struct mail_part *part, const char *name,
		     struct pn_buf *out);
/* Appends the body of a leaf part decoded from its transfer encoding and
 * converted from its charset to UTF-8 (non-text parts: transfer-decoded
 * only). Returns 0, or -1 if out is full. */
int mail_part_text(const struct mail_message *msg, const struct mail_part *part,
		   struct pn_buf *out);

/* A search string, case-folded once. */
struct mail_search_key {
	uint8_t *folded;
	size_t len;
};

/* Folds utf8[0..len) into key (malloc'd). Returns 0, or -1 (no memory or
 * longer than 64 KiB). */
int mail_search_key_init(struct mail_search_key *key, const uint8_t *utf8,
			 size_t len);
void mail_search_key_free(struct mail_search_key *key);
/* Looks for the key in UTF-8 text, folding the text on the fly in small
 * windows. Returns 1 found, 0 not found, -1 out of memory. */
int mail_search_text_match(const struct mail_search_key *key,
			   const uint8_t *text, size_t len);

/* IMAP SEARCH (RFC 3501 6.4.4) on a parsed message, case-insensitive after
 * decoding encoded words, transfer encodings and charsets. Each returns 1
 * match, 0 no match, -1 if decoding needed more than max_bytes.
 * - header: HEADER name (also FROM, TO, CC, BCC, SUBJECT): fields of the
 *   top-level header called name; an empty key matches if one exists.
 * - body: BODY: every text part of the message (nested ones included).
 * - text: TEXT: the header (all fields) or the body. */
int mail_search_header(const struct mail_message *msg, const char *name,
		       const struct mail_search_key *key, size_t max_bytes);
int mail_search_body(const struct mail_message *msg,
		     const struct mail_search_key *key, size_t max_bytes);
int mail_search_text(const struct mail_message *msg,
		     const struct mail_search_key *key, size_t max_bytes);

#endif
