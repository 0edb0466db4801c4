/* SPDX-License-Identifier: Apache-2.0 */
/* Private state shared by the supervisor (daemon.c) and the connection threads (conn.c). */
#ifndef P11KMS_DAEMON_INT_H
#define P11KMS_DAEMON_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "p11kms/cfg.h"
#include "p11kms/kms_log.h"
#include "p11kms/daemon.h"
#include "p11kms/ha.h"
#include "p11kms/pv.h"

/*
 * Repeated identical log lines (issue #17): the first of a kind is logged in
 * full; the same kind again within period_ms is only counted, and one line
 * with the count is written when the period is up, when another kind comes,
 * or at d_logrl_flush(). One per connection thread: not locked.
 */
#define D_LOGRL_PERIOD_MS 60000
struct d_logrl {
	char key[128];	   /* the kind of the last line ("" after a flush) */
	char last[512];	   /* the text of the last occurrence folded into the count */
	uint64_t folded;   /* occurrences counted, not written, since the last line */
	int64_t since_ms;  /* when the first of them happened */
	int64_t line_ms;   /* when a line of this kind was last written */
	int64_t period_ms; /* D_LOGRL_PERIOD_MS, shorter in tests */
	enum kms_log_level level;
};
void d_logrl_init(struct d_logrl *rl, int64_t period_ms);
/*
 * One occurrence of kind key at now (net_now_ms()). Returns 1 when a line
 * was written (the first of its kind, or the count when the period is up,
 * then with this occurrence's text), 0 when it was only counted.
 */
int d_logrl_log(struct d_logrl *rl, int64_t now, enum kms_log_level level, const char *key,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Writes the count of what was folded (if any) and forgets the kind. */
void d_logrl_flush(struct d_logrl *rl, int64_t now);

/* One per chain that has validators: its guard and its consensus key. */
struct d_chain {
	const struct cfg_chain *cc;
	const struct cfg_key *ck;
	struct guard *guard;
	struct slot *key;
	int owns_key; /* 0 when another chain served by the same keys entry opened it */
	struct ha_chain *ha; /* #20: the cluster mark (docs/ha.md), NULL without `ha` */
};

/* One per distinct secret_key (Secret Connection identity). */
struct d_ident {
	const char *ref; /* cfg string: file path or pkcs11: URI */
	struct slot *slot;
};

struct daemon;

/* One per validators entry, each run by its own thread. */
struct d_conn {
	struct daemon *d;
	const struct cfg_validator *v;
	struct d_chain *chain;
	struct d_ident *ident; /* NULL for unix:// */
	enum pv_version version;
	char peer[NET_HOST_MAX + NET_PATH_MAX + 16]; /* addr for logs, without node id */
	pthread_t thread;
	int started;
	pthread_mutex_t mu; /* guards fd against the supervisor's shutdown() at stop */
	int fd;
};

struct daemon {
	const struct cfg *cfg;
	const struct daemon_opts *o;
	struct d_chain *chains;
	size_t n_chains;
	struct d_ident *idents;
	size_t n_idents;
	struct d_conn *conns;
	size_t n_conns;
	atomic_int stopping;
	atomic_int live; /* connection threads still running */
	int wake_rfd;	 /* becomes readable on stop or when the last thread ends */
	int wake_wfd;
	struct audit_log *audit; /* audit = { } in the config, else NULL */
	struct d_obs *obs; /* metrics, health, systemd (d_obs.c) */
};

/* The exit code for a key or token that does not open (preflight.c; daemon.c too). */
int d_exit_for_slot_err(int r);

/* Connection thread body (conn.c). */
void *d_conn_main(void *arg);
/* Wakes the supervisor (async-signal-safe write of one byte). */
void d_wake(struct daemon *d);
/* Sleeps ms, returning early (1) when the daemon is stopping. */
int d_sleep(struct daemon *d, int ms);

/*
 * Observability (d_obs.c): d_obs_start registers the chains, slots and
 * validator entries with the metrics registry and starts the HTTP endpoints
 * (before the connection threads; returns an exit code); d_obs_ready sends
 * systemd READY=1 once they run; the supervisor waits at most d_obs_wait_ms
 * (-1: forever) between d_obs_tick calls (heartbeat, watchdog, STATUS=); a
 * connection thread brackets each request with d_obs_busy(c, 1/0);
 * d_obs_stopping before the stop, d_obs_free after the threads are joined.
 */
struct d_obs;
int d_obs_start(struct daemon *d);
void d_obs_ready(struct daemon *d);
int d_obs_wait_ms(struct daemon *d);
void d_obs_tick(struct daemon *d);
void d_obs_busy(struct d_conn *c, int busy);
void d_obs_stopping(struct daemon *d);
void d_obs_free(struct daemon *d);

#endif
