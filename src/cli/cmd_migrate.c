/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms migrate tmkms.toml -o p11kms.conf`: convert a tmkms set-up, config and state. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "migrate.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/toml.h"

static const char usage[] =
	"Usage: p11kms migrate TMKMS_TOML -o P11KMS_CONF [--tmkms-cwd DIR] [--dry-run] [--force]\n"
	"\n"
	"Converts a tmkms.toml into a p11kms config and each chain's tmkms state file\n"
	"(steps 0/1/2) into a p11kms state file (steps 1/2/3) in state/ next to the new\n"
	"config. softsign key files are used in place; yubihsm keys become pkcs11: URIs\n"
	"with the yubihsm2 profile. ledgertm, fortanixdsm and tx_signer are refused with\n"
	"what to do instead. Nothing is written if anything cannot be converted.\n"
	"\n"
	"  -o, --output FILE   the p11kms config to write (refused if it exists)\n"
	"      --tmkms-cwd DIR the directory tmkms was started from: tmkms resolved\n"
	"                      relative paths against it (default: tmkms.toml's directory)\n"
	"  -n, --dry-run       print the config and the plan; write nothing\n"
	"  -f, --force         overwrite an existing output config (never a state file)\n"
	"  -h, --help          this text\n";

struct mig_args {
	const char *src, *output, *tmkms_cwd;
	int dry_run, force;
};

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_migrate_options[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "tmkms-cwd", required_argument, NULL, 'C' },
	{ "dry-run", no_argument, NULL, 'n' },
	{ "force", no_argument, NULL, 'f' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, struct mig_args *a, int *exit_code)
{
	const struct option *opts = cmd_migrate_options;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "o:nfh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			a->output = optarg;
			break;
		case 'C':
			a->tmkms_cwd = optarg;
			break;
		case 'n':
			a->dry_run = 1;
			break;
		case 'f':
			a->force = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			*exit_code = CMD_EXIT_OK;
			return -1;
		default:
			fputs(usage, stderr);
			*exit_code = CMD_EXIT_USAGE;
			return -1;
		}
	}
	if (optind + 1 != argc || (a->output == NULL && !a->dry_run)) {
		cli_err("migrate", "needs one tmkms.toml and -o FILE (or --dry-run)");
		fputs(usage, stderr);
		*exit_code = CMD_EXIT_USAGE;
		return -1;
	}
	a->src = argv[optind];
	return 0;
}

/* Converts one tmkms state file into the new p11kms state file (never overwriting). */
static int convert_state(const struct migrate_state *s, const char *out_dir)
{
	struct kbuf *json = NULL;
	char *to = cli_path_join(out_dir, s->to);
	int r;

	if (to == NULL)
		return KMS_ERR_ALLOC;
	r = dfile_read(s->from, 64 * 1024, &json);
	if (r == KMS_ERR_NOT_FOUND) {
		printf("  ! chain %s: no tmkms state file at %s: before `p11kms start`, import the "
		       "node's priv_validator_state.json (`p11kms state import -c CONF --chain %s "
		       "FILE`) or run `p11kms state init -c CONF --chain %s "
		       "--height H` with the current height\n",
		       s->chain_id, s->from, s->chain_id, s->chain_id);
		r = KMS_OK;
		goto out;
	}
	if (r != KMS_OK) {
		cli_err("migrate", "%s: cannot read the tmkms state file: %s", s->from,
			kms_strerror(r));
		goto out;
	}
	r = guard_state_import(to, s->chain_id, kbuf_ptr(json), kbuf_len(json), GUARD_FMT_TMKMS, 0);
	if (r == KMS_ERR_EXISTS) {
		printf("  ! chain %s: %s exists already: kept as is (compare it with `p11kms state "
		       "show`)\n",
		       s->chain_id, to);
		r = KMS_OK;
	} else if (r != KMS_OK) {
		cli_err("migrate", "%s -> %s: state conversion failed: %s", s->from, to,
			kms_strerror(r));
	} else {
		printf("  ✔ chain %s: state %s converted to %s (tmkms steps 0/1/2 -> 1/2/3)\n",
		       s->chain_id, s->from, to);
	}
out:
	kbuf_free(json);
	free(to);
	return r;
}

static int make_state_dir(const char *out_dir)
{
	char *d = cli_path_join(out_dir, "state");
	int r = KMS_OK;

	if (d == NULL)
		return KMS_ERR_ALLOC;
	if (mkdir(d, 0700) != 0 && errno != EEXIST) {
		cli_err("migrate", "mkdir %s: %s", d, strerror(errno));
		r = KMS_ERR_SYSTEM;
	}
	free(d);
	return r;
}

/* The generated config must pass the daemon's own validation before anything is written. */
static int validate(const struct migrate_result *res, const char *name, const char *out_dir)
{
	struct cfg *cfg = NULL;
	char err[CFG_ERR_MAX] = "";
	int r = cfg_parse_string(kbuf_ptr(res->conf), kbuf_len(res->conf), name, out_dir, &cfg, err,
				 sizeof(err));

	if (r != KMS_OK)
		cli_err("migrate",
			"the converted config does not validate: %s (fix the matching entry in the tmkms.toml)",
			err);
	cfg_free(cfg);
	return r;
}

