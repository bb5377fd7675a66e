/* libFuzzer target for the SMTP / LMTP session engine: random client bytes
 * fed in random chunks, requests answered with statuses taken from the
 * input (sometimes late, sometimes with wrong-time result calls first),
 * random shutdowns. It aborts when an invariant breaks:
 * - every SEND is whole reply lines "ddd" SP/"-" text CR LF, no bare CR/LF;
 * - a DELIVER message starts with our Received:, its body holds no bare CR
 *   or LF (the smuggling rule) and is within max_message_size; it has 1 to
 *   max_recipients recipients;
 * - AUTH_VERIFY / SENDER_CHECK only on submission, nothing after CLOSE;
 * - a result call that answers nothing outstanding returns -1.
 * Input: 2 config bytes, then records [ctl][len][len bytes of input].
 * Config bit 0x40 starts with EHLO/(AUTH)/MAIL/RCPT, 0x80 adds DATA, so the
 * fuzzer reaches the data states at once. Run with -dict=fuzz-smtp-session.dict.
 */
#include "smtp-session.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	struct smtp_session *s;
	enum smtp_mode mode;
	uint64_t max_size;
	unsigned int max_rcpts;
	bool closed, has_pending;
	struct smtp_action pending;
	uint8_t pick;
};

static time_t fixed_clock(void)
{
	return 1700000000;
}

