/* SPDX-License-Identifier: Apache-2.0 */
/* The double-sign guard: FilePV rules (spec §5.2) with the p11kms policy (§5.4), durable first. */
#include "p11kms/guard.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guard_int.h"
#include "p11kms/dfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"

static int64_t mono_ns(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct guard {
	pthread_mutex_t mu;
	struct guard_file *gf; /* the locked file and the last record (gf->rec) */
	/* a persist failed: the disk state is uncertain, refuse all. Written under mu,
	 * read without it (readiness and metrics must not wait behind a slow token). */
	atomic_int failed;
	int durable; /* the loaded record was re-persisted (under mu) */
	char chain_id[GUARD_MAX_CHAIN_ID + 1];
	struct guard_rec next; /* scratch for the record being written (under mu) */
	/* HA (docs/ha.md): the cluster, and scratch marks for it (under mu) */
	const struct guard_cluster_ops *cl;
	void *cl_ctx;
	struct guard_mark cmark, cnext;
};

/* Compare-failure rounds of one request before it is refused (each one saw the mark move). */
#define GUARD_CLUSTER_ROUNDS 4

/* What a request is compared with at its own H/R/S: the local record or the cluster mark. */
struct guard_stored {
	const char *whose; /* "" (local) or "cluster mark: " */
	const struct guard_hrs *hrs;
	const uint8_t *sign_bytes;
	size_t sign_bytes_len;
	const uint8_t *signature;
	int has_sig;
};

const char *guard_step_name(enum guard_step s)
{
	switch (s) {
	case GUARD_STEP_NONE:
		return "none";
	case GUARD_STEP_PROPOSE:
		return "proposal";
	case GUARD_STEP_PREVOTE:
		return "prevote";
	case GUARD_STEP_PRECOMMIT:
		return "precommit";
	}
	return "invalid";
}

static void emit_failed(struct guard *g)
{
	obs_status(&(struct obs_status){
		.kind = OBS_ST_GUARD_FAILED, .chain_id = g->chain_id, .err = KMS_ERR_STATE_IO });
}

/*
 * Makes the loaded record durable before anything is served. It may only be
 * in the page cache (killed between pwrite and fdatasync, or an fdatasync
 * that failed): served from there, a stored signature could leave and then be
 * lost with the record in a power cut. guard_file_write first writes the
 * record's own bytes back into its own slot and syncs (and the directory);
 * then the record goes into the other slot as seq+1, whole (sign bytes and
 * signature too, so a repeated request still gets the stored signature), so
 * no slot is left holding data only the cache has.
 */
static int repersist(struct guard *g)
{
	struct guard_rec *n = &g->next;
	if (g->durable)
		return KMS_OK;
	if (atomic_load(&g->failed))
		return KMS_ERR_STATE_IO;
	*n = g->gf->rec;
	n->seq = g->gf->rec.seq + 1;
	if (guard_file_write(g->gf, n) != KMS_OK) {
		atomic_store(&g->failed, 1);
		kms_log_err(
			"double-sign state could not be made durable before serving chain=%s "
			"path=%s: refusing to sign (fix the disk, then restart; the state on it "
			"is unchanged or one record further)",
			g->chain_id, g->gf->path);
		return KMS_ERR_STATE_IO;
	}
	g->durable = 1;
	kms_log_info("double-sign state re-persisted chain=%s h=%lld r=%d s=%d seq=%llu",
		     g->chain_id, (long long)g->gf->rec.hrs.height, g->gf->rec.hrs.round,
		     (int)g->gf->rec.hrs.step, (unsigned long long)g->gf->rec.seq);
	return KMS_OK;
}

int guard_make_durable(struct guard *g)
{
	pthread_mutex_lock(&g->mu);
	int was_failed = atomic_load(&g->failed);
	int r = repersist(g);
	pthread_mutex_unlock(&g->mu);
	if (!was_failed && atomic_load(&g->failed))
		emit_failed(g);
	return r;
}

/*
 * The filesystem under the state file (open at fd) must keep it across a
 * power cut and keep other hosts out; allow_volatile_state waives that (tests,
 * benchmarks), loudly. KMS_ERR_UNSUPPORTED when refused.
 */
static int check_fs(int fd, const char *path, const char *chain_id, const struct guard_opts *o)
{
	struct dfile_fs fs;
	int r = dfile_fs_probe(fd, &fs);
	if (r != KMS_OK)
		return KMS_ERR_STATE_IO;
	if (fs.durable) {
		kms_log_debug("double-sign state chain=%s path=%s filesystem=%s (0x%lx)", chain_id,
			      path, fs.name, fs.magic);
		return KMS_OK;
	}
	if (o != NULL && o->allow_volatile_state) {
		kms_log_warn(
			"double-sign state chain=%s path=%s is on %s: %s. Accepted because "
			"allow_volatile_state = true: for tests and benchmarks only, never for "
			"a validator",
			chain_id, path, fs.name, fs.why);
		return KMS_OK;
	}
	kms_log_err("double-sign state chain=%s path=%s is on %s, which cannot keep it safe: %s. "
		    "Refusing to sign: move state_file to a local disk filesystem (ext4, xfs, "
		    "btrfs, zfs) and restart (allow_volatile_state = true in the chain's config "
		    "accepts it, for tests and benchmarks only)",
		    chain_id, path, fs.name, fs.why);
	return KMS_ERR_UNSUPPORTED;
}

int guard_check_fs(const char *state_path, int allow_volatile_state, char *msg, size_t cap)
{
	struct dfile_fs fs;
	char *dir = NULL;
	const char *slash = strrchr(state_path, '/');
	int fd = open(state_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT) {
		dir = slash == NULL	  ? strdup(".") :
		      slash == state_path ? strdup("/") :
					    strndup(state_path, (size_t)(slash - state_path));
		fd = dir != NULL ? open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY) : -1;
	}
	int r = fd < 0 ? KMS_ERR_NOT_FOUND : dfile_fs_probe(fd, &fs);
	if (fd >= 0)
		close(fd);
	free(dir);
	if (r != KMS_OK) {
		snprintf(msg, cap, "cannot tell the filesystem of %s: %s", state_path,
			 kms_strerror(r));
		return r;
	}
	if (fs.durable)
		snprintf(msg, cap, "on %s", fs.name);
	else
		snprintf(msg, cap, "on %s: %s%s", fs.name, fs.why,
			 allow_volatile_state ? " (accepted: allow_volatile_state = true; tests "
						"and benchmarks only)" :
						". Move it to a local disk filesystem (ext4, xfs, "
						"btrfs, zfs)");
	return fs.durable || allow_volatile_state ? KMS_OK : KMS_ERR_UNSUPPORTED;
}

