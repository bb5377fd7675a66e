/* The configuration table of postern-frontend: every key with its type,
 * default, check and one-line description. The parser, the POSTERN_<KEY>
 * environment overrides and the Markdown reference (--help-config,
 * docs/config-frontend.md) all come from this one table, so a key cannot be
 * added without its documentation.
 */
#include "fe-config.h"

#include "postern/config.h"
#include "postern/log.h"
#include "postern/loop.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const char *const service_names[FE_SVC_COUNT] = {
	"imap", "imaps", "pop3", "pop3s", "smtp", "submission", "submissions", "lmtp",
};
static const char *const service_protocols[FE_SVC_COUNT] = {
	"imap", "imap", "pop3", "pop3", "smtp", "submission", "submission", "lmtp",
};

const char *fe_service_name(enum fe_service svc)
{
	return (unsigned int)svc < FE_SVC_COUNT ? service_names[svc] : "?";
}

const char *fe_service_protocol(enum fe_service svc)
{
	return (unsigned int)svc < FE_SVC_COUNT ? service_protocols[svc] : "?";
}

bool fe_service_implicit_tls(enum fe_service svc)
{
	return svc == FE_SVC_IMAPS || svc == FE_SVC_POP3S || svc == FE_SVC_SUBMISSIONS;
}

int fe_listen_addr_parse(const char *s, struct fe_listen_addr *addr_r)
{
	const char *colon;
	size_t hostlen;
	struct sockaddr_storage ss;
	socklen_t sslen;
	unsigned long port = 0;

	memset(addr_r, 0, sizeof(*addr_r));
	if (s == NULL || s[0] == '\0')
		return 0;
	/* pn_parse_hostport checks the syntax; ":port" means 0.0.0.0 there,
	 * but here it means every address (dual stack), as documented. */
	if (pn_parse_hostport(s, &ss, &sslen) < 0)
		return -1;
	colon = strrchr(s, ':');
	hostlen = (size_t)(colon - s);
	if (hostlen >= sizeof(addr_r->host))
		return -1;
	memcpy(addr_r->host, s, hostlen);
	addr_r->host[hostlen] = '\0';
	for (const char *p = colon + 1; *p != '\0'; p++)
		port = port * 10 + (unsigned long)(*p - '0');
	addr_r->port = (uint16_t)port;
	addr_r->enabled = true;
	return 0;
}

static int check_listen(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	struct fe_listen_addr a;

	if (fe_listen_addr_parse(s, &a) < 0) {
		*error_r = "expected host:port, [v6]:port, :port or empty (off)";
		return -1;
	}
	return 0;
}

static int check_admin_listen(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	struct sockaddr_storage ss;
	socklen_t len;

	if (pn_parse_hostport(s, &ss, &len) < 0) {
		*error_r = "expected host:port, [v6]:port or :port";
		return -1;
	}
	return 0;
}

static int check_cidr_list(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	struct pn_cidr_list list;

	if (pn_cidr_list_parse(s, &list, error_r) < 0)
		return -1;
	pn_cidr_list_free(&list);
	return 0;
}

/* RCPT TO:<Postmaster>'s address: empty, or local@domain of printable
 * ASCII without spaces or angle brackets (it is resolved like any RCPT). */
static int check_address(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	const char *at = strrchr(s, '@');
	size_t n = strlen(s);

	if (n == 0)
		return 0;
	if (n > 254 || at == NULL || at == s || at[1] == '\0') {
		*error_r = "an address local@domain (at most 254 characters) or empty";
		return -1;
	}
	for (; *s != '\0'; s++) {
		if (*s <= ' ' || *s >= 0x7f || *s == '<' || *s == '>') {
			*error_r = "printable ASCII without spaces or angle brackets";
			return -1;
		}
	}
	return 0;
}

/* Node and host names go into logs, greetings and Redis keys: letters,
 * digits and ".-_" only. Empty means "the host name". */
static int check_name(const void *value, const char **error_r)
{
	const char *s = *(char *const *)value;
	size_t n = strlen(s);

	if (n > 63) {
		*error_r = "at most 63 characters";
		return -1;
	}
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_')) {
			*error_r = "letters, digits, '.', '-' and '_' only";
			return -1;
		}
	}
	return 0;
}

