/* libFuzzer target for the L7 login engines (lb-login*.c). The first byte
 * picks the protocol, TLS state and chunk size; the rest is fed as client
 * input (pumping events after each chunk) and, separately, as frontend
 * input to a replay. Invariants: no event after AUTH or CLOSE, credentials
 * without CR, LF or NUL inside and within bounds, STARTTLS only once.
 */
#include "lb-login.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s)
{
	size_t n = strnlen(s, LB_LOGIN_MAX_CRED + 1);

	if (n > LB_LOGIN_MAX_CRED || memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum lb_family fams[] = { LB_FAMILY_IMAP, LB_FAMILY_POP3, LB_FAMILY_SMTP };
	struct lb_login_settings set;
	struct lb_login *l;
	struct lb_replay *rp;
	struct lb_credentials cred;
	struct lb_login_event ev;
	struct lb_replay_event rev;
	size_t chunk;
	bool ended = false;
	int starttls = 0;

	if (size < 1)
		return 0;
	memset(&set, 0, sizeof(set));
	set.family = fams[data[0] % 3];
	set.tls = (data[0] & 0x04) != 0;
	set.starttls = (data[0] & 0x08) != 0;
	set.require_tls = (data[0] & 0x10) != 0;
	chunk = (size_t)(data[0] >> 5) * 7 + 1;
	data++;
	size--;

	l = lb_login_new(&set);
	if (l == NULL)
		return 0;
	for (size_t off = 0; off <= size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		int k;

		if (n > 0 && lb_login_feed(l, data + off, n) < 0)
			break;
		while ((k = lb_login_next(l, &ev)) == 1) {
			if (ended)
				abort();
			if (ev.type == LB_LOGIN_AUTH) {
				const struct lb_credentials *c = lb_login_credentials(l);

				check_field(c->user);
				check_field(c->pass);
				check_field(c->authzid);
				check_field(c->tag);
				if (c->user[0] == '\0')
					abort();
				ended = true;
			} else if (ev.type == LB_LOGIN_CLOSE) {
				ended = true;
			} else if (ev.type == LB_LOGIN_STARTTLS) {
				if (++starttls > 1 || !set.starttls || set.tls)
					abort();
			} else if (ev.type != LB_LOGIN_REPLY || ev.len == 0) {
				abort();
			}
		}
		if (k != 0)
			abort();
	}
	lb_login_free(&l);

	memset(&cred, 0, sizeof(cred));
	cred.mech = size > 0 && (data[0] & 1) ? LB_MECH_PLAIN : LB_MECH_LOGIN;
	memcpy(cred.user, "user", 5);
	memcpy(cred.pass, "pass", 5);
	memcpy(cred.tag, "t1", 3);
	rp = lb_replay_new(set.family, &cred);
	if (rp == NULL)
		return 0;
	ended = false;
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;

		lb_replay_feed(rp, data + off, n);
		while (lb_replay_next(rp, &rev) == 1) {
			if (ended)
				abort();
			if (rev.type == LB_REPLAY_DONE || rev.type == LB_REPLAY_FAIL)
				ended = true;
		}
	}
	lb_replay_free(&rp);
	return 0;
}
