/* SPDX-License-Identifier: Apache-2.0 */
/* Checks a signer's response the way a node would, with OpenSSL over our canonical sign bytes. */
#include "sim.h"

#include <stdio.h>
#include <string.h>

#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"

const char *sim_verdict_name(enum sim_verdict v)
{
	switch (v) {
	case SIM_OK:
		return "ok";
	case SIM_BAD_SIG:
		return "bad-signature";
	case SIM_BAD_EXT_SIG:
		return "bad-extension-signature";
	case SIM_MISMATCH:
		return "mismatch";
	case SIM_REFUSED:
		return "refused";
	}
	return "?";
}

static int block_eq(const struct pv_block_id *a, const struct pv_block_id *b)
{
	return a->hash_len == b->hash_len && memcmp(a->hash, b->hash, a->hash_len) == 0 &&
	       a->psh_total == b->psh_total && a->psh_hash_len == b->psh_hash_len &&
	       memcmp(a->psh_hash, b->psh_hash, a->psh_hash_len) == 0;
}

/* Verifies sig (optionally with one bit flipped) over the bytes in sb. */
static int check_sig(const uint8_t pub[static 32], const struct kbuf *sb, const uint8_t *sig,
		     size_t sig_len, int corrupt_bit)
{
	uint8_t s[PV_SIG_LEN];
	if (sig_len != PV_SIG_LEN)
		return KMS_ERR_AUTH;
	memcpy(s, sig, PV_SIG_LEN);
	if (corrupt_bit >= 0)
		s[(corrupt_bit / 8) % PV_SIG_LEN] ^= (uint8_t)(1u << (corrupt_bit % 8));
	return kcrypto_ed25519_verify(pub, kbuf_ptr(sb), kbuf_len(sb), s);
}

/* Whether the signer must have produced an extension signature (spec §3.6). */
static int wants_ext(enum pv_version v, const struct pv_request *req, int want_ext_v038)
{
	if (!pv_wants_extension_signature(v, req))
		return 0;
	return v != PV_V0_38 || want_ext_v038;
}

static enum sim_verdict verify_vote(enum pv_version v, const uint8_t pub[static 32],
				    const struct pv_request *req, const struct pv_response *resp,
				    int want_ext_v038, int corrupt_bit, char *why, size_t whycap)
{
	const struct pv_vote *q = &req->vote;
	const struct pv_vote *a = &resp->vote;
	struct pv_vote chk;
	struct kbuf *sb = kbuf_new(4096 + q->extension_len);
	enum sim_verdict out = SIM_MISMATCH;

	if (sb == NULL) {
		(void)snprintf(why, whycap, "out of memory");
		return SIM_MISMATCH;
	}
	if (a->type != q->type || a->height != q->height || a->round != q->round ||
	    !block_eq(&a->block_id, &q->block_id)) {
		(void)snprintf(
			why, whycap,
			"vote response h=%lld r=%d type=%d does not answer h=%lld r=%d type=%d",
			(long long)a->height, (int)a->round, (int)a->type, (long long)q->height,
			(int)q->round, (int)q->type);
		goto out;
	}
	/* The node adopts the returned vote, timestamp included (FilePV may return a stored one). */
	chk = *q;
	chk.timestamp = a->timestamp;
	if (pv_vote_sign_bytes(req->chain_id, &chk, sb) != KMS_OK) {
		(void)snprintf(why, whycap, "cannot compute vote sign bytes");
		goto out;
	}
	if (check_sig(pub, sb, a->signature, a->signature_len, corrupt_bit) != KMS_OK) {
		(void)snprintf(why, whycap,
			       "vote signature (%zu bytes) does not verify at h=%lld r=%d type=%d",
			       a->signature_len, (long long)q->height, (int)q->round, (int)q->type);
		out = SIM_BAD_SIG;
		goto out;
	}
	if (!wants_ext(v, req, want_ext_v038)) {
		if (a->extension_signature_len != 0) {
			(void)snprintf(why, whycap,
				       "unexpected extension signature at h=%lld r=%d type=%d%s",
				       (long long)q->height, (int)q->round, (int)q->type,
				       pv_block_id_is_nil(&q->block_id) ? " (nil vote)" : "");
			out = SIM_BAD_EXT_SIG;
			goto out;
		}
		out = SIM_OK;
		goto out;
	}
	kbuf_reset(sb);
	if (pv_vote_extension_sign_bytes(req->chain_id, q, sb) != KMS_OK) {
		(void)snprintf(why, whycap, "cannot compute extension sign bytes");
		goto out;
	}
	if (check_sig(pub, sb, a->extension_signature, a->extension_signature_len, corrupt_bit) !=
	    KMS_OK) {
		(void)snprintf(why, whycap,
			       "extension signature (%zu bytes) does not verify at h=%lld r=%d",
			       a->extension_signature_len, (long long)q->height, (int)q->round);
		out = SIM_BAD_EXT_SIG;
		goto out;
	}
	out = SIM_OK;
out:
	kbuf_free(sb);
	return out;
}

