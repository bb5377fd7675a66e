/* Upstreams from DNS names (control thread): every "dns:NAME:PORT" (A and
 * AAAA) and "srv:NAME" (SRV, whose targets are then resolved by A and
 * AAAA) item of the upstream lists is an entry resolved with c-ares
 * (postern/dns.h) on the control loop, again after the answer's smallest
 * TTL clamped to [dns_min_interval, dns_interval].
 *
 * A resolution succeeds when every query of it answered (NODATA counts as
 * an answer without records) and it found at least one address. Anything
 * else - a timeout, SERVFAIL, NXDOMAIN, no address at all - is a failure
 * that keeps the entry's last good set (so a DNS outage never empties a
 * pool; health checks take dead addresses out), retried after
 * dns_min_interval. When a set changes, the topology is rebuilt from the
 * running configuration and applied the way SIGHUP applies it: new
 * servers are added, vanished ones retired without touching their
 * connections.
 *
 * Entries are matched by their text across reloads (keeping their sets);
 * one that is dropped while queries are in flight is freed by the last of
 * its callbacks.
 */
#include "lb.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "postern/dns.h"
#include "postern/log.h"

#define LB_DNS_MAX_ADDRS 256	/* addresses one entry keeps */
#define LB_DNS_TRIES 2

struct lb_dns_entry {
	struct lb_dns_entry *next;
	struct lb_resolver *r;
	char spec[LB_DNS_SPEC_MAX];
	struct lb_dns_spec parsed;
	/* The last good set (ports set); resolved once one was found. */
	struct sockaddr_storage *addrs;
	size_t naddrs;
	bool resolved;
	uint64_t next_ms;
	char last[96];			/* last result, for logs and /status */
	bool failing;			/* the last resolution failed (logged once) */
	/* The resolution in flight. */
	unsigned int pending;
	bool failed, cancelled, dead;
	struct sockaddr_storage *acc;
	size_t nacc;
	uint32_t min_ttl;
};

struct lb_resolver {
	struct lb *lb;
	struct pn_dns *dns;
	char *servers;			/* the list dns was made for */
	struct lb_dns_entry *entries;
};

/* One query: an entry, and for A/AAAA the port to put in the addresses. */
struct lb_dns_query {
	struct lb_dns_entry *e;
	uint16_t port;
};

static void entry_free(struct lb_dns_entry *e)
{
	free(e->addrs);
	free(e->acc);
	free(e);
}

static void entry_query(struct lb_dns_entry *e, const char *name, enum pn_dns_type type,
			uint16_t port);

static void add_addr(struct lb_dns_entry *e, const struct sockaddr_storage *ss, uint16_t port)
{
	struct sockaddr_storage a;

	if (e->nacc >= LB_DNS_MAX_ADDRS)
		return;
	/* Only the address proper is copied: the rest stays zero, so that
	 * sets compare byte for byte. */
	memset(&a, 0, sizeof(a));
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a;

		in->sin_family = AF_INET;
		in->sin_addr = ((const struct sockaddr_in *)ss)->sin_addr;
		in->sin_port = htons(port);
	} else if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = ((const struct sockaddr_in6 *)ss)->sin6_addr;
		in6->sin6_port = htons(port);
	} else {
		return;
	}
	e->acc[e->nacc++] = a;
}

static int ss_cmp(const void *x, const void *y)
{
	return memcmp(x, y, sizeof(struct sockaddr_storage));
}