static void check_replies(const uint8_t *p, size_t n)
{
	size_t i = 0;

	if (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')
		abort();
	while (i < n) {
		const uint8_t *lf;
		size_t e;

		if (n - i < 6)
			abort();
		for (size_t k = 0; k < 3; k++) {
			if (p[i + k] < '0' || p[i + k] > '9')
				abort();
		}
		if (p[i + 3] != ' ' && p[i + 3] != '-')
			abort();
		lf = memchr(p + i, '\n', n - i);
		if (lf == NULL)
			abort();
		e = (size_t)(lf - p);
		if (p[e - 1] != '\r' || memchr(p + i, '\r', e - 1 - i) != NULL)
			abort();
		i = e + 1;
	}
}

static void check_deliver(const struct fz *f, const struct smtp_action *a)
{
	const uint8_t *m = a->u.deliver.message;
	size_t len = a->u.deliver.message_len, rl = a->u.deliver.received_len;
	const struct smtp_envelope *env = a->u.deliver.env;

	if (rl > len || rl < 16 || memcmp(m, "Received: from ", 15) != 0)
		abort();
	if (len - rl > f->max_size)
		abort();
	if (env->rcpt_count < 1 || env->rcpt_count > f->max_rcpts)
		abort();
	for (size_t i = rl; i < len; i++) {
		if (m[i] == '\r' && (i + 1 == len || m[i + 1] != '\n'))
			abort();
		if (m[i] == '\n' && (i == rl || m[i - 1] != '\r'))
			abort();
	}
}

/* Result calls that answer nothing outstanding must fail. */
static void wrong_time_calls(struct fz *f, enum smtp_action_type outstanding)
{
	enum smtp_deliver_status st = SMTP_DELIVER_OK;

	if (outstanding != SMTP_ACTION_AUTH_VERIFY &&
	    smtp_session_auth_result(f->s, SMTP_AUTH_OK, 1, "u@example.test") != -1)
		abort();
	if (outstanding != SMTP_ACTION_SENDER_CHECK &&
	    smtp_session_sender_result(f->s, SMTP_SENDER_OK) != -1)
		abort();
	if (outstanding != SMTP_ACTION_RCPT_CHECK &&
	    smtp_session_rcpt_result(f->s, SMTP_RCPT_OK, 1) != -1)
		abort();
	if (outstanding != SMTP_ACTION_DELIVER &&
	    smtp_session_deliver_result(f->s, &st, 1, NULL) != -1)
		abort();
	if (outstanding != SMTP_ACTION_START_TLS && smtp_session_tls_started(f->s, NULL) != -1)
		abort();
}

static void answer(struct fz *f, const struct smtp_action *a)
{
	uint8_t pick = f->pick++;

	if ((pick & 0x10) != 0)
		wrong_time_calls(f, a->type);
	switch (a->type) {
	case SMTP_ACTION_START_TLS: {
		struct smtp_tls_info info = { "TLSv1.3", "TLS_AES_128_GCM_SHA256" };
		if (smtp_session_tls_started(f->s, &info) != 0)
			abort();
		break;
	}
	case SMTP_ACTION_AUTH_VERIFY:
		if (smtp_session_auth_result(f->s, (enum smtp_auth_status)(pick % 3), 7,
					     "u@example.test") != 0)
			abort();
		break;
	case SMTP_ACTION_SENDER_CHECK:
		if (smtp_session_sender_result(f->s, (enum smtp_sender_status)(pick % 3)) != 0)
			abort();
		break;
	case SMTP_ACTION_RCPT_CHECK:
		if (smtp_session_rcpt_result(f->s, (enum smtp_rcpt_status)((pick & 0x20) ? pick % 6 : 0),
					     pick) != 0)
			abort();
		break;
	case SMTP_ACTION_DELIVER: {
		size_t n = a->u.deliver.env->rcpt_count;
		enum smtp_deliver_status *st = calloc(n, sizeof(*st));

		if (st == NULL)
			abort();
		for (size_t i = 0; i < n; i++)
			st[i] = (enum smtp_deliver_status)((pick + i) % 6);
		if (smtp_session_deliver_result(f->s, st, n + ((pick & 0x40) ? 1 : 0), "q1") !=
		    ((pick & 0x40) ? -1 : 0))
			abort();
		if ((pick & 0x40) != 0 && smtp_session_deliver_result(f->s, st, n, "q1") != 0)
			abort();
		free(st);
		break;
	}
	default:
		abort();
	}
}

static void drive(struct fz *f, bool hold)
{
	struct smtp_action a;
	int r = 0;

	if (f->has_pending && !hold) {
		f->has_pending = false;
		answer(f, &f->pending);
	}
	while (!f->has_pending && (r = smtp_session_next(f->s, &a)) == 1) {
		if (f->closed)
			abort();
		switch (a.type) {
		case SMTP_ACTION_SEND:
			check_replies(a.u.send.data, a.u.send.len);
			break;
		case SMTP_ACTION_CLOSE:
			f->closed = true;
			break;
		case SMTP_ACTION_AUTH_VERIFY:
			if (f->mode != SMTP_MODE_SUBMISSION || a.u.auth.authcid[0] == '\0' ||
			    a.u.auth.password[0] == '\0')
				abort();
			goto request;
		case SMTP_ACTION_SENDER_CHECK:
			if (f->mode != SMTP_MODE_SUBMISSION)
				abort();
			goto request;
		case SMTP_ACTION_RCPT_CHECK:
			if (a.u.rcpt.rcpt->address[0] == '\0')
				abort();
			goto request;
		case SMTP_ACTION_DELIVER:
			check_deliver(f, &a);
			goto request;
		case SMTP_ACTION_START_TLS:
		request:
			if (hold) {
				f->pending = a;
				f->has_pending = true;
			} else {
				answer(f, &a);
			}
			break;
		}
	}
	if (!f->has_pending && r < 0)
		abort(); /* only out of memory may give -1 */
	if (!f->has_pending)
		wrong_time_calls(f, 0);
}

static void feed(struct fz *f, const void *p, size_t len, bool hold)
{
	const uint8_t *b = p;

	while (len > 0) {
		size_t n = smtp_session_feed(f->s, b, len);

		b += n;
		len -= n;
		drive(f, hold);
		if (n == 0) {
			if (!f->has_pending)
				abort(); /* room can only run out while waiting */
			drive(f, false);
		}
	}
	drive(f, hold);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_settings set;
	struct fz f;
	const char *error;
	uint8_t cfg, cfg2;
	size_t pos = 0;

	if (size < 2)
		return 0;
	cfg = data[0];
	cfg2 = data[1];
	data += 2;
	size -= 2;
	memset(&set, 0, sizeof(set));
	memset(&f, 0, sizeof(f));
	set.mode = (enum smtp_mode)(cfg % 3);
	set.hostname = "mx.example.test";
	set.client_addr = "192.0.2.1";
	set.session_id = "fz";
	set.tls_active = (cfg & 0x04) != 0;
	set.starttls_available = (cfg & 0x08) != 0;
	set.trusted = (cfg & 0x10) != 0;
	if ((cfg & 0x20) != 0) {
		set.max_message_size = 64 + cfg2;
		set.max_recipients = 1 + (cfg2 & 3);
		set.max_errors = 2 + (cfg2 >> 5);
		set.max_commands = 20 + cfg2;
		set.max_data_line = 998;
		set.input_buffer = SMTP_AUTH_LINE_MAX + 2;
	}
	set.clock = fixed_clock;
	f.mode = set.mode;
	f.max_size = set.max_message_size != 0 ? set.max_message_size
					       : SMTP_DEFAULT_MAX_MESSAGE_SIZE;
	f.max_rcpts = set.max_recipients != 0 ? set.max_recipients : SMTP_DEFAULT_MAX_RECIPIENTS;
	f.pick = cfg2;
	f.s = smtp_session_new(&set, &error);
	if (f.s == NULL)
		abort();
	drive(&f, false);

	if ((cfg & 0x40) != 0) {
		static const char mx[] = "EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
					 "RCPT TO:<c@example.test>\r\n";
		static const char lmtp[] = "LHLO c\r\nMAIL FROM:<a@b.example>\r\n"
					   "RCPT TO:<c@example.test>\r\n";
		static const char sub[] = "EHLO c\r\nAUTH PLAIN AHVAZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n"
					  "MAIL FROM:<u@example.test>\r\nRCPT TO:<c@example.test>\r\n";
		const char *pro = set.mode == SMTP_MODE_LMTP ? lmtp
				  : set.mode == SMTP_MODE_SUBMISSION ? sub : mx;
		feed(&f, pro, strlen(pro), false);
		if ((cfg & 0x80) != 0)
			feed(&f, "DATA\r\n", 6, false);
	}
	while (pos < size) {
		uint8_t ctl = data[pos++];
		size_t len = pos < size ? data[pos++] : 0;

		if ((ctl & 0x03) == 0x03)
			len *= 64;
		if (len > size - pos)
			len = size - pos;
		if (ctl == 0xfe)
			smtp_session_shutdown(f.s, SMTP_SHUTDOWN_DRAIN);
		else if (ctl == 0xfd)
			smtp_session_shutdown(f.s, SMTP_SHUTDOWN_TIMEOUT);
		f.pick ^= ctl;
		if ((ctl & 0x0c) == 0x0c) {
			/* byte at a time */
			for (size_t i = 0; i < len; i++)
				feed(&f, data + pos + i, 1, (ctl & 0x10) != 0);
		} else {
			feed(&f, data + pos, len, (ctl & 0x10) != 0);
		}
		pos += len;
	}
	drive(&f, false);
	smtp_session_free(&f.s);
	return 0;
}
