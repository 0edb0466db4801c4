/* SPDX-License-Identifier: Apache-2.0 */
/* Audit-log test support: a record-by-record builder, tampering, verification with notes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "audit_int.h"
#include "p11kms/kcrypto.h"
#include "tu_audit.h"

static void img_put(struct tu_img *img, const uint8_t *p, size_t n)
{
	uint8_t *q = realloc(img->p, img->n + n);
	assert_non_null(q);
	memcpy(q + img->n, p, n);
	img->p = q;
	img->n += n;
}

/* Frames body as the next record. */
static void put(struct tu_log *l, struct kbuf *body)
{
	struct kbuf *f = kbuf_new(AUDIT_BODY_MAX + 64);
	assert_non_null(f);
	assert_int_equal(audit_frame_put(f, kbuf_ptr(body), kbuf_len(body), l->hash), KMS_OK);
	img_put(l->img, kbuf_ptr(f), kbuf_len(f));
	l->seq++;
	kbuf_free(f);
	kbuf_free(body);
}

static struct kbuf *body_new(void)
{
	struct kbuf *b = kbuf_new(AUDIT_BODY_MAX);
	assert_non_null(b);
	return b;
}

void tu_log_init(struct tu_log *l, const uint8_t *key_seed)
{
	memset(l, 0, sizeof(*l));
	assert_int_equal(kcrypto_random(l->log_id, sizeof(l->log_id)), KMS_OK);
	if (key_seed != NULL) {
		l->has_key = 1;
		memcpy(l->seed, key_seed, 32);
		assert_int_equal(kcrypto_ed25519_pub_from_seed(l->seed, l->pub), KMS_OK);
	}
	l->file_index = (uint64_t)-1;
}

void tu_log_file(struct tu_log *l, struct tu_img *img, uint32_t batch_records, uint32_t prev_torn)
{
	struct audit_hdr h = { .batch_records = batch_records,
			       .batch_ms = 200,
			       .queue_cap = 64,
			       .checkpoint_every = 100,
			       .prev_torn = prev_torn,
			       .wall_ns = 1700000000000000000ll };
	struct kbuf *b = body_new();
	memset(img, 0, sizeof(*img));
	l->file_index++;
	audit_file_name(l->file_index, h.wall_ns, img->name);
	h.file_index = l->file_index;
	memcpy(h.log_id, l->log_id, 16);
	if (l->has_key) {
		h.key_alg = 1;
		memcpy(h.key, l->pub, 32);
	}
	l->img = img;
	img_put(img, (const uint8_t *)AUDIT_MAGIC, AUDIT_MAGIC_LEN);
	assert_int_equal(audit_enc_header(b, l->seq, l->hash, &h, "testhost", "test"), KMS_OK);
	put(l, b);
}

void tu_log_start(struct tu_log *l, const char *chain, uint64_t base, uint32_t n_conns)
{
	struct kbuf *b = body_new();
	assert_int_equal(audit_enc_start(b, l->seq, l->hash, 1700000000000000000ll, 42, 1), KMS_OK);
	assert_int_equal(audit_enc_start_chain(b, chain, base, 100, 0, 3, n_conns), KMS_OK);
	put(l, b);
}

void tu_log_dec(struct tu_log *l, const char *chain, int decision, uint64_t guard_seq,
		int64_t height)
{
	struct obs_event ev = { .wall_ns = 1700000000000000000ll + (int64_t)l->seq,
				.chain_id = chain,
				.peer = "unix:///test",
				.msg = OBS_MSG_PREVOTE,
				.height = height,
				.step = 2,
				.decision = (enum obs_decision)decision,
				.guard_seq = guard_seq };
	struct kbuf *b = body_new();
	if (decision == OBS_DEC_REFUSED) {
		ev.why = OBS_WHY_REGRESSION;
		ev.code = 2;
		(void)snprintf(ev.detail, sizeof(ev.detail), "height regression");
	}
	assert_int_equal(audit_enc_decision(b, l->seq, l->hash, &ev), KMS_OK);
	put(l, b);
}

void tu_log_cp(struct tu_log *l, int reason)
{
	struct kbuf *b = body_new();
	uint8_t msg[AUDIT_BODY_MAX + 64], sig[64];
	size_t mlen;
	assert_int_equal(audit_enc_checkpoint(b, l->seq, l->hash,
					      l->has_key ? AUDIT_F_CP_SIGNED : 0,
					      1700000000000000000ll, (uint8_t)reason),
			 KMS_OK);
	if (l->has_key) {
		assert_int_equal(audit_cp_message(l->log_id, kbuf_ptr(b), kbuf_len(b), msg,
						  sizeof(msg), &mlen),
				 KMS_OK);
		assert_int_equal(kcrypto_ed25519_sign(l->seed, msg, mlen, sig), KMS_OK);
		assert_int_equal(kbuf_put(b, sig, 64), KMS_OK);
	}
	put(l, b);
}

