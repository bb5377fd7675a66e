/* PROXY protocol: the v2 encoder and the v1/v2 decoder described in
 * postern/proxy.h, following HAProxy's doc/proxy-protocol.txt (sections
 * quoted as "spec 2.1" etc.). The decoder is a pure function of the bytes
 * received so far; every read is bounds-checked against the given length.
 */
#include "postern/proxy.h"

#include "postern/cidr.h"

#include "postern/hash.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

const uint8_t pn_proxy_v2_signature[PN_PROXY_V2_SIG_LEN] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

#define V2_FIXED_LEN 16		/* signature, ver_cmd, fam, len */
#define TLV_HDR_LEN 3		/* type, length_hi, length_lo */
#define SSL_TLV_FIXED_LEN 5	/* client (1), verify (4) */
#define ADDR_LEN_INET 12	/* 2 * 4 + 2 * 2 */
#define ADDR_LEN_INET6 36	/* 2 * 16 + 2 * 2 */
#define ADDR_LEN_UNIX 216	/* 2 * 108 */

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

void pn_proxy_header_init(struct pn_proxy_header *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->command = PN_PROXY_CMD_LOCAL;
}

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void set_in4(struct sockaddr_storage *ss, const uint8_t addr[4], const uint8_t port[2])
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr, 4);
	memcpy(&sin->sin_port, port, 2); /* both in network byte order */
}

static void set_in6(struct sockaddr_storage *ss, const uint8_t addr[16], const uint8_t port[2])
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	memcpy(&sin6->sin6_port, port, 2);
}

/* ---- v2 decoder ---------------------------------------------------------- */

/* Which known TLVs were seen, to refuse duplicates. */
enum {
	SEEN_ALPN = 1 << 0,
	SEEN_AUTHORITY = 1 << 1,
	SEEN_CRC32C = 1 << 2,
	SEEN_UNIQUE_ID = 1 << 3,
	SEEN_SSL = 1 << 4,
	SEEN_NETNS = 1 << 5,
	SEEN_SSL_VERSION = 1 << 6,
	SEEN_SSL_CN = 1 << 7,
	SEEN_SSL_CIPHER = 1 << 8,
	SEEN_SSL_SIG_ALG = 1 << 9,
	SEEN_SSL_KEY_ALG = 1 << 10,
};

struct tlv_state {
	const uint8_t *hdr;	/* start of the whole header */
	unsigned int seen;
	size_t crc_off;		/* offset of the CRC32C value in hdr, if seen */
};

/* Copies a string TLV value into a fixed field, refusing duplicates,
 * values that do not fit with their NUL, and embedded NULs. */
static int copy_string_tlv(char *field, size_t field_size, const uint8_t *v, size_t vlen,
			   struct tlv_state *st, unsigned int bit, const char **error_r)
{
	if ((st->seen & bit) != 0) {
		*error_r = "PROXY v2: duplicate TLV";
		return -1;
	}
	st->seen |= bit;
	if (vlen >= field_size) {
		*error_r = "PROXY v2: TLV value too long";
		return -1;
	}
	if (memchr(v, '\0', vlen) != NULL) {
		*error_r = "PROXY v2: NUL byte in TLV string";
		return -1;
	}
	memcpy(field, v, vlen);
	field[vlen] = '\0';
	return 0;
}

/* Spec 2.2: TLVs are type (1), length (2, big endian), value; they fill
 * [off, end) exactly. On success *type_r / *v_r / *vlen_r describe the TLV
 * at *off, which advances past it. */
static int next_tlv(const uint8_t *p, size_t *off, size_t end, uint8_t *type_r,
		    const uint8_t **v_r, size_t *vlen_r, const char *overrun_msg,
		    const char **error_r)
{
	if (end - *off < TLV_HDR_LEN) {
		*error_r = overrun_msg;
		return -1;
	}
	size_t vlen = get_be16(p + *off + 1);
	if (vlen > end - *off - TLV_HDR_LEN) {
		*error_r = overrun_msg;
		return -1;
	}
	*type_r = p[*off];
	*v_r = p + *off + TLV_HDR_LEN;
	*vlen_r = vlen;
	*off += TLV_HDR_LEN + vlen;
	return 0;
}

