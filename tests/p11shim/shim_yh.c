/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What Yubico's yubihsm_pkcs11.so does differently from SoftHSM2, emulated over it:
 * the PIN "<4 hex digits of the auth key id><password>", 2-byte object ids as CKA_ID,
 * its token info. The EdDSA input cap, the time per signature and the sessions lost on
 * a USB reset are applied in p11shim.c. Behaviour follows yubihsm-shell's
 * pkcs11/yubihsm_pkcs11.c (C_Login, C_LoginUser, C_GetTokenInfo) as read, not copied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "p11kms/enc.h"
#include "p11shim.h"

/* yubihsm_pkcs11: the password part is 8..64 bytes. */
#define YH_PW_MIN 8
#define YH_PW_MAX 64

CK_RV shim_yh_pin(const struct shim_yh *yh, const CK_UTF8CHAR *pin, CK_ULONG len,
		  const CK_UTF8CHAR **pw, CK_ULONG *pwlen)
{
	CK_ULONG user = len < 4 ? len : 4;
	uint8_t id[2];
	size_t n = 0;
	if (!pin)
		return CKR_ARGUMENTS_BAD;
	/* The module splits first, then checks the password length, then the id. */
	if (len - user < YH_PW_MIN || len - user > YH_PW_MAX || user != 4)
		return CKR_ARGUMENTS_BAD;
	if (enc_hex_decode((const char *)pin, 4, id, sizeof(id), &n) != KMS_OK || n != 2)
		return CKR_PIN_INCORRECT; /* "first four digits must be [0-9A-Fa-f]" */
	/* No such authentication key: the device refuses the session. */
	if ((unsigned)(id[0] << 8 | id[1]) != yh->auth_key_id)
		return CKR_PIN_INCORRECT;
	*pw = pin + 4;
	*pwlen = len - 4;
	return CKR_OK;
}

static void pad(unsigned char *field, size_t n, const char *s)
{
	size_t l = strlen(s);
	memset(field, ' ', n);
	memcpy(field, s, l < n ? l : n);
}

void shim_yh_token_info(CK_TOKEN_INFO *ti)
{
	char serial[17];
	uint64_t v = 0;
	if (!(ti->flags & CKF_TOKEN_INITIALIZED))
		return; /* SoftHSM2's free slot: not a device */
	/* An 8-digit decimal serial, stable for a given SoftHSM2 token. */
	for (size_t i = 0; i < sizeof(ti->serialNumber); i++)
		v = v * 131 + ti->serialNumber[i];
	snprintf(serial, sizeof(serial), "%08u", (unsigned)(v % 100000000u));
	pad(ti->label, sizeof(ti->label), "YubiHSM");
	pad(ti->manufacturerID, sizeof(ti->manufacturerID), "Yubico (www.yubico.com)");
	pad(ti->model, sizeof(ti->model), "YubiHSM");
	pad(ti->serialNumber, sizeof(ti->serialNumber), serial);
	ti->flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED;
}

int shim_yh_sets_id(const CK_ATTRIBUTE *t, CK_ULONG n)
{
	for (CK_ULONG i = 0; i < n; i++)
		if (t[i].type == CKA_ID)
			return 1;
	return 0;
}

CK_RV shim_yh_template(const CK_ATTRIBUTE *t, CK_ULONG n, const uint8_t id2[2], CK_ATTRIBUTE **out,
		       CK_ULONG *nout)
{
	CK_ATTRIBUTE *c;
	int have = 0;
	*out = NULL;
	for (CK_ULONG i = 0; i < n; i++) {
		if (t[i].type != CKA_ID)
			continue;
		if (t[i].ulValueLen != 2) /* an object id is 16 bits */
			return CKR_ATTRIBUTE_VALUE_INVALID;
		have = 1;
	}
	if (!(c = calloc(n + 1, sizeof(*c))))
		return CKR_HOST_MEMORY;
	if (n)
		memcpy(c, t, n * sizeof(*c));
	*nout = n;
	if (!have) {
		c[n].type = CKA_ID;
		c[n].pValue = (void *)(uintptr_t)id2;
		c[n].ulValueLen = 2;
		*nout = n + 1;
	}
	*out = c;
	return CKR_OK;
}

static const CK_ATTRIBUTE *find_attr(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
	for (CK_ULONG i = 0; i < n; i++)
		if (t[i].type == type)
			return &t[i];
	return NULL;
}

int shim_yh_is_ed25519_import(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS want)
{
	const CK_ATTRIBUTE *c = find_attr(t, n, CKA_CLASS), *k = find_attr(t, n, CKA_KEY_TYPE);
	return c && k && c->ulValueLen == sizeof(CK_OBJECT_CLASS) &&
	       k->ulValueLen == sizeof(CK_KEY_TYPE) && *(CK_OBJECT_CLASS *)c->pValue == want &&
	       *(CK_KEY_TYPE *)k->pValue == CKK_EC_EDWARDS;
}

CK_RV shim_yh_public_twin(const CK_ATTRIBUTE *priv, CK_ULONG n, struct shim_yh_twin *tw)
{
	static CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	static CK_KEY_TYPE kt = CKK_EC_EDWARDS;
	static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	const CK_ATTRIBUTE *v = find_attr(priv, n, CKA_VALUE), *a;
	EVP_PKEY *pk;
	size_t len = 32;
	CK_ULONG m = 0;
	if (!v || v->ulValueLen != 32)
		return CKR_TEMPLATE_INCOMPLETE;
	pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, v->pValue, 32);
	if (!pk || EVP_PKEY_get_raw_public_key(pk, tw->point + 2, &len) != 1 || len != 32) {
		EVP_PKEY_free(pk);
		return CKR_FUNCTION_FAILED;
	}
	EVP_PKEY_free(pk);
	tw->point[0] = 0x04; /* DER OCTET STRING, as SoftHSM2 keeps it */
	tw->point[1] = 0x20;
	tw->t[m++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	tw->t[m++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kt, sizeof(kt) };
	tw->t[m++] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof(yes) };
	tw->t[m++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &no, sizeof(no) };
	tw->t[m++] = (CK_ATTRIBUTE){ CKA_VERIFY, &yes, sizeof(yes) };
	tw->t[m++] = (CK_ATTRIBUTE){ CKA_EC_POINT, tw->point, sizeof(tw->point) };
	if ((a = find_attr(priv, n, CKA_ID)))
		tw->t[m++] = *a;
	if ((a = find_attr(priv, n, CKA_LABEL)))
		tw->t[m++] = *a;
	if ((a = find_attr(priv, n, CKA_EC_PARAMS)))
		tw->t[m++] = *a;
	tw->n = m;
	return CKR_OK;
}
