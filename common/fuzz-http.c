/* libFuzzer target for the HTTP request parser (postern/http.h). The first
 * input byte picks small or default limits and the chunk size the rest is
 * fed in, so both the limit paths and split reads get exercised. Every
 * returned request is checked against the contract and answered through
 * the response writer, as the admin server would. */
#include "postern/http.h"


#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct pn_http_limits small = { 40, 4, 96, 32 };
	struct pn_http_parser *p;
	struct pn_http_request req;
	struct pn_buf out;
	size_t chunk;
	int r = 0;

	if (size < 1)
		return 0;
	p = pn_http_parser_new((data[0] & 1) ? &small : NULL);
	if (p == NULL)
		return 0;
	chunk = (size_t)(data[0] >> 1) + 1;
	data++;
	size--;
	pn_buf_init(&out, 1 << 16);
	while (size > 0 && r >= 0) {
		size_t want = size < chunk ? size : chunk;
		size_t n = pn_http_parser_feed(p, data, want);
		if (n > want)
			abort();
		data += n;
		size -= n;
		if (pn_http_parser_take_continue(p))
			pn_buf_append_str(&out, PN_HTTP_CONTINUE);
		while ((r = pn_http_parser_next(p, &req)) == 1) {
			if (req.method == NULL || req.path == NULL || req.method[0] == '\0')
				abort();
			if (req.version_minor != 0 && req.version_minor != 1)
				abort();
			if (req.body_len > 0 && req.body == NULL)
				abort();
			for (size_t i = 0; i < req.header_count; i++) {
				if (strlen(req.headers[i].name) == 0)
					abort();
				(void)strlen(req.headers[i].value);
			}
			(void)pn_http_header_get(&req, "host");
			pn_http_write_response(&out, &(struct pn_http_response){
				.status = 200, .content_type = "text/plain",
				.body = req.body, .body_len = req.body_len,
				.keep_alive = req.keep_alive });
			pn_buf_reset(&out);
		}
		if (r < 0) {
			int st = pn_http_parser_error_status(p);
			if (st < 400 || st > 599 || pn_http_parser_error(p) == NULL)
				abort();
		} else if (n == 0) {
			/* the parser took nothing yet needs more: a deadlock */
			abort();
		}
	}
	pn_buf_free(&out);
	pn_http_parser_free(&p);
	return 0;
}
