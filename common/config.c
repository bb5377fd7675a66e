/* Table-driven configuration: value parsers for each field type, the
 * `key = value` file reader, environment and --set overrides, and the
 * Markdown reference writer. See postern/config.h for the syntax and the
 * precedence rules. Everything here runs at start-up or reload, never on a
 * loop thread's hot path.
 */
#include "postern/config.h"
#include "postern/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct pn_config_type pn_config_type_string = { .kind = PN_CFG_KIND_STRING };
const struct pn_config_type pn_config_type_int = { .kind = PN_CFG_KIND_INT };
const struct pn_config_type pn_config_type_bool = { .kind = PN_CFG_KIND_BOOL };
const struct pn_config_type pn_config_type_size = { .kind = PN_CFG_KIND_SIZE };
const struct pn_config_type pn_config_type_duration = { .kind = PN_CFG_KIND_DURATION };
const struct pn_config_type pn_config_type_list = { .kind = PN_CFG_KIND_LIST };

static __thread char config_error[1024];

/* A parsed value before it is stored: one member per kind. */
union config_value {
	char *s;
	int64_t i;
	bool b;
	uint64_t u;
	int e;
	struct pn_config_list l;
};

static int fail(const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(config_error, sizeof(config_error), fmt, ap);
	va_end(ap);
	*error_r = config_error;
	return -1;
}

static void *field_ptr(void *cfg, const struct pn_config_def *d)
{
	return (char *)cfg + d->offset;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void list_free(struct pn_config_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

static void value_free(enum pn_config_kind kind, union config_value *v)
{
	if (kind == PN_CFG_KIND_STRING) {
		free(v->s);
		v->s = NULL;
	} else if (kind == PN_CFG_KIND_LIST) {
		list_free(&v->l);
	}
}

/* Reads one or more decimal digits at *pp into *r. Returns 0, or -1 on no
 * digit or overflow of uint64_t. */
static int parse_digits(const char **pp, uint64_t *r)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		unsigned int d = (unsigned int)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		p++;
	}
	*pp = p;
	*r = v;
	return 0;
}

static void unsigned_bounds(const struct pn_config_type *t, uint64_t *lo, uint64_t *hi)
{
	if (t->min == 0 && t->max == 0) {
		*lo = 0;
		*hi = INT64_MAX;
	} else {
		*lo = t->min < 0 ? 0 : (uint64_t)t->min;
		*hi = t->max < 0 ? 0 : (uint64_t)t->max;
	}
}

static int parse_int(const struct pn_config_type *t, const char *s, int64_t *r,
		     char *expected, size_t esize)
{
	int64_t lo = INT64_MIN, hi = INT64_MAX;
	const char *p = s;
	bool neg = false;
	uint64_t mag;
	int64_t v;

	if (t->min != 0 || t->max != 0) {
		lo = t->min;
		hi = t->max;
		snprintf(expected, esize, "expected an integer from %" PRId64 " to %" PRId64,
			 lo, hi);
	} else {
		snprintf(expected, esize, "expected an integer");
	}
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (parse_digits(&p, &mag) < 0 || *p != '\0')
		return -1;
	if (neg) {
		if (mag > (uint64_t)INT64_MAX + 1)
			return -1;
		v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	} else {
		if (mag > (uint64_t)INT64_MAX)
			return -1;
		v = (int64_t)mag;
	}
	if (v < lo || v > hi)
		return -1;
	*r = v;
	return 0;
}

static int parse_bool(const char *s, bool *r, char *expected, size_t esize)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	snprintf(expected, esize, "expected yes/no, true/false, on/off or 1/0");
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*r = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*r = false;
			return 0;
		}
	}
	return -1;
}

