/* SPDX-License-Identifier: Apache-2.0 */
/* daemon_: `p11kms start`: start-up checks, one thread per validator connection, signals. */
#ifndef P11KMS_DAEMON_H
#define P11KMS_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/cfg.h"
#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"
#include "p11kms/pv.h"

struct guard;
struct slot;
struct obs_event;
struct d_logrl;
struct audit_log;

struct daemon_opts {
	int verbose;		  /* -v: one INFO line per request (never secrets or sign bytes) */
	const char *profiles_dir; /* hsm-profiles directory for slot_open (NULL = default) */
	/* Called once on the main thread when every start-up check has passed and the
	 * connection threads are running (tests use it to know the daemon is up). */
	void (*on_ready)(void *ctx);
	void *ready_ctx;
};

/*
 * Runs the signer for cfg until daemon_request_stop() (SIGTERM/SIGINT in
 * cmd_start) or until every connection thread has ended (all validators with
 * reconnect = false lost their connection).
 * Start-up, before the first dial: process hygiene (PR_SET_DUMPABLE 0,
 * RLIMIT_CORE 0, umask 077), then for each chain that has validators its
 * guard (guard_open: state present, locked) and its key (slot_open /
 * slot_open_softsign, Ed25519), then each distinct identity key. A fault is
 * logged naming what to fix and nothing is dialled.
 * Returns a process exit code (enum cmd_exit in cmd.h): 0 after a requested
 * stop (requests in flight answered, connections closed, tokens released,
 * state files unlocked), CMD_EXIT_CONFIG / _KEY / _STATE / _PERM for a
 * start-up fault, CMD_EXIT_FAIL otherwise. Blocks. One daemon per process.
 */
int daemon_run(const struct cfg *cfg, const struct daemon_opts *o);

/* Asks the running daemon_run() to stop. Async-signal-safe; callable from any
 * thread; a request made before daemon_run() starts is kept. */
void daemon_request_stop(void);

/* Clears a pending stop request (tests that run the daemon several times). */
void daemon_reset_stop(void);

/* ---- the request handler (pv_ → guard_ → slot_), src/daemon/handler.c ---- */

/* What one connection's handler needs; everything borrowed. */
struct handler_ctx {
	const char *chain_id;
	enum pv_version version;
	struct guard *guard; /* the chain's guard, shared by all its connections */
	struct slot *key;    /* the chain's consensus key */
	uint64_t max_height; /* 0 = no limit */
	int sign_extensions; /* chain's sign_extensions (v0.38 family B) */
	const char *peer;    /* for logs: "tcp://10.0.0.1:26659" */
	int verbose;
	/* refusals of the same kind are folded into a count per minute (NULL: each is logged) */
	struct d_logrl *refusal_rl;
	struct audit_log *audit; /* audit.fail_closed admission before signing, or NULL */
};

/*
 * Answers one decoded request: appends exactly one response Message (no
 * length prefix) to out. Every refusal (chain-id, invalid request,
 * max_height, double sign, state unavailable, sign failure, sign bytes) is a
 * RemoteSignerError response with a stable pv_code, logged at WARN: the
 * connection stays up. Signatures are logged at INFO, one line each.
 * ev (may be NULL) receives the decision (obs.h): the caller completes its
 * latency_ns after writing the reply and hands it to obs_emit().
 * Returns KMS_OK when out holds a response, else an encoding error (out's
 * cap too small: KMS_ERR_NO_SPACE) after which the caller drops the
 * connection. Thread-safe for distinct out buffers.
 */
KMS_MUST_CHECK int handler_handle(const struct handler_ctx *h, const struct pv_request *req,
				  struct kbuf *out, struct obs_event *ev);

#endif
