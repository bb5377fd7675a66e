/* The io_uring event loop: one ring per thread.
 *
 * A loop owns a ring and a table of I/O handles ("ios"). An io wraps one file
 * descriptor (or none, for a timer) and the callbacks its owner registered.
 * Every submission carries in user_data the operation and the io:
 *
 *     user_data = op (8 bits) << 56 | generation (24 bits) << 32 | index (32 bits)
 *
 * On completion the loop looks the io up by index; a generation that no
 * longer matches (the io was closed and its slot reused) drops the completion.
 * Each operation has one small handle_<op>() in loop.c that calls the owner.
 * A pn_io_id carries the slot index (low 20 bits, so max_ios < 2^20) and the
 * low 12 bits of the generation, so a stale id is refused with EBADF.
 * Slots come from a free list: the hot path allocates nothing.
 *
 * Threading: a loop is used by one thread only, except pn_loop_stop() and
 * pn_loop_post(), which any thread may call (they write an eventfd that the
 * ring polls).
 *
 * Operations, all asynchronous; results come through the callbacks below:
 * - accept: multishot; on_accept(ctx, fd) per new connection (fd >= 0,
 *   non-blocking and close-on-exec) or a negative errno; the loop re-arms it
 *   if the kernel ends the multishot. After EMFILE, ENFILE, ENOBUFS or ENOMEM
 *   it pauses 100 ms before re-arming; after EBADF, EINVAL, ENOTSOCK or
 *   EOPNOTSUPP it stops (call pn_io_accept() again to retry). Accepted fds
 *   that arrive while the io is closing are closed by the loop.
 * - recv: multishot with a provided-buffer ring owned by the loop, so an idle
 *   connection holds no receive buffer. on_recv(ctx, data, len) with len > 0;
 *   len == 0 is end of stream; len < 0 is -errno. data is only valid during
 *   the callback (the buffer goes back to the ring afterwards): copy what you
 *   keep. After end of stream or an error, receiving stops (pn_io_recv()
 *   again to restart). When the ring runs dry (ENOBUFS) the loop re-arms the
 *   receive itself after the batch; the owner sees nothing.
 *   pn_io_recv_stop() stops it: no on_recv is called until pn_io_recv() again.
 *   Data the kernel had already received before the stop took effect is kept
 *   (in ring buffers) and delivered first, in order, after pn_io_recv(), never
 *   from inside the pn_io_recv() call itself.
 *   pn_io_recv_handoff() ends receiving for an owner that will read the fd
 *   itself (splice): what the kernel already took is still delivered through
 *   on_recv, in order, and then on_recv(ctx, NULL, -ECANCELED) says that the
 *   socket's stream is the owner's from here on (an end of stream or an
 *   error met first is reported as usual instead: len 0 or -errno).
 * - send: one send in flight per io, with MSG_NOSIGNAL (no SIGPIPE); the loop
 *   resubmits after a short write and calls on_send(ctx, total) when all len
 *   bytes went out, or with a negative errno. The caller keeps data valid
 *   until on_send. len must be > 0.
 * - connect: on_connect(ctx, 0) or -errno. The address is copied.
 * - poll: one-shot; on_poll(ctx, revents) or -errno. Re-arm to keep
 *   watching (the shape libpq, hiredis and c-ares adapters need).
 *   pn_io_poll_cancel() guarantees no on_poll for the cancelled poll; a new
 *   pn_io_poll() may follow at once, even before the kernel confirmed the
 *   cancel.
 * - timer: one per io; pn_io_timer_set() (re)arms it, replacing any pending
 *   one; on_timer(ctx) fires once, no earlier than ms after the call.
 *   pn_io_timer_cancel() guarantees no on_timer until the next set.
 * - close: pn_io_close() cancels everything pending, closes the fd (unless
 *   PN_IO_NO_CLOSE) and calls on_close(ctx) once no completion for the io is
 *   outstanding; after on_close nothing else is called for that io and ctx
 *   may be freed. on_close is never called from inside pn_io_close(): it runs
 *   from pn_loop_run_once() after the current callback returned. With
 *   PN_IO_NO_CLOSE, pn_io_close() hands the pending operations to the kernel
 *   at once, so the owner may close the fd right after pn_io_close() returns.
 *   Calling pn_io_* on a closing io returns -1 (EBADF).
 *
 * Return values: pn_io_* submission calls return 0, or -1 with errno set
 * (EBADF: unknown or closing io, or an io without fd; EBUSY: that operation
 * is already pending; ENOMEM: no slot or no SQE; EINVAL: bad argument).
 * Callbacks may call any pn_io_* or pn_loop_* function, including
 * pn_io_close() on their own io, except pn_loop_run*() and pn_loop_free().
 */
