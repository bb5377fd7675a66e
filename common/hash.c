/* Hashing: SHA-256 and HMAC-SHA-256 on OpenSSL's EVP interface, hex output,
 * a constant-time compare, a bitwise CRC-32C (small inputs only: PROXY v2
 * headers) and pn_hash64, our own seeded 64-bit hash for consistent hashing
 * whose design and properties are described in postern/hash.h.
 */
#include "postern/hash.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

int pn_sha256(const void *data, size_t len, uint8_t out[PN_SHA256_LEN],
	      const char **error_r)
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 ||
	    outlen != PN_SHA256_LEN) {
		*error_r = "SHA-256 failed in OpenSSL";
		return -1;
	}
	return 0;
}

int pn_sha256_hex(const void *data, size_t len, char out[PN_SHA256_HEX_LEN + 1],
		  const char **error_r)
{
	uint8_t md[PN_SHA256_LEN];

	if (pn_sha256(data, len, md, error_r) < 0)
		return -1;
	pn_hex_encode(md, sizeof(md), out);
	return 0;
}

struct pn_sha256 {
	EVP_MD_CTX *md;
	bool finished;
};

struct pn_sha256 *pn_sha256_new(const char **error_r)
{
	struct pn_sha256 *ctx = calloc(1, sizeof(*ctx));

	if (ctx == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	ctx->md = EVP_MD_CTX_new();
	if (ctx->md == NULL || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx->md);
		free(ctx);
		*error_r = "SHA-256 init failed in OpenSSL";
		return NULL;
	}
	return ctx;
}

int pn_sha256_update(struct pn_sha256 *ctx, const void *data, size_t len,
		     const char **error_r)
{
	if (ctx->finished) {
		*error_r = "SHA-256 context already finished";
		return -1;
	}
	if (EVP_DigestUpdate(ctx->md, data, len) != 1) {
		*error_r = "SHA-256 update failed in OpenSSL";
		return -1;
	}
	return 0;
}

int pn_sha256_final(struct pn_sha256 *ctx, uint8_t out[PN_SHA256_LEN],
		    const char **error_r)
{
	unsigned int outlen = 0;

	if (ctx->finished) {
		*error_r = "SHA-256 context already finished";
		return -1;
	}
	ctx->finished = true;
	if (EVP_DigestFinal_ex(ctx->md, out, &outlen) != 1 || outlen != PN_SHA256_LEN) {
		*error_r = "SHA-256 final failed in OpenSSL";
		return -1;
	}
	return 0;
}

void pn_sha256_free(struct pn_sha256 **ctxp)
{
	struct pn_sha256 *ctx = *ctxp;

	if (ctx == NULL)
		return;
	*ctxp = NULL;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

int pn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		   uint8_t out[PN_SHA256_LEN], const char **error_r)
{
	unsigned int outlen = 0;
	/* OpenSSL rejects a NULL key even with length 0. */
	static const uint8_t empty_key[1];

	if (key_len > INT_MAX) {
		*error_r = "HMAC key too long";
		return -1;
	}
	if (key_len == 0)
		key = empty_key;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &outlen) == NULL ||
	    outlen != PN_SHA256_LEN) {
		*error_r = "HMAC-SHA-256 failed in OpenSSL";
		return -1;
	}
	return 0;
}

bool pn_mem_equal_ct(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

char *pn_hex_encode(const uint8_t *src, size_t len, char *dst)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		dst[2 * i] = digits[src[i] >> 4];
		dst[2 * i + 1] = digits[src[i] & 0x0f];
	}
	dst[2 * len] = '\0';
	return dst;
}

/* RFC 4960 appendix B: CRC-32C, reflected polynomial 0x82F63B78. One bit at a
 * time: the inputs here are PROXY headers of at most a few hundred bytes, so
 * a table would cost more in cache than it saves. */
uint32_t pn_crc32c_update(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* pn_hash64 constants: odd 64-bit multipliers with well spread bits (the
 * first is 2^64 divided by the golden ratio). */
#define H64_K1 UINT64_C(0x9e3779b97f4a7c15)
#define H64_K2 UINT64_C(0xd6e8feb86659fd93)
#define H64_K3 UINT64_C(0xa0761d6478bd642f)

static inline uint64_t rotl64(uint64_t x, unsigned int r)
{
	return (x << r) | (x >> (64 - r));
}

/* 64-bit avalanche finaliser (xorshift-multiply, the shape popularised by
 * SplitMix64): a bijection in which every input bit affects every output bit. */
static inline uint64_t h64_final(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

/* One block round. For a fixed h it is a bijection of w (multiply by an odd
 * constant, xorshift, xor, rotate, multiply by an odd constant), and for a
 * fixed w a bijection of h: hence no collisions between inputs that differ
 * in a single block. */
static inline uint64_t h64_round(uint64_t h, uint64_t w)
{
	w *= H64_K1;
	w ^= w >> 29;
	h ^= w;
	h = rotl64(h, 27);
	return h * H64_K2 + H64_K3;
}

/* Little-endian load of n (1..8) bytes, independent of host byte order. */
static inline uint64_t load_le(const uint8_t *p, size_t n)
{
	uint64_t w = 0;

	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)p[i] << (8 * i);
	return w;
}

uint64_t pn_hash64(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = h64_final(seed ^ H64_K3) ^ ((uint64_t)len * H64_K1);

	while (len >= 8) {
		h = h64_round(h, load_le(p, 8));
		p += 8;
		len -= 8;
	}
	if (len > 0)
		h = h64_round(h, load_le(p, len));
	return h64_final(h);
}
