/* The balancer's protocol table, its settings table (every key with type,
 * default and one line of help, from which the parser, the POSTERN_<KEY>
 * environment overrides and --help-config all come) and the topology
 * builder that pairs the positional upstream lists into servers. See
 * lb-config.h.
 */
#include "lb-config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb-algo.h"
#include "postern/cidr.h"
#include "postern/loop.h"

/* RFC 5530 section 3 (UNAVAILABLE), RFC 3206 section 4 (SYS/TEMP), RFC
 * 5321 section 3.8 and RFC 3463 (421 4.3.2 system not accepting network
 * messages; 4.7.0 for a policy refusal). */
#define IMAP_UNAVAIL "* BYE [UNAVAILABLE] Service temporarily unavailable, try again later\r\n"
#define IMAP_LIMIT "* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
#define POP3_UNAVAIL "-ERR [SYS/TEMP] Service temporarily unavailable, try again later\r\n"
#define POP3_LIMIT "-ERR [SYS/TEMP] Too many connections, try again later\r\n"
#define SMTP_UNAVAIL "421 4.3.2 Service not available, closing transmission channel\r\n"
#define SMTP_LIMIT "421 4.7.0 Too many connections, try again later\r\n"

#define IMAP_TIMEOUT "* BYE Login timeout.\r\n"
#define POP3_TIMEOUT "-ERR Login timeout.\r\n"
#define SMTP_TIMEOUT "421 4.4.2 Login timeout, closing connection\r\n"

const struct lb_proto_info lb_protos[LB_PROTO_COUNT] = {
	[LB_PROTO_IMAP] = { "imap", LB_FAMILY_IMAP, false, IMAP_UNAVAIL, IMAP_LIMIT,
			    "* OK", "a LOGOUT\r\n", IMAP_TIMEOUT, true },
	[LB_PROTO_IMAPS] = { "imaps", LB_FAMILY_IMAP, true, IMAP_UNAVAIL, IMAP_LIMIT,
			     "* OK", "a LOGOUT\r\n", IMAP_TIMEOUT, true },
	[LB_PROTO_POP3] = { "pop3", LB_FAMILY_POP3, false, POP3_UNAVAIL, POP3_LIMIT,
			    "+OK", "QUIT\r\n", POP3_TIMEOUT, true },
	[LB_PROTO_POP3S] = { "pop3s", LB_FAMILY_POP3, true, POP3_UNAVAIL, POP3_LIMIT,
			     "+OK", "QUIT\r\n", POP3_TIMEOUT, true },
	[LB_PROTO_SMTP] = { "smtp", LB_FAMILY_SMTP, false, SMTP_UNAVAIL, SMTP_LIMIT,
			    "220", "QUIT\r\n", SMTP_TIMEOUT, false },
	[LB_PROTO_SUBMISSION] = { "submission", LB_FAMILY_SMTP, false, SMTP_UNAVAIL,
				  SMTP_LIMIT, "220", "QUIT\r\n", SMTP_TIMEOUT, true },
	[LB_PROTO_SUBMISSIONS] = { "submissions", LB_FAMILY_SMTP, true, SMTP_UNAVAIL,
				   SMTP_LIMIT, "220", "QUIT\r\n", SMTP_TIMEOUT, true },
	[LB_PROTO_LMTP] = { "lmtp", LB_FAMILY_SMTP, false, SMTP_UNAVAIL, SMTP_LIMIT,
			    "220", "QUIT\r\n", SMTP_TIMEOUT, false },
};

int lb_proto_by_name(const char *name)
{
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		if (strcmp(lb_protos[p].name, name) == 0)
			return p;
	return -1;
}

static int check_sni(const void *value, const char **error_r)
{
	const struct pn_config_list *l = value;

	for (size_t i = 0; i < l->count; i++) {
		const char *eq = strchr(l->items[i], '=');

		if (eq == NULL || eq == l->items[i] || eq[1] == '\0') {
			*error_r = "expected name=file.pem items";
			return -1;
		}
	}
	return 0;
}

static int check_l7(const void *value, const char **error_r)
{
	const struct pn_config_list *l = value;

	for (size_t i = 0; i < l->count; i++) {
		int p = lb_proto_by_name(l->items[i]);

		if (p < 0 || !lb_protos[p].has_login) {
			*error_r = "expected protocols with a login: imap, imaps, pop3, pop3s, "
				   "submission, submissions";
			return -1;
		}
	}
	return 0;
}

