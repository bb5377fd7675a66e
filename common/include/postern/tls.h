/* TLS engine on memory BIOs (OpenSSL 3.0): it never touches a socket.
 *
 * The owner moves bytes; the engine only transforms them:
 *
 *   network --recv--> pn_tls_feed()      ciphertext in
 *                     pn_tls_read()      plaintext out (also drives the handshake)
 *                     pn_tls_write()     plaintext in
 *   network <--send-- pn_tls_take_out()  ciphertext out (handshake, records, alerts)
 *
 * The owner's loop, after every recv completion:
 *   1. pn_tls_feed(conn, data, len)        (-1: fatal, go to 4)
 *   2. loop pn_tls_read(conn, buf, size) while it returns > 0 and hand the
 *      plaintext to the protocol engine; 0 means "need more ciphertext",
 *      PN_TLS_CLOSED the peer's close_notify, -1 a fatal error.
 *   3. after any read, write or shutdown call, if pn_tls_pending_out(conn) > 0,
 *      pn_tls_take_out() into a send buffer and send it.
 *   4. on -1: still send what pn_tls_pending_out() holds (usually the alert
 *      telling the peer why), then close the socket and pn_tls_conn_free().
 * A client conn has its ClientHello pending as soon as pn_tls_conn_new()
 * returns; send it first.
 *
 * STARTTLS (DESIGN.md: "plaintext received before STARTTLS completes is
 * discarded"). The owner creates the conn only after it has queued the
 * plaintext STARTTLS OK reply (IMAP "a OK Begin TLS", POP3 "+OK", SMTP "220"),
 * and MUST discard every plaintext byte it had already received after the
 * STARTTLS command line (a pipelined command injected by a man in the middle,
 * CVE-2011-0411 and the like). The first byte fed to the conn is the first
 * byte the peer sent after the STARTTLS command line; there is deliberately
 * no way to inject earlier plaintext into the TLS session. The same holds on
 * the client side (backend SMTP client): discard anything after the 220.
 *
 * Bounds. Ciphertext waiting to be processed is limited to max_in bytes
 * (pn_tls_feed fails beyond it), plaintext accepted by pn_tls_write stops when
 * max_out bytes of ciphertext are waiting to be sent, and ciphertext produced
 * in reply to the peer (handshake, KeyUpdate) may not exceed 2 * max_out, so a
 * peer that sends endless garbage, a huge record or floods of requests gets an
 * error, never unbounded memory. OpenSSL itself rejects records longer than
 * the protocol allows and certificate lists over 100 KiB.
 *
 * Errors. Every function that can fail returns -1 (or NULL) and sets
 * *error_r. A conn's error is sticky: once a call returned -1 every later
 * read/write/feed/shutdown returns -1 with the same message. Messages of a
 * conn live in the conn (valid until pn_tls_conn_free); messages of calls
 * without a conn (context creation, pn_tls_conn_new failure) live in a
 * thread-local buffer valid until the next pn_tls_* call on that thread.
 * Each call clears the thread's OpenSSL error queue on entry and on return,
 * so one connection's error never shows up in another's.
 *
 * Threads. A pn_tls_ctx may be shared by every loop thread: pn_tls_conn_new,
 * pn_tls_ctx_reload, pn_tls_ctx_add_sni and pn_tls_ctx_remove_sni may run
 * concurrently. A pn_tls_conn is used by one thread at a time. Contexts and
 * conns may be freed in any order (a conn keeps what it was created with).
 *
 * Reload (SIGHUP) and SNI tenants. The certificate set (default certificate
 * plus SNI table) is an immutable, reference-counted snapshot. A conn takes a
 * reference to the current snapshot when created; reload, add_sni and
 * remove_sni publish a new snapshot, so existing conns keep the certificates
 * they started with and new conns see the change at once.
 *
 * Sessions. Servers resume TLS 1.2 and 1.3 sessions from stateless tickets
 * only (no session cache, nothing shared between threads). The ticket keys
 * belong to the snapshot's default certificate context, so after a reload
 * older tickets fall back to a full handshake; tickets are also per process
 * (not shared between frontends). Client conns do not resume.
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Mozilla "intermediate" TLS 1.2 suites: ECDHE/DHE with AES-GCM or
 * ChaCha20-Poly1305, forward secrecy only. */
#define PN_TLS_DEFAULT_CIPHERS                                                \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"          \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"          \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"          \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"                \
	"DHE-RSA-CHACHA20-POLY1305"
/* TLS 1.3 suites (OpenSSL's own default order). */
#define PN_TLS_DEFAULT_CIPHERSUITES                                           \
	"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"

#define PN_TLS_DEFAULT_MAX_IN (64 * 1024)
#define PN_TLS_DEFAULT_MAX_OUT (64 * 1024)
/* Smallest accepted max_in/max_out: one full TLS record plus overhead must
 * always fit, or a legitimate peer could never make progress. */
