/* postern-bench-backend: the trivial backend behind the proxies in the
 * proxy-* scenarios (and the floor when connected to directly).
 *
 * It speaks just enough of an IMAP-like line protocol for health checks
 * and scripted sessions: on connect "* OK ..." ; "TAG LOGOUT" answers
 * "* BYE" + "TAG OK" and the server closes first; "QUIT" answers "+OK" and
 * closes; "TAG ECHO N" answers "TAG OK" and then echoes the next N bytes
 * back (the stream scenario); any other "TAG CMD" answers "TAG OK CMD
 * completed". An optional PROXY v1/v2 header in front is skipped, so the
 * proxies may send one. One io_uring loop per thread, SO_REUSEPORT
 * listeners on the same port.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "postern/buf.h"
#include "postern/loop.h"
#include "postern/proxy.h"

#define LINE_MAX_LEN 8192
#define OUT_HIGH (1024u * 1024)

struct bk_thread {
	pthread_t th;
	struct pn_loop *loop;
	int lfd;
	pn_io_id lio;
};

struct bk_conn {
	struct bk_thread *t;
	pn_io_id io;
	bool proxy_done, closing_after_send, recv_stopped;
	struct pn_buf line;	/* partial line (or PROXY header) */
	struct pn_buf out, fly;
	uint64_t echo_left;
};

static const char *greeting = "* OK postern-bench backend ready";

static void conn_close(struct bk_conn *c)
{
	pn_io_close(c->t->loop, c->io);
}

static void bk_on_close(void *ctx)
{
	struct bk_conn *c = ctx;
	pn_buf_free(&c->line);
	pn_buf_free(&c->out);
	pn_buf_free(&c->fly);
	free(c);
}

static void flush(struct bk_conn *c)
{
	if (pn_buf_len(&c->fly) > 0 || pn_buf_len(&c->out) == 0)
		return;
	struct pn_buf tmp = c->fly;
	c->fly = c->out;
	c->out = tmp;
	pn_buf_reset(&c->out);
	if (pn_io_send(c->t->loop, c->io, pn_buf_rptr(&c->fly), pn_buf_len(&c->fly)) < 0)
		conn_close(c);
}

static void reply(struct bk_conn *c, const char *s, size_t len)
{
	if (pn_buf_append(&c->out, s, len) < 0) {
		conn_close(c);
		return;
	}
	flush(c);
}

static bool word_eq(const char *w, size_t len, const char *s)
{
	if (strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (toupper((unsigned char)w[i]) != s[i])
			return false;
	}
	return true;
}

static void command(struct bk_conn *c, const char *l, size_t len)
{
	char buf[LINE_MAX_LEN + 128];
	const char *sp = memchr(l, ' ', len);
	size_t tl = sp != NULL ? (size_t)(sp - l) : len;

	if (sp == NULL) {
		if (word_eq(l, len, "QUIT")) {
			reply(c, "+OK bye\r\n", 9);
			c->closing_after_send = true;
			return;
		}
		reply(c, "* BAD no tag\r\n", 14);
		return;
	}
	const char *cmd = sp + 1;
	size_t rest = len - tl - 1;
	const char *sp2 = memchr(cmd, ' ', rest);
	size_t cl = sp2 != NULL ? (size_t)(sp2 - cmd) : rest;
	int n;

	if (word_eq(cmd, cl, "LOGOUT")) {
		n = snprintf(buf, sizeof(buf), "* BYE logging out\r\n%.*s OK LOGOUT completed\r\n",
			     (int)tl, l);
		reply(c, buf, (size_t)n);
		c->closing_after_send = true;
		return;
	}
	if (word_eq(cmd, cl, "ECHO") && sp2 != NULL) {
		char *end;
		unsigned long long v = strtoull(sp2 + 1, &end, 10);
		n = snprintf(buf, sizeof(buf), "%.*s OK echo follows\r\n", (int)tl, l);
		reply(c, buf, (size_t)n);
		c->echo_left = v;
		return;
	}
	n = snprintf(buf, sizeof(buf), "%.*s OK %.*s completed\r\n", (int)tl, l, (int)cl, cmd);
	reply(c, buf, (size_t)n);
}

