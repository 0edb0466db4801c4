/* SPDX-License-Identifier: Apache-2.0 */
/* The audit record format: frames, bodies, names (pure; the reader is fuzzed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "audit_int.h"

/* ---- framing ------------------------------------------------------------------------ */

static uint64_t get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i > 0; i--)
		v = (v << 8) | p[i - 1];
	return v;
}

static int sha256(const uint8_t *p, size_t n, uint8_t out[static 32])
{
	unsigned int len = 32;
	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return KMS_ERR_CRYPTO;
	return KMS_OK;
}

int audit_frame_at(const uint8_t *p, size_t n, size_t off, struct audit_frame *fr)
{
	memset(fr, 0, sizeof(*fr));
	if (p == NULL || off > n)
		return KMS_ERR_INTERNAL;
	size_t left = n - off;
	if (left < AUDIT_FRAME_PREFIX)
		return KMS_ERR_INCOMPLETE;
	uint32_t len = (uint32_t)get_le(p + off, 4), inv = (uint32_t)get_le(p + off + 4, 4);
	if (len != (uint32_t)~inv || len < AUDIT_BODY_MIN || len > AUDIT_BODY_MAX)
		return KMS_ERR_FORMAT;
	size_t size = AUDIT_FRAME_PREFIX + (size_t)len + AUDIT_HASH_LEN;
	if (left < size)
		return KMS_ERR_INCOMPLETE;
	fr->off = off;
	fr->size = size;
	fr->body = p + off + AUDIT_FRAME_PREFIX;
	fr->body_len = len;
	if (sha256(p + off, AUDIT_FRAME_PREFIX + (size_t)len, fr->hash) != KMS_OK)
		return KMS_ERR_CRYPTO;
	/* not secret: a plain compare tells the reader which record changed */
	fr->hash_ok = memcmp(fr->hash, fr->body + len, AUDIT_HASH_LEN) == 0;
	return KMS_OK;
}

int audit_frame_put(struct kbuf *out, const uint8_t *body, size_t len, uint8_t hash[static 32])
{
	uint8_t *dst;
	if (len < AUDIT_BODY_MIN || len > AUDIT_BODY_MAX)
		return KMS_ERR_TOO_LARGE;
	size_t start = kbuf_len(out);
	int r = kbuf_reserve(out, AUDIT_FRAME_PREFIX + len + AUDIT_HASH_LEN, &dst);
	if (r != KMS_OK)
		return r;
	uint32_t l = (uint32_t)len, inv = ~l;
	for (int i = 0; i < 4; i++) {
		dst[i] = (uint8_t)(l >> (8 * i));
		dst[4 + i] = (uint8_t)(inv >> (8 * i));
	}
	memcpy(dst + AUDIT_FRAME_PREFIX, body, len);
	r = sha256(dst, AUDIT_FRAME_PREFIX + len, hash);
	if (r != KMS_OK) {
		if (kbuf_consume_end(out, kbuf_len(out) - start) != KMS_OK)
			return KMS_ERR_INTERNAL;
		return r;
	}
	memcpy(dst + AUDIT_FRAME_PREFIX + len, hash, AUDIT_HASH_LEN);
	return KMS_OK;
}

/* ---- body parsing: a cursor with a sticky failure flag (p11-kit's buffer idea) -------- */

struct cur {
	const uint8_t *p;
	size_t n, off;
	int bad;
};

static const uint8_t *c_take(struct cur *c, size_t k)
{
	if (c->bad || k > c->n - c->off) {
		c->bad = 1;
		return NULL;
	}
	const uint8_t *q = c->p + c->off;
	c->off += k;
	return q;
}

static uint64_t c_uint(struct cur *c, size_t k)
{
	const uint8_t *q = c_take(c, k);
	return q != NULL ? get_le(q, k) : 0;
}

static uint8_t c_u8(struct cur *c)
{
	return (uint8_t)c_uint(c, 1);
}

static uint32_t c_u32(struct cur *c)
{
	return (uint32_t)c_uint(c, 4);
}

