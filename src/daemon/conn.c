/* SPDX-License-Identifier: Apache-2.0 */
/* A connection thread: dial → handshake (tcp) → request loop → redial, or back off. */
#include <poll.h>
#include <stdio.h>
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

/*
 * A node that exits or panics on our reply drops the connection within this
 * (a Go panic exits in milliseconds; the margin is for a loaded machine).
 */
#define CLOSED_RIGHT_AFTER_MS 1000

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

/* How a session ended, which decides how soon the thread dials again. */
enum sess_end {
	SESS_DIAL_FAILED, /* nobody to talk to: redial at redial_ms */
	SESS_HS_FAILED,	  /* something answered but no session: back off */
	SESS_EMPTY,	  /* a session that ended before any request: back off */
	SESS_SERVED,	  /* requests were answered: redial at redial_ms */
};

/* The connection thread's own state, kept across sessions. */
struct conn_run {
	struct d_conn *c;
	struct d_logrl fail_rl;	  /* dial and handshake failures, empty sessions, mismatches */
	struct d_logrl refuse_rl; /* refusals (the handler), flushed per session */
	int said_unverified;
};

/* What one session learnt about the node (for the version checks). */
struct sess {
	unsigned families; /* PV_FAM_* the node's requests are consistent with */
	int mismatch_said;
	uint64_t answered;
	enum pv_req_kind last_kind;
	int last_precommit_no_ext; /* the last reply: a signed non-nil precommit, no ext signature */
	uint64_t n_precommit_no_ext; /* such replies in this session */
	int64_t last_h;
	int32_t last_r;
	int64_t last_reply_ms;
};

static void status(const struct d_conn *c, enum obs_status_kind kind, int err)
{
	obs_status(&(struct obs_status){
		.kind = kind, .chain_id = c->v->chain_id, .peer = c->peer, .err = err });
}

/* "file:line" of this validators entry, for messages that name a config key. */
static void where(const struct d_conn *c, char *out, size_t cap)
{
	(void)snprintf(out, cap, "%s:%d", c->d->cfg->path, c->v->line);
}

/* ---- dial and handshake failures ---- */

static void log_dial_fail(struct conn_run *run, int r, const struct net_dial_fail *f)
{
	const struct d_conn *c = run->c;
	char key[64];

	(void)snprintf(key, sizeof(key), "dial/%s", net_dial_fail_name(f));
	(void)d_logrl_log(&run->fail_rl, net_now_ms(), KMS_LOG_WARN, key,
			  "cannot connect chain=%s peer=%s err=%s: %s (retrying every %u ms%s)",
			  c->v->chain_id, c->peer, net_dial_fail_name(f),
			  r == KMS_ERR_FORMAT ? "bad address" : net_dial_fail_hint(&c->v->net, f),
			  c->v->redial_ms, c->v->reconnect ? "" : "; reconnect = false: not");
}

/* The peer's first bytes for a log line: printable ASCII, the rest as \xNN. */
static void printable(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 5 < cap; i++) {
		if (p[i] == '\r' || p[i] == '\n')
			k += (size_t)snprintf(out + k, cap - k, "\\%c", p[i] == '\r' ? 'r' : 'n');
		else if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
			out[k++] = (char)p[i];
		else
			k += (size_t)snprintf(out + k, cap - k, "\\x%02x", p[i]);
	}
	out[k] = '\0';
}

