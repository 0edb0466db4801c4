/* SPDX-License-Identifier: Apache-2.0 */
/* slot_ pieces that need no token: hsm-profile parser, URI rules, PIN files, EC points, CKR mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p11kms/kms_log.h"
#include "slot_int.h"
#include "testutil.h"

static int parse(const char *text, struct slot_profile *p)
{
	return slot_profile_parse((const uint8_t *)text, strlen(text), p);
}

static void test_profile_full(void **state)
{
	static const char text[] =
		"name = \"x\";\nmatch = { manufacturer = \"Acme\"; model = \"HSM 9\"; };\n"
		"module_paths = [\"/a/b.so\", \"/c/d.so\"];\npin_format = \"digits\";\n"
		"key_id_map = \"u16be\";\nmax_sign_input = 3134;\nec_point = \"raw\";\n"
		"allow_keygen = false;\nallow_import = true;\n"
		"quirks = [\"no-deinit\", \"ec-params-oid\", \"future-quirk\"];\n";
	struct slot_profile p;
	(void)state;
	assert_int_equal(parse(text, &p), KMS_OK);
	assert_string_equal(p.name, "x");
	assert_string_equal(p.match_manufacturer, "Acme");
	assert_string_equal(p.match_model, "HSM 9");
	assert_int_equal(p.n_module_paths, 2);
	assert_string_equal(p.module_paths[1], "/c/d.so");
	assert_int_equal(p.key_id_map, SLOT_KEYID_U16BE);
	assert_int_equal(p.max_sign_input, 3134);
	assert_int_equal(p.ec_point, SLOT_ECPOINT_RAW);
	assert_int_equal(p.allow_keygen, 0);
	assert_int_equal(p.allow_import, 1);
	assert_int_equal(p.quirks, SLOT_QUIRK_NO_DEINIT | SLOT_QUIRK_EC_PARAMS_OID);
}

static void test_profile_defaults_and_errors(void **state)
{
	struct slot_profile p;
	(void)state;
	assert_int_equal(parse("name = \"min\";", &p), KMS_OK);
	assert_int_equal(p.ec_point, SLOT_ECPOINT_EITHER);
	assert_int_equal(p.allow_keygen, 1);
	assert_true(p.max_sign_input >= 3134);
	assert_int_equal(parse("", &p), KMS_ERR_FORMAT); /* no name */
	assert_int_equal(parse("name = \"x\"; max_sign_input = 10;", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"; max_sign_input = \"big\";", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"; ec_point = \"hex\";", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"; key_id_map = \"u32\";", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"; allow_keygen = 1;", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"; module_paths = [\"rel.so\"];", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"; quirks = [1];", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = \"x\"\n@include \"/etc/passwd\"\n", &p), KMS_ERR_FORMAT);
	assert_int_equal(parse("name = ", &p), KMS_ERR_FORMAT);
	assert_int_equal(slot_profile_parse((const uint8_t *)"name=\"a\0\";", 10, &p),
			 KMS_ERR_FORMAT);
}

static void test_shipped_profiles(void **state)
{
	static const char *const names[] = { "softhsm2", "yubihsm2", "opensc", "softsign" };
	struct slot_profile p;
	size_t i;
	(void)state;
	for (i = 0; i < 4; i++) {
		assert_int_equal(slot_profile_load(names[i], NULL, &p), KMS_OK);
		assert_string_equal(p.name, names[i]);
		assert_true(p.n_module_paths > 0);
	}
	assert_int_equal(slot_profile_load("yubihsm2", NULL, &p), KMS_OK);
	assert_int_equal(p.max_sign_input, 3134);
	assert_int_equal(p.key_id_map, SLOT_KEYID_U16BE);
	assert_int_equal(slot_profile_load("nope", NULL, &p), KMS_ERR_CONFIG);

	/* Detection from token info. */
	CK_TOKEN_INFO ti;
	memset(&ti, ' ', sizeof(ti));
	memcpy(ti.manufacturerID, "Yubico (www.yubico.com)", 23);
	memcpy(ti.model, "YubiHSM", 7);
	assert_int_equal(slot_profile_detect(NULL, &ti, "/x/yubihsm_pkcs11.so", &p), KMS_OK);
	assert_string_equal(p.name, "yubihsm2");
	memset(&ti, ' ', sizeof(ti));
	memcpy(ti.manufacturerID, "SoftHSM project", 15);
	memcpy(ti.model, "SoftHSM v2", 10);
	assert_int_equal(slot_profile_detect(NULL, &ti, "/x/libsofthsm2.so", &p), KMS_OK);
	assert_string_equal(p.name, "softhsm2");
	memset(&ti, ' ', sizeof(ti));
	memcpy(ti.manufacturerID, "OpenPGP project", 15);
	assert_int_equal(
		slot_profile_detect(NULL, &ti, "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", &p),
		KMS_OK);
	assert_string_equal(p.name, "opensc");
	memcpy(ti.manufacturerID, "Unknown Corp   ", 15);
	assert_int_equal(slot_profile_detect(NULL, &ti, "/x/other.so", &p), KMS_OK);
	assert_string_equal(p.name, "generic");
}

