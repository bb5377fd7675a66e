/* Outcome of an asynchronous storage operation (PostgreSQL pool, Redis,
 * blob store), as given to its callback.
 *
 * The split that matters to a protocol engine is temporary versus
 * permanent: a temporary failure (the service is down or restarting, the
 * connection was lost, a timeout, a full queue, a serialization failure or
 * deadlock) is answered "try again later" (IMAP NO [UNAVAILABLE], POP3
 * -ERR [SYS/TEMP], SMTP 4xx) and may be retried; a permanent one (a
 * constraint violation, bad input, a missing object) is not.
 */
#ifndef POSTERN_STORE_STATUS_H
#define POSTERN_STORE_STATUS_H

enum store_status {
	STORE_OK = 0,
	STORE_TEMPORARY = -1,
	STORE_PERMANENT = -2,
};

/* "ok", "temporary" or "permanent" (static). */
const char *store_status_name(enum store_status status);

#endif
