/* The balancer's configuration: the protocol table, the settings table
 * (postern/config.h: file, POSTERN_<KEY> environment, --set), and the
 * upstream topology built from it.
 *
 * Upstreams are given per protocol as positional lists, the shape the local
 * cluster passes in its environment:
 *
 *   imap_upstreams   = 10.0.0.1:143, 10.0.0.2:143
 *   pop3_upstreams   = 10.0.0.1:110, 10.0.0.2:110
 *   upstream_admin   = 10.0.0.1:9080, 10.0.0.2:9080   (their /readyz)
 *   upstream_names   = fe1, fe2                       (optional)
 *   upstream_weights = 1, 2                           (optional)
 *
 * The i-th item of every list belongs to the same frontend node ("server"):
 * it has one admin address (health by /readyz, drain) and one backend per
 * protocol it listens for. "-" in a protocol list means "this node does not
 * serve that protocol". Unnamed servers are called upstream-1, upstream-2...
 * Addresses are numeric (host:port or [v6]:port), or DNS names:
 *
 *   imap_upstreams   = dns:frontends.svc.local:143      (A and AAAA)
 *   pop3_upstreams   = srv:_pop3._tcp.frontends.svc.local  (SRV)
 *
 * A position holding DNS entries is a *group*: every address its entries
 * resolve to becomes a server of its own, named "<base>-<ip>" (base: the
 * position's upstream_names item or upstream-N; ':' of IPv6 written '-').
 * Entries of one position are joined by IP address, so that a pod's IMAP,
 * POP3 and admin addresses form one server; a second address with the same
 * IP in one entry (SRV records with two ports) is server "<base>-<ip>-2".
 * Static addresses and DNS entries cannot share a position.
 *
 * Nothing here does I/O except reading the config file.
 */
#ifndef POSTERN_LB_CONFIG_H
#define POSTERN_LB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "postern/config.h"

enum lb_proto {
	LB_PROTO_IMAP = 0,
	LB_PROTO_IMAPS,
	LB_PROTO_POP3,
	LB_PROTO_POP3S,
	LB_PROTO_SMTP,
	LB_PROTO_SUBMISSION,
	LB_PROTO_SUBMISSIONS,
	LB_PROTO_LMTP,
	LB_PROTO_COUNT
};

enum lb_family { LB_FAMILY_IMAP, LB_FAMILY_POP3, LB_FAMILY_SMTP };

struct lb_proto_info {
	const char *name;		/* "imap": config keys, labels, logs */
	enum lb_family family;
	bool implicit_tls;		/* the client speaks TLS first */
	/* Temporary refusal when no upstream can take the client (and for
	 * limits), in the protocol's own words, with CRLF. */
	const char *refusal_unavailable;
	const char *refusal_limit;
	/* Probe: the greeting starts with this, then we say logout. */
	const char *greeting_prefix;
	const char *logout;
	/* L7: the client did not log in within login_timeout. */
	const char *login_timeout;
	/* L7 mode is possible (a protocol with a login: not MX, not LMTP). */
	bool has_login;
};

extern const struct lb_proto_info lb_protos[LB_PROTO_COUNT];

enum lb_proxy_mode { LB_PROXY_OFF = 0, LB_PROXY_V2 };
enum lb_admin_control { LB_ADMIN_CONTROL_LOOPBACK = 0, LB_ADMIN_CONTROL_ANY,
			LB_ADMIN_CONTROL_OFF };

struct lb_config {
	char *node;
	char *dns_servers;		/* "" = /etc/resolv.conf */
	uint64_t dns_interval_ms;
	uint64_t dns_min_interval_ms;
	uint64_t dns_timeout_ms;
	char *proxy_accept_from[LB_PROTO_COUNT];	/* CIDR list; "" = none */
	int log_level;			/* enum pn_log_level */
	char *admin_listen;
	int admin_control;		/* enum lb_admin_control */
	int64_t threads;		/* 0: one per core */
	char *listen[LB_PROTO_COUNT];	/* "" = listener off */
	struct pn_config_list upstreams[LB_PROTO_COUNT];
	struct pn_config_list upstream_admin;
	struct pn_config_list upstream_names;
	struct pn_config_list upstream_weights;
	int proxy_protocol;		/* enum lb_proxy_mode */
	int algorithm;			/* enum lb_algo */
	int64_t chash_balance;		/* percent over the average (e) */
	uint64_t check_interval_ms;
	uint64_t check_timeout_ms;
	int64_t check_rise;
	int64_t check_fall;
	bool check_probe;
	bool check_http;
	uint64_t slowstart_ms;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t shutdown_grace_ms;
	int64_t max_connections;	/* 0: no limit */
	int64_t max_connections_per_source;
	int64_t max_rate_per_source;	/* new connections per second */
	uint64_t relay_buffer;		/* bytes queued per direction */
	bool relay_splice;		/* L4 bulk through pipes (splice) */
	struct pn_config_list l7;	/* listeners in L7 mode, by protocol name */
	int l7_route;			/* enum lb_l7_route */
	bool l7_require_tls;
	uint64_t login_timeout_ms;
	uint64_t smtp_size;
	char *tls_cert;
	char *tls_key;
	struct pn_config_list tls_sni;	/* "name=file.pem" (chain and key) */
};

