/* Session scripts of the load generator: the line-oriented parser, the
 * substitution of send templates, user-name patterns and the sans-IO reply
 * reader (single line, POP3 multi-line, SMTP/LMTP multi-line and IMAP
 * tagged replies with literals skipped). See script.h for the format.
 */
#include "script.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __thread char errbuf[512];

static int fail(const char **error_r, unsigned int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(const char **error_r, unsigned int line, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (line > 0)
		n = snprintf(errbuf, sizeof(errbuf), "line %u: ", line);
	va_start(ap, fmt);
	vsnprintf(errbuf + n, sizeof(errbuf) - (size_t)n, fmt, ap);
	va_end(ap);
	*error_r = errbuf;
	return -1;
}

int bn_parse_size(const char *s, uint64_t *size_r)
{
	char *end;
	uint64_t mul = 1;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (*end == 'k' || *end == 'K')
		mul = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mul = 1024 * 1024 * 1024, end++;
	if (*end != '\0' || v > UINT64_MAX / mul)
		return -1;
	*size_r = (uint64_t)v * mul;
	return 0;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *v_r)
{
	uint64_t v;

	if (bn_parse_size(s, &v) < 0 || v > max)
		return -1;
	*v_r = v;
	return 0;
}

/* Checks the % escapes of a template: %u %p %n %% everywhere, %s only
 * where allow_s. */
static int check_template(const char *t, bool allow_s, unsigned int line,
			  const char **error_r)
{
	if (strlen(t) > BN_MAX_TEXT)
		return fail(error_r, line, "text longer than %d bytes", BN_MAX_TEXT);
	for (const char *p = t; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		p++;
		switch (*p) {
		case 'u': case 'p': case 'n': case '%':
			break;
		case 's':
			if (!allow_s)
				return fail(error_r, line, "%%s is only allowed in append");
			break;
		case '\0':
			return fail(error_r, line, "template ends with %%");
		default:
			return fail(error_r, line, "unknown escape %%%c (use %%u %%p %%n %%s %%%%)", *p);
		}
	}
	return 0;
}

static int intern_label(struct bn_script *s, const char *name, size_t len,
			unsigned int line, const char **error_r)
{
	for (unsigned int i = 0; i < s->nlabels; i++) {
		if (strlen(s->labels[i]) == len && memcmp(s->labels[i], name, len) == 0)
			return (int)i;
	}
	if (s->nlabels == BN_MAX_LABELS)
		return fail(error_r, line, "more than %d latency labels", BN_MAX_LABELS);
	if (len == 0 || len > 63)
		return fail(error_r, line, "a label must have 1 to 63 bytes");
	s->labels[s->nlabels] = strndup(name, len);
	if (s->labels[s->nlabels] == NULL)
		return fail(error_r, line, "out of memory");
	return (int)s->nlabels++;
}

/* Word number `which` (0-based) of a template: [start, len). */
static bool template_word(const char *t, unsigned int which, const char **w_r, size_t *len_r)
{
	const char *p = t;

	for (unsigned int i = 0;; i++) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return false;
		const char *w = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (i == which) {
			*w_r = w;
			*len_r = (size_t)(p - w);
			return true;
		}
	}
}

