/* SPDX-License-Identifier: Apache-2.0 */
/* enc_: hex and base64 (constant-time decoders), BIP-173 bech32, Cosmos key displays. */
#include "p11kms/enc.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

/*
 * The hex and base64 decoders handle key material: they look at every
 * character with the same arithmetic, with no table lookups indexed by it and
 * no branch on its value, and report invalid input only after the whole
 * string was processed (the WireGuard encoding.c / libsodium approach).
 */

static void out_clear(char *out, size_t cap)
{
	if (out != NULL && cap > 0)
		out[0] = '\0';
}

static int hex_encode(const uint8_t *in, size_t len, char *out, size_t cap, int upper)
{
	/* 'a'-10 = 87, 'A'-10 = 55; branch-free nibble to digit. */
	const int alpha = upper ? 55 : 87;

	out_clear(out, cap);
	if (out == NULL || (in == NULL && len != 0))
		return KMS_ERR_INTERNAL;
	if (len > (cap - 1) / 2 || cap == 0)
		return KMS_ERR_NO_SPACE;
	for (size_t i = 0; i < len; i++) {
		int hi = in[i] >> 4, lo = in[i] & 0xf;

		/* (9 - n) >> 8 is all ones when n > 9. */
		out[2 * i] = (char)(hi + 48 + (((9 - hi) >> 8) & (alpha - 48)));
		out[2 * i + 1] = (char)(lo + 48 + (((9 - lo) >> 8) & (alpha - 48)));
	}
	out[2 * len] = '\0';
	return KMS_OK;
}

int enc_hex_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	return hex_encode(in, len, out, cap, 0);
}

int enc_hex_encode_upper(const uint8_t *in, size_t len, char *out, size_t cap)
{
	return hex_encode(in, len, out, cap, 1);
}

/* Value of one hex digit, or -1; constant time in c. */
static int hex_val(unsigned char ch)
{
	int c = ch;
	int num = c ^ 48;				   /* '0'..'9' -> 0..9 */
	int num_ok = (num - 10) >> 8;			   /* all ones when num < 10 */
	int alpha = (c & ~32) - 55;			   /* 'A'/'a' -> 10 */
	int alpha_ok = ((alpha - 10) ^ (alpha - 16)) >> 8; /* all ones when 10 <= alpha < 16 */
	int ok = (num_ok | alpha_ok) & 1;

	return ((num_ok & num) | (alpha_ok & alpha)) - (1 - ok) * 256;
}

int enc_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t cap, size_t *outlen)
{
	int bad = 0;

	if (outlen != NULL)
		*outlen = 0;
	if (outlen == NULL || (in == NULL && inlen != 0) || (out == NULL && cap != 0))
		return KMS_ERR_INTERNAL;
	if (inlen % 2 != 0)
		return KMS_ERR_FORMAT;
	if (inlen / 2 > cap)
		return KMS_ERR_NO_SPACE;
	for (size_t i = 0; i < inlen / 2; i++) {
		int hi = hex_val((unsigned char)in[2 * i]);
		int lo = hex_val((unsigned char)in[2 * i + 1]);

		bad |= (hi | lo) & 0x100;
		out[i] = (uint8_t)(((hi & 0xf) << 4) | (lo & 0xf));
	}
	if (bad) {
		kms_wipe(out, inlen / 2);
		return KMS_ERR_FORMAT;
	}
	*outlen = inlen / 2;
	return KMS_OK;
}

size_t enc_base64_encoded_len(size_t len)
{
	return (len / 3 + (len % 3 != 0)) * 4;
}

/* Base64 digit of a 6-bit value; constant time. */
static char b64_char(unsigned v)
{
	int x = (int)v;
	int c = x + 'A';

	c += ((25 - x) >> 8) & 6;  /* x >= 26: 'a' - 26 - 'A' = 6 */
	c -= ((51 - x) >> 8) & 75; /* x >= 52: '0' - 52 - ('a' - 26) = -75 */
	c -= ((61 - x) >> 8) & 15; /* x == 62: '+' - 62 - ('0' - 52) = -15 */
	c += ((62 - x) >> 8) & 3;  /* x == 63: '/' - 63 - ('+' - 62) = 3 */
	return (char)c;
}

