/* SASL server exchanges (RFC 4422), shared by the IMAP, POP3 and SMTP
 * engines; private to frontend/.
 *
 * Sans-IO: the layer never reads or writes anything. The engine hands it the
 * AUTH/AUTHENTICATE command's mechanism name and initial response, then each
 * client response line (without CRLF), and gets back one result per call:
 *
 *   SASL_CHALLENGE  send the challenge (challenge_b64, "" for an empty one)
 *                   in the protocol's continuation ("+ " / "334 "), then
 *                   read one response line and pass it to sasl_step();
 *   SASL_DONE       the client's credentials; verify them;
 *   SASL_ERROR      the exchange is over; error says why.
 *
 * The base64 line handling of the three protocols is done here (RFC 4954
 * section 4, RFC 5034 section 4, RFC 3501 section 6.2.2 / RFC 4959): an
 * initial response "=" is an empty response, a response line "*" cancels,
 * everything else is base64 (RFC 4648 section 4, no whitespace). Each
 * mechanism lives in its own file: sasl-plain.c (RFC 4616) and
 * sasl-login.c (the de-facto LOGIN mechanism).
 *
 * What is checked (every engine gets the same answers):
 * - an identity (authcid, or a non-empty authzid) is 1 to max_identity
 *   octets with no NUL, no C0 control character and no DEL (RFC 4013
 *   section 2.3 prohibits them; they would also reach logs);
 * - a password is 1 to max_password octets with no NUL;
 * - PLAIN fields are valid UTF-8 (RFC 3629 section 4, as RFC 4616
 *   section 2's grammar asks); LOGIN has no specification and some clients
 *   send passwords in a legacy charset, so LOGIN takes any other octets;
 * - no response may be longer than the longest valid PLAIN message
 *   (2 * max_identity + max_password + 2 octets decoded): anything longer
 *   is SASL_ERR_TOO_LONG before it is decoded.
 * The engine still bounds the line it reads (its own too-long reply).
 *
 * Memory. An exchange is one heap block holding the decoded response and
 * the credentials; the decoded response is wiped after every step, and the
 * whole block (password included) is wiped with explicit_bzero() when it
 * is freed. The credentials of SASL_DONE point into the exchange: use or
 * copy them before sasl_exchange_free().
 *
 * Using it from the IMAP engine (AUTHENTICATE, RFC 3501 section 6.2.2 and
 * RFC 9051 section 6.2.2, with SASL-IR, RFC 4959):
 * - CAPABILITY: "SASL-IR" and, for each mechanism in sasl_mechanisms[],
 *   "AUTH=<name>" (sasl_mech_list(buf, size, "AUTH=", plaintext_ok)). Under
 *   plaintext without a trusted listener (plaintext_ok false) the
 *   plaintext mechanisms are left out (and, for the LOGIN command,
 *   LOGINDISABLED is announced, RFC 3501 section 6.2.3); refuse
 *   AUTHENTICATE with one of them (sasl_mech_find() then
 *   sasl_mech_plaintext()) by "tag NO [PRIVACYREQUIRED]" (RFC 5530)
 *   without starting an exchange.
 * - "tag AUTHENTICATE mech [SP initial-response]": the mechanism is an atom;
 *   the initial response, when present, is passed as is (the layer turns
 *   "=" into an empty response). Call sasl_start(set, mech, mech_len,
 *   ir or NULL, ir_len, &ex, &res). Bound the command line so that an
 *   initial response with 255-octet fields fits (the base64 of 767 octets
 *   is 1024 characters, plus the tag and "AUTHENTICATE PLAIN "; SMTP
 *   allows 12288 octets, RFC 4954 section 4).
 * - SASL_CHALLENGE: send "+ " challenge_b64 CRLF (RFC 3501 section 7.5,
 *   continue-req = "+" SP base64 CRLF), then read the next line raw: it is
 *   a base64 response, not a command (no tag, no literals, no atom rules:
 *   the engine takes it from its input itself, not through the command
 *   parser), bounded like the command line, wiped from the input buffer
 *   after use; strip CRLF and call sasl_step(&ex, line,
 *   len, &res). A line that is too long: sasl_exchange_free(&ex) and
 *   "tag BAD" (the exchange is over).
 * - SASL_ERROR: SASL_ERR_CANCELLED -> "tag BAD Authentication cancelled"
 *   (RFC 3501: "If the client cancels ... the server MUST reject the
 *   AUTHENTICATE command by sending a tagged BAD response");
 *   SASL_ERR_BAD_BASE64 / SASL_ERR_TOO_LONG -> "tag BAD";
 *   SASL_ERR_MALFORMED -> "tag NO [AUTHENTICATIONFAILED]" (RFC 5530);
 *   SASL_ERR_UNKNOWN_MECH -> "tag NO Unsupported authentication mechanism";
 *   SASL_ERR_NO_MEMORY -> the engine's internal-error path. Counts towards
 *   the bad-command limit as the engine sees fit.
 * - SASL_DONE: take res.creds (a non-empty authzid different from authcid
 *   asks for proxy authorization, which Postern does not do: the verifier
 *   should refuse it), keep the exchange while the verification request is
 *   outstanding or copy the strings, then sasl_exchange_free(&ex). Answer
 *   "tag OK [CAPABILITY ...]" or "tag NO [AUTHENTICATIONFAILED]" /
 *   "NO [UNAVAILABLE]" from the verifier's result.
 * - When the session ends or STARTTLS resets it mid-exchange:
 *   sasl_exchange_free(&ex).
 * - settings: zeroed struct sasl_settings (255-octet fields, markers only
 *   where the RFCs put them).
 */
