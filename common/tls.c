/* TLS engine: OpenSSL 3.0 on two memory BIOs per connection (one the owner
 * feeds with received ciphertext, one it drains for sending), with bounds on
 * both, plus server contexts whose certificates (default and per-SNI) live in
 * reference-counted immutable snapshots so that reload and tenant changes
 * never touch a connection already running. See postern/tls.h for the
 * contract. */
#include "postern/tls.h"

#include "postern/buf.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define PN_TLS_NAME_MAX 253	/* longest DNS name, without a trailing dot */
#define PN_TLS_ALPN_WIRE_MAX 1024
#define PN_TLS_CN_MAX 1024
#define PN_TLS_WRITE_CHUNK 16384 /* one full TLS record of plaintext */

struct pn_tls_sni_entry {
	char *name;	/* lower-case; "*.rest" for a wildcard */
	SSL_CTX *ssl_ctx;
};

/* One immutable certificate snapshot. Every SSL_CTX pointer holds its own
 * OpenSSL reference; refs counts the pn_tls_ctx and every conn using it. */
struct pn_tls_gen {
	atomic_uint refs;
	SSL_CTX *def;
	struct pn_tls_sni_entry *sni; /* sorted by name (strcmp) */
	size_t sni_count;
	uint8_t *alpn;	/* wire format (length-prefixed ids), or NULL */
	size_t alpn_len;
	bool is_server;
};

struct pn_tls_ctx {
	bool is_server;
	bool verify_peer, request_client_cert;
	char *ca_file, *ciphers, *ciphersuites;
	uint8_t *alpn;
	size_t alpn_len;
	size_t max_in, max_out;
	pthread_mutex_t lock;	/* guards gen (the pointer, not the snapshot) */
	struct pn_tls_gen *gen;
};

struct pn_tls_conn {
	SSL *ssl;
	BIO *rbio, *wbio;	/* owned by ssl */
	struct pn_tls_gen *gen;
	bool is_server;
	bool hs_done;	/* the handshake completed (stays true after a failure) */
	bool failed, peer_closed, shut, cn_done;
	size_t max_in, max_out;
	struct pn_buf held;	/* plaintext written before the handshake ended */
	char server_name[PN_TLS_NAME_MAX + 1];
	char alpn[256];
	char *peer_cn;
	char error[320];
};

static _Thread_local char tls_thread_error[320];

/* ---- errors ---------------------------------------------------------- */

/* Formats "<what>: <first OpenSSL reason> (<data>)" from the thread's error
 * queue into dst, then clears the queue. */
static void format_ssl_error(char *dst, size_t size, const char *what, const SSL *ssl)
{
	const char *data = NULL;
	int flags = 0;
	unsigned long e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
	char detail[200];

	if (e == 0) {
		snprintf(dst, size, "%s", what);
		return;
	}
	const char *reason = NULL;
	if (ERR_SYSTEM_ERROR(e))
		reason = strerror_r(ERR_GET_REASON(e), detail, sizeof(detail));
	else
		reason = ERR_reason_error_string(e);
	if (reason == NULL) {
		ERR_error_string_n(e, detail, sizeof(detail));
		reason = detail;
	}
	if (ssl != NULL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		long v = SSL_get_verify_result(ssl);
		snprintf(dst, size, "%s: %s: %s", what, reason,
			 X509_verify_cert_error_string(v));
	} else if (data != NULL && (flags & ERR_TXT_STRING) && data[0] != '\0') {
		snprintf(dst, size, "%s: %s (%s)", what, reason, data);
	} else {
		snprintf(dst, size, "%s: %s", what, reason);
	}
	ERR_clear_error();
}

static const char *thread_error(const char *what)
{
	format_ssl_error(tls_thread_error, sizeof(tls_thread_error), what, NULL);
	return tls_thread_error;
}

__attribute__((format(printf, 1, 2)))
static const char *thread_errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tls_thread_error, sizeof(tls_thread_error), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return tls_thread_error;
}

/* Marks the conn failed with a message from the error queue. */
static ssize_t conn_fail_ssl(struct pn_tls_conn *conn, const char *what,
			     const char **error_r)
{
	format_ssl_error(conn->error, sizeof(conn->error), what, conn->ssl);
	conn->failed = true;
	*error_r = conn->error;
	return -1;
}

static ssize_t conn_fail(struct pn_tls_conn *conn, const char *msg,
			 const char **error_r)
{
	snprintf(conn->error, sizeof(conn->error), "%s", msg);
	conn->failed = true;
	ERR_clear_error();
	*error_r = conn->error;
	return -1;
}

