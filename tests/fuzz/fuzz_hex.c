/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: enc_hex_decode / encode round trip. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/enc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *out = malloc(size / 2 + 1);
	char *again = malloc(size + 1);
	size_t n = 0;

	if (out == NULL || again == NULL)
		goto out;
	if (enc_hex_decode((const char *)data, size, out, size / 2 + 1, &n) == KMS_OK) {
		if (n != size / 2)
			__builtin_trap();
		if (enc_hex_encode(out, n, again, size + 1) != KMS_OK)
			__builtin_trap();
		/* Equal ignoring case. */
		for (size_t i = 0; i < size; i++) {
			char c = (char)data[i];

			if (c >= 'A' && c <= 'F')
				c = (char)(c + 32);
			if (c != again[i])
				__builtin_trap();
		}
	} else if (n != 0) {
		__builtin_trap();
	}
out:
	free(out);
	free(again);
	return 0;
}
