/* SPDX-License-Identifier: Apache-2.0 */
/* Merlin transcripts against the published vectors (tests/vectors/merlin.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/merlin.h"
#include "testutil.h"

static const json_t *find_vector(const json_t *root, const char *prefix)
{
	const json_t *vs = json_object_get(root, "vectors");
	size_t i;
	const json_t *v;

	assert_non_null(vs);
	json_array_foreach(vs, i, v) {
		if (strncmp(tu_json_str(v, "name"), prefix, strlen(prefix)) == 0)
			return v;
	}
	fail_msg("vector %s missing", prefix);
	return NULL;
}

/* Runs the "ops" list of the simple vector as written in the file. */
static void test_simple(void **state)
{
	json_t *root = tu_load_vector("merlin.json");
	const json_t *v = find_vector(root, "simple");
	const json_t *ops = json_object_get(v, "ops"), *op;
	struct merlin_transcript t;
	uint8_t want[32], got[32];
	size_t i;
	int have = 0, made = 0;

	(void)state;
	tu_hex(tu_json_str(v, "expected_challenge"), want, sizeof(want));
	json_array_foreach(ops, i, op) {
		const char *name = tu_json_str(op, "op");
		const char *label = tu_json_str(op, "label");

		if (strcmp(name, "new") == 0) {
			merlin_init(&t, label);
			made = 1;
		} else if (strcmp(name, "append_message") == 0) {
			const char *m = tu_json_str(op, "message_ascii");

			assert_true(made);
			assert_int_equal(
				merlin_append_message(&t, label, (const uint8_t *)m, strlen(m)), 0);
		} else if (strcmp(name, "challenge_bytes") == 0) {
			assert_int_equal(tu_json_int(op, "length"), 32);
			assert_int_equal(merlin_challenge_bytes(&t, label, got, 32), 0);
			have = 1;
		} else {
			fail_msg("unknown op %s", name);
		}
	}
	assert_true(have);
	assert_memory_equal(got, want, 32);
	merlin_wipe(&t);
	json_decref(root);
}

static void test_complex(void **state)
{
	json_t *root = tu_load_vector("merlin.json");
	const json_t *v = find_vector(root, "complex");
	struct merlin_transcript t;
	uint8_t want[32], c[32], big[1024];

	(void)state;
	tu_hex(tu_json_str(v, "expected_challenge"), want, sizeof(want));
	memset(big, 0x63, sizeof(big));
	merlin_init(&t, "test protocol");
	assert_int_equal(merlin_append_message(&t, "step1", (const uint8_t *)"some data", 9), 0);
	for (int i = 0; i < 32; i++) {
		assert_int_equal(merlin_challenge_bytes(&t, "challenge", c, 32), 0);
		assert_int_equal(merlin_append_message(&t, "bigdata", big, sizeof(big)), 0);
		assert_int_equal(merlin_append_message(&t, "challengedata", c, 32), 0);
	}
	assert_memory_equal(c, want, 32);
	json_decref(root);
}

/* Labels and lengths are bound: changing either changes the challenge. */
static void test_binding(void **state)
{
	struct merlin_transcript a, b;
	uint8_t x[32], y[64];

	(void)state;
	merlin_init(&a, "test protocol");
	merlin_init(&b, "test protocol");
	assert_int_equal(merlin_append_message(&a, "some label", (const uint8_t *)"some data", 9),
			 0);
	assert_int_equal(merlin_append_message(&b, "some labe", (const uint8_t *)"lsome data", 10),
			 0);
	assert_int_equal(merlin_challenge_bytes(&a, "challenge", x, 32), 0);
	assert_int_equal(merlin_challenge_bytes(&b, "challenge", y, 32), 0);
	assert_memory_not_equal(x, y, 32);
	/* a 64-byte challenge does not start with the 32-byte one (the length is absorbed) */
	merlin_init(&a, "test protocol");
	merlin_init(&b, "test protocol");
	assert_int_equal(merlin_challenge_bytes(&a, "challenge", x, 32), 0);
	assert_int_equal(merlin_challenge_bytes(&b, "challenge", y, 64), 0);
	assert_memory_not_equal(x, y, 32);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_complex),
		cmocka_unit_test(test_binding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
