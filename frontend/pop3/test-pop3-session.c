/* Unit tests for the POP3 session engine (pop3-session.h). A small driver
 * plays the daemon: it feeds bytes (often one at a time), collects SEND
 * bytes into a transcript, records the other actions and answers requests
 * with canned results. Covers every command in every state with its errors,
 * CAPA variants, STLS injection, SASL PLAIN / LOGIN, byte-stuffing across
 * chunks, TOP, the UPDATE / RELEASE rules, disconnects, limits, pipelining
 * and shutdown. */
#include "pop3-session.h"
#include "postern/base64.h"
#include "postern/testing.h"

#include <stdbool.h>

/* ---- canned maildrop ---- */

#define M1 "Subject: one\r\n\r\nHello\r\n.hidden dot\r\n..two dots\r\n.\r\nend\r\n"
#define M1_STUFFED "Subject: one\r\n\r\nHello\r\n..hidden dot\r\n...two dots\r\n..\r\nend\r\n.\r\n"
#define M2 "Subject: two\r\nX-No-Body: yes\r\n"
#define M3 ".odd: header\r\n\r\nb1\r\nb2\r\nb3"
#define M4 ""
#define M5 "H: v\r\n\r\n"

static const char *const bodies[] = { M1, M2, M3, M4, M5 };
static const uint32_t uids[] = { 10, 11, 12, 15, 20 };
static const char *const uidls[] = { "u10", "u11", "u12", "u15", "u20" };
#define NMSG 5

static uint64_t total_size(void)
{
	uint64_t t = 0;
	for (int i = 0; i < NMSG; i++)
		t += strlen(bodies[i]);
	return t;
}

static void listing(struct pop3_message *m)
{
	for (int i = 0; i < NMSG; i++) {
		m[i].uid = uids[i];
		m[i].size = strlen(bodies[i]);
		m[i].uidl = uidls[i];
	}
}

/* ---- the driver ---- */

struct rec {
	enum pop3_action_type type;
	enum pop3_auth_mech mech;
	char user[POP3_MAX_USER_LEN + 1], authzid[POP3_MAX_USER_LEN + 1];
	char password[POP3_MAX_PASSWORD_LEN + 1];
	uint64_t account_id;
	uint32_t msgno, uid, top_lines;
	uint64_t size;
	bool top, set_seen;
	uint32_t uids[16];
	size_t nuids;
	const char *reason;
};

struct drv {
	struct pop3_session *s;
	char *out;
	size_t out_len, out_size;
	struct rec acts[16];
	size_t nacts;
	int r;		/* last pop3_session_next() result */
	size_t sends;	/* SEND actions seen */
	/* auto mode: answer requests as they come */
	bool autoreply;
	size_t chunk;	/* message chunk size in auto mode */
	size_t releases, updates;
};

static void out_add(struct drv *d, const void *p, size_t n)
{
	if (d->out_len + n + 1 > d->out_size) {
		d->out_size = (d->out_len + n + 1) * 2;
		d->out = realloc(d->out, d->out_size);
		if (d->out == NULL)
			abort();
	}
	memcpy(d->out + d->out_len, p, n);
	d->out_len += n;
	d->out[d->out_len] = '\0';
}

static void auto_answer(struct drv *d);

/* Runs next() until it has nothing more; records everything. */
static int drv_run(struct drv *d)
{
	struct pop3_action a;

	for (;;) {
		d->r = pop3_session_next(d->s, &a);
		if (d->r != 1)
			break;
		if (a.type == POP3_ACTION_SEND) {
			CHECK(a.send.len > 0);
			out_add(d, a.send.data, a.send.len);
			d->sends++;
			continue;
		}
		if (d->nacts == sizeof(d->acts) / sizeof(d->acts[0])) {
			CHECK(!"too many actions");
			break;
		}
		struct rec *r = &d->acts[d->nacts++];
		memset(r, 0, sizeof(*r));
		r->type = a.type;
		switch (a.type) {
		case POP3_ACTION_AUTH_VERIFY:
			r->mech = a.auth.mech;
			snprintf(r->user, sizeof(r->user), "%s", a.auth.user);
			snprintf(r->authzid, sizeof(r->authzid), "%s", a.auth.authzid);
			snprintf(r->password, sizeof(r->password), "%s", a.auth.password);
			break;
		case POP3_ACTION_MAILDROP_OPEN:
		case POP3_ACTION_RELEASE:
			r->account_id = a.maildrop.account_id;
			if (a.type == POP3_ACTION_RELEASE)
				d->releases++;
			break;
		case POP3_ACTION_MESSAGE_GET:
			r->account_id = a.message.account_id;
			r->msgno = a.message.msgno;
			r->uid = a.message.uid;
			r->size = a.message.size;
			r->top = a.message.top;
			r->top_lines = a.message.top_lines;
			r->set_seen = a.message.set_seen;
			break;
		case POP3_ACTION_UPDATE:
			d->updates++;
			r->account_id = a.update.account_id;
			r->nuids = a.update.count;
			for (size_t i = 0; i < a.update.count && i < 16; i++)
				r->uids[i] = a.update.uids[i];
			break;
		case POP3_ACTION_CLOSE:
			r->reason = a.close.reason;
			break;
		default:
			break;
		}
		if (d->autoreply) {
			auto_answer(d);
			return d->r;
		}
	}
	return d->r;
}

/* Gives a message to the session in chunks, draining between them. */
static void deliver(struct drv *d, const char *msg, size_t chunk)
{
	size_t len = strlen(msg), i = 0;
	const char *err = NULL;

	if (len == 0) {
		size_t c = 99;
		CHECK_INT(pop3_session_message_data(d->s, NULL, 0, true, &c, &err), 0);
		CHECK_INT(c, 0);
		drv_run(d);
		return;
	}
	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk;
		bool final = i + n == len;
		size_t off = 0;
		int guard = 0;
		while (off < n) {
			size_t c = 0;
			CHECK_INT(pop3_session_message_data(d->s, msg + i + off, n - off, final, &c, &err), 0);
			off += c;
			drv_run(d);
			if (++guard > 100000) {
				CHECK(!"no progress");
				return;
			}
		}
		i += n;
	}
}

static void deliver_buf(struct drv *d, const uint8_t *msg, size_t len, size_t chunk)
{
	size_t i = 0;
	const char *err = NULL;

	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk;
		bool final = i + n == len;
		size_t off = 0;
		while (off < n) {
			size_t c = 0;
			CHECK_INT(pop3_session_message_data(d->s, msg + i + off, n - off, final, &c, &err), 0);
			off += c;
			drv_run(d);
		}
		i += n;
	}
}

/* Pops the oldest recorded action, which must be of type t. */
static struct rec take(struct drv *d, enum pop3_action_type t)
{
	struct rec r;

	memset(&r, 0, sizeof(r));
	if (d->nacts == 0) {
		fprintf(stderr, "expected action %d, none recorded\n", (int)t);
		pn_test_failures_++;
		r.type = 0;
		return r;
	}
	r = d->acts[0];
	d->nacts--;
	memmove(&d->acts[0], &d->acts[1], d->nacts * sizeof(d->acts[0]));
	if (r.type != t) {
		fprintf(stderr, "expected action %d, got %d\n", (int)t, (int)r.type);
		pn_test_failures_++;
	}
	return r;
}

static void auto_answer(struct drv *d)
{
	struct rec *r = &d->acts[d->nacts - 1];
	const char *err = NULL;
	struct pop3_message m[NMSG];

	switch (r->type) {
	case POP3_ACTION_AUTH_VERIFY:
		CHECK_INT(pop3_session_auth_result(d->s, strcmp(r->password, "secret") == 0 ?
						   POP3_AUTH_OK : POP3_AUTH_BAD, 42, &err), 0);
		break;
	case POP3_ACTION_MAILDROP_OPEN:
		listing(m);
		CHECK_INT(pop3_session_maildrop_result(d->s, POP3_MAILDROP_OK, m, NMSG, &err), 0);
		break;
	case POP3_ACTION_MESSAGE_GET:
		deliver(d, bodies[r->msgno - 1], d->chunk);
		break;
	case POP3_ACTION_UPDATE:
		CHECK_INT(pop3_session_update_result(d->s, true, &err), 0);
		break;
	case POP3_ACTION_START_TLS:
		pop3_session_tls_started(d->s);
		break;
	default:
		break;
	}
	drv_run(d);
}

