/* SPDX-License-Identifier: Apache-2.0 */
/* The config schema: sections, keys, types, ranges and cross-references (docs/config.md). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cfg_int.h"

/* Keys allowed in each kind of group; anything else is an error (typos must not pass). */
static const char *const root_keys[] = { "chains", "keys",    "validators", "log",
					 "audit",  "metrics", NULL };
static const char *const chain_keys[] = { "id",
					  "key_format",
					  "account_key_prefix",
					  "consensus_key_prefix",
					  "state_file",
					  "sign_extensions",
					  "allow_volatile_state",
					  "ha",
					  NULL };
static const char *const key_keys[] = {
	"chain_ids", "uri", "profile", "pin_env", "softsign", "timeout_ms", NULL
};
static const char *const val_keys[] = {
	"chain_id",	  "addr",	  "secret_key", "secret_key_pin_env", "protocol_version",
	"reconnect",	  "timeout",	  "timeout_ms", "max_height",	      "backoff_min_ms",
	"backoff_max_ms", "max_msg_size", "redial_ms",	      NULL
};
static const char *const log_keys[] = { "level", "file", "format", NULL };
static const char *const metrics_keys[] = { "listen", "allow_remote", NULL };
static const char *const audit_keys[] = { "dir",
					  "batch_records",
					  "batch_ms",
					  "queue",
					  "checkpoint_every",
					  "sign_checkpoints",
					  "rotate_size_mb",
					  "rotate_daily",
					  "fail_closed",
					  NULL };

static int line_of(const config_setting_t *s)
{
	return s != NULL ? (int)config_setting_source_line(s) : 0;
}

static const char *type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		return "a group { }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ]";
	case CONFIG_TYPE_LIST:
		return "a list ( )";
	default:
		return "empty";
	}
}

/* "<prefix>.<name>" (or "<name>" at the top), for messages. */
static void key_path(char *out, size_t cap, const char *prefix, const char *name)
{
	if (prefix == NULL || prefix[0] == '\0')
		(void)snprintf(out, cap, "%s", name);
	else
		(void)snprintf(out, cap, "%s.%s", prefix, name);
}

static int check_known(struct cfg_ctx *x, const config_setting_t *g, const char *const *allowed,
		       const char *prefix)
{
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(m);
		size_t j;
		char kp[160];
		if (name == NULL)
			continue;
		for (j = 0; allowed[j] != NULL; j++)
			if (strcmp(allowed[j], name) == 0)
				break;
		if (allowed[j] != NULL)
			continue;
		char known[256] = "";
		size_t used = 0;
		for (j = 0; allowed[j] != NULL && used < sizeof(known); j++) {
			int w = snprintf(known + used, sizeof(known) - used, "%s%s", j ? ", " : "",
					 allowed[j]);
			if (w < 0)
				break;
			used += (size_t)w;
		}
		key_path(kp, sizeof(kp), prefix, name);
		return cfg_errf(x, line_of(m), kp, "unknown key (known here: %s)", known);
	}
	return KMS_OK;
}

/* A member that must be a group, or absent (*out NULL). */
static const config_setting_t *member(const config_setting_t *g, const char *name)
{
	return config_setting_get_member(g, name);
}

static int missing(struct cfg_ctx *x, const config_setting_t *g, const char *kp)
{
	return cfg_errf(x, line_of(g), kp, "missing (required)");
}

/*
 * String member. required: absent is an error; otherwise *out stays NULL.
 * Empty strings are refused (an empty path or id is always a mistake).
 */
static int get_str(struct cfg_ctx *x, const config_setting_t *g, const char *prefix,
		   const char *name, int required, char **out)
{
	char kp[160];
	const config_setting_t *m = member(g, name);
	*out = NULL;
	key_path(kp, sizeof(kp), prefix, name);
	if (m == NULL)
		return required ? missing(x, g, kp) : KMS_OK;
	if (config_setting_type(m) != CONFIG_TYPE_STRING)
		return cfg_errf(x, line_of(m), kp, "must be a string (\"...\"), found %s",
				type_name(m));
	const char *s = config_setting_get_string(m);
	if (s == NULL || s[0] == '\0')
		return cfg_errf(x, line_of(m), kp, "must not be empty");
	for (const char *c = s; *c != '\0'; c++)
		if (iscntrl((unsigned char)*c))
			return cfg_errf(x, line_of(m), kp, "contains a control character");
	*out = strdup(s);
	return *out != NULL ? KMS_OK : KMS_ERR_ALLOC;
}

static int get_path(struct cfg_ctx *x, const config_setting_t *g, const char *prefix,
		    const char *name, int required, char **out)
{
	char *raw = NULL;
	int r = get_str(x, g, prefix, name, required, &raw);
	*out = NULL;
	if (r != KMS_OK || raw == NULL)
		return r;
	r = cfg_resolve_path(x, raw, out);
	free(raw);
	return r;
}

static int get_bool(struct cfg_ctx *x, const config_setting_t *g, const char *prefix,
		    const char *name, int dflt, int *out)
{
	char kp[160];
	const config_setting_t *m = member(g, name);
	*out = dflt;
	if (m == NULL)
		return KMS_OK;
	key_path(kp, sizeof(kp), prefix, name);
	if (config_setting_type(m) != CONFIG_TYPE_BOOL)
		return cfg_errf(x, line_of(m), kp, "must be true or false, found %s", type_name(m));
	*out = config_setting_get_bool(m) ? 1 : 0;
	return KMS_OK;
}

