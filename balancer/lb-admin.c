/* The balancer's admin HTTP routes on postern/admin.h: /status (JSON of
 * listeners, servers and pools with each backend's state and last check),
 * / (a status page: backends, health, and new connections per second over
 * the last minutes as an inline SVG chart; no external assets), /readyz
 * checks (one per listener: some backend can take connections), and the
 * control endpoints POST /backends/<server>/drain, /enable and
 * /weight?w=N, which exist only when admin_control allows them (by
 * default: only when the admin port is bound to a loopback address).
 * Everything runs on the control thread.
 */
#include "lb.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postern/log.h"

enum route_action { ACTION_DRAIN, ACTION_ENABLE, ACTION_WEIGHT };

static const char *const action_names[] = { "drain", "enable", "weight" };

/* ---- JSON and HTML text ---- */

static int json_str(struct pn_buf *out, const char *s)
{
	if (pn_buf_append(out, "\"", 1) < 0)
		return -1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		int r;

		if (c == '"' || c == '\\')
			r = pn_buf_printf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			r = pn_buf_printf(out, "\\u%04x", c);
		else
			r = pn_buf_append(out, s, 1);
		if (r < 0)
			return -1;
	}
	return pn_buf_append(out, "\"", 1);
}

static int html_str(struct pn_buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		int r;

		switch (*s) {
		case '<':
			r = pn_buf_append_str(out, "&lt;");
			break;
		case '>':
			r = pn_buf_append_str(out, "&gt;");
			break;
		case '&':
			r = pn_buf_append_str(out, "&amp;");
			break;
		case '"':
			r = pn_buf_append_str(out, "&quot;");
			break;
		default:
			r = pn_buf_append(out, s, 1);
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

static uint64_t ago(uint64_t now, uint64_t then)
{
	return then == 0 || now < then ? 0 : now - then;
}

/* ---- /status ---- */

static int status_backend(struct lb *lb, struct pn_buf *o, const struct lb_backend *b,
			  uint64_t now)
{
	int r = 0;

	r |= pn_buf_append_str(o, "{\"backend\":");
	r |= json_str(o, b->name);
	r |= pn_buf_append_str(o, ",\"address\":");
	r |= json_str(o, b->addr_text);
	r |= pn_buf_printf(o, ",\"state\":\"%s\",\"up\":%s,\"weight\":%u,"
			   "\"effective_weight\":%.2f,\"active\":%u,\"total\":%llu,"
			   "\"connect_failures\":%llu,\"check_failures\":%llu,"
			   "\"bytes_to_backend\":%llu,\"bytes_from_backend\":%llu,"
			   "\"last_check\":",
			   b->state, b->probe.up ? "true" : "false", b->srv->weight,
			   (double)atomic_load(&b->eff_weight) / LB_WEIGHT_SCALE,
			   atomic_load(&b->active),
			   (unsigned long long)pn_counter_value(b->m_total),
			   (unsigned long long)pn_counter_value(b->m_connect_failures),
			   (unsigned long long)pn_counter_value(b->m_check_failures),
			   (unsigned long long)pn_counter_value(b->m_bytes_to),
			   (unsigned long long)pn_counter_value(b->m_bytes_from));
	r |= json_str(o, b->last_check);
	r |= pn_buf_printf(o, ",\"last_check_ms_ago\":%llu,\"last_check_latency_ms\":%u,"
			   "\"state_since_ms_ago\":%llu}",
			   (unsigned long long)ago(now, b->last_check_ms),
			   b->last_check_latency_ms,
			   (unsigned long long)ago(now, b->probe.changed_ms));
	return r;
}

static int status_json(struct lb *lb, struct pn_buf *o)
{
	uint64_t now = pn_loop_now_ms(lb->loop);
	const struct lb_snapshot *s = atomic_load(&lb->snap);
	bool first;
	int r = 0;

	r |= pn_buf_append_str(o, "{\"node\":");
	r |= json_str(o, lb->cfg.node);
	r |= pn_buf_printf(o, ",\"uptime_s\":%llu,\"stopping\":%s,\"threads\":%u,"
			   "\"connections\":%u,\"algorithm\":\"%s\",\"proxy_protocol\":\"%s\","
			   "\"reloads\":%llu,\"reload_failures\":%llu,\"last_reload\":",
			   (unsigned long long)((now - lb->started_ms) / 1000),
			   lb->stopping ? "true" : "false", lb->nworkers, lb_connections(lb),
			   lb_algo_name((enum lb_algo)lb->cfg.algorithm),
			   lb->cfg.proxy_protocol == LB_PROXY_V2 ? "v2" : "off",
			   (unsigned long long)lb->reloads,
			   (unsigned long long)lb->reload_failures);
	r |= json_str(o, lb->last_reload);
	r |= pn_buf_append_str(o, ",\"listeners\":[");
	first = true;
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		if (lb->cfg.listen[p][0] == '\0')
			continue;
		r |= pn_buf_printf(o, "%s{\"protocol\":\"%s\",\"mode\":\"%s\",\"listen\":",
				   first ? "" : ",", lb_protos[p].name, s->l7[p] ? "l7" : "l4");
		r |= json_str(o, lb->listen_text[p]);
		r |= pn_buf_printf(o, ",\"accepted\":%llu,\"refused\":%llu}",
				   (unsigned long long)pn_counter_value(lb->m.accepted_s[p]),
				   (unsigned long long)atomic_load(&lb->refused_n[p]));
		first = false;
	}
	r |= pn_buf_append_str(o, "],\"servers\":[");
	first = true;
	for (const struct lb_server *v = lb->servers; v != NULL; v = v->next) {
		if (v->retired)
			continue;
		r |= pn_buf_append_str(o, first ? "{\"name\":" : ",{\"name\":");
		r |= json_str(o, v->name);
		r |= pn_buf_printf(o, ",\"weight\":%u,\"drained\":%s,\"admin\":", v->weight,
				   v->admin_drain ? "true" : "false");
		r |= json_str(o, v->admin_text);
		if (v->has_admin && lb->cfg.check_http) {
			r |= pn_buf_printf(o, ",\"readyz\":{\"up\":%s,\"draining\":%s,\"last\":",
					   v->ready.up ? "true" : "false",
					   v->ready_draining ? "true" : "false");
			r |= json_str(o, v->last_check);
			r |= pn_buf_printf(o, ",\"last_ms_ago\":%llu}",
					   (unsigned long long)ago(now, v->last_check_ms));
		}
		r |= pn_buf_append_str(o, "}");
		first = false;
	}
	r |= pn_buf_append_str(o, "],\"pools\":{");
	first = true;
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		const struct lb_pool *pool = &s->pool[p];

		if (pool->n == 0 && lb->cfg.listen[p][0] == '\0')
			continue;
		r |= pn_buf_printf(o, "%s\"%s\":[", first ? "" : ",", lb_protos[p].name);
		for (size_t i = 0; i < pool->n; i++) {
			if (i > 0)
				r |= pn_buf_append_str(o, ",");
			r |= status_backend(lb, o, pool->be[i], now);
		}
		r |= pn_buf_append_str(o, "]");
		first = false;
	}
	r |= pn_buf_append_str(o, "},\"dns\":[");
	{
		const struct lb_dns_entry *list[64];
		size_t n = lb_dns_entries(lb, list, 64);

		for (size_t i = 0; i < n; i++) {
			const char *spec, *last;
			size_t naddrs;

			lb_dns_entry_info(list[i], &spec, &naddrs, &last);
			r |= pn_buf_append_str(o, i > 0 ? ",{\"entry\":" : "{\"entry\":");
			r |= json_str(o, spec);
			r |= pn_buf_printf(o, ",\"addresses\":%zu,\"last\":", naddrs);
			r |= json_str(o, last);
			r |= pn_buf_append_str(o, "}");
		}
	}
	r |= pn_buf_append_str(o, "],\"connections_per_second\":[");
	for (unsigned int i = 0; i < lb->cps_count; i++) {
		unsigned int k = (lb->cps_head + LB_RATE_SAMPLES - lb->cps_count + i) %
				 LB_RATE_SAMPLES;

		r |= pn_buf_printf(o, "%s%u", i > 0 ? "," : "", lb->cps[k]);
	}
	r |= pn_buf_append_str(o, "]}\n");
	return r != 0 ? -1 : 0;
}

