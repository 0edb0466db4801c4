/* SPDX-License-Identifier: Apache-2.0 */
/* keyfile_: tmkms softsign and priv_validator_key.json formats, expanded-key signing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "ed25519_exp.h"
#include "p11kms/enc.h"
#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "testutil.h"

struct vec {
	json_t *root;
	const char *seed_b64; /* tmkms softsign file content */
	char *json_text;      /* priv_validator_key.json */
	uint8_t seed[32], pub[32];
};

static void load_vec(struct vec *v)
{
	json_t *e;

	v->root = tu_load_vector("keys_and_addresses.json");
	e = json_object_get(v->root, "priv_validator_key_example");
	assert_non_null(e);
	v->seed_b64 = tu_json_str(e, "tmkms_softsign_key_file_base64 (derived)");
	v->json_text = json_dumps(json_object_get(e, "json"), JSON_INDENT(2));
	assert_non_null(v->json_text);
	assert_int_equal(tu_hex(tu_json_str(e, "seed_hex"), v->seed, 32), 32);
	assert_int_equal(tu_hex(tu_json_str(json_object_get(e, "derived"), "ed25519_pubkey_hex"),
				v->pub, 32),
			 32);
}

static void free_vec(struct vec *v)
{
	free(v->json_text);
	json_decref(v->root);
}

static int parse_str(const char *s, struct keyfile_ed25519 *k, char *why, size_t cap)
{
	return keyfile_parse((const uint8_t *)s, strlen(s), k, why, cap);
}

/* expanded = SHA-512(seed), as RFC 8032 §5.1.5 derives it (clamping is the signer's job). */
static void expand(const uint8_t seed[32], uint8_t exp[64])
{
	unsigned int n = 0;

	assert_int_equal(EVP_Digest(seed, 32, exp, &n, EVP_sha512(), NULL), 1);
	assert_int_equal(n, 64);
}

static char *b64(const uint8_t *p, size_t n)
{
	size_t cap = enc_base64_encoded_len(n) + 1;
	char *s = malloc(cap);

	assert_non_null(s);
	assert_int_equal(enc_base64_encode(p, n, s, cap), KMS_OK);
	return s;
}

