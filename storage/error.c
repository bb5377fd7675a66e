/* Per-thread error message buffer used by every store_ function that
 * reports `const char **error_r` (see store-private.h). */
#include "store-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char store_error_buf[STORE_ERROR_MAX];

int store_error(const char **error_r, const char *fmt, ...)
{
	/* Format into a scratch copy first: an argument may point into
	 * store_error_buf itself (an error wrapping the previous one). */
	char tmp[STORE_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(store_error_buf, tmp, sizeof(tmp));
	if (error_r != NULL)
		*error_r = store_error_buf;
	return -1;
}

const char *store_clean(char *dst, size_t dstsize, const char *src)
{
	size_t i = 0;

	if (dstsize == 0)
		return dst;
	for (; src[i] != '\0' && i + 1 < dstsize; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[i] = '\0';
	if (src[i] != '\0' && dstsize >= 4)
		memcpy(dst + dstsize - 4, "...", 4);
	return dst;
}
