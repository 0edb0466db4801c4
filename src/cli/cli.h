/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmd_ subcommands (private to src/cli). */
#ifndef P11KMS_CLI_H
#define P11KMS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"

struct cfg;
struct cfg_chain;
struct cfg_key;
struct slot;

/* Appends printf output to b (grows up to b's cap). KMS_ERR_NO_SPACE / ALLOC. */
KMS_MUST_CHECK int cli_bprintf(struct kbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends s as a libconfig string literal ("..." with \" \\ and \xNN escapes). */
KMS_MUST_CHECK int cli_bput_cstr(struct kbuf *b, const char *s);
/* A NUL-terminated copy of b's readable bytes (caller free()s), NULL on ENOMEM. */
char *cli_bstrdup(const struct kbuf *b);

/*
 * path if absolute, else base "/" path (with leading "./" dropped), as a new
 * string (caller free()s). NULL on ENOMEM.
 */
char *cli_path_join(const char *base, const char *path);
/* The directory part of path ("." if none), new string. */
char *cli_dirname(const char *path);
/* An absolute form of dir (getcwd-joined if relative), new string. */
char *cli_absdir(const char *dir);

/* Prints "p11kms <cmd>: <msg>" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The CLI counts the ERROR lines the libraries log (main() calls
 * cli_log_watch() once). cli_fail() then ends a failed operation with one
 * line, "p11kms <cmd>: <what>", and adds a cause only when nothing more
 * precise was logged since mark (cli_log_errors() taken before the
 * operation): a generic "not found" under a precise ERROR line would
 * contradict it or add a second, misleading cause.
 */
void cli_log_watch(void);
unsigned cli_log_errors(void);
void cli_fail(const char *cmd, unsigned mark, int kms_err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The chain ids of cfg as "a, b, c" into out (for "not configured" messages). */
void cli_chain_list(const struct cfg *cfg, char *out, size_t cap);

/*
 * The Cosmos displays of an Ed25519 public key (spec §6), one per line with
 * indent: bech32 with consensus_prefix (skipped if NULL), cosmos-json, hex,
 * the validator address in hex and as bech32 with the consensus address
 * prefix (consensus_prefix without its trailing "pub", e.g. haqqvalcons).
 */
KMS_MUST_CHECK int cli_print_pubkey(FILE *f, const char *indent, const uint8_t pub[static 32],
				    const char *consensus_prefix);

/*
 * The same displays as a JSON object (docs/cli.md, `--json`):
 *   {"hex": "…", "bech32": "…valconspub1…" (null without a prefix),
 *    "cosmos_json": {"@type": "/cosmos.crypto.ed25519.PubKey", "key": "base64"},
 *    "address": {"hex": "…", "bech32": "…valcons1…" (null without a prefix)}}
 * NULL on an encoding or allocation failure. Caller json_decref()s.
 */
struct json_t;
struct json_t *cli_pubkey_json(const uint8_t pub[static 32], const char *consensus_prefix);

/*
 * Prints o (one object, 2-space indented, keys in insertion order) and a
 * newline to stdout, then releases it. KMS_ERR_ALLOC if o is NULL,
 * KMS_ERR_SYSTEM if stdout fails.
 */
KMS_MUST_CHECK int cli_json_print(struct json_t *o);

/* "haqqvalconspub" -> "haqqvalcons" into out; KMS_ERR_FORMAT if no "pub" suffix. */
KMS_MUST_CHECK int cli_cons_addr_prefix(const char *consensus_prefix, char *out, size_t cap);

/* Loads the config (path from -c, $P11KMS_CONFIG, ./p11kms.conf), printing the error. */
KMS_MUST_CHECK int cli_load_config(const char *cmd, const char *cli_path, struct cfg **out);

/* Opens a configured key (softsign file or pkcs11 URI) through the slot layer. */
KMS_MUST_CHECK int cli_open_key(const struct cfg_key *k, struct slot **out);

/* True if arg is -h or --help. */
int cli_is_help(const char *arg);

/* The known chain presets for init (--chain haqq_11235-1 etc.). */
struct cli_chain_preset {
	const char *chain_id;
	const char *name;
	const char *prefix; /* bech32 account prefix, e.g. "haqq" */
};
const struct cli_chain_preset *cli_chain_preset_find(const char *chain_id);
/* The list, ended by an entry with chain_id NULL. */
extern const struct cli_chain_preset cli_chain_presets[];

#endif
