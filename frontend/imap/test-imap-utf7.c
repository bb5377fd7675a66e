/* Unit tests for imap-utf7.h: modified UTF-7 decoding (with the RFC 3501
 * examples and every kind of invalid input), encoding, exact round trips,
 * output bounds, and the strict UTF-8 reader. */
#include "imap-utf7.h"

#include <stdio.h>

#include "postern/buf.h"
#include "postern/testing.h"

static const char *decode(const char *s, size_t len)
{
	static struct pn_buf b;
	const char *error = NULL;

	pn_buf_free(&b);
	pn_buf_init(&b, 4096);
	if (imap_utf7_to_utf8(s, len, &b, &error) < 0) {
		CHECK(error != NULL);
		CHECK(!imap_utf7_is_valid(s, len));
		return NULL;
	}
	CHECK(imap_utf7_is_valid(s, len));
	pn_buf_append(&b, "", 1);
	return (const char *)pn_buf_rptr(&b);
}

static const char *encode(const char *s, size_t len)
{
	static struct pn_buf b;
	const char *error = NULL;

	pn_buf_free(&b);
	pn_buf_init(&b, 4096);
	if (imap_utf8_to_utf7(s, len, &b, &error) < 0) {
		CHECK(error != NULL);
		return NULL;
	}
	pn_buf_append(&b, "", 1);
	return (const char *)pn_buf_rptr(&b);
}

/* A pair that must convert both ways exactly. */
static void pair(const char *utf7, const char *utf8)
{
	const char *d = decode(utf7, strlen(utf7));
	CHECK(d != NULL);
	if (d != NULL)
		CHECK_STR(d, utf8);
	const char *e = encode(utf8, strlen(utf8));
	CHECK(e != NULL);
	if (e != NULL)
		CHECK_STR(e, utf7);
}

