/* SPDX-License-Identifier: Apache-2.0 */
/* cfg_: reads the libconfig file, checks every key, type and cross-reference, fills struct cfg. */
#include "p11kms/cfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libconfig.h>

#include "cfg_int.h"

const char *cfg_proto_name(enum cfg_proto v)
{
	switch (v) {
	case CFG_PROTO_V0_34:
		return "v0.34";
	case CFG_PROTO_V0_37:
		return "v0.37";
	case CFG_PROTO_V0_38:
		return "v0.38";
	case CFG_PROTO_V1:
		return "v1";
	case CFG_PROTO_AUTO:
		return "auto";
	}
	return "?";
}

const char *cfg_key_format_name(enum cfg_key_format f)
{
	switch (f) {
	case CFG_KEY_FORMAT_BECH32:
		return "bech32";
	case CFG_KEY_FORMAT_COSMOS_JSON:
		return "cosmos-json";
	case CFG_KEY_FORMAT_HEX:
		return "hex";
	}
	return "?";
}

int cfg_proto_parse(const char *s, enum cfg_proto *out)
{
	/* v0.39 and v0.40 speak family B like v0.38 (spec §0); "v1.0" is a common spelling. */
	static const struct {
		const char *name;
		enum cfg_proto v;
	} names[] = {
		{ "v0.34", CFG_PROTO_V0_34 }, { "v0.37", CFG_PROTO_V0_37 },
		{ "v0.38", CFG_PROTO_V0_38 }, { "v0.39", CFG_PROTO_V0_38 },
		{ "v0.40", CFG_PROTO_V0_38 }, { "v1", CFG_PROTO_V1 },
		{ "v1.0", CFG_PROTO_V1 },     { "auto", CFG_PROTO_AUTO },
	};
	if (s == NULL || out == NULL)
		return KMS_ERR_FORMAT;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].v;
			return KMS_OK;
		}
	}
	return KMS_ERR_FORMAT;
}

int cfg_key_format_parse(const char *s, enum cfg_key_format *out)
{
	if (s == NULL || out == NULL)
		return KMS_ERR_FORMAT;
	if (strcmp(s, "bech32") == 0)
		*out = CFG_KEY_FORMAT_BECH32;
	else if (strcmp(s, "cosmos-json") == 0)
		*out = CFG_KEY_FORMAT_COSMOS_JSON;
	else if (strcmp(s, "hex") == 0)
		*out = CFG_KEY_FORMAT_HEX;
	else
		return KMS_ERR_FORMAT;
	return KMS_OK;
}

int cfg_default_path(const char *cli_path, char *out, size_t cap)
{
	const char *p = cli_path;
	if (out == NULL || cap == 0)
		return KMS_ERR_NO_SPACE;
	out[0] = '\0';
	if (p == NULL) {
		p = getenv("P11KMS_CONFIG");
		if (p == NULL || p[0] == '\0')
			p = "./p11kms.conf";
	}
	size_t n = strlen(p);
	if (n >= cap)
		return KMS_ERR_NO_SPACE;
	memcpy(out, p, n + 1);
	return KMS_OK;
}

const struct cfg_chain *cfg_chain_find(const struct cfg *cfg, const char *id)
{
	if (cfg == NULL || id == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_chains; i++)
		if (strcmp(cfg->chains[i].id, id) == 0)
			return &cfg->chains[i];
	return NULL;
}

const struct cfg_key *cfg_key_for_chain(const struct cfg *cfg, const char *id)
{
	if (cfg == NULL || id == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_keys; i++)
		for (size_t j = 0; j < cfg->keys[i].n_chain_ids; j++)
			if (strcmp(cfg->keys[i].chain_ids[j], id) == 0)
				return &cfg->keys[i];
	return NULL;
}