#define PN_TLS_MIN_BUFFER (32 * 1024)

/* pn_tls_read() results besides n > 0. */
#define PN_TLS_AGAIN 0	    /* need more ciphertext (pn_tls_feed) */
#define PN_TLS_ERROR (-1)   /* fatal; see error_r */
#define PN_TLS_CLOSED (-2)  /* the peer sent close_notify: clean end of data */

/* Context settings. Strings are copied; NULL means the default. TLS 1.2 is
 * always the minimum version; there is no setting to go lower. */
struct pn_tls_settings {
	/* Server: PEM certificate chain (leaf first) and PEM private key, both
	 * required. Client: optional client certificate (both or neither). */
	const char *cert_file;
	const char *key_file;
	/* Client: CAs (PEM) trusted to verify the server; NULL = the system
	 * store. Server: CAs for client certificates (and the list of
	 * acceptable CAs sent to the client); NULL = none. */
	const char *ca_file;
	/* OpenSSL cipher list for TLS 1.2; default PN_TLS_DEFAULT_CIPHERS. */
	const char *ciphers;
	/* TLS 1.3 ciphersuites; default PN_TLS_DEFAULT_CIPHERSUITES. */
	const char *ciphersuites;
	/* Comma-separated ALPN protocol ids in preference order, e.g. "imap".
	 * Server: a client that offers ALPN but none of these is refused with
	 * the no_application_protocol alert (cross-protocol attacks, ALPACA);
	 * a client that offers none is accepted. Client: offered as given. */
	const char *alpn;
	/* Client: fail the handshake unless the server's chain verifies against
	 * ca_file (or the system store) and matches the host name given to
	 * pn_tls_conn_new. When false the result is still computed and
	 * reported by pn_tls_peer_verified(). Server: ignored. */
	bool verify_peer;
	/* Server: ask the client for a certificate. Never fails the handshake;
	 * the owner reads pn_tls_peer_cn() and pn_tls_peer_verified()
	 * (verified against ca_file). Client: ignored. */
	bool request_client_cert;
	/* Buffer bounds (see the header comment); 0 = the defaults, values below
	 * PN_TLS_MIN_BUFFER are raised to it. */
	size_t max_in;
	size_t max_out;
};

struct pn_tls_ctx;
struct pn_tls_conn;

/* Creates a server context: loads cert_file and key_file (and checks they
 * belong together), sets protocols, ciphers, ALPN and session tickets
 * (stateless, no server-side session cache). Returns NULL and sets *error_r
 * (naming the file or setting at fault) on failure. */
struct pn_tls_ctx *pn_tls_ctx_new_server(const struct pn_tls_settings *set,
					 const char **error_r);
/* Creates a client context. Returns NULL and sets *error_r on failure. */
struct pn_tls_ctx *pn_tls_ctx_new_client(const struct pn_tls_settings *set,
					 const char **error_r);
/* Drops the owner's reference and sets *ctx NULL. Conns still alive keep
 * working; the certificates are freed with the last of them. */
void pn_tls_ctx_free(struct pn_tls_ctx **ctx);

/* SIGHUP: loads a new default certificate chain and key (for a client
 * context: a new client certificate, or none with NULL, NULL). New conns use
 * it; existing conns keep the old one. Other settings (ciphers, CA file,
 * ALPN) are kept as they were. Returns 0, or -1 with *error_r and the
 * previous certificate still in use. */
int pn_tls_ctx_reload(struct pn_tls_ctx *ctx, const char *cert_file,
		      const char *key_file, const char **error_r);

/* Server only: serves cert_file/key_file to clients whose SNI is name.
 * name is a host name ("mail.tenant.test") or a one-level wildcard
 * ("*.example.test" matches "a.example.test", neither "example.test" nor
 * "a.b.example.test"); matching ignores case, an exact name wins over a
 * wildcard, and a name matching nothing gets the default certificate.
 * Adding a name that exists replaces its certificate (per-tenant reload).
 * Returns 0, or -1 with *error_r (bad name, client context, bad files). */
int pn_tls_ctx_add_sni(struct pn_tls_ctx *ctx, const char *name,
		       const char *cert_file, const char *key_file,
		       const char **error_r);
/* Removes an SNI name. Returns 0, or -1 if it was not there. */
int pn_tls_ctx_remove_sni(struct pn_tls_ctx *ctx, const char *name);
/* Number of SNI names (for status pages and tests). */
size_t pn_tls_ctx_sni_count(struct pn_tls_ctx *ctx);

/* Creates a conn on ctx's current certificates. Server: waits for the
 * ClientHello. Client: server_name (may be NULL) is sent as SNI when it is a
 * DNS name and, with verify_peer, checked against the certificate (DNS name
 * or IP address); the ClientHello is queued for pn_tls_take_out at once.
 * server_name is ignored for a server context. Returns NULL with *error_r on
 * failure (out of memory, invalid server_name). */