/* Integer member in [min, max]; *has says whether it was present. */
static int get_int(struct cfg_ctx *x, const config_setting_t *g, const char *prefix,
		   const char *name, long long min, long long max, int *has, long long *out)
{
	char kp[160];
	const config_setting_t *m = member(g, name);
	*has = 0;
	if (m == NULL)
		return KMS_OK;
	key_path(kp, sizeof(kp), prefix, name);
	if (config_setting_type(m) != CONFIG_TYPE_INT &&
	    config_setting_type(m) != CONFIG_TYPE_INT64)
		return cfg_errf(x, line_of(m), kp, "must be an integer, found %s", type_name(m));
	long long v = config_setting_get_int64(m);
	if (v < min || v > max)
		return cfg_errf(x, line_of(m), kp, "%lld is out of range [%lld, %lld]", v, min,
				max);
	*has = 1;
	*out = v;
	return KMS_OK;
}

/* The list of groups at name (absent = empty). */
static int get_group_list(struct cfg_ctx *x, const config_setting_t *root, const char *name,
			  const config_setting_t **out, size_t *n)
{
	const config_setting_t *l = member(root, name);
	*out = NULL;
	*n = 0;
	if (l == NULL)
		return KMS_OK;
	if (config_setting_type(l) != CONFIG_TYPE_LIST)
		return cfg_errf(x, line_of(l), name,
				"must be a list of groups: %s = ( { ... }, { ... } ), found %s",
				name, type_name(l));
	int len = config_setting_length(l);
	for (int i = 0; i < len; i++) {
		const config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			char kp[64];
			(void)snprintf(kp, sizeof(kp), "%s[%d]", name, i);
			return cfg_errf(x, line_of(e), kp, "must be a group { ... }, found %s",
					type_name(e));
		}
	}
	*out = l;
	*n = (size_t)len;
	return KMS_OK;
}

/* ---- #20: the chain's ha block (docs/ha.md) ---------------------------------------- */

static const char *const ha_keys[] = { "etcd", "prefix", "ca", "cert", "key", "timeout_ms", "host",
				       NULL };

void cfg_ha_free(struct cfg_ha *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n_etcd; i++)
		free(h->etcd[i]);
	free(h->etcd);
	free(h->prefix);
	free(h->ca);
	free(h->cert);
	free(h->key);
	free(h->host);
	free(h);
}

static int parse_ha_etcd(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
			 struct cfg_ha *h)
{
	char sub[160];
	const config_setting_t *a = member(g, "etcd");
	key_path(sub, sizeof(sub), kp, "etcd");
	if (a == NULL)
		return missing(x, g, sub);
	if (config_setting_type(a) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(a) != CONFIG_TYPE_LIST)
		return cfg_errf(x, line_of(a), sub,
				"must be an array of endpoints [ \"https://host:2379\", ... ], found %s",
				type_name(a));
	int n = config_setting_length(a);
	if (n <= 0)
		return cfg_errf(x, line_of(a), sub, "must name at least one etcd endpoint");
	if ((h->etcd = calloc((size_t)n, sizeof(char *))) == NULL)
		return KMS_ERR_ALLOC;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(a, (unsigned)i);
		const char *s = config_setting_get_string(e);
		if (config_setting_type(e) != CONFIG_TYPE_STRING || s == NULL ||
		    (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) ||
		    strlen(s) > 200)
			return cfg_errf(x, line_of(a), sub,
					"element %d must be an endpoint \"http(s)://host:port\"", i);
		for (const char *c = s; *c != '\0'; c++)
			if (iscntrl((unsigned char)*c) || isspace((unsigned char)*c))
				return cfg_errf(x, line_of(a), sub,
						"element %d contains white space or a control "
						"character",
						i);
		if ((h->etcd[i] = strdup(s)) == NULL)
			return KMS_ERR_ALLOC;
		h->n_etcd = (size_t)i + 1;
	}
	return KMS_OK;
}

