/* Unit tests for sasl.h: the mechanism table, PLAIN and LOGIN exchanges
 * with and without initial responses, the "=" and "*" markers in both
 * settings, every error kind with its field, the field limits at their
 * boundaries, UTF-8 checking, and every prefix of a valid response. */
#include "sasl.h"

#include "postern/base64.h"
#include "postern/testing.h"

static char enc_buf[4096];

/* base64 of p[0..n) (a static buffer). */
static const char *b64(const void *p, size_t n)
{
	CHECK(pn_base64_encode(p, n, enc_buf, sizeof(enc_buf)) >= 0);
	return enc_buf;
}

static enum sasl_status start_str(const struct sasl_settings *set, const char *mech,
				  const char *ir, struct sasl_exchange **ex_r,
				  struct sasl_result *res_r)
{
	return sasl_start(set, mech, strlen(mech), ir, ir != NULL ? strlen(ir) : 0, ex_r, res_r);
}

static enum sasl_status step_str(struct sasl_exchange **exp, const char *line,
				 struct sasl_result *res_r)
{
	return sasl_step(exp, line, strlen(line), res_r);
}

/* Asserts an ERROR result of the given kind and field. */
#define CHECK_ERROR(res, ex, kind, fld)                                      \
	do {                                                                  \
		CHECK_INT((res).status, SASL_ERROR);                          \
		CHECK_INT((res).error, kind);                                 \
		CHECK_INT((res).field, fld);                                  \
		CHECK((res).error_text != NULL && (res).error_text[0] != '\0'); \
		CHECK((ex) == NULL);                                          \
	} while (0)

/* Starts mech with the base64 of ir[0..n) and returns the result. */
static enum sasl_status start_bytes(const struct sasl_settings *set, const char *mech,
				    const void *ir, size_t n, struct sasl_exchange **ex_r,
				    struct sasl_result *res_r)
{
	return start_str(set, mech, b64(ir, n), ex_r, res_r);
}

PN_TEST(test_table)
{
	char buf[64];

	CHECK(sasl_mech_find("PLAIN", 5) == &sasl_mech_plain);
	CHECK(sasl_mech_find("plain", 5) == &sasl_mech_plain);
	CHECK(sasl_mech_find("LoGiN", 5) == &sasl_mech_login);
	CHECK(sasl_mech_find("PLAINX", 6) == NULL);
	CHECK(sasl_mech_find("PLAINX", 4) == NULL);
	CHECK(sasl_mech_find("", 0) == NULL);
	CHECK(sasl_mech_find("CRAM-MD5", 8) == NULL);
	CHECK_STR(sasl_mech_name(&sasl_mech_plain), "PLAIN");
	CHECK_STR(sasl_mech_name(&sasl_mech_login), "LOGIN");
	CHECK(sasl_mech_plaintext(&sasl_mech_plain));
	CHECK(sasl_mech_plaintext(&sasl_mech_login));
	CHECK(sasl_mechanisms[0] == &sasl_mech_plain);
	CHECK(sasl_mechanisms[1] == &sasl_mech_login);
	CHECK(sasl_mechanisms[2] == NULL);

	CHECK_INT(sasl_mech_list(buf, sizeof(buf), "", true), 11);
	CHECK_STR(buf, "PLAIN LOGIN");
	CHECK_INT(sasl_mech_list(buf, sizeof(buf), "AUTH=", true), 21);
	CHECK_STR(buf, "AUTH=PLAIN AUTH=LOGIN");
	CHECK_INT(sasl_mech_list(buf, 12, "", true), 11);
	CHECK_STR(buf, "PLAIN LOGIN");
	CHECK_INT(sasl_mech_list(buf, 11, "", true), -1);
	CHECK_STR(buf, "");
	CHECK_INT(sasl_mech_list(buf, 3, "", true), -1);
	CHECK_STR(buf, "");
	CHECK_INT(sasl_mech_list(buf, 0, "", true), -1);
	/* Without plaintext: none of ours. */
	CHECK_INT(sasl_mech_list(buf, sizeof(buf), "AUTH=", false), 0);
	CHECK_STR(buf, "");
}

