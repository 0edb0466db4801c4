/* SPDX-License-Identifier: Apache-2.0 */
/* privval: malformed input, validation refusals, framing over a stream, version names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_log.h"
#include "p11kms/pv.h"
#include "testutil.h"

static const char *CHAIN = "haqq_11235-1";

/* A valid v0.38 non-nil precommit request with an extension. */
static void good_vote(struct pv_request *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = PV_REQ_SIGN_VOTE;
	strcpy(r->chain_id, CHAIN);
	r->vote.type = PV_TYPE_PRECOMMIT;
	r->vote.height = 10000001;
	r->vote.round = 1;
	memset(r->vote.block_id.hash, 0xaa, 32);
	r->vote.block_id.hash_len = 32;
	r->vote.block_id.psh_total = 1;
	memset(r->vote.block_id.psh_hash, 0xbb, 32);
	r->vote.block_id.psh_hash_len = 32;
	r->vote.timestamp.seconds = 1714566645;
	r->vote.timestamp.nanos = 123456789;
	memset(r->vote.validator_address, 0xcc, 20);
	r->vote.validator_address_len = 20;
	r->vote.validator_index = 7;
	r->vote.extension = (const uint8_t *)"\x01\x02\x03";
	r->vote.extension_len = 3;
}

static void good_proposal(struct pv_request *r)
{
	good_vote(r);
	r->kind = PV_REQ_SIGN_PROPOSAL;
	r->proposal.type = PV_TYPE_PROPOSAL;
	r->proposal.height = 77;
	r->proposal.round = 3;
	r->proposal.pol_round = -1;
	r->proposal.block_id = r->vote.block_id;
	r->proposal.timestamp = r->vote.timestamp;
}

/* Encodes r for v and decodes it back; returns decode's result. */
static int roundtrip(enum pv_version v, const struct pv_request *r, struct pv_request **out)
{
	struct kbuf *b = kbuf_new(4096);
	int rc;

	assert_int_equal(pv_encode_request(v, r, b), KMS_OK);
	rc = pv_decode_request(v, kbuf_ptr(b), kbuf_len(b), out);
	if (rc != KMS_OK)
		assert_null(*out);
	kbuf_free(b);
	return rc;
}

static void expect_decode_error(enum pv_version v, const struct pv_request *r, int want, const char *log_needle)
{
	struct pv_request *out = NULL;

	tu_log_capture_start();
	assert_int_equal(roundtrip(v, r, &out), want);
	if (log_needle && !tu_log_contains(log_needle))
		fail_msg("no log line containing \"%s\"", log_needle);
	tu_log_capture_stop();
}

static void test_good_roundtrip(void **state)
{
	struct pv_request r, *out = NULL;
	char why[128];

	(void)state;
	good_vote(&r);
	r.skip_extension_signing = 1;
	assert_int_equal(roundtrip(PV_V1, &r, &out), KMS_OK);
	assert_string_equal(out->chain_id, CHAIN);
	assert_int_equal(out->vote.height, 10000001);
	assert_int_equal(out->vote.timestamp.nanos, 123456789);
	assert_int_equal(out->vote.extension_len, 3);
	assert_int_equal(out->skip_extension_signing, 1);
	assert_int_equal(pv_validate_request(out, CHAIN, why, sizeof(why)), KMS_OK);
	assert_int_equal(pv_wants_extension_signature(PV_V1, out), 0);
	pv_request_free(out);
	/* v0.38 has no skip_extension_signing: never decoded, extension always signed */
	assert_int_equal(roundtrip(PV_V0_38, &r, &out), KMS_OK);
	assert_int_equal(out->skip_extension_signing, 0);
	assert_int_equal(pv_wants_extension_signature(PV_V0_38, out), 1);
	assert_int_equal(pv_wants_extension_signature(PV_V0_37, out), 0);
	pv_request_free(out);
}

