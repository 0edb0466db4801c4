/* SPDX-License-Identifier: Apache-2.0 */
/* slot_ against a real SoftHSM2 token: URIs, PINs, keygen/import, sign, hygiene, recovery. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tu_softhsm.h"
#include "slot_int.h" /* test_sign_timeout holds the module lock */

#define PIN_A "87654321"
#define PIN_B "11223344"

static struct tu_softhsm hsm;
static char *pin_a, *pin_b, *pin_wrong, *pin_open, *uri_a, *uri_b;
static char *profiles_dir;

static char *write_pin(const char *name, const char *pin, unsigned mode)
{
	char *p = tu_path(hsm.dir, name);
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%s\n", pin); /* trailing newline is trimmed */
	tu_write_file(p, buf, (size_t)n, mode);
	chmod(p, mode);
	return p;
}

static char *make_uri(const char *token, const char *pinfile, const char *extra)
{
	char *u = malloc(2048);
	snprintf(u, 2048, "pkcs11:token=%s%s%s?module-path=%s&pin-source=%s", token,
		 extra ? ";" : "", extra ? extra : "", hsm.module, pinfile);
	return u;
}

static int group_setup(void **state)
{
	static const char tiny[] = "name = \"tiny\";\nmax_sign_input = 100;\nec_point = \"der\";\n"
				   "allow_keygen = false;\nallow_import = false;\n"
				   "quirks = [\"no-deinit\"];\n";
	char *p;
	(void)state;
	tu_softhsm_setup(&hsm);
	tu_softhsm_add_token(&hsm, "p11kms-a", "so-a-1234", PIN_A);
	tu_softhsm_add_token(&hsm, "p11kms-b", "so-b-1234", PIN_B);
	pin_a = write_pin("a.pin", PIN_A, 0600);
	pin_b = write_pin("b.pin", PIN_B, 0600);
	pin_wrong = write_pin("wrong.pin", "00000000", 0600);
	pin_open = write_pin("open.pin", PIN_A, 0644);
	uri_a = make_uri("p11kms-a", pin_a, NULL);
	uri_b = make_uri("p11kms-b", pin_b, NULL);
	/* Profiles: the source tree's plus a tiny one for the input-limit test. */
	profiles_dir = tu_path(hsm.dir, "profiles");
	mkdir(profiles_dir, 0700);
	p = tu_path(profiles_dir, "tiny.conf");
	tu_write_file(p, tiny, sizeof(tiny) - 1, 0644);
	free(p);
	kms_log_set_level(KMS_LOG_DEBUG);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	slot_shutdown();
	tu_softhsm_teardown(&hsm);
	free(pin_a), free(pin_b), free(pin_wrong), free(pin_open), free(uri_a), free(uri_b);
	free(profiles_dir);
	return 0;
}

static void test_uri_rules(void **state)
{
	char bad[512];
	(void)state;
	assert_int_equal(slot_uri_validate(uri_a), KMS_OK);
	assert_int_equal(slot_uri_validate("pkcs11:token=x?pin-value=1234&module-path=/x.so"),
			 KMS_ERR_FORMAT);
	assert_int_equal(slot_uri_validate("pkcs11:token=x;type=public?module-path=/x.so"),
			 KMS_ERR_FORMAT);
	assert_int_equal(slot_uri_validate("pkcs11:token=x;bogus=1"), KMS_ERR_FORMAT);
	assert_int_equal(slot_uri_validate("http://x"), KMS_ERR_FORMAT);
	assert_int_equal(slot_uri_validate("pkcs11:token=x?pin-source=relative/pin"),
			 KMS_ERR_FORMAT);
	/* No module anywhere: a config error, named before anything is loaded. */
	struct slot *s = NULL;
	assert_int_equal(slot_open("pkcs11:token=p11kms-a", NULL, &s), KMS_ERR_CONFIG);
	assert_null(s);
	/* The profile's module_paths are searched when the URI names no module. */
	struct slot_opts o = { .profile = "softhsm2" };
	snprintf(bad, sizeof(bad), "pkcs11:token=p11kms-a;object=nope?pin-source=%s", pin_a);
	tu_log_capture_start();
	assert_int_equal(slot_open(bad, &o, &s), KMS_ERR_NOT_FOUND);
	assert_true(tu_log_contains("no private key matches")); /* module, token and login worked */
	tu_log_capture_stop();
	/* module-name: p11-kit's registry (Debian registers softhsm2), else lib<name>.so. */
	snprintf(bad, sizeof(bad),
		 "pkcs11:token=p11kms-a;object=nope?module-name=softhsm2&"
		 "pin-source=%s",
		 pin_a);
	tu_log_capture_start();
	assert_int_equal(slot_open(bad, NULL, &s), KMS_ERR_NOT_FOUND);
	assert_true(tu_log_contains("no private key matches"));
	tu_log_capture_stop();
	assert_int_equal(slot_open("pkcs11:token=x?module-name=no-such-module", NULL, &s),
			 KMS_ERR_NOT_FOUND);
}

