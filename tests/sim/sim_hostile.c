/* SPDX-License-Identifier: Apache-2.0 */
/* --hostile: a misbehaving node, once per accepted connection, reporting what the signer did. */
#include "sim.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"

/* The ephemeral-key message of the handshake: uvarint(34) 0a 20 <32 bytes>. */
#define EPH_MSG_LEN 35

static const char *const names[] = {
	"truncated-handshake", "garbage-handshake",
	"bad-auth-signature",  "low-order-key",
	"oversized-length",    "flipped-tag",
	"junk-protobuf",       "unknown-oneof",
	"negative-height",     "oversized-extension",
	"wrong-chain-id",      "slowloris",
	"never-reads",	       "trickle",
	NULL,
};

/* Modes `all` leaves out: they run for --flood-s and are for measuring. */
static const char *const extra_names[] = { "refusal-flood", NULL };

const char *const *sim_hostile_names(void)
{
	return names;
}

int sim_hostile_known(const char *name)
{
	for (size_t i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	for (size_t i = 0; extra_names[i] != NULL; i++)
		if (strcmp(extra_names[i], name) == 0)
			return 1;
	return 0;
}

/* ---- observing the signer ---- */

/* Reads and discards until EOF or timeout: "closed after N ms" / "timeout: still open after N ms". */
static void wait_close(int fd, int timeout_ms, char *out, size_t cap)
{
	int64_t t0 = net_now_ms();
	uint8_t buf[4096];
	for (;;) {
		size_t got = 0;
		int64_t left = timeout_ms - (net_now_ms() - t0);
		int r;
		if (left <= 0) {
			(void)snprintf(out, cap, "timeout: still open after %d ms", timeout_ms);
			return;
		}
		r = net_read_some(fd, buf, sizeof(buf), &got, (int)left);
		if (r == KMS_ERR_CONN_CLOSED || r == KMS_ERR_SYSTEM) {
			(void)snprintf(out, cap, "closed after %lld ms",
				       (long long)(net_now_ms() - t0));
			return;
		}
		if (r == KMS_ERR_TIMEOUT) {
			(void)snprintf(out, cap, "timeout: still open after %d ms", timeout_ms);
			return;
		}
	}
}

/* One privval reply on st: "error-reply code=N (desc)", "answered <kind>", or closed/timeout. */
static void wait_reply(struct net_stream *st, enum pv_version v, int timeout_ms, char *out,
		       size_t cap)
{
	struct kbuf *in = NULL;
	struct pv_response *resp = NULL;
	int64_t t0 = net_now_ms();
	int r = pv_read_msg(st->read, st->ctx, PV_MAX_MSG_DEFAULT, net_deadline(timeout_ms), &in);
	if (r == KMS_ERR_CONN_CLOSED || r == KMS_ERR_SYSTEM || r == KMS_ERR_MAC_INVALID) {
		(void)snprintf(out, cap, "closed after %lld ms", (long long)(net_now_ms() - t0));
		goto done;
	}
	if (r == KMS_ERR_TIMEOUT) {
		(void)snprintf(out, cap, "timeout: no reply after %d ms", timeout_ms);
		goto done;
	}
	if (r != KMS_OK || pv_decode_response(v, kbuf_ptr(in), kbuf_len(in), &resp) != KMS_OK) {
		(void)snprintf(out, cap, "undecodable reply (%s)", kms_strerror(r));
		goto done;
	}
	if (resp->has_error)
		(void)snprintf(out, cap, "error-reply code=%d (%s)", (int)resp->error_code,
			       resp->error_description);
	else
		(void)snprintf(out, cap, "answered %s", pv_req_kind_name(resp->kind));
done:
	pv_response_free(resp);
	kbuf_free(in);
}

/* After an error reply the connection must still serve: a ping. */
static void ping_after(struct net_stream *st, enum pv_version v, int timeout_ms, char *out,
		       size_t cap)
{
	struct pv_request req;
	struct kbuf *b = kbuf_new(64);
	char more[120];
	size_t len = strlen(out);
	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PING;
	if (b == NULL || pv_encode_request(v, &req, b) != KMS_OK ||
	    pv_write_msg(st->write, st->ctx, b, net_deadline(timeout_ms)) != KMS_OK) {
		(void)snprintf(out + len, cap - len, "; ping: write failed (closed)");
		kbuf_free(b);
		return;
	}
	kbuf_free(b);
	wait_reply(st, v, timeout_ms, more, sizeof(more));
	(void)snprintf(out + len, cap - len, "; then ping: %s", more);
}

/* ---- a relay that lets us corrupt our own Secret Connection bytes in flight ---- */

struct relay {
	int inner;	/* the sc_conn's end of a socketpair */
	int outer;	/* the signer's socket */
	size_t flip_at; /* absolute offset of outbound byte to flip (SIZE_MAX = none) */
	pthread_t tid;
};

static int fwd(int from, int to, size_t *off, size_t flip_at)
{
	uint8_t buf[8192];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return -1;
	if (off != NULL) {
		if (flip_at >= *off && flip_at < *off + (size_t)n)
			buf[flip_at - *off] ^= 0x01;
		*off += (size_t)n;
	}
	return net_write_full(to, buf, (size_t)n, 5000) == KMS_OK ? 0 : -1;
}

static void *relay_main(void *arg)
{
	struct relay *rl = arg;
	size_t off = 0;
	for (;;) {
		struct pollfd p[2] = { { rl->inner, POLLIN, 0 }, { rl->outer, POLLIN, 0 } };
		if (poll(p, 2, 30000) <= 0)
			break;
		if ((p[0].revents & (POLLIN | POLLHUP)) &&
		    fwd(rl->inner, rl->outer, &off, rl->flip_at) != 0)
			break;
		if ((p[1].revents & (POLLIN | POLLHUP)) && fwd(rl->outer, rl->inner, NULL, 0) != 0)
			break;
	}
	/* Either side gone: let the other see EOF. */
	(void)shutdown(rl->inner, SHUT_RDWR);
	(void)shutdown(rl->outer, SHUT_RDWR);
	return NULL;
}

/* ---- handshakes ---- */

struct bad_signer {
	const struct sc_identity *real;
};

static int bad_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	const struct bad_signer *b = ctx;
	int r = b->real->sign(b->real->sign_ctx, msg, len, sig);
	sig[10] ^= 0x40; /* a valid-looking signature that does not verify */
	return r;
}

