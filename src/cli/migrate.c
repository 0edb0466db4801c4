/* SPDX-License-Identifier: Apache-2.0 */
/* tmkms.toml -> p11kms.conf: the schema mapping of research/peers.md §2.2-2.3 (no I/O here). */
#include "migrate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "p11kms/kbuf.h"
#include "p11kms/net.h"
#include "p11kms/toml.h"

#define MIGRATE_TEXT_MAX (1024 * 1024)

struct mctx {
	const struct migrate_opts *o;
	struct migrate_result *res;
	int nerr;
	int oom;
	/* chains declared, and whether a key serves each (one consensus key per chain) */
	const char *chains[64];
	int chain_has_key[64];
	unsigned chain_line[64]; /* the [[chain]] entry's line, for messages */
	size_t n_chains;
};

__attribute__((format(printf, 4, 5))) static void merr(struct mctx *x, unsigned line,
						       const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	x->nerr++;
	if (cli_bprintf(x->res->errors, "%s:%u: %s: %s\n", x->o->src_name, line, key, msg) !=
	    KMS_OK)
		x->oom = 1;
}

__attribute__((format(printf, 2, 3))) static void mnote(struct mctx *x, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cli_bprintf(x->res->notes, "- %s\n", msg) != KMS_OK)
		x->oom = 1;
}

__attribute__((format(printf, 2, 3))) static void out(struct mctx *x, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg) || kbuf_put(x->res->conf, msg, (size_t)n) != KMS_OK)
		x->oom = 1;
}

static void out_str(struct mctx *x, const char *s)
{
	if (cli_bput_cstr(x->res->conf, s) != KMS_OK)
		x->oom = 1;
}

/* Every key of t must be in allowed; others are reported (tmkms denies unknown fields too). */
static void check_keys(struct mctx *x, const struct toml_value *t, const char *where,
		       const char *const *allowed)
{
	for (size_t i = 0; i < toml_table_len(t); i++) {
		const char *k = toml_table_key(t, i);
		size_t j;

		for (j = 0; allowed[j] != NULL; j++)
			if (strcmp(allowed[j], k) == 0)
				break;
		if (allowed[j] == NULL)
			merr(x, toml_line(toml_table_at(t, i)), where,
			     "unknown key '%s' (tmkms itself would refuse it)", k);
	}
}

/* A string member: NULL (and an error if required) when missing or not a string. */
static const char *get_str(struct mctx *x, const struct toml_value *t, const char *where,
			   const char *key, int required)
{
	const struct toml_value *v = toml_get(t, key);

	if (v == NULL) {
		if (required)
			merr(x, toml_line(t), where, "'%s' is missing (required)", key);
		return NULL;
	}
	if (toml_type(v) != TOML_STRING) {
		merr(x, toml_line(v), where, "'%s' must be a string, found %s", key,
		     toml_type_name(toml_type(v)));
		return NULL;
	}
	if (toml_string(v)[0] == '\0') {
		merr(x, toml_line(v), where, "'%s' is empty", key);
		return NULL;
	}
	for (const char *c = toml_string(v); *c != '\0'; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			merr(x, toml_line(v), where, "'%s' contains a control character", key);
			return NULL;
		}
	}
	return toml_string(v);
}

/* The array of tables at key (missing = none). */
static const struct toml_value *get_aot(struct mctx *x, const struct toml_value *t, const char *key)
{
	const struct toml_value *v = toml_get(t, key);

	if (v == NULL)
		return NULL;
	if (toml_type(v) != TOML_ARRAY) {
		merr(x, toml_line(v), key, "must be an array of tables ([[%s]]), found a %s", key,
		     toml_type_name(toml_type(v)));
		return NULL;
	}
	for (size_t i = 0; i < toml_array_len(v); i++) {
		if (toml_type(toml_array_at(v, i)) != TOML_TABLE) {
			merr(x, toml_line(toml_array_at(v, i)), key, "entries must be tables");
			return NULL;
		}
	}
	return v;
}

