/* posternctl: the administration tool of a Postern cluster.
 *
 * Applies the schema migrations and manages tenants, domains, accounts and
 * aliases in PostgreSQL, imports Dovecot passwd-files, lists logged-in
 * sessions and live nodes from the Redis registries and asks the frontends
 * to end an account's sessions (kick). The work is done by the storage
 * library (store-admin.h, store-migrate.h, store-who.h); this file parses the
 * command line and prints results as aligned text or, with --json, as JSON.
 *
 * Exit status: 0 done, 1 the operation failed (one line on stderr, nothing
 * changed), 2 the command line is wrong.
 */
#include "postern/store-address.h"
#include "postern/store-admin.h"
#include "postern/store-migrate.h"
#include "postern/store-password.h"
#include "postern/store-pg.h"
#include "postern/store-who.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2
#define MAX_POSITIONAL 256

enum opt_id {
	OPT_PG, OPT_REDIS, OPT_HELP,                 /* global */
	OPT_JSON, OPT_FORCE, OPT_TENANT, OPT_DOMAIN, OPT_PASSWORD,
	OPT_PASSWORD_STDIN, OPT_QUOTA, OPT_QUOTA_MESSAGES, OPT_MESSAGES,
	OPT_DISABLED, OPT_CREATE_DOMAINS, OPT_ALL, OPT_PROTOCOL, OPT_SESSION, OPT_TTL,
	OPT_COUNT
};

static const struct {
	const char *name;
	bool has_value;
} opt_defs[OPT_COUNT] = {
	[OPT_PG] = { "pg", true },
	[OPT_REDIS] = { "redis", true },
	[OPT_HELP] = { "help", false },
	[OPT_JSON] = { "json", false },
	[OPT_FORCE] = { "force", false },
	[OPT_TENANT] = { "tenant", true },
	[OPT_DOMAIN] = { "domain", true },
	[OPT_PASSWORD] = { "password", true },
	[OPT_PASSWORD_STDIN] = { "password-stdin", false },
	[OPT_QUOTA] = { "quota", true },
	[OPT_QUOTA_MESSAGES] = { "quota-messages", true },
	[OPT_MESSAGES] = { "messages", true },
	[OPT_DISABLED] = { "disabled", false },
	[OPT_CREATE_DOMAINS] = { "create-domains", false },
	[OPT_ALL] = { "all", false },
	[OPT_PROTOCOL] = { "protocol", true },
	[OPT_SESSION] = { "session", true },
	[OPT_TTL] = { "ttl", true },
};

#define O(x) (1u << (x))
#define GLOBAL_OPTS (O(OPT_PG) | O(OPT_REDIS) | O(OPT_HELP))

struct cli {
	const char *val[OPT_COUNT];
	bool set[OPT_COUNT];
	const char *pos[MAX_POSITIONAL];
	int npos;
	const char *const *args;   /* positionals after the command words */
	int nargs;
	const char *cmdname;       /* "user add" */
	PGconn *pg;
};

static const char usage_text[] =
"usage: posternctl [--pg DSN] [--redis HOST:PORT|/SOCKET] COMMAND ...\n"
"\n"
"  migrate                                  apply the schema migrations\n"
"  tenant add NAME [--quota SIZE] [--quota-messages N]\n"
"  tenant list [--json]\n"
"  tenant remove NAME [--force]             --force: with its domains and accounts\n"
"  domain add DOMAIN --tenant NAME\n"
"  domain list [--tenant NAME] [--json]\n"
"  domain remove DOMAIN [--force]           --force: with its accounts\n"
"  user add ADDRESS (--password P | --password-stdin)\n"
"           [--quota SIZE] [--quota-messages N] [--disabled]\n"
"  user passwd ADDRESS (--password P | --password-stdin)\n"
"  user list [--tenant NAME] [--domain DOMAIN] [--json]\n"
"  user remove ADDRESS                      with all its mail\n"
"  user quota ADDRESS SIZE [--messages N]\n"
"  user enable|disable ADDRESS              allow or refuse logins\n"
"  user auth ADDRESS (--password P | --password-stdin)\n"
"  alias add SOURCE DEST...                 SOURCE @domain is the catch-all\n"
"  alias list [--tenant NAME] [--domain DOMAIN] [--json]\n"
"  alias remove SOURCE [DEST...]            no DEST: all of SOURCE's\n"
"  import-passwd FILE --tenant NAME [--create-domains]\n"
"                                           Dovecot passwd-file, '-' for stdin\n"
"  who [--all] [--json]                     sessions in the Redis registry\n"
"  nodes [--all] [--ttl SECONDS] [--json]   live nodes in the Redis registry;\n"
"                                           --all adds stale ones (heartbeat\n"
"                                           older than --ttl, default 30)\n"
"  kick ADDRESS [--protocol imap|pop3|smtp] [--session NODE/ID] [--json]\n"
"                                           ask the frontends to end the\n"
"                                           account's sessions\n"
"\n"
"SIZE: bytes or with a unit B K M G T (powers of 1024); 0 or 'unlimited'\n"
"means no limit. Prefer --password-stdin: arguments are visible to ps.\n"
"PostgreSQL: --pg or POSTERN_PG_DSN (a libpq connection string or URI), else\n"
"POSTERN_PG_HOST, _PORT, _USER, _DBNAME, _PASSWORD, else libpq's PG* variables.\n"
"Redis: --redis or POSTERN_REDIS_HOST\n"
"(a host or a socket path) and POSTERN_REDIS_PORT (default 127.0.0.1:6379).\n"
"Exit status: 0 done, 1 failed (nothing changed), 2 bad command line.\n";

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("posternctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAILURE;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("posternctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see posternctl --help)\n", stderr);
	return EXIT_USAGE;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL) {
		fail("out of memory");
		exit(EXIT_FAILURE);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL) {
		fail("out of memory");
		exit(EXIT_FAILURE);
	}
	return p;
}

