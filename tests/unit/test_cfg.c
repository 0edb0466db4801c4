/* SPDX-License-Identifier: Apache-2.0 */
/* cfg_: a full valid config, defaults, path resolution, and one clear error per kind of mistake. */
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

#include "p11kms/cfg.h"
#include "testutil.h"

static int parse(const char *text, struct cfg **out, char *err, size_t cap)
{
	return cfg_parse_string((const uint8_t *)text, strlen(text), "t.conf", "/etc/p11kms", out,
				err, cap);
}

#define NODE_ID "6b1d1b1dd7b6d3bd1c2c2e1b39b36e2c5a0e3a8f"

static const char *good =
	"# two chains, three validators\n"
	"chains = (\n"
	"  { id = \"haqq_11235-1\"; key_format = \"bech32\";\n"
	"    account_key_prefix = \"haqq\"; consensus_key_prefix = \"haqqvalconspub\";\n"
	"    state_file = \"state/haqq_11235-1.state\"; },\n"
	"  { id = \"haqq_53211-1\"; key_format = \"cosmos-json\";\n"
	"    state_file = \"/var/lib/p11kms/t.state\"; sign_extensions = true; }\n"
	");\n"
	"keys = (\n"
	"  { chain_ids = [ \"haqq_11235-1\" ]; softsign = \"secrets/cons.key\"; },\n"
	"  { chain_ids = [ \"haqq_53211-1\" ];\n"
	"    uri = \"pkcs11:token=v;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so\";\n"
	"    profile = \"softhsm2\"; pin_env = \"P11KMS_PIN\"; }\n"
	");\n"
	"validators = (\n"
	"  { chain_id = \"haqq_11235-1\"; addr = \"tcp://" NODE_ID "@10.0.0.1:26659\";\n"
	"    secret_key = \"secrets/id.key\"; protocol_version = \"v0.37\"; },\n"
	"  { chain_id = \"haqq_11235-1\"; addr = \"tcp://10.0.0.2:26659\";\n"
	"    secret_key = \"/abs/id.key\"; protocol_version = \"v0.34\"; reconnect = false;\n"
	"    timeout = 3; max_height = 5000000000L; backoff_min_ms = 50; backoff_max_ms = 800;\n"
	"    max_msg_size = 4096; redial_ms = 250; },\n"
	"  { chain_id = \"haqq_53211-1\"; addr = \"unix:///run/p11kms/node.sock\";\n"
	"    protocol_version = \"v1\"; timeout_ms = 2500; },\n"
	"  { chain_id = \"haqq_53211-1\"; addr = \"unix:///run/p11kms/node2.sock\"; }\n"
	");\n"
	"log = { level = \"debug\"; file = \"log/p11kms.log\"; };\n";

