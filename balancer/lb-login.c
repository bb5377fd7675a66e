/* L7 login handling shared by the protocols: the client dialogue's event
 * pump (greeting, one reply per command, then STARTTLS/AUTH/CLOSE), the
 * replay's event pump, line splitting with bounds, and SASL PLAIN (RFC
 * 4616) decoding and encoding. The protocol dialogues themselves are in
 * lb-login-imap.c, lb-login-pop3.c and lb-login-smtp.c. See lb-login.h.
 */
#include "lb-login-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/base64.h"

/* Input bound: a command line plus an IMAP command's literals. */
#define IN_MAX (LB_LOGIN_MAX_LINE + 4 * LB_LOGIN_MAX_CRED + 64)
#define OUT_MAX 8192
#define REPLAY_IN_MAX (LB_REPLAY_MAX_LINE + 65536)
#define REPLAY_OUT_MAX (LB_REPLAY_MAX_LINE + 4 * LB_LOGIN_MAX_CRED + 256)

const char *lb_credentials_route_user(const struct lb_credentials *c)
{
	return c->authzid[0] != '\0' ? c->authzid : c->user;
}

/* ---- client dialogue ---- */

struct lb_login *lb_login_new(const struct lb_login_settings *set)
{
	struct lb_login *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->set = *set;
	snprintf(l->hostname, sizeof(l->hostname), "%s",
		 set->hostname != NULL ? set->hostname : "postern");
	l->set.hostname = l->hostname;
	l->tls = set->tls;
	pn_buf_init(&l->in, IN_MAX);
	pn_buf_init(&l->out, OUT_MAX);
	return l;
}

static void wipe(void *p, size_t n)
{
	volatile uint8_t *v = p;

	while (n-- > 0)
		*v++ = 0;
}

void lb_login_free(struct lb_login **lp)
{
	struct lb_login *l = *lp;

	if (l == NULL)
		return;
	wipe(&l->cred, sizeof(l->cred));
	if (l->in.data != NULL)
		wipe(l->in.data, l->in.cap);
	pn_buf_free(&l->in);
	pn_buf_free(&l->out);
	free(l);
	*lp = NULL;
}

int lb_login_feed(struct lb_login *l, const void *data, size_t len)
{
	if (l->done)
		return 0; /* after AUTH the owner keeps its own bytes */
	return pn_buf_append(&l->in, data, len);
}

const struct lb_credentials *lb_login_credentials(const struct lb_login *l)
{
	return &l->cred;
}

void lb_login_rest(const struct lb_login *l, const uint8_t **data_r, size_t *len_r)
{
	*len_r = pn_buf_len(&l->in);
	*data_r = *len_r > 0 ? pn_buf_rptr(&l->in) : NULL;
}

bool lb_login_tls(const struct lb_login *l)
{
	return l->tls;
}

/* Hands out l->pending. */
static int take_pending(struct lb_login *l, struct lb_login_event *ev)
{
	ev->type = l->pending;
	ev->data = NULL;
	ev->len = 0;
	l->pending = 0;
	switch (ev->type) {
	case LB_LOGIN_STARTTLS:
		/* RFC 3207 section 4.2, RFC 2595 section 3.1: what came after
		 * the command in plaintext may be an injected command. */
		pn_buf_reset(&l->in);
		l->tls = true;
		l->ehlo = false;
		l->state = LS_COMMAND;
		break;
	case LB_LOGIN_AUTH:
	case LB_LOGIN_CLOSE:
		l->done = true;
		break;
	case LB_LOGIN_REPLY:
		break;
	}
	return 1;
}

int lb_login_next(struct lb_login *l, struct lb_login_event *ev)
{
	enum step_result r;

	if (l->pending != 0)
		return take_pending(l, ev);
	if (l->done)
		return 0;
	pn_buf_reset(&l->out);
	if (!l->greeted) {
		l->greeted = true;
		switch (l->set.family) {
		case LB_FAMILY_IMAP:
			lb_login_imap_greeting(l);
			break;
		case LB_FAMILY_POP3:
			lb_login_pop3_greeting(l);
			break;
		case LB_FAMILY_SMTP:
			lb_login_smtp_greeting(l);
			break;
		}
	} else {
		switch (l->set.family) {
		case LB_FAMILY_IMAP:
			r = lb_login_imap_step(l);
			break;
		case LB_FAMILY_POP3:
			r = lb_login_pop3_step(l);
			break;
		case LB_FAMILY_SMTP:
			r = lb_login_smtp_step(l);
			break;
		default:
			return -1;
		}
		if (r == STEP_NEED)
			return 0;
	}
	if (pn_buf_len(&l->out) > 0) {
		ev->type = LB_LOGIN_REPLY;
		ev->data = pn_buf_rptr(&l->out);
		ev->len = pn_buf_len(&l->out);
		return 1;
	}
	if (l->pending != 0)
		return take_pending(l, ev);
	return 0;
}

