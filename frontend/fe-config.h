/* Configuration of postern-frontend: one table (fe-config.c) gives the
 * defaults, the config file syntax, the POSTERN_<KEY> environment overrides
 * and the reference in docs/config-frontend.md (--help-config).
 *
 * Private to frontend/. Nothing here does I/O except fe_config_load (the
 * config file) and fe_config_write_reference (the stream it is given).
 */
#ifndef FE_CONFIG_H
#define FE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "postern/cidr.h"

/* The services a frontend listens for. The order is the order of the
 * listeners in the config table and in logs. */
enum fe_service {
	FE_SVC_IMAP,
	FE_SVC_IMAPS,
	FE_SVC_POP3,
	FE_SVC_POP3S,
	FE_SVC_SMTP,		/* MX, port 25 */
	FE_SVC_SUBMISSION,	/* 587, STARTTLS */
	FE_SVC_SUBMISSIONS,	/* 465, implicit TLS */
	FE_SVC_LMTP,
	FE_SVC_COUNT
};

/* "imap", "imaps", ... (the config key prefix and the log name). */
const char *fe_service_name(enum fe_service svc);
/* The protocol a service speaks: "imap", "pop3", "smtp", "submission" or
 * "lmtp" (metrics label, session registry "proto="). */
const char *fe_service_protocol(enum fe_service svc);
/* True for the implicit TLS listeners (IMAPS, POP3S, SUBMISSIONS). */
bool fe_service_implicit_tls(enum fe_service svc);

enum fe_log_level_cfg { FE_LOG_DEBUG, FE_LOG_INFO, FE_LOG_WARN, FE_LOG_ERROR };

struct fe_config {
	char *node;
	int log_level;			/* enum fe_log_level_cfg */
	char *hostname;
	int64_t threads;		/* 0: one per core */
	char *admin_listen;
	char *listen[FE_SVC_COUNT];	/* "" = off */

	char *tls_cert, *tls_key, *tls_ca;
	char *proxy_trusted;		/* CIDR list */
	uint64_t handshake_timeout_ms;
	char *plaintext_auth_networks;	/* CIDR list */

	int64_t max_connections;
	uint64_t output_buffer;		/* bytes */
	uint64_t imap_idle_timeout_ms;
	uint64_t pop3_idle_timeout_ms;
	uint64_t smtp_idle_timeout_ms;
	char *postmaster_address;	/* "": the primary domain's postmaster */
	uint64_t drain_grace_ms;
	uint64_t drain_spread_ms;	/* 0: half of drain_grace */

	char *pg_dsn;
	int64_t pg_connections;		/* per thread */
	int64_t pg_lookup_connections;	/* per thread, priority requests only */
	uint64_t pg_timeout_ms;
	char *redis_host;
	int64_t redis_port;
	uint64_t redis_timeout_ms;
	bool readyz_requires_redis;
	uint64_t heartbeat_interval_ms;

	int64_t auth_workers;		/* 0: one per core */
	int64_t auth_queue;

	uint64_t blob_cache_size;	/* bytes; 0: no body cache */

	bool pop3_retr_sets_seen;
	uint64_t pop3_lock_lease_ms;

	/* Cluster-wide protection (postern/mail-throttle.h); 0 = off. */
	int64_t auth_address_delay_after, auth_address_refuse_after;
	int64_t auth_account_delay_after, auth_account_refuse_after;
	int64_t auth_tenant_delay_after, auth_tenant_refuse_after;
	uint64_t auth_delay_base_ms, auth_delay_max_ms, auth_window_ms, auth_cooling_ms;
	int64_t max_userip_sessions, max_account_sessions, max_tenant_sessions;
	uint64_t session_lease_ms;
	int64_t tenant_messages_per_window;
	uint64_t tenant_message_window_ms;
};

/* Parsed forms of the config, made once at start (and again on SIGHUP). */
struct fe_listen_addr {
	bool enabled;
	char host[64];			/* "" = all addresses (dual stack) */
	uint16_t port;
};

/* Defaults, then path (may be NULL), then the environment, then
 * sets[0..nsets) ("key=value"). Returns 0, or -1 with *error_r. */
int fe_config_load(struct fe_config *cfg, const char *path, const char *const *sets,
		   size_t nsets, const char **error_r);
void fe_config_free(struct fe_config *cfg);
/* The Markdown reference (docs/config-frontend.md). Returns 0 or -1. */
int fe_config_write_reference(FILE *out);

/* Splits "host:port", "[v6]:port" or ":port" (all addresses). Returns 0,
 * or -1 on bad syntax. "" gives enabled = false. */
int fe_listen_addr_parse(const char *s, struct fe_listen_addr *addr_r);

/* Log level of the config as the log module's value. */
int fe_config_pn_log_level(const struct fe_config *cfg);

#endif
