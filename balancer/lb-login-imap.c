/* L7 IMAP: the balancer's pre-login dialogue (RFC 9051 and RFC 3501
 * section 6.1 and 6.2: CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE
 * PLAIN with SASL-IR (RFC 4959) or a continuation, LOGIN; ID (RFC 2971)
 * answered with NIL) and the replay of the captured login to the frontend.
 *
 * Commands are parsed from the input buffer as a whole each time more
 * bytes arrive (a command is at most a line plus small literals, so this
 * costs little); a synchronizing literal gets its "+" continuation once.
 * Anything else before login is refused with BAD, counting towards the
 * error limit.
 */
#include "lb-login-int.h"

#include <string.h>

/* ---- parsing (RFC 9051 section 9) ---- */

enum tok { TOK_OK = 0, TOK_NEED, TOK_BAD, TOK_CONT, TOK_HUGE };

struct cur {
	const uint8_t *p;
	size_t n, i;
	unsigned int lit;		/* literals met so far in this command */
	unsigned int acked;		/* continuations already sent */
};

/* ATOM-CHAR: any CHAR except atom-specials "(" ")" "{" SP CTL "%" "*"
 * DQUOTE "\" "]". ASTRING-CHAR adds "]"; a tag is ASTRING-CHARs but "+". */
static bool atom_char(uint8_t c, bool astring)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	switch (c) {
	case '(':
	case ')':
	case '{':
	case '%':
	case '*':
	case '"':
	case '\\':
		return false;
	case ']':
		return astring;
	default:
		return true;
	}
}

/* At a line end: consumes it. TOK_NEED when the buffer ends first. */
static enum tok eol(struct cur *c)
{
	if (c->i < c->n && c->p[c->i] == '\r')
		c->i++;
	if (c->i >= c->n)
		return TOK_NEED;
	if (c->p[c->i] != '\n')
		return TOK_BAD;
	c->i++;
	return TOK_OK;
}

/* literal = "{" number ["+"] "}" CRLF *CHAR8 (RFC 7888 for "+"). At '{':
 * copies the content into dst (or skips it when dst is NULL). */
static enum tok literal(struct cur *c, char *dst, size_t max, size_t *len_r)
{
	size_t n = 0, digits = 0;
	bool sync = true;
	enum tok t;

	c->i++; /* '{' */
	while (c->i < c->n && c->p[c->i] >= '0' && c->p[c->i] <= '9') {
		n = n * 10 + (size_t)(c->p[c->i] - '0');
		if (++digits > 9)
			return TOK_BAD;
		c->i++;
	}
	if (c->i < c->n && c->p[c->i] == '+') {
		sync = false;
		c->i++;
	}
	if (c->i >= c->n)
		return TOK_NEED;
	if (digits == 0 || c->p[c->i] != '}')
		return TOK_BAD;
	c->i++;
	t = eol(c);
	if (t != TOK_OK)
		return t;
	if (n > max)
		return sync ? TOK_BAD : TOK_HUGE; /* a LITERAL+ we cannot skip */
	c->lit++;
	if (c->n - c->i < n) {
		if (sync && c->lit > c->acked)
			return TOK_CONT;
		return TOK_NEED;
	}
	if (dst != NULL) {
		for (size_t k = 0; k < n; k++) {
			uint8_t b = c->p[c->i + k];

			if (b == '\0' || b == '\r' || b == '\n')
				return TOK_BAD;
			dst[k] = (char)b;
		}
		dst[n] = '\0';
		*len_r = n;
	}
	c->i += n;
	return TOK_OK;
}

/* astring = 1*ASTRING-CHAR / quoted / literal, into dst (max bytes). */
static enum tok astring(struct cur *c, char *dst, size_t max)
{
	size_t len = 0;

