/* The core of the IMAP session engine: the action loop (feed/next), command
 * dispatch by state, the bad-command limit, the commands valid in any state
 * (CAPABILITY, NOOP, LOGOUT, ID) and before authentication (STARTTLS, LOGIN,
 * AUTHENTICATE PLAIN/LOGIN with SASL-IR), NAMESPACE, ENABLE, IDLE, CHECK,
 * mailbox-change notifications with RFC 3501 7.4.1 EXPUNGE deferral, and the
 * helpers the other files share (output, command memory, flags, sets).
 */
#include "imap-session-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/base64.h"
#include "imap-utf7.h"

/* Pending notifications kept beyond the size of the view. */
#define PENDING_SLACK 1024

#define CAPS_COMMON "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS MOVE UNSELECT " \
	"NAMESPACE ID ENABLE SPECIAL-USE CHILDREN BINARY CONDSTORE"

void imap_settings_defaults(struct imap_settings *set_r)
{
	memset(set_r, 0, sizeof(*set_r));
	set_r->hostname = "localhost";
	imap_parser_limits_default(&set_r->parser);
}

/* --- command memory ---------------------------------------------------- */

void *cmd_alloc(struct imap_session *s, size_t size)
{
	struct cmd_block *b = calloc(1, sizeof(*b) + size + 1);
	if (b == NULL)
		return NULL;
	b->next = s->blocks;
	s->blocks = b;
	return b->data;
}

char *cmd_strndup(struct imap_session *s, const char *str, size_t len)
{
	char *p = cmd_alloc(s, len + 1);
	if (p != NULL && len > 0)
		memcpy(p, str, len);
	return p;
}

static void cmd_free_blocks(struct imap_session *s)
{
	while (s->blocks != NULL) {
		struct cmd_block *b = s->blocks;
		s->blocks = b->next;
		free(b);
	}
}

/* --- output ------------------------------------------------------------ */

void out_mem(struct imap_session *s, const void *data, size_t len)
{
	if (s->disconnected || s->closed)
		return;
	if (pn_buf_append(&s->out, data, len) < 0)
		s->out_overflow = true;
}

void out_str(struct imap_session *s, const char *str)
{
	out_mem(s, str, strlen(str));
}

void out_printf(struct imap_session *s, const char *fmt, ...)
{
	char small[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		s->out_overflow = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		out_mem(s, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL) {
		s->out_overflow = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	out_mem(s, big, (size_t)n);
	free(big);
}

void out_quoted(struct imap_session *s, const char *str, size_t len)
{
	out_str(s, "\"");
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (str[i] == '"' || str[i] == '\\') {
			out_mem(s, str + start, i - start);
			out_str(s, "\\");
			start = i;
		}
	}
	out_mem(s, str + start, len - start);
	out_str(s, "\"");
}

void out_flags(struct imap_session *s, const char *const *flags, size_t n)
{
	out_str(s, "(");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			out_str(s, " ");
		out_str(s, flags[i]);
	}
	out_str(s, ")");
}

static void out_capabilities(struct imap_session *s)
{
	out_str(s, CAPS_COMMON);
	if (s->state == IMAP_STATE_NOT_AUTHENTICATED) {
		if (!s->tls_active && s->set.starttls_available)
			out_str(s, " STARTTLS");
		if (!s->tls_active && !s->set.trusted)
			out_str(s, " LOGINDISABLED");
		else
			out_str(s, " AUTH=PLAIN AUTH=LOGIN");
	}
}

const char *result_text(enum imap_result r)
{
	switch (r) {
	case IMAP_RESULT_OK: return "OK";
	case IMAP_RESULT_NONEXISTENT: return "NO [NONEXISTENT] Mailbox does not exist";
	case IMAP_RESULT_ALREADYEXISTS: return "NO [ALREADYEXISTS] Mailbox already exists";
	case IMAP_RESULT_TRYCREATE: return "NO [TRYCREATE] Mailbox does not exist";
	case IMAP_RESULT_OVERQUOTA: return "NO [OVERQUOTA] Quota exceeded";
	case IMAP_RESULT_NOPERM: return "NO [NOPERM] Permission denied";
	case IMAP_RESULT_INUSE: return "NO [INUSE] Mailbox in use, try again later";
	case IMAP_RESULT_CANNOT: return "NO [CANNOT] Operation not possible";
	case IMAP_RESULT_AUTH_FAILED: return "NO [AUTHENTICATIONFAILED] Authentication failed";
	case IMAP_RESULT_TEMPFAIL: return "NO [UNAVAILABLE] Temporary failure, try again later";
	case IMAP_RESULT_LIMIT: return "NO [LIMIT] Too many sessions for this user, try again later";
	case IMAP_RESULT_NO: break;
	}
	return "NO Operation failed";
}

/* --- the view and notifications ---------------------------------------- */

uint32_t view_seq(const struct imap_session *s, uint32_t uid)
{
	size_t lo = 0, hi = s->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->uids[mid] == uid)
			return (uint32_t)(mid + 1);
		if (s->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int size_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

void view_expunge(struct imap_session *s, const uint32_t *uids, size_t n)
{
	size_t *pos = n > 0 ? malloc(n * sizeof(size_t)) : NULL;
	size_t m = 0;

	if (pos == NULL) {
		/* One at a time: slower, same answers. */
		for (size_t i = 0; i < n; i++) {
			uint32_t seq = view_seq(s, uids[i]);
			if (seq == 0)
				continue;
			out_printf(s, "* %u EXPUNGE\r\n", seq);
			memmove(&s->uids[seq - 1], &s->uids[seq],
				(s->count - seq) * sizeof(uint32_t));
			s->count--;
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t seq = view_seq(s, uids[i]);
		if (seq != 0)
			pos[m++] = seq - 1;
	}
	if (m > 1)
		qsort(pos, m, sizeof(size_t), size_cmp);
	/* Each EXPUNGE renumbers the messages after it (RFC 3501 7.4.1):
	 * the k-th removal in ascending order is at position pos - k. */
	size_t k = 0, w = 0, removed = 0;
	for (size_t r = 0; r < s->count; r++) {
		if (k < m && pos[k] == r) {
			while (k < m && pos[k] == r)
				k++; /* duplicates */
			out_printf(s, "* %zu EXPUNGE\r\n", r - removed + 1);
			removed++;
			continue;
		}
		s->uids[w++] = s->uids[r];
	}
	s->count = w;
	free(pos);
}

static void pending_clear(struct imap_session *s)
{
	for (size_t i = 0; i < s->pend_flags_n; i++)
		free(s->pend_flags[i].flags);
	s->pend_flags_n = 0;
	s->pend_new_n = 0;
	s->pend_exp_n = 0;
	s->pend_recent = 0;
}

void view_clear(struct imap_session *s)
{
	free(s->uids);
	s->uids = NULL;
	s->count = s->cap = 0;
	free(s->mailbox);
	s->mailbox = NULL;
	s->readonly = false;
	s->nomodseq = false;
	s->recent = 0;
	pending_clear(s);
}

static int u32_push(uint32_t **arr, size_t *n, size_t *cap, uint32_t v)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		uint32_t *na = realloc(*arr, nc * sizeof(uint32_t));
		if (na == NULL)
			return -1;
		*arr = na;
		*cap = nc;
	}
	(*arr)[(*n)++] = v;
	return 0;
}