/* Resolves a tmkms path the way tmkms did (against its working directory). New string. */
static char *resolve(struct mctx *x, const char *path)
{
	char *abs = cli_path_join(x->o->tmkms_cwd, path);

	if (abs == NULL)
		x->oom = 1;
	else if (path[0] != '/')
		mnote(x, "relative path \"%s\" resolved to %s (against tmkms's working directory)",
		      path, abs);
	return abs;
}

static int chain_index(const struct mctx *x, const char *id)
{
	for (size_t i = 0; i < x->n_chains; i++)
		if (strcmp(x->chains[i], id) == 0)
			return (int)i;
	return -1;
}

int migrate_state_name(const char *chain_id, char *outp, size_t cap)
{
	size_t n = strlen(chain_id), k;

	if (n == 0 || n + sizeof("state/.state") > cap)
		return KMS_ERR_NO_SPACE;
	memcpy(outp, "state/", 6);
	for (k = 0; k < n; k++) {
		char c = chain_id[k];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';

		outp[6 + k] = ok ? c : '_';
	}
	memcpy(outp + 6 + n, ".state", sizeof(".state"));
	return KMS_OK;
}

static void add_state(struct mctx *x, const char *chain_id, char *from, const char *to)
{
	struct migrate_result *res = x->res;
	struct migrate_state *ns = realloc(res->states, (res->n_states + 1) * sizeof(*ns));

	if (ns == NULL) {
		free(from);
		x->oom = 1;
		return;
	}
	res->states = ns;
	ns[res->n_states].chain_id = strdup(chain_id);
	ns[res->n_states].from = from;
	ns[res->n_states].to = strdup(to);
	res->n_states++;
	if (ns[res->n_states - 1].chain_id == NULL || ns[res->n_states - 1].to == NULL)
		x->oom = 1;
}

static const char *const chain_allowed[] = { "id",	   "key_format", "sign_extensions",
					     "state_file", "state_hook", NULL };

/* BIP-173 human-readable part, lower case (what cfg and enc_bech32 accept). */
static int prefix_ok(struct mctx *x, const struct toml_value *kf, const char *key, const char *p)
{
	size_t n;

	if (p == NULL)
		return 1;
	n = strlen(p);
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 33 || p[i] > 126 || (p[i] >= 'A' && p[i] <= 'Z'))
			n = 0;
	}
	if (n >= 1 && n <= 83)
		return 1;
	merr(x, toml_line(toml_get(kf, key)), "key_format",
	     "%s \"%s\" is not a lower-case bech32 prefix", key, p);
	return 0;
}

static void convert_key_format(struct mctx *x, const struct toml_value *c, const char *where)
{
	static const char *const kf_allowed[] = { "type", "account_key_prefix",
						  "consensus_key_prefix", NULL };
	const struct toml_value *kf = toml_get(c, "key_format");
	const char *type, *acc, *cons;

	if (kf == NULL) {
		merr(x, toml_line(c), where, "'key_format' is missing (required by tmkms)");
		return;
	}
	if (toml_type(kf) != TOML_TABLE) {
		merr(x, toml_line(kf), where,
		     "'key_format' must be a table like { type = \"bech32\", ... }");
		return;
	}
	check_keys(x, kf, "key_format", kf_allowed);
	type = get_str(x, kf, "key_format", "type", 1);
	acc = get_str(x, kf, "key_format", "account_key_prefix", 0);
	cons = get_str(x, kf, "key_format", "consensus_key_prefix", 0);
	if (type == NULL || !prefix_ok(x, kf, "account_key_prefix", acc) ||
	    !prefix_ok(x, kf, "consensus_key_prefix", cons))
		return;
	if (strcmp(type, "bech32") == 0) {
		if (acc == NULL || cons == NULL)
			merr(x, toml_line(kf), "key_format",
			     "type \"bech32\" needs account_key_prefix and consensus_key_prefix");
	} else if (strcmp(type, "cosmos-json") != 0 && strcmp(type, "hex") != 0) {
		merr(x, toml_line(kf), "key_format.type",
		     "\"%s\" is not one of \"bech32\", \"cosmos-json\", \"hex\"", type);
		return;
	}
	out(x, "    key_format = ");
	out_str(x, type);
	out(x, ";\n");
	if (acc != NULL) {
		out(x, "    account_key_prefix = ");
		out_str(x, acc);
		out(x, ";\n");
	}
	if (cons != NULL) {
		out(x, "    consensus_key_prefix = ");
		out_str(x, cons);
		out(x, ";\n");
	}
}

