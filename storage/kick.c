/* The kick request message (see postern/store-kick.h and
 * docs/redis-keys.md): its text format, parser and the session match the
 * frontends apply. */
#include "postern/store-kick.h"
#include "postern/store-nodes.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const proto_names[] = {
	[STORE_KICK_IMAP] = "imap",
	[STORE_KICK_POP3] = "pop3",
	[STORE_KICK_SMTP] = "smtp",
};

const char *store_kick_proto_name(enum store_kick_proto proto)
{
	if (proto <= STORE_KICK_ANY || proto > STORE_KICK_SMTP)
		return NULL;
	return proto_names[proto];
}

int store_kick_proto_parse(const char *name, size_t len, enum store_kick_proto *proto_r)
{
	for (int p = STORE_KICK_IMAP; p <= STORE_KICK_SMTP; p++) {
		if (len == strlen(proto_names[p]) && memcmp(name, proto_names[p], len) == 0) {
			*proto_r = (enum store_kick_proto)p;
			return 0;
		}
	}
	return -1;
}

/* A session field: a node name, '/', then 1 or more printable ASCII bytes
 * without spaces; STORE_KICK_SESSION_MAX bytes at most. */
static bool session_ok(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);
	char node[STORE_NODE_NAME_MAX + 1];
	size_t nlen;

	if (len > STORE_KICK_SESSION_MAX || slash == NULL || slash + 1 == s + len)
		return false;
	nlen = (size_t)(slash - s);
	if (nlen == 0 || nlen > STORE_NODE_NAME_MAX)
		return false;
	memcpy(node, s, nlen);
	node[nlen] = '\0';
	if (!store_node_name_ok(node))
		return false;
	for (const char *p = slash + 1; p < s + len; p++) {
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	}
	return true;
}

int store_kick_format(const struct store_kick *kick, char *buf, size_t size,
		      const char **error_r)
{
	const char *proto = store_kick_proto_name(kick->proto);
	size_t slen = strnlen(kick->session, sizeof(kick->session));
	int n;

	if (kick->proto != STORE_KICK_ANY && proto == NULL) {
		*error_r = "kick: unknown protocol";
		return -1;
	}
	if (slen == sizeof(kick->session) || (slen > 0 && !session_ok(kick->session, slen))) {
		*error_r = "kick: malformed session (expected <node>/<session id>)";
		return -1;
	}
	n = snprintf(buf, size, "v=1 account=%" PRIu64 "%s%s%s%s", kick->account_id,
		     proto != NULL ? " proto=" : "", proto != NULL ? proto : "",
		     slen > 0 ? " session=" : "", kick->session);
	if (n < 0 || (size_t)n >= size || n > STORE_KICK_MAX) {
		*error_r = "kick: message too long";
		return -1;
	}
	return n;
}

/* Decimal without leading zeros, within uint64_t. */
static int parse_id(const char *v, size_t len, uint64_t *id_r)
{
	uint64_t x = 0;

	if (len == 0 || len > 20 || (v[0] == '0' && len > 1))
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (v[i] < '0' || v[i] > '9')
			return -1;
		d = (unsigned)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*id_r = x;
	return 0;
}

static int parse_error(const char **error_r, const char *msg)
{
	*error_r = msg;
	return -1;
}

int store_kick_parse(const char *msg, size_t len, struct store_kick *kick_r,
		     const char **error_r)
{
	const char *p = msg, *end = msg + len;
	bool first = true, have_account = false, have_proto = false, have_session = false;

	if (len > STORE_KICK_MAX)
		return parse_error(error_r, "kick: message too long");
	memset(kick_r, 0, sizeof(*kick_r));
	while (p < end) {
		const char *tok_end, *eq, *v;
		size_t klen, vlen;

		if (*p == ' ') {
			p++;
			continue;
		}
		tok_end = memchr(p, ' ', (size_t)(end - p));
		if (tok_end == NULL)
			tok_end = end;
		eq = memchr(p, '=', (size_t)(tok_end - p));
		if (eq == NULL || eq == p)
			return parse_error(error_r, "kick: token is not key=value");
		klen = (size_t)(eq - p);
		v = eq + 1;
		vlen = (size_t)(tok_end - v);
		for (const char *c = p; c < tok_end; c++) {
			if (*c < 0x20 || *c >= 0x7f)
				return parse_error(error_r, "kick: control or non-ASCII byte");
		}
		if (first) {
			if (klen != 1 || p[0] != 'v')
				return parse_error(error_r, "kick: does not start with v=");
			if (vlen != 1 || v[0] != '1')
				return parse_error(error_r, "kick: unknown version");
			first = false;
		} else if (klen == 1 && p[0] == 'v') {
			return parse_error(error_r, "kick: v given twice");
		} else if (klen == 7 && memcmp(p, "account", 7) == 0) {
			if (have_account)
				return parse_error(error_r, "kick: account given twice");
			if (parse_id(v, vlen, &kick_r->account_id) < 0)
				return parse_error(error_r, "kick: malformed account id");
			have_account = true;
		} else if (klen == 5 && memcmp(p, "proto", 5) == 0) {
			if (have_proto)
				return parse_error(error_r, "kick: proto given twice");
			if (store_kick_proto_parse(v, vlen, &kick_r->proto) < 0)
				return parse_error(error_r, "kick: unknown proto");
			have_proto = true;
		} else if (klen == 7 && memcmp(p, "session", 7) == 0) {
			if (have_session)
				return parse_error(error_r, "kick: session given twice");
			if (!session_ok(v, vlen))
				return parse_error(error_r, "kick: malformed session");
			memcpy(kick_r->session, v, vlen);
			kick_r->session[vlen] = '\0';
			have_session = true;
		}
		p = tok_end;
	}
	if (first)
		return parse_error(error_r, "kick: empty message");
	if (!have_account)
		return parse_error(error_r, "kick: no account");
	return 0;
}

bool store_kick_matches(const struct store_kick *kick, uint64_t account_id,
			const char *proto, const char *field)
{
	if (account_id != kick->account_id)
		return false;
	if (kick->session[0] != '\0' && (field == NULL || strcmp(field, kick->session) != 0))
		return false;
	switch (kick->proto) {
	case STORE_KICK_ANY:
		return true;
	case STORE_KICK_IMAP:
		return proto != NULL && strcmp(proto, "imap") == 0;
	case STORE_KICK_POP3:
		return proto != NULL && strcmp(proto, "pop3") == 0;
	case STORE_KICK_SMTP:
		return proto != NULL && (strcmp(proto, "smtp") == 0 ||
					 strcmp(proto, "submission") == 0);
	}
	return false;
}
