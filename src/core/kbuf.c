/* SPDX-License-Identifier: Apache-2.0 */
/* kbuf: capped byte buffer with read-only views, wiped on growth and free. */
#include "p11kms/kbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* First allocation; growth doubles (bounded by max). */
#define KBUF_INITIAL 256
/* Protobuf uvarint: 64 bits in 7-bit groups. */
#define UVARINT_MAX_BYTES 10

struct kbuf {
	uint8_t *d;	   /* storage (owned unless readonly) */
	const uint8_t *cd; /* storage for reading (== d, or the borrowed view) */
	size_t off;	   /* first readable byte */
	size_t len;	   /* end of data */
	size_t alloc;	   /* bytes allocated at d */
	size_t max;	   /* cap on len - off */
	int readonly;
};

/* Where a zero-length reserve points when nothing is allocated yet. */
static uint8_t kbuf_nothing[1];

struct kbuf *kbuf_new(size_t max)
{
	struct kbuf *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->max = max;
	return b;
}

struct kbuf *kbuf_from(const void *p, size_t len)
{
	struct kbuf *b;

	if (p == NULL && len != 0)
		return NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->cd = p;
	b->len = len;
	b->max = len;
	b->readonly = 1;
	return b;
}

void kbuf_free(struct kbuf *b)
{
	if (b == NULL)
		return;
	if (!b->readonly)
		kms_free_secret(b->d, b->alloc);
	kms_wipe(b, sizeof(*b));
	free(b);
}

void kbuf_reset(struct kbuf *b)
{
	if (b == NULL)
		return;
	if (!b->readonly)
		kms_wipe(b->d, b->alloc);
	b->off = 0;
	b->len = 0;
}

size_t kbuf_len(const struct kbuf *b)
{
	return b == NULL ? 0 : b->len - b->off;
}

size_t kbuf_max(const struct kbuf *b)
{
	return b == NULL ? 0 : b->max;
}

const uint8_t *kbuf_ptr(const struct kbuf *b)
{
	if (b == NULL || b->cd == NULL)
		return (const uint8_t *)"";
	return b->cd + b->off;
}

/*
 * Ensures room for need more bytes after len. Never realloc(): the old
 * storage may hold secrets, so allocate, copy the live bytes, wipe, free.
 */
static int kbuf_make_room(struct kbuf *b, size_t need)
{
	size_t used = b->len - b->off, want, newalloc;
	uint8_t *nd;

	if (need > b->max - used)
		return KMS_ERR_NO_SPACE;
	if (need <= b->alloc - b->len)
		return KMS_OK;
	want = used + need;
	if (b->off > 0 && want <= b->alloc) {
		/* Compact in place, then wipe the stale tail. */
		memmove(b->d, b->d + b->off, used);
		kms_wipe(b->d + used, b->alloc - used);
		b->off = 0;
		b->len = used;
		return KMS_OK;
	}
	newalloc = b->alloc ? b->alloc : KBUF_INITIAL;
	while (newalloc < want) {
		if (newalloc > SIZE_MAX / 2) {
			newalloc = want;
			break;
		}
		newalloc *= 2;
	}
	if (newalloc > b->max)
		newalloc = b->max; /* >= want, checked above */
	nd = calloc(1, newalloc);
	if (nd == NULL)
		return KMS_ERR_ALLOC;
	if (used > 0)
		memcpy(nd, b->d + b->off, used);
	kms_free_secret(b->d, b->alloc);
	b->d = nd;
	b->cd = nd;
	b->alloc = newalloc;
	b->off = 0;
	b->len = used;
	return KMS_OK;
}

int kbuf_reserve(struct kbuf *b, size_t len, uint8_t **dst)
{
	int r;

	if (dst != NULL)
		*dst = NULL;
	if (b == NULL || dst == NULL)
		return KMS_ERR_INTERNAL;
	if (b->readonly)
		return KMS_ERR_INTERNAL;
	if ((r = kbuf_make_room(b, len)) != KMS_OK)
		return r;
	/* A zero-length reserve on a never-allocated buffer has no storage. */
	*dst = b->d != NULL ? b->d + b->len : kbuf_nothing;
	b->len += len;
	return KMS_OK;
}

int kbuf_consume(struct kbuf *b, size_t len)
{
	if (b == NULL)
		return KMS_ERR_INTERNAL;
	if (len > b->len - b->off)
		return KMS_ERR_INCOMPLETE;
	b->off += len;
	if (b->off == b->len) {
		b->off = 0;
		b->len = 0;
	}
	return KMS_OK;
}

