/* SPDX-License-Identifier: Apache-2.0 */
/* The test node (see tnode.h): net_listen + sc_handshake + pv_encode_request/pv_decode_response. */
#include "tnode.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"

void tnode_listen(struct tnode *n, enum pv_version v, uint16_t port, const char *unix_path,
		  int with_node_id)
{
	struct net_addr a;
	char s[200];
	char why[128];
	uint8_t pub[32];
	struct sc_identity id;

	memset(n, 0, sizeof(*n));
	n->version = v;
	n->lfd = -1;
	n->cfd = -1;
	if (unix_path != NULL) {
		n->is_unix = 1;
		(void)snprintf(n->path, sizeof(n->path), "%s", unix_path);
		(void)snprintf(s, sizeof(s), "unix://%s", unix_path);
	} else {
		(void)snprintf(s, sizeof(s), "tcp://127.0.0.1:%u", (unsigned)port);
	}
	assert_int_equal(net_addr_parse(s, &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(net_listen(&a, &n->lfd), KMS_OK);
	if (n->is_unix) {
		(void)snprintf(n->addr, sizeof(n->addr), "%s", s);
		return;
	}
	assert_int_equal(net_local_port(n->lfd, &n->port), KMS_OK);
	/* A fresh identity per listen, like CometBFT's ephemeral privval listener key. */
	assert_int_equal(sc_soft_identity_new(NULL, &n->si), KMS_OK);
	sc_soft_identity_get(n->si, &id);
	memcpy(pub, id.pub, 32);
	assert_int_equal(sc_node_id(pub, n->node_id), KMS_OK);
	if (with_node_id) {
		char hex[41];
		for (int i = 0; i < 20; i++)
			(void)snprintf(hex + 2 * i, 3, "%02x", n->node_id[i]);
		(void)snprintf(n->addr, sizeof(n->addr), "tcp://%s@127.0.0.1:%u", hex,
			       (unsigned)n->port);
	} else {
		(void)snprintf(n->addr, sizeof(n->addr), "tcp://127.0.0.1:%u", (unsigned)n->port);
	}
}

int tnode_accept(struct tnode *n, int timeout_ms)
{
	struct sc_identity id;
	int r = net_accept(n->lfd, timeout_ms, &n->cfd);
	if (r != KMS_OK)
		return r;
	if (n->is_unix) {
		net_stream_fd(&n->cfd, &n->st);
		n->accepted_at_ms = net_now_ms();
		return KMS_OK;
	}
	sc_soft_identity_get(n->si, &id);
	r = sc_handshake(n->cfd, &id, NULL, 5000, &n->sc);
	if (r != KMS_OK) {
		net_close(&n->cfd);
		return r;
	}
	sc_stream(n->sc, &n->st);
	n->accepted_at_ms = net_now_ms();
	return KMS_OK;
}

int tnode_call(struct tnode *n, const struct pv_request *req, struct pv_response **resp)
{
	struct kbuf *out = kbuf_new(1 << 20);
	struct kbuf *in = NULL;
	int r;
	*resp = NULL;
	assert_non_null(out);
	r = pv_encode_request(n->version, req, out);
	if (r == KMS_OK)
		r = pv_write_msg(n->st.write, n->st.ctx, out, net_deadline(5000));
	if (r == KMS_OK)
		r = pv_read_msg(n->st.read, n->st.ctx, 1 << 20, net_deadline(5000), &in);
	if (r == KMS_OK)
		r = pv_decode_response(n->version, kbuf_ptr(in), kbuf_len(in), resp);
	kbuf_free(in);
	kbuf_free(out);
	return r;
}

void tnode_drop(struct tnode *n)
{
	sc_conn_free(n->sc);
	n->sc = NULL;
	net_close(&n->cfd);
}

void tnode_close(struct tnode *n)
{
	tnode_drop(n);
	net_close(&n->lfd);
	sc_soft_identity_free(n->si);
	n->si = NULL;
}

void tnode_req_pubkey(struct pv_request *r, const char *chain_id)
{
	memset(r, 0, sizeof(*r));
	r->kind = PV_REQ_PUBKEY;
	(void)snprintf(r->chain_id, sizeof(r->chain_id), "%s", chain_id);
}

void tnode_req_ping(struct pv_request *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = PV_REQ_PING;
}

static void fill_block(struct pv_block_id *b, uint8_t blk)
{
	memset(b, 0, sizeof(*b));
	if (blk == 0)
		return;
	memset(b->hash, blk, PV_HASH_LEN);
	b->hash_len = PV_HASH_LEN;
	b->psh_total = 1;
	memset(b->psh_hash, (uint8_t)(blk ^ 0xff), PV_HASH_LEN);
	b->psh_hash_len = PV_HASH_LEN;
}

void tnode_req_vote(struct pv_request *r, const char *chain_id, int32_t type, int64_t h,
		    int32_t round, uint8_t blk, int64_t ts_seconds)
{
	memset(r, 0, sizeof(*r));
	r->kind = PV_REQ_SIGN_VOTE;
	(void)snprintf(r->chain_id, sizeof(r->chain_id), "%s", chain_id);
	r->vote.type = type;
	r->vote.height = h;
	r->vote.round = round;
	fill_block(&r->vote.block_id, blk);
	r->vote.timestamp.seconds = ts_seconds;
	r->vote.timestamp.nanos = 123456789;
	memset(r->vote.validator_address, 0xAA, PV_ADDR_LEN);
	r->vote.validator_address_len = PV_ADDR_LEN;
	r->vote.validator_index = 3;
}

void tnode_req_proposal(struct pv_request *r, const char *chain_id, int64_t h, int32_t round,
			uint8_t blk, int64_t ts_seconds)
{
	memset(r, 0, sizeof(*r));
	r->kind = PV_REQ_SIGN_PROPOSAL;
	(void)snprintf(r->chain_id, sizeof(r->chain_id), "%s", chain_id);
	r->proposal.type = PV_TYPE_PROPOSAL;
	r->proposal.height = h;
	r->proposal.round = round;
	r->proposal.pol_round = -1;
	fill_block(&r->proposal.block_id, blk);
	r->proposal.timestamp.seconds = ts_seconds;
	r->proposal.timestamp.nanos = 5;
}
