/* The IMAP / IMAPS adapter of postern-frontend (fe-imap.c): the sans-IO
 * IMAP engine (imap/imap-session.h) with its requests carried out by the
 * asynchronous mailbox operations (postern/mail-mailbox.h) on the thread's
 * PostgreSQL pool, logins checked on the node's password worker pool, and
 * live updates of the selected mailbox from its Redis channel (or a poll
 * timer while Redis is unreachable). fe_service_adapter() returns it for
 * FE_SVC_IMAP and FE_SVC_IMAPS.
 */
#ifndef FE_IMAP_H
#define FE_IMAP_H

#include "fe-protocol.h"

extern const struct fe_protocol fe_protocol_imap;

#endif