static int parse_message(struct bn_script *s, char *args, unsigned int line,
			 const char **error_r)
{
	struct bn_message_spec *m = &s->message;
	uint64_t a, b;

	if (m->kind != BN_MSG_NONE)
		return fail(error_r, line, "message given twice");
	if (strncmp(args, "size=", 5) == 0) {
		char *v = args + 5, *dash = strchr(v, '-');
		if (dash != NULL) {
			*dash = '\0';
			if (parse_uint(v, BN_MAX_MESSAGE, &a) < 0 ||
			    parse_uint(dash + 1, BN_MAX_MESSAGE, &b) < 0 || a > b || a == 0)
				return fail(error_r, line, "bad size range (MIN-MAX, 1..64m)");
			m->kind = BN_MSG_RANGE;
		} else {
			if (parse_uint(v, BN_MAX_MESSAGE, &a) < 0 || a == 0)
				return fail(error_r, line, "bad size (1..64m)");
			b = a;
			m->kind = BN_MSG_FIXED;
		}
		m->min = (size_t)a;
		m->max = (size_t)b;
	} else if (strncmp(args, "sizes=", 6) == 0) {
		char *save = NULL;
		for (char *item = strtok_r(args + 6, ",", &save); item != NULL;
		     item = strtok_r(NULL, ",", &save)) {
			char *colon = strchr(item, ':');
			uint64_t w = 1;
			if (colon != NULL) {
				*colon = '\0';
				if (parse_uint(colon + 1, 1000000, &w) < 0 || w == 0)
					return fail(error_r, line, "bad weight in sizes=");
			}
			if (parse_uint(item, BN_MAX_MESSAGE, &a) < 0 || a == 0)
				return fail(error_r, line, "bad size in sizes=");
			if (m->nsizes == BN_MAX_SIZES)
				return fail(error_r, line, "more than %d sizes", BN_MAX_SIZES);
			m->sizes[m->nsizes] = (size_t)a;
			m->weights[m->nsizes] = (unsigned int)w;
			m->nsizes++;
		}
		if (m->nsizes == 0)
			return fail(error_r, line, "sizes= needs SIZE[:WEIGHT],...");
		m->kind = BN_MSG_WEIGHTED;
	} else if (strncmp(args, "file=", 5) == 0 && args[5] != '\0') {
		m->file = strdup(args + 5);
		if (m->file == NULL)
			return fail(error_r, line, "out of memory");
		m->kind = BN_MSG_FILE;
	} else {
		return fail(error_r, line, "message takes size=N, size=MIN-MAX, sizes=N:W,... or file=PATH");
	}
	return 0;
}

/* Splits the first word off *p (spaces skipped). */
static char *next_word(char **p)
{
	char *s = *p;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0') {
		*p = s;
		return NULL;
	}
	char *w = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*p = s;
	return w;
}

struct parse_state {
	unsigned int loop_stack[BN_MAX_LOOP_DEPTH];
	unsigned int depth;
	/* the last step that sent something, for default labels */
	enum bn_step_kind last_kind;
	const char *last_text;
	bool sent_any;
};

static int default_label(struct bn_script *s, struct parse_state *ps, enum bn_expect_mode mode,
			 unsigned int line, const char **error_r)
{
	const char *w;
	size_t len;

	if (!ps->sent_any)
		return intern_label(s, "greeting", 8, line, error_r);
	if (ps->last_kind == BN_STEP_APPEND)
		return intern_label(s, "APPEND", 6, line, error_r);
	if (ps->last_kind == BN_STEP_BODY)
		return intern_label(s, "message", 7, line, error_r);
	if (ps->last_kind == BN_STEP_STREAM)
		return intern_label(s, "stream", 6, line, error_r);
	/* last_text is NULL when no send/append step came before (a stream) */
	if (ps->last_text != NULL &&
	    template_word(ps->last_text, mode == BN_EXPECT_TAGGED ? 1 : 0, &w, &len))
		return intern_label(s, w, len > 63 ? 63 : len, line, error_r);
	return intern_label(s, "reply", 5, line, error_r);
}

static bool word_is(const char *w, size_t wlen, const char *s)
{
	return strlen(s) == wlen && memcmp(w, s, wlen) == 0;
}

static int parse_expect(struct bn_script *s, struct parse_state *ps, struct bn_step *st,
			char *rest, unsigned int line, const char **error_r)
{
	bool mode_seen = false, as_seen = false;

	st->mode = BN_EXPECT_LINE;
	st->times = 1;
	for (;;) {
		while (*rest == ' ' || *rest == '\t')
			rest++;
		const char *w = rest;
		size_t wlen = strcspn(w, " \t");
		if (wlen == 0)
			break;
		if (!mode_seen && word_is(w, wlen, "line")) {
			st->mode = BN_EXPECT_LINE;
			mode_seen = true;
		} else if (!mode_seen && word_is(w, wlen, "dot")) {
			st->mode = BN_EXPECT_DOT;
			mode_seen = true;
		} else if (!mode_seen && word_is(w, wlen, "smtp")) {
			st->mode = BN_EXPECT_SMTP;
			mode_seen = true;
		} else if (!mode_seen && word_is(w, wlen, "tagged")) {
			st->mode = BN_EXPECT_TAGGED;
			mode_seen = true;
		} else if (wlen > 6 && memcmp(w, "times=", 6) == 0) {
			char num[24];
			uint64_t v;
			if (wlen - 6 >= sizeof(num))
				return fail(error_r, line, "times= takes 1..10000");
			memcpy(num, w + 6, wlen - 6);
			num[wlen - 6] = '\0';
			if (parse_uint(num, 10000, &v) < 0 || v == 0)
				return fail(error_r, line, "times= takes 1..10000");
			st->times = (unsigned int)v;
		} else if (wlen > 3 && memcmp(w, "as=", 3) == 0 && !as_seen) {
			st->label = intern_label(s, w + 3, wlen - 3, line, error_r);
			if (st->label < 0)
				return -1;
			as_seen = true;
		} else {
			break;
		}
		rest += wlen;
	}
	if (st->times > 1 && st->mode != BN_EXPECT_SMTP)
		return fail(error_r, line, "times= is for smtp replies (LMTP)");
	if (strlen(rest) > 255)
		return fail(error_r, line, "prefix longer than 255 bytes");
	st->text = strdup(rest);
	if (st->text == NULL)
		return fail(error_r, line, "out of memory");
	if (!as_seen) {
		st->label = default_label(s, ps, st->mode, line, error_r);
		if (st->label < 0)
			return -1;
	}
	return 0;
}

