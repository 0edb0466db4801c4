/* SPDX-License-Identifier: Apache-2.0 */
/* enc_: hex, base64, BIP-173 bech32 (valid/invalid tables) and the Cosmos displays vs vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/enc.h"
#include "testutil.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_hex(void **state)
{
	static const uint8_t raw[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff };
	char s[17], small[16];
	uint8_t back[8];
	size_t n = 99;

	(void)state;
	assert_int_equal(enc_hex_encode(raw, sizeof(raw), s, sizeof(s)), KMS_OK);
	assert_string_equal(s, "00017f80abcdefff");
	assert_int_equal(enc_hex_encode_upper(raw, sizeof(raw), s, sizeof(s)), KMS_OK);
	assert_string_equal(s, "00017F80ABCDEFFF");
	assert_int_equal(enc_hex_encode(raw, sizeof(raw), small, sizeof(small)), KMS_ERR_NO_SPACE);
	assert_string_equal(small, "");
	assert_int_equal(enc_hex_decode("00017F80abCDefFF", 16, back, sizeof(back), &n), KMS_OK);
	assert_int_equal(n, 8);
	assert_memory_equal(back, raw, 8);
	assert_int_equal(enc_hex_decode("", 0, back, 0, &n), KMS_OK);
	assert_int_equal(n, 0);
	/* Rejections: odd length, each kind of bad character, no room. */
	assert_int_equal(enc_hex_decode("abc", 3, back, sizeof(back), &n), KMS_ERR_FORMAT);
	assert_int_equal(n, 0);
	static const char *bad[] = { "0g",
				     "g0",
				     "0G",
				     ":0",
				     "/0",
				     "@0",
				     "`0",
				     "0 ",
				     "x0",
				     "\xff"
				     "0" };
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		assert_int_equal(enc_hex_decode(bad[i], 2, back, sizeof(back), &n), KMS_ERR_FORMAT);
	assert_int_equal(enc_hex_decode("0a0b", 4, back, 1, &n), KMS_ERR_NO_SPACE);
	/* Every byte value round-trips. */
	for (int v = 0; v < 256; v++) {
		uint8_t b = (uint8_t)v, o;

		assert_int_equal(enc_hex_encode(&b, 1, s, sizeof(s)), KMS_OK);
		assert_int_equal(enc_hex_decode(s, 2, &o, 1, &n), KMS_OK);
		assert_int_equal(o, b);
	}
}

/* RFC 4648 §10 test vectors. */
static const struct {
	const char *raw, *b64;
} rfc4648[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

static void test_base64(void **state)
{
	char s[64];
	uint8_t out[64];
	size_t n;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(rfc4648); i++) {
		size_t len = strlen(rfc4648[i].raw);

		assert_int_equal(enc_base64_encoded_len(len), strlen(rfc4648[i].b64));
		assert_int_equal(
			enc_base64_encode((const uint8_t *)rfc4648[i].raw, len, s, sizeof(s)),
			KMS_OK);
		assert_string_equal(s, rfc4648[i].b64);
		assert_int_equal(enc_base64_decode(s, strlen(s), out, sizeof(out), &n), KMS_OK);
		assert_int_equal(n, len);
		assert_memory_equal(out, rfc4648[i].raw, len);
	}
	/* All 64 digits and every byte value. */
	{
		uint8_t all[256];

		for (int i = 0; i < 256; i++)
			all[i] = (uint8_t)i;
		char big[400];
		uint8_t back[256];

		assert_int_equal(enc_base64_encode(all, sizeof(all), big, sizeof(big)), KMS_OK);
		assert_int_equal(enc_base64_decode(big, strlen(big), back, sizeof(back), &n),
				 KMS_OK);
		assert_int_equal(n, 256);
		assert_memory_equal(back, all, 256);
		assert_int_equal(
			enc_base64_encode((const uint8_t *)"\xfb\xff\xbf", 3, s, sizeof(s)),
			KMS_OK);
		assert_string_equal(s, "+/+/");
	}
	/* Outer whitespace trimmed (tmkms key files end in a newline). */
	assert_int_equal(enc_base64_decode(" \tZm9v\r\n", 8, out, sizeof(out), &n), KMS_OK);
	assert_int_equal(n, 3);
	assert_memory_equal(out, "foo", 3);
	/* cap exactly the size; one less is NO_SPACE. */
	assert_int_equal(enc_base64_decode("Zm9vYg==", 8, out, 4, &n), KMS_OK);
	assert_int_equal(enc_base64_decode("Zm9vYg==", 8, out, 3, &n), KMS_ERR_NO_SPACE);
	assert_int_equal(enc_base64_encode((const uint8_t *)"foo", 3, s, 4), KMS_ERR_NO_SPACE);
	assert_string_equal(s, "");
	assert_int_equal(enc_base64_encode((const uint8_t *)"foo", 3, s, 5), KMS_OK);
}

