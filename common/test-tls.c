/* Unit tests for postern/tls.h: a server and a client conn (or a raw OpenSSL
 * peer) talk through memory by shuttling bytes; certificates are throwaway EC
 * P-256 self-signed ones made in a temporary directory. */
#include "postern/tls.h"
#include "postern/testing.h"

#include "tls-testcert.h"

#include <pthread.h>
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static char dir[PN_TESTCERT_PATH_MAX];
static struct pn_testcert c_default, c_reloaded, c_tenant, c_tenant2, c_wild, c_client;
static bool fixture_ok;

static void fixture_cleanup(void)
{
	const struct pn_testcert *all[] = { &c_default, &c_reloaded, &c_tenant,
					    &c_tenant2, &c_wild, &c_client };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		pn_testcert_remove(all[i]);
	rmdir(dir);
}

/* Makes the certificates once; every test starts with it. */
static bool fixture(void)
{
	static bool done;
	if (done)
		return fixture_ok;
	done = true;
	if (pn_testcert_dir(dir) < 0)
		return false;
	atexit(fixture_cleanup);
	fixture_ok =
		pn_testcert_make(dir, "default", "default.test", "DNS:default.test", &c_default) == 0 &&
		pn_testcert_make(dir, "reloaded", "reloaded.test", "DNS:reloaded.test", &c_reloaded) == 0 &&
		pn_testcert_make(dir, "tenant", "mail.tenant.test", "DNS:mail.tenant.test", &c_tenant) == 0 &&
		pn_testcert_make(dir, "tenant2", "mail2.tenant.test", "DNS:mail.tenant.test", &c_tenant2) == 0 &&
		pn_testcert_make(dir, "wild", "*.wild.test", "DNS:*.wild.test", &c_wild) == 0 &&
		pn_testcert_make(dir, "client", "client.test", NULL, &c_client) == 0;
	if (!fixture_ok)
		fprintf(stderr, "cannot make test certificates in %s\n", dir);
	return fixture_ok;
}

static struct pn_tls_ctx *server_ctx(const struct pn_tls_settings *extra)
{
	struct pn_tls_settings set = { 0 };
	const char *error = NULL;
	if (extra != NULL)
		set = *extra;
	if (set.cert_file == NULL) {
		set.cert_file = c_default.cert;
		set.key_file = c_default.key;
	}
	struct pn_tls_ctx *ctx = pn_tls_ctx_new_server(&set, &error);
	if (ctx == NULL)
		fprintf(stderr, "server ctx: %s\n", error);
	return ctx;
}

static struct pn_tls_ctx *client_ctx(const struct pn_tls_settings *extra)
{
	struct pn_tls_settings set = { 0 };
	const char *error = NULL;
	if (extra != NULL)
		set = *extra;
	struct pn_tls_ctx *ctx = pn_tls_ctx_new_client(&set, &error);
	if (ctx == NULL)
		fprintf(stderr, "client ctx: %s\n", error);
	return ctx;
}

static struct pn_tls_conn *conn_new(struct pn_tls_ctx *ctx, const char *name)
{
	const char *error = NULL;
	struct pn_tls_conn *c = pn_tls_conn_new(ctx, name, &error);
	if (c == NULL)
		fprintf(stderr, "conn: %s\n", error);
	return c;
}

/* Growing byte sink for received plaintext. */
struct sink {
	uint8_t *data;
	size_t len, cap;
};

static void sink_add(struct sink *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->data = realloc(s->data, s->cap);
		if (s->data == NULL)
			abort();
	}
	memcpy(s->data + s->len, p, n);
	s->len += n;
}

/* Moves pending ciphertext from -> to, as much as to accepts (an owner
 * stops receiving when the feed room runs out). Returns bytes moved or -1. */
static long move(struct pn_tls_conn *from, struct pn_tls_conn *to)
{
	uint8_t b[8192];
	size_t n, room;
	long total = 0;
	const char *error = NULL;
	while ((room = pn_tls_feed_room(to)) > 0 &&
	       (n = pn_tls_take_out(from, b, room < sizeof(b) ? room : sizeof(b))) > 0) {
		if (pn_tls_feed(to, b, n, &error) < 0) {
			fprintf(stderr, "feed: %s\n", error);
			return -1;
		}
		total += (long)n;
	}
	return total;
}

/* Reads plaintext until the conn needs more; returns the last result and
 * the last error in *error_r. */
static ssize_t drain(struct pn_tls_conn *c, struct sink *s, const char **error_r)
{
	uint8_t b[4096];
	ssize_t r;
	const char *error = NULL;
	while ((r = pn_tls_read(c, b, sizeof(b), &error)) > 0) {
		if (s != NULL)
			sink_add(s, b, (size_t)r);
	}
	if (error_r != NULL)
		*error_r = error;
	return r;
}

/* Shuttles until both handshakes are done and nothing is left to send.
 * Returns 0, or -1 with the failing side's error in *error_r. */
static int handshake(struct pn_tls_conn *c, struct pn_tls_conn *s, const char **error_r)
{
	const char *error = NULL;
	for (int i = 0; i < 20; i++) {
		if (move(c, s) < 0 || drain(s, NULL, &error) < 0 ||
		    move(s, c) < 0 || drain(c, NULL, &error) < 0) {
			if (error_r != NULL)
				*error_r = error;
			move(s, c); /* deliver the alert */
			return -1;
		}
		if (pn_tls_handshake_done(c) && pn_tls_handshake_done(s) &&
		    pn_tls_pending_out(c) == 0 && pn_tls_pending_out(s) == 0)
			return 0;
	}
	if (error_r != NULL)
		*error_r = "handshake did not finish";
	return -1;
}

