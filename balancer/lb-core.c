/* The balancer's control thread: start-up (configuration, metrics, limits,
 * listeners, relay threads, admin server, signals), the servers and
 * backends built from the topology and kept across reloads, the snapshot
 * the relay threads read and its safe replacement (a reload publishes a
 * new one; the old one and retired backends are freed once every relay
 * thread has run a function posted after the switch), the weights derived
 * from health, drain and slow start, the 100 ms tick, SIGHUP reload and
 * the SIGTERM drain. See lb.h for who owns what.
 */
#include "lb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "postern/hash.h"
#include "postern/log.h"
#include "postern/tls.h"

#define LISTEN_BACKLOG 4096
#define SWEEP_INTERVAL_MS 10000

/* ---- metrics ---- */

static const double connect_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
					  0.05, 0.1, 0.25, 0.5, 1, 2.5 };

static int metrics_init(struct lb *lb, const char **error_r)
{
	static const char *const be_labels[] = { "backend", "protocol", NULL };
	static const char *const bytes_labels[] = { "backend", "protocol", "direction", NULL };
	static const char *const check_labels[] = { "backend", "check", NULL };
	static const char *const proto_labels[] = { "protocol", NULL };
	static const char *const refused_labels[] = { "protocol", "reason", NULL };
	static const char *const result_labels[] = { "result", NULL };
	struct lb_metrics *m = &lb->m;

	lb->metrics = pn_metrics_new();
	if (lb->metrics == NULL) {
		*error_r = "metrics: out of memory";
		return -1;
	}
#define ADD(field, type, nm, hlp, lbls, ...)                                   \
	do {                                                                   \
		m->field = pn_metrics_add(lb->metrics, type,                   \
			&(struct pn_metric_opts){ .name = nm, .help = hlp,     \
				.labels = lbls, __VA_ARGS__ }, error_r);       \
		if (m->field == NULL)                                          \
			return -1;                                             \
	} while (0)
	ADD(backend_up, PN_METRIC_GAUGE, "backend_up",
	    "1 while the backend passes its health checks.", be_labels);
	ADD(backend_weight, PN_METRIC_GAUGE, "backend_weight",
	    "Effective weight (0: out of rotation; below the configured weight during slow start).",
	    be_labels);
	ADD(backend_active, PN_METRIC_GAUGE, "backend_active_connections",
	    "Connections relayed to the backend now.", be_labels);
	ADD(backend_total, PN_METRIC_COUNTER, "backend_connections_total",
	    "Connections sent to the backend (including failed attempts).", be_labels);
	ADD(backend_connect_failures, PN_METRIC_COUNTER, "backend_connect_failures_total",
	    "Connects that failed (refused, reset, timed out, closed before the greeting).",
	    be_labels);
	ADD(backend_check_failures, PN_METRIC_COUNTER, "backend_check_failures_total",
	    "Failed health checks (check: the protocol, or readyz).", check_labels);
	ADD(backend_connect_seconds, PN_METRIC_HISTOGRAM, "backend_connect_seconds",
	    "Time to connect to the backend.", be_labels, .buckets = connect_buckets,
	    .bucket_count = sizeof(connect_buckets) / sizeof(connect_buckets[0]));
	ADD(backend_bytes, PN_METRIC_COUNTER, "backend_bytes_total",
	    "Bytes relayed (direction: to_backend or from_backend).", bytes_labels);
	ADD(accepted, PN_METRIC_COUNTER, "listener_accepted_total",
	    "Client connections accepted.", proto_labels);
	ADD(refused, PN_METRIC_COUNTER, "listener_refused_total",
	    "Client connections refused (reason: no_backend, limit_total, limit_source, "
	    "limit_rate).", refused_labels);
	ADD(active, PN_METRIC_GAUGE, "connections_active", "Client connections open now.",
	    NULL);
	ADD(tls_handshakes, PN_METRIC_COUNTER, "listener_tls_handshakes_total",
	    "TLS handshakes completed at the balancer (L7 listeners).", proto_labels);
	ADD(login_failures, PN_METRIC_COUNTER, "listener_login_failures_total",
	    "Logins the frontend refused (L7 listeners).", proto_labels);
	ADD(reloads, PN_METRIC_COUNTER, "reloads_total", "Configuration reloads (SIGHUP).",
	    result_labels);
#undef ADD
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		m->accepted_s[p] = pn_metric_series(m->accepted, PN_LABELS(lb_protos[p].name));
		m->tls_handshakes_s[p] = pn_metric_series(m->tls_handshakes,
							  PN_LABELS(lb_protos[p].name));
		m->login_failures_s[p] = pn_metric_series(m->login_failures,
							  PN_LABELS(lb_protos[p].name));
	}
	m->active_s = pn_metric_series(m->active, NULL);
	pn_metric_series(m->reloads, PN_LABELS("ok"));
	pn_metric_series(m->reloads, PN_LABELS("failed"));
	return 0;
}

