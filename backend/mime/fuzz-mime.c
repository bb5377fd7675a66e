/* libFuzzer target for backend/mime: parses any input as a message (with
 * small limits picked by the first byte), checks the tree's invariants,
 * writes ENVELOPE, BODY and BODYSTRUCTURE, locates sections, runs the
 * SEARCH helpers and the date and decoding functions over the input.
 * Build with -DPOSTERN_FUZZ=ON and CC=clang; seeds: backend/mime/testdata. */
#include "postern/buf.h"
#include "postern/mail-date.h"
#include "postern/mail-decode.h"
#include "postern/mail-imap.h"
#include "postern/mail-message.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Groups in an address list open and close in pairs, never nested. */
static void check_addresses(const struct mail_address *a)
{
	bool open = false;
	for (; a != NULL; a = a->next) {
		if (a->domain != NULL) {
			if (a->mailbox == NULL)
				abort();
		} else if (a->mailbox != NULL) {
			if (open)
				abort();
			open = true;
		} else {
			if (!open)
				abort();
			open = false;
		}
	}
	if (open)
		abort();
}

static void check_part(const struct mail_part *p, size_t lo, size_t hi)
{
	if (p->envelope != NULL) {
		check_addresses(p->envelope->from);
		check_addresses(p->envelope->sender);
		check_addresses(p->envelope->reply_to);
		check_addresses(p->envelope->to);
		check_addresses(p->envelope->cc);
		check_addresses(p->envelope->bcc);
	}
	if (p->hdr_off < lo || p->hdr_off + p->hdr_size != p->body_off ||
	    p->body_off + p->body_size > hi || p->type == NULL || p->subtype == NULL)
		abort();
	size_t pos = p->body_off;
	unsigned int n = 0;
	for (const struct mail_part *c = p->children; c != NULL; c = c->next) {
		if (c->parent != p || c->depth != p->depth + 1)
			abort();
		check_part(c, pos, p->body_off + p->body_size);
		pos = c->body_off + c->body_size;
		n++;
	}
	if (n != p->n_children)
		abort();
	if ((p->flags & MAIL_PART_MESSAGE) && (n != 1 || p->children->envelope == NULL))
		abort();
}

/* An IMAP value: balanced parentheses outside strings, quoted strings
 * with only \" and \\ escapes and no 8-bit/CR/LF, literals of the
 * length they announce. */
static void check_imap_value(const uint8_t *p, size_t len)
{
	long depth = 0;
	size_t i = 0;
	while (i < len) {
		uint8_t c = p[i];
		if (c == '(') {
			depth++;
			i++;
		} else if (c == ')') {
			if (--depth < 0)
				abort();
			i++;
		} else if (c == '"') {
			for (i++; i < len && p[i] != '"'; i++) {
				if (p[i] >= 0x80 || p[i] == '\r' || p[i] == '\n' || p[i] == 0)
					abort();
				if (p[i] == '\\') {
					i++;
					if (i >= len || (p[i] != '"' && p[i] != '\\'))
						abort();
				}
			}
			if (i >= len)
				abort();
			i++;
		} else if (c == '{') {
			size_t n = 0;
			for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++)
				n = n * 10 + (size_t)(p[i] - '0');
			if (i + 3 > len || p[i] != '}' || p[i + 1] != '\r' || p[i + 2] != '\n')
				abort();
			i += 3;
			if (n > len - i || memchr(p + i, 0, n) != NULL)
				abort();
			i += n;
		} else {
			i++;
		}
	}
	if (depth != 0)
		abort();
}

static void sections(const struct mail_message *msg, struct pn_buf *out)
{
	static const char *const specs[] = {
		"", "HEADER", "TEXT", "1", "1.MIME", "2", "1.1", "1.2.MIME",
		"2.HEADER", "2.TEXT", "1.1.1", "3.2.1", "2.HEADER.FIELDS",
		"HEADER.FIELDS.NOT", "1.HEADER.FIELDS",
	};
	static const char *const fields[] = { "From", "subject", "X-Y" };
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct mail_section s;
		struct mail_section_data d;
		const char *error;
		if (mail_section_parse(specs[i], strlen(specs[i]), &s, &error) < 0)
			abort();
		pn_buf_reset(out);
		int r = mail_section_locate(msg, &s, fields, 3, out, &d);
		if (r > 0 && !d.synthesized && d.off + d.len > msg->size)
			abort();
	}
}

static void search(const struct mail_message *msg)
{
	struct mail_search_key key;
	if (mail_search_key_init(&key, (const uint8_t *)"\xc3\xa9t\xc3\xa9 A", 7) < 0)
		return;
	(void)mail_search_header(msg, "subject", &key, 1 << 20);
	(void)mail_search_text(msg, &key, 1 << 20);
	mail_search_key_free(&key);
	for (const struct mail_part *p = msg->root; p != NULL; p = p->children) {
		struct pn_buf b;
		pn_buf_init(&b, 1 << 20);
		(void)mail_part_text(msg, p, &b);
		for (unsigned int i = 0; i < p->n_params; i++)
			(void)mail_param_decode(&p->params[i], &b);
		pn_buf_free(&b);
	}
	const struct mail_envelope *env = msg->root->envelope;
	if (env != NULL && env->date != NULL) {
		time_t t;
		int tz;
		char out[MAIL_IMAP_DATETIME_LEN + 1];
		if (mail_date_parse(env->date, strlen(env->date), &t, &tz) == 0) {
			mail_imap_datetime_format(t, tz, out);
			if (mail_imap_datetime_parse(out, strlen(out), &t, &tz) < 0)
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mail_limits lim;
	struct mail_message *msg;
	const char *error;
	struct pn_buf out;

	mail_limits_default(&lim);
	if (size > 0) {
		/* The first byte picks tight limits now and then. */
		if (data[0] & 1)
			lim.max_depth = 1 + (data[0] >> 4);
		if (data[0] & 2)
			lim.max_parts = 1 + (data[0] >> 3);
		if (data[0] & 4)
			lim.max_addresses = 1 + (data[0] >> 5);
		if ((data[0] & 0xF8) == 0xF8)
			lim.max_memory = 4096;
	}
	uint8_t *copy = malloc(size + 1); /* exact size: ASan sees overreads */
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	if (mail_message_parse(copy, size, &lim, &msg, &error) < 0) {
		free(copy);
		return 0;
	}
	check_part(msg->root, 0, size);
	if (msg->root->body_off + msg->root->body_size != size)
		abort();

	pn_buf_init(&out, 1 << 22);
	if (mail_envelope_write(msg, NULL, &out) < 0 ||
	    mail_bodystructure_write(msg, &out, true) < 0 ||
	    mail_bodystructure_write(msg, &out, false) < 0)
		abort();
	check_imap_value(pn_buf_rptr(&out), pn_buf_len(&out));
	sections(msg, &out);
	search(msg);
	pn_buf_reset(&out);
	(void)mail_rfc2047_decode(copy, size, &out);
	pn_buf_reset(&out);
	(void)mail_qp_decode(copy, size, &out);
	pn_buf_reset(&out);
	(void)mail_casefold_utf8(copy, size, &out);
	pn_buf_free(&out);
	mail_message_free(&msg);
	free(copy);
	return 0;
}
