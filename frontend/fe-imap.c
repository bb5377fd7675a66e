/* The IMAP adapter: drives the sans-IO engine (imap/imap-session.h) for a
 * connection (fe-conn.c) and carries out its requests with the mailbox
 * operations of postern/mail-mailbox.h (one mail_mbox_store per thread,
 * on the thread's PostgreSQL pool):
 *
 *   AUTH_VERIFY        fe_login_start (fe-login.h): the throttled password
 *                      check, a session slot and, on success, a session registry entry
 *   MAILBOX_*          mail_mbox_list/status/select/create/delete/rename/
 *                      subscribe (LIST: every mailbox, the engine matches)
 *   APPEND             mail_mbox_append
 *   MESSAGES           mail_mbox_fetch (with the bytes when the engine needs
 *                      them) in batches of UIDs, the next batch only once
 *                      the previous one went out to the connection (whose
 *                      SENDs are sliced), so a big FETCH moves at the
 *                      client's pace; a message the engine's output buffer
 *                      cannot take yet is copied and given after a drain
 *   STORE, COPY, EXPUNGE  mail_mbox_store_flags / copy / expunge
 *   POLL               mail_mbox_changes (below)
 *
 * Live updates. While a mailbox is selected the session subscribes to its
 * Redis channel; every notification (and every (re)subscription, since
 * messages published while disconnected are lost) runs mail_mbox_changes()
 * from the last seen MODSEQ and UIDNEXT, and the result becomes
 * imap_session_notify() calls: EXPUNGE, FLAGS and EXISTS (claiming new
 * messages as this session's \Recent after SELECT; after EXAMINE the
 * messages nobody claimed yet show as \Recent, unclaimed). A timer covers lost
 * notifications: every POLL_SLOW_MS with a live subscription, every
 * POLL_FAST_MS without one (Redis down: IDLE falls back to a short poll).
 * Changes are read only while no request is in flight (a request handed
 * out meanwhile waits), so the engine's sequence numbers never see an
 * update overtaking the session's own command. The session's own STORE
 * results are remembered by (uid, modseq) and not echoed as FLAGS; its own
 * EXPUNGE/MOVE are unknown to the engine by the time changes report them.
 * An APPEND or COPY into the selected mailbox reads the changes before its
 * tagged reply, so the client sees EXISTS for it. A changes read that finds
 * the mailbox deleted, or under another name than the session's own RENAMEs
 * gave it, ends the session with imap_session_mailbox_gone() (a BYE).
 *
 * Every asynchronous operation is counted in `outstanding`; next() returns
 * -1 only when the engine is over and nothing is outstanding (fe-protocol.h).
 * A callback answers the engine and calls fe_conn_wakeup() as its very last
 * step.
 */
#include "fe-imap.h"

#include "postern/log.h"
#include "postern/mail-auth.h"
#include "postern/mail-mailbox.h"
#include "postern/store-redis-ops.h"

#include "fe-backend.h"
#include "fe-metrics.h"
#include "fe-login.h"
#include "fe-node.h"
#include "imap-session.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define POLL_FAST_MS 2000	/* no live Redis subscription */
#define POLL_SLOW_MS 30000	/* covers lost notifications */
#define MAX_FLAG_NAMES (5 + 1 + 250) /* system flags, \Recent, keywords */
/* Largest SEND handed to the connection at once: it stops asking for more
 * while its output buffer is full, so big FETCH responses go out in slices
 * at the client's pace instead of overflowing it. */
#define SEND_SLICE (64 * 1024)
/* UIDs per mail_mbox_fetch() call of one FETCH/SEARCH: the next batch is
 * read only once the previous one went out to the connection, so a large
 * FETCH moves at the client's pace and holds a few messages at a time. */
#define FETCH_BATCH_BODIES 8
#define FETCH_BATCH 2000

/* ---- the thread's mailbox store ---- */

struct thread_mbox {
	struct store_pgpool *pool;
	struct mail_mbox_store *st;
};

static pthread_key_t tm_key;
static pthread_once_t tm_once = PTHREAD_ONCE_INIT;
static bool tm_key_ok;

static void tm_destroy(void *ptr)
{
	struct thread_mbox *tm = ptr;

	/* every connection of the thread is gone when the thread ends */
	mail_mbox_store_free(&tm->st);
	free(tm);
}

static void tm_init(void)
{
	tm_key_ok = pthread_key_create(&tm_key, tm_destroy) == 0;
}

static struct mail_mbox_store *thread_mbox(struct fe_backend *b, const char *node,
					   struct store_blob_cache *cache, const char **error_r)
{
	struct thread_mbox *tm;

	if (b == NULL || b->pg == NULL) {
		*error_r = "no PostgreSQL";
		return NULL;
	}
	(void)pthread_once(&tm_once, tm_init);
	if (!tm_key_ok) {
		*error_r = "no thread key";
		return NULL;
	}
	tm = pthread_getspecific(tm_key);
	if (tm != NULL && tm->pool == b->pg)
		return tm->st;
	if (tm == NULL) {
		tm = calloc(1, sizeof(*tm));
		if (tm == NULL || pthread_setspecific(tm_key, tm) != 0) {
			free(tm);
			*error_r = "out of memory";
			return NULL;
		}
	}
	/* a new pool on this thread (never in practice): the old store's
	 * statements went with the old pool */
	mail_mbox_store_free(&tm->st);
	{
		struct mail_mbox_settings set = {
			.pool = b->pg, .redis = b->redis, .node = node, .cache = cache,
		};

		tm->st = mail_mbox_store_new(&set, error_r);
	}
	tm->pool = tm->st != NULL ? b->pg : NULL;
	return tm->st;
}

/* ---- the session ---- */

/* A message (or a STORE refusal) the engine could not take yet. */
struct pend_msg {
	struct pend_msg *next;
	bool modified;			/* imap_session_store_modified() */
	struct imap_message_data md;	/* pointers into this allocation */
};

struct own_store {
	uint32_t uid;
	uint64_t modseq;
};

/* What to tell the engine once the changes after a request were read. */
enum post_action { POST_NONE, POST_APPEND, POST_COPY, POST_POLL };

struct fe_imap {
	struct fe_conn *conn;
	struct fe_thread *th;
	struct fe_node *node;
	const struct fe_session_info *info;
	struct imap_session *s;
	struct mail_mbox_store *st;	/* NULL without PostgreSQL */
	unsigned int outstanding;
	bool gone;

	char user[IMAP_MAX_USER_LEN + 1];
	uint64_t account_id;
	struct fe_login *login;		/* throttled login, slot, registry entry */

	/* the request handed to us and not answered yet */
	const struct imap_request *req;
	const struct imap_request *held;	/* waits for a changes read */
	const char *req_name;
	struct timespec req_t0;

	/* the selected mailbox */
	bool selected;
	bool readonly;
	char sel_name[MAIL_MBOX_NAME_MAX + 1];	/* normalised */
	uint64_t mailbox_id;
	uint32_t uidvalidity, known_uidnext;
	uint64_t since_modseq;
	uint32_t *recent;			/* this session's \Recent, ascending */
	size_t recent_count, recent_cap;
	struct own_store *own;			/* own STORE results not yet seen */
	size_t own_count, own_cap;
	struct store_redis_sub *sub;
	bool sub_ready;
	pn_io_id timer;
	bool changes_busy, dirty;

