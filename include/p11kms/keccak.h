/* SPDX-License-Identifier: Apache-2.0 */
/* keccak_/strobe128_: the Keccak-f[1600] permutation and the STROBE-128 subset Merlin needs. */
#ifndef P11KMS_KECCAK_H
#define P11KMS_KECCAK_H

#include <stddef.h>
#include <stdint.h>

/* The 24-round Keccak-f[1600] permutation on 25 lanes (lane i = x + 5y). */
void keccak_f1600(uint64_t lanes[static 25]);
/* The same on a 200-byte state, lanes little-endian at byte offset 8i. */
void keccak_f1600_bytes(uint8_t st[static 200]);

#define STROBE128_R 166 /* rate: 200 - 2*128/8 - 2 */

/*
 * STROBE-128 v1.0.2 restricted to meta-AD, AD and PRF (spec §2.4). "more"
 * continues the previous operation (its flags must match). Plain values:
 * copy freely; wipe with strobe128_wipe() when the state is secret.
 */
struct strobe128 {
	uint8_t st[200];
	uint8_t pos;
	uint8_t pos_begin;
	uint8_t cur_flags;
};

void strobe128_init(struct strobe128 *s, const uint8_t *label, size_t len);
void strobe128_meta_ad(struct strobe128 *s, const uint8_t *p, size_t len, int more);
void strobe128_ad(struct strobe128 *s, const uint8_t *p, size_t len, int more);
void strobe128_prf(struct strobe128 *s, uint8_t *out, size_t len, int more);
void strobe128_wipe(struct strobe128 *s);

#endif
