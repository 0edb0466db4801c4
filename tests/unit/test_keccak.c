/* SPDX-License-Identifier: Apache-2.0 */
/* Keccak-f[1600] and STROBE-128: known answers and a SHA3-256 sponge checked against OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "p11kms/keccak.h"
#include "p11kms/merlin.h"
#include "testutil.h"

static void sha3_256(const uint8_t *p, size_t len, uint8_t out[32])
{
	uint8_t st[200];
	size_t pos = 0;

	memset(st, 0, sizeof(st));
	for (size_t i = 0; i < len; i++) {
		st[pos++] ^= p[i];
		if (pos == 136) {
			keccak_f1600_bytes(st);
			pos = 0;
		}
	}
	st[pos] ^= 0x06;
	st[135] ^= 0x80;
	keccak_f1600_bytes(st);
	memcpy(out, st, 32);
}

/* Keccak team's KeccakF-1600 intermediate values: permutation of the zero state. */
static void test_zero_state(void **state)
{
	uint64_t a[25];

	(void)state;
	memset(a, 0, sizeof(a));
	keccak_f1600(a);
	assert_true(a[0] == 0xF1258F7940E1DDE7ULL);
	assert_true(a[1] == 0x84D5CCF933C0478AULL);
	assert_true(a[24] == 0xEAF1FF7B5CECA249ULL);
	keccak_f1600(a);
	assert_true(a[0] == 0x2D5C954DF96ECB3CULL);
}

/* spec §2.4: SHA3-256 padding of "" permuted gives a7ffc6f8... */
static void test_sha3_empty(void **state)
{
	uint8_t want[32], got[32];

	(void)state;
	tu_hex("a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a", want,
	       sizeof(want));
	sha3_256(NULL, 0, got);
	assert_memory_equal(got, want, 32);
}

/* Every length 0..600 (crossing several 136-byte blocks) against OpenSSL's SHA3-256. */
static void test_sha3_vs_openssl(void **state)
{
	uint8_t msg[600], got[32], ref[32];
	unsigned int olen;

	(void)state;
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 131 + 17);
	for (size_t len = 0; len <= sizeof(msg); len++) {
		sha3_256(msg, len, got);
		assert_int_equal(EVP_Digest(msg, len, ref, &olen, EVP_sha3_256(), NULL), 1);
		assert_memory_equal(got, ref, 32);
	}
}

static void test_bytes_matches_lanes(void **state)
{
	uint8_t st[200];
	uint64_t a[25];

	(void)state;
	for (size_t i = 0; i < 200; i++)
		st[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < 25; i++) {
		a[i] = 0;
		for (int j = 7; j >= 0; j--)
			a[i] = (a[i] << 8) | st[8 * i + (size_t)j];
	}
	keccak_f1600_bytes(st);
	keccak_f1600(a);
	for (size_t i = 0; i < 25; i++)
		for (size_t j = 0; j < 8; j++)
			assert_int_equal(st[8 * i + j], (uint8_t)(a[i] >> (8 * j)));
}

/* PRF output longer than the rate crosses run_F; "more" continues one operation. */
static void test_strobe_continuation(void **state)
{
	struct strobe128 a, b;
	uint8_t x[400], y[400];

	(void)state;
	strobe128_init(&a, (const uint8_t *)"p", 1);
	strobe128_init(&b, (const uint8_t *)"p", 1);
	strobe128_ad(&a, (const uint8_t *)"hello world", 11, 0);
	strobe128_ad(&b, (const uint8_t *)"hello ", 6, 0);
	strobe128_ad(&b, (const uint8_t *)"world", 5, 1);
	strobe128_prf(&a, x, sizeof(x), 0);
	strobe128_prf(&b, y, 100, 0);
	strobe128_prf(&b, y + 100, 300, 1);
	assert_memory_equal(x, y, sizeof(x));
	/* a different split into operations is a different transcript */
	strobe128_init(&b, (const uint8_t *)"p", 1);
	strobe128_ad(&b, (const uint8_t *)"hello ", 6, 0);
	strobe128_ad(&b, (const uint8_t *)"world", 5, 0);
	strobe128_prf(&b, y, sizeof(y), 0);
	assert_memory_not_equal(x, y, sizeof(x));
	strobe128_wipe(&a);
	for (size_t i = 0; i < sizeof(a.st); i++)
		assert_int_equal(a.st[i], 0);
}

static void test_selftest(void **state)
{
	(void)state;
	assert_int_equal(merlin_selftest(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_state),
		cmocka_unit_test(test_sha3_empty),
		cmocka_unit_test(test_sha3_vs_openssl),
		cmocka_unit_test(test_bytes_matches_lanes),
		cmocka_unit_test(test_strobe_continuation),
		cmocka_unit_test(test_selftest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