static void test_truncated(void **state)
{
	struct pv_request r, *out = NULL;
	struct kbuf *b = kbuf_new(4096);
	size_t n;

	(void)state;
	good_vote(&r);
	assert_int_equal(pv_encode_request(PV_V0_38, &r, b), KMS_OK);
	n = kbuf_len(b);
	tu_log_capture_start();
	for (size_t i = 0; i < n; i++) {
		int rc = pv_decode_request(PV_V0_38, kbuf_ptr(b), i, &out);

		assert_null(out);
		/* empty input is a Message without oneof; every other prefix is undecodable */
		assert_int_equal(rc, i == 0 ? KMS_ERR_UNSUPPORTED : KMS_ERR_FORMAT);
	}
	assert_true(tu_log_contains("undecodable"));
	tu_log_capture_stop();
	kbuf_free(b);
}

static void test_unknown_oneof(void **state)
{
	/* field 11 (unknown), a response tag, and an empty Message */
	static const uint8_t unknown[] = { 0x5a, 0x00 }, resp[] = { 0x42, 0x00 };
	static const uint8_t no_vote[] = { 0x1a, 0x00 }, no_prop[] = { 0x2a, 0x00 };
	struct pv_request *out = NULL;
	struct pv_response *ro = NULL;

	(void)state;
	tu_log_capture_start();
	assert_int_equal(pv_decode_request(PV_V0_37, unknown, sizeof(unknown), &out), KMS_ERR_UNSUPPORTED);
	assert_true(tu_log_contains("unknown_field=11")); /* the log names what was sent */
	assert_int_equal(pv_decode_request(PV_V0_37, resp, sizeof(resp), &out), KMS_ERR_UNSUPPORTED);
	assert_true(tu_log_contains("not a request"));
	assert_int_equal(pv_decode_request(PV_V0_37, NULL, 0, &out), KMS_ERR_UNSUPPORTED);
	assert_int_equal(pv_decode_request(PV_V0_37, no_vote, sizeof(no_vote), &out), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("without vote"));
	assert_int_equal(pv_decode_request(PV_V0_37, no_prop, sizeof(no_prop), &out), KMS_ERR_FORMAT);
	assert_null(out);
	/* a request is not a response either */
	assert_int_equal(pv_decode_response(PV_V0_37, no_vote, sizeof(no_vote), &ro), KMS_ERR_UNSUPPORTED);
	assert_null(ro);
	/* wrong wire type for field 3 (varint instead of length-delimited) */
	{
		static const uint8_t wt[] = { 0x18, 0x01 };

		assert_int_equal(pv_decode_request(PV_V0_37, wt, sizeof(wt), &out), KMS_ERR_FORMAT);
	}
	tu_log_capture_stop();
}

