/* SPDX-License-Identifier: Apache-2.0 */
/* slot_: open a key by URI, per-thread sessions with recovery, sign, hygiene. */
/* realpath() is XSI, not in _POSIX_C_SOURCE alone. */
#define _XOPEN_SOURCE 700
#include "slot_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/softsign.h"

static const uint8_t self_test_msg[] = "p11kms slot self-test: this key signs for a validator";

static const struct slot_opts no_opts;

int slot_uri_module(const struct slot_uri *su, const struct slot_opts *o, char **path_out)
{
	struct slot_profile prof;
	int have_prof = 0, r;

	*path_out = NULL;
	if (su->module_path) {
		*path_out = strdup(su->module_path);
		return *path_out ? KMS_OK : KMS_ERR_ALLOC;
	}
	if (o->profile) {
		if ((r = slot_profile_load(o->profile, o->profiles_dir, &prof)))
			return r;
		have_prof = 1;
	}
	if (su->module_name)
		return pk11_module_by_name(su->module_name, have_prof ? &prof : NULL, path_out);
	if (have_prof)
		return pk11_module_from_profile(&prof, path_out);
	kms_log_err("PKCS#11 URI %s names no module: add ?module-path=/path/to/module.so (or "
		    "module-name=, or set the hsm-profile)",
		    su->text);
	return KMS_ERR_CONFIG;
}

static int pick_profile(const struct slot_opts *o, const CK_TOKEN_INFO *ti, const char *modpath,
			struct slot_profile *out)
{
	if (o->profile)
		return slot_profile_load(o->profile, o->profiles_dir, out);
	return slot_profile_detect(o->profiles_dir, ti, modpath, out);
}

/* Key attributes from the URI (id=, object=) as a find template. */
static size_t uri_key_template(P11KitUri *u, CK_ATTRIBUTE *t)
{
	CK_ATTRIBUTE *a;
	size_t n = 0;
	if ((a = p11_kit_uri_get_attribute(u, CKA_ID)))
		t[n++] = *a;
	if ((a = p11_kit_uri_get_attribute(u, CKA_LABEL)))
		t[n++] = *a;
	return n;
}

static void log_key_candidates(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h,
			       const CK_OBJECT_HANDLE *keys, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		uint8_t *id = NULL, *label = NULL;
		size_t idlen = 0, labellen = 0;
		char hex[70];
		if (pk11_get_attr(f, h, keys[i], CKA_ID, &id, &idlen))
			idlen = 0; /* shown as an empty id */
		if (pk11_get_attr(f, h, keys[i], CKA_LABEL, &label, &labellen))
			labellen = 0;
		pk11_hex(id ? id : (const uint8_t *)"", idlen, hex, sizeof(hex));
		kms_log_err("  candidate: object=\"%.*s\" id=%s",
			    (int)(labellen > 64 ? 64 : labellen), label ? (const char *)label : "",
			    hex);
		free(id);
		free(label);
	}
}

/* Finds the one private key the URI names; checks it is Ed25519. */
static int find_key(struct slot *s, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *key, int report)
{
	CK_FUNCTION_LIST *f = s->m->f;
	CK_ATTRIBUTE t[4];
	CK_OBJECT_HANDLE keys[8];
	CK_ULONG kt = 0;
	uint8_t *params = NULL;
	size_t n = uri_key_template(s->su.u, t), found = 0, plen = 0;
	int r;

	if ((r = pk11_find(f, h, CKO_PRIVATE_KEY, t, n, keys, 8, &found)))
		return r;
	if (found != 1) {
		if (!report)
			return found ? KMS_ERR_AMBIGUOUS : KMS_ERR_NOT_FOUND;
		if (found == 0) {
			kms_log_err("no private key matches %s (check id=/object=; is the PIN for "
				    "the right token?)",
				    s->su.text);
			return KMS_ERR_NOT_FOUND;
		}
		kms_log_err("%zu private keys match %s; add id= or object= to pick one:", found,
			    s->su.text);
		log_key_candidates(f, h, keys, found < 8 ? found : 8);
		return KMS_ERR_AMBIGUOUS;
	}
	if ((r = pk11_get_ulong(f, h, keys[0], CKA_KEY_TYPE, &kt)))
		return r;
	if (kt != CKK_EC_EDWARDS) {
		kms_log_err("key %s has CKA_KEY_TYPE 0x%lx; only Ed25519 (CKK_EC_EDWARDS) is "
			    "supported",
			    s->su.text, (unsigned long)kt);
		return KMS_ERR_UNSUPPORTED;
	}
	r = pk11_get_attr(f, h, keys[0], CKA_EC_PARAMS, &params, &plen);
	if (r == KMS_OK && !pk11_ec_params_is_ed25519(params, plen)) {
		kms_log_err("key %s is an Edwards key but not edwards25519 (Ed448?)", s->su.text);
		r = KMS_ERR_UNSUPPORTED;
	} else {
		r = KMS_OK; /* some tokens do not expose CKA_EC_PARAMS on the private key */
	}
	free(params);
	if (r == KMS_OK)
		*key = keys[0];
	return r;
}

