/* Message bodies of the load generator: the pool (fixed size, a uniform
 * size range sampled into BN_RANGE_SAMPLES bodies, weighted sizes, or a
 * file), its weighted choice and the fixed-length per-message header. See
 * body.h.
 */
#include "body.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static __thread char errbuf[256];

uint64_t bn_rand(uint64_t *state)
{
	/* xorshift64* */
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

static const char words[] =
	"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
	"tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam "
	"quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo ";

/* Body text of exactly len bytes (len >= 2): lines of at most 76 bytes plus
 * CRLF, none starting with '.', the last ending in CRLF. */
static void fill_text(uint8_t *p, size_t len, uint64_t seed)
{
	size_t o = 0, wl = sizeof(words) - 1;
	uint64_t rng = seed | 1;

	while (o < len) {
		size_t left = len - o;
		if (left <= 78) {
			/* last line: left - 2 bytes of text then CRLF */
			for (size_t i = 0; i + 2 < left; i++)
				p[o + i] = (uint8_t)words[(i + seed) % wl];
			if (left >= 3 && p[o] == '.')
				p[o] = 'x';
			p[o + left - 2] = '\r';
			p[o + left - 1] = '\n';
			if (left == 1)
				p[o] = '\n';
			break;
		}
		size_t ll = 60 + (size_t)(bn_rand(&rng) % 17); /* 60..76 */
		if (left - (ll + 2) < 2)
			ll = left - 4;
		size_t start = (size_t)(bn_rand(&rng) % wl);
		for (size_t i = 0; i < ll; i++)
			p[o + i] = (uint8_t)words[(start + i) % wl];
		if (p[o] == ' ' || p[o] == '.')
			p[o] = 'x';
		p[o + ll] = '\r';
		p[o + ll + 1] = '\n';
		o += ll + 2;
	}
}

static int make_generated(struct bn_body *it, size_t size, uint64_t seed)
{
	size_t body = size > BN_HEADER_LEN + 2 ? size - BN_HEADER_LEN : 2;
	uint8_t *m = malloc(body + 3);
	if (m == NULL)
		return -1;
	fill_text(m, body, seed);
	memcpy(m + body, ".\r\n", 3);
	it->mem_raw = m;
	it->raw = m;
	it->raw_len = body;
	it->smtp = m;
	it->smtp_len = body + 3;
	it->size = BN_HEADER_LEN + body;
	return 0;
}

static int make_file(struct bn_body *it, const char *path, const char **error_r)
{
	FILE *f = fopen(path, "rb");
	struct pn_buf raw, smtp;
	uint8_t chunk[65536];
	bool bol = true, cr = false;

	if (f == NULL) {
		snprintf(errbuf, sizeof(errbuf), "%s: %s", path, strerror(errno));
		*error_r = errbuf;
		return -1;
	}
	pn_buf_init(&raw, BN_MAX_MESSAGE + 2);
	pn_buf_init(&smtp, 2 * (size_t)BN_MAX_MESSAGE + 8);
	for (;;) {
		size_t n = fread(chunk, 1, sizeof(chunk), f);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			uint8_t ch = chunk[i];
			int rc = 0;
			if (ch == '\n' && !cr) {
				rc |= pn_buf_append(&raw, "\r", 1);
				rc |= pn_buf_append(&smtp, "\r", 1);
			}
			if (bol && ch == '.')
				rc |= pn_buf_append(&smtp, ".", 1); /* RFC 5321 4.5.2 */
			rc |= pn_buf_append(&raw, &ch, 1);
			rc |= pn_buf_append(&smtp, &ch, 1);
			if (rc != 0) {
				fclose(f);
				pn_buf_free(&raw);
				pn_buf_free(&smtp);
				snprintf(errbuf, sizeof(errbuf), "%s: larger than 64 MiB", path);
				*error_r = errbuf;
				return -1;
			}
			cr = ch == '\r';
			bol = ch == '\n';
		}
	}
	fclose(f);
	if (!bol) {
		pn_buf_append(&raw, "\r\n", 2);
		pn_buf_append(&smtp, "\r\n", 2);
	}
	if (pn_buf_append(&smtp, ".\r\n", 3) < 0 || pn_buf_len(&raw) == 0) {
		pn_buf_free(&raw);
		pn_buf_free(&smtp);
		snprintf(errbuf, sizeof(errbuf), "%s: empty", path);
		*error_r = errbuf;
		return -1;
	}
	/* keep the storage: the buffers' data start at offset 0 */
	it->mem_raw = raw.data;
	it->raw = raw.data + raw.start;
	it->raw_len = pn_buf_len(&raw);
	it->mem_smtp = smtp.data;
	it->smtp = smtp.data + smtp.start;
	it->smtp_len = pn_buf_len(&smtp);
	it->size = it->raw_len;
	return 0;
}

