/* Unit tests for IMAP ENVELOPE, BODY and BODYSTRUCTURE (postern/
 * mail-imap.h). The expected strings were worked out by hand from RFC 3501
 * 7.4.2 and the formal syntax (sizes and line counts by counting the part
 * bytes: a body part ends before the line end that precedes its boundary),
 * with Dovecot's conventions for defaults; see mail-imap.h. */
#include "test-mime.h"

struct corpus_case {
	const char *file;
	const char *envelope, *bodystructure, *body;
};

static const struct corpus_case corpus[] = {
	{ "simple.eml",
		/* ENVELOPE */
		  "(\"Tue, 5 Mar 2024 10:11:09 +0100\" \"Lunch on Friday?\" "
		  "((\"Alice Example\" NIL \"alice\" \"example.org\")) ((\"Alice "
		  "Example\" NIL \"alice\" \"example.org\")) ((\"Alice Example\" "
		  "NIL \"alice\" \"example.org\")) ((\"Bob\" NIL \"bob\" "
		  "\"example.net\")) NIL NIL NIL "
		  "\"<20240305091109.GA1234@example.org>\")",
		/* BODYSTRUCTURE */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 55 5 NIL (\"inline\" NIL) NIL NIL)",
		/* BODY */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 55 5)" },
	{ "alternative.eml",
		/* ENVELOPE */
		  "(\"Wed, 06 Mar 2024 08:00:00 +0000\" "
		  "\"=?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\" "
		  "((\"=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=\" NIL \"joerg\" "
		  "\"example.de\")) ((\"=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=\" NIL "
		  "\"joerg\" \"example.de\")) "
		  "((\"=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=\" NIL \"joerg\" "
		  "\"example.de\")) ((\"Team, All\" NIL \"team\" "
		  "\"example.com\")(NIL NIL \"carol\" \"example.com\")) ((NIL NIL "
		  "\"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL "
		  "\"<prev@example.com>\" \"<alt-1@example.de>\")",
		/* BODYSTRUCTURE */
		  "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
		  "\"quoted-printable\" 116 3 NIL NIL NIL NIL)(\"text\" \"html\" "
		  "(\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 42 1 NIL "
		  "NIL NIL NIL) \"alternative\" (\"boundary\" \"=-=-=alt\") NIL "
		  "NIL NIL)",
		/* BODY */
		  "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL "
		  "\"quoted-printable\" 116 3)(\"text\" \"html\" (\"charset\" "
		  "\"utf-8\") NIL NIL \"quoted-printable\" 42 1) \"alternative\")" },
	{ "attachment.eml",
		/* ENVELOPE */
		  "(\"Thu, 7 Mar 2024 12:00:00 -0500\" \"Report\" ((\"Dora\" NIL "
		  "\"dora\" \"example.com\")) ((\"Dora\" NIL \"dora\" "
		  "\"example.com\")) ((\"Dora\" NIL \"dora\" \"example.com\")) "
		  "((NIL NIL \"eve\" \"example.com\")) NIL NIL NIL "
		  "\"<att-1@example.com>\")",
		/* BODYSTRUCTURE */
		  "((\"text\" \"plain\" (\"charset\" \"ISO-8859-1\") NIL NIL "
		  "\"8bit\" 30 1 NIL NIL NIL NIL)(\"application\" \"pdf\" "
		  "(\"name*\" \"UTF-8''R%C3%A9sum%C3%A9.pdf\") NIL NIL \"base64\" "
		  "24 NIL (\"attachment\" (\"filename*\" "
		  "\"UTF-8''R%C3%A9sum%C3%A9.pdf\" \"size\" \"12\")) NIL NIL) "
		  "\"mixed\" (\"boundary\" \"----=_Part_0_1234.5678\") NIL NIL "
		  "NIL)",
		/* BODY */
		  "((\"text\" \"plain\" (\"charset\" \"ISO-8859-1\") NIL NIL "
		  "\"8bit\" 30 1)(\"application\" \"pdf\" (\"name*\" "
		  "\"UTF-8''R%C3%A9sum%C3%A9.pdf\") NIL NIL \"base64\" 24) "
		  "\"mixed\")" },
	{ "nested.eml",
		/* ENVELOPE */
		  "(\"Fri, 8 Mar 2024 09:30:00 +0100\" \"Newsletter\" ((\"Frank\" "
		  "NIL \"frank\" \"example.com\")) ((\"Frank\" NIL \"frank\" "
		  "\"example.com\")) ((\"Frank\" NIL \"frank\" \"example.com\")) "
		  "((\"Grace\" NIL \"grace\" \"example.com\")) NIL NIL NIL "
		  "\"<nested-1@example.com>\")",
		/* BODYSTRUCTURE */
		  "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" "
		  "21 1 NIL NIL NIL NIL)((\"text\" \"html\" (\"charset\" "
		  "\"utf-8\") NIL NIL \"7bit\" 60 1 NIL NIL NIL NIL)(\"image\" "
		  "\"png\" NIL \"<logo@example.com>\" NIL \"base64\" 12 NIL "
		  "(\"inline\" (\"filename\" \"logo.png\")) NIL NIL) \"related\" "
		  "(\"boundary\" \"rel\" \"type\" \"text/html\") NIL NIL NIL) "
		  "\"alternative\" (\"boundary\" \"inner\") NIL NIL "
		  "NIL)(\"application\" \"octet-stream\" (\"name\" \"data.bin\") "
		  "NIL \"Raw data\" \"base64\" 8 NIL (\"attachment\" "
		  "(\"filename\" \"data.bin\")) NIL NIL) \"mixed\" (\"boundary\" "
		  "\"outer\") NIL NIL NIL)",
		/* BODY */
		  "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" "
		  "21 1)((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL "
		  "\"7bit\" 60 1)(\"image\" \"png\" NIL \"<logo@example.com>\" "
		  "NIL \"base64\" 12) \"related\") "
		  "\"alternative\")(\"application\" \"octet-stream\" (\"name\" "
		  "\"data.bin\") NIL \"Raw data\" \"base64\" 8) \"mixed\")" },
	{ "forward.eml",
		/* ENVELOPE */
		  "(\"Sat, 9 Mar 2024 18:00:00 +0200\" \"Fwd: Plans\" ((\"Heidi\" "
		  "NIL \"heidi\" \"example.com\")) ((\"Heidi\" NIL \"heidi\" "
		  "\"example.com\")) ((\"Heidi\" NIL \"heidi\" \"example.com\")) "
		  "((\"Ivan\" NIL \"ivan\" \"example.com\")) NIL NIL NIL "
		  "\"<fwd-1@example.com>\")",
		/* BODYSTRUCTURE */
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 12 1 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL "
		  "\"Forwarded message\" \"7bit\" 402 (\"Fri, 8 Mar 2024 17:00:00 "
		  "+0200\" \"Plans\" ((\"Judy\" NIL \"judy\" \"example.com\")) "
		  "((\"Judy\" NIL \"judy\" \"example.com\")) ((\"Judy\" NIL "
		  "\"judy\" \"example.com\")) ((\"Heidi\" NIL \"heidi\" "
		  "\"example.com\")) NIL NIL NIL \"<plans@example.com>\") "
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 21 1 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" "
		  "\"us-ascii\") NIL NIL \"7bit\" 28 1 NIL NIL NIL NIL) "
		  "\"alternative\" (\"boundary\" \"fwdalt\") NIL NIL NIL) 19 NIL "
		  "NIL NIL NIL) \"mixed\" (\"boundary\" \"fwd\") NIL NIL NIL)",
		/* BODY */
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 12 1)(\"message\" \"rfc822\" NIL NIL \"Forwarded "
		  "message\" \"7bit\" 402 (\"Fri, 8 Mar 2024 17:00:00 +0200\" "
		  "\"Plans\" ((\"Judy\" NIL \"judy\" \"example.com\")) ((\"Judy\" "
		  "NIL \"judy\" \"example.com\")) ((\"Judy\" NIL \"judy\" "
		  "\"example.com\")) ((\"Heidi\" NIL \"heidi\" \"example.com\")) "
		  "NIL NIL NIL \"<plans@example.com>\") ((\"text\" \"plain\" "
		  "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1)(\"text\" "
		  "\"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 28 1) "
		  "\"alternative\") 19) \"mixed\")" },
	{ "broken-header.eml",
		/* ENVELOPE */
		  "(NIL \"broken \\\"quoted\\\" \\\\ header\" ((NIL NIL "
		  "\"someone\" \"example.com\")) ((NIL NIL \"someone\" "
		  "\"example.com\")) ((NIL NIL \"someone\" \"example.com\")) "
		  "((NIL NIL \"a\" \"b.example\")(NIL NIL \"c\" \"d.example\")) "
		  "NIL NIL NIL NIL)",
		/* BODYSTRUCTURE */
		  "(\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" "
		  "\"flowed\") NIL NIL \"8BIT\" 31 1 NIL NIL NIL NIL)",
		/* BODY */
		  "(\"text\" \"plain\" (\"charset\" \"utf-8\" \"format\" "
		  "\"flowed\") NIL NIL \"8BIT\" 31 1)" },
	{ "missing-boundary.eml",
		/* ENVELOPE */
		  "(NIL \"cut off\" ((NIL NIL \"k\" \"example.com\")) ((NIL NIL "
		  "\"k\" \"example.com\")) ((NIL NIL \"k\" \"example.com\")) NIL "
		  "NIL NIL NIL NIL)",
		/* BODYSTRUCTURE */
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 12 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
		  "\"us-ascii\") NIL NIL \"7bit\" 27 1 NIL NIL NIL NIL) \"mixed\" "
		  "(\"boundary\" \"b1\") NIL NIL NIL)",
		/* BODY */
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 12 1)(\"text\" \"plain\" (\"charset\" \"us-ascii\") "
		  "NIL NIL \"7bit\" 27 1) \"mixed\")" },
	{ "bare-lf.eml",
		/* ENVELOPE */
		  "(NIL \"bare LF\" ((NIL NIL \"l\" \"example.com\")) ((NIL NIL "
		  "\"l\" \"example.com\")) ((NIL NIL \"l\" \"example.com\")) "
		  "((NIL NIL \"m\" \"example.com\")) NIL NIL NIL NIL)",
		/* BODYSTRUCTURE */
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 15 1 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
		  "\"us-ascii\") NIL NIL \"7bit\" 9 1 NIL NIL NIL NIL) \"mixed\" "
		  "(\"boundary\" \"lf\") NIL NIL NIL)",
		/* BODY */
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 15 1)(\"text\" \"plain\" (\"charset\" \"us-ascii\") "
		  "NIL NIL \"7bit\" 9 1) \"mixed\")" },
	{ "empty-body.eml",
		/* ENVELOPE */
		  "(NIL \"nothing\" ((NIL NIL \"n\" \"example.com\")) ((NIL NIL "
		  "\"n\" \"example.com\")) ((NIL NIL \"n\" \"example.com\")) NIL "
		  "NIL NIL NIL NIL)",
		/* BODYSTRUCTURE */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 0 0 NIL NIL NIL NIL)",
		/* BODY */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 0 0)" },
	{ "no-content-type.eml",
		/* ENVELOPE */
		  "(NIL \"header runs into the body\" ((NIL NIL \"o\" "
		  "\"example.com\")) ((NIL NIL \"o\" \"example.com\")) ((NIL NIL "
		  "\"o\" \"example.com\")) NIL NIL NIL NIL NIL)",
		/* BODYSTRUCTURE */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 70 2 NIL NIL NIL NIL)",
		/* BODY */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 70 2)" },
	{ "group.eml",
		/* ENVELOPE */
		  "(\"10 Mar 24 20:00 PST\" \"groups\" ((\"Doe, John \\\"JD\\\"\" "
		  "NIL \"john.doe\" \"example.com\")) ((\"List Bounces\" NIL "
		  "\"list-bounces\" \"example.org\")) ((NIL NIL \"Team\" NIL)(NIL "
		  "NIL \"p\" \"example.com\")(\"Q Person\" NIL \"q\" "
		  "\"example.com\")(NIL NIL NIL NIL)(NIL NIL \"r\" "
		  "\"example.com\")) ((NIL NIL \"Friends\" NIL)(NIL NIL NIL NIL)) "
		  "((\"Z\" \"@relay1.example,@relay2.example\" \"z\" "
		  "\"example.com\")(NIL NIL \"bare-local\" \"MISSING_DOMAIN\")) "
		  "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) NIL NIL)",
		/* BODYSTRUCTURE */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 4 1 NIL NIL NIL NIL)",
		/* BODY */
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
		  "\"7bit\" 4 1)" },
	{ "digest.eml",
		/* ENVELOPE */
		  "(NIL \"Digest\" ((NIL NIL \"digest\" \"example.com\")) ((NIL "
		  "NIL \"digest\" \"example.com\")) ((NIL NIL \"digest\" "
		  "\"example.com\")) NIL NIL NIL NIL NIL)",
		/* BODYSTRUCTURE */
		  "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 46 (NIL "
		  "\"first\" ((NIL NIL \"one\" \"example.com\")) ((NIL NIL "
		  "\"one\" \"example.com\")) ((NIL NIL \"one\" \"example.com\")) "
		  "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" "
		  "\"us-ascii\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL) 4 NIL NIL "
		  "NIL NIL)(\"application\" \"octet-stream\" (\"x\" \"y\") NIL "
		  "NIL \"base64\" 12 NIL NIL NIL NIL) \"digest\" (\"boundary\" "
		  "\"d\") NIL NIL NIL)",
		/* BODY */
		  "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 46 (NIL "
		  "\"first\" ((NIL NIL \"one\" \"example.com\")) ((NIL NIL "
		  "\"one\" \"example.com\")) ((NIL NIL \"one\" \"example.com\")) "
		  "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" "
		  "\"us-ascii\") NIL NIL \"7bit\" 5 1) 4)(\"application\" "
		  "\"octet-stream\" (\"x\" \"y\") NIL NIL \"base64\" 12) "
		  "\"digest\")" },
};

