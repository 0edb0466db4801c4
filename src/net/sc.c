// SPDX-License-Identifier: Apache-2.0
// sc_: CometBFT Secret Connection, bit-exact with p2p/conn/secret_connection.go (spec §2).
#include "p11kms/sc.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/merlin.h"
#include "sc_int.h"

#define SC_TAG_LEN 16
#define SC_BATCH 16 /* frames sealed per write(2), and the read-ahead in frames */

struct sc_conn {
	int fd;
	int err;	   /* first fatal error: every later call returns it */
	uint64_t send_ctr; /* next nonce counter to use */
	uint64_t recv_ctr;
	EVP_CIPHER_CTX *send_ctx; /* ChaCha20-Poly1305 keyed once; IV set per frame */
	EVP_CIPHER_CTX *recv_ctx;
	uint8_t remote_pub[32];
	uint8_t remote_id[SC_NODE_ID_LEN];
	uint8_t plain[SC_FRAME_PLAIN]; /* last opened frame; data at [4 + data_off, 4 + data_len) */
	size_t data_off;
	size_t data_len;
	size_t in_len; /* sealed bytes read ahead from the socket */
	uint8_t in[SC_BATCH * SC_FRAME_SEALED];
	uint8_t out[SC_BATCH * SC_FRAME_SEALED];
};

struct sc_soft_identity {
	uint8_t seed[32];
	uint8_t pub[32];
};

