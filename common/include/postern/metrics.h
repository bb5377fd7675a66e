/* Metrics: counters, gauges and histograms with bounded label sets, shown in
 * the Prometheus text exposition format 0.0.4.
 *
 * A registry holds metric families; a family has a name (the registry adds
 * the "postern_" prefix), a help line, a type, up to PN_METRICS_MAX_LABELS
 * label names and, for a histogram, fixed bucket upper bounds. A family
 * holds series, one per label-value combination:
 *
 *   static const char *const labels[] = { "protocol", "tenant", NULL };
 *   struct pn_metric *logins = pn_metrics_add(reg, PN_METRIC_COUNTER,
 *       &(struct pn_metric_opts){ .name = "logins_total",
 *           .help = "Successful logins.", .labels = labels,
 *           .max_series = 500 }, &error);
 *   ...
 *   pn_counter_inc(pn_metric_series(logins, PN_LABELS("imap", tenant)));
 *
 * Cardinality is bounded: once a family holds max_series combinations, a
 * new combination is not created; its updates go to the family's overflow
 * series, whose every label value is "other", and the refusal is counted in
 * postern_metrics_series_overflow_total{metric="<full name>"}. So tenant or
 * user labels cannot grow memory or scrape size without limit. Label values
 * longer than PN_METRICS_MAX_LABEL_VALUE bytes go to the overflow series too.
 *
 * Threads: updates (pn_counter_*, pn_gauge_*, pn_histogram_observe) are
 * lock-free atomics and may be called from any thread. pn_metric_series()
 * takes the family's mutex (a hash lookup); hot paths look a series up once
 * and keep the pointer, which stays valid until the registry is freed.
 * Registration and rendering take the registry's mutex. Series are never
 * removed.
 *
 * Rendering reads each value atomically but not all values at one instant:
 * a histogram's _count is the sum of its buckets as read, so _count and the
 * +Inf bucket always agree; _sum may include an observation the buckets do
 * not show yet.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"

#define PN_METRICS_PREFIX "postern_"
#define PN_METRICS_MAX_LABELS 8
#define PN_METRICS_MAX_BUCKETS 64
#define PN_METRICS_MAX_LABEL_VALUE 128
#define PN_METRICS_DEFAULT_MAX_SERIES 1000
#define PN_METRICS_OVERFLOW_VALUE "other"

/* Content-Type of the rendered text. */
#define PN_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum pn_metric_type {
	PN_METRIC_COUNTER,
	PN_METRIC_GAUGE,
	PN_METRIC_HISTOGRAM,
};

struct pn_metrics;
struct pn_metric;
struct pn_metric_series;

struct pn_metric_opts {
	const char *name;	/* without the prefix: [a-zA-Z_:][a-zA-Z0-9_:]* */
	const char *help;	/* one line; may be NULL */
	/* Label names, NULL-terminated, or NULL for none: [a-zA-Z_][a-zA-Z0-9_]*,
	 * not starting with "__", no duplicates, "le" not for histograms. */
	const char *const *labels;
	/* Combinations kept before the overflow series takes over;
	 * 0 means PN_METRICS_DEFAULT_MAX_SERIES. Ignored without labels. */
	unsigned int max_series;
	/* Histograms: finite, strictly increasing upper bounds ("le"); +Inf
	 * is added. NULL takes pn_metrics_latency_buckets. */
	const double *buckets;
	size_t bucket_count;
};

/* Seconds, for request and query latencies: 1ms .. 10s. */
extern const double pn_metrics_latency_buckets[];
extern const size_t pn_metrics_latency_bucket_count;

/* Label values for pn_metric_series(): PN_LABELS("imap", tenant). */
#define PN_LABELS(...) ((const char *const[]){ __VA_ARGS__ })

/* Returns a new empty registry, or NULL when out of memory. */
struct pn_metrics *pn_metrics_new(void);
/* Frees the registry, every family and series; sets *reg to NULL. Nothing
 * may update or look up series of this registry any more. */
void pn_metrics_free(struct pn_metrics **reg);

/* Registers a family. Returns it (owned by the registry), or NULL with
 * *error_r set to a static message (bad name or labels, bad buckets,
 * duplicate name, out of memory). */
struct pn_metric *pn_metrics_add(struct pn_metrics *reg, enum pn_metric_type type,
				 const struct pn_metric_opts *opts, const char **error_r);

/* The series for values[0..label count) (ignored when the family has no
 * labels; NULL values count as ""). Creates it on first use unless the
 * family is full, in which case the overflow series is returned. Never
 * returns NULL: running out of memory also yields the overflow series. */
struct pn_metric_series *pn_metric_series(struct pn_metric *m, const char *const *values);

/* Counters only go up. */
void pn_counter_add(struct pn_metric_series *s, uint64_t n);
static inline void pn_counter_inc(struct pn_metric_series *s) { pn_counter_add(s, 1); }
uint64_t pn_counter_value(const struct pn_metric_series *s);

void pn_gauge_set(struct pn_metric_series *s, double v);
void pn_gauge_add(struct pn_metric_series *s, double delta);
static inline void pn_gauge_inc(struct pn_metric_series *s) { pn_gauge_add(s, 1); }
static inline void pn_gauge_dec(struct pn_metric_series *s) { pn_gauge_add(s, -1); }
double pn_gauge_value(const struct pn_metric_series *s);

/* Counts v into the first bucket whose bound is >= v and adds it to the sum.
 * NaN is ignored (it would poison _sum). */
void pn_histogram_observe(struct pn_metric_series *s, double v);

/* Number of series created in the family (the overflow series not counted). */
unsigned int pn_metric_series_count(struct pn_metric *m);

/* Appends every family in registration order (series in creation order) in
 * the Prometheus text format 0.0.4 to out. Returns 0, or -1 if out reached
 * its max (out then holds a truncated text that must not be served). */
int pn_metrics_render(struct pn_metrics *reg, struct pn_buf *out);

#endif
