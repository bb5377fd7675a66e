/* CIDR networks (RFC 4632 section 3.1 prefix notation for IPv4, RFC 4291
 * section 2.3 for IPv6): a strict parser for single networks and lists, the
 * prefix match against socket addresses with IPv4-mapped IPv6 folded to
 * IPv4, and formatting. The rules are listed in postern/cidr.h.
 */
#include "postern/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" is 49 characters. */
#define CIDR_TEXT_MAX 63

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Decimal number without leading zeros ("0" itself is fine), at most max.
 * Returns the value or -1. */
static int parse_dec(const char *s, size_t len, int max)
{
	int v = 0;

	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* RFC 4632 / the usual dotted-quad: exactly four decimal numbers 0..255,
 * no leading zeros (which some libraries read as octal). */
int pn_ip_parse_v4(const char *s, size_t len, uint8_t out[4])
{
	size_t start = 0;
	int part = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (part == 4)
			return -1;
		int v = parse_dec(s + start, i - start, 255);
		if (v < 0)
			return -1;
		out[part++] = (uint8_t)v;
		start = i + 1;
	}
	return part == 4 ? 0 : -1;
}

/* RFC 4291 section 2.2 text forms, through inet_pton after checking that
 * only hex digits, ':' and '.' (for an embedded IPv4 tail) appear. */
int pn_ip_parse_v6(const char *s, size_t len, uint8_t out[16])
{
	char tmp[CIDR_TEXT_MAX + 1];

	if (len == 0 || len > CIDR_TEXT_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		      (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
			return -1;
	}
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1 ? 0 : -1;
}

static bool host_bits_zero(const uint8_t *addr, unsigned int bytes, unsigned int prefix)
{
	for (unsigned int bit = prefix; bit < bytes * 8; bit++) {
		if ((addr[bit / 8] & (0x80u >> (bit % 8))) != 0)
			return false;
	}
	return true;
}

int pn_cidr_parse_n(const char *s, size_t len, struct pn_cidr *net_r,
		    const char **error_r)
{
	const char *slash = memchr(s, '/', len);
	size_t alen = slash != NULL ? (size_t)(slash - s) : len;
	struct pn_cidr net;
	int max_prefix;

	memset(&net, 0, sizeof(net));
	if (len == 0) {
		*error_r = "empty network";
		return -1;
	}
	if (len > CIDR_TEXT_MAX) {
		*error_r = "network text too long";
		return -1;
	}
	if (memchr(s, ':', alen) != NULL) {
		net.family = AF_INET6;
		max_prefix = 128;
		if (pn_ip_parse_v6(s, alen, net.addr) < 0) {
			*error_r = "invalid IPv6 address";
			return -1;
		}
	} else {
		net.family = AF_INET;
		max_prefix = 32;
		if (pn_ip_parse_v4(s, alen, net.addr) < 0) {
			*error_r = "invalid IPv4 address";
			return -1;
		}
	}
	if (slash != NULL) {
		int p = parse_dec(slash + 1, len - alen - 1, max_prefix);
		if (p < 0) {
			*error_r = "invalid prefix length (0..32 for IPv4, 0..128 for IPv6)";
			return -1;
		}
		net.prefix = (uint8_t)p;
	} else {
		net.prefix = (uint8_t)max_prefix;
	}
	if (!host_bits_zero(net.addr, (unsigned int)max_prefix / 8, net.prefix)) {
		*error_r = "address has bits set beyond the prefix length";
		return -1;
	}
	/* Fold ::ffff:a.b.c.d/96+n into a.b.c.d/n (see the header). */
	if (net.family == AF_INET6 && net.prefix >= 96 &&
	    memcmp(net.addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
		uint8_t v4[4];
		memcpy(v4, net.addr + 12, 4);
		memset(net.addr, 0, sizeof(net.addr));
		memcpy(net.addr, v4, 4);
		net.family = AF_INET;
		net.prefix = (uint8_t)(net.prefix - 96);
	}
	*net_r = net;
	return 0;
}

int pn_cidr_parse(const char *s, struct pn_cidr *net_r, const char **error_r)
{
	return pn_cidr_parse_n(s, strlen(s), net_r, error_r);
}

bool pn_cidr_match(const struct pn_cidr *net, const struct sockaddr *sa)
{
	const uint8_t *a;
	int family;

	if (sa->sa_family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		family = AF_INET6;
		if (memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
			a += 12;
			family = AF_INET;
		}
	} else {
		return false;
	}
	if (family != net->family)
		return false;

	unsigned int full = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(a, net->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xffu << (8 - rest));
	return (a[full] & mask) == net->addr[full];
}

char *pn_cidr_format(const struct pn_cidr *net, char *dst, size_t dst_size)
{
	char addr[INET6_ADDRSTRLEN];

	if (inet_ntop(net->family, net->addr, addr, sizeof(addr)) == NULL)
		addr[0] = '\0';
	if (dst_size > 0)
		snprintf(dst, dst_size, "%s/%u", addr, (unsigned int)net->prefix);
	return dst;
}

static bool is_list_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int pn_cidr_list_parse(const char *s, struct pn_cidr_list *list_r,
		       const char **error_r)
{
	size_t count = 0, len = strlen(s), i;

	list_r->nets = NULL;
	list_r->count = 0;
	/* First pass: count the items so that one allocation does. */
	for (i = 0; i < len;) {
		while (i < len && is_list_sep(s[i]))
			i++;
		if (i == len)
			break;
		while (i < len && !is_list_sep(s[i]))
			i++;
		if (++count > PN_CIDR_LIST_MAX) {
			*error_r = "too many networks in list";
			return -1;
		}
	}
	if (count == 0)
		return 0;
	struct pn_cidr *nets = calloc(count, sizeof(*nets));
	if (nets == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	size_t n = 0;
	for (i = 0; i < len;) {
		while (i < len && is_list_sep(s[i]))
			i++;
		if (i == len)
			break;
		size_t start = i;
		while (i < len && !is_list_sep(s[i]))
			i++;
		if (pn_cidr_parse_n(s + start, i - start, &nets[n], error_r) < 0) {
			free(nets);
			return -1;
		}
		n++;
	}
	list_r->nets = nets;
	list_r->count = n;
	return 0;
}

void pn_cidr_list_free(struct pn_cidr_list *list)
{
	free(list->nets);
	list->nets = NULL;
	list->count = 0;
}

bool pn_cidr_list_match(const struct pn_cidr_list *list, const struct sockaddr *sa)
{
	for (size_t i = 0; i < list->count; i++) {
		if (pn_cidr_match(&list->nets[i], sa))
			return true;
	}
	return false;
}