static uint64_t c_u64(struct cur *c)
{
	return c_uint(c, 8);
}

static int64_t c_i64(struct cur *c)
{
	return (int64_t)c_u64(c);
}

static int32_t c_i32(struct cur *c)
{
	return (int32_t)c_u32(c);
}

static void c_bytes(struct cur *c, uint8_t *dst, size_t k)
{
	const uint8_t *q = c_take(c, k);
	if (q != NULL)
		memcpy(dst, q, k);
	else
		memset(dst, 0, k);
}

/* Padding must be zero: a reader that ignored it would let bytes change unnoticed by it. */
static void c_zero(struct cur *c, size_t k)
{
	const uint8_t *q = c_take(c, k);
	for (size_t i = 0; q != NULL && i < k; i++)
		if (q[i] != 0)
			c->bad = 1;
}

static void c_str(struct cur *c, struct audit_str *s, size_t min, size_t max)
{
	size_t len = (size_t)c_uint(c, 2);
	s->n = 0;
	s->p = NULL;
	if (len < min || len > max)
		c->bad = 1;
	const uint8_t *q = c_take(c, len);
	if (q != NULL) {
		s->p = q;
		s->n = len;
	}
}

static int all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

static void parse_header(struct cur *c, struct audit_rec *r)
{
	struct audit_hdr *h = &r->u.hdr;
	c_bytes(c, h->log_id, sizeof(h->log_id));
	h->file_index = c_u64(c);
	h->wall_ns = c_i64(c);
	h->prev_torn = c_u32(c);
	h->batch_records = c_u32(c);
	h->batch_ms = c_u32(c);
	h->queue_cap = c_u32(c);
	h->checkpoint_every = c_u32(c);
	h->key_alg = c_u8(c);
	c_zero(c, 3);
	c_bytes(c, h->key, sizeof(h->key));
	c_str(c, &h->host, 0, AUDIT_STR_MAX);
	c_str(c, &h->version, 0, AUDIT_STR_MAX);
	if (r->flags != 0 || h->key_alg > 1 || (h->key_alg == 0 && !all_zero(h->key, 32)))
		c->bad = 1;
}

static void parse_decision(struct cur *c, struct audit_rec *r)
{
	struct audit_dec *d = &r->u.dec;
	d->wall_ns = c_i64(c);
	d->mono_ns = c_i64(c);
	d->height = c_i64(c);
	d->round = c_i32(c);
	d->code = c_i32(c);
	d->guard_seq = c_u64(c);
	d->latency_ns = c_i64(c);
	d->sign_ns = c_i64(c);
	d->sync_ns = c_i64(c);
	d->msg = c_u8(c);
	d->decision = c_u8(c);
	d->why = c_u8(c);
	d->step = c_u8(c);
	d->block_hash_len = c_u8(c);
	c_zero(c, 3);
	c_bytes(c, d->block_hash, sizeof(d->block_hash));
	c_bytes(c, d->sign_bytes_sha256, sizeof(d->sign_bytes_sha256));
	c_str(c, &d->chain_id, 0, 64);
	c_str(c, &d->peer, 0, AUDIT_STR_MAX);
	c_str(c, &d->slot, 0, AUDIT_STR_MAX);
	c_str(c, &d->detail, 0, AUDIT_STR_MAX);
	if ((r->flags & ~(AUDIT_F_SIGN_BYTES | AUDIT_F_EXT_SIGNED)) != 0 || d->msg < 1 ||
	    d->msg > OBS_MSG_UNKNOWN || d->decision < 1 || d->decision > OBS_DEC_ANSWERED ||
	    d->why >= 64 || d->step > 3 || d->block_hash_len > 32 ||
	    !all_zero(d->block_hash + d->block_hash_len, 32u - d->block_hash_len) ||
	    (!(r->flags & AUDIT_F_SIGN_BYTES) && !all_zero(d->sign_bytes_sha256, 32)))
		c->bad = 1;
}

