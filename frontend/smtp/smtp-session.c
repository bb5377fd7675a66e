/* The SMTP / LMTP session engine: command lines, the EHLO/MAIL/RCPT/DATA/
 * BDAT/AUTH/STARTTLS state machine, reply batching for PIPELINING, the
 * Received: header, and the requests (AUTH_VERIFY, SENDER_CHECK,
 * RCPT_CHECK, DELIVER) that the daemon answers later. No I/O, no storage;
 * smtp-session.h holds the contract, smtp-data.c the DATA byte rules and
 * smtp-syntax.c the address and parameter grammar.
 */
#include "smtp-session.h"

#include "sasl.h"
#include "smtp-data.h"
#include "smtp-syntax.h"

#include "postern/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replies waiting past this size are sent before the next command runs. */
#define OUT_FLUSH (16 * 1024)
/* One LMTP per-recipient reply line is below this. */
#define RCPT_REPLY_MAX 400
/* Data decoded through the stack when close to the size limit. */
#define SCRATCH_SIZE 8192
/* Room for our Received: header (its parts are all bounded). */
#define RECEIVED_MAX 2048
/* Credentials: the SASL layer's default of 255 octets a field (RFC 4616). */
#define CRED_MAX SASL_DEFAULT_MAX_FIELD
/* RFC 3461 4.4: ENVID at most 100 characters; 4.2: ORCPT at most 500. */
#define ENVID_MAX 100
#define ORCPT_MAX 500

enum proto_state {
	ST_COMMAND,	/* reading command lines */
	ST_SASL,	/* reading a SASL response line after 334 */
	ST_DATA,	/* reading DATA content */
	ST_BDAT,	/* reading a BDAT chunk */
	ST_WAIT,	/* a request is deferred or outstanding */
	ST_WAIT_TLS,	/* START_TLS is deferred or outstanding */
	ST_CLOSED,	/* CLOSE is deferred or was returned */
};

enum deferred {
	DEF_NONE,
	DEF_START_TLS,
	DEF_CLOSE,
	DEF_REQUEST,
};

enum helo_kind { HELO_NONE, HELO_HELO, HELO_EHLO, HELO_LHLO };

struct smtp_session {
	/* settings */
	enum smtp_mode mode;
	char hostname[256];
	char client_addr[72];	/* as shown in Received: */
	char session_id[65];
	bool starttls_available, trusted;
	size_t max_line, max_data_line;
	uint64_t max_size;
	unsigned int max_rcpts, max_errors, max_commands;
	time_t (*clock)(void);

	/* buffers */
	struct pn_buf in, out, msg;
	size_t out_handed;	/* bytes of out handed over in the last SEND */

	/* engine state */
	enum proto_state st;
	enum deferred deferred;
	enum smtp_action_type request;	/* the deferred or outstanding one */
	bool skip_line;		/* discarding the rest of a too long line */
	bool discard_input;	/* STARTTLS: drop input after this line */
	size_t discarded;
	unsigned int errors, commands, transactions;
	bool drain, timeout;
	bool fatal;

	/* session */
	bool tls_active;
	char tls_version[64], tls_cipher[128];
	enum helo_kind helo_kind;
	char helo[256];
	bool authenticated;
	uint64_t account_id;
	char account_address[SMTP_ADDRESS_SIZE + 64];

	/* transaction */
	bool in_tx;
	char mail_from[SMTP_ADDRESS_SIZE];
	char auth_param[SMTP_PATH_MAX * 3 + 8];
	char envid[ENVID_MAX + 1];
	struct smtp_envelope env;
	struct smtp_rcpt *rcpts;
	size_t rcpt_count, rcpt_cap;
	struct smtp_rcpt cand;	/* the recipient being checked */
	char cand_address[SMTP_ADDRESS_SIZE];
	char cand_orcpt[ORCPT_MAX + 1];

	/* message */
	bool msg_started;	/* Received: built, content reader set up */
	bool bdat_used;
	struct smtp_data dec;
	uint64_t body_len;
	bool too_big;
	size_t received_len;
	uint64_t bdat_remaining;
	bool bdat_last;
	bool bdat_discard;		/* this chunk is read and dropped */
	char bdat_fail[128];		/* reply for a dropped chunk */
	bool bdat_fail_counts;		/* that reply counts as an error */
	bool bdat_tx_failed;		/* later chunks are dropped too */

	/* SASL */
	struct sasl_exchange *sasl;	/* in ST_SASL */
	const char *mechanism;
	char authzid[CRED_MAX + 1], authcid[CRED_MAX + 1], password[CRED_MAX + 1];
};

/* ---- output ---------------------------------------------------------- */

static void out_raw(struct smtp_session *s, const char *p, size_t n)
{
	if (pn_buf_append(&s->out, p, n) < 0)
		s->fatal = true;
}

/* Appends one reply line; fmt holds "code [enhanced] text" without CR LF.
 * Every variable part is validated before it gets here (no CR or LF). */
static void __attribute__((format(printf, 2, 3)))
reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0) {
		s->fatal = true;
		return;
	}
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	out_raw(s, line, (size_t)n);
}

static void release_handed(struct smtp_session *s)
{
	if (s->out_handed > 0) {
		pn_buf_consume(&s->out, s->out_handed);
		s->out_handed = 0;
	}
}

/* ---- session and transaction state ------------------------------------ */

static void wipe_credentials(struct smtp_session *s)
{
	explicit_bzero(s->authzid, sizeof(s->authzid));
	explicit_bzero(s->authcid, sizeof(s->authcid));
	explicit_bzero(s->password, sizeof(s->password));
}

static void reset_message(struct smtp_session *s)
{
	pn_buf_free(&s->msg);
	s->msg_started = false;
	s->bdat_used = false;
	s->body_len = 0;
	s->too_big = false;
	s->received_len = 0;
	s->bdat_remaining = 0;
	s->bdat_last = false;
	s->bdat_discard = false;
	s->bdat_tx_failed = false;
}

/* RSET, EHLO, the end of a transaction (RFC 5321 4.1.1.5). */
static void reset_tx(struct smtp_session *s)
{
	s->in_tx = false;
	s->mail_from[0] = '\0';
	s->auth_param[0] = '\0';
	s->envid[0] = '\0';
	for (size_t i = 0; i < s->rcpt_count; i++)
		free((char *)s->rcpts[i].address);
	s->rcpt_count = 0;
	memset(&s->env, 0, sizeof(s->env));
	reset_message(s);
}

/* STARTTLS (RFC 3207 4.2): forget everything learnt from the client. */
static void reset_session(struct smtp_session *s)
{
	reset_tx(s);
	s->helo_kind = HELO_NONE;
	s->helo[0] = '\0';
	s->authenticated = false;
	s->account_id = 0;
	s->account_address[0] = '\0';
	sasl_exchange_free(&s->sasl);
	wipe_credentials(s);
}

static void close_session(struct smtp_session *s)
{
	reset_tx(s);
	s->st = ST_CLOSED;
	s->deferred = DEF_CLOSE;
	sasl_exchange_free(&s->sasl);
	wipe_credentials(s);
}

/* Counts a client error; past max_errors the session says 421 and closes
 * once the current reply has been queued (check_limits). */
static void __attribute__((format(printf, 2, 3)))
reply_error(struct smtp_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	reply(s, "%s", line);
	s->errors++;
}

static void check_limits(struct smtp_session *s)
{
	if (s->st == ST_CLOSED || s->st == ST_WAIT || s->st == ST_WAIT_TLS)
		return;
	if (s->errors >= s->max_errors) {
		reply(s, "421 4.7.0 %s Too many errors, closing connection", s->hostname);
		close_session(s);
	}
}

