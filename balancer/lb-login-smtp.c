/* L7 SMTP submission: the balancer's dialogue up to AUTH (RFC 5321
 * sections 4.1.1 and 4.2: EHLO, HELO, NOOP, RSET, HELP, QUIT; RFC 3207
 * STARTTLS; RFC 4954 AUTH PLAIN and AUTH LOGIN, with or without an
 * initial response) and the replay to the frontend: its greeting, EHLO
 * with the client's name, AUTH PLAIN, and the frontend's answer passed on.
 * Mail commands before AUTH get 530; unknown ones 500, counting towards
 * the error limit.
 */
#include "lb-login-int.h"

#include <stdio.h>
#include <string.h>

void lb_login_smtp_greeting(struct lb_login *l)
{
	lb_login_say(l, "220 %s ESMTP Postern\r\n", l->hostname);
}

static void bad(struct lb_login *l, const char *reply)
{
	lb_login_say(l, "%s\r\n", reply);
	if (lb_login_bad(l)) {
		lb_login_say(l, "421 4.7.0 %s Too many errors, closing connection\r\n",
			     l->hostname);
		l->pending = LB_LOGIN_CLOSE;
	}
}

static void ehlo_reply(struct lb_login *l)
{
	lb_login_say(l, "250-%s\r\n250-PIPELINING\r\n", l->hostname);
	if (l->set.smtp_size != 0)
		lb_login_say(l, "250-SIZE %llu\r\n", (unsigned long long)l->set.smtp_size);
	lb_login_say(l, "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n"
		     "250-CHUNKING\r\n250-DSN\r\n");
	if (!l->tls && l->set.starttls)
		lb_login_say(l, "250-STARTTLS\r\n");
	if (l->tls || !l->set.require_tls)
		lb_login_say(l, "250-AUTH PLAIN LOGIN\r\n");
	lb_login_say(l, "250 HELP\r\n");
}

/* The line continuing AUTH: base64 or "*" (RFC 4954 section 4). */
static enum step_result auth_continuation(struct lb_login *l, const uint8_t *p, size_t len)
{
	if (len == 1 && p[0] == '*') {
		l->state = LS_COMMAND;
		bad(l, "501 5.7.0 Authentication cancelled");
		return STEP_OUTPUT;
	}
	switch (l->state) {
	case LS_AUTH_PLAIN:
		l->state = LS_COMMAND;
		if (lb_sasl_plain_decode((const char *)p, len, &l->cred) < 0)
			bad(l, "501 5.5.2 Cannot decode response");
		else
			l->pending = LB_LOGIN_AUTH;
		break;
	case LS_AUTH_LOGIN_USER:
		if (lb_b64_field((const char *)p, len, l->cred.user) < 0) {
			l->state = LS_COMMAND;
			bad(l, "501 5.5.2 Cannot decode response");
		} else {
			l->state = LS_AUTH_LOGIN_PASS;
			lb_login_say(l, "334 UGFzc3dvcmQ6\r\n"); /* "Password:" */
		}
		break;
	case LS_AUTH_LOGIN_PASS:
		l->state = LS_COMMAND;
		if (lb_b64_field((const char *)p, len, l->cred.pass) < 0) {
			bad(l, "501 5.5.2 Cannot decode response");
		} else {
			l->cred.mech = LB_MECH_LOGIN;
			l->cred.authzid[0] = '\0';
			l->pending = LB_LOGIN_AUTH;
		}
		break;
	case LS_COMMAND:
		break;
	}
	return STEP_OUTPUT;
}

