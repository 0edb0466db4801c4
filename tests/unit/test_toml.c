/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of the TOML reader: the tmkms subset, values, and errors with line numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/toml.h"

static struct toml_doc *parse_ok(const char *s)
{
	struct toml_doc *d = NULL;
	char err[256];
	int r = toml_parse((const uint8_t *)s, strlen(s), &d, err, sizeof(err));

	if (r != KMS_OK)
		fail_msg("parse failed: %s", err);
	return d;
}

static void expect_err(const char *s, const char *needle)
{
	struct toml_doc *d = (struct toml_doc *)1;
	char err[256];
	int r = toml_parse((const uint8_t *)s, strlen(s), &d, err, sizeof(err));

	assert_int_equal(r, KMS_ERR_FORMAT);
	assert_null(d);
	if (strstr(err, needle) == NULL)
		fail_msg("error '%s' lacks '%s' (input: %s)", err, needle, s);
}

static const char *str_at(const struct toml_value *t, const char *k)
{
	const char *s = toml_string(toml_get(t, k));

	assert_non_null(s);
	return s;
}

static const char tmkms_example[] =
	"# Tendermint KMS configuration file\n"
	"\n"
	"[[chain]]\n"
	"id = \"haqq_11235-1\"\n"
	"key_format = { type = \"cosmos-json\", account_key_prefix = \"haqqpub\", "
	"consensus_key_prefix = \"haqqvalconspub\" }\n"
	"state_file = \"/root/tmkms/config/state/priv_validator_state.json\"\n"
	"\n"
	"[[providers.softsign]]\n"
	"chain_ids = [\"haqq_11235-1\"]\n"
	"key_type = \"consensus\"\n"
	"path = \"/root/tmkms/config/secrets/priv_validator_key\"\n"
	"\n"
	"[[providers.yubihsm]]\n"
	"adapter = { type = \"usb\" }\n"
	"auth = { key = 1, password_file = \"/etc/pw\" }\n"
	"keys = [\n"
	"    { chain_ids = [\"a\", \"b\"], key = 0x0001 },  # comment\n"
	"    { chain_ids = [\"c\"], key = 2, type = \"consensus\" },\n"
	"]\n"
	"\n"
	"[[validator]]\n"
	"chain_id = \"haqq_11235-1\"\n"
	"addr = \"tcp://123.456.32.123:688\" # your validator node ip and port\n"
	"secret_key = '/root/tmkms/config/secrets/secret_connection_key'\n"
	"protocol_version = \"v0.34\"\n"
	"reconnect = true\n"
	"max_height = 1_000_000\n";

static void test_tmkms_shape(void **state)
{
	(void)state;
	struct toml_doc *d = parse_ok(tmkms_example);
	const struct toml_value *root = toml_root(d), *chain, *c0, *kf, *prov, *soft, *yh, *keys,
				*v;
	int64_t i;
	int b;

	assert_int_equal(toml_table_len(root), 3);
	assert_string_equal(toml_table_key(root, 0), "chain");
	assert_string_equal(toml_table_key(root, 1), "providers");
	assert_string_equal(toml_table_key(root, 2), "validator");
	chain = toml_get(root, "chain");
	assert_int_equal(toml_type(chain), TOML_ARRAY);
	assert_int_equal(toml_array_len(chain), 1);
	c0 = toml_array_at(chain, 0);
	assert_int_equal(toml_line(c0), 3);
	assert_string_equal(str_at(c0, "id"), "haqq_11235-1");
	kf = toml_get(c0, "key_format");
	assert_int_equal(toml_type(kf), TOML_TABLE);
	assert_string_equal(str_at(kf, "type"), "cosmos-json");
	assert_string_equal(str_at(kf, "consensus_key_prefix"), "haqqvalconspub");
	assert_int_equal(toml_line(kf), 5);

	prov = toml_get(root, "providers");
	assert_int_equal(toml_type(prov), TOML_TABLE);
	soft = toml_array_at(toml_get(prov, "softsign"), 0);
	assert_string_equal(str_at(soft, "path"), "/root/tmkms/config/secrets/priv_validator_key");
	assert_string_equal(toml_string(toml_array_at(toml_get(soft, "chain_ids"), 0)),
			    "haqq_11235-1");
	yh = toml_array_at(toml_get(prov, "yubihsm"), 0);
	assert_int_equal(toml_line(yh), 13);
	assert_int_equal(toml_int(toml_get(toml_get(yh, "auth"), "key"), &i), KMS_OK);
	assert_int_equal(i, 1);
	keys = toml_get(yh, "keys");
	assert_int_equal(toml_array_len(keys), 2);
	assert_int_equal(toml_int(toml_get(toml_array_at(keys, 0), "key"), &i), KMS_OK);
	assert_int_equal(i, 1);
	assert_int_equal(toml_array_len(toml_get(toml_array_at(keys, 0), "chain_ids")), 2);
	assert_int_equal(toml_line(toml_array_at(keys, 1)), 18);

	v = toml_array_at(toml_get(root, "validator"), 0);
	assert_string_equal(str_at(v, "addr"), "tcp://123.456.32.123:688");
	assert_string_equal(str_at(v, "secret_key"),
			    "/root/tmkms/config/secrets/secret_connection_key");
	assert_int_equal(toml_bool(toml_get(v, "reconnect"), &b), KMS_OK);
	assert_int_equal(b, 1);
	assert_int_equal(toml_int(toml_get(v, "max_height"), &i), KMS_OK);
	assert_int_equal(i, 1000000);
	/* type mismatches are errors, not zeros */
	assert_int_equal(toml_int(toml_get(v, "addr"), &i), KMS_ERR_FORMAT);
	assert_int_equal(toml_bool(toml_get(v, "max_height"), &b), KMS_ERR_FORMAT);
	assert_null(toml_string(toml_get(v, "reconnect")));
	assert_null(toml_get(v, "missing"));
	toml_free(d);
}

