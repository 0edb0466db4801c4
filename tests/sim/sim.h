/* SPDX-License-Identifier: Apache-2.0 */
/* p11kms-sim internals: a node-side privval peer that drives and checks a signer. */
#ifndef P11KMS_SIM_H
#define P11KMS_SIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"
#include "p11kms/net.h"
#include "p11kms/pv.h"
#include "p11kms/sc.h"

enum sim_mode { SIM_MODE_VOTES = 1, SIM_MODE_PROPOSALS = 2, SIM_MODE_MIXED = 3 };

#define SIM_MAX_CONN 64
#define SIM_EXT_MAX (1024 * 1024 + 4096)

/* What every run shares (filled from the command line). */
struct sim_cfg {
	enum pv_version version;
	char chain_id[PV_CHAIN_ID_MAX + 1];
	enum sim_mode mode;
	uint64_t n; /* signing requests per connection */
	int64_t start_height;
	uint64_t seed;
	int ping_every;	    /* a PingRequest after every N signing requests (0 = never) */
	int timeout_ms;	    /* per request/response */
	int corrupt_check;  /* flip one bit of each received signature before verifying */
	int ext_len_max;    /* largest vote extension generated */
	int expect_ext_sig; /* v0.38: the signer signs extensions (sign_extensions = true) */
	int strict;	    /* behave like the real node on a reply it cannot use: hang up */
	int flood_ms;	    /* hostile refusal-flood: how long to keep sending */
};

/* ---- the consensus walk (sim_gen.c) ---- */

/*
 * Walks H/R/S the way a validator's consensus does: per height
 * proposal -> prevote -> precommit (mode mixed); sometimes a nil prevote and
 * precommit followed by a round bump. Every decision is a function of
 * (seed, height, round), so sentries with the same seed ask for the same
 * votes, as several nodes of one validator would.
 */
struct sim_gen {
	const struct sim_cfg *cfg;
	int sentry; /* vote timestamps differ by this many ms between sentries */
	int64_t h;
	int32_t r;
	int phase; /* 0 proposal, 1 prevote, 2 precommit */
	uint8_t ext[256];
};

void sim_gen_init(struct sim_gen *g, const struct sim_cfg *cfg, int sentry);
/* The next signing request; req->vote.extension may point into g (valid until the next call). */
void sim_gen_next(struct sim_gen *g, struct pv_request *req);
/* Deterministic 32-byte "block hash" for a label. */
void sim_block_id(struct pv_block_id *b, uint64_t a, uint64_t c);
uint64_t sim_mix(uint64_t x);

/* ---- checking responses (sim_verify.c) ---- */

enum sim_verdict {
	SIM_OK = 0,
	SIM_BAD_SIG = 1,     /* a signature does not verify */
	SIM_BAD_EXT_SIG = 2, /* extension signature missing, unexpected or not verifying */
	SIM_MISMATCH = 3,    /* the response is not an answer to this request */
	SIM_REFUSED = 4,     /* RemoteSignerError (code in the response) */
};
const char *sim_verdict_name(enum sim_verdict v);

/*
 * Checks resp against req for version v: the response answers this request
 * (kind, H/R, type, block id), the signature verifies with OpenSSL against
 * pub over our canonical sign bytes (vote: the request's vote with the
 * timestamp the signer returned, since FilePV may hand back a stored one;
 * proposal: the request's proposal, since CometBFT keeps only the signature),
 * the extension signature is present exactly when the version wants one
 * (non-nil precommits; v1 unless skip_extension_signing; v0.38 only when
 * want_ext_v038) and verifies over CanonicalVoteExtension. corrupt_bit >= 0
 * flips that bit of each signature before verifying (the self-test).
 * why gets one line on failure.
 */
enum sim_verdict sim_verify(enum pv_version v, const uint8_t pub[static 32],
			    const struct pv_request *req, const struct pv_response *resp,
			    int want_ext_v038, int corrupt_bit, char *why, size_t whycap);

/* ---- latency and counters (sim_stats.c) ---- */

