/* Unit tests for postern/config.h: defaults, the file reader, environment and
 * --set precedence, every type's good and bad values, unknown keys and the
 * line numbers in error messages, and the Markdown reference. */
#include "postern/config.h"
#include "postern/testing.h"

#include <stdlib.h>
#include <unistd.h>

struct tcfg {
	char *listen;
	int64_t workers;
	int64_t offset;
	bool tls;
	uint64_t max_msg;
	uint64_t idle;
	int level;
	struct pn_config_list nets;
	char *banner;
};

static int check_not_localhost(const void *value, const char **error_r)
{
	const char *const *s = value;
	if (strcmp(*s, "localhost") == 0) {
		*error_r = "expected a numeric address";
		return -1;
	}
	return 0;
}

static const struct pn_config_def defs[] = {
	{ "listen", PN_CFG_STRING, "0.0.0.0:143", offsetof(struct tcfg, listen),
	  check_not_localhost, "Address to bind | with a pipe." },
	{ "workers", PN_CFG_INT_RANGE(0, 256), "4", offsetof(struct tcfg, workers), NULL,
	  "Loop threads." },
	{ "offset", PN_CFG_INT, "-3", offsetof(struct tcfg, offset), NULL, "Signed." },
	{ "tls", PN_CFG_BOOL, "yes", offsetof(struct tcfg, tls), NULL, "Use TLS." },
	{ "max_msg", PN_CFG_SIZE_RANGE(1024, 1024LL * 1024 * 1024), "50M",
	  offsetof(struct tcfg, max_msg), NULL, "Largest message." },
	{ "idle", PN_CFG_DURATION, "30m", offsetof(struct tcfg, idle), NULL, "Idle timeout." },
	{ "level", PN_CFG_ENUM("debug", "info", "warn", "error"), "info",
	  offsetof(struct tcfg, level), NULL, "Log level." },
	{ "nets", PN_CFG_LIST, "127.0.0.1/8, ::1/128", offsetof(struct tcfg, nets), NULL,
	  "Trusted networks." },
	{ "banner", PN_CFG_STRING, NULL, offsetof(struct tcfg, banner), NULL, "Greeting." },
};
#define N PN_CONFIG_COUNT(defs)

static void clear_env(void)
{
	for (size_t i = 0; i < N; i++) {
		char env[100];
		unsetenv(pn_config_env_name(defs[i].key, env, sizeof(env)));
	}
}

static int load(struct tcfg *c, const char *text, const char **error_r)
{
	return pn_config_load_text(defs, N, c, "t.conf", text, strlen(text), error_r);
}

/* Sets key to value via --set and returns the result. */
static int set1(struct tcfg *c, const char *kv)
{
	const char *err;
	return pn_config_set(defs, N, c, kv, &err);
}

PN_TEST(test_defaults)
{
	struct tcfg c = { 0 };
	const char *err = NULL;

	CHECK_INT(pn_config_defaults(defs, N, &c, &err), 0);
	CHECK_STR(c.listen, "0.0.0.0:143");
	CHECK_INT(c.workers, 4);
	CHECK_INT(c.offset, -3);
	CHECK(c.tls);
	CHECK_INT(c.max_msg, 50 * 1024 * 1024);
	CHECK_INT(c.idle, 30 * 60 * 1000);
	CHECK_INT(c.level, 1);
	CHECK_INT(c.nets.count, 2);
	if (c.nets.count == 2) {
		CHECK_STR(c.nets.items[0], "127.0.0.1/8");
		CHECK_STR(c.nets.items[1], "::1/128");
	}
	CHECK_STR(c.banner, "");
	/* defaults again over a filled struct: no leak, same values */
	CHECK_INT(pn_config_defaults(defs, N, &c, &err), 0);
	CHECK_STR(c.listen, "0.0.0.0:143");
	pn_config_free(defs, N, &c);
	CHECK(c.listen == NULL);
	CHECK(c.nets.items == NULL && c.nets.count == 0);
}

/* Range macros build compound literals: tables using them live at file scope. */
static const struct pn_config_def bad_default[] = {
	{ "n", PN_CFG_INT_RANGE(1, 2), "3", 0, NULL, "" },
};