	enum post_action post;
	enum imap_result post_result;
	uint32_t post_uidvalidity, post_uid;
	uint32_t *post_src, *post_dst;
	size_t post_count;

	/* the rest of a large SEND, copied out of the engine */
	uint8_t *sbuf;
	size_t sbuf_cap, sbuf_len, sbuf_off;

	/* MESSAGES: UIDs read so far; the next batch is due */
	size_t fetch_pos;
	bool fetch_more;

	/* MESSAGES / STORE output waiting for the engine */
	struct pend_msg *pend_head, **pend_tail;
	bool final_pending;
	enum imap_result final_result;
};

static struct fe_metrics *metrics(const struct fe_imap *p)
{
	return &p->node->metrics;
}

static void log_error(const struct fe_imap *p, const char *what, const char *error)
{
	pn_warn("event=storage_error session=%s protocol=imap op=%s error=\"%s\"",
		p->info->session_id, what, error != NULL ? error : "");
}

static void log_bug(const struct fe_imap *p, const char *error)
{
	pn_error("event=imap_bug session=%s error=\"%s\"", p->info->session_id, error);
}

static void req_start(struct fe_imap *p, const struct imap_request *req, const char *name)
{
	p->req = req;
	p->req_name = name;
	fe_metrics_command(metrics(p), "imap", name);
	clock_gettime(CLOCK_MONOTONIC, &p->req_t0);
}

/* The final answer went to the engine. */
static void req_done(struct fe_imap *p)
{
	struct timespec t;

	if (p->req == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t);
	fe_metrics_command_time(metrics(p), "imap", p->req_name,
				(double)(t.tv_sec - p->req_t0.tv_sec) +
				(double)(t.tv_nsec - p->req_t0.tv_nsec) / 1e9);
	p->req = NULL;
}

static enum imap_result map_result(enum mail_mbox_result r, bool target)
{
	switch (r) {
	case MAIL_MBOX_OK:
		return IMAP_RESULT_OK;
	case MAIL_MBOX_TEMPFAIL:
		return IMAP_RESULT_TEMPFAIL;
	case MAIL_MBOX_NONEXISTENT:
		return target ? IMAP_RESULT_TRYCREATE : IMAP_RESULT_NONEXISTENT;
	case MAIL_MBOX_ALREADYEXISTS:
		return IMAP_RESULT_ALREADYEXISTS;
	case MAIL_MBOX_CANNOT:
		return IMAP_RESULT_CANNOT;
	case MAIL_MBOX_OVERQUOTA:
		return IMAP_RESULT_OVERQUOTA;
	case MAIL_MBOX_FAILED:
	case MAIL_MBOX_FULL:
		break;
	}
	return IMAP_RESULT_NO;
}

/* The answer to a mail_mbox_* call that returned -1 (errno set). */
static enum imap_result call_failed(void)
{
	if (errno == EINVAL)
		return IMAP_RESULT_CANNOT;
	if (errno == EFBIG)
		return IMAP_RESULT_NO;
	return IMAP_RESULT_TEMPFAIL;
}

static bool uid_in(const uint32_t *uids, size_t count, uint32_t uid)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (uids[mid] == uid)
			return true;
		if (uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static bool is_recent(const struct fe_imap *p, uint32_t uid)
{
	return uid_in(p->recent, p->recent_count, uid);
}

static int recent_add(struct fe_imap *p, uint32_t uid)
{
	if (p->recent_count > 0 && p->recent[p->recent_count - 1] >= uid)
		return 0; /* ascending only */
	if (p->recent_count == p->recent_cap) {
		size_t cap = p->recent_cap != 0 ? p->recent_cap * 2 : 16;
		uint32_t *n = realloc(p->recent, cap * sizeof(*n));

		if (n == NULL)
			return -1;
		p->recent = n;
		p->recent_cap = cap;
	}
	p->recent[p->recent_count++] = uid;
	return 0;
}

/* Flag names of a message into names (MAX_FLAG_NAMES); returns the count. */
static size_t flag_names(const char **names, unsigned int bits, const char *const *keywords,
			 size_t keyword_count, bool recent)
{
	size_t n = 0;

	for (unsigned int bit = 1; bit <= MAIL_FLAG_DRAFT; bit <<= 1)
		if ((bits & bit) != 0)
			names[n++] = mail_flag_name(bit);
	if (recent)
		names[n++] = "\\Recent";
	for (size_t i = 0; i < keyword_count && n < MAX_FLAG_NAMES; i++)
		names[n++] = keywords[i];
	return n;
}

/* Ascending UIDs into ranges (*ranges_r freed by the caller). */
static int uidset_of(const uint32_t *uids, size_t count, struct mail_uidset *set_r,
		     struct mail_uid_range **ranges_r)
{
	struct mail_uid_range *r = calloc(count > 0 ? count : 1, sizeof(*r));
	size_t n = 0;

	if (r == NULL)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (n > 0 && uids[i] <= r[n - 1].hi)
			continue;
		if (n > 0 && uids[i] == r[n - 1].hi + 1) {
			r[n - 1].hi = uids[i];
			continue;
		}
		r[n].lo = r[n].hi = uids[i];
		n++;
	}
	set_r->ranges = r;
	set_r->count = n;
	*ranges_r = r;
	return 0;
}

/* Splits IMAP flag names into system bits and keywords (\Recent and
 * unknown system flags are dropped). Returns -1 when there are too many. */
static int split_flags(const char *const *flags, size_t count, unsigned int *bits_r,
		       const char **keywords, size_t *keyword_count_r)
{
	size_t k = 0;

	*bits_r = 0;
	for (size_t i = 0; i < count; i++) {
		unsigned int bit = mail_flag_bit(flags[i]);

		if (bit != 0) {
			*bits_r |= bit;
		} else if (flags[i][0] != '\\') {
			if (k == MAIL_MBOX_KEYWORDS_MAX)
				return -1;
			keywords[k++] = flags[i];
		}
	}
	*keyword_count_r = k;
	return 0;
}

/* ---- own STORE results (not echoed as FLAGS) ---- */

static void own_add(struct fe_imap *p, uint32_t uid, uint64_t modseq)
{
	if (p->own_count == p->own_cap) {
		size_t cap = p->own_cap != 0 ? p->own_cap * 2 : 16;
		struct own_store *n = realloc(p->own, cap * sizeof(*n));

		if (n == NULL)
			return; /* at worst a repeated FETCH FLAGS */
		p->own = n;
		p->own_cap = cap;
	}
	p->own[p->own_count++] = (struct own_store){ .uid = uid, .modseq = modseq };
}

static int own_cmp(const void *a, const void *b)
{
	const struct own_store *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->modseq < y->modseq ? -1 : x->modseq > y->modseq ? 1 : 0;
}

/* Sorts the list for own_seen() (once per changes read). */
static void own_sort(struct fe_imap *p)
{
	if (p->own_count > 1)
		qsort(p->own, p->own_count, sizeof(*p->own), own_cmp);
}

static bool own_seen(const struct fe_imap *p, uint32_t uid, uint64_t modseq)
{
	struct own_store key = { .uid = uid, .modseq = modseq };

	return p->own_count > 0 &&
	       bsearch(&key, p->own, p->own_count, sizeof(*p->own), own_cmp) != NULL;
}

