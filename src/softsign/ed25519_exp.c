/* SPDX-License-Identifier: Apache-2.0 */
/* Constant-time Ed25519 signing from an expanded secret key (RFC 8032 §5.1.6). */
#include "ed25519_exp.h"

#include <string.h>

#include <openssl/evp.h>

/*
 * Why this exists: tmkms 0.15 accepts 64-byte expanded keys and 96-byte
 * YubiHSM exports, which hold the scalar and prefix but not the seed, and
 * OpenSSL can only sign from a seed. Signing is rare (one per consensus
 * step) and the code favours being obviously constant-time over speed:
 *  - field elements in radix 2^51 (five 64-bit limbs), products in 128 bits;
 *  - one complete addition formula (extended coordinates, a = -1), also used
 *    for doubling, so there is no special case to branch on;
 *  - scalar multiplication by the base point with a fixed 4-bit window: the
 *    table entry is picked by masking over all 16 entries, never by index;
 *  - scalars reduced mod L by a masked shift-and-subtract, bit by bit.
 * Exponents (inversion) and the base-point table are public.
 */

__extension__ typedef unsigned __int128 u128;
typedef uint64_t fe[5];

#define MASK51 ((uint64_t)0x7ffffffffffff)

struct ge {
	fe x, y, z, t;
};

static void fe_copy(fe h, const fe f)
{
	memcpy(h, f, sizeof(fe));
}

static void fe_small(fe h, uint64_t v)
{
	memset(h, 0, sizeof(fe));
	h[0] = v;
}

/* Weak reduction: limbs below 2^52 afterwards. */
static void fe_carry(fe h)
{
	uint64_t c;

	c = h[0] >> 51;
	h[0] &= MASK51;
	h[1] += c;
	c = h[1] >> 51;
	h[1] &= MASK51;
	h[2] += c;
	c = h[2] >> 51;
	h[2] &= MASK51;
	h[3] += c;
	c = h[3] >> 51;
	h[3] &= MASK51;
	h[4] += c;
	c = h[4] >> 51;
	h[4] &= MASK51;
	h[0] += c * 19;
	c = h[0] >> 51;
	h[0] &= MASK51;
	h[1] += c;
}

static void fe_add(fe h, const fe f, const fe g)
{
	for (int i = 0; i < 5; i++)
		h[i] = f[i] + g[i];
	fe_carry(h);
}

/* h = f - g, computed as f + 4p - g so that no limb goes negative. */
static void fe_sub(fe h, const fe f, const fe g)
{
	static const uint64_t four_p[5] = { 0x1fffffffffffb4, 0x1ffffffffffffc, 0x1ffffffffffffc,
					    0x1ffffffffffffc, 0x1ffffffffffffc };
	for (int i = 0; i < 5; i++)
		h[i] = f[i] + four_p[i] - g[i];
	fe_carry(h);
}

static void fe_mul(fe h, const fe f, const fe g)
{
	uint64_t g1 = g[1] * 19, g2 = g[2] * 19, g3 = g[3] * 19, g4 = g[4] * 19;
	u128 r0, r1, r2, r3, r4;

	r0 = (u128)f[0] * g[0] + (u128)f[1] * g4 + (u128)f[2] * g3 + (u128)f[3] * g2 +
	     (u128)f[4] * g1;
	r1 = (u128)f[0] * g[1] + (u128)f[1] * g[0] + (u128)f[2] * g4 + (u128)f[3] * g3 +
	     (u128)f[4] * g2;
	r2 = (u128)f[0] * g[2] + (u128)f[1] * g[1] + (u128)f[2] * g[0] + (u128)f[3] * g4 +
	     (u128)f[4] * g3;
	r3 = (u128)f[0] * g[3] + (u128)f[1] * g[2] + (u128)f[2] * g[1] + (u128)f[3] * g[0] +
	     (u128)f[4] * g4;
	r4 = (u128)f[0] * g[4] + (u128)f[1] * g[3] + (u128)f[2] * g[2] + (u128)f[3] * g[1] +
	     (u128)f[4] * g[0];
	r1 += r0 >> 51;
	r0 &= MASK51;
	r2 += r1 >> 51;
	r1 &= MASK51;
	r3 += r2 >> 51;
	r2 &= MASK51;
	r4 += r3 >> 51;
	r3 &= MASK51;
	r0 += (r4 >> 51) * 19;
	r4 &= MASK51;
	r1 += r0 >> 51;
	r0 &= MASK51;
	h[0] = (uint64_t)r0;
	h[1] = (uint64_t)r1;
	h[2] = (uint64_t)r2;
	h[3] = (uint64_t)r3;
	h[4] = (uint64_t)r4;
}

