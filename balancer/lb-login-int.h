/* Private to lb-login*.c: the state behind struct lb_login and struct
 * lb_replay, and the per-protocol steps the generic code in lb-login.c
 * dispatches to. */
#ifndef POSTERN_LB_LOGIN_INT_H
#define POSTERN_LB_LOGIN_INT_H

#include "lb-login.h"

/* Sub-states of the client dialogue. */
enum login_state {
	LS_COMMAND = 0,		/* waiting for a command */
	LS_AUTH_PLAIN,		/* sent a continuation, waiting for PLAIN data */
	LS_AUTH_LOGIN_USER,	/* SMTP AUTH LOGIN: waiting for the user name */
	LS_AUTH_LOGIN_PASS,	/* ... and for the password */
};

struct lb_login {
	struct lb_login_settings set;
	char hostname[128];
	struct pn_buf in;		/* client bytes not yet consumed */
	struct pn_buf out;		/* the reply being handed out */
	bool greeted;
	bool done;			/* AUTH or CLOSE was handed out */
	bool tls;
	enum lb_login_ev_type pending;	/* event to hand out after the reply */
	enum login_state state;
	unsigned int errors;
	unsigned int literals_acked;	/* IMAP: continuations sent for this command */
	bool have_user;			/* POP3: USER given */
	bool ehlo;			/* SMTP: EHLO given (since TLS started) */
	struct lb_credentials cred;
};

/* What a protocol step did. */
enum step_result {
	STEP_NEED = 0,		/* needs more input; nothing produced */
	STEP_OUTPUT,		/* out and/or pending were set */
};

/* Writes the greeting into l->out. */
void lb_login_imap_greeting(struct lb_login *l);
void lb_login_pop3_greeting(struct lb_login *l);
void lb_login_smtp_greeting(struct lb_login *l);
/* Handles one complete command (or a continuation line) from l->in,
 * consuming it, and sets l->out / l->pending. */
enum step_result lb_login_imap_step(struct lb_login *l);
enum step_result lb_login_pop3_step(struct lb_login *l);
enum step_result lb_login_smtp_step(struct lb_login *l);

/* The next line in l->in: its length without the line end into *len_r and
 * with it into *full_r. Returns 1, 0 (no complete line yet), or -1 (no line
 * end within LB_LOGIN_MAX_LINE bytes). A line ends at LF; a CR before it is
 * not part of the line. */
int lb_login_line(const struct lb_login *l, size_t *len_r, size_t *full_r);
/* Appends to l->out (never fails in practice: out's bound is generous). */
void lb_login_say(struct lb_login *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Counts a bad command; after LB_LOGIN_MAX_ERRORS the caller says goodbye. */
bool lb_login_bad(struct lb_login *l);
/* Case-insensitive equality of s[0..len) with the NUL-terminated word. */
bool lb_word_eq(const uint8_t *s, size_t len, const char *word);

enum replay_state {
	RS_GREETING = 0,
	RS_USER,		/* POP3: USER sent */
	RS_EHLO,		/* SMTP: EHLO sent */
	RS_ANSWER,		/* login sent, waiting for its answer */
	RS_DONE,
};

struct lb_replay {
	enum lb_family family;
	struct lb_credentials cred;
	struct pn_buf in;		/* upstream bytes not yet consumed */
	struct pn_buf out;		/* what is handed out */
	enum replay_state state;
	enum lb_replay_ev_type pending;
	bool cont_sent;			/* answered a continuation already */
	bool login_ok;			/* the answer was a success */
	bool failed;
	const char *fail_reason;
	size_t reply_start;		/* SMTP: start of a multi-line reply in out */
};

/* One step: consume what the state needs from r->in and set r->out (with
 * the event type to return) or r->pending. Returns 0 need more, 1 an event
 * is ready in *ev_r. */
int lb_replay_imap_step(struct lb_replay *r, struct lb_replay_event *ev_r);
int lb_replay_pop3_step(struct lb_replay *r, struct lb_replay_event *ev_r);
int lb_replay_smtp_step(struct lb_replay *r, struct lb_replay_event *ev_r);

/* The next upstream line (with its line end) in r->in: length into
 * *full_r. Returns 1, 0 (incomplete) or -1 (over LB_REPLAY_MAX_LINE). */
int lb_replay_line(const struct lb_replay *r, size_t *full_r);
/* Sets an event handing out data (copied into r->out). */
int lb_replay_emit(struct lb_replay *r, struct lb_replay_event *ev_r,
		   enum lb_replay_ev_type type, const void *data, size_t len);
int lb_replay_fail(struct lb_replay *r, struct lb_replay_event *ev_r, const char *reason);

#endif