PN_TEST(test_corpus)
{
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		const struct corpus_case *c = &corpus[i];
		size_t len;
		uint8_t *data = test_load(c->file, &len);
		struct mail_message *msg = test_parse(data, len, NULL);
		const char *env = test_envelope(msg, NULL);
		if (strcmp(env, c->envelope) != 0)
			fprintf(stderr, "%s: envelope\n", c->file);
		CHECK_STR(env, c->envelope);
		const char *bs = test_bodystructure(msg, true);
		if (strcmp(bs, c->bodystructure) != 0)
			fprintf(stderr, "%s: bodystructure\n", c->file);
		CHECK_STR(bs, c->bodystructure);
		CHECK_STR(test_bodystructure(msg, false), c->body);
		mail_message_free(&msg);
		free(data);
	}
}

static struct mail_message *parse_str(const char *s)
{
	return test_parse((const uint8_t *)s, strlen(s), NULL);
}

static const char *nstring(const char *s, size_t len)
{
	static struct pn_buf b;
	pn_buf_free(&b);
	pn_buf_init(&b, 1024);
	if (s == NULL ? mail_imap_append_nstring(&b, NULL) < 0
		      : mail_imap_append_string_n(&b, (const uint8_t *)s, len) < 0)
		return "(full)";
	pn_buf_append(&b, "", 1);
	return (const char *)pn_buf_rptr(&b);
}