int imap_session_notify(struct imap_session *s, const struct imap_notify *n)
{
	if (s->state != IMAP_STATE_SELECTED || s->mailbox == NULL)
		return 0;
	switch (n->type) {
	case IMAP_NOTIFY_EXISTS: {
		uint32_t last = s->count ? s->uids[s->count - 1] : 0;
		if (s->pend_new_n > 0)
			last = s->pend_new[s->pend_new_n - 1];
		if (n->uid <= last)
			return 0;
		if (s->count + s->pend_new_n >= s->set.max_messages)
			return 0;
		if (u32_push(&s->pend_new, &s->pend_new_n, &s->pend_new_cap, n->uid) < 0)
			return -1;
		if (n->recent)
			s->pend_recent++;
		return 0;
	}
	case IMAP_NOTIFY_EXPUNGE: {
		/* pend_new is ascending: binary search. */
		size_t lo = 0, hi = s->pend_new_n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (s->pend_new[mid] < n->uid)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < s->pend_new_n && s->pend_new[lo] == n->uid) {
			memmove(&s->pend_new[lo], &s->pend_new[lo + 1],
				(s->pend_new_n - lo - 1) * sizeof(uint32_t));
			s->pend_new_n--;
			return 0;
		}
		/* Duplicates are harmless: view_expunge() skips them. */
		if (view_seq(s, n->uid) == 0 || s->pend_exp_n >= s->count + PENDING_SLACK)
			return 0;
		return u32_push(&s->pend_exp, &s->pend_exp_n, &s->pend_exp_cap, n->uid);
	}
	case IMAP_NOTIFY_FLAGS: {
		/* Bounded: past the cap a change is not told before the
		 * client asks (FETCH FLAGS shows the truth). */
		if (s->pend_flags_n >= 2 * s->count + PENDING_SLACK)
			return 0;
		for (size_t i = 0; i < n->flag_count; i++) {
			const char *f = n->flags[i];
			if (f == NULL || *f == '\0' || strpbrk(f, " ()\r\n\"{") != NULL)
				return 0; /* not a flag: never sent */
		}
		struct pn_buf b;
		pn_buf_init(&b, 64 * 1024);
		int r = pn_buf_append_str(&b, "(");
		for (size_t i = 0; i < n->flag_count && r == 0; i++)
			r = pn_buf_printf(&b, "%s%s", i ? " " : "", n->flags[i]);
		if (r == 0)
			r = pn_buf_append(&b, ")", 2); /* with the NUL */
		if (r < 0) {
			pn_buf_free(&b);
			return -1;
		}
		char *str = (char *)b.data; /* owned now */
		/* A message changed again right away replaces its entry; other
		 * repeats are sent in order, the last one wins at the client.
		 * (No search: a mass change must not cost O(n^2).) */
		if (s->pend_flags_n > 0 && s->pend_flags[s->pend_flags_n - 1].uid == n->uid) {
			free(s->pend_flags[s->pend_flags_n - 1].flags);
			s->pend_flags[s->pend_flags_n - 1].flags = str;
			s->pend_flags[s->pend_flags_n - 1].modseq = n->modseq;
			return 0;
		}
		if (s->pend_flags_n == s->pend_flags_cap) {
			size_t nc = s->pend_flags_cap ? s->pend_flags_cap * 2 : 8;
			struct pending_flags *na = realloc(s->pend_flags, nc * sizeof(*na));
			if (na == NULL) {
				free(str);
				return -1;
			}
			s->pend_flags = na;
			s->pend_flags_cap = nc;
		}
		s->pend_flags[s->pend_flags_n].uid = n->uid;
		s->pend_flags[s->pend_flags_n].modseq = n->modseq;
		s->pend_flags[s->pend_flags_n].flags = str;
		s->pend_flags_n++;
		return 0;
	}
	}
	return 0;
}

/* Sends what is pending: EXPUNGEs only when allowed (RFC 3501 7.4.1), then
 * EXISTS for new messages, then flag changes of messages the client knows. */
static void flush_notifications(struct imap_session *s, bool allow_expunge)
{
	if (s->state != IMAP_STATE_SELECTED)
		return;
	if (allow_expunge && s->pend_exp_n > 0) {
		view_expunge(s, s->pend_exp, s->pend_exp_n);
		s->pend_exp_n = 0;
	}
	if (s->pend_new_n > 0) {
		for (size_t i = 0; i < s->pend_new_n; i++) {
			if (u32_push(&s->uids, &s->count, &s->cap, s->pend_new[i]) < 0) {
				s->out_overflow = true;
				break;
			}
		}
		s->pend_new_n = 0;
		out_printf(s, "* %zu EXISTS\r\n", s->count);
		/* RFC 3501 7.3.2: RECENT goes with a change of size. */
		s->recent += s->pend_recent;
		s->pend_recent = 0;
		out_printf(s, "* %u RECENT\r\n", s->recent);
	}
	for (size_t i = 0; i < s->pend_flags_n; i++) {
		uint32_t seq = view_seq(s, s->pend_flags[i].uid);
		if (seq != 0 && s->condstore && s->pend_flags[i].modseq > 0)
			out_printf(s, "* %u FETCH (UID %u MODSEQ (%llu) FLAGS %s)\r\n", seq,
				   s->pend_flags[i].uid,
				   (unsigned long long)s->pend_flags[i].modseq,
				   s->pend_flags[i].flags);
		else if (seq != 0)
			out_printf(s, "* %u FETCH (UID %u FLAGS %s)\r\n", seq,
				   s->pend_flags[i].uid, s->pend_flags[i].flags);
		free(s->pend_flags[i].flags);
	}
	s->pend_flags_n = 0;
}

/* --- commands: completion and requests --------------------------------- */

static void cmd_end(struct imap_session *s)
{
	fetch_free(s);
	search_free(s);
	s->cmd = CMD_NONE;
	s->req_state = REQ_NONE;
	s->step = 0;
	s->uid_cmd = false;
	s->tag = NULL;
	memset(&s->req, 0, sizeof(s->req));
	s->list_patterns = NULL;
	s->list_pattern_n = 0;
	s->list_subscribed_only = s->list_return_subscribed = false;
	s->list_special_only = false;
	s->modified_n = 0;
	s->fetch_changedsince_set = false;
	s->search_modseq = false;
	s->search_max_modseq = 0;
	s->status_n = 0;
	cmd_free_blocks(s);
}