int enc_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t o = 0, i = 0;

	out_clear(out, cap);
	if (out == NULL || (in == NULL && len != 0))
		return KMS_ERR_INTERNAL;
	if (len / 3 >= SIZE_MAX / 4 - 1 || cap == 0 || enc_base64_encoded_len(len) > cap - 1)
		return KMS_ERR_NO_SPACE;
	for (; len - i >= 3; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64_char((w >> 18) & 63);
		out[o++] = b64_char((w >> 12) & 63);
		out[o++] = b64_char((w >> 6) & 63);
		out[o++] = b64_char(w & 63);
	}
	if (len - i > 0) {
		uint32_t w = (uint32_t)in[i] << 16;

		if (len - i == 2)
			w |= (uint32_t)in[i + 1] << 8;
		out[o++] = b64_char((w >> 18) & 63);
		out[o++] = b64_char((w >> 12) & 63);
		out[o++] = len - i == 2 ? b64_char((w >> 6) & 63) : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return KMS_OK;
}

/* Value of one base64 digit, or -1; constant time in c. */
static int b64_val(unsigned char ch)
{
	int c = ch, v = -1;

	v += ((('A' - 1 - c) & (c - ('Z' + 1))) >> 8) & (c - 64);
	v += ((('a' - 1 - c) & (c - ('z' + 1))) >> 8) & (c - 70);
	v += ((('0' - 1 - c) & (c - ('9' + 1))) >> 8) & (c + 5);
	v += ((('+' - 1 - c) & (c - ('+' + 1))) >> 8) & 63;
	v += ((('/' - 1 - c) & (c - ('/' + 1))) >> 8) & 64;
	return v;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int enc_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t cap, size_t *outlen)
{
	size_t pad = 0, n, o = 0;
	int bad = 0;

	if (outlen != NULL)
		*outlen = 0;
	if (outlen == NULL || (in == NULL && inlen != 0) || (out == NULL && cap != 0))
		return KMS_ERR_INTERNAL;
	/* tmkms trims surrounding whitespace (a key file ending in a newline). */
	while (inlen > 0 && is_space(in[0])) {
		in++;
		inlen--;
	}
	while (inlen > 0 && is_space(in[inlen - 1]))
		inlen--;
	if (inlen % 4 != 0)
		return KMS_ERR_FORMAT;
	/* Padding position is length information, not secret. */
	if (inlen > 0 && in[inlen - 1] == '=')
		pad = (inlen > 1 && in[inlen - 2] == '=') ? 2 : 1;
	n = inlen / 4 * 3 - pad;
	if (n > cap)
		return KMS_ERR_NO_SPACE;
	for (size_t i = 0; i < inlen; i += 4) {
		int last = i + 4 == inlen;
		int a = b64_val((unsigned char)in[i]), b = b64_val((unsigned char)in[i + 1]);
		int c = last && pad == 2 ? 0 : b64_val((unsigned char)in[i + 2]);
		int d = last && pad >= 1 ? 0 : b64_val((unsigned char)in[i + 3]);
		uint32_t w;

		bad |= (a | b | c | d) < 0;
		w = (uint32_t)(a & 63) << 18 | (uint32_t)(b & 63) << 12 | (uint32_t)(c & 63) << 6 |
		    (uint32_t)(d & 63);
		if (last && pad == 2) {
			bad |= (w & 0xffff) != 0; /* non-canonical trailing bits */
			out[o++] = (uint8_t)(w >> 16);
		} else if (last && pad == 1) {
			bad |= (w & 0xff) != 0;
			out[o++] = (uint8_t)(w >> 16);
			out[o++] = (uint8_t)(w >> 8);
		} else {
			out[o++] = (uint8_t)(w >> 16);
			out[o++] = (uint8_t)(w >> 8);
			out[o++] = (uint8_t)w;
		}
	}
	if (bad) {
		kms_wipe(out, n);
		return KMS_ERR_FORMAT;
	}
	*outlen = n;
	return KMS_OK;
}

/* ---- bech32 (BIP-173) ---- */

static const char bech32_charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t bech32_polymod_step(uint32_t pre)
{
	uint32_t b = pre >> 25;

	return ((pre & 0x1ffffff) << 5) ^ (-((b >> 0) & 1) & 0x3b6a57b2U) ^
	       (-((b >> 1) & 1) & 0x26508e6dU) ^ (-((b >> 2) & 1) & 0x1ea119faU) ^
	       (-((b >> 3) & 1) & 0x3d4233ddU) ^ (-((b >> 4) & 1) & 0x2a1462b3U);
}

