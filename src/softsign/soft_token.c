/* SPDX-License-Identifier: Apache-2.0 */
/* softsign tokens: the init string, loading key files, and writing new ones. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p11kms/kcrypto.h"
#include "soft_int.h"

#define SOFT_PATH_MAX 4096

/* Grows the key array without realloc: the old block holds seeds and is wiped. */
static CK_RV keys_push(struct soft_state *st, struct soft_key **out)
{
	if (st->nkeys == st->capkeys) {
		size_t cap = st->capkeys ? st->capkeys * 2 : 8;
		struct soft_key *n = calloc(cap, sizeof(*n));

		if (!n)
			return CKR_HOST_MEMORY;
		if (st->keys) {
			memcpy(n, st->keys, st->nkeys * sizeof(*n));
			kms_free_secret(st->keys, st->capkeys * sizeof(*n));
		}
		st->keys = n;
		st->capkeys = cap;
	}
	*out = &st->keys[st->nkeys];
	memset(*out, 0, sizeof(**out));
	return CKR_OK;
}

/* Label = file name without its last extension ("validator.key" -> "validator"). */
static void label_from_name(char *label, size_t cap, const char *name)
{
	const char *dot = strrchr(name, '.');
	size_t n = (dot && dot != name) ? (size_t)(dot - name) : strlen(name);

	if (n >= cap)
		n = cap - 1;
	memcpy(label, name, n);
	label[n] = '\0';
}

static CK_RV add_key(struct soft_state *st, CK_SLOT_ID slot, const char *name,
		     const struct keyfile_ed25519 *k)
{
	struct soft_key *sk;
	CK_RV rv = keys_push(st, &sk);

	if (rv != CKR_OK)
		return rv;
	sk->k = *k;
	sk->slot = slot;
	label_from_name(sk->label, sizeof(sk->label), name);
	if (keyfile_cka_id(k->pub, sk->id) != KMS_OK) {
		keyfile_wipe(&sk->k);
		return CKR_FUNCTION_FAILED;
	}
	st->nkeys++;
	st->slots[slot].nkeys++;
	return CKR_OK;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static void load_file_token(struct soft_state *st, CK_SLOT_ID slot)
{
	struct soft_slot *s = &st->slots[slot];
	struct keyfile_ed25519 k;
	char why[160];

	if (keyfile_load_quiet(s->path, &k, why, sizeof(why)) != KMS_OK) {
		(void)snprintf(s->desc, sizeof(s->desc), "softsign: %.54s", why);
		return;
	}
	if (add_key(st, slot, base_name(s->path), &k) == CKR_OK) {
		s->present = 1;
		(void)snprintf(s->desc, sizeof(s->desc), "softsign file: 1 key");
	} else {
		(void)snprintf(s->desc, sizeof(s->desc), "softsign: out of memory");
	}
	keyfile_wipe(&k);
}

/* Names the scan ignores: hidden files and dfile_'s temporary files. */
static int skip_name(const struct dirent *d)
{
	return d->d_name[0] != '.' && !strstr(d->d_name, ".tmp-");
}

static void load_dir_entry(struct soft_state *st, CK_SLOT_ID slot, const char *name)
{
	struct soft_slot *s = &st->slots[slot];
	struct keyfile_ed25519 k;
	char path[SOFT_PATH_MAX];
	struct stat sb;
	int n = snprintf(path, sizeof(path), "%s/%s", s->path, name);

	if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &sb) != 0) {
		s->nskipped++;
		return;
	}
	if (!S_ISREG(sb.st_mode))
		return; /* subdirectories and the like are not key files */
	if (keyfile_load_quiet(path, &k, NULL, 0) != KMS_OK) {
		s->nskipped++;
		return;
	}
	if (add_key(st, slot, name, &k) != CKR_OK)
		s->nskipped++;
	keyfile_wipe(&k);
}

static void load_dir_token(struct soft_state *st, CK_SLOT_ID slot)
{
	struct soft_slot *s = &st->slots[slot];
	struct dirent **names = NULL;
	int n = scandir(s->path, &names, skip_name, alphasort);

	if (n < 0) {
		(void)snprintf(s->desc, sizeof(s->desc), "softsign: cannot read directory");
		return;
	}
	for (int i = 0; i < n; i++) {
		load_dir_entry(st, slot, names[i]->d_name);
		free(names[i]);
	}
	free(names);
	s->present = 1;
	(void)snprintf(s->desc, sizeof(s->desc), "softsign: %zu keys, %zu skipped", s->nkeys,
		       s->nskipped);
}

static CK_RV add_slot(struct soft_state *st, const char *path, size_t len, int is_dir)
{
	struct soft_slot *s;

	if (st->nslots >= SOFTSIGN_MAX_SLOTS || len == 0 || len >= SOFT_PATH_MAX || path[0] != '/')
		return CKR_ARGUMENTS_BAD;
	s = &st->slots[st->nslots];
	memset(s, 0, sizeof(*s));
	s->path = malloc(len + 1);
	if (!s->path)
		return CKR_HOST_MEMORY;
	memcpy(s->path, path, len);
	s->path[len] = '\0';
	if (memchr(s->path, '\0', len)) {
		free(s->path);
		s->path = NULL;
		return CKR_ARGUMENTS_BAD;
	}
	s->is_dir = is_dir;
	if (keyfile_token_serial(s->path, s->serial) != KMS_OK) {
		free(s->path);
		s->path = NULL;
		return CKR_FUNCTION_FAILED;
	}
	st->nslots++;
	return CKR_OK;
}

