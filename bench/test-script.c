/* Unit tests of the session scripts: the parser (steps, labels, loops, the
 * unit loop, message specs, every error with its line number), template
 * substitution, user patterns, the reply reader in each mode fed whole and
 * one byte at a time, and the message pool.
 */
#include "body.h"
#include "script.h"

#include "postern/testing.h"

static struct bn_script *parse(const char *text, const char **err)
{
	return bn_script_parse(text, strlen(text), "t", err);
}

PN_TEST(test_parse_imap_session)
{
	const char *err = NULL;
	struct bn_script *s = parse("# comment\n"
				    "proto imap\n"
				    "\n"
				    "expect * OK\n"
				    "send a%n LOGIN %u %p\r\n"
				    "expect tagged OK\n"
				    "loop\n"
				    "  send a%n FETCH 1:* (BODY.PEEK[])\n"
				    "  expect tagged as=fetch OK\n"
				    "  loop 3\n"
				    "    send a%n NOOP\n"
				    "    expect tagged OK\n"
				    "  end\n"
				    "end\n"
				    "send a%n LOGOUT\n"
				    "expect tagged OK\n"
				    "wait-close\n",
				    &err);
	CHECK(s != NULL);
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STR(s->proto, "imap");
	CHECK_INT(s->nsteps, 14);
	CHECK_INT(s->steps[0].kind, BN_STEP_EXPECT);
	CHECK_STR(s->steps[0].text, "* OK");
	CHECK_STR(s->labels[s->steps[0].label], "greeting");
	CHECK_INT(s->steps[1].kind, BN_STEP_SEND);
	CHECK_STR(s->steps[1].text, "a%n LOGIN %u %p"); /* CR stripped */
	CHECK_INT(s->steps[2].mode, BN_EXPECT_TAGGED);
	CHECK_STR(s->steps[2].text, "OK");
	CHECK_STR(s->labels[s->steps[2].label], "LOGIN");
	/* the unit loop and its jumps */
	CHECK_INT(s->unit_loop, 3);
	CHECK_INT(s->steps[3].kind, BN_STEP_LOOP);
	CHECK_INT(s->steps[3].count, 0);
	CHECK_INT(s->steps[3].jump, 11);
	CHECK_STR(s->labels[s->steps[5].label], "fetch");
	CHECK_INT(s->steps[6].kind, BN_STEP_LOOP);
	CHECK_INT(s->steps[6].count, 3);
	CHECK_INT(s->steps[6].depth, 1);
	CHECK_INT(s->steps[6].jump, 10);
	CHECK_INT(s->steps[9].kind, BN_STEP_END);
	CHECK_INT(s->steps[9].jump, 6);
	CHECK_INT(s->steps[9].depth, 1);
	CHECK_INT(s->steps[10].kind, BN_STEP_END);
	CHECK_INT(s->steps[10].jump, 3);
	CHECK_STR(s->labels[s->steps[8].label], "NOOP");
	CHECK_INT(s->steps[13].kind, BN_STEP_WAIT_CLOSE);
	CHECK_STR(s->labels[s->steps[13].label], "close");
	CHECK(!s->needs_message);
	bn_script_free(&s);
	CHECK(s == NULL);
}