static int parse_ha(struct cfg_ctx *x, const config_setting_t *chain, const char *kp,
		    struct cfg_chain *c)
{
	const config_setting_t *g = member(chain, "ha");
	char sub[96]; /* "chains[N].ha": short, so that the keys below it fit 160 bytes */
	long long t = 0;
	int has = 0, r;
	if (g == NULL)
		return KMS_OK;
	key_path(sub, sizeof(sub), kp, "ha");
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_errf(x, line_of(g), sub,
				"must be a group { etcd = [ ... ]; ... }, found %s", type_name(g));
	if ((c->ha = calloc(1, sizeof(*c->ha))) == NULL)
		return KMS_ERR_ALLOC;
	struct cfg_ha *h = c->ha;
	if ((r = check_known(x, g, ha_keys, sub)) != KMS_OK ||
	    (r = parse_ha_etcd(x, g, sub, h)) != KMS_OK ||
	    (r = get_str(x, g, sub, "prefix", 0, &h->prefix)) != KMS_OK ||
	    (r = get_path(x, g, sub, "ca", 0, &h->ca)) != KMS_OK ||
	    (r = get_path(x, g, sub, "cert", 0, &h->cert)) != KMS_OK ||
	    (r = get_path(x, g, sub, "key", 0, &h->key)) != KMS_OK ||
	    (r = get_str(x, g, sub, "host", 0, &h->host)) != KMS_OK ||
	    (r = get_int(x, g, sub, "timeout_ms", 10, 60000, &has, &t)) != KMS_OK)
		return r;
	h->timeout_ms = has ? (int)t : CFG_HA_DEFAULT_TIMEOUT_MS;
	if (h->prefix == NULL && (h->prefix = strdup(CFG_HA_DEFAULT_PREFIX)) == NULL)
		return KMS_ERR_ALLOC;
	if (h->prefix[0] != '/' || h->prefix[strlen(h->prefix) - 1] == '/') {
		key_path(sub, sizeof(sub), kp, "ha.prefix");
		return cfg_errf(x, line_of(member(g, "prefix")), sub,
				"\"%s\" must start with / and not end with one", h->prefix);
	}
	if ((h->cert == NULL) != (h->key == NULL)) {
		key_path(sub, sizeof(sub), kp, "ha");
		return cfg_errf(x, line_of(g), sub, "cert and key go together (client TLS)");
	}
	if (h->host != NULL && (strlen(h->host) > 63 || strchr(h->host, '/') != NULL)) {
		key_path(sub, sizeof(sub), kp, "ha.host");
		return cfg_errf(x, line_of(member(g, "host")), sub,
				"at most 63 characters, no /");
	}
	return KMS_OK;
}

/* ---- sections ----------------------------------------------------------------------- */

static int check_chain_id(struct cfg_ctx *x, int line, const char *kp, const char *id)
{
	size_t n = strlen(id);
	if (n > CFG_CHAIN_ID_MAX)
		return cfg_errf(x, line, kp, "chain id \"%s\" is %zu bytes, CometBFT allows %d", id,
				n, CFG_CHAIN_ID_MAX);
	for (const char *c = id; *c != '\0'; c++)
		if (isspace((unsigned char)*c))
			return cfg_errf(x, line, kp, "chain id \"%s\" contains white space", id);
	return KMS_OK;
}

static int check_bech32_prefix(struct cfg_ctx *x, int line, const char *kp, const char *p)
{
	/* BIP-173: HRP of 1..83 US-ASCII characters 33..126; we also insist on lower case. */
	size_t n = strlen(p);
	if (n > 83)
		return cfg_errf(x, line, kp, "bech32 prefix longer than 83 characters");
	for (const char *c = p; *c != '\0'; c++)
		if (*c < 33 || *c > 126 || isupper((unsigned char)*c))
			return cfg_errf(x, line, kp, "\"%s\" is not a lower-case bech32 prefix", p);
	return KMS_OK;
}

static int parse_chain(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
		       struct cfg_chain *c)
{
	char *fmt = NULL;
	char sub[160];
	int r;

	c->line = line_of(g);
	if ((r = check_known(x, g, chain_keys, kp)) != KMS_OK ||
	    (r = get_str(x, g, kp, "id", 1, &c->id)) != KMS_OK)
		goto out;
	key_path(sub, sizeof(sub), kp, "id");
	if ((r = check_chain_id(x, line_of(member(g, "id")), sub, c->id)) != KMS_OK ||
	    (r = get_str(x, g, kp, "key_format", 0, &fmt)) != KMS_OK ||
	    (r = get_str(x, g, kp, "account_key_prefix", 0, &c->account_key_prefix)) != KMS_OK ||
	    (r = get_str(x, g, kp, "consensus_key_prefix", 0, &c->consensus_key_prefix)) !=
		    KMS_OK ||
	    (r = get_path(x, g, kp, "state_file", 1, &c->state_file)) != KMS_OK ||
	    (r = get_bool(x, g, kp, "sign_extensions", 1, &c->sign_extensions)) != KMS_OK ||
	    (r = get_bool(x, g, kp, "allow_volatile_state", 0, &c->allow_volatile_state)) != KMS_OK ||
	    (r = parse_ha(x, g, kp, c)) != KMS_OK)
		goto out;
	if (fmt == NULL) {
		/* Default: bech32 when a consensus prefix is given, hex otherwise. */
		c->key_format = c->consensus_key_prefix != NULL ? CFG_KEY_FORMAT_BECH32 :
								  CFG_KEY_FORMAT_HEX;
	} else if (cfg_key_format_parse(fmt, &c->key_format) != KMS_OK) {
		key_path(sub, sizeof(sub), kp, "key_format");
		r = cfg_errf(x, line_of(member(g, "key_format")), sub,
			     "\"%s\" is not one of \"bech32\", \"cosmos-json\", \"hex\"", fmt);
		goto out;
	}
	if (c->key_format == CFG_KEY_FORMAT_BECH32 && c->consensus_key_prefix == NULL) {
		key_path(sub, sizeof(sub), kp, "consensus_key_prefix");
		r = cfg_errf(x, c->line, sub,
			     "missing: key_format \"bech32\" needs it (e.g. \"haqqvalconspub\")");
		goto out;
	}
	if (c->consensus_key_prefix != NULL) {
		key_path(sub, sizeof(sub), kp, "consensus_key_prefix");
		r = check_bech32_prefix(x, line_of(member(g, "consensus_key_prefix")), sub,
					c->consensus_key_prefix);
		if (r != KMS_OK)
			goto out;
	}
	if (c->account_key_prefix != NULL) {
		key_path(sub, sizeof(sub), kp, "account_key_prefix");
		r = check_bech32_prefix(x, line_of(member(g, "account_key_prefix")), sub,
					c->account_key_prefix);
		if (r != KMS_OK)
			goto out;
	}
	r = KMS_OK;
out:
	free(fmt);
	return r;
}