/* Spec 2.2.6: struct pp2_tlv_ssl { uint8_t client; uint32_t verify;
 * struct pp2_tlv sub_tlv[0]; }, sub-TLVs filling the rest of the value. */
static int decode_ssl_tlv(const uint8_t *v, size_t vlen, struct pn_proxy_header *hdr,
			  struct tlv_state *st, const char **error_r)
{
	struct pn_proxy_tls *tls = &hdr->tls;

	if ((st->seen & SEEN_SSL) != 0) {
		*error_r = "PROXY v2: duplicate TLV";
		return -1;
	}
	st->seen |= SEEN_SSL;
	if (vlen < SSL_TLV_FIXED_LEN) {
		*error_r = "PROXY v2: SSL TLV too short";
		return -1;
	}
	hdr->has_tls = true;
	tls->client = v[0];
	tls->verify = get_be32(v + 1);

	size_t off = SSL_TLV_FIXED_LEN;
	while (off < vlen) {
		uint8_t type;
		const uint8_t *sv;
		size_t svlen;
		int ret = 0;

		if (next_tlv(v, &off, vlen, &type, &sv, &svlen,
			     "PROXY v2: sub-TLV overruns the SSL TLV", error_r) < 0)
			return -1;
		switch (type) {
		case PN_PP2_SUBTYPE_SSL_VERSION:
			ret = copy_string_tlv(tls->version, sizeof(tls->version), sv, svlen,
					      st, SEEN_SSL_VERSION, error_r);
			break;
		case PN_PP2_SUBTYPE_SSL_CN:
			ret = copy_string_tlv(tls->cn, sizeof(tls->cn), sv, svlen, st,
					      SEEN_SSL_CN, error_r);
			break;
		case PN_PP2_SUBTYPE_SSL_CIPHER:
			ret = copy_string_tlv(tls->cipher, sizeof(tls->cipher), sv, svlen,
					      st, SEEN_SSL_CIPHER, error_r);
			break;
		case PN_PP2_SUBTYPE_SSL_SIG_ALG:
			ret = copy_string_tlv(tls->sig_alg, sizeof(tls->sig_alg), sv, svlen,
					      st, SEEN_SSL_SIG_ALG, error_r);
			break;
		case PN_PP2_SUBTYPE_SSL_KEY_ALG:
			ret = copy_string_tlv(tls->key_alg, sizeof(tls->key_alg), sv, svlen,
					      st, SEEN_SSL_KEY_ALG, error_r);
			break;
		default:
			break; /* spec 2.2: receivers may skip what they don't know */
		}
		if (ret < 0)
			return -1;
	}
	return 0;
}

