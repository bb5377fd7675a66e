/* Text for IMAP SEARCH: case folding of UTF-8 (a simple lower-case map in
 * the spirit of RFC 5051 i;unicode-casemap, covering ASCII, Latin-1, Latin
 * Extended-A, Greek and Cyrillic), decoded header and body text, and the
 * HEADER / BODY / TEXT substring searches of RFC 3501 6.4.4. */
#include "mime-private.h"

#include "postern/buf.h"
#include "postern/mail-decode.h"

#include <stdlib.h>
#include <strings.h>

#define SEARCH_KEY_MAX 65536
#define FOLD_CHUNK 16384

static uint32_t fold_cp(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c < 0x100)
		return c >= 0xC0 && c <= 0xDE && c != 0xD7 ? c + 32 : c;
	if (c < 0x180) {
		/* Latin Extended-A: upper/lower pairs, with the runs that
		 * start on an odd code point. */
		if (c == 0x130)
			return 'i';
		if (c == 0x178)
			return 0xFF;
		if (c == 0x17F)
			return 's';
		if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
			return (c & 1) ? c + 1 : c;
		if (c == 0x131 || c == 0x138 || c == 0x149)
			return c;
		return (c & 1) ? c : c + 1;
	}
	if (c >= 0x370 && c < 0x400) {
		if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
			return c + 32;
		if (c == 0x3C2)
			return 0x3C3; /* final sigma */
		if (c == 0x386)
			return 0x3AC;
		if (c >= 0x388 && c <= 0x38A)
			return c + 37;
		if (c == 0x38C)
			return 0x3CC;
		if (c == 0x38E || c == 0x38F)
			return c + 63;
		return c;
	}
	if (c >= 0x400 && c < 0x430) {
		if (c >= 0x410)
			return c + 32;
		return c + 80;
	}
	return c;
}

/* Decodes one code point of well-formed UTF-8 at in[0..len); returns its
 * length, or 0 if ill-formed. */
