/* The hiredis adapter (see postern/store-redis.h). Each of the two
 * connections (commands, pub/sub) is an `rconn`: a redisAsyncContext whose
 * event hooks turn read/write interest into one-shot polls on a
 * PN_IO_NO_CLOSE io, a deadline timer (connect timeout, oldest command's
 * timeout, reconnect backoff, deferred failures) and a FIFO of commands in
 * flight. hiredis calls the cleanup hook whenever it frees a context (a
 * failed connect, a lost connection, our own redisAsyncFree()), so that is
 * where a connection is marked down and its reconnection scheduled;
 * reconnecting always happens from the timer, never inside hiredis.
 * Subscriptions live in a small hash table of channels, each with its
 * handles, re-subscribed after every reconnect.
 */
#include "postern/store-redis.h"
#include "postern/hash.h"
#include "postern/log.h"
#include "postern/loop.h"
#include "store-private.h"
#include "store-timer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MSG_MAX 160
#define CHAN_BUCKETS 256

enum rc_state {
	RC_DOWN,
	RC_CONNECTING,
	RC_UP,
};

struct rconn;

struct rcmd {
	struct rcmd *prev, *next;	/* in flight, or deferred */
	struct rconn *rc;
	store_redis_cb *cb;
	void *ctx;
	uint64_t deadline;
	uint64_t t0_us;
	bool timed_out;
	enum store_status fail_status;
	char fail_msg[MSG_MAX];
};

struct rconn {
	struct store_redis *r;
	const char *what;		/* "redis" or "redis-sub", for logs */
	bool is_sub;
	redisAsyncContext *ac;
	enum rc_state state;
	bool down;			/* last connect attempt failed */
	bool active;			/* should be connected */
	pn_io_id io;
	unsigned int want, polled;
	uint64_t deadline;		/* connect deadline */
	uint64_t retry_at;
	unsigned int backoff_ms;
	struct store_timer timer;
	struct rcmd *phead, *ptail;	/* in flight, oldest first */
	unsigned int npending;
	struct rcmd *dhead, *dtail;	/* deferred failures */
	bool auth_failed;		/* AUTH refused: a failed attempt */
	bool authing;			/* connected, AUTH reply pending */
	bool ready_pending;		/* READY events to deliver */
	bool lost_pending;		/* LOST events to deliver */
	char last_error[MSG_MAX];
};

enum chan_state {
	CH_NEW,			/* not sent */
	CH_SUBSCRIBING,
	CH_SUBSCRIBED,
	CH_UNSUBSCRIBING,
};

struct rchan {
	struct rchan *next;		/* bucket chain */
	struct store_redis_sub *subs;
	enum chan_state state;
	size_t len;
	char name[];
};

struct store_redis_sub {
	struct store_redis_sub *next;
	struct store_redis *r;
	struct rchan *ch;
	store_redis_sub_cb *cb;
	void *ctx;
	bool ready;			/* READY delivered (and no LOST since) */
	uint64_t seq;			/* last notification round it saw */
};

struct store_redis {
	struct pn_loop *loop;
	struct store_redis_settings set;
	char *host;
	bool unix_socket;
	bool freeing;
	uint64_t rnd;
	char *username, *password;
	struct rconn cmd, sub;
	struct rchan *chans[CHAN_BUCKETS];
	unsigned int nchans;
	uint64_t seq;
	struct store_redis_stats stats;
};

static void rc_schedule(struct rconn *rc);

static uint64_t now_ms(const struct store_redis *r)
{
	return pn_loop_now_ms(r->loop);
}

static void one_line(char *dst, size_t size, const char *msg)
{
	size_t n;

	if (msg == NULL)
		msg = "";
	n = strcspn(msg, "\r\n");
	if (n >= size)
		n = size - 1;
	memcpy(dst, msg, n);
	dst[n] = '\0';
}

/* ---- command completion ---- */

static enum store_status classify_error(const char *s, size_t len)
{
	static const char *const temporary[] = {
		"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY",
		"CLUSTERDOWN", "NOREPLICAS", "NOAUTH",
	};

	for (size_t i = 0; i < sizeof(temporary) / sizeof(temporary[0]); i++) {
		size_t n = strlen(temporary[i]);

		if (len >= n && memcmp(s, temporary[i], n) == 0 &&
		    (len == n || s[n] == ' '))
			return STORE_TEMPORARY;
	}
	return STORE_PERMANENT;
}

