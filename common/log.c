/* key=value line logger to stderr; see postern/log.h. */
#include "postern/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = PN_LOG_INFO;
static char log_node[64];

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void pn_log_set_level(enum pn_log_level level)
{
	atomic_store(&log_level, (int)level);
}

int pn_log_level_parse(const char *s, enum pn_log_level *level_r)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*level_r = (enum pn_log_level)i;
			return 0;
		}
	}
	return -1;
}

void pn_log_set_node(const char *name)
{
	snprintf(log_node, sizeof(log_node), "%s", name);
}

int pn_log_enabled(enum pn_log_level level)
{
	return (int)level >= atomic_load(&log_level);
}

void pn_log(enum pn_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (!pn_log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s", ts.tv_nsec / 1000000,
		     level_names[level]);
	if (r > 0)
		n += (size_t)r;
	if (log_node[0] != '\0' && n < sizeof(line)) {
		r = snprintf(line + n, sizeof(line) - n, " node=%s", log_node);
		if (r > 0)
			n += (size_t)r;
	}
	if (n < sizeof(line) - 1) {
		va_list ap;
		line[n++] = ' ';
		va_start(ap, fmt);
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	/* One line per record even if a caller let a newline through. */
	for (size_t i = 0; i < n; i++) {
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}

char *pn_log_quote(char *dst, size_t dstsize, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dstsize < 8) {
		if (dstsize > 0)
			dst[0] = '\0';
		return dst;
	}
	dst[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		/* room for the worst case (4) plus "...\"" and NUL */
		if (o + 4 + 5 > dstsize) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		} else {
			dst[o++] = (char)c;
		}
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}
