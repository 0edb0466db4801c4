/* SPDX-License-Identifier: Apache-2.0 */
/* guard_: random request sequences against a reference model, and concurrent signers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "test_guard_util.h"
#include "testutil.h"

#define CHAIN "haqq_53211-1"

static unsigned env_uint(const char *name, unsigned def)
{
	const char *s = getenv(name);
	if (s == NULL || *s == '\0')
		return def;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	return *end == '\0' && v > 0 && v < 100000000ul ? (unsigned)v : def;
}

/* ---- the reference model: FilePV rules + our proposal-timestamp policy, written plainly ---- */

struct model {
	int64_t h, r;
	int s;
	int has; /* a message was signed at (h, r, s) */
	struct tg_msg last;
};

enum outcome { SIGNED, REUSED, REUSED_TS, REFUSED };

static int lt(int64_t a1, int64_t a2, int a3, int64_t b1, int64_t b2, int b3)
{
	return a1 < b1 || (a1 == b1 && (a2 < b2 || (a2 == b2 && a3 < b3)));
}

static enum outcome model_apply(struct model *m, const struct tg_msg *q)
{
	if (lt(q->h, q->r, (int)q->step, m->h, m->r, m->s))
		return REFUSED;
	if (q->h == m->h && q->r == m->r && (int)q->step == m->s) {
		if (!m->has)
			return REFUSED;
		int same_content = q->block == m->last.block && q->pol == m->last.pol;
		int same_ts = q->ts_s == m->last.ts_s && q->ts_n == m->last.ts_n;
		if (same_content && same_ts)
			return REUSED;
		if (same_content && q->step != GUARD_STEP_PROPOSE)
			return REUSED_TS;
		return REFUSED;
	}
	m->h = q->h, m->r = q->r, m->s = (int)q->step, m->has = 1, m->last = *q;
	return SIGNED;
}

static void random_msg(uint64_t *rng, const struct model *m, struct tg_msg *q)
{
	memset(q, 0, sizeof(*q));
	int64_t dh = (int64_t)(tg_rand(rng) % 4) - 1; /* -1 .. +2 around the last height */
	q->h = m->h + dh < 1 ? 1 : m->h + dh;
	q->r = (int64_t)(tg_rand(rng) % 3);
	q->step = (enum guard_step)(1 + tg_rand(rng) % 3);
	if (tg_rand(rng) % 2 == 0) { /* often ask exactly the last H/R/S, the interesting case */
		q->h = m->h < 1 ? 1 : m->h;
		q->r = m->r;
		q->step = m->s == 0 ? GUARD_STEP_PREVOTE : (enum guard_step)m->s;
	}
	q->block = (int)(tg_rand(rng) % 3); /* nil, A or B */
	if (q->step == GUARD_STEP_PROPOSE) {
		q->block = 1 + (int)(tg_rand(rng) % 2); /* proposals carry a block */
		q->pol = tg_rand(rng) % 4 == 0 ? 0 : -1;
	}
	q->ts_s = 1700000000 + (int64_t)(tg_rand(rng) % 2);
	q->ts_n = (int32_t)(tg_rand(rng) % 2) * 500;
	q->chain = CHAIN;
}

