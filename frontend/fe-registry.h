/* The frontend's entries in Redis: the session registry (who is logged in
 * where, docs/redis-keys.md) and the node registry heartbeat.
 *
 * Sessions: an adapter adds an entry at login and removes it when the
 * session ends; every STORE_SESSION_HEARTBEAT_SECS the thread rewrites all
 * of its entries with a new seen= (and the hash's expiry). Node: thread 0
 * writes "{nodes}:node:<name>" every heartbeat_interval with a TTL of three
 * intervals (address = the admin listener, version, role=frontend,
 * sessions, readiness),
 * and removes it at the end of a drain.
 *
 * Everything is best effort: while Redis is down the writes fail and are
 * simply retried at the next beat (records of sessions that ended meanwhile
 * expire with their hash). Loop thread only.
 */
#ifndef FE_REGISTRY_H
#define FE_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

struct fe_thread;
struct fe_registry;
struct store_kick;
struct fe_registry_entry;

/* Starts the thread's heartbeat (and, on thread 0, the node's). Returns 0
 * or -1 with *error_r. */
int fe_registry_new(struct fe_thread *th, struct fe_registry **reg_r, const char **error_r);
/* Stops the timers and forgets the entries (nothing is written); sets *reg
 * NULL. After the loop stopped. */
void fe_registry_free(struct fe_registry **reg);

/* Registers a logged-in session. proto: "pop3", ...; user: the account's
 * address; client: "ip:port". Returns the entry, or NULL (no memory, or a
 * value the record format refuses): the session goes on unregistered. */
struct fe_registry_entry *fe_registry_add(struct fe_thread *th, uint64_t account_id,
					  const char *proto, const char *user,
					  const char *client, const char *session_id);
/* Removes the entry (HDEL in the background) and sets *entry NULL. */
void fe_registry_remove(struct fe_registry_entry **entry);

/* A kick request (postern/store-kick.h): every entry of this thread that
 * matches is removed from Redis at once (HDEL; the heartbeat no longer
 * writes it) and its connection is told goodbye with FE_SHUTDOWN_KICK.
 * The entries themselves stay until their adapters remove them. Returns
 * the number of sessions told goodbye. Loop thread of th. */
unsigned int fe_registry_kick(struct fe_thread *th, const struct store_kick *kick);

/* Thread 0, end of the drain: deletes the node's entry and calls done(ctx)
 * once Redis answered (or at once without Redis). */
void fe_registry_node_remove(struct fe_registry *reg, void (*done)(void *ctx), void *ctx);

#endif
