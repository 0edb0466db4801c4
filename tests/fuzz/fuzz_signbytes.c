/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: canonical sign bytes from arbitrary field values (the
 * encoders see whatever a decoded request may hold, including values the
 * validator would refuse). The output must be a well-formed delimited message
 * whose length prefix matches, and must not depend on the extension for votes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "p11kms/kbuf.h"
#include "p11kms/pv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct rd *r, size_t k)
{
	uint64_t v = 0;

	for (size_t i = 0; i < k && r->n; i++, r->p++, r->n--)
		v |= (uint64_t)r->p[0] << (8 * i);
	return v;
}

static void delimited_ok(const struct kbuf *b)
{
	size_t hdr, body;

	if (pv_frame_parse(kbuf_ptr(b), kbuf_len(b), SIZE_MAX, &hdr, &body) != KMS_OK || hdr + body != kbuf_len(b))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = { data, size };
	struct pv_vote v;
	struct pv_proposal p;
	struct kbuf *a = kbuf_new(size + 4096), *b = kbuf_new(size + 4096);
	char chain[PV_CHAIN_ID_MAX + 1];
	size_t clen;

	memset(&v, 0, sizeof(v));
	memset(&p, 0, sizeof(p));
	if (!a || !b)
		goto out;
	v.type = (int32_t)take(&r, 4);
	v.height = (int64_t)take(&r, 8);
	v.round = (int32_t)take(&r, 4);
	v.block_id.hash_len = take(&r, 1) & 1 ? 32 : 0;
	v.block_id.psh_total = (uint32_t)take(&r, 4);
	v.block_id.psh_hash_len = take(&r, 1) & 1 ? 32 : 0;
	memset(v.block_id.hash, (int)take(&r, 1), sizeof(v.block_id.hash));
	v.timestamp.seconds = (int64_t)take(&r, 8);
	v.timestamp.nanos = (int32_t)take(&r, 4);
	clen = (size_t)take(&r, 1) % (PV_CHAIN_ID_MAX + 1);
	memset(chain, 'c', clen);
	chain[clen] = '\0';
	p.pol_round = (int32_t)take(&r, 4);
	p.height = v.height;
	p.round = v.round;
	p.block_id = v.block_id;
	p.timestamp = v.timestamp;
	v.extension = r.p;
	v.extension_len = r.n;

	if (pv_vote_sign_bytes(chain, &v, a) != KMS_OK)
		__builtin_trap();
	delimited_ok(a);
	v.extension_len = 0; /* the vote's sign bytes never include its extension */
	if (pv_vote_sign_bytes(chain, &v, b) != KMS_OK || kbuf_len(a) != kbuf_len(b) ||
	    memcmp(kbuf_ptr(a), kbuf_ptr(b), kbuf_len(a)) != 0)
		__builtin_trap();
	v.extension_len = r.n;
	kbuf_reset(a);
	if (pv_proposal_sign_bytes(chain, &p, a) != KMS_OK)
		__builtin_trap();
	delimited_ok(a);
	kbuf_reset(a);
	if (pv_vote_extension_sign_bytes(chain, &v, a) != KMS_OK)
		__builtin_trap();
	delimited_ok(a);
out:
	kbuf_free(a);
	kbuf_free(b);
	return 0;
}