/* Forgets own results at or below modseq (changes were read up to it). */
static void own_prune(struct fe_imap *p, uint64_t modseq)
{
	size_t n = 0;

	for (size_t i = 0; i < p->own_count; i++)
		if (p->own[i].modseq > modseq)
			p->own[n++] = p->own[i];
	p->own_count = n;
}

/* ---- pending messages ---- */

static struct pend_msg *pend_copy(const struct imap_message_data *md, bool modified)
{
	size_t size = sizeof(struct pend_msg) + md->flag_count * sizeof(char *);
	size_t envlen = md->envelope != NULL ? strlen(md->envelope) + 1 : 0;
	size_t bslen = md->bodystructure != NULL ? strlen(md->bodystructure) + 1 : 0;
	struct pend_msg *pm;
	char *at;
	const char **flags;

	for (size_t i = 0; i < md->flag_count; i++)
		size += strlen(md->flags[i]) + 1;
	size += envlen + bslen + md->data_len;
	pm = malloc(size);
	if (pm == NULL)
		return NULL;
	pm->next = NULL;
	pm->modified = modified;
	pm->md = *md;
	flags = (const char **)(pm + 1);
	at = (char *)(flags + md->flag_count);
	for (size_t i = 0; i < md->flag_count; i++) {
		size_t l = strlen(md->flags[i]) + 1;

		memcpy(at, md->flags[i], l);
		flags[i] = at;
		at += l;
	}
	pm->md.flags = flags;
	if (envlen > 0) {
		memcpy(at, md->envelope, envlen);
		pm->md.envelope = at;
		at += envlen;
	}
	if (bslen > 0) {
		memcpy(at, md->bodystructure, bslen);
		pm->md.bodystructure = at;
		at += bslen;
	}
	if (md->data != NULL && md->data_len > 0) {
		memcpy(at, md->data, md->data_len);
		pm->md.data = (const uint8_t *)at;
	}
	return pm;
}

static bool output_full(const char *error)
{
	return strncmp(error, "output buffer full", 18) == 0;
}

/* Gives the engine a message now or queues it. */
static void give_message(struct fe_imap *p, const struct imap_message_data *md, bool modified)
{
	const char *error;
	int r;

	if (p->gone)
		return;
	if (p->pend_head == NULL) {
		r = modified ? imap_session_store_modified(p->s, md->uid, &error)
			     : imap_session_message(p->s, md, &error);
		if (r == 0)
			return;
		if (!output_full(error)) {
			pn_warn("event=imap_message_refused session=%s uid=%" PRIu32 " error=\"%s\"",
				p->info->session_id, md->uid, error);
			return;
		}
	}
	{
		struct pend_msg *pm = pend_copy(md, modified);

		if (pm == NULL) {
			pn_warn("event=imap_message_dropped session=%s uid=%" PRIu32
				" error=\"out of memory\"", p->info->session_id, md->uid);
			return;
		}
		*p->pend_tail = pm;
		p->pend_tail = &pm->next;
	}
}

static void pend_clear(struct fe_imap *p)
{
	while (p->pend_head != NULL) {
		struct pend_msg *pm = p->pend_head;

		p->pend_head = pm->next;
		free(pm);
	}
	p->pend_tail = &p->pend_head;
}

/* The final result of MESSAGES/STORE, after the queued messages. */
static void give_final(struct fe_imap *p, enum imap_result result)
{
	const char *error;

	if (p->pend_head != NULL && !p->gone) {
		p->final_pending = true;
		p->final_result = result;
		return;
	}
	pend_clear(p);
	p->final_pending = false;
	if (imap_session_result(p->s, result, &error) < 0)
		log_bug(p, error);
	req_done(p);
}

/* From next(): as much of the queue as the engine takes. */
static void pend_flush(struct fe_imap *p)
{
	const char *error;

	if (p->gone)
		pend_clear(p);
	while (p->pend_head != NULL) {
		struct pend_msg *pm = p->pend_head;
		int r = pm->modified ? imap_session_store_modified(p->s, pm->md.uid, &error)
				     : imap_session_message(p->s, &pm->md, &error);

		if (r < 0 && output_full(error))
			return;
		if (r < 0)
			pn_warn("event=imap_message_refused session=%s uid=%" PRIu32 " error=\"%s\"",
				p->info->session_id, pm->md.uid, error);
		p->pend_head = pm->next;
		free(pm);
	}
	p->pend_tail = &p->pend_head;
	if (p->final_pending)
		give_final(p, p->final_result);
}

/* ---- the selected mailbox: notifications and changes ---- */

static void start_changes(struct fe_imap *p);

static void sub_cb(void *ctx, enum store_redis_sub_event ev, const char *channel,
		   const char *msg, size_t len)
{
	struct fe_imap *p = ctx;

	(void)channel;
	(void)msg;
	(void)len;
	if (ev == STORE_REDIS_SUB_LOST) {
		/* poll until the subscription is back */
		p->sub_ready = false;
		if (p->selected && !p->gone)
			pn_io_timer_set(p->th->loop, p->timer, POLL_FAST_MS);
		return;
	}
	/* READY: messages may have been lost while unsubscribed; MESSAGE:
	 * something changed. Either way, read the changes. */
	if (ev == STORE_REDIS_SUB_READY)
		p->sub_ready = true;
	/* From the timer, not from inside the Redis client's callback: the
	 * wakeup may end the session, which unsubscribes. */
	if (p->selected && !p->gone)
		pn_io_timer_set(p->th->loop, p->timer, 0);
}

static void timer_cb(void *ctx)
{
	struct fe_imap *p = ctx;

	if (!p->selected || p->gone)
		return;
	p->dirty = true;
	pn_io_timer_set(p->th->loop, p->timer, p->sub_ready ? POLL_SLOW_MS : POLL_FAST_MS);
	fe_conn_wakeup(p->conn);
}

static const struct pn_io_handlers timer_handlers = { .on_timer = timer_cb };

static void unselect(struct fe_imap *p)
{
	store_redis_unsubscribe(&p->sub);
	p->sub_ready = false;
	if (p->timer != PN_IO_NONE)
		pn_io_timer_cancel(p->th->loop, p->timer);
	p->selected = false;
	p->dirty = false;
	p->recent_count = 0;
	p->own_count = 0;
}

static void post_answer(struct fe_imap *p)
{
	const char *error = NULL;
	int r = 0;

	switch (p->post) {
	case POST_NONE:
		return;
	case POST_APPEND:
		r = imap_session_append_result(p->s, p->post_result, p->post_uidvalidity,
					       p->post_uid, &error);
		break;
	case POST_COPY:
		r = imap_session_copy_result(p->s, p->post_result, p->post_uidvalidity,
					     p->post_src, p->post_dst, p->post_count, &error);
		break;
	case POST_POLL:
		r = imap_session_result(p->s, p->post_result, &error);
		break;
	}
	if (r < 0)
		log_bug(p, error);
	free(p->post_src);
	free(p->post_dst);
	p->post_src = p->post_dst = NULL;
	p->post_count = 0;
	p->post = POST_NONE;
	req_done(p);
}

static void notify_flags(struct fe_imap *p, const struct mail_mbox_flagmsg *m,
			 enum imap_notify_type type, bool recent)
{
	const char *names[MAX_FLAG_NAMES];
	struct imap_notify n = {
		.type = type,
		.uid = m->uid,
		.modseq = m->modseq,
		.recent = recent,
		.flags = names,
	};

