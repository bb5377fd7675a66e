/* IMAP BODY[section] (RFC 3501 6.4.5 and 9): section text parsing, part
 * numbering, the byte range of HEADER / TEXT / MIME / a part's body, and
 * the synthesized header subset of HEADER.FIELDS (.NOT). */
#include "mime-private.h"

#include "postern/buf.h"

#include <strings.h>

/* section-spec    = section-msgtext / (section-part ["." section-text])
 * section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list /
 *                   "TEXT"
 * section-part    = nz-number *("." nz-number)
 * section-text    = section-msgtext / "MIME"
 * The header-list is not part of text here: the caller passes the names. */
int mail_section_parse(const char *text, size_t len,
		       struct mail_section *s, const char **error_r)
{
	static const struct {
		const char *word;
		enum mail_section_kind kind;
	} words[] = {
		{ "HEADER.FIELDS.NOT", MAIL_SECTION_HEADER_FIELDS_NOT },
		{ "HEADER.FIELDS", MAIL_SECTION_HEADER_FIELDS },
		{ "HEADER", MAIL_SECTION_HEADER },
		{ "TEXT", MAIL_SECTION_TEXT },
		{ "MIME", MAIL_SECTION_MIME },
	};
	size_t i = 0;

	memset(s, 0, sizeof(*s));
	s->kind = MAIL_SECTION_ALL;
	while (i < len && text[i] >= '0' && text[i] <= '9') {
		if (text[i] == '0') {
			*error_r = "part number must not start with 0";
			return -1;
		}
		unsigned long n = 0;
		while (i < len && text[i] >= '0' && text[i] <= '9') {
			n = n * 10 + (unsigned long)(text[i++] - '0');
			if (n > 0x7fffffffUL) {
				*error_r = "part number too large";
				return -1;
			}
		}
		if (s->n_part == MAIL_SECTION_MAX_PARTS) {
			*error_r = "too many part numbers";
			return -1;
		}
		s->part[s->n_part++] = (unsigned int)n;
		if (i == len)
			return 0;
		if (text[i] != '.') {
			*error_r = "invalid section";
			return -1;
		}
		i++;
		if (i == len) {
			*error_r = "section ends with '.'";
			return -1;
		}
	}
	if (i == len)
		return 0;
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		size_t wl = strlen(words[w].word);
		if (len - i == wl && strncasecmp(text + i, words[w].word, wl) == 0) {
			if (words[w].kind == MAIL_SECTION_MIME && s->n_part == 0) {
				*error_r = "MIME needs a part number";
				return -1;
			}
			s->kind = words[w].kind;
			return 0;
		}
	}
	*error_r = "unknown section";
	return -1;
}

/* RFC 3501 6.4.5: "Every message has at least one part number. Non-[MIME-
 * IMB] messages, and non-multipart [MIME-IMB] messages with no
 * encapsulated message, only have a part 1. ... A part of type
 * MESSAGE/RFC822 also has nested part numbers, referring to parts of the
 * MESSAGE part's body." */
const struct mail_part *mail_part_lookup(const struct mail_message *msg,
					 const unsigned int *path, unsigned int n)
{
	const struct mail_part *p = msg->root;
	bool at_message = true; /* p is a message; numbers index its body */

	for (unsigned int i = 0; i < n; i++) {
		if (!at_message) {
			if (p->flags & MAIL_PART_MESSAGE)
				p = p->children;
			else if (!(p->flags & MAIL_PART_MULTIPART))
				return NULL;
		}
		if (p->flags & MAIL_PART_MULTIPART) {
			const struct mail_part *c = p->children;
			for (unsigned int k = 1; c != NULL && k < path[i]; k++)
				c = c->next;
			if (c == NULL || path[i] == 0)
				return NULL;
			p = c;
		} else if (path[i] != 1) {
			return NULL;
		}
		at_message = false;
	}
	return p;
}

int mail_crlf_normalize(const uint8_t *in, size_t len, struct pn_buf *out)
{
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] != '\n' || (i > 0 && in[i - 1] == '\r'))
			continue;
		if (pn_buf_append(out, in + run, i - run) < 0 ||
		    pn_buf_append(out, "\r\n", 2) < 0)
			return -1;
		run = i + 1;
	}
	return pn_buf_append(out, in + run, len - run);
}

static bool field_listed(const struct mail_header_field *f,
			 const char *const *fields, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (mime_strcaseeq_n(f->name, f->name_len, fields[i]))
			return true;
	}
	return false;
}

/* RFC 3501 6.4.5: "The subset returned by HEADER.FIELDS contains only
 * those header fields with a field-name that matches one of the names in
 * the list; similarly, the subset returned by HEADER.FIELDS.NOT contains
 * only the header fields with a non-matching field-name. The field-matching
 * is case-insensitive but otherwise exact. Subsetting does not exclude the
 * [RFC-2822] delimiting blank line between the header and the body; the
 * blank line is included in all header fetches, except in the case of a
 * message which has no body and no blank line." */
static int header_subset(const struct mail_message *msg,
			 const struct mail_part *p, bool not,
			 const char *const *fields, unsigned int n,
			 struct pn_buf *out)
{
	const uint8_t *hdr = msg->data + p->hdr_off;
	struct mail_header_field f;
	size_t pos = 0;

	while (mail_header_next(hdr, p->hdr_size, &pos, &f) > 0) {
		bool listed = f.name_len > 0 && field_listed(&f, fields, n);
		if (listed == not)
			continue;
		if (mail_crlf_normalize(f.raw, f.raw_len, out) < 0)
			return -1;
		if (f.raw[f.raw_len - 1] != '\n' && pn_buf_append(out, "\r\n", 2) < 0)
			return -1;
	}
	if (!(p->flags & MAIL_PART_NO_EOH) && pn_buf_append(out, "\r\n", 2) < 0)
		return -1;
	return 0;
}

int mail_section_locate(const struct mail_message *msg,
			const struct mail_section *s,
			const char *const *fields, unsigned int n_fields,
			struct pn_buf *out, struct mail_section_data *d)
{
	const struct mail_part *p = msg->root;

	memset(d, 0, sizeof(*d));
	if (s->n_part > 0) {
		p = mail_part_lookup(msg, s->part, s->n_part);
		if (p == NULL)
			return 0;
		switch (s->kind) {
		case MAIL_SECTION_ALL:
			d->off = p->body_off;
			d->len = p->body_size;
			return 1;
		case MAIL_SECTION_MIME:
			d->off = p->hdr_off;
			d->len = p->hdr_size;
			return 1;
		default:
			/* HEADER, TEXT and the field subsets apply to the
			 * message inside a message/rfc822 part. */
			if (!(p->flags & MAIL_PART_MESSAGE))
				return 0;
			p = p->children;
			break;
		}
	} else if (s->kind == MAIL_SECTION_ALL) {
		d->off = 0;
		d->len = msg->size;
		return 1;
	}
	switch (s->kind) {
	case MAIL_SECTION_HEADER:
		d->off = p->hdr_off;
		d->len = p->hdr_size;
		return 1;
	case MAIL_SECTION_TEXT:
		d->off = p->body_off;
		d->len = p->body_size;
		return 1;
	case MAIL_SECTION_HEADER_FIELDS:
	case MAIL_SECTION_HEADER_FIELDS_NOT:
		d->synthesized = true;
		if (header_subset(msg, p, s->kind == MAIL_SECTION_HEADER_FIELDS_NOT,
				  fields, n_fields, out) < 0)
			return -1;
		return 1;
	default:
		return 0;
	}
}
