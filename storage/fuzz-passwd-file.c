/* libFuzzer target for the Dovecot passwd-file line parser. */
#include "postern/store-passwd-file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_passwd_entry e;
	const char *error;
	int rc = store_passwd_line_parse((const char *)data, size, &e, &error);

	if (rc == 1 && (e.user[0] == '\0' || e.password[0] == '\0' ||
			strlen(e.user) > STORE_ADDRESS_MAX ||
			strlen(e.password) > STORE_PASSWD_FIELD_MAX))
		abort();
	if (rc == 1 && e.has_quota_bytes && e.quota_bytes == 0)
		abort();
	return 0;
}
