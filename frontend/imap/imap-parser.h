/* Sans-IO IMAP command parser (RFC 3501 section 9, RFC 9051 section 9).
 *
 * The lexer/parser layer of the IMAP server: bytes in, events out, no I/O.
 * The owner (the session engine) feeds what it read from the client and pulls
 * events, like hiredis' reader:
 *
 *     imap_parser_feed(p, buf, n);
 *     while ((r = imap_parser_next(p, &ev)) == 1) { ...handle ev... }
 *     if (r < 0) { ...ev.type == IMAP_EV_ERROR: answer it; ev.error.fatal:
 *                  send "* BYE" and close, else keep calling next()... }
 *     (r == 0: need more bytes)
 *
 * A command comes out as a tag, an upper-cased name and a tree of arguments
 * (atoms, NIL, quoted strings, literals, parenthesized lists, FETCH sections).
 * What the arguments mean is the session's business; this layer only checks
 * the syntax every command shares and enforces the hard limits.
 *
 * Events, in the order the owner sees them:
 *
 *  IMAP_EV_COMMAND           a complete command.
 *  IMAP_EV_LITERAL_CONTINUE  the client announced a synchronizing literal
 *                            {n} and waits. Send "+ OK" (any "+ " line) and
 *                            call next(); or refuse: send "tag NO ..." (or
 *                            BAD), call imap_parser_abort_command(), then
 *                            next(). The client sends the bytes only after
 *                            "+", so nothing is skipped when refused.
 *                            Literals over a limit never get this event; they
 *                            come as IMAP_EV_ERROR with status "NO [TOOBIG]".
 *  IMAP_EV_LITERAL_DATA      a chunk of a streamed literal (see below).
 *  IMAP_EV_LINE              one raw line, after imap_parser_read_line().
 *  IMAP_EV_ERROR             returned with -1; see struct imap_parse_error.
 *
 * Streaming (APPEND of large messages): after
 * imap_parser_set_append_stream(p, min), a top-level literal of an APPEND
 * command of at least min bytes is not buffered. Instead:
 *   1. IMAP_EV_COMMAND with cmd.literal_follows: the arguments before the
 *      literal, the last argument being the literal itself (streamed=true,
 *      literal_size=n, no data). The owner can check the mailbox, quota, etc.
 *      here and refuse with imap_parser_abort_command() (for a synchronizing
 *      literal the client has not sent anything yet).
 *   2. IMAP_EV_LITERAL_CONTINUE if the literal is synchronizing.
 *   3. IMAP_EV_LITERAL_DATA chunks, in order, as the bytes arrive (data.last
 *      marks the final one); each chunk points into the parser's input.
 *   4. Parsing resumes after the literal: IMAP_EV_COMMAND with cmd.continued
 *      and the arguments that follow it (normally none; MULTIAPPEND sends
 *      more messages, and the next large one repeats the cycle), or
 *      IMAP_EV_ERROR, which means the whole command is void.
 * So a 50 MB APPEND takes no more parser memory than one input chunk.
 *
 * Raw lines: imap_parser_read_line() makes the next line (up to CRLF) come
 * out as IMAP_EV_LINE, uninterpreted; then the parser is back to commands.
 * Used for AUTHENTICATE continuation lines and IDLE's "DONE".
 *
 * Errors. Every malformed or oversize command gives one IMAP_EV_ERROR with
 * the tag if it was read. Unless ev.error.fatal, the parser has resynchronized:
 * it drops the rest of the command up to its end, which includes skipping
 * exactly the bytes of any non-synchronizing literal the client sends anyway
 * (and treating a synchronizing one as refused, since the error answer reaches
 * the client before any "+"). Fatal means the stream cannot be followed any
 * more (e.g. a {n+} literal whose size cannot be read or is beyond anything
 * we would skip, so we cannot tell where its data ends): answer "* BYE" and
 * close; next() keeps returning the same error.
 *
 * Lines end with CRLF. A bare LF ends the line too, as an error.
 *
 * Memory: every pointer in an event (tag, name, argument tree, strings) is
 * owned by the parser and valid until the next imap_parser_next() call
 * (feeding or aborting does not free it). IMAP_EV_LITERAL_DATA and
 * IMAP_EV_LINE point into the input buffer and are also invalidated by
 * imap_parser_feed() and imap_parser_discard_input(). The parser holds at
 * most one partial line of input between next() calls that returned 0, and
 * at most max_command bytes of parsed command.
 * Nothing here does I/O, logs, or blocks. Not thread-safe (one per session).
 */
