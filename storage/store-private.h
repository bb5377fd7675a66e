/* Private helpers shared by the storage library's files (not installed).
 *
 * store_error() formats an error message into a per-thread buffer and points
 * *error_r at it: the message stays valid until the next store_ call that
 * reports an error in the same thread. Every public store_ function that
 * takes `const char **error_r` uses it, so callers never free messages.
 */
#ifndef POSTERN_STORE_PRIVATE_H
#define POSTERN_STORE_PRIVATE_H

#include <stddef.h>

#define STORE_ERROR_MAX 512

/* Sets *error_r (if error_r is not NULL) to the formatted message and
 * returns -1, so that `return store_error(error_r, "...")` reads well. */
int store_error(const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes src into dst (size dstsize, NUL-terminated, truncated with "...")
 * with control bytes replaced by '?', for quoting user input in messages. */
const char *store_clean(char *dst, size_t dstsize, const char *src);

#endif
