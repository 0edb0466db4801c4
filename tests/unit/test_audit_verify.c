/* SPDX-License-Identifier: Apache-2.0 */
/* The audit format and verifier on logs built record by record: links, damage kinds, gaps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "p11kms/cfg.h"
#include "p11kms/kms_log.h"
#include "tu_audit.h"

static const uint8_t seed[32] = { 7, 7, 7, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9 };

/*
 * A clean two-run log in one file: header(#0) start(#1) 10 decisions (#2..#11,
 * guard 11..20) checkpoint(#12) shutdown(#13) start(#14) 5 decisions (#15..#19,
 * guard 21..25) shutdown checkpoint(#20).
 */
static void clean_log(struct tu_log *l, struct tu_img *img, const uint8_t *key)
{
	tu_log_init(l, key);
	tu_log_file(l, img, 64, 0);
	tu_log_start(l, "c-1", 10, 1);
	for (uint64_t s = 11; s <= 20; s++)
		tu_log_dec(l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_cp(l, AUDIT_CP_PERIODIC);
	tu_log_cp(l, AUDIT_CP_SHUTDOWN);
	tu_log_start(l, "c-1", 20, 1);
	for (uint64_t s = 21; s <= 25; s++)
		tu_log_dec(l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_cp(l, AUDIT_CP_SHUTDOWN);
}

static void expect(const struct audit_report *rep, enum audit_damage d, const char *where,
		   const char *what)
{
	if (rep->damage != d || (where && !strstr(rep->where, where)) ||
	    (what && !strstr(rep->what, what))) {
		tu_notes_print();
		fail_msg("expected %s at \"%s\" (\"%s\"), got %s: %s: %s", audit_damage_name(d),
			 where ? where : "", what ? what : "", audit_damage_name(rep->damage),
			 rep->where, rep->what);
	}
}

static void test_frames_and_bodies(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_frame fr;
	struct audit_rec rec;
	(void)state;
	clean_log(&l, &img, seed);
	assert_int_equal(audit_frame_at(img.p, img.n, AUDIT_MAGIC_LEN, &fr), KMS_OK);
	assert_true(fr.hash_ok);
	assert_int_equal(audit_body_parse(fr.body, fr.body_len, &rec), KMS_OK);
	assert_int_equal(rec.type, AUDIT_REC_HEADER);
	assert_int_equal(rec.u.hdr.key_alg, 1);
	assert_memory_equal(rec.u.hdr.log_id, l.log_id, 16);
	size_t off = AUDIT_MAGIC_LEN + fr.size;
	assert_int_equal(audit_frame_at(img.p, img.n, off, &fr), KMS_OK);
	assert_int_equal(audit_body_parse(fr.body, fr.body_len, &rec), KMS_OK);
	assert_int_equal(rec.type, AUDIT_REC_START);
	struct audit_start_chain sc;
	audit_start_chain_at(&rec.u.st, 0, &sc);
	assert_int_equal(sc.guard_seq, 10);
	assert_int_equal(sc.n_conns, 1);
	off += fr.size;
	assert_int_equal(audit_frame_at(img.p, img.n, off, &fr), KMS_OK);
	assert_int_equal(audit_body_parse(fr.body, fr.body_len, &rec), KMS_OK);
	assert_int_equal(rec.type, AUDIT_REC_DECISION);
	assert_int_equal(rec.u.dec.guard_seq, 11);
	assert_int_equal(rec.u.dec.decision, OBS_DEC_SIGNED);
	assert_int_equal(rec.u.dec.chain_id.n, 3);
	size_t blen = fr.body_len;
	/* a cut frame is the tail; a damaged length is not */
	assert_int_equal(audit_frame_at(img.p, off + 20, off, &fr), KMS_ERR_INCOMPLETE);
	assert_int_equal(audit_frame_at(img.p, off + 5, off, &fr), KMS_ERR_INCOMPLETE);
	img.p[off + 1] ^= 0x40;
	assert_int_equal(audit_frame_at(img.p, img.n, off, &fr), KMS_ERR_FORMAT);
	img.p[off + 1] ^= 0x40;
	/* padding must be zero, and nothing may follow a body */
	uint8_t *b = img.p + off + AUDIT_FRAME_PREFIX;
	assert_int_equal(audit_body_parse(b, blen, &rec), KMS_OK);
	b[44 + 64 + 5] = 1; /* the pad after block_hash_len */
	assert_int_equal(audit_body_parse(b, blen, &rec), KMS_ERR_FORMAT);
	b[44 + 64 + 5] = 0;
	assert_int_equal(audit_body_parse(b, blen - 1, &rec), KMS_ERR_FORMAT);
	b[1] = 2; /* a body version from the future */
	assert_int_equal(audit_body_parse(b, blen, &rec), KMS_ERR_UNSUPPORTED);
	tu_img_free(&img);
}

static void test_file_names(void **state)
{
	char name[64];
	uint64_t idx = 0;
	(void)state;
	audit_file_name(12, 1700000000000000000ll, name);
	assert_string_equal(name, "audit-0000000012-20231114.log");
	assert_int_equal(audit_file_index(name, &idx), 0);
	assert_int_equal(idx, 12);
	assert_int_equal(audit_file_index("audit-0000000012-20231114.log.gz", &idx), 0);
	assert_int_equal(audit_file_index("audit-000000001x-20231114.log", &idx), -1);
	assert_int_equal(audit_file_index("audit-0000000012-20231114.log.bz2", &idx), -1);
	assert_int_equal(audit_file_index("audit.status", &idx), -1);
}

static void test_clean_and_counts(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_report rep;
	(void)state;
	clean_log(&l, &img, seed);
	struct audit_verify_opts o = { .pin_key = l.pub };
	tu_verify(&img, 1, &o, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_int_equal(rep.records, 21);
	assert_int_equal(rep.signed_, 15);
	assert_int_equal(rep.starts, 2);
	assert_int_equal(rep.checkpoints, 3);
	assert_int_equal(rep.checkpoints_signed, 3);
	assert_int_equal(rep.signed_cp_seq, 20);
	assert_true(rep.clean_end);
	/* the head anchors a later check of the same log */
	struct audit_verify_opts a = { .has_anchor = 1, .anchor_seq = 20 };
	memcpy(a.anchor_hash, rep.head, 32);
	tu_verify(&img, 1, &a, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	a.anchor_hash[0] ^= 1;
	tu_verify(&img, 1, &a, &rep);
	expect(&rep, AUDIT_SPLICED, "record #20", "anchored hash");
	a.anchor_seq = 40;
	tu_verify(&img, 1, &a, &rep);
	expect(&rep, AUDIT_MISSING, NULL, "anchored record #40");
	tu_img_free(&img);
}

/*
 * A byte of a record, its length or its hash: "edited", naming that record.
 * Every record; in each, its first 12 bytes (both length fields, type,
 * version, flags), its last byte, and every 31st byte between.
 */
static void test_flip_any_byte(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_report rep;
	size_t off[64], size[64];
	(void)state;
	clean_log(&l, &img, NULL);
	size_t n = tu_frames(&img, off, size, 64);
	assert_int_equal(n, 21);
	for (size_t k = 0; k < n; k++) {
		for (size_t at = 0; at < size[k]; at = at < 12 ? at + 1 : at + 31) {
			char where[32];
			size_t b = at + 31 < size[k] ? at : size[k] - 1;
			img.p[off[k] + b] ^= 0x10;
			tu_verify(&img, 1, NULL, &rep);
			(void)snprintf(where, sizeof(where), "record #%zu ", k);
			expect(&rep, AUDIT_EDITED, where, NULL);
			img.p[off[k] + b] ^= 0x10;
		}
	}
	img.p[2] ^= 1; /* the preamble */
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_EDITED, NULL, "preamble");
	tu_img_free(&img);
}

static void test_delete_swap_truncate(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_report rep;
	size_t off[64], size[64];
	(void)state;
	clean_log(&l, &img, seed);
	uint8_t *orig = malloc(img.n);
	size_t orig_n = img.n;
	assert_non_null(orig);
	memcpy(orig, img.p, img.n);

	tu_delete_frame(&img, 5);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_MISSING, "record #5 ", "#5..#5");

	memcpy(img.p, orig, orig_n);
	img.n = orig_n;
	tu_swap_frames(&img, 7);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_REORDERED, "record #7 ", "comes after record #8");

	/* cut inside the shutdown checkpoint, and at the record boundary before it */
	memcpy(img.p, orig, orig_n);
	size_t n = tu_frames(&img, off, size, 64);
	img.n = off[n - 1] + 10;
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_TRUNCATED, "record #19", "incomplete record");
	img.n = off[n - 1];
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_TRUNCATED, "record #19", "without a shutdown checkpoint");
	/* the same bytes while a daemon writes the file: the tail, not damage */
	struct audit_verify_opts live = { .live = 1 };
	tu_verify(&img, 1, &live, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_true(tu_note_has("the daemon is writing this log"));
	/* and with the state file: how many signatures the cut took */
	struct audit_state_seq st = { "c-1", 25 };
	struct audit_verify_opts so = { .state = &st, .n_state = 1 };
	img.n = off[n - 3];
	tu_verify(&img, 1, &so, &rep);
	expect(&rep, AUDIT_TRUNCATED, NULL, "count 2 new signatures");
	/* bytes after a shutdown checkpoint */
	memcpy(img.p, orig, orig_n);
	img.n = orig_n;
	img.p = realloc(img.p, orig_n + 3);
	assert_non_null(img.p);
	memcpy(img.p + orig_n, "\x01\x02\x03", 3);
	img.n = orig_n + 3;
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_EDITED, NULL, "follow the shutdown checkpoint");
	free(orig);
	tu_img_free(&img);
}