void cfg_free(struct cfg *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_chains; i++) {
		struct cfg_chain *c = &cfg->chains[i];
		free(c->id);
		free(c->account_key_prefix);
		free(c->consensus_key_prefix);
		free(c->state_file);
		cfg_ha_free(c->ha);
	}
	for (size_t i = 0; i < cfg->n_keys; i++) {
		struct cfg_key *k = &cfg->keys[i];
		for (size_t j = 0; j < k->n_chain_ids; j++)
			free(k->chain_ids[j]);
		free(k->chain_ids);
		free(k->uri);
		for (size_t j = 0; j < k->n_uris; j++)
			free(k->uris[j]);
		free(k->uris);
		free(k->profile);
		free(k->pin_env);
		free(k->softsign);
	}
	for (size_t i = 0; i < cfg->n_validators; i++) {
		struct cfg_validator *v = &cfg->validators[i];
		free(v->chain_id);
		free(v->addr);
		free(v->secret_key);
		free(v->secret_key_pin_env);
	}
	free(cfg->chains);
	free(cfg->keys);
	free(cfg->validators);
	free(cfg->log_file);
	free(cfg->audit.dir);
	free(cfg->metrics_listen);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

/* ---- error reporting ---------------------------------------------------------------- */

int cfg_errf(struct cfg_ctx *x, int line, const char *key, const char *fmt, ...)
{
	if (x->failed)
		return KMS_ERR_CONFIG;
	x->failed = 1;
	if (x->err == NULL || x->errcap == 0)
		return KMS_ERR_CONFIG;
	int n;
	if (key != NULL && key[0] != '\0')
		n = snprintf(x->err, x->errcap, "%s:%d: %s: ", x->name, line, key);
	else
		n = snprintf(x->err, x->errcap, "%s:%d: ", x->name, line);
	if (n < 0 || (size_t)n >= x->errcap)
		return KMS_ERR_CONFIG;
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(x->err + n, x->errcap - (size_t)n, fmt, ap);
	va_end(ap);
	return KMS_ERR_CONFIG;
}

/* ---- paths -------------------------------------------------------------------------- */

/* The absolute directory holding file name (or base_dir), in a new string. */
static int make_base_dir(const char *file, const char *base_dir, char **out)
{
	char cwd[4096];
	const char *dir = base_dir;
	size_t dlen;
	*out = NULL;
	if (dir == NULL && file != NULL) {
		const char *slash = strrchr(file, '/');
		if (slash != NULL) {
			dir = file;
			dlen = slash == file ? 1 : (size_t)(slash - file);
			goto have_dir;
		}
	}
	if (dir == NULL)
		dir = ".";
	dlen = strlen(dir);
have_dir:
	if (dir[0] == '/') {
		*out = strndup(dir, dlen);
		return *out != NULL ? KMS_OK : KMS_ERR_ALLOC;
	}
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return KMS_ERR_SYSTEM;
	size_t clen = strlen(cwd);
	/* "." alone means the working directory itself */
	int dot = dlen == 1 && dir[0] == '.';
	size_t need = clen + 1 + (dot ? 0 : dlen) + 1;
	char *s = malloc(need);
	if (s == NULL)
		return KMS_ERR_ALLOC;
	if (dot)
		memcpy(s, cwd, clen + 1);
	else
		(void)snprintf(s, need, "%s/%.*s", cwd, (int)dlen, dir);
	*out = s;
	return KMS_OK;
}

int cfg_resolve_path(struct cfg_ctx *x, const char *p, char **out)
{
	*out = NULL;
	if (p[0] == '/') {
		*out = strdup(p);
	} else {
		size_t need = strlen(x->dir) + 1 + strlen(p) + 1;
		char *s = malloc(need);
		if (s != NULL)
			(void)snprintf(s, need, "%s/%s", x->dir, p);
		*out = s;
	}
	return *out != NULL ? KMS_OK : KMS_ERR_ALLOC;
}

/* ---- entry points --------------------------------------------------------------------- */

/*
 * libconfig 1.5 follows @include directives relative to the working
 * directory, which would let a config (or a fuzz input) pull in any file.
 * The directive is only recognised at the start of a line.
 */
static int find_include(const char *text, int *line)
{
	int ln = 1;
	const char *s = text;
	while (*s != '\0') {
		const char *p = s;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, "@include", 8) == 0) {
			*line = ln;
			return 1;
		}
		const char *nl = strchr(s, '\n');
		if (nl == NULL)
			break;
		s = nl + 1;
		ln++;
	}
	return 0;
}