static void cmd_finish(struct store_redis *r, struct rcmd *cmd, enum store_status st,
		       const redisReply *reply, const char *msg)
{
	char line[MSG_MAX];

	if (st == STORE_OK)
		r->stats.ok++;
	else if (st == STORE_TEMPORARY)
		r->stats.temporary++;
	else
		r->stats.permanent++;
	if (r->set.observe != NULL) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		r->set.observe(r->set.observe_ctx, st, (uint64_t)ts.tv_sec * 1000000u +
			       (uint64_t)ts.tv_nsec / 1000u - cmd->t0_us);
	}
	one_line(line, sizeof(line), st == STORE_OK ? "" : msg);
	if (st != STORE_OK && line[0] == '\0')
		snprintf(line, sizeof(line), "Redis error");
	cmd->cb(cmd->ctx, st, reply, line);
	free(cmd);
}

static void pending_remove(struct rconn *rc, struct rcmd *cmd)
{
	if (cmd->prev != NULL)
		cmd->prev->next = cmd->next;
	else
		rc->phead = cmd->next;
	if (cmd->next != NULL)
		cmd->next->prev = cmd->prev;
	else
		rc->ptail = cmd->prev;
	cmd->prev = cmd->next = NULL;
	rc->npending--;
}

static void cmd_defer(struct rconn *rc, struct rcmd *cmd, enum store_status st,
		      const char *msg)
{
	cmd->fail_status = st;
	one_line(cmd->fail_msg, sizeof(cmd->fail_msg), msg);
	cmd->next = NULL;
	cmd->prev = rc->dtail;
	if (rc->dtail != NULL)
		rc->dtail->next = cmd;
	else
		rc->dhead = cmd;
	rc->dtail = cmd;
	store_timer_want(&rc->timer, now_ms(rc->r));
}

/* hiredis: a reply, or NULL when the context is going away. */
static void cmd_reply_cb(redisAsyncContext *ac, void *reply_v, void *privdata)
{
	struct rcmd *cmd = privdata;
	struct rconn *rc = cmd->rc;
	redisReply *reply = reply_v;

	pending_remove(rc, cmd);
	if (reply == NULL) {
		char msg[MSG_MAX];

		if (cmd->timed_out)
			snprintf(msg, sizeof(msg), "Redis timeout");
		else
			snprintf(msg, sizeof(msg), "Redis connection lost%s%s",
				 ac->errstr != NULL && ac->errstr[0] != '\0' ? ": " : "",
				 ac->errstr != NULL ? ac->errstr : "");
		cmd_finish(rc->r, cmd, STORE_TEMPORARY, NULL, msg);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		cmd_finish(rc->r, cmd, classify_error(reply->str, reply->len), reply, reply->str);
	} else {
		cmd_finish(rc->r, cmd, STORE_OK, reply, NULL);
	}
}

/* ---- the event-library adapter ---- */

static void rc_on_poll(void *ctx, int revents);

static void rc_io_on_close(void *ctx)
{
	(void)ctx;
}

static const struct pn_io_handlers rc_io_handlers = {
	.on_poll = rc_on_poll,
	.on_close = rc_io_on_close,
};

static void rc_arm(struct rconn *rc)
{
	struct pn_loop *loop = rc->r->loop;

	if (rc->io == PN_IO_NONE || rc->polled == rc->want)
		return;
	if (rc->polled != 0)
		pn_io_poll_cancel(loop, rc->io);
	rc->polled = 0;
	if (rc->want == 0)
		return;
	if (pn_io_poll(loop, rc->io, rc->want) < 0) {
		/* no SQE: let the timer drop and reopen the connection */
		pn_warn("event=%s_poll_failed errno=%d", rc->what, errno);
		rc->deadline = now_ms(rc->r);
		store_timer_want(&rc->timer, rc->deadline);
		return;
	}
	rc->polled = rc->want;
}

static void ev_add_read(void *privdata)
{
	struct rconn *rc = privdata;

	rc->want |= POLLIN;
	rc_arm(rc);
}

static void ev_del_read(void *privdata)
{
	struct rconn *rc = privdata;

	rc->want &= ~(unsigned int)POLLIN;
	rc_arm(rc);
}

static void ev_add_write(void *privdata)
{
	struct rconn *rc = privdata;

	rc->want |= POLLOUT;
	rc_arm(rc);
}

static void ev_del_write(void *privdata)
{
	struct rconn *rc = privdata;

	rc->want &= ~(unsigned int)POLLOUT;
	rc_arm(rc);
}

