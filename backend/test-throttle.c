/* Tests of the cluster-wide protection module (postern/mail-throttle.h)
 * against the harness' Redis: failure thresholds, growing and capped
 * delays, refusal and its cooling period, a success resetting only the
 * account's counter, one account guessed from many addresses, failures
 * adding up per tenant, two
 * instances (two frontend nodes: separate loops and Redis connections)
 * sharing failure counts and session slots, leases of a vanished node
 * expiring, tenant session and message limits, and Redis stopped (per-node
 * counting, degraded state and metrics) and started again, and limits
 * changed on a live instance. One part needs no Redis: per-node counting by
 * configuration and address grouping, and limits changed there too.
 * Periods are short (hundreds of ms) so the program runs in a few seconds.
 */
#include "postern/mail-throttle.h"

#include <postern/loop.h>
#include <postern/metrics.h>
#include <postern/store-redis.h>
#include <postern/testing.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *host;
static int port;
static struct pn_metrics *reg;
static struct mail_throttle_metrics *tm;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rnd64(void)
{
	uint64_t x = 0;

	if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x))
		x = now_ms() * 2654435761u ^ (uint64_t)getpid();
	return x;
}

/* A fresh id per use, so runs and cases never share keys. */
static uint64_t fresh_id(void)
{
	return 1000000 + rnd64() % 1000000000000ull;
}

/* A fresh IPv4 address in 10/8 into buf. */
static const char *fresh_ip(char *buf, size_t size)
{
	uint64_t x = rnd64();

	snprintf(buf, size, "10.%u.%u.%u", (unsigned)(x & 255), (unsigned)((x >> 8) & 255),
		 (unsigned)(1 + (x >> 16) % 254));
	return buf;
}

/* Each test node: a loop, its Redis client and a module instance. */
struct node {
	struct pn_loop *loop;
	struct store_redis *redis;
	struct mail_throttle *t;
};

static struct mail_throttle_settings base_settings(const char *name)
{
	return (struct mail_throttle_settings){
		.node = name,
		.auth_address = { .delay_after = 4, .refuse_after = 8 },
		.auth_account = { .delay_after = 2, .refuse_after = 5 },
		.auth_tenant = { .delay_after = MAIL_THROTTLE_OFF, .refuse_after = MAIL_THROTTLE_OFF },
		.auth_delay_base_ms = 100,
		.auth_delay_max_ms = 400,
		.auth_window_ms = 5000,
		.auth_cooling_ms = 600,
		.max_userip_sessions = 2,
		.max_account_sessions = 3,
		.max_tenant_sessions = 4,
		.session_lease_ms = 900,
		.tenant_messages_per_window = 5,
		.tenant_message_window_ms = 60000,
		.metrics = tm,
	};
}

static bool node_up(struct node *n, const char *name, const struct mail_throttle_settings *over)
{
	struct store_redis_settings rs = {
		.host = host, .port = port, .backoff_min_ms = 50, .backoff_max_ms = 200,
		.connect_timeout_ms = 500, .command_timeout_ms = 500,
	};
	struct mail_throttle_settings set = over != NULL ? *over : base_settings(name);
	const char *error = "";
	uint64_t end;

	memset(n, 0, sizeof(*n));
	n->loop = pn_loop_new(NULL, &error);
	if (n->loop != NULL && host != NULL)
		n->redis = store_redis_new(n->loop, &rs, &error);
	if (n->loop != NULL && (host == NULL || n->redis != NULL))
		n->t = mail_throttle_new(n->loop, n->redis, &set, &error);
	if (n->t == NULL) {
		fprintf(stderr, "node %s: %s\n", name, error);
		CHECK(n->t != NULL);
		return false;
	}
	end = now_ms() + 3000;
	while (n->redis != NULL && !store_redis_ready(n->redis) && now_ms() < end)
		pn_loop_run_once(n->loop, 20);
	return true;
}

static void node_down(struct node *n)
{
	mail_throttle_free(&n->t);
	CHECK(n->t == NULL);
	if (n->redis != NULL)
		store_redis_free(&n->redis);
	if (n->loop != NULL)
		pn_loop_free(&n->loop);
}

