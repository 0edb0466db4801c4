/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: privval Message decoding for every version. The first byte
 * picks the version (low 2 bits) and the direction (bit 2: response); the rest
 * is one Message. Beyond "no crash" it checks that decode -> encode is stable:
 * re-decoding our own encoding must give the same bytes again, and a valid
 * request always yields sign bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_log.h"
#include "p11kms/pv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static void same_bytes(const struct kbuf *a, const struct kbuf *b)
{
	check(kbuf_len(a) == kbuf_len(b));
	check(kbuf_len(a) == 0 || memcmp(kbuf_ptr(a), kbuf_ptr(b), kbuf_len(a)) == 0);
}

static void sign_bytes_of(enum pv_version v, const struct pv_request *r)
{
	struct kbuf *sb = kbuf_new(PV_MAX_MSG_DEFAULT * 2);
	char why[200];

	if (!sb)
		return;
	if (pv_validate_request(r, "haqq_11235-1", why, sizeof(why)) == KMS_OK) {
		if (r->kind == PV_REQ_SIGN_VOTE) {
			check(pv_vote_sign_bytes(r->chain_id, &r->vote, sb) == KMS_OK);
			if (pv_wants_extension_signature(v, r))
				check(pv_vote_extension_sign_bytes(r->chain_id, &r->vote, sb) == KMS_OK);
			check(pv_encode_signed_vote_response(v, &r->vote, sb) == KMS_OK);
		} else if (r->kind == PV_REQ_SIGN_PROPOSAL) {
			check(pv_proposal_sign_bytes(r->chain_id, &r->proposal, sb) == KMS_OK);
			check(pv_encode_signed_proposal_response(v, &r->proposal, sb) == KMS_OK);
		}
	}
	if (r->kind != PV_REQ_PING)
		check(pv_encode_error_response(v, r->kind, PV_CODE_INVALID_REQUEST, why, sb) == KMS_OK);
	kbuf_free(sb);
}

static void requests(enum pv_version v, const uint8_t *p, size_t n)
{
	struct pv_request *r = NULL, *r2 = NULL;
	struct kbuf *e1 = kbuf_new(n + 4096), *e2 = kbuf_new(n + 4096);

	if (e1 && e2 && pv_decode_request(v, p, n, &r) == KMS_OK) {
		check(pv_encode_request(v, r, e1) == KMS_OK);
		check(pv_decode_request(v, kbuf_ptr(e1), kbuf_len(e1), &r2) == KMS_OK);
		check(pv_encode_request(v, r2, e2) == KMS_OK);
		same_bytes(e1, e2);
		sign_bytes_of(v, r);
	}
	pv_request_free(r);
	pv_request_free(r2);
	kbuf_free(e1);
	kbuf_free(e2);
}

static int encode_response(enum pv_version v, const struct pv_response *r, struct kbuf *out)
{
	if (r->has_error && r->kind != PV_REQ_PING)
		return pv_encode_error_response(v, r->kind, r->error_code, r->error_description, out);
	switch (r->kind) {
	case PV_REQ_PUBKEY:
		return r->has_pub_key ? pv_encode_pubkey_response(v, r->pub_key, out) : KMS_ERR_FORMAT;
	case PV_REQ_SIGN_VOTE:
		return pv_encode_signed_vote_response(v, &r->vote, out);
	case PV_REQ_SIGN_PROPOSAL:
		return pv_encode_signed_proposal_response(v, &r->proposal, out);
	case PV_REQ_PING:
		return pv_encode_ping_response(v, out);
	case PV_REQ_SIGN_BYTES:
		return KMS_ERR_UNSUPPORTED; /* we never send a signed SignBytesResponse */
	}
	return KMS_ERR_INTERNAL;
}

static void responses(enum pv_version v, const uint8_t *p, size_t n)
{
	struct pv_response *r = NULL, *r2 = NULL;
	struct kbuf *e1 = kbuf_new(n + 4096), *e2 = kbuf_new(n + 4096);

	if (e1 && e2 && pv_decode_response(v, p, n, &r) == KMS_OK && encode_response(v, r, e1) == KMS_OK) {
		check(pv_decode_response(v, kbuf_ptr(e1), kbuf_len(e1), &r2) == KMS_OK);
		check(encode_response(v, r2, e2) == KMS_OK);
		same_bytes(e1, e2);
	}
	pv_response_free(r);
	pv_response_free(r2);
	kbuf_free(e1);
	kbuf_free(e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum pv_version v;

	if (size < 1)
		return 0;
	kms_log_set_quiet(1);
	v = (enum pv_version)(data[0] & 3);
	if (data[0] & 4)
		responses(v, data + 1, size - 1);
	else
		requests(v, data + 1, size - 1);
	return 0;
}