/* ---- output: aligned tables and JSON ---- */

struct table {
	size_t ncols, nrows, cap;
	char **cells;    /* row-major, row 0 = headers */
};

static void table_add(struct table *t, const char *const *row)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap == 0 ? 16 : t->cap * 2;
		char **cells = realloc(t->cells, cap * t->ncols * sizeof(*cells));

		if (cells == NULL) {
			fail("out of memory");
			exit(EXIT_FAILURE);
		}
		t->cells = cells;
		t->cap = cap;
	}
	for (size_t c = 0; c < t->ncols; c++)
		t->cells[t->nrows * t->ncols + c] = xstrdup(row[c]);
	t->nrows++;
}

static void table_init(struct table *t, size_t ncols, const char *const *headers)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	table_add(t, headers);
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

static void table_print_free(struct table *t)
{
	size_t *width = xcalloc(t->ncols, sizeof(*width));

	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		size_t len = strlen(t->cells[i]);

		if (len > width[i % t->ncols])
			width[i % t->ncols] = len;
	}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			if (c + 1 == t->ncols)
				printf("%s\n", cell);
			else
				printf("%-*s  ", (int)width[c], cell);
		}
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(width);
}

/* RFC 8259 7: quotation mark, reverse solidus and control characters are
 * escaped; other bytes (UTF-8) pass through. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_limit(int64_t v)
{
	if (v < 0)
		fputs("null", stdout);
	else
		printf("%lld", (long long)v);
}

struct list_out {
	bool json;
	bool first;
	struct table table;
};

static void json_begin_row(struct list_out *o)
{
	fputs(o->first ? "[\n  {" : ",\n  {", stdout);
	o->first = false;
}

static void list_begin(struct list_out *o, bool json, size_t ncols,
		       const char *const *headers)
{
	o->json = json;
	o->first = true;
	if (!json)
		table_init(&o->table, ncols, headers);
}

static void list_end(struct list_out *o)
{
	if (o->json)
		fputs(o->first ? "[]\n" : "\n]\n", stdout);
	else
		table_print_free(&o->table);
}

static const char *fmt_size(char *buf, size_t size, int64_t v)
{
	store_size_format(v, buf, size);
	return buf;
}

static const char *fmt_count(char *buf, size_t size, int64_t v)
{
	if (v < 0)
		snprintf(buf, size, "unlimited");
	else
		snprintf(buf, size, "%lld", (long long)v);
	return buf;
}

/* ---- connection settings ---- */

/* Appends " key='value'" (libpq conninfo quoting) when variable env is set. */
static void conninfo_add(char *buf, size_t size, const char *key, const char *env)
{
	const char *v = getenv(env);
	size_t len = strlen(buf);
	int n;

	if (v == NULL || v[0] == '\0')
		return;
	n = snprintf(buf + len, size - len, " %s='", key);
	if (n < 0 || (size_t)n >= size - len)
		return;
	len += (size_t)n;
	for (; *v != '\0' && len + 3 < size; v++) {
		if (*v == '\'' || *v == '\\')
			buf[len++] = '\\';
		buf[len++] = *v;
	}
	buf[len++] = '\'';
	buf[len] = '\0';
}

/* --pg, else POSTERN_PG_DSN, else POSTERN_PG_HOST/PORT/USER/DBNAME/PASSWORD,
 * else libpq's own PG* defaults. */
static int pg_open(struct cli *c)
{
	const char *dsn = c->val[OPT_PG] != NULL ? c->val[OPT_PG] : getenv("POSTERN_PG_DSN");
	char built[1024] = "";
	const char *error = NULL;

	if (dsn == NULL || dsn[0] == '\0') {
		conninfo_add(built, sizeof(built), "host", "POSTERN_PG_HOST");
		conninfo_add(built, sizeof(built), "port", "POSTERN_PG_PORT");
		conninfo_add(built, sizeof(built), "user", "POSTERN_PG_USER");
		conninfo_add(built, sizeof(built), "dbname", "POSTERN_PG_DBNAME");
		conninfo_add(built, sizeof(built), "password", "POSTERN_PG_PASSWORD");
		dsn = built;
	}
	if (store_pg_connect(dsn, &c->pg, &error) < 0)
		return fail("%s", error);
	return 0;
}

/* Splits --redis / POSTERN_REDIS_HOST + POSTERN_REDIS_PORT into host and
 * port: "/path" is a Unix socket, "[v6]:port", "host:port" or "host". */