static int check_env_name(struct cfg_ctx *x, int line, const char *kp, const char *s)
{
	if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
		goto bad;
	for (const char *c = s; *c != '\0'; c++)
		if (!(isalnum((unsigned char)*c) || *c == '_'))
			goto bad;
	return KMS_OK;
bad:
	return cfg_errf(x, line, kp,
			"\"%s\" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", s);
}

static int parse_chain_ids(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
			   struct cfg_key *k)
{
	char sub[160];
	const config_setting_t *a = member(g, "chain_ids");
	key_path(sub, sizeof(sub), kp, "chain_ids");
	if (a == NULL)
		return missing(x, g, sub);
	if (config_setting_type(a) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(a) != CONFIG_TYPE_LIST)
		return cfg_errf(x, line_of(a), sub,
				"must be an array of strings [ \"...\" ], found %s", type_name(a));
	int n = config_setting_length(a);
	if (n <= 0)
		return cfg_errf(x, line_of(a), sub, "must name at least one chain");
	k->chain_ids = calloc((size_t)n, sizeof(char *));
	if (k->chain_ids == NULL)
		return KMS_ERR_ALLOC;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(a, (unsigned)i);
		const char *s = config_setting_get_string(e);
		if (config_setting_type(e) != CONFIG_TYPE_STRING || s == NULL || s[0] == '\0')
			return cfg_errf(x, line_of(a), sub, "element %d must be a non-empty string",
					i);
		for (size_t j = 0; j < k->n_chain_ids; j++)
			if (strcmp(k->chain_ids[j], s) == 0)
				return cfg_errf(x, line_of(a), sub, "\"%s\" is listed twice", s);
		k->chain_ids[i] = strdup(s);
		if (k->chain_ids[i] == NULL)
			return KMS_ERR_ALLOC;
		k->n_chain_ids = (size_t)i + 1;
	}
	return KMS_OK;
}

/* One URI of keys.uri: an RFC 7512 URI, not listed twice. */
static int check_uri(struct cfg_ctx *x, int line, const char *kp, const struct cfg_key *k,
		     const char *u)
{
	if (strncasecmp(u, "pkcs11:", 7) != 0)
		return cfg_errf(x, line, kp, "must be an RFC 7512 URI starting with \"pkcs11:\"");
	for (const char *c = u; *c != '\0'; c++)
		if (iscntrl((unsigned char)*c))
			return cfg_errf(x, line, kp, "contains a control character");
	for (size_t j = 0; j < k->n_uris; j++)
		if (strcmp(k->uris[j], u) == 0)
			return cfg_errf(x, line, kp, "\"%s\" is listed twice", u);
	return KMS_OK;
}

/* keys.uri: a string, or a list of strings (primary first, then backups). */
static int parse_uris(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
		      struct cfg_key *k)
{
	char sub[160];
	const config_setting_t *a = member(g, "uri");
	int n, r;
	if (a == NULL)
		return KMS_OK;
	key_path(sub, sizeof(sub), kp, "uri");
	if (config_setting_type(a) == CONFIG_TYPE_STRING)
		n = 1;
	else if (config_setting_type(a) == CONFIG_TYPE_ARRAY ||
		 config_setting_type(a) == CONFIG_TYPE_LIST)
		n = config_setting_length(a);
	else
		return cfg_errf(x, line_of(a), sub,
				"must be a string \"pkcs11:...\" or a list of them [ primary, "
				"backup, ... ], found %s",
				type_name(a));
	if (n < 1 || n > CFG_KEY_MAX_URIS)
		return cfg_errf(x, line_of(a), sub, "must list 1 to %d URIs, found %d",
				CFG_KEY_MAX_URIS, n);
	if ((k->uris = calloc((size_t)n, sizeof(char *))) == NULL)
		return KMS_ERR_ALLOC;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e =
			config_setting_type(a) == CONFIG_TYPE_STRING ?
				a :
				config_setting_get_elem(a, (unsigned)i);
		const char *u = config_setting_get_string(e);
		if (config_setting_type(e) != CONFIG_TYPE_STRING || u == NULL || u[0] == '\0')
			return cfg_errf(x, line_of(a), sub,
					"element %d must be a non-empty string", i);
		if ((r = check_uri(x, line_of(a), sub, k, u)) != KMS_OK)
			return r;
		if ((k->uris[i] = strdup(u)) == NULL)
			return KMS_ERR_ALLOC;
		k->n_uris = (size_t)i + 1;
	}
	k->uri = strdup(k->uris[0]);
	return k->uri != NULL ? KMS_OK : KMS_ERR_ALLOC;
}

static int parse_key(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
		     struct cfg_key *k)
{
	char sub[160];
	int r;