static int route_status(void *ctx, const struct pn_admin_request *req,
			struct pn_admin_response *resp)
{
	resp->content_type = "application/json";
	return status_json(ctx, resp->body);
}

/* ---- / ---- */

#define CHART_W 600
#define CHART_H 120

static int chart_svg(struct lb *lb, struct pn_buf *o)
{
	uint32_t max = 1;
	int r = 0;

	for (unsigned int i = 0; i < lb->cps_count; i++) {
		unsigned int k = (lb->cps_head + LB_RATE_SAMPLES - lb->cps_count + i) %
				 LB_RATE_SAMPLES;

		if (lb->cps[k] > max)
			max = lb->cps[k];
	}
	r |= pn_buf_printf(o, "<svg id=\"cps\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
			   "role=\"img\" aria-label=\"new connections per second\">"
			   "<rect width=\"%d\" height=\"%d\" fill=\"#f6f8fa\"/>"
			   "<text x=\"4\" y=\"12\" font-size=\"10\">%u/s</text>"
			   "<text x=\"4\" y=\"%d\" font-size=\"10\">0</text>",
			   CHART_W, CHART_H, CHART_W, CHART_H, CHART_W, CHART_H, max, CHART_H - 3);
	if (lb->cps_count > 0) {
		r |= pn_buf_append_str(o, "<polyline fill=\"none\" stroke=\"#0969da\" "
					  "stroke-width=\"1.5\" points=\"");
		for (unsigned int i = 0; i < lb->cps_count; i++) {
			unsigned int k = (lb->cps_head + LB_RATE_SAMPLES - lb->cps_count + i) %
					 LB_RATE_SAMPLES;
			/* Newest sample at the right edge, one pixel pair per second. */
			unsigned int x = CHART_W - 2 * (lb->cps_count - 1 - i);
			unsigned int y = CHART_H - 2 - (unsigned int)((uint64_t)lb->cps[k] *
							(CHART_H - 16) / max);

			r |= pn_buf_printf(o, "%s%u,%u", i > 0 ? " " : "", x, y);
		}
		r |= pn_buf_append_str(o, "\"/>");
	}
	r |= pn_buf_append_str(o, "</svg>");
	return r;
}