static void test_missing_token(void **state)
{
	struct slot *s = NULL;
	char *u = make_uri("no-such-token", pin_a, NULL);
	(void)state;
	tu_log_capture_start();
	assert_int_equal(slot_open(u, NULL, &s), KMS_ERR_NOT_FOUND);
	assert_true(tu_log_contains("no token matches"));
	assert_true(tu_log_contains("p11kms-a")); /* the tokens present are listed */
	tu_log_capture_stop();
	assert_null(s);
	free(u);
}

static void test_ambiguous_token(void **state)
{
	struct slot *s = NULL;
	char u[1024];
	(void)state;
	snprintf(u, sizeof(u), "pkcs11:model=SoftHSM%%20v2?module-path=%s&pin-source=%s",
		 hsm.module, pin_a);
	tu_log_capture_start();
	assert_int_equal(slot_open(u, NULL, &s), KMS_ERR_AMBIGUOUS);
	assert_true(tu_log_contains("candidate"));
	tu_log_capture_stop();
}

static void test_pin_errors(void **state)
{
	struct slot *s = NULL;
	char *u;
	(void)state;
	u = make_uri("p11kms-a", pin_wrong, NULL);
	tu_log_capture_start();
	assert_int_equal(slot_open(u, NULL, &s), KMS_ERR_PIN_INCORRECT);
	assert_true(tu_log_contains("PIN incorrect"));
	tu_log_capture_stop();
	free(u);
	u = make_uri("p11kms-a", pin_open, NULL);
	tu_log_capture_start();
	assert_int_equal(slot_open(u, NULL, &s), KMS_ERR_PERM);
	assert_true(tu_log_contains("0644"));
	tu_log_capture_stop();
	free(u);
	/* PIN from the environment when the URI has no pin-source. */
	char env_uri[1024];
	snprintf(env_uri, sizeof(env_uri), "pkcs11:token=p11kms-a;object=none?module-path=%s",
		 hsm.module);
	struct slot_opts o = { .pin_env = "P11KMS_TEST_PIN" };
	unsetenv("P11KMS_TEST_PIN");
	assert_int_equal(slot_open(env_uri, &o, &s), KMS_ERR_NOT_FOUND); /* variable unset */
	setenv("P11KMS_TEST_PIN", "bad", 1);
	assert_int_equal(slot_open(env_uri, &o, &s), KMS_ERR_PIN_INCORRECT);
	setenv("P11KMS_TEST_PIN", PIN_A, 1);
	assert_int_equal(slot_open(env_uri, &o, &s), KMS_ERR_NOT_FOUND); /* logged in: no key */
	unsetenv("P11KMS_TEST_PIN");
}

