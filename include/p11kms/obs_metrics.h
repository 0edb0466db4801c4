/* SPDX-License-Identifier: Apache-2.0 */
/* obs_: the metrics registry, health and readiness, the HTTP endpoints and systemd notification. */
#ifndef P11KMS_OBS_METRICS_H
#define P11KMS_OBS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"
#include "p11kms/obs.h"

/*
 * The registry is the one sink of decision events (obs_emit) and status
 * events (obs_status) that feeds /metrics, /healthz, /readyz and the systemd
 * watchdog. Every label value (chain, validator entry, slot) is known at
 * start and its series preallocated; a slot first seen in an event (a backup
 * slot) gets a series on the fly, up to OBS_MAX_SLOTS. Counters, gauges and
 * histogram buckets are C11 atomics: the sinks (on the connection threads and
 * token workers) never wait for a scrape, and a scrape never takes a lock the
 * signing path holds. Nothing secret is a label: chain-ids, validator
 * addresses as logged, slot URIs without PIN material, CKR names.
 *
 * Life cycle: obs_reg_new, obs_reg_add_* (single-threaded, before the
 * connection threads start), obs_reg_attach (registers the sinks), then the
 * threads run; obs_sink_clear() and obs_reg_free() after they have ended.
 */
struct obs_reg;

#define OBS_MAX_CHAINS 64
#define OBS_MAX_PEERS 256
#define OBS_MAX_SLOTS 32

/* Histogram buckets (seconds): 50 µs to 1 s, then +Inf. */
#define OBS_N_BUCKETS 14

/* How long a connection thread may spend on one request before /healthz says it
 * hangs: the token deadline (3 s) twice (main and extension signature), the
 * wait for another connection's signature under the chain's lock, and a disk
 * that takes seconds to sync. */
#define OBS_BUSY_LIMIT_MS 15000
/* The supervisor ticks every second at least; this much silence means it hangs. */
#define OBS_SUPERVISOR_LIMIT_MS 5000

/* A new empty registry (process start time taken now). KMS_ERR_ALLOC. */
KMS_MUST_CHECK int obs_reg_new(struct obs_reg **out);
/* Frees; accepts NULL. The sinks must have been removed (obs_sink_clear). */
void obs_reg_free(struct obs_reg *r);

/*
 * Start-up registration (single-threaded). A chain, with the last signed
 * H/R/S and record sequence read at start (seq 0: unknown); a validator
 * entry of that chain, whose index (0, 1, ... in call order) names it in
 * obs_reg_busy; a slot serving that chain (slot_describe(), copied).
 * KMS_ERR_NO_SPACE past the limits above, KMS_ERR_NOT_FOUND for an unknown
 * chain, KMS_ERR_EXISTS for a chain registered twice.
 */
KMS_MUST_CHECK int obs_reg_add_chain(struct obs_reg *r, const char *chain_id, int64_t height,
				     int32_t round, int step, uint64_t seq);
KMS_MUST_CHECK int obs_reg_add_peer(struct obs_reg *r, const char *chain_id, const char *peer,
				    size_t *index);
KMS_MUST_CHECK int obs_reg_add_slot(struct obs_reg *r, const char *chain_id, const char *slot);

/* Registers the registry's decision and status sinks (obs_sink_add, obs_status_sink_add). */
KMS_MUST_CHECK int obs_reg_attach(struct obs_reg *r);

/* The sinks themselves (ctx = the registry); tests call them directly. Thread-safe. */
void obs_reg_event(void *ctx, const struct obs_event *ev);
void obs_reg_status(void *ctx, const struct obs_status *st);

/*
 * Heartbeats. A connection thread calls obs_reg_busy(r, index, 1) when it
 * starts answering a request and (r, index, 0) when the answer is made; the
 * supervisor calls obs_reg_tick() at least every second. Waiting on the
 * network is not "busy": it is bounded by the validator timeouts and holds
 * no lock. Both accept r == NULL (observability off). Lock-free.
 */
void obs_reg_busy(struct obs_reg *r, size_t index, int busy);
void obs_reg_tick(struct obs_reg *r);