static int status_html(struct lb *lb, struct pn_buf *o)
{
	uint64_t now = pn_loop_now_ms(lb->loop);
	const struct lb_snapshot *s = atomic_load(&lb->snap);
	int r = 0;

	r |= pn_buf_append_str(o,
		"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
		"<meta http-equiv=\"refresh\" content=\"5\">"
		"<title>postern-balancer ");
	r |= html_str(o, lb->cfg.node);
	r |= pn_buf_append_str(o,
		"</title><style>body{font:14px sans-serif;margin:1.5em;color:#24292f}"
		"table{border-collapse:collapse;margin:.5em 0 1.5em}"
		"th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}"
		"th{background:#f6f8fa}.up{background:#dafbe1}.down{background:#ffebe9}"
		".draining{background:#fff8c5}.starting{background:#ddf4ff}"
		"</style></head><body><h1>postern-balancer ");
	r |= html_str(o, lb->cfg.node);
	r |= pn_buf_printf(o, "</h1><p>%s &middot; %u threads &middot; algorithm %s &middot; "
			   "%u connections open &middot; up %llu s</p>",
			   lb->stopping ? "<b>stopping</b>" : "running", lb->nworkers,
			   lb_algo_name((enum lb_algo)lb->cfg.algorithm), lb_connections(lb),
			   (unsigned long long)((now - lb->started_ms) / 1000));
	r |= pn_buf_append_str(o, "<h2>New connections per second</h2>");
	r |= chart_svg(lb, o);
	r |= pn_buf_append_str(o, "<h2>Backends</h2><table id=\"backends\"><tr><th>protocol</th>"
				  "<th>backend</th><th>address</th><th>state</th><th>weight</th>"
				  "<th>active</th><th>total</th><th>connect failures</th>"
				  "<th>check failures</th><th>last check</th></tr>");
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		const struct lb_pool *pool = &s->pool[p];

		for (size_t i = 0; i < pool->n; i++) {
			const struct lb_backend *b = pool->be[i];

			r |= pn_buf_printf(o, "<tr class=\"%s\"><td>%s</td><td>", b->state,
					   lb_protos[p].name);
			r |= html_str(o, b->name);
			r |= pn_buf_printf(o, "</td><td>%s</td><td>%s</td><td>%.2f/%u</td>"
					   "<td>%u</td><td>%llu</td><td>%llu</td><td>%llu</td><td>",
					   b->addr_text, b->state,
					   (double)atomic_load(&b->eff_weight) / LB_WEIGHT_SCALE,
					   b->srv->weight, atomic_load(&b->active),
					   (unsigned long long)pn_counter_value(b->m_total),
					   (unsigned long long)pn_counter_value(b->m_connect_failures),
					   (unsigned long long)pn_counter_value(b->m_check_failures));
			r |= html_str(o, b->last_check);
			r |= pn_buf_printf(o, " (%llu ms ago)</td></tr>",
					   (unsigned long long)ago(now, b->last_check_ms));
		}
	}
	r |= pn_buf_append_str(o, "</table><h2>Servers</h2><table id=\"servers\"><tr>"
				  "<th>server</th><th>admin</th><th>readyz</th><th>drained</th></tr>");
	for (const struct lb_server *v = lb->servers; v != NULL; v = v->next) {
		if (v->retired)
			continue;
		r |= pn_buf_append_str(o, "<tr><td>");
		r |= html_str(o, v->name);
		r |= pn_buf_printf(o, "</td><td>%s</td><td>", v->has_admin ? v->admin_text : "-");
		r |= html_str(o, v->has_admin && lb->cfg.check_http ? v->last_check : "-");
		r |= pn_buf_printf(o, "</td><td>%s</td></tr>", v->admin_drain ? "yes" : "no");
	}
	r |= pn_buf_append_str(o, "</table><p><a href=\"/status\">/status</a> &middot; "
				  "<a href=\"/metrics\">/metrics</a></p></body></html>\n");
	return r != 0 ? -1 : 0;
}

