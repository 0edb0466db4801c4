/* SPDX-License-Identifier: Apache-2.0 */
/* Guard test helpers: an independent canonical sign-bytes encoder and a toy signer. */
#ifndef P11KMS_TEST_GUARD_UTIL_H
#define P11KMS_TEST_GUARD_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "p11kms/guard.h"

/* A vote or proposal to encode (spec §4). block 0 is nil; block k > 0 is a distinct block. */
struct tg_msg {
	enum guard_step step;
	int64_t h;
	int64_t r;
	int64_t pol; /* proposals only */
	int block;
	int64_t ts_s;
	int32_t ts_n;
	const char *chain;
};

struct tg_w {
	uint8_t *p;
	size_t n, cap;
	int err;
};

static inline void tg_byte(struct tg_w *w, uint8_t b)
{
	if (w->n >= w->cap) {
		w->err = 1;
		return;
	}
	w->p[w->n++] = b;
}

static inline void tg_uvarint(struct tg_w *w, uint64_t v)
{
	while (v >= 0x80) {
		tg_byte(w, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	tg_byte(w, (uint8_t)v);
}

static inline void tg_bytes(struct tg_w *w, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tg_byte(w, ((const uint8_t *)p)[i]);
}

static inline void tg_fixed64(struct tg_w *w, unsigned field, int64_t v)
{
	if (v == 0)
		return;
	tg_uvarint(w, (uint64_t)field << 3 | 1);
	for (int i = 0; i < 8; i++)
		tg_byte(w, (uint8_t)((uint64_t)v >> (8 * i)));
}

static inline void tg_lenfield(struct tg_w *w, unsigned field, const uint8_t *p, size_t n)
{
	tg_uvarint(w, (uint64_t)field << 3 | 2);
	tg_uvarint(w, n);
	tg_bytes(w, p, n);
}

/* Encodes uvarint(len) ‖ canonical message into out; returns the length (0 if cap too small). */
static inline size_t tg_sign_bytes(const struct tg_msg *m, uint8_t *out, size_t cap)
{
	uint8_t body[512], blk[128], psh[64], ts[32], hash[32];
	struct tg_w b = { body, 0, sizeof(body), 0 }, k = { blk, 0, sizeof(blk), 0 };
	struct tg_w p = { psh, 0, sizeof(psh), 0 }, t = { ts, 0, sizeof(ts), 0 };
	struct tg_w o = { out, 0, cap, 0 };
	int prop = m->step == GUARD_STEP_PROPOSE;
	tg_uvarint(&b, 1 << 3);
	tg_uvarint(&b, prop ? 32 : (m->step == GUARD_STEP_PREVOTE ? 1 : 2));
	tg_fixed64(&b, 2, m->h);
	tg_fixed64(&b, 3, m->r);
	if (prop && m->pol != 0) {
		tg_uvarint(&b, 4 << 3);
		tg_uvarint(&b, (uint64_t)m->pol);
	}
	if (m->block != 0) {
		memset(hash, (uint8_t)m->block, sizeof(hash));
		hash[0] = (uint8_t)(m->block >> 8);
		tg_lenfield(&k, 1, hash, 32);
		tg_uvarint(&p, 1 << 3);
		tg_uvarint(&p, 1);
		hash[1] = 0x55;
		tg_lenfield(&p, 2, hash, 32);
		tg_lenfield(&k, 2, psh, p.n);
		tg_lenfield(&b, prop ? 5 : 4, blk, k.n);
	}
	if (m->ts_s != 0) {
		tg_uvarint(&t, 1 << 3);
		tg_uvarint(&t, (uint64_t)m->ts_s);
	}
	if (m->ts_n != 0) {
		tg_uvarint(&t, 2 << 3);
		tg_uvarint(&t, (uint64_t)m->ts_n);
	}
	tg_lenfield(&b, prop ? 6 : 5, ts, t.n);
	if (m->chain != NULL && m->chain[0] != '\0')
		tg_lenfield(&b, prop ? 7 : 6, (const uint8_t *)m->chain, strlen(m->chain));
	tg_uvarint(&o, b.n);
	tg_bytes(&o, body, b.n);
	return (b.err || k.err || p.err || t.err || o.err) ? 0 : o.n;
}

/* A deterministic fake signer: sig = 64 bytes derived from the message (FNV-1a stream). */
static inline int tg_fake_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	uint64_t h = 1469598103934665603ull;
	(void)ctx;
	for (size_t i = 0; i < len; i++)
		h = (h ^ msg[i]) * 1099511628211ull;
	for (int i = 0; i < 64; i++) {
		h = (h ^ (uint64_t)i) * 1099511628211ull;
		sig[i] = (uint8_t)(h >> 56);
	}
	return 0;
}

/*
 * guard_open for tests: their state lives under $TMPDIR, which is a tmpfs on
 * some machines and not on others, so they accept any filesystem (as
 * allow_volatile_state does). The filesystem check has its own tests
 * (test_guard_start), which inject the type through the dfile ops table.
 */
static inline int tg_open(const char *path, const char *chain, struct guard **g)
{
	static const struct guard_opts any_fs = { .allow_volatile_state = 1 };
	return guard_open_opts(path, chain, &any_fs, g);
}

/* splitmix64: the seeded PRNG of the property, concurrency and crash tests. */
static inline uint64_t tg_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* guard_sign of m (its canonical sign bytes) with fn; KMS_ERR_INTERNAL if m does not encode. */
static inline int tg_request_sign(struct guard *g, const struct tg_msg *m, guard_sign_fn fn, void *ctx,
				  struct guard_result *res)
{
	uint8_t sb[1024];
	size_t n = tg_sign_bytes(m, sb, sizeof(sb));
	struct guard_request req = { { m->h, (int32_t)m->r, m->step }, sb, n };
	return n == 0 ? KMS_ERR_INTERNAL : guard_sign(g, &req, fn, ctx, res);
}

/* A dfile_ops.fdatasync that fails with EIO while *tg_eio_flag() is set: a failing disk. */
static inline int *tg_eio_flag(void)
{
	static int on;
	return &on;
}

static inline int tg_eio_fdatasync(int fd)
{
	if (*tg_eio_flag()) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

#endif