static enum sim_verdict verify_proposal(const uint8_t pub[static 32], const struct pv_request *req,
					const struct pv_response *resp, int corrupt_bit, char *why,
					size_t whycap)
{
	const struct pv_proposal *q = &req->proposal;
	const struct pv_proposal *a = &resp->proposal;
	struct kbuf *sb = kbuf_new(4096);
	enum sim_verdict out = SIM_MISMATCH;

	if (sb == NULL) {
		(void)snprintf(why, whycap, "out of memory");
		return SIM_MISMATCH;
	}
	if (a->height != q->height || a->round != q->round ||
	    !block_eq(&a->block_id, &q->block_id)) {
		(void)snprintf(
			why, whycap, "proposal response h=%lld r=%d does not answer h=%lld r=%d",
			(long long)a->height, (int)a->round, (long long)q->height, (int)q->round);
		goto out;
	}
	/* CometBFT copies only the signature into its proposal: verify over the request. */
	if (pv_proposal_sign_bytes(req->chain_id, q, sb) != KMS_OK) {
		(void)snprintf(why, whycap, "cannot compute proposal sign bytes");
		goto out;
	}
	if (check_sig(pub, sb, a->signature, a->signature_len, corrupt_bit) != KMS_OK) {
		(void)snprintf(why, whycap,
			       "proposal signature (%zu bytes) does not verify at h=%lld r=%d",
			       a->signature_len, (long long)q->height, (int)q->round);
		out = SIM_BAD_SIG;
		goto out;
	}
	out = SIM_OK;
out:
	kbuf_free(sb);
	return out;
}

enum sim_verdict sim_verify(enum pv_version v, const uint8_t pub[static 32],
			    const struct pv_request *req, const struct pv_response *resp,
			    int want_ext_v038, int corrupt_bit, char *why, size_t whycap)
{
	why[0] = '\0';
	if (resp->kind != req->kind) {
		(void)snprintf(why, whycap, "response is a %s, request was a %s",
			       pv_req_kind_name(resp->kind), pv_req_kind_name(req->kind));
		return SIM_MISMATCH;
	}
	if (resp->has_error) {
		(void)snprintf(why, whycap, "RemoteSignerError code=%d: %s", (int)resp->error_code,
			       resp->error_description);
		return SIM_REFUSED;
	}
	switch (req->kind) {
	case PV_REQ_SIGN_VOTE:
		return verify_vote(v, pub, req, resp, want_ext_v038, corrupt_bit, why, whycap);
	case PV_REQ_SIGN_PROPOSAL:
		return verify_proposal(pub, req, resp, corrupt_bit, why, whycap);
	case PV_REQ_PING:
		return SIM_OK;
	case PV_REQ_PUBKEY:
		if (!resp->has_pub_key) {
			(void)snprintf(why, whycap, "PubKeyResponse without an ed25519 key");
			return SIM_MISMATCH;
		}
		return SIM_OK;
	case PV_REQ_SIGN_BYTES:
		break;
	}
	(void)snprintf(why, whycap, "unexpected request kind");
	return SIM_MISMATCH;
}