static void test_field_ranges(void **state)
{
	struct pv_request r;

	(void)state;
	/* Negative height/round are well-formed protobuf: they decode (as in Go)
	 * and validation refuses them, so the node gets an error reply. */
	{
		struct pv_request *out = NULL;
		char why[128];

		good_vote(&r);
		r.vote.height = -1;
		assert_int_equal(roundtrip(PV_V0_37, &r, &out), KMS_OK);
		assert_int_equal(out->vote.height, -1);
		assert_int_equal(pv_validate_request(out, CHAIN, why, sizeof(why)), KMS_ERR_FORMAT);
		assert_non_null(strstr(why, "height must be > 0"));
		pv_request_free(out);
		good_vote(&r);
		r.vote.round = -2;
		assert_int_equal(roundtrip(PV_V0_37, &r, &out), KMS_OK);
		assert_int_equal(pv_validate_request(out, CHAIN, why, sizeof(why)), KMS_ERR_FORMAT);
		assert_non_null(strstr(why, "round >= 0"));
		pv_request_free(out);
	}
	good_vote(&r);
	r.vote.block_id.hash_len = 31;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "block_id.hash");
	good_vote(&r);
	r.vote.block_id.psh_hash_len = 1;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "part_set_header.hash");
	good_vote(&r);
	r.vote.timestamp.nanos = 1000000000;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "timestamp");
	good_vote(&r);
	r.vote.timestamp.nanos = -1;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "timestamp");
	good_vote(&r);
	r.vote.timestamp.seconds = PV_GO_ZERO_TIME_SECONDS - 1;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "timestamp");
	good_vote(&r);
	r.vote.timestamp.seconds = PV_MAX_TIME_SECONDS + 1;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "timestamp");
	good_vote(&r);
	r.vote.validator_address_len = 19;
	expect_decode_error(PV_V0_37, &r, KMS_ERR_FORMAT, "validator_address");
	/* signatures: any length up to 64 is carried through (upstream's vectors use 16) */
	good_vote(&r);
	r.vote.signature_len = 16;
	r.vote.extension_signature_len = 10;
	{
		struct pv_request *out = NULL;

		assert_int_equal(roundtrip(PV_V0_38, &r, &out), KMS_OK);
		assert_int_equal(out->vote.signature_len, 16);
		assert_int_equal(out->vote.extension_signature_len, 10);
		pv_request_free(out);
	}
	{
		/* sign_vote_request { vote { signature: 65 bytes } } */
		uint8_t m[4 + 2 + 65] = { 0x1a, 0x45, 0x0a, 0x43, 0x42, 0x41 };
		struct pv_request *out = NULL;

		tu_log_capture_start();
		assert_int_equal(pv_decode_request(PV_V0_37, m, sizeof(m), &out), KMS_ERR_FORMAT);
		assert_true(tu_log_contains("signature is over 64"));
		tu_log_capture_stop();
		m[1] = 0x44;
		m[3] = 0x42;
		m[5] = 0x40;
		assert_int_equal(pv_decode_request(PV_V0_37, m, sizeof(m) - 1, &out), KMS_OK);
		assert_int_equal(out->vote.signature_len, 64);
		pv_request_free(out);
	}
	good_proposal(&r);
	r.proposal.height = -5;
	{
		struct pv_request *out = NULL;
		char why[128];

		assert_int_equal(roundtrip(PV_V1, &r, &out), KMS_OK);
		assert_int_equal(pv_validate_request(out, CHAIN, why, sizeof(why)), KMS_ERR_FORMAT);
		assert_non_null(strstr(why, "proposal h=-5"));
		pv_request_free(out);
	}
}

/* chain_id longer than 50 bytes or with a NUL (hand-made bytes: our encoder refuses both). */
static void test_bad_chain_id(void **state)
{
	uint8_t m[80];
	struct pv_request *out = NULL;

	(void)state;
	memset(m, 'a', sizeof(m));
	m[0] = 0x0a; /* pub_key_request */
	m[1] = 53;
	m[2] = 0x0a; /* chain_id */
	m[3] = 51;
	tu_log_capture_start();
	assert_int_equal(pv_decode_request(PV_V0_37, m, 4 + 51, &out), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("longer than 50"));
	m[1] = 12;
	m[3] = 10;
	m[7] = 0;
	assert_int_equal(pv_decode_request(PV_V0_37, m, 4 + 10, &out), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("NUL"));
	m[7] = '\n';
	assert_int_equal(pv_decode_request(PV_V0_37, m, 4 + 10, &out), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("control character"));
	m[7] = 'a';
	assert_int_equal(pv_decode_request(PV_V0_37, m, 4 + 10, &out), KMS_OK);
	assert_string_equal(out->chain_id, "aaaaaaaaaa");
	pv_request_free(out);
	tu_log_capture_stop();
}

static void expect_invalid(const struct pv_request *r, int want, const char *needle)
{
	char why[200];

	assert_int_equal(pv_validate_request(r, CHAIN, why, sizeof(why)), want);
	if (!strstr(why, needle))
		fail_msg("reason \"%s\" lacks \"%s\"", why, needle);
}

