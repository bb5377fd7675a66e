/* IMAP mailbox commands of the session engine: mailbox name validation
 * (modified UTF-7, "/" hierarchy, INBOX case-insensitive), SELECT/EXAMINE,
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST/LSUB (with the basic
 * LIST-EXTENDED selection and return options; the engine matches patterns
 * and computes \HasChildren itself from the daemon's full mailbox list),
 * STATUS, and APPEND with buffered or streamed literals.
 */
#include "imap-session-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap-utf7.h"
#include "postern/mail-date.h"

#define MAILBOX_NAME_MAX 1024
#define LIST_PATTERN_MAX 256
#define LIST_MAX_PATTERNS 16

static bool is_inbox_prefix(const char *name, size_t len)
{
	return len >= 5 && strncasecmp(name, "INBOX", 5) == 0 &&
	       (len == 5 || name[5] == '/');
}

/* RFC 3501 section 5.1: mailbox = "INBOX" / astring; INBOX is
 * case-insensitive; names are modified UTF-7 (5.1.3), "/" separated. */
const char *mailbox_arg(struct imap_session *s, const struct imap_arg *arg)
{
	const char *str;
	size_t len;

	if (!imap_arg_get_astring(arg, &str, &len)) {
		cmd_done(s, "BAD", "Expected a mailbox name");
		return NULL;
	}
	if (len == 0 || len > MAILBOX_NAME_MAX || memchr(str, '\0', len) != NULL) {
		cmd_done(s, "NO", "Invalid mailbox name");
		return NULL;
	}
	if (!imap_utf7_is_valid(str, len)) {
		cmd_done(s, "NO", "Mailbox name is not valid modified UTF-7");
		return NULL;
	}
	if (memchr(str, '*', len) != NULL || memchr(str, '%', len) != NULL ||
	    str[0] == '/' || str[len - 1] == '/' || strstr(str, "//") != NULL) {
		cmd_done(s, "NO", "Invalid mailbox name");
		return NULL;
	}
	char *name = cmd_strndup(s, str, len);
	if (name == NULL) {
		cmd_done(s, "NO", "[SERVERBUG] Out of memory");
		return NULL;
	}
	if (is_inbox_prefix(name, len))
		memcpy(name, "INBOX", 5);
	return name;
}

static bool only_args(const struct imap_arg *args, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (args[i].type == IMAP_ARG_EOL)
			return false;
	return args[n].type == IMAP_ARG_EOL;
}

/* --- SELECT / EXAMINE --------------------------------------------------- */

/* RFC 3501 9: select = "SELECT" SP mailbox; examine = "EXAMINE" SP mailbox
 * RFC 7162 / RFC 4466: [SP "(" select-param *(SP select-param) ")"],
 * of which we know "CONDSTORE". */
void cmd_select(struct imap_session *s, const struct imap_arg *args, bool readonly)
{
	bool condstore = false;
	if (args[0].type != IMAP_ARG_EOL && args[1].type == IMAP_ARG_LIST &&
	    args[2].type == IMAP_ARG_EOL) {
		for (size_t i = 0; i < args[1].list_count; i++) {
			if (!imap_arg_atom_equals(&args[1].list[i], "CONDSTORE")) {
				cmd_done(s, "BAD", "Unknown %s parameter", readonly ? "EXAMINE" : "SELECT");
				return;
			}
			condstore = true;
		}
	} else if (!only_args(args, 1)) {
		cmd_done(s, "BAD", "Expected %s mailbox", readonly ? "EXAMINE" : "SELECT");
		return;
	}
	const char *name = mailbox_arg(s, &args[0]);
	if (name == NULL)
		return;
	/* RFC 3501 6.3.1: the selected mailbox is deselected first, even if
	 * the SELECT fails. */
	if (s->state == IMAP_STATE_SELECTED) {
		view_clear(s);
		s->state = IMAP_STATE_AUTHENTICATED;
	}
	if (condstore)
		s->condstore = true;
	s->cmd = CMD_SELECT;
	s->req.mailbox = name;
	s->req.readonly = readonly;
	cmd_request(s, IMAP_REQ_MAILBOX_SELECT);
}

static bool flag_printable(const char *f)
{
	if (f == NULL || *f == '\0')
		return false;
	for (; *f; f++)
		if (*f <= 0x20 || *f >= 0x7f || *f == '(' || *f == ')')
			return false;
	return true;
}

