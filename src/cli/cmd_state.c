/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms state show|init|import|export`: the double-sign state of one chain, offline. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kbuf.h"

static const char usage[] =
	"Usage: p11kms state show   [-c CONF] --chain ID\n"
	"       p11kms state init   [-c CONF] --chain ID --height H [--round R] [--step S]\n"
	"       p11kms state import [-c CONF] --chain ID [--format F] [--force] FILE\n"
	"       p11kms state export [-c CONF] --chain ID --format F [-o FILE]\n"
	"\n"
	"The chain's double-sign state file (state_file in the config). init, import\n"
	"and export take the file's lock, so they fail while `p11kms start` holds it;\n"
	"show reads a consistent snapshot and works while the signer runs.\n"
	"  show    the last signed height/round/step, sign bytes, and both records\n"
	"  init    a new state at H/R/S (default round 0, step none: nothing signed at H\n"
	"          yet). Refuses to overwrite an existing state file.\n"
	"  import  from JSON: F = cometbft (priv_validator_state.json of the node, horcrux\n"
	"          single-signer, cosmos/kms), tmkms (steps 0/1/2), horcrux (threshold),\n"
	"          p11kms (an export), or auto (default). An existing state is replaced\n"
	"          only with --force and only if the import does not go backwards.\n"
	"  export  to JSON in format F (cometbft, tmkms, horcrux, p11kms), to stdout or -o\n"
	"\n"
	"  -c, --config FILE  config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"      --chain ID     the chain (required)\n"
	"      --height H --round R --step S   S: none|propose|prevote|precommit or 0-3\n"
	"  -h, --help         this text\n";

struct state_args {
	const char *conf, *chain, *format, *output, *height, *round, *step, *verb, *file;
	int force;
	const char *conf_path; /* the config as loaded, for messages */
};

static int parse_args(int argc, char **argv, struct state_args *a, int *ec)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "chain", required_argument, NULL, 'C' },
		{ "format", required_argument, NULL, 'F' },
		{ "output", required_argument, NULL, 'o' },
		{ "height", required_argument, NULL, 'H' },
		{ "round", required_argument, NULL, 'R' },
		{ "step", required_argument, NULL, 'S' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "c:o:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->conf = optarg;
			break;
		case 'C':
			a->chain = optarg;
			break;
		case 'F':
			a->format = optarg;
			break;
		case 'o':
			a->output = optarg;
			break;
		case 'H':
			a->height = optarg;
			break;
		case 'R':
			a->round = optarg;
			break;
		case 'S':
			a->step = optarg;
			break;
		case 'f':
			a->force = 1;
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
		a->verb = argv[optind++];
	if (optind < argc)
		a->file = argv[optind++];
	*ec = CMD_EXIT_USAGE;
	if (a->verb == NULL || optind != argc) {
		cli_err("state", "say show, init, import FILE or export");
		return -1;
	}
	if (a->chain == NULL) {
		cli_err("state", "--chain ID is required (the state belongs to one chain)");
		return -1;
	}
	if ((a->file != NULL) != (strcmp(a->verb, "import") == 0)) {
		cli_err("state", "%s",
			a->file ? "only import takes a FILE" : "import needs a FILE");
		return -1;
	}
	return 0;
}

static int parse_fmt(const char *s, int allow_auto, enum guard_fmt *out)
{
	static const struct {
		const char *name;
		enum guard_fmt fmt;
	} names[] = {
		{ "auto", GUARD_FMT_AUTO },	{ "cometbft", GUARD_FMT_COMETBFT },
		{ "tmkms", GUARD_FMT_TMKMS },	{ "horcrux", GUARD_FMT_HORCRUX },
		{ "p11kms", GUARD_FMT_P11KMS },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(names[i].name, s) == 0 &&
		    (allow_auto || names[i].fmt != GUARD_FMT_AUTO)) {
			*out = names[i].fmt;
			return KMS_OK;
		}
	}
	cli_err("state", "--format %s: one of cometbft, tmkms, horcrux, p11kms%s", s,
		allow_auto ? ", auto" : "");
	return KMS_ERR_FORMAT;
}

static int parse_i64(const char *what, const char *s, long long min, long long max, long long *out)
{
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno == ERANGE || v < min || v > max) {
		cli_err("state", "%s %s: a whole number from %lld to %lld", what, s, min, max);
		return KMS_ERR_FORMAT;
	}
	*out = v;
	return KMS_OK;
}

static int parse_step(const char *s, enum guard_step *out)
{
	static const char *const names[] = { "none", "propose", "prevote", "precommit" };
	long long v;

	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0 || (i == 1 && strcmp(s, "proposal") == 0)) {
			*out = (enum guard_step)i;
			return KMS_OK;
		}
	}
	if (parse_i64("--step", s, 0, 3, &v) != KMS_OK)
		return KMS_ERR_FORMAT;
	*out = (enum guard_step)v;
	return KMS_OK;
}

static int ensure_parent(const char *path)
{
	char *d = cli_dirname(path);
	int r = KMS_OK;

	if (d == NULL)
		return KMS_ERR_ALLOC;
	if (mkdir(d, 0700) != 0 && errno != EEXIST) {
		cli_err("state", "mkdir %s: %s", d, strerror(errno));
		r = KMS_ERR_SYSTEM;
	}
	free(d);
	return r;
}

static int do_init(const struct state_args *a, const char *path)
{
	long long h, rd = 0;
	enum guard_step st = GUARD_STEP_NONE;
	int r;

	if (a->height == NULL) {
		cli_err("state", "init needs --height H (the height the node is at; nothing at or "
				 "below H/R/S will be signed)");
		return KMS_ERR_CONFIG;
	}
	if (parse_i64("--height", a->height, 0, INT64_MAX, &h) != KMS_OK ||
	    (a->round && parse_i64("--round", a->round, 0, INT32_MAX, &rd) != KMS_OK) ||
	    (a->step && parse_step(a->step, &st) != KMS_OK))
		return KMS_ERR_CONFIG;
	if ((r = ensure_parent(path)) != KMS_OK)
		return r;
	r = guard_state_init(path, a->chain, (int64_t)h, (int32_t)rd, st);
	if (r == KMS_ERR_EXISTS)
		cli_err("state",
			"%s exists: init never overwrites a state (see `state show`; "
			"`state import --force` moves it forward)",
			path);
	else if (r != KMS_OK)
		cli_err("state", "%s: %s", path, kms_strerror(r));
	else
		printf("Initialised %s for %s at %lld/%lld/%s\n", path, a->chain, h, rd,
		       guard_step_name(st));
	return r;
}

static int do_import(const struct state_args *a, const char *path)
{
	enum guard_fmt fmt = GUARD_FMT_AUTO;
	struct kbuf *json = NULL;
	int r;

	if (a->format != NULL && parse_fmt(a->format, 1, &fmt) != KMS_OK)
		return KMS_ERR_CONFIG;
	if ((r = dfile_read(a->file, 64 * 1024, &json)) != KMS_OK) {
		cli_err("state", "%s: %s", a->file, kms_strerror(r));
		return r;
	}
	if ((r = ensure_parent(path)) == KMS_OK)
		r = guard_state_import(path, a->chain, kbuf_ptr(json), kbuf_len(json), fmt,
				       a->force);
	kbuf_free(json);
	if (r == KMS_ERR_EXISTS)
		cli_err("state", "%s exists: use --force to replace it (never with an older state)",
			path);
	else if (r == KMS_ERR_REFUSED)
		cli_err("state",
			"%s: refused (the import is behind the existing state, or is for "
			"another chain)",
			a->file);
	else if (r != KMS_OK)
		cli_err("state", "%s -> %s: %s", a->file, path, kms_strerror(r));
	else
		printf("Imported %s into %s for %s\n", a->file, path, a->chain);
	return r;
}

static int do_show_export(const struct state_args *a, const char *path, int export)
{
	enum guard_fmt fmt = GUARD_FMT_P11KMS;
	struct kbuf *out = kbuf_new(256 * 1024);
	int r;

	if (out == NULL)
		return KMS_ERR_ALLOC;
	if (export && (a->format == NULL || parse_fmt(a->format, 0, &fmt) != KMS_OK)) {
		if (a->format == NULL)
			cli_err("state", "export needs --format cometbft|tmkms|horcrux|p11kms");
		r = KMS_ERR_CONFIG;
		goto out;
	}
	/* #17: a missing file is said here, with the chain (the guard would log chain=?) */
	if (access(path, F_OK) != 0 && errno == ENOENT) {
		cli_err("state",
			"no state for chain %s: %s does not exist; create it with `p11kms state init "
			"-c %s --chain %s --height H` or `p11kms state import -c %s --chain %s FILE`",
			a->chain, path, a->conf_path, a->chain, a->conf_path, a->chain);
		r = KMS_ERR_NOT_FOUND;
		goto out;
	}
	unsigned mark = cli_log_errors();
	r = export ? guard_state_export(path, fmt, out) : guard_state_show(path, out);
	if (r != KMS_OK) {
		cli_fail("state", mark, r, "%s: cannot %s it", path, export ? "export" : "show");
		goto out;
	}
	if (export && a->output != NULL) {
		if ((r = dfile_write_atomic(a->output, kbuf_ptr(out), kbuf_len(out), 0600)) !=
		    KMS_OK)
			cli_err("state", "%s: %s", a->output, kms_strerror(r));
		goto out;
	}
	fwrite(kbuf_ptr(out), 1, kbuf_len(out), stdout);
	if (kbuf_len(out) > 0 && kbuf_ptr(out)[kbuf_len(out) - 1] != '\n')
		fputc('\n', stdout);
