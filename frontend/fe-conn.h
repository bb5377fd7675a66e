/* One client connection of the frontend, on one loop thread: the PROXY
 * header from trusted peers (and its refusal from anyone else), implicit
 * TLS and STARTTLS through pn_tls, a bounded output queue with
 * backpressure towards the protocol session, the idle timer, graceful and
 * hard closing. The protocol itself is a plug-in (fe-protocol.h).
 *
 * Life of a connection:
 *   accept -> [trusted peer: wait for the PROXY header, proxy_timeout]
 *          -> [implicit TLS listener: TLS session created]
 *          -> protocol session created; its greeting goes out (for
 *             implicit TLS, once the handshake completes)
 *          -> input: socket -> TLS -> session; output: session -> TLS ->
 *             output queue -> socket. While more than output_buffer bytes
 *             wait, the session is not asked for more output; while the
 *             session does not take input, the socket is not read.
 *          -> CLOSE from the session: the output is sent, TLS close_notify,
 *             shutdown(SHUT_WR), the client's EOF awaited (at most 2 s),
 *             then the socket is closed.
 * An untrusted peer is greeted at once; if its first bytes are a PROXY v1
 * or v2 signature the connection is refused and closed.
 *
 * STARTTLS: the session's plaintext reply is queued, then on START_TLS every
 * plaintext byte received but not yet taken by the session is discarded and
 * the next byte from the socket is the first byte of the TLS handshake.
 *
 * All of this runs on the loop thread of env; nothing here blocks.
 */
#ifndef FE_CONN_H
#define FE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/cidr.h"
#include "postern/loop.h"
#include "postern/tls.h"

#include "fe-config.h"
#include "fe-metrics.h"
#include "fe-protocol.h"

/* Per-thread environment shared by the thread's connections. The owner
 * fills the settings; fe-conn.c keeps the list and counters. */
struct fe_conn_env {
	struct pn_loop *loop;
	struct fe_thread *thread;	/* opaque here; given to adapters */
	struct pn_tls_ctx *tls;		/* NULL: no TLS (no implicit TLS, no STARTTLS) */
	const struct pn_cidr_list *proxy_trusted;
	const struct pn_cidr_list *plaintext_auth;
	/* PROXY header of a trusted peer, and any TLS handshake. */
	uint64_t handshake_timeout_ms;
	uint64_t idle_timeout_ms[FE_SVC_COUNT];
	uint64_t linger_ms;		/* wait for the client's EOF after our close (2 s) */
	uint64_t goodbye_timeout_ms;	/* after a goodbye was asked for, hard close (10 s) */
	size_t output_buffer;
	unsigned int max_conns;		/* this thread's share of max_connections */
	const char *node;
	const char *hostname;
	unsigned int thread_index;
	uint64_t start_time;		/* part of session ids (unique across restarts) */
	struct fe_metrics *metrics;	/* may be NULL */
	/* Called (on the loop thread) whenever a connection was freed, for the
	 * drain to notice the thread is empty. May be NULL. */
	void (*on_conn_freed)(struct fe_conn_env *env);

	/* Maintained by fe-conn.c. */
	struct fe_conn *conns;		/* doubly linked list */
	unsigned int conn_count;
	uint64_t session_seq;
};

struct fe_conn;

/* Takes over an accepted fd for service svc and protocol proto. Returns 0,
 * or -1 if the connection was refused (limit, no memory); the fd is closed
 * either way on failure. */
int fe_conn_accept(struct fe_conn_env *env, int fd, enum fe_service svc,
		   const struct fe_protocol *proto);

/* Asks the session to say goodbye (drain): the protocol's words, then
 * close. A connection still waiting for its PROXY header or TLS handshake
 * is just closed. Later calls are ignored. May free conn. */
void fe_conn_shutdown(struct fe_conn *conn, enum fe_shutdown_reason reason);
/* Closes the socket now (grace period over); the session is told the
 * client is gone. May free conn. */
void fe_conn_abort(struct fe_conn *conn, const char *reason);

/* Iteration for the drain: the next connection after conn (NULL: first).
 * A connection that was shut down or aborted stays in the list until it is
 * freed. */
struct fe_conn *fe_conn_env_next(struct fe_conn_env *env, struct fe_conn *conn);
/* True once fe_conn_shutdown or fe_conn_abort was called on it. */
bool fe_conn_shutdown_asked(const struct fe_conn *conn);

#endif
