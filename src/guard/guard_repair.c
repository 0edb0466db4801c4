/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `state repair`: a state file that start refuses because a record is invalid
 * (torn by a crash or power cut, or damaged later) or because both carry one
 * sequence. Only the operator decides, with an explicit choice: keep the valid
 * record, or start over at a height above everything either record names.
 */
#include "p11kms/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard_int.h"
#include "p11kms/kms_log.h"

static void fill_view(const struct guard_file *gf, struct guard_repair_view *v)
{
	memset(v, 0, sizeof(*v));
	v->accept_slot = -1;
	for (int i = 0; i < 2; i++) {
		const struct guard_slot_info *si = &gf->slot[i];
		struct guard_record_view *r = &v->rec[i];
		r->valid = si->ok;
		r->readable = si->readable;
		r->seq = si->seq;
		r->hrs = si->hrs;
		snprintf(r->why, sizeof(r->why), "%s", si->why != NULL ? si->why : "");
		if (si->readable && si->hrs.height > v->floor_height)
			v->floor_height = si->hrs.height;
		v->unreadable += !si->readable;
	}
	v->healthy = v->rec[0].valid && v->rec[1].valid && v->rec[0].seq != v->rec[1].seq;
	if (v->rec[0].valid != v->rec[1].valid) {
		v->accept_slot = v->rec[0].valid ? 0 : 1;
		v->rec[v->accept_slot].has_sig = gf->rec.has_sig;
		snprintf(v->chain_id, sizeof(v->chain_id), "%s", gf->rec.chain_id);
	} else if (v->rec[0].valid) {
		snprintf(v->chain_id, sizeof(v->chain_id), "%s", gf->rec.chain_id);
	}
}

int guard_state_repair_view(const char *path, struct guard_repair_view *out)
{
	struct guard_file *gf = NULL;
	memset(out, 0, sizeof(*out));
	int r = guard_file_open(path, NULL, GUARD_LOAD_REPAIR, &gf);
	if (r == KMS_OK)
		fill_view(gf, out);
	guard_file_close(gf);
	return r;
}

/* Writes rec into both slots: the one start doubts first, then the other (seq base+1, +2). */
static int write_both(struct guard_file *gf, struct guard_rec *rec, uint64_t base)
{
	for (uint64_t i = 1; i <= 2; i++) {
		rec->seq = base + i;
		int r = guard_file_write(gf, rec);
		if (r != KMS_OK)
			return r;
	}
	return KMS_OK;
}

/* Opens path for a repair of chain_id: refuses a healthy file and another chain's. */
static int open_for_repair(const char *path, const char *chain_id, struct guard_file **gf,
			   struct guard_repair_view *v)
{
	int r = guard_file_open(path, NULL, GUARD_LOAD_REPAIR, gf);
	if (r != KMS_OK)
		return r;
	fill_view(*gf, v);
	if (v->healthy) {
		kms_log_err("state repair refused path=%s: both records are valid, nothing to "
			    "repair (`p11kms start` accepts this state)",
			    path);
		return KMS_ERR_REFUSED;
	}
	if (v->chain_id[0] != '\0' && strcmp(v->chain_id, chain_id) != 0) {
		kms_log_err("state repair refused path=%s: its valid record belongs to chain %s, "
			    "not %s",
			    path, v->chain_id, chain_id);
		return KMS_ERR_REFUSED;
	}
	return KMS_OK;
}

/* The operator's choice, checked against what the file holds: the record to write. */
struct choice {
	int accept; /* 1: keep the valid record seq; 0: start over at height */
	uint64_t seq;
	int64_t height;
};

static int choose(const char *path, const char *chain_id, const struct guard_file *gf,
		  const struct guard_repair_view *v, const struct choice *c, struct guard_rec *rec,
		  uint64_t *base)
{
	if (c->accept) {
		if (v->accept_slot < 0 || v->rec[v->accept_slot].seq != c->seq) {
			kms_log_err("state repair refused path=%s: sequence %llu is not the one "
				    "valid record%s",
				    path, (unsigned long long)c->seq,
				    v->accept_slot < 0 ? " (there is none to keep: give a height)" :
							 "");
			return KMS_ERR_REFUSED;
		}
		*rec = gf->rec;
		*base = c->seq;
		return KMS_OK;
	}
	if (strlen(chain_id) > GUARD_MAX_CHAIN_ID || c->height <= v->floor_height ||
	    c->height < 1) {
		kms_log_err("state repair refused path=%s: height %lld must be above %lld, the "
			    "highest height either record names (verified or not)",
			    path, (long long)c->height, (long long)v->floor_height);
		return KMS_ERR_REFUSED;
	}
	memset(rec, 0, sizeof(*rec));
	rec->hrs = (struct guard_hrs){ c->height, 0, GUARD_STEP_NONE };
	rec->written_at = (int64_t)time(NULL);
	memcpy(rec->chain_id, chain_id, strlen(chain_id) + 1);
	*base = 0;
	for (int i = 0; i < 2; i++)
		if (v->rec[i].valid && v->rec[i].seq > *base)
			*base = v->rec[i].seq;
	return KMS_OK;
}

static int repair(const char *path, const char *chain_id, const struct choice *c)
{
	struct guard_file *gf = NULL;
	struct guard_repair_view v;
	uint64_t base = 0;
	struct guard_rec *rec = calloc(1, sizeof(*rec));
	int r = rec == NULL		       ? KMS_ERR_ALLOC :
		chain_id == NULL || !*chain_id ? KMS_ERR_CONFIG :
						 open_for_repair(path, chain_id, &gf, &v);
	if (r == KMS_OK && (r = choose(path, chain_id, gf, &v, c, rec, &base)) == KMS_OK &&
	    (r = write_both(gf, rec, base)) == KMS_OK)
		kms_log_warn("double-sign state repaired path=%s chain=%s: the operator %s "
			     "(h/r/s %lld/%d/%d); both slots now hold it",
			     path, chain_id, c->accept ? "kept the valid record" : "set a height",
			     (long long)rec->hrs.height, rec->hrs.round, (int)rec->hrs.step);
	guard_file_close(gf);
	if (rec != NULL)
		kms_wipe(rec, sizeof(*rec));
	free(rec);
	return r;
}

int guard_state_repair_accept(const char *path, const char *chain_id, uint64_t seq)
{
	return repair(path, chain_id, &(struct choice){ .accept = 1, .seq = seq });
}

int guard_state_repair_height(const char *path, const char *chain_id, int64_t height)
{
	return repair(path, chain_id, &(struct choice){ .accept = 0, .height = height });
}