static int contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle), i, j;
	for (i = 0; hay[i]; i++) {
		for (j = 0; j < n && hay[i + j]; j++) {
			char a = hay[i + j], b = needle[j];
			if (a >= 'A' && a <= 'Z')
				a = (char)(a - 'A' + 'a');
			if (b >= 'A' && b <= 'Z')
				b = (char)(b - 'A' + 'a');
			if (a != b)
				break;
		}
		if (j == n)
			return 1;
	}
	return 0;
}

static const uint8_t msg[] = "\x08\x02\x11\x0c\x00\x00\x00\x00\x00\x00\x00 vote sign-bytes";

static void test_keygen_sign_verify(void **state)
{
	struct slot *s = NULL;
	char *key_uri = NULL, *again = NULL;
	uint8_t pub[32], pub2[32], sig[64];
	struct slot_hygiene hy;
	(void)state;

	assert_int_equal(slot_keygen(uri_a, "gen-key", NULL, &key_uri, pub), KMS_OK);
	assert_non_null(key_uri);
	assert_non_null(strstr(key_uri, "object=gen-key"));
	assert_non_null(strstr(key_uri, "type=private"));
	assert_null(strstr(key_uri, PIN_A));
	/* The same label again is refused. */
	assert_int_equal(slot_keygen(uri_a, "gen-key", NULL, &again, pub2), KMS_ERR_EXISTS);
	assert_null(again);

	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	assert_string_equal(slot_profile_name(s), "softhsm2");
	assert_int_equal(slot_key_type(s), SLOT_KEY_ED25519);
	slot_pubkey(s, pub2);
	assert_memory_equal(pub, pub2, 32);
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig), KMS_OK);
	sig[0] ^= 1;
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig), KMS_ERR_AUTH);

	assert_int_equal(slot_hygiene(s, &hy), KMS_OK);
	assert_int_equal(hy.sensitive, 1);
	assert_int_equal(hy.extractable, 0);
	assert_int_equal(hy.local, 1);
	assert_int_equal(hy.never_extractable, 1);
	assert_string_equal(hy.verdict, "generated on token, never extractable");
	assert_null(strstr(slot_describe(s), PIN_A));
	slot_free(s);
	free(key_uri);
}

static void test_import_deterministic(void **state)
{
	uint8_t seed[32], pub[32], want_pub[32], sig[64], want[64];
	char *key_uri = NULL;
	struct slot *s = NULL;
	struct slot_hygiene hy;
	size_t i;
	(void)state;
	for (i = 0; i < 32; i++)
		seed[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, want_pub), KMS_OK);
	assert_int_equal(slot_import_ed25519(uri_a, "imported", seed, NULL, &key_uri, pub), KMS_OK);
	assert_memory_equal(pub, want_pub, 32);
	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_sign(seed, msg, sizeof(msg) - 1, want), KMS_OK);
	assert_memory_equal(sig, want, 64); /* Ed25519 is deterministic */
	assert_int_equal(slot_hygiene(s, &hy), KMS_OK);
	assert_int_equal(hy.sensitive, 1);
	assert_int_equal(hy.extractable, 0);
	assert_int_equal(hy.local, 0);
	assert_string_equal(
		hy.verdict,
		"imported: sensitive and non-extractable now, but existed outside the token");
	/* CKA_ID = first 8 bytes of SHA-256(pub). */
	uint8_t h[32];
	char *hex, idpart[64];
	assert_int_equal(kcrypto_sha256(pub, 32, h), KMS_OK);
	hex = tu_to_hex(h, 8);
	snprintf(idpart, sizeof(idpart), "id=%%%.2s%%%.2s", hex, hex + 2);
	assert_true(contains_ci(key_uri, idpart));
	free(hex);
	slot_free(s);
	free(key_uri);
}

