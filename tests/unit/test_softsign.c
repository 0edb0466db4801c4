/* SPDX-License-Identifier: Apache-2.0 */
/* libp11kms-softsign.so through its raw PKCS#11 function list (dlopen). */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "p11kms/enc.h"
#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/softsign.h"
#include "testutil.h"

static CK_FUNCTION_LIST_PTR F;

/* Fixture: a token directory and two single-file tokens. */
struct fx {
	char *dir, *tokdir, *single, *badperm, *missing;
	char init[8192];
	uint8_t seed[32], pub[32];   /* the CometBFT test key (val.key, pv.json) */
	uint8_t eseed[32], epub[32]; /* the key behind exp.key (64-byte expanded) */
};

static struct fx X;

static void load_module(void)
{
	const char *path = getenv("P11KMS_SOFTSIGN_MODULE");
	char buf[4096];
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);
	void *h;

	if (!path) {
		snprintf(buf, sizeof(buf), "%s/lib/libp11kms-softsign.so", P11KMS_BINARY_DIR);
		path = buf;
	}
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		fail_msg("dlopen %s: %s", path, dlerror());
	*(void **)&gfl = dlsym(h, "C_GetFunctionList");
	assert_non_null(gfl);
	/* nothing but C_GetFunctionList is exported */
	assert_null(dlsym(h, "C_Initialize"));
	assert_null(dlsym(h, "keyfile_parse"));
	assert_null(dlsym(h, "kms_log"));
	assert_int_equal(gfl(NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(gfl(&F), CKR_OK);
	assert_int_equal(F->version.major, 2);
	assert_int_equal(F->version.minor, 40);
}

static int setup(void **state)
{
	json_t *v = tu_load_vector("keys_and_addresses.json");
	json_t *e = json_object_get(v, "priv_validator_key_example");
	const char *b64 = tu_json_str(e, "tmkms_softsign_key_file_base64 (derived)");
	char *js = json_dumps(json_object_get(e, "json"), JSON_INDENT(2));
	char *p, eb64[128];
	uint8_t exp[64];
	unsigned int n = 0;
	(void)state;

	load_module();
	tu_hex(tu_json_str(e, "seed_hex"), X.seed, 32);
	tu_hex(tu_json_str(json_object_get(e, "derived"), "ed25519_pubkey_hex"), X.pub, 32);
	X.dir = tu_mkdtemp();
	X.tokdir = tu_path(X.dir, "tok");
	assert_int_equal(mkdir(X.tokdir, 0700), 0);
	p = tu_path(X.tokdir, "val.key");
	tu_write_file(p, b64, strlen(b64), 0600);
	free(p);
	p = tu_path(X.tokdir, "pv.json");
	tu_write_file(p, js, strlen(js), 0600);
	free(p);
	p = tu_path(X.tokdir, "open.key");
	tu_write_file(p, b64, strlen(b64), 0644);
	free(p);
	p = tu_path(X.tokdir, "notakey.txt");
	tu_write_file(p, "hello", 5, 0600);
	free(p);
	p = tu_path(X.tokdir, "sub");
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	/* a 64-byte expanded key (tmkms 0.15 format) */
	assert_int_equal(kcrypto_random(X.eseed, 32), KMS_OK);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(X.eseed, X.epub), KMS_OK);
	assert_int_equal(EVP_Digest(X.eseed, 32, exp, &n, EVP_sha512(), NULL), 1);
	assert_int_equal(enc_base64_encode(exp, 64, eb64, sizeof(eb64)), KMS_OK);
	p = tu_path(X.tokdir, "exp.key");
	tu_write_file(p, eb64, strlen(eb64), 0600);
	free(p);

	X.single = tu_path(X.dir, "single.key");
	tu_write_file(X.single, b64, strlen(b64), 0400);
	X.badperm = tu_path(X.dir, "badperm.key");
	tu_write_file(X.badperm, b64, strlen(b64), 0640);
	X.missing = tu_path(X.dir, "nowhere");
	snprintf(X.init, sizeof(X.init), SOFTSIGN_INIT_PREFIX "dir=%s;file=%s;file=%s;dir=%s",
		 X.tokdir, X.single, X.badperm, X.missing);
	free(js);
	json_decref(v);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rmrf(X.dir);
	free(X.dir);
	free(X.tokdir);
	free(X.single);
	free(X.badperm);
	free(X.missing);
	return 0;
}

static CK_RV init_with(const char *s)
{
	CK_C_INITIALIZE_ARGS a;

	memset(&a, 0, sizeof(a));
	a.flags = CKF_OS_LOCKING_OK;
	a.pReserved = (void *)(uintptr_t)s;
	return F->C_Initialize(&a);
}

static int init_fx(void **state)
{
	(void)state;
	return init_with(X.init) == CKR_OK ? 0 : -1;
}