static void test_strings(void **state)
{
	(void)state;
	struct toml_doc *d = parse_ok("a = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600\"\n"
				      "b = 'C:\\path\\no escapes'\n"
				      "c = \"\"\"\nline1\nline2 \\\n     joined\"\"\"\n"
				      "d = '''\nraw \\n ''x'''''\n"
				      "\"quoted key\" = 1\n"
				      "'lit.key' = 2\n"
				      "e = \"\"\n");
	const struct toml_value *r = toml_root(d);
	int64_t i;

	assert_string_equal(str_at(r, "a"), "tab\there \"q\" \\ \xc3\xa9 \xf0\x9f\x98\x80");
	assert_string_equal(str_at(r, "b"), "C:\\path\\no escapes");
	assert_string_equal(str_at(r, "c"), "line1\nline2 joined");
	assert_string_equal(str_at(r, "d"), "raw \\n ''x''");
	assert_int_equal(toml_int(toml_get(r, "quoted key"), &i), KMS_OK);
	assert_int_equal(i, 1);
	assert_int_equal(toml_int(toml_get(r, "lit.key"), &i), KMS_OK);
	assert_int_equal(i, 2);
	assert_string_equal(str_at(r, "e"), "");
	assert_int_equal(toml_line(toml_get(r, "quoted key")), 9);
	toml_free(d);
}

static void test_integers_and_arrays(void **state)
{
	(void)state;
	struct toml_doc *d =
		parse_ok("a = +17\nb = -9223372036854775808\nc = 0xDEAD_beef\nd = 0o755\n"
			 "e = 0b1010\nf = 0\ng = 9223372036854775807\n"
			 "h = [ [1, 2], [\"x\"], [], ]\n"
			 "i = [\n  1, # one\n  2,\n\n  3\n]\n"
			 "j = false\n");
	const struct toml_value *r = toml_root(d), *h;
	int64_t v;
	int b;

	assert_int_equal(toml_int(toml_get(r, "a"), &v), KMS_OK);
	assert_int_equal(v, 17);
	assert_int_equal(toml_int(toml_get(r, "b"), &v), KMS_OK);
	assert_true(v == INT64_MIN);
	assert_int_equal(toml_int(toml_get(r, "c"), &v), KMS_OK);
	assert_int_equal(v, 0xdeadbeef);
	assert_int_equal(toml_int(toml_get(r, "d"), &v), KMS_OK);
	assert_int_equal(v, 0755);
	assert_int_equal(toml_int(toml_get(r, "e"), &v), KMS_OK);
	assert_int_equal(v, 10);
	assert_int_equal(toml_int(toml_get(r, "f"), &v), KMS_OK);
	assert_int_equal(v, 0);
	assert_int_equal(toml_int(toml_get(r, "g"), &v), KMS_OK);
	assert_true(v == INT64_MAX);
	h = toml_get(r, "h");
	assert_int_equal(toml_array_len(h), 3);
	assert_int_equal(toml_array_len(toml_array_at(h, 0)), 2);
	assert_string_equal(toml_string(toml_array_at(toml_array_at(h, 1), 0)), "x");
	assert_int_equal(toml_array_len(toml_array_at(h, 2)), 0);
	assert_int_equal(toml_array_len(toml_get(r, "i")), 3);
	assert_int_equal(toml_int(toml_array_at(toml_get(r, "i"), 2), &v), KMS_OK);
	assert_int_equal(v, 3);
	assert_int_equal(toml_bool(toml_get(r, "j"), &b), KMS_OK);
	assert_int_equal(b, 0);
	toml_free(d);
}