int imap_session_select_result(struct imap_session *s,
			       const struct imap_select_result *res,
			       const char **error_r)
{
	static const char *const system_flags[] = {
		"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft",
	};

	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_MAILBOX_SELECT) {
		*error_r = "no MAILBOX_SELECT request outstanding";
		return -1;
	}
	if (res->result != IMAP_RESULT_OK) {
		cmd_done(s, "NO", "%s", result_text(res->result) + 3);
		return 0;
	}
	if (res->count > s->set.max_messages) {
		*error_r = "too many messages";
		return -1;
	}
	for (size_t i = 0; i < res->count; i++) {
		if (res->uids[i] == 0 || (i > 0 && res->uids[i] <= res->uids[i - 1])) {
			*error_r = "UIDs not ascending";
			return -1;
		}
	}
	const char *const *flags = res->flags ? res->flags : system_flags;
	size_t nflags = res->flags ? res->flag_count : 5;
	for (size_t i = 0; i < nflags; i++) {
		if (!flag_printable(flags[i])) {
			*error_r = "invalid flag";
			return -1;
		}
	}
	uint32_t *uids = NULL;
	if (res->count > 0) {
		uids = malloc(res->count * sizeof(uint32_t));
		if (uids == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		memcpy(uids, res->uids, res->count * sizeof(uint32_t));
	}
	char *mailbox = strdup(s->req.mailbox);
	if (mailbox == NULL) {
		free(uids);
		*error_r = "out of memory";
		return -1;
	}
	view_clear(s);
	s->uids = uids;
	s->count = s->cap = res->count;
	s->mailbox = mailbox;
	s->readonly = s->req.readonly;
	s->nomodseq = res->highestmodseq == 0;
	s->recent = res->recent;
	s->state = IMAP_STATE_SELECTED;

	/* RFC 3501 6.3.1 responses. */
	out_str(s, "* FLAGS ");
	out_flags(s, flags, nflags);
	out_printf(s, "\r\n* %zu EXISTS\r\n* %u RECENT\r\n", res->count, res->recent);
	if (res->first_unseen > 0)
		out_printf(s, "* OK [UNSEEN %u] First unseen.\r\n", res->first_unseen);
	out_str(s, "* OK [PERMANENTFLAGS ");
	if (s->readonly) {
		out_str(s, "()");
	} else {
		out_str(s, "(");
		for (size_t i = 0; i < nflags; i++) {
			out_str(s, flags[i]);
			out_str(s, " ");
		}
		out_str(s, "\\*)");
	}
	out_str(s, "] Flags permitted.\r\n");
	out_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", res->uidvalidity);
	out_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", res->uidnext);
	/* RFC 7162 3.1.2.1: on every SELECT/EXAMINE. */
	if (res->highestmodseq > 0)
		out_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			   (unsigned long long)res->highestmodseq);
	else
		out_str(s, "* OK [NOMODSEQ] No permanent modsequences\r\n");
	cmd_done(s, "OK", "[%s] %s completed", s->readonly ? "READ-ONLY" : "READ-WRITE",
		 s->readonly ? "EXAMINE" : "SELECT");
	return 0;
}

/* --- CREATE / DELETE / RENAME / SUBSCRIBE / UNSUBSCRIBE ------------------ */

/* RFC 3501 9: create = "CREATE" SP mailbox; delete = "DELETE" SP mailbox;
 * rename = "RENAME" SP mailbox SP mailbox; subscribe = "SUBSCRIBE" SP
 * mailbox; unsubscribe = "UNSUBSCRIBE" SP mailbox */