static void test_good(void **state)
{
	(void)state;
	struct cfg *c = NULL;
	char err[CFG_ERR_MAX];
	assert_int_equal(parse(good, &c, err, sizeof(err)), KMS_OK);
	assert_non_null(c);
	assert_string_equal(c->dir, "/etc/p11kms");
	assert_int_equal(c->n_chains, 2);
	assert_string_equal(c->chains[0].id, "haqq_11235-1");
	assert_int_equal(c->chains[0].key_format, CFG_KEY_FORMAT_BECH32);
	assert_string_equal(c->chains[0].account_key_prefix, "haqq");
	assert_string_equal(c->chains[0].consensus_key_prefix, "haqqvalconspub");
	assert_string_equal(c->chains[0].state_file, "/etc/p11kms/state/haqq_11235-1.state");
	assert_int_equal(c->chains[0].sign_extensions, 1); /* default on: spec §3.6 */
	assert_int_equal(c->chains[0].line, 3);
	assert_int_equal(c->chains[1].key_format, CFG_KEY_FORMAT_COSMOS_JSON);
	assert_null(c->chains[1].consensus_key_prefix);
	assert_string_equal(c->chains[1].state_file, "/var/lib/p11kms/t.state");
	assert_int_equal(c->chains[1].sign_extensions, 1);

	assert_int_equal(c->n_keys, 2);
	assert_int_equal(c->keys[0].kind, CFG_KEY_SOFTSIGN);
	assert_string_equal(c->keys[0].softsign, "/etc/p11kms/secrets/cons.key");
	assert_null(c->keys[0].uri);
	assert_int_equal(c->keys[1].kind, CFG_KEY_PKCS11);
	assert_string_equal(c->keys[1].profile, "softhsm2");
	assert_string_equal(c->keys[1].pin_env, "P11KMS_PIN");
	assert_null(c->keys[1].softsign);
	assert_ptr_equal(cfg_key_for_chain(c, "haqq_53211-1"), &c->keys[1]);
	assert_ptr_equal(cfg_chain_find(c, "haqq_11235-1"), &c->chains[0]);
	assert_null(cfg_chain_find(c, "nope"));
	assert_null(cfg_key_for_chain(c, "nope"));

	assert_int_equal(c->n_validators, 4);
	const struct cfg_validator *v = &c->validators[0];
	assert_int_equal(v->net.scheme, NET_TCP);
	assert_int_equal(v->net.has_node_id, 1);
	assert_int_equal(v->net.node_id[0], 0x6b);
	assert_string_equal(v->net.host, "10.0.0.1");
	assert_string_equal(v->net.port, "26659");
	assert_string_equal(v->secret_key, "/etc/p11kms/secrets/id.key");
	assert_int_equal(v->protocol_version, CFG_PROTO_V0_37);
	assert_int_equal(v->reconnect, 1);
	assert_int_equal(v->timeout_ms, CFG_DEFAULT_TIMEOUT_MS);
	assert_int_equal(v->max_height, 0);
	assert_int_equal(v->backoff_min_ms, 100);
	assert_int_equal(v->backoff_max_ms, 5000);
	assert_int_equal(v->max_msg_size, CFG_DEFAULT_MAX_MSG_SIZE);
	assert_int_equal(v->redial_ms, CFG_DEFAULT_REDIAL_MS);
	assert_int_equal(CFG_DEFAULT_REDIAL_MS, 500);
	v = &c->validators[1];
	assert_int_equal(v->net.has_node_id, 0);
	assert_string_equal(v->secret_key, "/abs/id.key");
	assert_int_equal(v->reconnect, 0);
	assert_int_equal(v->timeout_ms, 3000);
	assert_true(v->max_height == 5000000000ULL);
	assert_int_equal(v->backoff_min_ms, 50);
	assert_int_equal(v->backoff_max_ms, 800);
	assert_int_equal(v->max_msg_size, 4096);
	assert_int_equal(v->redial_ms, 250);
	v = &c->validators[2];
	assert_int_equal(v->net.scheme, NET_UNIX);
	assert_string_equal(v->net.path, "/run/p11kms/node.sock");
	assert_null(v->secret_key);
	assert_int_equal(v->protocol_version, CFG_PROTO_V1);
	assert_int_equal(v->timeout_ms, 2500);
	/* #17: no protocol_version means auto, the form every node version reads */
	v = &c->validators[3];
	assert_int_equal(v->protocol_version, CFG_PROTO_AUTO);

	assert_int_equal(c->has_log_level, 1);
	assert_int_equal(c->log_level, KMS_LOG_DEBUG);
	assert_string_equal(c->log_file, "/etc/p11kms/log/p11kms.log");
	cfg_free(c);
}

static void test_names(void **state)
{
	(void)state;
	enum cfg_proto p;
	enum cfg_key_format f;
	assert_int_equal(cfg_proto_parse("v0.38", &p), KMS_OK);
	assert_int_equal(p, CFG_PROTO_V0_38);
	assert_int_equal(cfg_proto_parse("v0.39", &p), KMS_OK);
	assert_int_equal(p, CFG_PROTO_V0_38);
	assert_int_equal(cfg_proto_parse("v1.0", &p), KMS_OK);
	assert_int_equal(p, CFG_PROTO_V1);
	assert_int_equal(cfg_proto_parse("v0.33", &p), KMS_ERR_FORMAT);
	assert_string_equal(cfg_proto_name(CFG_PROTO_V0_34), "v0.34");
	assert_string_equal(cfg_proto_name(CFG_PROTO_V1), "v1");
	assert_int_equal(cfg_proto_parse("auto", &p), KMS_OK);
	assert_int_equal(p, CFG_PROTO_AUTO);
	assert_string_equal(cfg_proto_name(CFG_PROTO_AUTO), "auto");
	assert_int_equal(cfg_key_format_parse("hex", &f), KMS_OK);
	assert_int_equal(f, CFG_KEY_FORMAT_HEX);
	assert_int_equal(cfg_key_format_parse("base64", &f), KMS_ERR_FORMAT);
	assert_string_equal(cfg_key_format_name(CFG_KEY_FORMAT_COSMOS_JSON), "cosmos-json");
}

