/* Date parsing and formatting: RFC 5322 3.3 date-time (with the obsolete
 * forms of 4.3) for the Date: field, and IMAP date / date-time (RFC 3501
 * 9). Calendar arithmetic is done here (proleptic Gregorian), never
 * through the process time zone. */
#include "postern/mail-date.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* days_from_civil: the well-known era-based computation. */
long mail_days_from_civil(long y, unsigned int m, unsigned int d)
{
	y -= m <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	unsigned long yoe = (unsigned long)(y - era * 400);
	unsigned long doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, long *y_r, unsigned int *m_r, unsigned int *d_r)
{
	z += 719468;
	long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned long doe = (unsigned long)(z - era * 146097);
	unsigned long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long y = (long)yoe + era * 400;
	unsigned long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned long mp = (5 * doy + 2) / 153;
	unsigned int d = (unsigned int)(doy - (153 * mp + 2) / 5 + 1);
	unsigned int m = (unsigned int)(mp < 10 ? mp + 3 : mp - 9);
	*y_r = y + (m <= 2);
	*m_r = m;
	*d_r = d;
}

static unsigned int days_in_month(long y, unsigned int m)
{
	static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30,
					       31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dim[m - 1];
}

static int month_index(const char *s, size_t len)
{
	if (len < 3)
		return -1;
	for (int i = 0; i < 12; i++) {
		if (strncasecmp(s, months[i], 3) == 0)
			return i + 1;
	}
	return -1;
}

static bool valid_date(long y, unsigned int m, unsigned int d)
{
	return y >= 0 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 &&
	       d <= days_in_month(y, m);
}

struct cursor {
	const char *p, *end;
};

/* Skips FWS, comments (RFC 5322 3.2.2) and the given extra separators. */
static void skip(struct cursor *c, const char *seps)
{
	while (c->p < c->end) {
		char ch = *c->p;
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
		    (seps != NULL && strchr(seps, ch) != NULL && ch != '\0')) {
			c->p++;
		} else if (ch == '(') {
			int level = 0;
			while (c->p < c->end) {
				if (*c->p == '\\' && c->p + 1 < c->end) {
					c->p += 2;
					continue;
				}
				if (*c->p == '(')
					level++;
				else if (*c->p == ')' && --level == 0) {
					c->p++;
					break;
				}
				c->p++;
			}
		} else {
			return;
		}
	}
}

static size_t digits(struct cursor *c, unsigned long *v, size_t max)
{
	size_t n = 0;
	*v = 0;
	while (c->p < c->end && n < max && *c->p >= '0' && *c->p <= '9') {
		*v = *v * 10 + (unsigned long)(*c->p++ - '0');
		n++;
	}
	return n;
}

static size_t alphas(struct cursor *c, const char **start)
{
	*start = c->p;
	while (c->p < c->end && ((*c->p >= 'a' && *c->p <= 'z') ||
				 (*c->p >= 'A' && *c->p <= 'Z')))
		c->p++;
	return (size_t)(c->p - *start);
}

/* obs-zone (RFC 5322 4.3): UT, GMT, the US zones, and military letters,
 * which "SHOULD all be considered equivalent to "-0000"". */
static bool zone_name(const char *s, size_t len, int *tz)
{
	static const struct {
		const char *name;
		int tz;
	} zones[] = {
		{ "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "Z", 0 },
		{ "EST", -300 }, { "EDT", -240 }, { "CST", -360 }, { "CDT", -300 },
		{ "MST", -420 }, { "MDT", -360 }, { "PST", -480 }, { "PDT", -420 },
	};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (strlen(zones[i].name) == len && strncasecmp(s, zones[i].name, len) == 0) {
			*tz = zones[i].tz;
			return true;
		}
	}
	if (len == 1) {
		*tz = 0;
		return true;
	}
	return false;
}

/* date-time   = [ day-of-week "," ] date time [CFWS]
 * date        = day month year
 * time        = time-of-day zone
 * time-of-day = hour ":" minute [ ":" second ]
 * zone        = (FWS ( "+" / "-" ) 4DIGIT) / obs-zone
 * obs-year    = [CFWS] 2*DIGIT [CFWS]  (4.3: 00-49 -> 20xx, 50-999 -> +1900) */
int mail_date_parse(const char *s, size_t len, time_t *t_r, int *tz_r)
{
	struct cursor c = { s, s + len };
	const char *w;
	unsigned long day, year, hh, mm, ss = 0, zz;
	size_t n;
	int tz = 0;

	skip(&c, NULL);
	if (alphas(&c, &w) > 0)
		skip(&c, ","); /* day-of-week, not checked */
	else
		skip(&c, NULL);
	if (digits(&c, &day, 2) == 0)
		return -1;
	skip(&c, "-");
	n = alphas(&c, &w);
	int mon = month_index(w, n);
	if (mon < 0)
		return -1;
	skip(&c, "-");
	n = digits(&c, &year, 4);
	if (n < 2)
		return -1;
	if (n == 2)
		year += year < 50 ? 2000 : 1900;
	else if (n == 3)
		year += 1900;
	skip(&c, NULL);
	if (digits(&c, &hh, 2) == 0 || c.p >= c.end || *c.p != ':')
		return -1;
	c.p++;
	if (digits(&c, &mm, 2) == 0)
		return -1;
	if (c.p < c.end && *c.p == ':') {
		c.p++;
		if (digits(&c, &ss, 2) == 0)
			return -1;
	}
	skip(&c, NULL);
	if (c.p < c.end && (*c.p == '+' || *c.p == '-')) {
		int sign = *c.p++ == '-' ? -1 : 1;
		if (digits(&c, &zz, 4) != 4) {
			return -1;
		}
		if (zz % 100 > 59)
			return -1;
		tz = sign * (int)((zz / 100) * 60 + zz % 100);
	} else if ((n = alphas(&c, &w)) > 0) {
		if (!zone_name(w, n, &tz))
			tz = 0;
	}
	if (!valid_date((long)year, (unsigned int)mon, (unsigned int)day) ||
	    hh > 23 || mm > 59 || ss > 60)
		return -1;
	long days = mail_days_from_civil((long)year, (unsigned int)mon,
					 (unsigned int)day);
	*t_r = (time_t)days * 86400 + (time_t)(hh * 3600 + mm * 60 + ss) -
	       (time_t)tz * 60;
	*tz_r = tz;
	return 0;
}