static void run_for(struct node *n, unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		pn_loop_run_once(n->loop, 10);
}

/* Runs two nodes' loops side by side for ms. */
static void run_both(struct node *a, struct node *b, unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end) {
		pn_loop_run_once(a->loop, 5);
		pn_loop_run_once(b->loop, 5);
	}
}

struct res {
	bool done;
	struct mail_throttle_verdict v;
	struct mail_throttle_session *s;
};

static void verdict_cb(void *ctx, const struct mail_throttle_verdict *v)
{
	struct res *r = ctx;

	r->done = true;
	r->v = *v;
}

static void session_cb(void *ctx, const struct mail_throttle_verdict *v,
		       struct mail_throttle_session *s)
{
	struct res *r = ctx;

	r->done = true;
	r->v = *v;
	r->s = s;
}

static void wait_res(struct node *n, struct res *r)
{
	uint64_t end = now_ms() + 3000;

	/* never answered inside the call */
	CHECK(!r->done);
	while (!r->done && now_ms() < end)
		pn_loop_run_once(n->loop, 20);
	CHECK(r->done);
}

static struct mail_throttle_verdict check(struct node *n, const char *addr, uint64_t acct,
					  uint64_t tenant)
{
	struct mail_throttle_who who = { addr, acct, tenant };
	struct res r = { 0 };

	CHECK_INT(mail_throttle_auth_check(n->t, &who, verdict_cb, &r), 0);
	wait_res(n, &r);
	return r.v;
}

static struct mail_throttle_verdict result(struct node *n, const char *addr, uint64_t acct,
					   uint64_t tenant, bool success)
{
	struct mail_throttle_who who = { addr, acct, tenant };
	struct res r = { 0 };

	CHECK_INT(mail_throttle_auth_result(n->t, &who, success, verdict_cb, &r), 0);
	wait_res(n, &r);
	return r.v;
}

static struct res open_session(struct node *n, const char *addr, uint64_t acct, uint64_t tenant)
{
	struct mail_throttle_who who = { addr, acct, tenant };
	struct res r = { 0 };

	CHECK_INT(mail_throttle_session_open(n->t, &who, session_cb, &r), 0);
	wait_res(n, &r);
	CHECK(r.v.refuse == (r.s == NULL));
	return r;
}

static struct mail_throttle_verdict message(struct node *n, uint64_t tenant, unsigned int count)
{
	struct res r = { 0 };

	CHECK_INT(mail_throttle_message(n->t, tenant, count, verdict_cb, &r), 0);
	wait_res(n, &r);
	return r.v;
}

/* An integer reply of a raw command (ZCARD ...), -1 on failure. */
struct raw {
	bool done;
	long long v;
};

static void raw_cb(void *ctx, enum store_status st, const redisReply *reply, const char *error)
{
	struct raw *x = ctx;

	(void)error;
	x->done = true;
	x->v = st == STORE_OK && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
}

static long long zcard(struct node *n, char kind, uint64_t id)
{
	char key[64];
	const char *argv[] = { "ZCARD", key };
	struct raw x = { 0 };
	uint64_t end = now_ms() + 3000;

	snprintf(key, sizeof(key), "{%c:%" PRIu64 "}:conns", kind, id);
	if (store_redis_command(n->redis, raw_cb, &x, 2, argv, NULL) < 0)
		return -1;
	while (!x.done && now_ms() < end)
		pn_loop_run_once(n->loop, 20);
	return x.v;
}

static double metric_value(const char *series)
{
	struct pn_buf out;
	double v = -1;

	pn_buf_init(&out, 1 << 20);
	if (pn_metrics_render(reg, &out) == 0) {
		char *text = strndup((const char *)out.data + out.start, pn_buf_len(&out));
		char *p = text;
		size_t n = strlen(series);

		while (p != NULL && (p = strstr(p, series)) != NULL) {
			if ((p == text || p[-1] == '\n') && p[n] == ' ') {
				v = strtod(p + n + 1, NULL);
				break;
			}
			p += n;
		}
		free(text);
	}
	pn_buf_free(&out);
	return v;
}

/* Below the first threshold at once; then delays doubling up to the cap;
 * the failure reaching the second threshold refuses for the cooling
 * period; after it, answers are delayed again, not refused. */