/*
 * The Prometheus text exposition format (version 0.0.4) of every series,
 * appended to out. KMS_ERR_NO_SPACE if out's cap is too small.
 */
KMS_MUST_CHECK int obs_reg_render(struct obs_reg *r, struct kbuf *out);

/*
 * /healthz: *ok = 1 while the supervisor has ticked within
 * OBS_SUPERVISOR_LIMIT_MS and no connection thread has been busy on one
 * request for more than OBS_BUSY_LIMIT_MS (at now_ns, CLOCK_MONOTONIC).
 * /readyz: *ok = 1 while every chain has a working slot, at least one
 * connected validator entry and a state that has not failed.
 * Both append a JSON object to out naming what is not healthy/ready.
 */
KMS_MUST_CHECK int obs_reg_health(struct obs_reg *r, int64_t now_ns, struct kbuf *out, int *ok);
KMS_MUST_CHECK int obs_reg_ready(struct obs_reg *r, int64_t now_ns, struct kbuf *out, int *ok);

/*
 * The signing path as the systemd watchdog sees it: healthy (above), and
 * every chain has a working slot and a state that has not failed (a node
 * that is disconnected is not the signer's fault: a restart cannot fix it).
 */
int obs_reg_signing_ok(struct obs_reg *r, int64_t now_ns);

/* "2/2 validators connected; haqq_11235-1 h=12 r=0 s=3" (systemd STATUS=). */
void obs_reg_status_line(struct obs_reg *r, char *out, size_t cap);

/* The name of a CK_RV ("CKR_DEVICE_REMOVED") for the ckr label; "CKR_VENDOR_DEFINED"
 * or "CKR_UNKNOWN" otherwise: always one of a fixed set of static strings. */
const char *obs_ckr_name(unsigned long ckr);

/* ---- the HTTP endpoints (libmicrohttpd), src/obs/obs_http.c ---- */

struct obs_http;

/*
 * Serves GET /metrics, /healthz and /readyz for r on listen ("host:port",
 * "[v6]:port"; port 0 picks a free one) from one libmicrohttpd thread.
 * Whether a non-loopback address is allowed is the config's decision
 * (metrics.allow_remote); this binds what it is given. Every other path is
 * 404, every other method 405. libmicrohttpd is loaded now (dlopen), not
 * at process start. KMS_ERR_CONFIG (unparsable address), KMS_ERR_SYSTEM
 * (bind/listen failed, or the library is missing; logged).
 */
KMS_MUST_CHECK int obs_http_start(struct obs_reg *r, const char *listen, struct obs_http **out);
/* The bound port (useful with port 0). */
uint16_t obs_http_port(const struct obs_http *h);
/* Stops the server thread and frees; accepts NULL. */
void obs_http_stop(struct obs_http *h);

/* ---- systemd notification (libsystemd), src/obs/obs_sd.c ---- */

struct obs_sd;

/*
 * Reads NOTIFY_SOCKET and the watchdog settings (WATCHDOG_USEC,
 * WATCHDOG_PID) of the environment. Without NOTIFY_SOCKET every call below
 * does nothing and libsystemd is never loaded: the daemon behaves as it did
 * outside systemd. KMS_ERR_ALLOC, KMS_ERR_SYSTEM (NOTIFY_SOCKET is set but
 * libsystemd cannot be loaded; logged).
 */
KMS_MUST_CHECK int obs_sd_open(struct obs_sd **out);
/* 1 when a NOTIFY_SOCKET is set. */
int obs_sd_active(const struct obs_sd *sd);
/* Watchdog interval in ms (WATCHDOG_USEC / 1000), 0 when the watchdog is off. */
int64_t obs_sd_watchdog_ms(const struct obs_sd *sd);
/* READY=1 and STATUS= (called once, after every start-up check has passed). */
void obs_sd_ready(struct obs_sd *sd, struct obs_reg *r);
/* WATCHDOG=1 if obs_reg_signing_ok(), and STATUS= when it changed. */
void obs_sd_tick(struct obs_sd *sd, struct obs_reg *r);
/* STOPPING=1. */
void obs_sd_stopping(struct obs_sd *sd);
void obs_sd_free(struct obs_sd *sd);

#endif
