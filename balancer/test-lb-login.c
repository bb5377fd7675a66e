/* Unit tests for the L7 login engines (lb-login.c, lb-login-imap.c,
 * lb-login-pop3.c, lb-login-smtp.c): every login form of each protocol fed
 * whole and one byte at a time (no AUTH before the last byte), STARTTLS
 * discarding what was pipelined after it, refusals in plaintext, garbage
 * and over-long lines, and the replay to the frontend, also byte at a
 * time. */
#include "lb-login.h"
#include "postern/testing.h"

struct run {
	char out[16384];
	size_t outlen;
	int auth, close, starttls;
	int events_after_end;
};

static void pump(struct lb_login *l, struct run *r)
{
	struct lb_login_event ev;
	int k;

	while ((k = lb_login_next(l, &ev)) == 1) {
		if (r->auth || r->close)
			r->events_after_end++;
		switch (ev.type) {
		case LB_LOGIN_REPLY:
			if (r->outlen + ev.len < sizeof(r->out)) {
				memcpy(r->out + r->outlen, ev.data, ev.len);
				r->outlen += ev.len;
				r->out[r->outlen] = '\0';
			}
			break;
		case LB_LOGIN_AUTH:
			r->auth++;
			break;
		case LB_LOGIN_CLOSE:
			r->close++;
			break;
		case LB_LOGIN_STARTTLS:
			r->starttls++;
			break;
		}
	}
	CHECK_INT(k, 0);
}

static struct lb_login *start(enum lb_family f, bool tls, struct run *r)
{
	struct lb_login_settings set = { .family = f, .tls = tls, .starttls = true,
					 .require_tls = true, .hostname = "lb.test",
					 .smtp_size = 1000 };
	struct lb_login *l = lb_login_new(&set);

	memset(r, 0, sizeof(*r));
	pump(l, r); /* the greeting */
	return l;
}

/* Feeds text whole or byte by byte; with bytewise, checks that AUTH comes
 * only with the last byte. */
static void feed(struct lb_login *l, struct run *r, const char *text, bool bytewise)
{
	size_t len = strlen(text);

	if (!bytewise) {
		CHECK_INT(lb_login_feed(l, text, len), 0);
		pump(l, r);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		int before = r->auth;

		CHECK_INT(lb_login_feed(l, text + i, 1), 0);
		pump(l, r);
		if (i + 1 < len && r->auth != before) {
			fprintf(stderr, "AUTH after byte %zu of %zu\n", i + 1, len);
			CHECK(0);
		}
	}
}

static void clear(struct run *r)
{
	r->outlen = 0;
	r->out[0] = '\0';
}

/* ---- IMAP ---- */

PN_TEST(test_imap_greeting_and_capability)
{
	struct run r;
	struct lb_login *l = start(LB_FAMILY_IMAP, false, &r);

	CHECK(strncmp(r.out, "* OK [CAPABILITY IMAP4rev1 ", 27) == 0);
	CHECK(strstr(r.out, " STARTTLS") != NULL);
	CHECK(strstr(r.out, " LOGINDISABLED") != NULL);
	CHECK(strstr(r.out, "AUTH=PLAIN") == NULL);
	CHECK(strstr(r.out, "lb.test") != NULL);
	clear(&r);
	feed(l, &r, "a1 capability\r\nb2 NOOP\r\n", true);
	CHECK(strstr(r.out, "* CAPABILITY IMAP4rev1") != NULL);
	CHECK(strstr(r.out, "a1 OK CAPABILITY completed.\r\n") != NULL);
	CHECK(strstr(r.out, "b2 OK NOOP completed.\r\n") != NULL);
	clear(&r);
	feed(l, &r, "c3 ID (\"name\" \"thunderbird\")\r\n", false);
	CHECK_STR(r.out, "* ID NIL\r\nc3 OK ID completed.\r\n");
	lb_login_free(&l);
	CHECK(l == NULL);

	l = start(LB_FAMILY_IMAP, true, &r);
	CHECK(strstr(r.out, "AUTH=PLAIN") != NULL);
	CHECK(strstr(r.out, "STARTTLS") == NULL);
	CHECK(strstr(r.out, "LOGINDISABLED") == NULL);
	CHECK(lb_login_tls(l));
	lb_login_free(&l);
}