/* ---- servers and backends ---- */

struct lb_server *lb_server_find(struct lb *lb, const char *name)
{
	for (struct lb_server *s = lb->servers; s != NULL; s = s->next)
		if (!s->retired && strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static struct lb_backend *backend_find(struct lb *lb, const struct lb_server *srv,
				       enum lb_proto p)
{
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next)
		if (!b->retired && b->srv == srv && b->proto == p)
			return b;
	return NULL;
}

static struct lb_server *server_new(struct lb *lb, const struct lb_server_conf *sc,
				    uint64_t now)
{
	struct lb_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", sc->name);
	lb_health_init(&s->ready, true, now);
	lb_health_schedule_new(lb, &s->next_check_ms, now);
	snprintf(s->last_check, sizeof(s->last_check), "not checked yet");
	s->m_check_failures = pn_metric_series(lb->m.backend_check_failures,
					       PN_LABELS(s->name, "readyz"));
	s->next = lb->servers;
	lb->servers = s;
	lb_admin_add_server_routes(lb, s->name);
	return s;
}

static struct lb_backend *backend_new(struct lb *lb, struct lb_server *srv, enum lb_proto p,
				      const struct sockaddr_storage *addr, socklen_t len,
				      uint64_t now)
{
	struct lb_backend *b = calloc(1, sizeof(*b));
	const char *pn = lb_protos[p].name;

	if (b == NULL)
		return NULL;
	b->srv = srv;
	snprintf(b->name, sizeof(b->name), "%s", srv->name);
	b->proto = p;
	b->id = pn_hash64(b->name, strlen(b->name), 0);
	memcpy(&b->addr, addr, sizeof(b->addr));
	b->addr_len = len;
	pn_format_addr((const struct sockaddr *)addr, b->addr_text, sizeof(b->addr_text));
	b->m_up = pn_metric_series(lb->m.backend_up, PN_LABELS(b->name, pn));
	b->m_weight = pn_metric_series(lb->m.backend_weight, PN_LABELS(b->name, pn));
	b->m_active = pn_metric_series(lb->m.backend_active, PN_LABELS(b->name, pn));
	b->m_total = pn_metric_series(lb->m.backend_total, PN_LABELS(b->name, pn));
	b->m_connect_failures = pn_metric_series(lb->m.backend_connect_failures,
						 PN_LABELS(b->name, pn));
	b->m_check_failures = pn_metric_series(lb->m.backend_check_failures,
					       PN_LABELS(b->name, pn));
	b->m_connect_seconds = pn_metric_series(lb->m.backend_connect_seconds,
						PN_LABELS(b->name, pn));
	b->m_bytes_to = pn_metric_series(lb->m.backend_bytes, PN_LABELS(b->name, pn, "to_backend"));
	b->m_bytes_from = pn_metric_series(lb->m.backend_bytes,
					   PN_LABELS(b->name, pn, "from_backend"));
	lb_health_init(&b->probe, true, now);
	lb_health_schedule_new(lb, &b->next_check_ms, now);
	snprintf(b->last_check, sizeof(b->last_check), "not checked yet");
	b->state = "up";
	srv->nbackends++;
	b->next = lb->backends;
	lb->backends = b;
	return b;
}

static void backend_retire(struct lb *lb, struct lb_backend *b)
{
	b->retired = true;
	b->retired_epoch = UINT64_MAX; /* set when the snapshot without it is out */
	atomic_store(&b->eff_weight, 0);
	pn_gauge_set(b->m_up, 0);
	pn_gauge_set(b->m_weight, 0);
	lb_check_cancel(lb, &b->check);
	pn_info("event=backend_removed backend=%s proto=%s addr=%s", b->name,
		lb_protos[b->proto].name, b->addr_text);
}

static void server_retire(struct lb *lb, struct lb_server *s)
{
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next)
		if (!b->retired && b->srv == s)
			backend_retire(lb, b);
	s->retired = true;
	lb_check_cancel(lb, &s->check);
}

static bool all_workers_passed(struct lb *lb, uint64_t epoch)
{
	for (unsigned int i = 0; i < lb->nworkers; i++) {
		struct lb_worker *w = &lb->workers[i];

		if (w->started && !atomic_load(&w->exited) &&
		    atomic_load(&w->seen_epoch) < epoch)
			return false;
	}
	return true;
}

