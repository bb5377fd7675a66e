/* The SMTP / submission / LMTP adapter of postern-frontend (fe-smtp.c):
 * the SMTP engine (smtp/smtp-session.h) with local delivery
 * (postern/mail-delivery.h) on the thread's PostgreSQL pool and AUTH
 * checked on the node's password worker pool. The service of the
 * connection (fe_session_info.service) picks the mode: FE_SVC_SMTP is MX,
 * FE_SVC_SUBMISSION / FE_SVC_SUBMISSIONS submission, FE_SVC_LMTP LMTP.
 * fe_service_adapter() returns it for those services.
 */
#ifndef FE_SMTP_H
#define FE_SMTP_H

#include "fe-protocol.h"

extern const struct fe_protocol fe_protocol_smtp;

#endif