static void drv_start(struct drv *d, const struct pop3_settings *set)
{
	memset(d, 0, sizeof(*d));
	d->chunk = 1000;
	d->s = pop3_session_new(set);
	CHECK(d->s != NULL);
	drv_run(d);
}

static void drv_free(struct drv *d)
{
	pop3_session_free(&d->s);
	CHECK(d->s == NULL);
	free(d->out);
	d->out = NULL;
}

/* The transcript so far must equal `want`; it is then cleared. */
#define CHECK_OUT(d, want)                                                    \
	do {                                                                  \
		CHECK_STR((d)->out != NULL ? (d)->out : "", (want));          \
		(d)->out_len = 0;                                             \
		if ((d)->out != NULL)                                         \
			(d)->out[0] = '\0';                                   \
	} while (0)

/* Feeds str whole. */
static void drv_send(struct drv *d, const char *str)
{
	CHECK_INT(pop3_session_feed(d->s, str, strlen(str)), strlen(str));
	drv_run(d);
}

/* Feeds str one byte at a time: nothing may come out (no SEND, no action)
 * until a byte completes a line. */
static void drv_send_bytes(struct drv *d, const char *str)
{
	size_t n = strlen(str);

	for (size_t i = 0; i < n; i++) {
		size_t before_out = d->out_len, before_acts = d->nacts;
		CHECK_INT(pop3_session_feed(d->s, str + i, 1), 1);
		int r = drv_run(d);
		if (str[i] != '\n') {
			CHECK_INT(r, 0);
			CHECK_INT(d->out_len, before_out);
			CHECK_INT(d->nacts, before_acts);
		}
	}
}

static void settings(struct pop3_settings *set)
{
	pop3_settings_defaults(set);
	set->hostname = "pop.example.test";
	set->implementation = "Postern";
	set->stls_available = true;
}

#define GREETING "+OK pop.example.test POP3 ready.\r\n"
#define LOGGED_IN_FMT "+OK Logged in, 5 messages (%" PRIu64 " octets).\r\n"

static void expect_logged_in(struct drv *d)
{
	char want[128];
	snprintf(want, sizeof(want), LOGGED_IN_FMT, total_size());
	CHECK_OUT(d, want);
}

/* USER/PASS on a trusted listener, answering by hand; ends in TRANSACTION. */
static void login(struct drv *d, bool trusted)
{
	struct pop3_settings set;
	struct pop3_message m[NMSG];
	const char *err = NULL;

	settings(&set);
	set.trusted = trusted;
	set.tls_active = !trusted;
	drv_start(d, &set);
	CHECK_OUT(d, GREETING);
	drv_send(d, "USER alice\r\nPASS secret\r\n");
	CHECK_OUT(d, "+OK\r\n");
	struct rec r = take(d, POP3_ACTION_AUTH_VERIFY);
	CHECK_STR(r.user, "alice");
	CHECK_STR(r.password, "secret");
	CHECK_INT(pop3_session_auth_result(d->s, POP3_AUTH_OK, 42, &err), 0);
	drv_run(d);
	r = take(d, POP3_ACTION_MAILDROP_OPEN);
	CHECK_INT(r.account_id, 42);
	listing(m);
	CHECK_INT(pop3_session_maildrop_result(d->s, POP3_MAILDROP_OK, m, NMSG, &err), 0);
	drv_run(d);
	expect_logged_in(d);
	CHECK_INT(pop3_session_state(d->s), POP3_STATE_TRANSACTION);
	CHECK(pop3_session_holds_maildrop(d->s));
}

/* ---- tests ---- */

PN_TEST(test_settings)
{
	struct pop3_settings set;
	const char *err = NULL;

	pop3_settings_defaults(&set);
	CHECK_INT(pop3_settings_check(&set, &err), 0);
	CHECK(set.retr_sets_seen);
	CHECK_INT(set.max_line, POP3_DEFAULT_MAX_LINE);
	set.hostname = "bad host";
	CHECK_INT(pop3_settings_check(&set, &err), -1);
	CHECK(pop3_session_new(&set) == NULL);
	set.hostname = "ok";
	set.implementation = "evil\r\nSTLS";
	CHECK_INT(pop3_settings_check(&set, &err), -1);
	set.implementation = "Postern 0.1";
	CHECK_INT(pop3_settings_check(&set, &err), 0);
	set.hostname = "";
	CHECK_INT(pop3_settings_check(&set, &err), -1);
}

/* A whole session, every byte fed alone, requests answered automatically
 * with messages given one byte per chunk. */
PN_TEST(test_full_session_byte_at_a_time)
{
	struct pop3_settings set;
	struct drv d;
	char want[4096];

	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	d.autoreply = true;
	d.chunk = 1;

	drv_send_bytes(&d, "CAPA\r\n");
	CHECK_OUT(&d, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		  "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nUSER\r\n"
		  "SASL PLAIN LOGIN\r\nSTLS\r\nIMPLEMENTATION Postern\r\n.\r\n");
	drv_send_bytes(&d, "USER alice\r\n");
	CHECK_OUT(&d, "+OK\r\n");
	drv_send_bytes(&d, "PASS secret\r\n");
	expect_logged_in(&d);
	CHECK_INT(take(&d, POP3_ACTION_AUTH_VERIFY).mech, POP3_AUTH_MECH_USER);
	CHECK_INT(take(&d, POP3_ACTION_MAILDROP_OPEN).account_id, 42);

	drv_send_bytes(&d, "STAT\r\n");
	snprintf(want, sizeof(want), "+OK 5 %" PRIu64 "\r\n", total_size());
	CHECK_OUT(&d, want);
	drv_send_bytes(&d, "LIST\r\n");
	snprintf(want, sizeof(want),
		 "+OK 5 messages (%" PRIu64 " octets)\r\n1 %zu\r\n2 %zu\r\n3 %zu\r\n4 0\r\n5 %zu\r\n.\r\n",
		 total_size(), strlen(M1), strlen(M2), strlen(M3), strlen(M5));
	CHECK_OUT(&d, want);
	drv_send_bytes(&d, "UIDL\r\n");
	CHECK_OUT(&d, "+OK Unique-ID listing follows\r\n1 u10\r\n2 u11\r\n3 u12\r\n4 u15\r\n5 u20\r\n.\r\n");
	drv_send_bytes(&d, "RETR 1\r\n");
	snprintf(want, sizeof(want), "+OK %zu octets\r\n" M1_STUFFED, strlen(M1));
	CHECK_OUT(&d, want);
	struct rec r = take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(r.uid, 10);
	CHECK_INT(r.msgno, 1);
	CHECK(!r.top);
	CHECK(r.set_seen);
	CHECK_INT(r.size, strlen(M1));
	drv_send_bytes(&d, "TOP 3 1\r\n");
	CHECK_OUT(&d, "+OK\r\n..odd: header\r\n\r\nb1\r\n.\r\n");
	r = take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK(r.top);
	CHECK(!r.set_seen);
	CHECK_INT(r.top_lines, 1);
	drv_send_bytes(&d, "DELE 1\r\n");
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n");
	drv_send_bytes(&d, "DELE 3\r\n");
	CHECK_OUT(&d, "+OK Message 3 deleted.\r\n");
	drv_send_bytes(&d, "NOOP\r\n");
	CHECK_OUT(&d, "+OK\r\n");
	drv_send_bytes(&d, "QUIT\r\n");
	CHECK_OUT(&d, "+OK Logging out, 2 messages deleted.\r\n");
	r = take(&d, POP3_ACTION_UPDATE);
	CHECK_INT(r.account_id, 42);
	CHECK_INT(r.nuids, 2);
	CHECK_INT(r.uids[0], 10);
	CHECK_INT(r.uids[1], 12);
	CHECK_INT(take(&d, POP3_ACTION_RELEASE).account_id, 42);
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "quit");
	CHECK_INT(d.nacts, 0);
	CHECK_INT(d.r, -1);
	CHECK_INT(pop3_session_next(d.s, &(struct pop3_action){ 0 }), -1);
	CHECK_INT(pop3_session_state(d.s), POP3_STATE_DONE);
	drv_free(&d);
}

