/* SPDX-License-Identifier: Apache-2.0 */
/* The consensus walk: proposal, prevote, precommit per height, nil votes and round bumps. */
#include "sim.h"

#include <stdio.h>
#include <string.h>

/* Base of generated timestamps (2023-11-14T22:13:20Z): any fixed time will do. */
#define SIM_TS_BASE 1700000000LL

uint64_t sim_mix(uint64_t x)
{
	/* splitmix64 finaliser: decisions must be reproducible across sentries. */
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill(uint8_t *p, size_t n, uint64_t k)
{
	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0)
			k = sim_mix(k);
		p[i] = (uint8_t)(k >> (8 * (i % 8)));
	}
}

void sim_block_id(struct pv_block_id *b, uint64_t a, uint64_t c)
{
	memset(b, 0, sizeof(*b));
	fill(b->hash, PV_HASH_LEN, sim_mix(a) ^ c);
	b->hash_len = PV_HASH_LEN;
	b->psh_total = 1 + (uint32_t)(sim_mix(a ^ c) % 4);
	fill(b->psh_hash, PV_HASH_LEN, sim_mix(a + 1) ^ c);
	b->psh_hash_len = PV_HASH_LEN;
}

void sim_gen_init(struct sim_gen *g, const struct sim_cfg *cfg, int sentry)
{
	memset(g, 0, sizeof(*g));
	g->cfg = cfg;
	g->sentry = sentry;
	g->h = cfg->start_height;
	g->r = 0;
	g->phase = cfg->mode == SIM_MODE_VOTES ? 1 : 0;
}

/* About one round in twenty fails: nil prevote and precommit, then round + 1. */
static int round_is_nil(const struct sim_gen *g)
{
	uint64_t k = sim_mix(g->cfg->seed ^ sim_mix((uint64_t)g->h * 131u + (uint64_t)g->r));
	return g->r < 3 && k % 20 == 0;
}

static void advance(struct sim_gen *g, int nil_round)
{
	enum sim_mode m = g->cfg->mode;
	if (m == SIM_MODE_PROPOSALS) {
		/* Only proposals: a failed round proposes again in the next round. */
		if (nil_round) {
			g->r++;
		} else {
			g->h++;
			g->r = 0;
		}
		return;
	}
	if (g->phase < 2) {
		g->phase++;
		return;
	}
	if (nil_round) {
		g->r++;
	} else {
		g->h++;
		g->r = 0;
	}
	g->phase = m == SIM_MODE_VOTES ? 1 : 0;
}

static void make_vote(struct sim_gen *g, struct pv_request *req, int32_t type, int nil_round)
{
	const struct sim_cfg *cfg = g->cfg;
	struct pv_vote *v = &req->vote;
	req->kind = PV_REQ_SIGN_VOTE;
	v->type = type;
	v->height = g->h;
	v->round = g->r;
	if (!nil_round)
		sim_block_id(&v->block_id, cfg->seed ^ (uint64_t)g->h, (uint64_t)g->r);
	/* Sentries differ by a few ms: the guard returns the first one's signature and time. */
	v->timestamp.seconds = SIM_TS_BASE + g->h;
	v->timestamp.nanos = (int32_t)(type * 1000 + g->sentry * 1000000);
	fill(v->validator_address, PV_ADDR_LEN, cfg->seed);
	v->validator_address_len = PV_ADDR_LEN;
	v->validator_index = 0;
	if (type == PV_TYPE_PRECOMMIT && !nil_round &&
	    pv_version_info(cfg->version)->has_extensions) {
		uint64_t k = sim_mix(cfg->seed ^ (uint64_t)g->h ^ 0x5a5a);
		size_t max = cfg->ext_len_max > 0 ? (size_t)cfg->ext_len_max : 0;
		if (max > sizeof(g->ext))
			max = sizeof(g->ext);
		size_t len = max ? (size_t)(k % (max + 1)) : 0;
		fill(g->ext, len, k);
		v->extension = len ? g->ext : NULL;
		v->extension_len = len;
	}
	/* v1: the node asks for extension signatures on precommits only. */
	if (cfg->version == PV_V1)
		req->skip_extension_signing = type == PV_TYPE_PREVOTE;
}

void sim_gen_next(struct sim_gen *g, struct pv_request *req)
{
	const struct sim_cfg *cfg = g->cfg;
	int nil_round = round_is_nil(g);
	memset(req, 0, sizeof(*req));
	(void)snprintf(req->chain_id, sizeof(req->chain_id), "%s", cfg->chain_id);
	if (cfg->mode == SIM_MODE_PROPOSALS || g->phase == 0) {
		struct pv_proposal *p = &req->proposal;
		req->kind = PV_REQ_SIGN_PROPOSAL;
		p->type = PV_TYPE_PROPOSAL;
		p->height = g->h;
		p->round = g->r;
		p->pol_round = -1;
		sim_block_id(&p->block_id, cfg->seed ^ (uint64_t)g->h, (uint64_t)g->r);
		/* Identical on every sentry: CometBFT keeps only the returned signature. */
		p->timestamp.seconds = SIM_TS_BASE + g->h;
		p->timestamp.nanos = 7;
	} else {
		make_vote(g, req, g->phase == 1 ? PV_TYPE_PREVOTE : PV_TYPE_PRECOMMIT, nil_round);
	}
	advance(g, nil_round);
}
