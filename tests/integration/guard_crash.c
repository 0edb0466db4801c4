/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guard's kill -9 test: a child signs an advancing random sequence through
 * guard_sign (Ed25519 via kcrypto) and reports every released signature's
 * (H/R/S, SHA-256 of the signed bytes) on a pipe before it would reply; the
 * parent SIGKILLs it at random instants, reopens the state and checks that the
 * state is never behind a released signature and that no H/R/S was ever
 * released for two different sign bytes, across all restarts. A kill inside a
 * record write leaves that record torn in the page cache: start refuses it
 * (issue 15), and the parent does what the operator would after a crash,
 * `state repair --accept-record` of the valid one, before checking.
 * P11KMS_CRASH_ITERATIONS (default 1000), P11KMS_CRASH_SEED.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "test_guard_util.h"

#define CHAIN "haqq_11235-1"

struct report {
	int64_t h;
	int32_t r;
	int32_t s;
	uint8_t hash[32];
};

/* A report with this step: the child has started (state durable) and serves. */
#define READY (-1)

static const uint8_t seed[32] = { 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,	 7,  7,	 7,  7,	 7,  7,
				  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static int ed_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	(void)ctx;
	return kcrypto_ed25519_sign(seed, msg, len, sig);
}

static int cmp_hrs(int64_t h1, int32_t r1, int s1, const struct guard_hrs *b)
{
	if (h1 != b->height)
		return h1 < b->height ? -1 : 1;
	if (r1 != b->round)
		return r1 < b->round ? -1 : 1;
	return s1 < (int)b->step ? -1 : s1 > (int)b->step;
}

/* ---- the child: sign forever, report each release, never return ---- */

static void next_msg(uint64_t *rng, const struct guard_hrs *last, struct tg_msg *q)
{
	uint64_t pick = tg_rand(rng) % 100;
	memset(q, 0, sizeof(*q));
	q->h = last->height < 1 ? 1 : last->height;
	q->r = last->round;
	q->step = last->step == GUARD_STEP_NONE ? GUARD_STEP_PROPOSE : last->step;
	if (pick < 60) { /* advance: next step, round or height */
		if (q->step < GUARD_STEP_PRECOMMIT && pick < 40)
			q->step = (enum guard_step)(q->step + 1);
		else if (pick < 50)
			q->r++, q->step = (enum guard_step)(1 + tg_rand(rng) % 3);
		else
			q->h++, q->r = 0, q->step = GUARD_STEP_PROPOSE;
	} else if (pick < 85) {
		/* the same H/R/S again: identical, timestamp-only or conflicting */
	} else if (q->step > GUARD_STEP_PROPOSE) { /* a step regression attempt */
		q->step = (enum guard_step)(q->step - 1);
	} else if (q->r > 0) {
		q->r--;
	} else {
		q->h--;
	}
	q->block = (int)(tg_rand(rng) % 3);
	if (q->step == GUARD_STEP_PROPOSE) {
		q->block = 1 + (int)(tg_rand(rng) % 2);
		q->pol = -1;
	}
	q->ts_s = 1700000000 + (int64_t)q->h;
	q->ts_n = (int32_t)(tg_rand(rng) % 2);
	q->chain = CHAIN;
}

/*
 * Half of the children write records in 256-byte pieces with a pause between
 * them, so that kills land inside a record write: the torn record must fail
 * its checksum and the previous one must stand (SIGKILL alone cannot lose
 * page-cache data; this is how the test reaches the torn-write path).
 */
static ssize_t slow_pwrite(int fd, const void *p, size_t n, off_t off)
{
	struct timespec ts = { 0, 30000 };
	if (n > 256)
		n = 256;
	nanosleep(&ts, NULL);
	return pwrite(fd, p, n, off);
}

static struct dfile_ops torn_ops;

