/* The frontend process: thread setup with one loop and one SO_REUSEPORT
 * listener per service on each thread, the admin HTTP server (thread 0),
 * SIGTERM drain and SIGHUP reload (TLS and the limits: fe-node.h) through
 * a signalfd on thread 0, and
 * the orderly exit. The contract is in fe-node.h.
 */
#include "fe-node.h"

#include "postern/log.h"

#include "postern/mail-throttle.h"

#include "fe-backend.h"
#include "fe-limits.h"
#include "fe-registry.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024
/* Drain tick: goodbyes go out at most this often per thread. */
#define DRAIN_TICK_MIN_MS 10

struct fe_node *fe_thread_node(const struct fe_thread *thread)
{
	return thread->node;
}

struct fe_backend *fe_thread_backend(const struct fe_thread *thread)
{
	return thread->backend;
}

/* ---- listeners ---- */

static void listener_on_accept(void *ctx, int fd)
{
	struct fe_listener *l = ctx;

	if (fd < 0) {
		pn_warn("event=accept_error service=%s error=\"%s\"", fe_service_name(l->svc),
			strerror(-fd));
		return;
	}
	if (l->thread->draining) {
		close(fd);
		return;
	}
	(void)pn_socket_nodelay(fd);	/* replies go out in pieces: no Nagle wait */
	fe_conn_accept(&l->thread->env, fd, l->svc, fe_service_adapter(l->svc));
}

static const struct pn_io_handlers listener_handlers = {
	.on_accept = listener_on_accept,
};

/* Binds every enabled listener on every thread: the first socket of a
 * service picks the port when it is 0, the others of the group bind it. */
static int bind_listeners(struct fe_node *node, const char **error_r)
{
	static char msg[256];

	for (int svc = 0; svc < FE_SVC_COUNT; svc++) {
		struct fe_listen_addr a;
		uint16_t port;

		for (unsigned int t = 0; t < node->nthreads; t++)
			node->threads[t].listeners[svc].fd = -1;
		if (fe_listen_addr_parse(node->cfg.listen[svc], &a) < 0 || !a.enabled)
			continue;
		if (fe_service_implicit_tls(svc) && node->tls == NULL) {
			snprintf(msg, sizeof(msg),
				 "%s_listen needs tls_cert and tls_key (or set it empty)",
				 fe_service_name(svc));
			*error_r = msg;
			return -1;
		}
		port = a.port;
		for (unsigned int t = 0; t < node->nthreads; t++) {
			const char *error;
			int fd = pn_listen_tcp(a.host[0] != '\0' ? a.host : NULL, port,
					       LISTEN_BACKLOG, &error);
			if (fd < 0) {
				snprintf(msg, sizeof(msg), "%s_listen %s: %s", fe_service_name(svc),
					 node->cfg.listen[svc], error);
				*error_r = msg;
				return -1;
			}
			if (port == 0)
				port = pn_socket_port(fd);
			node->threads[t].listeners[svc].fd = fd;
		}
		pn_info("event=listen service=%s host=%s port=%u threads=%u", fe_service_name(svc),
			a.host[0] != '\0' ? a.host : "*", port, node->nthreads);
	}
	return 0;
}

static int start_listeners(struct fe_thread *th, const char **error_r)
{
	for (int svc = 0; svc < FE_SVC_COUNT; svc++) {
		struct fe_listener *l = &th->listeners[svc];

		l->thread = th;
		l->svc = svc;
		l->io = PN_IO_NONE;
		if (l->fd < 0)
			continue;
		l->io = pn_io_add(th->loop, l->fd, 0, &listener_handlers, l);
		if (l->io == PN_IO_NONE) {
			*error_r = "no io slot for a listener";
			return -1;
		}
		l->fd = -1; /* owned by the loop now */
		if (pn_io_accept(th->loop, l->io) < 0) {
			*error_r = "cannot start accepting";
			return -1;
		}
	}
	return 0;
}

