/* Session registry entries and the node heartbeat in Redis, on each
 * thread's loop; see fe-registry.h.
 */
#include "fe-registry.h"

#include "postern/log.h"
#include "postern/loop.h"
#include "postern/store-redis-ops.h"
#include "postern/store-session.h"

#include "fe-backend.h"
#include "fe-conn.h"
#include "fe-node.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef POSTERN_VERSION
#define POSTERN_VERSION "dev"
#endif

struct fe_registry_entry {
	struct fe_registry *reg;
	struct fe_registry_entry *prev, *next;
	uint64_t account_id;
	bool kicked;			/* removed from Redis by a kick */
	char field[160];
	char session_id[64];
	struct store_session_record rec;
};

struct fe_registry {
	struct fe_thread *thread;
	pn_io_id session_timer;
	pn_io_id node_timer;		/* thread 0 only */
	struct fe_registry_entry *entries;
	void (*removed)(void *ctx);
	void *removed_ctx;
};

static struct store_redis *redis_of(const struct fe_registry *reg)
{
	struct fe_backend *b = reg->thread->backend;

	return b != NULL ? b->redis : NULL;
}

static void ignore_cb(void *ctx, enum store_status status, const char *error)
{
	if (status != STORE_OK)
		pn_debug("event=registry_write_failed error=\"%s\"", error);
}

static void put_entry(struct fe_registry_entry *e)
{
	struct store_redis *r = redis_of(e->reg);

	if (r != NULL)
		(void)store_rsession_put(r, e->account_id, e->field, &e->rec, ignore_cb, NULL);
}

static void session_beat(void *ctx)
{
	struct fe_registry *reg = ctx;
	int64_t now = (int64_t)time(NULL);

	for (struct fe_registry_entry *e = reg->entries; e != NULL; e = e->next) {
		if (e->kicked)
			continue;
		e->rec.seen = now;
		put_entry(e);
	}
	pn_io_timer_set(reg->thread->loop, reg->session_timer,
			STORE_SESSION_HEARTBEAT_SECS * 1000);
}

static const struct pn_io_handlers session_timer_handlers = { .on_timer = session_beat };

/* ---- node ---- */

static double sessions_now(struct fe_node *node)
{
	double n = 0;

	for (int svc = 0; svc < FE_SVC_COUNT; svc++)
		for (int st = 0; st < FE_STATE_COUNT; st++)
			n += pn_gauge_value(node->metrics.session_series[svc][st]);
	return n;
}

static int64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void node_beat(void *ctx)
{
	struct fe_registry *reg = ctx;
	struct fe_node *node = reg->thread->node;
	struct store_redis *r = redis_of(reg);
	struct store_rnode n;

	memset(&n, 0, sizeof(n));
	snprintf(n.name, sizeof(n.name), "%s", node->node_name);
	snprintf(n.addr, sizeof(n.addr), "%s", node->cfg.admin_listen);
	snprintf(n.version, sizeof(n.version), "%s", POSTERN_VERSION);
	snprintf(n.role, sizeof(n.role), "frontend");
	n.sessions = (int64_t)sessions_now(node);
	n.ready = !atomic_load(&node->draining) &&
		  fe_backend_ready(reg->thread->backend, &node->cfg);
	if (r != NULL)
		(void)store_rnode_heartbeat(r, &n, unix_ms(),
					    (unsigned int)(3 * node->cfg.heartbeat_interval_ms),
					    ignore_cb, NULL);
	pn_io_timer_set(reg->thread->loop, reg->node_timer, node->cfg.heartbeat_interval_ms);
}

static const struct pn_io_handlers node_timer_handlers = { .on_timer = node_beat };

static void node_removed(void *ctx, enum store_status status, const char *error)
{
	struct fe_registry *reg = ctx;
	void (*done)(void *) = reg->removed;

	reg->removed = NULL;
	if (done != NULL)
		done(reg->removed_ctx);
}

void fe_registry_node_remove(struct fe_registry *reg, void (*done)(void *ctx), void *ctx)
{
	struct store_redis *r = reg != NULL ? redis_of(reg) : NULL;

	if (reg != NULL && reg->node_timer != PN_IO_NONE) {
		pn_io_close(reg->thread->loop, reg->node_timer);
		reg->node_timer = PN_IO_NONE;
	}
	if (r == NULL || !store_redis_ready(r)) {
		done(ctx);
		return;
	}
	reg->removed = done;
	reg->removed_ctx = ctx;
	if (store_rnode_remove(r, reg->thread->node->node_name, node_removed, reg) < 0) {
		reg->removed = NULL;
		done(ctx);
	}
}

/* ---- set-up ---- */

