/* SPDX-License-Identifier: Apache-2.0 */
/* migrate_: tmkms.toml -> p11kms.conf conversion (pure; cmd_migrate does the I/O). */
#ifndef P11KMS_MIGRATE_H
#define P11KMS_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

struct kbuf;

struct migrate_opts {
	const char *src_name;  /* the tmkms.toml path, for messages */
	const char *tmkms_cwd; /* absolute: tmkms resolved relative paths against its CWD */
	const char *out_dir;   /* absolute directory of the new config (PIN file location) */
};

/* One tmkms state file to convert (cmd_migrate reads from and imports to). */
struct migrate_state {
	char *chain_id;
	char *from; /* absolute tmkms state file path */
	char *to;   /* new state file, relative to the new config's directory */
};

struct migrate_result {
	struct kbuf *conf;   /* the p11kms.conf text (libconfig) */
	struct kbuf *notes;  /* lines for the operator: what was mapped and what to do */
	struct kbuf *errors; /* "file:line: key: problem" lines; empty on success */
	struct migrate_state *states;
	size_t n_states;
};

/*
 * Converts a tmkms.toml (len bytes at p) into a p11kms config. Always sets
 * *out on return unless KMS_ERR_ALLOC (caller migrate_result_free()s).
 * Returns KMS_OK, or KMS_ERR_CONFIG when the input cannot be converted (TOML
 * syntax, tmkms schema, unsupported providers, old protocol versions): every
 * problem found is a line in (*out)->errors. No I/O, no globals.
 */
KMS_MUST_CHECK int migrate_convert(const uint8_t *p, size_t len, const struct migrate_opts *o,
				   struct migrate_result **out);
void migrate_result_free(struct migrate_result *res);

/* The file name a chain's converted state gets: "state/<chain-id>.state" (unsafe bytes -> _). */
KMS_MUST_CHECK int migrate_state_name(const char *chain_id, char *out, size_t cap);

#endif
