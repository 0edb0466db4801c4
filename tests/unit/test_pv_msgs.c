/* SPDX-License-Identifier: Apache-2.0 */
/* privval codec against privval_messages.json: every upstream case round-trips byte for byte,
 * and the derived Haqq exchanges go request -> sign bytes -> signature -> response exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/pv.h"
#include "testutil.h"

static void assert_kbuf_hex(const struct kbuf *b, const char *want_hex)
{
	char *got = tu_to_hex(kbuf_ptr(b), kbuf_len(b));

	assert_string_equal(got, want_hex);
	free(got);
}

static enum pv_version version_of(const char *name)
{
	enum pv_version v;

	/* v2 (2.0.0-rc1, unreleased) is not a supported version: its shared cases go through v1 */
	if (strcmp(name, "v2") == 0)
		return PV_V1;
	assert_int_equal(pv_version_parse(name, &v), KMS_OK);
	return v;
}

/* ---- model from the structured "inputs" ---- */

static void hex_fixed(const json_t *o, const char *key, uint8_t *dst, size_t cap, size_t *len)
{
	*len = tu_hex(tu_json_str(o, key), dst, cap);
}

static void block_id_from_json(const json_t *j, struct pv_block_id *b)
{
	json_t *psh;

	memset(b, 0, sizeof(*b));
	if (j == NULL || json_is_null(j))
		return;
	hex_fixed(j, "hash", b->hash, sizeof(b->hash), &b->hash_len);
	psh = json_object_get(j, "part_set_header");
	b->psh_total = (uint32_t)tu_json_int(psh, "total");
	hex_fixed(psh, "hash", b->psh_hash, sizeof(b->psh_hash), &b->psh_hash_len);
}

static void ts_from_json(const json_t *j, struct pv_timestamp *t)
{
	t->seconds = tu_json_int(j, "seconds");
	t->nanos = (int32_t)tu_json_int(j, "nanos");
}

/* ext must have room for the extension (it is borrowed by the vote) */
static void vote_from_json(const json_t *j, struct pv_vote *v, uint8_t *ext, size_t extcap)
{
	memset(v, 0, sizeof(*v));
	v->type = (int32_t)tu_json_int(j, "type");
	v->height = tu_json_int(j, "height");
	v->round = (int32_t)tu_json_int(j, "round");
	block_id_from_json(json_object_get(j, "block_id"), &v->block_id);
	ts_from_json(json_object_get(j, "timestamp"), &v->timestamp);
	hex_fixed(j, "validator_address", v->validator_address, sizeof(v->validator_address),
		  &v->validator_address_len);
	v->validator_index = (int32_t)tu_json_int(j, "validator_index");
	hex_fixed(j, "signature", v->signature, sizeof(v->signature), &v->signature_len);
	v->extension_len = tu_hex(tu_json_str(j, "extension"), ext, extcap);
	v->extension = v->extension_len ? ext : NULL;
	hex_fixed(j, "extension_signature", v->extension_signature, sizeof(v->extension_signature),
		  &v->extension_signature_len);
}

static void proposal_from_json(const json_t *j, struct pv_proposal *p)
{
	memset(p, 0, sizeof(*p));
	p->type = (int32_t)tu_json_int(j, "type");
	p->height = tu_json_int(j, "height");
	p->round = (int32_t)tu_json_int(j, "round");
	p->pol_round = (int32_t)tu_json_int(j, "pol_round");
	block_id_from_json(json_object_get(j, "block_id"), &p->block_id);
	ts_from_json(json_object_get(j, "timestamp"), &p->timestamp);
	hex_fixed(j, "signature", p->signature, sizeof(p->signature), &p->signature_len);
}

/* ---- round trip: decode -> model -> encode ---- */

