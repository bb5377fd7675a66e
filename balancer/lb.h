/* The balancer's runtime: servers and backends, the snapshot the relay
 * threads read, the threads themselves, and the functions the files of
 * this folder call in one another.
 *
 * Threads and who owns what:
 * - The control thread (main) runs one loop with the admin HTTP server,
 *   the health checker, the c-ares resolver of dns:/srv: upstreams
 *   (lb-dns.c), the signal handler and a 100 ms tick. It alone
 *   creates, changes and frees servers, backends and snapshots, and it
 *   alone runs the rise/fall state machines.
 * - Each relay thread (struct lb_worker) runs its own loop with its own
 *   SO_REUSEPORT listener per protocol and the connections it accepted.
 *   Nothing on its hot path is shared except a few atomics per backend
 *   and the connection limits (one mutex, lb-limits.c).
 * - Workers find backends only through the current snapshot (struct
 *   lb_snapshot), loaded atomically in each callback and never kept across
 *   callbacks. A connection keeps its backend by counting itself in
 *   backend->active; it touches the backend for the last time when it
 *   takes itself off that count.
 * - A replaced snapshot and backends retired by a reload are freed by the
 *   control thread once every worker has run a function posted after the
 *   replacement (so no callback still holds the old pointer) and, for a
 *   backend, once its active count is 0 and no check of it is running.
 *
 * Eligibility, as workers see it: eff_weight > 0 and not passive_down.
 * eff_weight is set by the control thread from health, drain and slow
 * start; passive_down is raised by a worker the moment a connect to the
 * backend fails (refused, reset, timeout) so that no other connection
 * tries it, and lowered by the control thread once the failure is
 * accounted for in the health state (which by then keeps eff_weight 0).
 */
#ifndef POSTERN_LB_H
#define POSTERN_LB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb-algo.h"
#include "lb-check.h"
#include "lb-config.h"
#include "lb-limits.h"
#include "postern/admin.h"
#include "postern/cidr.h"
#include "postern/loop.h"
#include "postern/metrics.h"

#define LB_MAX_ATTEMPTS 8	/* upstreams one client connection may try */
#define LB_RATE_SAMPLES 300	/* per-second samples kept for the status page */
#define LB_TICK_MS 100
/* eff_weight is the configured weight times this, so that slow start can
 * ramp a weight-1 server in steps of 1% rather than not at all. */
#define LB_WEIGHT_SCALE 100

struct lb;
struct lb_check;

/* One frontend node. Control thread only. */
struct lb_server {
	struct lb_server *next;
	char name[LB_NAME_MAX];
	uint32_t weight;		/* configured, or set through the admin API */
	bool has_admin;
	struct sockaddr_storage admin;
	socklen_t admin_len;
	char admin_text[64];
	struct lb_health ready;		/* GET /readyz */
	bool ready_draining;		/* its /readyz says it is draining */
	bool admin_drain;		/* drained through the admin API */
	struct lb_check *check;		/* /readyz check in flight */
	uint64_t next_check_ms;
	uint64_t last_check_ms;
	char last_check[96];
	bool retired;
	unsigned int nbackends;		/* backends (current or retired) of it */
	struct pn_metric_series *m_check_failures;
};

/* A server's listener for one protocol: what connections go to. */
struct lb_backend {
	struct lb_backend *next;
	/* Set at creation, then read-only (workers read these). */
	struct lb_server *srv;		/* control thread only */
	char name[LB_NAME_MAX];
	enum lb_proto proto;
	uint64_t id;			/* pn_hash64 of the name: algorithms' identity */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char addr_text[64];
	struct pn_metric_series *m_up, *m_weight, *m_active, *m_total, *m_connect_failures,
		*m_check_failures, *m_connect_seconds, *m_bytes_to, *m_bytes_from;
	/* Shared. */
	_Atomic uint32_t eff_weight;	/* weight * LB_WEIGHT_SCALE, ramped; 0: not eligible */
	atomic_bool passive_down;
	_Atomic uint64_t passive_fails;	/* connect failures seen by workers */
	_Atomic uint32_t active;	/* connections holding it */
	/* Control thread only. */
	uint64_t passive_seen;
	struct lb_health probe;
	struct lb_check *check;		/* probe in flight */
	uint64_t next_check_ms;
	uint64_t last_check_ms;
	uint32_t last_check_latency_ms;
	char last_check[96];
	bool retired;
	uint64_t retired_epoch;
	const char *state;		/* "up", "down", "draining", "starting" */
};

