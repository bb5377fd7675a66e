/* Transfer decodings: base64 and quoted-printable bodies (RFC 2045 6.7,
 * 6.8) and RFC 2047 encoded words in header values, decoded to UTF-8. */
#include "mime-private.h"

#include "postern/buf.h"
#include "postern/mail-decode.h"

#include <stdlib.h>

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* RFC 2045 6.8: "Any characters outside of the base64 alphabet are to be
 * ignored in base64-encoded data." The first '=' ends the data. */
int mail_base64_decode(const uint8_t *in, size_t len, struct pn_buf *out)
{
	uint8_t chunk[1024];
	size_t n = 0;
	uint32_t acc = 0;
	unsigned int bits = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '=')
			break;
		int v = b64val(in[i]);
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			chunk[n++] = (uint8_t)(acc >> bits);
			if (n == sizeof(chunk)) {
				if (pn_buf_append(out, chunk, n) < 0)
					return -1;
				n = 0;
			}
		}
	}
	return pn_buf_append(out, chunk, n);
}

/* RFC 2045 6.7: "=" 2HEX, soft line breaks ("=" at the end of a line),
 * and (rule 3) trailing whitespace on a line is removed by the decoder.
 * Line ends are kept as they are. */
int mail_qp_decode(const uint8_t *in, size_t len, struct pn_buf *out)
{
	size_t pos = 0;

	while (pos < len) {
		size_t le = mime_line_end(in, len, pos);
		size_t eol = mime_eol_len(in + pos, le - pos);
		size_t end = le - eol;
		while (end > pos && mime_is_wsp(in[end - 1]))
			end--;
		bool soft = false;
		size_t run = pos;
		for (size_t i = pos; i < end; i++) {
			if (in[i] != '=')
				continue;
			int h, l;
			if (i + 1 == end) {
				soft = true;
			} else if (i + 2 < end && (h = hexval(in[i + 1])) >= 0 &&
				   (l = hexval(in[i + 2])) >= 0) {
				uint8_t b = (uint8_t)(h * 16 + l);
				if (pn_buf_append(out, in + run, i - run) < 0 ||
				    pn_buf_append(out, &b, 1) < 0)
					return -1;
				i += 2;
				run = i + 1;
				continue;
			} else {
				continue; /* malformed: keep "=" */
			}
			if (pn_buf_append(out, in + run, i - run) < 0)
				return -1;
			run = end;
			break;
		}
		if (pn_buf_append(out, in + run, end - run) < 0)
			return -1;
		if (!soft && pn_buf_append(out, in + le - eol, eol) < 0)
			return -1;
		pos = le;
	}
	return 0;
}

/* RFC 2047 2:
 *   encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
 * charset may carry an RFC 2231 5 language suffix ("utf-8*en"). Finds an
 * encoded word at in[0..len) (no whitespace inside). */
/* The longest charset name an encoded word may carry (IANA's longest is
 * 45 bytes); a longer one is not an encoded word. */
#define EW_CHARSET_MAX 63

struct ew {
	const uint8_t *charset;
	size_t charset_len;
	char enc;
	const uint8_t *text;
	size_t text_len;
	size_t total;
};

/* Returns true with *ew filled. On failure *horizon_r is set when no
 * encoded word can start before it: the scan met whitespace or the end
 * without finding the closing "?=", and would again for any later start
 * inside the same run (this keeps decoding linear on hostile input). */
static bool ew_parse(const uint8_t *in, size_t len, struct ew *ew,
		     size_t *horizon_r)
{
	size_t i = 2;

	*horizon_r = 0;
	if (len < 8 || in[0] != '=' || in[1] != '?')
		return false;
	while (i < len && i < 2 + EW_CHARSET_MAX && in[i] != '?' && in[i] > ' ' && in[i] < 127)
		i++;
	if (i == 2 || i + 2 >= len || in[i] != '?')
		return false;
	ew->charset = in + 2;
	ew->charset_len = i - 2;
	const uint8_t *star = memchr(ew->charset, '*', ew->charset_len);
	if (star != NULL)
		ew->charset_len = (size_t)(star - ew->charset);
	char enc = (char)in[i + 1];
	if (enc == 'b')
		enc = 'B';
	if (enc == 'q')
		enc = 'Q';
	if ((enc != 'B' && enc != 'Q') || in[i + 2] != '?')
		return false;
	ew->enc = enc;
	size_t t = i + 3;
	for (i = t; i + 1 < len; i++) {
		if (in[i] == '?' && in[i + 1] == '=')
			break;
		if (in[i] <= ' ' || in[i] >= 127) {
			*horizon_r = i;
			return false;
		}
	}
	if (i + 1 >= len) {
		*horizon_r = len;
		return false;
	}
	if (ew->charset_len == 0)
		return false;
	ew->text = in + t;
	ew->text_len = i - t;
	ew->total = i + 2;
	return true;
}

