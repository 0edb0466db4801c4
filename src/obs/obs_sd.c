/* SPDX-License-Identifier: Apache-2.0 */
/* systemd: READY=1 after the start-up checks, STATUS=, and WATCHDOG=1 only while signing works. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"
#include "obs_dl.h"
#include "p11kms/obs_metrics.h"

#define SD_STATUS_MAX 512

struct obs_sd {
	const struct obs_sd_api *api; /* loaded only under systemd (NOTIFY_SOCKET set) */
	int active;
	int64_t watchdog_ms; /* 0: off */
	int pinging;	     /* the last tick sent WATCHDOG=1 */
	char status[SD_STATUS_MAX];
};

int obs_sd_open(struct obs_sd **out)
{
	struct obs_sd *sd = calloc(1, sizeof(*sd));
	uint64_t usec = 0;
	*out = NULL;
	if (sd == NULL)
		return KMS_ERR_ALLOC;
	const char *ns = getenv("NOTIFY_SOCKET");
	sd->active = ns != NULL && ns[0] != '\0';
	if (sd->active && (sd->api = obs_dl_sd()) == NULL) {
		/* systemd waits for READY=1 that would never come: fail the start instead. */
		free(sd);
		return KMS_ERR_SYSTEM;
	}
	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is this process. */
	if (sd->active && sd->api->watchdog_enabled(0, &usec) > 0 && usec >= 1000)
		sd->watchdog_ms = (int64_t)(usec / 1000);
	sd->pinging = 1;
	*out = sd;
	return KMS_OK;
}

int obs_sd_active(const struct obs_sd *sd)
{
	return sd != NULL && sd->active;
}

int64_t obs_sd_watchdog_ms(const struct obs_sd *sd)
{
	return sd != NULL ? sd->watchdog_ms : 0;
}

static void notify(const struct obs_sd *sd, const char *msg)
{
	int r = sd->api->notify(0, msg);
	if (r < 0)
		kms_log_warn("systemd: sd_notify failed: %s", strerror(-r));
}

/* STATUS=... when it differs from the last one sent (plus extra, e.g. "READY=1\n"). */
static void send_status(struct obs_sd *sd, struct obs_reg *r, const char *extra, int force)
{
	char line[SD_STATUS_MAX], msg[SD_STATUS_MAX + 64];
	obs_reg_status_line(r, line, sizeof(line));
	if (!force && strcmp(line, sd->status) == 0)
		return;
	memcpy(sd->status, line, sizeof(line));
	(void)snprintf(msg, sizeof(msg), "%sSTATUS=%s", extra, line);
	notify(sd, msg);
}

void obs_sd_ready(struct obs_sd *sd, struct obs_reg *r)
{
	if (!obs_sd_active(sd) || r == NULL)
		return;
	send_status(sd, r, "READY=1\n", 1);
	if (sd->watchdog_ms > 0)
		kms_log_info("systemd: ready; watchdog every %lld ms while signing works",
			     (long long)sd->watchdog_ms);
}

void obs_sd_tick(struct obs_sd *sd, struct obs_reg *r)
{
	if (!obs_sd_active(sd) || r == NULL)
		return;
	if (sd->watchdog_ms > 0) {
		int ok = obs_reg_signing_ok(r, obs_mono_ns());
		if (ok)
			notify(sd, "WATCHDOG=1");
		/* Say it once per change: the journal shows why systemd restarted us. */
		if (ok != sd->pinging)
			kms_log(ok ? KMS_LOG_INFO : KMS_LOG_ERR, "systemd watchdog: %s",
				ok ? "signing works again: pinging resumed" :
				     "signing does not work (a token failed or hangs, a state "
				     "failed, or a thread hangs): pings stopped, systemd will "
				     "restart the service at WatchdogSec");
		sd->pinging = ok;
	}
	send_status(sd, r, "", 0);
}

void obs_sd_stopping(struct obs_sd *sd)
{
	if (obs_sd_active(sd))
		notify(sd, "STOPPING=1\nSTATUS=stopping: finishing requests in flight");
}

void obs_sd_free(struct obs_sd *sd)
{
	free(sd);
}
