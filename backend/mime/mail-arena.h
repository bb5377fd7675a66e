/* A bump allocator for the data of one parsed message (private to
 * backend/). Allocations come from blocks chained together; nothing is
 * freed alone, mail_arena_destroy() frees everything. The total size of the
 * blocks never exceeds the max given at creation, so a message from a peer
 * cannot make the tree take more memory than the limit.
 */
#ifndef POSTERN_MAIL_ARENA_H
#define POSTERN_MAIL_ARENA_H

#include <stddef.h>

struct mail_arena;

/* Returns a new arena that may hold up to max bytes (blocks included), or
 * NULL if out of memory. */
struct mail_arena *mail_arena_create(size_t max);
/* Frees all blocks; clears *arena. */
void mail_arena_destroy(struct mail_arena **arena);
/* Returns n zeroed bytes aligned for any type, or NULL when the limit (or
 * memory) is exhausted. */
void *mail_arena_alloc(struct mail_arena *arena, size_t n);
/* Returns a NUL-terminated copy of p[0..n), or NULL as above. */
char *mail_arena_strndup(struct mail_arena *arena, const void *p, size_t n);
/* Bytes taken from the system so far. */
size_t mail_arena_size(const struct mail_arena *arena);

#endif
