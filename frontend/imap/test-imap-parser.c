/* Unit tests for the IMAP command parser (imap-parser.h): every argument
 * form, literals of every kind, streaming, raw lines, byte-at-a-time and
 * pipelined feeding, every limit, and a long list of malformed commands that
 * must each give one sensible error and leave the parser able to read the
 * next command. Events are rendered to text so that a test reads as
 * input -> expected events. */
#include "imap-parser.h"

#include <stdio.h>

#include "postern/buf.h"
#include "postern/testing.h"

/* ---- rendering -------------------------------------------------------- */

static void render_bytes(struct pn_buf *o, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			pn_buf_printf(o, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			pn_buf_printf(o, "\\x%02x", c);
		else
			pn_buf_append(o, &c, 1);
	}
}

static void render_args(struct pn_buf *o, const struct imap_arg *args, size_t count);

static void render_arg(struct pn_buf *o, const struct imap_arg *a)
{
	switch (a->type) {
	case IMAP_ARG_ATOM:
		pn_buf_append(o, a->str, a->len);
		break;
	case IMAP_ARG_NIL:
		pn_buf_printf(o, "<NIL:%s>", a->str);
		break;
	case IMAP_ARG_QUOTED:
		pn_buf_append_str(o, "\"");
		render_bytes(o, a->str, a->len);
		pn_buf_append_str(o, "\"");
		break;
	case IMAP_ARG_LITERAL:
		pn_buf_printf(o, "%s{%llu%s}", a->literal8 ? "~" : "",
			      (unsigned long long)a->literal_size, a->nonsync ? "+" : "");
		if (a->streamed) {
			pn_buf_append_str(o, "STREAMED");
		} else {
			pn_buf_append_str(o, "\"");
			render_bytes(o, a->str, a->len);
			pn_buf_append_str(o, "\"");
		}
		break;
	case IMAP_ARG_LIST:
		pn_buf_append_str(o, "(");
		render_args(o, a->list, a->list_count);
		pn_buf_append_str(o, ")");
		break;
	case IMAP_ARG_SECTION:
		pn_buf_printf(o, "%s[", a->str);
		render_args(o, a->list, a->list_count);
		pn_buf_append_str(o, "]");
		if (a->has_partial)
			pn_buf_printf(o, "<%llu.%llu>", (unsigned long long)a->partial_offset,
				      (unsigned long long)a->partial_size);
		break;
	case IMAP_ARG_EOL:
		pn_buf_append_str(o, "EOL?");
		break;
	}
}

static void render_args(struct pn_buf *o, const struct imap_arg *args, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			pn_buf_append_str(o, " ");
		render_arg(o, &args[i]);
	}
	/* Every array ends with an EOL entry. */
	if (args[count].type != IMAP_ARG_EOL)
		pn_buf_append_str(o, " NO-EOL");
}

/* Collected data of the streamed literal in progress. */
static struct pn_buf stream_acc;

static void render_event(struct pn_buf *o, const struct imap_event *ev)
{
	switch (ev->type) {
	case IMAP_EV_COMMAND:
		pn_buf_printf(o, "%s%s %s", ev->cmd.continued ? "MORE " : "CMD ",
			      ev->tag, ev->name);
		if (ev->cmd.count > 0) {
			pn_buf_append_str(o, " ");
			render_args(o, ev->cmd.args, ev->cmd.count);
		} else if (ev->cmd.args[0].type != IMAP_ARG_EOL) {
			pn_buf_append_str(o, " NO-EOL");
		}
		if (ev->cmd.literal_follows)
			pn_buf_append_str(o, " ...");
		pn_buf_append_str(o, "\n");
		break;
	case IMAP_EV_LITERAL_CONTINUE:
		pn_buf_printf(o, "+ %s %llu%s%s\n", ev->tag, (unsigned long long)ev->cont.size,
			      ev->cont.literal8 ? " lit8" : "", ev->cont.streamed ? " streamed" : "");
		break;
	case IMAP_EV_LITERAL_DATA:
		CHECK_INT(ev->data.offset, pn_buf_len(&stream_acc));
		pn_buf_append(&stream_acc, ev->data.data, ev->data.len);
		if (ev->data.last) {
			CHECK_INT(pn_buf_len(&stream_acc), ev->data.size);
			pn_buf_append_str(o, "DATA \"");
			render_bytes(o, (const char *)pn_buf_rptr(&stream_acc), pn_buf_len(&stream_acc));
			pn_buf_append_str(o, "\"\n");
			pn_buf_reset(&stream_acc);
		}
		break;
	case IMAP_EV_LINE:
		CHECK(ev->tag == NULL);
		CHECK_INT(ev->line.data[ev->line.len], 0);
		pn_buf_append_str(o, "LINE \"");
		render_bytes(o, ev->line.data, ev->line.len);
		pn_buf_append_str(o, "\"\n");
		break;
	case IMAP_EV_ERROR:
		pn_buf_reset(&stream_acc);
		pn_buf_printf(o, "ERR %s %s %s%s\n", ev->tag ? ev->tag : "*", ev->error.status,
			      ev->error.msg, ev->error.fatal ? " FATAL" : "");
		break;
	}
}

/* ---- driving ---------------------------------------------------------- */

/* What the fake owner does on some events. */
struct owner {
	/* On IMAP_EV_LITERAL_CONTINUE: refuse (abort) instead of "+". */
	bool refuse_literals;
	/* On a command head with literal_follows: abort it. */
	bool abort_heads;
	/* After this command name, read one raw line. */
	const char *raw_after;
	/* Abort a streamed literal after this many data events. */
	int abort_after_chunks;
};

static struct pn_buf out;
static int chunks_seen;

static void reset_out(void)
{
	pn_buf_free(&out);
	pn_buf_init(&out, 1 << 24);
	pn_buf_free(&stream_acc);
	pn_buf_init(&stream_acc, 1 << 27);
	chunks_seen = 0;
}

