/* SPDX-License-Identifier: Apache-2.0 */
/* Error text, secret-memory helpers and OpenSSL error-queue logging. */
#include "p11kms/kms_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "p11kms/kms_log.h"

const char *kms_strerror(int err)
{
	/* No default: -Wswitch flags an enum value that has no text here. */
	switch ((enum kms_err)err) {
	case KMS_OK:
		return "success";
	case KMS_ERR_INTERNAL:
		return "internal error";
	case KMS_ERR_ALLOC:
		return "out of memory";
	case KMS_ERR_INCOMPLETE:
		return "incomplete input";
	case KMS_ERR_FORMAT:
		return "malformed input";
	case KMS_ERR_TOO_LARGE:
		return "input too large";
	case KMS_ERR_NO_SPACE:
		return "no space left in buffer";
	case KMS_ERR_SYSTEM:
		return "system call failed";
	case KMS_ERR_CRYPTO:
		return "cryptographic operation failed";
	case KMS_ERR_PKCS11:
		return "PKCS#11 call failed";
	case KMS_ERR_CONFIG:
		return "invalid configuration";
	case KMS_ERR_AUTH:
		return "authentication failed";
	case KMS_ERR_MAC_INVALID:
		return "message authentication failed";
	case KMS_ERR_CONN_CLOSED:
		return "connection closed";
	case KMS_ERR_TIMEOUT:
		return "timed out";
	case KMS_ERR_UNSUPPORTED:
		return "unsupported";
	case KMS_ERR_DOUBLE_SIGN:
		return "refused: would double-sign";
	case KMS_ERR_STATE_IO:
		return "double-sign state I/O failed";
	case KMS_ERR_PERM:
		return "permission denied or file too open";
	case KMS_ERR_NOT_FOUND:
		return "not found";
	case KMS_ERR_AMBIGUOUS:
		return "ambiguous match";
	case KMS_ERR_PIN_INCORRECT:
		return "PIN incorrect";
	case KMS_ERR_PIN_LOCKED:
		return "PIN locked";
	case KMS_ERR_REFUSED:
		return "refused by policy";
	case KMS_ERR_EXISTS:
		return "already exists";
	case KMS_ERR_LOCKED:
		return "locked by another process";
	}
	return "unknown error";
}

void kms_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

int kms_ct_eq(const void *a, const void *b, size_t n)
{
	if (n == 0)
		return 1;
	return CRYPTO_memcmp(a, b, n) == 0;
}

void kms_free_secret(void *p, size_t n)
{
	if (p == NULL)
		return;
	kms_wipe(p, n);
	free(p);
}

int kms_crypto_err(const char *what)
{
	char line[1024];
	size_t used = 0;
	unsigned long e;
	const char *file, *data;
	int lineno, flags;

	line[0] = '\0';
	while ((e = ERR_get_error_all(&file, &lineno, NULL, &data, &flags)) != 0) {
		char one[256];
		int n;

		ERR_error_string_n(e, one, sizeof(one));
		n = snprintf(line + used, sizeof(line) - used, "%s%s%s%s", used ? "; " : "", one,
			     (flags & ERR_TXT_STRING) && data && *data ? ": " : "",
			     (flags & ERR_TXT_STRING) && data ? data : "");
		if (n < 0 || (size_t)n >= sizeof(line) - used) {
			/* Truncated: keep what fits and drop the rest of the queue. */
			used = sizeof(line) - 1;
			ERR_clear_error();
			break;
		}
		used += (size_t)n;
	}
	kms_log_err("%s failed openssl=\"%s\"", what ? what : "OpenSSL",
		    used ? line : "no error queued");
	return KMS_ERR_CRYPTO;
}