int bn_bodies_make(struct bn_bodies *b, const struct bn_message_spec *spec,
		   const char **error_r)
{
	unsigned int n = 0;
	uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);

	memset(b, 0, sizeof(*b));
	switch (spec->kind) {
	case BN_MSG_NONE: return 0;
	case BN_MSG_FIXED: case BN_MSG_FILE: n = 1; break;
	case BN_MSG_RANGE: n = spec->min == spec->max ? 1 : BN_RANGE_SAMPLES; break;
	case BN_MSG_WEIGHTED: n = spec->nsizes; break;
	}
	b->items = calloc(n, sizeof(*b->items));
	b->cdf = calloc(n, sizeof(*b->cdf));
	if (b->items == NULL || b->cdf == NULL) {
		bn_bodies_free(b);
		*error_r = "out of memory";
		return -1;
	}
	b->n = n;
	b->with_header = spec->kind != BN_MSG_FILE;
	uint64_t cum = 0;
	for (unsigned int i = 0; i < n; i++) {
		int rc;
		size_t size;
		switch (spec->kind) {
		case BN_MSG_FILE:
			rc = make_file(&b->items[i], spec->file, error_r);
			break;
		default:
			if (spec->kind == BN_MSG_WEIGHTED)
				size = spec->sizes[i];
			else if (n == 1)
				size = spec->min;
			else
				size = spec->min + (size_t)(bn_rand(&rng) % (spec->max - spec->min + 1));
			rc = make_generated(&b->items[i], size, i + 1);
			if (rc < 0)
				*error_r = "out of memory";
			break;
		}
		if (rc < 0) {
			bn_bodies_free(b);
			return -1;
		}
		cum += spec->kind == BN_MSG_WEIGHTED ? spec->weights[i] : 1;
		b->cdf[i] = cum;
	}
	return 0;
}

void bn_bodies_free(struct bn_bodies *b)
{
	for (unsigned int i = 0; b->items != NULL && i < b->n; i++) {
		free(b->items[i].mem_raw);
		free(b->items[i].mem_smtp);
	}
	free(b->items);
	free(b->cdf);
	memset(b, 0, sizeof(*b));
}

const struct bn_body *bn_bodies_pick(const struct bn_bodies *b, uint64_t *rng)
{
	if (b->n == 0)
		return NULL;
	if (b->n == 1)
		return &b->items[0];
	uint64_t r = bn_rand(rng) % b->cdf[b->n - 1];
	for (unsigned int i = 0; i < b->n; i++) {
		if (r < b->cdf[i])
			return &b->items[i];
	}
	return &b->items[b->n - 1];
}

/* A per-process value in every Message-ID: the message counter starts at 0
 * in every run, and a server with a duplicate guard by Message-ID (Postern
 * skips a message whose Message-ID its mailbox saved in the last minutes)
 * would otherwise store nothing in a second run against the same users. */
static uint32_t run_nonce(void)
{
	static _Atomic uint32_t nonce;
	uint32_t v = atomic_load(&nonce);

	if (v == 0) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint32_t)(((uint64_t)ts.tv_sec * 1000000007u + (uint64_t)ts.tv_nsec) ^
			       ((uint64_t)getpid() << 16)) | 1u;
		uint32_t expected = 0;
		if (!atomic_compare_exchange_strong(&nonce, &expected, v))
			v = expected;
	}
	return v;
}

static int header_text(struct pn_buf *out, const char *rcpt, uint64_t id)
{
	size_t before = pn_buf_len(out);
	/* RFC 5322 section 3.6: the fields every message has. */
	if (pn_buf_printf(out,
			  "From: Bench <bench@bench.test>\r\n"
			  "To: <%.200s>\r\n"
			  "Subject: postern-bench message %llu\r\n"
			  "Message-ID: <%llu.%llx@bench.test>\r\n"
			  "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
			  "MIME-Version: 1.0\r\n"
			  "Content-Type: text/plain; charset=us-ascii\r\n",
			  rcpt, (unsigned long long)id, (unsigned long long)id,
			  (unsigned long long)((id * UINT64_C(0x9e3779b97f4a7c15)) ^
					       ((uint64_t)run_nonce() << 32))) < 0)
		return -1;
	size_t used = pn_buf_len(out) - before;
	/* "X-Pad: " + pad + CRLF + CRLF (end of header) fills up to the length */
	if (used + 11 <= BN_HEADER_LEN) {
		size_t pad = BN_HEADER_LEN - used - 11;
		uint8_t *w = pn_buf_reserve(out, BN_HEADER_LEN - used);
		if (w == NULL)
			return -1;
		memcpy(w, "X-Pad: ", 7);
		memset(w + 7, 'x', pad);
		memcpy(w + 7 + pad, "\r\n\r\n", 4);
		pn_buf_commit(out, BN_HEADER_LEN - used);
		return 0;
	}
	return pn_buf_append(out, "\r\n", 2);
}

int bn_message_header(struct pn_buf *out, const struct bn_bodies *b, const char *rcpt,
		      uint64_t id)
{
	return b->with_header ? header_text(out, rcpt, id) : 0;
}
