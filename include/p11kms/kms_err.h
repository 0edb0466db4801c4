/* SPDX-License-Identifier: Apache-2.0 */
/* The one error enum of p11kms, its text, and the secret-memory helpers. */
#ifndef P11KMS_KMS_ERR_H
#define P11KMS_KMS_ERR_H

#include <stddef.h>

#define KMS_MUST_CHECK __attribute__((warn_unused_result))

/*
 * Every function that can fail returns an int holding one of these. KMS_OK is
 * zero; errors are negative. Codes are only ever appended, never renumbered:
 * the numeric values appear in logs and (through pv_) in RemoteSignerError.
 */
enum kms_err {
	KMS_OK = 0,
	KMS_ERR_INTERNAL = -1,     /* a bug: an invariant did not hold */
	KMS_ERR_ALLOC = -2,        /* out of memory */
	KMS_ERR_INCOMPLETE = -3,   /* more bytes are needed (framing may wait) */
	KMS_ERR_FORMAT = -4,       /* malformed input */
	KMS_ERR_TOO_LARGE = -5,    /* input over a size limit */
	KMS_ERR_NO_SPACE = -6,     /* output buffer or kbuf cap too small */
	KMS_ERR_SYSTEM = -7,       /* a system call failed; errno was logged */
	KMS_ERR_CRYPTO = -8,       /* OpenSSL failed; its queue was logged */
	KMS_ERR_PKCS11 = -9,       /* a C_* call failed; function and CKR logged */
	KMS_ERR_CONFIG = -10,      /* configuration invalid */
	KMS_ERR_AUTH = -11,        /* authentication failed (signature, peer id) */
	KMS_ERR_MAC_INVALID = -12, /* AEAD tag did not verify */
	KMS_ERR_CONN_CLOSED = -13, /* peer closed the connection */
	KMS_ERR_TIMEOUT = -14,     /* a deadline passed */
	KMS_ERR_UNSUPPORTED = -15, /* valid but not supported */
	KMS_ERR_DOUBLE_SIGN = -16, /* the guard refused: would double-sign */
	KMS_ERR_STATE_IO = -17,    /* double-sign state could not be read or made durable */
	KMS_ERR_PERM = -18,        /* file permissions too open, or access denied */
	KMS_ERR_NOT_FOUND = -19,   /* file, token, key or chain not found */
	KMS_ERR_AMBIGUOUS = -20,   /* several tokens or keys match */
	KMS_ERR_PIN_INCORRECT = -21,
	KMS_ERR_PIN_LOCKED = -22,
	KMS_ERR_REFUSED = -23,     /* a policy refused the request (max_height, chain-id, ...) */
	KMS_ERR_EXISTS = -24,      /* would overwrite something that exists */
	KMS_ERR_LOCKED = -25,      /* held by another process (flock) */
};

/* Static text for an error code; never NULL (unknown codes get a generic text). */
const char *kms_strerror(int err);

/* Wipes n bytes at p in a way the compiler cannot elide (OPENSSL_cleanse). */
void kms_wipe(void *p, size_t n);

/* Constant-time equality of n bytes: 1 if equal, 0 if not (CRYPTO_memcmp). */
KMS_MUST_CHECK int kms_ct_eq(const void *a, const void *b, size_t n);

/* free() after wiping n bytes; accepts NULL. */
void kms_free_secret(void *p, size_t n);

/*
 * Drains OpenSSL's error queue into one log line at ERR level, prefixed with
 * what (e.g. "EVP_DigestSign"). Returns KMS_ERR_CRYPTO so call sites can
 * write `return kms_crypto_err("EVP_PKEY_derive");`.
 */
int kms_crypto_err(const char *what);

#endif