/* After a re-initialisation or a lost device: the same token, by serial and label. */
static int find_same_token(struct slot *s)
{
	CK_FUNCTION_LIST *f = s->m->f;
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64, i;
	CK_RV rv = f->C_GetSlotList(CK_TRUE, ids, &n);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_GetSlotList", s->su.text);
	for (i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
			continue;
		if (memcmp(ti.serialNumber, s->ti.serialNumber, sizeof(ti.serialNumber)) == 0 &&
		    memcmp(ti.label, s->ti.label, sizeof(ti.label)) == 0) {
			s->slot_id = ids[i];
			return KMS_OK;
		}
	}
	kms_log_err("token of %s is gone", s->su.text);
	return KMS_ERR_NOT_FOUND;
}

static struct slot_sess *sess_self(struct slot *s, size_t *idx)
{
	pthread_t me = pthread_self();
	struct slot_sess *grown;
	size_t i;
	for (i = 0; i < s->nsess; i++)
		if (pthread_equal(s->sess[i].tid, me)) {
			*idx = i;
			return &s->sess[i];
		}
	if (!(grown = realloc(s->sess, (s->nsess + 1) * sizeof(*grown))))
		return NULL;
	s->sess = grown;
	memset(&s->sess[s->nsess], 0, sizeof(s->sess[0]));
	s->sess[s->nsess].tid = me;
	*idx = s->nsess;
	return &s->sess[s->nsess++];
}

/*
 * The calling thread's session, opened and logged in if needed. Called with the
 * module's read lock held (handles stay valid) and s->mu held.
 */
