/* SPDX-License-Identifier: Apache-2.0 */
/* kbuf: caps, views, integers, uvarint edge cases, length-prefixed bytes, growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "testutil.h"

static void test_cap(void **state)
{
	struct kbuf *b = kbuf_new(8);
	uint8_t *dst;

	(void)state;
	assert_non_null(b);
	assert_int_equal(kbuf_max(b), 8);
	assert_int_equal(kbuf_put(b, "abcdef", 6), KMS_OK);
	/* 6 + 3 > 8: fails and appends nothing. */
	assert_int_equal(kbuf_put(b, "xyz", 3), KMS_ERR_NO_SPACE);
	assert_int_equal(kbuf_len(b), 6);
	assert_int_equal(kbuf_put_u32le(b, 1), KMS_ERR_NO_SPACE);
	assert_int_equal(kbuf_put(b, "gh", 2), KMS_OK);
	assert_int_equal(kbuf_put_u8(b, 0), KMS_ERR_NO_SPACE);
	assert_memory_equal(kbuf_ptr(b), "abcdefgh", 8);
	assert_int_equal(kbuf_reserve(b, 1, &dst), KMS_ERR_NO_SPACE);
	assert_null(dst);
	/* Consuming frees capacity: the cap is on bytes held. */
	assert_int_equal(kbuf_consume(b, 4), KMS_OK);
	assert_int_equal(kbuf_put(b, "ijkl", 4), KMS_OK);
	assert_memory_equal(kbuf_ptr(b), "efghijkl", 8);
	assert_int_equal(kbuf_consume(b, 9), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_consume_end(b, 9), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_consume_end(b, 2), KMS_OK);
	assert_memory_equal(kbuf_ptr(b), "efghij", 6);
	kbuf_reset(b);
	assert_int_equal(kbuf_len(b), 0);
	assert_int_equal(kbuf_max(b), 8);
	kbuf_free(b);
	kbuf_free(NULL);
}

static void test_zero_cap(void **state)
{
	struct kbuf *b = kbuf_new(0);
	uint8_t *dst;

	(void)state;
	assert_int_equal(kbuf_put(b, "a", 1), KMS_ERR_NO_SPACE);
	assert_int_equal(kbuf_put(b, NULL, 0), KMS_OK);
	assert_int_equal(kbuf_reserve(b, 0, &dst), KMS_OK);
	assert_int_equal(kbuf_put_lenprefixed(b, "", 0), KMS_ERR_NO_SPACE);
	assert_int_equal(kbuf_len(b), 0);
	kbuf_free(b);
}

static void test_view_read_only(void **state)
{
	static const uint8_t data[] = { 1, 2, 3, 4, 5 };
	struct kbuf *v = kbuf_from(data, sizeof(data));
	uint8_t *dst = (uint8_t *)1;
	uint8_t x;

	(void)state;
	assert_non_null(v);
	assert_int_equal(kbuf_len(v), 5);
	assert_ptr_equal(kbuf_ptr(v), data); /* borrowed, not copied */
	assert_int_equal(kbuf_put_u8(v, 9), KMS_ERR_INTERNAL);
	assert_int_equal(kbuf_reserve(v, 1, &dst), KMS_ERR_INTERNAL);
	assert_null(dst);
	assert_int_equal(kbuf_put_lenprefixed(v, "a", 1), KMS_ERR_INTERNAL);
	assert_int_equal(kbuf_get_u8(v, &x), KMS_OK);
	assert_int_equal(x, 1);
	assert_int_equal(kbuf_consume_end(v, 1), KMS_OK);
	assert_int_equal(kbuf_len(v), 3);
	assert_memory_equal(kbuf_ptr(v), data + 1, 3);
	kbuf_free(v);
	/* The view never wrote to the borrowed bytes. */
	assert_int_equal(data[4], 5);
}

