/* Dates: RFC 5322 Date: fields (for SEARCH SENTBEFORE/SENTON/SENTSINCE) and
 * IMAP's date-time ("dd-Mon-yyyy hh:mm:ss +zzzz", INTERNALDATE and APPEND)
 * and date ("d-Mon-yyyy", SEARCH BEFORE/ON/SINCE...). Pure code; no use of
 * the process time zone. A time zone is an offset east of UTC in minutes.
 */
#ifndef POSTERN_MAIL_DATE_H
#define POSTERN_MAIL_DATE_H

#include <stddef.h>
#include <time.h>

/* Parses an RFC 5322 date-time (section 3.3, obsolete forms of 4.3
 * included: optional day name, 2- and 3-digit years, zone names, military
 * zones as -0000, comments, missing seconds). A missing zone counts as
 * +0000. Returns 0 with *t_r (UTC seconds) and *tz_r, or -1. */
int mail_date_parse(const char *s, size_t len, time_t *t_r, int *tz_r);

#define MAIL_IMAP_DATETIME_LEN 26 /* "05-Jan-2024 09:08:07 +0100" */

/* Parses IMAP date-time (RFC 3501 9: date-day-fixed may be " 5" or "05";
 * a single digit is accepted too) without the double quotes. Returns 0 with
 * *t_r and *tz_r, or -1. */
int mail_imap_datetime_parse(const char *s, size_t len, time_t *t_r, int *tz_r);
/* Writes t in zone tz as "dd-Mon-yyyy hh:mm:ss +zzzz" plus NUL into out. */
void mail_imap_datetime_format(time_t t, int tz,
			       char out[MAIL_IMAP_DATETIME_LEN + 1]);

/* Parses IMAP date ("1-Feb-1994" or "01-Feb-1994", no quotes). Returns 0
 * with *day_r = days since 1970-01-01, or -1. */
int mail_imap_date_parse(const char *s, size_t len, long *day_r);
/* The calendar day (days since 1970-01-01) of t as seen in zone tz: the
 * "date disregarding time and timezone" of SENTBEFORE/SENTON, or, with
 * the server's zone, of BEFORE/ON/SINCE. */
long mail_date_day(time_t t, int tz);

/* Days since 1970-01-01 of a proleptic Gregorian date (mon 1..12). */
long mail_days_from_civil(long year, unsigned int mon, unsigned int day);

#endif