/* ---- names ----------------------------------------------------------- */

/* Copies a host name lower-cased into dst (size > PN_TLS_NAME_MAX), without
 * one trailing dot. Returns 0, or -1 unless it is 1..253 bytes of letters,
 * digits, '-', '_' and '.' with no empty label. */
static int normalize_host(const char *src, char *dst)
{
	size_t len = strlen(src);
	if (len > 0 && src[len - 1] == '.')
		len--;
	if (len == 0 || len > PN_TLS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '.') {
			if (i == 0 || src[i - 1] == '.')
				return -1;
		} else if (!isalnum(c) && c != '-' && c != '_') {
			return -1;
		}
		dst[i] = (char)tolower(c);
	}
	dst[len] = '\0';
	return 0;
}

/* An SNI pattern: a host name or "*." followed by one. */
static int normalize_pattern(const char *src, char *dst)
{
	if (src[0] == '*' && src[1] == '.') {
		dst[0] = '*';
		dst[1] = '.';
		if (strlen(src) > PN_TLS_NAME_MAX)
			return -1;
		return normalize_host(src + 2, dst + 2);
	}
	return normalize_host(src, dst);
}

static bool is_ip_literal(const char *s)
{
	ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s);
	if (ip == NULL)
		return false;
	ASN1_OCTET_STRING_free(ip);
	return true;
}

/* "imap,pop3" -> "\x04imap\x04pop3" (RFC 7301 section 3.1: non-empty ids of
 * at most 255 bytes, each prefixed by its length). */
static int alpn_to_wire(const char *list, uint8_t **wire_r, size_t *len_r)
{
	size_t in_len = strlen(list);
	if (in_len == 0 || in_len >= PN_TLS_ALPN_WIRE_MAX)
		return -1;
	uint8_t *wire = malloc(in_len + 1);
	if (wire == NULL)
		return -1;
	size_t out = 0;
	const char *p = list;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n == 0 || n > 255) {
			free(wire);
			return -1;
		}
		wire[out++] = (uint8_t)n;
		memcpy(wire + out, p, n);
		out += n;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	*wire_r = wire;
	*len_r = out;
	return 0;
}

/* ---- snapshots ------------------------------------------------------- */

static void gen_unref(struct pn_tls_gen **genp)
{
	struct pn_tls_gen *gen = *genp;
	*genp = NULL;
	if (gen == NULL || atomic_fetch_sub(&gen->refs, 1) != 1)
		return;
	SSL_CTX_free(gen->def);
	for (size_t i = 0; i < gen->sni_count; i++) {
		free(gen->sni[i].name);
		SSL_CTX_free(gen->sni[i].ssl_ctx);
	}
	free(gen->sni);
	free(gen->alpn);
	free(gen);
}

static struct pn_tls_gen *gen_ref_current(struct pn_tls_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	struct pn_tls_gen *gen = ctx->gen;
	atomic_fetch_add(&gen->refs, 1);
	pthread_mutex_unlock(&ctx->lock);
	return gen;
}

/* A new snapshot with def (reference taken over) and a copy of src's SNI
 * table (each SSL_CTX up-ref'd), room for one more entry. */
static struct pn_tls_gen *gen_derive(const struct pn_tls_ctx *ctx,
				     const struct pn_tls_gen *src, SSL_CTX *def)
{
	struct pn_tls_gen *gen = calloc(1, sizeof(*gen));
	if (gen == NULL)
		return NULL;
	atomic_init(&gen->refs, 1);
	gen->is_server = ctx->is_server;
	size_t n = src != NULL ? src->sni_count : 0;
	gen->sni = calloc(n + 1, sizeof(*gen->sni));
	if (ctx->alpn != NULL)
		gen->alpn = malloc(ctx->alpn_len);
	if (gen->sni == NULL || (ctx->alpn != NULL && gen->alpn == NULL)) {
		free(gen->sni);
		free(gen->alpn);
		free(gen);
		return NULL;
	}
	if (ctx->alpn != NULL) {
		memcpy(gen->alpn, ctx->alpn, ctx->alpn_len);
		gen->alpn_len = ctx->alpn_len;
	}
	for (size_t i = 0; i < n; i++) {
		gen->sni[i].name = strdup(src->sni[i].name);
		if (gen->sni[i].name == NULL) {
			gen_unref(&gen);
			return NULL;
		}
		SSL_CTX_up_ref(src->sni[i].ssl_ctx);
		gen->sni[i].ssl_ctx = src->sni[i].ssl_ctx;
		gen->sni_count++;
	}
	SSL_CTX_up_ref(def);
	gen->def = def;
	return gen;
}

