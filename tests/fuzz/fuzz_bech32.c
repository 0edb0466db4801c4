/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: BIP-173 bech32 decode, and lowercase(x) == encode(decode(x)). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/enc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[ENC_BECH32_MAX + 2], hrp[84], again[ENC_BECH32_MAX + 1];
	uint8_t out[ENC_BECH32_MAX];
	size_t n = 0;

	/* The decoder takes a C string; longer inputs must fail on length. */
	if (size > ENC_BECH32_MAX + 1)
		size = ENC_BECH32_MAX + 1;
	memcpy(in, data, size);
	in[size] = '\0';
	if (enc_bech32_decode(in, hrp, sizeof(hrp), out, sizeof(out), &n) != KMS_OK) {
		if (n != 0 || hrp[0] != '\0')
			__builtin_trap();
		return 0;
	}
	if (strlen(in) > ENC_BECH32_MAX)
		__builtin_trap();
	if (enc_bech32_encode(hrp, out, n, again, sizeof(again)) != KMS_OK)
		__builtin_trap();
	for (size_t i = 0; in[i] != '\0'; i++) {
		char c = in[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (c != again[i])
			__builtin_trap();
	}
	if (again[strlen(in)] != '\0')
		__builtin_trap();
	return 0;
}
