/* SPDX-License-Identifier: Apache-2.0 */
/* Canonical sign bytes (spec §4): CanonicalVote, CanonicalProposal, CanonicalVoteExtension. */
#include "p11kms/pv.h"

#include <string.h>

/*
 * Written by hand rather than through protobuf-c: the canonical messages use
 * sfixed64 and a nullable block_id whose omission rule (nil BlockID) is ours
 * to apply, and the whole thing is a few dozen bytes. Each put is checked;
 * the message is built in a scratch kbuf and appended to out with its uvarint
 * length prefix only when complete, so out never receives a partial message.
 */

/* Scratch cap: a vote extension may be up to the 1 MiB message limit. */
#define SB_SCRATCH_MAX (PV_MAX_MSG_DEFAULT + 1024)

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

static int put_key(struct kbuf *b, unsigned field, unsigned wt)
{
	return kbuf_put_uvarint(b, ((uint64_t)field << 3) | wt);
}

/* int32/int64/enum varint: negatives are sign-extended to 10 bytes; 0 omitted. */
static int put_varint_field(struct kbuf *b, unsigned field, int64_t v)
{
	int rc;

	if (v == 0)
		return KMS_OK;
	if ((rc = put_key(b, field, WT_VARINT)) != KMS_OK)
		return rc;
	return kbuf_put_uvarint(b, (uint64_t)v);
}

static int put_sfixed64_field(struct kbuf *b, unsigned field, int64_t v)
{
	int rc;

	if (v == 0)
		return KMS_OK;
	if ((rc = put_key(b, field, WT_I64)) != KMS_OK)
		return rc;
	return kbuf_put_u64le(b, (uint64_t)v);
}

static int put_bytes_field(struct kbuf *b, unsigned field, const void *p, size_t len)
{
	int rc;

	if (len == 0)
		return KMS_OK;
	if ((rc = put_key(b, field, WT_LEN)) != KMS_OK)
		return rc;
	return kbuf_put_lenprefixed(b, p, len);
}

static int put_chain_id(struct kbuf *b, unsigned field, const char *chain_id)
{
	size_t n = strnlen(chain_id, PV_CHAIN_ID_MAX + 1);

	if (n > PV_CHAIN_ID_MAX)
		return KMS_ERR_FORMAT;
	return put_bytes_field(b, field, chain_id, n);
}

/* A submessage that is always emitted (even empty): key, uvarint length, bytes. */
static int put_sub(struct kbuf *b, unsigned field, const struct kbuf *sub)
{
	int rc;

	if ((rc = put_key(b, field, WT_LEN)) != KMS_OK)
		return rc;
	return kbuf_put_lenprefixed(b, kbuf_ptr(sub), kbuf_len(sub));
}

/* Timestamp {seconds = 1, nanos = 2}, non-nullable: "2a 00" at the Unix epoch. */
static int put_timestamp(struct kbuf *b, unsigned field, const struct pv_timestamp *t)
{
	uint8_t tmp[24];
	struct kbuf *sub = kbuf_new(sizeof(tmp));
	int rc = KMS_ERR_ALLOC;

	if (!sub)
		return rc;
	if ((rc = put_varint_field(sub, 1, t->seconds)) == KMS_OK && (rc = put_varint_field(sub, 2, t->nanos)) == KMS_OK)
		rc = put_sub(b, field, sub);
	kbuf_free(sub);
	return rc;
}

/* CanonicalBlockID {hash = 1; CanonicalPartSetHeader part_set_header = 2 (non-nullable)};
 * omitted entirely when nil. An empty hash with a non-zero PSH is not nil. */
static int put_block_id(struct kbuf *b, unsigned field, const struct pv_block_id *bid)
{
	struct kbuf *psh = NULL, *cb = NULL;
	int rc = KMS_ERR_ALLOC;

	if (pv_block_id_is_nil(bid))
		return KMS_OK;
	if (bid->hash_len > PV_HASH_LEN || bid->psh_hash_len > PV_HASH_LEN)
		return KMS_ERR_FORMAT;
	if (!(psh = kbuf_new(64)) || !(cb = kbuf_new(128)))
		goto out;
	if ((rc = put_varint_field(psh, 1, bid->psh_total)) != KMS_OK ||
	    (rc = put_bytes_field(psh, 2, bid->psh_hash, bid->psh_hash_len)) != KMS_OK ||
	    (rc = put_bytes_field(cb, 1, bid->hash, bid->hash_len)) != KMS_OK || (rc = put_sub(cb, 2, psh)) != KMS_OK)
		goto out;
	rc = put_sub(b, field, cb);
out:
	kbuf_free(psh);
	kbuf_free(cb);
	return rc;
}