static void test_base64_rejects(void **state)
{
	static const char *bad[] = {
		"Zm9",	      /* not a multiple of 4 */
		"Zm9vY",      /* 5 */
		"Zg",	      /* unpadded */
		"Zm 9v",      /* inner whitespace */
		"Zm9v\nYmFy", /* inner newline */
		"Zg=a",	      /* padding then data */
		"Z===",	      /* three pads */
		"====",	      /* only padding */
		"Zg==Zm9v",   /* padding in the middle */
		"Zm9v-_==",   /* URL-safe alphabet */
		"Zh==",	      /* non-zero trailing bits */
		"Zm9=",	      /* non-zero trailing bits */
		"Zm9v\x80",   /* high byte */
		"Z*9v",
	};
	uint8_t out[32];
	size_t n = 5;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int r = enc_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n);

		if (r != KMS_ERR_FORMAT)
			fail_msg("\"%s\" gave %d, want KMS_ERR_FORMAT", bad[i], r);
		assert_int_equal(n, 0);
	}
}

/* BIP-173 "Test vectors": valid bech32 strings, typed from the BIP. */
static const char *bip173_valid[] = {
	"A12UEL5L",
	"a12uel5l",
	"an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
	"abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
	"11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
	"split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
	"?1ezyfcl",
};

/* BIP-173 invalid bech32 strings (with the reason the BIP gives), plus our own. */
static const struct {
	const char *s;
	const char *why;
} bip173_invalid[] = {
	{ "\x20"
	  "1nwldj5",
	  "HRP character out of range" },
	{ "\x7f"
	  "1axkwrx",
	  "HRP character out of range" },
	{ "\x80"
	  "1eym55h",
	  "HRP character out of range" },
	{ "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
	  "overall max length exceeded" },
	{ "pzry9x0s0muk", "no separator character" },
	{ "1pzry9x0s0muk", "empty HRP" },
	{ "x1b4n0q5v", "invalid data character" },
	{ "li1dgmt3", "too short checksum" },
	{ "de1lg7wt\xff", "invalid character in checksum" },
	{ "A1G7SGD8", "checksum calculated with uppercase form of HRP" },
	{ "10a06t8", "empty HRP" },
	{ "1qzzfhee", "empty HRP" },
	/* Ours: mixed case, bad checksum, 8-bit conversion padding. */
	{ "A12uEL5L", "mixed case" },
	{ "a12uel5m", "checksum" },
	{ "a1qpamnt9j", "non-zero padding bits in 5-to-8 conversion" },
	{ "a1qqqd87cpp", "more than 4 padding bits" },
	{ "", "empty" },
};

static void test_bech32_bip173(void **state)
{
	char hrp[84];
	uint8_t data[100];
	size_t n;

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bip173_valid); i++) {
		const char *s = bip173_valid[i];
		const char *sep = strrchr(s, '1');
		char again[ENC_BECH32_MAX + 1], lower[ENC_BECH32_MAX + 1];
		int r = enc_bech32_decode(s, hrp, sizeof(hrp), data, sizeof(data), &n);

		if (r != KMS_OK)
			fail_msg("valid \"%s\" gave %d", s, r);
		assert_int_equal(strlen(hrp), (size_t)(sep - s));
		/* Re-encoding gives the lowercase original. */
		for (size_t j = 0; j <= strlen(s); j++)
			lower[j] = (char)((s[j] >= 'A' && s[j] <= 'Z') ? s[j] + 32 : s[j]);
		assert_int_equal(enc_bech32_encode(hrp, data, n, again, sizeof(again)), KMS_OK);
		assert_string_equal(again, lower);
	}
	for (size_t i = 0; i < ARRAY_LEN(bip173_invalid); i++) {
		int r = enc_bech32_decode(bip173_invalid[i].s, hrp, sizeof(hrp), data, sizeof(data),
					  &n);

		if (r == KMS_OK)
			fail_msg("invalid \"%s\" (%s) accepted", bip173_invalid[i].s,
				 bip173_invalid[i].why);
		assert_int_equal(n, 0);
		assert_string_equal(hrp, "");
	}
	/* The two padding cases' valid neighbours decode to the expected bytes. */
	assert_int_equal(enc_bech32_decode("a1qqqd87cq", hrp, sizeof(hrp), data, sizeof(data), &n),
			 KMS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(data[0], 0);
	assert_int_equal(enc_bech32_decode("a1lu9cgf6y", hrp, sizeof(hrp), data, sizeof(data), &n),
			 KMS_OK);
	assert_int_equal(n, 1);
	assert_int_equal(data[0], 0xff);
}

