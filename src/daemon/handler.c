/* SPDX-License-Identifier: Apache-2.0 */
/* The request handler: validates (pv_), checks and persists (guard_), signs (slot_), replies. */
#include "p11kms/daemon.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "p11kms/audit.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "p11kms/obs.h"
#include "p11kms/pv.h"
#include "p11kms/slot.h"
#include "daemon_int.h"

/* Sign-bytes buffers: a CanonicalVote is < 300 bytes; the guard stores at most this. */
#define SIGN_BYTES_CAP (GUARD_MAX_SIGN_BYTES + 16)

static int slot_sign_cb(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	return slot_sign((struct slot *)ctx, msg, len, sig);
}

/* tmkms's names, which operators grep for. */
static const char *type_label(int32_t type)
{
	switch (type) {
	case PV_TYPE_PREVOTE:
		return "PreVote";
	case PV_TYPE_PRECOMMIT:
		return "PreCommit";
	case PV_TYPE_PROPOSAL:
		return "Proposal";
	default:
		return "Unknown";
	}
}

/* Operator-facing request names (tmkms and CometBFT spell them this way). */
static const char *kind_label(enum pv_req_kind k)
{
	switch (k) {
	case PV_REQ_PUBKEY:
		return "PubKey";
	case PV_REQ_SIGN_VOTE:
		return "SignVote";
	case PV_REQ_SIGN_PROPOSAL:
		return "SignProposal";
	case PV_REQ_PING:
		return "Ping";
	case PV_REQ_SIGN_BYTES:
		return "SignBytes";
	}
	return "?";
}

/* "8B0102…" (first 3 bytes of the block hash) or "nil". */
static void block_prefix(const struct pv_block_id *b, char out[static 16])
{
	if (b->hash_len == 0) {
		(void)snprintf(out, 16, "nil");
		return;
	}
	(void)snprintf(out, 16, "%02X%02X%02X\xe2\x80\xa6", b->hash[0], b->hash[1], b->hash[2]);
}