static int sni_cmp(const void *a, const void *b)
{
	const struct pn_tls_sni_entry *x = a, *y = b;
	return strcmp(x->name, y->name);
}

static struct pn_tls_sni_entry *gen_find(const struct pn_tls_gen *gen, const char *name)
{
	struct pn_tls_sni_entry key = { .name = (char *)name };
	if (gen->sni_count == 0)
		return NULL;
	return bsearch(&key, gen->sni, gen->sni_count, sizeof(key), sni_cmp);
}

/* Exact name first, then the one-level wildcard "*.<parent>". */
static SSL_CTX *gen_lookup(const struct pn_tls_gen *gen, const char *host)
{
	struct pn_tls_sni_entry *e = gen_find(gen, host);
	if (e != NULL)
		return e->ssl_ctx;
	const char *dot = strchr(host, '.');
	if (dot == NULL || dot[1] == '\0')
		return NULL;
	char wild[PN_TLS_NAME_MAX + 2];
	snprintf(wild, sizeof(wild), "*%s", dot);
	e = gen_find(gen, wild);
	return e != NULL ? e->ssl_ctx : NULL;
}

/* ---- OpenSSL callbacks ----------------------------------------------- */

/* RFC 6066 section 3: picks the certificate for the requested host name. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct pn_tls_conn *conn = SSL_get_app_data(ssl);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	char host[PN_TLS_NAME_MAX + 1];

	if (conn == NULL || name == NULL || normalize_host(name, host) < 0)
		return SSL_TLSEXT_ERR_NOACK;
	memcpy(conn->server_name, host, strlen(host) + 1);
	SSL_CTX *tenant = gen_lookup(conn->gen, host);
	if (tenant == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	if (tenant != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, tenant) == NULL)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

/* RFC 7301 section 3.2: the first of our ids (in our order) that the client
 * offered; none in common is a fatal no_application_protocol alert. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	struct pn_tls_conn *conn = SSL_get_app_data(ssl);
	if (conn == NULL || conn->gen->alpn == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	const uint8_t *ours = conn->gen->alpn;
	size_t ours_len = conn->gen->alpn_len;
	for (size_t i = 0; i < ours_len; i += 1 + ours[i]) {
		for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
			if (j + 1u + in[j] > inlen)
				break;
			if (in[j] == ours[i] && memcmp(in + j + 1, ours + i + 1, ours[i]) == 0) {
				*out = in + j + 1;
				*outlen = in[j];
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* request_client_cert: never fail the handshake over the client's
 * certificate; the verification result stays in SSL_get_verify_result. */
static int accept_any_cert_cb(int preverify_ok, X509_STORE_CTX *store)
{
	return 1;
}

/* ---- contexts -------------------------------------------------------- */