static int parse_line(struct bn_script *s, struct parse_state *ps, char *text,
		      unsigned int line, const char **error_r)
{
	char *rest = text;
	char *cmd = next_word(&rest);
	if (cmd == NULL || cmd[0] == '#')
		return 0;

	if (strcmp(cmd, "proto") == 0) {
		char *p = next_word(&rest);
		static const char *const protos[] = { "imap", "pop3", "smtp", "lmtp", "raw" };
		bool ok = false;
		for (size_t i = 0; p != NULL && i < sizeof(protos) / sizeof(protos[0]); i++)
			ok = ok || strcmp(p, protos[i]) == 0;
		if (!ok || next_word(&rest) != NULL)
			return fail(error_r, line, "proto takes imap, pop3, smtp, lmtp or raw");
		free(s->proto);
		s->proto = strdup(p);
		return s->proto == NULL ? fail(error_r, line, "out of memory") : 0;
	}
	if (strcmp(cmd, "message") == 0) {
		char *a = next_word(&rest);
		if (a == NULL || next_word(&rest) != NULL)
			return fail(error_r, line, "message takes one argument");
		return parse_message(s, a, line, error_r);
	}

	if (s->nsteps == BN_MAX_STEPS)
		return fail(error_r, line, "more than %d steps", BN_MAX_STEPS);
	struct bn_step *st = &s->steps[s->nsteps];
	memset(st, 0, sizeof(*st));
	st->line = line;
	st->label = -1;
	st->depth = ps->depth;

	if (strcmp(cmd, "send") == 0 || strcmp(cmd, "append") == 0) {
		bool app = cmd[0] == 'a';
		/* the text is the rest of the line after one space */
		const char *t = rest;
		if (check_template(t, app, line, error_r) < 0)
			return -1;
		if (app) {
			if (strstr(t, "%s") == NULL)
				return fail(error_r, line, "append needs {%%s} (or {%%s+}) for the size");
			size_t tl = strlen(t);
			st->literal_plus = tl >= 2 && strcmp(t + tl - 2, "+}") == 0;
			s->needs_message = true;
		}
		st->kind = app ? BN_STEP_APPEND : BN_STEP_SEND;
		st->text = strdup(t);
		if (st->text == NULL)
			return fail(error_r, line, "out of memory");
		ps->last_kind = st->kind;
		ps->last_text = st->text;
		ps->sent_any = true;
	} else if (strcmp(cmd, "expect") == 0) {
		st->kind = BN_STEP_EXPECT;
		if (parse_expect(s, ps, st, rest, line, error_r) < 0)
			return -1;
	} else if (strcmp(cmd, "body") == 0) {
		if (next_word(&rest) != NULL)
			return fail(error_r, line, "body takes no argument (see message)");
		st->kind = BN_STEP_BODY;
		s->needs_message = true;
		ps->last_kind = st->kind;
		ps->sent_any = true;
	} else if (strcmp(cmd, "stream") == 0) {
		char *n = next_word(&rest), *o;
		uint64_t chunk = 65536;
		if (n == NULL || parse_uint(n, BN_MAX_STREAM, &st->count) < 0 || st->count == 0)
			return fail(error_r, line, "stream takes BYTES (1..1t) [chunk=N]");
		while ((o = next_word(&rest)) != NULL) {
			if (strncmp(o, "chunk=", 6) != 0 ||
			    parse_uint(o + 6, 16 * 1024 * 1024, &chunk) < 0 || chunk == 0)
				return fail(error_r, line, "stream: chunk= takes 1..16m");
		}
		st->chunk = (unsigned int)chunk;
		st->kind = BN_STEP_STREAM;
		st->label = intern_label(s, "stream", 6, line, error_r);
		if (st->label < 0)
			return -1;
		ps->last_kind = st->kind;
		ps->sent_any = true;
	} else if (strcmp(cmd, "starttls") == 0) {
		st->kind = BN_STEP_STARTTLS;
	} else if (strcmp(cmd, "loop") == 0) {
		char *n = next_word(&rest);
		if (n != NULL && (parse_uint(n, UINT32_MAX, &st->count) < 0 || st->count == 0))
			return fail(error_r, line, "loop takes a count >= 1 (or none: forever)");
		if (ps->depth == BN_MAX_LOOP_DEPTH)
			return fail(error_r, line, "loops nested deeper than %d", BN_MAX_LOOP_DEPTH);
		st->kind = BN_STEP_LOOP;
		ps->loop_stack[ps->depth++] = s->nsteps;
		if (st->depth == 0 && st->count == 0 && s->unit_loop < 0)
			s->unit_loop = (int)s->nsteps;
	} else if (strcmp(cmd, "end") == 0) {
		if (ps->depth == 0)
			return fail(error_r, line, "end without loop");
		unsigned int lp = ps->loop_stack[--ps->depth];
		st->kind = BN_STEP_END;
		st->depth = ps->depth;
		st->jump = lp;
		s->steps[lp].jump = s->nsteps + 1;
	} else if (strcmp(cmd, "sleep") == 0) {
		char *n = next_word(&rest);
		if (n == NULL || parse_uint(n, 3600000, &st->count) < 0)
			return fail(error_r, line, "sleep takes milliseconds (0..3600000)");
		st->kind = BN_STEP_SLEEP;
	} else if (strcmp(cmd, "hold") == 0) {
		st->kind = BN_STEP_HOLD;
		s->has_hold = true;
	} else if (strcmp(cmd, "wait-close") == 0) {
		st->kind = BN_STEP_WAIT_CLOSE;
		st->label = intern_label(s, "close", 5, line, error_r);
		if (st->label < 0)
			return -1;
	} else if (strcmp(cmd, "close") == 0) {
		st->kind = BN_STEP_CLOSE;
	} else {
		return fail(error_r, line, "unknown step \"%.40s\"", cmd);
	}
	if (st->kind != BN_STEP_SEND && st->kind != BN_STEP_APPEND &&
	    st->kind != BN_STEP_EXPECT && st->kind != BN_STEP_STREAM &&
	    st->kind != BN_STEP_LOOP && st->kind != BN_STEP_SLEEP &&
	    next_word(&rest) != NULL)
		return fail(error_r, line, "%s takes no argument", cmd);
	s->nsteps++;
	return 0;
}

