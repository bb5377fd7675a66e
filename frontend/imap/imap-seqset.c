/* IMAP numbers (number, nz-number, number64, nz-number64) and sequence sets:
 * parsing with validation, normalizing "*" and ranges, membership. The
 * session uses these on atoms the command parser handed it. */
#include "imap-seqset.h"

#include <stdlib.h>
#include <string.h>

#define NUMBER64_MAX ((uint64_t)INT64_MAX)

/* Reads 1*DIGIT as a value <= max. nz: reject a leading "0". */
static int parse_digits(const char *s, size_t len, uint64_t max, bool nz,
			uint64_t *num_r)
{
	uint64_t v = 0;

	if (len == 0)
		return -1;
	if (nz && s[0] == '0')
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*num_r = v;
	return 0;
}

/* RFC 3501 section 9:
 *   number          = 1*DIGIT
 *                       ; Unsigned 32-bit integer
 *                       ; (0 <= n < 4,294,967,296)
 *   nz-number       = digit-nz *DIGIT
 *                       ; Non-zero unsigned 32-bit integer
 *                       ; (0 < n < 4,294,967,296)
 */
int imap_parse_number(const char *s, size_t len, uint32_t *num_r)
{
	uint64_t v;

	if (parse_digits(s, len, UINT32_MAX, false, &v) < 0)
		return -1;
	*num_r = (uint32_t)v;
	return 0;
}

int imap_parse_nz_number(const char *s, size_t len, uint32_t *num_r)
{
	uint64_t v;

	if (parse_digits(s, len, UINT32_MAX, true, &v) < 0)
		return -1;
	*num_r = (uint32_t)v;
	return 0;
}

/* RFC 9051 section 9:
 *   number64        = 1*DIGIT
 *                       ; Unsigned 63-bit integer
 *                       ; (0 <= n <= 9,223,372,036,854,775,807)
 *   nz-number64     = digit-nz *DIGIT
 *                       ; (0 < n <= 9,223,372,036,854,775,807)
 * RFC 7162 section 7: mod-sequence-value = 1*DIGIT, a positive 63-bit
 * integer, and mod-sequence-valzer = "0" / mod-sequence-value.
 */
int imap_parse_number64(const char *s, size_t len, uint64_t *num_r)
{
	return parse_digits(s, len, NUMBER64_MAX, false, num_r);
}

int imap_parse_nz_number64(const char *s, size_t len, uint64_t *num_r)
{
	return parse_digits(s, len, NUMBER64_MAX, true, num_r);
}

/* seq-number      = nz-number / "*" */
static int parse_seq_number(const char *s, size_t len, uint32_t *num_r)
{
	if (len == 1 && s[0] == '*') {
		*num_r = IMAP_SEQ_STAR;
		return 0;
	}
	return imap_parse_nz_number(s, len, num_r);
}

/* RFC 3501 section 9:
 *   seq-range       = seq-number ":" seq-number
 *                       ; two seq-number values and all values between
 *                       ; these two regardless of order.
 *   sequence-set    = (seq-number / seq-range) *("," sequence-set)
 * RFC 5182 section 3 (and RFC 9051 section 9):
 *   sequence-set    =/ seq-last-command
 *   seq-last-command   = "$"
 * Through the recursion "$" may be any element of the list ("1,$"); it may
 * not be a range end ("$:4").
 */
int imap_seqset_parse(const char *s, size_t len, size_t max_ranges,
		      struct imap_seqset *set_r, const char **error_r)
{
	size_t elems = 1;

	memset(set_r, 0, sizeof(*set_r));
	if (len == 0) {
		*error_r = "Empty sequence set";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] == ',')
			elems++;
	}
	if (max_ranges != 0 && elems > max_ranges) {
		*error_r = "Too many ranges in sequence set";
		return -1;
	}
	struct imap_seq_range *ranges = malloc(elems * sizeof(*ranges));
	if (ranges == NULL) {
		*error_r = "Out of memory";
		return -1;
	}
	size_t count = 0;
	bool last_result = false;
	size_t pos = 0;
	while (pos <= len) {
		size_t end = pos;
		while (end < len && s[end] != ',')
			end++;
		const char *e = s + pos;
		size_t elen = end - pos;
		if (elen == 0) {
			*error_r = "Empty element in sequence set";
			goto fail;
		}
		if (elen == 1 && e[0] == '$') {
			last_result = true;
		} else {
			const char *colon = memchr(e, ':', elen);
			uint32_t a, b;
			if (colon == NULL) {
				if (parse_seq_number(e, elen, &a) < 0)
					goto bad_number;
				b = a;
			} else {
				size_t alen = (size_t)(colon - e);
				if (parse_seq_number(e, alen, &a) < 0 ||
				    parse_seq_number(colon + 1, elen - alen - 1, &b) < 0)
					goto bad_number;
			}
			/* Keep numbers ordered now; "*" can only be ordered
			 * once its value is known. */
			if (a != IMAP_SEQ_STAR && b != IMAP_SEQ_STAR && a > b) {
				uint32_t t = a;
				a = b;
				b = t;
			}
			ranges[count].first = a;
			ranges[count].last = b;
			count++;
		}
		pos = end + 1;
	}
	set_r->ranges = ranges;
	set_r->count = count;
	set_r->last_result = last_result;
	return 0;

bad_number:
	*error_r = "Invalid sequence set (numbers are 1..4294967295, '*' or ranges a:b)";
fail:
	free(ranges);
	return -1;
}

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->count = 0;
	set->last_result = false;
}

static int range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;

	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	if (x->last != y->last)
		return x->last < y->last ? -1 : 1;
	return 0;
}

void imap_seqset_normalize(struct imap_seqset *set, uint32_t star_value)
{
	size_t n = 0;

	for (size_t i = 0; i < set->count; i++) {
		struct imap_seq_range r = set->ranges[i];
		if (r.first == IMAP_SEQ_STAR || r.last == IMAP_SEQ_STAR) {
			if (star_value == 0)
				continue;
			if (r.first == IMAP_SEQ_STAR)
				r.first = star_value;
			if (r.last == IMAP_SEQ_STAR)
				r.last = star_value;
		}
		if (r.first > r.last) {
			uint32_t t = r.first;
			r.first = r.last;
			r.last = t;
		}
		set->ranges[n++] = r;
	}
	set->count = n;
	if (n == 0)
		return;
	qsort(set->ranges, n, sizeof(set->ranges[0]), range_cmp);
	size_t out = 0;
	for (size_t i = 1; i < n; i++) {
		struct imap_seq_range *cur = &set->ranges[out];
		const struct imap_seq_range *r = &set->ranges[i];
		/* Overlapping or adjacent (cur->last + 1 == r->first). */
		if (cur->last == UINT32_MAX || r->first <= cur->last + 1) {
			if (r->last > cur->last)
				cur->last = r->last;
		} else {
			set->ranges[++out] = *r;
		}
	}
	set->count = out + 1;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n)
{
	size_t lo = 0, hi = set->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct imap_seq_range *r = &set->ranges[mid];
		if (n < r->first)
			hi = mid;
		else if (n > r->last)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}