/* Frees retired snapshots, backends and servers nobody can reach. */
static void free_retired(struct lb *lb)
{
	struct lb_snapshot **sp = &lb->old_snaps;
	struct lb_backend **bp = &lb->backends;
	struct lb_server **vp = &lb->servers;

	while (*sp != NULL) {
		struct lb_snapshot *s = *sp;

		if (all_workers_passed(lb, s->retired_epoch)) {
			*sp = s->next_old;
			free(s);
		} else {
			sp = &s->next_old;
		}
	}
	while (*bp != NULL) {
		struct lb_backend *b = *bp;

		if (b->retired && b->check == NULL && all_workers_passed(lb, b->retired_epoch) &&
		    atomic_load_explicit(&b->active, memory_order_acquire) == 0) {
			*bp = b->next;
			b->srv->nbackends--;
			free(b);
		} else {
			bp = &b->next;
		}
	}
	while (*vp != NULL) {
		struct lb_server *s = *vp;

		if (s->retired && s->nbackends == 0 && s->check == NULL) {
			*vp = s->next;
			free(s);
		} else {
			vp = &s->next;
		}
	}
}

/* Builds and publishes a snapshot of the current backends in topology
 * order; the one it replaces waits for the workers. */
static int publish(struct lb *lb, const struct lb_topology *t)
{
	struct lb_snapshot *s = calloc(1, sizeof(*s)), *old;
	uint64_t epoch;

	if (s == NULL)
		return -1;
	s->gen = ++lb->gen;
	s->algo = (enum lb_algo)lb->cfg.algorithm;
	s->balance_pct = (unsigned int)lb->cfg.chash_balance;
	s->proxy = (enum lb_proxy_mode)lb->cfg.proxy_protocol;
	s->relay_buffer = (uint32_t)lb->cfg.relay_buffer;
	s->relay_splice = lb->cfg.relay_splice;
	s->connect_timeout_ms = lb->cfg.connect_timeout_ms;
	s->idle_timeout_ms = lb->cfg.idle_timeout_ms;
	for (size_t i = 0; i < lb->cfg.l7.count; i++) {
		int p = lb_proto_by_name(lb->cfg.l7.items[i]);

		if (p >= 0)
			s->l7[p] = true;
	}
	s->l7_route = (enum lb_l7_route)lb->cfg.l7_route;
	s->l7_require_tls = lb->cfg.l7_require_tls;
	s->login_timeout_ms = lb->cfg.login_timeout_ms;
	s->smtp_size = lb->cfg.smtp_size;
	snprintf(s->hostname, sizeof(s->hostname), "%s", lb->cfg.node);
	for (size_t i = 0; i < t->n; i++) {
		struct lb_server *srv = lb_server_find(lb, t->servers[i].name);

		if (srv == NULL)
			continue;
		for (int p = 0; p < LB_PROTO_COUNT; p++) {
			struct lb_backend *b = backend_find(lb, srv, (enum lb_proto)p);

			if (b != NULL)
				s->pool[p].be[s->pool[p].n++] = b;
		}
	}
	old = atomic_exchange_explicit(&lb->snap, s, memory_order_acq_rel);
	epoch = atomic_fetch_add(&lb->epoch, 1) + 1;
	if (old != NULL) {
		old->retired_epoch = epoch;
		old->next_old = lb->old_snaps;
		lb->old_snaps = old;
	}
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next)
		if (b->retired && b->retired_epoch == UINT64_MAX)
			b->retired_epoch = epoch;
	for (unsigned int i = 0; i < lb->nworkers; i++)
		if (lb->workers[i].loop != NULL)
			lb_worker_post_epoch(&lb->workers[i]);
	return 0;
}

/* Creates, updates and retires servers and backends to match t. */
static int apply_topology(struct lb *lb, const struct lb_topology *t, uint64_t now)
{
	for (struct lb_server *s = lb->servers; s != NULL; s = s->next) {
		bool keep = false;

		if (s->retired)
			continue;
		for (size_t i = 0; i < t->n && !keep; i++)
			keep = strcmp(t->servers[i].name, s->name) == 0;
		if (!keep) {
			pn_info("event=server_removed server=%s", s->name);
			server_retire(lb, s);
		}
	}
	for (size_t i = 0; i < t->n; i++) {
		const struct lb_server_conf *sc = &t->servers[i];
		struct lb_server *srv = lb_server_find(lb, sc->name);

		if (srv == NULL) {
			srv = server_new(lb, sc, now);
			if (srv == NULL)
				return -1;
		}
		srv->weight = sc->weight;
		if (srv->has_admin != sc->has_admin ||
		    (sc->has_admin && memcmp(&srv->admin, &sc->admin, sizeof(sc->admin)) != 0)) {
			lb_check_cancel(lb, &srv->check);
			lb_health_init(&srv->ready, true, now);
			srv->ready_draining = false;
		}
		srv->has_admin = sc->has_admin;
		memcpy(&srv->admin, &sc->admin, sizeof(srv->admin));
		srv->admin_len = sc->admin_len;
		if (sc->has_admin)
			pn_format_addr((const struct sockaddr *)&sc->admin, srv->admin_text,
				       sizeof(srv->admin_text));
		else
			srv->admin_text[0] = '\0';
		for (int p = 0; p < LB_PROTO_COUNT; p++) {
			struct lb_backend *b = backend_find(lb, srv, (enum lb_proto)p);

			if (b != NULL && (!sc->has[p] || b->addr_len != sc->addr_len[p] ||
					  memcmp(&b->addr, &sc->addr[p], sc->addr_len[p]) != 0)) {
				backend_retire(lb, b);
				b = NULL;
			}
			if (b == NULL && sc->has[p]) {
				b = backend_new(lb, srv, (enum lb_proto)p, &sc->addr[p],
						sc->addr_len[p], now);
				if (b == NULL)
					return -1;
				pn_info("event=backend_added backend=%s proto=%s addr=%s",
					b->name, lb_protos[p].name, b->addr_text);
			}
		}
	}
	lb_update_weights(lb);
	return publish(lb, t);
}

