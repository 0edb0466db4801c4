/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the guard's own protobuf walker of canonical sign bytes
 * (guard_pb_decode, guard_pb_block_id, guard_pb_equal_but_ts). The guard runs
 * it on every signing request, independently of pv_, so it must (a) never read
 * outside the input and keep its pointers inside it, and (b) accept every sign
 * bytes pv_ produces, with the same H/R/S, timestamp and chain-id (else the
 * daemon would refuse valid requests).
 * First byte bit 0 = 0: the rest is raw sign bytes. Bit 0 = 1: the rest picks
 * field values, pv_vote_sign_bytes / pv_proposal_sign_bytes encode them, and
 * the walker must decode them back to the same values (a differential check).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../src/guard/guard_int.h"
#include "p11kms/kbuf.h"
#include "p11kms/kms_log.h"
#include "p11kms/pv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static int inside(const uint8_t *base, size_t n, const uint8_t *p, size_t len)
{
	return p >= base && len <= n && (size_t)(p - base) <= n - len;
}

static void raw_case(const uint8_t *p, size_t n)
{
	struct guard_canon c, c2;
	const uint8_t *hash, *ph;
	size_t hash_len, ph_len;
	uint32_t total;

	if (guard_pb_decode(p, n, &c) != KMS_OK)
		return;
	/* accepted: every borrowed pointer lies inside the input */
	check(inside(p, n, c.body, c.body_len));
	check(c.ts_len > 0 && c.ts_off <= c.body_len && c.ts_len <= c.body_len - c.ts_off);
	check(c.chain_id_len == 0 || inside(c.body, c.body_len, c.chain_id, c.chain_id_len));
	check(c.block_id == NULL || inside(c.body, c.body_len, c.block_id, c.block_id_len));
	check(c.ts_nanos >= 0 && c.ts_nanos <= 999999999);
	check(c.is_proposal == (c.step == GUARD_STEP_PROPOSE));
	check(c.step == GUARD_STEP_PROPOSE || c.step == GUARD_STEP_PREVOTE ||
	      c.step == GUARD_STEP_PRECOMMIT);
	/* deterministic, and equal to itself but for the timestamp */
	check(guard_pb_decode(p, n, &c2) == KMS_OK && memcmp(&c, &c2, sizeof(c)) == 0);
	check(guard_pb_equal_but_ts(&c, &c2) == 1);
	if (c.block_id != NULL && guard_pb_block_id(c.block_id, c.block_id_len, &hash, &hash_len,
						    &total, &ph, &ph_len) == KMS_OK) {
		check(hash_len == 0 || inside(c.block_id, c.block_id_len, hash, hash_len));
		check(ph_len == 0 || inside(c.block_id, c.block_id_len, ph, ph_len));
	}
	/* any strict prefix of an accepted message is refused (the length covers it all) */
	if (n > 1)
		check(guard_pb_decode(p, n - 1, &c2) != KMS_OK);
}

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct rd *r, size_t k)
{
	uint64_t v = 0;

	for (size_t i = 0; i < k && r->n; i++, r->p++, r->n--)
		v |= (uint64_t)r->p[0] << (8 * i);
	return v;
}

static void block_from(struct rd *r, struct pv_block_id *b)
{
	uint8_t f = (uint8_t)take(r, 1);

	memset(b, 0, sizeof(*b));
	if (f & 1) {
		b->hash_len = PV_HASH_LEN;
		memset(b->hash, (int)take(r, 1), PV_HASH_LEN);
	}
	if (f & 2)
		b->psh_total = (uint32_t)take(r, 4);
	if (f & 4) {
		b->psh_hash_len = PV_HASH_LEN;
		memset(b->psh_hash, (int)take(r, 1), PV_HASH_LEN);
	}
}

/* The walker's view of what pv_ encoded must match the values given. */
static void same(const struct guard_canon *c, int is_prop, int32_t type, int64_t h, int32_t round,
		 const struct pv_block_id *b, const struct pv_timestamp *ts, const char *chain)
{
	check(c->is_proposal == is_prop);
	check(c->step == (type == PV_TYPE_PREVOTE   ? GUARD_STEP_PREVOTE :
			  type == PV_TYPE_PRECOMMIT ? GUARD_STEP_PRECOMMIT :
						      GUARD_STEP_PROPOSE));
	check(c->height == h && c->round == round);
	check(c->ts_seconds == ts->seconds && c->ts_nanos == ts->nanos);
	check(c->chain_id_len == strlen(chain) &&
	      (c->chain_id_len == 0 || memcmp(c->chain_id, chain, c->chain_id_len) == 0));
	check((c->block_id == NULL) == (pv_block_id_is_nil(b) != 0));
	if (c->block_id != NULL) {
		const uint8_t *hash, *ph;
		size_t hash_len, ph_len;
		uint32_t total;

		check(guard_pb_block_id(c->block_id, c->block_id_len, &hash, &hash_len, &total, &ph,
					&ph_len) == KMS_OK);
		check(hash_len == b->hash_len && total == b->psh_total &&
		      ph_len == b->psh_hash_len);
		check(hash_len == 0 || memcmp(hash, b->hash, hash_len) == 0);
		check(ph_len == 0 || memcmp(ph, b->psh_hash, ph_len) == 0);
	}
}

