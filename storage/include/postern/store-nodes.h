/* The node registry in Redis: which nodes are alive, where, and how busy.
 *
 * Layout (docs/redis-keys.md, "Node registry"):
 *   {nodes}:node:<name>  hash: addr, version, sessions, ready, seen, role
 *   {nodes}:live         sorted set: member <name>, score the Unix ms of
 *                        its last heartbeat
 *   {nodes}:kick         pub/sub channel of kick requests (store-kick.h)
 * Writers are the daemons (store_rnode_heartbeat() in store-redis-ops.h);
 * readers are store_rnode_list() on a loop and posternctl nodes
 * (store_nodes_read() in store-who.h).
 *
 * This file holds the pure parts: key names, node names and the reading of
 * one hash field. No I/O.
 */
#ifndef POSTERN_STORE_NODES_H
#define POSTERN_STORE_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_NODES_LIVE_KEY "{nodes}:live"
#define STORE_NODES_KEY_PREFIX "{nodes}:node:"
#define STORE_NODES_KICK_CHANNEL "{nodes}:kick"

#define STORE_NODE_NAME_MAX 63
/* Longest node key: the prefix and a name. */
#define STORE_NODE_KEY_MAX (sizeof(STORE_NODES_KEY_PREFIX) + STORE_NODE_NAME_MAX)
/* The TTL readers assume when the writer's is not known: three heartbeats
 * of the frontend's default heartbeat_interval (10 s). */
#define STORE_RNODE_TTL_DEFAULT_MS 30000

#define STORE_RNODE_LIST_MAX 256
struct store_rnode {
	char name[STORE_NODE_NAME_MAX + 1]; /* as in pn_log_set_node(): [A-Za-z0-9._-] */
	char addr[80];		/* where the balancer reaches it: "ip:port" */
	char version[32];
	char role[16];		/* "frontend", ...; "" when the writer gave none */
	int64_t sessions;
	bool ready;
	int64_t seen_ms;	/* Unix ms of the last heartbeat */
};

/* True if name is 1..STORE_NODE_NAME_MAX bytes of [A-Za-z0-9._-]. */
bool store_node_name_ok(const char *name);

/* Writes "{nodes}:node:<name>" into buf. Returns its length, or -1 if the
 * name is not valid or size too small (STORE_NODE_KEY_MAX is enough). */
int store_node_key(const char *name, char *buf, size_t size);

/* Stores one field of a node hash (name f, value v; neither NUL-terminated)
 * into *node: addr, version and role are truncated to their buffers,
 * sessions and seen are decimal (0 when not), ready is "1" or not. Unknown
 * fields are ignored (later writers may add some). */
void store_rnode_set_field(struct store_rnode *node, const char *f, size_t flen,
			   const char *v, size_t vlen);

#endif