/* Checksum state over the expanded hrp (hrp must be lowercase). */
static uint32_t bech32_hrp_state(const char *hrp, size_t hrplen)
{
	uint32_t chk = 1;

	for (size_t i = 0; i < hrplen; i++)
		chk = bech32_polymod_step(chk) ^ ((unsigned char)hrp[i] >> 5);
	chk = bech32_polymod_step(chk);
	for (size_t i = 0; i < hrplen; i++)
		chk = bech32_polymod_step(chk) ^ ((unsigned char)hrp[i] & 0x1f);
	return chk;
}

static int charset_rev(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(bech32_charset, c);
	return p == NULL ? -1 : (int)(p - bech32_charset);
}

int enc_bech32_encode(const char *hrp, const uint8_t *data, size_t len, char *out, size_t cap)
{
	char lhrp[ENC_BECH32_MAX];
	size_t hrplen, n5, total, o = 0;
	uint32_t chk, acc = 0;
	unsigned bits = 0;

	out_clear(out, cap);
	if (hrp == NULL || out == NULL || (data == NULL && len != 0))
		return KMS_ERR_INTERNAL;
	hrplen = strnlen(hrp, ENC_BECH32_MAX);
	if (hrplen < 1 || hrplen > 83)
		return KMS_ERR_FORMAT;
	for (size_t i = 0; i < hrplen; i++) {
		unsigned char c = (unsigned char)hrp[i];

		if (c < 33 || c > 126)
			return KMS_ERR_FORMAT;
		lhrp[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
	}
	if (len > ENC_BECH32_MAX)
		return KMS_ERR_TOO_LARGE;
	n5 = (len * 8 + 4) / 5;
	total = hrplen + 1 + n5 + 6;
	if (total > ENC_BECH32_MAX)
		return KMS_ERR_TOO_LARGE;
	if (total >= cap)
		return KMS_ERR_NO_SPACE;

	chk = bech32_hrp_state(lhrp, hrplen);
	memcpy(out, lhrp, hrplen);
	o = hrplen;
	out[o++] = '1';
	/* convertbits(8 -> 5) with zero padding. */
	for (size_t i = 0; i < len; i++) {
		acc = ((acc << 8) | data[i]) & 0xfff;
		bits += 8;
		while (bits >= 5) {
			unsigned v = (acc >> (bits - 5)) & 31;

			bits -= 5;
			chk = bech32_polymod_step(chk) ^ v;
			out[o++] = bech32_charset[v];
		}
	}
	if (bits > 0) {
		unsigned v = (acc << (5 - bits)) & 31;

		chk = bech32_polymod_step(chk) ^ v;
		out[o++] = bech32_charset[v];
	}
	for (size_t i = 0; i < 6; i++)
		chk = bech32_polymod_step(chk);
	chk ^= 1;
	for (size_t i = 0; i < 6; i++)
		out[o++] = bech32_charset[(chk >> (5 * (5 - i))) & 31];
	out[o] = '\0';
	return KMS_OK;
}

/* Splits and validates case; returns the separator index or a negative error. */
static int bech32_check_chars(const char *in, size_t inlen, size_t *sep)
{
	int lower = 0, upper = 0;
	size_t s = inlen;

	if (inlen < 8)
		return KMS_ERR_FORMAT;
	if (inlen > ENC_BECH32_MAX)
		return KMS_ERR_TOO_LARGE;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c < 33 || c > 126)
			return KMS_ERR_FORMAT;
		lower |= c >= 'a' && c <= 'z';
		upper |= c >= 'A' && c <= 'Z';
		if (c == '1')
			s = i;
	}
	if (lower && upper)
		return KMS_ERR_FORMAT;
	/* hrp at least 1 char, data part at least the 6 checksum chars. */
	if (s == inlen || s < 1 || s + 7 > inlen)
		return KMS_ERR_FORMAT;
	*sep = s;
	return KMS_OK;
}

