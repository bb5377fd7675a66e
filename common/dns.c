/* The c-ares adapter (see postern/dns.h): c-ares' socket interest becomes
 * one-shot polls on PN_IO_NO_CLOSE ios, its next timeout the timer of one
 * loop io, and each answer is parsed into pn_dns_result records. Completions
 * that c-ares reports from inside ares_query() are parked on a list and
 * delivered from the timer (set to 0 ms) so that no callback ever runs inside
 * pn_dns_query(). pn_dns_free() from inside a callback is deferred until
 * c-ares returns to us (`depth`), and everything completing meanwhile is
 * reported as cancelled.
 */
#include "postern/dns.h"
#include "postern/loop.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 253

struct dns_sock {
	struct pn_dns *dns;
	struct dns_sock *next;
	int fd;
	pn_io_id io;
	unsigned int events;	/* what c-ares wants: POLLIN | POLLOUT */
	bool polling;		/* a poll is pending on the loop */
	bool active;		/* c-ares still uses the fd */
};

struct dns_query {
	struct pn_dns *dns;
	struct dns_query *next;	/* on the deferred list */
	enum pn_dns_type type;
	pn_dns_callback *cb;
	void *ctx;
	int status;		/* deferred: c-ares status */
	unsigned char *abuf;	/* deferred: a copy of the answer */
	int alen;
};

struct pn_dns {
	struct pn_loop *loop;
	ares_channel channel;
	bool channel_ok, lib_ok;
	pn_io_id timer;
	struct dns_sock *socks;		/* active ones and closing ones */
	struct dns_query *deferred_head, *deferred_tail;
	int depth;			/* our c-ares calls on the stack */
	bool in_query;			/* inside ares_query() */
	bool dead;			/* pn_dns_free() was called */
	struct pn_dns_result *results;	/* PN_DNS_MAX_RESULTS, reused */
};

static void destroy(struct pn_dns *dns);

/* ---- parsing ---- */

static int map_status(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
		return PN_DNS_OK;
	case ARES_ENOTFOUND:
		return PN_DNS_NXDOMAIN;
	case ARES_ENODATA:
		return PN_DNS_NODATA;
	case ARES_EBADNAME:
		return PN_DNS_BADNAME;
	case ARES_ETIMEOUT:
		return PN_DNS_TIMEOUT;
	case ARES_EBADRESP:
	case ARES_EFORMERR:
		return PN_DNS_BADRESP;
	case ARES_ENOMEM:
		return PN_DNS_NOMEM;
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION:
		return PN_DNS_CANCELLED;
	default: /* ESERVFAIL, EREFUSED, ENOTIMP, ECONNREFUSED, ... */
		return PN_DNS_SERVFAIL;
	}
}

/* Skips an encoded name at *off (RFC 1035 section 4.1.4: labels, ending in
 * a zero byte or a 2-byte pointer). Returns 0, or -1 if it runs off. */
static int skip_name(const unsigned char *p, int len, int *off)
{
	int o = *off;

	for (;;) {
		if (o >= len)
			return -1;
		if ((p[o] & 0xc0) == 0xc0) {
			if (o + 2 > len)
				return -1;
			*off = o + 2;
			return 0;
		}
		if (p[o] & 0xc0)
			return -1; /* the 01 and 10 label types are not in use */
		if (p[o] == 0) {
			*off = o + 1;
			return 0;
		}
		o += 1 + p[o];
	}
}

/* The TTLs of the answer records of type, in order (RFC 1035 section 4.1.3;
 * RFC 2181 section 8: a TTL with the top bit set counts as 0). Returns how
 * many were found, at most max. */