/* spec §2.3: libsodium's list, as tendermint-rs is_low_order_point */
static const uint8_t low_order[7][32] = {
	{ 0 },
	{ 1 },
	{ 0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
	  0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
	  0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00 },
	{ 0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
	  0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
	  0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57 },
	{ 0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
	{ 0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
	{ 0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
};

static const char label_transcript[] = "TENDERMINT_SECRET_CONNECTION_TRANSCRIPT_HASH";
static const char label_lo[] = "EPHEMERAL_LOWER_PUBLIC_KEY";
static const char label_hi[] = "EPHEMERAL_UPPER_PUBLIC_KEY";
static const char label_dh[] = "DH_SECRET";
static const char label_mac[] = "SECRET_CONNECTION_MAC";

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void make_nonce(uint64_t ctr, uint8_t nonce[static 12])
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(ctr >> (8 * i));
}

/* ---- pure steps ---- */

int sc_is_low_order(const uint8_t pub[static 32])
{
	int hit = 0;

	for (size_t i = 0; i < 7; i++)
		hit |= CRYPTO_memcmp(pub, low_order[i], 32) == 0;
	return hit;
}

int sc_parse_eph_msg(const uint8_t *p, size_t len, uint8_t pub[static 32], const char **why)
{
	static const char *dummy;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (len < 1 || p[0] != 0x22) {
		*why = len >= 1 && (p[0] & 0x80) ? "length prefix over 127 (oversized message)" :
						   "length prefix is not 34";
		return KMS_ERR_FORMAT;
	}
	if (len != SC_EPH_MSG_LEN) {
		*why = "message is not 35 bytes";
		return KMS_ERR_FORMAT;
	}
	if (p[1] != 0x0a || p[2] != 0x20) {
		*why = "not BytesValue{value: 32 bytes}";
		return KMS_ERR_FORMAT;
	}
	memcpy(pub, p + 3, 32);
	return KMS_OK;
}

/* Reads a protobuf varint of at most 5 bytes (all our lengths are far below 2^32). */
static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint32_t *v)
{
	uint32_t x = 0;

	for (unsigned i = 0; i < 5; i++) {
		uint8_t b;

		if (*pos >= len)
			return KMS_ERR_FORMAT;
		b = p[(*pos)++];
		if (i == 4 && b > 0x0f)
			return KMS_ERR_TOO_LARGE;
		x |= (uint32_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*v = x;
			return KMS_OK;
		}
	}
	return KMS_ERR_TOO_LARGE;
}

/* PublicKey{ed25519 = 1} inside the AuthSig: exactly 0a 20 <32>. */
static int parse_pubkey(const uint8_t *p, size_t len, uint8_t pub[static 32], const char **why)
{
	if (len >= 1 && p[0] != 0x0a) {
		*why = (p[0] >> 3) == 2 ? "peer key is secp256k1, expected ed25519" :
					  "peer key is not ed25519";
		return KMS_ERR_AUTH;
	}
	if (len != 34 || p[1] != 0x20) {
		*why = len == 0 ? "empty peer public key" : "ed25519 peer key is not 32 bytes";
		return len == 0 ? KMS_ERR_FORMAT : KMS_ERR_AUTH;
	}
	memcpy(pub, p + 2, 32);
	return KMS_OK;
}

int sc_parse_authsig(const uint8_t *p, size_t len, uint8_t pub[static 32], uint8_t sig[static 64],
		     const char **why)
{
	static const char *dummy;
	size_t pos = 0;
	uint32_t body, klen, slen;
	int r;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	r = get_varint(p, len, &pos, &body);
	if (r != KMS_OK || body > SC_AUTHSIG_MAX) {
		*why = r == KMS_ERR_FORMAT ? "truncated length prefix" :
					     "oversized AuthSig message";
		return r == KMS_ERR_FORMAT ? r : KMS_ERR_TOO_LARGE;
	}
	if (len - pos != body) {
		*why = "length prefix does not match the message";
		return KMS_ERR_FORMAT;
	}
	/* field 1: pub_key (length-delimited, non-nullable, so always first in Go's encoding) */
	if (pos >= len || p[pos++] != 0x0a || get_varint(p, len, &pos, &klen) != KMS_OK ||
	    klen > len - pos) {
		*why = "missing or truncated pub_key field";
		return KMS_ERR_FORMAT;
	}
	r = parse_pubkey(p + pos, klen, pub, why);
	if (r != KMS_OK)
		return r;
	pos += klen;
	/* field 2: sig */
	if (pos >= len || p[pos++] != 0x12 || get_varint(p, len, &pos, &slen) != KMS_OK ||
	    slen > len - pos) {
		*why = "missing or truncated sig field";
		return KMS_ERR_FORMAT;
	}
	if (slen != 64) {
		*why = "signature is not 64 bytes";
		return KMS_ERR_AUTH;
	}
	memcpy(sig, p + pos, 64);
	if (pos + slen != len) {
		*why = "trailing bytes after sig";
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

int sc_hkdf(const uint8_t dh[static 32], uint8_t okm[static 96])
{
	static char info[] = "TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN";
	char md[] = "SHA256";
	uint8_t ikm[32];
	OSSL_PARAM params[4];
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = NULL;
	int r = KMS_ERR_INTERNAL;

	memcpy(ikm, dh, 32);
	if (kdf == NULL || (kctx = EVP_KDF_CTX_new(kdf)) == NULL) {
		r = kms_crypto_err("EVP_KDF_fetch(HKDF)");
		goto out;
	}
	/* no salt: RFC 5869 then uses HashLen zero bytes, as Go's hkdf.New(nil salt) */
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm, sizeof(ikm));
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info) - 1);
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, okm, 96, params) != 1) {
		r = kms_crypto_err("EVP_KDF_derive(HKDF-SHA256)");
		goto out;
	}
	r = KMS_OK;
out:
	OPENSSL_cleanse(ikm, sizeof(ikm));
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return r;
}

int sc_derive_keys(const uint8_t dh[static 32], int loc_is_least, uint8_t recv[static 32],
		   uint8_t send[static 32])
{
	uint8_t okm[96];
	int r = sc_hkdf(dh, okm);

	if (r == KMS_OK) {
		/* okm[64..96] was the pre-v0.33 challenge; unused */
		memcpy(loc_is_least ? recv : send, okm, 32);
		memcpy(loc_is_least ? send : recv, okm + 32, 32);
	}
	OPENSSL_cleanse(okm, sizeof(okm));
	return r;
}

int sc_challenge(const uint8_t lo[static 32], const uint8_t hi[static 32],
		 const uint8_t dh[static 32], uint8_t challenge[static 32])
{
	struct merlin_transcript t;
	int r;

	merlin_init(&t, label_transcript);
	r = merlin_append_message(&t, label_lo, lo, 32);
	if (r == KMS_OK)
		r = merlin_append_message(&t, label_hi, hi, 32);
	if (r == KMS_OK)
		r = merlin_append_message(&t, label_dh, dh, 32);
	if (r == KMS_OK)
		r = merlin_challenge_bytes(&t, label_mac, challenge, 32);
	merlin_wipe(&t);
	return r;
}

