/* SMTP grammar helpers for the session engine (private to frontend/smtp).
 *
 * Pure functions over caller memory: no allocation, no I/O, no global state.
 * Input is a byte range [p, end) that need not be NUL-terminated; output
 * strings are written into caller buffers and always NUL-terminated.
 *
 * What is accepted:
 * - Paths (RFC 5321 4.1.2): "<" [A-d-l ":"] Mailbox ">", the source route
 *   A-d-l checked and dropped (RFC 5321 C); "<>" only with
 *   SMTP_PATH_ALLOW_NULL; "<Postmaster>" (any case) only with
 *   SMTP_PATH_ALLOW_POSTMASTER (RFC 5321 4.5.1). Local parts may be quoted;
 *   a quoted local part that is a valid Dot-string is returned unquoted
 *   ("john"@x and john@x are the same mailbox), any other is returned
 *   quoted with only '"' and '\' escaped. Domains and address literals are
 *   returned as sent. UTF-8 (RFC 6531: atext, qtext and U-labels) is accepted
 *   and reported through *utf8_r so the caller can insist on SMTPUTF8.
 *   Limits (RFC 5321 4.5.3.1): local part 64 octets as sent, domain 255,
 *   labels 63, the whole path 256 octets including the brackets.
 * - ESMTP parameters (RFC 5321 4.1.2): esmtp-keyword ["=" esmtp-value],
 *   separated by one or more spaces; values may carry UTF-8 (RFC 6531).
 * - xtext (RFC 3461 4): xchar or "+" and two upper-case hex digits.
 */
#ifndef SMTP_SYNTAX_H
#define SMTP_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including "<" and ">". */
#define SMTP_PATH_MAX 256
#define SMTP_LOCAL_PART_MAX 64
#define SMTP_DOMAIN_MAX 255
/* Room for any address smtp_parse_path() returns, NUL included. The output
 * is never longer than the path as sent: normalisation only drops quotes,
 * source routes and needless backslashes. */
#define SMTP_ADDRESS_SIZE (SMTP_PATH_MAX + 8)

enum smtp_path_flags {
	SMTP_PATH_ALLOW_NULL = 0x1,	  /* "<>" (the null reverse-path) */
	SMTP_PATH_ALLOW_POSTMASTER = 0x2, /* "<Postmaster>" without a domain */
};

/* Parses a path starting at *pp. On success returns 0, advances *pp past
 * the ">", writes the mailbox (without brackets; "" for "<>", "Postmaster"
 * for "<Postmaster>") into addr and sets *utf8_r when it holds non-ASCII
 * bytes. On a syntax or length error returns -1 with *error_r set to a
 * static message and *pp unchanged. addr_size must be at least
 * SMTP_ADDRESS_SIZE. */
int smtp_parse_path(const char **pp, const char *end, unsigned int flags,
		    char *addr, size_t addr_size, bool *utf8_r,
		    const char **error_r);

struct smtp_param {
	const char *key;	/* points into the input, key_len bytes */
	size_t key_len;
	const char *value;	/* NULL when the parameter has no "=" */
	size_t value_len;
};

/* Parses the next parameter after one or more spaces at *pp. Returns 1 and
 * advances *pp (param_r filled), 0 at the end of the input (only spaces
 * left), -1 on a syntax error (no space before it, bad keyword, empty or
 * bad value). */
int smtp_parse_param(const char **pp, const char *end, struct smtp_param *param_r);

/* Case-insensitive comparison of a parameter's keyword with name. */
bool smtp_param_is(const struct smtp_param *param, const char *name);
/* Case-insensitive comparison of [p, p+len) with the NUL-terminated word. */
bool smtp_word_eq(const char *p, size_t len, const char *word);

/* RFC 3461 4: true if [p, p+len) is non-empty valid xtext. */
bool smtp_xtext_valid(const char *p, size_t len);

/* 1 to 20 decimal digits without sign. Returns 0, or -1 if not digits, empty
 * or over UINT64_MAX (the caller decides what an overflow means). */
int smtp_parse_u64(const char *p, size_t len, uint64_t *value_r);

/* Length (2..4) of a well-formed non-ASCII UTF-8 sequence (RFC 3629) at p,
 * or 0 if the bytes there are not one. */
size_t smtp_utf8_seq_len(const unsigned char *p, const unsigned char *end);

/* The EHLO/HELO/LHLO argument we accept: 1..255 octets of printable ASCII
 * (0x21..0x7e) without "()\\\";", so that it can be copied into the
 * Received: header without changing that header's structure. */
bool smtp_helo_valid(const char *p, size_t len);

#endif