int lb_login_line(const struct lb_login *l, size_t *len_r, size_t *full_r)
{
	size_t avail = pn_buf_len(&l->in);
	const uint8_t *p = avail > 0 ? pn_buf_rptr(&l->in) : NULL;
	const uint8_t *lf = p != NULL ? memchr(p, '\n', avail) : NULL;
	size_t len;

	if (lf == NULL)
		return avail > LB_LOGIN_MAX_LINE ? -1 : 0;
	len = (size_t)(lf - p);
	if (len > LB_LOGIN_MAX_LINE)
		return -1;
	*full_r = len + 1;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	*len_r = len;
	return 1;
}

void lb_login_say(struct lb_login *l, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		pn_buf_append(&l->out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

bool lb_login_bad(struct lb_login *l)
{
	return ++l->errors >= LB_LOGIN_MAX_ERRORS;
}

bool lb_word_eq(const uint8_t *s, size_t len, const char *word)
{
	size_t wl = strlen(word);

	if (len != wl)
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];

		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - 'a' + 'A');
		if (c != (uint8_t)word[i])
			return false;
	}
	return true;
}

/* ---- SASL PLAIN ---- */

static bool field_ok(const uint8_t *s, size_t len)
{
	if (len > LB_LOGIN_MAX_CRED)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

/* RFC 4616 section 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd */
int lb_sasl_plain_decode(const char *b64, size_t len, struct lb_credentials *c)
{
	uint8_t buf[3 * LB_LOGIN_MAX_CRED + 8];
	const uint8_t *nul1, *nul2;
	size_t n = 0, a_len, u_len, p_len;
	const char *err = NULL;

	if (pn_base64_decode(b64, len, buf, sizeof(buf), 0, &n, &err) < 0)
		return -1;
	nul1 = memchr(buf, '\0', n);
	if (nul1 == NULL)
		goto bad;
	nul2 = memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - buf));
	if (nul2 == NULL)
		goto bad;
	a_len = (size_t)(nul1 - buf);
	u_len = (size_t)(nul2 - nul1 - 1);
	p_len = n - (size_t)(nul2 + 1 - buf);
	if (u_len == 0 || p_len == 0 || !field_ok(buf, a_len) || !field_ok(nul1 + 1, u_len) ||
	    !field_ok(nul2 + 1, p_len))
		goto bad;
	c->mech = LB_MECH_PLAIN;
	memcpy(c->authzid, buf, a_len);
	c->authzid[a_len] = '\0';
	memcpy(c->user, nul1 + 1, u_len);
	c->user[u_len] = '\0';
	memcpy(c->pass, nul2 + 1, p_len);
	c->pass[p_len] = '\0';
	wipe(buf, sizeof(buf));
	return 0;
bad:
	wipe(buf, sizeof(buf));
	return -1;
}

int lb_sasl_plain_encode(const struct lb_credentials *c, struct pn_buf *out)
{
	uint8_t msg[3 * LB_LOGIN_MAX_CRED + 8];
	char b64[PN_BASE64_ENCODED_LEN(sizeof(msg)) + 1];
	size_t a = strlen(c->authzid), u = strlen(c->user), p = strlen(c->pass);
	ssize_t n;
	int r;

	memcpy(msg, c->authzid, a);
	msg[a] = '\0';
	memcpy(msg + a + 1, c->user, u);
	msg[a + 1 + u] = '\0';
	memcpy(msg + a + 2 + u, c->pass, p);
	n = pn_base64_encode(msg, a + 2 + u + p, b64, sizeof(b64));
	wipe(msg, sizeof(msg));
	r = n < 0 ? -1 : pn_buf_append(out, b64, (size_t)n);
	wipe(b64, sizeof(b64));
	return r;
}

