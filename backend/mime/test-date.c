/* Unit tests for postern/mail-date.h: RFC 5322 Date: parsing and IMAP
 * date / date-time parsing and formatting. Expected epochs were computed
 * independently (Python's calendar.timegm). */
#include "postern/mail-date.h"
#include "postern/testing.h"

static time_t t_r;
static int tz_r;

static int date(const char *s)
{
	t_r = -1;
	tz_r = 9999;
	return mail_date_parse(s, strlen(s), &t_r, &tz_r);
}

PN_TEST(test_rfc5322)
{
	CHECK_INT(date("Tue, 5 Mar 2024 10:11:09 +0100"), 0);
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(tz_r, 60);
	CHECK_INT(date("  Tue,  05 Mar 2024 10:11:09 +0100 (CET)  "), 0);
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(date("10 Mar 24 20:00 PST"), 0);
	CHECK_INT(t_r, 1710129600);
	CHECK_INT(tz_r, -480);
	CHECK_INT(date("Thu, 15 Feb 2007 01:02:03 +0200"), 0);
	CHECK_INT(t_r, 1171494123);
	CHECK_INT(date("Fri, 1 Jan 99 00:00:00 GMT"), 0);
	CHECK_INT(t_r, 915148800);
	CHECK_INT(tz_r, 0);
	CHECK_INT(date("1 Jan 103 00:00 +0000"), 0);
	CHECK_INT(t_r, 1041379200);
	CHECK_INT(date("29 Feb 2024 12:00:00 -0000"), 0);
	CHECK_INT(t_r, 1709208000);
	CHECK_INT(date("1 Jan 2024 00:00:00 -0330"), 0);
	CHECK_INT(t_r, 1704079800);
	CHECK_INT(tz_r, -210);
	CHECK_INT(date("1 january 2024 03:30:00 A"), 0); /* military: -0000 */
	CHECK_INT(t_r, 1704079800);
	CHECK_INT(date("5-Mar-2024 09:11:09 +0000"), 0);
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(date("Tue, 5 Mar 2024 09:11:09"), 0); /* no zone: +0000 */
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(date("Tue, 5 Mar 2024 09:11:60 +0000"), 0); /* leap second */
	CHECK_INT(t_r, 1709629920);

	static const char *const bad[] = {
		"", "garbage", "32 Jan 2024 00:00 +0000", "29 Feb 2023 00:00 +0000",
		"1 Foo 2024 00:00 +0000", "1 Jan 2024", "1 Jan 2024 24:00 +0000",
		"1 Jan 2024 10:61 +0000", "1 Jan 2024 10:00 +01", "1 Jan 2024 10:00 +0160",
		"1 Jan 5 10:00 +0000", "Mon, Jan 2024 10:00 +0000",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (date(bad[i]) != -1)
			fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
		CHECK_INT(date(bad[i]), -1);
	}
}

static int dt(const char *s)
{
	return mail_imap_datetime_parse(s, strlen(s), &t_r, &tz_r);
}

PN_TEST(test_imap_datetime)
{
	char out[MAIL_IMAP_DATETIME_LEN + 1];

	CHECK_INT(dt("05-Mar-2024 10:11:09 +0100"), 0);
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(tz_r, 60);
	CHECK_INT(dt(" 5-Mar-2024 10:11:09 +0100"), 0);
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(dt("5-mar-2024 10:11:09 +0100"), 0);
	CHECK_INT(t_r, 1709629869);
	CHECK_INT(dt("01-Jan-2024 00:00:00 -0330"), 0);
	CHECK_INT(t_r, 1704079800);
	CHECK_INT(tz_r, -210);

	static const char *const bad[] = {
		"05-Mar-2024 10:11:09 0100", "05-Mar-2024 24:00:00 +0000",
		"05-Mar-2024 10:11:09 +0100x", "05-Mar-24 10:11:09 +0100",
		"05 Mar 2024 10:11:09 +0100", "31-Apr-2024 10:11:09 +0100",
		" 15-Mar-2024 10:11:09 +0100", "005-Mar-2024 10:11:09 +0100",
		"05-Mar-2024 10:11 +0100", "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(dt(bad[i]), -1);

	mail_imap_datetime_format(1709629869, 60, out);
	CHECK_STR(out, "05-Mar-2024 10:11:09 +0100");
	mail_imap_datetime_format(1704079800, -210, out);
	CHECK_STR(out, "01-Jan-2024 00:00:00 -0330");
	mail_imap_datetime_format(0, 0, out);
	CHECK_STR(out, "01-Jan-1970 00:00:00 +0000");
	mail_imap_datetime_format(-1, 0, out);
	CHECK_STR(out, "31-Dec-1969 23:59:59 +0000");

	/* Round trips across centuries and zones. */
	for (long i = -3000; i <= 3000; i++) {
		time_t t = (time_t)(i * 1234567L + 89);
		int tz = (int)((i % 27) * 30);
		time_t t2;
		int tz2;
		mail_imap_datetime_format(t, tz, out);
		CHECK_INT(strlen(out), MAIL_IMAP_DATETIME_LEN);
		CHECK_INT(mail_imap_datetime_parse(out, strlen(out), &t2, &tz2), 0);
		CHECK_INT(t2, t);
		CHECK_INT(tz2, tz);
	}
}

PN_TEST(test_imap_date)
{
	long day = 0;
	CHECK_INT(mail_imap_date_parse("1-Feb-1994", 10, &day), 0);
	CHECK_INT(day, 8797);
	CHECK_INT(mail_imap_date_parse("01-FEB-1994", 11, &day), 0);
	CHECK_INT(day, 8797);
	CHECK_INT(mail_imap_date_parse("1-Feb-94", 8, &day), -1);
	CHECK_INT(mail_imap_date_parse("1-Feb-1994x", 11, &day), -1);
	CHECK_INT(mail_imap_date_parse("31-Apr-2024", 11, &day), -1);
	CHECK_INT(mail_imap_date_parse(" 1-Feb-1994", 11, &day), -1);

	CHECK_INT(mail_days_from_civil(1970, 1, 1), 0);
	CHECK_INT(mail_days_from_civil(1969, 12, 31), -1);
	CHECK_INT(mail_days_from_civil(2000, 3, 1), 11017);

	/* 2024-03-05 23:30:00 UTC */
	time_t t = 1709681400;
	CHECK_INT(mail_date_day(t, 0), 19787);
	CHECK_INT(mail_date_day(t, 60), 19788);
	CHECK_INT(mail_date_day(t, -600), 19787);
	CHECK_INT(mail_date_day(-1, 0), -1);
	CHECK_INT(mail_date_day(-86400, 0), -1);
	CHECK_INT(mail_date_day(-86401, 0), -2);
}

PN_TEST_MAIN("mime-date",
	PN_TEST_CASE(test_rfc5322),
	PN_TEST_CASE(test_imap_datetime),
	PN_TEST_CASE(test_imap_date))
