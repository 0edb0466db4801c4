/* SPDX-License-Identifier: Apache-2.0 */
/* Ed25519 public key and signature from an expanded secret key (scalar || prefix). */
#ifndef P11KMS_SOFTSIGN_ED25519_EXP_H
#define P11KMS_SOFTSIGN_ED25519_EXP_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * exp = scalar (32 bytes, little-endian; clamped here as RFC 8032 §5.1.5
 * does) || prefix (32 bytes). OpenSSL only signs from a seed, so these use a
 * small constant-time implementation (ed25519_exp.c): no branch and no table
 * index depends on a secret. KMS_OK or KMS_ERR_CRYPTO (SHA-512 failed).
 */
KMS_MUST_CHECK int soft_ed25519_exp_pub(const uint8_t exp[static 64], uint8_t pub[static 32]);
KMS_MUST_CHECK int soft_ed25519_exp_sign(const uint8_t exp[static 64], const uint8_t pub[static 32],
					 const uint8_t *msg, size_t len, uint8_t sig[static 64]);

#endif
