/* SPDX-License-Identifier: Apache-2.0 */
/* Keys made on the token: C_GenerateKeyPair, seed import with C_CreateObject, listing. */
#include "slot_int.h"

#include <stdlib.h>
#include <string.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"

static const uint8_t ec_params_name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
					  'd',	's',  '2', '5', '5', '1', '9' };
static const uint8_t ec_params_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };

#define ID_LEN 8 /* derived CKA_ID: first 8 bytes of SHA-256(pub) */

static CK_BBOOL ck_true = CK_TRUE, ck_false = CK_FALSE;

static void attr(CK_ATTRIBUTE *a, CK_ATTRIBUTE_TYPE t, const void *v, size_t n)
{
	a->type = t;
	a->pValue = (void *)(uintptr_t)v;
	a->ulValueLen = (CK_ULONG)n;
}

static int derive_id(const uint8_t pub[static 32], uint8_t id[static ID_LEN])
{
	uint8_t h[32];
	int r = kcrypto_sha256(pub, 32, h);
	if (r == KMS_OK)
		memcpy(id, h, ID_LEN);
	return r;
}

/* KMS_ERR_EXISTS if any object has this label or (if given) this id. */
static int check_free(struct slot_tok *t, const char *label, const uint8_t *id, size_t idlen)
{
	static const CK_OBJECT_CLASS classes[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY,
						   CKO_DATA, CKO_CERTIFICATE };
	CK_OBJECT_HANDLE o[1];
	CK_ATTRIBUTE a;
	size_t i, found;
	int r;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		attr(&a, CKA_LABEL, label, strlen(label));
		if ((r = pk11_find(t->m->f, t->h, classes[i], &a, 1, o, 1, &found)))
			return r;
		if (found) {
			kms_log_err("an object labelled \"%s\" already exists on %s", label,
				    t->su.text);
			return KMS_ERR_EXISTS;
		}
		if (!id)
			continue;
		attr(&a, CKA_ID, id, idlen);
		if ((r = pk11_find(t->m->f, t->h, classes[i], &a, 1, o, 1, &found)))
			return r;
		if (found) {
			char hex[40];
			pk11_hex(id, idlen, hex, sizeof(hex));
			kms_log_err("an object with id %s already exists on %s", hex, t->su.text);
			return KMS_ERR_EXISTS;
		}
	}
	return KMS_OK;
}

/* pkcs11:<token attrs of the token URI>;object=<label>;id=<id>;type=private?<its query> */
static int key_uri(struct slot_tok *t, const char *label, const uint8_t *id, size_t idlen,
		   char **out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE a;
	int r = KMS_OK;

	attr(&a, CKA_LABEL, label, strlen(label));
	r |= p11_kit_uri_set_attribute(t->su.u, &a);
	attr(&a, CKA_ID, id, idlen);
	r |= p11_kit_uri_set_attribute(t->su.u, &a);
	attr(&a, CKA_CLASS, &cls, sizeof(cls));
	r |= p11_kit_uri_set_attribute(t->su.u, &a);
	if (r != P11_KIT_URI_OK ||
	    p11_kit_uri_format(t->su.u, P11_KIT_URI_FOR_ANY, out) != P11_KIT_URI_OK)
		return KMS_ERR_ALLOC;
	return KMS_OK;
}

/* Signs and verifies once with a new key: a key that cannot sign is not returned. */
static int test_key(struct slot_tok *t, CK_OBJECT_HANDLE priv, const uint8_t pub[static 32])
{
	static const uint8_t msg[] = "p11kms new key self-test";
	uint8_t sig[64];
	CK_RV rv = pk11_sign_raw(t->m->f, t->h, priv, msg, sizeof(msg) - 1, sig);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_Sign (new key self-test)", t->su.text);
	if (kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig) != KMS_OK) {
		kms_log_err("new key on %s: test signature does not verify", t->su.text);
		return KMS_ERR_AUTH;
	}
	return KMS_OK;
}

