// SPDX-License-Identifier: Apache-2.0
// Keccak-f[1600] (FIPS 202 §3) and the STROBE-128 subset used by Merlin (spec §2.4).
#include "p11kms/keccak.h"

#include <string.h>

#include <openssl/crypto.h>

static const uint64_t keccak_rc[24] = {
	0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL, 0x8000000080008000ULL,
	0x000000000000808BULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
	0x000000000000008AULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
	0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
	0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800AULL, 0x800000008000000AULL,
	0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho rotation offsets, indexed by x + 5y */
static const unsigned keccak_rho[25] = {
	0,  1,	62, 28, 27, 36, 44, 6,	55, 20, 3,  10, 43,
	25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14,
};

static uint64_t rotl64(uint64_t v, unsigned n)
{
	return (v << (n & 63)) | (v >> ((64 - n) & 63));
}

void keccak_f1600(uint64_t a[static 25])
{
	uint64_t b[25], c[5], d[5];

	for (int round = 0; round < 24; round++) {
		/* theta */
		for (int x = 0; x < 5; x++)
			c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
		for (int x = 0; x < 5; x++)
			d[x] = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
		for (int i = 0; i < 25; i++)
			a[i] ^= d[i % 5];
		/* rho and pi: B[y, 2x + 3y] = rot(A[x, y], r[x, y]) */
		for (int x = 0; x < 5; x++)
			for (int y = 0; y < 5; y++)
				b[y + 5 * ((2 * x + 3 * y) % 5)] =
					rotl64(a[x + 5 * y], keccak_rho[x + 5 * y]);
		/* chi */
		for (int y = 0; y < 25; y += 5)
			for (int x = 0; x < 5; x++)
				a[y + x] = b[y + x] ^ (~b[y + (x + 1) % 5] & b[y + (x + 2) % 5]);
		/* iota */
		a[0] ^= keccak_rc[round];
	}
	OPENSSL_cleanse(b, sizeof(b));
	OPENSSL_cleanse(c, sizeof(c));
	OPENSSL_cleanse(d, sizeof(d));
}

void keccak_f1600_bytes(uint8_t st[static 200])
{
	uint64_t lanes[25];

	for (int i = 0; i < 25; i++) {
		uint64_t v = 0;

		for (int j = 7; j >= 0; j--)
			v = (v << 8) | st[8 * i + j];
		lanes[i] = v;
	}
	keccak_f1600(lanes);
	for (int i = 0; i < 25; i++)
		for (int j = 0; j < 8; j++)
			st[8 * i + j] = (uint8_t)(lanes[i] >> (8 * j));
	OPENSSL_cleanse(lanes, sizeof(lanes));
}

/* STROBE flags (spec §2.4); T is never used by Merlin. */
#define FLAG_I 0x01
#define FLAG_A 0x02
#define FLAG_C 0x04
#define FLAG_M 0x10
#define FLAG_K 0x20

static void run_f(struct strobe128 *s)
{
	s->st[s->pos] ^= s->pos_begin;
	s->st[s->pos + 1] ^= 0x04;
	s->st[STROBE128_R + 1] ^= 0x80;
	keccak_f1600_bytes(s->st);
	s->pos = 0;
	s->pos_begin = 0;
}

static void absorb(struct strobe128 *s, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		s->st[s->pos++] ^= p[i];
		if (s->pos == STROBE128_R)
			run_f(s);
	}
}

static void squeeze(struct strobe128 *s, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		out[i] = s->st[s->pos];
		s->st[s->pos] = 0;
		s->pos++;
		if (s->pos == STROBE128_R)
			run_f(s);
	}
}

static void begin_op(struct strobe128 *s, uint8_t flags, int more)
{
	uint8_t hdr[2];

	if (more)
		return; /* continuing: callers pass the flags of the running operation */
	hdr[0] = s->pos_begin;
	hdr[1] = flags;
	s->pos_begin = (uint8_t)(s->pos + 1);
	s->cur_flags = flags;
	absorb(s, hdr, sizeof(hdr));
	if ((flags & (FLAG_C | FLAG_K)) != 0 && s->pos != 0)
		run_f(s);
}

void strobe128_init(struct strobe128 *s, const uint8_t *label, size_t len)
{
	static const uint8_t head[6] = { 0x01, STROBE128_R + 2, 0x01, 0x00, 0x01, 0x60 };

	memset(s, 0, sizeof(*s));
	memcpy(s->st, head, sizeof(head));
	memcpy(s->st + 6, "STROBEv1.0.2", 12);
	keccak_f1600_bytes(s->st);
	strobe128_meta_ad(s, label, len, 0);
}

void strobe128_meta_ad(struct strobe128 *s, const uint8_t *p, size_t len, int more)
{
	begin_op(s, FLAG_M | FLAG_A, more);
	absorb(s, p, len);
}

void strobe128_ad(struct strobe128 *s, const uint8_t *p, size_t len, int more)
{
	begin_op(s, FLAG_A, more);
	absorb(s, p, len);
}

void strobe128_prf(struct strobe128 *s, uint8_t *out, size_t len, int more)
{
	begin_op(s, FLAG_I | FLAG_A | FLAG_C, more);
	squeeze(s, out, len);
}

void strobe128_wipe(struct strobe128 *s)
{
	OPENSSL_cleanse(s, sizeof(*s));
}
