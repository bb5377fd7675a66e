/* Password hashing (libxcrypt, yescrypt by default) and verification of
 * crypt, Argon2 and PLAIN strings with Dovecot's {SCHEME} prefixes. See
 * postern/store-password.h for the accepted formats. */
#include "postern/store-password.h"
#include "store-private.h"

#include <argon2.h>
#include <crypt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum pw_kind {
	PW_CRYPT,
	PW_ARGON2ID,
	PW_ARGON2I,
	PW_PLAIN,
};

struct pw_scheme {
	const char *name;     /* inside {} */
	enum pw_kind kind;
	const char *const *prefixes; /* the hash must start with one; NULL: any */
};

static const char *const pfx_sha512[] = { "$6$", NULL };
static const char *const pfx_sha256[] = { "$5$", NULL };
static const char *const pfx_md5[] = { "$1$", NULL };
static const char *const pfx_blf[] = { "$2y$", "$2b$", "$2a$", NULL };
static const char *const pfx_crypt[] = { "$y$", "$gy$", "$7$", "$6$", "$5$",
					 "$2y$", "$2b$", "$2a$", "$1$", NULL };
static const char *const pfx_argon2id[] = { "$argon2id$", NULL };
static const char *const pfx_argon2i[] = { "$argon2i$", NULL };

static const struct pw_scheme pw_schemes[] = {
	{ "SHA512-CRYPT", PW_CRYPT, pfx_sha512 },
	{ "SHA256-CRYPT", PW_CRYPT, pfx_sha256 },
	{ "MD5-CRYPT", PW_CRYPT, pfx_md5 },
	{ "BLF-CRYPT", PW_CRYPT, pfx_blf },
	{ "CRYPT", PW_CRYPT, pfx_crypt },
	{ "ARGON2ID", PW_ARGON2ID, pfx_argon2id },
	{ "ARGON2I", PW_ARGON2I, pfx_argon2i },
	{ "PLAIN", PW_PLAIN, NULL },
	{ "CLEARTEXT", PW_PLAIN, NULL },
	{ "CLEAR", PW_PLAIN, NULL },
};

static bool has_prefix(const char *s, const char *const *prefixes)
{
	for (size_t i = 0; prefixes[i] != NULL; i++) {
		if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	}
	return false;
}

/* Splits stored into its kind and the hash after any {SCHEME} prefix. */
static int pw_classify(const char *stored, enum pw_kind *kind_r,
		       const char **hash_r, const char **error_r)
{
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		size_t n;

		if (end == NULL)
			return store_error(error_r, "password scheme prefix not closed");
		n = (size_t)(end - stored - 1);
		for (size_t i = 0; i < sizeof(pw_schemes) / sizeof(pw_schemes[0]); i++) {
			const struct pw_scheme *s = &pw_schemes[i];

			if (strlen(s->name) != n || strncasecmp(stored + 1, s->name, n) != 0)
				continue;
			if (s->prefixes != NULL && !has_prefix(end + 1, s->prefixes))
				return store_error(error_r,
						   "{%s} hash does not start with %s",
						   s->name, s->prefixes[0]);
			*kind_r = s->kind;
			*hash_r = end + 1;
			return 0;
		}
		char name[40];
		size_t cn = n < sizeof(name) - 1 ? n : sizeof(name) - 1;
		memcpy(name, stored + 1, cn);
		name[cn] = '\0';
		char clean[40];
		return store_error(error_r, "unsupported password scheme {%s}",
				   store_clean(clean, sizeof(clean), name));
	}
	if (has_prefix(stored, pfx_argon2id)) {
		*kind_r = PW_ARGON2ID;
	} else if (has_prefix(stored, pfx_argon2i)) {
		*kind_r = PW_ARGON2I;
	} else if (has_prefix(stored, pfx_crypt)) {
		*kind_r = PW_CRYPT;
	} else {
		return store_error(error_r, "unsupported or malformed password hash");
	}
	*hash_r = stored;
	return 0;
}