PN_TEST(test_bad_table)
{
	static const struct pn_config_def bad_key[] = {
		{ "Bad-Key", PN_CFG_STRING, "", 0, NULL, "" },
	};
	static const struct pn_config_def dup[] = {
		{ "a", PN_CFG_STRING, "", 0, NULL, "" },
		{ "a", PN_CFG_STRING, "", 0, NULL, "" },
	};
	int64_t store[4] = { 0 };
	const char *err = NULL;

	CHECK_INT(pn_config_defaults(bad_key, 1, store, &err), -1);
	CHECK(err != NULL && strstr(err, "Bad-Key") != NULL);
	CHECK_INT(pn_config_defaults(dup, 2, store, &err), -1);
	CHECK(err != NULL && strstr(err, "twice") != NULL);
	CHECK_INT(pn_config_defaults(bad_default, 1, store, &err), -1);
	CHECK(err != NULL && strstr(err, "built-in default: n:") != NULL);
}

PN_TEST(test_file)
{
	struct tcfg c = { 0 };
	const char *err = NULL;
	const char *text =
		"# a comment\n"
		"\n"
		"   listen = 10.0.0.1:1143   # trailing comment\n"
		"workers=8\r\n"
		"tls = off\n"
		"\t# indented comment\n"
		"max_msg = 10M\n"
		"idle = \"1m30s\"\n"
		"level = WARN\n"
		"nets = 10.0.0.0/8 ,192.168.0.0/16,  fd00::/8\n"
		"banner = 'say # \"hi\"'";	/* no final newline */

	CHECK_INT(pn_config_defaults(defs, N, &c, &err), 0);
	CHECK_INT(load(&c, text, &err), 0);
	CHECK_STR(c.listen, "10.0.0.1:1143");
	CHECK_INT(c.workers, 8);
	CHECK(!c.tls);
	CHECK_INT(c.max_msg, 10 * 1024 * 1024);
	CHECK_INT(c.idle, 90000);
	CHECK_INT(c.level, 2);
	CHECK_INT(c.nets.count, 3);
	if (c.nets.count == 3) {
		CHECK_STR(c.nets.items[0], "10.0.0.0/8");
		CHECK_STR(c.nets.items[1], "192.168.0.0/16");
		CHECK_STR(c.nets.items[2], "fd00::/8");
	}
	CHECK_STR(c.banner, "say # \"hi\"");
	/* untouched keys keep their defaults */
	CHECK_INT(c.offset, -3);

	/* double quotes with escapes; '#' without a blank before is data */
	CHECK_INT(load(&c, "banner = \"a\\\"b\\\\c\\td\"  # c\n", &err), 0);
	CHECK_STR(c.banner, "a\"b\\c\td");
	CHECK_INT(load(&c, "banner = a#b\n", &err), 0);
	CHECK_STR(c.banner, "a#b");
	CHECK_INT(load(&c, "banner =\n", &err), 0);
	CHECK_STR(c.banner, "");
	CHECK_INT(load(&c, "nets =\n", &err), 0);
	CHECK_INT(c.nets.count, 0);
	pn_config_free(defs, N, &c);
}