static void log_hs_fail(struct conn_run *run, int r, const struct sc_hs_fail *f)
{
	const struct d_conn *c = run->c;
	int64_t now = net_now_ms();
	char key[160], at[300];

	where(c, at, sizeof(at));
	(void)snprintf(key, sizeof(key), "hs/%s/%s/%d", f->step ? f->step : "?",
		       f->reason ? f->reason : "", r);
	if (f->not_sc) {
		char first[80];

		printable(f->first, f->first_len, first, sizeof(first));
		(void)d_logrl_log(&run->fail_rl, now, KMS_LOG_WARN, key,
				  "the peer does not speak Secret Connection chain=%s peer=%s "
				  "first_bytes=\"%s\": is this the node's priv_validator_laddr? "
				  "(addr at %s)",
				  c->v->chain_id, c->peer, first, at);
	} else if (f->has_peer_id) {
		char got[41];

		for (size_t i = 0; i < SC_NODE_ID_LEN; i++)
			(void)snprintf(got + 2 * i, 3, "%02x", f->peer_id[i]);
		(void)d_logrl_log(&run->fail_rl, now, KMS_LOG_WARN, key,
				  "handshake failed chain=%s peer=%s: the node's id is %s, not the "
				  "one in addr (%s); CometBFT's privval listener makes a new id at "
				  "every start, so pin it only if the node keeps it",
				  c->v->chain_id, c->peer, got, at);
	} else {
		(void)d_logrl_log(
			&run->fail_rl, now, KMS_LOG_WARN, key,
			"handshake failed chain=%s peer=%s step=%s reason=\"%s\" err=\"%s\"",
			c->v->chain_id, c->peer, f->step ? f->step : "?",
			f->reason ? f->reason : kms_strerror(r), kms_strerror(r));
	}
}

/* Secret Connection on tcp (identity signs through its slot), plain stream on unix. */
static int open_stream(struct conn_run *run, struct sc_conn **sc, struct net_fd_reader *rb,
		       struct net_stream *st)
{
	struct d_conn *c = run->c;
	const struct cfg_validator *v = c->v;
	struct sc_hs_fail fail;
	char id_hex[41];
	int r;

	if (v->net.scheme == NET_UNIX) {
		net_stream_fd_readahead(rb, &c->fd, st); /* prefix and body: one recv */
		kms_log_info("connected chain=%s peer=%s proto=%s transport=unix", v->chain_id,
			     c->peer, cfg_proto_name(v->protocol_version));
		return KMS_OK;
	}
	struct sc_identity id = { .sign = ident_sign, .sign_ctx = c->ident->slot };
	slot_pubkey(c->ident->slot, id.pub);
	r = sc_handshake_ex(c->fd, &id, v->net.has_node_id ? v->net.node_id : NULL, v->timeout_ms,
			    &fail, sc);
	if (r != KMS_OK) {
		log_hs_fail(run, r, &fail);
		return r;
	}
	sc_remote_id_hex(*sc, id_hex);
	kms_log_info("connected chain=%s peer=%s node_id=%s proto=%s transport=secret-connection",
		     v->chain_id, c->peer, id_hex, cfg_proto_name(v->protocol_version));
	if (!v->net.has_node_id && !run->said_unverified)
		kms_log_warn("peer unverified chain=%s peer=%s node_id=%s: no node id in addr "
			     "(CometBFT's privval listener key is ephemeral, so this is usual; "
			     "logged once)",
			     v->chain_id, c->peer, id_hex);
	run->said_unverified = 1;
	sc_stream(*sc, st);
	return KMS_OK;
}

/* ---- which version the node speaks ---- */

/* What in req told us something about the node's family. */
static const char *evidence(const struct pv_request *req)
{
	if (req->wire & PV_WIRE_SKIP_EXT)
		return "set skip_extension_signing (a v1 field)";
	if (req->wire & PV_WIRE_VOTE_EXT)
		return "sent vote extension fields (v0.38 and later)";
	return "sent a prevote without skip_extension_signing (v1 sets it on every prevote)";
}

/* What an explicit protocol_version gets wrong with a node of another family. */
static const char *consequence(unsigned configured)
{
	if (configured & PV_FAM_A)
		return "our precommits carry no vote extension signature, and a node with vote "
		       "extensions enabled panics on that";
	if (configured & PV_FAM_B)
		return "a v1 node cannot read our public key and ignores our extension signatures";
	return "a node older than v1 cannot read our public key";
}

