/* SPDX-License-Identifier: Apache-2.0 */
/* The audit writer: the obs sink's bounded queue, the writer thread, batches, files, failures. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_int.h"
#include "p11kms/cfg.h"
#include "p11kms/dfile.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"

#define BATCH_MAX AUDIT_TAKE_MAX
#define RETRY_MS 1000	      /* a failed log is retried (in a new file) this often */
#define RESUME_MAX (1u << 30) /* largest newest file read at start */

/* Signed decisions of one chain that were not recorded (dropped or lost). */
struct pend {
	uint64_t n, first, last;
};

/* Decisions not recorded, waiting to be written as a note. */
struct acct {
	uint64_t total, n_signed, n_stored, n_refused;
	int64_t first_ns, last_ns;
	struct pend *chain; /* one per audit chain */
};

struct achain {
	const char *id; /* cfg->chains[i].id (borrowed) */
	unsigned n_conns;
	uint64_t seq; /* state at start */
	int64_t height;
	int32_t round;
	uint8_t step;
};

struct audit_log {
	/* configuration (read-only after start) */
	char *dir;
	uint32_t batch_records, batch_ms, checkpoint_every;
	uint64_t rotate_bytes;
	int rotate_daily, fail_closed;
	struct achain *chains;
	size_t n_chains;
	unsigned n_conns;
	struct slot *ident; /* signs checkpoints, or NULL */
	uint8_t pub[32];
	char host[256];

	/* the queue: a ring of events (mu) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct obs_event *ring;
	size_t q_cap, q_head, q_count;
	int writer_idle, closing;
	struct acct drops; /* producers account a full queue here; the writer takes it */

	/* counters for any thread */
	atomic_uint_fast64_t c_queued, c_written, c_durable, c_dropped, c_lost, c_errors;
	atomic_uint_fast64_t c_settled; /* events durable, lost, or written to a failed file */
	atomic_int c_failed;

	/* the writer thread's own state */
	pthread_t thread;
	int started;
	struct obs_event *batch;
	struct acct taken; /* drops taken with the current batch */
	struct acct lost;  /* not written since the log failed */
	struct kbuf *buf, *body;
	int fd, status_fd;
	char file[64];
	uint64_t file_index;
	int first_file; /* no file yet: the next one is number 0 of a new log */
	int file_day;
	uint64_t file_size;
	uint8_t log_id[AUDIT_LOG_ID_LEN];
	uint64_t next_seq; /* committed chain: the next record's seq and the last hash */
	uint8_t last_hash[32];
	uint64_t t_seq; /* the chain including the records buffered in buf */
	uint8_t t_hash[32];
	size_t buf_records, buf_events;
	uint64_t since_cp, unsynced, unsynced_events;
	int64_t oldest_unsynced_ms;
	uint32_t prev_torn;
	int need_start;
	int failed, fail_err, fail_errno;
	int64_t failed_since_ns, retry_at_ms;
};

static int64_t mono_ms(void)
{
	return obs_mono_ns() / 1000000;
}

/* The writer's wall clock (record times, file names, daily rotation); tests replace it. */
static int64_t (*_Atomic wall_clock)(void) = obs_wall_ns;

void audit_set_wall_clock(int64_t (*now)(void))
{
	atomic_store(&wall_clock, now != NULL ? now : obs_wall_ns);
}

static int64_t wall_now(void)
{
	return atomic_load(&wall_clock)();
}

