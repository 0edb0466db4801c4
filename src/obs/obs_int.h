/* SPDX-License-Identifier: Apache-2.0 */
/* The registry's layout, shared by the sinks (obs_metrics.c) and the views (obs_render.c). */
#ifndef P11KMS_OBS_INT_H
#define P11KMS_OBS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "p11kms/obs_metrics.h"

/* Every value a scrape reads is one of these: lock-free on the platforms we build for. */
typedef atomic_uint_least64_t obs_ctr;
typedef atomic_int_least64_t obs_i64;

/* Per-bucket counts (not cumulative: the view sums them), the last one is +Inf. */
struct obs_hist {
	obs_ctr b[OBS_N_BUCKETS + 1];
	obs_ctr sum_ns;
};
/* Upper bounds of the buckets, in ns and as the `le` label. */
extern const int64_t obs_bucket_ns[OBS_N_BUCKETS];
extern const char *const obs_bucket_le[OBS_N_BUCKETS];

/* Signature kinds counted by p11kms_signatures_total{type}. */
enum obs_sig_type { OBS_T_PROPOSAL, OBS_T_PREVOTE, OBS_T_PRECOMMIT, OBS_T_EXTENSION, OBS_T_N };
extern const char *const obs_sig_type_name[OBS_T_N];

/* Token error counts by CK_RV: a small open-addressed table per slot. */
#define OBS_CKR_KINDS 16

struct obs_slot {
	_Atomic(char *) name;	   /* published last: NULL while the entry is being filled */
	_Atomic(const char *) key; /* the pointer events carry (slot_describe), for a fast match */
	struct obs_hist sign;
	obs_ctr token_errors, reopens, reinits, timeouts, failovers;
	atomic_ulong ckr[OBS_CKR_KINDS]; /* CK_RV + 1; 0: free */
	obs_ctr ckr_n[OBS_CKR_KINDS];
	atomic_int
		down; /* 1 after a watchdog timeout or slot_down, 0 after slot_up or a signature */
};

struct obs_chain {
	char *id;
	obs_ctr sigs[OBS_MAX_SLOTS][OBS_T_N];
	obs_ctr stored[OBS_T_N];
	obs_ctr refusals[OBS_WHY_COUNT];
	struct obs_hist sync;
	/* Last signed H/R/S: a seqlock (even = stable), so a scrape never sees a torn triple. */
	atomic_uint hrs_lock;
	obs_i64 height;
	atomic_int round, step;
	obs_i64 signed_wall_ns;	     /* when the last new signature was made (0: none yet) */
	obs_ctr rec_seq;	     /* highest state record sequence seen */
	obs_i64 request_height;	     /* highest height a node asked to sign */
	atomic_uint_least32_t slots; /* bit i: slot i serves this chain */
	atomic_int token_failed;     /* the last signing attempt failed in the token */
	atomic_int guard_failed;     /* the guard failed closed (until restart) */
	obs_ctr cluster_errors;
};

struct obs_peer {
	char *name;
	const char *key; /* the pointer events carry (the connection's peer string) */
	size_t chain;
	obs_ctr requests[OBS_MSG_UNKNOWN + 1];
	struct obs_hist latency;
	atomic_int connected, ever_up;
	obs_ctr ups, downs, reconnects, dial_failures, handshake_failures;
	obs_i64 busy_since_ns; /* 0: not answering a request */
};

struct obs_reg {
	struct obs_chain *chains;
	size_t n_chains;
	struct obs_peer *peers;
	size_t n_peers;
	struct obs_slot slots[OBS_MAX_SLOTS];
	atomic_size_t n_slots;	 /* entries reserved (a reserved entry may not be published yet) */
	pthread_mutex_t slot_mu; /* serialises adding a slot (rare); never taken by a scrape */
	obs_ctr audit_errors;
	obs_ctr unmatched; /* events naming a chain the registry does not know */
	obs_i64 tick_ns;   /* the supervisor's last heartbeat (CLOCK_MONOTONIC) */
	int64_t start_wall_ns;
};

/* The slot entry for name (by pointer, then by string), added if new; -1 when full. */
int obs_slot_index(struct obs_reg *r, const char *name);
/* The chain entry for id, or NULL. */
struct obs_chain *obs_chain_find(struct obs_reg *r, const char *id);
/* A consistent read of the last signed H/R/S. */
void obs_chain_hrs(struct obs_chain *c, int64_t *h, int *round, int *step);
/* Total count of a histogram (the sum of its buckets). */
uint64_t obs_hist_count(struct obs_hist *h);
/* Why a chain is not ready, as a static string, or NULL when it is. */
const char *obs_chain_not_ready(struct obs_reg *r, size_t i);
/* 1 when the chain has a slot that signs (see obs_chain_not_ready). */
int obs_chain_slot_ok(struct obs_reg *r, size_t i);
/* Connected validator entries of chain i. */
size_t obs_chain_connected(struct obs_reg *r, size_t i);

#endif
