/* Socket helpers for loop users: listening and connecting TCP sockets, and
 * numeric "host:port" parsing and formatting. Nothing here resolves names or
 * blocks (see postern/loop.h; names go through postern/dns.h).
 */
#include "postern/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* Parses a decimal port 0..65535 spanning all of s. */
static int parse_port(const char *s, uint16_t *port_r)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -1;
	}
	*port_r = (uint16_t)v;
	return 0;
}

/* Numeric host (no brackets) of at most hostlen bytes into addr. */
static int parse_host(const char *host, size_t hostlen, uint16_t port,
		      struct sockaddr_storage *addr, socklen_t *len_r)
{
	char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	char *scope;

	if (hostlen == 0 || hostlen >= sizeof(buf))
		return -1;
	memcpy(buf, host, hostlen);
	buf[hostlen] = '\0';
	memset(addr, 0, sizeof(*addr));
	if (strchr(buf, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)addr;

		if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len_r = sizeof(*sin);
		return 0;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;

	scope = strchr(buf, '%');
	if (scope != NULL) {
		char *end;
		unsigned long id;

		*scope++ = '\0';
		if (*scope == '\0')
			return -1;
		id = strtoul(scope, &end, 10);
		if (*end != '\0')
			id = if_nametoindex(scope);
		if (id == 0 || id > UINT32_MAX)
			return -1;
		sin6->sin6_scope_id = (uint32_t)id;
	}
	if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
		return -1;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	*len_r = sizeof(*sin6);
	return 0;
}

int pn_parse_hostport(const char *s, struct sockaddr_storage *addr, socklen_t *len_r)
{
	const char *colon, *host;
	size_t hostlen;
	uint16_t port;

	if (s == NULL)
		return -1;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host = s + 1;
		hostlen = (size_t)(close - host);
		if (memchr(host, ':', hostlen) == NULL)
			return -1; /* brackets are for IPv6 only */
		colon = close + 1;
	} else {
		colon = strchr(s, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL)
			return -1; /* no port, or a bare IPv6 address */
		host = s;
		hostlen = (size_t)(colon - s);
	}
	if (parse_port(colon + 1, &port) < 0)
		return -1;
	if (hostlen == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)addr;

		if (s[0] == '[')
			return -1;
		memset(addr, 0, sizeof(*addr));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(port);
		*len_r = sizeof(*sin);
		return 0;
	}
	return parse_host(host, hostlen, port, addr, len_r);
}

char *pn_format_addr(const struct sockaddr *sa, char *dst, size_t dstsize)
{
	char host[INET6_ADDRSTRLEN];

	if (dstsize == 0)
		return dst;
	if (sa == NULL) {
		snprintf(dst, dstsize, "?");
		return dst;
	}
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(dst, dstsize, "%s:%u", host, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		if (sin6->sin6_scope_id != 0)
			snprintf(dst, dstsize, "[%s%%%u]:%u", host,
				 sin6->sin6_scope_id, ntohs(sin6->sin6_port));
		else
			snprintf(dst, dstsize, "[%s]:%u", host, ntohs(sin6->sin6_port));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;

		snprintf(dst, dstsize, "unix:%.*s", (int)sizeof(sun->sun_path),
			 sun->sun_path);
		break;
	}
	default:
		snprintf(dst, dstsize, "?");
		break;
	}
	return dst;
}

static int listen_on(const struct sockaddr_storage *addr, socklen_t len,
		     int backlog, bool v6only_off, const char **error_r)
{
	int fd, one = 1, zero = 0;

	fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*error_r = "socket() failed";
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    (v6only_off &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)) {
		*error_r = "setsockopt() failed";
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)addr, len) < 0) {
		*error_r = errno == EADDRINUSE ? "bind(): address in use" :
			   errno == EACCES ? "bind(): permission denied" :
			   errno == EADDRNOTAVAIL ? "bind(): address not available" :
			   "bind() failed";
		goto fail;
	}
	if (listen(fd, backlog) < 0) {
		*error_r = "listen() failed";
		goto fail;
	}
	return fd;
fail: {
	int saved = errno;

	close(fd);
	errno = saved;
	return -1;
}
}

int pn_listen_tcp(const char *host, uint16_t port, int backlog, const char **error_r)
{
	struct sockaddr_storage addr;
	socklen_t len;
	int fd;

	if (host == NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr;
		struct sockaddr_in *sin = (struct sockaddr_in *)&addr;

		memset(&addr, 0, sizeof(addr));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = htons(port);
		fd = listen_on(&addr, sizeof(*sin6), backlog, true, error_r);
		if (fd >= 0 || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL))
			return fd;
		memset(&addr, 0, sizeof(addr));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(port);
		return listen_on(&addr, sizeof(*sin), backlog, false, error_r);
	}
	size_t hostlen = strlen(host);

	if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']') {
		host++;
		hostlen -= 2;
	}
	if (parse_host(host, hostlen, port, &addr, &len) < 0) {
		*error_r = "not a numeric IPv4 or IPv6 address";
		errno = EINVAL;
		return -1;
	}
	return listen_on(&addr, len, backlog, false, error_r);
}

int pn_socket_tcp(int family, const char **error_r)
{
	int fd;

	if (family != AF_INET && family != AF_INET6) {
		*error_r = "address family is not AF_INET or AF_INET6";
		errno = EAFNOSUPPORT;
		return -1;
	}
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*error_r = "socket() failed";
		return -1;
	}
	if (pn_socket_nodelay(fd) < 0) {
		*error_r = "setsockopt(TCP_NODELAY) failed";
		close(fd);
		return -1;
	}
	return fd;
}

uint16_t pn_socket_port(int fd)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof(addr);

	if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
		return 0;
	if (addr.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&addr)->sin_port);
	if (addr.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
	return 0;
}

int pn_socket_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
