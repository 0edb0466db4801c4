/* SPDX-License-Identifier: Apache-2.0 */
/* keyfile_: Ed25519 key files as tmkms softsign and CometBFT write them (spec §6). */
#ifndef P11KMS_KEYFILE_H
#define P11KMS_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * Formats accepted (the kind is found from the content, not the file name):
 *  - KEYFILE_SEED32: base64 of a 32-byte RFC 8032 seed. What `tmkms softsign
 *    keygen` and `tmkms softsign import` write, and what keyfile_write_seed
 *    writes. Leading/trailing ASCII whitespace is ignored, as tmkms trims it.
 *  - KEYFILE_EXPANDED64: base64 of a 64-byte expanded secret key, scalar
 *    (32 bytes, little-endian, clamped) || prefix (32 bytes): tmkms 0.15's
 *    reading of a 64-byte softsign file. NOT seed || pub (that is the JSON
 *    layout); a seed || pub blob pasted into a base64 file is misread by tmkms
 *    and by us alike, and its "public key" will not match.
 *  - KEYFILE_YUBIHSM96: base64 of 96 bytes, the YubiHSM export layout
 *    (scalar with its bytes reversed || prefix || public key); the stored
 *    public key must equal the one derived from the scalar.
 *  - KEYFILE_PRIV_VALIDATOR_JSON: CometBFT priv_validator_key.json with
 *    priv_key.type "tendermint/PrivKeyEd25519" and a 64-byte value
 *    seed || pub. The derived public key must equal the stored half, and
 *    pub_key.value and address, when present, must match it.
 */
enum keyfile_kind {
	KEYFILE_SEED32,
	KEYFILE_EXPANDED64,
	KEYFILE_YUBIHSM96,
	KEYFILE_PRIV_VALIDATOR_JSON,
};

/*
 * A parsed Ed25519 key (a plain value: copy it, wipe it with keyfile_wipe).
 * has_seed: seed is valid (SEED32 and JSON); otherwise expanded holds
 * scalar || prefix (EXPANDED64, YUBIHSM96; scalar little-endian as RFC 8032
 * uses it). pub is always valid.
 */
struct keyfile_ed25519 {
	enum keyfile_kind kind;
	int has_seed;
	uint8_t seed[32];
	uint8_t expanded[64];
	uint8_t pub[32];
};

/* Largest key file we read (priv_validator_key.json is ~350 bytes). */
#define KEYFILE_MAX_SIZE 4096

/* Short name of a kind ("seed32", "expanded64", "yubihsm96", "priv_validator_key.json"). */
const char *keyfile_kind_name(enum keyfile_kind kind);

/*
 * Parses a key file's contents (any of the formats above). Pure: no I/O, no
 * logging, no global state (fuzzed by tests/fuzz/fuzz_keyfile.c). On error
 * *out is wiped and why (when whycap > 0) holds a one-line reason naming the
 * field or size concerned, e.g. "pub_key.value does not match priv_key".
 * Returns KMS_OK, KMS_ERR_FORMAT (malformed, mismatch), KMS_ERR_UNSUPPORTED
 * (a valid but unsupported key type, e.g. secp256k1), KMS_ERR_TOO_LARGE
 * (over KEYFILE_MAX_SIZE), KMS_ERR_CRYPTO.
 */
KMS_MUST_CHECK int keyfile_parse(const uint8_t *p, size_t n, struct keyfile_ed25519 *out, char *why,
				 size_t whycap);

/*
 * Reads path with dfile_read_private (KMS_ERR_PERM for group/world access,
 * logged with the file and mode; KMS_ERR_NOT_FOUND) and parses it. Errors are
 * logged once with the path. *out is wiped on error.
 */
KMS_MUST_CHECK int keyfile_load(const char *path, struct keyfile_ed25519 *out);

/*
 * keyfile_load without logging, for callers that must stay silent (the
 * softsign PKCS#11 module): the reason goes to why instead.
 */
KMS_MUST_CHECK int keyfile_load_quiet(const char *path, struct keyfile_ed25519 *out, char *why,
				      size_t whycap);

/*
 * Writes a new key file in the tmkms softsign format: base64 of the 32-byte
 * seed, no trailing newline (tmkms writes the bare base64 string), mode
 * 0600, atomically (dfile_create_atomic). KMS_ERR_EXISTS if path exists: a
 * key file is never overwritten.
 */
KMS_MUST_CHECK int keyfile_write_seed(const char *path, const uint8_t seed[static 32]);

/*
 * RFC 8032 Ed25519 signature of len bytes at msg. Seed keys sign through
 * OpenSSL (kcrypto_ed25519_sign); expanded keys from scalar || prefix on
 * libsodium's constant-time Ed25519 core operations (see docs/softsign.md).
 * KMS_ERR_CRYPTO if either library fails.
 */
KMS_MUST_CHECK int keyfile_sign(const struct keyfile_ed25519 *k, const uint8_t *msg, size_t len,
				uint8_t sig[static 64]);

/* Wipes the whole struct. Accepts NULL. */
void keyfile_wipe(struct keyfile_ed25519 *k);

/*
 * The softsign module's CKA_ID for a public key: the first 8 bytes of
 * SHA-256(pub). Stable across reloads, renames and formats of the same key.
 */
#define KEYFILE_CKA_ID_LEN 8
KMS_MUST_CHECK int keyfile_cka_id(const uint8_t pub[static 32],
				  uint8_t id[static KEYFILE_CKA_ID_LEN]);

/*
 * The softsign token serial number for a token path (absolute, as given in
 * the init string or P11KMS_SOFTSIGN_DIR): the first 16 lowercase hex
 * characters of SHA-256(path), NUL-terminated in out[17].
 */
#define KEYFILE_SERIAL_LEN 16
KMS_MUST_CHECK int keyfile_token_serial(const char *path, char out[static KEYFILE_SERIAL_LEN + 1]);

#endif
