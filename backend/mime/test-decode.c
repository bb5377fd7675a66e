/* Unit tests for postern/mail-decode.h: charsets, base64, quoted-printable,
 * RFC 2047 encoded words, case folding and the IMAP SEARCH helpers. */
#include "postern/mail-decode.h"
#include "test-mime.h"

/* Runs fn over s and returns the output as a NUL-terminated string in a
 * static buffer ("(full)" on -1). */
static const char *conv(int (*fn)(const uint8_t *, size_t, struct pn_buf *),
			const char *s)
{
	static struct pn_buf b;
	pn_buf_free(&b);
	pn_buf_init(&b, 1 << 20);
	if (fn((const uint8_t *)s, strlen(s), &b) < 0 || pn_buf_append(&b, "", 1) < 0)
		return "(full)";
	return (const char *)pn_buf_rptr(&b);
}

static int cs_ret;

static const char *charset(const char *cs, const char *s)
{
	static struct pn_buf b;
	pn_buf_free(&b);
	pn_buf_init(&b, 4096);
	cs_ret = mail_charset_to_utf8(cs, (const uint8_t *)s, strlen(s), &b);
	if (cs_ret < 0 || pn_buf_append(&b, "", 1) < 0)
		return "(full)";
	return (const char *)pn_buf_rptr(&b);
}