static bool fixed_digits(const char *s, size_t n, unsigned long *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (unsigned long)(s[i] - '0');
	}
	return true;
}

/* date-text = date-day "-" date-month "-" date-year; date-day = 1*2DIGIT,
 * or date-day-fixed = (SP DIGIT) / 2DIGIT in date-time. Returns the length
 * used, or 0. */
static size_t parse_date_text(const char *s, size_t len, bool fixed, long *day_r)
{
	size_t i = 0;
	unsigned long d, y;

	if (fixed && len > 0 && s[0] == ' ')
		i = 1;
	size_t dstart = i;
	while (i < len && i - dstart < 2 && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == dstart || !fixed_digits(s + dstart, i - dstart, &d))
		return 0;
	if (dstart == 1 && i != 2)
		return 0;
	if (len - i < 9 || s[i] != '-' || s[i + 4] != '-')
		return 0;
	int mon = month_index(s + i + 1, 3);
	if (mon < 0 || !fixed_digits(s + i + 5, 4, &y))
		return 0;
	if (!valid_date((long)y, (unsigned int)mon, (unsigned int)d))
		return 0;
	*day_r = mail_days_from_civil((long)y, (unsigned int)mon, (unsigned int)d);
	return i + 9;
}

int mail_imap_date_parse(const char *s, size_t len, long *day_r)
{
	size_t n = parse_date_text(s, len, false, day_r);
	return n > 0 && n == len ? 0 : -1;
}

/* date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
 *             SP time SP zone DQUOTE
 * time = 2DIGIT ":" 2DIGIT ":" 2DIGIT ; zone = ("+" / "-") 4DIGIT */
int mail_imap_datetime_parse(const char *s, size_t len, time_t *t_r, int *tz_r)
{
	long days;
	unsigned long hh, mm, ss, zz;
	size_t i = parse_date_text(s, len, true, &days);

	if (i == 0 || len - i != 15 || s[i] != ' ' || s[i + 3] != ':' ||
	    s[i + 6] != ':' || s[i + 9] != ' ' ||
	    (s[i + 10] != '+' && s[i + 10] != '-') ||
	    !fixed_digits(s + i + 1, 2, &hh) || !fixed_digits(s + i + 4, 2, &mm) ||
	    !fixed_digits(s + i + 7, 2, &ss) || !fixed_digits(s + i + 11, 4, &zz))
		return -1;
	if (hh > 23 || mm > 59 || ss > 60 || zz % 100 > 59)
		return -1;
	int tz = (int)((zz / 100) * 60 + zz % 100);
	if (s[i + 10] == '-')
		tz = -tz;
	*t_r = (time_t)days * 86400 + (time_t)(hh * 3600 + mm * 60 + ss) -
	       (time_t)tz * 60;
	*tz_r = tz;
	return 0;
}

static long floor_div(long a, long b)
{
	long q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

long mail_date_day(time_t t, int tz)
{
	return floor_div((long)t + (long)tz * 60, 86400);
}

void mail_imap_datetime_format(time_t t, int tz, char out[MAIL_IMAP_DATETIME_LEN + 1])
{
	static const long min_t = -62167219200L; /* 0000-01-01 00:00:00 */
	static const long max_t = 253402300799L; /* 9999-12-31 23:59:59 */
	long lt = (long)t + (long)tz * 60;
	if (tz <= -6000 || tz >= 6000)
		tz = 0, lt = (long)t;
	if (lt < min_t)
		lt = min_t;
	if (lt > max_t)
		lt = max_t;
	long days = floor_div(lt, 86400), secs = lt - days * 86400;
	long y;
	unsigned int m, d;
	civil_from_days(days, &y, &m, &d);
	int atz = tz < 0 ? -tz : tz;
	char tmp[96];
	int n = snprintf(tmp, sizeof(tmp), "%02u-%s-%04ld %02ld:%02ld:%02ld %c%02d%02d",
			 d, months[m - 1], y, secs / 3600, secs / 60 % 60, secs % 60,
			 tz < 0 ? '-' : '+', atz / 60, atz % 60);
	if (n != MAIL_IMAP_DATETIME_LEN)
		n = 0; /* cannot happen with the clamps above */
	memcpy(out, tmp, (size_t)n);
	out[n] = '\0';
}