static void subs_lost(struct store_redis *r);

/* hiredis frees the context: after a failed connect, a lost connection or
 * our redisAsyncFree(). Pending command callbacks already ran (NULL). */
static void ev_cleanup(void *privdata)
{
	struct rconn *rc = privdata;
	struct store_redis *r = rc->r;
	const char *err = rc->ac != NULL && rc->ac->errstr != NULL ? rc->ac->errstr : "";
	char line[MSG_MAX], q[2 * MSG_MAX];

	one_line(line, sizeof(line), err[0] != '\0' ? err : "connection closed");
	if (rc->io != PN_IO_NONE) {
		/* hiredis closes the fd right after: hand the cancel over */
		pn_io_close(r->loop, rc->io);
		pn_io_set_ctx(r->loop, rc->io, NULL);
		rc->io = PN_IO_NONE;
	}
	rc->ac = NULL;
	rc->want = rc->polled = 0;
	rc->deadline = 0;
	rc->authing = false;
	if (rc->auth_failed) {
		rc->auth_failed = false;
		rc->state = RC_CONNECTING; /* count it as a failed attempt */
		snprintf(line, sizeof(line), "%s", rc->last_error);
	}
	if (rc->state == RC_UP) {
		r->stats.disconnects++;
		if (!r->freeing)
			pn_warn("event=%s_disconnect error=%s", rc->what,
				pn_log_quote(q, sizeof(q), line, strlen(line)));
		rc->retry_at = 0; /* first retry at once */
		if (rc->is_sub)
			subs_lost(r);
	} else if (rc->state == RC_CONNECTING) {
		r->stats.connect_failures++;
		if (!rc->down && !r->freeing)
			pn_warn("event=%s_down error=%s", rc->what,
				pn_log_quote(q, sizeof(q), line, strlen(line)));
		rc->down = true;
		snprintf(rc->last_error, sizeof(rc->last_error), "%s", line);
		rc->retry_at = now_ms(r) + rc->backoff_ms / 2 +
			r->rnd % (rc->backoff_ms / 2 + 1);
		r->rnd = r->rnd * 6364136223846793005ULL + 1442695040888963407ULL;
		if (rc->backoff_ms < r->set.backoff_max_ms) {
			rc->backoff_ms *= 2;
			if (rc->backoff_ms > r->set.backoff_max_ms)
				rc->backoff_ms = r->set.backoff_max_ms;
		}
	}
	rc->state = RC_DOWN;
	if (!r->freeing)
		rc_schedule(rc);
}

static void sub_send_new(struct store_redis *r);

/* The connection is usable: connected, and authenticated if needed. */
static void rc_up(struct rconn *rc)
{
	struct store_redis *r = rc->r;

	rc->backoff_ms = r->set.backoff_min_ms;
	rc->authing = false;
	rc->deadline = 0;
	if (rc->down)
		pn_info("event=%s_up", rc->what);
	rc->down = false;
	rc->last_error[0] = '\0';
	r->stats.connects++;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *rc = ac->data;
	struct store_redis *r = rc->r;

	if (status != REDIS_OK)
		return; /* hiredis frees the context next: ev_cleanup */
	rc->state = RC_UP;
	if (r->password == NULL) {
		rc_up(rc);
	} else {
		/* the connect deadline runs on until AUTH is answered */
		rc->authing = true;
	}
	if (rc->is_sub)
		sub_send_new(r);
}

/* The AUTH reply: the first on every connection. */
static void auth_cb(redisAsyncContext *ac, void *reply_v, void *privdata)
{
	struct rconn *rc = privdata;
	redisReply *reply = reply_v;

	if (reply == NULL)
		return;
	if (reply->type != REDIS_REPLY_ERROR) {
		rc_up(rc);
		return;
	}
	snprintf(rc->last_error, sizeof(rc->last_error), "AUTH refused: %.*s",
		 (int)(reply->len < 100 ? reply->len : 100), reply->str);
	rc->auth_failed = true;
	redisAsyncFree(ac); /* after this callback; ev_cleanup */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	(void)ac;
	(void)status; /* handled in ev_cleanup, which runs just before */
}

