/* The POP3 server session engine (see pop3-session.h for the contract): the
 * AUTHORIZATION / TRANSACTION / UPDATE state machine of RFC 1939, CAPA and
 * response codes (RFC 2449, RFC 3206), STLS (RFC 2595) and AUTH PLAIN /
 * LOGIN (RFC 5034). Input lines come from a bounded buffer, replies go to a
 * bounded output buffer handed out as SEND actions, and storage work leaves
 * as request actions answered by the result calls at the end of this file.
 */
#include "pop3-session.h"

#include "pop3-message.h"
#include "postern/buf.h"
#include "sasl.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Output buffer bound: replies are short; LIST / UIDL listings and message
 * bodies are produced piecewise up to OUT_BATCH / OUT_MAX. */
#define OUT_MAX (64 * 1024)
#define OUT_BATCH (16 * 1024)
/* Room for pipelined commands beyond the longest line. */
#define IN_SLACK 4096
#define QUEUE_MAX 4

enum wait_kind {
	WAIT_NONE,
	WAIT_AUTH,
	WAIT_MAILDROP,
	WAIT_MESSAGE,
	WAIT_UPDATE,
	WAIT_TLS,
};

enum listing_kind {
	LISTING_NONE,
	LISTING_LIST,
	LISTING_UIDL,
};

struct msg_entry {
	uint64_t size;
	uint32_t uid;
	uint32_t uidl_off;	/* into uidl_pool */
	uint8_t uidl_len;
	bool deleted;
};

struct pop3_session {
	struct pop3_settings set;
	enum pop3_state state;
	bool tls;		/* TLS active now */
	bool disconnected;
	bool ended;		/* next() returns -1 */
	bool close_queued;
	bool lock_held;		/* RELEASE owed */
	bool skip_line;		/* dropping the rest of a too long line */
	bool close_pending;	/* pop3_session_shutdown() */
	enum pop3_close_reason close_reason;
	const char *end_reason;
	unsigned int errors, commands;

	enum wait_kind wait;
	bool wait_handed;	/* the request was returned by next() */

	struct pn_buf in, out;
	size_t in_scanned;	/* bytes of in known to hold no LF */
	size_t out_handed;	/* bytes of out returned in a SEND */
	char *line;		/* the current line, NUL terminated */
	size_t line_size;

	struct pop3_action queue[QUEUE_MAX];
	size_t q_len;

	/* Authentication */
	struct sasl_exchange *sasl;	/* waiting for a SASL response */
	bool have_user;		/* USER given, PASS may follow */
	char user[POP3_MAX_USER_LEN + 1];
	char authzid[POP3_MAX_USER_LEN + 1];
	char password[POP3_MAX_PASSWORD_LEN + 1];
	uint64_t account_id;

	/* Maildrop (TRANSACTION) */
	struct msg_entry *msgs;
	char *uidl_pool;
	uint32_t count, deleted;
	uint64_t size_total, size_deleted;
	uint32_t *update_uids;

	enum listing_kind listing;
	uint32_t listing_pos;

	/* RETR / TOP in progress */
	struct pop3_msgout mo;
	bool msg_started;	/* "+OK" sent */
	bool msg_top;
	uint64_t msg_size;
};

/* ---- settings ---- */

void pop3_settings_defaults(struct pop3_settings *set_r)
{
	memset(set_r, 0, sizeof(*set_r));
	set_r->hostname = "localhost";
	set_r->retr_sets_seen = true;
	set_r->max_line = POP3_DEFAULT_MAX_LINE;
	set_r->max_auth_line = POP3_DEFAULT_MAX_AUTH_LINE;
	set_r->max_errors = POP3_DEFAULT_MAX_ERRORS;
	set_r->max_commands = POP3_DEFAULT_MAX_COMMANDS;
}

static bool printable(const char *p, bool spaces)
{
	for (; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c > 0x7e || c < 0x20 || (c == ' ' && !spaces))
			return false;
	}
	return true;
}

int pop3_settings_check(const struct pop3_settings *set, const char **error_r)
{
	if (set->hostname == NULL || set->hostname[0] == '\0' ||
	    strlen(set->hostname) > 255 || !printable(set->hostname, false)) {
		*error_r = "hostname must be 1..255 printable ASCII characters without spaces";
		return -1;
	}
	if (set->implementation != NULL &&
	    (strlen(set->implementation) > 255 || !printable(set->implementation, true))) {
		*error_r = "implementation must be at most 255 printable ASCII characters";
		return -1;
	}
	return 0;
}

/* ---- output and actions ---- */

static void end_session(struct pop3_session *s, const char *reason);

static bool plaintext_allowed(const struct pop3_session *s)
{
	return s->tls || s->set.trusted;
}

static void fail_internal(struct pop3_session *s)
{
	/* Memory ran out while building a reply: the reply cannot be sent
	 * whole, so drop what is not handed out yet and end the session. */
	pn_buf_reset(&s->out);
	s->out_handed = 0;
	s->listing = LISTING_NONE;
	end_session(s, "internal error");
}

static void out_append(struct pop3_session *s, const void *p, size_t n)
{
	if (s->disconnected)
		return;
	if (pn_buf_append(&s->out, p, n) < 0)
		fail_internal(s);
}

