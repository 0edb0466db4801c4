/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the guard's two-slot state file image (guard_state_parse_file). */
#include <stdint.h>
#include <stdlib.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guard_state st;
	uint64_t seq;
	kms_log_set_quiet(1);
	if (guard_state_parse_file(data, size, &st, &seq) == KMS_OK) {
		/* what the parser accepts must satisfy the loader's invariants */
		if (st.hrs.height < 0 || st.hrs.round < 0 || (int)st.hrs.step < 0 ||
		    (int)st.hrs.step > GUARD_STEP_PRECOMMIT ||
		    st.sign_bytes_len > GUARD_MAX_SIGN_BYTES || st.chain_id[0] == '\0' ||
		    (st.sign_bytes_len != 0) != (st.has_signature != 0))
			abort();
	}
	return 0;
}
