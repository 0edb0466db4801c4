/* SPDX-License-Identifier: Apache-2.0 */
/* The C_Sign watchdog: a PKCS#11 call has no timeout, so a hung token must not hang the caller. */
#include "slot_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11kms/kms_log.h"

/*
 * With a timeout set, each calling thread gets one persistent worker thread that
 * signs for it (with the worker's own session). The caller waits on a condition
 * variable until the deadline. If the token does not answer by then, the caller
 * gets KMS_ERR_TIMEOUT and abandons the worker: the worker is detached, keeps a
 * reference on the slot, and frees itself and its job if the call ever returns.
 * The caller's next signature gets a new worker with a new session, so a USB
 * token that comes back is used again (tmkms #806, #37: hangs until restart).
 */
enum wd_state { WD_IDLE, WD_PENDING, WD_DONE };

struct slot_worker {
	struct slot *s;
	pthread_t owner, th;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	enum wd_state state;
	int quit, abandoned;
	uint8_t *msg; /* the worker's copy: the caller may return before the token does */
	size_t len, cap;
	uint8_t sig[64];
	int r;
	struct slot_worker *next;
};

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
	free(w->msg);
	free(w);
}

static void *worker_main(void *arg)
{
	struct slot_worker *w = arg;
	struct slot *s = w->s;
	int abandoned = 0;

	for (;;) {
		uint8_t sig[64];
		int r;
		pthread_mutex_lock(&w->mu);
		while (w->state != WD_PENDING && !w->quit)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->quit) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		pthread_mutex_unlock(&w->mu);
		r = slot_sign_direct(s, w->msg, w->len, sig);
		pthread_mutex_lock(&w->mu);
		memcpy(w->sig, sig, sizeof(sig));
		kms_wipe(sig, sizeof(sig));
		w->r = r;
		w->state = WD_DONE;
		abandoned = w->abandoned;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		if (abandoned)
			break;
	}
	if (abandoned) { /* nobody else points at w any more */
		kms_log_warn("a timed-out signature on %s finished late; its result was dropped",
			     slot_describe(s));
		worker_free(w);
		slot_unref(s);
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
	w->owner = pthread_self();
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&s->mu);
	s->refs++;
	pthread_mutex_unlock(&s->mu);
	if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
		slot_unref(s);
		worker_free(w);
		return NULL;
	}
	return w;
}

/* The caller's worker (created on first use); NULL on allocation failure. */
static struct slot_worker *worker_get(struct slot *s)
{
	struct slot_worker *w;
	pthread_t me = pthread_self();
	pthread_mutex_lock(&s->mu);
	for (w = s->workers; w; w = w->next)
		if (pthread_equal(w->owner, me))
			break;
	pthread_mutex_unlock(&s->mu);
	if (w || !(w = worker_new(s)))
		return w;
	pthread_mutex_lock(&s->mu);
	w->next = s->workers;
	s->workers = w;
	pthread_mutex_unlock(&s->mu);
	return w;
}

static void worker_unlink(struct slot *s, struct slot_worker *w)
{
	struct slot_worker **pp;
	pthread_mutex_lock(&s->mu);
	for (pp = &s->workers; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&s->mu);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int slot_wd_sign(struct slot *s, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	struct slot_worker *w = worker_get(s);
	struct timespec deadline;
	unsigned ms;
	int r;

	if (!w)
		return KMS_ERR_ALLOC;
	pthread_mutex_lock(&s->mu);
	ms = s->timeout_ms;
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&w->mu);
	if (len > w->cap) {
		uint8_t *grown = malloc(len ? len : 1);
		if (!grown) {
			pthread_mutex_unlock(&w->mu);
			return KMS_ERR_ALLOC;
		}
		free(w->msg);
		w->msg = grown;
		w->cap = len;
	}
	if (len)
		memcpy(w->msg, msg, len);
	w->len = len;
	w->state = WD_PENDING;
	pthread_cond_signal(&w->cv);
	deadline_after(&deadline, ms);
	while (w->state != WD_DONE)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) != 0 && w->state != WD_DONE)
			break;
	if (w->state == WD_DONE) {
		r = w->r;
		if (r == KMS_OK)
			memcpy(sig, w->sig, 64);
		w->state = WD_IDLE;
		pthread_mutex_unlock(&w->mu);
		return r;
	}
	/* The token did not answer in time: hand the worker over to itself. */
	w->abandoned = 1;
	pthread_detach(w->th);
	pthread_mutex_unlock(&w->mu);
	worker_unlink(s, w);
	kms_log_err("C_Sign on %s did not return within %u ms; abandoning that call (the next "
		    "signature uses a new session)",
		    slot_describe(s), ms);
	kms_wipe(sig, 64);
	return KMS_ERR_TIMEOUT;
}

void slot_wd_stop(struct slot *s)
{
	struct slot_worker *w, *next;
	pthread_mutex_lock(&s->mu);
	w = s->workers;
	s->workers = NULL;
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