	if (c->i >= c->n)
		return TOK_NEED;
	if (c->p[c->i] == '{')
		return literal(c, dst, max, &len);
	if (c->p[c->i] == '"') {
		/* quoted = DQUOTE *QUOTED-CHAR DQUOTE; "\" escapes only
		 * quoted-specials. */
		c->i++;
		for (;;) {
			uint8_t b;

			if (c->i >= c->n)
				return TOK_NEED;
			b = c->p[c->i++];
			if (b == '"')
				break;
			if (b == '\\') {
				if (c->i >= c->n)
					return TOK_NEED;
				b = c->p[c->i++];
				if (b != '"' && b != '\\')
					return TOK_BAD;
			} else if (b == '\r' || b == '\n' || b == '\0') {
				return TOK_BAD;
			}
			if (len >= max)
				return TOK_BAD;
			dst[len++] = (char)b;
		}
		dst[len] = '\0';
		return TOK_OK;
	}
	while (c->i < c->n && atom_char(c->p[c->i], true)) {
		if (len >= max)
			return TOK_BAD;
		dst[len++] = (char)c->p[c->i++];
	}
	if (len == 0)
		return c->i >= c->n ? TOK_NEED : TOK_BAD;
	dst[len] = '\0';
	return TOK_OK;
}

/* An atom into dst (for the command name and the mechanism). */
static enum tok atom(struct cur *c, char *dst, size_t max)
{
	size_t len = 0;

	while (c->i < c->n && atom_char(c->p[c->i], false)) {
		if (len >= max)
			return TOK_BAD;
		dst[len++] = (char)c->p[c->i++];
	}
	if (len == 0)
		return c->i >= c->n ? TOK_NEED : TOK_BAD;
	dst[len] = '\0';
	return TOK_OK;
}

static enum tok sp(struct cur *c)
{
	if (c->i >= c->n)
		return TOK_NEED;
	if (c->p[c->i] != ' ')
		return TOK_BAD;
	c->i++;
	return TOK_OK;
}

/* Skips arguments to the end of the command, literals included. */
static enum tok skip_args(struct cur *c)
{
	for (;;) {
		uint8_t b;

		if (c->i >= c->n)
			return TOK_NEED;
		b = c->p[c->i];
		if (b == '\r' || b == '\n')
			return eol(c);
		if (b == '{') {
			size_t save = c->i;
			enum tok t = literal(c, NULL, 4 * LB_LOGIN_MAX_CRED, NULL);

			if (t == TOK_BAD) {
				/* Not a literal after all ("{" inside an atom
				 * is bad anyway): go on to the line end. */
				c->i = save + 1;
				continue;
			}
			if (t != TOK_OK)
				return t;
			continue;
		}
		if (b == '"') {
			char tmp[LB_LOGIN_MAX_LINE];
			enum tok t = astring(c, tmp, sizeof(tmp) - 1);

			if (t == TOK_BAD) {
				c->i++;
				continue;
			}
			if (t != TOK_OK)
				return t;
			continue;
		}
		c->i++;
	}
}

/* ---- the dialogue ---- */

static void capabilities(struct lb_login *l)
{
	lb_login_say(l, "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID");
	if (l->tls) {
		lb_login_say(l, " AUTH=PLAIN");
	} else {
		if (l->set.starttls)
			lb_login_say(l, " STARTTLS");
		lb_login_say(l, l->set.require_tls ? " LOGINDISABLED" : " AUTH=PLAIN");
	}
}

void lb_login_imap_greeting(struct lb_login *l)
{
	lb_login_say(l, "* OK [CAPABILITY ");
	capabilities(l);
	lb_login_say(l, "] %s Postern ready.\r\n", l->hostname);
}

/* A BAD reply, and goodbye after too many. */
static void bad(struct lb_login *l, const char *tag, const char *text)
{
	lb_login_say(l, "%s BAD %s\r\n", tag, text);
	if (lb_login_bad(l)) {
		lb_login_say(l, "* BYE Too many invalid commands.\r\n");
		l->pending = LB_LOGIN_CLOSE;
	}
}

static bool login_allowed(struct lb_login *l, const char *tag)
{
	if (l->tls || !l->set.require_tls)
		return true;
	lb_login_say(l, "%s NO [PRIVACYREQUIRED] Login is disabled before TLS (use STARTTLS).\r\n",
		     tag);
	return false;
}

