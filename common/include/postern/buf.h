/* Byte buffers with a hard upper bound.
 *
 * Invariants: start <= end <= cap <= max. Bytes [start, end) of data are the
 * readable content; [end, cap) is free space for writing. cap never grows past
 * max, so a buffer fed by a peer can never take more memory than its owner
 * allowed. data is NULL until the first write (an idle buffer costs nothing).
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stddef.h>
#include <stdint.h>

struct pn_buf {
	uint8_t *data;
	size_t start, end, cap, max;
};

/* Sets up an empty buffer that may grow to max bytes. Allocates nothing. */
void pn_buf_init(struct pn_buf *b, size_t max);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void pn_buf_free(struct pn_buf *b);

static inline size_t pn_buf_len(const struct pn_buf *b) { return b->end - b->start; }
/* Never NULL + offset (undefined behaviour) on a buffer never written. */
static inline const uint8_t *pn_buf_rptr(const struct pn_buf *b)
{
	return b->data != NULL ? b->data + b->start : (const uint8_t *)"";
}
/* Bytes that can still be added before hitting max. */
static inline size_t pn_buf_room(const struct pn_buf *b) { return b->max - pn_buf_len(b); }

/* Makes room for n more bytes and returns where to write them, or NULL if
 * that would exceed max (or memory ran out). Follow with pn_buf_commit(). */
uint8_t *pn_buf_reserve(struct pn_buf *b, size_t n);
/* Marks n bytes written after pn_buf_reserve() as content. */
void pn_buf_commit(struct pn_buf *b, size_t n);
/* Appends n bytes. Returns 0, or -1 (nothing appended) if over max. */
int pn_buf_append(struct pn_buf *b, const void *p, size_t n);
int pn_buf_append_str(struct pn_buf *b, const char *s);
/* printf-style append. Returns 0, or -1 (nothing appended) if over max. */
int pn_buf_printf(struct pn_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Drops n bytes from the front (n <= pn_buf_len). */
void pn_buf_consume(struct pn_buf *b, size_t n);
/* Empties the buffer, keeping its storage. */
void pn_buf_reset(struct pn_buf *b);
/* Releases the storage if the buffer is empty (for idle connections). */
void pn_buf_shrink_if_empty(struct pn_buf *b);

#endif