static void test_default_path(void **state)
{
	(void)state;
	char p[64];
	char small[4];
	unsetenv("P11KMS_CONFIG");
	assert_int_equal(cfg_default_path(NULL, p, sizeof(p)), KMS_OK);
	assert_string_equal(p, "./p11kms.conf");
	setenv("P11KMS_CONFIG", "/etc/p11kms/p11kms.conf", 1);
	assert_int_equal(cfg_default_path(NULL, p, sizeof(p)), KMS_OK);
	assert_string_equal(p, "/etc/p11kms/p11kms.conf");
	assert_int_equal(cfg_default_path("x.conf", p, sizeof(p)), KMS_OK);
	assert_string_equal(p, "x.conf");
	setenv("P11KMS_CONFIG", "", 1);
	assert_int_equal(cfg_default_path(NULL, p, sizeof(p)), KMS_OK);
	assert_string_equal(p, "./p11kms.conf");
	assert_int_equal(cfg_default_path("toolong", small, sizeof(small)), KMS_ERR_NO_SPACE);
	unsetenv("P11KMS_CONFIG");
}

/* Minimal valid pieces the bad cases below are built from. */
#define CH "chains = ( { id = \"c1\"; state_file = \"s\"; } );\n"
#define KY "keys = ( { chain_ids = [\"c1\"]; softsign = \"k\"; } );\n"
#define VA(extra)                                                                         \
	"validators = ( { chain_id = \"c1\"; addr = \"tcp://h:1\"; secret_key = \"i\";\n" \
	"  protocol_version = \"v0.37\"; " extra " } );\n"

struct bad {
	const char *text;
	const char *want; /* substring of the error */
};