PN_TEST(test_plain)
{
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;

	/* Initial response. */
	CHECK_INT(start_str(NULL, "PLAIN", "AGFsaWNlAHNlY3JldA==", &ex, &res), SASL_DONE);
	CHECK(ex != NULL);
	CHECK(res.mech == &sasl_mech_plain);
	CHECK_STR(res.creds.authzid, "");
	CHECK_INT(res.creds.authzid_len, 0);
	CHECK_STR(res.creds.authcid, "alice");
	CHECK_INT(res.creds.authcid_len, 5);
	CHECK_STR(res.creds.password, "secret");
	CHECK_INT(res.creds.password_len, 6);
	CHECK_INT(res.error, SASL_ERR_NONE);
	sasl_exchange_free(&ex);
	CHECK(ex == NULL);
	sasl_exchange_free(&ex);
	sasl_exchange_free(NULL);

	/* Without: an empty challenge, then the message with an authzid and
	 * a password with spaces and a tab. */
	CHECK_INT(start_str(NULL, "plain", NULL, &ex, &res), SASL_CHALLENGE);
	CHECK(ex != NULL);
	CHECK(res.mech == &sasl_mech_plain);
	CHECK_INT(res.challenge_len, 0);
	CHECK_STR(res.challenge_b64, "");
	CHECK_INT(step_str(&ex, b64("admin\0bob\0pw with\tspace", 23), &res), SASL_DONE);
	CHECK(ex != NULL);
	CHECK_STR(res.creds.authzid, "admin");
	CHECK_INT(res.creds.authzid_len, 5);
	CHECK_STR(res.creds.authcid, "bob");
	CHECK_STR(res.creds.password, "pw with\tspace");
	CHECK_INT(res.creds.password_len, 13);
	sasl_exchange_free(&ex);

	/* UTF-8 in every field (2, 3 and 4 octet sequences). */
	static const char utf[] = "\xc3\xa9t\xc3\xa9\0\xe2\x82\xac\0\xf0\x9d\x84\x9e";
	CHECK_INT(start_bytes(NULL, "PLAIN", utf, sizeof(utf) - 1, &ex, &res), SASL_DONE);
	CHECK_STR(res.creds.authzid, "\xc3\xa9t\xc3\xa9");
	CHECK_STR(res.creds.authcid, "\xe2\x82\xac");
	CHECK_STR(res.creds.password, "\xf0\x9d\x84\x9e");
	sasl_exchange_free(&ex);
}