/* ---- X25519 ---- */

static int x25519_pub(const uint8_t priv[static 32], uint8_t pub[static 32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
	size_t len = 32;
	int r = KMS_OK;

	if (k == NULL)
		return kms_crypto_err("EVP_PKEY_new_raw_private_key(X25519)");
	if (EVP_PKEY_get_raw_public_key(k, pub, &len) != 1 || len != 32)
		r = kms_crypto_err("EVP_PKEY_get_raw_public_key(X25519)");
	EVP_PKEY_free(k);
	return r;
}

/* dh = X25519(priv, peer). An all-zero result (low-order peer) is KMS_ERR_AUTH. */
static int x25519_dh(const uint8_t priv[static 32], const uint8_t peer[static 32],
		     uint8_t dh[static 32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
	EVP_PKEY_CTX *ctx = NULL;
	uint8_t zero[32] = { 0 };
	size_t len = 32;
	int r = KMS_ERR_INTERNAL;

	if (k == NULL || pk == NULL || (ctx = EVP_PKEY_CTX_new(k, NULL)) == NULL ||
	    EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, pk) != 1) {
		r = kms_crypto_err("X25519 setup");
		goto out;
	}
	if (EVP_PKEY_derive(ctx, dh, &len) != 1 || len != 32) {
		/* OpenSSL refuses an all-zero shared secret itself */
		ERR_clear_error();
		OPENSSL_cleanse(dh, 32);
		r = KMS_ERR_AUTH;
		goto out;
	}
	r = CRYPTO_memcmp(dh, zero, 32) == 0 ? KMS_ERR_AUTH : KMS_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	EVP_PKEY_free(k);
	return r;
}

/* ---- connections and frames ---- */

static EVP_CIPHER_CTX *aead_new(const uint8_t key[static 32], int enc)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (ctx == NULL)
		return NULL;
	if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, NULL, enc) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int sc_conn_new_keys(int fd, const uint8_t send_key[static 32], const uint8_t recv_key[static 32],
		     struct sc_conn **out)
{
	struct sc_conn *c;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return KMS_ERR_ALLOC;
	c->fd = fd;
	c->send_ctx = aead_new(send_key, 1);
	c->recv_ctx = aead_new(recv_key, 0);
	if (c->send_ctx == NULL || c->recv_ctx == NULL) {
		sc_conn_free(c);
		return kms_crypto_err("EVP_CipherInit_ex(ChaCha20-Poly1305)");
	}
	*out = c;
	return KMS_OK;
}

void sc_conn_free(struct sc_conn *c)
{
	if (c == NULL)
		return;
	EVP_CIPHER_CTX_free(c->send_ctx); /* OpenSSL clears the key schedule */
	EVP_CIPHER_CTX_free(c->recv_ctx);
	kms_free_secret(c, sizeof(*c));
}

void sc_conn_set_counters(struct sc_conn *c, uint64_t send_ctr, uint64_t recv_ctr)
{
	c->send_ctr = send_ctr;
	c->recv_ctr = recv_ctr;
}

void sc_conn_get_counters(const struct sc_conn *c, uint64_t *send_ctr, uint64_t *recv_ctr)
{
	*send_ctr = c->send_ctr;
	*recv_ctr = c->recv_ctr;
}

