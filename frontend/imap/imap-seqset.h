/* IMAP numbers and sequence sets (RFC 3501 and RFC 9051 section 9,
 * RFC 5182 for "$", RFC 7162 for mod-sequence values).
 *
 * Pure functions over strings taken from parsed arguments (an atom's str and
 * len); they allocate only the range array of a parsed set. They return 0 on
 * success, -1 on invalid input with *error_r set to a static message
 * suitable for a BAD response.
 */
#ifndef POSTERN_IMAP_SEQSET_H
#define POSTERN_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* number = 1*DIGIT, unsigned 32-bit (leading zeros allowed). */
int imap_parse_number(const char *s, size_t len, uint32_t *num_r);
/* nz-number = digit-nz *DIGIT, 1 .. 4294967295. */
int imap_parse_nz_number(const char *s, size_t len, uint32_t *num_r);
/* number64 = 1*DIGIT, 0 .. 2^63-1 (RFC 9051; also RFC 7162
 * mod-sequence-valzer). */
int imap_parse_number64(const char *s, size_t len, uint64_t *num_r);
/* nz-number64 = digit-nz *DIGIT, 1 .. 2^63-1 (RFC 9051; also RFC 7162
 * mod-sequence-value). */
int imap_parse_nz_number64(const char *s, size_t len, uint64_t *num_r);

/* "*" in a range: the largest number in use (message count or UIDNEXT-1). */
#define IMAP_SEQ_STAR 0u

struct imap_seq_range {
	/* As written, each 1..2^32-1 or IMAP_SEQ_STAR. "5:2" means the same as
	 * "2:5" (RFC 3501 section 9); imap_seqset_normalize() orders them. */
	uint32_t first, last;
};

struct imap_seqset {
	struct imap_seq_range *ranges; /* malloc'd; count entries */
	size_t count;
	/* The set includes "$", the saved result of the last SEARCH (RFC 5182,
	 * RFC 9051 section 6.4.4.1). The session substitutes it. */
	bool last_result;
};

/* Parses a sequence-set such as "1:*", "*", "1,3:5,7" or "$" into *set_r,
 * which the caller frees with imap_seqset_free(). At most max_ranges
 * elements (0: no limit beyond the string's length). Returns 0 or -1. */
int imap_seqset_parse(const char *s, size_t len, size_t max_ranges,
		      struct imap_seqset *set_r, const char **error_r);
void imap_seqset_free(struct imap_seqset *set);

/* Replaces "*" by star_value, orders each range first <= last, sorts the
 * ranges and merges overlapping or adjacent ones. star_value 0 means no
 * message is in use: "*" then matches nothing and the ranges using it are
 * dropped. Does not touch last_result. */
void imap_seqset_normalize(struct imap_seqset *set, uint32_t star_value);
/* True if n is in a normalized set (binary search). */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n);

#endif
