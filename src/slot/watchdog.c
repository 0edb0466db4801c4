/* SPDX-License-Identifier: Apache-2.0 */
/* The watchdog: every token call runs on a worker thread, and its caller waits only until a deadline. */
#include "slot_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"
#include "p11kms/obs.h"

/*
 * PKCS#11 has no timeouts, and USB tokens hang (tmkms #806, #37). So a slot's
 * token calls (loading the module, finding the token, C_OpenSession, C_Login,
 * C_FindObjects, C_Sign, ...) all run on worker threads from a pool: the caller
 * hands a job over and waits on a condition variable until the deadline. It
 * holds no lock while it waits, so a hung token never holds the slot mutex or
 * the chain's guard lock past the deadline.
 *
 * At the deadline the caller gets KMS_ERR_TIMEOUT and abandons the worker: it
 * is detached, keeps a reference on the slot, and when (if) the token answers
 * it wipes its late result, closes its sessions and frees itself. Each member
 * (token) of a slot has at most SLOT_HUNG_MAX abandoned workers; beyond that it
 * gets no more calls until one comes back, so threads and memory stay bounded
 * however long a token hangs.
 */
enum wd_state { WD_IDLE, WD_PENDING, WD_DONE };

/* Abandoned workers still running, in every slot (slot_wd_drain). */
static pthread_mutex_t drain_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t drain_cv = PTHREAD_COND_INITIALIZER;
static int n_abandoned;

static void abandoned_count(int delta)
{
	pthread_mutex_lock(&drain_mu);
	n_abandoned += delta;
	pthread_cond_broadcast(&drain_cv);
	pthread_mutex_unlock(&drain_mu);
}

int slot_wd_drain(int64_t deadline_ms)
{
	int left;
	pthread_mutex_lock(&drain_mu);
	while (n_abandoned > 0 && slot_now_ms() < deadline_ms) {
		struct timespec ts = { 0, 10 * 1000000L }, now;
		/* drain_cv uses CLOCK_REALTIME (static initialiser): wait in short steps */
		clock_gettime(CLOCK_REALTIME, &now);
		ts.tv_sec += now.tv_sec;
		ts.tv_nsec += now.tv_nsec;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&drain_cv, &drain_mu, &ts);
	}
	left = n_abandoned;
	pthread_mutex_unlock(&drain_mu);
	return left == 0;
}

struct slot_worker {
	struct slot *s;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	enum wd_state state;
	atomic_int done; /* state == WD_DONE, published after w->mu is released (slot_run spins on it) */
	int quit, abandoned;
	enum slot_op op;
	size_t mbi;
	uint8_t *msg; /* the worker's copy: the caller may return before the token does */
	size_t len, cap;
	uint8_t sig[64];
	struct slot_hygiene hy;
	int r;
	unsigned long ckr;
	int64_t deadline_ms;
	struct pk11_module *stuck_in;		/* counted as stuck there while abandoned */
	struct slot_wsess ws[SLOT_MAX_MEMBERS]; /* this worker's session on each member */
	struct slot_worker *next;
};

int64_t slot_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void slot_abstime(int64_t ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ms / 1000);
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

void slot_set_timeout(struct slot *s, unsigned timeout_ms)
{
	pthread_mutex_lock(&s->mu);
	s->timeout_ms = timeout_ms;
	pthread_mutex_unlock(&s->mu);
}

static void worker_free(struct slot_worker *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	kms_wipe(w->sig, sizeof(w->sig));
	if (w->msg)
		kms_wipe(w->msg, w->cap);
	free(w->msg);
	free(w);
}

static int run_job(struct slot_worker *w, uint8_t sig[static 64], struct slot_hygiene *hy,
		   unsigned long *ckr)
{
	struct slot_member *mb = &w->s->mb[w->mbi];
	struct slot_wsess *ws = &w->ws[w->mbi];
	if (w->op == SLOT_OP_HYGIENE)
		return slot_mb_hygiene(mb, ws, w->deadline_ms, hy, ckr);
	return slot_mb_sign(mb, ws, w->deadline_ms, w->msg, w->len, sig, ckr);
}