void cmd_mailbox_op(struct imap_session *s, enum imap_cmd cmd, const struct imap_arg *args)
{
	size_t want = cmd == CMD_RENAME ? 2 : 1;
	if (!only_args(args, want)) {
		cmd_done(s, "BAD", "Expected %s", cmd == CMD_RENAME ?
			 "RENAME old-name new-name" : "a mailbox name");
		return;
	}
	/* RFC 3501 6.3.3: CREATE "a/" creates "a". */
	struct imap_arg tmp;
	const struct imap_arg *first = &args[0];
	if (cmd == CMD_CREATE && (args[0].type == IMAP_ARG_ATOM || args[0].type == IMAP_ARG_QUOTED ||
				  args[0].type == IMAP_ARG_LITERAL) &&
	    args[0].len > 1 && args[0].str[args[0].len - 1] == '/') {
		tmp = args[0];
		tmp.len--;
		char *c = cmd_strndup(s, tmp.str, tmp.len);
		if (c == NULL) {
			cmd_done(s, "NO", "[SERVERBUG] Out of memory");
			return;
		}
		tmp.str = c;
		first = &tmp;
	}
	const char *name = mailbox_arg(s, first);
	if (name == NULL)
		return;
	const char *new_name = NULL;
	if (cmd == CMD_RENAME && (new_name = mailbox_arg(s, &args[1])) == NULL)
		return;
	if (cmd == CMD_CREATE && strcmp(name, "INBOX") == 0) {
		cmd_done(s, "NO", "[ALREADYEXISTS] INBOX always exists");
		return;
	}
	if (cmd == CMD_DELETE && strcmp(name, "INBOX") == 0) {
		cmd_done(s, "NO", "[CANNOT] INBOX cannot be deleted");
		return;
	}
	if (cmd == CMD_RENAME && strcmp(new_name, "INBOX") == 0) {
		cmd_done(s, "NO", "[ALREADYEXISTS] INBOX already exists");
		return;
	}
	s->cmd = cmd;
	s->req.mailbox = name;
	s->req.new_name = new_name;
	enum imap_request_type t = IMAP_REQ_MAILBOX_CREATE;
	switch (cmd) {
	case CMD_DELETE: t = IMAP_REQ_MAILBOX_DELETE; break;
	case CMD_RENAME: t = IMAP_REQ_MAILBOX_RENAME; break;
	case CMD_SUBSCRIBE: t = IMAP_REQ_MAILBOX_SUBSCRIBE; break;
	case CMD_UNSUBSCRIBE: t = IMAP_REQ_MAILBOX_UNSUBSCRIBE; break;
	default: break;
	}
	cmd_request(s, t);
}

/* --- LIST / LSUB ------------------------------------------------------- */

/* RFC 3501 6.3.8: "*" matches zero or more characters, "%" likewise but
 * not the hierarchy delimiter. The INBOX part of a name matches without
 * regard to case. Dynamic programming over the name, O(|p| * |name|). */
bool list_match(const char *pattern, const char *name)
{
	size_t m = strlen(name), k = strlen(pattern);
	bool row_a[MAILBOX_NAME_MAX + 1], row_b[MAILBOX_NAME_MAX + 1];
	bool *prev = row_a, *cur = row_b;
	size_t fold = is_inbox_prefix(name, m) ? 5 : 0;

	if (m > MAILBOX_NAME_MAX)
		return false;
	prev[0] = true;
	for (size_t i = 1; i <= m; i++)
		prev[i] = false;
	for (size_t j = 0; j < k; j++) {
		char c = pattern[j];
		if (c == '*' || c == '%') {
			cur[0] = prev[0];
			for (size_t i = 1; i <= m; i++)
				cur[i] = prev[i] || (cur[i - 1] && (c == '*' || name[i - 1] != '/'));
		} else {
			cur[0] = false;
			for (size_t i = 1; i <= m; i++) {
				char nc = name[i - 1], pc = c;
				if (i - 1 < fold && pc >= 'a' && pc <= 'z')
					pc = (char)(pc - 32);
				cur[i] = prev[i - 1] && nc == pc;
			}
		}
		bool *t = prev;
		prev = cur;
		cur = t;
	}
	return prev[m];
}

static bool list_string(const struct imap_arg *a, const char **str_r, size_t *len_r)
{
	if (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED ||
	    (a->type == IMAP_ARG_LITERAL && !a->streamed)) {
		*str_r = a->str;
		*len_r = a->len;
		return true;
	}
	return false;
}

/* RFC 3501: list = "LIST" SP mailbox SP list-mailbox
 * RFC 5258: list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
 *                  [SP list-return-opts] */