static void rc_on_poll(void *ctx, int revents)
{
	struct rconn *rc = ctx;

	if (rc == NULL || rc->ac == NULL)
		return;
	rc->polled = 0;
	if (revents < 0)
		revents = POLLERR;
	if (revents & (POLLIN | POLLERR | POLLHUP))
		redisAsyncHandleRead(rc->ac);
	/* the context may be gone now; reconnecting waits for the timer,
	 * so rc->ac is never a new context here */
	if (rc->ac != NULL && (revents & (POLLOUT | POLLERR | POLLHUP)))
		redisAsyncHandleWrite(rc->ac);
	if (rc->ac != NULL)
		rc_arm(rc);
}

/* ---- connecting ---- */

static void rc_connect(struct rconn *rc)
{
	struct store_redis *r = rc->r;
	redisAsyncContext *ac;

	rc->state = RC_CONNECTING;
	if (r->unix_socket)
		ac = redisAsyncConnectUnix(r->host);
	else
		ac = redisAsyncConnect(r->host, r->set.port);
	if (ac == NULL || ac->err != 0) {
		one_line(rc->last_error, sizeof(rc->last_error),
			 ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac); /* no hooks attached yet */
		rc->ac = NULL;
		r->stats.connect_failures++;
		rc->down = true;
		rc->state = RC_DOWN;
		rc->retry_at = now_ms(r) + rc->backoff_ms;
		if (rc->backoff_ms < r->set.backoff_max_ms)
			rc->backoff_ms = rc->backoff_ms * 2 > r->set.backoff_max_ms ?
				r->set.backoff_max_ms : rc->backoff_ms * 2;
		rc_schedule(rc);
		return;
	}
	rc->ac = ac;
	ac->data = rc;
	rc->io = pn_io_add(r->loop, ac->c.fd, PN_IO_NO_CLOSE, &rc_io_handlers, rc);
	ac->ev.data = rc;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	rc->deadline = now_ms(r) + r->set.connect_timeout_ms;
	store_timer_want(&rc->timer, rc->deadline);
	if (rc->io == PN_IO_NONE) {
		snprintf(rc->last_error, sizeof(rc->last_error), "no loop slot");
		redisAsyncFree(ac); /* ev_cleanup: a failed attempt */
		return;
	}
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* arms the first write poll: connect completes when writable */
	redisAsyncSetConnectCallback(ac, on_connect);
	if (r->password != NULL) {
		/* first in the output buffer, before any command of ours */
		const char *argv[3];
		int n = 0;

		argv[n++] = "AUTH";
		if (r->username != NULL)
			argv[n++] = r->username;
		argv[n++] = r->password;
		redisAsyncCommandArgv(ac, auth_cb, rc, n, argv, NULL);
	}
}

/* Asks the timer for the next thing this connection waits for. */
static void rc_schedule(struct rconn *rc)
{
	uint64_t at = 0;

	if (rc->dhead != NULL)
		at = now_ms(rc->r);
	if (rc->state == RC_CONNECTING && rc->deadline != 0)
		at = at == 0 || rc->deadline < at ? rc->deadline : at;
	if (rc->state == RC_DOWN && rc->active) {
		uint64_t t = rc->retry_at != 0 ? rc->retry_at : now_ms(rc->r);

		at = at == 0 || t < at ? t : at;
	}
	if (rc->phead != NULL && (at == 0 || rc->phead->deadline < at))
		at = rc->phead->deadline;
	if (rc->deadline != 0 && rc->state == RC_UP && (at == 0 || rc->deadline < at))
		at = rc->deadline; /* a poll that could not be armed */
	if (rc->ready_pending || rc->lost_pending)
		at = now_ms(rc->r);
	if (at != 0)
		store_timer_want(&rc->timer, at);
}

static void notify_all(struct store_redis *r, enum store_redis_sub_event ev);