	n.flag_count = flag_names(names, m->flags, m->keywords, m->keyword_count,
				  recent || is_recent(p, m->uid));
	if (imap_session_notify(p->s, &n) < 0)
		pn_warn("event=imap_notify_failed session=%s error=\"out of memory\"",
			p->info->session_id);
}

static void changes_cb(void *ctx, enum mail_mbox_result res, const struct mail_mbox_changes *ch,
		       const char *error)
{
	struct fe_imap *p = ctx;

	p->outstanding--;
	p->changes_busy = false;
	if (res == MAIL_MBOX_NONEXISTENT ||
	    (res == MAIL_MBOX_OK && p->selected && strcmp(ch->name, p->sel_name) != 0)) {
		/* deleted or renamed away by another session: the client is
		 * told with a BYE (docs/frontend.md) */
		pn_info("event=imap_mailbox_gone session=%s mailbox=%" PRIu64 " reason=%s",
			p->info->session_id, p->mailbox_id,
			res == MAIL_MBOX_OK ? "renamed" : "deleted");
		if (p->selected && !p->gone)
			imap_session_mailbox_gone(p->s);
		unselect(p);
	} else if (res != MAIL_MBOX_OK) {
		log_error(p, "changes", error);
	} else if (p->selected && !p->gone) {
		for (size_t i = 0; i < ch->expunged_count; i++) {
			struct imap_notify n = { .type = IMAP_NOTIFY_EXPUNGE, .uid = ch->expunged[i] };

			(void)imap_session_notify(p->s, &n);
		}
		own_sort(p);
		for (size_t i = 0; i < ch->changed_count; i++)
			if (!own_seen(p, ch->changed[i].uid, ch->changed[i].modseq))
				notify_flags(p, &ch->changed[i], IMAP_NOTIFY_FLAGS, false);
		for (size_t i = 0; i < ch->added_count; i++) {
			/* claimed by this session (SELECT), or nobody's yet
			 * (EXAMINE reads without claiming) */
			bool recent = ch->added[i].uid > ch->recent_after;

			if (recent && recent_add(p, ch->added[i].uid) < 0)
				recent = false;
			notify_flags(p, &ch->added[i], IMAP_NOTIFY_EXISTS, recent);
		}
		if (ch->highestmodseq > p->since_modseq)
			p->since_modseq = ch->highestmodseq;
		if (ch->uidnext > p->known_uidnext)
			p->known_uidnext = ch->uidnext;
		own_prune(p, p->since_modseq);
	}
	post_answer(p);
	fe_conn_wakeup(p->conn);
}

/* Reads the changes since the last look (no request in flight). */
static void start_changes(struct fe_imap *p)
{
	p->dirty = false;
	if (!p->selected || p->st == NULL ||
	    mail_mbox_changes(p->st, p->account_id, p->mailbox_id, p->since_modseq,
			      p->known_uidnext, !p->readonly, changes_cb, p) < 0) {
		post_answer(p);
		return;
	}
	p->changes_busy = true;
	p->outstanding++;
}

/* ---- AUTH_VERIFY ---- */

/* fe_login logs and counts the login; here only its answer in IMAP's
 * words (docs/frontend.md: throttled NO [UNAVAILABLE], too many sessions
 * NO [LIMIT]). */
static void auth_cb(void *ctx, const struct fe_login_result *res)
{
	struct fe_imap *p = ctx;
	enum imap_result r;
	const char *error;

	p->outstanding--;
	switch (res->status) {
	case FE_LOGIN_OK:
		r = p->st != NULL ? IMAP_RESULT_OK : IMAP_RESULT_TEMPFAIL;
		p->account_id = res->account_id;
		break;
	case FE_LOGIN_BAD:
	case FE_LOGIN_DISABLED:
		r = IMAP_RESULT_AUTH_FAILED;
		break;
	case FE_LOGIN_SESSION_LIMIT:
		r = IMAP_RESULT_LIMIT;
		break;
	default:
		r = IMAP_RESULT_TEMPFAIL;
		break;
	}
	if (imap_session_auth_result(p->s, r, &error) < 0)
		log_bug(p, error);
	req_done(p);
	fe_conn_wakeup(p->conn);
}

static void start_auth(struct fe_imap *p, const struct imap_request *req)
{
	const char *error;

	snprintf(p->user, sizeof(p->user), "%s", req->auth.user);
	if (req->auth.authzid[0] != '\0' && strcmp(req->auth.authzid, req->auth.user) != 0) {
		/* No proxy authorization in Postern. */
		fe_metrics_login(metrics(p), "imap", "bad");
		pn_info("event=login session=%s protocol=imap result=bad reason=\"authzid differs\"",
			p->info->session_id);
		imap_session_auth_result(p->s, IMAP_RESULT_AUTH_FAILED, &error);
		req_done(p);
		return;
	}
	if (p->login == NULL ||
	    fe_login_start(p->login, req->auth.user, req->auth.password, auth_cb, p) < 0) {
		fe_metrics_login(metrics(p), "imap", "tempfail");
		imap_session_auth_result(p->s, IMAP_RESULT_TEMPFAIL, &error);
		req_done(p);
		return;
	}
	p->outstanding++;
}

/* ---- LIST / STATUS ---- */

static unsigned int special_use_bit(const char *s)
{
	static const struct {
		const char *name;
		unsigned int bit;
	} map[] = {
		{ "\\Sent", IMAP_MBOX_SENT }, { "\\Drafts", IMAP_MBOX_DRAFTS },
		{ "\\Trash", IMAP_MBOX_TRASH }, { "\\Junk", IMAP_MBOX_JUNK },
		{ "\\Archive", IMAP_MBOX_ARCHIVE }, { "\\All", IMAP_MBOX_ALL },
		{ "\\Flagged", IMAP_MBOX_FLAGGED },
	};

	if (s == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasecmp(s, map[i].name) == 0)
			return map[i].bit;
	return 0;
}

static void list_cb(void *ctx, enum mail_mbox_result res, const struct mail_mbox_info *boxes,
		    size_t count, const char *error)
{
	struct fe_imap *p = ctx;
	struct imap_mailbox_info *infos = NULL;
	enum imap_result r = map_result(res, false);
	const char *e2;

	p->outstanding--;
	if (res != MAIL_MBOX_OK)
		log_error(p, "list", error);
	if (res == MAIL_MBOX_OK && count > 0) {
		infos = calloc(count, sizeof(*infos));
		if (infos == NULL)
			r = IMAP_RESULT_TEMPFAIL;
	}
	if (infos != NULL)
		for (size_t i = 0; i < count; i++)
			infos[i] = (struct imap_mailbox_info){
				.name = boxes[i].name,
				.special_use = special_use_bit(boxes[i].special_use),
				.subscribed = boxes[i].subscribed,
				.noselect = boxes[i].noselect,
			};
	if (imap_session_list_result(p->s, r, infos, r == IMAP_RESULT_OK ? count : 0, &e2) < 0)
		log_bug(p, e2);
	free(infos);
	req_done(p);
	fe_conn_wakeup(p->conn);
}

