/* L7 POP3: the balancer's AUTHORIZATION state (RFC 1939 section 4 and 7:
 * USER, PASS, QUIT; RFC 2449 CAPA; RFC 2595 STLS; RFC 5034 AUTH PLAIN with
 * an initial response or a continuation) and the replay of the captured
 * login to the frontend (USER then PASS, or AUTH PLAIN). Other commands
 * are refused with -ERR, counting towards the error limit.
 */
#include "lb-login-int.h"

#include <string.h>

void lb_login_pop3_greeting(struct lb_login *l)
{
	lb_login_say(l, "+OK %s Postern ready.\r\n", l->hostname);
}

static bool login_allowed(struct lb_login *l)
{
	if (l->tls || !l->set.require_tls)
		return true;
	/* RFC 3206 section 4: AUTH, the authentication failed for a reason
	 * the user can act on. */
	lb_login_say(l, "-ERR [AUTH] Plaintext authentication is disabled, use STLS.\r\n");
	return false;
}

/* A USER or PASS argument: 1..LB_LOGIN_MAX_CRED bytes, no NUL, and no
 * bare CR (which would end up inside the replayed line). */
static bool arg_ok(const uint8_t *arg, size_t alen)
{
	return alen > 0 && alen <= LB_LOGIN_MAX_CRED && memchr(arg, '\0', alen) == NULL &&
	       memchr(arg, '\r', alen) == NULL;
}

static void bad(struct lb_login *l, const char *text)
{
	lb_login_say(l, "-ERR %s\r\n", text);
	if (lb_login_bad(l)) {
		lb_login_say(l, "-ERR Too many invalid commands.\r\n");
		l->pending = LB_LOGIN_CLOSE;
	}
}

enum step_result lb_login_pop3_step(struct lb_login *l)
{
	size_t len, full, vlen = 0;
	const uint8_t *p;
	const uint8_t *arg;
	size_t alen;
	int r = lb_login_line(l, &len, &full);

	if (r == 0)
		return STEP_NEED;
	if (r < 0) {
		lb_login_say(l, "-ERR Line too long.\r\n");
		l->pending = LB_LOGIN_CLOSE;
		return STEP_OUTPUT;
	}
	p = pn_buf_rptr(&l->in);
	if (l->state == LS_AUTH_PLAIN) {
		/* RFC 5034 section 4: base64, or "*" to cancel. */
		l->state = LS_COMMAND;
		if (len == 1 && p[0] == '*')
			bad(l, "Authentication cancelled.");
		else if (lb_sasl_plain_decode((const char *)p, len, &l->cred) < 0)
			bad(l, "Invalid SASL PLAIN response.");
		else
			l->pending = LB_LOGIN_AUTH;
		pn_buf_consume(&l->in, full);
		return STEP_OUTPUT;
	}
	/* command = keyword [SP argument]; keywords are case-insensitive. */
	while (vlen < len && p[vlen] != ' ')
		vlen++;
	arg = vlen < len ? p + vlen + 1 : p + len;
	alen = vlen < len ? len - vlen - 1 : 0;

	if (lb_word_eq(p, vlen, "USER")) {
		if (login_allowed(l)) {
			if (!arg_ok(arg, alen)) {
				bad(l, "Invalid user name.");
			} else {
				memcpy(l->cred.user, arg, alen);
				l->cred.user[alen] = '\0';
				l->have_user = true;
				lb_login_say(l, "+OK\r\n");
			}
		}
	} else if (lb_word_eq(p, vlen, "PASS")) {
		if (!login_allowed(l)) {
		} else if (!l->have_user) {
			bad(l, "Send USER first.");
		} else if (!arg_ok(arg, alen)) {
			bad(l, "Invalid password.");
		} else {
			/* RFC 1939 section 7: the password may hold spaces. */
			memcpy(l->cred.pass, arg, alen);
			l->cred.pass[alen] = '\0';
			l->cred.mech = LB_MECH_LOGIN;
			l->cred.authzid[0] = '\0';
			l->pending = LB_LOGIN_AUTH;
		}
	} else if (lb_word_eq(p, vlen, "AUTH")) {
		size_t mlen = 0;

		while (mlen < alen && arg[mlen] != ' ')
			mlen++;
		if (alen == 0) {
			/* RFC 5034 section 4: AUTH alone lists mechanisms. */
			lb_login_say(l, "+OK\r\nPLAIN\r\n.\r\n");
		} else if (!login_allowed(l)) {
		} else if (!lb_word_eq(arg, mlen, "PLAIN")) {
			lb_login_say(l, "-ERR Unsupported authentication mechanism.\r\n");
		} else if (mlen == alen) {
			lb_login_say(l, "+ \r\n");
			l->state = LS_AUTH_PLAIN;
		} else if (lb_sasl_plain_decode((const char *)arg + mlen + 1, alen - mlen - 1,
						&l->cred) < 0) {
			bad(l, "Invalid SASL PLAIN response.");
		} else {
			l->pending = LB_LOGIN_AUTH;
		}
	} else if (lb_word_eq(p, vlen, "CAPA")) {
		lb_login_say(l, "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
			     "PIPELINING\r\n");
		if (l->tls || !l->set.require_tls)
			lb_login_say(l, "USER\r\nSASL PLAIN\r\n");
		if (!l->tls && l->set.starttls)
			lb_login_say(l, "STLS\r\n");
		lb_login_say(l, ".\r\n");
	} else if (lb_word_eq(p, vlen, "STLS")) {
		if (l->tls || !l->set.starttls) {
			bad(l, l->tls ? "TLS is active already." : "STLS is not available.");
		} else {
			lb_login_say(l, "+OK Begin TLS negotiation.\r\n");
			l->pending = LB_LOGIN_STARTTLS;
		}
	} else if (lb_word_eq(p, vlen, "QUIT")) {
		lb_login_say(l, "+OK Bye.\r\n");
		l->pending = LB_LOGIN_CLOSE;
	} else {
		bad(l, "Command is not valid before login.");
	}
	pn_buf_consume(&l->in, full);
	return STEP_OUTPUT;
}

