/* SPDX-License-Identifier: Apache-2.0 */
/* The contract between libp11kms-softsign.so and whoever loads it (slot_, tools). */
#ifndef P11KMS_SOFTSIGN_H
#define P11KMS_SOFTSIGN_H

/*
 * libp11kms-softsign.so is a PKCS#11 2.40 module (only C_GetFunctionList is
 * exported) serving Ed25519 key files (keyfile.h formats) as tokens. It never
 * writes to stdout/stderr: every failure is a CK_RV. docs/softsign.md is the
 * operator documentation.
 *
 * Configuration, in this order:
 *  1. C_Initialize with CK_C_INITIALIZE_ARGS whose pReserved points to a
 *     NUL-terminated string: SOFTSIGN_INIT_PREFIX followed by entries
 *     separated by SOFTSIGN_INIT_SEP, each "dir=<abs path>" or
 *     "file=<abs path>", e.g.
 *       "p11kms-softsign:dir=/var/lib/p11kms/keys;file=/etc/p11kms/val.key"
 *     Each entry is one slot (slot IDs 0, 1, ... in entry order) with one
 *     token. Paths must be absolute, must not contain ';', at most
 *     SOFTSIGN_MAX_SLOTS entries, and the whole string at most
 *     SOFTSIGN_INIT_MAX bytes; otherwise C_Initialize fails with
 *     CKR_ARGUMENTS_BAD. A pReserved that does not start with the prefix is
 *     CKR_ARGUMENTS_BAD too. flags may include CKF_OS_LOCKING_OK; mutex
 *     callbacks without CKF_OS_LOCKING_OK are CKR_CANT_LOCK (we only use
 *     pthread mutexes).
 *  2. Otherwise (NULL args, or args with pReserved NULL) the environment
 *     variable SOFTSIGN_ENV_DIR names one directory token (slot 0); it must be
 *     an absolute path, else it is ignored.
 *  3. Otherwise the module has no slots.
 *
 * Tokens:
 *  - serial number: keyfile_token_serial(path) (16 lowercase hex of SHA-256 of
 *    the path string exactly as configured); label: SOFTSIGN_LABEL_PREFIX +
 *    basename, truncated to 32 and blank padded; manufacturer
 *    SOFTSIGN_MANUFACTURER, model SOFTSIGN_MODEL. Flags CKF_TOKEN_INITIALIZED
 *    and CKF_USER_PIN_INITIALIZED (never CKF_LOGIN_REQUIRED: C_Login accepts
 *    any PIN and is optional);
 *    file tokens are also CKF_WRITE_PROTECTED (RW sessions refused with
 *    CKR_TOKEN_WRITE_PROTECTED, keygen/import refused).
 *  - Key files are read once, at C_Initialize. A dir token holds every
 *    regular file in the directory whose name does not start with '.' and
 *    that parses as a key; files that are not private (group/world
 *    permissions), unreadable, or not a key are skipped, and the slot
 *    description says how many were skipped ("softsign: 2 keys, 1 skipped").
 *    Call keyfile_load() on a path to learn why (it logs the reason).
 *  - A file token whose file is missing, not private or not a key has its
 *    slot present but no token (CKF_TOKEN_PRESENT clear; C_GetTokenInfo and
 *    C_OpenSession give CKR_TOKEN_NOT_PRESENT). The slot description carries a
 *    short reason ("softsign: mode 0644 too open"). A missing or unreadable
 *    directory is the same for a dir token.
 *
 * Objects, per key file (label = file name without its last extension):
 *  - CKO_PRIVATE_KEY, CKK_EC_EDWARDS: CKA_SIGN true, CKA_SENSITIVE true,
 *    CKA_EXTRACTABLE false, CKA_ALWAYS_SENSITIVE false,
 *    CKA_NEVER_EXTRACTABLE false, CKA_LOCAL false (the secret exists outside
 *    the token, in a file), CKA_PRIVATE false (no login needed), CKA_TOKEN
 *    true, CKA_EC_PARAMS (SOFTSIGN_EC_PARAMS_DER), CKA_EC_POINT (DER OCTET
 *    STRING 04 20 || pub). CKA_VALUE is CKR_ATTRIBUTE_SENSITIVE.
 *  - CKO_PUBLIC_KEY, CKK_EC_EDWARDS: CKA_VERIFY true, CKA_EC_PARAMS,
 *    CKA_EC_POINT, same CKA_LABEL and CKA_ID.
 *  - CKA_ID = keyfile_cka_id(pub): the first 8 bytes of SHA-256(pub).
 *
 * Mechanisms: CKM_EDDSA (sign; no parameter, or CK_EDDSA_PARAMS with
 * phFlag false and no context) and CKM_EC_EDWARDS_KEY_PAIR_GEN.
 * C_GenerateKeyPair and C_CreateObject (CKO_PRIVATE_KEY, CKK_EC_EDWARDS,
 * CKA_VALUE = 32-byte seed, CKA_LABEL required) write <dir>/<label>.key
 * (keyfile_write_seed: base64 seed, 0600, atomic) on dir tokens only; an
 * existing label or file is CKR_ATTRIBUTE_VALUE_INVALID. Labels are
 * 1..SOFTSIGN_LABEL_MAX characters of [A-Za-z0-9._-], not starting with '.'.
 */

#define SOFTSIGN_INIT_PREFIX "p11kms-softsign:"
#define SOFTSIGN_INIT_SEP ';'
#define SOFTSIGN_INIT_DIR "dir="
#define SOFTSIGN_INIT_FILE "file="
#define SOFTSIGN_INIT_MAX 16384
#define SOFTSIGN_MAX_SLOTS 64
#define SOFTSIGN_ENV_DIR "P11KMS_SOFTSIGN_DIR"

#define SOFTSIGN_MODULE_FILE "libp11kms-softsign.so"
#define SOFTSIGN_MANUFACTURER "p11kms"
#define SOFTSIGN_MODEL "softsign"
#define SOFTSIGN_LABEL_PREFIX "softsign "
#define SOFTSIGN_KEY_EXT ".key"
#define SOFTSIGN_LABEL_MAX 64

/* DER PrintableString "edwards25519" (PKCS#11 3.0 §2.3.10); the OID 1.3.101.112 is also accepted. */
#define SOFTSIGN_EC_PARAMS_DER \
	"\x13\x0c"             \
	"edwards25519"
#define SOFTSIGN_EC_PARAMS_DER_LEN 14
#define SOFTSIGN_EC_PARAMS_OID_DER "\x06\x03\x2b\x65\x70"
#define SOFTSIGN_EC_PARAMS_OID_DER_LEN 5

#endif