static void test_integers(void **state)
{
	struct kbuf *b = kbuf_new(64);
	static const uint8_t want[] = { 0x04, 0x03, 0x02, 0x01, 0x01, 0x02, 0x03, 0x04, 0x08,
					0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x01, 0x02,
					0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xfe };
	uint32_t a, c;
	uint64_t d, e;
	uint8_t f;

	(void)state;
	assert_int_equal(kbuf_put_u32le(b, 0x01020304), KMS_OK);
	assert_int_equal(kbuf_put_u32be(b, 0x01020304), KMS_OK);
	assert_int_equal(kbuf_put_u64le(b, 0x0102030405060708ULL), KMS_OK);
	assert_int_equal(kbuf_put_u64be(b, 0x0102030405060708ULL), KMS_OK);
	assert_int_equal(kbuf_put_u8(b, 0xfe), KMS_OK);
	assert_int_equal(kbuf_len(b), sizeof(want));
	assert_memory_equal(kbuf_ptr(b), want, sizeof(want));
	assert_int_equal(kbuf_get_u32le(b, &a), KMS_OK);
	assert_int_equal(kbuf_get_u32be(b, &c), KMS_OK);
	assert_int_equal(kbuf_get_u64le(b, &d), KMS_OK);
	assert_int_equal(kbuf_get_u64be(b, &e), KMS_OK);
	assert_int_equal(a, 0x01020304);
	assert_int_equal(c, 0x01020304);
	assert_true(d == 0x0102030405060708ULL);
	assert_true(e == 0x0102030405060708ULL);
	/* One byte left: a u32 read fails and leaves it there. */
	assert_int_equal(kbuf_get_u32le(b, &a), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_get_u64be(b, &d), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_len(b), 1);
	assert_int_equal(kbuf_get_u8(b, &f), KMS_OK);
	assert_int_equal(f, 0xfe);
	assert_int_equal(kbuf_get_u8(b, &f), KMS_ERR_INCOMPLETE);
	kbuf_free(b);
}

struct uv_case {
	uint64_t v;
	const char *hex;
};

static const struct uv_case uv_cases[] = {
	{ 0, "00" },
	{ 1, "01" },
	{ 127, "7f" },
	{ 128, "8001" },
	{ 300, "ac02" },
	{ 16383, "ff7f" },
	{ 16384, "808001" },
	{ 0xffffffffULL, "ffffffff0f" },
	{ 1ULL << 63, "80808080808080808001" },
	{ UINT64_MAX, "ffffffffffffffffff01" },
};

static void test_uvarint_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(uv_cases) / sizeof(uv_cases[0]); i++) {
		uint8_t enc[16];
		size_t n = tu_hex(uv_cases[i].hex, enc, sizeof(enc)), nb;
		struct kbuf *b = kbuf_new(16);
		uint64_t v;

		assert_int_equal(kbuf_put_uvarint(b, uv_cases[i].v), KMS_OK);
		assert_int_equal(kbuf_len(b), n);
		assert_memory_equal(kbuf_ptr(b), enc, n);
		assert_int_equal(kbuf_peek_uvarint(b, &v, &nb), KMS_OK);
		assert_int_equal(nb, n);
		assert_true(v == uv_cases[i].v);
		assert_int_equal(kbuf_len(b), n);
		assert_int_equal(kbuf_get_uvarint(b, &v), KMS_OK);
		assert_true(v == uv_cases[i].v);
		assert_int_equal(kbuf_len(b), 0);
		kbuf_free(b);
	}
}

static int uv_decode(const char *hex, uint64_t *v, size_t *left)
{
	uint8_t raw[32];
	size_t n = tu_hex(hex, raw, sizeof(raw));
	struct kbuf *b = kbuf_from(raw, n);
	int r = kbuf_get_uvarint(b, v);

	*left = kbuf_len(b);
	kbuf_free(b);
	return r;
}