struct bn_script *bn_script_parse(const char *text, size_t len, const char *name,
				  const char **error_r)
{
	struct bn_script *s = calloc(1, sizeof(*s));
	struct parse_state ps;
	char *copy = NULL;

	if (s == NULL) {
		fail(error_r, 0, "out of memory");
		return NULL;
	}
	memset(&ps, 0, sizeof(ps));
	s->unit_loop = -1;
	s->name = strdup(name != NULL ? name : "script");
	s->proto = strdup("raw");
	copy = malloc(len + 1);
	if (s->name == NULL || s->proto == NULL || copy == NULL) {
		fail(error_r, 0, "out of memory");
		goto err;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (memchr(text, '\0', len) != NULL) {
		fail(error_r, 0, "the script holds a NUL byte");
		goto err;
	}
	unsigned int line = 0;
	for (char *p = copy; p != NULL && *p != '\0';) {
		char *nl = strchr(p, '\n');
		if (nl != NULL)
			*nl = '\0';
		line++;
		size_t l = strlen(p);
		if (l > 0 && p[l - 1] == '\r')
			p[l - 1] = '\0';
		if (parse_line(s, &ps, p, line, error_r) < 0)
			goto err;
		p = nl != NULL ? nl + 1 : NULL;
	}
	if (ps.depth > 0) {
		fail(error_r, s->steps[ps.loop_stack[ps.depth - 1]].line, "loop without end");
		goto err;
	}
	if (s->nsteps == 0) {
		fail(error_r, 0, "the script has no step");
		goto err;
	}
	if (s->needs_message && s->message.kind == BN_MSG_NONE) {
		s->message.kind = BN_MSG_FIXED;
		s->message.min = s->message.max = 4096;
	}
	free(copy);
	return s;
err:
	free(copy);
	bn_script_free(&s);
	return NULL;
}

struct bn_script *bn_script_load(const char *path, const char **error_r)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	size_t len = 0, cap = 0;

	if (f == NULL) {
		fail(error_r, 0, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			if (cap >= 1024 * 1024) {
				fclose(f);
				free(data);
				fail(error_r, 0, "%s: larger than 1 MiB", path);
				return NULL;
			}
			cap = cap == 0 ? 8192 : cap * 2;
			char *n = realloc(data, cap);
			if (n == NULL) {
				fclose(f);
				free(data);
				fail(error_r, 0, "out of memory");
				return NULL;
			}
			data = n;
		}
		size_t r = fread(data + len, 1, cap - len, f);
		len += r;
		if (r == 0)
			break;
	}
	bool bad = ferror(f) != 0;
	fclose(f);
	if (bad) {
		free(data);
		fail(error_r, 0, "%s: read error", path);
		return NULL;
	}
	const char *base = strrchr(path, '/');
	char name[128];
	snprintf(name, sizeof(name), "%s", base != NULL ? base + 1 : path);
	char *dot = strrchr(name, '.');
	if (dot != NULL && strcmp(dot, ".bench") == 0)
		*dot = '\0';
	struct bn_script *s = bn_script_parse(data != NULL ? data : "", len, name, error_r);
	if (s == NULL) {
		/* prefix the path to the message */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s", *error_r);
		fail(error_r, 0, "%s: %s", path, tmp);
	}
	free(data);
	return s;
}