static size_t answer_ttls(const unsigned char *p, int len, int type,
			  uint32_t *ttls, size_t max)
{
	int off = 12, qd, an;
	size_t n = 0;

	if (len < 12)
		return 0;
	qd = p[4] << 8 | p[5];
	an = p[6] << 8 | p[7];
	for (int i = 0; i < qd; i++) {
		if (skip_name(p, len, &off) < 0 || off + 4 > len)
			return 0;
		off += 4;
	}
	for (int i = 0; i < an && n < max; i++) {
		int rtype, rdlen;
		uint32_t ttl;

		if (skip_name(p, len, &off) < 0 || off + 10 > len)
			break;
		rtype = p[off] << 8 | p[off + 1];
		ttl = (uint32_t)p[off + 4] << 24 | (uint32_t)p[off + 5] << 16 |
		      (uint32_t)p[off + 6] << 8 | p[off + 7];
		rdlen = p[off + 8] << 8 | p[off + 9];
		off += 10 + rdlen;
		if (off > len)
			break;
		if (rtype == type)
			ttls[n++] = ttl & 0x80000000u ? 0 : ttl;
	}
	return n;
}

/* Copies a host name without its trailing dot; -1 if it does not fit. */
static int copy_host(char *dst, const char *src)
{
	size_t len = strlen(src);

	if (len > 0 && src[len - 1] == '.')
		len--;
	if (len >= PN_DNS_HOST_MAX)
		return -1;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

static int parse_a(const unsigned char *abuf, int alen, struct pn_dns_result *r,
		   size_t *count_r)
{
	struct ares_addrttl at[PN_DNS_MAX_RESULTS];
	int n = PN_DNS_MAX_RESULTS;
	int st = ares_parse_a_reply(abuf, alen, NULL, at, &n);

	if (st != ARES_SUCCESS)
		return map_status(st);
	for (int i = 0; i < n; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&r[i].addr;

		sin->sin_family = AF_INET;
		sin->sin_addr = at[i].ipaddr;
		r[i].ttl = at[i].ttl > 0 ? (uint32_t)at[i].ttl : 0;
	}
	*count_r = (size_t)n;
	return n > 0 ? PN_DNS_OK : PN_DNS_NODATA;
}

static int parse_aaaa(const unsigned char *abuf, int alen, struct pn_dns_result *r,
		      size_t *count_r)
{
	struct ares_addr6ttl at[PN_DNS_MAX_RESULTS];
	int n = PN_DNS_MAX_RESULTS;
	int st = ares_parse_aaaa_reply(abuf, alen, NULL, at, &n);

	if (st != ARES_SUCCESS)
		return map_status(st);
	for (int i = 0; i < n; i++) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r[i].addr;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, &at[i].ip6addr, sizeof(sin6->sin6_addr));
		r[i].ttl = at[i].ttl > 0 ? (uint32_t)at[i].ttl : 0;
	}
	*count_r = (size_t)n;
	return n > 0 ? PN_DNS_OK : PN_DNS_NODATA;
}

static int parse_mx(const unsigned char *abuf, int alen, struct pn_dns_result *r,
		    size_t *count_r)
{
	struct ares_mx_reply *mx = NULL;
	uint32_t ttls[PN_DNS_MAX_RESULTS];
	size_t nttl, n = 0;
	int st = ares_parse_mx_reply(abuf, alen, &mx);

	if (st != ARES_SUCCESS)
		return map_status(st);
	nttl = answer_ttls(abuf, alen, PN_DNS_MX, ttls, PN_DNS_MAX_RESULTS);
	for (struct ares_mx_reply *m = mx; m != NULL && n < PN_DNS_MAX_RESULTS;
	     m = m->next) {
		if (copy_host(r[n].host, m->host) < 0)
			continue;
		r[n].priority = m->priority;
		r[n].ttl = n < nttl ? ttls[n] : 0;
		n++;
	}
	ares_free_data(mx);
	*count_r = n;
	return n > 0 ? PN_DNS_OK : PN_DNS_NODATA;
}

static int parse_srv(const unsigned char *abuf, int alen, struct pn_dns_result *r,
		     size_t *count_r)
{
	struct ares_srv_reply *srv = NULL;
	uint32_t ttls[PN_DNS_MAX_RESULTS];
	size_t nttl, n = 0;
	int st = ares_parse_srv_reply(abuf, alen, &srv);

	if (st != ARES_SUCCESS)
		return map_status(st);
	nttl = answer_ttls(abuf, alen, PN_DNS_SRV, ttls, PN_DNS_MAX_RESULTS);
	for (struct ares_srv_reply *s = srv; s != NULL && n < PN_DNS_MAX_RESULTS;
	     s = s->next) {
		if (copy_host(r[n].host, s->host) < 0)
			continue;
		r[n].priority = s->priority;
		r[n].weight = s->weight;
		r[n].port = s->port;
		r[n].ttl = n < nttl ? ttls[n] : 0;
		n++;
	}
	ares_free_data(srv);
	*count_r = n;
	return n > 0 ? PN_DNS_OK : PN_DNS_NODATA;
}

