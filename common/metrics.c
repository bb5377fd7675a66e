/* The metrics registry: families with bounded label sets, lock-free atomic
 * updates of counters, gauges (doubles kept as bits) and histograms, and the
 * Prometheus text format 0.0.4 writer. See postern/metrics.h for the
 * threading and cardinality contract.
 */
#include "postern/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double pn_metrics_latency_buckets[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t pn_metrics_latency_bucket_count =
	sizeof(pn_metrics_latency_buckets) / sizeof(pn_metrics_latency_buckets[0]);

struct pn_metric_series {
	struct pn_metric_series *hash_next;	/* chain in the family's table */
	struct pn_metric_series *order_next;	/* creation order, for rendering */
	const struct pn_metric *family;
	uint64_t hash;
	const char **values;			/* label values (point after buckets) */
	_Atomic uint64_t value;	/* counter; gauge as double bits; histogram sum bits */
	_Atomic int used;	/* overflow series: rendered once something used it */
	_Atomic uint64_t buckets[];	/* histogram: bucket_count + 1 (+Inf) */
};

struct pn_metric {
	struct pn_metric *next;
	enum pn_metric_type type;
	char *name;		/* with the prefix */
	char *help;
	size_t label_count;
	char *labels[PN_METRICS_MAX_LABELS];
	unsigned int max_series;
	size_t bucket_count;
	double *bounds;
	char **bound_text;	/* "le" value of each finite bound */

	pthread_mutex_t lock;	/* hash table and series list */
	struct pn_metric_series **table;
	size_t table_size;	/* power of two */
	unsigned int series_count;
	struct pn_metric_series *first, *last;
	struct pn_metric_series *overflow;	/* labelled families only */
	_Atomic uint64_t refused;
};

struct pn_metrics {
	pthread_mutex_t lock;
	struct pn_metric *first, *last;
};

static uint64_t dbl_bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return u;
}

static double bits_dbl(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double delta)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(p, &old, dbl_bits(bits_dbl(old) + delta),
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

struct pn_metrics *pn_metrics_new(void)
{
	struct pn_metrics *reg = calloc(1, sizeof(*reg));

	if (reg == NULL)
		return NULL;
	pthread_mutex_init(&reg->lock, NULL);
	return reg;
}

static void family_free(struct pn_metric *m)
{
	struct pn_metric_series *s = m->first, *next;

	while (s != NULL) {
		next = s->order_next;
		free(s);
		s = next;
	}
	free(m->overflow);
	free(m->table);
	for (size_t i = 0; i < m->label_count; i++)
		free(m->labels[i]);
	if (m->bound_text != NULL) {
		for (size_t i = 0; i < m->bucket_count; i++)
			free(m->bound_text[i]);
	}
	free(m->bound_text);
	free(m->bounds);
	free(m->name);
	free(m->help);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void pn_metrics_free(struct pn_metrics **regp)
{
	struct pn_metrics *reg = *regp;
	struct pn_metric *m, *next;

	if (reg == NULL)
		return;
	for (m = reg->first; m != NULL; m = next) {
		next = m->next;
		family_free(m);
	}
	pthread_mutex_destroy(&reg->lock);
	free(reg);
	*regp = NULL;
}

static bool name_ok(const char *s, bool colon_ok)
{
	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || (colon_ok && c == ':')))
			return false;
	}
	return true;
}

/* Whole numbers in plain digits, others as the shortest "%g" text that reads back as the same double; Prometheus spells
 * the specials NaN, +Inf and -Inf. */