static CK_FUNCTION_LIST *raw_module(CK_SLOT_ID *slot, const char *label)
{
	CK_FUNCTION_LIST *f = p11_kit_module_load(hsm.module, P11_KIT_MODULE_UNMANAGED);
	CK_SLOT_ID ids[16];
	CK_ULONG n = 16, i;
	assert_non_null(f);
	/* Already initialised by slot_: the same module instance in this process. */
	assert_int_equal(f->C_GetSlotList(CK_TRUE, ids, &n), CKR_OK);
	for (i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(ids[i], &ti) == CKR_OK &&
		    strncmp((const char *)ti.label, label, strlen(label)) == 0 &&
		    ti.label[strlen(label)] == ' ') {
			*slot = ids[i];
			return f;
		}
	}
	fail_msg("token %s not found", label);
	return NULL;
}

static void test_ambiguous_key(void **state)
{
	uint8_t seed[32], pub[32];
	char *u1 = NULL, *u2 = NULL, *tok, *key;
	struct slot *s = NULL;
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID sid = 0;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o[4];
	CK_ULONG n = 0, i;
	CK_ATTRIBUTE find = { CKA_LABEL, (void *)"twin2", 5 },
		     set = { CKA_LABEL, (void *)"twin", 4 };
	(void)state;
	memset(seed, 0x11, 32);
	tok = make_uri("p11kms-b", pin_b, "id=%01");
	assert_int_equal(slot_import_ed25519(tok, "twin", seed, NULL, &u1, pub), KMS_OK);
	/* p11kms refuses a second key with the same label... */
	assert_int_equal(slot_import_ed25519(tok, "twin", seed, NULL, &u2, pub), KMS_ERR_EXISTS);
	free(tok);
	memset(seed, 0x22, 32);
	tok = make_uri("p11kms-b", pin_b, "id=%02");
	assert_int_equal(slot_import_ed25519(tok, "twin2", seed, NULL, &u2, pub), KMS_OK);
	free(tok);
	/* ...but another client can make one: rename twin2 to twin behind our back. */
	f = raw_module(&sid, "p11kms-b");
	assert_int_equal(f->C_OpenSession(sid, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h),
			 CKR_OK);
	CK_RV rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)PIN_B, strlen(PIN_B));
	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
	assert_int_equal(f->C_FindObjectsInit(h, &find, 1), CKR_OK);
	assert_int_equal(f->C_FindObjects(h, o, 4, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(h), CKR_OK);
	assert_int_equal(n, 2); /* private and public */
	for (i = 0; i < n; i++)
		assert_int_equal(f->C_SetAttributeValue(h, o[i], &set, 1), CKR_OK);
	assert_int_equal(f->C_CloseSession(h), CKR_OK);
	p11_kit_module_release(f);

	key = make_uri("p11kms-b", pin_b, "object=twin");
	tu_log_capture_start();
	assert_int_equal(slot_open(key, NULL, &s), KMS_ERR_AMBIGUOUS);
	assert_true(tu_log_contains("id=01"));
	assert_true(tu_log_contains("id=02"));
	tu_log_capture_stop();
	assert_null(s);
	free(key);
	/* id= picks one. */
	key = make_uri("p11kms-b", pin_b, "object=twin;id=%02");
	assert_int_equal(slot_open(key, NULL, &s), KMS_OK);
	slot_free(s);
	free(key);
	free(u1);
	free(u2);
}

static void test_session_recovery(void **state)
{
	struct slot *s = NULL;
	char *key_uri = NULL;
	uint8_t pub[32], sig[64];
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID sid = 0;
	(void)state;
	assert_int_equal(slot_keygen(uri_a, "recover-key", NULL, &key_uri, pub), KMS_OK);
	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	assert_int_equal(slot_sign(s, msg, 10, sig), KMS_OK);
	f = raw_module(&sid, "p11kms-a");
	/* Behind the slot's back: every session on the token closed, login state gone. */
	assert_int_equal(f->C_CloseAllSessions(sid), CKR_OK);
	tu_log_capture_start();
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_true(tu_log_contains("session lost"));
	tu_log_capture_stop();
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig), KMS_OK);
	/* Twice in a row still works, and the next signature needs no recovery. */
	assert_int_equal(f->C_CloseAllSessions(sid), CKR_OK);
	assert_int_equal(slot_sign(s, msg, 5, sig), KMS_OK);
	tu_log_capture_start();
	assert_int_equal(slot_sign(s, msg, 6, sig), KMS_OK);
	assert_false(tu_log_contains("session lost"));
	tu_log_capture_stop();
	p11_kit_module_release(f);
	slot_free(s);
	free(key_uri);
}