static int parse_size(const struct pn_config_type *t, const char *s, uint64_t *r,
		      char *expected, size_t esize)
{
	static const struct { const char *suffix; unsigned int shift; } units[] = {
		{ "", 0 }, { "b", 0 },
		{ "k", 10 }, { "kb", 10 }, { "kib", 10 },
		{ "m", 20 }, { "mb", 20 }, { "mib", 20 },
		{ "g", 30 }, { "gb", 30 }, { "gib", 30 },
		{ "t", 40 }, { "tb", 40 }, { "tib", 40 },
	};
	uint64_t lo, hi, v;
	const char *p = s;

	unsigned_bounds(t, &lo, &hi);
	if (t->min != 0 || t->max != 0)
		snprintf(expected, esize,
			 "expected a size from %" PRIu64 " to %" PRIu64
			 " bytes (suffix k, M, G or T allowed)", lo, hi);
	else
		snprintf(expected, esize, "expected a size in bytes such as 512, 64k, 16M or 2G");
	if (parse_digits(&p, &v) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (units[i].shift > 0 && v > (UINT64_MAX >> units[i].shift))
			return -1;
		v <<= units[i].shift;
		if (v < lo || v > hi)
			return -1;
		*r = v;
		return 0;
	}
	return -1;
}

static int parse_duration(const struct pn_config_type *t, const char *s, uint64_t *r,
			  char *expected, size_t esize)
{
	static const struct { const char *unit; uint64_t ms; } units[] = {
		/* "ms" before "m" so that "5ms" is not read as 5 minutes + "s" */
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 },
	};
	uint64_t lo, hi, total = 0, v;
	const char *p = s;

	unsigned_bounds(t, &lo, &hi);
	if (t->min != 0 || t->max != 0)
		snprintf(expected, esize,
			 "expected a duration from %" PRIu64 "ms to %" PRIu64
			 "ms with a unit (ms, s, m, h or d)", lo, hi);
	else
		snprintf(expected, esize,
			 "expected a duration with a unit such as 250ms, 30s, 5m or 1h");
	if (strcmp(s, "0") == 0) {
		v = 0;
		goto range;
	}
	if (*p == '\0')
		return -1;
	while (*p != '\0') {
		size_t i, n = sizeof(units) / sizeof(units[0]);

		if (parse_digits(&p, &v) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			size_t ul = strlen(units[i].unit);
			if (strncasecmp(p, units[i].unit, ul) == 0) {
				p += ul;
				break;
			}
		}
		if (i == n)
			return -1;
		if (v > (UINT64_MAX - total) / units[i].ms)
			return -1;
		total += v * units[i].ms;
	}
	v = total;
range:
	if (v < lo || v > hi)
		return -1;
	*r = v;
	return 0;
}

static int parse_enum(const struct pn_config_type *t, const char *s, int *r,
		      char *expected, size_t esize)
{
	size_t o;
	int n;

	n = snprintf(expected, esize, "expected one of:");
	o = n > 0 ? (size_t)n : 0;
	for (int i = 0; t->values != NULL && t->values[i] != NULL; i++) {
		if (o < esize) {
			n = snprintf(expected + o, esize - o, "%s %s", i > 0 ? "," : "",
				     t->values[i]);
			if (n > 0)
				o += (size_t)n;
		}
	}
	for (int i = 0; t->values != NULL && t->values[i] != NULL; i++) {
		if (strcasecmp(s, t->values[i]) == 0) {
			*r = i;
			return 0;
		}
	}
	return -1;
}

static int parse_list(const char *s, struct pn_config_list *r, char *expected,
		      size_t esize)
{
	struct pn_config_list l = { NULL, 0 };
	const char *p = s;

	snprintf(expected, esize,
		 "expected a comma-separated list (at most %d items, none empty)",
		 PN_CONFIG_MAX_LIST);
	while (is_blank(*p))
		p++;
	if (*p == '\0') {
		*r = l;
		return 0;
	}
	l.items = calloc(PN_CONFIG_MAX_LIST, sizeof(char *));
	if (l.items == NULL)
		return -1;
	for (;;) {
		const char *start, *end;

		while (is_blank(*p))
			p++;
		start = p;
		while (*p != ',' && *p != '\0')
			p++;
		end = p;
		while (end > start && is_blank(end[-1]))
			end--;
		if (end == start || l.count == PN_CONFIG_MAX_LIST)
			goto bad;
		l.items[l.count] = strndup(start, (size_t)(end - start));
		if (l.items[l.count] == NULL)
			goto bad;
		l.count++;
		if (*p == '\0')
			break;
		p++; /* the comma */
	}
	*r = l;
	return 0;
bad:
	list_free(&l);
	return -1;
}

