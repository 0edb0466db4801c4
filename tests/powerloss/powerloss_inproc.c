/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The power-loss run in process: random crash points in the guard's real code
 * (through the dfile ops table, pl_shim.c), a power cut or not after each
 * (pl_model.c), then a restart that must satisfy the three properties of
 * pl_check.h. A refused state is repaired as an operator would: the one
 * valid record accepted, or (none valid) a height above everything requested.
 *
 *   PL_CYCLES (default 2000), PL_SEED (default: time), PL_BUDGET_S (stop
 *   early once that many seconds have passed; default none).
 * Exit 0 only with 0 violations, and (from 200 cycles on) at least one
 * release and one refused torn record: a run that exercised nothing fails.
 */
/* realpath() is XSI: the state path must be canonical to match /proc/self/fd links. */
#define _XOPEN_SOURCE 700
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "pl_check.h"
#include "pl_model.h"
#include "pl_shim.h"
#include "test_guard_util.h"

#define CHAIN "haqq_11235-1"

struct run {
	char dir[PATH_MAX];
	char path[PATH_MAX];
	struct pl_disk *d;
	uint64_t rng;
	struct pl_check ck;
	struct guard_hrs node; /* where the node is: requests are made from it */
	int64_t max_req_h;     /* the highest height ever requested or imported */
	int repair_named;      /* a log line named `state repair` */
};

static const struct guard_opts any_fs = { .allow_volatile_state = 1 };

