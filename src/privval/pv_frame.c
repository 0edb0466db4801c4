/* SPDX-License-Identifier: Apache-2.0 */
/* privval framing (spec §1.2-1.3): uvarint length prefix, size cap before allocation. */
#include "p11kms/pv.h"

#include <stdlib.h>
#include <string.h>

#include "pv_int.h"

#define UVARINT_MAX PV_FRAME_PREFIX_MAX

int pv_uvarint_decode(const uint8_t *p, size_t n, uint64_t *v, size_t *used)
{
	uint64_t x = 0;

	for (size_t i = 0; i < UVARINT_MAX; i++) {
		if (i >= n)
			return KMS_ERR_INCOMPLETE;
		/* the 10th byte may only carry bit 63 */
		if (i == UVARINT_MAX - 1 && p[i] > 1)
			return KMS_ERR_FORMAT;
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			*used = i + 1;
			return KMS_OK;
		}
	}
	return KMS_ERR_FORMAT;
}

int pv_frame_parse(const uint8_t *p, size_t n, size_t max, size_t *hdr_len, size_t *body_len)
{
	uint64_t len;
	size_t used;
	int rc;

	if (!hdr_len || !body_len || (!p && n))
		return KMS_ERR_INTERNAL;
	*hdr_len = 0;
	*body_len = 0;
	if ((rc = pv_uvarint_decode(p, n, &len, &used)) != KMS_OK)
		return rc;
	if (len > max)
		return KMS_ERR_TOO_LARGE;
	if ((size_t)len > n - used)
		return KMS_ERR_INCOMPLETE;
	*hdr_len = used;
	*body_len = (size_t)len;
	return KMS_OK;
}

static int read_full(pv_read_fn read, void *ctx, uint8_t *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		size_t got = 0;
		int rc = read(ctx, p, n, &got, deadline);

		if (rc != KMS_OK)
			return rc;
		if (got == 0 || got > n)
			return KMS_ERR_INTERNAL; /* the source broke its contract */
		p += got;
		n -= got;
	}
	return KMS_OK;
}

int pv_read_msg(pv_read_fn read, void *ctx, size_t max, int64_t deadline, struct kbuf **msg)
{
	uint8_t hdr[PV_FRAME_PREFIX_MAX];
	size_t have = 0, used = 0;
	uint64_t len = 0;
	struct kbuf *b = NULL;
	uint8_t *dst;
	int rc = KMS_ERR_INTERNAL;

	if (!msg)
		return KMS_ERR_INTERNAL;
	*msg = NULL;
	if (!read)
		return KMS_ERR_INTERNAL;
	/* the prefix byte by byte: never read past this message into the next */
	for (;;) {
		if ((rc = read_full(read, ctx, &hdr[have], 1, deadline)) != KMS_OK)
			return rc;
		have++;
		rc = pv_uvarint_decode(hdr, have, &len, &used);
		if (rc == KMS_OK)
			break;
		if (rc != KMS_ERR_INCOMPLETE)
			return rc;
	}
	/* spec §1.3: check the announced length before allocating anything */
	if (len > max)
		return KMS_ERR_TOO_LARGE;
	if (!(b = kbuf_new((size_t)len)))
		return KMS_ERR_ALLOC;
	if ((rc = kbuf_reserve(b, (size_t)len, &dst)) != KMS_OK ||
	    (rc = read_full(read, ctx, dst, (size_t)len, deadline)) != KMS_OK)
		goto out;
	*msg = b;
	b = NULL;
	rc = KMS_OK;
out:
	kbuf_free(b);
	return rc;
}

/* A reply this size or smaller is framed on the stack: no allocation per reply. */
#define FRAME_STACK 2048

int pv_write_msg(pv_write_fn write, void *ctx, const struct kbuf *msg, int64_t deadline)
{
	uint8_t stack[FRAME_STACK];
	size_t n, total, hdr = 0;
	uint8_t *out;
	uint64_t v;
	int rc;

	if (!write || !msg)
		return KMS_ERR_INTERNAL;
	n = kbuf_len(msg);
	if (n > SIZE_MAX - PV_FRAME_PREFIX_MAX)
		return KMS_ERR_TOO_LARGE;
	total = n + PV_FRAME_PREFIX_MAX;
	out = total <= sizeof(stack) ? stack : malloc(total);
	if (!out)
		return KMS_ERR_ALLOC;
	/* prefix and body in ONE write, as Go does: a small message fits one SC frame */
	for (v = n; v >= 0x80; v >>= 7)
		out[hdr++] = (uint8_t)(v | 0x80);
	out[hdr++] = (uint8_t)v;
	if (n > 0)
		memcpy(out + hdr, kbuf_ptr(msg), n);
	rc = write(ctx, out, hdr + n, deadline);
	if (out != stack)
		free(out);
	return rc;
}