void lb_update_weights(struct lb *lb)
{
	uint64_t now = pn_loop_now_ms(lb->loop);

	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next) {
		struct lb_server *srv = b->srv;
		bool http = lb->cfg.check_http && srv->has_admin;
		bool up, drain;
		uint32_t w = 0;

		if (b->retired)
			continue;
		up = b->probe.up && (!http || srv->ready.up);
		drain = srv->admin_drain || (http && srv->ready_draining);
		if (!up) {
			b->state = "down";
		} else if (drain) {
			b->state = "draining";
		} else {
			uint64_t since = b->probe.up_since_ms;

			if (http && srv->ready.up_since_ms > since)
				since = srv->ready.up_since_ms;
			w = lb_slowstart_weight(srv->weight * LB_WEIGHT_SCALE, since, now,
						lb->cfg.slowstart_ms);
			b->state = w < srv->weight * LB_WEIGHT_SCALE ? "starting" : "up";
		}
		atomic_store(&b->eff_weight, w);
		pn_gauge_set(b->m_up, up ? 1 : 0);
		pn_gauge_set(b->m_weight, (double)w / LB_WEIGHT_SCALE);
	}
}

unsigned int lb_connections(struct lb *lb)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < lb->nworkers; i++)
		n += atomic_load_explicit(&lb->workers[i].nconns_shared, memory_order_relaxed);
	return n;
}

/* ---- reload ---- */

static int apply_sni(struct lb *lb, const struct lb_config *cfg, const char **error_r);

static void limits_settings(const struct lb_config *cfg, struct lb_limits_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->max_total = (uint32_t)cfg->max_connections;
	set->per_source = (uint32_t)cfg->max_connections_per_source;
	set->rate_per_source = (uint32_t)cfg->max_rate_per_source;
}

void lb_reload(struct lb *lb)
{
	struct lb_config cfg;
	struct lb_topology t = { NULL, 0 };
	struct lb_limits_settings ls;
	struct lb_dns_view view;
	const char *err = NULL;

	memset(&cfg, 0, sizeof(cfg));
	lb_dns_view(lb, &view);
	if (lb_config_load(&cfg, lb->config_path, lb->sets, lb->nsets, &err) < 0 ||
	    lb_dns_sync(lb, &cfg, &err) < 0 || lb_topology_build(&cfg, &view, &t, &err) < 0) {
		snprintf(lb->last_reload, sizeof(lb->last_reload), "failed: %s", err);
		pn_error("event=reload_failed error=\"%s\"", err);
		pn_counter_inc(pn_metric_series(lb->m.reloads, PN_LABELS("failed")));
		lb->reload_failures++;
		lb_config_free(&cfg);
		return;
	}
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		if (strcmp(cfg.listen[p], lb->cfg.listen[p]) != 0)
			pn_warn("event=reload_listen_ignored proto=%s listen=%s "
				"note=\"listener changes need a restart\"", lb_protos[p].name,
				cfg.listen[p]);
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		if (strcmp(cfg.proxy_accept_from[p], lb->cfg.proxy_accept_from[p]) != 0)
			pn_warn("event=reload_ignored keys=%s_proxy_accept_from "
				"note=\"this needs a restart\"", lb_protos[p].name);
	if (strcmp(cfg.admin_listen, lb->cfg.admin_listen) != 0 || cfg.threads != lb->cfg.threads)
		pn_warn("event=reload_ignored keys=\"admin_listen threads\" "
			"note=\"these need a restart\"");
	/* Keep what cannot change at run time. */
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		char *tmp = cfg.listen[p];

		cfg.listen[p] = lb->cfg.listen[p];
		lb->cfg.listen[p] = tmp;
	}
	{
		char *tmp = cfg.admin_listen;

		cfg.admin_listen = lb->cfg.admin_listen;
		lb->cfg.admin_listen = tmp;
		cfg.threads = lb->cfg.threads;
		cfg.admin_control = lb->cfg.admin_control;
	}
	{
		struct pn_config_list tmp = cfg.l7;

		cfg.l7 = lb->cfg.l7;
		lb->cfg.l7 = tmp;
	}
	if (lb->tls != NULL && cfg.tls_cert[0] != '\0' &&
	    pn_tls_ctx_reload(lb->tls, cfg.tls_cert,
			      cfg.tls_key[0] != '\0' ? cfg.tls_key : cfg.tls_cert, &err) < 0)
		pn_error("event=tls_reload_failed error=\"%s\" note=\"the old certificate "
			 "stays\"", err);
	if (apply_sni(lb, &cfg, &err) < 0)
		pn_error("event=tls_sni_reload_failed error=\"%s\"", err);
	lb_config_free(&lb->cfg);
	lb->cfg = cfg;
	lb_dns_prune(lb);
	pn_log_set_level((enum pn_log_level)cfg.log_level);
	limits_settings(&lb->cfg, &ls);
	lb_limits_update(lb->limits, &ls);
	if (apply_topology(lb, &t, pn_loop_now_ms(lb->loop)) < 0) {
		snprintf(lb->last_reload, sizeof(lb->last_reload), "failed: out of memory");
		pn_error("event=reload_failed error=\"out of memory\"");
		pn_counter_inc(pn_metric_series(lb->m.reloads, PN_LABELS("failed")));
		lb->reload_failures++;
	} else {
		snprintf(lb->last_reload, sizeof(lb->last_reload), "ok: %zu servers", t.n);
		pn_info("event=reloaded servers=%zu algorithm=%s", t.n,
			lb_algo_name((enum lb_algo)lb->cfg.algorithm));
		pn_counter_inc(pn_metric_series(lb->m.reloads, PN_LABELS("ok")));
		lb->reloads++;
	}
	lb_topology_free(&t);
}