	k->line = line_of(g);
	if ((r = check_known(x, g, key_keys, kp)) != KMS_OK ||
	    (r = parse_chain_ids(x, g, kp, k)) != KMS_OK ||
	    (r = parse_uris(x, g, kp, k)) != KMS_OK ||
	    (r = get_str(x, g, kp, "profile", 0, &k->profile)) != KMS_OK ||
	    (r = get_str(x, g, kp, "pin_env", 0, &k->pin_env)) != KMS_OK ||
	    (r = get_path(x, g, kp, "softsign", 0, &k->softsign)) != KMS_OK)
		return r;
	if ((k->uri == NULL) == (k->softsign == NULL))
		return cfg_errf(x, k->line, kp,
				"give exactly one of uri = \"pkcs11:...\" or softsign = \"path\"");
	if (k->softsign != NULL) {
		k->kind = CFG_KEY_SOFTSIGN;
		if (k->profile != NULL || k->pin_env != NULL || member(g, "timeout_ms") != NULL) {
			key_path(sub, sizeof(sub), kp,
				 k->profile != NULL ? "profile" :
				 k->pin_env != NULL ? "pin_env" :
						      "timeout_ms");
			return cfg_errf(x, k->line, sub, "only for uri keys, not softsign");
		}
		return KMS_OK;
	}
	k->kind = CFG_KEY_PKCS11;
	{
		long long t = 0;
		int has = 0;
		/* 50 ms is below any token's signature; 10 min above any sane wait. */
		if ((r = get_int(x, g, kp, "timeout_ms", 50, 600000, &has, &t)) != KMS_OK)
			return r;
		k->timeout_ms = has ? (unsigned)t : CFG_DEFAULT_TOKEN_TIMEOUT_MS;
	}
	if (k->pin_env != NULL) {
		key_path(sub, sizeof(sub), kp, "pin_env");
		return check_env_name(x, line_of(member(g, "pin_env")), sub, k->pin_env);
	}
	return KMS_OK;
}

static int parse_val_numbers(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
			     struct cfg_validator *v)
{
	long long t = 0, tm = 0, n = 0;
	int has_t, has_tm, has;
	int r;

	if ((r = get_int(x, g, kp, "timeout", 1, 3600, &has_t, &t)) != KMS_OK ||
	    (r = get_int(x, g, kp, "timeout_ms", 1, 3600000, &has_tm, &tm)) != KMS_OK)
		return r;
	if (has_t && has_tm)
		return cfg_errf(x, line_of(member(g, "timeout_ms")), kp,
				"give timeout (seconds) or timeout_ms, not both");
	v->timeout_ms = has_t ? (int)t * 1000 : has_tm ? (int)tm : CFG_DEFAULT_TIMEOUT_MS;
	if ((r = get_int(x, g, kp, "max_height", 1, INT64_MAX, &has, &n)) != KMS_OK)
		return r;
	v->max_height = has ? (uint64_t)n : 0;
	if ((r = get_int(x, g, kp, "backoff_min_ms", 1, 600000, &has, &n)) != KMS_OK)
		return r;
	v->backoff_min_ms = has ? (uint32_t)n : CFG_DEFAULT_BACKOFF_MIN_MS;
	if ((r = get_int(x, g, kp, "backoff_max_ms", 1, 600000, &has, &n)) != KMS_OK)
		return r;
	v->backoff_max_ms = has ? (uint32_t)n : CFG_DEFAULT_BACKOFF_MAX_MS;
	if (v->backoff_max_ms < v->backoff_min_ms) {
		char sub[160];
		key_path(sub, sizeof(sub), kp, "backoff_max_ms");
		return cfg_errf(x, line_of(g), sub, "%u is below backoff_min_ms %u",
				(unsigned)v->backoff_max_ms, (unsigned)v->backoff_min_ms);
	}
	/* 1 KiB fits any vote; 64 MiB is far above CometBFT v0.40's 1 MiB extension cap. */
	if ((r = get_int(x, g, kp, "max_msg_size", 1024, 64 * 1024 * 1024, &has, &n)) != KMS_OK)
		return r;
	v->max_msg_size = has ? (size_t)n : CFG_DEFAULT_MAX_MSG_SIZE;
	/* #17: redial interval while disconnected; the node waits ~3 s for its signer */
	if ((r = get_int(x, g, kp, "redial_ms", 10, 60000, &has, &n)) != KMS_OK)
		return r;
	v->redial_ms = has ? (uint32_t)n : CFG_DEFAULT_REDIAL_MS;
	return KMS_OK;
}

static int parse_validator(struct cfg_ctx *x, const config_setting_t *g, const char *kp,
			   struct cfg_validator *v)
{
	char sub[160];
	char why[160];
	char *proto = NULL, *sk = NULL;
	int r;