/*
 * Every prefix of a log: never intact with the state file at hand; without it
 * only where the first run stopped cleanly (a cut there cannot be told from
 * the end of the log: docs/audit.md); always intact while a daemon writes it.
 */
static void test_every_prefix(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_report rep;
	size_t off[64], size[64];
	(void)state;
	clean_log(&l, &img, NULL); /* unsigned: thousands of runs stay cheap under valgrind */
	size_t full = img.n;
	assert_int_equal(tu_frames(&img, off, size, 64), 21);
	struct audit_verify_opts live = { .live = 1 };
	struct audit_state_seq st = { "c-1", 25 };
	struct audit_verify_opts so = { .state = &st, .n_state = 1 };
	/* every length within 3 bytes of a frame boundary (and of the file's start), and every
	 * 23rd length between: the places where a cut changes meaning */
	for (size_t len = 0, f = 0; len < full; len++) {
		while (f < 21 && off[f] + 3 < len)
			f++;
		int near = len < 16 || (f < 21 && off[f] <= len + 3);
		if (!near && len % 23 != 0)
			continue;
		img.n = len;
		tu_verify(&img, 1, &so, &rep);
		if (rep.damage == AUDIT_INTACT)
			fail_msg("prefix of %zu bytes of %zu verified as intact", len, full);
		tu_verify(&img, 1, NULL, &rep);
		if ((rep.damage == AUDIT_INTACT) != (len == off[14]))
			fail_msg("prefix of %zu bytes of %zu: %s", len, full,
				 audit_damage_name(rep.damage));
		/* the writer never appends after a shutdown checkpoint: a new start opens a
		 * new file; this log keeps both runs in one to have one image */
		if (len > 200 && !(len > off[14] && len < off[15])) {
			tu_verify(&img, 1, &live, &rep);
			if (rep.damage != AUDIT_INTACT)
				fail_msg("live prefix of %zu bytes: %s: %s", len,
					 audit_damage_name(rep.damage), rep.what);
		}
	}
	img.n = full;
	tu_img_free(&img);
}