static CK_RV gen_pair(struct slot_tok *t, const char *label, const uint8_t *id, size_t idlen,
		      const uint8_t *params, size_t plen, CK_OBJECT_HANDLE *pubh,
		      CK_OBJECT_HANDLE *privh)
{
	CK_MECHANISM mech = { CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0 };
	CK_ATTRIBUTE pt[6], kt[9];
	CK_ULONG np = 0, nk = 0;

	attr(&pt[np++], CKA_TOKEN, &ck_true, sizeof(ck_true));
	attr(&pt[np++], CKA_PRIVATE, &ck_false, sizeof(ck_false));
	attr(&pt[np++], CKA_VERIFY, &ck_true, sizeof(ck_true));
	attr(&pt[np++], CKA_EC_PARAMS, params, plen);
	attr(&pt[np++], CKA_LABEL, label, strlen(label));
	if (idlen) /* no CKA_ID: the token picks its object id (YubiHSM) */
		attr(&pt[np++], CKA_ID, id, idlen);
	attr(&kt[nk++], CKA_TOKEN, &ck_true, sizeof(ck_true));
	attr(&kt[nk++], CKA_PRIVATE, &ck_true, sizeof(ck_true));
	attr(&kt[nk++], CKA_SENSITIVE, &ck_true, sizeof(ck_true));
	attr(&kt[nk++], CKA_EXTRACTABLE, &ck_false, sizeof(ck_false));
	attr(&kt[nk++], CKA_SIGN, &ck_true, sizeof(ck_true));
	attr(&kt[nk++], CKA_LABEL, label, strlen(label));
	if (idlen)
		attr(&kt[nk++], CKA_ID, id, idlen);
	return t->m->f->C_GenerateKeyPair(t->h, &mech, pt, np, kt, nk, pubh, privh);
}

static int params_rejected(CK_RV rv)
{
	return rv == CKR_CURVE_NOT_SUPPORTED || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
	       rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_TEMPLATE_INCONSISTENT;
}

/*
 * Replaces the temporary CKA_ID by the derived one. A token that refuses keeps its own
 * id (YubiHSM ids are object ids): read it back so the URI names what is stored.
 */
static int settle_id(struct slot_tok *t, CK_OBJECT_HANDLE pubh, CK_OBJECT_HANDLE privh, uint8_t *id,
		     size_t cap, size_t *idlen, const uint8_t pub[static 32])
{
	uint8_t want[ID_LEN], *got = NULL;
	size_t glen = 0;
	CK_ATTRIBUTE a;
	int r;
	if ((r = derive_id(pub, want)))
		return r;
	attr(&a, CKA_ID, want, ID_LEN);
	if (t->m->f->C_SetAttributeValue(t->h, privh, &a, 1) == CKR_OK) {
		(void)t->m->f->C_SetAttributeValue(t->h, pubh, &a, 1);
	} else {
		kms_log_warn("token keeps its own CKA_ID for the new key (C_SetAttributeValue "
			     "refused)");
	}
	if ((r = pk11_get_attr(t->m->f, t->h, privh, CKA_ID, &got, &glen)))
		return r;
	if (glen == 0 || glen > cap) {
		free(got);
		return KMS_ERR_FORMAT;
	}
	memcpy(id, got, glen);
	*idlen = glen;
	free(got);
	return KMS_OK;
}

/* The CKA_ID the token gave an object (ids it picks itself: key_id_map u16be). */
static int stored_id(struct slot_tok *t, CK_OBJECT_HANDLE o, uint8_t *id, size_t cap, size_t *idlen)
{
	uint8_t *got = NULL;
	size_t glen = 0;
	int r = pk11_get_attr(t->m->f, t->h, o, CKA_ID, &got, &glen);
	if (r == KMS_OK && (glen == 0 || glen > cap))
		r = KMS_ERR_FORMAT;
	if (r == KMS_OK) {
		memcpy(id, got, glen);
		*idlen = glen;
	}
	free(got);
	return r;
}

/*
 * The URI's id=, checked against the profile: u16be tokens (YubiHSM) take only
 * 2-byte object ids. *have = 0 when the URI gives none.
 */
