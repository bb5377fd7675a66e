/* libFuzzer target for the IMAP command parser: random bytes fed in random
 * chunk sizes under small random limits and modes, with a fake owner that
 * randomly refuses literals, aborts streamed APPENDs, reads raw lines and
 * discards input. Checks the event contract on every event (return codes,
 * EOL-terminated argument arrays within the depth and count limits, literal
 * data offsets in order, the feed room after "need more") and traps on any
 * violation; ASan/UBSan catch the rest.
 *
 * Input layout: 8 control bytes (limits, modes, PRNG seed), then the stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap-parser.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rng_state;

static uint32_t rng(void)
{
	uint32_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	rng_state = x;
	return x;
}

/* Walks an argument array; returns the number of nodes in it. */
static size_t check_args(const struct imap_arg *args, size_t count, unsigned depth,
			 const struct imap_parser_limits *lim)
{
	size_t nodes = 0;

	REQUIRE(depth <= lim->max_depth);
	REQUIRE(args[count].type == IMAP_ARG_EOL);
	for (size_t i = 0; i < count; i++) {
		const struct imap_arg *a = &args[i];
		nodes++;
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			REQUIRE(a->str != NULL && a->len > 0 && strlen(a->str) == a->len);
			break;
		case IMAP_ARG_QUOTED:
			REQUIRE(a->str != NULL && a->str[a->len] == '\0');
			REQUIRE(memchr(a->str, '\r', a->len) == NULL);
			break;
		case IMAP_ARG_LITERAL:
			if (a->streamed) {
				REQUIRE(a->str == NULL && i + 1 == count && depth == 0);
			} else {
				REQUIRE(a->str != NULL && a->len == a->literal_size &&
					a->str[a->len] == '\0');
				REQUIRE(a->literal8 || memchr(a->str, 0, a->len) == NULL);
			}
			break;
		case IMAP_ARG_LIST:
			nodes += check_args(a->list, a->list_count, depth + 1, lim);
			break;
		case IMAP_ARG_SECTION:
			REQUIRE(a->str != NULL && a->len > 0);
			nodes += check_args(a->list, a->list_count, depth + 1, lim);
			break;
		default:
			REQUIRE(0);
		}
	}
	return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	struct imap_parser_limits lim = {
		.max_line = 8 + data[0] % 120,
		.max_literal = 1 + data[1] % 64,
		.max_append_literal = 1 + data[2] % 512,
		.max_depth = 1 + data[3] % 6,
		.max_args = 1 + data[4] % 48,
		.max_command = 32 + (size_t)data[5] * 8,
	};
	uint8_t flags = data[6];
	rng_state = 0x9e3779b9u ^ data[7] ^ ((uint32_t)size << 8);
	data += 8;
	size -= 8;

	struct imap_parser *p = imap_parser_new(&lim);
	REQUIRE(p != NULL);
	imap_parser_set_utf8_accept(p, flags & 1);
	imap_parser_set_literal_mode(p, (enum imap_literal_mode)((flags >> 1) % 3));
	if (flags & 8)
		imap_parser_set_append_stream(p, 1 + rng() % 32);

	uint64_t stream_next = 0;
	bool fatal = false, streaming = false;
	size_t off = 0;
	while (off < size && !fatal) {
		size_t n = 1 + rng() % 48;
		if (n > size - off)
			n = size - off;
		REQUIRE(imap_parser_feed(p, data + off, n) == 0);
		off += n;

		struct imap_event ev;
		int r;
		while ((r = imap_parser_next(p, &ev)) != 0) {
			REQUIRE(r == 1 || r == -1);
			REQUIRE((r == -1) == (ev.type == IMAP_EV_ERROR));
			uint32_t act = rng();
			switch (ev.type) {
			case IMAP_EV_COMMAND: {
				REQUIRE(ev.tag != NULL && ev.name != NULL);
				size_t nodes = check_args(ev.cmd.args, ev.cmd.count, 0, &lim);
				REQUIRE(nodes <= lim.max_args);
				if (ev.cmd.literal_follows) {
					REQUIRE(strcmp(ev.name, "APPEND") == 0);
					stream_next = 0;
					streaming = true;
					if ((flags & 16) && act % 4 == 0) {
						imap_parser_abort_command(p);
						streaming = false;
					}
				} else if ((flags & 64) && act % 5 == 0) {
					REQUIRE(imap_parser_read_line(p) == 0);
				}
				break;
			}
			case IMAP_EV_LITERAL_CONTINUE:
				REQUIRE(ev.tag != NULL);
				REQUIRE(ev.cont.size <= lim.max_literal ||
					ev.cont.size <= lim.max_append_literal);
				if ((flags & 32) && act % 3 == 0) {
					imap_parser_abort_command(p);
					streaming = false;
				}
				break;
			case IMAP_EV_LITERAL_DATA:
				REQUIRE(streaming);
				REQUIRE(ev.data.offset == stream_next && ev.data.len > 0);
				REQUIRE(ev.data.offset + ev.data.len <= ev.data.size);
				REQUIRE(ev.data.last == (ev.data.offset + ev.data.len == ev.data.size));
				stream_next += ev.data.len;
				if (ev.data.last)
					streaming = false;
				else if ((flags & 16) && act % 7 == 0) {
					imap_parser_abort_command(p);
					streaming = false;
				}
				break;
			case IMAP_EV_LINE:
				REQUIRE(ev.tag == NULL && ev.line.data[ev.line.len] == '\0');
				break;
			case IMAP_EV_ERROR:
				REQUIRE(ev.error.msg != NULL && ev.error.status != NULL);
				streaming = false;
				if (ev.error.fatal)
					fatal = true;
				break;
			default:
				REQUIRE(0);
			}
			if (fatal)
				break;
			if ((flags & 128) && act % 61 == 0)
				imap_parser_discard_input(p);
		}
		if (!fatal) {
			REQUIRE(imap_parser_room(p) >= IMAP_PARSER_FEED_ROOM);
			REQUIRE(imap_parser_buffered(p) < lim.max_line);
		}
	}
	imap_parser_free(&p);
	REQUIRE(p == NULL);
	return 0;
}
