/* SPDX-License-Identifier: Apache-2.0 */
/* The subcommand table shared by main() and `p11kms help`. */
#include "cmd_table.h"

#include <string.h>

#include "p11kms/cmd.h"

const struct cli_command cli_commands[] = {
	{ "init", cmd_init,
	  "Create a p11kms directory: config, identity key, secrets/ and state/" },
	{ "keygen", cmd_keygen, "Generate a consensus key (softsign file or on a PKCS#11 token)" },
	{ "import", cmd_import, "Import priv_validator_key.json into a softsign file or a token" },
	{ "keys", cmd_keys, "List and show keys: URI, public key formats, address, hygiene" },
	{ "state", cmd_state, "Show, initialise, import or export the double-sign state" },
	{ "doctor", cmd_doctor, "Check everything `start` would use, with a fix for each problem" },
	{ "ha", cmd_ha, "High availability: etcd members, cluster mark, signer hosts seen" },
	{ "migrate", cmd_migrate, "Convert a tmkms.toml (and its state files) to p11kms" },
	{ "audit", cmd_audit, "Verify, show or export the audit log of signing decisions" },
	{ "start", cmd_start, "Run the signer: connect to the validator nodes and sign" },
	{ "completion", cmd_completion, "Print a bash completion script (from this table)" },
	{ "version", cmd_version, "Print the version" },
	{ "help", cmd_help, "Show the commands, or the usage of one command" },
	{ NULL, NULL, NULL },
};

const struct cli_command *cli_command_find(const char *name)
{
	for (const struct cli_command *c = cli_commands; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}
