/* Configuration as a table.
 *
 * A daemon describes every setting once, at file scope:
 *
 *   static const struct pn_config_def fe_defs[] = {
 *     { "imap_listen", PN_CFG_STRING, "0.0.0.0:143",
 *       offsetof(struct fe_config, imap_listen), check_hostport,
 *       "Address the IMAP listener binds to." },
 *     { "workers", PN_CFG_INT_RANGE(0, 256), "0",
 *       offsetof(struct fe_config, workers), NULL,
 *       "Loop threads; 0 means one per core." },
 *     { "log_level", PN_CFG_ENUM("debug", "info", "warn", "error"), "info",
 *       offsetof(struct fe_config, log_level), NULL, "Lowest level logged." },
 *   };
 *
 * and the parser, the environment overrides, the command-line overrides and
 * the reference documentation (pn_config_write_markdown) all come from that
 * table. The table must live at file scope: the PN_CFG_*_RANGE and PN_CFG_ENUM
 * macros build compound literals, which have static storage only there.
 *
 * Field types (the C type at `offset` in the caller's struct):
 *
 *   PN_CFG_STRING    char *                  malloc'd, never NULL once set
 *   PN_CFG_INT       int64_t                 decimal, optional sign; range
 *                                            checked with PN_CFG_INT_RANGE
 *   PN_CFG_BOOL      bool                    yes/no, true/false, on/off, 1/0
 *                                            (case-insensitive)
 *   PN_CFG_SIZE      uint64_t  (bytes)       "512", "64k", "16M", "2G", "1T";
 *                                            binary multiples (k = 1024), an
 *                                            optional trailing "B" or "iB"
 *   PN_CFG_DURATION  uint64_t  (milliseconds) "250ms", "30s", "5m", "1h",
 *                                            "1d", or a sum such as "1m30s";
 *                                            a unit is required except for "0"
 *   PN_CFG_ENUM(...) int  (index in list)    one of the listed words
 *                                            (case-insensitive)
 *   PN_CFG_LIST      struct pn_config_list   comma-separated strings, spaces
 *                                            around items trimmed, "" = empty
 *
 * Precedence, lowest first: the table's default, the config file, the
 * environment (POSTERN_<KEY upper-cased>), command-line --set key=value.
 * pn_config_load() applies all four in that order.
 *
 * File syntax: one `key = value` per line; blank lines and lines whose first
 * non-blank byte is '#' are ignored; in an unquoted value a '#' preceded by
 * a blank starts a comment; surrounding blanks are trimmed. A value may be
 * quoted: "..." understands the escapes \" and \\ (and \n, \t); '...' takes
 * everything literally. Setting the same key twice in one file is an error
 * (it is nearly always a mistake). Lines are at most PN_CONFIG_MAX_LINE bytes
 * and files at most PN_CONFIG_MAX_FILE bytes.
 *
 * Errors: functions return 0, or -1 with *error_r set to a message such as
 *   "fe.conf:12: unknown key \"imap_lisen\""
 *   "fe.conf:14: workers: invalid value \"many\": expected an integer from 0 to 256"
 *   "environment POSTERN_WORKERS: workers: invalid value ..."
 * The message lives in a per-thread buffer that stays valid until the next
 * pn_config_* call on the same thread. On error the field keeps its previous
 * value (a file that fails part-way leaves earlier lines applied).
 *
 * Memory: the struct must start zeroed (or have been filled by these
 * functions). Strings and lists belong to the struct; pn_config_free()
 * releases them. No function here keeps a pointer to the caller's struct.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PN_CONFIG_MAX_LINE 8192
#define PN_CONFIG_MAX_FILE (1024 * 1024)
#define PN_CONFIG_MAX_LIST 1024 /* items in one LIST value */

enum pn_config_kind {
	PN_CFG_KIND_STRING,
	PN_CFG_KIND_INT,
	PN_CFG_KIND_BOOL,
	PN_CFG_KIND_SIZE,
	PN_CFG_KIND_DURATION,
	PN_CFG_KIND_ENUM,
	PN_CFG_KIND_LIST,
};

/* What a field holds and which values it accepts. */
struct pn_config_type {
	enum pn_config_kind kind;
	/* INT, SIZE, DURATION: inclusive bounds; both 0 means "no bounds"
	 * (INT64 range for INT, 0..INT64_MAX for SIZE and DURATION ms). */
	int64_t min, max;
	/* ENUM: the allowed words, NULL-terminated. */
	const char *const *values;
};

