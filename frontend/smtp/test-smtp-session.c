/* Unit tests for the SMTP / LMTP session engine (smtp-session.c): whole
 * sessions fed one byte at a time in each mode, pipelined batches, every
 * reply path, dot-stuffing and BDAT across every split, the smuggling
 * variants, STARTTLS command injection, AUTH PLAIN / LOGIN, LMTP
 * per-recipient replies, limits, shutdown, and result calls made at the
 * wrong time. Requests are answered by a canned daemon (see answer()). */
#include "smtp-session.h"

#include "postern/base64.h"
#include "postern/testing.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXED_TIME 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define DATE "Tue, 14 Nov 2023 22:13:20 +0000"

static time_t fixed_clock(void)
{
	return FIXED_TIME;
}

struct delivered {
	char *msg;
	size_t len, received_len;
	char mail_from[300];
	char rcpts[8][300];
	char orcpt[8][600];
	unsigned int notify[8];
	uint64_t ids[8];
	size_t rcpt_count;
	enum smtp_body body;
	bool smtputf8, authenticated;
	uint64_t size, account_id;
	enum smtp_dsn_ret ret;
	char envid[128], auth[300];
};

struct h {
	struct smtp_session *s;
	char out[65536];
	size_t out_len;
	char taken[65536];
	char actions[512];	/* one letter per action, see handle() */
	size_t nactions;
	bool closed, manual, no_auto_tls, fatal;
	struct smtp_action pending;
	bool has_pending;
	size_t discarded;
	unsigned int rcpt_checks, sender_checks, auth_checks, delivers, tls_starts;
	char mech[8], authzid[300], authcid[300], password[300];
	char rcpt_seen[16][300];
	struct delivered dl[8];
	const char *queue_id;
};

static struct smtp_settings settings(enum smtp_mode mode)
{
	struct smtp_settings set;

	memset(&set, 0, sizeof(set));
	set.mode = mode;
	set.hostname = "mx.example.test";
	set.client_addr = "192.0.2.7";
	set.session_id = "s1";
	set.clock = fixed_clock;
	return set;
}

static void start_with(struct h *h, const struct smtp_settings *set)
{
	const char *error = NULL;

	memset(h, 0, sizeof(*h));
	h->queue_id = "Q1";
	h->s = smtp_session_new(set, &error);
	if (h->s == NULL)
		fprintf(stderr, "smtp_session_new: %s\n", error);
	CHECK(h->s != NULL);
}

static bool prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* Canned daemon answers, chosen by the local part. */
static void answer(struct h *h, const struct smtp_action *a)
{
	switch (a->type) {
	case SMTP_ACTION_AUTH_VERIFY:
		if (prefix(a->u.auth.password, "secret"))
			CHECK_INT(smtp_session_auth_result(h->s, SMTP_AUTH_OK, 42,
							   "user@example.test"), 0);
		else if (strcmp(a->u.auth.password, "tempfail") == 0)
			CHECK_INT(smtp_session_auth_result(h->s, SMTP_AUTH_TEMPFAIL, 0, NULL), 0);
		else
			CHECK_INT(smtp_session_auth_result(h->s, SMTP_AUTH_BAD, 0, NULL), 0);
		break;
	case SMTP_ACTION_SENDER_CHECK: {
		const char *from = a->u.sender.address;
		enum smtp_sender_status st = SMTP_SENDER_DENIED;

		if (strcmp(from, "user@example.test") == 0)
			st = SMTP_SENDER_OK;
		else if (strcmp(from, "temp@example.test") == 0)
			st = SMTP_SENDER_TEMPFAIL;
		CHECK_INT(smtp_session_sender_result(h->s, st), 0);
		break;
	}
	case SMTP_ACTION_RCPT_CHECK: {
		const char *r = a->u.rcpt.rcpt->address;
		enum smtp_rcpt_status st = SMTP_RCPT_OK;

		if (prefix(r, "unknown"))
			st = SMTP_RCPT_UNKNOWN;
		else if (prefix(r, "relay"))
			st = SMTP_RCPT_RELAY_DENIED;
		else if (prefix(r, "disabled"))
			st = SMTP_RCPT_DISABLED;
		else if (prefix(r, "full"))
			st = SMTP_RCPT_OVER_QUOTA;
		else if (prefix(r, "temp"))
			st = SMTP_RCPT_TEMPFAIL;
		CHECK_INT(smtp_session_rcpt_result(h->s, st, 1000 + h->rcpt_checks), 0);
		break;
	}
	case SMTP_ACTION_DELIVER: {
		const struct smtp_envelope *env = a->u.deliver.env;
		enum smtp_deliver_status st[16];

		CHECK(env->rcpt_count <= 16);
		for (size_t i = 0; i < env->rcpt_count && i < 16; i++) {
			const char *r = env->rcpts[i].address;
			st[i] = SMTP_DELIVER_OK;
			if (prefix(r, "dtemp"))
				st[i] = SMTP_DELIVER_TEMPFAIL;
			else if (prefix(r, "dfull"))
				st[i] = SMTP_DELIVER_OVER_QUOTA;
			else if (prefix(r, "dbig"))
				st[i] = SMTP_DELIVER_QUOTA_EXCEEDED;
			else if (prefix(r, "dperm"))
				st[i] = SMTP_DELIVER_PERMFAIL;
			else if (prefix(r, "dfrom"))
				st[i] = SMTP_DELIVER_SENDER_DENIED;
		}
		CHECK_INT(smtp_session_deliver_result(h->s, st, env->rcpt_count, h->queue_id), 0);
		break;
	}
	default:
		CHECK(!"not a request");
	}
}

static void record_deliver(struct h *h, const struct smtp_action *a)
{
	const struct smtp_envelope *env = a->u.deliver.env;
	struct delivered *d;

	if (h->delivers >= 8)
		return;
	d = &h->dl[h->delivers];
	free(d->msg);
	d->msg = malloc(a->u.deliver.message_len + 1);
	memcpy(d->msg, a->u.deliver.message, a->u.deliver.message_len);
	d->msg[a->u.deliver.message_len] = '\0';
	d->len = a->u.deliver.message_len;
	d->received_len = a->u.deliver.received_len;
	snprintf(d->mail_from, sizeof(d->mail_from), "%s", env->mail_from);
	d->rcpt_count = env->rcpt_count;
	for (size_t i = 0; i < env->rcpt_count && i < 8; i++) {
		snprintf(d->rcpts[i], sizeof(d->rcpts[i]), "%s", env->rcpts[i].address);
		snprintf(d->orcpt[i], sizeof(d->orcpt[i]), "%s",
			 env->rcpts[i].orcpt != NULL ? env->rcpts[i].orcpt : "");
		d->notify[i] = env->rcpts[i].notify;
		d->ids[i] = env->rcpts[i].id;
	}
	d->body = env->body;
	d->smtputf8 = env->smtputf8;
	d->size = env->size;
	d->ret = env->ret;
	d->authenticated = env->authenticated;
	d->account_id = env->account_id;
	snprintf(d->envid, sizeof(d->envid), "%s", env->envid != NULL ? env->envid : "");
	snprintf(d->auth, sizeof(d->auth), "%s", env->auth != NULL ? env->auth : "");
}

/* Actions are logged as letters: S send, T start TLS, C close, A auth,
 * F sender check, R recipient check, D deliver. */
static void handle(struct h *h, const struct smtp_action *a)
{
	static const char letters[] = "?STCAFRD";

	if (h->nactions < sizeof(h->actions) - 1)
		h->actions[h->nactions++] = letters[a->type];
	CHECK(!h->closed);
	switch (a->type) {
	case SMTP_ACTION_SEND:
		CHECK(a->u.send.len > 0);
		CHECK(h->out_len + a->u.send.len < sizeof(h->out));
		if (h->out_len + a->u.send.len < sizeof(h->out)) {
			memcpy(h->out + h->out_len, a->u.send.data, a->u.send.len);
			h->out_len += a->u.send.len;
		}
		return;
	case SMTP_ACTION_START_TLS:
		h->tls_starts++;
		h->discarded = a->u.start_tls.discarded;
		if (!h->no_auto_tls) {
			struct smtp_tls_info info = { "TLSv1.3", "TLS_AES_256_GCM_SHA384" };
			CHECK_INT(smtp_session_tls_started(h->s, &info), 0);
		}
		return;
	case SMTP_ACTION_CLOSE:
		h->closed = true;
		return;
	case SMTP_ACTION_AUTH_VERIFY:
		h->auth_checks++;
		snprintf(h->mech, sizeof(h->mech), "%s", a->u.auth.mechanism);
		snprintf(h->authzid, sizeof(h->authzid), "%s", a->u.auth.authzid);
		snprintf(h->authcid, sizeof(h->authcid), "%s", a->u.auth.authcid);
		snprintf(h->password, sizeof(h->password), "%s", a->u.auth.password);
		break;
	case SMTP_ACTION_SENDER_CHECK:
		h->sender_checks++;
		CHECK(a->u.sender.address == a->u.sender.env->mail_from);
		break;
	case SMTP_ACTION_RCPT_CHECK:
		if (h->rcpt_checks < 16)
			snprintf(h->rcpt_seen[h->rcpt_checks], sizeof(h->rcpt_seen[0]), "%s",
				 a->u.rcpt.rcpt->address);
		h->rcpt_checks++;
		break;
	case SMTP_ACTION_DELIVER:
		record_deliver(h, a);
		h->delivers++;
		break;
	}
	if (h->manual) {
		h->pending = *a;
		h->has_pending = true;
		return;
	}
	answer(h, a);
}

static void drive(struct h *h)
{
	struct smtp_action a;
	int r;

	while (!h->has_pending && (r = smtp_session_next(h->s, &a)) == 1)
		handle(h, &a);
	if (!h->has_pending && r < 0)
		h->fatal = true;
}