/* The resolution ended (every query answered). */
static void entry_done(struct lb_dns_entry *e)
{
	struct lb *lb = e->r->lb;
	uint64_t now = pn_loop_now_ms(lb->loop), wait;
	size_t m = 0;

	if (e->dead) {
		entry_free(e);
		return;
	}
	if (e->cancelled) {
		/* The resolver was replaced: ask the new one at once. */
		e->next_ms = now;
		return;
	}
	if (e->failed || e->nacc == 0) {
		if (e->nacc == 0 && !e->failed)
			snprintf(e->last, sizeof(e->last), "no addresses");
		if (!e->failing)
			pn_warn("event=dns_failed entry=%s error=\"%s\" kept=%zu "
				"note=\"retried every dns_min_interval, logged once\"", e->spec,
				e->last, e->naddrs);
		e->failing = true;
		e->next_ms = now + lb->cfg.dns_min_interval_ms;
		return;
	}
	/* Sorted and without duplicates, so that sets compare simply. */
	qsort(e->acc, e->nacc, sizeof(*e->acc), ss_cmp);
	for (size_t i = 0; i < e->nacc; i++)
		if (m == 0 || ss_cmp(&e->acc[m - 1], &e->acc[i]) != 0)
			e->acc[m++] = e->acc[i];
	wait = (uint64_t)e->min_ttl * 1000;
	if (wait > lb->cfg.dns_interval_ms)
		wait = lb->cfg.dns_interval_ms;
	if (wait < lb->cfg.dns_min_interval_ms)
		wait = lb->cfg.dns_min_interval_ms;
	e->next_ms = now + wait;
	snprintf(e->last, sizeof(e->last), "ok: %zu addresses, ttl %u s", m, e->min_ttl);
	if (e->failing)
		pn_info("event=dns_recovered entry=%s addresses=%zu", e->spec, m);
	e->failing = false;
	if (e->resolved && m == e->naddrs && memcmp(e->acc, e->addrs, m * sizeof(*e->acc)) == 0)
		return;
	{
		struct sockaddr_storage *tmp = e->addrs;

		e->addrs = e->acc;
		e->naddrs = m;
		e->acc = tmp;
		e->nacc = 0;
	}
	e->resolved = true;
	pn_info("event=dns_changed entry=%s addresses=%zu next_s=%llu", e->spec, m,
		(unsigned long long)(wait / 1000));
	lb_topology_refresh(lb, "dns");
}

static void on_answer(void *ctx, int status, const struct pn_dns_result *res, size_t count)
{
	struct lb_dns_query *q = ctx;
	struct lb_dns_entry *e = q->e;
	uint16_t port = q->port;

	free(q);
	if (status == PN_DNS_CANCELLED) {
		e->cancelled = true;
	} else if (status == PN_DNS_NODATA) {
		/* The name exists without records of this type: an answer. */
	} else if (status != PN_DNS_OK) {
		e->failed = true;
		snprintf(e->last, sizeof(e->last), "%s", pn_dns_strerror(status));
	} else if (!e->dead && !e->cancelled) {
		for (size_t i = 0; i < count; i++) {
			if (res[i].ttl < e->min_ttl)
				e->min_ttl = res[i].ttl;
			if (res[i].type == PN_DNS_SRV) {
				/* RFC 2782: target "." means the service is not
				 * offered; port 0 is no port. */
				if (res[i].host[0] == '\0' || res[i].port == 0)
					continue;
				entry_query(e, res[i].host, PN_DNS_A, res[i].port);
				entry_query(e, res[i].host, PN_DNS_AAAA, res[i].port);
			} else if (res[i].type == PN_DNS_A || res[i].type == PN_DNS_AAAA) {
				add_addr(e, &res[i].addr, port);
			}
		}
	}
	if (--e->pending == 0)
		entry_done(e);
}

static void entry_query(struct lb_dns_entry *e, const char *name, enum pn_dns_type type,
			uint16_t port)
{
	struct lb_dns_query *q;

	if (e->failed || e->r->dns == NULL)
		return;
	q = malloc(sizeof(*q));
	if (q == NULL) {
		e->failed = true;
		snprintf(e->last, sizeof(e->last), "out of memory");
		return;
	}
	q->e = e;
	q->port = port;
	e->pending++;
	if (pn_dns_query(e->r->dns, name, type, on_answer, q) < 0) {
		e->pending--;
		e->failed = true;
		snprintf(e->last, sizeof(e->last), "cannot query %.60s", name);
		free(q);
	}
}

