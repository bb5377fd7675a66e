/* Unit tests for postern/store-kick.h (the kick request message shared by
 * posternctl and the frontends) and postern/store-nodes.h (node registry
 * key names and hash fields). */
#include "postern/store-kick.h"
#include "postern/store-nodes.h"
#include "postern/testing.h"

static int parse(const char *s, struct store_kick *k)
{
	const char *error = NULL;
	int rc = store_kick_parse(s, strlen(s), k, &error);

	CHECK(rc == 0 || (error != NULL && strncmp(error, "kick: ", 6) == 0));
	return rc;
}

PN_TEST(test_round_trip)
{
	struct store_kick k = { .account_id = 42, .proto = STORE_KICK_IMAP,
				.session = "fe1/17" }, p;
	char buf[STORE_KICK_MAX + 1];
	const char *error;

	CHECK_INT(store_kick_format(&k, buf, sizeof(buf), &error), 40);
	CHECK_STR(buf, "v=1 account=42 proto=imap session=fe1/17");
	CHECK_INT(parse(buf, &p), 0);
	CHECK(p.account_id == 42);
	CHECK_INT(p.proto, STORE_KICK_IMAP);
	CHECK_STR(p.session, "fe1/17");

	memset(&k, 0, sizeof(k));
	k.account_id = UINT64_MAX;
	CHECK_INT(store_kick_format(&k, buf, sizeof(buf), &error), 32);
	CHECK_STR(buf, "v=1 account=18446744073709551615");
	CHECK_INT(parse(buf, &p), 0);
	CHECK(p.account_id == UINT64_MAX);
	CHECK_INT(p.proto, STORE_KICK_ANY);
	CHECK_STR(p.session, "");

	k.proto = STORE_KICK_SMTP;
	CHECK(store_kick_format(&k, buf, sizeof(buf), &error) > 0);
	CHECK_INT(parse(buf, &p), 0);
	CHECK_INT(p.proto, STORE_KICK_SMTP);
	/* buffer too small, bad session, bad proto */
	CHECK_INT(store_kick_format(&k, buf, 10, &error), -1);
	snprintf(k.session, sizeof(k.session), "nonode");
	CHECK_INT(store_kick_format(&k, buf, sizeof(buf), &error), -1);
	snprintf(k.session, sizeof(k.session), "bad node/1");
	CHECK_INT(store_kick_format(&k, buf, sizeof(buf), &error), -1);
	snprintf(k.session, sizeof(k.session), "fe1/");
	CHECK_INT(store_kick_format(&k, buf, sizeof(buf), &error), -1);
	k.session[0] = '\0';
	k.proto = (enum store_kick_proto)9;
	CHECK_INT(store_kick_format(&k, buf, sizeof(buf), &error), -1);
}