static void reencode_response(enum pv_version v, const struct pv_response *r, struct kbuf *out)
{
	if (r->has_error && r->kind != PV_REQ_PING) {
		assert_int_equal(pv_encode_error_response(v, r->kind, r->error_code, r->error_description, out), KMS_OK);
		return;
	}
	switch (r->kind) {
	case PV_REQ_PUBKEY:
		assert_true(r->has_pub_key);
		assert_int_equal(pv_encode_pubkey_response(v, r->pub_key, out), KMS_OK);
		break;
	case PV_REQ_SIGN_VOTE:
		assert_int_equal(pv_encode_signed_vote_response(v, &r->vote, out), KMS_OK);
		break;
	case PV_REQ_SIGN_PROPOSAL:
		assert_int_equal(pv_encode_signed_proposal_response(v, &r->proposal, out), KMS_OK);
		break;
	case PV_REQ_PING:
		assert_int_equal(pv_encode_ping_response(v, out), KMS_OK);
		break;
	default:
		fail_msg("unexpected response kind %d", (int)r->kind);
	}
}

/* Where the structured inputs say what the message holds, encode from them too. */
static void encode_from_inputs(enum pv_version v, const json_t *inputs, const json_t *c, struct kbuf *out)
{
	const char *msg = tu_json_str(c, "message");
	const json_t *content = json_object_get(c, "content");
	const json_t *ref = json_object_get(content, strncmp(msg, "sign_p", 6) == 0 || strstr(msg, "proposal") ?
							      "proposal" :
							      "vote");
	struct pv_request req;
	uint8_t ext[64], pub[32];

	memset(&req, 0, sizeof(req));
	if (strcmp(msg, "pub_key_response") == 0 && !json_is_string(json_object_get(content, "error"))) {
		tu_hex(tu_json_str(json_object_get(inputs, "pubkey"), "ed25519_pubkey"), pub, sizeof(pub));
		assert_int_equal(pv_encode_pubkey_response(v, pub, out), KMS_OK);
	} else if (strcmp(msg, "pub_key_request") == 0 || strcmp(msg, "ping_request") == 0) {
		req.kind = msg[1] == 'u' ? PV_REQ_PUBKEY : PV_REQ_PING;
		assert_int_equal(pv_encode_request(v, &req, out), KMS_OK);
	} else if (strcmp(msg, "ping_response") == 0) {
		assert_int_equal(pv_encode_ping_response(v, out), KMS_OK);
	} else if (json_is_string(json_object_get(content, "error"))) {
		const json_t *e = json_object_get(inputs, "remote_error");
		enum pv_req_kind k = msg[0] == 'p' ? PV_REQ_PUBKEY : strstr(msg, "vote") ? PV_REQ_SIGN_VOTE :
											   PV_REQ_SIGN_PROPOSAL;

		assert_int_equal(pv_encode_error_response(v, k, (int32_t)tu_json_int(e, "code"),
							  tu_json_str(e, "description"), out),
				 KMS_OK);
	} else if (json_is_string(ref) && strstr(msg, "vote")) {
		vote_from_json(json_object_get(inputs, json_string_value(ref)), &req.vote, ext, sizeof(ext));
		req.kind = PV_REQ_SIGN_VOTE;
		if (strcmp(msg, "sign_vote_request") == 0)
			assert_int_equal(pv_encode_request(v, &req, out), KMS_OK);
		else
			assert_int_equal(pv_encode_signed_vote_response(v, &req.vote, out), KMS_OK);
	} else if (json_is_string(ref)) {
		proposal_from_json(json_object_get(inputs, json_string_value(ref)), &req.proposal);
		req.kind = PV_REQ_SIGN_PROPOSAL;
		if (strcmp(msg, "sign_proposal_request") == 0)
			assert_int_equal(pv_encode_request(v, &req, out), KMS_OK);
		else
			assert_int_equal(pv_encode_signed_proposal_response(v, &req.proposal, out), KMS_OK);
	} else {
		fail_msg("case %s: no structured inputs understood", tu_json_str(c, "name"));
	}
}

static const char *find_case_hex(const json_t *cases, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach(cases, i, c)
	{
		if (strcmp(tu_json_str(c, "name"), name) == 0)
			return tu_json_str(c, "hex");
	}
	fail_msg("no case named %s", name);
	return NULL;
}