static void bk_on_send(void *ctx, ssize_t res)
{
	struct bk_conn *c = ctx;

	if (res < 0) {
		conn_close(c);
		return;
	}
	pn_buf_reset(&c->fly);
	if (pn_buf_len(&c->out) > 0) {
		flush(c);
		return;
	}
	if (c->closing_after_send) {
		conn_close(c); /* the server closes first */
		return;
	}
	if (c->recv_stopped) {
		c->recv_stopped = false;
		pn_io_recv(c->t->loop, c->io);
	}
}

static void bk_on_recv(void *ctx, const uint8_t *data, ssize_t len)
{
	struct bk_conn *c = ctx;
	size_t pos = 0;

	if (len <= 0) {
		conn_close(c);
		return;
	}
	if (c->closing_after_send)
		return;
	if (!c->proxy_done) {
		if (pn_buf_len(&c->line) == 0 && data[0] != '\r' && data[0] != 'P') {
			c->proxy_done = true;
		} else {
			struct pn_proxy_header h;
			const char *err;
			if (pn_buf_append(&c->line, data, (size_t)len) < 0) {
				conn_close(c);
				return;
			}
			int n = pn_proxy_decode(pn_buf_rptr(&c->line), pn_buf_len(&c->line), 0, &h, &err);
			if (n == 0)
				return;
			if (n < 0) {
				/* not a PROXY header: plain commands */
				c->proxy_done = true;
			} else {
				pn_buf_consume(&c->line, (size_t)n);
				c->proxy_done = true;
			}
			/* process what is in line as fresh input */
			struct pn_buf rest = c->line;
			pn_buf_init(&c->line, LINE_MAX_LEN);
			if (pn_buf_len(&rest) > 0)
				bk_on_recv(c, pn_buf_rptr(&rest), (ssize_t)pn_buf_len(&rest));
			pn_buf_free(&rest);
			return;
		}
	}
	while (pos < (size_t)len) {
		if (c->echo_left > 0) {
			size_t n = (size_t)len - pos;
			if ((uint64_t)n > c->echo_left)
				n = (size_t)c->echo_left;
			if (pn_buf_append(&c->out, data + pos, n) < 0) {
				conn_close(c);
				return;
			}
			c->echo_left -= n;
			pos += n;
			flush(c);
			if (pn_buf_len(&c->out) >= OUT_HIGH && !c->recv_stopped) {
				c->recv_stopped = true;
				pn_io_recv_stop(c->t->loop, c->io);
			}
			continue;
		}
		const uint8_t *nl = memchr(data + pos, '\n', (size_t)len - pos);
		size_t take = nl != NULL ? (size_t)(nl - (data + pos)) + 1 : (size_t)len - pos;
		if (pn_buf_append(&c->line, data + pos, take) < 0) {
			conn_close(c);
			return;
		}
		pos += take;
		if (nl == NULL)
			break;
		size_t ll = pn_buf_len(&c->line) - 1;
		const char *l = (const char *)pn_buf_rptr(&c->line);
		if (ll > 0 && l[ll - 1] == '\r')
			ll--;
		command(c, l, ll);
		pn_buf_reset(&c->line);
		if (c->closing_after_send)
			return;
	}
}

static const struct pn_io_handlers conn_handlers = {
	.on_recv = bk_on_recv,
	.on_send = bk_on_send,
	.on_close = bk_on_close,
};