static int parse_value(const struct pn_config_type *t, const char *s,
		       union config_value *v, char *expected, size_t esize)
{
	memset(v, 0, sizeof(*v));
	switch (t->kind) {
	case PN_CFG_KIND_STRING:
		snprintf(expected, esize, "out of memory");
		v->s = strdup(s);
		return v->s == NULL ? -1 : 0;
	case PN_CFG_KIND_INT:
		return parse_int(t, s, &v->i, expected, esize);
	case PN_CFG_KIND_BOOL:
		return parse_bool(s, &v->b, expected, esize);
	case PN_CFG_KIND_SIZE:
		return parse_size(t, s, &v->u, expected, esize);
	case PN_CFG_KIND_DURATION:
		return parse_duration(t, s, &v->u, expected, esize);
	case PN_CFG_KIND_ENUM:
		return parse_enum(t, s, &v->e, expected, esize);
	case PN_CFG_KIND_LIST:
		return parse_list(s, &v->l, expected, esize);
	}
	snprintf(expected, esize, "unknown field type");
	return -1;
}

static void value_store(const struct pn_config_def *d, void *cfg, union config_value *v)
{
	void *f = field_ptr(cfg, d);

	switch (d->type->kind) {
	case PN_CFG_KIND_STRING: {
		char **sp = f;
		free(*sp);
		*sp = v->s;
		break;
	}
	case PN_CFG_KIND_INT:
		memcpy(f, &v->i, sizeof(v->i));
		break;
	case PN_CFG_KIND_BOOL:
		memcpy(f, &v->b, sizeof(v->b));
		break;
	case PN_CFG_KIND_SIZE:
	case PN_CFG_KIND_DURATION:
		memcpy(f, &v->u, sizeof(v->u));
		break;
	case PN_CFG_KIND_ENUM:
		memcpy(f, &v->e, sizeof(v->e));
		break;
	case PN_CFG_KIND_LIST:
		list_free(f);
		memcpy(f, &v->l, sizeof(v->l));
		break;
	}
}

/* Parses, checks and stores one value; origin prefixes error messages. */
static int assign(const struct pn_config_def *d, void *cfg, const char *value,
		  const char *origin, const char **error_r)
{
	union config_value v;
	char expected[512], quoted[160];
	const char *msg;

	if (parse_value(d->type, value, &v, expected, sizeof(expected)) < 0) {
		pn_log_quote(quoted, sizeof(quoted), value, strlen(value));
		return fail(error_r, "%s: %s: invalid value %s: %s", origin, d->key,
			    quoted, expected);
	}
	if (d->check != NULL && d->check(&v, &msg) < 0) {
		value_free(d->type->kind, &v);
		pn_log_quote(quoted, sizeof(quoted), value, strlen(value));
		return fail(error_r, "%s: %s: invalid value %s: %s", origin, d->key,
			    quoted, msg != NULL ? msg : "rejected");
	}
	value_store(d, cfg, &v);
	return 0;
}

static const struct pn_config_def *lookup(const struct pn_config_def *defs, size_t n,
					  const char *key, size_t keylen)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(defs[i].key) == keylen && memcmp(defs[i].key, key, keylen) == 0)
			return &defs[i];
	}
	return NULL;
}

static int check_table(const struct pn_config_def *defs, size_t n, const char **error_r)
{
	for (size_t i = 0; i < n; i++) {
		const char *k = defs[i].key;

		if (k == NULL || *k == '\0' || defs[i].type == NULL)
			return fail(error_r, "config table: entry %zu has no key or type", i);
		for (const char *p = k; *p != '\0'; p++) {
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
				return fail(error_r, "config table: key \"%s\" is not [a-z0-9_]+", k);
		}
		if (lookup(defs, i, k, strlen(k)) != NULL)
			return fail(error_r, "config table: key \"%s\" appears twice", k);
	}
	return 0;
}