struct lb_pool {
	size_t n;
	struct lb_backend *be[LB_POOL_MAX];
};

/* What the workers read: immutable once published. */
struct lb_snapshot {
	uint64_t gen;
	enum lb_algo algo;
	unsigned int balance_pct;
	enum lb_proxy_mode proxy;
	uint32_t relay_buffer;
	bool relay_splice;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms;
	bool l7[LB_PROTO_COUNT];
	enum lb_l7_route l7_route;
	bool l7_require_tls;
	uint64_t login_timeout_ms;
	uint64_t smtp_size;
	char hostname[64];
	struct lb_pool pool[LB_PROTO_COUNT];
	uint64_t retired_epoch;		/* control: when it was replaced */
	struct lb_snapshot *next_old;	/* control: waiting to be freed */
};

struct lb_conn;

struct lb_listener {
	struct lb_worker *w;
	enum lb_proto proto;
	pn_io_id io;
};

struct lb_worker {
	struct lb *lb;
	unsigned int idx;
	pthread_t thread;
	bool started;
	struct pn_loop *loop;
	struct lb_listener listeners[LB_PROTO_COUNT];
	unsigned int nlisteners_open;
	struct lb_picker pickers[LB_PROTO_COUNT];
	uint64_t picker_gen;		/* snapshot the pickers were built for */
	bool pickers_ok;
	struct lb_conn *conns;
	unsigned int nconns;
	/* The connections' deadlines: a binary min-heap served by one kernel
	 * timer (tio), so a connection arms and cancels no timer of its own. */
	struct lb_conn **theap;
	uint32_t theap_n, theap_cap;
	pn_io_id tio;
	bool accepting;
	bool quitting;
	_Atomic unsigned int nconns_shared;	/* for the control thread */
	_Atomic uint64_t seen_epoch;	/* QSBR: the last epoch it passed */
	atomic_bool exited;
};

/* Metric families. */
struct lb_metrics {
	struct pn_metric *backend_up, *backend_weight, *backend_active, *backend_total,
		*backend_connect_failures, *backend_check_failures, *backend_connect_seconds,
		*backend_bytes;
	struct pn_metric *accepted, *refused, *active, *reloads, *tls_handshakes,
		*login_failures;
	struct pn_metric_series *accepted_s[LB_PROTO_COUNT];
	struct pn_metric_series *tls_handshakes_s[LB_PROTO_COUNT];
	struct pn_metric_series *login_failures_s[LB_PROTO_COUNT];
	struct pn_metric_series *active_s;
};

/* One admin route for a server name (routes cannot be removed, so these
 * live until exit). */
struct lb_route_ctx {
	struct lb_route_ctx *next;
	struct lb *lb;
	char name[LB_NAME_MAX];
	int action;
};

struct lb_resolver;
struct lb_dns_entry;

struct lb {
	struct lb_config cfg;
	struct lb_resolver *resolver;	/* dns:/srv: upstreams; NULL: none */
	const char *config_path;
	const char *const *sets;
	size_t nsets;

	struct pn_loop *loop;		/* control */
	struct pn_admin *admin;
	struct pn_tls_ctx *tls;		/* L7 TLS (shared by all threads); NULL: none */
	char **sni_names;		/* SNI names added to tls */
	size_t sni_count;
	struct pn_metrics *metrics;
	struct lb_metrics m;
	struct lb_limits *limits;
	pn_io_id tick_io, sig_io;
	uint64_t started_ms;

	_Atomic(struct lb_snapshot *) snap;
	uint64_t gen;
	_Atomic uint64_t epoch;
	struct lb_snapshot *old_snaps;

	struct lb_server *servers;
	struct lb_backend *backends;
	struct lb_route_ctx *routes;
	unsigned int nchecks;		/* checks in flight */

	struct lb_worker *workers;
	unsigned int nworkers;

	bool stopping;
	bool quit_sent;
	uint64_t stop_deadline_ms;
	int exit_code;

	uint64_t next_sample_ms;
	uint64_t last_accepted;
	uint32_t cps[LB_RATE_SAMPLES];
	unsigned int cps_head, cps_count;
	uint64_t next_sweep_ms;
	uint64_t reloads, reload_failures;
	char last_reload[160];
	_Atomic uint64_t refused_n[LB_PROTO_COUNT];	/* per listener, all reasons */
	char listen_text[LB_PROTO_COUNT][64];		/* bound addresses */
	/* A listener bound to one address: every connection's local address
	 * (the PROXY destination) is this, no getsockname() needed. */
	struct sockaddr_storage listen_ss[LB_PROTO_COUNT];
	bool listen_fixed[LB_PROTO_COUNT];
	/* proxy_accept_from per listener, parsed at start (read-only: a
	 * change needs a restart, like the listen address). */
	struct pn_cidr_list proxy_accept[LB_PROTO_COUNT];
};