static int write_all(const struct mig_args *a, const struct migrate_result *res,
		     const char *out_dir)
{
	const uint8_t *p = kbuf_ptr(res->conf);
	size_t n = kbuf_len(res->conf);
	int r;

	if (!a->force && access(a->output, F_OK) == 0) {
		cli_err("migrate", "%s exists: refusing to overwrite it (use --force)", a->output);
		return KMS_ERR_EXISTS;
	}
	if ((r = make_state_dir(out_dir)) != KMS_OK)
		return r;
	for (size_t i = 0; i < res->n_states; i++)
		if ((r = convert_state(&res->states[i], out_dir)) != KMS_OK)
			return r;
	r = a->force ? dfile_write_atomic(a->output, p, n, 0600) :
		       dfile_create_atomic(a->output, p, n, 0600);
	if (r != KMS_OK)
		cli_err("migrate", "%s: cannot write: %s", a->output, kms_strerror(r));
	else
		printf("  ✔ wrote %s\n", a->output);
	return r;
}

static void print_next_steps(const struct mig_args *a)
{
	printf("\nNext steps:\n"
	       "  1. p11kms doctor -c %s\n"
	       "  2. stop tmkms, then: p11kms start -c %s\n"
	       "  3. on the node, priv_validator_laddr stays as it was (p11kms dials it like tmkms)\n",
	       a->output, a->output);
}

int cmd_migrate(int argc, char **argv)
{
	struct mig_args a = { 0 };
	struct migrate_opts mo = { 0 };
	struct migrate_result *res = NULL;
	struct kbuf *src = NULL;
	char *cwd = NULL, *out_dir = NULL, *tmp = NULL;
	int ec = CMD_EXIT_FAIL, r;

	if (parse_args(argc, argv, &a, &ec) != 0)
		return ec;
	/* Library INFO lines (opened key ..., imported ...) would bury the command's own output. */
	if (kms_log_get_level() > KMS_LOG_WARN)
		kms_log_set_level(KMS_LOG_WARN);
	if ((r = dfile_read(a.src, TOML_MAX_INPUT, &src)) != KMS_OK) {
		cli_err("migrate", "%s: cannot read: %s", a.src, kms_strerror(r));
		ec = r == KMS_ERR_NOT_FOUND ? CMD_EXIT_CONFIG : cmd_exit_for(r);
		goto out;
	}
	tmp = a.tmkms_cwd ? NULL : cli_dirname(a.src);
	cwd = cli_absdir(a.tmkms_cwd ? a.tmkms_cwd : tmp ? tmp : ".");
	free(tmp);
	tmp = a.output ? cli_dirname(a.output) : NULL;
	out_dir = cli_absdir(tmp ? tmp : ".");
	if (cwd == NULL || out_dir == NULL) {
		cli_err("migrate", "out of memory or working directory unavailable");
		goto out;
	}
	printf("Relative tmkms paths resolve against %s (%s).\n", cwd,
	       a.tmkms_cwd ?
		       "--tmkms-cwd" :
		       "the directory of tmkms.toml; give --tmkms-cwd if tmkms was started elsewhere");
	mo.src_name = a.src;
	mo.tmkms_cwd = cwd;
	mo.out_dir = out_dir;
	r = migrate_convert(kbuf_ptr(src), kbuf_len(src), &mo, &res);
	if (r == KMS_ERR_ALLOC) {
		cli_err("migrate", "out of memory");
		goto out;
	}
	if (r != KMS_OK) {
		fprintf(stderr, "p11kms migrate: %s cannot be converted:\n", a.src);
		fwrite(kbuf_ptr(res->errors), 1, kbuf_len(res->errors), stderr);
		ec = CMD_EXIT_CONFIG;
		goto out;
	}
	if (kbuf_len(res->notes) > 0) {
		printf("Notes:\n");
		fwrite(kbuf_ptr(res->notes), 1, kbuf_len(res->notes), stdout);
	}
	if ((r = validate(&res[0], a.output ? a.output : "<dry-run>", out_dir)) != KMS_OK) {
		ec = CMD_EXIT_FAIL;
		goto out;
	}
	if (a.dry_run) {
		printf("State files to convert:\n");
		for (size_t i = 0; i < res->n_states; i++)
			printf("  chain %s: %s -> %s/%s%s\n", res->states[i].chain_id,
			       res->states[i].from, out_dir, res->states[i].to,
			       access(res->states[i].from, F_OK) == 0 ?
				       "" :
				       " (no tmkms state file there: `state import` or `state init` "
				       "will be needed)");
		printf("\n--- %s (dry run: nothing written) ---\n",
		       a.output ? a.output : "p11kms.conf");
		fwrite(kbuf_ptr(res->conf), 1, kbuf_len(res->conf), stdout);
		ec = CMD_EXIT_OK;
		goto out;
	}
	if ((r = write_all(&a, res, out_dir)) != KMS_OK) {
		ec = r == KMS_ERR_EXISTS ? CMD_EXIT_FAIL : cmd_exit_for(r);
		goto out;
	}
	print_next_steps(&a);
	ec = CMD_EXIT_OK;
out:
	migrate_result_free(res);
	kbuf_free(src);
	free(cwd);
	free(out_dir);
	free(tmp);
	return ec;
}