static const struct bad bad_cases[] = {
	{ CH KY VA("") "bogus = 1;\n", "t.conf:5: bogus: unknown key" },
	{ CH KY VA("timout = 3;"), "t.conf:4: validators[0].timout: unknown key" },
	{ CH KY VA("timeout = \"10\";"),
	  "t.conf:4: validators[0].timeout: must be an integer, found a string" },
	{ CH KY VA("timeout = 0;"), "validators[0].timeout: 0 is out of range" },
	{ CH KY VA("timeout = 3; timeout_ms = 5;"),
	  "give timeout (seconds) or timeout_ms, not both" },
	{ CH KY VA("reconnect = 1;"), "validators[0].reconnect: must be true or false" },
	{ CH KY VA("max_height = -1;"), "validators[0].max_height: -1 is out of range" },
	{ CH KY VA("backoff_min_ms = 500; backoff_max_ms = 100;"),
	  "backoff_max_ms: 100 is below backoff_min_ms 500" },
	{ CH KY VA("max_msg_size = 10;"), "validators[0].max_msg_size: 10 is out of range" },
	{ CH KY "validators = ( { chain_id = \"c2\"; addr = \"tcp://h:1\"; secret_key = \"i\";\n"
		"  protocol_version = \"v0.37\"; } );\n",
	  "t.conf:3: validators[0].chain_id: no chain \"c2\" in chains" },
	{ CH KY VA("redial_ms = 5;"), "validators[0].redial_ms: 5 is out of range" },
	/* #17: libconfig says only "syntax error"; what it expected is named */
	{ CH KY VA("") "log = { level = info; };\n",
	  "t.conf:5: syntax error: expected a value after '=': text values need double quotes "
	  "(\"info\")" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; }\n  { id = \"c2\"; } );\n",
	  "t.conf:2: syntax error: expected ',' between the entries of a list or array before '{'" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; );\n",
	  "syntax error: expected '}' to close the '{' opened at line 1, found ')'" },
	{ CH KY VA("") "}\n", "t.conf:5: syntax error: unexpected '}': nothing is open here" },
	{ "[[chain]]\nid = \"haqq_11235-1\"\n",
	  "t.conf:1: syntax error: this is TOML (a tmkms.toml?), not a p11kms config: convert it "
	  "with `p11kms migrate t.conf -o p11kms.conf`" },
	{ "chains = ( { id = \"c1; state_file = \"s\"; } );\n",
	  "syntax error: a string is not closed: a '\"' is missing (line 1)" },
	{ CH KY VA("redial_ms = \"fast\";"), "validators[0].redial_ms: must be an integer" },
	{ CH KY VA(""), NULL }, /* sanity: the base is valid */
	{ CH KY
	  "validators = ( { chain_id = \"c1\"; addr = \"tcp://h:1\"; protocol_version = \"v0.37\"; } );\n",
	  "validators[0].secret_key: missing: tcp:// needs" },
	{ CH KY "validators = ( { chain_id = \"c1\"; addr = \"ftp://h:1\"; secret_key = \"i\";\n"
		"  protocol_version = \"v0.37\"; } );\n",
	  "t.conf:3: validators[0].addr: \"ftp://h:1\"" },
	{ CH KY "validators = ( { chain_id = \"c1\"; addr = \"tcp://h:1\"; secret_key = \"i\";\n"
		"  protocol_version = \"v0.36\"; } );\n",
	  "t.conf:4: validators[0].protocol_version: \"v0.36\" is not one of" },
	{ CH KY "validators = ( { chain_id = \"c1\"; addr = \"tcp://h:1\"; secret_key = \"i\";\n"
		"  protocol_version = \"v0.33\"; } );\n",
	  "amino framing is not supported" },
	{ CH KY VA("") "validators2 = 1;\n", "t.conf:5: validators2: unknown key" },
	{ CH KY
	  "validators = ( { chain_id = \"c1\"; addr = \"tcp://h:1\"; secret_key = \"i\"; protocol_version = \"v1\"; },\n"
	  "  { chain_id = \"c1\"; addr = \"tcp://h:1\"; secret_key = \"i\"; protocol_version = \"v1\"; } );\n",
	  "t.conf:4: validators[1].addr: \"tcp://h:1\" is already used at line 3" },
	{ CH "keys = ( { chain_ids = [\"c1\"]; softsign = \"k\"; },\n"
	     "  { chain_ids = [\"c1\"]; uri = \"pkcs11:token=x\"; } );\n",
	  "t.conf:3: keys[1].chain_ids: chain \"c1\" already has a key (keys[0], line 2)" },
	{ CH "keys = ( { chain_ids = [\"c1\", \"c9\"]; softsign = \"k\"; } );\n",
	  "t.conf:2: keys[0].chain_ids: no chain \"c9\" in chains" },
	{ CH "keys = ( );\n", "t.conf:1: chains[0]: no key signs for chain \"c1\"" },
	{ CH "keys = ( { chain_ids = [\"c1\"]; } );\n", "keys[0]: give exactly one of uri" },
	{ CH "keys = ( { chain_ids = [\"c1\"]; softsign = \"k\"; uri = \"pkcs11:\"; } );\n",
	  "keys[0]: give exactly one of uri" },
	{ CH "keys = ( { chain_ids = [\"c1\"]; uri = \"file:///x\"; } );\n",
	  "t.conf:2: keys[0].uri: must be an RFC 7512 URI" },
	{ CH "keys = ( { chain_ids = [\"c1\"]; uri = \"pkcs11:x\"; pin_env = \"1PIN\"; } );\n",
	  "keys[0].pin_env: \"1PIN\" is not an environment variable name" },
	{ CH "keys = ( { chain_ids = [\"c1\"]; softsign = \"k\"; pin_env = \"P\"; } );\n",
	  "keys[0].pin_env: only for uri keys" },
	{ CH "keys = ( { chain_ids = \"c1\"; softsign = \"k\"; } );\n",
	  "t.conf:2: keys[0].chain_ids: must be an array of strings" },
	{ CH "keys = ( { chain_ids = [ ]; softsign = \"k\"; } );\n",
	  "keys[0].chain_ids: must name at least one chain" },
	{ CH "keys = ( { chain_ids = [\"c1\", \"c1\"]; softsign = \"k\"; } );\n",
	  "keys[0].chain_ids: \"c1\" is listed twice" },
	{ "chains = ( { id = \"c1\"; } );\n" KY,
	  "t.conf:1: chains[0].state_file: missing (required)" },
	{ "chains = ( { id = \"c1\"; state_file = \"\"; } );\n" KY,
	  "chains[0].state_file: must not be empty" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; key_format = \"base64\"; } );\n" KY,
	  "chains[0].key_format: \"base64\" is not one of" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; key_format = \"bech32\"; } );\n" KY,
	  "chains[0].consensus_key_prefix: missing: key_format \"bech32\" needs it" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; consensus_key_prefix = \"Haqq\"; } );\n" KY,
	  "chains[0].consensus_key_prefix: \"Haqq\" is not a lower-case bech32 prefix" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; sign_extensions = \"yes\"; } );\n" KY,
	  "chains[0].sign_extensions: must be true or false, found a string" },
	{ "chains = ( { id = \"012345678901234567890123456789012345678901234567890\"; state_file = \"s\"; } );\n",
	  "chains[0].id: chain id \"012345678901234567890123456789012345678901234567890\" is 51 bytes" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; },\n  { id = \"c1\"; state_file = \"t\"; } );\n" KY,
	  "t.conf:2: chains[1].id: chain \"c1\" is already defined at line 1" },
	{ "chains = ( { id = \"c1\"; state_file = \"s\"; },\n  { id = \"c2\"; state_file = \"s\"; } );\n"
	  "keys = ( { chain_ids = [\"c1\", \"c2\"]; softsign = \"k\"; } );\n",
	  "chains[1].state_file: /etc/p11kms/s is also the state file of chain \"c1\"" },
	{ "chains = { id = \"c1\"; };\n", "t.conf:1: chains: must be a list of groups" },
	{ "chains = ( \"c1\" );\n", "t.conf:1: chains[0]: must be a group" },
	{ "chains = ( );\n", "chains: no chains configured" },
	{ "", "chains: no chains configured" },
	{ CH KY "log = { level = \"loud\"; };\n", "t.conf:3: log.level: \"loud\" is not one of" },
	{ CH KY "log = { lvl = \"info\"; };\n", "t.conf:3: log.lvl: unknown key" },
	{ CH KY "log = \"info\";\n", "t.conf:3: log: must be a group" },
	{ CH KY VA("secret_key_pin_env = \"PIN\";"),
	  "secret_key_pin_env: only for a secret_key that is a pkcs11: URI" },
	{ "chains = ( { id = \"c1\";\n state_file = ; } );\n", "t.conf:2: syntax error" },
	{ "@include \"/etc/passwd\"\n" CH KY, "t.conf:1: @include: not supported" },
	/* metrics and log.format (#18) */
	{ CH KY "metrics = { listen = \"0.0.0.0:26661\"; };\n",
	  "metrics.listen: \"0.0.0.0:26661\" is not a loopback address" },
	{ CH KY "metrics = { listen = \"10.1.2.3:26661\"; allow_remote = false; };\n",
	  "is not a loopback address" },
	{ CH KY "metrics = { listen = \"[::]:26661\"; };\n", "is not a loopback address" },
	{ CH KY "metrics = { listen = \"metrics.example:26661\"; };\n",
	  "is not a loopback address" },
	{ CH KY "metrics = { listen = \"10.1.2.3:26661\"; allow_remote = true; };\n", NULL },
	{ CH KY "metrics = { listen = \"[::1]:26661\"; };\n", NULL },
	{ CH KY "metrics = { listen = \"127.0.0.1\"; };\n", "metrics.listen: \"127.0.0.1\": missing port" },
	{ CH KY "metrics = { listen = \"127.0.0.1:99999\"; };\n", "port must be a number" },
	{ CH KY "metrics = { listen = \"tcp://127.0.0.1:1\"; };\n", "expected host:port" },
	{ CH KY "metrics = { port = 1; };\n", "metrics.port: unknown key" },
	{ CH KY "metrics = \"127.0.0.1:1\";\n", "metrics: must be a group" },
	{ CH KY "log = { format = \"logfmt\"; };\n",
	  "log.format: \"logfmt\" is not one of \"text\", \"json\"" },
};