void cmd_list(struct imap_session *s, const struct imap_arg *args, bool lsub)
{
	size_t i = 0;
	const char *ref, *pat;
	size_t rlen, plen;

	if (!lsub && args[0].type == IMAP_ARG_LIST) {
		for (size_t k = 0; k < args[0].list_count; k++) {
			const struct imap_arg *o = &args[0].list[k];
			if (imap_arg_atom_equals(o, "SUBSCRIBED"))
				s->list_subscribed_only = s->list_return_subscribed = true;
			else if (imap_arg_atom_equals(o, "SPECIAL-USE"))
				s->list_special_only = true;
			else if (imap_arg_atom_equals(o, "REMOTE") ||
				 imap_arg_atom_equals(o, "RECURSIVEMATCH"))
				;
			else {
				cmd_done(s, "BAD", "Unknown LIST selection option");
				return;
			}
		}
		i++;
	}
	if (args[i].type == IMAP_ARG_EOL || !list_string(&args[i], &ref, &rlen) ||
	    args[i + 1].type == IMAP_ARG_EOL) {
		cmd_done(s, "BAD", "Expected %s reference pattern", lsub ? "LSUB" : "LIST");
		return;
	}
	i++;
	const struct imap_arg *pats = &args[i];
	size_t npats = 1;
	if (!lsub && args[i].type == IMAP_ARG_LIST) {
		pats = args[i].list;
		npats = args[i].list_count;
		if (npats == 0 || npats > LIST_MAX_PATTERNS) {
			cmd_done(s, "BAD", "Invalid pattern list");
			return;
		}
	}
	i++;
	if (!lsub && imap_arg_atom_equals(&args[i], "RETURN") &&
	    args[i + 1].type == IMAP_ARG_LIST) {
		for (size_t k = 0; k < args[i + 1].list_count; k++) {
			const struct imap_arg *o = &args[i + 1].list[k];
			if (imap_arg_atom_equals(o, "SUBSCRIBED"))
				s->list_return_subscribed = true;
			else if (!imap_arg_atom_equals(o, "CHILDREN") &&
				 !imap_arg_atom_equals(o, "SPECIAL-USE")) {
				cmd_done(s, "BAD", "Unknown LIST return option");
				return;
			}
		}
		i += 2;
	}
	if (args[i].type != IMAP_ARG_EOL) {
		cmd_done(s, "BAD", "Unexpected arguments to %s", lsub ? "LSUB" : "LIST");
		return;
	}
	if (rlen > LIST_PATTERN_MAX || !imap_utf7_is_valid(ref, rlen) ||
	    memchr(ref, '\0', rlen) != NULL) {
		cmd_done(s, "NO", "Invalid reference name");
		return;
	}
	s->list_patterns = cmd_alloc(s, npats * sizeof(char *));
	if (s->list_patterns == NULL) {
		cmd_done(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	for (size_t k = 0; k < npats; k++) {
		if (!list_string(&pats[k], &pat, &plen)) {
			cmd_done(s, "BAD", "Expected a mailbox pattern");
			return;
		}
		if (plen + rlen > LIST_PATTERN_MAX || memchr(pat, '\0', plen) != NULL) {
			cmd_done(s, "NO", "Pattern too long");
			return;
		}
		for (size_t c = 0; c < plen; c++) {
			if (pat[c] < 0x20 || pat[c] > 0x7e) {
				cmd_done(s, "NO", "Invalid character in pattern");
				return;
			}
		}
		if (npats == 1 && plen == 0) {
			/* RFC 3501 6.3.8: the delimiter and root of ref. */
			if (!lsub)
				out_str(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
			cmd_done(s, "OK", "%s completed", lsub ? "LSUB" : "LIST");
			return;
		}
		/* A pattern starting with "/" ignores the reference. */
		size_t use_rlen = plen > 0 && pat[0] == '/' ? 0 : rlen;
		char *full = cmd_alloc(s, use_rlen + plen + 1);
		if (full == NULL) {
			cmd_done(s, "NO", "[SERVERBUG] Out of memory");
			return;
		}
		memcpy(full, ref, use_rlen);
		memcpy(full + use_rlen, pat, plen);
		s->list_patterns[k] = full;
	}
	s->list_pattern_n = npats;
	s->cmd = CMD_LIST;
	s->req.lsub = lsub;
	cmd_request(s, IMAP_REQ_MAILBOX_LIST);
}

/* One line of the LIST answer: a mailbox of the account, or a level of
 * hierarchy that exists only as the parent of mailboxes (box NULL). */
struct list_entry {
	const char *name;
	const struct imap_mailbox_info *box;
};

static int entry_cmp(const void *a, const void *b)
{
	const struct list_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c != 0)
		return c;
	/* Real mailboxes first, so duplicates of them are dropped. */
	return (x->box == NULL) - (y->box == NULL);
}

static bool box_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > MAILBOX_NAME_MAX || name[0] == '/' || name[len - 1] == '/')
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] < 0x20 || name[i] > 0x7e)
			return false;
	return true;
}

