/* libFuzzer target for the session registry record and key parsers: a
 * record that parses formats back and parses to the same fields. */
#include "postern/store-session.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_session_record r, again;
	char buf[STORE_SESSION_RECORD_MAX * 2];
	const char *error;
	uint64_t id;
	int n;

	(void)store_session_key_parse((const char *)data, size, &id);
	if (store_session_record_parse((const char *)data, size, &r, &error) < 0)
		return 0;
	n = store_session_record_format(&r, buf, sizeof(buf), &error);
	if (n < 0)
		return 0; /* e.g. an empty client: parse allows, format refuses */
	if (store_session_record_parse(buf, (size_t)n, &again, &error) < 0 ||
	    memcmp(&r, &again, sizeof(r)) != 0)
		abort();
	return 0;
}