#ifndef POSTERN_LOOP_H
#define POSTERN_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct pn_loop;

typedef uint32_t pn_io_id;
#define PN_IO_NONE ((pn_io_id)0) /* never a valid id */

struct pn_io_handlers {
	void (*on_accept)(void *ctx, int fd);
	void (*on_recv)(void *ctx, const uint8_t *data, ssize_t len);
	void (*on_send)(void *ctx, ssize_t res);
	void (*on_connect)(void *ctx, int res);
	void (*on_poll)(void *ctx, int revents);
	void (*on_timer)(void *ctx);
	void (*on_close)(void *ctx);
};

struct pn_loop_settings {
	unsigned int ring_entries;	/* SQ size; default 1024 */
	unsigned int max_ios;		/* handle table size; default 65536 */
	unsigned int recv_buf_size;	/* bytes per provided buffer; default 16384 */
	unsigned int recv_buf_count;	/* buffers in the ring (power of 2); default 1024 */
	/* PN_LOOP_* flags; default 0 */
	unsigned int flags;
};

/* Completions are produced only while the loop waits for them
 * (IORING_SETUP_DEFER_TASKRUN with SINGLE_ISSUER), not at every system call
 * the thread makes: less kernel work per operation for a loop that makes
 * many direct socket calls. The thread that first runs the loop
 * (pn_loop_run*) becomes its only submitter: ios may be added and armed
 * before that from another thread (they reach the kernel at the first
 * run), but after it only that thread may use the loop, as above, and
 * pn_loop_free() from another thread frees without waiting (which is
 * safe once that thread has exited: the kernel cancelled its operations).
 * Ignored where the kernel lacks it (before 6.1). */
#define PN_LOOP_DEFER_TASKRUN 0x1

/* Creates a loop. set may be NULL for the defaults. Returns NULL and sets
 * *error_r to a static message on failure. */
struct pn_loop *pn_loop_new(const struct pn_loop_settings *set, const char **error_r);
/* Cancels everything in flight, closes every io's fd (unless PN_IO_NO_CLOSE)
 * without calling on_close, drops posted functions that did not run, frees
 * the ring and its buffers, sets *loop NULL. Not from a callback; no other
 * thread may use the loop any more. */
void pn_loop_free(struct pn_loop **loop);

/* Runs until pn_loop_stop(). Returns 0, or -1 on a ring failure. */
int pn_loop_run(struct pn_loop *loop);
/* Runs one batch: waits up to timeout_ms (-1 forever, 0 not at all) for at
 * least one completion, handles all ready ones. Returns the number handled,
 * or -1 on a ring failure. For tests and for embedding. */
int pn_loop_run_once(struct pn_loop *loop, int timeout_ms);
/* Makes pn_loop_run() return after the current batch. Any thread. Functions
 * posted before may not have run yet (they run in the next pn_loop_run*());
 * to stop after them, post a function that calls pn_loop_stop(). */
void pn_loop_stop(struct pn_loop *loop);
/* Calls fn(ctx) on the loop thread soon, in posting order. Any thread.
 * Returns 0 or -1 (ENOMEM). */
int pn_loop_post(struct pn_loop *loop, void (*fn)(void *ctx), void *ctx);

/* Monotonic milliseconds, cached per batch (cheap). */
uint64_t pn_loop_now_ms(struct pn_loop *loop);
/* Number of ios added and not yet fully closed (on_close not yet called). */
unsigned int pn_loop_io_count(const struct pn_loop *loop);

/* Counters since pn_loop_new(), for metrics and tests. */
struct pn_loop_stats {
	uint64_t completions;	/* CQEs handled */
	uint64_t recv_enobufs;	/* multishot receives ended for lack of buffers */
	uint64_t short_sends;	/* sends resubmitted after a short write */
	uint64_t accept_rearms;	/* multishot accepts re-armed */
};
void pn_loop_get_stats(const struct pn_loop *loop, struct pn_loop_stats *stats_r);

#define PN_IO_NO_CLOSE 0x1 /* pn_io_close() leaves the fd open (foreign fds) */