void bn_script_free(struct bn_script **script)
{
	struct bn_script *s = *script;

	if (s == NULL)
		return;
	for (unsigned int i = 0; i < BN_MAX_STEPS; i++)
		free(s->steps[i].text);
	for (unsigned int i = 0; i < s->nlabels; i++)
		free(s->labels[i]);
	free(s->message.file);
	free(s->name);
	free(s->proto);
	free(s);
	*script = NULL;
}

int bn_subst(struct pn_buf *out, const char *tmpl, const struct bn_vars *vars)
{
	const char *p = tmpl;

	while (*p != '\0') {
		const char *pct = strchr(p, '%');
		size_t n = pct != NULL ? (size_t)(pct - p) : strlen(p);
		if (n > 0 && pn_buf_append(out, p, n) < 0)
			return -1;
		if (pct == NULL)
			break;
		int rc = 0;
		switch (pct[1]) {
		case 'u':
			rc = pn_buf_append_str(out, vars->user != NULL ? vars->user : "");
			break;
		case 'p':
			rc = pn_buf_append_str(out, vars->password != NULL ? vars->password : "");
			break;
		case 'n':
			rc = pn_buf_printf(out, "%llu", (unsigned long long)vars->n);
			break;
		case 's':
			rc = pn_buf_printf(out, "%llu", (unsigned long long)vars->size);
			break;
		case '%':
			rc = pn_buf_append(out, "%", 1);
			break;
		case '\0':
			rc = pn_buf_append(out, "%", 1);
			p = pct + 1;
			continue;
		default:
			rc = pn_buf_append(out, pct, 2);
			break;
		}
		if (rc < 0)
			return -1;
		p = pct + 2;
	}
	return 0;
}

/* Finds the one %d / %Nd / %0Nd of a user pattern: [*start, *end) and its
 * width and zero flag. Returns 0 or -1. */
static int user_spec(const char *pattern, size_t *start_r, size_t *end_r,
		     unsigned int *width_r, bool *zero_r)
{
	int found = 0;

	for (size_t i = 0; pattern[i] != '\0'; i++) {
		if (pattern[i] != '%')
			continue;
		size_t j = i + 1;
		bool zero = false;
		unsigned int width = 0;
		if (pattern[j] == '%') {
			i = j;
			continue;
		}
		if (pattern[j] == '0')
			zero = true, j++;
		while (pattern[j] >= '0' && pattern[j] <= '9') {
			width = width * 10 + (unsigned int)(pattern[j] - '0');
			if (width > 20)
				return -1;
			j++;
		}
		if (pattern[j] != 'd' || found++ > 0)
			return -1;
		*start_r = i;
		*end_r = j + 1;
		*width_r = width;
		*zero_r = zero;
		i = j;
	}
	return found == 1 ? 0 : -1;
}

