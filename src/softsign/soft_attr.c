/* SPDX-License-Identifier: Apache-2.0 */
/* Attributes of the softsign objects and template matching. */
#include <string.h>

#include "soft_int.h"

static CK_RV aval_bool(struct soft_aval *v, CK_BBOOL b)
{
	v->u.b = b;
	v->p = &v->u.b;
	v->len = sizeof(CK_BBOOL);
	return CKR_OK;
}

static CK_RV aval_ulong(struct soft_aval *v, CK_ULONG ul)
{
	v->u.ul = ul;
	v->p = &v->u.ul;
	v->len = sizeof(CK_ULONG);
	return CKR_OK;
}

static CK_RV aval_bytes(struct soft_aval *v, const void *p, size_t len)
{
	v->p = p;
	v->len = len;
	return CKR_OK;
}

/* Attributes both objects of a pair have. */
static CK_RV common_attr(const struct soft_key *k, int priv, CK_ATTRIBUTE_TYPE t,
			 struct soft_aval *v)
{
	switch (t) {
	case CKA_CLASS:
		return aval_ulong(v, priv ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY);
	case CKA_KEY_TYPE:
		return aval_ulong(v, CKK_EC_EDWARDS);
	case CKA_TOKEN:
		return aval_bool(v, CK_TRUE);
	case CKA_PRIVATE:
	case CKA_MODIFIABLE:
	case CKA_COPYABLE:
	case CKA_DESTROYABLE:
	case CKA_DERIVE:
	case CKA_LOCAL:
		return aval_bool(v, CK_FALSE);
	case CKA_LABEL:
		return aval_bytes(v, k->label, strlen(k->label));
	case CKA_ID:
		return aval_bytes(v, k->id, sizeof(k->id));
	case CKA_START_DATE:
	case CKA_END_DATE:
	case CKA_SUBJECT:
		return aval_bytes(v, "", 0);
	case CKA_KEY_GEN_MECHANISM:
		return aval_ulong(v, CK_UNAVAILABLE_INFORMATION);
	case CKA_ALLOWED_MECHANISMS:
		return aval_ulong(v, CKM_EDDSA);
	case CKA_EC_PARAMS:
		return aval_bytes(v, SOFTSIGN_EC_PARAMS_DER, SOFTSIGN_EC_PARAMS_DER_LEN);
	case CKA_EC_POINT:
		/* DER OCTET STRING holding the 32-byte encoded point */
		v->u.buf[0] = 0x04;
		v->u.buf[1] = 0x20;
		memcpy(v->u.buf + 2, k->k.pub, 32);
		return aval_bytes(v, v->u.buf, 34);
	default:
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
}

CK_RV soft_attr_get(const struct soft_key *k, int priv, CK_ATTRIBUTE_TYPE t, struct soft_aval *v)
{
	memset(v, 0, sizeof(*v));
	if (priv) {
		switch (t) {
		case CKA_VALUE:
			return CKR_ATTRIBUTE_SENSITIVE;
		case CKA_SENSITIVE:
		case CKA_SIGN:
			return aval_bool(v, CK_TRUE);
		case CKA_DECRYPT:
		case CKA_SIGN_RECOVER:
		case CKA_UNWRAP:
		case CKA_EXTRACTABLE:
		case CKA_ALWAYS_SENSITIVE:
		case CKA_NEVER_EXTRACTABLE:
		case CKA_WRAP_WITH_TRUSTED:
		case CKA_ALWAYS_AUTHENTICATE:
			return aval_bool(v, CK_FALSE);
		default:
			break;
		}
	} else {
		switch (t) {
		case CKA_VERIFY:
			return aval_bool(v, CK_TRUE);
		case CKA_ENCRYPT:
		case CKA_VERIFY_RECOVER:
		case CKA_WRAP:
		case CKA_TRUSTED:
			return aval_bool(v, CK_FALSE);
		default:
			break;
		}
	}
	return common_attr(k, priv, t, v);
}

int soft_attr_match(const struct soft_key *k, int priv, const CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
	for (CK_ULONG i = 0; i < n; i++) {
		struct soft_aval v;

		if (soft_attr_get(k, priv, tmpl[i].type, &v) != CKR_OK)
			return 0;
		if (tmpl[i].ulValueLen != v.len)
			return 0;
		if (v.len > 0 && (!tmpl[i].pValue || memcmp(tmpl[i].pValue, v.p, v.len) != 0))
			return 0;
	}
	return 1;
}

int soft_ec_params_ok(const void *p, CK_ULONG len)
{
	if (!p)
		return 0;
	if (len == SOFTSIGN_EC_PARAMS_DER_LEN && memcmp(p, SOFTSIGN_EC_PARAMS_DER, len) == 0)
		return 1;
	return len == SOFTSIGN_EC_PARAMS_OID_DER_LEN &&
	       memcmp(p, SOFTSIGN_EC_PARAMS_OID_DER, len) == 0;
}
