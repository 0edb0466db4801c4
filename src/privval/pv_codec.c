/* SPDX-License-Identifier: Apache-2.0 */
/* privval Message codec for every version: protobuf-c underneath, the version table on top. */
#include "p11kms/pv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11kms/kms_log.h"
#include "privval.pb-c.h"
#include "pv_int.h"

/*
 * protobuf-c's ProtobufCBinaryData has a non-const data pointer, but packing
 * only reads through it; this is the one place the const is dropped.
 */
static uint8_t *unconst(const uint8_t *p)
{
	return (uint8_t *)(uintptr_t)p;
}

/* ===== decoding: wire -> model (spec §3.3-3.4 checks) ===== */

/* A reason string on failure, NULL when the field is fine: b must be empty or full-size. */
static const char *fixed_bytes(const ProtobufCBinaryData *b, uint8_t *dst, size_t full, size_t *len,
			       const char *bad)
{
	if (b->len != 0 && b->len != full)
		return bad;
	if (b->len)
		memcpy(dst, b->data, b->len);
	*len = b->len;
	return NULL;
}

/*
 * Signatures: at most 64 bytes. A request's signature is normally empty and is
 * replaced when we sign, but upstream's own vectors carry a 16-byte placeholder
 * ("it's a signature"), so any length up to 64 is carried through unchanged.
 */
static const char *sig_bytes(const ProtobufCBinaryData *b, uint8_t *dst, size_t *len, const char *bad)
{
	if (b->len > PV_SIG_LEN)
		return bad;
	if (b->len)
		memcpy(dst, b->data, b->len);
	*len = b->len;
	return NULL;
}

static const char *ts_from_wire(const Pvwire__Timestamp *w, struct pv_timestamp *t)
{
	/* spec §3.4: an absent non-nullable timestamp decodes in Go to its zero time */
	t->seconds = w ? w->seconds : PV_GO_ZERO_TIME_SECONDS;
	t->nanos = w ? w->nanos : 0;
	if (!pv_timestamp_ok(t))
		return "timestamp out of range (nanos not in [0, 999999999] or year not in 1..9999)";
	return NULL;
}

static const char *bid_from_wire(const Pvwire__BlockID *w, struct pv_block_id *b)
{
	const char *why;

	memset(b, 0, sizeof(*b));
	if (!w)
		return NULL;
	why = fixed_bytes(&w->hash, b->hash, PV_HASH_LEN, &b->hash_len, "block_id.hash is not 0 or 32 bytes");
	if (why || !w->part_set_header)
		return why;
	b->psh_total = w->part_set_header->total;
	return fixed_bytes(&w->part_set_header->hash, b->psh_hash, PV_HASH_LEN, &b->psh_hash_len,
			   "block_id.part_set_header.hash is not 0 or 32 bytes");
}

/* ext_dst: room for w->extension (only used when the version has extensions). */
static const char *vote_from_wire(const struct pv_version_info *vi, const Pvwire__Vote *w, struct pv_vote *v,
				  uint8_t *ext_dst)
{
	const char *why;

	memset(v, 0, sizeof(*v));
	v->type = w->type;
	v->height = w->height;
	v->round = w->round;
	v->validator_index = w->validator_index;
	/* Negative height/round decode (Go's decoder accepts them too) and are
	 * refused by pv_validate_request with an error reply, not a dropped
	 * connection: the message itself is well-formed. */
	if ((why = bid_from_wire(w->block_id, &v->block_id)) || (why = ts_from_wire(w->timestamp, &v->timestamp)))
		return why;
	why = fixed_bytes(&w->validator_address, v->validator_address, PV_ADDR_LEN, &v->validator_address_len,
			  "vote validator_address is not 0 or 20 bytes");
	if (!why)
		why = sig_bytes(&w->signature, v->signature, &v->signature_len, "vote signature is over 64 bytes");
	/* Family A has no fields 9/10: its Go decoder skips them as unknown, and so do we. */
	if (why || !vi->has_extensions)
		return why;
	if (w->extension.len) {
		memcpy(ext_dst, w->extension.data, w->extension.len);
		v->extension = ext_dst;
		v->extension_len = w->extension.len;
	}
	return sig_bytes(&w->extension_signature, v->extension_signature, &v->extension_signature_len,
			 "vote extension_signature is over 64 bytes");
}