static SSL_CTX *build_ssl_ctx(const struct pn_tls_ctx *ctx, const char *cert_file,
			      const char *key_file, const char **error_r)
{
	SSL_CTX *s = SSL_CTX_new(ctx->is_server ? TLS_server_method() : TLS_client_method());
	if (s == NULL) {
		*error_r = thread_error("SSL_CTX_new");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION) != 1) {
		*error_r = thread_error("setting TLS 1.2 minimum");
		goto fail;
	}
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(s, ctx->ciphers) != 1) {
		*error_r = thread_errorf("ciphers \"%s\": no usable cipher", ctx->ciphers);
		goto fail;
	}
	if (SSL_CTX_set_ciphersuites(s, ctx->ciphersuites) != 1) {
		*error_r = thread_errorf("ciphersuites \"%s\": no usable suite",
					 ctx->ciphersuites);
		goto fail;
	}

	if (ctx->is_server) {
		SSL_CTX_set_dh_auto(s, 1);
		/* Resumption by stateless tickets only: no per-process cache
		 * (and no lock shared between loop threads). */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
		static const unsigned char sid_ctx[] = "postern";
		SSL_CTX_set_session_id_context(s, sid_ctx, sizeof(sid_ctx) - 1);
		SSL_CTX_set_tlsext_servername_callback(s, servername_cb);
		if (ctx->alpn != NULL)
			SSL_CTX_set_alpn_select_cb(s, alpn_select_cb, NULL);
		if (ctx->request_client_cert) {
			SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
					   accept_any_cert_cb);
			if (ctx->ca_file != NULL) {
				if (SSL_CTX_load_verify_locations(s, ctx->ca_file, NULL) != 1) {
					*error_r = thread_error(ctx->ca_file);
					goto fail;
				}
				STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ctx->ca_file);
				if (names != NULL)
					SSL_CTX_set_client_CA_list(s, names);
			}
		}
		if (cert_file == NULL || key_file == NULL) {
			*error_r = thread_errorf("a server needs cert_file and key_file");
			goto fail;
		}
	} else {
		SSL_CTX_set_verify(s, ctx->verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
		int ok = ctx->ca_file != NULL ?
			SSL_CTX_load_verify_locations(s, ctx->ca_file, NULL) :
			SSL_CTX_set_default_verify_paths(s);
		if (ok != 1) {
			*error_r = thread_error(ctx->ca_file != NULL ? ctx->ca_file :
						"system CA store");
			goto fail;
		}
		/* SSL_CTX_set_alpn_protos returns 0 on success. */
		if (ctx->alpn != NULL &&
		    SSL_CTX_set_alpn_protos(s, ctx->alpn, (unsigned int)ctx->alpn_len) != 0) {
			*error_r = thread_error("ALPN");
			goto fail;
		}
		if ((cert_file == NULL) != (key_file == NULL)) {
			*error_r = thread_errorf("cert_file and key_file go together");
			goto fail;
		}
	}

	if (cert_file != NULL) {
		if (SSL_CTX_use_certificate_chain_file(s, cert_file) != 1) {
			*error_r = thread_error(cert_file);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(s, key_file, SSL_FILETYPE_PEM) != 1) {
			unsigned long e = ERR_peek_error();
			if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
			    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
				*error_r = thread_errorf("%s does not match %s", key_file, cert_file);
			else
				*error_r = thread_error(key_file);
			goto fail;
		}
		if (SSL_CTX_check_private_key(s) != 1) {
			ERR_clear_error();
			*error_r = thread_errorf("%s does not match %s", key_file, cert_file);
			goto fail;
		}
	}
	ERR_clear_error();
	return s;
fail:
	SSL_CTX_free(s);
	ERR_clear_error();
	return NULL;
}

static void ctx_free_fields(struct pn_tls_ctx *ctx)
{
	free(ctx->ca_file);
	free(ctx->ciphers);
	free(ctx->ciphersuites);
	free(ctx->alpn);
	free(ctx);
}

static struct pn_tls_ctx *ctx_new(bool is_server, const struct pn_tls_settings *set,
				  const char **error_r)
{
	ERR_clear_error();
	struct pn_tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		*error_r = thread_errorf("out of memory");
		return NULL;
	}
	ctx->is_server = is_server;
	ctx->verify_peer = set->verify_peer;
	ctx->request_client_cert = set->request_client_cert;
	ctx->max_in = set->max_in != 0 ? set->max_in : PN_TLS_DEFAULT_MAX_IN;
	ctx->max_out = set->max_out != 0 ? set->max_out : PN_TLS_DEFAULT_MAX_OUT;
	if (ctx->max_in < PN_TLS_MIN_BUFFER)
		ctx->max_in = PN_TLS_MIN_BUFFER;
	if (ctx->max_out < PN_TLS_MIN_BUFFER)
		ctx->max_out = PN_TLS_MIN_BUFFER;
	ctx->ciphers = strdup(set->ciphers != NULL ? set->ciphers : PN_TLS_DEFAULT_CIPHERS);
	ctx->ciphersuites = strdup(set->ciphersuites != NULL ? set->ciphersuites :
				   PN_TLS_DEFAULT_CIPHERSUITES);
	if (set->ca_file != NULL)
		ctx->ca_file = strdup(set->ca_file);
	if (ctx->ciphers == NULL || ctx->ciphersuites == NULL ||
	    (set->ca_file != NULL && ctx->ca_file == NULL)) {
		ctx_free_fields(ctx);
		*error_r = thread_errorf("out of memory");
		return NULL;
	}
	if (set->alpn != NULL && alpn_to_wire(set->alpn, &ctx->alpn, &ctx->alpn_len) < 0) {
		ctx_free_fields(ctx);
		*error_r = thread_errorf("alpn \"%s\": expected comma-separated ids of 1..255 bytes",
					 set->alpn);
		return NULL;
	}

	SSL_CTX *def = build_ssl_ctx(ctx, set->cert_file, set->key_file, error_r);
	if (def == NULL) {
		ctx_free_fields(ctx);
		return NULL;
	}
	ctx->gen = gen_derive(ctx, NULL, def);
	SSL_CTX_free(def); /* gen_derive took its own reference */
	if (ctx->gen == NULL) {
		ctx_free_fields(ctx);
		*error_r = thread_errorf("out of memory");
		return NULL;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	return ctx;
}