PN_TEST(test_capa_variants)
{
	struct pop3_settings set;
	struct drv d;

	/* Untrusted, plaintext, STLS offered: no USER, no SASL. */
	settings(&set);
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "capa\r\n");
	CHECK_OUT(&d, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		  "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nSTLS\r\n"
		  "IMPLEMENTATION Postern\r\n.\r\n");
	drv_free(&d);

	/* Implicit TLS: USER and SASL, no STLS; no IMPLEMENTATION line. */
	settings(&set);
	set.tls_active = true;
	set.implementation = NULL;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "CAPA\r\n");
	CHECK_OUT(&d, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		  "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nUSER\r\n"
		  "SASL PLAIN LOGIN\r\n.\r\n");
	drv_free(&d);

	/* Untrusted without a certificate: neither. */
	settings(&set);
	set.stls_available = false;
	set.implementation = "";
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "CAPA\r\n");
	CHECK_OUT(&d, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		  "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n.\r\n");
	drv_send(&d, "CAPA x\r\n");
	CHECK_OUT(&d, "-ERR Too many arguments.\r\n");
	drv_free(&d);

	/* The same list in TRANSACTION (RFC 2449 section 5). */
	login(&d, false);
	drv_send(&d, "CAPA\r\n");
	CHECK_OUT(&d, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		  "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nUSER\r\n"
		  "SASL PLAIN LOGIN\r\nIMPLEMENTATION Postern\r\n.\r\n");
	drv_free(&d);
}

PN_TEST(test_plaintext_refused_before_tls)
{
	struct pop3_settings set;
	struct drv d;

	settings(&set);
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "USER alice\r\n");
	CHECK_OUT(&d, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
	drv_send(&d, "PASS secret\r\n");
	CHECK_OUT(&d, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
	drv_send(&d, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
	CHECK_OUT(&d, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
	drv_send(&d, "AUTH LOGIN\r\n");
	CHECK_OUT(&d, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
	drv_send(&d, "AUTH\r\n");
	CHECK_OUT(&d, "+OK\r\n.\r\n");
	CHECK_INT(d.nacts, 0);
	CHECK_INT(pop3_session_state(d.s), POP3_STATE_AUTHORIZATION);
	drv_free(&d);
}

PN_TEST(test_stls)
{
	struct pop3_settings set;
	struct drv d;

	settings(&set);
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	/* A man in the middle appends a command after STLS: it must not run. */
	drv_send(&d, "STLS\r\nCAPA\r\nUSER evil\r\n");
	CHECK_OUT(&d, "+OK Begin TLS negotiation\r\n");
	take(&d, POP3_ACTION_START_TLS);
	CHECK_INT(d.nacts, 0);
	CHECK_INT(d.r, 0);
	/* Plaintext fed during the handshake is dropped too. */
	CHECK_INT(pop3_session_feed(d.s, "QUIT\r\n", 6), 6);
	CHECK_INT(drv_run(&d), 0);
	CHECK_OUT(&d, "");
	CHECK_INT(d.nacts, 0);
	pop3_session_tls_started(d.s);
	CHECK_INT(drv_run(&d), 0);
	CHECK_OUT(&d, "");
	drv_send(&d, "CAPA\r\n");
	CHECK_OUT(&d, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
		  "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nUSER\r\n"
		  "SASL PLAIN LOGIN\r\nIMPLEMENTATION Postern\r\n.\r\n");
	drv_send(&d, "STLS\r\n");
	CHECK_OUT(&d, "-ERR TLS is already active.\r\n");
	/* USER given before TLS is forgotten; now USER/PASS work. */
	drv_send(&d, "PASS x\r\n");
	CHECK_OUT(&d, "-ERR No user name given.\r\n");
	drv_send(&d, "USER alice\r\nPASS secret\r\n");
	CHECK_OUT(&d, "+OK\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	drv_free(&d);

	/* STLS not configured; STLS with an argument; STLS in TRANSACTION. */
	settings(&set);
	set.stls_available = false;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "STLS\r\n");
	CHECK_OUT(&d, "-ERR STLS is not available.\r\n");
	drv_free(&d);
	settings(&set);
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "STLS now\r\n");
	CHECK_OUT(&d, "-ERR Too many arguments.\r\n");
	/* A disconnect during the handshake ends the session at once. */
	drv_send(&d, "STLS\r\n");
	CHECK_OUT(&d, "+OK Begin TLS negotiation\r\n");
	take(&d, POP3_ACTION_START_TLS);
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), -1);
	CHECK_INT(d.nacts, 0);
	drv_free(&d);

	login(&d, true);
	drv_send(&d, "STLS\r\n");
	CHECK_OUT(&d, "-ERR Command not valid in this state.\r\n");
	drv_free(&d);
}

PN_TEST(test_user_pass)
{
	struct pop3_settings set;
	struct drv d;
	const char *err = NULL;

	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);

	drv_send(&d, "PASS secret\r\n");
	CHECK_OUT(&d, "-ERR No user name given.\r\n");
	drv_send(&d, "USER\r\n");
	CHECK_OUT(&d, "-ERR Missing argument.\r\n");
	drv_send(&d, "USER a b\r\n");
	CHECK_OUT(&d, "-ERR Too many arguments.\r\n");
	drv_send(&d, "USER alice\r\nPASS\r\n");
	CHECK_OUT(&d, "+OK\r\n-ERR Missing argument.\r\n");
	/* The password is everything after "PASS ", spaces included. */
	drv_send(&d, "user alice\r\npass  my secret \r\n");
	CHECK_OUT(&d, "+OK\r\n");
	struct rec r = take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_STR(r.user, "alice");
	CHECK_STR(r.password, " my secret ");
	CHECK_STR(r.authzid, "");
	CHECK_INT(r.mech, POP3_AUTH_MECH_USER);
	/* Commands wait while the request is out. */
	drv_send(&d, "CAPA\r\n");
	CHECK_OUT(&d, "");
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_BAD, 0, &err), 0);
	drv_run(&d);
	CHECK(strncmp(d.out, "-ERR [AUTH] Authentication failed.\r\n+OK Capability", 50) == 0);
	CHECK_OUT(&d, d.out); /* clear */
	/* A failed PASS needs a new USER. */
	drv_send(&d, "PASS secret\r\n");
	CHECK_OUT(&d, "-ERR No user name given.\r\n");

	drv_send(&d, "USER alice\r\nPASS secret\r\n");
	CHECK_OUT(&d, "+OK\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_TEMP_FAIL, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n");
	drv_send(&d, "USER alice\r\nPASS secret\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_LOGIN_DELAY, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "+OK\r\n-ERR [LOGIN-DELAY] Logged in too recently, try again later.\r\n");
	drv_send(&d, "USER alice\r\nPASS secret\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_PERM_FAIL, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "+OK\r\n-ERR [SYS/PERM] Login not possible for this account.\r\n");
	/* Results nobody asked for are refused. */
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 1, &err), -1);
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_OK, NULL, 0, &err), -1);
	CHECK_INT(pop3_session_update_result(d.s, true, &err), -1);
	CHECK_INT(pop3_session_message_fail(d.s, POP3_MESSAGE_GONE, &err), -1);
	CHECK_OUT(&d, "");
	/* Bad user names. */
	drv_send(&d, "USER al\x01ice\r\n");
	CHECK_OUT(&d, "-ERR Invalid user name.\r\n");
	drv_send(&d, "APOP alice 0123456789abcdef\r\n");
	CHECK_OUT(&d, "-ERR APOP is not supported.\r\n");
	drv_free(&d);
}