	v->line = line_of(g);
	if ((r = check_known(x, g, val_keys, kp)) != KMS_OK ||
	    (r = get_str(x, g, kp, "chain_id", 1, &v->chain_id)) != KMS_OK ||
	    (r = get_str(x, g, kp, "addr", 1, &v->addr)) != KMS_OK)
		goto out;
	key_path(sub, sizeof(sub), kp, "addr");
	why[0] = '\0';
	if (net_addr_parse(v->addr, &v->net, why, sizeof(why)) != KMS_OK) {
		r = cfg_errf(x, line_of(member(g, "addr")), sub,
			     "\"%s\": %s (expected tcp://[node_id@]host:port or unix:///path)",
			     v->addr, why[0] ? why : "invalid address");
		goto out;
	}
	if ((r = get_str(x, g, kp, "secret_key", 0, &sk)) != KMS_OK ||
	    (r = get_str(x, g, kp, "secret_key_pin_env", 0, &v->secret_key_pin_env)) != KMS_OK ||
	    (r = get_str(x, g, kp, "protocol_version", 0, &proto)) != KMS_OK ||
	    (r = get_bool(x, g, kp, "reconnect", 1, &v->reconnect)) != KMS_OK ||
	    (r = parse_val_numbers(x, g, kp, v)) != KMS_OK)
		goto out;
	if (proto == NULL) {
		v->protocol_version = CFG_PROTO_AUTO; /* #17: one form every version reads */
	} else if (cfg_proto_parse(proto, &v->protocol_version) != KMS_OK) {
		key_path(sub, sizeof(sub), kp, "protocol_version");
		r = cfg_errf(x, line_of(member(g, "protocol_version")), sub,
			     "\"%s\" is not one of \"auto\", \"v0.34\", \"v0.37\", \"v0.38\", \"v1\"%s",
			     proto,
			     strcmp(proto, "v0.33") == 0 || strcmp(proto, "legacy") == 0 ?
				     " (Tendermint <= 0.33 amino framing is not supported)" :
				     "");
		goto out;
	}
	key_path(sub, sizeof(sub), kp, "secret_key");
	if (sk == NULL && v->net.scheme == NET_TCP) {
		r = cfg_errf(x, v->line, sub,
			     "missing: tcp:// needs the Secret Connection identity key file");
		goto out;
	}
	if (sk != NULL && strncasecmp(sk, "pkcs11:", 7) == 0) {
		v->secret_key = sk;
		sk = NULL;
	} else if (sk != NULL && (r = cfg_resolve_path(x, sk, &v->secret_key)) != KMS_OK) {
		goto out;
	}
	if (v->secret_key_pin_env != NULL) {
		key_path(sub, sizeof(sub), kp, "secret_key_pin_env");
		if (v->secret_key == NULL || strncasecmp(v->secret_key, "pkcs11:", 7) != 0) {
			r = cfg_errf(x, line_of(member(g, "secret_key_pin_env")), sub,
				     "only for a secret_key that is a pkcs11: URI");
			goto out;
		}
		r = check_env_name(x, line_of(member(g, "secret_key_pin_env")), sub,
				   v->secret_key_pin_env);
		if (r != KMS_OK)
			goto out;
	}
	r = KMS_OK;
out:
	free(proto);
	free(sk);
	return r;
}

static int parse_log_format(struct cfg_ctx *x, const config_setting_t *g, struct cfg *cfg)
{
	char *fmt = NULL;
	int r = get_str(x, g, "log", "format", 0, &fmt);
	if (r == KMS_OK && fmt != NULL && kms_log_format_parse(fmt, &cfg->log_format) != KMS_OK)
		r = cfg_errf(x, line_of(member(g, "format")), "log.format",
			     "\"%s\" is not one of \"text\", \"json\"", fmt);
	free(fmt);
	return r;
}

static int parse_log(struct cfg_ctx *x, const config_setting_t *root, struct cfg *cfg)
{
	const config_setting_t *g = member(root, "log");
	char *lvl = NULL;
	int r;
	if (g == NULL)
		return KMS_OK;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_errf(x, line_of(g), "log",
				"must be a group { level = \"info\"; }, found %s", type_name(g));
	if ((r = check_known(x, g, log_keys, "log")) != KMS_OK ||
	    (r = get_str(x, g, "log", "level", 0, &lvl)) != KMS_OK ||
	    (r = get_path(x, g, "log", "file", 0, &cfg->log_file)) != KMS_OK ||
	    (r = parse_log_format(x, g, cfg)) != KMS_OK)
		goto out;
	if (lvl != NULL) {
		if (kms_log_level_parse(lvl, &cfg->log_level) != KMS_OK) {
			r = cfg_errf(
				x, line_of(member(g, "level")), "log.level",
				"\"%s\" is not one of \"error\", \"warn\", \"info\", \"debug\"",
				lvl);
			goto out;
		}
		cfg->has_log_level = 1;
	}
	r = KMS_OK;
out:
	free(lvl);
	return r;
}

/* One audit integer: *out = the value if present, else dflt. */
static int audit_int(struct cfg_ctx *x, const config_setting_t *g, const char *name, long long min,
		     long long max, long long dflt, long long *out)
{
	int has = 0;
	int r = get_int(x, g, "audit", name, min, max, &has, out);
	if (r == KMS_OK && !has)
		*out = dflt;
	return r;
}