static void test_uvarint_rejects(void **state)
{
	uint64_t v;
	size_t left;

	(void)state;
	/* Non-minimal but 10 bytes: accepted as protobuf does. */
	assert_int_equal(uv_decode("80808080808080808000", &v, &left), KMS_OK);
	assert_true(v == 0);
	/* 10th byte with bit 1 set: over 2^64-1. */
	assert_int_equal(uv_decode("ffffffffffffffffff02", &v, &left), KMS_ERR_FORMAT);
	assert_int_equal(left, 10);
	assert_int_equal(uv_decode("ffffffffffffffffff7f", &v, &left), KMS_ERR_FORMAT);
	/* 11 bytes (10th has the continuation bit). */
	assert_int_equal(uv_decode("ffffffffffffffffff8101", &v, &left), KMS_ERR_FORMAT);
	assert_int_equal(left, 11);
	assert_int_equal(uv_decode("8080808080808080808000", &v, &left), KMS_ERR_FORMAT);
	/* Ends inside the varint: INCOMPLETE, nothing consumed. */
	assert_int_equal(uv_decode("80", &v, &left), KMS_ERR_INCOMPLETE);
	assert_int_equal(left, 1);
	assert_int_equal(uv_decode("ffffffffffffffffff", &v, &left), KMS_ERR_INCOMPLETE);
	assert_int_equal(left, 9);
	assert_int_equal(uv_decode("", &v, &left), KMS_ERR_INCOMPLETE);
	assert_true(v == 0);
}

static void test_incomplete_then_complete(void **state)
{
	struct kbuf *b = kbuf_new(64);
	uint64_t v = 99;

	(void)state;
	/* Framing: bytes arrive one at a time; the cursor only moves on success. */
	assert_int_equal(kbuf_put_u8(b, 0xac), KMS_OK);
	assert_int_equal(kbuf_get_uvarint(b, &v), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_len(b), 1);
	assert_int_equal(kbuf_put_u8(b, 0x02), KMS_OK);
	assert_int_equal(kbuf_get_uvarint(b, &v), KMS_OK);
	assert_int_equal(v, 300);
	assert_int_equal(kbuf_len(b), 0);
	kbuf_free(b);
}

static void test_lenprefixed(void **state)
{
	struct kbuf *b = kbuf_new(300);
	uint8_t payload[300];
	const uint8_t *p;
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	assert_int_equal(kbuf_put_lenprefixed(b, payload, 200), KMS_OK);
	assert_int_equal(kbuf_len(b), 202);
	assert_int_equal(kbuf_ptr(b)[0], 0xc8);
	assert_int_equal(kbuf_ptr(b)[1], 0x01);
	/* Over max: TOO_LARGE, nothing consumed. */
	assert_int_equal(kbuf_get_lenprefixed_direct(b, &p, &len, 199), KMS_ERR_TOO_LARGE);
	assert_null(p);
	assert_int_equal(len, 0);
	assert_int_equal(kbuf_len(b), 202);
	assert_int_equal(kbuf_get_lenprefixed_direct(b, &p, &len, 200), KMS_OK);
	assert_int_equal(len, 200);
	assert_memory_equal(p, payload, 200);
	assert_int_equal(kbuf_len(b), 0);
	/* Record does not fit: fails without writing the length. */
	assert_int_equal(kbuf_put_lenprefixed(b, payload, 299), KMS_ERR_NO_SPACE);
	assert_int_equal(kbuf_len(b), 0);
	assert_int_equal(kbuf_put_lenprefixed(b, payload, 298), KMS_OK);
	assert_int_equal(kbuf_len(b), 300);
	kbuf_free(b);
}

static void test_lenprefixed_too_large_before_incomplete(void **state)
{
	/* Claims 2^40 bytes with none present: TOO_LARGE, not INCOMPLETE (no waiting, no alloc). */
	uint8_t raw[8];
	size_t n = tu_hex("808080808020", raw, sizeof(raw)), len = 7;
	struct kbuf *v = kbuf_from(raw, n);
	const uint8_t *p = raw;

	(void)state;
	assert_int_equal(kbuf_get_lenprefixed_direct(v, &p, &len, 1 << 20), KMS_ERR_TOO_LARGE);
	assert_null(p);
	assert_int_equal(len, 0);
	assert_int_equal(kbuf_len(v), n);
	kbuf_free(v);
	/* A short length prefix is INCOMPLETE and a short body too. */
	n = tu_hex("0561", raw, sizeof(raw));
	v = kbuf_from(raw, n);
	assert_int_equal(kbuf_get_lenprefixed_direct(v, &p, &len, 10), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_len(v), 2);
	kbuf_free(v);
}