static int redis_target(const struct cli *c, char *host, size_t hostsize, int *port_r)
{
	const char *spec = c->val[OPT_REDIS];
	const char *env_port = getenv("POSTERN_REDIS_PORT");
	const char *colon = NULL, *hs, *he;
	long port = 6379;

	if (spec == NULL) {
		spec = getenv("POSTERN_REDIS_HOST");
		if (spec == NULL || spec[0] == '\0')
			spec = "127.0.0.1";
		if (env_port != NULL && env_port[0] != '\0') {
			char *end;

			errno = 0;
			port = strtol(env_port, &end, 10);
			if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
				return fail("bad POSTERN_REDIS_PORT '%s'", env_port);
		}
		snprintf(host, hostsize, "%s", spec);
		*port_r = (int)port;
		return 0;
	}
	if (spec[0] == '/') {
		snprintf(host, hostsize, "%s", spec);
		*port_r = 0;
		return 0;
	}
	if (spec[0] == '[') {
		he = strchr(spec, ']');
		if (he == NULL || (he[1] != '\0' && he[1] != ':'))
			return fail("bad --redis '%s'", spec);
		hs = spec + 1;
		colon = he[1] == ':' ? he + 1 : NULL;
	} else {
		hs = spec;
		colon = strrchr(spec, ':');
		he = colon != NULL ? colon : spec + strlen(spec);
	}
	if (colon != NULL) {
		char *end;

		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
			return fail("bad port in --redis '%s'", spec);
	}
	if (he == hs || (size_t)(he - hs) >= hostsize)
		return fail("bad --redis '%s'", spec);
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*port_r = (int)port;
	return 0;
}

/* ---- passwords ---- */

/* The password from --password or one line of stdin, into buf. */
static int read_password(const struct cli *c, char *buf, size_t size)
{
	size_t len;

	if (c->set[OPT_PASSWORD] == c->set[OPT_PASSWORD_STDIN])
		return usage_error("%s: give either --password or --password-stdin",
				   c->cmdname);
	if (c->set[OPT_PASSWORD]) {
		if (strlen(c->val[OPT_PASSWORD]) >= size)
			return fail("password longer than %d bytes", STORE_PASSWORD_MAX);
		snprintf(buf, size, "%s", c->val[OPT_PASSWORD]);
	} else {
		if (fgets(buf, (int)size, stdin) == NULL)
			return fail("no password on standard input");
		len = strlen(buf);
		if (len > 0 && buf[len - 1] == '\n')
			buf[--len] = '\0';
		else if (len == size - 1)
			return fail("password longer than %d bytes", STORE_PASSWORD_MAX);
		if (len > 0 && buf[len - 1] == '\r')
			buf[--len] = '\0';
	}
	if (buf[0] == '\0')
		return fail("empty password");
	return 0;
}

static int parse_size_opt(const char *s, int64_t *v_r)
{
	const char *error = NULL;

	if (store_size_parse(s, v_r, &error) < 0)
		return fail("'%s': %s", s, error);
	return 0;
}

static int parse_count_opt(const char *s, int64_t *v_r)
{
	const char *error = NULL;

	if (store_count_parse(s, v_r, &error) < 0)
		return fail("'%s': %s", s, error);
	return 0;
}

/* ---- commands ---- */

/* Ends a command: the error *error when rc < 0, else the printed line.
 * error is read only after the call that set it has returned. */
static int done(int rc, const char *const *error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int done(int rc, const char *const *error, const char *fmt, ...)
{
	va_list ap;

	if (rc < 0)
		return fail("%s", *error);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return EXIT_SUCCESS;
}

static int cmd_migrate(struct cli *c)
{
	const char *error = NULL;
	int from, to;

	if (store_migrate(c->pg, &from, &to, &error) < 0)
		return fail("%s", error);
	if (from == to)
		printf("schema already at version %d\n", to);
	else
		printf("schema migrated from version %d to %d\n", from, to);
	return EXIT_SUCCESS;
}

static int cmd_tenant_add(struct cli *c)
{
	int64_t qb = -1, qm = -1;
	const char *error = NULL;

	if ((c->set[OPT_QUOTA] && parse_size_opt(c->val[OPT_QUOTA], &qb) != 0) ||
	    (c->set[OPT_QUOTA_MESSAGES] && parse_count_opt(c->val[OPT_QUOTA_MESSAGES], &qm) != 0))
		return EXIT_FAILURE;
	return done(store_tenant_add(c->pg, c->args[0], qb, qm, &error), &error,
		    "tenant %s added", c->args[0]);
}

static int cmd_tenant_remove(struct cli *c)
{
	const char *error = NULL;

	return done(store_tenant_remove(c->pg, c->args[0], c->set[OPT_FORCE], &error),
		    &error, "tenant %s removed", c->args[0]);
}

static void tenant_row(const struct store_tenant_info *t, void *ctx)
{
	struct list_out *o = ctx;
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];

	if (o->json) {
		json_begin_row(o);
		printf("\"id\": %lld, \"name\": ", (long long)t->id);
		json_str(t->name);
		printf(", \"domains\": %lld, \"accounts\": %lld, \"quota_bytes\": ",
		       (long long)t->domains, (long long)t->accounts);
		json_limit(t->quota_bytes);
		fputs(", \"quota_messages\": ", stdout);
		json_limit(t->quota_messages);
		printf(", \"used_bytes\": %lld, \"used_messages\": %lld}",
		       (long long)t->used_bytes, (long long)t->used_messages);
		return;
	}
	snprintf(b1, sizeof(b1), "%lld", (long long)t->domains);
	snprintf(b2, sizeof(b2), "%lld", (long long)t->accounts);
	snprintf(b5, sizeof(b5), "%lld", (long long)t->used_bytes);
	snprintf(b6, sizeof(b6), "%lld", (long long)t->used_messages);
	const char *row[] = { t->name, b1, b2, b5, fmt_size(b3, sizeof(b3), t->quota_bytes),
			      b6, fmt_count(b4, sizeof(b4), t->quota_messages) };
	table_add(&o->table, row);
}