static void test_validation(void **state)
{
	struct pv_request r;

	(void)state;
	good_vote(&r);
	strcpy(r.chain_id, "haqq_53211-1");
	expect_invalid(&r, KMS_ERR_REFUSED, "want haqq_11235-1, got haqq_53211-1");
	/* answered like the reference signer: code 0, its text (golden exchanges) */
	assert_int_equal(pv_code_for_err(KMS_ERR_REFUSED), PV_CODE_UNKNOWN);
	assert_string_equal(pv_reference_refusal(PV_V0_37, PV_REQ_SIGN_VOTE), "unable to sign vote");
	assert_string_equal(pv_reference_refusal(PV_V0_38, PV_REQ_SIGN_PROPOSAL),
			    "unable to sign proposal");
	assert_string_equal(pv_reference_refusal(PV_V0_34, PV_REQ_PUBKEY), "unable to provide pubkey");
	assert_string_equal(pv_reference_refusal(PV_V1, PV_REQ_PUBKEY),
			    "unable to provide pubkey type and bytes");
	assert_string_equal(pv_reference_refusal(PV_V1, PV_REQ_SIGN_BYTES), "sign_bytes disabled");
	good_vote(&r);
	r.vote.type = 0;
	expect_invalid(&r, KMS_ERR_FORMAT, "type 0");
	good_vote(&r);
	r.vote.type = PV_TYPE_PROPOSAL;
	expect_invalid(&r, KMS_ERR_FORMAT, "type 32");
	good_vote(&r);
	r.vote.height = 0;
	expect_invalid(&r, KMS_ERR_FORMAT, "height must be > 0");
	good_vote(&r);
	r.vote.type = PV_TYPE_PREVOTE;
	expect_invalid(&r, KMS_ERR_FORMAT, "extension on a prevote");
	good_vote(&r);
	memset(&r.vote.block_id, 0, sizeof(r.vote.block_id));
	expect_invalid(&r, KMS_ERR_FORMAT, "extension on a nil precommit");
	r.vote.extension_len = 0;
	expect_invalid(&r, KMS_OK, "");
	assert_int_equal(pv_wants_extension_signature(PV_V0_38, &r), 0); /* nil precommit: never */
	good_vote(&r);
	r.vote.block_id.psh_total = 0;
	expect_invalid(&r, KMS_ERR_FORMAT, "neither nil nor complete");
	assert_int_equal(pv_code_for_err(KMS_ERR_FORMAT), PV_CODE_INVALID_REQUEST);

	good_proposal(&r);
	expect_invalid(&r, KMS_OK, "");
	r.proposal.pol_round = -2;
	expect_invalid(&r, KMS_ERR_FORMAT, "pol_round -2");
	r.proposal.pol_round = 3;
	expect_invalid(&r, KMS_ERR_FORMAT, "pol_round 3");
	r.proposal.pol_round = 2;
	expect_invalid(&r, KMS_OK, "");
	r.proposal.type = 1;
	expect_invalid(&r, KMS_ERR_FORMAT, "not 32");
	good_proposal(&r);
	memset(&r.proposal.block_id, 0, sizeof(r.proposal.block_id));
	expect_invalid(&r, KMS_ERR_FORMAT, "not complete");

	memset(&r, 0, sizeof(r));
	r.kind = PV_REQ_PING;
	expect_invalid(&r, KMS_OK, ""); /* ping carries no chain id */
	r.kind = PV_REQ_PUBKEY;
	expect_invalid(&r, KMS_ERR_REFUSED, "got ");
}

static void test_error_responses(void **state)
{
	struct kbuf *b = kbuf_new(256);
	struct pv_response *r = NULL;

	(void)state;
	assert_int_equal(pv_encode_error_response(PV_V0_37, PV_REQ_PING, 1, "x", b), KMS_ERR_INTERNAL);
	assert_int_equal(pv_encode_error_response(PV_V1, PV_REQ_SIGN_BYTES, PV_CODE_UNKNOWN,
						  pv_reference_refusal(PV_V1, PV_REQ_SIGN_BYTES), b),
			 KMS_OK);
	assert_int_equal(pv_decode_response(PV_V1, kbuf_ptr(b), kbuf_len(b), &r), KMS_OK);
	assert_int_equal(r->kind, PV_REQ_SIGN_BYTES);
	assert_true(r->has_error);
	assert_int_equal(r->error_code, PV_CODE_UNKNOWN);
	assert_string_equal(r->error_description, "sign_bytes disabled");
	assert_int_equal(r->signature_len, 0);
	pv_response_free(r);
	/* a v1 PubKeyResponse with a secp256k1 type is refused by the node-side decoder */
	{
		static const uint8_t m[] = { 0x12, 0x0e, 0x1a, 0x01, 0x02, 0x22, 0x09, 's', 'e', 'c', 'p',
					     '2',  '5',  '6', 'k',  '1' };

		tu_log_capture_start();
		assert_int_equal(pv_decode_response(PV_V1, m, sizeof(m), &r), KMS_ERR_FORMAT);
		assert_true(tu_log_contains("ed25519"));
		tu_log_capture_stop();
	}
	kbuf_free(b);
}

