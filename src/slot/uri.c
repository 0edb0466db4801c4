/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 7512 URIs through p11-kit, with the rules p11kms adds (no pin-value, private keys only). */
#include "slot_int.h"

#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"

#define URI_MAX_LEN 4096

void slot_uri_clear(struct slot_uri *su)
{
	if (su->u)
		p11_kit_uri_free(su->u);
	free(su->text);
	free(su->pin_file);
	memset(su, 0, sizeof(*su));
}

static int check_type(P11KitUri *u, const char *text)
{
	CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(u, CKA_CLASS);
	CK_OBJECT_CLASS cls;
	if (!a)
		return KMS_OK;
	if (a->ulValueLen != sizeof(cls) || !a->pValue)
		return KMS_ERR_FORMAT;
	memcpy(&cls, a->pValue, sizeof(cls));
	if (cls != CKO_PRIVATE_KEY) {
		kms_log_err("PKCS#11 URI %s: type must be \"private\" (the signing key)", text);
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

static int set_pin_file(struct slot_uri *su, const char *text)
{
	const char *ps = p11_kit_uri_get_pin_source(su->u);
	if (!ps)
		return KMS_OK;
	if (strncmp(ps, "file:", 5) == 0)
		ps += 5;
	if (ps[0] != '/') {
		kms_log_err("PKCS#11 URI %s: pin-source must be an absolute file path", text);
		return KMS_ERR_FORMAT;
	}
	if (!(su->pin_file = strdup(ps)))
		return KMS_ERR_ALLOC;
	return KMS_OK;
}

int slot_uri_parse(const uint8_t *p, size_t len, struct slot_uri *out)
{
	char *text = NULL;
	int r = KMS_ERR_INTERNAL, pr;

	memset(out, 0, sizeof(*out));
	if (len > URI_MAX_LEN || memchr(p, '\0', len)) {
		kms_log_err("PKCS#11 URI too long or has a NUL byte (%zu bytes)", len);
		return KMS_ERR_FORMAT;
	}
	if (!(text = malloc(len + 1)) || !(out->u = p11_kit_uri_new())) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	memcpy(text, p, len);
	text[len] = '\0';
	pr = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, out->u);
	if (pr != P11_KIT_URI_OK) {
		/* The text may carry a pin-value: log only the p11-kit message. */
		kms_log_err("invalid PKCS#11 URI: %s", p11_kit_uri_message(pr));
		r = KMS_ERR_FORMAT;
		goto out;
	}
	if (p11_kit_uri_get_pin_value(out->u)) {
		kms_log_err("PKCS#11 URI carries pin-value: PINs never go in URIs or configs; "
			    "use pin-source=<file> (mode 0600) or an environment variable");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	if (p11_kit_uri_format(out->u, P11_KIT_URI_FOR_ANY, &out->text) != P11_KIT_URI_OK) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(out->u)) {
		kms_log_err("PKCS#11 URI %s has an attribute p11-kit does not know", text);
		r = KMS_ERR_FORMAT;
		goto out;
	}
	if ((r = check_type(out->u, out->text)) || (r = set_pin_file(out, out->text)))
		goto out;
	out->module_path = p11_kit_uri_get_module_path(out->u);
	out->module_name = p11_kit_uri_get_module_name(out->u);
	out->has_id = p11_kit_uri_get_attribute(out->u, CKA_ID) != NULL;
	out->has_label = p11_kit_uri_get_attribute(out->u, CKA_LABEL) != NULL;
	r = KMS_OK;
out:
	if (text)
		kms_wipe(text, len);
	free(text);
	if (r)
		slot_uri_clear(out);
	return r;
}

int slot_uri_validate(const char *uri)
{
	struct slot_uri su;
	int r;
	if (!uri)
		return KMS_ERR_FORMAT;
	if ((r = slot_uri_parse((const uint8_t *)uri, strlen(uri), &su)))
		return r;
	if (!su.module_path && !su.module_name) {
		kms_log_warn("PKCS#11 URI %s names no module (module-path or module-name); the "
			     "hsm-profile's module_paths will be searched",
			     su.text);
	}
	slot_uri_clear(&su);
	return KMS_OK;
}
