/* Session scripts of the load generator: the parsed program, the text
 * substitution of send lines, and the sans-IO reply reader.
 *
 * A script is a text file, one step per line; '#' starts a comment line,
 * blank lines are ignored, leading spaces are allowed (indentation):
 *
 *   proto imap|pop3|smtp|lmtp|raw    informational (reported)
 *   message size=N | size=MIN-MAX | sizes=N:W,N:W,... | file=PATH
 *                                    bodies for `append` and `body`
 *                                    (sizes accept k/m suffixes; W weights)
 *   send TEXT                        TEXT with substitutions, then CRLF
 *   expect [MODE] [times=N] [as=NAME] PREFIX
 *                                    wait for a reply whose (last) line
 *                                    starts with PREFIX (may hold spaces);
 *                                    MODE: line (default: one line), dot
 *                                    (POP3: first line, then lines up to
 *                                    "." when it matched), smtp (SMTP/LMTP:
 *                                    continuation lines "NNN-" up to the
 *                                    last "NNN "; times=N for LMTP's one
 *                                    reply per recipient), tagged (IMAP:
 *                                    untagged lines and literals skipped up
 *                                    to the line tagged with the first word
 *                                    of the last send; PREFIX is matched
 *                                    after the tag, e.g. "OK")
 *   append TEXT                      IMAP APPEND: TEXT with %s = size of the
 *                                    next message, then CRLF; unless TEXT
 *                                    ends in "+}" (LITERAL+) wait for the "+"
 *                                    continuation; then the message and CRLF
 *   body                             SMTP/LMTP DATA: the next message,
 *                                    dot-stuffed, then ".\r\n"
 *   stream BYTES [chunk=N]           raw: send BYTES and receive BYTES back
 *                                    at the same time (an echo peer)
 *   starttls                         start TLS now (after the OK reply)
 *   loop [N]                         repeat the steps up to `end` N times;
 *   end                              without N: until the run ends
 *   sleep MS                         think time
 *   hold                             stay connected and idle until the run
 *                                    ends (idle mode measures here)
 *   wait-close                       the server closes first (after
 *                                    LOGOUT/QUIT): wait for its FIN
 *   close                            the client closes
 *
 * Substitutions in send/append TEXT: %u user name, %p password, %n number
 * of this connection's sends so far including this one (IMAP tags: a%n),
 * %s message size (append only), %% a percent sign.
 *
 * Latency labels: each expect (and stream) records under a label: as=NAME,
 * or the command word of the preceding send (the second word for tagged
 * replies, the first word being the tag), "APPEND" after append, "message"
 * after body, "greeting" when nothing was sent before.
 *
 * The unit of work: the first top-level `loop` without a count when there
 * is one (one iteration = one unit: persistent connections), else the whole
 * session (connect ... close = one unit).
 */
#ifndef POSTERN_BENCH_SCRIPT_H
#define POSTERN_BENCH_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern/buf.h"

#define BN_MAX_STEPS 256
#define BN_MAX_LABELS 32
#define BN_MAX_LOOP_DEPTH 8
#define BN_MAX_LINE 65536	   /* reply line limit */
#define BN_MAX_TEXT 4096	   /* send template limit */
#define BN_MAX_SIZES 16
#define BN_MAX_MESSAGE (64u * 1024 * 1024)
#define BN_MAX_STREAM (UINT64_C(1) << 40)

enum bn_step_kind {
	BN_STEP_SEND,
	BN_STEP_EXPECT,
	BN_STEP_APPEND,
	BN_STEP_BODY,
	BN_STEP_STREAM,
	BN_STEP_STARTTLS,
	BN_STEP_LOOP,
	BN_STEP_END,
	BN_STEP_SLEEP,
	BN_STEP_HOLD,
	BN_STEP_WAIT_CLOSE,
	BN_STEP_CLOSE,
};

enum bn_expect_mode {
	BN_EXPECT_LINE,
	BN_EXPECT_DOT,
	BN_EXPECT_SMTP,
	BN_EXPECT_TAGGED,
	BN_EXPECT_CONT,	/* internal: IMAP "+" continuation (append) */
};