#define F(field) offsetof(struct fe_config, field)
#define MS(x) ((int64_t)(x))
#define SEC(x) ((int64_t)(x) * 1000)

static const struct pn_config_def defs[] = {
	{ "node", PN_CFG_STRING, "", F(node), check_name,
	  "Node name in logs, metrics, the Redis node and session registries; empty means the host name." },
	{ "log_level", PN_CFG_ENUM("debug", "info", "warn", "error"), "info", F(log_level), NULL,
	  "Lowest level written to stderr." },
	{ "hostname", PN_CFG_STRING, "", F(hostname), check_name,
	  "Name in greetings and Received: headers; empty means the host name." },
	{ "threads", PN_CFG_INT_RANGE(0, 256), "0", F(threads), NULL,
	  "Event-loop threads, each with its own io_uring and SO_REUSEPORT listeners; 0 means one per CPU core." },
	{ "admin_listen", PN_CFG_STRING, "127.0.0.1:9101", F(admin_listen), check_admin_listen,
	  "Admin HTTP address (/healthz, /readyz, /metrics)." },
	{ "imap_listen", PN_CFG_STRING, ":143", F(listen[FE_SVC_IMAP]), check_listen,
	  "IMAP (STARTTLS) listener; empty turns it off. Without TLS, LOGIN and AUTHENTICATE are refused unless the client is in plaintext_auth_networks." },
	{ "imaps_listen", PN_CFG_STRING, ":993", F(listen[FE_SVC_IMAPS]), check_listen,
	  "IMAP over implicit TLS; empty turns it off (needs tls_cert and tls_key)." },
	{ "pop3_listen", PN_CFG_STRING, ":110", F(listen[FE_SVC_POP3]), check_listen,
	  "POP3 (STLS) listener; empty turns it off. Without TLS, USER/PASS and AUTH are refused unless the client is in plaintext_auth_networks." },
	{ "pop3s_listen", PN_CFG_STRING, ":995", F(listen[FE_SVC_POP3S]), check_listen,
	  "POP3 over implicit TLS; empty turns it off (needs tls_cert and tls_key)." },
	{ "smtp_listen", PN_CFG_STRING, ":25", F(listen[FE_SVC_SMTP]), check_listen,
	  "SMTP (MX) listener: mail for local domains, no AUTH, relaying refused; empty turns it off." },
	{ "submission_listen", PN_CFG_STRING, ":587", F(listen[FE_SVC_SUBMISSION]), check_listen,
	  "Submission (STARTTLS) listener; empty turns it off. Sending needs AUTH; without TLS AUTH is refused unless the client is in plaintext_auth_networks." },
	{ "submissions_listen", PN_CFG_STRING, ":465", F(listen[FE_SVC_SUBMISSIONS]), check_listen,
	  "Submission over implicit TLS; empty turns it off (needs tls_cert and tls_key)." },
	{ "lmtp_listen", PN_CFG_STRING, "", F(listen[FE_SVC_LMTP]), check_listen,
	  "LMTP listener for an MTA in front of Postern; empty turns it off." },
	{ "tls_cert", PN_CFG_STRING, "", F(tls_cert), NULL,
	  "PEM certificate chain (leaf first). Without it implicit TLS listeners cannot start and STARTTLS/STLS is not offered. Reloaded on SIGHUP." },
	{ "tls_key", PN_CFG_STRING, "", F(tls_key), NULL,
	  "PEM private key of tls_cert. Reloaded on SIGHUP." },
	{ "tls_ca", PN_CFG_STRING, "", F(tls_ca), NULL,
	  "PEM CA bundle for client certificates (optional; none are required)." },
	{ "proxy_trusted", PN_CFG_STRING, "", F(proxy_trusted), check_cidr_list,
	  "Networks (CIDR list) whose connections must start with a PROXY v2 or v1 header (the balancers); from any other peer a PROXY header is refused and the connection closed." },
	{ "handshake_timeout", PN_CFG_DURATION_RANGE(MS(100), SEC(600)), "30s", F(handshake_timeout_ms), NULL,
	  "How long a trusted peer may take to send its PROXY header, and any client to complete a TLS handshake (implicit TLS or STARTTLS)." },
	{ "plaintext_auth_networks", PN_CFG_STRING, "127.0.0.0/8, ::1", F(plaintext_auth_networks), check_cidr_list,
	  "Client networks (after PROXY) that may log in without TLS; everyone else must use TLS or STARTTLS first." },
	{ "max_connections", PN_CFG_INT_RANGE(1, 10000000), "100000", F(max_connections), NULL,
	  "Client connections per node (split evenly between threads); further ones are closed at accept." },
	{ "output_buffer", PN_CFG_SIZE_RANGE(4096, 64 * 1024 * 1024), "256k", F(output_buffer), NULL,
	  "Bytes queued for one client before the session stops producing output (backpressure)." },
	{ "imap_idle_timeout", PN_CFG_DURATION_RANGE(SEC(10), SEC(86400)), "30m", F(imap_idle_timeout_ms), NULL,
	  "IMAP connections silent this long are closed (RFC 9051 asks for at least 30 minutes)." },
	{ "pop3_idle_timeout", PN_CFG_DURATION_RANGE(SEC(10), SEC(86400)), "10m", F(pop3_idle_timeout_ms), NULL,
	  "POP3 autologout timer (RFC 1939 asks for at least 10 minutes)." },
	{ "smtp_idle_timeout", PN_CFG_DURATION_RANGE(SEC(10), SEC(86400)), "5m", F(smtp_idle_timeout_ms), NULL,
	  "SMTP, submission and LMTP connections silent this long get 421 and are closed (RFC 5321 4.5.3.2.7)." },
	{ "postmaster_address", PN_CFG_STRING, "", F(postmaster_address), check_address,
	  "Where RCPT TO:<Postmaster> (no domain, RFC 5321 4.5.1) is delivered, on MX and LMTP: an address in one of the cluster's domains (an alias there may forward it anywhere). Empty means postmaster@ the cluster's primary domain (the first one created); without an account, alias or catch-all for that address such mail is refused as unknown (550 5.1.1). Read at start." },
	{ "drain_grace", PN_CFG_DURATION_RANGE(0, SEC(3600)), "30s", F(drain_grace_ms), NULL,
	  "On SIGTERM: time from the start of the drain until the process exits, whatever is still open." },
	{ "drain_spread", PN_CFG_DURATION_RANGE(0, SEC(3600)), "0", F(drain_spread_ms), NULL,
	  "On SIGTERM the goodbyes are spread over this time (so clients do not all reconnect at once); 0 means half of drain_grace." },
	{ "pg_dsn", PN_CFG_STRING, "", F(pg_dsn), NULL,
	  "libpq connection string of the mail store." },
	{ "pg_connections", PN_CFG_INT_RANGE(0, 64), "0", F(pg_connections), NULL,
	  "PostgreSQL connections per thread for statements such as deliveries, FETCH and expunges. 0 (auto): 4 per thread while the node has at most 4 threads, else 16 for the node shared by its threads (at least 2 each); with durable commits a delivery spends much of its time waiting for the WAL flush, and 4 per thread delivered about 1.4x the messages of 2 (bench/README.md, finding 16). A node opens up to threads x (pg_connections + pg_lookup_connections); keep the sum over all nodes and backend workers well below the server's max_connections (100 by default, 3 of them reserved for superusers): with auto, 2-thread nodes take 10 each." },
	{ "pg_lookup_connections", PN_CFG_INT_RANGE(0, 16), "1", F(pg_lookup_connections), NULL,
	  "More PostgreSQL connections per thread that only short lookups a client waits on use (SMTP RCPT and sender checks, login lookups); those lookups also go ahead of other statements in the thread's queue, so an RCPT does not wait behind whole deliveries. Opened when first needed, then kept. 0: none (the lookups still go first in the queue)." },
	{ "pg_timeout", PN_CFG_DURATION_RANGE(MS(100), SEC(600)), "10s", F(pg_timeout_ms), NULL,
	  "A PostgreSQL query (or connection attempt) taking longer fails with a temporary error." },
	{ "redis_host", PN_CFG_STRING, "127.0.0.1", F(redis_host), NULL,
	  "Redis host (numeric address) for sessions, locks, counters and the node registry." },
	{ "redis_port", PN_CFG_INT_RANGE(1, 65535), "6379", F(redis_port), NULL,
	  "Redis port." },
	{ "redis_timeout", PN_CFG_DURATION_RANGE(MS(100), SEC(600)), "2s", F(redis_timeout_ms), NULL,
	  "A Redis command taking longer counts as Redis being down." },
	{ "readyz_requires_redis", PN_CFG_BOOL, "no", F(readyz_requires_redis), NULL,
	  "When yes, /readyz fails while Redis is unreachable. Default no: logins and mail keep working without Redis (DESIGN section 4), so Redis only shows as degraded in the /readyz detail and on /metrics." },
	{ "heartbeat_interval", PN_CFG_DURATION_RANGE(SEC(1), SEC(600)), "10s", F(heartbeat_interval_ms), NULL,
	  "How often the node refreshes its Redis node-registry entry and session records." },
	{ "auth_workers", PN_CFG_INT_RANGE(0, 256), "0", F(auth_workers), NULL,
	  "Threads verifying password hashes (off the event loops); 0 means one per CPU core." },
	{ "auth_queue", PN_CFG_INT_RANGE(1, 1000000), "1024", F(auth_queue), NULL,
	  "Password checks waiting for a worker; beyond this a login gets a temporary failure." },
	{ "blob_cache_size", PN_CFG_SIZE_RANGE(0, (uint64_t)64 * 1024 * 1024 * 1024), "64m", F(blob_cache_size), NULL,
	  "Memory for message bodies kept by the node for IMAP FETCH (shared by its threads, least recently used evicted; a body over an eighth of it is not kept); bodies never change, so this only saves PostgreSQL reads. 0 turns the cache off." },
	{ "pop3_retr_sets_seen", PN_CFG_BOOL, "yes", F(pop3_retr_sets_seen), NULL,
	  "POP3 RETR sets \\Seen on the message, so it shows as read in IMAP (TOP never does)." },
	{ "pop3_lock_lease", PN_CFG_DURATION_RANGE(SEC(5), SEC(3600)), "60s", F(pop3_lock_lease_ms), NULL,
	  "Lease of the POP3 maildrop lock in Redis, renewed at a third of it while the session lives; a crashed node's lock expires after it." },
	{ "auth_address_delay_after", PN_CFG_INT_RANGE(0, 1000000), "5", F(auth_address_delay_after), NULL,
	  "Failed logins from one client address (IPv6 per /64), counted across all nodes in Redis, after which answers to that address are delayed (docs/throttle.md); 0 turns the delay off. Reloaded on SIGHUP." },
	{ "auth_address_refuse_after", PN_CFG_INT_RANGE(0, 1000000), "30", F(auth_address_refuse_after), NULL,
	  "The failed login from one address that starts a refusal for auth_cooling (IMAP NO [UNAVAILABLE], POP3 -ERR [LOGIN-DELAY], SMTP 454 4.7.0); 0 turns it off. Reloaded on SIGHUP." },
	{ "auth_account_delay_after", PN_CFG_INT_RANGE(0, 1000000), "3", F(auth_account_delay_after), NULL,
	  "Failed logins for one account, from any address, after which its answers are delayed; a success resets the count; 0 turns the delay off. Reloaded on SIGHUP." },
	{ "auth_account_refuse_after", PN_CFG_INT_RANGE(0, 1000000), "10", F(auth_account_refuse_after), NULL,
	  "The failed login for one account that starts a refusal for auth_cooling (catches one password guessed from many addresses); 0 turns it off. Reloaded on SIGHUP." },
	{ "auth_tenant_delay_after", PN_CFG_INT_RANGE(0, 100000000), "1000", F(auth_tenant_delay_after), NULL,
	  "Failed logins in one tenant after which every answer of the tenant is delayed; 0 turns it off. Reloaded on SIGHUP." },
	{ "auth_tenant_refuse_after", PN_CFG_INT_RANGE(0, 100000000), "0", F(auth_tenant_refuse_after), NULL,
	  "The failed login in one tenant that starts a tenant-wide refusal; default 0 (off): one attacker could otherwise lock a whole tenant out. Reloaded on SIGHUP." },
	{ "auth_delay_base", PN_CFG_DURATION_RANGE(MS(1), SEC(60)), "500ms", F(auth_delay_base_ms), NULL,
	  "First delay of a delayed login answer, doubled with every further failure. Reloaded on SIGHUP." },
	{ "auth_delay_max", PN_CFG_DURATION_RANGE(MS(1), SEC(600)), "15s", F(auth_delay_max_ms), NULL,
	  "Longest delay of a login answer. Reloaded on SIGHUP." },
	{ "auth_window", PN_CFG_DURATION_RANGE(SEC(1), SEC(86400)), "15m", F(auth_window_ms), NULL,
	  "Failed logins of a scope are forgotten once this long passed without a new one. Reloaded on SIGHUP." },
	{ "auth_cooling", PN_CFG_DURATION_RANGE(SEC(1), SEC(86400)), "15m", F(auth_cooling_ms), NULL,
	  "How long a refusal for too many failed logins lasts. Reloaded on SIGHUP." },
	{ "max_userip_sessions", PN_CFG_INT_RANGE(0, 1000000), "10", F(max_userip_sessions), NULL,
	  "Concurrent sessions of one account from one client address, across all nodes (like Dovecot's mail_max_userip_connections); 0 turns the limit off. Refused: IMAP NO [LIMIT], POP3 -ERR [IN-USE], SMTP 454 4.7.0. Reloaded on SIGHUP." },
	{ "max_account_sessions", PN_CFG_INT_RANGE(0, 1000000), "0", F(max_account_sessions), NULL,
	  "Concurrent sessions of one account from anywhere, across all nodes; 0 turns the limit off. Reloaded on SIGHUP." },
	{ "max_tenant_sessions", PN_CFG_INT_RANGE(0, 100000000), "0", F(max_tenant_sessions), NULL,
	  "Concurrent sessions of one tenant, across all nodes; 0 turns the limit off. Reloaded on SIGHUP." },
	{ "session_lease", PN_CFG_DURATION_RANGE(SEC(3), SEC(3600)), "90s", F(session_lease_ms), NULL,
	  "Lease of a session slot in Redis, renewed at a third of it; a crashed node's slots expire after it. Reloaded on SIGHUP." },
	{ "tenant_messages_per_window", PN_CFG_INT_RANGE(0, 100000000), "0", F(tenant_messages_per_window), NULL,
	  "Messages one tenant may submit per tenant_message_window (sliding estimate), across all nodes; further ones get 451 4.3.0; 0 turns the limit off. Reloaded on SIGHUP." },
	{ "tenant_message_window", PN_CFG_DURATION_RANGE(SEC(1), SEC(86400)), "1h", F(tenant_message_window_ms), NULL,
	  "Window of tenant_messages_per_window. Reloaded on SIGHUP." },
};

