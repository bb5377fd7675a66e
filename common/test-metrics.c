/* Unit tests for postern/metrics.h. The rendered text is parsed back with a
 * small exposition-format reader below (HELP/TYPE lines, samples with
 * escaped label values) and checked value by value: counters, gauges,
 * cumulative histogram buckets, the series cap, escaping and updates from
 * several threads at once. */
#include "postern/metrics.h"
#include "postern/testing.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>

/* ---- a small reader for the text format ---- */

struct sample {
	char name[128];
	char labels[512];	/* label pairs unescaped, "k=v,k=v" in text order */
	double value;
};

struct parsed {
	struct sample samples[512];
	size_t count;
	char helps[32][256];	/* "name help-unescaped" */
	size_t help_count;
	char types[32][128];	/* "name type" */
	size_t type_count;
	int errors;		/* lines that did not parse */
};

/* Unescapes a HELP text (\\ and \n) into dst. */
static void unescape_help(const char *s, size_t len, char *dst, size_t dstsize)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < dstsize; i++) {
		if (s[i] == '\\' && i + 1 < len) {
			i++;
			dst[o++] = s[i] == 'n' ? '\n' : s[i];
		} else {
			dst[o++] = s[i];
		}
	}
	dst[o] = '\0';
}

/* Parses one sample line; returns 0 or -1. */
static int parse_sample(const char *line, size_t len, struct sample *smp)
{
	size_t i = 0, o = 0;
	char num[64];

	while (i < len && line[i] != '{' && line[i] != ' ') {
		if (i + 1 >= sizeof(smp->name))
			return -1;
		smp->name[i] = line[i];
		i++;
	}
	smp->name[i] = '\0';
	smp->labels[0] = '\0';
	if (i < len && line[i] == '{') {
		i++;
		while (i < len && line[i] != '}') {
			/* name="value" */
			while (i < len && line[i] != '=') {
				if (o + 2 >= sizeof(smp->labels))
					return -1;
				smp->labels[o++] = line[i++];
			}
			if (i + 1 >= len || line[i + 1] != '"')
				return -1;
			smp->labels[o++] = '=';
			i += 2;
			for (;;) {
				if (i >= len || o + 2 >= sizeof(smp->labels))
					return -1;
				if (line[i] == '"')
					break;
				if (line[i] == '\\') {
					if (i + 1 >= len)
						return -1;
					i++;
					if (line[i] == 'n')
						smp->labels[o++] = '\n';
					else if (line[i] == '\\' || line[i] == '"')
						smp->labels[o++] = line[i];
					else
						return -1; /* no other escape exists */
				} else if (line[i] == '\n') {
					return -1;
				} else {
					smp->labels[o++] = line[i];
				}
				i++;
			}
			i++; /* closing quote */
			if (i < len && line[i] == ',') {
				smp->labels[o++] = ',';
				i++;
			}
		}
		if (i >= len)
			return -1;
		i++; /* } */
		smp->labels[o] = '\0';
	}
	if (i >= len || line[i] != ' ')
		return -1;
	i++;
	if (len - i == 0 || len - i >= sizeof(num))
		return -1;
	memcpy(num, line + i, len - i);
	num[len - i] = '\0';
	if (strcmp(num, "+Inf") == 0) {
		smp->value = INFINITY;
	} else if (strcmp(num, "-Inf") == 0) {
		smp->value = -INFINITY;
	} else if (strcmp(num, "NaN") == 0) {
		smp->value = NAN;
	} else {
		char *end;
		smp->value = strtod(num, &end);
		if (*end != '\0')
			return -1;
	}
	return 0;
}