static int utc_day(int64_t wall_ns)
{
	struct tm tm;
	time_t s = (time_t)(wall_ns / 1000000000);
	if (gmtime_r(&s, &tm) == NULL)
		return 0;
	return (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* ---- accounting of decisions that were not recorded ----------------------------------- */

static int chain_index(const struct audit_log *a, const char *id)
{
	for (size_t i = 0; id != NULL && i < a->n_chains; i++)
		if (strcmp(a->chains[i].id, id) == 0)
			return (int)i;
	return -1;
}

static void pend_add(struct pend *p, uint64_t first, uint64_t last, uint64_t n)
{
	if (p->n == 0 || first < p->first)
		p->first = first;
	if (p->n == 0 || last > p->last)
		p->last = last;
	p->n += n;
}

static void acct_event(const struct audit_log *a, struct acct *ac, const struct obs_event *ev)
{
	if (ac->total == 0 || ev->wall_ns < ac->first_ns)
		ac->first_ns = ev->wall_ns;
	if (ac->total == 0 || ev->wall_ns > ac->last_ns)
		ac->last_ns = ev->wall_ns;
	ac->total++;
	if (ev->decision == OBS_DEC_STORED)
		ac->n_stored++;
	else if (ev->decision == OBS_DEC_REFUSED)
		ac->n_refused++;
	if (ev->decision != OBS_DEC_SIGNED)
		return;
	ac->n_signed++;
	int i = chain_index(a, ev->chain_id);
	if (i >= 0 && ev->guard_seq > 0)
		pend_add(&ac->chain[i], ev->guard_seq, ev->guard_seq, 1);
}

static void acct_merge(const struct audit_log *a, struct acct *dst, const struct acct *src)
{
	if (src->total == 0)
		return;
	if (dst->total == 0 || src->first_ns < dst->first_ns)
		dst->first_ns = src->first_ns;
	if (dst->total == 0 || src->last_ns > dst->last_ns)
		dst->last_ns = src->last_ns;
	dst->total += src->total;
	dst->n_signed += src->n_signed;
	dst->n_stored += src->n_stored;
	dst->n_refused += src->n_refused;
	for (size_t i = 0; i < a->n_chains; i++)
		if (src->chain[i].n > 0)
			pend_add(&dst->chain[i], src->chain[i].first, src->chain[i].last,
				 src->chain[i].n);
}

static void acct_reset(const struct audit_log *a, struct acct *ac)
{
	struct pend *keep = ac->chain;
	memset(ac, 0, sizeof(*ac));
	ac->chain = keep;
	memset(keep, 0, a->n_chains * sizeof(*keep));
}

/* ---- the producer side (connection threads) ------------------------------------------ */

/*
 * The obs sink: copies the event into the ring and returns. chain_id, peer
 * and slot stay borrowed: they live as long as the daemon's config and slots,
 * which outlive the writer (audit_close runs first). A full queue drops the
 * event and accounts it; the writer records the drop as a note.
 */
static void audit_sink(void *ctx, const struct obs_event *ev)
{
	struct audit_log *a = ctx;
	/* Ping and PubKey are answers, not signing decisions */
	if (ev->decision == OBS_DEC_ANSWERED)
		return;
	pthread_mutex_lock(&a->mu);
	if (a->q_count == a->q_cap) {
		acct_event(a, &a->drops, ev);
		pthread_mutex_unlock(&a->mu);
		atomic_fetch_add(&a->c_dropped, 1);
		return;
	}
	a->ring[(a->q_head + a->q_count) % a->q_cap] = *ev;
	a->q_count++;
	atomic_fetch_add(&a->c_queued, 1);
	if (a->writer_idle)
		pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

int audit_admit(struct audit_log *a, char *why, size_t cap)
{
	int r = KMS_OK;
	if (a == NULL || !a->fail_closed)
		return KMS_OK;
	pthread_mutex_lock(&a->mu);
	uint64_t lag = atomic_load(&a->c_queued) - atomic_load(&a->c_settled);
	if (atomic_load(&a->c_failed)) {
		(void)snprintf(why, cap,
			       "audit log %s cannot be written (fail_closed): nothing signed",
			       a->dir);
		r = KMS_ERR_REFUSED;
	} else if (a->q_count + a->n_conns >= a->q_cap) {
		(void)snprintf(why, cap, "audit queue full (fail_closed): nothing signed");
		r = KMS_ERR_REFUSED;
	} else if (lag >= 2ull * a->batch_records + a->n_conns) {
		(void)snprintf(why, cap,
			       "audit log %llu records behind its last sync (fail_closed): nothing "
			       "signed",
			       (unsigned long long)lag);
		r = KMS_ERR_REFUSED;
	}
	pthread_mutex_unlock(&a->mu);
	return r;
}

/* ---- the status file (doctor reads it; pwrite into preallocated space, never synced) -- */

static void status_write(struct audit_log *a, const char *state)
{
	char txt[AUDIT_STATUS_SIZE];
	char since[40] = "";
	if (a->status_fd < 0)
		return;
	if (a->failed)
		audit_fmt_time(a->failed_since_ns, since);
	memset(txt, '\n', sizeof(txt));
	int k = snprintf(
		txt, sizeof(txt),
		"p11kms audit status v1\npid=%ld\nstate=%s\nsince=%s\nerror=%s\nerrno=%s\n"
		"file=%s\nqueued=%llu\nwritten=%llu\ndurable=%llu\ndropped=%llu\nlost=%llu\n"
		"write_errors=%llu\nfail_closed=%d\n",
		(long)getpid(), state, since, a->failed ? kms_strerror(a->fail_err) : "",
		a->failed && a->fail_errno ? strerror(a->fail_errno) : "", a->file,
		(unsigned long long)atomic_load(&a->c_queued),
		(unsigned long long)atomic_load(&a->c_written),
		(unsigned long long)atomic_load(&a->c_durable),
		(unsigned long long)atomic_load(&a->c_dropped),
		(unsigned long long)atomic_load(&a->c_lost),
		(unsigned long long)atomic_load(&a->c_errors), a->fail_closed);
	if (k > 0 && (size_t)k < sizeof(txt))
		txt[k] = '\n';
	ssize_t w = pwrite(a->status_fd, txt, sizeof(txt), 0);
	(void)w; /* best effort: the log line and OBS_ST_AUDIT_ERROR carry a failure too */
}

/* ---- encoding into the batch buffer ----------------------------------------------------- */

/* Frames a->body as the next record of the tentative chain. */
static int put_record(struct audit_log *a)
{
	uint8_t h[32];
	int r = audit_frame_put(a->buf, kbuf_ptr(a->body), kbuf_len(a->body), h);
	if (r != KMS_OK)
		return r;
	memcpy(a->t_hash, h, 32);
	a->t_seq++;
	a->buf_records++;
	return KMS_OK;
}

static int enc_checkpoint(struct audit_log *a, uint8_t reason)
{
	uint8_t sig[AUDIT_SIG_LEN], *msg = NULL;
	size_t mlen = 0;
	int64_t now = wall_now();
	int r = KMS_OK;
	uint16_t flags = a->ident != NULL ? AUDIT_F_CP_SIGNED : 0;
	kbuf_reset(a->body);
	if ((r = audit_enc_checkpoint(a->body, a->t_seq, a->t_hash, flags, now, reason)) != KMS_OK)
		return r;
	if (a->ident != NULL) {
		size_t cap = kbuf_len(a->body) + 128;
		if ((msg = malloc(cap)) == NULL)
			return KMS_ERR_ALLOC;
		r = audit_cp_message(a->log_id, kbuf_ptr(a->body), kbuf_len(a->body), msg, cap,
				     &mlen);
		if (r == KMS_OK)
			r = slot_sign(a->ident, msg, mlen, sig);
		free(msg);
		if (r == KMS_OK) {
			r = kbuf_put(a->body, sig, sizeof(sig));
		} else {
			/* the next signed checkpoint covers these records through the chain */
			kms_log_err("audit checkpoint at record #%llu could not be signed: %s",
				    (unsigned long long)a->t_seq, kms_strerror(r));
			kbuf_reset(a->body);
			r = audit_enc_checkpoint(a->body, a->t_seq, a->t_hash,
						 AUDIT_F_CP_SIGN_FAILED, now, reason);
		}
		if (r != KMS_OK)
			return r;
	}
	a->since_cp = 0;
	return put_record(a);
}

static int enc_decision(struct audit_log *a, const struct obs_event *ev)
{
	kbuf_reset(a->body);
	int r = audit_enc_decision(a->body, a->t_seq, a->t_hash, ev);
	if (r == KMS_OK)
		r = put_record(a);
	if (r == KMS_OK && ++a->since_cp >= a->checkpoint_every)
		r = enc_checkpoint(a, AUDIT_CP_PERIODIC);
	return r;
}

static int enc_note(struct audit_log *a, uint8_t kind, const struct acct *ac)
{
	struct audit_note nt = { .kind = kind,
				 .err = kind == AUDIT_NOTE_LOST ? a->fail_err : 0,
				 .sys_errno = kind == AUDIT_NOTE_LOST ? a->fail_errno : 0,
				 .first_ns = ac->first_ns,
				 .last_ns = ac->last_ns,
				 .total = ac->total,
				 .n_signed = ac->n_signed,
				 .n_stored = ac->n_stored,
				 .n_refused = ac->n_refused };
	for (size_t i = 0; i < a->n_chains; i++)
		nt.n_chains += ac->chain[i].n > 0;
	kbuf_reset(a->body);
	int r = audit_enc_note(a->body, a->t_seq, a->t_hash, &nt);
	for (size_t i = 0; i < a->n_chains && r == KMS_OK; i++)
		if (ac->chain[i].n > 0)
			r = audit_enc_note_chain(a->body, a->chains[i].id, ac->chain[i].n,
						 ac->chain[i].first, ac->chain[i].last);
	if (r == KMS_OK)
		r = put_record(a);
	if (r == KMS_OK && ++a->since_cp >= a->checkpoint_every)
		r = enc_checkpoint(a, AUDIT_CP_PERIODIC);
	return r;
}

static int enc_start(struct audit_log *a)
{
	kbuf_reset(a->body);
	int r = audit_enc_start(a->body, a->t_seq, a->t_hash, wall_now(), (uint32_t)getpid(),
				(uint32_t)a->n_chains);
	for (size_t i = 0; i < a->n_chains && r == KMS_OK; i++) {
		const struct achain *c = &a->chains[i];
		r = audit_enc_start_chain(a->body, c->id, c->seq, c->height, c->round, c->step,
					  c->n_conns);
	}
	return r == KMS_OK ? put_record(a) : r;
}

static int enc_header(struct audit_log *a, int64_t now)
{
	struct audit_hdr h = { .file_index = a->file_index,
			       .wall_ns = now,
			       .prev_torn = a->prev_torn,
			       .batch_records = a->batch_records,
			       .batch_ms = a->batch_ms,
			       .queue_cap = (uint32_t)a->q_cap,
			       .checkpoint_every = a->checkpoint_every,
			       .key_alg = a->ident != NULL ? 1 : 0 };
	memcpy(h.log_id, a->log_id, sizeof(h.log_id));
	if (a->ident != NULL)
		memcpy(h.key, a->pub, 32);
	kbuf_reset(a->body);
	int r = kbuf_put(a->buf, AUDIT_MAGIC, AUDIT_MAGIC_LEN);
	if (r == KMS_OK)
		r = audit_enc_header(a->body, a->t_seq, a->t_hash, &h, a->host, P11KMS_VERSION);
	return r == KMS_OK ? put_record(a) : r;
}

/* ---- writing ------------------------------------------------------------------------ */

static void drop_buffer(struct audit_log *a)
{
	kbuf_reset(a->buf);
	a->t_seq = a->next_seq;
	memcpy(a->t_hash, a->last_hash, 32);
	a->buf_records = 0;
	a->buf_events = 0;
}

/* Writes the buffered records; the chain advances only once they are in the file. */
static int flush(struct audit_log *a)
{
	size_t len = kbuf_len(a->buf);
	if (len == 0)
		return KMS_OK;
	if (a->fd < 0)
		return KMS_ERR_INTERNAL;
	errno = 0;
	if (dfile_write_full(a->fd, kbuf_ptr(a->buf), len) != KMS_OK) {
		a->fail_errno = errno;
		return KMS_ERR_SYSTEM;
	}
	a->file_size += len;
	a->next_seq = a->t_seq;
	memcpy(a->last_hash, a->t_hash, 32);
	if (a->unsynced == 0)
		a->oldest_unsynced_ms = mono_ms();
	a->unsynced += a->buf_records;
	a->unsynced_events += a->buf_events;
	atomic_fetch_add(&a->c_written, a->buf_events);
	kbuf_reset(a->buf);
	a->buf_records = 0;
	a->buf_events = 0;
	return KMS_OK;
}

static int do_sync(struct audit_log *a)
{
	if (a->unsynced == 0 || a->fd < 0)
		return KMS_OK;
	if (dfile_ops()->fdatasync(a->fd) != 0) {
		a->fail_errno = errno;
		return KMS_ERR_SYSTEM;
	}
	atomic_fetch_add(&a->c_durable, a->unsynced_events);
	atomic_fetch_add(&a->c_settled, a->unsynced_events);
	a->unsynced = 0;
	a->unsynced_events = 0;
	status_write(a, "ok");
	return KMS_OK;
}

/* Leaves the current file: cut an incomplete write off (best effort) and close it. */
static void abandon_file(struct audit_log *a)
{
	struct stat st;
	if (a->fd < 0)
		return;
	if (ftruncate(a->fd, (off_t)a->file_size) != 0)
		kms_log_warn("cannot cut the incomplete write off audit file %s/%s: %s", a->dir,
			     a->file, strerror(errno));
	if (fstat(a->fd, &st) == 0 && (uint64_t)st.st_size > a->file_size) {
		uint64_t torn = (uint64_t)st.st_size - a->file_size;
		a->prev_torn = torn > UINT32_MAX ? UINT32_MAX : (uint32_t)torn;
	}
	(void)close(a->fd);
	a->fd = -1;
	/* written but perhaps not durable: settled, so fail_closed does not count them twice */
	atomic_fetch_add(&a->c_settled, a->unsynced_events);
	a->unsynced = 0;
	a->unsynced_events = 0;
}

static void fail(struct audit_log *a, int err, const char *what)
{
	atomic_fetch_add(&a->c_errors, 1);
	if (!a->failed) {
		a->failed_since_ns = wall_now();
		kms_log_err("audit log %s failed: %s %s: %s%s%s: %s; retrying every %d ms", a->dir,
			    what, a->file, kms_strerror(err), a->fail_errno ? ": " : "",
			    a->fail_errno ? strerror(a->fail_errno) : "",
			    a->fail_closed ? "new signatures are refused (fail_closed = true)" :
					     "signing goes on without audit records "
					     "(fail_closed = false)",
			    RETRY_MS);
		obs_status(&(struct obs_status){ .kind = OBS_ST_AUDIT_ERROR, .err = err });
	}
	a->failed = 1;
	a->fail_err = err;
	atomic_store(&a->c_failed, 1);
	drop_buffer(a);
	abandon_file(a);
	a->retry_at_ms = mono_ms() + RETRY_MS;
	status_write(a, "failed");
}

/* The new file's first records (header, start record, lost note), durable with its name. */
static int fill_new_file(struct audit_log *a, const char *path, int64_t now)
{
	int r = enc_header(a, now);
	if (r == KMS_OK && a->need_start)
		r = enc_start(a);
	if (r == KMS_OK && a->lost.total > 0)
		r = enc_note(a, AUDIT_NOTE_LOST, &a->lost);
	if (r == KMS_OK)
		r = flush(a);
	if (r == KMS_OK)
		r = do_sync(a);
	if (r == KMS_OK && dfile_fsync_dir(path) != KMS_OK) {
		a->fail_errno = errno;
		r = KMS_ERR_SYSTEM;
	}
	return r;
}

/*
 * Creates the next file: preamble, header, then the start record and a lost
 * note if due; synced with its directory entry. On failure nothing of it
 * counts (it is removed, the chain and the numbering stay), except after
 * EEXIST, where the next attempt takes the next number.
 */
static int open_file(struct audit_log *a)
{
	uint64_t idx = a->file_index, seq = a->next_seq;
	uint8_t hash[32];
	int first = a->first_file;
	int64_t now = wall_now();
	char path[4096];
	memcpy(hash, a->last_hash, 32);
	a->file_index = first ? 0 : idx + 1;
	audit_file_name(a->file_index, now, a->file);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", a->dir, a->file) >= sizeof(path))
		return KMS_ERR_TOO_LARGE;
	a->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
	if (a->fd < 0) {
		a->fail_errno = errno;
		if (errno == EEXIST)
			a->first_file = 0; /* not ours: skip that number */
		else
			a->file_index = idx;
		return KMS_ERR_SYSTEM;
	}
	a->first_file = 0;
	a->file_size = 0;
	a->file_day = utc_day(now);
	int r = fill_new_file(a, path, now);
	if (r != KMS_OK) {
		(void)close(a->fd);
		a->fd = -1;
		if (unlink(path) != 0)
			kms_log_warn("cannot remove the unfinished audit file %s: %s", path,
				     strerror(errno));
		a->file_index = idx;
		a->first_file = first;
		a->next_seq = seq;
		memcpy(a->last_hash, hash, 32);
		a->unsynced = 0;
		a->unsynced_events = 0;
		drop_buffer(a);
		return r;
	}
	a->need_start = 0;
	a->prev_torn = 0;
	acct_reset(a, &a->lost);
	return KMS_OK;
}

static void try_recover(struct audit_log *a)
{
	uint64_t lost = a->lost.total;
	int r = open_file(a);
	if (r != KMS_OK) {
		fail(a, r, "re-opening");
		return;
	}
	kms_log_warn("audit log %s writable again (%s): %llu decisions could not be recorded%s",
		     a->dir, a->file, (unsigned long long)lost,
		     lost > 0 ? "; a note in the log says which" : "");
	a->failed = 0;
	a->fail_errno = 0;
	atomic_store(&a->c_failed, 0);
	status_write(a, "ok");
}

static void account_lost(struct audit_log *a, const struct obs_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++)
		acct_event(a, &a->lost, &ev[i]);
	atomic_fetch_add(&a->c_lost, n);
	atomic_fetch_add(&a->c_settled, n);
}

static int rotate_due(const struct audit_log *a)
{
	if (a->rotate_bytes > 0 && a->file_size + kbuf_len(a->buf) >= a->rotate_bytes)
		return 1;
	return a->rotate_daily && utc_day(wall_now()) != a->file_day;
}

/* Ends the file with a rotate checkpoint and opens the next one. */
static int rotate(struct audit_log *a)
{
	int r = enc_checkpoint(a, AUDIT_CP_ROTATE);
	if (r == KMS_OK)
		r = flush(a);
	if (r == KMS_OK)
		r = do_sync(a);
	if (r != KMS_OK)
		return r;
	if (close(a->fd) != 0) {
		a->fail_errno = errno;
		a->fd = -1;
		return KMS_ERR_SYSTEM;
	}
	a->fd = -1;
	return open_file(a);
}

/* Writes one batch (and the drops taken with it); on failure accounts what was not written. */
static void write_batch(struct audit_log *a, const struct obs_event *ev, size_t n)
{
	size_t first = 0; /* the first event not yet in the file */
	int r = KMS_OK;
	const char *what = "writing";
	if (a->failed) {
		account_lost(a, ev, n);
		acct_merge(a, &a->lost, &a->taken);
		return;
	}
	for (size_t i = 0; i < n && r == KMS_OK; i++) {
		if (rotate_due(a)) {
			r = rotate(a);
			if (kbuf_len(a->buf) == 0)
				first = i; /* what was buffered is in the old file */
			if (r != KMS_OK) {
				what = "rotating";
				break;
			}
		}
		r = enc_decision(a, &ev[i]);
		a->buf_events++;
	}
	if (r == KMS_OK && a->taken.total > 0)
		r = enc_note(a, AUDIT_NOTE_DROPPED, &a->taken);
	if (r == KMS_OK && (r = flush(a)) == KMS_OK)
		return;
	fail(a, r, what);
	account_lost(a, ev + first, n - first);
	acct_merge(a, &a->lost, &a->taken);
}

static void maybe_sync(struct audit_log *a, int closing)
{
	if (a->failed || a->unsynced == 0)
		return;
	if (a->unsynced < a->batch_records && !closing &&
	    mono_ms() - a->oldest_unsynced_ms < (int64_t)a->batch_ms)
		return;
	if (do_sync(a) != KMS_OK)
		fail(a, KMS_ERR_SYSTEM, "syncing");
}

static void finish(struct audit_log *a)
{
	if (a->failed)
		try_recover(a);
	int r = a->failed ? KMS_ERR_SYSTEM : enc_checkpoint(a, AUDIT_CP_SHUTDOWN);
	if (r == KMS_OK)
		r = flush(a);
	if (r == KMS_OK)
		r = do_sync(a);
	if (r != KMS_OK) {
		kms_log_err("audit log %s closed without its shutdown checkpoint (%s): %llu "
			    "decisions were not recorded",
			    a->dir, kms_strerror(r), (unsigned long long)atomic_load(&a->c_lost));
		drop_buffer(a);
	}
	if (a->fd >= 0 && close(a->fd) != 0)
		kms_log_err("closing audit file %s/%s: %s", a->dir, a->file, strerror(errno));
	a->fd = -1;
	status_write(a, r == KMS_OK ? "stopped" : "failed");
}

/* The deadline the writer sleeps to: the batch's sync time, or the next retry. */
static int64_t next_deadline(const struct audit_log *a)
{
	int64_t d = -1;
	if (a->unsynced > 0)
		d = a->oldest_unsynced_ms + (int64_t)a->batch_ms;
	if (a->failed && (d < 0 || a->retry_at_ms < d))
		d = a->retry_at_ms;
	return d;
}

/* Waits for work (mu held). */
static void wait_work(struct audit_log *a)
{
	while (a->q_count == 0 && !a->closing && a->drops.total == 0) {
		int64_t d = next_deadline(a);
		a->writer_idle = 1;
		if (d < 0) {
			pthread_cond_wait(&a->cv, &a->mu);
		} else {
			if (d <= mono_ms()) {
				a->writer_idle = 0;
				return;
			}
			struct timespec ts = { .tv_sec = (time_t)(d / 1000),
					       .tv_nsec = (long)(d % 1000) * 1000000 };
			(void)pthread_cond_timedwait(&a->cv, &a->mu, &ts);
		}
		a->writer_idle = 0;
	}
}

static void *writer_main(void *arg)
{
	struct audit_log *a = arg;
	for (;;) {
		pthread_mutex_lock(&a->mu);
		wait_work(a);
		size_t n = 0;
		while (n < BATCH_MAX && a->q_count > 0) {
			a->batch[n++] = a->ring[a->q_head];
			a->q_head = (a->q_head + 1) % a->q_cap;
			a->q_count--;
		}
		acct_reset(a, &a->taken);
		acct_merge(a, &a->taken, &a->drops);
		acct_reset(a, &a->drops);
		int closing = a->closing && a->q_count == 0;
		pthread_mutex_unlock(&a->mu);
		if (a->failed && mono_ms() >= a->retry_at_ms)
			try_recover(a);
		if (n > 0 || a->taken.total > 0)
			write_batch(a, a->batch, n);
		maybe_sync(a, closing);
		if (closing)
			break;
	}
	finish(a);
	return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

static int setup_chains(struct audit_log *a, const struct cfg *cfg)
{
	a->chains = calloc(cfg->n_chains + 1, sizeof(*a->chains));
	if (a->chains == NULL)
		return KMS_ERR_ALLOC;
	for (size_t i = 0; i < cfg->n_chains; i++) {
		const struct cfg_chain *cc = &cfg->chains[i];
		unsigned n = 0;
		for (size_t j = 0; j < cfg->n_validators; j++)
			n += strcmp(cfg->validators[j].chain_id, cc->id) == 0;
		if (n == 0)
			continue;
		struct achain *c = &a->chains[a->n_chains++];
		c->id = cc->id;
		c->n_conns = n;
		a->n_conns += n;
		if (audit_state_read(cc->state_file, &c->seq, &c->height, &c->round, &c->step) !=
		    KMS_OK)
			kms_log_warn("audit: cannot read the state of chain %s (%s): its start "
				     "record gives sequence 0",
				     cc->id, cc->state_file);
	}
	return KMS_OK;
}

static int prepare_dir(const char *dir)
{
	struct stat st;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;
		kms_log_err("cannot create the audit directory %s (audit.dir): %s", dir,
			    strerror(e));
		return e == ENOENT ? KMS_ERR_NOT_FOUND :
		       e == EACCES ? KMS_ERR_PERM :
				     KMS_ERR_SYSTEM;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		kms_log_err("audit.dir %s is not a directory", dir);
		return KMS_ERR_CONFIG;
	}
	/* whoever can write the directory can replace the log: keep it to this user */
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		kms_log_err("audit directory %s is writable by group or others (mode %04o): chmod "
			    "go-w %s",
			    dir, (unsigned)(st.st_mode & 07777), dir);
		return KMS_ERR_PERM;
	}
	return KMS_OK;
}

/* Picks up the chain from the file at path; 0 if it holds no readable record. */
static int resume_from(struct audit_log *a, const char *path)
{
	uint8_t *img = NULL;
	size_t len = 0;
	struct audit_scan s;
	int ok = audit_file_load(path, RESUME_MAX, &img, &len) == KMS_OK &&
		 audit_scan_file(img, len, &s) == KMS_OK && s.has_header && s.has_last;
	if (!ok) {
		/* a process killed between creating a file and writing it leaves it empty */
		if (len > 0)
			kms_log_err("audit file %s is unreadable: the log continues from the file "
				    "before it; run `p11kms audit verify`",
				    path);
		free(img);
		return 0;
	}
	memcpy(a->log_id, s.log_id, sizeof(a->log_id));
	a->next_seq = s.last_seq + 1 + s.after_last;
	memcpy(a->last_hash, s.last_hash, 32);
	a->prev_torn = s.torn > UINT32_MAX ? UINT32_MAX : (uint32_t)s.torn;
	if (s.damaged)
		kms_log_err("audit file %s is damaged: the log continues after it; run "
			    "`p11kms audit verify` to see where",
			    path);
	if (s.torn > 0)
		kms_log_warn("audit file %s ends with %zu bytes of an incomplete record (a crash "
			     "while writing); the next file records it",
			     path, s.torn);
	free(img);
	return 1;
}

/*
 * Continues the chain of the newest readable file (numbering after the
 * newest file of any kind), or begins a new log with a new id.
 */
static int resume(struct audit_log *a)
{
	char **paths = NULL;
	size_t n = 0;
	int resumed = 0, r = audit_dir_list(a->dir, &paths, &n);
	a->first_file = 1;
	if (r != KMS_OK)
		return r;
	if (n > 0) {
		const char *base = strrchr(paths[n - 1], '/');
		if (audit_file_index(base != NULL ? base + 1 : paths[n - 1], &a->file_index) == 0)
			a->first_file = 0;
	}
	for (size_t i = n; i-- > 0 && !resumed;)
		resumed = resume_from(a, paths[i]);
	if (!resumed && n > 0)
		kms_log_err("no readable file in audit directory %s: starting a new log", a->dir);
	if (!resumed && kcrypto_random(a->log_id, sizeof(a->log_id)) != KMS_OK)
		r = KMS_ERR_CRYPTO;
	audit_paths_free(paths, n);
	return r;
}

static int alloc_state(struct audit_log *a)
{
	a->ring = calloc(a->q_cap, sizeof(*a->ring));
	a->batch = calloc(BATCH_MAX, sizeof(*a->batch));
	a->drops.chain = calloc(a->n_chains + 1, sizeof(struct pend));
	a->taken.chain = calloc(a->n_chains + 1, sizeof(struct pend));
	a->lost.chain = calloc(a->n_chains + 1, sizeof(struct pend));
	/* a batch: every event, a checkpoint after each, a note: far below 32 MiB */
	a->buf = kbuf_new((size_t)32 << 20);
	a->body = kbuf_new(AUDIT_BODY_MAX);
	if (a->ring == NULL || a->batch == NULL || a->drops.chain == NULL ||
	    a->taken.chain == NULL || a->lost.chain == NULL || a->buf == NULL || a->body == NULL)
		return KMS_ERR_ALLOC;
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return KMS_ERR_SYSTEM;
	int e = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (e == 0)
		e = pthread_cond_init(&a->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (e != 0)
		return KMS_ERR_SYSTEM;
	if (pthread_mutex_init(&a->mu, NULL) != 0) {
		pthread_cond_destroy(&a->cv);
		return KMS_ERR_SYSTEM;
	}
	return KMS_OK;
}

static void free_log(struct audit_log *a, int sync_objects)
{
	if (a == NULL)
		return;
	if (sync_objects) {
		pthread_mutex_destroy(&a->mu);
		pthread_cond_destroy(&a->cv);
	}
	if (a->fd >= 0)
		(void)close(a->fd);
	if (a->status_fd >= 0)
		(void)close(a->status_fd); /* releases the directory's lock */
	kbuf_free(a->buf);
	kbuf_free(a->body);
	free(a->ring);
	free(a->batch);
	free(a->drops.chain);
	free(a->taken.chain);
	free(a->lost.chain);
	free(a->chains);
	free(a->dir);
	free(a);
}

static int check_config(struct audit_log *a, const struct cfg_audit *ac, struct slot *ident)
{
	if (ac->sign_checkpoints) {
		if (ident == NULL) {
			kms_log_err("audit.sign_checkpoints needs a Secret Connection identity "
				    "(a tcp:// validators entry with secret_key)");
			return KMS_ERR_CONFIG;
		}
		a->ident = ident;
		slot_pubkey(ident, a->pub);
	}
	if (ac->fail_closed && a->q_cap <= (size_t)a->n_conns + 1) {
		kms_log_err("audit.queue = %zu is too small for fail_closed with %u connections",
			    a->q_cap, a->n_conns);
		return KMS_ERR_CONFIG;
	}
	return KMS_OK;
}

int audit_start(const struct cfg *cfg, struct slot *ident, struct audit_log **out)
{
	const struct cfg_audit *ac = &cfg->audit;
	struct audit_log *a;
	int r = KMS_ERR_ALLOC;
	*out = NULL;
	if (!ac->enabled)
		return KMS_OK;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return KMS_ERR_ALLOC;
	a->fd = -1;
	a->status_fd = -1;
	a->batch_records = ac->batch_records;
	a->batch_ms = ac->batch_ms;
	a->checkpoint_every = ac->checkpoint_every;
	a->rotate_bytes = ac->rotate_bytes;
	a->rotate_daily = ac->rotate_daily;
	a->fail_closed = ac->fail_closed;
	a->q_cap = ac->queue;
	a->need_start = 1;
	if (gethostname(a->host, sizeof(a->host) - 1) != 0)
		(void)snprintf(a->host, sizeof(a->host), "?");
	if ((a->dir = strdup(ac->dir)) == NULL || (r = setup_chains(a, cfg)) != KMS_OK ||
	    (r = check_config(a, ac, ident)) != KMS_OK || (r = prepare_dir(a->dir)) != KMS_OK ||
	    (r = audit_lock_dir(a->dir, &a->status_fd)) != KMS_OK || (r = resume(a)) != KMS_OK ||
	    (r = alloc_state(a)) != KMS_OK) {
		free_log(a, 0);
		return r;
	}
	a->t_seq = a->next_seq;
	memcpy(a->t_hash, a->last_hash, 32);
	/* a full or failing disk does not stop the daemon: the writer retries */
	if ((r = open_file(a)) != KMS_OK)
		fail(a, r, "creating");
	else
		status_write(a, "ok");
	if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
		kms_log_err("cannot start the audit writer thread: %s", strerror(errno));
		free_log(a, 1);
		return KMS_ERR_SYSTEM;
	}
	a->started = 1;
	if ((r = obs_sink_add(audit_sink, a, 1)) != KMS_OK) {
		kms_log_err("cannot register the audit sink: %s", kms_strerror(r));
		audit_close(a);
		return r;
	}
	kms_log_info("audit log dir=%s file=%s record=#%llu%s%s", a->dir, a->file,
		     (unsigned long long)a->next_seq, a->ident != NULL ? " checkpoints=signed" : "",
		     a->fail_closed ? " fail_closed=true" : "");
	*out = a;
	return KMS_OK;
}

void audit_close(struct audit_log *a)
{
	if (a == NULL)
		return;
	if (a->started) {
		pthread_mutex_lock(&a->mu);
		a->closing = 1;
		pthread_cond_signal(&a->cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->thread, NULL);
	}
	free_log(a, 1);
}

void audit_counters_get(struct audit_log *a, struct audit_counters *c)
{
	memset(c, 0, sizeof(*c));
	if (a == NULL)
		return;
	c->queued = atomic_load(&a->c_queued);
	c->written = atomic_load(&a->c_written);
	c->durable = atomic_load(&a->c_durable);
	c->dropped = atomic_load(&a->c_dropped);
	c->lost = atomic_load(&a->c_lost);
	c->write_errors = atomic_load(&a->c_errors);
	c->failed = atomic_load(&a->c_failed);
}