/* ---- framing ---- */

struct mem_stream {
	const uint8_t *in;
	size_t in_len, pos, chunk;
	int reads, writes;
	uint8_t out[4096];
	size_t out_len;
	int64_t deadline; /* the last deadline a callback got */
};

static int mem_read(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline)
{
	struct mem_stream *m = ctx;
	size_t n = cap < m->chunk ? cap : m->chunk;

	m->reads++;
	m->deadline = deadline;
	if (m->pos == m->in_len)
		return KMS_ERR_CONN_CLOSED;
	if (n > m->in_len - m->pos)
		n = m->in_len - m->pos;
	memcpy(p, m->in + m->pos, n);
	m->pos += n;
	*got = n;
	return KMS_OK;
}

static int mem_write(void *ctx, const uint8_t *p, size_t n, int64_t deadline)
{
	struct mem_stream *m = ctx;

	m->writes++;
	m->deadline = deadline;
	if (n > sizeof(m->out) - m->out_len)
		return KMS_ERR_NO_SPACE;
	memcpy(m->out + m->out_len, p, n);
	m->out_len += n;
	return KMS_OK;
}

static void test_frame_parse(void **state)
{
	static const uint8_t ping[] = { 0x02, 0x3a, 0x00 };
	static const uint8_t big[] = { 0x81, 0x80, 0x40 };     /* 1 MiB + 1 */
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	static const uint8_t over[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
	static const uint8_t eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
	static const uint8_t exact[] = { 0x80, 0x80, 0x40 };  /* exactly 1 MiB */
	size_t h, b;

	(void)state;
	assert_int_equal(pv_frame_parse(ping, 3, PV_MAX_MSG_DEFAULT, &h, &b), KMS_OK);
	assert_int_equal(h, 1);
	assert_int_equal(b, 2);
	assert_int_equal(pv_frame_parse(ping, 2, PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_INCOMPLETE);
	assert_int_equal(pv_frame_parse(ping, 0, PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_INCOMPLETE);
	assert_int_equal(pv_frame_parse(big, 1, PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_INCOMPLETE);
	assert_int_equal(pv_frame_parse(big, 3, PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_TOO_LARGE);
	assert_int_equal(pv_frame_parse(exact, 3, PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_INCOMPLETE);
	assert_int_equal(pv_frame_parse(huge, sizeof(huge), PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_TOO_LARGE);
	assert_int_equal(pv_frame_parse(over, sizeof(over), SIZE_MAX, &h, &b), KMS_ERR_FORMAT);
	assert_int_equal(pv_frame_parse(eleven, sizeof(eleven), PV_MAX_MSG_DEFAULT, &h, &b), KMS_ERR_FORMAT);
	assert_int_equal(pv_frame_parse(ping, 3, 1, &h, &b), KMS_ERR_TOO_LARGE);
}

static void test_read_write_msg(void **state)
{
	/* two messages back to back, delivered one byte per read */
	static const uint8_t two[] = { 0x02, 0x3a, 0x00, 0x02, 0x42, 0x00 };
	static const uint8_t big[] = { 0x81, 0x80, 0x40, 0xaa, 0xbb };
	struct mem_stream m = { .in = two, .in_len = sizeof(two), .chunk = 1 };
	struct kbuf *msg = NULL, *body;

	(void)state;
	assert_int_equal(pv_read_msg(mem_read, &m, PV_MAX_MSG_DEFAULT, 4242, &msg), KMS_OK);
	assert_int_equal(kbuf_len(msg), 2);
	assert_memory_equal(kbuf_ptr(msg), "\x3a\x00", 2);
	kbuf_free(msg);
	assert_int_equal(m.pos, 3); /* never read into the next message */
	assert_int_equal(m.reads, 3);
	assert_int_equal(m.deadline, 4242); /* the caller's deadline reaches every read unchanged */
	assert_int_equal(pv_read_msg(mem_read, &m, PV_MAX_MSG_DEFAULT, 4242, &msg), KMS_OK);
	assert_memory_equal(kbuf_ptr(msg), "\x42\x00", 2);
	kbuf_free(msg);
	assert_int_equal(pv_read_msg(mem_read, &m, PV_MAX_MSG_DEFAULT, 4242, &msg), KMS_ERR_CONN_CLOSED);
	assert_null(msg);

	/* an oversize prefix is refused after the prefix, before any body byte is read */
	m = (struct mem_stream){ .in = big, .in_len = sizeof(big), .chunk = 64 };
	assert_int_equal(pv_read_msg(mem_read, &m, PV_MAX_MSG_DEFAULT, 4242, &msg), KMS_ERR_TOO_LARGE);
	assert_null(msg);
	assert_int_equal(m.pos, 3);
	/* a body cut short by the peer */
	m = (struct mem_stream){ .in = two, .in_len = 2, .chunk = 64 };
	assert_int_equal(pv_read_msg(mem_read, &m, PV_MAX_MSG_DEFAULT, 4242, &msg), KMS_ERR_CONN_CLOSED);
	assert_null(msg);

	/* write: prefix and body in one call */
	m = (struct mem_stream){ .chunk = 1 };
	body = kbuf_new(300);
	for (int i = 0; i < 200; i++)
		assert_int_equal(kbuf_put_u8(body, (uint8_t)i), KMS_OK);
	assert_int_equal(pv_write_msg(mem_write, &m, body, 4343), KMS_OK);
	assert_int_equal(m.writes, 1);
	assert_int_equal(m.deadline, 4343);
	assert_int_equal(m.out_len, 202);
	assert_int_equal(m.out[0], 0xc8);
	assert_int_equal(m.out[1], 0x01);
	assert_int_equal(m.out[201], 199);
	kbuf_free(body);
}

static void test_versions(void **state)
{
	enum pv_version v = PV_V0_34;
	char why[160];

	(void)state;
	assert_int_equal(pv_version_parse("v0.34", &v), KMS_OK);
	assert_int_equal(v, PV_V0_34);
	assert_int_equal(pv_version_parse("v0.37", &v), KMS_OK);
	assert_int_equal(v, PV_V0_37);
	assert_int_equal(pv_version_parse("v0.38", &v), KMS_OK);
	assert_int_equal(v, PV_V0_38);
	assert_int_equal(pv_version_parse("v1", &v), KMS_OK);
	assert_int_equal(v, PV_V1);
	v = PV_V0_34;
	assert_int_equal(pv_version_parse("v1.0", &v), KMS_OK);
	assert_int_equal(v, PV_V1);
	assert_int_equal(pv_version_parse_why("v0.33", &v, why, sizeof(why)), KMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(why, "\"v0.33\""));
	assert_int_equal(pv_version_parse_why("legacy", &v, why, sizeof(why)), KMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(why, "amino"));
	assert_int_equal(pv_version_parse_why("v2", &v, why, sizeof(why)), KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "unknown"));
	assert_int_equal(pv_version_parse("", &v), KMS_ERR_FORMAT);
	assert_int_equal(pv_version_parse(NULL, &v), KMS_ERR_FORMAT);
	assert_string_equal(pv_version_name(PV_V0_37), "v0.37");
	assert_string_equal(pv_version_name(PV_V1), "v1");
	assert_string_equal(pv_version_name((enum pv_version)9), "?");
	assert_int_equal(pv_version_parse("auto", &v), KMS_OK);
	assert_int_equal(v, PV_AUTO);
	assert_string_equal(pv_version_name(PV_AUTO), "auto");
	assert_int_equal(pv_version_info(PV_AUTO)->pubkey_layout, PV_PUBKEY_BOTH);
	assert_int_equal(pv_version_info(PV_AUTO)->families, PV_FAM_ALL);
	for (int i = 0; i < PV_VERSION_COUNT; i++)
		assert_int_equal(pv_version_info((enum pv_version)i)->version, i);
	assert_null(pv_version_info((enum pv_version)PV_VERSION_COUNT));
}

/* What a request says about the node's family (the evidence auto logs and explicit configs check). */
static void test_families(void **state)
{
	struct pv_request r, *d = NULL;
	struct kbuf *b = kbuf_new(4096);

	(void)state;
	good_vote(&r); /* a non-nil precommit with a 3-byte extension */
	/* a v0.38 node sends the extension: seen even by a v0.37 decoder, which drops it */
	assert_int_equal(pv_encode_request(PV_V0_38, &r, b), KMS_OK);
	assert_int_equal(pv_decode_request(PV_V0_37, kbuf_ptr(b), kbuf_len(b), &d), KMS_OK);
	assert_int_equal(d->vote.extension_len, 0);
	assert_int_equal(d->wire, PV_WIRE_VOTE_EXT);
	assert_int_equal(pv_request_families(d), PV_FAM_B | PV_FAM_C);
	pv_request_free(d);
	/* a v1 node's prevote always carries skip_extension_signing */
	r.vote.type = PV_TYPE_PREVOTE;
	r.vote.extension_len = 0;
	r.skip_extension_signing = 1;
	kbuf_reset(b);
	assert_int_equal(pv_encode_request(PV_V1, &r, b), KMS_OK);
	assert_int_equal(pv_decode_request(PV_V0_38, kbuf_ptr(b), kbuf_len(b), &d), KMS_OK);
	assert_int_equal(d->skip_extension_signing, 0); /* v0.38 does not read field 3 ... */
	assert_int_equal(d->wire, PV_WIRE_SKIP_EXT);	/* ... but it was on the wire */
	assert_int_equal(pv_request_families(d), PV_FAM_C);
	pv_request_free(d);
	assert_int_equal(pv_decode_request(PV_AUTO, kbuf_ptr(b), kbuf_len(b), &d), KMS_OK);
	assert_int_equal(d->skip_extension_signing, 1);
	pv_request_free(d);
	/* a prevote without it is not from a v1 node */
	r.skip_extension_signing = 0;
	kbuf_reset(b);
	assert_int_equal(pv_encode_request(PV_V0_37, &r, b), KMS_OK);
	assert_int_equal(pv_decode_request(PV_AUTO, kbuf_ptr(b), kbuf_len(b), &d), KMS_OK);
	assert_int_equal(d->wire, 0);
	assert_int_equal(pv_request_families(d), PV_FAM_A | PV_FAM_B);
	pv_request_free(d);
	/* a precommit without extension or skip says nothing */
	r.vote.type = PV_TYPE_PRECOMMIT;
	kbuf_reset(b);
	assert_int_equal(pv_encode_request(PV_V0_37, &r, b), KMS_OK);
	assert_int_equal(pv_decode_request(PV_AUTO, kbuf_ptr(b), kbuf_len(b), &d), KMS_OK);
	assert_int_equal(pv_request_families(d), PV_FAM_ALL);
	pv_request_free(d);
	assert_string_equal(pv_families_name(PV_FAM_C), "v1");
	assert_string_equal(pv_families_suggest(PV_FAM_C), "v1");
	assert_string_equal(pv_families_suggest(PV_FAM_B | PV_FAM_C), "auto");
	assert_string_equal(pv_families_name(PV_FAM_ALL), "not known yet");
	/* auto signs an extension exactly where a v0.38 node wants one, and honours v1's skip */
	good_vote(&r);
	assert_true(pv_wants_extension_signature(PV_AUTO, &r));
	r.skip_extension_signing = 1;
	assert_false(pv_wants_extension_signature(PV_AUTO, &r));
	r.skip_extension_signing = 0;
	r.vote.type = PV_TYPE_PREVOTE;
	r.vote.extension_len = 0;
	assert_false(pv_wants_extension_signature(PV_AUTO, &r));
	r.vote.type = PV_TYPE_PRECOMMIT;
	memset(&r.vote.block_id, 0, sizeof(r.vote.block_id));
	assert_false(pv_wants_extension_signature(PV_AUTO, &r));
	kbuf_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_roundtrip), cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_unknown_oneof),  cmocka_unit_test(test_field_ranges),
		cmocka_unit_test(test_bad_chain_id),   cmocka_unit_test(test_validation),
		cmocka_unit_test(test_error_responses), cmocka_unit_test(test_frame_parse),
		cmocka_unit_test(test_read_write_msg), cmocka_unit_test(test_versions),
		cmocka_unit_test(test_families),
	};

	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