static void parse_text(const struct pn_buf *b, struct parsed *p)
{
	const char *s = (const char *)pn_buf_rptr(b);
	size_t len = pn_buf_len(b), pos = 0;

	memset(p, 0, sizeof(*p));
	if (len == 0 || s[len - 1] != '\n')
		p->errors++;
	while (pos < len) {
		const char *nl = memchr(s + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (s + pos)) : len - pos;
		const char *line = s + pos;

		pos += ll + 1;
		if (ll > 7 && memcmp(line, "# HELP ", 7) == 0) {
			if (p->help_count < 32)
				unescape_help(line + 7, ll - 7, p->helps[p->help_count++], 256);
		} else if (ll > 7 && memcmp(line, "# TYPE ", 7) == 0) {
			if (p->type_count < 32)
				snprintf(p->types[p->type_count++], 128, "%.*s", (int)(ll - 7),
					 line + 7);
		} else if (ll > 0 && line[0] == '#') {
			continue;
		} else if (p->count < 512 && parse_sample(line, ll, &p->samples[p->count]) == 0) {
			p->count++;
		} else {
			p->errors++;
		}
	}
}

/* The sample's value, or NaN when there is no such sample. */
static double find(const struct parsed *p, const char *name, const char *labels)
{
	for (size_t i = 0; i < p->count; i++) {
		if (strcmp(p->samples[i].name, name) == 0 &&
		    strcmp(p->samples[i].labels, labels) == 0)
			return p->samples[i].value;
	}
	return NAN;
}

static size_t count_named(const struct parsed *p, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < p->count; i++)
		n += strcmp(p->samples[i].name, name) == 0;
	return n;
}

static bool has_line(const char (*lines)[256], size_t n, const char *want)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(lines[i], want) == 0)
			return true;
	}
	return false;
}

static bool has_type(const struct parsed *p, const char *want)
{
	for (size_t i = 0; i < p->type_count; i++) {
		if (strcmp(p->types[i], want) == 0)
			return true;
	}
	return false;
}

static struct parsed parsed_buf; /* too big for the stack under ASan */

static struct parsed *render(struct pn_metrics *reg)
{
	struct pn_buf b;

	pn_buf_init(&b, 1 << 20);
	CHECK_INT(pn_metrics_render(reg, &b), 0);
	parse_text(&b, &parsed_buf);
	CHECK_INT(parsed_buf.errors, 0);
	pn_buf_free(&b);
	return &parsed_buf;
}

/* ---- tests ---- */

PN_TEST(test_counter_and_gauge)
{
	struct pn_metrics *reg = pn_metrics_new();
	const char *err = NULL;
	static const char *const proto[] = { "protocol", NULL };

	struct pn_metric *c = pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "connections_total",
					  .help = "Accepted connections." }, &err);
	struct pn_metric *g = pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "sessions", .help = "Open sessions.",
					  .labels = proto }, &err);
	CHECK(c != NULL && g != NULL);
	if (c == NULL || g == NULL) {
		pn_metrics_free(&reg);
		return;
	}
	/* an unlabelled family shows 0 before anything happened */
	struct parsed *p = render(reg);
	CHECK(find(p, "postern_connections_total", "") == 0);
	CHECK_INT(count_named(p, "postern_sessions"), 0);

	pn_counter_add(pn_metric_series(c, NULL), 41);
	pn_counter_inc(pn_metric_series(c, NULL));
	struct pn_metric_series *imap = pn_metric_series(g, PN_LABELS("imap"));
	CHECK(imap == pn_metric_series(g, PN_LABELS("imap")));
	pn_gauge_set(imap, 10);
	pn_gauge_dec(imap);
	pn_gauge_add(pn_metric_series(g, PN_LABELS("pop3")), 0.25);
	pn_gauge_set(pn_metric_series(g, PN_LABELS("smtp")), -1e300);
	CHECK_INT(pn_metric_series_count(g), 3);

	p = render(reg);
	CHECK(find(p, "postern_connections_total", "") == 42);
	CHECK(find(p, "postern_sessions", "protocol=imap") == 9);
	CHECK(find(p, "postern_sessions", "protocol=pop3") == 0.25);
	CHECK(find(p, "postern_sessions", "protocol=smtp") == -1e300);
	CHECK(has_line(p->helps, p->help_count, "postern_connections_total Accepted connections."));
	CHECK(has_type(p, "postern_connections_total counter"));
	CHECK(has_type(p, "postern_sessions gauge"));
	/* the overflow counter family lists each labelled family */
	CHECK(find(p, "postern_metrics_series_overflow_total", "metric=postern_sessions") == 0);
	CHECK(has_type(p, "postern_metrics_series_overflow_total counter"));

	pn_gauge_set(imap, INFINITY);
	pn_gauge_set(pn_metric_series(g, PN_LABELS("pop3")), NAN);
	p = render(reg);
	CHECK(isinf(find(p, "postern_sessions", "protocol=imap")));
	CHECK(isnan(find(p, "postern_sessions", "protocol=pop3")));
	pn_metrics_free(&reg);
	CHECK(reg == NULL);
}