static void test_seed_and_json_same_key(void **state)
{
	struct vec v;
	struct keyfile_ed25519 a, b;
	char why[256];
	uint8_t sa[64], sb[64];
	const char *msg = "same key, same signature";
	(void)state;

	load_vec(&v);
	assert_int_equal(parse_str(v.seed_b64, &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(a.kind, KEYFILE_SEED32);
	assert_true(a.has_seed);
	assert_memory_equal(a.seed, v.seed, 32);
	assert_memory_equal(a.pub, v.pub, 32);

	assert_int_equal(parse_str(v.json_text, &b, why, sizeof(why)), KMS_OK);
	assert_int_equal(b.kind, KEYFILE_PRIV_VALIDATOR_JSON);
	assert_memory_equal(b.pub, v.pub, 32);
	assert_memory_equal(b.seed, v.seed, 32);

	assert_int_equal(keyfile_sign(&a, (const uint8_t *)msg, strlen(msg), sa), KMS_OK);
	assert_int_equal(keyfile_sign(&b, (const uint8_t *)msg, strlen(msg), sb), KMS_OK);
	assert_memory_equal(sa, sb, 64);
	assert_int_equal(kcrypto_ed25519_verify(v.pub, (const uint8_t *)msg, strlen(msg), sa),
			 KMS_OK);

	/* trailing newline and surrounding blanks are trimmed, as tmkms does */
	{
		char buf[128];

		snprintf(buf, sizeof(buf), "  %s\n\n", v.seed_b64);
		assert_int_equal(parse_str(buf, &a, why, sizeof(why)), KMS_OK);
		assert_memory_equal(a.pub, v.pub, 32);
	}
	keyfile_wipe(&a);
	keyfile_wipe(&b);
	free_vec(&v);
}

/* Edits the example JSON: obj.key = value (string), then parses it. */
static int parse_edited(struct vec *v, const char *obj, const char *key, const char *value,
			char *why, size_t cap)
{
	json_t *e = json_object_get(v->root, "priv_validator_key_example");
	json_t *j = json_deep_copy(json_object_get(e, "json"));
	struct keyfile_ed25519 k;
	char *text;
	int r;

	assert_non_null(j);
	if (obj)
		assert_int_equal(
			json_object_set_new(json_object_get(j, obj), key, json_string(value)), 0);
	else if (value)
		assert_int_equal(json_object_set_new(j, key, json_string(value)), 0);
	else
		assert_int_equal(json_object_del(j, key), 0);
	text = json_dumps(j, 0);
	r = parse_str(text, &k, why, cap);
	if (r != KMS_OK) {
		static const uint8_t zero[sizeof(k)];
		assert_memory_equal(&k, zero, sizeof(k)); /* wiped on error */
	}
	free(text);
	json_decref(j);
	return r;
}

static void test_json_mismatch(void **state)
{
	struct vec v;
	char why[256];
	(void)state;

	load_vec(&v);
	/* another key's public key in pub_key */
	assert_int_equal(parse_edited(&v, "pub_key", "value",
				      "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", why,
				      sizeof(why)),
			 KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "pub_key.value"));
	assert_int_equal(
		parse_edited(&v, "pub_key", "type", "tendermint/PubKeySecp256k1", why, sizeof(why)),
		KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "pub_key.type"));
	assert_int_equal(parse_edited(&v, NULL, "address",
				      "A3258DCBF45DCA0DF052981870F2D1441A36D146", why, sizeof(why)),
			 KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "address"));
	/* lowercase address is the same address */
	assert_int_equal(parse_edited(&v, NULL, "address",
				      "a3258dcbf45dca0df052981870f2d1441a36d145", why, sizeof(why)),
			 KMS_OK);
	/* pub_key and address are optional */
	assert_int_equal(parse_edited(&v, NULL, "address", NULL, why, sizeof(why)), KMS_OK);
	assert_int_equal(parse_edited(&v, NULL, "pub_key", NULL, why, sizeof(why)), KMS_OK);
	/* seed || wrong pub inside priv_key.value (last byte changed) */
	assert_int_equal(
		parse_edited(
			&v, "priv_key", "value",
			"EVkqJO/jIXp3rkASXfh9YnyToYXRXhBr6g9cQVxPFnQBP/5povV4HTjvsy530kybxKHwEi85"
			"iU8YL0qQhSYVoA==",
			why, sizeof(why)),
		KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "priv_key.value"));
	/* 32-byte priv_key.value */
	assert_int_equal(parse_edited(&v, "priv_key", "value", v.seed_b64, why, sizeof(why)),
			 KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "64 bytes"));
	assert_int_equal(parse_edited(&v, "priv_key", "type", "tendermint/PrivKeySecp256k1", why,
				      sizeof(why)),
			 KMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(why, "PrivKeySecp256k1"));
	assert_int_equal(parse_edited(&v, NULL, "priv_key", NULL, why, sizeof(why)),
			 KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "priv_key"));
	free_vec(&v);
}

static void test_bad_inputs(void **state)
{
	static const struct {
		const char *in;
		int err;
		const char *why;
	} cases[] = {
		{ "", KMS_ERR_FORMAT, "empty" },
		{ "AAECAwQFBgcICQoLDA0ODw==", KMS_ERR_FORMAT, "16 bytes" },
		{ "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", KMS_ERR_FORMAT, "33 bytes" },
		{ "EVkqJO/jIXp3rkASXfh9YnyToYXRXhBr6g9cQVxPFnQ", KMS_ERR_FORMAT, "base64" },
		{ "EVkqJO/jIXp3rkASXfh9Yny ToYXRXhBr6g9cQVxPFnQ=", KMS_ERR_FORMAT, "base64" },
		{ "EVkqJO_jIXp3rkASXfh9YnyToYXRXhBr6g9cQVxPFnQ=", KMS_ERR_FORMAT, "base64" },
		{ "{\"priv_key\": ", KMS_ERR_FORMAT, "JSON" },
		{ "[1,2]", KMS_ERR_FORMAT, "base64" },
		{ "{}", KMS_ERR_FORMAT, "priv_key" },
		{ "{\"priv_key\":{\"type\":\"tendermint/PrivKeyEd25519\",\"value\":7}}",
		  KMS_ERR_FORMAT, "priv_key" },
		{ "{\"a\":1,\"a\":2}", KMS_ERR_FORMAT, "JSON" },
	};
	struct keyfile_ed25519 k;
	char why[256];
	uint8_t big[KEYFILE_MAX_SIZE + 1];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse_str(cases[i].in, &k, why, sizeof(why)), cases[i].err);
		if (!strstr(why, cases[i].why))
			fail_msg("case %zu: why=\"%s\" lacks \"%s\"", i, why, cases[i].why);
	}
	memset(big, 'A', sizeof(big));
	assert_int_equal(keyfile_parse(big, sizeof(big), &k, why, sizeof(why)), KMS_ERR_TOO_LARGE);
	/* no why buffer at all is fine */
	assert_int_equal(keyfile_parse((const uint8_t *)"x", 1, &k, NULL, 0), KMS_ERR_FORMAT);
}

