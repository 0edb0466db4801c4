/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz target: the hsm-profile parser (libconfig text to struct slot_profile). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"
#include "../../src/slot/slot_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slot_profile p;
	size_t i;
	kms_log_set_quiet(1);
	if (slot_profile_parse(data, size, &p) != KMS_OK)
		return 0;
	/* Invariants of an accepted profile. */
	if (p.name[0] == '\0' || memchr(p.name, '\0', sizeof(p.name)) == NULL)
		abort();
	if (p.max_sign_input < 64 || p.max_sign_input > ((size_t)1 << 30))
		abort();
	if (p.n_module_paths > SLOT_PROFILE_MAX_PATHS)
		abort();
	for (i = 0; i < p.n_module_paths; i++)
		if (p.module_paths[i][0] != '/')
			abort();
	return 0;
}
