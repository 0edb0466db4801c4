/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the guard's two-slot state file image (guard_state_parse_file). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The layout constants of docs/state.md. */
#define FILE_SIZE 16384u
#define SLOT_SIZE 8192u
#define SUM_OFF 4276u

static void check(const uint8_t *p, size_t n)
{
	static struct guard_state st;
	uint64_t seq;
	if (guard_state_parse_file(p, n, &st, &seq) != KMS_OK)
		return;
	/* what the parser accepts must satisfy the loader's invariants */
	if (st.hrs.height < 0 || st.hrs.round < 0 || (int)st.hrs.step < 0 ||
	    (int)st.hrs.step > GUARD_STEP_PRECOMMIT || st.sign_bytes_len > GUARD_MAX_SIGN_BYTES ||
	    st.chain_id[0] == '\0' || (st.sign_bytes_len != 0) != (st.has_signature != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t img[FILE_SIZE];
	kms_log_set_quiet(1);
	check(data, size);
	/*
	 * Random bytes never pass the SHA-256, so also parse a copy whose slot
	 * checksums are recomputed: that reaches the field validation behind it.
	 */
	if (size != FILE_SIZE)
		return 0;
	memcpy(img, data, FILE_SIZE);
	for (unsigned i = 0; i < 2; i++) {
		uint8_t *slot = img + i * SLOT_SIZE;
		unsigned int len = 32;
		if (EVP_Digest(slot, SUM_OFF, slot + SUM_OFF, &len, EVP_sha256(), NULL) != 1)
			return 0;
	}
	check(img, FILE_SIZE);
	return 0;
}
