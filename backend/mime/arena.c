/* The per-message bump allocator of backend/mime (see mail-arena.h): a
 * chain of blocks that start at 4 KiB and double up to 64 KiB, with large
 * requests in blocks of their own, all counted against the arena's limit. */
#include "mail-arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_FIRST_BLOCK 4096
#define ARENA_MAX_BLOCK 65536

struct arena_block {
	struct arena_block *next;
	size_t size, used;
	alignas(max_align_t) unsigned char data[];
};

struct mail_arena {
	struct arena_block *head; /* block being filled */
	size_t total, max, next_size;
};

static size_t align_up(size_t n)
{
	const size_t a = alignof(max_align_t);
	return (n + a - 1) & ~(a - 1);
}

struct mail_arena *mail_arena_create(size_t max)
{
	struct mail_arena *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->max = max;
	a->total = sizeof(*a);
	a->next_size = ARENA_FIRST_BLOCK;
	return a;
}

void mail_arena_destroy(struct mail_arena **arena)
{
	struct mail_arena *a = *arena;
	if (a == NULL)
		return;
	struct arena_block *b = a->head;
	while (b != NULL) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	free(a);
	*arena = NULL;
}

static struct arena_block *arena_new_block(struct mail_arena *a, size_t size)
{
	size_t bytes = sizeof(struct arena_block) + size;
	if (size > SIZE_MAX / 2 || bytes > a->max || a->total > a->max - bytes)
		return NULL;
	struct arena_block *b = malloc(bytes);
	if (b == NULL)
		return NULL;
	b->size = size;
	b->used = 0;
	a->total += bytes;
	return b;
}

void *mail_arena_alloc(struct mail_arena *a, size_t n)
{
	if (n > SIZE_MAX / 2)
		return NULL;
	n = align_up(n == 0 ? 1 : n);
	struct arena_block *b = a->head;
	if (b == NULL || b->size - b->used < n) {
		if (n > a->next_size / 4) {
			/* Large: a block of its own, kept behind the current
			 * head so the head's free space stays usable. */
			b = arena_new_block(a, n);
			if (b == NULL)
				return NULL;
			if (a->head == NULL) {
				b->next = NULL;
				a->head = b;
			} else {
				b->next = a->head->next;
				a->head->next = b;
			}
		} else {
			b = arena_new_block(a, a->next_size);
			if (b == NULL)
				return NULL;
			b->next = a->head;
			a->head = b;
			if (a->next_size < ARENA_MAX_BLOCK)
				a->next_size *= 2;
		}
	}
	void *p = b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

char *mail_arena_strndup(struct mail_arena *a, const void *p, size_t n)
{
	if (n == SIZE_MAX)
		return NULL;
	char *s = mail_arena_alloc(a, n + 1);
	if (s == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

size_t mail_arena_size(const struct mail_arena *a)
{
	return a->total;
}
