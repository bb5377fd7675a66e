/* CIDR networks: parse "10.0.0.0/8", "2001:db8::/32", "127.0.0.1" (a single
 * host) and lists of them, and test whether a socket address falls inside.
 * Used to decide which peers may send a PROXY header, so the parser is
 * strict and the matcher exact.
 *
 * Rules:
 * - An address is numeric IPv4 dotted-quad (no leading zeros, no shorthand
 *   like "10.1") or IPv6 text as inet_pton(3) reads it; no zone ("%eth0"),
 *   no brackets, no host names.
 * - The prefix is decimal without leading zeros, 0..32 for IPv4, 0..128 for
 *   IPv6. Without "/prefix" the network is the single host (/32 or /128).
 * - Host bits must be zero: "10.1.2.3/8" is an error (did you mean
 *   10.0.0.0/8 or 10.1.2.3/32?), as a typo there would silently widen or
 *   narrow who is trusted.
 * - IPv4-mapped IPv6 is folded to IPv4: the network "::ffff:10.0.0.0/104"
 *   is stored as 10.0.0.0/8, and a peer address ::ffff:10.1.2.3 (what a
 *   dual-stack socket reports for an IPv4 client) is matched as 10.1.2.3.
 *   So IPv4 networks match IPv4 clients on either kind of socket.
 * - A list separates networks by commas and/or whitespace (space, tab, CR,
 *   LF), in any mix and number: "10.0.0.0/8, 192.168.0.0/16 ::1". An empty
 *   list is valid and matches nothing.
 *
 * Nothing here does I/O. Lists are allocated once at configuration time.
 */
#ifndef POSTERN_CIDR_H
#define POSTERN_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text form pn_cidr_format() writes, with the NUL. */
#define PN_CIDR_STRLEN 64
/* Most networks one list may hold (a configuration sanity limit). */
#define PN_CIDR_LIST_MAX 4096

struct pn_cidr {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t prefix;		/* 0..32 or 0..128 */
	uint8_t addr[16];	/* network address, host bits zero; IPv4 in [0..4) */
};

struct pn_cidr_list {
	struct pn_cidr *nets;	/* count entries, malloc'd; NULL when empty */
	size_t count;
};

/* Parses one network from the NUL-terminated s. Returns 0 and fills *net_r,
 * or -1 with *error_r set to a static message. */
/* Strict textual addresses, shared with the PROXY v1 reader: IPv4 is
 * exactly four decimal numbers 0..255 without leading zeros (no octal
 * surprises); IPv6 is RFC 4291 2.2 text (hex digits, ':' and a dotted IPv4
 * tail). s need not be NUL-terminated. Return 0, or -1 if malformed. */
int pn_ip_parse_v4(const char *s, size_t len, uint8_t out[4]);
int pn_ip_parse_v6(const char *s, size_t len, uint8_t out[16]);

int pn_cidr_parse(const char *s, struct pn_cidr *net_r, const char **error_r);
/* Same for s[0..len) (no NUL needed). */
int pn_cidr_parse_n(const char *s, size_t len, struct pn_cidr *net_r,
		    const char **error_r);

/* True if sa (AF_INET or AF_INET6; anything else never matches) lies in
 * net. IPv4-mapped IPv6 addresses are matched as IPv4. */
bool pn_cidr_match(const struct pn_cidr *net, const struct sockaddr *sa);

/* Writes "a.b.c.d/p" or "x::y/p" into dst (PN_CIDR_STRLEN is enough).
 * Returns dst. */
char *pn_cidr_format(const struct pn_cidr *net, char *dst, size_t dst_size);

/* Parses a list from the NUL-terminated s into *list_r (which is
 * overwritten; free it with pn_cidr_list_free()). Returns 0, or -1 with
 * *error_r set and *list_r empty. Duplicates are kept. More than
 * PN_CIDR_LIST_MAX entries or an allocation failure is an error. */
int pn_cidr_list_parse(const char *s, struct pn_cidr_list *list_r,
		       const char **error_r);
/* Frees the entries; the list is empty (and reusable) afterwards. */
void pn_cidr_list_free(struct pn_cidr_list *list);
/* True if any network of list contains sa. */
bool pn_cidr_list_match(const struct pn_cidr_list *list, const struct sockaddr *sa);

#endif