static size_t utf8_decode(const uint8_t *in, size_t len, uint32_t *cp)
{
	uint8_t c = in[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
	if (n == 0 || n > len || !mail_utf8_valid(in, n))
		return 0;
	uint32_t v = c & (0xFF >> (n + 1));
	for (size_t i = 1; i < n; i++)
		v = (v << 6) | (in[i] & 0x3F);
	*cp = v;
	return n;
}

int mail_casefold_utf8(const uint8_t *in, size_t len, struct pn_buf *out)
{
	size_t i = 0, run = 0;

	while (i < len) {
		uint8_t c = in[i];
		if (c < 0x80 && !(c >= 'A' && c <= 'Z')) {
			i++;
			continue;
		}
		if (pn_buf_append(out, in + run, i - run) < 0)
			return -1;
		uint32_t cp;
		size_t n = utf8_decode(in + i, len - i, &cp);
		if (n == 0) {
			cp = 0xFFFD;
			n = 1;
		}
		if (mime_utf8_put(out, fold_cp(cp)) < 0)
			return -1;
		i += n;
		run = i;
	}
	return pn_buf_append(out, in + run, len - run);
}

int mail_search_key_init(struct mail_search_key *key, const uint8_t *utf8,
			 size_t len)
{
	struct pn_buf b;

	key->folded = NULL;
	key->len = 0;
	if (len > SEARCH_KEY_MAX)
		return -1;
	pn_buf_init(&b, 3 * len + 16);
	if (mail_casefold_utf8(utf8, len, &b) < 0 || pn_buf_reserve(&b, 1) == NULL) {
		pn_buf_free(&b);
		return -1;
	}
	key->len = pn_buf_len(&b);
	key->folded = b.data; /* start is 0: nothing was consumed */
	return 0;
}

void mail_search_key_free(struct mail_search_key *key)
{
	free(key->folded);
	key->folded = NULL;
	key->len = 0;
}

int mail_search_text_match(const struct mail_search_key *key,
			   const uint8_t *text, size_t len)
{
	struct pn_buf w;
	size_t i = 0;
	int ret = 0;

	if (key->len == 0)
		return 1;
	pn_buf_init(&w, key->len + 3 * FOLD_CHUNK + 16);
	while (i < len) {
		size_t n = len - i < FOLD_CHUNK ? len - i : FOLD_CHUNK;
		/* Cut at a code point start so no sequence is split. */
		size_t cut = n;
		while (i + cut < len && cut > 0 && (text[i + cut] & 0xC0) == 0x80)
			cut--;
		if (cut > 0)
			n = cut;
		if (mail_casefold_utf8(text + i, n, &w) < 0) {
			ret = -1;
			break;
		}
		if (memmem(mime_buf_ptr(&w), pn_buf_len(&w), key->folded, key->len)) {
			ret = 1;
			break;
		}
		if (pn_buf_len(&w) >= key->len)
			pn_buf_consume(&w, pn_buf_len(&w) - (key->len - 1));
		i += n;
	}
	pn_buf_free(&w);
	return ret;
}

static int field_text(const struct mail_header_field *f, bool with_name,
		      struct pn_buf *out)
{
	if (with_name && f->name_len > 0 &&
	    (pn_buf_append(out, f->name, f->name_len) < 0 ||
	     pn_buf_append(out, ": ", 2) < 0))
		return -1;
	size_t i = 0;
	while (i < f->value_len && mime_is_wsp(f->value[i]))
		i++;
	if (mail_rfc2047_decode(f->value + i, f->value_len - i, out) < 0)
		return -1;
	return pn_buf_append(out, "\n", 1);
}

int mail_header_text(const struct mail_message *msg, const struct mail_part *part,
		     const char *name, struct pn_buf *out)
{
	const uint8_t *hdr = msg->data + part->hdr_off;
	struct mail_header_field f;
	size_t pos = 0;

	while (mail_header_next(hdr, part->hdr_size, &pos, &f) > 0) {
		if (name != NULL &&
		    (f.name_len == 0 || !mime_strcaseeq_n(f.name, f.name_len, name)))
			continue;
		if (field_text(&f, name == NULL, out) < 0)
			return -1;
	}
	return 0;
}

int mail_part_text(const struct mail_message *msg, const struct mail_part *part,
		   struct pn_buf *out)
{
	const uint8_t *body = msg->data + part->body_off;
	size_t len = part->body_size;
	struct pn_buf tmp;
	int ret = -1;

	pn_buf_init(&tmp, len + 16);
	if (part->cte == MAIL_CTE_QP || part->cte == MAIL_CTE_BASE64) {
		int r = part->cte == MAIL_CTE_QP ? mail_qp_decode(body, len, &tmp)
						 : mail_base64_decode(body, len, &tmp);
		if (r < 0)
			goto out;
		body = pn_buf_len(&tmp) > 0 ? mime_buf_ptr(&tmp) : body;
		len = pn_buf_len(&tmp);
	}
	if (!(part->flags & MAIL_PART_TEXT)) {
		ret = pn_buf_append(out, body, len);
		goto out;
	}
	const struct mail_param *cs =
		mail_param_find(part->params, part->n_params, "charset");
	char charset[64];
	charset[0] = '\0';
	if (cs != NULL && !cs->extended && strlen(cs->value) < sizeof(charset))
		memcpy(charset, cs->value, strlen(cs->value) + 1);
	ret = mail_charset_to_utf8(charset[0] != '\0' ? charset : NULL, body, len,
				   out) < 0 ? -1 : 0;
out:
	pn_buf_free(&tmp);
	return ret;
}

int mail_search_header(const struct mail_message *msg, const char *name,
		       const struct mail_search_key *key, size_t max_bytes)
{
	const struct mail_part *root = msg->root;
	const uint8_t *hdr = msg->data + root->hdr_off;
	struct mail_header_field f;
	struct pn_buf b;
	size_t pos = 0;
	int ret = 0;

	pn_buf_init(&b, max_bytes);
	while (ret == 0 && mail_header_next(hdr, root->hdr_size, &pos, &f) > 0) {
		if (f.name_len == 0 || !mime_strcaseeq_n(f.name, f.name_len, name))
			continue;
		if (key->len == 0) {
			ret = 1;
			break;
		}
		pn_buf_reset(&b);
		if (field_text(&f, false, &b) < 0) {
			ret = -1;
			break;
		}
		ret = mail_search_text_match(key, mime_buf_ptr(&b), pn_buf_len(&b));
	}
	pn_buf_free(&b);
	return ret;
}

/* Text parts anywhere in the tree, and the headers of encapsulated
 * messages (they are part of the outer message's body). */
static int search_parts(const struct mail_message *msg, const struct mail_part *p,
			const struct mail_search_key *key, struct pn_buf *b)
{
	for (; p != NULL; p = p->next) {
		int ret = 0;
		pn_buf_reset(b);
		if (p->parent != NULL && (p->parent->flags & MAIL_PART_MESSAGE)) {
			if (mail_header_text(msg, p, NULL, b) < 0)
				return -1;
			ret = mail_search_text_match(key, mime_buf_ptr(b), pn_buf_len(b));
			pn_buf_reset(b);
		}
		if (ret == 0 && p->children != NULL)
			ret = search_parts(msg, p->children, key, b);
		else if (ret == 0 && (p->flags & MAIL_PART_TEXT) &&
			 !(p->flags & (MAIL_PART_MULTIPART | MAIL_PART_MESSAGE |
				       MAIL_PART_OPAQUE))) {
			if (mail_part_text(msg, p, b) < 0)
				return -1;
			ret = mail_search_text_match(key, mime_buf_ptr(b), pn_buf_len(b));
		}
		if (ret != 0)
			return ret;
	}
	return 0;
}

int mail_search_body(const struct mail_message *msg,
		     const struct mail_search_key *key, size_t max_bytes)
{
	struct pn_buf b;

	if (key->len == 0)
		return 1;
	pn_buf_init(&b, max_bytes);
	const struct mail_part *root = msg->root;
	int ret;
	if (root->children != NULL) {
		ret = search_parts(msg, root->children, key, &b);
	} else if ((root->flags & MAIL_PART_TEXT) &&
		   !(root->flags & (MAIL_PART_MULTIPART | MAIL_PART_OPAQUE))) {
		ret = mail_part_text(msg, root, &b) < 0 ? -1
			: mail_search_text_match(key, mime_buf_ptr(&b), pn_buf_len(&b));
	} else {
		ret = 0;
	}
	pn_buf_free(&b);
	return ret;
}

int mail_search_text(const struct mail_message *msg,
		     const struct mail_search_key *key, size_t max_bytes)
{
	struct pn_buf b;
	int ret;

	if (key->len == 0)
		return 1;
	pn_buf_init(&b, max_bytes);
	ret = mail_header_text(msg, msg->root, NULL, &b) < 0 ? -1
		: mail_search_text_match(key, mime_buf_ptr(&b), pn_buf_len(&b));
	pn_buf_free(&b);
	if (ret != 0)
		return ret;
	return mail_search_body(msg, key, max_bytes);
}