static int uri_id(struct slot_tok *t, uint8_t *id, size_t cap, size_t *idlen, int *have)
{
	CK_ATTRIBUTE *uid = p11_kit_uri_get_attribute(t->su.u, CKA_ID);
	*have = uid != NULL;
	if (!uid)
		return KMS_OK;
	if (uid->ulValueLen == 0 || uid->ulValueLen > cap)
		return KMS_ERR_FORMAT;
	if (t->prof.key_id_map == SLOT_KEYID_U16BE && uid->ulValueLen != 2) {
		kms_log_err("hsm-profile %s: CKA_ID is a 2-byte object id (e.g. id=%%00%%01), not "
			    "%lu bytes",
			    t->prof.name, (unsigned long)uid->ulValueLen);
		return KMS_ERR_FORMAT;
	}
	memcpy(id, uid->pValue, uid->ulValueLen);
	*idlen = uid->ulValueLen;
	return KMS_OK;
}

static int keygen_on(struct slot_tok *t, const char *label, char **key_uri_out,
		     uint8_t pub[static 32])
{
	CK_OBJECT_HANDLE pubh = CK_INVALID_HANDLE, privh = CK_INVALID_HANDLE;
	uint8_t id[64];
	size_t idlen = ID_LEN;
	int first_oid = (t->prof.quirks & SLOT_QUIRK_EC_PARAMS_OID) != 0, uid, r;
	int own_ids = t->prof.key_id_map == SLOT_KEYID_U16BE; /* the token numbers objects */
	CK_RV rv;

	if ((r = uri_id(t, id, sizeof(id), &idlen, &uid)))
		return r;
	if (!uid && own_ids)
		idlen = 0;
	else if (!uid && (r = kcrypto_random(id, ID_LEN))) /* temporary until pub is known */
		return r;
	if ((r = check_free(t, label, uid ? id : NULL, idlen)))
		return r;
	rv = gen_pair(t, label, id, idlen, first_oid ? ec_params_oid : ec_params_name,
		      first_oid ? sizeof(ec_params_oid) : sizeof(ec_params_name), &pubh, &privh);
	if (params_rejected(rv)) /* PKCS#11 3.0 allows both forms; tokens differ */
		rv = gen_pair(t, label, id, idlen, first_oid ? ec_params_name : ec_params_oid,
			      first_oid ? sizeof(ec_params_name) : sizeof(ec_params_oid), &pubh,
			      &privh);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_GenerateKeyPair (Ed25519)", t->su.text);
	if ((r = pk11_read_pub(t->m->f, t->h, privh, t->prof.ec_point, pub)) ||
	    (r = test_key(t, privh, pub)))
		goto fail;
	if (!uid && own_ids)
		r = stored_id(t, privh, id, sizeof(id), &idlen);
	else if (!uid)
		r = settle_id(t, pubh, privh, id, sizeof(id), &idlen, pub);
	if (r)
		goto fail;
	if ((r = key_uri(t, label, id, idlen, key_uri_out)))
		goto fail;
	return KMS_OK;
fail:
	(void)t->m->f->C_DestroyObject(t->h, privh);
	(void)t->m->f->C_DestroyObject(t->h, pubh);
	return r;
}