static void convert_chain(struct mctx *x, const struct toml_value *c, size_t idx)
{
	char where[64], sname[128];
	const char *id, *sf;
	const struct toml_value *se;
	char *from;
	int b = 0;

	(void)snprintf(where, sizeof(where), "chain[%zu]", idx);
	check_keys(x, c, where, chain_allowed);
	if ((id = get_str(x, c, where, "id", 1)) == NULL)
		return;
	if (strlen(id) > 50 || strpbrk(id, " \t") != NULL) {
		merr(x, toml_line(toml_get(c, "id")), where,
		     "chain id \"%s\" is not valid (at most 50 bytes, no white space)", id);
		return;
	}
	if (chain_index(x, id) >= 0) {
		merr(x, toml_line(c), where, "chain \"%s\" is declared twice", id);
		return;
	}
	if (x->n_chains == sizeof(x->chains) / sizeof(x->chains[0])) {
		merr(x, toml_line(c), where, "too many chains");
		return;
	}
	x->chain_line[x->n_chains] = toml_line(c);
	x->chains[x->n_chains++] = id;
	if (migrate_state_name(id, sname, sizeof(sname)) != KMS_OK) {
		merr(x, toml_line(c), where, "chain id too long");
		return;
	}
	out(x, "  {\n    id = ");
	out_str(x, id);
	out(x, ";\n");
	convert_key_format(x, c, where);
	out(x, "    state_file = ");
	out_str(x, sname);
	out(x, ";\n");
	if ((se = toml_get(c, "sign_extensions")) != NULL) {
		if (toml_bool(se, &b) != KMS_OK)
			merr(x, toml_line(se), where, "'sign_extensions' must be true or false");
		out(x, "    sign_extensions = %s;\n", b ? "true" : "false");
	}
	out(x, "  }");
	/* tmkms's default state file is <chain_id>_priv_validator_state.json in its CWD. */
	if ((sf = get_str(x, c, where, "state_file", 0)) != NULL) {
		from = resolve(x, sf);
	} else {
		char def[128];

		(void)snprintf(def, sizeof(def), "%s_priv_validator_state.json", id);
		from = cli_path_join(x->o->tmkms_cwd, def);
		if (from == NULL)
			x->oom = 1;
		else
			mnote(x, "chain %s: no state_file given; tmkms used %s", id, from);
	}
	if (from != NULL)
		add_state(x, id, from, sname);
	if (toml_get(c, "state_hook") != NULL)
		mnote(x,
		      "chain %s: state_hook (line %u) is not carried over: run the hook's command "
		      "yourself before the first start and feed its height to `p11kms state init "
		      "--height H` (or import the node's priv_validator_state.json with `p11kms state "
		      "import`)",
		      id, toml_line(toml_get(c, "state_hook")));
}

