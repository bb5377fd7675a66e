/* Unit tests for smtp-data.c: DATA decoding with dot-stuffing, the end of
 * data found across every split, the smuggling variants that must never end
 * the data, bare CR / LF and line length flags, and the BDAT scanner. */
#include "smtp-data.h"

#include "postern/testing.h"

#include <stdbool.h>
#include <string.h>

struct decoded {
	char out[4096];
	size_t out_len;
	size_t consumed;
	bool end;
	struct smtp_data d;
};

/* Decodes in, cut into pieces at the given split points (sorted, may be
 * empty), and stops after the end of data. */
static void decode_split(const char *in, size_t len, const size_t *cuts, size_t ncuts,
			 struct decoded *r)
{
	size_t pos = 0;

	memset(r, 0, sizeof(*r));
	smtp_data_init(&r->d, 998);
	for (size_t c = 0; c <= ncuts && !r->end; c++) {
		size_t stop = c < ncuts ? cuts[c] : len;
		while (pos < stop && !r->end) {
			size_t olen;
			size_t used = smtp_data_decode(&r->d, (const uint8_t *)in + pos,
						       stop - pos,
						       (uint8_t *)r->out + r->out_len, &olen,
						       &r->end);
			r->out_len += olen;
			pos += used;
			r->consumed = pos;
			if (used == 0)
				break;
		}
	}
}

PN_TEST(test_end_of_data_every_split)
{
	const char in[] = "Subject: x\r\n\r\n..dot\r\n.x\r\n...\r\nend\r\n.\r\nMAIL FROM:<a@b>\r\n";
	const char want[] = "Subject: x\r\n\r\n.dot\r\nx\r\n..\r\nend\r\n";
	size_t len = strlen(in), end_at = strlen(in) - strlen("MAIL FROM:<a@b>\r\n");
	struct decoded r;

	for (size_t i = 0; i <= len; i++) {
		for (size_t j = i; j <= len; j++) {
			size_t cuts[2] = { i, j };
			decode_split(in, len, cuts, 2, &r);
			CHECK(r.end);
			CHECK_INT(r.consumed, end_at);
			CHECK_MEM(r.out, r.out_len, want, strlen(want));
			CHECK(!r.d.bare_cr && !r.d.bare_lf && !r.d.line_too_long);
		}
	}
}

PN_TEST(test_byte_at_a_time_needs_more_until_last)
{
	const char in[] = "a\r\n..\r\n.\r\n";
	struct smtp_data d;
	char out[64];
	size_t o = 0, len = strlen(in);

	smtp_data_init(&d, 998);
	for (size_t i = 0; i < len; i++) {
		size_t olen;
		bool end;
		size_t used = smtp_data_decode(&d, (const uint8_t *)in + i, 1,
					       (uint8_t *)out + o, &olen, &end);
		CHECK_INT(used, 1);
		o += olen;
		CHECK_INT(end, i + 1 == len);
	}
	CHECK_MEM(out, o, "a\r\n.\r\n", 6);
}

PN_TEST(test_empty_message)
{
	struct decoded r;

	decode_split(".\r\n", 3, NULL, 0, &r);
	CHECK(r.end);
	CHECK_INT(r.out_len, 0);
}

/* None of these may end the data; each leaves a bare CR or LF noted. */
PN_TEST(test_smuggling_variants_do_not_end)
{
	static const char *variants[] = {
		"\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r.\n", "\r.\r\n",
		"\r\n.\r", "\n.\r", "\r\n.\rX\r\n", "\n..\n", "\r\n.\r\r\n",
	};
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		char in[256];
		int n = snprintf(in, sizeof(in), "body%sMAIL FROM:<e@x>\r\n", variants[v]);
		struct decoded r;

		for (int cut = 0; cut <= n; cut++) {
			size_t cuts[1] = { (size_t)cut };
			decode_split(in, (size_t)n, cuts, 1, &r);
			CHECK(!r.end);
			CHECK_INT(r.consumed, n);
			CHECK(r.d.bare_cr || r.d.bare_lf);
			/* the would-be second command stays message content */
			CHECK(r.out_len >= 17 &&
			      memcmp(r.out + r.out_len - 17, "MAIL FROM:<e@x>\r\n", 17) == 0);
		}
	}
}