static void rc_on_timer(void *ctx)
{
	struct rconn *rc = ctx;
	struct store_redis *r;
	struct rcmd *cmd, *next;
	uint64_t now;

	if (rc == NULL)
		return;
	r = rc->r;
	store_timer_fired(&rc->timer);
	now = now_ms(r);
	/* deferred failures parked before now */
	cmd = rc->dhead;
	rc->dhead = rc->dtail = NULL;
	for (; cmd != NULL; cmd = next) {
		next = cmd->next;
		cmd_finish(r, cmd, cmd->fail_status, NULL, cmd->fail_msg);
	}
	if (rc->lost_pending) {
		rc->lost_pending = false;
		notify_all(r, STORE_REDIS_SUB_LOST);
	}
	if (rc->ready_pending) {
		rc->ready_pending = false;
		notify_all(r, STORE_REDIS_SUB_READY);
	}
	if (rc->ac != NULL) {
		bool drop = false;

		if (rc->state == RC_CONNECTING && rc->deadline != 0 && rc->deadline <= now) {
			snprintf(rc->last_error, sizeof(rc->last_error), "connect timeout");
			drop = true;
		} else if (rc->state == RC_UP && rc->deadline != 0 && rc->deadline <= now) {
			/* AUTH unanswered, or a poll that could not be armed */
			if (rc->authing) {
				snprintf(rc->last_error, sizeof(rc->last_error), "AUTH timeout");
				rc->auth_failed = true;
			}
			drop = true;
		} else if (rc->phead != NULL && rc->phead->deadline <= now) {
			for (cmd = rc->phead; cmd != NULL && cmd->deadline <= now; cmd = cmd->next) {
				cmd->timed_out = true;
				r->stats.timeouts++;
			}
			pn_warn("event=%s_timeout action=reconnect", rc->what);
			drop = true;
		}
		if (drop)
			redisAsyncFree(rc->ac); /* callbacks get NULL; ev_cleanup */
	} else if (rc->state == RC_DOWN && rc->active && rc->retry_at <= now) {
		rc_connect(rc);
	}
	rc_schedule(rc);
}

static const struct pn_io_handlers rc_timer_handlers = {
	.on_timer = rc_on_timer,
	.on_close = rc_io_on_close,
};

static int rc_init(struct store_redis *r, struct rconn *rc, bool is_sub)
{
	rc->r = r;
	rc->is_sub = is_sub;
	rc->what = is_sub ? "redis_sub" : "redis";
	rc->io = PN_IO_NONE;
	rc->state = RC_DOWN;
	rc->backoff_ms = r->set.backoff_min_ms;
	return store_timer_init(&rc->timer, r->loop, &rc_timer_handlers, rc);
}

/* Starts connecting. Safe inside a caller's call: hiredis calls nothing
 * back from redisAsyncConnect(), and a failure only schedules a retry. */
static void rc_activate(struct rconn *rc)
{
	if (rc->active)
		return;
	rc->active = true;
	rc->retry_at = 0;
	rc_connect(rc);
}

static void rc_free(struct rconn *rc)
{
	struct store_redis *r = rc->r;
	struct rcmd *cmd;

	rc->active = false;
	if (rc->ac != NULL)
		redisAsyncFree(rc->ac); /* pending callbacks: NULL; ev_cleanup */
	while ((cmd = rc->dhead) != NULL) {
		rc->dhead = cmd->next;
		if (rc->dhead == NULL)
			rc->dtail = NULL;
		cmd_finish(r, cmd, cmd->fail_status, NULL, cmd->fail_msg);
	}
	store_timer_close(&rc->timer);
}

/* ---- public: client and commands ---- */

struct store_redis *store_redis_new(struct pn_loop *loop,
				    const struct store_redis_settings *set,
				    const char **error_r)
{
	struct store_redis *r;
	unsigned char addr[sizeof(struct in6_addr)];

	if (set == NULL || set->host == NULL || set->host[0] == '\0') {
		store_error(error_r, "Redis: no host");
		return NULL;
	}
	if (set->host[0] != '/' && inet_pton(AF_INET, set->host, addr) != 1 &&
	    inet_pton(AF_INET6, set->host, addr) != 1) {
		store_error(error_r, "Redis: host must be a numeric address or a socket path");
		return NULL;
	}
	if (set->host[0] != '/' && (set->port <= 0 || set->port > 65535)) {
		store_error(error_r, "Redis: bad port");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		store_error(error_r, "out of memory");
		return NULL;
	}
	r->loop = loop;
	r->set = *set;
	if (r->set.connect_timeout_ms == 0)
		r->set.connect_timeout_ms = 2000;
	if (r->set.command_timeout_ms == 0)
		r->set.command_timeout_ms = 2000;
	if (r->set.backoff_min_ms == 0)
		r->set.backoff_min_ms = 100;
	if (r->set.backoff_max_ms < r->set.backoff_min_ms)
		r->set.backoff_max_ms = r->set.backoff_min_ms > 5000 ?
			r->set.backoff_min_ms : 5000;
	if (r->set.max_pending == 0)
		r->set.max_pending = 1024;
	r->host = strdup(set->host);
	r->username = set->username != NULL ? strdup(set->username) : NULL;
	r->password = set->password != NULL ? strdup(set->password) : NULL;
	r->unix_socket = set->host[0] == '/';
	r->rnd = (uint64_t)(uintptr_t)r ^ pn_loop_now_ms(loop);
	r->cmd.timer.io = r->sub.timer.io = PN_IO_NONE;
	if (r->host == NULL || (set->username != NULL && r->username == NULL) ||
	    (set->password != NULL && r->password == NULL) ||
	    rc_init(r, &r->cmd, false) < 0 || rc_init(r, &r->sub, true) < 0) {
		store_error(error_r, "Redis: out of memory or no loop slot");
		store_timer_close(&r->cmd.timer);
		store_timer_close(&r->sub.timer);
		free(r->host);
		free(r->username);
		free(r->password);
		free(r);
		return NULL;
	}
	r->set.host = r->host;
	r->set.username = r->username;
	r->set.password = r->password;
	rc_activate(&r->cmd);
	return r;
}

