/* Throwaway certificates for test-tls.c and fuzz-tls.c: a self-signed EC
 * P-256 certificate (CN and subjectAltName DNS set to the given name) and its
 * key, made with the OpenSSL API and written as PEM files into a temporary
 * directory. Test-only: static functions, not part of the library. */
#ifndef POSTERN_TLS_TESTCERT_H
#define POSTERN_TLS_TESTCERT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define PN_TESTCERT_PATH_MAX 512

struct pn_testcert {
	char cert[PN_TESTCERT_PATH_MAX];
	char key[PN_TESTCERT_PATH_MAX];
};

/* Creates a fresh temporary directory into dir (size PN_TESTCERT_PATH_MAX).
 * Returns 0 or -1. */
static inline int pn_testcert_dir(char *dir)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, PN_TESTCERT_PATH_MAX, "%s/pn-tls-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

/* Writes dir/<file>.crt and dir/<file>.key for a certificate whose CN is cn
 * (and, if san is not NULL, whose subjectAltName is san, e.g.
 * "DNS:mail.tenant.test"). Returns 0 or -1. */
static inline int pn_testcert_make(const char *dir, const char *file, const char *cn,
				   const char *san, struct pn_testcert *out)
{
	int ret = -1;
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f = NULL;
	uint64_t serial = 0;

	if (pkey == NULL || x == NULL)
		goto out;
	int n1 = snprintf(out->cert, sizeof(out->cert), "%s/%s.crt", dir, file);
	int n2 = snprintf(out->key, sizeof(out->key), "%s/%s.key", dir, file);
	if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(out->cert) || (size_t)n2 >= sizeof(out->key))
		goto out;
	if (RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1)
		goto out;
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) == NULL ||
	    X509_set_pubkey(x, pkey) != 1)
		goto out;
	X509_NAME *name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1)
		goto out;
	if (san != NULL) {
		X509V3_CTX v3;
		X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
		if (ext == NULL)
			goto out;
		int ok = X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
		if (ok != 1)
			goto out;
	}
	if (X509_sign(x, pkey, EVP_sha256()) <= 0)
		goto out;
	if ((f = fopen(out->cert, "w")) == NULL || PEM_write_X509(f, x) != 1)
		goto out;
	fclose(f);
	if ((f = fopen(out->key, "w")) == NULL ||
	    PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	ret = 0;
out:
	if (f != NULL)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return ret;
}

static inline void pn_testcert_remove(const struct pn_testcert *c)
{
	unlink(c->cert);
	unlink(c->key);
}

#endif
