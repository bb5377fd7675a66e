/* libFuzzer target for sasl.h. The first byte chooses the mechanism, whether
 * the first line is an initial response, the "=" / "*" leniency, small
 * field limits (from the next two bytes) and whether the first line is
 * instead a mechanism name; the rest is cut into lines at LF. Properties
 * checked on every input:
 * - the returned status is the result's, an exchange exists exactly while
 *   the status is CHALLENGE or DONE, ERROR has a kind and a text;
 * - challenges are the mechanism's own, with their exact base64;
 * - credentials respect the limits and the checks of sasl.h (no NUL,
 *   non-empty authcid and password, no control characters in identities,
 *   UTF-8 in PLAIN, no authzid in LOGIN), and PLAIN credentials encoded
 *   again give the same credentials in a fresh exchange;
 * - a mechanism name other than PLAIN / LOGIN in any case is unknown.
 */
#include "sasl-private.h"

#include "postern/base64.h"
#include "postern/mail-decode.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool identity_ok(const char *p, size_t len, size_t max)
{
	if (len > max || strlen(p) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

static void check_result(enum sasl_status st, const struct sasl_result *res,
			 const struct sasl_exchange *ex, const struct sasl_mech *mech,
			 const struct sasl_settings *set)
{
	size_t max_id = set->max_identity != 0 ? set->max_identity : SASL_DEFAULT_MAX_FIELD;
	size_t max_pw = set->max_password != 0 ? set->max_password : SASL_DEFAULT_MAX_FIELD;
	char b64[64];

	check(st == res->status);
	switch (st) {
	case SASL_CHALLENGE:
		check(ex != NULL && res->mech == mech);
		if (mech == &sasl_mech_plain)
			check(res->challenge_len == 0);
		else
			check((res->challenge_len == 9 && memcmp(res->challenge, "Username:", 9) == 0) ||
			      (res->challenge_len == 9 && memcmp(res->challenge, "Password:", 9) == 0));
		check(pn_base64_encode(res->challenge, res->challenge_len, b64, sizeof(b64)) >= 0);
		check(strcmp(b64, res->challenge_b64) == 0);
		break;
	case SASL_DONE:
		check(ex != NULL && res->mech == mech);
		check(identity_ok(res->creds.authzid, res->creds.authzid_len, max_id));
		check(identity_ok(res->creds.authcid, res->creds.authcid_len, max_id));
		check(res->creds.authcid_len > 0);
		check(res->creds.password_len > 0 && res->creds.password_len <= max_pw);
		check(strlen(res->creds.password) == res->creds.password_len);
		if (mech == &sasl_mech_login) {
			check(res->creds.authzid_len == 0);
		} else {
			check(mail_utf8_valid((const uint8_t *)res->creds.authzid, res->creds.authzid_len));
			check(mail_utf8_valid((const uint8_t *)res->creds.authcid, res->creds.authcid_len));
			check(mail_utf8_valid((const uint8_t *)res->creds.password,
					      res->creds.password_len));
		}
		break;
	case SASL_ERROR:
		check(ex == NULL);
		check(res->error != SASL_ERR_NONE && res->error_text != NULL && res->error_text[0] != '\0');
		check(res->error == SASL_ERR_UNKNOWN_MECH ? res->mech == NULL : res->mech == mech);
		check(res->field == SASL_FIELD_NONE || res->error == SASL_ERR_MALFORMED);
		if (mech == &sasl_mech_login && res->error == SASL_ERR_MALFORMED)
			check(res->field == SASL_FIELD_AUTHCID || res->field == SASL_FIELD_PASSWORD);
		break;
	default:
		check(false);
	}
}

/* PLAIN credentials sent again give the same credentials. */
static void check_roundtrip(const struct sasl_credentials *c, const struct sasl_settings *set)
{
	size_t n = c->authzid_len + c->authcid_len + c->password_len + 2;
	char *msg = malloc(n), *enc = malloc(PN_BASE64_ENCODED_LEN(n) + 1);
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;

	check(msg != NULL && enc != NULL);
	memcpy(msg, c->authzid, c->authzid_len + 1);
	memcpy(msg + c->authzid_len + 1, c->authcid, c->authcid_len + 1);
	memcpy(msg + c->authzid_len + c->authcid_len + 2, c->password, c->password_len);
	check(pn_base64_encode(msg, n, enc, PN_BASE64_ENCODED_LEN(n) + 1) >= 0);
	check(sasl_start(set, "PLAIN", 5, enc, strlen(enc), &ex, &res) == SASL_DONE);
	check(strcmp(res.creds.authzid, c->authzid) == 0);
	check(strcmp(res.creds.authcid, c->authcid) == 0);
	check(strcmp(res.creds.password, c->password) == 0);
	sasl_exchange_free(&ex);
	check(ex == NULL);
	free(msg);
	free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl_settings set = { 0 };
	struct sasl_exchange *ex = NULL;
	struct sasl_result res;
	const struct sasl_mech *mech;
	enum sasl_status st;
	const char *p, *end, *lf;
	uint8_t cfg;

	if (size < 3)
		return 0;
	cfg = data[0];
	mech = (cfg & 1) ? &sasl_mech_login : &sasl_mech_plain;
	set.markers_anywhere = (cfg & 4) != 0;
	if (cfg & 8) {
		set.max_identity = 1 + data[1] % 32;
		set.max_password = 1 + data[2] % 64;
	}
	p = (const char *)data + 3;
	end = (const char *)data + size;

	if (cfg & 16) {
		/* The first line is the mechanism name. */
		lf = memchr(p, '\n', (size_t)(end - p));
		size_t nlen = (size_t)((lf != NULL ? lf : end) - p);
		const struct sasl_mech *found = sasl_mech_find(p, nlen);
		st = sasl_start(&set, p, nlen, NULL, 0, &ex, &res);
		if ((nlen == 5 && strncasecmp(p, "PLAIN", 5) == 0) ||
		    (nlen == 5 && strncasecmp(p, "LOGIN", 5) == 0)) {
			check(found != NULL && st == SASL_CHALLENGE);
			mech = found;
		} else {
			check(found == NULL && st == SASL_ERROR && res.error == SASL_ERR_UNKNOWN_MECH);
			check(ex == NULL && res.mech == NULL);
			return 0;
		}
		p = lf != NULL ? lf + 1 : end;
	} else if (cfg & 2) {
		lf = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((lf != NULL ? lf : end) - p);
		st = sasl_start(&set, sasl_mech_name(mech), strlen(sasl_mech_name(mech)), p, len,
				&ex, &res);
		p = lf != NULL ? lf + 1 : end;
	} else {
		st = sasl_start(&set, sasl_mech_name(mech), strlen(sasl_mech_name(mech)), NULL, 0,
				&ex, &res);
	}
	check_result(st, &res, ex, mech, &set);
	while (st == SASL_CHALLENGE && p < end) {
		lf = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((lf != NULL ? lf : end) - p);
		st = sasl_step(&ex, p, len, &res);
		check_result(st, &res, ex, mech, &set);
		p = lf != NULL ? lf + 1 : end;
	}
	if (st == SASL_DONE && mech == &sasl_mech_plain)
		check_roundtrip(&res.creds, &set);
	sasl_exchange_free(&ex);
	check(ex == NULL);
	return 0;
}
