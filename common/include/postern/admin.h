/* The admin HTTP/1.1 server every daemon runs beside its protocol
 * listeners: /healthz, /readyz, /metrics and whatever routes the daemon
 * adds (the balancer's /status, for instance).
 *
 * It runs on one event loop (postern/loop.h) and does all its I/O there;
 * requests are parsed by postern/http.h. Routes match the method and the
 * exact path (no patterns; the query string is handed to the handler). A
 * GET route also answers HEAD. Built in:
 *
 *   GET /healthz  200 "ok" while the process runs its loop.
 *   GET /readyz   200 or 503 with a JSON body:
 *                 {"status":"ready","checks":[{"name":"postgres","ok":true},
 *                  {"name":"redis","ok":false,"detail":"connect refused"}]}
 *                 The ready callback reports each check with pn_admin_check();
 *                 the answer is 200 only if every check passed and the server
 *                 is not draining (pn_admin_set_draining adds a failing
 *                 "draining" check).
 *   GET /metrics  the registry in Prometheus text format 0.0.4 (only when a
 *                 registry is given).
 *
 * Unknown paths get 404, a known path with another method 405 with an Allow
 * field, a request the parser refuses its status (400, 411, 413, 414, 431,
 * 501, 505) followed by closing the connection.
 *
 * Connections: at most max_connections at once (further ones are closed at
 * accept); keep-alive and pipelining per RFC 9112 (responses in request
 * order); a connection that does not complete a request within
 * idle_timeout_ms (from accept or from its previous request) is closed, so
 * slow or silent clients cannot hold slots. While a client does not read its
 * responses, the server stops reading its requests; per connection, memory
 * stays below the parser's buffer plus about two responses.
 *
 * Threads: everything runs on the loop's thread, handlers and the ready
 * callback included; they must not block. pn_admin_new, pn_admin_route and
 * pn_admin_free are called on that thread or while no thread runs the loop;
 * pn_admin_set_draining from any thread.
 */
#ifndef POSTERN_ADMIN_H
#define POSTERN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"
#include "postern/http.h"
#include "postern/loop.h"
#include "postern/metrics.h"

struct pn_admin;

struct pn_admin_request {
	const char *method;
	const char *path;	/* exact, not percent-decoded */
	const char *query;	/* after '?', or NULL */
	const uint8_t *body;
	size_t body_len;
	const struct pn_http_request *http;	/* headers and the rest */
};

struct pn_admin_response {
	int status;			/* preset to 200 */
	/* Preset to "text/plain; charset=utf-8"; must stay valid until the
	 * handler returns (a string literal is the usual choice). */
	const char *content_type;
	struct pn_buf *body;		/* empty; append here (max_response) */
};

/* Answers one request by filling resp. Returns 0, or -1 for a failure
 * (the body did not fit, say): the client then gets 500 and the body is
 * dropped. All pointers in req are valid only during the call. */
typedef int pn_admin_handler_fn(void *ctx, const struct pn_admin_request *req,
				struct pn_admin_response *resp);

/* Collects the readiness checks for one /readyz answer. */
struct pn_admin_checks;
/* Reports one check; name and detail (may be NULL) are copied into the
 * JSON (escaped). */
void pn_admin_check(struct pn_admin_checks *checks, const char *name, bool ok,
		    const char *detail);
typedef void pn_admin_ready_fn(void *ctx, struct pn_admin_checks *checks);

struct pn_admin_settings {
	/* "127.0.0.1:9100", "[::1]:9100", ":9100" (all IPv4 addresses); port
	 * 0 picks a free one (see pn_admin_port). Numeric only. */
	const char *listen;
	unsigned int max_connections;	/* default 64 */
	uint64_t idle_timeout_ms;	/* default 10000 */
	size_t max_response;		/* body bytes; default 8 MiB */
	struct pn_http_limits limits;	/* zero members take the defaults */
	struct pn_metrics *metrics;	/* NULL: no /metrics route */
	pn_admin_ready_fn *ready;	/* NULL: ready unless draining */
	void *ready_ctx;
};

/* Listens and starts accepting on loop. Returns the server, or NULL with
 * *error_r set to a static message (bad address, bind failure, no memory). */
struct pn_admin *pn_admin_new(struct pn_loop *loop, const struct pn_admin_settings *set,
			      const char **error_r);
/* Closes the listener and every connection (responses not yet sent are
 * dropped) and frees the server; sets *admin to NULL. Not from inside one
 * of its handlers; before pn_loop_free(). */
void pn_admin_free(struct pn_admin **admin);

/* The port the server listens on (useful after asking for port 0). */
uint16_t pn_admin_port(const struct pn_admin *admin);
/* Number of open client connections. */
unsigned int pn_admin_connection_count(const struct pn_admin *admin);

/* Adds a route. method is a token such as "GET" or "POST"; path starts
 * with '/'. Both are copied. Returns 0, or -1 with *error_r set if the
 * method and path are already routed (the built-ins included) or the
 * arguments are malformed. */
int pn_admin_route(struct pn_admin *admin, const char *method, const char *path,
		   pn_admin_handler_fn *fn, void *ctx, const char **error_r);

/* While draining, /readyz answers 503 so that balancers stop sending new
 * work; everything else keeps working. Any thread. */
void pn_admin_set_draining(struct pn_admin *admin, bool draining);

#endif