static void parse_checkpoint(struct cur *c, struct audit_rec *r)
{
	struct audit_cp *cp = &r->u.cp;
	cp->wall_ns = c_i64(c);
	cp->reason = c_u8(c);
	c_zero(c, 7);
	cp->sig = NULL;
	if (r->flags & AUDIT_F_CP_SIGNED)
		cp->sig = c_take(c, AUDIT_SIG_LEN);
	if ((r->flags & ~(AUDIT_F_CP_SIGNED | AUDIT_F_CP_SIGN_FAILED)) != 0 ||
	    (r->flags & AUDIT_F_CP_SIGNED && r->flags & AUDIT_F_CP_SIGN_FAILED) ||
	    cp->reason < AUDIT_CP_PERIODIC || cp->reason > AUDIT_CP_SHUTDOWN)
		c->bad = 1;
}

static void start_chain(struct cur *c, struct audit_start_chain *sc)
{
	c_str(c, &sc->chain_id, 1, 64);
	sc->guard_seq = c_u64(c);
	sc->height = c_i64(c);
	sc->round = c_i32(c);
	sc->step = c_u8(c);
	c_zero(c, 3);
	sc->n_conns = c_u32(c);
	if (sc->step > 3)
		c->bad = 1;
}

static void parse_start(struct cur *c, struct audit_rec *r)
{
	struct audit_start *st = &r->u.st;
	struct audit_start_chain sc;
	st->wall_ns = c_i64(c);
	st->pid = c_u32(c);
	st->n_chains = c_u32(c);
	if (r->flags != 0 || st->n_chains > AUDIT_MAX_CHAINS)
		c->bad = 1;
	st->list = c->p + c->off;
	size_t at = c->off;
	for (uint32_t i = 0; i < st->n_chains && !c->bad; i++)
		start_chain(c, &sc);
	st->list_len = c->off - at;
}

static void note_chain(struct cur *c, struct audit_note_chain *nc)
{
	c_str(c, &nc->chain_id, 1, 64);
	nc->n_signed = c_u64(c);
	nc->first_seq = c_u64(c);
	nc->last_seq = c_u64(c);
	if (nc->n_signed == 0 || nc->last_seq < nc->first_seq ||
	    nc->n_signed - 1 > nc->last_seq - nc->first_seq)
		c->bad = 1;
}

static void parse_note(struct cur *c, struct audit_rec *r)
{
	struct audit_note *nt = &r->u.note;
	struct audit_note_chain nc;
	nt->kind = c_u8(c);
	c_zero(c, 3);
	nt->err = c_i32(c);
	nt->sys_errno = c_i32(c);
	nt->first_ns = c_i64(c);
	nt->last_ns = c_i64(c);
	nt->total = c_u64(c);
	nt->n_signed = c_u64(c);
	nt->n_stored = c_u64(c);
	nt->n_refused = c_u64(c);
	nt->n_chains = c_u32(c);
	if (r->flags != 0 || nt->kind < AUDIT_NOTE_DROPPED || nt->kind > AUDIT_NOTE_LOST ||
	    nt->n_chains > AUDIT_MAX_CHAINS || nt->n_signed > nt->total)
		c->bad = 1;
	nt->list = c->p + c->off;
	size_t at = c->off;
	for (uint32_t i = 0; i < nt->n_chains && !c->bad; i++)
		note_chain(c, &nc);
	nt->list_len = c->off - at;
}

