/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Token calls for one member of a slot, on a worker thread (watchdog.c) and under its
 * deadline: loading the module, finding the token and the key, sessions, login, sign.
 * No slot mutex is held across a token call: shared fields are read into locals and
 * published afterwards, under s->mu, for the module generation they were found in.
 */
#include "slot_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"
#include "p11kms/softsign.h"

/* What a failed step tells the caller: the CK_RV and whether the token is missing. */
struct mb_fail {
	CK_RV rv;
	int missing; /* not in the slot list (or the module is not initialised) */
};

static int gone_rv(CK_RV rv)
{
	return rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED ||
	       rv == CKR_SLOT_ID_INVALID || rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

/* A CK_RV from a token call: noted for the caller and the metrics. */
static int mb_rv(struct slot_member *mb, struct mb_fail *fl, CK_RV rv, const char *fn)
{
	fl->rv = rv;
	fl->missing |= gone_rv(rv);
	slot_emit(mb->s, OBS_ST_TOKEN_ERROR, mb, rv, pk11_rv_to_err(rv));
	kms_log_debug("%s failed: %s (0x%lx) token=%s", fn, p11_kit_strerror(rv), (unsigned long)rv,
		      mb->su.text);
	return pk11_rv_to_err(rv) ? pk11_rv_to_err(rv) : KMS_ERR_PKCS11;
}

/* The member's module, loaded (under the deadline) on first use. */
static int mb_module(struct slot_member *mb, int64_t deadline_ms, struct pk11_module **out)
{
	struct slot *s = mb->s;
	struct pk11_module *m;
	int r;
	pthread_mutex_lock(&s->mu);
	m = mb->m;
	pthread_mutex_unlock(&s->mu);
	if (m) {
		*out = m;
		return KMS_OK;
	}
	if ((r = pk11_module_get(mb->modpath, deadline_ms, &m)))
		return r;
	pthread_mutex_lock(&s->mu);
	if (mb->m) { /* another worker was quicker */
		pthread_mutex_unlock(&s->mu);
		pk11_module_put(m);
		m = mb->m;
	} else {
		mb->m = m;
		pthread_mutex_unlock(&s->mu);
	}
	*out = m;
	return KMS_OK;
}

/* The token again, by the serial and label it had when first reached. */
static int find_same_token(struct slot_member *mb, CK_FUNCTION_LIST *f, const CK_TOKEN_INFO *was,
			   CK_SLOT_ID *id, struct mb_fail *fl)
{
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64, i;
	CK_RV rv = f->C_GetSlotList(CK_TRUE, ids, &n);
	if (rv != CKR_OK)
		return mb_rv(mb, fl, rv, "C_GetSlotList");
	for (i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
			continue;
		if (memcmp(ti.serialNumber, was->serialNumber, sizeof(ti.serialNumber)) == 0 &&
		    memcmp(ti.label, was->label, sizeof(ti.label)) == 0) {
			*id = ids[i];
			return KMS_OK;
		}
	}
	fl->missing = 1;
	return KMS_ERR_NOT_FOUND;
}

/* First contact: the token the URI names, and its profile (published under s->mu). */
static int first_contact(struct slot_member *mb, struct pk11_module *m, CK_SLOT_ID *id,
			 CK_TOKEN_INFO *ti, struct slot_profile *prof, struct mb_fail *fl)
{
	struct slot *s = mb->s;
	CK_RV rv = CKR_OK;
	int report, r;
	/* The tokens present are listed once, not at every probe. */
	pthread_mutex_lock(&s->mu);
	report = !mb->listed;
	mb->listed = 1;
	pthread_mutex_unlock(&s->mu);
	r = pk11_find_token_q(m->f, mb->su.u, mb->su.text, id, ti, report, &rv);
	if (r == KMS_ERR_NOT_FOUND && rv == CKR_OK) {
		fl->missing = 1;
		return r;
	}
	if (r)
		return rv != CKR_OK ? mb_rv(mb, fl, rv, "C_GetSlotList") : r;
	r = s->profile ? slot_profile_load(s->profile, s->profiles_dir, prof) :
			 slot_profile_detect(s->profiles_dir, ti, mb->modpath, prof);
	if (r)
		return r;
	pthread_mutex_lock(&s->mu);
	if (!mb->known) {
		mb->ti = *ti;
		mb->prof = *prof;
		mb->known = 1;
		m->quirks |= prof->quirks;
	}
	pthread_mutex_unlock(&s->mu);
	return KMS_OK;
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
static int find_key(struct slot_member *mb, CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h,
		    CK_OBJECT_HANDLE *key)
{
	CK_ATTRIBUTE t[4];
	CK_OBJECT_HANDLE keys[8];
	CK_ULONG kt = 0;
	uint8_t *params = NULL;
	size_t n = uri_key_template(mb->su.u, t), found = 0, plen = 0;
	int r;

	if ((r = pk11_find(f, h, CKO_PRIVATE_KEY, t, n, keys, 8, &found)))
		return r;
	if (found == 0) {
		kms_log_err(
			"no private key matches %s (check id=/object=; is the PIN for the right "
			"token?)",
			mb->su.text);
		return KMS_ERR_NOT_FOUND;
	}
	if (found > 1) {
		kms_log_err("%zu private keys match %s; add id= or object= to pick one:", found,
			    mb->su.text);
		log_key_candidates(f, h, keys, found < 8 ? found : 8);
		return KMS_ERR_AMBIGUOUS;
	}
	if ((r = pk11_get_ulong(f, h, keys[0], CKA_KEY_TYPE, &kt)))
		return r;
	if (kt != CKK_EC_EDWARDS) {
		kms_log_err("key %s has CKA_KEY_TYPE 0x%lx; only Ed25519 (CKK_EC_EDWARDS) is "
			    "supported",
			    mb->su.text, (unsigned long)kt);
		return KMS_ERR_UNSUPPORTED;
	}
	r = pk11_get_attr(f, h, keys[0], CKA_EC_PARAMS, &params, &plen);
	if (r == KMS_OK && !pk11_ec_params_is_ed25519(params, plen)) {
		kms_log_err("key %s is an Edwards key but not edwards25519 (Ed448?)", mb->su.text);
		r = KMS_ERR_UNSUPPORTED;
	} else {
		r = KMS_OK; /* some tokens do not expose CKA_EC_PARAMS on the private key */
	}
	free(params);
	if (r == KMS_OK)
		*key = keys[0];
	return r;
}

/*
 * The slot's key is the first member's (set when it is first reached); every other
 * member, and every member found again later, must show the same public key.
 */
static int check_pub(struct slot_member *mb, const uint8_t pub[static 32])
{
	struct slot *s = mb->s;
	char have[65], want[65];
	int ok;
	pthread_mutex_lock(&s->mu);
	if (!s->have_pub) {
		memcpy(s->pub, pub, 32);
		s->have_pub = 1;
	}
	ok = kms_ct_eq(pub, s->pub, 32);
	pk11_hex(s->pub, 32, want, sizeof(want));
	pthread_mutex_unlock(&s->mu);
	if (ok)
		return KMS_OK;
	pk11_hex(pub, 32, have, sizeof(have));
	if (mb->idx == 0)
		kms_log_err("key behind %s changed its public key (now %s, was %s); refusing to "
			    "sign with it",
			    mb->su.text, have, want);
	else
		kms_log_err("backup slot %s holds public key %s but the primary %s holds %s: every "
			    "uri of a keys entry must hold the same key; refusing to sign with it",
			    mb->su.text, have, s->mb[0].su.text, want);
	return KMS_ERR_AUTH;
}

/* Takes a forced re-login for this loss unless another worker already did one. */
static int claim_relogin(struct slot_member *mb, struct slot_wsess *ws)
{
	int mine;
	pthread_mutex_lock(&mb->s->mu);
	mine = ws->lost && mb->login_epoch == ws->login_epoch;
	if (mine)
		mb->login_epoch++;
	ws->login_epoch = mb->login_epoch;
	pthread_mutex_unlock(&mb->s->mu);
	return mine;
}

/* Open + login (+ find the key when stale) for the worker's session; module read lock held. */
static int establish(struct slot_member *mb, struct slot_wsess *ws, struct pk11_module *m,
		     unsigned long gen, struct mb_fail *fl)
{
	struct slot *s = mb->s;
	struct pk11_login_src src = { mb->su.pin_file, s->pin_env, s->allow_prompt, NULL, 0 };
	struct slot_profile prof;
	CK_FUNCTION_LIST *f = m->f;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE key;
	CK_TOKEN_INFO ti;
	CK_SLOT_ID id;
	uint8_t pub[32];
	int fresh, known, r;
	CK_RV rv;

	pthread_mutex_lock(&s->mu);
	fresh = mb->res_gen == gen;
	known = mb->known;
	id = mb->slot_id;
	key = mb->key;
	ti = mb->ti;
	prof = mb->prof;
	pthread_mutex_unlock(&s->mu);
	if (!known)
		r = first_contact(mb, m, &id, &ti, &prof, fl);
	else
		r = fresh ? KMS_OK : find_same_token(mb, f, &ti, &id, fl);
	if (r)
		return r;
	if ((rv = f->C_OpenSession(id, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK)
		return mb_rv(mb, fl, rv, "C_OpenSession");
	src.prof = &prof;
	src.force = claim_relogin(mb, ws);
	if ((r = pk11_login_with(f, h, &ti, &src, mb->su.text)))
		goto fail;
	if (!fresh || !known) {
		if ((r = find_key(mb, f, h, &key)) ||
		    (r = pk11_read_pub(f, h, key, prof.ec_point, pub)) || (r = check_pub(mb, pub)))
			goto fail;
		pthread_mutex_lock(&s->mu);
		mb->slot_id = id;
		mb->key = key;
		mb->res_gen = gen;
		pthread_mutex_unlock(&s->mu);
	}
	if (ws->lost) {
		/* After a module re-initialisation (logged there) every session is new. */
		if (ws->lost_rv)
			kms_log_warn("PKCS#11 session lost (%s) on %s: re-opened and logged in "
				     "again",
				     p11_kit_strerror(ws->lost_rv), mb->su.text);
		slot_emit(s, OBS_ST_SESSION_REOPEN, mb, ws->lost_rv, KMS_OK);
	}
	ws->h = h;
	ws->gen = gen;
	ws->verified = 0;
	ws->lost = 0;
	pk11_module_healthy(m);
	return KMS_OK;
fail:
	(void)f->C_CloseSession(h);
	return r;
}

/* A session the token lost: closed (if the handle may still mean something), and the
 * next one re-finds the token and key (a re-plugged device can get a new slot id). */
static void drop_session(struct slot_member *mb, struct slot_wsess *ws, struct pk11_module *m,
			 unsigned long gen, CK_RV why)
{
	if (ws->gen == gen)
		(void)m->f->C_CloseSession(ws->h);
	ws->gen = 0;
	ws->lost = 1;
	ws->lost_rv = why;
	pthread_mutex_lock(&mb->s->mu);
	mb->res_gen = 0;
	pthread_mutex_unlock(&mb->s->mu);
}

static int key_of(struct slot_member *mb, CK_OBJECT_HANDLE *key, unsigned long gen)
{
	int ok;
	pthread_mutex_lock(&mb->s->mu);
	*key = mb->key;
	ok = mb->res_gen == gen;
	pthread_mutex_unlock(&mb->s->mu);
	return ok;
}

/*
 * One attempt under the module read lock: a session (established if needed),
 * then the operation. sign NULL: only the session (hygiene).
 */
static int attempt(struct slot_member *mb, struct slot_wsess *ws, struct pk11_module *m,
		   unsigned long gen, const uint8_t *msg, size_t len, uint8_t *sig,
		   struct mb_fail *fl)
{
	CK_OBJECT_HANDLE key;
	CK_RV rv;
	int r;
	if (ws->gen && (ws->gen != gen || !key_of(mb, &key, gen))) {
		if (ws->gen == gen) /* the key was re-found by another worker: new session */
			(void)m->f->C_CloseSession(ws->h);
		else
			ws->lost = 1, ws->lost_rv = 0; /* the module was re-initialised under it */
		ws->gen = 0;
	}
	if (!ws->gen && (r = establish(mb, ws, m, gen, fl)))
		return r;
	if (!sig)
		return KMS_OK;
	(void)key_of(mb, &key, gen);
	rv = pk11_sign_raw(m->f, ws->h, key, msg, len, sig);
	if (rv == CKR_OK)
		return KMS_OK;
	r = mb_rv(mb, fl, rv, "C_Sign");
	if (pk11_rv_recoverable(rv))
		drop_session(mb, ws, m, gen, rv);
	return r;
}

/*
 * Up to three attempts: a lost session is re-opened and logged in again, and a
 * module that reports the token missing is re-initialised (once the read lock is
 * released: the re-initialisation needs the write lock).
 */
static int run_attempts(struct slot_member *mb, struct slot_wsess *ws, int64_t deadline_ms,
			const uint8_t *msg, size_t len, uint8_t *sig, unsigned long *ckr)
{
	struct pk11_module *m;
	int r, i;
	*ckr = 0;
	if ((r = mb_module(mb, deadline_ms, &m)))
		return r;
	for (i = 0; i < 3; i++) {
		struct mb_fail fl = { CKR_OK, 0 };
		unsigned long gen;
		if ((r = pk11_module_rdlock(m, deadline_ms)))
			return r;
		gen = pk11_module_gen(m);
		fl.missing = !m->live;
		r = fl.missing ? KMS_ERR_NOT_FOUND : attempt(mb, ws, m, gen, msg, len, sig, &fl);
		pk11_module_unlock(m);
		if (fl.rv != CKR_OK)
			*ckr = fl.rv;
		if (r == KMS_OK)
			return KMS_OK;
		if (fl.missing) {
			int rr = pk11_module_reinit(m, gen, deadline_ms, mb->su.text);
			if (rr != KMS_OK)
				return r == KMS_ERR_NOT_FOUND || rr == KMS_ERR_NOT_FOUND ? r : rr;
			continue;
		}
		if (fl.rv == CKR_OK || !pk11_rv_recoverable(fl.rv))
			return r;
	}
	return r;
}

int slot_mb_sign(struct slot_member *mb, struct slot_wsess *ws, int64_t deadline_ms,
		 const uint8_t *msg, size_t len, uint8_t sig[static 64], unsigned long *ckr)
{
	uint8_t pub[32];
	int r = run_attempts(mb, ws, deadline_ms, msg, len, sig, ckr);
	if (r == KMS_OK && !ws->verified) {
		/* A wrong key or a broken token is caught before any signature leaves. */
		pthread_mutex_lock(&mb->s->mu);
		memcpy(pub, mb->s->pub, 32);
		pthread_mutex_unlock(&mb->s->mu);
		if (kcrypto_ed25519_verify(pub, msg, len, sig) != KMS_OK) {
			kms_log_err(
				"first signature of a new session on %s does not verify against "
				"the public key; refusing",
				mb->su.text);
			r = KMS_ERR_AUTH;
		} else {
			ws->verified = 1;
		}
	}
	if (r != KMS_OK)
		kms_wipe(sig, 64);
	return r;
}

static int is_softsign(const CK_TOKEN_INFO *ti)
{
	char man[40], model[20];
	pk11_field(ti->manufacturerID, sizeof(ti->manufacturerID), man, sizeof(man));
	pk11_field(ti->model, sizeof(ti->model), model, sizeof(model));
	return strcmp(man, SOFTSIGN_MANUFACTURER) == 0 && strcmp(model, SOFTSIGN_MODEL) == 0;
}

static void verdict(const CK_TOKEN_INFO *ti, struct slot_hygiene *hy)
{
	const char *v;
	if (is_softsign(ti))
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

int slot_mb_hygiene(struct slot_member *mb, struct slot_wsess *ws, int64_t deadline_ms,
		    struct slot_hygiene *hy, unsigned long *ckr)
{
	struct pk11_module *m;
	CK_OBJECT_HANDLE key;
	CK_TOKEN_INFO ti;
	CK_FUNCTION_LIST *f;
	int r = run_attempts(mb, ws, deadline_ms, NULL, 0, NULL, ckr);
	if (r)
		return r;
	pthread_mutex_lock(&mb->s->mu);
	m = mb->m;
	ti = mb->ti;
	pthread_mutex_unlock(&mb->s->mu);
	if ((r = pk11_module_rdlock(m, deadline_ms)))
		return r;
	f = m->f;
	if (ws->gen != pk11_module_gen(m) || !key_of(mb, &key, ws->gen)) {
		pk11_module_unlock(m);
		return KMS_ERR_NOT_FOUND; /* re-initialised in between: ask again */
	}
	hy->sensitive = pk11_get_bool(f, ws->h, key, CKA_SENSITIVE);
	hy->always_sensitive = pk11_get_bool(f, ws->h, key, CKA_ALWAYS_SENSITIVE);
	hy->extractable = pk11_get_bool(f, ws->h, key, CKA_EXTRACTABLE);
	hy->never_extractable = pk11_get_bool(f, ws->h, key, CKA_NEVER_EXTRACTABLE);
	hy->local = pk11_get_bool(f, ws->h, key, CKA_LOCAL);
	pk11_module_unlock(m);
	verdict(&ti, hy);
	hy->slot = mb->su.text;
	return KMS_OK;
}

void slot_mb_close(struct slot_member *mb, struct slot_wsess *ws)
{
	struct pk11_module *m;
	if (!ws->gen)
		return;
	pthread_mutex_lock(&mb->s->mu);
	m = mb->m;
	pthread_mutex_unlock(&mb->s->mu);
	/* A module stuck in another call: leave the handle (it dies with the module). */
	if (!m || pk11_module_rdlock(m, slot_now_ms() + 200) != KMS_OK)
		return;
	if (ws->gen == pk11_module_gen(m))
		(void)m->f->C_CloseSession(ws->h);
	pk11_module_unlock(m);
	ws->gen = 0;
}
