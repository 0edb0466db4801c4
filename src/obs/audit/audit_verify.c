/* SPDX-License-Identifier: Apache-2.0 */
/* The audit verifier: the hash chain, files in order, checkpoint signatures, gaps (fuzzed). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "p11kms/enc.h"
#include "p11kms/kcrypto.h"

#define MAX_CHAINS 1024	    /* distinct chain ids tracked for gaps */
#define MAX_INTERVALS 65536 /* fragments of one chain's guard sequence in one run */
#define LOOKAHEAD 1000000   /* frames searched for a record that is out of place */

/* A closed range of guard sequence numbers. */
struct iv {
	uint64_t lo, hi;
};

/* One chain's guard sequence within the current run (start record to start record). */
struct vchain {
	char id[65];
	int has_base;
	uint64_t base; /* the state's sequence at the run's start */
	unsigned n_conns;
	struct iv *seen; /* recorded new signatures and note ranges, sorted, merged */
	size_t n_seen, cap_seen;
	int overflow;
	int has_any;
	uint64_t max_any; /* largest guard sequence any record of the run names */
	int has_rec;
	uint64_t max_rec; /* largest recorded new signature */
};

struct audit_verify {
	struct audit_verify_opts o;
	struct audit_report rep;
	int damaged;
	int started; /* a header has been read */
	uint64_t next_seq;
	uint8_t last_hash[32];
	uint8_t log_id[AUDIT_LOG_ID_LEN];
	uint64_t file_index;
	uint8_t key_alg;
	uint8_t key[32];
	uint32_t batch_records, queue_cap;
	size_t torn; /* incomplete bytes at the end of the last file read */
	char name[200], prev_name[200];
	uint8_t last_type, last_reason;
	uint64_t run_no;
	int run_started; /* the current run began with a start record in the set */
	struct vchain *chains;
	size_t n_chains;
	int anchor_seen;
	uint64_t final_missing; /* new signatures the last, unclean run lacks */
};

