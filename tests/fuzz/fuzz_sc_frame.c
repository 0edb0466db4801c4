/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: Secret Connection frame opening and stream reassembly (sc_read). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../../src/net/sc_int.h"
#include "p11kms/kms_log.h"
#include "p11kms/sc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key_a[32] = { 0x11 }; /* the fuzzer's send key = our receive key */
static const uint8_t key_b[32] = { 0x22 };

/* Seals a whole 1028-byte plaintext (any chunk length field) at counter ctr. */
static int seal_raw(uint64_t ctr, const uint8_t plain[SC_FRAME_PLAIN], uint8_t out[SC_FRAME_SEALED])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint8_t nonce[12] = { 0 };
	int len = 0, ok;

	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(ctr >> (8 * i));
	ok = ctx != NULL &&
	     EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key_a, nonce) == 1 &&
	     EVP_EncryptUpdate(ctx, out, &len, plain, SC_FRAME_PLAIN) == 1 &&
	     EVP_EncryptFinal_ex(ctx, out + len, &len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + SC_FRAME_PLAIN) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

/*
 * Input: records of [flags u8][len u16le][len bytes of chunk]. Each becomes a
 * frame whose length field is len (which may exceed 1024), sealed at the next
 * counter; flag bit 0 flips a tag bit, bit 1 sends only part of the frame
 * and ends the stream. The reader must return exactly the chunks up to the
 * first bad frame, then the matching error.
 */
static void stream_case(const uint8_t *data, size_t size)
{
	static uint8_t wire[16 * SC_FRAME_SEALED], expect[16 * SC_DATA_MAX], got[17 * SC_DATA_MAX];
	uint8_t plain[SC_FRAME_PLAIN];
	size_t wlen = 0, elen = 0, glen = 0;
	int want = KMS_ERR_CONN_CLOSED, sp[2], r = KMS_OK;
	struct sc_conn *c = NULL;
	uint64_t ctr = 0;

	while (size >= 3 && wlen + SC_FRAME_SEALED <= sizeof(wire) && want == KMS_ERR_CONN_CLOSED) {
		uint8_t flags = data[0];
		size_t len = (size_t)data[1] | (size_t)data[2] << 8, take;

		data += 3;
		size -= 3;
		take = len > SC_DATA_MAX ? SC_DATA_MAX : len;
		take = take > size ? size : take;
		memset(plain, 0, sizeof(plain));
		plain[0] = (uint8_t)len;
		plain[1] = (uint8_t)(len >> 8);
		memcpy(plain + 4, data, take);
		data += take;
		size -= take;
		if (!seal_raw(ctr++, plain, wire + wlen))
			return;
		if (flags & 1) {
			wire[wlen + SC_FRAME_SEALED - 1] ^= 0x80;
			want = KMS_ERR_MAC_INVALID;
		} else if (flags & 2) {
			wlen += flags % SC_FRAME_SEALED; /* a partial frame (maybe none) then EOF */
			want = (flags % SC_FRAME_SEALED) ? KMS_ERR_FORMAT : KMS_ERR_CONN_CLOSED;
			break;
		} else if (len > SC_DATA_MAX) {
			want = KMS_ERR_FORMAT;
		} else {
			memcpy(expect + elen, plain + 4, len);
			elen += len;
		}
		wlen += SC_FRAME_SEALED;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		return;
	if (net_write_full(sp[1], wire, wlen, 1000) != KMS_OK || shutdown(sp[1], SHUT_WR) != 0 ||
	    sc_conn_new_keys(sp[0], key_b, key_a, &c) != KMS_OK)
		goto out;
	while (r == KMS_OK) {
		size_t n = 0;

		r = sc_read(c, got + glen, sizeof(got) - glen, &n, 1000);
		if (r == KMS_OK && (n == 0 || n > SC_DATA_MAX))
			__builtin_trap();
		glen += n;
	}
	if (r != want || glen != elen || memcmp(got, expect, elen) != 0)
		__builtin_trap();
out:
	sc_conn_free(c);
	close(sp[0]);
	close(sp[1]);
}

/* Any 1044 bytes given to sc_open_frame: only a MAC failure is possible, and nothing leaks out. */
static void open_case(const uint8_t *data, size_t size)
{
	uint8_t frame[SC_FRAME_SEALED] = { 0 }, out[SC_DATA_MAX];
	struct sc_conn *c = NULL;
	size_t n = 1;

	memcpy(frame, data, size < sizeof(frame) ? size : sizeof(frame));
	if (sc_conn_new_keys(-1, key_b, key_a, &c) != KMS_OK)
		return;
	if (sc_open_frame(c, frame, out, &n) != KMS_ERR_MAC_INVALID || n != 0)
		__builtin_trap();
	sc_conn_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kms_log_set_quiet(1);
	if (size < 1)
		return 0;
	if (data[0] & 1)
		open_case(data + 1, size - 1);
	else
		stream_case(data + 1, size - 1);
	return 0;
}
