/* Health-check logic without I/O: the rise/fall state machine with hard
 * failures, the slow-start ramp, the greeting matcher of protocol probes
 * and the reader of a frontend's /readyz answer (HTTP/1.x status line,
 * header section, body by Content-Length or until the close). See
 * lb-check.h.
 */
#include "lb-check.h"

#include <string.h>

void lb_health_init(struct lb_health *h, bool up, uint64_t now_ms)
{
	memset(h, 0, sizeof(*h));
	h->up = up;
	h->up_since_ms = 0; /* long ago: no slow start for the first start */
	h->changed_ms = now_ms;
}

enum lb_health_change lb_health_report(struct lb_health *h, bool ok, bool hard,
				       unsigned int rise, unsigned int fall, uint64_t now_ms)
{
	if (ok) {
		h->fail_streak = 0;
		if (h->ok_streak < UINT32_MAX)
			h->ok_streak++;
		if (!h->up && h->ok_streak >= rise) {
			h->up = true;
			h->up_since_ms = now_ms;
			h->changed_ms = now_ms;
			return LB_HEALTH_WENT_UP;
		}
		return LB_HEALTH_SAME;
	}
	h->ok_streak = 0;
	if (h->fail_streak < UINT32_MAX)
		h->fail_streak++;
	if (h->up && (hard || h->fail_streak >= fall)) {
		h->up = false;
		h->changed_ms = now_ms;
		return LB_HEALTH_WENT_DOWN;
	}
	return LB_HEALTH_SAME;
}

uint32_t lb_slowstart_weight(uint32_t weight, uint64_t up_since_ms, uint64_t now_ms,
			     uint64_t slowstart_ms)
{
	uint64_t elapsed, w, floor;

	if (slowstart_ms == 0 || up_since_ms == 0 || now_ms < up_since_ms ||
	    (elapsed = now_ms - up_since_ms) >= slowstart_ms)
		return weight;
	w = (uint64_t)weight * elapsed / slowstart_ms;
	floor = ((uint64_t)weight + 9) / 10;
	if (w < floor)
		w = floor;
	if (w < 1)
		w = 1;
	return (uint32_t)w;
}

int lb_greeting_check(const char *prefix, const uint8_t *data, size_t len, size_t max_line)
{
	size_t plen = strlen(prefix);
	size_t cmp = len < plen ? len : plen;
	const uint8_t *lf;

	if (memcmp(data, prefix, cmp) != 0)
		return -1;
	lf = memchr(data, '\n', len);
	if (lf == NULL)
		return len > max_line ? -1 : 0;
	if ((size_t)(lf - data) < plen)
		return -1; /* the line ended inside the prefix */
	if ((size_t)(lf - data) == plen)
		return 1;
	/* "+OK" must not accept "+OKAY": a separator follows the prefix. */
	return data[plen] == ' ' || data[plen] == '\r' || data[plen] == '-' ? 1 : -1;
}

static const uint8_t *find(const uint8_t *h, size_t hlen, const char *needle)
{
	size_t nlen = strlen(needle);

	if (nlen == 0 || hlen < nlen)
		return NULL;
	for (size_t i = 0; i + nlen <= hlen; i++)
		if (h[i] == (uint8_t)needle[0] && memcmp(h + i, needle, nlen) == 0)
			return h + i;
	return NULL;
}

static bool lower_eq(const uint8_t *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = a[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		if (c != (uint8_t)b[i])
			return false;
	}
	return true;
}

/* RFC 9112 section 4: status-line = HTTP-version SP status-code SP
 * [ reason-phrase ]; section 6.3: the body is Content-Length bytes, or
 * (for a response without it) everything until the close. */
int lb_readyz_parse(const uint8_t *data, size_t len, bool eof, size_t len_max,
		    struct lb_readyz *r)
{
	const uint8_t *hend, *p, *body;
	size_t content_length = 0, body_len;
	bool has_cl = false;

	if (len > len_max)
		return -1;
	if (len >= 5 && memcmp(data, "HTTP/", 5) != 0)
		return -1;
	hend = find(data, len, "\r\n\r\n");
	if (hend == NULL)
		return eof ? -1 : 0;
	if (len < 12 || memcmp(data, "HTTP/1.", 7) != 0 || data[8] != ' ' ||
	    data[9] < '1' || data[9] > '5' || data[10] < '0' || data[10] > '9' ||
	    data[11] < '0' || data[11] > '9' || (len > 12 && data[12] != ' ' &&
						 data[12] != '\r'))
		return -1;
	r->status = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
	r->draining = false;
	/* Header fields: only Content-Length matters. */
	p = (const uint8_t *)memchr(data, '\n', (size_t)(hend + 2 - data)) + 1;
	while (p < hend + 2) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(hend + 4 - p));
		size_t l;

		if (eol == NULL)
			return -1;
		l = (size_t)(eol - p);
		if (l >= 15 && lower_eq(p, "content-length:", 15)) {
			const uint8_t *v = p + 15;
			size_t value = 0, digits = 0;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			while (v < eol && *v >= '0' && *v <= '9') {
				value = value * 10 + (size_t)(*v - '0');
				if (++digits > 9)
					return -1;
				v++;
			}
			while (v < eol && (*v == ' ' || *v == '\t' || *v == '\r'))
				v++;
			if (digits == 0 || v != eol || (has_cl && value != content_length))
				return -1;
			content_length = value;
			has_cl = true;
		}
		p = eol + 1;
	}
	body = hend + 4;
	body_len = len - (size_t)(body - data);
	if (has_cl) {
		if (content_length > len_max)
			return -1;
		if (body_len < content_length)
			return eof ? -1 : 0;
		body_len = content_length;
	} else if (!eof) {
		return 0;
	}
	r->draining = r->status == 503 && find(body, body_len, "\"draining\"") != NULL;
	return 1;
}