static void close_listeners(struct fe_thread *th)
{
	for (int svc = 0; svc < FE_SVC_COUNT; svc++) {
		struct fe_listener *l = &th->listeners[svc];

		if (l->io != PN_IO_NONE) {
			pn_io_close(th->loop, l->io);
			l->io = PN_IO_NONE;
		}
		if (l->fd >= 0) {
			close(l->fd);
			l->fd = -1;
		}
	}
}

/* ---- drain ---- */

static void thread_check_drained(struct fe_thread *th);
static void node_thread_drained(void *ctx);

static void drain_tick(void *ctx);
static const struct pn_io_handlers drain_timer_handlers = {
	.on_timer = drain_tick,
};

static uint64_t drain_spread_ms(const struct fe_node *node)
{
	uint64_t spread = node->cfg.drain_spread_ms;

	if (spread == 0 || spread > node->cfg.drain_grace_ms)
		spread = node->cfg.drain_grace_ms / 2;
	return spread;
}

/* Tells the next sessions goodbye, as many as are due by now, and closes
 * everything at the end of the grace period. */
static void drain_tick(void *ctx)
{
	struct fe_thread *th = ctx;
	struct fe_node *node = th->node;
	uint64_t now = pn_loop_now_ms(th->loop), elapsed = now - th->drain_start_ms;
	uint64_t spread = drain_spread_ms(node), due, tick;

	if (elapsed >= node->cfg.drain_grace_ms) {
		struct fe_conn *c, *next;

		for (c = fe_conn_env_next(&th->env, NULL); c != NULL; c = next) {
			next = fe_conn_env_next(&th->env, c);
			fe_conn_abort(c, "drain grace period over");
		}
		thread_check_drained(th);
		return;
	}
	due = spread == 0 || elapsed >= spread ? th->drain_total :
		(uint64_t)th->drain_total * elapsed / spread + 1;
	if (due > th->drain_total)
		due = th->drain_total;
	while (th->drain_told < due) {
		struct fe_conn *c;

		for (c = fe_conn_env_next(&th->env, NULL); c != NULL && fe_conn_shutdown_asked(c);
		     c = fe_conn_env_next(&th->env, c))
			;
		if (c == NULL) {
			th->drain_told = th->drain_total;
			break;
		}
		th->drain_told++;
		fe_conn_shutdown(c, FE_SHUTDOWN_DRAIN);
	}
	thread_check_drained(th);
	if (th->drain_reported)
		return;
	if (th->drain_told < th->drain_total && th->drain_total > 0)
		tick = spread / th->drain_total;
	else
		tick = node->cfg.drain_grace_ms - elapsed;
	if (tick < DRAIN_TICK_MIN_MS)
		tick = DRAIN_TICK_MIN_MS;
	if (elapsed + tick > node->cfg.drain_grace_ms)
		tick = node->cfg.drain_grace_ms - elapsed;
	pn_io_timer_set(th->loop, th->drain_timer, tick > 0 ? tick : 1);
}

static void thread_conn_freed(struct fe_conn_env *env)
{
	thread_check_drained(env->thread);
}

static void thread_check_drained(struct fe_thread *th)
{
	if (!th->draining || th->drain_reported || th->env.conn_count > 0)
		return;
	th->drain_reported = true;
	if (th->drain_timer != PN_IO_NONE) {
		pn_io_close(th->loop, th->drain_timer);
		th->drain_timer = PN_IO_NONE;
	}
	pn_loop_post(th->node->threads[0].loop, node_thread_drained, th);
}