static int cmd_tenant_list(struct cli *c)
{
	static const char *const headers[] = { "TENANT", "DOMAINS", "ACCOUNTS", "BYTES",
					       "QUOTA", "MESSAGES", "QUOTA-MESSAGES" };
	struct list_out o;
	const char *error = NULL;

	list_begin(&o, c->set[OPT_JSON], 7, headers);
	if (store_tenant_list(c->pg, tenant_row, &o, &error) < 0) {
		if (!o.json)
			table_print_free(&o.table);
		return fail("%s", error);
	}
	list_end(&o);
	return EXIT_SUCCESS;
}

static int cmd_domain_add(struct cli *c)
{
	const char *error = NULL;

	if (!c->set[OPT_TENANT])
		return usage_error("domain add: --tenant is required");
	return done(store_domain_add(c->pg, c->args[0], c->val[OPT_TENANT], &error), &error,
		    "domain %s added to tenant %s", c->args[0], c->val[OPT_TENANT]);
}

static int cmd_domain_remove(struct cli *c)
{
	const char *error = NULL;

	return done(store_domain_remove(c->pg, c->args[0], c->set[OPT_FORCE], &error),
		    &error, "domain %s removed", c->args[0]);
}

static void domain_row(const struct store_domain_info *d, void *ctx)
{
	struct list_out *o = ctx;
	char b1[32], b2[32];

	if (o->json) {
		json_begin_row(o);
		printf("\"id\": %lld, \"name\": ", (long long)d->id);
		json_str(d->name);
		fputs(", \"tenant\": ", stdout);
		json_str(d->tenant);
		printf(", \"accounts\": %lld, \"aliases\": %lld}",
		       (long long)d->accounts, (long long)d->aliases);
		return;
	}
	snprintf(b1, sizeof(b1), "%lld", (long long)d->accounts);
	snprintf(b2, sizeof(b2), "%lld", (long long)d->aliases);
	const char *row[] = { d->name, d->tenant, b1, b2 };
	table_add(&o->table, row);
}

static int cmd_domain_list(struct cli *c)
{
	static const char *const headers[] = { "DOMAIN", "TENANT", "ACCOUNTS", "ALIASES" };
	struct list_out o;
	const char *error = NULL;

	list_begin(&o, c->set[OPT_JSON], 4, headers);
	if (store_domain_list(c->pg, c->val[OPT_TENANT], domain_row, &o, &error) < 0) {
		if (!o.json)
			table_print_free(&o.table);
		return fail("%s", error);
	}
	list_end(&o);
	return EXIT_SUCCESS;
}

static int cmd_user_add(struct cli *c)
{
	char password[STORE_PASSWORD_MAX + 2];
	struct store_user_params p = { .quota_bytes = -1, .quota_messages = -1 };
	const char *error = NULL;
	int rc;

	if ((c->set[OPT_QUOTA] && parse_size_opt(c->val[OPT_QUOTA], &p.quota_bytes) != 0) ||
	    (c->set[OPT_QUOTA_MESSAGES] &&
	     parse_count_opt(c->val[OPT_QUOTA_MESSAGES], &p.quota_messages) != 0))
		return EXIT_FAILURE;
	rc = read_password(c, password, sizeof(password));
	if (rc != 0)
		return rc;
	p.password = password;
	p.disabled = c->set[OPT_DISABLED];
	rc = store_user_add(c->pg, c->args[0], &p, &error);
	explicit_bzero(password, sizeof(password));
	return done(rc, &error, "account %s added", c->args[0]);
}

static int cmd_user_passwd(struct cli *c)
{
	char password[STORE_PASSWORD_MAX + 2];
	const char *error = NULL;
	int rc = read_password(c, password, sizeof(password));

	if (rc != 0)
		return rc;
	rc = store_user_set_password(c->pg, c->args[0], password, &error);
	explicit_bzero(password, sizeof(password));
	return done(rc, &error, "password of %s changed", c->args[0]);
}

static int cmd_user_auth(struct cli *c)
{
	char password[STORE_PASSWORD_MAX + 2];
	const char *error = NULL;
	int rc = read_password(c, password, sizeof(password));

	if (rc != 0)
		return rc;
	rc = store_user_authenticate(c->pg, c->args[0], password, &error);
	explicit_bzero(password, sizeof(password));
	if (rc <= 0)
		return fail("%s", error);
	printf("%s: password accepted\n", c->args[0]);
	return EXIT_SUCCESS;
}

static int cmd_user_remove(struct cli *c)
{
	const char *error = NULL;

	return done(store_user_remove(c->pg, c->args[0], &error), &error,
		    "account %s removed", c->args[0]);
}

static int cmd_user_quota(struct cli *c)
{
	int64_t qb, qm = -1;
	const char *error = NULL;

	if (parse_size_opt(c->args[1], &qb) != 0 ||
	    (c->set[OPT_MESSAGES] && parse_count_opt(c->val[OPT_MESSAGES], &qm) != 0))
		return EXIT_FAILURE;
	return done(store_user_set_quota(c->pg, c->args[0], qb, c->set[OPT_MESSAGES], qm,
					 &error), &error, "quota of %s set", c->args[0]);
}

static int cmd_user_enable(struct cli *c)
{
	const char *error = NULL;

	return done(store_user_set_enabled(c->pg, c->args[0], true, &error), &error,
		    "account %s enabled", c->args[0]);
}

static int cmd_user_disable(struct cli *c)
{
	const char *error = NULL;

	return done(store_user_set_enabled(c->pg, c->args[0], false, &error), &error,
		    "account %s disabled", c->args[0]);
}