static void too_many_bad(struct imap_session *s)
{
	out_str(s, "* BYE Too many invalid commands.\r\n");
	s->close_pending = true;
	s->close_reason = "too many invalid commands";
}

void cmd_done(struct imap_session *s, const char *status, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);

	bool allow_expunge = !((s->cmd == CMD_FETCH || s->cmd == CMD_STORE ||
				s->cmd == CMD_SEARCH) && !s->uid_cmd);
	bool bad = strcmp(status, "BAD") == 0;
	if (!bad)
		flush_notifications(s, allow_expunge);
	const char *t = text != NULL ? text : "";
	out_printf(s, "%s %s%s%s\r\n", s->tag != NULL ? s->tag : "*", status,
		   t[0] != '\0' ? " " : "", t);
	free(text);
	if (bad) {
		if (++s->bad_count >= s->set.max_bad)
			too_many_bad(s);
	} else {
		s->bad_count = 0;
	}
	cmd_end(s);
}

void cmd_request(struct imap_session *s, enum imap_request_type type)
{
	s->req.type = type;
	s->req_state = REQ_READY;
}

/* --- shared argument helpers ------------------------------------------- */

bool is_atom_safe(const char *str, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

static bool flag_valid(const char *f, size_t len)
{
	static const char *const system[] = {
		"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft",
	};
	if (len == 0)
		return false;
	if (f[0] == '\\') {
		for (size_t i = 0; i < sizeof(system) / sizeof(system[0]); i++)
			if (strlen(system[i]) == len && strncasecmp(f, system[i], len) == 0)
				return true;
		return false;
	}
	/* flag-keyword = atom */
	return is_atom_safe(f, len) && memchr(f, '\\', len) == NULL;
}

int parse_flags(struct imap_session *s, const struct imap_arg *arg,
		const char *const **flags_r, size_t *count_r, bool allow_list_only)
{
	const struct imap_arg *items = arg;
	size_t n = 1;

	if (arg->type == IMAP_ARG_LIST) {
		items = arg->list;
		n = arg->list_count;
	} else if (allow_list_only) {
		cmd_done(s, "BAD", "Expected a flag list");
		return -1;
	}
	const char **flags = cmd_alloc(s, (n + 1) * sizeof(char *));
	if (flags == NULL) {
		cmd_done(s, "NO", "[SERVERBUG] Out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (items[i].type != IMAP_ARG_ATOM || !flag_valid(items[i].str, items[i].len)) {
			cmd_done(s, "BAD", "Invalid flag");
			return -1;
		}
		/* Copied: APPEND keeps them across streamed literal data. */
		char *c = cmd_strndup(s, items[i].str, items[i].len);
		if (c == NULL) {
			cmd_done(s, "NO", "[SERVERBUG] Out of memory");
			return -1;
		}
		if (c[0] == '\\') {
			/* System flags in canonical case. */
			c[1] = (char)(c[1] & ~0x20);
			for (size_t k = 2; c[k]; k++)
				if (c[k] >= 'A' && c[k] <= 'Z')
					c[k] = (char)(c[k] | 0x20);
		}
		flags[i] = c;
	}
	*flags_r = flags;
	*count_r = n;
	return 0;
}

int resolve_set(struct imap_session *s, const struct imap_arg *arg, bool uid,
		uint32_t **uids_r, size_t *count_r)
{
	struct imap_seqset set;
	const char *error;

	if (arg->type != IMAP_ARG_ATOM) {
		cmd_done(s, "BAD", "Expected a sequence set");
		return -1;
	}
	if (imap_seqset_parse(arg->str, arg->len, 10000, &set, &error) < 0) {
		cmd_done(s, "BAD", "%s", error);
		return -1;
	}
	if (set.last_result) {
		imap_seqset_free(&set);
		cmd_done(s, "BAD", "Search result variable $ not supported");
		return -1;
	}
	if (!uid) {
		for (size_t i = 0; i < set.count; i++) {
			if (set.ranges[i].first > s->count || set.ranges[i].last > s->count) {
				imap_seqset_free(&set);
				cmd_done(s, "BAD", "Message sequence number out of range");
				return -1;
			}
		}
	}
	uint32_t star = uid ? (s->count ? s->uids[s->count - 1] : 0) : (uint32_t)s->count;
	imap_seqset_normalize(&set, star);
	uint32_t *uids = cmd_alloc(s, (s->count + 1) * sizeof(uint32_t));
	if (uids == NULL) {
		imap_seqset_free(&set);
		cmd_done(s, "NO", "[SERVERBUG] Out of memory");
		return -1;
	}
	size_t n = 0;
	for (size_t i = 0; i < s->count; i++)
		if (imap_seqset_contains(&set, uid ? s->uids[i] : (uint32_t)(i + 1)))
			uids[n++] = s->uids[i];
	imap_seqset_free(&set);
	*uids_r = uids;
	*count_r = n;
	return 0;
}

/* --- any state ---------------------------------------------------------- */

static void cmd_capability(struct imap_session *s)
{
	out_str(s, "* CAPABILITY ");
	out_capabilities(s);
	out_str(s, "\r\n");
	cmd_done(s, "OK", "CAPABILITY completed");
}

static void cmd_logout(struct imap_session *s)
{
	/* Pending mailbox changes are not worth telling now. */
	s->state = IMAP_STATE_LOGOUT;
	out_str(s, "* BYE Logging out\r\n");
	cmd_done(s, "OK", "LOGOUT completed");
	s->close_pending = true;
	s->close_reason = "logout";
}

/* RFC 2971: id ::= "ID" SPACE id_params_list;
 * id_params_list ::= "(" #(string SPACE nstring) ")" / nil */
static void cmd_id(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n != 1 || (args[0].type != IMAP_ARG_NIL && args[0].type != IMAP_ARG_LIST) ||
	    (args[0].type == IMAP_ARG_LIST &&
	     (args[0].list_count % 2 != 0 || args[0].list_count > 60))) {
		cmd_done(s, "BAD", "Expected ID NIL or a list of field/value pairs");
		return;
	}
	out_str(s, "* ID (\"name\" \"Postern\" \"vendor\" \"Postern\")\r\n");
	cmd_done(s, "OK", "ID completed");
}

/* --- not authenticated ------------------------------------------------- */

static bool plaintext_refused(struct imap_session *s)
{
	if (s->tls_active || s->set.trusted)
		return false;
	cmd_done(s, "NO", "[PRIVACYREQUIRED] Plaintext authentication disallowed without TLS");
	return true;
}