/* On each thread: stop accepting, then say goodbye over the spread. */
static void thread_drain_start(void *ctx)
{
	struct fe_thread *th = ctx;

	if (th->draining)
		return;
	th->draining = true;
	close_listeners(th);
	th->drain_start_ms = pn_loop_now_ms(th->loop);
	th->drain_total = th->env.conn_count;
	th->drain_told = 0;
	th->drain_timer = pn_io_add(th->loop, -1, 0, &drain_timer_handlers, th);
	if (th->drain_timer == PN_IO_NONE) {
		/* No slot for the timer: say goodbye to everybody at once. */
		struct fe_conn *c, *next;

		for (c = fe_conn_env_next(&th->env, NULL); c != NULL; c = next) {
			next = fe_conn_env_next(&th->env, c);
			fe_conn_shutdown(c, FE_SHUTDOWN_DRAIN);
		}
		thread_check_drained(th);
		return;
	}
	drain_tick(th);
}

static void node_stop_all(struct fe_node *node)
{
	if (node->stopping)
		return;
	node->stopping = true;
	for (unsigned int t = 1; t < node->nthreads; t++)
		pn_loop_stop(node->threads[t].loop);
	pn_loop_stop(node->threads[0].loop);
}

static void node_stop_cb(void *ctx)
{
	node_stop_all(ctx);
}

/* Thread 0: one more thread is empty. */
static void node_thread_drained(void *ctx)
{
	struct fe_thread *th = ctx;
	struct fe_node *node = th->node;

	if (++node->threads_drained == node->nthreads) {
		pn_info("event=drain_done");
		/* Out of the node registry, then stop. */
		fe_registry_node_remove(node->threads[0].registry, node_stop_cb, node);
	}
}

static void exit_timer_fired(void *ctx)
{
	struct fe_node *node = ctx;

	pn_warn("event=drain_timeout threads_drained=%u threads=%u", node->threads_drained,
		node->nthreads);
	node_stop_all(node);
}

static const struct pn_io_handlers exit_timer_handlers = {
	.on_timer = exit_timer_fired,
};

void fe_node_drain(struct fe_node *node)
{
	if (atomic_exchange(&node->draining, true))
		return;
	pn_info("event=drain_start sessions_hint=%u grace_ms=%" PRIu64 " spread_ms=%" PRIu64,
		node->threads[0].env.conn_count, node->cfg.drain_grace_ms,
		drain_spread_ms(node));
	pn_admin_set_draining(node->admin, true);
	pn_gauge_set(pn_metric_series(node->metrics.draining, NULL), 1);
	node->exit_timer = pn_io_add(node->threads[0].loop, -1, 0, &exit_timer_handlers, node);
	if (node->exit_timer != PN_IO_NONE)
		pn_io_timer_set(node->threads[0].loop, node->exit_timer,
				node->cfg.drain_grace_ms + 1000);
	for (unsigned int t = 0; t < node->nthreads; t++) {
		if (t == 0)
			thread_drain_start(&node->threads[0]);
		else if (pn_loop_post(node->threads[t].loop, thread_drain_start,
				      &node->threads[t]) < 0)
			pn_error("event=drain_post_failed thread=%u", t);
	}
}

/* ---- signals ---- */

static void reload_tls(struct fe_node *node)
{
	const char *error;

	if (node->tls == NULL) {
		pn_info("event=reload tls=none");
		return;
	}
	if (pn_tls_ctx_reload(node->tls, node->cfg.tls_cert, node->cfg.tls_key, &error) < 0)
		pn_error("event=reload_failed what=tls error=\"%s\"", error);
	else
		pn_info("event=reload what=tls cert=%s", node->cfg.tls_cert);
}

/* The configuration read again from its sources; only the limits are
 * taken from it (fe-node.h). */
static void reload_limits(struct fe_node *node)
{
	struct fe_config cfg;
	const char *error;

	if (fe_config_load(&cfg, node->config_path, node->config_sets, node->config_nsets,
			   &error) < 0 ||
	    fe_limits_reload(node, &cfg, &error) < 0) {
		pn_error("event=reload what=limits result=failed error=\"%s\"", error);
		fe_config_free(&cfg);
		return;
	}
	pn_info("event=reload what=limits result=ok threads=%u max_userip_sessions=%" PRId64
		" max_account_sessions=%" PRId64 " max_tenant_sessions=%" PRId64,
		node->nthreads, cfg.max_userip_sessions, cfg.max_account_sessions,
		cfg.max_tenant_sessions);
	fe_config_free(&cfg);
}