static void imap_login(const char *cmd, bool bytewise, const char *user, const char *pass,
		       int conts)
{
	struct run r;
	struct lb_login *l = start(LB_FAMILY_IMAP, true, &r);
	const struct lb_credentials *c;
	int n = 0;

	clear(&r);
	feed(l, &r, cmd, bytewise);
	CHECK_INT(r.auth, 1);
	c = lb_login_credentials(l);
	CHECK_STR(c->user, user);
	CHECK_STR(c->pass, pass);
	CHECK_STR(c->tag, "x1");
	CHECK_INT(c->mech, LB_MECH_LOGIN);
	for (const char *p = r.out; (p = strstr(p, "+ Ready")) != NULL; p++)
		n++;
	/* Fed whole, the literals are there before a continuation is due. */
	CHECK_INT(n, bytewise ? conts : 0);
	CHECK(strstr(r.out, "x1 ") == NULL); /* the frontend answers, not us */
	lb_login_free(&l);
}

PN_TEST(test_imap_login_forms)
{
	for (int bw = 0; bw < 2; bw++) {
		imap_login("x1 LOGIN alice secret\r\n", bw, "alice", "secret", 0);
		imap_login("x1 login \"al ice\" \"se\\\"c\\\\ret\"\r\n", bw, "al ice",
			   "se\"c\\ret", 0);
		imap_login("x1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n", bw, "alice", "secret", 2);
		imap_login("x1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n", bw, "alice", "secret", 0);
		imap_login("x1 LOGIN alice@example.test {8}\r\np\xc3\xa4ss wd\r\n", bw,
			   "alice@example.test", "p\xc3\xa4ss wd", 1);
	}
}

PN_TEST(test_imap_authenticate_plain)
{
	for (int bw = 0; bw < 2; bw++) {
		struct run r;
		struct lb_login *l = start(LB_FAMILY_IMAP, true, &r);
		const struct lb_credentials *c;

		/* SASL-IR: base64("admin\0bob\0pw") */
		feed(l, &r, "x1 AUTHENTICATE PLAIN YWRtaW4AYm9iAHB3\r\n", bw);
		CHECK_INT(r.auth, 1);
		c = lb_login_credentials(l);
		CHECK_STR(c->authzid, "admin");
		CHECK_STR(c->user, "bob");
		CHECK_STR(c->pass, "pw");
		CHECK_STR(lb_credentials_route_user(c), "admin");
		CHECK_INT(c->mech, LB_MECH_PLAIN);
		lb_login_free(&l);

		/* Continuation: base64("\0bob\0pw") */
		l = start(LB_FAMILY_IMAP, true, &r);
		clear(&r);
		feed(l, &r, "x1 AUTHENTICATE plain\r\n", bw);
		CHECK_STR(r.out, "+ \r\n");
		CHECK_INT(r.auth, 0);
		feed(l, &r, "AGJvYgBwdw==\r\n", bw);
		CHECK_INT(r.auth, 1);
		CHECK_STR(lb_credentials_route_user(lb_login_credentials(l)), "bob");
		lb_login_free(&l);
	}
}