static int decode_tlvs(const uint8_t *p, size_t off, size_t end,
		       struct pn_proxy_header *hdr, struct tlv_state *st,
		       const char **error_r)
{
	while (off < end) {
		uint8_t type;
		const uint8_t *v;
		size_t vlen;
		int ret = 0;

		if (next_tlv(p, &off, end, &type, &v, &vlen,
			     "PROXY v2: TLV overruns the header", error_r) < 0)
			return -1;
		switch (type) {
		case PN_PP2_TYPE_ALPN:
			ret = copy_string_tlv(hdr->alpn, sizeof(hdr->alpn), v, vlen, st,
					      SEEN_ALPN, error_r);
			break;
		case PN_PP2_TYPE_AUTHORITY:
			ret = copy_string_tlv(hdr->authority, sizeof(hdr->authority), v,
					      vlen, st, SEEN_AUTHORITY, error_r);
			break;
		case PN_PP2_TYPE_CRC32C:
			/* Spec 2.2.3: a 32-bit value; checked once the whole
			 * header has been walked. */
			if ((st->seen & SEEN_CRC32C) != 0) {
				*error_r = "PROXY v2: duplicate TLV";
				return -1;
			}
			st->seen |= SEEN_CRC32C;
			if (vlen != 4) {
				*error_r = "PROXY v2: CRC32C TLV is not 4 bytes";
				return -1;
			}
			st->crc_off = (size_t)(v - st->hdr);
			break;
		case PN_PP2_TYPE_UNIQUE_ID:
			/* Spec 2.2.5: opaque, up to 128 bytes. */
			if ((st->seen & SEEN_UNIQUE_ID) != 0) {
				*error_r = "PROXY v2: duplicate TLV";
				return -1;
			}
			st->seen |= SEEN_UNIQUE_ID;
			if (vlen > PN_PROXY_UNIQUE_ID_MAX) {
				*error_r = "PROXY v2: UNIQUE_ID longer than 128 bytes";
				return -1;
			}
			memcpy(hdr->unique_id, v, vlen);
			hdr->unique_id_len = vlen;
			break;
		case PN_PP2_TYPE_SSL:
			ret = decode_ssl_tlv(v, vlen, hdr, st, error_r);
			break;
		case PN_PP2_TYPE_NETNS:
			ret = copy_string_tlv(hdr->netns, sizeof(hdr->netns), v, vlen, st,
					      SEEN_NETNS, error_r);
			break;
		case PN_PP2_TYPE_NOOP:
		default:
			break;
		}
		if (ret < 0)
			return -1;
	}
	return 0;
}

/* Spec 2.2: the 16-byte fixed part, the address block for the family, then
 * TLVs up to 16 + len. Returns as pn_proxy_decode(). */
static int decode_v2(const uint8_t *p, size_t len, struct pn_proxy_header *hdr,
		     const char **error_r)
{
	size_t sig = len < PN_PROXY_V2_SIG_LEN ? len : PN_PROXY_V2_SIG_LEN;

	if (memcmp(p, pn_proxy_v2_signature, sig) != 0) {
		*error_r = "PROXY v2: bad signature";
		return -1;
	}
	if (len <= 12)
		return 0;
	/* 13th byte: version in the high nibble (must be 2), command low. */
	if ((p[12] >> 4) != 2) {
		*error_r = "PROXY v2: unsupported version";
		return -1;
	}
	uint8_t cmd = p[12] & 0x0f;
	if (cmd != PN_PROXY_CMD_LOCAL && cmd != PN_PROXY_CMD_PROXY) {
		*error_r = "PROXY v2: unknown command";
		return -1;
	}
	if (len <= 13)
		return 0;
	/* 14th byte: family and protocol; only the listed combinations. */
	uint8_t fam = p[13];
	size_t addr_len;
	switch (fam) {
	case 0x00: /* UNSPEC */
		addr_len = 0;
		break;
	case 0x11: /* TCP over IPv4 */
	case 0x12: /* UDP over IPv4 */
		addr_len = ADDR_LEN_INET;
		break;
	case 0x21: /* TCP over IPv6 */
	case 0x22: /* UDP over IPv6 */
		addr_len = ADDR_LEN_INET6;
		break;
	case 0x31: /* UNIX stream */
	case 0x32: /* UNIX datagram */
		addr_len = ADDR_LEN_UNIX;
		break;
	default:
		*error_r = "PROXY v2: invalid address family or protocol";
		return -1;
	}
	if (len < V2_FIXED_LEN)
		return 0;
	/* 15th-16th bytes: the length of what follows, network order. */
	size_t total = V2_FIXED_LEN + get_be16(p + 14);
	if (total > PN_PROXY_V2_MAX_HEADER) {
		*error_r = "PROXY v2: header longer than the limit";
		return -1;
	}
	if (total - V2_FIXED_LEN < addr_len) {
		*error_r = "PROXY v2: address block too short for its family";
		return -1;
	}
	if (len < total)
		return 0;

	pn_proxy_header_init(hdr);
	hdr->version = 2;
	hdr->command = cmd;
	hdr->fam = fam;
	const uint8_t *a = p + V2_FIXED_LEN;
	if (cmd == PN_PROXY_CMD_PROXY && fam == 0x11) {
		set_in4(&hdr->src, a, a + 8);
		set_in4(&hdr->dst, a + 4, a + 10);
		hdr->has_addrs = true;
	} else if (cmd == PN_PROXY_CMD_PROXY && fam == 0x21) {
		set_in6(&hdr->src, a, a + 32);
		set_in6(&hdr->dst, a + 16, a + 34);
		hdr->has_addrs = true;
	}

	struct tlv_state st = { .hdr = p, .seen = 0, .crc_off = 0 };
	if (decode_tlvs(p, V2_FIXED_LEN + addr_len, total, hdr, &st, error_r) < 0)
		return -1;
	if ((st.seen & SEEN_CRC32C) != 0) {
		/* Spec 2.2.3: the CRC of the whole header with the CRC field
		 * zeroed. The input is const, so hash around the field. */
		static const uint8_t zero[4];
		uint32_t want = get_be32(p + st.crc_off);
		uint32_t crc = pn_crc32c_update(0, p, st.crc_off);
		crc = pn_crc32c_update(crc, zero, sizeof(zero));
		crc = pn_crc32c_update(crc, p + st.crc_off + 4, total - st.crc_off - 4);
		if (crc != want) {
			*error_r = "PROXY v2: CRC32C mismatch";
			return -1;
		}
		hdr->crc32c = true;
	}
	return (int)total;
}

