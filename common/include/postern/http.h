/* A sans-IO HTTP/1.1 request parser and response writer, for the admin
 * server (/metrics, /healthz, /readyz, /status) and anything else that must
 * answer small HTTP requests. It reads no socket: the owner feeds bytes and
 * asks for the next complete request.
 *
 *   size_t n = pn_http_parser_feed(p, data, len);   // takes what fits
 *   while ((r = pn_http_parser_next(p, &req)) == 1)
 *       ... answer req ...
 *   if (r < 0)
 *       ... send pn_http_parser_error_status(p), then close ...
 *
 * What is accepted (RFC 9112 unless said otherwise):
 * - request-line = method SP request-target SP HTTP-version, single spaces;
 *   method any token; target in origin-form ("/path?query"), absolute-form
 *   ("http://host/path", reduced to its path) or "*" (OPTIONS only);
 *   HTTP/1.0 and HTTP/1.1 (1.x with x > 1 is served as 1.1; 2.x and up get
 *   505). Up to 8 empty lines before the request-line are skipped (§2.2).
 * - Line ends: CRLF, and also a bare LF (§2.2 allows it; the admin port
 *   is for operators with nc as much as for Prometheus, and no proxy sits
 *   between, so LF-only framing cannot be used for smuggling here). A bare
 *   CR anywhere is rejected.
 * - Header fields "name: value"; whitespace before the colon, obs-fold
 *   (continuation lines) and control bytes in values are rejected (§5.1,
 *   §5.2). HTTP/1.1 requests need exactly one Host (§3.2).
 * - Body only by Content-Length (1*DIGIT, at most one such field). Any
 *   Transfer-Encoding is not supported: "chunked" gets 411 Length Required
 *   (send a Content-Length instead), anything else 501; with Content-Length
 *   too, or in HTTP/1.0, 400 (§6.1, a smuggling signature).
 * - Expect: 100-continue is honoured (pn_http_parser_take_continue); any
 *   other expectation gets 417 (RFC 9110 §10.1.1).
 * - Persistence (§9.3): HTTP/1.1 keeps the connection unless "Connection:
 *   close"; HTTP/1.0 only with "Connection: keep-alive".
 *
 * Limits (struct pn_http_limits, defaults in brackets): request-line
 * [8 KiB] else 414, header fields [64] and header section bytes [16 KiB]
 * else 431, body [64 KiB] else 413. Any malformed input is 400. After an
 * error the parser stays failed: answer with the status and close, since
 * the framing of anything that follows cannot be trusted.
 *
 * Memory: the parser copies fed bytes into one buffer bounded by the limits
 * and parses in place. The strings of a returned request point into that
 * buffer and stay valid until the next pn_http_parser_feed() or
 * pn_http_parser_next() call.
 */
#ifndef POSTERN_HTTP_H
#define POSTERN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/buf.h"

struct pn_http_limits {
	size_t max_request_line;	/* bytes, without the line end */
	size_t max_headers;		/* header fields */
	size_t max_header_bytes;	/* field lines with their line ends */
	size_t max_body;		/* Content-Length */
};

#define PN_HTTP_DEFAULT_LIMITS { 8192, 64, 16384, 65536 }

struct pn_http_header {
	const char *name;	/* NUL-terminated, case as sent */
	const char *value;	/* NUL-terminated, surrounding blanks removed */
};

struct pn_http_request {
	const char *method;	/* NUL-terminated token, case-sensitive ("GET") */
	const char *path;	/* NUL-terminated, not percent-decoded; "*" allowed */
	const char *query;	/* after '?', NUL-terminated, or NULL if no '?' */
	int version_minor;	/* 0 or 1 */
	bool keep_alive;	/* the connection may carry another request */
	const struct pn_http_header *headers;
	size_t header_count;
	const uint8_t *body;	/* body_len bytes, not NUL-terminated */
	size_t body_len;
};

struct pn_http_parser;

/* limits may be NULL for PN_HTTP_DEFAULT_LIMITS; zero members take their
 * default too. Returns NULL when out of memory. */
struct pn_http_parser *pn_http_parser_new(const struct pn_http_limits *limits);
void pn_http_parser_free(struct pn_http_parser **p);

/* Copies up to len bytes into the parser and returns how many it took. It
 * takes fewer only while a complete request is buffered and not yet
 * returned by pn_http_parser_next(): call next() until it returns 0, then
 * feed the rest. */
size_t pn_http_parser_feed(struct pn_http_parser *p, const void *data, size_t len);

/* Returns 1 with *req_r filled when a complete request is buffered (the
 * previous one, if any, is dropped first), 0 if more bytes are needed, -1 if
 * the input is not acceptable (see pn_http_parser_error_status). */
int pn_http_parser_next(struct pn_http_parser *p, struct pn_http_request *req_r);

/* After -1: the status to answer with (400, 411, 413, 414, 417, 431, 501,
 * 505) and a short reason for the log. */
int pn_http_parser_error_status(const struct pn_http_parser *p);
const char *pn_http_parser_error(const struct pn_http_parser *p);

/* True once per request whose head carried "Expect: 100-continue" while its
 * body has not fully arrived: the owner should send "HTTP/1.1 100 Continue"
 * (PN_HTTP_CONTINUE) before waiting for the body. */
bool pn_http_parser_take_continue(struct pn_http_parser *p);
#define PN_HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* True when no byte of a next request is buffered (between requests). */
bool pn_http_parser_idle(const struct pn_http_parser *p);

/* First header named name (case-insensitive), or NULL. */
const char *pn_http_header_get(const struct pn_http_request *req, const char *name);

/* "OK", "Not Found", ...; "Unknown" for codes not listed. */
const char *pn_http_reason(int status);

struct pn_http_response {
	int status;
	const char *content_type;	/* NULL: none (and body_len should be 0) */
	const void *body;
	size_t body_len;
	/* Further fields, each "Name: value\r\n", or NULL. The caller vouches
	 * that they contain no peer-controlled bytes. */
	const char *extra_headers;
	bool keep_alive;	/* false adds "Connection: close" */
	bool head_only;		/* answer to HEAD: Content-Length but no body */
};

/* Appends the status line, Date, Content-Type, Content-Length, Connection
 * and the extra fields, then the body, to out. Returns 0, or -1 (nothing
 * appended) if out would exceed its max. */
int pn_http_write_response(struct pn_buf *out, const struct pn_http_response *resp);

#endif