static void check_case(enum pv_version v, const json_t *inputs, const json_t *cases, const json_t *c)
{
	const char *name = tu_json_str(c, "name");
	const char *hex = tu_json_str(c, "hex");
	int oneof = (int)tu_json_int(c, "oneof_field");
	int nrp = strstr(name, "NRP") != NULL;
	struct kbuf *out = kbuf_new(4096);
	size_t n, dn, hdr, body;
	uint8_t *p = tu_hex_alloc(hex, &n);
	uint8_t *d = tu_hex_alloc(tu_json_str(c, "delimited_hex"), &dn);

	assert_non_null(out);
	/* the wire form: prefix + exactly this body */
	assert_int_equal(pv_frame_parse(d, dn, PV_MAX_MSG_DEFAULT, &hdr, &body), KMS_OK);
	assert_int_equal(hdr + body, dn);
	assert_int_equal(body, n);
	assert_memory_equal(d + hdr, p, n);

	if (oneof % 2 == 1) {
		struct pv_request *r = NULL;

		assert_int_equal(pv_decode_request(v, p, n, &r), KMS_OK);
		assert_int_equal(pv_encode_request(v, r, out), KMS_OK);
		pv_request_free(r);
	} else {
		struct pv_response *r = NULL;

		assert_int_equal(pv_decode_response(v, p, n, &r), KMS_OK);
		if (r->has_error) {
			const json_t *e = json_object_get(inputs, "remote_error");

			assert_int_equal(r->error_code, tu_json_int(e, "code"));
			assert_string_equal(r->error_description, tu_json_str(e, "description"));
		}
		reencode_response(v, r, out);
		pv_response_free(r);
	}
	if (nrp) {
		/* v2.0-rc1's non_rp_extension (field 11) is unknown to v1: dropped, the rest intact */
		char shared[64];

		assert_true(strlen(name) < sizeof(shared));
		strcpy(shared, strstr(name, "Request") ? "Vote Request" : "Vote Response");
		assert_kbuf_hex(out, find_case_hex(cases, shared));
	} else {
		assert_kbuf_hex(out, hex);
		kbuf_reset(out);
		encode_from_inputs(v, inputs, c, out);
		assert_kbuf_hex(out, hex);
	}
	kbuf_free(out);
	free(p);
	free(d);
}

static void test_upstream_vectors(void **state)
{
	json_t *root = tu_load_vector("privval_messages.json");
	json_t *inputs = json_object_get(root, "inputs");
	json_t *versions = json_object_get(root, "versions");
	size_t i, j, total = 0;
	json_t *ver, *c;

	(void)state;
	json_array_foreach(versions, i, ver)
	{
		json_t *cases = json_object_get(ver, "cases");
		enum pv_version v = version_of(tu_json_str(ver, "version"));

		json_array_foreach(cases, j, c)
		{
			check_case(v, inputs, cases, c);
			total++;
		}
	}
	assert_int_equal(total, 57);
	json_decref(root);
}

/* ---- derived Haqq exchanges: what the daemon will do, step by step ---- */

struct exch {
	enum pv_version v;
	uint8_t seed[32], pub[32];
	struct kbuf *signed_bytes[2];
	size_t nsigned;
};

