/* Unit tests for postern/buf.h: bounds, growth, consume and printf. */
#include "postern/buf.h"
#include "postern/testing.h"

PN_TEST(test_empty_costs_nothing)
{
	struct pn_buf b;
	pn_buf_init(&b, 100);
	CHECK(b.data == NULL);
	CHECK_INT(pn_buf_len(&b), 0);
	CHECK_INT(pn_buf_room(&b), 100);
	pn_buf_free(&b);
}

PN_TEST(test_append_and_limit)
{
	struct pn_buf b;
	pn_buf_init(&b, 10);
	CHECK_INT(pn_buf_append(&b, "hello", 5), 0);
	CHECK_INT(pn_buf_append(&b, "world", 5), 0);
	CHECK_INT(pn_buf_len(&b), 10);
	/* Over the limit: refused, nothing appended. */
	CHECK_INT(pn_buf_append(&b, "!", 1), -1);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "helloworld", 10);
	CHECK(b.cap <= b.max);
	pn_buf_free(&b);
}

PN_TEST(test_consume_makes_room)
{
	struct pn_buf b;
	pn_buf_init(&b, 8);
	CHECK_INT(pn_buf_append(&b, "abcdefgh", 8), 0);
	pn_buf_consume(&b, 3);
	CHECK_INT(pn_buf_len(&b), 5);
	CHECK_INT(pn_buf_append(&b, "xyz", 3), 0);
	CHECK_MEM(pn_buf_rptr(&b), pn_buf_len(&b), "defghxyz", 8);
	pn_buf_consume(&b, 8);
	CHECK_INT(pn_buf_len(&b), 0);
	pn_buf_shrink_if_empty(&b);
	CHECK(b.data == NULL);
	pn_buf_free(&b);
}

PN_TEST(test_printf_long)
{
	struct pn_buf b;
	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	pn_buf_init(&b, 4096);
	CHECK_INT(pn_buf_printf(&b, "%s-%d", big, 42), 0);
	CHECK_INT(pn_buf_len(&b), 599 + 3);
	CHECK(memcmp(pn_buf_rptr(&b) + 599, "-42", 3) == 0);
	/* printf past max is refused whole */
	struct pn_buf s;
	pn_buf_init(&s, 10);
	CHECK_INT(pn_buf_printf(&s, "%s", "0123456789A"), -1);
	CHECK_INT(pn_buf_len(&s), 0);
	pn_buf_free(&s);
	pn_buf_free(&b);
}

PN_TEST(test_reserve_commit)
{
	struct pn_buf b;
	pn_buf_init(&b, 1 << 20);
	for (int i = 0; i < 1000; i++) {
		uint8_t *w = pn_buf_reserve(&b, 100);
		CHECK(w != NULL);
		if (w == NULL)
			break;
		memset(w, 'a' + i % 26, 100);
		pn_buf_commit(&b, 100);
	}
	CHECK_INT(pn_buf_len(&b), 100000);
	CHECK_INT(pn_buf_rptr(&b)[99999], 'a' + 999 % 26);
	CHECK(pn_buf_reserve(&b, (1 << 20)) == NULL);
	pn_buf_free(&b);
}

PN_TEST_MAIN("buf",
	PN_TEST_CASE(test_empty_costs_nothing),
	PN_TEST_CASE(test_append_and_limit),
	PN_TEST_CASE(test_consume_makes_room),
	PN_TEST_CASE(test_printf_long),
	PN_TEST_CASE(test_reserve_commit))