static void status_cb(void *ctx, enum mail_mbox_result res, const struct mail_mbox_status *st,
		      const char *error)
{
	struct fe_imap *p = ctx;
	struct imap_status_result sr = { .result = map_result(res, false) };
	const char *e2;

	p->outstanding--;
	if (res == MAIL_MBOX_OK) {
		sr.messages = st->messages;
		sr.recent = st->recent;
		sr.uidnext = st->uidnext;
		sr.uidvalidity = st->uidvalidity;
		sr.unseen = st->unseen;
		sr.highestmodseq = st->highestmodseq;
	} else if (res == MAIL_MBOX_TEMPFAIL || res == MAIL_MBOX_FAILED) {
		log_error(p, "status", error);
	}
	if (imap_session_status_result(p->s, &sr, &e2) < 0)
		log_bug(p, e2);
	req_done(p);
	fe_conn_wakeup(p->conn);
}

/* ---- SELECT / EXAMINE ---- */

static void select_cb(void *ctx, enum mail_mbox_result res, const struct mail_mbox_selected *sel,
		      const char *error)
{
	struct fe_imap *p = ctx;
	struct imap_select_result sr = { .result = map_result(res, false) };
	const char **flags = NULL;
	const char *e2;

	p->outstanding--;
	if (res == MAIL_MBOX_OK && !p->gone) {
		struct fe_backend *b = fe_thread_backend(p->th);

		p->mailbox_id = sel->id;
		p->uidvalidity = sel->uidvalidity;
		p->known_uidnext = sel->uidnext;
		p->since_modseq = sel->highestmodseq;
		p->recent_count = 0;
		p->own_count = 0;
		/* SELECT claimed the messages above recent_after; EXAMINE
		 * shows the same ones as \Recent without claiming them
		 * (RFC 3501 2.3.2: "if the session is read-only, subsequent
		 * sessions will also see this flag set"; 6.3.2). */
		for (size_t i = 0; i < sel->count; i++)
			if (sel->uids[i] > sel->recent_after)
				(void)recent_add(p, sel->uids[i]);
		sr.uids = sel->uids;
		sr.count = sel->count;
		sr.recent = (uint32_t)p->recent_count;
		sr.uidvalidity = sel->uidvalidity;
		sr.uidnext = sel->uidnext;
		sr.highestmodseq = sel->highestmodseq;
		if (sel->first_unseen_uid != 0) {
			for (size_t i = 0; i < sel->count; i++)
				if (sel->uids[i] == sel->first_unseen_uid) {
					sr.first_unseen = (uint32_t)(i + 1);
					break;
				}
		}
		if (sel->keyword_count > 0) {
			flags = calloc(5 + sel->keyword_count, sizeof(*flags));
			if (flags != NULL) {
				size_t n = flag_names(flags, MAIL_FLAG_SEEN | MAIL_FLAG_ANSWERED |
						      MAIL_FLAG_FLAGGED | MAIL_FLAG_DELETED |
						      MAIL_FLAG_DRAFT, NULL, 0, false);

				for (size_t i = 0; i < sel->keyword_count; i++)
					flags[n++] = sel->keywords[i];
				sr.flags = flags;
				sr.flag_count = n;
			}
		}
		p->selected = true;
		if (b != NULL && b->redis != NULL)
			p->sub = store_rnotify_subscribe(b->redis, p->account_id, p->mailbox_id,
							 sub_cb, p);
		if (p->timer != PN_IO_NONE)
			pn_io_timer_set(p->th->loop, p->timer, POLL_FAST_MS);
	} else if (res == MAIL_MBOX_TEMPFAIL || res == MAIL_MBOX_FAILED) {
		log_error(p, "select", error);
	}
	if (imap_session_select_result(p->s, &sr, &e2) < 0) {
		log_bug(p, e2);
		unselect(p);
	} else if (sr.result != IMAP_RESULT_OK) {
		unselect(p);
	}
	free(flags);
	req_done(p);
	fe_conn_wakeup(p->conn);
}

/* ---- CREATE / DELETE / RENAME / (UN)SUBSCRIBE ---- */

/* The session's own RENAME of its selected mailbox (or of a superior):
 * the selection follows the new name, as the engine's view does, so that
 * the changes read does not take it for a rename by another session. Own
 * DELETE needs nothing here: the engine leaves the Selected state and
 * next() unselects. */
static void follow_rename(struct fe_imap *p, const char *old_name, const char *new_name)
{
	char from[MAIL_MBOX_NAME_MAX + 1], to[MAIL_MBOX_NAME_MAX + 1];
	size_t len;

	if (!p->selected || mail_mbox_name_normalize(old_name, from, sizeof(from)) < 0 ||
	    mail_mbox_name_normalize(new_name, to, sizeof(to)) < 0 ||
	    strcmp(from, "INBOX") == 0)
		return;
	len = strlen(from);
	if (strncmp(p->sel_name, from, len) != 0 ||
	    (p->sel_name[len] != '\0' && p->sel_name[len] != '/'))
		return;
	{
		size_t tolen = strlen(to), tail = strlen(p->sel_name + len);

		if (tolen + tail > MAIL_MBOX_NAME_MAX)
			return; /* the changes read then ends the session */
		memmove(p->sel_name + tolen, p->sel_name + len, tail + 1);
		memcpy(p->sel_name, to, tolen);
	}
}

static void done_cb(void *ctx, enum mail_mbox_result res, uint64_t id, const char *error)
{
	struct fe_imap *p = ctx;
	const char *e2;

	(void)id;
	p->outstanding--;
	if (res == MAIL_MBOX_TEMPFAIL || res == MAIL_MBOX_FAILED)
		log_error(p, p->req_name, error);
	if (res == MAIL_MBOX_OK && p->req->type == IMAP_REQ_MAILBOX_RENAME)
		follow_rename(p, p->req->mailbox, p->req->new_name);
	if (imap_session_result(p->s, map_result(res, false), &e2) < 0)
		log_bug(p, e2);
	req_done(p);
	fe_conn_wakeup(p->conn);
}

/* ---- APPEND ---- */

static bool is_selected_name(const struct fe_imap *p, const char *name)
{
	char norm[MAIL_MBOX_NAME_MAX + 1];

	return p->selected && mail_mbox_name_normalize(name, norm, sizeof(norm)) == 0 &&
	       strcmp(norm, p->sel_name) == 0;
}

static void append_cb(void *ctx, enum mail_mbox_result res, uint64_t mailbox_id,
		      uint32_t uidvalidity, uint32_t uid, uint64_t modseq, const char *error)
{
	struct fe_imap *p = ctx;

	(void)modseq;
	p->outstanding--;
	if (res == MAIL_MBOX_TEMPFAIL || res == MAIL_MBOX_FAILED)
		log_error(p, "append", error);
	p->post = POST_APPEND;
	p->post_result = map_result(res, true);
	p->post_uidvalidity = uidvalidity;
	p->post_uid = uid;
	if (res == MAIL_MBOX_OK && p->selected && mailbox_id == p->mailbox_id && !p->gone)
		start_changes(p); /* EXISTS before the tagged reply */
	else
		post_answer(p);
	fe_conn_wakeup(p->conn);
}

static void start_append(struct fe_imap *p, const struct imap_request *req)
{
	const char *keywords[MAIL_MBOX_KEYWORDS_MAX];
	struct mail_mbox_append a = {
		.mailbox = req->mailbox,
		.data = req->data,
		.len = req->data_len,
		.has_date = req->has_date,
		.date = req->date,
		.date_tz = req->date_tz,
		.keywords = keywords,
	};
	const char *error;

	if (split_flags(req->flags, req->flag_count, &a.flags, keywords, &a.keyword_count) < 0) {
		errno = EINVAL;
	} else if (mail_mbox_append(p->st, p->account_id, &a, append_cb, p) == 0) {
		p->outstanding++;
		return;
	}
	if (imap_session_append_result(p->s, errno == EINVAL ? IMAP_RESULT_NO : call_failed(),
				       0, 0, &error) < 0)
		log_bug(p, error);
	req_done(p);
}