static void format_double(char *dst, size_t size, double v)
{
	if (isnan(v)) {
		snprintf(dst, size, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(dst, size, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
		/* whole numbers as such: "10", not the shorter "1e+01" */
		snprintf(dst, size, "%.0f", v);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(dst, size, "%.*g", prec, v);
		if (strtod(dst, NULL) == v)
			return;
	}
}

static struct pn_metric_series *series_alloc(struct pn_metric *m, const char *const *values,
					     uint64_t hash)
{
	size_t nb = m->type == PN_METRIC_HISTOGRAM ? m->bucket_count + 1 : 0;
	size_t size = sizeof(struct pn_metric_series) + nb * sizeof(_Atomic uint64_t);
	size_t strings = 0;
	struct pn_metric_series *s;
	char *p;

	for (size_t i = 0; i < m->label_count; i++)
		strings += strlen(values[i] != NULL ? values[i] : "") + 1;
	/* pointer array, aligned, then the strings */
	size = (size + sizeof(char *) - 1) / sizeof(char *) * sizeof(char *);
	s = calloc(1, size + m->label_count * sizeof(char *) + strings);
	if (s == NULL)
		return NULL;
	s->family = m;
	s->hash = hash;
	s->values = (const char **)((char *)s + size);
	p = (char *)s + size + m->label_count * sizeof(char *);
	for (size_t i = 0; i < m->label_count; i++) {
		const char *v = values[i] != NULL ? values[i] : "";
		size_t l = strlen(v) + 1;
		memcpy(p, v, l);
		s->values[i] = p;
		p += l;
	}
	if (m->type == PN_METRIC_GAUGE || m->type == PN_METRIC_HISTOGRAM)
		atomic_init(&s->value, dbl_bits(0.0));
	return s;
}

static int parse_buckets(struct pn_metric *m, const struct pn_metric_opts *o,
			 const char **error_r)
{
	const double *b = o->buckets != NULL ? o->buckets : pn_metrics_latency_buckets;
	size_t n = o->buckets != NULL ? o->bucket_count : pn_metrics_latency_bucket_count;

	if (n == 0 || n > PN_METRICS_MAX_BUCKETS) {
		*error_r = "histogram needs 1 to PN_METRICS_MAX_BUCKETS buckets";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1]))) {
			*error_r = "histogram buckets must be finite and strictly increasing";
			return -1;
		}
	}
	m->bounds = malloc(n * sizeof(double));
	m->bound_text = calloc(n, sizeof(char *));
	if (m->bounds == NULL || m->bound_text == NULL)
		goto oom;
	m->bucket_count = n;
	memcpy(m->bounds, b, n * sizeof(double));
	for (size_t i = 0; i < n; i++) {
		char t[40];
		format_double(t, sizeof(t), b[i]);
		m->bound_text[i] = strdup(t);
		if (m->bound_text[i] == NULL)
			goto oom;
	}
	return 0;
oom:
	*error_r = "out of memory";
	return -1;
}