/* ---- v1 decoder ---------------------------------------------------------- */

/* Decimal without leading zeros ("0" alone is fine), at most max_digits
 * digits and max. Returns the value or -1. */
static long parse_dec(const char *s, size_t len, size_t max_digits, long max)
{
	long v = 0;

	if (len == 0 || len > max_digits || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* Spec 2.1 address forms: dotted quads without leading zeroes and
 * RFC 4291 text (HAProxy also emits ::ffff:a.b.c.d); parsed by cidr.c. */

/* Splits line[0..len) at single spaces into exactly n fields. */
static int split_fields(const char *line, size_t len, const char **f, size_t *flen, int n)
{
	int k = 0;
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (k == n || i == start)
			return -1; /* too many fields, or an empty one (double space) */
		f[k] = line + start;
		flen[k] = i - start;
		k++;
		start = i + 1;
	}
	return k == n ? 0 : -1;
}

/* Spec 2.1: "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") SP src SP dst SP sport
 * SP dport CRLF, CRLF within the first 107 bytes. Returns as
 * pn_proxy_decode(). */
static int decode_v1(const uint8_t *p, size_t len, struct pn_proxy_header *hdr,
		     const char **error_r)
{
	static const char prefix[] = "PROXY ";
	const size_t prefix_len = sizeof(prefix) - 1;
	size_t n = len < prefix_len ? len : prefix_len;

	if (memcmp(p, prefix, n) != 0) {
		*error_r = "PROXY v1: bad signature";
		return -1;
	}
	/* Reject an unknown protocol word early, before the CRLF arrives. */
	static const char *const protos[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };
	if (len > prefix_len) {
		size_t have = len - prefix_len;
		bool ok = false;
		for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]) && !ok; i++) {
			size_t plen = strlen(protos[i]);
			ok = memcmp(p + prefix_len, protos[i], have < plen ? have : plen) == 0;
		}
		if (!ok) {
			*error_r = "PROXY v1: unknown protocol";
			return -1;
		}
	}

	/* Find the CRLF; a CR must be followed by LF and an LF preceded by CR.
	 * The CR of a 107-byte line is at index 105, so look no further. */
	const size_t cr_limit = PN_PROXY_V1_MAX_LINE - 1;
	size_t scan = len < cr_limit ? len : cr_limit;
	size_t cr = 0;
	bool found = false;
	for (size_t i = 0; i < scan; i++) {
		if (p[i] == '\n') {
			*error_r = "PROXY v1: LF without CR";
			return -1;
		}
		if (p[i] == '\r') {
			if (i + 1 == len)
				return 0; /* the LF may still come */
			if (p[i + 1] != '\n') {
				*error_r = "PROXY v1: CR without LF";
				return -1;
			}
			cr = i;
			found = true;
			break;
		}
	}
	if (!found) {
		if (len >= cr_limit) {
			*error_r = "PROXY v1: no CRLF within 107 bytes";
			return -1;
		}
		return 0;
	}

	const char *line = (const char *)p + prefix_len;
	size_t line_len = cr - prefix_len; /* cr >= prefix_len: prefix has no CR */

	pn_proxy_header_init(hdr);
	hdr->version = 1;
	hdr->command = PN_PROXY_CMD_PROXY;
	if (line_len >= 7 && memcmp(line, "UNKNOWN", 7) == 0) {
		/* "the receiver must ignore anything presented before the
		 * CRLF", but the word must end there. */
		if (line_len > 7 && line[7] != ' ') {
			*error_r = "PROXY v1: unknown protocol";
			return -1;
		}
		hdr->fam = 0x00;
		return (int)(cr + 2);
	}

	const char *f[5];
	size_t fl[5];
	if (split_fields(line, line_len, f, fl, 5) < 0) {
		*error_r = "PROXY v1: wrong number of fields";
		return -1;
	}
	long sport = parse_dec(f[3], fl[3], 5, 65535);
	long dport = parse_dec(f[4], fl[4], 5, 65535);
	if (sport < 0 || dport < 0) {
		*error_r = "PROXY v1: invalid port";
		return -1;
	}
	uint8_t ports[2][2];
	put_be16(ports[0], (uint16_t)sport);
	put_be16(ports[1], (uint16_t)dport);
	if (fl[0] == 4 && memcmp(f[0], "TCP4", 4) == 0) {
		uint8_t s4[4], d4[4];
		if (pn_ip_parse_v4(f[1], fl[1], s4) < 0 || pn_ip_parse_v4(f[2], fl[2], d4) < 0) {
			*error_r = "PROXY v1: invalid IPv4 address";
			return -1;
		}
		set_in4(&hdr->src, s4, ports[0]);
		set_in4(&hdr->dst, d4, ports[1]);
		hdr->fam = 0x11;
	} else if (fl[0] == 4 && memcmp(f[0], "TCP6", 4) == 0) {
		uint8_t s6[16], d6[16];
		if (pn_ip_parse_v6(f[1], fl[1], s6) < 0 || pn_ip_parse_v6(f[2], fl[2], d6) < 0) {
			*error_r = "PROXY v1: invalid IPv6 address";
			return -1;
		}
		set_in6(&hdr->src, s6, ports[0]);
		set_in6(&hdr->dst, d6, ports[1]);
		hdr->fam = 0x21;
	} else {
		*error_r = "PROXY v1: unknown protocol";
		return -1;
	}
	hdr->has_addrs = true;
	return (int)(cr + 2);
}