int kbuf_consume_end(struct kbuf *b, size_t len)
{
	if (b == NULL)
		return KMS_ERR_INTERNAL;
	if (len > b->len - b->off)
		return KMS_ERR_INCOMPLETE;
	b->len -= len;
	if (!b->readonly)
		kms_wipe(b->d + b->len, len);
	return KMS_OK;
}

int kbuf_put(struct kbuf *b, const void *p, size_t len)
{
	uint8_t *dst;
	int r;

	if (p == NULL && len != 0)
		return KMS_ERR_INTERNAL;
	if ((r = kbuf_reserve(b, len, &dst)) != KMS_OK)
		return r;
	if (len > 0)
		memcpy(dst, p, len);
	return KMS_OK;
}

int kbuf_put_u8(struct kbuf *b, uint8_t v)
{
	return kbuf_put(b, &v, 1);
}

int kbuf_put_u32le(struct kbuf *b, uint32_t v)
{
	uint8_t t[4];

	for (size_t i = 0; i < 4; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	return kbuf_put(b, t, sizeof(t));
}

int kbuf_put_u32be(struct kbuf *b, uint32_t v)
{
	uint8_t t[4];

	for (size_t i = 0; i < 4; i++)
		t[3 - i] = (uint8_t)(v >> (8 * i));
	return kbuf_put(b, t, sizeof(t));
}

int kbuf_put_u64le(struct kbuf *b, uint64_t v)
{
	uint8_t t[8];

	for (size_t i = 0; i < 8; i++)
		t[i] = (uint8_t)(v >> (8 * i));
	return kbuf_put(b, t, sizeof(t));
}

int kbuf_put_u64be(struct kbuf *b, uint64_t v)
{
	uint8_t t[8];

	for (size_t i = 0; i < 8; i++)
		t[7 - i] = (uint8_t)(v >> (8 * i));
	return kbuf_put(b, t, sizeof(t));
}

int kbuf_put_uvarint(struct kbuf *b, uint64_t v)
{
	uint8_t t[UVARINT_MAX_BYTES];
	size_t n = 0;

	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	return kbuf_put(b, t, n);
}

static size_t uvarint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

int kbuf_put_lenprefixed(struct kbuf *b, const void *p, size_t len)
{
	size_t hdr = uvarint_len((uint64_t)len);
	int r;

	if (b == NULL)
		return KMS_ERR_INTERNAL;
	if (b->readonly)
		return KMS_ERR_INTERNAL;
	/* Check the whole record fits first, so a failure appends nothing. */
	if (hdr > b->max - kbuf_len(b) || len > b->max - kbuf_len(b) - hdr)
		return KMS_ERR_NO_SPACE;
	if ((r = kbuf_make_room(b, hdr + len)) != KMS_OK)
		return r;
	if ((r = kbuf_put_uvarint(b, (uint64_t)len)) != KMS_OK)
		return r;
	return kbuf_put(b, p, len);
}

int kbuf_putb(struct kbuf *b, const struct kbuf *src)
{
	if (src == NULL)
		return KMS_ERR_INTERNAL;
	if (b == src)
		return KMS_ERR_INTERNAL;
	return kbuf_put(b, kbuf_ptr(src), kbuf_len(src));
}

int kbuf_get(struct kbuf *b, void *dst, size_t len)
{
	if (b == NULL || (dst == NULL && len != 0))
		return KMS_ERR_INTERNAL;
	if (len > kbuf_len(b))
		return KMS_ERR_INCOMPLETE;
	if (len > 0)
		memcpy(dst, kbuf_ptr(b), len);
	return kbuf_consume(b, len);
}

int kbuf_get_u8(struct kbuf *b, uint8_t *v)
{
	return kbuf_get(b, v, 1);
}

/* Reads n <= 8 bytes as an unsigned integer in either byte order. */
static int get_le(struct kbuf *b, size_t n, uint64_t *x)
{
	uint8_t t[8];
	int r;

	if ((r = kbuf_get(b, t, n)) != KMS_OK)
		return r;
	*x = 0;
	for (size_t i = 0; i < n; i++)
		*x |= (uint64_t)t[i] << (8 * i);
	return KMS_OK;
}

static int get_be(struct kbuf *b, size_t n, uint64_t *x)
{
	uint8_t t[8];
	int r;

	if ((r = kbuf_get(b, t, n)) != KMS_OK)
		return r;
	*x = 0;
	for (size_t i = 0; i < n; i++)
		*x = (*x << 8) | t[i];
	return KMS_OK;
}

int kbuf_get_u32le(struct kbuf *b, uint32_t *v)
{
	uint64_t x;
	int r = v == NULL ? KMS_ERR_INTERNAL : get_le(b, 4, &x);

	if (r == KMS_OK)
		*v = (uint32_t)x;
	return r;
}

int kbuf_get_u32be(struct kbuf *b, uint32_t *v)
{
	uint64_t x;
	int r = v == NULL ? KMS_ERR_INTERNAL : get_be(b, 4, &x);

	if (r == KMS_OK)
		*v = (uint32_t)x;
	return r;
}

int kbuf_get_u64le(struct kbuf *b, uint64_t *v)
{
	return v == NULL ? KMS_ERR_INTERNAL : get_le(b, 8, v);
}

int kbuf_get_u64be(struct kbuf *b, uint64_t *v)
{
	return v == NULL ? KMS_ERR_INTERNAL : get_be(b, 8, v);
}

int kbuf_peek_uvarint(const struct kbuf *b, uint64_t *v, size_t *nbytes)
{
	const uint8_t *p;
	size_t avail;
	uint64_t x = 0;

	if (v != NULL)
		*v = 0;
	if (nbytes != NULL)
		*nbytes = 0;
	if (b == NULL || v == NULL || nbytes == NULL)
		return KMS_ERR_INTERNAL;
	p = kbuf_ptr(b);
	avail = kbuf_len(b);
	for (size_t i = 0; i < UVARINT_MAX_BYTES; i++) {
		if (i >= avail)
			return KMS_ERR_INCOMPLETE;
		if (i == UVARINT_MAX_BYTES - 1 && p[i] > 1) {
			/* The 10th byte carries bit 63 only: more is > 2^64-1 or an 11th byte. */
			return KMS_ERR_FORMAT;
		}
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			*v = x;
			*nbytes = i + 1;
			return KMS_OK;
		}
	}
	return KMS_ERR_FORMAT;
}

