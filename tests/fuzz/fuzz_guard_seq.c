/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: sequences of signing requests through the double-sign
 * guard (guard_open + guard_sign on a real state file), checked against a
 * reference model of the rules in include/p11kms/guard.h:
 *   - a request whose H/R/S or chain-id disagrees with its sign bytes is
 *     KMS_ERR_REFUSED and nothing is signed;
 *   - an H/R/S regression is KMS_ERR_DOUBLE_SIGN ("... regression");
 *   - the same H/R/S: identical sign bytes give the stored signature, a vote
 *     differing only in its timestamp gives the stored signature and
 *     timestamp, anything else (and any proposal change) is DOUBLE_SIGN;
 *   - a higher H/R/S is signed exactly once and the signature verifies;
 *   - after guard_free, a fresh guard_open reloads the model's last H/R/S.
 * Input: records of 6 bytes [flags, dh, round, block, ts_lo, ts_hi].
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11kms/guard.h"
#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/pv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHAIN "haqq_11235-1"
#define MAX_OPS 48

static const uint8_t seed[32] = { 7, 7, 7 };
static uint8_t pub[32];
static char dir[256], path[300], pid_path[310];

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

/* The state lives on /dev/shm when there is one (speed): any filesystem is accepted. */
static const struct guard_opts any_fs = { .allow_volatile_state = 1 };

static void cleanup(void)
{
	(void)unlink(path);
	(void)unlink(pid_path);
	if (dir[0] != '\0')
		(void)rmdir(dir);
}

static void setup(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	if (dir[0] != '\0')
		return;
	kms_log_set_quiet(1);
	(void)snprintf(dir, sizeof(dir), "%s/p11kms-fuzz-guard.XXXXXX", base);
	if (mkdtemp(dir) == NULL || kcrypto_ed25519_pub_from_seed(seed, pub) != KMS_OK)
		abort();
	(void)snprintf(path, sizeof(path), "%s/s.state", dir);
	(void)snprintf(pid_path, sizeof(pid_path), "%s.pid", path);
	atexit(cleanup);
}

struct counting {
	int calls;
};

static int sign_cb(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	((struct counting *)ctx)->calls++;
	return kcrypto_ed25519_sign(seed, msg, len, sig);
}

/* What one request asks for (the model's unit). */
struct req {
	int is_prop;
	int32_t type;
	int64_t h;
	int32_t r;
	uint8_t blk; /* 0 = nil */
	int64_t ts;
};

static int hrs_cmp(const struct guard_hrs *a, const struct guard_hrs *b)
{
	if (a->height != b->height)
		return a->height < b->height ? -1 : 1;
	if (a->round != b->round)
		return a->round < b->round ? -1 : 1;
	if (a->step != b->step)
		return a->step < b->step ? -1 : 1;
	return 0;
}

static void block(struct pv_block_id *b, uint8_t blk)
{
	memset(b, 0, sizeof(*b));
	if (blk == 0)
		return;
	b->hash_len = PV_HASH_LEN;
	memset(b->hash, blk, PV_HASH_LEN);
	b->psh_total = 1;
	b->psh_hash_len = PV_HASH_LEN;
	memset(b->psh_hash, blk ^ 0xff, PV_HASH_LEN);
}