/* The AUTHENTICATE continuation line: base64 or "*" (RFC 9051 6.2.2). */
static enum step_result auth_continuation(struct lb_login *l)
{
	size_t len, full;
	int r = lb_login_line(l, &len, &full);
	const char *line;

	if (r == 0)
		return STEP_NEED;
	l->state = LS_COMMAND;
	if (r < 0) {
		lb_login_say(l, "* BYE Line too long.\r\n");
		l->pending = LB_LOGIN_CLOSE;
		return STEP_OUTPUT;
	}
	line = (const char *)pn_buf_rptr(&l->in);
	if (len == 1 && line[0] == '*') {
		bad(l, l->cred.tag, "Authentication cancelled.");
	} else if (lb_sasl_plain_decode(line, len, &l->cred) < 0) {
		bad(l, l->cred.tag, "Invalid SASL PLAIN response.");
	} else {
		pn_buf_consume(&l->in, full);
		l->pending = LB_LOGIN_AUTH;
		return STEP_OUTPUT;
	}
	pn_buf_consume(&l->in, full);
	return STEP_OUTPUT;
}

/* Ends a command whose syntax failed: drops its first line. */
static enum step_result drop_line(struct lb_login *l, const char *tag, const char *text)
{
	size_t len, full;

	if (lb_login_line(l, &len, &full) == 1)
		pn_buf_consume(&l->in, full);
	else
		pn_buf_reset(&l->in);
	l->literals_acked = 0;
	bad(l, tag, text);
	return STEP_OUTPUT;
}

enum step_result lb_login_imap_step(struct lb_login *l)
{
	struct cur c;
	char cmd[32], mech[32];
	char *tag = l->cred.tag;
	size_t len, full;
	enum tok t;
	int r;

	if (l->state == LS_AUTH_PLAIN)
		return auth_continuation(l);
	r = lb_login_line(l, &len, &full);
	if (r == 0)
		return STEP_NEED;
	if (r < 0) {
		lb_login_say(l, "* BYE Line too long.\r\n");
		l->pending = LB_LOGIN_CLOSE;
		return STEP_OUTPUT;
	}
	c = (struct cur){ pn_buf_rptr(&l->in), pn_buf_len(&l->in), 0, 0, l->literals_acked };
	/* tag SP command */
	{
		size_t tl = 0;

		while (c.i < c.n && atom_char(c.p[c.i], true) && c.p[c.i] != '+' &&
		       tl < LB_LOGIN_MAX_CRED)
			tag[tl++] = (char)c.p[c.i++];
		tag[tl] = '\0';
		if (tl == 0 || sp(&c) != TOK_OK) {
			snprintf(tag, 2, "*");
			return drop_line(l, "*", "Invalid tag.");
		}
	}
	if (atom(&c, cmd, sizeof(cmd) - 1) != TOK_OK)
		return drop_line(l, tag, "Invalid command.");

