/* libFuzzer target for the peer-fed readers of lb-check.c: the /readyz
 * answer reader (every prefix of the input, with and without the end of
 * stream) and the greeting matcher for each protocol's prefix. A complete
 * answer must carry a status from 100 to 599, "draining" only with 503, and
 * stay complete when more bytes follow; a greeting judged good must stay
 * good when more bytes follow.
 */
#include "lb-check.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const prefixes[] = { "* OK", "+OK", "220" };
	bool complete = false;

	for (size_t n = 0; n <= size; n++) {
		struct lb_readyz r;
		int res = lb_readyz_parse(data, n, false, 4096, &r);

		if (res == 1) {
			if (r.status < 100 || r.status > 599 || (r.draining && r.status != 503))
				abort();
			complete = true;
		} else if (complete && n <= 4096) {
			abort(); /* more bytes cannot undo a complete answer */
		}
		res = lb_readyz_parse(data, n, true, 4096, &r);
		if (res == 1 && (r.status < 100 || r.status > 599))
			abort();
	}
	for (size_t p = 0; p < 3; p++) {
		bool good = false;

		for (size_t n = 0; n <= size; n++) {
			int res = lb_greeting_check(prefixes[p], data, n, 512);

			if (res == 1)
				good = true;
			else if (good)
				abort();
			if (res < -1 || res > 1)
				abort();
		}
	}
	return 0;
}