struct pn_metric *pn_metrics_add(struct pn_metrics *reg, enum pn_metric_type type,
				 const struct pn_metric_opts *o, const char **error_r)
{
	struct pn_metric *m;
	size_t nl = 0;

	if (!name_ok(o->name, true)) {
		*error_r = "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*";
		return NULL;
	}
	if (strncmp(o->name, PN_METRICS_PREFIX, strlen(PN_METRICS_PREFIX)) == 0) {
		*error_r = "metric name must be given without the " PN_METRICS_PREFIX " prefix";
		return NULL;
	}
	if (strcmp(o->name, "metrics_series_overflow_total") == 0) {
		*error_r = "metric name is reserved";
		return NULL;
	}
	if (type != PN_METRIC_COUNTER && type != PN_METRIC_GAUGE && type != PN_METRIC_HISTOGRAM) {
		*error_r = "unknown metric type";
		return NULL;
	}
	for (; o->labels != NULL && o->labels[nl] != NULL; nl++) {
		const char *l = o->labels[nl];
		if (nl == PN_METRICS_MAX_LABELS) {
			*error_r = "more than PN_METRICS_MAX_LABELS labels";
			return NULL;
		}
		if (!name_ok(l, false) || strncmp(l, "__", 2) == 0) {
			*error_r = "label name must match [a-zA-Z_][a-zA-Z0-9_]* without a leading __";
			return NULL;
		}
		if (type == PN_METRIC_HISTOGRAM && strcmp(l, "le") == 0) {
			*error_r = "label \"le\" is reserved in histograms";
			return NULL;
		}
		for (size_t j = 0; j < nl; j++) {
			if (strcmp(o->labels[j], l) == 0) {
				*error_r = "duplicate label name";
				return NULL;
			}
		}
	}

	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->type = type;
	m->label_count = nl;
	m->max_series = o->max_series != 0 ? o->max_series : PN_METRICS_DEFAULT_MAX_SERIES;
	size_t nlen = strlen(PN_METRICS_PREFIX) + strlen(o->name) + 1;
	m->name = malloc(nlen);
	m->help = strdup(o->help != NULL ? o->help : "");
	if (m->name == NULL || m->help == NULL)
		goto oom;
	snprintf(m->name, nlen, "%s%s", PN_METRICS_PREFIX, o->name);
	for (size_t i = 0; i < nl; i++) {
		m->labels[i] = strdup(o->labels[i]);
		if (m->labels[i] == NULL)
			goto oom;
	}
	if (type == PN_METRIC_HISTOGRAM && parse_buckets(m, o, error_r) < 0)
		goto fail;
	if (nl == 0) {
		/* The one series exists from the start, so a scrape shows 0. */
		m->first = m->last = series_alloc(m, NULL, 0);
		if (m->first == NULL)
			goto oom;
		m->series_count = 1;
	} else {
		const char *other[PN_METRICS_MAX_LABELS];
		for (size_t i = 0; i < nl; i++)
			other[i] = PN_METRICS_OVERFLOW_VALUE;
		m->overflow = series_alloc(m, other, 0);
		m->table_size = 16;
		m->table = calloc(m->table_size, sizeof(*m->table));
		if (m->overflow == NULL || m->table == NULL)
			goto oom;
	}

	pthread_mutex_lock(&reg->lock);
	for (struct pn_metric *x = reg->first; x != NULL; x = x->next) {
		if (strcmp(x->name, m->name) == 0) {
			pthread_mutex_unlock(&reg->lock);
			*error_r = "a metric with this name is already registered";
			goto fail;
		}
	}
	if (reg->last != NULL)
		reg->last->next = m;
	else
		reg->first = m;
	reg->last = m;
	pthread_mutex_unlock(&reg->lock);
	return m;
oom:
	*error_r = "out of memory";
fail:
	family_free(m);
	return NULL;
}

static uint64_t hash_values(const struct pn_metric *m, const char *const *values)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (size_t i = 0; i < m->label_count; i++) {
		const char *v = values[i] != NULL ? values[i] : "";
		for (; *v != '\0'; v++) {
			h ^= (unsigned char)*v;
			h *= 0x100000001b3ULL;
		}
		h ^= 0xff; /* separator: ("ab","c") differs from ("a","bc") */
		h *= 0x100000001b3ULL;
	}
	return h;
}

static bool values_equal(const struct pn_metric *m, const struct pn_metric_series *s,
			 const char *const *values)
{
	for (size_t i = 0; i < m->label_count; i++) {
		if (strcmp(s->values[i], values[i] != NULL ? values[i] : "") != 0)
			return false;
	}
	return true;
}

static void table_grow(struct pn_metric *m)
{
	size_t size = m->table_size * 2;
	struct pn_metric_series **t = calloc(size, sizeof(*t));

	if (t == NULL)
		return; /* longer chains, still correct */
	for (struct pn_metric_series *s = m->first; s != NULL; s = s->order_next) {
		size_t b = s->hash & (size - 1);
		s->hash_next = t[b];
		t[b] = s;
	}
	free(m->table);
	m->table = t;
	m->table_size = size;
}

static struct pn_metric_series *use_overflow(struct pn_metric *m, bool refused)
{
	if (refused)
		atomic_fetch_add_explicit(&m->refused, 1, memory_order_relaxed);
	atomic_store_explicit(&m->overflow->used, 1, memory_order_relaxed);
	return m->overflow;
}

struct pn_metric_series *pn_metric_series(struct pn_metric *m, const char *const *values)
{
	struct pn_metric_series *s;
	bool all_other = true;
	uint64_t h;

