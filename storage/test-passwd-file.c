/* Unit tests for postern/store-passwd-file.h: Dovecot passwd-file lines. */
#include "postern/store-passwd-file.h"
#include "postern/testing.h"

static int parse(const char *line, struct store_passwd_entry *e)
{
	const char *error = NULL;
	int rc = store_passwd_line_parse(line, strlen(line), e, &error);

	if (rc < 0)
		CHECK(error != NULL && error[0] != '\0');
	return rc;
}

PN_TEST(test_full_line)
{
	struct store_passwd_entry e;

	CHECK_INT(parse("jane@example.test:{SHA512-CRYPT}$6$salt$hash:1000:1000:"
			"Jane Doe:/home/jane::userdb_quota_rule=*:storage=100M\n", &e), 1);
	CHECK_STR(e.user, "jane@example.test");
	CHECK_STR(e.password, "{SHA512-CRYPT}$6$salt$hash");
	CHECK(e.has_quota_bytes);
	CHECK_INT(e.quota_bytes, 100LL << 20);
	CHECK(!e.has_quota_messages);
}

PN_TEST(test_short_lines)
{
	struct store_passwd_entry e;

	CHECK_INT(parse("a@b.c:{PLAIN}pw", &e), 1);
	CHECK_STR(e.password, "{PLAIN}pw");
	CHECK(!e.has_quota_bytes);
	CHECK_INT(e.quota_bytes, -1);
	CHECK_INT(parse("a@b.c:{PLAIN}pw:::\r\n", &e), 1);
	CHECK_STR(e.password, "{PLAIN}pw");
}

PN_TEST(test_blank_and_comments)
{
	struct store_passwd_entry e;

	CHECK_INT(parse("", &e), 0);
	CHECK_INT(parse("\n", &e), 0);
	CHECK_INT(parse("   \t\n", &e), 0);
	CHECK_INT(parse("# a comment: with colons\n", &e), 0);
	CHECK_INT(parse("  # indented comment", &e), 0);
}

PN_TEST(test_quota_rules)
{
	struct store_passwd_entry e;

	/* storage without a unit is KiB, bytes is bytes */
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=1024", &e), 1);
	CHECK_INT(e.quota_bytes, 1048576);
	CHECK_INT(parse("a@b.c:x:1:1::::quota_rule=*:bytes=1000", &e), 1);
	CHECK_INT(e.quota_bytes, 1000);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=2G:messages=500", &e), 1);
	CHECK_INT(e.quota_bytes, 2LL << 30);
	CHECK_INT(e.quota_messages, 500);
	CHECK(e.has_quota_messages);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:messages=10 "
			"userdb_quota_rule2=Trash:storage=+100M nopassword", &e), 1);
	CHECK_INT(e.quota_messages, 10);
	CHECK(!e.has_quota_bytes);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=0", &e), 1);
	CHECK(e.has_quota_bytes);
	CHECK_INT(e.quota_bytes, -1);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=10%", &e), 1);
	CHECK(!e.has_quota_bytes);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:ignore", &e), 1);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_mail=maildir:~/Maildir", &e), 1);
	CHECK(!e.has_quota_bytes);
	/* Errors */
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=lots", &e), -1);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=1Q", &e), -1);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:messages=1K", &e), -1);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:frobs=1", &e), -1);
	CHECK_INT(parse("a@b.c:x:1:1::::userdb_quota_rule=*:storage=99999999999999999999", &e),
		  -1);
}

PN_TEST(test_bad_lines)
{
	struct store_passwd_entry e;
	char big[STORE_PASSWD_LINE_MAX + 10];
	const char *error;

	CHECK_INT(parse(":x", &e), -1);
	CHECK_INT(parse("a@b.c", &e), -1);
	CHECK_INT(parse("a@b.c:", &e), -1);
	CHECK_INT(parse("a@b.c::1:1", &e), -1);
	CHECK_INT(store_passwd_line_parse("a@b.c:x\0y", 9, &e, &error), -1);
	memset(big, 'a', sizeof(big));
	CHECK_INT(store_passwd_line_parse(big, sizeof(big), &e, &error), -1);
	memset(big, 'u', 300);
	memcpy(big + 300, ":pw", 4);
	CHECK_INT(parse(big, &e), -1);
}

PN_TEST_MAIN("test-passwd-file",
	     PN_TEST_CASE(test_full_line),
	     PN_TEST_CASE(test_short_lines),
	     PN_TEST_CASE(test_blank_and_comments),
	     PN_TEST_CASE(test_quota_rules),
	     PN_TEST_CASE(test_bad_lines))