#ifndef SASL_H
#define SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 4616 section 2: servers must accept fields of up to 255 octets; the
 * default limit of each field. */
#define SASL_DEFAULT_MAX_FIELD 255
/* Largest max_identity / max_password accepted (larger values are cut to
 * this, so that the buffer sizes cannot overflow). */
#define SASL_MAX_FIELD_LIMIT 65535

struct sasl_settings {
	size_t max_identity;	/* authzid, authcid; 0: SASL_DEFAULT_MAX_FIELD */
	size_t max_password;	/* 0: SASL_DEFAULT_MAX_FIELD */
	/* Also take "*" as a cancel in the initial response and "=" as an
	 * empty response after a challenge. The RFCs define each in one
	 * place only; the SMTP engine has always accepted both. */
	bool markers_anywhere;
};

/* A mechanism; the objects live in sasl-<name>.c. */
struct sasl_mech;
extern const struct sasl_mech sasl_mech_plain;
extern const struct sasl_mech sasl_mech_login;
/* Every mechanism, in the order to advertise them, NULL-terminated. */
extern const struct sasl_mech *const sasl_mechanisms[];

/* The mechanism's name, upper case, as advertised ("PLAIN"). */
const char *sasl_mech_name(const struct sasl_mech *mech);
/* True if the mechanism sends the password in the clear (PLAIN, LOGIN):
 * offer and accept it only under TLS or on a trusted listener. */
bool sasl_mech_plaintext(const struct sasl_mech *mech);
/* The mechanism called name[0..len) (case-insensitive, RFC 4422 section
 * 3.1: mechanism names are upper case, but clients send "plain"), or NULL. */
const struct sasl_mech *sasl_mech_find(const char *name, size_t len);
/* Writes the names of sasl_mechanisms[] into buf as a NUL-terminated,
 * space-separated list, each name preceded by prefix ("" -> "PLAIN LOGIN",
 * "AUTH=" -> "AUTH=PLAIN AUTH=LOGIN"), leaving out the plaintext ones
 * unless plaintext_ok. Returns the length (0: none to offer), or -1 (buf
 * holds "") if size is too small. */
int sasl_mech_list(char *buf, size_t size, const char *prefix, bool plaintext_ok);

enum sasl_status {
	SASL_CHALLENGE,
	SASL_DONE,
	SASL_ERROR,
};

enum sasl_error {
	SASL_ERR_NONE,
	SASL_ERR_UNKNOWN_MECH,	/* sasl_start() only */
	SASL_ERR_BAD_BASE64,	/* not base64 (or "=" / "*" where not allowed) */
	SASL_ERR_MALFORMED,	/* decoded, but not a valid message (see field) */
	SASL_ERR_CANCELLED,	/* the client sent "*" */
	SASL_ERR_TOO_LONG,	/* longer than any valid response */
	SASL_ERR_NO_MEMORY,	/* sasl_start() could not allocate */
};

/* With SASL_ERR_MALFORMED: the field at fault. NONE: the message itself
 * (PLAIN without its two NULs). LOGIN's first response is the authcid,
 * its second the password. */
enum sasl_field {
	SASL_FIELD_NONE,
	SASL_FIELD_AUTHZID,
	SASL_FIELD_AUTHCID,
	SASL_FIELD_PASSWORD,
};

/* NUL-terminated, no NUL inside; lengths without the NUL. authzid is ""
 * when the client sent none (always with LOGIN). */
struct sasl_credentials {
	const char *authzid;
	size_t authzid_len;
	const char *authcid;
	size_t authcid_len;
	const char *password;
	size_t password_len;
};

struct sasl_result {
	enum sasl_status status;
	/* The exchange's mechanism; NULL only with SASL_ERR_UNKNOWN_MECH. */
	const struct sasl_mech *mech;

	/* SASL_CHALLENGE: the challenge (static bytes) and its base64 text
	 * (valid until the next call on the exchange). */
	const uint8_t *challenge;
	size_t challenge_len;
	const char *challenge_b64;

	/* SASL_DONE: valid until sasl_exchange_free(). */
	struct sasl_credentials creds;

	/* SASL_ERROR */
	enum sasl_error error;
	enum sasl_field field;
	const char *error_text;	/* static, for logs; never holds client data */
};

struct sasl_exchange;

/* Starts an exchange of the mechanism called mech[0..mech_len).
 * initial: the initial response as sent (not NUL-terminated), or NULL when
 * the command carried none. Fills *res_r and returns res_r->status:
 * - SASL_CHALLENGE: *ex_r is the exchange; send the challenge and feed the
 *   client's response to sasl_step();
 * - SASL_DONE: *ex_r is the exchange that holds res_r->creds;
 * - SASL_ERROR: *ex_r is NULL (nothing is left allocated).
 * set may be NULL (all defaults); it is copied. */
enum sasl_status sasl_start(const struct sasl_settings *set, const char *mech, size_t mech_len,
			    const char *initial, size_t initial_len,
			    struct sasl_exchange **ex_r, struct sasl_result *res_r);

/* Takes one client response line (without CRLF) after SASL_CHALLENGE.
 * Returns and fills as sasl_start(); on SASL_ERROR the exchange has been
 * freed and *exp is NULL. Must only be called after SASL_CHALLENGE. */
enum sasl_status sasl_step(struct sasl_exchange **exp, const char *line, size_t len,
			   struct sasl_result *res_r);

/* Wipes and frees the exchange (after SASL_DONE, or to abort one waiting
 * for a response) and sets *exp to NULL. NULL and *exp == NULL are fine. */
void sasl_exchange_free(struct sasl_exchange **exp);

#endif
