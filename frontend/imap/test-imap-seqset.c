/* Unit tests for imap-seqset.h: number, nz-number, number64 and
 * nz-number64 bounds; sequence sets valid and invalid; normalizing "*",
 * reversed, overlapping and adjacent ranges; membership. */
#include "imap-seqset.h"

#include <stdio.h>

#include "postern/buf.h"
#include "postern/testing.h"

#define S(lit) (lit), (sizeof(lit) - 1)

PN_TEST(test_numbers)
{
	uint32_t v;
	uint64_t w;

	CHECK_INT(imap_parse_number(S("0"), &v), 0);
	CHECK_INT(v, 0);
	CHECK_INT(imap_parse_number(S("007"), &v), 0);
	CHECK_INT(v, 7);
	CHECK_INT(imap_parse_number(S("4294967295"), &v), 0);
	CHECK_INT(v, 4294967295u);
	CHECK_INT(imap_parse_number(S("4294967296"), &v), -1);
	CHECK_INT(imap_parse_number(S("99999999999999999999999"), &v), -1);
	CHECK_INT(imap_parse_number(S(""), &v), -1);
	CHECK_INT(imap_parse_number(S("-1"), &v), -1);
	CHECK_INT(imap_parse_number(S("+1"), &v), -1);
	CHECK_INT(imap_parse_number(S("1 "), &v), -1);
	CHECK_INT(imap_parse_number(S("1a"), &v), -1);

	CHECK_INT(imap_parse_nz_number(S("1"), &v), 0);
	CHECK_INT(imap_parse_nz_number(S("0"), &v), -1);
	CHECK_INT(imap_parse_nz_number(S("01"), &v), -1);
	CHECK_INT(imap_parse_nz_number(S("4294967295"), &v), 0);
	CHECK_INT(imap_parse_nz_number(S("4294967296"), &v), -1);

	CHECK_INT(imap_parse_number64(S("9223372036854775807"), &w), 0);
	CHECK(w == 9223372036854775807ull);
	CHECK_INT(imap_parse_number64(S("9223372036854775808"), &w), -1);
	CHECK_INT(imap_parse_number64(S("18446744073709551616"), &w), -1);
	CHECK_INT(imap_parse_number64(S("0"), &w), 0);
	CHECK_INT(imap_parse_nz_number64(S("0"), &w), -1);
	CHECK_INT(imap_parse_nz_number64(S("4294967296"), &w), 0);
	CHECK(w == 4294967296ull);
}

/* Renders a set as "a:b,c" ("*" for the star), "$" first if present. */
static const char *show(const struct imap_seqset *set)
{
	static char buf[512];
	size_t o = 0;

	buf[0] = '\0';
	if (set->last_result)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "$");
	for (size_t i = 0; i < set->count && o < sizeof(buf); i++) {
		const struct imap_seq_range *r = &set->ranges[i];
		char a[16], b[16];
		snprintf(a, sizeof(a), "%u", r->first);
		snprintf(b, sizeof(b), "%u", r->last);
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s:%s", o ? "," : "",
				      r->first == IMAP_SEQ_STAR ? "*" : a,
				      r->last == IMAP_SEQ_STAR ? "*" : b);
	}
	return buf;
}

static void check_valid(const char *s, const char *expected)
{
	struct imap_seqset set;
	const char *error = NULL;

	if (imap_seqset_parse(s, strlen(s), 0, &set, &error) < 0) {
		fprintf(stderr, "\"%s\" rejected: %s\n", s, error);
		CHECK(0);
		return;
	}
	CHECK_STR(show(&set), expected);
	imap_seqset_free(&set);
	CHECK(set.ranges == NULL && set.count == 0);
}

static void check_invalid(const char *s, size_t len)
{
	struct imap_seqset set;
	const char *error = NULL;

	if (imap_seqset_parse(s, len, 0, &set, &error) == 0) {
		fprintf(stderr, "\"%.*s\" accepted as %s\n", (int)len, s, show(&set));
		CHECK(0);
		imap_seqset_free(&set);
		return;
	}
	CHECK(error != NULL && error[0] != '\0');
	CHECK(set.ranges == NULL);
}

