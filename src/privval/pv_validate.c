/* SPDX-License-Identifier: Apache-2.0 */
/* Semantic checks on a decoded request before it reaches the guard (spec §3.6). */
#include "p11kms/pv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pv_int.h"

int pv_block_id_is_nil(const struct pv_block_id *b)
{
	return b->hash_len == 0 && b->psh_total == 0 && b->psh_hash_len == 0;
}

int pv_block_id_is_complete(const struct pv_block_id *b)
{
	return b->hash_len == PV_HASH_LEN && b->psh_total > 0 && b->psh_hash_len == PV_HASH_LEN;
}

int pv_timestamp_ok(const struct pv_timestamp *t)
{
	return t->nanos >= 0 && t->nanos <= 999999999 && t->seconds >= PV_GO_ZERO_TIME_SECONDS &&
	       t->seconds <= PV_MAX_TIME_SECONDS;
}

__attribute__((format(printf, 3, 4))) static int fail(char *why, size_t whycap, const char *fmt, ...)
{
	va_list ap;

	if (why && whycap) {
		va_start(ap, fmt);
		if (vsnprintf(why, whycap, fmt, ap) < 0)
			why[0] = '\0';
		va_end(ap);
	}
	return KMS_ERR_FORMAT;
}

static int check_vote(const struct pv_vote *v, char *why, size_t whycap)
{
	int nil = pv_block_id_is_nil(&v->block_id);

	if (v->type != PV_TYPE_PREVOTE && v->type != PV_TYPE_PRECOMMIT)
		return fail(why, whycap, "vote type %d is not prevote (1) or precommit (2)", (int)v->type);
	if (v->height <= 0 || v->round < 0)
		return fail(why, whycap, "vote h=%lld r=%d: height must be > 0 and round >= 0",
			    (long long)v->height, (int)v->round);
	if (!nil && !pv_block_id_is_complete(&v->block_id))
		return fail(why, whycap, "vote h=%lld r=%d: block_id is neither nil nor complete",
			    (long long)v->height, (int)v->round);
	/* FilePV: "extensions are only allowed in non-nil precommits" */
	if (v->extension_len && (v->type != PV_TYPE_PRECOMMIT || nil))
		return fail(why, whycap, "vote h=%lld r=%d type=%d: extension on a %s", (long long)v->height,
			    (int)v->round, (int)v->type, v->type == PV_TYPE_PRECOMMIT ? "nil precommit" : "prevote");
	return KMS_OK;
}

static int check_proposal(const struct pv_proposal *p, char *why, size_t whycap)
{
	if (p->type != PV_TYPE_PROPOSAL)
		return fail(why, whycap, "proposal type %d is not 32", (int)p->type);
	if (p->height <= 0 || p->round < 0)
		return fail(why, whycap, "proposal h=%lld r=%d: height must be > 0 and round >= 0",
			    (long long)p->height, (int)p->round);
	if (p->pol_round < -1 || (p->pol_round >= 0 && p->pol_round >= p->round))
		return fail(why, whycap, "proposal h=%lld r=%d: pol_round %d not in [-1, round)",
			    (long long)p->height, (int)p->round, (int)p->pol_round);
	if (!pv_block_id_is_complete(&p->block_id))
		return fail(why, whycap, "proposal h=%lld r=%d: block_id is not complete", (long long)p->height,
			    (int)p->round);
	return KMS_OK;
}

int pv_validate_request(const struct pv_request *r, const char *configured_chain_id, char *why, size_t whycap)
{
	if (why && whycap)
		why[0] = '\0';
	if (!r || !configured_chain_id)
		return KMS_ERR_INTERNAL;
	if (r->kind == PV_REQ_PING || r->kind == PV_REQ_SIGN_BYTES)
		return KMS_OK; /* no chain_id; sign-bytes policy is the caller's */
	if (strcmp(r->chain_id, configured_chain_id) != 0) {
		(void)fail(why, whycap, "chain_id mismatch: want %s, got %s", configured_chain_id, r->chain_id);
		return KMS_ERR_REFUSED;
	}
	switch (r->kind) {
	case PV_REQ_PUBKEY:
		return KMS_OK;
	case PV_REQ_SIGN_VOTE:
		return check_vote(&r->vote, why, whycap);
	case PV_REQ_SIGN_PROPOSAL:
		return check_proposal(&r->proposal, why, whycap);
	case PV_REQ_PING:
	case PV_REQ_SIGN_BYTES:
		break;
	}
	return KMS_ERR_INTERNAL;
}

enum pv_code pv_code_for_err(int kms_err)
{
	switch (kms_err) {
	case KMS_ERR_FORMAT:
		return PV_CODE_INVALID_REQUEST;
	case KMS_ERR_DOUBLE_SIGN:
		return PV_CODE_DOUBLE_SIGN;
	case KMS_ERR_STATE_IO:
		return PV_CODE_STATE_UNAVAILABLE;
	case KMS_ERR_PKCS11:
	case KMS_ERR_CRYPTO:
		return PV_CODE_SIGN_FAILED;
	case KMS_ERR_TOO_LARGE:
		return PV_CODE_TOO_LARGE;
	default:
		return PV_CODE_UNKNOWN;
	}
}

const char *pv_reference_refusal(enum pv_version v, enum pv_req_kind k)
{
	switch (k) {
	case PV_REQ_PUBKEY:
		/* auto: either text is only logged by the node; v0.34-v0.38 wrote this one */
		return v == PV_V1 ? "unable to provide pubkey type and bytes" :
				    "unable to provide pubkey";
	case PV_REQ_SIGN_VOTE:
		return "unable to sign vote";
	case PV_REQ_SIGN_PROPOSAL:
		return "unable to sign proposal";
	case PV_REQ_SIGN_BYTES:
		return "sign_bytes disabled";
	case PV_REQ_PING:
		break;
	}
	return "";
}

int pv_wants_extension_signature(enum pv_version v, const struct pv_request *r)
{
	const struct pv_version_info *vi = pv_version_info(v);

	if (!vi || !r || !vi->has_extensions || r->kind != PV_REQ_SIGN_VOTE)
		return 0;
	if (r->vote.type != PV_TYPE_PRECOMMIT || pv_block_id_is_nil(&r->vote.block_id))
		return 0;
	/* family B: always (even an empty extension); family C: unless the node says skip */
	return !(vi->has_skip_extension_signing && r->skip_extension_signing);
}
