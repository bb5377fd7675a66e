/* The load generator's reports: the text table (throughput, latency
 * percentiles per step, errors, CPU, memory) and the same as JSON. See
 * report.h.
 */
#include "report.h"

#include <string.h>

static const char *mode_name(enum bn_mode m)
{
	switch (m) {
	case BN_MODE_CLOSED: return "closed";
	case BN_MODE_OPEN: return "open";
	case BN_MODE_IDLE: return "idle";
	}
	return "?";
}

static double per_s(const struct bn_results *r, uint64_t n)
{
	return r->elapsed_s > 0 ? (double)n / r->elapsed_s : 0.0;
}

static const char *unit_name(const struct bn_config *cfg)
{
	return cfg->script->unit_loop >= 0 ? "iteration" : "session";
}

void bn_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void text_row(FILE *f, const char *name, const struct bn_hist *h, double rate)
{
	if (h->total == 0)
		return;
	fprintf(f, "  %-14s %9llu %10.1f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name,
		(unsigned long long)h->total, rate, bn_hist_mean(h) / 1e6,
		(double)bn_hist_quantile(h, 0.50) / 1e6, (double)bn_hist_quantile(h, 0.90) / 1e6,
		(double)bn_hist_quantile(h, 0.99) / 1e6, (double)bn_hist_quantile(h, 0.999) / 1e6,
		(double)h->max / 1e6);
}

void bn_report_text(FILE *f, const struct bn_config *cfg, const struct bn_results *r,
		    const struct bn_report_meta *meta)
{
	const struct bn_script *s = cfg->script;

	fprintf(f, "postern-bench: %s (%s), %s loop, %u threads, %u connections -> %s\n",
		s->name, s->proto, mode_name(cfg->mode), cfg->threads, cfg->conns, meta->target);
	if (cfg->mode == BN_MODE_OPEN)
		fprintf(f, "  target rate %.1f %ss/s\n", cfg->rate, unit_name(cfg));
	fprintf(f, "  %.2f s recorded: %llu %ss = %.1f/s; sessions %llu ok, %llu failed\n",
		r->elapsed_s, (unsigned long long)r->units, unit_name(cfg), per_s(r, r->units),
		(unsigned long long)r->sessions, (unsigned long long)r->sessions_failed);
	fprintf(f, "  bytes: in %.2f MB/s, out %.2f MB/s\n", per_s(r, r->bytes_in) / 1e6,
		per_s(r, r->bytes_out) / 1e6);
	if (r->machine_total_s > 0)
		fprintf(f, "  cpu: machine %.2f of %u cores busy (%.0f%%), load generator %.2f cores\n",
			r->machine_busy_s / r->elapsed_s, r->cores,
			100.0 * r->machine_busy_s / r->machine_total_s, r->self_cpu_s / r->elapsed_s);
	if (cfg->mode == BN_MODE_IDLE) {
		fprintf(f, "  idle: %llu of %u connections held\n", (unsigned long long)r->held,
			cfg->conns);
		for (unsigned int i = 0; i < r->npids; i++) {
			const struct bn_mem *b = &r->mem_before[i], *a = &r->mem_after[i];
			double per = r->held > 0 ? ((double)a->pss_kb - (double)b->pss_kb) * 1024.0 /
							   (double)r->held
						 : 0.0;
			fprintf(f, "  pid %d (%u processes): PSS %llu -> %llu kB, RSS %llu -> %llu kB, "
				   "%.0f bytes PSS per connection\n",
				(int)cfg->pids[i], a->processes, (unsigned long long)b->pss_kb,
				(unsigned long long)a->pss_kb, (unsigned long long)b->rss_kb,
				(unsigned long long)a->rss_kb, per);
		}
	}
	fprintf(f, "  %-14s %9s %10s %9s %9s %9s %9s %9s %9s\n", "latency (ms)", "count", "per s",
		"mean", "p50", "p90", "p99", "p99.9", "max");
	text_row(f, "connect", &r->connect, per_s(r, r->connect.total));
	for (unsigned int i = 0; i < r->nlabels; i++)
		text_row(f, s->labels[i], &r->labels[i], per_s(r, r->labels[i].total));
	text_row(f, unit_name(cfg), &r->unit, per_s(r, r->unit.total));
	uint64_t nerr = 0;
	for (unsigned int k = 0; k < BN_ERR_COUNT; k++)
		nerr += r->errors[k];
	if (nerr == 0) {
		fprintf(f, "  errors: none\n");
		return;
	}
	fprintf(f, "  errors:\n");
	for (unsigned int k = 0; k < BN_ERR_COUNT; k++) {
		if (r->errors[k] > 0)
			fprintf(f, "    %-9s %8llu  e.g. %s\n", bn_err_names[k],
				(unsigned long long)r->errors[k], r->samples[k]);
	}
}

static void json_hist(FILE *f, const struct bn_hist *h)
{
	fprintf(f, "{\"count\": %llu, \"mean\": %.1f, \"p50\": %.1f, \"p90\": %.1f, "
		   "\"p99\": %.1f, \"p99.9\": %.1f, \"max\": %.1f}",
		(unsigned long long)h->total, bn_hist_mean(h) / 1e3,
		(double)bn_hist_quantile(h, 0.50) / 1e3, (double)bn_hist_quantile(h, 0.90) / 1e3,
		(double)bn_hist_quantile(h, 0.99) / 1e3, (double)bn_hist_quantile(h, 0.999) / 1e3,
		(double)h->max / 1e3);
}