static void user_row(const struct store_user_info *u, void *ctx)
{
	struct list_out *o = ctx;
	char b1[32], b2[32], b3[32], b4[32];

	if (o->json) {
		json_begin_row(o);
		printf("\"id\": %lld, \"address\": ", (long long)u->id);
		json_str(u->address);
		fputs(", \"tenant\": ", stdout);
		json_str(u->tenant);
		printf(", \"enabled\": %s, \"quota_bytes\": ", u->enabled ? "true" : "false");
		json_limit(u->quota_bytes);
		fputs(", \"quota_messages\": ", stdout);
		json_limit(u->quota_messages);
		printf(", \"used_bytes\": %lld, \"used_messages\": %lld}",
		       (long long)u->used_bytes, (long long)u->used_messages);
		return;
	}
	snprintf(b1, sizeof(b1), "%lld", (long long)u->used_bytes);
	snprintf(b2, sizeof(b2), "%lld", (long long)u->used_messages);
	const char *row[] = { u->address, u->tenant, u->enabled ? "yes" : "no", b1,
			      fmt_size(b3, sizeof(b3), u->quota_bytes), b2,
			      fmt_count(b4, sizeof(b4), u->quota_messages) };
	table_add(&o->table, row);
}

static int cmd_user_list(struct cli *c)
{
	static const char *const headers[] = { "ADDRESS", "TENANT", "ENABLED", "BYTES",
					       "QUOTA", "MESSAGES", "QUOTA-MESSAGES" };
	struct list_out o;
	const char *error = NULL;

	list_begin(&o, c->set[OPT_JSON], 7, headers);
	if (store_user_list(c->pg, c->val[OPT_TENANT], c->val[OPT_DOMAIN], user_row, &o,
			    &error) < 0) {
		if (!o.json)
			table_print_free(&o.table);
		return fail("%s", error);
	}
	list_end(&o);
	return EXIT_SUCCESS;
}

static int cmd_alias_add(struct cli *c)
{
	const char *error = NULL;

	return done(store_alias_add(c->pg, c->args[0], c->args + 1, (size_t)c->nargs - 1,
				    &error), &error, "alias %s added", c->args[0]);
}

static int cmd_alias_remove(struct cli *c)
{
	const char *error = NULL;

	if (store_alias_remove(c->pg, c->args[0], c->args + 1, (size_t)c->nargs - 1,
			       &error) < 0)
		return fail("%s", error);
	if (c->nargs == 1) {
		printf("alias %s removed\n", c->args[0]);
	} else {
		/* Only these destinations: the alias may go on with others. */
		printf("alias %s: removed", c->args[0]);
		for (int i = 1; i < c->nargs; i++)
			printf("%s %s", i > 1 ? "," : "", c->args[i]);
		putchar('\n');
	}
	return EXIT_SUCCESS;
}

static void alias_row(const struct store_alias_info *a, void *ctx)
{
	struct list_out *o = ctx;

	if (o->json) {
		json_begin_row(o);
		fputs("\"source\": ", stdout);
		json_str(a->source);
		fputs(", \"destination\": ", stdout);
		json_str(a->destination);
		fputs(", \"tenant\": ", stdout);
		json_str(a->tenant);
		putchar('}');
		return;
	}
	const char *row[] = { a->source, a->destination, a->tenant };
	table_add(&o->table, row);
}

static int cmd_alias_list(struct cli *c)
{
	static const char *const headers[] = { "SOURCE", "DESTINATION", "TENANT" };
	struct list_out o;
	const char *error = NULL;

	list_begin(&o, c->set[OPT_JSON], 3, headers);
	if (store_alias_list(c->pg, c->val[OPT_TENANT], c->val[OPT_DOMAIN], alias_row, &o,
			     &error) < 0) {
		if (!o.json)
			table_print_free(&o.table);
		return fail("%s", error);
	}
	list_end(&o);
	return EXIT_SUCCESS;
}

static int cmd_import_passwd(struct cli *c)
{
	struct store_import_result r;
	const char *path = c->args[0], *error = NULL;
	FILE *in;
	int rc;

	if (!c->set[OPT_TENANT])
		return usage_error("import-passwd: --tenant is required");
	in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (in == NULL)
		return fail("%s: %s", path, strerror(errno));
	rc = store_import_passwd(c->pg, in, c->val[OPT_TENANT], c->set[OPT_CREATE_DOMAINS],
				 &r, &error);
	if (in != stdin)
		fclose(in);
	if (rc < 0)
		return fail("%s: %s", path, error);
	printf("imported %u account%s, created %u domain%s\n", r.users,
	       r.users == 1 ? "" : "s", r.domains_created, r.domains_created == 1 ? "" : "s");
	return EXIT_SUCCESS;
}

struct who_out {
	struct list_out list;
	bool all;
};

static const char *fmt_time(char *buf, size_t size, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "%lld", (long long)t);
	return buf;
}