void lb_topology_refresh(struct lb *lb, const char *why)
{
	struct lb_topology t = { NULL, 0 };
	struct lb_dns_view view;
	const char *err = NULL;

	lb_dns_view(lb, &view);
	if (lb_topology_build(&lb->cfg, &view, &t, &err) < 0) {
		pn_error("event=topology_failed why=%s error=\"%s\" note=\"the servers stay "
			 "as they are\"", why, err);
		return;
	}
	if (apply_topology(lb, &t, pn_loop_now_ms(lb->loop)) < 0)
		pn_error("event=topology_failed why=%s error=\"out of memory\"", why);
	else
		pn_info("event=topology_changed why=%s servers=%zu", why, t.n);
	lb_topology_free(&t);
}

/* ---- stopping ---- */

void lb_begin_stop(struct lb *lb)
{
	uint64_t now = pn_loop_now_ms(lb->loop);

	if (lb->stopping)
		return;
	lb->stopping = true;
	lb->stop_deadline_ms = now + lb->cfg.shutdown_grace_ms;
	pn_info("event=stopping connections=%u grace_ms=%llu", lb_connections(lb),
		(unsigned long long)lb->cfg.shutdown_grace_ms);
	if (lb->admin != NULL)
		pn_admin_set_draining(lb->admin, true);
	for (unsigned int i = 0; i < lb->nworkers; i++)
		lb_worker_post_stop_accepting(&lb->workers[i]);
	for (struct lb_server *s = lb->servers; s != NULL; s = s->next)
		lb_check_cancel(lb, &s->check);
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next)
		lb_check_cancel(lb, &b->check);
}

static void stop_progress(struct lb *lb, uint64_t now)
{
	bool all_exited = true;

	if (!lb->stopping)
		return;
	if (!lb->quit_sent && (lb_connections(lb) == 0 || now >= lb->stop_deadline_ms)) {
		unsigned int left = lb_connections(lb);

		if (left > 0)
			pn_warn("event=grace_expired connections_closed=%u", left);
		for (unsigned int i = 0; i < lb->nworkers; i++)
			lb_worker_post_quit(&lb->workers[i]);
		lb->quit_sent = true;
	}
	for (unsigned int i = 0; i < lb->nworkers; i++)
		if (lb->workers[i].started && !atomic_load(&lb->workers[i].exited))
			all_exited = false;
	if (lb->quit_sent && all_exited && lb->nchecks == 0)
		pn_loop_stop(lb->loop);
}

/* ---- tick, wake-ups, signals ---- */