PN_TEST(test_bare_cr_lf_flags)
{
	struct decoded r;

	decode_split("a\nb\r\n.\r\n", 8, NULL, 0, &r);
	CHECK(r.end && r.d.bare_lf && !r.d.bare_cr);
	decode_split("a\rb\r\n.\r\n", 8, NULL, 0, &r);
	CHECK(r.end && r.d.bare_cr && !r.d.bare_lf);
	CHECK_MEM(r.out, r.out_len, "a\rb\r\n", 5);
	decode_split("a\r\r\n.\r\n", 7, NULL, 0, &r);
	CHECK(r.end && r.d.bare_cr);
	CHECK_MEM(r.out, r.out_len, "a\r\r\n", 4);
}

PN_TEST(test_line_length)
{
	char in[1100];
	struct decoded r;

	memset(in, 'x', 998);
	memcpy(in + 998, "\r\n.\r\n", 5);
	decode_split(in, 1003, NULL, 0, &r);
	CHECK(r.end && !r.d.line_too_long);
	memset(in, 'x', 999);
	memcpy(in + 999, "\r\n.\r\n", 5);
	decode_split(in, 1004, NULL, 0, &r);
	CHECK(r.end && r.d.line_too_long);
	/* the stuffed dot does not count */
	in[0] = '.';
	memset(in + 1, 'x', 998);
	memcpy(in + 999, "\r\n.\r\n", 5);
	decode_split(in, 1004, NULL, 0, &r);
	CHECK(r.end && !r.d.line_too_long);
}

PN_TEST(test_discard_mode_counts)
{
	struct smtp_data d;
	size_t olen;
	bool end;
	const char in[] = "abc\r\n..d\r\n.\r\n";

	smtp_data_init(&d, 998);
	size_t used = smtp_data_decode(&d, (const uint8_t *)in, strlen(in), NULL, &olen, &end);
	CHECK(end);
	CHECK_INT(used, strlen(in));
	CHECK_INT(olen, strlen("abc\r\n.d\r\n"));
}

PN_TEST(test_bdat_scan)
{
	struct smtp_data d;

	smtp_data_init(&d, 998);
	d.state = SMTP_DATA_MID;
	smtp_data_scan(&d, (const uint8_t *)"ab\r", 3);
	smtp_data_scan(&d, (const uint8_t *)"\ncd\r\n", 5);
	smtp_data_scan_end(&d);
	CHECK(!d.bare_cr && !d.bare_lf);

	smtp_data_init(&d, 998);
	d.state = SMTP_DATA_MID;
	smtp_data_scan(&d, (const uint8_t *)"ab\r", 3);
	smtp_data_scan_end(&d);
	CHECK(d.bare_cr);

	smtp_data_init(&d, 998);
	d.state = SMTP_DATA_MID;
	smtp_data_scan(&d, (const uint8_t *)"ab\r", 3);
	smtp_data_scan(&d, (const uint8_t *)"x\r\n", 3);
	CHECK(d.bare_cr && !d.bare_lf);

	smtp_data_init(&d, 998);
	d.state = SMTP_DATA_MID;
	smtp_data_scan(&d, (const uint8_t *)"ab\n.\n", 5);
	CHECK(d.bare_lf && !d.bare_cr);

	char big[1000];
	smtp_data_init(&d, 998);
	d.state = SMTP_DATA_MID;
	memset(big, 'y', sizeof(big));
	smtp_data_scan(&d, (const uint8_t *)big, 500);
	smtp_data_scan(&d, (const uint8_t *)big, 498);
	CHECK(!d.line_too_long);
	smtp_data_scan(&d, (const uint8_t *)big, 1);
	CHECK(d.line_too_long);
}

PN_TEST_MAIN("test-smtp-data",
	     PN_TEST_CASE(test_end_of_data_every_split),
	     PN_TEST_CASE(test_byte_at_a_time_needs_more_until_last),
	     PN_TEST_CASE(test_empty_message),
	     PN_TEST_CASE(test_smuggling_variants_do_not_end),
	     PN_TEST_CASE(test_bare_cr_lf_flags),
	     PN_TEST_CASE(test_line_length),
	     PN_TEST_CASE(test_discard_mode_counts),
	     PN_TEST_CASE(test_bdat_scan))