static int check_label(const char *label)
{
	size_t n = label ? strlen(label) : 0;
	if (n == 0 || n > 64) {
		kms_log_err("key label must be 1..64 characters");
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

int slot_keygen(const char *token_uri, const char *label, const struct slot_opts *o,
		char **key_uri_out, uint8_t pub[static 32])
{
	struct slot_tok t;
	int r;

	*key_uri_out = NULL;
	if ((r = check_label(label)) || (r = slot_tok_open(token_uri, o, 1, 1, &t)))
		return r;
	if (!t.prof.allow_keygen) {
		kms_log_err("hsm-profile %s does not allow key generation on %s", t.prof.name,
			    t.su.text);
		r = KMS_ERR_REFUSED;
	} else {
		r = keygen_on(&t, label, key_uri_out, pub);
	}
	if (r == KMS_OK)
		kms_log_info("generated Ed25519 key %s", *key_uri_out);
	slot_tok_close(&t);
	return r;
}

static CK_RV create_priv(struct slot_tok *t, const char *label, const uint8_t *id, size_t idlen,
			 const uint8_t seed[static 32], CK_OBJECT_HANDLE *privh)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_EC_EDWARDS;
	CK_ATTRIBUTE a[11];
	CK_ULONG n = 0;

	attr(&a[n++], CKA_CLASS, &cls, sizeof(cls));
	attr(&a[n++], CKA_KEY_TYPE, &kt, sizeof(kt));
	attr(&a[n++], CKA_TOKEN, &ck_true, sizeof(ck_true));
	attr(&a[n++], CKA_PRIVATE, &ck_true, sizeof(ck_true));
	attr(&a[n++], CKA_SENSITIVE, &ck_true, sizeof(ck_true));
	attr(&a[n++], CKA_EXTRACTABLE, &ck_false, sizeof(ck_false));
	attr(&a[n++], CKA_SIGN, &ck_true, sizeof(ck_true));
	attr(&a[n++], CKA_LABEL, label, strlen(label));
	if (idlen)
		attr(&a[n++], CKA_ID, id, idlen);
	attr(&a[n++], CKA_EC_PARAMS, ec_params_name, sizeof(ec_params_name));
	attr(&a[n++], CKA_VALUE, seed, 32);
	return t->m->f->C_CreateObject(t->h, a, n, privh);
}

static CK_RV create_pub(struct slot_tok *t, const char *label, const uint8_t *id, size_t idlen,
			const uint8_t pub[static 32], CK_OBJECT_HANDLE *pubh)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE kt = CKK_EC_EDWARDS;
	CK_ATTRIBUTE a[9];
	CK_ULONG n = 0;
	uint8_t point[34] = { 0x04, 0x20 };
	size_t plen = 34;

	memcpy(point + 2, pub, 32);
	if (t->prof.ec_point == SLOT_ECPOINT_RAW) {
		memmove(point, point + 2, 32);
		plen = 32;
	}
	attr(&a[n++], CKA_CLASS, &cls, sizeof(cls));
	attr(&a[n++], CKA_KEY_TYPE, &kt, sizeof(kt));
	attr(&a[n++], CKA_TOKEN, &ck_true, sizeof(ck_true));
	attr(&a[n++], CKA_PRIVATE, &ck_false, sizeof(ck_false));
	attr(&a[n++], CKA_VERIFY, &ck_true, sizeof(ck_true));
	attr(&a[n++], CKA_LABEL, label, strlen(label));
	if (idlen)
		attr(&a[n++], CKA_ID, id, idlen);
	attr(&a[n++], CKA_EC_PARAMS, ec_params_name, sizeof(ec_params_name));
	attr(&a[n++], CKA_EC_POINT, point, plen);
	return t->m->f->C_CreateObject(t->h, a, n, pubh);
}

static int import_on(struct slot_tok *t, const char *label, const uint8_t seed[static 32],
		     char **key_uri_out, uint8_t pub[static 32])
{
	CK_OBJECT_HANDLE pubh = CK_INVALID_HANDLE, privh = CK_INVALID_HANDLE;
	uint8_t id[64], s[32];
	size_t idlen = ID_LEN;
	int own_ids = t->prof.key_id_map == SLOT_KEYID_U16BE, uid;
	CK_RV rv;
	int r;

	memcpy(s, seed, 32); /* our copy, wiped at out: tokens may not take a const pointer */
	if ((r = kcrypto_ed25519_pub_from_seed(s, pub)) ||
	    (r = uri_id(t, id, sizeof(id), &idlen, &uid)))
		goto out;
	if (!uid && own_ids)
		idlen = 0; /* the token picks the object id; the public object gets it too */
	else if (!uid && (r = derive_id(pub, id)))
		goto out;
	if ((r = check_free(t, label, id, idlen)))
		goto out;
	rv = create_priv(t, label, id, idlen, s, &privh);
	if (rv != CKR_OK) {
		r = pk11_err(rv, "C_CreateObject (Ed25519 private key)", t->su.text);
		goto out;
	}
	if (idlen == 0 && (r = stored_id(t, privh, id, sizeof(id), &idlen)))
		goto fail;
	if (!(t->prof.quirks & SLOT_QUIRK_NO_PUBLIC_OBJ) &&
	    (rv = create_pub(t, label, id, idlen, pub, &pubh)) != CKR_OK) {
		r = pk11_err(rv, "C_CreateObject (Ed25519 public key)", t->su.text);
		goto fail;
	}
	if ((r = test_key(t, privh, pub)) || (r = key_uri(t, label, id, idlen, key_uri_out)))
		goto fail;
	r = KMS_OK;
	goto out;
fail:
	(void)t->m->f->C_DestroyObject(t->h, privh);
	if (pubh != CK_INVALID_HANDLE)
		(void)t->m->f->C_DestroyObject(t->h, pubh);
out:
	kms_wipe(s, sizeof(s));
	return r;
}

