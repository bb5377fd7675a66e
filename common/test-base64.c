/* Unit tests for postern/base64.h: RFC 4648 section 10 vectors both ways,
 * every byte value through the alphabet, buffer size checks and the inputs
 * a strict decoder must refuse. */
#include "postern/base64.h"
#include "postern/testing.h"

static const struct {
	const char *plain, *encoded;
} rfc4648_vectors[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

PN_TEST(test_rfc4648_vectors)
{
	for (size_t i = 0; i < sizeof(rfc4648_vectors) / sizeof(rfc4648_vectors[0]); i++) {
		const char *p = rfc4648_vectors[i].plain, *e = rfc4648_vectors[i].encoded;
		char enc[16];
		uint8_t dec[16];
		size_t n = 12345;
		const char *err = NULL;

		CHECK_INT(pn_base64_encode(p, strlen(p), enc, sizeof(enc)), strlen(e));
		CHECK_STR(enc, e);
		CHECK_INT(PN_BASE64_ENCODED_LEN(strlen(p)), strlen(e));
		CHECK_INT(pn_base64_decode(e, strlen(e), dec, sizeof(dec), PN_BASE64_STRICT,
					   &n, &err), 0);
		CHECK_MEM(dec, n, p, strlen(p));
	}
}

PN_TEST(test_full_alphabet)
{
	uint8_t all[256], back[256];
	char enc[PN_BASE64_ENCODED_LEN(256) + 1];
	size_t n = 0;
	const char *err = NULL;

	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	CHECK_INT(pn_base64_encode(all, 256, enc, sizeof(enc)), 344);
	CHECK(strncmp(enc, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", 44) == 0);
	CHECK(strcmp(enc + 344 - 8, "/P3+/w==") == 0);
	CHECK_INT(pn_base64_decode(enc, strlen(enc), back, sizeof(back), PN_BASE64_STRICT,
				   &n, &err), 0);
	CHECK_MEM(back, n, all, 256);

	/* Every character of the alphabet decodes to its index. */
	const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t three[3];
	for (int v = 0; v < 64; v++) {
		char q[5] = { alpha[v], 'A', 'A', 'A', 0 };
		CHECK_INT(pn_base64_decode(q, 4, three, 3, PN_BASE64_STRICT, &n, &err), 0);
		CHECK_INT(three[0], v << 2);
	}
	/* SASL PLAIN response for "\0user\0pass" */
	CHECK_INT(pn_base64_decode("AHVzZXIAcGFzcw==", 16, back, sizeof(back),
				   PN_BASE64_STRICT, &n, &err), 0);
	CHECK_MEM(back, n, "\0user\0pass", 10);
}

PN_TEST(test_encode_buffer_size)
{
	char out[9];
	/* "foobar" needs 8 characters plus the NUL. */
	CHECK_INT(pn_base64_encode("foobar", 6, out, 8), -1);
	CHECK_INT(pn_base64_encode("foobar", 6, out, 9), 8);
	CHECK_INT(pn_base64_encode("", 0, out, 0), -1);
	CHECK_INT(pn_base64_encode("", 0, out, 1), 0);
	CHECK_STR(out, "");
	CHECK_INT(pn_base64_encode("x", PN_BASE64_MAX_INPUT + 1, out, sizeof(out)), -1);
}

PN_TEST(test_decode_buffer_size)
{
	uint8_t out[6];
	size_t n = 99;
	const char *err = NULL;

	/* Exactly enough room. */
	CHECK_INT(pn_base64_decode("Zm9vYmE=", 8, out, 5, 0, &n, &err), 0);
	CHECK_INT(n, 5);
	/* One byte short: refused before writing. */
	memset(out, 0xee, sizeof(out));
	err = NULL;
	CHECK_INT(pn_base64_decode("Zm9vYmFy", 8, out, 5, 0, &n, &err), -1);
	CHECK(err != NULL);
	CHECK_INT(n, 0);
	CHECK_INT(out[0], 0xee);
	/* Empty input into an empty buffer. */
	CHECK_INT(pn_base64_decode("", 0, NULL, 0, PN_BASE64_STRICT, &n, &err), 0);
	CHECK_INT(n, 0);
}

PN_TEST(test_decode_rejects)
{
	static const char *const bad[] = {
		"Zg=",		/* not a multiple of 4 */
		"Zg",		/* unpadded */
		"Zm9vY",	/* stray character */
		"Zm9v\n",	/* whitespace */
		"Zm 9",		/* inner space */
		"Zm9-",		/* URL-safe alphabet is not base64 */
		"Zm9_",
		"Zm9v!A==",
		"Z===",		/* too much padding */
		"====",
		"Zg=A",		/* padding in the middle of a quantum */
		"Z=g=",
		"Zg==Zg==",	/* padding before the end */
		"=Zm9",
		"Zm9\x80",	/* non-ASCII */
		"Zm\xc3\xa9",
	};
	uint8_t out[16];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = 77;
		const char *err = NULL;
		int ret = pn_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), 0, &n, &err);
		if (ret != -1)
			fprintf(stderr, "accepted bad input #%zu\n", i);
		CHECK_INT(ret, -1);
		CHECK(err != NULL);
		CHECK_INT(n, 0);
	}
	/* An embedded NUL is a bad character, not an end of string. */
	size_t n;
	const char *err = NULL;
	CHECK_INT(pn_base64_decode("Zm\0v", 4, out, sizeof(out), 0, &n, &err), -1);
}

