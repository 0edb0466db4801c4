/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the Secret Connection handshake as seen from the signer.
 * The input is everything the peer sends (ephemeral message, then sealed
 * AuthSig frames); the signer uses the fixed keys of the derived vector in
 * tests/vectors/secret_connection.json, so the seed made of the validator's
 * messages completes the handshake and mutations explore every refusal.
 * The two message parsers also run on the raw input.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/net/sc_int.h"
#include "p11kms/kms_log.h"
#include "p11kms/sc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t signer_seed[32] = {
	0x04, 0xac, 0x2a, 0xd0, 0x7e, 0x60, 0x9a, 0x2c, 0xdc, 0xfe, 0x51,
	0xcc, 0xa5, 0x46, 0x25, 0x5b, 0xf7, 0xe3, 0x78, 0xd9, 0x3e, 0xfe,
	0x98, 0xaa, 0xe5, 0x07, 0x27, 0xfd, 0x20, 0xa7, 0x0a, 0x3d,
};
static const uint8_t signer_eph[32] = {
	0x57, 0xce, 0x21, 0x3d, 0x4d, 0xde, 0x77, 0x14, 0x93, 0x8c, 0xf5,
	0x22, 0x1c, 0x71, 0xce, 0x6c, 0x08, 0x3f, 0x6b, 0x9b, 0x3e, 0xb8,
	0x70, 0x91, 0x05, 0x8a, 0xbb, 0xfe, 0x02, 0x2f, 0x7e, 0x7b,
};

static void parsers(const uint8_t *data, size_t size)
{
	uint8_t pub[32], sig[64];
	const char *why = NULL;
	int r;

	r = sc_parse_eph_msg(data, size, pub, &why);
	if (r == KMS_OK && (size != SC_EPH_MSG_LEN || memcmp(pub, data + 3, 32) != 0))
		__builtin_trap();
	if (r != KMS_OK && why == NULL)
		__builtin_trap();
	r = sc_parse_authsig(data, size, pub, sig, &why);
	/* strict: only the one canonical 103-byte encoding is accepted */
	if (r == KMS_OK &&
	    (size != SC_AUTHSIG_MSG_LEN || memcmp(data, "\x66\x0a\x22\x0a\x20", 5) != 0 ||
	     data[37] != 0x12 || data[38] != 0x40 || memcmp(pub, data + 5, 32) != 0 ||
	     memcmp(sig, data + 39, 64) != 0))
		__builtin_trap();
	if (r != KMS_OK && why == NULL)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sc_soft_identity *si = NULL;
	struct sc_identity id;
	struct sc_conn *c = NULL;
	int sp[2], r;

	kms_log_set_quiet(1);
	parsers(data, size);
	if (size > 64 * 1024)
		return 0; /* keep within the socket buffer so one thread suffices */
	if (sc_soft_identity_new(signer_seed, &si) != KMS_OK)
		return 0;
	sc_soft_identity_get(si, &id);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		goto out;
	if (net_write_full(sp[1], data, size, 1000) == KMS_OK && shutdown(sp[1], SHUT_WR) == 0) {
		r = sc_handshake_eph(sp[0], &id, NULL, 1000, signer_eph, &c);
		/* the peer's EOF ends every path: never a timeout, and c only on success */
		if (r == KMS_ERR_TIMEOUT || (r == KMS_OK) != (c != NULL))
			__builtin_trap();
	}
	sc_conn_free(c);
	close(sp[0]);
	close(sp[1]);
out:
	sc_soft_identity_free(si);
	return 0;
}
