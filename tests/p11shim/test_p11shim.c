/* SPDX-License-Identifier: Apache-2.0 */
/* p11shim itself, through its PKCS#11 function list: forwarding, and every kind of fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tu_shim.h"

#define PIN "87654321"

static struct tu_shim sh;
static CK_FUNCTION_LIST *f;
static CK_SLOT_ID slot_a;

static int find_slot(const char *label, CK_SLOT_ID *out)
{
	CK_SLOT_ID ids[16];
	CK_ULONG n = 16;
	if (f->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK)
		return 0;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(ids[i], &ti) == CKR_OK &&
		    strncmp((const char *)ti.label, label, strlen(label)) == 0 &&
		    ti.label[strlen(label)] == ' ') {
			*out = ids[i];
			return 1;
		}
	}
	return 0;
}

static int group_setup(void **state)
{
	char *tok, *key = NULL;
	uint8_t pub[32];
	(void)state;
	tu_shim_setup(&sh, NULL);
	tu_shim_add_token(&sh, "s-a", PIN);
	tok = tu_shim_uri(&sh, "s-a", NULL);
	assert_int_equal(slot_keygen(tok, "shim-key", NULL, &key, pub), KMS_OK);
	free(tok);
	free(key);
	slot_shutdown();
	f = p11_kit_module_load(sh.lib, P11_KIT_MODULE_UNMANAGED);
	assert_non_null(f);
	assert_true(f->C_Initialize(NULL) == CKR_OK ||
		    f->C_Initialize(NULL) == CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_true(find_slot("s-a", &slot_a));
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, "");
	p11_kit_module_release(f);
	tu_shim_teardown(&sh);
	return 0;
}

static int case_teardown(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, "");
	return 0;
}

static CK_SESSION_HANDLE session(int login)
{
	CK_SESSION_HANDLE h;
	assert_int_equal(f->C_OpenSession(slot_a, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	if (login)
		assert_true(f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)PIN, 8) == CKR_OK ||
			    f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)PIN, 8) ==
				    CKR_USER_ALREADY_LOGGED_IN);
	return h;
}

static CK_RV sign(CK_SESSION_HANDLE h)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t = { CKA_CLASS, &cls, sizeof(cls) };
	CK_MECHANISM m = { CKM_EDDSA, NULL, 0 };
	CK_OBJECT_HANDLE k;
	CK_ULONG n = 0, siglen = 64;
	CK_BYTE sig[64], data[] = "forwarded";
	CK_RV rv;
	if ((rv = f->C_FindObjectsInit(h, &t, 1)) != CKR_OK)
		return rv;
	rv = f->C_FindObjects(h, &k, 1, &n);
	(void)f->C_FindObjectsFinal(h);
	if (rv != CKR_OK || n != 1)
		return rv != CKR_OK ? rv : CKR_KEY_HANDLE_INVALID;
	if ((rv = f->C_SignInit(h, &m, k)) != CKR_OK)
		return rv;
	return f->C_Sign(h, data, sizeof(data) - 1, sig, &siglen);
}

static CK_RV info(void)
{
	CK_INFO i;
	return f->C_GetInfo(&i);
}

static void test_forwarding(void **state)
{
	CK_SESSION_HANDLE h = session(1);
	CK_SESSION_INFO si;
	(void)state;
	assert_int_equal(f->C_GetSessionInfo(h, &si), CKR_OK);
	assert_true(si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
	assert_int_equal(sign(h), CKR_OK);
	assert_int_equal(info(), CKR_OK);
	assert_int_equal(f->C_CloseSession(h), CKR_OK);
	assert_int_equal(f->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
}

static void test_fail_counters(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, "fail C_GetInfo rv=CKR_DEVICE_ERROR nth=2\n");
	assert_int_equal(info(), CKR_OK);
	assert_int_equal(info(), CKR_DEVICE_ERROR);
	assert_int_equal(info(), CKR_OK);
	tu_shim_ctl(&sh, "fail C_GetInfo rv=CKR_GENERAL_ERROR from=2 times=2\n");
	assert_int_equal(info(), CKR_OK);
	assert_int_equal(info(), CKR_GENERAL_ERROR);
	assert_int_equal(info(), CKR_GENERAL_ERROR);
	assert_int_equal(info(), CKR_OK);
	/* The other function is not touched; "*" is every function. */
	tu_shim_ctl(&sh, "fail * rv=0x30\n");
	assert_int_equal(info(), CKR_DEVICE_ERROR);
}

static void test_probability(void **state)
{
	int failed = 0;
	(void)state;
	tu_shim_ctl(&sh, "fail C_GetInfo rv=CKR_DEVICE_ERROR prob=0.5 seed=9\n");
	for (int i = 0; i < 400; i++)
		failed += info() != CKR_OK;
	printf("# prob=0.5: %d of 400 calls failed\n", failed);
	assert_true(failed > 120 && failed < 280);
}

static void test_time_window(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, "fail C_GetInfo rv=CKR_DEVICE_ERROR after_ms=600000\n");
	assert_int_equal(info(), CKR_OK);
	tu_shim_ctl(&sh, "fail C_GetInfo rv=CKR_DEVICE_ERROR for_ms=600000\n");
	assert_int_equal(info(), CKR_DEVICE_ERROR);
}

static void test_delay(void **state)
{
	double t0;
	(void)state;
	tu_shim_ctl(&sh, "delay C_GetInfo ms=80\n");
	t0 = tu_now_ms();
	assert_int_equal(info(), CKR_OK);
	assert_true(tu_now_ms() - t0 >= 79);
}

