/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms doctor`: every check `start` makes, one line each with ✔/✘ and the fix. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "p11kms/audit.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"

static const char usage[] =
	"Usage: p11kms doctor [-c CONF] [-v]\n"
	"\n"
	"Checks what `p11kms start` would use and prints one line per check, ✔ or ✘ with\n"
	"the fix: the config parses; permissions of key, PIN and state files; PKCS#11\n"
	"modules load; tokens are present and the PIN logs in; keys are found and are\n"
	"Ed25519 (and sign); the double-sign state exists, parses and is not locked by a\n"
	"running signer; node addresses parse. Exits with the code of the first failure.\n"
	"\n"
	"  -c, --config FILE  config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"  -v, --verbose      keep the library log lines (otherwise only errors)\n"
	"  -h, --help         this text\n";

struct doc {
	int first_fail; /* exit code of the first ✘, CMD_EXIT_OK if none */
	int n_ok, n_fail;
};

__attribute__((format(printf, 3, 4))) static void check(struct doc *d, int exit_code,
							const char *fmt, ...)
{
	va_list ap;

	if (exit_code == CMD_EXIT_OK) {
		d->n_ok++;
		fputs("✔ ", stdout);
	} else {
		d->n_fail++;
		if (d->first_fail == CMD_EXIT_OK)
			d->first_fail = exit_code;
		fputs("✘ ", stdout);
	}
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void check_private(struct doc *d, const char *what, const char *path)
{
	int r = dfile_check_private(path);

	if (r == KMS_OK)
		check(d, CMD_EXIT_OK, "%s %s: present, private", what, path);
	else if (r == KMS_ERR_PERM)
		check(d, CMD_EXIT_PERM, "%s %s: readable by group or others: chmod 600 %s", what,
		      path, path);
	else if (r == KMS_ERR_NOT_FOUND)
		check(d, CMD_EXIT_KEY, "%s %s: missing: create it (see `p11kms help`)", what, path);
	else
		check(d, CMD_EXIT_KEY, "%s %s: %s", what, path, kms_strerror(r));
}

/* The pin-source=... of a pkcs11: URI, percent-decoded, into out ("" if none). */
static void uri_pin_source(const char *uri, char *out, size_t cap)
{
	const char *q = strchr(uri, '?'), *p;
	size_t n = 0;

	out[0] = '\0';
	if (q == NULL || (p = strstr(q, "pin-source=")) == NULL)
		return;
	for (p += strlen("pin-source="); *p != '\0' && *p != '&' && n + 1 < cap; p++) {
		uint8_t b;
		size_t blen;

		if (*p == '%' && p[1] && p[2] && enc_hex_decode(p + 1, 2, &b, 1, &blen) == KMS_OK) {
			out[n++] = (char)b;
			p += 2;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	if (strncmp(out, "file:", 5) == 0)
		memmove(out, out + 5, n - 4);
}

static void check_identity(struct doc *d, const struct cfg_validator *v)
{
	struct keyfile_ed25519 k;
	uint8_t id[20];
	char hex[41];
	int r;

	if (v->secret_key == NULL || strncmp(v->secret_key, "pkcs11:", 7) == 0)
		return;
	check_private(d, "identity key", v->secret_key);
	memset(&k, 0, sizeof(k));
	r = keyfile_load(v->secret_key, &k);
	if (r == KMS_OK && enc_ed25519_address(k.pub, id) == KMS_OK &&
	    enc_hex_encode(id, 20, hex, sizeof(hex)) == KMS_OK)
		check(d, CMD_EXIT_OK, "identity key %s: Ed25519, KMS node ID %s", v->secret_key,
		      hex);
	else if (r != KMS_ERR_PERM && r != KMS_ERR_NOT_FOUND)
		check(d, CMD_EXIT_KEY,
		      "identity key %s: unreadable (%s): make one with `p11kms keygen --softsign %s`",
		      v->secret_key, kms_strerror(r), v->secret_key);
	keyfile_wipe(&k);
}

static void check_key(struct doc *d, const struct cfg *cfg, const struct cfg_key *k)
{
	const struct cfg_chain *c = cfg_chain_find(cfg, k->chain_ids[0]);
	struct slot *s = NULL;
	struct slot_hygiene h;
	uint8_t pub[32];
	char pin[1024], disp[ENC_BECH32_MAX + 1];
	int r;

	if (k->kind == CFG_KEY_SOFTSIGN) {
		check_private(d, "consensus key", k->softsign);
	} else {
		if (slot_uri_validate(k->uri) != KMS_OK) {
			check(d, CMD_EXIT_CONFIG,
			      "key %s: the URI does not parse or names no module", k->uri);
			return;
		}
		uri_pin_source(k->uri, pin, sizeof(pin));
		if (pin[0] != '\0')
			check_private(d, "PIN file", pin);
		else if (k->pin_env != NULL && getenv(k->pin_env) == NULL)
			check(d, CMD_EXIT_KEY, "PIN: environment variable %s is not set",
			      k->pin_env);
	}
	r = cli_open_key(k, &s);
	if (r != KMS_OK) {
		check(d, cmd_exit_for(r) == CMD_EXIT_FAIL ? CMD_EXIT_KEY : cmd_exit_for(r),
		      "key for %s: %s: %s (module loaded? token present? PIN right? key there? "
		      "see `p11kms keys list --slot`)",
		      k->chain_ids[0], k->kind == CFG_KEY_SOFTSIGN ? k->softsign : k->uri,
		      kms_strerror(r));
		return;
	}
	slot_pubkey(s, pub);
	if (c != NULL && c->consensus_key_prefix != NULL &&
	    enc_ed25519_bech32_pub(c->consensus_key_prefix, pub, disp, sizeof(disp)) == KMS_OK)
		;
	else if (enc_hex_encode_upper(pub, 32, disp, sizeof(disp)) != KMS_OK)
		disp[0] = '\0';
	check(d, CMD_EXIT_OK, "key for %s: found, Ed25519, test signature verified: %s",
	      k->chain_ids[0], disp);
	if (slot_backups_unreachable(s, pin, sizeof(pin)) > 0) /* #16: a warning, not a failure */
		printf("⚠ key for %s: %s (start works without it)\n", k->chain_ids[0], pin);
	if (slot_hygiene(s, &h) == KMS_OK)
		check(d, h.extractable == 1 || h.sensitive == 0 ? CMD_EXIT_KEY : CMD_EXIT_OK,
		      "key for %s: %s", k->chain_ids[0], h.verdict);
	slot_free(s);
}

static void check_state(struct doc *d, const struct cfg_chain *c)
{
	/* as start would load it, without writing; the filesystem has its own line */
	static const struct guard_opts no_fs = { .skip_fs_check = 1 };
	struct guard_hrs hrs;
	int r = guard_state_check(c->state_file, c->id, &no_fs, &hrs);

	switch (r) {
	case KMS_OK:
		check(d, CMD_EXIT_OK, "state for %s: %s, last signed %lld/%d/%s, not locked", c->id,
		      c->state_file, (long long)hrs.height, (int)hrs.round,
		      guard_step_name(hrs.step));
		return;
	case KMS_ERR_FORMAT:
		check(d, CMD_EXIT_STATE,
		      "state for %s: %s is refused (a record is invalid, or it is not a state "
		      "file: the line above says which): see `p11kms state repair -c CONF "
		      "--chain %s`; never reset it blindly",
		      c->id, c->state_file, c->id);
		return;
	case KMS_ERR_NOT_FOUND:
		check(d, CMD_EXIT_STATE,
		      "state for %s: %s missing: `p11kms state import -c CONF --chain %s "
		      "<node>/data/priv_validator_state.json` or `state init --height H`",
		      c->id, c->state_file, c->id);
		return;
	case KMS_ERR_LOCKED:
		check(d, CMD_EXIT_STATE,
		      "state for %s: %s is locked by a running signer: stop it first", c->id,
		      c->state_file);
		return;
	case KMS_ERR_PERM:
		check(d, CMD_EXIT_PERM, "state for %s: %s readable by others: chmod 600 %s", c->id,
		      c->state_file, c->state_file);
		return;
	default:
		check(d, CMD_EXIT_STATE,
		      "state for %s: %s: %s (never reset it blindly: compare with "
		      "the node's priv_validator_state.json)",
		      c->id, c->state_file, kms_strerror(r));
	}
}