	if (lb_word_eq((uint8_t *)cmd, strlen(cmd), "LOGIN")) {
		char *user = l->cred.user, *pass = l->cred.pass;

		if ((t = sp(&c)) == TOK_OK && (t = astring(&c, user, LB_LOGIN_MAX_CRED)) == TOK_OK &&
		    (t = sp(&c)) == TOK_OK && (t = astring(&c, pass, LB_LOGIN_MAX_CRED)) == TOK_OK)
			t = eol(&c);
		if (t == TOK_OK) {
			pn_buf_consume(&l->in, c.i);
			l->literals_acked = 0;
			if (!login_allowed(l, tag))
				return STEP_OUTPUT;
			l->cred.mech = LB_MECH_LOGIN;
			l->cred.authzid[0] = '\0';
			if (user[0] == '\0' || pass[0] == '\0') {
				lb_login_say(l, "%s NO [AUTHENTICATIONFAILED] Empty user name or "
					     "password.\r\n", tag);
				return STEP_OUTPUT;
			}
			l->pending = LB_LOGIN_AUTH;
			return STEP_OUTPUT;
		}
	} else if (lb_word_eq((uint8_t *)cmd, strlen(cmd), "AUTHENTICATE")) {
		char ir[LB_LOGIN_MAX_LINE];
		bool has_ir = false;

		if ((t = sp(&c)) == TOK_OK && (t = atom(&c, mech, sizeof(mech) - 1)) == TOK_OK) {
			if (c.i < c.n && c.p[c.i] == ' ') {
				c.i++;
				t = atom(&c, ir, sizeof(ir) - 1); /* base64 and "=" are atoms */
				has_ir = true;
			}
			if (t == TOK_OK)
				t = eol(&c);
		}
		if (t == TOK_OK) {
			pn_buf_consume(&l->in, c.i);
			if (!login_allowed(l, tag))
				return STEP_OUTPUT;
			if (!lb_word_eq((uint8_t *)mech, strlen(mech), "PLAIN")) {
				lb_login_say(l, "%s NO Unsupported authentication mechanism.\r\n", tag);
				return STEP_OUTPUT;
			}
			if (!has_ir) {
				lb_login_say(l, "+ \r\n");
				l->state = LS_AUTH_PLAIN;
				return STEP_OUTPUT;
			}
			if (strcmp(ir, "=") == 0 ||
			    lb_sasl_plain_decode(ir, strlen(ir), &l->cred) < 0) {
				bad(l, tag, "Invalid SASL PLAIN response.");
				return STEP_OUTPUT;
			}
			l->pending = LB_LOGIN_AUTH;
			return STEP_OUTPUT;
		}
	} else if (lb_word_eq((uint8_t *)cmd, strlen(cmd), "CAPABILITY") ||
		   lb_word_eq((uint8_t *)cmd, strlen(cmd), "NOOP") ||
		   lb_word_eq((uint8_t *)cmd, strlen(cmd), "LOGOUT") ||
		   lb_word_eq((uint8_t *)cmd, strlen(cmd), "STARTTLS")) {
		t = eol(&c);
		if (t == TOK_OK) {
			pn_buf_consume(&l->in, c.i);
			switch (cmd[0] | 0x20) {
			case 'c':
				lb_login_say(l, "* CAPABILITY ");
				capabilities(l);
				lb_login_say(l, "\r\n%s OK CAPABILITY completed.\r\n", tag);
				break;
			case 'n':
				lb_login_say(l, "%s OK NOOP completed.\r\n", tag);
				break;
			case 'l':
				lb_login_say(l, "* BYE Logging out.\r\n%s OK LOGOUT completed.\r\n", tag);
				l->pending = LB_LOGIN_CLOSE;
				break;
			default:
				if (l->tls || !l->set.starttls) {
					bad(l, tag, l->tls ? "TLS is active already." :
						    "STARTTLS is not available.");
				} else {
					lb_login_say(l, "%s OK Begin TLS negotiation now.\r\n", tag);
					l->pending = LB_LOGIN_STARTTLS;
				}
			}
			return STEP_OUTPUT;
		}
		if (t == TOK_BAD)
			return drop_line(l, tag, "Unexpected arguments.");
	} else {
		bool id = lb_word_eq((uint8_t *)cmd, strlen(cmd), "ID");

		t = skip_args(&c);
		if (t == TOK_OK) {
			pn_buf_consume(&l->in, c.i);
			l->literals_acked = 0;
			if (id)
				lb_login_say(l, "* ID NIL\r\n%s OK ID completed.\r\n", tag);
			else
				bad(l, tag, "Command is not valid before login.");
			return STEP_OUTPUT;
		}
	}
	/* LOGIN and AUTHENTICATE fall through here when incomplete or bad. */
	switch (t) {
	case TOK_NEED:
		return STEP_NEED;
	case TOK_CONT:
		l->literals_acked = c.lit;
		lb_login_say(l, "+ Ready for literal data.\r\n");
		return STEP_OUTPUT;
	case TOK_HUGE:
		lb_login_say(l, "* BYE Literal too large.\r\n");
		l->pending = LB_LOGIN_CLOSE;
		return STEP_OUTPUT;
	case TOK_OK:
	case TOK_BAD:
		break;
	}
	return drop_line(l, tag, "Invalid arguments.");
}

/* ---- replay ---- */