PN_TEST(test_imap_refusals)
{
	struct run r;
	struct lb_login *l = start(LB_FAMILY_IMAP, false, &r);

	clear(&r);
	feed(l, &r, "a LOGIN alice secret\r\n", false);
	CHECK_INT(r.auth, 0);
	CHECK(strncmp(r.out, "a NO [PRIVACYREQUIRED]", 22) == 0);
	clear(&r);
	feed(l, &r, "b AUTHENTICATE PLAIN AGJvYgBwdw==\r\n", false);
	CHECK_INT(r.auth, 0);
	CHECK(strncmp(r.out, "b NO [PRIVACYREQUIRED]", 22) == 0);
	lb_login_free(&l);

	l = start(LB_FAMILY_IMAP, true, &r);
	clear(&r);
	feed(l, &r, "a SELECT INBOX\r\nb AUTHENTICATE CRAM-MD5\r\nc AUTHENTICATE PLAIN\r\n*\r\n"
		    "d AUTHENTICATE PLAIN =\r\ne AUTHENTICATE PLAIN bm9udWxs\r\ne2 LOGIN a\r\n"
		    "f STARTTLS\r\n+tag NOOP\r\n", false);
	CHECK(strstr(r.out, "a BAD Command is not valid before login.\r\n") != NULL);
	CHECK(strstr(r.out, "b NO Unsupported authentication mechanism.\r\n") != NULL);
	CHECK(strstr(r.out, "c BAD Authentication cancelled.\r\n") != NULL);
	CHECK(strstr(r.out, "d BAD Invalid SASL PLAIN response.\r\n") != NULL);
	CHECK(strstr(r.out, "e BAD Invalid SASL PLAIN response.\r\n") != NULL);
	CHECK(strstr(r.out, "e2 BAD Invalid arguments.\r\n") != NULL);
	CHECK(strstr(r.out, "f BAD TLS is active already.\r\n") != NULL);
	CHECK(strstr(r.out, "* BAD Invalid tag.\r\n") != NULL);
	CHECK_INT(r.auth + r.close, 0);
	/* Enough: the next bad command is the last. */
	clear(&r);
	feed(l, &r, "g FOO\r\nh BAR\r\ni BAZ\r\n", false);
	CHECK(strstr(r.out, "* BYE Too many invalid commands.\r\n") != NULL);
	CHECK_INT(r.close, 1);
	CHECK_INT(r.events_after_end, 0);
	lb_login_free(&l);
}

PN_TEST(test_imap_starttls_discards_pipelined)
{
	struct run r;
	struct lb_login *l = start(LB_FAMILY_IMAP, false, &r);

	clear(&r);
	/* A man in the middle appends a LOGIN after STARTTLS in plaintext. */
	feed(l, &r, "a STARTTLS\r\nb LOGIN mallory x\r\n", false);
	CHECK_STR(r.out, "a OK Begin TLS negotiation now.\r\n");
	CHECK_INT(r.starttls, 1);
	CHECK_INT(r.auth, 0);
	CHECK(lb_login_tls(l));
	/* Inside TLS: the capabilities change and login works. */
	clear(&r);
	feed(l, &r, "c CAPABILITY\r\n", false);
	CHECK(strstr(r.out, "AUTH=PLAIN") != NULL);
	CHECK(strstr(r.out, "STARTTLS") == NULL);
	feed(l, &r, "d LOGIN alice secret\r\n", true);
	CHECK_INT(r.auth, 1);
	CHECK_STR(lb_login_credentials(l)->user, "alice");
	lb_login_free(&l);
}

PN_TEST(test_imap_logout_rest_and_limits)
{
	struct run r;
	struct lb_login *l = start(LB_FAMILY_IMAP, true, &r);
	const uint8_t *rest;
	size_t rest_len;
	char big[LB_LOGIN_MAX_LINE + 100];

	clear(&r);
	feed(l, &r, "a LOGOUT\r\nb NOOP\r\n", false);
	CHECK_STR(r.out, "* BYE Logging out.\r\na OK LOGOUT completed.\r\n");
	CHECK_INT(r.close, 1);
	CHECK_INT(r.events_after_end, 0);
	lb_login_free(&l);

	l = start(LB_FAMILY_IMAP, true, &r);
	feed(l, &r, "a LOGIN u p\r\nb SELECT INBOX\r\nc IDLE", false);
	CHECK_INT(r.auth, 1);
	lb_login_rest(l, &rest, &rest_len);
	CHECK_MEM(rest, rest_len, "b SELECT INBOX\r\nc IDLE", 22);
	lb_login_free(&l);

	l = start(LB_FAMILY_IMAP, true, &r);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	clear(&r);
	feed(l, &r, big, false);
	CHECK_STR(r.out, "* BYE Line too long.\r\n");
	CHECK_INT(r.close, 1);
	lb_login_free(&l);

	/* A LITERAL+ over the bound cannot be skipped: goodbye. */
	l = start(LB_FAMILY_IMAP, true, &r);
	clear(&r);
	feed(l, &r, "a LOGIN {99999+}\r\n", false);
	CHECK_STR(r.out, "* BYE Literal too large.\r\n");
	CHECK_INT(r.close, 1);
	lb_login_free(&l);
	/* A synchronizing one is refused before the client sends it. */
	l = start(LB_FAMILY_IMAP, true, &r);
	clear(&r);
	feed(l, &r, "a LOGIN {99999}\r\nb NOOP\r\n", false);
	CHECK(strncmp(r.out, "a BAD ", 6) == 0);
	CHECK(strstr(r.out, "b OK NOOP") != NULL);
	lb_login_free(&l);
}

