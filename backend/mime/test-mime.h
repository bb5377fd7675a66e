/* Helpers shared by the backend/mime unit tests: loading the corpus in
 * testdata/, parsing, and rendering IMAP values and sections to strings. */
#ifndef POSTERN_TEST_MIME_H
#define POSTERN_TEST_MIME_H

#include "postern/buf.h"
#include "postern/mail-imap.h"
#include "postern/mail-message.h"
#include "postern/testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads backend/mime/testdata/name (under $POSTERN_SOURCE_DIR, which ctest
 * sets, else next to this file). Exits on failure: a missing corpus file is
 * a broken checkout, not a test result. */
static inline uint8_t *test_load(const char *name, size_t *len_r)
{
	char path[4096];
	const char *top = getenv("POSTERN_SOURCE_DIR");
	if (top != NULL) {
		snprintf(path, sizeof(path), "%s/backend/mime/testdata/%s", top, name);
	} else {
		const char *slash = strrchr(__FILE__, '/');
		int dirlen = slash != NULL ? (int)(slash - __FILE__) : 1;
		snprintf(path, sizeof(path), "%.*s/testdata/%s", dirlen,
			 slash != NULL ? __FILE__ : ".", name);
	}
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		exit(2);
	}
	uint8_t *data = malloc(1 << 20);
	size_t n = data != NULL ? fread(data, 1, 1 << 20, f) : 0;
	fclose(f);
	if (data == NULL)
		exit(2);
	*len_r = n;
	return data;
}

static inline struct mail_message *test_parse(const uint8_t *data, size_t len,
					      const struct mail_limits *lim)
{
	struct mail_message *msg = NULL;
	const char *error = NULL;
	if (mail_message_parse(data, len, lim, &msg, &error) < 0) {
		fprintf(stderr, "parse failed: %s\n", error);
		exit(2);
	}
	return msg;
}

/* Static result strings, valid until the next call of the same helper. */
static inline const char *test_bodystructure(const struct mail_message *msg,
					     bool ext)
{
	static struct pn_buf b;
	pn_buf_free(&b);
	pn_buf_init(&b, 1 << 20);
	if (mail_bodystructure_write(msg, &b, ext) < 0 || pn_buf_append(&b, "", 1) < 0)
		return "(write failed)";
	return (const char *)pn_buf_rptr(&b);
}

static inline const char *test_envelope(const struct mail_message *msg,
					const struct mail_part *part)
{
	static struct pn_buf b;
	pn_buf_free(&b);
	pn_buf_init(&b, 1 << 20);
	if (mail_envelope_write(msg, part, &b) < 0 || pn_buf_append(&b, "", 1) < 0)
		return "(write failed)";
	return (const char *)pn_buf_rptr(&b);
}

/* The section's bytes as a string, "(none)" when it does not exist or
 * "(error)" on a syntax error. fields: NULL-terminated list. The result
 * stays valid for the next 7 calls. */
static inline const char *test_section(const struct mail_message *msg,
				       const char *spec, const char *const *fields)
{
	static struct pn_buf ring[8];
	static unsigned int next;
	struct pn_buf *bp = &ring[next++ % 8];
#define b (*bp)
	struct mail_section s;
	struct mail_section_data d;
	const char *error;
	unsigned int n = 0;

	while (fields != NULL && fields[n] != NULL)
		n++;
	pn_buf_free(&b);
	pn_buf_init(&b, 1 << 20);
	if (mail_section_parse(spec, strlen(spec), &s, &error) < 0)
		return "(error)";
	int r = mail_section_locate(msg, &s, fields, n, &b, &d);
	if (r < 0)
		return "(full)";
	if (r == 0)
		return "(none)";
	if (!d.synthesized && pn_buf_append(&b, msg->data + d.off, d.len) < 0)
		return "(full)";
	if (pn_buf_append(&b, "", 1) < 0)
		return "(full)";
	return (const char *)pn_buf_rptr(&b);
#undef b
}

#endif
