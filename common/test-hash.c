/* Unit tests for postern/hash.h: SHA-256 (FIPS 180-2 vectors), HMAC-SHA-256
 * (RFC 4231 vectors), CRC-32C check value, and pn_hash64's fixed values,
 * distribution over buckets, avalanche and seed behaviour. */
#include "postern/hash.h"
#include "postern/testing.h"

static char *hex(const uint8_t *p, size_t n, char *dst)
{
	return pn_hex_encode(p, n, dst);
}

PN_TEST(test_sha256_vectors)
{
	const char *err = NULL;
	char out[PN_SHA256_HEX_LEN + 1];

	CHECK_INT(pn_sha256_hex("", 0, out, &err), 0);
	CHECK_STR(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	CHECK_INT(pn_sha256_hex("abc", 3, out, &err), 0);
	CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	CHECK_INT(pn_sha256_hex(m, strlen(m), out, &err), 0);
	CHECK_STR(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

	uint8_t raw[PN_SHA256_LEN];
	CHECK_INT(pn_sha256("abc", 3, raw, &err), 0);
	CHECK_INT(raw[0], 0xba);
	CHECK_INT(raw[31], 0xad);
}

PN_TEST(test_sha256_streaming)
{
	const char *err = NULL;
	struct pn_sha256 *ctx = pn_sha256_new(&err);
	uint8_t chunk[1000], md[PN_SHA256_LEN];
	char out[PN_SHA256_HEX_LEN + 1];

	CHECK(ctx != NULL);
	if (ctx == NULL)
		return;
	memset(chunk, 'a', sizeof(chunk));
	/* One million 'a' (FIPS 180-2 appendix B.3), in uneven pieces. */
	size_t total = 0;
	for (size_t piece = 1; total < 1000000; piece = piece % 999 + 1) {
		size_t n = piece;
		if (n > 1000000 - total)
			n = 1000000 - total;
		CHECK_INT(pn_sha256_update(ctx, chunk, n, &err), 0);
		total += n;
	}
	CHECK_INT(pn_sha256_final(ctx, md, &err), 0);
	CHECK_STR(hex(md, sizeof(md), out),
		  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	/* Finished: further use is an error, not a crash. */
	CHECK_INT(pn_sha256_update(ctx, "x", 1, &err), -1);
	CHECK_INT(pn_sha256_final(ctx, md, &err), -1);
	pn_sha256_free(&ctx);
	CHECK(ctx == NULL);
	pn_sha256_free(&ctx);
}

PN_TEST(test_hmac_rfc4231)
{
	const char *err = NULL;
	uint8_t key[131], md[PN_SHA256_LEN];
	char out[PN_SHA256_HEX_LEN + 1];

	/* Test case 1 */
	memset(key, 0x0b, 20);
	CHECK_INT(pn_hmac_sha256(key, 20, "Hi There", 8, md, &err), 0);
	CHECK_STR(hex(md, sizeof(md), out),
		  "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	/* Test case 2 */
	const char *d2 = "what do ya want for nothing?";
	CHECK_INT(pn_hmac_sha256("Jefe", 4, d2, strlen(d2), md, &err), 0);
	CHECK_STR(hex(md, sizeof(md), out),
		  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* Test case 6: key longer than the block size */
	memset(key, 0xaa, sizeof(key));
	const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
	CHECK_INT(pn_hmac_sha256(key, sizeof(key), d6, strlen(d6), md, &err), 0);
	CHECK_STR(hex(md, sizeof(md), out),
		  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	/* Empty key and data: HMAC is still defined. */
	CHECK_INT(pn_hmac_sha256(NULL, 0, "", 0, md, &err), 0);
	CHECK_STR(hex(md, sizeof(md), out),
		  "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

PN_TEST(test_mem_equal_ct)
{
	CHECK(pn_mem_equal_ct("abcdef", "abcdef", 6));
	CHECK(!pn_mem_equal_ct("abcdef", "abcdeg", 6));
	CHECK(!pn_mem_equal_ct("xbcdef", "abcdef", 6));
	CHECK(pn_mem_equal_ct("a", "b", 0));
}

PN_TEST(test_hex)
{
	const uint8_t b[] = { 0x00, 0x0f, 0xa5, 0xff };
	char out[9];
	CHECK_STR(pn_hex_encode(b, 4, out), "000fa5ff");
	CHECK_STR(pn_hex_encode(b, 0, out), "");
}

PN_TEST(test_crc32c)
{
	/* The CRC catalogue check value and RFC 3720 B.4 vectors. */
	CHECK_INT(pn_crc32c("123456789", 9), 0xE3069283);
	uint8_t z[32];
	memset(z, 0, sizeof(z));
	CHECK_INT(pn_crc32c(z, 32), 0x8A9136AA);
	memset(z, 0xff, sizeof(z));
	CHECK_INT(pn_crc32c(z, 32), 0x62A8AB43);
	for (int i = 0; i < 32; i++)
		z[i] = (uint8_t)i;
	CHECK_INT(pn_crc32c(z, 32), 0x46DD794E);
	CHECK_INT(pn_crc32c("", 0), 0);
	/* Continuation over pieces equals the one-shot value. */
	uint32_t c = pn_crc32c_update(0, "1234", 4);
	c = pn_crc32c_update(c, "56789", 5);
	CHECK_INT(c, 0xE3069283);
}

/* Fixed values: these pin the algorithm. A change here reroutes every key of
 * a running cluster, so these numbers must never be "updated" casually. */
PN_TEST(test_hash64_fixed_values)
{
	CHECK(pn_hash64("", 0, 0) == UINT64_C(0x33d6527be0e930ef));
	CHECK(pn_hash64("a", 1, 0) == UINT64_C(0x40794111edd0d7ff));
	CHECK(pn_hash64("user@example.test", 17, 0) == UINT64_C(0xb8ff7a53752fbd44));
	CHECK(pn_hash64("user@example.test", 17, 42) == UINT64_C(0xb37c7266511a1311));
	CHECK(pn_hash64("0123456789abcdef", 16, 7) == UINT64_C(0x7204cef0cb390e0e));
}

PN_TEST(test_hash64_basic_properties)
{
	/* Length is mixed in: trailing zero bytes change the value. */
	CHECK(pn_hash64("a", 1, 0) != pn_hash64("a\0", 2, 0));
	CHECK(pn_hash64("", 0, 0) != pn_hash64("\0", 1, 0));
	/* The seed changes the value. */
	CHECK(pn_hash64("key", 3, 1) != pn_hash64("key", 3, 2));
	/* Alignment does not matter. */
	char buf[40];
	memcpy(buf + 3, "unaligned input of some length", 30);
	CHECK(pn_hash64(buf + 3, 30, 9) == pn_hash64("unaligned input of some length", 30, 9));
}

/* 10000 keys into 16 buckets: each bucket expects 625. Chi-square with 15
 * degrees of freedom exceeds 37.7 with probability 0.001 for a uniform
 * hash; we require < 37.7 with both the low and the high bits. */
PN_TEST(test_hash64_distribution)
{
	unsigned int low[16] = { 0 }, high[16] = { 0 };
	char key[64];

	for (int i = 0; i < 10000; i++) {
		int n = snprintf(key, sizeof(key), "user%d@tenant%d.example", i, i % 7);
		uint64_t h = pn_hash64(key, (size_t)n, 0x5eed);
		low[h % 16]++;
		high[h >> 60]++;
	}
	double chi_low = 0, chi_high = 0;
	for (int b = 0; b < 16; b++) {
		double dl = (double)low[b] - 625.0, dh = (double)high[b] - 625.0;
		chi_low += dl * dl / 625.0;
		chi_high += dh * dh / 625.0;
		CHECK(low[b] > 525 && low[b] < 725);
		CHECK(high[b] > 525 && high[b] < 725);
	}
	if (chi_low >= 37.7 || chi_high >= 37.7)
		fprintf(stderr, "chi-square low %.1f high %.1f\n", chi_low, chi_high);
	CHECK(chi_low < 37.7);
	CHECK(chi_high < 37.7);

	/* Sequential integers as 8-byte keys: a classic weak spot. */
	unsigned int seq[16] = { 0 };
	for (uint64_t i = 0; i < 10000; i++)
		seq[pn_hash64(&i, sizeof(i), 0) & 15]++;
	double chi_seq = 0;
	for (int b = 0; b < 16; b++)
		chi_seq += ((double)seq[b] - 625.0) * ((double)seq[b] - 625.0) / 625.0;
	CHECK(chi_seq < 37.7);
}

/* Flipping one input bit flips about half of the output bits on average. */
PN_TEST(test_hash64_avalanche)
{
	uint8_t key[24];
	unsigned long flipped = 0, trials = 0;

	for (int k = 0; k < 50; k++) {
		for (size_t i = 0; i < sizeof(key); i++)
			key[i] = (uint8_t)(k * 31 + i * 7);
		uint64_t base = pn_hash64(key, sizeof(key), 3);
		for (size_t bit = 0; bit < sizeof(key) * 8; bit++) {
			key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			uint64_t h = pn_hash64(key, sizeof(key), 3);
			key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			flipped += (unsigned long)__builtin_popcountll(base ^ h);
			trials++;
		}
	}
	double avg = (double)flipped / (double)trials;
	CHECK(avg > 31.0 && avg < 33.0);

	/* Seeds: neighbouring seeds give unrelated values. */
	flipped = 0;
	for (uint64_t s = 0; s < 1000; s++)
		flipped += (unsigned long)__builtin_popcountll(
			pn_hash64("k", 1, s) ^ pn_hash64("k", 1, s + 1));
	avg = (double)flipped / 1000.0;
	CHECK(avg > 31.0 && avg < 33.0);
}

/* Inputs of the same length that differ in one 8-byte block never collide. */
PN_TEST(test_hash64_single_block_difference)
{
	uint64_t words[3] = { 1, 2, 3 };
	uint64_t seen[2000];

	for (uint64_t v = 0; v < 2000; v++) {
		words[1] = v * UINT64_C(0x100000001b3);
		seen[v] = pn_hash64(words, sizeof(words), 0);
		for (uint64_t j = 0; j < v; j++)
			CHECK(seen[j] != seen[v]);
	}
}

PN_TEST_MAIN("test-hash",
	PN_TEST_CASE(test_sha256_vectors),
	PN_TEST_CASE(test_sha256_streaming),
	PN_TEST_CASE(test_hmac_rfc4231),
	PN_TEST_CASE(test_mem_equal_ct),
	PN_TEST_CASE(test_hex),
	PN_TEST_CASE(test_crc32c),
	PN_TEST_CASE(test_hash64_fixed_values),
	PN_TEST_CASE(test_hash64_basic_properties),
	PN_TEST_CASE(test_hash64_distribution),
	PN_TEST_CASE(test_hash64_avalanche),
	PN_TEST_CASE(test_hash64_single_block_difference))