/* ---- completions ---- */

static void deliver(struct pn_dns *dns, struct dns_query *q, int ares_status,
		    const unsigned char *abuf, int alen)
{
	struct pn_dns_result *r = dns->results;
	size_t count = 0;
	int status = map_status(ares_status);

	if (dns->dead) {
		status = PN_DNS_CANCELLED;
	} else if (status == PN_DNS_OK) {
		if (abuf == NULL || alen <= 0) {
			status = PN_DNS_BADRESP;
		} else {
			memset(r, 0, sizeof(*r) * PN_DNS_MAX_RESULTS);
			switch (q->type) {
			case PN_DNS_A:
				status = parse_a(abuf, alen, r, &count);
				break;
			case PN_DNS_AAAA:
				status = parse_aaaa(abuf, alen, r, &count);
				break;
			case PN_DNS_MX:
				status = parse_mx(abuf, alen, r, &count);
				break;
			case PN_DNS_SRV:
				status = parse_srv(abuf, alen, r, &count);
				break;
			}
			for (size_t i = 0; i < count; i++)
				r[i].type = q->type;
		}
	}
	if (status != PN_DNS_OK)
		count = 0;
	q->cb(q->ctx, status, count > 0 ? r : NULL, count);
	free(q->abuf);
	free(q);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
		      int alen)
{
	struct dns_query *q = arg;
	struct pn_dns *dns = q->dns;

	if (!dns->in_query) {
		deliver(dns, q, status, abuf, alen);
		return;
	}
	/* From inside ares_query(): park it, the timer delivers it. */
	q->status = status;
	q->next = NULL;
	if (abuf != NULL && alen > 0) {
		q->abuf = malloc((size_t)alen);
		if (q->abuf != NULL) {
			memcpy(q->abuf, abuf, (size_t)alen);
			q->alen = alen;
		} else {
			q->status = ARES_ENOMEM;
		}
	}
	if (dns->deferred_tail != NULL)
		dns->deferred_tail->next = q;
	else
		dns->deferred_head = q;
	dns->deferred_tail = q;
}

static void run_deferred(struct pn_dns *dns)
{
	while (dns->deferred_head != NULL) {
		struct dns_query *q = dns->deferred_head;

		dns->deferred_head = q->next;
		if (dns->deferred_head == NULL)
			dns->deferred_tail = NULL;
		deliver(dns, q, q->status, q->abuf, q->alen);
	}
}

/* ---- loop glue ---- */

static void update_timer(struct pn_dns *dns)
{
	struct timeval tv, *tvp;
	uint64_t ms;

	if (dns->deferred_head != NULL) {
		pn_io_timer_set(dns->loop, dns->timer, 0);
		return;
	}
	tvp = ares_timeout(dns->channel, NULL, &tv);
	if (tvp == NULL) {
		pn_io_timer_cancel(dns->loop, dns->timer);
		return;
	}
	ms = (uint64_t)tvp->tv_sec * 1000u + ((uint64_t)tvp->tv_usec + 999u) / 1000u;
	pn_io_timer_set(dns->loop, dns->timer, ms);
}

/* After our call into c-ares returned: finish a deferred free, or follow
 * c-ares' next timeout. */
static void after_ares(struct pn_dns *dns)
{
	if (dns->depth > 0)
		return;
	if (dns->dead)
		destroy(dns);
	else
		update_timer(dns);
}

static void sock_poll(struct dns_sock *s)
{
	if (pn_io_poll(s->dns->loop, s->io, s->events) == 0)
		s->polling = true;
	/* else: no SQE; c-ares' timeout still ends the query */
}