static CK_RV parse_entry(struct soft_state *st, const char *e, size_t len)
{
	size_t dl = strlen(SOFTSIGN_INIT_DIR), fl = strlen(SOFTSIGN_INIT_FILE);

	if (len == 0)
		return CKR_OK; /* ";;" and a trailing ';' are harmless */
	if (len > dl && memcmp(e, SOFTSIGN_INIT_DIR, dl) == 0)
		return add_slot(st, e + dl, len - dl, 1);
	if (len > fl && memcmp(e, SOFTSIGN_INIT_FILE, fl) == 0)
		return add_slot(st, e + fl, len - fl, 0);
	return CKR_ARGUMENTS_BAD;
}

static CK_RV parse_init(struct soft_state *st, const char *init)
{
	size_t pl = strlen(SOFTSIGN_INIT_PREFIX);
	size_t n = strnlen(init, SOFTSIGN_INIT_MAX + 1);
	const char *p, *end;

	if (n > SOFTSIGN_INIT_MAX || n < pl || memcmp(init, SOFTSIGN_INIT_PREFIX, pl) != 0)
		return CKR_ARGUMENTS_BAD;
	p = init + pl;
	end = init + n;
	while (p <= end) {
		const char *sep = memchr(p, SOFTSIGN_INIT_SEP, (size_t)(end - p));
		const char *stop = sep ? sep : end;
		CK_RV rv = parse_entry(st, p, (size_t)(stop - p));

		if (rv != CKR_OK)
			return rv;
		p = stop + 1;
	}
	return CKR_OK;
}

CK_RV soft_state_load(struct soft_state *st, const char *init)
{
	CK_RV rv = CKR_OK;

	memset(st, 0, sizeof(*st));
	if (init) {
		rv = parse_init(st, init);
	} else {
		const char *env = getenv(SOFTSIGN_ENV_DIR);

		if (env && env[0] == '/')
			rv = add_slot(st, env, strlen(env), 1);
	}
	if (rv != CKR_OK) {
		soft_state_free(st);
		return rv;
	}
	for (size_t i = 0; i < st->nslots; i++) {
		if (st->slots[i].is_dir)
			load_dir_token(st, (CK_SLOT_ID)i);
		else
			load_file_token(st, (CK_SLOT_ID)i);
	}
	return CKR_OK;
}

void soft_state_free(struct soft_state *st)
{
	for (size_t i = 0; i < st->nslots; i++)
		free(st->slots[i].path);
	if (st->keys)
		kms_free_secret(st->keys, st->capkeys * sizeof(*st->keys));
	kms_wipe(st, sizeof(*st));
}

static int label_ok(const char *label, size_t len)
{
	if (len == 0 || len > SOFTSIGN_LABEL_MAX || label[0] == '.')
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = label[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

CK_RV soft_key_create(struct soft_state *st, CK_SLOT_ID slot, const char *label, size_t label_len,
		      const uint8_t seed[static 32], size_t *idx)
{
	struct soft_slot *s = &st->slots[slot];
	struct keyfile_ed25519 k;
	char name[SOFTSIGN_LABEL_MAX + sizeof(SOFTSIGN_KEY_EXT)];
	char path[SOFT_PATH_MAX];
	CK_RV rv;
	int n, r;

	if (!s->is_dir || !s->present)
		return CKR_TOKEN_WRITE_PROTECTED;
	if (!label_ok(label, label_len))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(name, label, label_len);
	memcpy(name + label_len, SOFTSIGN_KEY_EXT, sizeof(SOFTSIGN_KEY_EXT));
	if (strstr(name, ".tmp-"))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	for (size_t i = 0; i < st->nkeys; i++)
		if (st->keys[i].slot == slot && strlen(st->keys[i].label) == label_len &&
		    memcmp(st->keys[i].label, label, label_len) == 0)
			return CKR_ATTRIBUTE_VALUE_INVALID;
	n = snprintf(path, sizeof(path), "%s/%s", s->path, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return CKR_ATTRIBUTE_VALUE_INVALID;

	memset(&k, 0, sizeof(k));
	k.kind = KEYFILE_SEED32;
	k.has_seed = 1;
	memcpy(k.seed, seed, 32);
	if (kcrypto_ed25519_pub_from_seed(k.seed, k.pub) != KMS_OK) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	r = keyfile_write_seed(path, k.seed);
	if (r != KMS_OK) {
		rv = r == KMS_ERR_EXISTS ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_DEVICE_ERROR;
		goto out;
	}
	rv = add_key(st, slot, name, &k);
	if (rv == CKR_OK) {
		*idx = st->nkeys - 1;
		s->desc[0] = '\0';
		(void)snprintf(s->desc, sizeof(s->desc), "softsign: %zu keys, %zu skipped",
			       s->nkeys, s->nskipped);
	}
out:
	keyfile_wipe(&k);
	return rv;
}