int pn_proxy_decode(const void *data, size_t len, unsigned int flags,
		    struct pn_proxy_header *hdr_r, const char **error_r)
{
	const uint8_t *p = data;

	if (len == 0)
		return 0;
	/* Spec 2.2 end: v2 starts with its signature, v1 with "PROXY";
	 * anything else is not covered and the connection must be dropped. */
	if (p[0] == pn_proxy_v2_signature[0])
		return decode_v2(p, len, hdr_r, error_r);
	if (p[0] == 'P' && (flags & PN_PROXY_DECODE_V2_ONLY) == 0)
		return decode_v1(p, len, hdr_r, error_r);
	*error_r = "not a PROXY protocol header";
	return -1;
}

/* ---- v2 encoder ---------------------------------------------------------- */

struct enc {
	uint8_t *dst;
	size_t size, off;
	bool overflow;
};

static uint8_t *enc_reserve(struct enc *e, size_t n)
{
	if (e->overflow || n > e->size - e->off) {
		e->overflow = true;
		return NULL;
	}
	uint8_t *w = e->dst + e->off;
	e->off += n;
	return w;
}

static void enc_bytes(struct enc *e, const void *v, size_t n)
{
	uint8_t *w = enc_reserve(e, n);
	if (w != NULL && n > 0)
		memcpy(w, v, n);
}

