/* The MIME tree parser: one pass over the lines of a complete message in
 * memory (RFC 5322 header/body, RFC 2045/2046 multipart and
 * message/rfc822), keeping a chain of the parts that are open from the root
 * to the current one. Each header is parsed for its Content-* fields and,
 * for messages, its envelope fields. See postern/mail-message.h for the
 * rules applied to broken input and the limits. */
#include "mime-private.h"

#include "mail-arena.h"
#include "postern/buf.h"

#include <stdlib.h>
#include <strings.h>

#define DEPTH_HARD_MAX 100
#define BOUNDARY_MAX 1000

enum part_state { ST_HEADER, ST_BODY };

/* An open part. Positions go with the number of LFs before them, for the
 * line counts. */
struct open_part {
	struct mail_part *part;
	enum part_state state;
	const uint8_t *boundary; /* active: a multipart not yet closed */
	size_t blen;
	struct mail_part **tail; /* where the next child goes */
	size_t hdr_lf, body_lf;
	size_t end_max, end_max_lf; /* end of the last closed child */
};

struct parse_ctx {
	const uint8_t *data;
	size_t size;
	struct mail_message *msg;
	struct mail_limits lim;
	struct open_part chain[DEPTH_HARD_MAX + 2];
	int top;
	unsigned int n_active; /* open multiparts with an active boundary */
	bool failed;           /* arena full */
};

void mail_limits_default(struct mail_limits *l)
{
	l->max_depth = 20;
	l->max_parts = 2000;
	l->max_params = 64;
	l->max_addresses = 2000;
	l->max_memory = 32 * 1024 * 1024;
}

static void limited(struct parse_ctx *ctx)
{
	ctx->msg->flags |= MAIL_MSG_LIMITED;
}

static struct mail_part *new_part(struct parse_ctx *ctx, struct open_part *parent,
				  size_t off)
{
	if (ctx->msg->n_parts >= ctx->lim.max_parts) {
		limited(ctx);
		return NULL;
	}
	struct mail_part *p = mail_arena_alloc(ctx->msg->arena, sizeof(*p));
	if (p == NULL) {
		ctx->failed = true;
		return NULL;
	}
	p->hdr_off = p->body_off = off;
	if (parent != NULL) {
		p->parent = parent->part;
		p->depth = parent->part->depth + 1;
		*parent->tail = p;
		parent->tail = &p->next;
		parent->part->n_children++;
	}
	ctx->msg->n_parts++;
	return p;
}

static void push(struct parse_ctx *ctx, struct mail_part *p, size_t lf)
{
	struct open_part *e = &ctx->chain[++ctx->top];
	memset(e, 0, sizeof(*e));
	e->part = p;
	e->state = ST_HEADER;
	e->tail = &p->children;
	e->hdr_lf = lf;
	e->end_max = p->hdr_off;
	e->end_max_lf = lf;
}

static bool name_is(const struct mail_header_field *f, size_t skip,
		    const char *name)
{
	return f->name_len > skip &&
	       mime_strcaseeq_n(f->name + skip, f->name_len - skip, name);
}

static char *unfold(struct parse_ctx *ctx, const struct mail_header_field *f)
{
	char *s = mime_unfold_dup(ctx->msg->arena, f->value, f->value_len);
	if (s == NULL)
		ctx->failed = true;
	return s;
}

enum content_seen {
	SEEN_TYPE = 1 << 0,
	SEEN_CTE = 1 << 1,
	SEEN_DISP = 1 << 2,
	SEEN_ID = 1 << 3,
	SEEN_DESC = 1 << 4,
	SEEN_MD5 = 1 << 5,
	SEEN_LANG = 1 << 6,
	SEEN_LOC = 1 << 7,
};

/* RFC 2045 3 (Content-Type, Content-Transfer-Encoding, Content-ID,
 * Content-Description), RFC 1864 (Content-MD5), RFC 2183
 * (Content-Disposition), RFC 3282 (Content-Language), RFC 2557
 * (Content-Location). The first occurrence of each counts. */
