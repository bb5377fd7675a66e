/* The storage clients' Prometheus families (see postern/store-metrics.h):
 * registered once, series looked up once, fed by the observe hooks. */
#include "postern/store-metrics.h"

#include <stdlib.h>

struct store_metrics {
	struct pn_metric_series *pg[3], *pg_seconds;
	struct pn_metric_series *redis[3], *redis_seconds;
};

static const char *const outcome_label[] = { "outcome", NULL };
static const char *const outcomes[3] = { "ok", "temporary", "permanent" };

static int add_pair(struct pn_metrics *reg, const char *count_name, const char *count_help,
		    const char *hist_name, const char *hist_help,
		    struct pn_metric_series *series[3], struct pn_metric_series **hist,
		    const char **error_r)
{
	struct pn_metric *c, *h;

	c = pn_metrics_add(reg, PN_METRIC_COUNTER, &(struct pn_metric_opts){
		.name = count_name, .help = count_help, .labels = outcome_label,
		.max_series = 3 }, error_r);
	if (c == NULL)
		return -1;
	h = pn_metrics_add(reg, PN_METRIC_HISTOGRAM, &(struct pn_metric_opts){
		.name = hist_name, .help = hist_help }, error_r);
	if (h == NULL)
		return -1;
	for (int i = 0; i < 3; i++)
		series[i] = pn_metric_series(c, PN_LABELS(outcomes[i]));
	*hist = pn_metric_series(h, NULL);
	return 0;
}

struct store_metrics *store_metrics_new(struct pn_metrics *reg, const char **error_r)
{
	struct store_metrics *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	if (add_pair(reg, "pg_requests_total",
		     "PostgreSQL requests by outcome (temporary: retry later).",
		     "pg_request_seconds",
		     "PostgreSQL request time from submission to callback, queue included.",
		     m->pg, &m->pg_seconds, error_r) < 0 ||
	    add_pair(reg, "redis_commands_total", "Redis commands by outcome.",
		     "redis_command_seconds", "Redis command round-trip time.",
		     m->redis, &m->redis_seconds, error_r) < 0) {
		free(m);
		return NULL;
	}
	return m;
}

void store_metrics_free(struct store_metrics **m)
{
	free(*m);
	*m = NULL;
}

static unsigned int outcome_index(enum store_status st)
{
	return st == STORE_OK ? 0 : st == STORE_TEMPORARY ? 1 : 2;
}

void store_metrics_pg_observe(void *ctx, enum store_status status, uint64_t usec)
{
	struct store_metrics *m = ctx;

	pn_counter_inc(m->pg[outcome_index(status)]);
	pn_histogram_observe(m->pg_seconds, (double)usec / 1e6);
}

void store_metrics_redis_observe(void *ctx, enum store_status status, uint64_t usec)
{
	struct store_metrics *m = ctx;

	pn_counter_inc(m->redis[outcome_index(status)]);
	pn_histogram_observe(m->redis_seconds, (double)usec / 1e6);
}