/* An astring for a credential: quoted when plain ASCII, else a LITERAL+
 * (the frontend advertises LITERAL+). */
static int put_astring(struct pn_buf *out, const char *s)
{
	bool ascii = true;

	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x7f || (unsigned char)*p < 0x20)
			ascii = false;
	if (!ascii) {
		if (pn_buf_printf(out, "{%zu+}\r\n", strlen(s)) < 0)
			return -1;
		return pn_buf_append_str(out, s);
	}
	if (pn_buf_append(out, "\"", 1) < 0)
		return -1;
	for (const char *p = s; *p != '\0'; p++) {
		if ((*p == '"' || *p == '\\') && pn_buf_append(out, "\\", 1) < 0)
			return -1;
		if (pn_buf_append(out, p, 1) < 0)
			return -1;
	}
	return pn_buf_append(out, "\"", 1);
}

static bool starts(const uint8_t *p, size_t len, const char *prefix)
{
	size_t pl = strlen(prefix);

	return len >= pl && memcmp(p, prefix, pl) == 0;
}

int lb_replay_imap_step(struct lb_replay *r, struct lb_replay_event *ev)
{
	size_t full, tl = strlen(r->cred.tag);
	const uint8_t *p;
	int k = lb_replay_line(r, &full);

	if (k == 0)
		return 0;
	if (k < 0)
		return lb_replay_fail(r, ev, "line too long");
	p = pn_buf_rptr(&r->in);
	if (r->state == RS_GREETING) {
		int res;

		if (!starts(p, full, "* OK"))
			return lb_replay_fail(r, ev, starts(p, full, "* BYE") ?
					      "greeting is BYE" : "no IMAP greeting");
		pn_buf_consume(&r->in, full);
		pn_buf_reset(&r->out);
		res = pn_buf_printf(&r->out, "%s ", r->cred.tag);
		if (r->cred.mech == LB_MECH_PLAIN) {
			res |= pn_buf_append_str(&r->out, "AUTHENTICATE PLAIN ");
			res |= lb_sasl_plain_encode(&r->cred, &r->out);
		} else {
			res |= pn_buf_append_str(&r->out, "LOGIN ");
			res |= put_astring(&r->out, r->cred.user);
			res |= pn_buf_append(&r->out, " ", 1);
			res |= put_astring(&r->out, r->cred.pass);
		}
		res |= pn_buf_append(&r->out, "\r\n", 2);
		if (res != 0)
			return lb_replay_fail(r, ev, "login too long");
		r->state = RS_ANSWER;
		ev->type = LB_REPLAY_SEND;
		ev->data = pn_buf_rptr(&r->out);
		ev->len = pn_buf_len(&r->out);
		ev->reason = NULL;
		return 1;
	}
	/* RS_ANSWER: untagged lines pass, a continuation gets the PLAIN data
	 * once (a frontend without SASL-IR), the tagged line ends it. */
	if (starts(p, full, "+")) {
		pn_buf_consume(&r->in, full);
		if (r->cred.mech != LB_MECH_PLAIN || r->cont_sent)
			return lb_replay_fail(r, ev, "unexpected continuation");
		r->cont_sent = true;
		pn_buf_reset(&r->out);
		if (lb_sasl_plain_encode(&r->cred, &r->out) < 0 ||
		    pn_buf_append(&r->out, "\r\n", 2) < 0)
			return lb_replay_fail(r, ev, "login too long");
		ev->type = LB_REPLAY_SEND;
		ev->data = pn_buf_rptr(&r->out);
		ev->len = pn_buf_len(&r->out);
		ev->reason = NULL;
		return 1;
	}
	if (full > tl && memcmp(p, r->cred.tag, tl) == 0 && p[tl] == ' ') {
		r->state = RS_DONE;
		r->pending = LB_REPLAY_DONE;
		r->login_ok = full >= tl + 3 && (p[tl + 1] | 0x20) == 'o' &&
			      (p[tl + 2] | 0x20) == 'k';
	}
	k = lb_replay_emit(r, ev, LB_REPLAY_FORWARD, p, full);
	pn_buf_consume(&r->in, full);
	return k;
}
