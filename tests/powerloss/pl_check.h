/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the power-loss runs check and report (in process and across processes):
 *   1. the state is never behind a signature that was released;
 *   2. nothing conflicting is ever released: one H/R/S, one signed message;
 *   3. a torn newest record is refused (naming `state repair`), never accepted.
 * plus the tallies: cycles per crash point and per outcome of the cut.
 */
#ifndef P11KMS_PL_CHECK_H
#define P11KMS_PL_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/guard.h"
#include "pl_model.h"

/* Where a cycle's process died (or was killed). */
enum pl_point {
	PL_PT_SIGN_MID,		 /* inside the pwrite of a signature's record */
	PL_PT_SIGN_PRESYNC,	 /* between that pwrite and its fdatasync */
	PL_PT_REPERSIST_MID,	 /* inside a pwrite of the start-up re-persist */
	PL_PT_REPERSIST_PRESYNC, /* between a re-persist pwrite and its fdatasync */
	PL_PT_IMPORT_MID,	 /* inside the pwrite of `state import --force` */
	PL_PT_IMPORT_PRESYNC,	 /* between it and its fdatasync */
	PL_PT_IMPORT_NEW,	 /* creating a state by import: temp write, sync, link, dir sync */
	PL_PT_EIO,		 /* an fdatasync failed with EIO (then killed later) */
	PL_PT_IDLE,		 /* killed between requests: nothing pending */
	PL_PT_COUNT,
};

const char *pl_point_name(enum pl_point p);

/* One cut's outcome, or no cut at all (a kill: the page cache survives). */
#define PL_OUT_NOCUT PL_OUT_COUNT

struct pl_release {
	int64_t h;
	int32_t r;
	int32_t s; /* 0: empty slot */
	uint8_t hash[32];
};

struct pl_check {
	/* releases by H/R/S (open addressing) */
	struct pl_release *tab;
	size_t cap, n;
	struct guard_hrs max_released;
	int any_released;
	size_t releases, repeats;
	/* tallies */
	unsigned long cycles;
	unsigned long at[PL_PT_COUNT][PL_OUT_NOCUT + 1];
	unsigned long refused, repaired_accept, repaired_height, reimported, eio_stops;
	unsigned long violations;
	char first_violation[512];
	double seconds;
};

void pl_check_init(struct pl_check *c);
void pl_check_free(struct pl_check *c);
/* A signature left: msg is what it signs. Returns -1 (and a violation) on a conflict. */
int pl_check_release(struct pl_check *c, const struct guard_hrs *h, const uint8_t *msg, size_t len);
/* Property 1: the state found after a restart. Returns -1 (violation) if behind. */
int pl_check_not_behind(struct pl_check *c, const struct guard_hrs *state, const char *when);
/* Records a violation (printf-style); the first one is kept for the report. */
void pl_violation(struct pl_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_check_count(struct pl_check *c, enum pl_point pt, int cut, enum pl_outcome o);
/* ---- what both runs draw at random ---- */

/* The crash point of the next cycle (signing gets the largest share; every point some). */
enum pl_point pl_pick_point(uint64_t *rng);
/* 1 for the points a `state import` process hits, 0 for a `start`. */
int pl_point_is_import(enum pl_point p);
/*
 * The node's next request, from where the chain is (*at, moved when the
 * request goes forward): 60 % forward (next step, round or height), 28 % the
 * same H/R/S again (the caller varies block and timestamp), 12 % backwards.
 * *max_h: the highest height ever requested.
 */
struct guard_hrs pl_next_hrs(uint64_t *rng, struct guard_hrs *at, int64_t *max_h);
/* After the process: a power cut (3 in 4, of a random kind) or only the kill. */
int pl_cut_or_kill(struct pl_disk *d, uint64_t *rng, int *cut, struct pl_cut_report *rep);

/* Prints the summary table to stdout; name: "in-process" / "p11kms binary". */
void pl_check_report(const struct pl_check *c, const char *name, uint64_t seed);

#endif