static void signal_on_poll(void *ctx, int revents)
{
	struct fe_node *node = ctx;
	struct signalfd_siginfo si;

	while (read(node->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			pn_info("event=signal signal=%s", si.ssi_signo == SIGTERM ? "TERM" : "INT");
			fe_node_drain(node);
			break;
		case SIGHUP:
			pn_info("event=signal signal=HUP");
			reload_tls(node);
			reload_limits(node);
			break;
		default:
			break;
		}
	}
	if (pn_io_poll(node->threads[0].loop, node->signal_io, POLLIN) < 0)
		pn_error("event=signal_poll_failed");
}

static const struct pn_io_handlers signal_handlers = {
	.on_poll = signal_on_poll,
};

static void handled_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

/* Called first thing, before any thread (loop or worker) exists, so that
 * every thread inherits the mask and the signals only arrive through the
 * signalfd of thread 0. */
static int block_signals(const char **error_r)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	handled_signals(&set);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
		*error_r = "cannot block signals";
		return -1;
	}
	return 0;
}

static int setup_signals(struct fe_node *node, const char **error_r)
{
	sigset_t set;

	handled_signals(&set);
	node->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (node->signal_fd < 0) {
		*error_r = "signalfd failed";
		return -1;
	}
	node->signal_io = pn_io_add(node->threads[0].loop, node->signal_fd, 0, &signal_handlers,
				    node);
	if (node->signal_io == PN_IO_NONE || pn_io_poll(node->threads[0].loop, node->signal_io,
							POLLIN) < 0) {
		*error_r = "cannot watch the signalfd";
		return -1;
	}
	return 0; /* the io owns signal_fd now; it stays readable through it */
}

/* ---- admin ---- */

static void node_ready(void *ctx, struct pn_admin_checks *checks)
{
	struct fe_node *node = ctx;
	bool ok = fe_backend_ready_checks(node->threads[0].backend, &node->cfg, checks);

	fe_limits_ready_check(&node->threads[0], checks);

	pn_gauge_set(pn_metric_series(node->metrics.ready, NULL),
		     ok && !atomic_load(&node->draining) ? 1 : 0);
}

/* ---- set-up ---- */

static unsigned int cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned int)n : 1;
}

static void default_name(char *dst, size_t size, const char *configured)
{
	if (configured != NULL && configured[0] != '\0') {
		snprintf(dst, size, "%s", configured);
		return;
	}
	if (gethostname(dst, size) < 0 || dst[0] == '\0')
		snprintf(dst, size, "localhost");
	dst[size - 1] = '\0';
}

static int thread_init(struct fe_node *node, unsigned int index, const char **error_r)
{
	struct fe_thread *th = &node->threads[index];
	struct fe_conn_env *env = &th->env;
	unsigned int per = (unsigned int)((uint64_t)node->cfg.max_connections / node->nthreads);

	th->node = node;
	th->index = index;
	th->drain_timer = PN_IO_NONE;
	th->loop = pn_loop_new(NULL, error_r);
	if (th->loop == NULL)
		return -1;
	env->loop = th->loop;
	env->thread = th;
	env->tls = node->tls;
	env->proxy_trusted = &node->proxy_trusted;
	env->plaintext_auth = &node->plaintext_auth;
	env->handshake_timeout_ms = node->cfg.handshake_timeout_ms;
	for (int svc = 0; svc < FE_SVC_COUNT; svc++) {
		switch (svc) {
		case FE_SVC_IMAP:
		case FE_SVC_IMAPS:
			env->idle_timeout_ms[svc] = node->cfg.imap_idle_timeout_ms;
			break;
		case FE_SVC_POP3:
		case FE_SVC_POP3S:
			env->idle_timeout_ms[svc] = node->cfg.pop3_idle_timeout_ms;
			break;
		default:
			env->idle_timeout_ms[svc] = node->cfg.smtp_idle_timeout_ms;
			break;
		}
	}
	env->linger_ms = 2000;
	env->goodbye_timeout_ms = 10000;
	env->output_buffer = (size_t)node->cfg.output_buffer;
	env->max_conns = per > 0 ? per : 1;
	env->node = node->node_name;
	env->hostname = node->hostname;
	env->thread_index = index;
	env->start_time = node->start_time;
	env->metrics = &node->metrics;
	env->on_conn_freed = thread_conn_freed;
	return 0;
}