/* Writes chain_ids = [ ... ]; and marks each chain as served. 0 if invalid. */
static int convert_chain_ids(struct mctx *x, const struct toml_value *t, const char *where)
{
	const struct toml_value *a = toml_get(t, "chain_ids");
	size_t n = toml_array_len(a);

	if (a == NULL || toml_type(a) != TOML_ARRAY || n == 0) {
		merr(x, a ? toml_line(a) : toml_line(t), where,
		     "'chain_ids' must be a non-empty array of chain ids");
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const char *id = toml_string(toml_array_at(a, i));
		int ci;

		if (id == NULL) {
			merr(x, toml_line(a), where, "'chain_ids' entries must be strings");
			return 0;
		}
		if ((ci = chain_index(x, id)) < 0) {
			merr(x, toml_line(a), where, "chain \"%s\" has no [[chain]] entry", id);
			return 0;
		}
		if (x->chain_has_key[ci]) {
			merr(x, toml_line(a), where,
			     "chain \"%s\" already has a consensus key (one key per chain)", id);
			return 0;
		}
		x->chain_has_key[ci] = 1;
	}
	out(x, "    chain_ids = [ ");
	for (size_t i = 0; i < n; i++) {
		out(x, i ? ", " : "");
		out_str(x, toml_string(toml_array_at(a, i)));
	}
	out(x, " ];\n");
	return 1;
}

static int key_type_ok(struct mctx *x, const struct toml_value *t, const char *where,
		       const char *field)
{
	const char *kt = get_str(x, t, where, field, 0);

	if (kt == NULL || strcmp(kt, "consensus") == 0)
		return 1;
	if (strcmp(kt, "account") == 0)
		merr(x, toml_line(toml_get(t, field)), where,
		     "account (secp256k1) keys are not supported: p11kms signs consensus messages "
		     "with Ed25519 keys only; drop this entry");
	else
		merr(x, toml_line(toml_get(t, field)), where,
		     "%s \"%s\" is not \"consensus\" or \"account\"", field, kt);
	return 0;
}

static int convert_softsign(struct mctx *x, const struct toml_value *s, size_t idx, int first)
{
	static const char *const allowed[] = { "chain_ids", "key_type", "key_format", "path",
					       NULL };
	char where[64];
	const char *path, *kf;
	char *abs;

	(void)snprintf(where, sizeof(where), "providers.softsign[%zu]", idx);
	check_keys(x, s, where, allowed);
	if (!key_type_ok(x, s, where, "key_type"))
		return first;
	kf = get_str(x, s, where, "key_format", 0);
	if (kf != NULL && strcmp(kf, "base64") != 0 && strcmp(kf, "json") != 0) {
		merr(x, toml_line(toml_get(s, "key_format")), where,
		     "key_format \"%s\" is not \"base64\" or \"json\"", kf);
		return first;
	}
	if ((path = get_str(x, s, where, "path", 1)) == NULL)
		return first;
	out(x, "%s  {\n", first ? "" : ",\n");
	(void)convert_chain_ids(x, s, where);
	if ((abs = resolve(x, path)) != NULL) {
		out(x, "    softsign = ");
		out_str(x, abs);
		out(x, ";\n");
		mnote(x,
		      "softsign key %s: used as is (%s; p11kms reads tmkms's key files, including "
		      "priv_validator_key.json)",
		      abs,
		      kf != NULL && strcmp(kf, "json") == 0 ? "key_format json" : "base64 seed");
		free(abs);
	}
	out(x, "  }");
	return 0;
}