PN_TEST(test_trailing_bits)
{
	uint8_t out[4];
	size_t n = 0;
	const char *err = NULL;

	/* "Zh==" carries 'f' plus non-zero pad bits; "Zm9=" likewise for "fo". */
	CHECK_INT(pn_base64_decode("Zh==", 4, out, sizeof(out), PN_BASE64_STRICT, &n, &err), -1);
	CHECK_STR(err, "base64: non-zero trailing bits");
	CHECK_INT(pn_base64_decode("Zm9=", 4, out, sizeof(out), PN_BASE64_STRICT, &n, &err), -1);
	/* Without STRICT they decode, the extra bits dropped. */
	CHECK_INT(pn_base64_decode("Zh==", 4, out, sizeof(out), 0, &n, &err), 0);
	CHECK_MEM(out, n, "f", 1);
	CHECK_INT(pn_base64_decode("Zm9=", 4, out, sizeof(out), 0, &n, &err), 0);
	CHECK_MEM(out, n, "fo", 2);
	/* Every one of the 3 non-zero 2-bit patterns and 15 4-bit patterns. */
	const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (int v = 0; v < 64; v++) {
		char q2[5] = { 'Z', alpha[v], '=', '=', 0 };
		char q1[5] = { 'Z', 'm', alpha[v], '=', 0 };
		CHECK_INT(pn_base64_decode(q2, 4, out, sizeof(out), PN_BASE64_STRICT, &n, &err),
			  (v & 15) == 0 ? 0 : -1);
		CHECK_INT(pn_base64_decode(q1, 4, out, sizeof(out), PN_BASE64_STRICT, &n, &err),
			  (v & 3) == 0 ? 0 : -1);
	}
}

/* Every length 0..64 with varied bytes survives a round trip. */
PN_TEST(test_round_trip_lengths)
{
	uint8_t in[64], out[64];
	char enc[PN_BASE64_ENCODED_LEN(64) + 1];

	for (size_t len = 0; len <= 64; len++) {
		for (size_t i = 0; i < len; i++)
			in[i] = (uint8_t)(len * 37 + i * 101);
		ssize_t e = pn_base64_encode(in, len, enc, sizeof(enc));
		CHECK_INT(e, PN_BASE64_ENCODED_LEN(len));
		size_t n = 0;
		const char *err = NULL;
		CHECK_INT(pn_base64_decode(enc, (size_t)e, out, sizeof(out), PN_BASE64_STRICT,
					   &n, &err), 0);
		CHECK_MEM(out, n, in, len);
		CHECK(PN_BASE64_DECODED_MAX((size_t)e) >= len);
	}
}

PN_TEST_MAIN("test-base64",
	PN_TEST_CASE(test_rfc4648_vectors),
	PN_TEST_CASE(test_full_alphabet),
	PN_TEST_CASE(test_encode_buffer_size),
	PN_TEST_CASE(test_decode_buffer_size),
	PN_TEST_CASE(test_decode_rejects),
	PN_TEST_CASE(test_trailing_bits),
	PN_TEST_CASE(test_round_trip_lengths))
