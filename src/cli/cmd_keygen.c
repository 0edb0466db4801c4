/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms keygen` and `p11kms import`: a consensus key into a softsign file or onto a token. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/dfile.h"
#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/slot.h"

static const char keygen_usage[] =
	"Usage: p11kms keygen --softsign PATH [--prefix P]\n"
	"       p11kms keygen [--slot] TOKEN_URI --label LABEL [--pin-env VAR] [--prefix P]\n"
	"\n"
	"Generates a new Ed25519 consensus (or identity) key and prints its public key\n"
	"in the Cosmos formats.\n"
	"  --softsign PATH  write a key file as `tmkms softsign keygen` does (base64 of the\n"
	"                   32-byte seed, mode 0600); never overwrites\n"
	"  --slot URI       generate on the PKCS#11 token named by the URI (sensitive,\n"
	"                   never extractable, generated on the token); the PIN comes from\n"
	"                   the URI's pin-source file, --pin-env VAR, or a prompt\n"
	"  --label LABEL    CKA_LABEL of the new key (with --slot)\n"
	"  --prefix P       bech32 account prefix for the display (default haqq)\n"
	"  -h, --help       this text\n";

static const char import_usage[] =
	"Usage: p11kms import KEY_FILE --softsign PATH [--prefix P]\n"
	"       p11kms import KEY_FILE --slot TOKEN_URI [--label LABEL] [--pin-env VAR] [--prefix P]\n"
	"\n"
	"Imports an Ed25519 key (priv_validator_key.json, or a tmkms base64 seed file).\n"
	"KEY_FILE must not be group- or world-readable (chmod 600 it first).\n"
	"  --softsign PATH  write the tmkms softsign key file (base64 seed, 0600), as\n"
	"                   `tmkms softsign import` does; never overwrites\n"
	"  --slot URI       import onto the PKCS#11 token as a sensitive, non-extractable\n"
	"                   key (the PIN from pin-source, --pin-env VAR, or a prompt)\n"
	"  --label LABEL    CKA_LABEL on the token (default: consensus)\n"
	"  --prefix P       bech32 account prefix for the display (default haqq)\n"
	"  -h, --help       this text\n"
	"Once the imported key is confirmed (p11kms keys show), delete the plaintext\n"
	"KEY_FILE and keep an offline backup only.\n";

struct key_args {
	const char *softsign, *slot, *label, *pin_env, *prefix, *input;
};

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_keygen_options[] = {
	{ "softsign", required_argument, NULL, 's' },
	{ "slot", required_argument, NULL, 'S' },
	{ "label", required_argument, NULL, 'l' },
	{ "pin-env", required_argument, NULL, 'E' },
	{ "prefix", required_argument, NULL, 'p' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(const char *cmd, const char *usage, int argc, char **argv, struct key_args *a,
		      int *ec)
{
	const struct option *opts = cmd_keygen_options;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			a->softsign = optarg;
			break;
		case 'S':
			a->slot = optarg;
			break;
		case 'l':
			a->label = optarg;
			break;
		case 'E':
			a->pin_env = optarg;
			break;
		case 'p':
			a->prefix = optarg;
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
	if (optind < argc)
		a->input = argv[optind++];
	/* `p11kms keygen 'pkcs11:token=…' --label L` reads as naturally as --slot. */
	if (usage == keygen_usage && a->input != NULL && a->slot == NULL &&
	    strncmp(a->input, "pkcs11:", 7) == 0) {
		a->slot = a->input;
		a->input = NULL;
	}
	if (optind != argc || (a->softsign == NULL) == (a->slot == NULL)) {
		cli_err(cmd, "give exactly one of --softsign PATH or --slot URI");
		*ec = CMD_EXIT_USAGE;
		return -1;
	}
	if (a->prefix == NULL)
		a->prefix = "haqq";
	return 0;
}

static void print_key(const char *what, const char *where, const uint8_t pub[32],
		      const char *prefix)
{
	char cons[96];

	(void)snprintf(cons, sizeof(cons), "%svalconspub", prefix);
	printf("%s %s\n", what, where);
	if (cli_print_pubkey(stdout, "  ", pub, cons) != KMS_OK)
		cli_err("keys", "cannot format the public key (prefix %s?)", prefix);
}

int cmd_keygen(int argc, char **argv)
{
	struct key_args a = { 0 };
	struct slot_opts so = { 0 };
	uint8_t seed[32], pub[32];
	char *uri = NULL;
	int ec = CMD_EXIT_FAIL, r;

	if (parse_args("keygen", keygen_usage, argc, argv, &a, &ec) != 0)
		return ec;
	/* Library INFO lines (opened key ..., imported ...) would bury the command's own output. */
	if (kms_log_get_level() > KMS_LOG_WARN)
		kms_log_set_level(KMS_LOG_WARN);
	if (a.input != NULL) {
		cli_err("keygen", "unexpected argument '%s'", a.input);
		return CMD_EXIT_USAGE;
	}
	if (a.softsign != NULL) {
		unsigned mark = cli_log_errors();
		if ((r = kcrypto_random(seed, sizeof(seed))) == KMS_OK &&
		    (r = kcrypto_ed25519_pub_from_seed(seed, pub)) == KMS_OK)
			r = keyfile_write_seed(a.softsign, seed);
		kms_wipe(seed, sizeof(seed));
		if (r == KMS_ERR_EXISTS) {
			cli_err("keygen", "%s exists: a key file is never overwritten", a.softsign);
			return cmd_exit_for(r);
		}
		if (r != KMS_OK) {
			cli_fail("keygen", mark, r, "%s: no key written", a.softsign);
			return cmd_exit_for(r);
		}
		print_key("Generated softsign key", a.softsign, pub, a.prefix);
		return CMD_EXIT_OK;
	}
	if (a.label == NULL) {
		cli_err("keygen", "--slot needs --label LABEL");
		return CMD_EXIT_USAGE;
	}
	so.pin_env = a.pin_env;
	so.allow_prompt = 1;
	unsigned mark = cli_log_errors();
	r = slot_keygen(a.slot, a.label, &so, &uri, pub);
	if (r != KMS_OK) {
		cli_fail("keygen", mark, r, "no key generated on %s", a.slot);
		ec = r == KMS_ERR_EXISTS	      ? CMD_EXIT_KEY :
		     cmd_exit_for(r) == CMD_EXIT_FAIL ? CMD_EXIT_KEY :
							cmd_exit_for(r);
		goto out;
	}
	print_key("Generated on the token:", uri, pub, a.prefix);
	printf("Use it in p11kms.conf: uri = \"%s\";\n", uri);
	ec = CMD_EXIT_OK;
out:
	free(uri);
	slot_shutdown();
	return ec;
}

/* The input must be private: a readable plaintext key is already a leak to fix first. */
static int load_input(const char *path, struct keyfile_ed25519 *k)
{
	unsigned mark = cli_log_errors();
	int r = dfile_check_private(path);

	if (r == KMS_ERR_PERM) {
		cli_err("import",
			"%s is readable by group or others: chmod 600 %s first (and "
			"consider that key exposed if others could log in)",
			path, path);
		return r;
	}
	if (r != KMS_OK) {
		cli_fail("import", mark, r, "%s: nothing imported", path);
		return r;
	}
	if ((r = keyfile_load(path, k)) != KMS_OK) {
		cli_fail("import", mark, r, "%s: not an Ed25519 key file p11kms understands", path);
		return r;
	}
	if (!k->has_seed) {
		cli_err("import",
			"%s holds an expanded key (%s) without its seed: it can be used "
			"in place with softsign = \"%s\" but not imported",
			path, keyfile_kind_name(k->kind), path);
		keyfile_wipe(k);
		return KMS_ERR_UNSUPPORTED;
	}
	return KMS_OK;
}

int cmd_import(int argc, char **argv)
{
	struct key_args a = { 0 };
	struct slot_opts so = { 0 };
	struct keyfile_ed25519 k;
	char *uri = NULL;
	int ec = CMD_EXIT_FAIL, r;

	memset(&k, 0, sizeof(k));
	if (parse_args("import", import_usage, argc, argv, &a, &ec) != 0)
		return ec;
	/* Library INFO lines (opened key ..., imported ...) would bury the command's own output. */
	if (kms_log_get_level() > KMS_LOG_WARN)
		kms_log_set_level(KMS_LOG_WARN);
	if (a.input == NULL) {
		cli_err("import",
			"which key file? e.g. p11kms import priv_validator_key.json --softsign PATH");
		return CMD_EXIT_USAGE;
	}
	if ((r = load_input(a.input, &k)) != KMS_OK)
		return r == KMS_ERR_PERM ? CMD_EXIT_PERM : CMD_EXIT_KEY;
	unsigned mark = cli_log_errors();
	if (a.softsign != NULL) {
		r = keyfile_write_seed(a.softsign, k.seed);
		if (r != KMS_OK) {
			if (r == KMS_ERR_EXISTS)
				cli_err("import", "%s exists: a key file is never overwritten",
					a.softsign);
			else
				cli_fail("import", mark, r, "%s: no key written", a.softsign);
			ec = cmd_exit_for(r);
			goto out;
		}
		print_key("Imported into softsign key file", a.softsign, k.pub, a.prefix);
	} else {
		so.pin_env = a.pin_env;
		so.allow_prompt = 1;
		r = slot_import_ed25519(a.slot, a.label ? a.label : "consensus", k.seed, &so, &uri,
					k.pub);
		if (r != KMS_OK) {
			cli_fail("import", mark, r, "nothing imported onto %s", a.slot);
			ec = cmd_exit_for(r) == CMD_EXIT_FAIL ? CMD_EXIT_KEY : cmd_exit_for(r);
			goto out;
		}
		print_key("Imported onto the token:", uri, k.pub, a.prefix);
		printf("Use it in p11kms.conf: uri = \"%s\";\n", uri);
	}
	printf("\nNow check the key (p11kms keys show -c CONF), then delete the plaintext %s\n"
	       "on this machine and on the node (shred -u %s), keeping only an offline backup.\n",
	       a.input, a.input);
	ec = CMD_EXIT_OK;
out:
	keyfile_wipe(&k);
	free(uri);
	if (a.slot != NULL)
		slot_shutdown();
	return ec;
}
