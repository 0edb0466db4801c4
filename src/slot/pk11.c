/* SPDX-License-Identifier: Apache-2.0 */
/* pk11_: thin PKCS#11 helpers: error mapping, token and object lookup, attributes, login. */
#include "slot_int.h"

#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"

#define MAX_SLOTS 64

int pk11_rv_to_err(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return KMS_OK;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_LEN_RANGE:
		return KMS_ERR_PIN_INCORRECT;
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		return KMS_ERR_PIN_LOCKED;
	case CKR_HOST_MEMORY:
		return KMS_ERR_ALLOC;
	case CKR_DATA_LEN_RANGE:
		return KMS_ERR_TOO_LARGE;
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_SLOT_ID_INVALID:
		return KMS_ERR_NOT_FOUND;
	case CKR_MECHANISM_INVALID:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_FUNCTION_NOT_SUPPORTED:
		return KMS_ERR_UNSUPPORTED;
	default:
		return KMS_ERR_PKCS11;
	}
}

int pk11_err(CK_RV rv, const char *fn, const char *what)
{
	kms_log_err("%s failed: %s (0x%lx) token=%s", fn, p11_kit_strerror(rv), (unsigned long)rv,
		    what ? what : "?");
	return pk11_rv_to_err(rv);
}

int pk11_rv_recoverable(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID:
	/* An operation left open by a failed call: a new session starts clean. */
	case CKR_OPERATION_ACTIVE:
		return 1;
	default:
		return 0;
	}
}

void pk11_field(const unsigned char *field, size_t n, char *out, size_t cap)
{
	size_t l = p11_kit_space_strlen(field, n);
	if (cap == 0)
		return;
	if (l >= cap)
		l = cap - 1;
	memcpy(out, field, l);
	out[l] = '\0';
}

void pk11_hex(const uint8_t *p, size_t len, char *out, size_t cap)
{
	static const char hx[] = "0123456789abcdef";
	size_t i, o = 0;
	if (cap == 0)
		return;
	for (i = 0; i < len && o + 2 < cap; i++) {
		out[o++] = hx[p[i] >> 4];
		out[o++] = hx[p[i] & 15];
	}
	out[o] = '\0';
	if (i < len && cap >= 4)
		memcpy(out + cap - 4, "...", 4);
}

static void log_token(const char *prefix, CK_SLOT_ID id, const CK_TOKEN_INFO *ti)
{
	char label[40], serial[20], man[40], model[20];
	pk11_field(ti->label, sizeof(ti->label), label, sizeof(label));
	pk11_field(ti->serialNumber, sizeof(ti->serialNumber), serial, sizeof(serial));
	pk11_field(ti->manufacturerID, sizeof(ti->manufacturerID), man, sizeof(man));
	pk11_field(ti->model, sizeof(ti->model), model, sizeof(model));
	kms_log_err("  %s slot=%lu token=\"%s\" serial=%s manufacturer=\"%s\" model=\"%s\"", prefix,
		    (unsigned long)id, label, serial, man, model);
}

/* Slots without a token say why in their description (a reader with no card, softsign's
 * "mode 0644 too open"): worth showing when no token matched. */
static void log_empty_slots(CK_FUNCTION_LIST *f)
{
	CK_SLOT_ID ids[MAX_SLOTS];
	CK_ULONG n = MAX_SLOTS, i;
	if (f->C_GetSlotList(CK_FALSE, ids, &n) != CKR_OK)
		return;
	for (i = 0; i < n; i++) {
		CK_SLOT_INFO si;
		char desc[70];
		if (f->C_GetSlotInfo(ids[i], &si) != CKR_OK || (si.flags & CKF_TOKEN_PRESENT))
			continue;
		pk11_field(si.slotDescription, sizeof(si.slotDescription), desc, sizeof(desc));
		kms_log_err("  empty slot=%lu: %s", (unsigned long)ids[i], desc);
	}
}