struct pn_tls_ctx *pn_tls_ctx_new_server(const struct pn_tls_settings *set,
					 const char **error_r)
{
	return ctx_new(true, set, error_r);
}

struct pn_tls_ctx *pn_tls_ctx_new_client(const struct pn_tls_settings *set,
					 const char **error_r)
{
	return ctx_new(false, set, error_r);
}

void pn_tls_ctx_free(struct pn_tls_ctx **ctxp)
{
	struct pn_tls_ctx *ctx = *ctxp;
	*ctxp = NULL;
	if (ctx == NULL)
		return;
	gen_unref(&ctx->gen);
	pthread_mutex_destroy(&ctx->lock);
	ctx_free_fields(ctx);
}

int pn_tls_ctx_reload(struct pn_tls_ctx *ctx, const char *cert_file,
		      const char *key_file, const char **error_r)
{
	ERR_clear_error();
	SSL_CTX *def = build_ssl_ctx(ctx, cert_file, key_file, error_r);
	if (def == NULL)
		return -1;
	/* Writers serialize on the lock too, so no SNI change made between
	 * reading the old snapshot and publishing is lost. */
	pthread_mutex_lock(&ctx->lock);
	struct pn_tls_gen *gen = gen_derive(ctx, ctx->gen, def);
	struct pn_tls_gen *old = NULL;
	if (gen != NULL) {
		old = ctx->gen;
		ctx->gen = gen;
	}
	pthread_mutex_unlock(&ctx->lock);
	SSL_CTX_free(def);
	gen_unref(&old);
	if (gen == NULL) {
		*error_r = thread_errorf("out of memory");
		return -1;
	}
	return 0;
}

int pn_tls_ctx_add_sni(struct pn_tls_ctx *ctx, const char *name,
		       const char *cert_file, const char *key_file,
		       const char **error_r)
{
	char pattern[PN_TLS_NAME_MAX + 3];

	ERR_clear_error();
	if (!ctx->is_server) {
		*error_r = thread_errorf("SNI certificates need a server context");
		return -1;
	}
	if (normalize_pattern(name, pattern) < 0) {
		*error_r = thread_errorf("SNI name \"%.*s\": not a host name or *.host.name",
					 PN_TLS_NAME_MAX, name);
		return -1;
	}
	SSL_CTX *tenant = build_ssl_ctx(ctx, cert_file, key_file, error_r);
	if (tenant == NULL)
		return -1;
	char *copy = strdup(pattern);
	if (copy == NULL) {
		SSL_CTX_free(tenant);
		*error_r = thread_errorf("out of memory");
		return -1;
	}

	pthread_mutex_lock(&ctx->lock);
	struct pn_tls_gen *gen = gen_derive(ctx, ctx->gen, ctx->gen->def);
	struct pn_tls_gen *old = NULL;
	if (gen != NULL) {
		struct pn_tls_sni_entry *e = gen_find(gen, pattern);
		if (e != NULL) {
			SSL_CTX_free(e->ssl_ctx);
			free(e->name);
			e->name = copy;
			e->ssl_ctx = tenant;
		} else {
			gen->sni[gen->sni_count].name = copy;
			gen->sni[gen->sni_count].ssl_ctx = tenant;
			gen->sni_count++;
			qsort(gen->sni, gen->sni_count, sizeof(*gen->sni), sni_cmp);
		}
		old = ctx->gen;
		ctx->gen = gen;
	}
	pthread_mutex_unlock(&ctx->lock);
	if (gen == NULL) {
		free(copy);
		SSL_CTX_free(tenant);
		*error_r = thread_errorf("out of memory");
		return -1;
	}
	gen_unref(&old);
	return 0;
}