/* A connected pair on the given contexts. */
static int pair(struct pn_tls_ctx *sctx, struct pn_tls_ctx *cctx, const char *name,
		struct pn_tls_conn **s_r, struct pn_tls_conn **c_r)
{
	const char *error = NULL;
	*s_r = conn_new(sctx, NULL);
	*c_r = conn_new(cctx, name);
	if (*s_r == NULL || *c_r == NULL)
		return -1;
	if (handshake(*c_r, *s_r, &error) < 0) {
		fprintf(stderr, "handshake: %s\n", error);
		return -1;
	}
	return 0;
}

/* Sends msg from -> to and checks it arrives whole. */
static bool roundtrip(struct pn_tls_conn *from, struct pn_tls_conn *to, const char *msg)
{
	const char *error = NULL;
	struct sink got = { 0 };
	size_t len = strlen(msg);
	bool ok = pn_tls_write(from, msg, len, &error) == (ssize_t)len &&
		move(from, to) > 0 && drain(to, &got, &error) == PN_TLS_AGAIN &&
		got.len == len && memcmp(got.data, msg, len) == 0;
	free(got.data);
	return ok;
}

/* Fails the calling test when the certificates could not be made. */
static bool fixture_ready(void)
{
	bool ok = fixture();
	CHECK(ok);
	return ok;
}

/* ---- raw OpenSSL peer (other protocol versions) ---------------------- */

struct raw {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *in, *out;
};

static int raw_client(struct raw *r, int min_version, int max_version)
{
	r->ctx = SSL_CTX_new(TLS_client_method());
	if (r->ctx == NULL)
		return -1;
	SSL_CTX_set_security_level(r->ctx, 0);
	SSL_CTX_set_min_proto_version(r->ctx, min_version);
	SSL_CTX_set_max_proto_version(r->ctx, max_version);
	if (max_version < TLS1_2_VERSION)
		SSL_CTX_set_cipher_list(r->ctx, "DEFAULT:@SECLEVEL=0");
	r->ssl = SSL_new(r->ctx);
	r->in = BIO_new(BIO_s_mem());
	r->out = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(r->in, -1);
	SSL_set_bio(r->ssl, r->in, r->out);
	SSL_set_connect_state(r->ssl);
	return 0;
}

static void raw_free(struct raw *r)
{
	SSL_free(r->ssl);
	SSL_CTX_free(r->ctx);
	ERR_clear_error();
}

/* One round: raw handshake step, raw -> conn, conn reads, conn -> raw.
 * Returns the raw side's SSL_do_handshake result. */
static int raw_step(struct raw *r, struct pn_tls_conn *s, ssize_t *server_r,
		    const char **error_r)
{
	uint8_t b[8192];
	int n;
	size_t m;
	int hs = SSL_do_handshake(r->ssl);
	while ((n = BIO_read(r->out, b, sizeof(b))) > 0) {
		if (pn_tls_feed(s, b, (size_t)n, error_r) < 0)
			break;
	}
	*server_r = drain(s, NULL, error_r);
	while ((m = pn_tls_take_out(s, b, sizeof(b))) > 0)
		BIO_write(r->in, b, (int)m);
	return hs;
}

/* ---- tests ------------------------------------------------------------ */

PN_TEST(test_handshake_and_info)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s = NULL, *c = NULL;
	CHECK(sctx != NULL && cctx != NULL);
	s = conn_new(sctx, NULL);
	c = conn_new(cctx, "default.test");
	CHECK(s != NULL && c != NULL);
	if (s == NULL || c == NULL)
		goto out;
	/* The ClientHello is queued at once; nothing is known yet. */
	CHECK(pn_tls_pending_out(c) > 0);
	CHECK_INT(pn_tls_pending_out(s), 0);
	CHECK(!pn_tls_handshake_done(s));
	CHECK(pn_tls_protocol(s) == NULL);
	CHECK(pn_tls_cipher(s) == NULL);

	CHECK_INT(handshake(c, s, NULL), 0);
	CHECK(pn_tls_handshake_done(s) && pn_tls_handshake_done(c));
	CHECK_STR(pn_tls_protocol(s), "TLSv1.3");
	CHECK_STR(pn_tls_protocol(c), "TLSv1.3");
	CHECK(pn_tls_cipher(s) != NULL && strncmp(pn_tls_cipher(s), "TLS_", 4) == 0);
	CHECK_STR(pn_tls_cipher(c), pn_tls_cipher(s));
	CHECK(pn_tls_cipher_bits(s) >= 128);
	CHECK_STR(pn_tls_server_name(s), "default.test");
	CHECK_STR(pn_tls_server_name(c), "default.test");
	CHECK_STR(pn_tls_peer_cn(c), "default.test");
	CHECK(pn_tls_peer_has_cert(c));
	CHECK(!pn_tls_peer_verified(c)); /* verify off, not in the system store */
	CHECK(pn_tls_peer_cn(s) == NULL);
	CHECK(!pn_tls_peer_has_cert(s));
	CHECK(pn_tls_alpn(s) == NULL);
	CHECK(!pn_tls_session_reused(s));
	CHECK(roundtrip(c, s, "a001 CAPABILITY\r\n"));
	CHECK(roundtrip(s, c, "* CAPABILITY IMAP4rev1\r\n"));
out:
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	CHECK(s == NULL && c == NULL);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
	CHECK(sctx == NULL);
}