PN_TEST(test_parse_variants)
{
	struct store_kick p;
	char longer[STORE_KICK_MAX + 32];

	/* unknown keys skipped, extra spaces, keys in any order after v */
	CHECK_INT(parse("v=1  session=fe-2.x/a:b  by=admin account=7 proto=pop3 ", &p), 0);
	CHECK(p.account_id == 7);
	CHECK_INT(p.proto, STORE_KICK_POP3);
	CHECK_STR(p.session, "fe-2.x/a:b");
	CHECK_INT(parse("v=1 account=0", &p), 0);
	CHECK_INT(parse("v=1 account=7 x=", &p), 0);

	CHECK_INT(parse("", &p), -1);
	CHECK_INT(parse("   ", &p), -1);
	CHECK_INT(parse("account=7 v=1", &p), -1);       /* v not first */
	CHECK_INT(parse("v=2 account=7", &p), -1);
	CHECK_INT(parse("v=1", &p), -1);                 /* no account */
	CHECK_INT(parse("v=1 account=", &p), -1);
	CHECK_INT(parse("v=1 account=07", &p), -1);
	CHECK_INT(parse("v=1 account=-7", &p), -1);
	CHECK_INT(parse("v=1 account=7x", &p), -1);
	CHECK_INT(parse("v=1 account=18446744073709551616", &p), -1);
	CHECK_INT(parse("v=1 account=7 account=8", &p), -1);
	CHECK_INT(parse("v=1 account=7 v=1", &p), -1);
	CHECK_INT(parse("v=1 account=7 proto=lmtp", &p), -1);
	CHECK_INT(parse("v=1 account=7 proto=IMAP", &p), -1);
	CHECK_INT(parse("v=1 account=7 proto=imap proto=imap", &p), -1);
	CHECK_INT(parse("v=1 account=7 session=", &p), -1);
	CHECK_INT(parse("v=1 account=7 session=fe1", &p), -1);
	CHECK_INT(parse("v=1 account=7 session=/1", &p), -1);
	CHECK_INT(parse("v=1 account=7 session=fe1/1 session=fe1/2", &p), -1);
	CHECK_INT(parse("v=1 account=7 junk", &p), -1);
	CHECK_INT(parse("v=1 account=7 =x", &p), -1);
	CHECK_INT(parse("v=1 account=7\tproto=imap", &p), -1);
	CHECK_INT(parse("v=1 account=7 x=\xc3\xa9", &p), -1);
	CHECK_INT(store_kick_parse("v=1 account=7\0", 14, &p, &(const char *){ NULL }), -1);
	/* length limit */
	memset(longer, 'x', sizeof(longer));
	memcpy(longer, "v=1 account=7 y=", 16);
	longer[STORE_KICK_MAX] = '\0';
	CHECK_INT(parse(longer, &p), 0);
	longer[STORE_KICK_MAX] = 'x';
	longer[STORE_KICK_MAX + 1] = '\0';
	CHECK_INT(parse(longer, &p), -1);
}

/* The message arrives whole (one pub/sub message), but a truncated one must
 * never be read as the full request: feed 0..len bytes and check that only
 * the whole message parses to it. */
PN_TEST(test_every_truncation)
{
	const char *s = "v=1 account=123 proto=smtp session=fe1/99";
	size_t len = strlen(s);
	struct store_kick full, p;
	const char *error;

	CHECK_INT(store_kick_parse(s, len, &full, &error), 0);
	for (size_t n = 0; n < len; n++) {
		int rc = store_kick_parse(s, n, &p, &error);

		CHECK(rc < 0 || memcmp(&p, &full, sizeof(p)) != 0);
		/* without the account's last digit at least, it cannot parse */
		if (n < strlen("v=1 account=1"))
			CHECK_INT(rc, -1);
	}
}

PN_TEST(test_matches)
{
	struct store_kick k = { .account_id = 5 };

	CHECK(store_kick_matches(&k, 5, "imap", "fe1/1"));
	CHECK(store_kick_matches(&k, 5, "lmtp", NULL));
	CHECK(!store_kick_matches(&k, 6, "imap", "fe1/1"));
	k.proto = STORE_KICK_SMTP;
	CHECK(store_kick_matches(&k, 5, "smtp", "fe1/1"));
	CHECK(store_kick_matches(&k, 5, "submission", "fe1/1"));
	CHECK(!store_kick_matches(&k, 5, "imap", "fe1/1"));
	CHECK(!store_kick_matches(&k, 5, NULL, "fe1/1"));
	k.proto = STORE_KICK_POP3;
	CHECK(store_kick_matches(&k, 5, "pop3", "fe1/1"));
	CHECK(!store_kick_matches(&k, 5, "imap", "fe1/1"));
	k.proto = STORE_KICK_IMAP;
	snprintf(k.session, sizeof(k.session), "fe2/7");
	CHECK(store_kick_matches(&k, 5, "imap", "fe2/7"));
	CHECK(!store_kick_matches(&k, 5, "imap", "fe2/70"));
	CHECK(!store_kick_matches(&k, 5, "imap", NULL));
	CHECK(!store_kick_matches(&k, 5, "pop3", "fe2/7"));
}