static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct cfg *c = (struct cfg *)0x1;
		char err[CFG_ERR_MAX];
		int r = parse(bad_cases[i].text, &c, err, sizeof(err));
		if (bad_cases[i].want == NULL) {
			if (r != KMS_OK)
				fail_msg("case %zu: unexpected error: %s", i, err);
			cfg_free(c);
			continue;
		}
		if (r != KMS_ERR_CONFIG)
			fail_msg("case %zu: r=%d, want KMS_ERR_CONFIG (text: %s)", i, r,
				 bad_cases[i].text);
		assert_null(c);
		if (strstr(err, bad_cases[i].want) == NULL)
			fail_msg("case %zu: error \"%s\" does not contain \"%s\"", i, err,
				 bad_cases[i].want);
	}
}

static void test_metrics_and_log_format(void **state)
{
	(void)state;
	struct cfg *c = NULL;
	char err[CFG_ERR_MAX];
	assert_int_equal(parse(CH KY, &c, err, sizeof(err)), KMS_OK);
	assert_null(c->metrics_listen); /* off by default */
	assert_int_equal(c->log_format, KMS_LOG_FORMAT_TEXT);
	cfg_free(c);
	assert_int_equal(parse(CH KY "metrics = { };\nlog = { format = \"json\"; };\n", &c, err,
			       sizeof(err)),
			 KMS_OK);
	assert_string_equal(c->metrics_listen, "127.0.0.1:26661");
	assert_int_equal(c->metrics_allow_remote, 0);
	assert_int_equal(c->log_format, KMS_LOG_FORMAT_JSON);
	cfg_free(c);
	assert_int_equal(parse(CH KY "metrics = { listen = \"localhost:9\"; };\n", &c, err,
			       sizeof(err)),
			 KMS_OK);
	assert_string_equal(c->metrics_listen, "localhost:9");
	cfg_free(c);
}