/* Appends uvarint(len(msg)) || msg. */
static int finish(struct kbuf *msg, struct kbuf *out)
{
	return kbuf_put_lenprefixed(out, kbuf_ptr(msg), kbuf_len(msg));
}

int pv_vote_sign_bytes(const char *chain_id, const struct pv_vote *vote, struct kbuf *out)
{
	struct kbuf *m;
	int rc;

	if (!chain_id || !vote || !out)
		return KMS_ERR_INTERNAL;
	if (!(m = kbuf_new(512)))
		return KMS_ERR_ALLOC;
	/* CanonicalVote: type 1, sfixed64 height 2, sfixed64 round 3, block_id 4,
	 * timestamp 5, chain_id 6; never address, index, signatures or extension. */
	if ((rc = put_varint_field(m, 1, vote->type)) == KMS_OK && (rc = put_sfixed64_field(m, 2, vote->height)) == KMS_OK &&
	    (rc = put_sfixed64_field(m, 3, vote->round)) == KMS_OK &&
	    (rc = put_block_id(m, 4, &vote->block_id)) == KMS_OK &&
	    (rc = put_timestamp(m, 5, &vote->timestamp)) == KMS_OK && (rc = put_chain_id(m, 6, chain_id)) == KMS_OK)
		rc = finish(m, out);
	kbuf_free(m);
	return rc;
}

int pv_proposal_sign_bytes(const char *chain_id, const struct pv_proposal *prop, struct kbuf *out)
{
	struct kbuf *m;
	int rc;

	if (!chain_id || !prop || !out)
		return KMS_ERR_INTERNAL;
	if (!(m = kbuf_new(512)))
		return KMS_ERR_ALLOC;
	/* CanonicalProposal: type (always 32) 1, height 2, round 3, pol_round (int64) 4,
	 * block_id 5, timestamp 6, chain_id 7. */
	if ((rc = put_varint_field(m, 1, PV_TYPE_PROPOSAL)) == KMS_OK &&
	    (rc = put_sfixed64_field(m, 2, prop->height)) == KMS_OK &&
	    (rc = put_sfixed64_field(m, 3, prop->round)) == KMS_OK &&
	    (rc = put_varint_field(m, 4, prop->pol_round)) == KMS_OK &&
	    (rc = put_block_id(m, 5, &prop->block_id)) == KMS_OK &&
	    (rc = put_timestamp(m, 6, &prop->timestamp)) == KMS_OK && (rc = put_chain_id(m, 7, chain_id)) == KMS_OK)
		rc = finish(m, out);
	kbuf_free(m);
	return rc;
}

int pv_vote_extension_sign_bytes(const char *chain_id, const struct pv_vote *vote, struct kbuf *out)
{
	struct kbuf *m;
	int rc;

	if (!chain_id || !vote || !out || (vote->extension_len && !vote->extension))
		return KMS_ERR_INTERNAL;
	if (vote->extension_len > SB_SCRATCH_MAX - 128)
		return KMS_ERR_TOO_LARGE;
	if (!(m = kbuf_new(SB_SCRATCH_MAX)))
		return KMS_ERR_ALLOC;
	/* CanonicalVoteExtension: extension 1, sfixed64 height 2, sfixed64 round 3, chain_id 4 */
	if ((rc = put_bytes_field(m, 1, vote->extension, vote->extension_len)) == KMS_OK &&
	    (rc = put_sfixed64_field(m, 2, vote->height)) == KMS_OK &&
	    (rc = put_sfixed64_field(m, 3, vote->round)) == KMS_OK && (rc = put_chain_id(m, 4, chain_id)) == KMS_OK)
		rc = finish(m, out);
	kbuf_free(m);
	return rc;
}
