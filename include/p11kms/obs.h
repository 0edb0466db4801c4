/* SPDX-License-Identifier: Apache-2.0 */
/* obs_: one event per request decision, handed after the reply to the sinks (metrics, audit). */
#ifndef P11KMS_OBS_H
#define P11KMS_OBS_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * The request handler fills one struct obs_event per request it answers; the
 * connection thread completes it (end-to-end latency) after the reply has been
 * written and calls obs_emit(). Sinks run on the connection thread, after the
 * reply: they must be quick and must never block on I/O (the metrics sink
 * bumps atomics; the audit sink queues the record for its writer thread).
 * Nothing secret is in an event: no PIN, no key material; the sign bytes only
 * as their SHA-256.
 */

/* What the request was. */
enum obs_msg {
	OBS_MSG_PREVOTE = 1,
	OBS_MSG_PRECOMMIT,
	OBS_MSG_PROPOSAL,
	OBS_MSG_PUBKEY,
	OBS_MSG_PING,
	OBS_MSG_SIGN_BYTES,
	OBS_MSG_UNKNOWN,
};

/* What p11kms did. */
enum obs_decision {
	OBS_DEC_SIGNED = 1, /* a new signature, its record durable before the reply */
	OBS_DEC_STORED,	    /* the stored signature (and maybe timestamp) returned */
	OBS_DEC_REFUSED,    /* a RemoteSignerError reply */
	OBS_DEC_ANSWERED,   /* PubKey or Ping answered (no signature involved) */
};

/* Why a request was refused (OBS_DEC_REFUSED); OBS_WHY_NONE otherwise. Stable:
 * these names are metric label values and audit record fields. */
enum obs_why {
	OBS_WHY_NONE = 0,
	OBS_WHY_REGRESSION, /* double sign: height, round or step regression */
	OBS_WHY_CONFLICT,   /* double sign: other data at the same height/round/step */
	OBS_WHY_MAX_HEIGHT,
	OBS_WHY_CHAIN_ID,
	OBS_WHY_MALFORMED,  /* invalid request, sign bytes not computable, too large */
	OBS_WHY_SIGN_BYTES, /* a SignBytes request (never signed) */
	OBS_WHY_TOKEN,	    /* the slot failed or timed out */
	OBS_WHY_STATE,	    /* the state cannot be made durable / the guard failed closed */
	OBS_WHY_CLUSTER,    /* HA: the cluster mark refused or etcd is unavailable */
	OBS_WHY_INTERNAL,
	OBS_WHY_AUDIT, /* audit.fail_closed: the audit log cannot take the record (#19) */
};
#define OBS_WHY_COUNT (OBS_WHY_AUDIT + 1)

struct obs_event {
	int64_t wall_ns; /* CLOCK_REALTIME when the request was decoded */
	int64_t mono_ns; /* CLOCK_MONOTONIC, same instant */
	const char *chain_id; /* borrowed from the config: valid for the daemon's life */
	const char *peer;     /* the validator entry's address, as in the logs */
	enum obs_msg msg;
	int64_t height; /* 0 for PubKey/Ping/SignBytes */
	int32_t round;
	int step; /* guard step: 1 proposal, 2 prevote, 3 precommit; 0 otherwise */
	uint8_t block_hash[32];
	size_t block_hash_len; /* 0: nil block */
	uint8_t sign_bytes_sha256[32];
	int has_sign_bytes; /* sign_bytes_sha256 is set (only when obs_want_digest()) */
	enum obs_decision decision;
	enum obs_why why;
	int32_t code;	  /* the RemoteSignerError code on a refusal, else 0 */
	char detail[256]; /* the refusal's reason as logged; "" otherwise */
	const char *slot; /* slot_describe() of the slot that signed (no PIN), or NULL */
	int ext_signed;	  /* a vote extension signature was added */
	uint64_t guard_seq; /* the state record sequence after the decision (0: unknown) */
	int64_t sign_ns;    /* time in the token's C_Sign for the main signature, 0: none */
	int64_t sync_ns;    /* time in the guard's write+fdatasync, 0: none */
	int64_t latency_ns; /* request decoded → reply written (set by the connection thread) */
};

/* A sink: called for every event, on the connection thread, after the reply. */
typedef void (*obs_sink_fn)(void *ctx, const struct obs_event *ev);