int kbuf_get_uvarint(struct kbuf *b, uint64_t *v)
{
	uint64_t x;
	size_t n;
	int r;

	if (v == NULL)
		return KMS_ERR_INTERNAL;
	*v = 0;
	if ((r = kbuf_peek_uvarint(b, &x, &n)) != KMS_OK)
		return r;
	if ((r = kbuf_consume(b, n)) != KMS_OK)
		return r;
	*v = x;
	return KMS_OK;
}

int kbuf_get_bytes_direct(struct kbuf *b, const uint8_t **p, size_t len)
{
	if (p != NULL)
		*p = NULL;
	if (b == NULL || p == NULL)
		return KMS_ERR_INTERNAL;
	if (len > kbuf_len(b))
		return KMS_ERR_INCOMPLETE;
	*p = kbuf_ptr(b);
	/* Not kbuf_consume: emptying must not move the storage the caller borrows. */
	b->off += len;
	return KMS_OK;
}

int kbuf_get_lenprefixed_direct(struct kbuf *b, const uint8_t **p, size_t *len, size_t max)
{
	uint64_t l;
	size_t n;
	int r;

	if (p != NULL)
		*p = NULL;
	if (len != NULL)
		*len = 0;
	if (b == NULL || p == NULL || len == NULL)
		return KMS_ERR_INTERNAL;
	if ((r = kbuf_peek_uvarint(b, &l, &n)) != KMS_OK)
		return r;
	if (l > (uint64_t)max)
		return KMS_ERR_TOO_LARGE;
	if ((size_t)l > kbuf_len(b) - n)
		return KMS_ERR_INCOMPLETE;
	b->off += n;
	*p = kbuf_ptr(b);
	b->off += (size_t)l;
	*len = (size_t)l;
	return KMS_OK;
}

int kbuf_putf(struct kbuf *b, const char *fmt, ...)
{
	char tmp[256], *big;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return KMS_ERR_INTERNAL;
	if ((size_t)n < sizeof(tmp))
		return kbuf_put(b, tmp, (size_t)n);
	if ((big = malloc((size_t)n + 1)) == NULL) /* long text: paths, whole lines */
		return KMS_ERR_ALLOC;
	va_start(ap, fmt);
	int m = vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int r = m == n ? kbuf_put(b, big, (size_t)n) : KMS_ERR_INTERNAL;
	free(big);
	return r;
}