void store_redis_free(struct store_redis **rp)
{
	struct store_redis *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	r->freeing = true;
	rc_free(&r->cmd);
	rc_free(&r->sub);
	for (unsigned int i = 0; i < CHAN_BUCKETS; i++) {
		struct rchan *ch = r->chans[i], *next;

		for (; ch != NULL; ch = next) {
			struct store_redis_sub *s = ch->subs, *sn;

			next = ch->next;
			for (; s != NULL; s = sn) {
				sn = s->next;
				free(s);
			}
			free(ch);
		}
	}
	free(r->host);
	free(r->username);
	free(r->password);
	free(r);
}

int store_redis_command(struct store_redis *r, store_redis_cb *cb, void *ctx,
			int argc, const char *const *argv, const size_t *argvlen)
{
	struct rconn *rc;
	struct rcmd *cmd;
	size_t lens[64];
	const size_t *lp = argvlen;

	if (r == NULL || cb == NULL || argc <= 0 || argv == NULL ||
	    (argvlen == NULL && argc > 64)) {
		errno = EINVAL;
		return -1;
	}
	if (r->freeing) {
		errno = ESHUTDOWN;
		return -1;
	}
	if (argvlen == NULL) {
		for (int i = 0; i < argc; i++)
			lens[i] = strlen(argv[i]);
		lp = lens;
	}
	rc = &r->cmd;
	cmd = calloc(1, sizeof(*cmd));
	if (cmd == NULL)
		return -1;
	cmd->rc = rc;
	cmd->cb = cb;
	cmd->ctx = ctx;
	{
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		cmd->t0_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	}
	r->stats.commands++;
	if (rc->ac == NULL || rc->down) {
		char msg[MSG_MAX + 32];

		snprintf(msg, sizeof(msg), "Redis unavailable%s%s",
			 rc->last_error[0] != '\0' ? ": " : "", rc->last_error);
		cmd_defer(rc, cmd, STORE_TEMPORARY, msg);
		return 0;
	}
	if (rc->npending >= r->set.max_pending) {
		cmd_defer(rc, cmd, STORE_TEMPORARY, "too many Redis commands in flight");
		return 0;
	}
	if (redisAsyncCommandArgv(rc->ac, cmd_reply_cb, cmd, argc, (const char **)argv,
				  lp) != REDIS_OK) {
		cmd_defer(rc, cmd, STORE_TEMPORARY, "Redis connection closing");
		return 0;
	}
	cmd->deadline = now_ms(r) + r->set.command_timeout_ms;
	cmd->prev = rc->ptail;
	if (rc->ptail != NULL)
		rc->ptail->next = cmd;
	else
		rc->phead = cmd;
	rc->ptail = cmd;
	rc->npending++;
	store_timer_want(&rc->timer, cmd->deadline);
	return 0;
}

bool store_redis_ready(const struct store_redis *r)
{
	return r != NULL && r->cmd.state == RC_UP && !r->cmd.down;
}

const char *store_redis_last_error(const struct store_redis *r)
{
	return r->cmd.down ? r->cmd.last_error : "";
}

void store_redis_get_stats(const struct store_redis *r, struct store_redis_stats *stats_r)
{
	*stats_r = r->stats;
	stats_r->pending = r->cmd.npending;
	stats_r->channels = r->nchans;
	stats_r->up = r->cmd.state == RC_UP;
	stats_r->sub_up = r->sub.state == RC_UP;
}

/* ---- pub/sub ---- */

static unsigned int chan_bucket(const char *name, size_t len)
{
	return (unsigned int)(pn_hash64(name, len, 0x5ea1) % CHAN_BUCKETS);
}