PN_TEST(test_thresholds)
{
	struct node a;
	char ip[32];
	uint64_t acct = fresh_id(), tenant = fresh_id();
	static const unsigned int want[] = { 0, 0, 100, 200, 400 };
	struct mail_throttle_verdict v;
	double refused0 = metric_value("postern_throttle_refusals_total{kind=\"auth_account\"}");

	if (!node_up(&a, "fe-a", NULL))
		return;
	fresh_ip(ip, sizeof(ip));
	for (unsigned int i = 0; i < 5; i++) {
		v = check(&a, ip, acct, tenant);
		CHECK(!v.refuse);
		CHECK(!v.degraded);
		CHECK_INT(v.delay_ms, want[i]);
		if (want[i] != 0) {
			CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ACCOUNT);
			CHECK_INT(v.count, i);
		}
		v = result(&a, ip, acct, tenant, false);
		CHECK_INT(v.refuse, i == 4);
	}
	v = check(&a, ip, acct, tenant);
	CHECK(v.refuse);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ACCOUNT);
	CHECK_STR(v.reason, "Too many failed logins for this account");
	CHECK(v.retry_after_ms > 0 && v.retry_after_ms <= 600);
	CHECK_INT(v.delay_ms, 0);
	CHECK_INT(metric_value("postern_throttle_refusals_total{kind=\"auth_account\"}"),
		  refused0 + 1);
	/* the same account from another address: still refused */
	{
		char ip2[32];

		v = check(&a, fresh_ip(ip2, sizeof(ip2)), acct, tenant);
		CHECK(v.refuse);
	}
	run_for(&a, v.retry_after_ms + 50);
	v = check(&a, ip, acct, tenant);
	CHECK(!v.refuse);
	CHECK_INT(v.delay_ms, 400);	/* capped */
	node_down(&a);
}

/* A success resets the account's counter, not the address's. */
PN_TEST(test_success_resets_account_only)
{
	struct node a;
	char ip[32];
	uint64_t acct = fresh_id(), other = fresh_id();
	struct mail_throttle_verdict v;

	if (!node_up(&a, "fe-a", NULL))
		return;
	fresh_ip(ip, sizeof(ip));
	for (int i = 0; i < 4; i++)
		result(&a, ip, acct, 0, false);
	v = check(&a, ip, acct, 0);
	CHECK_INT(v.delay_ms, 400);	/* account: 4 failures, 2 over */
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ACCOUNT);
	v = result(&a, ip, acct, 0, true);
	CHECK(!v.refuse);
	v = check(&a, ip, acct, 0);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ADDRESS);	/* 4 failures: first delay */
	CHECK_INT(v.count, 4);
	CHECK_INT(v.delay_ms, 100);
	/* another account from that address pays the address's delay too */
	v = check(&a, ip, other, 0);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ADDRESS);
	CHECK_INT(v.delay_ms, 100);
	node_down(&a);
}

/* One failure each from many addresses: no address is throttled, the
 * account is. */
PN_TEST(test_many_addresses)
{
	struct node a;
	char ip[32];
	uint64_t acct = fresh_id();
	struct mail_throttle_verdict v;

	if (!node_up(&a, "fe-a", NULL))
		return;
	for (int i = 0; i < 5; i++) {
		fresh_ip(ip, sizeof(ip));
		v = check(&a, ip, acct, 0);
		CHECK(!v.refuse);
		result(&a, ip, acct, 0, false);
	}
	v = check(&a, fresh_ip(ip, sizeof(ip)), acct, 0);
	CHECK(v.refuse);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ACCOUNT);
	CHECK_INT(v.count, 5);
	node_down(&a);
}

/* Failures of different accounts from different addresses add up in
 * their tenant's counter when the tenant scope is on. */