static void bk_on_accept(void *ctx, int fd)
{
	struct bk_thread *t = ctx;
	char buf[512];

	if (fd < 0)
		return;
	struct bk_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->t = t;
	pn_buf_init(&c->line, LINE_MAX_LEN + PN_PROXY_V2_MAX_HEADER);
	pn_buf_init(&c->out, 4 * OUT_HIGH);
	pn_buf_init(&c->fly, 4 * OUT_HIGH);
	c->io = pn_io_add(t->loop, fd, 0, &conn_handlers, c);
	if (c->io == PN_IO_NONE) {
		close(fd);
		bk_on_close(c);
		return;
	}
	int n = snprintf(buf, sizeof(buf), "%s\r\n", greeting);
	reply(c, buf, (size_t)n);
	pn_io_recv(t->loop, c->io);
}

static const struct pn_io_handlers listen_handlers = { .on_accept = bk_on_accept };

static void *thread_main(void *arg)
{
	struct bk_thread *t = arg;
	pn_loop_run(t->loop);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "greeting", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_at = "127.0.0.1:0", *port_file = NULL;
	unsigned int threads = 1;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen_at = optarg; break;
		case 't': threads = (unsigned int)atoi(optarg); break;
		case 'p': port_file = optarg; break;
		case 'g': greeting = optarg; break;
		case 'h':
			printf("usage: postern-bench-backend [--listen H:P] [--threads N] "
			       "[--port-file F] [--greeting TEXT]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (threads == 0 || threads > 64 || strpbrk(greeting, "\r\n") != NULL) {
		fprintf(stderr, "postern-bench-backend: bad --threads or --greeting\n");
		return 2;
	}
	struct sockaddr_storage ss;
	socklen_t sl;
	if (pn_parse_hostport(listen_at, &ss, &sl) < 0) {
		fprintf(stderr, "postern-bench-backend: bad --listen %s\n", listen_at);
		return 2;
	}
	char host[64];
	const char *colon = strrchr(listen_at, ':');
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_at), listen_at);
	uint16_t port = (uint16_t)atoi(colon + 1);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);

	struct bk_thread *ts = calloc(threads, sizeof(*ts));
	if (ts == NULL)
		return 1;
	struct pn_loop_settings set = { .max_ios = 200000, .recv_buf_count = 1024 };
	for (unsigned int i = 0; i < threads; i++) {
		const char *err;
		ts[i].loop = pn_loop_new(&set, &err);
		if (ts[i].loop == NULL) {
			fprintf(stderr, "postern-bench-backend: %s\n", err);
			return 1;
		}
		ts[i].lfd = pn_listen_tcp(host[0] != '\0' ? host : NULL, port, 4096, &err);
		if (ts[i].lfd < 0) {
			fprintf(stderr, "postern-bench-backend: listen %s: %s\n", listen_at, err);
			return 1;
		}
		port = pn_socket_port(ts[i].lfd);
		ts[i].lio = pn_io_add(ts[i].loop, ts[i].lfd, 0, &listen_handlers, &ts[i]);
		if (ts[i].lio == PN_IO_NONE || pn_io_accept(ts[i].loop, ts[i].lio) < 0) {
			fprintf(stderr, "postern-bench-backend: accept setup failed\n");
			return 1;
		}
	}
	if (port_file != NULL) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 ||
		    rename(tmp, port_file) != 0) {
			fprintf(stderr, "postern-bench-backend: %s: %s\n", port_file, strerror(errno));
			return 1;
		}
	}
	printf("postern-bench-backend: listening on %s:%u, %u threads\n",
	       host[0] != '\0' ? host : "*", port, threads);
	fflush(stdout);
	/* the loop threads never see SIGTERM/SIGINT: main waits for them */
	sigset_t sigs;
	int sig;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	for (unsigned int i = 0; i < threads; i++)
		pthread_create(&ts[i].th, NULL, thread_main, &ts[i]);
	sigwait(&sigs, &sig);
	for (unsigned int i = 0; i < threads; i++)
		pn_loop_stop(ts[i].loop);
	for (unsigned int i = 0; i < threads; i++) {
		pthread_join(ts[i].th, NULL);
		pn_loop_free(&ts[i].loop);
	}
	free(ts);
	return 0;
}
