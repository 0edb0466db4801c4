/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: CometBFT / tmkms / horcrux / p11kms JSON state (guard_state_parse_json). */
#include <stdint.h>
#include <stdlib.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guard_state st;
	kms_log_set_quiet(1);
	for (int fmt = GUARD_FMT_AUTO; fmt <= GUARD_FMT_P11KMS; fmt++) {
		if (guard_state_parse_json(data, size, (enum guard_fmt)fmt, &st) != KMS_OK)
			continue;
		if (st.hrs.height < 0 || st.hrs.round < 0 ||
		    (int)st.hrs.step > GUARD_STEP_PRECOMMIT ||
		    st.sign_bytes_len > GUARD_MAX_SIGN_BYTES ||
		    (st.sign_bytes_len != 0) != (st.has_signature != 0) || st.fmt == GUARD_FMT_AUTO)
			abort();
	}
	return 0;
}