/* Writes a TLV header and returns the offset of its length field, so that a
 * TLV whose size is known only afterwards (SSL) can be patched. */
static size_t enc_tlv_begin(struct enc *e, uint8_t type, size_t vlen)
{
	uint8_t h[TLV_HDR_LEN] = { type, (uint8_t)(vlen >> 8), (uint8_t)vlen };
	size_t at = e->off + 1;
	enc_bytes(e, h, sizeof(h));
	return at;
}

static void enc_tlv(struct enc *e, uint8_t type, const void *v, size_t vlen)
{
	enc_tlv_begin(e, type, vlen);
	enc_bytes(e, v, vlen);
}

/* A string field: must be NUL-terminated within its array; "" is omitted. */
static int enc_string_tlv(struct enc *e, uint8_t type, const char *field,
			  size_t field_size, const char **error_r)
{
	size_t n = strnlen(field, field_size);

	if (n == field_size) {
		*error_r = "PROXY v2 encode: unterminated string field";
		return -1;
	}
	if (n > 0)
		enc_tlv(e, type, field, n);
	return 0;
}

/* An endpoint reduced to family, 16 address bytes (IPv4 in the first 4) and
 * the port in network order. */
struct endpoint {
	bool v4;	 /* AF_INET */
	bool mapped;	 /* AF_INET6 holding ::ffff:a.b.c.d */
	uint8_t addr[16];
	uint8_t port[2];
};

static int get_endpoint(const struct sockaddr_storage *ss, struct endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		ep->v4 = true;
		memcpy(ep->addr, &sin->sin_addr, 4);
		memcpy(ep->port, &sin->sin_port, 2);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		memcpy(ep->addr, &sin6->sin6_addr, 16);
		memcpy(ep->port, &sin6->sin6_port, 2);
		ep->mapped = memcmp(ep->addr, v4mapped_prefix, 12) == 0;
		return 0;
	}
	return -1;
}

/* Address bytes of ep as IPv4 (it is v4 or mapped) or as IPv6. */
static void endpoint_v4(const struct endpoint *ep, uint8_t out[4])
{
	memcpy(out, ep->v4 ? ep->addr : ep->addr + 12, 4);
}

static void endpoint_v6(const struct endpoint *ep, uint8_t out[16])
{
	if (ep->v4) {
		memcpy(out, v4mapped_prefix, 12);
		memcpy(out + 12, ep->addr, 4);
	} else {
		memcpy(out, ep->addr, 16);
	}
}

