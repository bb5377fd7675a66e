/* RFC 5322 / MIME message structure: parse a complete message held in memory
 * into a tree of parts, iterate header fields, locate IMAP FETCH sections.
 *
 * Pure code: no I/O, no database. The caller owns the message bytes; the tree
 * borrows them (struct mail_message.data) and every function that reads raw
 * bytes (header iteration, sections, search) needs them alive. The tree itself
 * (parts, Content-* values, envelopes) lives in one arena per message, bounded
 * by mail_limits.max_memory, and mail_message_free() releases all of it.
 *
 * Offsets and sizes are of the bytes given. IMAP needs CRLF line ends; store
 * messages normalized (mail_crlf_normalize()) so that the sizes reported in
 * BODYSTRUCTURE and RFC822.SIZE are those of the bytes FETCH sends.
 *
 * Tolerance (documented decisions, see backend/mime/message.c):
 * - bare LF ends a line like CRLF; a lone CR is an ordinary byte.
 * - a header line that is neither a field ("name:") nor a continuation is
 *   kept in the header when the next line is a field, otherwise the body
 *   starts at that line (missing blank line). A header may also end at a
 *   boundary line or at the end of the data.
 * - Content-* fields are honoured with or without MIME-Version; for every
 *   Content-* and envelope field the first occurrence wins.
 * - an invalid Content-Type counts as absent (RFC 2045 5.2): text/plain, or
 *   message/rfc822 inside multipart/digest.
 * - boundaries: a line starting with "--" + boundary matches; when several
 *   open multiparts match, the longest boundary wins, then the innermost. A
 *   missing close delimiter ends the multipart at its parent's end.
 * - message/rfc822 parts are parsed recursively unless their
 *   Content-Transfer-Encoding is base64 or quoted-printable.
 * - limits: a multipart or message/rfc822 part deeper than max_depth, or
 *   found after max_parts parts, is kept whole as a leaf marked
 *   MAIL_PART_OPAQUE (IMAP shows it as application/octet-stream) and
 *   MAIL_MSG_LIMITED is set on the message. Only running out of max_memory
 *   is an error.
 */
#ifndef POSTERN_MAIL_MESSAGE_H
#define POSTERN_MAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pn_buf;
struct mail_arena;

struct mail_limits {
	unsigned int max_depth;     /* nesting of multipart/message parts (20) */
	unsigned int max_parts;     /* parts in the whole tree (2000) */
	unsigned int max_params;    /* parameters kept per Content-* field (64) */
	unsigned int max_addresses; /* addresses kept per address field (2000) */
	size_t max_memory;          /* arena bytes for the tree (32 MiB) */
};

/* Fills in the defaults above. */
void mail_limits_default(struct mail_limits *limits_r);

/* A Content-Type or Content-Disposition parameter. RFC 2231 continuations
 * (name*0, name*1*, ...) are merged into one parameter. When any segment
 * used the extended form, extended is true and value keeps that form
 * ("charset'lang'percent-encoded", with plain segments' '%' escaped), which is
 * how IMAP BODYSTRUCTURE shows it (name followed by '*'). Otherwise value is
 * the unquoted text. Use mail_param_decode() for readable UTF-8. */
struct mail_param {
	const char *name;
	const char *value;
	bool extended;
};

/* One address of an address list (RFC 5322 3.4), as IMAP's ENVELOPE needs
 * it. A group is a start entry (mailbox = group name, domain = NULL),
 * its members, and an end entry (mailbox = NULL, domain = NULL). name keeps
 * encoded words as written (IMAP returns them raw); quotes are removed. A
 * missing local part or domain of a mailbox becomes "MISSING_MAILBOX" /
 * "MISSING_DOMAIN" (as Dovecot does), so that it never looks like a group. */
struct mail_address {
	struct mail_address *next;
	const char *name;    /* display name, or NULL */
	const char *route;   /* obsolete source route "@a,@b", or NULL */
	const char *mailbox;
	const char *domain;
};