/* Compares in time that depends only on the lengths, not on where the
 * first difference is. */
static bool ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	volatile unsigned char diff = (unsigned char)(alen != blen);
	size_t n = alen > blen ? alen : blen;

	for (size_t i = 0; i < n; i++) {
		unsigned char ca = i < alen ? (unsigned char)a[i] : 0;
		unsigned char cb = i < blen ? (unsigned char)b[i] : 0;
		diff |= (unsigned char)(ca ^ cb);
	}
	return diff == 0;
}

static bool crypt64_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || c == '.' || c == '/';
}

/* "$id$...$hash": a setting libxcrypt accepts and a hash part after it. */
static int crypt_check_format(const char *hash, const char **error_r)
{
	const char *last = strrchr(hash, '$');
	int rc = crypt_checksalt(hash);

	if (rc != CRYPT_SALT_OK && rc != CRYPT_SALT_METHOD_LEGACY)
		return store_error(error_r, "malformed or disabled crypt hash");
	if (strlen(hash) >= STORE_PASSWORD_HASH_MAX * 2)
		return store_error(error_r, "crypt hash too long");
	if (last == NULL || last[1] == '\0')
		return store_error(error_r, "crypt hash has no hash part");
	for (const char *p = last + 1; *p != '\0'; p++) {
		if (!crypt64_char(*p))
			return store_error(error_r, "crypt hash has a bad character");
	}
	return 0;
}

static bool b64_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || c == '+' || c == '/';
}

/* Reads a decimal number of at most 10 digits at *pp. */
static bool parse_u32(const char **pp, unsigned long *v_r)
{
	const char *p = *pp;
	unsigned long v = 0;
	int digits = 0;

	while (*p >= '0' && *p <= '9' && digits < 10) {
		v = v * 10 + (unsigned long)(*p - '0');
		p++;
		digits++;
	}
	if (digits == 0 || v > 0xffffffffUL)
		return false;
	*pp = p;
	*v_r = v;
	return true;
}

/* PHC string format: $argon2id$v=19$m=65536,t=3,p=1$<b64 salt>$<b64 hash> */
static int argon2_check_format(const char *hash, const char **error_r)
{
	const char *p = strchr(hash + 1, '$');
	unsigned long v = 0, m, t, par;

	if (p == NULL)
		return store_error(error_r, "malformed argon2 hash");
	p++;
	if (strncmp(p, "v=", 2) == 0) {
		p += 2;
		if (!parse_u32(&p, &v) || *p != '$')
			return store_error(error_r, "malformed argon2 version");
		p++;
	}
	if (strncmp(p, "m=", 2) != 0)
		return store_error(error_r, "malformed argon2 parameters");
	p += 2;
	if (!parse_u32(&p, &m) || strncmp(p, ",t=", 3) != 0)
		return store_error(error_r, "malformed argon2 parameters");
	p += 3;
	if (!parse_u32(&p, &t) || strncmp(p, ",p=", 3) != 0)
		return store_error(error_r, "malformed argon2 parameters");
	p += 3;
	if (!parse_u32(&p, &par) || *p != '$')
		return store_error(error_r, "malformed argon2 parameters");
	if (m > STORE_ARGON2_MAX_M_KIB || t > STORE_ARGON2_MAX_T || par > 64 ||
	    t == 0 || par == 0)
		return store_error(error_r, "argon2 parameters out of range");
	p++;
	for (int part = 0; part < 2; part++) {
		const char *start = p;

		while (b64_char(*p))
			p++;
		if (p == start || (part == 0 && *p != '$') || (part == 1 && *p != '\0'))
			return store_error(error_r, "malformed argon2 salt or hash");
		p++;
	}
	return 0;
}