static void who_row(const struct store_who_entry *e, void *ctx)
{
	struct who_out *w = ctx;
	struct list_out *o = &w->list;
	char since[32], seen[32], id[32];

	if (e->stale && !w->all)
		return;
	fmt_time(since, sizeof(since), e->rec.since);
	fmt_time(seen, sizeof(seen), e->rec.seen);
	if (o->json) {
		json_begin_row(o);
		printf("\"account_id\": %llu, \"user\": ", (unsigned long long)e->account_id);
		json_str(e->rec.user);
		fputs(", \"session\": ", stdout);
		json_str(e->field);
		fputs(", \"node\": ", stdout);
		json_str(e->rec.node);
		fputs(", \"proto\": ", stdout);
		json_str(e->rec.proto);
		fputs(", \"client\": ", stdout);
		json_str(e->rec.client);
		printf(", \"since\": \"%s\", \"seen\": \"%s\", \"stale\": %s}", since, seen,
		       e->stale ? "true" : "false");
		return;
	}
	snprintf(id, sizeof(id), "%llu", (unsigned long long)e->account_id);
	const char *row[] = { e->rec.user[0] != '\0' ? e->rec.user : id, e->rec.node,
			      e->rec.proto, e->rec.client, since,
			      e->stale ? "stale" : "live" };
	table_add(&o->table, row);
}

static int cmd_who(struct cli *c)
{
	static const char *const headers[] = { "USER", "NODE", "PROTO", "CLIENT", "SINCE",
					       "STATE" };
	struct who_out w = { .all = c->set[OPT_ALL] };
	redisContext *redis = NULL;
	char host[256];
	const char *error = NULL;
	unsigned bad;
	int port = 0, rc;

	if (redis_target(c, host, sizeof(host), &port) != 0)
		return EXIT_FAILURE;
	if (store_redis_connect(host, port, &redis, &error) < 0)
		return fail("%s", error);
	list_begin(&w.list, c->set[OPT_JSON], 6, headers);
	rc = store_who_scan(redis, (int64_t)time(NULL), who_row, &w, &bad, &error);
	store_redis_close(&redis);
	if (rc < 0) {
		if (!w.list.json)
			table_print_free(&w.list.table);
		return fail("%s", error);
	}
	list_end(&w.list);
	if (bad > 0)
		fprintf(stderr, "posternctl: skipped %u malformed session record%s\n", bad,
			bad == 1 ? "" : "s");
	return EXIT_SUCCESS;
}

/* ---- nodes ---- */

struct nodes_out {
	struct list_out list;
	bool all;
	unsigned shown, stale;
};

static void json_str_or_null(const char *s)
{
	if (s[0] == '\0')
		fputs("null", stdout);
	else
		json_str(s);
}