static void cmd_starttls(struct imap_session *s)
{
	if (s->tls_active) {
		cmd_done(s, "BAD", "TLS is already active");
		return;
	}
	if (!s->set.starttls_available) {
		cmd_done(s, "BAD", "STARTTLS is not available");
		return;
	}
	cmd_done(s, "OK", "Begin TLS negotiation now");
	/* RFC 3501 6.2.1: nothing sent after the command before the handshake
	 * may be taken as a command (STARTTLS command injection). */
	imap_parser_discard_input(s->parser);
	s->tls_pending = true;
}

static void auth_wipe(struct imap_session *s)
{
	explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
	explicit_bzero(s->auth_user, sizeof(s->auth_user));
	explicit_bzero(s->auth_authzid, sizeof(s->auth_authzid));
	s->auth_step = AUTH_NONE;
}

static void auth_request(struct imap_session *s, enum imap_auth_mech mech)
{
	s->req.auth.mech = mech;
	s->req.auth.user = s->auth_user;
	s->req.auth.password = s->auth_pass;
	s->req.auth.authzid = s->auth_authzid;
	s->auth_step = AUTH_NONE;
	cmd_request(s, IMAP_REQ_AUTH_VERIFY);
}

static bool copy_cred(char *dst, size_t dst_size, const char *src, size_t len)
{
	if (len >= dst_size || memchr(src, '\0', len) != NULL)
		return false;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return true;
}

/* RFC 3501 9: login = "LOGIN" SP userid SP password; userid = astring;
 * password = astring */
