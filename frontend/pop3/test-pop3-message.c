/* Unit tests for pop3-message.h: byte-stuffing and TOP cutting on fixed
 * examples, then random messages over the bytes that matter ('.', CR, LF)
 * cut into random chunks and written into random small output rooms, all
 * compared with a simple line-by-line reference. */
#include "pop3-message.h"
#include "postern/testing.h"

/* Line-based reference: the whole message at once. */
static size_t reference(const uint8_t *msg, size_t len, bool top, uint32_t k, uint8_t *out)
{
	size_t o = 0, i = 0;
	bool in_body = false, done = false;

	while (i < len && !done) {
		size_t start = i;
		while (i < len && msg[i] != '\n')
			i++;
		bool has_lf = i < len;
		if (has_lf)
			i++;
		if (msg[start] == '.')
			out[o++] = '.';
		memcpy(out + o, msg + start, i - start);
		o += i - start;
		if (!top || !has_lf)
			continue;
		size_t l = i - start;
		if (!in_body) {
			if (l == 1 || (l == 2 && msg[start] == '\r')) {
				in_body = true;
				done = k == 0;
			}
		} else if (--k == 0) {
			done = true;
		}
	}
	if (o > 0 && !(o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n')) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

/* Runs the stuffer over msg in chunks of `chunk` bytes into rooms of
 * `room` bytes (0: unlimited). */
static size_t run(const uint8_t *msg, size_t len, bool top, uint32_t k, size_t chunk,
		  size_t room, uint8_t *out)
{
	struct pop3_msgout m;
	size_t o = 0, i = 0;

	pop3_msgout_init(&m, top, k);
	while (i < len) {
		size_t n = len - i < chunk ? len - i : chunk;
		size_t taken = 0;
		while (taken < n) {
			size_t wrote;
			size_t r = room == 0 ? 2 * n + 2 : room;
			size_t t = pop3_msgout_write(&m, msg + i + taken, n - taken, out + o, r, &wrote);
			o += wrote;
			taken += t;
			if (t == 0 && r >= 2)
				return (size_t)-1; /* no progress with room for it */
		}
		i += n;
	}
	return o + pop3_msgout_finish(&m, out + o);
}

static void check_case(const char *msg, bool top, uint32_t k, const char *expected)
{
	uint8_t out[512];
	size_t len = strlen(msg);

	for (size_t chunk = 1; chunk <= len + 1; chunk++) {
		for (size_t room = 0; room <= 3; room++) {
			if (room == 1)
				continue;
			size_t n = run((const uint8_t *)msg, len, top, k, chunk, room, out);
			CHECK_MEM(out, n, expected, strlen(expected));
		}
	}
}

PN_TEST(test_stuffing)
{
	check_case("", false, 0, ".\r\n");
	check_case("a\r\n", false, 0, "a\r\n.\r\n");
	check_case(".\r\n", false, 0, "..\r\n.\r\n");
	check_case("x\r\n.\r\n..y\r\n", false, 0, "x\r\n..\r\n...y\r\n.\r\n");
	check_case(".start", false, 0, "..start\r\n.\r\n");
	/* No CRLF at the end: one is added before the terminator. */
	check_case("a\r\nb", false, 0, "a\r\nb\r\n.\r\n");
	check_case("a\r\nb\r", false, 0, "a\r\nb\r\r\n.\r\n");
	/* A bare LF starts a line too. */
	check_case("a\n.b\n", false, 0, "a\n..b\n\r\n.\r\n");
	/* Dots inside a line are not touched. */
	check_case("a.b\r\n c.\r\n", false, 0, "a.b\r\n c.\r\n.\r\n");
}

PN_TEST(test_top)
{
	const char *m = "A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";

	check_case(m, true, 0, "A: 1\r\nB: 2\r\n\r\n.\r\n");
	check_case(m, true, 1, "A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n");
	check_case(m, true, 2, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n");
	check_case(m, true, 3, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	check_case(m, true, 100, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	/* No body at all: the header is the whole message. */
	check_case("A: 1\r\nB: 2\r\n", true, 0, "A: 1\r\nB: 2\r\n.\r\n");
	check_case("A: 1\r\nB: 2", true, 5, "A: 1\r\nB: 2\r\n.\r\n");
	/* Empty header. */
	check_case("\r\nbody\r\n", true, 0, "\r\n.\r\n");
	check_case("\r\nbody\r\n", true, 1, "\r\nbody\r\n.\r\n");
	/* A last body line without CRLF. */
	check_case("H: v\r\n\r\nx", true, 1, "H: v\r\n\r\nx\r\n.\r\n");
}

PN_TEST(test_top_done_flag)
{
	struct pop3_msgout m;
	uint8_t out[64];
	size_t wrote;
	const char *msg = "H: v\r\n\r\nline\r\nmore\r\n";

	pop3_msgout_init(&m, true, 1);
	CHECK_INT(pop3_msgout_write(&m, (const uint8_t *)msg, 8, out, sizeof(out), &wrote), 8);
	CHECK(!pop3_msgout_done(&m));
	CHECK_INT(pop3_msgout_write(&m, (const uint8_t *)msg + 8, 6, out, sizeof(out), &wrote), 6);
	CHECK(pop3_msgout_done(&m));
	/* Later bytes are taken and dropped. */
	CHECK_INT(pop3_msgout_write(&m, (const uint8_t *)msg + 14, 6, out, sizeof(out), &wrote), 6);
	CHECK_INT(wrote, 0);

	pop3_msgout_init(&m, false, 0);
	CHECK_INT(pop3_msgout_write(&m, (const uint8_t *)msg, strlen(msg), out, 4, &wrote), 4);
	CHECK_INT(wrote, 4);
	CHECK(!pop3_msgout_done(&m));
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

PN_TEST(test_random_against_reference)
{
	static const uint8_t alphabet[] = { '.', '\r', '\n', 'a', '\n', '.' };
	uint8_t msg[200], want[500], got[500];

	for (int iter = 0; iter < 3000; iter++) {
		size_t len = rnd() % sizeof(msg);
		for (size_t i = 0; i < len; i++)
			msg[i] = alphabet[rnd() % sizeof(alphabet)];
		bool top = rnd() % 2;
		uint32_t k = rnd() % 5;
		size_t chunk = 1 + rnd() % 20;
		size_t room = rnd() % 2 ? 0 : 2 + rnd() % 10;
		size_t w = reference(msg, len, top, k, want);
		size_t g = run(msg, len, top, k, chunk, room, got);
		CHECK_MEM(got, g, want, w);
		if (g != w || memcmp(got, want, w) != 0)
			break;
	}
}

PN_TEST_MAIN("pop3-message",
	PN_TEST_CASE(test_stuffing),
	PN_TEST_CASE(test_top),
	PN_TEST_CASE(test_top_done_flag),
	PN_TEST_CASE(test_random_against_reference))