/*
 * Registers a sink (at most OBS_MAX_SINKS). want_digest: the sink needs
 * sign_bytes_sha256 (the handler computes it only when some sink asks).
 * Call before the connection threads start; not thread-safe against obs_emit.
 */
#define OBS_MAX_SINKS 4
KMS_MUST_CHECK int obs_sink_add(obs_sink_fn fn, void *ctx, int want_digest);
/* Removes every sink, event and status (daemon shutdown, after the threads ended). */
void obs_sink_clear(void);
/* 1 when a registered sink wants the sign-bytes digest. */
int obs_want_digest(void);
/* Hands ev to every sink in registration order. */
void obs_emit(const struct obs_event *ev);

/*
 * Status events: state changes outside a request (a connection came up or went
 * down, a token error, a session re-opened, a module re-initialised, a
 * watchdog timeout, a failover, the guard failing closed, an audit write
 * error). Emitted from any thread (connection threads, token workers); sinks
 * must be thread-safe, quick and non-blocking (atomics). Emitters: conn.c
 * (OBS_ST_CONN_*, DIAL_FAILED, HANDSHAKE_FAILED), src/slot (OBS_ST_TOKEN_*,
 * SESSION_REOPEN, MODULE_REINIT, WATCHDOG_TIMEOUT, SLOT_*, FAILOVER), src/guard
 * (GUARD_FAILED), the audit log (AUDIT_ERROR), src/ha (CLUSTER_ERROR).
 */
enum obs_status_kind {
	OBS_ST_CONN_UP = 1,	 /* chain_id, peer: a session is established (after the handshake) */
	OBS_ST_CONN_DOWN,	 /* chain_id, peer: an established session ended */
	OBS_ST_DIAL_FAILED,	 /* chain_id, peer, err */
	OBS_ST_HANDSHAKE_FAILED, /* chain_id, peer, err */
	OBS_ST_TOKEN_ERROR,	 /* slot, ckr (the CK_RV a token call returned), err */
	OBS_ST_SESSION_REOPEN,	 /* slot: a lost session was re-opened and logged in */
	OBS_ST_MODULE_REINIT,	 /* slot: the module was finalised and initialised again */
	OBS_ST_WATCHDOG_TIMEOUT, /* slot: a token call passed its deadline */
	OBS_ST_SLOT_DOWN,	 /* slot: the slot cannot sign (token missing, hung, failed) */
	OBS_ST_SLOT_UP,		 /* slot: the slot signs again (also once at start) */
	OBS_ST_FAILOVER,	 /* slot: the slot that took over a request; chain_id */
	OBS_ST_GUARD_FAILED,	 /* chain_id: the guard failed closed (state not durable) */
	OBS_ST_AUDIT_ERROR,	 /* err: an audit record could not be written or synced */
	OBS_ST_CLUSTER_ERROR,	 /* chain_id, err: the HA cluster mark could not be read/written */
};

struct obs_status {
	enum obs_status_kind kind;
	const char *chain_id; /* borrowed, or NULL */
	const char *peer;     /* borrowed, or NULL */
	const char *slot;     /* slot_describe() (no PIN), or NULL */
	unsigned long ckr;    /* OBS_ST_TOKEN_ERROR: the CK_RV; else 0 */
	int err;	      /* a kms_err, or KMS_OK */
};

typedef void (*obs_status_fn)(void *ctx, const struct obs_status *st);
/* Registers a status sink (at most OBS_MAX_SINKS); same rules as obs_sink_add. */
KMS_MUST_CHECK int obs_status_sink_add(obs_status_fn fn, void *ctx);
/* Hands st to every status sink. Cheap when none is registered. */
void obs_status(const struct obs_status *st);
/* The stable lower-case name: "conn_up", "token_error", ... */
const char *obs_status_name(enum obs_status_kind k);

/* Stable lower-case names: "prevote", "signed", "regression", ... */
const char *obs_msg_name(enum obs_msg m);
const char *obs_decision_name(enum obs_decision d);
const char *obs_why_name(enum obs_why w);

/* CLOCK_REALTIME and CLOCK_MONOTONIC in nanoseconds. */
int64_t obs_wall_ns(void);
int64_t obs_mono_ns(void);

#endif
