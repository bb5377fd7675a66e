/* Sans-IO HTTP/1.1 request parser and response writer; the accepted syntax,
 * the limits and the status codes are listed in postern/http.h. The parser
 * scans fed bytes once for the end of the head while enforcing the limits,
 * then parses the complete head in place (writing NULs over delimiters) and
 * waits for the Content-Length body.
 */
#include "postern/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_LEADING_EMPTY_LINES 8

enum parser_state {
	ST_HEAD,	/* looking for the end of the head */
	ST_BODY,	/* head parsed, waiting for body bytes */
	ST_DONE,	/* request returned; dropped on the next call */
	ST_ERROR,
};

struct pn_http_parser {
	struct pn_http_limits lim;
	struct pn_buf in;
	enum parser_state state;

	/* scan of the head, offsets from the buffer's read pointer */
	size_t scan;		/* next byte to look at */
	size_t line_start;	/* first byte of the current line */
	size_t fields_start;	/* first byte after the request-line, or 0 */
	size_t field_lines;	/* complete field lines seen */
	size_t head_len;	/* through the empty line, once found */
	unsigned int empty_lines;	/* skipped before the request-line */

	struct pn_http_request req;
	uintptr_t req_base;	/* where the head was when req was filled */
	struct pn_http_header *headers;	/* lim.max_headers entries */
	size_t body_len;
	bool expect_continue;
	bool continue_due;

	int error_status;
	const char *error;
};

struct pn_http_parser *pn_http_parser_new(const struct pn_http_limits *limits)
{
	static const struct pn_http_limits defaults = PN_HTTP_DEFAULT_LIMITS;
	struct pn_http_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->lim = limits != NULL ? *limits : defaults;
	if (p->lim.max_request_line == 0)
		p->lim.max_request_line = defaults.max_request_line;
	if (p->lim.max_headers == 0)
		p->lim.max_headers = defaults.max_headers;
	if (p->lim.max_header_bytes == 0)
		p->lim.max_header_bytes = defaults.max_header_bytes;
	if (p->lim.max_body == 0)
		p->lim.max_body = defaults.max_body;
	p->headers = calloc(p->lim.max_headers, sizeof(*p->headers));
	if (p->headers == NULL) {
		free(p);
		return NULL;
	}
	/* Room for the largest acceptable request: request-line and its CRLF,
	 * the field lines, the empty line, the body. The leading empty lines
	 * are dropped as they are seen and need no room. */
	pn_buf_init(&p->in, p->lim.max_request_line + 2 + p->lim.max_header_bytes + 2 +
			    p->lim.max_body);
	return p;
}

void pn_http_parser_free(struct pn_http_parser **pp)
{
	struct pn_http_parser *p = *pp;

	if (p == NULL)
		return;
	pn_buf_free(&p->in);
	free(p->headers);
	free(p);
	*pp = NULL;
}

size_t pn_http_parser_feed(struct pn_http_parser *p, const void *data, size_t len)
{
	size_t room = pn_buf_room(&p->in);
	size_t n = len < room ? len : room;

	if (p->state == ST_ERROR)
		return len; /* swallowed: nothing more will be parsed */
	if (n > 0 && pn_buf_append(&p->in, data, n) < 0)
		return 0;
	return n;
}

static int fail(struct pn_http_parser *p, int status, const char *why)
{
	p->state = ST_ERROR;
	p->error_status = status;
	p->error = why;
	return -1;
}

int pn_http_parser_error_status(const struct pn_http_parser *p)
{
	return p->state == ST_ERROR ? p->error_status : 0;
}

const char *pn_http_parser_error(const struct pn_http_parser *p)
{
	return p->state == ST_ERROR ? p->error : NULL;
}

bool pn_http_parser_take_continue(struct pn_http_parser *p)
{
	bool due = p->continue_due;
	p->continue_due = false;
	return due;
}

