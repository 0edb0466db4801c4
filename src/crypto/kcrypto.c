// SPDX-License-Identifier: Apache-2.0
// Thin OpenSSL 3 wrappers: Ed25519 from a seed, SHA-256, randomness.
#include "p11kms/kcrypto.h"

#include <limits.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

static EVP_PKEY *key_from_seed(const uint8_t seed[static 32])
{
	return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
}

int kcrypto_ed25519_pub_from_seed(const uint8_t seed[static 32], uint8_t pub[static 32])
{
	EVP_PKEY *pk = key_from_seed(seed);
	size_t len = 32;
	int r = KMS_ERR_INTERNAL;

	if (pk == NULL)
		return kms_crypto_err("EVP_PKEY_new_raw_private_key");
	if (EVP_PKEY_get_raw_public_key(pk, pub, &len) != 1 || len != 32) {
		r = kms_crypto_err("EVP_PKEY_get_raw_public_key");
		goto out;
	}
	r = KMS_OK;
out:
	EVP_PKEY_free(pk);
	return r;
}

int kcrypto_ed25519_sign(const uint8_t seed[static 32], const uint8_t *msg, size_t len,
			 uint8_t sig[static 64])
{
	EVP_PKEY *pk = key_from_seed(seed);
	EVP_MD_CTX *md = NULL;
	size_t siglen = 64;
	int r = KMS_ERR_INTERNAL;

	if (pk == NULL)
		return kms_crypto_err("EVP_PKEY_new_raw_private_key");
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, pk) != 1) {
		r = kms_crypto_err("EVP_DigestSignInit");
		goto out;
	}
	if (EVP_DigestSign(md, sig, &siglen, msg, len) != 1 || siglen != 64) {
		r = kms_crypto_err("EVP_DigestSign");
		goto out;
	}
	r = KMS_OK;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	return r;
}

int kcrypto_ed25519_verify(const uint8_t pub[static 32], const uint8_t *msg, size_t len,
			   const uint8_t sig[static 64])
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *md = NULL;
	int r = KMS_ERR_INTERNAL;
	int ok;

	if (pk == NULL)
		return kms_crypto_err("EVP_PKEY_new_raw_public_key");
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) != 1) {
		r = kms_crypto_err("EVP_DigestVerifyInit");
		goto out;
	}
	ok = EVP_DigestVerify(md, sig, 64, msg, len);
	if (ok < 0) {
		r = kms_crypto_err("EVP_DigestVerify");
		goto out;
	}
	r = ok == 1 ? KMS_OK : KMS_ERR_AUTH;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	return r;
}

int kcrypto_sha256(const uint8_t *p, size_t len, uint8_t out[static 32])
{
	unsigned int olen = 0;

	if (EVP_Digest(p, len, out, &olen, EVP_sha256(), NULL) != 1 || olen != 32)
		return kms_crypto_err("EVP_Digest(SHA-256)");
	return KMS_OK;
}

int kcrypto_random(uint8_t *out, size_t len)
{
	while (len > 0) {
		int n = len > INT_MAX ? INT_MAX : (int)len;

		if (RAND_priv_bytes(out, n) != 1)
			return kms_crypto_err("RAND_priv_bytes");
		out += n;
		len -= (size_t)n;
	}
	return KMS_OK;
}