int guard_open(const char *state_path, const char *chain_id, struct guard **out)
{
	return guard_open_opts(state_path, chain_id, NULL, out);
}

int guard_open_opts(const char *state_path, const char *chain_id, const struct guard_opts *opts,
		    struct guard **out)
{
	struct guard *g = NULL;
	int r = KMS_ERR_INTERNAL;
	*out = NULL;
	if (state_path == NULL || chain_id == NULL || chain_id[0] == '\0' ||
	    strlen(chain_id) > GUARD_MAX_CHAIN_ID) {
		kms_log_err("invalid chain-id for the double-sign guard chain=%s",
			    chain_id ? chain_id : "");
		return KMS_ERR_CONFIG;
	}
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return KMS_ERR_ALLOC;
	if (pthread_mutex_init(&g->mu, NULL) != 0) {
		free(g);
		return KMS_ERR_SYSTEM;
	}
	memcpy(g->chain_id, chain_id, strlen(chain_id) + 1);
	r = guard_file_open(state_path, chain_id, GUARD_LOAD_STRICT, &g->gf);
	if (r != KMS_OK || (r = check_fs(g->gf->fd, state_path, chain_id, opts)) != KMS_OK)
		goto out;
	kms_log_info("double-sign state loaded chain=%s path=%s h=%lld r=%d s=%d seq=%llu",
		     chain_id, state_path, (long long)g->gf->rec.hrs.height, g->gf->rec.hrs.round,
		     (int)g->gf->rec.hrs.step, (unsigned long long)g->gf->rec.seq);
	*out = g;
	g = NULL;
	r = KMS_OK;
out:
	guard_free(g);
	return r;
}