static void test_small_err_buffer_and_nul(void **state)
{
	(void)state;
	struct cfg *c = NULL;
	char err[8];
	assert_int_equal(parse("bogus = 1;", &c, err, sizeof(err)), KMS_ERR_CONFIG);
	assert_true(strlen(err) < sizeof(err));
	assert_int_equal(parse("x", &c, NULL, 0), KMS_ERR_CONFIG);
	char big[CFG_ERR_MAX];
	static const uint8_t nul[] = { 'a', '=', '1', ';', 0, 'b' };
	assert_int_equal(cfg_parse_string(nul, sizeof(nul), NULL, NULL, &c, big, sizeof(big)),
			 KMS_ERR_CONFIG);
	assert_non_null(strstr(big, "<string>:0: contains a NUL byte"));
}

static void test_load_file(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char *sub = tu_path(dir, "etc");
	char *path;
	char err[CFG_ERR_MAX];
	struct cfg *c = NULL;
	char cwd[4096];

	assert_int_equal(mkdir(sub, 0700), 0);
	path = tu_path(sub, "p11kms.conf");
	tu_write_file(path, CH KY VA(""), strlen(CH KY VA("")), 0600);
	assert_int_equal(cfg_load(path, &c, err, sizeof(err)), KMS_OK);
	char *want = tu_path(sub, "s");
	assert_string_equal(c->chains[0].state_file, want);
	assert_string_equal(c->dir, sub);
	assert_string_equal(c->path, path);
	free(want);
	cfg_free(c);

	/* A relative config path resolves against the working directory. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(cfg_load("etc/p11kms.conf", &c, err, sizeof(err)), KMS_OK);
	want = tu_path(sub, "k");
	assert_string_equal(c->keys[0].softsign, want);
	free(want);
	cfg_free(c);
	assert_int_equal(chdir(cwd), 0);

	/* Missing file: NOT_FOUND, with the hint. */
	char *nope = tu_path(dir, "nope.conf");
	assert_int_equal(cfg_load(nope, &c, err, sizeof(err)), KMS_ERR_NOT_FOUND);
	assert_null(c);
	assert_non_null(strstr(err, "nope.conf:0: cannot open"));
	assert_non_null(strstr(err, "P11KMS_CONFIG"));
	free(nope);

	/* A syntax error in a file names the file and line. */
	tu_write_file(path, "chains = (\n  { id = 3 \n", 23, 0600);
	assert_int_equal(cfg_load(path, &c, err, sizeof(err)), KMS_ERR_CONFIG);
	assert_non_null(strstr(err, "p11kms.conf:"));
	assert_non_null(strstr(err, "syntax error"));

	free(path);
	free(sub);
	tu_rmrf(dir);
	free(dir);
}