PN_TEST(test_seqset_valid)
{
	check_valid("1", "1:1");
	check_valid("*", "*:*");
	check_valid("1:*", "1:*");
	check_valid("*:4", "*:4");
	check_valid("1,3:5,7", "1:1,3:5,7:7");
	/* Ranges are unordered by definition; numbers get ordered now. */
	check_valid("5:2", "2:5");
	check_valid("4294967295", "4294967295:4294967295");
	check_valid("2,4:7,9,12:*", "2:2,4:7,9:9,12:*");
	/* RFC 5182 "$", alone or as an element. */
	check_valid("$", "$");
	check_valid("1,$", "$,1:1");
}

PN_TEST(test_seqset_invalid)
{
	static const char *const bad[] = {
		"", "0", "1:0", "0:5", "01", "1,", ",1", "1,,2", ":", "1:", ":5", "1:2:3",
		"a", "1a", "-1", "1-3", "1 2", " 1", "1;2", "4294967296", "1:99999999999",
		"**", "*:**", "$:5", "1:$", "$$", "1.5", "+1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_invalid(bad[i], strlen(bad[i]));
	check_invalid("1\0" "2", 3);

	/* The range count limit. */
	struct imap_seqset set;
	const char *error;
	CHECK_INT(imap_seqset_parse(S("1,2,3"), 2, &set, &error), -1);
	CHECK_STR(error, "Too many ranges in sequence set");
	CHECK_INT(imap_seqset_parse(S("1,2,3"), 3, &set, &error), 0);
	imap_seqset_free(&set);
}

static const char *normalized(const char *s, uint32_t star)
{
	struct imap_seqset set;
	const char *error;
	static char buf[512];

	if (imap_seqset_parse(s, strlen(s), 0, &set, &error) < 0)
		return "INVALID";
	imap_seqset_normalize(&set, star);
	snprintf(buf, sizeof(buf), "%s", show(&set));
	imap_seqset_free(&set);
	return buf;
}

PN_TEST(test_seqset_normalize)
{
	CHECK_STR(normalized("1:*", 10), "1:10");
	/* RFC 9051 6.4.8: "n:*" includes the last one even when n is past it. */
	CHECK_STR(normalized("20:*", 10), "10:20");
	CHECK_STR(normalized("*:4,5:7", 10), "4:10");
	CHECK_STR(normalized("7,1,3:5,2", 100), "1:5,7:7");
	CHECK_STR(normalized("1:3,10:12,2:11", 100), "1:12");
	CHECK_STR(normalized("5,6,8", 100), "5:6,8:8");
	CHECK_STR(normalized("4294967295,1:4294967295", 5), "1:4294967295");
	CHECK_STR(normalized("4294967294:4294967295,4294967295", 5), "4294967294:4294967295");
	/* Empty mailbox: "*" matches nothing. */
	CHECK_STR(normalized("1:*,*,3", 0), "3:3");
	CHECK_STR(normalized("*", 0), "");
	CHECK_STR(normalized("$,2", 9), "$,2:2");

	struct imap_seqset set;
	const char *error;
	CHECK_INT(imap_seqset_parse(S("2,4:7,9,12:*"), 0, &set, &error), 0);
	imap_seqset_normalize(&set, 15);
	static const int in[] = { 2, 4, 5, 6, 7, 9, 12, 13, 14, 15 };
	for (uint32_t n = 0; n <= 20; n++) {
		bool want = false;
		for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
			want = want || (uint32_t)in[i] == n;
		CHECK_INT(imap_seqset_contains(&set, n), want);
	}
	imap_seqset_free(&set);
}

PN_TEST_MAIN("imap-seqset",
	     PN_TEST_CASE(test_numbers),
	     PN_TEST_CASE(test_seqset_valid),
	     PN_TEST_CASE(test_seqset_invalid),
	     PN_TEST_CASE(test_seqset_normalize))
