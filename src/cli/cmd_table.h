/* SPDX-License-Identifier: Apache-2.0 */
/* The subcommand table (wg.c style): name, handler, one-line description. */
#ifndef P11KMS_CMD_TABLE_H
#define P11KMS_CMD_TABLE_H

struct cli_command {
	const char *name;
	int (*handler)(int argc, char **argv);
	const char *description;
};

/* Ended by an entry with name NULL. */
extern const struct cli_command cli_commands[];

/* The entry named name, or NULL. */
const struct cli_command *cli_command_find(const char *name);

#endif
