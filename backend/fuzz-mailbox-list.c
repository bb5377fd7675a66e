/* libFuzzer target for the peer-controlled text of the mailbox operations:
 * mailbox name normalisation and LIST reference/pattern matching
 * (mail_mbox_name_normalize, mail_mbox_list_canonical,
 * mail_mbox_list_match). Input: reference NUL pattern NUL name. */
#include "postern/mail-mailbox.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *ref, *pat, *name, *end;
	char canon[2 * MAIL_MBOX_PATTERN_MAX + 2], norm[MAIL_MBOX_NAME_MAX + 1];

	if (size > 3 * MAIL_MBOX_NAME_MAX)
		return 0;
	buf = malloc(size + 3);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = buf[size + 2] = '\0';
	end = buf + size;
	ref = buf;
	pat = ref + strlen(ref) + 1;
	name = pat <= end ? pat + strlen(pat) + 1 : end;
	if (pat > end)
		pat = end;
	if (name > end)
		name = end;
	if (strlen(ref) <= MAIL_MBOX_PATTERN_MAX && strlen(pat) <= MAIL_MBOX_PATTERN_MAX
	    && mail_mbox_list_canonical(ref, pat, canon, sizeof(canon)) == 0
	    && mail_mbox_name_normalize(name, norm, sizeof(norm)) == 0) {
		bool m = mail_mbox_list_match(canon, norm);

		/* '*' alone matches every name; a name matches itself */
		if (!mail_mbox_list_match("*", norm) || !mail_mbox_list_match(norm, norm))
			abort();
		(void)m;
	}
	free(buf);
	return 0;
}