/* Secret Connection as the node, or the plain socket for unix listeners. */
static int open_conn(struct sim_listener *l, int fd, int timeout_ms, struct sc_conn **sc,
		     struct net_stream *st, int *fdp)
{
	struct sc_identity id;
	*sc = NULL;
	*fdp = fd;
	if (l->addr.scheme == NET_UNIX) {
		net_stream_fd(fdp, st);
		return KMS_OK;
	}
	sc_soft_identity_get(l->si, &id);
	int r = sc_handshake(fd, &id, NULL, timeout_ms, sc);
	if (r == KMS_OK)
		sc_stream(*sc, st);
	return r;
}

/* ---- requests ---- */

static void base_vote(const struct sim_cfg *cfg, struct pv_request *req)
{
	memset(req, 0, sizeof(*req));
	req->kind = PV_REQ_SIGN_VOTE;
	(void)snprintf(req->chain_id, sizeof(req->chain_id), "%s", cfg->chain_id);
	req->vote.type = PV_TYPE_PRECOMMIT;
	req->vote.height = cfg->start_height;
	sim_block_id(&req->vote.block_id, 77, 1);
	req->vote.timestamp.seconds = 1700000000;
	memset(req->vote.validator_address, 0x11, PV_ADDR_LEN);
	req->vote.validator_address_len = PV_ADDR_LEN;
}

static int send_req(struct net_stream *st, const struct sim_cfg *cfg, const struct pv_request *req,
		    size_t cap)
{
	struct kbuf *b = kbuf_new(cap);
	int r = b ? pv_encode_request(cfg->version, req, b) : KMS_ERR_ALLOC;
	if (r == KMS_OK)
		r = pv_write_msg(st->write, st->ctx, b, net_deadline(cfg->timeout_ms));
	kbuf_free(b);
	return r;
}