PN_TEST(test_exact_text)
{
	struct pn_metrics *reg = pn_metrics_new();
	const char *err = NULL;
	static const char *const l2[] = { "a", "b", NULL };
	struct pn_buf b;

	struct pn_metric *c = pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "x_total", .help = "H\\elp\nnext",
					  .labels = l2 }, &err);
	CHECK(c != NULL);
	if (c == NULL) {
		pn_metrics_free(&reg);
		return;
	}
	pn_counter_add(pn_metric_series(c, PN_LABELS("q\"uote", "back\\slash\nnl")), 3);
	pn_buf_init(&b, 4096);
	CHECK_INT(pn_metrics_render(reg, &b), 0);
	static const char want[] =
		"# HELP postern_x_total H\\\\elp\\nnext\n"
		"# TYPE postern_x_total counter\n"
		"postern_x_total{a=\"q\\\"uote\",b=\"back\\\\slash\\nnl\"} 3\n";
	CHECK(pn_buf_len(&b) > sizeof(want) - 1 &&
	      memcmp(pn_buf_rptr(&b), want, sizeof(want) - 1) == 0);
	/* parsed back, the escapes give the original bytes */
	parse_text(&b, &parsed_buf);
	CHECK_INT(parsed_buf.errors, 0);
	CHECK(find(&parsed_buf, "postern_x_total", "a=q\"uote,b=back\\slash\nnl") == 3);
	CHECK(has_line(parsed_buf.helps, parsed_buf.help_count, "postern_x_total H\\elp\nnext"));

	/* a buffer too small for the text is reported, not silently cut */
	struct pn_buf small;
	pn_buf_init(&small, 40);
	CHECK_INT(pn_metrics_render(reg, &small), -1);
	pn_buf_free(&small);
	pn_buf_free(&b);
	pn_metrics_free(&reg);
}