/* Narrows what the node can be after one request; logs when it becomes clearer. */
static void note_families(struct conn_run *run, struct sess *s, const struct pv_request *req)
{
	const struct d_conn *c = run->c;
	const struct pv_version_info *vi = pv_version_info(c->version);
	unsigned f = s->families & pv_request_families(req);
	char at[300];

	if (f == s->families || vi == NULL)
		return;
	s->families = f;
	if ((f & vi->families) != 0) {
		kms_log_info(
			"node appears to speak %s chain=%s peer=%s protocol_version=%s (it %s)",
			pv_families_name(f), c->v->chain_id, c->peer, vi->name, evidence(req));
		return;
	}
	if (s->mismatch_said)
		return;
	s->mismatch_said = 1;
	where(c, at, sizeof(at));
	(void)d_logrl_log(&run->fail_rl, net_now_ms(), KMS_LOG_ERR, "mismatch/request",
			  "protocol_version mismatch chain=%s peer=%s: the node %s, so it speaks "
			  "%s, but protocol_version = \"%s\" (%s): %s. Set protocol_version = "
			  "\"%s\" or \"auto\" in that validators entry",
			  c->v->chain_id, c->peer, evidence(req), pv_families_name(f), vi->name, at,
			  consequence(vi->families), pv_families_suggest(f));
}

/*
 * The node hung up right after a reply: with an explicit protocol_version
 * this is how a node of another version fails (it exits at start when it
 * cannot read our public key; a v0.38+ node panics on a precommit without the
 * extension signature it needs). Say so, naming the likely cause.
 */
static void closed_right_after(struct conn_run *run, const struct sess *s)
{
	const struct d_conn *c = run->c;
	const struct pv_version_info *vi = pv_version_info(c->version);
	char at[300];

	if (vi == NULL || s->answered == 0 ||
	    net_now_ms() - s->last_reply_ms > CLOSED_RIGHT_AFTER_MS)
		return;
	where(c, at, sizeof(at));
	if (s->last_kind == PV_REQ_PUBKEY && s->answered == 1 && vi->families != PV_FAM_ALL) {
		int legacy = vi->pubkey_layout == PV_PUBKEY_PUBLICKEY;
		(void)d_logrl_log(
			&run->fail_rl, net_now_ms(), KMS_LOG_ERR, "mismatch/pubkey",
			"the node closed the connection right after our first PubKeyResponse "
			"chain=%s peer=%s: %s Set protocol_version = \"%s\" or \"auto\" (%s)",
			c->v->chain_id, c->peer,
			legacy ? "a CometBFT v1 node cannot read its pub_key field and exits "
				 "(\"can't get pubkey\"); is the node v1?" :
				 "a node older than v1 (v0.34-v0.40) reads only pub_key, which the "
				 "v1 reply leaves out, and exits; is the node older than v1?",
			legacy ? "v1" : "v0.37 / v0.38 as the node runs", at);
		return;
	}
	/* a node that needs the signature panics on the first such precommit of its session;
	 * a node stopped by its operator after many of them is not evidence */
	if (!s->last_precommit_no_ext || s->n_precommit_no_ext != 1)
		return;
	if (!vi->has_extensions)
		(void)d_logrl_log(
			&run->fail_rl, net_now_ms(), KMS_LOG_ERR, "mismatch/precommit",
			"the node closed the connection right after our precommit h=%lld r=%d "
			"chain=%s peer=%s, which had no vote extension signature: a CometBFT "
			"v0.38+ node with vote extensions enabled panics on that. protocol_version "
			"= \"%s\" (%s): set \"v0.38\" (\"v1\" for a v1 node) or \"auto\"",
			(long long)s->last_h, (int)s->last_r, c->v->chain_id, c->peer, vi->name,
			at);
	else if (c->version == PV_V0_38)
		(void)d_logrl_log(
			&run->fail_rl, net_now_ms(), KMS_LOG_ERR, "mismatch/sign_extensions",
			"the node closed the connection right after our precommit h=%lld r=%d "
			"chain=%s peer=%s, which had no vote extension signature: set "
			"sign_extensions = true for chain %s (%s:%d); v0.38.0-v0.38.10 nodes "
			"need it even while extensions are disabled",
			(long long)s->last_h, (int)s->last_r, c->v->chain_id, c->peer,
			c->chain->cc->id, c->d->cfg->path, c->chain->cc->line);
}

