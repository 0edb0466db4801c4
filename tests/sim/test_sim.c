/* SPDX-License-Identifier: Apache-2.0 */
/* Simulator self-tests: the consensus walk, and verification that rejects corrupted responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "sim.h"
#include "testutil.h"

static const uint8_t seed[32] = { 1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
				  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static void cfg_init(struct sim_cfg *c, enum pv_version v, enum sim_mode m)
{
	memset(c, 0, sizeof(*c));
	c->version = v;
	strcpy(c->chain_id, "test-chain");
	c->mode = m;
	c->n = 100;
	c->start_height = 5;
	c->seed = 9;
	c->ext_len_max = 64;
	c->expect_ext_sig = 1;
	c->timeout_ms = 1000;
}

static int step_of(const struct pv_request *r)
{
	if (r->kind == PV_REQ_SIGN_PROPOSAL)
		return 1;
	return r->vote.type == PV_TYPE_PREVOTE ? 2 : 3;
}

/* H/R/S strictly increases, proposal/prevote/precommit per round, sentries agree. */
static void test_gen_walk(void **state)
{
	struct sim_cfg c;
	struct sim_gen a, b;
	struct pv_request ra, rb;
	int64_t ph = 0;
	int32_t pr = 0;
	int ps = 0, nil = 0, bumps = 0, exts = 0;
	(void)state;
	cfg_init(&c, PV_V0_38, SIM_MODE_MIXED);
	sim_gen_init(&a, &c, 0);
	sim_gen_init(&b, &c, 1);
	for (int i = 0; i < 3000; i++) {
		sim_gen_next(&a, &ra);
		sim_gen_next(&b, &rb);
		int64_t h = ra.kind == PV_REQ_SIGN_VOTE ? ra.vote.height : ra.proposal.height;
		int32_t r = ra.kind == PV_REQ_SIGN_VOTE ? ra.vote.round : ra.proposal.round;
		int s = step_of(&ra);
		if (i == 0) {
			assert_int_equal(h, 5);
			assert_int_equal(s, 1);
		} else {
			assert_true(h > ph || (h == ph && r > pr) ||
				    (h == ph && r == pr && s == ps + 1));
		}
		if (h == ph && r > pr)
			bumps++;
		/* the other sentry asks for the same thing */
		assert_int_equal(ra.kind, rb.kind);
		assert_int_equal(step_of(&rb), s);
		if (ra.kind == PV_REQ_SIGN_VOTE) {
			assert_int_equal(rb.vote.height, h);
			assert_memory_equal(ra.vote.block_id.hash, rb.vote.block_id.hash,
					    PV_HASH_LEN);
			assert_int_not_equal(ra.vote.timestamp.nanos, rb.vote.timestamp.nanos);
			if (pv_block_id_is_nil(&ra.vote.block_id)) {
				nil++;
				assert_int_equal(ra.vote.extension_len, 0);
			}
			if (ra.vote.extension_len > 0) {
				exts++;
				assert_int_equal(ra.vote.type, PV_TYPE_PRECOMMIT);
			}
		} else {
			assert_int_equal(ra.proposal.pol_round, -1);
			assert_true(pv_block_id_is_complete(&ra.proposal.block_id));
			assert_int_equal(ra.proposal.timestamp.nanos, rb.proposal.timestamp.nanos);
		}
		ph = h;
		pr = r;
		ps = s;
	}
	assert_true(nil > 0);
	assert_true(bumps > 0);
	assert_true(exts > 0);
}

static void test_gen_votes_only(void **state)
{
	struct sim_cfg c;
	struct sim_gen g;
	struct pv_request r;
	(void)state;
	cfg_init(&c, PV_V1, SIM_MODE_VOTES);
	sim_gen_init(&g, &c, 0);
	for (int i = 0; i < 200; i++) {
		sim_gen_next(&g, &r);
		assert_int_equal(r.kind, PV_REQ_SIGN_VOTE);
		/* v1: the node wants extension signatures on precommits only */
		assert_int_equal(r.skip_extension_signing, r.vote.type == PV_TYPE_PREVOTE);
	}
	cfg_init(&c, PV_V0_37, SIM_MODE_PROPOSALS);
	sim_gen_init(&g, &c, 0);
	for (int i = 0; i < 50; i++) {
		sim_gen_next(&g, &r);
		assert_int_equal(r.kind, PV_REQ_SIGN_PROPOSAL);
	}
}

/* What an honest signer would answer. */
static void sign_like_signer(enum pv_version v, const struct pv_request *req,
			     struct pv_response *resp)
{
	struct kbuf *sb = kbuf_new(4096);
	assert_non_null(sb);
	memset(resp, 0, sizeof(*resp));
	resp->kind = req->kind;
	if (req->kind == PV_REQ_SIGN_PROPOSAL) {
		resp->proposal = req->proposal;
		assert_int_equal(pv_proposal_sign_bytes(req->chain_id, &req->proposal, sb), KMS_OK);
		assert_int_equal(kcrypto_ed25519_sign(seed, kbuf_ptr(sb), kbuf_len(sb),
						      resp->proposal.signature),
				 KMS_OK);
		resp->proposal.signature_len = 64;
		kbuf_free(sb);
		return;
	}
	resp->vote = req->vote;
	assert_int_equal(pv_vote_sign_bytes(req->chain_id, &req->vote, sb), KMS_OK);
	assert_int_equal(
		kcrypto_ed25519_sign(seed, kbuf_ptr(sb), kbuf_len(sb), resp->vote.signature),
		KMS_OK);
	resp->vote.signature_len = 64;
	if (pv_wants_extension_signature(v, req)) {
		kbuf_reset(sb);
		assert_int_equal(pv_vote_extension_sign_bytes(req->chain_id, &req->vote, sb),
				 KMS_OK);
		assert_int_equal(kcrypto_ed25519_sign(seed, kbuf_ptr(sb), kbuf_len(sb),
						      resp->vote.extension_signature),
				 KMS_OK);
		resp->vote.extension_signature_len = 64;
	}
	kbuf_free(sb);
}