int sc_seal_frame(struct sc_conn *c, const uint8_t *p, size_t n,
		  uint8_t out[static SC_FRAME_SEALED])
{
	uint8_t plain[SC_FRAME_PLAIN], nonce[12];
	int len = 0, fin = 0;
	int r = KMS_ERR_INTERNAL;

	if (n > SC_DATA_MAX)
		return KMS_ERR_INTERNAL;
	/* Go panics rather than let the counter wrap: the frame at 2^64-1 is never sent */
	if (c->send_ctr == UINT64_MAX) {
		kms_log_err("secret connection: send nonce counter exhausted fd=%d", c->fd);
		return KMS_ERR_TOO_LARGE;
	}
	put_le32(plain, (uint32_t)n);
	if (n > 0)
		memcpy(plain + 4, p, n);
	memset(plain + 4 + n, 0, SC_DATA_MAX - n);
	make_nonce(c->send_ctr, nonce);
	if (EVP_EncryptInit_ex(c->send_ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(c->send_ctx, out, &len, plain, SC_FRAME_PLAIN) != 1 ||
	    len != SC_FRAME_PLAIN || EVP_EncryptFinal_ex(c->send_ctx, out + len, &fin) != 1 ||
	    fin != 0 ||
	    EVP_CIPHER_CTX_ctrl(c->send_ctx, EVP_CTRL_AEAD_GET_TAG, SC_TAG_LEN,
				out + SC_FRAME_PLAIN) != 1) {
		r = kms_crypto_err("ChaCha20-Poly1305 seal");
		goto out;
	}
	c->send_ctr++;
	r = KMS_OK;
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	return r;
}

/* Decrypts one sealed frame into c->plain; sets data_off/data_len. */
static int open_into(struct sc_conn *c, const uint8_t in[static SC_FRAME_SEALED])
{
	uint8_t nonce[12], tag[SC_TAG_LEN];
	int len = 0, fin = 0;
	uint32_t chunk;

	if (c->recv_ctr == UINT64_MAX) {
		kms_log_err("secret connection: receive nonce counter exhausted fd=%d", c->fd);
		return KMS_ERR_TOO_LARGE;
	}
	make_nonce(c->recv_ctr, nonce);
	memcpy(tag, in + SC_FRAME_PLAIN, SC_TAG_LEN);
	if (EVP_DecryptInit_ex(c->recv_ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c->recv_ctx, EVP_CTRL_AEAD_SET_TAG, SC_TAG_LEN, tag) != 1 ||
	    EVP_DecryptUpdate(c->recv_ctx, c->plain, &len, in, SC_FRAME_PLAIN) != 1 ||
	    len != SC_FRAME_PLAIN)
		return kms_crypto_err("ChaCha20-Poly1305 open");
	if (EVP_DecryptFinal_ex(c->recv_ctx, c->plain + len, &fin) != 1) {
		ERR_clear_error();
		OPENSSL_cleanse(c->plain, sizeof(c->plain));
		kms_log_err(
			"secret connection: frame failed authentication (bad tag) fd=%d counter=%llu",
			c->fd, (unsigned long long)c->recv_ctr);
		return KMS_ERR_MAC_INVALID;
	}
	c->recv_ctr++;
	chunk = get_le32(c->plain);
	if (chunk > SC_DATA_MAX) {
		OPENSSL_cleanse(c->plain, sizeof(c->plain));
		kms_log_err("secret connection: frame chunk length %u is greater than 1024 fd=%d",
			    chunk, c->fd);
		return KMS_ERR_FORMAT;
	}
	c->data_off = 0;
	c->data_len = chunk;
	return KMS_OK;
}

int sc_open_frame(struct sc_conn *c, const uint8_t in[static SC_FRAME_SEALED],
		  uint8_t data[static SC_DATA_MAX], size_t *n)
{
	int r = open_into(c, in);

	*n = 0;
	if (r != KMS_OK)
		return r;
	memcpy(data, c->plain + 4, c->data_len);
	*n = c->data_len;
	c->data_len = 0;
	OPENSSL_cleanse(c->plain, sizeof(c->plain));
	return KMS_OK;
}

/* Makes sure a whole sealed frame is buffered, reading ahead what the socket has. */
static int fill_frame(struct sc_conn *c, int64_t deadline)
{
	while (c->in_len < SC_FRAME_SEALED) {
		size_t got = 0;
		int r = net_read_some_by(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, &got,
					 deadline);

		if (r == KMS_ERR_CONN_CLOSED && c->in_len > 0) {
			kms_log_err(
				"secret connection: peer closed mid-frame (%zu of %d bytes) fd=%d",
				c->in_len, SC_FRAME_SEALED, c->fd);
			return KMS_ERR_FORMAT;
		}
		if (r != KMS_OK)
			return r; /* a timeout keeps the partial frame: the next read resumes it */
		c->in_len += got;
	}
	return KMS_OK;
}

/* Reads the next non-empty frame into c->plain. */
static int next_frame(struct sc_conn *c, int64_t deadline)
{
	do {
		int r = fill_frame(c, deadline);

		if (r == KMS_OK)
			r = open_into(c, c->in);
		if (r != KMS_OK) {
			if (r != KMS_ERR_TIMEOUT)
				c->err = r;
			return r;
		}
		c->in_len -= SC_FRAME_SEALED;
		memmove(c->in, c->in + SC_FRAME_SEALED, c->in_len);
	} while (c->data_len == 0); /* Go never sends empty frames, but they are legal */
	return KMS_OK;
}

static int read_by(struct sc_conn *c, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	size_t k;

	*got = 0;
	if (c->err != KMS_OK)
		return c->err;
	if (cap == 0 || p == NULL)
		return KMS_ERR_INTERNAL;
	if (c->data_off == c->data_len) {
		int r = next_frame(c, deadline);

		if (r != KMS_OK)
			return r;
	}
	k = c->data_len - c->data_off;
	if (k > cap)
		k = cap;
	memcpy(p, c->plain + 4 + c->data_off, k);
	c->data_off += k;
	if (c->data_off == c->data_len)
		OPENSSL_cleanse(c->plain, sizeof(c->plain));
	*got = k;
	return KMS_OK;
}

int sc_read_by(struct sc_conn *c, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	return read_by(c, p, cap, got, deadline);
}

int sc_read(struct sc_conn *c, uint8_t *p, size_t cap, size_t *got, int timeout_ms)
{
	return read_by(c, p, cap, got, net_deadline(timeout_ms));
}

int sc_write(struct sc_conn *c, const uint8_t *p, size_t n, int timeout_ms)
{
	return sc_write_by(c, p, n, net_deadline(timeout_ms));
}

int sc_write_by(struct sc_conn *c, const uint8_t *p, size_t n, int64_t deadline)
{
	if (c->err != KMS_OK)
		return c->err;
	while (n > 0) {
		size_t nf = 0;
		int r;

		while (n > 0 && nf < SC_BATCH) {
			size_t k = n < SC_DATA_MAX ? n : SC_DATA_MAX;

			r = sc_seal_frame(c, p, k, c->out + nf * SC_FRAME_SEALED);
			if (r != KMS_OK) {
				c->err = r;
				return r;
			}
			p += k;
			n -= k;
			nf++;
		}
		r = net_write_full_by(c->fd, c->out, nf * SC_FRAME_SEALED, deadline);
		if (r != KMS_OK) {
			c->err =
				r; /* frames may be half sent and counters moved on: the stream is gone */
			return r;
		}
	}
	return KMS_OK;
}

static int stream_read(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	return read_by(ctx, p, cap, got, deadline);
}

static int stream_write(void *ctx, const uint8_t *p, size_t n, int64_t deadline)
{
	return sc_write_by(ctx, p, n, deadline);
}

void sc_stream(struct sc_conn *c, struct net_stream *out)
{
	out->read = stream_read;
	out->write = stream_write;
	out->ctx = c;
}

void sc_remote_pubkey(const struct sc_conn *c, uint8_t pub[static 32])
{
	memcpy(pub, c->remote_pub, 32);
}

static void hex20(const uint8_t id[static 20], char out[static 41])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < 20; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[40] = '\0';
}