static void yubihsm_notes(struct mctx *x, const struct toml_value *y, const char *where,
			  const char *pinfile)
{
	const struct toml_value *auth = toml_get(y, "auth"), *ad = toml_get(y, "adapter");
	int64_t authkey = 0;
	const char *atype = ad ? toml_string(toml_get(ad, "type")) : NULL;

	if (auth == NULL || toml_type(auth) != TOML_TABLE ||
	    toml_int(toml_get(auth, "key"), &authkey) != KMS_OK || authkey < 1 ||
	    authkey > 0xffff) {
		merr(x, auth ? toml_line(auth) : toml_line(y), where,
		     "'auth' must be { key = <auth key id>, password_file = \"...\" }");
		return;
	}
	mnote(x,
	      "YubiHSM2 PIN: write the file %s (mode 0600) holding the auth key id as 4 hex "
	      "digits followed by its password, e.g. %04llx<password> for auth key %lld: "
	      "yubihsm_pkcs11.so takes the PIN in that form",
	      pinfile, (unsigned long long)authkey, (long long)authkey);
	if (get_str(x, auth, "auth", "password_file", 0) != NULL)
		mnote(x,
		      "YubiHSM2 PIN: the password comes from %s (tmkms's password_file): prefix it "
		      "with %04llx; the file is not copied for you",
		      toml_string(toml_get(auth, "password_file")), (unsigned long long)authkey);
	if (toml_get(auth, "password") != NULL)
		mnote(x,
		      "YubiHSM2 PIN: tmkms.toml holds the password inline (line %u); it is not "
		      "copied into p11kms.conf: PINs live only in a 0600 file. Remove it from "
		      "tmkms.toml once migrated",
		      toml_line(toml_get(auth, "password")));
	if (atype != NULL && strcmp(atype, "http") == 0) {
		const char *addr = toml_string(toml_get(ad, "addr"));

		if (addr == NULL)
			addr = "tcp://127.0.0.1:12345";
		if (strncmp(addr, "tcp://", 6) == 0)
			addr += 6;
		mnote(x,
		      "YubiHSM2 connector: set connector=http://%s in yubihsm_pkcs11.conf "
		      "(tmkms's adapter addr)",
		      addr);
	} else
		mnote(x,
		      "YubiHSM2 connector: tmkms used USB directly; set connector=yhusb:// in "
		      "yubihsm_pkcs11.conf (or run yubihsm-connector and use http://127.0.0.1:12345)");
	if (toml_get(y, "serial_number") != NULL)
		mnote(x,
		      "YubiHSM2 serial_number %s: add serial=<token serial> to the URI if several "
		      "devices are attached (see `p11kms keys list`)",
		      toml_string(toml_get(y, "serial_number")) ?
			      toml_string(toml_get(y, "serial_number")) :
			      "?");
	if (toml_get(y, "connector_server") != NULL)
		mnote(x,
		      "YubiHSM2 connector_server is a tmkms feature: run yubihsm-connector instead "
		      "so yubihsm-shell can reach the device");
	mnote(x, "YubiHSM2 needs yubihsm-shell >= 2.6.0 (CKM_EDDSA in yubihsm_pkcs11.so); the "
		 "'yubihsm2' profile maps tmkms key N to CKA_ID N as 2 bytes big-endian");
}

static int convert_yubihsm_key(struct mctx *x, const struct toml_value *k, const char *where,
			       const char *pinfile, int first)
{
	static const char *const allowed[] = { "chain_ids", "key", "type", NULL };
	int64_t num = 0;
	char uri[1024];

	if (toml_type(k) != TOML_TABLE) {
		merr(x, toml_line(k), where,
		     "entries must be tables { chain_ids = [..], key = N }");
		return first;
	}
	check_keys(x, k, where, allowed);
	if (!key_type_ok(x, k, where, "type"))
		return first;
	if (toml_int(toml_get(k, "key"), &num) != KMS_OK || num < 1 || num > 0xffff) {
		merr(x, toml_line(k), where, "'key' must be a YubiHSM object id 1..65535");
		return first;
	}
	/* CKA_ID = the object id as 2 bytes big-endian (yubihsm_pkcs11 get_id_attribute). */
	(void)snprintf(
		uri, sizeof(uri),
		"pkcs11:token=YubiHSM;id=%%%02X%%%02X;type=private?module-name=yubihsm_pkcs11"
		"&pin-source=%s",
		(unsigned)((num >> 8) & 0xff), (unsigned)(num & 0xff), pinfile);
	out(x, "%s  {\n", first ? "" : ",\n");
	(void)convert_chain_ids(x, k, where);
	out(x, "    uri = ");
	out_str(x, uri);
	out(x, ";\n    profile = \"yubihsm2\";\n  }");
	mnote(x, "YubiHSM2 key 0x%04llx -> %s", (unsigned long long)num, uri);
	return 0;
}