int guard_state_check(const char *state_path, const char *chain_id, const struct guard_opts *opts,
		      struct guard_hrs *last)
{
	struct guard_file *gf = NULL;
	memset(last, 0, sizeof(*last));
	int r = guard_file_open(state_path, chain_id, GUARD_LOAD_STRICT, &gf);
	if (r == KMS_OK && (opts == NULL || !opts->skip_fs_check))
		r = check_fs(gf->fd, state_path, chain_id, opts);
	if (r == KMS_OK)
		*last = gf->rec.hrs;
	guard_file_close(gf);
	return r;
}

int guard_state_check_ro(const char *state_path, const char *chain_id, struct guard_hrs *last)
{
	struct guard_file *gf = NULL;
	memset(last, 0, sizeof(*last));
	int r = guard_file_open_ro_as(state_path, chain_id, GUARD_LOAD_STRICT, &gf);
	if (r == KMS_OK)
		*last = gf->rec.hrs;
	guard_file_close(gf);
	return r;
}

void guard_free(struct guard *g)
{
	if (g == NULL)
		return;
	guard_file_close(g->gf);
	pthread_mutex_destroy(&g->mu);
	kms_wipe(&g->next, sizeof(g->next));
	kms_wipe(&g->cmark, sizeof(g->cmark));
	kms_wipe(&g->cnext, sizeof(g->cnext));
	free(g);
}

const char *guard_chain_id(const struct guard *g)
{
	return g->chain_id;
}

void guard_last(struct guard *g, struct guard_hrs *out)
{
	pthread_mutex_lock(&g->mu);
	*out = g->gf->rec.hrs;
	pthread_mutex_unlock(&g->mu);
}

void guard_last_mark(struct guard *g, struct guard_mark *out)
{
	pthread_mutex_lock(&g->mu);
	const struct guard_rec *r = &g->gf->rec;
	memset(out, 0, sizeof(*out));
	out->present = 1;
	out->hrs = r->hrs;
	if (r->has_sig && r->sign_bytes_len > 0) {
		memcpy(out->sign_bytes, r->sign_bytes, r->sign_bytes_len);
		out->sign_bytes_len = r->sign_bytes_len;
		memcpy(out->signature, r->signature, GUARD_SIG_LEN);
		out->has_sig = 1;
	}
	pthread_mutex_unlock(&g->mu);
}

int guard_failed(struct guard *g)
{
	return atomic_load(&g->failed);
}

/* Fills res->reason ("chain=… requested h/r/s=… last h/r/s=…: why"), logs it, returns err. */
__attribute__((format(printf, 5, 6))) static int refuse(struct guard *g,
							const struct guard_hrs *req,
							struct guard_result *res, int err,
							const char *fmt, ...)
{
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	const struct guard_hrs *last = &g->gf->rec.hrs;
	int n = snprintf(res->reason, sizeof(res->reason),
			 "chain=%s requested h/r/s=%lld/%d/%d last h/r/s=%lld/%d/%d: %s",
			 g->chain_id, (long long)req->height, req->round, (int)req->step,
			 (long long)last->height, last->round, (int)last->step, why);
	if (n < 0 || (size_t)n >= sizeof(res->reason))
		kms_log_debug("guard refusal reason truncated chain=%s", g->chain_id);
	kms_log_warn("guard refused to sign %s", res->reason);
	return err;
}

