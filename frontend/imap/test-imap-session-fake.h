/* A canned daemon for the IMAP session engine's unit test and fuzz target:
 * an in-memory account (INBOX with three messages, a few folders) that
 * answers every request at once. Header-only, static functions.
 */
#ifndef POSTERN_TEST_IMAP_SESSION_FAKE_H
#define POSTERN_TEST_IMAP_SESSION_FAKE_H

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-session.h"
#include "postern/buf.h"

#define FAKE_MAX_MSGS 8
#define FAKE_MAX_FLAGS 8

struct fake_msg {
	uint32_t uid;
	uint64_t modseq;
	const char *flags[FAKE_MAX_FLAGS];
	size_t nflags;
	const char *data;
};

struct fake {
	struct imap_session *s;
	struct pn_buf out;
	bool closed, tls_started, start_tls_seen;
	int requests;
	struct fake_msg msgs[FAKE_MAX_MSGS];
	size_t nmsgs;
	uint32_t next_uid;
	uint64_t highestmodseq;
	size_t appended_len;
	/* notifications delivered at the next POLL */
	struct imap_notify poll_notify[4];
	size_t poll_n;
	enum imap_request_type last_req;
	bool fail_next; /* answer the next request with TEMPFAIL */
};

static const char fake_msg1[] =
	"From: Alice <alice@example.com>\r\n"
	"To: bob@example.com\r\n"
	"Subject: Hello\r\n"
	"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	"Message-ID: <1@example.com>\r\n"
	"\r\n"
	"Hello world\r\n";
static const char fake_msg2[] =
	"From: Bob <bob@example.com>\r\n"
	"Subject: =?UTF-8?Q?Caf=C3=A9?=\r\n"
	"Date: Tue, 2 Jan 2024 11:00:00 +0100\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"First part\r\n"
	"--b1\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>Second</p>\r\n"
	"--b1--\r\n";
static const char fake_msg3[] =
	"From: carol@example.com\r\n"
	"Subject: Delete me\r\n"
	"\r\n"
	"Old stuff\r\n";

static void fake_reset_msgs(struct fake *f)
{
	memset(f->msgs, 0, sizeof(f->msgs));
	f->msgs[0] = (struct fake_msg){ .uid = 1, .flags = { "\\Seen" }, .nflags = 1, .data = fake_msg1 };
	f->msgs[1] = (struct fake_msg){ .uid = 2, .flags = { "\\Recent" }, .nflags = 1, .data = fake_msg2 };
	f->msgs[2] = (struct fake_msg){ .uid = 5, .flags = { "\\Deleted", "\\Flagged" }, .nflags = 2,
					.data = fake_msg3 };
	f->nmsgs = 3;
	f->next_uid = 6;
	f->highestmodseq = 100;
	for (size_t i = 0; i < f->nmsgs; i++)
		f->msgs[i].modseq = 10 * f->msgs[i].uid;
}

static struct fake_msg *fake_find(struct fake *f, uint32_t uid)
{
	for (size_t i = 0; i < f->nmsgs; i++)
		if (f->msgs[i].uid == uid)
			return &f->msgs[i];
	return NULL;
}

static void fake_flag_change(struct fake_msg *m, const char *flag, bool add)
{
	size_t i;
	for (i = 0; i < m->nflags; i++)
		if (strcasecmp(m->flags[i], flag) == 0)
			break;
	if (add && i == m->nflags && m->nflags < FAKE_MAX_FLAGS)
		m->flags[m->nflags++] = flag;
	else if (!add && i < m->nflags) {
		memmove(&m->flags[i], &m->flags[i + 1], (m->nflags - i - 1) * sizeof(char *));
		m->nflags--;
	}
}

static void fake_message_data(const struct fake_msg *m, struct imap_message_data *md)
{
	memset(md, 0, sizeof(*md));
	md->uid = m->uid;
	md->flags = m->flags;
	md->flag_count = m->nflags;
	md->internaldate = 1704103200 + (time_t)m->uid * 86400; /* 2024-01-01 10:00 UTC */
	md->internaldate_tz = 60;
	md->size = strlen(m->data);
	md->modseq = m->modseq;
	md->data = (const uint8_t *)m->data;
	md->data_len = strlen(m->data);
}