int pk11_find_token_q(CK_FUNCTION_LIST *f, P11KitUri *u, const char *desc, CK_SLOT_ID *slot,
		      CK_TOKEN_INFO *ti, int report, CK_RV *rvp)
{
	CK_SLOT_ID ids[MAX_SLOTS];
	CK_TOKEN_INFO infos[MAX_SLOTS];
	CK_ULONG n = MAX_SLOTS, i;
	size_t nmatch = 0, first = 0;
	CK_RV rv;

	rv = f->C_GetSlotList(CK_TRUE, ids, &n);
	if (rvp)
		*rvp = rv;
	if (rv != CKR_OK)
		return report ? pk11_err(rv, "C_GetSlotList", desc) : pk11_rv_to_err(rv);
	for (i = 0; i < n; i++) {
		rv = f->C_GetTokenInfo(ids[i], &infos[i]);
		if (rv != CKR_OK) {
			memset(&infos[i], 0, sizeof(infos[i]));
			continue;
		}
		if (p11_kit_uri_match_token_info(u, &infos[i])) {
			if (nmatch++ == 0)
				first = i;
		}
	}
	if (nmatch == 1) {
		*slot = ids[first];
		*ti = infos[first];
		return KMS_OK;
	}
	if (nmatch == 0 && !report)
		return KMS_ERR_NOT_FOUND;
	if (nmatch == 0)
		kms_log_err("no token matches %s; tokens present: %lu", desc, (unsigned long)n);
	else
		kms_log_err("%zu tokens match %s; add token=, serial= or model= to the URI:",
			    nmatch, desc);
	for (i = 0; i < n; i++)
		if (nmatch == 0 || p11_kit_uri_match_token_info(u, &infos[i]))
			log_token(nmatch ? "candidate" : "present", ids[i], &infos[i]);
	if (nmatch == 0)
		log_empty_slots(f);
	return nmatch == 0 ? KMS_ERR_NOT_FOUND : KMS_ERR_AMBIGUOUS;
}

int pk11_find_token(CK_FUNCTION_LIST *f, P11KitUri *u, const char *desc, CK_SLOT_ID *slot,
		    CK_TOKEN_INFO *ti)
{
	return pk11_find_token_q(f, u, desc, slot, ti, 1, NULL);
}

static int logged_in(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h)
{
	CK_SESSION_INFO si;
	if (f->C_GetSessionInfo(h, &si) != CKR_OK)
		return 0;
	return si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
}

/* What the token said about a login, for the operator. */
static int login_result(CK_RV rv, const CK_TOKEN_INFO *ti, const struct slot_profile *prof,
			const char *desc)
{
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		return KMS_OK;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
		kms_log_err("C_Login: PIN incorrect for %s%s", desc,
			    (ti->flags & CKF_USER_PIN_FINAL_TRY) ?
				    " (final try: one more failure locks the PIN)" :
				    " (the token locks the PIN after repeated failures)");
		return KMS_ERR_PIN_INCORRECT;
	}
	if (rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED) {
		kms_log_err("C_Login: user PIN is LOCKED for %s (%s); the security officer must "
			    "unlock or reset it",
			    desc, p11_kit_strerror(rv));
		return KMS_ERR_PIN_LOCKED;
	}
	/* yubihsm_pkcs11 answers a PIN of the wrong shape with CKR_ARGUMENTS_BAD. */
	if (rv == CKR_ARGUMENTS_BAD && prof && prof->pin_id_hex) {
		kms_log_err("C_Login: %s refused the PIN's format (CKR_ARGUMENTS_BAD); hsm-profile "
			    "%s expects %s",
			    desc, prof->name, prof->pin_format);
		return KMS_ERR_FORMAT;
	}
	return pk11_err(rv, "C_Login", desc);
}