/* Writes raw bytes as one privval "message body" preceded by its length prefix. */
static int send_body(struct net_stream *st, const uint8_t *p, size_t n, int timeout_ms)
{
	struct kbuf *b = kbuf_from(p, n);
	int r = b ? pv_write_msg(st->write, st->ctx, b, net_deadline(timeout_ms)) : KMS_ERR_ALLOC;
	kbuf_free(b);
	return r;
}

/*
 * trickle: a PubKeyRequest one byte a second, each byte its own Secret
 * Connection frame: bytes keep moving, so only a deadline for the whole
 * message ends it. Gives up (reporting the connection still open) after
 * three times our own timeout.
 */
static void trickle(struct net_stream *st, int fd, const struct sim_cfg *cfg, char *out,
		    size_t cap)
{
	struct pv_request req;
	struct kbuf *b = kbuf_new(128);
	uint8_t framed[128];
	size_t n = 0, sent = 0;
	int64_t t0 = net_now_ms(), limit = 3 * (int64_t)cfg->timeout_ms;

	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PUBKEY;
	(void)snprintf(req.chain_id, sizeof(req.chain_id), "%s", cfg->chain_id);
	if (b == NULL || pv_encode_request(cfg->version, &req, b) != KMS_OK ||
	    kbuf_len(b) + 1 > sizeof(framed)) {
		(void)snprintf(out, cap, "setup failed");
		kbuf_free(b);
		return;
	}
	framed[n++] = (uint8_t)kbuf_len(b);
	memcpy(framed + n, kbuf_ptr(b), kbuf_len(b));
	n += kbuf_len(b);
	kbuf_free(b);
	while (net_now_ms() - t0 < limit) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (sent < n && st->write(st->ctx, framed + sent, 1, net_deadline(1000)) == KMS_OK)
			sent++;
		/* a second between bytes, watching for the signer hanging up */
		if (poll(&p, 1, 1000) > 0) {
			uint8_t x[64];
			if (read(fd, x, sizeof(x)) <= 0) {
				(void)snprintf(out, cap, "closed after %lld ms (%zu of %zu bytes sent)",
					       (long long)(net_now_ms() - t0), sent, n);
				return;
			}
		}
	}
	(void)snprintf(out, cap, "timeout: still open after %lld ms (%zu of %zu bytes sent)",
		       (long long)(net_now_ms() - t0), sent, n);
}

/*
 * refusal-flood: requests the signer refuses (another chain-id), back to
 * back for cfg->flood_ms: each refusal used to be one WARN line.
 */
static void refusal_flood(struct net_stream *st, const struct sim_cfg *cfg, char *out, size_t cap)
{
	struct pv_request req;
	uint64_t answered = 0;
	int64_t t0 = net_now_ms();
	char one[200] = "";

	base_vote(cfg, &req);
	req.chain_id[strlen(req.chain_id) - 1] ^= 0x01;
	while (net_now_ms() - t0 < cfg->flood_ms) {
		if (send_req(st, cfg, &req, 4096) != KMS_OK)
			break;
		wait_reply(st, cfg->version, cfg->timeout_ms, one, sizeof(one));
		if (strncmp(one, "error-reply", 11) != 0)
			break;
		answered++;
	}
	(void)snprintf(out, cap, "%llu refusals answered in %lld ms%s%s",
		       (unsigned long long)answered, (long long)(net_now_ms() - t0),
		       strncmp(one, "error-reply", 11) == 0 ? "" : "; then ",
		       strncmp(one, "error-reply", 11) == 0 ? "" : one);
}