static void sock_on_poll(void *ctx, int revents)
{
	struct dns_sock *s = ctx;
	struct pn_dns *dns;
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	if (s == NULL)
		return;
	dns = s->dns;
	s->polling = false;
	if (!s->active || dns->dead)
		return;
	if (revents < 0 || (revents & (POLLIN | POLLERR | POLLHUP)))
		rfd = s->fd; /* c-ares reads the error */
	if (revents > 0 && (revents & POLLOUT))
		wfd = s->fd;
	dns->depth++;
	ares_process_fd(dns->channel, rfd, wfd);
	dns->depth--;
	/* c-ares may have closed it (sock_state_cb with 0, 0) or already
	 * asked for a poll with new interest. */
	if (s->active && !s->polling && !dns->dead)
		sock_poll(s);
	after_ares(dns);
}

static void sock_on_close(void *ctx)
{
	struct dns_sock *s = ctx;
	struct dns_sock **pp;

	if (s == NULL)
		return; /* the resolver is gone and freed it */
	for (pp = &s->dns->socks; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	free(s);
}

static const struct pn_io_handlers sock_handlers = {
	.on_poll = sock_on_poll,
	.on_close = sock_on_close,
};

/* c-ares: fd is to be watched for reading/writing, or (0, 0) forgotten. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct pn_dns *dns = data;
	struct dns_sock *s;
	unsigned int events = (readable ? POLLIN : 0u) | (writable ? POLLOUT : 0u);

	for (s = dns->socks; s != NULL; s = s->next)
		if (s->active && s->fd == fd)
			break;
	if (events == 0) {
		if (s != NULL) {
			/* c-ares closes fd right after we return: pn_io_close()
			 * hands the poll's cancel to the kernel first. */
			s->active = false;
			s->polling = false;
			pn_io_close(dns->loop, s->io);
		}
		return;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return; /* c-ares' timeout ends its queries */
		s->dns = dns;
		s->fd = fd;
		s->io = pn_io_add(dns->loop, fd, PN_IO_NO_CLOSE, &sock_handlers, s);
		if (s->io == PN_IO_NONE) {
			free(s);
			return;
		}
		s->active = true;
		s->next = dns->socks;
		dns->socks = s;
	}
	if (s->polling && s->events == events)
		return;
	if (s->polling) {
		pn_io_poll_cancel(dns->loop, s->io);
		s->polling = false;
	}
	s->events = events;
	sock_poll(s);
}

static void timer_on_timer(void *ctx)
{
	struct pn_dns *dns = ctx;

	if (dns == NULL)
		return;
	dns->depth++;
	run_deferred(dns);
	if (!dns->dead)
		ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns->depth--;
	after_ares(dns);
}

static const struct pn_io_handlers timer_handlers = { .on_timer = timer_on_timer };

/* ---- API ---- */

struct pn_dns *pn_dns_new(struct pn_loop *loop, const char *servers,
			  const char **error_r)
{
	struct pn_dns_settings set = { servers, 0, 0 };

	return pn_dns_new_with(loop, &set, error_r);
}