static const char *fmt_ms_time(char *buf, size_t size, int64_t ms)
{
	time_t tt = (time_t)(ms / 1000);
	struct tm tm;
	char sec[24];

	if (ms < 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(buf, size, "%lld", (long long)ms);
	else
		snprintf(buf, size, "%s.%03dZ", sec, (int)(ms % 1000));
	return buf;
}

static void nodes_row(const struct store_nodes_entry *e, void *ctx)
{
	struct nodes_out *w = ctx;
	struct list_out *o = &w->list;
	const struct store_rnode *n = &e->node;
	char seen[40], age[32], sessions[24];

	if (e->stale)
		w->stale++;
	if (e->stale && !w->all)
		return;
	w->shown++;
	fmt_ms_time(seen, sizeof(seen), n->seen_ms);
	if (o->json) {
		json_begin_row(o);
		fputs("\"name\": ", stdout);
		json_str(n->name);
		fputs(", \"role\": ", stdout);
		json_str_or_null(n->role);
		fputs(", \"address\": ", stdout);
		json_str_or_null(n->addr);
		fputs(", \"version\": ", stdout);
		json_str_or_null(n->version);
		if (e->registered)
			printf(", \"sessions\": %lld", (long long)n->sessions);
		else
			fputs(", \"sessions\": null", stdout);
		printf(", \"ready\": %s, \"last_heartbeat\": \"%s\", \"age_ms\": %lld"
		       ", \"registered\": %s, \"stale\": %s}", n->ready ? "true" : "false", seen,
		       (long long)e->age_ms, e->registered ? "true" : "false",
		       e->stale ? "true" : "false");
		return;
	}
	/* a heartbeat from the future (clock skew between hosts) shows as 0 */
	snprintf(age, sizeof(age), "%lld.%01llds", (long long)(e->age_ms > 0 ? e->age_ms / 1000 : 0),
		 (long long)(e->age_ms > 0 ? e->age_ms % 1000 / 100 : 0));
	if (e->registered)
		snprintf(sessions, sizeof(sessions), "%lld", (long long)n->sessions);
	else
		snprintf(sessions, sizeof(sessions), "-");
	const char *row[] = { n->name, n->role[0] != '\0' ? n->role : "-",
			      n->addr[0] != '\0' ? n->addr : "-",
			      n->version[0] != '\0' ? n->version : "-", sessions,
			      !e->registered ? "-" : n->ready ? "yes" : "no", age,
			      e->stale ? "stale" : "live" };
	table_add(&o->table, row);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int redis_open(const struct cli *c, redisContext **redis_r)
{
	char host[256];
	const char *error = NULL;
	int port = 0;

	if (redis_target(c, host, sizeof(host), &port) != 0)
		return EXIT_FAILURE;
	if (store_redis_connect(host, port, redis_r, &error) < 0)
		return fail("%s", error);
	return 0;
}

static int cmd_nodes(struct cli *c)
{
	static const char *const headers[] = { "NAME", "ROLE", "ADDRESS", "VERSION",
					       "SESSIONS", "READY", "AGE", "STATE" };
	struct nodes_out w = { .all = c->set[OPT_ALL] };
	unsigned int ttl_ms = STORE_RNODE_TTL_DEFAULT_MS;
	redisContext *redis = NULL;
	const char *error = NULL;
	int rc;

	if (c->set[OPT_TTL]) {
		char *end;
		long v;

		errno = 0;
		v = strtol(c->val[OPT_TTL], &end, 10);
		if (errno != 0 || end == c->val[OPT_TTL] || *end != '\0' || v < 1 || v > 86400)
			return usage_error("--ttl: '%s' is not a number of seconds (1-86400)",
					   c->val[OPT_TTL]);
		ttl_ms = (unsigned int)v * 1000;
	}
	if (redis_open(c, &redis) != 0)
		return EXIT_FAILURE;
	list_begin(&w.list, c->set[OPT_JSON], 8, headers);
	rc = store_nodes_read(redis, now_ms(), ttl_ms, nodes_row, &w, &error);
	store_redis_close(&redis);
	if (rc < 0) {
		if (!w.list.json)
			table_free(&w.list.table);
		return fail("%s", error);
	}
	if (!w.list.json && w.shown == 0) {
		table_free(&w.list.table);
		printf("no live nodes%s\n", w.stale > 0 && !w.all ? " (stale ones: --all)" : "");
		return EXIT_SUCCESS;
	}
	list_end(&w.list);
	return EXIT_SUCCESS;
}

/* ---- kick ---- */

struct kick_count {
	const struct store_kick *kick;
	unsigned live;
};

static void kick_count_row(const struct store_who_entry *e, void *ctx)
{
	struct kick_count *k = ctx;

	if (!e->stale && store_kick_matches(k->kick, e->account_id, e->rec.proto, e->field))
		k->live++;
}

static int cmd_kick(struct cli *c)
{
	struct store_kick kick;
	struct kick_count count = { .kick = &kick };
	char msg[STORE_KICK_MAX + 1];
	redisContext *redis = NULL;
	const char *error = NULL, *address = c->args[0];
	long long receivers = 0;
	int64_t id;
	unsigned bad;
	bool json = c->set[OPT_JSON];
	int rc;

	memset(&kick, 0, sizeof(kick));
	if (c->set[OPT_PROTOCOL] &&
	    store_kick_proto_parse(c->val[OPT_PROTOCOL], strlen(c->val[OPT_PROTOCOL]),
				   &kick.proto) < 0)
		return usage_error("--protocol: '%s' is not imap, pop3 or smtp",
				   c->val[OPT_PROTOCOL]);
	if (c->set[OPT_SESSION]) {
		if (strlen(c->val[OPT_SESSION]) >= sizeof(kick.session))
			return usage_error("--session: too long");
		snprintf(kick.session, sizeof(kick.session), "%s", c->val[OPT_SESSION]);
	}
	if (store_kick_format(&kick, msg, sizeof(msg), &error) < 0)
		return usage_error("--session: '%s' is not NODE/ID", kick.session);
	if (store_user_lookup(c->pg, address, &id, &error) < 0)
		return fail("%s", error);
	kick.account_id = (uint64_t)id;
	if (redis_open(c, &redis) != 0)
		return EXIT_FAILURE;
	rc = store_who_account(redis, kick.account_id, (int64_t)time(NULL), kick_count_row,
			       &count, &bad, &error);
	if (rc == 0 && count.live > 0)
		rc = store_kick_publish(redis, &kick, &receivers, &error);
	store_redis_close(&redis);
	if (rc < 0)
		return fail("%s", error);
	if (json) {
		printf("{\"address\": ");
		json_str(address);
		printf(", \"account_id\": %llu, \"protocol\": ", (unsigned long long)kick.account_id);
		json_str_or_null(kick.proto != STORE_KICK_ANY ? store_kick_proto_name(kick.proto)
							      : "");
		fputs(", \"session\": ", stdout);
		json_str_or_null(kick.session);
		printf(", \"channel\": \"%s\", \"sessions\": %u, \"published\": %s"
		       ", \"receivers\": %lld}\n", STORE_NODES_KICK_CHANNEL, count.live,
		       count.live > 0 ? "true" : "false", receivers);
	} else if (count.live == 0) {
		printf("no sessions\n");
	} else {
		printf("kick sent: %u session%s listed, message received by %lld subscriber%s\n",
		       count.live, count.live == 1 ? "" : "s", receivers,
		       receivers == 1 ? "" : "s");
	}
	if (count.live > 0 && receivers == 0)
		fprintf(stderr, "posternctl: warning: no frontend is subscribed to %s\n",
			STORE_NODES_KICK_CHANNEL);
	if (bad > 0)
		fprintf(stderr, "posternctl: skipped %u malformed session record%s\n", bad,
			bad == 1 ? "" : "s");
	return EXIT_SUCCESS;
}

/* ---- dispatch ---- */

struct command {
	const char *word1, *word2;   /* word2 NULL: one-word command */
	int min_args, max_args;      /* max_args -1: no limit */
	unsigned opts;
	bool needs_pg;
	int (*run)(struct cli *c);
};

#define PW_OPTS (O(OPT_PASSWORD) | O(OPT_PASSWORD_STDIN))

static const struct command commands[] = {
	{ "migrate", NULL, 0, 0, 0, true, cmd_migrate },
	{ "tenant", "add", 1, 1, O(OPT_QUOTA) | O(OPT_QUOTA_MESSAGES), true, cmd_tenant_add },
	{ "tenant", "list", 0, 0, O(OPT_JSON), true, cmd_tenant_list },
	{ "tenant", "remove", 1, 1, O(OPT_FORCE), true, cmd_tenant_remove },
	{ "domain", "add", 1, 1, O(OPT_TENANT), true, cmd_domain_add },
	{ "domain", "list", 0, 0, O(OPT_TENANT) | O(OPT_JSON), true, cmd_domain_list },
	{ "domain", "remove", 1, 1, O(OPT_FORCE), true, cmd_domain_remove },
	{ "user", "add", 1, 1, PW_OPTS | O(OPT_QUOTA) | O(OPT_QUOTA_MESSAGES) | O(OPT_DISABLED),
	  true, cmd_user_add },
	{ "user", "passwd", 1, 1, PW_OPTS, true, cmd_user_passwd },
	{ "user", "list", 0, 0, O(OPT_TENANT) | O(OPT_DOMAIN) | O(OPT_JSON), true, cmd_user_list },
	{ "user", "remove", 1, 1, 0, true, cmd_user_remove },
	{ "user", "quota", 2, 2, O(OPT_MESSAGES), true, cmd_user_quota },
	{ "user", "enable", 1, 1, 0, true, cmd_user_enable },
	{ "user", "disable", 1, 1, 0, true, cmd_user_disable },
	{ "user", "auth", 1, 1, PW_OPTS, true, cmd_user_auth },
	{ "alias", "add", 2, -1, 0, true, cmd_alias_add },
	{ "alias", "list", 0, 0, O(OPT_TENANT) | O(OPT_DOMAIN) | O(OPT_JSON), true, cmd_alias_list },
	{ "alias", "remove", 1, -1, 0, true, cmd_alias_remove },
	{ "import-passwd", NULL, 1, 1, O(OPT_TENANT) | O(OPT_CREATE_DOMAINS), true,
	  cmd_import_passwd },
	{ "who", NULL, 0, 0, O(OPT_JSON) | O(OPT_ALL), false, cmd_who },
	{ "nodes", NULL, 0, 0, O(OPT_JSON) | O(OPT_ALL) | O(OPT_TTL), false, cmd_nodes },
	{ "kick", NULL, 1, 1, O(OPT_JSON) | O(OPT_PROTOCOL) | O(OPT_SESSION), true, cmd_kick },
};

static int parse_args(int argc, char **argv, struct cli *c)
{
	bool only_positional = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *eq;
		size_t nlen;
		int id = -1;

		if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
			if (c->npos == MAX_POSITIONAL)
				return usage_error("too many arguments");
			c->pos[c->npos++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (strcmp(a, "-h") == 0) {
			c->set[OPT_HELP] = true;
			continue;
		}
		if (a[1] != '-')
			return usage_error("unknown option '%s'", a);
		a += 2;
		eq = strchr(a, '=');
		nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
		for (int k = 0; k < OPT_COUNT; k++) {
			if (strlen(opt_defs[k].name) == nlen &&
			    strncmp(opt_defs[k].name, a, nlen) == 0)
				id = k;
		}
		if (id < 0)
			return usage_error("unknown option '--%.*s'", (int)nlen, a);
		if (c->set[id])
			return usage_error("option --%s given twice", opt_defs[id].name);
		c->set[id] = true;
		if (opt_defs[id].has_value) {
			if (eq != NULL)
				c->val[id] = eq + 1;
			else if (i + 1 < argc)
				c->val[id] = argv[++i];
			else
				return usage_error("option --%s needs a value", opt_defs[id].name);
		} else if (eq != NULL) {
			return usage_error("option --%s takes no value", opt_defs[id].name);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char cmdname[64];
	struct cli c;
	const struct command *cmd = NULL;
	int words, rc;

	memset(&c, 0, sizeof(c));
	rc = parse_args(argc, argv, &c);
	if (rc != 0)
		return rc;
	if (c.set[OPT_HELP] || c.npos == 0) {
		fputs(usage_text, c.npos == 0 && !c.set[OPT_HELP] ? stderr : stdout);
		return c.set[OPT_HELP] ? EXIT_SUCCESS : EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *k = &commands[i];

		if (strcmp(k->word1, c.pos[0]) != 0)
			continue;
		if (k->word2 == NULL || (c.npos > 1 && strcmp(k->word2, c.pos[1]) == 0)) {
			cmd = k;
			break;
		}
	}
	if (cmd == NULL) {
		if (c.npos > 1)
			return usage_error("unknown command '%s %s'", c.pos[0], c.pos[1]);
		return usage_error("unknown command '%s'", c.pos[0]);
	}
	words = cmd->word2 != NULL ? 2 : 1;
	snprintf(cmdname, sizeof(cmdname), "%s%s%s", cmd->word1, cmd->word2 ? " " : "",
		 cmd->word2 ? cmd->word2 : "");
	c.cmdname = cmdname;
	c.args = c.pos + words;
	c.nargs = c.npos - words;
	for (int k = 0; k < OPT_COUNT; k++) {
		if (c.set[k] && (O(k) & (GLOBAL_OPTS | cmd->opts)) == 0)
			return usage_error("option --%s does not apply to '%s'", opt_defs[k].name,
					   cmdname);
	}
	if (c.nargs < cmd->min_args || (cmd->max_args >= 0 && c.nargs > cmd->max_args))
		return usage_error("wrong number of arguments for '%s'", cmdname);
	if (cmd->needs_pg && pg_open(&c) != 0)
		return EXIT_FAILURE;
	rc = cmd->run(&c);
	store_pg_close(&c.pg);
	if (fflush(stdout) != 0)
		return fail("cannot write the output: %s", strerror(errno));
	return rc;
}