out:
	kbuf_free(out);
	return r;
}

int cmd_state(int argc, char **argv)
{
	struct state_args a = { 0 };
	struct cfg *cfg = NULL;
	const struct cfg_chain *ch;
	int ec = CMD_EXIT_FAIL, r;

	if (parse_args(argc, argv, &a, &ec) != 0)
		return ec;
	/* Library INFO lines (opened key ..., imported ...) would bury the command's own output. */
	if (kms_log_get_level() > KMS_LOG_WARN)
		kms_log_set_level(KMS_LOG_WARN);
	if (strcmp(a.verb, "show") != 0 && strcmp(a.verb, "init") != 0 &&
	    strcmp(a.verb, "import") != 0 && strcmp(a.verb, "export") != 0) {
		cli_err("state", "unknown action '%s' (show, init, import, export)", a.verb);
		return CMD_EXIT_USAGE;
	}
	if ((r = cli_load_config("state", a.conf, &cfg)) != KMS_OK)
		return cmd_exit_for(r);
	a.conf_path = cfg->path;
	if ((ch = cfg_chain_find(cfg, a.chain)) == NULL) {
		char chains[512];
		cli_chain_list(cfg, chains, sizeof(chains));
		cli_err("state", "chain %s is not in %s (chains there: %s)", a.chain, cfg->path,
			chains);
		ec = CMD_EXIT_CONFIG;
		goto out;
	}
	if (strcmp(a.verb, "init") == 0)
		r = do_init(&a, ch->state_file);
	else if (strcmp(a.verb, "import") == 0)
		r = do_import(&a, ch->state_file);
	else
		r = do_show_export(&a, ch->state_file, strcmp(a.verb, "export") == 0);
	if (r == KMS_OK)
		ec = CMD_EXIT_OK;
	else if (r == KMS_ERR_CONFIG)
		ec = CMD_EXIT_USAGE;
	else if (r == KMS_ERR_PERM)
		ec = CMD_EXIT_PERM;
	else
		ec = CMD_EXIT_STATE;
out:
	cfg_free(cfg);
	return ec;
}