#ifndef POSTERN_IMAP_PARSER_H
#define POSTERN_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard limits. A zero field means "use the default". */
struct imap_parser_limits {
	/* Longest line outside literals, CRLF included. Default 64 KiB. */
	size_t max_line;
	/* Largest literal in commands other than APPEND. Default 1 MiB. */
	uint64_t max_literal;
	/* Largest literal in APPEND (the message). Default 64 MiB. A buffered
	 * (not streamed) literal must also fit in max_command. This is also
	 * the most the parser skips for a refused non-synchronizing literal;
	 * beyond it the stream is declared hopeless. */
	uint64_t max_append_literal;
	/* Deepest nesting of lists and sections. Default 16, at most 256. */
	unsigned max_depth;
	/* Most arguments in one command, counting every list item, list and
	 * section at any depth. Default 10000. */
	unsigned max_args;
	/* Most memory one command's parsed form may take (strings, buffered
	 * literals, the argument tree). Default 4 MiB. */
	size_t max_command;
};

#define IMAP_PARSER_DEFAULT_MAX_LINE (64u * 1024)
#define IMAP_PARSER_DEFAULT_MAX_LITERAL (1024u * 1024)
#define IMAP_PARSER_DEFAULT_MAX_APPEND_LITERAL (64ull * 1024 * 1024)
#define IMAP_PARSER_DEFAULT_MAX_DEPTH 16u
#define IMAP_PARSER_MAX_DEPTH_CAP 256u
#define IMAP_PARSER_DEFAULT_MAX_ARGS 10000u
#define IMAP_PARSER_DEFAULT_MAX_COMMAND (4u * 1024 * 1024)
/* LITERAL- (RFC 7888 section 4): largest non-synchronizing literal. */
#define IMAP_LITERAL_MINUS_MAX 4096u
/* imap_parser_feed() accepts at least this much once next() returned 0. */
#define IMAP_PARSER_FEED_ROOM (64u * 1024)

/* How non-synchronizing literals {n+} are treated (RFC 7888). */
enum imap_literal_mode {
	IMAP_LITERAL_PLUS = 0, /* LITERAL+: any size within the limits (default) */
	IMAP_LITERAL_MINUS,    /* LITERAL-: at most 4096 bytes */
	IMAP_LITERAL_SYNC_ONLY /* neither advertised: {n+} is an error */
};

enum imap_arg_type {
	IMAP_ARG_EOL = 0, /* terminates every argument array */
	IMAP_ARG_ATOM,    /* str/len: the bare word as sent */
	IMAP_ARG_NIL,     /* the atom NIL, any case; str holds it as sent */
	IMAP_ARG_QUOTED,  /* str/len: the string, escapes removed */
	IMAP_ARG_LITERAL, /* str/len: the bytes (see literal8, streamed) */
	IMAP_ARG_LIST,    /* "(" ... ")": list/list_count */
	IMAP_ARG_SECTION, /* FETCH "NAME[...]<o.n>": str = NAME, list = inside */
};

struct imap_arg {
	enum imap_arg_type type;
	/* LITERAL: sent as ~{n} (literal8, RFC 3516): may contain NUL. */
	bool literal8;
	/* LITERAL: sent as {n+} (non-synchronizing, RFC 7888). */
	bool nonsync;
	/* LITERAL: delivered as IMAP_EV_LITERAL_DATA; str is NULL, len 0. */
	bool streamed;
	/* SECTION: a <offset.size> partial followed the "]". */
	bool has_partial;
	/* ATOM, NIL, QUOTED, LITERAL, SECTION: NUL-terminated (a literal8 or
	 * a UTF-8 quoted string may hold more; len is authoritative). */
	const char *str;
	size_t len;
	/* LITERAL: the announced size (== len unless streamed). */
	uint64_t literal_size;
	/* LIST, SECTION: the items, terminated by an IMAP_ARG_EOL entry. */
	const struct imap_arg *list;
	size_t list_count;
	/* SECTION with has_partial: RFC 9051 partial, 63-bit numbers. */
	uint64_t partial_offset, partial_size;
};

enum imap_event_type {
	IMAP_EV_COMMAND = 1,
	IMAP_EV_LITERAL_CONTINUE,
	IMAP_EV_LITERAL_DATA,
	IMAP_EV_LINE,
	IMAP_EV_ERROR,
};

enum imap_parse_error_kind {
	IMAP_PERR_SYNTAX = 1, /* malformed: "tag BAD msg" */
	IMAP_PERR_LIMIT,      /* line, nesting, argument count, command size */
	IMAP_PERR_TOOBIG,     /* a literal over its limit (RFC 7888, RFC 4469) */
	IMAP_PERR_NOMEM,      /* we ran out of memory (always fatal) */
};

struct imap_parse_error {
	enum imap_parse_error_kind kind;
	/* What to answer after the tag (or "*" when tag is NULL): "BAD",
	 * "NO [TOOBIG]" for a synchronizing literal the client has not sent,
	 * "BAD [TOOBIG]" for a non-synchronizing one (RFC 7888 section 4). */
	const char *status;
	/* Human-readable text for the response, no CRLF. */
	const char *msg;
	/* The stream is lost: answer "* BYE msg" and close the connection. */
	bool fatal;
};