static void sink(enum kms_log_level level, const char *line, void *ctx)
{
	struct run *R = ctx;
	if (level <= KMS_LOG_ERR && strstr(line, "p11kms state repair") != NULL)
		R->repair_named = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(struct run *R, uint64_t n)
{
	return pl_rand(&R->rng) % n;
}

/* The next request as a vote or proposal: the same H/R/S varies block and timestamp. */
static void next_msg(struct run *R, struct tg_msg *q)
{
	struct guard_hrs h = pl_next_hrs(&R->rng, &R->node, &R->max_req_h);
	memset(q, 0, sizeof(*q));
	q->h = h.height;
	q->r = h.round;
	q->step = h.step;
	q->block = (int)rnd(R, 3);
	if (q->step == GUARD_STEP_PROPOSE) {
		q->block = 1 + (int)rnd(R, 2);
		q->pol = -1;
	}
	q->ts_s = 1700000000 + q->h;
	q->ts_n = (int32_t)rnd(R, 2);
	q->chain = CHAIN;
}

/* One request through the guard; a release is recorded with the message it signs. */
static void request(struct run *R, struct guard *g, int *released)
{
	struct tg_msg q;
	uint8_t sb[512];
	struct guard_result res;
	next_msg(R, &q);
	size_t n = tg_sign_bytes(&q, sb, sizeof(sb));
	struct guard_request req = { { q.h, (int32_t)q.r, q.step }, sb, n };
	*released = guard_sign(g, &req, tg_fake_sign, NULL, &res) == KMS_OK;
	if (!*released)
		return;
	if (res.timestamp_replaced) { /* the signature covers the stored timestamp */
		q.ts_s = res.ts_seconds;
		q.ts_n = res.ts_nanos;
		n = tg_sign_bytes(&q, sb, sizeof(sb));
	}
	(void)pl_check_release(&R->ck, &req.hrs, sb, n);
}

/* A `p11kms start` and its requests, maybe crashing at the chosen point. */
static enum pl_point process_signer(struct run *R, enum pl_point want)
{
	struct guard *g = NULL;
	int released;
	if (guard_open_opts(R->path, CHAIN, &any_fs, &g) != KMS_OK) {
		pl_violation(&R->ck, "a checked state did not open for signing");
		return PL_PT_IDLE;
	}
	if (want == PL_PT_REPERSIST_MID || want == PL_PT_REPERSIST_PRESYNC)
		pl_shim_arm(want == PL_PT_REPERSIST_MID ? PL_EV_WRITE : PL_EV_SYNC,
			    1 + (unsigned)rnd(R, 2),
			    want == PL_PT_REPERSIST_MID ? PL_FAULT_CRASH_MID :
							  PL_FAULT_CRASH_BEFORE);
	if (guard_make_durable(g) != KMS_OK) {
		if (!pl_shim_dead())
			pl_violation(&R->ck, "the re-persist failed with no fault injected");
		guard_free(g);
		return want;
	}
	unsigned at = 1 + (unsigned)rnd(R, 4);
	if (want == PL_PT_SIGN_MID)
		pl_shim_arm(PL_EV_WRITE, at, PL_FAULT_CRASH_MID);
	else if (want == PL_PT_SIGN_PRESYNC)
		pl_shim_arm(PL_EV_SYNC, at, PL_FAULT_CRASH_BEFORE);
	else if (want == PL_PT_EIO)
		pl_shim_arm(PL_EV_SYNC, at, PL_FAULT_EIO);
	int n = 1 + (int)rnd(R, 16), eio_seen = 0;
	for (int i = 0; i < n && !pl_shim_dead(); i++) {
		request(R, g, &released);
		if (pl_shim_eio_fired() && !eio_seen) {
			eio_seen = 1;
			if (released || !guard_failed(g))
				pl_violation(&R->ck,
					     "fdatasync EIO: the guard did not fail closed");
			R->ck.eio_stops++;
		} else if (eio_seen && released) {
			pl_violation(&R->ck, "a signature left after an fdatasync EIO");
		}
	}
	guard_free(g);
	return pl_shim_dead() ? want : eio_seen ? PL_PT_EIO : PL_PT_IDLE;
}

static int import_at(struct run *R, int64_t h, int force)
{
	char js[128];
	int n = snprintf(js, sizeof(js), "{\"height\":\"%lld\",\"round\":0,\"step\":0}",
			 (long long)h);
	if (h > R->max_req_h)
		R->max_req_h = h;
	return guard_state_import(R->path, CHAIN, (const uint8_t *)js, (size_t)n, GUARD_FMT_AUTO,
				  force);
}

/* `p11kms state import` (over the state, or creating it), maybe crashing. */
static enum pl_point process_import(struct run *R, enum pl_point want)
{
	int64_t h = R->max_req_h + 1 + (int64_t)rnd(R, 3);
	if (want == PL_PT_IMPORT_NEW) {
		/* the operator removes the state and imports one above every height asked for */
		if (unlink(R->path) != 0 || pl_reset(R->d) != 0)
			pl_violation(&R->ck, "could not remove the state to re-create it");
		static const enum pl_event ev[] = { PL_EV_WRITE, PL_EV_SYNC, PL_EV_LINK,
						    PL_EV_DIRSYNC };
		enum pl_event e = ev[rnd(R, 4)];
		pl_shim_arm(e, 1, e == PL_EV_WRITE ? PL_FAULT_CRASH_MID : PL_FAULT_CRASH_BEFORE);
		(void)import_at(R, h, 0);
		return pl_shim_dead() ? want : PL_PT_IDLE;
	}
	pl_shim_arm(want == PL_PT_IMPORT_MID ? PL_EV_WRITE : PL_EV_SYNC, 1,
		    want == PL_PT_IMPORT_MID ? PL_FAULT_CRASH_MID : PL_FAULT_CRASH_BEFORE);
	(void)import_at(R, h, 1);
	return pl_shim_dead() ? want : PL_PT_IDLE;
}

/* The operator's repair of a refused state (what `state repair` offers). */
static int repair(struct run *R)
{
	struct guard_repair_view v;
	if (guard_state_repair_view(R->path, &v) != KMS_OK)
		return -1;
	if (v.accept_slot >= 0) {
		R->ck.repaired_accept++;
		return guard_state_repair_accept(R->path, CHAIN, v.rec[v.accept_slot].seq);
	}
	/* nothing valid: the chain's height, above everything ever asked for */
	int64_t h = (v.floor_height > R->max_req_h ? v.floor_height : R->max_req_h) + 1;
	R->max_req_h = h;
	R->ck.repaired_height++;
	return guard_state_repair_height(R->path, CHAIN, h);
}

/* After the kill (and the cut): the restart, with the three properties. */
static int restart(struct run *R, enum pl_point pt, const struct pl_cut_report *rep)
{
	struct guard_hrs last;
	R->repair_named = 0;
	int r = guard_state_check(R->path, CHAIN, &any_fs, &last);
	if (r == KMS_ERR_NOT_FOUND) {
		if (pt != PL_PT_IMPORT_NEW || rep->exists)
			pl_violation(&R->ck, "the state vanished after %s", pl_point_name(pt));
		R->ck.reimported++;
		(void)import_at(R, R->max_req_h + 1, 0);
		r = guard_state_check(R->path, CHAIN, &any_fs, &last);
	}
	if (rep->outcome == PL_OUT_TORN && r == KMS_OK)
		pl_violation(&R->ck, "a torn record was accepted after %s", pl_point_name(pt));
	if (r == KMS_ERR_FORMAT) {
		R->ck.refused++;
		if (!R->repair_named)
			pl_violation(&R->ck, "refused without naming `p11kms state repair`");
		if (rep->outcome != PL_OUT_TORN)
			pl_violation(&R->ck, "refused though the model tore nothing (%s, %s)",
				     pl_point_name(pt), pl_outcome_name(rep->outcome));
		if (repair(R) != KMS_OK)
			pl_violation(&R->ck, "the operator's repair failed");
		r = guard_state_check(R->path, CHAIN, &any_fs, &last);
	}
	if (r != KMS_OK) {
		pl_violation(&R->ck, "the state does not open after %s: %s", pl_point_name(pt),
			     kms_strerror(r));
		return -1;
	}
	if (last.height > R->node.height)
		R->node = last; /* an import or repair moved the state: the chain is there too */
	return pl_check_not_behind(&R->ck, &last, pl_point_name(pt));
}

static int cycle(struct run *R)
{
	enum pl_point want = pl_pick_point(&R->rng), pt;
	struct pl_cut_report rep;
	int cut;
	pt = pl_point_is_import(want) ? process_import(R, want) : process_signer(R, want);
	pl_shim_restart(); /* the process is gone; its page cache stays */
	if (pl_cut_or_kill(R->d, &R->rng, &cut, &rep) != 0) {
		pl_violation(&R->ck, "the model could not apply the cut");
		return -1;
	}
	pl_check_count(&R->ck, pt, cut, rep.outcome);
	R->ck.cycles++;
	return restart(R, pt, &rep);
}

static int setup(struct run *R)
{
	const char *t = getenv("TMPDIR");
	char tmpl[PATH_MAX];
	snprintf(tmpl, sizeof(tmpl), "%s/p11kms-powerloss-XXXXXX", t && *t ? t : "/tmp");
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, R->dir) == NULL)
		return -1;
	int n = snprintf(R->path, sizeof(R->path), "%s/state.bin", R->dir);
	if (n < 0 || (size_t)n >= sizeof(R->path))
		return -1;
	if (guard_state_init(R->path, CHAIN, 0, 0, GUARD_STEP_NONE) != KMS_OK)
		return -1;
	R->d = pl_new(R->path);
	return R->d != NULL ? 0 : -1;
}