/* h = f^e for a public exponent e (32 bytes little-endian). */
static void fe_pow(fe h, const fe f, const uint8_t e[32])
{
	fe r;

	fe_small(r, 1);
	for (int i = 255; i >= 0; i--) {
		fe_mul(r, r, r);
		if ((e[i / 8] >> (i % 8)) & 1)
			fe_mul(r, r, f);
	}
	fe_copy(h, r);
}

static void fe_invert(fe h, const fe f)
{
	/* p - 2 = 2^255 - 21 */
	uint8_t e[32];

	memset(e, 0xff, sizeof(e));
	e[0] = 0xeb;
	e[31] = 0x7f;
	fe_pow(h, f, e);
}

static void fe_frombytes(fe h, const uint8_t s[32])
{
	uint64_t w[4];

	for (int i = 0; i < 4; i++) {
		w[i] = 0;
		for (int j = 7; j >= 0; j--)
			w[i] = (w[i] << 8) | s[8 * i + j];
	}
	h[0] = w[0] & MASK51;
	h[1] = ((w[0] >> 51) | (w[1] << 13)) & MASK51;
	h[2] = ((w[1] >> 38) | (w[2] << 26)) & MASK51;
	h[3] = ((w[2] >> 25) | (w[3] << 39)) & MASK51;
	h[4] = (w[3] >> 12) & MASK51;
}

/* Carries without wrapping, then folds bit 255 back in as 19. */
static void fe_carry_strict(fe h)
{
	for (int i = 0; i < 4; i++) {
		h[i + 1] += h[i] >> 51;
		h[i] &= MASK51;
	}
	h[0] += 19 * (h[4] >> 51);
	h[4] &= MASK51;
}

/* Fully reduced little-endian encoding. */
static void fe_tobytes(uint8_t s[32], const fe f)
{
	fe h;
	uint64_t q, w[4];

	fe_copy(h, f);
	fe_carry(h);
	/* Twice: the second pass can only carry into h4 if h0..h3 became small. */
	fe_carry_strict(h);
	fe_carry_strict(h);
	/* Now every limb < 2^51, so h < 2^255 < 2p. */
	/* q = 1 iff h >= p: h + 19 carries out of bit 255 exactly then. */
	q = (h[0] + 19) >> 51;
	q = (h[1] + q) >> 51;
	q = (h[2] + q) >> 51;
	q = (h[3] + q) >> 51;
	q = (h[4] + q) >> 51;
	h[0] += 19 * q;
	h[1] += h[0] >> 51;
	h[0] &= MASK51;
	h[2] += h[1] >> 51;
	h[1] &= MASK51;
	h[3] += h[2] >> 51;
	h[2] &= MASK51;
	h[4] += h[3] >> 51;
	h[3] &= MASK51;
	h[4] &= MASK51;
	w[0] = h[0] | (h[1] << 51);
	w[1] = (h[1] >> 13) | (h[2] << 38);
	w[2] = (h[2] >> 26) | (h[3] << 25);
	w[3] = (h[3] >> 39) | (h[4] << 12);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			s[8 * i + j] = (uint8_t)(w[i] >> (8 * j));
}

/* f = g if flag (0 or 1), without branching on flag. */
static void fe_cmov(fe f, const fe g, uint64_t flag)
{
	uint64_t m = 0 - flag;

	for (int i = 0; i < 5; i++)
		f[i] ^= m & (f[i] ^ g[i]);
}

static void ge_identity(struct ge *p)
{
	fe_small(p->x, 0);
	fe_small(p->y, 1);
	fe_small(p->z, 1);
	fe_small(p->t, 0);
}

/* 2d, d = -121665/121666: computed rather than typed in. */
static void fe_2d(fe d2)
{
	fe num, den;

	fe_small(num, 0);
	fe_small(den, 121665);
	fe_sub(num, num, den);
	fe_small(den, 121666);
	fe_invert(den, den);
	fe_mul(d2, num, den);
	fe_add(d2, d2, d2);
}

/* r = p + q: add-2008-hwcd-3, complete for a = -1 (also correct when p == q). */
static void ge_add(struct ge *r, const struct ge *p, const struct ge *q, const fe d2)
{
	fe a, b, c, d, e, f, g, h, t;

	fe_sub(a, p->y, p->x);
	fe_sub(t, q->y, q->x);
	fe_mul(a, a, t);
	fe_add(b, p->y, p->x);
	fe_add(t, q->y, q->x);
	fe_mul(b, b, t);
	fe_mul(c, p->t, q->t);
	fe_mul(c, c, d2);
	fe_mul(d, p->z, q->z);
	fe_add(d, d, d);
	fe_sub(e, b, a);
	fe_sub(f, d, c);
	fe_add(g, d, c);
	fe_add(h, b, a);
	fe_mul(r->x, e, f);
	fe_mul(r->y, g, h);
	fe_mul(r->t, e, h);
	fe_mul(r->z, f, g);
}

