/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal, strict protobuf walker for canonical sign bytes, independent of pv_ (spec §4). */
#include "guard_int.h"

#include <string.h>

/* Field numbers of CanonicalVote / CanonicalProposal (spec §4). */
enum {
	F_TYPE = 1,
	F_HEIGHT = 2,
	F_ROUND = 3,
	FV_BLOCK = 4,
	FV_TS = 5,
	FV_CHAIN = 6,
	FP_POL = 4,
	FP_BLOCK = 5,
	FP_TS = 6,
	FP_CHAIN = 7,
	MAX_FIELD = 7,
};

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct field {
	int seen;
	unsigned wt;
	size_t start; /* offset of the key within the body */
	size_t end;   /* offset just past the value */
	uint64_t num; /* varint or fixed64 value */
	const uint8_t *data;
	size_t len;
};

static int get_uvarint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (*pos >= n)
			return KMS_ERR_FORMAT;
		uint8_t b = p[(*pos)++];
		if (i == 9 && b > 1)
			return KMS_ERR_FORMAT; /* over 2^64 - 1 */
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return KMS_OK;
		}
	}
	return KMS_ERR_FORMAT;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Reads one field at *pos; the value is kept in f. */
static int read_field(const uint8_t *p, size_t n, size_t *pos, unsigned *num, struct field *f)
{
	uint64_t key, v;
	size_t start = *pos;
	if (get_uvarint(p, n, pos, &key) != KMS_OK)
		return KMS_ERR_FORMAT;
	if ((key >> 3) == 0 || (key >> 3) > 0xffff)
		return KMS_ERR_FORMAT;
	*num = (unsigned)(key >> 3);
	memset(f, 0, sizeof(*f));
	f->wt = (unsigned)(key & 7);
	f->start = start;
	switch (f->wt) {
	case WT_VARINT:
		if (get_uvarint(p, n, pos, &f->num) != KMS_OK)
			return KMS_ERR_FORMAT;
		break;
	case WT_I64:
		if (n - *pos < 8)
			return KMS_ERR_FORMAT;
		f->num = le64(p + *pos);
		*pos += 8;
		break;
	case WT_LEN:
		if (get_uvarint(p, n, pos, &v) != KMS_OK || v > n - *pos)
			return KMS_ERR_FORMAT;
		f->data = p + *pos;
		f->len = (size_t)v;
		*pos += (size_t)v;
		break;
	case WT_I32:
		if (n - *pos < 4)
			return KMS_ERR_FORMAT;
		*pos += 4;
		break;
	default:
		return KMS_ERR_FORMAT;
	}
	f->end = *pos;
	return KMS_OK;
}

/* Walks a message body into fields[1..MAX_FIELD]; unknown or repeated fields are errors. */
static int walk(const uint8_t *p, size_t n, struct field fields[MAX_FIELD + 1], unsigned maxf)
{
	size_t pos = 0;
	memset(fields, 0, sizeof(struct field) * (MAX_FIELD + 1));
	while (pos < n) {
		unsigned num;
		struct field f;
		if (read_field(p, n, &pos, &num, &f) != KMS_OK)
			return KMS_ERR_FORMAT;
		if (num > maxf || fields[num].seen)
			return KMS_ERR_FORMAT;
		f.seen = 1;
		fields[num] = f;
	}
	return KMS_OK;
}

static int want(const struct field *f, unsigned wt)
{
	return !f->seen || f->wt == wt;
}

/* google.protobuf.Timestamp {int64 seconds = 1; int32 nanos = 2;} */
static int decode_ts(const struct field *f, int64_t *sec, int32_t *nanos)
{
	struct field tf[MAX_FIELD + 1];
	if (walk(f->data, f->len, tf, 2) != KMS_OK || !want(&tf[1], WT_VARINT) ||
	    !want(&tf[2], WT_VARINT))
		return KMS_ERR_FORMAT;
	*sec = (int64_t)tf[1].num;
	/* int32 on the wire is sign-extended to 64 bits; nanos must be 0..999999999 */
	if (tf[2].num > 999999999u)
		return KMS_ERR_FORMAT;
	*nanos = (int32_t)tf[2].num;
	return KMS_OK;
}