int audit_body_parse(const uint8_t *body, size_t len, struct audit_rec *rec)
{
	struct cur c = { .p = body, .n = len };
	memset(rec, 0, sizeof(*rec));
	if (body == NULL)
		return KMS_ERR_INTERNAL;
	rec->type = c_u8(&c);
	rec->version = c_u8(&c);
	rec->flags = (uint16_t)c_uint(&c, 2);
	rec->seq = c_u64(&c);
	c_bytes(&c, rec->prev, sizeof(rec->prev));
	rec->body = body;
	rec->body_len = len;
	if (c.bad)
		return KMS_ERR_FORMAT;
	if (rec->version != AUDIT_BODY_VERSION)
		return KMS_ERR_UNSUPPORTED;
	switch (rec->type) {
	case AUDIT_REC_HEADER:
		parse_header(&c, rec);
		break;
	case AUDIT_REC_DECISION:
		parse_decision(&c, rec);
		break;
	case AUDIT_REC_CHECKPOINT:
		parse_checkpoint(&c, rec);
		break;
	case AUDIT_REC_START:
		parse_start(&c, rec);
		break;
	case AUDIT_REC_NOTE:
		parse_note(&c, rec);
		break;
	default:
		return KMS_ERR_UNSUPPORTED;
	}
	return c.bad || c.off != len ? KMS_ERR_FORMAT : KMS_OK;
}

void audit_start_chain_at(const struct audit_start *st, uint32_t i, struct audit_start_chain *sc)
{
	struct cur c = { .p = st->list, .n = st->list_len };
	memset(sc, 0, sizeof(*sc));
	for (uint32_t k = 0; k <= i && k < st->n_chains; k++)
		start_chain(&c, sc);
}

void audit_note_chain_at(const struct audit_note *nt, uint32_t i, struct audit_note_chain *nc)
{
	struct cur c = { .p = nt->list, .n = nt->list_len };
	memset(nc, 0, sizeof(*nc));
	for (uint32_t k = 0; k <= i && k < nt->n_chains; k++)
		note_chain(&c, nc);
}

/* ---- encoding ----------------------------------------------------------------------- */

static int put_u16(struct kbuf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	return kbuf_put(b, x, 2);
}

static int put_zero(struct kbuf *b, size_t n)
{
	static const uint8_t z[8];
	return n <= sizeof(z) ? kbuf_put(b, z, n) : KMS_ERR_INTERNAL;
}

/* A string cut at max bytes (config values and reasons are far shorter than AUDIT_STR_MAX). */
static int put_strn(struct kbuf *b, const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;
	if (n > max)
		n = max;
	int r = put_u16(b, (uint16_t)n);
	return r == KMS_OK && n > 0 ? kbuf_put(b, s, n) : r;
}

static int put_str(struct kbuf *b, const char *s)
{
	return put_strn(b, s, AUDIT_STR_MAX);
}

static int put_common(struct kbuf *b, uint8_t type, uint16_t flags, uint64_t seq,
		      const uint8_t prev[static 32])
{
	int r = kbuf_put_u8(b, type);
	if (r == KMS_OK)
		r = kbuf_put_u8(b, AUDIT_BODY_VERSION);
	if (r == KMS_OK)
		r = put_u16(b, flags);
	if (r == KMS_OK)
		r = kbuf_put_u64le(b, seq);
	if (r == KMS_OK)
		r = kbuf_put(b, prev, 32);
	return r;
}

/* Appends each of n 64-bit values (signed values as their two's complement). */
static int put_u64s(struct kbuf *b, const uint64_t *v, size_t n)
{
	int r = KMS_OK;
	for (size_t i = 0; i < n && r == KMS_OK; i++)
		r = kbuf_put_u64le(b, v[i]);
	return r;
}

int audit_enc_header(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
		     const struct audit_hdr *h, const char *host, const char *version)
{
	const uint32_t u32s[] = { h->prev_torn, h->batch_records, h->batch_ms, h->queue_cap,
				  h->checkpoint_every };
	const uint64_t u64s[] = { h->file_index, (uint64_t)h->wall_ns };
	int r = put_common(b, AUDIT_REC_HEADER, 0, seq, prev);
	if (r == KMS_OK)
		r = kbuf_put(b, h->log_id, sizeof(h->log_id));
	if (r == KMS_OK)
		r = put_u64s(b, u64s, 2);
	for (size_t i = 0; i < sizeof(u32s) / sizeof(u32s[0]) && r == KMS_OK; i++)
		r = kbuf_put_u32le(b, u32s[i]);
	if (r == KMS_OK)
		r = kbuf_put_u8(b, h->key_alg);
	if (r == KMS_OK)
		r = put_zero(b, 3);
	if (r == KMS_OK)
		r = kbuf_put(b, h->key, sizeof(h->key));
	if (r == KMS_OK)
		r = put_str(b, host);
	if (r == KMS_OK)
		r = put_str(b, version);
	return r;
}

