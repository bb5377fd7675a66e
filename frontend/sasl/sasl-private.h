/* The interface between sasl.c and the mechanism files (sasl-<name>.c).
 *
 * sasl.c turns each client line into decoded bytes; a mechanism's step()
 * consumes them and ends with one of the helpers below, which fill the
 * result and return its status. The decoded bytes are wiped by sasl.c
 * after step() returns; what the mechanism keeps it copies into the
 * exchange with sasl_take_field().
 */
#ifndef SASL_PRIVATE_H
#define SASL_PRIVATE_H

#include "sasl.h"

struct sasl_mech {
	const char *name;
	bool plaintext;
	/* One step of the exchange. data == NULL: the command carried no
	 * initial response (the first step only); otherwise the decoded
	 * response data[0..len), possibly empty. ex->state starts at 0 and
	 * is the mechanism's to use. */
	enum sasl_status (*step)(struct sasl_exchange *ex, const uint8_t *data, size_t len,
				 struct sasl_result *res_r);
};

struct sasl_exchange {
	const struct sasl_mech *mech;
	unsigned int state;		/* the mechanism's */
	size_t max_identity, max_password;
	bool markers_anywhere;
	bool awaiting;			/* a challenge was sent: sasl_step() may come */

	/* The credentials, each NUL-terminated, in fields[]. */
	char *authzid, *authcid, *password;
	size_t authzid_len, authcid_len, password_len;

	uint8_t *decoded;		/* the current response, decoded */
	size_t decoded_size;
	size_t response_max;		/* longest valid response, decoded */
	char challenge_b64[64];
	size_t block_size;		/* of the whole allocation */
	char fields[];			/* authzid, authcid, password, then decoded */
};

/* Copies data[0..len) into the exchange as field f (not NONE) after
 * checking it (see sasl.h: lengths, NUL, control characters, and UTF-8
 * as RFC 3629 section 4 defines it, by mail_utf8_valid(), if utf8). Returns 0, or -1 with *error_r set to a static message. */
int sasl_take_field(struct sasl_exchange *ex, enum sasl_field f, const uint8_t *data,
		    size_t len, bool utf8, const char **error_r);

/* Results. challenge: static bytes, at most 45 of them. */
enum sasl_status sasl_challenge(struct sasl_exchange *ex, const char *challenge, size_t len,
				struct sasl_result *res_r);
enum sasl_status sasl_done(struct sasl_exchange *ex, struct sasl_result *res_r);
enum sasl_status sasl_malformed(struct sasl_exchange *ex, enum sasl_field f, const char *text,
				struct sasl_result *res_r);

#endif