static void vnote(struct audit_verify *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void vnote(struct audit_verify *v, const char *fmt, ...)
{
	char line[700];
	va_list ap;
	if (v->o.note == NULL)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	v->o.note(v->o.note_ctx, line);
}

/* Records the first damage; the rest of the set is not read. */
static int damage(struct audit_verify *v, enum audit_damage d, uint64_t seq, size_t off,
		  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int damage(struct audit_verify *v, enum audit_damage d, uint64_t seq, size_t off,
		  const char *fmt, ...)
{
	va_list ap;
	if (v->damaged)
		return 1;
	v->damaged = 1;
	v->rep.damage = d;
	(void)snprintf(v->rep.where, sizeof(v->rep.where), "record #%llu (file %s, offset %zu)",
		       (unsigned long long)seq, v->name, off);
	va_start(ap, fmt);
	(void)vsnprintf(v->rep.what, sizeof(v->rep.what), fmt, ap);
	va_end(ap);
	return 1;
}

static void hex8(const uint8_t *p, char out[static 17])
{
	if (enc_hex_encode(p, 8, out, 17) != KMS_OK)
		out[0] = '\0';
}

/* ---- guard sequence bookkeeping ------------------------------------------------------- */

static struct vchain *chain_get(struct audit_verify *v, const struct audit_str *id)
{
	if (id->n == 0 || id->n > 64)
		return NULL;
	for (size_t i = 0; i < v->n_chains; i++)
		if (strlen(v->chains[i].id) == id->n && memcmp(v->chains[i].id, id->p, id->n) == 0)
			return &v->chains[i];
	if (v->n_chains == MAX_CHAINS)
		return NULL;
	if (v->n_chains % 16 == 0) {
		struct vchain *nc = realloc(v->chains, (v->n_chains + 16) * sizeof(*nc));
		if (nc == NULL)
			return NULL;
		v->chains = nc;
	}
	struct vchain *c = &v->chains[v->n_chains++];
	memset(c, 0, sizeof(*c));
	memcpy(c->id, id->p, id->n);
	return c;
}

/* 1 when a range ending at a_hi and one starting at b_lo overlap or touch. */
static int touch(uint64_t a_hi, uint64_t b_lo)
{
	return b_lo <= a_hi || b_lo - a_hi == 1;
}

/* Adds [lo, hi] to the chain's seen ranges, merging neighbours. */
static void seen_add(struct vchain *c, uint64_t lo, uint64_t hi)
{
	size_t i = 0, j;
	if (c->overflow || hi < lo)
		return;
	while (i < c->n_seen && !touch(c->seen[i].hi, lo))
		i++;
	if (i < c->n_seen && touch(hi, c->seen[i].lo)) {
		uint64_t nlo = lo < c->seen[i].lo ? lo : c->seen[i].lo, nhi = hi;
		for (j = i; j < c->n_seen && touch(nhi, c->seen[j].lo); j++)
			if (c->seen[j].hi > nhi)
				nhi = c->seen[j].hi;
		c->seen[i].lo = nlo;
		c->seen[i].hi = nhi;
		memmove(&c->seen[i + 1], &c->seen[j], (c->n_seen - j) * sizeof(struct iv));
		c->n_seen -= j - i - 1;
		return;
	}
	if (c->n_seen == c->cap_seen) {
		size_t nc = c->cap_seen ? c->cap_seen * 2 : 8;
		struct iv *ns = nc <= MAX_INTERVALS ? realloc(c->seen, nc * sizeof(*ns)) : NULL;
		if (ns == NULL) {
			c->overflow = 1;
			return;
		}
		c->seen = ns;
		c->cap_seen = nc;
	}
	memmove(&c->seen[i + 1], &c->seen[i], (c->n_seen - i) * sizeof(struct iv));
	c->seen[i].lo = lo;
	c->seen[i].hi = hi;
	c->n_seen++;
}

/* Holes of [lo, hi] not in seen, split at cut: counts below/above it and the first hole. */
struct holes {
	uint64_t below, above;
	int has_first;
	uint64_t first_lo, first_hi;
	int has_above;
	uint64_t above_lo, above_hi;
};

static void hole_range(struct holes *h, uint64_t a, uint64_t b, uint64_t cut)
{
	if (!h->has_first) {
		h->has_first = 1;
		h->first_lo = a;
		h->first_hi = b;
	}
	if (a <= cut)
		h->below += (b < cut ? b : cut) - a + 1;
	if (b > cut) {
		uint64_t s = a > cut ? a : cut + 1;
		h->above += b - s + 1;
		if (!h->has_above) {
			h->has_above = 1;
			h->above_lo = s;
		}
		h->above_hi = b;
	}
}

static void find_holes(const struct vchain *c, uint64_t lo, uint64_t hi, uint64_t cut,
		       struct holes *h)
{
	uint64_t at = lo;
	memset(h, 0, sizeof(*h));
	if (hi < lo)
		return;
	for (size_t i = 0; i < c->n_seen && at <= hi; i++) {
		if (c->seen[i].hi < at)
			continue;
		if (c->seen[i].lo > at)
			hole_range(h, at, c->seen[i].lo - 1 < hi ? c->seen[i].lo - 1 : hi, cut);
		if (c->seen[i].hi >= hi)
			return;
		at = c->seen[i].hi + 1;
	}
	if (at <= hi)
		hole_range(h, at, hi, cut);
}

/* The state sequence opts gives for chain id, or -1. */
static int state_seq(const struct audit_verify *v, const char *id, uint64_t *seq)
{
	for (size_t i = 0; i < v->o.n_state; i++)
		if (v->o.state[i].chain_id != NULL && strcmp(v->o.state[i].chain_id, id) == 0) {
			*seq = v->o.state[i].seq;
			return 0;
		}
	return -1;
}

/*
 * Ends a run for one chain: every new signature between the run's start
 * sequence and the next one known (the next run's start, or the state file's
 * for the last run) must be in the log or in a note (dropped, lost), except
 * after a crash: then the records not yet written are missing. Those are the
 * newest ones (above the highest recorded), plus at most one per other
 * connection anywhere below it (a decision whose reply was still being
 * written when others went on). How many: what the queue held and what the
 * writer had taken but not written (a writer that lags on a loaded machine
 * can hold that many), and after a power loss what it had written since its
 * last sync (under batch_records + one take): crash_bound() below. The
 * last run of a set that a daemon is still writing is only described; the
 * last run of one that ended uncleanly is judged by end_checks (truncated),
 * with the count found here.
 */
static uint64_t crash_bound(const struct audit_verify *v, uint64_t slack)
{
	return (uint64_t)v->queue_cap + AUDIT_TAKE_MAX + /* queued, or taken and not written */
	       (uint64_t)v->batch_records + AUDIT_TAKE_MAX + /* written, not yet synced */
	       slack;
}

static void end_chain_run(struct audit_verify *v, struct vchain *c, int has_next, uint64_t next,
			  int clean, int final)
{
	uint64_t slack = c->n_conns > 0 ? c->n_conns - 1 : 0;
	struct holes h;
	if (c->overflow) {
		vnote(v, "chain %s, run %llu: too fragmented to check against the state", c->id,
		      (unsigned long long)v->run_no);
		return;
	}
	if (!c->has_base && c->n_seen == 0)
		return;
	uint64_t lo = c->has_base ? c->base + 1 : c->seen[0].lo;
	uint64_t rec_hi = c->has_any && c->max_any >= lo ? c->max_any : lo - 1, hi = rec_hi;
	if (has_next && next < rec_hi && !(final && v->o.live))
		vnote(v,
		      "chain %s: the state went back to sequence %llu after run %llu (it was "
		      "re-initialised or replaced)",
		      c->id, (unsigned long long)next, (unsigned long long)v->run_no);
	else if (has_next && next > hi)
		hi = next;
	uint64_t top = c->has_rec ? c->max_rec : lo - 1;
	find_holes(c, lo, hi, top, &h);
	uint64_t total = h.below + h.above;
	if (total == 0)
		return;
	if (final && v->o.live) {
		vnote(v,
		      "chain %s: %llu new signatures are not in the log yet (guard sequence "
		      "%llu..%llu first): the running daemon has not written them",
		      c->id, (unsigned long long)total, (unsigned long long)h.first_lo,
		      (unsigned long long)h.first_hi);
		return;
	}
	if (final && !clean) {
		v->final_missing += total;
		return;
	}
	uint64_t bound = crash_bound(v, slack);
	if (clean || h.below > slack || total > bound) {
		(void)damage(v, AUDIT_MISSING, v->rep.last_seq, 0,
			     "chain %s: %llu new signatures (guard sequence %llu..%llu first) are "
			     "not in the log; %s",
			     c->id, (unsigned long long)total, (unsigned long long)h.first_lo,
			     (unsigned long long)h.first_hi,
			     clean ? "the run before ended cleanly, so they were made without this "
				     "audit log (another signer, `state import`) or records were "
				     "deleted" :
				     "more than a crash loses");
		return;
	}
	v->rep.gaps_explained++;
	vnote(v,
	      "chain %s: run %llu ended without a clean stop: %llu new signatures (guard "
	      "sequence %llu..%llu first) were not written; a crash loses at most %llu "
	      "(queue %u + batch_records %u + %u being written + %llu other connections "
	      "in flight)",
	      c->id, (unsigned long long)v->run_no, (unsigned long long)total,
	      (unsigned long long)h.first_lo, (unsigned long long)h.first_hi,
	      (unsigned long long)bound, v->queue_cap, v->batch_records, 2 * AUDIT_TAKE_MAX,
	      (unsigned long long)slack);
}

static void reset_chain_run(struct vchain *c)
{
	c->has_base = 0;
	c->n_seen = 0;
	c->overflow = 0;
	c->has_any = 0;
	c->has_rec = 0;
}

/* The run that ends here: before a start record (st), or at the end of the set (st NULL). */
static void end_run(struct audit_verify *v, const struct audit_start *st, int clean)
{
	for (size_t i = 0; i < v->n_chains && !v->damaged; i++) {
		struct vchain *c = &v->chains[i];
		uint64_t next = 0;
		int has_next = 0;
		if (st != NULL) {
			struct audit_start_chain sc;
			for (uint32_t k = 0; k < st->n_chains && !has_next; k++) {
				audit_start_chain_at(st, k, &sc);
				if (sc.chain_id.n == strlen(c->id) &&
				    memcmp(sc.chain_id.p, c->id, sc.chain_id.n) == 0) {
					has_next = 1;
					next = sc.guard_seq;
				}
			}
		} else {
			has_next = state_seq(v, c->id, &next) == 0;
		}
		end_chain_run(v, c, has_next, next, clean, st == NULL);
	}
	for (size_t i = 0; i < v->n_chains; i++)
		reset_chain_run(&v->chains[i]);
}

/* ---- records --------------------------------------------------------------------------- */

static void on_decision(struct audit_verify *v, const struct audit_rec *rec)
{
	const struct audit_dec *d = &rec->u.dec;
	switch (d->decision) {
	case OBS_DEC_SIGNED:
		v->rep.signed_++;
		break;
	case OBS_DEC_STORED:
		v->rep.stored++;
		break;
	case OBS_DEC_REFUSED:
		v->rep.refused++;
		break;
	default:
		v->rep.other++;
	}
	struct vchain *c = d->guard_seq > 0 ? chain_get(v, &d->chain_id) : NULL;
	if (c == NULL)
		return;
	if (!c->has_any || d->guard_seq > c->max_any)
		c->max_any = d->guard_seq;
	c->has_any = 1;
	if (d->decision != OBS_DEC_SIGNED)
		return;
	if (!c->has_rec || d->guard_seq > c->max_rec)
		c->max_rec = d->guard_seq;
	c->has_rec = 1;
	seen_add(c, d->guard_seq, d->guard_seq);
}

static void on_note(struct audit_verify *v, const struct audit_rec *rec)
{
	const struct audit_note *nt = &rec->u.note;
	struct audit_note_chain nc;
	char t0[40], t1[40];
	audit_fmt_time(nt->first_ns, t0);
	audit_fmt_time(nt->last_ns, t1);
	if (nt->kind == AUDIT_NOTE_DROPPED)
		v->rep.dropped += nt->total;
	else
		v->rep.lost += nt->total;
	vnote(v, "record #%llu: %llu decisions (%llu new signatures) were not recorded %s %s .. %s",
	      (unsigned long long)rec->seq, (unsigned long long)nt->total,
	      (unsigned long long)nt->n_signed,
	      nt->kind == AUDIT_NOTE_DROPPED ? "because the queue was full," :
					       "because writing the log failed,",
	      t0, t1);
	for (uint32_t i = 0; i < nt->n_chains; i++) {
		audit_note_chain_at(nt, i, &nc);
		struct vchain *c = chain_get(v, &nc.chain_id);
		if (c == NULL)
			continue;
		seen_add(c, nc.first_seq, nc.last_seq);
		if (!c->has_any || nc.last_seq > c->max_any)
			c->max_any = nc.last_seq;
		c->has_any = 1;
		vnote(v, "  chain %s: %llu new signatures, guard sequence %llu..%llu", c->id,
		      (unsigned long long)nc.n_signed, (unsigned long long)nc.first_seq,
		      (unsigned long long)nc.last_seq);
	}
}

static void on_start(struct audit_verify *v, const struct audit_rec *rec)
{
	const struct audit_start *st = &rec->u.st;
	struct audit_start_chain sc;
	int clean = v->last_type == AUDIT_REC_CHECKPOINT && v->last_reason == AUDIT_CP_SHUTDOWN;
	if (v->run_no > 0 || v->n_chains > 0)
		end_run(v, st, clean);
	if (v->damaged)
		return;
	v->run_no++;
	v->run_started = 1;
	v->rep.starts++;
	for (uint32_t i = 0; i < st->n_chains; i++) {
		audit_start_chain_at(st, i, &sc);
		struct vchain *c = chain_get(v, &sc.chain_id);
		if (c == NULL)
			continue;
		c->has_base = 1;
		c->base = sc.guard_seq;
		c->n_conns = sc.n_conns;
	}
}

static int on_checkpoint(struct audit_verify *v, const struct audit_rec *rec, size_t off)
{
	const struct audit_cp *cp = &rec->u.cp;
	uint8_t msg[AUDIT_BODY_MAX + 64];
	size_t mlen = 0;
	char k[17];
	v->rep.checkpoints++;
	if (v->key_alg == 0) {
		if (rec->flags & (AUDIT_F_CP_SIGNED | AUDIT_F_CP_SIGN_FAILED))
			return damage(v, AUDIT_CHECKPOINT_SIG, rec->seq, off,
				      "the checkpoint claims a signature, but its file's header "
				      "has no checkpoint key");
		if (v->o.pin_key != NULL)
			return damage(v, AUDIT_CHECKPOINT_SIG, rec->seq, off,
				      "the checkpoint is not signed, but a key is pinned");
		return 0;
	}
	if (rec->flags & AUDIT_F_CP_SIGN_FAILED) {
		vnote(v,
		      "record #%llu: this checkpoint could not be signed when it was written "
		      "(a token error); the next signed checkpoint covers it",
		      (unsigned long long)rec->seq);
		return 0;
	}
	if (!(rec->flags & AUDIT_F_CP_SIGNED))
		return damage(v, AUDIT_CHECKPOINT_SIG, rec->seq, off,
			      "the checkpoint is not signed, though its file's header names a key");
	hex8(v->key, k);
	if (v->o.pin_key != NULL && memcmp(v->o.pin_key, v->key, 32) != 0)
		return damage(v, AUDIT_CHECKPOINT_SIG, rec->seq, off,
			      "the file's checkpoint key %s… is not the pinned key", k);
	if (audit_cp_message(v->log_id, rec->body, rec->body_len - AUDIT_SIG_LEN, msg, sizeof(msg),
			     &mlen) != KMS_OK ||
	    kcrypto_ed25519_verify(v->key, msg, mlen, cp->sig) != KMS_OK)
		return damage(v, AUDIT_CHECKPOINT_SIG, rec->seq, off,
			      "the checkpoint signature does not verify with key %s… (the records "
			      "up to here were changed, or the signature was)",
			      k);
	v->rep.checkpoints_signed++;
	v->rep.has_signed_cp = 1;
	v->rep.signed_cp_seq = rec->seq;
	return 0;
}

/* Looks ahead for the frame holding record seq (reordering vs deletion). */
static int find_seq(const uint8_t *p, size_t n, size_t off, uint64_t seq, size_t *at)
{
	struct audit_frame fr;
	struct audit_rec rec;
	for (size_t k = 0; k < LOOKAHEAD; k++) {
		if (audit_frame_at(p, n, off, &fr) != KMS_OK)
			return 0;
		if (audit_body_parse(fr.body, fr.body_len, &rec) == KMS_OK && rec.seq == seq) {
			*at = off;
			return 1;
		}
		off += fr.size;
	}
	return 0;
}

/* The chain link: this record must be the next one and name the last one's hash. */
static int check_link(struct audit_verify *v, const uint8_t *p, size_t n, size_t off,
		      const struct audit_rec *rec, size_t prev_off)
{
	size_t at;
	if (rec->seq == v->next_seq) {
		if (memcmp(rec->prev, v->last_hash, 32) != 0)
			return damage(v, AUDIT_EDITED, v->next_seq - 1, prev_off,
				      "this record no longer matches the hash that record #%llu "
				      "holds for it (it was changed and its own hash recomputed)",
				      (unsigned long long)rec->seq);
		return 0;
	}
	if (rec->seq > v->next_seq) {
		if (find_seq(p, n, off, v->next_seq, &at))
			return damage(v, AUDIT_REORDERED, v->next_seq, at,
				      "record #%llu comes after record #%llu",
				      (unsigned long long)v->next_seq,
				      (unsigned long long)rec->seq);
		return damage(v, AUDIT_MISSING, v->next_seq, off,
			      "records #%llu..#%llu are not in the log (record #%llu follows "
			      "#%llu)",
			      (unsigned long long)v->next_seq, (unsigned long long)(rec->seq - 1),
			      (unsigned long long)rec->seq, (unsigned long long)(v->next_seq - 1));
	}
	return damage(v, AUDIT_REORDERED, rec->seq, off,
		      "record #%llu appears again, or out of order, after record #%llu",
		      (unsigned long long)rec->seq, (unsigned long long)(v->next_seq - 1));
}

static int on_record(struct audit_verify *v, const struct audit_rec *rec, size_t off)
{
	switch (rec->type) {
	case AUDIT_REC_HEADER:
		return damage(v, AUDIT_SPLICED, rec->seq, off,
			      "a file header inside a file: another file's records were joined in");
	case AUDIT_REC_DECISION:
		on_decision(v, rec);
		return 0;
	case AUDIT_REC_CHECKPOINT:
		return on_checkpoint(v, rec, off);
	case AUDIT_REC_START:
		on_start(v, rec);
		return v->damaged;
	case AUDIT_REC_NOTE:
		on_note(v, rec);
		return 0;
	}
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* The delegator's anchor: the record with that number must have that hash. */
static int check_anchor(struct audit_verify *v, uint64_t seq, const uint8_t hash[32], size_t off)
{
	if (!v->o.has_anchor || seq != v->o.anchor_seq)
		return 0;
	if (memcmp(hash, v->o.anchor_hash, 32) != 0)
		return damage(v, AUDIT_SPLICED, seq, off,
			      "the record does not have the anchored hash: this is not the log "
			      "that was anchored, or it was rewritten");
	v->anchor_seen = 1;
	return 0;
}

/* A frame (not the header): the bytes, the body, the link, then what it says. */
static int read_record(struct audit_verify *v, const uint8_t *p, size_t n, size_t *off,
		       size_t *prev_off)
{
	struct audit_frame fr;
	struct audit_rec rec;
	int r = audit_frame_at(p, n, *off, &fr);
	if (r == KMS_ERR_INCOMPLETE || (r == KMS_ERR_FORMAT && all_zero(p + *off, n - *off))) {
		/* the tail: a write in progress, a crash in one, or zeros a power loss left */
		v->torn = n - *off;
		*off = n;
		return 0;
	}
	if (r != KMS_OK)
		return damage(v, AUDIT_EDITED, v->next_seq, *off,
			      "the record's length field is damaged");
	if (!fr.hash_ok)
		return damage(v, AUDIT_EDITED, v->next_seq, *off,
			      "the record's bytes do not match its SHA-256");
	r = audit_body_parse(fr.body, fr.body_len, &rec);
	if (r == KMS_ERR_UNSUPPORTED)
		return damage(v, AUDIT_UNREADABLE, v->next_seq, *off,
			      "a record type or version this build cannot read (a newer p11kms?)");
	if (r != KMS_OK)
		return damage(v, AUDIT_EDITED, v->next_seq, *off, "the record is malformed");
	if (check_link(v, p, n, *off, &rec, *prev_off) || on_record(v, &rec, *off) ||
	    check_anchor(v, rec.seq, fr.hash, *off))
		return 1;
	v->next_seq = rec.seq + 1;
	memcpy(v->last_hash, fr.hash, 32);
	v->last_type = rec.type;
	v->last_reason = rec.type == AUDIT_REC_CHECKPOINT ? rec.u.cp.reason : 0;
	v->rep.records++;
	v->rep.last_seq = rec.seq;
	*prev_off = *off;
	*off += fr.size;
	return 0;
}

/* ---- files and headers ------------------------------------------------------------------ */

static int first_header(struct audit_verify *v, const struct audit_rec *rec, size_t off)
{
	static const uint8_t zero[32];
	char h[17];
	hex8(rec->prev, h);
	memcpy(v->log_id, rec->u.hdr.log_id, AUDIT_LOG_ID_LEN);
	if (rec->seq == 0 && memcmp(rec->prev, zero, 32) != 0)
		return damage(v, AUDIT_SPLICED, 0, off,
			      "the log's first record names a predecessor %s…", h);
	if (rec->seq > 0)
		vnote(v,
		      "the set starts at file #%llu, record #%llu: earlier files are not given; "
		      "the chain is checked from this file's header on (previous hash %s…)",
		      (unsigned long long)rec->u.hdr.file_index, (unsigned long long)rec->seq, h);
	if (v->o.has_anchor && rec->seq > 0 && v->o.anchor_seq + 1 < rec->seq)
		return damage(v, AUDIT_MISSING, v->o.anchor_seq + 1, off,
			      "the set starts at record #%llu, after the anchored record #%llu",
			      (unsigned long long)rec->seq, (unsigned long long)v->o.anchor_seq);
	if (v->o.has_anchor && rec->seq > 0 && v->o.anchor_seq + 1 == rec->seq) {
		if (memcmp(rec->prev, v->o.anchor_hash, 32) != 0)
			return damage(v, AUDIT_SPLICED, rec->seq, off,
				      "the file does not continue the anchored record #%llu",
				      (unsigned long long)v->o.anchor_seq);
		v->anchor_seen = 1;
	}
	if (rec->u.hdr.prev_torn > 0)
		vnote(v,
		      "the file before %s (not given) ends with %u bytes of an incomplete "
		      "record (a crash while writing)",
		      v->name, rec->u.hdr.prev_torn);
	v->rep.has_first = 1;
	v->rep.first_seq = rec->seq;
	v->next_seq = rec->seq;
	memcpy(v->last_hash, rec->prev, 32);
	return 0;
}

/* A header after another file: same log, the next number, the next record. */
static int next_header(struct audit_verify *v, const struct audit_rec *rec, size_t off)
{
	const struct audit_hdr *h = &rec->u.hdr;
	char a[17], b[17];
	if (memcmp(h->log_id, v->log_id, AUDIT_LOG_ID_LEN) != 0) {
		hex8(h->log_id, a);
		hex8(v->log_id, b);
		return damage(v, AUDIT_SPLICED, rec->seq, off,
			      "the file belongs to another log (log id %s…, not %s…)", a, b);
	}
	if (h->file_index <= v->file_index)
		return damage(v, AUDIT_REORDERED, rec->seq, off,
			      "file #%llu comes after file #%llu",
			      (unsigned long long)h->file_index, (unsigned long long)v->file_index);
	if (rec->seq > v->next_seq && h->file_index == v->file_index + 1)
		return damage(v, AUDIT_TRUNCATED, v->next_seq, off,
			      "%s ends at record #%llu but the next file continues from #%llu: "
			      "its end is cut off",
			      v->prev_name, (unsigned long long)(v->next_seq - 1),
			      (unsigned long long)rec->seq);
	if (rec->seq > v->next_seq)
		return damage(v, AUDIT_MISSING, v->next_seq, off,
			      "files #%llu..#%llu (records #%llu..#%llu) are not in the set",
			      (unsigned long long)(v->file_index + 1),
			      (unsigned long long)(h->file_index - 1),
			      (unsigned long long)v->next_seq, (unsigned long long)(rec->seq - 1));
	if (rec->seq < v->next_seq)
		return damage(v, AUDIT_REORDERED, rec->seq, off,
			      "the file repeats records from #%llu (the set is already at #%llu)",
			      (unsigned long long)rec->seq, (unsigned long long)v->next_seq);
	if (memcmp(rec->prev, v->last_hash, 32) != 0)
		return damage(v, AUDIT_SPLICED, rec->seq, off,
			      "the file does not continue %s: its header names another last "
			      "record",
			      v->prev_name);
	if (h->prev_torn != v->torn && v->torn > 0)
		return damage(v, AUDIT_EDITED, rec->seq - 1, 0,
			      "%s ends with %zu bytes that are no complete record, and the next "
			      "file does not account for them",
			      v->prev_name, v->torn);
	if (v->torn > 0)
		vnote(v,
		      "%s ends with %zu bytes of an incomplete record: a crash while writing, "
		      "recorded by the next file",
		      v->prev_name, v->torn);
	else if (h->prev_torn > 0)
		vnote(v, "%s ended with %u bytes of an incomplete record, since removed",
		      v->prev_name, h->prev_torn);
	return 0;
}

static int read_header(struct audit_verify *v, const uint8_t *p, size_t n, size_t off)
{
	struct audit_frame fr;
	struct audit_rec rec;
	int r = audit_frame_at(p, n, off, &fr);
	if (r != KMS_OK)
		return damage(v, AUDIT_EDITED, v->next_seq, off, "the file header is damaged");
	if (!fr.hash_ok)
		return damage(v, AUDIT_EDITED, v->next_seq, off,
			      "the file header's bytes do not match its SHA-256");
	r = audit_body_parse(fr.body, fr.body_len, &rec);
	if (r == KMS_ERR_UNSUPPORTED)
		return damage(v, AUDIT_UNREADABLE, v->next_seq, off,
			      "a header version this build cannot read");
	if (r != KMS_OK || rec.type != AUDIT_REC_HEADER)
		return damage(v, AUDIT_EDITED, v->next_seq, off,
			      "the file's first record is not a readable header");
	r = v->started ? next_header(v, &rec, off) : first_header(v, &rec, off);
	if (r != 0 || check_anchor(v, rec.seq, fr.hash, off))
		return 1;
	if (v->started && (rec.u.hdr.key_alg != v->key_alg || memcmp(rec.u.hdr.key, v->key, 32))) {
		char k[17];
		hex8(rec.u.hdr.key, k);
		vnote(v, "%s: the checkpoint key changes to %s%s", v->name,
		      rec.u.hdr.key_alg ? k : "none", rec.u.hdr.key_alg ? "…" : "");
	}
	v->started = 1;
	v->file_index = rec.u.hdr.file_index;
	v->key_alg = rec.u.hdr.key_alg;
	memcpy(v->key, rec.u.hdr.key, 32);
	v->batch_records = rec.u.hdr.batch_records;
	v->queue_cap = rec.u.hdr.queue_cap;
	v->next_seq = rec.seq + 1;
	memcpy(v->last_hash, fr.hash, 32);
	v->last_type = AUDIT_REC_HEADER;
	v->last_reason = 0;
	v->rep.records++;
	v->rep.last_seq = rec.seq;
	v->torn = 0;
	return 0;
}

/* A file holding no complete header: created by a process that died before writing it. */
static int unfinished(const uint8_t *p, size_t n)
{
	struct audit_frame fr;
	if (n == 0 || all_zero(p, n))
		return 1;
	if (n < AUDIT_MAGIC_LEN)
		return memcmp(p, AUDIT_MAGIC, n) == 0;
	if (memcmp(p, AUDIT_MAGIC, AUDIT_MAGIC_LEN) != 0)
		return 0;
	int r = audit_frame_at(p, n, AUDIT_MAGIC_LEN, &fr);
	return r == KMS_ERR_INCOMPLETE ||
	       (r == KMS_ERR_FORMAT && all_zero(p + AUDIT_MAGIC_LEN, n - AUDIT_MAGIC_LEN));
}

static int check_preamble(struct audit_verify *v, const uint8_t *p, size_t n)
{
	struct audit_frame fr;
	if (n >= AUDIT_MAGIC_LEN && memcmp(p, AUDIT_MAGIC, AUDIT_MAGIC_LEN) == 0)
		return 0;
	/* a readable header behind a changed preamble is an edit, not a foreign file */
	if (n >= AUDIT_MAGIC_LEN && audit_frame_at(p, n, AUDIT_MAGIC_LEN, &fr) == KMS_OK &&
	    fr.hash_ok)
		return damage(v, AUDIT_EDITED, v->next_seq, 0, "the file's preamble was changed");
	if (n >= AUDIT_MAGIC_LEN && memcmp(p, AUDIT_MAGIC, AUDIT_MAGIC_LEN - 1) == 0)
		return damage(v, AUDIT_UNREADABLE, v->next_seq, 0,
			      "audit format version %u: this build reads version 1",
			      (unsigned)p[AUDIT_MAGIC_LEN - 1]);
	return damage(v, AUDIT_UNREADABLE, v->next_seq, 0, "not a p11kms audit file");
}

int audit_verify_file(struct audit_verify *v, const char *name, const uint8_t *p, size_t n)
{
	size_t off = AUDIT_MAGIC_LEN, prev_off = AUDIT_MAGIC_LEN;
	if (v->damaged)
		return 1;
	if (p == NULL && n > 0)
		return damage(v, AUDIT_UNREADABLE, v->next_seq, 0, "no data");
	(void)snprintf(v->prev_name, sizeof(v->prev_name), "%s", v->name);
	(void)snprintf(v->name, sizeof(v->name), "%s", name != NULL ? name : "?");
	v->rep.files++;
	if (p == NULL || unfinished(p, n)) {
		vnote(v,
		      "%s holds no complete header (%zu bytes): created by a process that "
		      "stopped before writing it; skipped",
		      v->name, n);
		(void)snprintf(v->name, sizeof(v->name), "%s", v->prev_name);
		return 0;
	}
	if (check_preamble(v, p, n) || read_header(v, p, n, off))
		return 1;
	struct audit_frame fr;
	if (audit_frame_at(p, n, off, &fr) == KMS_OK)
		off += fr.size;
	while (off < n)
		if (read_record(v, p, n, &off, &prev_off))
			return 1;
	return 0;
}

int audit_verify_new(const struct audit_verify_opts *o, struct audit_verify **out)
{
	struct audit_verify *v = calloc(1, sizeof(*v));
	*out = NULL;
	if (v == NULL)
		return KMS_ERR_ALLOC;
	if (o != NULL)
		v->o = *o;
	*out = v;
	return KMS_OK;
}

static void end_checks(struct audit_verify *v)
{
	int clean = v->last_type == AUDIT_REC_CHECKPOINT && v->last_reason == AUDIT_CP_SHUTDOWN;
	v->rep.clean_end = clean && v->torn == 0;
	v->rep.tail_bytes = v->torn;
	if (!v->started) {
		(void)damage(v, AUDIT_UNREADABLE, 0, 0, "no audit file with a header in the set");
		return;
	}
	if (clean && v->torn > 0) {
		(void)damage(v, AUDIT_EDITED, v->rep.last_seq, 0,
			     "%zu bytes follow the shutdown checkpoint", v->torn);
		return;
	}
	end_run(v, NULL, clean);
	if (v->damaged)
		return;
	if (!clean && v->o.live) {
		vnote(v, "the daemon is writing this log: it ends at record #%llu for now%s",
		      (unsigned long long)v->rep.last_seq,
		      v->torn > 0 ? ", followed by part of a record being written" : "");
	} else if (!clean) {
		char lack[160] = "";
		if (v->final_missing > 0)
			(void)snprintf(
				lack, sizeof(lack),
				"; the state files count %llu new signatures that are not in "
				"it",
				(unsigned long long)v->final_missing);
		(void)damage(v, AUDIT_TRUNCATED, v->rep.last_seq, 0,
			     "the log ends here%s without a shutdown checkpoint, and no daemon is "
			     "writing it: the daemon crashed (its next start records the gap) or "
			     "the end was cut off%s",
			     v->torn > 0 ? " in an incomplete record" : "", lack);
		return;
	}
	if (v->o.has_anchor && !v->anchor_seen)
		(void)damage(v, AUDIT_MISSING, v->o.anchor_seq, 0,
			     "the anchored record #%llu is not in the set (the log ends at #%llu)",
			     (unsigned long long)v->o.anchor_seq,
			     (unsigned long long)v->rep.last_seq);
	else if (v->o.pin_key != NULL && !v->rep.has_signed_cp)
		(void)damage(v, AUDIT_CHECKPOINT_SIG, v->rep.last_seq, 0,
			     "no checkpoint in the set is signed by the pinned key");
}

void audit_verify_end(struct audit_verify *v, struct audit_report *rep)
{
	if (!v->damaged)
		end_checks(v);
	if (!v->damaged) {
		v->rep.damage = AUDIT_INTACT;
		if (v->rep.has_signed_cp && v->rep.signed_cp_seq < v->rep.last_seq)
			vnote(v,
			      "records #%llu..#%llu come after the last signed checkpoint: the "
			      "next checkpoint will cover them",
			      (unsigned long long)(v->rep.signed_cp_seq + 1),
			      (unsigned long long)v->rep.last_seq);
	}
	memcpy(v->rep.head, v->last_hash, 32);
	memcpy(v->rep.log_id, v->log_id, AUDIT_LOG_ID_LEN);
	v->rep.has_key = v->key_alg == 1;
	memcpy(v->rep.key, v->key, 32);
	*rep = v->rep;
}

void audit_verify_free(struct audit_verify *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n_chains; i++)
		free(v->chains[i].seen);
	free(v->chains);
	free(v);
}
