/* The PLAIN mechanism (RFC 4616): one client message carrying the
 * authorization identity, the authentication identity and the password,
 * separated by NULs. Without an initial response the server sends an
 * empty challenge first (RFC 4422 section 5, RFC 4616 section 2).
 */
#include "sasl-private.h"

#include <string.h>

/* RFC 4616 section 2:
 *   message   = [authzid] UTF8NUL authcid UTF8NUL passwd
 *   authcid   = 1*SAFE ; MUST accept up to 255 octets
 *   authzid   = 1*SAFE ; MUST accept up to 255 octets
 *   passwd    = 1*SAFE ; MUST accept up to 255 octets
 *   UTF8NUL   = %x00 ; UTF-8 encoded NUL character
 *   SAFE      = UTF1 / UTF2 / UTF3 / UTF4
 *               ;; any UTF-8 encoded Unicode character except NUL */
static enum sasl_status plain_step(struct sasl_exchange *ex, const uint8_t *data, size_t len,
				   struct sasl_result *res_r)
{
	const uint8_t *nul1, *nul2, *authcid, *passwd;
	const char *error;

	if (data == NULL)
		return sasl_challenge(ex, "", 0, res_r);
	nul1 = memchr(data, '\0', len);
	if (nul1 == NULL)
		return sasl_malformed(ex, SASL_FIELD_NONE, "PLAIN message without NUL", res_r);
	authcid = nul1 + 1;
	nul2 = memchr(authcid, '\0', len - (size_t)(authcid - data));
	if (nul2 == NULL)
		return sasl_malformed(ex, SASL_FIELD_NONE, "PLAIN message with one NUL", res_r);
	passwd = nul2 + 1;
	if (sasl_take_field(ex, SASL_FIELD_AUTHZID, data, (size_t)(nul1 - data), true, &error) < 0)
		return sasl_malformed(ex, SASL_FIELD_AUTHZID, error, res_r);
	if (sasl_take_field(ex, SASL_FIELD_AUTHCID, authcid, (size_t)(nul2 - authcid), true,
			    &error) < 0)
		return sasl_malformed(ex, SASL_FIELD_AUTHCID, error, res_r);
	if (sasl_take_field(ex, SASL_FIELD_PASSWORD, passwd, len - (size_t)(passwd - data), true,
			    &error) < 0)
		return sasl_malformed(ex, SASL_FIELD_PASSWORD, error, res_r);
	return sasl_done(ex, res_r);
}

const struct sasl_mech sasl_mech_plain = {
	.name = "PLAIN",
	.plaintext = true,
	.step = plain_step,
};
