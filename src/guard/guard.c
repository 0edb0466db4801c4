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

/* Same H/R/S as the last record: return what was signed, or refuse (spec §5.2 step 2, §5.4). */
static int same_hrs(struct guard *g, const struct guard_request *req, const struct guard_canon *c,
		    struct guard_result *res)
{
	const struct guard_rec *last = &g->gf->rec;
	struct guard_canon old;
	if (last->sign_bytes_len == 0 || !last->has_sig)
		return refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			      "no sign bytes stored for this height/round/step (initialised or "
			      "imported state), cannot tell if it is the same");
	if (last->sign_bytes_len == req->sign_bytes_len &&
	    memcmp(last->sign_bytes, req->sign_bytes, req->sign_bytes_len) == 0) {
		memcpy(res->signature, last->signature, GUARD_SIG_LEN);
		res->reused = 1;
		return KMS_OK;
	}
	if (guard_pb_decode(last->sign_bytes, last->sign_bytes_len, &old) != KMS_OK)
		return refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			      "stored sign bytes do not decode; conflicting data");
	if (!guard_pb_equal_but_ts(&old, c))
		return refuse(g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			      "conflicting data: different block or content at the same "
			      "height/round/step (double sign)");
	if (c->is_proposal)
		return refuse(
			g, &req->hrs, res, KMS_ERR_DOUBLE_SIGN,
			"proposal differs only in timestamp; refusing: the node ignores a "
			"returned proposal timestamp, so the stored signature would not verify");
	memcpy(res->signature, last->signature, GUARD_SIG_LEN);
	res->reused = 1;
	res->timestamp_replaced = 1;
	res->ts_seconds = old.ts_seconds;
	res->ts_nanos = old.ts_nanos;
	return KMS_OK;
}

static int sign_and_persist(struct guard *g, const struct guard_request *req, guard_sign_fn sign,
			    void *sign_ctx, struct guard_result *res)
{
	uint8_t sig[GUARD_SIG_LEN];
	struct guard_rec *n = &g->next;
	int64_t t0 = mono_ns();
	int r = sign(sign_ctx, req->sign_bytes, req->sign_bytes_len, sig);
	res->sign_ns = mono_ns() - t0;
	if (r != KMS_OK) {
		(void)refuse(g, &req->hrs, res, r, "signer failed: %s", kms_strerror(r));
		goto out;
	}
	memset(n, 0, sizeof(*n));
	n->seq = g->gf->rec.seq + 1;
	n->written_at = (int64_t)time(NULL);
	n->hrs = req->hrs;
	n->has_sig = 1;
	memcpy(n->chain_id, g->chain_id, sizeof(n->chain_id));
	memcpy(n->signature, sig, GUARD_SIG_LEN);
	n->sign_bytes_len = req->sign_bytes_len;
	memcpy(n->sign_bytes, req->sign_bytes, req->sign_bytes_len);
	/* durable before release (STYLE.md §2.7): the signature leaves only after this */
	t0 = mono_ns();
	r = guard_file_write(g->gf, n);
	res->sync_ns = mono_ns() - t0;
	if (r != KMS_OK) {
		atomic_store(&g->failed, 1);
		r = refuse(g, &req->hrs, res, KMS_ERR_STATE_IO,
			   "state write failed; guard is now fail-closed until restarted");
		kms_log_err("double-sign guard FAIL-CLOSED chain=%s path=%s: the on-disk state is "
			    "uncertain; restart p11kms after fixing the disk",
			    g->chain_id, g->gf->path);
		goto out;
	}
	memcpy(res->signature, sig, GUARD_SIG_LEN);
	r = KMS_OK;
out:
	kms_wipe(sig, sizeof(sig));
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
		r = same_hrs(g, req, &c, res); /* step 2 */
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