/* 1 MiB each way at once, with writes limited by max_out. */
PN_TEST(test_bulk_both_ways)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s = NULL, *c = NULL;
	const size_t total = 1024 * 1024;
	uint8_t *up = malloc(total), *down = malloc(total);
	struct sink got_s = { 0 }, got_c = { 0 };
	const char *error = NULL;

	CHECK(pair(sctx, cctx, "default.test", &s, &c) == 0);
	if (s == NULL || c == NULL || up == NULL || down == NULL)
		goto out;
	for (size_t i = 0; i < total; i++) {
		up[i] = (uint8_t)(i * 7 + 1);
		down[i] = (uint8_t)(i * 13 + 5);
	}
	size_t off_up = 0, off_down = 0;
	bool limited = false;
	for (int round = 0; round < 1000 && (got_s.len < total || got_c.len < total); round++) {
		ssize_t w = pn_tls_write(c, up + off_up, total - off_up, &error);
		CHECK(w >= 0);
		off_up += w > 0 ? (size_t)w : 0;
		w = pn_tls_write(s, down + off_down, total - off_down, &error);
		CHECK(w >= 0);
		off_down += w > 0 ? (size_t)w : 0;
		if (off_down < total)
			limited = true;
		/* Output never exceeds the bound by more than one record. */
		CHECK(pn_tls_pending_out(s) <= PN_TLS_DEFAULT_MAX_OUT + 17000);
		if (move(c, s) < 0 || move(s, c) < 0)
			break;
		CHECK_INT(drain(s, &got_s, NULL), PN_TLS_AGAIN);
		CHECK_INT(drain(c, &got_c, NULL), PN_TLS_AGAIN);
	}
	CHECK(limited);
	CHECK_MEM(got_s.data, got_s.len, up, total);
	CHECK_MEM(got_c.data, got_c.len, down, total);
out:
	free(up);
	free(down);
	free(got_s.data);
	free(got_c.data);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

/* Ciphertext fed one byte at a time: "need more" and no output until the
 * last byte of each flight or record. */
PN_TEST(test_byte_at_a_time)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s = conn_new(sctx, NULL), *c = conn_new(cctx, "default.test");
	const char *error = NULL;
	uint8_t flight[8192], b[256];
	size_t len;
	if (s == NULL || c == NULL) {
		CHECK(false);
		goto out;
	}

	/* ClientHello -> server, byte by byte. */
	len = pn_tls_take_out(c, flight, sizeof(flight));
	CHECK(len > 100 && pn_tls_pending_out(c) == 0);
	for (size_t i = 0; i < len; i++) {
		CHECK_INT(pn_tls_feed(s, flight + i, 1, &error), 0);
		CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_AGAIN);
		if (i + 1 < len)
			CHECK_INT(pn_tls_pending_out(s), 0);
	}
	CHECK(pn_tls_pending_out(s) > 0); /* ServerHello ... Finished */
	CHECK(!pn_tls_handshake_done(s));

	/* Server flight -> client, byte by byte. */
	len = pn_tls_take_out(s, flight, sizeof(flight));
	CHECK(len > 0 && pn_tls_pending_out(s) == 0);
	for (size_t i = 0; i < len; i++) {
		CHECK_INT(pn_tls_feed(c, flight + i, 1, &error), 0);
		CHECK_INT(pn_tls_read(c, b, sizeof(b), &error), PN_TLS_AGAIN);
		CHECK(pn_tls_handshake_done(c) == (i + 1 == len));
	}

	/* Client Finished -> server, byte by byte. */
	len = pn_tls_take_out(c, flight, sizeof(flight));
	CHECK(len > 0);
	for (size_t i = 0; i < len; i++) {
		CHECK_INT(pn_tls_feed(s, flight + i, 1, &error), 0);
		CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_AGAIN);
		CHECK(pn_tls_handshake_done(s) == (i + 1 == len));
	}
	CHECK(move(s, c) > 0); /* session tickets */
	CHECK_INT(drain(c, NULL, NULL), PN_TLS_AGAIN);

	/* One application record, byte by byte. */
	CHECK_INT(pn_tls_write(c, "EHLO x\r\n", 8, &error), 8);
	len = pn_tls_take_out(c, flight, sizeof(flight));
	for (size_t i = 0; i < len; i++) {
		CHECK_INT(pn_tls_feed(s, flight + i, 1, &error), 0);
		ssize_t r = pn_tls_read(s, b, sizeof(b), &error);
		if (i + 1 < len) {
			CHECK_INT(r, PN_TLS_AGAIN);
		} else {
			CHECK_INT(r, 8);
			CHECK_MEM(b, 8, "EHLO x\r\n", 8);
		}
	}
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_AGAIN);
out:
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

/* A client that speaks at most TLS 1.1 is refused with an alert. */
PN_TEST(test_tls11_refused)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL);
	struct pn_tls_conn *s = conn_new(sctx, NULL);
	struct raw r = { 0 };
	const char *error = NULL;
	ssize_t sr = 0;
	CHECK(raw_client(&r, TLS1_1_VERSION, TLS1_1_VERSION) == 0);
	int hs = raw_step(&r, s, &sr, &error);
	CHECK(hs <= 0);
	CHECK_INT(sr, PN_TLS_ERROR);
	CHECK(error != NULL && strstr(error, "unsupported protocol") != NULL);
	if (error != NULL)
		printf("tls1.1 client: %s\n", error);
	CHECK(!pn_tls_handshake_done(s));
	/* The raw client got the protocol_version alert. */
	hs = SSL_do_handshake(r.ssl);
	CHECK(hs <= 0);
	unsigned long e = ERR_peek_error();
	CHECK(e != 0 && ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
	/* Sticky: the conn keeps failing with the same message. */
	const char *again = NULL;
	CHECK_INT(pn_tls_feed(s, "x", 1, &again), -1);
	CHECK(again == error);
	raw_free(&r);
	pn_tls_conn_free(&s);
	pn_tls_ctx_free(&sctx);
}

