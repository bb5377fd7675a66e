/* Header fields (RFC 5322 2.2): line classification shared with the MIME
 * parser, the field iterator, unfolding and lookup by name. */
#include "mime-private.h"

#include "mail-arena.h"
#include "postern/buf.h"

bool mime_strcaseeq_n(const uint8_t *a, size_t alen, const char *b)
{
	size_t i;
	for (i = 0; i < alen; i++) {
		uint8_t x = a[i], y = (uint8_t)b[i];
		if (y == '\0')
			return false;
		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (uint8_t)(y + 32);
		if (x != y)
			return false;
	}
	return b[i] == '\0';
}

/* RFC 5322 2.2 / 3.6.8:
 *   field-name = 1*ftext
 *   ftext      = %d33-57 / %d59-126   ; printable US-ASCII except ":"
 * obs-optional (4.5.8) allows whitespace before the colon. Folding (2.2.3)
 * continues a field on lines starting with WSP. */
enum mime_line_kind mime_line_classify(const uint8_t *line, size_t len)
{
	size_t content = len - mime_eol_len(line, len);
	size_t i = 0;

	if (content == 0)
		return len > 0 ? MIME_LINE_BLANK : MIME_LINE_OTHER;
	if (mime_is_wsp(line[0]))
		return MIME_LINE_CONT;
	while (i < content && line[i] >= 33 && line[i] <= 126 && line[i] != ':')
		i++;
	if (i == 0)
		return MIME_LINE_OTHER;
	while (i < content && mime_is_wsp(line[i]))
		i++;
	return i < content && line[i] == ':' ? MIME_LINE_FIELD : MIME_LINE_OTHER;
}

int mail_header_next(const uint8_t *hdr, size_t len, size_t *pos,
		     struct mail_header_field *f)
{
	size_t p = *pos;

	if (p >= len)
		return 0;
	size_t le = mime_line_end(hdr, len, p);
	enum mime_line_kind kind = mime_line_classify(hdr + p, le - p);
	if (kind == MIME_LINE_BLANK)
		return 0;

	size_t start = p, value_start;
	if (kind == MIME_LINE_FIELD) {
		size_t n = p;
		while (hdr[n] != ':' && !mime_is_wsp(hdr[n]))
			n++;
		f->name = hdr + p;
		f->name_len = n - p;
		while (hdr[n] != ':')
			n++;
		value_start = n + 1;
	} else {
		f->name = hdr + p;
		f->name_len = 0;
		value_start = p;
	}
	p = le;
	while (p < len) {
		size_t e = mime_line_end(hdr, len, p);
		if (mime_line_classify(hdr + p, e - p) != MIME_LINE_CONT)
			break;
		p = e;
	}
	size_t value_end = p - mime_eol_len(hdr + start, p - start);
	if (value_end < value_start)
		value_end = value_start;
	f->value = hdr + value_start;
	f->value_len = value_end - value_start;
	f->raw = hdr + start;
	f->raw_len = p - start;
	*pos = p;
	return 1;
}

int mail_part_header_find(const struct mail_message *msg,
			  const struct mail_part *part, const char *name,
			  struct mail_header_field *field_r)
{
	const uint8_t *hdr = msg->data + part->hdr_off;
	size_t pos = 0;

	while (mail_header_next(hdr, part->hdr_size, &pos, field_r) > 0) {
		if (field_r->name_len > 0 &&
		    mime_strcaseeq_n(field_r->name, field_r->name_len, name))
			return 1;
	}
	return 0;
}

static size_t unfold_skip(const uint8_t *value, size_t len)
{
	size_t i = 0;
	while (i < len && (mime_is_wsp(value[i]) || value[i] == '\r' ||
			   value[i] == '\n'))
		i++;
	return i;
}

int mail_header_unfold(const uint8_t *value, size_t len, struct pn_buf *out)
{
	size_t i = unfold_skip(value, len), run = i;

	for (; i < len; i++) {
		uint8_t c = value[i];
		if (c == '\r' || c == '\n' || c == '\0') {
			if (pn_buf_append(out, value + run, i - run) < 0)
				return -1;
			run = i + 1;
		}
	}
	return pn_buf_append(out, value + run, len - run);
}

char *mime_unfold_dup(struct mail_arena *arena, const uint8_t *value,
		      size_t len)
{
	size_t i = unfold_skip(value, len), n = 0;
	char *s = mail_arena_alloc(arena, len - i + 1);

	if (s == NULL)
		return NULL;
	for (; i < len; i++) {
		uint8_t c = value[i];
		if (c != '\r' && c != '\n' && c != '\0')
			s[n++] = (char)c;
	}
	s[n] = '\0';
	return s;
}
