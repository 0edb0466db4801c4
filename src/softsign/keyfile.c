/* SPDX-License-Identifier: Apache-2.0 */
/* Ed25519 key files: tmkms softsign base64 (32/64/96 bytes) and priv_validator_key.json. */
#include "p11kms/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ed25519_exp.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"

#define PV_PRIV_TYPE "tendermint/PrivKeyEd25519"
#define PV_PUB_TYPE "tendermint/PubKeyEd25519"

const char *keyfile_kind_name(enum keyfile_kind kind)
{
	switch (kind) {
	case KEYFILE_SEED32:
		return "seed32";
	case KEYFILE_EXPANDED64:
		return "expanded64";
	case KEYFILE_YUBIHSM96:
		return "yubihsm96";
	case KEYFILE_PRIV_VALIDATOR_JSON:
		return "priv_validator_key.json";
	}
	return "unknown";
}

void keyfile_wipe(struct keyfile_ed25519 *k)
{
	if (k)
		kms_wipe(k, sizeof(*k));
}

__attribute__((format(printf, 3, 4))) static void set_why(char *why, size_t cap, const char *fmt,
							  ...)
{
	va_list ap;

	if (!why || cap == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

/* tmkms trims trailing whitespace; enc_base64_decode ignores it at both ends. */
static int is_json(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
			continue;
		return p[i] == '{';
	}
	return 0;
}

static int parse_seed(const uint8_t seed[32], struct keyfile_ed25519 *out, char *why, size_t whycap)
{
	out->kind = KEYFILE_SEED32;
	out->has_seed = 1;
	memcpy(out->seed, seed, 32);
	if (kcrypto_ed25519_pub_from_seed(out->seed, out->pub) != KMS_OK) {
		set_why(why, whycap, "cannot derive the public key from the seed");
		return KMS_ERR_CRYPTO;
	}
	return KMS_OK;
}

static int parse_expanded(const uint8_t raw[64], struct keyfile_ed25519 *out, char *why,
			  size_t whycap)
{
	uint8_t pub[32];
	int r;

	/*
	 * The JSON layout seed || pub pasted into a base64 file: tmkms would
	 * read it as scalar || prefix and sign with a different key. Refuse
	 * rather than silently serve a key nobody meant.
	 */
	if (kcrypto_ed25519_pub_from_seed(raw, pub) == KMS_OK && kms_ct_eq(pub, raw + 32, 32)) {
		set_why(why, whycap,
			"64-byte key is seed || public key (the priv_validator_key.json layout), not an "
			"expanded key; write the 32-byte seed instead");
		kms_wipe(pub, sizeof(pub));
		return KMS_ERR_FORMAT;
	}
	out->kind = KEYFILE_EXPANDED64;
	out->has_seed = 0;
	memcpy(out->expanded, raw, 64);
	r = soft_ed25519_exp_pub(out->expanded, out->pub);
	if (r != KMS_OK)
		set_why(why, whycap, "cannot derive the public key from the expanded key");
	kms_wipe(pub, sizeof(pub));
	return r;
}

/* YubiHSM export: scalar with its bytes reversed || prefix || public key. */
static int parse_yubihsm(const uint8_t raw[96], struct keyfile_ed25519 *out, char *why,
			 size_t whycap)
{
	int r;

	out->kind = KEYFILE_YUBIHSM96;
	out->has_seed = 0;
	for (int i = 0; i < 32; i++)
		out->expanded[i] = raw[31 - i];
	memcpy(out->expanded + 32, raw + 32, 32);
	r = soft_ed25519_exp_pub(out->expanded, out->pub);
	if (r != KMS_OK) {
		set_why(why, whycap, "cannot derive the public key from the YubiHSM key");
		return r;
	}
	if (!kms_ct_eq(out->pub, raw + 64, 32)) {
		set_why(why, whycap,
			"96-byte YubiHSM key: public key (bytes 64..95) does not match the scalar");
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

static int parse_base64(const uint8_t *p, size_t n, struct keyfile_ed25519 *out, char *why,
			size_t whycap)
{
	uint8_t raw[97];
	size_t len = 0;
	int r;

	r = enc_base64_decode((const char *)p, n, raw, sizeof(raw), &len);
	if (r == KMS_ERR_NO_SPACE) {
		set_why(why, whycap, "base64 key decodes to more than 96 bytes");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	if (r != KMS_OK) {
		set_why(why, whycap, "not valid base64 (standard alphabet, padded) nor JSON");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	switch (len) {
	case 32:
		r = parse_seed(raw, out, why, whycap);
		break;
	case 64:
		r = parse_expanded(raw, out, why, whycap);
		break;
	case 96:
		r = parse_yubihsm(raw, out, why, whycap);
		break;
	default:
		set_why(why, whycap,
			"base64 key decodes to %zu bytes; expected 32 (seed), 64 (expanded) or 96 "
			"(YubiHSM export)",
			len);
		r = KMS_ERR_FORMAT;
		break;
	}
out:
	kms_wipe(raw, sizeof(raw));
	return r;
}

/* Wipes jansson's copy of a secret string before the object is freed. */
static void wipe_json_string(json_t *s)
{
	const char *v = json_string_value(s);

	if (v)
		kms_wipe((void *)(uintptr_t)v, json_string_length(s));
}

static int check_pub_key(const json_t *root, const uint8_t pub[32], char *why, size_t whycap)
{
	const json_t *pk = json_object_get(root, "pub_key");
	const json_t *t, *v;
	uint8_t stored[33];
	size_t len = 0;

	if (!pk)
		return KMS_OK;
	t = json_object_get(pk, "type");
	v = json_object_get(pk, "value");
	if (!json_is_object(pk) || !json_is_string(t) || !json_is_string(v)) {
		set_why(why, whycap, "pub_key must be an object with string type and value");
		return KMS_ERR_FORMAT;
	}
	if (strcmp(json_string_value(t), PV_PUB_TYPE) != 0) {
		set_why(why, whycap, "pub_key.type is not \"" PV_PUB_TYPE "\"");
		return KMS_ERR_FORMAT;
	}
	if (enc_base64_decode(json_string_value(v), json_string_length(v), stored, sizeof(stored),
			      &len) != KMS_OK ||
	    len != 32) {
		set_why(why, whycap, "pub_key.value is not base64 of 32 bytes");
		return KMS_ERR_FORMAT;
	}
	if (memcmp(stored, pub, 32) != 0) {
		set_why(why, whycap, "pub_key.value does not match the key in priv_key.value");
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

static int check_address(const json_t *root, const uint8_t pub[32], char *why, size_t whycap)
{
	const json_t *a = json_object_get(root, "address");
	uint8_t addr[20], stored[21];
	size_t len = 0;

	if (!a)
		return KMS_OK;
	if (!json_is_string(a) ||
	    enc_hex_decode(json_string_value(a), json_string_length(a), stored, sizeof(stored),
			   &len) != KMS_OK ||
	    len != 20) {
		set_why(why, whycap, "address is not 40 hex characters");
		return KMS_ERR_FORMAT;
	}
	if (enc_ed25519_address(pub, addr) != KMS_OK) {
		set_why(why, whycap, "cannot compute the address");
		return KMS_ERR_CRYPTO;
	}
	if (memcmp(stored, addr, 20) != 0) {
		set_why(why, whycap, "address does not match the key in priv_key.value");
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

static int parse_priv_key(json_t *root, struct keyfile_ed25519 *out, char *why, size_t whycap)
{
	json_t *pk = json_object_get(root, "priv_key");
	json_t *t = json_object_get(pk, "type");
	json_t *v = json_object_get(pk, "value");
	uint8_t raw[65];
	size_t len = 0;
	int r = KMS_ERR_FORMAT;

	if (!json_is_object(pk) || !json_is_string(t) || !json_is_string(v)) {
		set_why(why, whycap, "priv_key must be an object with string type and value");
		goto out;
	}
	if (strcmp(json_string_value(t), PV_PRIV_TYPE) != 0) {
		set_why(why, whycap,
			"priv_key.type \"%.64s\" is not supported (only \"" PV_PRIV_TYPE "\")",
			json_string_value(t));
		r = KMS_ERR_UNSUPPORTED;
		goto out;
	}
	if (enc_base64_decode(json_string_value(v), json_string_length(v), raw, sizeof(raw),
			      &len) != KMS_OK ||
	    len != 64) {
		set_why(why, whycap,
			"priv_key.value is not base64 of 64 bytes (seed || public key)");
		goto out;
	}
	r = parse_seed(raw, out, why, whycap);
	if (r != KMS_OK)
		goto out;
	out->kind = KEYFILE_PRIV_VALIDATOR_JSON;
	if (!kms_ct_eq(out->pub, raw + 32, 32)) {
		set_why(why, whycap, "priv_key.value: public half does not match the seed");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	r = KMS_OK;
out:
	kms_wipe(raw, sizeof(raw));
	if (json_is_string(v))
		wipe_json_string(v);
	return r;
}

static int parse_json(const uint8_t *p, size_t n, struct keyfile_ed25519 *out, char *why,
		      size_t whycap)
{
	json_error_t jerr;
	json_t *root;
	int r;

	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		set_why(why, whycap, "invalid JSON at line %d: %.80s", jerr.line, jerr.text);
		return KMS_ERR_FORMAT;
	}
	if (!json_is_object(root)) {
		set_why(why, whycap, "JSON key file is not an object");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	r = parse_priv_key(root, out, why, whycap);
	if (r != KMS_OK)
		goto out;
	r = check_pub_key(root, out->pub, why, whycap);
	if (r != KMS_OK)
		goto out;
	r = check_address(root, out->pub, why, whycap);
out:
	json_decref(root);
	return r;
}

int keyfile_parse(const uint8_t *p, size_t n, struct keyfile_ed25519 *out, char *why, size_t whycap)
{
	int r;

	set_why(why, whycap, "%s", "");
	if (!out)
		return KMS_ERR_INTERNAL;
	keyfile_wipe(out);
	if (!p && n > 0) {
		set_why(why, whycap, "no data");
		return KMS_ERR_FORMAT;
	}
	if (n > KEYFILE_MAX_SIZE) {
		set_why(why, whycap, "key file is %zu bytes, over the %d-byte limit", n,
			KEYFILE_MAX_SIZE);
		return KMS_ERR_TOO_LARGE;
	}
	if (n == 0) {
		set_why(why, whycap, "key file is empty");
		return KMS_ERR_FORMAT;
	}
	if (is_json(p, n))
		r = parse_json(p, n, out, why, whycap);
	else
		r = parse_base64(p, n, out, why, whycap);
	if (r != KMS_OK)
		keyfile_wipe(out);
	return r;
}

int keyfile_load(const char *path, struct keyfile_ed25519 *out)
{
	struct kbuf *b = NULL;
	char why[256];
	int r;

	keyfile_wipe(out);
	r = dfile_read_private(path, KEYFILE_MAX_SIZE, &b);
	if (r != KMS_OK)
		return r; /* dfile_ logged the path and the reason */
	r = keyfile_parse(kbuf_ptr(b), kbuf_len(b), out, why, sizeof(why));
	if (r != KMS_OK)
		kms_log_err("cannot load key file path=%s: %s", path, why);
	kbuf_free(b);
	return r;
}

static int read_private_quiet(const char *path, uint8_t *buf, size_t cap, size_t *len, char *why,
			      size_t whycap)
{
	struct stat st;
	size_t got = 0;
	int fd, r = KMS_ERR_SYSTEM;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;

		set_why(why, whycap, "cannot open: %s", strerror(e));
		return e == ENOENT ? KMS_ERR_NOT_FOUND :
				     (e == EACCES ? KMS_ERR_PERM : KMS_ERR_SYSTEM);
	}
	if (fstat(fd, &st) != 0) {
		set_why(why, whycap, "cannot stat: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		set_why(why, whycap, "not a regular file");
		r = KMS_ERR_FORMAT;
		goto out;
	}
	if (st.st_mode & 077) {
		set_why(why, whycap, "mode %04o too open, expected 0600 or stricter",
			(unsigned)(st.st_mode & 07777));
		r = KMS_ERR_PERM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_why(why, whycap, "read failed: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == cap) {
			set_why(why, whycap, "larger than %zu bytes", cap - 1);
			r = KMS_ERR_TOO_LARGE;
			goto out;
		}
	}
	*len = got;
	r = KMS_OK;
out:
	(void)close(fd);
	return r;
}

int keyfile_load_quiet(const char *path, struct keyfile_ed25519 *out, char *why, size_t whycap)
{
	uint8_t buf[KEYFILE_MAX_SIZE + 1];
	size_t len = 0;
	int r;

	keyfile_wipe(out);
	set_why(why, whycap, "%s", "");
	if (!path)
		return KMS_ERR_INTERNAL;
	r = read_private_quiet(path, buf, sizeof(buf), &len, why, whycap);
	if (r == KMS_OK)
		r = keyfile_parse(buf, len, out, why, whycap);
	kms_wipe(buf, sizeof(buf));
	return r;
}

int keyfile_write_seed(const char *path, const uint8_t seed[static 32])
{
	char b64[48];
	int r;

	r = enc_base64_encode(seed, 32, b64, sizeof(b64));
	if (r != KMS_OK)
		goto out;
	/* tmkms writes the bare base64 string, without a newline (key_utils.rs). */
	r = dfile_create_atomic(path, b64, strlen(b64), 0600);
out:
	kms_wipe(b64, sizeof(b64));
	return r;
}

int keyfile_sign(const struct keyfile_ed25519 *k, const uint8_t *msg, size_t len,
		 uint8_t sig[static 64])
{
	if (!k || (!msg && len > 0))
		return KMS_ERR_INTERNAL;
	if (k->has_seed)
		return soft_ed25519_seed_sign(k->seed, k->pub, msg, len, sig);
	return soft_ed25519_exp_sign(k->expanded, k->pub, msg, len, sig);
}

int keyfile_cka_id(const uint8_t pub[static 32], uint8_t id[static KEYFILE_CKA_ID_LEN])
{
	uint8_t h[32];
	int r;

	r = kcrypto_sha256(pub, 32, h);
	if (r == KMS_OK)
		memcpy(id, h, KEYFILE_CKA_ID_LEN);
	return r;
}

int keyfile_token_serial(const char *path, char out[static KEYFILE_SERIAL_LEN + 1])
{
	uint8_t h[32];
	char hex[65];
	int r;

	out[0] = '\0';
	if (!path)
		return KMS_ERR_INTERNAL;
	r = kcrypto_sha256((const uint8_t *)path, strlen(path), h);
	if (r != KMS_OK)
		return r;
	r = enc_hex_encode(h, sizeof(h), hex, sizeof(hex));
	if (r != KMS_OK)
		return r;
	memcpy(out, hex, KEYFILE_SERIAL_LEN);
	out[KEYFILE_SERIAL_LEN] = '\0';
	return KMS_OK;
}