static void fake_answer(struct fake *f, const struct imap_request *req)
{
	const char *error;
	int r = 0;
	enum imap_result fail = f->fail_next ? IMAP_RESULT_TEMPFAIL : IMAP_RESULT_OK;

	f->fail_next = false;
	f->requests++;
	f->last_req = req->type;
	switch (req->type) {
	case IMAP_REQ_AUTH_VERIFY:
		r = imap_session_auth_result(f->s,
			strcmp(req->auth.user, "alice") == 0 &&
			strcmp(req->auth.password, "secret") == 0 ?
			IMAP_RESULT_OK : IMAP_RESULT_AUTH_FAILED, &error);
		break;
	case IMAP_REQ_MAILBOX_LIST: {
		static const struct imap_mailbox_info boxes[] = {
			{ .name = "INBOX", .subscribed = true },
			{ .name = "Sent", .special_use = IMAP_MBOX_SENT, .subscribed = true },
			{ .name = "Trash", .special_use = IMAP_MBOX_TRASH },
			{ .name = "Archive", .special_use = IMAP_MBOX_ARCHIVE },
			{ .name = "Archive/2024" },
			{ .name = "Archive-old" },
			{ .name = "Caf&AOk-" },
			{ .name = "Work/Projects/A" },
		};
		r = imap_session_list_result(f->s, fail, boxes, 8, &error);
		break;
	}
	case IMAP_REQ_MAILBOX_STATUS: {
		struct imap_status_result st = { .result = fail, .messages = 3, .recent = 1,
						 .uidnext = 6, .uidvalidity = 42, .unseen = 2,
						 .highestmodseq = 100 };
		if (strcmp(req->mailbox, "INBOX") != 0)
			st.result = IMAP_RESULT_NONEXISTENT;
		r = imap_session_status_result(f->s, &st, &error);
		break;
	}
	case IMAP_REQ_MAILBOX_SELECT: {
		uint32_t uids[FAKE_MAX_MSGS];
		for (size_t i = 0; i < f->nmsgs; i++)
			uids[i] = f->msgs[i].uid;
		struct imap_select_result sel = {
			.result = fail, .uids = uids, .count = f->nmsgs, .recent = 1,
			.first_unseen = 2, .uidvalidity = 42, .uidnext = f->next_uid,
			.highestmodseq = f->highestmodseq,
		};
		if (strcmp(req->mailbox, "INBOX") != 0)
			sel.result = IMAP_RESULT_NONEXISTENT;
		r = imap_session_select_result(f->s, &sel, &error);
		break;
	}
	case IMAP_REQ_MAILBOX_CREATE:
	case IMAP_REQ_MAILBOX_DELETE:
	case IMAP_REQ_MAILBOX_RENAME:
	case IMAP_REQ_MAILBOX_SUBSCRIBE:
	case IMAP_REQ_MAILBOX_UNSUBSCRIBE:
		r = imap_session_result(f->s, strcmp(req->mailbox, "Sent") == 0 &&
					req->type == IMAP_REQ_MAILBOX_CREATE ?
					IMAP_RESULT_ALREADYEXISTS : fail, &error);
		break;
	case IMAP_REQ_APPEND:
		f->appended_len = req->data_len;
		if (strcmp(req->mailbox, "INBOX") != 0 && strcmp(req->mailbox, "Sent") != 0)
			r = imap_session_append_result(f->s, IMAP_RESULT_TRYCREATE, 0, 0, &error);
		else
			r = imap_session_append_result(f->s, fail, 42, f->next_uid++, &error);
		break;
	case IMAP_REQ_MESSAGES:
		for (size_t i = 0; i < req->uid_count && r == 0; i++) {
			struct fake_msg *m = fake_find(f, req->uids[i]);
			struct imap_message_data md;
			if (m == NULL)
				continue;
			fake_message_data(m, &md);
			r = imap_session_message(f->s, &md, &error);
		}
		if (r == 0)
			r = imap_session_result(f->s, fail, &error);
		break;
	case IMAP_REQ_STORE:
		for (size_t i = 0; i < req->uid_count && r == 0; i++) {
			struct fake_msg *m = fake_find(f, req->uids[i]);
			struct imap_message_data md;
			if (m == NULL)
				continue;
			if (req->has_unchangedsince && m->modseq > req->unchangedsince) {
				r = imap_session_store_modified(f->s, m->uid, &error);
				continue;
			}
			m->modseq = ++f->highestmodseq;
			if (req->store_op == IMAP_STORE_REPLACE) {
				bool recent = false;
				for (size_t k = 0; k < m->nflags; k++)
					recent |= strcmp(m->flags[k], "\\Recent") == 0;
				m->nflags = 0;
				if (recent)
					m->flags[m->nflags++] = "\\Recent";
			}
			for (size_t k = 0; k < req->flag_count; k++) {
				/* Keep our own copies of well-known names only. */
				static const char *const known[] = {
					"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
					"\\Draft", "$Label1", "Junk",
				};
				const char *flag = NULL;
				for (size_t q = 0; q < sizeof(known) / sizeof(known[0]); q++)
					if (strcasecmp(known[q], req->flags[k]) == 0)
						flag = known[q];
				if (flag != NULL)
					fake_flag_change(m, flag, req->store_op != IMAP_STORE_REMOVE);
			}
			fake_message_data(m, &md);
			r = imap_session_message(f->s, &md, &error);
		}
		if (r == 0)
			r = imap_session_result(f->s, fail, &error);
		break;
	case IMAP_REQ_COPY: {
		uint32_t dst[FAKE_MAX_MSGS * 4];
		size_t n = req->uid_count < FAKE_MAX_MSGS * 4 ? req->uid_count : FAKE_MAX_MSGS * 4;
		for (size_t i = 0; i < n; i++)
			dst[i] = 200 + (uint32_t)i;
		if (strcmp(req->mailbox, "Trash") != 0 && strcmp(req->mailbox, "INBOX") != 0) {
			r = imap_session_copy_result(f->s, IMAP_RESULT_TRYCREATE, 0, NULL, NULL, 0, &error);
			break;
		}
		if (req->move) {
			for (size_t i = 0; i < n; i++) {
				struct fake_msg *m = fake_find(f, req->uids[i]);
				if (m != NULL) {
					size_t at = (size_t)(m - f->msgs);
					memmove(&f->msgs[at], &f->msgs[at + 1],
						(f->nmsgs - at - 1) * sizeof(*m));
					f->nmsgs--;
				}
			}
		}
		r = imap_session_copy_result(f->s, fail, 77, req->uids, dst, n, &error);
		break;
	}
	case IMAP_REQ_EXPUNGE: {
		uint32_t gone[FAKE_MAX_MSGS];
		size_t n = 0;
		for (size_t i = 0; i < f->nmsgs;) {
			struct fake_msg *m = &f->msgs[i];
			bool del = false, listed = req->uid_count == 0;
			for (size_t k = 0; k < m->nflags; k++)
				del |= strcmp(m->flags[k], "\\Deleted") == 0;
			for (size_t k = 0; k < req->uid_count; k++)
				listed |= req->uids[k] == m->uid;
			if (del && listed) {
				gone[n++] = m->uid;
				memmove(m, m + 1, (f->nmsgs - i - 1) * sizeof(*m));
				f->nmsgs--;
			} else {
				i++;
			}
		}
		r = imap_session_expunge_result(f->s, fail, gone, n, &error);
		break;
	}
	case IMAP_REQ_POLL:
		for (size_t i = 0; i < f->poll_n; i++)
			imap_session_notify(f->s, &f->poll_notify[i]);
		f->poll_n = 0;
		r = imap_session_result(f->s, fail, &error);
		break;
	}
	if (r != 0)
		abort(); /* the fake daemon never answers wrongly */
}

