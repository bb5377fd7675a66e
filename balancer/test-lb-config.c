/* Unit tests for lb-config.c: defaults, the environment names the local
 * cluster uses, and pairing the positional upstream lists into servers
 * (names, weights, "-" gaps, bad input), DNS entries and their grouping
 * into servers by IP, the PROXY-accepting networks. */
#include "lb-config.h"
#include "lb-algo.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static int load(struct lb_config *cfg, const char *const *sets, size_t n, const char **err)
{
	memset(cfg, 0, sizeof(*cfg));
	if (pn_config_defaults(lb_config_defs, lb_config_def_count, cfg, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (pn_config_set(lb_config_defs, lb_config_def_count, cfg, sets[i], err) < 0)
			return -1;
	return 0;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

PN_TEST(test_defaults_and_env_names)
{
	struct lb_config cfg;
	const char *err = NULL;
	char env[64];

	CHECK_INT(load(&cfg, NULL, 0, &err), 0);
	CHECK_STR(cfg.listen[LB_PROTO_IMAP], "");
	CHECK_INT(cfg.proxy_protocol, LB_PROXY_V2);
	CHECK_INT(cfg.algorithm, LB_ALGO_ROUNDROBIN);
	CHECK_INT(cfg.check_interval_ms, 500);
	CHECK_INT(cfg.check_fall, 2);
	/* A hung node is out within 2 s: the next check starts at most an
	 * interval later, then fall checks time out back to back. */
	CHECK(cfg.check_interval_ms + (uint64_t)cfg.check_fall * cfg.check_timeout_ms < 2000);
	CHECK_INT(cfg.relay_buffer, 65536);
	lb_config_free(&cfg);
	/* The names docs/local-cluster.md gives the balancer. */
	CHECK_STR(pn_config_env_name("submissions_upstreams", env, sizeof(env)),
		  "POSTERN_SUBMISSIONS_UPSTREAMS");
	for (size_t i = 0; i < lb_config_def_count; i++) {
		pn_config_env_name(lb_config_defs[i].key, env, sizeof(env));
		CHECK(strncmp(env, "POSTERN_", 8) == 0);
	}
	{
		static const char *const want[] = { "imap_listen", "lmtp_upstreams",
			"upstream_admin", "proxy_protocol", "admin_listen", "node", "threads" };
		for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
			bool found = false;

			for (size_t i = 0; i < lb_config_def_count; i++)
				found |= strcmp(lb_config_defs[i].key, want[w]) == 0;
			CHECK(found);
		}
	}
}

PN_TEST(test_topology_pairs_lists)
{
	static const char *const sets[] = {
		"imap_upstreams=127.0.0.1:11143, 127.0.0.1:12143",
		"pop3_upstreams=127.0.0.1:11110,-",
		"lmtp_upstreams=[::1]:24,[::1]:25,[::1]:26",
		"upstream_admin=127.0.0.1:10081,127.0.0.1:10082",
		"upstream_weights=1,2,3",
	};
	struct lb_config cfg;
	struct lb_topology t;
	const char *err = NULL;

	CHECK_INT(load(&cfg, sets, 5, &err), 0);
	CHECK_INT(lb_topology_build(&cfg, NULL, &t, &err), 0);
	CHECK_INT(t.n, 3);
	if (t.n == 3) {
		CHECK_STR(t.servers[0].name, "upstream-1");
		CHECK_STR(t.servers[2].name, "upstream-3");
		CHECK_INT(t.servers[1].weight, 2);
		CHECK(t.servers[0].has[LB_PROTO_IMAP] && t.servers[1].has[LB_PROTO_IMAP]);
		CHECK(!t.servers[2].has[LB_PROTO_IMAP]);
		CHECK(t.servers[0].has[LB_PROTO_POP3] && !t.servers[1].has[LB_PROTO_POP3]);
		CHECK_INT(port_of(&t.servers[1].addr[LB_PROTO_IMAP]), 12143);
		CHECK_INT(t.servers[2].addr[LB_PROTO_LMTP].ss_family, AF_INET6);
		CHECK(t.servers[1].has_admin && !t.servers[2].has_admin);
		CHECK_INT(port_of(&t.servers[1].admin), 10082);
	}
	lb_topology_free(&t);
	CHECK(t.servers == NULL);
	lb_config_free(&cfg);
}

static const char *topo_error(const char *const *sets, size_t n)
{
	static char msg[256];
	struct lb_config cfg;
	struct lb_topology t;
	const char *err = NULL;

	if (load(&cfg, sets, n, &err) < 0) {
		snprintf(msg, sizeof(msg), "config: %s", err);
		lb_config_free(&cfg);
		return msg;
	}
	if (lb_topology_build(&cfg, NULL, &t, &err) == 0) {
		lb_topology_free(&t);
		lb_config_free(&cfg);
		return NULL;
	}
	snprintf(msg, sizeof(msg), "%s", err);
	lb_config_free(&cfg);
	return msg;
}

PN_TEST(test_topology_names_and_errors)
{
	static const char *const named[] = { "imap_upstreams=127.0.0.1:1,127.0.0.1:2",
					     "upstream_names=fe1,fe-2.x" };
	static const char *const dup[] = { "imap_upstreams=127.0.0.1:1,127.0.0.1:2",
					   "upstream_names=fe1,fe1" };
	static const char *const bad_name[] = { "imap_upstreams=127.0.0.1:1",
						"upstream_names=fe 1" };
	static const char *const short_names[] = { "imap_upstreams=127.0.0.1:1,127.0.0.1:2",
						   "upstream_names=fe1" };
	static const char *const bad_addr[] = { "smtp_upstreams=mail.example:25" };
	static const char *const bad_weight[] = { "imap_upstreams=127.0.0.1:1",
						  "upstream_weights=0" };
	static const char *const big_weight[] = { "imap_upstreams=127.0.0.1:1",
						  "upstream_weights=1001" };
	static const char *const bad_listen[] = { "imap_listen=localhost:143" };
	const char *e;

	CHECK(topo_error(named, 2) == NULL);
	e = topo_error(dup, 2);
	CHECK(e != NULL && strstr(e, "twice") != NULL);
	e = topo_error(bad_name, 2);
	CHECK(e != NULL && strstr(e, "bad name") != NULL);
	e = topo_error(short_names, 2);
	CHECK(e != NULL && strstr(e, "1 names for 2 servers") != NULL);
	e = topo_error(bad_addr, 1);
	CHECK(e != NULL && strstr(e, "smtp_upstreams: bad address") != NULL);
	e = topo_error(bad_weight, 2);
	CHECK(e != NULL && strstr(e, "bad weight") != NULL);
	e = topo_error(big_weight, 2);
	CHECK(e != NULL && strstr(e, "bad weight") != NULL);
	e = topo_error(bad_listen, 1);
	CHECK(e != NULL && strncmp(e, "config:", 7) == 0);
}

PN_TEST(test_dns_spec_parse)
{
	struct lb_dns_spec sp;

	CHECK_INT(lb_dns_spec_parse("127.0.0.1:143", &sp), 0);
	CHECK_INT(lb_dns_spec_parse("-", &sp), 0);
	CHECK_INT(lb_dns_spec_parse("dns:frontends.svc.local:1143", &sp), 1);
	CHECK_INT(sp.kind, LB_DNS_ADDR);
	CHECK_STR(sp.name, "frontends.svc.local");
	CHECK_INT(sp.port, 1143);
	CHECK_INT(lb_dns_spec_parse("dns:fe.local.:143", &sp), 1);
	CHECK_STR(sp.name, "fe.local");
	CHECK_INT(lb_dns_spec_parse("srv:_imap._tcp.frontends.svc.local", &sp), 1);
	CHECK_INT(sp.kind, LB_DNS_SRV);
	CHECK_STR(sp.name, "_imap._tcp.frontends.svc.local");
	CHECK_INT(sp.port, 0);
	CHECK_INT(lb_dns_spec_parse("dns:fe.local", &sp), -1);	/* no port */
	CHECK_INT(lb_dns_spec_parse("dns:fe.local:0", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("dns:fe.local:65536", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("dns:fe.local:0143", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("dns::143", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("dns:fe..local:143", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("dns:fe local:143", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("srv:", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("srv:.", &sp), -1);
	CHECK_INT(lb_dns_spec_parse("srv:a/b", &sp), -1);
	{
		char longname[300];

		memset(longname, 'a', sizeof(longname));
		memcpy(longname, "srv:", 4);
		longname[4 + 254] = '\0';
		CHECK_INT(lb_dns_spec_parse(longname, &sp), -1);
		longname[4 + 253] = '\0';
		CHECK_INT(lb_dns_spec_parse(longname, &sp), 1);
	}
}

/* A fake resolver: "dns:fe.test:143" and "dns:fe.test:110" and the admin
 * entry resolve to the same two pods; the SRV entry to two ports of one IP. */
static struct sockaddr_storage fake_addrs[4];

static void fake_set(int i, int family, const char *ip, uint16_t port)
{
	memset(&fake_addrs[i], 0, sizeof(fake_addrs[i]));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&fake_addrs[i];

		in->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &in->sin_addr);
		in->sin_port = htons(port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&fake_addrs[i];

		in6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &in6->sin6_addr);
		in6->sin6_port = htons(port);
	}
}

static const struct sockaddr_storage *fake_lookup(void *ctx, const char *spec, size_t *n_r)
{
	uint16_t port;

	(void)ctx;
	*n_r = 0;
	if (strcmp(spec, "srv:_imap._tcp.fe.test") == 0) {
		fake_set(0, AF_INET, "127.0.0.1", 2001);
		fake_set(1, AF_INET, "127.0.0.1", 2000);
		*n_r = 2;
		return fake_addrs;
	}
	if (strncmp(spec, "dns:fe.test:", 12) != 0)
		return NULL;
	port = (uint16_t)atoi(spec + 12);
	/* Answer order differs from entry to entry: grouping must not care. */
	fake_set(port == 143 ? 0 : 2, AF_INET, "10.0.0.7", port);
	fake_set(1, AF_INET6, "fd00::5", port);
	fake_set(port == 143 ? 2 : 0, AF_INET, "10.0.0.3", port);
	fake_set(3, AF_INET, "10.0.0.3", port);	/* a duplicate */
	*n_r = port == 9080 ? 2 : 4;		/* admin: only two of them */
	return fake_addrs;
}

static const struct lb_server_conf *find_server(const struct lb_topology *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->servers[i].name, name) == 0)
			return &t->servers[i];
	return NULL;
}

PN_TEST(test_topology_dns_groups)
{
	static const char *const sets[] = {
		"imap_upstreams=127.0.0.1:143, dns:fe.test:143, srv:_imap._tcp.fe.test",
		"pop3_upstreams=127.0.0.1:110, dns:fe.test:110, -",
		"upstream_admin=-, dns:fe.test:9080, -",
		"upstream_names=static, pod, srv",
		"upstream_weights=1, 3, 1",
	};
	struct lb_dns_view view = { fake_lookup, NULL };
	struct lb_config cfg;
	struct lb_topology t;
	const struct lb_server_conf *s;
	const char *err = NULL;

	CHECK_INT(load(&cfg, sets, 5, &err), 0);
	/* Nothing resolved yet: only the static server. */
	CHECK_INT(lb_topology_build(&cfg, NULL, &t, &err), 0);
	CHECK_INT(t.n, 1);
	lb_topology_free(&t);

	CHECK_INT(lb_topology_build(&cfg, &view, &t, &err), 0);
	CHECK_INT(t.n, 1 + 3 + 2);
	s = find_server(&t, "pod-10.0.0.3");
	CHECK(s != NULL);
	if (s != NULL) {
		CHECK(s->has[LB_PROTO_IMAP] && s->has[LB_PROTO_POP3] && s->has_admin);
		CHECK_INT(port_of(&s->addr[LB_PROTO_IMAP]), 143);
		CHECK_INT(port_of(&s->addr[LB_PROTO_POP3]), 110);
		CHECK_INT(port_of(&s->admin), 9080);
		CHECK_INT(s->weight, 3);
	}
	s = find_server(&t, "pod-10.0.0.7");
	CHECK(s != NULL && s->has[LB_PROTO_IMAP] && s->has[LB_PROTO_POP3] && !s->has_admin);
	s = find_server(&t, "pod-fd00--5");
	CHECK(s != NULL && s->addr[LB_PROTO_IMAP].ss_family == AF_INET6);
	/* Two ports of one IP in an SRV answer: two servers, stable names
	 * (by port order, whatever the answer order). */
	s = find_server(&t, "srv-127.0.0.1");
	CHECK(s != NULL && port_of(&s->addr[LB_PROTO_IMAP]) == 2000);
	s = find_server(&t, "srv-127.0.0.1-2");
	CHECK(s != NULL && port_of(&s->addr[LB_PROTO_IMAP]) == 2001);
	CHECK(find_server(&t, "static") != NULL);
	lb_topology_free(&t);
	lb_config_free(&cfg);
}

PN_TEST(test_topology_dns_errors)
{
	static const char *const mixed[] = { "imap_upstreams=dns:fe.test:143",
					     "pop3_upstreams=127.0.0.1:110" };
	static const char *const mixed_admin[] = { "imap_upstreams=srv:_imap._tcp.fe.test",
						   "upstream_admin=127.0.0.1:9080" };
	static const char *const bad[] = { "imap_upstreams=dns:fe.test" };
	static const char *const bad_admin[] = { "imap_upstreams=dns:fe.test:143",
						 "upstream_admin=dns:fe.test" };
	static const char *const ok[] = { "imap_upstreams=dns:fe.test:143",
					  "pop3_upstreams=-", "upstream_admin=dns:fe.test:9080" };
	static const char *const bad_cidr[] = { "imap_proxy_accept_from=10.1.2.3/8" };
	static const char *const good_cidr[] = { "imap_proxy_accept_from=10.0.0.0/8, ::1" };
	const char *e;

	e = topo_error(mixed, 2);
	CHECK(e != NULL && strstr(e, "mixes DNS entries and addresses") != NULL);
	e = topo_error(mixed_admin, 2);
	CHECK(e != NULL && strstr(e, "mixes") != NULL);
	e = topo_error(bad, 1);
	CHECK(e != NULL && strstr(e, "imap_upstreams: bad DNS entry") != NULL);
	e = topo_error(bad_admin, 2);
	CHECK(e != NULL && strstr(e, "upstream_admin: bad DNS entry") != NULL);
	CHECK(topo_error(ok, 3) == NULL);
	e = topo_error(bad_cidr, 1);
	CHECK(e != NULL && strncmp(e, "config:", 7) == 0);
	CHECK(topo_error(good_cidr, 1) == NULL);
}

PN_TEST(test_protocol_table)
{
	for (int p = 0; p < LB_PROTO_COUNT; p++) {
		const struct lb_proto_info *pi = &lb_protos[p];
		size_t len = strlen(pi->refusal_unavailable);

		CHECK(pi->name != NULL && len > 2);
		CHECK(strcmp(pi->refusal_unavailable + len - 2, "\r\n") == 0);
		CHECK(strncmp(pi->refusal_unavailable, pi->family == LB_FAMILY_IMAP ?
			      "* BYE [UNAVAILABLE] " : pi->family == LB_FAMILY_POP3 ?
			      "-ERR [SYS/TEMP] " : "421 4.3.2 ", 10) == 0);
	}
	CHECK(lb_protos[LB_PROTO_IMAPS].implicit_tls && !lb_protos[LB_PROTO_IMAP].implicit_tls);
	CHECK_STR(lb_protos[LB_PROTO_SUBMISSIONS].name, "submissions");
}

PN_TEST_MAIN("test-lb-config",
	     PN_TEST_CASE(test_defaults_and_env_names),
	     PN_TEST_CASE(test_topology_pairs_lists),
	     PN_TEST_CASE(test_topology_names_and_errors),
	     PN_TEST_CASE(test_dns_spec_parse),
	     PN_TEST_CASE(test_topology_dns_groups),
	     PN_TEST_CASE(test_topology_dns_errors),
	     PN_TEST_CASE(test_protocol_table))
