/* libFuzzer target for the POP3 session engine. The input drives a fake
 * daemon: settings from the first bytes, then operations: feed a chunk of
 * client bytes, answer the outstanding request (canned results chosen by
 * input bytes; messages with dot lines given in chunks of random size),
 * call result functions that were not asked for, shut down, disconnect.
 * Properties checked (abort on violation):
 * - at most one request is outstanding, and results are refused otherwise;
 * - nothing but RELEASE comes after a disconnect, nothing after -1;
 * - each POP3_MAILDROP_OK is matched by exactly one RELEASE by the end;
 * - UPDATE comes at most once and never after a disconnect;
 * - every SEND is non-empty and the session always ends (-1) once the
 *   client is gone and the requests are answered.
 */
#include "pop3-session.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const canned[] = {
	"Subject: x\r\n\r\nbody\r\n.dot\r\n..\r\n.\r\nend\r\n",
	"H: 1\r\nH: 2\r\n",
	".lead\r\n\r\nno final crlf",
	"",
	"\r\n.\r\n\n.\n",
};
#define NCANNED (sizeof(canned) / sizeof(canned[0]))

struct fz {
	const uint8_t *p;
	size_t n;
	struct pop3_session *s;
	enum pop3_action_type pending;	/* 0: none */
	size_t msg_off;
	const char *msg;
	unsigned int oks, releases, updates;
	bool disconnected, ended;
	char uidl[8][4];
	struct pop3_message list[8];
};

static uint8_t byte(struct fz *f)
{
	if (f->n == 0)
		return 0;
	f->n--;
	return *f->p++;
}

static void drive(struct fz *f)
{
	struct pop3_action a;
	int r;

	while ((r = pop3_session_next(f->s, &a)) == 1) {
		if (f->ended)
			abort();
		if (f->disconnected && a.type != POP3_ACTION_RELEASE)
			abort();
		switch (a.type) {
		case POP3_ACTION_SEND:
			if (a.send.len == 0 || a.send.data == NULL)
				abort();
			break;
		case POP3_ACTION_RELEASE:
			if (++f->releases > f->oks)
				abort();
			break;
		case POP3_ACTION_CLOSE:
			break;
		case POP3_ACTION_UPDATE:
			if (++f->updates > 1)
				abort();
			/* fall through */
		case POP3_ACTION_AUTH_VERIFY:
		case POP3_ACTION_MAILDROP_OPEN:
		case POP3_ACTION_MESSAGE_GET:
		case POP3_ACTION_START_TLS:
			if (f->pending != 0)
				abort();
			f->pending = a.type;
			if (a.type == POP3_ACTION_MESSAGE_GET) {
				if (a.message.msgno == 0 || a.message.msgno > 8)
					abort();
				f->msg = canned[(a.message.msgno - 1) % NCANNED];
				f->msg_off = 0;
			}
			break;
		default:
			abort();
		}
	}
	if (r < 0)
		f->ended = true;
	else if (f->ended)
		abort();
}

static void answer(struct fz *f)
{
	const char *err;
	uint8_t c = byte(f);
	size_t consumed;

	switch (f->pending) {
	case POP3_ACTION_AUTH_VERIFY:
		f->pending = 0;
		if (pop3_session_auth_result(f->s, (enum pop3_auth_result)(c % 5), 7, &err) < 0)
			abort();
		break;
	case POP3_ACTION_MAILDROP_OPEN: {
		f->pending = 0;
		enum pop3_maildrop_result res = c % 4 == 3 ? POP3_MAILDROP_IN_USE
					       : c % 4 == 2 ? POP3_MAILDROP_TEMP_FAIL
							    : POP3_MAILDROP_OK;
		size_t count = (size_t)(c >> 4) % 9;
		for (size_t i = 0; i < count; i++)
			f->list[i].size = strlen(canned[i % NCANNED]);
		/* A bad UIDL now and then: refused, yet the lock is released. */
		if ((c & 0x0c) == 0x0c && count > 0)
			f->list[0].uidl = "bad uidl";
		int ret = pop3_session_maildrop_result(f->s, res, f->list, count, &err);
		f->list[0].uidl = f->uidl[0];
		if (res == POP3_MAILDROP_OK)
			f->oks++;
		if (ret < 0 && !((c & 0x0c) == 0x0c && count > 0 && res == POP3_MAILDROP_OK))
			abort();
		break;
	}
	case POP3_ACTION_MESSAGE_GET: {
		if (c >= 0xf0) {
			f->pending = 0;
			if (pop3_session_message_fail(f->s, (c & 1) ? POP3_MESSAGE_GONE
								 : POP3_MESSAGE_TEMP_FAIL, &err) < 0)
				abort();
			break;
		}
		size_t left = strlen(f->msg) - f->msg_off;
		size_t n = c % 8 == 0 ? left : (size_t)c % 8;
		if (n > left)
			n = left;
		bool final = n == left;
		if (pop3_session_message_data(f->s, f->msg + f->msg_off, n, final, &consumed,
					      &err) < 0 || consumed > n)
			abort();
		f->msg_off += consumed;
		if (final && consumed == n)
			f->pending = 0;
		break;
	}
	case POP3_ACTION_UPDATE:
		f->pending = 0;
		if (pop3_session_update_result(f->s, c & 1, &err) < 0)
			abort();
		break;
	case POP3_ACTION_START_TLS:
		f->pending = 0;
		if (c & 1)
			pop3_session_tls_started(f->s);
		else {
			pop3_session_disconnected(f->s);
			f->disconnected = true;
		}
		break;
	default:
		break;
	}
}