/* Pulls every event available; returns false once a fatal error came. */
static bool drain(struct imap_parser *p, const struct owner *ow)
{
	struct imap_event ev;
	int r;

	while ((r = imap_parser_next(p, &ev)) != 0) {
		CHECK(r == 1 || r == -1);
		CHECK_INT(r == -1, ev.type == IMAP_EV_ERROR);
		render_event(&out, &ev);
		if (r < 0 && ev.error.fatal)
			return false;
		if (ow == NULL)
			continue;
		if (ev.type == IMAP_EV_LITERAL_CONTINUE && ow->refuse_literals) {
			pn_buf_append_str(&out, "(refused)\n");
			imap_parser_abort_command(p);
		}
		if (ev.type == IMAP_EV_COMMAND && ev.cmd.literal_follows && ow->abort_heads) {
			pn_buf_append_str(&out, "(aborted)\n");
			imap_parser_abort_command(p);
		}
		if (ev.type == IMAP_EV_LITERAL_DATA && ow->abort_after_chunks > 0 &&
		    ++chunks_seen == ow->abort_after_chunks && !ev.data.last) {
			pn_buf_append_str(&out, "(aborted)\n");
			pn_buf_reset(&stream_acc);
			imap_parser_abort_command(p);
		}
		if (ev.type == IMAP_EV_COMMAND && ow->raw_after != NULL &&
		    !ev.cmd.literal_follows && strcmp(ev.name, ow->raw_after) == 0)
			CHECK_INT(imap_parser_read_line(p), 0);
	}
	/* Need more: the input holds less than one line. */
	CHECK(imap_parser_room(p) >= IMAP_PARSER_FEED_ROOM);
	return true;
}

/* Feeds input in chunks of `chunk` bytes (0: all at once), draining events
 * after each; returns the rendered events. */
static const char *run_chunked(struct imap_parser *p, const char *input, size_t len,
			       size_t chunk, const struct owner *ow)
{
	reset_out();
	if (chunk == 0)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		if (imap_parser_feed(p, input + off, n) < 0) {
			pn_buf_append_str(&out, "FEED-REFUSED\n");
			break;
		}
		if (!drain(p, ow))
			break;
	}
	pn_buf_append(&out, "", 1);
	return (const char *)pn_buf_rptr(&out);
}

static const char *run_len(struct imap_parser *p, const char *input, size_t len)
{
	return run_chunked(p, input, len, 0, NULL);
}

static const char *run(struct imap_parser *p, const char *input)
{
	return run_len(p, input, strlen(input));
}

/* The same input, whole and byte at a time, on fresh parsers with the same
 * settings, must give the same events. */
typedef void (*setup_fn)(struct imap_parser *p);

static void check_both(const char *input, size_t len, const char *expected,
		       const struct imap_parser_limits *lim, setup_fn setup,
		       const struct owner *ow)
{
	for (int mode = 0; mode < 3; mode++) {
		struct imap_parser *p = imap_parser_new(lim);
		if (setup != NULL)
			setup(p);
		size_t chunk = mode == 0 ? 0 : mode == 1 ? 1 : 7;
		const char *got = run_chunked(p, input, len, chunk, ow);
		if (strcmp(got, expected) != 0) {
			fprintf(stderr, "chunk %zu: input:\n%.*s\n", chunk, (int)len, input);
			CHECK_STR(got, expected);
		}
		imap_parser_free(&p);
		CHECK(p == NULL);
	}
}

#define EXPECT(input, expected) check_both((input), sizeof(input) - 1, (expected), NULL, NULL, NULL)
#define EXPECT_WITH(input, expected, lim, setup, ow) \
	check_both((input), sizeof(input) - 1, (expected), (lim), (setup), (ow))

/* ---- forms ------------------------------------------------------------ */

PN_TEST(test_simple_commands)
{
	EXPECT("a NOOP\r\n", "CMD a NOOP\n");
	EXPECT("A001 login Fred \"pass word\"\r\n", "CMD A001 LOGIN Fred \"pass word\"\n");
	/* tag = 1*<any ASTRING-CHAR except "+">: "]" is allowed. */
	EXPECT("x]1 capability\r\n", "CMD x]1 CAPABILITY\n");
	/* Sloppy spacing is accepted. */
	EXPECT("a  SELECT   INBOX  \r\n", "CMD a SELECT INBOX\n");
	EXPECT("a.b-c_d noop\r\n", "CMD a.b-c_d NOOP\n");
}

PN_TEST(test_atoms_strings_nil)
{
	EXPECT("a X atom \\Seen 1:*,3 % * foo] nil NiL\r\n",
	       "CMD a X atom \\Seen 1:*,3 % * foo] <NIL:nil> <NIL:NiL>\n");
	EXPECT("a X \"\" \"a\\\"b\" \"c\\\\d\" \"tab\there\"\r\n",
	       "CMD a X \"\" \"a\\\"b\" \"c\\\\d\" \"tab\\x09here\"\n");
	/* Outside FETCH, "[" and "]" are plain astring characters. */
	EXPECT("a LIST \"\" [Gmail]/%\r\n", "CMD a LIST \"\" [Gmail]/%\n");
	EXPECT("a SELECT foo[bar]\r\n", "CMD a SELECT foo[bar]\n");
	/* "~" starts a literal8 only before "{". */
	EXPECT("a X ~user\r\n", "CMD a X ~user\n");
}

PN_TEST(test_lists)
{
	EXPECT("a STORE 1 +FLAGS (\\Seen \\Deleted)\r\n",
	       "CMD a STORE 1 +FLAGS (\\Seen \\Deleted)\n");
	EXPECT("a X () (()) ((a) (b \"c\" (d)))\r\n",
	       "CMD a X () (()) ((a) (b \"c\" (d)))\n");
	EXPECT("a X ( a  b )\r\n", "CMD a X (a b)\n");
	EXPECT("a ID (\"name\" \"x\" \"version\" NIL)\r\n",
	       "CMD a ID (\"name\" \"x\" \"version\" <NIL:NIL>)\n");
}

