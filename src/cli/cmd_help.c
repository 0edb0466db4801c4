/* SPDX-License-Identifier: Apache-2.0 */
/* `p11kms help [COMMAND]` and `p11kms version`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_table.h"
#include "p11kms/cmd.h"

#ifndef P11KMS_VERSION
#define P11KMS_VERSION "unknown"
#endif

static void print_overview(void)
{
	printf("Usage: p11kms <command> [options]\n\n"
	       "A PKCS#11 remote signer for CometBFT/Tendermint validators.\n\n"
	       "Commands:\n");
	for (const struct cli_command *c = cli_commands; c->name != NULL; c++)
		printf("  %-9s %s\n", c->name, c->description);
	printf("\n`p11kms <command> --help` shows a command's options; man p11kms has them all.\n"
	       "Exit codes: 0 ok, 1 failed, 2 usage, 3 config, 4 key/token/PIN, 5 state, "
	       "6 permissions.\n");
}

int cmd_help(int argc, char **argv)
{
	static char help_opt[] = "--help";
	const struct cli_command *c;
	char *sub[3];

	if (argc < 2 || cli_is_help(argv[1])) {
		print_overview();
		return CMD_EXIT_OK;
	}
	if ((c = cli_command_find(argv[1])) == NULL) {
		cli_err("help", "unknown command '%s'", argv[1]);
		return CMD_EXIT_USAGE;
	}
	if (c->handler == cmd_help) {
		print_overview();
		return CMD_EXIT_OK;
	}
	sub[0] = argv[1];
	sub[1] = help_opt;
	sub[2] = NULL;
	return c->handler(2, sub);
}

int cmd_version(int argc, char **argv)
{
	if (argc > 1 && cli_is_help(argv[1])) {
		printf("Usage: p11kms version\n\nPrints the version of p11kms.\n");
		return CMD_EXIT_OK;
	}
	if (argc > 1) {
		cli_err("version", "takes no arguments");
		return CMD_EXIT_USAGE;
	}
	printf("p11kms %s\n", P11KMS_VERSION);
	return CMD_EXIT_OK;
}
