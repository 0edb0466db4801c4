/* SPDX-License-Identifier: Apache-2.0 */
/* Ed25519 public key and signature from an expanded secret key (scalar || prefix). */
#ifndef P11KMS_SOFTSIGN_ED25519_EXP_H
#define P11KMS_SOFTSIGN_ED25519_EXP_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * exp = scalar (32 bytes, little-endian; clamped here as RFC 8032 §5.1.5
 * does) || prefix (32 bytes). OpenSSL and libsodium's crypto_sign only sign
 * from a seed, so these rebuild RFC 8032 from libsodium's constant-time
 * Ed25519 core operations (ed25519_exp.c). Secrets are wiped before return.
 * KMS_OK or KMS_ERR_CRYPTO (libsodium failed to initialise).
 */
KMS_MUST_CHECK int soft_ed25519_exp_pub(const uint8_t exp[static 64], uint8_t pub[static 32]);
KMS_MUST_CHECK int soft_ed25519_exp_sign(const uint8_t exp[static 64], const uint8_t pub[static 32],
					 const uint8_t *msg, size_t len, uint8_t sig[static 64]);

/*
 * The same signature from a 32-byte seed and its public key (which the caller derived
 * from that seed once, at load): libsodium's crypto_sign_ed25519_detached, so a signature
 * costs no key set-up (OpenSSL's EVP_PKEY_new_raw_private_key recomputes the public key
 * on every call). Identical output to OpenSSL's Ed25519 (RFC 8032 is deterministic).
 */
KMS_MUST_CHECK int soft_ed25519_seed_sign(const uint8_t seed[static 32], const uint8_t pub[static 32],
					  const uint8_t *msg, size_t len, uint8_t sig[static 64]);

#endif