struct bn_step {
	enum bn_step_kind kind;
	unsigned int line;		/* in the script, for messages */
	char *text;			/* send/append template; expect prefix */
	enum bn_expect_mode mode;	/* expect */
	unsigned int times;		/* expect: replies (>= 1) */
	int label;			/* expect/stream: index into labels, else -1 */
	uint64_t count;			/* loop: iterations (0 = forever); stream:
					 * bytes; sleep: ms */
	unsigned int chunk;		/* stream: bytes per send */
	unsigned int depth;		/* loop/end: nesting depth (0 = top) */
	unsigned int jump;		/* loop: index after its end; end: its loop */
	bool literal_plus;		/* append: "{%s+}", no continuation wait */
};

enum bn_msg_kind { BN_MSG_NONE, BN_MSG_FIXED, BN_MSG_RANGE, BN_MSG_WEIGHTED, BN_MSG_FILE };

struct bn_message_spec {
	enum bn_msg_kind kind;
	size_t min, max;		/* fixed: min == max; range */
	unsigned int nsizes;		/* weighted */
	size_t sizes[BN_MAX_SIZES];
	unsigned int weights[BN_MAX_SIZES];
	char *file;			/* file */
};

struct bn_script {
	char *name;
	char *proto;			/* "imap", ..., default "raw" */
	unsigned int nsteps;
	struct bn_step steps[BN_MAX_STEPS];
	unsigned int nlabels;
	char *labels[BN_MAX_LABELS];
	struct bn_message_spec message;
	int unit_loop;			/* index of the unit loop step, or -1 */
	bool has_hold;
	bool needs_message;		/* append or body present */
};

/* Parses text[0..len). name is copied (for reports). Returns the script,
 * or NULL with *error_r ("line N: ...", in a thread-local buffer valid
 * until the next call) on any error: unknown step, bad option, unbalanced
 * loop/end, too many steps or labels, template over BN_MAX_TEXT, a %
 * escape other than %u %p %n %s %%, %s outside append. */
struct bn_script *bn_script_parse(const char *text, size_t len, const char *name,
				  const char **error_r);
/* Reads and parses a file. Same returns. */
struct bn_script *bn_script_load(const char *path, const char **error_r);
void bn_script_free(struct bn_script **script);
/* Parses a size "4096", "4k", "1m" (powers of 1024). Returns 0 or -1. */
int bn_parse_size(const char *s, uint64_t *size_r);

struct bn_vars {
	const char *user;
	const char *password;
	uint64_t n;
	uint64_t size;
};
/* Appends tmpl with substitutions (templates were checked by the parser;
 * an unknown escape is copied as is). Returns 0, or -1 if out is full. */
int bn_subst(struct pn_buf *out, const char *tmpl, const struct bn_vars *vars);
/* Writes into dst the user name for index i from a pattern holding exactly
 * one %d, %Nd or %0Nd (e.g. "u%04d@bench.test"). Returns 0, or -1 if the
 * pattern is invalid or dst is too small. */
int bn_format_user(char *dst, size_t dstsize, const char *pattern, unsigned int i);
/* Checks a user pattern. Returns 0 or -1. */
int bn_check_user_pattern(const char *pattern);

/* The reply reader: sans-IO. bn_reader_start() arms it for one expect;
 * bn_reader_feed() consumes bytes and returns
 *    1  the reply is complete and matched (*used_r bytes consumed; bytes
 *       after them belong to the next reply),
 *    0  need more (all len bytes consumed),
 *   -1  the reply did not match or broke a limit: *error_r says why and
 *       bn_reader_sample() holds the offending line (truncated). */
struct bn_reader {
	enum bn_expect_mode mode;
	const char *prefix;
	size_t prefix_len;
	char tag[64];
	size_t tag_len;
	unsigned int times_left;
	int state;			/* internal */
	uint64_t lit_left;		/* IMAP literal bytes to skip */
	uint64_t bytes;			/* reply bytes consumed so far */
	struct pn_buf line;
	char sample[128];
};
void bn_reader_init(struct bn_reader *r);
void bn_reader_free(struct bn_reader *r);
/* prefix is kept by pointer (the script's text). tag: the IMAP tag for
 * tagged mode (copied, at most 63 bytes), else ignored (may be NULL). */
void bn_reader_start(struct bn_reader *r, enum bn_expect_mode mode, const char *prefix,
		     const char *tag, unsigned int times);
int bn_reader_feed(struct bn_reader *r, const uint8_t *data, size_t len, size_t *used_r,
		   const char **error_r);

#endif