/* The sign bytes must be a canonical message for exactly this chain and H/R/S. */
static int check_request(struct guard *g, const struct guard_request *req, struct guard_canon *c,
			 struct guard_result *res)
{
	const struct guard_hrs *h = &req->hrs;
	if (guard_hrs_valid(h) != KMS_OK || h->step == GUARD_STEP_NONE)
		return refuse(g, h, res, KMS_ERR_FORMAT, "invalid height/round/step");
	if (req->sign_bytes == NULL || req->sign_bytes_len == 0)
		return refuse(g, h, res, KMS_ERR_FORMAT, "no sign bytes");
	if (req->sign_bytes_len > GUARD_MAX_SIGN_BYTES)
		return refuse(g, h, res, KMS_ERR_TOO_LARGE, "sign bytes of %zu bytes exceed %d",
			      req->sign_bytes_len, GUARD_MAX_SIGN_BYTES);
	if (guard_pb_decode(req->sign_bytes, req->sign_bytes_len, c) != KMS_OK)
		return refuse(g, h, res, KMS_ERR_FORMAT,
			      "sign bytes are not a canonical vote or proposal");
	if (c->step != h->step || c->height != h->height || c->round != (int64_t)h->round)
		return refuse(g, h, res, KMS_ERR_REFUSED,
			      "sign bytes say h/r/s=%lld/%lld/%d, not the requested one",
			      (long long)c->height, (long long)c->round, (int)c->step);
	if (c->chain_id_len != strlen(g->chain_id) ||
	    memcmp(c->chain_id, g->chain_id, c->chain_id_len) != 0)
		return refuse(g, h, res, KMS_ERR_REFUSED, "sign bytes carry another chain-id");
	return KMS_OK;
}

/* Same H/R/S as st: return what was signed, or refuse (spec §5.2 step 2, §5.4). */
static int same_hrs(struct guard *g, const struct guard_request *req, const struct guard_canon *c,
		    const struct guard_stored *st, struct guard_result *res)
{
	struct guard_canon old;
	if (st->sign_bytes_len == 0 || !st->has_sig)
		return refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			      "%sno sign bytes stored for this height/round/step (initialised or "
			      "imported state), cannot tell if it is the same",
			      st->whose);
	if (st->sign_bytes_len == req->sign_bytes_len &&
	    memcmp(st->sign_bytes, req->sign_bytes, req->sign_bytes_len) == 0) {
		memcpy(res->signature, st->signature, GUARD_SIG_LEN);
		res->reused = 1;
		return KMS_OK;
	}
	if (guard_pb_decode(st->sign_bytes, st->sign_bytes_len, &old) != KMS_OK)
		return refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			      "%sstored sign bytes do not decode; conflicting data", st->whose);
	if (!guard_pb_equal_but_ts(&old, c))
		return refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			      "%sconflicting data: different block or content at the same "
			      "height/round/step (double sign)",
			      st->whose);
	if (c->is_proposal)
		return refuse(
			g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			"%sproposal differs only in timestamp; refusing: the node ignores a "
			"returned proposal timestamp, so the stored signature would not verify",
			st->whose);
	memcpy(res->signature, st->signature, GUARD_SIG_LEN);
	res->reused = 1;
	res->timestamp_replaced = 1;
	res->ts_seconds = old.ts_seconds;
	res->ts_nanos = old.ts_nanos;
	return KMS_OK;
}

/*
 * PERSIST: writes {hrs, sign bytes, signature} as the next record (pwrite + one
 * fdatasync). On failure the guard fails closed and the signature must not leave.
 */
static int persist(struct guard *g, const struct guard_hrs *hrs, const uint8_t *sb, size_t sb_len,
		   const uint8_t sig[static GUARD_SIG_LEN], struct guard_result *res)
{
	struct guard_rec *n = &g->next;
	memset(n, 0, sizeof(*n));
	n->seq = g->gf->rec.seq + 1;
	n->written_at = (int64_t)time(NULL);
	n->hrs = *hrs;
	n->has_sig = 1;
	memcpy(n->chain_id, g->chain_id, sizeof(n->chain_id));
	memcpy(n->signature, sig, GUARD_SIG_LEN);
	n->sign_bytes_len = sb_len;
	memcpy(n->sign_bytes, sb, sb_len);
	/* durable before release (STYLE.md §2.7): the signature leaves only after this */
	int64_t t0 = mono_ns();
	int r = guard_file_write(g->gf, n);
	res->sync_ns = mono_ns() - t0;
	if (r == KMS_OK)
		return KMS_OK;
	atomic_store(&g->failed, 1);
	kms_log_err("double-sign guard FAIL-CLOSED chain=%s path=%s: the on-disk state is "
		    "uncertain; restart p11kms after fixing the disk",
		    g->chain_id, g->gf->path);
	return refuse(g, hrs, res, KMS_ERR_STATE_IO,
		      "state write failed; guard is now fail-closed until restarted");
}