/* ---- POP3 ---- */

PN_TEST(test_pop3_dialogue)
{
	for (int bw = 0; bw < 2; bw++) {
		struct run r;
		struct lb_login *l = start(LB_FAMILY_POP3, false, &r);

		CHECK_STR(r.out, "+OK lb.test Postern ready.\r\n");
		clear(&r);
		feed(l, &r, "CAPA\r\n", bw);
		CHECK(strstr(r.out, "STLS\r\n") != NULL);
		CHECK(strstr(r.out, "USER\r\n") == NULL); /* not before TLS */
		CHECK(strstr(r.out, "\r\n.\r\n") != NULL);
		clear(&r);
		feed(l, &r, "USER alice\r\n", bw);
		CHECK(strncmp(r.out, "-ERR [AUTH] ", 12) == 0);
		clear(&r);
		feed(l, &r, "STLS\r\nUSER injected\r\n", false);
		CHECK_STR(r.out, "+OK Begin TLS negotiation.\r\n");
		CHECK_INT(r.starttls, 1);
		clear(&r);
		feed(l, &r, "PASS x\r\n", bw);
		CHECK_STR(r.out, "-ERR Send USER first.\r\n"); /* the injected USER is gone */
		clear(&r);
		feed(l, &r, "capa\r\n", bw);
		CHECK(strstr(r.out, "USER\r\nSASL PLAIN\r\n") != NULL);
		CHECK(strstr(r.out, "STLS") == NULL);
		clear(&r);
		feed(l, &r, "USER alice@example.test\r\n", bw);
		CHECK_STR(r.out, "+OK\r\n");
		clear(&r);
		feed(l, &r, "PASS pass with spaces\r\n", bw);
		CHECK_INT(r.auth, 1);
		CHECK_INT(r.outlen, 0);
		CHECK_STR(lb_login_credentials(l)->user, "alice@example.test");
		CHECK_STR(lb_login_credentials(l)->pass, "pass with spaces");
		lb_login_free(&l);
	}
}

PN_TEST(test_pop3_auth_and_garbage)
{
	for (int bw = 0; bw < 2; bw++) {
		struct run r;
		struct lb_login *l = start(LB_FAMILY_POP3, true, &r);

		clear(&r);
		feed(l, &r, "AUTH\r\n", bw);
		CHECK_STR(r.out, "+OK\r\nPLAIN\r\n.\r\n");
		clear(&r);
		feed(l, &r, "AUTH PLAIN\r\n", bw);
		CHECK_STR(r.out, "+ \r\n");
		feed(l, &r, "AGJvYgBwdw==\r\n", bw);
		CHECK_INT(r.auth, 1);
		CHECK_STR(lb_login_credentials(l)->user, "bob");
		lb_login_free(&l);

		l = start(LB_FAMILY_POP3, true, &r);
		feed(l, &r, "AUTH PLAIN YWRtaW4AYm9iAHB3\r\n", bw);
		CHECK_INT(r.auth, 1);
		CHECK_STR(lb_login_credentials(l)->authzid, "admin");
		lb_login_free(&l);
	}
	{
		struct run r;
		struct lb_login *l = start(LB_FAMILY_POP3, true, &r);

		clear(&r);
		feed(l, &r, "STAT\r\nAUTH X\r\nAUTH PLAIN !!\r\n\x01\xff\r\nUSER a\r\n"
			    "PASS b\r* OK\r\nQUIT\r\n", false);
		CHECK(strstr(r.out, "-ERR Invalid password.\r\n") != NULL); /* bare CR */
		CHECK(strstr(r.out, "-ERR Command is not valid before login.\r\n") != NULL);
		CHECK(strstr(r.out, "-ERR Unsupported authentication mechanism.\r\n") != NULL);
		CHECK(strstr(r.out, "-ERR Invalid SASL PLAIN response.\r\n") != NULL);
		CHECK(strstr(r.out, "+OK Bye.\r\n") != NULL);
		CHECK_INT(r.close, 1);
		CHECK_INT(r.auth, 0);
		lb_login_free(&l);
	}
}