/* The JSON layout (seed || pub) in a base64 file is refused, not misread. */
static void test_seed_pub_64_refused(void **state)
{
	struct vec v;
	struct keyfile_ed25519 k;
	char why[256];
	uint8_t raw[64];
	char *s;
	(void)state;

	load_vec(&v);
	memcpy(raw, v.seed, 32);
	memcpy(raw + 32, v.pub, 32);
	s = b64(raw, 64);
	assert_int_equal(parse_str(s, &k, why, sizeof(why)), KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "seed || public key"));
	free(s);
	free_vec(&v);
}

/* RFC 8032 §7.1 tests 1-3 (secret key = seed). */
static const struct {
	const char *seed, *pub, *msg, *sig;
} rfc8032[] = {
	{ "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
	  "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
	  "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25"
	  "bf5f0595bbe24655141438e7a100b" },
	{ "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
	  "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
	  "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387"
	  "b2eaeb4302aeeb00d291612bb0c00" },
	{ "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
	  "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
	  "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7"
	  "c15e9716ed28dc027beceea1ec40a" },
};

static void test_expanded_rfc8032(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rfc8032) / sizeof(rfc8032[0]); i++) {
		uint8_t seed[32], pub[32], exp[64], sig[64], want[64], msg[8], got[32];
		size_t mlen = tu_hex(rfc8032[i].msg, msg, sizeof(msg));
		struct keyfile_ed25519 k;
		char why[256], *s;

		tu_hex(rfc8032[i].seed, seed, 32);
		tu_hex(rfc8032[i].pub, pub, 32);
		tu_hex(rfc8032[i].sig, want, 64);
		expand(seed, exp);
		assert_int_equal(soft_ed25519_exp_pub(exp, got), KMS_OK);
		assert_memory_equal(got, pub, 32);
		assert_int_equal(soft_ed25519_exp_sign(exp, pub, msg, mlen, sig), KMS_OK);
		assert_memory_equal(sig, want, 64);

		/* the same through a 64-byte key file */
		s = b64(exp, 64);
		assert_int_equal(parse_str(s, &k, why, sizeof(why)), KMS_OK);
		assert_int_equal(k.kind, KEYFILE_EXPANDED64);
		assert_false(k.has_seed);
		assert_memory_equal(k.pub, pub, 32);
		assert_int_equal(keyfile_sign(&k, msg, mlen, sig), KMS_OK);
		assert_memory_equal(sig, want, 64);
		free(s);
	}
}

/* Expanded (64) and YubiHSM (96) keys sign exactly as OpenSSL does with the seed. */
static void test_expanded_matches_openssl(void **state)
{
	uint8_t msg[1500];
	(void)state;

	for (int i = 0; i < (int)sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7 + 3);
	for (int n = 0; n < 24; n++) {
		uint8_t seed[32], exp[64], y[96], s1[64], s2[64], s3[64];
		struct keyfile_ed25519 ks, ke, ky;
		size_t mlen = (size_t)(n * 61) % sizeof(msg);
		char why[256], *a, *b, *c;

		assert_int_equal(kcrypto_random(seed, 32), KMS_OK);
		if (n == 0)
			memset(seed, 0, 32);
		if (n == 1)
			memset(seed, 0xff, 32);
		expand(seed, exp);
		for (int j = 0; j < 32; j++)
			y[j] = exp[31 - j];
		memcpy(y + 32, exp + 32, 32);
		a = b64(seed, 32);
		assert_int_equal(parse_str(a, &ks, why, sizeof(why)), KMS_OK);
		memcpy(y + 64, ks.pub, 32);
		b = b64(exp, 64);
		c = b64(y, 96);
		assert_int_equal(parse_str(b, &ke, why, sizeof(why)), KMS_OK);
		assert_int_equal(parse_str(c, &ky, why, sizeof(why)), KMS_OK);
		assert_int_equal(ky.kind, KEYFILE_YUBIHSM96);
		assert_memory_equal(ke.pub, ks.pub, 32);
		assert_memory_equal(ky.pub, ks.pub, 32);
		assert_int_equal(keyfile_sign(&ks, msg, mlen, s1), KMS_OK);
		assert_int_equal(keyfile_sign(&ke, msg, mlen, s2), KMS_OK);
		assert_int_equal(keyfile_sign(&ky, msg, mlen, s3), KMS_OK);
		assert_memory_equal(s1, s2, 64);
		assert_memory_equal(s1, s3, 64);
		assert_int_equal(kcrypto_ed25519_verify(ks.pub, msg, mlen, s2), KMS_OK);

		/* a YubiHSM export whose public key does not match is refused */
		free(c);
		y[95] ^= 1;
		c = b64(y, 96);
		assert_int_equal(parse_str(c, &ky, why, sizeof(why)), KMS_ERR_FORMAT);
		assert_non_null(strstr(why, "does not match"));
		free(a);
		free(b);
		free(c);
	}
}

