/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms audit verify|show|export`: check and read the audit log (docs/audit.md). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "p11kms/audit.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

static const char usage[] =
	"Usage: p11kms audit verify [-c CONF] [--key HEX] [--anchor SEQ:HASH] [-q] [FILE...]\n"
	"       p11kms audit show   [-c CONF] [--chain ID] [--since H] [--until H] [FILE...]\n"
	"       p11kms audit export [-c CONF] [--json] [FILE...]\n"
	"\n"
	"The audit log: one hash-chained record per signing decision (docs/audit.md).\n"
	"FILEs are read in the order given (.gz too); without them, every file in the\n"
	"config's audit.dir, oldest first. All three only read: they work while the\n"
	"daemon writes the log.\n"
	"  verify  checks the chain, the files' order, checkpoint signatures, and (with the\n"
	"          config) the chains' double-sign state against the log. Exit 0 with the\n"
	"          counts when intact; 1 naming the first bad record and the damage: edited,\n"
	"          missing, reordered, truncated, checkpoint signature bad, spliced.\n"
	"  show    decisions as a table, optionally of one chain and a height range\n"
	"  export  every record as one JSON object per line\n"
	"\n"
	"  -c, --config FILE   config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"      --key HEX       checkpoints must be signed by this Ed25519 public key\n"
	"      --anchor SEQ:HASH  the log must continue this record (a head printed before)\n"
	"  -q, --quiet         verify: no explanations, only the result\n"
	"      --chain ID      show: only this chain\n"
	"      --since H --until H   show: heights H1..H2 (inclusive)\n"
	"  -h, --help          this text\n";

#define FILE_MAX ((size_t)1 << 30)

struct audit_args {
	const char *verb, *conf, *chain, *key, *anchor;
	int quiet, json;
	int64_t since, until;
	char **files;
	int n_files;
};

static int parse_height(const char *s, int64_t *out)
{
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_audit_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "key", required_argument, NULL, 'K' },
	{ "anchor", required_argument, NULL, 'A' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "chain", required_argument, NULL, 'C' },
	{ "since", required_argument, NULL, 'S' },
	{ "until", required_argument, NULL, 'U' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, struct audit_args *a)
{
	const struct option *opts = cmd_audit_options;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "c:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			a->conf = optarg;
			break;
		case 'K':
			a->key = optarg;
			break;
		case 'A':
			a->anchor = optarg;
			break;
		case 'q':
			a->quiet = 1;
			break;
		case 'C':
			a->chain = optarg;
			break;
		case 'S':
		case 'U':
			if (parse_height(optarg, c == 'S' ? &a->since : &a->until) != 0) {
				cli_err("audit", "--%s: \"%s\" is not a height",
					c == 'S' ? "since" : "until", optarg);
				return CMD_EXIT_USAGE;
			}
			break;
		case 'j':
			a->json = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return -1;
		default:
			fputs(usage, stderr);
			return CMD_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		cli_err("audit", "say verify, show or export");
		return CMD_EXIT_USAGE;
	}
	a->verb = argv[optind++];
	a->files = argv + optind;
	a->n_files = argc - optind;
	if (strcmp(a->verb, "verify") != 0 && strcmp(a->verb, "show") != 0 &&
	    strcmp(a->verb, "export") != 0) {
		cli_err("audit", "unknown verb \"%s\": say verify, show or export", a->verb);
		return CMD_EXIT_USAGE;
	}
	return 0;
}

/* The files to read: the arguments, or the config's audit.dir. */
static int collect_files(const char *verb, const struct audit_args *a, const struct cfg *cfg,
			 char ***paths, size_t *n)
{
	*paths = NULL;
	*n = 0;
	if (a->n_files > 0) {
		if ((*paths = calloc((size_t)a->n_files, sizeof(char *))) == NULL)
			return CMD_EXIT_FAIL;
		for (int i = 0; i < a->n_files; i++)
			if (((*paths)[(*n)++] = strdup(a->files[i])) == NULL)
				return CMD_EXIT_FAIL;
		return CMD_EXIT_OK;
	}
	if (cfg == NULL || !cfg->audit.enabled) {
		cli_err(verb, "no FILEs, and %s has no audit = { dir = ...; } block",
			cfg != NULL ? cfg->path : "the config");
		return CMD_EXIT_CONFIG;
	}
	int r = audit_dir_list(cfg->audit.dir, paths, n);
	if (r != KMS_OK || *n == 0) {
		cli_err(verb, "no audit files in %s%s%s", cfg->audit.dir, r != KMS_OK ? ": " : "",
			r != KMS_OK ? kms_strerror(r) : "");
		return CMD_EXIT_FAIL;
	}
	return CMD_EXIT_OK;
}

/*
 * Whether the last file is the newest of its directory (the set reaches the
 * present: compare with the state files) and whether a daemon is writing it.
 */
static void last_file(char **paths, size_t n, int *newest, int *live)
{
	char *dir = cli_dirname(paths[n - 1]), **all = NULL;
	size_t na = 0;
	*newest = 0;
	*live = 0;
	if (dir == NULL)
		return;
	if (audit_dir_list(dir, &all, &na) == KMS_OK && na > 0) {
		const char *a = strrchr(all[na - 1], '/'), *b = strrchr(paths[n - 1], '/');
		*newest = strcmp(a ? a + 1 : all[na - 1], b ? b + 1 : paths[n - 1]) == 0;
		*live = *newest && audit_dir_live(dir, NULL);
	}
	audit_paths_free(all, na);
	free(dir);
}

static void print_note(void *ctx, const char *line)
{
	(void)ctx;
	printf("  note: %s\n", line);
}

static int parse_key(const char *s, uint8_t key[32])
{
	size_t n = 0;
	return strlen(s) == 64 && enc_hex_decode(s, 64, key, 32, &n) == KMS_OK && n == 32 ? 0 : -1;
}

static int parse_anchor(const char *s, struct audit_verify_opts *o)
{
	const char *colon = strchr(s, ':');
	char *end = NULL;
	size_t n = 0;
	if (colon == NULL || strlen(colon + 1) != 64)
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end != colon || s[0] == '-' ||
	    enc_hex_decode(colon + 1, 64, o->anchor_hash, 32, &n) != KMS_OK || n != 32)
		return -1;
	o->has_anchor = 1;
	o->anchor_seq = v;
	return 0;
}

/* The chains' state sequences (read without their locks), when the set reaches the present. */
static struct audit_state_seq *state_seqs(const struct cfg *cfg, size_t *n)
{
	struct audit_state_seq *s = calloc(cfg->n_chains + 1, sizeof(*s));
	*n = 0;
	for (size_t i = 0; s != NULL && i < cfg->n_chains; i++) {
		uint64_t seq;
		if (audit_state_seq_read(cfg->chains[i].state_file, &seq) != KMS_OK)
			continue;
		s[*n].chain_id = cfg->chains[i].id;
		s[(*n)++].seq = seq;
	}
	return s;
}

static void print_report(const struct audit_report *rep, int quiet)
{
	char id[33] = "", head[65] = "", key[65] = "", nid[41] = "";
	uint8_t addr[20];
	if (enc_hex_encode(rep->log_id, 16, id, sizeof(id)) != KMS_OK ||
	    enc_hex_encode(rep->head, 32, head, sizeof(head)) != KMS_OK)
		id[0] = head[0] = '\0';
	if (rep->damage != AUDIT_INTACT) {
		printf("DAMAGED (%s): %s: %s\n", audit_damage_name(rep->damage), rep->where,
		       rep->what);
		printf("  read before it: %llu files, %llu records\n",
		       (unsigned long long)rep->files, (unsigned long long)rep->records);
		return;
	}
	printf("intact: %llu files, %llu records (#%llu..#%llu) of log %s\n",
	       (unsigned long long)rep->files, (unsigned long long)rep->records,
	       (unsigned long long)rep->first_seq, (unsigned long long)rep->last_seq, id);
	if (quiet)
		return;
	printf("  decisions: %llu signed, %llu stored signature returned, %llu refused; %llu "
	       "daemon starts\n",
	       (unsigned long long)rep->signed_, (unsigned long long)rep->stored,
	       (unsigned long long)rep->refused, (unsigned long long)rep->starts);
	printf("  not recorded: %llu dropped (queue full), %llu lost (write errors); %llu gaps "
	       "explained by crashes\n",
	       (unsigned long long)rep->dropped, (unsigned long long)rep->lost,
	       (unsigned long long)rep->gaps_explained);
	printf("  checkpoints: %llu, %llu signed", (unsigned long long)rep->checkpoints,
	       (unsigned long long)rep->checkpoints_signed);
	if (rep->has_key && enc_hex_encode(rep->key, 32, key, sizeof(key)) == KMS_OK &&
	    enc_ed25519_address(rep->key, addr) == KMS_OK &&
	    enc_hex_encode(addr, 20, nid, sizeof(nid)) == KMS_OK)
		printf(" by key %s (KMS node id %s)", key, nid);
	if (rep->has_signed_cp)
		printf("; the last signed one covers records up to #%llu",
		       (unsigned long long)rep->signed_cp_seq);
	printf("\n  end: %s\n", rep->clean_end ? "a clean stop (shutdown checkpoint)" :
						 "the daemon is still writing");
	printf("  head: record #%llu hash %s (check the next files with --anchor %llu:%s)\n",
	       (unsigned long long)rep->last_seq, head, (unsigned long long)rep->last_seq, head);
}

static int do_verify(const struct audit_args *a, const struct cfg *cfg, char **paths, size_t n)
{
	struct audit_verify_opts o = { .note = a->quiet ? NULL : print_note };
	struct audit_verify *v = NULL;
	struct audit_report rep;
	struct audit_state_seq *st = NULL;
	uint8_t key[32];
	int ec = CMD_EXIT_FAIL;
	if (a->key != NULL) {
		if (parse_key(a->key, key) != 0) {
			cli_err("audit verify", "--key: 64 hex digits (an Ed25519 public key)");
			return CMD_EXIT_USAGE;
		}
		o.pin_key = key;
	}
	if (a->anchor != NULL && parse_anchor(a->anchor, &o) != 0) {
		cli_err("audit verify", "--anchor: SEQ:HASH (a record number and its 64-hex hash)");
		return CMD_EXIT_USAGE;
	}
	int newest = 0;
	last_file(paths, n, &newest, &o.live);
	if (cfg != NULL && newest)
		o.state = st = state_seqs(cfg, &o.n_state);
	if (audit_verify_new(&o, &v) != KMS_OK)
		goto out;
	for (size_t i = 0; i < n; i++) {
		uint8_t *img = NULL;
		size_t len = 0;
		int r = audit_file_load(paths[i], FILE_MAX, &img, &len);
		if (r != KMS_OK) {
			cli_err("audit verify", "cannot read %s: %s", paths[i], kms_strerror(r));
			goto out;
		}
		const char *base = strrchr(paths[i], '/');
		int bad = audit_verify_file(v, base != NULL ? base + 1 : paths[i], img, len);
		free(img);
		if (bad)
			break;
	}
	audit_verify_end(v, &rep);
	print_report(&rep, a->quiet);
	ec = rep.damage == AUDIT_INTACT ? CMD_EXIT_OK : CMD_EXIT_FAIL;
out:
	audit_verify_free(v);
	free(st);
	return ec;
}

static int do_render(const struct audit_args *a, char **paths, size_t n)
{
	struct audit_filter f = { .chain_id = a->chain, .since = a->since, .until = a->until };
	int show = strcmp(a->verb, "show") == 0;
	int ec = CMD_EXIT_OK;
	if (!show && (a->chain != NULL || a->since != 0 || a->until != 0)) {
		cli_err("audit export", "export gives every record; filter with show");
		return CMD_EXIT_USAGE;
	}
	if (show)
		audit_render_table_header(stdout);
	for (size_t i = 0; i < n; i++) {
		uint8_t *img = NULL;
		size_t len = 0;
		int r = audit_file_load(paths[i], FILE_MAX, &img, &len);
		const char *base = strrchr(paths[i], '/');
		if (r == KMS_OK)
			r = audit_render_file(base != NULL ? base + 1 : paths[i], img, len,
					      show ? AUDIT_OUT_TABLE : AUDIT_OUT_JSONL,
					      show ? &f : NULL, stdout);
		free(img);
		if (r != KMS_OK)
			ec = CMD_EXIT_FAIL;
	}
	if (fflush(stdout) != 0)
		ec = CMD_EXIT_FAIL;
	return ec;
}

int cmd_audit(int argc, char **argv)
{
	struct audit_args a = { 0 };
	struct cfg *cfg = NULL;
	char **paths = NULL;
	size_t n = 0;
	int ec = parse_args(argc, argv, &a);
	if (ec != 0)
		return ec < 0 ? CMD_EXIT_OK : ec;
	kms_log_set_level(KMS_LOG_ERR);
	/* the config names the directory (no FILEs) and the state files (verify) */
	if ((a.conf != NULL || a.n_files == 0) && cli_load_config("audit", a.conf, &cfg) != KMS_OK)
		return CMD_EXIT_CONFIG;
	ec = collect_files(a.verb, &a, cfg, &paths, &n);
	if (ec == CMD_EXIT_OK)
		ec = strcmp(a.verb, "verify") == 0 ? do_verify(&a, cfg, paths, n) :
						     do_render(&a, paths, n);
	audit_paths_free(paths, n);
	cfg_free(cfg);
	return ec;
}