static void answer_pending(struct h *h)
{
	CHECK(h->has_pending);
	if (h->has_pending) {
		h->has_pending = false;
		answer(h, &h->pending);
	}
	drive(h);
}

static void feed(struct h *h, const void *data, size_t len)
{
	const char *p = data;

	drive(h);
	while (len > 0) {
		size_t n = smtp_session_feed(h->s, p, len);
		p += n;
		len -= n;
		drive(h);
		if (n == 0 && h->has_pending)
			break;
		CHECK(n > 0 || len == 0);
		if (n == 0)
			break;
	}
}

static void feed_str(struct h *h, const char *s)
{
	feed(h, s, strlen(s));
}

static void feed_bytewise(struct h *h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		feed(h, s + i, 1);
}

/* The replies sent since the last take(). */
static const char *take(struct h *h)
{
	memcpy(h->taken, h->out, h->out_len);
	h->taken[h->out_len] = '\0';
	h->out_len = 0;
	return h->taken;
}

static void finish(struct h *h)
{
	smtp_session_free(&h->s);
	CHECK(h->s == NULL);
	for (size_t i = 0; i < 8; i++) {
		free(h->dl[i].msg);
		h->dl[i].msg = NULL;
	}
}

#define EXPECT(h, in, want)                                                   \
	do {                                                                  \
		feed_str((h), (in));                                          \
		CHECK_STR(take(h), (want));                                   \
	} while (0)

#define EXPECT_PREFIX(h, in, want)                                            \
	do {                                                                  \
		feed_str((h), (in));                                          \
		const char *got_ = take(h);                                   \
		if (!prefix(got_, (want))) {                                  \
			fprintf(stderr, "%s:%d: got \"%s\", want \"%s...\"\n", \
				__FILE__, __LINE__, got_, (want));            \
			pn_test_failures_++;                                  \
		}                                                             \
	} while (0)

#define EHLO_MX                                                               \
	"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"      \
	"250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"         \
	"250-CHUNKING\r\n250 DSN\r\n"

static void b64(const void *p, size_t n, char *out, size_t size)
{
	CHECK(pn_base64_encode(p, n, out, size) >= 0);
}

struct step {
	const char *in;
	const char *out;
};

/* Feeds each step one byte at a time: no action may come out before the
 * step's last byte, and the step's replies after it. */
static void run_bytewise(struct h *h, const struct step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(steps[i].in);

		for (size_t j = 0; j < len; j++) {
			size_t before = h->nactions;
			feed(h, steps[i].in + j, 1);
			if (j + 1 < len && h->nactions != before) {
				fprintf(stderr, "step %zu: action before the last byte (at %zu)\n",
					i, j);
				pn_test_failures_++;
			}
		}
		CHECK_STR(take(h), steps[i].out);
	}
}

/* ---- whole sessions, byte at a time ----------------------------------- */

PN_TEST(test_mx_session_bytewise)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;
	static const struct step steps[] = {
		{ "EHLO client.example\r\n", EHLO_MX },
		{ "MAIL FROM:<alice@remote.example> SIZE=40 BODY=8BITMIME RET=HDRS ENVID=x+2By\r\n",
		  "250 2.1.0 Ok\r\n" },
		{ "RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test\r\n",
		  "250 2.1.5 Ok\r\n" },
		{ "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n" },
		{ "Subject: hi\r\n\r\n..dot line\r\nbody\r\n.\r\n", "250 2.0.0 Ok: queued as Q1\r\n" },
		{ "NOOP\r\n", "250 2.0.0 Ok\r\n" },
		{ "QUIT\r\n", "221 2.0.0 Bye\r\n" },
	};

	start_with(&h, &set);
	drive(&h);
	CHECK_STR(take(&h), "220 mx.example.test ESMTP Postern\r\n");
	run_bytewise(&h, steps, sizeof(steps) / sizeof(steps[0]));
	CHECK(h.closed);
	CHECK_STR(h.actions, "SSSRSSDSSSC");
	CHECK_INT(h.delivers, 1);
	CHECK_STR(h.dl[0].msg,
		  "Received: from client.example ([192.0.2.7])\r\n"
		  "\tby mx.example.test (Postern) with ESMTP id s1.1\r\n"
		  "\tfor <bob@example.test>;\r\n"
		  "\t" DATE "\r\n"
		  "Subject: hi\r\n\r\n.dot line\r\nbody\r\n");
	CHECK_STR(h.dl[0].msg + h.dl[0].received_len, "Subject: hi\r\n\r\n.dot line\r\nbody\r\n");
	CHECK_STR(h.dl[0].mail_from, "alice@remote.example");
	CHECK_INT(h.dl[0].rcpt_count, 1);
	CHECK_STR(h.dl[0].rcpts[0], "bob@example.test");
	CHECK_STR(h.dl[0].orcpt[0], "rfc822;bob@example.test");
	CHECK_INT(h.dl[0].notify[0], SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
	CHECK_INT(h.dl[0].ids[0], 1001); /* the first check answered */
	CHECK_INT(h.dl[0].body, SMTP_BODY_8BITMIME);
	CHECK_INT(h.dl[0].size, 40);
	CHECK_INT(h.dl[0].ret, SMTP_RET_HDRS);
	CHECK_STR(h.dl[0].envid, "x+2By");
	CHECK(!h.dl[0].authenticated);
	/* after CLOSE the session takes input and does nothing */
	CHECK_INT(smtp_session_feed(h.s, "NOOP\r\n", 6), 6);
	drive(&h);
	CHECK_INT(h.out_len, 0);
	finish(&h);
}

PN_TEST(test_submission_session_bytewise)
{
	struct smtp_settings set = settings(SMTP_MODE_SUBMISSION);
	char plain[64], auth[128];
	struct h h;

	set.tls_active = true;
	set.tls_info.version = "TLSv1.3";
	set.tls_info.cipher = "TLS_AES_256_GCM_SHA384";
	b64("\0user@example.test\0secret", 25, plain, sizeof(plain));
	snprintf(auth, sizeof(auth), "AUTH PLAIN %s\r\n", plain);
	const struct step steps[] = {
		{ "EHLO laptop\r\n",
		  "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
		  "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
		  "250-CHUNKING\r\n250-DSN\r\n250 AUTH PLAIN LOGIN\r\n" },
		{ "MAIL FROM:<user@example.test>\r\n", "530 5.7.0 Authentication required\r\n" },
		{ auth, "235 2.7.0 Authentication successful\r\n" },
		{ "MAIL FROM:<other@example.test>\r\n",
		  "553 5.7.1 Sender address not owned by the authenticated user\r\n" },
		{ "MAIL FROM:<user@example.test> AUTH=<>\r\n", "250 2.1.0 Ok\r\n" },
		{ "RCPT TO:<friend@remote.example>\r\n", "250 2.1.5 Ok\r\n" },
		{ "BDAT 12\r\nSubject: x\r\n", "250 2.0.0 12 octets received\r\n" },
		{ "BDAT 7 LAST\r\nhello\r\n", "250 2.0.0 Ok: queued as Q1\r\n" },
		{ "QUIT\r\n", "221 2.0.0 Bye\r\n" },
	};

	start_with(&h, &set);
	drive(&h);
	CHECK_STR(take(&h), "220 mx.example.test ESMTP Postern\r\n");
	run_bytewise(&h, steps, sizeof(steps) / sizeof(steps[0]));
	CHECK(h.closed);
	CHECK_INT(h.auth_checks, 1);
	CHECK_STR(h.mech, "PLAIN");
	CHECK_STR(h.authzid, "");
	CHECK_STR(h.authcid, "user@example.test");
	CHECK_STR(h.password, "secret");
	CHECK_INT(h.sender_checks, 2);
	CHECK_INT(h.delivers, 1);
	CHECK_STR(h.dl[0].msg,
		  "Received: from laptop ([192.0.2.7])\r\n"
		  "\tby mx.example.test (Postern) with ESMTPSA id s1.1\r\n"
		  "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
		  "\t(authenticated as user@example.test)\r\n"
		  "\tfor <friend@remote.example>;\r\n"
		  "\t" DATE "\r\n"
		  "Subject: x\r\nhello\r\n");
	CHECK(h.dl[0].authenticated);
	CHECK_INT(h.dl[0].account_id, 42);
	CHECK_STR(h.dl[0].auth, "<>");
	finish(&h);
}

PN_TEST(test_lmtp_session_bytewise)
{
	struct smtp_settings set = settings(SMTP_MODE_LMTP);
	struct h h;
	static const struct step steps[] = {
		{ "EHLO mta.example\r\n", "500 5.5.1 This is LMTP: use LHLO\r\n" },
		{ "LHLO mta.example\r\n", EHLO_MX },
		{ "MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n" },
		{ "RCPT TO:<a@example.test>\r\n", "250 2.1.5 Ok\r\n" },
		{ "RCPT TO:<unknown@example.test>\r\n",
		  "550 5.1.1 <unknown@example.test> User unknown\r\n" },
		{ "RCPT TO:<dfull@example.test>\r\n", "250 2.1.5 Ok\r\n" },
		{ "RCPT TO:<dperm@example.test>\r\n", "250 2.1.5 Ok\r\n" },
		{ "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n" },
		{ "x\r\n.\r\n",
		  "250 2.0.0 <a@example.test> Ok: queued as Q1\r\n"
		  "452 4.2.2 <dfull@example.test> Mailbox full\r\n"
		  "554 5.0.0 <dperm@example.test> Delivery failed\r\n" },
		{ "QUIT\r\n", "221 2.0.0 Bye\r\n" },
	};

	start_with(&h, &set);
	drive(&h);
	CHECK_STR(take(&h), "220 mx.example.test LMTP Postern\r\n");
	run_bytewise(&h, steps, sizeof(steps) / sizeof(steps[0]));
	CHECK(h.closed);
	CHECK_INT(h.delivers, 1);
	CHECK_INT(h.dl[0].rcpt_count, 3);
	CHECK_STR(h.dl[0].mail_from, "");
	/* several recipients: no "for" clause */
	CHECK_STR(h.dl[0].msg,
		  "Received: from mta.example ([192.0.2.7])\r\n"
		  "\tby mx.example.test (Postern) with LMTP id s1.1;\r\n"
		  "\t" DATE "\r\n"
		  "x\r\n");
	finish(&h);
}

