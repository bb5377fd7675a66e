/* Content-* field values (RFC 2045, RFC 2183, RFC 3282): Content-Type with
 * its parameters, Content-Disposition, Content-Language and
 * Content-Transfer-Encoding, RFC 2231 parameter continuations and charsets,
 * and decoding a parameter value to UTF-8. Input values are unfolded,
 * NUL-terminated strings; results go into the message arena. */
#include "mime-private.h"

#include "mail-arena.h"
#include "postern/buf.h"
#include "postern/mail-decode.h"

#include <stdlib.h>
#include <strings.h>

/* Parameters are gathered on the stack before RFC 2231 merging; this
 * bounds max_params whatever the caller asked for. */
#define PARAMS_HARD_MAX 256
#define LANGUAGES_MAX 32

/* RFC 2045 5.1:
 *   token    := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
 *   tspecials := "(" / ")" / "<" / ">" / "@" / "," / ";" / ":" / "\" /
 *                <"> / "/" / "[" / "]" / "?" / "=" */
static bool is_token_char(unsigned char c)
{
	if (c <= 32 || c >= 127)
		return false;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* Skips whitespace and RFC 5322 comments (nested, with quoted-pairs). */
static const char *skip_cfws(const char *p)
{
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '(')
			return p;
		int level = 0;
		while (*p != '\0') {
			if (*p == '\\' && p[1] != '\0') {
				p += 2;
				continue;
			}
			if (*p == '(')
				level++;
			else if (*p == ')' && --level == 0) {
				p++;
				break;
			}
			p++;
		}
	}
}

static const char *skip_token(const char *p)
{
	while (is_token_char((unsigned char)*p))
		p++;
	return p;
}

/* Skips to the next ';' outside quoted strings (or the end). */
static const char *skip_to_semicolon(const char *p)
{
	while (*p != '\0' && *p != ';') {
		if (*p == '"') {
			p++;
			while (*p != '\0' && *p != '"') {
				if (*p == '\\' && p[1] != '\0')
					p++;
				p++;
			}
			if (*p == '"')
				p++;
		} else if (*p == '(') {
			const char *q = skip_cfws(p);
			p = q == p ? p + 1 : q;
		} else {
			p++;
		}
	}
	return p;
}

struct raw_param {
	const char *name;
	size_t name_len;
	const char *value; /* arena copy, unquoted */
	size_t value_len;
	/* RFC 2231 */
	bool is2231, ext, used;
	long idx; /* -1: "name*" */
	size_t base_len;
};

/* quoted-string (RFC 5322 3.2.4) starting at the opening quote: copies the
 * content with quoted-pairs resolved into the arena. */
static const char *parse_quoted(struct mail_arena *arena, const char *p,
				const char **value_r, size_t *len_r)
{
	const char *start = ++p;
	size_t n = 0;
	while (*p != '\0' && *p != '"') {
		if (*p == '\\' && p[1] != '\0')
			p++;
		p++;
		n++;
	}
	char *v = mail_arena_alloc(arena, n + 1);
	if (v == NULL)
		return NULL;
	size_t i = 0;
	for (const char *q = start; q < p; q++) {
		if (*q == '\\' && q + 1 < p)
			q++;
		v[i++] = *q;
	}
	v[i] = '\0';
	*value_r = v;
	*len_r = i;
	return *p == '"' ? p + 1 : p;
}

/* An unquoted value. Besides tokens this takes what real mail contains:
 * tspecials such as '=' in "boundary=----=_Part_1", and spaces inside
 * (name=my file.pdf). It ends at ';', a comment or a quote. */
static const char *parse_unquoted(const char *p, const char **start_r,
				  size_t *len_r)
{
	const char *start = p, *end;
	for (;;) {
		while (*p != '\0' && *p != ';' && *p != '"' && *p != '(' &&
		       *p != ' ' && *p != '\t')
			p++;
		end = p;
		const char *q = p;
		while (*q == ' ' || *q == '\t')
			q++;
		if (q != p && *q != '\0' && *q != ';' && *q != '(' && *q != '"') {
			p = q;
			continue;
		}
		break;
	}
	*start_r = start;
	*len_r = (size_t)(end - start);
	return end;
}

/* RFC 2231 3/4: name*  name*N  name*N*  (section numbers without leading
 * zeros are not required here; any digits are taken). */