/* TLS 1.2 still works, with the configured cipher list. */
PN_TEST(test_tls12_and_cipher_list)
{
	if (!fixture_ready())
		return;
	struct pn_tls_settings set = { .ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305" };
	struct pn_tls_ctx *sctx = server_ctx(&set);
	struct pn_tls_conn *s = conn_new(sctx, NULL);
	struct raw r = { 0 };
	const char *error = NULL;
	ssize_t sr = 0;
	int hs = 0;
	CHECK(raw_client(&r, TLS1_2_VERSION, TLS1_2_VERSION) == 0);
	for (int i = 0; i < 5 && hs != 1; i++)
		hs = raw_step(&r, s, &sr, &error);
	CHECK_INT(hs, 1);
	raw_step(&r, s, &sr, &error);
	CHECK(pn_tls_handshake_done(s));
	CHECK_STR(pn_tls_protocol(s), "TLSv1.2");
	CHECK_STR(pn_tls_cipher(s), "ECDHE-ECDSA-CHACHA20-POLY1305");
	CHECK_INT(pn_tls_cipher_bits(s), 256);
	raw_free(&r);
	pn_tls_conn_free(&s);
	pn_tls_ctx_free(&sctx);

	/* A cipher list that selects nothing is a configuration error. */
	struct pn_tls_settings bad = { .cert_file = c_default.cert, .key_file = c_default.key,
				       .ciphers = "NOSUCHCIPHER" };
	CHECK(pn_tls_ctx_new_server(&bad, &error) == NULL);
	CHECK(error != NULL && strstr(error, "NOSUCHCIPHER") != NULL);
	CHECK(ERR_peek_error() == 0);
}

/* Full handshake with a raw client of the given version; returns the
 * session (with its ticket) and whether the server resumed. */
static SSL_SESSION *raw_session(struct pn_tls_ctx *sctx, int version, SSL_SESSION *resume,
				bool *reused_r)
{
	struct pn_tls_conn *s = conn_new(sctx, NULL);
	struct raw r = { 0 };
	const char *error = NULL;
	ssize_t sr = 0;
	int hs = 0;
	uint8_t b[16];
	SSL_SESSION *sess = NULL;
	*reused_r = false;
	if (s == NULL || raw_client(&r, version, version) < 0)
		goto out;
	if (resume != NULL)
		SSL_set_session(r.ssl, resume);
	for (int i = 0; i < 5 && hs != 1; i++)
		hs = raw_step(&r, s, &sr, &error);
	raw_step(&r, s, &sr, &error);
	CHECK_INT(hs, 1);
	CHECK(pn_tls_handshake_done(s));
	(void)SSL_read(r.ssl, b, sizeof(b)); /* takes in TLS 1.3 tickets */
	*reused_r = pn_tls_session_reused(s);
	sess = SSL_get1_session(r.ssl);
	/* OpenSSL marks a session freed without close_notify unresumable. */
	SSL_shutdown(r.ssl);
out:
	raw_free(&r);
	pn_tls_conn_free(&s);
	return sess;
}

/* Stateless session tickets resume, in TLS 1.3 and 1.2, until a reload
 * replaces the ticket keys with the certificates. */
PN_TEST(test_session_tickets)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL);
	const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
	const char *error = NULL;
	for (size_t i = 0; i < 2; i++) {
		bool reused = true;
		SSL_SESSION *first = raw_session(sctx, versions[i], NULL, &reused);
		CHECK(first != NULL && !reused);
		SSL_SESSION *second = raw_session(sctx, versions[i], first, &reused);
		CHECK(reused);
		SSL_SESSION_free(second);
		CHECK_INT(pn_tls_ctx_reload(sctx, c_default.cert, c_default.key, &error), 0);
		second = raw_session(sctx, versions[i], first, &reused);
		CHECK(second != NULL && !reused);
		SSL_SESSION_free(second);
		SSL_SESSION_free(first);
	}
	pn_tls_ctx_free(&sctx);
}

PN_TEST(test_garbage)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL);
	const char *error = NULL;
	uint8_t b[256];

	/* An HTTP request on the TLS port. */
	struct pn_tls_conn *s = conn_new(sctx, NULL);
	const char *http = "GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n";
	CHECK_INT(pn_tls_feed(s, http, strlen(http), &error), 0);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
	CHECK(error != NULL && strstr(error, "http request") != NULL);
	CHECK(ERR_peek_error() == 0);
	pn_tls_conn_free(&s);

	/* Plaintext IMAP (a client that forgot STARTTLS). */
	s = conn_new(sctx, NULL);
	CHECK_INT(pn_tls_feed(s, "a001 LOGIN u p\r\n", 16, &error), 0);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
	pn_tls_conn_free(&s);

	/* Random bytes of many lengths: an error or "need more", never more. */
	uint32_t x = 2463534242u;
	uint8_t rnd[4096];
	for (int round = 0; round < 64; round++) {
		size_t n = 1 + (size_t)round * 61 % sizeof(rnd);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			rnd[i] = (uint8_t)x;
		}
		s = conn_new(sctx, NULL);
		CHECK_INT(pn_tls_feed(s, rnd, n, &error), 0);
		ssize_t r = pn_tls_read(s, b, sizeof(b), &error);
		CHECK(r == PN_TLS_ERROR || r == PN_TLS_AGAIN);
		if (n > 1000)
			CHECK_INT(r, PN_TLS_ERROR);
		pn_tls_conn_free(&s);
	}

	/* A record header announcing 64 KiB: refused before the body. */
	s = conn_new(sctx, NULL);
	CHECK_INT(pn_tls_feed(s, "\x16\x03\x01\xff\xff", 5, &error), 0);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
	printf("huge record: %s\n", error);
	pn_tls_conn_free(&s);

	/* Endless input that nobody reads: feed fails at the bound. */
	s = conn_new(sctx, NULL);
	size_t fed = 0;
	memset(rnd, 'A', sizeof(rnd));
	while (fed < 10 * PN_TLS_DEFAULT_MAX_IN && pn_tls_feed(s, rnd, sizeof(rnd), &error) == 0)
		fed += sizeof(rnd);
	CHECK(fed <= PN_TLS_DEFAULT_MAX_IN);
	CHECK(strstr(error, "limit") != NULL);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
	pn_tls_conn_free(&s);
	pn_tls_ctx_free(&sctx);
}