	if (m->label_count == 0)
		return m->first;
	for (size_t i = 0; i < m->label_count; i++) {
		const char *v = values[i] != NULL ? values[i] : "";
		if (strlen(v) > PN_METRICS_MAX_LABEL_VALUE)
			return use_overflow(m, true);
		if (strcmp(v, PN_METRICS_OVERFLOW_VALUE) != 0)
			all_other = false;
	}
	/* A real combination equal to the overflow one shares its series, so
	 * the text never holds two series with the same labels. */
	if (all_other)
		return use_overflow(m, false);
	h = hash_values(m, values);
	pthread_mutex_lock(&m->lock);
	for (s = m->table[h & (m->table_size - 1)]; s != NULL; s = s->hash_next) {
		if (s->hash == h && values_equal(m, s, values)) {
			pthread_mutex_unlock(&m->lock);
			return s;
		}
	}
	if (m->series_count >= m->max_series ||
	    (s = series_alloc(m, values, h)) == NULL) {
		pthread_mutex_unlock(&m->lock);
		return use_overflow(m, true);
	}
	if (m->series_count + 1 > m->table_size / 4 * 3)
		table_grow(m);
	size_t b = h & (m->table_size - 1);
	s->hash_next = m->table[b];
	m->table[b] = s;
	if (m->last != NULL)
		m->last->order_next = s;
	else
		m->first = s;
	m->last = s;
	m->series_count++;
	pthread_mutex_unlock(&m->lock);
	return s;
}

unsigned int pn_metric_series_count(struct pn_metric *m)
{
	unsigned int n;

	pthread_mutex_lock(&m->lock);
	n = m->series_count;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void pn_counter_add(struct pn_metric_series *s, uint64_t n)
{
	atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

uint64_t pn_counter_value(const struct pn_metric_series *s)
{
	return atomic_load_explicit(&s->value, memory_order_relaxed);
}

void pn_gauge_set(struct pn_metric_series *s, double v)
{
	atomic_store_explicit(&s->value, dbl_bits(v), memory_order_relaxed);
}

void pn_gauge_add(struct pn_metric_series *s, double delta)
{
	atomic_add_double(&s->value, delta);
}

double pn_gauge_value(const struct pn_metric_series *s)
{
	return bits_dbl(atomic_load_explicit(&s->value, memory_order_relaxed));
}

void pn_histogram_observe(struct pn_metric_series *s, double v)
{
	const struct pn_metric *m = s->family;
	size_t lo = 0, hi = m->bucket_count;

	if (isnan(v))
		return;
	/* first bound >= v; hi == bucket_count is the +Inf bucket */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->bounds[mid] >= v)
			hi = mid;
		else
			lo = mid + 1;
	}
	atomic_fetch_add_explicit(&s->buckets[lo], 1, memory_order_relaxed);
	atomic_add_double(&s->value, v);
}