/* ---- SMTP ---- */

PN_TEST(test_smtp_dialogue)
{
	for (int bw = 0; bw < 2; bw++) {
		struct run r;
		struct lb_login *l = start(LB_FAMILY_SMTP, false, &r);

		CHECK_STR(r.out, "220 lb.test ESMTP Postern\r\n");
		clear(&r);
		feed(l, &r, "EHLO client.example\r\n", bw);
		CHECK(strncmp(r.out, "250-lb.test\r\n", 13) == 0);
		CHECK(strstr(r.out, "250-STARTTLS\r\n") != NULL);
		CHECK(strstr(r.out, "250-SIZE 1000\r\n") != NULL);
		CHECK(strstr(r.out, "AUTH") == NULL);
		CHECK(strstr(r.out, "250 HELP\r\n") != NULL);
		clear(&r);
		feed(l, &r, "AUTH PLAIN AGJvYgBwdw==\r\n", bw);
		CHECK_STR(r.out, "530 5.7.0 Must issue a STARTTLS command first\r\n");
		clear(&r);
		feed(l, &r, "MAIL FROM:<a@b>\r\n", bw);
		CHECK_STR(r.out, "530 5.7.0 Authentication required\r\n");
		clear(&r);
		feed(l, &r, "STARTTLS\r\nAUTH PLAIN AGJvYgBwdw==\r\n", false);
		CHECK_STR(r.out, "220 2.0.0 Ready to start TLS\r\n");
		CHECK_INT(r.starttls, 1);
		CHECK_INT(r.auth, 0);
		clear(&r);
		feed(l, &r, "AUTH PLAIN AGJvYgBwdw==\r\n", bw);
		CHECK_STR(r.out, "503 5.5.1 Send EHLO first\r\n"); /* EHLO again after TLS */
		clear(&r);
		feed(l, &r, "ehlo client.example\r\n", bw);
		CHECK(strstr(r.out, "250-AUTH PLAIN LOGIN\r\n") != NULL);
		CHECK(strstr(r.out, "STARTTLS") == NULL);
		clear(&r);
		/* AUTH LOGIN: "alice", "secret" */
		feed(l, &r, "AUTH LOGIN\r\n", bw);
		CHECK_STR(r.out, "334 VXNlcm5hbWU6\r\n");
		clear(&r);
		feed(l, &r, "YWxpY2U=\r\n", bw);
		CHECK_STR(r.out, "334 UGFzc3dvcmQ6\r\n");
		feed(l, &r, "c2VjcmV0\r\n", bw);
		CHECK_INT(r.auth, 1);
		CHECK_STR(lb_login_credentials(l)->user, "alice");
		CHECK_STR(lb_login_credentials(l)->pass, "secret");
		CHECK_STR(lb_login_credentials(l)->helo, "client.example");
		lb_login_free(&l);
	}
}

PN_TEST(test_smtp_auth_forms_and_garbage)
{
	for (int bw = 0; bw < 2; bw++) {
		struct run r;
		struct lb_login *l = start(LB_FAMILY_SMTP, true, &r);

		feed(l, &r, "EHLO c\r\nAUTH PLAIN\r\n", false);
		clear(&r);
		feed(l, &r, "AGJvYgBwdw==\r\n", bw);
		CHECK_INT(r.auth, 1);
		lb_login_free(&l);

		l = start(LB_FAMILY_SMTP, true, &r);
		feed(l, &r, "EHLO c\r\n", false);
		clear(&r);
		feed(l, &r, "AUTH LOGIN YWxpY2U=\r\n", bw);
		CHECK_STR(r.out, "334 UGFzc3dvcmQ6\r\n");
		feed(l, &r, "c2VjcmV0\r\n", bw);
		CHECK_INT(r.auth, 1);
		lb_login_free(&l);
	}
	{
		struct run r;
		struct lb_login *l = start(LB_FAMILY_SMTP, true, &r);

		clear(&r);
		feed(l, &r, "HELO\r\nEHLO c\r\nAUTH CRAM-MD5\r\nAUTH PLAIN =\r\nAUTH LOGIN\r\n*\r\n"
			    "NOOP\r\nRSET\r\nXYZZY\r\nQUIT\r\n", false);
		CHECK(strstr(r.out, "501 5.5.4 Syntax: EHLO hostname\r\n") != NULL);
		CHECK(strstr(r.out, "504 5.5.4 Unrecognized authentication type\r\n") != NULL);
		CHECK(strstr(r.out, "501 5.5.2 Cannot decode response\r\n") != NULL);
		CHECK(strstr(r.out, "501 5.7.0 Authentication cancelled\r\n") != NULL);
		CHECK(strstr(r.out, "250 2.0.0 OK\r\n250 2.0.0 OK\r\n") != NULL);
		CHECK(strstr(r.out, "500 5.5.2 Command not recognized\r\n") != NULL);
		CHECK(strstr(r.out, "221 2.0.0 lb.test closing connection\r\n") != NULL);
		CHECK_INT(r.close, 1);
		CHECK_INT(r.auth, 0);
		lb_login_free(&l);
	}
}