/* Bad records after the handshake: an oversized application record. */
PN_TEST(test_bad_record_after_handshake)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s = NULL, *c = NULL;
	const char *error = NULL;
	uint8_t b[64];
	CHECK(pair(sctx, cctx, NULL, &s, &c) == 0);
	if (s != NULL && c != NULL) {
		/* 18 KiB is over TLS 1.3's 2^14 + 256 ciphertext limit. */
		CHECK_INT(pn_tls_feed(s, "\x17\x03\x03\x48\x00", 5, &error), 0);
		CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
		CHECK(pn_tls_pending_out(s) > 0); /* the alert */
		CHECK_INT(pn_tls_write(s, "x", 1, &error), -1);
		/* The client learns why. */
		move(s, c);
		CHECK_INT(pn_tls_read(c, b, sizeof(b), &error), PN_TLS_ERROR);
		CHECK(error != NULL && strstr(error, "alert") != NULL);
		printf("client sees: %s\n", error);
	}
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

/* A peer that keeps requesting KeyUpdates while the owner never sends what
 * the server queues in reply: the reply queue is bounded, an error follows. */
PN_TEST(test_reply_flood_bounded)
{
	if (!fixture_ready())
		return;
	struct pn_tls_settings small = { .max_out = PN_TLS_MIN_BUFFER };
	struct pn_tls_ctx *sctx = server_ctx(&small);
	struct pn_tls_conn *s = conn_new(sctx, NULL);
	struct raw r = { 0 };
	const char *error = NULL;
	ssize_t sr = 0;
	int hs = 0;
	uint8_t b[16384];
	CHECK(raw_client(&r, TLS1_3_VERSION, TLS1_3_VERSION) == 0);
	for (int i = 0; i < 5 && hs != 1; i++)
		hs = raw_step(&r, s, &sr, &error);
	CHECK_INT(hs, 1);
	raw_step(&r, s, &sr, &error);
	CHECK(pn_tls_handshake_done(s));
	while (pn_tls_take_out(s, b, sizeof(b)) > 0)
		;
	sr = PN_TLS_AGAIN;
	int rounds = 0;
	for (; rounds < 20000 && sr == PN_TLS_AGAIN; rounds++) {
		if (SSL_key_update(r.ssl, SSL_KEY_UPDATE_REQUESTED) != 1 ||
		    SSL_write(r.ssl, "x", 1) != 1)
			break;
		int n;
		while ((n = BIO_read(r.out, b, sizeof(b))) > 0)
			CHECK_INT(pn_tls_feed(s, b, (size_t)n, &error), 0);
		sr = drain(s, NULL, &error);
		CHECK(pn_tls_pending_out(s) <= 2 * PN_TLS_MIN_BUFFER + 64);
	}
	CHECK_INT(sr, PN_TLS_ERROR);
	CHECK(error != NULL && strstr(error, "limit") != NULL);
	printf("flood: %s after %d key updates\n", error, rounds);
	raw_free(&r);
	pn_tls_conn_free(&s);
	pn_tls_ctx_free(&sctx);
}

/* CN the client sees for a given SNI name. */
static char *cn_for(struct pn_tls_ctx *sctx, struct pn_tls_ctx *cctx, const char *name,
		    char *srv_name, size_t size)
{
	static char cn[128];
	struct pn_tls_conn *s = NULL, *c = NULL;
	cn[0] = '\0';
	if (srv_name != NULL)
		srv_name[0] = '\0';
	if (pair(sctx, cctx, name, &s, &c) == 0) {
		const char *p = pn_tls_peer_cn(c);
		snprintf(cn, sizeof(cn), "%s", p != NULL ? p : "(none)");
		if (srv_name != NULL && pn_tls_server_name(s) != NULL)
			snprintf(srv_name, size, "%s", pn_tls_server_name(s));
	}
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	return cn;
}

PN_TEST(test_sni)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	const char *error = NULL;
	char asked[256];
	CHECK_INT(pn_tls_ctx_add_sni(sctx, "mail.tenant.test", c_tenant.cert, c_tenant.key, &error), 0);
	CHECK_INT(pn_tls_ctx_add_sni(sctx, "*.wild.test", c_wild.cert, c_wild.key, &error), 0);
	CHECK_INT(pn_tls_ctx_sni_count(sctx), 2);

	CHECK_STR(cn_for(sctx, cctx, "mail.tenant.test", asked, sizeof(asked)), "mail.tenant.test");
	CHECK_STR(asked, "mail.tenant.test");
	CHECK_STR(cn_for(sctx, cctx, "MAIL.Tenant.TEST", asked, sizeof(asked)), "mail.tenant.test");
	CHECK_STR(asked, "mail.tenant.test");
	CHECK_STR(cn_for(sctx, cctx, "imap.wild.test", asked, sizeof(asked)), "*.wild.test");
	CHECK_STR(asked, "imap.wild.test");
	/* One level only, and not the bare parent. */
	CHECK_STR(cn_for(sctx, cctx, "a.b.wild.test", NULL, 0), "default.test");
	CHECK_STR(cn_for(sctx, cctx, "wild.test", NULL, 0), "default.test");
	CHECK_STR(cn_for(sctx, cctx, "unknown.test", asked, sizeof(asked)), "default.test");
	CHECK_STR(asked, "unknown.test");
	CHECK_STR(cn_for(sctx, cctx, NULL, asked, sizeof(asked)), "default.test");
	CHECK_STR(asked, "");

	/* Replacing a tenant's certificate; existing names stay. */
	CHECK_INT(pn_tls_ctx_add_sni(sctx, "Mail.Tenant.Test", c_tenant2.cert, c_tenant2.key, &error), 0);
	CHECK_INT(pn_tls_ctx_sni_count(sctx), 2);
	CHECK_STR(cn_for(sctx, cctx, "mail.tenant.test", NULL, 0), "mail2.tenant.test");
	CHECK_INT(pn_tls_ctx_remove_sni(sctx, "mail.tenant.test"), 0);
	CHECK_INT(pn_tls_ctx_remove_sni(sctx, "mail.tenant.test"), -1);
	CHECK_STR(cn_for(sctx, cctx, "mail.tenant.test", NULL, 0), "default.test");
	CHECK_STR(cn_for(sctx, cctx, "x.wild.test", NULL, 0), "*.wild.test");

	/* Bad names and files are refused. */
	const char *bad[] = { "", "a..b", "*.*.test", "foo bar", "*", "a.b.*", "mail.test/x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		CHECK_INT(pn_tls_ctx_add_sni(sctx, bad[i], c_tenant.cert, c_tenant.key, &error), -1);
		CHECK(error != NULL);
	}
	CHECK_INT(pn_tls_ctx_add_sni(sctx, "x.test", "/nonexistent.crt", c_tenant.key, &error), -1);
	CHECK(strstr(error, "/nonexistent.crt") != NULL);
	CHECK_INT(pn_tls_ctx_add_sni(sctx, "x.test", c_tenant.cert, c_default.key, &error), -1);
	CHECK(strstr(error, "does not match") != NULL);
	CHECK_INT(pn_tls_ctx_add_sni(cctx, "x.test", c_tenant.cert, c_tenant.key, &error), -1);
	CHECK_INT(pn_tls_ctx_sni_count(sctx), 1);
	CHECK(ERR_peek_error() == 0);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