static void test_growth(void **state)
{
	struct kbuf *b = kbuf_new(1 << 20);
	uint8_t chunk[97];

	(void)state;
	/* Many appends, interleaved with consumes, force both compaction and reallocation. */
	for (uint32_t i = 0; i < 2000; i++) {
		for (size_t j = 0; j < sizeof(chunk); j++)
			chunk[j] = (uint8_t)(i + j);
		assert_int_equal(kbuf_put(b, chunk, sizeof(chunk)), KMS_OK);
		if (i % 3 == 0)
			assert_int_equal(kbuf_consume(b, 50), KMS_OK);
	}
	/* Verify the remaining stream equals what a model says. */
	{
		size_t total = 2000 * sizeof(chunk), dropped = 667 * 50;
		size_t pos = dropped;

		assert_int_equal(kbuf_len(b), total - dropped);
		for (size_t k = 0; k < kbuf_len(b); k++, pos++) {
			uint32_t i = (uint32_t)(pos / sizeof(chunk));
			size_t j = pos % sizeof(chunk);

			if (kbuf_ptr(b)[k] != (uint8_t)(i + j))
				fail_msg("byte %zu: got %u want %u", k, kbuf_ptr(b)[k],
					 (unsigned)(uint8_t)(i + j));
		}
	}
	kbuf_free(b);
}

static void test_reserve_direct_putb(void **state)
{
	struct kbuf *a = kbuf_new(32), *b = kbuf_new(32);
	uint8_t *dst;
	const uint8_t *p;
	uint8_t out[4];

	(void)state;
	assert_int_equal(kbuf_reserve(a, 4, &dst), KMS_OK);
	memcpy(dst, "wxyz", 4);
	assert_int_equal(kbuf_putb(b, a), KMS_OK);
	assert_int_equal(kbuf_putb(b, a), KMS_OK);
	assert_int_equal(kbuf_len(a), 4);
	assert_int_equal(kbuf_len(b), 8);
	assert_int_equal(kbuf_putb(b, b), KMS_ERR_INTERNAL);
	assert_int_equal(kbuf_get_bytes_direct(b, &p, 9), KMS_ERR_INCOMPLETE);
	assert_null(p);
	assert_int_equal(kbuf_get_bytes_direct(b, &p, 5), KMS_OK);
	assert_memory_equal(p, "wxyzw", 5);
	assert_int_equal(kbuf_get(b, out, 4), KMS_ERR_INCOMPLETE);
	assert_int_equal(kbuf_get(b, out, 3), KMS_OK);
	assert_memory_equal(out, "xyz", 3);
	assert_int_equal(kbuf_len(b), 0);
	kbuf_free(a);
	kbuf_free(b);
}

/* kbuf_putf: short text through the stack buffer, long text (past 256 bytes) whole. */
static void test_putf(void **state)
{
	char long_s[600];
	(void)state;
	memset(long_s, 'x', sizeof(long_s) - 1);
	long_s[sizeof(long_s) - 1] = '\0';
	struct kbuf *b = kbuf_new(4096);
	assert_non_null(b);
	assert_int_equal(kbuf_putf(b, "h=%d %s;", 42, "ok"), KMS_OK);
	assert_int_equal(kbuf_putf(b, "%s", long_s), KMS_OK);
	assert_int_equal(kbuf_len(b), strlen("h=42 ok;") + strlen(long_s));
	assert_memory_equal(kbuf_ptr(b), "h=42 ok;", 8);
	assert_memory_equal((const char *)kbuf_ptr(b) + 8, long_s, strlen(long_s));
	kbuf_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_zero_cap),
		cmocka_unit_test(test_view_read_only),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_uvarint_roundtrip),
		cmocka_unit_test(test_uvarint_rejects),
		cmocka_unit_test(test_incomplete_then_complete),
		cmocka_unit_test(test_lenprefixed),
		cmocka_unit_test(test_lenprefixed_too_large_before_incomplete),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_reserve_direct_putb),
		cmocka_unit_test(test_putf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
