/* Bounded byte buffers; see postern/buf.h for the invariants. */
#include "postern/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pn_buf_init(struct pn_buf *b, size_t max)
{
	b->data = NULL;
	b->start = b->end = b->cap = 0;
	b->max = max;
}

void pn_buf_free(struct pn_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->start = b->end = b->cap = 0;
}

uint8_t *pn_buf_reserve(struct pn_buf *b, size_t n)
{
	size_t len = pn_buf_len(b);

	if (n > b->max - len)
		return NULL;
	if (b->cap - b->end >= n)
		return b->data + b->end;
	/* Slide the content to the front before growing. */
	if (b->start > 0) {
		memmove(b->data, b->data + b->start, len);
		b->start = 0;
		b->end = len;
		if (b->cap - b->end >= n)
			return b->data + b->end;
	}
	size_t want = b->cap ? b->cap : 256;
	while (want < len + n)
		want = want * 2;
	if (want > b->max)
		want = b->max;
	uint8_t *p = realloc(b->data, want);
	if (p == NULL)
		return NULL;
	b->data = p;
	b->cap = want;
	return b->data + b->end;
}

void pn_buf_commit(struct pn_buf *b, size_t n)
{
	b->end += n;
}

int pn_buf_append(struct pn_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	uint8_t *w = pn_buf_reserve(b, n);
	if (w == NULL)
		return -1;
	memcpy(w, p, n);
	b->end += n;
	return 0;
}

int pn_buf_append_str(struct pn_buf *b, const char *s)
{
	return pn_buf_append(b, s, strlen(s));
}

int pn_buf_printf(struct pn_buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return pn_buf_append(b, small, (size_t)n);
	uint8_t *w = pn_buf_reserve(b, (size_t)n + 1);
	if (w == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)w, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->end += (size_t)n;
	return 0;
}

void pn_buf_consume(struct pn_buf *b, size_t n)
{
	b->start += n;
	if (b->start >= b->end)
		b->start = b->end = 0;
}

void pn_buf_reset(struct pn_buf *b)
{
	b->start = b->end = 0;
}

void pn_buf_shrink_if_empty(struct pn_buf *b)
{
	if (b->start == b->end && b->data != NULL) {
		free(b->data);
		b->data = NULL;
		b->start = b->end = b->cap = 0;
	}
}