static void test_files(void **state)
{
	struct vec v;
	char *dir = tu_mkdtemp();
	char *p1 = tu_path(dir, "seed.key"), *p2 = tu_path(dir, "priv_validator_key.json");
	char *p3 = tu_path(dir, "open.key"), *p4 = tu_path(dir, "new.key");
	struct keyfile_ed25519 k;
	struct stat st;
	char why[256], buf[128];
	FILE *f;
	size_t n;
	(void)state;

	load_vec(&v);
	tu_write_file(p1, v.seed_b64, strlen(v.seed_b64), 0600);
	tu_write_file(p2, v.json_text, strlen(v.json_text), 0400);
	tu_write_file(p3, v.seed_b64, strlen(v.seed_b64), 0644);

	assert_int_equal(keyfile_load(p1, &k), KMS_OK);
	assert_memory_equal(k.pub, v.pub, 32);
	assert_int_equal(keyfile_load(p2, &k), KMS_OK);
	assert_memory_equal(k.pub, v.pub, 32);
	assert_int_equal(keyfile_load_quiet(p2, &k, why, sizeof(why)), KMS_OK);
	assert_memory_equal(k.pub, v.pub, 32);

	/* group/world access refused, the message names file and mode */
	tu_log_capture_start();
	assert_int_equal(keyfile_load(p3, &k), KMS_ERR_PERM);
	assert_true(tu_log_contains("0644"));
	assert_true(tu_log_contains(p3));
	tu_log_capture_stop();
	assert_int_equal(keyfile_load_quiet(p3, &k, why, sizeof(why)), KMS_ERR_PERM);
	assert_non_null(strstr(why, "0644"));
	assert_int_equal(keyfile_load_quiet(dir, &k, why, sizeof(why)), KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "regular"));
	{
		char *missing = tu_path(dir, "missing.key");

		assert_int_equal(keyfile_load_quiet(missing, &k, why, sizeof(why)),
				 KMS_ERR_NOT_FOUND);
		free(missing);
	}

	/* keyfile_write_seed: tmkms format (bare base64, no newline), 0600, no overwrite */
	assert_int_equal(keyfile_write_seed(p4, v.seed), KMS_OK);
	assert_int_equal(stat(p4, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	f = fopen(p4, "rb");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_int_equal(n, strlen(v.seed_b64));
	assert_memory_equal(buf, v.seed_b64, n);
	tu_log_capture_start();
	assert_int_equal(keyfile_write_seed(p4, v.seed), KMS_ERR_EXISTS);
	tu_log_capture_stop();
	assert_int_equal(keyfile_load(p4, &k), KMS_OK);
	assert_memory_equal(k.pub, v.pub, 32);

	keyfile_wipe(&k);
	tu_rmrf(dir);
	free(p1);
	free(p2);
	free(p3);
	free(p4);
	free(dir);
	free_vec(&v);
}

static void test_ids(void **state)
{
	struct vec v;
	uint8_t id[KEYFILE_CKA_ID_LEN], h[32];
	char serial[KEYFILE_SERIAL_LEN + 1];
	(void)state;

	load_vec(&v);
	assert_int_equal(keyfile_cka_id(v.pub, id), KMS_OK);
	assert_int_equal(kcrypto_sha256(v.pub, 32, h), KMS_OK);
	assert_memory_equal(id, h, KEYFILE_CKA_ID_LEN);
	assert_int_equal(keyfile_token_serial("/var/lib/p11kms/keys", serial), KMS_OK);
	assert_int_equal(strlen(serial), 16);
	assert_int_equal(kcrypto_sha256((const uint8_t *)"/var/lib/p11kms/keys", 20, h), KMS_OK);
	{
		char *hex = tu_to_hex(h, 8);

		assert_string_equal(serial, hex);
		free(hex);
	}
	assert_string_equal(keyfile_kind_name(KEYFILE_YUBIHSM96), "yubihsm96");
	free_vec(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_and_json_same_key),
		cmocka_unit_test(test_json_mismatch),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_seed_pub_64_refused),
		cmocka_unit_test(test_expanded_rfc8032),
		cmocka_unit_test(test_expanded_matches_openssl),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_ids),
	};

	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