int fe_registry_new(struct fe_thread *th, struct fe_registry **reg_r, const char **error_r)
{
	struct fe_registry *reg = calloc(1, sizeof(*reg));

	if (reg == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	reg->thread = th;
	reg->node_timer = PN_IO_NONE;
	reg->session_timer = pn_io_add(th->loop, -1, 0, &session_timer_handlers, reg);
	if (reg->session_timer == PN_IO_NONE) {
		free(reg);
		*error_r = "no io slot for the registry timer";
		return -1;
	}
	pn_io_timer_set(th->loop, reg->session_timer, STORE_SESSION_HEARTBEAT_SECS * 1000);
	if (th->index == 0) {
		reg->node_timer = pn_io_add(th->loop, -1, 0, &node_timer_handlers, reg);
		if (reg->node_timer == PN_IO_NONE) {
			pn_io_close(th->loop, reg->session_timer);
			free(reg);
			*error_r = "no io slot for the node heartbeat";
			return -1;
		}
		/* the first beat soon after start (Redis connects meanwhile) */
		pn_io_timer_set(th->loop, reg->node_timer, 200);
	}
	*reg_r = reg;
	return 0;
}

void fe_registry_free(struct fe_registry **regp)
{
	struct fe_registry *reg = *regp;

	if (reg == NULL)
		return;
	while (reg->entries != NULL) {
		struct fe_registry_entry *e = reg->entries;
		reg->entries = e->next;
		free(e);
	}
	/* The timers' ios go with the loop (pn_loop_free). */
	free(reg);
	*regp = NULL;
}

struct fe_registry_entry *fe_registry_add(struct fe_thread *th, uint64_t account_id,
					  const char *proto, const char *user,
					  const char *client, const char *session_id)
{
	struct fe_registry *reg = th->registry;
	struct fe_registry_entry *e;
	char buf[STORE_SESSION_RECORD_MAX + 1];
	const char *error;

	if (reg == NULL)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->reg = reg;
	e->account_id = account_id;
	snprintf(e->field, sizeof(e->field), "%s/%s", th->node->node_name, session_id);
	snprintf(e->session_id, sizeof(e->session_id), "%s", session_id);
	snprintf(e->rec.node, sizeof(e->rec.node), "%s", th->node->node_name);
	snprintf(e->rec.proto, sizeof(e->rec.proto), "%s", proto);
	snprintf(e->rec.client, sizeof(e->rec.client), "%s", client);
	snprintf(e->rec.user, sizeof(e->rec.user), "%s", user);
	e->rec.since = e->rec.seen = (int64_t)time(NULL);
	if (store_session_record_format(&e->rec, buf, sizeof(buf), &error) < 0) {
		pn_warn("event=registry_refused session=%s error=\"%s\"", session_id, error);
		free(e);
		return NULL;
	}
	e->next = reg->entries;
	if (reg->entries != NULL)
		reg->entries->prev = e;
	reg->entries = e;
	put_entry(e);
	return e;
}

void fe_registry_remove(struct fe_registry_entry **entryp)
{
	struct fe_registry_entry *e = *entryp;
	struct store_redis *r;

	if (e == NULL)
		return;
	*entryp = NULL;
	r = redis_of(e->reg);
	if (r != NULL && !e->kicked)
		(void)store_rsession_remove(r, e->account_id, e->field, ignore_cb, NULL);
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		e->reg->entries = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	free(e);
}

/* The connection of this thread whose session id is sid, or NULL. */
static struct fe_conn *find_conn(struct fe_thread *th, const char *sid)
{
	for (struct fe_conn *c = fe_conn_env_next(&th->env, NULL); c != NULL;
	     c = fe_conn_env_next(&th->env, c))
		if (strcmp(fe_conn_info(c)->session_id, sid) == 0)
			return c;
	return NULL;
}

unsigned int fe_registry_kick(struct fe_thread *th, const struct store_kick *kick)
{
	struct fe_registry *reg = th->registry;
	struct store_redis *r;
	char (*sids)[64];
	unsigned int n = 0, cap = 0, ended = 0;

	if (reg == NULL)
		return 0;
	r = redis_of(reg);
	for (struct fe_registry_entry *e = reg->entries; e != NULL; e = e->next)
		cap++;
	if (cap == 0)
		return 0;
	sids = calloc(cap, sizeof(*sids));
	if (sids == NULL)
		return 0;
	/* First the matches (ending a session may remove its entry), then
	 * the goodbyes. */
	for (struct fe_registry_entry *e = reg->entries; e != NULL && n < cap; e = e->next) {
		if (e->kicked || !store_kick_matches(kick, e->account_id, e->rec.proto, e->field))
			continue;
		e->kicked = true;
		if (r != NULL)
			(void)store_rsession_remove(r, e->account_id, e->field, ignore_cb, NULL);
		memcpy(sids[n++], e->session_id, sizeof(sids[0]));
	}
	for (unsigned int i = 0; i < n; i++) {
		struct fe_conn *c = find_conn(th, sids[i]);

		if (c == NULL || fe_conn_shutdown_asked(c))
			continue;
		fe_conn_shutdown(c, FE_SHUTDOWN_KICK);	/* may free c */
		ended++;
	}
	free(sids);
	return ended;
}
