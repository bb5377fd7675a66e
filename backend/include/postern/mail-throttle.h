/* Cluster-wide protection for the frontends: authentication-failure
 * throttling, concurrent-session limits and per-tenant message rates, with
 * the state in Redis so that it holds whichever frontend a client lands on
 * (docs/redis-keys.md, "Throttling"; docs/throttle.md for the policy).
 *
 * One module instance per loop thread, over that thread's Redis client
 * (postern/store-redis.h). Every decision is asynchronous:
 *
 *   before verifying a password   mail_throttle_auth_check()
 *       -> refuse (answer IMAP "NO [UNAVAILABLE]", POP3 "-ERR [LOGIN-DELAY]",
 *          SMTP "421 4.7.0" without verifying), or
 *       -> verify, then answer after delay_ms (0: at once). Delay the
 *          answer whatever the outcome, so a fast answer does not tell a
 *          guesser that the password was right.
 *   after verifying               mail_throttle_auth_result()
 *   after a successful login      mail_throttle_session_open(), and
 *                                 mail_throttle_session_close() at logout
 *   before accepting a message    mail_throttle_message()
 *
 * Authentication failures are counted per client address (IPv6 per /64
 * by default), per account and per tenant. For each scope, below
 * delay_after failures the answer comes at once; from delay_after on it is
 * delayed by delay_base_ms doubled for every further failure, capped at
 * delay_max_ms; the failure that reaches refuse_after starts a refusal
 * lasting cooling_ms. Failures count until window_ms pass without a new
 * one in that scope, so after the cooling period answers are delayed
 * again and the next failure refuses again. Refused attempts are not
 * verified and not counted. A success resets the account's counter only (not
 * the address's, not the tenant's), so a password guessed from many
 * addresses is still caught by the account's counter.
 *
 * Sessions hold a lease in Redis (a sorted set per account and per tenant,
 * scored by lease expiry) renewed by the module every session_lease_ms / 3:
 * the slots of a node that crashed expire with their leases.
 *
 * Redis unreachable (or failing): every decision is taken from per-node
 * counters kept in this instance with the same thresholds, which the
 * module also keeps up to date while Redis works, so a failover starts
 * from what this node saw. mail_throttle_degraded() is then true, the
 * verdicts say so, postern_throttle_redis_fallback counts the instances in
 * that state, and mail_throttle_status() gives the /readyz detail. The
 * first successful Redis answer ends it. Sessions opened meanwhile are
 * written into Redis by their next lease renewal.
 *
 * Callbacks: a call that returns 0 calls its callback exactly once, later,
 * from the loop (never from inside the call), whatever happens to Redis:
 * Redis commands have the client's timeout, and failures fall back to the
 * per-node counters. The caller keeps ctx valid until then. -1 (errno
 * EINVAL: bad argument; ENOMEM) means no callback. Callbacks may call the
 * module again but not free it. Everything runs on the loop's thread.
 */
#ifndef POSTERN_MAIL_THROTTLE_H
#define POSTERN_MAIL_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pn_loop;
struct pn_metrics;
struct store_redis;
struct mail_throttle;
struct mail_throttle_metrics;
struct mail_throttle_session;

#define MAIL_THROTTLE_ADDR_MAX 64	/* client address text, without port */

/* In a limit below: this stage or limit is switched off. 0 takes the
 * default. */
#define MAIL_THROTTLE_OFF UINT32_MAX

/* Thresholds of one authentication-failure scope. */
struct mail_throttle_auth_limit {
	unsigned int delay_after;	/* failures before answers are delayed */
	unsigned int refuse_after;	/* the failure that starts a refusal */
};

struct mail_throttle_settings {
	/* Node name (as in pn_log_set_node()) for session lease members;
	 * required: [A-Za-z0-9._-], 1..63 bytes. */
	const char *node;