int slot_import_ed25519(const char *token_uri, const char *label, const uint8_t seed[static 32],
			const struct slot_opts *o, char **key_uri_out, uint8_t pub[static 32])
{
	struct slot_tok t;
	int r;

	*key_uri_out = NULL;
	if ((r = check_label(label)) || (r = slot_tok_open(token_uri, o, 1, 1, &t)))
		return r;
	if (!t.prof.allow_import) {
		kms_log_err("hsm-profile %s does not allow importing keys into %s", t.prof.name,
			    t.su.text);
		r = KMS_ERR_REFUSED;
	} else {
		r = import_on(&t, label, seed, key_uri_out, pub);
	}
	if (r == KMS_OK)
		kms_log_info("imported Ed25519 key %s", *key_uri_out);
	slot_tok_close(&t);
	return r;
}

/* ---- listing ---- */

typedef void (*list_cb)(void *ctx, const char *key_uri, const char *label, const uint8_t pub[32]);

static int list_key(struct slot_tok *t, P11KitUri *tok_uri, CK_OBJECT_HANDLE k, list_cb cb,
		    void *ctx)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ULONG kt = 0;
	CK_ATTRIBUTE a;
	uint8_t *id = NULL, *label = NULL, pub[32];
	size_t idlen = 0, labellen = 0;
	char *uri = NULL, *lab = NULL;
	int r = KMS_OK;

	if (pk11_get_ulong(t->m->f, t->h, k, CKA_KEY_TYPE, &kt) || kt != CKK_EC_EDWARDS ||
	    pk11_read_pub(t->m->f, t->h, k, t->prof.ec_point, pub))
		return KMS_OK; /* not an Ed25519 key we can use: not listed */
	if (pk11_get_attr(t->m->f, t->h, k, CKA_ID, &id, &idlen))
		idlen = 0; /* listed without id= */
	if (pk11_get_attr(t->m->f, t->h, k, CKA_LABEL, &label, &labellen))
		labellen = 0;
	if (!(lab = calloc(1, labellen + 1))) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if (label)
		memcpy(lab, label, labellen);
	p11_kit_uri_clear_attributes(tok_uri);
	if (label) {
		attr(&a, CKA_LABEL, label, labellen);
		(void)p11_kit_uri_set_attribute(tok_uri, &a);
	}
	if (id) {
		attr(&a, CKA_ID, id, idlen);
		(void)p11_kit_uri_set_attribute(tok_uri, &a);
	}
	attr(&a, CKA_CLASS, &cls, sizeof(cls));
	(void)p11_kit_uri_set_attribute(tok_uri, &a);
	if (p11_kit_uri_format(tok_uri, P11_KIT_URI_FOR_ANY, &uri) != P11_KIT_URI_OK) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	cb(ctx, uri, lab, pub);
out:
	free(uri);
	free(lab);
	free(id);
	free(label);
	return r;
}