int audit_enc_decision(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
		       const struct obs_event *ev)
{
	uint16_t flags = (uint16_t)((ev->has_sign_bytes ? AUDIT_F_SIGN_BYTES : 0) |
				    (ev->ext_signed ? AUDIT_F_EXT_SIGNED : 0));
	const uint64_t a[] = { (uint64_t)ev->wall_ns, (uint64_t)ev->mono_ns, (uint64_t)ev->height };
	const uint64_t c[] = { ev->guard_seq, (uint64_t)ev->latency_ns, (uint64_t)ev->sign_ns,
			       (uint64_t)ev->sync_ns };
	size_t bhl = ev->block_hash_len <= 32 ? ev->block_hash_len : 0;
	uint8_t bh[32] = { 0 }, small[8] = { (uint8_t)ev->msg, (uint8_t)ev->decision,
					     (uint8_t)ev->why, (uint8_t)ev->step, (uint8_t)bhl };
	static const uint8_t nohash[32];
	memcpy(bh, ev->block_hash, bhl);
	int r = put_common(b, AUDIT_REC_DECISION, flags, seq, prev);
	if (r == KMS_OK)
		r = put_u64s(b, a, 3);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, (uint32_t)ev->round);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, (uint32_t)ev->code);
	if (r == KMS_OK)
		r = put_u64s(b, c, 4);
	if (r == KMS_OK)
		r = kbuf_put(b, small, sizeof(small));
	if (r == KMS_OK)
		r = kbuf_put(b, bh, sizeof(bh));
	if (r == KMS_OK)
		r = kbuf_put(b, ev->has_sign_bytes ? ev->sign_bytes_sha256 : nohash, 32);
	if (r == KMS_OK)
		r = put_strn(b, ev->chain_id, 64);
	const char *strs[] = { ev->peer, ev->slot, ev->detail };
	for (size_t i = 0; i < 3 && r == KMS_OK; i++)
		r = put_str(b, strs[i]);
	return r;
}

int audit_enc_checkpoint(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
			 uint16_t flags, int64_t wall_ns, uint8_t reason)
{
	int r = put_common(b, AUDIT_REC_CHECKPOINT, flags, seq, prev);
	if (r == KMS_OK)
		r = kbuf_put_u64le(b, (uint64_t)wall_ns);
	if (r == KMS_OK)
		r = kbuf_put_u8(b, reason);
	if (r == KMS_OK)
		r = put_zero(b, 7);
	return r;
}

int audit_enc_start(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32], int64_t wall_ns,
		    uint32_t pid, uint32_t n)
{
	int r = put_common(b, AUDIT_REC_START, 0, seq, prev);
	if (r == KMS_OK)
		r = kbuf_put_u64le(b, (uint64_t)wall_ns);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, pid);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, n);
	return r;
}

int audit_enc_start_chain(struct kbuf *b, const char *chain_id, uint64_t seq, int64_t height,
			  int32_t round, uint8_t step, uint32_t n_conns)
{
	int r = put_strn(b, chain_id, 64);
	if (r == KMS_OK)
		r = kbuf_put_u64le(b, seq);
	if (r == KMS_OK)
		r = kbuf_put_u64le(b, (uint64_t)height);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, (uint32_t)round);
	if (r == KMS_OK)
		r = kbuf_put_u8(b, step);
	if (r == KMS_OK)
		r = put_zero(b, 3);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, n_conns);
	return r;
}

