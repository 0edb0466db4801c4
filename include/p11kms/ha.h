/* SPDX-License-Identifier: Apache-2.0 */
/* ha_: several signer hosts, one high-water mark per chain in etcd (docs/ha.md). */
#ifndef P11KMS_HA_H
#define P11KMS_HA_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/cfg.h"
#include "p11kms/guard.h"
#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"

/*
 * The etcd client speaks etcd's v3 JSON gateway (/v3/kv/range, /v3/kv/txn,
 * /v3/watch, /v3/lease/grant, /v3/lease/keepalive) through libcurl and jansson:
 * keys and values base64, int64 as JSON strings. One ha_client is one curl
 * handle (its connections are kept alive between calls), not thread-safe:
 * each thread uses its own. Every call is bounded by cfg_ha.timeout_ms; a
 * connection that fails (refused, TLS, timeout, reset) moves on to the next
 * endpoint while time is left. Reads are linearizable, never serializable.
 * Failures are logged once with the endpoint and returned as:
 *   KMS_ERR_TIMEOUT  the deadline passed (a transaction's outcome is unknown);
 *   KMS_ERR_SYSTEM   no endpoint could be reached, or etcd answered an error
 *                    (no leader, no quorum, ...);
 *   KMS_ERR_FORMAT   the answer did not parse.
 */

/* Must be called once, before any thread starts (curl_global_init). */
KMS_MUST_CHECK int ha_global_init(void);

struct ha_client;

/* A client for the endpoints, TLS files and timeout of c. Checks the key file is private. */
KMS_MUST_CHECK int ha_client_new(const struct cfg_ha *c, struct ha_client **out);
void ha_client_free(struct ha_client *cl);
/*
 * A pool of connections and TLS sessions shared by several clients (each on its
 * own thread): a connection a background thread opened (with a longer bound)
 * serves the signing path without a new TCP+TLS handshake. Free the clients first.
 */
struct ha_share;
KMS_MUST_CHECK int ha_share_new(struct ha_share **out);
void ha_share_free(struct ha_share *s);
KMS_MUST_CHECK int ha_client_share(struct ha_client *cl, struct ha_share *s);

/* Operator commands (not the signing path) allow etcd longer: HA_CLI_TIMEOUT_MS at least. */
#define HA_CLI_TIMEOUT_MS 5000
void ha_client_set_timeout(struct ha_client *cl, int timeout_ms);

/* One key: *present, its value (appended to val) and mod_revision. */
struct ha_kv {
	int present;
	int64_t mod_revision;
	int64_t lease;
};
KMS_MUST_CHECK int ha_get(struct ha_client *cl, const char *key, struct kbuf *val,
			  struct ha_kv *kv);

/*
 * if mod_revision(key) == cmp_rev then put(key, val) else range(key):
 * *succeeded says which; on success *new_rev is the key's new mod_revision;
 * on a compare failure cur/cur_kv hold the key as it is now.
 */
KMS_MUST_CHECK int ha_cas(struct ha_client *cl, const char *key, int64_t cmp_rev,
			  const uint8_t *val, size_t len, int *succeeded, int64_t *new_rev,
			  struct kbuf *cur, struct ha_kv *cur_kv);

/* Calls fn for each key under prefix (a linearizable range); stops at a non-zero return. */
typedef int (*ha_each_fn)(void *ctx, const char *key, const uint8_t *val, size_t len,
			  const struct ha_kv *kv);
KMS_MUST_CHECK int ha_list(struct ha_client *cl, const char *prefix, ha_each_fn fn, void *ctx);

/* Leases: grant (ttl seconds), keep alive (*ttl 0: expired), put under a lease. */
KMS_MUST_CHECK int ha_lease_grant(struct ha_client *cl, int ttl, int64_t *id);
KMS_MUST_CHECK int ha_lease_keepalive(struct ha_client *cl, int64_t id, int64_t *ttl);
KMS_MUST_CHECK int ha_put(struct ha_client *cl, const char *key, const uint8_t *val, size_t len,
			  int64_t lease);