int bn_check_user_pattern(const char *pattern)
{
	size_t a, b;
	unsigned int w;
	bool z;

	return strlen(pattern) > 200 ? -1 : user_spec(pattern, &a, &b, &w, &z);
}

int bn_format_user(char *dst, size_t dstsize, const char *pattern, unsigned int idx)
{
	size_t a, b, o = 0;
	unsigned int w;
	bool z;
	char num[32];

	if (bn_check_user_pattern(pattern) < 0 || user_spec(pattern, &a, &b, &w, &z) < 0)
		return -1;
	int nl = snprintf(num, sizeof(num), "%u", idx);
	for (size_t i = 0; pattern[i] != '\0'; i++) {
		if (i == a) {
			for (unsigned int k = (unsigned int)nl; k < w; k++) {
				if (o + 1 >= dstsize)
					return -1;
				dst[o++] = z ? '0' : ' ';
			}
			if (o + (size_t)nl >= dstsize)
				return -1;
			memcpy(dst + o, num, (size_t)nl);
			o += (size_t)nl;
			i = b - 1;
			continue;
		}
		if (pattern[i] == '%' && pattern[i + 1] == '%')
			i++;
		if (o + 1 >= dstsize)
			return -1;
		dst[o++] = pattern[i];
	}
	dst[o] = '\0';
	return 0;
}

/* ------------------------------------------------------------ the reader */

enum { RS_FIRST = 0, RS_MORE };

void bn_reader_init(struct bn_reader *r)
{
	memset(r, 0, sizeof(*r));
	pn_buf_init(&r->line, BN_MAX_LINE);
}

void bn_reader_free(struct bn_reader *r)
{
	pn_buf_free(&r->line);
}

void bn_reader_start(struct bn_reader *r, enum bn_expect_mode mode, const char *prefix,
		     const char *tag, unsigned int times)
{
	r->mode = mode;
	r->prefix = prefix != NULL ? prefix : "";
	r->prefix_len = strlen(r->prefix);
	r->tag_len = 0;
	r->tag[0] = '\0';
	if (tag != NULL) {
		size_t tl = strlen(tag);
		if (tl > sizeof(r->tag) - 1)
			tl = sizeof(r->tag) - 1;
		memcpy(r->tag, tag, tl);
		r->tag[tl] = '\0';
		r->tag_len = tl;
	}
	r->times_left = times > 0 ? times : 1;
	r->state = RS_FIRST;
	r->lit_left = 0;
	r->bytes = 0;
	r->sample[0] = '\0';
	pn_buf_reset(&r->line);
}

static void set_sample(struct bn_reader *r, const uint8_t *l, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < sizeof(r->sample); i++)
		r->sample[o++] = (l[i] >= 0x20 && l[i] < 0x7f) ? (char)l[i] : '?';
	r->sample[o] = '\0';
}

static bool starts_with(const uint8_t *l, size_t len, const char *p, size_t plen)
{
	return len >= plen && memcmp(l, p, plen) == 0;
}

/* IMAP (RFC 3501 section 4.3): a line ending in "{N}" (literal8 "~{N}",
 * tolerated "{N+}") is followed by N bytes of data, after which the same
 * response continues. Returns true and *n_r when the line announces one. */
static bool literal_at_end(const uint8_t *l, size_t len, uint64_t *n_r)
{
	if (len < 3 || l[len - 1] != '}')
		return false;
	size_t i = len - 1;
	if (i > 0 && l[i - 1] == '+')
		i--;
	size_t digits_end = i;
	while (i > 0 && l[i - 1] >= '0' && l[i - 1] <= '9')
		i--;
	if (i == digits_end || i == 0 || l[i - 1] != '{' || digits_end - i > 12)
		return false;
	uint64_t n = 0;
	for (size_t k = i; k < digits_end; k++)
		n = n * 10 + (uint64_t)(l[k] - '0');
	*n_r = n;
	return true;
}

/* One complete line (CRLF or LF stripped) for the current mode. Returns
 * 1 reply done, 0 go on, -1 error. */
