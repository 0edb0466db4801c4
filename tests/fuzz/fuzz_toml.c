/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the TOML reader (tmkms.toml for `p11kms migrate`). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p11kms/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walks the tree so every accessor runs on whatever the parser built. */
static size_t walk(const struct toml_value *v, unsigned depth)
{
	size_t n = 1, k;
	int64_t i;
	int b;

	if (v == NULL || depth > 2 * TOML_MAX_DEPTH + 2)
		return 0;
	switch (toml_type(v)) {
	case TOML_TABLE:
		for (k = 0; k < toml_table_len(v); k++) {
			const char *key = toml_table_key(v, k);

			if (key == NULL || toml_get(v, key) == NULL)
				__builtin_trap();
			n += walk(toml_table_at(v, k), depth + 1);
		}
		break;
	case TOML_ARRAY:
		for (k = 0; k < toml_array_len(v); k++)
			n += walk(toml_array_at(v, k), depth + 1);
		break;
	case TOML_STRING:
		n += strlen(toml_string(v));
		break;
	case TOML_INT:
		if (toml_int(v, &i) != KMS_OK)
			__builtin_trap();
		break;
	case TOML_BOOL:
		if (toml_bool(v, &b) != KMS_OK)
			__builtin_trap();
		break;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct toml_doc *doc = NULL;
	char err[160];

	if (toml_parse(data, size, &doc, err, sizeof(err)) == KMS_OK) {
		(void)walk(toml_root(doc), 0);
		toml_free(doc);
	} else if (doc != NULL || strncmp(err, "line ", 5) != 0) {
		if (size <= TOML_MAX_INPUT)
			__builtin_trap(); /* errors always name a line */
	}
	return 0;
}
