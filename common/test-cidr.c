/* Unit tests for postern/cidr.h: parsing single networks and lists,
 * rejecting bad input, matching IPv4, IPv6 and IPv4-mapped addresses. */
#include "postern/cidr.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

static struct sockaddr_storage addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
			abort();
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
			abort();
	}
	return ss;
}

static bool match(const char *net_text, const char *addr_text)
{
	struct pn_cidr net;
	const char *err = NULL;
	struct sockaddr_storage ss = addr(addr_text);

	if (pn_cidr_parse(net_text, &net, &err) < 0) {
		fprintf(stderr, "parse %s: %s\n", net_text, err);
		return false;
	}
	return pn_cidr_match(&net, (struct sockaddr *)&ss);
}

static const char *fmt(const char *text, char *buf)
{
	struct pn_cidr net;
	const char *err = NULL;

	if (pn_cidr_parse(text, &net, &err) < 0)
		return err;
	return pn_cidr_format(&net, buf, PN_CIDR_STRLEN);
}

PN_TEST(test_parse_forms)
{
	char buf[PN_CIDR_STRLEN];

	CHECK_STR(fmt("10.0.0.0/8", buf), "10.0.0.0/8");
	CHECK_STR(fmt("127.0.0.1", buf), "127.0.0.1/32");
	CHECK_STR(fmt("0.0.0.0/0", buf), "0.0.0.0/0");
	CHECK_STR(fmt("255.255.255.255/32", buf), "255.255.255.255/32");
	CHECK_STR(fmt("192.168.128.0/17", buf), "192.168.128.0/17");
	CHECK_STR(fmt("::1/128", buf), "::1/128");
	CHECK_STR(fmt("::1", buf), "::1/128");
	CHECK_STR(fmt("::/0", buf), "::/0");
	CHECK_STR(fmt("2001:DB8::/32", buf), "2001:db8::/32");
	CHECK_STR(fmt("fe80::/10", buf), "fe80::/10");
	/* IPv4-mapped networks are folded to IPv4. */
	CHECK_STR(fmt("::ffff:10.0.0.0/104", buf), "10.0.0.0/8");
	CHECK_STR(fmt("::ffff:0:0/96", buf), "0.0.0.0/0");
	CHECK_STR(fmt("::ffff:1.2.3.4", buf), "1.2.3.4/32");

	struct pn_cidr net;
	const char *err = NULL;
	CHECK_INT(pn_cidr_parse_n("10.0.0.0/8 trailing", 10, &net, &err), 0);
	CHECK_INT(net.family, AF_INET);
	CHECK_INT(net.prefix, 8);
	CHECK_INT(net.addr[0], 10);
}

PN_TEST(test_parse_rejects)
{
	static const char *const bad[] = {
		"", "/", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8/8",
		"10.0.0.0/08", "10.0.0.0/ 8", "10.0.0.0/8 ", " 10.0.0.0/8", "10.0.0.0/1000",
		"::/129", "::1/200", "10.1.2.3/8", "10.0.0.1/31", "::1/127", "2001:db8::1/32",
		"10.0.0", "10.0.0.0.0", "10..0.0", "10.0.0.256", "010.0.0.1", "1.2.3.04",
		"10.0.0.0x", "0x0a.0.0.0", "1.2.3.-4", "localhost", "garbage/8", "::g",
		"1:2:3:4:5:6:7:8:9", ":::", "fe80::1%eth0", "[::1]", "[::1]/128", "1::2::3",
		"10.0.0.0\t/8", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pn_cidr net;
		const char *err = NULL;
		int ret = pn_cidr_parse(bad[i], &net, &err);
		if (ret != -1)
			fprintf(stderr, "accepted bad network \"%s\"\n", bad[i]);
		CHECK_INT(ret, -1);
		CHECK(err != NULL);
	}
	/* An embedded NUL within the given length is garbage too. */
	struct pn_cidr net;
	const char *err = NULL;
	CHECK_INT(pn_cidr_parse_n("10.0.0.0\0/8", 11, &net, &err), -1);
}

PN_TEST(test_match_ipv4)
{
	CHECK(match("10.0.0.0/8", "10.0.0.0"));
	CHECK(match("10.0.0.0/8", "10.255.255.255"));
	CHECK(!match("10.0.0.0/8", "11.0.0.0"));
	CHECK(!match("10.0.0.0/8", "9.255.255.255"));
	CHECK(match("192.168.128.0/17", "192.168.200.1"));
	CHECK(!match("192.168.128.0/17", "192.168.127.255"));
	CHECK(match("127.0.0.1", "127.0.0.1"));
	CHECK(!match("127.0.0.1", "127.0.0.2"));
	CHECK(match("0.0.0.0/0", "203.0.113.9"));
	CHECK(match("1.2.3.4/31", "1.2.3.5"));
	CHECK(!match("1.2.3.4/31", "1.2.3.6"));
	/* IPv4 networks never match real IPv6 addresses. */
	CHECK(!match("0.0.0.0/0", "2001:db8::1"));
	CHECK(!match("0.0.0.0/0", "::"));
}

PN_TEST(test_match_ipv6)
{
	CHECK(match("::1/128", "::1"));
	CHECK(!match("::1/128", "::2"));
	CHECK(match("2001:db8::/32", "2001:db8:ffff::1"));
	CHECK(!match("2001:db8::/32", "2001:db9::1"));
	CHECK(match("fe80::/10", "febf::1"));
	CHECK(!match("fe80::/10", "fec0::1"));
	CHECK(match("::/0", "2001:db8::1"));
	/* IPv6 networks never match IPv4 clients, mapped or not. */
	CHECK(!match("::/0", "10.0.0.1"));
	CHECK(!match("::/0", "::ffff:10.0.0.1"));
}