static int content_field(struct parse_ctx *ctx, struct mail_part *p,
			 const struct mail_header_field *f, unsigned int *seen)
{
	struct mail_arena *a = ctx->msg->arena;
	bool lim = false;
	char *v;
	int r = 0;

	if (name_is(f, 8, "Type") && !(*seen & SEEN_TYPE)) {
		*seen |= SEEN_TYPE;
		if ((v = unfold(ctx, f)) == NULL)
			return -1;
		r = mime_parse_content_type(a, ctx->lim.max_params, v, p, &lim);
	} else if (name_is(f, 8, "Transfer-Encoding") && !(*seen & SEEN_CTE)) {
		*seen |= SEEN_CTE;
		if ((v = unfold(ctx, f)) == NULL)
			return -1;
		r = mime_parse_cte(a, v, p);
	} else if (name_is(f, 8, "Disposition") && !(*seen & SEEN_DISP)) {
		*seen |= SEEN_DISP;
		if ((v = unfold(ctx, f)) == NULL)
			return -1;
		r = mime_parse_content_disposition(a, ctx->lim.max_params, v, p, &lim);
	} else if (name_is(f, 8, "Language") && !(*seen & SEEN_LANG)) {
		*seen |= SEEN_LANG;
		if ((v = unfold(ctx, f)) == NULL)
			return -1;
		r = mime_parse_content_language(a, v, p);
	} else if (name_is(f, 8, "ID") && !(*seen & SEEN_ID)) {
		*seen |= SEEN_ID;
		if ((p->id = unfold(ctx, f)) == NULL)
			return -1;
	} else if (name_is(f, 8, "Description") && !(*seen & SEEN_DESC)) {
		*seen |= SEEN_DESC;
		if ((p->description = unfold(ctx, f)) == NULL)
			return -1;
	} else if (name_is(f, 8, "MD5") && !(*seen & SEEN_MD5)) {
		*seen |= SEEN_MD5;
		if ((p->md5 = unfold(ctx, f)) == NULL)
			return -1;
	} else if (name_is(f, 8, "Location") && !(*seen & SEEN_LOC)) {
		*seen |= SEEN_LOC;
		if ((p->location = unfold(ctx, f)) == NULL)
			return -1;
	}
	if (lim)
		limited(ctx);
	if (r < 0)
		ctx->failed = true;
	return r < 0 ? -1 : 0;
}

/* RFC 3501 7.4.2 ENVELOPE fields, from RFC 5322 3.6. */
enum env_field {
	ENV_DATE, ENV_SUBJECT, ENV_IN_REPLY_TO, ENV_MESSAGE_ID,
	ENV_FROM, ENV_SENDER, ENV_REPLY_TO, ENV_TO, ENV_CC, ENV_BCC,
	ENV_NONE,
};

static enum env_field envelope_field_id(const struct mail_header_field *f)
{
	static const char *const names[ENV_NONE] = {
		"Date", "Subject", "In-Reply-To", "Message-ID", "From",
		"Sender", "Reply-To", "To", "Cc", "Bcc",
	};
	for (unsigned int i = 0; i < ENV_NONE; i++) {
		if (name_is(f, 0, names[i]))
			return (enum env_field)i;
	}
	return ENV_NONE;
}

static int envelope_field(struct parse_ctx *ctx, struct mail_envelope *env,
			  enum env_field id, const struct mail_header_field *f)
{
	const char **str = NULL;
	struct mail_address **list = NULL;

	switch (id) {
	case ENV_DATE: str = &env->date; break;
	case ENV_SUBJECT: str = &env->subject; break;
	case ENV_IN_REPLY_TO: str = &env->in_reply_to; break;
	case ENV_MESSAGE_ID: str = &env->message_id; break;
	case ENV_FROM: list = &env->from; break;
	case ENV_SENDER: list = &env->sender; break;
	case ENV_REPLY_TO: list = &env->reply_to; break;
	case ENV_TO: list = &env->to; break;
	case ENV_CC: list = &env->cc; break;
	case ENV_BCC: list = &env->bcc; break;
	case ENV_NONE: return 0;
	}
	char *v = unfold(ctx, f);
	if (v == NULL)
		return -1;
	if (str != NULL) {
		*str = v;
		return 0;
	}
	bool lim = false;
	if (mime_address_list_parse(ctx->msg->arena, v, ctx->lim.max_addresses,
				    list, &lim) < 0) {
		ctx->failed = true;
		return -1;
	}
	if (lim)
		limited(ctx);
	return 0;
}

