/* Unit tests for postern/store-password.h: hashing round trips and known
 * vectors produced by other tools (openssl passwd, the Debian argon2 CLI,
 * python's crypt module), with and without Dovecot {SCHEME} prefixes. */
#include "postern/store-password.h"
#include "postern/testing.h"

#include <crypt.h>

/* openssl passwd -6 -salt saltsalt secret */
#define SHA512_SECRET "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"
/* python3: crypt.crypt('secret', '$6$rounds=10000$saltsalt$') */
#define SHA512_ROUNDS_SECRET "$6$rounds=10000$saltsalt$WowrPBpEDVlCoruBosYlrZycTCx3//TyDHYqEhX9DUHHt0XTztUqzQDDUuvUGRA8aUe9p55hcAxeGcu58sm3u."
/* openssl passwd -5 -salt saltsalt secret */
#define SHA256_SECRET "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA"
/* python3: crypt.crypt('secret', '$2y$05$abcdefghijklmnopqrstuu') */
#define BLF_SECRET "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"
/* python3: crypt.crypt('secret', '$y$j9T$abcdefghijklmnop$') */
#define YESCRYPT_SECRET "$y$j9T$abcdefghijklmnop$3dL1LkYnZM.OVXuVdnnaKVDlLYT92dRwOzDZ5XiVCe."
/* echo -n secret | argon2 somesalt1234 -id -t 2 -m 12 -p 1 -e */
#define ARGON2ID_SECRET "$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHQxMjM0$JaVF+OWFIF90JPwKDII9e42apmRumQhnFUuDhiAGD+U"
/* echo -n 'pässwörd' | argon2 saltysaltsalt -i -t 3 -m 12 -p 1 -e (UTF-8) */
#define ARGON2I_UMLAUT "$argon2i$v=19$m=4096,t=3,p=1$c2FsdHlzYWx0c2FsdA$SPEXlMLaf22MiAMIYJT4j3M4TBPjm+z4lInvM6UWnwY"

static int verify(const char *stored, const char *password)
{
	const char *error = NULL;
	int rc = store_password_verify(stored, password, &error);

	if (rc < 0)
		fprintf(stderr, "verify(%s): %s\n", stored, error);
	return rc;
}

PN_TEST(test_crypt_rn_matches_openssl)
{
	struct crypt_data data = { 0 };
	const char *out = crypt_rn("secret", "$6$saltsalt$", &data, (int)sizeof(data));

	CHECK_STR(out, SHA512_SECRET);
	out = crypt_rn("secret", "$5$saltsalt$", &data, (int)sizeof(data));
	CHECK_STR(out, SHA256_SECRET);
	out = crypt_rn("secret", "$2y$05$abcdefghijklmnopqrstuu", &data, (int)sizeof(data));
	CHECK_STR(out, BLF_SECRET);
}

PN_TEST(test_dovecot_prefixed_vectors)
{
	CHECK_INT(verify("{SHA512-CRYPT}" SHA512_SECRET, "secret"), 1);
	CHECK_INT(verify("{SHA512-CRYPT}" SHA512_SECRET, "Secret"), 0);
	CHECK_INT(verify("{sha512-crypt}" SHA512_SECRET, "secret"), 1);
	CHECK_INT(verify("{SHA512-CRYPT}" SHA512_ROUNDS_SECRET, "secret"), 1);
	CHECK_INT(verify("{SHA256-CRYPT}" SHA256_SECRET, "secret"), 1);
	CHECK_INT(verify("{BLF-CRYPT}" BLF_SECRET, "secret"), 1);
	CHECK_INT(verify("{BLF-CRYPT}" BLF_SECRET, "secreT"), 0);
	CHECK_INT(verify("{CRYPT}" YESCRYPT_SECRET, "secret"), 1);
	CHECK_INT(verify("{ARGON2ID}" ARGON2ID_SECRET, "secret"), 1);
	CHECK_INT(verify("{ARGON2ID}" ARGON2ID_SECRET, "secret "), 0);
	CHECK_INT(verify("{ARGON2I}" ARGON2I_UMLAUT, "p\xc3\xa4ssw\xc3\xb6rd"), 1);
	CHECK_INT(verify("{ARGON2I}" ARGON2I_UMLAUT, "passwort"), 0);
	CHECK_INT(verify("{PLAIN}hunter2", "hunter2"), 1);
	CHECK_INT(verify("{PLAIN}hunter2", "hunter"), 0);
	CHECK_INT(verify("{PLAIN}hunter2", "hunter22"), 0);
	CHECK_INT(verify("{CLEARTEXT}x:y", "x:y"), 1);
	CHECK_INT(verify("{PLAIN}", ""), 1);
}