/* RFC 3501 ENVELOPE data of a message (the root, or a message/rfc822
 * part's message). Strings are unfolded (CR and LF removed, leading
 * whitespace dropped), raw otherwise; NULL when the field is absent.
 * An address list is NULL when absent or empty. */
struct mail_envelope {
	const char *date, *subject, *in_reply_to, *message_id;
	struct mail_address *from, *sender, *reply_to, *to, *cc, *bcc;
};

enum mail_cte {
	MAIL_CTE_7BIT = 0, /* also when absent or not a valid token */
	MAIL_CTE_8BIT,
	MAIL_CTE_BINARY,
	MAIL_CTE_QP,
	MAIL_CTE_BASE64,
	MAIL_CTE_OTHER,    /* a token we do not know (x-uuencode, ...) */
};

enum mail_part_flags {
	MAIL_PART_MULTIPART = 1 << 0, /* children are the body parts */
	MAIL_PART_MESSAGE = 1 << 1,   /* message/rfc822: one child, the message */
	MAIL_PART_TEXT = 1 << 2,      /* Content-Type text/... */
	MAIL_PART_OPAQUE = 1 << 3,    /* structure not parsed (limit or encoding) */
	MAIL_PART_NO_EOH = 1 << 4,    /* header not ended by a blank line */
	MAIL_PART_DEFAULT_TYPE = 1 << 5, /* no valid Content-Type: default used */
};

/* A node of the MIME tree. The root is the whole message; a multipart's
 * children are its body parts; a message/rfc822 part has one child, the
 * encapsulated message (whose header is the message header). All offsets
 * are absolute in the message; body_off == hdr_off + hdr_size. hdr_size
 * includes the blank line ending the header. A body part's body excludes the
 * line end before the next boundary line (RFC 2046 5.1.1). Lines are counted
 * as LF bytes. String fields are NUL-terminated copies in the arena. */
struct mail_part {
	struct mail_part *parent, *children, *next;
	unsigned int n_children;
	unsigned int depth; /* 0 for the root */
	unsigned int flags; /* enum mail_part_flags */
	size_t hdr_off, hdr_size, body_off, body_size;
	size_t hdr_lines, body_lines;

	/* Content-Type as written (case kept), or the default ("text"
	 * "plain" / "message" "rfc822") with MAIL_PART_DEFAULT_TYPE. */
	const char *type, *subtype;
	struct mail_param *params;
	unsigned int n_params;
	/* Content-Transfer-Encoding token as written, or NULL. */
	const char *encoding;
	enum mail_cte cte;
	const char *id, *description, *md5, *location; /* unfolded or NULL */
	const char *disposition; /* the token, or NULL */
	struct mail_param *disp_params;
	unsigned int n_disp_params;
	const char **languages; /* Content-Language tags */
	unsigned int n_languages;

	/* For the root and for a message/rfc822 part's child; else NULL. */
	struct mail_envelope *envelope;
};

enum mail_message_flags {
	MAIL_MSG_LIMITED = 1 << 0, /* a depth/part/param/address limit cut data */
};

struct mail_message {
	const uint8_t *data; /* borrowed, see above */
	size_t size;
	struct mail_part *root;
	unsigned int n_parts;
	unsigned int flags; /* enum mail_message_flags */
	struct mail_arena *arena;
};

/* Parses data[0..size) (any bytes; it need not be a valid message). limits
 * may be NULL for the defaults. Returns 0 with *msg_r set, or -1 with
 * *error_r (static string) when the tree would exceed limits->max_memory or
 * memory ran out. Malformed input is never an error: see the header comment
 * for how it is read. */
int mail_message_parse(const uint8_t *data, size_t size,
		       const struct mail_limits *limits,
		       struct mail_message **msg_r, const char **error_r);
/* Frees the tree and everything parsed with it; clears *msg. */
void mail_message_free(struct mail_message **msg);

/* Returns the first parameter named name (case-insensitive; for an
 * extended parameter the name without '*'), or NULL. */
const struct mail_param *mail_param_find(const struct mail_param *params,
					 unsigned int n, const char *name);
