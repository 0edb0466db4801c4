/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: CometBFT / tmkms / horcrux / p11kms JSON state
 * (guard_state_parse_json, guard_state_detect). Beyond the parsed values'
 * ranges it checks the one-shape-one-format rule: a file parses under an
 * explicit format only if it has that format's shape, and under auto only as
 * the format detected.
 */
#include <stdint.h>
#include <stdlib.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guard_state st;
	char why[160];
	kms_log_set_quiet(1);
	enum guard_fmt shape = guard_state_detect(data, size, why, sizeof(why));
	for (int fmt = GUARD_FMT_AUTO; fmt <= GUARD_FMT_P11KMS; fmt++) {
		if (guard_state_parse_json(data, size, (enum guard_fmt)fmt, &st) != KMS_OK)
			continue;
		if (st.hrs.height < 0 || st.hrs.round < 0 ||
		    (int)st.hrs.step > GUARD_STEP_PRECOMMIT ||
		    st.sign_bytes_len > GUARD_MAX_SIGN_BYTES ||
		    (st.sign_bytes_len != 0) != (st.has_signature != 0) || st.fmt == GUARD_FMT_AUTO)
			abort();
		/* read only as the format whose shape it has */
		if (st.fmt != shape || (fmt != GUARD_FMT_AUTO && fmt != (int)shape))
			abort();
		/* tmkms numbers steps 0/1/2; the others 0..3 as we do */
		if (shape == GUARD_FMT_TMKMS ?
			    (st.src_step > 2 ||
			     ((int)st.hrs.step != st.src_step + 1 &&
			      !(st.src_step == 0 && st.hrs.step == GUARD_STEP_NONE))) :
			    (int)st.hrs.step != st.src_step)
			abort();
	}
	return 0;
}