PN_TEST(test_bare_vectors)
{
	CHECK_INT(verify(SHA512_SECRET, "secret"), 1);
	CHECK_INT(verify(SHA512_SECRET, "wrong"), 0);
	CHECK_INT(verify(SHA256_SECRET, "secret"), 1);
	CHECK_INT(verify(BLF_SECRET, "secret"), 1);
	CHECK_INT(verify(YESCRYPT_SECRET, "secret"), 1);
	CHECK_INT(verify(YESCRYPT_SECRET, "secre"), 0);
	CHECK_INT(verify(ARGON2ID_SECRET, "secret"), 1);
	CHECK_INT(verify(ARGON2I_UMLAUT, "p\xc3\xa4ssw\xc3\xb6rd"), 1);
}

PN_TEST(test_malformed_and_unsupported)
{
	static const char *const bad[] = {
		"{FOO}bar",
		"{PLAIN",
		"{SHA512-CRYPT}" BLF_SECRET,            /* prefix and hash disagree */
		"{ARGON2ID}" ARGON2I_UMLAUT,
		"abcdefghijklm",                        /* traditional DES */
		"$6$",                                  /* setting without hash */
		"$6$saltsalt$",
		"$6$saltsalt$bad!chars",
		"$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQxMjM0$JaVF+OWFIF90JPwKDII9e42apmRumQhnFUuDhiAGD+U",
		"$argon2id$v=19$m=4096,t=2$c29tZXNhbHQxMjM0$JaVF",
		"$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHQxMjM0$",
		"$argon2id$v=19$m=4096,t=2,p=1$$JaVF",
		"",
		"plain-without-prefix",
	};
	const char *error;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		if (store_password_verify(bad[i], "secret", &error) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
		CHECK(error != NULL && error[0] != '\0');
		CHECK_INT(store_password_check_format(bad[i], &error), -1);
	}
}

PN_TEST(test_check_format_accepts_vectors)
{
	static const char *const good[] = {
		"{SHA512-CRYPT}" SHA512_SECRET, SHA512_ROUNDS_SECRET, SHA256_SECRET,
		"{BLF-CRYPT}" BLF_SECRET, YESCRYPT_SECRET, "{ARGON2ID}" ARGON2ID_SECRET,
		ARGON2I_UMLAUT, "{PLAIN}x", "{CRYPT}" SHA512_SECRET,
	};
	const char *error = NULL;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (store_password_check_format(good[i], &error) != 0) {
			fprintf(stderr, "refused %s: %s\n", good[i], error);
			CHECK(0);
		}
	}
}

PN_TEST(test_hash_round_trip)
{
	char h1[STORE_PASSWORD_HASH_MAX], h2[STORE_PASSWORD_HASH_MAX];
	const char *error = NULL;

	CHECK_INT(store_password_hash("correct horse", h1, sizeof(h1), &error), 0);
	CHECK(strncmp(h1, "$y$", 3) == 0);
	CHECK_INT(store_password_hash("correct horse", h2, sizeof(h2), &error), 0);
	CHECK(strcmp(h1, h2) != 0); /* random salt */
	CHECK_INT(verify(h1, "correct horse"), 1);
	CHECK_INT(verify(h2, "correct horse"), 1);
	CHECK_INT(verify(h1, "correct horsE"), 0);
	CHECK_INT(store_password_check_format(h1, &error), 0);

	CHECK_INT(store_password_hash_method("pw", "$6$", 0, h1, sizeof(h1), &error), 0);
	CHECK(strncmp(h1, "$6$", 3) == 0);
	CHECK_INT(verify(h1, "pw"), 1);
	CHECK_INT(store_password_hash_method("pw", "$2y$", 4, h1, sizeof(h1), &error), 0);
	CHECK(strncmp(h1, "$2y$04$", 7) == 0);
	CHECK_INT(verify(h1, "pw"), 1);
	CHECK_INT(verify(h1, "pW"), 0);
}

PN_TEST(test_hash_limits)
{
	char h[STORE_PASSWORD_HASH_MAX], small[8];
	char longpw[STORE_PASSWORD_MAX + 2];
	const char *error = NULL;

	CHECK_INT(store_password_hash("", h, sizeof(h), &error), -1);
	memset(longpw, 'a', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	CHECK_INT(store_password_hash(longpw, h, sizeof(h), &error), -1);
	CHECK_INT(store_password_hash("x", small, sizeof(small), &error), -1);
	CHECK_INT(store_password_hash_method("x", "$nope$", 0, h, sizeof(h), &error), -1);
	/* Too long a password never matches, also not a PLAIN one. */
	CHECK_INT(verify(SHA512_SECRET, longpw), 0);
	CHECK_INT(verify("{PLAIN}a", longpw), 0);
}

PN_TEST_MAIN("test-password",
	     PN_TEST_CASE(test_crypt_rn_matches_openssl),
	     PN_TEST_CASE(test_dovecot_prefixed_vectors),
	     PN_TEST_CASE(test_bare_vectors),
	     PN_TEST_CASE(test_malformed_and_unsupported),
	     PN_TEST_CASE(test_check_format_accepts_vectors),
	     PN_TEST_CASE(test_hash_round_trip),
	     PN_TEST_CASE(test_hash_limits))
