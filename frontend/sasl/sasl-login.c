/* The LOGIN mechanism. It has no RFC (draft-murchison-sasl-login, expired,
 * describes what clients do): the server asks "Username:" and then
 * "Password:", each answered by one response; an initial response, if
 * any, is the user name. There is no authorization identity. The octets
 * are taken as they come (no UTF-8 requirement: clients send passwords
 * in their local charset), within the checks of sasl.h.
 */
#include "sasl-private.h"

enum {
	LOGIN_WAIT_USER = 0,
	LOGIN_WAIT_PASSWORD,
};

static const char challenge_user[] = "Username:";
static const char challenge_password[] = "Password:";

static enum sasl_status login_step(struct sasl_exchange *ex, const uint8_t *data, size_t len,
				   struct sasl_result *res_r)
{
	const char *error;

	if (ex->state == LOGIN_WAIT_USER) {
		if (data == NULL)
			return sasl_challenge(ex, challenge_user, sizeof(challenge_user) - 1, res_r);
		if (sasl_take_field(ex, SASL_FIELD_AUTHCID, data, len, false, &error) < 0)
			return sasl_malformed(ex, SASL_FIELD_AUTHCID, error, res_r);
		ex->state = LOGIN_WAIT_PASSWORD;
		return sasl_challenge(ex, challenge_password, sizeof(challenge_password) - 1, res_r);
	}
	if (sasl_take_field(ex, SASL_FIELD_PASSWORD, data, len, false, &error) < 0)
		return sasl_malformed(ex, SASL_FIELD_PASSWORD, error, res_r);
	return sasl_done(ex, res_r);
}

const struct sasl_mech sasl_mech_login = {
	.name = "LOGIN",
	.plaintext = true,
	.step = login_step,
};