PN_TEST(test_histogram)
{
	struct pn_metrics *reg = pn_metrics_new();
	const char *err = NULL;
	static const double bounds[] = { 0.1, 0.5, 1, 10 };
	static const char *const l[] = { "op", NULL };

	struct pn_metric *h = pn_metrics_add(reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "query_seconds", .help = "Query time.",
					  .labels = l, .buckets = bounds, .bucket_count = 4 },
		&err);
	CHECK(h != NULL);
	if (h == NULL) {
		pn_metrics_free(&reg);
		return;
	}
	struct pn_metric_series *s = pn_metric_series(h, PN_LABELS("select"));
	/* 0.1 lands in le=0.1 (upper bounds are inclusive) */
	static const double obs[] = { 0.05, 0.1, 0.2, 0.5, 0.7, 3, 50, 1000, -1 };
	double sum = 0;
	for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
		pn_histogram_observe(s, obs[i]);
		sum += obs[i];
	}
	pn_histogram_observe(s, NAN); /* ignored */

	struct parsed *p = render(reg);
	CHECK(has_type(p, "postern_query_seconds histogram"));
	CHECK(find(p, "postern_query_seconds_bucket", "op=select,le=0.1") == 3);
	CHECK(find(p, "postern_query_seconds_bucket", "op=select,le=0.5") == 5);
	CHECK(find(p, "postern_query_seconds_bucket", "op=select,le=1") == 6);
	CHECK(find(p, "postern_query_seconds_bucket", "op=select,le=10") == 7);
	CHECK(find(p, "postern_query_seconds_bucket", "op=select,le=+Inf") == 9);
	CHECK(find(p, "postern_query_seconds_count", "op=select") == 9);
	double got_sum = find(p, "postern_query_seconds_sum", "op=select");
	CHECK(got_sum - sum < 1e-9 && sum - got_sum < 1e-9);
	CHECK_INT(count_named(p, "postern_query_seconds_bucket"), 5);
	/* buckets are cumulative: never decreasing in text order */
	double prev = -1;
	for (size_t i = 0; i < p->count; i++) {
		if (strcmp(p->samples[i].name, "postern_query_seconds_bucket") != 0)
			continue;
		CHECK(p->samples[i].value >= prev);
		prev = p->samples[i].value;
	}

	/* default buckets; "le" is reserved; bad bounds refused */
	struct pn_metric *d = pn_metrics_add(reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "lat_seconds" }, &err);
	CHECK(d != NULL);
	if (d != NULL) {
		pn_histogram_observe(pn_metric_series(d, NULL), 0.003);
		p = render(reg);
		CHECK(find(p, "postern_lat_seconds_bucket", "le=0.0025") == 0);
		CHECK(find(p, "postern_lat_seconds_bucket", "le=0.005") == 1);
		CHECK_INT(count_named(p, "postern_lat_seconds_bucket"),
			  pn_metrics_latency_bucket_count + 1);
	}
	static const char *const le[] = { "le", NULL };
	CHECK(pn_metrics_add(reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "h2", .labels = le }, &err) == NULL);
	static const double unordered[] = { 1, 1 };
	CHECK(pn_metrics_add(reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "h3", .buckets = unordered,
					  .bucket_count = 2 }, &err) == NULL);
	static const double inf[] = { 1, INFINITY };
	CHECK(pn_metrics_add(reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "h4", .buckets = inf, .bucket_count = 2 },
		&err) == NULL);
	pn_metrics_free(&reg);
}

PN_TEST(test_series_cap)
{
	struct pn_metrics *reg = pn_metrics_new();
	const char *err = NULL;
	static const char *const l[] = { "tenant", "protocol", NULL };
	char name[32];

	struct pn_metric *c = pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "logins_total", .labels = l,
					  .max_series = 5 }, &err);
	CHECK(c != NULL);
	if (c == NULL) {
		pn_metrics_free(&reg);
		return;
	}
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "t%d", i % 20);
		pn_counter_inc(pn_metric_series(c, PN_LABELS(name, "imap")));
	}
	CHECK_INT(pn_metric_series_count(c), 5);
	struct parsed *p = render(reg);
	/* t0..t4 got 5 each; t5..t19 (15 names x 5) went to "other" */
	CHECK(find(p, "postern_logins_total", "tenant=t0,protocol=imap") == 5);
	CHECK(find(p, "postern_logins_total", "tenant=t4,protocol=imap") == 5);
	CHECK(isnan(find(p, "postern_logins_total", "tenant=t5,protocol=imap")));
	CHECK(find(p, "postern_logins_total", "tenant=other,protocol=other") == 75);
	CHECK(find(p, "postern_metrics_series_overflow_total",
		   "metric=postern_logins_total") == 75);
	CHECK_INT(count_named(p, "postern_logins_total"), 6);

	/* an over-long value goes to "other" even below the cap */
	struct pn_metric *g = pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "g", .labels = l }, &err);
	char big[PN_METRICS_MAX_LABEL_VALUE + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(g != NULL);
	if (g != NULL) {
		pn_gauge_set(pn_metric_series(g, PN_LABELS(big, "imap")), 7);
		CHECK_INT(pn_metric_series_count(g), 0);
		/* a real ("other","other") shares the overflow series: no duplicate */
		pn_gauge_add(pn_metric_series(g, PN_LABELS("other", "other")), 1);
		p = render(reg);
		CHECK(find(p, "postern_g", "tenant=other,protocol=other") == 8);
		CHECK_INT(count_named(p, "postern_g"), 1);
		/* NULL label values count as "" */
		pn_gauge_set(pn_metric_series(g, PN_LABELS(NULL, "pop3")), 2);
		p = render(reg);
		CHECK(find(p, "postern_g", "tenant=,protocol=pop3") == 2);
	}
	pn_metrics_free(&reg);
}