static int route_page(void *ctx, const struct pn_admin_request *req,
		      struct pn_admin_response *resp)
{
	resp->content_type = "text/html; charset=utf-8";
	return status_html(ctx, resp->body);
}

/* ---- control ---- */

/* w=N from a query string: 1..LB_WEIGHT_MAX. */
static int query_weight(const char *q, uint32_t *w_r)
{
	unsigned long v = 0;
	size_t digits = 0;

	if (q == NULL || strncmp(q, "w=", 2) != 0)
		return -1;
	for (q += 2; *q >= '0' && *q <= '9'; q++) {
		v = v * 10 + (unsigned long)(*q - '0');
		if (++digits > 4)
			return -1;
	}
	if (digits == 0 || (*q != '\0' && *q != '&') || v < 1 || v > LB_WEIGHT_MAX)
		return -1;
	*w_r = (uint32_t)v;
	return 0;
}

static int route_control(void *ctx, const struct pn_admin_request *req,
			 struct pn_admin_response *resp)
{
	struct lb_route_ctx *rc = ctx;
	struct lb *lb = rc->lb;
	struct lb_server *srv = lb_server_find(lb, rc->name);
	uint32_t w;

	resp->content_type = "application/json";
	if (srv == NULL) {
		resp->status = 404;
		return pn_buf_append_str(resp->body, "{\"error\":\"no such backend\"}\n");
	}
	switch (rc->action) {
	case ACTION_DRAIN:
		srv->admin_drain = true;
		break;
	case ACTION_ENABLE:
		srv->admin_drain = false;
		break;
	case ACTION_WEIGHT:
		if (query_weight(req->query, &w) < 0) {
			resp->status = 400;
			return pn_buf_printf(resp->body,
					     "{\"error\":\"expected ?w=N with N in 1..%d\"}\n",
					     LB_WEIGHT_MAX);
		}
		srv->weight = w;
		break;
	}
	pn_info("event=admin_%s server=%s weight=%u drained=%s", action_names[rc->action],
		srv->name, srv->weight, srv->admin_drain ? "yes" : "no");
	lb_update_weights(lb);
	if (pn_buf_append_str(resp->body, "{\"backend\":") < 0 ||
	    json_str(resp->body, srv->name) < 0)
		return -1;
	return pn_buf_printf(resp->body, ",\"drained\":%s,\"weight\":%u}\n",
			     srv->admin_drain ? "true" : "false", srv->weight);
}

