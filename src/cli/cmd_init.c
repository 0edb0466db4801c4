/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms init [DIR]`: a new p11kms directory (config, secrets/ with an identity key, state/). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"

static const char usage[] =
	"Usage: p11kms init [DIR] [--chain haqq_11235-1|haqq_53211-1] [--chain ID --prefix P]\n"
	"\n"
	"Creates DIR (default ./p11kms) holding p11kms.conf for the chain, secrets/\n"
	"(mode 0700) with a new Secret Connection identity key secrets/kms-identity.key\n"
	"(mode 0600, base64 seed as tmkms writes it) and state/, then prints the next\n"
	"steps. Refuses to touch a DIR that already has a p11kms.conf.\n"
	"\n"
	"  --chain ID        chain id; haqq_11235-1 (Haqq mainnet, the default) and\n"
	"                    haqq_53211-1 (Haqq testedge) are known, others need --prefix\n"
	"  --prefix P        bech32 account prefix of the chain (e.g. haqq, cosmos): keys are\n"
	"                    shown as Pvalconspub1..., addresses as Pvalcons1...\n"
	"  --addr ADDR       the node's priv_validator_laddr as seen from here\n"
	"                    (default tcp://127.0.0.1:26659)\n"
	"  --protocol V      auto | v0.34 | v0.37 | v0.38 | v1 (default auto: one reply form\n"
	"                    every node version reads; docs/privval.md)\n"
	"  --state-dir SDIR  where the double-sign state goes (default DIR/state); under the\n"
	"                    systemd unit, /var/lib/p11kms (the service cannot write /etc)\n"
	"  -h, --help        this text\n";

struct init_args {
	const char *dir, *chain, *prefix, *addr, *protocol;
	char *state_dir; /* absolute, or NULL: DIR/state, written relative in the config */
};

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_init_options[] = {
	{ "chain", required_argument, NULL, 'c' },
	{ "prefix", required_argument, NULL, 'p' },
	{ "addr", required_argument, NULL, 'a' },
	{ "protocol", required_argument, NULL, 'P' },
	{ "state-dir", required_argument, NULL, 'd' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, struct init_args *a, int *ec)
{
	const struct option *opts = cmd_init_options;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->chain = optarg;
			break;
		case 'p':
			a->prefix = optarg;
			break;
		case 'a':
			a->addr = optarg;
			break;
		case 'P':
			a->protocol = optarg;
			break;
		case 'd':
			if (strpbrk(optarg, "\"\\\n") != NULL) {
				cli_err("init", "--state-dir: no quotes, backslashes or newlines");
				*ec = CMD_EXIT_USAGE;
				return -1;
			}
			free(a->state_dir);
			if ((a->state_dir = cli_absdir(optarg)) == NULL) {
				*ec = CMD_EXIT_FAIL;
				return -1;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			*ec = CMD_EXIT_OK;
			return -1;
		default:
			fputs(usage, stderr);
			*ec = CMD_EXIT_USAGE;
			return -1;
		}
	}
	if (optind + 1 < argc) {
		cli_err("init", "takes at most one directory");
		*ec = CMD_EXIT_USAGE;
		return -1;
	}
	a->dir = optind < argc ? argv[optind] : "p11kms";
	return 0;
}

static int check_prefix(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || n > 60)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
			return 0;
	return 1;
}

/* Resolves the chain settings; prints the problem and returns -1 on a bad combination. */
static int resolve_chain(struct init_args *a)
{
	const struct cli_chain_preset *p;

	if (a->chain == NULL)
		a->chain = "haqq_11235-1";
	p = cli_chain_preset_find(a->chain);
	if (a->prefix == NULL && p != NULL)
		a->prefix = p->prefix;
	if (a->prefix == NULL) {
		cli_err("init",
			"chain %s is not one I know: give its bech32 prefix with --prefix "
			"(e.g. --prefix cosmos)",
			a->chain);
		return -1;
	}
	if (!check_prefix(a->prefix)) {
		cli_err("init", "--prefix %s: lowercase letters and digits only, as bech32 wants",
			a->prefix);
		return -1;
	}
	if (strlen(a->chain) > 50 || strpbrk(a->chain, "\"\\/ \t\n") != NULL) {
		cli_err("init", "--chain %s: not a valid chain id", a->chain);
		return -1;
	}
	if (a->protocol == NULL)
		a->protocol = "auto"; /* #17: serves v0.34..v1 nodes alike (Haqq runs v0.37.9) */
	if (strcmp(a->protocol, "v0.34") != 0 && strcmp(a->protocol, "v0.37") != 0 &&
	    strcmp(a->protocol, "v0.38") != 0 && strcmp(a->protocol, "v1") != 0 &&
	    strcmp(a->protocol, "auto") != 0) {
		cli_err("init", "--protocol %s: one of auto, v0.34, v0.37, v0.38, v1", a->protocol);
		return -1;
	}
	if (a->addr == NULL)
		a->addr = "tcp://127.0.0.1:26659";
	return 0;
}

static int render_config(struct kbuf *b, const struct init_args *a)
{
	int r = cli_bprintf(
		b,
		"# p11kms configuration (schema: docs/config.md), written by `p11kms init`.\n"
		"# Relative paths resolve against this file's directory.\n"
		"\n"
		"chains = (\n"
		"  {\n"
		"    id = \"%s\";\n"
		"    key_format = \"bech32\";\n"
		"    account_key_prefix = \"%spub\";\n"
		"    consensus_key_prefix = \"%svalconspub\";\n"
		"    # Double-sign state: create it before the first start, from the node's\n"
		"    # data/priv_validator_state.json (p11kms state import) or a height (state init).\n"
		"    state_file = \"%s/%s.state\";\n"
		"  }\n"
		");\n"
		"\n"
		"keys = (\n"
		"  {\n"
		"    chain_ids = [ \"%s\" ];\n"
		"    # A key file (tmkms softsign format): p11kms import priv_validator_key.json\n"
		"    #   --softsign secrets/priv_validator_key\n"
		"    softsign = \"secrets/priv_validator_key\";\n"
		"    # Or a key on a PKCS#11 token (p11kms keygen/import --slot ...), e.g. SoftHSM2:\n"
		"    # uri = \"pkcs11:token=validator;object=consensus;type=private"
		"?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=secrets/token.pin\";\n"
		"  }\n"
		");\n"
		"\n"
		"validators = (\n"
		"  {\n"
		"    chain_id = \"%s\";\n"
		"    # The node's priv_validator_laddr (config.toml), as reachable from here.\n"
		"    addr = \"%s\";\n"
		"    secret_key = \"secrets/kms-identity.key\";\n"
		"    # auto: one reply form every CometBFT version reads (v0.34 to v1), the\n"
		"    # version the node appears to speak is logged; or name it: v0.37, ...\n"
		"    protocol_version = \"%s\";\n"
		"    reconnect = true;\n"
		"  }\n"
		");\n",
		a->chain, a->prefix, a->prefix, a->state_dir ? a->state_dir : "state", a->chain,
		a->chain, a->chain, a->addr, a->protocol);

	return r;
}

/*
 * mkdir; an existing directory is accepted. private: an existing one is made
 * 0700 too (secrets/, state/); DIR itself is left as the operator made it.
 */
static int make_dir(const char *path, int private)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return KMS_OK;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (!private || chmod(path, 0700) == 0))
		return KMS_OK;
	cli_err("init", "mkdir %s: %s", path,
		errno == EEXIST ? "exists and is not a directory" : strerror(errno));
	return KMS_ERR_SYSTEM;
}

/*
 * A new identity key: 32 random bytes as the tmkms softsign seed file. An
 * existing one (a re-run after the config was removed) is kept: the node may
 * already know its node ID.
 */
static int make_identity(const char *path, uint8_t pub[static 32])
{
	struct keyfile_ed25519 k;
	uint8_t seed[32];
	int r;

	if (access(path, F_OK) == 0) {
		memset(&k, 0, sizeof(k));
		if ((r = keyfile_load(path, &k)) == KMS_OK) {
			memcpy(pub, k.pub, 32);
			printf("Keeping the existing identity key %s\n", path);
		} else {
			cli_err("init", "%s exists but is not a usable key file: %s", path,
				kms_strerror(r));
		}
		keyfile_wipe(&k);
		return r;
	}
	if ((r = kcrypto_random(seed, sizeof(seed))) != KMS_OK ||
	    (r = kcrypto_ed25519_pub_from_seed(seed, pub)) != KMS_OK)
		goto out;
	if ((r = keyfile_write_seed(path, seed)) != KMS_OK)
		cli_err("init", "%s: cannot write the identity key: %s", path, kms_strerror(r));
out:
	kms_wipe(seed, sizeof(seed));
	return r;
}

static void print_next(const struct init_args *a, const char *conf, const uint8_t pub[32])
{
	uint8_t id[20];
	char hex[41] = "?";

	if (enc_ed25519_address(pub, id) != KMS_OK ||
	    enc_hex_encode(id, 20, hex, sizeof(hex)) != KMS_OK)
		hex[0] = '\0';
	printf("Created %s for chain %s.\n"
	       "  identity key %s/secrets/kms-identity.key (KMS node ID %s)\n\n"
	       "Next steps:\n"
	       "  1. Put the consensus key in place, one of:\n"
	       "       p11kms import priv_validator_key.json --softsign %s/secrets/priv_validator_key\n"
	       "       p11kms import priv_validator_key.json --slot 'pkcs11:token=...' --label consensus\n"
	       "       p11kms keygen --slot 'pkcs11:token=...' --label consensus   (a new validator)\n"
	       "     (for a token key, replace softsign = ... in the keys entry by uri = \"<URI printed>\")\n"
	       "  2. Create the double-sign state from the previous signer's state (the node's\n"
	       "     priv_validator_state.json, or tmkms's or horcrux's state file: the format\n"
	       "     is detected and the height/round/step it maps to is printed):\n"
	       "       p11kms state import -c %s --chain %s "
	       "~/.haqqd/data/priv_validator_state.json\n"
	       "  3. Set addr in %s to the node's priv_validator_laddr; on the node set\n"
	       "       priv_validator_laddr = \"tcp://0.0.0.0:26659\" in config.toml\n"
	       "  4. p11kms doctor -c %s\n"
	       "  5. Stop the node's own signing, then p11kms start -c %s\n",
	       a->dir, a->chain, a->dir, hex, a->dir, conf, a->chain, conf, conf, conf);
}

int cmd_init(int argc, char **argv)
{
	struct init_args a = { 0 };
	struct kbuf *text = NULL;
	char *conf = NULL, *secrets = NULL, *state = NULL, *idkey = NULL;
	uint8_t pub[32];
	int ec = CMD_EXIT_FAIL, r;

	if (parse_args(argc, argv, &a, &ec) != 0) {
		free(a.state_dir);
		return ec;
	}
	/* Library INFO lines (opened key ..., imported ...) would bury the command's own output. */
	if (kms_log_get_level() > KMS_LOG_WARN)
		kms_log_set_level(KMS_LOG_WARN);
	if (resolve_chain(&a) != 0)
		return CMD_EXIT_USAGE;
	conf = cli_path_join(a.dir, "p11kms.conf");
	secrets = cli_path_join(a.dir, "secrets");
	state = a.state_dir ? strdup(a.state_dir) : cli_path_join(a.dir, "state");
	idkey = cli_path_join(a.dir, "secrets/kms-identity.key");
	text = kbuf_new(16384);
	if (conf == NULL || secrets == NULL || state == NULL || idkey == NULL || text == NULL)
		goto out;
	if (access(conf, F_OK) == 0) {
		cli_err("init", "%s exists: refusing to overwrite an existing set-up", conf);
		goto out;
	}
	if (render_config(text, &a) != KMS_OK)
		goto out;
	if ((r = make_dir(a.dir, 0)) != KMS_OK || (r = make_dir(secrets, 1)) != KMS_OK ||
	    (r = make_dir(state, 1)) != KMS_OK)
		goto out;
	if ((r = make_identity(idkey, pub)) != KMS_OK) {
		ec = cmd_exit_for(r);
		goto out;
	}
	if ((r = dfile_create_atomic(conf, kbuf_ptr(text), kbuf_len(text), 0600)) != KMS_OK) {
		cli_err("init", "%s: cannot write: %s", conf, kms_strerror(r));
		goto out;
	}
	print_next(&a, conf, pub);
	ec = CMD_EXIT_OK;
out:
	kbuf_free(text);
	free(conf);
	free(secrets);
	free(state);
	free(a.state_dir);
	free(idkey);
	return ec;
}
