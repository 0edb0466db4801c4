/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms ha status`: the etcd members, the cluster mark and the signer hosts seen recently. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/ha.h"
#include "p11kms/kms_log.h"

static const char usage[] =
	"Usage: p11kms ha status [-c CONF] [--chain ID]\n"
	"\n"
	"For each chain with an `ha` block (docs/ha.md): every etcd endpoint (up or down,\n"
	"which is the leader), the cluster high-water mark (H/R/S, the host that signed it,\n"
	"when), and the signer hosts seen in the last ~10 s (each daemon refreshes a key\n"
	"under a lease). Exits 1 if etcd cannot be read.\n"
	"\n"
	"  -c, --config FILE  config (default $P11KMS_CONFIG, then ./p11kms.conf)\n"
	"      --chain ID     only this chain\n"
	"  -h, --help         this text\n";

/* The options: getopt_long() below parses with this table, `p11kms completion` reads it. */
const struct option cmd_ha_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "chain", required_argument, NULL, 'C' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cmd_ha(int argc, char **argv)
{
	const struct option *opts = cmd_ha_options;
	const char *conf = NULL, *chain = NULL;
	struct cfg *cfg = NULL;
	int c, ec = CMD_EXIT_OK, shown = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf = optarg;
			break;
		case 'C':
			chain = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return CMD_EXIT_OK;
		default:
			fputs(usage, stderr);
			return CMD_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || strcmp(argv[optind], "status") != 0) {
		cli_err("ha", "say `p11kms ha status`");
		return CMD_EXIT_USAGE;
	}
	if (kms_log_get_level() > KMS_LOG_ERR)
		kms_log_set_level(KMS_LOG_ERR);
	int r = cli_load_config("ha", conf, &cfg);
	if (r != KMS_OK)
		return cmd_exit_for(r);
	for (size_t i = 0; i < cfg->n_chains; i++) {
		const struct cfg_chain *cc = &cfg->chains[i];
		if (cc->ha == NULL || (chain != NULL && strcmp(chain, cc->id) != 0))
			continue;
		struct kbuf *out = kbuf_new(256 * 1024);
		if (out == NULL) {
			ec = CMD_EXIT_FAIL;
			break;
		}
		r = ha_status(cc, out);
		fwrite(kbuf_ptr(out), 1, kbuf_len(out), stdout);
		kbuf_free(out);
		if (r != KMS_OK) {
			cli_err("ha", "chain %s: etcd: %s", cc->id, kms_strerror(r));
			ec = CMD_EXIT_FAIL;
		}
		shown++;
	}
	if (shown == 0) {
		cli_err("ha", "no chain%s%s has an ha block in %s", chain ? " " : "",
			chain ? chain : "", cfg->path);
		ec = CMD_EXIT_CONFIG;
	}
	cfg_free(cfg);
	return ec;
}
