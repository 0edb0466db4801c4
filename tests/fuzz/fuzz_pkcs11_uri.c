/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the PKCS#11 URI wrapper (p11-kit parse plus p11kms's rules). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "p11kms/kms_log.h"
#include "../../src/slot/slot_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slot_uri su;
	kms_log_set_quiet(1);
	if (slot_uri_parse(data, size, &su) != KMS_OK)
		return 0;
	/* Invariants of an accepted URI: printable form, no pin-value attribute (a path
	 * that merely contains the word is fine), absolute PIN path. */
	if (!su.text || strncmp(su.text, "pkcs11:", 7) != 0 || strstr(su.text, "?pin-value=") ||
	    strstr(su.text, "&pin-value="))
		abort();
	if (su.pin_file && su.pin_file[0] != '/')
		abort();
	slot_uri_clear(&su);
	return 0;
}