static int check_hostport_or_empty(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	struct sockaddr_storage ss;
	socklen_t len;

	if (s[0] == '\0' || pn_parse_hostport(s, &ss, &len) == 0)
		return 0;
	*error_r = "expected a numeric host:port, [v6]:port or :port (or empty for off)";
	return -1;
}

static int check_hostport(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	struct sockaddr_storage ss;
	socklen_t len;

	if (pn_parse_hostport(s, &ss, &len) == 0)
		return 0;
	*error_r = "expected a numeric host:port, [v6]:port or :port";
	return -1;
}

static int check_cidr_list(const void *value, const char **error_r)
{
	struct pn_cidr_list l;

	if (pn_cidr_list_parse(*(char *const *)value, &l, error_r) < 0)
		return -1;
	pn_cidr_list_free(&l);
	return 0;
}

#define LISTEN_DEF(p, P)                                                      \
	{ p "_listen", PN_CFG_STRING, "", offsetof(struct lb_config, listen[P]), \
	  check_hostport_or_empty,                                            \
	  "Address the " p " listener binds to; empty turns it off." },       \
	{ p "_upstreams", PN_CFG_LIST, "",                                     \
	  offsetof(struct lb_config, upstreams[P]), NULL,                     \
	  "The frontends' " p " addresses, one per server in server order "  \
	  "(\"-\": that server has none; dns:NAME:PORT or srv:NAME: every "   \
	  "address the name resolves to)." },                                \
	{ p "_proxy_accept_from", PN_CFG_STRING, "",                          \
	  offsetof(struct lb_config, proxy_accept_from[P]), check_cidr_list,  \
	  "Networks (CIDR list) whose connections to the " p " listener must " \
	  "start with a PROXY v1/v2 header (a proxy in front of the balancer); " \
	  "from other peers a PROXY header is refused. Empty: never accepted." }