static void child(int wfd, uint64_t rng)
{
	struct guard *g = NULL;
	uint8_t pub[32];
	kms_log_set_quiet(1);
	if (rng & 1) {
		torn_ops = *dfile_ops();
		torn_ops.pwrite = slow_pwrite;
		dfile_set_ops(&torn_ops);
	}
	if (kcrypto_ed25519_pub_from_seed(seed, pub) != KMS_OK)
		_exit(10);
	int r = tg_open(getenv("P11KMS_CRASH_STATE"), CHAIN, &g);
	if (r != KMS_OK || guard_make_durable(g) != KMS_OK)
		_exit(11);
	/* serving from now on: the parent may time its kill from here */
	struct report ready = { 0, 0, READY, { 0 } };
	if (write(wfd, &ready, sizeof(ready)) != (ssize_t)sizeof(ready))
		_exit(16);
	for (;;) {
		struct guard_hrs last;
		struct tg_msg q;
		uint8_t sb[512], stored[512], hash[32];
		struct guard_result res;
		guard_last(g, &last);
		next_msg(&rng, &last, &q);
		size_t n = tg_sign_bytes(&q, sb, sizeof(sb));
		struct guard_request req = { { q.h, (int32_t)q.r, q.step }, sb, n };
		int behind = cmp_hrs(q.h, (int32_t)q.r, (int)q.step, &last) < 0;
		r = guard_sign(g, &req, ed_sign, NULL, &res);
		if (r != KMS_OK) {
			if (r != KMS_ERR_DOUBLE_SIGN)
				_exit(12);
			continue;
		}
		if (behind)
			_exit(13); /* a regression was signed */
		/* what the released signature covers: the stored message when the ts was replaced */
		const uint8_t *signed_bytes = sb;
		size_t signed_len = n;
		if (res.timestamp_replaced) {
			q.ts_s = res.ts_seconds;
			q.ts_n = res.ts_nanos;
			signed_len = tg_sign_bytes(&q, stored, sizeof(stored));
			signed_bytes = stored;
		}
		if (kcrypto_ed25519_verify(pub, signed_bytes, signed_len, res.signature) != KMS_OK)
			_exit(14);
		if (kcrypto_sha256(signed_bytes, signed_len, hash) != KMS_OK)
			_exit(15);
		struct report rep = { q.h, (int32_t)q.r, (int32_t)q.step, { 0 } };
		memcpy(rep.hash, hash, 32);
		/* report BEFORE replying: the parent's record covers everything released */
		if (write(wfd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			_exit(16);
	}
}

/* ---- the parent's record of releases: open addressing on H/R/S ---- */

struct table {
	struct report *e;
	size_t cap, n;
};

static size_t slot_of(const struct table *t, const struct report *x)
{
	uint64_t k = (uint64_t)x->h * 0x9e3779b97f4a7c15ull ^
		     (uint64_t)x->r * 0xff51afd7ed558ccdull ^ (uint64_t)x->s;
	size_t i = (size_t)(k ^ (k >> 29)) & (t->cap - 1);
	while (t->e[i].s != 0 && (t->e[i].h != x->h || t->e[i].r != x->r || t->e[i].s != x->s))
		i = (i + 1) & (t->cap - 1);
	return i;
}

static void grow(struct table *t)
{
	struct table nt = { calloc(t->cap * 2, sizeof(struct report)), t->cap * 2, 0 };
	if (nt.e == NULL)
		abort();
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].s != 0) {
			nt.e[slot_of(&nt, &t->e[i])] = t->e[i];
			nt.n++;
		}
	free(t->e);
	*t = nt;
}

/* 0: new or the same bytes as before; -1: a conflicting release. */
static int record(struct table *t, const struct report *x, size_t *dups)
{
	if (2 * (t->n + 1) > t->cap)
		grow(t);
	size_t i = slot_of(t, x);
	if (t->e[i].s == 0) {
		t->e[i] = *x;
		t->n++;
		return 0;
	}
	(*dups)++;
	return memcmp(t->e[i].hash, x->hash, 32) == 0 ? 0 : -1;
}

static size_t torn_seen;
static void sink(enum kms_log_level level, const char *line, void *ctx)
{
	(void)level, (void)ctx;
	if (strstr(line, "double-sign state in doubt") != NULL)
		torn_seen++;
}

/*
 * A kill inside a record write: start refuses the torn record; the operator
 * accepts the one valid record (its signature is the last released one: the
 * torn one's never left). Anything else is a failure.
 */
static int repair_after_kill(const char *path)
{
	struct guard_repair_view v;
	if (guard_state_repair_view(path, &v) != KMS_OK || v.accept_slot < 0) {
		fprintf(stderr, "state refused after a kill, and not one valid record to keep\n");
		return -1;
	}
	return guard_state_repair_accept(path, CHAIN, v.rec[v.accept_slot].seq) == KMS_OK ? 0 : -1;
}