static atomic_int hang_done;

static void *hang_main(void *arg)
{
	(void)arg;
	assert_int_equal(info(), CKR_OK);
	atomic_store(&hang_done, 1);
	return NULL;
}

static void test_hang(void **state)
{
	pthread_t th;
	struct timespec p = { 0, 150 * 1000000L };
	double t0;
	(void)state;
	tu_shim_ctl(&sh, "hang C_GetInfo\n");
	atomic_store(&hang_done, 0);
	assert_int_equal(pthread_create(&th, NULL, hang_main, NULL), 0);
	nanosleep(&p, NULL);
	assert_int_equal(atomic_load(&hang_done), 0); /* still hanging */
	tu_shim_ctl(&sh, "");			      /* until the file changes */
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&hang_done), 1);
	tu_shim_ctl(&sh, "hang C_GetInfo ms=60\n");
	t0 = tu_now_ms();
	assert_int_equal(info(), CKR_OK);
	assert_true(tu_now_ms() - t0 >= 59);
}

static int present(void)
{
	CK_SLOT_ID id;
	return find_slot("s-a", &id);
}

static void test_vanish_until_init(void **state)
{
	CK_SESSION_HANDLE h = session(1), h2;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	(void)state;
	tu_shim_ctl(&sh, "vanish token=s-a\n");
	assert_false(present());
	assert_int_equal(f->C_GetSlotInfo(slot_a, &si), CKR_OK);
	assert_int_equal(si.flags & CKF_TOKEN_PRESENT, 0);
	assert_int_equal(f->C_GetTokenInfo(slot_a, &ti), CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(f->C_OpenSession(slot_a, CKF_SERIAL_SESSION, NULL, NULL, &h2),
			 CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(sign(h), CKR_DEVICE_REMOVED);
	tu_shim_ctl(&sh, "");
	assert_false(present()); /* the module scans only in C_Initialize */
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_true(present());
	assert_int_equal(sign(h), CKR_SESSION_HANDLE_INVALID); /* old handles stay dead */
	h = session(1);
	assert_int_equal(sign(h), CKR_OK);
	assert_int_equal(f->C_CloseSession(h), CKR_OK);
}

static void test_vanish_live(void **state)
{
	CK_SESSION_HANDLE h = session(1);
	(void)state;
	tu_shim_ctl(&sh, "vanish token=s-a rescan=live\n");
	assert_false(present());
	tu_shim_ctl(&sh, "");
	assert_true(present()); /* a hot-plug aware module */
	assert_int_equal(sign(h), CKR_SESSION_HANDLE_INVALID);
	h = session(1);
	assert_int_equal(sign(h), CKR_OK);
	assert_int_equal(f->C_CloseSession(h), CKR_OK);
}

static void test_reset(void **state)
{
	CK_SESSION_HANDLE h = session(1), h2;
	CK_SESSION_INFO si;
	(void)state;
	assert_int_equal(sign(h), CKR_OK);
	tu_shim_ctl(&sh, "reset token=s-a id=1\n");
	assert_int_equal(sign(h), CKR_SESSION_HANDLE_INVALID);
	h2 = session(0);
	assert_int_equal(f->C_GetSessionInfo(h2, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION); /* the login went with it */
	assert_int_equal(f->C_Login(h2, CKU_USER, (CK_UTF8CHAR *)PIN, 8), CKR_OK);
	assert_int_equal(sign(h2), CKR_OK);
	tu_shim_ctl(&sh, "reset token=s-a id=1\n# the same id: nothing happens\n");
	assert_int_equal(sign(h2), CKR_OK);
	tu_shim_ctl(&sh, "reset token=s-a id=2\n");
	assert_int_equal(sign(h2), CKR_SESSION_HANDLE_INVALID);
	assert_true(h2 != h);
}

static void test_bad_control_keeps_rules(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, "fail C_GetInfo rv=CKR_DEVICE_ERROR\n");
	assert_int_equal(info(), CKR_DEVICE_ERROR);
	tu_shim_ctl(&sh, "fial C_GetInfo rv=CKR_DEVICE_ERROR\n"); /* a typo: reported, ignored */
	assert_int_equal(info(), CKR_DEVICE_ERROR);
	assert_true(tu_shim_trace_count(&sh, "control error: line 1: unknown action") > 0);
	tu_shim_ctl(&sh, "fail C_Nope rv=CKR_DEVICE_ERROR\n");
	assert_int_equal(info(), CKR_DEVICE_ERROR); /* read at the next call */
	assert_true(tu_shim_trace_count(&sh, "unknown function") > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_forwarding, case_teardown),
		cmocka_unit_test_teardown(test_fail_counters, case_teardown),
		cmocka_unit_test_teardown(test_probability, case_teardown),
		cmocka_unit_test_teardown(test_time_window, case_teardown),
		cmocka_unit_test_teardown(test_delay, case_teardown),
		cmocka_unit_test_teardown(test_hang, case_teardown),
		cmocka_unit_test_teardown(test_vanish_until_init, case_teardown),
		cmocka_unit_test_teardown(test_vanish_live, case_teardown),
		cmocka_unit_test_teardown(test_reset, case_teardown),
		cmocka_unit_test_teardown(test_bad_control_keeps_rules, case_teardown),
	};
	tu_softhsm_require();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