bool pn_http_parser_idle(const struct pn_http_parser *p)
{
	size_t pending = pn_buf_len(&p->in);

	if (p->state == ST_DONE)
		return pending == p->head_len + p->body_len;
	return p->state == ST_HEAD && pending == 0;
}

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Drops up to MAX_LEADING_EMPTY_LINES CRLF or LF before a request-line.
 * Returns 1 when a request-line may start, 0 for more bytes, -1 on error. */
static int skip_empty_lines(struct pn_http_parser *p)
{
	for (;;) {
		size_t len = pn_buf_len(&p->in);
		const uint8_t *d = pn_buf_rptr(&p->in);
		size_t n;

		if (len == 0)
			return 0;
		if (d[0] == '\n')
			n = 1;
		else if (d[0] == '\r' && len == 1)
			return 0;
		else if (d[0] == '\r' && d[1] == '\n')
			n = 2;
		else
			return 1;
		if (++p->empty_lines > MAX_LEADING_EMPTY_LINES)
			return fail(p, 400, "too many empty lines before the request");
		pn_buf_consume(&p->in, n);
	}
}

/* Finds the end of the head, enforcing the line and section limits while
 * scanning so that an endless line is refused as soon as it is too long.
 * Returns 1 when the head is complete (p->head_len set), 0, or -1. */
static int scan_head(struct pn_http_parser *p)
{
	const uint8_t *d = pn_buf_rptr(&p->in);
	size_t len = pn_buf_len(&p->in);

	for (size_t i = p->scan; i < len; i++) {
		uint8_t c = d[i];

		if (c != '\n') {
			if (p->fields_start == 0) {
				/* request-line: its content, plus room for a CR */
				if (i + 1 - p->line_start > p->lim.max_request_line + 1)
					return fail(p, 414, "request-line too long");
			} else if (!(c == '\r' && i == p->line_start) &&
				   i + 1 - p->fields_start > p->lim.max_header_bytes) {
				/* a field line byte (not the CR of the empty line) */
				return fail(p, 431, "header section too large");
			}
			continue;
		}
		size_t content = i - p->line_start;
		if (content > 0 && d[i - 1] == '\r')
			content--;
		if (p->fields_start == 0) {
			if (content > p->lim.max_request_line)
				return fail(p, 414, "request-line too long");
			p->fields_start = i + 1;
		} else if (content == 0) {
			p->head_len = i + 1;
			p->scan = i + 1;
			return 1;
		} else {
			if (i + 1 - p->fields_start > p->lim.max_header_bytes)
				return fail(p, 431, "header section too large");
			if (++p->field_lines > p->lim.max_headers)
				return fail(p, 431, "too many header fields");
		}
		p->line_start = i + 1;
	}
	p->scan = len;
	return 0;
}

/* Cuts the line starting at *pos inside the head: returns its start, sets
 * *len_r to its length without the line end, NUL-terminates it, and moves
 * *pos past the line end. A CR inside the line is an error (-1 length). */
static char *take_line(char *head, size_t *pos, size_t *len_r)
{
	char *s = head + *pos;
	char *nl = strchr(s, '\n');	/* the head ends with LF: always found */
	size_t len = (size_t)(nl - s);

	*pos += len + 1;
	if (len > 0 && s[len - 1] == '\r')
		len--;
	s[len] = '\0';
	*len_r = memchr(s, '\r', len) != NULL ? (size_t)-1 : len;
	return s;
}

/* RFC 9112 §3: request-line = method SP request-target SP HTTP-version
 *              HTTP-version = HTTP-name "/" DIGIT "." DIGIT
 * §3.2: request-target = origin-form / absolute-form / authority-form /
 *       asterisk-form (authority-form is only for CONNECT: refused). */