/* ---- MESSAGES ---- */

static void fetch_msg_cb(void *ctx, const struct mail_mbox_msg *m)
{
	struct fe_imap *p = ctx;
	const char *names[MAX_FLAG_NAMES];
	struct imap_message_data md = {
		.uid = m->uid,
		.flags = names,
		.internaldate = m->internaldate,
		.internaldate_tz = m->internaldate_tz,
		.size = m->size,
		.modseq = m->modseq,
		.envelope = m->envelope,
		.bodystructure = m->bodystructure,
		.data = m->data,
		.data_len = m->data_len,
	};

	md.flag_count = flag_names(names, m->flags, m->keywords, m->keyword_count,
				   is_recent(p, m->uid));
	give_message(p, &md, false);
}

static void fetch_batch(struct fe_imap *p);

static void fetch_done_cb(void *ctx, enum mail_mbox_result res, uint64_t id, const char *error)
{
	struct fe_imap *p = ctx;

	(void)id;
	p->outstanding--;
	if (res != MAIL_MBOX_OK)
		log_error(p, "fetch", error);
	if (res == MAIL_MBOX_OK && p->fetch_pos < p->req->uid_count && !p->gone)
		p->fetch_more = true; /* next() reads on once the output drained */
	else
		give_final(p, map_result(res, false));
	fe_conn_wakeup(p->conn);
}

/* Reads the next batch of the request's UIDs. */
static void fetch_batch(struct fe_imap *p)
{
	const struct imap_request *req = p->req;
	size_t n = req->uid_count - p->fetch_pos;
	size_t batch = (req->need & IMAP_NEED_MESSAGE) != 0 ? FETCH_BATCH_BODIES : FETCH_BATCH;
	unsigned int what = (req->need & IMAP_NEED_MESSAGE) != 0 ? MAIL_FETCH_BODY : 0;
	struct mail_uidset set;
	struct mail_uid_range *ranges;

	p->fetch_more = false;
	if (n > batch)
		n = batch;
	if (uidset_of(req->uids + p->fetch_pos, n, &set, &ranges) < 0) {
		give_final(p, IMAP_RESULT_TEMPFAIL);
		return;
	}
	p->fetch_pos += n;
	if (mail_mbox_fetch(p->st, p->account_id, p->mailbox_id, &set, what, fetch_msg_cb,
			    fetch_done_cb, p) < 0) {
		free(ranges);
		give_final(p, call_failed());
		return;
	}
	free(ranges);
	p->outstanding++;
}

static void start_messages(struct fe_imap *p, const struct imap_request *req)
{
	p->fetch_pos = 0;
	if (req->uid_count == 0) {
		give_final(p, IMAP_RESULT_OK);
		return;
	}
	fetch_batch(p);
}

/* ---- STORE ---- */

static void store_cb(void *ctx, enum mail_mbox_result res, const struct mail_mbox_stored *msgs,
		     size_t count, const char *error)
{
	struct fe_imap *p = ctx;

	p->outstanding--;
	if (res != MAIL_MBOX_OK)
		log_error(p, "store", error);
	for (size_t i = 0; res == MAIL_MBOX_OK && i < count; i++) {
		const struct mail_mbox_stored *m = &msgs[i];
		const char *names[MAX_FLAG_NAMES];
		struct imap_message_data md = {
			.uid = m->uid,
			.flags = names,
			.modseq = m->modseq,
		};

		if (!m->updated) {
			give_message(p, &md, true);
			continue;
		}
		own_add(p, m->uid, m->modseq);
		md.flag_count = flag_names(names, m->flags, m->keywords, m->keyword_count,
					   is_recent(p, m->uid));
		give_message(p, &md, false);
	}
	give_final(p, map_result(res, false));
	fe_conn_wakeup(p->conn);
}

static void start_store(struct fe_imap *p, const struct imap_request *req)
{
	const char *keywords[MAIL_MBOX_KEYWORDS_MAX];
	struct mail_uidset set;
	struct mail_uid_range *ranges;
	struct mail_mbox_store_req sr = {
		.uids = &set,
		.mode = req->store_op == IMAP_STORE_ADD ? MAIL_STORE_ADD :
			req->store_op == IMAP_STORE_REMOVE ? MAIL_STORE_REMOVE : MAIL_STORE_REPLACE,
		.keywords = keywords,
		.unchangedsince = req->has_unchangedsince ? req->unchangedsince : 0,
	};

	if (req->uid_count == 0) {
		give_final(p, IMAP_RESULT_OK);
		return;
	}
	if (split_flags(req->flags, req->flag_count, &sr.flags, keywords, &sr.keyword_count) < 0) {
		give_final(p, IMAP_RESULT_NO);
		return;
	}
	if (uidset_of(req->uids, req->uid_count, &set, &ranges) < 0) {
		give_final(p, IMAP_RESULT_TEMPFAIL);
		return;
	}
	if (mail_mbox_store_flags(p->st, p->account_id, p->mailbox_id, &sr, store_cb, p) < 0) {
		free(ranges);
		give_final(p, errno == EINVAL ? IMAP_RESULT_NO : IMAP_RESULT_TEMPFAIL);
		return;
	}
	free(ranges);
	p->outstanding++;
}

/* ---- COPY / MOVE ---- */

static void copy_cb(void *ctx, enum mail_mbox_result res, uint32_t dst_uidvalidity,
		    const uint32_t *src_uids, const uint32_t *dst_uids, size_t count,
		    const char *error)
{
	struct fe_imap *p = ctx;
	bool into_selected = res == MAIL_MBOX_OK && p->req != NULL &&
			     is_selected_name(p, p->req->mailbox);

	p->outstanding--;
	if (res == MAIL_MBOX_TEMPFAIL || res == MAIL_MBOX_FAILED)
		log_error(p, "copy", error);
	p->post = POST_COPY;
	p->post_result = map_result(res, true);
	p->post_uidvalidity = dst_uidvalidity;
	p->post_count = 0;
	if (res == MAIL_MBOX_OK && count > 0) {
		p->post_src = malloc(count * sizeof(uint32_t));
		p->post_dst = malloc(count * sizeof(uint32_t));
		if (p->post_src != NULL && p->post_dst != NULL) {
			memcpy(p->post_src, src_uids, count * sizeof(uint32_t));
			memcpy(p->post_dst, dst_uids, count * sizeof(uint32_t));
			p->post_count = count;
		}
	}
	if (into_selected && !p->gone)
		start_changes(p);
	else
		post_answer(p);
	fe_conn_wakeup(p->conn);
}