static int sign_and_persist(struct guard *g, const struct guard_request *req, guard_sign_fn sign,
			    void *sign_ctx, struct guard_result *res)
{
	uint8_t sig[GUARD_SIG_LEN];
	int64_t t0 = mono_ns();
	int r = sign(sign_ctx, req->sign_bytes, req->sign_bytes_len, sig);
	res->sign_ns = mono_ns() - t0;
	if (r != KMS_OK) {
		(void)refuse(g, &req->hrs, res, r, "signer failed: %s", kms_strerror(r));
		goto out;
	}
	r = persist(g, &req->hrs, req->sign_bytes, req->sign_bytes_len, sig, res);
	if (r == KMS_OK)
		memcpy(res->signature, sig, GUARD_SIG_LEN);
out:
	kms_wipe(sig, sizeof(sig));
	return r;
}

void guard_set_cluster(struct guard *g, const struct guard_cluster_ops *ops, void *ctx)
{
	pthread_mutex_lock(&g->mu);
	g->cl = ops;
	g->cl_ctx = ctx;
	pthread_mutex_unlock(&g->mu);
}

/* A refusal decided by (or caused by) the cluster. */
static int cluster_refusal(struct guard_result *res, int r)
{
	res->cluster = 1;
	return r;
}

/*
 * The request is ahead of the local state and a cluster is attached: steps
 * CLUSTER_CHECK, SIGN, COMMIT (RESOLVE is inside ops->commit), ADOPT, PERSIST of
 * docs/ha.md. The signature leaves (is copied to res) only when the mark holds it.
 */
static int cluster_sign(struct guard *g, const struct guard_request *req,
			const struct guard_canon *c, guard_sign_fn sign, void *sign_ctx,
			struct guard_result *res)
{
	struct guard_mark *m = &g->cmark, *n = &g->cnext;
	uint8_t sig[GUARD_SIG_LEN];
	int have_sig = 0, r;
	int64_t t0 = mono_ns();

	r = g->cl->mark(g->cl_ctx, m);
	if (r != KMS_OK) {
		r = cluster_refusal(res, refuse(g, &req->hrs, res, r,
						"cluster mark unavailable (%s): refusing to sign "
						"on local knowledge alone",
						kms_strerror(r)));
		goto out;
	}
	for (int round = 0;; round++) {
		/* CLUSTER_CHECK: the FilePV rules against the mark */
		int cmp = m->present ? guard_hrs_cmp(&req->hrs, &m->hrs) : 1;
		if (cmp < 0) {
			res->regression = 1;
			r = cluster_refusal(
				res, refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
					    "cluster mark h/r/s=%lld/%d/%d: regression",
					    (long long)m->hrs.height, m->hrs.round, (int)m->hrs.step));
			goto out;
		}
		if (cmp == 0) {
			const struct guard_stored st = { "cluster mark: ", &m->hrs, m->sign_bytes,
							 m->sign_bytes_len, m->signature,
							 m->has_sig };
			r = same_hrs(g, req, c, &st, res);
			if (r != KMS_OK) {
				r = cluster_refusal(res, r);
				goto out;
			}
			/* ADOPT: the mark into the local state, then its signature leaves */
			r = persist(g, &m->hrs, m->sign_bytes, m->sign_bytes_len, m->signature,
				    res);
			if (r != KMS_OK)
				memset(res->signature, 0, sizeof(res->signature));
			goto out;
		}
		if (round >= GUARD_CLUSTER_ROUNDS) {
			r = cluster_refusal(res, refuse(g, &req->hrs, res, KMS_ERR_TIMEOUT,
							"cluster mark moved %d times under this "
							"request; refusing",
							round));
			goto out;
		}
		/* SIGN, once: the same sign bytes in every round */
		if (!have_sig) {
			int64_t ts = mono_ns();
			r = sign(sign_ctx, req->sign_bytes, req->sign_bytes_len, sig);
			res->sign_ns = mono_ns() - ts;
			if (r != KMS_OK) {
				(void)refuse(g, &req->hrs, res, r, "signer failed: %s",
					     kms_strerror(r));
				goto out;
			}
			have_sig = 1;
		}
		/* COMMIT: compare-and-swap against m */
		memset(n, 0, sizeof(*n));
		n->present = 1;
		n->hrs = req->hrs;
		n->sign_bytes_len = req->sign_bytes_len;
		memcpy(n->sign_bytes, req->sign_bytes, req->sign_bytes_len);
		memcpy(n->signature, sig, GUARD_SIG_LEN);
		n->has_sig = 1;
		r = g->cl->commit(g->cl_ctx, n, m);
		if (r == KMS_OK)
			break;
		if (r != KMS_ERR_EXISTS) {
			r = cluster_refusal(res, refuse(g, &req->hrs, res, r,
							"cluster commit failed or its outcome is "
							"unknown (%s): the signature is not released",
							kms_strerror(r)));
			goto out;
		}
		/* compare failure: another host moved first; decide again on the new mark */
	}
	/* PERSIST, then the signature leaves */
	r = persist(g, &req->hrs, req->sign_bytes, req->sign_bytes_len, sig, res);
	if (r == KMS_OK)
		memcpy(res->signature, sig, GUARD_SIG_LEN);
