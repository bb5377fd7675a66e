/* Unit tests for the MIME tree parser and IMAP sections (postern/
 * mail-message.h): offsets, sizes and line counts, part numbering,
 * HEADER / TEXT / MIME / HEADER.FIELDS (.NOT), broken input, limits, and
 * every prefix of every corpus message (the whole-message parser's
 * counterpart of a byte-at-a-time test). */
#include "test-mime.h"

static const char *const corpus[] = {
	"simple.eml", "alternative.eml", "attachment.eml", "nested.eml",
	"forward.eml", "broken-header.eml", "missing-boundary.eml",
	"bare-lf.eml", "empty-body.eml", "no-content-type.eml", "group.eml",
	"digest.eml",
};

#define FIELDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static struct mail_message *parse_str(const char *s)
{
	return test_parse((const uint8_t *)s, strlen(s), NULL);
}

PN_TEST(test_simple_offsets)
{
	size_t len;
	uint8_t *data = test_load("simple.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);
	const struct mail_part *r = msg->root;
	const uint8_t *eoh = memmem(data, len, "\r\n\r\n", 4);

	CHECK(eoh != NULL);
	CHECK_INT(msg->n_parts, 1);
	CHECK_INT(r->hdr_off, 0);
	CHECK_INT(r->body_off, (size_t)(eoh - data) + 4);
	CHECK_INT(r->hdr_off + r->hdr_size, r->body_off);
	CHECK_INT(r->body_off + r->body_size, len);
	CHECK_INT(r->hdr_lines, 13);
	CHECK_INT(r->body_lines, 5);
	CHECK_STR(r->type, "text");
	CHECK_STR(r->subtype, "plain");
	CHECK(r->flags & MAIL_PART_TEXT);
	CHECK(!(r->flags & (MAIL_PART_NO_EOH | MAIL_PART_DEFAULT_TYPE)));
	CHECK_INT(r->n_params, 1);
	CHECK_STR(r->params[0].name, "charset");
	CHECK_STR(r->params[0].value, "us-ascii");
	CHECK_STR(r->disposition, "inline");
	CHECK_INT(r->cte, MAIL_CTE_7BIT);
	CHECK(r->encoding == NULL);
	CHECK_STR(r->envelope->subject, "Lunch on Friday?");
	CHECK_STR(test_section(msg, "1", NULL),
		  "Hi Bob,\r\n\r\nare you free for lunch on Friday?\r\n\r\nAlice\r\n");
	CHECK_STR(test_section(msg, "TEXT", NULL),
		  "Hi Bob,\r\n\r\nare you free for lunch on Friday?\r\n\r\nAlice\r\n");
	CHECK_STR(test_section(msg, "1.1", NULL), "(none)");
	CHECK_STR(test_section(msg, "2", NULL), "(none)");
	CHECK_STR(test_section(msg, "1.HEADER", NULL), "(none)");
	CHECK_STR(test_section(msg, "HEADER.FIELDS", FIELDS("received")),
		  "Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n"
		  "\tby mail.example.net with ESMTPS id 4Xyz\r\n"
		  "\tfor <bob@example.net>; Tue, 05 Mar 2024 10:11:12 +0100\r\n\r\n");
	CHECK_STR(test_section(msg, "HEADER.FIELDS", FIELDS("X-Nothing")), "\r\n");
	/* "1.MIME" of a single-part message is the message header. */
	const char *mime = test_section(msg, "1.MIME", NULL);
	CHECK(strncmp(mime, "Return-Path: <alice@example.org>\r\n", 34) == 0);
	CHECK_INT(strlen(mime), r->hdr_size);
	CHECK_STR(test_section(msg, "", NULL) + len - 7, "Alice\r\n");
	mail_message_free(&msg);
	CHECK(msg == NULL);
	free(data);
}

PN_TEST(test_nested_sections)
{
	size_t len;
	uint8_t *data = test_load("nested.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);
	const struct mail_part *r = msg->root;

	CHECK_INT(msg->n_parts, 7);
	CHECK_INT(r->n_children, 2);
	CHECK(r->flags & MAIL_PART_MULTIPART);
	CHECK_STR(r->children->subtype, "alternative");
	CHECK_INT(r->children->n_children, 2);
	CHECK_INT(r->children->depth, 1);
	CHECK_INT(r->children->children->next->children->next->depth, 3);

	const char *alt = test_section(msg, "1", NULL);
	CHECK(strncmp(alt, "--inner\r\n", 9) == 0);
	CHECK(ends_with(alt, "\r\n--inner--\r\n"));
	CHECK_STR(test_section(msg, "1.1", NULL), "Plain text version.\r\n");
	const char *rel = test_section(msg, "1.2", NULL);
	CHECK(strncmp(rel, "--rel\r\n", 7) == 0);
	CHECK(ends_with(rel, "\r\n--rel--\r\n"));
	CHECK_STR(test_section(msg, "1.2.1", NULL),
		  "<html><body><img src=\"cid:logo@example.com\"></body></html>\r\n");
	CHECK_STR(test_section(msg, "1.2.2", NULL), "iVBORw0KGgo=");
	CHECK_STR(test_section(msg, "1.2.2.MIME", NULL),
		  "Content-Type: image/png\r\n"
		  "Content-Transfer-Encoding: base64\r\n"
		  "Content-ID: <logo@example.com>\r\n"
		  "Content-Disposition: inline; filename=\"logo.png\"\r\n\r\n");
	CHECK_STR(test_section(msg, "1.MIME", NULL),
		  "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n");
	CHECK_STR(test_section(msg, "2", NULL), "AAECAwQF");
	CHECK_STR(test_section(msg, "3", NULL), "(none)");
	CHECK_STR(test_section(msg, "1.3", NULL), "(none)");
	CHECK_STR(test_section(msg, "1.1.1", NULL), "(none)");
	CHECK_STR(test_section(msg, "2.HEADER", NULL), "(none)");
	CHECK_STR(test_section(msg, "2.TEXT", NULL), "(none)");
	const char *hdr = test_section(msg, "HEADER", NULL);
	CHECK(ends_with(hdr, "\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"));
	const char *text = test_section(msg, "TEXT", NULL);
	CHECK(strncmp(text, "--outer\r\n", 9) == 0);
	CHECK(ends_with(text, "\r\n--outer--\r\n"));
	CHECK_INT(strlen(hdr) + strlen(text), len);

	unsigned int path[] = { 1, 2, 2 };
	const struct mail_part *png = mail_part_lookup(msg, path, 3);
	CHECK(png != NULL && strcmp(png->subtype, "png") == 0);
	CHECK(png != NULL && png->cte == MAIL_CTE_BASE64);
	CHECK(mail_part_lookup(msg, path, 0) == r);
	mail_message_free(&msg);
	free(data);
}

PN_TEST(test_message_rfc822_sections)
{
	size_t len;
	uint8_t *data = test_load("forward.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);
	const struct mail_part *fwd = msg->root->children->next;

	CHECK(fwd->flags & MAIL_PART_MESSAGE);
	CHECK_INT(fwd->n_children, 1);
	CHECK(fwd->children->envelope != NULL);
	CHECK_STR(fwd->children->envelope->subject, "Plans");
	CHECK_STR(fwd->description, "Forwarded message");

	const char *whole = test_section(msg, "2", NULL);
	CHECK(strncmp(whole, "From: Judy <judy@example.com>\r\n", 31) == 0);
	CHECK(ends_with(whole, "</p>\r\n\r\n--fwdalt--\r\n"));
	const char *h = test_section(msg, "2.HEADER", NULL);
	CHECK(strncmp(h, "From: Judy", 10) == 0);
	CHECK(ends_with(h, "\r\nContent-Type: multipart/alternative; "
			"boundary=\"fwdalt\"\r\n\r\n"));
	const char *t = test_section(msg, "2.TEXT", NULL);
	CHECK(strncmp(t, "--fwdalt\r\n", 10) == 0);
	CHECK_INT(strlen(h) + strlen(t), strlen(whole));
	CHECK_STR(test_section(msg, "2.1", NULL), "Let's meet at noon.\r\n");
	CHECK_STR(test_section(msg, "2.2", NULL), "<p>Let's meet at noon.</p>\r\n");
	CHECK_STR(test_section(msg, "2.2.MIME", NULL),
		  "Content-Type: text/html; charset=us-ascii\r\n\r\n");
	CHECK_STR(test_section(msg, "2.MIME", NULL),
		  "Content-Type: message/rfc822\r\n"
		  "Content-Description: Forwarded message\r\n\r\n");
	CHECK_STR(test_section(msg, "2.3", NULL), "(none)");
	CHECK_STR(test_section(msg, "2.HEADER.FIELDS", FIELDS("subject", "FROM", "x-none")),
		  "From: Judy <judy@example.com>\r\nSubject: Plans\r\n\r\n");
	CHECK_STR(test_section(msg, "HEADER.FIELDS.NOT",
			       FIELDS("From", "To", "Date", "Message-ID", "MIME-Version")),
		  "Subject: Fwd: Plans\r\n"
		  "Content-Type: multipart/mixed; boundary=\"fwd\"\r\n\r\n");
	CHECK_STR(test_section(msg, "1", NULL), "See below.\r\n");
	CHECK_STR(test_section(msg, "1.MIME", NULL), "Content-Type: text/plain\r\n\r\n");
	mail_message_free(&msg);
	free(data);
}

PN_TEST(test_message_in_message)
{
	struct mail_message *msg = parse_str(
		"Content-Type: message/rfc822\r\n\r\n"
		"Subject: outer-inner\r\nContent-Type: message/rfc822\r\n\r\n"
		"Subject: innermost\r\n\r\ndeep body\r\n");
	CHECK_INT(msg->n_parts, 3);
	CHECK_STR(test_section(msg, "1.1.1", NULL), "deep body\r\n");
	CHECK_STR(test_section(msg, "1.1", NULL), "Subject: innermost\r\n\r\ndeep body\r\n");
	CHECK_STR(test_section(msg, "1.1.1.1", NULL), "(none)");
	CHECK_STR(test_section(msg, "1.2", NULL), "(none)");
	CHECK_STR(test_section(msg, "HEADER", NULL), "Content-Type: message/rfc822\r\n\r\n");
	CHECK_STR(test_section(msg, "1.HEADER", NULL),
		  "Subject: outer-inner\r\nContent-Type: message/rfc822\r\n\r\n");
	CHECK_STR(test_section(msg, "1.1.HEADER", NULL), "Subject: innermost\r\n\r\n");
	CHECK_STR(test_section(msg, "1.1.TEXT", NULL), "deep body\r\n");
	CHECK_STR(test_bodystructure(msg, true),
		  "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 87 "
		  "(NIL \"outer-inner\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		  "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 33 "
		  "(NIL \"innermost\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 1 "
		  "NIL NIL NIL NIL) 3 NIL NIL NIL NIL) 6 NIL NIL NIL NIL)");
	mail_message_free(&msg);
}

PN_TEST(test_bare_lf)
{
	size_t len;
	uint8_t *data = test_load("bare-lf.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);

	CHECK_INT(msg->root->n_children, 2);
	CHECK_STR(test_section(msg, "1.MIME", NULL), "\n");
	CHECK_STR(test_section(msg, "1", NULL), "no header here\n");
	CHECK_STR(test_section(msg, "2", NULL), "two\nlines");
	CHECK_INT(msg->root->children->next->body_lines, 1);
	CHECK_STR(test_section(msg, "HEADER.FIELDS", FIELDS("Subject", "to")),
		  "To: m@example.com\r\nSubject: bare LF\r\n\r\n");
	CHECK(msg->root->children->flags & MAIL_PART_DEFAULT_TYPE);
	mail_message_free(&msg);
	free(data);
}

PN_TEST(test_header_without_blank_line)
{
	size_t len;
	uint8_t *data = test_load("no-content-type.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);

	CHECK(msg->root->flags & MAIL_PART_NO_EOH);
	CHECK(msg->root->flags & MAIL_PART_DEFAULT_TYPE);
	CHECK_STR(test_section(msg, "HEADER", NULL),
		  "From: o@example.com\r\nSubject: header runs into the body\r\n");
	CHECK_STR(test_section(msg, "TEXT", NULL),
		  "Hello, this line starts the body without a blank line.\r\n"
		  "Second line.\r\n");
	CHECK_STR(test_section(msg, "HEADER.FIELDS", FIELDS("from")),
		  "From: o@example.com\r\n");
	mail_message_free(&msg);
	free(data);

	/* Header only, not even a final line end. */
	msg = parse_str("Subject: x");
	CHECK_INT(msg->root->hdr_size, 10);
	CHECK_INT(msg->root->body_size, 0);
	CHECK(msg->root->flags & MAIL_PART_NO_EOH);
	CHECK_STR(test_section(msg, "HEADER.FIELDS", FIELDS("subject")), "Subject: x\r\n");
	CHECK_STR(msg->root->envelope->subject, "x");
	mail_message_free(&msg);

	/* Nothing at all. */
	msg = test_parse((const uint8_t *)"", 0, NULL);
	CHECK_INT(msg->n_parts, 1);
	CHECK_INT(msg->root->hdr_size + msg->root->body_size, 0);
	CHECK_STR(test_section(msg, "", NULL), "");
	CHECK_STR(test_section(msg, "1", NULL), "");
	mail_message_free(&msg);
}

PN_TEST(test_broken_header_lines)
{
	size_t len;
	uint8_t *data = test_load("broken-header.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);
	struct mail_header_field f;

	/* The mbox "From " line and the line without a colon stay in the
	 * header because fields follow them. */
	CHECK(!(msg->root->flags & MAIL_PART_NO_EOH));
	CHECK_STR(test_section(msg, "TEXT", NULL), "Body text with 8-bit: Grüße\r\n");
	CHECK(mail_part_header_find(msg, msg->root, "subject", &f) == 1);
	CHECK_MEM(f.value, f.value_len, " broken \"quoted\" \\ header", 25);
	CHECK(mail_part_header_find(msg, msg->root, "X-Mailer", &f) == 0);
	CHECK_STR(test_section(msg, "HEADER.FIELDS.NOT",
			       FIELDS("from", "subject", "to", "content-type",
				      "content-transfer-encoding")),
		  "From someone@example.com Sat Mar  9 10:00:00 2024\r\n"
		  "X-Mailer junk line without colon\r\n\r\n");
	CHECK_STR(test_section(msg, "HEADER.FIELDS", FIELDS("to")),
		  "To: a@b.example,\r\n , c@d.example\r\n\r\n");
	CHECK_INT(msg->root->cte, MAIL_CTE_8BIT);
	CHECK_STR(msg->root->encoding, "8BIT");
	mail_message_free(&msg);
	free(data);
}

PN_TEST(test_header_ends_at_boundary)
{
	struct mail_message *msg = parse_str(
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
		"--x\r\nContent-Type: text/plain\r\n--x\r\nHello\r\n--x--\r\n");
	const struct mail_part *a = msg->root->children;

	CHECK_INT(msg->root->n_children, 2);
	CHECK(a->flags & MAIL_PART_NO_EOH);
	CHECK_STR(test_section(msg, "1.MIME", NULL), "Content-Type: text/plain");
	CHECK_STR(test_section(msg, "1", NULL), "");
	CHECK_STR(test_section(msg, "2.MIME", NULL), "");
	CHECK_STR(test_section(msg, "2", NULL), "Hello");
	CHECK_STR(test_bodystructure(msg, false),
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0) \"mixed\")");
	mail_message_free(&msg);
}

PN_TEST(test_missing_final_boundary)
{
	size_t len;
	uint8_t *data = test_load("missing-boundary.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);

	CHECK_INT(msg->root->n_children, 2);
	CHECK_STR(test_section(msg, "1", NULL), "first part\r\n");
	CHECK_STR(test_section(msg, "2", NULL), "second part, never closed\r\n");
	CHECK_INT(msg->root->body_off + msg->root->body_size, len);
	mail_message_free(&msg);
	free(data);

	/* An inner multipart left open ends where its parent's boundary
	 * comes, and the parent goes on. */
	msg = parse_str("Content-Type: multipart/mixed; boundary=out\r\n\r\n"
			"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
			"--in\r\n\r\ninner one\r\n"
			"--out\r\n\r\nouter two\r\n--out--\r\n");
	CHECK_INT(msg->root->n_children, 2);
	CHECK_INT(msg->root->children->n_children, 1);
	CHECK_STR(test_section(msg, "1.1", NULL), "inner one");
	CHECK_STR(test_section(msg, "2", NULL), "outer two");
	mail_message_free(&msg);

	/* Boundaries that prefix each other: the longest match wins. */
	msg = parse_str("Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
			"--ab\r\nContent-Type: multipart/mixed; boundary=abcd\r\n\r\n"
			"--abcd\r\n\r\nx\r\n--abcd--\r\n"
			"--ab\r\n\r\ny\r\n--ab--\r\n");
	CHECK_INT(msg->root->n_children, 2);
	CHECK_INT(msg->root->children->n_children, 1);
	CHECK_STR(test_section(msg, "1.1", NULL), "x");
	CHECK_STR(test_section(msg, "2", NULL), "y");
	mail_message_free(&msg);
}

PN_TEST(test_params)
{
	size_t len;
	uint8_t *data = test_load("attachment.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);
	const struct mail_part *pdf = msg->root->children->next;
	struct pn_buf b;

	CHECK_STR(mail_param_find(msg->root->params, msg->root->n_params,
				  "BOUNDARY")->value, "----=_Part_0_1234.5678");
	CHECK_INT(pdf->n_disp_params, 2);
	const struct mail_param *fn = mail_param_find(pdf->disp_params,
						      pdf->n_disp_params, "filename");
	CHECK(fn != NULL && fn->extended);
	pn_buf_init(&b, 1024);
	CHECK(fn != NULL && mail_param_decode(fn, &b) == 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "R\xc3\xa9sum\xc3\xa9.pdf", 12);
	pn_buf_free(&b);
	mail_message_free(&msg);
	free(data);

	msg = parse_str("Content-Type: text/plain; charset = \"iso-8859-1\" (Latin) ;"
			" name*1=\"b c\"; name*0=a; title*0*=us-ascii'en'%41%42;"
			" title*1=\"%43\"; broken*2=z; broken*0=y;"
			" q=\"a\\\"b\"; plain=x y.txt; =junk; empty=\r\n\r\n");
	const struct mail_part *r = msg->root;
	CHECK_INT(r->n_params, 8);
	CHECK_STR(r->params[0].name, "charset");
	CHECK_STR(r->params[0].value, "iso-8859-1");
	CHECK_STR(r->params[1].name, "name");
	CHECK_STR(r->params[1].value, "ab c");
	CHECK(!r->params[1].extended);
	CHECK_STR(r->params[2].name, "title");
	CHECK_STR(r->params[2].value, "us-ascii'en'%41%42%2543");
	CHECK(r->params[2].extended);
	CHECK_STR(r->params[3].name, "broken*0");
	CHECK_STR(r->params[4].name, "broken*2");
	CHECK_STR(r->params[5].value, "a\"b");
	CHECK_STR(r->params[6].name, "plain");
	CHECK_STR(r->params[6].value, "x y.txt");
	CHECK_STR(r->params[7].name, "empty");
	CHECK_STR(r->params[7].value, "");
	pn_buf_init(&b, 64);
	CHECK_INT(mail_param_decode(&r->params[2], &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "AB%43", 5);
	pn_buf_free(&b);
	mail_message_free(&msg);

	/* An invalid Content-Type counts as absent (RFC 2045 5.2). */
	msg = parse_str("Content-Type: text\r\nContent-Disposition: ;x=y\r\n\r\nbody");
	CHECK(msg->root->flags & MAIL_PART_DEFAULT_TYPE);
	CHECK_STR(msg->root->type, "text");
	CHECK(msg->root->disposition == NULL);
	mail_message_free(&msg);
}

static struct mail_message *parse_limited(const char *s, unsigned int max_addresses)
{
	struct mail_limits lim;
	mail_limits_default(&lim);
	lim.max_addresses = max_addresses;
	return test_parse((const uint8_t *)s, strlen(s), &lim);
}

static void deep_message(struct pn_buf *b, unsigned int levels)
{
	for (unsigned int i = 0; i < levels; i++)
		pn_buf_printf(b, "Content-Type: multipart/mixed; boundary=\"=b%u=\"\r\n\r\n"
			      "--=b%u=\r\n", i, i);
	pn_buf_append_str(b, "Content-Type: text/plain\r\n\r\nx\r\n");
	for (unsigned int i = levels; i-- > 0;)
		pn_buf_printf(b, "--=b%u=--\r\n", i);
}

PN_TEST(test_limits)
{
	struct pn_buf b;
	struct mail_limits lim;
	struct mail_message *msg;
	const char *error = NULL;

	pn_buf_init(&b, 1 << 20);
	deep_message(&b, 25);
	msg = test_parse(pn_buf_rptr(&b), pn_buf_len(&b), NULL);
	CHECK(msg->flags & MAIL_MSG_LIMITED);
	CHECK_INT(msg->n_parts, 21);
	const struct mail_part *p = msg->root;
	while (p->children != NULL)
		p = p->children;
	CHECK_INT(p->depth, 20);
	CHECK(p->flags & MAIL_PART_OPAQUE);
	const char *bs = test_bodystructure(msg, false);
	const char *app = strstr(bs, "(\"application\" \"octet-stream\" (\"boundary\" \"=b20=\") "
				     "NIL NIL \"7bit\" ");
	CHECK(app != NULL);
	CHECK(app != NULL && strstr(app + 14, "application") == NULL);
	mail_message_free(&msg);

	/* Within the limit: all 10 levels parsed. */
	pn_buf_reset(&b);
	deep_message(&b, 10);
	msg = test_parse(pn_buf_rptr(&b), pn_buf_len(&b), NULL);
	CHECK(!(msg->flags & MAIL_MSG_LIMITED));
	CHECK_INT(msg->n_parts, 11);
	mail_message_free(&msg);

	/* Part count. */
	pn_buf_reset(&b);
	pn_buf_append_str(&b, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < 10; i++)
		pn_buf_printf(&b, "--p\r\n\r\npart %d\r\n", i);
	pn_buf_append_str(&b, "--p--\r\n");
	mail_limits_default(&lim);
	lim.max_parts = 5;
	msg = test_parse(pn_buf_rptr(&b), pn_buf_len(&b), &lim);
	CHECK(msg->flags & MAIL_MSG_LIMITED);
	CHECK_INT(msg->n_parts, 5);
	CHECK_INT(msg->root->n_children, 4);
	CHECK_STR(test_section(msg, "4", NULL), "part 3");
	mail_message_free(&msg);

	/* Memory: the only error. */
	lim.max_memory = 300;
	msg = NULL;
	CHECK_INT(mail_message_parse(pn_buf_rptr(&b), pn_buf_len(&b), &lim, &msg, &error), -1);
	CHECK(error != NULL);

	/* Addresses and parameters. */
	pn_buf_reset(&b);
	pn_buf_append_str(&b, "To: g: a@x, b@x, c@x, d@x;\r\n"
			      "Content-Type: text/plain; a=1; b=2; c=3\r\n\r\n");
	mail_limits_default(&lim);
	lim.max_addresses = 3;
	lim.max_params = 2;
	msg = test_parse(pn_buf_rptr(&b), pn_buf_len(&b), &lim);
	CHECK(msg->flags & MAIL_MSG_LIMITED);
	CHECK_INT(msg->root->n_params, 2);
	CHECK_STR(test_envelope(msg, NULL),
		  "(NIL NIL NIL NIL NIL ((NIL NIL \"g\" NIL)(NIL NIL \"a\" \"x\")"
		  "(NIL NIL \"b\" \"x\")(NIL NIL NIL NIL)) NIL NIL NIL NIL)");
	mail_message_free(&msg);

	/* A group cut by the limit still ends; with no room at all nothing
	 * is listed. */
	lim.max_addresses = 1;
	msg = test_parse(pn_buf_rptr(&b), pn_buf_len(&b), &lim);
	CHECK_STR(test_envelope(msg, NULL),
		  "(NIL NIL NIL NIL NIL ((NIL NIL \"g\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)");
	mail_message_free(&msg);
	/* The group's ';' comes when the list is full (a fuzzer find). */
	msg = parse_limited("Cc: a@x, g: b@x;, c@x\r\n\r\n", 3);
	CHECK_STR(test_envelope(msg, NULL),
		  "(NIL NIL NIL NIL NIL NIL ((NIL NIL \"a\" \"x\")(NIL NIL \"g\" NIL)"
		  "(NIL NIL \"b\" \"x\")(NIL NIL NIL NIL)) NIL NIL NIL)");
	CHECK(msg->flags & MAIL_MSG_LIMITED);
	mail_message_free(&msg);
	lim.max_addresses = 0;
	msg = test_parse(pn_buf_rptr(&b), pn_buf_len(&b), &lim);
	CHECK_STR(test_envelope(msg, NULL), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	mail_message_free(&msg);
	pn_buf_free(&b);
}

PN_TEST(test_section_parse)
{
	static const char *const bad[] = {
		"1.", "0", "01", "1..2", "MIME", "1.FOO", "HEADER.FIELDS.NOTX",
		"1.2x", ".1", "HEADER.", "TEXT.1", "99999999999",
	};
	struct mail_section s;
	const char *error;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		CHECK_INT(mail_section_parse(bad[i], strlen(bad[i]), &s, &error), -1);
		CHECK(error != NULL);
	}
	CHECK_INT(mail_section_parse("", 0, &s, &error), 0);
	CHECK_INT(s.n_part, 0);
	CHECK_INT(s.kind, MAIL_SECTION_ALL);
	CHECK_INT(mail_section_parse("1.22.3", 6, &s, &error), 0);
	CHECK_INT(s.n_part, 3);
	CHECK_INT(s.part[1], 22);
	CHECK_INT(mail_section_parse("header.fields.not", 17, &s, &error), 0);
	CHECK_INT(s.kind, MAIL_SECTION_HEADER_FIELDS_NOT);
	CHECK_INT(mail_section_parse("4.2.MIME", 8, &s, &error), 0);
	CHECK_INT(s.kind, MAIL_SECTION_MIME);
	CHECK_INT(s.n_part, 2);
	CHECK_INT(mail_section_parse("2.Text", 6, &s, &error), 0);
	CHECK_INT(s.kind, MAIL_SECTION_TEXT);
}

PN_TEST(test_unfold)
{
	struct pn_buf b;
	pn_buf_init(&b, 64);
	CHECK_INT(mail_header_unfold((const uint8_t *)" \t\r\n a\r\n\tb\0c ", 13, &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "a\tbc ", 5);
	pn_buf_free(&b);
}

PN_TEST(test_crlf_normalize)
{
	struct pn_buf b;
	pn_buf_init(&b, 64);
	CHECK_INT(mail_crlf_normalize((const uint8_t *)"\na\r\nb\nc\r\r\n", 11, &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "\r\na\r\nb\r\nc\r\r\n", 13);
	pn_buf_free(&b);
	pn_buf_init(&b, 4);
	CHECK_INT(mail_crlf_normalize((const uint8_t *)"a\nb\n", 4, &b), -1);
	pn_buf_free(&b);
}

static void check_part(const struct mail_part *p, size_t lo, size_t hi)
{
	CHECK(p->hdr_off >= lo);
	CHECK_INT(p->hdr_off + p->hdr_size, p->body_off);
	CHECK(p->body_off + p->body_size <= hi);
	CHECK(p->type != NULL && p->subtype != NULL);
	size_t pos = p->body_off;
	unsigned int n = 0;
	for (const struct mail_part *c = p->children; c != NULL; c = c->next) {
		CHECK(c->parent == p);
		CHECK_INT(c->depth, p->depth + 1);
		check_part(c, pos, p->body_off + p->body_size);
		pos = c->body_off + c->body_size;
		n++;
	}
	CHECK_INT(n, p->n_children);
}

/* The counterpart of feeding one byte at a time: every prefix of every
 * corpus message is a message too, and must parse into a consistent tree
 * whose IMAP values can be written. */
PN_TEST(test_every_prefix)
{
	struct pn_buf out;
	pn_buf_init(&out, 1 << 20);
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		size_t len;
		uint8_t *data = test_load(corpus[i], &len);
		for (size_t n = 0; n <= len; n++) {
			uint8_t *copy = malloc(n + 1); /* exact size for ASan */
			memcpy(copy, data, n);
			struct mail_message *msg = test_parse(copy, n, NULL);
			check_part(msg->root, 0, n);
			CHECK_INT(msg->root->hdr_off, 0);
			CHECK_INT(msg->root->body_off + msg->root->body_size, n);
			pn_buf_reset(&out);
			CHECK_INT(mail_bodystructure_write(msg, &out, true), 0);
			CHECK_INT(mail_envelope_write(msg, NULL, &out), 0);
			CHECK(strcmp(test_section(msg, "TEXT", NULL), "(full)") != 0);
			mail_message_free(&msg);
			free(copy);
		}
		/* The whole message again: the tree of the full text is the
		 * one the IMAP tests expect. */
		struct mail_message *msg = test_parse(data, len, NULL);
		check_part(msg->root, 0, len);
		mail_message_free(&msg);
		free(data);
	}
	pn_buf_free(&out);
}

PN_TEST_MAIN("mime-message",
	PN_TEST_CASE(test_simple_offsets),
	PN_TEST_CASE(test_nested_sections),
	PN_TEST_CASE(test_message_rfc822_sections),
	PN_TEST_CASE(test_message_in_message),
	PN_TEST_CASE(test_bare_lf),
	PN_TEST_CASE(test_header_without_blank_line),
	PN_TEST_CASE(test_broken_header_lines),
	PN_TEST_CASE(test_header_ends_at_boundary),
	PN_TEST_CASE(test_missing_final_boundary),
	PN_TEST_CASE(test_params),
	PN_TEST_CASE(test_limits),
	PN_TEST_CASE(test_section_parse),
	PN_TEST_CASE(test_unfold),
	PN_TEST_CASE(test_crlf_normalize),
	PN_TEST_CASE(test_every_prefix))