static int reader_line(struct bn_reader *r, const uint8_t *l, size_t len, const char **error_r)
{
	if (len > 0 && l[len - 1] == '\r')
		len--;
	switch (r->mode) {
	case BN_EXPECT_LINE:
		if (!starts_with(l, len, r->prefix, r->prefix_len)) {
			set_sample(r, l, len);
			*error_r = "unexpected reply";
			return -1;
		}
		return 1;
	case BN_EXPECT_DOT:
		/* RFC 1939 section 3: a multi-line response ends with ".". */
		if (r->state == RS_FIRST) {
			if (!starts_with(l, len, r->prefix, r->prefix_len)) {
				set_sample(r, l, len);
				*error_r = "unexpected reply";
				return -1;
			}
			r->state = RS_MORE;
			return 0;
		}
		return (len == 1 && l[0] == '.') ? 1 : 0;
	case BN_EXPECT_SMTP:
		/* RFC 5321 section 4.2.1: "NNN-text" continues, "NNN text" or
		 * "NNN" ends a reply. */
		if (len < 3 || !isdigit(l[0]) || !isdigit(l[1]) || !isdigit(l[2]) ||
		    (len > 3 && l[3] != ' ' && l[3] != '-')) {
			set_sample(r, l, len);
			*error_r = "malformed SMTP reply";
			return -1;
		}
		if (len > 3 && l[3] == '-')
			return 0;
		if (!starts_with(l, len, r->prefix, r->prefix_len)) {
			set_sample(r, l, len);
			*error_r = "unexpected reply";
			return -1;
		}
		return --r->times_left == 0 ? 1 : 0;
	case BN_EXPECT_TAGGED:
	case BN_EXPECT_CONT: {
		bool cont_line = r->state == RS_MORE; /* rest of a response after a literal */
		uint64_t n;
		if (literal_at_end(l, len, &n)) {
			r->lit_left = n;
			r->state = RS_MORE;
		} else {
			r->state = RS_FIRST;
		}
		if (cont_line)
			return 0;
		if (r->mode == BN_EXPECT_CONT && len >= 1 && l[0] == '+')
			return 1;
		if (r->tag_len > 0 && len > r->tag_len && l[r->tag_len] == ' ' &&
		    memcmp(l, r->tag, r->tag_len) == 0) {
			if (r->mode == BN_EXPECT_CONT) {
				set_sample(r, l, len);
				*error_r = "command refused before its literal";
				return -1;
			}
			const uint8_t *st = l + r->tag_len + 1;
			size_t sl = len - r->tag_len - 1;
			if (!starts_with(st, sl, r->prefix, r->prefix_len)) {
				set_sample(r, l, len);
				*error_r = "unexpected reply";
				return -1;
			}
			return 1;
		}
		return 0;
	}
	}
	*error_r = "bad reader mode";
	return -1;
}

int bn_reader_feed(struct bn_reader *r, const uint8_t *data, size_t len, size_t *used_r,
		   const char **error_r)
{
	size_t pos = 0;

	while (pos < len) {
		if (r->lit_left > 0) {
			size_t n = len - pos;
			if ((uint64_t)n > r->lit_left)
				n = (size_t)r->lit_left;
			r->lit_left -= n;
			pos += n;
			continue;
		}
		const uint8_t *nl = memchr(data + pos, '\n', len - pos);
		size_t take = nl != NULL ? (size_t)(nl - (data + pos)) + 1 : len - pos;
		int rc;
		if (nl == NULL) {
			if (pn_buf_append(&r->line, data + pos, take) < 0) {
				set_sample(r, pn_buf_rptr(&r->line), pn_buf_len(&r->line));
				*error_r = "reply line too long";
				r->bytes += take;
				*used_r = pos + take;
				return -1;
			}
			pos += take;
			break;
		}
		if (pn_buf_len(&r->line) == 0) {
			/* the whole line is in data: look at it in place */
			rc = reader_line(r, data + pos, take - 1, error_r);
		} else {
			if (pn_buf_append(&r->line, data + pos, take - 1) < 0) {
				set_sample(r, pn_buf_rptr(&r->line), pn_buf_len(&r->line));
				*error_r = "reply line too long";
				*used_r = pos + take;
				return -1;
			}
			rc = reader_line(r, pn_buf_rptr(&r->line), pn_buf_len(&r->line), error_r);
			pn_buf_reset(&r->line);
		}
		pos += take;
		if (rc != 0) {
			r->bytes += pos;
			*used_r = pos;
			return rc;
		}
	}
	r->bytes += pos;
	*used_r = pos;
	return 0;
}
