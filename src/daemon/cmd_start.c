/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms start [-c FILE] [-v]`: loads the config, installs signal handlers, runs the daemon. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/daemon.h"
#include "p11kms/kms_log.h"

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

/* Anyone who can write the config can point the signer at another key or node. */
static int check_config_perms(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return CMD_EXIT_OK; /* cfg_load reports a missing file with the hint */
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		kms_log_err("config %s is writable by group or others (mode %04o): chmod go-w %s",
			    path, (unsigned)(st.st_mode & 07777), path);
		return CMD_EXIT_PERM;
	}
	return CMD_EXIT_OK;
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
	char err[CFG_ERR_MAX];
	struct cfg *cfg = NULL;
	struct daemon_opts opts = { 0 };
	int ec, r;

	r = parse_args(argc, argv, &conf, &opts.verbose);
	if (r != 0)
		return r > 0 ? CMD_EXIT_OK : CMD_EXIT_USAGE;
	if (cfg_default_path(conf, path, sizeof(path)) != KMS_OK) {
		fprintf(stderr, "p11kms start: config path too long\n");
		return CMD_EXIT_USAGE;
	}
	if ((ec = check_config_perms(path)) != CMD_EXIT_OK)
		return ec;
	r = cfg_load(path, &cfg, err, sizeof(err));
	if (r != KMS_OK) {
		kms_log_err("config: %s", err[0] ? err : kms_strerror(r));
		return r == KMS_ERR_ALLOC ? CMD_EXIT_FAIL : CMD_EXIT_CONFIG;
	}
	kms_log_set_format(cfg->log_format); /* log.format: from here on, as configured */
	if (cfg->log_file != NULL && kms_log_open(cfg->log_file) != KMS_OK) {
		kms_log_err("cannot open log.file %s (%s:log.file)", cfg->log_file, cfg->path);
		ec = CMD_EXIT_CONFIG;
		goto out;
	}
	if (cfg->has_log_level)
		kms_log_set_level(cfg->log_level);
	if (opts.verbose && kms_log_get_level() < KMS_LOG_INFO)
		kms_log_set_level(KMS_LOG_INFO);
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