int audit_enc_note(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
		   const struct audit_note *nt)
{
	const uint64_t v[] = { (uint64_t)nt->first_ns, (uint64_t)nt->last_ns, nt->total,
			       nt->n_signed,	       nt->n_stored,	      nt->n_refused };
	int r = put_common(b, AUDIT_REC_NOTE, 0, seq, prev);
	if (r == KMS_OK)
		r = kbuf_put_u8(b, nt->kind);
	if (r == KMS_OK)
		r = put_zero(b, 3);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, (uint32_t)nt->err);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, (uint32_t)nt->sys_errno);
	if (r == KMS_OK)
		r = put_u64s(b, v, 6);
	if (r == KMS_OK)
		r = kbuf_put_u32le(b, nt->n_chains);
	return r;
}

int audit_enc_note_chain(struct kbuf *b, const char *chain_id, uint64_t n_signed, uint64_t first,
			 uint64_t last)
{
	const uint64_t v[] = { n_signed, first, last };
	int r = put_strn(b, chain_id, 64);
	return r == KMS_OK ? put_u64s(b, v, 3) : r;
}

int audit_cp_message(const uint8_t log_id[static 16], const uint8_t *body, size_t len, uint8_t *out,
		     size_t cap, size_t *outlen)
{
	size_t dl = sizeof(AUDIT_CP_DOMAIN) - 1;
	if (len > cap || cap - len < dl + AUDIT_LOG_ID_LEN)
		return KMS_ERR_NO_SPACE;
	memcpy(out, AUDIT_CP_DOMAIN, dl);
	memcpy(out + dl, log_id, AUDIT_LOG_ID_LEN);
	memcpy(out + dl + AUDIT_LOG_ID_LEN, body, len);
	*outlen = dl + AUDIT_LOG_ID_LEN + len;
	return KMS_OK;
}

/* ---- names -------------------------------------------------------------------------- */

const char *audit_msg_name(uint8_t m)
{
	return m >= 1 && m <= OBS_MSG_UNKNOWN ? obs_msg_name((enum obs_msg)m) : "unknown";
}

const char *audit_decision_name(uint8_t d)
{
	return d >= 1 && d <= OBS_DEC_ANSWERED ? obs_decision_name((enum obs_decision)d) :
						 "unknown";
}

const char *audit_why_name(uint8_t w)
{
	return w < OBS_WHY_COUNT ? obs_why_name((enum obs_why)w) : "unknown";
}

const char *audit_cp_reason_name(uint8_t r)
{
	switch (r) {
	case AUDIT_CP_PERIODIC:
		return "periodic";
	case AUDIT_CP_ROTATE:
		return "rotate";
	case AUDIT_CP_SHUTDOWN:
		return "shutdown";
	default:
		return "unknown";
	}
}

const char *audit_type_name(uint8_t t)
{
	switch (t) {
	case AUDIT_REC_HEADER:
		return "header";
	case AUDIT_REC_DECISION:
		return "decision";
	case AUDIT_REC_CHECKPOINT:
		return "checkpoint";
	case AUDIT_REC_START:
		return "start";
	case AUDIT_REC_NOTE:
		return "note";
	default:
		return "unknown";
	}
}

const char *audit_damage_name(enum audit_damage d)
{
	switch (d) {
	case AUDIT_INTACT:
		return "intact";
	case AUDIT_EDITED:
		return "edited";
	case AUDIT_MISSING:
		return "missing";
	case AUDIT_REORDERED:
		return "reordered";
	case AUDIT_TRUNCATED:
		return "truncated";
	case AUDIT_CHECKPOINT_SIG:
		return "checkpoint signature bad";
	case AUDIT_SPLICED:
		return "spliced";
	case AUDIT_UNREADABLE:
		return "unreadable";
	}
	return "unknown";
}

