/* Syntax of mail addresses, domain names and sizes as the store keeps them.
 *
 * Pure functions: no I/O, no allocation, safe on any thread. Input comes
 * from administrators and imported files; everything malformed is an error
 * return with a message, never a crash.
 *
 * Decisions:
 * - A local part is a Dot-string (RFC 5321 4.1.2): dot-atom-text of RFC 5322
 *   3.2.3, with UTF-8 allowed in atext as RFC 6531 3.3 does. Quoted local
 *   parts and address literals are refused for accounts and aliases.
 * - A domain is sub-domain *("." sub-domain) with LDH labels (RFC 5321
 *   4.1.2, RFC 1035 2.3.1), stored lower-case; an IDN must be given as its
 *   A-label (xn--...). No trailing dot.
 * - Plus-addressing: "user+tag" delivers to "user"; '+' is the only
 *   separator.
 */
#ifndef POSTERN_STORE_ADDRESS_H
#define POSTERN_STORE_ADDRESS_H

#include <stddef.h>
#include <stdint.h>

#define STORE_LOCAL_PART_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define STORE_DOMAIN_MAX 253      /* RFC 1035 2.3.4, without the root dot */
#define STORE_LABEL_MAX 63
#define STORE_ADDRESS_MAX 254     /* RFC 5321 4.5.3.1.3 path minus "<>" */
/* A buffer that holds local "@" domain of a struct store_address. */
#define STORE_ADDRESS_BUF (STORE_LOCAL_PART_MAX + 1 + STORE_DOMAIN_MAX + 1)

struct store_address {
	char local[STORE_LOCAL_PART_MAX + 1];  /* case kept; "" for "@domain" */
	char domain[STORE_DOMAIN_MAX + 1];     /* lower-case */
};

/* Parses "local@domain" (the last '@' splits). Returns 0, or -1 with
 * *error_r. */
int store_address_parse(const char *s, struct store_address *addr_r,
			const char **error_r);

/* Like store_address_parse(), but also accepts "@domain", a domain's
 * catch-all alias source, giving an empty local part. */
int store_alias_source_parse(const char *s, struct store_address *addr_r,
			     const char **error_r);

/* Parses a domain name into domain_r (lower-cased, NUL-terminated; size must
 * be > STORE_DOMAIN_MAX). Returns 0, or -1 with *error_r. */
int store_domain_parse(const char *s, char *domain_r, size_t size,
		       const char **error_r);

/* Length of local's part before a "+tag" (the whole length if there is no
 * '+' or it is the first character). */
size_t store_local_part_base_len(const char *local);

/* Parses a size: digits with an optional unit B, K, M, G, T (powers of 1024,
 * case-insensitive, "KB"/"KiB" spellings too). "0", "unlimited" and "none"
 * mean no limit and give -1. Returns 0, or -1 with *error_r (also on
 * overflow past INT64_MAX). */
int store_size_parse(const char *s, int64_t *bytes_r, const char **error_r);

/* Parses a message count limit: digits, or "0"/"unlimited"/"none" for no
 * limit (-1). Returns 0, or -1 with *error_r. */
int store_count_parse(const char *s, int64_t *count_r, const char **error_r);

/* Writes bytes as the largest exact unit ("1G", "1536K", "100") or
 * "unlimited" for a negative value. Always NUL-terminates (size >= 1). */
void store_size_format(int64_t bytes, char *buf, size_t size);

#endif
