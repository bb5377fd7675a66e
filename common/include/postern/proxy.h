/* The PROXY protocol (HAProxy's doc/proxy-protocol.txt): a v2 (binary)
 * encoder for the balancer, and a decoder for the frontend that accepts v2
 * and, because some MTAs and proxies only speak it, the v1 text line.
 *
 * Sans-IO: the caller keeps the bytes received so far and passes all of
 * them each time more arrive; the decoder is a pure function of (data, len)
 * that never reads past len and allocates nothing:
 *
 *     n = pn_proxy_decode(buf, buf_len, 0, &hdr, &error);
 *     n > 0:  the header is the first n bytes; hdr is filled; bytes after n
 *             are the client's payload and are not looked at.
 *     n == 0: a valid beginning of a header; call again with more bytes.
 *     n < 0:  not (or a malformed) PROXY header; *error is a static string;
 *             drop the connection.
 *
 * The decoder rejects a bad beginning as soon as it sees it (a wrong
 * signature byte, version or command), so a peer that does not speak the
 * protocol is refused on its first bytes. It must only be used on
 * connections from networks configured to send PROXY headers (see
 * postern/cidr.h): the header lets the peer claim any client address.
 *
 * What is accepted (v2):
 * - version 2 only; commands LOCAL and PROXY;
 * - family/protocol bytes 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, others
 *   rejected. Only TCP over IPv4/IPv6 with the PROXY command yields
 *   addresses (has_addrs). UNSPEC, UDP and UNIX fall back to "no
 *   addresses" as the spec asks of receivers that do not support them, as
 *   does LOCAL (the connection's real endpoints are to be used). The
 *   address block must still be as long as the family requires, also with
 *   LOCAL, and TLVs follow it;
 * - total header length (16 + declared length) at most
 *   PN_PROXY_V2_MAX_HEADER; a larger declared length fails at once;
 * - TLVs: every TLV and SSL sub-TLV must fit exactly inside its parent (a
 *   partial TLV header is an error too). Known types may appear once each.
 *   String values (ALPN, AUTHORITY, NETNS, SSL VERSION/CIPHER/SIG_ALG/
 *   KEY_ALG/CN) may not contain NUL and must fit their field below, else the
 *   header is rejected (never silently truncated). UNIQUE_ID is opaque
 *   bytes, at most 128. CRC32C must be 4 bytes and match (the header is
 *   rejected otherwise). NOOP and unknown types are skipped.
 * v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" with exactly one
 * space between fields, IPv4 as 4 decimal numbers without leading zeros,
 * IPv6 in inet_pton form, ports 0..65535 without leading zeros, CRLF within
 * 107 bytes; or "PROXY UNKNOWN" followed by anything up to CRLF (no
 * addresses). A lone CR or LF is an error.
 */
#ifndef POSTERN_PROXY_H
#define POSTERN_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Hard limit on a whole v2 header (16 fixed bytes + addresses + TLVs), both
 * decoded and encoded. HAProxy's own headers stay far below. */
#define PN_PROXY_V2_MAX_HEADER 4096
/* Longest v1 line including the CRLF (spec section 2.1). */
#define PN_PROXY_V1_MAX_LINE 107

/* v2 constants (spec section 2.2). */
#define PN_PROXY_V2_SIG_LEN 12
extern const uint8_t pn_proxy_v2_signature[PN_PROXY_V2_SIG_LEN];
#define PN_PP2_TYPE_ALPN 0x01
#define PN_PP2_TYPE_AUTHORITY 0x02
#define PN_PP2_TYPE_CRC32C 0x03
#define PN_PP2_TYPE_NOOP 0x04
#define PN_PP2_TYPE_UNIQUE_ID 0x05
#define PN_PP2_TYPE_SSL 0x20
#define PN_PP2_SUBTYPE_SSL_VERSION 0x21
#define PN_PP2_SUBTYPE_SSL_CN 0x22
#define PN_PP2_SUBTYPE_SSL_CIPHER 0x23
#define PN_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define PN_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define PN_PP2_TYPE_NETNS 0x30

/* Bits of pn_proxy_tls.client (PP2_CLIENT_*). */
#define PN_PP2_CLIENT_SSL 0x01	     /* client connected over TLS */
#define PN_PP2_CLIENT_CERT_CONN 0x02 /* client certificate on this connection */
#define PN_PP2_CLIENT_CERT_SESS 0x04 /* ... at least once in this TLS session */

