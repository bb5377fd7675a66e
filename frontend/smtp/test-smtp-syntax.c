/* Unit tests for smtp-syntax.c: paths (quoted local parts, source routes,
 * address literals, UTF-8, length limits), ESMTP parameters, xtext and
 * numbers. */
#include "smtp-syntax.h"

#include "postern/testing.h"

#include <string.h>

struct path_case {
	const char *in;
	unsigned int flags;
	const char *want;	/* NULL: must fail */
	bool utf8;
	size_t rest;		/* bytes left after the path */
};

PN_TEST(test_paths)
{
	static const struct path_case cases[] = {
		{ "<user@example.test>", 0, "user@example.test", false, 0 },
		{ "<user@example.test> SIZE=10", 0, "user@example.test", false, 8 },
		{ "<>", SMTP_PATH_ALLOW_NULL, "", false, 0 },
		{ "<>", 0, NULL, false, 0 },
		{ "<Postmaster>", SMTP_PATH_ALLOW_POSTMASTER, "Postmaster", false, 0 },
		{ "<postMASTER>", SMTP_PATH_ALLOW_POSTMASTER, "Postmaster", false, 0 },
		{ "<postmaster>", 0, NULL, false, 0 },
		{ "<@relay.example,@b.example:joe@example.test>", 0, "joe@example.test", false, 0 },
		{ "<@relay.example:joe@example.test>", 0, "joe@example.test", false, 0 },
		{ "<@relay.example;joe@example.test>", 0, NULL, false, 0 },
		{ "<\"john\"@example.test>", 0, "john@example.test", false, 0 },
		{ "<\"john.doe\"@example.test>", 0, "john.doe@example.test", false, 0 },
		{ "<\"john doe\"@example.test>", 0, "\"john doe\"@example.test", false, 0 },
		{ "<\"a\\\"b\"@example.test>", 0, "\"a\\\"b\"@example.test", false, 0 },
		{ "<\"a\\b\"@example.test>", 0, "ab@example.test", false, 0 },
		{ "<\"a..b\"@example.test>", 0, "\"a..b\"@example.test", false, 0 },
		{ "<\"\"@example.test>", 0, "\"\"@example.test", false, 0 },
		{ "<a.b+tag@example.test>", 0, "a.b+tag@example.test", false, 0 },
		{ "<a..b@example.test>", 0, NULL, false, 0 },
		{ "<.a@example.test>", 0, NULL, false, 0 },
		{ "<a.@example.test>", 0, NULL, false, 0 },
		{ "<a@b@example.test>", 0, NULL, false, 0 },
		{ "<a@[192.0.2.1]>", 0, "a@[192.0.2.1]", false, 0 },
		{ "<a@[192.0.2.256]>", 0, NULL, false, 0 },
		{ "<a@[IPv6:2001:db8::1]>", 0, "a@[IPv6:2001:db8::1]", false, 0 },
		{ "<a@[IPv6:::ffff:192.0.2.1]>", 0, "a@[IPv6:::ffff:192.0.2.1]", false, 0 },
		{ "<a@[IPv6:1:2:3:4:5:6:7:8]>", 0, "a@[IPv6:1:2:3:4:5:6:7:8]", false, 0 },
		{ "<a@[IPv6:1:2:3:4:5:6:7]>", 0, NULL, false, 0 },
		{ "<a@[IPv6:1::2::3]>", 0, NULL, false, 0 },
		{ "<a@[IPv6:12345::1]>", 0, NULL, false, 0 },
		{ "<a@[x-tag:stuff]>", 0, "a@[x-tag:stuff]", false, 0 },
		{ "<a@[nonsense]>", 0, NULL, false, 0 },
		{ "<a@-bad.example>", 0, NULL, false, 0 },
		{ "<a@bad-.example>", 0, NULL, false, 0 },
		{ "<a@example.test.>", 0, NULL, false, 0 },
		{ "<a@example..test>", 0, NULL, false, 0 },
		{ "<a@>", 0, NULL, false, 0 },
		{ "<@example.test>", 0, NULL, false, 0 },
		{ "<a>", 0, NULL, false, 0 },
		{ "a@example.test", 0, NULL, false, 0 },
		{ "<a@example.test", 0, NULL, false, 0 },
		{ "<a b@example.test>", 0, NULL, false, 0 },
		{ "<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", 0, "j\xc3\xb6rg@b\xc3\xbc" "cher.example", true, 0 },
		{ "<\"j\xc3\xb6 rg\"@example.test>", 0, "\"j\xc3\xb6 rg\"@example.test", true, 0 },
		{ "<j\xc3rg@example.test>", 0, NULL, false, 0 },		/* broken UTF-8 */
		{ "<j\xed\xa0\x80@example.test>", 0, NULL, false, 0 },	/* surrogate */
		{ "<\"a\x01\"@example.test>", 0, NULL, false, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct path_case *c = &cases[i];
		const char *p = c->in, *end = c->in + strlen(c->in), *error = NULL;
		char addr[SMTP_ADDRESS_SIZE];
		bool utf8 = false;
		int r = smtp_parse_path(&p, end, c->flags, addr, sizeof(addr), &utf8, &error);

		if (c->want == NULL) {
			if (r != -1)
				fprintf(stderr, "case %zu (%s) should fail\n", i, c->in);
			CHECK_INT(r, -1);
			CHECK(error != NULL);
			CHECK(p == c->in);
		} else {
			if (r != 0)
				fprintf(stderr, "case %zu (%s): %s\n", i, c->in, error);
			CHECK_INT(r, 0);
			if (r == 0) {
				CHECK_STR(addr, c->want);
				CHECK_INT(utf8, c->utf8);
				CHECK_INT(end - p, c->rest);
			}
		}
	}
}

PN_TEST(test_path_lengths)
{
	char in[400], addr[SMTP_ADDRESS_SIZE];
	const char *p, *error;
	bool utf8;

	/* local part: 64 ok, 65 refused */
	memset(in, 0, sizeof(in));
	in[0] = '<';
	memset(in + 1, 'l', 64);
	memcpy(in + 65, "@example.test>", 15);
	p = in;
	CHECK_INT(smtp_parse_path(&p, in + strlen(in), 0, addr, sizeof(addr), &utf8, &error), 0);
	memset(in + 1, 'l', 65);
	memcpy(in + 66, "@example.test>", 15);
	p = in;
	CHECK_INT(smtp_parse_path(&p, in + strlen(in), 0, addr, sizeof(addr), &utf8, &error), -1);

	/* path: 256 octets with brackets ok, 257 refused; labels of 63 */
	char dom[300];
	size_t dl = 0;
	while (dl + 64 < 254 - 2) {
		memset(dom + dl, 'd', 63);
		dl += 63;
		dom[dl++] = '.';
	}
	/* "<" + "a@" + domain + ">" = 256 */
	size_t need = 256 - 4 - dl;
	memset(dom + dl, 'e', need);
	dl += need;
	dom[dl] = '\0';
	snprintf(in, sizeof(in), "<a@%s>", dom);
	CHECK_INT(strlen(in), 256);
	p = in;
	CHECK_INT(smtp_parse_path(&p, in + strlen(in), 0, addr, sizeof(addr), &utf8, &error), 0);
	snprintf(in, sizeof(in), "<ab@%s>", dom);
	p = in;
	CHECK_INT(smtp_parse_path(&p, in + strlen(in), 0, addr, sizeof(addr), &utf8, &error), -1);
	/* a 64-octet label */
	memset(dom, 'x', 64);
	memcpy(dom + 64, ".example", 9);
	snprintf(in, sizeof(in), "<a@%s>", dom);
	p = in;
	CHECK_INT(smtp_parse_path(&p, in + strlen(in), 0, addr, sizeof(addr), &utf8, &error), -1);
}

PN_TEST(test_params)
{
	const char *in = " SIZE=100  BODY=8BITMIME SMTPUTF8 X-Y=a+2Bb";
	const char *p = in, *end = in + strlen(in);
	struct smtp_param prm;

	CHECK_INT(smtp_parse_param(&p, end, &prm), 1);
	CHECK(smtp_param_is(&prm, "size"));
	CHECK_MEM(prm.value, prm.value_len, "100", 3);
	CHECK_INT(smtp_parse_param(&p, end, &prm), 1);
	CHECK(smtp_param_is(&prm, "BODY"));
	CHECK_INT(smtp_parse_param(&p, end, &prm), 1);
	CHECK(smtp_param_is(&prm, "SMTPUTF8"));
	CHECK(prm.value == NULL);
	CHECK_INT(smtp_parse_param(&p, end, &prm), 1);
	CHECK(smtp_param_is(&prm, "X-Y"));
	CHECK_INT(smtp_parse_param(&p, end, &prm), 0);

	static const char *bad[] = { "SIZE=1", " =1", " SIZE=", " SIZE=a=b", " -X", " SI!ZE",
				     " SIZE=\x01", " A=\xc3" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = bad[i];
		CHECK_INT(smtp_parse_param(&p, bad[i] + strlen(bad[i]), &prm), -1);
	}
	p = "   ";
	CHECK_INT(smtp_parse_param(&p, p + 3, &prm), 0);
}

PN_TEST(test_xtext_numbers_helo)
{
	uint64_t v;

	CHECK(smtp_xtext_valid("abc", 3));
	CHECK(smtp_xtext_valid("a+2Bb", 5));
	CHECK(smtp_xtext_valid("<>", 2));
	CHECK(!smtp_xtext_valid("a+2bb", 5));
	CHECK(!smtp_xtext_valid("a+2", 3));
	CHECK(!smtp_xtext_valid("a+", 2));
	CHECK(!smtp_xtext_valid("a=b", 3));
	CHECK(!smtp_xtext_valid("a b", 3));
	CHECK(!smtp_xtext_valid("", 0));

	CHECK_INT(smtp_parse_u64("0", 1, &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(smtp_parse_u64("18446744073709551615", 20, &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_INT(smtp_parse_u64("18446744073709551616", 20, &v), -1);
	CHECK_INT(smtp_parse_u64("123456789012345678901", 21, &v), -1);
	CHECK_INT(smtp_parse_u64("", 0, &v), -1);
	CHECK_INT(smtp_parse_u64("1a", 2, &v), -1);
	CHECK_INT(smtp_parse_u64("-1", 2, &v), -1);

	CHECK(smtp_helo_valid("mail.example.test", 17));
	CHECK(smtp_helo_valid("[192.0.2.1]", 11));
	CHECK(!smtp_helo_valid("a b", 3));
	CHECK(!smtp_helo_valid("a(b)", 4));
	CHECK(!smtp_helo_valid("a;b", 3));
	CHECK(!smtp_helo_valid("", 0));
}

PN_TEST(test_utf8_seq)
{
	const unsigned char ok2[] = { 0xc3, 0xa9 }, ok3[] = { 0xe2, 0x82, 0xac },
			    ok4[] = { 0xf0, 0x9f, 0x98, 0x80 }, over[] = { 0xc0, 0x80 },
			    over3[] = { 0xe0, 0x80, 0x80 }, big[] = { 0xf4, 0x90, 0x80, 0x80 },
			    cut[] = { 0xe2, 0x82 };

	CHECK_INT(smtp_utf8_seq_len(ok2, ok2 + 2), 2);
	CHECK_INT(smtp_utf8_seq_len(ok3, ok3 + 3), 3);
	CHECK_INT(smtp_utf8_seq_len(ok4, ok4 + 4), 4);
	CHECK_INT(smtp_utf8_seq_len(over, over + 2), 0);
	CHECK_INT(smtp_utf8_seq_len(over3, over3 + 3), 0);
	CHECK_INT(smtp_utf8_seq_len(big, big + 4), 0);
	CHECK_INT(smtp_utf8_seq_len(cut, cut + 2), 0);
}

PN_TEST_MAIN("test-smtp-syntax",
	     PN_TEST_CASE(test_paths),
	     PN_TEST_CASE(test_path_lengths),
	     PN_TEST_CASE(test_params),
	     PN_TEST_CASE(test_xtext_numbers_helo),
	     PN_TEST_CASE(test_utf8_seq))