static void cleanup(struct run *R)
{
	char cmd[PATH_MAX + 16];
	pl_shim_uninstall();
	pl_free(R->d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", R->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", R->dir);
}

int main(void)
{
	static struct run R;
	const char *cy = getenv("PL_CYCLES"), *sd = getenv("PL_SEED"), *bu = getenv("PL_BUDGET_S");
	unsigned long cycles = cy ? strtoul(cy, NULL, 10) : 2000;
	double budget = bu ? strtod(bu, NULL) : 0;
	uint64_t seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	R.rng = seed;
	kms_log_set_quiet(1);
	kms_log_set_sink(sink, &R);
	pl_check_init(&R.ck);
	if (setup(&R) != 0) {
		fprintf(stderr, "powerloss: setup failed\n");
		return 1;
	}
	pl_shim_install(R.d, &R.rng);
	double t0 = now_s();
	while (R.ck.cycles < cycles && !(budget > 0 && now_s() - t0 > budget))
		if (cycle(&R) != 0 && R.ck.violations > 20)
			break;
	R.ck.seconds = now_s() - t0;
	pl_check_report(&R.ck, "in process, dfile ops table", seed);
	int bad = R.ck.violations != 0;
	if (!bad && R.ck.cycles >= 200 && (R.ck.releases == 0 || R.ck.refused == 0)) {
		fprintf(stderr,
			"powerloss: no release or no refused torn record: proved nothing\n");
		bad = 1;
	}
	pl_check_free(&R.ck);
	cleanup(&R);
	return bad;
}
