/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms keys list|show`: each configured key with its displays, address and hygiene. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/enc.h"
#include "p11kms/slot.h"

static const char usage[] =
	"Usage: p11kms keys list [-c CONF] [--json]\n"
	"       p11kms keys show [-c CONF] [--chain ID] [--json]\n"
	"       p11kms keys list --slot TOKEN_URI [--pin-env VAR] [--prefix P] [--json]\n"
	"\n"
	"list: one line per configured key: chains, URI or file, bech32 public key.\n"
	"show: every detail of each key (or the one for --chain): URI, type, public key as\n"
	"      bech32 with the chain's consensus prefix, cosmos-json (what create-validator\n"
	"      takes), hex, the validator address in hex and bech32 (…valcons1…), and the\n"
	"      key's hygiene (sensitive / never extractable / generated on the token).\n"
	"list --slot: the Ed25519 keys on a token (no config needed).\n"
	"\n"
	"  -c, --config FILE  config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"      --chain ID     show only the key of this chain\n"
	"      --slot URI     list the keys on this token or module\n"
	"      --pin-env VAR  the token PIN is in this environment variable\n"
	"      --prefix P     bech32 account prefix for --slot listings (default haqq)\n"
	"      --json         one JSON object on stdout (docs/cli.md has its fields)\n"
	"  -h, --help         this text\n";

struct keys_args {
	const char *conf, *chain, *slot, *pin_env, *prefix;
	int show, json;
};

/* The schema version of the --json objects (docs/cli.md); bumped on incompatible changes. */
#define KEYS_JSON_VERSION 1

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_keys_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "chain", required_argument, NULL, 'C' },
	{ "slot", required_argument, NULL, 'S' },
	{ "pin-env", required_argument, NULL, 'E' },
	{ "prefix", required_argument, NULL, 'p' },
	{ "json", no_argument, NULL, 'J' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, struct keys_args *a, int *ec)
{
	const struct option *opts = cmd_keys_options;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->conf = optarg;
			break;
		case 'C':
			a->chain = optarg;
			break;
		case 'S':
			a->slot = optarg;
			break;
		case 'E':
			a->pin_env = optarg;
			break;
		case 'p':
			a->prefix = optarg;
			break;
		case 'J':
			a->json = 1;
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
	if (optind + 1 != argc ||
	    (strcmp(argv[optind], "list") != 0 && strcmp(argv[optind], "show") != 0)) {
		cli_err("keys", "say `keys list` or `keys show`");
		fputs(usage, stderr);
		*ec = CMD_EXIT_USAGE;
		return -1;
	}
	a->show = strcmp(argv[optind], "show") == 0;
	return 0;
}

/* The consensus prefix to display a key with: its first chain's, if that has one. */
static const char *key_prefix(const struct cfg *cfg, const struct cfg_key *k)
{
	const struct cfg_chain *c = cfg_chain_find(cfg, k->chain_ids[0]);

	return c != NULL ? c->consensus_key_prefix : NULL;
}

int cli_open_key(const struct cfg_key *k, struct slot **out)
{
	struct slot_opts so = { 0 };

	so.profile = k->profile;
	so.pin_env = k->pin_env;
	if (k->kind == CFG_KEY_SOFTSIGN)
		return slot_open_softsign(k->softsign, &so, out);
	so.timeout_ms = k->timeout_ms; /* a hung token must not hang keys/doctor either */
	return slot_open_set((const char *const *)k->uris, k->n_uris, &so, out);
}

static void print_chains(const struct cfg_key *k)
{
	for (size_t i = 0; i < k->n_chain_ids; i++)
		printf("%s%s", i ? "," : "", k->chain_ids[i]);
}

static int show_key(const struct cfg *cfg, const struct cfg_key *k, int detail)
{
	struct slot *s = NULL;
	struct slot_hygiene h;
	uint8_t pub[32];
	char line[ENC_BECH32_MAX + 1];
	const char *prefix = key_prefix(cfg, k);
	int r;

	unsigned mark = cli_log_errors();
	if ((r = cli_open_key(k, &s)) != KMS_OK) {
		cli_fail("keys", mark, r, "the key for %s (%s) does not open", k->chain_ids[0],
			 k->kind == CFG_KEY_SOFTSIGN ? k->softsign : k->uri);
		return r;
	}
	slot_pubkey(s, pub);
	if (!detail) {
		print_chains(k);
		if (prefix != NULL &&
		    enc_ed25519_bech32_pub(prefix, pub, line, sizeof(line)) == KMS_OK)
			printf("  %s  %s\n", line, slot_describe(s));
		else if (enc_hex_encode_upper(pub, 32, line, sizeof(line)) == KMS_OK)
			printf("  %s  %s\n", line, slot_describe(s));
		slot_free(s);
		return KMS_OK;
	}
	printf("key for chain ");
	print_chains(k);
	printf("\n  uri:                      %s\n", slot_describe(s));
	if (k->kind == CFG_KEY_SOFTSIGN)
		printf("  file:                     %s\n", k->softsign);
	printf("  type:                     Ed25519 (profile %s)\n", slot_profile_name(s));
	if ((r = cli_print_pubkey(stdout, "  ", pub, prefix)) != KMS_OK)
		goto out;
	/* #17: a softsign file key has the module's PKCS#11 flags, but it is a plaintext file */
	if (k->kind == CFG_KEY_SOFTSIGN)
		printf("  hygiene:                  file key, plaintext on disk (whoever can read "
		       "the file can sign)\n");
	else if ((r = slot_hygiene(s, &h)) == KMS_OK)
		printf("  hygiene:                  %s (sensitive=%d always_sensitive=%d "
		       "extractable=%d never_extractable=%d local=%d)\n",
		       h.verdict, h.sensitive, h.always_sensitive, h.extractable,
		       h.never_extractable, h.local);
	else
		printf("  hygiene:                  unknown (%s)\n", kms_strerror(r));
	r = KMS_OK;
out:
	slot_free(s);
	return r;
}

/* 1/0 as JSON booleans, -1 (unknown) as null. */
static json_t *tri(int v)
{
	return v < 0 ? json_null() : json_boolean(v);
}

/*
 * One configured key as a JSON object (docs/cli.md): always chain_ids, kind
 * and the configured uri or file; then either error, or slot and public_key
 * (list), plus type, profile and hygiene (show).
 */
static int key_json(const struct cfg *cfg, const struct cfg_key *k, int detail, json_t *arr)
{
	struct slot *s = NULL;
	struct slot_hygiene h;
	uint8_t pub[32];
	json_t *o = json_object(), *ids = json_array();
	int r;

	for (size_t i = 0; i < k->n_chain_ids; i++)
		json_array_append_new(ids, json_string(k->chain_ids[i]));
	json_object_set_new(o, "chain_ids", ids);
	json_object_set_new(o, "kind", json_string(k->kind == CFG_KEY_SOFTSIGN ? "softsign" : "pkcs11"));
	json_object_set_new(o, "uri", k->uri != NULL ? json_string(k->uri) : json_null());
	json_object_set_new(o, "file", k->softsign != NULL ? json_string(k->softsign) : json_null());
	json_array_append_new(arr, o);
	if ((r = cli_open_key(k, &s)) != KMS_OK) {
		json_object_set_new(o, "error", json_string(kms_strerror(r)));
		return r;
	}
	slot_pubkey(s, pub);
	json_object_set_new(o, "slot", json_string(slot_describe(s)));
	json_object_set_new(o, "public_key", cli_pubkey_json(pub, key_prefix(cfg, k)));
	if (detail) {
		json_object_set_new(o, "type", json_string("ed25519"));
		json_object_set_new(o, "profile", json_string(slot_profile_name(s)));
		if (slot_hygiene(s, &h) == KMS_OK)
			json_object_set_new(
				o, "hygiene",
				json_pack("{s:s,s:o,s:o,s:o,s:o,s:o}", "verdict", h.verdict, "sensitive",
					  tri(h.sensitive), "always_sensitive", tri(h.always_sensitive),
					  "extractable", tri(h.extractable), "never_extractable",
					  tri(h.never_extractable), "local", tri(h.local)));
		else
			json_object_set_new(o, "hygiene", json_null());
	}
	slot_free(s);
	return KMS_OK;
}

struct list_ctx {
	const char *prefix;
	int n;
	json_t *keys; /* --json: the keys found, else NULL */
};

static void list_cb(void *ctx, const char *key_uri, const char *label, const uint8_t pub[32])
{
	struct list_ctx *lc = ctx;
	char cons[96];

	(void)snprintf(cons, sizeof(cons), "%svalconspub", lc->prefix);
	if (lc->keys != NULL) {
		json_array_append_new(lc->keys,
				      json_pack("{s:s,s:s?,s:o}", "uri", key_uri, "label", label,
						"public_key", cli_pubkey_json(pub, cons)));
		lc->n++;
		return;
	}
	printf("%s\n  label:                    %s\n", key_uri, label ? label : "");
	if (cli_print_pubkey(stdout, "  ", pub, cons) != KMS_OK)
		printf("  (cannot format with prefix %s)\n", lc->prefix);
	lc->n++;
}

static int list_slot(const struct keys_args *a)
{
	struct slot_opts so = { 0 };
	struct list_ctx lc = { a->prefix ? a->prefix : "haqq", 0, NULL };
	int r;

	so.pin_env = a->pin_env;
	if (a->json && (lc.keys = json_array()) == NULL)
		return KMS_ERR_ALLOC;
	r = slot_list_keys(a->slot, &so, list_cb, &lc);
	if (r != KMS_OK) {
		cli_err("keys", "%s: %s", a->slot, kms_strerror(r));
		json_decref(lc.keys);
		return r;
	}
	if (a->json)
		return cli_json_print(json_pack("{s:i,s:s,s:o}", "version", KEYS_JSON_VERSION,
						"slot", a->slot, "keys", lc.keys));
	if (lc.n == 0)
		printf("no Ed25519 keys visible on %s (log in with pin-source or --pin-env to see "
		       "private keys)\n",
		       a->slot);
	return KMS_OK;
}

int cmd_keys(int argc, char **argv)
{
	struct keys_args a = { 0 };
	struct cfg *cfg = NULL;
	int ec = CMD_EXIT_FAIL, r, first_err = KMS_OK, shown = 0;

	if (parse_args(argc, argv, &a, &ec) != 0)
		return ec;
	/* Library INFO lines (opened key ..., imported ...) would bury the command's own output. */
	if (kms_log_get_level() > KMS_LOG_WARN)
		kms_log_set_level(KMS_LOG_WARN);
	if (a.slot != NULL) {
		r = list_slot(&a);
		slot_shutdown();
		return r == KMS_OK ? CMD_EXIT_OK : CMD_EXIT_KEY;
	}
	if ((r = cli_load_config("keys", a.conf, &cfg)) != KMS_OK)
		return cmd_exit_for(r);
	json_t *arr = a.json ? json_array() : NULL;
	for (size_t i = 0; i < cfg->n_keys; i++) {
		const struct cfg_key *k = &cfg->keys[i];
		int match = a.chain == NULL;

		for (size_t j = 0; j < k->n_chain_ids && !match; j++)
			match = strcmp(k->chain_ids[j], a.chain) == 0;
		if (!match)
			continue;
		if (shown++ && a.show && !a.json)
			printf("\n");
		r = a.json ? key_json(cfg, k, a.show, arr) : show_key(cfg, k, a.show);
		if (r != KMS_OK && first_err == KMS_OK)
			first_err = r;
	}
	/* One object even when a key failed (its entry says why; the exit code too). */
	int print_err = a.json && shown > 0 ?
				cli_json_print(json_pack("{s:i,s:O}", "version", KEYS_JSON_VERSION,
							 "keys", arr)) :
				KMS_OK;
	json_decref(arr);
	if (shown == 0) {
		char chains[512];
		cli_chain_list(cfg, chains, sizeof(chains));
		if (a.chain != NULL)
			cli_err("keys", "no key serves chain %s (chains in %s: %s)", a.chain,
				cfg->path, chains);
		else
			cli_err("keys", "no keys configured");
		ec = CMD_EXIT_CONFIG;
	} else if (print_err != KMS_OK) {
		ec = CMD_EXIT_FAIL;
	} else {
		ec = first_err == KMS_OK		      ? CMD_EXIT_OK :
		     cmd_exit_for(first_err) == CMD_EXIT_FAIL ? CMD_EXIT_KEY :
								cmd_exit_for(first_err);
	}
	cfg_free(cfg);
	slot_shutdown();
	return ec;
}