void tu_log_note(struct tu_log *l, int kind, const char *chain, uint64_t n, uint64_t first,
		 uint64_t last)
{
	struct audit_note nt = { .kind = (uint8_t)kind,
				 .first_ns = 1700000000000000000ll,
				 .last_ns = 1700000000000000001ll,
				 .total = n,
				 .n_signed = n,
				 .n_chains = 1 };
	struct kbuf *b = body_new();
	assert_int_equal(audit_enc_note(b, l->seq, l->hash, &nt), KMS_OK);
	assert_int_equal(audit_enc_note_chain(b, chain, n, first, last), KMS_OK);
	put(l, b);
}

void tu_img_free(struct tu_img *img)
{
	free(img->p);
	img->p = NULL;
	img->n = 0;
}

size_t tu_frames(const struct tu_img *img, size_t *off, size_t *size, size_t cap)
{
	struct audit_frame fr;
	size_t o = AUDIT_MAGIC_LEN, k = 0;
	while (k < cap && audit_frame_at(img->p, img->n, o, &fr) == KMS_OK) {
		off[k] = o;
		size[k++] = fr.size;
		o += fr.size;
	}
	return k;
}

void tu_delete_frame(struct tu_img *img, size_t k)
{
	size_t off[4096], size[4096];
	size_t n = tu_frames(img, off, size, 4096);
	assert_true(k < n);
	memmove(img->p + off[k], img->p + off[k] + size[k], img->n - off[k] - size[k]);
	img->n -= size[k];
}

void tu_swap_frames(struct tu_img *img, size_t k)
{
	size_t off[4096], size[4096];
	size_t n = tu_frames(img, off, size, 4096);
	assert_true(k + 1 < n);
	uint8_t *tmp = malloc(size[k] + size[k + 1]);
	assert_non_null(tmp);
	memcpy(tmp, img->p + off[k + 1], size[k + 1]);
	memcpy(tmp + size[k + 1], img->p + off[k], size[k]);
	memcpy(img->p + off[k], tmp, size[k] + size[k + 1]);
	free(tmp);
}

uint8_t *tu_frame_body(struct tu_img *img, size_t k, size_t *len)
{
	size_t off[4096], size[4096];
	size_t n = tu_frames(img, off, size, 4096);
	if (k >= n) {
		/* a frame whose hash no longer matches is still framed: count it by length */
		fail_msg("frame %zu of %zu", k, n);
	}
	*len = size[k] - AUDIT_FRAME_PREFIX - AUDIT_HASH_LEN;
	return img->p + off[k] + AUDIT_FRAME_PREFIX;
}

void tu_rechain(struct tu_img *img, size_t k)
{
	size_t off[4096], size[4096];
	size_t n = tu_frames(img, off, size, 4096);
	uint8_t h[32];
	for (size_t i = k; i < n; i++) {
		uint8_t *f = img->p + off[i];
		size_t blen = size[i] - AUDIT_FRAME_PREFIX - AUDIT_HASH_LEN;
		if (i > k)
			memcpy(f + AUDIT_FRAME_PREFIX + 12, h, 32); /* the body's prev */
		SHA256(f, AUDIT_FRAME_PREFIX + blen, h);
		memcpy(f + AUDIT_FRAME_PREFIX + blen, h, 32);
	}
}

/* ---- verification with collected notes ---- */

static char notes[64][700];
static size_t n_notes;

static void collect(void *ctx, const char *line)
{
	(void)ctx;
	if (n_notes < 64)
		(void)snprintf(notes[n_notes++], sizeof(notes[0]), "%s", line);
}

int tu_note_has(const char *needle)
{
	for (size_t i = 0; i < n_notes; i++)
		if (strstr(notes[i], needle) != NULL)
			return 1;
	return 0;
}

void tu_notes_print(void)
{
	for (size_t i = 0; i < n_notes; i++)
		print_message("  note: %s\n", notes[i]);
}

void tu_verify(const struct tu_img *imgs, size_t n, const struct audit_verify_opts *o,
	       struct audit_report *rep)
{
	struct audit_verify_opts opts = { 0 };
	struct audit_verify *v = NULL;
	if (o != NULL)
		opts = *o;
	opts.note = collect;
	n_notes = 0;
	assert_int_equal(audit_verify_new(&opts, &v), KMS_OK);
	for (size_t i = 0; i < n; i++)
		if (audit_verify_file(v, imgs[i].name, imgs[i].p, imgs[i].n))
			break;
	audit_verify_end(v, rep);
	audit_verify_free(v);
}

size_t tu_load_dir(const char *dir, struct tu_img *imgs, size_t cap)
{
	char **paths = NULL;
	size_t n = 0, k = 0;
	assert_int_equal(audit_dir_list(dir, &paths, &n), KMS_OK);
	for (size_t i = 0; i < n && k < cap; i++, k++) {
		const char *base = strrchr(paths[i], '/');
		memset(&imgs[k], 0, sizeof(imgs[k]));
		(void)snprintf(imgs[k].name, sizeof(imgs[k].name), "%s",
			       base ? base + 1 : paths[i]);
		assert_int_equal(audit_file_load(paths[i], (size_t)1 << 30, &imgs[k].p, &imgs[k].n),
				 KMS_OK);
	}
	audit_paths_free(paths, n);
	return k;
}
