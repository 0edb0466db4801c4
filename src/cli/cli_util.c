/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the CLI subcommands: text buffers, paths, key displays, config loading. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

const struct cli_chain_preset cli_chain_presets[] = {
	{ "haqq_11235-1", "Haqq mainnet", "haqq" },
	{ "haqq_53211-1", "Haqq testedge", "haqq" },
	{ NULL, NULL, NULL },
};

const struct cli_chain_preset *cli_chain_preset_find(const char *chain_id)
{
	for (const struct cli_chain_preset *p = cli_chain_presets; p->chain_id != NULL; p++)
		if (strcmp(p->chain_id, chain_id) == 0)
			return p;
	return NULL;
}

int cli_bprintf(struct kbuf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	char *big = NULL;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return KMS_ERR_INTERNAL;
	if ((size_t)n < sizeof(small))
		return kbuf_put(b, small, (size_t)n);
	if ((big = malloc((size_t)n + 1)) == NULL)
		return KMS_ERR_ALLOC;
	va_start(ap, fmt);
	(void)vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	r = kbuf_put(b, big, (size_t)n);
	free(big);
	return r;
}

int cli_bput_cstr(struct kbuf *b, const char *s)
{
	int r = kbuf_put_u8(b, '"');

	for (; r == KMS_OK && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			r = cli_bprintf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			r = cli_bprintf(b, "\\x%02x", c);
		else
			r = kbuf_put_u8(b, c);
	}
	return r == KMS_OK ? kbuf_put_u8(b, '"') : r;
}

char *cli_bstrdup(const struct kbuf *b)
{
	size_t n = kbuf_len(b);
	char *s = malloc(n + 1);

	if (s == NULL)
		return NULL;
	if (n > 0)
		memcpy(s, kbuf_ptr(b), n);
	s[n] = '\0';
	return s;
}

char *cli_path_join(const char *base, const char *path)
{
	size_t bl, pl;
	char *out;

	if (path[0] == '/' || base == NULL || base[0] == '\0')
		return strdup(path);
	while (path[0] == '.' && path[1] == '/') {
		path += 2;
		while (path[0] == '/')
			path++;
	}
	if (strcmp(path, ".") == 0 || path[0] == '\0')
		return strdup(base);
	bl = strlen(base);
	while (bl > 1 && base[bl - 1] == '/')
		bl--;
	pl = strlen(path);
	if ((out = malloc(bl + pl + 2)) == NULL)
		return NULL;
	memcpy(out, base, bl);
	out[bl] = '/';
	memcpy(out + bl + 1, path, pl + 1);
	return out;
}

char *cli_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *out;

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	if ((out = strndup(path, (size_t)(slash - path))) == NULL)
		return NULL;
	return out;
}

char *cli_absdir(const char *dir)
{
	char cwd[4096];

	if (dir[0] == '/')
		return strdup(dir);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	return cli_path_join(cwd, dir);
}

void cli_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "p11kms %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * ERROR lines logged so far. The log sink gets no context worth passing, and
 * the CLI is one short-lived thread: one counter for the process.
 */
static unsigned cli_err_lines;

static void count_errors(enum kms_log_level level, const char *line, void *ctx)
{
	(void)line;
	(void)ctx;
	if (level == KMS_LOG_ERR)
		cli_err_lines++;
}

void cli_log_watch(void)
{
	kms_log_set_sink(count_errors, NULL);
}

unsigned cli_log_errors(void)
{
	return cli_err_lines;
}

void cli_fail(const char *cmd, unsigned mark, int kms_err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "p11kms %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cli_err_lines != mark)
		fputs(" (the error above says why)\n", stderr);
	else
		fprintf(stderr, ": %s\n", kms_strerror(kms_err));
}

void cli_chain_list(const struct cfg *cfg, char *out, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; cfg != NULL && i < cfg->n_chains && n < cap; i++) {
		int w = snprintf(out + n, cap - n, "%s%s", i ? ", " : "", cfg->chains[i].id);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	if (out[0] == '\0')
		(void)snprintf(out, cap, "none");
}

int cli_cons_addr_prefix(const char *consensus_prefix, char *out, size_t cap)
{
	size_t n = strlen(consensus_prefix);

	if (n <= 3 || strcmp(consensus_prefix + n - 3, "pub") != 0 || n - 3 >= cap)
		return KMS_ERR_FORMAT;
	memcpy(out, consensus_prefix, n - 3);
	out[n - 3] = '\0';
	return KMS_OK;
}

