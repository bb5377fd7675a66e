/* The plug-in interface between the frontend's connection layer (fe-conn.c:
 * sockets, PROXY header, TLS, output queue, timers) and one protocol
 * adapter per protocol (fe-pop3.c, fe-unavailable.c, ...).
 *
 * An adapter wraps a sans-IO engine (frontend/pop3/, frontend/smtp/, ...)
 * and carries out the engine's storage requests itself (asynchronously, on
 * the connection's loop thread). Towards the connection it exposes the
 * same small shape as every engine:
 *
 *   s = proto->create(conn, &info)       greeting: the first SEND from next()
 *   proto->feed(s, plaintext)            returns bytes taken (may be fewer)
 *   proto->next(s, &act)                 1 action / 0 nothing now / -1 over
 *   proto->tls_started(s)                after START_TLS, handshake done
 *   proto->disconnected(s)               the client is gone
 *   proto->shutdown(s, reason)           say goodbye (drain, idle timeout, kick)
 *   proto->destroy(&s)                   after next() returned -1
 *
 * Result dispatch: when the engine hands the adapter a request (AUTH_VERIFY,
 * MAILDROP_OPEN...), the adapter starts the work and its next() returns 0.
 * When the work completes, the adapter gives the result to the engine and
 * calls fe_conn_wakeup(conn) as its last action: the connection runs next()
 * again. fe_conn_wakeup() may run the whole session to its end and destroy
 * the adapter's session, so the adapter must not touch the session after it.
 *
 * After disconnected() the connection keeps calling next() (SENDs are
 * dropped) until it returns -1; the adapter returns -1 only once no work of
 * its own is outstanding, so the session (and the connection) stay alive
 * until every asynchronous callback has come back. Then destroy() runs.
 *
 * Everything runs on the connection's loop thread.
 */
#ifndef FE_PROTOCOL_H
#define FE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "fe-config.h"

struct fe_conn;
struct fe_thread;

enum fe_action_type {
	FE_ACT_SEND = 1,	/* send data[0..len); copied at once */
	FE_ACT_START_TLS,	/* the plaintext STARTTLS reply was SENT before */
	FE_ACT_CLOSE,		/* close once the output is sent */
};

struct fe_action {
	enum fe_action_type type;
	const uint8_t *data;	/* SEND */
	size_t len;
	const char *reason;	/* CLOSE: static string for the log */
};

enum fe_shutdown_reason {
	FE_SHUTDOWN_DRAIN,	/* SIGTERM: "server shutting down" in the protocol's words */
	FE_SHUTDOWN_IDLE,	/* the idle timer ran out */
	/* posternctl kick: "ended by the administrator", in the same words as
	 * the drain unless the protocol has better ones (POP3 -ERR [SYS/TEMP],
	 * SMTP 421 4.3.2, IMAP * BYE) */
	FE_SHUTDOWN_KICK,
};

/* What the connection knows when the session starts. Strings and addresses
 * stay valid for the life of the connection. */
struct fe_session_info {
	enum fe_service service;
	const char *session_id;		/* unique in the cluster: "<hex>" (with node) */
	const char *node;		/* node name */
	const char *hostname;		/* for greetings and Received: */
	/* The client: from the PROXY header when a trusted peer sent one,
	 * else the socket's peer. */
	struct sockaddr_storage client;
	char client_str[64];		/* "192.0.2.1:50123" / "[2001:db8::1]:50123" */
	char client_ip[48];		/* "192.0.2.1" / "2001:db8::1" */
	bool tls;			/* TLS from the start: implicit TLS here, or
					 * terminated by the balancer (PROXY SSL TLV) */
	const char *tls_version;	/* when tls (may be NULL) */
	const char *tls_cipher;
	bool tls_available;		/* STARTTLS can be offered */
	bool secured;			/* plaintext logins allowed (client network) */
};

struct fe_protocol {
	const char *name;		/* "pop3": logs and metrics */
	/* Creates the session. Returns NULL with *error_r (static) on failure;
	 * the connection is then closed without a word. */
	void *(*create)(struct fe_conn *conn, const struct fe_session_info *info,
			const char **error_r);
	size_t (*feed)(void *s, const uint8_t *data, size_t len);
	int (*next)(void *s, struct fe_action *act_r);
	void (*tls_started)(void *s);
	void (*disconnected)(void *s);
	void (*shutdown)(void *s, enum fe_shutdown_reason reason);
	void (*destroy)(void **s);
};

/* ---- what the connection offers adapters (fe-conn.c) ---- */

/* Runs next() again soon; see "Result dispatch" above. May destroy the
 * adapter's session before it returns. */
void fe_conn_wakeup(struct fe_conn *conn);
/* The session's info (as given to create). */
const struct fe_session_info *fe_conn_info(const struct fe_conn *conn);
/* The thread the connection lives on (backend handles, metrics). */
struct fe_thread *fe_conn_thread(const struct fe_conn *conn);
/* TLS facts after a STARTTLS handshake or of implicit TLS; NULL when none. */
const char *fe_conn_tls_version(const struct fe_conn *conn);
const char *fe_conn_tls_cipher(const struct fe_conn *conn);
/* The session state for the sessions gauge: the adapter sets
 * FE_STATE_AUTHENTICATED after a login. */
enum fe_session_state {
	FE_STATE_CONNECTING,		/* PROXY header / implicit TLS handshake */
	FE_STATE_UNAUTHENTICATED,
	FE_STATE_AUTHENTICATED,
	FE_STATE_CLOSING,
	FE_STATE_COUNT
};
void fe_conn_set_state(struct fe_conn *conn, enum fe_session_state state);

/* Adapters of this build. */
extern const struct fe_protocol fe_protocol_pop3;
/* Answers with the protocol's "not available" greeting and closes; used for
 * listeners whose engine is not wired in yet (the local cluster expects
 * every listener to accept). */
extern const struct fe_protocol fe_protocol_unavailable;

/* The adapter serving a service. */
const struct fe_protocol *fe_service_adapter(enum fe_service svc);

#endif