int pn_config_defaults(const struct pn_config_def *defs, size_t n, void *cfg,
		       const char **error_r)
{
	if (check_table(defs, n, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *def = defs[i].def;

		if (def == NULL) {
			/* "empty": parse "" for strings and lists, zero otherwise */
			union config_value v;
			memset(&v, 0, sizeof(v));
			if (defs[i].type->kind == PN_CFG_KIND_STRING) {
				v.s = strdup("");
				if (v.s == NULL)
					return fail(error_r, "out of memory");
			}
			value_store(&defs[i], cfg, &v);
			continue;
		}
		if (assign(&defs[i], cfg, def, "built-in default", error_r) < 0)
			return -1;
	}
	return 0;
}

/* Splits one line into key and value (value unquoted into valbuf, which has
 * room for the whole line). Returns 1 for an assignment, 0 for a blank or
 * comment line, -1 with *why set on a syntax error. */
static int split_line(char *line, const char **key_r, size_t *keylen_r,
		      char *valbuf, const char **why)
{
	char *p = line, *key, *end;
	size_t o = 0;

	while (is_blank(*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	key = p;
	while (*p != '\0' && *p != '=' && !is_blank(*p))
		p++;
	*key_r = key;
	*keylen_r = (size_t)(p - key);
	while (is_blank(*p))
		p++;
	if (*p != '=' || *keylen_r == 0) {
		*why = "expected \"key = value\"";
		return -1;
	}
	p++;
	while (is_blank(*p))
		p++;
	if (*p == '"' || *p == '\'') {
		char q = *p++;
		for (;;) {
			if (*p == '\0') {
				*why = "unterminated quoted value";
				return -1;
			}
			if (*p == q) {
				p++;
				break;
			}
			if (q == '"' && *p == '\\') {
				p++;
				switch (*p) {
				case '"': case '\\': valbuf[o++] = *p; break;
				case 'n': valbuf[o++] = '\n'; break;
				case 't': valbuf[o++] = '\t'; break;
				default:
					*why = "unknown escape in quoted value (use \\\" \\\\ \\n \\t)";
					return -1;
				}
				p++;
				continue;
			}
			valbuf[o++] = *p++;
		}
		while (is_blank(*p))
			p++;
		if (*p != '\0' && *p != '#') {
			*why = "unexpected text after the quoted value";
			return -1;
		}
		valbuf[o] = '\0';
		return 1;
	}
	/* Unquoted: up to a '#' that follows a blank, blanks trimmed. */
	end = p;
	while (*end != '\0' && !(*end == '#' && end > p && is_blank(end[-1])))
		end++;
	while (end > p && is_blank(end[-1]))
		end--;
	memcpy(valbuf, p, (size_t)(end - p));
	valbuf[end - p] = '\0';
	return 1;
}

int pn_config_load_text(const struct pn_config_def *defs, size_t n, void *cfg,
			const char *name, const char *text, size_t len,
			const char **error_r)
{
	unsigned int *seen = NULL;
	char *line = NULL, *val = NULL, origin[300];
	size_t pos = 0;
	unsigned int lineno = 0;
	int ret = -1;

	if (len > PN_CONFIG_MAX_FILE)
		return fail(error_r, "%s: larger than %d bytes", name, PN_CONFIG_MAX_FILE);
	seen = calloc(n > 0 ? n : 1, sizeof(*seen));
	line = malloc(PN_CONFIG_MAX_LINE + 1);
	val = malloc(PN_CONFIG_MAX_LINE + 1);
	if (seen == NULL || line == NULL || val == NULL) {
		fail(error_r, "out of memory");
		goto out;
	}
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
		const char *key, *why;
		size_t keylen;
		int r;

		lineno++;
		if (ll > PN_CONFIG_MAX_LINE) {
			fail(error_r, "%s:%u: line longer than %d bytes", name, lineno,
			     PN_CONFIG_MAX_LINE);
			goto out;
		}
		memcpy(line, text + pos, ll);
		pos += ll + (nl != NULL ? 1 : 0);
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		line[ll] = '\0';
		if (memchr(line, '\0', ll) != NULL) {
			fail(error_r, "%s:%u: NUL byte in line", name, lineno);
			goto out;
		}
		r = split_line(line, &key, &keylen, val, &why);
		if (r == 0)
			continue;
		if (r < 0) {
			fail(error_r, "%s:%u: %s", name, lineno, why);
			goto out;
		}
		const struct pn_config_def *d = lookup(defs, n, key, keylen);
		if (d == NULL) {
			char quoted[160];
			pn_log_quote(quoted, sizeof(quoted), key, keylen);
			fail(error_r, "%s:%u: unknown key %s", name, lineno, quoted);
			goto out;
		}
		size_t idx = (size_t)(d - defs);
		if (seen[idx] != 0) {
			fail(error_r, "%s:%u: %s set again (first set on line %u)", name,
			     lineno, d->key, seen[idx]);
			goto out;
		}
		seen[idx] = lineno;
		snprintf(origin, sizeof(origin), "%s:%u", name, lineno);
		if (assign(d, cfg, val, origin, error_r) < 0)
			goto out;
	}
	ret = 0;
out:
	free(seen);
	free(line);
	free(val);
	return ret;
}

int pn_config_load_file(const struct pn_config_def *defs, size_t n, void *cfg,
			const char *path, const char **error_r)
{
	FILE *f = fopen(path, "r");
	char *text;
	size_t len;
	int ret;

	if (f == NULL)
		return fail(error_r, "%s: cannot open: %s", path, strerror(errno));
	text = malloc(PN_CONFIG_MAX_FILE + 1);
	if (text == NULL) {
		fclose(f);
		return fail(error_r, "out of memory");
	}
	len = fread(text, 1, PN_CONFIG_MAX_FILE + 1, f);
	if (ferror(f)) {
		int e = errno;
		fclose(f);
		free(text);
		return fail(error_r, "%s: read error: %s", path, strerror(e));
	}
	fclose(f);
	ret = pn_config_load_text(defs, n, cfg, path, text, len, error_r);
	free(text);
	return ret;
}

char *pn_config_env_name(const char *key, char *dst, size_t dstsize)
{
	size_t o = 0;
	static const char prefix[] = "POSTERN_";

	if (dstsize == 0)
		return dst;
	for (size_t i = 0; prefix[i] != '\0' && o + 1 < dstsize; i++)
		dst[o++] = prefix[i];
	for (const char *p = key; *p != '\0' && o + 1 < dstsize; p++)
		dst[o++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
	dst[o] = '\0';
	return dst;
}

int pn_config_apply_env(const struct pn_config_def *defs, size_t n, void *cfg,
			const char **error_r)
{
	for (size_t i = 0; i < n; i++) {
		char env[200], origin[220];
		const char *v;

		pn_config_env_name(defs[i].key, env, sizeof(env));
		v = getenv(env);
		if (v == NULL)
			continue;
		snprintf(origin, sizeof(origin), "environment %s", env);
		if (assign(&defs[i], cfg, v, origin, error_r) < 0)
			return -1;
	}
	return 0;
}

int pn_config_set_value(const struct pn_config_def *defs, size_t n, void *cfg,
			const char *key, const char *value, const char *origin,
			const char **error_r)
{
	const struct pn_config_def *d = lookup(defs, n, key, strlen(key));

	if (d == NULL) {
		char quoted[160];
		pn_log_quote(quoted, sizeof(quoted), key, strlen(key));
		return fail(error_r, "%s: unknown key %s", origin, quoted);
	}
	return assign(d, cfg, value, origin, error_r);
}

int pn_config_set(const struct pn_config_def *defs, size_t n, void *cfg,
		  const char *assignment, const char **error_r)
{
	const char *eq = strchr(assignment, '=');
	char key[128];
	size_t kl;

	if (eq == NULL)
		return fail(error_r, "--set %s: expected key=value", assignment);
	kl = (size_t)(eq - assignment);
	while (kl > 0 && is_blank(assignment[kl - 1]))
		kl--;
	if (kl == 0 || kl >= sizeof(key))
		return fail(error_r, "--set: expected key=value");
	memcpy(key, assignment, kl);
	key[kl] = '\0';
	return pn_config_set_value(defs, n, cfg, key, eq + 1, "--set", error_r);
}

int pn_config_load(const struct pn_config_def *defs, size_t n, void *cfg,
		   const char *path, const char *const *sets, size_t nsets,
		   const char **error_r)
{
	if (pn_config_defaults(defs, n, cfg, error_r) < 0)
		return -1;
	if (path != NULL && pn_config_load_file(defs, n, cfg, path, error_r) < 0)
		return -1;
	if (pn_config_apply_env(defs, n, cfg, error_r) < 0)
		return -1;
	for (size_t i = 0; i < nsets; i++) {
		if (pn_config_set(defs, n, cfg, sets[i], error_r) < 0)
			return -1;
	}
	return 0;
}

/* Writes s into a Markdown table cell: '|' escaped, line breaks as spaces. */
static void md_cell(FILE *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', out);
		else
			fputc(*s, out);
	}
}

static void md_type(FILE *out, const struct pn_config_type *t)
{
	bool bounded = t->min != 0 || t->max != 0;

	switch (t->kind) {
	case PN_CFG_KIND_STRING:
		fputs("string", out);
		break;
	case PN_CFG_KIND_INT:
		fputs("integer", out);
		if (bounded)
			fprintf(out, " (%" PRId64 " to %" PRId64 ")", t->min, t->max);
		break;
	case PN_CFG_KIND_BOOL:
		fputs("boolean", out);
		break;
	case PN_CFG_KIND_SIZE:
		fputs("size", out);
		if (bounded)
			fprintf(out, " (%" PRId64 " to %" PRId64 " bytes)", t->min, t->max);
		break;
	case PN_CFG_KIND_DURATION:
		fputs("duration", out);
		if (bounded)
			fprintf(out, " (%" PRId64 "ms to %" PRId64 "ms)", t->min, t->max);
		break;
	case PN_CFG_KIND_ENUM:
		fputs("one of", out);
		for (int i = 0; t->values != NULL && t->values[i] != NULL; i++) {
			fputs(i > 0 ? ", `" : " `", out);
			md_cell(out, t->values[i]);
			fputc('`', out);
		}
		break;
	case PN_CFG_KIND_LIST:
		fputs("list", out);
		break;
	}
}

int pn_config_write_markdown(const struct pn_config_def *defs, size_t n, FILE *out)
{
	fputs("| Key | Type | Default | Environment | Description |\n", out);
	fputs("|---|---|---|---|---|\n", out);
	for (size_t i = 0; i < n; i++) {
		const struct pn_config_def *d = &defs[i];
		char env[200];

		fputs("| `", out);
		md_cell(out, d->key);
		fputs("` | ", out);
		md_type(out, d->type);
		fputs(" | ", out);
		if (d->def == NULL || d->def[0] == '\0')
			fputs("(empty)", out);
		else if (strchr(d->def, '`') != NULL)
			md_cell(out, d->def);
		else {
			fputc('`', out);
			md_cell(out, d->def);
			fputc('`', out);
		}
		fprintf(out, " | `%s` | ", pn_config_env_name(d->key, env, sizeof(env)));
		md_cell(out, d->help != NULL ? d->help : "");
		fputs(" |\n", out);
	}
	return ferror(out) ? -1 : 0;
}

void pn_config_free(const struct pn_config_def *defs, size_t n, void *cfg)
{
	for (size_t i = 0; i < n; i++) {
		void *f = field_ptr(cfg, &defs[i]);

		if (defs[i].type->kind == PN_CFG_KIND_STRING) {
			char **sp = f;
			free(*sp);
			*sp = NULL;
		} else if (defs[i].type->kind == PN_CFG_KIND_LIST) {
			list_free(f);
		}
	}
}