static void test_checkpoint_signatures(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_report rep;
	size_t len;
	uint8_t other[32];
	(void)state;
	clean_log(&l, &img, seed);
	/* the signature's bytes changed: the record's hash says so first */
	uint8_t *b = tu_frame_body(&img, 12, &len);
	b[len - 1] ^= 1;
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_EDITED, "record #12 ", NULL);
	/* ... and with every hash after it recomputed: the signature itself fails */
	tu_rechain(&img, 12);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_CHECKPOINT_SIG, "record #12 ", "does not verify");
	b = tu_frame_body(&img, 12, &len);
	b[len - 1] ^= 1;
	tu_rechain(&img, 12);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	/* history rewritten (a decision changed, the chain recomputed): the next signed
	 * checkpoint no longer matches */
	b = tu_frame_body(&img, 4, &len);
	b[44 + 16] ^= 1; /* the height */
	tu_rechain(&img, 4);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_CHECKPOINT_SIG, "record #12 ", NULL);
	tu_img_free(&img);
	/* another key pinned */
	clean_log(&l, &img, seed);
	memcpy(other, l.pub, 32);
	other[0] ^= 1;
	struct audit_verify_opts o = { .pin_key = other };
	tu_verify(&img, 1, &o, &rep);
	expect(&rep, AUDIT_CHECKPOINT_SIG, "record #12 ", "not the pinned key");
	tu_img_free(&img);
	/* an unsigned log: intact alone, refused when a key is pinned */
	clean_log(&l, &img, NULL);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	o.pin_key = other;
	tu_verify(&img, 1, &o, &rep);
	expect(&rep, AUDIT_CHECKPOINT_SIG, NULL, "not signed");
	tu_img_free(&img);
}