int pk11_login_with(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, const CK_TOKEN_INFO *ti,
		    const struct pk11_login_src *src, const char *desc)
{
	char *pin = NULL;
	size_t len = 0;
	CK_RV rv;
	int r;

	if (!(ti->flags & CKF_LOGIN_REQUIRED))
		return KMS_OK;
	if (logged_in(f, h)) {
		if (!src->force)
			return KMS_OK;
		(void)f->C_Logout(h); /* its answer does not matter: we log in next */
	}
	if ((ti->flags & CKF_PROTECTED_AUTHENTICATION_PATH) && !src->pin_file && !src->pin_env) {
		rv = f->C_Login(h, CKU_USER, NULL, 0); /* PIN pad on the reader */
	} else {
		if ((r = slot_pin_get(src->pin_file, src->pin_env, src->allow_prompt, desc, &pin,
				      &len)))
			return r;
		/* A PIN of the wrong shape is refused here: it would only use up a try. */
		if (src->prof && (r = slot_pin_check(src->prof, pin, len, desc))) {
			kms_free_secret(pin, len + 1);
			return r;
		}
		rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)pin, (CK_ULONG)len);
		kms_free_secret(pin, len + 1); /* the PIN lives no longer than C_Login */
	}
	return login_result(rv, ti, src->prof, desc);
}

int pk11_login(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, const CK_TOKEN_INFO *ti,
	       const char *pin_file, const char *pin_env, int allow_prompt, const char *desc)
{
	struct pk11_login_src src = { pin_file, pin_env, allow_prompt, NULL, 0 };
	return pk11_login_with(f, h, ti, &src, desc);
}

int pk11_find(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
	      const CK_ATTRIBUTE *extra, size_t n, CK_OBJECT_HANDLE *out, size_t cap, size_t *found)
{
	CK_ATTRIBUTE tmpl[8];
	CK_OBJECT_HANDLE more[16];
	CK_ULONG got = 0, nt = 0;
	CK_RV rv;
	size_t i;

	*found = 0;
	if (n > 7)
		return KMS_ERR_INTERNAL;
	tmpl[nt].type = CKA_CLASS;
	tmpl[nt].pValue = &cls;
	tmpl[nt++].ulValueLen = sizeof(cls);
	for (i = 0; i < n; i++)
		tmpl[nt++] = extra[i];
	rv = f->C_FindObjectsInit(h, tmpl, nt);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_FindObjectsInit", NULL);
	rv = f->C_FindObjects(h, out, (CK_ULONG)cap, &got);
	*found = got;
	while (rv == CKR_OK && got == cap) { /* count the rest for the ambiguity message */
		rv = f->C_FindObjects(h, more, 16, &got);
		*found += got;
		if (got < 16)
			break;
	}
	(void)f->C_FindObjectsFinal(h);
	if (rv != CKR_OK)
		return pk11_err(rv, "C_FindObjects", NULL);
	return KMS_OK;
}

int pk11_get_attr(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
		  CK_ATTRIBUTE_TYPE type, uint8_t **val, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	*val = NULL;
	*len = 0;
	rv = f->C_GetAttributeValue(h, o, &a, 1);
	if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
	    a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return KMS_ERR_NOT_FOUND;
	if (rv != CKR_OK)
		return pk11_rv_to_err(rv) ? pk11_rv_to_err(rv) : KMS_ERR_PKCS11;
	if (a.ulValueLen > 65536)
		return KMS_ERR_TOO_LARGE;
	if (!(a.pValue = malloc(a.ulValueLen ? a.ulValueLen : 1)))
		return KMS_ERR_ALLOC;
	rv = f->C_GetAttributeValue(h, o, &a, 1);
	if (rv != CKR_OK) {
		free(a.pValue);
		return pk11_rv_to_err(rv) ? pk11_rv_to_err(rv) : KMS_ERR_PKCS11;
	}
	*val = a.pValue;
	*len = a.ulValueLen;
	return KMS_OK;
}

int pk11_get_bool(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
		  CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = CK_FALSE;
	CK_ATTRIBUTE a = { type, &v, sizeof(v) };
	if (f->C_GetAttributeValue(h, o, &a, 1) != CKR_OK || a.ulValueLen != sizeof(v))
		return -1;
	return v ? 1 : 0;
}

int pk11_get_ulong(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
		   CK_ATTRIBUTE_TYPE type, CK_ULONG *out)
{
	CK_ATTRIBUTE a = { type, out, sizeof(*out) };
	CK_RV rv = f->C_GetAttributeValue(h, o, &a, 1);
	if (rv != CKR_OK)
		return pk11_rv_to_err(rv) ? pk11_rv_to_err(rv) : KMS_ERR_PKCS11;
	return a.ulValueLen == sizeof(*out) ? KMS_OK : KMS_ERR_FORMAT;
}

