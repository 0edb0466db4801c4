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
#define SUM_OFF 4276u /* format 1: the SHA-256 of [0, 4276) */
#define VER_OFF 8u
#define LEN_OFF 12u
#define SBLEN_OFF 112u
#define SB_OFF 180u /* format 2: sign bytes [180, 180+n), then the SHA-256 of [0, 180+n) */
#define MAX_SB 4096u

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Makes the slot's checksum match, as format 1 or, when the slot's own format field is
 * odd, as format 2 (the written format): the version, length and sign-bytes length
 * fields are made consistent (n from the input's sign-bytes length field), so that
 * random bytes reach the field validation of both formats.
 */
static int seal_slot(uint8_t *slot)
{
	unsigned int len = 32;
	if (slot[VER_OFF] & 1u) {
		uint32_t n = get_le32(slot + SBLEN_OFF) % (MAX_SB + 1u);
		put_le32(slot + VER_OFF, 2);
		put_le32(slot + LEN_OFF, SB_OFF + n + 32u);
		put_le32(slot + SBLEN_OFF, n);
		return EVP_Digest(slot, SB_OFF + n, slot + SB_OFF + n, &len, EVP_sha256(), NULL) == 1;
	}
	return EVP_Digest(slot, SUM_OFF, slot + SUM_OFF, &len, EVP_sha256(), NULL) == 1;
}

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
	 * checksums are recomputed (format 1 or 2, see seal_slot): that reaches the
	 * field validation behind it.
	 */
	if (size != FILE_SIZE)
		return 0;
	memcpy(img, data, FILE_SIZE);
	for (unsigned i = 0; i < 2; i++)
		if (!seal_slot(img + i * SLOT_SIZE))
			return 0;
	check(img, FILE_SIZE);
	return 0;
}
