/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: strict base64 decode, and encode(decode(x)) == trimmed x. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/enc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap = size / 4 * 3 + 3, n = 0, a = 0, b = size;
	uint8_t *out = malloc(cap);
	char *again = malloc(size + 8);

	if (out == NULL || again == NULL)
		goto out;
	if (enc_base64_decode((const char *)data, size, out, cap, &n) != KMS_OK) {
		if (n != 0)
			__builtin_trap();
		goto out;
	}
	/* Strict decoding means only one text maps to these bytes (after trimming). */
	while (a < b && is_space(data[a]))
		a++;
	while (b > a && is_space(data[b - 1]))
		b--;
	if (enc_base64_encode(out, n, again, size + 8) != KMS_OK)
		__builtin_trap();
	if (strlen(again) != b - a || memcmp(again, data + a, b - a) != 0)
		__builtin_trap();
out:
	free(out);
	free(again);
	return 0;
}
