/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms state show|init|import|export`: the double-sign state of one chain, offline. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/ha.h"
#include "p11kms/kbuf.h"

static const char usage[] =
	"Usage: p11kms state show   [-c CONF] --chain ID [--json]\n"
	"       p11kms state init   [-c CONF] --chain ID --height H [--round R] [--step S]\n"
	"       p11kms state import [-c CONF] --chain ID [--format F] [--force] FILE\n"
	"       p11kms state export [-c CONF] --chain ID --format F [-o FILE]\n"
	"       p11kms state repair [-c CONF] --chain ID [--accept-record SEQ | --set-height H]\n"
	"\n"
	"The chain's double-sign state file (state_file in the config). init, import\n"
	"and export take the file's lock, so they fail while `p11kms start` holds it;\n"
	"show reads a consistent snapshot and works while the signer runs.\n"
	"  show    the last signed height/round/step, sign bytes, and both records\n"
	"          (--json: one JSON object, fields in docs/cli.md)\n"
	"  init    a new state at H/R/S (default round 0, step none: nothing signed at H\n"
	"          yet). Refuses to overwrite an existing state file.\n"
	"  import  from JSON. The format is detected from the file's shape and the\n"
	"          mapping (its height/round/step -> ours) printed before anything is\n"
	"          written: cometbft (the node's priv_validator_state.json, horcrux\n"
	"          single-signer, cosmos/kms), tmkms (steps 0/1/2), horcrux (threshold),\n"
	"          p11kms (an export). --format F only confirms it: a file of another\n"
	"          format's shape is refused. An existing state is replaced only with\n"
	"          --force and only if the import does not go backwards.\n"
	"  export  to JSON in format F (cometbft, tmkms, horcrux, p11kms), to stdout or -o\n"
	"  repair  a state start refuses because a record is invalid (torn or damaged):\n"
	"          shows both records and what each choice would lose. Only with a\n"
	"          choice does it write: --accept-record SEQ keeps the valid record SEQ;\n"
	"          --set-height H starts over at H/0/none (H above every height either\n"
	"          record names). Refused while p11kms start holds the state.\n"
	"With an `ha` block (docs/ha.md), init and import also move the cluster mark in\n"
	"etcd forward to the new state (never backwards), and show prints it beside.\n"
	"\n"
	"  -c, --config FILE  config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"      --chain ID     the chain (required)\n"
	"      --height H --round R --step S   S: none|propose|prevote|precommit or 0-3\n"
	"  -h, --help         this text\n";

struct state_args {
	const char *conf, *chain, *format, *output, *height, *round, *step, *verb, *file;
	const char *accept, *set_height;
	int force, json;
	const char *conf_path; /* the config as loaded, for messages */
};

/* The schema version of `state show --json` (docs/cli.md). */
#define STATE_JSON_VERSION 1

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_state_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "chain", required_argument, NULL, 'C' },
	{ "format", required_argument, NULL, 'F' },
	{ "output", required_argument, NULL, 'o' },
	{ "height", required_argument, NULL, 'H' },
	{ "round", required_argument, NULL, 'R' },
	{ "step", required_argument, NULL, 'S' },
	{ "force", no_argument, NULL, 'f' },
	{ "accept-record", required_argument, NULL, 'A' },
	{ "set-height", required_argument, NULL, 'T' },
	{ "json", no_argument, NULL, 'J' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, struct state_args *a, int *ec)
{
	const struct option *opts = cmd_state_options;
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
		case 'J':
			a->json = 1;
			break;
		case 'A':
			a->accept = optarg;
			break;
		case 'T':
			a->set_height = optarg;
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
		cli_err("state", "say show, init, import FILE, export or repair");
		return -1;
	}
	if (a->chain == NULL) {
		cli_err("state", "--chain ID is required (the state belongs to one chain)");
		return -1;
	}
	if (a->json && strcmp(a->verb, "show") != 0) {
		cli_err("state", "--json is for show only (export writes JSON in the format asked)");
		return -1;
	}
	if ((a->accept != NULL || a->set_height != NULL) && strcmp(a->verb, "repair") != 0) {
		cli_err("state", "--accept-record and --set-height belong to state repair");
		return -1;
	}
	if (a->accept != NULL && a->set_height != NULL) {
		cli_err("state", "repair takes one choice: --accept-record SEQ or --set-height H");
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

/* s for a shell command line: as is when safe, else in single quotes. */
static void put_shell_word(FILE *f, const char *s)
{
	int plain = s[0] != '\0';
	for (const char *c = s; *c != '\0'; c++)
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=./:@,%",
			   *c) == NULL)
			plain = 0;
	if (plain) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (const char *c = s; *c != '\0'; c++)
		*c == '\'' ? fputs("'\\''", f) : fputc(*c, f);
	fputc('\'', f);
}

/* The exact import command for fmt (stderr). */
static void print_import_cmd(const struct state_args *a, const char *conf, enum guard_fmt fmt)
{
	fputs("  p11kms state import -c ", stderr);
	put_shell_word(stderr, conf);
	fputs(" --chain ", stderr);
	put_shell_word(stderr, a->chain);
	fprintf(stderr, " --format %s%s ", guard_fmt_name(fmt), a->force ? " --force" : "");
	put_shell_word(stderr, a->file);
	fputc('\n', stderr);
}

/*
 * The format the file is read with: its detected shape, which --format (when
 * given) must match; a mismatch is refused with the command that reads it right.
 */
static int import_format(const struct state_args *a, const char *conf, const struct kbuf *json,
			 enum guard_fmt *fmt, char *why, size_t cap)
{
	enum guard_fmt want = GUARD_FMT_AUTO;
	if (a->format != NULL && parse_fmt(a->format, 1, &want) != KMS_OK)
		return KMS_ERR_CONFIG;
	*fmt = guard_state_detect(kbuf_ptr(json), kbuf_len(json), why, cap);
	if (*fmt == GUARD_FMT_AUTO) {
		cli_err("state", "%s is not a CometBFT, tmkms, horcrux or p11kms state file: %s",
			a->file, why);
		return KMS_ERR_FORMAT;
	}
	if (want != GUARD_FMT_AUTO && want != *fmt) {
		cli_err("state",
			"%s is a %s state file (%s), not %s: reading it as %s would misread its "
			"step. Refused; nothing was written. To import it:",
			a->file, guard_fmt_name(*fmt), why, guard_fmt_name(want),
			guard_fmt_name(want));
		print_import_cmd(a, conf, *fmt);
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

/* What will be written, before it is: source H/R/S as the source numbers it → ours. */
static int print_mapping(const struct state_args *a, const struct kbuf *json, enum guard_fmt fmt,
			 const char *why)
{
	struct guard_state *st = calloc(1, sizeof(*st));
	int r = KMS_ERR_ALLOC;
	if (st == NULL)
		return r;
	r = guard_state_parse_json(kbuf_ptr(json), kbuf_len(json), fmt, st);
	if (r != KMS_OK) {
		cli_err("state", "%s: not a valid %s state file (see the message above)", a->file,
			guard_fmt_name(fmt));
		goto out;
	}
	printf("Format:  %s, %s (%s)\n", guard_fmt_name(fmt),
	       a->format == NULL || strcmp(a->format, "auto") == 0 ? "detected" : "as given", why);
	printf("Mapping: %s height %lld, round %d, step %d (%s in %s's numbering)\n"
	       "      -> p11kms %lld/%d/%s (step %d)\n",
	       guard_fmt_name(fmt), (long long)st->hrs.height, (int)st->hrs.round, st->src_step,
	       guard_fmt_step_name(fmt, st->src_step), guard_fmt_name(fmt),
	       (long long)st->hrs.height, (int)st->hrs.round, guard_step_name(st->hrs.step),
	       (int)st->hrs.step);
	if (fmt == GUARD_FMT_TMKMS && st->src_step == 0 && st->hrs.step == GUARD_STEP_NONE)
		printf("         (tmkms step 0 with no block: its initial state, nothing signed "
		       "at this height and round)\n");
	printf("Stored:  %s\n",
	       st->sign_bytes_len != 0 ?
		       "sign bytes and signature (an identical retry gets the stored signature)" :
		       "no sign bytes (a request at exactly this height/round/step is refused)");
	fflush(stdout);
out:
	kms_wipe(st, sizeof(*st));
	free(st);
	return r;
}

static int do_import(const struct state_args *a, const char *conf, const char *path)
{
	enum guard_fmt fmt = GUARD_FMT_AUTO;
	struct kbuf *json = NULL;
	char why[160];
	int r;

	if ((r = dfile_read(a->file, 64 * 1024, &json)) != KMS_OK) {
		cli_err("state", "%s: %s", a->file, kms_strerror(r));
		return r;
	}
	if ((r = import_format(a, conf, json, &fmt, why, sizeof(why))) != KMS_OK ||
	    (r = print_mapping(a, json, fmt, why)) != KMS_OK)
		goto out;
	if ((r = ensure_parent(path)) == KMS_OK)
		r = guard_state_import(path, a->chain, kbuf_ptr(json), kbuf_len(json), fmt,
				       a->force);
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
out:
	kbuf_free(json);
	return r;
}

static void print_record(int i, const struct guard_record_view *r)
{
	if (r->valid)
		printf("  slot %d: valid: sequence %llu, h/r/s %lld/%d/%s, %s\n", i,
		       (unsigned long long)r->seq, (long long)r->hrs.height, (int)r->hrs.round,
		       guard_step_name(r->hrs.step),
		       r->has_sig ? "sign bytes and signature stored" : "no sign bytes");
	else if (r->readable)
		printf("  slot %d: INVALID (%s); its header claims sequence %llu, h/r/s "
		       "%lld/%d/%s (unverified)\n",
		       i, r->why, (unsigned long long)r->seq, (long long)r->hrs.height,
		       (int)r->hrs.round, guard_step_name(r->hrs.step));
	else
		printf("  slot %d: INVALID (%s); nothing in it can be read\n", i, r->why);
}

/* What each choice would do and lose, in the operator's terms. */
static void print_choices(const struct guard_repair_view *v)
{
	const struct guard_record_view *ok = v->accept_slot >= 0 ? &v->rec[v->accept_slot] : NULL;
	const struct guard_record_view *bad = ok != NULL ? &v->rec[1 - v->accept_slot] : NULL;
	printf("\nAn invalid record cannot be told apart: either a crash or power cut hit it\n"
	       "while it was being written (its signature never left: p11kms releases a\n"
	       "signature only after its record is on disk), or it was damaged after it was\n"
	       "written (its signature may have left). Start refuses until you choose:\n\n");
	if (ok != NULL) {
		printf("  --accept-record %llu\n"
		       "      continue from h/r/s %lld/%d/%s. ",
		       (unsigned long long)ok->seq, (long long)ok->hrs.height, (int)ok->hrs.round,
		       guard_step_name(ok->hrs.step));
		if (bad->readable)
			printf("Lost: the invalid record, which claims h/r/s %lld/%d/%s;\n"
			       "      if its signature had left, signing there again is a DOUBLE "
			       "SIGN.\n",
			       (long long)bad->hrs.height, (int)bad->hrs.round,
			       guard_step_name(bad->hrs.step));
		else
			printf("Lost: whatever the unreadable record held; if it was newer and\n"
			       "      its signature had left, signing there again is a DOUBLE SIGN.\n");
		printf("      Choose it after a crash or power cut during signing.\n");
	}
	printf("  --set-height H\n"
	       "      start over at H, round 0, nothing signed: every height below H is refused.\n"
	       "      H must be at least %lld (above every height either record names)%s;\n"
	       "      take it from the chain: its latest block height + 1 or more. Lost: the\n"
	       "      stored signature (a retry at that height/round/step is refused).\n",
	       (long long)v->floor_height + 1,
	       v->unreadable ? ", but a record could not be read: the chain's height is the "
			       "only floor" :
			       "");
}

static int repair_choice(const struct state_args *a, const char *path)
{
	long long x;
	if (a->accept != NULL) {
		if (parse_i64("--accept-record", a->accept, 0, INT64_MAX, &x) != KMS_OK)
			return KMS_ERR_CONFIG;
		return guard_state_repair_accept(path, a->chain, (uint64_t)x);
	}
	if (parse_i64("--set-height", a->set_height, 1, INT64_MAX, &x) != KMS_OK)
		return KMS_ERR_CONFIG;
	return guard_state_repair_height(path, a->chain, (int64_t)x);
}

static int do_repair(const struct state_args *a, const char *conf, const char *path)
{
	struct guard_repair_view v;
	int r = guard_state_repair_view(path, &v);
	if (r != KMS_OK) {
		cli_err("state", "%s: %s%s", path, kms_strerror(r),
			r == KMS_ERR_LOCKED ? " (stop p11kms start first: repair needs the state "
					      "to itself)" :
			r == KMS_ERR_FORMAT ? " (not a p11kms state file of the right size: "
					      "restore it, or `state import` the node's state)" :
					      "");
		return r;
	}
	printf("State file %s (chain %s):\n", path, a->chain);
	print_record(0, &v.rec[0]);
	print_record(1, &v.rec[1]);
	if (v.healthy) {
		printf("Both records are valid: nothing to repair (`p11kms start` accepts it).\n");
		if (a->accept == NULL && a->set_height == NULL)
			return KMS_OK;
		cli_err("state", "nothing to repair: refused, nothing written");
		return KMS_ERR_REFUSED;
	}
	if (a->accept == NULL && a->set_height == NULL) {
		print_choices(&v);
		printf("\nThen: p11kms state repair -c %s --chain %s --accept-record SEQ | "
		       "--set-height H\n",
		       conf, a->chain);
		return KMS_OK;
	}
	fflush(stdout);
	if ((r = repair_choice(a, path)) == KMS_OK)
		printf("Repaired: both records now hold the chosen state; `p11kms start` will "
		       "accept it.\n");
	else if (r != KMS_ERR_CONFIG)
		cli_err("state", "repair refused: %s (see the message above)", kms_strerror(r));
	return r;
}

/*
 * #20 (docs/ha.md): init, import and a repair that wrote move the cluster mark
 * forward (never backwards); show and a repair that only looks print it.
 */
static const char ha_repair_hint[] =
	"The cluster mark holds the newest signature any host released: nothing above it\n"
	"was released, and with the cluster attached a request at or below it is refused\n"
	"or answered from the mark whichever record you keep (docs/ha.md).\n";

static int ha_after(const struct state_args *a, const struct cfg_chain *ch, int r)
{
	struct kbuf *out;
	int hr;
	int look = strcmp(a->verb, "show") == 0 ||
		   (strcmp(a->verb, "repair") == 0 && a->accept == NULL && a->set_height == NULL);
	/* --json prints one object: the cluster mark stays out of it (`ha status` has it) */
	if (ch->ha == NULL || a->json || strcmp(a->verb, "export") == 0 || (r != KMS_OK && !look))
		return r;
	if ((out = kbuf_new(64 * 1024)) == NULL)
		return KMS_ERR_ALLOC;
	if (look) {
		hr = ha_mark_show(ch, out);
	} else if ((hr = ha_state_forward(ch, out)) != KMS_OK) {
		cli_err("state",
			"the local state is written, but the cluster mark in etcd was NOT moved "
			"forward (%s): run this again when etcd is reachable (`p11kms start` also "
			"moves it forward)",
			kms_strerror(hr));
	}
	fwrite(kbuf_ptr(out), 1, kbuf_len(out), stdout);
	if (look && strcmp(a->verb, "repair") == 0)
		fputs(ha_repair_hint, stdout);
	kbuf_free(out);
	return r != KMS_OK ? r : look ? KMS_OK : hr;
}

/* "2026-11-25T16:30:00Z" (UTC) for t, or "" if it does not format. */
static void iso_time(time_t t, char out[static 32])
{
	struct tm tm;
	out[0] = '\0';
	if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		out[0] = '\0';
}

/* {"length": n, "sha256": "hex"} of the stored sign bytes, or null without any. */
static json_t *sign_bytes_json(const struct guard_state *st)
{
	uint8_t sum[32];
	unsigned int sl = sizeof(sum);
	char hex[65];
	if (st->sign_bytes_len == 0)
		return json_null();
	if (EVP_Digest(st->sign_bytes, st->sign_bytes_len, sum, &sl, EVP_sha256(), NULL) != 1 ||
	    enc_hex_encode(sum, sizeof(sum), hex, sizeof(hex)) != KMS_OK)
		return NULL;
	return json_pack("{s:I,s:s}", "length", (json_int_t)st->sign_bytes_len, "sha256", hex);
}

/*
 * state show --json: the newest valid record of the file as one object
 * (docs/cli.md). Read without the lock, like the text form, which runs
 * first so that both fail the same way (missing, corrupt, unreadable).
 */
static int show_json(const char *path)
{
	struct kbuf *text = kbuf_new(256 * 1024), *img = NULL;
	struct guard_state *st = calloc(1, sizeof(*st));
	struct stat sb;
	uint64_t seq = 0;
	char mtime[32] = "";
	int r = KMS_ERR_ALLOC;

	if (text == NULL || st == NULL)
		goto out;
	if ((r = guard_state_show(path, text)) != KMS_OK) {
		cli_err("state", "%s: %s%s", path, kms_strerror(r),
			r == KMS_ERR_NOT_FOUND ? " (create it with `state init` or `state import`)" :
						 "");
		goto out;
	}
	if ((r = dfile_read(path, 64 * 1024, &img)) != KMS_OK ||
	    (r = guard_state_parse_file(kbuf_ptr(img), kbuf_len(img), st, &seq)) != KMS_OK) {
		cli_err("state", "%s: %s", path, kms_strerror(r));
		goto out;
	}
	if (stat(path, &sb) == 0)
		iso_time(sb.st_mtime, mtime);
	r = cli_json_print(json_pack(
		"{s:i,s:s,s:s,s:I,s:i,s:i,s:s,s:I,s:o?,s:b,s:s?}", "version", STATE_JSON_VERSION,
		"chain_id", st->chain_id, "path", path, "height", (json_int_t)st->hrs.height, "round",
		(int)st->hrs.round, "step", (int)st->hrs.step, "step_name",
		guard_step_name(st->hrs.step), "sequence", (json_int_t)seq, "sign_bytes",
		sign_bytes_json(st), "signature_stored", st->has_signature, "file_modified",
		mtime[0] ? mtime : NULL));
out:
	kbuf_free(text);
	kbuf_free(img);
	free(st);
	return r;
}

/* #17: show/export of a missing state, said here with the chain (the guard would log chain=?). */
static int state_missing(const struct state_args *a, const char *path)
{
	if (access(path, F_OK) == 0 || errno != ENOENT)
		return 0;
	cli_err("state",
		"no state for chain %s: %s does not exist; create it with `p11kms state init -c %s "
		"--chain %s --height H` or `p11kms state import -c %s --chain %s FILE`",
		a->chain, path, a->conf_path, a->chain, a->conf_path, a->chain);
	return 1;
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
	    strcmp(a.verb, "import") != 0 && strcmp(a.verb, "export") != 0 &&
	    strcmp(a.verb, "repair") != 0) {
		cli_err("state", "unknown action '%s' (show, init, import, export, repair)",
			a.verb);
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
		r = do_import(&a, cfg->path, ch->state_file);
	else if (strcmp(a.verb, "repair") == 0)
		r = do_repair(&a, cfg->path, ch->state_file);
	else if (state_missing(&a, ch->state_file))
		r = KMS_ERR_NOT_FOUND;
	else if (a.json)
		r = show_json(ch->state_file);
	else
		r = do_show_export(&a, ch->state_file, strcmp(a.verb, "export") == 0);
	r = ha_after(&a, ch, r);
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
