/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's observability: metrics registry, HTTP endpoints, systemd readiness and watchdog. */
#include <stdlib.h>

#include "daemon_int.h"
#include "p11kms/cmd.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs_metrics.h"
#include "p11kms/slot.h"

/* The supervisor's heartbeat period when nothing asks for a shorter one. */
#define D_TICK_MS 1000

struct d_obs {
	struct obs_reg *reg; /* NULL: neither metrics nor systemd asked for it */
	struct obs_http *http;
	struct obs_sd *sd;
};

/* The record sequence of a state file (0 if it cannot be read: the gauge says unknown). */
static uint64_t state_seq(const char *path)
{
	struct kbuf *img = NULL;
	struct guard_state *st = calloc(1, sizeof(*st));
	uint64_t seq = 0;
	/* The daemon holds the flock; reading a snapshot is what `state show` does too. */
	if (st != NULL && dfile_read(path, 64 * 1024, &img) == KMS_OK &&
	    guard_state_parse_file(kbuf_ptr(img), kbuf_len(img), st, &seq) != KMS_OK)
		seq = 0;
	kbuf_free(img);
	free(st);
	return seq;
}

/*
 * A chain's backup slots (#16) get their series from start, so that an operator sees
 * p11kms_slot_up{slot=<backup>} before the backup ever signs. One that was down at start
 * said so before this registry existed: its state is taken from the slot layer.
 */
static int register_backups(struct obs_reg *reg, const struct d_chain *ch)
{
	for (size_t m = 1; ch->key != NULL && m < slot_count(ch->key); m++) {
		struct slot_member_info mi;
		int r;

		if (slot_member_info(ch->key, m, &mi) != KMS_OK || mi.uri == NULL)
			continue;
		if ((r = obs_reg_add_slot(reg, ch->cc->id, mi.uri)) != KMS_OK)
			return r;
		if (!mi.up)
			obs_reg_status(reg, &(struct obs_status){ .kind = OBS_ST_SLOT_DOWN,
								  .chain_id = ch->cc->id,
								  .slot = mi.uri,
								  .err = mi.err,
								  .ckr = mi.ckr });
	}
	return KMS_OK;
}

static int register_all(struct daemon *d, struct obs_reg *reg)
{
	int r = KMS_OK;
	for (size_t i = 0; r == KMS_OK && i < d->n_chains; i++) {
		struct d_chain *ch = &d->chains[i];
		struct guard_hrs last;
		guard_last(ch->guard, &last);
		r = obs_reg_add_chain(reg, ch->cc->id, last.height, last.round, (int)last.step,
				      state_seq(ch->cc->state_file));
		if (r == KMS_OK && ch->key != NULL)
			r = obs_reg_add_slot(reg, ch->cc->id, slot_describe(ch->key));
		r = r == KMS_OK ? register_backups(reg, ch) : r;
	}
	/* In connection order: the index is the connection's (d_obs_busy). */
	for (size_t i = 0; r == KMS_OK && i < d->n_conns; i++)
		r = obs_reg_add_peer(reg, d->conns[i].chain->cc->id, d->conns[i].peer, NULL);
	return r;
}

int d_obs_start(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	struct d_obs *o = calloc(1, sizeof(*o));
	int r;

	if (o == NULL)
		return CMD_EXIT_FAIL;
	d->obs = o;
	if (obs_sd_open(&o->sd) != KMS_OK)
		return CMD_EXIT_FAIL;
	if (cfg->metrics_listen == NULL && !obs_sd_active(o->sd))
		return CMD_EXIT_OK; /* nothing observes: no sinks, no cost on the signing path */
	if ((r = obs_reg_new(&o->reg)) != KMS_OK || (r = register_all(d, o->reg)) != KMS_OK ||
	    (r = obs_reg_attach(o->reg)) != KMS_OK) {
		kms_log_err("metrics: cannot set up the registry: %s", kms_strerror(r));
		return CMD_EXIT_FAIL;
	}
	if (cfg->metrics_listen == NULL)
		return CMD_EXIT_OK;
	if ((r = obs_http_start(o->reg, cfg->metrics_listen, &o->http)) != KMS_OK) {
		kms_log_err("metrics: cannot serve on %s (%s: metrics.listen)", cfg->metrics_listen,
			    cfg->path);
		return r == KMS_ERR_SYSTEM || r == KMS_ERR_CONFIG ? CMD_EXIT_CONFIG : CMD_EXIT_FAIL;
	}
	kms_log_info("metrics listen=%s port=%u paths=/metrics,/healthz,/readyz",
		     cfg->metrics_listen, (unsigned)obs_http_port(o->http));
	return CMD_EXIT_OK;
}

void d_obs_ready(struct daemon *d)
{
	if (d->obs != NULL)
		obs_sd_ready(d->obs->sd, d->obs->reg);
}

int d_obs_wait_ms(struct daemon *d)
{
	if (d->obs == NULL || d->obs->reg == NULL)
		return -1;
	/* systemd's advice: ping at half the watchdog interval. */
	int64_t wd = obs_sd_watchdog_ms(d->obs->sd) / 2;
	return wd > 0 && wd < D_TICK_MS ? (int)wd : D_TICK_MS;
}

void d_obs_tick(struct daemon *d)
{
	if (d->obs == NULL || d->obs->reg == NULL)
		return;
	obs_reg_tick(d->obs->reg);
	obs_sd_tick(d->obs->sd, d->obs->reg);
}

void d_obs_busy(struct d_conn *c, int busy)
{
	struct d_obs *o = c->d->obs;
	if (o != NULL)
		obs_reg_busy(o->reg, (size_t)(c - c->d->conns), busy);
}

void d_obs_stopping(struct daemon *d)
{
	if (d->obs != NULL)
		obs_sd_stopping(d->obs->sd);
}

void d_obs_free(struct daemon *d)
{
	struct d_obs *o = d->obs;
	if (o == NULL)
		return;
	obs_http_stop(o->http);
	if (o->reg != NULL)
		obs_sink_clear(); /* the connection threads have ended: no event is in flight */
	obs_reg_free(o->reg);
	obs_sd_free(o->sd);
	free(o);
	d->obs = NULL;
}
