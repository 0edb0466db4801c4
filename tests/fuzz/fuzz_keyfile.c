/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: keyfile_parse (tmkms base64 keys, priv_validator_key.json). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t zero[sizeof(struct keyfile_ed25519)];
	static const uint8_t msg[] = "fuzz";
	struct keyfile_ed25519 k;
	char why[128];
	uint8_t sig[64];

	kms_log_set_quiet(1);
	memset(why, 'x', sizeof(why));
	if (keyfile_parse(data, size, &k, why, sizeof(why)) != KMS_OK) {
		/* a failure leaves nothing behind and always says why */
		if (memcmp(&k, zero, sizeof(k)) != 0 || why[0] == '\0' ||
		    !memchr(why, '\0', sizeof(why)))
			__builtin_trap();
		return 0;
	}
	/* an accepted key signs, and the signature verifies under its public key */
	if (keyfile_sign(&k, msg, sizeof(msg), sig) != KMS_OK ||
	    kcrypto_ed25519_verify(k.pub, msg, sizeof(msg), sig) != KMS_OK)
		__builtin_trap();
	if (k.has_seed != (k.kind == KEYFILE_SEED32 || k.kind == KEYFILE_PRIV_VALIDATOR_JSON))
		__builtin_trap();
	keyfile_wipe(&k);
	return 0;
}