static void sample_rate(struct lb *lb, uint64_t now)
{
	uint64_t total = 0;

	if (now < lb->next_sample_ms)
		return;
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		total += pn_counter_value(lb->m.accepted_s[p]);
	if (lb->next_sample_ms != 0) {
		lb->cps[lb->cps_head] = (uint32_t)(total - lb->last_accepted);
		lb->cps_head = (lb->cps_head + 1) % LB_RATE_SAMPLES;
		if (lb->cps_count < LB_RATE_SAMPLES)
			lb->cps_count++;
	}
	lb->last_accepted = total;
	lb->next_sample_ms = (lb->next_sample_ms == 0 ? now : lb->next_sample_ms) + 1000;
	if (lb->next_sample_ms <= now)
		lb->next_sample_ms = now + 1000;
}

static void tick(void *ctx)
{
	struct lb *lb = ctx;
	uint64_t now = pn_loop_now_ms(lb->loop);

	lb_health_passive(lb, now);
	if (!lb->stopping) {
		lb_health_tick(lb, now);
		lb_dns_tick(lb, now);
	}
	lb_update_weights(lb);
	free_retired(lb);
	sample_rate(lb, now);
	if (now >= lb->next_sweep_ms) {
		lb_limits_sweep(lb->limits, now);
		lb->next_sweep_ms = now + SWEEP_INTERVAL_MS;
	}
	stop_progress(lb, now);
	pn_io_timer_set(lb->loop, lb->tick_io, LB_TICK_MS);
}

void lb_control_wake(void *ctx)
{
	struct lb *lb = ctx;
	uint64_t now = pn_loop_now_ms(lb->loop);

	lb_health_passive(lb, now);
	stop_progress(lb, now);
}

static const struct pn_io_handlers tick_handlers = { .on_timer = tick };

static void on_signal(void *ctx, int revents)
{
	struct lb *lb = ctx;
	struct signalfd_siginfo si;
	int fd = pn_io_fd(lb->loop, lb->sig_io);

	while (fd >= 0 && read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			pn_info("event=signal signal=HUP action=reload");
			lb_reload(lb);
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			pn_info("event=signal signal=%s action=stop",
				si.ssi_signo == SIGTERM ? "TERM" : "INT");
			lb_begin_stop(lb);
		}
	}
	if (pn_io_poll(lb->loop, lb->sig_io, POLLIN) < 0)
		pn_error("event=signal_poll_failed error=%s", strerror(errno));
}

static const struct pn_io_handlers signal_handlers = { .on_poll = on_signal };

/* ---- start and end ---- */

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		/* "::" and "::ffff:0.0.0.0" */
		return IN6_IS_ADDR_UNSPECIFIED(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr32[3] == 0);
	}
	return true;
}

/* Binds every enabled listener for one worker. For port 0 the first
 * worker's port is used by the others (SO_REUSEPORT needs the same). */
static int open_listeners(struct lb *lb, int *fds, const char **error_r)
{
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		struct sockaddr_storage ss;
		socklen_t len;
		char host[INET6_ADDRSTRLEN];
		uint16_t port;
		const void *a;

		fds[p] = -1;
		if (lb->cfg.listen[p][0] == '\0')
			continue;
		if (lb->listen_text[p][0] != '\0') {
			/* Bound before: same address, the port actually bound. */
			if (pn_parse_hostport(lb->listen_text[p], &ss, &len) < 0) {
				*error_r = "bad listen address";
				return -1;
			}
		} else if (pn_parse_hostport(lb->cfg.listen[p], &ss, &len) < 0) {
			*error_r = "bad listen address";
			return -1;
		}
		if (ss.ss_family == AF_INET6) {
			a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		} else {
			a = &((struct sockaddr_in *)&ss)->sin_addr;
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
		if (inet_ntop(ss.ss_family, a, host, sizeof(host)) == NULL) {
			*error_r = "bad listen address";
			return -1;
		}
		fds[p] = pn_listen_tcp(host, port, LISTEN_BACKLOG, error_r);
		if (fds[p] < 0) {
			for (int q = 0; q < p; q++)
				if (fds[q] >= 0)
					close(fds[q]);
			return -1;
		}
		if (lb->listen_text[p][0] == '\0') {
			struct sockaddr_storage bound;
			socklen_t blen = sizeof(bound);

			if (getsockname(fds[p], (struct sockaddr *)&bound, &blen) == 0) {
				pn_format_addr((struct sockaddr *)&bound, lb->listen_text[p],
					       sizeof(lb->listen_text[p]));
				memcpy(&lb->listen_ss[p], &bound, sizeof(bound));
				lb->listen_fixed[p] = !is_wildcard(&bound);
			}
		}
	}
	return 0;
}

void lb_health_schedule_new(struct lb *lb, uint64_t *next_check_ms, uint64_t now)
{
	/* Spread the first checks over one interval. */
	uint64_t interval = lb->cfg.check_interval_ms;
	static uint64_t spread;

	spread = spread * 6364136223846793005ull + 1442695040888963407ull;
	*next_check_ms = now + (interval > 0 ? (spread >> 33) % interval : 0);
}