static int sess_establish(struct slot *s, struct slot_sess *e)
{
	CK_FUNCTION_LIST *f = s->m->f;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE key;
	uint8_t pub[32];
	CK_RV rv;
	int r;

	if (s->res_gen != s->m->gen && (r = find_same_token(s)))
		return r;
	rv = f->C_OpenSession(s->slot_id, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_OpenSession", s->su.text);
	r = pk11_login(f, h, &s->ti, s->su.pin_file, s->pin_env, s->allow_prompt, s->su.text);
	if (r)
		goto fail;
	if (s->res_gen != s->m->gen) {
		if ((r = find_key(s, h, &key, 1)) ||
		    (r = pk11_read_pub(f, h, key, s->prof.ec_point, pub)))
			goto fail;
		if (!kms_ct_eq(pub, s->pub, 32)) {
			kms_log_err("key behind %s changed its public key; refusing to sign",
				    s->su.text);
			r = KMS_ERR_AUTH;
			goto fail;
		}
		s->key = key;
		s->res_gen = s->m->gen;
	}
	e->h = h;
	e->gen = s->m->gen;
	e->verified = 0;
	return KMS_OK;
fail:
	(void)f->C_CloseSession(h);
	return r;
}

static void sess_drop(struct slot *s, size_t idx, CK_RV why)
{
	struct slot_sess *e = &s->sess[idx];
	if (e->gen == s->m->gen)
		(void)s->m->f->C_CloseSession(e->h);
	e->gen = 0;
	/* The device may be back under another slot id, with new object handles. */
	s->res_gen = 0;
	kms_log_warn("PKCS#11 session lost (%s) on %s; re-opening", p11_kit_strerror(why),
		     s->su.text);
}

/* One attempt: returns the CK_RV of C_Sign, or sets *r for a non-PKCS#11 failure. */
static CK_RV sign_once(struct slot *s, const uint8_t *msg, size_t len, uint8_t sig[static 64],
		       int *r, size_t *idx, int *first)
{
	struct slot_sess *e;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;

	*r = KMS_OK;
	pthread_mutex_lock(&s->mu);
	if (!(e = sess_self(s, idx))) {
		pthread_mutex_unlock(&s->mu);
		*r = KMS_ERR_ALLOC;
		return CKR_OK;
	}
	if ((e->gen != s->m->gen || s->res_gen != s->m->gen) && e->gen == s->m->gen) {
		(void)s->m->f->C_CloseSession(e->h);
		e->gen = 0;
	}
	if (e->gen != s->m->gen && (*r = sess_establish(s, e))) {
		pthread_mutex_unlock(&s->mu);
		return CKR_OK;
	}
	h = e->h;
	key = s->key;
	*first = !e->verified;
	pthread_mutex_unlock(&s->mu);
	return pk11_sign_raw(s->m->f, h, key, msg, len, sig);
}

int slot_sign(struct slot *s, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	if (s->timeout_ms && len <= s->prof.max_sign_input)
		return slot_wd_sign(s, msg, len, sig);
	return slot_sign_direct(s, msg, len, sig);
}

int slot_sign_direct(struct slot *s, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	int attempt, r = KMS_ERR_INTERNAL, first = 0;
	size_t idx = 0;
	CK_RV rv = CKR_OK;

	if (len > s->prof.max_sign_input) {
		kms_log_err("sign input of %zu bytes exceeds the %zu-byte limit of %s (hsm-profile "
			    "%s)",
			    len, s->prof.max_sign_input, s->su.text, s->prof.name);
		return KMS_ERR_TOO_LARGE;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		pthread_rwlock_rdlock(&s->m->lock);
		rv = sign_once(s, msg, len, sig, &r, &idx, &first);
		if (r == KMS_OK && rv != CKR_OK && pk11_rv_recoverable(rv)) {
			pthread_mutex_lock(&s->mu);
			sess_drop(s, idx, rv);
			pthread_mutex_unlock(&s->mu);
		}
		pthread_rwlock_unlock(&s->m->lock);
		if (r != KMS_OK)
			break; /* could not (re)open a session: already logged */
		if (rv == CKR_OK || !pk11_rv_recoverable(rv))
			break;
	}
	if (r == KMS_OK && rv != CKR_OK)
		r = pk11_err(rv, "C_Sign", s->su.text);
	if (r == KMS_OK && first) {
		/* A wrong key or a broken token is caught before any signature leaves. */
		if (kcrypto_ed25519_verify(s->pub, msg, len, sig) != KMS_OK) {
			kms_log_err(
				"first signature of a new session on %s does not verify against "
				"the public key; refusing",
				s->su.text);
			r = KMS_ERR_AUTH;
		} else {
			pthread_mutex_lock(&s->mu);
			s->sess[idx].verified = 1;
			pthread_mutex_unlock(&s->mu);
		}
	}
	if (r != KMS_OK)
		kms_wipe(sig, 64);
	return r;
}

static int open_first(struct slot *s, const struct slot_opts *o, const char *modpath)
{
	struct slot_sess *e;
	size_t idx;
	uint8_t sig[64];
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int r;

	if ((r = pk11_find_token(s->m->f, s->su.u, s->su.text, &s->slot_id, &s->ti)))
		return r;
	if ((r = pick_profile(o, &s->ti, modpath, &s->prof)))
		return r;
	s->m->quirks |= s->prof.quirks;
	rv = s->m->f->C_OpenSession(s->slot_id, CKF_SERIAL_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_OpenSession", s->su.text);
	if (!(e = sess_self(s, &idx))) {
		(void)s->m->f->C_CloseSession(h);
		return KMS_ERR_ALLOC;
	}
	e->h = h;
	e->gen = s->m->gen;
	if ((r = pk11_login(s->m->f, h, &s->ti, s->su.pin_file, s->pin_env, s->allow_prompt,
			    s->su.text)) ||
	    (r = find_key(s, h, &s->key, 1)) ||
	    (r = pk11_read_pub(s->m->f, h, s->key, s->prof.ec_point, s->pub)))
		return r;
	s->type = SLOT_KEY_ED25519;
	s->res_gen = s->m->gen;
	r = slot_sign(s, self_test_msg, sizeof(self_test_msg) - 1, sig);
	kms_wipe(sig, sizeof(sig));
	if (r)
		kms_log_err("test signature with %s failed", s->su.text);
	return r;
}

int slot_open(const char *uri, const struct slot_opts *o, struct slot **out)
{
	struct slot *s = NULL;
	char *modpath = NULL;
	int r = KMS_ERR_INTERNAL;

	*out = NULL;
	if (!o)
		o = &no_opts;
	if (!uri)
		return KMS_ERR_FORMAT;
	if (!(s = calloc(1, sizeof(*s))))
		return KMS_ERR_ALLOC;
	pthread_mutex_init(&s->mu, NULL);
	s->refs = 1;
	s->allow_prompt = o->allow_prompt;
	if (o->pin_env && !(s->pin_env = strdup(o->pin_env))) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if ((r = slot_uri_parse((const uint8_t *)uri, strlen(uri), &s->su)) ||
	    (r = slot_uri_module(&s->su, o, &modpath)) || (r = pk11_module_get(modpath, &s->m)))
		goto out;
	pthread_rwlock_rdlock(&s->m->lock);
	r = open_first(s, o, modpath);
	pthread_rwlock_unlock(&s->m->lock);
	if (r)
		goto out;
	kms_log_info("opened key %s (hsm-profile %s)", s->su.text, s->prof.name);
	*out = s;
	s = NULL;
	r = KMS_OK;
out:
	free(modpath);
	slot_free(s);
	return r;
}

int slot_open_softsign(const char *key_path, const struct slot_opts *o, struct slot **out)
{
	char real[PATH_MAX], modpath[PATH_MAX], serial[17];
	const char *one[1];
	P11KitUri *u = NULL;
	char *uri = NULL;
	int r;

	*out = NULL;
	if (!realpath(key_path, real)) {
		kms_log_err("softsign key file %s not found", key_path);
		return KMS_ERR_NOT_FOUND;
	}
	one[0] = real;
	if ((r = pk11_softsign_get(one, 1, NULL)) ||
	    (r = slot_softsign_module_path(modpath, sizeof(modpath))) ||
	    (r = pk11_softsign_serial(real, serial)))
		return r;
	if (!(u = p11_kit_uri_new()))
		return KMS_ERR_ALLOC;
	{
		CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(u);
		memset(ti->serialNumber, ' ', sizeof(ti->serialNumber));
		memcpy(ti->serialNumber, serial, 16);
	}
	p11_kit_uri_set_module_path(u, modpath);
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_ANY, &uri) != P11_KIT_URI_OK) {
		p11_kit_uri_free(u);
		return KMS_ERR_ALLOC;
	}
	p11_kit_uri_free(u);
	r = slot_open(uri, o, out);
	free(uri);
	return r;
}

