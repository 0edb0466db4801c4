/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_: the CLI subcommands. main() parses argv[1] and calls one of these. */
#ifndef P11KMS_CMD_H
#define P11KMS_CMD_H

#include <getopt.h>

/*
 * Each handler gets argc/argv starting at the subcommand name (argv[0] is
 * e.g. "start") and returns a process exit code:
 */
enum cmd_exit {
	CMD_EXIT_OK = 0,
	CMD_EXIT_FAIL = 1,    /* the operation failed (message printed) */
	CMD_EXIT_USAGE = 2,   /* bad command line */
	CMD_EXIT_CONFIG = 3,  /* configuration invalid or missing */
	CMD_EXIT_KEY = 4,     /* key, token or PIN problem */
	CMD_EXIT_STATE = 5,   /* double-sign state missing, corrupt or locked */
	CMD_EXIT_PERM = 6,    /* file permissions too open */
};

int cmd_init(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_state(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_ha(int argc, char **argv); /* #20 */
int cmd_audit(int argc, char **argv);
int cmd_start(int argc, char **argv); /* src/daemon/cmd_start.c */
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);

/* Maps a kms_err to the exit code above (used by every handler). */
int cmd_exit_for(int kms_err);

/*
 * The long options of each command: the table its handler gives getopt_long(),
 * also read by `p11kms completion` (src/cli/cmd_completion.c) so that the shell
 * completion offers exactly what the commands accept. import shares keygen's.
 */
extern const struct option cmd_init_options[];
extern const struct option cmd_keygen_options[];
extern const struct option cmd_keys_options[];
extern const struct option cmd_state_options[];
extern const struct option cmd_doctor_options[];
extern const struct option cmd_migrate_options[];
extern const struct option cmd_start_options[];
extern const struct option cmd_audit_options[];
extern const struct option cmd_ha_options[]; /* #20 */
int cmd_completion(int argc, char **argv);

#endif
