/* DNS lookups (A, AAAA, MX, SRV) with c-ares, driven by a pn_loop.
 *
 * The adapter turns c-ares' socket interest (ARES_OPT_SOCK_STATE_CB) into
 * one-shot pn_io_poll() operations on ios marked PN_IO_NO_CLOSE (c-ares owns
 * and closes its sockets), and c-ares' next timeout (ares_timeout) into the
 * timer of one loop io. Nothing here blocks; everything runs on the loop's
 * thread, and a resolver is used from that thread only.
 *
 * A query sends the name as given (no search list, no /etc/hosts): pass a
 * fully qualified name, with or without the trailing dot.
 *
 * Callbacks: pn_dns_query() returning 0 means its callback is called exactly
 * once, later, from the loop - never from inside pn_dns_query(). The callback
 * may start new queries and may call pn_dns_free().
 *
 * Freeing: pn_dns_free() calls the callback of every query still pending
 * with PN_DNS_CANCELLED (and no results) before it returns, so that owners
 * can release per-query state; a query that completes after pn_dns_free()
 * was called from inside another callback gets PN_DNS_CANCELLED too.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct pn_loop;
struct pn_dns;

/* Record types, by their RFC 1035 / 3596 / 2782 type numbers. */
enum pn_dns_type {
	PN_DNS_A = 1,
	PN_DNS_MX = 15,
	PN_DNS_AAAA = 28,
	PN_DNS_SRV = 33,
};

/* Callback status: 0, or one of these. pn_dns_status_is_temporary() tells
 * a failure worth retrying later (an MTA's 4xx) from a permanent one (5xx). */
enum pn_dns_status {
	PN_DNS_OK = 0,
	PN_DNS_NXDOMAIN = -1,	/* permanent: the name does not exist */
	PN_DNS_NODATA = -2,	/* permanent: the name exists, without records
				 * of this type (for MX: use the A/AAAA of the
				 * domain, RFC 5321 section 5.1) */
	PN_DNS_BADNAME = -3,	/* permanent: not a name that can be queried */
	PN_DNS_TIMEOUT = -4,	/* temporary: no server answered in time */
	PN_DNS_SERVFAIL = -5,	/* temporary: server failure, refusal or
				 * unreachable server */
	PN_DNS_BADRESP = -6,	/* temporary: a malformed answer */
	PN_DNS_NOMEM = -7,	/* temporary: out of memory */
	PN_DNS_CANCELLED = -8,	/* the resolver was freed; neither */
};

#define PN_DNS_MAX_RESULTS 64	/* records beyond this are dropped */
#define PN_DNS_HOST_MAX 256	/* host buffer size, NUL included */

struct pn_dns_result {
	enum pn_dns_type type;
	uint32_t ttl;		/* seconds, from the answer record */
	/* A, AAAA: a sockaddr_in / sockaddr_in6 with port 0 */
	struct sockaddr_storage addr;
	/* MX: priority is the preference; SRV: priority, weight, port */
	uint16_t priority, weight, port;
	/* MX exchange, SRV target, without the trailing dot; "" for the
	 * root (a null MX, RFC 7505, or an SRV "service not available") */
	char host[PN_DNS_HOST_MAX];
};

/* results[0..count) in the order of the answer (sorting MX by preference or
 * SRV by priority and weight is the caller's business); valid only during
 * the call. count is 0 unless status is PN_DNS_OK, then it is at least 1. */
typedef void pn_dns_callback(void *ctx, int status,
			     const struct pn_dns_result *results, size_t count);

struct pn_dns_settings {
	/* "127.0.0.1:5353,[::1]:53,192.0.2.53" (port 53 when left out), or
	 * NULL for the nameservers of /etc/resolv.conf */
	const char *servers;
	unsigned int timeout_ms;	/* per try; 0 = c-ares default */
	unsigned int tries;		/* per server; 0 = c-ares default */
};

/* Creates a resolver on loop. Returns NULL and sets *error_r (a static
 * string) on failure: bad server list, c-ares or loop failure. */
struct pn_dns *pn_dns_new(struct pn_loop *loop, const char *servers,
			  const char **error_r);
struct pn_dns *pn_dns_new_with(struct pn_loop *loop,
			       const struct pn_dns_settings *set,
			       const char **error_r);
/* Cancels every pending query (callbacks get PN_DNS_CANCELLED, see above),
 * releases the sockets and the timer, sets *dns NULL. Must come before
 * pn_loop_free() of its loop. */
void pn_dns_free(struct pn_dns **dns);

/* Starts a query. Returns 0 (cb will be called once), or -1 with errno
 * EINVAL (empty or over-long name, a control character or space in it, an
 * unknown type, NULL cb) or ESHUTDOWN (the resolver is being freed); cb is
 * then never called. */
int pn_dns_query(struct pn_dns *dns, const char *name, enum pn_dns_type type,
		 pn_dns_callback *cb, void *ctx);

/* 1 for a failure worth retrying later, 0 otherwise (success included). */
int pn_dns_status_is_temporary(int status);
/* A short static description of a status. */
const char *pn_dns_strerror(int status);

#endif