static void start_copy(struct fe_imap *p, const struct imap_request *req)
{
	struct mail_uidset set;
	struct mail_uid_range *ranges;
	const char *error;
	enum imap_result r;

	if (req->uid_count == 0) {
		r = IMAP_RESULT_OK;
	} else if (uidset_of(req->uids, req->uid_count, &set, &ranges) < 0) {
		r = IMAP_RESULT_TEMPFAIL;
	} else {
		int c = mail_mbox_copy(p->st, p->account_id, p->mailbox_id, &set, req->mailbox,
				       req->move, copy_cb, p);

		free(ranges);
		if (c == 0) {
			p->outstanding++;
			return;
		}
		r = call_failed();
	}
	if (imap_session_copy_result(p->s, r, 0, NULL, NULL, 0, &error) < 0)
		log_bug(p, error);
	req_done(p);
}

/* ---- EXPUNGE ---- */

static void expunge_cb(void *ctx, enum mail_mbox_result res, const uint32_t *uids, size_t count,
		       uint64_t modseq, const char *error)
{
	struct fe_imap *p = ctx;
	const char *e2;

	(void)modseq;
	p->outstanding--;
	if (res != MAIL_MBOX_OK)
		log_error(p, "expunge", error);
	if (imap_session_expunge_result(p->s, map_result(res, false), uids,
					res == MAIL_MBOX_OK ? count : 0, &e2) < 0)
		log_bug(p, e2);
	req_done(p);
	fe_conn_wakeup(p->conn);
}

static void start_expunge(struct fe_imap *p, const struct imap_request *req)
{
	struct mail_uidset set;
	struct mail_uid_range *ranges = NULL;
	const char *error;
	enum imap_result r = IMAP_RESULT_TEMPFAIL;

	if (req->uid_count == 0 || uidset_of(req->uids, req->uid_count, &set, &ranges) == 0) {
		int c = mail_mbox_expunge(p->st, p->account_id, p->mailbox_id,
					  req->uid_count > 0 ? &set : NULL, expunge_cb, p);

		free(ranges);
		if (c == 0) {
			p->outstanding++;
			return;
		}
		r = call_failed();
	}
	if (imap_session_expunge_result(p->s, r, NULL, 0, &error) < 0)
		log_bug(p, error);
	req_done(p);
}

/* ---- dispatch ---- */

static const char *req_name(enum imap_request_type t)
{
	switch (t) {
	case IMAP_REQ_AUTH_VERIFY: return "login";
	case IMAP_REQ_MAILBOX_LIST: return "list";
	case IMAP_REQ_MAILBOX_STATUS: return "status";
	case IMAP_REQ_MAILBOX_SELECT: return "select";
	case IMAP_REQ_MAILBOX_CREATE: return "create";
	case IMAP_REQ_MAILBOX_DELETE: return "delete";
	case IMAP_REQ_MAILBOX_RENAME: return "rename";
	case IMAP_REQ_MAILBOX_SUBSCRIBE: return "subscribe";
	case IMAP_REQ_MAILBOX_UNSUBSCRIBE: return "unsubscribe";
	case IMAP_REQ_APPEND: return "append";
	case IMAP_REQ_MESSAGES: return "fetch";
	case IMAP_REQ_STORE: return "store";
	case IMAP_REQ_COPY: return "copy";
	case IMAP_REQ_EXPUNGE: return "expunge";
	case IMAP_REQ_POLL: return "noop";
	}
	return "other";
}

/* A request with no store (PostgreSQL not configured) fails at once. */
static void answer_tempfail(struct fe_imap *p, const struct imap_request *req)
{
	const char *error;
	int r;

	switch (req->type) {
	case IMAP_REQ_AUTH_VERIFY:
		r = imap_session_auth_result(p->s, IMAP_RESULT_TEMPFAIL, &error);
		break;
	case IMAP_REQ_MAILBOX_LIST:
		r = imap_session_list_result(p->s, IMAP_RESULT_TEMPFAIL, NULL, 0, &error);
		break;
	case IMAP_REQ_MAILBOX_STATUS: {
		struct imap_status_result sr = { .result = IMAP_RESULT_TEMPFAIL };

		r = imap_session_status_result(p->s, &sr, &error);
		break;
	}
	case IMAP_REQ_MAILBOX_SELECT: {
		struct imap_select_result sr = { .result = IMAP_RESULT_TEMPFAIL };

		r = imap_session_select_result(p->s, &sr, &error);
		break;
	}
	case IMAP_REQ_APPEND:
		r = imap_session_append_result(p->s, IMAP_RESULT_TEMPFAIL, 0, 0, &error);
		break;
	case IMAP_REQ_COPY:
		r = imap_session_copy_result(p->s, IMAP_RESULT_TEMPFAIL, 0, NULL, NULL, 0, &error);
		break;
	case IMAP_REQ_EXPUNGE:
		r = imap_session_expunge_result(p->s, IMAP_RESULT_TEMPFAIL, NULL, 0, &error);
		break;
	default:
		r = imap_session_result(p->s, IMAP_RESULT_TEMPFAIL, &error);
		break;
	}
	if (r < 0)
		log_bug(p, error);
	req_done(p);
}

static void dispatch(struct fe_imap *p, const struct imap_request *req)
{
	int c = -1;

	req_start(p, req, req_name(req->type));
	if (req->type == IMAP_REQ_AUTH_VERIFY) {
		start_auth(p, req);
		return;
	}
	if (p->st == NULL || p->gone) {
		answer_tempfail(p, req);
		return;
	}
	switch (req->type) {
	case IMAP_REQ_AUTH_VERIFY:
		break;
	case IMAP_REQ_MAILBOX_LIST:
		c = mail_mbox_list(p->st, p->account_id, "", "*", false, list_cb, p);
		break;
	case IMAP_REQ_MAILBOX_STATUS:
		c = mail_mbox_status(p->st, p->account_id, req->mailbox, status_cb, p);
		break;
	case IMAP_REQ_MAILBOX_SELECT:
		/* a failed SELECT leaves nothing selected (RFC 3501 6.3.1) */
		unselect(p);
		p->readonly = req->readonly;
		if (mail_mbox_name_normalize(req->mailbox, p->sel_name, sizeof(p->sel_name)) < 0) {
			errno = EINVAL;
			break;
		}
		c = mail_mbox_select(p->st, p->account_id, req->mailbox, !req->readonly,
				     select_cb, p);
		break;
	case IMAP_REQ_MAILBOX_CREATE:
		c = mail_mbox_create(p->st, p->account_id, req->mailbox, done_cb, p);
		break;
	case IMAP_REQ_MAILBOX_DELETE:
		c = mail_mbox_delete(p->st, p->account_id, req->mailbox, done_cb, p);
		break;
	case IMAP_REQ_MAILBOX_RENAME:
		c = mail_mbox_rename(p->st, p->account_id, req->mailbox, req->new_name, done_cb, p);
		break;
	case IMAP_REQ_MAILBOX_SUBSCRIBE:
	case IMAP_REQ_MAILBOX_UNSUBSCRIBE:
		c = mail_mbox_subscribe(p->st, p->account_id, req->mailbox,
					req->type == IMAP_REQ_MAILBOX_SUBSCRIBE, done_cb, p);
		break;
	case IMAP_REQ_APPEND:
		start_append(p, req);
		return;
	case IMAP_REQ_MESSAGES:
		start_messages(p, req);
		return;
	case IMAP_REQ_STORE:
		start_store(p, req);
		return;
	case IMAP_REQ_COPY:
		start_copy(p, req);
		return;
	case IMAP_REQ_EXPUNGE:
		start_expunge(p, req);
		return;
	case IMAP_REQ_POLL:
		p->post = POST_POLL;
		p->post_result = IMAP_RESULT_OK;
		start_changes(p);
		return;
	}
	if (c == 0) {
		p->outstanding++;
		return;
	}
	{
		enum imap_result r = call_failed();
		const char *error;
		int rr;

		if (req->type == IMAP_REQ_MAILBOX_LIST) {
			rr = imap_session_list_result(p->s, r, NULL, 0, &error);
		} else if (req->type == IMAP_REQ_MAILBOX_STATUS) {
			struct imap_status_result sr = { .result = r };

			rr = imap_session_status_result(p->s, &sr, &error);
		} else if (req->type == IMAP_REQ_MAILBOX_SELECT) {
			struct imap_select_result sr = { .result = r };

			rr = imap_session_select_result(p->s, &sr, &error);
		} else {
			rr = imap_session_result(p->s, r, &error);
		}
		if (rr < 0)
			log_bug(p, error);
		req_done(p);
	}
}

