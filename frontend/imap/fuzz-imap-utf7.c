/* libFuzzer round-trip target for modified UTF-7 (imap-utf7.h): whatever
 * decodes must encode back to the same bytes, whatever encodes must decode
 * back to the same bytes, and imap_utf7_is_valid() must agree with the
 * decoder. Also runs the sequence-set parser and normalizer on the same
 * input, checking that a normalized set is sorted and disjoint. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap-seqset.h"
#include "imap-utf7.h"
#include "postern/buf.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A buffer's bytes, never NULL (an empty pn_buf may have no storage). */
static const char *bytes(const struct pn_buf *b)
{
	return b->data != NULL ? (const char *)b->data + b->start : "";
}

static bool same(const struct pn_buf *b, const uint8_t *data, size_t size)
{
	return pn_buf_len(b) == size && (size == 0 || memcmp(bytes(b), data, size) == 0);
}

static void check_seqset(const char *s, size_t len)
{
	struct imap_seqset set;
	const char *error = NULL;

	if (imap_seqset_parse(s, len, 0, &set, &error) < 0) {
		REQUIRE(error != NULL && set.ranges == NULL);
		return;
	}
	uint32_t star = len > 0 ? (uint32_t)(unsigned char)s[0] * 977u : 0;
	imap_seqset_normalize(&set, star);
	for (size_t i = 0; i < set.count; i++) {
		const struct imap_seq_range *r = &set.ranges[i];
		REQUIRE(r->first != IMAP_SEQ_STAR && r->first <= r->last);
		REQUIRE(imap_seqset_contains(&set, r->first));
		REQUIRE(imap_seqset_contains(&set, r->last));
		if (i > 0)
			REQUIRE(set.ranges[i - 1].last < UINT32_MAX &&
				set.ranges[i - 1].last + 1 < r->first);
	}
	imap_seqset_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct pn_buf a, b;
	const char *error = NULL;

	/* Decode, then encode back. */
	pn_buf_init(&a, 4 * size + 16);
	pn_buf_init(&b, 4 * size + 16);
	int r = imap_utf7_to_utf8(s, size, &a, &error);
	REQUIRE((r == 0) == imap_utf7_is_valid(s, size));
	if (r == 0) {
		REQUIRE(imap_utf8_to_utf7(bytes(&a), pn_buf_len(&a), &b,
					  &error) == 0);
		REQUIRE(same(&b, data, size));
	} else {
		REQUIRE(error != NULL);
	}
	pn_buf_free(&a);
	pn_buf_free(&b);

	/* Encode, then decode back. */
	pn_buf_init(&a, 4 * size + 16);
	pn_buf_init(&b, 4 * size + 16);
	if (imap_utf8_to_utf7(s, size, &a, &error) == 0) {
		REQUIRE(imap_utf7_is_valid(bytes(&a), pn_buf_len(&a)));
		REQUIRE(imap_utf7_to_utf8(bytes(&a), pn_buf_len(&a), &b,
					  &error) == 0);
		REQUIRE(same(&b, data, size));
	}
	pn_buf_free(&a);
	pn_buf_free(&b);

	check_seqset(s, size);
	return 0;
}
