/* The blob store's front (see postern/store-blob.h): argument checks, the
 * SHA-256 of a body given without one, and dispatch to the backend's ops.
 * The backends are blob-pg.c and blob-dir.c.
 */
#include "postern/store-blob.h"

#include <errno.h>
#include <stdlib.h>

int store_blob_put(struct store_blob *b, const uint8_t *sha256, const void *body,
		   size_t len, store_blob_put_cb *cb, void *ctx)
{
	uint8_t sum[PN_SHA256_LEN];
	const char *error;

	if (b == NULL || cb == NULL || (body == NULL && len > 0) || len > b->max_size) {
		errno = EINVAL;
		return -1;
	}
	if (sha256 == NULL) {
		if (pn_sha256(body != NULL ? body : "", len, sum, &error) < 0) {
			errno = ENOMEM;
			return -1;
		}
		sha256 = sum;
	}
	return b->ops->put(b, sha256, body != NULL ? body : "", len, cb, ctx);
}

int store_blob_get(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		   store_blob_get_cb *cb, void *ctx)
{
	if (b == NULL || sha256 == NULL || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	return b->ops->get(b, sha256, cb, ctx);
}

int store_blob_release(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		       store_blob_release_cb *cb, void *ctx)
{
	if (b == NULL || sha256 == NULL || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	return b->ops->release(b, sha256, cb, ctx);
}

int store_blob_exists(struct store_blob *b, const uint8_t sha256[PN_SHA256_LEN],
		      store_blob_exists_cb *cb, void *ctx)
{
	if (b == NULL || sha256 == NULL || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	return b->ops->exists(b, sha256, cb, ctx);
}

void store_blob_free(struct store_blob **b)
{
	if (*b != NULL) {
		(*b)->ops->destroy(*b);
		*b = NULL;
	}
}

const char *store_blob_name(const struct store_blob *b)
{
	return b->ops->name;
}

bool store_blob_external(const struct store_blob *b)
{
	return b->ops->external;
}