static void classify_2231(struct raw_param *r)
{
	const char *star = memchr(r->name, '*', r->name_len);
	if (star == NULL || star == r->name)
		return;
	const char *p = star + 1, *end = r->name + r->name_len;
	r->base_len = (size_t)(star - r->name);
	if (p == end) {
		r->is2231 = r->ext = true;
		r->idx = -1;
		return;
	}
	long idx = 0;
	const char *digits = p;
	while (p < end && *p >= '0' && *p <= '9' && idx < 100000)
		idx = idx * 10 + (*p++ - '0');
	if (p == digits)
		return;
	bool ext = false;
	if (p < end && *p == '*') {
		ext = true;
		p++;
	}
	if (p != end)
		return;
	r->is2231 = true;
	r->ext = ext;
	r->idx = idx;
}

static bool same_base(const struct raw_param *a, const struct raw_param *b)
{
	return a->base_len == b->base_len &&
	       strncasecmp(a->name, b->name, a->base_len) == 0;
}

static int emit_plain(struct mail_arena *arena, struct mail_param *out,
		      const struct raw_param *r)
{
	out->name = mail_arena_strndup(arena, r->name, r->name_len);
	out->value = r->value;
	out->extended = r->ext && r->is2231 && r->idx == -1;
	if (out->extended)
		out->name = mail_arena_strndup(arena, r->name, r->base_len);
	return out->name == NULL ? -1 : 0;
}