static int parse_request_line(struct pn_http_parser *p, char *line, size_t len)
{
	char *sp1 = memchr(line, ' ', len), *sp2, *target, *version, *q;

	if (sp1 == NULL || sp1 == line)
		return fail(p, 400, "malformed request-line");
	for (char *c = line; c < sp1; c++) {
		if (!is_tchar((unsigned char)*c))
			return fail(p, 400, "malformed method");
	}
	*sp1 = '\0';
	target = sp1 + 1;
	sp2 = memchr(target, ' ', len - (size_t)(target - line));
	if (sp2 == NULL || sp2 == target)
		return fail(p, 400, "malformed request-line");
	*sp2 = '\0';
	version = sp2 + 1;
	for (char *c = target; c < sp2; c++) {
		unsigned char u = (unsigned char)*c;
		if (u <= 0x20 || u >= 0x7f || u == '#')
			return fail(p, 400, "malformed request-target");
	}
	if (strlen(version) != 8 || memcmp(version, "HTTP/", 5) != 0 ||
	    version[5] < '0' || version[5] > '9' || version[6] != '.' ||
	    version[7] < '0' || version[7] > '9')
		return fail(p, 400, "malformed HTTP-version");
	if (version[5] != '1')
		return fail(p, 505, "HTTP version not supported");
	p->req.version_minor = version[7] == '0' ? 0 : 1;
	p->req.method = line;

	if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
		/* absolute-form: the authority is ignored (there is no virtual
		 * hosting here); the path is what gets routed. */
		char *auth = strstr(target, "//") + 2;
		char *slash = strchr(auth, '/');
		char *query = strchr(auth, '?');
		if (slash == NULL || (query != NULL && query < slash)) {
			/* "http://host" or "http://host?x": path "/" */
			p->req.path = "/";
			p->req.query = query != NULL ? query + 1 : NULL;
			return 0;
		}
		target = slash;
	} else if (strcmp(target, "*") == 0) {
		if (strcmp(p->req.method, "OPTIONS") != 0)
			return fail(p, 400, "asterisk-form is only for OPTIONS");
	} else if (target[0] != '/') {
		return fail(p, 400, "malformed request-target");
	}
	q = strchr(target, '?');
	p->req.query = NULL;
	if (q != NULL) {
		*q = '\0';
		p->req.query = q + 1;
	}
	p->req.path = target;
	return 0;
}

/* RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
 * No whitespace is allowed between the name and the colon (§5.1);
 * obs-fold is rejected (§5.2); field-value bytes are VCHAR, obs-text, SP
 * and HTAB (RFC 9110 §5.5). */
static int parse_field(struct pn_http_parser *p, char *line, size_t len)
{
	char *colon = memchr(line, ':', len), *v, *end;

	if (line[0] == ' ' || line[0] == '\t')
		return fail(p, 400, "obsolete line folding");
	if (colon == NULL || colon == line)
		return fail(p, 400, "malformed header field");
	for (char *c = line; c < colon; c++) {
		if (!is_tchar((unsigned char)*c))
			return fail(p, 400, "malformed header field name");
	}
	*colon = '\0';
	v = colon + 1;
	end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (char *c = v; c < end; c++) {
		unsigned char u = (unsigned char)*c;
		if ((u < 0x20 && u != '\t') || u == 0x7f)
			return fail(p, 400, "control byte in header field value");
	}
	*end = '\0';
	p->headers[p->req.header_count].name = line;
	p->headers[p->req.header_count].value = v;
	p->req.header_count++;
	return 0;
}

/* Does the comma-separated list s contain token (case-insensitive)? */
static bool list_has(const char *s, const char *token)
{
	size_t tl = strlen(token);

	while (*s != '\0') {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		const char *e = s;
		while (*e != '\0' && *e != ',')
			e++;
		const char *t = e;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - s) == tl && strncasecmp(s, token, tl) == 0)
			return true;
		s = e;
	}
	return false;
}

