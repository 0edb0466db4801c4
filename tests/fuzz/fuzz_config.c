/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the config parser and schema checks (cfg_parse_string) on arbitrary text. */
#include <stddef.h>
#include <stdint.h>

#include "p11kms/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg *c = NULL;
	char err[CFG_ERR_MAX];
	/* A fixed absolute base keeps the run independent of the working directory. */
	if (cfg_parse_string(data, size, "fuzz.conf", "/nonexistent", &c, err, sizeof(err)) ==
	    KMS_OK) {
		/* Touch what consumers read: every cross-reference must resolve. */
		for (size_t i = 0; i < c->n_validators; i++)
			if (cfg_chain_find(c, c->validators[i].chain_id) == NULL ||
			    cfg_key_for_chain(c, c->validators[i].chain_id) == NULL)
				__builtin_trap();
		cfg_free(c);
	}
	return 0;
}
