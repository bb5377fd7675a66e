/* Logging: one line per event, key=value pairs, to stderr.
 *
 *   pn_log(PN_LOG_INFO, "event=accept proto=imap peer=%s", addr);
 *
 * prints "ts=2026-11-27T18:31:11.123Z level=info node=fe1 event=accept ...".
 * Never log passwords or message bodies. Thread-safe (one write(2) per line).
 * Values that may contain spaces or come from a peer go through
 * pn_log_quote() first so a line stays one line and one record.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stddef.h>

enum pn_log_level {
	PN_LOG_DEBUG = 0,
	PN_LOG_INFO,
	PN_LOG_WARN,
	PN_LOG_ERROR,
};

/* Lines below this level are dropped. Default PN_LOG_INFO. */
void pn_log_set_level(enum pn_log_level level);
/* Parses "debug", "info", "warn", "error". Returns 0, or -1 if unknown. */
int pn_log_level_parse(const char *s, enum pn_log_level *level_r);
/* Adds node=NAME to every line; NAME is copied (at most 63 bytes). */
void pn_log_set_node(const char *name);
int pn_log_enabled(enum pn_log_level level);

void pn_log(enum pn_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes into dst (size dstsize, always NUL-terminated) a double-quoted copy
 * of src[0..len) with ", \ and control or non-ASCII bytes escaped as \xNN.
 * Truncates with "..." when dst is too small. Returns dst. */
char *pn_log_quote(char *dst, size_t dstsize, const char *src, size_t len);

#define pn_debug(...) do { if (pn_log_enabled(PN_LOG_DEBUG)) pn_log(PN_LOG_DEBUG, __VA_ARGS__); } while (0)
#define pn_info(...) pn_log(PN_LOG_INFO, __VA_ARGS__)
#define pn_warn(...) pn_log(PN_LOG_WARN, __VA_ARGS__)
#define pn_error(...) pn_log(PN_LOG_ERROR, __VA_ARGS__)

#endif