struct thr {
	struct slot *s;
	uint8_t pub[32];
	int bad;
};

static void *signer(void *arg)
{
	struct thr *t = arg;
	uint8_t m[40], sig[64];
	int i;
	for (i = 0; i < 40; i++) {
		memset(m, i, sizeof(m));
		if (slot_sign(t->s, m, sizeof(m), sig) != KMS_OK ||
		    kcrypto_ed25519_verify(t->pub, m, sizeof(m), sig) != KMS_OK)
			t->bad++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct slot *s = NULL;
	char *key_uri = NULL;
	struct thr t[4];
	pthread_t th[4];
	uint8_t pub[32];
	int i;
	(void)state;
	assert_int_equal(slot_keygen(uri_a, "thread-key", NULL, &key_uri, pub), KMS_OK);
	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	for (i = 0; i < 4; i++) {
		t[i].s = s;
		t[i].bad = 0;
		memcpy(t[i].pub, pub, 32);
		assert_int_equal(pthread_create(&th[i], NULL, signer, &t[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].bad, 0);
	}
	slot_free(s);
	free(key_uri);
}

static void test_input_limit(void **state)
{
	struct slot_opts o = { .profile = "tiny", .profiles_dir = profiles_dir };
	struct slot *s = NULL;
	char *key_uri = NULL, *k2 = NULL;
	uint8_t pub[32], sig[64], big[101];
	(void)state;
	assert_int_equal(slot_keygen(uri_a, "limit-key", NULL, &key_uri, pub), KMS_OK);
	assert_int_equal(slot_open(key_uri, &o, &s), KMS_OK);
	assert_string_equal(slot_profile_name(s), "tiny");
	assert_int_equal(slot_max_input(s), 100);
	memset(big, 7, sizeof(big));
	assert_int_equal(slot_sign(s, big, 100, sig), KMS_OK);
	tu_log_capture_start();
	assert_int_equal(slot_sign(s, big, 101, sig), KMS_ERR_TOO_LARGE);
	assert_true(tu_log_contains("101 bytes exceeds the 100-byte limit"));
	tu_log_capture_stop();
	slot_free(s);
	/* The same profile forbids keygen and import. */
	assert_int_equal(slot_keygen(uri_a, "refused", &o, &k2, pub), KMS_ERR_REFUSED);
	assert_int_equal(slot_import_ed25519(uri_a, "refused", big, &o, &k2, pub), KMS_ERR_REFUSED);
	assert_null(k2);
	free(key_uri);
}

/*
 * A module held by a writer (a re-initialisation that never ends): the caller
 * gets KMS_ERR_TIMEOUT at its deadline instead of waiting. Real hangs in every
 * token call are tested through p11shim (tests/p11shim/test_slot_faults.c).
 */
static void test_sign_timeout(void **state)
{
	struct slot *s = NULL;
	char *key_uri = NULL;
	uint8_t pub[32], sig[64];
	struct timespec t0, t1;
	double ms;
	(void)state;
	assert_int_equal(slot_keygen(uri_a, "timeout-key", NULL, &key_uri, pub), KMS_OK);
	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	slot_set_timeout(s, 2000);
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK); /* via a worker */
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig), KMS_OK);

	slot_set_timeout(s, 100);
	pthread_rwlock_wrlock(&s->mb[0].m->lock);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_ERR_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_rwlock_unlock(&s->mb[0].m->lock);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	printf("# slot_sign returned KMS_ERR_TIMEOUT after %.1f ms (deadline 100 ms)\n", ms);
	/* The module is free again: signing works at once, no restart. */
	slot_set_timeout(s, 2000);
	assert_int_equal(slot_sign(s, msg, 7, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, 7, sig), KMS_OK);
	slot_free(s);
	free(key_uri);
}

