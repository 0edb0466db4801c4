/* SPDX-License-Identifier: Apache-2.0 */
/* merlin_: Merlin transcripts (STROBE-128 based), as used by the Secret Connection handshake. */
#ifndef P11KMS_MERLIN_H
#define P11KMS_MERLIN_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/keccak.h"
#include "p11kms/kms_err.h"

/* A transcript (plain value; wipe with merlin_wipe when done). */
struct merlin_transcript {
	struct strobe128 s;
};

/* new(label): STROBE-128("Merlin v1.0") then append_message("dom-sep", label). */
void merlin_init(struct merlin_transcript *t, const char *label);
/*
 * append_message(label, m): meta-AD(label) meta-AD(LE32(len), more) AD(m).
 * KMS_ERR_TOO_LARGE if len does not fit 32 bits (nothing absorbed).
 */
KMS_MUST_CHECK int merlin_append_message(struct merlin_transcript *t, const char *label,
					 const uint8_t *m, size_t len);
/* challenge_bytes(label, n) into out[0..n). KMS_ERR_TOO_LARGE if n does not fit 32 bits. */
KMS_MUST_CHECK int merlin_challenge_bytes(struct merlin_transcript *t, const char *label,
					  uint8_t *out, size_t n);
void merlin_wipe(struct merlin_transcript *t);

/*
 * Known-answer self-test: Keccak-f[1600] through a SHA3-256 sponge against
 * OpenSSL's SHA3-256, and Merlin's published "simple" vector. KMS_OK or
 * KMS_ERR_CRYPTO (logged). Cheap: call once at start.
 */
KMS_MUST_CHECK int merlin_selftest(void);

#endif