static void entry_start(struct lb_dns_entry *e)
{
	if (e->acc == NULL) {
		e->acc = calloc(LB_DNS_MAX_ADDRS, sizeof(*e->acc));
		if (e->acc == NULL)
			return;
	}
	memset(e->acc, 0, LB_DNS_MAX_ADDRS * sizeof(*e->acc));
	e->nacc = 0;
	e->failed = e->cancelled = false;
	e->min_ttl = UINT32_MAX;
	/* A guard, so that answers arriving while queries are still being
	 * started cannot end the resolution early. */
	e->pending++;
	if (e->parsed.kind == LB_DNS_SRV) {
		entry_query(e, e->parsed.name, PN_DNS_SRV, 0);
	} else {
		entry_query(e, e->parsed.name, PN_DNS_A, e->parsed.port);
		entry_query(e, e->parsed.name, PN_DNS_AAAA, e->parsed.port);
	}
	if (--e->pending == 0)
		entry_done(e);
}

static struct lb_dns_entry *entry_find(struct lb_resolver *r, const char *spec)
{
	for (struct lb_dns_entry *e = r->entries; e != NULL; e = e->next)
		if (strcmp(e->spec, spec) == 0)
			return e;
	return NULL;
}

/* Calls fn for every DNS item of cfg. */
static int each_spec(const struct lb_config *cfg,
		     int (*fn)(void *ctx, const char *spec, const struct lb_dns_spec *parsed),
		     void *ctx)
{
	for (int p = 0; p <= LB_PROTO_COUNT; p++) {
		const struct pn_config_list *l = p == LB_PROTO_COUNT ? &cfg->upstream_admin
								      : &cfg->upstreams[p];

		for (size_t i = 0; i < l->count; i++) {
			struct lb_dns_spec spec;

			if (lb_dns_spec_parse(l->items[i], &spec) == 1 &&
			    strlen(l->items[i]) < LB_DNS_SPEC_MAX && fn(ctx, l->items[i], &spec) < 0)
				return -1;
		}
	}
	return 0;
}

static int add_entry(void *ctx, const char *spec, const struct lb_dns_spec *parsed)
{
	struct lb_resolver *r = ctx;
	struct lb_dns_entry *e;

	if (entry_find(r, spec) != NULL)
		return 0;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -1;
	e->r = r;
	snprintf(e->spec, sizeof(e->spec), "%s", spec);
	e->parsed = *parsed;
	snprintf(e->last, sizeof(e->last), "not resolved yet");
	e->next = r->entries;
	r->entries = e;
	return 0;
}

static int count_spec(void *ctx, const char *spec, const struct lb_dns_spec *parsed)
{
	(void)spec;
	(void)parsed;
	(*(size_t *)ctx)++;
	return 0;
}

static void resolver_drop_dns(struct lb_resolver *r)
{
	/* Pending callbacks run now, with PN_DNS_CANCELLED. */
	if (r->dns != NULL)
		pn_dns_free(&r->dns);
}

