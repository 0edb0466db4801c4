/* SPDX-License-Identifier: Apache-2.0 */
/* A test node: the listening (node) side of privval, over Secret Connection or a Unix socket. */
#ifndef P11KMS_TNODE_H
#define P11KMS_TNODE_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/net.h"
#include "p11kms/pv.h"
#include "p11kms/sc.h"

struct tnode {
	enum pv_version version;
	int is_unix;
	char addr
		[256]; /* what the signer's config names: tcp://[id@]127.0.0.1:port or unix:///... */
	uint16_t port;
	char path[NET_PATH_MAX + 1];
	int lfd; /* listening socket */
	int cfd; /* the accepted signer connection, -1 if none */
	struct sc_soft_identity *si;
	uint8_t node_id[20];
	struct sc_conn *sc;
	struct net_stream st;
	int64_t accepted_at_ms; /* net_now_ms() when the last connection was established */
};

/*
 * Listens on 127.0.0.1 (port 0 = pick one; else that port, for restarts) or,
 * when unix_path is not NULL, on that Unix socket. with_node_id puts the
 * node's id into addr (tcp). Fails the test on error.
 */
void tnode_listen(struct tnode *n, enum pv_version v, uint16_t port, const char *unix_path,
		  int with_node_id);
/* Accepts the signer and runs the handshake (tcp). KMS_OK or the error. */
int tnode_accept(struct tnode *n, int timeout_ms);
/* Sends req, reads and decodes one response (*resp freed by the caller). */
int tnode_call(struct tnode *n, const struct pv_request *req, struct pv_response **resp);
/* Closes the signer connection only. */
void tnode_drop(struct tnode *n);
/* Closes everything (listener too). */
void tnode_close(struct tnode *n);

/* Request builders (the chain-id is copied). */
void tnode_req_pubkey(struct pv_request *r, const char *chain_id);
void tnode_req_ping(struct pv_request *r);
/* A vote for block "blk" (0 = nil) at h/r; type PV_TYPE_PREVOTE or PV_TYPE_PRECOMMIT. */
void tnode_req_vote(struct pv_request *r, const char *chain_id, int32_t type, int64_t h,
		    int32_t round, uint8_t blk, int64_t ts_seconds);
void tnode_req_proposal(struct pv_request *r, const char *chain_id, int64_t h, int32_t round,
			uint8_t blk, int64_t ts_seconds);

#endif