PN_TEST(test_fetch_sections)
{
	EXPECT("a FETCH 1:* (FLAGS BODY[HEADER.FIELDS (A B)]<0.100>)\r\n",
	       "CMD a FETCH 1:* (FLAGS BODY[HEADER.FIELDS (A B)]<0.100>)\n");
	EXPECT("a fetch 2 (BODY.PEEK[] BINARY[1.2] BINARY.SIZE[3] BODY[1.2.MIME])\r\n",
	       "CMD a FETCH 2 (BODY.PEEK[] BINARY[1.2] BINARY.SIZE[3] BODY[1.2.MIME])\n");
	EXPECT("a UID FETCH 1:* BODY[TEXT]<9223372036854775807.1>\r\n",
	       "CMD a UID FETCH 1:* BODY[TEXT]<9223372036854775807.1>\n");
	/* Header names are astrings: quoted and literal too. */
	EXPECT("a FETCH 1 BODY[HEADER.FIELDS.NOT (\"X-A\" {4+}\r\nDate)]\r\n",
	       "CMD a FETCH 1 BODY[HEADER.FIELDS.NOT (\"X-A\" {4+}\"Date\")]\n");
	/* "UID" alone: FETCH must be its first argument to get sections. */
	EXPECT("a UID STORE 1 FLAGS x[y]\r\n", "CMD a UID STORE 1 FLAGS x[y]\n");

	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_event ev;
	CHECK_INT(imap_parser_feed(p, "t FETCH 1 BODY[1]<5.10>\r\n", 25), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK_INT(ev.cmd.count, 2);
	const struct imap_arg *s = &ev.cmd.args[1];
	CHECK_INT(s->type, IMAP_ARG_SECTION);
	CHECK_STR(s->str, "BODY");
	CHECK_INT(s->list_count, 1);
	CHECK_STR(s->list[0].str, "1");
	CHECK(s->has_partial);
	CHECK_INT(s->partial_offset, 5);
	CHECK_INT(s->partial_size, 10);
	imap_parser_free(&p);
}

PN_TEST(test_literals)
{
	/* Synchronizing: the owner is asked to send "+". */
	EXPECT("a LOGIN {4}\r\nfred {3}\r\nx\"y\r\n",
	       "+ a 4\n+ a 3\nCMD a LOGIN {4}\"fred\" {3}\"x\\\"y\"\n");
	/* Non-synchronizing (LITERAL+): no continuation. */
	EXPECT("a LOGIN {4+}\r\nfred {0+}\r\n\r\n", "CMD a LOGIN {4+}\"fred\" {0+}\"\"\n");
	/* A literal may hold CR, LF and 8-bit bytes. */
	EXPECT("a X {6+}\r\n\r\n\xc3\xa9()\r\n", "CMD a X {6+}\"\\x0d\\x0a\\xc3\\xa9()\"\n");
	/* literal8 (BINARY) may hold NUL. */
	EXPECT_WITH("a APPEND box ~{3}\r\na\0b\r\n", "+ a 3 lit8\nCMD a APPEND box ~{3}\"a\\x00b\"\n",
		    NULL, NULL, NULL);
	/* Literals inside lists, and a list right after a literal. */
	EXPECT("a X ({1+}\r\na {1+}\r\nb) (c)\r\n", "CMD a X ({1+}\"a\" {1+}\"b\") (c)\n");
	/* Refused by the owner: the client sends nothing more. */
	struct owner refuse = { .refuse_literals = true };
	EXPECT_WITH("a LOGIN {4}\r\nb NOOP\r\n", "+ a 4\n(refused)\nCMD b NOOP\n", NULL, NULL, &refuse);

	/* The literal's bytes are a separate, exact string. */
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_event ev;
	CHECK_INT(imap_parser_feed(p, "a X {3+}\r\nabc\r\n", 15), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	const char *str;
	size_t len;
	CHECK(imap_arg_get_astring(&ev.cmd.args[0], &str, &len));
	CHECK_MEM(str, len, "abc", 3);
	CHECK(imap_arg_get_string(&ev.cmd.args[0], &str, &len));
	CHECK(!imap_arg_get_atom(&ev.cmd.args[0], &str));
	imap_parser_free(&p);
}

static void mode_minus(struct imap_parser *p)
{
	imap_parser_set_literal_mode(p, IMAP_LITERAL_MINUS);
}

static void mode_sync_only(struct imap_parser *p)
{
	imap_parser_set_literal_mode(p, IMAP_LITERAL_SYNC_ONLY);
}

PN_TEST(test_literal_minus)
{
	static char in[9000];
	int n = snprintf(in, sizeof(in), "a X {4096+}\r\n");
	memset(in + n, 'x', 4096);
	n += 4096;
	n += snprintf(in + n, sizeof(in) - (size_t)n, " {4097+}\r\n");
	memset(in + n, 'y', 4097);
	n += 4097;
	n += snprintf(in + n, sizeof(in) - (size_t)n - 1, "\r\nb NOOP\r\n");

	struct imap_parser *p = imap_parser_new(NULL);
	mode_minus(p);
	/* 4096 is fine; 4097 is refused with BAD [TOOBIG] and its bytes (which
	 * the client sends anyway) are skipped exactly. */
	CHECK_STR(run_len(p, in, (size_t)n),
		  "ERR a BAD [TOOBIG] Non-synchronizing literals are limited to 4096 bytes (LITERAL-)\n"
		  "CMD b NOOP\n");
	/* Synchronizing literals are not limited by LITERAL-. */
	CHECK_STR(run(p, "c X {5000}\r\n"), "+ c 5000\n");
	imap_parser_free(&p);

	EXPECT_WITH("a X {2+}\r\nab\r\nb NOOP\r\n", "CMD a X {2+}\"ab\"\nCMD b NOOP\n", NULL,
		    mode_minus, NULL);
	EXPECT_WITH("a X {2+}\r\nab\r\nb NOOP\r\n",
		    "ERR a BAD Non-synchronizing literals are not supported\nCMD b NOOP\n", NULL,
		    mode_sync_only, NULL);
}

PN_TEST(test_raw_lines)
{
	/* AUTHENTICATE: the owner reads the client's response line raw. */
	struct owner auth = { .raw_after = "AUTHENTICATE" };
	EXPECT_WITH("a AUTHENTICATE PLAIN\r\nAGZyZWQAcGFzcw==\r\nb NOOP\r\n",
		    "CMD a AUTHENTICATE PLAIN\nLINE \"AGZyZWQAcGFzcw==\"\nCMD b NOOP\n", NULL, NULL,
		    &auth);
	/* "*" cancels; it is just a line here. Empty lines are lines. */
	EXPECT_WITH("a AUTHENTICATE LOGIN\r\n\r\nb AUTHENTICATE X\r\n*\r\n",
		    "CMD a AUTHENTICATE LOGIN\nLINE \"\"\nCMD b AUTHENTICATE X\nLINE \"*\"\n", NULL,
		    NULL, &auth);
	/* IDLE ... DONE pipelined with the next command. */
	struct owner idle = { .raw_after = "IDLE" };
	EXPECT_WITH("a IDLE\r\nDONE\r\nb NOOP\r\n", "CMD a IDLE\nLINE \"DONE\"\nCMD b NOOP\n", NULL,
		    NULL, &idle);
	CHECK(imap_line_is_done("DONE", 4));
	CHECK(imap_line_is_done("done", 4));
	CHECK(!imap_line_is_done("DONE ", 5));
	CHECK(!imap_line_is_done("b NOOP", 6));

	/* A raw line that is too long is an error and is skipped. */
	struct imap_parser_limits lim = { .max_line = 64 };
	char in[400];
	int n = snprintf(in, sizeof(in), "a IDLE\r\n");
	memset(in + n, 'x', 200);
	n += 200;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\nb NOOP\r\n");
	for (size_t chunk = 0; chunk < 3; chunk++) {
		struct imap_parser *p = imap_parser_new(&lim);
		CHECK_STR(run_chunked(p, in, (size_t)n, chunk, &idle),
			  "CMD a IDLE\nERR * BAD Line too long\nCMD b NOOP\n");
		imap_parser_free(&p);
	}
	/* Bare LF ends a raw line with an error. */
	EXPECT_WITH("a IDLE\r\nDONE\nb NOOP\r\n",
		    "CMD a IDLE\nERR * BAD Line must end with CRLF\nCMD b NOOP\n", NULL, NULL, &idle);

	/* read_line() is refused in the middle of a command. */
	struct imap_parser *p = imap_parser_new(NULL);
	CHECK_STR(run(p, "a LOGIN {3}\r\n"), "+ a 3\n");
	CHECK_INT(imap_parser_read_line(p), -1);
	imap_parser_free(&p);
}

/* ---- streaming -------------------------------------------------------- */

static void stream_10(struct imap_parser *p)
{
	imap_parser_set_append_stream(p, 10);
}

PN_TEST(test_append_streaming)
{
	/* Head, continuation, data, tail. */
	EXPECT_WITH("a APPEND INBOX (\\Seen) {12}\r\nHello world!\r\nb NOOP\r\n",
		    "CMD a APPEND INBOX (\\Seen) {12}STREAMED ...\n"
		    "+ a 12 streamed\n"
		    "DATA \"Hello world!\"\n"
		    "MORE a APPEND\n"
		    "CMD b NOOP\n",
		    NULL, stream_10, NULL);
	/* Below the threshold it is buffered as usual. */
	EXPECT_WITH("a APPEND INBOX {5+}\r\nshort\r\n", "CMD a APPEND INBOX {5+}\"short\"\n",
		    NULL, stream_10, NULL);
	/* MULTIAPPEND: two streamed messages and a small one in between. */
	EXPECT_WITH("a APPEND box {10+}\r\n0123456789 (\\Flagged) {2+}\r\nhi {11+}\r\nabcdefghijk\r\n",
		    "CMD a APPEND box {10+}STREAMED ...\n"
		    "DATA \"0123456789\"\n"
		    "MORE a APPEND (\\Flagged) {2+}\"hi\" {11+}STREAMED ...\n"
		    "DATA \"abcdefghijk\"\n"
		    "MORE a APPEND\n",
		    NULL, stream_10, NULL);
	/* Only APPEND streams, and only at the top level. */
	EXPECT_WITH("a X {12+}\r\nHello world!\r\n", "CMD a X {12+}\"Hello world!\"\n", NULL,
		    stream_10, NULL);
	EXPECT_WITH("a APPEND box (CATENATE {12+}\r\nHello world!)\r\n",
		    "CMD a APPEND box (CATENATE {12+}\"Hello world!\")\n", NULL, stream_10, NULL);
	/* The owner refuses the head of a synchronizing literal: nothing is
	 * sent, the next command follows directly. */
	struct owner abort_heads = { .abort_heads = true };
	EXPECT_WITH("a APPEND nobox {12}\r\nb NOOP\r\n",
		    "CMD a APPEND nobox {12}STREAMED ...\n(aborted)\nCMD b NOOP\n", NULL, stream_10,
		    &abort_heads);
	/* Non-synchronizing: the data comes anyway and is skipped, with the
	 * rest of the command. */
	EXPECT_WITH("a APPEND nobox {12+}\r\nHello world! {3+}\r\nabc\r\nb NOOP\r\n",
		    "CMD a APPEND nobox {12+}STREAMED ...\n(aborted)\nCMD b NOOP\n", NULL, stream_10,
		    &abort_heads);
	/* Refusing at the continuation (after the head) works the same. */
	struct owner refuse = { .refuse_literals = true };
	EXPECT_WITH("a APPEND nobox {12}\r\nb NOOP\r\n",
		    "CMD a APPEND nobox {12}STREAMED ...\n+ a 12 streamed\n(refused)\nCMD b NOOP\n",
		    NULL, stream_10, &refuse);
	/* An error after the literal voids the command. */
	EXPECT_WITH("a APPEND box {10+}\r\n0123456789)\r\nb NOOP\r\n",
		    "CMD a APPEND box {10+}STREAMED ...\nDATA \"0123456789\"\n"
		    "ERR a BAD Unexpected ')'\nCMD b NOOP\n",
		    NULL, stream_10, NULL);
	/* NUL in a streamed (non-literal8) literal: error, rest skipped. */
	EXPECT_WITH("a APPEND box {10+}\r\n01234\00056789\r\nb NOOP\r\n",
		    "CMD a APPEND box {10+}STREAMED ...\n"
		    "ERR a BAD NUL byte in literal (only literal8 may hold one)\nCMD b NOOP\n",
		    NULL, stream_10, NULL);
}

PN_TEST(test_streaming_big_append)
{
	/* 8 MiB through a parser whose commands may only take 64 KiB: the
	 * data flows through in input-sized chunks. */
	struct imap_parser_limits lim = { .max_command = 65536 };
	struct imap_parser *p = imap_parser_new(&lim);
	size_t total = 8u << 20, got = 0;
	int events = 0;
	char chunk[16384];
	struct imap_event ev;

	imap_parser_set_append_stream(p, 4096);
	const char *head = "A5 APPEND INBOX {8388608}\r\n";
	CHECK_INT(imap_parser_feed(p, head, strlen(head)), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK(ev.type == IMAP_EV_COMMAND && ev.cmd.literal_follows);
	CHECK_INT(ev.cmd.args[1].literal_size, total);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK_INT(ev.type, IMAP_EV_LITERAL_CONTINUE);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	memset(chunk, 'm', sizeof(chunk));
	for (size_t sent = 0; sent < total; sent += sizeof(chunk)) {
		CHECK(imap_parser_room(p) >= sizeof(chunk));
		CHECK_INT(imap_parser_feed(p, chunk, sizeof(chunk)), 0);
		int r;
		while ((r = imap_parser_next(p, &ev)) == 1) {
			CHECK_INT(ev.type, IMAP_EV_LITERAL_DATA);
			CHECK_INT(ev.data.offset, got);
			got += ev.data.len;
			events++;
		}
		CHECK_INT(r, 0);
	}
	CHECK_INT(got, total);
	CHECK(ev.data.last);
	CHECK_INT(imap_parser_feed(p, "\r\n", 2), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK(ev.type == IMAP_EV_COMMAND && ev.cmd.continued && ev.cmd.count == 0);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	imap_parser_free(&p);

	/* Without streaming the same literal is refused before any data. */
	p = imap_parser_new(&lim);
	CHECK_STR(run(p, head), "ERR A5 NO [TOOBIG] Command too large\n");
	CHECK_STR(run(p, "b NOOP\r\n"), "CMD b NOOP\n");
	imap_parser_free(&p);
}

PN_TEST(test_streaming_abort_midway)
{
	static char in[200];
	int n = snprintf(in, sizeof(in), "a APPEND box {40+}\r\n");
	memset(in + n, 'z', 40);
	n += 40;
	n += snprintf(in + n, sizeof(in) - (size_t)n, " {3+}\r\nabc\r\nb NOOP\r\n");
	/* Fed 7 bytes at a time, the literal comes in several chunks; the
	 * owner gives up after the first. */
	struct owner ow = { .abort_after_chunks = 1 };
	struct imap_parser *p = imap_parser_new(NULL);
	imap_parser_set_append_stream(p, 10);
	CHECK_STR(run_chunked(p, in, (size_t)n, 7, &ow),
		  "CMD a APPEND box {40+}STREAMED ...\n(aborted)\nCMD b NOOP\n");
	imap_parser_free(&p);
}

/* ---- feeding ---------------------------------------------------------- */

PN_TEST(test_byte_at_a_time)
{
	static const char *const cmds[] = {
		"a1 NOOP\r\n",
		"a2 LOGIN \"us er\" {4+}\r\npass\r\n",
		"a3 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.1024>)\r\n",
		"a4 STORE 1,3:5 +FLAGS.SILENT (\\Seen $Junk)\r\n",
		"a5 SEARCH CHARSET UTF-8 OR (FROM \"x\") (NOT SUBJECT {3+}\r\nabc) UID 1:*\r\n",
		"a6 APPEND box (\\Draft) \"1-Feb-2024 10:00:00 +0000\" ~{4+}\r\nab\0c\r\n",
		"a7 LIST \"\" %\r\n",
	};
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_event ev;

	for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
		/* The command holding a NUL is measured up to its CRLF. */
		size_t len = strlen(cmds[c]);
		if (c == 5)
			len += strlen(cmds[c] + len + 1) + 1;
		for (size_t i = 0; i < len; i++) {
			CHECK_INT(imap_parser_feed(p, cmds[c] + i, 1), 0);
			int r = imap_parser_next(p, &ev);
			if (i + 1 < len) {
				if (r != 0)
					fprintf(stderr, "command %zu byte %zu: r=%d\n", c, i, r);
				CHECK_INT(r, 0);
			} else {
				CHECK_INT(r, 1);
				CHECK_INT(ev.type, IMAP_EV_COMMAND);
				CHECK(ev.tag != NULL && ev.tag[0] == 'a' && ev.tag[1] == (char)('1' + c));
			}
		}
	}
	CHECK_INT(imap_parser_buffered(p), 0);
	imap_parser_free(&p);
}

PN_TEST(test_pipelined)
{
	EXPECT("a NOOP\r\nb LOGIN x {1+}\r\ny\r\nc SELECT INBOX\r\nd FETCH 1 (UID)\r\ne LOGOUT\r\n",
	       "CMD a NOOP\nCMD b LOGIN x {1+}\"y\"\nCMD c SELECT INBOX\nCMD d FETCH 1 (UID)\n"
	       "CMD e LOGOUT\n");
	/* An error in the middle does not disturb the neighbours. */
	EXPECT("a NOOP\r\nb X (\r\nc NOOP\r\n", "CMD a NOOP\nERR b BAD Missing ')'\nCMD c NOOP\n");
}

PN_TEST(test_crlf_split)
{
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_event ev;

	CHECK_INT(imap_parser_feed(p, "a NOOP\r", 7), 0);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	CHECK_INT(imap_parser_feed(p, "\n", 1), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK_STR(ev.name, "NOOP");
	/* Split right after a literal's "}" and inside its CRLF. */
	CHECK_INT(imap_parser_feed(p, "b X {2+}", 8), 0);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	CHECK_INT(imap_parser_feed(p, "\r", 1), 0);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	CHECK_INT(imap_parser_feed(p, "\nok\r", 4), 0);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	CHECK_INT(imap_parser_feed(p, "\n", 1), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK_MEM(ev.cmd.args[0].str, ev.cmd.args[0].len, "ok", 2);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	imap_parser_free(&p);
}

PN_TEST(test_feed_bounds)
{
	struct imap_parser_limits lim = { .max_line = 100 };
	struct imap_parser *p = imap_parser_new(&lim);
	struct imap_event ev;
	static char big[100 + IMAP_PARSER_FEED_ROOM + 1];

	CHECK_INT(imap_parser_room(p), 100 + IMAP_PARSER_FEED_ROOM);
	/* More than fits is refused whole. */
	CHECK_INT(imap_parser_feed(p, big, sizeof(big)), -1);
	CHECK_INT(imap_parser_buffered(p), 0);
	CHECK_INT(imap_parser_feed(p, "a NOOP\r\nb NO", 12), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	CHECK_INT(imap_parser_buffered(p), 4);
	/* STARTTLS: plaintext pipelined behind it is dropped. */
	imap_parser_discard_input(p);
	CHECK_INT(imap_parser_buffered(p), 0);
	CHECK_STR(run(p, "c NOOP\r\n"), "CMD c NOOP\n");
	imap_parser_free(&p);
	imap_parser_free(&p); /* NULL: no-op */
}

PN_TEST(test_utf8_accept)
{
	struct imap_parser *p = imap_parser_new(NULL);

	CHECK_STR(run(p, "a SELECT \"caf\xc3\xa9\"\r\n"),
		  "ERR a BAD 8-bit characters in a quoted string need UTF8=ACCEPT; use a literal\n");
	imap_parser_set_utf8_accept(p, true);
	CHECK_STR(run(p, "a SELECT \"caf\xc3\xa9 \xf0\x9f\x93\xab\"\r\n"),
		  "CMD a SELECT \"caf\\xc3\\xa9 \\xf0\\x9f\\x93\\xab\"\n");
	/* Invalid UTF-8: overlong, surrogate, truncated, stray continuation. */
	CHECK_STR(run(p, "a X \"\xc0\xaf\"\r\n"), "ERR a BAD Invalid UTF-8 in quoted string\n");
	CHECK_STR(run(p, "a X \"\xed\xa0\x80\"\r\n"), "ERR a BAD Invalid UTF-8 in quoted string\n");
	CHECK_STR(run(p, "a X \"\xe2\x82\"\r\n"), "ERR a BAD Invalid UTF-8 in quoted string\n");
	CHECK_STR(run(p, "a X \"\x80\"\r\n"), "ERR a BAD Invalid UTF-8 in quoted string\n");
	/* Atoms stay 7-bit even then. */
	CHECK_STR(run(p, "a X caf\xc3\xa9\r\n"),
		  "ERR a BAD 8-bit byte outside a quoted string or literal\n");
	imap_parser_free(&p);
}

/* ---- limits ----------------------------------------------------------- */

PN_TEST(test_limit_line)
{
	struct imap_parser_limits lim = { .max_line = 32 };
	char in[300];
	int n = snprintf(in, sizeof(in), "tag1 X ");
	memset(in + n, 'a', 100);
	n += 100;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\nb NOOP\r\n");
	check_both(in, (size_t)n, "ERR tag1 BAD Command line too long\nCMD b NOOP\n", &lim, NULL, NULL);
	/* Exactly max_line with CRLF is fine. */
	check_both("a X 01234567890123456789012345\r\n", 32,
		   "CMD a X 01234567890123456789012345\n", &lim, NULL, NULL);
	/* A too-long line ending in {n+}: its literal is skipped too. */
	n = snprintf(in, sizeof(in), "t X ");
	memset(in + n, 'a', 60);
	n += 60;
	n += snprintf(in + n, sizeof(in) - (size_t)n, " {5+}\r\n)))))\r\nb NOOP\r\n");
	check_both(in, (size_t)n, "ERR t BAD Command line too long\nCMD b NOOP\n", &lim, NULL, NULL);
	/* The line after a literal is limited too. */
	n = snprintf(in, sizeof(in), "t X {1+}\r\nx ");
	memset(in + n, 'a', 60);
	n += 60;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\nb NOOP\r\n");
	check_both(in, (size_t)n, "ERR t BAD Command line too long\nCMD b NOOP\n", &lim, NULL, NULL);
}

PN_TEST(test_limit_literal)
{
	struct imap_parser_limits lim = { .max_literal = 10, .max_append_literal = 20 };

	/* Synchronizing: refused before the data; the client sends none. */
	EXPECT_WITH("a LOGIN {11}\r\nb NOOP\r\n", "ERR a NO [TOOBIG] Literal too large\nCMD b NOOP\n",
		    &lim, NULL, NULL);
	EXPECT_WITH("a LOGIN {10}\r\n0123456789\r\n", "+ a 10\nCMD a LOGIN {10}\"0123456789\"\n", &lim,
		    NULL, NULL);
	/* APPEND has its own limit. */
	EXPECT_WITH("a APPEND x {20+}\r\n01234567890123456789\r\n",
		    "CMD a APPEND x {20+}\"01234567890123456789\"\n", &lim, NULL, NULL);
	EXPECT_WITH("a APPEND x {21}\r\nb NOOP\r\n", "ERR a NO [TOOBIG] Literal too large\nCMD b NOOP\n",
		    &lim, NULL, NULL);
	/* Non-synchronizing: the bytes come anyway and are skipped exactly,
	 * then the rest of the command, including further literals. */
	EXPECT_WITH("a LOGIN {11+}\r\nb NOOP\r\nXYZ {2+}\r\nc NOOP\r\nd NOOP\r\n",
		    "ERR a BAD [TOOBIG] Literal too large\nCMD d NOOP\n", &lim, NULL, NULL);
	/* Beyond anything we would skip: the stream is lost. */
	EXPECT_WITH("a LOGIN {21+}\r\nb NOOP\r\n",
		    "ERR a BAD [TOOBIG] Non-synchronizing literal too large, closing the connection FATAL\n",
		    &lim, NULL, NULL);
	struct imap_parser *p = imap_parser_new(&lim);
	struct imap_event ev;
	CHECK_STR(run(p, "a LOGIN {999+}\r\n"),
		  "ERR a BAD [TOOBIG] Non-synchronizing literal too large, closing the connection FATAL\n");
	CHECK_INT(imap_parser_next(p, &ev), -1);
	CHECK(ev.error.fatal);
	CHECK_INT(imap_parser_feed(p, "b NOOP\r\n", 8), -1);
	CHECK_INT(imap_parser_room(p), 0);
	imap_parser_free(&p);
}

PN_TEST(test_limit_depth)
{
	struct imap_parser_limits lim = { .max_depth = 3 };

	EXPECT_WITH("a X (((a)))\r\n", "CMD a X (((a)))\n", &lim, NULL, NULL);
	EXPECT_WITH("a X ((((a))))\r\nb NOOP\r\n", "ERR a BAD Too deeply nested lists\nCMD b NOOP\n",
		    &lim, NULL, NULL);
	/* A section counts as a level. */
	EXPECT_WITH("a FETCH 1 ((BODY[HEADER.FIELDS (A)]))\r\nb NOOP\r\n",
		    "ERR a BAD Too deeply nested lists\nCMD b NOOP\n", &lim, NULL, NULL);
	/* Default 16: 1000 levels are refused, not recursed into. */
	char in[2100];
	int n = snprintf(in, sizeof(in), "a X ");
	memset(in + n, '(', 1000);
	n += 1000;
	memset(in + n, ')', 1000);
	n += 1000;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\nb NOOP\r\n");
	check_both(in, (size_t)n, "ERR a BAD Too deeply nested lists\nCMD b NOOP\n", NULL, NULL, NULL);
}

PN_TEST(test_limit_args)
{
	struct imap_parser_limits lim = { .max_args = 5 };

	EXPECT_WITH("a X 1 2 (3 4)\r\n", "CMD a X 1 2 (3 4)\n", &lim, NULL, NULL);
	EXPECT_WITH("a X 1 2 (3 4) 5\r\nb NOOP\r\n", "ERR a BAD Too many arguments\nCMD b NOOP\n",
		    &lim, NULL, NULL);
	/* Counted across segments, literals included; a refused synchronizing
	 * literal ends the command. */
	EXPECT_WITH("a X 1 2 3 4 5 {1}\r\nb NOOP\r\n", "ERR a BAD Too many arguments\nCMD b NOOP\n",
		    &lim, NULL, NULL);
	EXPECT_WITH("a X 1 2 3 4 5 {1+}\r\n6\r\nb NOOP\r\n",
		    "ERR a BAD Too many arguments\nCMD b NOOP\n", &lim, NULL, NULL);
}

PN_TEST(test_limit_command_size)
{
	struct imap_parser_limits lim = { .max_command = 1024, .max_line = 600 };
	char in[4000];
	int n = 0;

	/* Many lines joined by small literals: each line is short, the whole
	 * is not. */
	n += snprintf(in + n, sizeof(in) - (size_t)n, "a X");
	for (int i = 0; i < 5; i++) {
		in[n++] = ' ';
		memset(in + n, 'q', 300);
		n += 300;
		n += snprintf(in + n, sizeof(in) - (size_t)n, " {1+}\r\nL");
	}
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\nb NOOP\r\n");
	check_both(in, (size_t)n, "ERR a BAD Command too large\nCMD b NOOP\n", &lim, NULL, NULL);
	/* A buffered literal must fit in what is left. */
	EXPECT_WITH("a X {1024}\r\nb NOOP\r\n", "ERR a NO [TOOBIG] Command too large\nCMD b NOOP\n",
		    &lim, NULL, NULL);
	EXPECT_WITH("a X {1000+}\r\n", "", &lim, NULL, NULL);
}

/* ---- malformed commands ----------------------------------------------- */

struct bad_case {
	const char *input;
	size_t len; /* 0: strlen */
	const char *expected;
};

PN_TEST(test_malformed)
{
	static const struct bad_case cases[] = {
		{ "\r\n", 0, "ERR * BAD Empty command line\n" },
		{ " NOOP\r\n", 0, "ERR * BAD Missing tag\n" },
		{ "* NOOP\r\n", 0, "ERR * BAD Invalid tag\n" },
		{ "+ NOOP\r\n", 0, "ERR * BAD Invalid tag\n" },
		{ "a+b NOOP\r\n", 0, "ERR * BAD Invalid character in tag\n" },
		{ "a*b NOOP\r\n", 0, "ERR * BAD Invalid character in tag\n" },
		{ "a%b NOOP\r\n", 0, "ERR * BAD Invalid character in tag\n" },
		{ "(a NOOP\r\n", 0, "ERR * BAD Invalid tag\n" },
		{ "\"a\" NOOP\r\n", 0, "ERR * BAD Invalid tag\n" },
		{ "a\r\n", 0, "ERR a BAD Missing command name\n" },
		{ "a \r\n", 0, "ERR a BAD Missing command name\n" },
		{ "a (NOOP)\r\n", 0, "ERR a BAD Invalid command name\n" },
		{ "a NO\"OP\"\r\n", 0, "ERR a BAD Invalid command name\n" },
		{ "a LOGIN \"fred\r\n", 0, "ERR a BAD Unterminated quoted string\n" },
		{ "a LOGIN \"fred\\\r\n", 0, "ERR a BAD Unterminated quoted string\n" },
		{ "a LOGIN \"fr\red\" x\r\n", 0, "ERR a BAD CR or LF in quoted string\n" },
		{ "a LOGIN \"fr\\ed\"\r\n", 0,
		  "ERR a BAD Invalid escape in quoted string (only \\\\ and \\\")\n" },
		{ "a LOGIN \"a\0b\"\r\n", 15, "ERR a BAD NUL byte in quoted string\n" },
		{ "a LOGIN {abc}\r\n", 0, "ERR a BAD Invalid literal size\n" },
		{ "a LOGIN {}\r\n", 0, "ERR a BAD Invalid literal size\n" },
		{ "a LOGIN {12\r\n", 0, "ERR a BAD Invalid literal size\n" },
		{ "a LOGIN {-1}\r\n", 0, "ERR a BAD Invalid literal size\n" },
		{ "a LOGIN {5}x\r\n", 0, "ERR a BAD Literal size must be followed by CRLF\n" },
		{ "a LOGIN {5} \r\n", 0, "ERR a BAD Literal size must be followed by CRLF\n" },
		{ "a LOGIN {5}\n", 0, "ERR a BAD Line must end with CRLF\n" },
		{ "a X {99999999999999999999}\r\n", 0, "ERR a NO [TOOBIG] Literal size out of range\n" },
		{ "a X {9223372036854775808}\r\n", 0, "ERR a NO [TOOBIG] Literal size out of range\n" },
		{ "a X ~{99999999999}\r\n", 0, "ERR a NO [TOOBIG] Literal too large\n" },
		{ "a X (a b\r\n", 0, "ERR a BAD Missing ')'\n" },
		{ "a X ((a)\r\n", 0, "ERR a BAD Missing ')'\n" },
		{ "a X a b)\r\n", 0, "ERR a BAD Unexpected ')'\n" },
		{ "a X (a))\r\n", 0, "ERR a BAD Unexpected ')'\n" },
		{ "a X ) {3}\r\n", 0, "ERR a BAD Unexpected ')'\n" },
		{ "a X a\0b\r\n", 9, "ERR a BAD NUL byte in command line\n" },
		{ "a X \0\r\n", 7, "ERR a BAD NUL byte in command line\n" },
		{ "a\0 NOOP\r\n", 9, "ERR * BAD Invalid character in tag\n" },
		{ "\0\r\n", 3, "ERR * BAD Invalid tag\n" },
		{ "a X a\tb\r\n", 0, "ERR a BAD Control character in command line\n" },
		{ "a X \tb\r\n", 0, "ERR a BAD Control character in command line\n" },
		{ "a X \x7f\r\n", 0, "ERR a BAD Control character in command line\n" },
		{ "a X b\rc\r\n", 0, "ERR a BAD CR without LF in command line\n" },
		{ "a X \rc\r\n", 0, "ERR a BAD CR without LF in command line\n" },
		{ "a X caf\xc3\xa9\r\n", 0, "ERR a BAD 8-bit byte outside a quoted string or literal\n" },
		{ "a X \xff\r\n", 0, "ERR a BAD 8-bit byte outside a quoted string or literal\n" },
		{ "a X \"q\xc3\xa9\"\r\n", 0,
		  "ERR a BAD 8-bit characters in a quoted string need UTF8=ACCEPT; use a literal\n" },
		{ "a X \"a\"b\r\n", 0, "ERR a BAD Missing space between arguments\n" },
		{ "a X (a)(b)\r\n", 0, "ERR a BAD Missing space between arguments\n" },
		{ "a X a\"b\"\r\n", 0, "ERR a BAD Missing space between arguments\n" },
		{ "a X a{3}\r\n", 0, "ERR a BAD Missing space between arguments\n" },
		{ "a X {1+}\r\nxy\r\n", 0, "ERR a BAD Missing space between arguments\n" },
		{ "a X ]\r\n", 0, "CMD a X ]\n" }, /* "]" is an ASTRING-CHAR */
		{ "a FETCH 1 [TEXT]\r\n", 0, "ERR a BAD Unexpected '['\n" },
		{ "a FETCH 1 BODY[TEXT\r\n", 0, "ERR a BAD Missing ']'\n" },
		{ "a FETCH 1 (BODY[TEXT)\r\n", 0, "ERR a BAD Unexpected ')'\n" },
		{ "a FETCH 1 BODY[(A])\r\n", 0, "ERR a BAD Unexpected ']'\n" },
		{ "a FETCH 1 BODY[1[2]]\r\n", 0, "ERR a BAD Unexpected '['\n" },
		{ "a FETCH 1 BODY[TEXT]<0>\r\n", 0, "ERR a BAD Invalid partial, expected <offset.size>\n" },
		{ "a FETCH 1 BODY[TEXT]<0.0>\r\n", 0, "ERR a BAD Invalid partial, expected <offset.size>\n" },
		{ "a FETCH 1 BODY[TEXT]<.5>\r\n", 0, "ERR a BAD Invalid partial, expected <offset.size>\n" },
		{ "a FETCH 1 BODY[TEXT]<1.5\r\n", 0, "ERR a BAD Invalid partial, expected <offset.size>\n" },
		{ "a FETCH 1 BODY[TEXT]<99999999999999999999.1>\r\n", 0,
		  "ERR a BAD Partial offset or size out of range\n" },
		{ "a FETCH 1 BODY[TEXT]x\r\n", 0, "ERR a BAD Missing space between arguments\n" },
		{ "a NOOP\n", 0, "ERR a BAD Line must end with CRLF\n" },
		{ "a NOOP\r\r\n", 0, "ERR a BAD Invalid command name\n" },
		{ "no-space-at-all\r\n", 0, "ERR no-space-at-all BAD Missing command name\n" },
		/* An error before a non-synchronizing literal: its bytes are
		 * skipped, they must not be taken as a command. */
		{ "a X \"open {12+}\r\nz BAD INJECT\r\n", 0, "ERR a BAD Unterminated quoted string\n" },
		{ "a X ) {3+}\r\nabc (more {2+}\r\nxy\r\n", 0, "ERR a BAD Unexpected ')'\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *bc = &cases[i];
		size_t len = bc->len ? bc->len : strlen(bc->input);
		char in[256];
		static const char next_cmd[] = "z NOOP\r\n";
		CHECK(len + sizeof(next_cmd) <= sizeof(in));
		memcpy(in, bc->input, len);
		memcpy(in + len, next_cmd, sizeof(next_cmd) - 1);
		char want[512];
		snprintf(want, sizeof(want), "%sCMD z NOOP\n", bc->expected);
		check_both(in, len + sizeof(next_cmd) - 1, want, NULL, NULL, NULL);
	}
}

PN_TEST(test_fatal_literals)
{
	/* The size of a literal the client sends anyway cannot be read:
	 * nothing tells where the next command starts. */
	EXPECT("a X {99999999999999999999+}\r\nb NOOP\r\n",
	       "ERR a BAD Unreadable non-synchronizing literal size, closing the connection FATAL\n");
	EXPECT("a X {abc+}\r\nb NOOP\r\n",
	       "ERR a BAD Unreadable non-synchronizing literal size, closing the connection FATAL\n");
	EXPECT("a X ) {1x+}\r\nb NOOP\r\n",
	       "ERR a BAD Unreadable non-synchronizing literal size, closing the connection FATAL\n");
	EXPECT("a X {+}\r\nb NOOP\r\n",
	       "ERR a BAD Unreadable non-synchronizing literal size, closing the connection FATAL\n");
}

PN_TEST(test_event_contract)
{
	struct imap_parser_limits def;
	imap_parser_limits_default(&def);
	CHECK_INT(def.max_line, 64 * 1024);
	CHECK_INT(def.max_literal, 1024 * 1024);
	CHECK_INT(def.max_append_literal, 64 * 1024 * 1024);
	CHECK_INT(def.max_depth, 16);
	CHECK_INT(def.max_args, 10000);
	CHECK_INT(def.max_command, 4 * 1024 * 1024);

	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_event ev;

	/* Nothing fed: need more, abort is a no-op. */
	CHECK_INT(imap_parser_next(p, &ev), 0);
	imap_parser_abort_command(p);
	CHECK_INT(imap_parser_next(p, &ev), 0);
	/* Argument accessors. */
	const char *in = "a X atom NIL \"q\" {1+}\r\nL (x) foo]\r\n";
	CHECK_INT(imap_parser_feed(p, in, strlen(in)), 0);
	CHECK_INT(imap_parser_next(p, &ev), 1);
	const struct imap_arg *a = ev.cmd.args;
	const char *s;
	size_t len, count;
	const struct imap_arg *list;
	CHECK_INT(ev.cmd.count, 6);
	CHECK(imap_arg_get_atom(&a[0], &s) && strcmp(s, "atom") == 0);
	CHECK(imap_arg_atom_equals(&a[0], "ATOM"));
	CHECK(!imap_arg_atom_equals(&a[0], "ATO"));
	CHECK(imap_arg_get_nstring(&a[1], &s, &len) && s == NULL && len == 0);
	CHECK(imap_arg_get_astring(&a[1], &s, &len) && strcmp(s, "NIL") == 0);
	CHECK(imap_arg_get_nstring(&a[2], &s, &len) && strcmp(s, "q") == 0);
	CHECK(!imap_arg_get_atom(&a[2], &s));
	CHECK(imap_arg_get_string(&a[3], &s, &len) && len == 1 && s[0] == 'L');
	CHECK(imap_arg_get_list(&a[4], &list, &count) && count == 1);
	CHECK(!imap_arg_get_list(&a[0], &list, &count));
	CHECK(!imap_arg_get_atom(&a[5], &s));
	CHECK(imap_arg_get_astring(&a[5], &s, &len) && strcmp(s, "foo]") == 0);
	CHECK_INT(a[6].type, IMAP_ARG_EOL);
	imap_parser_free(&p);
}

PN_TEST_MAIN("imap-parser",
	     PN_TEST_CASE(test_simple_commands),
	     PN_TEST_CASE(test_atoms_strings_nil),
	     PN_TEST_CASE(test_lists),
	     PN_TEST_CASE(test_fetch_sections),
	     PN_TEST_CASE(test_literals),
	     PN_TEST_CASE(test_literal_minus),
	     PN_TEST_CASE(test_raw_lines),
	     PN_TEST_CASE(test_append_streaming),
	     PN_TEST_CASE(test_streaming_big_append),
	     PN_TEST_CASE(test_streaming_abort_midway),
	     PN_TEST_CASE(test_byte_at_a_time),
	     PN_TEST_CASE(test_pipelined),
	     PN_TEST_CASE(test_crlf_split),
	     PN_TEST_CASE(test_feed_bounds),
	     PN_TEST_CASE(test_utf8_accept),
	     PN_TEST_CASE(test_limit_line),
	     PN_TEST_CASE(test_limit_literal),
	     PN_TEST_CASE(test_limit_depth),
	     PN_TEST_CASE(test_limit_args),
	     PN_TEST_CASE(test_limit_command_size),
	     PN_TEST_CASE(test_malformed),
	     PN_TEST_CASE(test_fatal_literals),
	     PN_TEST_CASE(test_event_contract))