static void fill_env(struct smtp_session *s)
{
	s->env.helo = s->helo;
	s->env.mail_from = s->mail_from;
	s->env.auth = s->auth_param[0] != '\0' ? s->auth_param : NULL;
	s->env.envid = s->envid[0] != '\0' ? s->envid : NULL;
	s->env.tls = s->tls_active;
	s->env.authenticated = s->authenticated;
	s->env.account_id = s->authenticated ? s->account_id : 0;
	s->env.account_address = s->authenticated ? s->account_address : NULL;
	s->env.rcpts = s->rcpts;
	s->env.rcpt_count = s->rcpt_count;
}

static void defer_request(struct smtp_session *s, enum smtp_action_type type)
{
	fill_env(s);
	s->request = type;
	s->deferred = DEF_REQUEST;
	s->st = ST_WAIT;
}

/* True when the request of this type has been returned by next() and not
 * yet answered. */
static bool outstanding(const struct smtp_session *s, enum smtp_action_type type)
{
	return s != NULL && !s->fatal && s->st == ST_WAIT &&
	       s->deferred == DEF_NONE && s->request == type;
}

/* ---- Received: -------------------------------------------------------- */

/* RFC 3848 and RFC 6531 3.7.3: the "with" protocol name. */
static void protocol_name(const struct smtp_session *s, char *buf, size_t size)
{
	const char *sfx = s->tls_active ? (s->authenticated ? "SA" : "S")
					: (s->authenticated ? "A" : "");
	const char *base;

	if (s->env.smtputf8)
		base = s->mode == SMTP_MODE_LMTP ? "UTF8LMTP" : "UTF8SMTP";
	else if (s->mode == SMTP_MODE_LMTP)
		base = "LMTP";
	else if (s->helo_kind == HELO_HELO && sfx[0] == '\0')
		base = "SMTP";
	else
		base = "ESMTP";
	snprintf(buf, size, "%s%s", base, sfx);
}

/* RFC 5322 3.3 date-time, in UTC. */
static void format_date(time_t t, char *buf, size_t size)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		snprintf(buf, size, "Thu, 1 Jan 1970 00:00:00 +0000");
		return;
	}
	snprintf(buf, size, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
		 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		 tm.tm_min, tm.tm_sec);
}

/* RFC 5321 4.4: Time-stamp-line = "Received:" FWS Stamp <CRLF>;
 * Stamp = From-domain By-domain Opt-info [CFWS] ";" FWS date-time;
 * Opt-info = [Via] [With] [ID] [For]. TLS and AUTH details go in comments
 * (CFWS), as Postfix and Dovecot write them. */
static void build_received(struct smtp_session *s)
{
	char proto[16], date[64];
	struct pn_buf *b = &s->msg;
	time_t now = s->clock != NULL ? s->clock() : time(NULL);
	int r = 0;

	protocol_name(s, proto, sizeof(proto));
	format_date(now, date, sizeof(date));
	r |= pn_buf_printf(b, "Received: from %s (%s)\r\n\tby %s (Postern) with %s",
			   s->helo, s->client_addr, s->hostname, proto);
	if (s->session_id[0] != '\0')
		r |= pn_buf_printf(b, " id %s.%u", s->session_id, s->transactions + 1);
	if (s->tls_active)
		r |= pn_buf_printf(b, "\r\n\t(using %s with cipher %s)", s->tls_version,
				   s->tls_cipher);
	if (s->authenticated)
		r |= pn_buf_printf(b, "\r\n\t(authenticated as %s)", s->account_address);
	if (s->rcpt_count == 1)
		r |= pn_buf_printf(b, "\r\n\tfor <%s>", s->rcpts[0].address);
	r |= pn_buf_printf(b, ";\r\n\t%s\r\n", date);
	if (r != 0)
		s->fatal = true;
	s->received_len = pn_buf_len(b);
}

static void start_message(struct smtp_session *s)
{
	pn_buf_free(&s->msg);
	pn_buf_init(&s->msg, RECEIVED_MAX + (size_t)s->max_size);
	build_received(s);
	smtp_data_init(&s->dec, s->max_data_line);
	s->body_len = 0;
	s->too_big = false;
	s->msg_started = true;
}

/* Appends message bytes unless the message is already too big. */
static void message_append(struct smtp_session *s, const uint8_t *p, size_t n)
{
	if (s->too_big)
		return;
	if (n > s->max_size - s->body_len) {
		s->too_big = true;
		pn_buf_free(&s->msg);
		return;
	}
	if (pn_buf_append(&s->msg, p, n) < 0)
		s->fatal = true;
	s->body_len += n;
}

/* One reply, or in LMTP after the end of data one per accepted recipient
 * (RFC 2033 4.2), for a message refused as a whole. */
static void reply_message_refused(struct smtp_session *s, const char *text)
{
	if (s->mode == SMTP_MODE_LMTP && s->rcpt_count > 0) {
		for (size_t i = 0; i < s->rcpt_count; i++)
			reply(s, "%s", text);
	} else {
		reply(s, "%s", text);
	}
}

/* The end of DATA or BDAT LAST: refuse or hand the message over. */
static void finish_message(struct smtp_session *s)
{
	const char *fail = NULL;

	s->st = ST_COMMAND;
	if (s->too_big)
		fail = "552 5.3.4 Message size exceeds fixed maximum message size";
	else if (s->dec.bare_cr || s->dec.bare_lf)
		fail = "550 5.6.0 Message contains bare CR or bare LF, refused "
		       "(RFC 5321 2.3.8)";
	else if (s->dec.line_too_long)
		fail = "550 5.6.0 Message has a line that is too long";
	if (fail != NULL) {
		reply_message_refused(s, fail);
		reset_tx(s);
		return;
	}
	defer_request(s, SMTP_ACTION_DELIVER);
}

/* ---- EHLO / HELO / LHLO ---------------------------------------------- */

static bool auth_offered(const struct smtp_session *s)
{
	return s->mode == SMTP_MODE_SUBMISSION && (s->tls_active || s->trusted);
}

/* RFC 5321 4.1.1.1: ehlo = "EHLO" SP ( Domain / address-literal ) CRLF;
 * RFC 2033 4.1: LHLO in LMTP. */
static void cmd_helo(struct smtp_session *s, enum helo_kind kind, const char *arg,
		     size_t arg_len)
{
	if (s->mode == SMTP_MODE_LMTP && kind != HELO_LHLO) {
		reply_error(s, "500 5.5.1 This is LMTP: use LHLO");
		return;
	}
	if (s->mode != SMTP_MODE_LMTP && kind == HELO_LHLO) {
		reply_error(s, "500 5.5.2 Command not recognized");
		return;
	}
	if (!smtp_helo_valid(arg, arg_len)) {
		reply_error(s, "501 5.5.4 Syntax: %s hostname",
			    kind == HELO_HELO ? "HELO" : kind == HELO_LHLO ? "LHLO" : "EHLO");
		return;
	}
	reset_tx(s);
	s->helo_kind = kind;
	memcpy(s->helo, arg, arg_len);
	s->helo[arg_len] = '\0';
	if (kind == HELO_HELO) {
		reply(s, "250 %s", s->hostname);
		return;
	}

	const char *lines[12];
	char size_line[40], mechs[128] = "AUTH ";
	size_t n = 0;

	snprintf(size_line, sizeof(size_line), "SIZE %llu", (unsigned long long)s->max_size);
	lines[n++] = "PIPELINING";
	lines[n++] = size_line;
	lines[n++] = "8BITMIME";
	lines[n++] = "SMTPUTF8";
	lines[n++] = "ENHANCEDSTATUSCODES";
	lines[n++] = "CHUNKING";
	lines[n++] = "DSN";
	if (s->starttls_available && !s->tls_active)
		lines[n++] = "STARTTLS";
	if (auth_offered(s) && sasl_mech_list(mechs + 5, sizeof(mechs) - 5, "", true) > 0)
		lines[n++] = mechs;
	reply(s, "250-%s", s->hostname);
	for (size_t i = 0; i < n; i++)
		reply(s, "250%c%s", i + 1 == n ? ' ' : '-', lines[i]);
}