static void test_bech32_limits(void **state)
{
	uint8_t data[64] = { 0 };
	char out[ENC_BECH32_MAX + 1], hrp[84];
	size_t n;

	(void)state;
	/* hrp "a" + "1" + 6 checksum leaves 82 data chars = 51 bytes. */
	assert_int_equal(enc_bech32_encode("a", data, 51, out, sizeof(out)), KMS_OK);
	assert_int_equal(strlen(out), 90);
	assert_int_equal(enc_bech32_encode("a", data, 52, out, sizeof(out)), KMS_ERR_TOO_LARGE);
	assert_int_equal(enc_bech32_encode("a", data, 51, out, 90), KMS_ERR_NO_SPACE);
	assert_string_equal(out, "");
	assert_int_equal(enc_bech32_encode("", data, 1, out, sizeof(out)), KMS_ERR_FORMAT);
	assert_int_equal(enc_bech32_encode("a b", data, 1, out, sizeof(out)), KMS_ERR_FORMAT);
	/* Uppercase hrp is stored lowercase. */
	assert_int_equal(enc_bech32_encode("HAQQ", data, 1, out, sizeof(out)), KMS_OK);
	assert_int_equal(strncmp(out, "haqq1", 5), 0);
	/* Decoder: small output and hrp buffers. */
	assert_int_equal(enc_bech32_encode("haqq", data, 20, out, sizeof(out)), KMS_OK);
	assert_int_equal(enc_bech32_decode(out, hrp, 4, data, sizeof(data), &n), KMS_ERR_NO_SPACE);
	assert_int_equal(enc_bech32_decode(out, hrp, sizeof(hrp), data, 19, &n), KMS_ERR_NO_SPACE);
	assert_int_equal(enc_bech32_decode(out, hrp, 5, data, 20, &n), KMS_OK);
	assert_string_equal(hrp, "haqq");
	assert_int_equal(n, 20);
}

/* keys_and_addresses.json: upstream bech32 strings decode to prefix || key, and re-encode. */
static void test_bech32_vectors(void **state)
{
	json_t *v = tu_load_vector("keys_and_addresses.json");
	json_t *up = json_object_get(v, "upstream_bech32");
	json_t *prefixes = json_object_get(v, "amino_prefixes");
	size_t i;
	json_t *c;

	(void)state;
	assert_true(json_array_size(up) >= 3);
	json_array_foreach(up, i, c) {
		const char *s = tu_json_str(c, "bech32");
		const char *want_hrp = tu_json_str(c, "hrp");
		json_t *edk = json_object_get(c, "ed25519_pubkey_hex");
		json_t *secp = json_object_get(c, "secp256k1_pubkey_hex");
		json_t *derived = json_object_get(c, "decoded_ed25519_pubkey_hex (derived)");
		const char *keyhex = edk  ? json_string_value(edk) :
				     secp ? json_string_value(secp) :
					    json_string_value(derived);
		const char *prefix =
			tu_json_str(prefixes, secp ? "secp256k1_pubkey" : "ed25519_pubkey");
		uint8_t want[64], got[64];
		size_t wl, gl;
		char hrp[84], again[ENC_BECH32_MAX + 1];

		assert_non_null(keyhex);
		wl = tu_hex(prefix, want, sizeof(want));
		wl += tu_hex(keyhex, want + wl, sizeof(want) - wl);
		assert_int_equal(enc_bech32_decode(s, hrp, sizeof(hrp), got, sizeof(got), &gl),
				 KMS_OK);
		assert_string_equal(hrp, want_hrp);
		assert_int_equal(gl, wl);
		assert_memory_equal(got, want, wl);
		assert_int_equal(enc_bech32_encode(hrp, got, gl, again, sizeof(again)), KMS_OK);
		assert_string_equal(again, s);
		if (!secp) {
			assert_int_equal(
				enc_ed25519_bech32_pub(want_hrp, got + 5, again, sizeof(again)),
				KMS_OK);
			assert_string_equal(again, s);
		}
	}
	json_decref(v);
}