/* Makes the SNI table of lb->tls match cfg->tls_sni: adds (or replaces)
 * every listed name, removes the ones no longer listed. Returns 0, or -1
 * with *error_r (a bad file: names before it are in place). */
static int apply_sni(struct lb *lb, const struct lb_config *cfg, const char **error_r)
{
	static __thread char msg[512];
	char **names;
	size_t n = 0;

	if (lb->tls == NULL) {
		if (cfg->tls_sni.count == 0)
			return 0;
		*error_r = "tls_sni needs tls_cert (and an l7 listener)";
		return -1;
	}
	names = calloc(cfg->tls_sni.count + 1, sizeof(*names));
	if (names == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < cfg->tls_sni.count; i++) {
		const char *item = cfg->tls_sni.items[i], *eq = strchr(item, '=');
		const char *err = NULL;

		names[n] = strndup(item, (size_t)(eq - item));
		if (names[n] == NULL ||
		    pn_tls_ctx_add_sni(lb->tls, names[n], eq + 1, eq + 1, &err) < 0) {
			snprintf(msg, sizeof(msg), "tls_sni %s: %s", item,
				 err != NULL ? err : "out of memory");
			*error_r = msg;
			for (size_t k = 0; k <= n; k++)
				free(names[k]);
			free(names);
			return -1;
		}
		n++;
	}
	for (size_t i = 0; i < lb->sni_count; i++) {
		bool keep = false;

		for (size_t k = 0; k < n && !keep; k++)
			keep = strcmp(lb->sni_names[i], names[k]) == 0;
		if (!keep)
			pn_tls_ctx_remove_sni(lb->tls, lb->sni_names[i]);
		free(lb->sni_names[i]);
	}
	free(lb->sni_names);
	lb->sni_names = names;
	lb->sni_count = n;
	return 0;
}

/* The L7 server context, when a certificate is configured. */
static int tls_init(struct lb *lb, const char **error_r)
{
	struct pn_tls_settings set;
	static __thread char msg[256];

	for (size_t i = 0; i < lb->cfg.l7.count; i++) {
		int p = lb_proto_by_name(lb->cfg.l7.items[i]);

		if (p >= 0 && lb_protos[p].implicit_tls && lb->cfg.tls_cert[0] == '\0') {
			snprintf(msg, sizeof(msg), "l7 on %s needs tls_cert and tls_key",
				 lb_protos[p].name);
			*error_r = msg;
			return -1;
		}
	}
	if (lb->cfg.l7.count == 0 || lb->cfg.tls_cert[0] == '\0')
		return apply_sni(lb, &lb->cfg, error_r);
	memset(&set, 0, sizeof(set));
	set.cert_file = lb->cfg.tls_cert;
	set.key_file = lb->cfg.tls_key[0] != '\0' ? lb->cfg.tls_key : lb->cfg.tls_cert;
	lb->tls = pn_tls_ctx_new_server(&set, error_r);
	if (lb->tls == NULL)
		return -1;
	return apply_sni(lb, &lb->cfg, error_r);
}