PN_TEST(test_reload)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s1 = NULL, *c1 = NULL, *s2 = NULL, *c2 = NULL;
	const char *error = NULL;
	CHECK_INT(pn_tls_ctx_add_sni(sctx, "mail.tenant.test", c_tenant.cert, c_tenant.key, &error), 0);
	CHECK(pair(sctx, cctx, "default.test", &s1, &c1) == 0);
	if (s1 == NULL || c1 == NULL)
		goto out;

	CHECK_INT(pn_tls_ctx_reload(sctx, c_reloaded.cert, c_reloaded.key, &error), 0);
	/* The running connection goes on with its old certificate. */
	CHECK(roundtrip(c1, s1, "a002 NOOP\r\n"));
	CHECK(roundtrip(s1, c1, "a002 OK NOOP\r\n"));
	CHECK_STR(pn_tls_peer_cn(c1), "default.test");
	/* New connections get the new one; SNI tenants are kept. */
	CHECK_STR(cn_for(sctx, cctx, "default.test", NULL, 0), "reloaded.test");
	CHECK_STR(cn_for(sctx, cctx, "mail.tenant.test", NULL, 0), "mail.tenant.test");

	/* A failed reload keeps what was there. */
	CHECK_INT(pn_tls_ctx_reload(sctx, c_reloaded.cert, "/nonexistent.key", &error), -1);
	CHECK(error != NULL && strstr(error, "/nonexistent.key") != NULL);
	CHECK_STR(cn_for(sctx, cctx, "default.test", NULL, 0), "reloaded.test");

	/* A conn outlives its context. */
	CHECK(pair(sctx, cctx, "default.test", &s2, &c2) == 0);
	pn_tls_ctx_free(&sctx);
	CHECK(roundtrip(c1, s1, "a003 LOGOUT\r\n"));
	CHECK(roundtrip(s2, c2, "* BYE\r\n"));
out:
	pn_tls_conn_free(&s1);
	pn_tls_conn_free(&c1);
	pn_tls_conn_free(&s2);
	pn_tls_conn_free(&c2);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

PN_TEST(test_close_notify)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s = NULL, *c = NULL;
	const char *error = NULL;
	struct sink got = { 0 };
	uint8_t b[64];
	CHECK(pair(sctx, cctx, NULL, &s, &c) == 0);
	if (s == NULL || c == NULL)
		goto out;
	/* Data written before close_notify arrives first. */
	CHECK_INT(pn_tls_write(c, "QUIT\r\n", 6, &error), 6);
	CHECK_INT(pn_tls_shutdown(c, &error), 0);
	CHECK_INT(pn_tls_write(c, "more", 4, &error), -1);
	CHECK(move(c, s) > 0);
	CHECK_INT(drain(s, &got, &error), PN_TLS_CLOSED);
	CHECK_MEM(got.data, got.len, "QUIT\r\n", 6);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_CLOSED);
	/* The server may still answer, then closes too. */
	CHECK_INT(pn_tls_write(s, "221 bye\r\n", 9, &error), 9);
	CHECK_INT(pn_tls_shutdown(s, &error), 0);
	CHECK(move(s, c) > 0);
	free(got.data);
	got = (struct sink){ 0 };
	CHECK_INT(drain(c, &got, &error), PN_TLS_CLOSED);
	CHECK_MEM(got.data, got.len, "221 bye\r\n", 9);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	/* TCP end without close_notify is an error (possible truncation). */
	CHECK(pair(sctx, cctx, NULL, &s, &c) == 0);
	if (s == NULL || c == NULL)
		goto out;
	CHECK(roundtrip(c, s, "DATA\r\n"));
	pn_tls_feed_eof(s);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
	CHECK(error != NULL && strstr(error, "eof") != NULL);
	printf("eof: %s\n", error);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	/* Shutdown before the handshake: nothing to close. */
	s = conn_new(sctx, NULL);
	CHECK_INT(pn_tls_write(s, "* OK", 4, &error), 4);
	CHECK_INT(pn_tls_shutdown(s, &error), 0);
	CHECK_INT(pn_tls_pending_out(s), 0);
out:
	free(got.data);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

/* A server greeting written right after accept is held until the
 * handshake completes. */