int main(void)
{
	const char *it = getenv("P11KMS_CRASH_ITERATIONS"), *sd = getenv("P11KMS_CRASH_SEED");
	long iters = it ? strtol(it, NULL, 10) : 1000;
	uint64_t rng = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL);
	char path[300];
	const char *tmpdir = getenv("TMPDIR");
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/p11kms-crash-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/state.bin", dir);
	setenv("P11KMS_CRASH_STATE", path, 1);
	kms_log_set_quiet(1);
	kms_log_set_sink(sink, NULL);
	printf("guard_crash: iterations=%ld seed=%llu state=%s\n", iters, (unsigned long long)rng,
	       path);
	if (guard_state_init(path, CHAIN, 0, 0, GUARD_STEP_NONE) != KMS_OK)
		return 1;
	struct table t = { calloc(1u << 16, sizeof(struct report)), 1u << 16, 0 };
	size_t releases = 0, dups = 0, selfexit = 0;
	int failed = 0;
	struct guard_hrs last = { 0, 0, GUARD_STEP_NONE };
	for (long i = 0; i < iters && !failed; i++) {
		int pfd[2];
		if (pipe(pfd) != 0)
			return 1;
		uint64_t cseed = tg_rand(&rng);
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			close(pfd[0]);
			child(pfd[1], cseed);
		}
		close(pfd[1]);
		/*
		 * Half of the kills are timed from the fork, so that some land in the
		 * start-up re-persist; the other half from the child's READY, so that
		 * on a slow disk most children still sign before they die.
		 */
		struct report first;
		struct pollfd pf = { pfd[0], POLLIN, 0 };
		int from_ready = (int)(tg_rand(&rng) & 1);
		if (from_ready && poll(&pf, 1, 20000) == 1 &&
		    read(pfd[0], &first, sizeof(first)) == (ssize_t)sizeof(first) &&
		    first.s != READY) {
			fprintf(stderr, "iteration %ld: the child's first report is not READY\n",
				i);
			failed = 1;
		}
		struct timespec ts = { 0, (long)(tg_rand(&rng) % 30000) * 1000 }; /* 0..30 ms */
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
			selfexit++;
			if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
				fprintf(stderr, "iteration %ld: child failed with exit %d\n", i,
					WEXITSTATUS(st));
				failed = 1;
			}
		}
		/* every release this child reported (the pipe holds them; the writer is dead) */
		struct report rep, maxrep = { -1, 0, 0, { 0 } };
		ssize_t n;
		while ((n = read(pfd[0], &rep, sizeof(rep))) == (ssize_t)sizeof(rep)) {
			if (rep.s == READY)
				continue;
			releases++;
			if (record(&t, &rep, &dups) != 0) {
				fprintf(stderr,
					"CONFLICT: two different sign bytes released at %lld/%d/%d\n",
					(long long)rep.h, rep.r, rep.s);
				failed = 1;
			}
			if (maxrep.h < 0 ||
			    cmp_hrs(rep.h, rep.r, rep.s,
				    &(struct guard_hrs){ maxrep.h, maxrep.r,
							 (enum guard_step)maxrep.s }) > 0)
				maxrep = rep;
		}
		close(pfd[0]);
		if (n != 0) {
			fprintf(stderr, "iteration %ld: torn report on the pipe\n", i);
			failed = 1;
		}
		/* the state must open, and never be behind what was released */
		struct guard *g = NULL;
		int r = tg_open(path, CHAIN, &g);
		if (r == KMS_ERR_FORMAT && repair_after_kill(path) == 0)
			r = tg_open(path, CHAIN, &g);
		if (r != KMS_OK) {
			fprintf(stderr, "iteration %ld: state does not open after kill: %s\n", i,
				kms_strerror(r));
			failed = 1;
			break;
		}
		guard_last(g, &last);
		guard_free(g);
		if (maxrep.h >= 0 && cmp_hrs(maxrep.h, maxrep.r, maxrep.s, &last) > 0) {
			fprintf(stderr,
				"iteration %ld: state %lld/%d/%d is BEHIND released %lld/%d/%d\n",
				i, (long long)last.height, last.round, (int)last.step,
				(long long)maxrep.h, maxrep.r, maxrep.s);
			failed = 1;
		}
	}
	printf("guard_crash: %s: releases=%zu distinct_hrs=%zu repeated_hrs=%zu torn_refused_repaired=%zu "
	       "child_self_exits=%zu final=%lld/%d/%d\n",
	       failed ? "FAILED" : "ok", releases, t.n, dups, torn_seen, selfexit,
	       (long long)last.height, last.round, (int)last.step);
	free(t.e);
	unlink(path);
	char side[320];
	snprintf(side, sizeof(side), "%s.pid", path);
	unlink(side);
	rmdir(dir);
	if (!failed && releases == 0) {
		fprintf(stderr, "no signature was ever released: the test proved nothing\n");
		failed = 1;
	}
	return failed;
}
