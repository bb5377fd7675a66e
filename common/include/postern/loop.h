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
 *
 * Threading: a loop is used by one thread only, except pn_loop_stop() and
 * pn_loop_wake(), which any thread may call.
 *
 * Operations, all asynchronous; results come through the callbacks below:
 * - accept: multishot; on_accept(ctx, fd) per new connection (fd >= 0) or a
 *   negative errno; the loop re-arms it if the kernel ends the multishot.
 * - recv: multishot with a provided-buffer ring owned by the loop, so an idle
 *   connection holds no receive buffer. on_recv(ctx, data, len) with len > 0;
 *   len == 0 is end of stream; len < 0 is -errno. data is only valid during
 *   the callback (the buffer goes back to the ring afterwards): copy what you
 *   keep. Stopped by pn_io_recv_stop() or close.
 * - send: one send in flight per io; the loop resubmits after a short write
 *   and calls on_send(ctx, total) when all len bytes went out, or with a
 *   negative errno. The caller keeps data valid until on_send.
 * - connect: on_connect(ctx, 0) or -errno.
 * - poll: one-shot; on_poll(ctx, revents) or -errno. Re-arm to keep
 *   watching (the shape libpq, hiredis and c-ares adapters need).
 * - timer: one per io; pn_io_timer_set() (re)arms it, replacing any pending
 *   one; on_timer(ctx) fires once.
 * - close: pn_io_close() cancels everything pending, closes the fd (unless
 *   PN_IO_NO_CLOSE) and calls on_close(ctx) once no completion for the io is
 *   outstanding; after on_close nothing else is called for that io and ctx
 *   may be freed. Calling pn_io_* on a closing io returns -1 (EBADF).
 *
 * Return values: pn_io_* submission calls return 0, or -1 with errno set
 * (EBADF: unknown or closing io; EBUSY: that operation is already pending;
 * ENOMEM: no slot or no SQE). Callbacks may call any pn_io_* or pn_loop_*
 * function, including pn_io_close() on their own io.
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
};

/* Creates a loop. set may be NULL for the defaults. Returns NULL and sets
 * *error_r to a static message on failure. */
struct pn_loop *pn_loop_new(const struct pn_loop_settings *set, const char **error_r);
/* Closes every io without calling on_close, frees the ring, sets *loop NULL. */
void pn_loop_free(struct pn_loop **loop);

/* Runs until pn_loop_stop(). Returns 0, or -1 on a ring failure. */
int pn_loop_run(struct pn_loop *loop);
/* Runs one batch: waits up to timeout_ms (-1 forever, 0 not at all) for at
 * least one completion, handles all ready ones. Returns the number handled,
 * or -1 on a ring failure. For tests and for embedding. */
int pn_loop_run_once(struct pn_loop *loop, int timeout_ms);
/* Makes pn_loop_run() return after the current batch. Any thread. */
void pn_loop_stop(struct pn_loop *loop);
/* Calls fn(ctx) on the loop thread soon. Any thread. Returns 0 or -1. */
int pn_loop_post(struct pn_loop *loop, void (*fn)(void *ctx), void *ctx);

/* Monotonic milliseconds, cached per batch (cheap). */
uint64_t pn_loop_now_ms(struct pn_loop *loop);
/* Number of open (not yet closed) ios. */
unsigned int pn_loop_io_count(const struct pn_loop *loop);

#define PN_IO_NO_CLOSE 0x1 /* pn_io_close() leaves the fd open (foreign fds) */

/* Registers fd (or -1 for a pure timer) with the loop. h is copied by
 * pointer and must outlive the io; ctx is passed to every callback.
 * Returns the id, or PN_IO_NONE with errno set. */
pn_io_id pn_io_add(struct pn_loop *loop, int fd, unsigned int flags,
		   const struct pn_io_handlers *h, void *ctx);
int pn_io_fd(struct pn_loop *loop, pn_io_id id);
void pn_io_set_ctx(struct pn_loop *loop, pn_io_id id, void *ctx);

int pn_io_accept(struct pn_loop *loop, pn_io_id id);
int pn_io_recv(struct pn_loop *loop, pn_io_id id);
int pn_io_recv_stop(struct pn_loop *loop, pn_io_id id);
int pn_io_send(struct pn_loop *loop, pn_io_id id, const void *data, size_t len);
int pn_io_connect(struct pn_loop *loop, pn_io_id id, const struct sockaddr *addr,
		  socklen_t addrlen);
int pn_io_poll(struct pn_loop *loop, pn_io_id id, unsigned int events);
int pn_io_poll_cancel(struct pn_loop *loop, pn_io_id id);
int pn_io_timer_set(struct pn_loop *loop, pn_io_id id, uint64_t ms);
int pn_io_timer_cancel(struct pn_loop *loop, pn_io_id id);
/* Begins closing; see above. Returns 0, or -1 if the id is unknown. */
int pn_io_close(struct pn_loop *loop, pn_io_id id);

/* Socket helpers (blocking-free, for loop users). */
/* Listening TCP socket with SO_REUSEADDR and SO_REUSEPORT, non-blocking.
 * host: numeric IPv4/IPv6 address or NULL for any; port 0 picks a free one.
 * Returns the fd or -1 with *error_r set. */
int pn_listen_tcp(const char *host, uint16_t port, int backlog, const char **error_r);
/* Local port of a bound socket, or 0. */
uint16_t pn_socket_port(int fd);
/* Parses "host:port", "[v6]:port" or ":port" into addr. Returns 0 or -1. */
int pn_parse_hostport(const char *s, struct sockaddr_storage *addr, socklen_t *len_r);
/* "1.2.3.4:5" or "[::1]:5" into dst. Returns dst. */
char *pn_format_addr(const struct sockaddr *sa, char *dst, size_t dstsize);

#endif