/* One endpoint's /v3/maintenance/status: its member id, the leader's, version, raft term. */
struct ha_member_status {
	char endpoint[256];
	int ok;		/* answered */
	char err[400];	/* why not */
	uint64_t member_id, leader;
	char version[32];
	int64_t raft_term, raft_index;
};
/* Asks every endpoint (each within timeout_ms); fills up to cap entries, returns how many. */
size_t ha_members(struct ha_client *cl, struct ha_member_status *st, size_t cap);

/* ---- the cluster mark ---- */

/* "<prefix>/<chain-id>/hwm" and "<prefix>/<chain-id>/hosts/" into out. */
KMS_MUST_CHECK int ha_key_mark(const struct cfg_ha *c, const char *chain_id, char *out,
			       size_t cap);
KMS_MUST_CHECK int ha_key_hosts(const struct cfg_ha *c, const char *chain_id, char *out,
				size_t cap);

/* The mark's JSON value (docs/ha.md) and back. host may be NULL. */
KMS_MUST_CHECK int ha_mark_encode(const struct guard_mark *m, const char *host, struct kbuf *out);
KMS_MUST_CHECK int ha_mark_decode(const uint8_t *p, size_t n, struct guard_mark *m, char *host,
				  size_t host_cap, int64_t *at);

/*
 * Moves the cluster mark of chain forward to m (a compare-and-swap loop): never
 * backwards. *moved = 1 when written, 0 when the cluster was already at or past
 * m (then *cluster holds the mark found, if the caller passes one).
 */
KMS_MUST_CHECK int ha_mark_forward(struct ha_client *cl, const struct cfg_ha *c,
				   const char *chain_id, const struct guard_mark *m, int *moved,
				   struct guard_mark *cluster);

/* ---- in the daemon: one per chain with `ha` ---- */

struct ha_chain;

/*
 * Opens the chain's clients (signing path, watch, presence), reads the cluster
 * mark, and moves it forward to the local guard's last record when the cluster
 * is behind (docs/ha.md: a new or wiped etcd). Then attaches itself to g
 * (guard_set_cluster) and starts the watch and presence threads.
 * Errors: the etcd client's, KMS_ERR_CONFIG.
 */
KMS_MUST_CHECK int ha_chain_start(const struct cfg_chain *cc, struct guard *g,
				  struct ha_chain **out);
/* Stops the threads and detaches from the guard (the presence key expires with its
 * lease); accepts NULL. */
void ha_chain_stop(struct ha_chain *hc);

/* The guard_cluster_ops the chain attaches (exposed for tests). */
const struct guard_cluster_ops *ha_guard_ops(void);

/* The configured host name, or the machine's. */
void ha_host_name(const struct cfg_ha *c, char *out, size_t cap);

/*
 * The "ha" entry of the start/doctor preflight list (src/daemon/preflight.c):
 * every endpoint reachable (TLS included), a leader and a quorum (a
 * linearizable read works), and the cluster mark not behind local (local may
 * be NULL: not compared). One line per finding goes to report(ctx, kind, err,
 * line). Returns KMS_OK when all passed.
 */
enum ha_finding {
	HA_FIND_OK = 0,	   /* fine */
	HA_FIND_ETCD = 1,  /* etcd unhealthy, or its mark behind: start runs, refuses new signatures */
	HA_FIND_LOCAL = 2, /* this host's client setup (TLS files, their modes): start refuses */
};
typedef void (*ha_report_fn)(void *ctx, enum ha_finding kind, int err, const char *line);
KMS_MUST_CHECK int ha_preflight(const struct cfg_chain *cc, const struct guard_hrs *local,
				ha_report_fn report, void *ctx);

/* ---- operator commands (src/ha/ha_cli.c) ---- */

/*
 * state init/import: moves the cluster mark of cc forward to the local state
 * file's last record (never backwards) and prints what it did to out.
 */
KMS_MUST_CHECK int ha_state_forward(const struct cfg_chain *cc, struct kbuf *out);
/* state show / ha status: the cluster mark of cc (its key, revision, H/R/S, host, when). */
KMS_MUST_CHECK int ha_mark_show(const struct cfg_chain *cc, struct kbuf *out);
/* ha status: the members (leader, version) and the hosts seen recently for cc. */
KMS_MUST_CHECK int ha_status(const struct cfg_chain *cc, struct kbuf *out);

#endif