static void test_tables_and_dotted_keys(void **state)
{
	(void)state;
	struct toml_doc *d;

	d = parse_ok("\xef\xbb\xbftop = 1\r\n[a.b]\nx = 1\n[a]\ny = 2\n"
		     "[[arr]]\nn = 1\n[arr.sub]\nz = 3\n[[arr]]\nn = 2\n"
		     "[dot]\np.q.r = 'deep'\np.s = 4\n");
	const struct toml_value *r = toml_root(d), *a, *arr;
	int64_t v;

	a = toml_get(r, "a");
	assert_int_equal(toml_int(toml_get(toml_get(a, "b"), "x"), &v), KMS_OK);
	assert_int_equal(v, 1);
	assert_int_equal(toml_int(toml_get(a, "y"), &v), KMS_OK);
	assert_int_equal(v, 2);
	arr = toml_get(r, "arr");
	assert_int_equal(toml_array_len(arr), 2);
	assert_int_equal(toml_int(toml_get(toml_get(toml_array_at(arr, 0), "sub"), "z"), &v),
			 KMS_OK);
	assert_int_equal(v, 3);
	assert_null(toml_get(toml_array_at(arr, 1), "sub"));
	assert_string_equal(
		toml_string(toml_get(toml_get(toml_get(toml_get(r, "dot"), "p"), "q"), "r")),
		"deep");
	assert_int_equal(toml_int(toml_get(toml_get(toml_get(r, "dot"), "p"), "s"), &v), KMS_OK);
	assert_int_equal(v, 4);
	assert_int_equal(toml_line(toml_get(a, "y")), 5);
	toml_free(d);
}

static void parse_fail_quiet(const char *s)
{
	struct toml_doc *d = NULL;
	char err[200];

	assert_int_not_equal(toml_parse((const uint8_t *)s, strlen(s), &d, err, sizeof(err)),
			     KMS_OK);
	assert_null(d);
}

static void test_errors_name_lines(void **state)
{
	(void)state;
	expect_err("a = 1\nb = \n", "line 2: expected a value");
	expect_err("a = 1\n\n[x]\nk = \"unterminated\n", "line 4: unterminated string");
	expect_err("a = 1\na = 2\n", "line 2: duplicate key 'a' (first set on line 1)");
	expect_err("[t]\nx=1\n[t]\n", "line 3: [t]: defined twice (first on line 1)");
	expect_err("a = bare\n", "line 1: invalid value starting with 'b'");
	expect_err("x = 1.5\n", "floats and dates are not supported");
	expect_err("x = 1979-05-27\n", "floats and dates are not supported");
	expect_err("x = 99999999999999999999\n", "integer out of range");
	expect_err("x = 1__0\n", "'_' in a number");
	expect_err("x = 012\n", "leading zeros");
	expect_err("x = \"\\q\"\n", "invalid escape");
	expect_err("x = \"\\u00\"\n", "hex digits");
	expect_err("x = \"\\u0000\"\n", "not an allowed Unicode");
	expect_err("x = \"\\uD800\"\n", "not an allowed Unicode");
	expect_err("x = [1, 2\n", "expected ',' or ']'");
	expect_err("x = { a = 1\n", "inline tables stay on one line");
	expect_err("x = 1 y = 2\n", "line 1: unexpected 'y'");
	expect_err("[a\nx=1\n", "line 1: expected ']'");
	expect_err("[[a]\n", "expected ']]'");
	expect_err("a = 1\n[a]\n", "already set to a integer");
	expect_err("a = {b = 1}\n[a.c]\n", "cannot be extended");
	expect_err("[a]\nb=1\n[b]\n[a.b.c]\n", "already set to a integer on line 2");
	expect_err("a = [1]\n[[a]]\n", "already defined as a array");
	expect_err("\n\nkey\n", "line 3: expected '=' after key 'key'");
	expect_err("= 1\n", "expected a key");
	expect_err("x = \"a\tb\x01\"\n", "control character 0x01");
	expect_err("x = 1 # bad \x02 comment\n", "control character 0x02 in a comment");
	expect_err("x = '''never closed\n", "unterminated multi-line string");
	expect_err("x = \"x\" \r y\n", "carriage return");
	expect_err("x = nan\n", "floats are not supported");
	expect_err("x = tru\n", "invalid value starting with 't'");
	parse_fail_quiet("\xef\xbb\xbf = 5\n");
}

static void test_limits(void **state)
{
	(void)state;
	char deep[TOML_MAX_DEPTH * 2 + 16];
	size_t n = 0;
	struct toml_doc *d = NULL;
	char err[200];

	memcpy(deep, "x = ", 4);
	n = 4;
	for (int k = 0; k < TOML_MAX_DEPTH + 1; k++)
		deep[n++] = '[';
	deep[n] = '\0';
	expect_err(deep, "nested more than");
	assert_int_equal(toml_parse((const uint8_t *)"", 0, &d, err, sizeof(err)), KMS_OK);
	assert_int_equal(toml_table_len(toml_root(d)), 0);
	toml_free(d);
	d = NULL;
	assert_int_equal(toml_parse((const uint8_t *)"x", TOML_MAX_INPUT + 1, &d, err, sizeof(err)),
			 KMS_ERR_TOO_LARGE);
	assert_null(d);
	/* error text truncation never overflows */
	assert_int_equal(toml_parse((const uint8_t *)"a=\n", 3, &d, err, 8), KMS_ERR_FORMAT);
	assert_int_equal(strlen(err), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tmkms_shape),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_integers_and_arrays),
		cmocka_unit_test(test_tables_and_dotted_keys),
		cmocka_unit_test(test_errors_name_lines),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