/* Applies the framing and connection semantics of the parsed fields. */
static int check_fields(struct pn_http_parser *p)
{
	const char *cl = NULL, *te = NULL, *expect = NULL;
	size_t hosts = 0;
	bool close = false, keep = false;

	for (size_t i = 0; i < p->req.header_count; i++) {
		const char *n = p->headers[i].name, *v = p->headers[i].value;

		if (strcasecmp(n, "Content-Length") == 0) {
			if (cl != NULL)
				return fail(p, 400, "more than one Content-Length");
			cl = v;
		} else if (strcasecmp(n, "Transfer-Encoding") == 0) {
			te = v;
		} else if (strcasecmp(n, "Host") == 0) {
			hosts++;
		} else if (strcasecmp(n, "Connection") == 0) {
			close = close || list_has(v, "close");
			keep = keep || list_has(v, "keep-alive");
		} else if (strcasecmp(n, "Expect") == 0) {
			expect = v;
		}
	}
	/* RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0 */
	if (hosts > 1 || (hosts == 0 && p->req.version_minor >= 1))
		return fail(p, 400, "HTTP/1.1 request needs exactly one Host");
	/* RFC 9112 §6.1 */
	if (te != NULL) {
		if (cl != NULL)
			return fail(p, 400, "both Transfer-Encoding and Content-Length");
		if (p->req.version_minor == 0)
			return fail(p, 400, "Transfer-Encoding in HTTP/1.0");
		if (strcasecmp(te, "chunked") == 0)
			return fail(p, 411, "chunked bodies not supported; send Content-Length");
		return fail(p, 501, "transfer coding not supported");
	}
	/* RFC 9110 §8.6: Content-Length = 1*DIGIT */
	p->body_len = 0;
	if (cl != NULL) {
		size_t v = 0;
		if (*cl == '\0')
			return fail(p, 400, "malformed Content-Length");
		for (const char *c = cl; *c != '\0'; c++) {
			if (*c < '0' || *c > '9')
				return fail(p, 400, "malformed Content-Length");
			if (v <= p->lim.max_body) /* past it: check syntax only */
				v = v * 10 + (size_t)(*c - '0');
		}
		if (v > p->lim.max_body)
			return fail(p, 413, "body too large");
		p->body_len = v;
	}
	/* RFC 9110 §10.1.1 */
	p->expect_continue = false;
	if (expect != NULL) {
		if (strcasecmp(expect, "100-continue") != 0)
			return fail(p, 417, "unsupported expectation");
		p->expect_continue = p->req.version_minor >= 1;
	}
	/* RFC 9112 §9.3 */
	p->req.keep_alive = p->req.version_minor >= 1 ? !close : (keep && !close);
	return 0;
}

static int parse_head(struct pn_http_parser *p)
{
	char *head = (char *)pn_buf_rptr(&p->in);
	size_t pos = 0, len;
	char *line;

	/* The head holds no NUL we did not put there: string functions below
	 * must not stop early on a peer's NUL. */
	if (memchr(head, '\0', p->head_len) != NULL)
		return fail(p, 400, "NUL byte in request head");
	/* Every line of the head ends in LF and the last one is empty, so
	 * take_line() never looks past head_len. */
	memset(&p->req, 0, sizeof(p->req));
	p->req.headers = p->headers;
	line = take_line(head, &pos, &len);
	if (len == (size_t)-1)
		return fail(p, 400, "bare CR in request-line");
	if (parse_request_line(p, line, len) < 0)
		return -1;
	while (pos < p->head_len) {
		line = take_line(head, &pos, &len);
		if (len == (size_t)-1)
			return fail(p, 400, "bare CR in header field");
		if (len == 0)
			break; /* the empty line */
		if (parse_field(p, line, len) < 0)
			return -1;
	}
	return check_fields(p);
}