PN_TEST(test_proto_names)
{
	enum store_kick_proto p;

	CHECK_STR(store_kick_proto_name(STORE_KICK_POP3), "pop3");
	CHECK(store_kick_proto_name(STORE_KICK_ANY) == NULL);
	CHECK_INT(store_kick_proto_parse("smtp", 4, &p), 0);
	CHECK_INT(p, STORE_KICK_SMTP);
	CHECK_INT(store_kick_proto_parse("smtpx", 4, &p), 0);
	CHECK_INT(store_kick_proto_parse("smtpx", 5, &p), -1);
	CHECK_INT(store_kick_proto_parse("submission", 10, &p), -1);
	CHECK_INT(store_kick_proto_parse("", 0, &p), -1);
}

PN_TEST(test_node_keys)
{
	char key[STORE_NODE_KEY_MAX], name[STORE_NODE_NAME_MAX + 2];

	CHECK_INT(store_node_key("fe-1.a_b", key, sizeof(key)), 21);
	CHECK_STR(key, "{nodes}:node:fe-1.a_b");
	CHECK_INT(store_node_key("fe 1", key, sizeof(key)), -1);
	CHECK_INT(store_node_key("", key, sizeof(key)), -1);
	CHECK_INT(store_node_key("fe1", key, 10), -1);
	memset(name, 'n', STORE_NODE_NAME_MAX);
	name[STORE_NODE_NAME_MAX] = '\0';
	CHECK_INT(store_node_key(name, key, sizeof(key)), (int)STORE_NODE_KEY_MAX - 1);
	CHECK(store_node_name_ok(name));
	name[STORE_NODE_NAME_MAX] = 'n';
	name[STORE_NODE_NAME_MAX + 1] = '\0';
	CHECK(!store_node_name_ok(name));
	CHECK(!store_node_name_ok(NULL));
	CHECK(!store_node_name_ok("fe/1"));
}

static void set(struct store_rnode *n, const char *f, const char *v)
{
	store_rnode_set_field(n, f, strlen(f), v, strlen(v));
}

PN_TEST(test_node_fields)
{
	struct store_rnode n;
	char big[200];

	memset(&n, 0, sizeof(n));
	set(&n, "addr", "10.0.0.1:1143");
	set(&n, "version", "0.1.0");
	set(&n, "role", "frontend");
	set(&n, "sessions", "12");
	set(&n, "ready", "1");
	set(&n, "seen", "1764268800123");
	set(&n, "colour", "blue");
	CHECK_STR(n.addr, "10.0.0.1:1143");
	CHECK_STR(n.version, "0.1.0");
	CHECK_STR(n.role, "frontend");
	CHECK_INT(n.sessions, 12);
	CHECK(n.ready);
	CHECK_INT(n.seen_ms, 1764268800123LL);
	set(&n, "ready", "0");
	CHECK(!n.ready);
	set(&n, "ready", "11");
	CHECK(!n.ready);
	set(&n, "sessions", "12x");
	CHECK_INT(n.sessions, 0);
	set(&n, "sessions", "-3");
	CHECK_INT(n.sessions, -3);
	set(&n, "sessions", "");
	CHECK_INT(n.sessions, 0);
	set(&n, "seen", "9999999999999999999");
	CHECK_INT(n.seen_ms, 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	set(&n, "addr", big);
	CHECK_INT(strlen(n.addr), sizeof(n.addr) - 1);
	/* "sessionsX" is not "sessions" */
	store_rnode_set_field(&n, "sessionsX", 8, "5", 1);
	CHECK_INT(n.sessions, 5);
	store_rnode_set_field(&n, "sessionsX", 9, "6", 1);
	CHECK_INT(n.sessions, 5);
}

PN_TEST_MAIN("test-kick",
	     PN_TEST_CASE(test_round_trip),
	     PN_TEST_CASE(test_parse_variants),
	     PN_TEST_CASE(test_every_truncation),
	     PN_TEST_CASE(test_matches),
	     PN_TEST_CASE(test_proto_names),
	     PN_TEST_CASE(test_node_keys),
	     PN_TEST_CASE(test_node_fields))
