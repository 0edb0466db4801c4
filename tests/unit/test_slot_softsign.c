/* SPDX-License-Identifier: Apache-2.0 */
/* slot_ over the softsign module: several key files in one process, re-initialisation under load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "testutil.h"

static char *dir;
static const uint8_t msg[] = "softsign through PKCS#11";

static char *key_file(const char *name, uint8_t fill, uint8_t seed[32])
{
	char *p = tu_path(dir, name);
	memset(seed, fill, 32);
	seed[0] = (uint8_t)(seed[0] ^ 0x5a);
	assert_int_equal(keyfile_write_seed(p, seed), KMS_OK);
	return p;
}

static int setup(void **state)
{
	(void)state;
	dir = tu_mkdtemp();
	return dir ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	slot_shutdown();
	tu_rmrf(dir);
	free(dir);
	return 0;
}

static void check_sign(struct slot *s, const uint8_t seed[32])
{
	uint8_t sig[64], want[64];
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_sign(seed, msg, sizeof(msg) - 1, want), KMS_OK);
	assert_memory_equal(sig, want, 64);
}

struct bg {
	struct slot *s;
	uint8_t seed[32];
	volatile int stop;
	int n, bad;
};

static void *bg_signer(void *arg)
{
	struct bg *b = arg;
	uint8_t sig[64], want[64];
	while (!b->stop) {
		if (slot_sign(b->s, msg, sizeof(msg) - 1, sig) != KMS_OK ||
		    kcrypto_ed25519_sign(b->seed, msg, sizeof(msg) - 1, want) != KMS_OK ||
		    memcmp(sig, want, 64) != 0)
			b->bad++;
		__atomic_fetch_add(&b->n, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void test_softsign_many_files(void **state)
{
	uint8_t seed1[32], seed2[32], seed3[32], seed4[32], pub[32], want[32];
	char *f1 = key_file("identity.key", 1, seed1), *f2 = key_file("cons-a.key", 2, seed2);
	char *f3 = key_file("cons-b.key", 3, seed3), *f4 = key_file("cons-c.key", 4, seed4);
	struct slot *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL;
	struct slot_hygiene hy;
	struct bg b;
	pthread_t th;
	const char *pre[1];
	(void)state;

	assert_int_equal(slot_open_softsign(f1, NULL, &s1), KMS_OK);
	assert_string_equal(slot_profile_name(s1), "softsign");
	slot_pubkey(s1, pub);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed1, want), KMS_OK);
	assert_memory_equal(pub, want, 32);
	check_sign(s1, seed1);
	assert_int_equal(slot_hygiene(s1, &hy), KMS_OK);
	assert_string_equal(hy.verdict, "softsign file key: plaintext on disk");
	assert_int_equal(hy.local, 0);

	/* A second file while s1 signs on another thread: the module is re-initialised. */
	memset(&b, 0, sizeof(b));
	b.s = s1;
	memcpy(b.seed, seed1, 32);
	assert_int_equal(pthread_create(&th, NULL, bg_signer, &b), 0);
	/* Only re-initialise once the signer runs: on a loaded machine it may not have
	 * been scheduled yet, and the case would not be tested (and b.n would be 0). */
	while (__atomic_load_n(&b.n, __ATOMIC_ACQUIRE) == 0)
		sched_yield();
	tu_log_capture_start();
	assert_int_equal(slot_open_softsign(f2, NULL, &s2), KMS_OK);
	assert_true(tu_log_contains("re-initialised"));
	tu_log_capture_stop();
	check_sign(s2, seed2);
	check_sign(s1, seed1);
	/* Preload registers f3 (one more re-init); opening it afterwards needs none. */
	pre[0] = f3;
	assert_int_equal(slot_softsign_preload(pre, 1), KMS_OK);
	tu_log_capture_start();
	assert_int_equal(slot_open_softsign(f3, NULL, &s3), KMS_OK);
	assert_false(tu_log_contains("re-initialised"));
	tu_log_capture_stop();
	assert_int_equal(slot_open_softsign(f4, NULL, &s4), KMS_OK);
	b.stop = 1;
	pthread_join(th, NULL);
	assert_true(b.n > 0);
	assert_int_equal(b.bad, 0);
	check_sign(s1, seed1);
	check_sign(s2, seed2);
	check_sign(s3, seed3);
	check_sign(s4, seed4);
	slot_free(s1), slot_free(s2), slot_free(s3), slot_free(s4);
	free(f1), free(f2), free(f3), free(f4);
}

static void test_softsign_bad_files(void **state)
{
	uint8_t seed[32];
	char *f = key_file("open.key", 9, seed), *missing = tu_path(dir, "missing.key");
	struct slot *s = NULL;
	(void)state;
	assert_int_equal(slot_open_softsign(missing, NULL, &s), KMS_ERR_NOT_FOUND);
	chmod(f, 0644); /* the module refuses it: its slot has no token */
	tu_log_capture_start();
	assert_int_equal(slot_open_softsign(f, NULL, &s), KMS_ERR_NOT_FOUND);
	assert_true(tu_log_contains("0644")); /* the module's reason reaches the operator */
	tu_log_capture_stop();
	assert_null(s);
	free(f);
	free(missing);
}

static void test_module_path(void **state)
{
	char buf[4096], small[4];
	const char *env = getenv("P11KMS_SOFTSIGN_MODULE");
	(void)state;
	assert_int_equal(slot_softsign_module_path(buf, sizeof(buf)), KMS_OK);
	assert_string_equal(buf, env);
	assert_int_equal(slot_softsign_module_path(small, sizeof(small)), KMS_ERR_NO_SPACE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softsign_many_files),
		cmocka_unit_test(test_softsign_bad_files),
		cmocka_unit_test(test_module_path),
	};
	if (!getenv("P11KMS_SOFTSIGN_MODULE"))
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