int pn_tls_ctx_remove_sni(struct pn_tls_ctx *ctx, const char *name)
{
	char pattern[PN_TLS_NAME_MAX + 3];
	if (!ctx->is_server || normalize_pattern(name, pattern) < 0)
		return -1;

	pthread_mutex_lock(&ctx->lock);
	if (gen_find(ctx->gen, pattern) == NULL) {
		pthread_mutex_unlock(&ctx->lock);
		return -1;
	}
	struct pn_tls_gen *gen = gen_derive(ctx, ctx->gen, ctx->gen->def);
	struct pn_tls_gen *old = NULL;
	if (gen != NULL) {
		struct pn_tls_sni_entry *e = gen_find(gen, pattern);
		size_t i = (size_t)(e - gen->sni);
		free(e->name);
		SSL_CTX_free(e->ssl_ctx);
		memmove(e, e + 1, (gen->sni_count - i - 1) * sizeof(*e));
		gen->sni_count--;
		old = ctx->gen;
		ctx->gen = gen;
	}
	pthread_mutex_unlock(&ctx->lock);
	gen_unref(&old);
	return gen != NULL ? 0 : -1;
}

size_t pn_tls_ctx_sni_count(struct pn_tls_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	size_t n = ctx->gen->sni_count;
	pthread_mutex_unlock(&ctx->lock);
	return n;
}

/* ---- connections ----------------------------------------------------- */

struct pn_tls_conn *pn_tls_conn_new(struct pn_tls_ctx *ctx, const char *server_name,
				    const char **error_r)
{
	ERR_clear_error();
	struct pn_tls_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		*error_r = thread_errorf("out of memory");
		return NULL;
	}
	conn->is_server = ctx->is_server;
	conn->max_in = ctx->max_in;
	conn->max_out = ctx->max_out;
	pn_buf_init(&conn->held, ctx->max_out);
	conn->gen = gen_ref_current(ctx);

	conn->ssl = SSL_new(conn->gen->def);
	if (conn->ssl == NULL) {
		*error_r = thread_error("SSL_new");
		goto fail;
	}
	SSL_set_app_data(conn->ssl, conn);
	conn->rbio = BIO_new(BIO_s_mem());
	conn->wbio = BIO_new(BIO_s_mem());
	if (conn->rbio == NULL || conn->wbio == NULL) {
		BIO_free(conn->rbio);
		BIO_free(conn->wbio);
		*error_r = thread_error("BIO_new");
		goto fail;
	}
	/* An empty input BIO means "retry later", not end of stream. */
	BIO_set_mem_eof_return(conn->rbio, -1);
	SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);

	if (conn->is_server) {
		SSL_set_accept_state(conn->ssl);
		ERR_clear_error();
		return conn;
	}

	SSL_set_connect_state(conn->ssl);
	if (server_name != NULL) {
		if (is_ip_literal(server_name)) {
			/* RFC 6066 section 3: no IP literals in SNI. */
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl),
							  server_name) != 1) {
				*error_r = thread_errorf("server name \"%s\": bad IP address",
							 server_name);
				goto fail;
			}
		} else {
			if (normalize_host(server_name, conn->server_name) < 0) {
				*error_r = thread_errorf("server name \"%.*s\": not a host name",
							 PN_TLS_NAME_MAX, server_name);
				goto fail;
			}
			SSL_set_hostflags(conn->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set_tlsext_host_name(conn->ssl, conn->server_name) != 1 ||
			    SSL_set1_host(conn->ssl, conn->server_name) != 1) {
				*error_r = thread_error("server name");
				goto fail;
			}
		}
	}
	/* Queue the ClientHello. */
	int r = SSL_do_handshake(conn->ssl);
	if (r <= 0 && SSL_get_error(conn->ssl, r) != SSL_ERROR_WANT_READ) {
		*error_r = thread_error("TLS handshake");
		goto fail;
	}
	ERR_clear_error();
	return conn;
fail:
	pn_tls_conn_free(&conn);
	ERR_clear_error();
	return NULL;
}

void pn_tls_conn_free(struct pn_tls_conn **connp)
{
	struct pn_tls_conn *conn = *connp;
	*connp = NULL;
	if (conn == NULL)
		return;
	SSL_free(conn->ssl);
	gen_unref(&conn->gen);
	pn_buf_free(&conn->held);
	free(conn->peer_cn);
	free(conn);
	ERR_clear_error();
}

