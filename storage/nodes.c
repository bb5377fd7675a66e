/* Node registry key names and the reading of a node hash's fields (see
 * postern/store-nodes.h and docs/redis-keys.md); shared by the
 * asynchronous operations (redis-ops.c) and posternctl's reader (who.c). */
#include "postern/store-nodes.h"

#include <stdio.h>
#include <string.h>

bool store_node_name_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > STORE_NODE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int store_node_key(const char *name, char *buf, size_t size)
{
	int n;

	if (!store_node_name_ok(name))
		return -1;
	n = snprintf(buf, size, STORE_NODES_KEY_PREFIX "%s", name);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

static void copy_value(char *dst, size_t size, const char *v, size_t vlen)
{
	size_t n = vlen < size ? vlen : size - 1;

	memcpy(dst, v, n);
	dst[n] = '\0';
}

/* Decimal, at most 18 digits and an optional '-'; 0 for anything else. */
static int64_t decimal(const char *v, size_t vlen)
{
	int64_t x = 0;
	bool neg = vlen > 0 && v[0] == '-';
	size_t i = neg ? 1 : 0;

	if (vlen == i || vlen - i > 18)
		return 0;
	for (; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return 0;
		x = x * 10 + (v[i] - '0');
	}
	return neg ? -x : x;
}

static bool field_is(const char *f, size_t flen, const char *name)
{
	return flen == strlen(name) && memcmp(f, name, flen) == 0;
}

void store_rnode_set_field(struct store_rnode *nd, const char *f, size_t flen,
			   const char *v, size_t vlen)
{
	if (field_is(f, flen, "addr"))
		copy_value(nd->addr, sizeof(nd->addr), v, vlen);
	else if (field_is(f, flen, "version"))
		copy_value(nd->version, sizeof(nd->version), v, vlen);
	else if (field_is(f, flen, "role"))
		copy_value(nd->role, sizeof(nd->role), v, vlen);
	else if (field_is(f, flen, "sessions"))
		nd->sessions = decimal(v, vlen);
	else if (field_is(f, flen, "ready"))
		nd->ready = vlen == 1 && v[0] == '1';
	else if (field_is(f, flen, "seen"))
		nd->seen_ms = decimal(v, vlen);
}