static void send_line(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void send_line(struct pop3_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	out_append(s, line, (size_t)n);
}

/* "-ERR <text>". counted: the answer counts towards max_errors; the one
 * that reaches it says so and ends the session. */
static void reply_err(struct pop3_session *s, bool counted, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void reply_err(struct pop3_session *s, bool counted, const char *fmt, ...)
{
	char text[600];
	va_list ap;
	bool limit;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	limit = counted && ++s->errors >= s->set.max_errors;
	send_line(s, "-ERR %s%s", text, limit ? " Too many errors, closing connection." : "");
	if (limit)
		end_session(s, "too many errors");
}

static void queue_action(struct pop3_session *s, const struct pop3_action *act)
{
	/* At most a request or START_TLS, or RELEASE + CLOSE, are queued. */
	assert(s->q_len < QUEUE_MAX);
	s->queue[s->q_len++] = *act;
}

static void queue_request(struct pop3_session *s, const struct pop3_action *act,
			  enum wait_kind wait)
{
	queue_action(s, act);
	s->wait = wait;
	s->wait_handed = false;
}

static void wipe_credentials(struct pop3_session *s)
{
	explicit_bzero(s->password, sizeof(s->password));
	explicit_bzero(s->user, sizeof(s->user));
	explicit_bzero(s->authzid, sizeof(s->authzid));
	s->have_user = false;
}

/* Ends the session: no more commands; RELEASE if a lock is held, then
 * CLOSE (unless the peer is gone). With a request handed out (only after a
 * disconnect) this waits for its answer, whose handler calls it again. */
static void end_session(struct pop3_session *s, const char *reason)
{
	if (s->state != POP3_STATE_DONE) {
		s->state = POP3_STATE_DONE;
		s->end_reason = reason;
		pn_buf_reset(&s->in);
		s->in_scanned = 0;
		s->skip_line = false;
		s->listing = LISTING_NONE;
		sasl_exchange_free(&s->sasl);
		if (s->wait != WAIT_AUTH)
			wipe_credentials(s);
	}
	if (s->wait != WAIT_NONE)
		return;
	if (s->lock_held) {
		struct pop3_action act = { .type = POP3_ACTION_RELEASE };
		act.maildrop.account_id = s->account_id;
		queue_action(s, &act);
		s->lock_held = false;
	}
	if (!s->disconnected && !s->close_queued) {
		struct pop3_action act = { .type = POP3_ACTION_CLOSE };
		act.close.reason = s->end_reason != NULL ? s->end_reason : "closed";
		queue_action(s, &act);
		s->close_queued = true;
	}
}

/* The daemon is done with the bytes of the last SEND. */
static void out_settle(struct pop3_session *s)
{
	if (s->out_handed > 0) {
		pn_buf_consume(&s->out, s->out_handed);
		s->out_handed = 0;
	}
}

/* ---- maildrop helpers ---- */

static void free_maildrop(struct pop3_session *s)
{
	free(s->msgs);
	free(s->uidl_pool);
	free(s->update_uids);
	s->msgs = NULL;
	s->uidl_pool = NULL;
	s->update_uids = NULL;
	s->count = s->deleted = 0;
	s->size_total = s->size_deleted = 0;
}

/* RFC 1939 section 5: msg = a message-number, 1*DIGIT. Returns 0 with the
 * value (saturated at UINT32_MAX), or -1 if p is not all digits. */
static int parse_number(const char *p, uint32_t *n_r)
{
	uint64_t v = 0;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			v = UINT32_MAX + (uint64_t)1;
	}
	*n_r = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	return 0;
}

/* Resolves a message-number argument; on failure answers -ERR and returns
 * NULL. "may NOT refer to a message marked as deleted" (RFC 1939 section 5). */
static struct msg_entry *get_message(struct pop3_session *s, const char *arg, uint32_t *msgno_r)
{
	uint32_t n;

	if (parse_number(arg, &n) < 0) {
		reply_err(s, true, "Invalid message number.");
		return NULL;
	}
	if (n == 0 || n > s->count) {
		reply_err(s, true, "No such message.");
		return NULL;
	}
	if (s->msgs[n - 1].deleted) {
		reply_err(s, true, "Message %" PRIu32 " is deleted.", n);
		return NULL;
	}
	*msgno_r = n;
	return &s->msgs[n - 1];
}

/* ---- commands ---- */

#define MAX_ARGS 2

struct cmd_args {
	const char *raw;	/* everything after the first space, or "" */
	unsigned int n;		/* arguments, up to MAX_ARGS */
	bool too_many;
	const char *v[MAX_ARGS];
};

enum { IN_AUTH = 1, IN_TRANS = 2 };

struct command {
	const char *name;
	unsigned int states;
	void (*fn)(struct pop3_session *s, struct cmd_args *a);
};

static bool want_args(struct pop3_session *s, const struct cmd_args *a,
		      unsigned int min, unsigned int max)
{
	if (a->n < min) {
		reply_err(s, true, "Missing argument.");
		return false;
	}
	if (a->too_many || a->n > max) {
		reply_err(s, true, "Too many arguments.");
		return false;
	}
	return true;
}

/* RFC 2449 section 5: CAPA, valid in AUTHORIZATION and TRANSACTION.
 * "Capabilities available in the AUTHORIZATION state MUST be announced in
 * both states", so the list does not depend on the state. */
static void cmd_capa(struct pop3_session *s, struct cmd_args *a)
{
	char mechs[128];

	if (!want_args(s, a, 0, 0))
		return;
	send_line(s, "+OK Capability list follows");
	send_line(s, "TOP");
	send_line(s, "UIDL");
	send_line(s, "RESP-CODES");
	send_line(s, "AUTH-RESP-CODE");
	send_line(s, "PIPELINING");
	send_line(s, "EXPIRE NEVER");
	if (plaintext_allowed(s))
		send_line(s, "USER");
	if (sasl_mech_list(mechs, sizeof(mechs), "", plaintext_allowed(s)) > 0)
		send_line(s, "SASL %s", mechs);
	if (s->set.stls_available && !s->tls)
		send_line(s, "STLS");
	if (s->set.implementation != NULL && s->set.implementation[0] != '\0')
		send_line(s, "IMPLEMENTATION %s", s->set.implementation);
	send_line(s, ".");
}

static void reply_plaintext_refused(struct pop3_session *s)
{
	reply_err(s, true, "[AUTH] Plaintext authentication disallowed on non-secure connections.");
}

/* A user name: 1..POP3_MAX_USER_LEN octets, no controls (UTF-8 allowed). */
static bool valid_user(const char *p, size_t len)
{
	if (len == 0 || len > POP3_MAX_USER_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static void request_auth(struct pop3_session *s, enum pop3_auth_mech mech)
{
	struct pop3_action act = { .type = POP3_ACTION_AUTH_VERIFY };

	act.auth.mech = mech;
	act.auth.authzid = s->authzid;
	act.auth.user = s->user;
	act.auth.password = s->password;
	s->have_user = false;
	queue_request(s, &act, WAIT_AUTH);
}

/* RFC 1939 section 7: USER name. */
static void cmd_user(struct pop3_session *s, struct cmd_args *a)
{
	if (!plaintext_allowed(s)) {
		reply_plaintext_refused(s);
		return;
	}
	if (!want_args(s, a, 1, 1))
		return;
	size_t len = strlen(a->v[0]);
	if (!valid_user(a->v[0], len)) {
		s->have_user = false;
		reply_err(s, true, "Invalid user name.");
		return;
	}
	memcpy(s->user, a->v[0], len + 1);
	s->authzid[0] = '\0';
	s->have_user = true;
	send_line(s, "+OK");
}

/* RFC 1939 section 7: PASS string. "Since the PASS command has exactly one
 * argument, a POP3 server may treat spaces in the argument as part of the
 * password": the password is everything after "PASS ". */
static void cmd_pass(struct pop3_session *s, struct cmd_args *a)
{
	size_t len = strlen(a->raw);

	if (!plaintext_allowed(s)) {
		reply_plaintext_refused(s);
		return;
	}
	if (!s->have_user) {
		reply_err(s, true, "No user name given.");
		return;
	}
	if (len == 0) {
		reply_err(s, true, "Missing argument.");
		return;
	}
	if (len > POP3_MAX_PASSWORD_LEN) {
		s->have_user = false;
		reply_err(s, true, "[AUTH] Authentication failed.");
		return;
	}
	memcpy(s->password, a->raw, len + 1);
	request_auth(s, POP3_AUTH_MECH_USER);
}

static void cmd_apop(struct pop3_session *s, struct cmd_args *a)
{
	/* No timestamp in the greeting: APOP is not offered. */
	reply_err(s, true, "APOP is not supported.");
}

/* RFC 2595 section 4: STLS, AUTHORIZATION state only. */
static void cmd_stls(struct pop3_session *s, struct cmd_args *a)
{
	if (s->tls) {
		reply_err(s, true, "TLS is already active.");
		return;
	}
	if (!s->set.stls_available) {
		reply_err(s, true, "STLS is not available.");
		return;
	}
	if (!want_args(s, a, 0, 0))
		return;
	send_line(s, "+OK Begin TLS negotiation");
	/* Anything pipelined after STLS came in plaintext and must not be
	 * executed after the handshake (CVE-2011-0411 class injection). */
	pn_buf_reset(&s->in);
	s->in_scanned = 0;
	s->skip_line = false;
	s->have_user = false;
	struct pop3_action act = { .type = POP3_ACTION_START_TLS };
	queue_request(s, &act, WAIT_TLS);
}

/* ---- SASL (RFC 5034; the exchange itself is frontend/sasl/) ---- */

/* Field limits: those of USER / PASS. */
static const struct sasl_settings pop3_sasl_settings = {
	.max_identity = POP3_MAX_USER_LEN,
	.max_password = POP3_MAX_PASSWORD_LEN,
};

/* Carries out a result of the SASL exchange (RFC 5034 section 4). */
static void sasl_reply(struct pop3_session *s, const struct sasl_result *res)
{
	switch (res->status) {
	case SASL_CHALLENGE:
		/* continue-req = "+" SP [base64] CRLF */
		send_line(s, "+ %s", res->challenge_b64);
		return;
	case SASL_DONE:
		/* The settings bound the fields by the sizes of these. */
		memcpy(s->authzid, res->creds.authzid, res->creds.authzid_len + 1);
		memcpy(s->user, res->creds.authcid, res->creds.authcid_len + 1);
		memcpy(s->password, res->creds.password, res->creds.password_len + 1);
		sasl_exchange_free(&s->sasl);
		request_auth(s, res->mech == &sasl_mech_plain ? POP3_AUTH_MECH_PLAIN
							      : POP3_AUTH_MECH_LOGIN);
		return;
	case SASL_ERROR:
		break;
	}
	sasl_exchange_free(&s->sasl);
	switch (res->error) {
	case SASL_ERR_CANCELLED:
		reply_err(s, false, "Authentication cancelled.");
		break;
	case SASL_ERR_BAD_BASE64:
		reply_err(s, true, "Invalid base64 data.");
		break;
	case SASL_ERR_MALFORMED:
		if (res->mech == &sasl_mech_plain)
			reply_err(s, true, "Malformed PLAIN response.");
		else if (res->field == SASL_FIELD_AUTHCID)
			reply_err(s, true, "Invalid user name.");
		else
			reply_err(s, true, "[AUTH] Authentication failed.");
		break;
	case SASL_ERR_UNKNOWN_MECH:
		reply_err(s, true, "Unsupported authentication mechanism.");
		break;
	case SASL_ERR_NO_MEMORY:
		fail_internal(s);
		break;
	case SASL_ERR_TOO_LONG:
	case SASL_ERR_NONE:
	default:
		reply_err(s, true, "[AUTH] Authentication failed.");
		break;
	}
}

/* RFC 5034 section 4: AUTH mechanism [initial-response]. Without a
 * mechanism, the RFC 1734 style list of mechanisms that older clients ask
 * for. */
static void cmd_auth(struct pop3_session *s, struct cmd_args *a)
{
	struct sasl_result res;

	s->have_user = false;
	if (a->n == 0 && !a->too_many) {
		send_line(s, "+OK");
		for (size_t i = 0; sasl_mechanisms[i] != NULL; i++) {
			if (plaintext_allowed(s) || !sasl_mech_plaintext(sasl_mechanisms[i]))
				send_line(s, "%s", sasl_mech_name(sasl_mechanisms[i]));
		}
		send_line(s, ".");
		return;
	}
	if (!want_args(s, a, 1, 2))
		return;
	const struct sasl_mech *mech = sasl_mech_find(a->v[0], strlen(a->v[0]));
	if (mech != NULL && sasl_mech_plaintext(mech) && !plaintext_allowed(s)) {
		reply_plaintext_refused(s);
		return;
	}
	sasl_start(&pop3_sasl_settings, a->v[0], strlen(a->v[0]), a->n == 2 ? a->v[1] : NULL,
		   a->n == 2 ? strlen(a->v[1]) : 0, &s->sasl, &res);
	sasl_reply(s, &res);
}

/* ---- TRANSACTION commands (RFC 1939 section 5, 7) ---- */

static void cmd_stat(struct pop3_session *s, struct cmd_args *a)
{
	if (!want_args(s, a, 0, 0))
		return;
	send_line(s, "+OK %" PRIu32 " %" PRIu64, s->count - s->deleted,
		  s->size_total - s->size_deleted);
}

static void cmd_list(struct pop3_session *s, struct cmd_args *a)
{
	struct msg_entry *m;
	uint32_t n;

	if (!want_args(s, a, 0, 1))
		return;
	if (a->n == 1) {
		if ((m = get_message(s, a->v[0], &n)) != NULL)
			send_line(s, "+OK %" PRIu32 " %" PRIu64, n, m->size);
		return;
	}
	send_line(s, "+OK %" PRIu32 " messages (%" PRIu64 " octets)", s->count - s->deleted,
		  s->size_total - s->size_deleted);
	s->listing = LISTING_LIST;
	s->listing_pos = 0;
}

static void cmd_uidl(struct pop3_session *s, struct cmd_args *a)
{
	struct msg_entry *m;
	uint32_t n;

	if (!want_args(s, a, 0, 1))
		return;
	if (a->n == 1) {
		if ((m = get_message(s, a->v[0], &n)) != NULL)
			send_line(s, "+OK %" PRIu32 " %.*s", n, (int)m->uidl_len,
				  s->uidl_pool + m->uidl_off);
		return;
	}
	send_line(s, "+OK Unique-ID listing follows");
	s->listing = LISTING_UIDL;
	s->listing_pos = 0;
}

/* Produces listing lines up to OUT_BATCH; the "." line at the end. */
static void listing_step(struct pop3_session *s)
{
	while (s->listing_pos < s->count && pn_buf_len(&s->out) < OUT_BATCH &&
	       s->listing != LISTING_NONE) {
		uint32_t n = ++s->listing_pos;
		const struct msg_entry *m = &s->msgs[n - 1];

		if (m->deleted)
			continue;
		if (s->listing == LISTING_LIST)
			send_line(s, "%" PRIu32 " %" PRIu64, n, m->size);
		else
			send_line(s, "%" PRIu32 " %.*s", n, (int)m->uidl_len,
				  s->uidl_pool + m->uidl_off);
	}
	if (s->listing != LISTING_NONE && s->listing_pos >= s->count) {
		send_line(s, ".");
		s->listing = LISTING_NONE;
	}
}

static void request_message(struct pop3_session *s, uint32_t n, bool top, uint32_t lines)
{
	const struct msg_entry *m = &s->msgs[n - 1];
	struct pop3_action act = { .type = POP3_ACTION_MESSAGE_GET };

	act.message.account_id = s->account_id;
	act.message.msgno = n;
	act.message.uid = m->uid;
	act.message.size = m->size;
	act.message.top = top;
	act.message.top_lines = top ? lines : 0;
	act.message.set_seen = !top && s->set.retr_sets_seen;
	pop3_msgout_init(&s->mo, top, lines);
	s->msg_started = false;
	s->msg_top = top;
	s->msg_size = m->size;
	queue_request(s, &act, WAIT_MESSAGE);
}

static void cmd_retr(struct pop3_session *s, struct cmd_args *a)
{
	uint32_t n;

	if (want_args(s, a, 1, 1) && get_message(s, a->v[0], &n) != NULL)
		request_message(s, n, false, 0);
}

/* RFC 1939 section 7: TOP msg n, n a non-negative number of lines. */
static void cmd_top(struct pop3_session *s, struct cmd_args *a)
{
	uint32_t n, lines;

	if (!want_args(s, a, 2, 2) || get_message(s, a->v[0], &n) == NULL)
		return;
	if (parse_number(a->v[1], &lines) < 0) {
		reply_err(s, true, "Invalid number of lines.");
		return;
	}
	request_message(s, n, true, lines);
}

static void cmd_dele(struct pop3_session *s, struct cmd_args *a)
{
	struct msg_entry *m;
	uint32_t n;

	if (!want_args(s, a, 1, 1) || (m = get_message(s, a->v[0], &n)) == NULL)
		return;
	m->deleted = true;
	s->deleted++;
	s->size_deleted += m->size;
	send_line(s, "+OK Message %" PRIu32 " deleted.", n);
}

static void cmd_noop(struct pop3_session *s, struct cmd_args *a)
{
	if (want_args(s, a, 0, 0))
		send_line(s, "+OK");
}

static void cmd_rset(struct pop3_session *s, struct cmd_args *a)
{
	if (!want_args(s, a, 0, 0))
		return;
	for (uint32_t i = 0; i < s->count; i++)
		s->msgs[i].deleted = false;
	s->deleted = 0;
	s->size_deleted = 0;
	send_line(s, "+OK Maildrop has %" PRIu32 " messages (%" PRIu64 " octets).",
		  s->count, s->size_total);
}

/* RFC 1939 section 4 (QUIT in AUTHORIZATION) and section 6 (QUIT in
 * TRANSACTION: enter UPDATE, remove the messages marked as deleted). */
static void cmd_quit(struct pop3_session *s, struct cmd_args *a)
{
	if (s->state == POP3_STATE_AUTHORIZATION || s->deleted == 0) {
		send_line(s, "+OK Logging out.");
		end_session(s, "quit");
		return;
	}
	uint32_t *uids = malloc((size_t)s->deleted * sizeof(*uids));
	if (uids == NULL) {
		fail_internal(s);
		return;
	}
	size_t k = 0;
	for (uint32_t i = 0; i < s->count; i++) {
		if (s->msgs[i].deleted)
			uids[k++] = s->msgs[i].uid;
	}
	free(s->update_uids);
	s->update_uids = uids;
	s->state = POP3_STATE_UPDATE;
	pn_buf_reset(&s->in);
	s->in_scanned = 0;

	struct pop3_action act = { .type = POP3_ACTION_UPDATE };
	act.update.account_id = s->account_id;
	act.update.uids = uids;
	act.update.count = k;
	queue_request(s, &act, WAIT_UPDATE);
}

static const struct command commands[] = {
	{ "USER", IN_AUTH, cmd_user },
	{ "PASS", IN_AUTH, cmd_pass },
	{ "APOP", IN_AUTH, cmd_apop },
	{ "AUTH", IN_AUTH, cmd_auth },
	{ "STLS", IN_AUTH, cmd_stls },
	{ "CAPA", IN_AUTH | IN_TRANS, cmd_capa },
	{ "QUIT", IN_AUTH | IN_TRANS, cmd_quit },
	{ "STAT", IN_TRANS, cmd_stat },
	{ "LIST", IN_TRANS, cmd_list },
	{ "RETR", IN_TRANS, cmd_retr },
	{ "DELE", IN_TRANS, cmd_dele },
	{ "NOOP", IN_TRANS, cmd_noop },
	{ "RSET", IN_TRANS, cmd_rset },
	{ "TOP", IN_TRANS, cmd_top },
	{ "UIDL", IN_TRANS, cmd_uidl },
};

/* RFC 1939 section 3: "Commands in the POP3 consist of a case-insensitive
 * keyword, possibly followed by one or more arguments ... Keywords and
 * arguments are each separated by a single SPACE character." Runs of
 * spaces are accepted between arguments. line holds no NUL, CR or LF. */
static void run_command(struct pop3_session *s, char *line)
{
	struct cmd_args a = { .raw = "" };
	const struct command *cmd = NULL;
	char *sp = strchr(line, ' ');
	bool is_quit;

	if (sp != NULL) {
		*sp = '\0';
		a.raw = sp + 1;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcasecmp(line, commands[i].name) == 0) {
			cmd = &commands[i];
			break;
		}
	}
	/* PASS takes a.raw whole; the others get their arguments split. */
	if (sp != NULL && (cmd == NULL || cmd->fn != cmd_pass)) {
		for (char *p = sp + 1;;) {
			while (*p == ' ')
				p++;
			if (*p == '\0')
				break;
			if (a.n == MAX_ARGS) {
				a.too_many = true;
				break;
			}
			a.v[a.n++] = p;
			p = strchr(p, ' ');
			if (p == NULL)
				break;
			*p++ = '\0';
		}
	}
	is_quit = cmd != NULL && cmd->fn == cmd_quit;
	if (!is_quit && ++s->commands > s->set.max_commands) {
		send_line(s, "-ERR Too many commands, closing connection.");
		end_session(s, "too many commands");
		return;
	}
	if (cmd == NULL) {
		reply_err(s, true, "Unknown command.");
		return;
	}
	unsigned int here = s->state == POP3_STATE_AUTHORIZATION ? IN_AUTH : IN_TRANS;
	if ((cmd->states & here) == 0) {
		reply_err(s, true, "Command not valid in this state.");
		return;
	}
	cmd->fn(s, &a);
}

/* ---- input ---- */

/* Takes the next complete line out of the input, or handles a too long
 * one. Returns true if anything was done. */
static bool input_step(struct pop3_session *s)
{
	size_t limit = s->sasl != NULL ? s->set.max_auth_line : s->set.max_line;
	size_t len = pn_buf_len(&s->in);

	if (len == 0)
		return false;
	const uint8_t *data = pn_buf_rptr(&s->in);
	if (s->skip_line) {
		const uint8_t *lf = memchr(data, '\n', len);
		pn_buf_consume(&s->in, lf != NULL ? (size_t)(lf - data) + 1 : len);
		s->in_scanned = 0;
		if (lf != NULL)
			s->skip_line = false;
		return true;
	}
	const uint8_t *lf = memchr(data + s->in_scanned, '\n', len - s->in_scanned);
	size_t line_len = lf != NULL ? (size_t)(lf - data) + 1 : len;
	if (line_len > limit || (lf == NULL && len >= limit)) {
		/* RFC 2449 section 4 bounds command lines; ours is max_line. */
		pn_buf_consume(&s->in, line_len);
		s->in_scanned = 0;
		s->skip_line = lf == NULL;
		if (s->sasl != NULL) {
			sasl_exchange_free(&s->sasl);
			reply_err(s, true, "Response line too long, authentication aborted.");
		} else {
			s->commands++;
			reply_err(s, true, "Line too long.");
		}
		return true;
	}
	if (lf == NULL) {
		s->in_scanned = len;
		return false;
	}
	/* The line without LF and an optional CR before it. */
	size_t n = line_len - 1;
	if (n > 0 && data[n - 1] == '\r')
		n--;
	memcpy(s->line, data, n);
	s->line[n] = '\0';
	pn_buf_consume(&s->in, line_len);
	s->in_scanned = 0;

	bool bad = memchr(s->line, '\0', n) != NULL || memchr(s->line, '\r', n) != NULL;
	if (s->sasl != NULL) {
		struct sasl_result res;
		if (bad) {
			sasl_exchange_free(&s->sasl);
			reply_err(s, true, "Invalid base64 data.");
		} else {
			sasl_step(&s->sasl, s->line, n, &res);
			sasl_reply(s, &res);
		}
	} else if (bad) {
		s->commands++;
		reply_err(s, true, "Invalid characters in command.");
	} else {
		run_command(s, s->line);
	}
	explicit_bzero(s->line, n);
	return true;
}

/* ---- the engine loop ---- */

static bool can_step(const struct pop3_session *s)
{
	return !s->disconnected && s->q_len == 0 && s->wait == WAIT_NONE &&
	       (s->state == POP3_STATE_AUTHORIZATION || s->state == POP3_STATE_TRANSACTION);
}

/* One unit of work: listing output, a pending shutdown, or a line. */
static bool step(struct pop3_session *s)
{
	if (s->listing != LISTING_NONE) {
		listing_step(s);
		return true;
	}
	if (s->close_pending) {
		s->close_pending = false;
		if (s->close_reason == POP3_CLOSE_SHUTDOWN) {
			send_line(s, "-ERR [SYS/TEMP] Server shutting down.");
			end_session(s, "shutdown");
		} else if (s->close_reason == POP3_CLOSE_KICK) {
			send_line(s, "-ERR Disconnected by the administrator.");
			end_session(s, "kick");
		} else {
			send_line(s, "-ERR Disconnected for inactivity.");
			end_session(s, "idle");
		}
		return true;
	}
	return input_step(s);
}

struct pop3_session *pop3_session_new(const struct pop3_settings *set)
{
	const char *error;
	struct pop3_session *s;

	if (pop3_settings_check(set, &error) < 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->set = *set;
	if (s->set.max_line == 0)
		s->set.max_line = POP3_DEFAULT_MAX_LINE;
	if (s->set.max_line < POP3_MIN_LINE)
		s->set.max_line = POP3_MIN_LINE;
	if (s->set.max_auth_line == 0)
		s->set.max_auth_line = POP3_DEFAULT_MAX_AUTH_LINE;
	if (s->set.max_auth_line < POP3_MIN_LINE)
		s->set.max_auth_line = POP3_MIN_LINE;
	if (s->set.max_errors == 0)
		s->set.max_errors = POP3_DEFAULT_MAX_ERRORS;
	if (s->set.max_commands == 0)
		s->set.max_commands = POP3_DEFAULT_MAX_COMMANDS;
	s->tls = set->tls_active;
	s->state = POP3_STATE_AUTHORIZATION;
	s->line_size = (s->set.max_line > s->set.max_auth_line ? s->set.max_line
							       : s->set.max_auth_line) + 1;
	s->line = malloc(s->line_size);
	if (s->line == NULL) {
		free(s);
		return NULL;
	}
	pn_buf_init(&s->in, s->line_size + IN_SLACK);
	pn_buf_init(&s->out, OUT_MAX);
	/* RFC 1939 section 4: the greeting. */
	send_line(s, "+OK %s POP3 ready.", s->set.hostname);
	return s;
}

void pop3_session_free(struct pop3_session **sp)
{
	struct pop3_session *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	wipe_credentials(s);
	sasl_exchange_free(&s->sasl);
	explicit_bzero(s->line, s->line_size);
	free(s->line);
	if (s->in.data != NULL)
		explicit_bzero(s->in.data, s->in.cap);
	pn_buf_free(&s->in);
	pn_buf_free(&s->out);
	free_maildrop(s);
	free(s);
}

size_t pop3_session_feed(struct pop3_session *s, const void *data, size_t len)
{
	if (s->disconnected || s->wait == WAIT_TLS ||
	    (s->state != POP3_STATE_AUTHORIZATION && s->state != POP3_STATE_TRANSACTION))
		return len;
	size_t n = len < pn_buf_room(&s->in) ? len : pn_buf_room(&s->in);
	if (n > 0 && pn_buf_append(&s->in, data, n) < 0)
		return 0;
	return n;
}

int pop3_session_next(struct pop3_session *s, struct pop3_action *act_r)
{
	out_settle(s);
	for (;;) {
		if (s->ended)
			return -1;
		if (can_step(s) && pn_buf_len(&s->out) < OUT_BATCH && step(s))
			continue;
		if (pn_buf_len(&s->out) > 0) {
			memset(act_r, 0, sizeof(*act_r));
			act_r->type = POP3_ACTION_SEND;
			act_r->send.data = pn_buf_rptr(&s->out);
			act_r->send.len = pn_buf_len(&s->out);
			s->out_handed = act_r->send.len;
			return 1;
		}
		if (s->q_len > 0) {
			*act_r = s->queue[0];
			s->q_len--;
			memmove(&s->queue[0], &s->queue[1], s->q_len * sizeof(s->queue[0]));
			switch (act_r->type) {
			case POP3_ACTION_CLOSE:
				s->ended = true;
				break;
			case POP3_ACTION_AUTH_VERIFY:
			case POP3_ACTION_MAILDROP_OPEN:
			case POP3_ACTION_MESSAGE_GET:
			case POP3_ACTION_UPDATE:
			case POP3_ACTION_START_TLS:
				s->wait_handed = true;
				break;
			default:
				break;
			}
			return 1;
		}
		if (s->disconnected && s->wait == WAIT_NONE) {
			s->ended = true;
			return -1;
		}
		/* Idle: an idle session holds no buffer memory. */
		pn_buf_shrink_if_empty(&s->out);
		if (s->wait == WAIT_NONE)
			pn_buf_shrink_if_empty(&s->in);
		return 0;
	}
}

void pop3_session_tls_started(struct pop3_session *s)
{
	out_settle(s);
	if (s->wait != WAIT_TLS || !s->wait_handed)
		return;
	s->wait = WAIT_NONE;
	s->tls = true;
	/* RFC 2595 section 4: discard knowledge obtained before TLS. */
	wipe_credentials(s);
	pn_buf_reset(&s->in);
	s->in_scanned = 0;
	s->skip_line = false;
}

void pop3_session_disconnected(struct pop3_session *s)
{
	if (s->disconnected)
		return;
	out_settle(s);
	s->disconnected = true;
	pn_buf_reset(&s->out);
	/* Drop what the daemon has not seen yet, except a RELEASE. */
	size_t k = 0;
	for (size_t i = 0; i < s->q_len; i++) {
		if (s->queue[i].type == POP3_ACTION_RELEASE)
			s->queue[k++] = s->queue[i];
		else if (s->queue[i].type != POP3_ACTION_CLOSE)
			s->wait = WAIT_NONE;	/* a request not handed out */
	}
	s->q_len = k;
	if (s->wait == WAIT_TLS)
		s->wait = WAIT_NONE;	/* no answer will come */
	end_session(s, "disconnected");
}

void pop3_session_shutdown(struct pop3_session *s, enum pop3_close_reason reason)
{
	if (s->disconnected || s->close_pending ||
	    (s->state != POP3_STATE_AUTHORIZATION && s->state != POP3_STATE_TRANSACTION))
		return;
	s->close_pending = true;
	s->close_reason = reason;
}

/* ---- results ---- */

static int check_wait(struct pop3_session *s, enum wait_kind kind, const char **error_r)
{
	out_settle(s);
	if (s->wait != kind || !s->wait_handed) {
		*error_r = "no such request outstanding";
		return -1;
	}
	return 0;
}

/* After a request was answered: finish ending the session if it is. */
static void after_result(struct pop3_session *s)
{
	if (s->state == POP3_STATE_DONE)
		end_session(s, NULL);
}

int pop3_session_auth_result(struct pop3_session *s, enum pop3_auth_result result,
			     uint64_t account_id, const char **error_r)
{
	if (check_wait(s, WAIT_AUTH, error_r) < 0)
		return -1;
	s->wait = WAIT_NONE;
	wipe_credentials(s);
	if (s->state == POP3_STATE_DONE) {
		after_result(s);
		return 0;
	}
	switch (result) {
	case POP3_AUTH_OK: {
		struct pop3_action act = { .type = POP3_ACTION_MAILDROP_OPEN };
		s->account_id = account_id;
		act.maildrop.account_id = account_id;
		queue_request(s, &act, WAIT_MAILDROP);
		break;
	}
	case POP3_AUTH_BAD:
		reply_err(s, true, "[AUTH] Authentication failed.");
		break;
	case POP3_AUTH_TEMP_FAIL:
		reply_err(s, false, "[SYS/TEMP] Temporary authentication failure, try again later.");
		break;
	case POP3_AUTH_PERM_FAIL:
		reply_err(s, false, "[SYS/PERM] Login not possible for this account.");
		break;
	case POP3_AUTH_LOGIN_DELAY:
		reply_err(s, false, "[LOGIN-DELAY] Logged in too recently, try again later.");
		break;
	default:
		reply_err(s, false, "[SYS/TEMP] Temporary authentication failure, try again later.");
		*error_r = "unknown auth result";
		return -1;
	}
	return 0;
}

/* RFC 1939 section 7: unique-id = 1*70 of 0x21..0x7E. */
static bool valid_uidl(const char *u, size_t *len_r)
{
	size_t n = 0;

	*len_r = 0;
	if (u == NULL)
		return false;
	for (; u[n] != '\0'; n++) {
		if (n == POP3_MAX_UIDL_LEN || (unsigned char)u[n] < 0x21 ||
		    (unsigned char)u[n] > 0x7e)
			return false;
	}
	*len_r = n;
	return n > 0;
}

static int load_listing(struct pop3_session *s, const struct pop3_message *msgs, size_t count,
			const char **error_r)
{
	size_t pool = 0, len = 0;

	if (count >= UINT32_MAX) {
		*error_r = "too many messages in listing";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		if (!valid_uidl(msgs[i].uidl, &len)) {
			*error_r = "invalid UIDL string in listing";
			return -1;
		}
		if (msgs[i].size > UINT64_MAX / 2 || pool > UINT32_MAX - POP3_MAX_UIDL_LEN) {
			*error_r = "listing too large";
			return -1;
		}
		pool += len;
	}
	free_maildrop(s);
	s->msgs = calloc(count > 0 ? count : 1, sizeof(*s->msgs));
	s->uidl_pool = malloc(pool > 0 ? pool : 1);
	if (s->msgs == NULL || s->uidl_pool == NULL) {
		free_maildrop(s);
		*error_r = "out of memory";
		return -1;
	}
	pool = 0;
	for (size_t i = 0; i < count; i++) {
		struct msg_entry *m = &s->msgs[i];
		valid_uidl(msgs[i].uidl, &len);
		m->uid = msgs[i].uid;
		m->size = msgs[i].size;
		m->uidl_off = (uint32_t)pool;
		m->uidl_len = (uint8_t)len;
		memcpy(s->uidl_pool + pool, msgs[i].uidl, len);
		pool += len;
		if (s->size_total + m->size < s->size_total) {
			free_maildrop(s);
			*error_r = "listing too large";
			return -1;
		}
		s->size_total += m->size;
	}
	s->count = (uint32_t)count;
	return 0;
}

int pop3_session_maildrop_result(struct pop3_session *s, enum pop3_maildrop_result result,
				 const struct pop3_message *msgs, size_t count,
				 const char **error_r)
{
	int ret = 0;

	if (check_wait(s, WAIT_MAILDROP, error_r) < 0)
		return -1;
	s->wait = WAIT_NONE;
	switch (result) {
	case POP3_MAILDROP_OK:
		s->lock_held = true;
		if (s->state == POP3_STATE_DONE)
			break;
		if (load_listing(s, msgs, count, error_r) < 0) {
			reply_err(s, false, "[SYS/TEMP] Maildrop not available, try again later.");
			struct pop3_action act = { .type = POP3_ACTION_RELEASE };
			act.maildrop.account_id = s->account_id;
			queue_action(s, &act);
			s->lock_held = false;
			ret = -1;
			break;
		}
		s->state = POP3_STATE_TRANSACTION;
		send_line(s, "+OK Logged in, %" PRIu32 " messages (%" PRIu64 " octets).",
			  s->count, s->size_total);
		break;
	case POP3_MAILDROP_IN_USE:
		reply_err(s, false, "[IN-USE] Maildrop is locked by another session.");
		break;
	case POP3_MAILDROP_PERM_FAIL:
		reply_err(s, false, "[SYS/PERM] Maildrop not available.");
		break;
	case POP3_MAILDROP_TEMP_FAIL:
	default:
		reply_err(s, false, "[SYS/TEMP] Maildrop not available, try again later.");
		break;
	}
	after_result(s);
	return ret;
}

int pop3_session_message_data(struct pop3_session *s, const void *data, size_t len,
			      bool final, size_t *consumed_r, const char **error_r)
{
	const uint8_t *in = data;
	size_t done = 0;

	*consumed_r = 0;
	if (check_wait(s, WAIT_MESSAGE, error_r) < 0)
		return -1;
	if (s->state != POP3_STATE_DONE && !s->msg_started) {
		/* RFC 1939 section 5: "+OK 120 octets" (RETR) */
		if (s->msg_top)
			send_line(s, "+OK");
		else
			send_line(s, "+OK %" PRIu64 " octets", s->msg_size);
		s->msg_started = true;
	}
	while (s->state != POP3_STATE_DONE && done < len) {
		size_t used = pn_buf_len(&s->out);
		if (used + POP3_MSGOUT_FINISH_MAX + 2 > OUT_MAX)
			break;
		size_t room = OUT_MAX - used - POP3_MSGOUT_FINISH_MAX;
		uint8_t *w = pn_buf_reserve(&s->out, room);
		if (w == NULL) {
			fail_internal(s);
			break;
		}
		size_t wrote;
		size_t took = pop3_msgout_write(&s->mo, in + done, len - done, w, room, &wrote);
		pn_buf_commit(&s->out, wrote);
		done += took;
		if (took == 0)
			break;
	}
	if (s->state == POP3_STATE_DONE)
		done = len;	/* the client is gone or the session failed: drop */
	*consumed_r = done;
	if (final && done == len) {
		if (s->state != POP3_STATE_DONE) {
			uint8_t end[POP3_MSGOUT_FINISH_MAX];
			size_t n = pop3_msgout_finish(&s->mo, end);
			/* Room for the terminator was kept free above. */
			out_append(s, end, n);
		}
		s->wait = WAIT_NONE;
		after_result(s);
	}
	return 0;
}

bool pop3_session_message_complete(const struct pop3_session *s)
{
	return s->wait == WAIT_MESSAGE && s->wait_handed && pop3_msgout_done(&s->mo);
}

int pop3_session_message_fail(struct pop3_session *s, enum pop3_message_failure failure,
			      const char **error_r)
{
	if (check_wait(s, WAIT_MESSAGE, error_r) < 0)
		return -1;
	s->wait = WAIT_NONE;
	if (s->state == POP3_STATE_DONE) {
		after_result(s);
		return 0;
	}
	if (s->msg_started) {
		/* Part of the message is out: the response cannot be ended
		 * correctly, so the connection is. */
		end_session(s, "message read failed");
		return 0;
	}
	if (failure == POP3_MESSAGE_GONE)
		reply_err(s, false, "Message no longer exists.");
	else
		reply_err(s, false, "[SYS/TEMP] Message not available, try again later.");
	return 0;
}

int pop3_session_update_result(struct pop3_session *s, bool ok, const char **error_r)
{
	if (check_wait(s, WAIT_UPDATE, error_r) < 0)
		return -1;
	s->wait = WAIT_NONE;
	if (ok)
		send_line(s, "+OK Logging out, %" PRIu32 " message%s deleted.", s->deleted,
			  s->deleted == 1 ? "" : "s");
	else
		send_line(s, "-ERR [SYS/TEMP] Deleted messages could not be removed.");
	end_session(s, "quit");
	return 0;
}

enum pop3_state pop3_session_state(const struct pop3_session *s)
{
	return s->state;
}

bool pop3_session_holds_maildrop(const struct pop3_session *s)
{
	return s->lock_held;
}