struct pn_tls_conn *pn_tls_conn_new(struct pn_tls_ctx *ctx,
				    const char *server_name,
				    const char **error_r);
/* Frees everything (no close_notify is sent; see pn_tls_shutdown) and sets
 * *conn NULL. NULL is fine. */
void pn_tls_conn_free(struct pn_tls_conn **conn);

/* Stores ciphertext received from the network; processing happens in
 * pn_tls_read. Returns 0, or -1 (fatal, nothing stored) if the stored but
 * unprocessed ciphertext would exceed max_in or the conn already failed.
 * An owner that stops reading (backpressure) should stop receiving when
 * pn_tls_feed_room() is smaller than its receive size. */
int pn_tls_feed(struct pn_tls_conn *conn, const void *data, size_t len,
		const char **error_r);
/* Bytes pn_tls_feed still accepts. */
size_t pn_tls_feed_room(const struct pn_tls_conn *conn);
/* The peer closed the TCP stream. Once the fed ciphertext is used up,
 * pn_tls_read returns PN_TLS_CLOSED if close_notify was received, otherwise
 * -1 ("unexpected eof": the data may have been truncated). */
void pn_tls_feed_eof(struct pn_tls_conn *conn);

/* Processes fed ciphertext: advances the handshake (queueing replies for
 * pn_tls_take_out) and decrypts application data into buf[0..size), size > 0.
 * Returns n > 0 plaintext bytes (call again: more may be ready),
 * PN_TLS_AGAIN (0) when more ciphertext is needed, PN_TLS_CLOSED after the
 * peer's close_notify (the owner may answer with pn_tls_shutdown), or
 * PN_TLS_ERROR (-1, fatal) with *error_r. */
ssize_t pn_tls_read(struct pn_tls_conn *conn, void *buf, size_t size,
		    const char **error_r);

/* Encrypts plaintext for the peer. Returns the number of bytes accepted,
 * 0..len: it stops once max_out bytes of ciphertext are waiting (passing
 * the bound by at most one record); the owner keeps the rest and retries
 * after sending. Before the
 * handshake completes the plaintext is held (up to max_out) and encrypted
 * when it does (a server greeting may be written right after accept).
 * Returns -1 with *error_r if the conn failed or pn_tls_shutdown was
 * called. */
ssize_t pn_tls_write(struct pn_tls_conn *conn, const void *data, size_t len,
		     const char **error_r);

/* Ciphertext bytes waiting to be sent. */
size_t pn_tls_pending_out(const struct pn_tls_conn *conn);
/* Moves up to size ciphertext bytes into buf; returns how many. */
size_t pn_tls_take_out(struct pn_tls_conn *conn, void *buf, size_t size);

/* Queues close_notify (after any plaintext already written). Later writes
 * fail; reads go on until the peer's close_notify. If the handshake has not
 * completed there is no session to close: nothing is queued and held
 * plaintext is dropped. Returns 0, or -1 with *error_r if the conn failed. */
int pn_tls_shutdown(struct pn_tls_conn *conn, const char **error_r);

/* True once the handshake has completed. */
bool pn_tls_handshake_done(const struct pn_tls_conn *conn);

/* Session facts, for PROXY v2 TLVs, Received: headers and logs. Strings are
 * owned by the conn and valid until it is freed; NULL when unknown (before
 * the handshake completes, or not sent). Values marked "peer" come from the
 * peer: quote them (pn_log_quote) before logging. */
/* "TLSv1.2" or "TLSv1.3". */
const char *pn_tls_protocol(const struct pn_tls_conn *conn);
/* OpenSSL cipher name, e.g. "TLS_AES_256_GCM_SHA384". */
const char *pn_tls_cipher(const struct pn_tls_conn *conn);
/* Secret bits of the cipher (e.g. 256), 0 when unknown. */
int pn_tls_cipher_bits(const struct pn_tls_conn *conn);
/* Server: the SNI host name the client asked for, lower-cased; only names
 * made of letters, digits, '-', '_' and '.' (at most 253 bytes) are kept,
 * anything else counts as no SNI (peer). Client: the name it sent. */
const char *pn_tls_server_name(const struct pn_tls_conn *conn);
/* Common name of the peer's certificate (the server's on a client conn, the
 * client's on a server conn with request_client_cert), UTF-8, no NULs;
 * NULL without a certificate or CN (peer). */
const char *pn_tls_peer_cn(struct pn_tls_conn *conn);
/* True if the peer sent a certificate. */
bool pn_tls_peer_has_cert(const struct pn_tls_conn *conn);
/* True if the peer's certificate verified (chain, and host name on a client
 * conn with a server_name). */
bool pn_tls_peer_verified(const struct pn_tls_conn *conn);
/* Negotiated ALPN protocol id, or NULL. */
const char *pn_tls_alpn(struct pn_tls_conn *conn);
/* True if the session was resumed from a ticket. */
bool pn_tls_session_reused(const struct pn_tls_conn *conn);

#endif
