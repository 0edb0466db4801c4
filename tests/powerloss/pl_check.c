/* SPDX-License-Identifier: Apache-2.0 */
/* The power-loss runs' properties and report (pl_check.h). Test code: aborts when out of memory. */
#include "pl_check.h"

#include "guard_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

const char *pl_point_name(enum pl_point p)
{
	static const char *const names[] = {
		"sign: mid-pwrite",	   "sign: pwrite..fdatasync",
		"re-persist: mid-pwrite",  "re-persist: pwrite..fdatasync",
		"import: mid-pwrite",	   "import: pwrite..fdatasync",
		"import: new file",	   "fdatasync EIO",
		"idle (between requests)",
	};
	return (unsigned)p < PL_PT_COUNT ? names[p] : "?";
}

void pl_check_init(struct pl_check *c)
{
	memset(c, 0, sizeof(*c));
	c->cap = 1u << 12;
	c->tab = calloc(c->cap, sizeof(*c->tab));
	if (c->tab == NULL)
		abort();
}

void pl_check_free(struct pl_check *c)
{
	free(c->tab);
	c->tab = NULL;
}

void pl_violation(struct pl_check *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->violations++ == 0)
		snprintf(c->first_violation, sizeof(c->first_violation), "%s", msg);
	fprintf(stderr, "VIOLATION (cycle %lu): %s\n", c->cycles, msg);
}

static size_t slot_of(const struct pl_release *tab, size_t cap, int64_t h, int32_t r, int32_t s)
{
	uint64_t k = (uint64_t)h * 0x9e3779b97f4a7c15ull ^ (uint64_t)r * 0xff51afd7ed558ccdull ^
		     (uint64_t)s;
	size_t i = (size_t)(k ^ (k >> 29)) & (cap - 1);
	while (tab[i].s != 0 && (tab[i].h != h || tab[i].r != r || tab[i].s != s))
		i = (i + 1) & (cap - 1);
	return i;
}

static void grow(struct pl_check *c)
{
	size_t cap = c->cap * 2;
	struct pl_release *t = calloc(cap, sizeof(*t));
	if (t == NULL)
		abort();
	for (size_t i = 0; i < c->cap; i++)
		if (c->tab[i].s != 0)
			t[slot_of(t, cap, c->tab[i].h, c->tab[i].r, c->tab[i].s)] = c->tab[i];
	free(c->tab);
	c->tab = t;
	c->cap = cap;
}

int pl_check_release(struct pl_check *c, const struct guard_hrs *h, const uint8_t *msg, size_t len)
{
	uint8_t hash[32];
	unsigned int hl = sizeof(hash);
	if (EVP_Digest(msg, len, hash, &hl, EVP_sha256(), NULL) != 1)
		abort();
	if (2 * (c->n + 1) > c->cap)
		grow(c);
	c->releases++;
	if (!c->any_released || guard_hrs_cmp(h, &c->max_released) > 0)
		c->max_released = *h;
	c->any_released = 1;
	size_t i = slot_of(c->tab, c->cap, h->height, h->round, (int32_t)h->step);
	if (c->tab[i].s == 0) {
		c->tab[i] = (struct pl_release){ h->height, h->round, (int32_t)h->step, { 0 } };
		memcpy(c->tab[i].hash, hash, 32);
		c->n++;
		return 0;
	}
	c->repeats++;
	if (memcmp(c->tab[i].hash, hash, 32) == 0)
		return 0;
	pl_violation(c, "CONFLICT: two different messages released at h/r/s %lld/%d/%d",
		     (long long)h->height, h->round, (int)h->step);
	return -1;
}

int pl_check_not_behind(struct pl_check *c, const struct guard_hrs *state, const char *when)
{
	if (!c->any_released || guard_hrs_cmp(state, &c->max_released) >= 0)
		return 0;
	pl_violation(c, "%s: the state %lld/%d/%d is BEHIND the released %lld/%d/%d", when,
		     (long long)state->height, state->round, (int)state->step,
		     (long long)c->max_released.height, c->max_released.round,
		     (int)c->max_released.step);
	return -1;
}

void pl_check_count(struct pl_check *c, enum pl_point pt, int cut, enum pl_outcome o)
{
	c->at[pt][cut ? (unsigned)o : PL_OUT_NOCUT]++;
}

