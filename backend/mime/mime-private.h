/* Helpers shared by the files of backend/mime; not part of the public API. */
#ifndef POSTERN_MIME_PRIVATE_H
#define POSTERN_MIME_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "postern/buf.h"
#include "postern/mail-message.h"

struct mail_arena;
struct pn_buf;

/* Readable bytes of a pn_buf, never a NULL pointer (even when empty). */
static inline const uint8_t *mime_buf_ptr(const struct pn_buf *b)
{
	return b->data != NULL ? b->data + b->start : (const uint8_t *)"";
}

/* --- lines (header.c) --- */

/* Index just after the LF ending the line that starts at pos, or len. */
static inline size_t mime_line_end(const uint8_t *d, size_t len, size_t pos)
{
	const uint8_t *p = memchr(d + pos, '\n', len - pos);
	return p != NULL ? (size_t)(p - d) + 1 : len;
}

enum mime_line_kind {
	MIME_LINE_BLANK, /* "\n" or "\r\n" */
	MIME_LINE_FIELD, /* field-name [WSP] ":" ... */
	MIME_LINE_CONT,  /* starts with SP or HTAB */
	MIME_LINE_OTHER, /* anything else: not a header line */
};

/* Classifies line[0..len) (len includes the line end). */
enum mime_line_kind mime_line_classify(const uint8_t *line, size_t len);

/* Length of the line end at the end of line[0..len): 2 for CRLF, 1 for LF,
 * else 0. */
static inline size_t mime_eol_len(const uint8_t *line, size_t len)
{
	if (len == 0 || line[len - 1] != '\n')
		return 0;
	return len >= 2 && line[len - 2] == '\r' ? 2 : 1;
}

/* Unfolded NUL-terminated copy of a header value in the arena (see
 * mail_header_unfold()), or NULL if the arena is full. */
char *mime_unfold_dup(struct mail_arena *arena, const uint8_t *value,
		      size_t len);

static inline bool mime_is_wsp(uint8_t c) { return c == ' ' || c == '\t'; }

bool mime_strcaseeq_n(const uint8_t *a, size_t alen, const char *b);

/* --- Content-* fields (params.c) --- */

/* Each fills the part from an unfolded field value. Return 0 (content type:
 * 1 when valid, 0 when invalid and nothing was set), or -1 when the arena
 * is full. *limited is set when max_params cut parameters. */
int mime_parse_content_type(struct mail_arena *arena, unsigned int max_params,
			    const char *value, struct mail_part *part,
			    bool *limited);
int mime_parse_content_disposition(struct mail_arena *arena,
				   unsigned int max_params, const char *value,
				   struct mail_part *part, bool *limited);
int mime_parse_content_language(struct mail_arena *arena, const char *value,
				struct mail_part *part);
/* Parses a Content-Transfer-Encoding value into part->encoding/cte. */
int mime_parse_cte(struct mail_arena *arena, const char *value,
		   struct mail_part *part);
/* Decoded bytes of a parameter without charset conversion (percent-
 * decoding of an extended value), for the multipart boundary. Returns a
 * NUL-terminated arena string or NULL (arena full). */
char *mime_param_raw_value(struct mail_arena *arena,
			   const struct mail_param *param, size_t *len_r);

/* --- addresses (address.c) --- */

/* Parses an unfolded address-list into *list_r (NULL when empty). At most
 * max addresses are kept (*limited set when more were dropped). Returns 0,
 * or -1 when the arena is full. */
int mime_address_list_parse(struct mail_arena *arena, const char *value,
			    unsigned int max, struct mail_address **list_r,
			    bool *limited);

/* --- charsets (charset.c) --- */

/* Appends one code point as UTF-8. Returns 0 or -1 (full). */
int mime_utf8_put(struct pn_buf *out, uint32_t cp);
/* Appends 8-bit text of unknown charset: as is if valid UTF-8, else read
 * as Windows-1252. */
int mime_raw_to_utf8(const uint8_t *in, size_t len, struct pn_buf *out);

#endif