enum lb_l7_route { LB_ROUTE_USER = 0, LB_ROUTE_DOMAIN };

/* Protocol index by name ("imaps"), or -1. */
int lb_proto_by_name(const char *name);

extern const struct pn_config_def lb_config_defs[];
extern const size_t lb_config_def_count;

/* Defaults, then path (may be NULL), then the environment, then sets
 * ("key=value"). cfg must be zeroed or freed before. Returns 0, or -1 with
 * *error_r (valid until the next call on this thread). */
int lb_config_load(struct lb_config *cfg, const char *path, const char *const *sets,
		   size_t nsets, const char **error_r);
void lb_config_free(struct lb_config *cfg);

/* Server names: configured ones are at most LB_CONF_NAME_MAX - 1 bytes; a
 * DNS group adds "-<ip>-<n>" to its base. */
#define LB_CONF_NAME_MAX 64
#define LB_NAME_MAX 112
#define LB_WEIGHT_MAX 1000

/* One frontend node as configured. */
struct lb_server_conf {
	char name[LB_NAME_MAX];
	uint32_t weight;			/* 1..LB_WEIGHT_MAX */
	bool has_admin;
	struct sockaddr_storage admin;
	socklen_t admin_len;
	bool has[LB_PROTO_COUNT];
	struct sockaddr_storage addr[LB_PROTO_COUNT];
	socklen_t addr_len[LB_PROTO_COUNT];
};

struct lb_topology {
	struct lb_server_conf *servers;	/* malloc'd */
	size_t n;
};

/* ---- DNS entries ---- */

enum lb_dns_kind { LB_DNS_ADDR = 1, LB_DNS_SRV };
#define LB_DNS_NAME_MAX 254	/* 253 characters and the NUL */
#define LB_DNS_SPEC_MAX 300	/* longest "dns:NAME:PORT" */

struct lb_dns_spec {
	enum lb_dns_kind kind;
	char name[LB_DNS_NAME_MAX];	/* letters, digits, '.', '_', '-' */
	uint16_t port;			/* LB_DNS_ADDR: 1..65535; SRV: 0 */
};

/* Reads an upstream list item: "dns:NAME:PORT" or "srv:NAME". Returns 1
 * and fills *spec_r, 0 if s is not a DNS entry (no such prefix), -1 if it
 * has the prefix but is malformed. */
int lb_dns_spec_parse(const char *s, struct lb_dns_spec *spec_r);

/* What the topology builder knows of DNS entries: lookup returns the
 * current addresses (ports set) of the entry spelled spec, *n_r of them,
 * or NULL with *n_r 0 when it has not been resolved yet. */
struct lb_dns_view {
	const struct sockaddr_storage *(*lookup)(void *ctx, const char *spec, size_t *n_r);
	void *ctx;
};

/* Builds the servers from cfg's lists (see the top of this file); DNS
 * entries are expanded from dns (NULL: as if none was resolved). Errors:
 * a bad address, a names or weights list longer or shorter than the
 * servers, a duplicate or malformed name ([A-Za-z0-9._-], at most 63
 * bytes), a malformed DNS entry, a position mixing DNS entries and
 * addresses, a weight outside 1..LB_WEIGHT_MAX, more than LB_POOL_MAX
 * servers. Returns 0, or -1 with *error_r (per-thread buffer). */
int lb_topology_build(const struct lb_config *cfg, const struct lb_dns_view *dns,
		      struct lb_topology *t, const char **error_r);
void lb_topology_free(struct lb_topology *t);

#endif
