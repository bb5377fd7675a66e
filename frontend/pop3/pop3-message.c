/* Byte-stuffing and TOP cutting for POP3 message output (see
 * pop3-message.h): a small state machine over lines that copies runs up to
 * the next LF with memcpy and looks only at line starts and line ends.
 */
#include "pop3-message.h"

#include <string.h>

void pop3_msgout_init(struct pop3_msgout *m, bool top, uint32_t lines)
{
	memset(m, 0, sizeof(*m));
	m->top = top;
	m->lines_left = lines;
	m->line_start = true;
}

static void note_written(struct pop3_msgout *m, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	m->any = true;
	if (n >= 2) {
		m->last[0] = p[n - 2];
		m->last[1] = p[n - 1];
	} else {
		m->last[0] = m->last[1];
		m->last[1] = p[0];
	}
}

/* A line (ending with the LF just written) is complete. */
static void end_of_line(struct pop3_msgout *m)
{
	/* An empty line is "\r\n" (or a bare "\n"). */
	bool empty = m->line_bytes == 1 || (m->line_bytes == 2 && m->line_first == '\r');

	m->line_start = true;
	m->line_bytes = 0;
	if (!m->top)
		return;
	if (!m->in_body) {
		if (empty) {
			m->in_body = true;
			if (m->lines_left == 0)
				m->done = true;
		}
	} else if (--m->lines_left == 0) {
		m->done = true;
	}
}

size_t pop3_msgout_write(struct pop3_msgout *m, const uint8_t *in, size_t len,
			 uint8_t *out, size_t room, size_t *out_len_r)
{
	size_t i = 0, o = 0;

	while (i < len) {
		if (m->done) {
			i = len;
			break;
		}
		if (m->line_start) {
			/* RFC 1939 section 3: "If any line begins with the
			 * termination octet, the line is byte-stuffed by
			 * pre-pending the termination octet to that line." */
			size_t need = in[i] == '.' ? 2 : 1;

			if (room - o < need)
				break;
			if (in[i] == '.') {
				out[o] = '.';
				note_written(m, out + o, 1);
				o++;
			}
			m->line_start = false;
			m->line_first = in[i];
			m->line_bytes = 0;
		}
		size_t avail = room - o;
		if (avail == 0)
			break;
		const uint8_t *lf = memchr(in + i, '\n', len - i);
		size_t seg = lf != NULL ? (size_t)(lf - (in + i)) + 1 : len - i;
		size_t n = seg < avail ? seg : avail;

		memcpy(out + o, in + i, n);
		note_written(m, out + o, n);
		o += n;
		i += n;
		m->line_bytes = (uint8_t)(m->line_bytes + n > 3 ? 3 : m->line_bytes + n);
		if (lf != NULL && n == seg)
			end_of_line(m);
	}
	*out_len_r = o;
	return i;
}

size_t pop3_msgout_finish(const struct pop3_msgout *m, uint8_t *out)
{
	size_t o = 0;

	if (m->any && !(m->last[0] == '\r' && m->last[1] == '\n')) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	out[o++] = '.';
	out[o++] = '\r';
	out[o++] = '\n';
	return o;
}