PN_TEST(test_plain_malformed)
{
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;

	/* Framing: no NUL, one NUL, "=" (an empty message). */
	start_bytes(NULL, "PLAIN", "alice", 5, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_NONE);
	CHECK(res.mech == &sasl_mech_plain);
	start_bytes(NULL, "PLAIN", "alice\0secret", 12, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_NONE);
	start_str(NULL, "PLAIN", "=", &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_NONE);
	/* Empty authcid, empty password, a third NUL. */
	start_bytes(NULL, "PLAIN", "\0\0secret", 8, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	start_bytes(NULL, "PLAIN", "\0alice\0", 7, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	start_bytes(NULL, "PLAIN", "\0alice\0sec\0ret", 14, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	/* Control characters in identities (not in passwords), DEL. */
	start_bytes(NULL, "PLAIN", "\0al\x01ice\0secret", 14, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	start_bytes(NULL, "PLAIN", "ad\x7fmin\0alice\0secret", 19, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHZID);
	start_bytes(NULL, "PLAIN", "\0alice\tx\0secret", 15, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	CHECK_INT(start_bytes(NULL, "PLAIN", "\0alice\0se\x01\x7f", 11, &ex, &res), SASL_DONE);
	CHECK_STR(res.creds.password, "se\x01\x7f");
	sasl_exchange_free(&ex);
	/* Not UTF-8: Latin-1, an overlong NUL, a surrogate. */
	start_bytes(NULL, "PLAIN", "\0alice\0s\xe9same", 13, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	start_bytes(NULL, "PLAIN", "\0al\xc0\x80\0secret", 13, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	start_bytes(NULL, "PLAIN", "\xed\xa0\x80\0alice\0secret", 16, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHZID);
}

PN_TEST(test_plain_limits)
{
	struct sasl_settings set = { 0 };
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;
	char m[2048];

	/* 255 octets in every field: the longest message, 1024 characters. */
	memset(m, 'z', sizeof(m));
	m[255] = '\0';
	m[511] = '\0';
	CHECK_INT(strlen(b64(m, 767)), 1024);
	CHECK_INT(start_bytes(NULL, "PLAIN", m, 767, &ex, &res), SASL_DONE);
	CHECK_INT(res.creds.authzid_len, 255);
	CHECK_INT(res.creds.authcid_len, 255);
	CHECK_INT(res.creds.password_len, 255);
	CHECK_INT(strlen(res.creds.password), 255);
	sasl_exchange_free(&ex);
	/* 256 in one field, the message still within 1024 characters. */
	m[255] = 'z';
	m[256] = '\0';
	start_bytes(NULL, "PLAIN", m, 767, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHZID);
	memset(m, 'z', sizeof(m));
	m[0] = '\0';
	m[257] = '\0';
	start_bytes(NULL, "PLAIN", m, 264, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	m[257] = 'z';
	m[5] = '\0';
	start_bytes(NULL, "PLAIN", m, 262, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	/* 768 octets decode from 1024 characters: some field is too long. */
	memset(m, 'z', sizeof(m));
	m[255] = '\0';
	m[511] = '\0';
	start_bytes(NULL, "PLAIN", m, 768, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	/* Longer than 1024 characters: too long, valid base64 or not. */
	start_bytes(NULL, "PLAIN", m, 769, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_TOO_LONG, SASL_FIELD_NONE);
	memset(m, '!', 1025);
	m[1025] = '\0';
	start_str(NULL, "PLAIN", m, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_TOO_LONG, SASL_FIELD_NONE);
	m[1024] = '\0';
	start_str(NULL, "PLAIN", m, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);

	/* Other limits: 1024-octet passwords (POP3), 10-octet identities. */
	set.max_password = 1024;
	set.max_identity = 10;
	memset(m, 'p', sizeof(m));
	memcpy(m, "\0alice\0", 7);
	CHECK_INT(start_bytes(&set, "PLAIN", m, 7 + 1024, &ex, &res), SASL_DONE);
	CHECK_INT(res.creds.password_len, 1024);
	sasl_exchange_free(&ex);
	start_bytes(&set, "PLAIN", m, 7 + 1025, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	memcpy(m, "\0alice67890\0", 12);
	CHECK_INT(start_bytes(&set, "PLAIN", m, 13, &ex, &res), SASL_DONE);
	sasl_exchange_free(&ex);
	memcpy(m, "\0alice678901\0", 13);
	start_bytes(&set, "PLAIN", m, 14, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	/* Longest response 2 * 10 + 1024 + 2 = 1046 octets: 1396 characters. */
	memset(m, 'A', 1400);
	m[1396] = '\0';
	start_str(&set, "PLAIN", m, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	m[1396] = 'A';
	m[1397] = '\0';
	start_str(&set, "PLAIN", m, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_TOO_LONG, SASL_FIELD_NONE);

	/* Limits beyond SASL_MAX_FIELD_LIMIT are cut to it. */
	set.max_identity = (size_t)-1;
	set.max_password = (size_t)-1;
	memset(m, 'u', sizeof(m));
	m[0] = '\0';
	m[1000] = '\0';
	CHECK_INT(start_bytes(&set, "PLAIN", m, 2000, &ex, &res), SASL_DONE);
	CHECK_INT(res.creds.authcid_len, 999);
	CHECK_INT(res.creds.password_len, 999);
	sasl_exchange_free(&ex);
}

PN_TEST(test_login)
{
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;

	CHECK_INT(start_str(NULL, "LOGIN", NULL, &ex, &res), SASL_CHALLENGE);
	CHECK(res.mech == &sasl_mech_login);
	CHECK_MEM(res.challenge, res.challenge_len, "Username:", 9);
	CHECK_STR(res.challenge_b64, "VXNlcm5hbWU6");
	CHECK_INT(step_str(&ex, "YWxpY2U=", &res), SASL_CHALLENGE);
	CHECK_MEM(res.challenge, res.challenge_len, "Password:", 9);
	CHECK_STR(res.challenge_b64, "UGFzc3dvcmQ6");
	CHECK_INT(step_str(&ex, "c2VjcmV0", &res), SASL_DONE);
	CHECK(ex != NULL);
	CHECK(res.mech == &sasl_mech_login);
	CHECK_STR(res.creds.authzid, "");
	CHECK_INT(res.creds.authzid_len, 0);
	CHECK_STR(res.creds.authcid, "alice");
	CHECK_INT(res.creds.authcid_len, 5);
	CHECK_STR(res.creds.password, "secret");
	CHECK_INT(res.creds.password_len, 6);
	sasl_exchange_free(&ex);

	/* The initial response is the user name. Latin-1 is taken. */
	CHECK_INT(start_str(NULL, "login", "YWxpY2U=", &ex, &res), SASL_CHALLENGE);
	CHECK_STR(res.challenge_b64, "UGFzc3dvcmQ6");
	CHECK_INT(step_str(&ex, b64("s\xe9same", 6), &res), SASL_DONE);
	CHECK_STR(res.creds.password, "s\xe9same");
	sasl_exchange_free(&ex);

	/* Empty user ("=" initial response), empty password, NUL in user,
	 * control character in user, NUL in password, 256-octet user. */
	start_str(NULL, "LOGIN", "=", &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	CHECK(res.mech == &sasl_mech_login);
	start_str(NULL, "LOGIN", "YWxpY2U=", &ex, &res);
	step_str(&ex, "", &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	start_str(NULL, "LOGIN", NULL, &ex, &res);
	step_str(&ex, "YQBi", &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	start_str(NULL, "LOGIN", b64("a\x1b", 2), &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	start_str(NULL, "LOGIN", "YWxpY2U=", &ex, &res);
	step_str(&ex, "AAAA", &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
	char u[300];
	memset(u, 'u', sizeof(u));
	CHECK_INT(start_bytes(NULL, "LOGIN", u, 255, &ex, &res), SASL_CHALLENGE);
	sasl_exchange_free(&ex);
	start_bytes(NULL, "LOGIN", u, 256, &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
}

PN_TEST(test_markers_and_base64)
{
	struct sasl_settings lenient = { .markers_anywhere = true };
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;

	/* "*" after a challenge cancels, in both settings and mechanisms. */
	start_str(NULL, "PLAIN", NULL, &ex, &res);
	step_str(&ex, "*", &res);
	CHECK_ERROR(res, ex, SASL_ERR_CANCELLED, SASL_FIELD_NONE);
	CHECK(res.mech == &sasl_mech_plain);
	start_str(&lenient, "LOGIN", "YWxpY2U=", &ex, &res);
	step_str(&ex, "*", &res);
	CHECK_ERROR(res, ex, SASL_ERR_CANCELLED, SASL_FIELD_NONE);
	CHECK(res.mech == &sasl_mech_login);
	/* "*" as the initial response: base64 (bad) by the RFCs, a cancel
	 * when lenient. */
	start_str(NULL, "PLAIN", "*", &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	start_str(&lenient, "PLAIN", "*", &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_CANCELLED, SASL_FIELD_NONE);
	/* "=" after a challenge: bad base64 by the RFCs, empty when lenient. */
	start_str(NULL, "LOGIN", NULL, &ex, &res);
	step_str(&ex, "=", &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	start_str(&lenient, "LOGIN", NULL, &ex, &res);
	step_str(&ex, "=", &res);
	CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_AUTHCID);
	/* "**", "==", " *": plain bad base64. */
	start_str(NULL, "PLAIN", NULL, &ex, &res);
	step_str(&ex, "**", &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	start_str(&lenient, "PLAIN", "==", &ex, &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	start_str(NULL, "PLAIN", NULL, &ex, &res);
	step_str(&ex, " *", &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	/* Bad base64: outside the alphabet, length, whitespace, NUL, CR,
	 * missing padding. */
	static const char *const bad[] = { "!!!!", "abc", "QQ", "YWxp Y2U=", "YWxpY2U=\r",
					   "dXNlcg", "YW=xY2U=" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		start_str(NULL, "LOGIN", bad[i], &ex, &res);
		CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
		start_str(NULL, "PLAIN", NULL, &ex, &res);
		step_str(&ex, bad[i], &res);
		CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	}
	start_str(NULL, "PLAIN", NULL, &ex, &res);
	sasl_step(&ex, "AA\0A", 4, &res);
	CHECK_ERROR(res, ex, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE);
	/* A lenient exchange still takes the ordinary responses. */
	CHECK_INT(start_str(&lenient, "PLAIN", "AGFsaWNlAHNlY3JldA==", &ex, &res), SASL_DONE);
	CHECK_STR(res.creds.authcid, "alice");
	sasl_exchange_free(&ex);
	/* The TOO_LONG check comes before decoding. */
	char line[1100];
	memset(line, 'A', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	line[3] = '!';
	start_str(NULL, "LOGIN", NULL, &ex, &res);
	step_str(&ex, line, &res);
	CHECK_ERROR(res, ex, SASL_ERR_TOO_LONG, SASL_FIELD_NONE);
}

PN_TEST(test_unknown_mech)
{
	struct sasl_exchange *ex = (struct sasl_exchange *)&ex;
	struct sasl_result res;

	CHECK_INT(start_str(NULL, "CRAM-MD5", "AAAA", &ex, &res), SASL_ERROR);
	CHECK_ERROR(res, ex, SASL_ERR_UNKNOWN_MECH, SASL_FIELD_NONE);
	CHECK(res.mech == NULL);
	ex = (struct sasl_exchange *)&ex;
	CHECK_INT(sasl_start(NULL, "PLAIN", 4, NULL, 0, &ex, &res), SASL_ERROR);
	CHECK_ERROR(res, ex, SASL_ERR_UNKNOWN_MECH, SASL_FIELD_NONE);
	CHECK_INT(start_str(NULL, "", NULL, &ex, &res), SASL_ERROR);
	CHECK_ERROR(res, ex, SASL_ERR_UNKNOWN_MECH, SASL_FIELD_NONE);
}

/* Every proper prefix of a valid response fails (bad base64, or a
 * different message that is malformed), never DONE with other
 * credentials; the whole response succeeds. */
PN_TEST(test_prefixes)
{
	static const char msg[] = "admin\0alice\0secret";
	const char *line = b64(msg, sizeof(msg) - 1);
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;
	size_t n = strlen(line);

	CHECK_INT(n, 24);
	for (size_t i = 0; i <= n; i++) {
		CHECK_INT(start_str(NULL, "PLAIN", NULL, &ex, &res), SASL_CHALLENGE);
		enum sasl_status st = sasl_step(&ex, line, i, &res);
		if (i == n) {
			CHECK_INT(st, SASL_DONE);
			CHECK_STR(res.creds.authzid, "admin");
			CHECK_STR(res.creds.authcid, "alice");
			CHECK_STR(res.creds.password, "secret");
			sasl_exchange_free(&ex);
		} else if (st == SASL_DONE) {
			/* A shorter valid encoding: only a cut password. */
			CHECK_STR(res.creds.authcid, "alice");
			CHECK(res.creds.password_len < 6);
			CHECK(strncmp(res.creds.password, "secret", res.creds.password_len) == 0);
			sasl_exchange_free(&ex);
		} else {
			CHECK_INT(st, SASL_ERROR);
			CHECK(res.error == SASL_ERR_BAD_BASE64 || res.error == SASL_ERR_MALFORMED);
			CHECK(ex == NULL);
		}
	}
}

PN_TEST(test_utf8)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
		{ "a", true },
		{ "plain ascii \x7f", true },
		{ "\xc2\x80", true },
		{ "\xdf\xbf", true },
		{ "\xe0\xa0\x80", true },
		{ "\xed\x9f\xbf", true },
		{ "\xee\x80\x80", true },
		{ "\xef\xbf\xbf", true },
		{ "\xf0\x90\x80\x80", true },
		{ "\xf4\x8f\xbf\xbf", true },
		{ "\x80", false },
		{ "\xbf", false },
		{ "\xc0\x80", false },
		{ "\xc1\xbf", false },
		{ "\xc2", false },
		{ "\xc2\x41", false },
		{ "\xe0\x80\x80", false },
		{ "\xe0\x9f\xbf", false },
		{ "\xed\xa0\x80", false },
		{ "\xed\xbf\xbf", false },
		{ "\xe2\x82", false },
		{ "\xe2\x82\x41", false },
		{ "\xf0\x80\x80\x80", false },
		{ "\xf0\x8f\xbf\xbf", false },
		{ "\xf4\x90\x80\x80", false },
		{ "\xf5\x80\x80\x80", false },
		{ "\xf0\x90\x80", false },
		{ "\xf0\x90\x80\x41", false },
		{ "\xfe", false },
		{ "\xff", false },
		{ "ok\xc3\xa9\xc3", false },
	};
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;
	char m[64];

	/* Through the password of PLAIN. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t l = strlen(cases[i].s);
		memcpy(m, "\0u\0p", 4);
		memcpy(m + 4, cases[i].s, l);
		enum sasl_status st = start_bytes(NULL, "PLAIN", m, 4 + l, &ex, &res);
		if (st != (cases[i].ok ? SASL_DONE : SASL_ERROR))
			fprintf(stderr, "utf8 case %zu\n", i);
		CHECK_INT(st, cases[i].ok ? SASL_DONE : SASL_ERROR);
		if (!cases[i].ok)
			CHECK_ERROR(res, ex, SASL_ERR_MALFORMED, SASL_FIELD_PASSWORD);
		sasl_exchange_free(&ex);
	}
}

PN_TEST_MAIN("test-sasl", PN_TEST_CASE(test_table), PN_TEST_CASE(test_plain),
	     PN_TEST_CASE(test_plain_malformed), PN_TEST_CASE(test_plain_limits),
	     PN_TEST_CASE(test_login), PN_TEST_CASE(test_markers_and_base64),
	     PN_TEST_CASE(test_unknown_mech), PN_TEST_CASE(test_prefixes),
	     PN_TEST_CASE(test_utf8))
