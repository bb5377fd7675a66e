/* Password hashing and verification for account logins.
 *
 * Hashing uses crypt(3) from libxcrypt, yescrypt by default, and produces a
 * bare crypt string ("$y$j9T$salt$hash") for accounts.password_hash.
 *
 * Verification accepts the strings Dovecot writes in a passwd-file or SQL
 * userdb, so a provider can move its users over without resetting their
 * passwords (scheme names are case-insensitive):
 *   {SHA512-CRYPT}$6$...  {SHA256-CRYPT}$5$...  {MD5-CRYPT}$1$...
 *   {BLF-CRYPT}$2y$... (also $2b$, $2a$)       {CRYPT}<any $-crypt string>
 *   {ARGON2ID}$argon2id$...  {ARGON2I}$argon2i$...    (libargon2)
 *   {PLAIN}text  {CLEARTEXT}text  {CLEAR}text  (compared in constant time)
 * and the same hashes without a prefix: $y$, $gy$, $7$, $6$, $5$, $2b$,
 * $2y$, $1$ (crypt) and $argon2id$, $argon2i$. Traditional DES crypt and any
 * other scheme is refused.
 *
 * All functions are thread-safe (crypt_rn / crypt_gensalt_rn and a private
 * crypt_data) and do CPU work only, no I/O; a yescrypt or argon2 hash takes
 * tens of milliseconds, so a daemon runs them off its loop threads.
 */
#ifndef POSTERN_STORE_PASSWORD_H
#define POSTERN_STORE_PASSWORD_H

#include <stddef.h>

/* Room for any hash string this module writes. */
#define STORE_PASSWORD_HASH_MAX 256
/* Longest password accepted, in bytes (libxcrypt's own limit). */
#define STORE_PASSWORD_MAX 512
/* Argon2 hashes asking for more memory (KiB) or passes are refused, so a
 * stored string cannot make a login allocate gigabytes. */
#define STORE_ARGON2_MAX_M_KIB (1024u * 1024u)
#define STORE_ARGON2_MAX_T 64u

/* Hashes password with yescrypt at libxcrypt's default cost and a random
 * salt from the kernel. Writes a NUL-terminated crypt string into hash_r
 * (hash_size >= STORE_PASSWORD_HASH_MAX is always enough). Returns 0, or -1
 * with *error_r (empty or too long password, no randomness, small buffer). */
int store_password_hash(const char *password, char *hash_r, size_t hash_size,
			const char **error_r);

/* Same with another crypt method: prefix is "$y$", "$6$", "$5$", "$2b$",
 * "$2y$", ...; cost 0 means the method's default. */
int store_password_hash_method(const char *password, const char *prefix,
			       unsigned long cost, char *hash_r, size_t hash_size,
			       const char **error_r);

/* Checks password against a stored string (see the list above). Returns 1 if
 * it matches, 0 if it does not (also for a password longer than
 * STORE_PASSWORD_MAX), -1 with *error_r if the stored string is malformed or
 * of an unsupported scheme. */
int store_password_verify(const char *stored, const char *password,
			  const char **error_r);

/* Cheap syntax check of a stored string, without hashing (for imports of
 * many users): returns 0 if store_password_verify() would accept its
 * format, -1 with *error_r naming the problem otherwise. */
int store_password_check_format(const char *stored, const char **error_r);

#endif
