/* libFuzzer target for postern/proxy.h. For any input the decoder must not
 * read out of bounds (ASan) and, when it accepts a header of n bytes:
 * - n <= size, and the same n comes back from the first n bytes alone
 *   (payload never matters) while shorter prefixes give "need more";
 * - every string field is NUL-terminated within its array;
 * - re-encoding the decoded header as v2 and decoding that again gives the
 *   same addresses and TLV values (an encoder/decoder round trip).
 */
#include "postern/proxy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_terminated(const char *s, size_t size)
{
	if (strnlen(s, size) >= size)
		abort();
}

static void check_same(const struct pn_proxy_header *a, const struct pn_proxy_header *b)
{
	if (a->has_addrs != b->has_addrs || strcmp(a->alpn, b->alpn) != 0 ||
	    strcmp(a->authority, b->authority) != 0 || strcmp(a->netns, b->netns) != 0 ||
	    a->unique_id_len != b->unique_id_len ||
	    memcmp(a->unique_id, b->unique_id, a->unique_id_len) != 0 ||
	    a->has_tls != b->has_tls || a->crc32c != b->crc32c)
		abort();
	if (a->has_tls &&
	    (a->tls.client != b->tls.client || a->tls.verify != b->tls.verify ||
	     strcmp(a->tls.version, b->tls.version) != 0 ||
	     strcmp(a->tls.cipher, b->tls.cipher) != 0 ||
	     strcmp(a->tls.sig_alg, b->tls.sig_alg) != 0 ||
	     strcmp(a->tls.key_alg, b->tls.key_alg) != 0 || strcmp(a->tls.cn, b->tls.cn) != 0))
		abort();
	if (a->has_addrs &&
	    (a->src.ss_family != b->src.ss_family || a->dst.ss_family != b->dst.ss_family ||
	     memcmp(&a->src, &b->src, sizeof(a->src)) != 0 ||
	     memcmp(&a->dst, &b->dst, sizeof(a->dst)) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pn_proxy_header h, h2;
	const char *err = NULL;
	unsigned int flags = 0;

	/* The low bit of the last byte picks v2-only mode sometimes. */
	if (size > 0 && (data[size - 1] & 0x80) != 0 && (data[size - 1] & 1) != 0)
		flags = PN_PROXY_DECODE_V2_ONLY;

	int n = pn_proxy_decode(data, size, flags, &h, &err);
	if (n < 0) {
		if (err == NULL)
			abort();
		return 0;
	}
	if (n == 0)
		return 0;
	if ((size_t)n > size)
		abort();
	if (pn_proxy_decode(data, (size_t)n, flags, &h2, &err) != n)
		abort();
	if (pn_proxy_decode(data, (size_t)n - 1, flags, &h2, &err) != 0 ||
	    pn_proxy_decode(data, (size_t)n / 2, flags, &h2, &err) != 0)
		abort();
	if (h.version != 1 && h.version != 2)
		abort();

	check_terminated(h.alpn, sizeof(h.alpn));
	check_terminated(h.authority, sizeof(h.authority));
	check_terminated(h.netns, sizeof(h.netns));
	check_terminated(h.tls.version, sizeof(h.tls.version));
	check_terminated(h.tls.cipher, sizeof(h.tls.cipher));
	check_terminated(h.tls.sig_alg, sizeof(h.tls.sig_alg));
	check_terminated(h.tls.key_alg, sizeof(h.tls.key_alg));
	check_terminated(h.tls.cn, sizeof(h.tls.cn));
	if (h.unique_id_len > PN_PROXY_UNIQUE_ID_MAX)
		abort();

	/* Round trip through the encoder. */
	uint8_t enc[PN_PROXY_V2_MAX_HEADER];
	int m = pn_proxy_v2_encode(&h, enc, sizeof(enc), &err);
	if (m <= 0)
		abort();
	if (pn_proxy_decode(enc, (size_t)m, PN_PROXY_DECODE_V2_ONLY, &h2, &err) != m)
		abort();
	if (h2.command != h.command)
		abort();
	/* IPv4 endpoints stay IPv4, IPv6 stay IPv6 (both from one family). */
	check_same(&h, &h2);
	return 0;
}