static int list_token(struct slot_tok *t, const struct slot_opts *o, int login, list_cb cb,
		      void *ctx)
{
	CK_OBJECT_HANDLE keys[256];
	P11KitUri *u = NULL;
	size_t found = 0, i;
	struct pk11_login_src src = { t->su.pin_file, o->pin_env, o->allow_prompt, &t->prof, 0 };
	int r;

	if (login && (r = pk11_login_with(t->m->f, t->h, &t->ti, &src, t->su.text)))
		return r;
	if ((r = pk11_find(t->m->f, t->h, CKO_PRIVATE_KEY, NULL, 0, keys, 256, &found)))
		return r;
	if (!(u = p11_kit_uri_new()))
		return KMS_ERR_ALLOC;
	/* Each key's URI: this token's label and serial, plus the caller's query. */
	*p11_kit_uri_get_token_info(u) = t->ti;
	memset(p11_kit_uri_get_token_info(u)->manufacturerID, 0, 32);
	memset(p11_kit_uri_get_token_info(u)->model, 0, 16);
	if (t->su.module_path)
		p11_kit_uri_set_module_path(u, t->su.module_path);
	if (t->su.module_name)
		p11_kit_uri_set_module_name(u, t->su.module_name);
	if (p11_kit_uri_get_pin_source(t->su.u))
		p11_kit_uri_set_pin_source(u, p11_kit_uri_get_pin_source(t->su.u));
	for (i = 0; i < found && i < 256 && r == KMS_OK; i++)
		r = list_key(t, u, keys[i], cb, ctx);
	p11_kit_uri_free(u);
	return r;
}

/* Lists one token (slot sid) of an already parsed URI and loaded module. */
static int list_slot(struct slot_tok *t, CK_SLOT_ID sid, const struct slot_opts *o,
		     const char *modpath, list_cb cb, void *ctx)
{
	int login = t->su.pin_file || o->pin_env || o->allow_prompt, r;
	CK_RV rv;

	t->slot = sid;
	if (t->m->f->C_GetTokenInfo(sid, &t->ti) != CKR_OK)
		return KMS_OK; /* gone since C_GetSlotList */
	if (!p11_kit_uri_match_token_info(t->su.u, &t->ti) ||
	    !(t->ti.flags & CKF_TOKEN_INITIALIZED)) /* e.g. SoftHSM2's free slot */
		return KMS_OK;
	if (o->profile)
		r = slot_profile_load(o->profile, o->profiles_dir, &t->prof);
	else
		r = slot_profile_detect(o->profiles_dir, &t->ti, modpath, &t->prof);
	if (r)
		return r;
	rv = t->m->f->C_OpenSession(sid, CKF_SERIAL_SESSION, NULL, NULL, &t->h);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_OpenSession", t->su.text);
	r = list_token(t, o, login, cb, ctx);
	(void)t->m->f->C_CloseSession(t->h);
	return r;
}

int slot_list_keys(const char *token_or_module_uri, const struct slot_opts *o,
		   void (*cb)(void *ctx, const char *key_uri, const char *label,
			      const uint8_t pub[32]),
		   void *ctx)
{
	static const struct slot_opts none;
	struct slot_tok t;
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64, i;
	char *modpath = NULL;
	CK_RV rv;
	int r;

	if (!o)
		o = &none;
	memset(&t, 0, sizeof(t));
	if ((r = slot_uri_parse((const uint8_t *)token_or_module_uri, strlen(token_or_module_uri),
				&t.su)) ||
	    (r = slot_uri_module(&t.su, o, &modpath)) || (r = pk11_module_get(modpath, 0, &t.m)))
		goto out;
	if ((r = pk11_module_rdlock(t.m, 0)))
		goto out;
	rv = t.m->f->C_GetSlotList(CK_TRUE, ids, &n);
	if (rv != CKR_OK)
		r = pk11_err(rv, "C_GetSlotList", t.su.text);
	/* Every token the URI matches: a module-only URI lists the whole module. */
	for (i = 0; rv == CKR_OK && i < n && r == KMS_OK; i++)
		r = list_slot(&t, ids[i], o, modpath, cb, ctx);
	pk11_module_unlock(t.m);
out:
	free(modpath);
	slot_tok_close(&t);
	return r;
}