/* ---- replay ---- */

struct rrun {
	char sent[4096], fwd[4096];
	int done, fail;
};

/* Appends data[0..len) to the NUL-terminated text in buf (bounded). */
static void append(char *buf, size_t size, const uint8_t *data, size_t len)
{
	size_t have = strlen(buf);

	if (len > size - 1 - have)
		len = size - 1 - have;
	memcpy(buf + have, data, len);
	buf[have + len] = '\0';
}

static void rpump(struct lb_replay *rp, struct rrun *o)
{
	struct lb_replay_event ev;
	int k;

	while ((k = lb_replay_next(rp, &ev)) == 1) {
		switch (ev.type) {
		case LB_REPLAY_SEND:
			append(o->sent, sizeof(o->sent), ev.data, ev.len);
			break;
		case LB_REPLAY_FORWARD:
			append(o->fwd, sizeof(o->fwd), ev.data, ev.len);
			break;
		case LB_REPLAY_DONE:
			o->done++;
			break;
		case LB_REPLAY_FAIL:
			o->fail++;
			break;
		}
	}
	CHECK_INT(k, 0);
}

static void rfeed(struct lb_replay *rp, struct rrun *o, const char *text, bool bytewise)
{
	size_t len = strlen(text);

	if (!bytewise) {
		lb_replay_feed(rp, text, len);
		rpump(rp, o);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		lb_replay_feed(rp, text + i, 1);
		rpump(rp, o);
	}
}

static struct lb_credentials creds(enum lb_login_mech mech, const char *authz, const char *user,
				   const char *pass)
{
	struct lb_credentials c;

	memset(&c, 0, sizeof(c));
	c.mech = mech;
	snprintf(c.authzid, sizeof(c.authzid), "%s", authz);
	snprintf(c.user, sizeof(c.user), "%s", user);
	snprintf(c.pass, sizeof(c.pass), "%s", pass);
	snprintf(c.tag, sizeof(c.tag), "A7");
	snprintf(c.helo, sizeof(c.helo), "client.example");
	return c;
}