static void b64(const char *plain, size_t len, char *out, size_t size)
{
	CHECK(pn_base64_encode(plain, len, out, size) >= 0);
}

PN_TEST(test_auth_plain)
{
	struct pop3_settings set;
	struct drv d;
	char line[512], enc[256];

	settings(&set);
	set.tls_active = true;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);

	drv_send(&d, "AUTH\r\n");
	CHECK_OUT(&d, "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
	/* Initial response. */
	b64("\0alice\0secret", 13, enc, sizeof(enc));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", enc);
	drv_send_bytes(&d, line);
	CHECK_OUT(&d, "");
	struct rec r = take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(r.mech, POP3_AUTH_MECH_PLAIN);
	CHECK_STR(r.user, "alice");
	CHECK_STR(r.password, "secret");
	CHECK_STR(r.authzid, "");
	const char *err = NULL;
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_BAD, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR [AUTH] Authentication failed.\r\n");

	/* Without initial response: empty challenge, then the response. */
	drv_send_bytes(&d, "auth plain\r\n");
	CHECK_OUT(&d, "+ \r\n");
	b64("admin\0bob\0pw with space", 23, enc, sizeof(enc));
	snprintf(line, sizeof(line), "%s\r\n", enc);
	drv_send_bytes(&d, line);
	r = take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_STR(r.authzid, "admin");
	CHECK_STR(r.user, "bob");
	CHECK_STR(r.password, "pw with space");
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_BAD, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR [AUTH] Authentication failed.\r\n");

	/* Cancel. */
	drv_send(&d, "AUTH PLAIN\r\n*\r\n");
	CHECK_OUT(&d, "+ \r\n-ERR Authentication cancelled.\r\n");
	/* Bad base64, in the response and as initial response. */
	drv_send(&d, "AUTH PLAIN\r\n!!!!\r\n");
	CHECK_OUT(&d, "+ \r\n-ERR Invalid base64 data.\r\n");
	drv_send(&d, "AUTH PLAIN abc\r\n");
	CHECK_OUT(&d, "-ERR Invalid base64 data.\r\n");
	/* Malformed PLAIN messages: one NUL, empty password, empty message. */
	b64("alice\0secret", 12, enc, sizeof(enc));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", enc);
	drv_send(&d, line);
	CHECK_OUT(&d, "-ERR Malformed PLAIN response.\r\n");
	b64("\0alice\0", 7, enc, sizeof(enc));
	snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", enc);
	drv_send(&d, line);
	CHECK_OUT(&d, "-ERR Malformed PLAIN response.\r\n");
	drv_send(&d, "AUTH PLAIN =\r\n");
	CHECK_OUT(&d, "-ERR Malformed PLAIN response.\r\n");
	drv_send(&d, "AUTH CRAM-MD5\r\n");
	CHECK_OUT(&d, "-ERR Unsupported authentication mechanism.\r\n");
	CHECK_INT(d.nacts, 0);
	CHECK_INT(d.r, 0);
	drv_free(&d);
}

PN_TEST(test_auth_login)
{
	struct pop3_settings set;
	struct drv d;
	const char *err = NULL;

	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);

	drv_send_bytes(&d, "AUTH LOGIN\r\n");
	CHECK_OUT(&d, "+ VXNlcm5hbWU6\r\n");
	drv_send_bytes(&d, "YWxpY2U=\r\n");
	CHECK_OUT(&d, "+ UGFzc3dvcmQ6\r\n");
	drv_send_bytes(&d, "c2VjcmV0\r\n");
	CHECK_OUT(&d, "");
	struct rec r = take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(r.mech, POP3_AUTH_MECH_LOGIN);
	CHECK_STR(r.user, "alice");
	CHECK_STR(r.password, "secret");
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 7, &err), 0);
	drv_run(&d);
	CHECK_INT(take(&d, POP3_ACTION_MAILDROP_OPEN).account_id, 7);
	/* The lock is held elsewhere: [IN-USE], still AUTHORIZATION, no RELEASE. */
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_IN_USE, NULL, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR [IN-USE] Maildrop is locked by another session.\r\n");
	CHECK_INT(pop3_session_state(d.s), POP3_STATE_AUTHORIZATION);
	CHECK(!pop3_session_holds_maildrop(d.s));

	/* Initial response carries the user name; cancel at the password. */
	drv_send(&d, "AUTH LOGIN YWxpY2U=\r\n");
	CHECK_OUT(&d, "+ UGFzc3dvcmQ6\r\n");
	drv_send(&d, "*\r\n");
	CHECK_OUT(&d, "-ERR Authentication cancelled.\r\n");
	/* An empty password is refused without asking. */
	drv_send(&d, "AUTH LOGIN YWxpY2U=\r\n\r\n");
	CHECK_OUT(&d, "+ UGFzc3dvcmQ6\r\n-ERR [AUTH] Authentication failed.\r\n");
	CHECK_INT(d.nacts, 0);
	/* Temporary failure opening the maildrop. */
	drv_send(&d, "AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 7, &err), 0);
	drv_run(&d);
	take(&d, POP3_ACTION_MAILDROP_OPEN);
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_TEMP_FAIL, NULL, 0, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "+ UGFzc3dvcmQ6\r\n-ERR [SYS/TEMP] Maildrop not available, try again later.\r\n");
	/* An invalid listing from the daemon: -1, [SYS/TEMP] and the lock is released. */
	drv_send(&d, "AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 7, &err), 0);
	drv_run(&d);
	take(&d, POP3_ACTION_MAILDROP_OPEN);
	struct pop3_message bad = { .uid = 1, .size = 3, .uidl = "has space" };
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_OK, &bad, 1, &err), -1);
	drv_run(&d);
	CHECK_OUT(&d, "+ UGFzc3dvcmQ6\r\n-ERR [SYS/TEMP] Maildrop not available, try again later.\r\n");
	CHECK_INT(take(&d, POP3_ACTION_RELEASE).account_id, 7);
	CHECK(!pop3_session_holds_maildrop(d.s));
	CHECK_INT(pop3_session_state(d.s), POP3_STATE_AUTHORIZATION);
	/* A user name with a NUL. */
	drv_send(&d, "AUTH LOGIN\r\nYQBi\r\n");
	CHECK_OUT(&d, "+ VXNlcm5hbWU6\r\n-ERR Invalid user name.\r\n");
	drv_free(&d);
}

PN_TEST(test_wrong_state_and_unknown)
{
	struct pop3_settings set;
	struct drv d;
	static const char *const trans_only[] = { "STAT", "LIST", "RETR 1", "DELE 1", "NOOP",
						  "RSET", "TOP 1 1", "UIDL" };
	static const char *const auth_only[] = { "USER a", "PASS b", "APOP a b", "AUTH PLAIN",
						 "STLS" };
	char line[64];

	settings(&set);
	set.trusted = true;
	set.max_errors = 100;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	for (size_t i = 0; i < sizeof(trans_only) / sizeof(trans_only[0]); i++) {
		snprintf(line, sizeof(line), "%s\r\n", trans_only[i]);
		drv_send_bytes(&d, line);
		CHECK_OUT(&d, "-ERR Command not valid in this state.\r\n");
	}
	drv_send(&d, "HELO\r\n");
	CHECK_OUT(&d, "-ERR Unknown command.\r\n");
	drv_send(&d, "\r\n");
	CHECK_OUT(&d, "-ERR Unknown command.\r\n");
	drv_send(&d, "QUITX\r\n");
	CHECK_OUT(&d, "-ERR Unknown command.\r\n");
	drv_send(&d, "US");
	CHECK_OUT(&d, "");	/* a partial line */
	CHECK_INT(pop3_session_feed(d.s, "ER a\0b\r\n", 8), 8);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR Invalid characters in command.\r\n");
	/* Bare LF line ends are accepted. */
	drv_send(&d, "CAPA\nQUIT\n");
	CHECK(strstr(d.out, "+OK Logging out.\r\n") != NULL);
	CHECK_OUT(&d, d.out);
	take(&d, POP3_ACTION_CLOSE);
	drv_free(&d);

	login(&d, true);
	for (size_t i = 0; i < sizeof(auth_only) / sizeof(auth_only[0]); i++) {
		snprintf(line, sizeof(line), "%s\r\n", auth_only[i]);
		drv_send_bytes(&d, line);
		CHECK_OUT(&d, "-ERR Command not valid in this state.\r\n");
	}
	drv_send(&d, "XYZZY\r\n");
	CHECK_OUT(&d, "-ERR Unknown command.\r\n");
	drv_free(&d);
}