/* A late answer: the token came back for an abandoned call. */
static void worker_late(struct slot_worker *w)
{
	struct slot *s = w->s;
	struct slot_member *mb = &s->mb[w->mbi];
	int was;
	pthread_mutex_lock(&s->mu);
	was = mb->hung--;
	if (mb->hung < SLOT_HUNG_MAX)
		mb->cap_logged = 0;
	pthread_mutex_unlock(&s->mu);
	if (w->stuck_in)
		pk11_module_stuck(w->stuck_in, -1);
	kms_log_warn("a timed-out token call on %s returned after all (%d still stuck); its "
		     "result was wiped and dropped",
		     mb->su.text, was - 1);
}

static void *worker_main(void *arg)
{
	struct slot_worker *w = arg;
	struct slot *s = w->s;
	int abandoned = 0;
	size_t i;

	for (;;) {
		uint8_t sig[64];
		struct slot_hygiene hy;
		unsigned long ckr = 0;
		int r;
		pthread_mutex_lock(&w->mu);
		while (w->state != WD_PENDING && !w->quit)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->quit) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		pthread_mutex_unlock(&w->mu);
		memset(&hy, 0, sizeof(hy));
		r = run_job(w, sig, &hy, &ckr);
		pthread_mutex_lock(&w->mu);
		memcpy(w->sig, sig, sizeof(sig));
		w->hy = hy;
		w->r = r;
		w->ckr = ckr;
		w->state = WD_DONE;
		abandoned = w->abandoned;
		pthread_mutex_unlock(&w->mu);
		atomic_store_explicit(&w->done, 1, memory_order_release);
		/* After the unlock: the woken caller then finds w->mu free instead of
		 * blocking on it again (two futex calls and a context switch less). w
		 * stays valid: an abandoned w is this thread's, any other is freed only
		 * after this thread is joined; a wake-up for a later job is harmless. */
		pthread_cond_signal(&w->cv);
		kms_wipe(sig, sizeof(sig));
		if (abandoned)
			break;
	}
	if (abandoned) /* nobody else points at w any more */
		worker_late(w);
	for (i = 0; i < s->n; i++)
		slot_mb_close(&s->mb[i], &w->ws[i]);
	if (abandoned) {
		worker_free(w);
		slot_unref(s);
		abandoned_count(-1);
	}
	return NULL;
}

static struct slot_worker *worker_new(struct slot *s)
{
	struct slot_worker *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	if (!w)
		return NULL;
	w->s = s;
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&s->mu);
	s->refs++;
	pthread_mutex_unlock(&s->mu);
	if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
		kms_log_err("cannot start a token worker thread for %s", s->mb[0].su.text);
		slot_unref(s);
		worker_free(w);
		return NULL;
	}
	return w;
}

static struct slot_worker *pool_take(struct slot *s)
{
	struct slot_worker *w;
	pthread_mutex_lock(&s->mu);
	if ((w = s->idle))
		s->idle = w->next;
	pthread_mutex_unlock(&s->mu);
	return w ? w : worker_new(s);
}

static void pool_give(struct slot *s, struct slot_worker *w)
{
	pthread_mutex_lock(&s->mu);
	w->next = s->idle;
	s->idle = w;
	pthread_mutex_unlock(&s->mu);
}

/* Fails closed when the member already has SLOT_HUNG_MAX calls stuck in its token. */
static int capped(struct slot *s, size_t mbi)
{
	struct slot_member *mb = &s->mb[mbi];
	int hung, tell;
	pthread_mutex_lock(&s->mu);
	hung = mb->hung;
	tell = hung >= SLOT_HUNG_MAX && !mb->cap_logged;
	if (tell)
		mb->cap_logged = 1;
	pthread_mutex_unlock(&s->mu);
	if (tell)
		kms_log_err("%d token calls on %s have not returned (the most p11kms leaves "
			    "behind per token): it gets no more calls until one returns; replug "
			    "or reset the token, or restart p11kms",
			    hung, mb->su.text);
	return hung >= SLOT_HUNG_MAX;
}

static int hand_over(struct slot_worker *w, enum slot_op op, size_t mbi, const uint8_t *msg,
		     size_t len, int64_t deadline)
{
	if (len > w->cap) {
		uint8_t *grown = malloc(len);
		if (!grown)
			return KMS_ERR_ALLOC;
		if (w->msg)
			kms_wipe(w->msg, w->cap);
		free(w->msg);
		w->msg = grown;
		w->cap = len;
	}
	if (len)
		memcpy(w->msg, msg, len);
	w->len = len;
	w->op = op;
	w->mbi = mbi;
	w->deadline_ms = deadline;
	w->state = WD_PENDING;
	atomic_store_explicit(&w->done, 0, memory_order_relaxed);
	return KMS_OK;
}