int pn_tls_feed(struct pn_tls_conn *conn, const void *data, size_t len,
		const char **error_r)
{
	if (conn->failed) {
		*error_r = conn->error;
		return -1;
	}
	ERR_clear_error();
	if (len > pn_tls_feed_room(conn))
		return (int)conn_fail(conn, "TLS input over its limit (peer too fast or not read)",
				      error_r);
	const uint8_t *p = data;
	while (len > 0) {
		int n = len > INT_MAX ? INT_MAX : (int)len;
		int w = BIO_write(conn->rbio, p, n);
		if (w <= 0)
			return (int)conn_fail_ssl(conn, "TLS input", error_r);
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

size_t pn_tls_feed_room(const struct pn_tls_conn *conn)
{
	size_t pending = BIO_ctrl_pending(conn->rbio);
	return pending >= conn->max_in ? 0 : conn->max_in - pending;
}

void pn_tls_feed_eof(struct pn_tls_conn *conn)
{
	BIO_set_mem_eof_return(conn->rbio, 0);
}

/* Encrypts len bytes with no output bound (callers bound len). */
static int encrypt_all(struct pn_tls_conn *conn, const uint8_t *p, size_t len,
		       const char **error_r)
{
	while (len > 0) {
		int n = len > PN_TLS_WRITE_CHUNK ? PN_TLS_WRITE_CHUNK : (int)len;
		int w = SSL_write(conn->ssl, p, n);
		if (w <= 0)
			return (int)conn_fail_ssl(conn, "TLS write", error_r);
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* After the handshake: encrypts what pn_tls_write held meanwhile. */
static int flush_held(struct pn_tls_conn *conn, const char **error_r)
{
	size_t len = pn_buf_len(&conn->held);
	if (len == 0 || !conn->hs_done)
		return 0;
	if (encrypt_all(conn, pn_buf_rptr(&conn->held), len, error_r) < 0)
		return -1;
	pn_buf_free(&conn->held);
	return 0;
}

/* Replies the peer made us queue (handshake, KeyUpdate, alerts) while the
 * owner does not send are bounded too. */
static bool out_over_hard_limit(const struct pn_tls_conn *conn)
{
	return BIO_ctrl_pending(conn->wbio) > 2 * conn->max_out;
}

ssize_t pn_tls_read(struct pn_tls_conn *conn, void *buf, size_t size,
		    const char **error_r)
{
	if (conn->failed) {
		*error_r = conn->error;
		return PN_TLS_ERROR;
	}
	if (conn->peer_closed)
		return PN_TLS_CLOSED;
	assert(size > 0);
	ERR_clear_error();
	int n = SSL_read(conn->ssl, buf, size > INT_MAX ? INT_MAX : (int)size);
	int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(conn->ssl, n);
	switch (e) {
	case SSL_ERROR_NONE:
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		break;
	case SSL_ERROR_ZERO_RETURN:
		conn->peer_closed = true;
		ERR_clear_error();
		return PN_TLS_CLOSED;
	case SSL_ERROR_SYSCALL:
		/* Memory BIOs make no system calls: this is the end of input
		 * after pn_tls_feed_eof without close_notify. */
		if (ERR_peek_error() == 0)
			return conn_fail(conn, "TLS: peer closed without close_notify", error_r);
		return conn_fail_ssl(conn, conn->hs_done ? "TLS" : "TLS handshake", error_r);
	default:
		return conn_fail_ssl(conn, conn->hs_done ? "TLS" : "TLS handshake", error_r);
	}
	if (!conn->hs_done && SSL_is_init_finished(conn->ssl))
		conn->hs_done = true;
	if (flush_held(conn, error_r) < 0)
		return PN_TLS_ERROR;
	if (out_over_hard_limit(conn))
		return conn_fail(conn, "TLS output over its limit (peer does not read)", error_r);
	ERR_clear_error();
	return n > 0 ? n : PN_TLS_AGAIN;
}

ssize_t pn_tls_write(struct pn_tls_conn *conn, const void *data, size_t len,
		     const char **error_r)
{
	if (conn->failed) {
		*error_r = conn->error;
		return -1;
	}
	if (conn->shut) {
		*error_r = "TLS write after shutdown";
		return -1;
	}
	ERR_clear_error();
	if (!conn->hs_done) {
		size_t n = len < pn_buf_room(&conn->held) ? len : pn_buf_room(&conn->held);
		if (n > 0 && pn_buf_append(&conn->held, data, n) < 0)
			return conn_fail(conn, "out of memory", error_r);
		return (ssize_t)n;
	}
	if (flush_held(conn, error_r) < 0)
		return -1;
	const uint8_t *p = data;
	size_t done = 0;
	while (done < len) {
		size_t pending = BIO_ctrl_pending(conn->wbio);
		if (pending >= conn->max_out)
			break;
		/* Whole records even near the bound: it may be passed by one. */
		size_t n = len - done;
		if (n > PN_TLS_WRITE_CHUNK)
			n = PN_TLS_WRITE_CHUNK;
		int w = SSL_write(conn->ssl, p + done, (int)n);
		if (w <= 0) {
			int e = SSL_get_error(conn->ssl, w);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				break;
			return conn_fail_ssl(conn, "TLS write", error_r);
		}
		done += (size_t)w;
	}
	ERR_clear_error();
	return (ssize_t)done;
}

size_t pn_tls_pending_out(const struct pn_tls_conn *conn)
{
	return BIO_ctrl_pending(conn->wbio);
}

size_t pn_tls_take_out(struct pn_tls_conn *conn, void *buf, size_t size)
{
	if (size == 0 || BIO_ctrl_pending(conn->wbio) == 0)
		return 0;
	int n = BIO_read(conn->wbio, buf, size > INT_MAX ? INT_MAX : (int)size);
	ERR_clear_error();
	return n > 0 ? (size_t)n : 0;
}

int pn_tls_shutdown(struct pn_tls_conn *conn, const char **error_r)
{
	if (conn->failed) {
		*error_r = conn->error;
		return -1;
	}
	if (conn->shut)
		return 0;
	conn->shut = true;
	ERR_clear_error();
	if (!conn->hs_done) {
		pn_buf_free(&conn->held);
		return 0;
	}
	if (flush_held(conn, error_r) < 0)
		return -1;
	/* 0: close_notify queued, the peer's not seen yet; 1: both done. */
	if (SSL_shutdown(conn->ssl) < 0)
		return (int)conn_fail_ssl(conn, "TLS shutdown", error_r);
	ERR_clear_error();
	return 0;
}

bool pn_tls_handshake_done(const struct pn_tls_conn *conn)
{
	return conn->hs_done;
}

const char *pn_tls_protocol(const struct pn_tls_conn *conn)
{
	return pn_tls_handshake_done(conn) ? SSL_get_version(conn->ssl) : NULL;
}

const char *pn_tls_cipher(const struct pn_tls_conn *conn)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(conn->ssl);
	return pn_tls_handshake_done(conn) && c != NULL ? SSL_CIPHER_get_name(c) : NULL;
}

int pn_tls_cipher_bits(const struct pn_tls_conn *conn)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(conn->ssl);
	return pn_tls_handshake_done(conn) && c != NULL ? SSL_CIPHER_get_bits(c, NULL) : 0;
}

const char *pn_tls_server_name(const struct pn_tls_conn *conn)
{
	return conn->server_name[0] != '\0' ? conn->server_name : NULL;
}

const char *pn_tls_peer_cn(struct pn_tls_conn *conn)
{
	if (conn->cn_done)
		return conn->peer_cn;
	X509 *cert = SSL_get0_peer_certificate(conn->ssl);
	if (cert == NULL)
		return NULL; /* not cached: the handshake may still bring one */
	conn->cn_done = true;
	const X509_NAME *subject = X509_get_subject_name(cert);
	/* The last CN is the most specific one. */
	int idx = -1, i;
	while ((i = X509_NAME_get_index_by_NID(subject, NID_commonName, idx)) >= 0)
		idx = i;
	if (idx < 0)
		return NULL;
	const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, data);
	if (len > 0 && len <= PN_TLS_CN_MAX && memchr(utf8, '\0', (size_t)len) == NULL) {
		conn->peer_cn = malloc((size_t)len + 1);
		if (conn->peer_cn != NULL) {
			memcpy(conn->peer_cn, utf8, (size_t)len);
			conn->peer_cn[len] = '\0';
		}
	}
	OPENSSL_free(utf8);
	ERR_clear_error();
	return conn->peer_cn;
}

bool pn_tls_peer_has_cert(const struct pn_tls_conn *conn)
{
	return SSL_get0_peer_certificate(conn->ssl) != NULL;
}

bool pn_tls_peer_verified(const struct pn_tls_conn *conn)
{
	return pn_tls_handshake_done(conn) && pn_tls_peer_has_cert(conn) &&
		SSL_get_verify_result(conn->ssl) == X509_V_OK;
}

const char *pn_tls_alpn(struct pn_tls_conn *conn)
{
	const unsigned char *p = NULL;
	unsigned int len = 0;
	SSL_get0_alpn_selected(conn->ssl, &p, &len);
	if (p == NULL || len == 0)
		return NULL;
	memcpy(conn->alpn, p, len);
	conn->alpn[len] = '\0';
	return strlen(conn->alpn) == len ? conn->alpn : NULL;
}

bool pn_tls_session_reused(const struct pn_tls_conn *conn)
{
	return SSL_session_reused(conn->ssl) != 0;
}