/* RFC 3501 6.3.8: with "%" last in the pattern, levels of hierarchy that
 * are not mailboxes are listed too, as \Noselect. */
static bool entry_matches(struct imap_session *s, const struct list_entry *e)
{
	for (size_t p = 0; p < s->list_pattern_n; p++) {
		const char *pat = s->list_patterns[p];
		size_t plen = strlen(pat);
		if (e->box == NULL && (plen == 0 || pat[plen - 1] != '%'))
			continue;
		if (list_match(pat, e->name))
			return true;
	}
	return false;
}

static void list_write(struct imap_session *s, const struct list_entry *e,
		       bool children)
{
	static const struct { unsigned int bit; const char *attr; } special[] = {
		{ IMAP_MBOX_ALL, "\\All" }, { IMAP_MBOX_ARCHIVE, "\\Archive" },
		{ IMAP_MBOX_DRAFTS, "\\Drafts" }, { IMAP_MBOX_FLAGGED, "\\Flagged" },
		{ IMAP_MBOX_JUNK, "\\Junk" }, { IMAP_MBOX_SENT, "\\Sent" },
		{ IMAP_MBOX_TRASH, "\\Trash" },
	};
	const struct imap_mailbox_info *b = e->box;

	out_printf(s, "* %s (", s->req.lsub ? "LSUB" : "LIST");
	bool sp = false;
	if (b == NULL || b->noselect) {
		out_str(s, "\\Noselect");
		sp = true;
	}
	if (!s->req.lsub) {
		out_str(s, sp ? " " : "");
		out_str(s, children ? "\\HasChildren" : "\\HasNoChildren");
		for (size_t u = 0; b != NULL && u < sizeof(special) / sizeof(special[0]); u++)
			if (b->special_use & special[u].bit)
				out_printf(s, " %s", special[u].attr);
		if (s->list_return_subscribed && b != NULL && b->subscribed)
			out_str(s, " \\Subscribed");
	}
	out_str(s, ") \"/\" ");
	out_quoted(s, e->name, strlen(e->name));
	out_str(s, "\r\n");
}

int imap_session_list_result(struct imap_session *s, enum imap_result result,
			     const struct imap_mailbox_info *boxes, size_t count,
			     const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_MAILBOX_LIST) {
		*error_r = "no MAILBOX_LIST request outstanding";
		return -1;
	}
	const char *cmdname = s->req.lsub ? "LSUB" : "LIST";
	if (result != IMAP_RESULT_OK) {
		cmd_done(s, "NO", "%s", result_text(result) + 3);
		return 0;
	}
	/* Every usable mailbox plus each of its parent levels. */
	size_t cap = 0;
	for (size_t i = 0; i < count; i++) {
		if (boxes[i].name == NULL || !box_name_ok(boxes[i].name))
			continue;
		cap++;
		for (const char *c = boxes[i].name; *c; c++)
			cap += *c == '/';
	}
	struct list_entry *e = cap > 0 ? calloc(cap, sizeof(*e)) : NULL;
	char **owned = cap > 0 ? calloc(cap, sizeof(char *)) : NULL;
	if (cap > 0 && (e == NULL || owned == NULL)) {
		free(e);
		free(owned);
		*error_r = "out of memory";
		return -1;
	}
	size_t n = 0, n_owned = 0;
	for (size_t i = 0; i < count; i++) {
		const char *name = boxes[i].name;
		if (name == NULL || !box_name_ok(name))
			continue;
		e[n++] = (struct list_entry){ .name = name, .box = &boxes[i] };
		if (s->req.lsub)
			continue;
		for (const char *c = name; *c; c++) {
			if (*c != '/')
				continue;
			char *parent = strndup(name, (size_t)(c - name));
			if (parent == NULL)
				break;
			owned[n_owned++] = parent;
			e[n++] = (struct list_entry){ .name = parent, .box = NULL };
		}
	}
	if (n > 1)
		qsort(e, n, sizeof(*e), entry_cmp);
	for (size_t k = 0; k < n; k++) {
		if (k > 0 && strcmp(e[k].name, e[k - 1].name) == 0)
			continue; /* a parent listed already */
		if (!entry_matches(s, &e[k]))
			continue;
		if ((s->req.lsub || s->list_subscribed_only) &&
		    (e[k].box == NULL || !e[k].box->subscribed))
			continue;
		/* RFC 6154 3: the SPECIAL-USE selection option lists only
		 * mailboxes that have a special-use attribute. */
		if (s->list_special_only && (e[k].box == NULL || e[k].box->special_use == 0))
			continue;
		/* Children: a later name (in sorted order) starting with
		 * "name/". Names sharing the prefix but going on with a byte
		 * below '/' sort in between, so skip those. */
		size_t len = strlen(e[k].name);
		bool children = false;
		for (size_t j = k + 1; j < n; j++) {
			const char *o = e[j].name;
			if (strncmp(o, e[k].name, len) != 0)
				break;
			if (o[len] == '/') {
				children = true;
				break;
			}
			if ((unsigned char)o[len] > '/')
				break;
		}
		list_write(s, &e[k], children);
	}
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	free(owned);
	free(e);
	cmd_done(s, "OK", "%s completed", cmdname);
	return 0;
}

