/* The pure parts of health checking: the rise/fall state machine, slow
 * start, and reading a probe's greeting and a /readyz answer. No I/O; the
 * checker (lb-health.c) feeds them what its sockets bring.
 */
#ifndef POSTERN_LB_CHECK_H
#define POSTERN_LB_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Health of one thing checked (a backend's probe, a server's /readyz). */
struct lb_health {
	bool up;
	unsigned int ok_streak;		/* good results in a row */
	unsigned int fail_streak;	/* failed results in a row */
	uint64_t up_since_ms;		/* when it last came up (slow start) */
	uint64_t changed_ms;		/* last transition */
};

enum lb_health_change { LB_HEALTH_SAME = 0, LB_HEALTH_WENT_UP, LB_HEALTH_WENT_DOWN };

/* Starts up (optimistic: traffic flows before the first check, and a dead
 * node is found by the first connection to it) or down. up_since is set
 * far enough back that no slow start applies. */
void lb_health_init(struct lb_health *h, bool up, uint64_t now_ms);
/* One result. A down node comes up after rise good results in a row; an
 * up node goes down after fall failures in a row, or at once when hard
 * (connection refused or reset: the node is certainly not serving). */
enum lb_health_change lb_health_report(struct lb_health *h, bool ok, bool hard,
				       unsigned int rise, unsigned int fall, uint64_t now_ms);

/* Slow start: weight * elapsed / slowstart_ms, at least 10% of weight (and
 * at least 1), weight once slowstart_ms has passed or when it is 0. */
uint32_t lb_slowstart_weight(uint32_t weight, uint64_t up_since_ms, uint64_t now_ms,
			     uint64_t slowstart_ms);

/* A greeting line received so far, data[0..len): 1 when a complete line
 * (ending in LF) starts with prefix followed by a space, CR or the end;
 * -1 when it certainly does not (a byte differs, or a line without it is
 * complete, or more than max_line bytes came without LF); 0 need more. */
int lb_greeting_check(const char *prefix, const uint8_t *data, size_t len, size_t max_line);

struct lb_readyz {
	int status;		/* HTTP status code */
	bool draining;		/* 503 whose body names the "draining" check */
};

/* An HTTP/1.x answer to GET /readyz received so far, data[0..len), eof
 * when the server closed. Returns 1 with *r filled once the status line,
 * the header section and the body (Content-Length bytes, or up to eof)
 * are in; 0 need more; -1 malformed or over len_max. */
int lb_readyz_parse(const uint8_t *data, size_t len, bool eof, size_t len_max,
		    struct lb_readyz *r);

#endif