	/* Authentication failures. Defaults: address 5/30, account 3/10,
	 * tenant 1000/off (tenant-wide delays only, and late: every user of
	 * the tenant pays them, and a tenant-wide refusal would let one
	 * attacker lock out a whole tenant; size them to the tenant). */
	struct mail_throttle_auth_limit auth_address, auth_account, auth_tenant;
	unsigned int auth_delay_base_ms;	/* default 500 */
	unsigned int auth_delay_max_ms;		/* default 15000 */
	unsigned int auth_window_ms;		/* default 900000 (15 min) */
	unsigned int auth_cooling_ms;		/* default 900000 (15 min) */
	unsigned int ipv6_prefix;		/* bits counted together; default 64 */

	/* Concurrent sessions: per account and client address (like Dovecot's
	 * mail_max_userip_connections, default 10), per account in total
	 * (default off), per tenant (default off). */
	unsigned int max_userip_sessions;
	unsigned int max_account_sessions;
	unsigned int max_tenant_sessions;
	unsigned int session_lease_ms;		/* default 90000 */

	/* Messages a tenant may send per window (sliding estimate over the
	 * current and previous window); default off. */
	unsigned int tenant_messages_per_window;
	unsigned int tenant_message_window_ms;	/* default 3600000 (1 h) */

	/* Per-node counter table size (distinct addresses, accounts and
	 * tenants tracked at once); default 65536. When full, expired entries
	 * are dropped; new keys beyond it are not counted per node. */
	unsigned int local_max_entries;

	/* Optional: families from mail_throttle_metrics_new(). */
	struct mail_throttle_metrics *metrics;
};

/* What a verdict's limit was. */
enum mail_throttle_kind {
	MAIL_THROTTLE_NONE = 0,
	MAIL_THROTTLE_AUTH_ADDRESS,
	MAIL_THROTTLE_AUTH_ACCOUNT,
	MAIL_THROTTLE_AUTH_TENANT,
	MAIL_THROTTLE_SESSIONS_USERIP,
	MAIL_THROTTLE_SESSIONS_ACCOUNT,
	MAIL_THROTTLE_SESSIONS_TENANT,
	MAIL_THROTTLE_TENANT_MESSAGES,
	MAIL_THROTTLE_KIND_COUNT
};

struct mail_throttle_verdict {
	bool refuse;
	/* Not refused: how long to hold the answer back (auth only). */
	unsigned int delay_ms;
	/* Refused: roughly when trying again makes sense (0: unknown). */
	unsigned int retry_after_ms;
	/* The limit that refused or delayed (the largest delay's), or NONE. */
	enum mail_throttle_kind kind;
	/* Refused: one line for the log and, after the protocol's code, for the
	 * client, e.g. "Too many sessions for this user from this address";
	 * "" otherwise. Static. */
	const char *reason;
	/* The count the decision saw for `kind` (failures, sessions or
	 * messages), for logs. */
	int64_t count;
	/* Taken (at least partly) from per-node counters: Redis failed. */
	bool degraded;
};

/* Who is trying. address: the client's IP (from PROXY when trusted) as
 * text, IPv4 or IPv6 without port or brackets; IPv4-mapped IPv6 counts as
 * IPv4. account_id / tenant_id: 0 when unknown (e.g. no such user): that
 * scope is then not counted. */
struct mail_throttle_who {
	const char *address;
	uint64_t account_id;
	uint64_t tenant_id;
};

typedef void mail_throttle_cb(void *ctx, const struct mail_throttle_verdict *v);
/* session: the handle when allowed (keep it; close it at logout), NULL
 * when refused. */
typedef void mail_throttle_session_cb(void *ctx, const struct mail_throttle_verdict *v,
				      struct mail_throttle_session *session);

/* Registers, once per process, the families every instance feeds:
 *   postern_throttle_redis_fallback                 gauge: instances on
 *                                                   per-node counting
 *   postern_throttle_refusals_total{kind=...}       counter
 *   postern_throttle_auth_delays_total              counter
 * kind: auth_address auth_account auth_tenant sessions_userip
 * sessions_account sessions_tenant tenant_messages. Free after every
 * instance and before the registry. NULL with *error_r on failure. */