PN_TEST(test_match_v4mapped)
{
	/* A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d. */
	CHECK(match("10.0.0.0/8", "::ffff:10.1.2.3"));
	CHECK(!match("10.0.0.0/8", "::ffff:11.1.2.3"));
	CHECK(match("127.0.0.1", "::ffff:127.0.0.1"));
	/* Mapped networks match both forms. */
	CHECK(match("::ffff:10.0.0.0/104", "10.9.9.9"));
	CHECK(match("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"));
	/* IPv4-compatible (::a.b.c.d, deprecated) is not mapped. */
	CHECK(!match("10.0.0.0/8", "::10.1.2.3"));
}

PN_TEST(test_match_other_family)
{
	struct pn_cidr net;
	const char *err = NULL;
	struct sockaddr_un sun;

	CHECK_INT(pn_cidr_parse("0.0.0.0/0", &net, &err), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	CHECK(!pn_cidr_match(&net, (struct sockaddr *)&sun));
}

PN_TEST(test_list)
{
	struct pn_cidr_list list;
	const char *err = NULL;
	char buf[PN_CIDR_STRLEN];

	CHECK_INT(pn_cidr_list_parse("10.0.0.0/8, 192.168.0.0/16 ::1\t,\n 2001:db8::/32,",
				     &list, &err), 0);
	CHECK_INT(list.count, 4);
	if (list.count == 4) {
		CHECK_STR(pn_cidr_format(&list.nets[0], buf, sizeof(buf)), "10.0.0.0/8");
		CHECK_STR(pn_cidr_format(&list.nets[1], buf, sizeof(buf)), "192.168.0.0/16");
		CHECK_STR(pn_cidr_format(&list.nets[2], buf, sizeof(buf)), "::1/128");
		CHECK_STR(pn_cidr_format(&list.nets[3], buf, sizeof(buf)), "2001:db8::/32");
	}
	struct sockaddr_storage a;
	a = addr("192.168.5.5");
	CHECK(pn_cidr_list_match(&list, (struct sockaddr *)&a));
	a = addr("::ffff:10.0.0.7");
	CHECK(pn_cidr_list_match(&list, (struct sockaddr *)&a));
	a = addr("::1");
	CHECK(pn_cidr_list_match(&list, (struct sockaddr *)&a));
	a = addr("172.16.0.1");
	CHECK(!pn_cidr_list_match(&list, (struct sockaddr *)&a));
	a = addr("::2");
	CHECK(!pn_cidr_list_match(&list, (struct sockaddr *)&a));
	pn_cidr_list_free(&list);
	CHECK(list.nets == NULL);
	CHECK_INT(list.count, 0);

	/* Empty lists match nothing. */
	CHECK_INT(pn_cidr_list_parse("", &list, &err), 0);
	CHECK_INT(list.count, 0);
	CHECK_INT(pn_cidr_list_parse(" , ,\n", &list, &err), 0);
	CHECK_INT(list.count, 0);
	a = addr("127.0.0.1");
	CHECK(!pn_cidr_list_match(&list, (struct sockaddr *)&a));
	pn_cidr_list_free(&list);

	/* One bad entry fails the whole list and leaves it empty. */
	err = NULL;
	CHECK_INT(pn_cidr_list_parse("10.0.0.0/8, 10.0.0.0/33", &list, &err), -1);
	CHECK(err != NULL);
	CHECK(list.nets == NULL);
	CHECK_INT(list.count, 0);
	CHECK_INT(pn_cidr_list_parse("10.0.0.0/8;192.168.0.0/16", &list, &err), -1);
	CHECK_INT(pn_cidr_list_parse("127.0.0.1 garbage", &list, &err), -1);
}

PN_TEST(test_list_limit)
{
	size_t n = PN_CIDR_LIST_MAX;
	char *s = malloc(n * 3 + 3);
	struct pn_cidr_list list;
	const char *err = NULL;
	size_t o = 0;

	CHECK(s != NULL);
	if (s == NULL)
		return;
	/* PN_CIDR_LIST_MAX entries of "::" are fine, one more is not. */
	for (size_t i = 0; i < n; i++) {
		memcpy(s + o, ":: ", 3);
		o += 3;
	}
	s[o] = '\0';
	CHECK_INT(pn_cidr_list_parse(s, &list, &err), 0);
	CHECK_INT(list.count, PN_CIDR_LIST_MAX);
	pn_cidr_list_free(&list);
	memcpy(s + o, "::", 3);
	CHECK_INT(pn_cidr_list_parse(s, &list, &err), -1);
	CHECK_STR(err, "too many networks in list");
	CHECK(list.nets == NULL);
	free(s);
}

PN_TEST_MAIN("test-cidr",
	PN_TEST_CASE(test_parse_forms),
	PN_TEST_CASE(test_parse_rejects),
	PN_TEST_CASE(test_match_ipv4),
	PN_TEST_CASE(test_match_ipv6),
	PN_TEST_CASE(test_match_v4mapped),
	PN_TEST_CASE(test_match_other_family),
	PN_TEST_CASE(test_list),
	PN_TEST_CASE(test_list_limit))
