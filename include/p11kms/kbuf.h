/* SPDX-License-Identifier: Apache-2.0 */
/* kbuf: the byte buffer for all wire and disk bytes (sshbuf's shape, STYLE.md §2.3). */
#ifndef P11KMS_KBUF_H
#define P11KMS_KBUF_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * A kbuf holds bytes [off, len) of its storage: reads consume from the front,
 * puts append at the end. Every buffer has a hard cap (max) on the bytes it
 * holds; a put past it fails with KMS_ERR_NO_SPACE. A view made by kbuf_from()
 * is read-only (puts fail with KMS_ERR_INTERNAL) and borrows its bytes.
 * Growth and kbuf_free() wipe the old storage, so a kbuf may hold secrets.
 * A failed get or put leaves the buffer unchanged. Not thread-safe.
 */
struct kbuf;

/* A new empty buffer that will hold at most max bytes. NULL on ENOMEM only. */
struct kbuf *kbuf_new(size_t max);
/* A read-only view of len bytes at p (borrowed: p must outlive the view). */
struct kbuf *kbuf_from(const void *p, size_t len);
/* Wipes and frees; accepts NULL. */
void kbuf_free(struct kbuf *b);
/* Wipes the contents and empties the buffer (keeps max). */
void kbuf_reset(struct kbuf *b);

/* Bytes available to read. */
size_t kbuf_len(const struct kbuf *b);
size_t kbuf_max(const struct kbuf *b);
/* Pointer to the readable bytes (borrowed: valid until the buffer next changes). */
const uint8_t *kbuf_ptr(const struct kbuf *b);

/* Makes len writable bytes at the end and returns them in *dst (counted as data). */
KMS_MUST_CHECK int kbuf_reserve(struct kbuf *b, size_t len, uint8_t **dst);
/* Drops len bytes from the front / from the end. KMS_ERR_INCOMPLETE if fewer. */
KMS_MUST_CHECK int kbuf_consume(struct kbuf *b, size_t len);
KMS_MUST_CHECK int kbuf_consume_end(struct kbuf *b, size_t len);

/* Appends. */
KMS_MUST_CHECK int kbuf_put(struct kbuf *b, const void *p, size_t len);
KMS_MUST_CHECK int kbuf_put_u8(struct kbuf *b, uint8_t v);
/* printf-style text, without its terminating NUL (any length). */
KMS_MUST_CHECK __attribute__((format(printf, 2, 3))) int kbuf_putf(struct kbuf *b,
									const char *fmt, ...);
KMS_MUST_CHECK int kbuf_put_u32le(struct kbuf *b, uint32_t v);
KMS_MUST_CHECK int kbuf_put_u32be(struct kbuf *b, uint32_t v);
KMS_MUST_CHECK int kbuf_put_u64le(struct kbuf *b, uint64_t v);
KMS_MUST_CHECK int kbuf_put_u64be(struct kbuf *b, uint64_t v);
/* Protobuf base-128 varint (1..10 bytes). */
KMS_MUST_CHECK int kbuf_put_uvarint(struct kbuf *b, uint64_t v);
/* uvarint(len) followed by the bytes. */
KMS_MUST_CHECK int kbuf_put_lenprefixed(struct kbuf *b, const void *p, size_t len);
/* Appends the readable bytes of src (src unchanged). */
KMS_MUST_CHECK int kbuf_putb(struct kbuf *b, const struct kbuf *src);

/* Reads and consumes. KMS_ERR_INCOMPLETE when bytes are missing. */
KMS_MUST_CHECK int kbuf_get(struct kbuf *b, void *dst, size_t len);
KMS_MUST_CHECK int kbuf_get_u8(struct kbuf *b, uint8_t *v);
KMS_MUST_CHECK int kbuf_get_u32le(struct kbuf *b, uint32_t *v);
KMS_MUST_CHECK int kbuf_get_u32be(struct kbuf *b, uint32_t *v);
KMS_MUST_CHECK int kbuf_get_u64le(struct kbuf *b, uint64_t *v);
KMS_MUST_CHECK int kbuf_get_u64be(struct kbuf *b, uint64_t *v);
/*
 * uvarint: KMS_ERR_INCOMPLETE if the buffer ends inside it, KMS_ERR_FORMAT if
 * longer than 10 bytes or over 2^64-1.
 */
KMS_MUST_CHECK int kbuf_get_uvarint(struct kbuf *b, uint64_t *v);
/* Like kbuf_get_uvarint but consumes nothing; *nbytes is the varint's length. */
KMS_MUST_CHECK int kbuf_peek_uvarint(const struct kbuf *b, uint64_t *v, size_t *nbytes);
/* Borrowed pointer to the next len bytes, then consumes them. */
KMS_MUST_CHECK int kbuf_get_bytes_direct(struct kbuf *b, const uint8_t **p, size_t len);
/*
 * uvarint length then that many bytes, borrowed. A length over max is
 * KMS_ERR_TOO_LARGE (checked before anything else happens).
 */
KMS_MUST_CHECK int kbuf_get_lenprefixed_direct(struct kbuf *b, const uint8_t **p, size_t *len, size_t max);

#endif