PN_TEST(test_write_before_handshake)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *s = conn_new(sctx, NULL), *c = conn_new(cctx, NULL);
	const char *error = NULL;
	struct sink got = { 0 };
	const char *greeting = "* OK [CAPABILITY IMAP4rev1] Postern ready\r\n";
	CHECK_INT(pn_tls_write(s, greeting, strlen(greeting), &error), (ssize_t)strlen(greeting));
	CHECK_INT(pn_tls_pending_out(s), 0);
	/* Held plaintext is bounded. */
	static uint8_t big[PN_TLS_DEFAULT_MAX_OUT + 100];
	ssize_t w = pn_tls_write(c, big, sizeof(big), &error);
	CHECK(w > 0 && (size_t)w <= PN_TLS_DEFAULT_MAX_OUT);
	CHECK_INT(pn_tls_write(c, big, 1, &error), 0);

	for (int i = 0; i < 20 && got.len < strlen(greeting); i++) {
		CHECK(move(c, s) >= 0 && move(s, c) >= 0);
		CHECK(drain(s, NULL, &error) == PN_TLS_AGAIN);
		CHECK(drain(c, &got, &error) == PN_TLS_AGAIN);
	}
	CHECK_MEM(got.data, got.len, greeting, strlen(greeting));
	free(got.data);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

PN_TEST(test_client_verify)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL);
	struct pn_tls_settings trust = { .verify_peer = true, .ca_file = c_default.cert };
	struct pn_tls_settings system = { .verify_peer = true };
	struct pn_tls_ctx *ok_ctx = client_ctx(&trust), *sys_ctx = client_ctx(&system);
	struct pn_tls_conn *s = NULL, *c = NULL;
	const char *error = NULL;

	CHECK(pair(sctx, ok_ctx, "default.test", &s, &c) == 0);
	CHECK(c != NULL && pn_tls_peer_verified(c));
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	/* Right chain, wrong host name. */
	s = conn_new(sctx, NULL);
	c = conn_new(ok_ctx, "other.test");
	CHECK_INT(handshake(c, s, &error), -1);
	CHECK(error != NULL && strstr(error, "hostname mismatch") != NULL);
	printf("mismatch: %s\n", error);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	/* IP address names are checked against the certificate, not sent as SNI. */
	s = conn_new(sctx, NULL);
	c = conn_new(ok_ctx, "127.0.0.1");
	CHECK(c != NULL && pn_tls_server_name(c) == NULL);
	CHECK_INT(handshake(c, s, &error), -1);
	CHECK(error != NULL && strstr(error, "IP address mismatch") != NULL);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	/* Self-signed, not in the system store. */
	s = conn_new(sctx, NULL);
	c = conn_new(sys_ctx, "default.test");
	CHECK_INT(handshake(c, s, &error), -1);
	CHECK(error != NULL && strstr(error, "self-signed") != NULL);
	printf("untrusted: %s\n", error);
	/* The server gets the client's alert. */
	uint8_t b[16];
	CHECK(move(c, s) > 0);
	CHECK_INT(pn_tls_read(s, b, sizeof(b), &error), PN_TLS_ERROR);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	/* Invalid server names are refused up front. */
	CHECK(pn_tls_conn_new(ok_ctx, "bad name", &error) == NULL);
	CHECK(error != NULL);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&ok_ctx);
	pn_tls_ctx_free(&sys_ctx);
}

PN_TEST(test_client_cert)
{
	if (!fixture_ready())
		return;
	struct pn_tls_settings req = { .request_client_cert = true, .ca_file = c_client.cert };
	struct pn_tls_settings req_noca = { .request_client_cert = true };
	struct pn_tls_settings with_cert = { .cert_file = c_client.cert, .key_file = c_client.key };
	struct pn_tls_ctx *sctx = server_ctx(&req), *sctx2 = server_ctx(&req_noca);
	struct pn_tls_ctx *cctx = client_ctx(&with_cert), *plain = client_ctx(NULL);
	struct pn_tls_conn *s = NULL, *c = NULL;

	CHECK(pair(sctx, cctx, NULL, &s, &c) == 0);
	CHECK(s != NULL && pn_tls_peer_has_cert(s));
	CHECK(s != NULL && pn_tls_peer_verified(s));
	if (s != NULL)
		CHECK_STR(pn_tls_peer_cn(s), "client.test");
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	CHECK(pair(sctx2, cctx, NULL, &s, &c) == 0);
	CHECK(s != NULL && pn_tls_peer_has_cert(s) && !pn_tls_peer_verified(s));
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	CHECK(pair(sctx, plain, NULL, &s, &c) == 0);
	CHECK(s != NULL && !pn_tls_peer_has_cert(s) && pn_tls_peer_cn(s) == NULL);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	const char *error = NULL;
	struct pn_tls_settings half = { .cert_file = c_client.cert };
	CHECK(pn_tls_ctx_new_client(&half, &error) == NULL);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&sctx2);
	pn_tls_ctx_free(&cctx);
	pn_tls_ctx_free(&plain);
}

PN_TEST(test_alpn)
{
	if (!fixture_ready())
		return;
	struct pn_tls_settings srv = { .alpn = "imap,pop3" };
	struct pn_tls_settings pop = { .alpn = "pop3" }, both = { .alpn = "x-other,pop3,imap" };
	struct pn_tls_settings smtp = { .alpn = "smtp" };
	struct pn_tls_ctx *sctx = server_ctx(&srv), *none = client_ctx(NULL);
	struct pn_tls_ctx *cpop = client_ctx(&pop), *cboth = client_ctx(&both);
	struct pn_tls_ctx *csmtp = client_ctx(&smtp);
	struct pn_tls_conn *s = NULL, *c = NULL;
	const char *error = NULL;

	CHECK(pair(sctx, cpop, NULL, &s, &c) == 0);
	if (s != NULL && c != NULL) {
		CHECK_STR(pn_tls_alpn(s), "pop3");
		CHECK_STR(pn_tls_alpn(c), "pop3");
	}
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	/* The server's order wins. */
	CHECK(pair(sctx, cboth, NULL, &s, &c) == 0);
	if (s != NULL)
		CHECK_STR(pn_tls_alpn(s), "imap");
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	/* No ALPN offered: accepted. */
	CHECK(pair(sctx, none, NULL, &s, &c) == 0);
	CHECK(s != NULL && pn_tls_alpn(s) == NULL);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);
	/* Only a foreign protocol offered: refused (ALPACA). */
	s = conn_new(sctx, NULL);
	c = conn_new(csmtp, NULL);
	CHECK_INT(handshake(c, s, &error), -1);
	CHECK(error != NULL && strstr(error, "application protocol") != NULL);
	printf("alpn: %s\n", error);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	struct pn_tls_settings bad = { .alpn = "imap,,pop3" };
	CHECK(pn_tls_ctx_new_client(&bad, &error) == NULL);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&none);
	pn_tls_ctx_free(&cpop);
	pn_tls_ctx_free(&cboth);
	pn_tls_ctx_free(&csmtp);
}

