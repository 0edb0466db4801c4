/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: tmkms.toml -> p11kms.conf conversion; converted configs must validate. */
#include <stddef.h>
#include <stdint.h>

#include "../../src/cli/migrate.h"
#include "p11kms/cfg.h"
#include "p11kms/kbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct migrate_opts o = {
		.src_name = "tmkms.toml",
		.tmkms_cwd = "/home/val/tmkms",
		.out_dir = "/etc/p11kms",
	};
	struct migrate_result *res = NULL;
	struct cfg *cfg = NULL;
	char err[CFG_ERR_MAX];
	int r = migrate_convert(data, size, &o, &res);

	if (r == KMS_OK) {
		/*
		 * Whatever migrate accepts must pass the daemon's validation: the
		 * problems must be reported against tmkms.toml lines, not later.
		 */
		if (cfg_parse_string(kbuf_ptr(res->conf), kbuf_len(res->conf), "fuzz", o.out_dir,
				     &cfg, err, sizeof(err)) != KMS_OK)
			__builtin_trap();
		cfg_free(cfg);
	} else if (r != KMS_ERR_ALLOC && (res == NULL || kbuf_len(res->errors) == 0)) {
		__builtin_trap(); /* a refusal always says why */
	}
	migrate_result_free(res);
	return 0;
}