/* #16: keys.uri as a list (primary first, then backups) and keys.timeout_ms. */
static void test_key_uris(void **state)
{
	(void)state;
	static const char *const bad[][2] = {
		{ "uri = [ ];", "keys[0].uri: must list 1 to 8 URIs, found 0" },
		{ "uri = ( \"pkcs11:token=a\", 3 );", "keys[0].uri: element 1 must be a non-empty" },
		{ "uri = [ \"pkcs11:token=a\", \"file:x\" ];", "keys[0].uri: must be an RFC 7512" },
		{ "uri = [ \"pkcs11:token=a\", \"pkcs11:token=a\" ];", "is listed twice" },
		{ "uri = 5;", "keys[0].uri: must be a string \"pkcs11:...\" or a list" },
		{ "uri = \"pkcs11:token=a\"; timeout_ms = 10;", "keys[0].timeout_ms: 10 is out of range" },
		{ "softsign = \"k.key\"; timeout_ms = 500;", "keys[0].timeout_ms: only for uri keys" },
	};
	char text[1024], err[CFG_ERR_MAX];
	struct cfg *c = NULL;
	const char *head = "chains = ( { id = \"c\"; state_file = \"s\"; } );\nkeys = ( { "
			   "chain_ids = [ \"c\" ]; ";
	snprintf(text, sizeof(text), "%suri = [ \"pkcs11:token=a\", \"pkcs11:token=b\" ]; "
		 "timeout_ms = 1500; } );\n", head);
	assert_int_equal(parse(text, &c, err, sizeof(err)), KMS_OK);
	assert_int_equal(c->keys[0].n_uris, 2);
	assert_string_equal(c->keys[0].uri, "pkcs11:token=a");
	assert_string_equal(c->keys[0].uris[0], "pkcs11:token=a");
	assert_string_equal(c->keys[0].uris[1], "pkcs11:token=b");
	assert_int_equal(c->keys[0].timeout_ms, 1500);
	cfg_free(c);
	snprintf(text, sizeof(text), "%suri = \"pkcs11:token=a\"; } );\n", head);
	assert_int_equal(parse(text, &c, err, sizeof(err)), KMS_OK);
	assert_int_equal(c->keys[0].n_uris, 1);
	assert_int_equal(c->keys[0].timeout_ms, CFG_DEFAULT_TOKEN_TIMEOUT_MS);
	cfg_free(c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s%s } );\n", head, bad[i][0]);
		c = NULL;
		assert_int_equal(parse(text, &c, err, sizeof(err)), KMS_ERR_CONFIG);
		assert_null(c);
		if (strstr(err, bad[i][1]) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i][0], err, bad[i][1]);
	}
}

/* issue 15: chains[].allow_volatile_state, off unless set, a bool. */
static void test_allow_volatile_state(void **state)
{
	static const char *tail =
		"keys = ( { chain_ids = [ \"c1\" ]; softsign = \"k\"; } );\n"
		"validators = ( { chain_id = \"c1\"; addr = \"unix:///run/n.sock\";"
		" protocol_version = \"v0.37\"; } );\n";
	char text[512], err[256];
	struct cfg *c = NULL;
	(void)state;
	snprintf(text, sizeof(text), "chains = ( { id = \"c1\"; state_file = \"s\"; } );\n%s",
		 tail);
	assert_int_equal(parse(text, &c, err, sizeof(err)), KMS_OK);
	assert_int_equal(c->chains[0].allow_volatile_state, 0);
	cfg_free(c);
	snprintf(text, sizeof(text),
		 "chains = ( { id = \"c1\"; state_file = \"s\"; allow_volatile_state = true; } "
		 ");\n%s",
		 tail);
	assert_int_equal(parse(text, &c, err, sizeof(err)), KMS_OK);
	assert_int_equal(c->chains[0].allow_volatile_state, 1);
	cfg_free(c);
	snprintf(text, sizeof(text),
		 "chains = ( { id = \"c1\"; state_file = \"s\"; allow_volatile_state = 1; } );\n%s",
		 tail);
	assert_int_not_equal(parse(text, &c, err, sizeof(err)), KMS_OK);
	assert_non_null(strstr(err, "chains[0].allow_volatile_state: must be true or false"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_uris),
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_allow_volatile_state),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_default_path),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_metrics_and_log_format),
		cmocka_unit_test(test_small_err_buffer_and_nul),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