PN_TEST(test_replay_imap)
{
	for (int bw = 0; bw < 2; bw++) {
		struct lb_credentials c = creds(LB_MECH_LOGIN, "", "alice", "se\"cret");
		struct lb_replay *rp = lb_replay_new(LB_FAMILY_IMAP, &c);
		struct rrun o;
		const uint8_t *rest;
		size_t rest_len;

		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "* OK [CAPABILITY IMAP4rev2] fe1 ready\r\n", bw);
		CHECK_STR(o.sent, "A7 LOGIN \"alice\" \"se\\\"cret\"\r\n");
		CHECK_STR(o.fwd, "");
		rfeed(rp, &o, "* CAPABILITY IMAP4rev2 IDLE\r\nA7 OK [CAPABILITY IMAP4rev2] Logged in\r\n"
			      "* 3 EXISTS\r\n", bw);
		CHECK_STR(o.fwd, "* CAPABILITY IMAP4rev2 IDLE\r\nA7 OK [CAPABILITY IMAP4rev2] Logged in\r\n");
		CHECK_INT(o.done, 1);
		CHECK(lb_replay_login_ok(rp));
		CHECK_INT(o.fail, 0);
		lb_replay_rest(rp, &rest, &rest_len);
		CHECK_MEM(rest, rest_len, "* 3 EXISTS\r\n", 12);
		lb_replay_free(&rp);
		CHECK(rp == NULL);
	}
	{
		/* Non-ASCII goes as LITERAL+; PLAIN as SASL-IR, or after "+". */
		struct lb_credentials c = creds(LB_MECH_LOGIN, "", "j\xc3\xbcrgen", "pw");
		struct lb_replay *rp = lb_replay_new(LB_FAMILY_IMAP, &c);
		struct rrun o;

		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "* OK hi\r\n", false);
		CHECK_STR(o.sent, "A7 LOGIN {7+}\r\nj\xc3\xbcrgen \"pw\"\r\n");
		lb_replay_free(&rp);

		c = creds(LB_MECH_PLAIN, "", "bob", "pw");
		rp = lb_replay_new(LB_FAMILY_IMAP, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "* OK hi\r\n+ \r\nA7 NO [AUTHENTICATIONFAILED] nope\r\n", false);
		CHECK_STR(o.sent, "A7 AUTHENTICATE PLAIN AGJvYgBwdw==\r\nAGJvYgBwdw==\r\n");
		CHECK_STR(o.fwd, "A7 NO [AUTHENTICATIONFAILED] nope\r\n");
		CHECK_INT(o.done, 1);
		CHECK(!lb_replay_login_ok(rp));
		lb_replay_free(&rp);

		rp = lb_replay_new(LB_FAMILY_IMAP, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "* BYE [UNAVAILABLE] shutting down\r\n", false);
		CHECK_INT(o.fail, 1);
		CHECK_STR(o.sent, "");
		lb_replay_free(&rp);
	}
}

PN_TEST(test_replay_pop3)
{
	for (int bw = 0; bw < 2; bw++) {
		struct lb_credentials c = creds(LB_MECH_LOGIN, "", "alice", "pass word");
		struct lb_replay *rp = lb_replay_new(LB_FAMILY_POP3, &c);
		struct rrun o;

		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "+OK fe1 ready\r\n", bw);
		CHECK_STR(o.sent, "USER alice\r\n");
		rfeed(rp, &o, "+OK\r\n", bw);
		CHECK_STR(o.sent, "USER alice\r\nPASS pass word\r\n");
		CHECK_STR(o.fwd, "");
		rfeed(rp, &o, "+OK Logged in.\r\n", bw);
		CHECK_STR(o.fwd, "+OK Logged in.\r\n");
		CHECK_INT(o.done, 1);
		CHECK(lb_replay_login_ok(rp));
		lb_replay_free(&rp);
	}
	{
		struct lb_credentials c = creds(LB_MECH_LOGIN, "", "alice", "pw");
		struct lb_replay *rp = lb_replay_new(LB_FAMILY_POP3, &c);
		struct rrun o;

		/* USER refused: that is what the client's PASS hears. */
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "+OK hi\r\n-ERR [SYS/TEMP] busy\r\n", false);
		CHECK_STR(o.fwd, "-ERR [SYS/TEMP] busy\r\n");
		CHECK_INT(o.done, 1);
		CHECK(!lb_replay_login_ok(rp));
		lb_replay_free(&rp);

		c = creds(LB_MECH_PLAIN, "", "bob", "pw");
		rp = lb_replay_new(LB_FAMILY_POP3, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "+OK hi\r\n-ERR [AUTH] Authentication failed.\r\n", false);
		CHECK_STR(o.sent, "AUTH PLAIN AGJvYgBwdw==\r\n");
		CHECK_STR(o.fwd, "-ERR [AUTH] Authentication failed.\r\n");
		lb_replay_free(&rp);

		rp = lb_replay_new(LB_FAMILY_POP3, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "-ERR [SYS/TEMP] go away\r\n", false);
		CHECK_INT(o.fail, 1);
		lb_replay_free(&rp);
	}
}