static void sign_into(struct exch *x, const struct kbuf *sb, uint8_t sig[static 64])
{
	struct kbuf *copy = kbuf_new(kbuf_len(sb));

	assert_true(x->nsigned < 2);
	assert_int_equal(kbuf_putb(copy, sb), KMS_OK);
	x->signed_bytes[x->nsigned++] = copy;
	assert_int_equal(kcrypto_ed25519_sign(x->seed, kbuf_ptr(sb), kbuf_len(sb), sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(x->pub, kbuf_ptr(sb), kbuf_len(sb), sig), KMS_OK);
}

static void exch_release(struct exch *x)
{
	for (size_t i = 0; i < x->nsigned; i++)
		kbuf_free(x->signed_bytes[i]);
	x->nsigned = 0;
}

/* Answers one request as the daemon will (minus the guard); response into out. */
static void answer(struct exch *x, struct pv_request *r, const char *chain, struct kbuf *out)
{
	char why[160];
	struct kbuf *sb = kbuf_new(4096);
	int rc = pv_validate_request(r, chain, why, sizeof(why));

	if (rc == KMS_ERR_REFUSED) {
		assert_non_null(strstr(why, chain));
		assert_non_null(strstr(why, r->chain_id));
		/* the vector carries the CometBFT reference signer's reply (code 0) */
		assert_int_equal(pv_encode_error_response(x->v, r->kind, pv_code_for_err(rc),
							  pv_reference_refusal(x->v, r->kind), out),
				 KMS_OK);
	} else if (r->kind == PV_REQ_SIGN_BYTES) {
		assert_int_equal(rc, KMS_OK);
		assert_int_equal(pv_encode_error_response(x->v, r->kind, PV_CODE_UNKNOWN,
							  pv_reference_refusal(x->v, r->kind), out),
				 KMS_OK);
	} else if (r->kind == PV_REQ_PUBKEY) {
		assert_int_equal(rc, KMS_OK);
		assert_int_equal(pv_encode_pubkey_response(x->v, x->pub, out), KMS_OK);
	} else if (r->kind == PV_REQ_SIGN_VOTE) {
		struct pv_vote sv = r->vote;

		assert_int_equal(rc, KMS_OK);
		assert_int_equal(pv_vote_sign_bytes(r->chain_id, &r->vote, sb), KMS_OK);
		sign_into(x, sb, sv.signature);
		sv.signature_len = 64;
		if (pv_wants_extension_signature(x->v, r)) {
			kbuf_reset(sb);
			assert_int_equal(pv_vote_extension_sign_bytes(r->chain_id, &r->vote, sb), KMS_OK);
			sign_into(x, sb, sv.extension_signature);
			sv.extension_signature_len = 64;
		}
		assert_int_equal(pv_encode_signed_vote_response(x->v, &sv, out), KMS_OK);
	} else if (r->kind == PV_REQ_SIGN_PROPOSAL) {
		struct pv_proposal sp = r->proposal;

		assert_int_equal(rc, KMS_OK);
		assert_int_equal(pv_proposal_sign_bytes(r->chain_id, &r->proposal, sb), KMS_OK);
		sign_into(x, sb, sp.signature);
		sp.signature_len = 64;
		assert_int_equal(pv_encode_signed_proposal_response(x->v, &sp, out), KMS_OK);
	} else {
		fail_msg("unexpected request kind %d", (int)r->kind);
	}
	kbuf_free(sb);
}

static void run_exchange(enum pv_version v, const json_t *e)
{
	struct exch x = { .v = v };
	size_t n, hdr, body, i;
	uint8_t *req = tu_hex_alloc(tu_json_str(e, "request_delimited_hex"), &n);
	struct pv_request *r = NULL;
	struct kbuf *out = kbuf_new(4096), *framed = kbuf_new(4096);
	json_t *sbs = json_object_get(e, "signed_bytes"), *s;

	tu_hex("9d834d3fcac4ee25536b70e15376febb697861ab573405d8b89290417fd16070", x.seed, 32);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(x.seed, x.pub), KMS_OK);
	assert_int_equal(pv_frame_parse(req, n, PV_MAX_MSG_DEFAULT, &hdr, &body), KMS_OK);
	assert_int_equal(hdr + body, n);
	assert_int_equal(pv_decode_request(v, req + hdr, body, &r), KMS_OK);
	answer(&x, r, "haqq_11235-1", out);
	assert_int_equal(kbuf_put_lenprefixed(framed, kbuf_ptr(out), kbuf_len(out)), KMS_OK);
	assert_kbuf_hex(framed, tu_json_str(e, "response_delimited_hex"));
	assert_int_equal(x.nsigned, json_array_size(sbs));
	json_array_foreach(sbs, i, s)
	{
		assert_kbuf_hex(x.signed_bytes[i], json_string_value(s));
	}
	exch_release(&x);
	pv_request_free(r);
	kbuf_free(out);
	kbuf_free(framed);
	free(req);
}

static void run_auto_exchange(const json_t *e, char family);

static void test_derived_exchanges(void **state)
{
	json_t *root = tu_load_vector("privval_messages.json");
	json_t *ex = json_object_get(json_object_get(root, "derived_exchanges"), "exchanges");
	size_t i, count = 0;
	json_t *e;

	(void)state;
	json_array_foreach(ex, i, e)
	{
		const char *fam = tu_json_str(e, "family");

		if (fam[0] == 'A') {
			run_exchange(PV_V0_34, e);
			run_exchange(PV_V0_37, e);
		} else if (fam[0] == 'B') {
			run_exchange(PV_V0_38, e);
		} else if (fam[0] == 'C') {
			run_exchange(PV_V1, e);
		} else {
			fail_msg("unknown family %s", fam);
		}
		run_auto_exchange(e, fam[0]); /* #17: the same exchange as "auto" */
		count++;
	}
	assert_int_equal(count, 9);
	json_decref(root);
}