static int cmp_idx(const void *a, const void *b)
{
	const struct raw_param *x = *(const struct raw_param *const *)a;
	const struct raw_param *y = *(const struct raw_param *const *)b;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Merges the continuation segments of one parameter (RFC 2231 3, 4.1).
 * Returns the number of params written to out (1, or the segments one by
 * one when numbering is broken), or -1 (arena full). */
static int merge_2231(struct mail_arena *arena, struct raw_param *raw,
		      unsigned int n_raw, unsigned int first,
		      struct mail_param *out, unsigned int room)
{
	struct raw_param *seg[PARAMS_HARD_MAX];
	unsigned int n = 0;
	bool any_ext = false, ok = true;

	for (unsigned int j = first; j < n_raw; j++) {
		if (!raw[j].used && raw[j].is2231 && same_base(&raw[first], &raw[j])) {
			raw[j].used = true;
			seg[n++] = &raw[j];
			any_ext = any_ext || raw[j].ext;
		}
	}
	if (n == 1 && seg[0]->idx == -1)
		return emit_plain(arena, out, seg[0]) < 0 ? -1 : 1;
	qsort(seg, n, sizeof(seg[0]), cmp_idx);
	for (unsigned int j = 0; j < n; j++) {
		if (seg[j]->idx != (long)j)
			ok = false;
	}
	if (!ok) {
		/* Missing or repeated sections: keep them as written. */
		unsigned int k;
		for (k = 0; k < n && k < room; k++) {
			out[k].name = mail_arena_strndup(arena, seg[k]->name,
							 seg[k]->name_len);
			out[k].value = seg[k]->value;
			out[k].extended = false;
			if (out[k].name == NULL)
				return -1;
		}
		return (int)k;
	}
	size_t total = 3;
	for (unsigned int j = 0; j < n; j++)
		total += seg[j]->value_len * 3;
	char *v = mail_arena_alloc(arena, total), *w = v;
	if (v == NULL)
		return -1;
	if (any_ext && !seg[0]->ext) {
		/* RFC 2231 4: the first extended segment carries
		 * charset'language'; a plain first segment has none. */
		*w++ = '\'';
		*w++ = '\'';
	}
	for (unsigned int j = 0; j < n; j++) {
		for (size_t k = 0; k < seg[j]->value_len; k++) {
			char c = seg[j]->value[k];
			if (any_ext && !seg[j]->ext && c == '%') {
				memcpy(w, "%25", 3);
				w += 3;
			} else {
				*w++ = c;
			}
		}
	}
	*w = '\0';
	out->name = mail_arena_strndup(arena, seg[0]->name, seg[0]->base_len);
	out->value = v;
	out->extended = any_ext;
	return out->name == NULL ? -1 : 1;
}

/* RFC 2045 5.1:  *(";" parameter)   parameter := attribute "=" value
 *                value := token / quoted-string */
static int parse_params(struct mail_arena *arena, unsigned int max,
			const char *p, struct mail_param **params_r,
			unsigned int *n_r, bool *limited)
{
	struct raw_param raw[PARAMS_HARD_MAX];
	unsigned int n_raw = 0;

	if (max > PARAMS_HARD_MAX)
		max = PARAMS_HARD_MAX;
	*params_r = NULL;
	*n_r = 0;
	while (*p != '\0') {
		p = skip_cfws(p);
		if (*p == ';') {
			p++;
			continue;
		}
		if (*p == '\0')
			break;
		const char *name = p;
		p = skip_token(p);
		size_t name_len = (size_t)(p - name);
		p = skip_cfws(p);
		if (name_len == 0 || *p != '=') {
			p = skip_to_semicolon(p == name ? p + 1 : p);
			continue;
		}
		p = skip_cfws(p + 1);
		const char *value;
		size_t value_len;
		if (*p == '"') {
			p = parse_quoted(arena, p, &value, &value_len);
			if (p == NULL)
				return -1;
		} else {
			const char *start;
			p = parse_unquoted(p, &start, &value_len);
			value = mail_arena_strndup(arena, start, value_len);
			if (value == NULL)
				return -1;
		}
		p = skip_to_semicolon(p);
		if (n_raw == max) {
			*limited = true;
			continue;
		}
		struct raw_param *r = &raw[n_raw++];
		memset(r, 0, sizeof(*r));
		r->name = name;
		r->name_len = name_len;
		r->value = value;
		r->value_len = value_len;
		classify_2231(r);
	}
	if (n_raw == 0)
		return 0;

	struct mail_param *params = mail_arena_alloc(arena, n_raw * sizeof(*params));
	unsigned int n = 0;
	if (params == NULL)
		return -1;
	for (unsigned int i = 0; i < n_raw; i++) {
		if (raw[i].used)
			continue;
		if (!raw[i].is2231) {
			raw[i].used = true;
			if (emit_plain(arena, &params[n++], &raw[i]) < 0)
				return -1;
			continue;
		}
		int k = merge_2231(arena, raw, n_raw, i, &params[n], n_raw - n);
		if (k < 0)
			return -1;
		n += (unsigned int)k;
	}
	*params_r = params;
	*n_r = n;
	return 0;
}

/* RFC 2045 5.1:  content := "Content-Type" ":" type "/" subtype
 *                           *(";" parameter) */
int mime_parse_content_type(struct mail_arena *arena, unsigned int max_params,
			    const char *value, struct mail_part *part,
			    bool *limited)
{
	const char *p = skip_cfws(value), *type = p;
	p = skip_token(p);
	size_t type_len = (size_t)(p - type);
	p = skip_cfws(p);
	if (type_len == 0 || *p != '/')
		return 0;
	p = skip_cfws(p + 1);
	const char *sub = p;
	p = skip_token(p);
	size_t sub_len = (size_t)(p - sub);
	if (sub_len == 0)
		return 0;
	p = skip_cfws(p);
	if (*p != '\0' && *p != ';')
		return 0;
	part->type = mail_arena_strndup(arena, type, type_len);
	part->subtype = mail_arena_strndup(arena, sub, sub_len);
	if (part->type == NULL || part->subtype == NULL)
		return -1;
	if (parse_params(arena, max_params, p, &part->params, &part->n_params,
			 limited) < 0)
		return -1;
	return 1;
}

/* RFC 2183 2:  disposition := "Content-Disposition" ":" disposition-type
 *                              *(";" disposition-parm) */
int mime_parse_content_disposition(struct mail_arena *arena,
				   unsigned int max_params, const char *value,
				   struct mail_part *part, bool *limited)
{
	const char *p = skip_cfws(value), *tok = p;
	p = skip_token(p);
	if (p == tok)
		return 0;
	part->disposition = mail_arena_strndup(arena, tok, (size_t)(p - tok));
	if (part->disposition == NULL)
		return -1;
	return parse_params(arena, max_params, p, &part->disp_params,
			    &part->n_disp_params, limited);
}

/* RFC 3282 2:  Content-Language = "Content-Language" ":" 1#Language-tag */
int mime_parse_content_language(struct mail_arena *arena, const char *value,
				struct mail_part *part)
{
	const char *tags[LANGUAGES_MAX];
	size_t lens[LANGUAGES_MAX];
	unsigned int n = 0;
	const char *p = value;

	for (;;) {
		p = skip_cfws(p);
		while (*p == ',')
			p = skip_cfws(p + 1);
		const char *tok = p;
		p = skip_token(p);
		if (p == tok)
			break;
		if (n < LANGUAGES_MAX) {
			tags[n] = tok;
			lens[n++] = (size_t)(p - tok);
		}
		p = skip_cfws(p);
		if (*p != ',')
			break;
	}
	if (n == 0)
		return 0;
	part->languages = mail_arena_alloc(arena, n * sizeof(char *));
	if (part->languages == NULL)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		part->languages[i] = mail_arena_strndup(arena, tags[i], lens[i]);
		if (part->languages[i] == NULL)
			return -1;
	}
	part->n_languages = n;
	return 0;
}

