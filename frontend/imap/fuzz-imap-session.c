/* libFuzzer target for the IMAP session engine: the input drives a whole
 * session against the canned daemon of test-imap-session-fake.h. The first
 * byte picks the listener settings; the rest is a series of chunks, each a
 * length byte followed by that many client bytes; the length byte's high
 * bits also inject a mailbox notification (EXISTS / EXPUNGE / FLAGS) after
 * the chunk. Ends with a drain request (bit 8 of the first byte: first the
 * news that the selected mailbox was deleted) and a disconnect. Checks that the
 * engine never crashes, leaks or reads out of bounds, and that the output
 * always ends in a complete line.
 */
#include <stdint.h>
#include <stdlib.h>

#include "test-imap-session-fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imap_settings set;
	struct fake f;

	if (size < 1)
		return 0;
	imap_settings_defaults(&set);
	set.trusted = (data[0] & 1) != 0;
	set.tls_active = (data[0] & 2) != 0;
	set.starttls_available = (data[0] & 4) != 0;
	set.max_append = 100000;
	set.parser.max_line = 4096;
	fake_init(&f, &set);
	if (f.s == NULL)
		abort();
	fake_pump(&f);
	size_t i = 1;
	uint32_t uid = 6;
	while (i < size && !f.closed) {
		size_t n = data[i] & 0x3f;
		unsigned int note = data[i] >> 6;
		i++;
		if (n > size - i)
			n = size - i;
		fake_feed(&f, data + i, n);
		i += n;
		if (f.start_tls_seen && !f.tls_started) {
			imap_session_tls_started(f.s);
			f.tls_started = true;
		}
		static const char *const flags[] = { "\\Seen", "$x" };
		struct imap_notify nt = { .flags = flags, .flag_count = 2 };
		switch (note) {
		case 1:
			nt.type = IMAP_NOTIFY_EXISTS;
			nt.uid = uid++;
			break;
		case 2:
			nt.type = IMAP_NOTIFY_EXPUNGE;
			nt.uid = (uint32_t)(n % 7);
			break;
		case 3:
			nt.type = IMAP_NOTIFY_FLAGS;
			nt.uid = (uint32_t)(n % 7);
			nt.modseq = 1000 + n;
			break;
		default:
			continue;
		}
		imap_session_notify(f.s, &nt);
		fake_pump(&f);
	}
	if (!f.closed && (data[0] & 8) != 0) {
		imap_session_mailbox_gone(f.s);
		fake_pump(&f);
	}
	if (!f.closed) {
		imap_session_shutdown(f.s);
		fake_pump(&f);
	}
	imap_session_disconnected(f.s);
	fake_pump(&f);
	size_t len = pn_buf_len(&f.out);
	const uint8_t *out = pn_buf_rptr(&f.out);
	if (len > 0 && out[len - 1] != '\n')
		abort();
	fake_free(&f);
	return 0;
}
