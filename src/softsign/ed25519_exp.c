/* SPDX-License-Identifier: Apache-2.0 */
/* Ed25519 signing from an expanded secret key (RFC 8032 §5.1.6) on libsodium's core operations. */
#include "ed25519_exp.h"

#include <string.h>

#include <sodium.h>

/*
 * Why this exists: tmkms 0.15 accepts 64-byte expanded keys and 96-byte
 * YubiHSM exports, which hold the scalar and the prefix but not the seed, and
 * both OpenSSL and libsodium's crypto_sign only sign from a seed. RFC 8032's
 * steps are rebuilt here from libsodium's constant-time Ed25519 primitives:
 * base-point multiplication without clamping (the scalar is clamped below, as
 * §5.1.5 does), scalar reduction, multiplication and addition modulo L, and
 * SHA-512. No curve or field arithmetic of our own is left.
 */

#define SC_BYTES crypto_core_ed25519_SCALARBYTES		/* 32 */
#define SC_WIDE_BYTES crypto_core_ed25519_NONREDUCEDSCALARBYTES /* 64 */

/* libsodium's own set-up (CPU feature probes); thread-safe, repeatable. */
static int sodium_ready(void)
{
	return sodium_init() >= 0 ? KMS_OK : KMS_ERR_CRYPTO;
}

/* s = the clamped scalar of exp (RFC 8032 §5.1.5 step 2): bits 0-2 and 255 cleared, 254 set. */
static void clamp(uint8_t s[SC_BYTES], const uint8_t exp[64])
{
	memcpy(s, exp, SC_BYTES);
	s[0] &= 248;
	s[31] &= 127;
	s[31] |= 64;
}

/* out = h mod L, h a 64-byte little-endian number (a SHA-512 output or a zero-extended scalar). */
static void sc_reduce_wide(uint8_t out[SC_BYTES], const uint8_t h[SC_WIDE_BYTES])
{
	crypto_core_ed25519_scalar_reduce(out, h);
}

/* out = SHA-512(p1 || p2 || p3) mod L; any part may be empty. */
static int hash_to_scalar(uint8_t out[SC_BYTES], const uint8_t *p1, size_t n1, const uint8_t *p2,
			  size_t n2, const uint8_t *p3, size_t n3)
{
	crypto_hash_sha512_state st;
	uint8_t h[crypto_hash_sha512_BYTES];
	int r = KMS_ERR_CRYPTO;

	if (crypto_hash_sha512_init(&st) != 0 || crypto_hash_sha512_update(&st, p1, n1) != 0 ||
	    crypto_hash_sha512_update(&st, p2, n2) != 0 ||
	    (n3 && crypto_hash_sha512_update(&st, p3, n3) != 0) ||
	    crypto_hash_sha512_final(&st, h) != 0)
		goto out;
	sc_reduce_wide(out, h);
	r = KMS_OK;
out:
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(h, sizeof(h));
	return r;
}

int soft_ed25519_exp_pub(const uint8_t exp[static 64], uint8_t pub[static 32])
{
	uint8_t s[SC_BYTES];
	int r = sodium_ready();

	if (r != KMS_OK)
		return r;
	clamp(s, exp);
	/* A = sB. Fails only for the identity, which a clamped scalar (2^254 <= s) never gives. */
	if (crypto_scalarmult_ed25519_base_noclamp(pub, s) != 0)
		r = KMS_ERR_CRYPTO;
	sodium_memzero(s, sizeof(s));
	if (r != KMS_OK)
		sodium_memzero(pub, 32);
	return r;
}

int soft_ed25519_exp_sign(const uint8_t exp[static 64], const uint8_t pub[static 32],
			  const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	uint8_t wide[SC_WIDE_BYTES], s[SC_BYTES], rs[SC_BYTES], k[SC_BYTES], ks[SC_BYTES];
	int r = sodium_ready();

	if (r != KMS_OK)
		goto out;
	/* s = clamped scalar mod L (libsodium's scalar_mul wants reduced operands). */
	memset(wide, 0, sizeof(wide));
	clamp(wide, exp);
	sc_reduce_wide(s, wide);
	/* §5.1.6 step 2: r = SHA-512(prefix || M) mod L; step 3: R = rB. */
	r = hash_to_scalar(rs, exp + 32, 32, msg, len, NULL, 0);
	if (r != KMS_OK)
		goto out;
	if (crypto_scalarmult_ed25519_base_noclamp(sig, rs) != 0) {
		r = KMS_ERR_CRYPTO; /* r = 0 mod L: probability 2^-252 */
		goto out;
	}
	/* step 4: k = SHA-512(R || A || M) mod L */
	r = hash_to_scalar(k, sig, 32, pub, 32, msg, len);
	if (r != KMS_OK)
		goto out;
	/* step 5: S = (r + k * s) mod L */
	crypto_core_ed25519_scalar_mul(ks, k, s);
	crypto_core_ed25519_scalar_add(sig + 32, rs, ks);
	r = KMS_OK;
out:
	if (r != KMS_OK)
		sodium_memzero(sig, 64);
	sodium_memzero(wide, sizeof(wide));
	sodium_memzero(s, sizeof(s));
	sodium_memzero(rs, sizeof(rs));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(ks, sizeof(ks));
	return r;
}

int soft_ed25519_seed_sign(const uint8_t seed[static 32], const uint8_t pub[static 32],
			   const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	uint8_t sk[crypto_sign_ed25519_SECRETKEYBYTES];
	int r = sodium_ready();

	if (r == KMS_OK) {
		/* libsodium's secret key is seed || public key: nothing is derived per call */
		memcpy(sk, seed, 32);
		memcpy(sk + 32, pub, 32);
		if (crypto_sign_ed25519_detached(sig, NULL, msg, len, sk) != 0)
			r = KMS_ERR_CRYPTO;
		sodium_memzero(sk, sizeof(sk));
	}
	if (r != KMS_OK)
		sodium_memzero(sig, 64);
	return r;
}
