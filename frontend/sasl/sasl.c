/* The SASL layer shared by the mechanisms (see sasl.h for the contract): the
 * mechanism table, the exchange's memory, the base64 line handling of the
 * AUTH / AUTHENTICATE responses ("=" and "*"), the field checks every
 * mechanism uses and the results. The mechanisms are in sasl-plain.c and
 * sasl-login.c.
 */
#include "sasl-private.h"

#include "postern/base64.h"
#include "postern/mail-decode.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct sasl_mech *const sasl_mechanisms[] = {
	&sasl_mech_plain,
	&sasl_mech_login,
	NULL,
};

const char *sasl_mech_name(const struct sasl_mech *mech)
{
	return mech->name;
}

bool sasl_mech_plaintext(const struct sasl_mech *mech)
{
	return mech->plaintext;
}

const struct sasl_mech *sasl_mech_find(const char *name, size_t len)
{
	for (size_t i = 0; sasl_mechanisms[i] != NULL; i++) {
		const char *n = sasl_mechanisms[i]->name;
		if (strlen(n) == len && strncasecmp(n, name, len) == 0)
			return sasl_mechanisms[i];
	}
	return NULL;
}

int sasl_mech_list(char *buf, size_t size, const char *prefix, bool plaintext_ok)
{
	size_t plen = strlen(prefix), o = 0;

	if (size == 0)
		return -1;
	for (size_t i = 0; sasl_mechanisms[i] != NULL; i++) {
		const char *n = sasl_mechanisms[i]->name;
		size_t nlen = strlen(n), need = (o > 0 ? 1 : 0) + plen + nlen;
		if (sasl_mechanisms[i]->plaintext && !plaintext_ok)
			continue;
		if (need >= size - o) {
			buf[0] = '\0';
			return -1;
		}
		if (o > 0)
			buf[o++] = ' ';
		memcpy(buf + o, prefix, plen);
		o += plen;
		memcpy(buf + o, n, nlen);
		o += nlen;
	}
	buf[o] = '\0';
	return (int)o;
}

/* ---- results ---- */

static enum sasl_status fail(const struct sasl_mech *mech, enum sasl_error error,
			     enum sasl_field f, const char *text, struct sasl_result *res_r)
{
	memset(res_r, 0, sizeof(*res_r));
	res_r->status = SASL_ERROR;
	res_r->mech = mech;
	res_r->error = error;
	res_r->field = f;
	res_r->error_text = text;
	return SASL_ERROR;
}

enum sasl_status sasl_challenge(struct sasl_exchange *ex, const char *challenge, size_t len,
				struct sasl_result *res_r)
{
	ssize_t n = pn_base64_encode(challenge, len, ex->challenge_b64,
				     sizeof(ex->challenge_b64));

	/* Challenges are the mechanisms' own constants. */
	assert(n >= 0);
	(void)n;
	ex->awaiting = true;
	memset(res_r, 0, sizeof(*res_r));
	res_r->status = SASL_CHALLENGE;
	res_r->mech = ex->mech;
	res_r->challenge = (const uint8_t *)challenge;
	res_r->challenge_len = len;
	res_r->challenge_b64 = ex->challenge_b64;
	return SASL_CHALLENGE;
}

enum sasl_status sasl_done(struct sasl_exchange *ex, struct sasl_result *res_r)
{
	memset(res_r, 0, sizeof(*res_r));
	res_r->status = SASL_DONE;
	res_r->mech = ex->mech;
	res_r->creds.authzid = ex->authzid;
	res_r->creds.authzid_len = ex->authzid_len;
	res_r->creds.authcid = ex->authcid;
	res_r->creds.authcid_len = ex->authcid_len;
	res_r->creds.password = ex->password;
	res_r->creds.password_len = ex->password_len;
	return SASL_DONE;
}

enum sasl_status sasl_malformed(struct sasl_exchange *ex, enum sasl_field f, const char *text,
				struct sasl_result *res_r)
{
	return fail(ex->mech, SASL_ERR_MALFORMED, f, text, res_r);
}

/* ---- field checks ---- */

int sasl_take_field(struct sasl_exchange *ex, enum sasl_field f, const uint8_t *data,
		    size_t len, bool utf8, const char **error_r)
{
	bool identity = f != SASL_FIELD_PASSWORD;
	size_t max = identity ? ex->max_identity : ex->max_password;
	char *dst;

	if (len == 0 && f != SASL_FIELD_AUTHZID) {
		*error_r = f == SASL_FIELD_AUTHCID ? "empty authentication identity"
						   : "empty password";
		return -1;
	}
	if (len > max) {
		*error_r = identity ? "identity too long" : "password too long";
		return -1;
	}
	if (memchr(data, '\0', len) != NULL) {
		*error_r = "NUL in a field";
		return -1;
	}
	if (identity) {
		for (size_t i = 0; i < len; i++) {
			if (data[i] < 0x20 || data[i] == 0x7f) {
				*error_r = "control character in an identity";
				return -1;
			}
		}
	}
	if (utf8 && !mail_utf8_valid(data, len)) {
		*error_r = "not UTF-8";
		return -1;
	}
	switch (f) {
	case SASL_FIELD_AUTHZID:
		dst = ex->authzid;
		ex->authzid_len = len;
		break;
	case SASL_FIELD_AUTHCID:
		dst = ex->authcid;
		ex->authcid_len = len;
		break;
	case SASL_FIELD_PASSWORD:
	default:
		assert(f == SASL_FIELD_PASSWORD);
		dst = ex->password;
		ex->password_len = len;
		break;
	}
	memcpy(dst, data, len);
	dst[len] = '\0';
	return 0;
}