static int parse_text(const char *text, const char *name, const char *base_dir, struct cfg **out,
		      char *err, size_t errcap)
{
	struct cfg_ctx x = { .name = name, .err = err, .errcap = errcap };
	struct cfg *cfg = NULL;
	config_t lc;
	int line = 0;
	int r = KMS_ERR_INTERNAL;

	config_init(&lc);
	config_set_options(&lc, 0); /* no int → float auto-conversion */
	if (find_include(text, &line)) {
		r = cfg_errf(&x, line, "@include",
			     "not supported: keep the whole config in one file");
		goto out;
	}
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		/* #17: libconfig only says "syntax error"; say what it expected */
		char hint[256];
		cfg_syntax_hint(text, strlen(text), name, config_error_line(&lc), hint, sizeof(hint));
		r = cfg_errf(&x, config_error_line(&lc), NULL, "syntax error: %s", hint);
		goto out;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(name)) == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	r = make_base_dir(name, base_dir, &cfg->dir);
	if (r != KMS_OK) {
		if (r == KMS_ERR_SYSTEM)
			r = cfg_errf(&x, 0, NULL, "cannot resolve the config directory: %s",
				     strerror(errno));
		goto out;
	}
	x.dir = cfg->dir;
	r = cfg_parse_root(&x, config_root_setting(&lc), cfg);
	if (r != KMS_OK)
		goto out;
	r = cfg_check_refs(&x, cfg);
	if (r != KMS_OK)
		goto out;
	*out = cfg;
	cfg = NULL;
	r = KMS_OK;
out:
	config_destroy(&lc);
	cfg_free(cfg);
	return r;
}

int cfg_parse_string(const uint8_t *p, size_t len, const char *name, const char *base_dir,
		     struct cfg **out, char *err, size_t errcap)
{
	int r;
	if (out == NULL)
		return KMS_ERR_INTERNAL;
	*out = NULL;
	if (err != NULL && errcap > 0)
		err[0] = '\0';
	if (p == NULL && len > 0)
		return KMS_ERR_INTERNAL;
	if (name == NULL)
		name = "<string>";
	/* A NUL inside would silently cut the text short: refuse it. */
	if (len > 0 && memchr(p, '\0', len) != NULL) {
		struct cfg_ctx x = { .name = name, .err = err, .errcap = errcap };
		return cfg_errf(&x, 0, NULL, "contains a NUL byte (not a text file)");
	}
	if (len > CFG_FILE_MAX) {
		struct cfg_ctx x = { .name = name, .err = err, .errcap = errcap };
		return cfg_errf(&x, 0, NULL, "larger than %u bytes", (unsigned)CFG_FILE_MAX);
	}
	char *text = malloc(len + 1);
	if (text == NULL)
		return KMS_ERR_ALLOC;
	if (len > 0)
		memcpy(text, p, len);
	text[len] = '\0';
	r = parse_text(text, name, base_dir, out, err, errcap);
	free(text);
	return r;
}

int cfg_load(const char *path, struct cfg **out, char *err, size_t errcap)
{
	struct cfg_ctx x = { .name = path, .err = err, .errcap = errcap };
	uint8_t *data = NULL;
	size_t len = 0, cap = 0;
	int r = KMS_ERR_INTERNAL;
	FILE *f;

	if (out == NULL || path == NULL)
		return KMS_ERR_INTERNAL;
	*out = NULL;
	if (err != NULL && errcap > 0)
		err[0] = '\0';
	f = fopen(path, "rbe");
	if (f == NULL) {
		int e = errno;
		(void)cfg_errf(&x, 0, NULL, "cannot open: %s%s", strerror(e),
			       e == ENOENT ? " (give -c FILE or set P11KMS_CONFIG)" : "");
		return e == ENOENT ? KMS_ERR_NOT_FOUND : KMS_ERR_CONFIG;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CFG_FILE_MAX) {
				r = cfg_errf(&x, 0, NULL, "larger than %u bytes",
					     (unsigned)CFG_FILE_MAX);
				goto out;
			}
			size_t ncap = cap == 0 ? 4096 : cap * 2;
			uint8_t *nd = realloc(data, ncap + 1);
			if (nd == NULL) {
				r = KMS_ERR_ALLOC;
				goto out;
			}
			data = nd;
			cap = ncap;
		}
		size_t got = fread(data + len, 1, cap - len, f);
		len += got;
		if (got == 0) {
			if (ferror(f)) {
				r = cfg_errf(&x, 0, NULL, "read error: %s", strerror(errno));
				goto out;
			}
			break;
		}
	}
	r = cfg_parse_string(data, len, path, NULL, out, err, errcap);
out:
	(void)fclose(f);
	free(data);
	return r;
}
