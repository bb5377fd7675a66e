/* POP3 multi-line message output: byte-stuffing and TOP cutting of a message
 * that arrives in chunks of any size (private to frontend/pop3).
 *
 * RFC 1939 section 3: each line of a multi-line response that starts with
 * the termination octet '.' gets one more '.' in front; the response ends
 * with CRLF "." CRLF. The message bytes are passed through exactly as
 * stored (CRLF line ends); a line start is any byte after LF, so a bare LF in
 * stored data is stuffed too. State carries over between chunks, so a '.'
 * that is the first byte of a chunk after a chunk ending in LF is stuffed
 * like any other.
 *
 * RFC 1939 section 7 (TOP msg n): the header, the blank line that ends it
 * and then n lines of the body. A message without a blank line is all
 * header and is sent whole.
 *
 * Pure functions into caller buffers: no allocation, no I/O.
 */
#ifndef POP3_MESSAGE_H
#define POP3_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pop3_msgout {
	bool top;		/* cutting for TOP */
	bool in_body;		/* TOP: past the blank line ending the header */
	bool done;		/* TOP: has all it needs, later bytes are dropped */
	bool line_start;	/* next byte starts a line */
	bool any;		/* at least one byte was written */
	uint8_t line_first;	/* first byte of the current line */
	uint8_t line_bytes;	/* bytes in the current line so far, saturating at 3 */
	uint8_t last[2];	/* the last two bytes written */
	uint32_t lines_left;	/* TOP: body lines still to send */
};

/* Starts a message: RETR (top false) or TOP with `lines` body lines. */
void pop3_msgout_init(struct pop3_msgout *m, bool top, uint32_t lines);

/* Stuffs in[0..len) into out[0..room). Returns the number of input bytes
 * consumed (all of them once a TOP is done: they are dropped) and sets
 * *out_len_r to the bytes written. Stops early when out is full; every
 * input byte takes at most 2 output bytes, so room >= 2 always makes
 * progress. */
size_t pop3_msgout_write(struct pop3_msgout *m, const uint8_t *in, size_t len,
			 uint8_t *out, size_t room, size_t *out_len_r);

/* True once a TOP has all the lines it asked for. */
static inline bool pop3_msgout_done(const struct pop3_msgout *m) { return m->done; }

/* The longest terminator pop3_msgout_finish() writes. */
#define POP3_MSGOUT_FINISH_MAX 5

/* Writes the end of the response into out (at least POP3_MSGOUT_FINISH_MAX
 * bytes): CRLF if what was written does not end with CRLF (an empty message
 * needs none), then ".\r\n". Returns the number of bytes written. */
size_t pop3_msgout_finish(const struct pop3_msgout *m, uint8_t *out);

#endif