const struct pn_config_def lb_config_defs[] = {
	{ "node", PN_CFG_STRING, "balancer", offsetof(struct lb_config, node), NULL,
	  "Node name shown in logs." },
	{ "log_level", PN_CFG_ENUM("debug", "info", "warn", "error"), "info",
	  offsetof(struct lb_config, log_level), NULL, "Lowest level logged." },
	{ "admin_listen", PN_CFG_STRING, "127.0.0.1:9080",
	  offsetof(struct lb_config, admin_listen), check_hostport,
	  "Admin HTTP address (/healthz /readyz /metrics /status / and the "
	  "backend POST endpoints)." },
	{ "admin_control", PN_CFG_ENUM("loopback", "any", "off"), "loopback",
	  offsetof(struct lb_config, admin_control), NULL,
	  "Who may drain, enable or reweight backends: loopback serves the POST "
	  "endpoints only when admin_listen is a loopback address." },
	{ "threads", PN_CFG_INT_RANGE(0, 256), "0", offsetof(struct lb_config, threads),
	  NULL, "Relay threads, each with its own ring and listeners; 0 = one per core." },
	{ "dns_servers", PN_CFG_STRING, "", offsetof(struct lb_config, dns_servers), NULL,
	  "Name servers for dns:/srv: upstreams (\"127.0.0.1:5353,[::1]:53\"); empty: "
	  "those of /etc/resolv.conf." },
	{ "dns_interval", PN_CFG_DURATION_RANGE(100, 86400000), "30s",
	  offsetof(struct lb_config, dns_interval_ms), NULL,
	  "Longest time between resolutions of a dns:/srv: upstream (a shorter "
	  "TTL in the answer wins)." },
	{ "dns_min_interval", PN_CFG_DURATION_RANGE(100, 86400000), "1s",
	  offsetof(struct lb_config, dns_min_interval_ms), NULL,
	  "Shortest time between resolutions (a TTL below it, and the retry "
	  "after a failure, wait this long)." },
	{ "dns_timeout", PN_CFG_DURATION_RANGE(100, 60000), "1s",
	  offsetof(struct lb_config, dns_timeout_ms), NULL,
	  "Time a name server has to answer one try (two tries per server)." },
	LISTEN_DEF("imap", LB_PROTO_IMAP),
	LISTEN_DEF("imaps", LB_PROTO_IMAPS),
	LISTEN_DEF("pop3", LB_PROTO_POP3),
	LISTEN_DEF("pop3s", LB_PROTO_POP3S),
	LISTEN_DEF("smtp", LB_PROTO_SMTP),
	LISTEN_DEF("submission", LB_PROTO_SUBMISSION),
	LISTEN_DEF("submissions", LB_PROTO_SUBMISSIONS),
	LISTEN_DEF("lmtp", LB_PROTO_LMTP),
	{ "upstream_admin", PN_CFG_LIST, "", offsetof(struct lb_config, upstream_admin),
	  NULL, "The frontends' admin addresses in server order (GET /readyz health "
	  "checks; \"-\": none)." },
	{ "upstream_names", PN_CFG_LIST, "", offsetof(struct lb_config, upstream_names),
	  NULL, "Server names in server order (default upstream-1, upstream-2, ...)." },
	{ "upstream_weights", PN_CFG_LIST, "",
	  offsetof(struct lb_config, upstream_weights), NULL,
	  "Server weights 1..1000 in server order (default 1 each)." },
	{ "proxy_protocol", PN_CFG_ENUM("off", "v2"), "v2",
	  offsetof(struct lb_config, proxy_protocol), NULL,
	  "Header sent to upstreams before the client's bytes (and before probes, "
	  "as LOCAL)." },
	{ "algorithm", PN_CFG_ENUM("roundrobin", "leastconn", "source", "chash"),
	  "roundrobin", offsetof(struct lb_config, algorithm), NULL,
	  "Balancing: weighted round robin, least connections, source-address "
	  "hash, consistent hash of the source with bounded loads." },
	{ "chash_balance", PN_CFG_INT_RANGE(0, 1000), "25",
	  offsetof(struct lb_config, chash_balance), NULL,
	  "chash: a node takes at most (100 + this)% of its share of the load; 0 "
	  "= no bound." },
	{ "check_interval", PN_CFG_DURATION_RANGE(50, 3600000), "500ms",
	  offsetof(struct lb_config, check_interval_ms), NULL,
	  "Time between health checks of a backend." },
	{ "check_timeout", PN_CFG_DURATION_RANGE(50, 60000), "600ms",
	  offsetof(struct lb_config, check_timeout_ms), NULL,
	  "A check that takes longer fails (a hung node)." },
	{ "check_rise", PN_CFG_INT_RANGE(1, 100), "2", offsetof(struct lb_config, check_rise),
	  NULL, "Good checks in a row that bring a backend back." },
	{ "check_fall", PN_CFG_INT_RANGE(1, 100), "2", offsetof(struct lb_config, check_fall),
	  NULL, "Failed checks in a row that take a backend out (a refused or reset "
	  "connection takes it out at once)." },
	{ "check_probe", PN_CFG_BOOL, "yes", offsetof(struct lb_config, check_probe), NULL,
	  "Protocol probe: connect, expect the greeting, say LOGOUT/QUIT (implicit "
	  "TLS ports: connect only)." },
	{ "check_http", PN_CFG_BOOL, "yes", offsetof(struct lb_config, check_http), NULL,
	  "GET /readyz on each server's admin address (when upstream_admin is set)." },
	{ "slowstart", PN_CFG_DURATION_RANGE(0, 3600000), "3s",
	  offsetof(struct lb_config, slowstart_ms), NULL,
	  "A backend that comes back ramps its weight from 10% to 100% over this "
	  "time; 0 = at once." },
	{ "connect_timeout", PN_CFG_DURATION_RANGE(10, 600000), "1s",
	  offsetof(struct lb_config, connect_timeout_ms), NULL,
	  "Connecting to an upstream longer than this fails over to the next." },
	{ "idle_timeout", PN_CFG_DURATION_RANGE(1000, 86400000), "31m",
	  offsetof(struct lb_config, idle_timeout_ms), NULL,
	  "A relayed connection with no bytes either way for this long is closed "
	  "(above IMAP IDLE's 29 minutes)." },
	{ "shutdown_grace", PN_CFG_DURATION_RANGE(0, 3600000), "10s",
	  offsetof(struct lb_config, shutdown_grace_ms), NULL,
	  "On SIGTERM: stop accepting, let connections finish for this long, exit." },
	{ "max_connections", PN_CFG_INT_RANGE(0, 100000000), "100000",
	  offsetof(struct lb_config, max_connections), NULL,
	  "Client connections at once, all listeners; 0 = no limit." },
	{ "max_connections_per_source", PN_CFG_INT_RANGE(0, 100000000), "0",
	  offsetof(struct lb_config, max_connections_per_source), NULL,
	  "Client connections at once from one IP address; 0 = no limit." },
	{ "max_rate_per_source", PN_CFG_INT_RANGE(0, 1000000), "0",
	  offsetof(struct lb_config, max_rate_per_source), NULL,
	  "New connections per second from one IP address (a burst of as many is "
	  "allowed); 0 = no limit." },
	{ "relay_buffer", PN_CFG_SIZE_RANGE(4096, 16 * 1024 * 1024), "64k",
	  offsetof(struct lb_config, relay_buffer), NULL,
	  "Bytes queued per direction while the receiver is slow; beyond it the "
	  "sender is not read (backpressure)." },
	{ "relay_splice", PN_CFG_BOOL, "yes", offsetof(struct lb_config, relay_splice), NULL,
	  "L4: once a direction carries a large piece (16 KiB and more), move its "
	  "bytes with splice() through a pipe instead of copying them through the "
	  "balancer (less CPU per byte; no effect on TLS or L7 connections)." },
	{ "l7", PN_CFG_LIST, "", offsetof(struct lb_config, l7), check_l7,
	  "Listeners in L7 mode (e.g. imap, imaps, submission): the balancer "
	  "terminates TLS, speaks the protocol up to the login and routes by user "
	  "with consistent hashing; the others relay bytes (L4)." },
	{ "l7_route", PN_CFG_ENUM("user", "domain"), "user",
	  offsetof(struct lb_config, l7_route), NULL,
	  "L7: hash the whole login name, or only its domain (a tenant's users "
	  "together)." },
	{ "l7_require_tls", PN_CFG_BOOL, "yes", offsetof(struct lb_config, l7_require_tls),
	  NULL, "L7: refuse logins before TLS (IMAP LOGINDISABLED)." },
	{ "login_timeout", PN_CFG_DURATION_RANGE(1000, 3600000), "60s",
	  offsetof(struct lb_config, login_timeout_ms), NULL,
	  "L7: time a client has from connecting to logging in." },
	{ "smtp_size", PN_CFG_SIZE, "0", offsetof(struct lb_config, smtp_size), NULL,
	  "L7 submission: SIZE advertised in EHLO (the frontends' limit); 0 = none." },
	{ "tls_cert", PN_CFG_STRING, "", offsetof(struct lb_config, tls_cert), NULL,
	  "PEM certificate chain for TLS at the balancer (L7 listeners)." },
	{ "tls_key", PN_CFG_STRING, "", offsetof(struct lb_config, tls_key), NULL,
	  "PEM private key of tls_cert." },
	{ "tls_sni", PN_CFG_LIST, "", offsetof(struct lb_config, tls_sni), check_sni,
	  "Tenant certificates by SNI: name=file.pem (chain and key in one file; "
	  "name may be *.domain); clients asking for another name get tls_cert." },
};
const size_t lb_config_def_count = PN_CONFIG_COUNT(lb_config_defs);