static void test_ec_point(void **state)
{
	uint8_t der[34] = { 0x04, 0x20 }, pub[32];
	size_t i;
	(void)state;
	for (i = 0; i < 32; i++)
		der[2 + i] = (uint8_t)i;
	assert_int_equal(pk11_ec_point_decode(der, 34, SLOT_ECPOINT_DER, pub), KMS_OK);
	assert_memory_equal(pub, der + 2, 32);
	assert_int_equal(pk11_ec_point_decode(der, 34, SLOT_ECPOINT_RAW, pub), KMS_ERR_FORMAT);
	assert_int_equal(pk11_ec_point_decode(der + 2, 32, SLOT_ECPOINT_EITHER, pub), KMS_OK);
	assert_int_equal(pk11_ec_point_decode(der + 2, 32, SLOT_ECPOINT_DER, pub), KMS_ERR_FORMAT);
	der[1] = 0x21;
	assert_int_equal(pk11_ec_point_decode(der, 34, SLOT_ECPOINT_EITHER, pub), KMS_ERR_FORMAT);
	assert_int_equal(pk11_ec_point_decode(der, 33, SLOT_ECPOINT_EITHER, pub), KMS_ERR_FORMAT);
	assert_true(pk11_ec_params_is_ed25519((const uint8_t *)"\x06\x03\x2b\x65\x70", 5));
	assert_true(pk11_ec_params_is_ed25519((const uint8_t *)"\x13\x0c"
							       "edwards25519",
					      14));
	assert_false(pk11_ec_params_is_ed25519((const uint8_t *)"\x06\x03\x2b\x65\x71", 5));
	assert_false(pk11_ec_params_is_ed25519((const uint8_t *)"\x13\x0a"
								"edwards448",
					       12));
}

static void test_rv_mapping(void **state)
{
	(void)state;
	assert_int_equal(pk11_rv_to_err(CKR_OK), KMS_OK);
	assert_int_equal(pk11_rv_to_err(CKR_PIN_INCORRECT), KMS_ERR_PIN_INCORRECT);
	assert_int_equal(pk11_rv_to_err(CKR_PIN_LOCKED), KMS_ERR_PIN_LOCKED);
	assert_int_equal(pk11_rv_to_err(CKR_DATA_LEN_RANGE), KMS_ERR_TOO_LARGE);
	assert_int_equal(pk11_rv_to_err(CKR_GENERAL_ERROR), KMS_ERR_PKCS11);
	assert_true(pk11_rv_recoverable(CKR_SESSION_HANDLE_INVALID));
	assert_true(pk11_rv_recoverable(CKR_SESSION_CLOSED));
	assert_true(pk11_rv_recoverable(CKR_USER_NOT_LOGGED_IN));
	assert_true(pk11_rv_recoverable(CKR_DEVICE_REMOVED));
	assert_true(pk11_rv_recoverable(CKR_TOKEN_NOT_PRESENT));
	assert_false(pk11_rv_recoverable(CKR_PIN_INCORRECT));
	assert_false(pk11_rv_recoverable(CKR_DATA_LEN_RANGE));
}

static void test_uri_parse(void **state)
{
	static const char ok[] = "pkcs11:token=T;object=k;id=%00%01?module-path=/m.so&"
				 "pin-source=file:/run/pin";
	struct slot_uri su;
	(void)state;
	assert_int_equal(slot_uri_parse((const uint8_t *)ok, strlen(ok), &su), KMS_OK);
	assert_string_equal(su.module_path, "/m.so");
	assert_string_equal(su.pin_file, "/run/pin");
	assert_true(su.has_id);
	assert_true(su.has_label);
	slot_uri_clear(&su);
	/* The pin-value is neither accepted nor echoed in the log line. */
	tu_log_capture_start();
	const char *pv = "pkcs11:token=T?pin-value=s3cr3t-pin";
	assert_int_equal(slot_uri_parse((const uint8_t *)pv, strlen(pv), &su), KMS_ERR_FORMAT);
	assert_false(tu_log_contains("s3cr3t"));
	tu_log_capture_stop();
	assert_int_equal(slot_uri_parse((const uint8_t *)"pkcs11:id=%zz", 13, &su), KMS_ERR_FORMAT);
	assert_int_equal(slot_uri_parse((const uint8_t *)"pkcs11:\0x", 9, &su), KMS_ERR_FORMAT);
}