/* Registers fd (or -1 for a pure timer) with the loop. h is kept by
 * pointer and must outlive the io; ctx is passed to every callback; a NULL
 * callback means the owner does not care (an accepted fd is then closed).
 * The fd is owned by the io from now on unless PN_IO_NO_CLOSE.
 * Returns the id, or PN_IO_NONE with errno set (ENOMEM: table full). */
pn_io_id pn_io_add(struct pn_loop *loop, int fd, unsigned int flags,
		   const struct pn_io_handlers *h, void *ctx);
/* The io's fd, or -1 if the id is unknown or closing. */
int pn_io_fd(struct pn_loop *loop, pn_io_id id);
/* Changes the ctx given to later callbacks (also on_close of a closing io). */
void pn_io_set_ctx(struct pn_loop *loop, pn_io_id id, void *ctx);

int pn_io_accept(struct pn_loop *loop, pn_io_id id);
int pn_io_recv(struct pn_loop *loop, pn_io_id id);
/* Returns 0 also when receiving was not on. */
int pn_io_recv_stop(struct pn_loop *loop, pn_io_id id);
/* See above. Returns 0, or -1 with errno EAGAIN when it cannot be done now
 * (receiving is not on, being stopped, or data is held: try again
 * later), ENOMEM (no SQE), EBADF. pn_io_recv_stop() and
 * pn_io_recv() must not be called until the final on_recv. */
int pn_io_recv_handoff(struct pn_loop *loop, pn_io_id id);
int pn_io_send(struct pn_loop *loop, pn_io_id id, const void *data, size_t len);
int pn_io_connect(struct pn_loop *loop, pn_io_id id, const struct sockaddr *addr,
		  socklen_t addrlen);
/* events: POLLIN, POLLOUT... from <poll.h>. */
int pn_io_poll(struct pn_loop *loop, pn_io_id id, unsigned int events);
/* Returns 0 also when no poll was pending. */
int pn_io_poll_cancel(struct pn_loop *loop, pn_io_id id);
int pn_io_timer_set(struct pn_loop *loop, pn_io_id id, uint64_t ms);
/* Returns 0 also when no timer was set. */
int pn_io_timer_cancel(struct pn_loop *loop, pn_io_id id);
/* Begins closing; see above. Returns 0, or -1 if the id is unknown. */
int pn_io_close(struct pn_loop *loop, pn_io_id id);

/* Socket helpers (blocking-free, for loop users). */
/* Listening TCP socket with SO_REUSEADDR and SO_REUSEPORT, non-blocking,
 * close-on-exec. host: numeric IPv4/IPv6 address (brackets allowed) or NULL
 * for any (dual-stack [::], or 0.0.0.0 where IPv6 is off); port 0 picks a
 * free one. Returns the fd or -1 with *error_r set. */
int pn_listen_tcp(const char *host, uint16_t port, int backlog, const char **error_r);
/* A non-blocking, close-on-exec TCP socket of family (AF_INET, AF_INET6)
 * with TCP_NODELAY, ready for pn_io_connect(). Returns fd or -1, *error_r. */
int pn_socket_tcp(int family, const char **error_r);
/* Turns Nagle's algorithm off on a connected or accepted TCP socket, so that
 * a reply written in several pieces is not held back waiting for the
 * peer's delayed ACK (about 40 ms per multi-part answer otherwise). Every
 * daemon calls it on each accepted connection. Returns 0, or -1 with errno
 * (e.g. ENOTSOCK, EOPNOTSUPP on a non-TCP socket: harmless to ignore). */
int pn_socket_nodelay(int fd);
/* Local port of a bound socket, or 0. */
uint16_t pn_socket_port(int fd);
/* Parses "host:port", "[v6]:port" or ":port" (0.0.0.0) into addr; host is
 * a numeric IPv4 or IPv6 address ("[fe80::1%eth0]:25" takes a scope), port
 * 0..65535 in decimal. No name lookup. Returns 0, or -1 on any bad input. */
int pn_parse_hostport(const char *s, struct sockaddr_storage *addr, socklen_t *len_r);
/* "1.2.3.4:5" or "[::1]:5" into dst (always NUL-terminated, truncated if
 * dstsize is too small; 64 bytes suffice for IP), "unix:PATH" for AF_UNIX,
 * "?" for other families. Returns dst. */
char *pn_format_addr(const struct sockaddr *sa, char *dst, size_t dstsize);

#endif