/* Appends the parameter's value as UTF-8 to out: RFC 2231 charset and
 * percent-decoding for extended values, RFC 2047 encoded words and 8-bit
 * bytes (UTF-8, else Windows-1252) for plain ones. Returns 0, or -1 if out
 * is full. */
int mail_param_decode(const struct mail_param *param, struct pn_buf *out);

/* --- Header fields ---------------------------------------------------- */

/* One field of a header. name_len is 0 for a line kept in the header that
 * is not a field (no colon): then value/value_len is the line. value runs
 * from after the colon to the end of the field, with the line ends of folded
 * lines inside but not the final one; raw is the whole field including the
 * final line end (if any). */
struct mail_header_field {
	const uint8_t *name;
	size_t name_len;
	const uint8_t *value;
	size_t value_len;
	const uint8_t *raw;
	size_t raw_len;
};

/* Iterates the fields of a header held in hdr[0..len) (for a part:
 * msg->data + part->hdr_off, part->hdr_size). *pos starts at 0. Returns 1
 * with *field_r filled, or 0 at the blank line or the end. */
int mail_header_next(const uint8_t *hdr, size_t len, size_t *pos,
		     struct mail_header_field *field_r);
/* Finds the first field named name (case-insensitive) in a part's header.
 * Returns 1 with *field_r, or 0. */
int mail_part_header_find(const struct mail_message *msg,
			  const struct mail_part *part, const char *name,
			  struct mail_header_field *field_r);
/* Appends value[0..len) unfolded to out: CR, LF and NUL bytes removed,
 * leading whitespace dropped. Returns 0, or -1 if out is full. */
int mail_header_unfold(const uint8_t *value, size_t len, struct pn_buf *out);

/* --- IMAP sections (RFC 3501 6.4.5 BODY[section]) ---------------------- */

enum mail_section_kind {
	MAIL_SECTION_ALL,   /* "" or a part number: the part's body */
	MAIL_SECTION_HEADER,
	MAIL_SECTION_HEADER_FIELDS,
	MAIL_SECTION_HEADER_FIELDS_NOT,
	MAIL_SECTION_TEXT,
	MAIL_SECTION_MIME,
};

#define MAIL_SECTION_MAX_PARTS 64

struct mail_section {
	unsigned int part[MAIL_SECTION_MAX_PARTS];
	unsigned int n_part;
	enum mail_section_kind kind;
};

/* Parses section text without the field list and without brackets:
 * "", "HEADER", "1.2", "1.2.MIME", "3.HEADER.FIELDS.NOT", "TEXT"
 * (case-insensitive). Returns 0, or -1 with *error_r for a syntax error
 * (which is BAD in IMAP). */
int mail_section_parse(const char *text, size_t len,
		       struct mail_section *section_r, const char **error_r);

struct mail_section_data {
	bool synthesized; /* bytes were appended to the caller's buffer */
	size_t off, len;  /* range of msg->data when !synthesized */
};

/* Locates a section. For HEADER.FIELDS (.NOT) fields[0..n_fields) are the
 * field names and the selected fields (raw, line ends made CRLF) plus the
 * blank line are appended to out, as RFC 3501 6.4.5 defines; the blank line
 * is left out only for a header that had none. Returns 1 found, 0 when the
 * section does not exist in this message (a part number out of range, or
 * HEADER/TEXT of a part that is not message/rfc822: IMAP then returns an
 * empty string), -1 if out is full. */
int mail_section_locate(const struct mail_message *msg,
			const struct mail_section *section,
			const char *const *fields, unsigned int n_fields,
			struct pn_buf *out, struct mail_section_data *data_r);

/* Resolves a part number path (RFC 3501 6.4.5 numbering: a non-multipart
 * message or message/rfc822 body has part 1). Returns the part or NULL. */
const struct mail_part *mail_part_lookup(const struct mail_message *msg,
					 const unsigned int *path,
					 unsigned int n);

/* Appends in[0..len) to out with every LF not preceded by CR turned into
 * CRLF. Returns 0, or -1 if out is full. */
int mail_crlf_normalize(const uint8_t *in, size_t len, struct pn_buf *out);

#endif
