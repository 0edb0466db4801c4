/* SPDX-License-Identifier: Apache-2.0 */
/* p11kms: argv[1] picks a subcommand from the table; everything else is in cmd_*. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_table.h"
#include "p11kms/cmd.h"

int main(int argc, char **argv)
{
	static char help_name[] = "help", version_name[] = "version";
	char *hv[] = { help_name, NULL }, *vv[] = { version_name, NULL };
	const struct cli_command *c;

	/* a final summary line must not contradict a precise ERROR above it (cli_fail) */
	cli_log_watch();
	if (argc < 2) {
		(void)cmd_help(1, hv);
		return CMD_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(1, hv);
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return cmd_version(1, vv);
	if ((c = cli_command_find(argv[1])) == NULL) {
		fprintf(stderr, "p11kms: unknown command '%s' (see `p11kms help`)\n", argv[1]);
		return CMD_EXIT_USAGE;
	}
	return c->handler(argc - 1, argv + 1);
}