PN_TEST(test_tenant_failures)
{
	struct mail_throttle_settings set = base_settings("fe-a");
	struct node a;
	char ip[32];
	uint64_t tenant = fresh_id();
	struct mail_throttle_verdict v;

	set.auth_tenant = (struct mail_throttle_auth_limit){ .delay_after = 3, .refuse_after = 6 };
	if (!node_up(&a, "fe-a", &set))
		return;
	for (int i = 0; i < 3; i++)
		result(&a, fresh_ip(ip, sizeof(ip)), fresh_id(), tenant, false);
	v = check(&a, fresh_ip(ip, sizeof(ip)), fresh_id(), tenant);
	CHECK(!v.refuse);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_TENANT);
	CHECK_INT(v.delay_ms, 100);
	/* another tenant is not affected */
	v = check(&a, ip, fresh_id(), fresh_id());
	CHECK_INT(v.delay_ms, 0);
	for (int i = 0; i < 3; i++)
		v = result(&a, fresh_ip(ip, sizeof(ip)), fresh_id(), tenant, false);
	CHECK(v.refuse);
	v = check(&a, fresh_ip(ip, sizeof(ip)), fresh_id(), tenant);
	CHECK(v.refuse);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_TENANT);
	CHECK_STR(v.reason, "Too many failed logins for this tenant");
	node_down(&a);
}

/* Failures on node A count on node B and the other way round. */
PN_TEST(test_two_nodes_share_failures)
{
	struct node a, b;
	char ip[32];
	uint64_t acct = fresh_id();
	struct mail_throttle_verdict v;

	if (!node_up(&a, "fe-a", NULL) || !node_up(&b, "fe-b", NULL))
		return;
	fresh_ip(ip, sizeof(ip));
	for (int i = 0; i < 3; i++)
		result(&a, ip, acct, 0, false);
	v = check(&b, ip, acct, 0);
	CHECK_INT(v.count, 3);
	CHECK_INT(v.delay_ms, 200);
	CHECK(!v.degraded);
	result(&b, ip, acct, 0, false);
	v = result(&b, ip, acct, 0, false);
	CHECK(v.refuse);
	v = check(&a, ip, acct, 0);
	CHECK(v.refuse);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ACCOUNT);
	node_down(&a);
	node_down(&b);
}

/* Session slots across two nodes: per user and address, per account;
 * a closed slot comes back; the slots of a node that vanished expire
 * with their leases. */
PN_TEST(test_sessions_across_nodes)
{
	struct node a, b, c;
	char ip1[32], ip2[32], ip3[32];
	uint64_t acct = fresh_id();
	struct res s1, s2, s3, s4, s5;

	if (!node_up(&a, "fe-a", NULL) || !node_up(&b, "fe-b", NULL))
		return;
	fresh_ip(ip1, sizeof(ip1));
	fresh_ip(ip2, sizeof(ip2));
	fresh_ip(ip3, sizeof(ip3));
	s1 = open_session(&a, ip1, acct, 0);
	s2 = open_session(&b, ip1, acct, 0);
	CHECK(!s1.v.refuse && !s2.v.refuse);
	s3 = open_session(&a, ip1, acct, 0);
	CHECK(s3.v.refuse);
	CHECK_INT(s3.v.kind, MAIL_THROTTLE_SESSIONS_USERIP);
	CHECK_STR(s3.v.reason, "Too many sessions for this user from this address");
	CHECK_INT(s3.v.count, 2);
	s3 = open_session(&b, ip2, acct, 0);
	CHECK(!s3.v.refuse);
	s4 = open_session(&a, ip3, acct, 0);
	CHECK(s4.v.refuse);
	CHECK_INT(s4.v.kind, MAIL_THROTTLE_SESSIONS_ACCOUNT);
	CHECK_INT(s4.v.count, 3);
	CHECK_INT(zcard(&a, 'a', acct), 3);
	mail_throttle_session_close(a.t, &s1.s);
	CHECK(s1.s == NULL);
	run_for(&a, 50);
	s4 = open_session(&a, ip3, acct, 0);
	CHECK(!s4.v.refuse);

	/* node C takes a slot and vanishes without giving it back */
	mail_throttle_session_close(b.t, &s3.s);
	run_both(&a, &b, 50);
	if (node_up(&c, "fe-c", NULL)) {
		struct mail_throttle_stats st;

		s5 = open_session(&c, ip2, acct, 0);
		CHECK(!s5.v.refuse);
		mail_throttle_get_stats(c.t, &st);
		CHECK_INT(st.sessions, 1);
		node_down(&c);		/* forgets its session: a crash */
	}
	s5 = open_session(&a, ip2, acct, 0);
	CHECK(s5.v.refuse);
	CHECK_INT(s5.v.kind, MAIL_THROTTLE_SESSIONS_ACCOUNT);
	/* A's and B's slots are renewed meanwhile (lease 900 ms), C's is not */
	run_both(&a, &b, 1100);
	s5 = open_session(&a, ip2, acct, 0);
	CHECK(!s5.v.refuse);
	CHECK_INT(zcard(&a, 'a', acct), 3);
	mail_throttle_session_close(b.t, &s2.s);
	mail_throttle_session_close(a.t, &s4.s);
	mail_throttle_session_close(a.t, &s5.s);
	run_for(&a, 50);
	run_for(&b, 50);
	CHECK_INT(zcard(&a, 'a', acct), 0);
	node_down(&a);
	node_down(&b);
}