PN_TEST(test_transaction_commands)
{
	struct drv d;
	char want[512];

	login(&d, true);
	/* STAT / LIST / UIDL with arguments and errors. */
	drv_send(&d, "STAT x\r\n");
	CHECK_OUT(&d, "-ERR Too many arguments.\r\n");
	drv_send(&d, "LIST 2\r\n");
	snprintf(want, sizeof(want), "+OK 2 %zu\r\n", strlen(M2));
	CHECK_OUT(&d, want);
	drv_send(&d, "LIST 0\r\n");
	CHECK_OUT(&d, "-ERR No such message.\r\n");
	drv_send(&d, "LIST 6\r\n");
	CHECK_OUT(&d, "-ERR No such message.\r\n");
	drv_send(&d, "LIST 99999999999999999999\r\n");
	CHECK_OUT(&d, "-ERR No such message.\r\n");
	drv_send(&d, "LIST -1\r\n");
	CHECK_OUT(&d, "-ERR Invalid message number.\r\n");
	drv_send(&d, "LIST 1 2\r\n");
	CHECK_OUT(&d, "-ERR Too many arguments.\r\n");
	drv_send(&d, "UIDL 5\r\n");
	CHECK_OUT(&d, "+OK 5 u20\r\n");
	drv_send(&d, "UIDL x\r\n");
	CHECK_OUT(&d, "-ERR Invalid message number.\r\n");
	drv_send(&d, "RETR\r\n");
	CHECK_OUT(&d, "-ERR Missing argument.\r\n");
	/* 8 errors so far: start again before the limit. */
	drv_free(&d);
	login(&d, true);
	drv_send(&d, "TOP 1\r\n");
	CHECK_OUT(&d, "-ERR Missing argument.\r\n");
	drv_send(&d, "TOP 1 x\r\n");
	CHECK_OUT(&d, "-ERR Invalid number of lines.\r\n");
	drv_send(&d, "NOOP 1\r\n");
	CHECK_OUT(&d, "-ERR Too many arguments.\r\n");
	drv_send(&d, "DELE 2\r\n");
	CHECK_OUT(&d, "+OK Message 2 deleted.\r\n");

	/* A deleted message is refused everywhere and left out of listings. */
	drv_free(&d);
	login(&d, true);
	drv_send(&d, "DELE 2\r\nDELE 2\r\nLIST 2\r\nUIDL 2\r\nRETR 2\r\nTOP 2 0\r\n");
	CHECK_OUT(&d, "+OK Message 2 deleted.\r\n-ERR Message 2 is deleted.\r\n"
		  "-ERR Message 2 is deleted.\r\n-ERR Message 2 is deleted.\r\n"
		  "-ERR Message 2 is deleted.\r\n-ERR Message 2 is deleted.\r\n");
	CHECK_INT(d.nacts, 0);
	drv_send(&d, "STAT\r\nUIDL\r\n");
	snprintf(want, sizeof(want),
		 "+OK 4 %" PRIu64 "\r\n+OK Unique-ID listing follows\r\n1 u10\r\n3 u12\r\n4 u15\r\n5 u20\r\n.\r\n",
		 total_size() - strlen(M2));
	CHECK_OUT(&d, want);
	drv_send(&d, "LIST\r\n");
	snprintf(want, sizeof(want),
		 "+OK 4 messages (%" PRIu64 " octets)\r\n1 %zu\r\n3 %zu\r\n4 0\r\n5 %zu\r\n.\r\n",
		 total_size() - strlen(M2), strlen(M1), strlen(M3), strlen(M5));
	CHECK_OUT(&d, want);
	/* RSET undeletes. */
	drv_send(&d, "RSET\r\n");
	snprintf(want, sizeof(want), "+OK Maildrop has 5 messages (%" PRIu64 " octets).\r\n",
		 total_size());
	CHECK_OUT(&d, want);
	drv_send(&d, "LIST 2\r\n");
	snprintf(want, sizeof(want), "+OK 2 %zu\r\n", strlen(M2));
	CHECK_OUT(&d, want);
	/* QUIT with nothing deleted: no UPDATE, the lock is released. */
	drv_send(&d, "QUIT\r\n");
	CHECK_OUT(&d, "+OK Logging out.\r\n");
	CHECK_INT(take(&d, POP3_ACTION_RELEASE).account_id, 42);
	take(&d, POP3_ACTION_CLOSE);
	CHECK_INT(d.updates, 0);
	CHECK_INT(d.r, -1);
	drv_free(&d);
}

PN_TEST(test_retr_stuffing_and_chunks)
{
	struct drv d;
	char want[512];
	const char *err = NULL;

	login(&d, true);
	/* The same message in every chunk size gives the same bytes. */
	for (size_t chunk = 1; chunk <= strlen(M1) + 1; chunk++) {
		drv_send(&d, "RETR 1\r\n");
		take(&d, POP3_ACTION_MESSAGE_GET);
		CHECK_OUT(&d, "");
		deliver(&d, M1, chunk);
		snprintf(want, sizeof(want), "+OK %zu octets\r\n" M1_STUFFED, strlen(M1));
		CHECK_OUT(&d, want);
	}
	/* No final CRLF: one is added. A leading dot is stuffed. */
	drv_send(&d, "RETR 3\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	deliver(&d, M3, 2);
	snprintf(want, sizeof(want), "+OK %zu octets\r\n..odd: header\r\n\r\nb1\r\nb2\r\nb3\r\n.\r\n",
		 strlen(M3));
	CHECK_OUT(&d, want);
	/* An empty message. */
	drv_send(&d, "RETR 4\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	deliver(&d, M4, 1);
	CHECK_OUT(&d, "+OK 0 octets\r\n.\r\n");
	/* Empty chunks before data are fine. */
	drv_send(&d, "RETR 5\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	size_t c = 9;
	CHECK_INT(pop3_session_message_data(d.s, "", 0, false, &c, &err), 0);
	CHECK_INT(c, 0);
	deliver(&d, M5, 3);
	snprintf(want, sizeof(want), "+OK %zu octets\r\n" M5 ".\r\n", strlen(M5));
	CHECK_OUT(&d, want);
	drv_free(&d);

	/* retr_sets_seen off. */
	struct pop3_settings set;
	settings(&set);
	set.trusted = true;
	set.retr_sets_seen = false;
	drv_start(&d, &set);
	d.autoreply = true;
	drv_send(&d, "USER alice\r\nPASS secret\r\nRETR 2\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	take(&d, POP3_ACTION_MAILDROP_OPEN);
	struct rec r = take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK(!r.set_seen);
	CHECK_INT(r.uid, 11);
	drv_free(&d);
}

/* A message far larger than the output buffer, made of lines that all
 * need stuffing, given in one chunk and in odd chunks. */
PN_TEST(test_retr_large_backpressure)
{
	struct pop3_settings set;
	struct pop3_message m = { .uid = 1, .uidl = "big" };
	struct drv d;
	const char *err = NULL;
	size_t lines = 60000, len = lines * 3;
	uint8_t *msg = malloc(len);
	char *want = malloc(len / 3 * 4 + 64);

	CHECK(msg != NULL && want != NULL);
	for (size_t i = 0; i < lines; i++)
		memcpy(msg + 3 * i, ".\r\n", 3);
	int w = snprintf(want, 64, "+OK %zu octets\r\n", len);
	for (size_t i = 0; i < lines; i++)
		memcpy(want + w + 4 * i, "..\r\n", 4);
	memcpy(want + w + 4 * lines, ".\r\n", 4);

	for (int pass = 0; pass < 2; pass++) {
		settings(&set);
		set.trusted = true;
		drv_start(&d, &set);
		drv_send(&d, "USER a\r\nPASS b\r\n");
		take(&d, POP3_ACTION_AUTH_VERIFY);
		CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 1, &err), 0);
		drv_run(&d);
		take(&d, POP3_ACTION_MAILDROP_OPEN);
		m.size = len;
		CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_OK, &m, 1, &err), 0);
		drv_run(&d);
		CHECK_OUT(&d, d.out);
		drv_send(&d, "RETR 1\r\n");
		take(&d, POP3_ACTION_MESSAGE_GET);
		size_t sends = d.sends;
		deliver_buf(&d, msg, len, pass == 0 ? len : 4097);
		CHECK(d.sends - sends > 2);	/* it did not fit in one */
		CHECK_STR(d.out, want);
		CHECK_OUT(&d, d.out);
		drv_free(&d);
	}
	free(msg);
	free(want);
}