void audit_fmt_time(int64_t ns, char out[static 40])
{
	struct tm tm;
	time_t s = (time_t)(ns / 1000000000);
	unsigned us = (unsigned)((ns % 1000000000) / 1000);
	if (ns < 0 || gmtime_r(&s, &tm) == NULL || tm.tm_year < 0 || tm.tm_year > 9999 - 1900) {
		(void)snprintf(out, 40, "(time %lld)", (long long)ns);
		return;
	}
	/* every field is in range here: 27 characters */
	(void)snprintf(out, 40, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ",
		       (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
		       (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
		       (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, us % 1000000u);
}

/* ---- file names --------------------------------------------------------------------- */

void audit_file_name(uint64_t idx, int64_t wall_ns, char out[static 64])
{
	struct tm tm;
	time_t s = (time_t)(wall_ns / 1000000000);
	if (gmtime_r(&s, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	(void)snprintf(out, 64, "audit-%010llu-%04d%02d%02d.log", (unsigned long long)idx,
		       (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday);
}

static int digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int audit_file_index(const char *name, uint64_t *idx)
{
	/* audit-NNNNNNNNNN-YYYYMMDD.log[.gz]: fixed widths, so no parsing surprises */
	size_t n = strlen(name);
	if (n != 29 && n != 32)
		return -1;
	if (strncmp(name, "audit-", 6) != 0 || !digits(name + 6, 10) || name[16] != '-' ||
	    !digits(name + 17, 8) || strncmp(name + 25, ".log", 4) != 0 ||
	    (n == 32 && strcmp(name + 29, ".gz") != 0))
		return -1;
	uint64_t v = 0;
	for (size_t i = 6; i < 16; i++)
		v = v * 10 + (uint64_t)(name[i] - '0');
	*idx = v;
	return 0;
}

/* ---- scanning one file (the writer's restart, doctor) --------------------------------- */

static void scan_record(struct audit_scan *s, const struct audit_rec *rec)
{
	s->last_seq = rec->seq;
	s->after_last = 0;
	s->last_type = rec->type;
	s->last_reason = 0;
	switch (rec->type) {
	case AUDIT_REC_HEADER:
		if (s->frames == 1) {
			s->has_header = 1;
			memcpy(s->log_id, rec->u.hdr.log_id, AUDIT_LOG_ID_LEN);
			s->file_index = rec->u.hdr.file_index;
		}
		s->last_wall_ns = rec->u.hdr.wall_ns;
		break;
	case AUDIT_REC_DECISION:
		s->last_wall_ns = rec->u.dec.wall_ns;
		break;
	case AUDIT_REC_CHECKPOINT:
		s->last_reason = rec->u.cp.reason;
		s->last_wall_ns = rec->u.cp.wall_ns;
		break;
	case AUDIT_REC_START:
		s->last_wall_ns = rec->u.st.wall_ns;
		break;
	case AUDIT_REC_NOTE:
		s->last_wall_ns = rec->u.note.last_ns;
		if (rec->u.note.kind == AUDIT_NOTE_LOST) {
			s->lost += rec->u.note.total;
			s->lost_notes++;
			s->last_error_ns = rec->u.note.last_ns;
		} else {
			s->dropped += rec->u.note.total;
		}
		break;
	}
}

int audit_scan_file(const uint8_t *p, size_t n, struct audit_scan *s)
{
	struct audit_frame fr;
	struct audit_rec rec;
	size_t off = AUDIT_MAGIC_LEN;
	memset(s, 0, sizeof(*s));
	if (p == NULL || n < AUDIT_MAGIC_LEN || memcmp(p, AUDIT_MAGIC, AUDIT_MAGIC_LEN) != 0)
		return KMS_ERR_FORMAT;
	for (;;) {
		int r = audit_frame_at(p, n, off, &fr);
		if (r == KMS_ERR_INCOMPLETE) {
			s->torn = n - off;
			break;
		}
		if (r != KMS_OK) {
			/* a damaged length: nothing after it can be framed */
			s->damaged = 1;
			s->torn = n - off;
			break;
		}
		s->frames++;
		s->has_last = 1;
		memcpy(s->last_hash, fr.hash, 32);
		if (!fr.hash_ok)
			s->damaged = 1;
		if (audit_body_parse(fr.body, fr.body_len, &rec) == KMS_OK)
			scan_record(s, &rec);
		else {
			s->damaged = 1;
			s->after_last++;
		}
		off += fr.size;
	}
	return KMS_OK;
}