int pn_proxy_v2_encode(const struct pn_proxy_header *hdr, uint8_t *dst,
		       size_t dst_size, const char **error_r)
{
	struct enc e = { .dst = dst, .size = dst_size, .off = 0, .overflow = false };
	struct endpoint src, dstep;
	uint8_t fam = 0x00;

	if (hdr->command != PN_PROXY_CMD_LOCAL && hdr->command != PN_PROXY_CMD_PROXY) {
		*error_r = "PROXY v2 encode: invalid command";
		return -1;
	}
	if (hdr->unique_id_len > PN_PROXY_UNIQUE_ID_MAX) {
		*error_r = "PROXY v2 encode: unique ID longer than 128 bytes";
		return -1;
	}
	if (hdr->command == PN_PROXY_CMD_PROXY && hdr->has_addrs) {
		if (get_endpoint(&hdr->src, &src) < 0 || get_endpoint(&hdr->dst, &dstep) < 0) {
			*error_r = "PROXY v2 encode: addresses must be AF_INET or AF_INET6";
			return -1;
		}
		bool src4 = src.v4 || src.mapped, dst4 = dstep.v4 || dstep.mapped;
		/* IPv4 only if both are and at least one is plain AF_INET (two
		 * mapped IPv6 endpoints stay IPv6, as they were). */
		fam = src4 && dst4 && (src.v4 || dstep.v4) ? 0x11 : 0x21;
	}

	/* Fixed part; the length is patched at the end. */
	enc_bytes(&e, pn_proxy_v2_signature, PN_PROXY_V2_SIG_LEN);
	uint8_t vc[4] = { (uint8_t)(0x20 | hdr->command), fam, 0, 0 };
	enc_bytes(&e, vc, sizeof(vc));
	if (fam == 0x11) {
		uint8_t a[ADDR_LEN_INET];
		endpoint_v4(&src, a);
		endpoint_v4(&dstep, a + 4);
		memcpy(a + 8, src.port, 2);
		memcpy(a + 10, dstep.port, 2);
		enc_bytes(&e, a, sizeof(a));
	} else if (fam == 0x21) {
		uint8_t a[ADDR_LEN_INET6];
		endpoint_v6(&src, a);
		endpoint_v6(&dstep, a + 16);
		memcpy(a + 32, src.port, 2);
		memcpy(a + 34, dstep.port, 2);
		enc_bytes(&e, a, sizeof(a));
	}

	if (enc_string_tlv(&e, PN_PP2_TYPE_ALPN, hdr->alpn, sizeof(hdr->alpn), error_r) < 0 ||
	    enc_string_tlv(&e, PN_PP2_TYPE_AUTHORITY, hdr->authority,
			   sizeof(hdr->authority), error_r) < 0)
		return -1;
	if (hdr->unique_id_len > 0)
		enc_tlv(&e, PN_PP2_TYPE_UNIQUE_ID, hdr->unique_id, hdr->unique_id_len);
	if (hdr->has_tls) {
		const struct pn_proxy_tls *tls = &hdr->tls;
		size_t len_at = enc_tlv_begin(&e, PN_PP2_TYPE_SSL, 0);
		size_t start = e.off;
		uint8_t fixed[SSL_TLV_FIXED_LEN];
		fixed[0] = tls->client;
		put_be32(fixed + 1, tls->verify);
		enc_bytes(&e, fixed, sizeof(fixed));
		if (enc_string_tlv(&e, PN_PP2_SUBTYPE_SSL_VERSION, tls->version,
				   sizeof(tls->version), error_r) < 0 ||
		    enc_string_tlv(&e, PN_PP2_SUBTYPE_SSL_CIPHER, tls->cipher,
				   sizeof(tls->cipher), error_r) < 0 ||
		    enc_string_tlv(&e, PN_PP2_SUBTYPE_SSL_SIG_ALG, tls->sig_alg,
				   sizeof(tls->sig_alg), error_r) < 0 ||
		    enc_string_tlv(&e, PN_PP2_SUBTYPE_SSL_KEY_ALG, tls->key_alg,
				   sizeof(tls->key_alg), error_r) < 0 ||
		    enc_string_tlv(&e, PN_PP2_SUBTYPE_SSL_CN, tls->cn, sizeof(tls->cn),
				   error_r) < 0)
			return -1;
		/* Sub-TLVs are bounded by their fields, so this fits 16 bits. */
		if (!e.overflow)
			put_be16(dst + len_at, (uint16_t)(e.off - start));
	}
	if (enc_string_tlv(&e, PN_PP2_TYPE_NETNS, hdr->netns, sizeof(hdr->netns), error_r) < 0)
		return -1;
	size_t crc_at = 0;
	if (hdr->crc32c) {
		static const uint8_t zero[4];
		enc_tlv_begin(&e, PN_PP2_TYPE_CRC32C, 4);
		crc_at = e.off;
		enc_bytes(&e, zero, sizeof(zero));
	}

	if (e.overflow) {
		*error_r = "PROXY v2 encode: buffer too small";
		return -1;
	}
	if (e.off > PN_PROXY_V2_MAX_HEADER) {
		*error_r = "PROXY v2 encode: header longer than the limit";
		return -1;
	}
	put_be16(dst + 14, (uint16_t)(e.off - V2_FIXED_LEN));
	if (hdr->crc32c)
		put_be32(dst + crc_at, pn_crc32c(dst, e.off));
	return (int)e.off;
}