static int parse_audit(struct cfg_ctx *x, const config_setting_t *root, struct cfg *cfg)
{
	const config_setting_t *g = member(root, "audit");
	struct cfg_audit *a = &cfg->audit;
	long long br, bms, q, cp, mb;
	int r;
	if (g == NULL)
		return KMS_OK;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_errf(x, line_of(g), "audit",
				"must be a group { dir = \"audit\"; }, found %s", type_name(g));
	a->line = line_of(g);
	if ((r = check_known(x, g, audit_keys, "audit")) != KMS_OK ||
	    (r = get_path(x, g, "audit", "dir", 1, &a->dir)) != KMS_OK ||
	    (r = audit_int(x, g, "batch_records", 1, 100000, 64, &br)) != KMS_OK ||
	    (r = audit_int(x, g, "batch_ms", 1, 60000, 200, &bms)) != KMS_OK ||
	    (r = audit_int(x, g, "queue", 16, 1 << 20, 1024, &q)) != KMS_OK ||
	    (r = audit_int(x, g, "checkpoint_every", 1, 1000000000, 1000, &cp)) != KMS_OK ||
	    (r = audit_int(x, g, "rotate_size_mb", 0, 1 << 20, 64, &mb)) != KMS_OK ||
	    (r = get_bool(x, g, "audit", "sign_checkpoints", 0, &a->sign_checkpoints)) != KMS_OK ||
	    (r = get_bool(x, g, "audit", "rotate_daily", 1, &a->rotate_daily)) != KMS_OK ||
	    (r = get_bool(x, g, "audit", "fail_closed", 0, &a->fail_closed)) != KMS_OK)
		return r;
	a->batch_records = (uint32_t)br;
	a->batch_ms = (uint32_t)bms;
	a->queue = (uint32_t)q;
	a->checkpoint_every = (uint32_t)cp;
	a->rotate_bytes = (uint64_t)mb << 20;
	if (a->sign_checkpoints) {
		int tcp = 0;
		for (size_t i = 0; i < cfg->n_validators; i++)
			tcp |= cfg->validators[i].secret_key != NULL;
		if (!tcp)
			return cfg_errf(x, line_of(member(g, "sign_checkpoints")),
					"audit.sign_checkpoints",
					"needs a validators entry with a secret_key (the "
					"Secret Connection identity signs the checkpoints)");
	}
	a->enabled = 1;
	return KMS_OK;
}

/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 or "localhost": reachable only from this host. */
static int is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (strcmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) != 1)
		return 0;
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (memcmp(a6.s6_addr, v4mapped, 12) == 0)
		return a6.s6_addr[12] == 127;
	for (int i = 0; i < 15; i++)
		if (a6.s6_addr[i] != 0)
			return 0;
	return a6.s6_addr[15] == 1;
}

/*
 * metrics = { listen = "127.0.0.1:26661"; allow_remote = false; }: present
 * turns the HTTP endpoints on. A non-loopback address exposes signing
 * activity to the network, so it needs allow_remote = true.
 */
static int parse_metrics(struct cfg_ctx *x, const config_setting_t *root, struct cfg *cfg)
{
	const config_setting_t *g = member(root, "metrics");
	char spec[NET_HOST_MAX + 16], why[128] = "";
	struct net_addr a;
	int r;
	if (g == NULL)
		return KMS_OK;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_errf(x, line_of(g), "metrics",
				"must be a group { listen = \"127.0.0.1:26661\"; }, found %s",
				type_name(g));
	if ((r = check_known(x, g, metrics_keys, "metrics")) != KMS_OK ||
	    (r = get_str(x, g, "metrics", "listen", 0, &cfg->metrics_listen)) != KMS_OK ||
	    (r = get_bool(x, g, "metrics", "allow_remote", 0, &cfg->metrics_allow_remote)) !=
		    KMS_OK)
		return r;
	if (cfg->metrics_listen == NULL &&
	    (cfg->metrics_listen = strdup(CFG_DEFAULT_METRICS_LISTEN)) == NULL)
		return KMS_ERR_ALLOC;
	int line = member(g, "listen") != NULL ? line_of(member(g, "listen")) : line_of(g);
	(void)snprintf(spec, sizeof(spec), "tcp://%s", cfg->metrics_listen);
	if (strncmp(cfg->metrics_listen, "tcp://", 6) == 0 || strchr(cfg->metrics_listen, '@') ||
	    net_addr_parse(spec, &a, why, sizeof(why)) != KMS_OK || a.scheme != NET_TCP)
		return cfg_errf(x, line, "metrics.listen",
				"\"%s\": %s (expected host:port, e.g. \"127.0.0.1:26661\" or "
				"\"[::1]:26661\")",
				cfg->metrics_listen, why[0] ? why : "not an address");
	if (!is_loopback(a.host) && !cfg->metrics_allow_remote)
		return cfg_errf(x, line, "metrics.listen",
				"\"%s\" is not a loopback address: anyone who reaches it sees the "
				"signer's activity; set allow_remote = true to mean it",
				cfg->metrics_listen);
	return KMS_OK;
}

