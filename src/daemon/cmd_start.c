/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms start [-c FILE] [-v]`: loads the config, installs signal handlers, runs the daemon. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/daemon.h"
#include "p11kms/kms_log.h"
#include "p11kms/preflight.h"

static const char usage[] =
	"usage: p11kms start [-c FILE] [-v]\n"
	"\n"
	"Runs the signer: dials every validators entry of the config, answers the\n"
	"node's privval requests, and stops on SIGTERM or SIGINT (SIGHUP reopens the log).\n"
	"\n"
	"  -c, --config FILE  config file (default: $P11KMS_CONFIG, else ./p11kms.conf)\n"
	"  -v, --verbose      log a summary of every request (never keys or sign bytes)\n"
	"  -h, --help         this text\n"
	"\n"
	"Exit codes: 0 stopped by a signal, 1 failure, 2 usage, 3 config, 4 key/token/PIN,\n"
	"5 double-sign state, 6 file permissions. See docs/operations.md.\n";

static void on_stop(int sig)
{
	(void)sig;
	daemon_request_stop();
}

static void on_hup(int sig)
{
	int saved = errno;
	(void)sig;
	kms_log_reopen();
	errno = saved;
}

static int install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop; /* no SA_RESTART: poll() in the supervisor returns EINTR */
	if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
		return -1;
	sa.sa_handler = on_hup;
	if (sigaction(SIGHUP, &sa, NULL) != 0)
		return -1;
	sa.sa_handler = SIG_IGN; /* sends use MSG_NOSIGNAL; this covers everything else */
	return sigaction(SIGPIPE, &sa, NULL);
}

/* The preflight's findings, kept until the log (file, level) is set up. */
struct findings {
	struct pf_result *r;
	size_t n, cap;
};

static void keep_finding(void *ctx, const struct pf_result *r)
{
	struct findings *f = ctx;
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		struct pf_result *p = realloc(f->r, cap * sizeof(*p));
		if (p == NULL) { /* out of memory: say it now rather than lose it */
			kms_log(r->status == PF_FAIL ? KMS_LOG_ERR : KMS_LOG_WARN, "%s", r->message);
			return;
		}
		f->r = p;
		f->cap = cap;
	}
	f->r[f->n++] = *r;
}

/* Failures at ERROR, warnings at WARN, passed checks at DEBUG. */
static void log_findings(const struct findings *f)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct pf_result *r = &f->r[i];
		enum kms_log_level l = r->status == PF_FAIL ? KMS_LOG_ERR :
				       r->status == PF_WARN ? KMS_LOG_WARN :
							      KMS_LOG_DEBUG;
		kms_log(l, "%s", r->message);
	}
}

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_start_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, const char **conf, int *verbose)
{
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "c:vh", cmd_start_options, NULL)) != -1) {
		switch (c) {
		case 'c':
			*conf = optarg;
			break;
		case 'v':
			*verbose = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			fputs(usage, stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "p11kms start: unexpected argument \"%s\"\n%s", argv[optind], usage);
		return -1;
	}
	return 0;
}

int cmd_start(int argc, char **argv)
{
	const char *conf = NULL;
	char path[4096];
	struct cfg *cfg = NULL;
	struct daemon_opts opts = { 0 };
	struct pf_ctx pf = { 0 };
	struct findings found = { 0 };
	int ec, r;

	r = parse_args(argc, argv, &conf, &opts.verbose);
	if (r != 0)
		return r > 0 ? CMD_EXIT_OK : CMD_EXIT_USAGE;
	if (cfg_default_path(conf, path, sizeof(path)) != KMS_OK) {
		fprintf(stderr, "p11kms start: config path too long\n");
		return CMD_EXIT_USAGE;
	}
	/* the checks doctor runs too (src/daemon/preflight.c); all of them, then the verdict */
	pf.mode = PF_START;
	pf.conf_path = path;
	pf.emit = keep_finding;
	pf.emit_ctx = &found;
	ec = pf_run(&pf);
	cfg = pf.cfg;
	if (cfg != NULL)
		kms_log_set_format(cfg->log_format); /* log.format: from here on, as configured */
	if (cfg != NULL && cfg->log_file != NULL && kms_log_open(cfg->log_file) != KMS_OK) {
		kms_log_err("cannot open log.file %s (%s:log.file)", cfg->log_file, cfg->path);
		ec = ec != CMD_EXIT_OK ? ec : CMD_EXIT_CONFIG;
	}
	if (cfg != NULL && cfg->has_log_level)
		kms_log_set_level(cfg->log_level);
	if (opts.verbose && kms_log_get_level() < KMS_LOG_INFO)
		kms_log_set_level(KMS_LOG_INFO);
	log_findings(&found);
	free(found.r);
	if (ec != CMD_EXIT_OK) {
		kms_log_err("not starting: %d start-up check%s failed (the line%s above; `p11kms "
			    "doctor -c %s` runs the same checks)",
			    pf.n_fail, pf.n_fail == 1 ? "" : "s", pf.n_fail == 1 ? "" : "s", path);
		goto out;
	}
	if (install_signals() != 0) {
		kms_log_err("sigaction failed: %s", strerror(errno));
		ec = CMD_EXIT_FAIL;
		goto out;
	}
	kms_log_info("config %s: chains=%zu keys=%zu validators=%zu", cfg->path, cfg->n_chains,
		     cfg->n_keys, cfg->n_validators);
	ec = daemon_run(cfg, &opts);
out:
	cfg_free(cfg);
	return ec;
}
