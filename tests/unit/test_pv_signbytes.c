/* SPDX-License-Identifier: Apache-2.0 */
/* Canonical sign bytes against every case of sign_bytes.json, and the derived signatures. */
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

static void block_id_from_json(const json_t *j, struct pv_block_id *b)
{
	json_t *psh;

	memset(b, 0, sizeof(*b));
	if (j == NULL || json_is_null(j))
		return;
	b->hash_len = tu_hex(tu_json_str(j, "hash"), b->hash, sizeof(b->hash));
	psh = json_object_get(j, "part_set_header");
	b->psh_total = (uint32_t)tu_json_int(psh, "total");
	b->psh_hash_len = tu_hex(tu_json_str(psh, "hash"), b->psh_hash, sizeof(b->psh_hash));
}

static void ts_from_json(const json_t *j, struct pv_timestamp *t)
{
	t->seconds = tu_json_int(j, "seconds");
	t->nanos = (int32_t)tu_json_int(j, "nanos");
}

/* Computes the sign bytes of one vector into out. */
static void compute(const json_t *vec, struct kbuf *out)
{
	const char *kind = tu_json_str(vec, "kind");
	const char *chain = tu_json_str(vec, "chain_id");
	uint8_t ext[256];

	if (strcmp(kind, "vote") == 0) {
		struct pv_vote v;

		memset(&v, 0, sizeof(v));
		v.type = (int32_t)tu_json_int(vec, "type");
		v.height = tu_json_int(vec, "height");
		v.round = (int32_t)tu_json_int(vec, "round");
		block_id_from_json(json_object_get(vec, "block_id"), &v.block_id);
		ts_from_json(json_object_get(vec, "timestamp"), &v.timestamp);
		/* vote sign bytes never include the extension (upstream case 5) */
		v.extension = (const uint8_t *)"extension";
		v.extension_len = 9;
		assert_int_equal(pv_vote_sign_bytes(chain, &v, out), KMS_OK);
	} else if (strcmp(kind, "proposal") == 0) {
		struct pv_proposal p;

		memset(&p, 0, sizeof(p));
		p.type = 1; /* CanonicalProposal.type is always 32, whatever this holds */
		p.height = tu_json_int(vec, "height");
		p.round = (int32_t)tu_json_int(vec, "round");
		p.pol_round = (int32_t)tu_json_int(vec, "pol_round");
		block_id_from_json(json_object_get(vec, "block_id"), &p.block_id);
		ts_from_json(json_object_get(vec, "timestamp"), &p.timestamp);
		assert_int_equal(pv_proposal_sign_bytes(chain, &p, out), KMS_OK);
	} else if (strcmp(kind, "vote_extension") == 0) {
		struct pv_vote v;

		memset(&v, 0, sizeof(v));
		v.type = PV_TYPE_PRECOMMIT;
		v.height = tu_json_int(vec, "height");
		v.round = (int32_t)tu_json_int(vec, "round");
		v.extension_len = tu_hex(tu_json_str(vec, "extension"), ext, sizeof(ext));
		v.extension = v.extension_len ? ext : NULL;
		assert_int_equal(pv_vote_extension_sign_bytes(chain, &v, out), KMS_OK);
	} else {
		fail_msg("unknown kind %s", kind);
	}
}

static void test_all_vectors(void **state)
{
	json_t *root = tu_load_vector("sign_bytes.json");
	json_t *vecs = json_object_get(root, "vectors"), *vec;
	size_t i, nsig = 0;

	(void)state;
	assert_true(json_array_size(vecs) >= 20);
	json_array_foreach(vecs, i, vec)
	{
		struct kbuf *out = kbuf_new(4096);
		char *hex;

		/* appending to a non-empty buffer must leave what was there */
		assert_int_equal(kbuf_put_u8(out, 0xee), KMS_OK);
		compute(vec, out);
		assert_int_equal(kbuf_ptr(out)[0], 0xee);
		assert_int_equal(kbuf_consume(out, 1), KMS_OK);
		hex = tu_to_hex(kbuf_ptr(out), kbuf_len(out));
		if (strcmp(hex, tu_json_str(vec, "sign_bytes")) != 0)
			fail_msg("vector %zu (%s): got %s", i, tu_json_str(vec, "source"), hex);
		free(hex);
		if (json_object_get(vec, "signature")) {
			uint8_t seed[32], pub[32], want_pub[32], sig[64], want_sig[64];

			tu_hex(tu_json_str(vec, "ed25519_seed"), seed, sizeof(seed));
			tu_hex(tu_json_str(vec, "ed25519_pubkey"), want_pub, sizeof(want_pub));
			tu_hex(tu_json_str(vec, "signature"), want_sig, sizeof(want_sig));
			assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, pub), KMS_OK);
			assert_memory_equal(pub, want_pub, 32);
			assert_int_equal(kcrypto_ed25519_verify(pub, kbuf_ptr(out), kbuf_len(out), want_sig), KMS_OK);
			assert_int_equal(kcrypto_ed25519_sign(seed, kbuf_ptr(out), kbuf_len(out), sig), KMS_OK);
			assert_memory_equal(sig, want_sig, 64);
			/* and a one-byte change no longer verifies */
			want_sig[0] ^= 1;
			assert_int_equal(kcrypto_ed25519_verify(pub, kbuf_ptr(out), kbuf_len(out), want_sig), KMS_ERR_AUTH);
			nsig++;
		}
		kbuf_free(out);
	}
	assert_true(nsig >= 8);
	json_decref(root);
}

/* spec §4 rules, one by one, on hand-built values. */
static void test_rules(void **state)
{
	struct kbuf *out = kbuf_new(1024);
	struct pv_vote v;
	struct pv_proposal p;
	char *hex;

	(void)state;
	/* zero vote: only the Go-zero timestamp (upstream case 0) */
	memset(&v, 0, sizeof(v));
	v.timestamp.seconds = PV_GO_ZERO_TIME_SECONDS;
	assert_int_equal(pv_vote_sign_bytes("", &v, out), KMS_OK);
	hex = tu_to_hex(kbuf_ptr(out), kbuf_len(out));
	assert_string_equal(hex, "0d2a0b088092b8c398feffffff01");
	free(hex);

	/* a zero hash with a non-zero PSH total is NOT nil: CanonicalBlockID emitted */
	kbuf_reset(out);
	v.block_id.psh_total = 1;
	assert_false(pv_block_id_is_nil(&v.block_id));
	assert_int_equal(pv_vote_sign_bytes("", &v, out), KMS_OK);
	hex = tu_to_hex(kbuf_ptr(out), kbuf_len(out));
	assert_string_equal(hex, "13220412020801" "2a0b088092b8c398feffffff01");
	free(hex);

	/* pol_round -1 as a 10-byte varint; type always 32 */
	kbuf_reset(out);
	memset(&p, 0, sizeof(p));
	p.pol_round = -1;
	p.type = PV_TYPE_PREVOTE;
	assert_int_equal(pv_proposal_sign_bytes("", &p, out), KMS_OK);
	hex = tu_to_hex(kbuf_ptr(out), kbuf_len(out));
	assert_string_equal(hex, "0f082020ffffffffffffffffff013200");
	free(hex);

	/* chain ids over 50 bytes are refused, not truncated */
	kbuf_reset(out);
	assert_int_equal(pv_vote_sign_bytes("012345678901234567890123456789012345678901234567890", &v, out),
			 KMS_ERR_FORMAT);
	assert_int_equal(kbuf_len(out), 0);
	kbuf_free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_vectors),
		cmocka_unit_test(test_rules),
	};

	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