out:
	res->cluster_ns = mono_ns() - t0 - res->sign_ns - res->sync_ns;
	kms_wipe(sig, sizeof(sig));
	kms_wipe(n, sizeof(*n));
	return r;
}

int guard_sign(struct guard *g, const struct guard_request *req, guard_sign_fn sign, void *sign_ctx,
	       struct guard_result *res)
{
	struct guard_canon c;
	int r, was_failed;
	if (res == NULL)
		return KMS_ERR_INTERNAL;
	memset(res, 0, sizeof(*res));
	if (g == NULL || req == NULL || sign == NULL)
		return KMS_ERR_INTERNAL;
	pthread_mutex_lock(&g->mu);
	was_failed = atomic_load(&g->failed);
	if (was_failed) {
		r = refuse(g, &req->hrs, res, KMS_ERR_STATE_IO,
			   "guard is fail-closed after a state write failure; restart required");
		goto out;
	}
	r = repersist(g); /* nothing is served from a record that is not durable */
	if (r != KMS_OK) {
		r = refuse(g, &req->hrs, res, r,
			   "the loaded state could not be made durable; restart required");
		goto out;
	}
	r = check_request(g, req, &c, res);
	if (r != KMS_OK)
		goto out;
	/* spec §5.2 step 1: regressions */
	const struct guard_hrs *last = &g->gf->rec.hrs, *h = &req->hrs;
	if (h->height < last->height) {
		r = refuse(g, h, res, KMS_ERR_DOUBLE_SIGN, "height regression");
		res->regression = 1;
	} else if (h->height == last->height && h->round < last->round) {
		r = refuse(g, h, res, KMS_ERR_DOUBLE_SIGN, "round regression");
		res->regression = 1;
	} else if (h->height == last->height && h->round == last->round && h->step < last->step) {
		r = refuse(g, h, res, KMS_ERR_DOUBLE_SIGN, "step regression");
		res->regression = 1;
	} else if (guard_hrs_cmp(h, last) == 0) {
		const struct guard_rec *lr = &g->gf->rec;
		const struct guard_stored st = { "", &lr->hrs, lr->sign_bytes, lr->sign_bytes_len,
						 lr->signature, lr->has_sig };
		r = same_hrs(g, req, &c, &st, res); /* step 2 */
	} else if (g->cl != NULL) {
		r = cluster_sign(g, req, &c, sign, sign_ctx, res); /* docs/ha.md */
	} else {
		r = sign_and_persist(g, req, sign, sign_ctx, res); /* step 3 */
	}
out:
	res->seq = g->gf->rec.seq;
	pthread_mutex_unlock(&g->mu);
	/* the transition only, after the unlock: sinks must never run under the chain's lock */
	if (!was_failed && atomic_load(&g->failed))
		emit_failed(g);
	return r;
}
