/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The start-up checks, one table for `start` and `doctor` (issue #17): a
 * config that start refuses can no longer pass doctor. Each check reports
 * findings with pf_report(); none writes anything or takes a lock, so doctor
 * runs beside a running signer and exits 0 when all is well (a probe).
 * Adding a check is one function and one table entry (pf_checks below).
 */
#include "p11kms/preflight.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "p11kms/audit.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/ha.h"
#include "p11kms/kbuf.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/sc.h"
#include "p11kms/slot.h"
#include "daemon_int.h"

const char *pf_status_name(enum pf_status s)
{
	switch (s) {
	case PF_OK:
		return "ok";
	case PF_WARN:
		return "warn";
	case PF_FAIL:
		return "fail";
	}
	return "?";
}

void pf_report(struct pf_ctx *pf, const char *check, enum pf_status status, int exit_code,
	       const char *subject, const char *fmt, ...)
{
	struct pf_result r;
	va_list ap;

	memset(&r, 0, sizeof(r));
	r.check = check;
	r.status = status;
	r.exit_code = status == PF_FAIL ? (exit_code != 0 ? exit_code : CMD_EXIT_FAIL) : 0;
	(void)snprintf(r.subject, sizeof(r.subject), "%s", subject != NULL ? subject : "");
	va_start(ap, fmt);
	if (vsnprintf(r.message, sizeof(r.message), fmt, ap) < 0)
		r.message[0] = '\0';
	va_end(ap);
	if (status == PF_OK)
		pf->n_ok++;
	else if (status == PF_WARN)
		pf->n_warn++;
	else {
		pf->n_fail++;
		if (pf->first_fail == 0)
			pf->first_fail = r.exit_code;
	}
	if (pf->emit != NULL)
		pf->emit(pf->emit_ctx, &r);
}

/* ---- helpers ---- */

int d_exit_for_slot_err(int r)
{
	switch (r) {
	case KMS_ERR_PERM:
		return CMD_EXIT_PERM;
	case KMS_ERR_FORMAT:
	case KMS_ERR_CONFIG:
		return CMD_EXIT_CONFIG;
	default:
		return CMD_EXIT_KEY;
	}
}

/* 1 for the first validators entry using its secret_key (an identity is checked once). */
static int first_use_of_identity(const struct cfg *c, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (c->validators[j].secret_key != NULL &&
		    strcmp(c->validators[j].secret_key, c->validators[i].secret_key) == 0)
			return 0;
	return 1;
}

/* A secret file (key, PIN): present and not readable by group or others. */
static void private_file(struct pf_ctx *pf, const char *check, const char *what, const char *path,
			 const char *create_hint)
{
	struct stat st;
	/* a missing file is ours to report (dfile_check_private would log it as an error too) */
	int r = stat(path, &st) != 0 && errno == ENOENT ? KMS_ERR_NOT_FOUND :
							  dfile_check_private(path);

	if (r == KMS_OK)
		pf_report(pf, check, PF_OK, 0, path, "%s %s: present, private (mode %04o)", what,
			  path, stat(path, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0600u);
	else if (r == KMS_ERR_PERM)
		pf_report(pf, check, PF_FAIL, CMD_EXIT_PERM, path,
			  "%s %s: readable by group or others: chmod 600 %s (mode %04o)", what,
			  path, path, stat(path, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0u);
	else if (r == KMS_ERR_NOT_FOUND)
		pf_report(pf, check, PF_FAIL, CMD_EXIT_KEY, path, "%s %s: missing: %s", what, path,
			  create_hint);
	else
		pf_report(pf, check, PF_FAIL, CMD_EXIT_KEY, path, "%s %s: %s", what, path,
			  kms_strerror(r));
}

/*
 * A softsign key file: private (private_file), and its content a key p11kms
 * reads (checked quietly: the reason goes into the one line). Caught here, a
 * broken file stops start before it opens and locks any state.
 */
static void key_file(struct pf_ctx *pf, const char *check, const char *what, const char *path,
		     const char *create_hint)
{
	struct keyfile_ed25519 k;
	char why[256];
	int before = pf->n_fail;

	private_file(pf, check, what, path, create_hint);
	if (pf->n_fail != before)
		return;
	memset(&k, 0, sizeof(k));
	why[0] = '\0';
	if (keyfile_load_quiet(path, &k, why, sizeof(why)) != KMS_OK)
		pf_report(pf, check, PF_FAIL, CMD_EXIT_KEY, path,
			  "%s %s: not a key file p11kms reads: %s", what, path,
			  why[0] ? why : "unreadable");
	keyfile_wipe(&k);
}

static int uses_chain(const struct cfg *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->n_validators; i++)
		if (strcmp(cfg->validators[i].chain_id, id) == 0)
			return 1;
	return 0;
}

/* The pin-source=... of a pkcs11: URI, percent-decoded, into out ("" if none). */
static void uri_pin_source(const char *uri, char *out, size_t cap)
{
	const char *q = strchr(uri, '?'), *p;
	size_t n = 0;

	out[0] = '\0';
	if (q == NULL || (p = strstr(q, "pin-source=")) == NULL)
		return;
	for (p += strlen("pin-source="); *p != '\0' && *p != '&' && n + 1 < cap; p++) {
		uint8_t b;
		size_t blen;

		if (*p == '%' && p[1] && p[2] && enc_hex_decode(p + 1, 2, &b, 1, &blen) == KMS_OK) {
			out[n++] = (char)b;
			p += 2;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
	if (strncmp(out, "file:", 5) == 0)
		memmove(out, out + 5, n - 4);
}

/* A token URI: parses, and its PIN source is private or its variable set. */
static void pin_of(struct pf_ctx *pf, const char *what, const char *uri, const char *pin_env)
{
	char pin[1024];

	if (slot_uri_validate(uri) != KMS_OK) {
		pf_report(pf, "pin_sources", PF_FAIL, CMD_EXIT_CONFIG, uri,
			  "%s %s: the URI does not parse or names no module-path", what, uri);
		return;
	}
	uri_pin_source(uri, pin, sizeof(pin));
	if (pin[0] != '\0')
		private_file(pf, "pin_sources", "PIN file", pin,
			     "write the PIN there (one line, mode 0600)");
	else if (pin_env != NULL && getenv(pin_env) == NULL)
		pf_report(pf, "pin_sources", PF_FAIL, CMD_EXIT_KEY, pin_env,
			  "%s: the PIN variable %s is not set in this environment (systemd: "
			  "EnvironmentFile=)",
			  what, pin_env);
	else if (pin_env == NULL)
		pf_report(pf, "pin_sources", PF_WARN, 0, uri,
			  "%s: no pin-source in the URI and no PIN variable: the token must not "
			  "need a login",
			  what);
}

/* ---- the checks ---- */

/* Anyone who can write the config can point the signer at another key or node. */
static void check_config_file(struct pf_ctx *pf)
{
	const char *p = pf->conf_path;
	struct stat st;

	if (stat(p, &st) != 0) {
		pf_report(pf, "config_file", PF_FAIL, CMD_EXIT_CONFIG, p,
			  "config %s: %s (give -c FILE, set P11KMS_CONFIG, or run `p11kms init`)",
			  p, errno == ENOENT ? "no such file" : strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		pf_report(pf, "config_file", PF_FAIL, CMD_EXIT_CONFIG, p,
			  "config %s: not a regular file", p);
		return;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		pf_report(pf, "config_file", PF_FAIL, CMD_EXIT_PERM, p,
			  "config %s is writable by group or others (mode %04o): chmod go-w %s", p,
			  (unsigned)(st.st_mode & 07777), p);
		return;
	}
	pf_report(pf, "config_file", PF_OK, 0, p,
		  "config %s: not writable by group or others (mode %04o)", p,
		  (unsigned)(st.st_mode & 07777));
}

static void check_config_parse(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;

	if (c == NULL) {
		pf_report(pf, "config_parse", PF_FAIL, CMD_EXIT_CONFIG, pf->conf_path,
			  "config %s does not load: %s", pf->conf_path,
			  pf->load_err[0] ? pf->load_err : "unknown error");
		return;
	}
	pf_report(pf, "config_parse", PF_OK, 0, c->path,
		  "config %s: parses (%zu chains, %zu keys, %zu validators)", c->path, c->n_chains,
		  c->n_keys, c->n_validators);
	if (c->n_validators == 0)
		pf_report(
			pf, "config_parse", PF_FAIL, CMD_EXIT_CONFIG, c->path,
			"no validators in %s: add validators = ( { chain_id = ...; addr = ...; } )",
			c->path);
	for (size_t i = 0; i < c->n_chains; i++)
		if (!uses_chain(c, c->chains[i].id))
			pf_report(pf, "config_parse", PF_WARN, 0, c->chains[i].id,
				  "chain %s (%s:%d) has no validators entry: not used",
				  c->chains[i].id, c->path, c->chains[i].line);
}

static void check_softsign_files(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;
	char what[128];

	for (size_t i = 0; i < c->n_keys; i++) {
		if (c->keys[i].kind != CFG_KEY_SOFTSIGN)
			continue;
		(void)snprintf(what, sizeof(what), "consensus key");
		key_file(pf, "softsign_files", what, c->keys[i].softsign,
			 "create it with `p11kms keygen --softsign PATH` or `p11kms import "
			 "priv_validator_key.json --softsign PATH`");
	}
	for (size_t i = 0; i < c->n_validators; i++) {
		const struct cfg_validator *v = &c->validators[i];

		if (v->net.scheme != NET_TCP || v->secret_key == NULL ||
		    strncmp(v->secret_key, "pkcs11:", 7) == 0)
			continue;
		if (first_use_of_identity(c, i))
			key_file(pf, "softsign_files", "identity key (secret_key)", v->secret_key,
				 "create it with `p11kms keygen --softsign PATH`");
	}
}

static void check_pin_sources(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;
	char what[128];

	for (size_t i = 0; i < c->n_keys; i++) {
		if (c->keys[i].kind != CFG_KEY_PKCS11)
			continue;
		(void)snprintf(what, sizeof(what), "key for %s", c->keys[i].chain_ids[0]);
		pin_of(pf, what, c->keys[i].uri, c->keys[i].pin_env);
	}
	for (size_t i = 0; i < c->n_validators; i++) {
		const struct cfg_validator *v = &c->validators[i];
		if (v->net.scheme == NET_TCP && v->secret_key != NULL &&
		    strncmp(v->secret_key, "pkcs11:", 7) == 0)
			pin_of(pf, "identity key (secret_key)", v->secret_key,
			       v->secret_key_pin_env);
	}
}

static void check_validators(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;

	for (size_t i = 0; i < c->n_validators; i++) {
		const struct cfg_validator *v = &c->validators[i];
		const struct cfg_chain *ch = cfg_chain_find(c, v->chain_id);
		char a[NET_HOST_MAX + NET_PATH_MAX + 32];

		net_addr_format(&v->net, a, sizeof(a));
		pf_report(
			pf, "validators", PF_OK, 0, a,
			"validator %s for %s: %s, protocol_version %s, redial every %u ms%s", a,
			v->chain_id,
			v->net.scheme == NET_UNIX ? "unix socket" : "Secret Connection",
			cfg_proto_name(v->protocol_version), v->redial_ms,
			v->net.scheme == NET_TCP && !v->net.has_node_id ?
				"; no node id in addr: the peer is not verified (usual: CometBFT's "
				"privval listener key changes at every start)" :
				"");
		if (ch == NULL || ch->sign_extensions)
			continue;
		if (v->protocol_version == CFG_PROTO_V0_38)
			pf_report(
				pf, "validators", PF_WARN, 0, a,
				"validator %s: protocol_version v0.38 with sign_extensions = false "
				"(chain %s, %s:%d): a v0.38.0-v0.38.10 node panics on every non-nil "
				"precommit without an extension signature, later ones once vote "
				"extensions are enabled",
				a, ch->id, c->path, ch->line);
		else if (v->protocol_version == CFG_PROTO_AUTO)
			pf_report(
				pf, "validators", PF_WARN, 0, a,
				"validator %s: sign_extensions = false (chain %s) only applies to "
				"protocol_version v0.38; auto signs the extension of every non-nil "
				"precommit the node does not mark skip_extension_signing",
				a, ch->id);
	}
}

/* The state of one chain: present, private, parses, its chain; and who holds its lock. */
/* The records as start will load them (both valid, this chain's), read without the lock. */
static int records_of(const struct cfg_chain *ch, long pid, struct guard_hrs *last)
{
	int r = guard_state_check_ro(ch->state_file, ch->id, last);

	/* a running signer may have been rewriting a record at that instant: look again */
	if (r == KMS_ERR_FORMAT && pid > 0)
		r = guard_state_check_ro(ch->state_file, ch->id, last);
	return r;
}

static void state_of(struct pf_ctx *pf, const struct cfg_chain *ch)
{
	struct guard_hrs hrs;
	char comm[64], lock[128];
	long pid = 0;
	struct stat sst;
	int r = stat(ch->state_file, &sst) != 0 && errno == ENOENT ?
			KMS_ERR_NOT_FOUND :
			dfile_check_private(ch->state_file);

	if (r == KMS_ERR_NOT_FOUND) {
		pf_report(pf, "state_file", PF_FAIL, CMD_EXIT_STATE, ch->state_file,
			  "state for %s: %s missing: `p11kms state import -c %s --chain %s "
			  "<node>/data/priv_validator_state.json` or `p11kms state init -c %s "
			  "--chain %s --height H`",
			  ch->id, ch->state_file, pf->conf_path, ch->id, pf->conf_path, ch->id);
		return;
	}
	if (r == KMS_ERR_PERM) {
		pf_report(pf, "state_file", PF_FAIL, CMD_EXIT_PERM, ch->state_file,
			  "state for %s: %s is readable by group or others: chmod 600 %s", ch->id,
			  ch->state_file, ch->state_file);
		return;
	}
	pf_lock_holder(ch->state_file, &pid, comm, sizeof(comm));
	if (pid > 0 && pf->mode == PF_START) {
		pf_report(pf, "state_file", PF_FAIL, CMD_EXIT_STATE, ch->state_file,
			  "state for %s: %s is locked by %s (pid %ld): a signer already runs for "
			  "this chain; stop it first",
			  ch->id, ch->state_file, comm[0] ? comm : "another process", pid);
		return;
	}
	if (r == KMS_OK)
		r = records_of(ch, pid, &hrs);
	if (r == KMS_ERR_FORMAT) {
		pf_report(pf, "state_file", PF_FAIL, CMD_EXIT_STATE, ch->state_file,
			  "state for %s: %s is refused (a record is invalid, or it is not a state "
			  "file: the line above says which): see `p11kms state repair -c %s "
			  "--chain %s`; never reset it blindly",
			  ch->id, ch->state_file, pf->conf_path, ch->id);
		return;
	}
	if (r != KMS_OK) {
		pf_report(pf, "state_file", PF_FAIL, CMD_EXIT_STATE, ch->state_file,
			  "state for %s: %s: %s (never reset it blindly: compare with the node's "
			  "priv_validator_state.json; `p11kms state show` tells more)",
			  ch->id, ch->state_file,
			  r == KMS_ERR_REFUSED ? "it is another chain's" : kms_strerror(r));
		return;
	}
	if (pid > 0)
		(void)snprintf(lock, sizeof(lock), "in use by %s (pid %ld)",
			       comm[0] ? comm : "another process", pid);
	else
		(void)snprintf(lock, sizeof(lock), "not locked (no signer running)");
	pf_report(pf, "state_file", pid > 0 && strcmp(comm, "p11kms") != 0 ? PF_WARN : PF_OK, 0,
		  ch->state_file, "state for %s: %s, last signed %" PRId64 "/%d/%s, %s", ch->id,
		  ch->state_file, hrs.height, (int)hrs.round, guard_step_name(hrs.step), lock);
}

/* #15: the filesystem under each used state file, as start checks it (guard_check_fs). */
static void check_state_fs(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;
	char msg[512];

	for (size_t i = 0; i < c->n_chains; i++) {
		const struct cfg_chain *ch = &c->chains[i];
		struct stat st;
		int r;

		if (!uses_chain(c, ch->id) || stat(ch->state_file, &st) != 0)
			continue; /* a missing state is state_file's finding */
		r = guard_check_fs(ch->state_file, ch->allow_volatile_state, msg, sizeof(msg));
		if (r == KMS_OK)
			pf_report(pf, "state_fs", PF_OK, 0, ch->state_file, "state for %s: %s %s",
				  ch->id, ch->state_file, msg);
		else
			pf_report(
				pf, "state_fs", PF_FAIL, CMD_EXIT_STATE, ch->state_file,
				"state for %s: %s %s (for tests only: allow_volatile_state = true "
				"in the chain, %s:%d)",
				ch->id, ch->state_file, msg, c->path, ch->line);
	}
}

static void check_state_files(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;

	for (size_t i = 0; i < c->n_chains; i++)
		if (uses_chain(c, c->chains[i].id))
			state_of(pf, &c->chains[i]);
}

/* Where start will log: the file's directory must let us create or append. */
static void check_log_file(struct pf_ctx *pf)
{
	const char *f = pf->cfg->log_file;
	char dir[4096];
	const char *slash;

	if (f == NULL)
		return;
	if (access(f, F_OK) == 0) {
		if (access(f, W_OK) == 0)
			pf_report(pf, "log_file", PF_OK, 0, f, "log.file %s: writable", f);
		else
			pf_report(pf, "log_file", PF_FAIL, CMD_EXIT_CONFIG, f,
				  "log.file %s: not writable by this user (%s:log.file)", f,
				  pf->cfg->path);
		return;
	}
	slash = strrchr(f, '/');
	(void)snprintf(dir, sizeof(dir), "%.*s", slash == NULL || slash == f ? 1 : (int)(slash - f),
		       slash == NULL ? "." : f);
	if (access(dir, W_OK | X_OK) == 0)
		pf_report(pf, "log_file", PF_OK, 0, f, "log.file %s: will be created", f);
	else
		pf_report(pf, "log_file", PF_FAIL, CMD_EXIT_CONFIG, f,
			  "log.file %s: cannot create it in %s (%s) (%s:log.file)", f, dir,
			  strerror(errno), pf->cfg->path);
}

/* softsign needs every key file registered before the module is initialised once. */
static void preload(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;
	const char **paths = calloc(c->n_keys + c->n_validators + 1, sizeof(char *));
	size_t n = 0;

	if (paths == NULL)
		return;
	for (size_t i = 0; i < c->n_keys; i++)
		if (c->keys[i].kind == CFG_KEY_SOFTSIGN &&
		    dfile_check_private(c->keys[i].softsign) == KMS_OK)
			paths[n++] = c->keys[i].softsign;
	for (size_t i = 0; i < c->n_validators; i++) {
		const char *k = c->validators[i].secret_key;
		if (c->validators[i].net.scheme == NET_TCP && k != NULL &&
		    strncmp(k, "pkcs11:", 7) != 0 && dfile_check_private(k) == KMS_OK)
			paths[n++] = k;
	}
	if (n > 0 && slot_softsign_preload(paths, n) != KMS_OK)
		n = 0; /* each open below reports its own error */
	free(paths);
}

/* The public key as the chain shows it (bech32 with its prefix, else hex). */
static void display_key(const struct cfg_chain *ch, const uint8_t pub[32], char *out, size_t cap)
{
	if (ch != NULL && ch->consensus_key_prefix != NULL &&
	    enc_ed25519_bech32_pub(ch->consensus_key_prefix, pub, out, cap) == KMS_OK)
		return;
	if (enc_hex_encode_upper(pub, 32, out, cap) != KMS_OK)
		out[0] = '\0';
}

static void hygiene_of(struct pf_ctx *pf, const struct cfg_key *k, struct slot *s)
{
	struct slot_hygiene h;

	if (k->kind == CFG_KEY_SOFTSIGN) {
		pf_report(pf, "keys", PF_WARN, 0, k->softsign,
			  "key for %s: file key, plaintext on disk: whoever reads %s can sign (a "
			  "PKCS#11 token keeps the key unextractable: docs/hsm.md)",
			  k->chain_ids[0], k->softsign);
		return;
	}
	if (slot_hygiene(s, &h) != KMS_OK)
		return;
	pf_report(pf, "keys", h.extractable == 1 || h.sensitive == 0 ? PF_WARN : PF_OK, 0, k->uri,
		  "key for %s: %s", k->chain_ids[0], h.verdict);
}

static void check_keys(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;

	preload(pf);
	for (size_t i = 0; i < c->n_keys; i++) {
		const struct cfg_key *k = &c->keys[i];
		const char *where = k->kind == CFG_KEY_SOFTSIGN ? k->softsign : k->uri;
		struct slot_opts so = { .profile = k->profile,
					.pin_env = k->pin_env,
					.profiles_dir = pf->profiles_dir,
					.timeout_ms = k->kind == CFG_KEY_PKCS11 ? k->timeout_ms : 0 };
		struct slot *s = NULL;
		char disp[ENC_BECH32_MAX + 1], why[512];
		uint8_t pub[32];
		/* the whole uri list, as start opens it (#16): a backup with another key fails */
		int r = k->kind == CFG_KEY_SOFTSIGN ?
				slot_open_softsign(k->softsign, &so, &s) :
				slot_open_set((const char *const *)k->uris, k->n_uris, &so, &s);

		if (r != KMS_OK) {
			pf_report(
				pf, "keys", PF_FAIL, d_exit_for_slot_err(r), where,
				"key for %s: %s: %s (module loaded? token present? PIN right? key "
				"there? `p11kms keys list --slot URI` shows what the token holds)",
				k->chain_ids[0], where, kms_strerror(r));
			continue;
		}
		slot_pubkey(s, pub);
		display_key(cfg_chain_find(c, k->chain_ids[0]), pub, disp, sizeof(disp));
		if (slot_key_type(s) != SLOT_KEY_ED25519)
			pf_report(pf, "keys", PF_FAIL, CMD_EXIT_KEY, where,
				  "key for %s: %s is not Ed25519", k->chain_ids[0], where);
		else
			pf_report(pf, "keys", PF_OK, 0, where,
				  "key for %s: found, Ed25519, test signature verified: %s",
				  k->chain_ids[0], disp);
		if (slot_backups_unreachable(s, why, sizeof(why)) > 0) /* a warning: start works */
			pf_report(pf, "keys", PF_WARN, 0, where,
				  "key for %s: %s (start works without it)", k->chain_ids[0], why);
		hygiene_of(pf, k, s);
		slot_free(s);
	}
}

static void check_identity_keys(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;

	for (size_t i = 0; i < c->n_validators; i++) {
		const struct cfg_validator *v = &c->validators[i];
		struct slot_opts so = { .pin_env = v->secret_key_pin_env,
					.profiles_dir = pf->profiles_dir,
					.timeout_ms = CFG_DEFAULT_TOKEN_TIMEOUT_MS /* as start */ };
		struct slot *s = NULL;
		uint8_t pub[32], id[20];
		char hex[41];
		int r;

		if (v->net.scheme != NET_TCP || v->secret_key == NULL ||
		    !first_use_of_identity(c, i))
			continue;
		r = strncmp(v->secret_key, "pkcs11:", 7) == 0 ?
			    slot_open(v->secret_key, &so, &s) :
			    slot_open_softsign(v->secret_key, &so, &s);
		if (r != KMS_OK) {
			pf_report(pf, "identity_keys", PF_FAIL, CMD_EXIT_KEY, v->secret_key,
				  "identity key %s: %s (%s:%d)", v->secret_key, kms_strerror(r),
				  c->path, v->line);
			continue;
		}
		slot_pubkey(s, pub);
		if (sc_node_id(pub, id) == KMS_OK &&
		    enc_hex_encode(id, 20, hex, sizeof(hex)) == KMS_OK)
			pf_report(pf, "identity_keys", PF_OK, 0, v->secret_key,
				  "identity key %s: Ed25519, KMS node ID %s", v->secret_key, hex);
		slot_free(s);
	}
}

/* The audit log (#19): its checks report through a line callback. */
static void audit_line(void *ctx, int exit_code, const char *line)
{
	struct pf_ctx *pf = ctx;
	const struct cfg_audit *ac = &pf->cfg->audit;

	pf_report(pf, "audit", exit_code == 0 ? PF_OK : PF_FAIL, exit_code,
		  ac->enabled && ac->dir != NULL ? ac->dir : "audit", "%s", line);
}

static void check_audit(struct pf_ctx *pf)
{
	audit_doctor(pf->cfg, audit_line, pf);
}

/* #20: one chain's etcd cluster (ha_preflight), and the verdict by who runs it. */
struct ha_pf {
	struct pf_ctx *pf;
	const char *chain_id;
};

static void ha_finding(void *ctx, enum ha_finding kind, int err, const char *line)
{
	struct ha_pf *h = ctx;

	if (kind == HA_FIND_OK)
		pf_report(h->pf, "ha", PF_OK, 0, h->chain_id, "%s", line);
	else if (kind == HA_FIND_LOCAL) /* start could not attach the cluster either */
		pf_report(h->pf, "ha", PF_FAIL,
			  err == KMS_ERR_PERM ? CMD_EXIT_PERM : CMD_EXIT_CONFIG, h->chain_id,
			  "%s", line);
	else if (h->pf->mode == PF_START) /* start runs; new signatures refused until it heals */
		pf_report(h->pf, "ha", PF_WARN, 0, h->chain_id,
			  "%s (new signatures are refused until it is fixed: docs/ha.md)", line);
	else /* doctor as a probe: this signer cannot sign anything new */
		pf_report(h->pf, "ha", PF_FAIL, CMD_EXIT_STATE, h->chain_id, "%s", line);
}

static void check_ha(struct pf_ctx *pf)
{
	const struct cfg *c = pf->cfg;

	for (size_t i = 0; i < c->n_chains; i++) {
		const struct cfg_chain *ch = &c->chains[i];
		struct ha_pf h = { pf, ch->id };
		struct guard_hrs last;

		if (ch->ha == NULL || !uses_chain(c, ch->id))
			continue;
		if (ha_global_init() != KMS_OK) {
			pf_report(pf, "ha", PF_FAIL, CMD_EXIT_FAIL, ch->id,
				  "ha for %s: libcurl does not initialise", ch->id);
			continue;
		}
		/* read without the lock; an unreadable state is state_file's finding */
		int have = guard_state_check_ro(ch->state_file, ch->id, &last) == KMS_OK;
		if (ha_preflight(ch, have ? &last : NULL, ha_finding, &h) != KMS_OK)
			kms_log_debug("ha preflight of chain %s: not healthy (the findings say why)",
				      ch->id);
	}
}

/*
 * The list. start runs the PF_START entries before it opens anything it keeps
 * (it then opens the keys itself, so the deep key checks are doctor's only).
 * Others add theirs here: one function above, one line below.
 */
const struct pf_check pf_checks[] = {
	{ "config_file", "the config exists and is not writable by group or others",
	  PF_START | PF_DOCTOR, 0, check_config_file },
	{ "config_parse", "the config parses; it has validators; every chain is used",
	  PF_START | PF_DOCTOR, 0, check_config_parse },
	{ "softsign_files", "softsign key files (consensus, identity) exist, are private, parse",
	  PF_START | PF_DOCTOR, 1, check_softsign_files },
	{ "pin_sources", "token URIs parse; PIN files are private, PIN variables set",
	  PF_START | PF_DOCTOR, 1, check_pin_sources },
	{ "validators", "validator addresses, protocol version, extension settings",
	  PF_START | PF_DOCTOR, 1, check_validators },
	{ "state_file",
	  "each used chain's state exists, is private, parses, is its chain's; "
	  "who holds its lock",
	  PF_START | PF_DOCTOR, 1, check_state_files },
	{ "state_fs", "each used state file is on a filesystem that can keep it (#15)",
	  PF_START | PF_DOCTOR, 1, check_state_fs },
	{ "log_file", "log.file can be written", PF_START | PF_DOCTOR, 1, check_log_file },
	{ "keys", "each key opens (module, token, PIN), is Ed25519, signs; its hygiene", PF_DOCTOR,
	  1, check_keys },
	{ "identity_keys", "each identity key opens; its KMS node ID", PF_DOCTOR, 1,
	  check_identity_keys },
	{ "audit", "the audit log: directory, a running writer's condition, the newest file",
	  PF_DOCTOR, 1, check_audit },
	{ "ha", "with ha (#20): etcd endpoints answer (TLS), a quorum, the cluster mark not behind",
	  PF_START | PF_DOCTOR, 1, check_ha },
	{ NULL, NULL, 0, 0, NULL },
};

int pf_run(struct pf_ctx *pf)
{
	int r;

	pf->first_fail = 0;
	pf->n_ok = pf->n_warn = pf->n_fail = 0;
	pf->load_err[0] = '\0';
	pf->cfg = NULL;
	r = cfg_load(pf->conf_path, &pf->cfg, pf->load_err, sizeof(pf->load_err));
	if (r != KMS_OK && pf->load_err[0] == '\0')
		(void)snprintf(pf->load_err, sizeof(pf->load_err), "config %s: %s", pf->conf_path,
			       kms_strerror(r));
	for (const struct pf_check *c = pf_checks; c->id != NULL; c++) {
		if (!(c->modes & (unsigned)pf->mode))
			continue;
		if (c->needs_config && pf->cfg == NULL)
			continue;
		c->fn(pf);
	}
	return pf->first_fail;
}

/* ---- who holds an flock ---- */

void pf_lock_holder(const char *path, long *pid, char *comm, size_t cap)
{
	struct stat st;
	char line[256];
	FILE *f;

	*pid = 0;
	if (cap > 0)
		comm[0] = '\0';
	if (stat(path, &st) != 0 || (f = fopen("/proc/locks", "re")) == NULL)
		return;
	/* "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": device in hex, inode decimal */
	while (fgets(line, sizeof(line), f) != NULL) {
		char type[16], adv[16], mode[16];
		unsigned maj, min;
		unsigned long long ino;
		long p;

		if (sscanf(line, "%*[^:]: %15s %15s %15s %ld %x:%x:%llu", type, adv, mode, &p, &maj,
			   &min, &ino) != 7)
			continue;
		if (strcmp(type, "FLOCK") != 0 || ino != (unsigned long long)st.st_ino ||
		    maj != major(st.st_dev) || min != minor(st.st_dev) || p <= 0)
			continue;
		*pid = p;
		break;
	}
	(void)fclose(f);
	if (*pid > 0 && cap > 0) {
		char cp[64];
		(void)snprintf(cp, sizeof(cp), "/proc/%ld/comm", *pid);
		if ((f = fopen(cp, "re")) != NULL) {
			if (fgets(comm, (int)cap, f) != NULL)
				comm[strcspn(comm, "\n")] = '\0';
			(void)fclose(f);
		}
	}
}