/* Three files of one log (rotation), and a second log. */
static void three_files(struct tu_log *l, struct tu_img f[3])
{
	tu_log_init(l, seed);
	tu_log_file(l, &f[0], 64, 0);
	tu_log_start(l, "c-1", 0, 1);
	for (uint64_t s = 1; s <= 5; s++)
		tu_log_dec(l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_cp(l, AUDIT_CP_ROTATE);
	tu_log_file(l, &f[1], 64, 0);
	for (uint64_t s = 6; s <= 10; s++)
		tu_log_dec(l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_cp(l, AUDIT_CP_ROTATE);
	tu_log_file(l, &f[2], 64, 0);
	for (uint64_t s = 11; s <= 12; s++)
		tu_log_dec(l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_cp(l, AUDIT_CP_SHUTDOWN);
}

static void test_files_splice(void **state)
{
	struct tu_log l, m;
	struct tu_img f[3], g[3], set[3];
	struct audit_report rep;
	size_t len, off[64], size[64];
	(void)state;
	three_files(&l, f);
	three_files(&m, g);
	tu_verify(f, 3, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_int_equal(rep.files, 3);
	/* a later file alone: checked from its header on */
	tu_verify(&f[1], 2, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_true(tu_note_has("earlier files are not given"));
	/* another log's file */
	set[0] = f[0];
	set[1] = g[1];
	tu_verify(set, 2, NULL, &rep);
	expect(&rep, AUDIT_SPLICED, NULL, "another log");
	/* a file missing, files out of order */
	set[1] = f[2];
	tu_verify(set, 2, NULL, &rep);
	expect(&rep, AUDIT_MISSING, NULL, "files #1..#1");
	set[0] = f[1];
	set[1] = f[0];
	tu_verify(set, 2, NULL, &rep);
	expect(&rep, AUDIT_REORDERED, NULL, "file #0 comes after file #1");
	/* a file of this log made to look like the next one: its header's link is wrong */
	set[0] = f[0];
	set[1] = f[1];
	uint8_t *b = tu_frame_body(&f[1], 0, &len);
	b[12] ^= 1; /* prev */
	tu_rechain(&f[1], 0);
	tu_verify(set, 2, NULL, &rep);
	expect(&rep, AUDIT_SPLICED, "record #8 ", "does not continue");
	b[12] ^= 1;
	tu_rechain(&f[1], 0);
	/* the end of a rotated file cut off */
	size_t n = tu_frames(&f[0], off, size, 64);
	size_t keep = f[0].n;
	f[0].n = off[n - 1];
	tu_verify(f, 3, NULL, &rep);
	expect(&rep, AUDIT_TRUNCATED, NULL, "its end is cut off");
	/* a crash left part of a record; the next header accounts for it */
	f[0].n = off[n - 1] + 9;
	tu_verify(f, 3, NULL, &rep);
	expect(&rep, AUDIT_TRUNCATED, NULL, NULL);
	f[0].n = keep;
	for (int i = 0; i < 3; i++) {
		tu_img_free(&f[i]);
		tu_img_free(&g[i]);
	}
}

/* A crash: part of a record, then a new file that records it and a new run. */
static void test_crash_tail_recorded(void **state)
{
	struct tu_log l;
	struct tu_img f[2];
	struct audit_report rep;
	(void)state;
	tu_log_init(&l, NULL);
	tu_log_file(&l, &f[0], 8, 0);
	tu_log_start(&l, "c-1", 0, 1);
	for (uint64_t s = 1; s <= 5; s++)
		tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	static const uint8_t torn[11] = { 0x50, 0x01, 0, 0, 0xaf, 0xfe, 0xff, 0xff, 2, 1, 0 };
	f[0].p = realloc(f[0].p, f[0].n + sizeof(torn));
	assert_non_null(f[0].p);
	memcpy(f[0].p + f[0].n, torn, sizeof(torn));
	f[0].n += sizeof(torn);
	tu_log_file(&l, &f[1], 8, sizeof(torn));
	tu_log_start(&l, "c-1", 7, 1); /* 6 and 7 were signed but never written */
	tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, 8, 8);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(f, 2, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_int_equal(rep.gaps_explained, 1);
	assert_true(tu_note_has("11 bytes of an incomplete record"));
	assert_true(tu_note_has("2 new signatures (guard sequence 6..7 first) were not written"));
	/* the next file not accounting for those bytes */
	f[1].p[AUDIT_MAGIC_LEN + AUDIT_FRAME_PREFIX + 44 + 16 + 16] = 0; /* prev_torn */
	tu_rechain(&f[1], 0);
	tu_verify(f, 2, NULL, &rep);
	expect(&rep, AUDIT_EDITED, NULL, "does not account for them");
	tu_img_free(&f[0]);
	tu_img_free(&f[1]);
}

/* Guard sequences: what a crash may lose, what it may not, and what needs a note. */
static void test_gap_rules(void **state)
{
	struct tu_log l;
	struct tu_img img;
	struct audit_report rep;
	(void)state;

	/* 300 lost in a crash: more than the queue (64) + batch_records (64) + two takes of
	 * the writer (2 x 32) + connections (0 others) = 192 */
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	for (uint64_t s = 1; s <= 10; s++)
		tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_start(&l, "c-1", 310, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_MISSING, NULL, "more than a crash loses");
	tu_img_free(&img);

	/* 100 lost: a writer lagging on a loaded machine held that many when it was killed
	 * (CI saw 32 with batch_records 16): within the bound, explained */
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	for (uint64_t s = 1; s <= 10; s++)
		tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_start(&l, "c-1", 110, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_int_equal(rep.gaps_explained, 1);
	assert_true(tu_note_has("100 new signatures (guard sequence 11..110 first) were not "
				"written; a crash loses at most 192"));
	tu_img_free(&img);

	/* a hole inside a run (not at its end): never a crash */
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	for (uint64_t s = 1; s <= 10; s++)
		if (s != 4)
			tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_start(&l, "c-1", 10, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_MISSING, NULL, "sequence 4..4");
	tu_img_free(&img);

	/* ... unless a note says the queue dropped it */
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	for (uint64_t s = 1; s <= 10; s++)
		if (s != 4)
			tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, s, (int64_t)s);
	tu_log_note(&l, 1, "c-1", 1, 4, 4);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_int_equal(rep.dropped, 1);
	assert_true(tu_note_has("queue was full"));
	tu_img_free(&img);

	/* two connections: out of order by one is in flight, not missing */
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 4, 0);
	tu_log_start(&l, "c-1", 0, 2);
	const uint64_t order[] = { 1, 3, 2, 4, 6, 5, 8 };
	for (size_t i = 0; i < 7; i++)
		tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, order[i], 1);
	tu_log_start(&l, "c-1", 8, 2); /* 7 was in flight at the crash */
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_int_equal(rep.gaps_explained, 1);
	tu_img_free(&img);

	/* the state advanced between a clean stop and the next start */
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, 1, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_log_start(&l, "c-1", 3, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, NULL, &rep);
	expect(&rep, AUDIT_MISSING, NULL, "without this audit log");
	/* ... and the state file ahead of a log that stopped cleanly */
	struct audit_state_seq st = { "c-1", 9 };
	struct audit_verify_opts so = { .state = &st, .n_state = 1 };
	tu_img_free(&img);
	tu_log_init(&l, NULL);
	tu_log_file(&l, &img, 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	tu_log_dec(&l, "c-1", OBS_DEC_SIGNED, 1, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	tu_verify(&img, 1, &so, &rep);
	expect(&rep, AUDIT_MISSING, NULL, "8 new signatures");
	st.seq = 1;
	tu_verify(&img, 1, &so, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	/* a re-initialised state is described, not damage */
	st.seq = 0;
	tu_verify(&img, 1, &so, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_true(tu_note_has("went back"));
	tu_img_free(&img);
}

static void test_unfinished_and_foreign(void **state)
{
	struct tu_log l;
	struct tu_img f[3];
	struct audit_report rep;
	(void)state;
	tu_log_init(&l, NULL);
	tu_log_file(&l, &f[0], 64, 0);
	tu_log_start(&l, "c-1", 0, 1);
	tu_log_cp(&l, AUDIT_CP_SHUTDOWN);
	/* a file created by a process killed before it wrote anything */
	memset(&f[1], 0, sizeof(f[1]));
	(void)snprintf(f[1].name, sizeof(f[1].name), "empty");
	tu_verify(f, 2, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL, NULL);
	assert_true(tu_note_has("no complete header"));
	/* something else entirely */
	static uint8_t junk[] = "this is not an audit file at all, just text";
	f[1].p = junk;
	f[1].n = sizeof(junk);
	tu_verify(f, 2, NULL, &rep);
	expect(&rep, AUDIT_UNREADABLE, NULL, "not a p11kms audit file");
	f[1].p = NULL;
	f[1].n = 0;
	tu_verify(&f[1], 1, NULL, &rep);
	expect(&rep, AUDIT_UNREADABLE, NULL, "no audit file");
	tu_img_free(&f[0]);
}

static void test_config_block(void **state)
{
	static const char base[] =
		"chains = ( { id = \"c-1\"; state_file = \"c.state\"; } );\n"
		"keys = ( { chain_ids = [ \"c-1\" ]; softsign = \"k.key\"; } );\n"
		"validators = ( { chain_id = \"c-1\"; addr = \"unix:///tmp/x.sock\"; "
		"protocol_version = \"v0.37\"; } );\n";
	char text[2048], err[CFG_ERR_MAX];
	struct cfg *cfg = NULL;
	(void)state;
	(void)snprintf(text, sizeof(text), "%saudit = { dir = \"aud\"; };\n", base);
	assert_int_equal(cfg_parse_string((const uint8_t *)text, strlen(text), "t", "/srv", &cfg,
					  err, sizeof(err)),
			 KMS_OK);
	assert_true(cfg->audit.enabled);
	assert_string_equal(cfg->audit.dir, "/srv/aud");
	assert_int_equal(cfg->audit.batch_records, 64);
	assert_int_equal(cfg->audit.batch_ms, 200);
	assert_int_equal(cfg->audit.queue, 1024);
	assert_int_equal(cfg->audit.checkpoint_every, 1000);
	assert_int_equal(cfg->audit.rotate_bytes, 64ull << 20);
	assert_true(cfg->audit.rotate_daily);
	assert_false(cfg->audit.fail_closed);
	assert_false(cfg->audit.sign_checkpoints);
	cfg_free(cfg);
	(void)snprintf(text, sizeof(text), "%s", base);
	assert_int_equal(cfg_parse_string((const uint8_t *)text, strlen(text), "t", "/srv", &cfg,
					  err, sizeof(err)),
			 KMS_OK);
	assert_false(cfg->audit.enabled);
	cfg_free(cfg);
	static const char *bad[] = {
		"audit = { };",
		"dir",
		"audit = { dir = \"a\"; batch_ms = 0; };",
		"batch_ms",
		"audit = { dir = \"a\"; queue = 4; };",
		"queue",
		"audit = { dir = \"a\"; rotate = 1; };",
		"unknown key",
		"audit = { dir = \"a\"; sign_checkpoints = true; };",
		"secret_key",
		"audit = \"a\";",
		"must be a group",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i += 2) {
		(void)snprintf(text, sizeof(text), "%s%s\n", base, bad[i]);
		assert_int_equal(cfg_parse_string((const uint8_t *)text, strlen(text), "t", "/srv",
						  &cfg, err, sizeof(err)),
				 KMS_ERR_CONFIG);
		if (strstr(err, bad[i + 1]) == NULL)
			fail_msg("%s: error \"%s\" does not mention %s", bad[i], err, bad[i + 1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_and_bodies),      cmocka_unit_test(test_file_names),
		cmocka_unit_test(test_clean_and_counts),       cmocka_unit_test(test_flip_any_byte),
		cmocka_unit_test(test_delete_swap_truncate),   cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_checkpoint_signatures),  cmocka_unit_test(test_files_splice),
		cmocka_unit_test(test_crash_tail_recorded),    cmocka_unit_test(test_gap_rules),
		cmocka_unit_test(test_unfinished_and_foreign), cmocka_unit_test(test_config_block),
	};
	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
