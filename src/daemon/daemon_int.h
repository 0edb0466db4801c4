/* SPDX-License-Identifier: Apache-2.0 */
/* Private state shared by the supervisor (daemon.c) and the connection threads (conn.c). */
#ifndef P11KMS_DAEMON_INT_H
#define P11KMS_DAEMON_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "p11kms/cfg.h"
#include "p11kms/daemon.h"
#include "p11kms/pv.h"

/* One per chain that has validators: its guard and its consensus key. */
struct d_chain {
	const struct cfg_chain *cc;
	const struct cfg_key *ck;
	struct guard *guard;
	struct slot *key;
	int owns_key; /* 0 when another chain served by the same keys entry opened it */
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
};

/* Connection thread body (conn.c). */
void *d_conn_main(void *arg);
/* Wakes the supervisor (async-signal-safe write of one byte). */
void d_wake(struct daemon *d);
/* Sleeps ms, returning early (1) when the daemon is stopping. */
int d_sleep(struct daemon *d, int ms);

#endif
