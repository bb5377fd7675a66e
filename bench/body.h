/* Message bodies for the load generator's `append` and `body` steps.
 *
 * A pool is made once before the run from the script's message spec and
 * shared read-only by every thread. Generated messages are a fixed-length
 * header block written per message (a unique Message-ID, the recipient)
 * followed by a pooled body of printable text lines (CRLF, no line starts
 * with '.'), so that the whole message has exactly the requested size when
 * it is at least BN_HEADER_LEN + 2 bytes. A file body is sent as it is
 * (bare LF turned into CRLF), without a per-message header.
 */
#ifndef POSTERN_BENCH_BODY_H
#define POSTERN_BENCH_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"
#include "script.h"

#define BN_HEADER_LEN 256
#define BN_RANGE_SAMPLES 32

struct bn_body {
	size_t size;		/* whole message: header + raw body */
	const uint8_t *raw;	/* body after the header, ends with CRLF */
	size_t raw_len;
	const uint8_t *smtp;	/* dot-stuffed body + ".\r\n" (DATA) */
	size_t smtp_len;
	uint8_t *mem_raw, *mem_smtp; /* owned storage */
};

struct bn_bodies {
	unsigned int n;
	struct bn_body *items;
	uint64_t *cdf;		/* cumulative weights, n entries */
	bool with_header;	/* generated: a header is written per message */
};

/* Makes the pool. Returns 0, or -1 with *error_r (static or thread-local
 * text) on a bad file or out of memory. spec->kind BN_MSG_NONE makes an
 * empty pool. */
int bn_bodies_make(struct bn_bodies *b, const struct bn_message_spec *spec,
		   const char **error_r);
void bn_bodies_free(struct bn_bodies *b);
/* Picks a body (weighted for sizes=, uniform otherwise); *rng is a
 * xorshift state (non-zero). NULL for an empty pool. */
const struct bn_body *bn_bodies_pick(const struct bn_bodies *b, uint64_t *rng);
/* Appends the per-message header for body (nothing for a file body):
 * exactly BN_HEADER_LEN bytes unless rcpt is long. id makes the Message-ID
 * unique. Returns 0 or -1 (out full). */
int bn_message_header(struct pn_buf *out, const struct bn_bodies *b, const char *rcpt,
		      uint64_t id);
uint64_t bn_rand(uint64_t *state);

#endif