/*
 * Waits up to SPIN_NS for the worker to finish, without sleeping. A fast token
 * (softsign: about 20 us) is then done before the caller would have gone to
 * sleep, and the caller is not woken by the scheduler: on a VM each sleep and
 * wake-up pair costs tens of microseconds. A slow or hung token costs SPIN_NS
 * of one CPU, then the caller sleeps on the condition variable as before.
 */
#define SPIN_NS 300000
static void spin_for_done(struct slot_worker *w)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(&w->done, memory_order_acquire))
			return;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		if (i % 64 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > SPIN_NS)
				return;
		}
	}
}

/* The caller gives up on w: it belongs to itself from now on (w->mu held). */
static void abandon(struct slot *s, struct slot_worker *w, size_t mbi, unsigned ms)
{
	abandoned_count(1);
	pthread_mutex_lock(&s->mu);
	s->mb[mbi].hung++;
	/* Set before the worker can see abandoned: it undoes it when it returns. */
	if ((w->stuck_in = s->mb[mbi].m))
		pk11_module_stuck(w->stuck_in, 1);
	pthread_mutex_unlock(&s->mu);
	w->abandoned = 1;
	pthread_detach(w->th);
	pthread_mutex_unlock(&w->mu);
	slot_emit(s, OBS_ST_WATCHDOG_TIMEOUT, &s->mb[mbi], 0, KMS_ERR_TIMEOUT);
	kms_log_debug("token call on %s did not return within %u ms: abandoned", s->mb[mbi].su.text,
		      ms);
}

int slot_run(struct slot *s, enum slot_op op, size_t mbi, const uint8_t *msg, size_t len,
	     uint8_t sig[static 64], struct slot_hygiene *hy, unsigned long *ckr)
{
	struct slot_worker *w;
	struct timespec ts;
	int64_t deadline = 0;
	unsigned ms;
	int r;

	*ckr = 0;
	if (capped(s, mbi))
		return KMS_ERR_TIMEOUT;
	pthread_mutex_lock(&s->mu);
	ms = s->timeout_ms;
	pthread_mutex_unlock(&s->mu);
	if (!(w = pool_take(s)))
		return KMS_ERR_ALLOC;
	if (ms)
		deadline = slot_now_ms() + ms;
	pthread_mutex_lock(&w->mu);
	if ((r = hand_over(w, op, mbi, msg, len, deadline))) {
		pthread_mutex_unlock(&w->mu);
		pool_give(s, w);
		return r;
	}
	/* Wake the worker with w->mu released, so that it does not block on it (see
	 * worker_main); it may even be done before the loop below looks. */
	pthread_mutex_unlock(&w->mu);
	pthread_cond_signal(&w->cv);
	spin_for_done(w);
	pthread_mutex_lock(&w->mu);
	slot_abstime(deadline, &ts);
	while (w->state != WD_DONE) {
		if (!deadline)
			pthread_cond_wait(&w->cv, &w->mu);
		else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	}
	if (w->state != WD_DONE) {
		abandon(s, w, mbi, ms);
		kms_wipe(sig, 64);
		return KMS_ERR_TIMEOUT;
	}
	r = w->r;
	*ckr = w->ckr;
	if (r == KMS_OK && op == SLOT_OP_SIGN)
		memcpy(sig, w->sig, 64);
	if (hy)
		*hy = w->hy;
	kms_wipe(w->sig, sizeof(w->sig));
	w->state = WD_IDLE;
	pthread_mutex_unlock(&w->mu);
	pool_give(s, w);
	return r;
}

void slot_wd_stop(struct slot *s)
{
	struct slot_worker *w, *next;
	pthread_mutex_lock(&s->mu);
	w = s->idle;
	s->idle = NULL;
	pthread_mutex_unlock(&s->mu);
	for (; w; w = next) {
		next = w->next;
		pthread_mutex_lock(&w->mu);
		w->quit = 1;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->th, NULL);
		worker_free(w);
		slot_unref(s);
	}
}