PN_TEST(test_pairs)
{
	pair("", "");
	pair("INBOX", "INBOX");
	pair("Sent Items/2024 ~%*", "Sent Items/2024 ~%*");
	pair("&-", "&");
	pair("Tom &- Jerry", "Tom & Jerry");
	/* RFC 3501 section 5.1.3 example:
	 * "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is ~peter/mail/台北/日本語. */
	pair("~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	     "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	pair("Entw&APw-rfe", "Entw\xc3\xbc" "rfe");      /* Entwürfe */
	pair("&AOkA6QDp-", "\xc3\xa9\xc3\xa9\xc3\xa9");  /* three e-acute */
	pair("Gel&APY-schte Elemente", "Gel\xc3\xb6schte Elemente");
	/* Outside the BMP: a surrogate pair (U+1F4EB). */
	pair("&2D3c6w-", "\xf0\x9f\x93\xab");
	pair("a&2D3c6w-b&AOk-", "a\xf0\x9f\x93\xab" "b\xc3\xa9");
	/* Control characters are BASE64-encoded, never sent raw. */
	pair("&AAk-", "\t");
	pair("&AH8-", "\x7f");
	/* "&" right after a BASE64 run is an escaped ampersand, fine. */
	pair("&AOk-&-", "\xc3\xa9&");
}

PN_TEST(test_decode_invalid)
{
	static const char *const bad[] = {
		"&",             /* no run, no "-" */
		"&AOk",          /* not terminated */
		"a&AOk",
		"&AOk-&AOk-",    /* null shift: must be one run */
		"&A-",           /* 6 bits: not a whole UTF-16 unit */
		"&AO-",          /* 12 bits */
		"&AOkA-",        /* 16 + 6 bits: excess sextet */
		"&AOl-",         /* non-zero padding bits */
		"&AGE-",         /* "a" must represent itself */
		"&ACY-",         /* "&" must be written "&-" */
		"&ACA-",         /* space too */
		"&AAA-",         /* U+0000 */
		"&2D0-",         /* lone high surrogate */
		"&3,s-",         /* lone low surrogate (U+DFEC) */
		"&2D3YPQ-",      /* high surrogate followed by a high one */
		"&AOk/-",        /* "/" is not modified BASE64 (that is ",") */
		"&AOk=-",        /* no padding characters */
		"&AO k-",        /* space inside */
		"caf\xc3\xa9",   /* raw 8-bit */
		"tab\there",     /* raw control character */
		"del\x7f",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *d = decode(bad[i], strlen(bad[i]));
		if (d != NULL)
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
		CHECK(d == NULL);
	}
	CHECK(decode("a\0b", 3) == NULL);
}

PN_TEST(test_encode_invalid)
{
	static const char *const bad[] = {
		"\xc3",             /* truncated */
		"\xc0\xaf",         /* overlong "/" */
		"\xe0\x80\xaf",     /* overlong */
		"\xed\xa0\x80",     /* UTF-16 surrogate */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xff",
		"\x80",
		"ok\xc3(",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(encode(bad[i], strlen(bad[i])) == NULL);
	CHECK(encode("a\0b", 3) == NULL);
}

PN_TEST(test_bounds)
{
	struct pn_buf b;
	const char *error = NULL;

	/* The output buffer's limit is respected and reported. */
	pn_buf_init(&b, 8);
	CHECK_INT(imap_utf8_to_utf7("\xc3\xa9\xc3\xa9\xc3\xa9", 6, &b, &error), -1);
	CHECK_STR(error, "Mailbox name too long");
	CHECK(pn_buf_len(&b) <= 8);
	pn_buf_free(&b);
	pn_buf_init(&b, 3);
	CHECK_INT(imap_utf7_to_utf8("&AOkA6QDp-", 10, &b, &error), -1);
	CHECK_STR(error, "Mailbox name too long");
	pn_buf_free(&b);
}

PN_TEST(test_utf8_char)
{
	uint32_t cp = 0;

	CHECK_INT(imap_utf8_char((const unsigned char *)"A", 1, &cp), 1);
	CHECK_INT(cp, 'A');
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xc2\x80", 2, &cp), 2);
	CHECK_INT(cp, 0x80);
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xef\xbf\xbf", 3, &cp), 3);
	CHECK_INT(cp, 0xffff);
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xf4\x8f\xbf\xbf", 4, &cp), 4);
	CHECK_INT(cp, 0x10ffff);
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xf0\x90\x80\x80", 4, &cp), 4);
	CHECK_INT(cp, 0x10000);
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xf0\x8f\xbf\xbf", 4, &cp), 0);
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xc1\xbf", 2, &cp), 0);
	CHECK_INT(imap_utf8_char((const unsigned char *)"\xe2\x82\xac", 2, &cp), 0);
	CHECK_INT(imap_utf8_char((const unsigned char *)"", 0, &cp), 0);
}

/* Every BMP character and a spread of astral ones survive a round trip. */
PN_TEST(test_round_trip_all)
{
	char in[8], utf7[32];
	struct pn_buf a, b;
	const char *error;
	int failures = 0;

	for (uint32_t cp = 1; cp <= 0x10ffff && failures < 5; cp += cp < 0x10000 ? 1 : 97) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		size_t n;
		if (cp < 0x80) {
			in[0] = (char)cp;
			n = 1;
		} else if (cp < 0x800) {
			in[0] = (char)(0xc0 | (cp >> 6));
			in[1] = (char)(0x80 | (cp & 0x3f));
			n = 2;
		} else if (cp < 0x10000) {
			in[0] = (char)(0xe0 | (cp >> 12));
			in[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
			in[2] = (char)(0x80 | (cp & 0x3f));
			n = 3;
		} else {
			in[0] = (char)(0xf0 | (cp >> 18));
			in[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
			in[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
			in[3] = (char)(0x80 | (cp & 0x3f));
			n = 4;
		}
		in[n++] = 'x';
		pn_buf_init(&a, sizeof(utf7));
		pn_buf_init(&b, sizeof(in));
		if (imap_utf8_to_utf7(in, n, &a, &error) < 0 ||
		    imap_utf7_to_utf8((const char *)pn_buf_rptr(&a), pn_buf_len(&a), &b, &error) < 0 ||
		    pn_buf_len(&b) != n || memcmp(pn_buf_rptr(&b), in, n) != 0) {
			fprintf(stderr, "round trip of U+%04X failed\n", (unsigned)cp);
			failures++;
		}
		pn_buf_free(&a);
		pn_buf_free(&b);
	}
	CHECK_INT(failures, 0);
}

PN_TEST_MAIN("imap-utf7",
	     PN_TEST_CASE(test_pairs),
	     PN_TEST_CASE(test_decode_invalid),
	     PN_TEST_CASE(test_encode_invalid),
	     PN_TEST_CASE(test_bounds),
	     PN_TEST_CASE(test_utf8_char),
	     PN_TEST_CASE(test_round_trip_all))