static void ge_cmov(struct ge *p, const struct ge *q, uint64_t flag)
{
	fe_cmov(p->x, q->x, flag);
	fe_cmov(p->y, q->y, flag);
	fe_cmov(p->z, q->z, flag);
	fe_cmov(p->t, q->t, flag);
}

static void ge_base(struct ge *b)
{
	/* RFC 8032 §5.1: B = (x, 4/5), x even; little-endian. */
	static const uint8_t bx[32] = { 0x1a, 0xd5, 0x25, 0x8f, 0x60, 0x2d, 0x56, 0xc9,
					0xb2, 0xa7, 0x25, 0x95, 0x60, 0xc7, 0x2c, 0x69,
					0x5c, 0xdc, 0xd6, 0xfd, 0x31, 0xe2, 0xa4, 0xc0,
					0xfe, 0x53, 0x6e, 0xcd, 0xd3, 0x36, 0x69, 0x21 };
	static const uint8_t by[32] = { 0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
					0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
					0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
					0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66 };

	fe_frombytes(b->x, bx);
	fe_frombytes(b->y, by);
	fe_small(b->z, 1);
	fe_mul(b->t, b->x, b->y);
}

/* 1 if a == b (both < 16), computed without a branch. */
static uint64_t ct_eq4(uint32_t a, uint32_t b)
{
	uint32_t x = a ^ b;

	return (uint64_t)((x - 1) >> 31);
}

/* r = s * B for a 256-bit little-endian scalar s (secret). */
static void ge_scalarmult_base(struct ge *r, const uint8_t s[32])
{
	struct ge table[16], sel;
	fe d2;

	fe_2d(d2);
	ge_identity(&table[0]);
	ge_base(&table[1]);
	for (int i = 2; i < 16; i++)
		ge_add(&table[i], &table[i - 1], &table[1], d2);

	ge_identity(r);
	for (int i = 63; i >= 0; i--) {
		uint32_t nib = (uint32_t)(s[i / 2] >> (4 * (i % 2))) & 0xf;

		for (int k = 0; k < 4; k++)
			ge_add(r, r, r, d2);
		ge_identity(&sel);
		for (uint32_t j = 0; j < 16; j++)
			ge_cmov(&sel, &table[j], ct_eq4(nib, j));
		ge_add(r, r, &sel, d2);
	}
	kms_wipe(&sel, sizeof(sel));
}

static void ge_encode(uint8_t out[32], const struct ge *p)
{
	fe zi, x, y;
	uint8_t xb[32];

	fe_invert(zi, p->z);
	fe_mul(x, p->x, zi);
	fe_mul(y, p->y, zi);
	fe_tobytes(out, y);
	fe_tobytes(xb, x);
	out[31] = (uint8_t)(out[31] | ((xb[0] & 1) << 7));
	kms_wipe(xb, sizeof(xb));
	kms_wipe(x, sizeof(x));
	kms_wipe(y, sizeof(y));
}

/* L = 2^252 + 27742317777372353535851937790883648493, as 32-bit limbs. */
static const uint32_t L32[8] = { 0x5cf5d3ed, 0x5812631a, 0xa2f79cd6, 0x14def9de,
				 0x00000000, 0x00000000, 0x00000000, 0x10000000 };

/* out = in mod L for n bytes little-endian, by masked binary long division. */
static void sc_reduce(uint8_t out[32], const uint8_t *in, size_t n)
{
	uint32_t rem[8] = { 0 }, t[8];

	for (size_t i = n * 8; i-- > 0;) {
		uint32_t bit = (uint32_t)(in[i / 8] >> (i % 8)) & 1;
		uint64_t borrow = 0;
		uint32_t keep;

		/* rem < L < 2^253, so rem * 2 + bit fits in 256 bits */
		for (int k = 7; k > 0; k--)
			rem[k] = (rem[k] << 1) | (rem[k - 1] >> 31);
		rem[0] = (rem[0] << 1) | bit;
		for (int k = 0; k < 8; k++) {
			uint64_t d = (uint64_t)rem[k] - L32[k] - borrow;
			t[k] = (uint32_t)d;
			borrow = (d >> 32) & 1;
		}
		/* borrow == 1: rem < L, keep rem; else take t */
		keep = 0 - (uint32_t)borrow;
		for (int k = 0; k < 8; k++)
			rem[k] = (rem[k] & keep) | (t[k] & ~keep);
	}
	for (int k = 0; k < 8; k++)
		for (int j = 0; j < 4; j++)
			out[4 * k + j] = (uint8_t)(rem[k] >> (8 * j));
	kms_wipe(rem, sizeof(rem));
	kms_wipe(t, sizeof(t));
}

