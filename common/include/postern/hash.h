/* Hashing: SHA-256 and HMAC-SHA-256 (OpenSSL EVP), CRC-32C, and a fast
 * seeded 64-bit non-cryptographic hash for consistent hashing.
 *
 * Everything here is a pure function of its arguments (plus OpenSSL for the
 * SHA-2 family): no I/O, no global state, safe from any thread. Output
 * buffers are owned by the caller and have the fixed sizes given below.
 */
#ifndef POSTERN_HASH_H
#define POSTERN_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PN_SHA256_LEN 32
#define PN_SHA256_HEX_LEN (2 * PN_SHA256_LEN) /* without the NUL */

/* SHA-256 of data[0..len) into out. Returns 0, or -1 with *error_r set if
 * OpenSSL failed (out of memory, provider missing). */
int pn_sha256(const void *data, size_t len, uint8_t out[PN_SHA256_LEN],
	      const char **error_r);
/* Same, written as 64 lowercase hex digits plus a NUL into out. */
int pn_sha256_hex(const void *data, size_t len, char out[PN_SHA256_HEX_LEN + 1],
		  const char **error_r);

/* Streaming SHA-256 for data that arrives in pieces (message bodies).
 * new: returns NULL with *error_r on failure. update/final return 0 or -1.
 * After final the context may not be updated again; free it with
 * pn_sha256_free(), which sets *ctx to NULL (NULL or *ctx NULL is fine). */
struct pn_sha256;
struct pn_sha256 *pn_sha256_new(const char **error_r);
int pn_sha256_update(struct pn_sha256 *ctx, const void *data, size_t len,
		     const char **error_r);
int pn_sha256_final(struct pn_sha256 *ctx, uint8_t out[PN_SHA256_LEN],
		    const char **error_r);
void pn_sha256_free(struct pn_sha256 **ctx);

/* HMAC-SHA-256 (RFC 2104 with SHA-256) of data under key into out.
 * Returns 0, or -1 with *error_r set (OpenSSL failure, key over INT_MAX). */
int pn_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		   uint8_t out[PN_SHA256_LEN], const char **error_r);

/* Constant-time comparison of two equal-length byte strings (for MACs and
 * password verifiers): the time taken depends on len only. */
bool pn_mem_equal_ct(const void *a, const void *b, size_t len);

/* Writes 2*len lowercase hex digits plus a NUL into dst, which must hold
 * 2*len+1 bytes. Returns dst. */
char *pn_hex_encode(const uint8_t *src, size_t len, char *dst);

/* CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and
 * final xor 0xFFFFFFFF; RFC 4960 appendix B), as used by the PROXY v2
 * PP2_TYPE_CRC32C TLV. pn_crc32c(data, len) is the CRC of one buffer; to
 * continue over several pieces pass the previous result as crc to
 * pn_crc32c_update() (start with 0). "123456789" gives 0xE3069283. */
uint32_t pn_crc32c_update(uint32_t crc, const void *data, size_t len);
static inline uint32_t pn_crc32c(const void *data, size_t len)
{
	return pn_crc32c_update(0, data, len);
}

/* pn_hash64: a fast, seeded, 64-bit NON-cryptographic hash for consistent
 * hashing and hash tables.
 *
 * Properties (tested in test-hash.c):
 * - Deterministic and platform independent: the input is read as
 *   little-endian 64-bit words whatever the host byte order, so every node
 *   of a cluster computes the same value for the same (data, seed). The
 *   values are fixed by test vectors; changing the algorithm changes where
 *   every key is routed, so don't.
 * - Well mixed: every block goes through a multiply/rotate/multiply round
 *   and the result through a 64-bit avalanche finaliser, so flipping any
 *   input bit flips about half of the output bits, and low or high output
 *   bits may be used alone (h % n, h >> (64 - k)).
 * - For a fixed seed and length, two inputs that differ in exactly one
 *   8-byte block never collide (each round is a bijection of the state and
 *   of the block). The length is mixed in, so "a" and "a\0" differ.
 * - NOT cryptographic and not a MAC: with a known seed, collisions can be
 *   constructed. A secret random seed makes hash flooding harder but this
 *   is not a proven keyed PRF; use HMAC-SHA-256 where an attacker matters.
 * - Speed: about one multiply-rotate-multiply per 8 input bytes.
 */
uint64_t pn_hash64(const void *data, size_t len, uint64_t seed);

#endif