static void test_property(void **state)
{
	(void)state;
	kms_log_set_quiet(1);
	unsigned steps = env_uint("P11KMS_GUARD_PROPERTY_STEPS", 2000);
	uint64_t seed = env_uint("P11KMS_GUARD_SEED", 20261125);
	for (uint64_t run = 0; run < 3; run++) {
		uint64_t rng = seed + run;
		char *dir = tu_mkdtemp(), *path = tu_path(dir, "s.bin");
		struct guard *g;
		struct model m = { 0 };
		unsigned counts[4] = { 0 };
		assert_int_equal(guard_state_init(path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
		assert_int_equal(tg_open(path, CHAIN, &g), KMS_OK);
		for (unsigned i = 0; i < steps; i++) {
			struct tg_msg q;
			uint8_t sb[512], want_sig[64];
			struct guard_result res;
			random_msg(&rng, &m, &q);
			size_t n = tg_sign_bytes(&q, sb, sizeof(sb));
			struct guard_request req = { { q.h, (int32_t)q.r, q.step }, sb, n };
			struct tg_msg before = m.last;
			enum outcome want = model_apply(&m, &q);
			int r = guard_sign(g, &req, tg_fake_sign, NULL, &res);
			counts[want]++;
			if (want == REFUSED) {
				if (r != KMS_ERR_DOUBLE_SIGN)
					fail_msg("seed %llu step %u: want refusal, got %d",
						 (unsigned long long)seed + run, i, r);
				assert_true(res.reason[0] != '\0');
				continue;
			}
			if (r != KMS_OK)
				fail_msg("seed %llu step %u: want %d, got %d (%s)",
					 (unsigned long long)seed + run, i, want, r, res.reason);
			assert_int_equal(res.reused, want != SIGNED);
			assert_int_equal(res.timestamp_replaced, want == REUSED_TS);
			/* the signature released is always the one over the stored (first) message */
			uint8_t sb2[512];
			const struct tg_msg *signed_msg = want == SIGNED ? &q : &before;
			size_t n2 = tg_sign_bytes(signed_msg, sb2, sizeof(sb2));
			tg_fake_sign(NULL, sb2, n2, want_sig);
			assert_memory_equal(res.signature, want_sig, 64);
			if (want == REUSED_TS) {
				assert_int_equal(res.ts_seconds, before.ts_s);
				assert_int_equal(res.ts_nanos, before.ts_n);
			}
			struct guard_hrs last;
			guard_last(g, &last);
			assert_int_equal(last.height, m.h);
			assert_int_equal(last.round, m.r);
			assert_int_equal((int)last.step, m.s);
			if (i % 997 == 0) { /* the model must also hold across reopen */
				guard_free(g);
				assert_int_equal(tg_open(path, CHAIN, &g), KMS_OK);
			}
		}
		print_message("run %llu: signed %u reused %u reused+ts %u refused %u\n",
			      (unsigned long long)run, counts[SIGNED], counts[REUSED],
			      counts[REUSED_TS], counts[REFUSED]);
		/* every outcome of the model was exercised */
		for (int k = 0; k < 4; k++)
			assert_true(counts[k] > 0);
		guard_free(g);
		tu_rmrf(dir);
		free(dir);
		free(path);
	}
}

/* ---- concurrency: no two different signatures (so sign bytes) released for one H/R/S ---- */

struct release {
	int64_t h, r;
	int s;
	uint8_t sig[64];
};

struct worker {
	struct guard *g;
	uint64_t rng;
	unsigned iters;
	volatile int64_t *base;
	struct release *rel;
	size_t nrel;
	unsigned refused;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (unsigned i = 0; i < w->iters; i++) {
		struct tg_msg q = { 0 };
		uint8_t sb[512];
		struct guard_result res;
		int64_t base = __atomic_load_n(w->base, __ATOMIC_RELAXED);
		q.h = base + (int64_t)(tg_rand(&w->rng) % 3);
		q.r = (int64_t)(tg_rand(&w->rng) % 2);
		q.step = (enum guard_step)(1 + tg_rand(&w->rng) % 3);
		q.block = (int)(tg_rand(&w->rng) % 3); /* per request random block choice */
		if (q.step == GUARD_STEP_PROPOSE && q.block == 0)
			q.block = 1;
		q.pol = q.step == GUARD_STEP_PROPOSE ? -1 : 0;
		q.ts_s = 1700000000;
		q.ts_n = (int32_t)(tg_rand(&w->rng) % 2);
		q.chain = CHAIN;
		size_t n = tg_sign_bytes(&q, sb, sizeof(sb));
		struct guard_request req = { { q.h, (int32_t)q.r, q.step }, sb, n };
		int r = guard_sign(w->g, &req, tg_fake_sign, NULL, &res);
		if (r == KMS_OK) {
			struct release *x = &w->rel[w->nrel++];
			x->h = q.h, x->r = q.r, x->s = (int)q.step;
			memcpy(x->sig, res.signature, 64);
		} else {
			if (r != KMS_ERR_DOUBLE_SIGN)
				return (void *)1;
			w->refused++;
		}
		if (tg_rand(&w->rng) % 8 == 0)
			__atomic_fetch_add(w->base, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static int cmp_rel(const void *a, const void *b)
{
	const struct release *x = a, *y = b;
	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	if (x->r != y->r)
		return x->r < y->r ? -1 : 1;
	return x->s - y->s;
}

static void test_concurrency(void **state)
{
	(void)state;
	enum { NT = 4 };
	unsigned iters = env_uint("P11KMS_GUARD_CONC_ITERS", 1500);
	char *dir = tu_mkdtemp(), *path = tu_path(dir, "c.bin");
	struct guard *g;
	volatile int64_t base = 1;
	struct worker w[NT];
	pthread_t th[NT];
	kms_log_set_quiet(1);
	assert_int_equal(guard_state_init(path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(tg_open(path, CHAIN, &g), KMS_OK);
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ g,
					1000u + (uint64_t)i,
					iters,
					&base,
					calloc(iters, sizeof(struct release)),
					0,
					0 };
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	size_t total = 0, nref = 0;
	for (int i = 0; i < NT; i++) {
		void *ret;
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
		total += w[i].nrel;
		nref += w[i].refused;
	}
	struct release *all = calloc(total + 1, sizeof(*all));
	size_t k = 0;
	for (int i = 0; i < NT; i++) {
		memcpy(all + k, w[i].rel, w[i].nrel * sizeof(*all));
		k += w[i].nrel;
		free(w[i].rel);
	}
	qsort(all, total, sizeof(*all), cmp_rel);
	size_t groups = 0, shared = 0;
	for (size_t i = 0; i < total; i++) {
		if (i == 0 || cmp_rel(&all[i - 1], &all[i]) != 0) {
			groups++;
			continue;
		}
		shared++;
		if (memcmp(all[i - 1].sig, all[i].sig, 64) != 0)
			fail_msg("two different signatures released at h/r/s=%lld/%lld/%d",
				 (long long)all[i].h, (long long)all[i].r, all[i].s);
	}
	print_message("released %zu (distinct h/r/s %zu, repeats %zu), refused %zu\n", total,
		      groups, shared, nref);
	assert_true(groups > 100 && shared > 0 && nref > 0);
	/* the final state is the highest H/R/S released, and it survives a reopen */
	struct guard_hrs last;
	guard_last(g, &last);
	assert_int_equal(last.height, all[total - 1].h);
	assert_int_equal(last.round, all[total - 1].r);
	assert_int_equal((int)last.step, all[total - 1].s);
	guard_free(g);
	assert_int_equal(tg_open(path, CHAIN, &g), KMS_OK);
	struct guard_hrs again;
	guard_last(g, &again);
	assert_memory_equal(&last, &again, sizeof(last));
	guard_free(g);
	free(all);
	tu_rmrf(dir);
	free(dir);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_property),
		cmocka_unit_test(test_concurrency),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
