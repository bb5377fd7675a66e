/* Unit tests for postern/store-address.h: addresses, alias sources,
 * domains, plus-addressing, sizes and counts. */
#include "postern/store-address.h"
#include "postern/testing.h"

static int parse(const char *s, struct store_address *a)
{
	const char *error = NULL;
	int rc = store_address_parse(s, a, &error);

	if (rc < 0)
		CHECK(error != NULL && error[0] != '\0');
	return rc;
}

PN_TEST(test_good_addresses)
{
	struct store_address a;

	CHECK_INT(parse("Demo@Example.TEST", &a), 0);
	CHECK_STR(a.local, "Demo");
	CHECK_STR(a.domain, "example.test");
	CHECK_INT(parse("first.last+tag@sub-1.example.test", &a), 0);
	CHECK_STR(a.local, "first.last+tag");
	CHECK_INT(parse("!#$%&'*+-/=?^_`{|}~@x.y", &a), 0);
	CHECK_INT(parse("j\xc3\xb6rg@example.test", &a), 0);        /* RFC 6531 */
	CHECK_STR(a.local, "j\xc3\xb6rg");
	CHECK_INT(parse("a@localhost", &a), 0);
	CHECK_INT(parse("a@xn--bcher-kva.example", &a), 0);
	CHECK_INT(parse("a@1.2.3.example", &a), 0);
}

PN_TEST(test_bad_addresses)
{
	static const char *const bad[] = {
		"", "plain", "@example.test", "a@", "a@@example.test", ".a@x.y", "a.@x.y",
		"a..b@x.y", "a b@x.y", "\"quoted\"@x.y", "a@[192.0.2.1]", "a@-x.y",
		"a@x-.y", "a@x..y", "a@x.y.", "a@.x.y", "a@x_y.z", "a\x01@x.y",
		"a@b\xc3\xa4r.example", "\xc3@x.y", "\xc0\xaf@x.y", "\xed\xa0\x80@x.y",
		"\xf4\x90\x80\x80@x.y", "a\xe2\x82@x.y",
		"a@x;y", "a,b@x.y", "a(b)@x.y",
	};
	struct store_address a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &a) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
}

PN_TEST(test_length_limits)
{
	char buf[400];
	struct store_address a;

	/* 64-byte local part: fine; 65: not. */
	memset(buf, 'l', 64);
	memcpy(buf + 64, "@x.y", 5);
	CHECK_INT(parse(buf, &a), 0);
	memset(buf, 'l', 65);
	memcpy(buf + 65, "@x.y", 5);
	CHECK_INT(parse(buf, &a), -1);
	/* 63-byte label fine, 64 not. */
	memcpy(buf, "a@", 2);
	memset(buf + 2, 'd', 63);
	memcpy(buf + 65, ".test", 6);
	CHECK_INT(parse(buf, &a), 0);
	memset(buf + 2, 'd', 64);
	memcpy(buf + 66, ".test", 6);
	CHECK_INT(parse(buf, &a), -1);
	/* Whole address over 254 bytes. */
	memcpy(buf, "a@", 2);
	for (int i = 0; i < 5; i++) {
		memset(buf + 2 + i * 51, 'd', 50);
		buf[2 + i * 51 + 50] = '.';
	}
	memcpy(buf + 2 + 5 * 51, "test", 5);
	CHECK_INT(parse(buf, &a), -1);
}

PN_TEST(test_alias_sources)
{
	struct store_address a;
	const char *error;

	CHECK_INT(store_alias_source_parse("@Example.Test", &a, &error), 0);
	CHECK_STR(a.local, "");
	CHECK_STR(a.domain, "example.test");
	CHECK_INT(store_alias_source_parse("info@example.test", &a, &error), 0);
	CHECK_STR(a.local, "info");
	CHECK_INT(store_alias_source_parse("@", &a, &error), -1);
	CHECK_INT(store_alias_source_parse("example.test", &a, &error), -1);
}

PN_TEST(test_domains)
{
	char d[STORE_DOMAIN_MAX + 1], small[10];
	const char *error;

	CHECK_INT(store_domain_parse("MiXeD.Example", d, sizeof(d), &error), 0);
	CHECK_STR(d, "mixed.example");
	CHECK_INT(store_domain_parse("a", d, sizeof(d), &error), 0);
	CHECK_INT(store_domain_parse("", d, sizeof(d), &error), -1);
	CHECK_INT(store_domain_parse("a..b", d, sizeof(d), &error), -1);
	CHECK_INT(store_domain_parse("a.b.", d, sizeof(d), &error), -1);
	CHECK_INT(store_domain_parse("a b", d, sizeof(d), &error), -1);
	CHECK_INT(store_domain_parse("ok.test", small, sizeof(small), &error), -1);
}

