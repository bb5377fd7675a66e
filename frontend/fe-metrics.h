/* The frontend's metric families (names get the "postern_" prefix):
 *
 *   frontend_sessions{protocol,state}            gauge: open sessions
 *   frontend_connections_total{service,result}   accepted, or why refused
 *   logins_total{protocol,result}                ok, bad, tempfail, ...
 *   tls_handshakes_total{service,mode,result}    mode implicit|starttls
 *   frontend_bytes_total{protocol,direction}     socket bytes in / out
 *   commands_total{protocol,command}             commands by name
 *   command_duration_seconds{protocol,command}   histogram (requests to storage)
 *   pg_requests_total, pg_request_seconds,       the storage clients' own
 *   redis_commands_total, redis_command_seconds  families (store-metrics.h)
 *   frontend_draining, frontend_ready            gauges 0/1
 *   frontend_postgres_up, frontend_redis_up      gauges 0/1
 *   pop3_lock_fallback_total                     maildrop locks taken per node
 *                                                because Redis was down
 *
 * Label values are fixed words chosen by the code (never peer input), so
 * cardinality is bounded by the code itself; the registry caps it anyway.
 * Series of the hot path are looked up once and cached here. Updates are
 * atomic: every thread uses the same struct.
 */
#ifndef FE_METRICS_H
#define FE_METRICS_H

#include "postern/metrics.h"
#include "postern/store-metrics.h"

#include "fe-config.h"
#include "fe-protocol.h"

struct fe_metrics {
	struct pn_metrics *reg;
	struct pn_metric *sessions, *connections, *logins, *tls_handshakes, *bytes,
		*commands, *command_seconds, *draining, *ready, *postgres_up, *redis_up, *lock_fallback;
	struct pn_metric_series *session_series[FE_SVC_COUNT][FE_STATE_COUNT];
	struct pn_metric_series *bytes_in[FE_SVC_COUNT], *bytes_out[FE_SVC_COUNT];
	struct store_metrics *store;	/* observe hooks of the pools and clients */
};

/* Registers the families in a new registry. Returns 0, or -1 with *error_r. */
int fe_metrics_init(struct fe_metrics *m, const char **error_r);
void fe_metrics_free(struct fe_metrics *m);

const char *fe_state_name(enum fe_session_state state);

/* Shorthands; every argument is a fixed word. m may be NULL (tests). */
void fe_metrics_connection(struct fe_metrics *m, enum fe_service svc, const char *result);
void fe_metrics_login(struct fe_metrics *m, const char *protocol, const char *result);
void fe_metrics_tls(struct fe_metrics *m, enum fe_service svc, bool starttls, bool ok);
void fe_metrics_command(struct fe_metrics *m, const char *protocol, const char *command);
void fe_metrics_command_time(struct fe_metrics *m, const char *protocol, const char *command,
			     double seconds);

#endif