static void check_derived(const json_t *d)
{
	uint8_t pub[32], addr[20];
	char out[256], hexaddr[41];

	assert_int_equal(tu_hex(tu_json_str(d, "ed25519_pubkey_hex"), pub, sizeof(pub)), 32);
	assert_int_equal(enc_base64_encode(pub, 32, out, sizeof(out)), KMS_OK);
	assert_string_equal(out, tu_json_str(d, "ed25519_pubkey_base64"));
	assert_int_equal(enc_ed25519_address(pub, addr), KMS_OK);
	assert_int_equal(enc_hex_encode_upper(addr, 20, hexaddr, sizeof(hexaddr)), KMS_OK);
	assert_string_equal(hexaddr, tu_json_str(d, "address_hex_upper"));
	assert_int_equal(enc_hex_encode(addr, 20, hexaddr, sizeof(hexaddr)), KMS_OK);
	assert_string_equal(hexaddr, tu_json_str(d, "node_id_lower_hex"));
	assert_int_equal(enc_ed25519_bech32_pub("cosmosvalconspub", pub, out, sizeof(out)), KMS_OK);
	assert_string_equal(out, tu_json_str(d, "cosmosvalconspub"));
	assert_int_equal(enc_ed25519_bech32_pub("haqqvalconspub", pub, out, sizeof(out)), KMS_OK);
	assert_string_equal(out, tu_json_str(d, "haqqvalconspub"));
	assert_int_equal(enc_ed25519_bech32_addr("cosmosvalcons", pub, out, sizeof(out)), KMS_OK);
	assert_string_equal(out, tu_json_str(d, "cosmosvalcons"));
	assert_int_equal(enc_ed25519_bech32_addr("haqqvalcons", pub, out, sizeof(out)), KMS_OK);
	assert_string_equal(out, tu_json_str(d, "haqqvalcons"));
	assert_int_equal(enc_ed25519_cosmos_json(pub, out, sizeof(out)), KMS_OK);
	assert_string_equal(out, tu_json_str(d, "cosmos_json"));
	/* Too small an output: NO_SPACE and an empty string. */
	assert_int_equal(enc_ed25519_cosmos_json(pub, out, 50), KMS_ERR_NO_SPACE);
	assert_string_equal(out, "");
	assert_int_equal(enc_ed25519_bech32_pub("haqqvalconspub", pub, out, 30), KMS_ERR_NO_SPACE);
	assert_string_equal(out, "");
}

static void test_cosmos_displays(void **state)
{
	json_t *v = tu_load_vector("keys_and_addresses.json");
	json_t *pvk = json_object_get(v, "priv_validator_key_example");
	json_t *gen = json_object_get(v, "gen_priv_key_from_secret");
	json_t *jk = json_object_get(json_object_get(pvk, "json"), "pub_key");
	uint8_t pub[40];
	size_t n;

	(void)state;
	check_derived(json_object_get(pvk, "derived"));
	check_derived(json_object_get(gen, "derived"));
	/* The priv_validator_key.json pub_key value decodes to the same key. */
	assert_int_equal(enc_base64_decode(tu_json_str(jk, "value"),
					   strlen(tu_json_str(jk, "value")), pub, sizeof(pub), &n),
			 KMS_OK);
	assert_int_equal(n, 32);
	{
		char *hex = tu_to_hex(pub, 32);

		assert_string_equal(
			hex, tu_json_str(json_object_get(pvk, "derived"), "ed25519_pubkey_hex"));
		free(hex);
	}
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_base64_rejects),
		cmocka_unit_test(test_bech32_bip173),
		cmocka_unit_test(test_bech32_limits),
		cmocka_unit_test(test_bech32_vectors),
		cmocka_unit_test(test_cosmos_displays),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
