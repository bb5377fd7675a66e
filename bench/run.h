/* The load generator's engine: threads, each with its own io_uring loop
 * (common/loop.h), running a script on N connections, and the results they
 * gather (merged by the main thread at the end).
 *
 * Modes:
 * - closed: every connection starts its next unit as soon as the last one
 *   ended (the throughput a server sustains);
 * - open: units start on a fixed schedule of `rate` per second over all
 *   threads; a unit that starts late because every connection was busy
 *   still has its latency counted from its intended start, so a slow
 *   server cannot hide slow replies by slowing the load (coordinated
 *   omission);
 * - idle: `conns` connections run the script up to `hold`, then the memory
 *   of the server processes (pids and their descendants) is read from
 *   /proc/PID/smaps_rollup and compared with before.
 * Units (see script.h) are sessions or iterations of the unit loop. The run
 * lasts duration_s after warmup_s (nothing is recorded during warmup), or
 * until count units completed. At the end, connections finish what they do
 * (a script's tail after its unit loop, e.g. LOGOUT, so that servers close
 * first) for at most drain_s, then are closed.
 */
#ifndef POSTERN_BENCH_RUN_H
#define POSTERN_BENCH_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "body.h"
#include "hist.h"
#include "script.h"
#include "series.h"

struct pn_tls_ctx;

#define BN_MAX_TARGETS 16
#define BN_MAX_PIDS 16

enum bn_mode { BN_MODE_CLOSED, BN_MODE_OPEN, BN_MODE_IDLE };

enum bn_err {
	BN_ERR_CONNECT,	/* connect failed (refused, unreachable, no port) */
	BN_ERR_RESET,	/* connection reset or broken while running */
	BN_ERR_CLOSED,	/* the server closed before the script expected it */
	BN_ERR_REPLY,	/* a reply did not start with the expected prefix */
	BN_ERR_TIMEOUT,	/* no complete reply (or connect) within timeout_ms */
	BN_ERR_TLS,	/* TLS handshake or record error */
	BN_ERR_PROTOCOL,/* malformed reply, line too long, unread data over limit */
	BN_ERR_LOCAL,	/* out of sockets, memory, ring entries on our side */
	BN_ERR_COUNT
};
extern const char *const bn_err_names[BN_ERR_COUNT];

struct bn_config {
	const struct bn_script *script;
	const struct bn_bodies *bodies;
	struct sockaddr_storage targets[BN_MAX_TARGETS];
	socklen_t target_lens[BN_MAX_TARGETS];
	unsigned int ntargets;		/* connections rotate over them */
	unsigned int threads, conns;
	enum bn_mode mode;
	double rate;			/* open: units per second, all threads */
	double duration_s, warmup_s, drain_s;
	uint64_t count;			/* 0: run for duration_s */
	const char *user_pattern;	/* e.g. "u%04d@bench.test" */
	unsigned int user_first, user_last;
	const char *password;
	struct pn_tls_ctx *tls;		/* client context for TLS, or NULL */
	bool tls_implicit;		/* TLS from the first byte */
	const char *tls_server_name;
	unsigned int timeout_ms;	/* connect and reply timeout */
	/* idle mode */
	pid_t pids[BN_MAX_PIDS];
	unsigned int npids;
	double hold_s, settle_s;
	unsigned int connect_burst;	/* idle: connects in flight per thread */
	/* time series of completed/failed units per bucket (0: off); needs
	 * duration_s > 0 and a mode other than idle */
	uint64_t series_bucket_ns;
};

struct bn_mem {
	uint64_t rss_kb, pss_kb, private_kb;
	unsigned int processes;
};

struct bn_results {
	double elapsed_s;		/* recorded interval */
	uint64_t units, sessions, sessions_failed;
	uint64_t bytes_in, bytes_out;	/* application bytes while recording */
	struct bn_hist unit;		/* unit latency */
	struct bn_hist connect;		/* TCP connect */
	unsigned int nlabels;
	struct bn_hist labels[BN_MAX_LABELS];
	uint64_t errors[BN_ERR_COUNT];
	char samples[BN_ERR_COUNT][160];/* first error text of each kind */
	/* CPU over the recorded interval */
	double machine_busy_s;		/* all cores, from /proc/stat */
	double machine_total_s;		/* all cores, busy + idle */
	unsigned int cores;
	double self_cpu_s;		/* this process (getrusage) */
	/* idle mode */
	uint64_t held;			/* connections that reached hold */
	struct bn_mem mem_before[BN_MAX_PIDS], mem_after[BN_MAX_PIDS];
	unsigned int npids;
	/* time series (cfg->series_bucket_ns): buckets from start_mono_ns,
	 * the start of the recorded interval on CLOCK_MONOTONIC */
	uint64_t start_mono_ns;
	uint64_t failed_before_reply, failed_after_reply;
	struct bn_series series;
};

/* Runs cfg and fills *res (which it initialises). Returns 0, or -1 with
 * *error_r when the run could not start (a loop or thread failed); errors
 * of single connections are counted in res, not returned. res->series is
 * allocated when cfg asks for one: bn_results_free() releases it. */
int bn_run(const struct bn_config *cfg, struct bn_results *res, const char **error_r);

/* Frees what bn_run() allocated in res (the time series). */
void bn_results_free(struct bn_results *res);

/* Reads the memory of pid and all its descendants (smaps_rollup). Returns 0,
 * or -1 if pid does not exist. */
int bn_read_mem(pid_t pid, struct bn_mem *mem_r);

#endif