int guard_pb_decode(const uint8_t *p, size_t n, struct guard_canon *c)
{
	struct field f[MAX_FIELD + 1];
	uint64_t len;
	size_t pos = 0;
	memset(c, 0, sizeof(*c));
	if (p == NULL || get_uvarint(p, n, &pos, &len) != KMS_OK || len != n - pos)
		return KMS_ERR_FORMAT;
	c->body = p + pos;
	c->body_len = n - pos;
	if (walk(c->body, c->body_len, f, MAX_FIELD) != KMS_OK)
		return KMS_ERR_FORMAT;
	if (!f[F_TYPE].seen || f[F_TYPE].wt != WT_VARINT)
		return KMS_ERR_FORMAT;
	unsigned fb, fts, fch;
	switch (f[F_TYPE].num) {
	case 1:
		c->step = GUARD_STEP_PREVOTE;
		break;
	case 2:
		c->step = GUARD_STEP_PRECOMMIT;
		break;
	case 32:
		c->step = GUARD_STEP_PROPOSE;
		c->is_proposal = 1;
		break;
	default:
		return KMS_ERR_FORMAT;
	}
	if (c->is_proposal) {
		fb = FP_BLOCK, fts = FP_TS, fch = FP_CHAIN;
		if (!want(&f[FP_POL], WT_VARINT))
			return KMS_ERR_FORMAT;
	} else {
		fb = FV_BLOCK, fts = FV_TS, fch = FV_CHAIN;
		if (f[7].seen)
			return KMS_ERR_FORMAT;
	}
	if (!want(&f[F_HEIGHT], WT_I64) || !want(&f[F_ROUND], WT_I64) || !want(&f[fb], WT_LEN) ||
	    !f[fts].seen || f[fts].wt != WT_LEN || !want(&f[fch], WT_LEN))
		return KMS_ERR_FORMAT;
	c->height = (int64_t)f[F_HEIGHT].num;
	c->round = (int64_t)f[F_ROUND].num;
	if (decode_ts(&f[fts], &c->ts_seconds, &c->ts_nanos) != KMS_OK)
		return KMS_ERR_FORMAT;
	c->ts_off = f[fts].start;
	c->ts_len = f[fts].end - f[fts].start;
	c->chain_id = f[fch].data;
	c->chain_id_len = f[fch].len;
	if (f[fb].seen) {
		c->block_id = f[fb].data;
		c->block_id_len = f[fb].len;
		if (c->block_id == NULL)
			c->block_id = c->body; /* present but empty: not nil */
	}
	return KMS_OK;
}

int guard_pb_equal_but_ts(const struct guard_canon *a, const struct guard_canon *b)
{
	size_t a_rest = a->body_len - a->ts_off - a->ts_len;
	size_t b_rest = b->body_len - b->ts_off - b->ts_len;
	if (a->ts_off != b->ts_off || a_rest != b_rest)
		return 0;
	if (memcmp(a->body, b->body, a->ts_off) != 0)
		return 0;
	return memcmp(a->body + a->ts_off + a->ts_len, b->body + b->ts_off + b->ts_len, a_rest) ==
	       0;
}

int guard_pb_block_id(const uint8_t *p, size_t n, const uint8_t **hash, size_t *hash_len,
		      uint32_t *total, const uint8_t **parts_hash, size_t *parts_hash_len)
{
	struct field f[MAX_FIELD + 1], g[MAX_FIELD + 1];
	*hash = NULL, *hash_len = 0, *total = 0, *parts_hash = NULL, *parts_hash_len = 0;
	if (walk(p, n, f, 2) != KMS_OK || !want(&f[1], WT_LEN) || !want(&f[2], WT_LEN))
		return KMS_ERR_FORMAT;
	*hash = f[1].data;
	*hash_len = f[1].len;
	if (!f[2].seen)
		return KMS_OK;
	if (walk(f[2].data, f[2].len, g, 2) != KMS_OK || !want(&g[1], WT_VARINT) ||
	    !want(&g[2], WT_LEN) || g[1].num > UINT32_MAX)
		return KMS_ERR_FORMAT;
	*total = (uint32_t)g[1].num;
	*parts_hash = g[2].data;
	*parts_hash_len = g[2].len;
	return KMS_OK;
}