static int convert_yubihsm(struct mctx *x, const struct toml_value *y, size_t idx, int first)
{
	static const char *const allowed[] = { "adapter",	   "auth", "keys", "serial_number",
					       "connector_server", NULL };
	const struct toml_value *keys = toml_get(y, "keys");
	char where[64], pname[48];
	char *pinfile;

	(void)snprintf(where, sizeof(where), "providers.yubihsm[%zu]", idx);
	check_keys(x, y, where, allowed);
	if (idx == 0)
		(void)snprintf(pname, sizeof(pname), "yubihsm.pin");
	else
		(void)snprintf(pname, sizeof(pname), "yubihsm-%zu.pin", idx);
	if ((pinfile = cli_path_join(x->o->out_dir, pname)) == NULL) {
		x->oom = 1;
		return first;
	}
	yubihsm_notes(x, y, where, pinfile);
	if (keys != NULL && toml_type(keys) != TOML_ARRAY)
		merr(x, toml_line(keys), where, "'keys' must be an array of { chain_ids, key }");
	for (size_t i = 0; i < toml_array_len(keys); i++)
		first = convert_yubihsm_key(x, toml_array_at(keys, i), where, pinfile, first);
	free(pinfile);
	return first;
}

static void refuse_provider(struct mctx *x, const struct toml_value *prov, const char *name)
{
	const struct toml_value *v = toml_get(prov, name);

	if (v == NULL)
		return;
	if (strcmp(name, "ledgertm") == 0)
		merr(x, toml_line(v), "providers.ledgertm",
		     "Ledger devices are not supported by p11kms: move the consensus key to a "
		     "PKCS#11 token (YubiHSM2, or SoftHSM2 for testing) with `p11kms import`, or "
		     "keep tmkms for this chain");
	else
		merr(x, toml_line(v), "providers.fortanixdsm",
		     "Fortanix DSM is not supported as a tmkms-style provider: use Fortanix's "
		     "PKCS#11 library through a keys entry with a pkcs11: URI, or keep tmkms");
}

static void convert_providers(struct mctx *x, const struct toml_value *root)
{
	static const char *const allowed[] = { "softsign", "yubihsm", "ledgertm", "fortanixdsm",
					       NULL };
	const struct toml_value *prov = toml_get(root, "providers"), *ss, *yh;
	int first = 1;

	if (prov == NULL || toml_type(prov) != TOML_TABLE) {
		merr(x, prov ? toml_line(prov) : 1, "providers",
		     "missing: tmkms.toml needs a [providers] section with the signing keys");
		return;
	}
	check_keys(x, prov, "providers", allowed);
	refuse_provider(x, prov, "ledgertm");
	refuse_provider(x, prov, "fortanixdsm");
	out(x, "keys = (\n");
	ss = get_aot(x, prov, "softsign");
	for (size_t i = 0; i < toml_array_len(ss); i++)
		first = convert_softsign(x, toml_array_at(ss, i), i, first);
	yh = get_aot(x, prov, "yubihsm");
	for (size_t i = 0; i < toml_array_len(yh); i++)
		first = convert_yubihsm(x, toml_array_at(yh, i), i, first);
	out(x, "%s);\n\n", first ? "" : "\n");
	for (size_t i = 0; i < x->n_chains; i++)
		if (!x->chain_has_key[i])
			merr(x, x->chain_line[i], "chain",
			     "chain \"%s\" has no consensus key in any provider: add its id to the "
			     "chain_ids of a [[providers.softsign]] or [[providers.yubihsm]] key",
			     x->chains[i]);
}