/* ---- lb-core.c (control thread) ---- */

/* Loads the configuration, sets up metrics, limits, servers, backends and
 * the first snapshot, the relay threads' loops and listeners, the admin
 * server, signals and the tick on a new control loop. Returns 0, or -1
 * with *error_r (then lb_free() cleans up). */
int lb_init(struct lb *lb, const char **error_r);
/* Starts the relay threads, runs the control loop until shutdown is
 * complete, joins the threads. Returns the exit code. */
int lb_run(struct lb *lb);
void lb_free(struct lb *lb);
/* SIGHUP: re-reads the configuration and applies backends, weights,
 * checks, limits and algorithm; listener changes need a restart. */
void lb_reload(struct lb *lb);
/* Begins the graceful stop (SIGTERM). */
void lb_begin_stop(struct lb *lb);
/* Recomputes every backend's state and eff_weight (after a health change,
 * drain, weight change, and each tick for slow start). */
void lb_update_weights(struct lb *lb);
struct lb_server *lb_server_find(struct lb *lb, const char *name);
/* Sum of the workers' open connections. */
unsigned int lb_connections(struct lb *lb);
/* Posted to the control loop by workers (ctx: the struct lb): accounts for
 * passive failures and notices exited workers at once. */
void lb_control_wake(void *ctx);

/* Rebuilds the topology from the running configuration and the DNS sets
 * and applies it as a reload does (why: for the log). */
void lb_topology_refresh(struct lb *lb, const char *why);

/* ---- lb-dns.c (control thread) ---- */

/* Creates entries for the dns:/srv: items of cfg (keeping existing ones
 * and their sets), and the resolver on first use or when dns_servers
 * changed. Returns 0, or -1 with *error_r (a bad dns_servers list). */
int lb_dns_sync(struct lb *lb, const struct lb_config *cfg, const char **error_r);
/* Drops the entries lb->cfg no longer names. */
void lb_dns_prune(struct lb *lb);
/* Starts the resolutions that are due; called from the tick. */
void lb_dns_tick(struct lb *lb, uint64_t now);
/* The view lb_topology_build() reads the current sets through. */
void lb_dns_view(struct lb *lb, struct lb_dns_view *v);
struct lb_dns_entry *lb_dns_entry_lookup(struct lb *lb, const char *spec);
/* Up to max entries, for /status. */
size_t lb_dns_entries(struct lb *lb, const struct lb_dns_entry **list, size_t max);
void lb_dns_entry_info(const struct lb_dns_entry *e, const char **spec_r, size_t *naddrs_r,
		       const char **last_r);
/* Cancels every query and frees the entries; before pn_loop_free(). */
void lb_dns_free(struct lb *lb);

/* ---- lb-relay.c (relay threads) ---- */

/* Creates the worker's loop and listeners (fds already bound). */
int lb_worker_init(struct lb_worker *w, struct lb *lb, unsigned int idx,
		   const int *listen_fds, const char **error_r);
int lb_worker_start(struct lb_worker *w);
void lb_worker_free(struct lb_worker *w);
/* Posted by the control thread: */
void lb_worker_post_stop_accepting(struct lb_worker *w);
void lb_worker_post_quit(struct lb_worker *w);
void lb_worker_post_epoch(struct lb_worker *w);

/* ---- lb-health.c (control thread) ---- */

/* Starts the checks that are due; called from the tick. */
void lb_health_tick(struct lb *lb, uint64_t now);
/* Accounts for connect failures workers reported (passive checks). */
void lb_health_passive(struct lb *lb, uint64_t now);
/* Starts a backend's checks soon (new backend or server). */
void lb_health_schedule_new(struct lb *lb, uint64_t *next_check_ms, uint64_t now);
/* Cancels the check of a server or backend (retired, or stopping). */
void lb_check_cancel(struct lb *lb, struct lb_check **check);

/* ---- lb-admin.c (control thread) ---- */

int lb_admin_init(struct lb *lb, const char **error_r);
/* Adds the POST routes of a server name (once per name). */
void lb_admin_add_server_routes(struct lb *lb, const char *name);

#endif