/* One tenant's sessions and sending rate are capped across nodes; a
 * refused tenant slot gives the account's slot back. */
PN_TEST(test_tenant_limits)
{
	struct node a, b;
	char ip[32];
	uint64_t tenant = fresh_id(), accts[5];
	struct res s[5];
	struct mail_throttle_verdict v;

	if (!node_up(&a, "fe-a", NULL) || !node_up(&b, "fe-b", NULL))
		return;
	fresh_ip(ip, sizeof(ip));
	for (int i = 0; i < 5; i++) {
		accts[i] = fresh_id();
		s[i] = open_session(i % 2 == 0 ? &a : &b, ip, accts[i], tenant);
		CHECK_INT(s[i].v.refuse, i == 4);
	}
	CHECK_INT(s[4].v.kind, MAIL_THROTTLE_SESSIONS_TENANT);
	CHECK_INT(s[4].v.count, 4);
	run_for(&a, 50);
	CHECK_INT(zcard(&a, 't', tenant), 4);
	CHECK_INT(zcard(&a, 'a', accts[4]), 0);
	for (int i = 0; i < 4; i++)
		mail_throttle_session_close(i % 2 == 0 ? a.t : b.t, &s[i].s);
	run_for(&a, 50);
	run_for(&b, 50);
	CHECK_INT(zcard(&a, 't', tenant), 0);

	/* 5 messages per window, whichever node sends them */
	v = message(&a, tenant, 3);
	CHECK(!v.refuse);
	v = message(&b, tenant, 2);
	CHECK(!v.refuse);
	CHECK_INT(v.count, 3);
	v = message(&a, tenant, 1);
	CHECK(v.refuse);
	CHECK_INT(v.kind, MAIL_THROTTLE_TENANT_MESSAGES);
	CHECK_STR(v.reason, "Sending rate of this tenant exceeded");
	CHECK(v.retry_after_ms > 0 && v.retry_after_ms <= 60000);
	v = message(&b, tenant, 1);
	CHECK(v.refuse);
	/* another tenant is not affected */
	v = message(&b, fresh_id(), 5);
	CHECK(!v.refuse);
	node_down(&a);
	node_down(&b);
}

