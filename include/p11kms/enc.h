/* SPDX-License-Identifier: Apache-2.0 */
/* enc_: hex, base64, bech32, and the Cosmos public-key/address displays. */
#ifndef P11KMS_ENC_H
#define P11KMS_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * All encoders write a NUL-terminated string into out[0..cap) and fail with
 * KMS_ERR_NO_SPACE if it does not fit (out is then an empty string). All
 * decoders write at most cap bytes and set *outlen; they fail with
 * KMS_ERR_FORMAT on any invalid character or length and KMS_ERR_NO_SPACE if
 * the result does not fit. Decoders of key material (hex, base64) run in
 * time independent of the byte values.
 */

/* Lowercase / uppercase hex. Needs cap >= 2*len+1. */
KMS_MUST_CHECK int enc_hex_encode(const uint8_t *in, size_t len, char *out, size_t cap);
KMS_MUST_CHECK int enc_hex_encode_upper(const uint8_t *in, size_t len, char *out, size_t cap);
/* Accepts upper and lower case; inlen must be even. */
KMS_MUST_CHECK int enc_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t cap, size_t *outlen);

/* Standard alphabet, padded (RFC 4648 §4). Needs cap >= 4*ceil(len/3)+1. */
size_t enc_base64_encoded_len(size_t len); /* without the NUL */
KMS_MUST_CHECK int enc_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
/*
 * Strict padded standard base64; leading and trailing ASCII whitespace is
 * ignored (tmkms trims it), inner whitespace is an error.
 */
KMS_MUST_CHECK int enc_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t cap, size_t *outlen);

/*
 * BIP-173 bech32 of 8-bit data (converted to 5-bit groups). The whole string
 * is at most 90 characters (ENC_BECH32_MAX); hrp is 1..83 chars of 33..126,
 * stored lowercase. Decode accepts all-lower or all-upper input, returns the
 * hrp lowercased (hrpcap >= 84) and the 8-bit data (padding must be zero).
 */
#define ENC_BECH32_MAX 90
KMS_MUST_CHECK int enc_bech32_encode(const char *hrp, const uint8_t *data, size_t len, char *out, size_t cap);
KMS_MUST_CHECK int enc_bech32_decode(const char *in, char *hrp, size_t hrpcap, uint8_t *data, size_t cap, size_t *outlen);

/* Cosmos displays of an Ed25519 public key (spec §6). */
#define ENC_ED25519_PUB_LEN 32
#define ENC_ADDRESS_LEN 20
/* address = SHA-256(pub)[0..20]: validator address / node ID. */
KMS_MUST_CHECK int enc_ed25519_address(const uint8_t pub[static 32], uint8_t addr[static 20]);
/* bech32(prefix, 16 24 de 64 20 || pub): e.g. haqqvalconspub1zcjduepq... */
KMS_MUST_CHECK int enc_ed25519_bech32_pub(const char *prefix, const uint8_t pub[static 32], char *out, size_t cap);
/* {"@type":"/cosmos.crypto.ed25519.PubKey","key":"<b64>"} */
KMS_MUST_CHECK int enc_ed25519_cosmos_json(const uint8_t pub[static 32], char *out, size_t cap);
/* bech32(prefix, address): e.g. haqqvalcons1... */
KMS_MUST_CHECK int enc_ed25519_bech32_addr(const char *prefix, const uint8_t pub[static 32], char *out, size_t cap);

#endif
