// SPDX-License-Identifier: Apache-2.0
// Merlin transcripts on STROBE-128 (merlin.cool), and the Keccak/Merlin known-answer self-test.
#include "p11kms/merlin.h"

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "p11kms/kms_log.h"

static void le32(uint8_t out[static 4], uint32_t v)
{
	out[0] = (uint8_t)v;
	out[1] = (uint8_t)(v >> 8);
	out[2] = (uint8_t)(v >> 16);
	out[3] = (uint8_t)(v >> 24);
}

static void append(struct merlin_transcript *t, const char *label, const uint8_t *m, uint32_t len)
{
	uint8_t n[4];

	le32(n, len);
	strobe128_meta_ad(&t->s, (const uint8_t *)label, strlen(label), 0);
	strobe128_meta_ad(&t->s, n, sizeof(n), 1);
	strobe128_ad(&t->s, m, len, 0);
}

void merlin_init(struct merlin_transcript *t, const char *label)
{
	static const char proto[] = "Merlin v1.0";
	size_t len = strlen(label);

	strobe128_init(&t->s, (const uint8_t *)proto, sizeof(proto) - 1);
	/* labels are short string literals of the caller; clamp defensively */
	append(t, "dom-sep", (const uint8_t *)label, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len);
}

int merlin_append_message(struct merlin_transcript *t, const char *label, const uint8_t *m,
			  size_t len)
{
	if (len > UINT32_MAX)
		return KMS_ERR_TOO_LARGE;
	append(t, label, m, (uint32_t)len);
	return KMS_OK;
}

int merlin_challenge_bytes(struct merlin_transcript *t, const char *label, uint8_t *out, size_t len)
{
	uint8_t n[4];

	if (len > UINT32_MAX)
		return KMS_ERR_TOO_LARGE;
	le32(n, (uint32_t)len);
	strobe128_meta_ad(&t->s, (const uint8_t *)label, strlen(label), 0);
	strobe128_meta_ad(&t->s, n, sizeof(n), 1);
	strobe128_prf(&t->s, out, len, 0);
	return KMS_OK;
}

void merlin_wipe(struct merlin_transcript *t)
{
	strobe128_wipe(&t->s);
}

/* SHA3-256 built on our permutation (rate 136, domain 0x06) for the self-test. */
static void sha3_256_ours(const uint8_t *p, size_t len, uint8_t out[static 32])
{
	uint8_t st[200];
	size_t pos = 0;

	memset(st, 0, sizeof(st));
	for (size_t i = 0; i < len; i++) {
		st[pos++] ^= p[i];
		if (pos == 136) {
			keccak_f1600_bytes(st);
			pos = 0;
		}
	}
	st[pos] ^= 0x06;
	st[135] ^= 0x80;
	keccak_f1600_bytes(st);
	memcpy(out, st, 32);
}

static int keccak_kat(void)
{
	uint8_t msg[300], ours[32], ref[32];
	static const size_t lens[] = { 0, 3, 135, 136, 137, 300 };
	unsigned int olen = 0;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		sha3_256_ours(msg, lens[i], ours);
		if (EVP_Digest(msg, lens[i], ref, &olen, EVP_sha3_256(), NULL) != 1 || olen != 32)
			return kms_crypto_err("EVP_Digest(SHA3-256)");
		if (CRYPTO_memcmp(ours, ref, 32) != 0) {
			kms_log_err("keccak self-test failed len=%zu", lens[i]);
			return KMS_ERR_CRYPTO;
		}
	}
	return KMS_OK;
}

int merlin_selftest(void)
{
	static const uint8_t want[32] = {
		0xd5, 0xa2, 0x19, 0x72, 0xd0, 0xd5, 0xfe, 0x32, 0x0c, 0x0d, 0x26,
		0x3f, 0xac, 0x7f, 0xff, 0xb8, 0x14, 0x5a, 0xa6, 0x40, 0xaf, 0x6e,
		0x9b, 0xca, 0x17, 0x7c, 0x03, 0xc7, 0xef, 0xcf, 0x06, 0x15,
	};
	struct merlin_transcript t;
	uint8_t got[32];
	int r = keccak_kat();

	if (r != KMS_OK)
		return r;
	merlin_init(&t, "test protocol");
	if (merlin_append_message(&t, "some label", (const uint8_t *)"some data", 9) != KMS_OK ||
	    merlin_challenge_bytes(&t, "challenge", got, sizeof(got)) != KMS_OK ||
	    CRYPTO_memcmp(got, want, 32) != 0) {
		kms_log_err("merlin self-test failed (simple transcript vector)");
		r = KMS_ERR_CRYPTO;
	}
	merlin_wipe(&t);
	return r;
}