void sc_remote_id_hex(const struct sc_conn *c, char out[static 41])
{
	hex20(c->remote_id, out);
}

int sc_node_id(const uint8_t pub[static 32], uint8_t id[static 20])
{
	uint8_t h[32];
	int r = kcrypto_sha256(pub, 32, h);

	if (r == KMS_OK)
		memcpy(id, h, 20);
	return r;
}

/* ---- handshake (spec §2.1) ---- */

/* The per-handshake secrets, wiped together at the end. */
struct hs {
	uint8_t eph_priv[32];
	uint8_t eph_pub[32];
	uint8_t remote_eph[32];
	uint8_t dh[32];
	uint8_t recv_key[32];
	uint8_t send_key[32];
	uint8_t challenge[32];
	int loc_is_least;
};

/* What a handshake is bound by and where its failure goes. */
struct hs_run {
	int fd;
	int64_t deadline;	 /* one deadline for the whole handshake */
	struct sc_hs_fail *fail; /* the caller's (it logs), or a scratch one (we log) */
	int log;
};

static int hs_fail(struct hs_run *hr, int r, const char *step, const char *why)
{
	hr->fail->step = step;
	hr->fail->reason = why;
	if (hr->log)
		kms_log_err("secret connection handshake failed fd=%d step=%s%s%s err=%s", hr->fd,
			    step, why != NULL ? " reason=" : "", why != NULL ? why : "",
			    kms_strerror(r));
	return r;
}

