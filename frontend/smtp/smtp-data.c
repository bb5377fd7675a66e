/* DATA decoding and BDAT content checks for the SMTP session engine:
 * dot-stuffing removal, the CR LF "." CR LF end of data found across any
 * split of the input, and the bare CR / bare LF and line length checks that
 * keep one DATA from ever carrying a second message. See smtp-data.h.
 */
#include "smtp-data.h"

#include <string.h>

void smtp_data_init(struct smtp_data *d, size_t max_line)
{
	memset(d, 0, sizeof(*d));
	d->state = SMTP_DATA_LINE_START;
	d->max_line = max_line;
}

static void add_line(struct smtp_data *d, size_t n)
{
	d->line_len += n;
	if (d->line_len > d->max_line)
		d->line_too_long = true;
}

/* RFC 5321 4.1.1.4: the mail data ends with a line holding only "."; the
 * sequence is CR LF "." CR LF. RFC 5321 4.5.2: when a line starts with "."
 * the first "." is deleted. Only CR LF ends a line here (2.3.8). */
size_t smtp_data_decode(struct smtp_data *d, const uint8_t *in, size_t len,
			uint8_t *out, size_t *out_len_r, bool *end_r)
{
	size_t i = 0, o = 0;

	*end_r = false;
	while (i < len) {
		uint8_t c;

		switch (d->state) {
		case SMTP_DATA_MID: {
			size_t s = i;

			/* The span up to the next CR or LF, found with memchr
			 * (most of a message is such spans). */
			const uint8_t *cr = memchr(in + i, '\r', len - i);
			const uint8_t *lf;

			i = cr != NULL ? (size_t)(cr - in) : len;
			lf = memchr(in + s, '\n', i - s);
			if (lf != NULL)
				i = (size_t)(lf - in);
			if (out != NULL)
				memcpy(out + o, in + s, i - s);
			o += i - s;
			add_line(d, i - s);
			if (i == len)
				break;
			if (in[i] == '\r' && len - i > 2 && in[i + 1] == '\n' && in[i + 2] != '.') {
				/* CR LF and a line that does not start with a
				 * dot: what CR and LINE_START would do, and the
				 * next line is content again */
				if (out != NULL) {
					out[o] = '\r';
					out[o + 1] = '\n';
				}
				o += 2;
				i += 2;
				d->line_len = 0;
				break;
			}
			c = in[i++];
			if (c == '\r') {
				d->state = SMTP_DATA_CR;
			} else {
				d->bare_lf = true;
				if (out != NULL)
					out[o] = '\n';
				o++;
				add_line(d, 1);
			}
			break;
		}
		case SMTP_DATA_LINE_START:
			if (in[i] == '.') {
				i++;
				d->state = SMTP_DATA_DOT;
			} else {
				d->state = SMTP_DATA_MID;
			}
			break;
		case SMTP_DATA_CR:
			c = in[i++];
			if (out != NULL)
				out[o] = '\r';
			o++;
			if (c == '\n') {
				if (out != NULL)
					out[o] = '\n';
				o++;
				d->line_len = 0;
				d->state = SMTP_DATA_LINE_START;
			} else {
				/* The CR just written is bare. Another CR stays
				 * pending; anything else is content. */
				d->bare_cr = true;
				add_line(d, 1);
				if (c != '\r') {
					d->state = SMTP_DATA_MID;
					i--;
				}
			}
			break;
		case SMTP_DATA_DOT:
			/* The dot is removed whatever follows; only CR may still
			 * make this the end-of-data line. */
			if (in[i] == '\r') {
				i++;
				d->state = SMTP_DATA_DOT_CR;
			} else {
				d->state = SMTP_DATA_MID;
			}
			break;
		case SMTP_DATA_DOT_CR:
			c = in[i++];
			if (c == '\n') {
				d->state = SMTP_DATA_LINE_START;
				*end_r = true;
				*out_len_r = o;
				return i;
			}
			/* "." CR then not LF: the dot was stuffing and the CR is
			 * bare; it is content like any other bare CR. */
			d->bare_cr = true;
			if (out != NULL)
				out[o] = '\r';
			o++;
			add_line(d, 1);
			if (c == '\r') {
				d->state = SMTP_DATA_CR;
			} else {
				d->state = SMTP_DATA_MID;
				i--;
			}
			break;
		}
	}
	*out_len_r = o;
	return i;
}

void smtp_data_scan(struct smtp_data *d, const uint8_t *in, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (d->state == SMTP_DATA_CR) {
			d->state = SMTP_DATA_MID;
			if (in[i] == '\n') {
				d->line_len = 0;
				i++;
				continue;
			}
			d->bare_cr = true;
			add_line(d, 1);
		}
		size_t s = i;
		while (i < len && in[i] != '\r' && in[i] != '\n')
			i++;
		add_line(d, i - s);
		if (i == len)
			break;
		if (in[i] == '\r') {
			d->state = SMTP_DATA_CR;
		} else {
			d->bare_lf = true;
			add_line(d, 1);
		}
		i++;
	}
}

void smtp_data_scan_end(struct smtp_data *d)
{
	if (d->state == SMTP_DATA_CR) {
		d->bare_cr = true;
		d->state = SMTP_DATA_MID;
	}
}
