/* The maildrop lock: a process-wide entry plus a Redis lease renewed on a
 * loop timer, with the degraded mode for a Redis that cannot be reached.
 * See postern/mail-maildrop.h for the rules and why they are safe.
 */
#include "postern/mail-maildrop.h"

#include "postern/log.h"
#include "postern/loop.h"
#include "postern/store-redis-ops.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the process-wide table ---- */

#define LOCAL_BUCKETS 1024
#define NAME_MAX_LEN 15

struct local_entry {
	struct local_entry *next;
	uint64_t account_id;
	char name[NAME_MAX_LEN + 1];
};

static pthread_mutex_t local_mu = PTHREAD_MUTEX_INITIALIZER;
static struct local_entry *local_table[LOCAL_BUCKETS];

static unsigned int bucket(uint64_t account_id)
{
	return (unsigned int)((account_id * 0x9E3779B97F4A7C15ull) >> 54) % LOCAL_BUCKETS;
}

/* Returns 1 taken, 0 already held, -1 no memory. */
static int local_take(uint64_t account_id, const char *name)
{
	struct local_entry **head = &local_table[bucket(account_id)], *e;
	int r = 1;

	pthread_mutex_lock(&local_mu);
	for (e = *head; e != NULL; e = e->next) {
		if (e->account_id == account_id && strcmp(e->name, name) == 0) {
			r = 0;
			break;
		}
	}
	if (r == 1) {
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			r = -1;
		} else {
			e->account_id = account_id;
			snprintf(e->name, sizeof(e->name), "%s", name);
			e->next = *head;
			*head = e;
		}
	}
	pthread_mutex_unlock(&local_mu);
	return r;
}

static void local_drop(uint64_t account_id, const char *name)
{
	struct local_entry **p = &local_table[bucket(account_id)];

	pthread_mutex_lock(&local_mu);
	for (; *p != NULL; p = &(*p)->next) {
		if ((*p)->account_id == account_id && strcmp((*p)->name, name) == 0) {
			struct local_entry *e = *p;
			*p = e->next;
			free(e);
			break;
		}
	}
	pthread_mutex_unlock(&local_mu);
}

/* ---- one lock ---- */

enum lock_state {
	L_PENDING,	/* asking Redis */
	L_HELD_REDIS,	/* lease held */
	L_HELD_LOCAL,	/* degraded: this process only */
	L_REFUSED,	/* in use elsewhere, or failed */
};

struct mail_lock {
	struct pn_loop *loop;
	struct store_redis *redis;
	pn_io_id timer;
	uint64_t account_id;
	char name[NAME_MAX_LEN + 1];
	char key[STORE_RKEY_MAX];
	unsigned int lease_ms;
	mail_lock_cb *cb;
	void *ctx;
	struct store_rlock rl;
	enum lock_state state;
	bool local_held;
	bool answered;		/* cb has run */
	bool answer_due;	/* cb to run from the timer */
	enum mail_lock_status due_status;
	bool released;
	bool timer_closed;
	unsigned int pending;	/* Redis commands in flight */
};

static void maybe_free(struct mail_lock *l)
{
	if (l->released && l->timer_closed && l->pending == 0)
		free(l);
}

static void arm(struct mail_lock *l, uint64_t ms)
{
	if (!l->released)
		pn_io_timer_set(l->loop, l->timer, ms > 0 ? ms : 1);
}

static void answer(struct mail_lock *l, enum mail_lock_status status)
{
	if (l->answered || l->released)
		return;
	l->answered = true;
	l->cb(l->ctx, status, l->state == L_HELD_LOCAL);
}

/* The answer must come later than mail_lock_acquire(): through the timer. */
static void answer_later(struct mail_lock *l, enum mail_lock_status status)
{
	l->answer_due = true;
	l->due_status = status;
	arm(l, 1);
}

static void noop_cb(void *ctx, enum store_status status, bool held, const char *error)
{
	struct mail_lock *l = ctx;

	l->pending--;
	maybe_free(l);
}

static void redis_release(struct mail_lock *l)
{
	if (l->redis != NULL && store_rlock_release(l->redis, &l->rl, noop_cb, l) == 0)
		l->pending++;
}