/*
 * The peer's first byte is not the 0x22 that starts every Secret Connection
 * ephemeral-key message: an HTTP server, a TLS endpoint or anything else on
 * the port. Keep what it sent (whatever arrives within 100 ms) for the log.
 */
static int hs_not_sc(struct hs_run *hr, uint8_t first)
{
	struct sc_hs_fail *f = hr->fail;
	int64_t soon = net_now_ms() + 100;
	size_t got = 0;

	f->not_sc = 1;
	f->first[0] = first;
	f->first_len = 1;
	if (hr->deadline >= 0 && hr->deadline < soon)
		soon = hr->deadline;
	if (net_read_some_by(hr->fd, f->first + 1, sizeof(f->first) - 1, &got, soon) == KMS_OK)
		f->first_len += got;
	return hs_fail(hr, KMS_ERR_FORMAT, "recv-ephemeral",
		       (first & 0x80) ?
			       "the peer does not speak Secret Connection (oversized first "
			       "message)" :
			       "the peer does not speak Secret Connection");
}

/* Steps 1-2: send our ephemeral key first (35 bytes fit any socket buffer), then read the peer's. */
static int hs_exchange_eph(struct hs_run *hr, struct hs *h)
{
	uint8_t msg[SC_EPH_MSG_LEN];
	const char *why = NULL;
	int r;

	msg[0] = 0x22;
	msg[1] = 0x0a;
	msg[2] = 0x20;
	memcpy(msg + 3, h->eph_pub, 32);
	r = net_write_full_by(hr->fd, msg, sizeof(msg), hr->deadline);
	if (r != KMS_OK)
		return hs_fail(hr, r, "send-ephemeral",
			       r == KMS_ERR_CONN_CLOSED ?
				       "the peer closed the connection before the handshake" :
				       NULL);
	/* the prefix alone tells a foreign or oversized message: refuse before reading more */
	r = net_read_full_by(hr->fd, msg, 1, hr->deadline);
	if (r == KMS_OK && msg[0] != 0x22)
		return hs_not_sc(hr, msg[0]);
	if (r == KMS_OK)
		r = net_read_full_by(hr->fd, msg + 1, sizeof(msg) - 1, hr->deadline);
	if (r == KMS_ERR_CONN_CLOSED)
		return hs_fail(hr, r, "recv-ephemeral",
			       "the peer closed the connection before sending its ephemeral key");
	if (r != KMS_OK)
		return hs_fail(hr, r, "recv-ephemeral", NULL);
	r = sc_parse_eph_msg(msg, sizeof(msg), h->remote_eph, &why);
	if (r != KMS_OK)
		return hs_fail(hr, r, "recv-ephemeral", why);
	return KMS_OK;
}

/* Steps 3-8: checks on the remote key, DH, key split and the transcript challenge. */
static int hs_derive(struct hs_run *hr, struct hs *h)
{
	const uint8_t *lo, *hi;
	int r;

	if (sc_is_low_order(h->remote_eph))
		return hs_fail(hr, KMS_ERR_AUTH, "check-ephemeral",
			       "low-order remote ephemeral key");
	if (CRYPTO_memcmp(h->remote_eph, h->eph_pub, 32) == 0)
		return hs_fail(hr, KMS_ERR_AUTH, "check-ephemeral",
			       "remote ephemeral key equals ours (reflection)");
	/* public values: an ordinary memcmp is fine for the sort */
	h->loc_is_least = memcmp(h->eph_pub, h->remote_eph, 32) < 0;
	lo = h->loc_is_least ? h->eph_pub : h->remote_eph;
	hi = h->loc_is_least ? h->remote_eph : h->eph_pub;
	r = x25519_dh(h->eph_priv, h->remote_eph, h->dh);
	if (r == KMS_ERR_AUTH)
		return hs_fail(hr, r, "dh", "all-zero shared secret (low-order remote key)");
	if (r != KMS_OK)
		return hs_fail(hr, r, "dh", NULL);
	r = sc_derive_keys(h->dh, h->loc_is_least, h->recv_key, h->send_key);
	if (r == KMS_OK)
		r = sc_challenge(lo, hi, h->dh, h->challenge);
	if (r != KMS_OK)
		return hs_fail(hr, r, "derive", NULL);
	return KMS_OK;
}

