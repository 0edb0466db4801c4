/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of the tmkms.toml -> p11kms.conf conversion (src/cli/migrate.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "migrate.h"
#include "p11kms/cmd.h"
#include "p11kms/cfg.h"
#include "p11kms/kbuf.h"
#include "testutil.h"

static const struct migrate_opts opts = {
	.src_name = "tmkms.toml",
	.tmkms_cwd = "/home/val/tmkms",
	.out_dir = "/etc/p11kms",
};

static char *text(const struct kbuf *b)
{
	size_t n = kbuf_len(b);
	char *s = malloc(n + 1);

	assert_non_null(s);
	memcpy(s, kbuf_ptr(b), n);
	s[n] = '\0';
	return s;
}

static void contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("'%s' not found in:\n%s", needle, hay);
}

static struct migrate_result *convert_ok(const char *toml)
{
	struct migrate_result *res = NULL;
	int r = migrate_convert((const uint8_t *)toml, strlen(toml), &opts, &res);

	assert_non_null(res);
	if (r != KMS_OK) {
		char *e = text(res->errors);

		fail_msg("conversion failed: %s", e);
	}
	assert_int_equal(kbuf_len(res->errors), 0);
	return res;
}

/* The converted config must pass the daemon's own schema validation. */
static struct cfg *load_converted(const struct migrate_result *res)
{
	struct cfg *cfg = NULL;
	char err[CFG_ERR_MAX] = "";
	int r = cfg_parse_string(kbuf_ptr(res->conf), kbuf_len(res->conf), "converted",
				 opts.out_dir, &cfg, err, sizeof(err));

	if (r != KMS_OK) {
		char *c = text(res->conf);

		fail_msg("cfg_parse_string: %s\n%s", err, c);
	}
	return cfg;
}