#define PN_PROXY_UNIQUE_ID_MAX 128

enum pn_proxy_command {
	PN_PROXY_CMD_LOCAL = 0, /* health check etc. by the proxy itself */
	PN_PROXY_CMD_PROXY = 1, /* relayed on behalf of a client */
};

/* The SSL TLV. Strings are NUL-terminated; "" means the sub-TLV is absent. */
struct pn_proxy_tls {
	uint8_t client;		/* PN_PP2_CLIENT_* bits */
	uint32_t verify;	/* 0: client certificate presented and verified */
	char version[32];	/* "TLSv1.3" */
	char cipher[128];	/* "TLS_AES_256_GCM_SHA384" */
	char sig_alg[64];	/* "RSA-SHA256" */
	char key_alg[64];	/* "RSA2048" */
	char cn[256];		/* client certificate's Common Name, UTF-8 */
};

/* A PROXY header, as decoded or to encode. Fixed size, no pointers. Strings
 * are NUL-terminated and "" means "absent". */
struct pn_proxy_header {
	uint8_t version;		/* decoded: 1 or 2; ignored by the encoder */
	enum pn_proxy_command command;
	/* True when src/dst hold the client's original endpoints (AF_INET or
	 * AF_INET6 with ports). False for LOCAL, v1 UNKNOWN and v2 families
	 * other than TCP: use the connection's own endpoints then. */
	bool has_addrs;
	/* Decoded: the v2 family/protocol byte (0x11 TCP4, 0x21 TCP6, ...); for
	 * v1 0x11, 0x21 or 0x00 (UNKNOWN). Ignored by the encoder. */
	uint8_t fam;
	struct sockaddr_storage src, dst;

	char alpn[256];			/* PP2_TYPE_ALPN, e.g. "imap" */
	char authority[256];		/* PP2_TYPE_AUTHORITY (TLS SNI) */
	uint8_t unique_id[PN_PROXY_UNIQUE_ID_MAX]; /* PP2_TYPE_UNIQUE_ID */
	size_t unique_id_len;		/* 0: absent */
	bool has_tls;			/* PP2_TYPE_SSL present */
	struct pn_proxy_tls tls;
	char netns[256];		/* PP2_TYPE_NETNS */
	/* Decoded: a CRC32C TLV was present (and matched, or the header would
	 * have been rejected). Encoder: append a CRC32C TLV. */
	bool crc32c;
};

/* Flags for pn_proxy_decode(). */
enum pn_proxy_decode_flags {
	PN_PROXY_DECODE_V2_ONLY = 0x1, /* refuse the v1 text form */
};

/* Decodes a v2 or v1 header from data[0..len); see the top of this file.
 * Returns the header length (> 0) and fills *hdr_r, 0 if more bytes are
 * needed (*hdr_r unspecified), or -1 with *error_r set. */
int pn_proxy_decode(const void *data, size_t len, unsigned int flags,
		    struct pn_proxy_header *hdr_r, const char **error_r);

/* Encodes hdr as a v2 header into dst[0..dst_size). Returns its length, or
 * -1 with *error_r set: buffer too small, header over
 * PN_PROXY_V2_MAX_HEADER, PROXY with an address family other than
 * AF_INET/AF_INET6, an unterminated string field or unique_id_len over
 * PN_PROXY_UNIQUE_ID_MAX.
 * - PROXY with has_addrs: family TCP over IPv4 if both endpoints are IPv4
 *   (an IPv4-mapped IPv6 endpoint counts as IPv4 when the other one is
 *   AF_INET), else TCP over IPv6 (an AF_INET endpoint is then written
 *   IPv4-mapped).
 * - PROXY without has_addrs, and LOCAL (whose src/dst are ignored): family
 *   UNSPEC with no address block.
 * - TLVs in this order, each only if set: ALPN, AUTHORITY, UNIQUE_ID, SSL
 *   (client, verify, then the non-empty sub-TLVs VERSION, CIPHER, SIG_ALG,
 *   KEY_ALG, CN), NETNS, and CRC32C last, computed over the whole header.
 */
int pn_proxy_v2_encode(const struct pn_proxy_header *hdr, uint8_t *dst,
		       size_t dst_size, const char **error_r);

/* Resets hdr to an empty LOCAL header (all strings "", no addresses). */
void pn_proxy_header_init(struct pn_proxy_header *hdr);

#endif
