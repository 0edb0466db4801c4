/* SPDX-License-Identifier: Apache-2.0 */
/* The metrics registry: preallocated series, fed by the decision and status sinks with atomics. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "obs_int.h"
#include "p11kms/kms_log.h"

const int64_t obs_bucket_ns[OBS_N_BUCKETS] = {
	50000,	  100000,   250000,   500000,	 1000000,   2500000,   5000000,
	10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
};
const char *const obs_bucket_le[OBS_N_BUCKETS] = {
	"5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
	"0.01",	 "0.025",  "0.05",    "0.1",	"0.25",	 "0.5",	   "1",
};
const char *const obs_sig_type_name[OBS_T_N] = { "proposal", "prevote", "precommit", "extension" };

int obs_reg_new(struct obs_reg **out)
{
	struct obs_reg *r;
	*out = NULL;
	/* calloc: every atomic starts at zero (all-bits-zero is their zero on our targets). */
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return KMS_ERR_ALLOC;
	r->chains = calloc(OBS_MAX_CHAINS, sizeof(*r->chains));
	r->peers = calloc(OBS_MAX_PEERS, sizeof(*r->peers));
	if (r->chains == NULL || r->peers == NULL || pthread_mutex_init(&r->slot_mu, NULL) != 0) {
		free(r->chains);
		free(r->peers);
		free(r);
		return KMS_ERR_ALLOC;
	}
	r->start_wall_ns = obs_wall_ns();
	atomic_store(&r->tick_ns, obs_mono_ns());
	*out = r;
	return KMS_OK;
}

void obs_reg_free(struct obs_reg *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_chains; i++)
		free(r->chains[i].id);
	for (size_t i = 0; i < r->n_peers; i++)
		free(r->peers[i].name);
	for (size_t i = 0; i < atomic_load(&r->n_slots); i++)
		free(atomic_load(&r->slots[i].name));
	pthread_mutex_destroy(&r->slot_mu);
	free(r->chains);
	free(r->peers);
	free(r);
}

struct obs_chain *obs_chain_find(struct obs_reg *r, const char *id)
{
	if (id == NULL)
		return NULL;
	for (size_t i = 0; i < r->n_chains; i++)
		if (strcmp(r->chains[i].id, id) == 0)
			return &r->chains[i];
	return NULL;
}

/* The seqlock writer: spins while another writer holds it (a few stores long). */
static void hrs_store_if_newer(struct obs_chain *c, int64_t h, int round, int step, int64_t wall)
{
	unsigned v;
	for (;;) {
		v = atomic_load_explicit(&c->hrs_lock, memory_order_relaxed);
		if ((v & 1) == 0 && atomic_compare_exchange_weak_explicit(&c->hrs_lock, &v, v + 1,
									  memory_order_acquire,
									  memory_order_relaxed))
			break;
		sched_yield(); /* the other writer may have been preempted mid-update */
	}
	atomic_thread_fence(memory_order_release);
	int64_t oh = atomic_load_explicit(&c->height, memory_order_relaxed);
	int orr = atomic_load_explicit(&c->round, memory_order_relaxed);
	int os = atomic_load_explicit(&c->step, memory_order_relaxed);
	/* Events from two sentries can arrive out of order: only move forward. */
	if (h > oh || (h == oh && (round > orr || (round == orr && step > os)))) {
		atomic_store_explicit(&c->height, h, memory_order_relaxed);
		atomic_store_explicit(&c->round, round, memory_order_relaxed);
		atomic_store_explicit(&c->step, step, memory_order_relaxed);
	}
	if (wall > 0)
		atomic_store_explicit(&c->signed_wall_ns, wall, memory_order_relaxed);
	atomic_store_explicit(&c->hrs_lock, v + 2, memory_order_release);
}

void obs_chain_hrs(struct obs_chain *c, int64_t *h, int *round, int *step)
{
	for (;;) {
		unsigned v1 = atomic_load_explicit(&c->hrs_lock, memory_order_acquire);
		if (v1 & 1) {
			sched_yield();
			continue;
		}
		*h = atomic_load_explicit(&c->height, memory_order_relaxed);
		*round = atomic_load_explicit(&c->round, memory_order_relaxed);
		*step = atomic_load_explicit(&c->step, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&c->hrs_lock, memory_order_relaxed) == v1)
			return;
	}
}