int pk11_ec_point_decode(const uint8_t *p, size_t len, enum slot_ec_point form,
			 uint8_t pub[static 32])
{
	if (len == 34 && p[0] == 0x04 && p[1] == 0x20 && form != SLOT_ECPOINT_RAW) {
		memcpy(pub, p + 2, 32);
		return KMS_OK;
	}
	if (len == 32 && form != SLOT_ECPOINT_DER) {
		memcpy(pub, p, 32);
		return KMS_OK;
	}
	return KMS_ERR_FORMAT;
}

int pk11_ec_params_is_ed25519(const uint8_t *p, size_t len)
{
	static const uint8_t oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
	static const uint8_t name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
					'd',  's',  '2', '5', '5', '1', '9' };
	return (len == sizeof(oid) && memcmp(p, oid, len) == 0) ||
	       (len == sizeof(name) && memcmp(p, name, len) == 0);
}

static int pub_from_object(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
			   enum slot_ec_point form, uint8_t pub[static 32])
{
	uint8_t *v = NULL;
	size_t len = 0;
	int r = pk11_get_attr(f, h, o, CKA_EC_POINT, &v, &len);
	if (r)
		return r;
	r = pk11_ec_point_decode(v, len, form, pub);
	if (r)
		kms_log_err("CKA_EC_POINT has %zu bytes, not a %s Ed25519 point", len,
			    form == SLOT_ECPOINT_DER ? "DER OCTET STRING" :
			    form == SLOT_ECPOINT_RAW ? "raw 32-byte" :
						       "DER or raw");
	free(v);
	return r;
}

int pk11_read_pub(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv,
		  enum slot_ec_point form, uint8_t pub[static 32])
{
	CK_ATTRIBUTE tmpl[2];
	CK_OBJECT_HANDLE pubs[2];
	uint8_t *id = NULL, *label = NULL;
	size_t idlen = 0, labellen = 0, n = 0, found = 0;
	int r;

	r = pub_from_object(f, h, priv, form, pub);
	if (r != KMS_ERR_NOT_FOUND)
		return r;
	/* SoftHSM2 and most tokens keep the point only on the public object. */
	if (pk11_get_attr(f, h, priv, CKA_ID, &id, &idlen) == KMS_OK && idlen > 0) {
		tmpl[n].type = CKA_ID;
		tmpl[n].pValue = id;
		tmpl[n++].ulValueLen = (CK_ULONG)idlen;
	}
	if (pk11_get_attr(f, h, priv, CKA_LABEL, &label, &labellen) == KMS_OK && labellen > 0) {
		tmpl[n].type = CKA_LABEL;
		tmpl[n].pValue = label;
		tmpl[n++].ulValueLen = (CK_ULONG)labellen;
	}
	r = KMS_ERR_NOT_FOUND;
	if (n > 0 && pk11_find(f, h, CKO_PUBLIC_KEY, tmpl, n, pubs, 2, &found) == KMS_OK &&
	    found == 1)
		r = pub_from_object(f, h, pubs[0], form, pub);
	if (r == KMS_ERR_NOT_FOUND)
		kms_log_err("no CKA_EC_POINT on the private key and %zu public objects with its "
			    "CKA_ID/label",
			    found);
	free(id);
	free(label);
	return r;
}

CK_RV pk11_sign_raw(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key,
		    const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	CK_MECHANISM mech = { CKM_EDDSA, NULL, 0 };
	CK_ULONG siglen = 64;
	CK_RV rv;

	rv = f->C_SignInit(h, &mech, key);
	if (rv != CKR_OK)
		return rv;
	rv = f->C_Sign(h, (CK_BYTE *)(uintptr_t)msg, (CK_ULONG)len, sig, &siglen);
	if (rv == CKR_OK && siglen != 64)
		return CKR_GENERAL_ERROR;
	return rv;
}