void slot_pubkey(const struct slot *s, uint8_t pub[static 32])
{
	memcpy(pub, s->pub, 32);
}

enum slot_key_type slot_key_type(const struct slot *s)
{
	return s->type;
}

size_t slot_max_input(const struct slot *s)
{
	return s->prof.max_sign_input;
}

const char *slot_describe(const struct slot *s)
{
	return s->su.text ? s->su.text : "pkcs11:";
}

const char *slot_profile_name(const struct slot *s)
{
	return s->prof.name;
}

static int is_softsign(const struct slot *s)
{
	char man[40], model[20];
	pk11_field(s->ti.manufacturerID, sizeof(s->ti.manufacturerID), man, sizeof(man));
	pk11_field(s->ti.model, sizeof(s->ti.model), model, sizeof(model));
	return strcmp(man, SOFTSIGN_MANUFACTURER) == 0 && strcmp(model, SOFTSIGN_MODEL) == 0;
}

static void verdict(const struct slot *s, struct slot_hygiene *hy)
{
	const char *v;
	if (is_softsign(s))
		v = "softsign file key: plaintext on disk";
	else if (hy->extractable == 1)
		v = "WARNING: extractable: the key can be exported from the token";
	else if (hy->sensitive == 0)
		v = "WARNING: not sensitive: the key value can be read from the token";
	else if (hy->local == 1 && hy->never_extractable == 1 && hy->always_sensitive != 0)
		v = "generated on token, never extractable";
	else if (hy->local == 0 || hy->always_sensitive == 0 || hy->never_extractable == 0)
		v = "imported: sensitive and non-extractable now, but existed outside the token";
	else
		v = "sensitive and non-extractable; origin unknown (token does not report CKA_LOCAL)";
	snprintf(hy->verdict, sizeof(hy->verdict), "%s", v);
}

