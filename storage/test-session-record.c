/* Unit tests for postern/store-session.h: session registry keys and the
 * record format shared by frontends (writers) and posternctl who. */
#include "postern/store-session.h"
#include "postern/testing.h"

PN_TEST(test_keys)
{
	char key[STORE_SESSION_KEY_MAX];
	uint64_t id;

	CHECK_INT(store_session_key(123, key, sizeof(key)), 16);
	CHECK_STR(key, "{a:123}:sessions");
	CHECK_INT(store_session_key(UINT64_MAX, key, sizeof(key)), 33);
	CHECK_INT(store_session_key_parse(key, strlen(key), &id), 0);
	CHECK(id == UINT64_MAX);
	CHECK_INT(store_session_key(7, key, 8), -1);
	CHECK_INT(store_session_key_parse("{a:42}:sessions", 15, &id), 0);
	CHECK_INT(id, 42);
	CHECK_INT(store_session_key_parse("{a:}:sessions", 13, &id), -1);
	CHECK_INT(store_session_key_parse("{a:042}:sessions", 16, &id), -1);
	CHECK_INT(store_session_key_parse("{a:4x}:sessions", 15, &id), -1);
	CHECK_INT(store_session_key_parse("{a:42}:lock:pop3", 16, &id), -1);
	CHECK_INT(store_session_key_parse("{a:18446744073709551616}:sessions", 33, &id), -1);
}

PN_TEST(test_round_trip)
{
	struct store_session_record r = {
		.node = "fe1", .proto = "imap", .client = "[2001:db8::1]:50123",
		.user = "demo@example.test", .since = 1764268800, .seen = 1764268830,
	}, p;
	char buf[STORE_SESSION_RECORD_MAX + 1];
	const char *error;
	int n = store_session_record_format(&r, buf, sizeof(buf), &error);

	CHECK(n > 0);
	CHECK_STR(buf, "v=1 node=fe1 proto=imap client=[2001:db8::1]:50123 "
		  "since=1764268800 seen=1764268830 user=demo@example.test");
	CHECK_INT(store_session_record_parse(buf, (size_t)n, &p, &error), 0);
	CHECK_STR(p.node, "fe1");
	CHECK_STR(p.proto, "imap");
	CHECK_STR(p.client, "[2001:db8::1]:50123");
	CHECK_STR(p.user, "demo@example.test");
	CHECK_INT(p.since, 1764268800);
	CHECK_INT(p.seen, 1764268830);
	CHECK(!store_session_record_stale(&p, 1764268830 + STORE_SESSION_TTL_SECS));
	CHECK(store_session_record_stale(&p, 1764268831 + STORE_SESSION_TTL_SECS));
}

PN_TEST(test_format_refuses)
{
	struct store_session_record r = {
		.node = "fe 1", .proto = "imap", .client = "c", .since = 1, .seen = 1,
	};
	char buf[STORE_SESSION_RECORD_MAX + 1], small[20];
	const char *error;

	CHECK_INT(store_session_record_format(&r, buf, sizeof(buf), &error), -1);
	memcpy(r.node, "fe1", 4);
	r.proto[0] = '\0';
	CHECK_INT(store_session_record_format(&r, buf, sizeof(buf), &error), -1);
	memcpy(r.proto, "pop3", 5);
	CHECK(store_session_record_format(&r, buf, sizeof(buf), &error) > 0);
	CHECK_INT(store_session_record_format(&r, small, sizeof(small), &error), -1);
	r.since = -5;
	CHECK_INT(store_session_record_format(&r, buf, sizeof(buf), &error), -1);
}

PN_TEST(test_parse_variants)
{
	struct store_session_record p;
	const char *error;
	const char *s;

	/* Unknown keys skipped, seen defaults to since, extra spaces fine. */
	s = "v=1  node=fe2 proto=pop3 future=thing client=192.0.2.1:1 since=10";
	CHECK_INT(store_session_record_parse(s, strlen(s), &p, &error), 0);
	CHECK_INT(p.seen, 10);
	CHECK_STR(p.user, "");
	static const char *const bad[] = {
		"", "node=fe1 proto=imap since=1",           /* no version */
		"v=2 node=fe1 proto=imap since=1",
		"v=1 proto=imap since=1", "v=1 node=fe1 since=1", "v=1 node=fe1 proto=imap",
		"v=1 node=fe1 proto=imap since=x", "v=1 node=fe1 proto=imap since=-1",
		"v=1 node=fe1 proto=imap since=1 junk",
		"v=1 node=fe1 proto=imap\tsince=1",
		"v=1 node=fe1 proto=averyveryverylongprotocolname since=1",
		"v=1 node=fe1 proto=imap since=1234567890123456",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (store_session_record_parse(bad[i], strlen(bad[i]), &p, &error) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
}

PN_TEST(test_every_truncation)
{
	/* Each prefix of a valid record either parses or is refused: it parses
	 * when it still holds v, node, proto and since and does not end inside
	 * a key (a token without '='). */
	const char *s = "v=1 node=fe1 proto=imap since=1764268800 client=x:1 user=u@d.e";
	size_t len = strlen(s), first_ok = strlen("v=1 node=fe1 proto=imap since=1");
	struct store_session_record p;
	const char *error;

	for (size_t n = 0; n <= len; n++) {
		int rc = store_session_record_parse(s, n, &p, &error);
		size_t tok = n;
		bool has_eq = false;

		while (tok > 0 && s[tok - 1] != ' ')
			tok--;
		for (size_t i = tok; i < n; i++)
			has_eq = has_eq || s[i] == '=';
		CHECK_INT(rc, n >= first_ok && (has_eq || tok == n) ? 0 : -1);
	}
}

/* Found by fuzz-session-record: a repeated field used to be accepted, the
 * second value overwriting the first and leaving its tail behind the NUL,
 * so the record did not survive a format/parse round trip. */
PN_TEST(test_repeated_field_refused)
{
	static const char *const inputs[] = {
		"v=1 node=fe1 proto=imap4rev proto=pop3 since=1",
		"v=1 node=longer-name node=fe since=1 proto=imap",
		"v=1 v=1 node=fe proto=imap since=1",
		"v=1 node=fe proto=imap since=1 since=2",
		"v=1 node=fe proto=imap since=1 seen=2 seen=3",
	};
	struct store_session_record r;
	const char *error = NULL;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		CHECK_INT(store_session_record_parse(inputs[i], strlen(inputs[i]), &r, &error), -1);
		CHECK(error != NULL && strstr(error, "repeated") != NULL);
	}
	/* unknown keys, even repeated, are still skipped */
	const char *fwd = "v=1 node=fe proto=imap since=1 x=1 x=2";
	CHECK_INT(store_session_record_parse(fwd, strlen(fwd), &r, &error), 0);
}

PN_TEST_MAIN("test-session-record",
	     PN_TEST_CASE(test_keys),
	     PN_TEST_CASE(test_round_trip),
	     PN_TEST_CASE(test_format_refuses),
	     PN_TEST_CASE(test_parse_variants),
	     PN_TEST_CASE(test_every_truncation),
	     PN_TEST_CASE(test_repeated_field_refused))
