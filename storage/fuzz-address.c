/* libFuzzer target for the address, domain, size and count parsers: any
 * input is either accepted in canonical form or refused, never a crash. */
#include "postern/store-address.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[600];
	struct store_address a;
	char d[STORE_DOMAIN_MAX + 1];
	char again[STORE_ADDRESS_BUF];
	const char *error;
	int64_t v;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (store_address_parse(s, &a, &error) == 0) {
		struct store_address b;

		/* Canonical output parses back to itself. */
		memcpy(again, a.local, strlen(a.local));
		again[strlen(a.local)] = '@';
		memcpy(again + strlen(a.local) + 1, a.domain, strlen(a.domain) + 1);
		if (store_address_parse(again, &b, &error) != 0 ||
		    strcmp(a.local, b.local) != 0 || strcmp(a.domain, b.domain) != 0)
			abort();
		if (store_local_part_base_len(a.local) > strlen(a.local))
			abort();
	}
	(void)store_alias_source_parse(s, &a, &error);
	(void)store_domain_parse(s, d, sizeof(d), &error);
	if (store_size_parse(s, &v, &error) == 0 && v == 0)
		abort();
	(void)store_count_parse(s, &v, &error);
	return 0;
}
