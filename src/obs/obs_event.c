/* SPDX-License-Identifier: Apache-2.0 */
/* obs_: the decision-event fan-out from the connection threads to the sinks. */
#include "p11kms/obs.h"

#include <time.h>

struct sink {
	obs_sink_fn fn;
	void *ctx;
	int want_digest;
};

/* Written only before the connection threads start and after they end. */
static struct sink sinks[OBS_MAX_SINKS];
static size_t n_sinks;
static int want_digest;
static struct {
	obs_status_fn fn;
	void *ctx;
} st_sinks[OBS_MAX_SINKS];
static size_t n_st_sinks;

int obs_sink_add(obs_sink_fn fn, void *ctx, int digest)
{
	if (fn == NULL)
		return KMS_ERR_INTERNAL;
	if (n_sinks == OBS_MAX_SINKS)
		return KMS_ERR_NO_SPACE;
	sinks[n_sinks++] = (struct sink){ .fn = fn, .ctx = ctx, .want_digest = digest };
	if (digest)
		want_digest = 1;
	return KMS_OK;
}

void obs_sink_clear(void)
{
	n_sinks = 0;
	want_digest = 0;
	n_st_sinks = 0;
}

int obs_status_sink_add(obs_status_fn fn, void *ctx)
{
	if (fn == NULL)
		return KMS_ERR_INTERNAL;
	if (n_st_sinks == OBS_MAX_SINKS)
		return KMS_ERR_NO_SPACE;
	st_sinks[n_st_sinks].fn = fn;
	st_sinks[n_st_sinks].ctx = ctx;
	n_st_sinks++;
	return KMS_OK;
}

void obs_status(const struct obs_status *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < n_st_sinks; i++)
		st_sinks[i].fn(st_sinks[i].ctx, st);
}

const char *obs_status_name(enum obs_status_kind k)
{
	switch (k) {
	case OBS_ST_CONN_UP:
		return "conn_up";
	case OBS_ST_CONN_DOWN:
		return "conn_down";
	case OBS_ST_DIAL_FAILED:
		return "dial_failed";
	case OBS_ST_HANDSHAKE_FAILED:
		return "handshake_failed";
	case OBS_ST_TOKEN_ERROR:
		return "token_error";
	case OBS_ST_SESSION_REOPEN:
		return "session_reopen";
	case OBS_ST_MODULE_REINIT:
		return "module_reinit";
	case OBS_ST_WATCHDOG_TIMEOUT:
		return "watchdog_timeout";
	case OBS_ST_SLOT_DOWN:
		return "slot_down";
	case OBS_ST_SLOT_UP:
		return "slot_up";
	case OBS_ST_FAILOVER:
		return "failover";
	case OBS_ST_GUARD_FAILED:
		return "guard_failed";
	case OBS_ST_AUDIT_ERROR:
		return "audit_error";
	case OBS_ST_CLUSTER_ERROR:
		return "cluster_error";
	}
	return "unknown";
}

int obs_want_digest(void)
{
	return want_digest;
}

void obs_emit(const struct obs_event *ev)
{
	if (ev == NULL)
		return;
	for (size_t i = 0; i < n_sinks; i++)
		sinks[i].fn(sinks[i].ctx, ev);
}

const char *obs_msg_name(enum obs_msg m)
{
	switch (m) {
	case OBS_MSG_PREVOTE:
		return "prevote";
	case OBS_MSG_PRECOMMIT:
		return "precommit";
	case OBS_MSG_PROPOSAL:
		return "proposal";
	case OBS_MSG_PUBKEY:
		return "pubkey";
	case OBS_MSG_PING:
		return "ping";
	case OBS_MSG_SIGN_BYTES:
		return "sign_bytes";
	case OBS_MSG_UNKNOWN:
		break;
	}
	return "unknown";
}

const char *obs_decision_name(enum obs_decision d)
{
	switch (d) {
	case OBS_DEC_SIGNED:
		return "signed";
	case OBS_DEC_STORED:
		return "stored";
	case OBS_DEC_REFUSED:
		return "refused";
	case OBS_DEC_ANSWERED:
		return "answered";
	}
	return "unknown";
}

const char *obs_why_name(enum obs_why w)
{
	switch (w) {
	case OBS_WHY_NONE:
		return "none";
	case OBS_WHY_REGRESSION:
		return "regression";
	case OBS_WHY_CONFLICT:
		return "conflict";
	case OBS_WHY_MAX_HEIGHT:
		return "max_height";
	case OBS_WHY_CHAIN_ID:
		return "chain_id";
	case OBS_WHY_MALFORMED:
		return "malformed";
	case OBS_WHY_SIGN_BYTES:
		return "sign_bytes";
	case OBS_WHY_TOKEN:
		return "token";
	case OBS_WHY_STATE:
		return "state";
	case OBS_WHY_CLUSTER:
		return "cluster";
	case OBS_WHY_AUDIT:
		return "audit";
	case OBS_WHY_INTERNAL:
		break;
	}
	return "internal";
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	(void)clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t obs_wall_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t obs_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}