int cli_print_pubkey(FILE *f, const char *indent, const uint8_t pub[static 32],
		     const char *consensus_prefix)
{
	char s[ENC_BECH32_MAX + 128];
	char aprefix[84];
	uint8_t addr[ENC_ADDRESS_LEN];
	int r;

	if (consensus_prefix != NULL) {
		if ((r = enc_ed25519_bech32_pub(consensus_prefix, pub, s, sizeof(s))) != KMS_OK)
			return r;
		fprintf(f, "%spublic key (bech32):      %s\n", indent, s);
	}
	if ((r = enc_ed25519_cosmos_json(pub, s, sizeof(s))) != KMS_OK)
		return r;
	fprintf(f, "%spublic key (cosmos-json): %s\n", indent, s);
	if ((r = enc_hex_encode_upper(pub, 32, s, sizeof(s))) != KMS_OK)
		return r;
	fprintf(f, "%spublic key (hex):         %s\n", indent, s);
	if ((r = enc_ed25519_address(pub, addr)) != KMS_OK ||
	    (r = enc_hex_encode_upper(addr, sizeof(addr), s, sizeof(s))) != KMS_OK)
		return r;
	fprintf(f, "%svalidator address (hex):  %s\n", indent, s);
	if (consensus_prefix != NULL &&
	    cli_cons_addr_prefix(consensus_prefix, aprefix, sizeof(aprefix)) == KMS_OK) {
		if ((r = enc_ed25519_bech32_addr(aprefix, pub, s, sizeof(s))) != KMS_OK)
			return r;
		fprintf(f, "%svalidator address:        %s\n", indent, s);
	}
	return KMS_OK;
}

/* A JSON string of s, or null when s is NULL or did not encode. */
static json_t *str_or_null(int ok, const char *s)
{
	return ok && s != NULL ? json_string(s) : json_null();
}

json_t *cli_pubkey_json(const uint8_t pub[static 32], const char *consensus_prefix)
{
	char hex[65], b32[ENC_BECH32_MAX + 1], cj[160], ahex[41], ab32[ENC_BECH32_MAX + 1];
	char aprefix[84];
	uint8_t addr[ENC_ADDRESS_LEN];
	int has_prefix = consensus_prefix != NULL;

	if (enc_hex_encode_upper(pub, 32, hex, sizeof(hex)) != KMS_OK ||
	    enc_ed25519_cosmos_json(pub, cj, sizeof(cj)) != KMS_OK ||
	    enc_ed25519_address(pub, addr) != KMS_OK ||
	    enc_hex_encode_upper(addr, sizeof(addr), ahex, sizeof(ahex)) != KMS_OK)
		return NULL;
	int b32_ok = has_prefix &&
		     enc_ed25519_bech32_pub(consensus_prefix, pub, b32, sizeof(b32)) == KMS_OK;
	int ab32_ok = has_prefix &&
		      cli_cons_addr_prefix(consensus_prefix, aprefix, sizeof(aprefix)) == KMS_OK &&
		      enc_ed25519_bech32_addr(aprefix, pub, ab32, sizeof(ab32)) == KMS_OK;
	json_t *cosmos = json_loads(cj, 0, NULL);
	if (cosmos == NULL)
		return NULL;
	return json_pack("{s:s,s:o,s:o,s:{s:s,s:o}}", "hex", hex, "bech32", str_or_null(b32_ok, b32),
			 "cosmos_json", cosmos, "address", "hex", ahex, "bech32",
			 str_or_null(ab32_ok, ab32));
}

int cli_json_print(json_t *o)
{
	if (o == NULL)
		return KMS_ERR_ALLOC;
	int r = json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (r != 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
		return KMS_ERR_SYSTEM;
	return KMS_OK;
}

int cli_load_config(const char *cmd, const char *cli_path, struct cfg **out)
{
	char path[4096];
	char err[CFG_ERR_MAX];
	int r;

	*out = NULL;
	if ((r = cfg_default_path(cli_path, path, sizeof(path))) != KMS_OK) {
		cli_err(cmd, "config path too long");
		return r;
	}
	err[0] = '\0';
	if ((r = cfg_load(path, out, err, sizeof(err))) != KMS_OK) {
		if (r == KMS_ERR_NOT_FOUND)
			cli_err(cmd,
				"%s: no such config file (give -c FILE, set P11KMS_CONFIG, "
				"or run `p11kms init`)",
				path);
		else
			cli_err(cmd, "%s", err[0] ? err : kms_strerror(r));
		return r == KMS_ERR_NOT_FOUND ? KMS_ERR_CONFIG : r;
	}
	return KMS_OK;
}

int cli_is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cmd_exit_for(int kms_err)
{
	switch (kms_err) {
	case KMS_OK:
		return CMD_EXIT_OK;
	case KMS_ERR_CONFIG:
		return CMD_EXIT_CONFIG;
	case KMS_ERR_PERM:
		return CMD_EXIT_PERM;
	case KMS_ERR_PKCS11:
	case KMS_ERR_PIN_INCORRECT:
	case KMS_ERR_PIN_LOCKED:
	case KMS_ERR_AMBIGUOUS:
	case KMS_ERR_AUTH:
		return CMD_EXIT_KEY;
	case KMS_ERR_STATE_IO:
	case KMS_ERR_LOCKED:
	case KMS_ERR_DOUBLE_SIGN:
		return CMD_EXIT_STATE;
	default:
		return CMD_EXIT_FAIL;
	}
}