int lb_init(struct lb *lb, const char **error_r)
{
	struct lb_topology t = { NULL, 0 };
	struct lb_limits_settings ls;
	sigset_t mask;
	unsigned int nthreads;
	int sfd;

	if (lb_config_load(&lb->cfg, lb->config_path, lb->sets, lb->nsets, error_r) < 0)
		return -1;
	pn_log_set_node(lb->cfg.node);
	/* The enum's words are listed in pn_log_level order. */
	pn_log_set_level((enum pn_log_level)lb->cfg.log_level);
	/* DNS entries have no addresses yet: the first tick resolves them. */
	if (lb_topology_build(&lb->cfg, NULL, &t, error_r) < 0)
		return -1;
	if (metrics_init(lb, error_r) < 0)
		goto fail;
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		if (pn_cidr_list_parse(lb->cfg.proxy_accept_from[p], &lb->proxy_accept[p],
				       error_r) < 0)
			goto fail;
	limits_settings(&lb->cfg, &ls);
	lb->limits = lb_limits_new(&ls, error_r);
	if (lb->limits == NULL)
		goto fail;
	if (tls_init(lb, error_r) < 0)
		goto fail;
	lb->loop = pn_loop_new(NULL, error_r);
	if (lb->loop == NULL)
		goto fail;
	lb->started_ms = pn_loop_now_ms(lb->loop);
	if (lb_admin_init(lb, error_r) < 0 || lb_dns_sync(lb, &lb->cfg, error_r) < 0)
		goto fail;
	if (apply_topology(lb, &t, lb->started_ms) < 0) {
		*error_r = "out of memory";
		goto fail;
	}
	lb_topology_free(&t);

	/* Signals are read from a signalfd on the control loop; every thread
	 * (created below, inheriting the mask) leaves them blocked. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		*error_r = "signalfd failed";
		return -1;
	}
	lb->sig_io = pn_io_add(lb->loop, sfd, 0, &signal_handlers, lb);
	if (lb->sig_io == PN_IO_NONE || pn_io_poll(lb->loop, lb->sig_io, POLLIN) < 0) {
		*error_r = "cannot watch signals";
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);

	nthreads = (unsigned int)lb->cfg.threads;
	if (nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nthreads = n > 0 ? (unsigned int)n : 1;
	}
	lb->workers = calloc(nthreads, sizeof(*lb->workers));
	if (lb->workers == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (unsigned int i = 0; i < nthreads; i++) {
		int fds[LB_PROTO_COUNT];

		if (open_listeners(lb, fds, error_r) < 0)
			return -1;
		lb->nworkers = i + 1;
		if (lb_worker_init(&lb->workers[i], lb, i, fds, error_r) < 0)
			return -1;
	}
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		size_t n = atomic_load(&lb->snap)->pool[p].n;

		if (lb->cfg.listen[p][0] != '\0')
			pn_info("event=listening proto=%s addr=%s backends=%zu", lb_protos[p].name,
				lb->listen_text[p], n);
	}
	lb->tick_io = pn_io_add(lb->loop, -1, 0, &tick_handlers, lb);
	if (lb->tick_io == PN_IO_NONE || pn_io_timer_set(lb->loop, lb->tick_io, LB_TICK_MS) < 0) {
		*error_r = "cannot set the tick";
		return -1;
	}
	return 0;
fail:
	lb_topology_free(&t);
	return -1;
}

int lb_run(struct lb *lb)
{
	for (unsigned int i = 0; i < lb->nworkers; i++) {
		if (lb_worker_start(&lb->workers[i]) < 0) {
			pn_error("event=thread_failed worker=%u", i);
			lb_begin_stop(lb);
			break;
		}
	}
	pn_info("event=started threads=%u algorithm=%s proxy_protocol=%s", lb->nworkers,
		lb_algo_name((enum lb_algo)lb->cfg.algorithm),
		lb->cfg.proxy_protocol == LB_PROXY_V2 ? "v2" : "off");
	if (pn_loop_run(lb->loop) < 0) {
		pn_error("event=loop_failed worker=control");
		lb->exit_code = 1;
	}
	pn_info("event=stopped");
	return lb->exit_code;
}

void lb_free(struct lb *lb)
{
	struct lb_snapshot *s;

	/* Workers first: they may still reference backends. */
	for (unsigned int i = 0; i < lb->nworkers; i++) {
		if (lb->workers[i].started && !atomic_load(&lb->workers[i].exited))
			lb_worker_post_quit(&lb->workers[i]);
		lb_worker_free(&lb->workers[i]);
	}
	free(lb->workers);
	lb->workers = NULL;
	lb->nworkers = 0;
	if (lb->admin != NULL)
		pn_admin_free(&lb->admin);
	/* Checks still open are dropped with the loop; free their memory. */
	for (struct lb_server *v = lb->servers; v != NULL; v = v->next)
		lb_check_cancel(lb, &v->check);
	for (struct lb_backend *b = lb->backends; b != NULL; b = b->next)
		lb_check_cancel(lb, &b->check);
	if (lb->loop != NULL) {
		/* Let cancelled checks reach on_close. */
		for (int i = 0; i < 50 && lb->nchecks > 0; i++)
			pn_loop_run_once(lb->loop, 10);
		lb_dns_free(lb);
		pn_loop_free(&lb->loop);
	}
	while (lb->backends != NULL) {
		struct lb_backend *b = lb->backends;

		lb->backends = b->next;
		free(b);
	}
	while (lb->servers != NULL) {
		struct lb_server *v = lb->servers;

		lb->servers = v->next;
		free(v);
	}
	while (lb->routes != NULL) {
		struct lb_route_ctx *r = lb->routes;

		lb->routes = r->next;
		free(r);
	}
	while ((s = lb->old_snaps) != NULL) {
		lb->old_snaps = s->next_old;
		free(s);
	}
	free(atomic_load(&lb->snap));
	atomic_store(&lb->snap, NULL);
	lb_limits_free(&lb->limits);
	for (size_t i = 0; i < lb->sni_count; i++)
		free(lb->sni_names[i]);
	free(lb->sni_names);
	lb->sni_names = NULL;
	lb->sni_count = 0;
	pn_tls_ctx_free(&lb->tls);
	for (int p = 0; p < LB_PROTO_COUNT; p++)
		pn_cidr_list_free(&lb->proxy_accept[p]);
	pn_metrics_free(&lb->metrics);
	lb_config_free(&lb->cfg);
}
