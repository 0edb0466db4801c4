/* SPDX-License-Identifier: Apache-2.0 */
/* kcrypto_: thin OpenSSL 3 wrappers for Ed25519, SHA-256 and randomness. */
#ifndef P11KMS_KCRYPTO_H
#define P11KMS_KCRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

#define KCRYPTO_ED25519_SEED_LEN 32
#define KCRYPTO_ED25519_PUB_LEN 32
#define KCRYPTO_ED25519_SIG_LEN 64

/*
 * Software Ed25519 (RFC 8032) for the softsign module, tests and the
 * simulator; production keys sign through slot_. All return KMS_OK or
 * KMS_ERR_CRYPTO (OpenSSL's queue logged). Nothing here keeps a secret
 * beyond the call: EVP keys are freed (OpenSSL clears them) before return.
 */
KMS_MUST_CHECK int kcrypto_ed25519_pub_from_seed(const uint8_t seed[static 32], uint8_t pub[static 32]);
KMS_MUST_CHECK int kcrypto_ed25519_sign(const uint8_t seed[static 32], const uint8_t *msg, size_t len,
					uint8_t sig[static 64]);
/* KMS_OK if the signature verifies, KMS_ERR_AUTH if not, KMS_ERR_CRYPTO on failure. */
KMS_MUST_CHECK int kcrypto_ed25519_verify(const uint8_t pub[static 32], const uint8_t *msg, size_t len,
					  const uint8_t sig[static 64]);

KMS_MUST_CHECK int kcrypto_sha256(const uint8_t *p, size_t len, uint8_t out[static 32]);
/* Cryptographically secure random bytes (RAND_priv_bytes). */
KMS_MUST_CHECK int kcrypto_random(uint8_t *out, size_t len);

#endif