int cfg_parse_root(struct cfg_ctx *x, const config_setting_t *root, struct cfg *cfg)
{
	const config_setting_t *l;
	size_t n;
	char kp[64];
	int r;

	if ((r = check_known(x, root, root_keys, NULL)) != KMS_OK)
		return r;
	if ((r = get_group_list(x, root, "chains", &l, &n)) != KMS_OK)
		return r;
	if (n == 0)
		return cfg_errf(x, line_of(l), "chains",
				"no chains configured: add chains = ( { id = \"...\"; ... } )");
	if ((cfg->chains = calloc(n, sizeof(*cfg->chains))) == NULL)
		return KMS_ERR_ALLOC;
	for (size_t i = 0; i < n; i++) {
		(void)snprintf(kp, sizeof(kp), "chains[%zu]", i);
		cfg->n_chains = i + 1;
		r = parse_chain(x, config_setting_get_elem(l, (unsigned)i), kp, &cfg->chains[i]);
		if (r != KMS_OK)
			return r;
	}
	if ((r = get_group_list(x, root, "keys", &l, &n)) != KMS_OK)
		return r;
	if (n > 0 && (cfg->keys = calloc(n, sizeof(*cfg->keys))) == NULL)
		return KMS_ERR_ALLOC;
	for (size_t i = 0; i < n; i++) {
		(void)snprintf(kp, sizeof(kp), "keys[%zu]", i);
		cfg->n_keys = i + 1;
		r = parse_key(x, config_setting_get_elem(l, (unsigned)i), kp, &cfg->keys[i]);
		if (r != KMS_OK)
			return r;
	}
	if ((r = get_group_list(x, root, "validators", &l, &n)) != KMS_OK)
		return r;
	if (n > 0 && (cfg->validators = calloc(n, sizeof(*cfg->validators))) == NULL)
		return KMS_ERR_ALLOC;
	for (size_t i = 0; i < n; i++) {
		(void)snprintf(kp, sizeof(kp), "validators[%zu]", i);
		cfg->n_validators = i + 1;
		r = parse_validator(x, config_setting_get_elem(l, (unsigned)i), kp,
				    &cfg->validators[i]);
		if (r != KMS_OK)
			return r;
	}
	if ((r = parse_log(x, root, cfg)) != KMS_OK || (r = parse_metrics(x, root, cfg)) != KMS_OK)
		return r;
	return parse_audit(x, root, cfg);
}

/* ---- cross-references ----------------------------------------------------------------- */

static int check_chains(struct cfg_ctx *x, const struct cfg *cfg)
{
	char kp[64];
	for (size_t i = 0; i < cfg->n_chains; i++) {
		const struct cfg_chain *c = &cfg->chains[i];
		for (size_t j = 0; j < i; j++) {
			if (strcmp(cfg->chains[j].id, c->id) == 0) {
				(void)snprintf(kp, sizeof(kp), "chains[%zu].id", i);
				return cfg_errf(x, c->line, kp,
						"chain \"%s\" is already defined at line %d", c->id,
						cfg->chains[j].line);
			}
			if (strcmp(cfg->chains[j].state_file, c->state_file) == 0) {
				(void)snprintf(kp, sizeof(kp), "chains[%zu].state_file", i);
				return cfg_errf(
					x, c->line, kp,
					"%s is also the state file of chain \"%s\": each chain needs its own",
					c->state_file, cfg->chains[j].id);
			}
		}
	}
	return KMS_OK;
}

static int check_keys(struct cfg_ctx *x, const struct cfg *cfg)
{
	char kp[64];
	for (size_t i = 0; i < cfg->n_keys; i++) {
		const struct cfg_key *k = &cfg->keys[i];
		(void)snprintf(kp, sizeof(kp), "keys[%zu].chain_ids", i);
		for (size_t j = 0; j < k->n_chain_ids; j++) {
			const char *id = k->chain_ids[j];
			if (cfg_chain_find(cfg, id) == NULL)
				return cfg_errf(x, k->line, kp, "no chain \"%s\" in chains", id);
			/* One consensus key per chain: an earlier key serving id is a conflict. */
			for (size_t a = 0; a < i; a++)
				for (size_t b = 0; b < cfg->keys[a].n_chain_ids; b++)
					if (strcmp(cfg->keys[a].chain_ids[b], id) == 0)
						return cfg_errf(
							x, k->line, kp,
							"chain \"%s\" already has a key (keys[%zu], line %d); one consensus key per chain",
							id, a, cfg->keys[a].line);
		}
	}
	for (size_t i = 0; i < cfg->n_chains; i++) {
		if (cfg_key_for_chain(cfg, cfg->chains[i].id) == NULL) {
			(void)snprintf(kp, sizeof(kp), "chains[%zu]", i);
			return cfg_errf(
				x, cfg->chains[i].line, kp,
				"no key signs for chain \"%s\": add it to a keys entry's chain_ids",
				cfg->chains[i].id);
		}
	}
	return KMS_OK;
}

static int check_validators(struct cfg_ctx *x, const struct cfg *cfg)
{
	char kp[64];
	for (size_t i = 0; i < cfg->n_validators; i++) {
		const struct cfg_validator *v = &cfg->validators[i];
		if (cfg_chain_find(cfg, v->chain_id) == NULL) {
			(void)snprintf(kp, sizeof(kp), "validators[%zu].chain_id", i);
			return cfg_errf(x, v->line, kp, "no chain \"%s\" in chains", v->chain_id);
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(cfg->validators[j].addr, v->addr) == 0) {
				(void)snprintf(kp, sizeof(kp), "validators[%zu].addr", i);
				return cfg_errf(x, v->line, kp, "\"%s\" is already used at line %d",
						v->addr, cfg->validators[j].line);
			}
		}
	}
	return KMS_OK;
}

int cfg_check_refs(struct cfg_ctx *x, const struct cfg *cfg)
{
	int r;
	if ((r = check_chains(x, cfg)) != KMS_OK || (r = check_keys(x, cfg)) != KMS_OK ||
	    (r = check_validators(x, cfg)) != KMS_OK)
		return r;
	return KMS_OK;
}
