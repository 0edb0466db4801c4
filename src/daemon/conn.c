/* SPDX-License-Identifier: Apache-2.0 */
/* A connection thread: dial → handshake (tcp) → request loop → back off with jitter → redial. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon_int.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "p11kms/obs.h"
#include "p11kms/sc.h"
#include "p11kms/slot.h"

/* A dial failure is logged at WARN once per streak, then at most this often. */
#define DIAL_WARN_EVERY_MS 60000

static int ident_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	return slot_sign((struct slot *)ctx, msg, len, sig);
}

static void set_fd(struct d_conn *c, int fd)
{
	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	pthread_mutex_unlock(&c->mu);
}

static void close_fd(struct d_conn *c)
{
	pthread_mutex_lock(&c->mu);
	net_close(&c->fd);
	pthread_mutex_unlock(&c->mu);
}

static int stopping(const struct d_conn *c)
{
	return atomic_load(&c->d->stopping);
}

/* Secret Connection on tcp (identity signs through its slot), plain stream on unix. */
static int open_stream(struct d_conn *c, struct sc_conn **sc, struct net_stream *st)
{
	const struct cfg_validator *v = c->v;
	char id_hex[41];
	int r;

	if (v->net.scheme == NET_UNIX) {
		net_stream_fd(&c->fd, st);
		kms_log_info("connected chain=%s peer=%s proto=%s transport=unix", v->chain_id,
			     c->peer, cfg_proto_name(v->protocol_version));
		return KMS_OK;
	}
	struct sc_identity id = { .sign = ident_sign, .sign_ctx = c->ident->slot };
	slot_pubkey(c->ident->slot, id.pub);
	r = sc_handshake(c->fd, &id, v->net.has_node_id ? v->net.node_id : NULL, v->timeout_ms, sc);
	if (r != KMS_OK) {
		kms_log_warn("handshake failed chain=%s peer=%s reason=\"%s\"%s", v->chain_id,
			     c->peer, kms_strerror(r),
			     r == KMS_ERR_AUTH && v->net.has_node_id ?
				     " (node id in addr does not match, or a bad signature)" :
				     "");
		return r;
	}
	sc_remote_id_hex(*sc, id_hex);
	kms_log_info("connected chain=%s peer=%s node_id=%s proto=%s transport=secret-connection",
		     v->chain_id, c->peer, id_hex, cfg_proto_name(v->protocol_version));
	if (!v->net.has_node_id)
		kms_log_warn("peer unverified chain=%s peer=%s node_id=%s: no node id in addr "
			     "(CometBFT's privval listener key is ephemeral, so this is usual)",
			     v->chain_id, c->peer, id_hex);
	sc_stream(*sc, st);
	return KMS_OK;
}

/*
 * Reads, decodes, answers until the transport fails or the daemon stops.
 * *writing is set when the failure happened while writing a reply.
 */
static int serve(struct d_conn *c, struct net_stream *st, int *writing)
{
	const struct cfg_validator *v = c->v;
	struct handler_ctx h = {
		.chain_id = v->chain_id,
		.version = c->version,
		.guard = c->chain->guard,
		.key = c->chain->key,
		.max_height = v->max_height,
		.sign_extensions = c->chain->cc->sign_extensions,
		.peer = c->peer,
		.verbose = c->d->o != NULL ? c->d->o->verbose : 0,
	};
	/* A vote response echoes the request (extension included) plus two signatures. */
	struct kbuf *out = kbuf_new(v->max_msg_size + 1024);
	int r = KMS_ERR_ALLOC;

	*writing = 0;
	if (out == NULL)
		return r;
	while (!stopping(c)) {
		struct kbuf *msg = NULL;
		struct pv_request *req = NULL;
		r = pv_read_msg(st->read, st->ctx, v->max_msg_size, net_deadline(v->timeout_ms), &msg);
		if (r != KMS_OK)
			break;
		r = pv_decode_request(c->version, kbuf_ptr(msg), kbuf_len(msg), &req);
		if (r != KMS_OK) {
			/* The stream can no longer be trusted (spec §7.3). */
			kms_log_warn("undecodable request chain=%s peer=%s len=%zu: closing (%s)",
				     v->chain_id, c->peer, kbuf_len(msg), kms_strerror(r));
			kbuf_free(msg);
			break;
		}
		struct obs_event ev;
		r = handler_handle(&h, req, out, &ev);
		pv_request_free(req);
		kbuf_free(msg);
		if (r != KMS_OK) {
			kms_log_err("cannot encode a response chain=%s peer=%s: %s", v->chain_id,
				    c->peer, kms_strerror(r));
			break;
		}
		r = pv_write_msg(st->write, st->ctx, out, net_deadline(v->timeout_ms));
		/* After the reply (DESIGN.md): metrics and audit see the decision,
		 * also when the write failed (the signature's record is durable). */
		ev.latency_ns = obs_mono_ns() - ev.mono_ns;
		obs_emit(&ev);
		if (r != KMS_OK) {
			*writing = 1;
			break;
		}
	}
	kbuf_free(out);
	return r;
}