/* ---- the request loop ---- */

/* Remembers what was answered, for closed_right_after(). */
static void note_reply(struct sess *s, const struct pv_request *req, const struct obs_event *ev)
{
	s->answered++;
	s->last_kind = req->kind;
	s->last_reply_ms = net_now_ms();
	s->last_precommit_no_ext =
		req->kind == PV_REQ_SIGN_VOTE && req->vote.type == PV_TYPE_PRECOMMIT &&
		!pv_block_id_is_nil(&req->vote.block_id) &&
		(ev->decision == OBS_DEC_SIGNED || ev->decision == OBS_DEC_STORED) &&
		!ev->ext_signed;
	s->n_precommit_no_ext += (uint64_t)s->last_precommit_no_ext;
	s->last_h = req->vote.height;
	s->last_r = req->vote.round;
}

/*
 * Reads, decodes, answers until the transport fails or the daemon stops.
 * Each request has one deadline (timeout_ms from when we start waiting for
 * it, covering every byte and frame), and so does each reply.
 * *writing is set when the failure happened while writing a reply.
 */
static int serve(struct conn_run *run, struct net_stream *st, struct sess *s, int *writing)
{
	struct d_conn *c = run->c;
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
		.refusal_rl = &run->refuse_rl,
		.audit = c->d->audit,
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
		r = pv_read_msg(st->read, st->ctx, v->max_msg_size, net_deadline(v->timeout_ms),
				&msg);
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
		note_families(run, s, req);
		struct obs_event ev;
		d_obs_busy(c, 1);
		r = handler_handle(&h, req, out, &ev);
		d_obs_busy(c, 0);
		kbuf_free(msg);
		if (r != KMS_OK) {
			pv_request_free(req);
			kms_log_err("cannot encode a response chain=%s peer=%s: %s", v->chain_id,
				    c->peer, kms_strerror(r));
			break;
		}
		r = pv_write_msg(st->write, st->ctx, out, net_deadline(v->timeout_ms));
		/* After the reply (DESIGN.md): metrics and audit see the decision,
		 * also when the write failed (the signature's record is durable). */
		ev.latency_ns = obs_mono_ns() - ev.mono_ns;
		obs_emit(&ev);
		if (r == KMS_OK)
			note_reply(s, req, &ev);
		pv_request_free(req);
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
				 "timeout (no complete request or ping within timeout)";
	case KMS_ERR_TOO_LARGE:
		return "message over max_msg_size";
	default:
		return kms_strerror(r);
	}
}

/* The end of an established session: log it, and what the node's hanging up suggests. */
static void session_ended(struct conn_run *run, const struct sess *s, int r, int writing)
{
	struct d_conn *c = run->c;

	status(c, OBS_ST_CONN_DOWN, r);
	d_logrl_flush(&run->refuse_rl, net_now_ms());
	if (stopping(c)) {
		kms_log_info("disconnected chain=%s peer=%s reason=shutdown", c->v->chain_id,
			     c->peer);
		return;
	}
	if (r == KMS_ERR_CONN_CLOSED)
		closed_right_after(run, s);
	if (s->answered == 0) /* nothing served: a peer that keeps doing this is folded */
		(void)d_logrl_log(&run->fail_rl, net_now_ms(), KMS_LOG_WARN, "empty",
				  "disconnected chain=%s peer=%s reason=\"%s\" before any request",
				  c->v->chain_id, c->peer, disconnect_reason(r, writing));
	else
		kms_log_warn("disconnected chain=%s peer=%s reason=\"%s\" requests=%llu",
			     c->v->chain_id, c->peer, disconnect_reason(r, writing),
			     (unsigned long long)s->answered);
}