PN_TEST(test_replay_smtp)
{
	for (int bw = 0; bw < 2; bw++) {
		struct lb_credentials c = creds(LB_MECH_LOGIN, "", "alice", "secret");
		struct lb_replay *rp = lb_replay_new(LB_FAMILY_SMTP, &c);
		struct rrun o;

		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "220-fe1 ESMTP\r\n220 more\r\n", bw);
		CHECK_STR(o.sent, "EHLO client.example\r\n");
		rfeed(rp, &o, "250-fe1\r\n250-AUTH PLAIN\r\n250 SIZE 10\r\n", bw);
		CHECK_STR(o.sent, "EHLO client.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
		rfeed(rp, &o, "235 2.7.0 Authentication successful\r\n", bw);
		CHECK_STR(o.fwd, "235 2.7.0 Authentication successful\r\n");
		CHECK_INT(o.done, 1);
		CHECK(lb_replay_login_ok(rp));
		CHECK_INT(o.fail, 0);
		lb_replay_free(&rp);
	}
	{
		struct lb_credentials c = creds(LB_MECH_PLAIN, "", "bob", "pw");
		struct lb_replay *rp = lb_replay_new(LB_FAMILY_SMTP, &c);
		struct rrun o;

		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "220 hi\r\n250 ok\r\n334 \r\n535-5.7.8 Bad\r\n535 5.7.8 credentials\r\n",
		      false);
		CHECK_STR(o.fwd, "535-5.7.8 Bad\r\n535 5.7.8 credentials\r\n");
		CHECK_INT(o.done, 1);
		CHECK(!lb_replay_login_ok(rp));
		lb_replay_free(&rp);

		rp = lb_replay_new(LB_FAMILY_SMTP, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "421 4.3.2 shutting down\r\n", false);
		CHECK_INT(o.fail, 1);
		lb_replay_free(&rp);

		rp = lb_replay_new(LB_FAMILY_SMTP, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "220 hi\r\n550 no\r\n", false);
		CHECK_INT(o.fail, 1);
		lb_replay_free(&rp);

		rp = lb_replay_new(LB_FAMILY_SMTP, &c);
		memset(&o, 0, sizeof(o));
		rfeed(rp, &o, "HTTP/1.1 400 Bad\r\n", false);
		CHECK_INT(o.fail, 1);
		lb_replay_free(&rp);
	}
}

PN_TEST(test_sasl_plain)
{
	struct lb_credentials c;
	struct pn_buf b;

	memset(&c, 0, sizeof(c));
	CHECK_INT(lb_sasl_plain_decode("AGJvYgBwdw==", 12, &c), 0);
	CHECK_STR(c.user, "bob");
	CHECK_INT(lb_sasl_plain_decode("Ym9iAHB3", 8, &c), -1);	 /* one NUL */
	CHECK_INT(lb_sasl_plain_decode("AAB3", 4, &c), -1);	 /* empty user */
	CHECK_INT(lb_sasl_plain_decode("AGJvYgA=", 8, &c), -1);	 /* empty password */
	CHECK_INT(lb_sasl_plain_decode("AGIAcA1x", 8, &c), -1);	 /* CR in password */
	CHECK_INT(lb_sasl_plain_decode("AGJvYgBwdw", 10, &c), -1); /* bad base64 */
	c = creds(LB_MECH_PLAIN, "admin", "bob", "pw");
	pn_buf_init(&b, 1024);
	CHECK_INT(lb_sasl_plain_encode(&c, &b), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "YWRtaW4AYm9iAHB3", 16);
	pn_buf_free(&b);
}

PN_TEST_MAIN("test-lb-login",
	     PN_TEST_CASE(test_imap_greeting_and_capability),
	     PN_TEST_CASE(test_imap_login_forms),
	     PN_TEST_CASE(test_imap_authenticate_plain),
	     PN_TEST_CASE(test_imap_refusals),
	     PN_TEST_CASE(test_imap_starttls_discards_pipelined),
	     PN_TEST_CASE(test_imap_logout_rest_and_limits),
	     PN_TEST_CASE(test_pop3_dialogue),
	     PN_TEST_CASE(test_pop3_auth_and_garbage),
	     PN_TEST_CASE(test_smtp_dialogue),
	     PN_TEST_CASE(test_smtp_auth_forms_and_garbage),
	     PN_TEST_CASE(test_replay_imap),
	     PN_TEST_CASE(test_replay_pop3),
	     PN_TEST_CASE(test_replay_smtp),
	     PN_TEST_CASE(test_sasl_plain))