/* A signature that does not verify against the slot's public key never leaves slot_sign. */
static void test_wrong_key_caught(void **state)
{
	struct slot *s = NULL;
	char *key_uri = NULL;
	uint8_t pub[32], sig[64], zero[64] = { 0 };
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID sid = 0;
	(void)state;
	assert_int_equal(slot_keygen(uri_a, "wrong-key", NULL, &key_uri, pub), KMS_OK);
	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	/* After a lost session the key is found again and must have the same public key. */
	pthread_mutex_lock(&s->mu);
	s->pub[0] ^= 1;
	pthread_mutex_unlock(&s->mu);
	memset(sig, 0xee, sizeof(sig));
	f = raw_module(&sid, "p11kms-a");
	assert_int_equal(f->C_CloseAllSessions(sid), CKR_OK);
	tu_log_capture_start();
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_ERR_AUTH);
	assert_true(tu_log_contains("changed its public key"));
	/* ... and the slot is not used again: a retry cannot fix another key. */
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_ERR_AUTH);
	assert_true(tu_log_contains("not used again until p11kms is restarted"));
	tu_log_capture_stop();
	assert_memory_equal(sig, zero, 64); /* wiped, not released */
	p11_kit_module_release(f);
	slot_free(s);
	free(key_uri);
}

struct listing {
	int n, saw_gen;
};

static void list_cb(void *ctx, const char *key_uri, const char *label, const uint8_t pub[32])
{
	struct listing *l = ctx;
	struct slot *s = NULL;
	uint8_t got[32];
	l->n++;
	if (strcmp(label, "gen-key") == 0) {
		l->saw_gen = 1;
		/* The listed URI opens the listed key (it carries the pin-source). */
		assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
		slot_pubkey(s, got);
		assert_memory_equal(got, pub, 32);
		slot_free(s);
	}
}

static void test_list_keys(void **state)
{
	struct listing l = { 0, 0 }, all = { 0, 0 }, nologin = { 0, 0 };
	char u[1024];
	(void)state;
	assert_int_equal(slot_list_keys(uri_a, NULL, list_cb, &l), KMS_OK);
	assert_true(l.n >= 2);
	assert_int_equal(l.saw_gen, 1);
	/* A module-only URI lists every token; token b's PIN fails on token a. */
	snprintf(u, sizeof(u), "pkcs11:?module-path=%s&pin-source=%s", hsm.module, pin_b);
	assert_int_equal(slot_list_keys(u, NULL, list_cb, &all), KMS_ERR_PIN_INCORRECT);
	/* Without a PIN source: no login, and SoftHSM2 hides private keys. */
	snprintf(u, sizeof(u), "pkcs11:?module-path=%s", hsm.module);
	assert_int_equal(slot_list_keys(u, NULL, list_cb, &nologin), KMS_OK);
	assert_int_equal(nologin.n, 0);
}

static void test_profile_key_id(void **state)
{
	uint8_t id[4];
	size_t n = 0;
	(void)state;
	assert_int_equal(slot_profile_key_id("yubihsm2", NULL, 1, id, sizeof(id), &n), KMS_OK);
	assert_int_equal(n, 2);
	assert_int_equal(id[0], 0);
	assert_int_equal(id[1], 1);
	assert_int_equal(slot_profile_key_id("yubihsm2", NULL, 0x1234, id, sizeof(id), &n), KMS_OK);
	assert_int_equal(id[0], 0x12);
	assert_int_equal(id[1], 0x34);
	assert_int_equal(slot_profile_key_id("yubihsm2", NULL, 70000, id, sizeof(id), &n),
			 KMS_ERR_FORMAT);
	assert_int_equal(slot_profile_key_id("softhsm2", NULL, 1, id, sizeof(id), &n),
			 KMS_ERR_UNSUPPORTED);
	assert_int_equal(slot_profile_key_id("../etc", NULL, 1, id, sizeof(id), &n),
			 KMS_ERR_CONFIG);
}