static __thread char errbuf[512];

static int fail(const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	*error_r = errbuf;
	return -1;
}

int lb_config_load(struct lb_config *cfg, const char *path, const char *const *sets,
		   size_t nsets, const char **error_r)
{
	return pn_config_load(lb_config_defs, lb_config_def_count, cfg, path, sets, nsets,
			      error_r);
}

void lb_config_free(struct lb_config *cfg)
{
	pn_config_free(lb_config_defs, lb_config_def_count, cfg);
	memset(cfg, 0, sizeof(*cfg));
}

static bool name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len >= LB_CONF_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int parse_weight(const char *s, uint32_t *w_r)
{
	unsigned long v = 0;

	if (*s == '\0' || strlen(s) > 4)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	if (v < 1 || v > LB_WEIGHT_MAX)
		return -1;
	*w_r = (uint32_t)v;
	return 0;
}

int lb_dns_spec_parse(const char *s, struct lb_dns_spec *spec_r)
{
	const char *name, *end;
	size_t len;

	memset(spec_r, 0, sizeof(*spec_r));
	if (strncmp(s, "dns:", 4) == 0) {
		const char *colon = strrchr(s + 4, ':');
		unsigned long port = 0;

		if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) > 5 || colon[1] == '0')
			return -1;
		for (const char *q = colon + 1; *q != '\0'; q++) {
			if (*q < '0' || *q > '9')
				return -1;
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (port < 1 || port > 65535)
			return -1;
		spec_r->kind = LB_DNS_ADDR;
		spec_r->port = (uint16_t)port;
		name = s + 4;
		end = colon;
	} else if (strncmp(s, "srv:", 4) == 0) {
		spec_r->kind = LB_DNS_SRV;
		name = s + 4;
		end = name + strlen(name);
	} else {
		return 0;
	}
	/* RFC 1035 section 2.3.4: at most 253 characters in text form (a
	 * trailing dot allowed); '_' for SRV's service labels (RFC 2782). */
	len = (size_t)(end - name);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > LB_DNS_NAME_MAX - 1 || name[0] == '.')
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return -1;
		if (c == '.' && name[i + 1] == '.')
			return -1;
	}
	memcpy(spec_r->name, name, len);
	spec_r->name[len] = '\0';
	return 1;
}

