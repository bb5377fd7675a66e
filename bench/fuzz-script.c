/* libFuzzer target: the script parser on arbitrary text, and the reply
 * reader in every mode on arbitrary server bytes (fed in two pieces).
 */
#include <stddef.h>
#include <stdint.h>

#include "script.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *err;
	struct bn_script *s = bn_script_parse((const char *)data, size, "fuzz", &err);
	bn_script_free(&s);

	static const enum bn_expect_mode modes[] = { BN_EXPECT_LINE, BN_EXPECT_DOT, BN_EXPECT_SMTP,
						     BN_EXPECT_TAGGED, BN_EXPECT_CONT };
	struct bn_reader r;
	bn_reader_init(&r);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		bn_reader_start(&r, modes[m], "OK", "a1", 2);
		size_t half = size / 2, used = 0, pos = 0;
		int rc = bn_reader_feed(&r, data, half, &used, &err);
		pos = used;
		while (rc == 0 && pos < size) {
			rc = bn_reader_feed(&r, data + pos, size - pos, &used, &err);
			pos += used;
			if (used == 0)
				break;
		}
		if (rc == 1 && pos < size) {
			/* what is left is the next reply */
			bn_reader_start(&r, modes[m], "", "a1", 1);
			bn_reader_feed(&r, data + pos, size - pos, &used, &err);
		}
	}
	bn_reader_free(&r);
	return 0;
}