static void sign_bytes(const struct req *q, const char *chain, struct kbuf *out)
{
	kbuf_reset(out);
	if (q->is_prop) {
		struct pv_proposal p;

		memset(&p, 0, sizeof(p));
		p.type = PV_TYPE_PROPOSAL;
		p.height = q->h;
		p.round = q->r;
		p.pol_round = -1;
		block(&p.block_id, q->blk);
		p.timestamp.seconds = q->ts;
		check(pv_proposal_sign_bytes(chain, &p, out) == KMS_OK);
	} else {
		struct pv_vote v;

		memset(&v, 0, sizeof(v));
		v.type = q->type;
		v.height = q->h;
		v.round = q->r;
		block(&v.block_id, q->blk);
		v.timestamp.seconds = q->ts;
		v.timestamp.nanos = 5;
		check(pv_vote_sign_bytes(chain, &v, out) == KMS_OK);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guard *g = NULL;
	struct guard_hrs last = { 0, 0, GUARD_STEP_NONE }, got;
	struct req prev = { 0 };
	int have_prev = 0;
	uint8_t last_sig[64];
	struct kbuf *sb = kbuf_new(1024);
	size_t ops = 0;

	setup();
	(void)unlink(path);
	(void)unlink(pid_path);
	if (sb == NULL || guard_state_init(path, CHAIN, 0, 0, GUARD_STEP_NONE) != KMS_OK ||
	    guard_open_opts(path, CHAIN, &any_fs, &g) != KMS_OK)
		abort();
	for (; size >= 6 && ops < MAX_OPS; data += 6, size -= 6, ops++) {
		uint8_t f = data[0];
		struct req q;
		struct guard_request gr;
		struct guard_result res;
		struct counting cnt = { 0 };
		int wrong_chain = (f & 0x30) == 0x30, bad_hrs = (f & 0xc0) == 0xc0 && !wrong_chain;
		int r, c;

		memset(&q, 0, sizeof(q));
		q.is_prop = (f & 3) == 2;
		q.type = q.is_prop    ? PV_TYPE_PROPOSAL :
			 (f & 3) == 1 ? PV_TYPE_PRECOMMIT :
					PV_TYPE_PREVOTE;
		q.h = last.height + (int8_t)data[1] % 3;
		if (q.h < 0)
			q.h = 0;
		q.r = data[2] % 3;
		q.blk = data[3] % 4;
		q.ts = 1700000000 + (data[4] | data[5] << 8) % 3;
		if (q.is_prop && q.blk == 0)
			q.blk = 1; /* a proposal's BlockID is complete */
		sign_bytes(&q, wrong_chain ? "cosmoshub-4" : CHAIN, sb);
		gr.hrs.height = q.h;
		gr.hrs.round = q.r;
		gr.hrs.step = q.is_prop			? GUARD_STEP_PROPOSE :
			      q.type == PV_TYPE_PREVOTE ? GUARD_STEP_PREVOTE :
							  GUARD_STEP_PRECOMMIT;
		if (bad_hrs)
			gr.hrs.height++;
		gr.sign_bytes = kbuf_ptr(sb);
		gr.sign_bytes_len = kbuf_len(sb);
		r = guard_sign(g, &gr, sign_cb, &cnt, &res);
		if (wrong_chain || bad_hrs) {
			check(r == KMS_ERR_REFUSED && cnt.calls == 0 && res.reason[0] != '\0');
		} else if ((c = hrs_cmp(&gr.hrs, &last)) < 0) {
			check(r == KMS_ERR_DOUBLE_SIGN && cnt.calls == 0 &&
			      strstr(res.reason, "regression") != NULL);
		} else if (c == 0) {
			int same = have_prev && prev.blk == q.blk && prev.type == q.type;

			check(cnt.calls == 0);
			if (same && prev.ts == q.ts) {
				check(r == KMS_OK && res.reused && !res.timestamp_replaced &&
				      memcmp(res.signature, last_sig, 64) == 0);
			} else if (same && !q.is_prop) {
				check(r == KMS_OK && res.reused && res.timestamp_replaced &&
				      res.ts_seconds == prev.ts && res.ts_nanos == 5 &&
				      memcmp(res.signature, last_sig, 64) == 0);
			} else {
				check(r == KMS_ERR_DOUBLE_SIGN && res.reason[0] != '\0');
			}
		} else {
			check(r == KMS_OK && cnt.calls == 1 && !res.reused);
			check(kcrypto_ed25519_verify(pub, kbuf_ptr(sb), kbuf_len(sb),
						     res.signature) == KMS_OK);
			last = gr.hrs;
			prev = q;
			have_prev = 1;
			memcpy(last_sig, res.signature, 64);
		}
		guard_last(g, &got);
		check(hrs_cmp(&got, &last) == 0);
	}
	/* what was made durable is what a restart loads */
	guard_free(g);
	g = NULL;
	check(guard_open_opts(path, CHAIN, &any_fs, &g) == KMS_OK);
	guard_last(g, &got);
	check(hrs_cmp(&got, &last) == 0);
	guard_free(g);
	kbuf_free(sb);
	return 0;
}