static int parse_header(struct parse_ctx *ctx, struct mail_part *p)
{
	const uint8_t *hdr = ctx->data + p->hdr_off;
	struct mail_header_field f;
	size_t pos = 0;
	unsigned int seen = 0, env_seen = 0;
	bool is_msg = p->parent == NULL || (p->parent->flags & MAIL_PART_MESSAGE);

	if (is_msg) {
		p->envelope = mail_arena_alloc(ctx->msg->arena, sizeof(*p->envelope));
		if (p->envelope == NULL) {
			ctx->failed = true;
			return -1;
		}
	}
	while (mail_header_next(hdr, p->hdr_size, &pos, &f) > 0) {
		if (f.name_len == 0)
			continue;
		if (f.name_len > 8 && strncasecmp((const char *)f.name, "Content-", 8) == 0) {
			if (content_field(ctx, p, &f, &seen) < 0)
				return -1;
			continue;
		}
		if (!is_msg)
			continue;
		enum env_field id = envelope_field_id(&f);
		if (id == ENV_NONE || (env_seen & (1u << id)))
			continue;
		env_seen |= 1u << id;
		if (envelope_field(ctx, p->envelope, id, &f) < 0)
			return -1;
	}
	if (p->type == NULL) {
		/* RFC 2046 5.1.5: in a digest the default is message/rfc822;
		 * RFC 2045 5.2: elsewhere text/plain; charset=us-ascii. */
		bool digest = p->parent != NULL &&
			      (p->parent->flags & MAIL_PART_MULTIPART) &&
			      strcasecmp(p->parent->subtype, "digest") == 0;
		p->type = digest ? "message" : "text";
		p->subtype = digest ? "rfc822" : "plain";
		p->params = NULL;
		p->n_params = 0;
		p->flags |= MAIL_PART_DEFAULT_TYPE;
	}
	if (strcasecmp(p->type, "text") == 0)
		p->flags |= MAIL_PART_TEXT;
	return 0;
}

/* The header of the current part ends at end (after the blank line when
 * blank). Parses it and decides what the body is. */
static void finish_header(struct parse_ctx *ctx, size_t end, size_t end_lf,
			  bool blank)
{
	struct open_part *e = &ctx->chain[ctx->top];
	struct mail_part *p = e->part;

	p->hdr_size = end - p->hdr_off;
	p->body_off = end;
	p->hdr_lines = end_lf - e->hdr_lf;
	e->body_lf = end_lf;
	e->end_max = end;
	e->end_max_lf = end_lf;
	e->state = ST_BODY;
	if (!blank)
		p->flags |= MAIL_PART_NO_EOH;
	if (parse_header(ctx, p) < 0)
		return;

	bool deep = p->depth + 1 > ctx->lim.max_depth;
	if (strcasecmp(p->type, "multipart") == 0) {
		const struct mail_param *bp =
			mail_param_find(p->params, p->n_params, "boundary");
		size_t blen = 0;
		const char *b = NULL;
		if (bp != NULL &&
		    (b = mime_param_raw_value(ctx->msg->arena, bp, &blen)) == NULL) {
			ctx->failed = true;
			return;
		}
		if (b == NULL || blen == 0 || blen > BOUNDARY_MAX) {
			/* No usable boundary: a multipart without parts. */
			p->flags |= MAIL_PART_MULTIPART;
		} else if (deep) {
			p->flags |= MAIL_PART_OPAQUE;
			limited(ctx);
		} else {
			p->flags |= MAIL_PART_MULTIPART;
			e->boundary = (const uint8_t *)b;
			e->blen = blen;
			ctx->n_active++;
		}
	} else if (strcasecmp(p->type, "message") == 0 &&
		   strcasecmp(p->subtype, "rfc822") == 0) {
		/* RFC 2046 5.2.1: only 7bit, 8bit or binary are allowed; an
		 * encoded message cannot be parsed in place. */
		if (p->cte != MAIL_CTE_7BIT && p->cte != MAIL_CTE_8BIT &&
		    p->cte != MAIL_CTE_BINARY) {
			p->flags |= MAIL_PART_OPAQUE;
			return;
		}
		struct mail_part *child = deep ? NULL : new_part(ctx, e, end);
		if (child == NULL) {
			if (ctx->failed)
				return;
			p->flags |= MAIL_PART_OPAQUE;
			limited(ctx);
			return;
		}
		p->flags |= MAIL_PART_MESSAGE;
		push(ctx, child, end_lf);
	}
}