#define NDEFS PN_CONFIG_COUNT(defs)

int fe_config_load(struct fe_config *cfg, const char *path, const char *const *sets,
		   size_t nsets, const char **error_r)
{
	memset(cfg, 0, sizeof(*cfg));
	return pn_config_load(defs, NDEFS, cfg, path, sets, nsets, error_r);
}

void fe_config_free(struct fe_config *cfg)
{
	pn_config_free(defs, NDEFS, cfg);
}

int fe_config_write_reference(FILE *out)
{
	fputs("# postern-frontend configuration\n\n"
	      "Generated by `postern-frontend --help-config`; do not edit by hand.\n\n"
	      "Each key can be set in the file given with `-c FILE` (`key = value`),\n"
	      "in the environment as `POSTERN_<KEY>` (upper-cased), or with\n"
	      "`--set key=value`, in that order of precedence (the last wins).\n"
	      "Durations take a unit (`250ms`, `30s`, `5m`, `1h`), sizes a binary\n"
	      "multiple (`64k`, `16M`). A listener set to the empty string is off.\n\n", out);
	return pn_config_write_markdown(defs, NDEFS, out);
}

int fe_config_pn_log_level(const struct fe_config *cfg)
{
	switch (cfg->log_level) {
	case FE_LOG_DEBUG:
		return PN_LOG_DEBUG;
	case FE_LOG_WARN:
		return PN_LOG_WARN;
	case FE_LOG_ERROR:
		return PN_LOG_ERROR;
	default:
		return PN_LOG_INFO;
	}
}
