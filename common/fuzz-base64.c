/* libFuzzer target for postern/base64.h. Properties checked on every input:
 * - decoding arbitrary bytes never overruns and, when it succeeds in strict
 *   mode, re-encoding gives back exactly the input (canonical encoding);
 * - non-strict success implies the output re-encodes to an input of the
 *   same length that strict decoding accepts;
 * - encoding the raw input and decoding it strictly gives the input back.
 */
#include "postern/base64.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t dec_size = PN_BASE64_DECODED_MAX(size);
	uint8_t *dec = malloc(dec_size + 1);
	char *enc = malloc(PN_BASE64_ENCODED_LEN(size) + 1);
	uint8_t *back = malloc(size + 1);
	const char *err = NULL;
	size_t n = 0, m = 0;

	if (dec == NULL || enc == NULL || back == NULL)
		abort();

	/* Decode the input as base64 text, strictly. */
	if (pn_base64_decode((const char *)data, size, dec, dec_size, PN_BASE64_STRICT,
			     &n, &err) == 0) {
		ssize_t e = pn_base64_encode(dec, n, enc, PN_BASE64_ENCODED_LEN(n) + 1);
		if (e < 0 || (size_t)e != size || memcmp(enc, data, size) != 0)
			abort();
	}
	/* Non-strict: the result is the decoding of a canonical string. */
	if (pn_base64_decode((const char *)data, size, dec, dec_size, 0, &n, &err) == 0) {
		ssize_t e = pn_base64_encode(dec, n, enc, PN_BASE64_ENCODED_LEN(n) + 1);
		if (e < 0 || (size_t)e != size)
			abort();
		if (pn_base64_decode(enc, (size_t)e, back, size + 1, PN_BASE64_STRICT,
				     &m, &err) != 0 || m != n || memcmp(back, dec, n) != 0)
			abort();
	}
	/* Encode the raw bytes and decode them back. */
	ssize_t e = pn_base64_encode(data, size, enc, PN_BASE64_ENCODED_LEN(size) + 1);
	if (e < 0 || (size_t)e != PN_BASE64_ENCODED_LEN(size))
		abort();
	if (pn_base64_decode(enc, (size_t)e, back, size, PN_BASE64_STRICT, &m, &err) != 0 ||
	    m != size || memcmp(back, data, size) != 0)
		abort();

	free(dec);
	free(enc);
	free(back);
	return 0;
}