struct pn_dns *pn_dns_new_with(struct pn_loop *loop,
			       const struct pn_dns_settings *set,
			       const char **error_r)
{
	struct ares_options opts;
	struct pn_dns *dns;
	int mask = ARES_OPT_SOCK_STATE_CB;

	if (set->timeout_ms > 3600u * 1000u || set->tries > 100) {
		*error_r = "DNS timeout or tries out of range";
		return NULL;
	}
	dns = calloc(1, sizeof(*dns));
	if (dns == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	dns->loop = loop;
	dns->results = calloc(PN_DNS_MAX_RESULTS, sizeof(*dns->results));
	if (dns->results == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
		*error_r = "ares_library_init failed";
		goto fail;
	}
	dns->lib_ok = true;
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = sock_state_cb;
	opts.sock_state_cb_data = dns;
	if (set->timeout_ms > 0) {
		opts.timeout = (int)set->timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (set->tries > 0) {
		opts.tries = (int)set->tries;
		mask |= ARES_OPT_TRIES;
	}
	if (ares_init_options(&dns->channel, &opts, mask) != ARES_SUCCESS) {
		*error_r = "ares_init_options failed";
		goto fail;
	}
	dns->channel_ok = true;
	if (set->servers != NULL &&
	    ares_set_servers_ports_csv(dns->channel, set->servers) != ARES_SUCCESS) {
		*error_r = "bad DNS server list (want \"ip[:port],[ipv6]:port,...\")";
		goto fail;
	}
	dns->timer = pn_io_add(loop, -1, 0, &timer_handlers, dns);
	if (dns->timer == PN_IO_NONE) {
		*error_r = "no loop slot for the DNS timer";
		goto fail;
	}
	return dns;
fail:
	destroy(dns);
	return NULL;
}

static void destroy(struct pn_dns *dns)
{
	struct dns_sock *s, *next;

	dns->dead = true;
	dns->depth++; /* no nested destroy from callbacks */
	run_deferred(dns); /* PN_DNS_CANCELLED */
	if (dns->channel_ok)
		ares_destroy(dns->channel); /* callbacks: PN_DNS_CANCELLED */
	run_deferred(dns);
	for (s = dns->socks; s != NULL; s = next) {
		next = s->next;
		if (s->active)
			pn_io_close(dns->loop, s->io);
		pn_io_set_ctx(dns->loop, s->io, NULL);
		free(s);
	}
	if (dns->timer != PN_IO_NONE) {
		pn_io_close(dns->loop, dns->timer);
		pn_io_set_ctx(dns->loop, dns->timer, NULL);
	}
	if (dns->lib_ok)
		ares_library_cleanup();
	free(dns->results);
	free(dns);
}

void pn_dns_free(struct pn_dns **dnsp)
{
	struct pn_dns *dns = *dnsp;

	if (dns == NULL)
		return;
	*dnsp = NULL;
	if (dns->dead)
		return;
	dns->dead = true;
	if (dns->depth == 0)
		destroy(dns);
	/* else: inside one of our calls into c-ares; after_ares() finishes */
}

static bool name_ok(const char *name)
{
	size_t len;

	if (name == NULL)
		return false;
	len = strlen(name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

int pn_dns_query(struct pn_dns *dns, const char *name, enum pn_dns_type type,
		 pn_dns_callback *cb, void *ctx)
{
	struct dns_query *q;

	if (dns->dead) {
		errno = ESHUTDOWN;
		return -1;
	}
	if (cb == NULL || !name_ok(name) ||
	    (type != PN_DNS_A && type != PN_DNS_AAAA && type != PN_DNS_MX &&
	     type != PN_DNS_SRV)) {
		errno = EINVAL;
		return -1;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		errno = ENOMEM;
		return -1;
	}
	q->dns = dns;
	q->type = type;
	q->cb = cb;
	q->ctx = ctx;
	dns->in_query = true;
	dns->depth++;
	ares_query(dns->channel, name, 1 /* class IN */, (int)type, on_answer, q);
	dns->depth--;
	dns->in_query = false;
	after_ares(dns);
	return 0;
}

int pn_dns_status_is_temporary(int status)
{
	switch (status) {
	case PN_DNS_TIMEOUT:
	case PN_DNS_SERVFAIL:
	case PN_DNS_BADRESP:
	case PN_DNS_NOMEM:
		return 1;
	default:
		return 0;
	}
}

const char *pn_dns_strerror(int status)
{
	switch (status) {
	case PN_DNS_OK:
		return "ok";
	case PN_DNS_NXDOMAIN:
		return "no such domain";
	case PN_DNS_NODATA:
		return "no records of that type";
	case PN_DNS_BADNAME:
		return "bad name";
	case PN_DNS_TIMEOUT:
		return "timed out";
	case PN_DNS_SERVFAIL:
		return "server failure";
	case PN_DNS_BADRESP:
		return "malformed answer";
	case PN_DNS_NOMEM:
		return "out of memory";
	case PN_DNS_CANCELLED:
		return "cancelled";
	default:
		return "unknown DNS status";
	}
}