PN_TEST(test_top)
{
	struct drv d;
	const char *err = NULL;

	login(&d, true);
	d.autoreply = true;
	d.chunk = 1;
	drv_send(&d, "TOP 1 0\r\n");
	CHECK_OUT(&d, "+OK\r\nSubject: one\r\n\r\n.\r\n");
	drv_send(&d, "TOP 1 2\r\n");
	CHECK_OUT(&d, "+OK\r\nSubject: one\r\n\r\nHello\r\n..hidden dot\r\n.\r\n");
	drv_send(&d, "TOP 1 4294967296\r\n");
	CHECK_OUT(&d, "+OK\r\n" M1_STUFFED);
	/* No body: the whole message. */
	drv_send(&d, "TOP 2 0\r\n");
	CHECK_OUT(&d, "+OK\r\n" M2 ".\r\n");
	drv_send(&d, "TOP 2 3\r\n");
	CHECK_OUT(&d, "+OK\r\n" M2 ".\r\n");
	drv_send(&d, "TOP 5 1\r\n");
	CHECK_OUT(&d, "+OK\r\n" M5 ".\r\n");
	drv_send(&d, "TOP 4 1\r\n");
	CHECK_OUT(&d, "+OK\r\n.\r\n");
	struct rec r = take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(r.top_lines, 0);
	r = take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(r.top_lines, 2);
	r = take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(r.top_lines, UINT32_MAX);
	d.nacts = 0;

	/* message_complete lets the daemon stop early. */
	d.autoreply = false;
	drv_send(&d, "TOP 3 1\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK(!pop3_session_message_complete(d.s));
	size_t c = 0;
	CHECK_INT(pop3_session_message_data(d.s, M3, 20, false, &c, &err), 0);
	CHECK_INT(c, 20);
	CHECK(pop3_session_message_complete(d.s));
	CHECK_INT(pop3_session_message_data(d.s, NULL, 0, true, &c, &err), 0);
	CHECK(!pop3_session_message_complete(d.s));
	drv_run(&d);
	CHECK_OUT(&d, "+OK\r\n..odd: header\r\n\r\nb1\r\n.\r\n");
	drv_free(&d);
}

PN_TEST(test_message_failures)
{
	struct drv d;
	const char *err = NULL;
	size_t c;

	login(&d, true);
	drv_send(&d, "RETR 1\r\nNOOP\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(pop3_session_message_fail(d.s, POP3_MESSAGE_GONE, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR Message no longer exists.\r\n+OK\r\n");
	drv_send(&d, "TOP 1 1\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(pop3_session_message_fail(d.s, POP3_MESSAGE_TEMP_FAIL, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR [SYS/TEMP] Message not available, try again later.\r\n");
	CHECK_INT(pop3_session_message_data(d.s, "x", 1, true, &c, &err), -1);
	/* A failure after data went out ends the session; nothing is expunged. */
	drv_send(&d, "DELE 2\r\nRETR 1\r\nQUIT\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(pop3_session_message_data(d.s, "Subject", 7, false, &c, &err), 0);
	CHECK_INT(pop3_session_message_fail(d.s, POP3_MESSAGE_TEMP_FAIL, &err), 0);
	drv_run(&d);
	char want[128];
	snprintf(want, sizeof(want), "+OK Message 2 deleted.\r\n+OK %zu octets\r\nSubject", strlen(M1));
	CHECK_OUT(&d, want);
	take(&d, POP3_ACTION_RELEASE);
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "message read failed");
	CHECK_INT(d.updates, 0);
	CHECK_INT(d.r, -1);
	drv_free(&d);
}

PN_TEST(test_quit)
{
	struct pop3_settings set;
	struct drv d;
	const char *err = NULL;

	/* AUTHORIZATION: no UPDATE, no RELEASE. */
	settings(&set);
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send_bytes(&d, "QUIT\r\n");
	CHECK_OUT(&d, "+OK Logging out.\r\n");
	take(&d, POP3_ACTION_CLOSE);
	CHECK_INT(d.nacts, 0);
	CHECK_INT(d.r, -1);
	/* Input after the end is ignored. */
	CHECK_INT(pop3_session_feed(d.s, "NOOP\r\n", 6), 6);
	CHECK_INT(drv_run(&d), -1);
	CHECK_OUT(&d, "");
	drv_free(&d);

	/* TRANSACTION with deletions; pipelined input after QUIT is dropped;
	 * the UPDATE fails. */
	login(&d, true);
	drv_send(&d, "DELE 5\r\nDELE 1\r\nQUIT\r\nNOOP\r\n");
	CHECK_OUT(&d, "+OK Message 5 deleted.\r\n+OK Message 1 deleted.\r\n");
	struct rec r = take(&d, POP3_ACTION_UPDATE);
	CHECK_INT(r.nuids, 2);
	CHECK_INT(r.uids[0], 10);
	CHECK_INT(r.uids[1], 20);
	CHECK_INT(pop3_session_state(d.s), POP3_STATE_UPDATE);
	CHECK(pop3_session_holds_maildrop(d.s));
	CHECK_INT(pop3_session_update_result(d.s, false, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR [SYS/TEMP] Deleted messages could not be removed.\r\n");
	take(&d, POP3_ACTION_RELEASE);
	take(&d, POP3_ACTION_CLOSE);
	CHECK_INT(d.nacts, 0);
	CHECK_INT(d.r, -1);
	drv_free(&d);
}

PN_TEST(test_disconnect)
{
	struct drv d;
	const char *err = NULL;
	size_t c;

	/* After DELE: RELEASE, no UPDATE, then the end. */
	login(&d, true);
	drv_send(&d, "DELE 1\r\n");
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n");
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), -1);
	CHECK_INT(take(&d, POP3_ACTION_RELEASE).account_id, 42);
	CHECK_INT(d.nacts, 0);
	CHECK_INT(d.updates, 0);
	CHECK(!pop3_session_holds_maildrop(d.s));
	drv_free(&d);

	/* UPDATE queued but not handed out yet: dropped, RELEASE only. */
	login(&d, true);
	CHECK_INT(pop3_session_feed(d.s, "DELE 1\r\nQUIT\r\n", 14), 14);
	struct pop3_action a;
	CHECK_INT(pop3_session_next(d.s, &a), 1);
	CHECK_INT(a.type, POP3_ACTION_SEND);
	CHECK_MEM(a.send.data, a.send.len, "+OK Message 1 deleted.\r\n", 24);
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), -1);
	take(&d, POP3_ACTION_RELEASE);
	CHECK_INT(d.updates, 0);
	CHECK_OUT(&d, "");
	drv_free(&d);

	/* During a RETR: the data is taken and dropped, RELEASE after final. */
	login(&d, true);
	drv_send(&d, "RETR 1\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(pop3_session_message_data(d.s, "abc", 3, false, &c, &err), 0);
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), 0);
	CHECK_INT(d.nacts, 0);
	CHECK_INT(pop3_session_message_data(d.s, "defg", 4, true, &c, &err), 0);
	CHECK_INT(c, 4);
	CHECK_INT(drv_run(&d), -1);
	take(&d, POP3_ACTION_RELEASE);
	CHECK_OUT(&d, "");
	drv_free(&d);

	/* During the UPDATE: it completes, then RELEASE. */
	login(&d, true);
	drv_send(&d, "DELE 1\r\nQUIT\r\n");
	take(&d, POP3_ACTION_UPDATE);
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), 0);
	CHECK_INT(d.nacts, 0);
	CHECK(pop3_session_holds_maildrop(d.s));
	CHECK_INT(pop3_session_update_result(d.s, true, &err), 0);
	CHECK_INT(drv_run(&d), -1);
	take(&d, POP3_ACTION_RELEASE);
	CHECK_INT(d.nacts, 0);
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n");
	drv_free(&d);

	/* During AUTH_VERIFY: ok comes back, no MAILDROP_OPEN follows. */
	struct pop3_settings set;
	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	drv_send(&d, "USER a\r\nPASS b\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), 0);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 3, &err), 0);
	CHECK_INT(drv_run(&d), -1);
	CHECK_INT(d.nacts, 0);
	drv_free(&d);

	/* During MAILDROP_OPEN: the lock taken is released. */
	drv_start(&d, &set);
	drv_send(&d, "USER a\r\nPASS b\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 3, &err), 0);
	drv_run(&d);
	take(&d, POP3_ACTION_MAILDROP_OPEN);
	pop3_session_disconnected(d.s);
	struct pop3_message m[NMSG];
	listing(m);
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_OK, m, NMSG, &err), 0);
	CHECK_INT(drv_run(&d), -1);
	CHECK_INT(take(&d, POP3_ACTION_RELEASE).account_id, 3);
	CHECK_INT(d.nacts, 0);
	drv_free(&d);

	/* In AUTHORIZATION: nothing owed. */
	drv_start(&d, &set);
	pop3_session_disconnected(d.s);
	pop3_session_disconnected(d.s);
	CHECK_INT(drv_run(&d), -1);
	CHECK_INT(d.nacts, 0);
	drv_free(&d);
}