/* The filesystem under the state file, checked as start checks it (guard_check_fs). */
static void check_state_fs(struct doc *d, const struct cfg_chain *c)
{
	char msg[512];
	int r = guard_check_fs(c->state_file, c->allow_volatile_state, msg, sizeof(msg));
	check(d, r == KMS_OK ? CMD_EXIT_OK : CMD_EXIT_STATE, "state for %s: %s %s", c->id,
	      c->state_file, msg);
}

static void check_validator(struct doc *d, const struct cfg_validator *v)
{
	char a[512];

	net_addr_format(&v->net, a, sizeof(a));
	check(d, CMD_EXIT_OK, "validator %s for %s: address parses (%s, %s)%s", a, v->chain_id,
	      cfg_proto_name(v->protocol_version),
	      v->net.scheme == NET_UNIX ? "unix socket" : "Secret Connection",
	      v->net.scheme == NET_TCP && !v->net.has_node_id ?
		      "; no node id in addr: the peer will not be verified" :
		      "");
}

static void audit_line(void *ctx, int exit_code, const char *line)
{
	check(ctx, exit_code, "%s", line);
}

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_doctor_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cmd_doctor(int argc, char **argv)
{
	const struct option *opts = cmd_doctor_options;
	struct doc d = { CMD_EXIT_OK, 0, 0 };
	struct cfg *cfg = NULL;
	const char *conf = NULL;
	int c, verbose = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return CMD_EXIT_OK;
		default:
			fputs(usage, stderr);
			return CMD_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("doctor", "unexpected argument '%s'", argv[optind]);
		return CMD_EXIT_USAGE;
	}
	if (!verbose)
		kms_log_set_level(KMS_LOG_ERR);
	if (cli_load_config("doctor", conf, &cfg) != KMS_OK) {
		check(&d, CMD_EXIT_CONFIG, "config: does not load (the line above says where)");
		return d.first_fail;
	}
	check(&d, CMD_EXIT_OK, "config %s: parses (%zu chains, %zu keys, %zu validators)",
	      cfg->path, cfg->n_chains, cfg->n_keys, cfg->n_validators);
	for (size_t i = 0; i < cfg->n_validators; i++)
		check_validator(&d, &cfg->validators[i]);
	for (size_t i = 0; i < cfg->n_validators; i++)
		check_identity(&d, &cfg->validators[i]);
	for (size_t i = 0; i < cfg->n_keys; i++)
		check_key(&d, cfg, &cfg->keys[i]);
	for (size_t i = 0; i < cfg->n_chains; i++) {
		if (cfg_key_for_chain(cfg, cfg->chains[i].id) == NULL)
			check(&d, CMD_EXIT_CONFIG, "chain %s: no key serves it", cfg->chains[i].id);
		check_state(&d, &cfg->chains[i]);
		check_state_fs(&d, &cfg->chains[i]);
	}
	audit_doctor(cfg, audit_line, &d);
	printf("%d checks passed, %d failed\n", d.n_ok, d.n_fail);
	cfg_free(cfg);
	slot_shutdown();
	return d.first_fail;
}