static char *read_example(const char *name)
{
	char path[1024];
	FILE *f;
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(buf);
	(void)snprintf(path, sizeof(path), "%s/tests/integration/haqq/%s",
		       getenv("P11KMS_SOURCE_DIR") ? getenv("P11KMS_SOURCE_DIR") :
						     P11KMS_SOURCE_DIR,
		       name);
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	n = fread(buf, 1, 65535, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void check_haqq(const char *file, const char *chain_id)
{
	char *toml = read_example(file);
	struct migrate_result *res = convert_ok(toml);
	struct cfg *cfg = load_converted(res);
	const struct cfg_chain *c;
	const struct cfg_key *k;
	char state[128];

	assert_int_equal(cfg->n_chains, 1);
	c = cfg_chain_find(cfg, chain_id);
	assert_non_null(c);
	assert_int_equal(c->key_format, CFG_KEY_FORMAT_COSMOS_JSON);
	assert_string_equal(c->consensus_key_prefix, "haqqvalconspub");
	assert_string_equal(c->account_key_prefix, "haqqpub");
	(void)snprintf(state, sizeof(state), "/etc/p11kms/state/%s.state", chain_id);
	assert_string_equal(c->state_file, state);
	k = cfg_key_for_chain(cfg, chain_id);
	assert_non_null(k);
	assert_int_equal(k->kind, CFG_KEY_SOFTSIGN);
	assert_string_equal(k->softsign, "/root/tmkms/config/secrets/priv_validator_key");
	assert_int_equal(cfg->n_validators, 1);
	assert_string_equal(cfg->validators[0].chain_id, chain_id);
	assert_string_equal(cfg->validators[0].addr, "tcp://123.456.32.123:688");
	assert_string_equal(cfg->validators[0].secret_key,
			    "/root/tmkms/config/secrets/secret_connection_key");
	assert_int_equal(cfg->validators[0].protocol_version, CFG_PROTO_V0_34);
	assert_int_equal(cfg->validators[0].reconnect, 1);
	/* the tmkms state file is converted into state/<chain>.state */
	assert_int_equal(res->n_states, 1);
	assert_string_equal(res->states[0].chain_id, chain_id);
	assert_string_equal(res->states[0].from,
			    "/root/tmkms/config/state/priv_validator_state.json");
	assert_string_equal(res->states[0].to, state + strlen("/etc/p11kms/"));
	cfg_free(cfg);
	migrate_result_free(res);
	free(toml);
}

static void test_haqq_mainnet(void **s)
{
	(void)s;
	check_haqq("tmkms-mainnet.toml", "haqq_11235-1");
}

static void test_haqq_testedge(void **s)
{
	(void)s;
	check_haqq("tmkms-testedge.toml", "haqq_53211-1");
}

static void test_relative_paths_and_defaults(void **s)
{
	(void)s;
	const char *toml =
		"[[chain]]\nid = \"cosmoshub-4\"\n"
		"key_format = { type = \"bech32\", account_key_prefix = \"cosmospub\", "
		"consensus_key_prefix = \"cosmosvalconspub\" }\n"
		"[[providers.softsign]]\nchain_ids = [\"cosmoshub-4\"]\n"
		"key_format = \"json\"\npath = \"./secrets/priv_validator_key.json\"\n"
		"[[validator]]\nchain_id = \"cosmoshub-4\"\naddr = \"tcp://10.0.0.1:26658\"\n"
		"secret_key = \"secrets/kms-identity.key\"\ntimeout = 5\nmax_height = 5000000000\n"
		"reconnect = false\n";
	struct migrate_result *res = convert_ok(toml);
	struct cfg *cfg = load_converted(res);
	char *notes = text(res->notes);

	/* relative paths: against tmkms's working directory, and said so */
	assert_string_equal(cfg->keys[0].softsign,
			    "/home/val/tmkms/secrets/priv_validator_key.json");
	assert_string_equal(cfg->validators[0].secret_key,
			    "/home/val/tmkms/secrets/kms-identity.key");
	contains(
		notes,
		"relative path \"./secrets/priv_validator_key.json\" resolved to /home/val/tmkms/secrets/priv_validator_key.json");
	/* default state file: <chain_id>_priv_validator_state.json in the CWD */
	assert_string_equal(res->states[0].from,
			    "/home/val/tmkms/cosmoshub-4_priv_validator_state.json");
	/* missing protocol_version: auto (serves v0.38 as tmkms 0.15 did, and the rest), noted */
	assert_int_equal(cfg->validators[0].protocol_version, CFG_PROTO_AUTO);
	contains(notes, "no protocol_version: tmkms 0.15 defaults to v0.38; this config says \"auto\"");
	assert_int_equal(cfg->validators[0].timeout_ms, 5000);
	assert_true(cfg->validators[0].max_height == 5000000000ull);
	assert_int_equal(cfg->validators[0].reconnect, 0);
	assert_int_equal(cfg->chains[0].key_format, CFG_KEY_FORMAT_BECH32);
	free(notes);
	cfg_free(cfg);
	migrate_result_free(res);
}

static void test_yubihsm(void **s)
{
	(void)s;
	const char *toml =
		"[[chain]]\nid = \"a-1\"\nkey_format = { type = \"hex\" }\nstate_file = \"/s/a.json\"\n"
		"sign_extensions = true\n"
		"[[chain]]\nid = \"b-1\"\nkey_format = { type = \"hex\" }\nstate_file = \"/s/b.json\"\n"
		"[[providers.yubihsm]]\nadapter = { type = \"http\", addr = \"tcp://127.0.0.1:12345\" }\n"
		"auth = { key = 4, password_file = \"/etc/tmkms/pw\" }\n"
		"keys = [{ chain_ids = [\"a-1\"], key = 1 }, { chain_ids = [\"b-1\"], key = 0x0102, type = \"consensus\" }]\n"
		"serial_number = \"0123456789\"\n"
		"[[validator]]\nchain_id = \"a-1\"\naddr = \"unix:///run/a.sock\"\nprotocol_version = \"v0.38\"\n";
	struct migrate_result *res = convert_ok(toml);
	struct cfg *cfg = load_converted(res);
	char *notes = text(res->notes);
	const struct cfg_key *ka = cfg_key_for_chain(cfg, "a-1"),
			     *kb = cfg_key_for_chain(cfg, "b-1");

	assert_non_null(ka);
	assert_non_null(kb);
	assert_int_equal(ka->kind, CFG_KEY_PKCS11);
	assert_string_equal(ka->profile, "yubihsm2");
	/* key 1 -> CKA_ID 00 01; key 0x0102 -> 01 02 */
	assert_string_equal(ka->uri, "pkcs11:token=YubiHSM;id=%00%01;type=private?module-name="
				     "yubihsm_pkcs11&pin-source=/etc/p11kms/yubihsm.pin");
	contains(kb->uri, "id=%01%02;");
	/* the PIN note explains the auth key id prefix */
	contains(notes, "0004<password> for auth key 4");
	contains(notes, "connector=http://127.0.0.1:12345 ");
	contains(notes, "serial_number 0123456789");
	assert_int_equal(cfg_chain_find(cfg, "a-1")->sign_extensions, 1);
	assert_int_equal(res->n_states, 2);
	assert_string_equal(res->states[1].from, "/s/b.json");
	free(notes);
	cfg_free(cfg);
	migrate_result_free(res);
}

static void expect_fail(const char *toml, const char *needle)
{
	struct migrate_result *res = NULL;
	int r = migrate_convert((const uint8_t *)toml, strlen(toml), &opts, &res);
	char *e;

	assert_int_equal(r, KMS_ERR_CONFIG);
	assert_non_null(res);
	e = text(res->errors);
	if (strstr(e, needle) == NULL)
		fail_msg("'%s' not in errors:\n%s", needle, e);
	free(e);
	migrate_result_free(res);
}

#define BASE_CHAIN "[[chain]]\nid = \"c-1\"\nkey_format = { type = \"hex\" }\n"
#define BASE_SOFT "[[providers.softsign]]\nchain_ids = [\"c-1\"]\npath = \"/k\"\n"

static void test_refusals(void **s)
{
	(void)s;
	/* malformed TOML: the reader's line number reaches the operator */
	expect_fail("[[chain]]\nid = \"x\"\n\nkey_format = { type = \"hex\"\n",
		    "tmkms.toml: line 4:");
	expect_fail("[[chain]]\nid = unquoted\n", "tmkms.toml: line 2: invalid value");
	/* old protocol versions */
	expect_fail(BASE_CHAIN BASE_SOFT "[[validator]]\nchain_id = \"c-1\"\naddr = \"unix:///x\"\n"
					 "protocol_version = \"legacy\"\n",
		    "tmkms.toml:10: validator[0]: protocol_version \"legacy\" (Tendermint <= 0.33");
	expect_fail(BASE_CHAIN BASE_SOFT "[[validator]]\nchain_id = \"c-1\"\naddr = \"unix:///x\"\n"
					 "protocol_version = \"v0.33\"\n",
		    "not supported");
	/* unsupported providers and sections, each with what to do instead */
	expect_fail(BASE_CHAIN "[[providers.ledgertm]]\nchain_ids = [\"c-1\"]\n",
		    "tmkms.toml:4: providers.ledgertm: Ledger devices are not supported");
	expect_fail(BASE_CHAIN BASE_SOFT
		    "[[providers.fortanixdsm]]\napi_endpoint = \"https://x\"\n",
		    "Fortanix's PKCS#11 library");
	expect_fail(BASE_CHAIN BASE_SOFT "[[tx_signer]]\nchain_id = \"c-1\"\n",
		    "tx_signer: transaction signing");
	/* schema problems */
	expect_fail(BASE_CHAIN BASE_SOFT
		    "[[validator]]\nchain_id = \"c-2\"\naddr = \"unix:///x\"\n",
		    "chain_id \"c-2\" has no [[chain]] entry");
	expect_fail(
		BASE_CHAIN
		"[[providers.softsign]]\nchain_ids = [\"c-1\"]\nkey_type = \"account\"\npath = \"/k\"\n",
		"account (secp256k1) keys are not supported");
	expect_fail(BASE_CHAIN BASE_SOFT BASE_SOFT, "already has a consensus key");
	expect_fail(BASE_CHAIN "[providers]\n", "chain \"c-1\" has no consensus key");
	expect_fail(BASE_CHAIN BASE_SOFT
		    "[[validator]]\nchain_id = \"c-1\"\naddr = \"tcp://h:1\"\n",
		    "'secret_key' is missing");
	expect_fail(BASE_CHAIN BASE_SOFT
		    "[[validator]]\nchain_id = \"c-1\"\naddr = \"unix:///x\"\nbogus = 1\n",
		    "tmkms.toml:10: validator[0]: unknown key 'bogus'");
	expect_fail("[[chain]]\nid = \"c-1\"\nkey_format = { type = \"bech32\" }\n" BASE_SOFT,
		    "needs account_key_prefix and consensus_key_prefix");
	expect_fail(
		BASE_CHAIN BASE_SOFT
		"[[providers.yubihsm]]\nadapter = { type = \"usb\" }\n"
		"auth = { key = 1, password_file = \"/p\" }\nkeys = [{ chain_ids = [\"c-2\"], key = 70000 }]\n",
		"YubiHSM object id 1..65535");
	expect_fail("", "no [[chain]] entries");
	/* values cfg would refuse are caught here, with the tmkms.toml line */
	expect_fail(
		"[[chain]]\nid = \"c-1\"\nkey_format = { type = \"bech32\", account_key_prefix = "
		"\"Cosmos\", consensus_key_prefix = \"cosmosvalconspub\" }\n" BASE_SOFT,
		"tmkms.toml:3: key_format: account_key_prefix \"Cosmos\" is not a lower-case");
	expect_fail(BASE_CHAIN BASE_SOFT
		    "[[validator]]\nchain_id = \"c-1\"\naddr = \"tcp://h:99999\"\n"
		    "secret_key = \"/k\"\n",
		    "tmkms.toml:9: validator[0]: addr \"tcp://h:99999\"");
	expect_fail("[[chain]]\nid = \"a b\"\nkey_format = { type = \"hex\" }\n", "is not valid");
	expect_fail(BASE_CHAIN "[[providers.softsign]]\nchain_ids = [\"c-1\"]\npath = \"/k\\n\"\n",
		    "'path' contains a control character");
}

static void test_state_name(void **s)
{
	(void)s;
	char out[64];

	assert_int_equal(migrate_state_name("haqq_11235-1", out, sizeof(out)), KMS_OK);
	assert_string_equal(out, "state/haqq_11235-1.state");
	assert_int_equal(migrate_state_name("../x/y", out, sizeof(out)), KMS_OK);
	assert_string_equal(out, "state/.._x_y.state");
	assert_int_equal(migrate_state_name("abc", out, 10), KMS_ERR_NO_SPACE);
}

static void test_cli_helpers(void **s)
{
	(void)s;
	struct kbuf *b = kbuf_new(256);
	char out[64], *p;

	assert_non_null(b);
	/* libconfig string literals: quotes, backslashes and control bytes escaped */
	assert_int_equal(cli_bput_cstr(b, "a\"b\\c\x01"), KMS_OK);
	p = text(b);
	assert_string_equal(p, "\"a\\\"b\\\\c\\x01\"");
	free(p);
	kbuf_free(b);
	p = cli_path_join("/etc/p11kms", "./secrets/x.key");
	assert_string_equal(p, "/etc/p11kms/secrets/x.key");
	free(p);
	p = cli_path_join("/etc/p11kms/", "/abs");
	assert_string_equal(p, "/abs");
	free(p);
	p = cli_dirname("conf/p11kms.conf");
	assert_string_equal(p, "conf");
	free(p);
	p = cli_dirname("p11kms.conf");
	assert_string_equal(p, ".");
	free(p);
	assert_int_equal(cli_cons_addr_prefix("haqqvalconspub", out, sizeof(out)), KMS_OK);
	assert_string_equal(out, "haqqvalcons");
	assert_int_equal(cli_cons_addr_prefix("hex", out, sizeof(out)), KMS_ERR_FORMAT);
	assert_int_equal(cmd_exit_for(KMS_OK), CMD_EXIT_OK);
	assert_int_equal(cmd_exit_for(KMS_ERR_PERM), CMD_EXIT_PERM);
	assert_int_equal(cmd_exit_for(KMS_ERR_PIN_INCORRECT), CMD_EXIT_KEY);
	assert_int_equal(cmd_exit_for(KMS_ERR_LOCKED), CMD_EXIT_STATE);
	assert_int_equal(cmd_exit_for(KMS_ERR_CONFIG), CMD_EXIT_CONFIG);
	assert_non_null(cli_chain_preset_find("haqq_53211-1"));
	assert_null(cli_chain_preset_find("cosmoshub-4"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_haqq_mainnet),
		cmocka_unit_test(test_haqq_testedge),
		cmocka_unit_test(test_relative_paths_and_defaults),
		cmocka_unit_test(test_yubihsm),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_state_name),
		cmocka_unit_test(test_cli_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