/* ---- EHLO keywords ---------------------------------------------------- */

PN_TEST(test_ehlo_keywords)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	set.starttls_available = true;
	start_with(&h, &set);
	EXPECT(&h, "EHLO c\r\n",
	       "220 mx.example.test ESMTP Postern\r\n"
	       "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
	       "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	       "250-CHUNKING\r\n250-DSN\r\n250 STARTTLS\r\n");
	EXPECT(&h, "HELO c\r\n", "250 mx.example.test\r\n");
	EXPECT(&h, "LHLO c\r\n", "500 5.5.2 Command not recognized\r\n");
	EXPECT(&h, "EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
	EXPECT(&h, "EHLO a b\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
	EXPECT(&h, "AUTH PLAIN\r\n", "502 5.5.1 AUTH not available\r\n");
	finish(&h);

	/* submission on plaintext, untrusted: no AUTH until TLS */
	set = settings(SMTP_MODE_SUBMISSION);
	set.starttls_available = true;
	set.max_message_size = 1000;
	start_with(&h, &set);
	drive(&h);
	take(&h);
	EXPECT(&h, "EHLO c\r\n",
	       "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	       "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	       "250-CHUNKING\r\n250-DSN\r\n250 STARTTLS\r\n");
	EXPECT(&h, "AUTH PLAIN\r\n",
	       "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
	EXPECT(&h, "STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n");
	CHECK_INT(h.tls_starts, 1);
	EXPECT(&h, "EHLO c\r\n",
	       "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	       "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	       "250-CHUNKING\r\n250-DSN\r\n250 AUTH PLAIN LOGIN\r\n");
	EXPECT(&h, "STARTTLS\r\n", "503 5.5.1 TLS already active\r\n");
	finish(&h);

	/* trusted listener: AUTH without TLS */
	set = settings(SMTP_MODE_SUBMISSION);
	set.trusted = true;
	start_with(&h, &set);
	drive(&h);
	take(&h);
	EXPECT(&h, "EHLO c\r\n",
	       "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
	       "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	       "250-CHUNKING\r\n250-DSN\r\n250 AUTH PLAIN LOGIN\r\n");
	EXPECT(&h, "STARTTLS\r\n", "502 5.5.1 STARTTLS not available\r\n");
	finish(&h);
}

/* ---- pipelining ------------------------------------------------------- */

PN_TEST(test_pipelining_batches)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	start_with(&h, &set);
	feed_str(&h, "EHLO c\r\nNOOP\r\nMAIL FROM:<a@remote.example>\r\n"
		     "RCPT TO:<b@example.test>\r\nRCPT TO:<unknown@example.test>\r\n"
		     "RCPT TO:<c@example.test>\r\nDATA\r\n");
	/* the greeting went out before the input came; then the EHLO, NOOP and
	 * MAIL replies go in one SEND before the first recipient check, and
	 * each later check flushes the reply before it. */
	CHECK_STR(h.actions, "SSRSRSRS");
	CHECK_STR(take(&h),
		  "220 mx.example.test ESMTP Postern\r\n" EHLO_MX "250 2.0.0 Ok\r\n"
		  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		  "550 5.1.1 <unknown@example.test> User unknown\r\n"
		  "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	h.nactions = 0;
	memset(h.actions, 0, sizeof(h.actions));
	/* message, end, and the next transaction pipelined after it */
	feed_str(&h, "hello\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n");
	CHECK_STR(h.actions, "DSC");
	CHECK_STR(take(&h),
		  "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n");
	CHECK_INT(h.dl[0].rcpt_count, 2);
	finish(&h);
}

PN_TEST(test_request_blocks_later_commands)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct smtp_action a;
	struct h h;

	start_with(&h, &set);
	EXPECT(&h, "EHLO c\r\n", "220 mx.example.test ESMTP Postern\r\n" EHLO_MX);
	h.manual = true;
	feed_str(&h, "MAIL FROM:<a@remote.example>\r\nRCPT TO:<b@example.test>\r\nNOOP\r\n"
		     "RCPT TO:<unknown@example.test>\r\nNOOP\r\n");
	CHECK(h.has_pending);
	CHECK_INT(h.pending.type, SMTP_ACTION_RCPT_CHECK);
	CHECK_STR(take(&h), "250 2.1.0 Ok\r\n");
	/* nothing runs while the check is outstanding */
	CHECK_INT(smtp_session_next(h.s, &a), 0);
	CHECK_INT(smtp_session_next(h.s, &a), 0);
	/* more input is buffered, not run */
	CHECK_INT(smtp_session_feed(h.s, "NOOP\r\n", 6), 6);
	CHECK_INT(smtp_session_next(h.s, &a), 0);
	answer_pending(&h);
	CHECK(h.has_pending);
	CHECK_STR(h.pending.u.rcpt.rcpt->address, "unknown@example.test");
	CHECK_INT(h.pending.u.rcpt.env->rcpt_count, 1);
	CHECK_STR(take(&h), "250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n");
	answer_pending(&h);
	CHECK(!h.has_pending);
	CHECK_STR(take(&h),
		  "550 5.1.1 <unknown@example.test> User unknown\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
	finish(&h);
}

/* ---- reply codes ------------------------------------------------------- */

static void mx_ready(struct h *h, const struct smtp_settings *set)
{
	start_with(h, set);
	feed_str(h, "EHLO c\r\n");
	take(h);
}

PN_TEST(test_reply_codes_sequence_and_syntax)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	start_with(&h, &set);
	drive(&h);
	take(&h);
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\n", "503 5.5.1 Send EHLO first\r\n");
	EXPECT(&h, "NOOP\r\n", "250 2.0.0 Ok\r\n");
	EXPECT(&h, "STARTTLS\r\n", "502 5.5.1 STARTTLS not available\r\n");
	finish(&h);

	set.max_errors = 100;
	mx_ready(&h, &set);
	EXPECT(&h, "RCPT TO:<b@example.test>\r\n", "503 5.5.1 Need MAIL before RCPT\r\n");
	EXPECT(&h, "DATA\r\n", "503 5.5.1 Need MAIL before DATA\r\n");
	EXPECT(&h, "FOO\r\n", "500 5.5.2 Command not recognized\r\n");
	EXPECT(&h, "\r\n", "500 5.5.2 Command not recognized\r\n");
	EXPECT(&h, "VRFY bob\r\n",
	       "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
	EXPECT(&h, "VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n");
	EXPECT(&h, "EXPN list\r\n", "502 5.5.1 EXPN not available\r\n");
	EXPECT_PREFIX(&h, "HELP\r\n", "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT");
	EXPECT(&h, "noop with args\r\n", "250 2.0.0 Ok\r\n");
	EXPECT(&h, "RSET now\r\n", "501 5.5.4 Syntax: RSET\r\n");
	EXPECT(&h, "RSET  \r\n", "250 2.0.0 Ok\r\n");
	EXPECT(&h, "MAIL TO:<a@b.example>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
	EXPECT(&h, "MAIL FROM:a@b.example\r\n",
	       "501 5.1.7 Bad sender address syntax: address must be enclosed in <>\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example>SIZE=1\r\n", "501 5.5.4 Bad MAIL parameters\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=abc\r\n", "501 5.5.4 Bad MAIL parameters\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=99999999999999999999999\r\n",
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=52428801\r\n",
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
	       "501 5.5.4 BODY must be 7BIT or 8BITMIME\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> FOO=1\r\n",
	       "555 5.5.4 Unsupported MAIL parameter FOO\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\n",
	       "555 5.5.4 Repeated MAIL parameter SIZE\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SMTPUTF8=yes\r\n", "501 5.5.4 Bad MAIL parameters\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> RET=ALL\r\n", "501 5.5.4 Bad MAIL parameters\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> ENVID=a=b\r\n", "501 5.5.4 Bad MAIL parameters\r\n");
	EXPECT(&h, "MAIL FROM:<j\xc3\xb6rg@b.example>\r\n",
	       "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=52428800\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\n", "503 5.5.1 Nested MAIL command\r\n");
	EXPECT(&h, "DATA\r\n", "554 5.5.1 No valid recipients\r\n");
	EXPECT(&h, "RCPT FROM:<b@example.test>\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
	EXPECT(&h, "RCPT TO:<>\r\n",
	       "501 5.1.3 Bad recipient address syntax: null address not allowed here\r\n");
	EXPECT(&h, "RCPT TO:<b@example.test> NOTIFY=NEVER,SUCCESS\r\n",
	       "501 5.5.4 Bad RCPT parameters\r\n");
	EXPECT(&h, "RCPT TO:<b@example.test> ORCPT=rfc822\r\n", "501 5.5.4 Bad RCPT parameters\r\n");
	EXPECT(&h, "RCPT TO:<b@example.test> BAR\r\n", "555 5.5.4 Unsupported RCPT parameter BAR\r\n");
	EXPECT(&h, "RCPT TO:<b@example.test> NOTIFY=DELAY NOTIFY=DELAY\r\n",
	       "555 5.5.4 Repeated RCPT parameter NOTIFY\r\n");
	EXPECT(&h, "RCPT TO:<b\xc3\xa9@example.test>\r\n",
	       "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n");
	EXPECT(&h, "RCPT TO:<unknown@example.test>\r\n",
	       "550 5.1.1 <unknown@example.test> User unknown\r\n");
	EXPECT(&h, "RCPT TO:<relay@elsewhere.example>\r\n",
	       "554 5.7.1 <relay@elsewhere.example> Relay access denied\r\n");
	EXPECT(&h, "RCPT TO:<disabled@example.test>\r\n",
	       "550 5.2.1 <disabled@example.test> Mailbox disabled\r\n");
	EXPECT(&h, "RCPT TO:<full@example.test>\r\n", "452 4.2.2 <full@example.test> Mailbox full\r\n");
	EXPECT(&h, "RCPT TO:<temp@example.test>\r\n",
	       "451 4.3.0 <temp@example.test> Temporary failure, try again later\r\n");
	EXPECT(&h, "RCPT TO:<Postmaster>\r\n", "250 2.1.5 Ok\r\n");
	CHECK_STR(h.rcpt_seen[h.rcpt_checks - 1], "Postmaster");
	EXPECT(&h, "RCPT TO:<@relay.example:\"bob\"@example.test>\r\n", "250 2.1.5 Ok\r\n");
	CHECK_STR(h.rcpt_seen[h.rcpt_checks - 1], "bob@example.test");
	EXPECT(&h, "RCPT TO: <\"b c\"@example.test>\r\n", "250 2.1.5 Ok\r\n");
	CHECK_STR(h.rcpt_seen[h.rcpt_checks - 1], "\"b c\"@example.test");
	EXPECT(&h, "DATA extra\r\n", "501 5.5.4 Syntax: DATA\r\n");
	EXPECT(&h, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&h, ".\r\n", "250 2.0.0 Ok: queued as Q1\r\n");
	CHECK_INT(h.dl[0].rcpt_count, 3);
	CHECK_INT(h.dl[0].len, h.dl[0].received_len);
	/* the transaction is over */
	EXPECT(&h, "RCPT TO:<b@example.test>\r\n", "503 5.5.1 Need MAIL before RCPT\r\n");
	/* commands are case-insensitive, line ends are not negotiable */
	EXPECT(&h, "mail from:<a@b.example> smtputf8\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(&h, "rcpt to:<b\xc3\xa9@example.test>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(&h, "NOOP\n", "500 5.5.2 Line must end with CR LF\r\n");
	EXPECT(&h, "NO\rOP\r\n", "500 5.5.2 Invalid character in command\r\n");
	EXPECT(&h, "NOOP\r\n", "250 2.0.0 Ok\r\n");
	EXPECT(&h, "QUIT\r\n", "221 2.0.0 Bye\r\n");
	CHECK(h.closed);
	finish(&h);
}

PN_TEST(test_null_sender_and_submission_codes)
{
	struct smtp_settings set = settings(SMTP_MODE_SUBMISSION);
	char plain[64], line[128];
	struct h h;

	set.trusted = true;
	mx_ready(&h, &set);
	EXPECT(&h, "AUTH CRAM-MD5\r\n", "504 5.5.4 Unrecognized authentication type\r\n");
	b64("\0user@example.test\0secret", 25, plain, sizeof(plain));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", plain);
	EXPECT(&h, line, "235 2.7.0 Authentication successful\r\n");
	EXPECT(&h, line, "503 5.5.1 Already authenticated\r\n");
	EXPECT(&h, "MAIL FROM:<>\r\n", "553 5.7.1 Null sender not allowed on submission\r\n");
	EXPECT(&h, "MAIL FROM:<temp@example.test>\r\n",
	       "451 4.3.0 Temporary failure, try again later\r\n");
	EXPECT(&h, "MAIL FROM:<user@example.test>\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(&h, "AUTH PLAIN\r\n", "503 5.5.1 Already authenticated\r\n");
	EXPECT(&h, "RCPT TO:<x@remote.example>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(&h, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&h, "From: someone@else.example\r\n\r\nx\r\n.\r\n", "250 2.0.0 Ok: queued as Q1\r\n");
	/* Received: with ESMTPA (no TLS, authenticated) */
	CHECK(strstr(h.dl[0].msg, "with ESMTPA id s1.1\r\n") != NULL);
	CHECK(strstr(h.dl[0].msg, "(using") == NULL);
	EXPECT(&h, "MAIL FROM:<user@example.test>\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(&h, "RCPT TO:<dfrom@example.test>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(&h, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&h, "x\r\n.\r\n", "553 5.7.1 From: header not owned by the authenticated user\r\n");
	CHECK(strstr(h.dl[1].msg, " id s1.2\r\n") != NULL);
	finish(&h);

	/* MX takes the null sender */
	set = settings(SMTP_MODE_MX);
	mx_ready(&h, &set);
	EXPECT(&h, "MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(&h, "AUTH LOGIN\r\n", "502 5.5.1 AUTH not available\r\n");
	finish(&h);
}

PN_TEST(test_smtp_single_reply_worst_wins)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	mx_ready(&h, &set);
	h.queue_id = "bad id!";
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\n"
		     "RCPT TO:<dperm@example.test>\r\nRCPT TO:<dtemp@example.test>\r\nDATA\r\n");
	take(&h);
	EXPECT(&h, "x\r\n.\r\n", "451 4.3.0 Temporary failure, try again later\r\n");
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\n"
		     "RCPT TO:<dbig@example.test>\r\nDATA\r\n");
	take(&h);
	EXPECT(&h, "x\r\n.\r\n", "552 5.2.2 Mailbox full: message exceeds quota\r\n");
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n");
	take(&h);
	/* queue id sanitised */
	EXPECT(&h, "x\r\n.\r\n", "250 2.0.0 Ok: queued as badid\r\n");
	finish(&h);
}

/* ---- DATA: dot-stuffing across every split ---------------------------- */

PN_TEST(test_dot_stuffing_every_split)
{
	static const char content[] = "..leading\r\n...two\r\n.x\r\nend.\r\n\r\n..\r\n.\r\nNOOP\r\n";
	static const char want[] = ".leading\r\n..two\r\nx\r\nend.\r\n\r\n.\r\n";
	size_t len = strlen(content);
	struct smtp_settings set = settings(SMTP_MODE_MX);

	for (size_t cut = 0; cut <= len; cut++) {
		struct h h;

		mx_ready(&h, &set);
		feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n");
		take(&h);
		feed(&h, content, cut);
		feed(&h, content + cut, len - cut);
		CHECK_STR(take(&h), "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n");
		CHECK_INT(h.delivers, 1);
		if (h.delivers == 1)
			CHECK_STR(h.dl[0].msg + h.dl[0].received_len, want);
		finish(&h);
	}
	/* and byte at a time */
	struct h h;
	mx_ready(&h, &set);
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n");
	take(&h);
	feed_bytewise(&h, content, len);
	CHECK_STR(take(&h), "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n");
	CHECK_STR(h.dl[0].msg + h.dl[0].received_len, want);
	finish(&h);
}

PN_TEST(test_big_message_streams)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	size_t n = 300000;
	char *content = malloc(n + 8);
	struct h h;

	/* 300 kB of 100-byte lines, fed in odd-sized pieces */
	for (size_t i = 0; i < n; i += 100) {
		memset(content + i, 'a' + (char)(i / 100 % 26), 98);
		content[i + 98] = '\r';
		content[i + 99] = '\n';
	}
	memcpy(content + n, ".\r\n", 3);
	mx_ready(&h, &set);
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n");
	take(&h);
	for (size_t i = 0; i < n + 3; i += 7777)
		feed(&h, content + i, i + 7777 <= n + 3 ? 7777 : n + 3 - i);
	CHECK_STR(take(&h), "250 2.0.0 Ok: queued as Q1\r\n");
	CHECK_INT(h.dl[0].len - h.dl[0].received_len, n);
	CHECK(memcmp(h.dl[0].msg + h.dl[0].received_len, content, n) == 0);
	free(content);
	finish(&h);
}

/* Content fed after the 354 with nothing buffered is decoded straight from
 * the fed bytes: one feed() takes all of it (more than the input room),
 * what follows the dot is buffered and answered in order, and the message
 * is the same as when the content came in one piece with the DATA line
 * (decoded from the input buffer). */
PN_TEST(test_data_fed_directly)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	static const char head[] = "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n";
	size_t n = 200000, len, dots = 0;
	char *content = malloc(n + 32), *line;
	struct h a, b;

	set.input_buffer = SMTP_AUTH_LINE_MAX + 2;
	for (size_t i = 0; i < n; i += 100) {
		memset(content + i, 'a' + (char)(i / 100 % 26), 98);
		if ((i / 100) % 3 == 0) {
			content[i] = '.';	/* a stuffed dot */
			dots++;
		}
		content[i + 98] = '\r';
		content[i + 99] = '\n';
	}
	memcpy(content + n, ".\r\nNOOP\r\n", 10);
	len = n + 10;
	/* a: the content after the 354, in one feed() */
	mx_ready(&a, &set);
	EXPECT(&a, head, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	EXPECT(&a, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	a.manual = true;
	CHECK_INT(smtp_session_feed(a.s, content, len), len);
	a.manual = false;
	drive(&a);
	CHECK_STR(take(&a), "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n");
	CHECK_INT(a.delivers, 1);
	/* b: DATA and the content together (buffered, fed as room allows) */
	line = malloc(len + 8);
	memcpy(line, "DATA\r\n", 6);
	memcpy(line + 6, content, len);
	mx_ready(&b, &set);
	EXPECT(&b, head, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	feed(&b, line, len + 6);
	CHECK_STR(take(&b), "354 End data with <CR><LF>.<CR><LF>\r\n"
		  "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n");
	CHECK_INT(b.delivers, 1);
	if (a.delivers == 1 && b.delivers == 1) {
		CHECK_INT(a.dl[0].len - a.dl[0].received_len, n - dots);
		CHECK_MEM(a.dl[0].msg + a.dl[0].received_len, a.dl[0].len - a.dl[0].received_len,
			  b.dl[0].msg + b.dl[0].received_len, b.dl[0].len - b.dl[0].received_len);
	}
	/* over the size limit in one feed(): read to the end, refused */
	set.max_message_size = 1000;
	finish(&a);
	mx_ready(&a, &set);
	EXPECT(&a, head, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	EXPECT(&a, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	CHECK_INT(smtp_session_feed(a.s, content, len), len);
	drive(&a);
	CHECK_STR(take(&a), "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
		  "250 2.0.0 Ok\r\n");
	CHECK_INT(a.delivers, 0);
	finish(&a);
	finish(&b);
	free(line);
	free(content);
}

/* ---- SMTP smuggling ---------------------------------------------------- */

PN_TEST(test_smuggling_variants)
{
	static const char *variants[] = {
		"\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r.\n", "\r.\r\n", "\r\n.\r",
		"\n.\r", "\r\n.\rX", "\r\n.\r\r\n", "\n\r\n.\n",
	};
	struct smtp_settings set = settings(SMTP_MODE_MX);

	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			char in[512];
			int n = snprintf(in, sizeof(in),
					 "Subject: s\r\n\r\nbody%s"
					 "MAIL FROM:<evil@remote.example>\r\n"
					 "RCPT TO:<victim@example.test>\r\nDATA\r\n"
					 "Subject: smuggled\r\n\r\nsmuggled\r\n.\r\nNOOP\r\n",
					 variants[v]);
			struct h h;

			mx_ready(&h, &set);
			feed_str(&h, "MAIL FROM:<a@remote.example>\r\nRCPT TO:<b@example.test>\r\n"
				     "DATA\r\n");
			CHECK_STR(take(&h), "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
					    "354 End data with <CR><LF>.<CR><LF>\r\n");
			if (bytewise)
				feed_bytewise(&h, in, (size_t)n);
			else
				feed(&h, in, (size_t)n);
			/* one DATA, refused as a whole; the smuggled MAIL,
			 * RCPT and DATA never ran; the NOOP after the real end
			 * of data did. */
			CHECK_STR(take(&h), "550 5.6.0 Message contains bare CR or bare LF, "
					    "refused (RFC 5321 2.3.8)\r\n250 2.0.0 Ok\r\n");
			CHECK_INT(h.delivers, 0);
			CHECK_INT(h.rcpt_checks, 1);
			CHECK_STR(h.rcpt_seen[0], "b@example.test");
			/* the transaction is gone */
			EXPECT(&h, "RCPT TO:<x@example.test>\r\n", "503 5.5.1 Need MAIL before RCPT\r\n");
			finish(&h);
		}
	}
}

/* RFC 5321 4.5.1 on LMTP too: <Postmaster> without a domain, in any case,
 * is a recipient; the engine hands on "Postmaster" (the delivery side maps
 * it to an address) and answers it by that name. */
PN_TEST(test_lmtp_postmaster)
{
	struct smtp_settings set = settings(SMTP_MODE_LMTP);
	struct h h;

	start_with(&h, &set);
	feed_str(&h, "LHLO c\r\nMAIL FROM:<a@b.example>\r\n");
	take(&h);
	EXPECT(&h, "RCPT TO:<postMASTER>\r\n", "250 2.1.5 Ok\r\n");
	CHECK_STR(h.rcpt_seen[h.rcpt_checks - 1], "Postmaster");
	/* a local part alone is not Postmaster */
	EXPECT(&h, "RCPT TO:<postmasters>\r\n",
	       "501 5.1.3 Bad recipient address syntax: address needs @domain\r\n");
	EXPECT(&h, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&h, "hi\r\n.\r\n", "250 2.0.0 <Postmaster> Ok: queued as Q1\r\n");
	CHECK_INT(h.delivers, 1);
	if (h.delivers == 1) {
		CHECK_INT(h.dl[0].rcpt_count, 1);
		CHECK_STR(h.dl[0].rcpts[0], "Postmaster");
	}
	finish(&h);
}

PN_TEST(test_bare_lf_in_body_refused_lmtp)
{
	struct smtp_settings set = settings(SMTP_MODE_LMTP);
	struct h h;

	start_with(&h, &set);
	feed_str(&h, "LHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\n"
		     "RCPT TO:<y@example.test>\r\nDATA\r\n");
	take(&h);
	/* a lone LF with no dot at all is refused too, once per recipient */
	EXPECT(&h, "line one\nline two\r\n.\r\n",
	       "550 5.6.0 Message contains bare CR or bare LF, refused (RFC 5321 2.3.8)\r\n"
	       "550 5.6.0 Message contains bare CR or bare LF, refused (RFC 5321 2.3.8)\r\n");
	CHECK_INT(h.delivers, 0);
	finish(&h);
}

/* ---- BDAT ------------------------------------------------------------- */

PN_TEST(test_bdat_every_split)
{
	/* the chunks hold what looks like commands: counted bytes are data */
	static const char in[] = "BDAT 12\r\nQUIT\r\nRSET\r\nBDAT 3 LAST\r\n.\r\nNOOP\r\n";
	size_t len = strlen(in);
	struct smtp_settings set = settings(SMTP_MODE_MX);

	for (size_t cut = 0; cut <= len; cut++) {
		for (size_t cut2 = cut; cut2 <= len; cut2 += 3) {
			struct h h;

			mx_ready(&h, &set);
			feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n");
			take(&h);
			feed(&h, in, cut);
			feed(&h, in + cut, cut2 - cut);
			feed(&h, in + cut2, len - cut2);
			CHECK_STR(take(&h), "250 2.0.0 12 octets received\r\n"
					    "250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n");
			CHECK(!h.closed);
			CHECK_INT(h.delivers, 1);
			if (h.delivers == 1)
				CHECK_STR(h.dl[0].msg + h.dl[0].received_len,
					  "QUIT\r\nRSET\r\n.\r\n");
			finish(&h);
		}
	}
}

PN_TEST(test_bdat_errors)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	set.max_message_size = 100;
	mx_ready(&h, &set);
	/* no transaction: the chunk is still read, its QUIT never runs */
	EXPECT(&h, "BDAT 6\r\nQUIT\r\n", "503 5.5.1 Need MAIL before BDAT\r\n");
	EXPECT(&h, "BDAT\r\n", "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
	EXPECT(&h, "BDAT 1x\r\n", "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
	EXPECT(&h, "BDAT 1 FIRST\r\n", "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
	EXPECT(&h, "BDAT 0 LAST\r\n", "503 5.5.1 Need MAIL before BDAT\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\n", "250 2.1.0 Ok\r\n");
	EXPECT(&h, "BDAT 6\r\nQUIT\r\n", "554 5.5.1 No valid recipients\r\n");
	/* later chunks of the failed transaction are dropped too, and DATA
	 * may not take over */
	EXPECT(&h, "RCPT TO:<c@example.test>\r\n", "250 2.1.5 Ok\r\n");
	EXPECT(&h, "DATA\r\n", "503 5.5.1 DATA not allowed after BDAT\r\n");
	EXPECT(&h, "BDAT 3 LAST\r\nabc", "554 5.5.1 No valid recipients\r\n");
	EXPECT(&h, "RCPT TO:<c@example.test>\r\n", "503 5.5.1 Need MAIL before RCPT\r\n");
	/* too big: read and dropped, then every chunk after it */
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	EXPECT(&h, "BDAT 60\r\n", "");
	char chunk[61];
	memset(chunk, 'z', 58);
	memcpy(chunk + 58, "\r\n", 3);
	EXPECT(&h, chunk, "250 2.0.0 60 octets received\r\n");
	EXPECT(&h, "RCPT TO:<d@example.test>\r\n", "503 5.5.1 RCPT not allowed after BDAT\r\n");
	EXPECT(&h, "DATA\r\n", "503 5.5.1 DATA not allowed after BDAT\r\n");
	feed_str(&h, "BDAT 41\r\n");
	feed(&h, chunk, 41);
	CHECK_STR(take(&h), "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	feed_str(&h, "BDAT 2\r\nab");
	CHECK_STR(take(&h), "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	EXPECT(&h, "BDAT 2 LAST\r\nab",
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	CHECK_INT(h.delivers, 0);
	/* exactly at the limit is fine */
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	feed_str(&h, "BDAT 60\r\n");
	feed(&h, chunk, 60);
	feed_str(&h, "BDAT 40 LAST\r\n");
	feed(&h, chunk + 20, 40);
	CHECK_STR(take(&h), "250 2.0.0 60 octets received\r\n250 2.0.0 Ok: queued as Q1\r\n");
	CHECK_INT(h.dl[0].len - h.dl[0].received_len, 100);
	/* bare LF inside BDAT content, and a trailing bare CR */
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	EXPECT(&h, "BDAT 4 LAST\r\na\nb\r",
	       "550 5.6.0 Message contains bare CR or bare LF, refused (RFC 5321 2.3.8)\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	EXPECT(&h, "BDAT 3\r\nab\rBDAT 2 LAST\r\nxc",
	       "250 2.0.0 3 octets received\r\n"
	       "550 5.6.0 Message contains bare CR or bare LF, refused (RFC 5321 2.3.8)\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	/* a CR ending one chunk and the LF starting the next is a CR LF */
	EXPECT(&h, "BDAT 3\r\nab\rBDAT 1 LAST\r\n\n",
	       "250 2.0.0 3 octets received\r\n250 2.0.0 Ok: queued as Q1\r\n");
	CHECK_STR(h.dl[1].msg + h.dl[1].received_len, "ab\r\n");
	finish(&h);
}

PN_TEST(test_bdat_lmtp_per_recipient)
{
	struct smtp_settings set = settings(SMTP_MODE_LMTP);
	struct h h;

	set.max_message_size = 10;
	start_with(&h, &set);
	feed_str(&h, "LHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\n"
		     "RCPT TO:<dtemp@example.test>\r\n");
	take(&h);
	EXPECT(&h, "BDAT 3 LAST\r\nhi\n",
	       "550 5.6.0 Message contains bare CR or bare LF, refused (RFC 5321 2.3.8)\r\n"
	       "550 5.6.0 Message contains bare CR or bare LF, refused (RFC 5321 2.3.8)\r\n");
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\n"
		     "RCPT TO:<dtemp@example.test>\r\n");
	take(&h);
	EXPECT(&h, "BDAT 11\r\n0123456789a",
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	EXPECT(&h, "BDAT 1 LAST\r\nb",
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\n"
		     "RCPT TO:<dtemp@example.test>\r\n");
	take(&h);
	EXPECT(&h, "BDAT 4 LAST\r\nhi\r\n",
	       "250 2.0.0 <x@example.test> Ok: queued as Q1\r\n"
	       "451 4.3.0 <dtemp@example.test> Temporary failure, try again later\r\n");
	finish(&h);
}

/* ---- STARTTLS ---------------------------------------------------------- */

PN_TEST(test_starttls_injection)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	static const char injected[] = "MAIL FROM:<evil@remote.example>\r\n"
				       "RCPT TO:<victim@example.test>\r\n";
	struct smtp_action a;
	struct h h;

	set.starttls_available = true;
	start_with(&h, &set);
	h.no_auto_tls = true;
	feed_str(&h, "EHLO c\r\n");
	take(&h);
	CHECK_INT(h.tls_starts, 0);
	feed_str(&h, "STARTTLS extra\r\n");
	CHECK_STR(take(&h), "501 5.5.4 Syntax: STARTTLS\r\n");
	h.nactions = 0;
	memset(h.actions, 0, sizeof(h.actions));
	/* STARTTLS and injected commands in one packet */
	feed_str(&h, "STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\n"
		     "RCPT TO:<victim@example.test>\r\n");
	CHECK_STR(h.actions, "ST");
	CHECK_STR(take(&h), "220 2.0.0 Ready to start TLS\r\n");
	CHECK_INT(h.discarded, strlen(injected));
	/* plaintext fed during the handshake is dropped as well */
	CHECK_INT(smtp_session_feed(h.s, "NOOP\r\n", 6), 6);
	CHECK_INT(smtp_session_next(h.s, &a), 0);
	/* results at the wrong time */
	CHECK_INT(smtp_session_rcpt_result(h.s, SMTP_RCPT_OK, 1), -1);
	struct smtp_tls_info info = { "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256" };
	CHECK_INT(smtp_session_tls_started(h.s, &info), 0);
	CHECK_INT(smtp_session_tls_started(h.s, &info), -1);
	drive(&h);
	CHECK_INT(h.out_len, 0);
	CHECK_INT(h.rcpt_checks, 0);
	/* state was reset: EHLO again, and it no longer offers STARTTLS */
	EXPECT(&h, "MAIL FROM:<a@remote.example>\r\n", "503 5.5.1 Send EHLO first\r\n");
	EXPECT(&h, "EHLO c\r\n", EHLO_MX);
	EXPECT(&h, "MAIL FROM:<a@remote.example>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&h, "x\r\n.\r\n", "250 2.0.0 Ok: queued as Q1\r\n");
	CHECK(strstr(h.dl[0].msg, "with ESMTPS id s1.1\r\n"
				  "\t(using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256)\r\n") != NULL);
	CHECK_INT(h.rcpt_checks, 1);
	CHECK_STR(h.rcpt_seen[0], "b@example.test");
	finish(&h);

	/* STARTTLS needs EHLO first; bytes after it in the packet still go */
	start_with(&h, &set);
	EXPECT(&h, "STARTTLS\r\n", "220 mx.example.test ESMTP Postern\r\n503 5.5.1 Send EHLO first\r\n");
	feed_str(&h, "EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<b@example.test>\r\n"
		     "RSET\r\nSTARTTLS\r\nQUIT\r\n");
	CHECK_INT(h.tls_starts, 1);
	CHECK_INT(h.discarded, 6);
	CHECK(!h.closed);
	CHECK_INT(h.rcpt_checks, 1);
	CHECK_STR(take(&h), "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
			    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
			    "250-CHUNKING\r\n250-DSN\r\n250 STARTTLS\r\n"
			    "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"
			    "220 2.0.0 Ready to start TLS\r\n");
	/* TLS (auto) started: nothing of the plaintext QUIT ran */
	EXPECT(&h, "NOOP\r\n", "250 2.0.0 Ok\r\n");
	finish(&h);
}

/* ---- AUTH --------------------------------------------------------------- */

static void sub_ready(struct h *h)
{
	struct smtp_settings set = settings(SMTP_MODE_SUBMISSION);

	set.tls_active = true;
	set.max_errors = 100;
	mx_ready(h, &set);
}

PN_TEST(test_auth_plain_flows)
{
	char line[2048 + 32], resp[2048];
	struct h h;

	sub_ready(&h);
	/* without an initial response, with an authzid */
	EXPECT(&h, "AUTH PLAIN\r\n", "334 \r\n");
	b64("admin\0user@example.test\0secret", 30, resp, sizeof(resp));
	snprintf(line, sizeof(line), "%s\r\n", resp);
	EXPECT(&h, line, "235 2.7.0 Authentication successful\r\n");
	CHECK_STR(h.authzid, "admin");
	CHECK_STR(h.authcid, "user@example.test");
	finish(&h);

	sub_ready(&h);
	EXPECT(&h, "AUTH PLAIN\r\n", "334 \r\n");
	EXPECT(&h, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
	EXPECT(&h, "AUTH PLAIN\r\n", "334 \r\n");
	EXPECT(&h, "not base64!\r\n", "501 5.5.2 Cannot decode response\r\n");
	EXPECT(&h, "AUTH PLAIN not*base64\r\n", "501 5.5.2 Cannot decode response\r\n");
	EXPECT(&h, "AUTH PLAIN =\r\n", "501 5.5.2 Malformed PLAIN response\r\n");
	b64("user\0secret", 11, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	EXPECT(&h, line, "501 5.5.2 Malformed PLAIN response\r\n");
	b64("\0user\0", 6, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	EXPECT(&h, line, "501 5.5.2 Malformed PLAIN response\r\n");
	EXPECT(&h, "AUTH PLAIN a b\r\n", "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
	b64("\0user\0wrong", 11, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	EXPECT(&h, line, "535 5.7.8 Authentication credentials invalid\r\n");
	b64("\0user\0tempfail", 14, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	EXPECT(&h, line, "454 4.7.0 Temporary authentication failure\r\n");
	CHECK_INT(h.auth_checks, 2);
	/* a long AUTH line (over 1000, under 12288) with 255-octet fields */
	char creds[800];
	size_t n = 0;
	memset(creds, 'z', sizeof(creds));
	creds[255] = '\0';
	creds[511] = '\0';
	memcpy(creds + 512, "secret", 6);
	n = 512 + 255;
	b64(creds, n, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	CHECK(strlen(line) > 1000);
	EXPECT(&h, line, "235 2.7.0 Authentication successful\r\n");
	CHECK_INT(strlen(h.authzid), 255);
	CHECK_INT(strlen(h.authcid), 255);
	CHECK_INT(strlen(h.password), 255);
	finish(&h);

	/* 256-octet identity refused */
	sub_ready(&h);
	memset(creds, 'z', sizeof(creds));
	creds[0] = '\0';
	creds[257] = '\0';
	memcpy(creds + 258, "secret", 6);
	b64(creds, 264, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	EXPECT(&h, line, "501 5.5.2 Malformed PLAIN response\r\n");
	finish(&h);
	sub_ready(&h);
	b64("\0user@example.test\0secret", 25, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	EXPECT(&h, line, "235 2.7.0 Authentication successful\r\n");
	EXPECT(&h, "MAIL FROM:<user@example.test>\r\n", "250 2.1.0 Ok\r\n");
	finish(&h);
	struct smtp_settings set = settings(SMTP_MODE_SUBMISSION);
	set.tls_active = true;
	start_with(&h, &set);
	EXPECT(&h, "AUTH PLAIN\r\n", "220 mx.example.test ESMTP Postern\r\n503 5.5.1 Send EHLO first\r\n");
	finish(&h);
}

PN_TEST(test_auth_login_flows)
{
	char line[512 + 32], resp[512];
	struct h h;

	sub_ready(&h);
	EXPECT(&h, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
	b64("user@example.test", 17, resp, sizeof(resp));
	snprintf(line, sizeof(line), "%s\r\n", resp);
	EXPECT(&h, line, "334 UGFzc3dvcmQ6\r\n");
	b64("secret", 6, resp, sizeof(resp));
	snprintf(line, sizeof(line), "%s\r\n", resp);
	EXPECT(&h, line, "235 2.7.0 Authentication successful\r\n");
	CHECK_STR(h.mech, "LOGIN");
	CHECK_STR(h.authcid, "user@example.test");
	CHECK_STR(h.password, "secret");
	CHECK_STR(h.authzid, "");
	finish(&h);

	sub_ready(&h);
	/* initial response = the user name */
	b64("user@example.test", 17, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH LOGIN %s\r\n", resp);
	EXPECT(&h, line, "334 UGFzc3dvcmQ6\r\n");
	EXPECT(&h, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
	EXPECT(&h, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
	EXPECT(&h, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
	EXPECT(&h, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
	EXPECT(&h, "dXNlcg\r\n", "501 5.5.2 Cannot decode response\r\n");
	EXPECT(&h, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
	EXPECT(&h, "=\r\n", "501 5.5.2 Malformed LOGIN response\r\n");
	EXPECT(&h, line, "334 UGFzc3dvcmQ6\r\n");
	EXPECT(&h, "AAAA\r\n", "501 5.5.2 Malformed LOGIN response\r\n");
	EXPECT(&h, line, "334 UGFzc3dvcmQ6\r\n");
	/* a SASL line is not a command, and must end with CR LF too */
	EXPECT(&h, "QUIT\n", "500 5.5.2 Line must end with CR LF\r\n");
	EXPECT(&h, line, "334 UGFzc3dvcmQ6\r\n");
	EXPECT(&h, "QUIT now\r\n", "501 5.5.2 Cannot decode response\r\n");
	CHECK(!h.closed);
	b64("nope", 4, resp, sizeof(resp));
	EXPECT(&h, line, "334 UGFzc3dvcmQ6\r\n");
	snprintf(line, sizeof(line), "%s\r\n", resp);
	EXPECT(&h, line, "535 5.7.8 Authentication credentials invalid\r\n");
	CHECK_INT(h.auth_checks, 1);
	finish(&h);
}

PN_TEST(test_auth_result_checks)
{
	char line[256], resp[128];
	struct h h;

	sub_ready(&h);
	h.manual = true;
	b64("\0user@example.test\0secret", 25, resp, sizeof(resp));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", resp);
	feed_str(&h, line);
	CHECK(h.has_pending);
	/* wrong kind of result, OK without an address, bad address */
	CHECK_INT(smtp_session_sender_result(h.s, SMTP_SENDER_OK), -1);
	CHECK_INT(smtp_session_auth_result(h.s, SMTP_AUTH_OK, 1, NULL), -1);
	CHECK_INT(smtp_session_auth_result(h.s, SMTP_AUTH_OK, 1, "a\r\nb"), -1);
	CHECK_INT(smtp_session_auth_result(h.s, (enum smtp_auth_status)77, 1, "x@y"), -1);
	CHECK_INT(smtp_session_deliver_result(h.s, NULL, 0, NULL), -1);
	answer_pending(&h);
	CHECK_STR(take(&h), "235 2.7.0 Authentication successful\r\n");
	CHECK_INT(smtp_session_auth_result(h.s, SMTP_AUTH_OK, 1, "x@y"), -1);
	finish(&h);
}

/* ---- limits ------------------------------------------------------------ */

PN_TEST(test_size_limit_in_data)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	char body[200];
	struct h h;

	set.max_message_size = 100;
	mx_ready(&h, &set);
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=101\r\n",
	       "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example> SIZE=100\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	/* 101 bytes of content: read to the end, refused, nothing stored */
	memset(body, 'q', 99);
	memcpy(body + 99, "\r\n.\r\nNOOP\r\n", 12);
	body[0] = 'x';
	body[1] = 'y';
	EXPECT(&h, body, "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
			 "250 2.0.0 Ok\r\n");
	CHECK_INT(h.delivers, 0);
	/* exactly 100 is accepted; a stuffed dot does not count */
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	memset(body, 'q', 98);
	body[0] = '.';
	body[1] = '.';
	memcpy(body + 98, "q\r\n.\r\n", 7);
	EXPECT(&h, body, "250 2.0.0 Ok: queued as Q1\r\n");
	CHECK_INT(h.dl[0].len - h.dl[0].received_len, 100);
	finish(&h);
}

PN_TEST(test_line_limits)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	char line[3000];
	struct h h;

	mx_ready(&h, &set);
	/* 1000 octets with CR LF: fine; 1001: too long, then back in step */
	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'n', 993);
	memcpy(line + 998, "\r\n", 3);
	CHECK_INT(strlen(line), 1000);
	EXPECT(&h, line, "250 2.0.0 Ok\r\n");
	memset(line + 5, 'n', 994);
	memcpy(line + 999, "\r\nNOOP\r\n", 9);
	EXPECT(&h, line, "500 5.5.6 Line too long\r\n250 2.0.0 Ok\r\n");
	/* a long line fed in pieces: one error, the rest skipped */
	memset(line, 'm', 2500);
	feed(&h, line, 1200);
	feed(&h, line, 1200);
	EXPECT(&h, "mmm\r\nNOOP\r\n", "500 5.5.6 Line too long\r\n250 2.0.0 Ok\r\n");
	finish(&h);

	/* data lines: up to max_data_line, then the message is refused */
	set.max_data_line = 1000;
	mx_ready(&h, &set);
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	memset(line, 'd', 1000);
	memcpy(line + 1000, "\r\n.\r\n", 6);
	EXPECT(&h, line, "250 2.0.0 Ok: queued as Q1\r\n");
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	memset(line, 'd', 1001);
	memcpy(line + 1001, "\r\n.\r\n", 6);
	EXPECT(&h, line, "550 5.6.0 Message has a line that is too long\r\n");
	CHECK_INT(h.delivers, 1);
	finish(&h);
}

PN_TEST(test_too_many_recipients)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	set.max_recipients = 2;
	set.max_errors = 3;
	mx_ready(&h, &set);
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
		   "RCPT TO:<c@example.test>\r\nRCPT TO:<d@example.test>\r\nRCPT TO:<e@example.test>\r\n",
	       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n452 4.5.3 Too many recipients\r\n"
	       "452 4.5.3 Too many recipients\r\n452 4.5.3 Too many recipients\r\n");
	/* not counted as errors */
	CHECK(!h.closed);
	CHECK_INT(h.rcpt_checks, 2);
	finish(&h);
}

PN_TEST(test_error_limit)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	set.max_errors = 3;
	mx_ready(&h, &set);
	EXPECT(&h, "BAD1\r\nBAD2\r\n",
	       "500 5.5.2 Command not recognized\r\n500 5.5.2 Command not recognized\r\n");
	CHECK(!h.closed);
	h.nactions = 0;
	memset(h.actions, 0, sizeof(h.actions));
	EXPECT(&h, "RCPT TO:<x@example.test>\r\nNOOP\r\n",
	       "503 5.5.1 Need MAIL before RCPT\r\n"
	       "421 4.7.0 mx.example.test Too many errors, closing connection\r\n");
	CHECK_STR(h.actions, "SC");
	CHECK(h.closed);
	finish(&h);

	/* unknown recipients (directory harvesting) count */
	mx_ready(&h, &set);
	EXPECT(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<unknown1@example.test>\r\n"
		   "RCPT TO:<unknown2@example.test>\r\nRCPT TO:<full@example.test>\r\n"
		   "RCPT TO:<unknown3@example.test>\r\nRCPT TO:<ok@example.test>\r\n",
	       "250 2.1.0 Ok\r\n"
	       "550 5.1.1 <unknown1@example.test> User unknown\r\n"
	       "550 5.1.1 <unknown2@example.test> User unknown\r\n"
	       "452 4.2.2 <full@example.test> Mailbox full\r\n"
	       "550 5.1.1 <unknown3@example.test> User unknown\r\n"
	       "421 4.7.0 mx.example.test Too many errors, closing connection\r\n");
	CHECK_INT(h.rcpt_checks, 4);
	CHECK(h.closed);
	finish(&h);

	/* failed AUTH counts */
	set = settings(SMTP_MODE_SUBMISSION);
	set.tls_active = true;
	set.max_errors = 2;
	mx_ready(&h, &set);
	EXPECT(&h, "AUTH PLAIN AHUAd3Jvbmc=\r\nAUTH PLAIN AHUAd3Jvbmc=\r\n",
	       "535 5.7.8 Authentication credentials invalid\r\n"
	       "535 5.7.8 Authentication credentials invalid\r\n"
	       "421 4.7.0 mx.example.test Too many errors, closing connection\r\n");
	CHECK(h.closed);
	finish(&h);
}

PN_TEST(test_command_limit_and_http)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	set.max_commands = 3;
	start_with(&h, &set);
	drive(&h);
	take(&h);
	EXPECT(&h, "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n",
	       "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
	       "421 4.7.0 mx.example.test Too many commands, closing connection\r\n");
	CHECK(h.closed);
	finish(&h);

	set = settings(SMTP_MODE_MX);
	start_with(&h, &set);
	drive(&h);
	take(&h);
	EXPECT(&h, "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	       "421 4.7.0 mx.example.test Not an HTTP server, closing connection\r\n");
	CHECK(h.closed);
	finish(&h);
}

/* ---- shutdown ------------------------------------------------------------- */

PN_TEST(test_shutdown)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	/* idle drain */
	mx_ready(&h, &set);
	smtp_session_shutdown(h.s, SMTP_SHUTDOWN_DRAIN);
	drive(&h);
	CHECK_STR(take(&h), "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
	CHECK(h.closed);
	finish(&h);

	/* drain during DATA: the message is finished and answered first */
	mx_ready(&h, &set);
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\nabc\r\n");
	take(&h);
	smtp_session_shutdown(h.s, SMTP_SHUTDOWN_DRAIN);
	EXPECT(&h, ".\r\nNOOP\r\n",
	       "250 2.0.0 Ok: queued as Q1\r\n"
	       "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
	CHECK(h.closed);
	finish(&h);

	/* timeout during DATA: at once */
	mx_ready(&h, &set);
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\nDATA\r\nabc\r\n");
	take(&h);
	smtp_session_shutdown(h.s, SMTP_SHUTDOWN_TIMEOUT);
	drive(&h);
	CHECK_STR(take(&h), "421 4.4.2 mx.example.test Timeout, closing connection\r\n");
	CHECK(h.closed);
	CHECK_INT(h.delivers, 0);
	finish(&h);

	/* with a request outstanding: after its reply */
	mx_ready(&h, &set);
	h.manual = true;
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n");
	CHECK(h.has_pending);
	smtp_session_shutdown(h.s, SMTP_SHUTDOWN_TIMEOUT);
	drive(&h);
	CHECK(!h.closed);
	answer_pending(&h);
	CHECK_STR(take(&h), "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
			    "421 4.4.2 mx.example.test Timeout, closing connection\r\n");
	CHECK(h.closed);
	finish(&h);
}

/* ---- result calls at the wrong time ------------------------------------ */

PN_TEST(test_results_at_wrong_time)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	enum smtp_deliver_status st[2] = { SMTP_DELIVER_OK, SMTP_DELIVER_OK };
	struct smtp_action a;
	struct h h;

	mx_ready(&h, &set);
	CHECK_INT(smtp_session_auth_result(h.s, SMTP_AUTH_OK, 1, "a@b"), -1);
	CHECK_INT(smtp_session_sender_result(h.s, SMTP_SENDER_OK), -1);
	CHECK_INT(smtp_session_rcpt_result(h.s, SMTP_RCPT_OK, 1), -1);
	CHECK_INT(smtp_session_deliver_result(h.s, st, 1, NULL), -1);
	CHECK_INT(smtp_session_tls_started(h.s, NULL), -1);
	/* a request deferred behind a SEND is not yet answerable */
	CHECK_INT(smtp_session_feed(h.s, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n", 51),
		  51);
	CHECK_INT(smtp_session_next(h.s, &a), 1);
	CHECK_INT(a.type, SMTP_ACTION_SEND);
	CHECK_INT(smtp_session_rcpt_result(h.s, SMTP_RCPT_OK, 1), -1);
	CHECK_INT(smtp_session_next(h.s, &a), 1);
	CHECK_INT(a.type, SMTP_ACTION_RCPT_CHECK);
	CHECK_INT(smtp_session_rcpt_result(h.s, (enum smtp_rcpt_status)99, 1), -1);
	CHECK_INT(smtp_session_deliver_result(h.s, st, 1, NULL), -1);
	CHECK_INT(smtp_session_rcpt_result(h.s, SMTP_RCPT_OK, 7), 0);
	CHECK_INT(smtp_session_rcpt_result(h.s, SMTP_RCPT_OK, 7), -1);
	CHECK_INT(smtp_session_feed(h.s, "DATA\r\nx\r\n.\r\n", 12), 12);
	CHECK_INT(smtp_session_next(h.s, &a), 1);
	CHECK_INT(a.type, SMTP_ACTION_SEND);
	CHECK_INT(smtp_session_next(h.s, &a), 1);
	CHECK_INT(a.type, SMTP_ACTION_DELIVER);
	CHECK_INT(a.u.deliver.env->rcpt_count, 1);
	CHECK_INT(a.u.deliver.env->rcpts[0].id, 7);
	CHECK_INT(smtp_session_deliver_result(h.s, st, 2, NULL), -1);
	CHECK_INT(smtp_session_deliver_result(h.s, st, 0, NULL), -1);
	CHECK_INT(smtp_session_deliver_result(h.s, NULL, 1, NULL), -1);
	enum smtp_deliver_status badst = (enum smtp_deliver_status)50;
	CHECK_INT(smtp_session_deliver_result(h.s, &badst, 1, NULL), -1);
	CHECK_INT(smtp_session_next(h.s, &a), 0);
	CHECK_INT(smtp_session_deliver_result(h.s, st, 1, NULL), 0);
	CHECK_INT(smtp_session_next(h.s, &a), 1);
	CHECK_INT(a.type, SMTP_ACTION_SEND);
	CHECK_MEM(a.u.send.data, a.u.send.len, "250 2.0.0 Ok\r\n", 14);
	CHECK_INT(smtp_session_next(h.s, &a), 0);
	finish(&h);
}

/* ---- settings, input bound, Received: variants --------------------------- */

PN_TEST(test_settings_checked)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	const char *error = NULL;

	set.hostname = NULL;
	CHECK(smtp_session_new(&set, &error) == NULL && error != NULL);
	set = settings(SMTP_MODE_MX);
	set.hostname = "bad host";
	CHECK(smtp_session_new(&set, &error) == NULL);
	set = settings(SMTP_MODE_MX);
	set.client_addr = "1.2.3.4\r\nX-Evil: 1";
	CHECK(smtp_session_new(&set, &error) == NULL);
	set = settings(SMTP_MODE_MX);
	set.session_id = "a b";
	CHECK(smtp_session_new(&set, &error) == NULL);
	set = settings(SMTP_MODE_MX);
	set.max_line = 100;
	CHECK(smtp_session_new(&set, &error) == NULL);
	set = settings(SMTP_MODE_MX);
	set.input_buffer = 1000;
	CHECK(smtp_session_new(&set, &error) == NULL);
	set = settings(SMTP_MODE_MX);
	set.mode = (enum smtp_mode)9;
	CHECK(smtp_session_new(&set, &error) == NULL);
}

PN_TEST(test_input_backpressure)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	static char big[40000];
	struct h h;
	size_t taken = 0, n;

	set.input_buffer = SMTP_AUTH_LINE_MAX + 2;
	mx_ready(&h, &set);
	h.manual = true;
	for (size_t i = 0; i + 6 <= sizeof(big); i += 6)
		memcpy(big + i, "NOOP\r\n", 6);
	feed_str(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@example.test>\r\n");
	CHECK(h.has_pending);
	take(&h);
	/* the buffer fills up while the request is outstanding */
	while ((n = smtp_session_feed(h.s, big + taken, sizeof(big) - taken)) > 0)
		taken += n;
	CHECK(taken <= SMTP_AUTH_LINE_MAX + 2);
	CHECK(taken > 1000);
	CHECK_INT(smtp_session_input_room(h.s), 0);
	h.manual = false;
	answer_pending(&h);
	CHECK(smtp_session_input_room(h.s) > 0);
	CHECK(!h.closed);
	finish(&h);
}

PN_TEST(test_received_variants)
{
	struct smtp_settings set = settings(SMTP_MODE_MX);
	struct h h;

	set.client_addr = "2001:db8::25";
	set.session_id = NULL;
	start_with(&h, &set);
	feed_str(&h, "HELO old.example\r\nMAIL FROM:<a@b.example>\r\n"
		     "RCPT TO:<c@example.test>\r\nDATA\r\nx\r\n.\r\n");
	CHECK_INT(h.delivers, 1);
	CHECK_STR(h.dl[0].msg,
		  "Received: from old.example ([IPv6:2001:db8::25])\r\n"
		  "\tby mx.example.test (Postern) with SMTP\r\n"
		  "\tfor <c@example.test>;\r\n"
		  "\t" DATE "\r\n"
		  "x\r\n");
	feed_str(&h, "EHLO new.example\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\n"
		     "RCPT TO:<c@example.test>\r\nDATA\r\nx\r\n.\r\n");
	CHECK_INT(h.delivers, 2);
	CHECK(strstr(h.dl[1].msg, " with UTF8SMTP\r\n") != NULL);
	CHECK(h.dl[1].smtputf8);
	finish(&h);

	set = settings(SMTP_MODE_MX);
	set.client_addr = NULL;
	start_with(&h, &set);
	feed_str(&h, "EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
		     "RCPT TO:<c@example.test>\r\nDATA\r\nx\r\n.\r\n");
	CHECK(strncmp(h.dl[0].msg, "Received: from c (unknown)\r\n", 28) == 0);
	finish(&h);
}

PN_TEST_MAIN("test-smtp-session",
	     PN_TEST_CASE(test_mx_session_bytewise),
	     PN_TEST_CASE(test_submission_session_bytewise),
	     PN_TEST_CASE(test_lmtp_session_bytewise),
	     PN_TEST_CASE(test_ehlo_keywords),
	     PN_TEST_CASE(test_pipelining_batches),
	     PN_TEST_CASE(test_request_blocks_later_commands),
	     PN_TEST_CASE(test_reply_codes_sequence_and_syntax),
	     PN_TEST_CASE(test_null_sender_and_submission_codes),
	     PN_TEST_CASE(test_smtp_single_reply_worst_wins),
	     PN_TEST_CASE(test_dot_stuffing_every_split),
	     PN_TEST_CASE(test_big_message_streams),
	     PN_TEST_CASE(test_data_fed_directly),
	     PN_TEST_CASE(test_smuggling_variants),
	     PN_TEST_CASE(test_lmtp_postmaster),
	     PN_TEST_CASE(test_bare_lf_in_body_refused_lmtp),
	     PN_TEST_CASE(test_bdat_every_split),
	     PN_TEST_CASE(test_bdat_errors),
	     PN_TEST_CASE(test_bdat_lmtp_per_recipient),
	     PN_TEST_CASE(test_starttls_injection),
	     PN_TEST_CASE(test_auth_plain_flows),
	     PN_TEST_CASE(test_auth_login_flows),
	     PN_TEST_CASE(test_auth_result_checks),
	     PN_TEST_CASE(test_size_limit_in_data),
	     PN_TEST_CASE(test_line_limits),
	     PN_TEST_CASE(test_too_many_recipients),
	     PN_TEST_CASE(test_error_limit),
	     PN_TEST_CASE(test_command_limit_and_http),
	     PN_TEST_CASE(test_shutdown),
	     PN_TEST_CASE(test_results_at_wrong_time),
	     PN_TEST_CASE(test_settings_checked),
	     PN_TEST_CASE(test_input_backpressure),
	     PN_TEST_CASE(test_received_variants))