/* Modes that run after a good handshake. */
static void after_handshake(const char *name, struct net_stream *st, int fd,
			    const struct sim_cfg *cfg, char *out, size_t cap)
{
	struct pv_request req;
	int t = cfg->timeout_ms;
	if (strcmp(name, "oversized-length") == 0) {
		/* uvarint announcing 2^40 bytes: must be refused before any allocation. */
		static const uint8_t big[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x20 };
		if (st->write(st->ctx, big, sizeof(big), net_deadline(t)) != KMS_OK)
			(void)snprintf(out, cap, "write failed");
		else
			wait_reply(st, cfg->version, t, out, cap);
	} else if (strcmp(name, "junk-protobuf") == 0) {
		static const uint8_t junk[] = {
			0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99, 0x01, 0x7a
		};
		if (send_body(st, junk, sizeof(junk), t) == KMS_OK)
			wait_reply(st, cfg->version, t, out, cap);
	} else if (strcmp(name, "unknown-oneof") == 0) {
		/* Message field 15 (not a privval oneof) carrying an empty message. */
		static const uint8_t unk[] = { 0x7a, 0x00 };
		if (send_body(st, unk, sizeof(unk), t) == KMS_OK) {
			wait_reply(st, cfg->version, t, out, cap);
			if (strncmp(out, "error-reply", 11) == 0)
				ping_after(st, cfg->version, t, out, cap);
		}
	} else if (strcmp(name, "negative-height") == 0) {
		base_vote(cfg, &req);
		req.vote.height = -5;
		if (send_req(st, cfg, &req, 4096) == KMS_OK) {
			wait_reply(st, cfg->version, t, out, cap);
			if (strncmp(out, "error-reply", 11) == 0)
				ping_after(st, cfg->version, t, out, cap);
		}
	} else if (strcmp(name, "oversized-extension") == 0) {
		/* 2 MiB: over the signer's message limit (1 MiB + 64 KiB by default). */
		size_t n = (size_t)2 << 20;
		uint8_t *ext = calloc(1, n);
		base_vote(cfg, &req);
		req.vote.extension = ext;
		req.vote.extension_len = ext ? n : 0;
		if (ext != NULL && send_req(st, cfg, &req, n + 4096) == KMS_OK)
			wait_reply(st, cfg->version, t, out, cap);
		else if (ext != NULL)
			(void)snprintf(out, cap, "closed while we were sending");
		free(ext);
	} else if (strcmp(name, "wrong-chain-id") == 0) {
		base_vote(cfg, &req);
		/* same length, last character changed: only the comparison can catch it */
		req.chain_id[strlen(req.chain_id) - 1] ^= 0x01;
		if (send_req(st, cfg, &req, 4096) == KMS_OK) {
			wait_reply(st, cfg->version, t, out, cap);
			if (strncmp(out, "error-reply", 11) == 0)
				ping_after(st, cfg->version, t, out, cap);
		}
	} else if (strcmp(name, "slowloris") == 0) {
		/* A length prefix and half the body, then silence. */
		static const uint8_t part[] = { 0x40, 0x12, 0x3e, 0x0a };
		if (st->write(st->ctx, part, sizeof(part), net_deadline(t)) == KMS_OK)
			wait_close(fd, t, out, cap);
	} else if (strcmp(name, "trickle") == 0) {
		trickle(st, fd, cfg, out, cap);
	} else if (strcmp(name, "refusal-flood") == 0) {
		refusal_flood(st, cfg, out, cap);
	} else if (strcmp(name, "never-reads") == 0) {
		/* Pings without reading replies: the signer's writes eventually block. */
		size_t sent = 0;
		int64_t t0 = net_now_ms();
		memset(&req, 0, sizeof(req));
		req.kind = PV_REQ_PING;
		while (net_now_ms() - t0 < t && send_req(st, cfg, &req, 64) == KMS_OK)
			sent++;
		(void)snprintf(out, cap, "%zu pings sent unread, then ", sent);
		size_t len = strlen(out);
		wait_close(fd, t, out + len, cap - len);
	}
	if (out[0] == '\0')
		(void)snprintf(out, cap, "closed (write failed)");
}

static void raw_handshake_mode(const char *name, int fd, const struct sim_cfg *cfg, char *out,
			       size_t cap)
{
	uint8_t msg[EPH_MSG_LEN] = { 0x22, 0x0a, 0x20 };
	uint8_t junk[64];
	if (strcmp(name, "truncated-handshake") == 0) {
		if (kcrypto_random(msg + 3, 32) != KMS_OK ||
		    net_write_full(fd, msg, 12, cfg->timeout_ms) != KMS_OK) {
			(void)snprintf(out, cap, "closed before we wrote");
			return;
		}
	} else if (strcmp(name, "garbage-handshake") == 0) {
		if (kcrypto_random(junk, sizeof(junk)) != KMS_OK ||
		    net_write_full(fd, junk, sizeof(junk), cfg->timeout_ms) != KMS_OK) {
			(void)snprintf(out, cap, "closed before we wrote");
			return;
		}
	} else { /* low-order-key: u = 0, of order 1 in the X25519 group: a zero shared secret */
		if (net_write_full(fd, msg, sizeof(msg), cfg->timeout_ms) != KMS_OK) {
			(void)snprintf(out, cap, "closed before we wrote");
			return;
		}
	}
	wait_close(fd, cfg->timeout_ms, out, cap);
}