int lb_b64_field(const char *b64, size_t len, char *dst)
{
	uint8_t buf[LB_LOGIN_MAX_CRED + 4];
	size_t n = 0;
	const char *err = NULL;

	if (pn_base64_decode(b64, len, buf, sizeof(buf), 0, &n, &err) < 0 || n == 0 ||
	    !field_ok(buf, n)) {
		wipe(buf, sizeof(buf));
		return -1;
	}
	memcpy(dst, buf, n);
	dst[n] = '\0';
	wipe(buf, sizeof(buf));
	return 0;
}

/* ---- replay ---- */

struct lb_replay *lb_replay_new(enum lb_family family, const struct lb_credentials *c)
{
	struct lb_replay *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->family = family;
	r->cred = *c;
	pn_buf_init(&r->in, REPLAY_IN_MAX);
	pn_buf_init(&r->out, REPLAY_OUT_MAX);
	return r;
}

void lb_replay_free(struct lb_replay **rp)
{
	struct lb_replay *r = *rp;

	if (r == NULL)
		return;
	wipe(&r->cred, sizeof(r->cred));
	if (r->out.data != NULL)
		wipe(r->out.data, r->out.cap);
	pn_buf_free(&r->in);
	pn_buf_free(&r->out);
	free(r);
	*rp = NULL;
}

int lb_replay_feed(struct lb_replay *r, const void *data, size_t len)
{
	if (r->state == RS_DONE)
		return pn_buf_append(&r->in, data, len) < 0 ? -1 : 0;
	if (pn_buf_append(&r->in, data, len) < 0) {
		r->failed = true;
		r->fail_reason = "upstream sent too much before answering the login";
		return -1;
	}
	return 0;
}

bool lb_replay_login_ok(const struct lb_replay *r)
{
	return r->login_ok;
}

void lb_replay_rest(const struct lb_replay *r, const uint8_t **data_r, size_t *len_r)
{
	*len_r = pn_buf_len(&r->in);
	*data_r = *len_r > 0 ? pn_buf_rptr(&r->in) : NULL;
}

int lb_replay_line(const struct lb_replay *r, size_t *full_r)
{
	size_t avail = pn_buf_len(&r->in);
	const uint8_t *p = avail > 0 ? pn_buf_rptr(&r->in) : NULL;
	const uint8_t *lf = p != NULL ? memchr(p, '\n', avail) : NULL;

	if (lf == NULL)
		return avail > LB_REPLAY_MAX_LINE ? -1 : 0;
	if ((size_t)(lf - p) > LB_REPLAY_MAX_LINE)
		return -1;
	*full_r = (size_t)(lf - p) + 1;
	return 1;
}

int lb_replay_emit(struct lb_replay *r, struct lb_replay_event *ev,
		   enum lb_replay_ev_type type, const void *data, size_t len)
{
	pn_buf_reset(&r->out);
	if (len > 0 && pn_buf_append(&r->out, data, len) < 0)
		return lb_replay_fail(r, ev, "reply too long");
	ev->type = type;
	ev->data = pn_buf_len(&r->out) > 0 ? pn_buf_rptr(&r->out) : NULL;
	ev->len = pn_buf_len(&r->out);
	ev->reason = NULL;
	return 1;
}

int lb_replay_fail(struct lb_replay *r, struct lb_replay_event *ev, const char *reason)
{
	r->failed = true;
	r->fail_reason = reason;
	r->state = RS_DONE;
	ev->type = LB_REPLAY_FAIL;
	ev->data = NULL;
	ev->len = 0;
	ev->reason = reason;
	return 1;
}

int lb_replay_next(struct lb_replay *r, struct lb_replay_event *ev)
{
	if (r->pending != 0) {
		ev->type = r->pending;
		ev->data = NULL;
		ev->len = 0;
		ev->reason = NULL;
		r->pending = 0;
		return 1;
	}
	if (r->state == RS_DONE)
		return 0;
	if (r->failed)
		return lb_replay_fail(r, ev, r->fail_reason);
	switch (r->family) {
	case LB_FAMILY_IMAP:
		return lb_replay_imap_step(r, ev);
	case LB_FAMILY_POP3:
		return lb_replay_pop3_step(r, ev);
	case LB_FAMILY_SMTP:
		return lb_replay_smtp_step(r, ev);
	}
	return lb_replay_fail(r, ev, "unknown protocol");
}