struct sim_stats {
	pthread_mutex_t mu;
	double *lat_ms; /* one per signing request */
	size_t n_lat, cap_lat;
	uint64_t requests, signed_ok, votes, proposals, ext_sigs, pings, refused, failures;
	uint64_t verify_failures, corrupt_detected, corrupt_missed;
	uint64_t refused_by_code[16];
	int64_t t_first_ms, t_last_ms;
	char first_failure[256];
};

void sim_stats_init(struct sim_stats *s);
void sim_stats_free(struct sim_stats *s);
void sim_stats_latency(struct sim_stats *s, double ms);
void sim_stats_fail(struct sim_stats *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Percentile (0..100) of the latencies; sorts them. 0 when empty. */
double sim_stats_pct(struct sim_stats *s, double p);
double sim_stats_max(const struct sim_stats *s);
/* Prints j as one compact line on stdout (the --json summary) and releases it; NULL: nothing. */
struct json_t;
void sim_json_print(struct json_t *j);

/* ---- one node-side connection ---- */

struct sim_listener {
	struct net_addr addr;
	char addr_str[300];    /* what the signer's config names */
	char id_addr_str[360]; /* tcp://<node-id>@host:port (tcp only; else = addr_str) */
	int lfd;
	struct sc_soft_identity *si; /* tcp: fresh ephemeral identity, like the node */
};

struct sim_conn {
	int fd;
	struct sc_conn *sc; /* NULL for unix */
	struct net_stream st;
	char peer[300];
};

KMS_MUST_CHECK int sim_listen(const char *addr, struct sim_listener *l);
void sim_listener_close(struct sim_listener *l);
/* Accepts one signer and (tcp) runs the Secret Connection handshake as the node. */
KMS_MUST_CHECK int sim_accept(struct sim_listener *l, int timeout_ms, struct sim_conn *c);
void sim_conn_close(struct sim_conn *c);
/* Writes n addresses, one a line, to path (temp file + rename: the file appears whole). */
int sim_write_addr_file(const char *path, const char *const *lines, int n);
/* Encodes req, sends it, reads and decodes one response. *lat_ms: write to response. */
KMS_MUST_CHECK int sim_call(struct sim_conn *c, enum pv_version v, const struct pv_request *req,
			    int timeout_ms, struct pv_response **resp, double *lat_ms);

/* ---- modes ---- */

/* Replays the double-sign scenario file through c (sim_replay.c). Returns failures. */
int sim_replay(struct sim_conn *c, const struct sim_cfg *cfg, const uint8_t pub[static 32],
	       const char *path, struct sim_stats *st, int verbose);

/*
 * Node restarts (sim_restart.c): the node listens, waits accept_deadline_ms
 * for the signer (CometBFT's start-up window: about 3 s, then it exits),
 * gets the public key, asks for n signatures, then goes down for a time in
 * [down_min_ms, down_max_ms] and starts again on the same address, restarts
 * times in all. Prints the connect delays (listen to accept) and the misses;
 * returns the process exit code (0: connected every time, no failure).
 */
struct sim_restart_opts {
	int restarts;
	int accept_deadline_ms;
	int down_min_ms, down_max_ms;
	int json;
	const char *addr_file; /* written once the first start listens (NULL: none) */
	int has_expect_pub;
	uint8_t expect_pub[32];
};
int sim_restarts(const char *listen_addr, const struct sim_cfg *cfg,
		 const struct sim_restart_opts *ro);

/* Hostile modes (sim_hostile.c). */
const char *const *sim_hostile_names(void);
int sim_hostile_known(const char *name);
/*
 * Runs hostile mode name on one accepted TCP/unix socket (raw fd; the mode
 * does its own handshake if it needs one). Writes what the signer did
 * ("closed", "error-reply code=N", "timeout", "answered", ...) into outcome.
 */
void sim_hostile_run(const char *name, struct sim_listener *l, int fd, const struct sim_cfg *cfg,
		     char *outcome, size_t cap);

#endif