PN_TEST(test_charsets)
{
	CHECK_STR(charset("UTF-8", "Gr\xc3\xbc\xc3\x9f" "e"), "Gr\xc3\xbc\xc3\x9f" "e");
	CHECK_INT(cs_ret, 0);
	CHECK_STR(charset("utf8", "a\xff" "b\xc3"), "a\xef\xbf\xbd" "b\xef\xbf\xbd");
	CHECK_STR(charset("ISO-8859-1", "caf\xe9"), "caf\xc3\xa9");
	CHECK_STR(charset("latin1", "\xa4"), "\xc2\xa4");
	CHECK_STR(charset("iso-8859-15", "\xa4 \xbd"), "\xe2\x82\xac \xc5\x93");
	CHECK_STR(charset("Windows-1252", "\x80\x93quoted\x94"),
		  "\xe2\x82\xac\xe2\x80\x9cquoted\xe2\x80\x9d");
	/* mislabelled US-ASCII: UTF-8 if it is, else Windows-1252 */
	CHECK_STR(charset("us-ascii", "plain"), "plain");
	CHECK_STR(charset(NULL, "\xc3\xa9 and \xe9"), "\xc3\xa9 and \xc3\xa9");
	/* iconv for the rest, stateful encodings included */
	CHECK_STR(charset("KOI8-R", "\xf0\xd2\xc9\xd7\xc5\xd4"),
		  "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
	CHECK_INT(cs_ret, 0);
	CHECK_STR(charset("ISO-2022-JP", "\x1b$B$3$s$K$A$O\x1b(B"),
		  "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf");
	CHECK_INT(cs_ret, 0);
	/* invalid input for the charset: U+FFFD, and the rest goes on */
	CHECK_STR(charset("UTF-16LE", "abc"), "\xe6\x89\xa1\xef\xbf\xbd");
	/* unknown or unsafe names: fallback, and 1 says so */
	CHECK_STR(charset("x-unknown-charset", "caf\xe9"), "caf\xc3\xa9");
	CHECK_INT(cs_ret, 1);
	CHECK_STR(charset("UTF-8//TRANSLIT", "ok"), "ok");
	CHECK_INT(cs_ret, 1);
	CHECK_STR(charset("../../etc/passwd", "ok"), "ok");
	CHECK_INT(cs_ret, 1);

	struct pn_buf small;
	pn_buf_init(&small, 3);
	CHECK_INT(mail_charset_to_utf8("iso-8859-1", (const uint8_t *)"\xe9\xe9", 2, &small), -1);
	pn_buf_reset(&small);
	CHECK_INT(mail_charset_to_utf8("koi8-r", (const uint8_t *)"\xf0\xd2\xc9", 3, &small), -1);
	pn_buf_free(&small);
}

PN_TEST(test_utf8_valid)
{
	CHECK(mail_utf8_valid((const uint8_t *)"", 0));
	CHECK(mail_utf8_valid((const uint8_t *)"\xf0\x9f\x98\x80 \xe2\x82\xac", 8));
	CHECK(!mail_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
	CHECK(!mail_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong */
	CHECK(!mail_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
	CHECK(!mail_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	CHECK(!mail_utf8_valid((const uint8_t *)"\xe2\x82", 2));         /* cut */
	CHECK(!mail_utf8_valid((const uint8_t *)"\x80", 1));
}

PN_TEST(test_base64)
{
	CHECK_STR(conv(mail_base64_decode, "SGVsbG8sIHdvcmxkIQ=="), "Hello, world!");
	CHECK_STR(conv(mail_base64_decode, "SGVs\r\nbG8s IHdv*cmxk\nIQ"), "Hello, world!");
	CHECK_STR(conv(mail_base64_decode, "SGk"), "Hi");
	CHECK_STR(conv(mail_base64_decode, "SGk=SGk="), "Hi");
	CHECK_STR(conv(mail_base64_decode, ""), "");
	struct pn_buf small;
	pn_buf_init(&small, 4);
	CHECK_INT(mail_base64_decode((const uint8_t *)"SGVsbG8=", 8, &small), -1);
	pn_buf_free(&small);
}

PN_TEST(test_qp)
{
	CHECK_STR(conv(mail_qp_decode, "Gr=C3=BC=c3=9fe\r\n"), "Gr\xc3\xbc\xc3\x9f" "e\r\n");
	CHECK_STR(conv(mail_qp_decode, "soft=\r\nbreak=  \r\nhere\r\n"), "softbreakhere\r\n");
	CHECK_STR(conv(mail_qp_decode, "trailing   \t\r\nspace \nlf"), "trailing\r\nspace\nlf");
	CHECK_STR(conv(mail_qp_decode, "bad =ZZ =4 end="), "bad =ZZ =4 end");
	CHECK_STR(conv(mail_qp_decode, "a=3D=3d=20\r\n"), "a== \r\n");
	CHECK_STR(conv(mail_qp_decode, "="), "");
}

PN_TEST(test_rfc2047)
{
	CHECK_STR(conv(mail_rfc2047_decode, "=?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?="),
		  "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	CHECK_STR(conv(mail_rfc2047_decode, "=?iso-8859-1?b?R3L832UgYXVzIE38bmNoZW4=?="),
		  "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen");
	CHECK_STR(conv(mail_rfc2047_decode, "=?iso-8859-1?q?caf=E9_au_lait?="),
		  "caf\xc3\xa9 au lait");
	/* RFC 2047 8 examples */
	CHECK_STR(conv(mail_rfc2047_decode, "(=?ISO-8859-1?Q?a?=)"), "(a)");
	CHECK_STR(conv(mail_rfc2047_decode, "(=?ISO-8859-1?Q?a?= b)"), "(a b)");
	CHECK_STR(conv(mail_rfc2047_decode, "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"), "(ab)");
	CHECK_STR(conv(mail_rfc2047_decode, "(=?ISO-8859-1?Q?a?=  \r\n  =?ISO-8859-1?Q?b?=)"),
		  "(ab)");
	CHECK_STR(conv(mail_rfc2047_decode, "(=?ISO-8859-1?Q?a_b?=)"), "(a b)");
	CHECK_STR(conv(mail_rfc2047_decode, "(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)"), "(a b)");
	/* a character split over two words of one charset */
	CHECK_STR(conv(mail_rfc2047_decode, "=?utf-8?b?ww==?= =?UTF-8?b?vA==?="), "\xc3\xbc");
	CHECK_STR(conv(mail_rfc2047_decode, "=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?="),
		  "\xc3\xa9\xc3\xa9");
	CHECK_STR(conv(mail_rfc2047_decode, "Re: =?utf-8?q?x?= and\r\n y"), "Re: x and y");
	/* liberal: inside words, language suffix, unknown charset */
	CHECK_STR(conv(mail_rfc2047_decode, "foo=?utf-8?q?bar?=baz"), "foobarbaz");
	CHECK_STR(conv(mail_rfc2047_decode, "=?utf-8*en?q?hi?="), "hi");
	CHECK_STR(conv(mail_rfc2047_decode, "=?x-foo?q?abc?="), "abc");
	/* charset names: 63 bytes are an encoded word, 64 are not (64 wrote
	 * one byte past the remembered charset: found by fuzz-mime) */
	CHECK_STR(conv(mail_rfc2047_decode,
		       "=?x-2345678901234567890123456789012345678901234567890123456789012?q?abc?="),
		  "abc");
	CHECK_STR(conv(mail_rfc2047_decode,
		       "=?x-23456789012345678901234567890123456789012345678901234567890123?q?abc?="),
		  "=?x-23456789012345678901234567890123456789012345678901234567890123?q?abc?=");
	/* not encoded words: left alone */
	CHECK_STR(conv(mail_rfc2047_decode, "=?utf-8?x?abc?="), "=?utf-8?x?abc?=");
	CHECK_STR(conv(mail_rfc2047_decode, "=?utf-8?q?no end"), "=?utf-8?q?no end");
	CHECK_STR(conv(mail_rfc2047_decode, "=??q?x?="), "=??q?x?=");
	CHECK_STR(conv(mail_rfc2047_decode, "a =?utf-8?q?x?= b"), "a x b");
	/* raw 8-bit outside encoded words */
	CHECK_STR(conv(mail_rfc2047_decode, "caf\xe9 / caf\xc3\xa9"), "caf\xc3\xa9 / caf\xc3\xa9");

	/* Hostile input stays linear: many starts, no end. */
	struct pn_buf big, out;
	pn_buf_init(&big, 1 << 20);
	for (int i = 0; i < 40000; i++)
		pn_buf_append_str(&big, "=?a?q?x");
	pn_buf_init(&out, 1 << 20);
	CHECK_INT(mail_rfc2047_decode(pn_buf_rptr(&big), pn_buf_len(&big), &out), 0);
	CHECK_INT(pn_buf_len(&out), pn_buf_len(&big));
	pn_buf_free(&out);
	pn_buf_free(&big);
}

PN_TEST(test_casefold)
{
	CHECK_STR(conv(mail_casefold_utf8, "ABC xyz"), "abc xyz");
	CHECK_STR(conv(mail_casefold_utf8, "\xc3\x80\xc3\x89\xc3\x9e \xc3\x97 \xc3\x9f"),
		  "\xc3\xa0\xc3\xa9\xc3\xbe \xc3\x97 \xc3\x9f");
	/* Latin Extended-A: Ł Ž Œ Ÿ İ */
	CHECK_STR(conv(mail_casefold_utf8, "\xc5\x81\xc5\xbd\xc5\x92\xc5\xb8\xc4\xb0"),
		  "\xc5\x82\xc5\xbe\xc5\x93\xc3\xbf" "i");
	/* Greek ΣΑΣ and final sigma; Cyrillic ПРИВЕТ Ё */
	CHECK_STR(conv(mail_casefold_utf8, "\xce\xa3\xce\x91\xce\xa3 \xcf\x82"),
		  "\xcf\x83\xce\xb1\xcf\x83 \xcf\x83");
	CHECK_STR(conv(mail_casefold_utf8, "\xd0\x9f\xd0\xa0\xd0\x98 \xd0\x81"),
		  "\xd0\xbf\xd1\x80\xd0\xb8 \xd1\x91");
	CHECK_STR(conv(mail_casefold_utf8, "a\xff" "b"), "a\xef\xbf\xbd" "b");
	CHECK_STR(conv(mail_casefold_utf8, "\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
}

static int match(const char *key, const char *text)
{
	struct mail_search_key k;
	if (mail_search_key_init(&k, (const uint8_t *)key, strlen(key)) < 0)
		return -2;
	int r = mail_search_text_match(&k, (const uint8_t *)text, strlen(text));
	mail_search_key_free(&k);
	return r;
}

PN_TEST(test_search_match)
{
	CHECK_INT(match("grüße", "Viele GRÜSSE, ach nein: GRÜßE!"), 1);
	CHECK_INT(match("GRÜSSE", "grüße"), 0);
	CHECK_INT(match("", "anything"), 1);
	CHECK_INT(match("x", ""), 0);
	CHECK_INT(match("Привет", "ПРИВЕТ мир"), 1);

	/* Matches across the folding windows, and multibyte characters cut
	 * by a window edge. */
	struct pn_buf t;
	pn_buf_init(&t, 1 << 20);
	for (int i = 0; i < 16383; i++)
		pn_buf_append(&t, "a", 1);
	pn_buf_append_str(&t, "\xc3\x9cNIQUE needle");
	for (int i = 0; i < 40000; i++)
		pn_buf_append(&t, "\xc3\xa9", 2);
	pn_buf_append_str(&t, "END");
	pn_buf_append(&t, "", 1);
	CHECK_INT(match("ünique", (const char *)pn_buf_rptr(&t)), 1);
	CHECK_INT(match("\xc3\xa9" "end", (const char *)pn_buf_rptr(&t)), 1);
	CHECK_INT(match("aü", (const char *)pn_buf_rptr(&t)), 1);
	CHECK_INT(match("missing", (const char *)pn_buf_rptr(&t)), 0);
	pn_buf_free(&t);

	struct mail_search_key k;
	static uint8_t huge[70000];
	CHECK_INT(mail_search_key_init(&k, huge, sizeof(huge)), -1);
}

static int search(int (*fn)(const struct mail_message *,
			    const struct mail_search_key *, size_t),
		  const struct mail_message *msg, const char *key)
{
	struct mail_search_key k;
	mail_search_key_init(&k, (const uint8_t *)key, strlen(key));
	int r = fn(msg, &k, 1 << 20);
	mail_search_key_free(&k);
	return r;
}

static int search_hdr(const struct mail_message *msg, const char *name,
		      const char *key)
{
	struct mail_search_key k;
	mail_search_key_init(&k, (const uint8_t *)key, strlen(key));
	int r = mail_search_header(msg, name, &k, 1 << 20);
	mail_search_key_free(&k);
	return r;
}

PN_TEST(test_search_messages)
{
	size_t len;
	uint8_t *data = test_load("alternative.eml", &len);
	struct mail_message *msg = test_parse(data, len, NULL);

	CHECK_INT(search_hdr(msg, "subject", "MÜNCHEN"), 1);
	CHECK_INT(search_hdr(msg, "Subject", "R3LD"), 0);
	CHECK_INT(search_hdr(msg, "from", "jörg müller"), 1);
	CHECK_INT(search_hdr(msg, "FROM", "JOERG@EXAMPLE"), 1);
	CHECK_INT(search_hdr(msg, "to", "team, all"), 1);
	CHECK_INT(search_hdr(msg, "cc", ""), 1);
	CHECK_INT(search_hdr(msg, "bcc", ""), 0);
	CHECK_INT(search(mail_search_body, msg, "café = COFFEE"), 1);
	CHECK_INT(search(mail_search_body, msg, "soft line break here"), 1);
	CHECK_INT(search(mail_search_body, msg, "brea="), 0);
	CHECK_INT(search(mail_search_body, msg, "<p>grüße"), 1);
	CHECK_INT(search(mail_search_body, msg, "müller"), 0);
	CHECK_INT(search(mail_search_text, msg, "müller"), 1);
	CHECK_INT(search(mail_search_text, msg, "m=C3=BCnchen"), 0);

	struct mail_search_key k;
	mail_search_key_init(&k, (const uint8_t *)"coffee", 6);
	CHECK_INT(mail_search_body(msg, &k, 16), -1);
	mail_search_key_free(&k);

	struct pn_buf b;
	pn_buf_init(&b, 4096);
	CHECK_INT(mail_header_text(msg, msg->root, "subject", &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b),
		  "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen\n", 21);
	pn_buf_reset(&b);
	CHECK_INT(mail_header_text(msg, msg->root->children, NULL, &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b),
		  "Content-Type: text/plain; charset=utf-8\n"
		  "Content-Transfer-Encoding: quoted-printable\n", 84);
	pn_buf_reset(&b);
	CHECK_INT(mail_part_text(msg, msg->root->children->next, &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b),
		  "<p>Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen!</p>\r\n", 30);
	pn_buf_free(&b);
	mail_message_free(&msg);
	free(data);

	data = test_load("attachment.eml", &len);
	msg = test_parse(data, len, NULL);
	CHECK_INT(search(mail_search_body, msg, "GRÉSSE"), 1);
	CHECK_INT(search(mail_search_body, msg, "%PDF"), 0);
	pn_buf_init(&b, 4096);
	CHECK_INT(mail_part_text(msg, msg->root->children->next, &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), 5, "%PDF-", 5);
	pn_buf_free(&b);
	mail_message_free(&msg);
	free(data);

	data = test_load("forward.eml", &len);
	msg = test_parse(data, len, NULL);
	CHECK_INT(search(mail_search_body, msg, "judy@example"), 1);
	CHECK_INT(search(mail_search_body, msg, "MEET AT NOON"), 1);
	CHECK_INT(search(mail_search_body, msg, "ivan@"), 0);
	CHECK_INT(search(mail_search_text, msg, "ivan@"), 1);
	CHECK_INT(search_hdr(msg, "subject", "plans"), 1);
	CHECK_INT(search_hdr(msg, "subject", "see below"), 0);
	mail_message_free(&msg);
	free(data);

	/* A base64 text part and a single-part message. */
	const char *m = "Subject: b64\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
			"Content-Transfer-Encoding: base64\r\n\r\nY2Fm6SBjcuhtZQ==\r\n";
	msg = test_parse((const uint8_t *)m, strlen(m), NULL);
	CHECK_INT(search(mail_search_body, msg, "CAFÉ CRÈME"), 1);
	CHECK_INT(search(mail_search_body, msg, "Y2Fm"), 0);
	mail_message_free(&msg);
}

PN_TEST_MAIN("mime-decode",
	PN_TEST_CASE(test_charsets),
	PN_TEST_CASE(test_utf8_valid),
	PN_TEST_CASE(test_base64),
	PN_TEST_CASE(test_qp),
	PN_TEST_CASE(test_rfc2047),
	PN_TEST_CASE(test_casefold),
	PN_TEST_CASE(test_search_match),
	PN_TEST_CASE(test_search_messages))