int slot_hygiene(struct slot *s, struct slot_hygiene *out)
{
	CK_FUNCTION_LIST *f = s->m->f;
	struct slot_sess *e;
	size_t idx;
	int r = KMS_OK;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->m->lock);
	pthread_mutex_lock(&s->mu);
	if (!(e = sess_self(s, &idx)))
		r = KMS_ERR_ALLOC;
	else if (e->gen != s->m->gen || s->res_gen != s->m->gen) {
		if (e->gen == s->m->gen)
			(void)f->C_CloseSession(e->h);
		e->gen = 0;
		r = sess_establish(s, e);
	}
	if (r == KMS_OK) {
		out->sensitive = pk11_get_bool(f, e->h, s->key, CKA_SENSITIVE);
		out->always_sensitive = pk11_get_bool(f, e->h, s->key, CKA_ALWAYS_SENSITIVE);
		out->extractable = pk11_get_bool(f, e->h, s->key, CKA_EXTRACTABLE);
		out->never_extractable = pk11_get_bool(f, e->h, s->key, CKA_NEVER_EXTRACTABLE);
		out->local = pk11_get_bool(f, e->h, s->key, CKA_LOCAL);
		verdict(s, out);
	}
	pthread_mutex_unlock(&s->mu);
	pthread_rwlock_unlock(&s->m->lock);
	return r;
}

void slot_free(struct slot *s)
{
	if (!s)
		return;
	slot_wd_stop(s);
	slot_unref(s);
}

void slot_unref(struct slot *s)
{
	size_t i;
	int last;
	pthread_mutex_lock(&s->mu);
	last = --s->refs <= 0;
	pthread_mutex_unlock(&s->mu);
	if (!last)
		return; /* a worker stuck in C_Sign frees it when (if) the token returns */
	if (s->m) {
		pthread_rwlock_rdlock(&s->m->lock);
		for (i = 0; i < s->nsess; i++)
			if (s->sess[i].gen == s->m->gen)
				(void)s->m->f->C_CloseSession(s->sess[i].h);
		pthread_rwlock_unlock(&s->m->lock);
		pk11_module_put(s->m);
	}
	free(s->sess);
	slot_uri_clear(&s->su);
	free(s->pin_env);
	pthread_mutex_destroy(&s->mu);
	kms_wipe(s, sizeof(*s));
	free(s);
}

/* ---- tokens for keygen / import / list ---- */

int slot_tok_open(const char *uri, const struct slot_opts *o, int rw, int login, struct slot_tok *t)
{
	char *modpath = NULL;
	CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
	CK_RV rv;
	int r;

	memset(t, 0, sizeof(*t));
	if (!o)
		o = &no_opts;
	if ((r = slot_uri_parse((const uint8_t *)uri, strlen(uri), &t->su)) ||
	    (r = slot_uri_module(&t->su, o, &modpath)) || (r = pk11_module_get(modpath, &t->m)))
		goto out;
	pthread_rwlock_rdlock(&t->m->lock);
	if ((r = pk11_find_token(t->m->f, t->su.u, t->su.text, &t->slot, &t->ti)) ||
	    (r = pick_profile(o, &t->ti, modpath, &t->prof)))
		goto unlock;
	t->m->quirks |= t->prof.quirks;
	rv = t->m->f->C_OpenSession(t->slot, fl, NULL, NULL, &t->h);
	if (rv != CKR_OK) {
		r = pk11_err(rv, "C_OpenSession", t->su.text);
		goto unlock;
	}
	t->have_session = 1;
	if (login)
		r = pk11_login(t->m->f, t->h, &t->ti, t->su.pin_file, o->pin_env, o->allow_prompt,
			       t->su.text);
unlock:
	pthread_rwlock_unlock(&t->m->lock);
out:
	free(modpath);
	if (r)
		slot_tok_close(t);
	return r;
}

void slot_tok_close(struct slot_tok *t)
{
	if (t->m) {
		if (t->have_session)
			(void)t->m->f->C_CloseSession(t->h);
		pk11_module_put(t->m);
	}
	slot_uri_clear(&t->su);
	memset(t, 0, sizeof(*t));
}