/* out = (a * b + c) mod L; all 32 bytes little-endian. */
static void sc_muladd(uint8_t out[32], const uint8_t a[32], const uint8_t b[32],
		      const uint8_t c[32])
{
	uint32_t aw[8], bw[8];
	uint64_t acc[16] = { 0 };
	uint8_t wide[64];
	uint64_t carry = 0;

	for (int k = 0; k < 8; k++) {
		aw[k] = (uint32_t)a[4 * k] | (uint32_t)a[4 * k + 1] << 8 |
			(uint32_t)a[4 * k + 2] << 16 | (uint32_t)a[4 * k + 3] << 24;
		bw[k] = (uint32_t)b[4 * k] | (uint32_t)b[4 * k + 1] << 8 |
			(uint32_t)b[4 * k + 2] << 16 | (uint32_t)b[4 * k + 3] << 24;
	}
	for (int k = 0; k < 8; k++)
		acc[k] = (uint32_t)c[4 * k] | (uint32_t)c[4 * k + 1] << 8 |
			 (uint32_t)c[4 * k + 2] << 16 | (uint32_t)c[4 * k + 3] << 24;
	/* column sums of 32x32-bit products, carried after each row */
	for (int i = 0; i < 8; i++) {
		carry = 0;
		for (int j = 0; j < 8; j++) {
			uint64_t v = acc[i + j] + (uint64_t)aw[i] * bw[j] + carry;
			acc[i + j] = v & 0xffffffff;
			carry = v >> 32;
		}
		acc[i + 8] += carry;
	}
	for (int k = 0; k < 16; k++)
		for (int j = 0; j < 4; j++)
			wide[4 * k + j] = (uint8_t)(acc[k] >> (8 * j));
	sc_reduce(out, wide, sizeof(wide));
	kms_wipe(aw, sizeof(aw));
	kms_wipe(bw, sizeof(bw));
	kms_wipe(acc, sizeof(acc));
	kms_wipe(wide, sizeof(wide));
}

static void clamp(uint8_t s[32], const uint8_t exp[64])
{
	memcpy(s, exp, 32);
	s[0] &= 248;
	s[31] &= 127;
	s[31] |= 64;
}

int soft_ed25519_exp_pub(const uint8_t exp[static 64], uint8_t pub[static 32])
{
	struct ge a;
	uint8_t s[32];

	clamp(s, exp);
	ge_scalarmult_base(&a, s);
	ge_encode(pub, &a);
	kms_wipe(s, sizeof(s));
	kms_wipe(&a, sizeof(a));
	return KMS_OK;
}

/* out = SHA-512(p1 || p2 || p3), any part may be empty. */
static int sha512_3(uint8_t out[64], const uint8_t *p1, size_t n1, const uint8_t *p2, size_t n2,
		    const uint8_t *p3, size_t n3)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int olen = 0;
	int r = KMS_ERR_CRYPTO;

	if (!ctx)
		return KMS_ERR_CRYPTO;
	if (EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) != 1 || EVP_DigestUpdate(ctx, p1, n1) != 1 ||
	    EVP_DigestUpdate(ctx, p2, n2) != 1 || (n3 && EVP_DigestUpdate(ctx, p3, n3) != 1) ||
	    EVP_DigestFinal_ex(ctx, out, &olen) != 1 || olen != 64)
		goto out;
	r = KMS_OK;
out:
	EVP_MD_CTX_free(ctx);
	return r;
}

int soft_ed25519_exp_sign(const uint8_t exp[static 64], const uint8_t pub[static 32],
			  const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	uint8_t s[32], h[64], rs[32], k[32];
	struct ge rp;
	int r = KMS_ERR_INTERNAL;

	clamp(s, exp);
	/* r = SHA-512(prefix || M) mod L; R = rB */
	r = sha512_3(h, exp + 32, 32, msg, len, NULL, 0);
	if (r != KMS_OK)
		goto out;
	sc_reduce(rs, h, sizeof(h));
	ge_scalarmult_base(&rp, rs);
	ge_encode(sig, &rp);
	/* k = SHA-512(R || A || M) mod L */
	r = sha512_3(h, sig, 32, pub, 32, msg, len);
	if (r != KMS_OK)
		goto out;
	sc_reduce(k, h, sizeof(h));
	/* S = (r + k * s) mod L */
	sc_muladd(sig + 32, k, s, rs);
	r = KMS_OK;
out:
	if (r != KMS_OK)
		kms_wipe(sig, 64);
	kms_wipe(s, sizeof(s));
	kms_wipe(h, sizeof(h));
	kms_wipe(rs, sizeof(rs));
	kms_wipe(k, sizeof(k));
	kms_wipe(&rp, sizeof(rp));
	return r;
}