static void json_mem(FILE *f, const struct bn_mem *m)
{
	fprintf(f, "{\"rss_kb\": %llu, \"pss_kb\": %llu, \"private_kb\": %llu, \"processes\": %u}",
		(unsigned long long)m->rss_kb, (unsigned long long)m->pss_kb,
		(unsigned long long)m->private_kb, m->processes);
}

void bn_report_json(FILE *f, const struct bn_config *cfg, const struct bn_results *r,
		    const struct bn_report_meta *meta)
{
	const struct bn_script *s = cfg->script;

	fprintf(f, "{\n  \"tool\": \"postern-bench\",\n  \"script\": ");
	bn_json_string(f, s->name);
	fprintf(f, ",\n  \"proto\": ");
	bn_json_string(f, s->proto);
	fprintf(f, ",\n  \"target\": ");
	bn_json_string(f, meta->target);
	if (meta->tag != NULL) {
		fprintf(f, ",\n  \"tag\": ");
		bn_json_string(f, meta->tag);
	}
	fprintf(f, ",\n  \"mode\": \"%s\",\n  \"threads\": %u,\n  \"conns\": %u,\n"
		   "  \"rate\": %.3f,\n  \"tls\": %s,\n  \"elapsed_s\": %.6f,\n",
		mode_name(cfg->mode), cfg->threads, cfg->conns, cfg->rate,
		cfg->tls == NULL ? "null" : cfg->tls_implicit ? "\"implicit\"" : "\"starttls\"",
		r->elapsed_s);
	fprintf(f, "  \"unit\": \"%s\",\n  \"units\": %llu,\n  \"units_per_s\": %.3f,\n",
		unit_name(cfg), (unsigned long long)r->units, per_s(r, r->units));
	fprintf(f, "  \"sessions\": %llu,\n  \"sessions_failed\": %llu,\n"
		   "  \"bytes_in\": %llu,\n  \"bytes_out\": %llu,\n",
		(unsigned long long)r->sessions, (unsigned long long)r->sessions_failed,
		(unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out);
	fprintf(f, "  \"cpu\": {\"cores\": %u, \"machine_busy_s\": %.4f, \"machine_total_s\": %.4f, "
		   "\"bench_cpu_s\": %.4f},\n",
		r->cores, r->machine_busy_s, r->machine_total_s, r->self_cpu_s);
	fprintf(f, "  \"latency_us\": {\n    \"connect\": ");
	json_hist(f, &r->connect);
	for (unsigned int i = 0; i < r->nlabels; i++) {
		fprintf(f, ",\n    ");
		bn_json_string(f, s->labels[i]);
		fprintf(f, ": ");
		json_hist(f, &r->labels[i]);
	}
	fprintf(f, ",\n    \"%s\": ", unit_name(cfg));
	json_hist(f, &r->unit);
	fprintf(f, "\n  },\n  \"steps\": [");
	for (unsigned int i = 0; i < r->nlabels; i++) {
		fprintf(f, "%s", i > 0 ? ", " : "");
		bn_json_string(f, s->labels[i]);
	}
	fprintf(f, "],\n  \"errors\": {");
	for (unsigned int k = 0; k < BN_ERR_COUNT; k++)
		fprintf(f, "%s\"%s\": %llu", k > 0 ? ", " : "", bn_err_names[k],
			(unsigned long long)r->errors[k]);
	fprintf(f, "},\n  \"error_samples\": {");
	bool first = true;
	for (unsigned int k = 0; k < BN_ERR_COUNT; k++) {
		if (r->samples[k][0] == '\0')
			continue;
		fprintf(f, "%s\"%s\": ", first ? "" : ", ", bn_err_names[k]);
		bn_json_string(f, r->samples[k]);
		first = false;
	}
	fprintf(f, "},\n  \"failed_before_reply\": %llu,\n  \"failed_after_reply\": %llu",
		(unsigned long long)r->failed_before_reply,
		(unsigned long long)r->failed_after_reply);
	if (r->series.bucket_ns > 0) {
		const struct bn_series *se = &r->series;
		uint32_t n = bn_series_used(se, (uint64_t)(r->elapsed_s * 1e9));

		fprintf(f, ",\n  \"series\": {\"bucket_ms\": %.3f, \"start_mono_ns\": %llu, "
			   "\"buckets\": %u, \"outside\": %llu",
			(double)se->bucket_ns / 1e6, (unsigned long long)r->start_mono_ns, n,
			(unsigned long long)se->outside);
		for (unsigned int k = 0; k < BN_SERIES_KINDS; k++) {
			fprintf(f, ",\n    \"%s\": [", bn_series_kind_names[k]);
			for (uint32_t i = 0; i < n; i++)
				fprintf(f, "%s%u", i > 0 ? "," : "", se->counts[i][k]);
			fprintf(f, "]");
		}
		fprintf(f, "}");
	}
	if (cfg->mode == BN_MODE_IDLE) {
		fprintf(f, ",\n  \"held\": %llu,\n  \"memory\": [", (unsigned long long)r->held);
		for (unsigned int i = 0; i < r->npids; i++) {
			const struct bn_mem *b = &r->mem_before[i], *a = &r->mem_after[i];
			double per = r->held > 0 ? ((double)a->pss_kb - (double)b->pss_kb) * 1024.0 /
							   (double)r->held
						 : 0.0;
			fprintf(f, "%s\n    {\"pid\": %d, \"before\": ", i > 0 ? "," : "", (int)cfg->pids[i]);
			json_mem(f, b);
			fprintf(f, ", \"after\": ");
			json_mem(f, a);
			fprintf(f, ", \"pss_bytes_per_conn\": %.1f}", per);
		}
		fprintf(f, "\n  ]");
	}
	fprintf(f, "\n}\n");
}
