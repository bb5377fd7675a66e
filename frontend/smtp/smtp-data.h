/* Message content reader for the SMTP session engine (private to
 * frontend/smtp): DATA decoding (RFC 5321 4.1.1.4 and 4.5.2) and BDAT
 * content checks (RFC 3030). Pure: state in a caller-owned struct, no
 * allocation, no I/O; any input can be split anywhere between calls.
 *
 * The smuggling defence (RFC 5321 2.3.8; "SMTP smuggling", 2023):
 * - DATA ends only at CR LF "." CR LF. The CR LF before the dot may be the
 *   one ending the DATA command line, so ".\r\n" as the first line ends an
 *   empty message. A "." line ended any other way ("\n.\n", "\r.\r",
 *   "\r\n.\n", "\n.\r\n", "\r\n.\r" + other) never ends the data: its bytes
 *   stay content and the message is then refused because of them.
 * - Bare CR (a CR not followed by LF) and bare LF (a LF not preceded by CR)
 *   are not line ends for anything: they are recorded in bare_cr / bare_lf
 *   and the session rejects the whole message (550 5.6.0). So one DATA or
 *   one BDAT sequence can never carry a second message, and nothing we
 *   store can be re-read as two messages by a later hop.
 * - Dot-stuffing (4.5.2): a line (after CR LF or at the start of the data)
 *   that begins with "." has that first "." removed.
 * Lines longer than max_line bytes (CR LF not counted; RFC 5322 2.1.1 says
 * 998) set line_too_long; the session uses a bound well above 998 (see
 * smtp-session.h) and rejects messages with longer lines.
 */
#ifndef SMTP_DATA_H
#define SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_data_state {
	SMTP_DATA_LINE_START,	/* at the start of a line (after CR LF) */
	SMTP_DATA_MID,		/* inside a line */
	SMTP_DATA_CR,		/* a CR was read and not yet written */
	SMTP_DATA_DOT,		/* "." at the start of a line was read */
	SMTP_DATA_DOT_CR,	/* "." CR at the start of a line was read */
};

struct smtp_data {
	enum smtp_data_state state;
	bool bare_cr, bare_lf, line_too_long;
	size_t line_len;	/* content bytes on the current line */
	size_t max_line;
};

/* Starts a new message. For DATA the reader is at the start of a line. */
void smtp_data_init(struct smtp_data *d, size_t max_line);

/* DATA: decodes in[0..len). Writes the message bytes (unstuffed, line ends
 * as received) to out, which must have room for len + 1 bytes, or counts
 * them only when out is NULL. Stops right after the end-of-data line.
 * Returns the number of input bytes consumed (all of them unless the end was
 * found), sets *out_len_r to the bytes written and *end_r when the end-of-
 * data line has been consumed (its CR LF "." CR LF minus the first CR LF,
 * which belongs to the message, is not written). */
size_t smtp_data_decode(struct smtp_data *d, const uint8_t *in, size_t len,
			uint8_t *out, size_t *out_len_r, bool *end_r);

/* BDAT: checks raw content in[0..len) (no dot handling, no end marker). */
void smtp_data_scan(struct smtp_data *d, const uint8_t *in, size_t len);
/* BDAT: the last chunk has been scanned; a CR at the very end is bare. */
void smtp_data_scan_end(struct smtp_data *d);

#endif