static void reset_for_next(struct pn_http_parser *p)
{
	pn_buf_consume(&p->in, p->head_len + p->body_len);
	p->state = ST_HEAD;
	p->scan = p->line_start = p->fields_start = 0;
	p->field_lines = 0;
	p->head_len = p->body_len = 0;
	p->empty_lines = 0;
	p->expect_continue = p->continue_due = false;
	memset(&p->req, 0, sizeof(p->req));
}

/* Feeding the body may have moved the buffer since the head was parsed:
 * points the request's strings at the head's new place. */
static void rebase_one(const struct pn_http_parser *p, uintptr_t base, const char **sp)
{
	uintptr_t v = (uintptr_t)*sp;

	if (*sp != NULL && v >= p->req_base && v < p->req_base + p->head_len)
		*sp = (const char *)(base + (v - p->req_base));
}

static void rebase(struct pn_http_parser *p)
{
	uintptr_t base = (uintptr_t)pn_buf_rptr(&p->in);

	if (base == p->req_base)
		return;
	rebase_one(p, base, &p->req.method);
	rebase_one(p, base, &p->req.path);
	rebase_one(p, base, &p->req.query);
	for (size_t i = 0; i < p->req.header_count; i++) {
		rebase_one(p, base, &p->headers[i].name);
		rebase_one(p, base, &p->headers[i].value);
	}
	p->req_base = base;
}

int pn_http_parser_next(struct pn_http_parser *p, struct pn_http_request *req_r)
{
	int r;

	switch (p->state) {
	case ST_ERROR:
		return -1;
	case ST_DONE:
		reset_for_next(p);
		/* fall through */
	case ST_HEAD:
		if (p->scan == 0 && (r = skip_empty_lines(p)) <= 0)
			return r;
		if ((r = scan_head(p)) <= 0)
			return r;
		if (parse_head(p) < 0)
			return -1;
		p->req_base = (uintptr_t)pn_buf_rptr(&p->in);
		p->state = ST_BODY;
		if (p->expect_continue && pn_buf_len(&p->in) < p->head_len + p->body_len)
			p->continue_due = true;
		/* fall through */
	case ST_BODY:
		if (pn_buf_len(&p->in) < p->head_len + p->body_len)
			return 0;
		rebase(p);
		p->req.body = pn_buf_rptr(&p->in) + p->head_len;
		p->req.body_len = p->body_len;
		p->continue_due = false;
		p->state = ST_DONE;
		*req_r = p->req;
		return 1;
	}
	return -1;
}

const char *pn_http_header_get(const struct pn_http_request *req, const char *name)
{
	for (size_t i = 0; i < req->header_count; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	}
	return NULL;
}

const char *pn_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

/* RFC 9110 §5.6.7: IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT";
 * day and month names spelled here, not by the locale. */
static void format_date(char *dst, size_t size)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	snprintf(dst, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
		 tm.tm_min, tm.tm_sec);
}

int pn_http_write_response(struct pn_buf *out, const struct pn_http_response *r)
{
	size_t before = pn_buf_len(out);
	char date[64];

	format_date(date, sizeof(date));
	if (pn_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", r->status,
			  pn_http_reason(r->status), date) < 0)
		goto fail;
	if (r->content_type != NULL &&
	    pn_buf_printf(out, "Content-Type: %s\r\n", r->content_type) < 0)
		goto fail;
	if (pn_buf_printf(out, "Content-Length: %zu\r\n", r->body_len) < 0)
		goto fail;
	if (!r->keep_alive && pn_buf_append_str(out, "Connection: close\r\n") < 0)
		goto fail;
	if (r->extra_headers != NULL && pn_buf_append_str(out, r->extra_headers) < 0)
		goto fail;
	if (pn_buf_append(out, "\r\n", 2) < 0)
		goto fail;
	if (!r->head_only && r->body_len > 0 && pn_buf_append(out, r->body, r->body_len) < 0)
		goto fail;
	return 0;
fail:
	/* drop the partial response; content before it is untouched */
	out->end = out->start + before;
	return -1;
}