/*
 * protocol_version = "auto" (test_derived_exchanges runs it for each exchange): the same
 * request answered in the one form every family reads. What a node of the exchange's
 * family keeps of that response
 * (tu_pb_family_view: its decoder skips fields it does not know) must be the
 * golden response byte for byte, and decoding it with that family's rules
 * must give the golden values.
 */
static void run_auto_exchange(const json_t *e, char family)
{
	static const enum pv_version fam_version[] = { PV_V0_37, PV_V0_38, PV_V1 };
	enum pv_version fv = fam_version[family - 'A'];
	struct exch x = { .v = PV_AUTO };
	size_t n, wn, hdr, body, vlen;
	uint8_t *req = tu_hex_alloc(tu_json_str(e, "request_delimited_hex"), &n);
	uint8_t *want = tu_hex_alloc(tu_json_str(e, "response_delimited_hex"), &wn);
	struct pv_request *r = NULL;
	struct pv_response *got = NULL, *ref = NULL;
	struct kbuf *out = kbuf_new(4096);

	tu_hex("9d834d3fcac4ee25536b70e15376febb697861ab573405d8b89290417fd16070", x.seed, 32);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(x.seed, x.pub), KMS_OK);
	assert_int_equal(pv_frame_parse(req, n, PV_MAX_MSG_DEFAULT, &hdr, &body), KMS_OK);
	assert_int_equal(pv_decode_request(PV_AUTO, req + hdr, body, &r), KMS_OK);
	answer(&x, r, "haqq_11235-1", out);
	uint8_t *view = tu_pb_family_view(family, kbuf_ptr(out), kbuf_len(out), &vlen);
	assert_int_equal(pv_frame_parse(want, wn, PV_MAX_MSG_DEFAULT, &hdr, &body), KMS_OK);
	if (vlen != body || memcmp(view, want + hdr, body) != 0) {
		char *h = tu_to_hex(view, vlen);
		fail_msg("auto, %s as family %c reads it: %s\n want %s", tu_json_str(e, "name"),
			 family, h, tu_json_str(e, "response_delimited_hex"));
	}
	/* the family's own decoder on the full auto bytes sees the golden values */
	assert_int_equal(pv_decode_response(fv, kbuf_ptr(out), kbuf_len(out), &got), KMS_OK);
	assert_int_equal(pv_decode_response(fv, want + hdr, body, &ref), KMS_OK);
	assert_int_equal(got->kind, ref->kind);
	assert_int_equal(got->has_error, ref->has_error);
	assert_int_equal(got->error_code, ref->error_code);
	assert_int_equal(got->has_pub_key, ref->has_pub_key);
	assert_memory_equal(got->pub_key, ref->pub_key, sizeof(got->pub_key));
	assert_memory_equal(&got->vote.timestamp, &ref->vote.timestamp, sizeof(ref->vote.timestamp));
	assert_int_equal(got->vote.signature_len, ref->vote.signature_len);
	assert_memory_equal(got->vote.signature, ref->vote.signature, ref->vote.signature_len);
	assert_int_equal(got->vote.extension_signature_len, ref->vote.extension_signature_len);
	assert_memory_equal(got->vote.extension_signature, ref->vote.extension_signature,
			    ref->vote.extension_signature_len);
	assert_int_equal(got->proposal.signature_len, ref->proposal.signature_len);
	assert_memory_equal(got->proposal.signature, ref->proposal.signature,
			    ref->proposal.signature_len);
	exch_release(&x);
	pv_response_free(got);
	pv_response_free(ref);
	pv_request_free(r);
	kbuf_free(out);
	free(view);
	free(req);
	free(want);
}

/*
 * The one case the exchanges lack: a non-nil precommit from a v0.34/v0.37
 * node (no extension fields). auto signs the extension (it cannot know the
 * node is not v0.38 with an empty extension); what a v0.37 node keeps is
 * exactly the explicit v0.37 reply, and the extension signature verifies for
 * a v0.38 reader.
 */
