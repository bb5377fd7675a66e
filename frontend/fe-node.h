/* The frontend process: its threads (one io_uring loop each, with its own
 * SO_REUSEPORT listener per service), the admin HTTP server, signals, the
 * drain on SIGTERM and TLS reload on SIGHUP.
 *
 * Thread 0 is the process's main thread: it also runs the admin server,
 * the signalfd and the node registry heartbeat. Threads share only
 * read-only configuration, the TLS context (thread-safe), the metrics
 * registry (atomic), the password worker pool and a few atomics.
 *
 * Drain (SIGTERM or SIGINT): /readyz fails at once; every thread closes
 * its listeners (new connections are refused by the kernel), then tells
 * its sessions goodbye one by one, spread evenly over drain_spread; at
 * drain_grace whatever is still open is closed; the process exits when
 * every thread is empty (or at drain_grace plus one second at the latest).
 *
 * SIGHUP reloads the TLS certificate and key, and the limits (auth_*,
 * max_*_sessions, session_lease, tenant_*): the configuration is read
 * again as at start (file, environment, --set), and every thread swaps its
 * throttle instance's limits in place (mail_throttle_set_settings()), so
 * open sessions keep their slots. A configuration that does not load or
 * whose limits make no sense changes nothing. Other keys still need a
 * restart (a drain, one node at a time).
 */
#ifndef FE_NODE_H
#define FE_NODE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "postern/admin.h"
#include "postern/cidr.h"
#include "postern/loop.h"
#include "postern/mail-throttle.h"
#include "postern/tls.h"
#include "postern/store-blob-cache.h"
#include "postern/workpool.h"

#include "fe-config.h"
#include "fe-conn.h"
#include "fe-metrics.h"

struct fe_node;
struct fe_backend;
struct fe_registry;
struct fe_limits;
struct mail_throttle_metrics;

struct fe_listener {
	struct fe_thread *thread;
	enum fe_service svc;
	int fd;			/* until handed to the loop */
	pn_io_id io;
};

struct fe_thread {
	struct fe_node *node;
	unsigned int index;
	struct pn_loop *loop;
	pthread_t tid;
	bool started;
	struct fe_conn_env env;
	struct fe_listener listeners[FE_SVC_COUNT];
	/* Storage clients of this thread (fe-backend.c); NULL until started. */
	struct fe_backend *backend;
	/* Whether backend's PostgreSQL pool has a live connection, published
	 * by this thread for /readyz on thread 0 (fe-backend.c). */
	atomic_bool pg_ready;
	/* Session registry entries and heartbeats (fe-registry.c). */
	struct fe_registry *registry;
	/* Throttle instance and kick subscription (fe-limits.c), and whether
	 * the throttle counts per node (Redis failing), published by this
	 * thread for /readyz on thread 0. */
	struct fe_limits *limits;
	atomic_bool throttle_degraded;
	/* Limits of a SIGHUP waiting for this thread (fe_limits_reload()):
	 * written by thread 0, taken by this thread, under reload_lock. */
	pthread_mutex_t reload_lock;
	bool reload_pending;
	struct mail_throttle_settings reload_set;

	/* drain */
	bool draining;
	bool drain_reported;
	pn_io_id drain_timer;
	uint64_t drain_start_ms;
	unsigned int drain_total;	/* sessions when the drain began */
	unsigned int drain_told;
};

struct fe_node {
	struct fe_config cfg;
	/* Where cfg came from, read again on SIGHUP: set by the caller after
	 * fe_node_init() (path NULL: no file; the strings must outlive the
	 * node). */
	const char *config_path;
	const char *const *config_sets;
	size_t config_nsets;
	char node_name[64];
	char hostname[64];
	unsigned int nthreads;
	struct fe_thread *threads;
	struct pn_tls_ctx *tls;
	struct pn_cidr_list proxy_trusted, plaintext_auth;
	struct fe_metrics metrics;
	struct mail_throttle_metrics *throttle_metrics;
	struct pn_workpool *auth_pool;
	struct store_blob_cache *blob_cache;	/* IMAP FETCH bodies; NULL: off */
	struct pn_admin *admin;
	pn_io_id signal_io;
	int signal_fd;
	uint64_t start_time;

	atomic_bool draining;
	unsigned int threads_drained;	/* thread 0 only */
	pn_io_id exit_timer;		/* thread 0: hard exit deadline */
	bool stopping;
};

/* Sets the node up from cfg (taken over: freed by fe_node_free): TLS
 * context, listeners on every thread (sockets bound here, so that a port
 * conflict fails the start), loops, metrics, the admin server and the
 * signal handling. Returns 0, or -1 with *error_r. */
int fe_node_init(struct fe_node *node, struct fe_config *cfg, const char **error_r);
/* Starts threads 1..n-1 and runs thread 0 on the calling thread until the
 * drain is over. Returns 0, or -1 on a loop failure. */
int fe_node_run(struct fe_node *node);
void fe_node_free(struct fe_node *node);

/* The node a thread belongs to, and its storage clients. */
struct fe_node *fe_thread_node(const struct fe_thread *thread);
struct fe_backend *fe_thread_backend(const struct fe_thread *thread);

/* Starts the drain (thread 0; what SIGTERM does). */
void fe_node_drain(struct fe_node *node);

#endif
