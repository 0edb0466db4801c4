/* SPDX-License-Identifier: Apache-2.0 */
/* The node side of the privval connection: listen, accept (+ Secret Connection), call. */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "p11kms/enc.h"
#include "p11kms/kbuf.h"

static double now_ms(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int sim_listen(const char *addr, struct sim_listener *l)
{
	char why[160];
	char hex[41];
	uint8_t nid[SC_NODE_ID_LEN];
	struct sc_identity id;
	uint16_t port = 0;
	int r;

	memset(l, 0, sizeof(*l));
	l->lfd = -1;
	r = net_addr_parse(addr, &l->addr, why, sizeof(why));
	if (r != KMS_OK) {
		fprintf(stderr, "p11kms-sim: --listen %s: %s\n", addr, why);
		return r;
	}
	r = net_listen(&l->addr, &l->lfd);
	if (r != KMS_OK) {
		fprintf(stderr, "p11kms-sim: cannot listen on %s: %s\n", addr, kms_strerror(r));
		return r;
	}
	if (l->addr.scheme == NET_UNIX) {
		(void)snprintf(l->addr_str, sizeof(l->addr_str), "unix://%s", l->addr.path);
		(void)snprintf(l->id_addr_str, sizeof(l->id_addr_str), "%s", l->addr_str);
		return KMS_OK;
	}
	r = net_local_port(l->lfd, &port);
	if (r == KMS_OK)
		r = sc_soft_identity_new(NULL, &l->si);
	if (r != KMS_OK) {
		net_close(&l->lfd);
		return r;
	}
	(void)snprintf(l->addr.port, sizeof(l->addr.port), "%u", (unsigned)port);
	(void)snprintf(l->addr_str, sizeof(l->addr_str), "tcp://%s:%u", l->addr.host,
		       (unsigned)port);
	/* The node ID of this run's ephemeral identity, for signers that pin it. */
	sc_soft_identity_get(l->si, &id);
	if (sc_node_id(id.pub, nid) != KMS_OK ||
	    enc_hex_encode(nid, sizeof(nid), hex, sizeof(hex)) != KMS_OK)
		hex[0] = '\0';
	(void)snprintf(l->id_addr_str, sizeof(l->id_addr_str), "tcp://%s@%s:%u", hex, l->addr.host,
		       (unsigned)port);
	return KMS_OK;
}

void sim_listener_close(struct sim_listener *l)
{
	net_close(&l->lfd);
	sc_soft_identity_free(l->si);
	l->si = NULL;
}

int sim_accept(struct sim_listener *l, int timeout_ms, struct sim_conn *c)
{
	struct sc_identity id;
	int r;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	r = net_accept(l->lfd, timeout_ms, &c->fd);
	if (r != KMS_OK)
		return r;
	(void)snprintf(c->peer, sizeof(c->peer), "%s", l->addr_str);
	if (l->addr.scheme == NET_UNIX) {
		net_stream_fd(&c->fd, &c->st);
		return KMS_OK;
	}
	sc_soft_identity_get(l->si, &id);
	/* CometBFT's listener accepts any signer identity (no allow-list). */
	r = sc_handshake(c->fd, &id, NULL, timeout_ms < 0 ? 10000 : timeout_ms, &c->sc);
	if (r != KMS_OK) {
		net_close(&c->fd);
		return r;
	}
	sc_stream(c->sc, &c->st);
	return KMS_OK;
}

void sim_conn_close(struct sim_conn *c)
{
	sc_conn_free(c->sc);
	c->sc = NULL;
	net_close(&c->fd);
}

int sim_call(struct sim_conn *c, enum pv_version v, const struct pv_request *req, int timeout_ms,
	     struct pv_response **resp, double *lat_ms)
{
	struct kbuf *out = kbuf_new(SIM_EXT_MAX + 4096);
	struct kbuf *in = NULL;
	double t0;
	int r = KMS_ERR_ALLOC;

	*resp = NULL;
	*lat_ms = 0.0;
	if (out == NULL)
		goto out;
	r = pv_encode_request(v, req, out);
	if (r != KMS_OK)
		goto out;
	t0 = now_ms();
	r = pv_write_msg(c->st.write, c->st.ctx, out, net_deadline(timeout_ms));
	if (r != KMS_OK)
		goto out;
	/* The node reads replies up to 10 240 bytes (maxRemoteSignerMsgSize); allow more to see. */
	r = pv_read_msg(c->st.read, c->st.ctx, PV_MAX_MSG_DEFAULT, net_deadline(timeout_ms), &in);
	if (r != KMS_OK)
		goto out;
	*lat_ms = now_ms() - t0;
	r = pv_decode_response(v, kbuf_ptr(in), kbuf_len(in), resp);
out:
	kbuf_free(in);
	kbuf_free(out);
	return r;
}

int sim_write_addr_file(const char *path, const char *const *lines, int n)
{
	char tmp[4096];
	FILE *f;

	(void)snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "p11kms-sim: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++)
		fprintf(f, "%s\n", lines[i]);
	/* whole or not at all: the scripts wait for the file to appear */
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "p11kms-sim: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}