static void max_store(obs_i64 *a, int64_t v)
{
	int64_t cur = atomic_load_explicit(a, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

static void max_store_u(obs_ctr *a, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

static void inc(obs_ctr *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void observe(struct obs_hist *h, int64_t ns)
{
	size_t i = 0;
	if (ns < 0)
		ns = 0;
	while (i < OBS_N_BUCKETS && ns > obs_bucket_ns[i])
		i++;
	inc(&h->b[i]);
	atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

uint64_t obs_hist_count(struct obs_hist *h)
{
	uint64_t n = 0;
	for (size_t i = 0; i <= OBS_N_BUCKETS; i++)
		n += atomic_load_explicit(&h->b[i], memory_order_relaxed);
	return n;
}

int obs_reg_add_chain(struct obs_reg *r, const char *chain_id, int64_t height, int32_t round,
		      int step, uint64_t seq)
{
	if (r == NULL || chain_id == NULL)
		return KMS_ERR_INTERNAL;
	if (obs_chain_find(r, chain_id) != NULL)
		return KMS_ERR_EXISTS;
	if (r->n_chains == OBS_MAX_CHAINS)
		return KMS_ERR_NO_SPACE;
	struct obs_chain *c = &r->chains[r->n_chains];
	if ((c->id = strdup(chain_id)) == NULL)
		return KMS_ERR_ALLOC;
	atomic_store(&c->height, height);
	atomic_store(&c->round, (int)round);
	atomic_store(&c->step, step);
	atomic_store(&c->rec_seq, seq);
	r->n_chains++;
	return KMS_OK;
}

int obs_reg_add_peer(struct obs_reg *r, const char *chain_id, const char *peer, size_t *index)
{
	struct obs_chain *c;
	if (r == NULL || peer == NULL)
		return KMS_ERR_INTERNAL;
	if ((c = obs_chain_find(r, chain_id)) == NULL)
		return KMS_ERR_NOT_FOUND;
	if (r->n_peers == OBS_MAX_PEERS)
		return KMS_ERR_NO_SPACE;
	struct obs_peer *p = &r->peers[r->n_peers];
	if ((p->name = strdup(peer)) == NULL)
		return KMS_ERR_ALLOC;
	p->key = peer;
	p->chain = (size_t)(c - r->chains);
	if (index != NULL)
		*index = r->n_peers;
	r->n_peers++;
	return KMS_OK;
}

int obs_reg_add_slot(struct obs_reg *r, const char *chain_id, const char *slot)
{
	struct obs_chain *c;
	if (r == NULL || slot == NULL)
		return KMS_ERR_INTERNAL;
	if ((c = obs_chain_find(r, chain_id)) == NULL)
		return KMS_ERR_NOT_FOUND;
	int i = obs_slot_index(r, slot);
	if (i < 0)
		return KMS_ERR_NO_SPACE;
	atomic_fetch_or(&c->slots, UINT32_C(1) << i);
	return KMS_OK;
}

static int slot_lookup(struct obs_reg *r, const char *name)
{
	size_t n = atomic_load_explicit(&r->n_slots, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		if (atomic_load_explicit(&r->slots[i].key, memory_order_acquire) == name)
			return (int)i;
	for (size_t i = 0; i < n; i++) {
		const char *s = atomic_load_explicit(&r->slots[i].name, memory_order_acquire);
		if (s != NULL && strcmp(s, name) == 0)
			return (int)i;
	}
	return -1;
}

int obs_slot_index(struct obs_reg *r, const char *name)
{
	int i = slot_lookup(r, name);
	if (i >= 0)
		return i;
	/* A slot not registered at start (a backup that took over): added once,
	 * under a mutex that only adders take. */
	pthread_mutex_lock(&r->slot_mu);
	i = slot_lookup(r, name);
	size_t n = atomic_load(&r->n_slots);
	if (i < 0 && n < OBS_MAX_SLOTS) {
		char *copy = strdup(name);
		if (copy != NULL) {
			struct obs_slot *s = &r->slots[n];
			atomic_store_explicit(&s->key, name, memory_order_relaxed);
			atomic_store_explicit(&r->n_slots, n + 1, memory_order_release);
			atomic_store_explicit(&s->name, copy, memory_order_release);
			i = (int)n;
		}
	}
	pthread_mutex_unlock(&r->slot_mu);
	return i;
}

static struct obs_peer *peer_find(struct obs_reg *r, const char *peer)
{
	if (peer == NULL)
		return NULL;
	for (size_t i = 0; i < r->n_peers; i++)
		if (r->peers[i].key == peer)
			return &r->peers[i];
	for (size_t i = 0; i < r->n_peers; i++)
		if (strcmp(r->peers[i].name, peer) == 0)
			return &r->peers[i];
	return NULL;
}

static int sig_type(enum obs_msg m)
{
	switch (m) {
	case OBS_MSG_PROPOSAL:
		return OBS_T_PROPOSAL;
	case OBS_MSG_PREVOTE:
		return OBS_T_PREVOTE;
	case OBS_MSG_PRECOMMIT:
		return OBS_T_PRECOMMIT;
	default:
		return -1;
	}
}

/* A new signature: by slot and type; the slot works and serves this chain. */
static void on_signed(struct obs_reg *r, struct obs_chain *c, const struct obs_event *ev, int t)
{
	int si = ev->slot != NULL ? obs_slot_index(r, ev->slot) : -1;
	if (si < 0) {
		/* No slot named (or the table is full): the chain's first slot. */
		uint32_t m = atomic_load(&c->slots);
		si = m != 0 ? __builtin_ctz(m) : -1;
	}
	if (si >= 0) {
		struct obs_slot *s = &r->slots[si];
		inc(&c->sigs[si][t]);
		if (ev->ext_signed)
			inc(&c->sigs[si][OBS_T_EXTENSION]);
		if (ev->sign_ns > 0)
			observe(&s->sign, ev->sign_ns);
		atomic_fetch_or(&c->slots, UINT32_C(1) << si);
		atomic_store(&s->down, 0);
	}
	atomic_store(&c->token_failed, 0);
}

void obs_reg_event(void *ctx, const struct obs_event *ev)
{
	struct obs_reg *r = ctx;
	struct obs_chain *c = obs_chain_find(r, ev->chain_id);
	struct obs_peer *p = peer_find(r, ev->peer);
	int t = sig_type(ev->msg);

	if (c == NULL) {
		inc(&r->unmatched);
		return;
	}
	if (p != NULL) {
		inc(&p->requests[ev->msg >= 1 && ev->msg <= OBS_MSG_UNKNOWN ? ev->msg :
									      OBS_MSG_UNKNOWN]);
		if (t >= 0)
			observe(&p->latency, ev->latency_ns);
	}
	if (t >= 0 && ev->height > 0)
		max_store(&c->request_height, ev->height);
	if (ev->guard_seq > 0)
		max_store_u(&c->rec_seq, ev->guard_seq);
	if (ev->sync_ns > 0)
		observe(&c->sync, ev->sync_ns);
	/* A record was made durable: also when the reply became a refusal
	 * afterwards (a failed vote-extension signature). */
	if (t >= 0 && ev->sync_ns > 0 && ev->why != OBS_WHY_STATE)
		hrs_store_if_newer(c, ev->height, (int)ev->round, ev->step,
				   ev->decision == OBS_DEC_SIGNED ? ev->wall_ns : 0);
	switch (ev->decision) {
	case OBS_DEC_SIGNED:
		if (t >= 0)
			on_signed(r, c, ev, t);
		break;
	case OBS_DEC_STORED:
		if (t >= 0)
			inc(&c->stored[t]);
		break;
	case OBS_DEC_REFUSED:
		inc(&c->refusals[ev->why >= 0 && ev->why < OBS_WHY_COUNT ? ev->why :
									   OBS_WHY_INTERNAL]);
		if (ev->why == OBS_WHY_TOKEN)
			atomic_store(&c->token_failed, 1);
		else if (ev->why == OBS_WHY_STATE)
			atomic_store(&c->guard_failed, 1);
		break;
	case OBS_DEC_ANSWERED:
		break;
	}
}

static void on_conn(struct obs_peer *p, enum obs_status_kind k)
{
	switch (k) {
	case OBS_ST_CONN_UP:
		inc(&p->ups);
		if (atomic_exchange(&p->ever_up, 1))
			inc(&p->reconnects);
		atomic_store(&p->connected, 1);
		break;
	case OBS_ST_CONN_DOWN:
		inc(&p->downs);
		atomic_store(&p->connected, 0);
		break;
	case OBS_ST_DIAL_FAILED:
		inc(&p->dial_failures);
		break;
	case OBS_ST_HANDSHAKE_FAILED:
		inc(&p->handshake_failures);
		break;
	default:
		break;
	}
}

static void ckr_count(struct obs_slot *s, unsigned long ckr)
{
	unsigned long want = ckr + 1;
	for (size_t i = 0; i < OBS_CKR_KINDS; i++) {
		unsigned long cur = atomic_load(&s->ckr[i]);
		if (cur == 0 && atomic_compare_exchange_strong(&s->ckr[i], &cur, want))
			cur = want;
		if (cur == want) {
			inc(&s->ckr_n[i]);
			return;
		}
	}
	/* More than OBS_CKR_KINDS distinct codes: the total still counts it. */
}

static void on_slot(struct obs_reg *r, const struct obs_status *st)
{
	int si = st->slot != NULL ? obs_slot_index(r, st->slot) : -1;
	if (si < 0)
		return;
	struct obs_slot *s = &r->slots[si];
	switch (st->kind) {
	case OBS_ST_TOKEN_ERROR:
		inc(&s->token_errors);
		ckr_count(s, st->ckr);
		break;
	case OBS_ST_SESSION_REOPEN:
		inc(&s->reopens);
		break;
	case OBS_ST_MODULE_REINIT:
		inc(&s->reinits);
		break;
	case OBS_ST_WATCHDOG_TIMEOUT:
		inc(&s->timeouts);
		atomic_store(&s->down, 1);
		break;
	case OBS_ST_SLOT_DOWN:
		atomic_store(&s->down, 1);
		break;
	case OBS_ST_SLOT_UP:
		atomic_store(&s->down, 0);
		break;
	case OBS_ST_FAILOVER: {
		struct obs_chain *c = obs_chain_find(r, st->chain_id);
		inc(&s->failovers);
		if (c != NULL)
			atomic_fetch_or(&c->slots, UINT32_C(1) << si);
		break;
	}
	default:
		break;
	}
}

void obs_reg_status(void *ctx, const struct obs_status *st)
{
	struct obs_reg *r = ctx;
	struct obs_chain *c;
	switch (st->kind) {
	case OBS_ST_CONN_UP:
	case OBS_ST_CONN_DOWN:
	case OBS_ST_DIAL_FAILED:
	case OBS_ST_HANDSHAKE_FAILED: {
		struct obs_peer *p = peer_find(r, st->peer);
		if (p != NULL)
			on_conn(p, st->kind);
		break;
	}
	case OBS_ST_GUARD_FAILED:
		if ((c = obs_chain_find(r, st->chain_id)) != NULL)
			atomic_store(&c->guard_failed, 1);
		break;
	case OBS_ST_CLUSTER_ERROR:
		if ((c = obs_chain_find(r, st->chain_id)) != NULL)
			inc(&c->cluster_errors);
		break;
	case OBS_ST_AUDIT_ERROR:
		inc(&r->audit_errors);
		break;
	default:
		on_slot(r, st);
		break;
	}
}

int obs_reg_attach(struct obs_reg *r)
{
	int e = obs_sink_add(obs_reg_event, r, 0);
	if (e != KMS_OK)
		return e;
	return obs_status_sink_add(obs_reg_status, r);
}

void obs_reg_busy(struct obs_reg *r, size_t index, int busy)
{
	if (r == NULL || index >= r->n_peers)
		return;
	atomic_store_explicit(&r->peers[index].busy_since_ns, busy ? obs_mono_ns() : 0,
			      memory_order_relaxed);
}

void obs_reg_tick(struct obs_reg *r)
{
	if (r != NULL)
		atomic_store_explicit(&r->tick_ns, obs_mono_ns(), memory_order_relaxed);
}