enum pl_point pl_pick_point(uint64_t *rng)
{
	static const unsigned w[PL_PT_COUNT] = { 20, 20, 9, 9, 6, 6, 6, 10, 14 };
	unsigned total = 0, x;
	for (int i = 0; i < PL_PT_COUNT; i++)
		total += w[i];
	x = (unsigned)(pl_rand(rng) % total);
	for (int i = 0; i < PL_PT_COUNT; i++) {
		if (x < w[i])
			return (enum pl_point)i;
		x -= w[i];
	}
	return PL_PT_IDLE;
}

int pl_point_is_import(enum pl_point p)
{
	return p == PL_PT_IMPORT_MID || p == PL_PT_IMPORT_PRESYNC || p == PL_PT_IMPORT_NEW;
}

struct guard_hrs pl_next_hrs(uint64_t *rng, struct guard_hrs *at, int64_t *max_h)
{
	uint64_t pick = pl_rand(rng) % 100;
	if (at->height < 1)
		*at = (struct guard_hrs){ 1, 0, GUARD_STEP_PROPOSE };
	struct guard_hrs q = *at;
	if (q.step == GUARD_STEP_NONE)
		q.step = GUARD_STEP_PROPOSE;
	if (pick < 60) {
		if (q.step < GUARD_STEP_PRECOMMIT && pick < 40)
			q.step = (enum guard_step)(q.step + 1);
		else if (pick < 48)
			q.round++, q.step = (enum guard_step)(1 + pl_rand(rng) % 3);
		else
			q.height++, q.round = 0, q.step = GUARD_STEP_PROPOSE;
		*at = q;
	} else if (pick >= 88) {
		if (q.step > GUARD_STEP_PROPOSE)
			q.step = (enum guard_step)(q.step - 1);
		else if (q.round > 0)
			q.round--;
		else if (q.height > 1)
			q.height--;
	}
	if (q.height > *max_h)
		*max_h = q.height;
	return q;
}

int pl_cut_or_kill(struct pl_disk *d, uint64_t *rng, int *cut, struct pl_cut_report *rep)
{
	static const enum pl_keep hows[] = { PL_KEEP_LOST,   PL_KEEP_LOST,   PL_KEEP_KEPT,
					     PL_KEEP_KEPT,   PL_KEEP_RANDOM, PL_KEEP_RANDOM,
					     PL_KEEP_RANDOM, PL_KEEP_TEAR };
	*cut = pl_rand(rng) % 4 != 0;
	if (!*cut)
		return pl_inspect(d, rep);
	return pl_cut(d, rng, hows[pl_rand(rng) % (sizeof(hows) / sizeof(hows[0]))], rep);
}

void pl_check_report(const struct pl_check *c, const char *name, uint64_t seed)
{
	static const char *const cols[] = { "none", "lost", "kept", "mixed", "torn", "no-cut" };
	printf("powerloss (%s): cycles=%lu violations=%lu seed=%llu releases=%zu "
	       "distinct_hrs=%zu repeated_hrs=%zu refused=%lu repaired_accept=%lu "
	       "repaired_height=%lu reimported=%lu eio_stops=%lu seconds=%.1f per_cycle_ms=%.2f\n",
	       name, c->cycles, c->violations, (unsigned long long)seed, c->releases, c->n,
	       c->repeats, c->refused, c->repaired_accept, c->repaired_height, c->reimported,
	       c->eio_stops, c->seconds, c->cycles ? 1000.0 * c->seconds / (double)c->cycles : 0.0);
	printf("  %-30s %7s", "crash point \\ cut outcome", "cycles");
	for (size_t k = 0; k < sizeof(cols) / sizeof(cols[0]); k++)
		printf(" %7s", cols[k]);
	printf("\n");
	for (int p = 0; p < PL_PT_COUNT; p++) {
		unsigned long sum = 0;
		for (int k = 0; k <= PL_OUT_NOCUT; k++)
			sum += c->at[p][k];
		printf("  %-30s %7lu", pl_point_name((enum pl_point)p), sum);
		for (int k = 0; k <= PL_OUT_NOCUT; k++)
			printf(" %7lu", c->at[p][k]);
		printf("\n");
	}
	if (c->violations)
		printf("  first violation: %s\n", c->first_violation);
}