/* ---- replay ---- */

static bool starts(const uint8_t *p, size_t len, const char *prefix)
{
	size_t pl = strlen(prefix);

	return len >= pl && memcmp(p, prefix, pl) == 0;
}

static int send_line(struct lb_replay *r, struct lb_replay_event *ev, const char *verb,
		     const char *arg, bool plain)
{
	int res;

	pn_buf_reset(&r->out);
	res = pn_buf_append_str(&r->out, verb);
	if (plain)
		res |= lb_sasl_plain_encode(&r->cred, &r->out);
	else if (arg != NULL)
		res |= pn_buf_append_str(&r->out, arg);
	res |= pn_buf_append(&r->out, "\r\n", 2);
	if (res != 0)
		return lb_replay_fail(r, ev, "login too long");
	ev->type = LB_REPLAY_SEND;
	ev->data = pn_buf_rptr(&r->out);
	ev->len = pn_buf_len(&r->out);
	ev->reason = NULL;
	return 1;
}

int lb_replay_pop3_step(struct lb_replay *r, struct lb_replay_event *ev)
{
	size_t full;
	const uint8_t *p;
	int k = lb_replay_line(r, &full);

	if (k == 0)
		return 0;
	if (k < 0)
		return lb_replay_fail(r, ev, "line too long");
	p = pn_buf_rptr(&r->in);
	switch (r->state) {
	case RS_GREETING:
		if (!starts(p, full, "+OK"))
			return lb_replay_fail(r, ev, "no POP3 greeting");
		pn_buf_consume(&r->in, full);
		if (r->cred.mech == LB_MECH_PLAIN) {
			r->state = RS_ANSWER;
			return send_line(r, ev, "AUTH PLAIN ", NULL, true);
		}
		r->state = RS_USER;
		return send_line(r, ev, "USER ", r->cred.user, false);
	case RS_USER:
		if (starts(p, full, "+OK")) {
			pn_buf_consume(&r->in, full);
			r->state = RS_ANSWER;
			return send_line(r, ev, "PASS ", r->cred.pass, false);
		}
		/* USER refused: that is the answer the client's PASS gets. */
		break;
	case RS_ANSWER:
		/* RFC 5034 section 4: a continuation is "+" and a challenge,
		 * never "+OK". */
		if (starts(p, full, "+") && !starts(p, full, "+OK")) {
			pn_buf_consume(&r->in, full);
			if (r->cred.mech != LB_MECH_PLAIN || r->cont_sent)
				return lb_replay_fail(r, ev, "unexpected continuation");
			r->cont_sent = true;
			return send_line(r, ev, "", NULL, true);
		}
		break;
	default:
		return 0;
	}
	if (!starts(p, full, "+OK") && !starts(p, full, "-ERR"))
		return lb_replay_fail(r, ev, "not a POP3 answer");
	r->state = RS_DONE;
	r->pending = LB_REPLAY_DONE;
	r->login_ok = starts(p, full, "+OK");
	k = lb_replay_emit(r, ev, LB_REPLAY_FORWARD, p, full);
	pn_buf_consume(&r->in, full);
	return k;
}