struct mail_throttle_metrics *mail_throttle_metrics_new(struct pn_metrics *reg,
							const char **error_r);
void mail_throttle_metrics_free(struct mail_throttle_metrics **m);

/* redis may be NULL: per-node counting only (not reported as degraded).
 * The instance must be freed before redis and loop. NULL with *error_r
 * for bad settings or no memory. */
struct mail_throttle *mail_throttle_new(struct pn_loop *loop, struct store_redis *redis,
					const struct mail_throttle_settings *set,
					const char **error_r);
/* Requests still in flight are dropped without their callbacks. Sessions
 * still open are forgotten without giving their slots back: they expire
 * with their leases, as after a crash (close them first on a clean
 * shutdown). Sets *t NULL. Not from a callback. */
void mail_throttle_free(struct mail_throttle **t);

/* Swaps the limits of a live instance for those of set (thresholds,
 * delays, windows, cooling, session maxima, lease, tenant message rate;
 * 0 takes the default as in mail_throttle_new()), keeping its open
 * session slots, counters, requests in flight and Redis state: the next
 * decision uses the new limits (a lowered session maximum refuses new
 * sessions while the open ones stay; requests already waiting for Redis
 * may still be decided with the old ones). set->node, set->metrics,
 * ipv6_prefix and local_max_entries are ignored: they stay as created. A
 * changed message window starts the tenants' message counts afresh.
 * Returns 0, or -1 with *error_r (settings that mail_throttle_new() would
 * refuse) and the old limits kept. On the instance's loop thread. */
int mail_throttle_set_settings(struct mail_throttle *t, const struct mail_throttle_settings *set,
			       const char **error_r);
/* Whether mail_throttle_set_settings() would take set's limits (no
 * instance needed, any thread). Returns 0, or -1 with *error_r. */
int mail_throttle_settings_check(const struct mail_throttle_settings *set, const char **error_r);

/* Before verifying a password. who->address required. */
int mail_throttle_auth_check(struct mail_throttle *t, const struct mail_throttle_who *who,
			     mail_throttle_cb *cb, void *ctx);
/* After verifying: a failure counts in every known scope (and the verdict
 * says whether the next attempt will be delayed or refused); a success
 * resets the account's counter. cb may be NULL. */
int mail_throttle_auth_result(struct mail_throttle *t, const struct mail_throttle_who *who,
			      bool success, mail_throttle_cb *cb, void *ctx);

/* Takes a session slot for an authenticated account (who->account_id
 * required; tenant_id 0 skips the tenant limit). */
int mail_throttle_session_open(struct mail_throttle *t, const struct mail_throttle_who *who,
			       mail_throttle_session_cb *cb, void *ctx);
/* Gives the slot back (in Redis without waiting) and frees the handle;
 * sets *s NULL. NULL is fine. */
void mail_throttle_session_close(struct mail_throttle *t, struct mail_throttle_session **s);

/* Counts count messages sent by tenant_id against its rate, or refuses
 * them all (nothing counted). */
int mail_throttle_message(struct mail_throttle *t, uint64_t tenant_id, unsigned int count,
			  mail_throttle_cb *cb, void *ctx);

/* True while decisions fall back to per-node counting (Redis configured
 * and down or failing). */
bool mail_throttle_degraded(const struct mail_throttle *t);
/* One line for the /readyz detail into buf (always NUL-terminated), e.g.
 * "redis unavailable for 12 s, limits counted per node: connection
 * refused" or "cluster-wide". Returns buf. */
const char *mail_throttle_status(const struct mail_throttle *t, char *buf, size_t size);

/* Counters for tests and logs. */
struct mail_throttle_stats {
	uint64_t checks, delays, refusals, fallback_decisions;
	unsigned int sessions;		/* open handles */
	unsigned int local_entries;	/* per-node table */
};
void mail_throttle_get_stats(const struct mail_throttle *t, struct mail_throttle_stats *stats_r);

/* "auth_address" ... as in the metrics. */
const char *mail_throttle_kind_name(enum mail_throttle_kind kind);

#endif