PN_TEST(test_plus_addressing)
{
	CHECK_INT(store_local_part_base_len("user+tag"), 4);
	CHECK_INT(store_local_part_base_len("user+a+b"), 4);
	CHECK_INT(store_local_part_base_len("user"), 4);
	CHECK_INT(store_local_part_base_len("+only"), 5);
	CHECK_INT(store_local_part_base_len(""), 0);
}

PN_TEST(test_sizes)
{
	int64_t v;
	const char *error;
	char buf[32];

	CHECK_INT(store_size_parse("1G", &v, &error), 0);
	CHECK_INT(v, 1073741824LL);
	CHECK_INT(store_size_parse("500m", &v, &error), 0);
	CHECK_INT(v, 500LL << 20);
	CHECK_INT(store_size_parse("100KiB", &v, &error), 0);
	CHECK_INT(v, 102400);
	CHECK_INT(store_size_parse("2TB", &v, &error), 0);
	CHECK_INT(v, 2LL << 40);
	CHECK_INT(store_size_parse("12345", &v, &error), 0);
	CHECK_INT(v, 12345);
	CHECK_INT(store_size_parse("7b", &v, &error), 0);
	CHECK_INT(v, 7);
	CHECK_INT(store_size_parse("0", &v, &error), 0);
	CHECK_INT(v, -1);
	CHECK_INT(store_size_parse("unlimited", &v, &error), 0);
	CHECK_INT(v, -1);
	CHECK_INT(store_size_parse("NONE", &v, &error), 0);
	CHECK_INT(v, -1);
	CHECK_INT(store_size_parse("", &v, &error), -1);
	CHECK_INT(store_size_parse("G", &v, &error), -1);
	CHECK_INT(store_size_parse("-1", &v, &error), -1);
	CHECK_INT(store_size_parse("1.5G", &v, &error), -1);
	CHECK_INT(store_size_parse("1 G", &v, &error), -1);
	CHECK_INT(store_size_parse("1X", &v, &error), -1);
	CHECK_INT(store_size_parse("9223372036854775807", &v, &error), 0);
	CHECK_INT(store_size_parse("9223372036854775808", &v, &error), -1);
	CHECK_INT(store_size_parse("8388608T", &v, &error), -1);
	CHECK_INT(store_size_parse("8388607T", &v, &error), 0);

	store_size_format(1073741824LL, buf, sizeof(buf));
	CHECK_STR(buf, "1G");
	store_size_format(1536 * 1024, buf, sizeof(buf));
	CHECK_STR(buf, "1536K");
	store_size_format(1000, buf, sizeof(buf));
	CHECK_STR(buf, "1000");
	store_size_format(-1, buf, sizeof(buf));
	CHECK_STR(buf, "unlimited");
	store_size_format(0, buf, sizeof(buf));
	CHECK_STR(buf, "0");
	store_size_format(5LL << 40, buf, sizeof(buf));
	CHECK_STR(buf, "5T");
	store_size_format(5LL << 50, buf, sizeof(buf));
	CHECK_STR(buf, "5120T");
}

PN_TEST(test_counts)
{
	int64_t v;
	const char *error;

	CHECK_INT(store_count_parse("1000", &v, &error), 0);
	CHECK_INT(v, 1000);
	CHECK_INT(store_count_parse("0", &v, &error), 0);
	CHECK_INT(v, -1);
	CHECK_INT(store_count_parse("unlimited", &v, &error), 0);
	CHECK_INT(v, -1);
	CHECK_INT(store_count_parse("10K", &v, &error), -1);
	CHECK_INT(store_count_parse("", &v, &error), -1);
}

PN_TEST_MAIN("test-address",
	     PN_TEST_CASE(test_good_addresses),
	     PN_TEST_CASE(test_bad_addresses),
	     PN_TEST_CASE(test_length_limits),
	     PN_TEST_CASE(test_alias_sources),
	     PN_TEST_CASE(test_domains),
	     PN_TEST_CASE(test_plus_addressing),
	     PN_TEST_CASE(test_sizes),
	     PN_TEST_CASE(test_counts))
