/* SPDX-License-Identifier: Apache-2.0 */
/* Private declarations shared by cfg.c (entry points) and cfg_schema.c (the schema). */
#ifndef P11KMS_CFG_INT_H
#define P11KMS_CFG_INT_H

#include <stddef.h>

#include <libconfig.h>

#include "p11kms/cfg.h"

#define CFG_FILE_MAX (1024u * 1024u)

struct cfg_ctx {
	const char *name; /* file name for messages */
	const char *dir;  /* absolute base for relative paths */
	char *err;
	size_t errcap;
	int failed; /* the first error wins */
};

/* Writes "name:line: key: <fmt>" into x->err (first error only); returns KMS_ERR_CONFIG. */
int cfg_errf(struct cfg_ctx *x, int line, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* p made absolute against x->dir, in a new string. */
KMS_MUST_CHECK int cfg_resolve_path(struct cfg_ctx *x, const char *p, char **out);

KMS_MUST_CHECK int cfg_parse_root(struct cfg_ctx *x, const config_setting_t *root, struct cfg *cfg);
/* #20: frees a chain's ha block; accepts NULL. */
void cfg_ha_free(struct cfg_ha *h);

KMS_MUST_CHECK int cfg_check_refs(struct cfg_ctx *x, const struct cfg *cfg);

/*
 * What libconfig's parser expected, for its bare "syntax error" at err_line:
 * one sentence into out ("line N: expected ','...", "this is TOML (a
 * tmkms.toml?)..."). name is the file name (a .toml one gets the migrate
 * hint). Pure.
 */
void cfg_syntax_hint(const char *text, size_t len, const char *name, int err_line, char *out,
		     size_t cap);

#endif