int enc_bech32_decode(const char *in, char *hrp, size_t hrpcap, uint8_t *data, size_t cap,
		      size_t *outlen)
{
	char lhrp[ENC_BECH32_MAX];
	size_t inlen, sep, o = 0, ndata;
	uint32_t chk, acc = 0;
	unsigned bits = 0;
	int r;

	if (outlen != NULL)
		*outlen = 0;
	out_clear(hrp, hrpcap);
	if (in == NULL || hrp == NULL || outlen == NULL || (data == NULL && cap != 0))
		return KMS_ERR_INTERNAL;
	inlen = strnlen(in, ENC_BECH32_MAX + 1);
	if ((r = bech32_check_chars(in, inlen, &sep)) != KMS_OK)
		return r;
	if (sep >= hrpcap)
		return KMS_ERR_NO_SPACE;
	for (size_t i = 0; i < sep; i++) {
		char c = in[i];

		lhrp[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	chk = bech32_hrp_state(lhrp, sep);
	ndata = inlen - sep - 1 - 6;
	for (size_t i = sep + 1; i < inlen; i++) {
		char c = in[i];
		int v = charset_rev((c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);

		if (v < 0) {
			r = KMS_ERR_FORMAT;
			goto out;
		}
		chk = bech32_polymod_step(chk) ^ (uint32_t)v;
		if (i - sep - 1 >= ndata)
			continue; /* checksum characters */
		/* convertbits(5 -> 8), no padding allowed beyond 4 zero bits. */
		acc = ((acc << 5) | (uint32_t)v) & 0xfff;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap) {
				r = KMS_ERR_NO_SPACE;
				goto out;
			}
			data[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (chk != 1 || bits >= 5 || ((acc << (8 - bits)) & 0xff) != 0) {
		r = KMS_ERR_FORMAT;
		goto out;
	}
	memcpy(hrp, lhrp, sep);
	hrp[sep] = '\0';
	*outlen = o;
	r = KMS_OK;
out:
	if (r != KMS_OK && data != NULL)
		memset(data, 0, o);
	return r;
}

/* ---- Cosmos displays of an Ed25519 public key ---- */

/* Amino prefix of tendermint/PubKeyEd25519 plus the 0x20 length byte. */
static const uint8_t amino_ed25519_prefix[5] = { 0x16, 0x24, 0xde, 0x64, 0x20 };

int enc_ed25519_address(const uint8_t pub[static 32], uint8_t addr[static 20])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	/* EVP directly: kcrypto (p11kms_crypto) depends on this library. */
	if (EVP_Digest(pub, ENC_ED25519_PUB_LEN, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32)
		return kms_crypto_err("EVP_Digest(SHA-256)");
	memcpy(addr, md, ENC_ADDRESS_LEN);
	return KMS_OK;
}

int enc_ed25519_bech32_pub(const char *prefix, const uint8_t pub[static 32], char *out, size_t cap)
{
	uint8_t amino[sizeof(amino_ed25519_prefix) + ENC_ED25519_PUB_LEN];

	memcpy(amino, amino_ed25519_prefix, sizeof(amino_ed25519_prefix));
	memcpy(amino + sizeof(amino_ed25519_prefix), pub, ENC_ED25519_PUB_LEN);
	return enc_bech32_encode(prefix, amino, sizeof(amino), out, cap);
}

int enc_ed25519_cosmos_json(const uint8_t pub[static 32], char *out, size_t cap)
{
	char b64[48];
	int r, n;

	out_clear(out, cap);
	if (out == NULL)
		return KMS_ERR_INTERNAL;
	if ((r = enc_base64_encode(pub, ENC_ED25519_PUB_LEN, b64, sizeof(b64))) != KMS_OK)
		return r;
	n = snprintf(out, cap, "{\"@type\":\"/cosmos.crypto.ed25519.PubKey\",\"key\":\"%s\"}", b64);
	if (n < 0 || (size_t)n >= cap) {
		out_clear(out, cap);
		return KMS_ERR_NO_SPACE;
	}
	return KMS_OK;
}

int enc_ed25519_bech32_addr(const char *prefix, const uint8_t pub[static 32], char *out, size_t cap)
{
	uint8_t addr[ENC_ADDRESS_LEN];
	int r;

	out_clear(out, cap);
	if ((r = enc_ed25519_address(pub, addr)) != KMS_OK)
		return r;
	return enc_bech32_encode(prefix, addr, sizeof(addr), out, cap);
}