PN_TEST(test_line_limits)
{
	struct pop3_settings set;
	struct drv d;
	char line[3000];

	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	/* Exactly max_line with CRLF is fine (an unknown command here). */
	memset(line, 'A', sizeof(line));
	memcpy(line + POP3_DEFAULT_MAX_LINE - 2, "\r\n", 3);
	drv_send(&d, line);
	CHECK_OUT(&d, "-ERR Unknown command.\r\n");
	/* One more is too long; the error comes as soon as the limit is
	 * reached, the rest of the line is skipped. */
	memset(line, 'A', sizeof(line));
	for (size_t i = 0; i < POP3_DEFAULT_MAX_LINE; i++) {
		CHECK_INT(pop3_session_feed(d.s, line, 1), 1);
		drv_run(&d);
		if (i < POP3_DEFAULT_MAX_LINE - 1)
			CHECK_INT(d.out_len, 0);
	}
	CHECK_OUT(&d, "-ERR Line too long.\r\n");
	drv_send(&d, "AAAAAAAAAA");
	drv_send(&d, "AAAA\r\nNOOP\r\n");
	CHECK_OUT(&d, "-ERR Command not valid in this state.\r\n");
	/* A too long line in one piece. */
	memset(line, 'B', sizeof(line));
	memcpy(line + 2000, "\r\n", 3);
	drv_send(&d, line);
	CHECK_OUT(&d, "-ERR Line too long.\r\n");
	/* SASL responses may be longer than commands, up to max_auth_line. */
	drv_send(&d, "AUTH PLAIN\r\n");
	CHECK_OUT(&d, "+ \r\n");
	memset(line, 'A', sizeof(line));
	memcpy(line + 2400, "\r\n", 3);
	drv_send(&d, line);
	CHECK_OUT(&d, "-ERR [AUTH] Authentication failed.\r\n");
	drv_free(&d);

	/* max_auth_line exceeded. */
	settings(&set);
	set.trusted = true;
	set.max_auth_line = 300;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "AUTH PLAIN\r\n");
	CHECK_OUT(&d, "+ \r\n");
	memset(line, 'A', 400);
	memcpy(line + 400, "\r\nNOOP\r\n", 9);
	drv_send(&d, line);
	CHECK_OUT(&d, "-ERR Response line too long, authentication aborted.\r\n"
		  "-ERR Command not valid in this state.\r\n");
	drv_free(&d);
}

PN_TEST(test_error_limit)
{
	struct drv d;

	login(&d, true);
	for (int i = 0; i < POP3_DEFAULT_MAX_ERRORS - 1; i++) {
		drv_send(&d, "BOGUS\r\n");
		CHECK_OUT(&d, "-ERR Unknown command.\r\n");
	}
	drv_send(&d, "DELE 1\r\nRETR 99\r\nQUIT\r\n");
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n"
		  "-ERR No such message. Too many errors, closing connection.\r\n");
	take(&d, POP3_ACTION_RELEASE);
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "too many errors");
	CHECK_INT(d.updates, 0);
	CHECK_INT(d.r, -1);
	drv_free(&d);

	/* Failed logins count. */
	struct pop3_settings set;
	const char *err = NULL;
	settings(&set);
	set.trusted = true;
	set.max_errors = 2;
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	for (int i = 0; i < 2; i++) {
		drv_send(&d, "USER a\r\nPASS b\r\n");
		take(&d, POP3_ACTION_AUTH_VERIFY);
		CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_BAD, 0, &err), 0);
		drv_run(&d);
	}
	CHECK_OUT(&d, "+OK\r\n-ERR [AUTH] Authentication failed.\r\n"
		  "+OK\r\n-ERR [AUTH] Authentication failed. Too many errors, closing connection.\r\n");
	take(&d, POP3_ACTION_CLOSE);
	CHECK_INT(d.r, -1);
	drv_free(&d);
}

PN_TEST(test_command_limit)
{
	struct pop3_settings set;
	struct drv d;
	const char *err = NULL;
	struct pop3_message m[NMSG];

	settings(&set);
	set.trusted = true;
	set.max_commands = 5;
	drv_start(&d, &set);
	drv_send(&d, "USER a\r\nPASS b\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 9, &err), 0);
	drv_run(&d);
	take(&d, POP3_ACTION_MAILDROP_OPEN);
	listing(m);
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_OK, m, NMSG, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, d.out);
	/* Commands 3..5, then QUIT still works past the limit. */
	drv_send(&d, "DELE 1\r\nNOOP\r\nNOOP\r\nQUIT\r\n");
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n+OK\r\n+OK\r\n");
	take(&d, POP3_ACTION_UPDATE);
	CHECK_INT(pop3_session_update_result(d.s, true, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "+OK Logging out, 1 message deleted.\r\n");
	drv_free(&d);

	/* The sixth command other than QUIT closes. */
	drv_start(&d, &set);
	CHECK_OUT(&d, GREETING);
	drv_send(&d, "CAPA\r\nCAPA\r\nCAPA\r\nCAPA\r\nCAPA\r\n");
	CHECK_OUT(&d, d.out);
	drv_send(&d, "NOOP\r\n");
	CHECK_OUT(&d, "-ERR Too many commands, closing connection.\r\n");
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "too many commands");
	drv_free(&d);
}