/* One conn's failure leaves nothing in the thread's error queue and does
 * not disturb another conn; threads share a context during reloads. */
struct worker {
	struct pn_tls_ctx *sctx, *cctx;
	bool garbage;
	int ok;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 15; i++) {
		struct pn_tls_conn *s = NULL, *c = NULL;
		const char *error = NULL;
		uint8_t b[32];
		if (w->garbage) {
			s = pn_tls_conn_new(w->sctx, NULL, &error);
			if (s != NULL && pn_tls_feed(s, "GET / HTTP/1.0\r\n", 16, &error) == 0 &&
			    pn_tls_read(s, b, sizeof(b), &error) == PN_TLS_ERROR &&
			    ERR_peek_error() == 0)
				w->ok++;
		} else if (pair(w->sctx, w->cctx, NULL, &s, &c) == 0 &&
			   roundtrip(c, s, "NOOP\r\n") && ERR_peek_error() == 0) {
			w->ok++;
		}
		pn_tls_conn_free(&s);
		pn_tls_conn_free(&c);
	}
	return NULL;
}

PN_TEST(test_error_isolation_and_threads)
{
	if (!fixture_ready())
		return;
	struct pn_tls_ctx *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
	struct pn_tls_conn *bad = conn_new(sctx, NULL), *s = NULL, *c = NULL;
	const char *error = NULL, *bad_error = NULL;
	uint8_t b[32];
	CHECK_INT(pn_tls_feed(bad, "\x15\x03\x03\x00\x02\x02\x28", 7, &bad_error), 0);
	CHECK_INT(pn_tls_read(bad, b, sizeof(b), &bad_error), PN_TLS_ERROR);
	CHECK(ERR_peek_error() == 0);
	char saved[320];
	snprintf(saved, sizeof(saved), "%s", bad_error);
	CHECK(pair(sctx, cctx, NULL, &s, &c) == 0);
	CHECK(roundtrip(c, s, "ok\r\n"));
	CHECK_STR(bad_error, saved);
	pn_tls_conn_free(&bad);
	pn_tls_conn_free(&s);
	pn_tls_conn_free(&c);

	struct worker w[2] = { { sctx, cctx, false, 0 }, { sctx, cctx, true, 0 } };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK_INT(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	for (int i = 0; i < 5; i++) {
		CHECK_INT(pn_tls_ctx_reload(sctx, i % 2 ? c_default.cert : c_reloaded.cert,
					    i % 2 ? c_default.key : c_reloaded.key, &error), 0);
		CHECK_INT(pn_tls_ctx_add_sni(sctx, "t.test", c_tenant.cert, c_tenant.key, &error), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(w[0].ok, 15);
	CHECK_INT(w[1].ok, 15);
	pn_tls_ctx_free(&sctx);
	pn_tls_ctx_free(&cctx);
}

PN_TEST(test_ctx_errors)
{
	if (!fixture_ready())
		return;
	const char *error = NULL;
	struct pn_tls_settings none = { 0 };
	CHECK(pn_tls_ctx_new_server(&none, &error) == NULL);
	CHECK(error != NULL);
	struct pn_tls_settings missing = { .cert_file = "/nonexistent.pem", .key_file = c_default.key };
	CHECK(pn_tls_ctx_new_server(&missing, &error) == NULL);
	CHECK(error != NULL && strstr(error, "/nonexistent.pem") != NULL);
	printf("missing: %s\n", error);
	struct pn_tls_settings swapped = { .cert_file = c_default.key, .key_file = c_default.cert };
	CHECK(pn_tls_ctx_new_server(&swapped, &error) == NULL);
	struct pn_tls_settings mismatch = { .cert_file = c_default.cert, .key_file = c_tenant.key };
	CHECK(pn_tls_ctx_new_server(&mismatch, &error) == NULL);
	CHECK(error != NULL && strstr(error, "does not match") != NULL);
	struct pn_tls_settings badca = { .ca_file = "/nonexistent-ca.pem" };
	CHECK(pn_tls_ctx_new_client(&badca, &error) == NULL);
	CHECK(error != NULL && strstr(error, "/nonexistent-ca.pem") != NULL);
	CHECK(ERR_peek_error() == 0);
}

PN_TEST_MAIN("test-tls",
	     PN_TEST_CASE(test_handshake_and_info),
	     PN_TEST_CASE(test_bulk_both_ways),
	     PN_TEST_CASE(test_byte_at_a_time),
	     PN_TEST_CASE(test_tls11_refused),
	     PN_TEST_CASE(test_tls12_and_cipher_list),
	     PN_TEST_CASE(test_session_tickets),
	     PN_TEST_CASE(test_garbage),
	     PN_TEST_CASE(test_bad_record_after_handshake),
	     PN_TEST_CASE(test_reply_flood_bounded),
	     PN_TEST_CASE(test_sni),
	     PN_TEST_CASE(test_reload),
	     PN_TEST_CASE(test_close_notify),
	     PN_TEST_CASE(test_write_before_handshake),
	     PN_TEST_CASE(test_client_verify),
	     PN_TEST_CASE(test_client_cert),
	     PN_TEST_CASE(test_alpn),
	     PN_TEST_CASE(test_error_isolation_and_threads),
	     PN_TEST_CASE(test_ctx_errors))