/* Monotonic microseconds: signing latency is well under a millisecond on softsign. */
static int64_t now_us(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double ms_since(int64_t t0_us)
{
	return (double)(now_us() - t0_us) / 1000.0;
}

/*
 * Refusal: WARN with the reason, then a RemoteSignerError response carrying
 * desc (the connection stays up).
 */
static int refuse_as(const struct handler_ctx *h, const struct pv_request *req, enum pv_code code,
		     enum obs_why kind, const char *why, const char *desc, struct kbuf *out,
		     struct obs_event *ev)
{
	ev->decision = OBS_DEC_REFUSED;
	ev->why = kind;
	ev->code = (int32_t)code;
	(void)snprintf(ev->detail, sizeof(ev->detail), "%s", why);
	if (h->refusal_rl != NULL) {
		/* a node repeating what we refuse gets one line, then a count per minute */
		char key[64];
		(void)snprintf(key, sizeof(key), "%s/%d/%d", kind_label(req->kind), (int)code,
			       (int)kind);
		(void)d_logrl_log(h->refusal_rl, net_now_ms(), KMS_LOG_WARN, key,
				  "refused %s chain=%s code=%d peer=%s: %s", kind_label(req->kind),
				  h->chain_id, (int)code, h->peer, why);
	} else {
		kms_log_warn("refused %s chain=%s code=%d peer=%s: %s", kind_label(req->kind),
			     h->chain_id, (int)code, h->peer, why);
	}
	kbuf_reset(out);
	return pv_encode_error_response(h->version, req->kind, (int32_t)code, desc, out);
}

/* Refusal whose reply tells the node the same reason we log. */
static int refuse(const struct handler_ctx *h, const struct pv_request *req, enum pv_code code,
		  enum obs_why kind, const char *why, struct kbuf *out, struct obs_event *ev)
{
	return refuse_as(h, req, code, kind, why, why, out, ev);
}

/* Which obs_why a guard/slot failure is. */
static enum obs_why why_for_sign_err(int r, const struct guard_result *res)
{
	if (res->cluster)
		return OBS_WHY_CLUSTER; /* #20: the cluster mark refused, or etcd failed */
	if (r == KMS_ERR_DOUBLE_SIGN)
		return res->regression ? OBS_WHY_REGRESSION : OBS_WHY_CONFLICT;
	if (r == KMS_ERR_REFUSED)
		return OBS_WHY_MALFORMED;
	if (r == KMS_ERR_STATE_IO)
		return OBS_WHY_STATE;
	if (r == KMS_ERR_AUTH || r == KMS_ERR_TIMEOUT || r == KMS_ERR_PIN_INCORRECT ||
	    r == KMS_ERR_PIN_LOCKED || r == KMS_ERR_NOT_FOUND || r == KMS_ERR_PKCS11)
		return OBS_WHY_TOKEN;
	return OBS_WHY_INTERNAL;
}

/* Maps a guard/slot error to a code; the guard's REFUSED means inconsistent sign bytes. */
static enum pv_code code_for_sign_err(int r)
{
	if (r == KMS_ERR_REFUSED)
		return PV_CODE_INVALID_REQUEST;
	if (r == KMS_ERR_AUTH || r == KMS_ERR_TIMEOUT || r == KMS_ERR_PIN_INCORRECT ||
	    r == KMS_ERR_PIN_LOCKED || r == KMS_ERR_NOT_FOUND)
		return PV_CODE_SIGN_FAILED;
	return pv_code_for_err(r);
}

static int check_height(const struct handler_ctx *h, const struct pv_request *req, int64_t height,
			struct kbuf *out, int *refused, struct obs_event *ev)
{
	char why[128];
	*refused = 0;
	if (h->max_height == 0 || (uint64_t)height <= h->max_height)
		return KMS_OK;
	(void)snprintf(why, sizeof(why), "height %lld is above max_height %llu", (long long)height,
		       (unsigned long long)h->max_height);
	*refused = 1;
	return refuse(h, req, PV_CODE_MAX_HEIGHT, OBS_WHY_MAX_HEIGHT, why, out, ev);
}

/*
 * Runs the guard over sign bytes sb for hrs. On a refusal or failure, the
 * error response is written to out and *refused set.
 */
static int guarded_sign(const struct handler_ctx *h, const struct pv_request *req,
			struct guard_hrs hrs, const struct kbuf *sb, struct guard_result *res,
			struct kbuf *out, int *refused, struct obs_event *ev)
{
	struct guard_request greq = {
		.hrs = hrs,
		.sign_bytes = kbuf_ptr(sb),
		.sign_bytes_len = kbuf_len(sb),
	};
	char why[320];
	*refused = 0;
	memset(res, 0, sizeof(*res));
	if (obs_want_digest()) {
		(void)SHA256(kbuf_ptr(sb), kbuf_len(sb), ev->sign_bytes_sha256);
		ev->has_sign_bytes = 1;
	}
	/* audit.fail_closed: refused before anything is signed (docs/audit.md) */
	if (audit_admit(h->audit, why, sizeof(why)) != KMS_OK) {
		*refused = 1;
		return refuse(h, req, PV_CODE_STATE_UNAVAILABLE, OBS_WHY_AUDIT, why, out, ev);
	}
	int r = guard_sign(h->guard, &greq, slot_sign_cb, h->key, res);
	ev->guard_seq = res->seq;
	ev->sign_ns = res->sign_ns;
	ev->sync_ns = res->sync_ns;
	if (r == KMS_OK) {
		ev->decision = res->reused ? OBS_DEC_STORED : OBS_DEC_SIGNED;
		if (!res->reused)
			ev->slot = slot_describe(h->key);
		return KMS_OK;
	}
	*refused = 1;
	if (r == KMS_ERR_STATE_IO)
		kms_log_err("double-sign state of chain %s cannot be made durable: every signature "
			    "for this chain is refused until p11kms is restarted (check the disk "
			    "holding the state file)",
			    h->chain_id);
	if (res->reason[0] != '\0')
		(void)snprintf(why, sizeof(why), "%s", res->reason);
	else
		(void)snprintf(why, sizeof(why), "h=%lld r=%d s=%d: %s", (long long)hrs.height,
			       (int)hrs.round, (int)hrs.step, kms_strerror(r));
	/* #20: a cluster regression/conflict is a double sign (2); etcd unavailable is 6 */
	enum pv_code code = res->cluster && r != KMS_ERR_DOUBLE_SIGN ? PV_CODE_STATE_UNAVAILABLE :
								       code_for_sign_err(r);
	return refuse(h, req, code, why_for_sign_err(r, res), why, out, ev);
}

/*
 * Vote extensions (spec §3.6): family B signs every non-nil precommit when the
 * chain enables them (the node panics if one is missing, and also if one is
 * present on a prevote or nil precommit); family C follows
 * skip_extension_signing. Never part of the guard state: computed fresh on
 * every request, repeats included (FilePV TestVoteExtensionsAreAlwaysSigned).
 */
static int sign_extension(const struct handler_ctx *h, const struct pv_request *req,
			  struct pv_vote *vote, int *signed_ext)
{
	*signed_ext = 0;
	vote->extension_signature_len = 0;
	if (!pv_wants_extension_signature(h->version, req))
		return KMS_OK;
	if (h->version == PV_V0_38 && !h->sign_extensions)
		return KMS_OK;
	struct kbuf *eb = kbuf_new(req->vote.extension_len + 256);
	if (eb == NULL)
		return KMS_ERR_ALLOC;
	int r = pv_vote_extension_sign_bytes(h->chain_id, vote, eb);
	if (r == KMS_OK)
		r = slot_sign(h->key, kbuf_ptr(eb), kbuf_len(eb), vote->extension_signature);
	if (r == KMS_OK) {
		vote->extension_signature_len = PV_SIG_LEN;
		*signed_ext = 1;
	}
	kbuf_free(eb);
	return r;
}

static int handle_vote(const struct handler_ctx *h, const struct pv_request *req, struct kbuf *out,
		       struct obs_event *ev)
{
	struct pv_vote vote = req->vote; /* echoed back with our fields (spec §3.6) */
	struct guard_result res;
	struct guard_hrs hrs = {
		.height = vote.height,
		.round = vote.round,
		.step = vote.type == PV_TYPE_PREVOTE ? GUARD_STEP_PREVOTE : GUARD_STEP_PRECOMMIT,
	};
	struct kbuf *sb = NULL;
	char blk[16];
	int refused = 0, signed_ext = 0;
	int64_t t0 = now_us();
	int r;

	r = check_height(h, req, vote.height, out, &refused, ev);
	if (r != KMS_OK || refused)
		return r;
	if ((sb = kbuf_new(SIGN_BYTES_CAP)) == NULL)
		return KMS_ERR_ALLOC;
	r = pv_vote_sign_bytes(h->chain_id, &vote, sb);
	if (r != KMS_OK) {
		r = refuse(h, req,
			   r == KMS_ERR_NO_SPACE ? PV_CODE_TOO_LARGE : PV_CODE_INVALID_REQUEST,
			   OBS_WHY_MALFORMED, "cannot compute the vote's sign bytes", out, ev);
		goto out;
	}
	r = guarded_sign(h, req, hrs, sb, &res, out, &refused, ev);
	if (r != KMS_OK || refused)
		goto out;
	memcpy(vote.signature, res.signature, PV_SIG_LEN);
	vote.signature_len = PV_SIG_LEN;
	if (res.timestamp_replaced) {
		vote.timestamp.seconds = res.ts_seconds;
		vote.timestamp.nanos = res.ts_nanos;
	}
	r = sign_extension(h, req, &vote, &signed_ext);
	if (r != KMS_OK) {
		char why[128];
		(void)snprintf(why, sizeof(why), "h=%lld r=%d: extension signature failed: %s",
			       (long long)vote.height, (int)vote.round, kms_strerror(r));
		/* The main signature's record is durable; the reply is still a refusal. */
		r = refuse(h, req, code_for_sign_err(r), OBS_WHY_TOKEN, why, out, ev);
		goto out;
	}
	ev->ext_signed = signed_ext;
	kbuf_reset(out);
	r = pv_encode_signed_vote_response(h->version, &vote, out);
	if (r != KMS_OK)
		goto out;
	block_prefix(&vote.block_id, blk);
	kms_log_info("signed %s chain=%s h=%lld r=%d s=%d block=%s%s%s%s ms=%.2f peer=%s",
		     type_label(vote.type), h->chain_id, (long long)vote.height, (int)vote.round,
		     (int)hrs.step, blk, signed_ext ? " ext=signed" : "",
		     res.reused ? " reused=1" : "", res.timestamp_replaced ? " ts=stored" : "",
		     ms_since(t0), h->peer);
out:
	kbuf_free(sb);
	return r;
}

static int handle_proposal(const struct handler_ctx *h, const struct pv_request *req,
			   struct kbuf *out, struct obs_event *ev)
{
	struct pv_proposal prop = req->proposal;
	struct guard_result res;
	struct guard_hrs hrs = { .height = prop.height,
				 .round = prop.round,
				 .step = GUARD_STEP_PROPOSE };
	struct kbuf *sb = NULL;
	char blk[16];
	int refused = 0;
	int64_t t0 = now_us();
	int r;

	r = check_height(h, req, prop.height, out, &refused, ev);
	if (r != KMS_OK || refused)
		return r;
	if ((sb = kbuf_new(SIGN_BYTES_CAP)) == NULL)
		return KMS_ERR_ALLOC;
	r = pv_proposal_sign_bytes(h->chain_id, &prop, sb);
	if (r != KMS_OK) {
		r = refuse(h, req, PV_CODE_INVALID_REQUEST, OBS_WHY_MALFORMED,
			   "cannot compute the proposal's sign bytes", out, ev);
		goto out;
	}
	r = guarded_sign(h, req, hrs, sb, &res, out, &refused, ev);
	if (r != KMS_OK || refused)
		goto out;
	/* The node copies only the signature (spec §3.6): the timestamp is never replaced. */
	memcpy(prop.signature, res.signature, PV_SIG_LEN);
	prop.signature_len = PV_SIG_LEN;
	kbuf_reset(out);
	r = pv_encode_signed_proposal_response(h->version, &prop, out);
	if (r != KMS_OK)
		goto out;
	block_prefix(&prop.block_id, blk);
	kms_log_info("signed Proposal chain=%s h=%lld r=%d s=1 pol=%d block=%s%s ms=%.2f peer=%s",
		     h->chain_id, (long long)prop.height, (int)prop.round, (int)prop.pol_round, blk,
		     res.reused ? " reused=1" : "", ms_since(t0), h->peer);
out:
	kbuf_free(sb);
	return r;
}

static void log_summary(const struct handler_ctx *h, const struct pv_request *req)
{
	char blk[16];
	switch (req->kind) {
	case PV_REQ_SIGN_VOTE:
		block_prefix(&req->vote.block_id, blk);
		kms_log_info(
			"request SignVote chain=%s type=%s h=%lld r=%d block=%s ext_len=%zu%s peer=%s",
			req->chain_id, type_label(req->vote.type), (long long)req->vote.height,
			(int)req->vote.round, blk, req->vote.extension_len,
			req->skip_extension_signing ? " skip_ext=1" : "", h->peer);
		break;
	case PV_REQ_SIGN_PROPOSAL:
		block_prefix(&req->proposal.block_id, blk);
		kms_log_info("request SignProposal chain=%s h=%lld r=%d pol=%d block=%s peer=%s",
			     req->chain_id, (long long)req->proposal.height,
			     (int)req->proposal.round, (int)req->proposal.pol_round, blk, h->peer);
		break;
	case PV_REQ_SIGN_BYTES:
		kms_log_info("request SignBytes len=%zu peer=%s", req->sign_bytes_len, h->peer);
		break;
	case PV_REQ_PUBKEY:
		kms_log_info("request PubKey chain=%s peer=%s", req->chain_id, h->peer);
		break;
	case PV_REQ_PING:
		kms_log_info("request Ping peer=%s", h->peer);
		break;
	}
}

/* Fills the request-side fields of ev (what was asked). */
static void event_start(const struct handler_ctx *h, const struct pv_request *req,
			struct obs_event *ev)
{
	const struct pv_block_id *b = NULL;
	memset(ev, 0, sizeof(*ev));
	ev->wall_ns = obs_wall_ns();
	ev->mono_ns = obs_mono_ns();
	ev->chain_id = h->chain_id;
	ev->peer = h->peer;
	ev->msg = OBS_MSG_UNKNOWN;
	switch (req->kind) {
	case PV_REQ_SIGN_VOTE:
		ev->msg = req->vote.type == PV_TYPE_PREVOTE	? OBS_MSG_PREVOTE :
			  req->vote.type == PV_TYPE_PRECOMMIT ? OBS_MSG_PRECOMMIT :
								OBS_MSG_UNKNOWN;
		ev->height = req->vote.height;
		ev->round = req->vote.round;
		ev->step = req->vote.type == PV_TYPE_PREVOTE ? GUARD_STEP_PREVOTE :
							     GUARD_STEP_PRECOMMIT;
		b = &req->vote.block_id;
		break;
	case PV_REQ_SIGN_PROPOSAL:
		ev->msg = OBS_MSG_PROPOSAL;
		ev->height = req->proposal.height;
		ev->round = req->proposal.round;
		ev->step = GUARD_STEP_PROPOSE;
		b = &req->proposal.block_id;
		break;
	case PV_REQ_PUBKEY:
		ev->msg = OBS_MSG_PUBKEY;
		break;
	case PV_REQ_PING:
		ev->msg = OBS_MSG_PING;
		break;
	case PV_REQ_SIGN_BYTES:
		ev->msg = OBS_MSG_SIGN_BYTES;
		break;
	}
	if (b != NULL && b->hash_len > 0 && b->hash_len <= sizeof(ev->block_hash)) {
		memcpy(ev->block_hash, b->hash, b->hash_len);
		ev->block_hash_len = b->hash_len;
	}
}

int handler_handle(const struct handler_ctx *h, const struct pv_request *req, struct kbuf *out,
		   struct obs_event *ev)
{
	struct obs_event scratch;
	char why[256];
	int r;

	if (h == NULL || req == NULL || out == NULL)
		return KMS_ERR_INTERNAL;
	if (ev == NULL)
		ev = &scratch;
	event_start(h, req, ev);
	if (h->verbose)
		log_summary(h, req);
	kbuf_reset(out);
	if (req->kind == PV_REQ_PING) {
		ev->decision = OBS_DEC_ANSWERED;
		return pv_encode_ping_response(h->version, out);
	}
	/*
	 * An arbitrary-signing oracle would bypass the guard (spec §7.4). This
	 * refusal and the chain-id one below answer with the reference signer's
	 * code 0 and text (pv_reference_refusal), byte-exact with the golden
	 * exchanges; the log line carries the details.
	 */
	if (req->kind == PV_REQ_SIGN_BYTES)
		return refuse_as(
			h, req, PV_CODE_UNKNOWN, OBS_WHY_SIGN_BYTES,
			"SignBytes is never signed (it would bypass the double-sign guard)",
			pv_reference_refusal(h->version, req->kind), out, ev);
	why[0] = '\0';
	r = pv_validate_request(req, h->chain_id, why, sizeof(why));
	if (r == KMS_ERR_REFUSED)
		return refuse_as(h, req, PV_CODE_UNKNOWN, OBS_WHY_CHAIN_ID,
				 why[0] ? why : kms_strerror(r),
				 pv_reference_refusal(h->version, req->kind), out, ev);
	if (r != KMS_OK)
		return refuse(h, req, pv_code_for_err(r), OBS_WHY_MALFORMED,
			      why[0] ? why : kms_strerror(r), out, ev);
	switch (req->kind) {
	case PV_REQ_PUBKEY: {
		uint8_t pub[PV_PUBKEY_LEN];
		slot_pubkey(h->key, pub);
		ev->decision = OBS_DEC_ANSWERED;
		return pv_encode_pubkey_response(h->version, pub, out);
	}
	case PV_REQ_SIGN_VOTE:
		return handle_vote(h, req, out, ev);
	case PV_REQ_SIGN_PROPOSAL:
		return handle_proposal(h, req, out, ev);
	case PV_REQ_PING:
	case PV_REQ_SIGN_BYTES:
		break;
	}
	return KMS_ERR_INTERNAL;
}