/* ---- the adapter ---- */

static void *imap_create(struct fe_conn *conn, const struct fe_session_info *info,
			 const char **error_r)
{
	struct fe_imap *p = calloc(1, sizeof(*p));
	struct imap_settings set;
	const char *error;

	if (p == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	p->conn = conn;
	p->th = fe_conn_thread(conn);
	p->node = fe_thread_node(p->th);
	p->info = info;
	p->pend_tail = &p->pend_head;
	p->st = thread_mbox(fe_thread_backend(p->th), p->node->node_name, p->node->blob_cache,
			    &error);
	if (p->st == NULL)
		pn_debug("event=imap_no_store session=%s error=\"%s\"", info->session_id, error);
	imap_settings_defaults(&set);
	set.hostname = info->hostname;
	set.tls_active = info->tls;
	set.starttls_available = info->tls_available;
	set.trusted = info->secured;
	p->timer = pn_io_add(p->th->loop, -1, 0, &timer_handlers, p);
	p->s = imap_session_new(&set);
	p->login = fe_login_new(conn, "imap");
	if (p->s == NULL || p->timer == PN_IO_NONE || p->login == NULL) {
		if (p->timer != PN_IO_NONE)
			pn_io_close(p->th->loop, p->timer);
		imap_session_free(&p->s);
		fe_login_free(&p->login);
		free(p);
		*error_r = "cannot create the IMAP session";
		return NULL;
	}
	return p;
}

static size_t imap_feed(void *s, const uint8_t *data, size_t len)
{
	struct fe_imap *p = s;

	return imap_session_feed(p->s, data, len);
}

/* Copies the part of a SEND beyond the first slice (the engine's pointer
 * is only valid until its next call). Returns -1 if out of memory: the
 * whole SEND then goes at once. */
static int keep_rest(struct fe_imap *p, const uint8_t *data, size_t len)
{
	if (len > p->sbuf_cap) {
		uint8_t *n = realloc(p->sbuf, len);

		if (n == NULL)
			return -1;
		p->sbuf = n;
		p->sbuf_cap = len;
	}
	memcpy(p->sbuf, data, len);
	p->sbuf_len = len;
	p->sbuf_off = 0;
	return 0;
}

static int imap_next(void *s, struct fe_action *act)
{
	struct fe_imap *p = s;
	struct imap_action a;

	memset(act, 0, sizeof(*act));
	if (p->sbuf_off < p->sbuf_len) {
		size_t n = p->sbuf_len - p->sbuf_off;

		act->type = FE_ACT_SEND;
		act->data = p->sbuf + p->sbuf_off;
		act->len = n < SEND_SLICE ? n : SEND_SLICE;
		p->sbuf_off += act->len;
		return 1;
	}
	p->sbuf_len = p->sbuf_off = 0;
	if (p->sbuf_cap > 4 * SEND_SLICE) {
		free(p->sbuf);
		p->sbuf = NULL;
		p->sbuf_cap = 0;
	}
	for (;;) {
		int r;

		if (p->pend_head != NULL || p->final_pending)
			pend_flush(p);
		if (p->fetch_more && p->pend_head == NULL) {
			if (p->gone)
				give_final(p, IMAP_RESULT_TEMPFAIL);
			else
				fetch_batch(p);
			p->fetch_more = false;
			continue;
		}
		if (p->selected && imap_session_state(p->s) != IMAP_STATE_SELECTED &&
		    p->req == NULL)
			unselect(p); /* CLOSE, UNSELECT, LOGOUT */
		if (p->req == NULL && !p->changes_busy) {
			if (p->held != NULL) {
				const struct imap_request *req = p->held;

				p->held = NULL;
				dispatch(p, req);
				continue;
			}
			if (p->dirty && p->selected && !p->gone) {
				start_changes(p);
				continue;
			}
		}
		r = imap_session_next(p->s, &a);
		if (r < 0)
			return p->outstanding > 0 ? 0 : -1;
		if (r == 0)
			return 0;
		switch (a.type) {
		case IMAP_ACTION_SEND:
			act->type = FE_ACT_SEND;
			act->data = a.send.data;
			act->len = a.send.len;
			if (a.send.len > SEND_SLICE && keep_rest(p, a.send.data + SEND_SLICE,
								 a.send.len - SEND_SLICE) == 0)
				act->len = SEND_SLICE;
			return 1;
		case IMAP_ACTION_START_TLS:
			act->type = FE_ACT_START_TLS;
			return 1;
		case IMAP_ACTION_CLOSE:
			act->type = FE_ACT_CLOSE;
			act->reason = a.close_reason;
			return 1;
		case IMAP_ACTION_REQUEST:
			if (p->changes_busy)
				p->held = a.req; /* after the changes are in */
			else
				dispatch(p, a.req);
			break;
		}
	}
}

static void imap_tls_started(void *s)
{
	struct fe_imap *p = s;

	imap_session_tls_started(p->s);
}

static void imap_disconnected(void *s)
{
	struct fe_imap *p = s;

	p->gone = true;
	fe_login_disconnected(p->login);
	imap_session_disconnected(p->s);
	store_redis_unsubscribe(&p->sub);
	p->sub_ready = false;
	if (p->timer != PN_IO_NONE)
		pn_io_timer_cancel(p->th->loop, p->timer);
}

static void imap_shutdown(void *s, enum fe_shutdown_reason reason)
{
	struct fe_imap *p = s;

	imap_session_end(p->s, reason == FE_SHUTDOWN_IDLE ? IMAP_END_IDLE :
			 reason == FE_SHUTDOWN_KICK ? IMAP_END_KICK : IMAP_END_SHUTDOWN);
}

static void imap_destroy(void **s)
{
	struct fe_imap *p = *s;

	store_redis_unsubscribe(&p->sub);
	if (p->timer != PN_IO_NONE)
		pn_io_close(p->th->loop, p->timer);
	fe_login_free(&p->login);	/* slot back, registry entry removed */
	imap_session_free(&p->s);
	pend_clear(p);
	free(p->post_src);
	free(p->post_dst);
	free(p->recent);
	free(p->own);
	free(p->sbuf);
	free(p);
	*s = NULL;
}

const struct fe_protocol fe_protocol_imap = {
	.name = "imap",
	.create = imap_create,
	.feed = imap_feed,
	.next = imap_next,
	.tls_started = imap_tls_started,
	.disconnected = imap_disconnected,
	.shutdown = imap_shutdown,
	.destroy = imap_destroy,
};