static struct rchan *chan_find(struct store_redis *r, const char *name, size_t len)
{
	struct rchan *ch = r->chans[chan_bucket(name, len)];

	for (; ch != NULL; ch = ch->next)
		if (ch->len == len && memcmp(ch->name, name, len) == 0)
			return ch;
	return NULL;
}

static void chan_remove(struct store_redis *r, struct rchan *ch)
{
	struct rchan **pp = &r->chans[chan_bucket(ch->name, ch->len)];

	for (; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	}
	r->nchans--;
	free(ch);
}

static void sub_reply_cb(redisAsyncContext *ac, void *reply_v, void *privdata);

static void chan_send(struct store_redis *r, struct rchan *ch, const char *verb)
{
	const char *argv[2] = { verb, ch->name };
	size_t lens[2] = { strlen(verb), ch->len };

	if (r->sub.ac == NULL || r->sub.state != RC_UP)
		return;
	if (redisAsyncCommandArgv(r->sub.ac, sub_reply_cb, r, 2, argv, lens) != REDIS_OK)
		return; /* closing: everything is resent after the reconnect */
	ch->state = verb[0] == 'S' ? CH_SUBSCRIBING : CH_UNSUBSCRIBING;
}

/* After a (re)connect of the subscriber connection. */
static void sub_send_new(struct store_redis *r)
{
	for (unsigned int i = 0; i < CHAN_BUCKETS; i++)
		for (struct rchan *ch = r->chans[i]; ch != NULL; ch = ch->next)
			if (ch->state == CH_NEW && ch->subs != NULL)
				chan_send(r, ch, "SUBSCRIBE");
}

/* The subscriber connection is gone (inside hiredis' free): every channel
 * is to be subscribed again; LOST is delivered from the timer. */
static void subs_lost(struct store_redis *r)
{
	for (unsigned int i = 0; i < CHAN_BUCKETS; i++) {
		struct rchan *ch = r->chans[i], *next;

		for (; ch != NULL; ch = next) {
			next = ch->next;
			ch->state = CH_NEW;
			if (ch->subs == NULL)
				chan_remove(r, ch);
		}
	}
	r->sub.lost_pending = true;
}

static bool sub_wants(const struct store_redis_sub *s, enum store_redis_sub_event ev)
{
	return ev == STORE_REDIS_SUB_READY ? !s->ready : s->ready;
}

/* Calls the handles of one channel that want ev. A callback may drop any
 * handle (its own or another) and so the channel: the channel is looked
 * up again and its list walked from the start after every call, skipping
 * handles already notified in this round. */
static void chan_notify(struct store_redis *r, const char *name, size_t len,
			enum store_redis_sub_event ev, const char *msg, size_t mlen)
{
	uint64_t seq = ++r->seq;

	for (;;) {
		struct rchan *ch = chan_find(r, name, len);
		struct store_redis_sub *s;

		if (ch == NULL)
			return;
		if (ev != STORE_REDIS_SUB_LOST && ch->state != CH_SUBSCRIBED)
			return;
		for (s = ch->subs; s != NULL; s = s->next)
			if (s->seq != seq && sub_wants(s, ev))
				break;
		if (s == NULL)
			return;
		s->seq = seq;
		s->ready = ev != STORE_REDIS_SUB_LOST;
		if (ev == STORE_REDIS_SUB_MESSAGE)
			r->stats.messages++;
		s->cb(s->ctx, ev, name, msg, mlen);
	}
}

/* READY or LOST to every handle that wants it, channel by channel (names
 * copied first: callbacks may drop channels). */
static void notify_all(struct store_redis *r, enum store_redis_sub_event ev)
{
	char (*names)[STORE_REDIS_CHANNEL_MAX + 1];
	size_t *lens;
	unsigned int n = 0, cap = r->nchans;

	if (cap == 0)
		return;
	names = malloc(cap * sizeof(*names));
	lens = malloc(cap * sizeof(*lens));
	if (names == NULL || lens == NULL) {
		free(names);
		free(lens);
		/* try again later */
		if (ev == STORE_REDIS_SUB_LOST)
			r->sub.lost_pending = true;
		else
			r->sub.ready_pending = true;
		store_timer_want(&r->sub.timer, now_ms(r) + 100);
		return;
	}
	for (unsigned int i = 0; i < CHAN_BUCKETS; i++) {
		for (struct rchan *ch = r->chans[i]; ch != NULL && n < cap; ch = ch->next) {
			memcpy(names[n], ch->name, ch->len + 1);
			lens[n++] = ch->len;
		}
	}
	for (unsigned int i = 0; i < n; i++)
		chan_notify(r, names[i], lens[i], ev, NULL, 0);
	free(names);
	free(lens);
}

