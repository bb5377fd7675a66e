/* libFuzzer target for postern/cidr.h. The input is parsed as one network
 * (raw, no NUL) and as a list (NUL-terminated copy). Every accepted network
 * must format to text that parses back to the identical network, must have
 * no host bits set, and must contain its own network address; matching
 * addresses built from the input must not crash.
 */
#include "postern/cidr.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_net(const struct pn_cidr *net)
{
	char text[PN_CIDR_STRLEN];
	struct pn_cidr again;
	const char *err = NULL;
	struct sockaddr_storage ss;

	if (net->family != AF_INET && net->family != AF_INET6)
		abort();
	if (net->prefix > (net->family == AF_INET ? 32 : 128))
		abort();
	pn_cidr_format(net, text, sizeof(text));
	if (pn_cidr_parse(text, &again, &err) != 0 || again.family != net->family ||
	    again.prefix != net->prefix || memcmp(again.addr, net->addr, 16) != 0)
		abort();

	memset(&ss, 0, sizeof(ss));
	if (net->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, net->addr, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, net->addr, 16);
	}
	if (!pn_cidr_match(net, (struct sockaddr *)&ss))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pn_cidr net;
	struct pn_cidr_list list;
	const char *err = NULL;

	if (pn_cidr_parse_n((const char *)data, size, &net, &err) == 0)
		check_net(&net);

	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	if (pn_cidr_list_parse(s, &list, &err) == 0) {
		struct sockaddr_in6 a6;
		struct sockaddr_in a4;
		memset(&a6, 0, sizeof(a6));
		memset(&a4, 0, sizeof(a4));
		a6.sin6_family = AF_INET6;
		a4.sin_family = AF_INET;
		memcpy(&a6.sin6_addr, data, size < 16 ? size : 16);
		memcpy(&a4.sin_addr, data, size < 4 ? size : 4);
		for (size_t i = 0; i < list.count; i++)
			check_net(&list.nets[i]);
		(void)pn_cidr_list_match(&list, (struct sockaddr *)&a6);
		(void)pn_cidr_list_match(&list, (struct sockaddr *)&a4);
		pn_cidr_list_free(&list);
	} else if (list.nets != NULL || list.count != 0) {
		abort();
	}
	free(s);
	return 0;
}
