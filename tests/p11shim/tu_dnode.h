/* SPDX-License-Identifier: Apache-2.0 */
/* Test fixture: the daemon in a thread, with test nodes (tnode) that send votes. */
#ifndef P11KMS_TU_DNODE_H
#define P11KMS_TU_DNODE_H

#include <pthread.h>
#include <stdint.h>

#include "p11kms/cfg.h"
#include "tnode.h"
#include "tu_shim.h"

struct tu_run {
	struct cfg *cfg;
	pthread_t th;
	int ec, ready;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/*
 * Writes <dir>/p11kms.conf and starts daemon_run() in a thread, waiting until it
 * is ready. chains: pairs (chain id, keys-entry text, e.g. tu_keyline()); each chain
 * gets a fresh state file in dir. vals: triples (chain id, node address, extra text
 * of the validators entry).
 */
void tu_daemon_start(struct tu_run *r, const char *dir, const char *const *chains, size_t nc,
		     const char *const *vals, size_t nv);
/* Stops it; it must exit 0. */
void tu_daemon_stop(struct tu_run *r);

/* "uri = ...; timeout_ms = N;" (with a backup: uri = [ uri, backup ]). malloc'd. */
char *tu_keyline(const char *uri, const char *backup, unsigned timeout_ms);
/* Imports the seed fill..fill into the shim token label: *key (malloc'd URI) and pub. */
void tu_import(struct tu_shim *sh, const char *label, uint8_t fill, char **key, uint8_t pub[32]);

struct tu_node {
	struct tnode t;
	const char *chain;
	const uint8_t *pub;
	int64_t h;
};

/* A node listening on a Unix socket in dir (tcp: Secret Connection; the validators
 * entry then needs a secret_key). */
void tu_node_up(struct tu_node *n, const char *dir, const char *chain, const uint8_t *pub, int tcp);
/* One prevote at the next height: 1 signed (signature verified), 0 refused, -1 transport
 * failure (the node's 5 s read timeout included). *ms: its latency (may be NULL). */
int tu_vote(struct tu_node *n, double *ms);
/* Accepts the signer's connection (10 s) or fails the test. */
void tu_accept_ok(struct tu_node *n);

#endif