void sim_hostile_run(const char *name, struct sim_listener *l, int fd, const struct sim_cfg *cfg,
		     char *out, size_t cap)
{
	struct sc_conn *sc = NULL;
	struct net_stream st;
	struct relay rl;
	int sp[2] = { -1, -1 };
	int cfd = fd, relay_on = 0;
	int r;

	out[0] = '\0';
	if (strcmp(name, "truncated-handshake") == 0 || strcmp(name, "garbage-handshake") == 0 ||
	    strcmp(name, "low-order-key") == 0) {
		if (l->addr.scheme == NET_UNIX)
			(void)snprintf(out, cap, "n/a on a unix socket (no handshake)");
		else
			raw_handshake_mode(name, fd, cfg, out, cap);
		return;
	}
	if (strcmp(name, "bad-auth-signature") == 0) {
		struct sc_identity real, id;
		struct bad_signer bs = { &real };
		if (l->addr.scheme == NET_UNIX) {
			(void)snprintf(out, cap, "n/a on a unix socket (no handshake)");
			return;
		}
		sc_soft_identity_get(l->si, &real);
		id = real;
		id.sign = bad_sign;
		id.sign_ctx = &bs;
		r = sc_handshake(fd, &id, NULL, cfg->timeout_ms, &sc);
		if (r != KMS_OK) {
			(void)snprintf(out, cap, "closed during handshake (%s)", kms_strerror(r));
			return;
		}
		sc_stream(sc, &st);
		(void)snprintf(out, cap, "handshake completed on our side; ");
		size_t len = strlen(out);
		wait_reply(&st, cfg->version, cfg->timeout_ms, out + len, cap - len);
		sc_conn_free(sc);
		return;
	}
	if (strcmp(name, "flipped-tag") == 0) {
		if (l->addr.scheme == NET_UNIX) {
			(void)snprintf(out, cap, "n/a on a unix socket (no frames)");
			return;
		}
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
			(void)snprintf(out, cap, "socketpair failed");
			return;
		}
		/* Our bytes: the 35-byte ephemeral message, the AuthSig frame, then data frames:
		 * flip the last tag byte of the first data frame. */
		rl.inner = sp[1];
		rl.outer = fd;
		rl.flip_at = EPH_MSG_LEN + 2 * (size_t)SC_FRAME_SEALED - 1;
		if (pthread_create(&rl.tid, NULL, relay_main, &rl) != 0) {
			(void)snprintf(out, cap, "pthread_create failed");
			net_close(&sp[0]);
			net_close(&sp[1]);
			return;
		}
		relay_on = 1;
		cfd = sp[0];
	}
	r = open_conn(l, cfd, cfg->timeout_ms, &sc, &st, &cfd);
	if (r != KMS_OK) {
		(void)snprintf(out, cap, "handshake failed (%s)", kms_strerror(r));
		goto done;
	}
	if (relay_on) {
		struct pv_request req;
		memset(&req, 0, sizeof(req));
		req.kind = PV_REQ_PING;
		if (send_req(&st, cfg, &req, 64) != KMS_OK)
			(void)snprintf(out, cap, "closed (write failed)");
		else
			wait_reply(&st, cfg->version, cfg->timeout_ms, out, cap);
		goto done;
	}
	after_handshake(name, &st, cfd, cfg, out, cap);
done:
	sc_conn_free(sc);
	if (relay_on) {
		(void)shutdown(sp[0], SHUT_RDWR);
		(void)shutdown(fd, SHUT_RDWR);
		(void)pthread_join(rl.tid, NULL);
		net_close(&sp[0]);
		net_close(&sp[1]);
	}
}