/* One dial-to-disconnect cycle. */
static enum sess_end session(struct conn_run *run)
{
	struct d_conn *c = run->c;
	const struct cfg_validator *v = c->v;
	struct sess s = { .families = PV_FAM_ALL };
	struct net_dial_fail why;
	struct sc_conn *sc = NULL;
	struct net_stream st;
	struct net_fd_reader rb; /* unix: the bytes read ahead, for this session */
	enum sess_end end = SESS_HS_FAILED;
	int fd = -1, writing = 0;
	int r;

	r = net_dial_ex(&v->net, v->timeout_ms, &fd, &why);
	if (r != KMS_OK) {
		status(c, OBS_ST_DIAL_FAILED, r);
		log_dial_fail(run, r, &why);
		return SESS_DIAL_FAILED;
	}
	set_fd(c, fd);
	/* A stop that raced with the dial: the supervisor may have missed this fd. */
	if (stopping(c))
		goto out;
	r = open_stream(run, &sc, &rb, &st);
	if (r != KMS_OK) {
		status(c, OBS_ST_HANDSHAKE_FAILED, r);
		goto out;
	}
	/* connected: what failed before, and how often, is said once */
	d_logrl_flush(&run->fail_rl, net_now_ms());
	status(c, OBS_ST_CONN_UP, KMS_OK);
	r = serve(run, &st, &s, &writing);
	session_ended(run, &s, r, writing);
	end = s.answered > 0 ? SESS_SERVED : SESS_EMPTY;
out:
	sc_conn_free(sc);
	close_fd(c);
	return end;
}

/* ---- timing ---- */

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

/*
 * While there is no connection, redial every redial_ms at the most, minus up
 * to a quarter of random jitter: a node gives its signer about 3 s at start
 * (spec §1.5), and several signers (or entries) must not dial in step.
 */
static int redial_ms(const struct cfg_validator *v, unsigned *seed)
{
	uint32_t d = v->redial_ms > 0 ? v->redial_ms : CFG_DEFAULT_REDIAL_MS;
	return (int)(d - (uint32_t)rand_r(seed) % (d / 4 + 1));
}

void *d_conn_main(void *arg)
{
	struct d_conn *c = arg;
	struct daemon *d = c->d;
	struct conn_run run = { .c = c };
	unsigned attempt = 0;
	/* Jitter only spreads redials out; it needs no cryptographic randomness. */
	unsigned seed = (unsigned)net_now_ms() ^ (unsigned)(uintptr_t)c;

	d_logrl_init(&run.fail_rl, D_LOGRL_PERIOD_MS);
	d_logrl_init(&run.refuse_rl, D_LOGRL_PERIOD_MS);
	while (!stopping(c)) {
		enum sess_end end = session(&run);
		int ms;

		if (stopping(c))
			break;
		if (!c->v->reconnect) {
			kms_log_err(
				"connection ended chain=%s peer=%s: reconnect = false, not redialling",
				c->v->chain_id, c->peer);
			break;
		}
		if (end == SESS_SERVED)
			attempt = 0;
		if (end == SESS_DIAL_FAILED || end == SESS_SERVED) {
			ms = redial_ms(c->v, &seed);
		} else {
			/* something answered and failed: a wrong key or a hostile peer must not spin */
			ms = backoff_ms(c->v, attempt, &seed);
			if (attempt < 32)
				attempt++;
		}
		if (d_sleep(d, ms))
			break;
	}
	d_logrl_flush(&run.fail_rl, net_now_ms());
	if (atomic_fetch_sub(&d->live, 1) == 1)
		d_wake(d);
	return NULL;
}