static void test_pin_file(void **state)
{
	char *dir = tu_mkdtemp(), *p = tu_path(dir, "pin"), *pin = NULL;
	size_t len = 0;
	(void)state;
	tu_write_file(p, "1234\r\n", 6, 0600);
	assert_int_equal(slot_pin_get(p, NULL, 0, "t", &pin, &len), KMS_OK);
	assert_int_equal(len, 4);
	assert_string_equal(pin, "1234");
	kms_free_secret(pin, len + 1);
	chmod(p, 0640);
	tu_log_capture_start();
	assert_int_equal(slot_pin_get(p, NULL, 0, "t", &pin, &len), KMS_ERR_PERM);
	assert_true(tu_log_contains("0640"));
	tu_log_capture_stop();
	assert_null(pin);
	chmod(p, 0600);
	tu_write_file(p, "\n", 1, 0600);
	assert_int_equal(slot_pin_get(p, NULL, 0, "t", &pin, &len), KMS_ERR_FORMAT);
	assert_int_equal(slot_pin_get(NULL, NULL, 0, "t", &pin, &len), KMS_ERR_NOT_FOUND);
	setenv("P11KMS_T_PIN", "9876", 1);
	assert_int_equal(slot_pin_get(NULL, "P11KMS_T_PIN", 0, "t", &pin, &len), KMS_OK);
	assert_string_equal(pin, "9876");
	kms_free_secret(pin, len + 1);
	tu_rmrf(dir);
	free(dir);
	free(p);
}

/* pk11_login against a stub module: a locked PIN is told apart from a wrong one. */
static CK_RV stub_login_rv;
static char stub_pin[32];

static CK_RV stub_session_info(CK_SESSION_HANDLE h, CK_SESSION_INFO *si)
{
	(void)h;
	memset(si, 0, sizeof(*si));
	si->state = CKS_RO_PUBLIC_SESSION;
	return CKR_OK;
}

static CK_RV stub_login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR *pin, CK_ULONG len)
{
	(void)h;
	(void)u;
	snprintf(stub_pin, sizeof(stub_pin), "%.*s", (int)len, (const char *)pin);
	return stub_login_rv;
}

static void test_login_errors(void **state)
{
	CK_FUNCTION_LIST f;
	CK_TOKEN_INFO ti;
	char *dir = tu_mkdtemp(), *p = tu_path(dir, "pin");
	(void)state;
	memset(&f, 0, sizeof(f));
	memset(&ti, 0, sizeof(ti));
	f.C_GetSessionInfo = stub_session_info;
	f.C_Login = stub_login;
	ti.flags = CKF_LOGIN_REQUIRED;
	tu_write_file(p, "4321\n", 5, 0600);

	stub_login_rv = CKR_OK;
	assert_int_equal(pk11_login(&f, 1, &ti, p, NULL, 0, "tok"), KMS_OK);
	assert_string_equal(stub_pin, "4321"); /* newline trimmed before C_Login */
	stub_login_rv = CKR_USER_ALREADY_LOGGED_IN;
	assert_int_equal(pk11_login(&f, 1, &ti, p, NULL, 0, "tok"), KMS_OK);
	tu_log_capture_start();
	stub_login_rv = CKR_PIN_INCORRECT;
	ti.flags |= CKF_USER_PIN_FINAL_TRY;
	assert_int_equal(pk11_login(&f, 1, &ti, p, NULL, 0, "tok"), KMS_ERR_PIN_INCORRECT);
	assert_true(tu_log_contains("final try"));
	stub_login_rv = CKR_PIN_LOCKED;
	assert_int_equal(pk11_login(&f, 1, &ti, p, NULL, 0, "tok"), KMS_ERR_PIN_LOCKED);
	assert_true(tu_log_contains("LOCKED"));
	assert_true(tu_log_contains("security officer"));
	tu_log_capture_stop();
	/* No login needed: the PIN source is not even read. */
	ti.flags = 0;
	stub_pin[0] = '\0';
	assert_int_equal(pk11_login(&f, 1, &ti, "/nonexistent", NULL, 0, "tok"), KMS_OK);
	assert_string_equal(stub_pin, "");
	tu_rmrf(dir);
	free(dir);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profile_full),
		cmocka_unit_test(test_profile_defaults_and_errors),
		cmocka_unit_test(test_shipped_profiles),
		cmocka_unit_test(test_ec_point),
		cmocka_unit_test(test_rv_mapping),
		cmocka_unit_test(test_uri_parse),
		cmocka_unit_test(test_pin_file),
		cmocka_unit_test(test_login_errors),
	};
	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