/* Reads the peer's delimited AuthSigMessage through the encrypted channel. */
static int hs_read_authsig(struct sc_conn *c, uint8_t *buf, size_t *len, int64_t deadline,
			   const char **why)
{
	size_t n = 0, need = 0, got;
	int r;

	/* the prefix, byte by byte, so an oversized length is refused before its body is read */
	for (;;) {
		size_t pos = 0;
		uint32_t body;

		r = read_by(c, buf + n, 1, &got, deadline);
		if (r != KMS_OK)
			return r;
		n++;
		r = get_varint(buf, n, &pos, &body);
		if (r == KMS_OK) {
			if (body > SC_AUTHSIG_MAX) {
				*why = "oversized AuthSig message";
				return KMS_ERR_TOO_LARGE;
			}
			need = n + body;
			break;
		}
		if (r != KMS_ERR_FORMAT) {
			*why = "oversized AuthSig message";
			return KMS_ERR_TOO_LARGE;
		}
	}
	while (n < need) {
		r = read_by(c, buf + n, need - n, &got, deadline);
		if (r != KMS_OK)
			return r;
		n += got;
	}
	*len = n;
	return KMS_OK;
}

/* Step 11, last part: a pinned node id must match the peer's. */
static int hs_check_peer_id(struct hs_run *hr, struct sc_conn *c, const uint8_t *expected)
{
	char want[41], got[41];

	if (expected == NULL || CRYPTO_memcmp(expected, c->remote_id, SC_NODE_ID_LEN) == 0)
		return KMS_OK;
	memcpy(hr->fail->peer_id, c->remote_id, SC_NODE_ID_LEN);
	hr->fail->has_peer_id = 1;
	hr->fail->step = "peer-id";
	hr->fail->reason = "the peer's node id is not the one in addr";
	if (hr->log) {
		hex20(expected, want);
		hex20(c->remote_id, got);
		kms_log_err(
			"secret connection handshake failed fd=%d step=peer-id reason=peer node id %s is not "
			"the expected %s",
			c->fd, got, want);
	}
	return KMS_ERR_AUTH;
}

/* Steps 9-11: sign the challenge, exchange AuthSig messages, verify the peer. */
static int hs_auth(struct hs_run *hr, struct sc_conn *c, struct hs *h, const struct sc_identity *id,
		   const uint8_t *expected)
{
	uint8_t msg[SC_AUTHSIG_MAX + 8], sig[64];
	const char *why = NULL;
	size_t len = 0;
	int r;

	r = id->sign(id->sign_ctx, h->challenge, 32, sig);
	if (r != KMS_OK)
		return hs_fail(hr, r, "sign-challenge", NULL);
	memcpy(msg, "\x66\x0a\x22\x0a\x20", 5);
	memcpy(msg + 5, id->pub, 32);
	msg[37] = 0x12;
	msg[38] = 0x40;
	memcpy(msg + 39, sig, 64);
	r = sc_write_by(c, msg, SC_AUTHSIG_MSG_LEN, hr->deadline);
	if (r != KMS_OK)
		return hs_fail(hr, r, "send-authsig", NULL);
	r = hs_read_authsig(c, msg, &len, hr->deadline, &why);
	if (r == KMS_OK)
		r = sc_parse_authsig(msg, len, c->remote_pub, sig, &why);
	if (r == KMS_ERR_CONN_CLOSED && why == NULL)
		why = "the peer closed the connection before authenticating (it may refuse our "
		      "identity)";
	if (r != KMS_OK)
		return hs_fail(hr, r, "recv-authsig", why);
	r = kcrypto_ed25519_verify(c->remote_pub, h->challenge, 32, sig);
	if (r != KMS_OK)
		return hs_fail(hr, r, "verify-authsig",
			       r == KMS_ERR_AUTH ? "challenge signature does not verify" : NULL);
	r = sc_node_id(c->remote_pub, c->remote_id);
	if (r != KMS_OK)
		return hs_fail(hr, r, "node-id", NULL);
	return hs_check_peer_id(hr, c, expected);
}