static bool control_allowed(const struct lb *lb)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (lb->cfg.admin_control == LB_ADMIN_CONTROL_ANY)
		return true;
	if (lb->cfg.admin_control == LB_ADMIN_CONTROL_OFF ||
	    pn_parse_hostport(lb->cfg.admin_listen, &ss, &len) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	return ss.ss_family == AF_INET6 &&
	       IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
}

void lb_admin_add_server_routes(struct lb *lb, const char *name)
{
	const char *err = NULL;

	if (lb->admin == NULL || !control_allowed(lb))
		return;
	for (struct lb_route_ctx *r = lb->routes; r != NULL; r = r->next)
		if (strcmp(r->name, name) == 0)
			return; /* routes outlive servers: a name comes back */
	for (int a = ACTION_DRAIN; a <= ACTION_WEIGHT; a++) {
		struct lb_route_ctx *rc = calloc(1, sizeof(*rc));
		char path[LB_NAME_MAX + 32];

		if (rc == NULL)
			return;
		rc->lb = lb;
		rc->action = a;
		snprintf(rc->name, sizeof(rc->name), "%s", name);
		rc->next = lb->routes;
		lb->routes = rc;
		snprintf(path, sizeof(path), "/backends/%s/%s", name, action_names[a]);
		if (pn_admin_route(lb->admin, "POST", path, route_control, rc, &err) < 0)
			pn_error("event=admin_route_failed path=%s error=%s", path, err);
	}
}

/* ---- /readyz ---- */

static void ready_checks(void *ctx, struct pn_admin_checks *checks)
{
	struct lb *lb = ctx;
	const struct lb_snapshot *s = atomic_load(&lb->snap);

	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		const struct lb_pool *pool = &s->pool[p];
		bool ok = false;

		if (lb->cfg.listen[p][0] == '\0')
			continue;
		for (size_t i = 0; i < pool->n && !ok; i++)
			ok = atomic_load(&pool->be[i]->eff_weight) > 0;
		pn_admin_check(checks, lb_protos[p].name, ok, ok ? NULL : "no healthy upstream");
	}
}

int lb_admin_init(struct lb *lb, const char **error_r)
{
	struct pn_admin_settings set = {
		.listen = lb->cfg.admin_listen,
		.metrics = lb->metrics,
		.ready = ready_checks,
		.ready_ctx = lb,
	};

	lb->admin = pn_admin_new(lb->loop, &set, error_r);
	if (lb->admin == NULL)
		return -1;
	if (pn_admin_route(lb->admin, "GET", "/status", route_status, lb, error_r) < 0 ||
	    pn_admin_route(lb->admin, "GET", "/", route_page, lb, error_r) < 0)
		return -1;
	if (!control_allowed(lb) && lb->cfg.admin_control == LB_ADMIN_CONTROL_LOOPBACK)
		pn_warn("event=admin_control_off reason=\"admin_listen is not a loopback "
			"address; set admin_control = any to allow POST /backends/...\"");
	pn_info("event=admin_listening addr=%s port=%u", lb->cfg.admin_listen,
		(unsigned int)pn_admin_port(lb->admin));
	return 0;
}