static const char *map_protocol(struct mctx *x, const struct toml_value *v, const char *where)
{
	const struct toml_value *pv = toml_get(v, "protocol_version");
	const char *s = toml_string(pv);

	if (pv == NULL) {
		mnote(x,
		      "%s: no protocol_version: tmkms 0.15 defaults to v0.38; this config says "
		      "\"auto\", which serves v0.38 nodes as tmkms did, and v0.34, v0.37 and v1 "
		      "nodes too",
		      where);
		return "auto";
	}
	if (s == NULL) {
		merr(x, toml_line(pv), where, "'protocol_version' must be a string");
		return NULL;
	}
	if (strcmp(s, "v0.34") == 0 || strcmp(s, "v0.37") == 0 || strcmp(s, "v0.38") == 0 ||
	    strcmp(s, "v1") == 0)
		return s;
	if (strcmp(s, "legacy") == 0 || strcmp(s, "v0.33") == 0)
		merr(x, toml_line(pv), where,
		     "protocol_version \"%s\" (Tendermint <= 0.33, amino) is not supported: p11kms "
		     "speaks the protobuf privval protocol of Tendermint/CometBFT 0.34 and later",
		     s);
	else
		merr(x, toml_line(pv), where,
		     "protocol_version \"%s\" is not one of \"v0.34\", \"v0.38\" (tmkms) or \"v0.37\", "
		     "\"v1\"",
		     s);
	return NULL;
}

static void convert_validator(struct mctx *x, const struct toml_value *v, size_t idx, int first)
{
	static const char *const allowed[] = {
		"addr",	      "chain_id",   "reconnect",	"timeout",
		"secret_key", "max_height", "protocol_version", NULL
	};
	char where[64];
	const char *chain, *addr, *sk, *proto;
	const struct toml_value *t;
	struct net_addr na;
	char why[160] = "invalid address";
	int64_t n;
	int b = 1;

	(void)snprintf(where, sizeof(where), "validator[%zu]", idx);
	check_keys(x, v, where, allowed);
	chain = get_str(x, v, where, "chain_id", 1);
	addr = get_str(x, v, where, "addr", 1);
	sk = get_str(x, v, where, "secret_key", 0);
	proto = map_protocol(x, v, where);
	if (chain != NULL && chain_index(x, chain) < 0)
		merr(x, toml_line(v), where, "chain_id \"%s\" has no [[chain]] entry", chain);
	if (addr != NULL && net_addr_parse(addr, &na, why, sizeof(why)) != KMS_OK) {
		merr(x, toml_line(toml_get(v, "addr")), where, "addr \"%s\": %s", addr, why);
		return;
	}
	if (chain == NULL || addr == NULL || proto == NULL)
		return;
	if (sk == NULL && strncmp(addr, "unix://", 7) != 0)
		merr(x, toml_line(v), where,
		     "'secret_key' is missing: tcp:// needs the identity key");
	out(x, "%s  {\n    chain_id = ", first ? "" : ",\n");
	out_str(x, chain);
	out(x, ";\n    addr = ");
	out_str(x, addr);
	out(x, ";\n");
	if (sk != NULL) {
		char *abs = resolve(x, sk);

		if (abs != NULL) {
			out(x, "    secret_key = ");
			out_str(x, abs);
			out(x, ";\n");
			free(abs);
		}
	}
	out(x, "    protocol_version = \"%s\";\n", proto);
	if ((t = toml_get(v, "reconnect")) != NULL && toml_bool(t, &b) != KMS_OK)
		merr(x, toml_line(t), where, "'reconnect' must be true or false");
	out(x, "    reconnect = %s;\n", b ? "true" : "false");
	if ((t = toml_get(v, "timeout")) != NULL) {
		if (toml_int(t, &n) != KMS_OK || n < 1 || n > 3600)
			merr(x, toml_line(t), where, "'timeout' must be seconds, 1..3600");
		else
			out(x, "    timeout = %lld;\n", (long long)n);
	}
	if ((t = toml_get(v, "max_height")) != NULL) {
		if (toml_int(t, &n) != KMS_OK || n < 1)
			merr(x, toml_line(t), where, "'max_height' must be a positive integer");
		else
			out(x, "    max_height = %lldL;\n", (long long)n);
	}
	out(x, "  }");
}