static void acquire_cb(void *ctx, enum store_status status, bool held, const char *error)
{
	struct mail_lock *l = ctx;

	l->pending--;
	if (l->released) {
		if (status == STORE_OK && held)
			redis_release(l); /* won after the session had gone */
		maybe_free(l);
		return;
	}
	if (l->state == L_PENDING) {
		if (status == STORE_OK && held) {
			l->state = L_HELD_REDIS;
			answer(l, MAIL_LOCK_OK);
		} else if (status == STORE_OK) {
			l->state = L_REFUSED;
			local_drop(l->account_id, l->name);
			l->local_held = false;
			answer(l, MAIL_LOCK_IN_USE);
			return;
		} else {
			pn_warn("event=lock_degraded key=%s error=\"%s\"", l->key, error);
			l->state = L_HELD_LOCAL;
			answer(l, MAIL_LOCK_OK);
		}
		if (!l->released)
			arm(l, l->lease_ms / 3);
		return;
	}
	/* A degraded lock trying to take its lease again. */
	if (status == STORE_OK && held) {
		l->state = L_HELD_REDIS;
		pn_info("event=lock_restored key=%s", l->key);
	} else if (status == STORE_OK) {
		pn_warn("event=lock_conflict key=%s detail=\"held elsewhere while Redis was unreachable\"",
			l->key);
	}
}

static void renew_cb(void *ctx, enum store_status status, bool held, const char *error)
{
	struct mail_lock *l = ctx;

	l->pending--;
	if (l->released) {
		maybe_free(l);
		return;
	}
	if (status == STORE_OK && !held) {
		pn_warn("event=lock_lost key=%s", l->key);
		l->state = L_HELD_LOCAL;
	} else if (status != STORE_OK) {
		pn_debug("event=lock_renew_failed key=%s error=\"%s\"", l->key, error);
	}
}

static void on_timer(void *ctx)
{
	struct mail_lock *l = ctx;

	if (l->released)
		return;
	if (l->answer_due) {
		l->answer_due = false;
		answer(l, l->due_status);
		if (l->due_status == MAIL_LOCK_OK)
			arm(l, l->lease_ms / 3);
		return;
	}
	if (l->pending == 0 && l->redis != NULL) {
		if (l->state == L_HELD_REDIS) {
			if (store_rlock_renew(l->redis, &l->rl, l->lease_ms, renew_cb, l) == 0)
				l->pending++;
		} else if (l->state == L_HELD_LOCAL) {
			if (store_rlock_acquire(l->redis, &l->rl, l->key, l->lease_ms, acquire_cb,
						l) == 0)
				l->pending++;
		}
	}
	if (l->state == L_HELD_REDIS || l->state == L_HELD_LOCAL)
		arm(l, l->lease_ms / 3);
}

static void on_close(void *ctx)
{
	struct mail_lock *l = ctx;

	l->timer_closed = true;
	maybe_free(l);
}

static const struct pn_io_handlers timer_handlers = {
	.on_timer = on_timer,
	.on_close = on_close,
};

struct mail_lock *mail_lock_acquire(struct pn_loop *loop, struct store_redis *redis,
				    uint64_t account_id, const char *name,
				    unsigned int lease_ms, mail_lock_cb *cb, void *ctx)
{
	struct mail_lock *l;
	int taken;

	if (strlen(name) > NAME_MAX_LEN || lease_ms < 3) {
		errno = EINVAL;
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	l->loop = loop;
	l->redis = redis;
	l->account_id = account_id;
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->lease_ms = lease_ms;
	l->cb = cb;
	l->ctx = ctx;
	{
		char suffix[32];

		snprintf(suffix, sizeof(suffix), "lock:%s", name);
		if (store_rkey_account(l->key, sizeof(l->key), account_id, suffix) < 0) {
			free(l);
			errno = EINVAL;
			return NULL;
		}
	}
	l->timer = pn_io_add(loop, -1, 0, &timer_handlers, l);
	if (l->timer == PN_IO_NONE) {
		free(l);
		errno = ENOMEM;
		return NULL;
	}
	taken = local_take(account_id, name);
	if (taken <= 0) {
		l->state = L_REFUSED;
		answer_later(l, taken == 0 ? MAIL_LOCK_IN_USE : MAIL_LOCK_TEMPFAIL);
		return l;
	}
	l->local_held = true;
	l->state = L_PENDING;
	if (redis != NULL &&
	    store_rlock_acquire(redis, &l->rl, l->key, lease_ms, acquire_cb, l) == 0) {
		l->pending++;
		return l;
	}
	l->state = L_HELD_LOCAL;
	answer_later(l, MAIL_LOCK_OK);
	return l;
}

void mail_lock_release(struct mail_lock **lockp)
{
	struct mail_lock *l = *lockp;

	if (l == NULL)
		return;
	*lockp = NULL;
	l->released = true;
	if (l->local_held) {
		local_drop(l->account_id, l->name);
		l->local_held = false;
	}
	if (l->state == L_HELD_REDIS)
		redis_release(l);
	pn_io_close(l->loop, l->timer);
	maybe_free(l);
}

bool mail_lock_degraded(const struct mail_lock *lock)
{
	return lock->state == L_HELD_LOCAL;
}