/* Result calls nobody asked for must be refused. */
static void stray_result(struct fz *f)
{
	const char *err;
	size_t consumed;
	uint8_t c = byte(f);

	switch (c % 4) {
	case 0:
		if (f->pending != POP3_ACTION_AUTH_VERIFY &&
		    pop3_session_auth_result(f->s, POP3_AUTH_OK, 1, &err) == 0)
			abort();
		break;
	case 1:
		if (f->pending != POP3_ACTION_MAILDROP_OPEN &&
		    pop3_session_maildrop_result(f->s, POP3_MAILDROP_OK, NULL, 0, &err) == 0)
			abort();
		break;
	case 2:
		if (f->pending != POP3_ACTION_MESSAGE_GET &&
		    pop3_session_message_data(f->s, "x", 1, true, &consumed, &err) == 0)
			abort();
		break;
	default:
		if (f->pending != POP3_ACTION_UPDATE &&
		    pop3_session_update_result(f->s, true, &err) == 0)
			abort();
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_settings set;
	struct fz f;

	memset(&f, 0, sizeof(f));
	f.p = data;
	f.n = size;
	for (size_t i = 0; i < 8; i++) {
		f.uidl[i][0] = 'u';
		f.uidl[i][1] = (char)('0' + i);
		f.list[i].uid = (uint32_t)(i + 1);
		f.list[i].uidl = f.uidl[i];
	}
	pop3_settings_defaults(&set);
	uint8_t flags = byte(&f);
	set.trusted = flags & 1;
	set.tls_active = flags & 2;
	set.stls_available = flags & 4;
	set.retr_sets_seen = flags & 8;
	set.implementation = (flags & 16) ? "fuzz" : NULL;
	set.max_errors = (flags >> 5) + 1;
	set.max_line = 255 + byte(&f);
	set.max_auth_line = 255 + byte(&f);
	set.max_commands = 8 + byte(&f);

	f.s = pop3_session_new(&set);
	if (f.s == NULL)
		abort();
	drive(&f);

	while (f.n > 0 && !f.ended) {
		uint8_t op = byte(&f);
		if (op < 0xc0) {
			/* Feed up to 64 client bytes; what is not taken is dropped. */
			size_t len = op % 64 + 1;
			if (len > f.n)
				len = f.n;
			size_t took = pop3_session_feed(f.s, f.p, len);
			if (took > len)
				abort();
			f.p += len;
			f.n -= len;
		} else if (op < 0xe8) {
			answer(&f);
		} else if (op < 0xf8) {
			stray_result(&f);
		} else if (op < 0xfe) {
			pop3_session_shutdown(f.s, op & 1 ? POP3_CLOSE_IDLE : POP3_CLOSE_SHUTDOWN);
		} else {
			pop3_session_disconnected(f.s);
			f.disconnected = true;
		}
		drive(&f);
	}

	/* The client goes away; answer what is still outstanding. */
	pop3_session_disconnected(f.s);
	f.disconnected = true;
	drive(&f);
	for (int guard = 0; !f.ended; guard++) {
		if (guard > 10000 || f.pending == 0)
			abort();
		const char *err;
		size_t consumed;
		switch (f.pending) {
		case POP3_ACTION_AUTH_VERIFY:
			pop3_session_auth_result(f.s, POP3_AUTH_OK, 1, &err);
			break;
		case POP3_ACTION_MAILDROP_OPEN:
			pop3_session_maildrop_result(f.s, POP3_MAILDROP_OK, f.list, 2, &err);
			f.oks++;
			break;
		case POP3_ACTION_MESSAGE_GET:
			pop3_session_message_data(f.s, "abc\r\n", 5, true, &consumed, &err);
			break;
		case POP3_ACTION_UPDATE:
			pop3_session_update_result(f.s, true, &err);
			break;
		default:
			abort();	/* START_TLS must not be waited for */
		}
		f.pending = 0;
		drive(&f);
	}
	if (f.releases != f.oks || pop3_session_holds_maildrop(f.s))
		abort();
	pop3_session_free(&f.s);
	return 0;
}