PN_TEST(test_registration_errors)
{
	struct pn_metrics *reg = pn_metrics_new();
	const char *err = NULL;
	static const char *const dup[] = { "a", "a", NULL };
	static const char *const reserved[] = { "__x", NULL };
	static const char *const bad[] = { "1a", NULL };
	static const char *const nine[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", NULL };

	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "ok_total" }, &err) != NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "ok_total" }, &err) == NULL);
	CHECK(err != NULL && strstr(err, "already") != NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "postern_x" }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "9x" }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "a-b" }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "" }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "metrics_series_overflow_total" }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "d", .labels = dup }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "r", .labels = reserved }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "b", .labels = bad }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "n", .labels = nine }, &err) == NULL);
	CHECK(pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "ns:sub_total" }, &err) != NULL);
	pn_metrics_free(&reg);
	pn_metrics_free(&reg); /* NULL is fine */
}

struct worker {
	struct pn_metric *c, *g, *h;
	int id;
};

#define THREADS 4
#define ROUNDS 20000

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char tenant[16];

	for (int i = 0; i < ROUNDS; i++) {
		snprintf(tenant, sizeof(tenant), "t%d", i % 8);
		pn_counter_inc(pn_metric_series(w->c, PN_LABELS(tenant)));
		pn_gauge_add(pn_metric_series(w->g, NULL), 0.5);
		pn_histogram_observe(pn_metric_series(w->h, NULL), (double)(i % 4));
	}
	return NULL;
}

PN_TEST(test_threads)
{
	struct pn_metrics *reg = pn_metrics_new();
	const char *err = NULL;
	static const char *const l[] = { "tenant", NULL };
	static const double b[] = { 0, 1, 2 };
	struct worker w[THREADS];
	pthread_t t[THREADS];

	struct pn_metric *c = pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "c_total", .labels = l, .max_series = 4 }, &err);
	struct pn_metric *g = pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "g" }, &err);
	struct pn_metric *h = pn_metrics_add(reg, PN_METRIC_HISTOGRAM,
		&(struct pn_metric_opts){ .name = "h", .buckets = b, .bucket_count = 3 }, &err);
	CHECK(c != NULL && g != NULL && h != NULL);
	if (c == NULL || g == NULL || h == NULL) {
		pn_metrics_free(&reg);
		return;
	}
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ c, g, h, i };
		CHECK_INT(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	/* render while the workers update: must not crash or tear the text */
	for (int i = 0; i < 5; i++)
		render(reg);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);

	struct parsed *p = render(reg);
	double total = 0;
	for (size_t i = 0; i < p->count; i++) {
		if (strcmp(p->samples[i].name, "postern_c_total") == 0)
			total += p->samples[i].value;
	}
	CHECK(total == THREADS * ROUNDS);
	CHECK_INT(pn_metric_series_count(c), 4);
	/* 4 of 8 tenants kept; the other half of all updates went to "other" */
	CHECK(find(p, "postern_c_total", "tenant=other") == THREADS * ROUNDS / 2);
	CHECK(find(p, "postern_g", "") == THREADS * ROUNDS * 0.5);
	CHECK(find(p, "postern_h_count", "") == THREADS * ROUNDS);
	CHECK(find(p, "postern_h_bucket", "le=0") == THREADS * ROUNDS / 4);
	CHECK(find(p, "postern_h_bucket", "le=2") == THREADS * ROUNDS / 4 * 3);
	CHECK(find(p, "postern_h_sum", "") == THREADS * (ROUNDS / 4) * (0 + 1 + 2 + 3));
	pn_metrics_free(&reg);
}

PN_TEST_MAIN("metrics",
	PN_TEST_CASE(test_counter_and_gauge),
	PN_TEST_CASE(test_exact_text),
	PN_TEST_CASE(test_histogram),
	PN_TEST_CASE(test_series_cap),
	PN_TEST_CASE(test_registration_errors),
	PN_TEST_CASE(test_threads))