/* Why a session ended; writing says whether a reply was being written. */
static const char *disconnect_reason(int r, int writing)
{
	switch (r) {
	case KMS_ERR_CONN_CLOSED:
		return "closed by peer";
	case KMS_ERR_TIMEOUT:
		return writing ? "timeout writing a reply (the node is not reading)" :
				 "timeout (no request or ping within timeout)";
	case KMS_ERR_TOO_LARGE:
		return "message over max_msg_size";
	default:
		return kms_strerror(r);
	}
}

/* One dial-to-disconnect cycle. *served is set once the stream was established. */
static int session(struct d_conn *c, int *served, int64_t *last_warn)
{
	const struct cfg_validator *v = c->v;
	struct sc_conn *sc = NULL;
	struct net_stream st;
	int fd = -1;
	int r;

	*served = 0;
	r = net_dial(&v->net, v->timeout_ms, &fd);
	if (r != KMS_OK) {
		int64_t now = net_now_ms();
		if (*last_warn == 0 || now - *last_warn >= DIAL_WARN_EVERY_MS) {
			kms_log_warn("cannot connect chain=%s peer=%s reason=\"%s\": retrying%s",
				     v->chain_id, c->peer, kms_strerror(r),
				     v->reconnect ? " with backoff" : "");
			*last_warn = now;
		} else {
			kms_log_debug("cannot connect chain=%s peer=%s reason=\"%s\"", v->chain_id,
				      c->peer, kms_strerror(r));
		}
		return r;
	}
	set_fd(c, fd);
	/* A stop that raced with the dial: the supervisor may have missed this fd. */
	if (stopping(c)) {
		r = KMS_OK;
		goto out;
	}
	r = open_stream(c, &sc, &st);
	if (r != KMS_OK)
		goto out;
	*served = 1;
	*last_warn = 0;
	int writing = 0;
	r = serve(c, &st, &writing);
	if (stopping(c))
		kms_log_info("disconnected chain=%s peer=%s reason=shutdown", v->chain_id, c->peer);
	else
		kms_log_warn("disconnected chain=%s peer=%s reason=\"%s\"", v->chain_id, c->peer,
			     disconnect_reason(r, writing));
out:
	sc_conn_free(sc);
	close_fd(c);
	return r;
}

/* Capped exponential backoff with "equal jitter": half fixed, half random. */
static int backoff_ms(const struct cfg_validator *v, unsigned attempt, unsigned *seed)
{
	uint64_t d = v->backoff_min_ms;
	for (unsigned i = 0; i < attempt && d < v->backoff_max_ms; i++)
		d *= 2;
	if (d > v->backoff_max_ms)
		d = v->backoff_max_ms;
	uint64_t half = d / 2;
	uint64_t jitter = half > 0 ? (uint64_t)rand_r(seed) % (half + 1) : 0;
	return (int)(d - half + jitter);
}

void *d_conn_main(void *arg)
{
	struct d_conn *c = arg;
	struct daemon *d = c->d;
	unsigned attempt = 0;
	int64_t last_warn = 0;
	/* Jitter only spreads redials out; it needs no cryptographic randomness. */
	unsigned seed = (unsigned)net_now_ms() ^ (unsigned)(uintptr_t)c;

	while (!stopping(c)) {
		int served = 0;
		(void)session(c, &served, &last_warn);
		if (stopping(c))
			break;
		if (!c->v->reconnect) {
			kms_log_err(
				"connection ended chain=%s peer=%s: reconnect = false, not redialling",
				c->v->chain_id, c->peer);
			break;
		}
		if (served)
			attempt = 0;
		int ms = backoff_ms(c->v, attempt, &seed);
		if (attempt < 32)
			attempt++;
		if (d_sleep(d, ms))
			break;
	}
	if (atomic_fetch_sub(&d->live, 1) == 1)
		d_wake(d);
	return NULL;
}