int fe_node_init(struct fe_node *node, struct fe_config *cfg, const char **error_r)
{
	const char *error;

	memset(node, 0, sizeof(*node));
	node->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	node->signal_fd = -1;
	node->signal_io = PN_IO_NONE;
	node->exit_timer = PN_IO_NONE;
	node->start_time = (uint64_t)time(NULL);
	atomic_init(&node->draining, false);
	default_name(node->node_name, sizeof(node->node_name), node->cfg.node);
	default_name(node->hostname, sizeof(node->hostname), node->cfg.hostname);
	pn_log_set_node(node->node_name);
	pn_log_set_level(fe_config_pn_log_level(&node->cfg));
	if (block_signals(error_r) < 0)
		return -1;

	if (pn_cidr_list_parse(node->cfg.proxy_trusted, &node->proxy_trusted, error_r) < 0 ||
	    pn_cidr_list_parse(node->cfg.plaintext_auth_networks, &node->plaintext_auth,
			       error_r) < 0)
		return -1;
	if (fe_metrics_init(&node->metrics, error_r) < 0)
		return -1;
	node->throttle_metrics = mail_throttle_metrics_new(node->metrics.reg, error_r);
	if (node->throttle_metrics == NULL)
		return -1;
	if (node->cfg.tls_cert[0] != '\0' || node->cfg.tls_key[0] != '\0') {
		struct pn_tls_settings ts = {
			.cert_file = node->cfg.tls_cert,
			.key_file = node->cfg.tls_key,
			.ca_file = node->cfg.tls_ca[0] != '\0' ? node->cfg.tls_ca : NULL,
		};
		node->tls = pn_tls_ctx_new_server(&ts, &error);
		if (node->tls == NULL) {
			*error_r = error;
			return -1;
		}
	}
	{
		unsigned int workers = node->cfg.auth_workers > 0 ?
			(unsigned int)node->cfg.auth_workers : cores();
		node->auth_pool = pn_workpool_new(workers, (unsigned int)node->cfg.auth_queue,
						  error_r);
		if (node->auth_pool == NULL)
			return -1;
	}
	if (node->cfg.blob_cache_size > 0) {
		node->blob_cache = store_blob_cache_new((size_t)node->cfg.blob_cache_size);
		if (node->blob_cache == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		if (store_blob_cache_metrics(node->blob_cache, node->metrics.reg, error_r) < 0)
			return -1;
	}
	node->nthreads = node->cfg.threads > 0 ? (unsigned int)node->cfg.threads : cores();
	node->threads = calloc(node->nthreads, sizeof(*node->threads));
	if (node->threads == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (unsigned int t = 0; t < node->nthreads; t++) {
		pthread_mutex_init(&node->threads[t].reload_lock, NULL);
		for (int svc = 0; svc < FE_SVC_COUNT; svc++) {
			node->threads[t].listeners[svc].fd = -1;
			node->threads[t].listeners[svc].io = PN_IO_NONE;
		}
	}
	for (unsigned int t = 0; t < node->nthreads; t++)
		if (thread_init(node, t, error_r) < 0)
			return -1;
	if (bind_listeners(node, error_r) < 0)
		return -1;
	{
		struct pn_admin_settings as = {
			.listen = node->cfg.admin_listen,
			.metrics = node->metrics.reg,
			.ready = node_ready,
			.ready_ctx = node,
		};
		node->admin = pn_admin_new(node->threads[0].loop, &as, error_r);
		if (node->admin == NULL)
			return -1;
	}
	if (setup_signals(node, error_r) < 0)
		return -1;
	pn_gauge_set(pn_metric_series(node->metrics.draining, NULL), 0);
	return 0;
}

static int thread_start(struct fe_thread *th, const char **error_r)
{
	if (fe_backend_new(th, &th->node->cfg, &th->backend, error_r) < 0 ||
	    fe_limits_new(th, &th->limits, error_r) < 0 ||
	    fe_registry_new(th, &th->registry, error_r) < 0)
		return -1;
	return start_listeners(th, error_r);
}

/* After the thread's loop stopped: the throttle (over the Redis client),
 * storage (its callbacks may still reach the registry), then the registry. */
static void thread_stop(struct fe_thread *th)
{
	close_listeners(th);
	fe_limits_free(&th->limits);
	fe_backend_free(&th->backend);
	fe_registry_free(&th->registry);
}

/* A drain asked for from another thread (one failed to start): thread 0. */
static void drain_from_post(void *ctx)
{
	fe_node_drain(ctx);
}

static void *thread_main(void *arg)
{
	struct fe_thread *th = arg;
	const char *error;

	if (thread_start(th, &error) < 0) {
		pn_error("event=thread_start_failed thread=%u error=\"%s\"", th->index, error);
		pn_loop_post(th->node->threads[0].loop, drain_from_post, th->node);
	}
	if (pn_loop_run(th->loop) < 0)
		pn_error("event=loop_failed thread=%u", th->index);
	thread_stop(th);
	return NULL;
}

int fe_node_run(struct fe_node *node)
{
	const char *error;
	int ret = 0;

	if (thread_start(&node->threads[0], &error) < 0) {
		pn_error("event=start_failed error=\"%s\"", error);
		return -1;
	}
	for (unsigned int t = 1; t < node->nthreads; t++) {
		if (pthread_create(&node->threads[t].tid, NULL, thread_main, &node->threads[t]) != 0) {
			pn_error("event=thread_create_failed thread=%u", t);
			pn_loop_post(node->threads[0].loop, drain_from_post, node);
			break;
		}
		node->threads[t].started = true;
	}
	pn_info("event=started threads=%u", node->nthreads);
	if (pn_loop_run(node->threads[0].loop) < 0) {
		pn_error("event=loop_failed thread=0");
		ret = -1;
		node_stop_all(node);
	}
	for (unsigned int t = 1; t < node->nthreads; t++)
		if (node->threads[t].started)
			pthread_join(node->threads[t].tid, NULL);
	thread_stop(&node->threads[0]);
	pn_info("event=exit");
	return ret;
}

void fe_node_free(struct fe_node *node)
{
	pn_admin_free(&node->admin);
	if (node->threads != NULL) {
		for (unsigned int t = 0; t < node->nthreads; t++) {
			struct fe_thread *th = &node->threads[t];

			close_listeners(th);
			fe_limits_free(&th->limits);
			fe_backend_free(&th->backend);
			fe_registry_free(&th->registry);
			pn_loop_free(&th->loop);
			pthread_mutex_destroy(&th->reload_lock);
		}
		free(node->threads);
		node->threads = NULL;
	}
	if (node->signal_io == PN_IO_NONE && node->signal_fd >= 0)
		close(node->signal_fd);
	pn_workpool_free(&node->auth_pool);
	store_blob_cache_free(&node->blob_cache);	/* after the threads' stores */
	pn_tls_ctx_free(&node->tls);
	pn_cidr_list_free(&node->proxy_trusted);
	pn_cidr_list_free(&node->plaintext_auth);
	mail_throttle_metrics_free(&node->throttle_metrics);
	fe_metrics_free(&node->metrics);
	fe_config_free(&node->cfg);
}