/* The IP of an address as a comparable key: family and 16 bytes. */
struct ip_key {
	int family;
	uint8_t b[16];
};

static void ip_key_of(const struct sockaddr_storage *ss, struct ip_key *k)
{
	memset(k, 0, sizeof(*k));
	k->family = ss->ss_family;
	if (ss->ss_family == AF_INET)
		memcpy(k->b, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	else if (ss->ss_family == AF_INET6)
		memcpy(k->b, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

static int ip_key_cmp(const struct ip_key *a, const struct ip_key *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->b, b->b, sizeof(a->b));
}

static int addr_cmp(const void *x, const void *y)
{
	const struct sockaddr_storage *a = x, *b = y;
	struct ip_key ka, kb;
	int r;

	ip_key_of(a, &ka);
	ip_key_of(b, &kb);
	r = ip_key_cmp(&ka, &kb);
	if (r != 0)
		return r;
	return port_of(a) < port_of(b) ? -1 : port_of(a) > port_of(b);
}

/* A server of a DNS group: the k-th address with this IP in each entry. */
struct group_key {
	struct ip_key ip;
	unsigned int k;
};

#define SLOT_ADMIN LB_PROTO_COUNT
#define NSLOTS (LB_PROTO_COUNT + 1)

struct group_slot {
	struct sockaddr_storage *a;	/* sorted, no duplicates */
	size_t n;
};

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
					: sizeof(struct sockaddr_in6);
}

/* The k-th address of slot with this IP, or NULL. */
static const struct sockaddr_storage *slot_find(const struct group_slot *sl,
						const struct group_key *g)
{
	unsigned int seen = 0;

	for (size_t i = 0; i < sl->n; i++) {
		struct ip_key k;

		ip_key_of(&sl->a[i], &k);
		if (ip_key_cmp(&k, &g->ip) == 0 && seen++ == g->k)
			return &sl->a[i];
	}
	return NULL;
}

/* Appends the servers of DNS group position i to *out (*n of them, *cap
 * allocated). Returns 0 or -1 with *error_r. */
static int build_group(const struct lb_config *cfg, const struct lb_dns_view *dns, size_t i,
		       const char *base, uint32_t weight, struct lb_server_conf **out,
		       size_t *n, size_t *cap, const char **error_r)
{
	struct group_slot slots[NSLOTS];
	struct group_key *keys = NULL;
	size_t nkeys = 0, total = 0;
	int ret = -1;

	memset(slots, 0, sizeof(slots));
	for (int p = 0; p < NSLOTS; p++) {
		const struct pn_config_list *l = p == SLOT_ADMIN ? &cfg->upstream_admin
								  : &cfg->upstreams[p];
		const struct sockaddr_storage *a;
		size_t na = 0, m = 0;

		if (i >= l->count || strcmp(l->items[i], "-") == 0 || dns == NULL)
			continue;
		a = dns->lookup(dns->ctx, l->items[i], &na);
		if (a == NULL || na == 0)
			continue;
		slots[p].a = malloc(na * sizeof(*a));
		if (slots[p].a == NULL) {
			fail(error_r, "out of memory");
			goto out;
		}
		memcpy(slots[p].a, a, na * sizeof(*a));
		qsort(slots[p].a, na, sizeof(*a), addr_cmp);
		for (size_t j = 0; j < na; j++)
			if (m == 0 || addr_cmp(&slots[p].a[m - 1], &slots[p].a[j]) != 0)
				slots[p].a[m++] = slots[p].a[j];
		slots[p].n = m;
		total += m;
	}
	keys = calloc(total + 1, sizeof(*keys));
	if (keys == NULL) {
		fail(error_r, "out of memory");
		goto out;
	}
	/* Keys in order of IP, then occurrence; each once. */
	for (int p = 0; p < NSLOTS; p++) {
		struct ip_key prev;
		unsigned int k = 0;

		for (size_t j = 0; j < slots[p].n; j++) {
			struct group_key g;
			bool have = false;

			ip_key_of(&slots[p].a[j], &g.ip);
			k = (j > 0 && ip_key_cmp(&prev, &g.ip) == 0) ? k + 1 : 0;
			prev = g.ip;
			g.k = k;
			for (size_t x = 0; x < nkeys && !have; x++)
				have = keys[x].k == g.k && ip_key_cmp(&keys[x].ip, &g.ip) == 0;
			if (!have)
				keys[nkeys++] = g;
		}
	}
	for (size_t x = 0; x < nkeys; x++) {
		struct lb_server_conf *s;
		char ip[INET6_ADDRSTRLEN];
		int len;

		if (*n >= LB_POOL_MAX) {
			fail(error_r, "more than %d servers (position %zu resolves to %zu)",
			     LB_POOL_MAX, i + 1, nkeys);
			goto out;
		}
		if (*n == *cap) {
			size_t nc = *cap == 0 ? 16 : *cap * 2;
			struct lb_server_conf *ns = realloc(*out, nc * sizeof(*ns));

			if (ns == NULL) {
				fail(error_r, "out of memory");
				goto out;
			}
			*out = ns;
			*cap = nc;
		}
		s = &(*out)[*n];
		memset(s, 0, sizeof(*s));
		inet_ntop(keys[x].ip.family, keys[x].ip.b, ip, sizeof(ip));
		for (char *q = ip; *q != '\0'; q++)
			if (*q == ':')
				*q = '-';
		if (keys[x].k == 0)
			len = snprintf(s->name, sizeof(s->name), "%s-%s", base, ip);
		else
			len = snprintf(s->name, sizeof(s->name), "%s-%s-%u", base, ip,
				       keys[x].k + 1);
		if (len < 0 || (size_t)len >= sizeof(s->name)) {
			fail(error_r, "server name \"%s-%s\" too long", base, ip);
			goto out;
		}
		s->weight = weight;
		for (int p = 0; p < NSLOTS; p++) {
			const struct sockaddr_storage *a = slot_find(&slots[p], &keys[x]);

			if (a == NULL)
				continue;
			if (p == SLOT_ADMIN) {
				s->has_admin = true;
				memcpy(&s->admin, a, sizeof(*a));
				s->admin_len = ss_len(a);
			} else {
				s->has[p] = true;
				memcpy(&s->addr[p], a, sizeof(*a));
				s->addr_len[p] = ss_len(a);
			}
		}
		(*n)++;
	}
	ret = 0;
out:
	for (int p = 0; p < NSLOTS; p++)
		free(slots[p].a);
	free(keys);
	return ret;
}

int lb_topology_build(const struct lb_config *cfg, const struct lb_dns_view *dns,
		      struct lb_topology *t, const char **error_r)
{
	size_t n = cfg->upstream_admin.count, nout = 0, cap = 0;
	struct lb_server_conf *sv = NULL;

	t->servers = NULL;
	t->n = 0;
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		if (cfg->upstreams[p].count > n)
			n = cfg->upstreams[p].count;
	if (n > LB_POOL_MAX)
		return fail(error_r, "%zu servers: at most %d", n, LB_POOL_MAX);
	if (cfg->upstream_names.count != 0 && cfg->upstream_names.count != n)
		return fail(error_r, "upstream_names has %zu names for %zu servers",
			    cfg->upstream_names.count, n);
	if (cfg->upstream_weights.count != 0 && cfg->upstream_weights.count != n)
		return fail(error_r, "upstream_weights has %zu weights for %zu servers",
			    cfg->upstream_weights.count, n);
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct lb_server_conf conf, *s = &conf;
		int ndns = 0, nstatic = 0;

		memset(s, 0, sizeof(*s));
		/* Which kind of position is this? */
		for (int p = 0; p < NSLOTS; p++) {
			const struct pn_config_list *l = p == SLOT_ADMIN ? &cfg->upstream_admin
									  : &cfg->upstreams[p];
			struct lb_dns_spec spec;
			int r;

			if (i >= l->count || strcmp(l->items[i], "-") == 0)
				continue;
			r = lb_dns_spec_parse(l->items[i], &spec);
			if (r < 0) {
				fail(error_r, "%s%s: bad DNS entry \"%.80s\" (dns:NAME:PORT or "
				     "srv:NAME)", p == SLOT_ADMIN ? "upstream_admin" :
				     lb_protos[p].name, p == SLOT_ADMIN ? "" : "_upstreams",
				     l->items[i]);
				goto bad;
			}
			if (r > 0)
				ndns++;
			else
				nstatic++;
		}
		if (ndns > 0 && nstatic > 0) {
			fail(error_r, "server %zu mixes DNS entries and addresses", i + 1);
			goto bad;
		}
		if (cfg->upstream_names.count != 0) {
			const char *name = cfg->upstream_names.items[i];

			if (!name_ok(name)) {
				fail(error_r, "upstream_names: bad name \"%.80s\" (letters, "
				     "digits, '.', '_', '-'; at most %d bytes)", name,
				     LB_CONF_NAME_MAX - 1);
				goto bad;
			}
			snprintf(s->name, sizeof(s->name), "%s", name);
		} else {
			snprintf(s->name, sizeof(s->name), "upstream-%zu", i + 1);
		}
		s->weight = 1;
		if (cfg->upstream_weights.count != 0 &&
		    parse_weight(cfg->upstream_weights.items[i], &s->weight) < 0) {
			fail(error_r, "upstream_weights: bad weight \"%.20s\" (1..%d)",
			     cfg->upstream_weights.items[i], LB_WEIGHT_MAX);
			goto bad;
		}
		if (ndns > 0) {
			if (build_group(cfg, dns, i, s->name, s->weight, &sv, &nout, &cap,
					error_r) < 0)
				goto bad;
			continue;
		}
		if (i < cfg->upstream_admin.count &&
		    strcmp(cfg->upstream_admin.items[i], "-") != 0) {
			if (pn_parse_hostport(cfg->upstream_admin.items[i], &s->admin,
					      &s->admin_len) < 0) {
				fail(error_r, "upstream_admin: bad address \"%.80s\"",
				     cfg->upstream_admin.items[i]);
				goto bad;
			}
			s->has_admin = true;
		}
		for (int p = 0; p < LB_PROTO_COUNT; p++) {
			const char *a;

			if (i >= cfg->upstreams[p].count)
				continue;
			a = cfg->upstreams[p].items[i];
			if (strcmp(a, "-") == 0)
				continue;
			if (pn_parse_hostport(a, &s->addr[p], &s->addr_len[p]) < 0) {
				fail(error_r, "%s_upstreams: bad address \"%.80s\"",
				     lb_protos[p].name, a);
				goto bad;
			}
			s->has[p] = true;
		}
		if (nout >= LB_POOL_MAX) {
			fail(error_r, "more than %d servers", LB_POOL_MAX);
			goto bad;
		}
		if (nout == cap) {
			size_t nc = cap == 0 ? 16 : cap * 2;
			struct lb_server_conf *ns = realloc(sv, nc * sizeof(*ns));

			if (ns == NULL) {
				fail(error_r, "out of memory");
				goto bad;
			}
			sv = ns;
			cap = nc;
		}
		sv[nout++] = conf;
	}
	/* Names are unique: configured ones, and a group's "<base>-<ip>". */
	for (size_t a = 0; a < nout; a++) {
		for (size_t b = 0; b < a; b++) {
			if (strcmp(sv[a].name, sv[b].name) == 0) {
				fail(error_r, "upstream_names: \"%s\" twice", sv[a].name);
				goto bad;
			}
		}
	}
	t->servers = sv;
	t->n = nout;
	return 0;
bad:
	free(sv);
	return -1;
}

void lb_topology_free(struct lb_topology *t)
{
	free(t->servers);
	t->servers = NULL;
	t->n = 0;
}