static void convert_validators(struct mctx *x, const struct toml_value *root)
{
	const struct toml_value *vs = get_aot(x, root, "validator");
	size_t n = toml_array_len(vs);

	out(x, "validators = (\n");
	for (size_t i = 0; i < n; i++)
		convert_validator(x, toml_array_at(vs, i), i, i == 0);
	out(x, "%s);\n", n ? "\n" : "");
	if (n == 0)
		mnote(x,
		      "no [[validator]] entries: add one per node (addr = its priv_validator_laddr)");
}

static void convert_root(struct mctx *x, const struct toml_value *root)
{
	static const char *const allowed[] = { "chain", "providers", "validator", "tx_signer",
					       NULL };
	const struct toml_value *chains;

	check_keys(x, root, "(top level)", allowed);
	if (toml_get(root, "tx_signer") != NULL)
		merr(x, toml_line(toml_get(root, "tx_signer")), "tx_signer",
		     "transaction signing (tmkms <= 0.12) is not supported: p11kms signs only "
		     "consensus messages; remove this section and sign transactions elsewhere");
	out(x,
	    "# p11kms configuration converted from %s by `p11kms migrate`.\n"
	    "# Schema: docs/config.md. Relative paths resolve against this file's directory.\n\n",
	    x->o->src_name);
	out(x, "chains = (\n");
	chains = get_aot(x, root, "chain");
	for (size_t i = 0; i < toml_array_len(chains); i++) {
		out(x, i ? ",\n" : "");
		convert_chain(x, toml_array_at(chains, i), i);
	}
	out(x, "%s);\n\n", toml_array_len(chains) ? "\n" : "");
	if (toml_array_len(chains) == 0)
		merr(x, 1, "chain", "no [[chain]] entries");
	convert_providers(x, root);
	convert_validators(x, root);
}

int migrate_convert(const uint8_t *p, size_t len, const struct migrate_opts *o,
		    struct migrate_result **outp)
{
	struct migrate_result *res;
	struct toml_doc *doc = NULL;
	struct mctx x = { .o = o };
	char err[256];
	int r;

	*outp = NULL;
	if ((res = calloc(1, sizeof(*res))) == NULL)
		return KMS_ERR_ALLOC;
	x.res = res;
	if ((res->conf = kbuf_new(MIGRATE_TEXT_MAX)) == NULL ||
	    (res->notes = kbuf_new(MIGRATE_TEXT_MAX)) == NULL ||
	    (res->errors = kbuf_new(MIGRATE_TEXT_MAX)) == NULL) {
		migrate_result_free(res);
		return KMS_ERR_ALLOC;
	}
	r = toml_parse(p, len, &doc, err, sizeof(err));
	if (r == KMS_ERR_ALLOC) {
		migrate_result_free(res);
		return r;
	}
	if (r != KMS_OK) {
		x.nerr++;
		if (cli_bprintf(res->errors, "%s: %s\n", o->src_name, err) != KMS_OK)
			x.oom = 1;
	} else {
		convert_root(&x, toml_root(doc));
	}
	toml_free(doc);
	if (x.oom) {
		migrate_result_free(res);
		return KMS_ERR_ALLOC;
	}
	*outp = res;
	return x.nerr ? KMS_ERR_CONFIG : KMS_OK;
}

void migrate_result_free(struct migrate_result *res)
{
	if (res == NULL)
		return;
	kbuf_free(res->conf);
	kbuf_free(res->notes);
	kbuf_free(res->errors);
	for (size_t i = 0; i < res->n_states; i++) {
		free(res->states[i].chain_id);
		free(res->states[i].from);
		free(res->states[i].to);
	}
	free(res->states);
	free(res);
}
