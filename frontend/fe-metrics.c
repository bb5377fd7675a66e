/* The frontend's metric families and the small helpers that update them;
 * see fe-metrics.h for the list.
 */
#include "fe-metrics.h"

#include <string.h>

static const char *const state_names[FE_STATE_COUNT] = {
	"connecting", "unauthenticated", "authenticated", "closing",
};

const char *fe_state_name(enum fe_session_state state)
{
	return (unsigned int)state < FE_STATE_COUNT ? state_names[state] : "?";
}

static const char *const l_protocol_state[] = { "protocol", "state", NULL };
static const char *const l_service_result[] = { "service", "result", NULL };
static const char *const l_protocol_result[] = { "protocol", "result", NULL };
static const char *const l_tls[] = { "service", "mode", "result", NULL };
static const char *const l_protocol_direction[] = { "protocol", "direction", NULL };
static const char *const l_protocol_command[] = { "protocol", "command", NULL };

static struct pn_metric *add(struct fe_metrics *m, enum pn_metric_type type, const char *name,
			     const char *help, const char *const *labels, const char **error_r)
{
	return pn_metrics_add(m->reg, type,
			      &(struct pn_metric_opts){ .name = name, .help = help,
							.labels = labels, .max_series = 500 },
			      error_r);
}

int fe_metrics_init(struct fe_metrics *m, const char **error_r)
{
	memset(m, 0, sizeof(*m));
	m->reg = pn_metrics_new();
	if (m->reg == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if ((m->sessions = add(m, PN_METRIC_GAUGE, "frontend_sessions",
			       "Open client sessions by protocol and state.",
			       l_protocol_state, error_r)) == NULL ||
	    (m->connections = add(m, PN_METRIC_COUNTER, "frontend_connections_total",
				  "Client connections by listener: accepted, local (a balancer "
				  "health check), or the reason they were refused.",
				  l_service_result, error_r)) == NULL ||
	    (m->logins = add(m, PN_METRIC_COUNTER, "logins_total",
			     "Login attempts by protocol and result.", l_protocol_result,
			     error_r)) == NULL ||
	    (m->tls_handshakes = add(m, PN_METRIC_COUNTER, "tls_handshakes_total",
				     "TLS handshakes by listener, implicit or STARTTLS, and result.",
				     l_tls, error_r)) == NULL ||
	    (m->bytes = add(m, PN_METRIC_COUNTER, "frontend_bytes_total",
			    "Bytes received from and sent to clients (on the wire, TLS included).",
			    l_protocol_direction, error_r)) == NULL ||
	    (m->commands = add(m, PN_METRIC_COUNTER, "commands_total",
			       "Client commands by protocol and command name.",
			       l_protocol_command, error_r)) == NULL)
		return -1;
	m->command_seconds = pn_metrics_add(m->reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "command_duration_seconds",
			.help = "Time commands waited for storage (login, maildrop, message, update).",
			.labels = l_protocol_command, .max_series = 200 }, error_r);
	if (m->command_seconds == NULL)
		return -1;
	if ((m->store = store_metrics_new(m->reg, error_r)) == NULL ||
	    (m->draining = add(m, PN_METRIC_GAUGE, "frontend_draining",
			       "1 while the node drains after SIGTERM.", NULL, error_r)) == NULL ||
	    (m->ready = add(m, PN_METRIC_GAUGE, "frontend_ready",
			    "1 when /readyz last answered ready.", NULL, error_r)) == NULL ||
	    (m->postgres_up = add(m, PN_METRIC_GAUGE, "frontend_postgres_up",
				  "1 while the node has a live PostgreSQL connection.", NULL,
				  error_r)) == NULL ||
	    (m->redis_up = add(m, PN_METRIC_GAUGE, "frontend_redis_up",
			       "1 while Redis answers; 0 means degraded (per-node locks and counters).",
			       NULL, error_r)) == NULL ||
	    (m->lock_fallback = add(m, PN_METRIC_COUNTER, "pop3_lock_fallback_total",
				    "POP3 maildrop locks taken on this node only because Redis was down.",
				    NULL, error_r)) == NULL)
		return -1;
	for (int svc = 0; svc < FE_SVC_COUNT; svc++) {
		const char *proto = fe_service_protocol(svc);
		for (int st = 0; st < FE_STATE_COUNT; st++)
			m->session_series[svc][st] =
				pn_metric_series(m->sessions, PN_LABELS(proto, state_names[st]));
		m->bytes_in[svc] = pn_metric_series(m->bytes, PN_LABELS(proto, "in"));
		m->bytes_out[svc] = pn_metric_series(m->bytes, PN_LABELS(proto, "out"));
	}
	return 0;
}

void fe_metrics_free(struct fe_metrics *m)
{
	store_metrics_free(&m->store);
	pn_metrics_free(&m->reg);
}

void fe_metrics_connection(struct fe_metrics *m, enum fe_service svc, const char *result)
{
	if (m != NULL)
		pn_counter_inc(pn_metric_series(m->connections,
						PN_LABELS(fe_service_name(svc), result)));
}

void fe_metrics_login(struct fe_metrics *m, const char *protocol, const char *result)
{
	if (m != NULL)
		pn_counter_inc(pn_metric_series(m->logins, PN_LABELS(protocol, result)));
}

void fe_metrics_tls(struct fe_metrics *m, enum fe_service svc, bool starttls, bool ok)
{
	if (m != NULL)
		pn_counter_inc(pn_metric_series(m->tls_handshakes,
			PN_LABELS(fe_service_name(svc), starttls ? "starttls" : "implicit",
				  ok ? "ok" : "error")));
}

void fe_metrics_command(struct fe_metrics *m, const char *protocol, const char *command)
{
	if (m != NULL)
		pn_counter_inc(pn_metric_series(m->commands, PN_LABELS(protocol, command)));
}

void fe_metrics_command_time(struct fe_metrics *m, const char *protocol, const char *command,
			     double seconds)
{
	if (m != NULL)
		pn_histogram_observe(pn_metric_series(m->command_seconds,
						      PN_LABELS(protocol, command)), seconds);
}