static int fini(void **state)
{
	(void)state;
	return F->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

static CK_SESSION_HANDLE open_rw(CK_SLOT_ID slot, int rw)
{
	CK_SESSION_HANDLE h = 0;

	assert_int_equal(F->C_OpenSession(slot, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0),
					  NULL, NULL, &h),
			 CKR_OK);
	return h;
}

/* Finds objects matching tmpl; returns how many (handles in out). */
static CK_ULONG find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out,
		     CK_ULONG cap)
{
	CK_ULONG got = 0;

	assert_int_equal(F->C_FindObjectsInit(s, tmpl, n), CKR_OK);
	assert_int_equal(F->C_FindObjects(s, out, cap, &got), CKR_OK);
	assert_int_equal(F->C_FindObjectsFinal(s), CKR_OK);
	return got;
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_CLASS cls)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_LABEL, (void *)(uintptr_t)label, strlen(label) },
		{ CKA_CLASS, &cls, sizeof(cls) },
	};
	CK_OBJECT_HANDLE h[4];

	assert_int_equal(find(s, t, 2, h, 4), 1);
	return h[0];
}

static void test_lifecycle(void **state)
{
	CK_ULONG n = 0;
	CK_C_INITIALIZE_ARGS a;
	(void)state;

	assert_int_equal(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(init_with("dir=/tmp"), CKR_ARGUMENTS_BAD);
	assert_int_equal(init_with(SOFTSIGN_INIT_PREFIX "dir=relative/path"), CKR_ARGUMENTS_BAD);
	assert_int_equal(init_with(SOFTSIGN_INIT_PREFIX "disk=/tmp"), CKR_ARGUMENTS_BAD);
	assert_int_equal(init_with(SOFTSIGN_INIT_PREFIX "dir="), CKR_ARGUMENTS_BAD);
	/* mutex callbacks without CKF_OS_LOCKING_OK: we cannot use them */
	memset(&a, 0, sizeof(a));
	*(void **)&a.CreateMutex = (void *)(uintptr_t)1;
	*(void **)&a.DestroyMutex = (void *)(uintptr_t)1;
	*(void **)&a.LockMutex = (void *)(uintptr_t)1;
	*(void **)&a.UnlockMutex = (void *)(uintptr_t)1;
	assert_int_equal(F->C_Initialize(&a), CKR_CANT_LOCK);
	a.UnlockMutex = NULL;
	assert_int_equal(F->C_Initialize(&a), CKR_ARGUMENTS_BAD);

	/* empty configuration: zero slots */
	assert_int_equal(init_with(SOFTSIGN_INIT_PREFIX), CKR_OK);
	assert_int_equal(init_with(SOFTSIGN_INIT_PREFIX), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(F->C_Finalize((void *)1), CKR_ARGUMENTS_BAD);
	assert_int_equal(F->C_Finalize(NULL), CKR_OK);

	/* empty entries are harmless */
	{
		char buf[4200];

		snprintf(buf, sizeof(buf), SOFTSIGN_INIT_PREFIX ";dir=%s;;", X.tokdir);
		assert_int_equal(init_with(buf), CKR_OK);
		assert_int_equal(F->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
		assert_int_equal(n, 1);
		assert_int_equal(F->C_Finalize(NULL), CKR_OK);
	}

	/* the environment variable, used when there are no init args */
	setenv(SOFTSIGN_ENV_DIR, X.tokdir, 1);
	memset(&a, 0, sizeof(a));
	a.flags = CKF_OS_LOCKING_OK; /* args without pReserved: the environment too */
	assert_int_equal(F->C_Initialize(&a), CKR_OK);
	assert_int_equal(F->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 1);
	assert_int_equal(F->C_Finalize(NULL), CKR_OK);
	/* a relative directory in the environment is ignored */
	setenv(SOFTSIGN_ENV_DIR, "relative", 1);
	assert_int_equal(F->C_Initialize(NULL), CKR_OK);
	assert_int_equal(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(F->C_Finalize(NULL), CKR_OK);
	setenv(SOFTSIGN_ENV_DIR, X.tokdir, 1);
	assert_int_equal(F->C_Initialize(NULL), CKR_OK);
	assert_int_equal(F->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	assert_int_equal(n, 1);
	assert_int_equal(F->C_Finalize(NULL), CKR_OK);
	unsetenv(SOFTSIGN_ENV_DIR);
	assert_int_equal(F->C_Initialize(NULL), CKR_OK);
	assert_int_equal(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(F->C_Finalize(NULL), CKR_OK);
}

/* 1 if the n-byte field contains the string needle. */
static int field_has(const CK_UTF8CHAR *field, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(field + i, needle, k) == 0)
			return 1;
	return 0;
}

static void expect_padded(const CK_UTF8CHAR *field, size_t cap, const char *want)
{
	char buf[128];

	assert_true(strlen(want) <= cap);
	memset(buf, ' ', cap);
	memcpy(buf, want, strlen(want));
	assert_memory_equal(field, buf, cap);
}

static void test_slots_tokens(void **state)
{
	CK_SLOT_ID slots[8];
	CK_ULONG n = 0;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_INFO info;
	CK_MECHANISM_TYPE mechs[4];
	CK_MECHANISM_INFO mi;
	char serial[KEYFILE_SERIAL_LEN + 1];
	(void)state;

	assert_int_equal(F->C_GetInfo(&info), CKR_OK);
	assert_int_equal(info.cryptokiVersion.major, 2);
	expect_padded(info.manufacturerID, 32, SOFTSIGN_MANUFACTURER);

	assert_int_equal(F->C_GetSlotList(CK_FALSE, NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 4);
	n = 1;
	assert_int_equal(F->C_GetSlotList(CK_FALSE, slots, &n), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(n, 4);
	n = 8;
	assert_int_equal(F->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	assert_int_equal(n, 2);
	assert_int_equal(slots[0], 0);
	assert_int_equal(slots[1], 1);

	/* dir token: 3 keys (val, pv, exp), 2 skipped (open.key 0644, notakey.txt) */
	assert_int_equal(F->C_GetSlotInfo(0, &si), CKR_OK);
	expect_padded(si.slotDescription, 64, "softsign: 3 keys, 2 skipped");
	assert_true(si.flags & CKF_TOKEN_PRESENT);
	assert_int_equal(F->C_GetTokenInfo(0, &ti), CKR_OK);
	expect_padded(ti.label, 32, "softsign tok");
	expect_padded(ti.manufacturerID, 32, "p11kms");
	expect_padded(ti.model, 16, "softsign");
	assert_int_equal(keyfile_token_serial(X.tokdir, serial), KMS_OK);
	assert_memory_equal(ti.serialNumber, serial, 16);
	assert_true(ti.flags & CKF_TOKEN_INITIALIZED);
	assert_true(ti.flags & CKF_USER_PIN_INITIALIZED);
	assert_false(ti.flags & CKF_LOGIN_REQUIRED);
	assert_false(ti.flags & CKF_WRITE_PROTECTED);

	/* file token: write-protected; label from the file name */
	assert_int_equal(F->C_GetTokenInfo(1, &ti), CKR_OK);
	expect_padded(ti.label, 32, "softsign single.key");
	assert_true(ti.flags & CKF_WRITE_PROTECTED);

	/* file token with group access: slot without token, reason in the description */
	assert_int_equal(F->C_GetSlotInfo(2, &si), CKR_OK);
	assert_false(si.flags & CKF_TOKEN_PRESENT);
	assert_true(field_has(si.slotDescription, 64, "0640"));
	assert_int_equal(F->C_GetTokenInfo(2, &ti), CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(F->C_GetSlotInfo(3, &si), CKR_OK);
	assert_false(si.flags & CKF_TOKEN_PRESENT);
	assert_int_equal(F->C_GetSlotInfo(4, &si), CKR_SLOT_ID_INVALID);
	assert_int_equal(F->C_GetTokenInfo(99, &ti), CKR_SLOT_ID_INVALID);
	assert_int_equal(F->C_GetTokenInfo(0, NULL), CKR_ARGUMENTS_BAD);

	n = 0;
	assert_int_equal(F->C_GetMechanismList(0, NULL, &n), CKR_OK);
	assert_int_equal(n, 2);
	n = 1;
	assert_int_equal(F->C_GetMechanismList(0, mechs, &n), CKR_BUFFER_TOO_SMALL);
	n = 4;
	assert_int_equal(F->C_GetMechanismList(0, mechs, &n), CKR_OK);
	assert_int_equal(mechs[0], CKM_EDDSA);
	assert_int_equal(mechs[1], CKM_EC_EDWARDS_KEY_PAIR_GEN);
	n = 4;
	assert_int_equal(F->C_GetMechanismList(1, mechs, &n), CKR_OK);
	assert_int_equal(n, 1);
	assert_int_equal(F->C_GetMechanismInfo(0, CKM_EDDSA, &mi), CKR_OK);
	assert_int_equal(mi.flags, CKF_SIGN);
	assert_int_equal(F->C_GetMechanismInfo(0, CKM_EC_EDWARDS_KEY_PAIR_GEN, &mi), CKR_OK);
	assert_int_equal(mi.flags, CKF_GENERATE_KEY_PAIR);
	assert_int_equal(F->C_GetMechanismInfo(1, CKM_EC_EDWARDS_KEY_PAIR_GEN, &mi),
			 CKR_MECHANISM_INVALID);
	assert_int_equal(F->C_GetMechanismInfo(0, CKM_RSA_PKCS, &mi), CKR_MECHANISM_INVALID);
}

static void test_sessions_login(void **state)
{
	CK_SESSION_HANDLE h = 0, h2;
	CK_SESSION_INFO si;
	CK_TOKEN_INFO ti;
	(void)state;

	assert_int_equal(F->C_OpenSession(0, 0, NULL, NULL, &h),
			 CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	assert_int_equal(F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL),
			 CKR_ARGUMENTS_BAD);
	assert_int_equal(F->C_OpenSession(1, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h),
			 CKR_TOKEN_WRITE_PROTECTED);
	assert_int_equal(F->C_OpenSession(2, CKF_SERIAL_SESSION, NULL, NULL, &h),
			 CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(F->C_OpenSession(9, CKF_SERIAL_SESSION, NULL, NULL, &h),
			 CKR_SLOT_ID_INVALID);
	h = open_rw(0, 0);
	h2 = open_rw(0, 1);
	assert_int_not_equal(h, h2);
	assert_int_equal(F->C_GetTokenInfo(0, &ti), CKR_OK);
	assert_int_equal(ti.ulSessionCount, 2);
	assert_int_equal(ti.ulRwSessionCount, 1);
	assert_int_equal(F->C_GetSessionInfo(h, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION);
	assert_int_equal(si.slotID, 0);
	assert_int_equal(F->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
	assert_int_equal(F->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "x", 1), CKR_USER_TYPE_INVALID);
	assert_int_equal(F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "any", 3), CKR_OK);
	assert_int_equal(F->C_Login(h2, CKU_USER, NULL, 0), CKR_USER_ALREADY_LOGGED_IN);
	assert_int_equal(F->C_GetSessionInfo(h, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_USER_FUNCTIONS);
	assert_int_equal(F->C_GetSessionInfo(h2, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RW_USER_FUNCTIONS);
	assert_int_equal(F->C_Logout(h2), CKR_OK);
	assert_int_equal(F->C_GetSessionInfo(h, &si), CKR_OK);
	assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION);
	assert_int_equal(F->C_CloseSession(h), CKR_OK);
	assert_int_equal(F->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(F->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(F->C_GetSessionInfo(0, &si), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(F->C_CloseAllSessions(0), CKR_OK);
	assert_int_equal(F->C_GetSessionInfo(h2, &si), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(F->C_CloseAllSessions(42), CKR_SLOT_ID_INVALID);
}

static void test_find_and_attributes(void **state)
{
	CK_SESSION_HANDLE s = open_rw(0, 0), s1 = open_rw(1, 0);
	CK_OBJECT_HANDLE h[16], priv, pub;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_EC_EDWARDS;
	uint8_t id[KEYFILE_CKA_ID_LEN], point[64], value[64], params[32];
	CK_BBOOL sens = 0, extr = 1, sign = 0, local = 1;
	CK_ULONG n = 0;
	(void)state;

	assert_int_equal(find(s, NULL, 0, h, 16), 6);
	assert_int_equal(find(s1, NULL, 0, h, 16), 2);
	/* CKA_ID: the same key in val.key and pv.json, two object pairs */
	assert_int_equal(keyfile_cka_id(X.pub, id), KMS_OK);
	{
		CK_ATTRIBUTE t[] = { { CKA_ID, id, sizeof(id) },
				     { CKA_KEY_TYPE, &kt, sizeof(kt) } };

		assert_int_equal(find(s, t, 2, h, 16), 4);
		t[0].ulValueLen = 7;
		assert_int_equal(find(s, t, 2, h, 16), 0);
	}
	{
		CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };

		assert_int_equal(find(s, t, 1, h, 16), 3);
	}
	{
		/* a sensitive attribute in a template matches nothing */
		CK_ATTRIBUTE t[] = { { CKA_VALUE, X.seed, 32 } };

		assert_int_equal(find(s, t, 1, h, 16), 0);
	}
	/* find state machine */
	assert_int_equal(F->C_FindObjects(s, h, 16, &n), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(F->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(F->C_FindObjectsInit(s, NULL, 1), CKR_ARGUMENTS_BAD);
	assert_int_equal(F->C_FindObjectsInit(s, NULL, 0), CKR_OK);
	assert_int_equal(F->C_FindObjectsInit(s, NULL, 0), CKR_OPERATION_ACTIVE);
	assert_int_equal(F->C_FindObjects(s, h, 4, &n), CKR_OK);
	assert_int_equal(n, 4);
	assert_int_equal(F->C_FindObjects(s, h, 4, &n), CKR_OK);
	assert_int_equal(n, 2);
	assert_int_equal(F->C_FindObjects(s, h, 4, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_int_equal(F->C_FindObjectsFinal(s), CKR_OK);

	priv = find_one(s, "val", CKO_PRIVATE_KEY);
	pub = find_one(s, "val", CKO_PUBLIC_KEY);
	(void)find_one(s, "pv", CKO_PRIVATE_KEY);
	(void)find_one(s, "exp", CKO_PRIVATE_KEY);

	/* length query, then the value */
	{
		CK_ATTRIBUTE t[] = { { CKA_EC_POINT, NULL, 0 } };

		assert_int_equal(F->C_GetAttributeValue(s, pub, t, 1), CKR_OK);
		assert_int_equal(t[0].ulValueLen, 34);
		t[0].pValue = point;
		t[0].ulValueLen = sizeof(point);
		assert_int_equal(F->C_GetAttributeValue(s, pub, t, 1), CKR_OK);
		assert_int_equal(t[0].ulValueLen, 34);
		assert_int_equal(point[0], 0x04);
		assert_int_equal(point[1], 0x20);
		assert_memory_equal(point + 2, X.pub, 32);
		t[0].ulValueLen = 33;
		assert_int_equal(F->C_GetAttributeValue(s, pub, t, 1), CKR_BUFFER_TOO_SMALL);
		assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	}
	/* the private value is sensitive; unknown types are invalid; the rest still filled */
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_VALUE, value, sizeof(value) },
			{ CKA_SENSITIVE, &sens, 1 },
			{ CKA_MODULUS, value, sizeof(value) },
			{ CKA_EXTRACTABLE, &extr, 1 },
			{ CKA_SIGN, &sign, 1 },
			{ CKA_LOCAL, &local, 1 },
			{ CKA_EC_PARAMS, params, sizeof(params) },
		};
		CK_RV rv = F->C_GetAttributeValue(s, priv, t, 7);

		assert_true(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID);
		assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		assert_int_equal(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		assert_int_equal(sens, CK_TRUE);
		assert_int_equal(extr, CK_FALSE);
		assert_int_equal(sign, CK_TRUE);
		assert_int_equal(local, CK_FALSE);
		assert_int_equal(t[6].ulValueLen, SOFTSIGN_EC_PARAMS_DER_LEN);
		assert_memory_equal(params, SOFTSIGN_EC_PARAMS_DER, SOFTSIGN_EC_PARAMS_DER_LEN);
	}
	{
		CK_ATTRIBUTE t[] = { { CKA_VALUE, NULL, 0 } };

		assert_int_equal(F->C_GetAttributeValue(s, priv, t, 1), CKR_ATTRIBUTE_SENSITIVE);
		assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
		/* the public object has no CKA_VALUE at all */
		assert_int_equal(F->C_GetAttributeValue(s, pub, t, 1), CKR_ATTRIBUTE_TYPE_INVALID);
	}
	{
		char label[16];
		CK_ATTRIBUTE t[] = { { CKA_LABEL, label, sizeof(label) },
				     { CKA_ID, value, sizeof(value) } };

		assert_int_equal(F->C_GetAttributeValue(s, pub, t, 2), CKR_OK);
		assert_int_equal(t[0].ulValueLen, 3);
		assert_memory_equal(label, "val", 3);
		assert_int_equal(t[1].ulValueLen, KEYFILE_CKA_ID_LEN);
		assert_memory_equal(value, id, KEYFILE_CKA_ID_LEN);
		assert_int_equal(F->C_GetAttributeValue(s, pub, NULL, 1), CKR_ARGUMENTS_BAD);
	}
	/* handles: invalid, and another slot's objects are invisible */
	{
		CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };

		assert_int_equal(F->C_GetAttributeValue(s, 0, t, 1), CKR_OBJECT_HANDLE_INVALID);
		assert_int_equal(F->C_GetAttributeValue(s, 9999, t, 1), CKR_OBJECT_HANDLE_INVALID);
		assert_int_equal(F->C_GetAttributeValue(s1, priv, t, 1), CKR_OBJECT_HANDLE_INVALID);
		assert_int_equal(F->C_GetAttributeValue(12345, priv, t, 1),
				 CKR_SESSION_HANDLE_INVALID);
	}
	assert_int_equal(F->C_CloseAllSessions(0), CKR_OK);
	assert_int_equal(F->C_CloseAllSessions(1), CKR_OK);
}

static void sign_ok(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const uint8_t *msg, size_t len,
		    uint8_t sig[64])
{
	CK_MECHANISM m = { CKM_EDDSA, NULL, 0 };
	CK_ULONG sl = 64;

	assert_int_equal(F->C_SignInit(s, &m, k), CKR_OK);
	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)(uintptr_t)msg, len, sig, &sl), CKR_OK);
	assert_int_equal(sl, 64);
}

static void test_sign(void **state)
{
	CK_SESSION_HANDLE s = open_rw(0, 0);
	CK_OBJECT_HANDLE priv = find_one(s, "val", CKO_PRIVATE_KEY),
			 pub = find_one(s, "val", CKO_PUBLIC_KEY);
	CK_OBJECT_HANDLE pv = find_one(s, "pv", CKO_PRIVATE_KEY),
			 ex = find_one(s, "exp", CKO_PRIVATE_KEY);
	CK_MECHANISM m = { CKM_EDDSA, NULL, 0 }, bad = { CKM_ECDSA, NULL, 0 };
	struct {
		CK_BBOOL ph;
		CK_ULONG clen;
		CK_BYTE_PTR ctx;
	} params = { CK_FALSE, 0, NULL };
	static const uint8_t msg[] = "vote: height 12 round 0 step precommit";
	uint8_t sig[64], want[64], sig2[64];
	CK_ULONG sl = 0;
	(void)state;

	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &sl),
			 CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(F->C_SignInit(s, NULL, priv), CKR_ARGUMENTS_BAD);
	assert_int_equal(F->C_SignInit(s, &bad, priv), CKR_MECHANISM_INVALID);
	assert_int_equal(F->C_SignInit(s, &m, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
	assert_int_equal(F->C_SignInit(s, &m, 4242), CKR_KEY_HANDLE_INVALID);
	m.pParameter = &params;
	m.ulParameterLen = sizeof(params);
	params.ph = CK_TRUE;
	assert_int_equal(F->C_SignInit(s, &m, priv), CKR_MECHANISM_PARAM_INVALID);
	params.ph = CK_FALSE;
	m.ulParameterLen = 3;
	assert_int_equal(F->C_SignInit(s, &m, priv), CKR_MECHANISM_PARAM_INVALID);
	m.ulParameterLen = sizeof(params);

	/* CK_EDDSA_PARAMS with phFlag false is plain Ed25519 */
	assert_int_equal(F->C_SignInit(s, &m, priv), CKR_OK);
	assert_int_equal(F->C_SignInit(s, &m, priv), CKR_OPERATION_ACTIVE);
	/* length query and a short buffer keep the operation */
	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), NULL, &sl), CKR_OK);
	assert_int_equal(sl, 64);
	sl = 63;
	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &sl),
			 CKR_BUFFER_TOO_SMALL);
	assert_int_equal(sl, 64);
	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig, &sl), CKR_OK);
	assert_int_equal(sl, 64);
	/* a successful C_Sign ends the operation */
	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg), sig2, &sl),
			 CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(kcrypto_ed25519_verify(X.pub, msg, sizeof(msg), sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_sign(X.seed, msg, sizeof(msg), want), KMS_OK);
	assert_memory_equal(sig, want, 64);

	/* the tmkms file and the JSON file of the same seed sign identically */
	sign_ok(s, pv, msg, sizeof(msg), sig2);
	assert_memory_equal(sig2, want, 64);
	/* the 64-byte expanded key signs as its seed would */
	sign_ok(s, ex, msg, sizeof(msg), sig2);
	assert_int_equal(kcrypto_ed25519_sign(X.eseed, msg, sizeof(msg), want), KMS_OK);
	assert_memory_equal(sig2, want, 64);
	assert_int_equal(kcrypto_ed25519_verify(X.epub, msg, sizeof(msg), sig2), KMS_OK);
	/* empty message */
	sign_ok(s, priv, NULL, 0, sig);
	assert_int_equal(kcrypto_ed25519_verify(X.pub, (const uint8_t *)"", 0, sig), KMS_OK);
	/* bad arguments end the operation */
	assert_int_equal(F->C_SignInit(s, &m, priv), CKR_OK);
	assert_int_equal(F->C_Sign(s, NULL, 5, sig, &sl), CKR_ARGUMENTS_BAD);
	assert_int_equal(F->C_Sign(s, (CK_BYTE_PTR)msg, 5, sig, &sl),
			 CKR_OPERATION_NOT_INITIALIZED);
	/* multi-part signing is not offered (Ed25519 is one-shot) */
	assert_int_equal(F->C_SignUpdate(s, (CK_BYTE_PTR)msg, 5), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(F->C_GenerateRandom(s, sig, 8), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(F->C_DestroyObject(s, priv), CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(F->C_CloseSession(s), CKR_OK);
}

static void check_key_file(const char *name, const uint8_t *want_pub)
{
	char *p = tu_path(X.tokdir, name);
	struct keyfile_ed25519 k;
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 44);
	assert_int_equal(keyfile_load(p, &k), KMS_OK);
	assert_int_equal(k.kind, KEYFILE_SEED32);
	if (want_pub)
		assert_memory_equal(k.pub, want_pub, 32);
	keyfile_wipe(&k);
	free(p);
}

static CK_RV keygen(CK_SESSION_HANDLE s, const char *label, CK_ATTRIBUTE *extra,
		    CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = { CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL t = CK_TRUE;
	CK_ATTRIBUTE pt[] = {
		{ CKA_EC_PARAMS, (void *)(uintptr_t)SOFTSIGN_EC_PARAMS_DER,
		  SOFTSIGN_EC_PARAMS_DER_LEN },
		{ CKA_TOKEN, &t, 1 },
		{ CKA_VERIFY, &t, 1 },
	};
	CK_ATTRIBUTE vt[3] = {
		{ CKA_SIGN, &t, 1 },
		{ CKA_LABEL, (void *)(uintptr_t)label, label ? strlen(label) : 0 },
	};
	CK_ULONG nv = label ? 2 : 1;

	if (extra)
		vt[nv++] = *extra;
	return F->C_GenerateKeyPair(s, &m, pt, 3, vt, nv, pub, priv);
}

static void test_keygen_and_import(void **state)
{
	CK_SESSION_HANDLE ro = open_rw(0, 0), rw = open_rw(0, 1), fro = open_rw(1, 0);
	CK_OBJECT_HANDLE pub = 0, priv = 0, h[16];
	uint8_t point[34], sig[64];
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY, pcls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE kt = CKK_EC_EDWARDS;
	static const uint8_t msg[] = "after keygen";
	char *p;
	(void)state;

	assert_int_equal(keygen(ro, "gen", NULL, &pub, &priv), CKR_SESSION_READ_ONLY);
	assert_int_equal(keygen(fro, "gen", NULL, &pub, &priv), CKR_TOKEN_WRITE_PROTECTED);
	assert_int_equal(keygen(rw, NULL, NULL, &pub, &priv), CKR_TEMPLATE_INCOMPLETE);
	assert_int_equal(keygen(rw, "../escape", NULL, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);
	assert_int_equal(keygen(rw, ".hidden", NULL, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);
	assert_int_equal(keygen(rw, "val", NULL, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);
	{
		CK_ATTRIBUTE idattr = { CKA_ID, (void *)"ab", 2 };
		CK_BBOOL t = CK_TRUE;
		CK_ATTRIBUTE ex = { CKA_EXTRACTABLE, &t, 1 };
		CK_ATTRIBUTE curve = { CKA_EC_PARAMS, (void *)"\x06\x03\x2b\x65\x71",
				       5 }; /* Ed448 */

		assert_int_equal(keygen(rw, "gen", &idattr, &pub, &priv), CKR_ATTRIBUTE_READ_ONLY);
		assert_int_equal(keygen(rw, "gen", &ex, &pub, &priv), CKR_TEMPLATE_INCONSISTENT);
		assert_int_equal(keygen(rw, "gen", &curve, &pub, &priv), CKR_CURVE_NOT_SUPPORTED);
	}
	p = tu_path(X.tokdir, "gen.key");
	{
		struct stat st;

		assert_int_not_equal(stat(p, &st), 0); /* nothing written by the refusals */
	}
	free(p);

	assert_int_equal(keygen(rw, "gen", NULL, &pub, &priv), CKR_OK);
	{
		CK_ATTRIBUTE t[] = { { CKA_EC_POINT, point, sizeof(point) } };

		assert_int_equal(F->C_GetAttributeValue(rw, pub, t, 1), CKR_OK);
	}
	check_key_file("gen.key", point + 2);
	assert_int_equal(find_one(ro, "gen", CKO_PRIVATE_KEY), priv);
	sign_ok(ro, priv, msg, sizeof(msg), sig);
	assert_int_equal(kcrypto_ed25519_verify(point + 2, msg, sizeof(msg), sig), KMS_OK);
	assert_int_equal(keygen(rw, "gen", NULL, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);

	/* C_CreateObject: import a seed */
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_KEY_TYPE, &kt, sizeof(kt) },
			{ CKA_LABEL, (void *)"imported", 8 },
			{ CKA_VALUE, X.seed, 32 },
		};
		CK_OBJECT_HANDLE o = 0;

		assert_int_equal(F->C_CreateObject(ro, t, 4, &o), CKR_SESSION_READ_ONLY);
		assert_int_equal(F->C_CreateObject(rw, t, 3, &o), CKR_TEMPLATE_INCOMPLETE);
		t[3].ulValueLen = 31;
		assert_int_equal(F->C_CreateObject(rw, t, 4, &o), CKR_ATTRIBUTE_VALUE_INVALID);
		t[3].ulValueLen = 32;
		t[0].pValue = &pcls;
		assert_int_equal(F->C_CreateObject(rw, t, 4, &o), CKR_TEMPLATE_INCONSISTENT);
		t[0].pValue = &cls;
		assert_int_equal(F->C_CreateObject(rw, t, 4, NULL), CKR_ARGUMENTS_BAD);
		assert_int_equal(F->C_CreateObject(rw, t, 4, &o), CKR_OK);
		assert_int_equal(find_one(ro, "imported", CKO_PRIVATE_KEY), o);
		check_key_file("imported.key", X.pub);
		sign_ok(ro, o, msg, sizeof(msg), sig);
		assert_int_equal(kcrypto_ed25519_verify(X.pub, msg, sizeof(msg), sig), KMS_OK);
		assert_int_equal(F->C_CreateObject(rw, t, 4, &o), CKR_ATTRIBUTE_VALUE_INVALID);
	}
	assert_int_equal(find(ro, NULL, 0, h, 16), 10);

	/*
	 * A file that appeared after C_Initialize: the write is refused, and
	 * the module prints nothing even though its file layer logs the error.
	 */
	{
		char *late = tu_path(X.tokdir, "late.key"), *errf = tu_path(X.dir, "stderr.txt");
		CK_OBJECT_HANDLE o = 0;
		struct stat st;
		int saved, fd;

		tu_write_file(late, "x", 1, 0600);
		fflush(stderr);
		saved = dup(2);
		fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(saved >= 0 && fd >= 0);
		assert_int_equal(dup2(fd, 2), 2);
		assert_int_equal(keygen(rw, "late", NULL, &pub, &priv),
				 CKR_ATTRIBUTE_VALUE_INVALID);
		fflush(stderr);
		assert_int_equal(dup2(saved, 2), 2);
		close(saved);
		close(fd);
		assert_int_equal(stat(errf, &st), 0);
		assert_int_equal(st.st_size, 0);
		(void)o;
		assert_int_equal(unlink(late), 0);
		free(late);
		free(errf);
	}
	assert_int_equal(F->C_CloseAllSessions(0), CKR_OK);
	assert_int_equal(F->C_CloseAllSessions(1), CKR_OK);

	/* after a reload the new files are tokens' keys like any other */
	assert_int_equal(F->C_Finalize(NULL), CKR_OK);
	assert_int_equal(init_with(X.init), CKR_OK);
	ro = open_rw(0, 0);
	assert_int_equal(find(ro, NULL, 0, h, 16), 10);
	(void)find_one(ro, "gen", CKO_PUBLIC_KEY);
	assert_int_equal(F->C_CloseSession(ro), CKR_OK);
	/* and are removed again so other tests see the fixture as it was */
	p = tu_path(X.tokdir, "gen.key");
	assert_int_equal(unlink(p), 0);
	free(p);
	p = tu_path(X.tokdir, "imported.key");
	assert_int_equal(unlink(p), 0);
	free(p);
}

struct thr {
	CK_OBJECT_HANDLE key;
	int fails;
};

static void *signer(void *arg)
{
	struct thr *t = arg;
	CK_SESSION_HANDLE s = 0;
	CK_MECHANISM m = { CKM_EDDSA, NULL, 0 };

	if (F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
		t->fails++;
		return NULL;
	}
	for (int i = 0; i < 40; i++) {
		uint8_t msg[16], sig[64];
		CK_ULONG sl = sizeof(sig);

		memset(msg, i, sizeof(msg));
		if (F->C_SignInit(s, &m, t->key) != CKR_OK ||
		    F->C_Sign(s, msg, sizeof(msg), sig, &sl) != CKR_OK ||
		    kcrypto_ed25519_verify(X.pub, msg, sizeof(msg), sig) != KMS_OK)
			t->fails++;
	}
	if (F->C_CloseSession(s) != CKR_OK)
		t->fails++;
	return NULL;
}

static void test_threads(void **state)
{
	CK_SESSION_HANDLE s = open_rw(0, 0);
	pthread_t th[4];
	struct thr t[4];
	(void)state;

	for (int i = 0; i < 4; i++) {
		t[i].key = find_one(s, i % 2 ? "val" : "pv", CKO_PRIVATE_KEY);
		t[i].fails = 0;
		assert_int_equal(pthread_create(&th[i], NULL, signer, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].fails, 0);
	}
	assert_int_equal(F->C_CloseSession(s), CKR_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test_setup_teardown(test_slots_tokens, init_fx, fini),
		cmocka_unit_test_setup_teardown(test_sessions_login, init_fx, fini),
		cmocka_unit_test_setup_teardown(test_find_and_attributes, init_fx, fini),
		cmocka_unit_test_setup_teardown(test_sign, init_fx, fini),
		cmocka_unit_test_setup_teardown(test_keygen_and_import, init_fx, fini),
		cmocka_unit_test_setup_teardown(test_threads, init_fx, fini),
	};

	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, setup, teardown);
}