int store_password_check_format(const char *stored, const char **error_r)
{
	enum pw_kind kind;
	const char *hash;

	if (pw_classify(stored, &kind, &hash, error_r) < 0)
		return -1;
	switch (kind) {
	case PW_CRYPT:
		return crypt_check_format(hash, error_r);
	case PW_ARGON2ID:
	case PW_ARGON2I:
		return argon2_check_format(hash, error_r);
	case PW_PLAIN:
		if (strlen(hash) > STORE_PASSWORD_MAX)
			return store_error(error_r, "plain password too long");
		return 0;
	}
	return store_error(error_r, "unsupported password scheme");
}

static int verify_crypt(const char *hash, const char *password, const char **error_r)
{
	struct crypt_data *data;
	const char *out;
	int ret;

	if (crypt_check_format(hash, error_r) < 0)
		return -1;
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return store_error(error_r, "out of memory");
	out = crypt_rn(password, hash, data, (int)sizeof(*data));
	if (out == NULL || out[0] == '*') {
		/* A well-formed hash that crypt refuses: too long a password
		 * is the only input-side reason left, so no match. */
		ret = strlen(password) > STORE_PASSWORD_MAX ? 0 :
			store_error(error_r, "crypt refused the stored hash");
	} else {
		ret = ct_equal(out, strlen(out), hash, strlen(hash)) ? 1 : 0;
	}
	explicit_bzero(data, sizeof(*data));
	free(data);
	return ret;
}

static int verify_argon2(enum pw_kind kind, const char *hash, const char *password,
			 const char **error_r)
{
	int rc;

	if (argon2_check_format(hash, error_r) < 0)
		return -1;
	rc = argon2_verify(hash, password, strlen(password),
			   kind == PW_ARGON2ID ? Argon2_id : Argon2_i);
	if (rc == ARGON2_OK)
		return 1;
	if (rc == ARGON2_VERIFY_MISMATCH)
		return 0;
	return store_error(error_r, "argon2: %s", argon2_error_message(rc));
}

int store_password_verify(const char *stored, const char *password,
			  const char **error_r)
{
	enum pw_kind kind;
	const char *hash;

	if (pw_classify(stored, &kind, &hash, error_r) < 0)
		return -1;
	if (strlen(password) > STORE_PASSWORD_MAX)
		return 0;
	switch (kind) {
	case PW_CRYPT:
		return verify_crypt(hash, password, error_r);
	case PW_ARGON2ID:
	case PW_ARGON2I:
		return verify_argon2(kind, hash, password, error_r);
	case PW_PLAIN:
		return ct_equal(hash, strlen(hash), password, strlen(password)) ? 1 : 0;
	}
	return store_error(error_r, "unsupported password scheme");
}

int store_password_hash_method(const char *password, const char *prefix,
			       unsigned long cost, char *hash_r, size_t hash_size,
			       const char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data;
	const char *out;
	size_t len = strlen(password);
	int ret = 0;

	if (len == 0)
		return store_error(error_r, "empty password");
	if (len > STORE_PASSWORD_MAX)
		return store_error(error_r, "password longer than %d bytes",
				   STORE_PASSWORD_MAX);
	if (crypt_gensalt_rn(prefix, cost, NULL, 0, setting, (int)sizeof(setting)) == NULL)
		return store_error(error_r, "cannot make a %s salt", prefix);
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return store_error(error_r, "out of memory");
	out = crypt_rn(password, setting, data, (int)sizeof(*data));
	if (out == NULL || out[0] == '*')
		ret = store_error(error_r, "crypt failed for %s", prefix);
	else if (strlen(out) >= hash_size)
		ret = store_error(error_r, "hash buffer too small");
	else
		memcpy(hash_r, out, strlen(out) + 1);
	explicit_bzero(data, sizeof(*data));
	free(data);
	return ret;
}

int store_password_hash(const char *password, char *hash_r, size_t hash_size,
			const char **error_r)
{
	return store_password_hash_method(password, "$y$", 0, hash_r, hash_size,
					  error_r);
}