/* Runs tests/harness/services CMD $POSTERN_SERVICES_DIR quietly. */
static int services(const char *cmd)
{
	const char *src = getenv("POSTERN_SOURCE_DIR"), *dir = getenv("POSTERN_SERVICES_DIR");
	char tool[4096];
	int status;
	pid_t pid;

	if (src == NULL || dir == NULL)
		return -1;
	snprintf(tool, sizeof(tool), "%s/tests/harness/services", src);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execl(tool, tool, cmd, dir, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Redis stopped: decisions from per-node counts with the same thresholds,
 * reported as degraded (function, status line, metric); Redis back: the
 * cluster counts again and the sessions opened meanwhile are in Redis. */
PN_TEST(test_redis_down_and_back)
{
	struct node a, b;
	char ip[32], status[256];
	uint64_t acct = fresh_id(), acct2 = fresh_id();
	struct mail_throttle_verdict v;
	struct res s1, s2, s3;
	uint64_t end;
	bool back = false;

	if (getenv("POSTERN_SERVICES_DIR") == NULL || getenv("POSTERN_SOURCE_DIR") == NULL ||
	    services("status") != 0) {
		fprintf(stderr, "test_redis_down_and_back: no service harness, not run\n");
		return;
	}
	if (!node_up(&a, "fe-a", NULL) || !node_up(&b, "fe-b", NULL))
		return;
	fresh_ip(ip, sizeof(ip));
	/* one failure while Redis is up counts on the node as well */
	result(&a, ip, acct, 0, false);
	CHECK(!mail_throttle_degraded(a.t));
	CHECK_STR(mail_throttle_status(a.t, status, sizeof(status)), "cluster-wide");
	CHECK_INT(metric_value("postern_throttle_redis_fallback"), 0);

	CHECK_INT(services("stop-redis"), 0);
	v = check(&a, ip, acct, 0);
	CHECK(v.degraded);
	CHECK(!v.refuse);
	CHECK(mail_throttle_degraded(a.t));
	mail_throttle_status(a.t, status, sizeof(status));
	CHECK(strstr(status, "counted per node") != NULL);
	CHECK_INT(metric_value("postern_throttle_redis_fallback"), 1);
	for (int i = 0; i < 3; i++) {
		v = result(&a, ip, acct, 0, false);
		CHECK(v.degraded);
	}
	v = check(&a, ip, acct, 0);
	CHECK(v.degraded);
	CHECK_INT(v.count, 4);		/* the one from before the outage too */
	CHECK_INT(v.delay_ms, 400);
	v = result(&a, ip, acct, 0, false);
	CHECK(v.refuse);
	v = check(&a, ip, acct, 0);
	CHECK(v.refuse);
	CHECK(v.degraded);
	/* node B saw none of it */
	v = check(&b, ip, acct, 0);
	CHECK(v.degraded);
	CHECK(!v.refuse);
	CHECK_INT(v.delay_ms, 0);
	CHECK_INT(metric_value("postern_throttle_redis_fallback"), 2);
	/* session limits per node */
	s1 = open_session(&a, ip, acct2, 0);
	s2 = open_session(&a, ip, acct2, 0);
	s3 = open_session(&a, ip, acct2, 0);
	CHECK(!s1.v.refuse && !s2.v.refuse);
	CHECK(s1.v.degraded);
	CHECK(s3.v.refuse);
	CHECK_INT(s3.v.kind, MAIL_THROTTLE_SESSIONS_USERIP);

	CHECK_INT(services("start-redis"), 0);
	end = now_ms() + 5000;
	while (!back && now_ms() < end) {
		v = check(&a, ip, acct2, 0);
		back = !v.degraded;
		if (!back)
			run_for(&a, 100);
	}
	CHECK(back);
	CHECK(!mail_throttle_degraded(a.t));
	CHECK_STR(mail_throttle_status(a.t, status, sizeof(status)), "cluster-wide");
	/* B's probe ends its fallback too */
	end = now_ms() + 3000;
	while (mail_throttle_degraded(b.t) && now_ms() < end)
		pn_loop_run_once(b.loop, 50);
	CHECK(!mail_throttle_degraded(b.t));
	CHECK_INT(metric_value("postern_throttle_redis_fallback"), 0);
	/* the sessions opened during the outage are renewed into Redis */
	run_for(&a, 400);
	CHECK_INT(zcard(&a, 'a', acct2), 2);
	mail_throttle_session_close(a.t, &s1.s);
	mail_throttle_session_close(a.t, &s2.s);
	run_for(&a, 50);
	CHECK_INT(zcard(&a, 'a', acct2), 0);
	node_down(&a);
	node_down(&b);
}

/* Without Redis: per-node counting by configuration, not degraded; IPv6
 * addresses of one /64 count together, IPv4-mapped IPv6 as IPv4; bad
 * arguments are refused without a callback. */
PN_TEST(test_per_node_only)
{
	struct mail_throttle_settings set = base_settings("fe-solo");
	struct node n;
	struct mail_throttle_verdict v;
	struct mail_throttle_stats st;
	const char *saved = host;
	char status[128];
	struct res r = { 0 };

	set.metrics = NULL;
	host = NULL;
	if (!node_up(&n, "fe-solo", &set)) {
		host = saved;
		return;
	}
	host = saved;
	CHECK(!mail_throttle_degraded(n.t));
	CHECK(strstr(mail_throttle_status(n.t, status, sizeof(status)), "no redis") != NULL);
	for (int i = 0; i < 4; i++) {
		char ip[64];

		snprintf(ip, sizeof(ip), "2001:db8:1:2::%x", i + 1);
		result(&n, ip, 0, 0, false);
	}
	v = check(&n, "2001:db8:1:2:ffff::9", 0, 0);
	CHECK(!v.degraded);
	CHECK_INT(v.kind, MAIL_THROTTLE_AUTH_ADDRESS);
	CHECK_INT(v.count, 4);
	CHECK_INT(v.delay_ms, 100);
	v = check(&n, "2001:db8:1:3::1", 0, 0);
	CHECK_INT(v.delay_ms, 0);
	for (int i = 0; i < 4; i++)
		result(&n, "192.0.2.7", 0, 0, false);
	v = check(&n, "::ffff:192.0.2.7", 0, 0);
	CHECK_INT(v.count, 4);
	/* a check with nothing to ask anybody still answers later */
	v = check(&n, "192.0.2.99", 0, 0);
	CHECK(!v.refuse);
	CHECK_INT(v.delay_ms, 0);

	errno = 0;
	CHECK_INT(mail_throttle_auth_check(n.t, &(struct mail_throttle_who){ "not-an-ip", 1, 1 },
					   verdict_cb, &r), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(mail_throttle_session_open(n.t, &(struct mail_throttle_who){ "192.0.2.1", 0, 1 },
					     session_cb, &r), -1);
	CHECK_INT(mail_throttle_message(n.t, 0, 1, verdict_cb, &r), -1);
	run_for(&n, 30);
	CHECK(!r.done);
	mail_throttle_get_stats(n.t, &st);
	CHECK(st.checks >= 4);
	CHECK(st.local_entries >= 2);
	node_down(&n);
}

/* mail_throttle_set_settings() on a live instance: a lowered session
 * maximum refuses the next session while the open ones stay; a raised
 * failure threshold no longer refuses (a refusal already started runs out
 * its cooling period); invalid settings are refused and the old ones
 * kept. With Redis, and again per node only (host NULL). */
static void set_settings_case(const char *name)
{
	struct mail_throttle_settings set = base_settings(name);
	struct node a;
	char ip[32];
	uint64_t acct = fresh_id(), other = fresh_id();
	struct res s1, s2, s3;
	struct mail_throttle_stats st;
	struct mail_throttle_verdict v;
	const char *error = NULL;

	if (!node_up(&a, name, &set))
		return;
	fresh_ip(ip, sizeof(ip));
	s1 = open_session(&a, ip, acct, 0);
	s2 = open_session(&a, ip, acct, 0);
	CHECK(!s1.v.refuse && !s2.v.refuse);

	set.max_userip_sessions = 1;
	CHECK_INT(mail_throttle_set_settings(a.t, &set, &error), 0);
	s3 = open_session(&a, ip, acct, 0);
	CHECK(s3.v.refuse);
	CHECK_INT(s3.v.kind, MAIL_THROTTLE_SESSIONS_USERIP);
	CHECK_INT(s3.v.count, 2);
	mail_throttle_get_stats(a.t, &st);
	CHECK_INT(st.sessions, 2);	/* the open ones stay */
	if (a.redis != NULL)
		CHECK_INT(zcard(&a, 'a', acct), 2);

	/* invalid: refused, the lowered maximum still holds */
	set.max_userip_sessions = 5;
	set.session_lease_ms = 10;
	error = NULL;
	CHECK_INT(mail_throttle_set_settings(a.t, &set, &error), -1);
	CHECK(error != NULL && strstr(error, "lease") != NULL);
	CHECK_INT(mail_throttle_settings_check(&set, &error), -1);
	s3 = open_session(&a, ip, acct, 0);
	CHECK(s3.v.refuse);
	set.session_lease_ms = 900;
	CHECK_INT(mail_throttle_settings_check(&set, &error), 0);
	CHECK_INT(mail_throttle_set_settings(a.t, &set, &error), 0);
	s3 = open_session(&a, ip, acct, 0);
	CHECK(!s3.v.refuse);
	mail_throttle_session_close(a.t, &s1.s);
	mail_throttle_session_close(a.t, &s2.s);
	mail_throttle_session_close(a.t, &s3.s);

	/* account refuse_after 5: the fifth failure refuses */
	for (unsigned int i = 0; i < 5; i++) {
		v = result(&a, ip, other, 0, false);
		CHECK_INT(v.refuse, i == 4);
	}
	v = check(&a, ip, other, 0);
	CHECK(v.refuse);
	set.auth_account.refuse_after = 20;
	set.auth_address.refuse_after = 20;
	CHECK_INT(mail_throttle_set_settings(a.t, &set, &error), 0);
	run_for(&a, v.retry_after_ms + 50);
	v = check(&a, ip, other, 0);
	CHECK(!v.refuse);
	/* the old threshold would refuse at this failure again */
	v = result(&a, ip, other, 0, false);
	CHECK(!v.refuse);
	v = check(&a, ip, other, 0);
	CHECK(!v.refuse);
	CHECK_INT(v.count, 6);
	CHECK_INT(v.delay_ms, 400);
	node_down(&a);
}

PN_TEST(test_set_settings)
{
	set_settings_case("fe-reload");
}

PN_TEST(test_set_settings_per_node)
{
	const char *saved = host;

	host = NULL;
	set_settings_case("fe-reload-solo");
	host = saved;
}

/* Settings that cannot work are refused. */
PN_TEST(test_bad_settings)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct mail_throttle_settings set = base_settings("bad name");
	const char *error = NULL;

	CHECK(mail_throttle_new(loop, NULL, &set, &error) == NULL);
	CHECK(error != NULL);
	set.node = "ok";
	set.session_lease_ms = 10;
	CHECK(mail_throttle_new(loop, NULL, &set, &error) == NULL);
	set.session_lease_ms = 0;
	set.auth_cooling_ms = MAIL_THROTTLE_OFF;
	CHECK(mail_throttle_new(loop, NULL, &set, &error) == NULL);
	CHECK_STR(mail_throttle_kind_name(MAIL_THROTTLE_SESSIONS_USERIP), "sessions_userip");
	pn_loop_free(&loop);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case redis_cases[] = {
		PN_TEST_CASE(test_thresholds),
		PN_TEST_CASE(test_success_resets_account_only),
		PN_TEST_CASE(test_many_addresses),
		PN_TEST_CASE(test_tenant_failures),
		PN_TEST_CASE(test_two_nodes_share_failures),
		PN_TEST_CASE(test_sessions_across_nodes),
		PN_TEST_CASE(test_tenant_limits),
		PN_TEST_CASE(test_redis_down_and_back),
		PN_TEST_CASE(test_set_settings),
	};
	static const struct pn_test_case local_cases[] = {
		PN_TEST_CASE(test_per_node_only),
		PN_TEST_CASE(test_bad_settings),
		PN_TEST_CASE(test_set_settings_per_node),
	};
	const char *error;
	int rc;

	reg = pn_metrics_new();
	tm = reg != NULL ? mail_throttle_metrics_new(reg, &error) : NULL;
	if (tm == NULL) {
		fprintf(stderr, "metrics: %s\n", reg == NULL ? "no memory" : error);
		return 1;
	}
	rc = pn_test_run("test-throttle-local", local_cases,
			 sizeof(local_cases) / sizeof(local_cases[0]));
	host = getenv("POSTERN_REDIS_HOST");
	port = getenv("POSTERN_REDIS_PORT") != NULL ? atoi(getenv("POSTERN_REDIS_PORT")) : 0;
	if (host == NULL || port <= 0) {
		mail_throttle_metrics_free(&tm);
		pn_metrics_free(&reg);
		return rc != 0 ? rc : pn_test_skip("test-throttle", "no POSTERN_REDIS_HOST/PORT");
	}
	if (pn_test_run("test-throttle", redis_cases, sizeof(redis_cases) / sizeof(redis_cases[0])))
		rc = 1;
	mail_throttle_metrics_free(&tm);
	pn_metrics_free(&reg);
	return rc;
}