/* RFC 2047 4.2: the "Q" encoding: "_" is a space, "=" 2HEX a byte. */
static int q_decode(const uint8_t *in, size_t len, struct pn_buf *out)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = in[i];
		int h, l;
		if (b == '_') {
			b = ' ';
		} else if (b == '=' && i + 2 < len && (h = hexval(in[i + 1])) >= 0 &&
			   (l = hexval(in[i + 2])) >= 0) {
			b = (uint8_t)(h * 16 + l);
			i += 2;
		}
		if (pn_buf_append(out, &b, 1) < 0)
			return -1;
	}
	return 0;
}

struct rfc2047_ctx {
	struct pn_buf *out;
	struct pn_buf pending; /* decoded bytes of adjacent words */
	char charset[EW_CHARSET_MAX + 1];
};

static int flush_pending(struct rfc2047_ctx *c)
{
	if (pn_buf_len(&c->pending) == 0)
		return 0;
	int ret = mail_charset_to_utf8(c->charset, mime_buf_ptr(&c->pending),
				       pn_buf_len(&c->pending), c->out);
	pn_buf_reset(&c->pending);
	return ret < 0 ? -1 : 0;
}

/* Plain text between encoded words: unfolded, 8-bit read as UTF-8 or
 * Windows-1252. */
static int emit_plain(struct rfc2047_ctx *c, const uint8_t *in, size_t len)
{
	size_t run = 0;
	if (len == 0)
		return 0;
	if (flush_pending(c) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' || in[i] == '\n' || in[i] == '\0') {
			if (mime_raw_to_utf8(in + run, i - run, c->out) < 0)
				return -1;
			run = i + 1;
		}
	}
	return mime_raw_to_utf8(in + run, len - run, c->out);
}

int mail_rfc2047_decode(const uint8_t *in, size_t len, struct pn_buf *out)
{
	struct rfc2047_ctx c;
	size_t i = 0, plain = 0;
	bool after_ew = false;
	int ret = -1;

	c.out = out;
	c.charset[0] = '\0';
	pn_buf_init(&c.pending, len + 16);
	size_t no_ew_until = 0, horizon;
	while (i < len) {
		struct ew ew;
		if (i >= no_ew_until && in[i] == '=' && i + 1 < len && in[i + 1] == '?' &&
		    (ew_parse(in + i, len - i, &ew, &horizon) ||
		     (no_ew_until = i + horizon, false))) {
			/* RFC 2047 6.2: whitespace between adjacent encoded
			 * words is not displayed. */
			if (!after_ew && emit_plain(&c, in + plain, i - plain) < 0)
				goto out;
			if (pn_buf_len(&c.pending) > 0 &&
			    (strlen(c.charset) != ew.charset_len ||
			     !mime_strcaseeq_n(ew.charset, ew.charset_len, c.charset)) &&
			    flush_pending(&c) < 0)
				goto out;
			memcpy(c.charset, ew.charset, ew.charset_len);
			c.charset[ew.charset_len] = '\0';
			int r = ew.enc == 'B'
				? mail_base64_decode(ew.text, ew.text_len, &c.pending)
				: q_decode(ew.text, ew.text_len, &c.pending);
			if (r < 0)
				goto out;
			i += ew.total;
			plain = i;
			after_ew = true;
			continue;
		}
		if (after_ew) {
			size_t j = i;
			while (j < len && (mime_is_wsp(in[j]) || in[j] == '\r' ||
					   in[j] == '\n'))
				j++;
			if (j > i && j < len && j >= no_ew_until && in[j] == '=' &&
			    (ew_parse(in + j, len - j, &ew, &horizon) ||
			     (no_ew_until = j + horizon, false))) {
				i = j;
				plain = j;
				continue;
			}
			after_ew = false;
		}
		i++;
	}
	if (emit_plain(&c, in + plain, len - plain) < 0 || flush_pending(&c) < 0)
		goto out;
	ret = 0;
out:
	pn_buf_free(&c.pending);
	return ret;
}
