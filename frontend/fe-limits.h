/* Cluster-wide protection on one frontend thread: the thread's throttle
 * instance (postern/mail-throttle.h, over the thread's Redis client, with
 * the limits of the configuration) and the thread's subscription to kick
 * requests ("{nodes}:kick", postern/store-kick.h).
 *
 * A kick request ends this thread's matching sessions with their
 * protocol's goodbye (fe_conn_shutdown(FE_SHUTDOWN_KICK): POP3
 * "-ERR [SYS/TEMP]", SMTP "421 4.3.2", IMAP "* BYE") and removes their
 * session registry entries at once (fe_registry_kick()).
 *
 * Loop thread only, except fe_limits_throttle_settings() (pure) and
 * fe_limits_reload() (thread 0, for every thread).
 */
#ifndef FE_LIMITS_H
#define FE_LIMITS_H

#include "postern/admin.h"
#include "postern/mail-throttle.h"

#include "fe-config.h"

struct fe_thread;
struct fe_node;
struct fe_limits;

/* The throttle settings of cfg (0 in a count means off). node: the node
 * name (kept by pointer); metrics may be NULL. */
void fe_limits_throttle_settings(const struct fe_config *cfg, const char *node,
				 struct mail_throttle_metrics *metrics,
				 struct mail_throttle_settings *set_r);

/* After fe_backend_new() on the thread's loop: the throttle (per-node
 * counting only without Redis) and the kick subscription. Returns 0, or
 * -1 with *error_r. */
int fe_limits_new(struct fe_thread *th, struct fe_limits **lim_r, const char **error_r);
/* Before fe_backend_free(): open session slots are forgotten (they expire
 * with their leases). Sets *lim NULL. */
void fe_limits_free(struct fe_limits **lim);

/* SIGHUP, thread 0: checks the limits of cfg (the node name and metrics
 * stay), then has every thread swap its throttle instance's limits for
 * them in place (mail_throttle_set_settings() on the thread's loop, soon
 * after this returns; open sessions keep their slots). Returns 0, or -1
 * with *error_r and nothing changed. */
int fe_limits_reload(struct fe_node *node, const struct fe_config *cfg, const char **error_r);

/* The thread's throttle, or NULL (not started). */
struct mail_throttle *fe_thread_throttle(const struct fe_thread *th);

/* Adds the "limits" check to /readyz (always ok: limits fall back to
 * per-node counting without Redis; the detail says which). Thread 0. */
void fe_limits_ready_check(struct fe_thread *th, struct pn_admin_checks *checks);

#endif