static void auth(struct lb_login *l, const uint8_t *arg, size_t alen)
{
	size_t mlen = 0;
	const uint8_t *ir;
	size_t irlen;

	while (mlen < alen && arg[mlen] != ' ')
		mlen++;
	ir = mlen < alen ? arg + mlen + 1 : NULL;
	irlen = mlen < alen ? alen - mlen - 1 : 0;
	if (!l->ehlo) {
		bad(l, "503 5.5.1 Send EHLO first");
		return;
	}
	if (!l->tls && l->set.require_tls) {
		lb_login_say(l, "530 5.7.0 Must issue a STARTTLS command first\r\n");
		return;
	}
	if (lb_word_eq(arg, mlen, "PLAIN")) {
		if (ir == NULL) {
			lb_login_say(l, "334 \r\n");
			l->state = LS_AUTH_PLAIN;
		} else if (lb_sasl_plain_decode((const char *)ir, irlen, &l->cred) < 0) {
			/* "=" (an empty response) fails here too: PLAIN
			 * needs a user and a password. */
			bad(l, "501 5.5.2 Cannot decode response");
		} else {
			l->pending = LB_LOGIN_AUTH;
		}
	} else if (lb_word_eq(arg, mlen, "LOGIN")) {
		if (ir == NULL) {
			lb_login_say(l, "334 VXNlcm5hbWU6\r\n"); /* "Username:" */
			l->state = LS_AUTH_LOGIN_USER;
		} else if (lb_b64_field((const char *)ir, irlen, l->cred.user) < 0) {
			bad(l, "501 5.5.2 Cannot decode response");
		} else {
			lb_login_say(l, "334 UGFzc3dvcmQ6\r\n");
			l->state = LS_AUTH_LOGIN_PASS;
		}
	} else {
		bad(l, "504 5.5.4 Unrecognized authentication type");
	}
}

enum step_result lb_login_smtp_step(struct lb_login *l)
{
	size_t len, full, vlen = 0;
	const uint8_t *p, *arg;
	size_t alen;
	int r = lb_login_line(l, &len, &full);
	enum step_result res = STEP_OUTPUT;

	if (r == 0)
		return STEP_NEED;
	if (r < 0) {
		lb_login_say(l, "500 5.5.6 Line too long\r\n");
		l->pending = LB_LOGIN_CLOSE;
		return STEP_OUTPUT;
	}
	p = pn_buf_rptr(&l->in);
	if (l->state != LS_COMMAND) {
		res = auth_continuation(l, p, len);
		pn_buf_consume(&l->in, full);
		return res;
	}
	while (vlen < len && p[vlen] != ' ')
		vlen++;
	arg = vlen < len ? p + vlen + 1 : p + len;
	alen = vlen < len ? len - vlen - 1 : 0;

	if (lb_word_eq(p, vlen, "EHLO") || lb_word_eq(p, vlen, "HELO")) {
		size_t nlen = 0;

		while (nlen < alen && arg[nlen] > 0x20 && arg[nlen] < 0x7f)
			nlen++;
		if (nlen == 0 || nlen > LB_LOGIN_MAX_CRED) {
			bad(l, "501 5.5.4 Syntax: EHLO hostname");
		} else {
			memcpy(l->cred.helo, arg, nlen);
			l->cred.helo[nlen] = '\0';
			if ((p[0] | 0x20) == 'e') {
				l->ehlo = true;
				ehlo_reply(l);
			} else {
				/* HELO: no extensions, so no AUTH either. */
				l->ehlo = false;
				lb_login_say(l, "250 %s\r\n", l->hostname);
			}
		}
	} else if (lb_word_eq(p, vlen, "AUTH")) {
		auth(l, arg, alen);
	} else if (lb_word_eq(p, vlen, "STARTTLS")) {
		if (alen != 0)
			bad(l, "501 5.5.4 Syntax: STARTTLS");
		else if (l->tls || !l->set.starttls)
			bad(l, l->tls ? "503 5.5.1 TLS is active already" :
				 "502 5.5.1 STARTTLS is not available");
		else {
			lb_login_say(l, "220 2.0.0 Ready to start TLS\r\n");
			l->pending = LB_LOGIN_STARTTLS;
		}
	} else if (lb_word_eq(p, vlen, "NOOP") || lb_word_eq(p, vlen, "RSET")) {
		lb_login_say(l, "250 2.0.0 OK\r\n");
	} else if (lb_word_eq(p, vlen, "HELP")) {
		lb_login_say(l, "214 2.0.0 See RFC 5321\r\n");
	} else if (lb_word_eq(p, vlen, "QUIT")) {
		lb_login_say(l, "221 2.0.0 %s closing connection\r\n", l->hostname);
		l->pending = LB_LOGIN_CLOSE;
	} else if (lb_word_eq(p, vlen, "MAIL") || lb_word_eq(p, vlen, "RCPT") ||
		   lb_word_eq(p, vlen, "DATA") || lb_word_eq(p, vlen, "BDAT") ||
		   lb_word_eq(p, vlen, "VRFY") || lb_word_eq(p, vlen, "EXPN")) {
		bad(l, "530 5.7.0 Authentication required");
	} else {
		bad(l, "500 5.5.2 Command not recognized");
	}
	pn_buf_consume(&l->in, full);
	return res;
}