int lb_dns_sync(struct lb *lb, const struct lb_config *cfg, const char **error_r)
{
	struct lb_resolver *r = lb->resolver;
	struct pn_dns_settings set;
	size_t n = 0;

	each_spec(cfg, count_spec, &n);
	if (n == 0 && r == NULL)
		return 0;
	if (r == NULL) {
		r = calloc(1, sizeof(*r));
		if (r == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		r->lb = lb;
		lb->resolver = r;
	}
	if (r->dns == NULL || r->servers == NULL || strcmp(r->servers, cfg->dns_servers) != 0) {
		struct pn_dns *dns;
		char *copy = strdup(cfg->dns_servers);

		memset(&set, 0, sizeof(set));
		set.servers = cfg->dns_servers[0] != '\0' ? cfg->dns_servers : NULL;
		set.timeout_ms = (unsigned int)cfg->dns_timeout_ms;
		set.tries = LB_DNS_TRIES;
		dns = copy != NULL ? pn_dns_new_with(lb->loop, &set, error_r) : NULL;
		if (dns == NULL) {
			if (copy == NULL)
				*error_r = "out of memory";
			free(copy);
			return -1;
		}
		resolver_drop_dns(r);
		r->dns = dns;
		free(r->servers);
		r->servers = copy;
	}
	if (each_spec(cfg, add_entry, r) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

static int mark_used(void *ctx, const char *spec, const struct lb_dns_spec *parsed)
{
	struct lb_dns_entry *e = entry_find(ctx, spec);

	(void)parsed;
	if (e != NULL)
		e->dead = false;
	return 0;
}

void lb_dns_prune(struct lb *lb)
{
	struct lb_resolver *r = lb->resolver;
	struct lb_dns_entry **ep;

	if (r == NULL)
		return;
	for (struct lb_dns_entry *e = r->entries; e != NULL; e = e->next)
		e->dead = true;
	each_spec(&lb->cfg, mark_used, r);
	ep = &r->entries;
	while (*ep != NULL) {
		struct lb_dns_entry *e = *ep;

		if (!e->dead) {
			ep = &e->next;
			continue;
		}
		*ep = e->next;
		pn_info("event=dns_entry_removed entry=%s", e->spec);
		if (e->pending == 0)
			entry_free(e);
		/* else the last callback frees it (entry_done). */
	}
}

void lb_dns_tick(struct lb *lb, uint64_t now)
{
	struct lb_resolver *r = lb->resolver;

	if (r == NULL || r->dns == NULL)
		return;
	for (struct lb_dns_entry *e = r->entries; e != NULL; e = e->next)
		if (e->pending == 0 && now >= e->next_ms)
			entry_start(e);
}

static const struct sockaddr_storage *view_lookup(void *ctx, const char *spec, size_t *n_r)
{
	struct lb_dns_entry *e = lb_dns_entry_lookup(ctx, spec);

	*n_r = e != NULL && e->resolved ? e->naddrs : 0;
	return *n_r > 0 ? e->addrs : NULL;
}

struct lb_dns_entry *lb_dns_entry_lookup(struct lb *lb, const char *spec)
{
	return lb->resolver != NULL ? entry_find(lb->resolver, spec) : NULL;
}

void lb_dns_view(struct lb *lb, struct lb_dns_view *v)
{
	v->lookup = view_lookup;
	v->ctx = lb;
}

size_t lb_dns_entries(struct lb *lb, const struct lb_dns_entry **list, size_t max)
{
	size_t n = 0;

	if (lb->resolver == NULL)
		return 0;
	for (const struct lb_dns_entry *e = lb->resolver->entries; e != NULL && n < max;
	     e = e->next)
		list[n++] = e;
	return n;
}

void lb_dns_entry_info(const struct lb_dns_entry *e, const char **spec_r, size_t *naddrs_r,
		       const char **last_r)
{
	*spec_r = e->spec;
	*naddrs_r = e->naddrs;
	*last_r = e->last;
}

void lb_dns_free(struct lb *lb)
{
	struct lb_resolver *r = lb->resolver;

	if (r == NULL)
		return;
	for (struct lb_dns_entry *e = r->entries; e != NULL; e = e->next)
		e->dead = true;
	/* Entries with queries in flight are freed by their callbacks. */
	{
		struct lb_dns_entry *e = r->entries;

		r->entries = NULL;
		while (e != NULL) {
			struct lb_dns_entry *next = e->next;

			if (e->pending == 0)
				entry_free(e);
			e = next;
		}
	}
	resolver_drop_dns(r);
	free(r->servers);
	free(r);
	lb->resolver = NULL;
}