static void test_verify_good_and_corrupted(void **state)
{
	struct sim_cfg c;
	struct sim_gen g;
	struct pv_request req;
	struct pv_response resp;
	uint8_t pub[32];
	char why[300];
	int checked = 0, with_ext = 0;
	(void)state;
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, pub), KMS_OK);
	for (int v = PV_V0_34; v <= PV_V1; v++) {
		cfg_init(&c, (enum pv_version)v, SIM_MODE_MIXED);
		sim_gen_init(&g, &c, 0);
		for (int i = 0; i < 120; i++) {
			sim_gen_next(&g, &req);
			sign_like_signer(c.version, &req, &resp);
			assert_int_equal(
				sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)),
				SIM_OK);
			/* every bit position of the signature is checked */
			for (int bit = 0; bit < 512; bit += 37)
				assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, bit,
							    why, sizeof(why)),
						 SIM_BAD_SIG);
			/* a corrupted response (bit flipped on the wire) */
			uint8_t *sig = req.kind == PV_REQ_SIGN_VOTE ? resp.vote.signature :
								      resp.proposal.signature;
			sig[63] ^= 0x80;
			assert_int_equal(
				sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)),
				SIM_BAD_SIG);
			assert_non_null(strstr(why, "does not verify"));
			sig[63] ^= 0x80;
			if (resp.vote.extension_signature_len == 64 &&
			    req.kind == PV_REQ_SIGN_VOTE) {
				with_ext++;
				resp.vote.extension_signature[0] ^= 1;
				assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why,
							    sizeof(why)),
						 SIM_BAD_EXT_SIG);
				resp.vote.extension_signature[0] ^= 1;
				/* missing where the node needs one */
				resp.vote.extension_signature_len = 0;
				assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why,
							    sizeof(why)),
						 SIM_BAD_EXT_SIG);
			}
			checked++;
		}
	}
	assert_true(checked == 480);
	assert_true(with_ext > 10);
}

static void test_verify_rejects(void **state)
{
	struct sim_cfg c;
	struct sim_gen g;
	struct pv_request req;
	struct pv_response resp;
	uint8_t pub[32], other[32];
	uint8_t seed2[32];
	char why[300];
	(void)state;
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, pub), KMS_OK);
	memset(seed2, 0x33, 32);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed2, other), KMS_OK);
	cfg_init(&c, PV_V0_38, SIM_MODE_VOTES);
	sim_gen_init(&g, &c, 0);
	sim_gen_next(&g, &req); /* prevote */
	sign_like_signer(c.version, &req, &resp);
	/* another key */
	assert_int_equal(sim_verify(c.version, other, &req, &resp, 1, -1, why, sizeof(why)),
			 SIM_BAD_SIG);
	/* an extension signature on a prevote */
	resp.vote.extension_signature_len = 64;
	assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)),
			 SIM_BAD_EXT_SIG);
	resp.vote.extension_signature_len = 0;
	/* an answer for another height */
	resp.vote.height++;
	assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)),
			 SIM_MISMATCH);
	resp.vote.height--;
	/* a refusal */
	resp.has_error = 1;
	resp.error_code = PV_CODE_DOUBLE_SIGN;
	strcpy(resp.error_description, "double signing");
	assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)),
			 SIM_REFUSED);
	assert_non_null(strstr(why, "code=2"));
	/* a timestamp replaced by the signer is verified as returned */
	resp.has_error = 0;
	req.vote.timestamp.nanos += 5;
	assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)), SIM_OK);
	resp.vote.timestamp.nanos += 5;
	assert_int_equal(sim_verify(c.version, pub, &req, &resp, 1, -1, why, sizeof(why)),
			 SIM_BAD_SIG);
}

static void test_percentiles(void **state)
{
	struct sim_stats s;
	(void)state;
	sim_stats_init(&s);
	assert_true(sim_stats_pct(&s, 50) == 0.0);
	for (int i = 100; i >= 1; i--)
		sim_stats_latency(&s, (double)i);
	assert_true(sim_stats_pct(&s, 50) == 50.0);
	assert_true(sim_stats_pct(&s, 99) == 99.0);
	assert_true(sim_stats_pct(&s, 100) == 100.0);
	assert_true(sim_stats_max(&s) == 100.0);
	sim_stats_fail(&s, "first %d", 1);
	sim_stats_fail(&s, "second");
	assert_int_equal(s.failures, 2);
	assert_string_equal(s.first_failure, "first 1");
	sim_stats_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gen_walk),
		cmocka_unit_test(test_gen_votes_only),
		cmocka_unit_test(test_verify_good_and_corrupted),
		cmocka_unit_test(test_verify_rejects),
		cmocka_unit_test(test_percentiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