static void differential_case(const uint8_t *data, size_t size)
{
	struct rd r = { data, size };
	struct pv_vote v;
	struct pv_proposal p;
	struct guard_canon c, c2;
	char chain[PV_CHAIN_ID_MAX + 1];
	struct kbuf *a = kbuf_new(4096), *b = kbuf_new(4096);
	size_t clen;
	uint8_t kind;

	memset(&v, 0, sizeof(v));
	memset(&p, 0, sizeof(p));
	if (a == NULL || b == NULL)
		goto out;
	kind = (uint8_t)take(&r, 1);
	/* the values pv_decode_request lets through: H, R >= 0; nanos in range; Go's years */
	v.type = (kind & 1) ? PV_TYPE_PRECOMMIT : PV_TYPE_PREVOTE;
	v.height = (int64_t)(take(&r, 8) & INT64_MAX);
	v.round = (int32_t)(take(&r, 4) & INT32_MAX);
	block_from(&r, &v.block_id);
	v.timestamp.seconds = PV_GO_ZERO_TIME_SECONDS +
			      (int64_t)(take(&r, 8) % (uint64_t)(PV_MAX_TIME_SECONDS -
								 PV_GO_ZERO_TIME_SECONDS + 1));
	v.timestamp.nanos = (int32_t)(take(&r, 4) % 1000000000u);
	clen = (size_t)take(&r, 1) % (PV_CHAIN_ID_MAX + 1);
	for (size_t i = 0; i < clen; i++)
		chain[i] = (char)('!' + take(&r, 1) % 94);
	chain[clen] = '\0';
	p.type = PV_TYPE_PROPOSAL;
	p.height = v.height;
	p.round = v.round;
	p.pol_round = (int32_t)take(&r, 4);
	if (p.pol_round < -1)
		p.pol_round = -1;
	p.block_id = v.block_id;
	p.timestamp = v.timestamp;

	if (kind & 2) {
		check(pv_proposal_sign_bytes(chain, &p, a) == KMS_OK);
		check(guard_pb_decode(kbuf_ptr(a), kbuf_len(a), &c) == KMS_OK);
		same(&c, 1, PV_TYPE_PROPOSAL, p.height, p.round, &p.block_id, &p.timestamp, chain);
		/* the same proposal at another timestamp differs only there */
		p.timestamp.nanos = (p.timestamp.nanos + 1) % 1000000000;
		check(pv_proposal_sign_bytes(chain, &p, b) == KMS_OK);
		check(guard_pb_decode(kbuf_ptr(b), kbuf_len(b), &c2) == KMS_OK);
		check(guard_pb_equal_but_ts(&c, &c2) == 1);
	} else {
		check(pv_vote_sign_bytes(chain, &v, a) == KMS_OK);
		check(guard_pb_decode(kbuf_ptr(a), kbuf_len(a), &c) == KMS_OK);
		same(&c, 0, v.type, v.height, v.round, &v.block_id, &v.timestamp, chain);
		v.timestamp.seconds ^= 1;
		check(pv_vote_sign_bytes(chain, &v, b) == KMS_OK);
		check(guard_pb_decode(kbuf_ptr(b), kbuf_len(b), &c2) == KMS_OK);
		check(guard_pb_equal_but_ts(&c, &c2) == 1);
		/* another round is not "equal but the timestamp" */
		v.round = v.round == 0 ? 1 : 0;
		kbuf_reset(b);
		check(pv_vote_sign_bytes(chain, &v, b) == KMS_OK);
		check(guard_pb_decode(kbuf_ptr(b), kbuf_len(b), &c2) == KMS_OK);
		check(guard_pb_equal_but_ts(&c, &c2) == 0);
	}
out:
	kbuf_free(a);
	kbuf_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kms_log_set_quiet(1);
	if (size < 1)
		return 0;
	if (data[0] & 1)
		differential_case(data + 1, size - 1);
	else
		raw_case(data + 1, size - 1);
	return 0;
}