extern const struct pn_config_type pn_config_type_string, pn_config_type_int,
	pn_config_type_bool, pn_config_type_size, pn_config_type_duration,
	pn_config_type_list;

#define PN_CFG_STRING (&pn_config_type_string)
#define PN_CFG_INT (&pn_config_type_int)
#define PN_CFG_BOOL (&pn_config_type_bool)
#define PN_CFG_SIZE (&pn_config_type_size)
#define PN_CFG_DURATION (&pn_config_type_duration)
#define PN_CFG_LIST (&pn_config_type_list)
#define PN_CFG_INT_RANGE(lo, hi) \
	(&(const struct pn_config_type){ .kind = PN_CFG_KIND_INT, .min = (lo), .max = (hi) })
/* Bounds in bytes. */
#define PN_CFG_SIZE_RANGE(lo, hi) \
	(&(const struct pn_config_type){ .kind = PN_CFG_KIND_SIZE, .min = (lo), .max = (hi) })
/* Bounds in milliseconds. */
#define PN_CFG_DURATION_RANGE(lo, hi) \
	(&(const struct pn_config_type){ .kind = PN_CFG_KIND_DURATION, .min = (lo), .max = (hi) })
#define PN_CFG_ENUM(...)                                                      \
	(&(const struct pn_config_type){ .kind = PN_CFG_KIND_ENUM,           \
		.values = (const char *const[]){ __VA_ARGS__, NULL } })

/* A LIST field. items[0..count) are malloc'd strings. */
struct pn_config_list {
	char **items;
	size_t count;
};

/* Extra validation after a value parsed. value points at an object of the
 * field's C type holding the new value (e.g. `char **` for STRING). Returns
 * 0 to accept, or -1 with *error_r set to a static message saying what is
 * expected ("expected host:port"). */
typedef int pn_config_check_fn(const void *value, const char **error_r);

struct pn_config_def {
	const char *key;	/* [a-z0-9_]+ */
	const struct pn_config_type *type;
	const char *def;	/* default in file syntax; NULL = empty/0/false */
	size_t offset;		/* offsetof(struct your_config, field) */
	pn_config_check_fn *check; /* NULL: no check beyond the type */
	const char *help;	/* one sentence for the reference */
};

/* Sets every field to its default (checks run too, so a bad default in the
 * table is caught on the first start). Returns 0 or -1. */
int pn_config_defaults(const struct pn_config_def *defs, size_t n, void *cfg,
		       const char **error_r);

/* Reads `path` (see the file syntax above). Returns 0 or -1; a file that
 * cannot be opened is an error naming the path and errno. */
int pn_config_load_file(const struct pn_config_def *defs, size_t n, void *cfg,
			const char *path, const char **error_r);
/* The same over text[0..len); `name` stands for the file in messages. */
int pn_config_load_text(const struct pn_config_def *defs, size_t n, void *cfg,
			const char *name, const char *text, size_t len,
			const char **error_r);

/* Applies POSTERN_<KEY> from the environment for every key in the table
 * (other POSTERN_* variables are ignored: they may belong to the tooling).
 * The variable's whole value is the value: no quotes, no comments. */
int pn_config_apply_env(const struct pn_config_def *defs, size_t n, void *cfg,
			const char **error_r);
/* Name of the environment variable for key into dst. Returns dst. */
char *pn_config_env_name(const char *key, char *dst, size_t dstsize);

/* Applies one "key=value" (as given to --set). */
int pn_config_set(const struct pn_config_def *defs, size_t n, void *cfg,
		  const char *assignment, const char **error_r);
/* Applies value to key; origin names the source in error messages. */
int pn_config_set_value(const struct pn_config_def *defs, size_t n, void *cfg,
			const char *key, const char *value, const char *origin,
			const char **error_r);

/* Defaults, then path (if not NULL), then the environment, then each of
 * sets[0..nsets) ("key=value"). Returns 0 or -1. */
int pn_config_load(const struct pn_config_def *defs, size_t n, void *cfg,
		   const char *path, const char *const *sets, size_t nsets,
		   const char **error_r);

/* Writes the table as a Markdown table (key, type, default, environment
 * variable, description) for --help-config and docs/. Returns 0, or -1 on
 * a write error. */
int pn_config_write_markdown(const struct pn_config_def *defs, size_t n, FILE *out);

/* Frees the strings and lists; the struct may be filled again afterwards. */
void pn_config_free(const struct pn_config_def *defs, size_t n, void *cfg);

#define PN_CONFIG_COUNT(defs) (sizeof(defs) / sizeof((defs)[0]))

#endif
