/* The thread's throttle instance and kick subscription, and the throttle
 * settings taken from the configuration; see fe-limits.h.
 */
#include "fe-limits.h"

#include "postern/log.h"
#include "postern/store-kick.h"
#include "postern/store-redis-ops.h"

#include "fe-backend.h"
#include "fe-node.h"
#include "fe-registry.h"

#include <stdatomic.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fe_limits {
	struct fe_thread *th;
	struct mail_throttle *throttle;
	struct store_redis_sub *kick_sub;
	pn_io_id publish_timer;
};

/* How often a thread publishes whether its throttle is degraded. */
#define PUBLISH_MS 500

/* 0 in the configuration switches a count off. */
static unsigned int count_or_off(int64_t v)
{
	return v <= 0 ? MAIL_THROTTLE_OFF : (unsigned int)v;
}

void fe_limits_throttle_settings(const struct fe_config *cfg, const char *node,
				 struct mail_throttle_metrics *metrics,
				 struct mail_throttle_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->node = node;
	set->auth_address.delay_after = count_or_off(cfg->auth_address_delay_after);
	set->auth_address.refuse_after = count_or_off(cfg->auth_address_refuse_after);
	set->auth_account.delay_after = count_or_off(cfg->auth_account_delay_after);
	set->auth_account.refuse_after = count_or_off(cfg->auth_account_refuse_after);
	set->auth_tenant.delay_after = count_or_off(cfg->auth_tenant_delay_after);
	set->auth_tenant.refuse_after = count_or_off(cfg->auth_tenant_refuse_after);
	set->auth_delay_base_ms = (unsigned int)cfg->auth_delay_base_ms;
	set->auth_delay_max_ms = (unsigned int)cfg->auth_delay_max_ms;
	set->auth_window_ms = (unsigned int)cfg->auth_window_ms;
	set->auth_cooling_ms = (unsigned int)cfg->auth_cooling_ms;
	set->max_userip_sessions = count_or_off(cfg->max_userip_sessions);
	set->max_account_sessions = count_or_off(cfg->max_account_sessions);
	set->max_tenant_sessions = count_or_off(cfg->max_tenant_sessions);
	set->session_lease_ms = (unsigned int)cfg->session_lease_ms;
	set->tenant_messages_per_window = count_or_off(cfg->tenant_messages_per_window);
	set->tenant_message_window_ms = (unsigned int)cfg->tenant_message_window_ms;
	set->metrics = metrics;
}

static void kick_cb(void *ctx, enum store_redis_sub_event ev, const char *channel,
		    const char *msg, size_t len)
{
	struct fe_limits *lim = ctx;
	struct store_kick kick;
	const char *error;
	unsigned int n;

	(void)channel;
	if (ev == STORE_REDIS_SUB_READY) {
		pn_debug("event=kick_subscribed thread=%u", lim->th->index);
		return;
	}
	if (ev != STORE_REDIS_SUB_MESSAGE)
		return;
	if (store_kick_parse(msg, len, &kick, &error) < 0) {
		pn_warn("event=kick_refused thread=%u error=\"%s\"", lim->th->index, error);
		return;
	}
	n = fe_registry_kick(lim->th, &kick);
	if (n > 0)
		pn_info("event=kick thread=%u account=%llu proto=%s session=%s ended=%u",
			lim->th->index, (unsigned long long)kick.account_id,
			kick.proto == STORE_KICK_ANY ? "any" : store_kick_proto_name(kick.proto),
			kick.session[0] != '\0' ? kick.session : "any", n);
}

static void publish_tick(void *ctx)
{
	struct fe_limits *lim = ctx;

	atomic_store(&lim->th->throttle_degraded, mail_throttle_degraded(lim->throttle));
	pn_io_timer_set(lim->th->loop, lim->publish_timer, PUBLISH_MS);
}

static const struct pn_io_handlers publish_handlers = { .on_timer = publish_tick };