static int handshake(int fd, const struct sc_identity *id, const uint8_t *expected_peer_id,
		     int timeout_ms, const uint8_t *eph_priv, struct sc_hs_fail *fail,
		     struct sc_conn **out)
{
	struct sc_hs_fail scratch;
	struct hs_run hr = { fd, net_deadline(timeout_ms), fail != NULL ? fail : &scratch,
			     fail == NULL };
	struct hs h;
	struct sc_conn *c = NULL;
	int r = KMS_ERR_INTERNAL;

	memset(hr.fail, 0, sizeof(*hr.fail));
	if (out == NULL)
		return KMS_ERR_INTERNAL;
	*out = NULL;
	if (id == NULL || id->sign == NULL || fd < 0)
		return KMS_ERR_INTERNAL;
	memset(&h, 0, sizeof(h));
	/* step 1: ephemeral X25519 key (OpenSSL clamps the scalar) */
	if (eph_priv != NULL)
		memcpy(h.eph_priv, eph_priv, 32);
	else if ((r = kcrypto_random(h.eph_priv, 32)) != KMS_OK)
		goto out;
	if ((r = x25519_pub(h.eph_priv, h.eph_pub)) != KMS_OK)
		goto out;
	if ((r = hs_exchange_eph(&hr, &h)) != KMS_OK)
		goto out;
	if ((r = hs_derive(&hr, &h)) != KMS_OK)
		goto out;
	/* step 10: from here on frames are sealed, both counters starting at 0 */
	if ((r = sc_conn_new_keys(fd, h.send_key, h.recv_key, &c)) != KMS_OK)
		goto out;
	if ((r = hs_auth(&hr, c, &h, id, expected_peer_id)) != KMS_OK)
		goto out;
	*out = c;
	c = NULL;
	r = KMS_OK;
out:
	/* step 12: ephemeral key, dh, keys and challenge; the transcript was wiped in sc_challenge */
	OPENSSL_cleanse(&h, sizeof(h));
	sc_conn_free(c);
	return r;
}

int sc_handshake_eph(int fd, const struct sc_identity *id, const uint8_t *expected_peer_id,
		     int timeout_ms, const uint8_t *eph_priv, struct sc_conn **out)
{
	return handshake(fd, id, expected_peer_id, timeout_ms, eph_priv, NULL, out);
}

int sc_handshake(int fd, const struct sc_identity *id, const uint8_t *expected_peer_id,
		 int timeout_ms, struct sc_conn **out)
{
	return handshake(fd, id, expected_peer_id, timeout_ms, NULL, NULL, out);
}

int sc_handshake_ex(int fd, const struct sc_identity *id, const uint8_t *expected_peer_id,
		    int timeout_ms, struct sc_hs_fail *fail, struct sc_conn **out)
{
	return handshake(fd, id, expected_peer_id, timeout_ms, NULL, fail, out);
}

/* ---- software identity ---- */

static int soft_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	const struct sc_soft_identity *si = ctx;

	return kcrypto_ed25519_sign(si->seed, msg, len, sig);
}

int sc_soft_identity_new(const uint8_t *seed, struct sc_soft_identity **out)
{
	struct sc_soft_identity *si;
	int r = KMS_ERR_INTERNAL;

	*out = NULL;
	si = calloc(1, sizeof(*si));
	if (si == NULL)
		return KMS_ERR_ALLOC;
	if (seed != NULL)
		memcpy(si->seed, seed, 32);
	else if ((r = kcrypto_random(si->seed, 32)) != KMS_OK)
		goto out;
	if ((r = kcrypto_ed25519_pub_from_seed(si->seed, si->pub)) != KMS_OK)
		goto out;
	*out = si;
	si = NULL;
	r = KMS_OK;
out:
	sc_soft_identity_free(si);
	return r;
}

void sc_soft_identity_get(const struct sc_soft_identity *si, struct sc_identity *out)
{
	memcpy(out->pub, si->pub, 32);
	out->sign = soft_sign;
	/* the callback only reads through this pointer */
	out->sign_ctx = (void *)(uintptr_t)si;
}

void sc_soft_identity_free(struct sc_soft_identity *si)
{
	kms_free_secret(si, si != NULL ? sizeof(*si) : 0);
}
