/* libFuzzer target for the kick request parser (postern/store-kick.h): a
 * message that parses formats back and parses to the same request, and
 * the node hash field reader never overruns its buffers. */
#include "postern/store-kick.h"
#include "postern/store-nodes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_kick k, again;
	struct store_rnode node;
	char buf[STORE_KICK_MAX + 1];
	const char *error;
	const uint8_t *eq;
	int n;

	memset(&node, 0, sizeof(node));
	eq = memchr(data, '=', size);
	if (eq != NULL)
		store_rnode_set_field(&node, (const char *)data, (size_t)(eq - data),
				      (const char *)eq + 1, size - (size_t)(eq - data) - 1);
	if (store_kick_parse((const char *)data, size, &k, &error) < 0)
		return 0;
	n = store_kick_format(&k, buf, sizeof(buf), &error);
	if (n < 0)
		abort(); /* everything the parser accepts can be written */
	if (store_kick_parse(buf, (size_t)n, &again, &error) < 0 ||
	    memcmp(&k, &again, sizeof(k)) != 0)
		abort();
	return 0;
}