static void sub_reply_cb(redisAsyncContext *ac, void *reply_v, void *privdata)
{
	struct store_redis *r = privdata;
	redisReply *reply = reply_v;
	const redisReply *type, *name;
	struct rchan *ch;
	char chname[STORE_REDIS_CHANNEL_MAX + 1];

	(void)ac;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return; /* going away: ev_cleanup reports LOST */
	type = reply->element[0];
	name = reply->element[1];
	if (type->type != REDIS_REPLY_STRING || name->type != REDIS_REPLY_STRING ||
	    name->len > STORE_REDIS_CHANNEL_MAX)
		return;
	ch = chan_find(r, name->str, name->len);
	if (ch == NULL)
		return;
	memcpy(chname, name->str, name->len);
	chname[name->len] = '\0';
	if (type->len == 7 && strncasecmp(type->str, "message", 7) == 0) {
		const redisReply *m = reply->element[2];

		if (m->type == REDIS_REPLY_STRING)
			chan_notify(r, chname, name->len, STORE_REDIS_SUB_MESSAGE, m->str, m->len);
	} else if (type->len == 9 && strncasecmp(type->str, "subscribe", 9) == 0) {
		ch->state = CH_SUBSCRIBED;
		if (ch->subs == NULL)
			chan_send(r, ch, "UNSUBSCRIBE");
		else
			chan_notify(r, chname, name->len, STORE_REDIS_SUB_READY, NULL, 0);
	} else if (type->len == 11 && strncasecmp(type->str, "unsubscribe", 11) == 0) {
		if (ch->subs != NULL) {
			/* someone subscribed again meanwhile */
			ch->state = CH_NEW;
			chan_send(r, ch, "SUBSCRIBE");
		} else {
			chan_remove(r, ch);
		}
	}
}

struct store_redis_sub *store_redis_subscribe(struct store_redis *r, const char *channel,
					      store_redis_sub_cb *cb, void *ctx)
{
	size_t len = channel != NULL ? strlen(channel) : 0;
	struct store_redis_sub *s;
	struct rchan *ch;

	if (r == NULL || cb == NULL || len == 0 || len > STORE_REDIS_CHANNEL_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if (r->freeing) {
		errno = ESHUTDOWN;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	ch = chan_find(r, channel, len);
	if (ch == NULL) {
		unsigned int b = chan_bucket(channel, len);

		ch = calloc(1, sizeof(*ch) + len + 1);
		if (ch == NULL) {
			free(s);
			return NULL;
		}
		memcpy(ch->name, channel, len);
		ch->len = len;
		ch->state = CH_NEW;
		ch->next = r->chans[b];
		r->chans[b] = ch;
		r->nchans++;
	}
	s->r = r;
	s->ch = ch;
	s->cb = cb;
	s->ctx = ctx;
	s->next = ch->subs;
	ch->subs = s;
	switch (ch->state) {
	case CH_NEW:
		if (r->sub.state == RC_UP)
			chan_send(r, ch, "SUBSCRIBE");
		else
			rc_activate(&r->sub);
		break;
	case CH_SUBSCRIBED:
		r->sub.ready_pending = true;
		store_timer_want(&r->sub.timer, now_ms(r));
		break;
	case CH_SUBSCRIBING:
	case CH_UNSUBSCRIBING:
		break; /* READY comes with the (re)subscription */
	}
	return s;
}

void store_redis_unsubscribe(struct store_redis_sub **subp)
{
	struct store_redis_sub *s = *subp, **pp;
	struct store_redis *r;
	struct rchan *ch;

	if (s == NULL)
		return;
	*subp = NULL;
	r = s->r;
	ch = s->ch;
	for (pp = &ch->subs; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	free(s);
	if (ch->subs != NULL)
		return;
	switch (ch->state) {
	case CH_NEW:
		chan_remove(r, ch);
		break;
	case CH_SUBSCRIBED:
		chan_send(r, ch, "UNSUBSCRIBE");
		if (ch->state == CH_SUBSCRIBED)
			chan_remove(r, ch); /* could not send: connection closing */
		break;
	case CH_SUBSCRIBING:	/* unsubscribed when the confirmation comes */
	case CH_UNSUBSCRIBING:
		break;
	}
}