/* ---- MAIL ------------------------------------------------------------- */

/* Skips "FROM:" / "TO:" (case-insensitive) and any spaces after the colon
 * (which many clients send). Returns false if the keyword is missing. */
static bool skip_keyword(const char **pp, const char *end, const char *kw)
{
	size_t n = strlen(kw);

	if ((size_t)(end - *pp) < n || !smtp_word_eq(*pp, n, kw))
		return false;
	*pp += n;
	while (*pp < end && **pp == ' ')
		(*pp)++;
	return true;
}

/* RFC 5321 4.1.1.2: "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF,
 * with SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), AUTH
 * (RFC 4954 5), RET and ENVID (RFC 3461 4.3, 4.4). */
static void cmd_mail(struct smtp_session *s, const char *p, const char *end)
{
	struct smtp_param prm;
	const char *error;
	bool utf8, have_size = false, have_body = false, have_utf8 = false;
	bool have_auth = false, have_ret = false, have_envid = false;
	int r;

	if (s->helo_kind == HELO_NONE) {
		reply_error(s, "503 5.5.1 Send %s first",
			    s->mode == SMTP_MODE_LMTP ? "LHLO" : "EHLO");
		return;
	}
	if (s->in_tx) {
		reply_error(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (s->mode == SMTP_MODE_SUBMISSION && !s->authenticated) {
		reply_error(s, "530 5.7.0 Authentication required");
		return;
	}
	if (!skip_keyword(&p, end, "FROM:")) {
		reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (smtp_parse_path(&p, end, SMTP_PATH_ALLOW_NULL, s->mail_from,
			    sizeof(s->mail_from), &utf8, &error) < 0) {
		s->mail_from[0] = '\0';
		reply_error(s, "501 5.1.7 Bad sender address syntax: %s", error);
		return;
	}
	memset(&s->env, 0, sizeof(s->env));
	s->auth_param[0] = '\0';
	s->envid[0] = '\0';
	while ((r = smtp_parse_param(&p, end, &prm)) > 0) {
		bool dup = false;

		if (smtp_param_is(&prm, "SIZE")) {
			uint64_t v;

			dup = have_size;
			have_size = true;
			if (prm.value == NULL) {
				r = -1;
				break;
			}
			if (smtp_parse_u64(prm.value, prm.value_len, &v) < 0) {
				/* all digits but too long: over any limit */
				for (size_t i = 0; i < prm.value_len; i++) {
					if (prm.value[i] < '0' || prm.value[i] > '9') {
						r = -1;
						break;
					}
				}
				if (r < 0)
					break;
				v = UINT64_MAX;
			}
			s->env.size = v;
		} else if (smtp_param_is(&prm, "BODY")) {
			dup = have_body;
			have_body = true;
			if (prm.value != NULL && smtp_word_eq(prm.value, prm.value_len, "7BIT")) {
				s->env.body = SMTP_BODY_7BIT;
			} else if (prm.value != NULL &&
				   smtp_word_eq(prm.value, prm.value_len, "8BITMIME")) {
				s->env.body = SMTP_BODY_8BITMIME;
			} else {
				reply_error(s, "501 5.5.4 BODY must be 7BIT or 8BITMIME");
				goto fail;
			}
		} else if (smtp_param_is(&prm, "SMTPUTF8")) {
			dup = have_utf8;
			have_utf8 = true;
			if (prm.value != NULL) {
				r = -1;
				break;
			}
			s->env.smtputf8 = true;
		} else if (smtp_param_is(&prm, "AUTH")) {
			dup = have_auth;
			have_auth = true;
			if (prm.value == NULL || prm.value_len >= sizeof(s->auth_param) ||
			    !smtp_xtext_valid(prm.value, prm.value_len)) {
				r = -1;
				break;
			}
			memcpy(s->auth_param, prm.value, prm.value_len);
			s->auth_param[prm.value_len] = '\0';
		} else if (smtp_param_is(&prm, "RET")) {
			dup = have_ret;
			have_ret = true;
			if (prm.value != NULL && smtp_word_eq(prm.value, prm.value_len, "FULL")) {
				s->env.ret = SMTP_RET_FULL;
			} else if (prm.value != NULL &&
				   smtp_word_eq(prm.value, prm.value_len, "HDRS")) {
				s->env.ret = SMTP_RET_HDRS;
			} else {
				r = -1;
				break;
			}
		} else if (smtp_param_is(&prm, "ENVID")) {
			dup = have_envid;
			have_envid = true;
			if (prm.value == NULL || prm.value_len > ENVID_MAX ||
			    !smtp_xtext_valid(prm.value, prm.value_len)) {
				r = -1;
				break;
			}
			memcpy(s->envid, prm.value, prm.value_len);
			s->envid[prm.value_len] = '\0';
		} else {
			reply_error(s, "555 5.5.4 Unsupported MAIL parameter %.*s",
				    (int)(prm.key_len > 32 ? 32 : prm.key_len), prm.key);
			goto fail;
		}
		if (dup) {
			reply_error(s, "555 5.5.4 Repeated MAIL parameter %.*s",
				    (int)(prm.key_len > 32 ? 32 : prm.key_len), prm.key);
			goto fail;
		}
	}
	if (r < 0) {
		reply_error(s, "501 5.5.4 Bad MAIL parameters");
		goto fail;
	}
	/* RFC 1870 6.1: refuse at MAIL a message declared too big. */
	if (s->env.size > s->max_size) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		goto fail;
	}
	if (utf8 && !s->env.smtputf8) {
		reply_error(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		goto fail;
	}
	if (s->mail_from[0] == '\0' && s->mode == SMTP_MODE_SUBMISSION) {
		reply_error(s, "553 5.7.1 Null sender not allowed on submission");
		goto fail;
	}
	if (s->mode == SMTP_MODE_SUBMISSION) {
		defer_request(s, SMTP_ACTION_SENDER_CHECK);
		return;
	}
	s->in_tx = true;
	reply(s, "250 2.1.0 Ok");
	return;
fail:
	reset_tx(s);
}

/* ---- RCPT ------------------------------------------------------------- */

/* RFC 3461 4.1: NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ). */
static int parse_notify(const char *v, size_t len, unsigned int *notify_r)
{
	unsigned int bits = 0;
	size_t i = 0;

	while (i <= len) {
		size_t j = i;
		unsigned int bit;

		while (j < len && v[j] != ',')
			j++;
		if (smtp_word_eq(v + i, j - i, "NEVER"))
			bit = SMTP_NOTIFY_NEVER;
		else if (smtp_word_eq(v + i, j - i, "SUCCESS"))
			bit = SMTP_NOTIFY_SUCCESS;
		else if (smtp_word_eq(v + i, j - i, "FAILURE"))
			bit = SMTP_NOTIFY_FAILURE;
		else if (smtp_word_eq(v + i, j - i, "DELAY"))
			bit = SMTP_NOTIFY_DELAY;
		else
			return -1;
		if ((bits & bit) != 0)
			return -1;
		bits |= bit;
		i = j + 1;
	}
	if ((bits & SMTP_NOTIFY_NEVER) != 0 && bits != SMTP_NOTIFY_NEVER)
		return -1;
	*notify_r = bits;
	return 0;
}

/* RFC 3461 4.2: ORCPT=addr-type ";" xtext; addr-type = atom. */
static bool orcpt_valid(const char *v, size_t len)
{
	size_t i = 0;

	if (len > ORCPT_MAX)
		return false;
	while (i < len && v[i] != ';') {
		unsigned char c = (unsigned char)v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c))))
			return false;
		i++;
	}
	if (i == 0 || i == len)
		return false;
	return smtp_xtext_valid(v + i + 1, len - i - 1);
}

