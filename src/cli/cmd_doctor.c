/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms doctor`: the checks `start` makes (one list, src/daemon/preflight.c), one line each. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/kms_log.h"
#include "p11kms/preflight.h"
#include "p11kms/slot.h"

static const char usage[] =
	"Usage: p11kms doctor [-c CONF] [-v] [--json]\n"
	"\n"
	"Runs the checks `p11kms start` makes before it starts (the same list), plus\n"
	"opening every key and identity key, and prints one line per finding: ✔ fine,\n"
	"! worth knowing, ✘ start would refuse (with the fix). Read-only: it takes no\n"
	"lock, so it runs beside a running signer (the state file's lock holder is\n"
	"named) and can serve as a health probe. Exits 0 when nothing failed, else\n"
	"with the exit code start would give for the first failure.\n"
	"\n"
	"  -c, --config FILE  config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"  -v, --verbose      keep the library log lines (otherwise only errors)\n"
	"      --json         one JSON object on stdout (docs/cli.md, \"JSON output\")\n"
	"  -h, --help         this text\n"
	"\n"
	"Checks, in order:\n";

/* docs/cli.md: the schema of `doctor --json`; bump only when a field changes meaning. */
#define DOCTOR_JSON_VERSION 1

struct out {
	int json;
	json_t *checks; /* --json: the findings */
};

static void print_finding(void *ctx, const struct pf_result *r)
{
	struct out *o = ctx;

	if (o->json) {
		json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:i}", "check", r->check, "status",
				      pf_status_name(r->status), "subject", r->subject, "message",
				      r->message, "exit_code", r->exit_code);
		if (j != NULL)
			(void)json_array_append_new(o->checks, j);
		return;
	}
	fputs(r->status == PF_OK ? "✔ " : r->status == PF_WARN ? "! " : "✘ ", stdout);
	fputs(r->message, stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

static void print_usage(FILE *f)
{
	fputs(usage, f);
	for (const struct pf_check *c = pf_checks; c->id != NULL; c++)
		fprintf(f, "  %-15s %s%s\n", c->id, c->what,
			c->modes & PF_START ? "" : " (doctor only)");
}

static int print_json(const struct pf_ctx *pf, json_t *checks)
{
	json_t *j = json_pack("{s:i,s:s,s:s,s:s,s:b,s:i,s:{s:i,s:i,s:i},s:o}", "version",
			      DOCTOR_JSON_VERSION, "command", "doctor", "p11kms_version",
			      P11KMS_VERSION, "config", pf->conf_path, "healthy", pf->n_fail == 0,
			      "exit_code", pf->first_fail, "summary", "passed", pf->n_ok,
			      "warnings", pf->n_warn, "failed", pf->n_fail, "checks", checks);
	char *txt = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;

	if (txt == NULL) {
		json_decref(j);
		cli_err("doctor", "cannot build the JSON output");
		return CMD_EXIT_FAIL;
	}
	printf("%s\n", txt);
	free(txt);
	json_decref(j);
	return pf->first_fail;
}

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_doctor_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cmd_doctor(int argc, char **argv)
{
	const struct option *opts = cmd_doctor_options;
	struct out o = { 0 };
	struct pf_ctx pf = { 0 };
	const char *conf = NULL;
	char path[4096];
	int c, verbose = 0, ec;

	optind = 0;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'h':
			print_usage(stdout);
			return CMD_EXIT_OK;
		default:
			print_usage(stderr);
			return CMD_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		cli_err("doctor", "unexpected argument '%s'", argv[optind]);
		return CMD_EXIT_USAGE;
	}
	if (cfg_default_path(conf, path, sizeof(path)) != KMS_OK) {
		cli_err("doctor", "config path too long");
		return CMD_EXIT_USAGE;
	}
	if (!verbose)
		kms_log_set_level(KMS_LOG_ERR);
	if (o.json && (o.checks = json_array()) == NULL)
		return CMD_EXIT_FAIL;
	pf.mode = PF_DOCTOR;
	pf.conf_path = path;
	pf.emit = print_finding;
	pf.emit_ctx = &o;
	(void)pf_run(&pf);
	if (o.json) {
		ec = print_json(&pf, o.checks);
	} else {
		printf("%d passed, %d warning%s, %d failed%s\n", pf.n_ok, pf.n_warn,
		       pf.n_warn == 1 ? "" : "s", pf.n_fail,
		       pf.n_fail == 0 ? ": start would run" : ": start would refuse");
		ec = pf.first_fail;
	}
	cfg_free(pf.cfg);
	slot_shutdown();
	return ec;
}