PN_TEST(test_pipelining)
{
	struct drv d;
	const char *err = NULL;
	char want[512];

	login(&d, true);
	/* All in one segment: answered in order, one request at a time. */
	drv_send(&d, "STAT\r\nRETR 2\r\nDELE 2\r\nLIST 2\r\nQUIT\r\n");
	snprintf(want, sizeof(want), "+OK 5 %" PRIu64 "\r\n", total_size());
	CHECK_OUT(&d, want);
	take(&d, POP3_ACTION_MESSAGE_GET);
	CHECK_INT(d.nacts, 0);
	deliver(&d, M2, 5);
	snprintf(want, sizeof(want),
		 "+OK %zu octets\r\n" M2 ".\r\n+OK Message 2 deleted.\r\n-ERR Message 2 is deleted.\r\n",
		 strlen(M2));
	CHECK_OUT(&d, want);
	struct rec r = take(&d, POP3_ACTION_UPDATE);
	CHECK_INT(r.nuids, 1);
	CHECK_INT(r.uids[0], 11);
	CHECK_INT(pop3_session_update_result(d.s, true, &err), 0);
	drv_run(&d);
	CHECK_OUT(&d, "+OK Logging out, 1 message deleted.\r\n");
	take(&d, POP3_ACTION_RELEASE);
	take(&d, POP3_ACTION_CLOSE);
	drv_free(&d);
}

PN_TEST(test_input_backpressure)
{
	struct drv d;
	char buf[8192];
	size_t total = 0, n;

	login(&d, true);
	drv_send(&d, "RETR 1\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	/* While the request is out, pipelined commands fill the buffer. */
	for (size_t i = 0; i + 6 <= sizeof(buf); i += 6)
		memcpy(buf + i, "NOOP\r\n", 6);
	while ((n = pop3_session_feed(d.s, buf, sizeof(buf) - sizeof(buf) % 6)) > 0)
		total += n;
	CHECK(total > 0);
	CHECK(total < 64 * 1024);
	CHECK_INT(pop3_session_feed(d.s, "x", 1), 0);
	deliver(&d, M1, 100);
	/* Everything taken was answered. */
	size_t noops = 0;
	for (const char *p = d.out; (p = strstr(p, "+OK\r\n")) != NULL; p += 5)
		noops++;
	CHECK_INT(noops, total / 6);
	CHECK_INT(pop3_session_feed(d.s, "x", 1), 1);
	drv_free(&d);
}

PN_TEST(test_large_listing)
{
	struct pop3_settings set;
	struct drv d;
	const char *err = NULL;
	size_t count = 20000;
	struct pop3_message *m = calloc(count, sizeof(*m));
	char (*names)[16] = calloc(count, 16);

	for (size_t i = 0; i < count; i++) {
		snprintf(names[i], 16, "U%zu", i + 1);
		m[i].uid = (uint32_t)(i + 100);
		m[i].size = i;
		m[i].uidl = names[i];
	}
	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	drv_send(&d, "USER a\r\nPASS b\r\n");
	take(&d, POP3_ACTION_AUTH_VERIFY);
	CHECK_INT(pop3_session_auth_result(d.s, POP3_AUTH_OK, 1, &err), 0);
	drv_run(&d);
	take(&d, POP3_ACTION_MAILDROP_OPEN);
	CHECK_INT(pop3_session_maildrop_result(d.s, POP3_MAILDROP_OK, m, count, &err), 0);
	free(m);
	free(names);
	drv_run(&d);
	CHECK_OUT(&d, d.out);
	size_t sends = d.sends;
	drv_send(&d, "UIDL\r\nNOOP\r\n");
	CHECK(d.sends - sends > 3);	/* produced in pieces */
	const char *p = strstr(d.out, "\r\n") + 2;
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		char want[40];
		int w = snprintf(want, sizeof(want), "%zu U%zu\r\n", i + 1, i + 1);
		ok = strncmp(p, want, (size_t)w) == 0;
		p += w;
	}
	CHECK(ok);
	CHECK_STR(p, ".\r\n+OK\r\n");
	CHECK_OUT(&d, d.out);
	drv_send(&d, "LIST 20000\r\n");
	CHECK_OUT(&d, "+OK 20000 19999\r\n");
	drv_free(&d);
}

PN_TEST(test_shutdown)
{
	struct drv d;
	const char *err = NULL;

	/* Idle in TRANSACTION: goodbye, RELEASE, CLOSE, nothing expunged. */
	login(&d, true);
	drv_send(&d, "DELE 1\r\n");
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n");
	pop3_session_shutdown(d.s, POP3_CLOSE_IDLE);
	pop3_session_shutdown(d.s, POP3_CLOSE_SHUTDOWN);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR Disconnected for inactivity.\r\n");
	take(&d, POP3_ACTION_RELEASE);
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "idle");
	CHECK_INT(d.updates, 0);
	drv_free(&d);

	/* Kick: its own words, nothing expunged. */
	login(&d, true);
	drv_send(&d, "DELE 1\r\n");
	CHECK_OUT(&d, "+OK Message 1 deleted.\r\n");
	pop3_session_shutdown(d.s, POP3_CLOSE_KICK);
	drv_run(&d);
	CHECK_OUT(&d, "-ERR Disconnected by the administrator.\r\n");
	take(&d, POP3_ACTION_RELEASE);
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "kick");
	CHECK_INT(d.updates, 0);
	drv_free(&d);

	/* With a request out: it finishes first. */
	login(&d, true);
	drv_send(&d, "RETR 2\r\nNOOP\r\n");
	take(&d, POP3_ACTION_MESSAGE_GET);
	pop3_session_shutdown(d.s, POP3_CLOSE_SHUTDOWN);
	CHECK_INT(drv_run(&d), 0);
	deliver(&d, M2, 100);
	char want[256];
	snprintf(want, sizeof(want),
		 "+OK %zu octets\r\n" M2 ".\r\n-ERR [SYS/TEMP] Server shutting down.\r\n", strlen(M2));
	CHECK_OUT(&d, want);
	take(&d, POP3_ACTION_RELEASE);
	CHECK_STR(take(&d, POP3_ACTION_CLOSE).reason, "shutdown");
	drv_free(&d);

	/* In AUTHORIZATION, in the middle of a SASL exchange. */
	struct pop3_settings set;
	settings(&set);
	set.trusted = true;
	drv_start(&d, &set);
	drv_send(&d, "AUTH LOGIN\r\n");
	pop3_session_shutdown(d.s, POP3_CLOSE_SHUTDOWN);
	drv_run(&d);
	CHECK_OUT(&d, GREETING "+ VXNlcm5hbWU6\r\n-ERR [SYS/TEMP] Server shutting down.\r\n");
	take(&d, POP3_ACTION_CLOSE);
	CHECK_INT(d.nacts, 0);
	CHECK_INT(pop3_session_update_result(d.s, true, &err), -1);
	drv_free(&d);
}

PN_TEST_MAIN("pop3-session",
	PN_TEST_CASE(test_settings),
	PN_TEST_CASE(test_full_session_byte_at_a_time),
	PN_TEST_CASE(test_capa_variants),
	PN_TEST_CASE(test_plaintext_refused_before_tls),
	PN_TEST_CASE(test_stls),
	PN_TEST_CASE(test_user_pass),
	PN_TEST_CASE(test_auth_plain),
	PN_TEST_CASE(test_auth_login),
	PN_TEST_CASE(test_wrong_state_and_unknown),
	PN_TEST_CASE(test_transaction_commands),
	PN_TEST_CASE(test_retr_stuffing_and_chunks),
	PN_TEST_CASE(test_retr_large_backpressure),
	PN_TEST_CASE(test_top),
	PN_TEST_CASE(test_message_failures),
	PN_TEST_CASE(test_quit),
	PN_TEST_CASE(test_disconnect),
	PN_TEST_CASE(test_line_limits),
	PN_TEST_CASE(test_error_limit),
	PN_TEST_CASE(test_command_limit),
	PN_TEST_CASE(test_pipelining),
	PN_TEST_CASE(test_input_backpressure),
	PN_TEST_CASE(test_large_listing),
	PN_TEST_CASE(test_shutdown))
