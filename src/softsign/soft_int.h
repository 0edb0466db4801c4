/* SPDX-License-Identifier: Apache-2.0 */
/* Private declarations of the softsign PKCS#11 module (tokens, keys, attributes). */
#ifndef P11KMS_SOFT_INT_H
#define P11KMS_SOFT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "p11kms/keyfile.h"
#include "p11kms/softsign.h"

/* One configured token (one slot). */
struct soft_slot {
	char *path;  /* as configured (absolute) */
	int is_dir;  /* dir= (or the environment) vs file= */
	int present; /* the token could be read */
	char serial[KEYFILE_SERIAL_LEN + 1];
	char desc[65]; /* slot description: counts or why the token is absent */
	size_t nkeys, nskipped;
};

/* One key file: a private/public object pair. Handles: 2*i+1 private, 2*i+2 public. */
struct soft_key {
	struct keyfile_ed25519 k;
	char label[256];
	uint8_t id[KEYFILE_CKA_ID_LEN];
	CK_SLOT_ID slot;
};

/* Everything C_Initialize creates; C_Finalize wipes and frees it. */
struct soft_state {
	struct soft_slot slots[SOFTSIGN_MAX_SLOTS];
	size_t nslots;
	struct soft_key *keys;
	size_t nkeys, capkeys;
};

/*
 * soft_token.c: parse the init string (or SOFTSIGN_ENV_DIR) and load every
 * token. CKR_OK, CKR_ARGUMENTS_BAD (malformed init string), CKR_HOST_MEMORY.
 * A token that cannot be read is not an error: its slot has present = 0.
 */
CK_RV soft_state_load(struct soft_state *st, const char *init);
void soft_state_free(struct soft_state *st);

/*
 * Creates <dir>/<label>.key holding seed (keyfile_write_seed) on dir token
 * slot and adds the key; *idx is its index. CKR_ATTRIBUTE_VALUE_INVALID for
 * a bad or existing label, CKR_TOKEN_WRITE_PROTECTED on a file token,
 * CKR_DEVICE_ERROR if the file cannot be written.
 */
CK_RV soft_key_create(struct soft_state *st, CK_SLOT_ID slot, const char *label, size_t label_len,
		      const uint8_t seed[static 32], size_t *idx);

/* soft_attr.c: an attribute value of one object (borrowed or in u). */
struct soft_aval {
	const void *p;
	size_t len;
	union {
		CK_BBOOL b;
		CK_ULONG ul;
		uint8_t buf[40];
	} u;
};

/*
 * The value of attribute t of key k's private (priv = 1) or public object:
 * CKR_OK, CKR_ATTRIBUTE_SENSITIVE (the private value), or
 * CKR_ATTRIBUTE_TYPE_INVALID.
 */
CK_RV soft_attr_get(const struct soft_key *k, int priv, CK_ATTRIBUTE_TYPE t, struct soft_aval *v);
/* 1 if the object has every attribute of the template with the same value. */
int soft_attr_match(const struct soft_key *k, int priv, const CK_ATTRIBUTE *tmpl, CK_ULONG n);
/* Checks a CKA_EC_PARAMS value: edwards25519 as printable string or OID. */
int soft_ec_params_ok(const void *p, CK_ULONG len);

#endif