/* ---- exchanges ---- */

static size_t field_max(size_t v)
{
	if (v == 0)
		return SASL_DEFAULT_MAX_FIELD;
	return v > SASL_MAX_FIELD_LIMIT ? SASL_MAX_FIELD_LIMIT : v;
}

static struct sasl_exchange *exchange_new(const struct sasl_settings *set,
					  const struct sasl_mech *mech)
{
	size_t max_identity = field_max(set != NULL ? set->max_identity : 0);
	size_t max_password = field_max(set != NULL ? set->max_password : 0);
	/* RFC 4616 section 2: authzid NUL authcid NUL passwd. */
	size_t response_max = 2 * max_identity + max_password + 2;
	/* Room for any base64 text not longer than the encoding of
	 * response_max octets. */
	size_t decoded_size = PN_BASE64_DECODED_MAX(PN_BASE64_ENCODED_LEN(response_max));
	size_t fields = 2 * (max_identity + 1) + max_password + 1;
	size_t block = sizeof(struct sasl_exchange) + fields + decoded_size;
	struct sasl_exchange *ex = calloc(1, block);

	if (ex == NULL)
		return NULL;
	ex->mech = mech;
	ex->max_identity = max_identity;
	ex->max_password = max_password;
	ex->markers_anywhere = set != NULL && set->markers_anywhere;
	ex->authzid = ex->fields;
	ex->authcid = ex->authzid + max_identity + 1;
	ex->password = ex->authcid + max_identity + 1;
	ex->decoded = (uint8_t *)ex->password + max_password + 1;
	ex->decoded_size = decoded_size;
	ex->response_max = response_max;
	ex->block_size = block;
	return ex;
}

void sasl_exchange_free(struct sasl_exchange **exp)
{
	struct sasl_exchange *ex = exp != NULL ? *exp : NULL;

	if (ex == NULL)
		return;
	*exp = NULL;
	explicit_bzero(ex, ex->block_size);
	free(ex);
}

/* One client response: the initial response of the command (initial) or a
 * line after a challenge.
 * RFC 4954 section 4 / RFC 5034 section 4 / RFC 4959 section 3: an initial
 * response of zero length is sent as "=";
 * RFC 4954 section 4 / RFC 5034 section 4 / RFC 3501 section 6.2.2: "If
 * the client wishes to cancel an authentication exchange, it issues a line
 * consisting of a single "*"". */
static enum sasl_status respond(struct sasl_exchange *ex, const char *line, size_t len,
				bool initial, struct sasl_result *res_r)
{
	size_t dlen = 0;
	const char *error;
	enum sasl_status st;

	if (len == 1 && line[0] == '*' && (!initial || ex->markers_anywhere))
		return fail(ex->mech, SASL_ERR_CANCELLED, SASL_FIELD_NONE,
			    "cancelled by the client", res_r);
	if (len == 1 && line[0] == '=' && (initial || ex->markers_anywhere))
		len = 0;
	if (len > PN_BASE64_ENCODED_LEN(ex->response_max))
		return fail(ex->mech, SASL_ERR_TOO_LONG, SASL_FIELD_NONE,
			    "response longer than any valid one", res_r);
	if (pn_base64_decode(line, len, ex->decoded, ex->decoded_size, 0, &dlen, &error) < 0) {
		explicit_bzero(ex->decoded, ex->decoded_size);
		return fail(ex->mech, SASL_ERR_BAD_BASE64, SASL_FIELD_NONE, error, res_r);
	}
	st = ex->mech->step(ex, ex->decoded, dlen, res_r);
	explicit_bzero(ex->decoded, dlen);
	return st;
}

enum sasl_status sasl_start(const struct sasl_settings *set, const char *mech, size_t mech_len,
			    const char *initial, size_t initial_len,
			    struct sasl_exchange **ex_r, struct sasl_result *res_r)
{
	const struct sasl_mech *m = sasl_mech_find(mech, mech_len);
	struct sasl_exchange *ex;
	enum sasl_status st;

	*ex_r = NULL;
	if (m == NULL)
		return fail(NULL, SASL_ERR_UNKNOWN_MECH, SASL_FIELD_NONE,
			    "unknown mechanism", res_r);
	ex = exchange_new(set, m);
	if (ex == NULL)
		return fail(m, SASL_ERR_NO_MEMORY, SASL_FIELD_NONE, "out of memory", res_r);
	if (initial == NULL)
		st = m->step(ex, NULL, 0, res_r);
	else
		st = respond(ex, initial, initial_len, true, res_r);
	if (st == SASL_ERROR)
		sasl_exchange_free(&ex);
	*ex_r = ex;
	return st;
}

enum sasl_status sasl_step(struct sasl_exchange **exp, const char *line, size_t len,
			   struct sasl_result *res_r)
{
	enum sasl_status st;

	/* Only after SASL_CHALLENGE: a call at any other time is an engine bug. */
	assert(*exp != NULL && (*exp)->awaiting);
	(*exp)->awaiting = false;
	st = respond(*exp, line, len, false, res_r);
	if (st == SASL_ERROR)
		sasl_exchange_free(exp);
	return st;
}