static void cmd_login(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	const char *user, *pass;
	size_t ulen, plen;

	if (n != 2 || !imap_arg_get_astring(&args[0], &user, &ulen) ||
	    !imap_arg_get_astring(&args[1], &pass, &plen)) {
		cmd_done(s, "BAD", "Expected LOGIN user password");
		return;
	}
	if (plaintext_refused(s))
		return;
	if (!copy_cred(s->auth_user, sizeof(s->auth_user), user, ulen) ||
	    !copy_cred(s->auth_pass, sizeof(s->auth_pass), pass, plen) || ulen == 0) {
		auth_wipe(s);
		cmd_done(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	s->auth_authzid[0] = '\0';
	s->cmd = CMD_LOGIN;
	auth_request(s, IMAP_AUTH_LOGIN_CMD);
}

/* RFC 4616: message = [authzid] UTF8NUL authcid UTF8NUL passwd */
static void auth_plain_response(struct imap_session *s, const char *b64, size_t len)
{
	unsigned char dec[IMAP_MAX_USER_LEN * 2 + IMAP_MAX_PASSWORD_LEN + 3];
	size_t dlen;
	const char *error;

	if (pn_base64_decode(b64, len, dec, sizeof(dec), 0, &dlen, &error) < 0) {
		auth_wipe(s);
		cmd_done(s, "BAD", "Invalid base64 in SASL response");
		return;
	}
	const unsigned char *z1 = memchr(dec, '\0', dlen);
	const unsigned char *z2 = z1 ? memchr(z1 + 1, '\0', dlen - (size_t)(z1 + 1 - dec)) : NULL;
	bool ok = z2 != NULL &&
		copy_cred(s->auth_authzid, sizeof(s->auth_authzid), (const char *)dec,
			  (size_t)(z1 - dec)) &&
		copy_cred(s->auth_user, sizeof(s->auth_user), (const char *)z1 + 1,
			  (size_t)(z2 - z1 - 1)) &&
		copy_cred(s->auth_pass, sizeof(s->auth_pass), (const char *)z2 + 1,
			  dlen - (size_t)(z2 + 1 - dec)) &&
		s->auth_user[0] != '\0';
	explicit_bzero(dec, sizeof(dec));
	if (!ok) {
		auth_wipe(s);
		cmd_done(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	auth_request(s, IMAP_AUTH_PLAIN);
}

/* Decodes one AUTH=LOGIN step into dst. */
static bool auth_login_step(struct imap_session *s, const char *b64, size_t len,
			    char *dst, size_t dst_size)
{
	unsigned char dec[IMAP_MAX_PASSWORD_LEN + 1];
	size_t dlen;
	const char *error;

	if (pn_base64_decode(b64, len, dec, sizeof(dec), 0, &dlen, &error) < 0) {
		auth_wipe(s);
		cmd_done(s, "BAD", "Invalid base64 in SASL response");
		return false;
	}
	bool ok = copy_cred(dst, dst_size, (const char *)dec, dlen);
	explicit_bzero(dec, sizeof(dec));
	if (!ok) {
		auth_wipe(s);
		cmd_done(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
	}
	return ok;
}

static void auth_continue(struct imap_session *s, const char *prompt)
{
	out_printf(s, "+ %s\r\n", prompt);
	if (imap_parser_read_line(s->parser) < 0) {
		auth_wipe(s);
		cmd_done(s, "BAD", "Internal parser state error");
	}
}

static void auth_login_user(struct imap_session *s, const char *b64, size_t len)
{
	if (!auth_login_step(s, b64, len, s->auth_user, sizeof(s->auth_user)))
		return;
	if (s->auth_user[0] == '\0') {
		auth_wipe(s);
		cmd_done(s, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	s->auth_step = AUTH_LOGIN_PASS;
	auth_continue(s, "UGFzc3dvcmQ6");
}

/* RFC 3501 6.2.2, RFC 4959:
 * authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")] */
static void cmd_authenticate(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	const char *mech;

	if (n < 1 || n > 2 || !imap_arg_get_atom(&args[0], &mech) ||
	    (n == 2 && args[1].type != IMAP_ARG_ATOM)) {
		cmd_done(s, "BAD", "Expected AUTHENTICATE mechanism [initial-response]");
		return;
	}
	bool plain = strcasecmp(mech, "PLAIN") == 0;
	if (!plain && strcasecmp(mech, "LOGIN") != 0) {
		cmd_done(s, "NO", "Unsupported authentication mechanism");
		return;
	}
	if (plaintext_refused(s))
		return;
	s->cmd = CMD_AUTHENTICATE;
	s->auth_authzid[0] = '\0';
	const char *ir = n == 2 ? args[1].str : NULL;
	size_t irlen = n == 2 ? args[1].len : 0;
	if (ir != NULL && irlen == 1 && ir[0] == '=')
		irlen = 0;
	if (plain) {
		if (ir != NULL) {
			auth_plain_response(s, ir, irlen);
			return;
		}
		s->auth_step = AUTH_PLAIN_WAIT;
		auth_continue(s, "");
		return;
	}
	if (ir != NULL) {
		auth_login_user(s, ir, irlen);
		return;
	}
	s->auth_step = AUTH_LOGIN_USER;
	auth_continue(s, "VXNlcm5hbWU6");
}

static void auth_line(struct imap_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		auth_wipe(s);
		cmd_done(s, "BAD", "Authentication cancelled");
		return;
	}
	switch (s->auth_step) {
	case AUTH_PLAIN_WAIT:
		auth_plain_response(s, line, len);
		break;
	case AUTH_LOGIN_USER:
		auth_login_user(s, line, len);
		break;
	case AUTH_LOGIN_PASS:
		if (auth_login_step(s, line, len, s->auth_pass, sizeof(s->auth_pass)))
			auth_request(s, IMAP_AUTH_LOGIN);
		break;
	case AUTH_NONE:
		break;
	}
}

int imap_session_auth_result(struct imap_session *s, enum imap_result result,
			     const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_AUTH_VERIFY) {
		*error_r = "no AUTH_VERIFY request outstanding";
		return -1;
	}
	auth_wipe(s);
	if (result == IMAP_RESULT_OK) {
		s->state = IMAP_STATE_AUTHENTICATED;
		char caps[512];
		/* The capabilities change with the state (RFC 3501 7.2.1). */
		snprintf(caps, sizeof(caps), "%s", CAPS_COMMON);
		cmd_done(s, "OK", "[CAPABILITY %s] Logged in", caps);
		return 0;
	}
	const char *text = result == IMAP_RESULT_TEMPFAIL || result == IMAP_RESULT_LIMIT
		? result_text(result) : result_text(IMAP_RESULT_AUTH_FAILED);
	/* A failed authentication counts toward the error limit. */
	unsigned int bad = s->bad_count;
	cmd_done(s, "NO", "%s", text + 3);
	s->bad_count = bad + 1;
	if (s->bad_count >= s->set.max_bad)
		too_many_bad(s);
	return 0;
}

/* --- authenticated ------------------------------------------------------ */

/* RFC 2177: idle = "IDLE" CRLF "DONE" */
static void cmd_idle(struct imap_session *s)
{
	out_str(s, "+ idling\r\n");
	if (imap_parser_read_line(s->parser) < 0) {
		cmd_done(s, "BAD", "Internal parser state error");
		return;
	}
	s->idling = true;
	flush_notifications(s, true);
}

static void idle_line(struct imap_session *s, const char *line, size_t len)
{
	s->idling = false;
	if (imap_line_is_done(line, len))
		cmd_done(s, "OK", "IDLE terminated");
	else
		cmd_done(s, "BAD", "Expected DONE to end IDLE");
}

/* RFC 5161: command-any =/ "ENABLE" 1*(SP capability) */
static void cmd_enable(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n == 0) {
		cmd_done(s, "BAD", "Expected ENABLE capability...");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (args[i].type != IMAP_ARG_ATOM) {
			cmd_done(s, "BAD", "Expected capability names");
			return;
		}
	}
	/* CONDSTORE is the one extension we offer that can be enabled;
	 * ENABLED lists what this command turned on (RFC 5161 3.1). */
	bool now = false;
	for (size_t i = 0; i < n; i++)
		if (imap_arg_atom_equals(&args[i], "CONDSTORE") && !s->condstore)
			now = s->condstore = true;
	out_str(s, now ? "* ENABLED CONDSTORE\r\n" : "* ENABLED\r\n");
	cmd_done(s, "OK", "ENABLE completed");
}

static void cmd_poll(struct imap_session *s, const char *name)
{
	if (s->state == IMAP_STATE_SELECTED) {
		s->cmd = CMD_POLL;
		cmd_request(s, IMAP_REQ_POLL);
		return;
	}
	cmd_done(s, "OK", "%s completed", name);
}

/* After the session's own successful DELETE or RENAME: DELETE of the
 * selected mailbox closes it without EXPUNGEs (as Dovecot does; the client
 * chose to delete it), RENAME of it or of a superior makes the view follow
 * the new name (the mailbox and its UIDs are the same). RENAME of INBOX
 * leaves INBOX (emptied: the daemon reports the EXPUNGEs) and its
 * inferiors where they are. */
static void selected_renamed(struct imap_session *s)
{
	const char *old = s->req.mailbox;
	size_t len = strlen(old);

	if (s->state != IMAP_STATE_SELECTED || s->mailbox == NULL ||
	    strncmp(s->mailbox, old, len) != 0 ||
	    (s->mailbox[len] != '\0' && s->mailbox[len] != '/'))
		return;
	if (s->req.type == IMAP_REQ_MAILBOX_DELETE) {
		if (s->mailbox[len] == '\0') {
			view_clear(s);
			s->state = IMAP_STATE_AUTHENTICATED;
		}
		return;
	}
	if (strcmp(old, "INBOX") == 0)
		return;
	size_t tail = strlen(s->mailbox + len), nlen = strlen(s->req.new_name);
	char *name = malloc(nlen + tail + 1);
	if (name == NULL)
		return; /* only imap_session_mailbox() shows the old name */
	memcpy(name, s->req.new_name, nlen);
	memcpy(name + nlen, s->mailbox + len, tail + 1);
	free(s->mailbox);
	s->mailbox = name;
}

int imap_session_result(struct imap_session *s, enum imap_result result,
			const char **error_r)
{
	if (s->req_state != REQ_WAIT) {
		*error_r = "no request outstanding";
		return -1;
	}
	switch (s->req.type) {
	case IMAP_REQ_MAILBOX_CREATE:
	case IMAP_REQ_MAILBOX_DELETE:
	case IMAP_REQ_MAILBOX_RENAME:
	case IMAP_REQ_MAILBOX_SUBSCRIBE:
	case IMAP_REQ_MAILBOX_UNSUBSCRIBE:
		if (result == IMAP_RESULT_OK) {
			static const char *const names[] = {
				[IMAP_REQ_MAILBOX_CREATE] = "CREATE",
				[IMAP_REQ_MAILBOX_DELETE] = "DELETE",
				[IMAP_REQ_MAILBOX_RENAME] = "RENAME",
				[IMAP_REQ_MAILBOX_SUBSCRIBE] = "SUBSCRIBE",
				[IMAP_REQ_MAILBOX_UNSUBSCRIBE] = "UNSUBSCRIBE",
			};
			if (s->req.type == IMAP_REQ_MAILBOX_DELETE ||
			    s->req.type == IMAP_REQ_MAILBOX_RENAME)
				selected_renamed(s);
			cmd_done(s, "OK", "%s completed", names[s->req.type]);
		} else {
			cmd_done(s, "NO", "%s", result_text(result) + 3);
		}
		return 0;
	case IMAP_REQ_POLL:
		if (result == IMAP_RESULT_OK)
			cmd_done(s, "OK", "%s completed", s->step == 1 ? "CHECK" : "NOOP");
		else
			cmd_done(s, "NO", "%s", result_text(result) + 3);
		return 0;
	case IMAP_REQ_MESSAGES:
		if (s->cmd == CMD_SEARCH) {
			if (result == IMAP_RESULT_OK)
				search_finish(s);
			else
				cmd_done(s, "NO", "%s", result_text(result) + 3);
			return 0;
		}
		if (result == IMAP_RESULT_OK && s->step == 2)
			cmd_done(s, "NO", "[UNKNOWN-CTE] Cannot decode a part's transfer encoding");
		else if (result == IMAP_RESULT_OK)
			cmd_done(s, "OK", "%sFETCH completed", s->uid_cmd ? "UID " : "");
		else
			cmd_done(s, "NO", "%s", result_text(result) + 3);
		return 0;
	case IMAP_REQ_STORE:
		if (s->cmd == CMD_FETCH) {
			/* \Seen set; now fetch (a failure does not stop it). */
			s->req.store_op = IMAP_STORE_ADD;
			s->req.flags = NULL;
			s->req.flag_count = 0;
			s->req.need = s->fetch_need;
			cmd_request(s, IMAP_REQ_MESSAGES);
			return 0;
		}
		if (result == IMAP_RESULT_OK && s->modified_n > 0) {
			/* RFC 7162 3.1.3: [MODIFIED set] names what was not
			 * changed, in the numbers the command used. */
			struct pn_buf set;
			pn_buf_init(&set, 16u * 1024 * 1024);
			size_t m = 0;
			for (size_t i = 0; i < s->modified_n; i++) {
				uint32_t v = s->uid_cmd ? s->modified[i] : view_seq(s, s->modified[i]);
				if (v != 0)
					s->modified[m++] = v;
			}
			qsort(s->modified, m, sizeof(uint32_t), u32_cmp);
			uidset_str(s->modified, m, &set);
			pn_buf_append(&set, "", 1);
			cmd_done(s, "OK", "[MODIFIED %s] Conditional %sSTORE failed",
				 (const char *)pn_buf_rptr(&set), s->uid_cmd ? "UID " : "");
			pn_buf_free(&set);
		} else if (result == IMAP_RESULT_OK)
			cmd_done(s, "OK", "%sSTORE completed", s->uid_cmd ? "UID " : "");
		else
			cmd_done(s, "NO", "%s", result_text(result) + 3);
		return 0;
	default:
		*error_r = "this request needs its own result call";
		return -1;
	}
}

int imap_session_store_modified(struct imap_session *s, uint32_t uid,
				const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_STORE ||
	    !s->req.has_unchangedsince) {
		*error_r = "no conditional STORE request outstanding";
		return -1;
	}
	if (u32_push(&s->modified, &s->modified_n, &s->modified_cap, uid) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

bool condstore_enable(struct imap_session *s)
{
	if (s->state == IMAP_STATE_SELECTED && s->nomodseq) {
		cmd_done(s, "BAD", "This mailbox has no mod-sequences (NOMODSEQ)");
		return false;
	}
	s->condstore = true;
	return true;
}

/* --- dispatch ------------------------------------------------------------ */

enum cmd_state_mask {
	ANY = 7, NOAUTH = 1, AUTH = 2 | 4, SEL = 4,
};

static unsigned state_bit(enum imap_state st)
{
	switch (st) {
	case IMAP_STATE_NOT_AUTHENTICATED: return 1;
	case IMAP_STATE_AUTHENTICATED: return 2;
	case IMAP_STATE_SELECTED: return 4;
	case IMAP_STATE_LOGOUT: break;
	}
	return 0;
}

static const struct {
	const char *name;
	unsigned int states;
} commands[] = {
	{ "CAPABILITY", ANY }, { "NOOP", ANY }, { "LOGOUT", ANY }, { "ID", ANY },
	{ "STARTTLS", NOAUTH }, { "LOGIN", NOAUTH }, { "AUTHENTICATE", NOAUTH },
	{ "SELECT", AUTH }, { "EXAMINE", AUTH }, { "CREATE", AUTH },
	{ "DELETE", AUTH }, { "RENAME", AUTH }, { "SUBSCRIBE", AUTH },
	{ "UNSUBSCRIBE", AUTH }, { "LIST", AUTH }, { "LSUB", AUTH },
	{ "STATUS", AUTH }, { "APPEND", AUTH }, { "IDLE", AUTH },
	{ "NAMESPACE", AUTH }, { "ENABLE", 2 }, /* RFC 5161: not when selected */
	{ "CHECK", SEL }, { "CLOSE", SEL }, { "UNSELECT", SEL }, { "EXPUNGE", SEL },
	{ "SEARCH", SEL }, { "FETCH", SEL }, { "STORE", SEL }, { "COPY", SEL },
	{ "MOVE", SEL }, { "UID", SEL },
};

static void dispatch_command(struct imap_session *s, const struct imap_event *ev)
{
	const char *name = ev->name;
	const struct imap_arg *args = ev->cmd.args;
	size_t n = ev->cmd.count;
	size_t i;

	s->cmd = CMD_OTHER;
	s->tag = cmd_strndup(s, ev->tag, strlen(ev->tag));
	if (s->tag == NULL) {
		s->close_pending = true;
		s->close_reason = "out of memory";
		return;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			break;
	if (i == sizeof(commands) / sizeof(commands[0])) {
		cmd_done(s, "BAD", "Unknown command %.40s", name);
		return;
	}
	if ((commands[i].states & state_bit(s->state)) == 0) {
		if (s->state == IMAP_STATE_NOT_AUTHENTICATED)
			cmd_done(s, "BAD", "%s needs authentication first", name);
		else if (commands[i].states == NOAUTH)
			cmd_done(s, "BAD", "Already authenticated");
		else if (commands[i].states == 2)
			cmd_done(s, "BAD", "%s is not allowed with a mailbox selected", name);
		else
			cmd_done(s, "BAD", "%s needs a selected mailbox", name);
		return;
	}
	if (ev->cmd.literal_follows && strcmp(name, "APPEND") != 0) {
		cmd_done(s, "BAD", "Unexpected streamed literal");
		return;
	}
	bool no_args = n == 0;
	if (strcmp(name, "CAPABILITY") == 0 && no_args)
		cmd_capability(s);
	else if (strcmp(name, "NOOP") == 0 && no_args)
		cmd_poll(s, "NOOP");
	else if (strcmp(name, "CHECK") == 0 && no_args) {
		s->step = 1;
		cmd_poll(s, "CHECK");
	} else if (strcmp(name, "LOGOUT") == 0 && no_args)
		cmd_logout(s);
	else if (strcmp(name, "ID") == 0)
		cmd_id(s, args, n);
	else if (strcmp(name, "STARTTLS") == 0 && no_args)
		cmd_starttls(s);
	else if (strcmp(name, "LOGIN") == 0)
		cmd_login(s, args, n);
	else if (strcmp(name, "AUTHENTICATE") == 0)
		cmd_authenticate(s, args, n);
	else if (strcmp(name, "SELECT") == 0 || strcmp(name, "EXAMINE") == 0)
		cmd_select(s, args, name[0] == 'E');
	else if (strcmp(name, "CREATE") == 0)
		cmd_mailbox_op(s, CMD_CREATE, args);
	else if (strcmp(name, "DELETE") == 0)
		cmd_mailbox_op(s, CMD_DELETE, args);
	else if (strcmp(name, "RENAME") == 0)
		cmd_mailbox_op(s, CMD_RENAME, args);
	else if (strcmp(name, "SUBSCRIBE") == 0)
		cmd_mailbox_op(s, CMD_SUBSCRIBE, args);
	else if (strcmp(name, "UNSUBSCRIBE") == 0)
		cmd_mailbox_op(s, CMD_UNSUBSCRIBE, args);
	else if (strcmp(name, "LIST") == 0 || strcmp(name, "LSUB") == 0)
		cmd_list(s, args, name[1] == 'S');
	else if (strcmp(name, "STATUS") == 0)
		cmd_status(s, args);
	else if (strcmp(name, "APPEND") == 0)
		cmd_append(s, ev);
	else if (strcmp(name, "IDLE") == 0 && no_args)
		cmd_idle(s);
	else if (strcmp(name, "NAMESPACE") == 0 && no_args) {
		out_str(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
		cmd_done(s, "OK", "NAMESPACE completed");
	} else if (strcmp(name, "ENABLE") == 0)
		cmd_enable(s, args, n);
	else if (strcmp(name, "CLOSE") == 0 && no_args)
		cmd_close(s, true);
	else if (strcmp(name, "UNSELECT") == 0 && no_args)
		cmd_close(s, false);
	else if (strcmp(name, "EXPUNGE") == 0 && no_args)
		cmd_expunge(s, NULL);
	else if (strcmp(name, "SEARCH") == 0)
		cmd_search(s, args);
	else if (strcmp(name, "FETCH") == 0)
		cmd_fetch(s, args);
	else if (strcmp(name, "STORE") == 0)
		cmd_store(s, args);
	else if (strcmp(name, "COPY") == 0 || strcmp(name, "MOVE") == 0)
		cmd_copy(s, args, name[0] == 'M');
	else if (strcmp(name, "UID") == 0) {
		const char *sub;
		if (n < 1 || !imap_arg_get_atom(&args[0], &sub)) {
			cmd_done(s, "BAD", "Expected UID FETCH/SEARCH/STORE/COPY/MOVE/EXPUNGE");
			return;
		}
		s->uid_cmd = true;
		if (strcasecmp(sub, "FETCH") == 0)
			cmd_fetch(s, args + 1);
		else if (strcasecmp(sub, "SEARCH") == 0)
			cmd_search(s, args + 1);
		else if (strcasecmp(sub, "STORE") == 0)
			cmd_store(s, args + 1);
		else if (strcasecmp(sub, "COPY") == 0)
			cmd_copy(s, args + 1, false);
		else if (strcasecmp(sub, "MOVE") == 0)
			cmd_copy(s, args + 1, true);
		else if (strcasecmp(sub, "EXPUNGE") == 0 && n == 2)
			cmd_expunge(s, &args[1]);
		else
			cmd_done(s, "BAD", "Unknown or malformed UID command");
	} else
		cmd_done(s, "BAD", "Unexpected arguments to %s", name);
}

static void dispatch(struct imap_session *s, const struct imap_event *ev)
{
	dispatch_command(s, ev);
	/* A streamed APPEND literal that is not wanted is skipped. */
	if (ev->cmd.literal_follows && !s->appending)
		imap_parser_abort_command(s->parser);
}

/* A "+" continuation for a synchronizing literal, or a refusal. */
static void literal_continue(struct imap_session *s, const struct imap_event *ev)
{
	const char *name = ev->name != NULL ? ev->name : "";
	const char *tag = ev->tag != NULL ? ev->tag : "*";
	const char *refuse = NULL;

	if (s->state == IMAP_STATE_NOT_AUTHENTICATED) {
		if (strcmp(name, "LOGIN") != 0 && strcmp(name, "AUTHENTICATE") != 0)
			refuse = "BAD Literals are not allowed before authentication";
		else if (!s->tls_active && !s->set.trusted)
			refuse = "NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS";
		else if (ev->cont.size > IMAP_PREAUTH_MAX_LITERAL)
			refuse = "NO [TOOBIG] Literal too large";
	} else if (strcmp(name, "APPEND") == 0 && ev->cont.size > s->set.max_append) {
		refuse = "NO [TOOBIG] Message too large";
	}
	if (refuse != NULL) {
		out_printf(s, "%s %s\r\n", tag, refuse);
		imap_parser_abort_command(s->parser);
		if (refuse[0] == 'B' && ++s->bad_count >= s->set.max_bad)
			too_many_bad(s);
		s->appending = false;
		pn_buf_free(&s->append_buf);
		if (s->cmd != CMD_NONE)
			cmd_end(s);
		return;
	}
	out_str(s, "+ OK\r\n");
}

static void parse_error(struct imap_session *s, const struct imap_event *ev)
{
	if (ev->error.fatal) {
		out_printf(s, "* BYE %s\r\n", ev->error.msg);
		s->close_pending = true;
		s->close_reason = "protocol error";
		return;
	}
	if (s->idling || s->auth_step != AUTH_NONE) {
		s->idling = false;
		auth_wipe(s);
		cmd_done(s, "BAD", "%s", ev->error.msg);
		return;
	}
	if (s->appending) {
		s->appending = false;
		pn_buf_free(&s->append_buf);
	}
	if (s->cmd != CMD_NONE)
		cmd_end(s);
	out_printf(s, "%s %s %s\r\n", ev->tag != NULL ? ev->tag : "*",
		   ev->error.status, ev->error.msg);
	if (++s->bad_count >= s->set.max_bad)
		too_many_bad(s);
}

static void handle_event(struct imap_session *s, const struct imap_event *ev)
{
	switch (ev->type) {
	case IMAP_EV_COMMAND:
		if (ev->cmd.continued) {
			append_continued(s, ev);
			return;
		}
		dispatch(s, ev);
		return;
	case IMAP_EV_LITERAL_CONTINUE:
		literal_continue(s, ev);
		return;
	case IMAP_EV_LITERAL_DATA:
		append_data(s, ev);
		return;
	case IMAP_EV_LINE:
		if (s->idling)
			idle_line(s, ev->line.data, ev->line.len);
		else if (s->auth_step != AUTH_NONE)
			auth_line(s, ev->line.data, ev->line.len);
		return;
	case IMAP_EV_ERROR:
		parse_error(s, ev);
		return;
	}
}

/* --- public API ----------------------------------------------------------- */

struct imap_session *imap_session_new(const struct imap_settings *set)
{
	for (const char *p = set->hostname; p != NULL && *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return NULL;
	struct imap_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->set = *set;
	if (s->set.max_bad == 0)
		s->set.max_bad = IMAP_DEFAULT_MAX_BAD;
	if (s->set.max_append == 0)
		s->set.max_append = IMAP_DEFAULT_MAX_APPEND;
	if (s->set.max_output == 0)
		s->set.max_output = IMAP_DEFAULT_MAX_OUTPUT;
	if (s->set.max_messages == 0)
		s->set.max_messages = IMAP_DEFAULT_MAX_MESSAGES;
	s->set.parser.max_append_literal = s->set.max_append;
	s->parser = imap_parser_new(&s->set.parser);
	if (s->parser == NULL) {
		free(s);
		return NULL;
	}
	imap_parser_set_append_stream(s->parser, 64 * 1024);
	s->tls_active = set->tls_active;
	pn_buf_init(&s->out, s->set.max_output);
	out_str(s, "* OK [CAPABILITY ");
	out_capabilities(s);
	out_printf(s, "] %s Postern IMAP ready.\r\n",
		   set->hostname != NULL ? set->hostname : "");
	return s;
}

void imap_session_free(struct imap_session **sp)
{
	struct imap_session *s = *sp;
	if (s == NULL)
		return;
	auth_wipe(s);
	cmd_end(s);
	view_clear(s);
	free(s->pend_new);
	free(s->pend_exp);
	free(s->pend_flags);
	free(s->modified);
	pn_buf_free(&s->out);
	pn_buf_free(&s->append_buf);
	imap_parser_free(&s->parser);
	free(s);
	*sp = NULL;
}

size_t imap_session_feed(struct imap_session *s, const void *data, size_t len)
{
	if (s->tls_pending || s->closed || s->close_pending || s->disconnected)
		return len;
	size_t room = imap_parser_room(s->parser);
	size_t n = len < room ? len : room;
	if (n > 0 && imap_parser_feed(s->parser, data, n) < 0)
		return 0;
	return n;
}

int imap_session_next(struct imap_session *s, struct imap_action *act_r)
{
	if (s->out_handed > 0) {
		pn_buf_consume(&s->out, s->out_handed);
		s->out_handed = 0;
	}
	if (s->closed)
		return -1;
	for (;;) {
		if (s->out_overflow && !s->close_pending) {
			pn_buf_reset(&s->out);
			s->out_overflow = false;
			out_str(s, "* BYE Response too large\r\n");
			s->close_pending = true;
			s->close_reason = "output overflow";
		}
		if (pn_buf_len(&s->out) > 0 && !s->disconnected) {
			act_r->type = IMAP_ACTION_SEND;
			act_r->send.data = pn_buf_rptr(&s->out);
			act_r->send.len = pn_buf_len(&s->out);
			s->out_handed = act_r->send.len;
			return 1;
		}
		if (s->req_state == REQ_READY) {
			s->req_state = REQ_WAIT;
			act_r->type = IMAP_ACTION_REQUEST;
			act_r->req = &s->req;
			return 1;
		}
		if (s->req_state == REQ_WAIT)
			return 0;
		if (s->disconnected) {
			s->closed = true;
			return -1;
		}
		if (s->close_pending) {
			s->closed = true;
			act_r->type = IMAP_ACTION_CLOSE;
			act_r->close_reason = s->close_reason;
			return 1;
		}
		if (s->tls_pending) {
			/* Until tls_started(), feed() drops bytes. */
			if (s->tls_handed)
				return 0;
			s->tls_handed = true;
			act_r->type = IMAP_ACTION_START_TLS;
			return 1;
		}
		if (s->shutdown_wanted) {
			/* No request is outstanding here: a command waiting
			 * for client input (IDLE, AUTHENTICATE, a streamed
			 * APPEND) is abandoned. */
			if (s->cmd != CMD_NONE || s->idling) {
				s->idling = false;
				s->appending = false;
				pn_buf_free(&s->append_buf);
				auth_wipe(s);
				cmd_end(s);
			}
			out_printf(s, "* BYE %s\r\n", s->shutdown_text);
			s->close_pending = true;
			s->close_reason = s->shutdown_reason;
			continue;
		}
		if (s->idling) {
			flush_notifications(s, true);
			if (pn_buf_len(&s->out) > 0)
				continue;
		}
		struct imap_event ev;
		int r = imap_parser_next(s->parser, &ev);
		if (r == 0)
			return 0;
		handle_event(s, &ev);
	}
}

void imap_session_tls_started(struct imap_session *s)
{
	s->tls_pending = false;
	s->tls_handed = false;
	s->tls_active = true;
}

void imap_session_disconnected(struct imap_session *s)
{
	s->disconnected = true;
	s->idling = false;
	/* A request not handed out yet is dropped with its command. */
	if (s->req_state == REQ_READY) {
		auth_wipe(s);
		cmd_end(s);
	}
	pn_buf_reset(&s->out);
	s->out_handed = 0;
}

void imap_session_end(struct imap_session *s, enum imap_end_reason why)
{
	if (s->shutdown_wanted)
		return;
	s->shutdown_wanted = true;
	switch (why) {
	case IMAP_END_IDLE:
		s->shutdown_text = "Autologout; idle for too long";
		s->shutdown_reason = "idle";
		break;
	case IMAP_END_KICK:
		s->shutdown_text = "Disconnected by the administrator.";
		s->shutdown_reason = "kick";
		break;
	case IMAP_END_SHUTDOWN:
	default:
		s->shutdown_text = "[UNAVAILABLE] Server shutting down";
		s->shutdown_reason = "shutdown";
		break;
	}
}

void imap_session_shutdown(struct imap_session *s)
{
	imap_session_end(s, IMAP_END_SHUTDOWN);
}

/* Dovecot's words and choice: the session cannot go on with a mailbox
 * that is no longer there (RFC 3501 7.1.5: BYE may come at any time). */
void imap_session_mailbox_gone(struct imap_session *s)
{
	if (s->shutdown_wanted || s->state != IMAP_STATE_SELECTED)
		return;
	s->shutdown_wanted = true;
	s->shutdown_text = "Selected mailbox was deleted, have to disconnect.";
	s->shutdown_reason = "selected mailbox deleted";
}

enum imap_state imap_session_state(const struct imap_session *s)
{
	return s->state;
}

bool imap_session_idling(const struct imap_session *s)
{
	return s->idling;
}

const char *imap_session_mailbox(const struct imap_session *s, bool *readonly_r)
{
	if (readonly_r != NULL)
		*readonly_r = s->readonly;
	return s->state == IMAP_STATE_SELECTED ? s->mailbox : NULL;
}

size_t imap_session_message_count(const struct imap_session *s)
{
	return s->state == IMAP_STATE_SELECTED ? s->count : 0;
}