/* --- STATUS ----------------------------------------------------------- */

static const struct { const char *name; unsigned int bit; } status_items[] = {
	{ "MESSAGES", IMAP_STATUS_MESSAGES }, { "RECENT", IMAP_STATUS_RECENT },
	{ "UIDNEXT", IMAP_STATUS_UIDNEXT }, { "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
	{ "UNSEEN", IMAP_STATUS_UNSEEN }, { "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
};

/* status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")" */
void cmd_status(struct imap_session *s, const struct imap_arg *args)
{
	if (!only_args(args, 2) || args[1].type != IMAP_ARG_LIST || args[1].list_count == 0) {
		cmd_done(s, "BAD", "Expected STATUS mailbox (items)");
		return;
	}
	const char *name = mailbox_arg(s, &args[0]);
	if (name == NULL)
		return;
	unsigned int items = 0;
	for (size_t i = 0; i < args[1].list_count; i++) {
		size_t k;
		for (k = 0; k < sizeof(status_items) / sizeof(status_items[0]); k++)
			if (imap_arg_atom_equals(&args[1].list[i], status_items[k].name))
				break;
		if (k == sizeof(status_items) / sizeof(status_items[0])) {
			cmd_done(s, "BAD", "Unknown STATUS item");
			return;
		}
		if ((items & status_items[k].bit) == 0 && s->status_n < 8)
			s->status_order[s->status_n++] = (unsigned int)k;
		items |= status_items[k].bit;
	}
	/* RFC 7162 3.1: STATUS HIGHESTMODSEQ enables CONDSTORE. */
	if ((items & IMAP_STATUS_HIGHESTMODSEQ) != 0)
		s->condstore = true;
	s->cmd = CMD_STATUS;
	s->req.mailbox = name;
	s->req.status_items = items;
	cmd_request(s, IMAP_REQ_MAILBOX_STATUS);
}

int imap_session_status_result(struct imap_session *s,
			       const struct imap_status_result *res,
			       const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_MAILBOX_STATUS) {
		*error_r = "no MAILBOX_STATUS request outstanding";
		return -1;
	}
	if (res->result != IMAP_RESULT_OK) {
		cmd_done(s, "NO", "%s", result_text(res->result) + 3);
		return 0;
	}
	out_str(s, "* STATUS ");
	out_quoted(s, s->req.mailbox, strlen(s->req.mailbox));
	out_str(s, " (");
	for (unsigned int i = 0; i < s->status_n; i++) {
		unsigned int k = s->status_order[i];
		uint64_t v = 0;
		switch (status_items[k].bit) {
		case IMAP_STATUS_MESSAGES: v = res->messages; break;
		case IMAP_STATUS_RECENT: v = res->recent; break;
		case IMAP_STATUS_UIDNEXT: v = res->uidnext; break;
		case IMAP_STATUS_UIDVALIDITY: v = res->uidvalidity; break;
		case IMAP_STATUS_UNSEEN: v = res->unseen; break;
		case IMAP_STATUS_HIGHESTMODSEQ: v = res->highestmodseq; break;
		}
		out_printf(s, "%s%s %llu", i ? " " : "", status_items[k].name,
			   (unsigned long long)v);
	}
	out_str(s, ")\r\n");
	cmd_done(s, "OK", "STATUS completed");
	return 0;
}

/* --- APPEND ------------------------------------------------------------ */

/* append = "APPEND" SP mailbox [SP flag-list] [SP date-time] SP literal */
void cmd_append(struct imap_session *s, const struct imap_event *ev)
{
	const struct imap_arg *args = ev->cmd.args;
	size_t n = ev->cmd.count;

	if (n < 2 || args[n - 1].type != IMAP_ARG_LITERAL) {
		if (ev->cmd.literal_follows)
			imap_parser_abort_command(s->parser);
		cmd_done(s, "BAD", "Expected APPEND mailbox [(flags)] [date-time] literal");
		return;
	}
	const struct imap_arg *lit = &args[n - 1];
	const char *name = mailbox_arg(s, &args[0]);
	size_t i = 1;
	if (name != NULL && args[i].type == IMAP_ARG_LIST) {
		if (parse_flags(s, &args[i], &s->req.flags, &s->req.flag_count, true) < 0)
			name = NULL;
		i++;
	}
	if (name != NULL && i < n - 1 && args[i].type == IMAP_ARG_QUOTED) {
		if (mail_imap_datetime_parse(args[i].str, args[i].len, &s->req.date,
					     &s->req.date_tz) < 0) {
			cmd_done(s, "BAD", "Invalid date-time");
			name = NULL;
		} else {
			s->req.has_date = true;
		}
		i++;
	}
	if (name != NULL && i != n - 1) {
		cmd_done(s, "BAD", "Expected APPEND mailbox [(flags)] [date-time] literal");
		name = NULL;
	}
	if (name != NULL && lit->literal_size == 0) {
		cmd_done(s, "NO", "Cannot append an empty message");
		name = NULL;
	}
	if (name != NULL && lit->literal_size > s->set.max_append) {
		cmd_done(s, "NO", "[TOOBIG] Message too large");
		name = NULL;
	}
	if (name == NULL) {
		/* Answered already; the literal (if still coming) is skipped. */
		if (ev->cmd.literal_follows)
			imap_parser_abort_command(s->parser);
		return;
	}
	s->cmd = CMD_APPEND;
	s->req.mailbox = name;
	if (!ev->cmd.literal_follows) {
		s->req.data = (const uint8_t *)lit->str;
		s->req.data_len = lit->len;
		cmd_request(s, IMAP_REQ_APPEND);
		return;
	}
	pn_buf_free(&s->append_buf);
	pn_buf_init(&s->append_buf, s->set.max_append);
	s->appending = true;
}

void append_data(struct imap_session *s, const struct imap_event *ev)
{
	if (!s->appending)
		return;
	if (pn_buf_append(&s->append_buf, ev->data.data, ev->data.len) < 0) {
		s->appending = false;
		pn_buf_free(&s->append_buf);
		imap_parser_abort_command(s->parser);
		cmd_done(s, "NO", "[TOOBIG] Message too large");
	}
}

void append_continued(struct imap_session *s, const struct imap_event *ev)
{
	if (!s->appending || s->cmd != CMD_APPEND)
		return;
	s->appending = false;
	if (ev->cmd.count > 0) {
		pn_buf_free(&s->append_buf);
		if (ev->cmd.literal_follows)
			imap_parser_abort_command(s->parser);
		cmd_done(s, "BAD", "MULTIAPPEND is not supported");
		return;
	}
	s->req.data = pn_buf_rptr(&s->append_buf);
	s->req.data_len = pn_buf_len(&s->append_buf);
	cmd_request(s, IMAP_REQ_APPEND);
}

int imap_session_append_result(struct imap_session *s, enum imap_result result,
			       uint32_t uidvalidity, uint32_t uid,
			       const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_APPEND) {
		*error_r = "no APPEND request outstanding";
		return -1;
	}
	pn_buf_free(&s->append_buf);
	if (result != IMAP_RESULT_OK)
		cmd_done(s, "NO", "%s", result_text(result) + 3);
	else if (uidvalidity != 0 && uid != 0)
		cmd_done(s, "OK", "[APPENDUID %u %u] APPEND completed", uidvalidity, uid);
	else
		cmd_done(s, "OK", "APPEND completed");
	return 0;
}