PN_TEST(test_file_on_disk)
{
	struct tcfg c = { 0 };
	const char *err = NULL;
	char path[] = "/tmp/postern-test-config-XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	static const char text[] = "workers = 2\nlevel = debug\n";
	CHECK_INT(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
	close(fd);
	clear_env();
	CHECK_INT(pn_config_load(defs, N, &c, path, NULL, 0, &err), 0);
	CHECK_INT(c.workers, 2);
	CHECK_INT(c.level, 0);
	unlink(path);
	CHECK_INT(pn_config_load_file(defs, N, &c, path, &err), -1);
	CHECK(err != NULL && strstr(err, path) != NULL && strstr(err, "cannot open") != NULL);
	pn_config_free(defs, N, &c);
}

PN_TEST(test_errors_with_line_numbers)
{
	struct tcfg c = { 0 };
	const char *err = NULL;

	CHECK_INT(pn_config_defaults(defs, N, &c, &err), 0);
	CHECK_INT(load(&c, "workers = 1\n\n# x\nlisten_addr = 1.2.3.4:5\n", &err), -1);
	CHECK_STR(err, "t.conf:4: unknown key \"listen_addr\"");
	/* the lines before the error were applied */
	CHECK_INT(c.workers, 1);

	CHECK_INT(load(&c, "\nworkers = many\n", &err), -1);
	CHECK_STR(err, "t.conf:2: workers: invalid value \"many\": "
		       "expected an integer from 0 to 256");
	CHECK_INT(load(&c, "workers\n", &err), -1);
	CHECK_STR(err, "t.conf:1: expected \"key = value\"");
	CHECK_INT(load(&c, "= 3\n", &err), -1);
	CHECK_STR(err, "t.conf:1: expected \"key = value\"");
	CHECK_INT(load(&c, "a\nb\nbanner = \"open\n", &err), -1);
	CHECK(err != NULL && strncmp(err, "t.conf:1:", 9) == 0);
	CHECK_INT(load(&c, "banner = \"open\n", &err), -1);
	CHECK_STR(err, "t.conf:1: unterminated quoted value");
	CHECK_INT(load(&c, "banner = \"x\" y\n", &err), -1);
	CHECK_STR(err, "t.conf:1: unexpected text after the quoted value");
	CHECK_INT(load(&c, "banner = \"\\q\"\n", &err), -1);
	CHECK(err != NULL && strstr(err, "unknown escape") != NULL);
	CHECK_INT(load(&c, "workers = 1\nworkers = 2\n", &err), -1);
	CHECK_STR(err, "t.conf:2: workers set again (first set on line 1)");
	/* a check function's message is part of the error */
	CHECK_INT(load(&c, "listen = localhost\n", &err), -1);
	CHECK_STR(err, "t.conf:1: listen: invalid value \"localhost\": "
		       "expected a numeric address");
	/* a rejected value leaves the old one */
	CHECK_STR(c.listen, "0.0.0.0:143");
	/* control bytes in values are escaped in messages */
	CHECK_INT(load(&c, "tls = \"\x1b[31m\"\n", &err), -1);
	CHECK(err != NULL && strstr(err, "\\x1b[31m") != NULL && strchr(err, 0x1b) == NULL);

	/* NUL byte and over-long line */
	CHECK_INT(pn_config_load_text(defs, N, &c, "t.conf", "tls = 1\nx\0y\n", 12, &err), -1);
	CHECK_STR(err, "t.conf:2: NUL byte in line");
	char *big = malloc(PN_CONFIG_MAX_LINE + 100);
	if (big != NULL) {
		memcpy(big, "banner = ", 9);
		memset(big + 9, 'x', PN_CONFIG_MAX_LINE + 90);
		big[PN_CONFIG_MAX_LINE + 99] = '\0';
		CHECK_INT(load(&c, big, &err), -1);
		CHECK(err != NULL && strstr(err, "t.conf:1: line longer") != NULL);
		free(big);
	}
	pn_config_free(defs, N, &c);
}

PN_TEST(test_types_good_and_bad)
{
	struct tcfg c = { 0 };
	const char *err = NULL;

	CHECK_INT(pn_config_defaults(defs, N, &c, &err), 0);
	/* INT with range */
	CHECK_INT(set1(&c, "workers=0"), 0);
	CHECK_INT(c.workers, 0);
	CHECK_INT(set1(&c, "workers=256"), 0);
	CHECK_INT(c.workers, 256);
	CHECK_INT(set1(&c, "workers=+7"), 0);
	CHECK_INT(c.workers, 7);
	CHECK_INT(set1(&c, "workers=257"), -1);
	CHECK_INT(set1(&c, "workers=-1"), -1);
	CHECK_INT(set1(&c, "workers="), -1);
	CHECK_INT(set1(&c, "workers=1x"), -1);
	CHECK_INT(set1(&c, "workers= 1"), -1);
	CHECK_INT(c.workers, 7);
	/* INT without range: full int64 */
	CHECK_INT(set1(&c, "offset=-9223372036854775808"), 0);
	CHECK(c.offset == INT64_MIN);
	CHECK_INT(set1(&c, "offset=9223372036854775807"), 0);
	CHECK(c.offset == INT64_MAX);
	CHECK_INT(set1(&c, "offset=9223372036854775808"), -1);
	CHECK_INT(set1(&c, "offset=-9223372036854775809"), -1);
	CHECK_INT(set1(&c, "offset=99999999999999999999999"), -1);
	CHECK_INT(set1(&c, "offset=-"), -1);

	/* BOOL */
	static const char *const yes[] = { "yes", "YES", "true", "On", "1" };
	static const char *const no[] = { "no", "False", "off", "0" };
	for (size_t i = 0; i < 5; i++) {
		CHECK_INT(pn_config_set_value(defs, N, &c, "tls", yes[i], "t", &err), 0);
		CHECK(c.tls);
	}
	for (size_t i = 0; i < 4; i++) {
		CHECK_INT(pn_config_set_value(defs, N, &c, "tls", no[i], "t", &err), 0);
		CHECK(!c.tls);
	}
	CHECK_INT(pn_config_set_value(defs, N, &c, "tls", "maybe", "t", &err), -1);
	CHECK_STR(err, "t: tls: invalid value \"maybe\": "
		       "expected yes/no, true/false, on/off or 1/0");
	CHECK_INT(set1(&c, "tls=2"), -1);
	CHECK_INT(set1(&c, "tls="), -1);

	/* SIZE, range 1024 .. 1G */
	CHECK_INT(set1(&c, "max_msg=1024"), 0);
	CHECK_INT(c.max_msg, 1024);
	CHECK_INT(set1(&c, "max_msg=64k"), 0);
	CHECK_INT(c.max_msg, 65536);
	CHECK_INT(set1(&c, "max_msg=64KiB"), 0);
	CHECK_INT(c.max_msg, 65536);
	CHECK_INT(set1(&c, "max_msg=3mb"), 0);
	CHECK_INT(c.max_msg, 3 << 20);
	CHECK_INT(set1(&c, "max_msg=1G"), 0);
	CHECK_INT(c.max_msg, 1 << 30);
	CHECK_INT(set1(&c, "max_msg=2048B"), 0);
	CHECK_INT(c.max_msg, 2048);
	CHECK_INT(set1(&c, "max_msg=1023"), -1);
	CHECK_INT(set1(&c, "max_msg=2G"), -1);
	CHECK_INT(set1(&c, "max_msg=1T"), -1);
	CHECK_INT(set1(&c, "max_msg=10x"), -1);
	CHECK_INT(set1(&c, "max_msg=k"), -1);
	CHECK_INT(set1(&c, "max_msg=-5k"), -1);
	CHECK_INT(set1(&c, "max_msg=99999999999999999999T"), -1);
	CHECK_INT(set1(&c, "max_msg=17179869184G"), -1); /* overflows the shift */
	CHECK_INT(c.max_msg, 2048);

	/* DURATION */
	CHECK_INT(set1(&c, "idle=0"), 0);
	CHECK_INT(c.idle, 0);
	CHECK_INT(set1(&c, "idle=250ms"), 0);
	CHECK_INT(c.idle, 250);
	CHECK_INT(set1(&c, "idle=30s"), 0);
	CHECK_INT(c.idle, 30000);
	CHECK_INT(set1(&c, "idle=5m"), 0);
	CHECK_INT(c.idle, 300000);
	CHECK_INT(set1(&c, "idle=2h"), 0);
	CHECK_INT(c.idle, 7200000);
	CHECK_INT(set1(&c, "idle=1d"), 0);
	CHECK_INT(c.idle, 86400000);
	CHECK_INT(set1(&c, "idle=1h2m3s4ms"), 0);
	CHECK_INT(c.idle, 3723004);
	CHECK_INT(set1(&c, "idle=30"), -1);	/* unit required */
	CHECK_INT(set1(&c, "idle=s"), -1);
	CHECK_INT(set1(&c, "idle=5w"), -1);
	CHECK_INT(set1(&c, "idle=5 s"), -1);
	CHECK_INT(set1(&c, "idle="), -1);
	CHECK_INT(set1(&c, "idle=999999999999999999d"), -1);
	CHECK_INT(pn_config_set_value(defs, N, &c, "idle", "ten", "x", &err), -1);
	CHECK(err != NULL && strstr(err, "expected a duration") != NULL);
	CHECK_INT(c.idle, 3723004);

	/* ENUM */
	CHECK_INT(set1(&c, "level=debug"), 0);
	CHECK_INT(c.level, 0);
	CHECK_INT(set1(&c, "level=Error"), 0);
	CHECK_INT(c.level, 3);
	CHECK_INT(pn_config_set_value(defs, N, &c, "level", "loud", "x", &err), -1);
	CHECK_STR(err, "x: level: invalid value \"loud\": "
		       "expected one of: debug, info, warn, error");
	CHECK_INT(set1(&c, "level="), -1);
	CHECK_INT(c.level, 3);

	/* LIST */
	CHECK_INT(set1(&c, "nets=a"), 0);
	CHECK_INT(c.nets.count, 1);
	CHECK_INT(set1(&c, "nets=  "), 0);
	CHECK_INT(c.nets.count, 0);
	CHECK_INT(set1(&c, "nets=a,,b"), -1);
	CHECK_INT(set1(&c, "nets=a,"), -1);
	CHECK_INT(set1(&c, "nets=,a"), -1);
	CHECK_INT(c.nets.count, 0);

	/* STRING: anything, including an empty value */
	CHECK_INT(set1(&c, "banner=x=y"), 0);
	CHECK_STR(c.banner, "x=y");
	CHECK_INT(set1(&c, "banner="), 0);
	CHECK_STR(c.banner, "");

	/* --set syntax */
	CHECK_INT(pn_config_set(defs, N, &c, "nope=1", &err), -1);
	CHECK_STR(err, "--set: unknown key \"nope\"");
	CHECK_INT(pn_config_set(defs, N, &c, "workers", &err), -1);
	CHECK(err != NULL && strstr(err, "expected key=value") != NULL);
	CHECK_INT(pn_config_set(defs, N, &c, "=1", &err), -1);
	pn_config_free(defs, N, &c);
}

PN_TEST(test_env_beats_file_and_set_beats_env)
{
	struct tcfg c = { 0 };
	const char *err = NULL;
	char path[] = "/tmp/postern-test-config-XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	static const char text[] = "workers = 2\nlisten = 1.1.1.1:1\nlevel = warn\n";
	CHECK_INT(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
	close(fd);

	clear_env();
	setenv("POSTERN_WORKERS", "9", 1);
	setenv("POSTERN_NETS", "a, b", 1);
	setenv("POSTERN_LEVEL", "error", 1);
	setenv("POSTERN_NOT_A_KEY", "ignored", 1);
	const char *sets[] = { "level=debug", "banner=from set" };
	CHECK_INT(pn_config_load(defs, N, &c, path, sets, 2, &err), 0);
	CHECK_INT(c.workers, 9);		/* env over file */
	CHECK_STR(c.listen, "1.1.1.1:1");	/* file over default */
	CHECK_INT(c.level, 0);			/* --set over env */
	CHECK_STR(c.banner, "from set");
	CHECK_INT(c.nets.count, 2);
	CHECK_INT(c.max_msg, 50 << 20);		/* default */

	/* a bad environment value names the variable */
	setenv("POSTERN_WORKERS", "lots", 1);
	CHECK_INT(pn_config_load(defs, N, &c, path, NULL, 0, &err), -1);
	CHECK_STR(err, "environment POSTERN_WORKERS: workers: invalid value \"lots\": "
		       "expected an integer from 0 to 256");
	/* env values are taken whole: no quote or comment processing */
	setenv("POSTERN_WORKERS", "3", 1);
	setenv("POSTERN_BANNER", "\"quoted\" # not a comment", 1);
	CHECK_INT(pn_config_load(defs, N, &c, NULL, NULL, 0, &err), 0);
	CHECK_STR(c.banner, "\"quoted\" # not a comment");
	CHECK_INT(c.workers, 3);
	clear_env();
	unsetenv("POSTERN_NOT_A_KEY");
	unlink(path);
	pn_config_free(defs, N, &c);
}

PN_TEST(test_env_name)
{
	char env[32];
	CHECK_STR(pn_config_env_name("imap_listen", env, sizeof(env)), "POSTERN_IMAP_LISTEN");
	CHECK_STR(pn_config_env_name("a_very_long_key_name_here", env, 16), "POSTERN_A_VERY_");
}

PN_TEST(test_markdown)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	CHECK(f != NULL);
	if (f == NULL)
		return;
	CHECK_INT(pn_config_write_markdown(defs, N, f), 0);
	fclose(f);
	CHECK(strncmp(text, "| Key | Type | Default | Environment | Description |\n"
			    "|---|---|---|---|---|\n", 72) == 0);
	CHECK(strstr(text, "| `listen` | string | `0.0.0.0:143` | `POSTERN_LISTEN` | "
			   "Address to bind \\| with a pipe. |\n") != NULL);
	CHECK(strstr(text, "| `workers` | integer (0 to 256) | `4` | `POSTERN_WORKERS` | "
			   "Loop threads. |\n") != NULL);
	CHECK(strstr(text, "| `level` | one of `debug`, `info`, `warn`, `error` | `info` |")
	      != NULL);
	CHECK(strstr(text, "| `max_msg` | size (1024 to 1073741824 bytes) | `50M` |") != NULL);
	CHECK(strstr(text, "| `idle` | duration | `30m` |") != NULL);
	CHECK(strstr(text, "| `banner` | string | (empty) | `POSTERN_BANNER` |") != NULL);
	/* one header, one separator and one row per key */
	size_t lines = 0;
	for (char *p = text; *p != '\0'; p++)
		lines += *p == '\n';
	CHECK_INT(lines, N + 2);
	free(text);
}

PN_TEST_MAIN("config",
	PN_TEST_CASE(test_defaults),
	PN_TEST_CASE(test_bad_table),
	PN_TEST_CASE(test_file),
	PN_TEST_CASE(test_file_on_disk),
	PN_TEST_CASE(test_errors_with_line_numbers),
	PN_TEST_CASE(test_types_good_and_bad),
	PN_TEST_CASE(test_env_beats_file_and_set_beats_env),
	PN_TEST_CASE(test_env_name),
	PN_TEST_CASE(test_markdown))