PN_TEST(test_quoting)
{
	CHECK_STR(nstring(NULL, 0), "NIL");
	CHECK_STR(nstring("", 0), "\"\"");
	CHECK_STR(nstring("plain text", 10), "\"plain text\"");
	CHECK_STR(nstring("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
	CHECK_STR(nstring("Gr\xc3\xbc\xc3\x9f" "e", 7), "{7}\r\nGr\xc3\xbc\xc3\x9f" "e");
	CHECK_STR(nstring("a\r\nb", 4), "{4}\r\na\r\nb");
	/* literals carry quotes and backslashes as they are */
	CHECK_STR(nstring("\"\xe9\"", 3), "{3}\r\n\"\xe9\"");
	/* NUL can be in neither form: dropped */
	CHECK_STR(nstring("a\0b", 3), "\"ab\"");
	CHECK_STR(nstring("a\0\xe9", 3), "{2}\r\na\xe9");
	CHECK_STR(nstring("tab\there", 8), "\"tab\there\"");

	struct pn_buf small;
	pn_buf_init(&small, 5);
	CHECK_INT(mail_imap_append_nstring(&small, "too long"), -1);
	pn_buf_free(&small);
}

PN_TEST(test_envelope_strings)
{
	struct mail_message *msg = parse_str(
		"Subject: Gr\xc3\xbc\xc3\x9f" "e \"aus\"\r\n\tM\xc3\xbcnchen\r\n"
		"Date:   Mon, 1 Jan 2024 00:00:00 +0000  \r\n"
		"Message-ID:\r\n <folded@id>\r\n"
		"In-Reply-To: <a@b> (comment)\r\n"
		"From: \"Last, First\" <first.last@example.com>, =?utf-8?q?Caf=C3=A9?= <cafe@example.com>\r\n"
		"Sender:\r\n"
		"To: undisclosed-recipients:;\r\n"
		"Cc: Peter Q. Public <pqp@[192.0.2.7]>\r\n"
		"Bcc: \"quoted local\"@example.com\r\n"
		"Subject: second subject is ignored\r\n"
		"\r\nbody\r\n");
	CHECK_STR(test_envelope(msg, NULL),
		  "(\"Mon, 1 Jan 2024 00:00:00 +0000  \" "
		  "{22}\r\nGr\xc3\xbc\xc3\x9f" "e \"aus\"\tM\xc3\xbcnchen "
		  "((\"Last, First\" NIL \"first.last\" \"example.com\")"
		  "(\"=?utf-8?q?Caf=C3=A9?=\" NIL \"cafe\" \"example.com\")) "
		  "((\"Last, First\" NIL \"first.last\" \"example.com\")"
		  "(\"=?utf-8?q?Caf=C3=A9?=\" NIL \"cafe\" \"example.com\")) "
		  "((\"Last, First\" NIL \"first.last\" \"example.com\")"
		  "(\"=?utf-8?q?Caf=C3=A9?=\" NIL \"cafe\" \"example.com\")) "
		  "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		  "((\"Peter Q. Public\" NIL \"pqp\" \"[192.0.2.7]\")) "
		  "((NIL NIL \"quoted local\" \"example.com\")) "
		  "\"<a@b> (comment)\" \"<folded@id>\")");
	mail_message_free(&msg);

	/* An obs-route of bare "@"s: the route text ("@,@,@...") is longer
	 * than the header value (a heap overflow the fuzzer found). */
	{
		char hdr[4200] = "From: <";
		size_t n = strlen(hdr);
		for (int i = 0; i < 4000; i++)
			hdr[n++] = '@';
		static const char tail[] = "x:a@b>\r\n\r\nx\r\n";
		memcpy(hdr + n, tail, sizeof(tail));
		msg = parse_str(hdr);
		const char *env = test_envelope(msg, NULL);
		CHECK(strstr(env, "@,@,@x\" \"a\" \"b\"))") != NULL);
		CHECK(strstr(env, "((NIL \"@,@,@,@") != NULL);
		mail_message_free(&msg);
	}

	/* No header at all: every member NIL. */
	msg = parse_str("\r\njust a body\r\n");
	CHECK_STR(test_envelope(msg, NULL), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	CHECK_STR(test_bodystructure(msg, true),
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 1 "
		  "NIL NIL NIL NIL)");
	mail_message_free(&msg);

	/* Empty Subject is an empty string, not NIL. */
	msg = parse_str("Subject:\r\n\r\n");
	CHECK_STR(test_envelope(msg, NULL), "(NIL \"\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	mail_message_free(&msg);
}

PN_TEST(test_extension_data)
{
	struct mail_message *msg = parse_str(
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"x\"; charset=ignored\r\n"
		"Content-Disposition: inline\r\n"
		"Content-Language: en-GB\r\n"
		"Content-Location: http://example.com/x\r\n"
		"\r\n"
		"--x\r\n"
		"Content-Type: TEXT/Enriched; CHARSET=\"UTF-8\"\r\n"
		"Content-ID: <id1@example.com>\r\n"
		"Content-Description: =?utf-8?q?d=C3=A9j=C3=A0?=\r\n"
		"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
		"Content-Disposition: attachment; filename=\"a b.txt\"; SIZE=3\r\n"
		"Content-Language: de, (comment) fr-CA , x-klingon\r\n"
		"Content-Transfer-Encoding: x-uuencode\r\n"
		"\r\n"
		"abc\r\n"
		"--x\r\n"
		"Content-Type: image/gif\r\n"
		"Content-Transfer-Encoding: ?not a token\r\n"
		"\r\n"
		"GIF\r\n"
		"--x--\r\n");
	CHECK_STR(test_bodystructure(msg, true),
		  "((\"TEXT\" \"Enriched\" (\"CHARSET\" \"UTF-8\") \"<id1@example.com>\" "
		  "\"=?utf-8?q?d=C3=A9j=C3=A0?=\" \"x-uuencode\" 3 0 "
		  "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" "
		  "(\"attachment\" (\"filename\" \"a b.txt\" \"SIZE\" \"3\")) "
		  "(\"de\" \"fr-CA\" \"x-klingon\") NIL)"
		  "(\"image\" \"gif\" NIL NIL NIL \"7bit\" 3 NIL NIL NIL NIL) "
		  "\"mixed\" (\"boundary\" \"x\" \"charset\" \"ignored\") "
		  "(\"inline\" NIL) (\"en-GB\") \"http://example.com/x\")");
	CHECK_STR(test_bodystructure(msg, false),
		  "((\"TEXT\" \"Enriched\" (\"CHARSET\" \"UTF-8\") \"<id1@example.com>\" "
		  "\"=?utf-8?q?d=C3=A9j=C3=A0?=\" \"x-uuencode\" 3 0)"
		  "(\"image\" \"gif\" NIL NIL NIL \"7bit\" 3) \"mixed\")");
	CHECK_INT(msg->root->children->cte, MAIL_CTE_OTHER);
	mail_message_free(&msg);
}

PN_TEST(test_rfc2231_and_8bit_params)
{
	struct mail_message *msg = parse_str(
		"Content-Type: application/octet-stream;\r\n"
		" name=\"=?UTF-8?B?w6TDtsO8LnR4dA==?=\"\r\n"
		"Content-Disposition: attachment;\r\n"
		" filename*0=\"long \";\r\n"
		" filename*1=\"name 100%.txt\"\r\n"
		"\r\n"
		"data");
	CHECK_STR(test_bodystructure(msg, true),
		  "(\"application\" \"octet-stream\" "
		  "(\"name\" \"=?UTF-8?B?w6TDtsO8LnR4dA==?=\") NIL NIL \"7bit\" 4 NIL "
		  "(\"attachment\" (\"filename\" \"long name 100%.txt\")) NIL NIL)");
	struct pn_buf b;
	pn_buf_init(&b, 256);
	CHECK_INT(mail_param_decode(&msg->root->params[0], &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "\xc3\xa4\xc3\xb6\xc3\xbc.txt", 10);
	pn_buf_free(&b);
	mail_message_free(&msg);

	/* Raw 8-bit parameter values are sent as literals. */
	msg = parse_str("Content-Type: text/plain; name=\"\xc3\xa9t\xc3\xa9.txt\"\r\n\r\n");
	CHECK_STR(test_bodystructure(msg, false),
		  "(\"text\" \"plain\" (\"name\" {9}\r\n\xc3\xa9t\xc3\xa9.txt "
		  "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
	mail_message_free(&msg);

	/* Extended and mixed continuation segments. */
	msg = parse_str("Content-Type: text/plain;\r\n"
			" title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A;\r\n"
			" url*1*=%2Fb; url*0*=utf-8''%2Fa; url*2=\"/c%\"\r\n\r\n");
	CHECK_STR(test_bodystructure(msg, false),
		  "(\"text\" \"plain\" (\"title*\" "
		  "\"us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\" "
		  "\"url*\" \"utf-8''%2Fa%2Fb/c%25\" \"charset\" \"us-ascii\") "
		  "NIL NIL \"7bit\" 0 0)");
	pn_buf_init(&b, 256);
	CHECK_INT(mail_param_decode(&msg->root->params[0], &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "This is ***fun***", 17);
	pn_buf_reset(&b);
	CHECK_INT(mail_param_decode(&msg->root->params[1], &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "/a/b/c%", 7);
	pn_buf_free(&b);
	mail_message_free(&msg);
}

PN_TEST(test_opaque_and_empty)
{
	/* multipart without a boundary: no parts, one empty text part in
	 * the output as the grammar needs one */
	struct mail_message *msg = parse_str(
		"Content-Type: multipart/related\r\n\r\nno parts here\r\n");
	CHECK_STR(test_bodystructure(msg, true),
		  "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 "
		  "NIL NIL NIL NIL) \"related\" NIL NIL NIL NIL)");
	mail_message_free(&msg);

	/* message/rfc822 in quoted-printable cannot be parsed in place */
	msg = parse_str("Content-Type: message/rfc822\r\n"
			"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
			"Subject: x=3D\r\n");
	CHECK(msg->root->flags & MAIL_PART_OPAQUE);
	CHECK_STR(test_bodystructure(msg, false),
		  "(\"application\" \"octet-stream\" NIL NIL NIL \"quoted-printable\" 15)");
	mail_message_free(&msg);

	/* message/rfc822 with an empty body still has an (empty) message */
	msg = parse_str("Content-Type: message/rfc822\r\n\r\n");
	CHECK_STR(test_bodystructure(msg, false),
		  "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 0 "
		  "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
		  "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) 0)");
	mail_message_free(&msg);
}

PN_TEST(test_output_limit)
{
	size_t len;
	uint8_t *data = test_load("nested.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);
	struct pn_buf b;
	const char *full = test_bodystructure(msg, true);
	size_t need = strlen(full);

	pn_buf_init(&b, need);
	CHECK_INT(mail_bodystructure_write(msg, &b, true), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), full, need);
	pn_buf_free(&b);
	pn_buf_init(&b, need - 1);
	CHECK_INT(mail_bodystructure_write(msg, &b, true), -1);
	pn_buf_free(&b);
	pn_buf_init(&b, 20);
	CHECK_INT(mail_envelope_write(msg, NULL, &b), -1);
	pn_buf_free(&b);
	mail_message_free(&msg);
	free(data);
}

PN_TEST_MAIN("mime-imap",
	PN_TEST_CASE(test_corpus),
	PN_TEST_CASE(test_quoting),
	PN_TEST_CASE(test_envelope_strings),
	PN_TEST_CASE(test_extension_data),
	PN_TEST_CASE(test_rfc2231_and_8bit_params),
	PN_TEST_CASE(test_opaque_and_empty),
	PN_TEST_CASE(test_output_limit))
