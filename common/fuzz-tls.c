/* libFuzzer target for the TLS engine: the input is ciphertext from a hostile
 * peer. The first byte picks the side (bit 7: a client conn reading a
 * "server" flight, else a server conn reading a "client" flight, with SNI
 * tenants, ALPN and client-certificate requests configured) and the chunk
 * size fed between reads (low 6 bits, 0 = all at once); the rest is fed. */
#include "postern/tls.h"

#include "tls-testcert.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct pn_tls_ctx *server_ctx, *client_ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[PN_TESTCERT_PATH_MAX];
	struct pn_testcert def, tenant;
	const char *error = NULL;

	if (pn_testcert_dir(dir) < 0 ||
	    pn_testcert_make(dir, "default", "default.test", "DNS:default.test", &def) < 0 ||
	    pn_testcert_make(dir, "tenant", "mail.tenant.test", "DNS:mail.tenant.test", &tenant) < 0) {
		fprintf(stderr, "fuzz-tls: cannot make certificates\n");
		abort();
	}
	struct pn_tls_settings ss = {
		.cert_file = def.cert, .key_file = def.key, .ca_file = tenant.cert,
		.alpn = "imap,pop3", .request_client_cert = true,
	};
	struct pn_tls_settings cs = { .ca_file = def.cert, .alpn = "imap" };
	server_ctx = pn_tls_ctx_new_server(&ss, &error);
	if (server_ctx == NULL ||
	    pn_tls_ctx_add_sni(server_ctx, "mail.tenant.test", tenant.cert, tenant.key, &error) < 0 ||
	    pn_tls_ctx_add_sni(server_ctx, "*.wild.test", tenant.cert, tenant.key, &error) < 0 ||
	    (client_ctx = pn_tls_ctx_new_client(&cs, &error)) == NULL) {
		fprintf(stderr, "fuzz-tls: %s\n", error);
		abort();
	}
	/* Contexts hold the certificates in memory now. */
	pn_testcert_remove(&def);
	pn_testcert_remove(&tenant);
	rmdir(dir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *error = NULL;
	uint8_t buf[4096];

	if (size < 1)
		return 0;
	bool client = (data[0] & 0x80) != 0;
	size_t chunk = data[0] & 0x3f;
	data++;
	size--;
	if (chunk == 0)
		chunk = size > 0 ? size : 1;

	struct pn_tls_conn *conn =
		pn_tls_conn_new(client ? client_ctx : server_ctx,
				client ? "mail.tenant.test" : NULL, &error);
	if (conn == NULL)
		abort();
	/* A client has its ClientHello to send first. */
	while (pn_tls_take_out(conn, buf, sizeof(buf)) > 0)
		;

	bool done = false;
	for (size_t off = 0; off < size && !done; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (pn_tls_feed(conn, data + off, n, &error) < 0)
			break;
		ssize_t r;
		while ((r = pn_tls_read(conn, buf, sizeof(buf), &error)) > 0)
			;
		if (r < 0)
			done = true;
		while (pn_tls_take_out(conn, buf, sizeof(buf)) > 0)
			;
	}
	if (!done) {
		pn_tls_feed_eof(conn);
		(void)pn_tls_read(conn, buf, sizeof(buf), &error);
	}
	(void)pn_tls_protocol(conn);
	(void)pn_tls_cipher(conn);
	(void)pn_tls_server_name(conn);
	(void)pn_tls_peer_cn(conn);
	(void)pn_tls_alpn(conn);
	(void)pn_tls_peer_verified(conn);
	if (pn_tls_write(conn, "x", 1, &error) >= 0)
		(void)pn_tls_shutdown(conn, &error);
	pn_tls_conn_free(&conn);
	return 0;
}