/* RFC 5321 4.1.1.3: "RCPT TO:" ( "<Postmaster@" Domain ">" /
 * "<Postmaster>" / Forward-path ) [SP Rcpt-parameters] CRLF. */
static void cmd_rcpt(struct smtp_session *s, const char *p, const char *end)
{
	struct smtp_param prm;
	const char *error;
	bool utf8, have_notify = false, have_orcpt = false;
	int r;

	if (!s->in_tx) {
		reply_error(s, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	if (s->msg_started) {
		reply_error(s, "503 5.5.1 RCPT not allowed after BDAT");
		return;
	}
	if (!skip_keyword(&p, end, "TO:")) {
		reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	memset(&s->cand, 0, sizeof(s->cand));
	s->cand_orcpt[0] = '\0';
	if (smtp_parse_path(&p, end, SMTP_PATH_ALLOW_POSTMASTER, s->cand_address,
			    sizeof(s->cand_address), &utf8, &error) < 0) {
		reply_error(s, "501 5.1.3 Bad recipient address syntax: %s", error);
		return;
	}
	while ((r = smtp_parse_param(&p, end, &prm)) > 0) {
		bool dup = false;

		if (smtp_param_is(&prm, "NOTIFY")) {
			dup = have_notify;
			have_notify = true;
			if (prm.value == NULL ||
			    parse_notify(prm.value, prm.value_len, &s->cand.notify) < 0) {
				r = -1;
				break;
			}
		} else if (smtp_param_is(&prm, "ORCPT")) {
			dup = have_orcpt;
			have_orcpt = true;
			if (prm.value == NULL || !orcpt_valid(prm.value, prm.value_len)) {
				r = -1;
				break;
			}
			memcpy(s->cand_orcpt, prm.value, prm.value_len);
			s->cand_orcpt[prm.value_len] = '\0';
		} else {
			reply_error(s, "555 5.5.4 Unsupported RCPT parameter %.*s",
				    (int)(prm.key_len > 32 ? 32 : prm.key_len), prm.key);
			return;
		}
		if (dup) {
			reply_error(s, "555 5.5.4 Repeated RCPT parameter %.*s",
				    (int)(prm.key_len > 32 ? 32 : prm.key_len), prm.key);
			return;
		}
	}
	if (r < 0) {
		reply_error(s, "501 5.5.4 Bad RCPT parameters");
		return;
	}
	if (utf8 && !s->env.smtputf8) {
		reply_error(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	/* RFC 5321 4.5.3.1.10: 452 and go on; not the client's error. */
	if (s->rcpt_count >= s->max_rcpts) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	s->cand.address = s->cand_address;
	s->cand.orcpt = s->cand_orcpt[0] != '\0' ? s->cand_orcpt : NULL;
	defer_request(s, SMTP_ACTION_RCPT_CHECK);
}

/* ---- DATA and BDAT ---------------------------------------------------- */

/* RFC 5321 4.1.1.4: "DATA" CRLF. */
static void cmd_data(struct smtp_session *s, size_t arg_len)
{
	if (arg_len > 0) {
		reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (!s->in_tx) {
		reply_error(s, "503 5.5.1 Need MAIL before DATA");
		return;
	}
	if (s->msg_started || s->bdat_tx_failed) {
		reply_error(s, "503 5.5.1 DATA not allowed after BDAT");
		return;
	}
	/* RFC 2920 3.1: DATA with no accepted recipient. */
	if (s->rcpt_count == 0) {
		reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	start_message(s);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	s->st = ST_DATA;
}

/* RFC 3030 2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF;
 * chunk-size = 1*DIGIT; end-marker = "LAST". */
static void cmd_bdat(struct smtp_session *s, const char *p, const char *end)
{
	const char *sp = memchr(p, ' ', (size_t)(end - p));
	const char *num_end = sp != NULL ? sp : end;
	uint64_t size;
	bool last = false;

	if (smtp_parse_u64(p, (size_t)(num_end - p), &size) < 0) {
		reply_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (sp != NULL) {
		if (!smtp_word_eq(sp + 1, (size_t)(end - sp - 1), "LAST")) {
			reply_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
			return;
		}
		last = true;
	}
	s->st = ST_BDAT;
	s->bdat_remaining = size;
	s->bdat_last = last;
	s->bdat_discard = true;
	s->bdat_fail_counts = false;
	/* RFC 3030 2: a refused chunk is still read, and so is any chunk
	 * pipelined after it. */
	if (s->bdat_tx_failed) {
		return;
	} else if (!s->in_tx) {
		snprintf(s->bdat_fail, sizeof(s->bdat_fail), "503 5.5.1 Need MAIL before BDAT");
		s->bdat_fail_counts = true;
		return;
	} else if (s->rcpt_count == 0) {
		snprintf(s->bdat_fail, sizeof(s->bdat_fail), "554 5.5.1 No valid recipients");
		s->bdat_tx_failed = true;
		return;
	}
	if (!s->msg_started) {
		start_message(s);
		s->dec.state = SMTP_DATA_MID;
		s->bdat_used = true;
	}
	if (size > s->max_size - s->body_len) {
		snprintf(s->bdat_fail, sizeof(s->bdat_fail),
			 "552 5.3.4 Message size exceeds fixed maximum message size");
		s->bdat_tx_failed = true;
		pn_buf_free(&s->msg);
		return;
	}
	s->bdat_discard = false;
}

/* Decodes DATA content from p[0..len) into the message (dot-unstuffed,
 * straight into its buffer when it fits). Returns the bytes used (all of
 * them unless the end of the data was reached, or fewer near the size
 * limit: call again) and sets *end_r; sets s->fatal when out of memory. */
static size_t data_take(struct smtp_session *s, const uint8_t *p, size_t len, bool *end_r)
{
	size_t used, olen;

	*end_r = false;
	if (s->too_big) {
		used = smtp_data_decode(&s->dec, p, len, NULL, &olen, end_r);
	} else if (len + 1 <= s->max_size - s->body_len) {
		/* Fits for sure: decode straight into the message. */
		uint8_t *w = pn_buf_reserve(&s->msg, len + 1);

		if (w == NULL) {
			s->fatal = true;
			return 0;
		}
		used = smtp_data_decode(&s->dec, p, len, w, &olen, end_r);
		pn_buf_commit(&s->msg, olen);
		s->body_len += olen;
	} else {
		uint8_t scratch[SCRATCH_SIZE];

		if (len > sizeof(scratch) - 1)
			len = sizeof(scratch) - 1;
		used = smtp_data_decode(&s->dec, p, len, scratch, &olen, end_r);
		message_append(s, scratch, olen);
		explicit_bzero(scratch, olen);
	}
	return used;
}

static int step_data(struct smtp_session *s)
{
	size_t len = pn_buf_len(&s->in), used;
	bool end;

	if (len == 0)
		return 0;
	used = data_take(s, pn_buf_rptr(&s->in), len, &end);
	if (s->fatal)
		return 0;
	pn_buf_consume(&s->in, used);
	if (end)
		finish_message(s);
	return 1;
}

static int step_bdat(struct smtp_session *s)
{
	if (s->bdat_remaining > 0) {
		size_t len = pn_buf_len(&s->in);
		const uint8_t *p;

		if (len == 0)
			return 0;
		p = pn_buf_rptr(&s->in);
		if (len > s->bdat_remaining)
			len = (size_t)s->bdat_remaining;
		if (!s->bdat_discard) {
			smtp_data_scan(&s->dec, p, len);
			message_append(s, p, len);
		}
		pn_buf_consume(&s->in, len);
		s->bdat_remaining -= len;
		if (s->bdat_remaining > 0)
			return 1;
	}
	s->st = ST_COMMAND;
	if (s->bdat_discard) {
		if (s->bdat_fail_counts)
			s->errors++;
		if (s->bdat_last && s->in_tx) {
			reply_message_refused(s, s->bdat_fail);
			reset_tx(s);
		} else {
			reply(s, "%s", s->bdat_fail);
		}
		return 1;
	}
	if (!s->bdat_last) {
		reply(s, "250 2.0.0 %llu octets received",
		      (unsigned long long)s->body_len);
		return 1;
	}
	smtp_data_scan_end(&s->dec);
	finish_message(s);
	return 1;
}

/* ---- AUTH (RFC 4954; the exchange itself is frontend/sasl/) ------------ */

/* RFC 4954 4: "=" is an empty initial response and "*" cancels; this engine
 * has always taken either in both places. */
static const struct sasl_settings smtp_sasl_settings = { .markers_anywhere = true };

/* Carries out a result of the SASL exchange. */
static void sasl_reply(struct smtp_session *s, const struct sasl_result *res)
{
	s->st = ST_COMMAND;
	switch (res->status) {
	case SASL_CHALLENGE:
		s->st = ST_SASL;
		reply(s, "334 %s", res->challenge_b64);
		return;
	case SASL_DONE:
		/* The default field limits are CRED_MAX. */
		memcpy(s->authzid, res->creds.authzid, res->creds.authzid_len + 1);
		memcpy(s->authcid, res->creds.authcid, res->creds.authcid_len + 1);
		memcpy(s->password, res->creds.password, res->creds.password_len + 1);
		s->mechanism = sasl_mech_name(res->mech);
		sasl_exchange_free(&s->sasl);
		defer_request(s, SMTP_ACTION_AUTH_VERIFY);
		return;
	case SASL_ERROR:
		break;
	}
	sasl_exchange_free(&s->sasl);
	switch (res->error) {
	case SASL_ERR_CANCELLED:
		reply(s, "501 5.7.0 Authentication cancelled");
		break;
	case SASL_ERR_MALFORMED:
		reply_error(s, "501 5.5.2 Malformed %s response", sasl_mech_name(res->mech));
		break;
	case SASL_ERR_UNKNOWN_MECH:
		reply_error(s, "504 5.5.4 Unrecognized authentication type");
		break;
	case SASL_ERR_NO_MEMORY:
		s->fatal = true;
		break;
	case SASL_ERR_BAD_BASE64:
	case SASL_ERR_TOO_LONG:
	case SASL_ERR_NONE:
	default:
		reply_error(s, "501 5.5.2 Cannot decode response");
		break;
	}
}

/* RFC 4954 4: "AUTH" SP sasl-mech [SP initial-response] CRLF. */
static void cmd_auth(struct smtp_session *s, const char *p, const char *end)
{
	const char *sp = memchr(p, ' ', (size_t)(end - p));
	size_t mech_len = (size_t)((sp != NULL ? sp : end) - p);
	const char *ir = sp != NULL ? sp + 1 : NULL;
	struct sasl_result res;

	if (s->mode != SMTP_MODE_SUBMISSION) {
		reply_error(s, "502 5.5.1 AUTH not available");
		return;
	}
	if (s->helo_kind == HELO_NONE) {
		reply_error(s, "503 5.5.1 Send EHLO first");
		return;
	}
	if (s->authenticated) {
		reply_error(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (!auth_offered(s)) {
		reply_error(s, "538 5.7.11 Encryption required for requested "
			       "authentication mechanism");
		return;
	}
	if (sasl_mech_find(p, mech_len) != NULL && ir != NULL &&
	    (ir == end || memchr(ir, ' ', (size_t)(end - ir)) != NULL)) {
		reply_error(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		return;
	}
	sasl_start(&smtp_sasl_settings, p, mech_len, ir, ir != NULL ? (size_t)(end - ir) : 0,
		   &s->sasl, &res);
	sasl_reply(s, &res);
}

/* ---- command lines ---------------------------------------------------- */

static void cmd_starttls(struct smtp_session *s, size_t arg_len)
{
	if (arg_len > 0) {
		reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls_active) {
		reply_error(s, "503 5.5.1 TLS already active");
		return;
	}
	if (!s->starttls_available) {
		reply_error(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (s->helo_kind == HELO_NONE) {
		reply_error(s, "503 5.5.1 Send %s first",
			    s->mode == SMTP_MODE_LMTP ? "LHLO" : "EHLO");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	reset_session(s);
	s->discard_input = true;
	s->st = ST_WAIT_TLS;
	s->deferred = DEF_START_TLS;
}

static void run_command(struct smtp_session *s, const char *line, size_t len)
{
	const char *end = line + len;
	const char *sp = memchr(line, ' ', len);
	const char *verb_end = sp != NULL ? sp : end;
	size_t vl = (size_t)(verb_end - line);
	const char *arg = verb_end;
	size_t arg_len;

	while (arg < end && *arg == ' ')
		arg++;
	arg_len = (size_t)(end - arg);

	if (++s->commands > s->max_commands) {
		reply(s, "421 4.7.0 %s Too many commands, closing connection", s->hostname);
		close_session(s);
		return;
	}
	if (smtp_word_eq(line, vl, "EHLO")) {
		cmd_helo(s, HELO_EHLO, arg, arg_len);
	} else if (smtp_word_eq(line, vl, "HELO")) {
		cmd_helo(s, HELO_HELO, arg, arg_len);
	} else if (smtp_word_eq(line, vl, "LHLO")) {
		cmd_helo(s, HELO_LHLO, arg, arg_len);
	} else if (smtp_word_eq(line, vl, "MAIL")) {
		cmd_mail(s, arg, end);
	} else if (smtp_word_eq(line, vl, "RCPT")) {
		cmd_rcpt(s, arg, end);
	} else if (smtp_word_eq(line, vl, "DATA")) {
		cmd_data(s, arg_len);
	} else if (smtp_word_eq(line, vl, "BDAT")) {
		cmd_bdat(s, arg, end);
	} else if (smtp_word_eq(line, vl, "RSET")) {
		if (arg_len > 0) {
			reply_error(s, "501 5.5.4 Syntax: RSET");
			return;
		}
		reset_tx(s);
		reply(s, "250 2.0.0 Ok");
	} else if (smtp_word_eq(line, vl, "NOOP")) {
		reply(s, "250 2.0.0 Ok");
	} else if (smtp_word_eq(line, vl, "QUIT")) {
		reply(s, "221 2.0.0 Bye");
		close_session(s);
	} else if (smtp_word_eq(line, vl, "VRFY")) {
		if (arg_len == 0)
			reply_error(s, "501 5.5.4 Syntax: VRFY address");
		else
			reply(s, "252 2.5.0 Cannot VRFY user, but will accept message "
				 "and attempt delivery");
	} else if (smtp_word_eq(line, vl, "EXPN")) {
		reply_error(s, "502 5.5.1 EXPN not available");
	} else if (smtp_word_eq(line, vl, "HELP")) {
		reply(s, "214 2.0.0 Commands: %s MAIL RCPT DATA BDAT RSET NOOP QUIT "
			 "VRFY HELP%s%s",
		      s->mode == SMTP_MODE_LMTP ? "LHLO" : "EHLO HELO",
		      s->starttls_available && !s->tls_active ? " STARTTLS" : "",
		      auth_offered(s) ? " AUTH" : "");
	} else if (smtp_word_eq(line, vl, "STARTTLS")) {
		cmd_starttls(s, arg_len);
	} else if (smtp_word_eq(line, vl, "AUTH")) {
		cmd_auth(s, arg, end);
	} else if (smtp_word_eq(line, vl, "GET") || smtp_word_eq(line, vl, "POST") ||
		   smtp_word_eq(line, vl, "CONNECT") || smtp_word_eq(line, vl, "HEAD") ||
		   smtp_word_eq(line, vl, "PUT")) {
		/* Cross-protocol (HTTP) traffic: stop at once. */
		reply(s, "421 4.7.0 %s Not an HTTP server, closing connection", s->hostname);
		close_session(s);
	} else {
		reply_error(s, "500 5.5.2 Command not recognized");
	}
}

static bool is_auth_line(const struct smtp_session *s, const uint8_t *p, size_t len)
{
	return s->st == ST_SASL || (len >= 5 && smtp_word_eq((const char *)p, 5, "AUTH "));
}

/* RFC 5321 2.3.8 / 4.1.1: a command line ends with CR LF; at most max_line
 * octets with it (4.5.3.1.4), or SMTP_AUTH_LINE_MAX for AUTH (RFC 4954 4). */
static int step_line(struct smtp_session *s)
{
	size_t len = pn_buf_len(&s->in);
	uint8_t *p;
	const uint8_t *lf;
	size_t limit, n, ll;
	bool auth;

	if (len == 0)
		return 0;
	/* (the buffer may be unallocated when empty: no pointer before this) */
	p = (uint8_t *)pn_buf_rptr(&s->in);
	if (s->skip_line) {
		lf = memchr(p, '\n', len);
		if (lf == NULL) {
			pn_buf_consume(&s->in, len);
			return 1;
		}
		pn_buf_consume(&s->in, (size_t)(lf - p) + 1);
		s->skip_line = false;
		return 1;
	}
	auth = is_auth_line(s, p, len);
	limit = s->max_line;
	if (auth && limit < SMTP_AUTH_LINE_MAX)
		limit = SMTP_AUTH_LINE_MAX;
	lf = memchr(p, '\n', len < limit ? len : limit);
	if (lf == NULL) {
		if (len < limit)
			return 0;
		/* No LF in the first limit bytes: drop them and the rest of
		 * the line up to its LF, wherever that comes. */
		explicit_bzero(p, limit);
		pn_buf_consume(&s->in, limit);
		s->skip_line = true;
		sasl_exchange_free(&s->sasl);
		s->st = ST_COMMAND;
		reply_error(s, "500 5.5.6 Line too long");
		return 1;
	}
	n = (size_t)(lf - p);
	if (n == 0 || p[n - 1] != '\r') {
		sasl_exchange_free(&s->sasl);
		s->st = ST_COMMAND;
		reply_error(s, "500 5.5.2 Line must end with CR LF");
	} else {
		ll = n - 1;
		/* Trailing blanks are tolerated (clients send them). */
		while (ll > 0 && (p[ll - 1] == ' ' || p[ll - 1] == '\t'))
			ll--;
		if (memchr(p, '\0', ll) != NULL || memchr(p, '\r', ll) != NULL) {
			sasl_exchange_free(&s->sasl);
			s->st = ST_COMMAND;
			reply_error(s, "500 5.5.2 Invalid character in command");
		} else if (s->st == ST_SASL) {
			struct sasl_result res;
			sasl_step(&s->sasl, (const char *)p, ll, &res);
			sasl_reply(s, &res);
		} else {
			run_command(s, (const char *)p, ll);
		}
	}
	if (auth)
		explicit_bzero(p, n + 1);
	pn_buf_consume(&s->in, n + 1);
	if (s->discard_input) {
		/* STARTTLS: whatever followed the command line was sent in
		 * plaintext before TLS; it is never executed (RFC 3207 5). */
		s->discard_input = false;
		s->discarded = pn_buf_len(&s->in);
		pn_buf_reset(&s->in);
	}
	return 1;
}

static int step(struct smtp_session *s)
{
	if (s->st == ST_WAIT || s->st == ST_WAIT_TLS || s->st == ST_CLOSED)
		return 0;
	if (s->timeout) {
		reply(s, "421 4.4.2 %s Timeout, closing connection", s->hostname);
		close_session(s);
		return 1;
	}
	switch (s->st) {
	case ST_COMMAND:
	case ST_SASL:
		if (s->drain) {
			reply(s, "421 4.3.2 %s Service shutting down, closing connection",
			      s->hostname);
			close_session(s);
			return 1;
		}
		return step_line(s);
	case ST_DATA:
		return step_data(s);
	case ST_BDAT:
		return step_bdat(s);
	default:
		return 0;
	}
}

/* ---- the public API --------------------------------------------------- */

static bool chars_ok(const char *v, const char *extra)
{
	for (; *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr(extra, c) != NULL))
			return false;
	}
	return true;
}

/* Copies a TLS detail for a Received: comment: printable ASCII without
 * "()\\", or "unknown". */
static void copy_tls_detail(char *dst, size_t size, const char *v)
{
	size_t n = v != NULL ? strlen(v) : 0;
	bool ok = n > 0 && n < size;

	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x21 || c > 0x7e || c == '(' || c == ')' || c == '\\')
			ok = false;
	}
	snprintf(dst, size, "%s", ok ? v : "unknown");
}

struct smtp_session *smtp_session_new(const struct smtp_settings *set,
				      const char **error_r)
{
	struct smtp_session *s;
	size_t input;

	if (set->mode != SMTP_MODE_MX && set->mode != SMTP_MODE_SUBMISSION &&
	    set->mode != SMTP_MODE_LMTP) {
		*error_r = "bad mode";
		return NULL;
	}
	if (set->hostname == NULL ||
	    !smtp_helo_valid(set->hostname, strlen(set->hostname))) {
		*error_r = "hostname missing or not printable ASCII";
		return NULL;
	}
	if (set->client_addr != NULL &&
	    (strlen(set->client_addr) > 60 || !chars_ok(set->client_addr, ".:%_-"))) {
		*error_r = "client_addr is not an address";
		return NULL;
	}
	if (set->session_id != NULL &&
	    (strlen(set->session_id) > 64 || !chars_ok(set->session_id, "-_."))) {
		*error_r = "session_id: letters, digits, -_. only, at most 64";
		return NULL;
	}
	if (set->max_line != 0 && set->max_line < 512) {
		*error_r = "max_line below 512 (RFC 5321 4.5.3.1.4)";
		return NULL;
	}
	if (set->max_data_line != 0 && set->max_data_line < 998) {
		*error_r = "max_data_line below 998 (RFC 5322 2.1.1)";
		return NULL;
	}
	input = set->input_buffer != 0 ? set->input_buffer : SMTP_DEFAULT_INPUT_BUFFER;
	if (input < SMTP_AUTH_LINE_MAX + 2 || input < set->max_line + 2) {
		*error_r = "input_buffer smaller than the longest line";
		return NULL;
	}
	if (set->max_message_size > SIZE_MAX / 2) {
		*error_r = "max_message_size too big";
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	s->mode = set->mode;
	snprintf(s->hostname, sizeof(s->hostname), "%s", set->hostname);
	if (set->client_addr == NULL || set->client_addr[0] == '\0')
		snprintf(s->client_addr, sizeof(s->client_addr), "unknown");
	else if (strchr(set->client_addr, ':') != NULL)
		snprintf(s->client_addr, sizeof(s->client_addr), "[IPv6:%s]", set->client_addr);
	else
		snprintf(s->client_addr, sizeof(s->client_addr), "[%s]", set->client_addr);
	if (set->session_id != NULL)
		snprintf(s->session_id, sizeof(s->session_id), "%s", set->session_id);
	s->starttls_available = set->starttls_available;
	s->trusted = set->trusted;
	s->max_line = set->max_line != 0 ? set->max_line : SMTP_DEFAULT_MAX_LINE;
	s->max_data_line = set->max_data_line != 0 ? set->max_data_line
						   : SMTP_DEFAULT_MAX_DATA_LINE;
	s->max_size = set->max_message_size != 0 ? set->max_message_size
						 : SMTP_DEFAULT_MAX_MESSAGE_SIZE;
	s->max_rcpts = set->max_recipients != 0 ? set->max_recipients
						: SMTP_DEFAULT_MAX_RECIPIENTS;
	s->max_errors = set->max_errors != 0 ? set->max_errors : SMTP_DEFAULT_MAX_ERRORS;
	s->max_commands = set->max_commands != 0 ? set->max_commands
						 : SMTP_DEFAULT_MAX_COMMANDS;
	s->clock = set->clock;
	s->tls_active = set->tls_active;
	if (s->tls_active) {
		copy_tls_detail(s->tls_version, sizeof(s->tls_version), set->tls_info.version);
		copy_tls_detail(s->tls_cipher, sizeof(s->tls_cipher), set->tls_info.cipher);
	}
	pn_buf_init(&s->in, input);
	pn_buf_init(&s->out, OUT_FLUSH + 8192 + (size_t)s->max_rcpts * RCPT_REPLY_MAX);
	pn_buf_init(&s->msg, 0);
	s->st = ST_COMMAND;
	/* RFC 5321 4.2: greeting = "220 " Domain [ SP textstring ] CRLF. */
	reply(s, "220 %s %s Postern", s->hostname,
	      s->mode == SMTP_MODE_LMTP ? "LMTP" : "ESMTP");
	if (s->fatal) {
		smtp_session_free(&s);
		*error_r = "out of memory";
		return NULL;
	}
	return s;
}

void smtp_session_free(struct smtp_session **sp)
{
	struct smtp_session *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	reset_tx(s);
	sasl_exchange_free(&s->sasl);
	if (s->in.data != NULL)
		explicit_bzero(s->in.data, s->in.cap);
	pn_buf_free(&s->in);
	pn_buf_free(&s->out);
	pn_buf_free(&s->msg);
	free(s->rcpts);
	explicit_bzero(s, sizeof(*s));
	free(s);
}

size_t smtp_session_input_room(const struct smtp_session *s)
{
	return pn_buf_room(&s->in);
}

size_t smtp_session_feed(struct smtp_session *s, const void *data, size_t len)
{
	size_t n;

	if (s->fatal || s->st == ST_CLOSED || s->st == ST_WAIT_TLS)
		return len;
	if (s->st == ST_DATA && !s->timeout && pn_buf_len(&s->in) == 0) {
		/* Message content with nothing buffered before it: decode it
		 * from the caller's bytes into the message, without a copy in
		 * the input buffer first (what step_data() would do next). */
		const uint8_t *p = data;
		size_t used = 0;
		bool end = false;

		while (used < len && !end) {
			size_t k = data_take(s, p + used, len - used, &end);

			if (s->fatal)
				return len;
			if (k == 0 && !end)
				break;
			used += k;
		}
		if (end)
			finish_message(s);
		if (used == len)
			return len;
		/* input after the end of the data: buffered as usual */
		data = p + used;
		len -= used;
		n = pn_buf_room(&s->in);
		if (n > len)
			n = len;
		if (n > 0 && pn_buf_append(&s->in, data, n) < 0) {
			s->fatal = true;
			return used + len;
		}
		return used + n;
	}
	n = pn_buf_room(&s->in);
	if (n > len)
		n = len;
	if (n > 0 && pn_buf_append(&s->in, data, n) < 0) {
		s->fatal = true;
		return len;
	}
	return n;
}

static int emit_send(struct smtp_session *s, struct smtp_action *a)
{
	memset(a, 0, sizeof(*a));
	a->type = SMTP_ACTION_SEND;
	a->u.send.data = pn_buf_rptr(&s->out);
	a->u.send.len = pn_buf_len(&s->out);
	s->out_handed = a->u.send.len;
	return 1;
}

static int emit_deferred(struct smtp_session *s, struct smtp_action *a)
{
	enum deferred d = s->deferred;

	memset(a, 0, sizeof(*a));
	s->deferred = DEF_NONE;
	switch (d) {
	case DEF_START_TLS:
		a->type = SMTP_ACTION_START_TLS;
		a->u.start_tls.discarded = s->discarded;
		s->discarded = 0;
		return 1;
	case DEF_CLOSE:
		a->type = SMTP_ACTION_CLOSE;
		return 1;
	case DEF_REQUEST:
		break;
	case DEF_NONE:
		return 0;
	}
	a->type = s->request;
	switch (s->request) {
	case SMTP_ACTION_AUTH_VERIFY:
		a->u.auth.mechanism = s->mechanism;
		a->u.auth.authzid = s->authzid;
		a->u.auth.authcid = s->authcid;
		a->u.auth.password = s->password;
		break;
	case SMTP_ACTION_SENDER_CHECK:
		a->u.sender.env = &s->env;
		a->u.sender.address = s->mail_from;
		break;
	case SMTP_ACTION_RCPT_CHECK:
		a->u.rcpt.env = &s->env;
		a->u.rcpt.rcpt = &s->cand;
		break;
	case SMTP_ACTION_DELIVER:
		a->u.deliver.env = &s->env;
		a->u.deliver.message = pn_buf_rptr(&s->msg);
		a->u.deliver.message_len = pn_buf_len(&s->msg);
		a->u.deliver.received_len = s->received_len;
		break;
	default:
		s->fatal = true;
		return -1;
	}
	return 1;
}

int smtp_session_next(struct smtp_session *s, struct smtp_action *a)
{
	if (s->fatal)
		return -1;
	release_handed(s);
	for (;;) {
		if (s->fatal)
			return -1;
		if (s->deferred != DEF_NONE) {
			/* Replies queued so far go out before the action. */
			if (pn_buf_len(&s->out) > 0)
				return emit_send(s, a);
			return emit_deferred(s, a);
		}
		if (pn_buf_len(&s->out) >= OUT_FLUSH)
			return emit_send(s, a);
		if (step(s) > 0) {
			check_limits(s);
			continue;
		}
		if (s->fatal)
			return -1;
		if (pn_buf_len(&s->out) > 0)
			return emit_send(s, a);
		/* Idle: an idle connection keeps no buffer memory. */
		pn_buf_shrink_if_empty(&s->in);
		pn_buf_shrink_if_empty(&s->out);
		return 0;
	}
}

/* After a result: the engine resumes reading commands. */
static void resume(struct smtp_session *s)
{
	release_handed(s);
	s->st = ST_COMMAND;
}

int smtp_session_auth_result(struct smtp_session *s, enum smtp_auth_status status,
			     uint64_t account_id, const char *address)
{
	if (!outstanding(s, SMTP_ACTION_AUTH_VERIFY))
		return -1;
	if (status == SMTP_AUTH_OK) {
		size_t n = address != NULL ? strlen(address) : 0;

		if (n == 0 || n >= sizeof(s->account_address))
			return -1;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)address[i];
			if (c < 0x21 || c == 0x7f || c == '(' || c == ')' || c == '\\')
				return -1;
		}
		memcpy(s->account_address, address, n + 1);
	} else if (status != SMTP_AUTH_BAD && status != SMTP_AUTH_TEMPFAIL) {
		return -1;
	}
	resume(s);
	wipe_credentials(s);
	switch (status) {
	case SMTP_AUTH_OK:
		s->authenticated = true;
		s->account_id = account_id;
		reply(s, "235 2.7.0 Authentication successful");
		break;
	case SMTP_AUTH_BAD:
		reply_error(s, "535 5.7.8 Authentication credentials invalid");
		break;
	case SMTP_AUTH_TEMPFAIL:
		reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	}
	check_limits(s);
	return 0;
}

int smtp_session_sender_result(struct smtp_session *s, enum smtp_sender_status status)
{
	if (!outstanding(s, SMTP_ACTION_SENDER_CHECK))
		return -1;
	if (status != SMTP_SENDER_OK && status != SMTP_SENDER_DENIED &&
	    status != SMTP_SENDER_TEMPFAIL)
		return -1;
	resume(s);
	switch (status) {
	case SMTP_SENDER_OK:
		s->in_tx = true;
		reply(s, "250 2.1.0 Ok");
		break;
	case SMTP_SENDER_DENIED:
		reset_tx(s);
		reply_error(s, "553 5.7.1 Sender address not owned by the "
			       "authenticated user");
		break;
	case SMTP_SENDER_TEMPFAIL:
		reset_tx(s);
		reply(s, "451 4.3.0 Temporary failure, try again later");
		break;
	}
	check_limits(s);
	return 0;
}

int smtp_session_rcpt_result(struct smtp_session *s, enum smtp_rcpt_status status,
			     uint64_t rcpt_id)
{
	if (!outstanding(s, SMTP_ACTION_RCPT_CHECK) || (unsigned int)status > SMTP_RCPT_TEMPFAIL)
		return -1;
	if (status == SMTP_RCPT_OK && s->rcpt_count == s->rcpt_cap) {
		size_t cap = s->rcpt_cap == 0 ? 4 : s->rcpt_cap * 2;
		struct smtp_rcpt *r;

		if (cap > s->max_rcpts)
			cap = s->max_rcpts;
		r = realloc(s->rcpts, cap * sizeof(*r));
		if (r == NULL)
			return -1;
		s->rcpts = r;
		s->rcpt_cap = cap;
	}
	resume(s);
	switch (status) {
	case SMTP_RCPT_OK: {
		struct smtp_rcpt *r = &s->rcpts[s->rcpt_count];
		size_t al = strlen(s->cand_address) + 1;
		size_t ol = s->cand.orcpt != NULL ? strlen(s->cand_orcpt) + 1 : 0;
		/* One block per recipient: the address, then ORCPT. */
		char *mem = malloc(al + ol);

		if (mem == NULL) {
			s->fatal = true;
			return -1;
		}
		memcpy(mem, s->cand_address, al);
		if (ol > 0)
			memcpy(mem + al, s->cand_orcpt, ol);
		r->address = mem;
		r->orcpt = ol > 0 ? mem + al : NULL;
		r->notify = s->cand.notify;
		r->id = rcpt_id;
		s->rcpt_count++;
		reply(s, "250 2.1.5 Ok");
		break;
	}
	case SMTP_RCPT_UNKNOWN:
		reply_error(s, "550 5.1.1 <%s> User unknown", s->cand_address);
		break;
	case SMTP_RCPT_RELAY_DENIED:
		reply_error(s, "554 5.7.1 <%s> Relay access denied", s->cand_address);
		break;
	case SMTP_RCPT_DISABLED:
		reply_error(s, "550 5.2.1 <%s> Mailbox disabled", s->cand_address);
		break;
	case SMTP_RCPT_OVER_QUOTA:
		reply(s, "452 4.2.2 <%s> Mailbox full", s->cand_address);
		break;
	case SMTP_RCPT_TEMPFAIL:
		reply(s, "451 4.3.0 <%s> Temporary failure, try again later",
		      s->cand_address);
		break;
	}
	memset(&s->cand, 0, sizeof(s->cand));
	check_limits(s);
	return 0;
}

struct deliver_reply {
	const char *code;	/* "250 2.0.0" */
	const char *text;
	bool temporary;
};

static const struct deliver_reply deliver_replies[] = {
	[SMTP_DELIVER_OK] = { "250 2.0.0", "Ok", false },
	[SMTP_DELIVER_TEMPFAIL] = { "451 4.3.0", "Temporary failure, try again later", true },
	[SMTP_DELIVER_OVER_QUOTA] = { "452 4.2.2", "Mailbox full", true },
	[SMTP_DELIVER_QUOTA_EXCEEDED] = { "552 5.2.2", "Mailbox full: message exceeds quota", false },
	[SMTP_DELIVER_SENDER_DENIED] = { "553 5.7.1", "From: header not owned by the authenticated user", false },
	[SMTP_DELIVER_PERMFAIL] = { "554 5.0.0", "Delivery failed", false },
};

int smtp_session_deliver_result(struct smtp_session *s,
				const enum smtp_deliver_status *status, size_t count,
				const char *queue_id)
{
	char qid[65] = "";
	size_t q = 0, pick = SIZE_MAX;

	if (!outstanding(s, SMTP_ACTION_DELIVER) || count != s->rcpt_count ||
	    (count > 0 && status == NULL))
		return -1;
	for (size_t i = 0; i < count; i++) {
		if ((unsigned int)status[i] > SMTP_DELIVER_PERMFAIL)
			return -1;
	}
	for (size_t i = 0; queue_id != NULL && queue_id[i] != '\0' && q < sizeof(qid) - 1; i++) {
		char c[2] = { queue_id[i], '\0' };
		if (chars_ok(c, "-_."))
			qid[q++] = queue_id[i];
	}
	qid[q] = '\0';
	resume(s);
	if (s->mode == SMTP_MODE_LMTP) {
		/* RFC 2033 4.2: one reply per accepted recipient, in order. */
		for (size_t i = 0; i < count; i++) {
			const struct deliver_reply *r = &deliver_replies[status[i]];

			reply(s, "%s <%s> %s%s%s", r->code, s->rcpts[i].address, r->text,
			      status[i] == SMTP_DELIVER_OK && q > 0 ? ": queued as " : "",
			      status[i] == SMTP_DELIVER_OK ? qid : "");
		}
	} else {
		/* One reply: 250 only if every recipient has the message;
		 * else the first temporary failure, else the first permanent. */
		for (size_t i = 0; i < count && pick == SIZE_MAX; i++) {
			if (deliver_replies[status[i]].temporary)
				pick = i;
		}
		for (size_t i = 0; i < count && pick == SIZE_MAX; i++) {
			if (status[i] != SMTP_DELIVER_OK)
				pick = i;
		}
		if (pick == SIZE_MAX) {
			reply(s, "250 2.0.0 Ok%s%s", q > 0 ? ": queued as " : "", qid);
		} else {
			const struct deliver_reply *r = &deliver_replies[status[pick]];
			reply(s, "%s %s", r->code, r->text);
		}
	}
	s->transactions++;
	reset_tx(s);
	check_limits(s);
	return 0;
}

int smtp_session_tls_started(struct smtp_session *s, const struct smtp_tls_info *info)
{
	if (s == NULL || s->fatal || s->st != ST_WAIT_TLS || s->deferred != DEF_NONE)
		return -1;
	release_handed(s);
	s->tls_active = true;
	copy_tls_detail(s->tls_version, sizeof(s->tls_version),
			info != NULL ? info->version : NULL);
	copy_tls_detail(s->tls_cipher, sizeof(s->tls_cipher),
			info != NULL ? info->cipher : NULL);
	pn_buf_reset(&s->in);
	s->skip_line = false;
	s->st = ST_COMMAND;
	return 0;
}

void smtp_session_shutdown(struct smtp_session *s, enum smtp_shutdown_reason reason)
{
	if (reason == SMTP_SHUTDOWN_TIMEOUT)
		s->timeout = true;
	else
		s->drain = true;
}