static const char *prop_from_wire(const Pvwire__Proposal *w, struct pv_proposal *p)
{
	const char *why;

	memset(p, 0, sizeof(*p));
	p->type = w->type;
	p->height = w->height;
	p->round = w->round;
	p->pol_round = w->pol_round;
	if ((why = bid_from_wire(w->block_id, &p->block_id)) || (why = ts_from_wire(w->timestamp, &p->timestamp)))
		return why;
	return sig_bytes(&w->signature, p->signature, &p->signature_len, "proposal signature is over 64 bytes");
}

/* chain_id is `bytes` on our side (privval.proto): refuse NUL and > 50 bytes. */
static const char *chain_from_wire(const ProtobufCBinaryData *b, char out[static PV_CHAIN_ID_MAX + 1])
{
	if (b->len > PV_CHAIN_ID_MAX)
		return "chain_id longer than 50 bytes";
	if (b->len && memchr(b->data, 0, b->len))
		return "chain_id contains a NUL byte";
	/* chain ids are printable; a control byte would let the node forge our log lines */
	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] < 0x20 || b->data[i] == 0x7f)
			return "chain_id contains a control character";
	}
	if (b->len)
		memcpy(out, b->data, b->len);
	out[b->len] = '\0';
	return NULL;
}

static const char *oneof_name(Pvwire__Message__SumCase c)
{
	static const char *const names[] = { "none",
					     "pub_key_request",
					     "pub_key_response",
					     "sign_vote_request",
					     "signed_vote_response",
					     "sign_proposal_request",
					     "signed_proposal_response",
					     "ping_request",
					     "ping_response",
					     "sign_bytes_request",
					     "sign_bytes_response" };
	unsigned i = (unsigned)c;

	return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

/* Bytes a decoded request or response must own beyond its struct (extension or value). */
static size_t extra_len(const struct pv_version_info *vi, const Pvwire__Message *m)
{
	const Pvwire__Vote *vote = NULL;

	if (m->sum_case == PVWIRE__MESSAGE__SUM_SIGN_VOTE_REQUEST)
		vote = m->sign_vote_request->vote;
	else if (m->sum_case == PVWIRE__MESSAGE__SUM_SIGNED_VOTE_RESPONSE)
		vote = m->signed_vote_response->vote;
	else if (m->sum_case == PVWIRE__MESSAGE__SUM_SIGN_BYTES_REQUEST && vi->tag9_is_sign_bytes)
		return m->sign_bytes_request->value.len;
	return (vote && vi->has_extensions) ? vote->extension.len : 0;
}

static const char *request_from_wire(const struct pv_version_info *vi, const Pvwire__Message *m,
				     struct pv_request *r, uint8_t *extra)
{
	const char *why;

	switch (m->sum_case) {
	case PVWIRE__MESSAGE__SUM_PUB_KEY_REQUEST:
		r->kind = PV_REQ_PUBKEY;
		return chain_from_wire(&m->pub_key_request->chain_id, r->chain_id);
	case PVWIRE__MESSAGE__SUM_SIGN_VOTE_REQUEST:
		r->kind = PV_REQ_SIGN_VOTE;
		if (!m->sign_vote_request->vote)
			return "sign_vote_request without vote";
		if ((why = vote_from_wire(vi, m->sign_vote_request->vote, &r->vote, extra)))
			return why;
		/* skip_extension_signing (field 3) is unknown to families A/B */
		r->skip_extension_signing = vi->has_skip_extension_signing && m->sign_vote_request->skip_extension_signing;
		/* what the node sent, whatever this version reads: evidence of its family */
		if (m->sign_vote_request->vote->extension.len || m->sign_vote_request->vote->extension_signature.len)
			r->wire |= PV_WIRE_VOTE_EXT;
		if (m->sign_vote_request->skip_extension_signing)
			r->wire |= PV_WIRE_SKIP_EXT;
		return chain_from_wire(&m->sign_vote_request->chain_id, r->chain_id);
	case PVWIRE__MESSAGE__SUM_SIGN_PROPOSAL_REQUEST:
		r->kind = PV_REQ_SIGN_PROPOSAL;
		if (!m->sign_proposal_request->proposal)
			return "sign_proposal_request without proposal";
		if ((why = prop_from_wire(m->sign_proposal_request->proposal, &r->proposal)))
			return why;
		return chain_from_wire(&m->sign_proposal_request->chain_id, r->chain_id);
	case PVWIRE__MESSAGE__SUM_PING_REQUEST:
		r->kind = PV_REQ_PING;
		return NULL;
	case PVWIRE__MESSAGE__SUM_SIGN_BYTES_REQUEST:
		/* v1 SignBytesRequest; elsewhere Celestia's raw bytes, whose content we never read */
		r->kind = PV_REQ_SIGN_BYTES;
		if (vi->tag9_is_sign_bytes && m->sign_bytes_request->value.len) {
			memcpy(extra, m->sign_bytes_request->value.data, m->sign_bytes_request->value.len);
			r->sign_bytes_value = extra;
			r->sign_bytes_len = m->sign_bytes_request->value.len;
		}
		return NULL;
	default:
		return "not a request";
	}
}

/* What differs between decoding a request (node -> signer) and a response. */
struct decode_dir {
	const char *what;  /* "request" or "response", for the log */
	unsigned parity;   /* oneof tags: requests odd (1, 3, ... 9), responses even (spec §3.1) */
	size_t head;       /* size of the model struct; variable data follows it */
	const char *(*from_wire)(const struct pv_version_info *vi, const Pvwire__Message *m, void *dst,
				 uint8_t *extra);
};

/*
 * Unpacks one Message, checks its direction, and converts it into a new
 * model struct of d->head bytes plus its variable data (*out, freed by the
 * caller with free()).
 */
static int decode_message(enum pv_version v, const uint8_t *p, size_t n, const struct decode_dir *d,
			  void **out)
{
	const struct pv_version_info *vi = pv_version_info(v);
	Pvwire__Message *m = NULL;
	uint8_t *r = NULL;
	const char *why;
	int rc = KMS_ERR_INTERNAL;

	if (!out)
		return KMS_ERR_INTERNAL;
	*out = NULL;
	if (!vi || (!p && n))
		return KMS_ERR_INTERNAL;
	if (!(m = pvwire__message__unpack(NULL, n, p))) {
		kms_log_warn("privval %s undecodable version=%s len=%zu", d->what, vi->name, n);
		rc = KMS_ERR_FORMAT;
		goto out;
	}
	if (m->sum_case == PVWIRE__MESSAGE__SUM__NOT_SET || ((unsigned)m->sum_case % 2u) != d->parity) {
		/* An unknown oneof tag is kept by protobuf-c as an unknown field: name it. */
		if (m->base.n_unknown_fields > 0)
			kms_log_warn("privval message is not a %s version=%s oneof=%s unknown_field=%u",
				     d->what, vi->name, oneof_name(m->sum_case),
				     (unsigned)m->base.unknown_fields[0].tag);
		else
			kms_log_warn("privval message is not a %s version=%s oneof=%s", d->what,
				     vi->name, oneof_name(m->sum_case));
		rc = KMS_ERR_UNSUPPORTED;
		goto out;
	}
	if (!(r = calloc(1, d->head + extra_len(vi, m)))) {
		rc = KMS_ERR_ALLOC;
		goto out;
	}
	if ((why = d->from_wire(vi, m, r, r + d->head))) {
		kms_log_warn("privval %s rejected version=%s oneof=%s: %s", d->what, vi->name,
			     oneof_name(m->sum_case), why);
		rc = KMS_ERR_FORMAT;
		goto out;
	}
	*out = r;
	r = NULL;
	rc = KMS_OK;
out:
	free(r);
	if (m)
		pvwire__message__free_unpacked(m, NULL);
	return rc;
}

static const char *request_from_wire_any(const struct pv_version_info *vi, const Pvwire__Message *m,
					 void *dst, uint8_t *extra)
{
	return request_from_wire(vi, m, dst, extra);
}

int pv_decode_request(enum pv_version v, const uint8_t *p, size_t n, struct pv_request **out)
{
	static const struct decode_dir dir = { "request", 1u, sizeof(struct pv_request),
					       request_from_wire_any };
	void *r = NULL;
	int rc;

	if (!out)
		return KMS_ERR_INTERNAL;
	rc = decode_message(v, p, n, &dir, &r);
	*out = r;
	return rc;
}

void pv_request_free(struct pv_request *r)
{
	free(r);
}

static void error_from_wire(const Pvwire__RemoteSignerError *e, struct pv_response *r)
{
	size_t n;

	if (!e)
		return;
	r->has_error = 1;
	r->error_code = e->code;
	n = e->description.len < PV_ERRDESC_MAX ? e->description.len : PV_ERRDESC_MAX;
	if (n)
		memcpy(r->error_description, e->description.data, n);
	r->error_description[n] = '\0';
	/* the description is for logs: cut it at an embedded NUL rather than fail */
}

static const char *pubkey_from_wire(const struct pv_version_info *vi, const Pvwire__PubKeyResponse *w,
				    struct pv_response *r)
{
	static const char ed[] = "ed25519";
	const ProtobufCBinaryData *key = NULL;

	int legacy = vi->pubkey_layout == PV_PUBKEY_PUBLICKEY;

	error_from_wire(w->error, r);
	/* auto (both layouts): fields 3/4 when present, else field 1 */
	if (vi->pubkey_layout == PV_PUBKEY_BOTH && !w->pub_key_type.len && !w->pub_key_bytes.len)
		legacy = 1;
	if (legacy) {
		if (w->pub_key && w->pub_key->sum_case == PVWIRE__PUBLIC_KEY__SUM_ED25519)
			key = &w->pub_key->ed25519;
		else if (w->pub_key && w->pub_key->sum_case != PVWIRE__PUBLIC_KEY__SUM__NOT_SET)
			return "pub_key is not ed25519";
	} else if (w->pub_key_type.len || w->pub_key_bytes.len) {
		if (w->pub_key_type.len != sizeof(ed) - 1 || memcmp(w->pub_key_type.data, ed, sizeof(ed) - 1) != 0)
			return "pub_key_type is not \"ed25519\"";
		key = &w->pub_key_bytes;
	}
	if (!key)
		return r->has_error ? NULL : "pub_key_response without key or error";
	if (key->len != PV_PUBKEY_LEN)
		return "ed25519 pub_key is not 32 bytes";
	memcpy(r->pub_key, key->data, PV_PUBKEY_LEN);
	r->has_pub_key = 1;
	return NULL;
}

static const char *response_from_wire(const struct pv_version_info *vi, const Pvwire__Message *m,
				      struct pv_response *r, uint8_t *extra)
{
	switch (m->sum_case) {
	case PVWIRE__MESSAGE__SUM_PUB_KEY_RESPONSE:
		r->kind = PV_REQ_PUBKEY;
		return pubkey_from_wire(vi, m->pub_key_response, r);
	case PVWIRE__MESSAGE__SUM_SIGNED_VOTE_RESPONSE:
		r->kind = PV_REQ_SIGN_VOTE;
		error_from_wire(m->signed_vote_response->error, r);
		if (!m->signed_vote_response->vote) /* Go would decode a zero Vote */
			return ts_from_wire(NULL, &r->vote.timestamp);
		return vote_from_wire(vi, m->signed_vote_response->vote, &r->vote, extra);
	case PVWIRE__MESSAGE__SUM_SIGNED_PROPOSAL_RESPONSE:
		r->kind = PV_REQ_SIGN_PROPOSAL;
		error_from_wire(m->signed_proposal_response->error, r);
		if (!m->signed_proposal_response->proposal)
			return ts_from_wire(NULL, &r->proposal.timestamp);
		return prop_from_wire(m->signed_proposal_response->proposal, &r->proposal);
	case PVWIRE__MESSAGE__SUM_PING_RESPONSE:
		r->kind = PV_REQ_PING;
		return NULL;
	case PVWIRE__MESSAGE__SUM_SIGN_BYTES_RESPONSE:
		r->kind = PV_REQ_SIGN_BYTES;
		error_from_wire(m->sign_bytes_response->error, r);
		return sig_bytes(&m->sign_bytes_response->signature, r->signature, &r->signature_len,
				 "sign_bytes_response signature is over 64 bytes");
	default:
		return "not a response";
	}
}

static const char *response_from_wire_any(const struct pv_version_info *vi,
					  const Pvwire__Message *m, void *dst, uint8_t *extra)
{
	return response_from_wire(vi, m, dst, extra);
}

int pv_decode_response(enum pv_version v, const uint8_t *p, size_t n, struct pv_response **out)
{
	static const struct decode_dir dir = { "response", 0u, sizeof(struct pv_response),
					       response_from_wire_any };
	void *r = NULL;
	int rc;

	if (!out)
		return KMS_ERR_INTERNAL;
	rc = decode_message(v, p, n, &dir, &r);
	*out = r;
	return rc;
}

void pv_response_free(struct pv_response *r)
{
	free(r);
}

/* ===== encoding: model -> wire ===== */

/*
 * protobuf-c emits a message field whenever its pointer is set (even when
 * empty), skips proto3 scalars equal to zero, and writes fields in field-number
 * order: with every gogoproto non-nullable field pointed at a (possibly empty)
 * struct below, the output is byte-identical to Go's (checked against every
 * case of privval_messages.json in tests/unit/test_pv_msgs.c).
 */
struct wire_bid {
	Pvwire__BlockID bid;
	Pvwire__PartSetHeader psh;
};

struct wire_vote {
	Pvwire__Vote vote;
	struct wire_bid bid;
	Pvwire__Timestamp ts;
};

struct wire_prop {
	Pvwire__Proposal prop;
	struct wire_bid bid;
	Pvwire__Timestamp ts;
};

static int bid_to_wire(const struct pv_block_id *b, struct wire_bid *w)
{
	if (b->hash_len > PV_HASH_LEN || b->psh_hash_len > PV_HASH_LEN)
		return KMS_ERR_INTERNAL;
	pvwire__block_id__init(&w->bid);
	pvwire__part_set_header__init(&w->psh);
	w->bid.hash.data = unconst(b->hash);
	w->bid.hash.len = b->hash_len;
	w->psh.total = b->psh_total;
	w->psh.hash.data = unconst(b->psh_hash);
	w->psh.hash.len = b->psh_hash_len;
	w->bid.part_set_header = &w->psh; /* non-nullable */
	return KMS_OK;
}

static void ts_to_wire(const struct pv_timestamp *t, Pvwire__Timestamp *w)
{
	pvwire__timestamp__init(w);
	w->seconds = t->seconds;
	w->nanos = t->nanos;
}

static int vote_to_wire(const struct pv_version_info *vi, const struct pv_vote *v, struct wire_vote *w)
{
	Pvwire__Vote *o = &w->vote;

	if (v->validator_address_len > PV_ADDR_LEN || v->signature_len > PV_SIG_LEN ||
	    v->extension_signature_len > PV_SIG_LEN || (v->extension_len && !v->extension) ||
	    bid_to_wire(&v->block_id, &w->bid) != KMS_OK)
		return KMS_ERR_INTERNAL;
	pvwire__vote__init(o);
	ts_to_wire(&v->timestamp, &w->ts);
	o->type = v->type;
	o->height = v->height;
	o->round = v->round;
	o->block_id = &w->bid.bid;
	o->timestamp = &w->ts;
	o->validator_address.data = unconst(v->validator_address);
	o->validator_address.len = v->validator_address_len;
	o->validator_index = v->validator_index;
	o->signature.data = unconst(v->signature);
	o->signature.len = v->signature_len;
	if (vi->has_extensions) { /* family A never emits fields 9/10 */
		o->extension.data = unconst(v->extension);
		o->extension.len = v->extension_len;
		o->extension_signature.data = unconst(v->extension_signature);
		o->extension_signature.len = v->extension_signature_len;
	}
	return KMS_OK;
}

static int prop_to_wire(const struct pv_proposal *p, struct wire_prop *w)
{
	Pvwire__Proposal *o = &w->prop;

	if (p->signature_len > PV_SIG_LEN || bid_to_wire(&p->block_id, &w->bid) != KMS_OK)
		return KMS_ERR_INTERNAL;
	pvwire__proposal__init(o);
	ts_to_wire(&p->timestamp, &w->ts);
	o->type = p->type;
	o->height = p->height;
	o->round = p->round;
	o->pol_round = p->pol_round;
	o->block_id = &w->bid.bid;
	o->timestamp = &w->ts;
	o->signature.data = unconst(p->signature);
	o->signature.len = p->signature_len;
	return KMS_OK;
}

static int chain_to_wire(const char *chain_id, ProtobufCBinaryData *b)
{
	size_t n = chain_id ? strnlen(chain_id, PV_CHAIN_ID_MAX + 1) : 0;

	if (n > PV_CHAIN_ID_MAX)
		return KMS_ERR_INTERNAL;
	b->data = unconst((const uint8_t *)chain_id);
	b->len = n;
	return KMS_OK;
}

static int pack(const Pvwire__Message *m, struct kbuf *out)
{
	size_t sz = protobuf_c_message_get_packed_size(&m->base);
	uint8_t *dst;
	int rc;

	if (!out)
		return KMS_ERR_INTERNAL;
	if ((rc = kbuf_reserve(out, sz, &dst)) != KMS_OK)
		return rc;
	if (protobuf_c_message_pack(&m->base, dst) != sz) {
		rc = kbuf_consume_end(out, sz); /* take the partial message back out */
		return rc == KMS_OK ? KMS_ERR_INTERNAL : rc;
	}
	return KMS_OK;
}

int pv_encode_pubkey_response(enum pv_version v, const uint8_t pub[static PV_PUBKEY_LEN], struct kbuf *out)
{
	static const char ed[] = "ed25519";
	const struct pv_version_info *vi = pv_version_info(v);
	Pvwire__Message m = PVWIRE__MESSAGE__INIT;
	Pvwire__PubKeyResponse resp = PVWIRE__PUB_KEY_RESPONSE__INIT;
	Pvwire__PublicKey pk = PVWIRE__PUBLIC_KEY__INIT;

	if (!vi)
		return KMS_ERR_INTERNAL;
	if (vi->pubkey_layout != PV_PUBKEY_BYTES_TYPE) { /* A/B, and auto */
		pk.sum_case = PVWIRE__PUBLIC_KEY__SUM_ED25519;
		pk.ed25519.data = unconst(pub);
		pk.ed25519.len = PV_PUBKEY_LEN;
		resp.pub_key = &pk;
	}
	if (vi->pubkey_layout != PV_PUBKEY_PUBLICKEY) { /* C, and auto */
		resp.pub_key_bytes.data = unconst(pub);
		resp.pub_key_bytes.len = PV_PUBKEY_LEN;
		resp.pub_key_type.data = unconst((const uint8_t *)ed);
		resp.pub_key_type.len = sizeof(ed) - 1;
	}
	m.sum_case = PVWIRE__MESSAGE__SUM_PUB_KEY_RESPONSE;
	m.pub_key_response = &resp;
	return pack(&m, out);
}

int pv_encode_signed_vote_response(enum pv_version v, const struct pv_vote *signed_vote, struct kbuf *out)
{
	const struct pv_version_info *vi = pv_version_info(v);
	Pvwire__Message m = PVWIRE__MESSAGE__INIT;
	Pvwire__SignedVoteResponse resp = PVWIRE__SIGNED_VOTE_RESPONSE__INIT;
	struct wire_vote wv;

	if (!vi || !signed_vote || vote_to_wire(vi, signed_vote, &wv) != KMS_OK)
		return KMS_ERR_INTERNAL;
	resp.vote = &wv.vote;
	m.sum_case = PVWIRE__MESSAGE__SUM_SIGNED_VOTE_RESPONSE;
	m.signed_vote_response = &resp;
	return pack(&m, out);
}

int pv_encode_signed_proposal_response(enum pv_version v, const struct pv_proposal *signed_proposal,
				       struct kbuf *out)
{
	Pvwire__Message m = PVWIRE__MESSAGE__INIT;
	Pvwire__SignedProposalResponse resp = PVWIRE__SIGNED_PROPOSAL_RESPONSE__INIT;
	struct wire_prop wp;

	if (!pv_version_info(v) || !signed_proposal || prop_to_wire(signed_proposal, &wp) != KMS_OK)
		return KMS_ERR_INTERNAL;
	resp.proposal = &wp.prop;
	m.sum_case = PVWIRE__MESSAGE__SUM_SIGNED_PROPOSAL_RESPONSE;
	m.signed_proposal_response = &resp;
	return pack(&m, out);
}

int pv_encode_ping_response(enum pv_version v, struct kbuf *out)
{
	Pvwire__Message m = PVWIRE__MESSAGE__INIT;
	Pvwire__PingResponse resp = PVWIRE__PING_RESPONSE__INIT;

	if (!pv_version_info(v))
		return KMS_ERR_INTERNAL;
	m.sum_case = PVWIRE__MESSAGE__SUM_PING_RESPONSE;
	m.ping_response = &resp;
	return pack(&m, out);
}

/* Go's zero Vote/Proposal: all scalars zero, empty BlockID, Go zero time (spec §7.1). */
static void zero_vote(struct pv_vote *v)
{
	memset(v, 0, sizeof(*v));
	v->timestamp.seconds = PV_GO_ZERO_TIME_SECONDS;
}

static void zero_proposal(struct pv_proposal *p)
{
	memset(p, 0, sizeof(*p));
	p->timestamp.seconds = PV_GO_ZERO_TIME_SECONDS;
}

int pv_encode_error_response(enum pv_version v, enum pv_req_kind for_kind, int32_t code, const char *description,
			     struct kbuf *out)
{
	const struct pv_version_info *vi = pv_version_info(v);
	Pvwire__Message m = PVWIRE__MESSAGE__INIT;
	Pvwire__RemoteSignerError err = PVWIRE__REMOTE_SIGNER_ERROR__INIT;
	Pvwire__PubKeyResponse pkr = PVWIRE__PUB_KEY_RESPONSE__INIT;
	Pvwire__PublicKey pk = PVWIRE__PUBLIC_KEY__INIT;
	Pvwire__SignedVoteResponse svr = PVWIRE__SIGNED_VOTE_RESPONSE__INIT;
	Pvwire__SignedProposalResponse spr = PVWIRE__SIGNED_PROPOSAL_RESPONSE__INIT;
	Pvwire__SignBytesResponse sbr = PVWIRE__SIGN_BYTES_RESPONSE__INIT;
	struct pv_vote zv;
	struct pv_proposal zp;
	struct wire_vote wv;
	struct wire_prop wp;

	if (!vi)
		return KMS_ERR_INTERNAL;
	err.code = code;
	err.description.data = unconst((const uint8_t *)description);
	err.description.len = description ? strlen(description) : 0;
	switch (for_kind) {
	case PV_REQ_PUBKEY:
		if (vi->pubkey_layout != PV_PUBKEY_BYTES_TYPE)
			pkr.pub_key = &pk; /* non-nullable in A/B (and auto): empty PublicKey, 0a 00 */
		pkr.error = &err;
		m.sum_case = PVWIRE__MESSAGE__SUM_PUB_KEY_RESPONSE;
		m.pub_key_response = &pkr;
		break;
	case PV_REQ_SIGN_VOTE:
		zero_vote(&zv);
		if (vote_to_wire(vi, &zv, &wv) != KMS_OK)
			return KMS_ERR_INTERNAL;
		svr.vote = &wv.vote;
		svr.error = &err;
		m.sum_case = PVWIRE__MESSAGE__SUM_SIGNED_VOTE_RESPONSE;
		m.signed_vote_response = &svr;
		break;
	case PV_REQ_SIGN_PROPOSAL:
		zero_proposal(&zp);
		if (prop_to_wire(&zp, &wp) != KMS_OK)
			return KMS_ERR_INTERNAL;
		spr.proposal = &wp.prop;
		spr.error = &err;
		m.sum_case = PVWIRE__MESSAGE__SUM_SIGNED_PROPOSAL_RESPONSE;
		m.signed_proposal_response = &spr;
		break;
	case PV_REQ_SIGN_BYTES:
		sbr.error = &err;
		m.sum_case = PVWIRE__MESSAGE__SUM_SIGN_BYTES_RESPONSE;
		m.sign_bytes_response = &sbr;
		break;
	case PV_REQ_PING:
	default:
		return KMS_ERR_INTERNAL; /* PingResponse has no error field */
	}
	return pack(&m, out);
}

int pv_encode_request(enum pv_version v, const struct pv_request *r, struct kbuf *out)
{
	const struct pv_version_info *vi = pv_version_info(v);
	Pvwire__Message m = PVWIRE__MESSAGE__INIT;
	Pvwire__PubKeyRequest pkr = PVWIRE__PUB_KEY_REQUEST__INIT;
	Pvwire__SignVoteRequest svr = PVWIRE__SIGN_VOTE_REQUEST__INIT;
	Pvwire__SignProposalRequest spr = PVWIRE__SIGN_PROPOSAL_REQUEST__INIT;
	Pvwire__PingRequest ping = PVWIRE__PING_REQUEST__INIT;
	Pvwire__SignBytesRequest sbr = PVWIRE__SIGN_BYTES_REQUEST__INIT;
	struct wire_vote wv;
	struct wire_prop wp;

	if (!vi || !r)
		return KMS_ERR_INTERNAL;
	switch (r->kind) {
	case PV_REQ_PUBKEY:
		if (chain_to_wire(r->chain_id, &pkr.chain_id) != KMS_OK)
			return KMS_ERR_INTERNAL;
		m.sum_case = PVWIRE__MESSAGE__SUM_PUB_KEY_REQUEST;
		m.pub_key_request = &pkr;
		break;
	case PV_REQ_SIGN_VOTE:
		if (chain_to_wire(r->chain_id, &svr.chain_id) != KMS_OK || vote_to_wire(vi, &r->vote, &wv) != KMS_OK)
			return KMS_ERR_INTERNAL;
		svr.vote = &wv.vote;
		svr.skip_extension_signing = vi->has_skip_extension_signing && r->skip_extension_signing;
		m.sum_case = PVWIRE__MESSAGE__SUM_SIGN_VOTE_REQUEST;
		m.sign_vote_request = &svr;
		break;
	case PV_REQ_SIGN_PROPOSAL:
		if (chain_to_wire(r->chain_id, &spr.chain_id) != KMS_OK || prop_to_wire(&r->proposal, &wp) != KMS_OK)
			return KMS_ERR_INTERNAL;
		spr.proposal = &wp.prop;
		m.sum_case = PVWIRE__MESSAGE__SUM_SIGN_PROPOSAL_REQUEST;
		m.sign_proposal_request = &spr;
		break;
	case PV_REQ_PING:
		m.sum_case = PVWIRE__MESSAGE__SUM_PING_REQUEST;
		m.ping_request = &ping;
		break;
	case PV_REQ_SIGN_BYTES:
		if (r->sign_bytes_len && !r->sign_bytes_value)
			return KMS_ERR_INTERNAL;
		sbr.value.data = unconst(r->sign_bytes_value);
		sbr.value.len = r->sign_bytes_len;
		m.sum_case = PVWIRE__MESSAGE__SUM_SIGN_BYTES_REQUEST;
		m.sign_bytes_request = &sbr;
		break;
	default:
		return KMS_ERR_INTERNAL;
	}
	return pack(&m, out);
}
