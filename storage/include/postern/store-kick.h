/* Kick requests: "end these sessions, with the protocol's goodbye".
 *
 * posternctl kick PUBLISHes one message on the channel "{nodes}:kick"
 * (STORE_NODES_KICK_CHANNEL); every frontend subscribes to it and ends the
 * matching sessions it holds. The message is one line of space-separated
 * key=value tokens (docs/redis-keys.md, "Kick requests"):
 *
 *     v=1 account=42 proto=imap session=fe1/17
 *
 *   v        format version, 1; required, first
 *   account  accounts.id, decimal without leading zeros; required
 *   proto    imap, pop3 or smtp (smtp covers submission sessions); optional,
 *            absent: every protocol
 *   session  a session registry field "<node>/<session id>"; optional,
 *            absent: every session of the account
 * Unknown keys are skipped, so a later version may add some; a known key
 * given twice, an unknown proto or a malformed value is an error. A message
 * is at most STORE_KICK_MAX bytes.
 *
 * Pure functions, no I/O: the sender is posternctl (store-who.h), the
 * receivers the frontends' subscriptions.
 */
#ifndef POSTERN_STORE_KICK_H
#define POSTERN_STORE_KICK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_KICK_MAX 512
#define STORE_KICK_SESSION_MAX 255

enum store_kick_proto {
	STORE_KICK_ANY = 0,
	STORE_KICK_IMAP,
	STORE_KICK_POP3,
	STORE_KICK_SMTP,
};

struct store_kick {
	uint64_t account_id;
	enum store_kick_proto proto;
	char session[STORE_KICK_SESSION_MAX + 1]; /* "" = all the account's */
};

/* "imap", "pop3", "smtp" (NULL for STORE_KICK_ANY or an unknown value). */
const char *store_kick_proto_name(enum store_kick_proto proto);
/* The reverse, for names of len bytes. Returns 0, or -1 for another name. */
int store_kick_proto_parse(const char *name, size_t len, enum store_kick_proto *proto_r);

/* Formats the message into buf (NUL-terminated). Returns its length, or -1
 * with *error_r (bad session field or proto, buf too small). */
int store_kick_format(const struct store_kick *kick, char *buf, size_t size,
		      const char **error_r);

/* Parses a message of len bytes (not NUL-terminated). Returns 0 with
 * *kick_r filled, or -1 with *error_r (a static string). */
int store_kick_parse(const char *msg, size_t len, struct store_kick *kick_r,
		     const char **error_r);

/* True if a session of account_id, with the session registry's proto name
 * ("imap", "pop3", "submission", "smtp", "lmtp") and registry field
 * "<node>/<session id>", is one the request asks to end. */
bool store_kick_matches(const struct store_kick *kick, uint64_t account_id,
			const char *proto, const char *field);

#endif