/* Carries out actions until the engine waits. */
static void fake_pump(struct fake *f)
{
	struct imap_action act;
	int r;

	while ((r = imap_session_next(f->s, &act)) == 1) {
		switch (act.type) {
		case IMAP_ACTION_SEND:
			pn_buf_append(&f->out, act.send.data, act.send.len);
			break;
		case IMAP_ACTION_START_TLS:
			f->start_tls_seen = true;
			break;
		case IMAP_ACTION_CLOSE:
			f->closed = true;
			break;
		case IMAP_ACTION_REQUEST:
			fake_answer(f, act.req);
			break;
		}
	}
	if (r < 0)
		f->closed = true;
}

static void fake_init(struct fake *f, const struct imap_settings *set)
{
	memset(f, 0, sizeof(*f));
	pn_buf_init(&f->out, 64u * 1024 * 1024);
	fake_reset_msgs(f);
	f->s = imap_session_new(set);
}

static void fake_free(struct fake *f)
{
	imap_session_free(&f->s);
	pn_buf_free(&f->out);
}

/* Feeds everything (pumping in between when the engine pushes back). */
static void fake_feed(struct fake *f, const void *data, size_t len)
{
	const unsigned char *p = data;
	int stuck = 0;
	while (len > 0 && !f->closed) {
		size_t n = imap_session_feed(f->s, p, len);
		p += n;
		len -= n;
		fake_pump(f);
		if (n == 0 && ++stuck > 3)
			break;
	}
	fake_pump(f);
}

#endif
