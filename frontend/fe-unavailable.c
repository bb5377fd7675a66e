/* The adapter for listeners whose protocol engine is not wired into this
 * build yet: it greets with the protocol's own "service not available"
 * words and closes, so that a client sees a clear temporary failure (and
 * retries elsewhere) rather than a silent hang, and the local cluster's
 * readiness probe finds every listener accepting.
 *
 *   IMAP  * BYE [UNAVAILABLE] ...        (RFC 9051 7.1, response code UNAVAILABLE)
 *   POP3  -ERR [SYS/TEMP] ...            (RFC 3206)
 *   SMTP, submission, LMTP  421 4.3.2 ...  (RFC 5321 3.8, RFC 3463 X.3.2)
 *
 * Also the table fe_service_adapter() that picks each service's adapter.
 */
#include "fe-imap.h"
#include "fe-protocol.h"
#include "fe-smtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct unavailable {
	char line[160];
	size_t len;
	int step;	/* 0: greet, 1: close, 2: over */
};

static void *una_create(struct fe_conn *conn, const struct fe_session_info *info,
			const char **error_r)
{
	struct unavailable *u = calloc(1, sizeof(*u));
	int n;

	if (u == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	switch (info->service) {
	case FE_SVC_IMAP:
	case FE_SVC_IMAPS:
		n = snprintf(u->line, sizeof(u->line),
			     "* BYE [UNAVAILABLE] %s: IMAP is not served by this node yet\r\n",
			     info->hostname);
		break;
	case FE_SVC_POP3:
	case FE_SVC_POP3S:
		n = snprintf(u->line, sizeof(u->line),
			     "-ERR [SYS/TEMP] %s: POP3 is not served by this node yet\r\n",
			     info->hostname);
		break;
	default:
		n = snprintf(u->line, sizeof(u->line),
			     "421 4.3.2 %s Service not available on this node yet\r\n",
			     info->hostname);
		break;
	}
	u->len = n > 0 && (size_t)n < sizeof(u->line) ? (size_t)n : strlen(u->line);
	return u;
}

static size_t una_feed(void *s, const uint8_t *data, size_t len)
{
	return len; /* nothing is read */
}

static int una_next(void *s, struct fe_action *act_r)
{
	struct unavailable *u = s;

	memset(act_r, 0, sizeof(*act_r));
	switch (u->step++) {
	case 0:
		act_r->type = FE_ACT_SEND;
		act_r->data = (const uint8_t *)u->line;
		act_r->len = u->len;
		return 1;
	case 1:
		act_r->type = FE_ACT_CLOSE;
		act_r->reason = "protocol not served";
		return 1;
	default:
		u->step = 2;
		return -1;
	}
}

static void una_tls_started(void *s)
{
}

static void una_disconnected(void *s)
{
	struct unavailable *u = s;

	u->step = 2;
}

static void una_shutdown(void *s, enum fe_shutdown_reason reason)
{
}

static void una_destroy(void **s)
{
	free(*s);
	*s = NULL;
}

const struct fe_protocol fe_protocol_unavailable = {
	.name = "unavailable",
	.create = una_create,
	.feed = una_feed,
	.next = una_next,
	.tls_started = una_tls_started,
	.disconnected = una_disconnected,
	.shutdown = una_shutdown,
	.destroy = una_destroy,
};

const struct fe_protocol *fe_service_adapter(enum fe_service svc)
{
	switch (svc) {
	case FE_SVC_IMAP:
	case FE_SVC_IMAPS:
		return &fe_protocol_imap;
	case FE_SVC_POP3:
	case FE_SVC_POP3S:
		return &fe_protocol_pop3;
	case FE_SVC_SMTP:
	case FE_SVC_SUBMISSION:
	case FE_SVC_SUBMISSIONS:
	case FE_SVC_LMTP:
		return &fe_protocol_smtp;
	default:
		return &fe_protocol_unavailable;
	}
}