/* Runs cmd, returns its stdout (malloc'd) and exit status. */
static char *run(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	char *out = calloc(1, 65536);
	size_t got = 0, n;
	assert_non_null(p);
	while ((n = fread(out + got, 1, 65535 - got, p)) > 0)
		got += n;
	*status = pclose(p);
	return out;
}

/* An independent client: OpenSC's pkcs11-tool reads what p11kms made; OpenSSL verifies. */
static void test_pkcs11_tool(void **state)
{
	struct slot *s = NULL;
	char *key_uri = NULL, *out, cmd[4096], *msgp, *sigp, *pubp;
	uint8_t pub[32], sig[64];
	int st;
	(void)state;
	if (access("/usr/bin/pkcs11-tool", X_OK) != 0 || access("/usr/bin/openssl", X_OK) != 0) {
		const char *req = getenv("P11KMS_REQUIRE_SOFTHSM");
		if (req && strcmp(req, "1") == 0)
			fail_msg("pkcs11-tool (opensc) and openssl are required");
		skip();
	}
	assert_int_equal(slot_keygen(uri_a, "tool-key", NULL, &key_uri, pub), KMS_OK);
	assert_int_equal(slot_open(key_uri, NULL, &s), KMS_OK);
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	msgp = tu_path(hsm.dir, "msg.bin");
	sigp = tu_path(hsm.dir, "sig.bin");
	pubp = tu_path(hsm.dir, "pub.pem");
	tu_write_file(msgp, msg, sizeof(msg) - 1, 0600);
	tu_write_file(sigp, sig, 64, 0600);
	/* Test-only PIN on a command line (never in production). */
	snprintf(cmd, sizeof(cmd),
		 "pkcs11-tool --module %s --token-label p11kms-a --login --pin %s --list-objects "
		 "--type privkey --label tool-key 2>&1",
		 hsm.module, PIN_A);
	out = run(cmd, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "tool-key"));
	assert_non_null(strstr(out, "sensitive"));
	assert_non_null(strstr(out, "never extractable"));
	assert_non_null(strstr(out, "local"));
	assert_null(strstr(out, "Access:     extractable"));
	free(out);
	snprintf(cmd, sizeof(cmd),
		 "pkcs11-tool --module %s --token-label p11kms-a --read-object --type pubkey "
		 "--label tool-key -o %s 2>&1",
		 hsm.module, pubp);
	out = run(cmd, &st);
	assert_int_equal(st, 0);
	free(out);
	snprintf(cmd, sizeof(cmd),
		 "openssl pkeyutl -verify -pubin -inkey %s -rawin -in %s -sigfile %s 2>&1", pubp,
		 msgp, sigp);
	out = run(cmd, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "Signature Verified Successfully"));
	free(out);
	/* A flipped bit must fail, or the check above proves nothing. */
	sig[10] ^= 0x40;
	tu_write_file(sigp, sig, 64, 0600);
	out = run(cmd, &st);
	assert_int_not_equal(st, 0);
	free(out);
	slot_free(s);
	free(key_uri), free(msgp), free(sigp), free(pubp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_rules),
		cmocka_unit_test(test_missing_token),
		cmocka_unit_test(test_ambiguous_token),
		cmocka_unit_test(test_pin_errors),
		cmocka_unit_test(test_keygen_sign_verify),
		cmocka_unit_test(test_import_deterministic),
		cmocka_unit_test(test_ambiguous_key),
		cmocka_unit_test(test_session_recovery),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_input_limit),
		cmocka_unit_test(test_sign_timeout),
		cmocka_unit_test(test_wrong_key_caught),
		cmocka_unit_test(test_list_keys),
		cmocka_unit_test(test_profile_key_id),
		cmocka_unit_test(test_pkcs11_tool),
	};
	tu_softhsm_require();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