/* Closes the open parts above chain index k at position end (the start of
 * the line end before a boundary line, or the end of the data). */
static void close_above(struct parse_ctx *ctx, int k, size_t end, size_t end_lf)
{
	while (ctx->top > k && !ctx->failed) {
		struct open_part *e = &ctx->chain[ctx->top];
		struct mail_part *p = e->part;
		if (e->state == ST_HEADER) {
			if (end < p->hdr_off)
				finish_header(ctx, p->hdr_off, e->hdr_lf, false);
			else
				finish_header(ctx, end, end_lf, false);
			continue;
		}
		size_t pend = end, pend_lf = end_lf;
		if (pend < p->body_off) {
			pend = p->body_off;
			pend_lf = e->body_lf;
		}
		if (pend < e->end_max) {
			pend = e->end_max;
			pend_lf = e->end_max_lf;
		}
		p->body_size = pend - p->body_off;
		p->body_lines = pend_lf - e->body_lf;
		if (e->boundary != NULL) {
			e->boundary = NULL;
			ctx->n_active--;
		}
		ctx->top--;
		if (ctx->top >= 0) {
			struct open_part *parent = &ctx->chain[ctx->top];
			if (pend > parent->end_max) {
				parent->end_max = pend;
				parent->end_max_lf = pend_lf;
			}
		}
	}
}

/* RFC 2046 5.1.1:
 *   dash-boundary := "--" boundary
 *   delimiter := CRLF dash-boundary
 *   close-delimiter := delimiter "--"
 * Returns the chain index of the multipart whose boundary the line starts
 * with (longest boundary, then innermost), or -1. */
static int match_boundary(struct parse_ctx *ctx, const uint8_t *line,
			  size_t len, bool *close_r)
{
	int best = -1;
	size_t best_len = 0;

	for (int i = 0; i <= ctx->top; i++) {
		const struct open_part *e = &ctx->chain[i];
		if (e->boundary == NULL || len - 2 < e->blen ||
		    memcmp(line + 2, e->boundary, e->blen) != 0)
			continue;
		if (best < 0 || e->blen >= best_len) {
			best = i;
			best_len = e->blen;
		}
	}
	if (best >= 0) {
		const uint8_t *rest = line + 2 + best_len;
		size_t rlen = len - 2 - best_len;
		*close_r = rlen >= 2 && rest[0] == '-' && rest[1] == '-';
	}
	return best;
}

static void on_boundary(struct parse_ctx *ctx, int k, bool is_close,
			size_t pos, size_t lf, size_t next, size_t next_lf)
{
	/* The line end before the boundary line belongs to the boundary. */
	size_t end = pos, end_lf = lf;
	if (pos > 0) {
		end = pos - (pos >= 2 && ctx->data[pos - 2] == '\r' ? 2 : 1);
		end_lf = lf - 1;
	}
	close_above(ctx, k, end, end_lf);
	if (ctx->failed)
		return;
	struct open_part *e = &ctx->chain[k];
	if (is_close) {
		/* The rest, up to the parent's end, is the epilogue. */
		e->boundary = NULL;
		ctx->n_active--;
		return;
	}
	struct mail_part *child = new_part(ctx, e, next);
	if (child == NULL) {
		if (ctx->failed)
			return;
		/* Part limit: stop splitting; everything left stays in the
		 * parts that are open now. */
		for (int i = 0; i <= ctx->top; i++)
			ctx->chain[i].boundary = NULL;
		ctx->n_active = 0;
		return;
	}
	push(ctx, child, next_lf);
}

