/* libFuzzer target for the config file reader and value parsers
 * (postern/config.h): arbitrary text against a table with every field
 * type; checks that a failure always comes with a message and that the
 * struct stays freeable. */
#include "postern/config.h"


#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fcfg {
	char *s;
	int64_t i;
	int64_t r;
	bool b;
	uint64_t size;
	uint64_t dur;
	int e;
	struct pn_config_list l;
};

static int check_short(const void *value, const char **error_r)
{
	const char *const *s = value;
	if (strlen(*s) > 100) {
		*error_r = "expected at most 100 bytes";
		return -1;
	}
	return 0;
}

static const struct pn_config_def defs[] = {
	{ "s", PN_CFG_STRING, "x", offsetof(struct fcfg, s), check_short, "" },
	{ "i", PN_CFG_INT, "0", offsetof(struct fcfg, i), NULL, "" },
	{ "r", PN_CFG_INT_RANGE(-5, 5), "0", offsetof(struct fcfg, r), NULL, "" },
	{ "b", PN_CFG_BOOL, "no", offsetof(struct fcfg, b), NULL, "" },
	{ "size", PN_CFG_SIZE_RANGE(1, 1 << 30), "1k", offsetof(struct fcfg, size), NULL, "" },
	{ "dur", PN_CFG_DURATION, "1s", offsetof(struct fcfg, dur), NULL, "" },
	{ "e", PN_CFG_ENUM("a", "b", "c"), "a", offsetof(struct fcfg, e), NULL, "" },
	{ "l", PN_CFG_LIST, "p, q", offsetof(struct fcfg, l), NULL, "" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fcfg c;
	const char *error = NULL;
	size_t n = sizeof(defs) / sizeof(defs[0]);

	memset(&c, 0, sizeof(c));
	if (pn_config_defaults(defs, n, &c, &error) < 0)
		abort(); /* the table above is valid */
	if (pn_config_load_text(defs, n, &c, "fuzz.conf", (const char *)data, size, &error) < 0) {
		if (error == NULL || strncmp(error, "fuzz.conf", 9) != 0)
			abort();
	}
	if (c.s == NULL || c.r < -5 || c.r > 5 || c.size < 1 || c.size > (1 << 30) ||
	    c.e < 0 || c.e > 2)
		abort();
	for (size_t i = 0; i < c.l.count; i++) {
		if (c.l.items[i] == NULL || c.l.items[i][0] == '\0')
			abort();
	}
	pn_config_free(defs, n, &c);
	return 0;
}