PN_TEST(test_parse_smtp_pop3_raw)
{
	const char *err = NULL;
	struct bn_script *s = parse("proto lmtp\nmessage sizes=4k:70,64k:25,1m:5\n"
				    "expect smtp 220\nsend LHLO x\nexpect smtp 250\n"
				    "send DATA\nexpect smtp 354\nbody\nexpect smtp times=3 250\n"
				    "send RETR 1\nexpect dot +OK\n"
				    "append a%n APPEND INBOX {%s+}\nexpect tagged OK\n"
				    "stream 1m chunk=4k\nsleep 5\nstarttls\nhold\nclose\n",
				    &err);
	CHECK(s != NULL);
	if (s == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_INT(s->message.kind, BN_MSG_WEIGHTED);
	CHECK_INT(s->message.nsizes, 3);
	CHECK_INT(s->message.sizes[1], 65536);
	CHECK_INT(s->message.weights[2], 5);
	CHECK_INT(s->steps[6].times, 3);
	CHECK_STR(s->labels[s->steps[6].label], "message");
	CHECK_INT(s->steps[8].mode, BN_EXPECT_DOT);
	CHECK_STR(s->labels[s->steps[8].label], "RETR");
	CHECK_INT(s->steps[9].kind, BN_STEP_APPEND);
	CHECK(s->steps[9].literal_plus);
	CHECK_STR(s->labels[s->steps[10].label], "APPEND");
	CHECK_INT(s->steps[11].count, 1048576);
	CHECK_INT(s->steps[11].chunk, 4096);
	CHECK_INT(s->steps[12].count, 5);
	CHECK(s->has_hold);
	CHECK(s->needs_message);
	CHECK_INT(s->unit_loop, -1);
	bn_script_free(&s);

	/* an expect right after a stream, before any send: labelled "stream"
	 * (it used to read the NULL text of a send that never came) */
	s = parse("stream 1k\nexpect tagged OK\n", &err);
	CHECK(s != NULL);
	if (s != NULL)
		CHECK_STR(s->labels[s->steps[1].label], "stream");
	bn_script_free(&s);

	/* a message is implied (4 KiB) when append/body appear without one */
	s = parse("send DATA\nbody\n", &err);
	CHECK(s != NULL && s->message.kind == BN_MSG_FIXED && s->message.min == 4096);
	bn_script_free(&s);
	s = parse("message size=1k-8k\nbody\n", &err);
	CHECK(s != NULL && s->message.kind == BN_MSG_RANGE && s->message.max == 8192);
	bn_script_free(&s);
}

PN_TEST(test_parse_errors)
{
	static const struct {
		const char *text;
		const char *error;
	} cases[] = {
		{ "", "the script has no step" },
		{ "# only a comment\n", "the script has no step" },
		{ "send a\nfrobnicate\n", "line 2: unknown step \"frobnicate\"" },
		{ "loop\nsend a\n", "line 1: loop without end" },
		{ "end\n", "line 1: end without loop" },
		{ "send a %x\n", "line 1: unknown escape %x (use %u %p %n %s %%)" },
		{ "send size %s\n", "line 1: %s is only allowed in append" },
		{ "send a%\n", "line 1: template ends with %" },
		{ "append a APPEND INBOX {5}\n", "line 1: append needs {%s} (or {%s+}) for the size" },
		{ "expect times=2 +OK\n", "line 1: times= is for smtp replies (LMTP)" },
		{ "expect smtp times=0 250\n", "line 1: times= takes 1..10000" },
		{ "loop 0\nend\n", "line 1: loop takes a count >= 1 (or none: forever)" },
		{ "stream\n", "line 1: stream takes BYTES (1..1t) [chunk=N]" },
		{ "stream 10 chunk=0\n", "line 1: stream: chunk= takes 1..16m" },
		{ "sleep x\n", "line 1: sleep takes milliseconds (0..3600000)" },
		{ "proto gopher\n", "line 1: proto takes imap, pop3, smtp, lmtp or raw" },
		{ "message size=0\n", "line 1: bad size (1..64m)" },
		{ "message size=8k-1k\n", "line 1: bad size range (MIN-MAX, 1..64m)" },
		{ "message size=1k\nmessage size=2k\n", "line 2: message given twice" },
		{ "message bogus\n", "line 1: message takes size=N, size=MIN-MAX, sizes=N:W,... or file=PATH" },
		{ "hold now\n", "line 1: hold takes no argument" },
		{ "body x\n", "line 1: body takes no argument (see message)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *err = NULL;
		struct bn_script *s = parse(cases[i].text, &err);
		CHECK(s == NULL);
		if (s != NULL) {
			fprintf(stderr, "case %zu parsed\n", i);
			bn_script_free(&s);
			continue;
		}
		CHECK_STR(err, cases[i].error);
	}
	/* nesting limit, steps limit, NUL byte */
	char deep[512];
	size_t o = 0;
	for (int i = 0; i < BN_MAX_LOOP_DEPTH + 1; i++)
		o += (size_t)snprintf(deep + o, sizeof(deep) - o, "loop 2\n");
	const char *err = NULL;
	struct bn_script *s = parse(deep, &err);
	CHECK(s == NULL);
	CHECK_STR(err, "line 9: loops nested deeper than 8");
	static char many[BN_MAX_STEPS * 8 + 16];
	o = 0;
	for (int i = 0; i <= BN_MAX_STEPS; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "send a\n");
	s = parse(many, &err);
	CHECK(s == NULL);
	CHECK_STR(err, "line 257: more than 256 steps");
	s = bn_script_parse("send a\0b\n", 9, "t", &err);
	CHECK(s == NULL);
	CHECK_STR(err, "the script holds a NUL byte");
}

PN_TEST(test_subst_and_users)
{
	struct pn_buf b;
	struct bn_vars v = { "u0007@bench.test", "secret", 12, 4096 };
	char user[64];

	pn_buf_init(&b, 64);
	CHECK_INT(bn_subst(&b, "a%n LOGIN %u %p {%s} 100%%", &v), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "a12 LOGIN u0007@bench.test secret {4096} 100%",
		  strlen("a12 LOGIN u0007@bench.test secret {4096} 100%"));
	pn_buf_reset(&b);
	CHECK_INT(bn_subst(&b, "%u%u%u%u%u", &v), -1); /* over the buffer's max */
	pn_buf_free(&b);

	CHECK_INT(bn_format_user(user, sizeof(user), "u%04d@bench.test", 7), 0);
	CHECK_STR(user, "u0007@bench.test");
	CHECK_INT(bn_format_user(user, sizeof(user), "user%d", 12345), 0);
	CHECK_STR(user, "user12345");
	CHECK_INT(bn_format_user(user, sizeof(user), "%%x%3d", 5), 0);
	CHECK_STR(user, "%x  5");
	CHECK_INT(bn_format_user(user, 5, "u%04d@bench.test", 7), -1);
	CHECK_INT(bn_check_user_pattern("u%d%d"), -1);
	CHECK_INT(bn_check_user_pattern("u%s"), -1);
	CHECK_INT(bn_check_user_pattern("plain"), -1);
	CHECK_INT(bn_check_user_pattern("u%-4d"), -1);
	CHECK_INT(bn_check_user_pattern("u%04d"), 0);

	uint64_t sz;
	CHECK_INT(bn_parse_size("64k", &sz), 0);
	CHECK_INT(sz, 65536);
	CHECK_INT(bn_parse_size("1M", &sz), 0);
	CHECK_INT(sz, 1048576);
	CHECK_INT(bn_parse_size("12", &sz), 0);
	CHECK_INT(sz, 12);
	CHECK_INT(bn_parse_size("k", &sz), -1);
	CHECK_INT(bn_parse_size("1kk", &sz), -1);
	CHECK_INT(bn_parse_size("-1", &sz), -1);
	CHECK_INT(bn_parse_size("99999999999999999999", &sz), -1);
}

/* Feeds text whole, then one byte at a time; checks the result, that
 * "need more" holds until the reply's last byte, and the bytes used. */
static void reader_case(enum bn_expect_mode mode, const char *prefix, const char *tag,
			unsigned int times, const char *text, int want_rc, size_t want_used)
{
	struct bn_reader r;
	const char *err = NULL;
	size_t used = 0, len = strlen(text);

	bn_reader_init(&r);
	bn_reader_start(&r, mode, prefix, tag, times);
	int rc = bn_reader_feed(&r, (const uint8_t *)text, len, &used, &err);
	CHECK_INT(rc, want_rc);
	if (want_rc != 0)
		CHECK_INT(used, want_used);
	else
		CHECK_INT(used, len);

	bn_reader_start(&r, mode, prefix, tag, times);
	size_t i;
	rc = 0;
	for (i = 0; i < len; i++) {
		rc = bn_reader_feed(&r, (const uint8_t *)text + i, 1, &used, &err);
		if (rc != 0)
			break;
		CHECK_INT(used, 1);
	}
	CHECK_INT(rc, want_rc);
	if (want_rc != 0) {
		CHECK_INT(i + 1, want_used);
		CHECK_INT(used, 1);
	}
	bn_reader_free(&r);
}

PN_TEST(test_reader_modes)
{
	/* one line */
	reader_case(BN_EXPECT_LINE, "+OK", NULL, 1, "+OK ready\r\nnext", 1, 11);
	reader_case(BN_EXPECT_LINE, "+OK", NULL, 1, "-ERR no\r\n", -1, 9);
	reader_case(BN_EXPECT_LINE, "", NULL, 1, "anything\n", 1, 9);
	reader_case(BN_EXPECT_LINE, "+OK", NULL, 1, "+OK partial", 0, 0);
	/* POP3 multi-line: RFC 1939, ".." is a stuffed line, not the end */
	reader_case(BN_EXPECT_DOT, "+OK", NULL, 1,
		    "+OK 12 octets\r\nline\r\n..dots\r\n.\r\n+OK next", 1, 32);
	reader_case(BN_EXPECT_DOT, "+OK", NULL, 1, "-ERR no such message\r\n", -1, 22);
	reader_case(BN_EXPECT_DOT, "+OK", NULL, 1, "+OK\r\nbody\r\n.x\r\n", 0, 0);
	/* SMTP multi-line and LMTP's replies per recipient */
	reader_case(BN_EXPECT_SMTP, "250", NULL, 1,
		    "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 1, 44);
	reader_case(BN_EXPECT_SMTP, "250", NULL, 1, "250\r\n", 1, 5);
	reader_case(BN_EXPECT_SMTP, "250", NULL, 2, "250 2.1.5 ok\r\n250 2.1.5 ok\r\n", 1, 28);
	reader_case(BN_EXPECT_SMTP, "250", NULL, 2, "250 2.1.5 ok\r\n550 5.1.1 no\r\n", -1, 28);
	reader_case(BN_EXPECT_SMTP, "354", NULL, 1, "35\r\n", -1, 4);
	reader_case(BN_EXPECT_SMTP, "354", NULL, 1, "354x\r\n", -1, 6);
	/* IMAP tagged, with untagged lines and a literal holding a fake tag */
	reader_case(BN_EXPECT_TAGGED, "OK", "a3", 1,
		    "* 1 FETCH (BODY[] {14}\r\na3 OK not me\r\n)\r\n* 2 EXISTS\r\na3 OK done\r\n", 1,
		    65);
	reader_case(BN_EXPECT_TAGGED, "OK", "a3", 1, "a33 OK other\r\na3 NO denied\r\n", -1, 28);
	reader_case(BN_EXPECT_TAGGED, "OK", "a3", 1, "* BYE\r\n", 0, 0);
	/* two literals in one response, literal8 */
	reader_case(BN_EXPECT_TAGGED, "OK", "t", 1,
		    "* 1 FETCH (BODY[1] {3}\r\nt O BODY[2] ~{2}\r\n\r\n)\r\nt OK\r\n", 1, 53);
	/* APPEND continuation */
	reader_case(BN_EXPECT_CONT, "", "a1", 1, "* OK hello\r\n+ go ahead\r\n", 1, 24);
	reader_case(BN_EXPECT_CONT, "", "a1", 1, "a1 NO [TOOBIG] no\r\n", -1, 19);
}

PN_TEST(test_reader_limits)
{
	struct bn_reader r;
	const char *err = NULL;
	size_t used;
	static uint8_t big[BN_MAX_LINE + 10];

	memset(big, 'x', sizeof(big));
	bn_reader_init(&r);
	bn_reader_start(&r, BN_EXPECT_LINE, "+OK", NULL, 1);
	int rc = bn_reader_feed(&r, big, BN_MAX_LINE / 2, &used, &err);
	CHECK_INT(rc, 0);
	rc = bn_reader_feed(&r, big, sizeof(big), &used, &err);
	CHECK_INT(rc, -1);
	CHECK_STR(err, "reply line too long");
	/* restart clears the partial line */
	bn_reader_start(&r, BN_EXPECT_LINE, "+OK", NULL, 1);
	rc = bn_reader_feed(&r, (const uint8_t *)"+OK\n", 4, &used, &err);
	CHECK_INT(rc, 1);
	CHECK_INT(r.bytes, 4);
	/* a huge literal is skipped without being stored */
	bn_reader_start(&r, BN_EXPECT_TAGGED, "OK", "a", 1);
	rc = bn_reader_feed(&r, (const uint8_t *)"* 1 FETCH (BODY[] {100000000}\r\n", 31, &used, &err);
	CHECK_INT(rc, 0);
	for (int i = 0; i < 100000000 / (int)sizeof(big); i++) {
		rc = bn_reader_feed(&r, big, sizeof(big), &used, &err);
		if (rc != 0)
			break;
	}
	CHECK_INT(rc, 0);
	CHECK(pn_buf_len(&r.line) == 0);
	bn_reader_free(&r);
}

PN_TEST(test_bodies)
{
	struct bn_message_spec spec;
	struct bn_bodies b;
	const char *err = NULL;
	struct pn_buf hdr;

	memset(&spec, 0, sizeof(spec));
	spec.kind = BN_MSG_FIXED;
	spec.min = spec.max = 4096;
	CHECK_INT(bn_bodies_make(&b, &spec, &err), 0);
	CHECK_INT(b.n, 1);
	const struct bn_body *body = bn_bodies_pick(&b, &(uint64_t){ 1 });
	CHECK_INT(body->size, 4096);
	CHECK_INT(body->raw_len + BN_HEADER_LEN, 4096);
	CHECK_INT(body->smtp_len, body->raw_len + 3);
	CHECK(memcmp(body->smtp + body->smtp_len - 5, "\r\n.\r\n", 5) == 0);
	/* lines end in CRLF, none starts with '.', none is longer than 998 */
	size_t ll = 0;
	for (size_t i = 0; i < body->raw_len; i++) {
		if (ll == 0)
			CHECK(body->raw[i] != '.');
		if (body->raw[i] == '\n') {
			CHECK(i > 0 && body->raw[i - 1] == '\r');
			ll = 0;
		} else {
			ll++;
			CHECK(ll < 998);
		}
	}
	pn_buf_init(&hdr, 4096);
	CHECK_INT(bn_message_header(&hdr, &b, "u0001@bench.test", 42), 0);
	CHECK_INT(pn_buf_len(&hdr), BN_HEADER_LEN);
	CHECK(memcmp(pn_buf_rptr(&hdr) + BN_HEADER_LEN - 4, "\r\n\r\n", 4) == 0);
	pn_buf_free(&hdr);
	bn_bodies_free(&b);

	spec.kind = BN_MSG_WEIGHTED;
	spec.nsizes = 2;
	spec.sizes[0] = 1000;
	spec.weights[0] = 9;
	spec.sizes[1] = 100000;
	spec.weights[1] = 1;
	CHECK_INT(bn_bodies_make(&b, &spec, &err), 0);
	uint64_t rng = 12345;
	int small = 0;
	for (int i = 0; i < 10000; i++)
		small += bn_bodies_pick(&b, &rng)->size == 1000;
	CHECK(small > 8700 && small < 9300);
	bn_bodies_free(&b);

	spec.kind = BN_MSG_FILE;
	spec.file = (char *)"/nonexistent/bench-message";
	CHECK_INT(bn_bodies_make(&b, &spec, &err), -1);
}

PN_TEST_MAIN("bench-script", PN_TEST_CASE(test_parse_imap_session),
	     PN_TEST_CASE(test_parse_smtp_pop3_raw), PN_TEST_CASE(test_parse_errors),
	     PN_TEST_CASE(test_subst_and_users), PN_TEST_CASE(test_reader_modes),
	     PN_TEST_CASE(test_reader_limits), PN_TEST_CASE(test_bodies))