/* RFC 2045 6.1:  encoding := "Content-Transfer-Encoding" ":" mechanism
 *   mechanism := "7bit" / "8bit" / "binary" / "quoted-printable" /
 *                "base64" / ietf-token / x-token
 * Anything that is not one token is ignored (written as "7bit"). */
int mime_parse_cte(struct mail_arena *arena, const char *value,
		   struct mail_part *part)
{
	static const struct {
		const char *name;
		enum mail_cte cte;
	} known[] = {
		{ "7bit", MAIL_CTE_7BIT },
		{ "8bit", MAIL_CTE_8BIT },
		{ "binary", MAIL_CTE_BINARY },
		{ "quoted-printable", MAIL_CTE_QP },
		{ "base64", MAIL_CTE_BASE64 },
	};
	const char *p = skip_cfws(value), *tok = p;
	p = skip_token(p);
	size_t len = (size_t)(p - tok);
	if (len == 0 || *skip_cfws(p) != '\0')
		return 0;
	part->encoding = mail_arena_strndup(arena, tok, len);
	if (part->encoding == NULL)
		return -1;
	part->cte = MAIL_CTE_OTHER;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcasecmp(part->encoding, known[i].name) == 0)
			part->cte = known[i].cte;
	}
	return 0;
}

const struct mail_param *mail_param_find(const struct mail_param *params,
					 unsigned int n, const char *name)
{
	for (unsigned int i = 0; i < n; i++) {
		if (strcasecmp(params[i].name, name) == 0)
			return &params[i];
	}
	return NULL;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 2231 4:  extended-initial-value := [charset] "'" [language] "'"
 *                                        extended-other-values
 * Splits off charset (copied into charset[]) and returns the start of the
 * percent-encoded text. */
static const char *split_ext(const char *v, char *charset, size_t size)
{
	const char *q1 = strchr(v, '\''), *q2;
	charset[0] = '\0';
	if (q1 == NULL || (q2 = strchr(q1 + 1, '\'')) == NULL)
		return v;
	size_t n = (size_t)(q1 - v);
	if (n < size) {
		memcpy(charset, v, n);
		charset[n] = '\0';
	}
	return q2 + 1;
}

static size_t percent_decode(const char *in, uint8_t *out)
{
	size_t n = 0;
	for (const char *p = in; *p != '\0'; p++) {
		int h, l;
		if (*p == '%' && (h = hexval((unsigned char)p[1])) >= 0 &&
		    (l = hexval((unsigned char)p[2])) >= 0) {
			out[n++] = (uint8_t)(h * 16 + l);
			p += 2;
		} else {
			out[n++] = (uint8_t)*p;
		}
	}
	return n;
}

int mail_param_decode(const struct mail_param *param, struct pn_buf *out)
{
	const char *v = param->value;

	if (!param->extended)
		return mail_rfc2047_decode((const uint8_t *)v, strlen(v), out);
	char charset[64];
	const char *text = split_ext(v, charset, sizeof(charset));
	size_t len = strlen(text);
	uint8_t small[256], *bytes = len <= sizeof(small) ? small : malloc(len);
	if (bytes == NULL)
		return -1;
	size_t n = percent_decode(text, bytes);
	int ret = mail_charset_to_utf8(charset[0] != '\0' ? charset : NULL,
				       bytes, n, out);
	if (bytes != small)
		free(bytes);
	return ret < 0 ? -1 : 0;
}

char *mime_param_raw_value(struct mail_arena *arena,
			   const struct mail_param *param, size_t *len_r)
{
	if (!param->extended) {
		*len_r = strlen(param->value);
		return (char *)param->value;
	}
	char charset[64];
	const char *text = split_ext(param->value, charset, sizeof(charset));
	char *s = mail_arena_alloc(arena, strlen(text) + 1);
	if (s == NULL)
		return NULL;
	*len_r = percent_decode(text, (uint8_t *)s);
	s[*len_r] = '\0';
	return s;
}