static void parse_lines(struct parse_ctx *ctx)
{
	const uint8_t *d = ctx->data;
	size_t size = ctx->size, pos = 0, lf = 0;

	while (pos < size && !ctx->failed) {
		size_t le = mime_line_end(d, size, pos);
		size_t next_lf = lf + (d[le - 1] == '\n');
		const uint8_t *line = d + pos;
		size_t llen = le - pos;

		if (ctx->n_active > 0 && llen >= 2 && line[0] == '-' && line[1] == '-') {
			bool is_close = false;
			int k = match_boundary(ctx, line, llen, &is_close);
			if (k >= 0) {
				on_boundary(ctx, k, is_close, pos, lf, le, next_lf);
				pos = le;
				lf = next_lf;
				continue;
			}
		}
		struct open_part *e = &ctx->chain[ctx->top];
		if (e->state == ST_HEADER) {
			enum mime_line_kind kind = mime_line_classify(line, llen);
			if (kind == MIME_LINE_CONT && pos == e->part->hdr_off)
				kind = MIME_LINE_OTHER;
			if (kind == MIME_LINE_BLANK) {
				finish_header(ctx, le, next_lf, true);
			} else if (kind == MIME_LINE_OTHER) {
				/* Not a header line: keep it in the header if a
				 * field follows, else the body starts here. */
				bool field_follows = false;
				if (le < size) {
					size_t le2 = mime_line_end(d, size, le);
					field_follows = mime_line_classify(d + le, le2 - le) ==
							MIME_LINE_FIELD;
				}
				if (!field_follows) {
					finish_header(ctx, pos, lf, false);
					continue; /* read this line again as body */
				}
			}
		}
		pos = le;
		lf = next_lf;
	}
	if (!ctx->failed)
		close_above(ctx, -1, size, lf);
}

int mail_message_parse(const uint8_t *data, size_t size,
		       const struct mail_limits *limits,
		       struct mail_message **msg_r, const char **error_r)
{
	struct parse_ctx *ctx = calloc(1, sizeof(*ctx));
	struct mail_arena *arena = NULL;

	if (ctx == NULL)
		goto nomem;
	if (limits != NULL)
		ctx->lim = *limits;
	else
		mail_limits_default(&ctx->lim);
	if (ctx->lim.max_depth > DEPTH_HARD_MAX)
		ctx->lim.max_depth = DEPTH_HARD_MAX;
	if (ctx->lim.max_parts == 0)
		ctx->lim.max_parts = 1;
	arena = mail_arena_create(ctx->lim.max_memory);
	if (arena == NULL)
		goto nomem;
	struct mail_message *msg = mail_arena_alloc(arena, sizeof(*msg));
	if (msg == NULL)
		goto toolarge;
	msg->arena = arena;
	msg->data = data;
	msg->size = size;
	ctx->msg = msg;
	ctx->data = data;
	ctx->size = size;
	ctx->top = -1;
	msg->root = new_part(ctx, NULL, 0);
	if (msg->root == NULL)
		goto toolarge;
	push(ctx, msg->root, 0);
	parse_lines(ctx);
	if (ctx->failed)
		goto toolarge;
	free(ctx);
	*msg_r = msg;
	return 0;
toolarge:
	free(ctx);
	mail_arena_destroy(&arena);
	*error_r = "message structure exceeds the memory limit";
	return -1;
nomem:
	free(ctx);
	*error_r = "out of memory";
	return -1;
}

void mail_message_free(struct mail_message **msg)
{
	if (*msg == NULL)
		return;
	struct mail_arena *arena = (*msg)->arena;
	mail_arena_destroy(&arena);
	*msg = NULL;
}