struct imap_event {
	enum imap_event_type type;
	/* The command's tag and upper-cased name; NULL when not (yet) read,
	 * always NULL for IMAP_EV_LINE. */
	const char *tag;
	const char *name;
	union {
		struct {
			/* Top-level arguments, terminated by IMAP_ARG_EOL. */
			const struct imap_arg *args;
			size_t count;
			/* These arguments follow a streamed literal of the
			 * same command (tag and name as before). */
			bool continued;
			/* The last argument is a streamed literal; its bytes
			 * come next as IMAP_EV_LITERAL_DATA. */
			bool literal_follows;
		} cmd;
		struct {
			uint64_t size;
			bool literal8;
			/* The bytes will come as IMAP_EV_LITERAL_DATA. */
			bool streamed;
		} cont;
		struct {
			const unsigned char *data;
			size_t len;
			uint64_t offset; /* of data[0] within the literal */
			uint64_t size;   /* of the whole literal */
			bool last;
		} data;
		struct {
			const char *data; /* NUL-terminated, CRLF removed */
			size_t len;
		} line;
		struct imap_parse_error error;
	};
};

struct imap_parser;

/* Fills *limits_r with the defaults. */
void imap_parser_limits_default(struct imap_parser_limits *limits_r);

/* Creates a parser; limits may be NULL for the defaults. Returns NULL if out
 * of memory. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
/* Frees the parser and everything it handed out; sets *pp to NULL. */
void imap_parser_free(struct imap_parser **pp);

/* Appends len bytes read from the client. Returns 0, or -1 (nothing taken)
 * if they do not fit in the input buffer (see imap_parser_room()) or the
 * parser is in a fatal state. */
int imap_parser_feed(struct imap_parser *p, const void *data, size_t len);
/* Bytes imap_parser_feed() accepts now: at least IMAP_PARSER_FEED_ROOM
 * after next() returned 0. Read at most this much from the socket. */
size_t imap_parser_room(const struct imap_parser *p);
/* Unparsed bytes held. */
size_t imap_parser_buffered(const struct imap_parser *p);

/* Produces the next event. Returns 1 (event in *ev_r), 0 (need more bytes;
 * *ev_r untouched) or -1 (*ev_r is an IMAP_EV_ERROR). */
int imap_parser_next(struct imap_parser *p, struct imap_event *ev_r);

/* The owner has answered the command in progress (e.g. "tag NO" instead of
 * "+" for a literal, or it gives up an APPEND during streaming): forget it.
 * If the client still sends data for it (an accepted or non-synchronizing
 * literal, and the rest of the command), that is skipped silently. No-op when
 * no command is in progress. */
void imap_parser_abort_command(struct imap_parser *p);

/* The next line is delivered raw as IMAP_EV_LINE (at most max_line bytes;
 * longer gives an IMAP_PERR_LIMIT error and the line is skipped). Only
 * between commands; returns 0, or -1 if a command is in progress. */
int imap_parser_read_line(struct imap_parser *p);

/* Drops every byte fed but not parsed yet (after STARTTLS, so that plaintext
 * pipelined behind it is never taken as a command). A command in progress is
 * forgotten too. */
void imap_parser_discard_input(struct imap_parser *p);

/* UTF8=ACCEPT (RFC 6855/9051) enabled: quoted strings may carry UTF-8
 * (validated). Off (the default): 8-bit bytes only in literals. */
void imap_parser_set_utf8_accept(struct imap_parser *p, bool on);
void imap_parser_set_literal_mode(struct imap_parser *p, enum imap_literal_mode mode);
/* Streams top-level APPEND literals of at least min_size bytes (0: never,
 * the default). See the streaming section above. */
void imap_parser_set_append_stream(struct imap_parser *p, uint64_t min_size);

/* True if the line (as from IMAP_EV_LINE) is IDLE's "DONE", any case
 * (RFC 2177 section 3). */
bool imap_line_is_done(const char *line, size_t len);

/* Argument helpers: each returns true and fills the outputs when arg has the
 * asked form, false otherwise (outputs untouched). */
/* atom = 1*ATOM-CHAR (strict: no "]", "%", "*", "\"). */
bool imap_arg_get_atom(const struct imap_arg *arg, const char **str_r);
/* astring = 1*ASTRING-CHAR / string; NIL counts as the atom "NIL". */
bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r,
			  size_t *len_r);
/* string = quoted / literal (not streamed). */
bool imap_arg_get_string(const struct imap_arg *arg, const char **str_r,
			 size_t *len_r);
/* nstring = string / nil; NIL gives *str_r = NULL, *len_r = 0. */
bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r,
			  size_t *len_r);
bool imap_arg_get_list(const struct imap_arg *arg,
		       const struct imap_arg **list_r, size_t *count_r);
/* An ATOM equal to word, ignoring ASCII case. */
bool imap_arg_atom_equals(const struct imap_arg *arg, const char *word);

#endif