/* ---- replay ---- */

/* The reply whose lines are at the front of r->in: its total length (all
 * lines) when its last line ("NNN " or "NNN" alone) is in, and its code.
 * Returns 1, 0 need more, -1 malformed or too long. */
static int smtp_reply(const struct lb_replay *r, size_t *len_r, int *code_r)
{
	const uint8_t *p = pn_buf_rptr(&r->in);
	size_t avail = pn_buf_len(&r->in), off = 0;

	for (;;) {
		const uint8_t *lf = off < avail ? memchr(p + off, '\n', avail - off) : NULL;
		size_t ll;

		if (lf == NULL)
			return avail - off > LB_REPLAY_MAX_LINE || off > LB_REPLAY_MAX_LINE ? -1 : 0;
		ll = (size_t)(lf - (p + off)) + 1;
		if (ll < 4 || p[off] < '2' || p[off] > '5' || p[off + 1] < '0' || p[off + 1] > '9' ||
		    p[off + 2] < '0' || p[off + 2] > '9')
			return -1;
		if (off > 0 && memcmp(p, p + off, 3) != 0)
			return -1; /* every line of a reply has the same code */
		*code_r = (p[off] - '0') * 100 + (p[off + 1] - '0') * 10 + (p[off + 2] - '0');
		off += ll;
		if (off > LB_REPLAY_MAX_LINE)
			return -1;
		if (p[off - ll + 3] != '-') {
			*len_r = off;
			return 1;
		}
	}
}

static int send_text(struct lb_replay *r, struct lb_replay_event *ev, const char *prefix,
		     const char *arg, bool plain)
{
	int res;

	pn_buf_reset(&r->out);
	res = pn_buf_append_str(&r->out, prefix);
	if (arg != NULL)
		res |= pn_buf_append_str(&r->out, arg);
	if (plain)
		res |= lb_sasl_plain_encode(&r->cred, &r->out);
	res |= pn_buf_append(&r->out, "\r\n", 2);
	if (res != 0)
		return lb_replay_fail(r, ev, "login too long");
	ev->type = LB_REPLAY_SEND;
	ev->data = pn_buf_rptr(&r->out);
	ev->len = pn_buf_len(&r->out);
	ev->reason = NULL;
	return 1;
}

int lb_replay_smtp_step(struct lb_replay *r, struct lb_replay_event *ev)
{
	size_t len;
	int code, k = smtp_reply(r, &len, &code);

	if (k == 0)
		return 0;
	if (k < 0)
		return lb_replay_fail(r, ev, "not an SMTP reply");
	switch (r->state) {
	case RS_GREETING:
		if (code != 220)
			return lb_replay_fail(r, ev, "greeting is not 220");
		pn_buf_consume(&r->in, len);
		r->state = RS_EHLO;
		return send_text(r, ev, "EHLO ", r->cred.helo[0] != '\0' ? r->cred.helo : "client",
				 false);
	case RS_EHLO:
		if (code != 250)
			return lb_replay_fail(r, ev, "EHLO refused");
		pn_buf_consume(&r->in, len);
		r->state = RS_ANSWER;
		return send_text(r, ev, "AUTH PLAIN ", NULL, true);
	case RS_ANSWER:
		if (code == 334) {
			pn_buf_consume(&r->in, len);
			if (r->cont_sent)
				return lb_replay_fail(r, ev, "unexpected continuation");
			r->cont_sent = true;
			return send_text(r, ev, "", NULL, true);
		}
		r->state = RS_DONE;
		r->pending = LB_REPLAY_DONE;
		r->login_ok = code == 235;
		k = lb_replay_emit(r, ev, LB_REPLAY_FORWARD, pn_buf_rptr(&r->in), len);
		pn_buf_consume(&r->in, len);
		return k;
	default:
		return 0;
	}
}