static void test_auto_precommit_family_a(void **state)
{
	struct pv_request r;
	struct exch xa = { .v = PV_V0_37 }, xo = { .v = PV_AUTO };
	struct kbuf *ra = kbuf_new(4096), *ro = kbuf_new(4096), *req = kbuf_new(4096);
	struct kbuf *eb = kbuf_new(512);
	struct pv_request *da = NULL, *dauto = NULL;
	struct pv_response *b = NULL;
	size_t vlen;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.kind = PV_REQ_SIGN_VOTE;
	strcpy(r.chain_id, "haqq_11235-1");
	r.vote.type = PV_TYPE_PRECOMMIT;
	r.vote.height = 4242;
	r.vote.round = 1;
	memset(r.vote.block_id.hash, 0x5a, 32);
	r.vote.block_id.hash_len = 32;
	r.vote.block_id.psh_total = 3;
	memset(r.vote.block_id.psh_hash, 0xa5, 32);
	r.vote.block_id.psh_hash_len = 32;
	r.vote.timestamp.seconds = 1714566645;
	assert_int_equal(pv_encode_request(PV_V0_37, &r, req), KMS_OK);
	tu_hex("9d834d3fcac4ee25536b70e15376febb697861ab573405d8b89290417fd16070", xa.seed, 32);
	memcpy(xo.seed, xa.seed, 32);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(xa.seed, xa.pub), KMS_OK);
	memcpy(xo.pub, xa.pub, 32);
	assert_int_equal(pv_decode_request(PV_V0_37, kbuf_ptr(req), kbuf_len(req), &da), KMS_OK);
	assert_int_equal(pv_decode_request(PV_AUTO, kbuf_ptr(req), kbuf_len(req), &dauto), KMS_OK);
	answer(&xa, da, "haqq_11235-1", ra);
	answer(&xo, dauto, "haqq_11235-1", ro);
	assert_int_equal(xo.nsigned, 2); /* the vote and its extension */
	uint8_t *view = tu_pb_family_view('A', kbuf_ptr(ro), kbuf_len(ro), &vlen);
	assert_int_equal(vlen, kbuf_len(ra));
	assert_memory_equal(view, kbuf_ptr(ra), vlen);
	assert_int_equal(pv_decode_response(PV_V0_38, kbuf_ptr(ro), kbuf_len(ro), &b), KMS_OK);
	assert_int_equal(b->vote.extension_signature_len, 64);
	assert_int_equal(pv_vote_extension_sign_bytes("haqq_11235-1", &b->vote, eb), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(xo.pub, kbuf_ptr(eb), kbuf_len(eb),
						b->vote.extension_signature),
			 KMS_OK);
	exch_release(&xa);
	exch_release(&xo);
	free(view);
	pv_response_free(b);
	pv_request_free(da);
	pv_request_free(dauto);
	kbuf_free(ra);
	kbuf_free(ro);
	kbuf_free(req);
	kbuf_free(eb);
}

/* A family A signer must not echo (or sign) an extension a confused node sends. */
static void test_family_differences(void **state)
{
	json_t *root = tu_load_vector("privval_messages.json");
	json_t *v038 = json_array_get(json_object_get(root, "versions"), 2);
	const char *hex = find_case_hex(json_object_get(v038, "cases"), "Vote Request");
	size_t n;
	uint8_t *p = tu_hex_alloc(hex, &n);
	struct pv_request *a = NULL, *b = NULL;

	(void)state;
	assert_string_equal(tu_json_str(v038, "version"), "v0.38");
	assert_int_equal(pv_decode_request(PV_V0_37, p, n, &a), KMS_OK);
	assert_int_equal(a->vote.extension_len, 0);
	assert_int_equal(pv_decode_request(PV_V0_38, p, n, &b), KMS_OK);
	assert_int_equal(b->vote.extension_len, 9);
	assert_memory_equal(b->vote.extension, "extension", 9);
	assert_int_equal(pv_version_info(PV_V0_34)->has_extensions, 0);
	assert_int_equal(pv_version_info(PV_V1)->pubkey_layout, PV_PUBKEY_BYTES_TYPE);
	pv_request_free(a);
	pv_request_free(b);
	free(p);
	json_decref(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_vectors),
		cmocka_unit_test(test_derived_exchanges),
		cmocka_unit_test(test_family_differences),
		cmocka_unit_test(test_auto_precommit_family_a),
	};

	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