/* HELP text: backslash and line feed escaped (format 0.0.4). */
static int put_help(struct pn_buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		int r;
		if (*s == '\\')
			r = pn_buf_append(out, "\\\\", 2);
		else if (*s == '\n')
			r = pn_buf_append(out, "\\n", 2);
		else
			r = pn_buf_append(out, s, 1);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* Label value: backslash, double quote and line feed escaped. */
static int put_label_value(struct pn_buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		int r;
		if (*s == '\\')
			r = pn_buf_append(out, "\\\\", 2);
		else if (*s == '"')
			r = pn_buf_append(out, "\\\"", 2);
		else if (*s == '\n')
			r = pn_buf_append(out, "\\n", 2);
		else
			r = pn_buf_append(out, s, 1);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* name{l1="v1",...,extra_name="extra_value"} (braces left out when empty). */
static int put_series_name(struct pn_buf *out, const struct pn_metric *m, const char *suffix,
			   const struct pn_metric_series *s, const char *extra_name,
			   const char *extra_value)
{
	bool any = m->label_count > 0 || extra_name != NULL;

	if (pn_buf_append_str(out, m->name) < 0 || pn_buf_append_str(out, suffix) < 0)
		return -1;
	if (!any)
		return 0;
	if (pn_buf_append(out, "{", 1) < 0)
		return -1;
	for (size_t i = 0; i < m->label_count; i++) {
		if (pn_buf_printf(out, "%s%s=\"", i > 0 ? "," : "", m->labels[i]) < 0 ||
		    put_label_value(out, s->values[i]) < 0 || pn_buf_append(out, "\"", 1) < 0)
			return -1;
	}
	if (extra_name != NULL) {
		if (pn_buf_printf(out, "%s%s=\"", m->label_count > 0 ? "," : "", extra_name) < 0 ||
		    put_label_value(out, extra_value) < 0 || pn_buf_append(out, "\"", 1) < 0)
			return -1;
	}
	return pn_buf_append(out, "}", 1);
}

static int render_series(struct pn_buf *out, const struct pn_metric *m,
			 const struct pn_metric_series *s)
{
	char num[40];

	switch (m->type) {
	case PN_METRIC_COUNTER:
		if (put_series_name(out, m, "", s, NULL, NULL) < 0)
			return -1;
		return pn_buf_printf(out, " %" PRIu64 "\n", pn_counter_value(s));
	case PN_METRIC_GAUGE:
		format_double(num, sizeof(num), pn_gauge_value(s));
		if (put_series_name(out, m, "", s, NULL, NULL) < 0)
			return -1;
		return pn_buf_printf(out, " %s\n", num);
	case PN_METRIC_HISTOGRAM: {
		uint64_t cumulative = 0;
		for (size_t i = 0; i <= m->bucket_count; i++) {
			cumulative += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
			const char *le = i < m->bucket_count ? m->bound_text[i] : "+Inf";
			if (put_series_name(out, m, "_bucket", s, "le", le) < 0 ||
			    pn_buf_printf(out, " %" PRIu64 "\n", cumulative) < 0)
				return -1;
		}
		format_double(num, sizeof(num),
			      bits_dbl(atomic_load_explicit(&s->value, memory_order_relaxed)));
		if (put_series_name(out, m, "_sum", s, NULL, NULL) < 0 ||
		    pn_buf_printf(out, " %s\n", num) < 0 ||
		    put_series_name(out, m, "_count", s, NULL, NULL) < 0 ||
		    pn_buf_printf(out, " %" PRIu64 "\n", cumulative) < 0)
			return -1;
		return 0;
	}
	}
	return -1;
}

static const char *type_name(enum pn_metric_type t)
{
	switch (t) {
	case PN_METRIC_COUNTER: return "counter";
	case PN_METRIC_GAUGE: return "gauge";
	case PN_METRIC_HISTOGRAM: return "histogram";
	}
	return "untyped";
}

static int render_family(struct pn_buf *out, struct pn_metric *m)
{
	int ret = 0;

	if (pn_buf_printf(out, "# HELP %s ", m->name) < 0 || put_help(out, m->help) < 0 ||
	    pn_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_name(m->type)) < 0)
		return -1;
	pthread_mutex_lock(&m->lock);
	for (struct pn_metric_series *s = m->first; s != NULL && ret == 0; s = s->order_next)
		ret = render_series(out, m, s);
	pthread_mutex_unlock(&m->lock);
	if (ret == 0 && m->overflow != NULL &&
	    atomic_load_explicit(&m->overflow->used, memory_order_relaxed))
		ret = render_series(out, m, m->overflow);
	return ret;
}

int pn_metrics_render(struct pn_metrics *reg, struct pn_buf *out)
{
	static const char overflow_name[] = PN_METRICS_PREFIX "metrics_series_overflow_total";
	bool any_labelled = false;
	int ret = 0;

	pthread_mutex_lock(&reg->lock);
	for (struct pn_metric *m = reg->first; m != NULL && ret == 0; m = m->next) {
		ret = render_family(out, m);
		if (m->label_count > 0)
			any_labelled = true;
	}
	if (ret == 0 && any_labelled) {
		ret = pn_buf_printf(out,
				    "# HELP %s Label combinations refused because the metric "
				    "reached its series cap (counted into label value \"%s\").\n"
				    "# TYPE %s counter\n",
				    overflow_name, PN_METRICS_OVERFLOW_VALUE, overflow_name);
		for (struct pn_metric *m = reg->first; m != NULL && ret == 0; m = m->next) {
			if (m->label_count == 0)
				continue;
			ret = pn_buf_printf(out, "%s{metric=\"%s\"} %" PRIu64 "\n", overflow_name,
					    m->name,
					    atomic_load_explicit(&m->refused, memory_order_relaxed));
		}
	}
	pthread_mutex_unlock(&reg->lock);
	return ret;
}