int fe_limits_new(struct fe_thread *th, struct fe_limits **lim_r, const char **error_r)
{
	struct fe_limits *lim = calloc(1, sizeof(*lim));
	struct store_redis *redis = th->backend != NULL ? th->backend->redis : NULL;
	struct mail_throttle_settings set;

	if (lim == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	lim->th = th;
	fe_limits_throttle_settings(&th->node->cfg, th->node->node_name,
				    th->node->throttle_metrics, &set);
	lim->throttle = mail_throttle_new(th->loop, redis, &set, error_r);
	if (lim->throttle == NULL) {
		free(lim);
		return -1;
	}
	if (redis != NULL) {
		lim->kick_sub = store_rkick_subscribe(redis, kick_cb, lim);
		if (lim->kick_sub == NULL) {
			mail_throttle_free(&lim->throttle);
			free(lim);
			*error_r = "cannot subscribe to kick requests";
			return -1;
		}
	}
	lim->publish_timer = pn_io_add(th->loop, -1, 0, &publish_handlers, lim);
	if (lim->publish_timer == PN_IO_NONE) {
		store_redis_unsubscribe(&lim->kick_sub);
		mail_throttle_free(&lim->throttle);
		free(lim);
		*error_r = "no io slot for the limits timer";
		return -1;
	}
	pn_io_timer_set(th->loop, lim->publish_timer, PUBLISH_MS);
	*lim_r = lim;
	return 0;
}

void fe_limits_free(struct fe_limits **limp)
{
	struct fe_limits *lim = *limp;

	if (lim == NULL)
		return;
	pn_io_close(lim->th->loop, lim->publish_timer);
	atomic_store(&lim->th->throttle_degraded, false);
	store_redis_unsubscribe(&lim->kick_sub);
	mail_throttle_free(&lim->throttle);
	free(lim);
	*limp = NULL;
}

/* On the thread's loop: the limits thread 0 left for it, if still there
 * (two quick reloads: the first post applies the last limits). */
static void reload_apply(void *ctx)
{
	struct fe_thread *th = ctx;
	struct mail_throttle_settings set;
	struct mail_throttle *t = fe_thread_throttle(th);
	bool pending;
	const char *error;

	pthread_mutex_lock(&th->reload_lock);
	pending = th->reload_pending;
	th->reload_pending = false;
	set = th->reload_set;
	pthread_mutex_unlock(&th->reload_lock);
	if (!pending)
		return;
	if (t == NULL) {
		pn_warn("event=reload what=limits thread=%u result=failed error=\"not started\"",
			th->index);
		return;
	}
	if (mail_throttle_set_settings(t, &set, &error) < 0)
		pn_error("event=reload what=limits thread=%u result=failed error=\"%s\"",
			 th->index, error);
	else
		pn_debug("event=reload what=limits thread=%u result=ok", th->index);
}

int fe_limits_reload(struct fe_node *node, const struct fe_config *cfg, const char **error_r)
{
	struct mail_throttle_settings set;

	fe_limits_throttle_settings(cfg, node->node_name, node->throttle_metrics, &set);
	if (mail_throttle_settings_check(&set, error_r) < 0)
		return -1;
	for (unsigned int i = 0; i < node->nthreads; i++) {
		struct fe_thread *th = &node->threads[i];

		pthread_mutex_lock(&th->reload_lock);
		th->reload_set = set;
		th->reload_pending = true;
		pthread_mutex_unlock(&th->reload_lock);
		if (pn_loop_post(th->loop, reload_apply, th) < 0)
			pn_error("event=reload what=limits thread=%u result=failed"
				 " error=\"cannot post to the thread\"", i);
	}
	return 0;
}

struct mail_throttle *fe_thread_throttle(const struct fe_thread *th)
{
	return th != NULL && th->limits != NULL ? th->limits->throttle : NULL;
}

void fe_limits_ready_check(struct fe_thread *th, struct pn_admin_checks *checks)
{
	char buf[200];
	struct mail_throttle *t = fe_thread_throttle(th);

	if (t == NULL) {
		pn_admin_check(checks, "limits", true, "not started");
		return;
	}
	mail_throttle_status(t, buf, sizeof(buf));
	if (!mail_throttle_degraded(t)) {
		/* thread 0 is fine; another thread's client may not be */
		unsigned int n = 0;

		for (unsigned int i = 1; i < th->node->nthreads; i++)
			if (atomic_load(&th->node->threads[i].throttle_degraded))
				n++;
		if (n > 0)
			snprintf(buf, sizeof(buf), "limits counted per node on %u of %u threads"
				 " (their redis commands fail)", n, th->node->nthreads);
	}
	pn_admin_check(checks, "limits", true, buf);
}
