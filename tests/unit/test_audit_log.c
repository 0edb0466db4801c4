/* SPDX-License-Identifier: Apache-2.0 */
/* The audit writer end to end: restarts, tampering, rotation, drops, write failures, doctor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <zlib.h>

#include "audit_int.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/dfile.h"
#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tu_audit.h"

static char *dir, *adir;
static uint64_t gseq; /* the guard sequence the next new signature gets */

/* ---- fault layer under the writer: the dfile ops table ---- */

static atomic_int fail_writes, hold_sync, in_sync;
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;

static ssize_t t_write(int fd, const void *p, size_t n)
{
	if (atomic_load(&fail_writes)) {
		errno = ENOSPC;
		return -1;
	}
	return write(fd, p, n);
}

static int t_fdatasync(int fd)
{
	pthread_mutex_lock(&hold_mu);
	while (atomic_load(&hold_sync)) {
		atomic_store(&in_sync, 1);
		pthread_cond_wait(&hold_cv, &hold_mu);
	}
	atomic_store(&in_sync, 0);
	pthread_mutex_unlock(&hold_mu);
	return fdatasync(fd);
}

static int t_fsync(int fd)
{
	return fsync(fd);
}

static int t_rename(const char *a, const char *b)
{
	return rename(a, b);
}

static ssize_t t_pwrite(int fd, const void *p, size_t n, off_t off)
{
	return pwrite(fd, p, n, off);
}

static int t_link(const char *a, const char *b)
{
	return link(a, b);
}

static int t_fstatfs(int fd, struct statfs *st)
{
	return fstatfs(fd, st);
}

static const struct dfile_ops fault_ops = { t_fsync, t_fdatasync, t_rename, t_write,
					    t_pwrite, t_link,	   t_fstatfs };

static void release_sync(void)
{
	pthread_mutex_lock(&hold_mu);
	atomic_store(&hold_sync, 0);
	pthread_cond_broadcast(&hold_cv);
	pthread_mutex_unlock(&hold_mu);
}

/* Polls cond for up to 20 s (a loaded machine is slow, never wrong). */
static int wait_for(int (*cond)(void *), void *ctx)
{
	for (int i = 0; i < 4000; i++) {
		if (cond(ctx))
			return 1;
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	return 0;
}

/* ---- fixture ---- */

static int setup(void **state)
{
	(void)state;
	dir = tu_mkdtemp();
	adir = tu_path(dir, "audit");
	gseq = 1;
	atomic_store(&fail_writes, 0);
	atomic_store(&hold_sync, 0);
	dfile_set_ops(&fault_ops);
	return dir != NULL ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	obs_sink_clear();
	dfile_set_ops(NULL);
	tu_rmrf(dir);
	free(dir);
	free(adir);
	return 0;
}

/* A config for chain c-1 with one connection and audit = { dir = "audit"; extra }. */
static struct cfg *config(const char *extra, int tcp)
{
	char text[2048], err[CFG_ERR_MAX];
	struct cfg *cfg = NULL;
	(void)snprintf(
		text, sizeof(text),
		"chains = ( { id = \"c-1\"; state_file = \"c.state\"; } );\n"
		"keys = ( { chain_ids = [ \"c-1\" ]; softsign = \"k.key\"; } );\n"
		"validators = ( { chain_id = \"c-1\"; addr = \"%s\"; protocol_version = \"v0.37\";"
		" %s } );\naudit = { dir = \"audit\"; %s };\n",
		tcp ? "tcp://127.0.0.1:1" : "unix:///tmp/p11kms-audit-test.sock",
		tcp ? "secret_key = \"id.key\";" : "", extra);
	int r = cfg_parse_string((const uint8_t *)text, strlen(text), "test", dir, &cfg, err,
				 sizeof(err));
	if (r != KMS_OK)
		fail_msg("config: %s", err);
	return cfg;
}

/* n decisions through obs_emit: every seventh refused, every fifth returned stored. */
static void emit(size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct obs_event ev = { .wall_ns = obs_wall_ns(),
					.mono_ns = obs_mono_ns(),
					.chain_id = "c-1",
					.peer = "unix:///tmp/node.sock",
					.msg = OBS_MSG_PRECOMMIT,
					.height = (int64_t)gseq,
					.step = 3,
					.decision = OBS_DEC_SIGNED,
					.slot = "pkcs11:token=t?module-path=/x.so",
					.latency_ns = 250000 };
		if (i % 7 == 6) {
			ev.decision = OBS_DEC_REFUSED;
			ev.why = OBS_WHY_REGRESSION;
			ev.code = 2;
			ev.guard_seq = gseq - 1;
			(void)snprintf(ev.detail, sizeof(ev.detail), "height regression");
		} else if (i % 5 == 4) {
			ev.decision = OBS_DEC_STORED;
			ev.guard_seq = gseq - 1;
		} else {
			ev.guard_seq = gseq++;
		}
		obs_emit(&ev);
	}
}

/*
 * Each run starts from guard sequence 1: there is no state file here, so the
 * start records say 0 and the verifier sees a re-initialised state each time.
 */
static struct audit_log *start(struct cfg *cfg, struct slot *ident)
{
	struct audit_log *a = NULL;
	gseq = 1;
	assert_int_equal(audit_start(cfg, ident, &a), KMS_OK);
	assert_non_null(a);
	return a;
}

static void stop(struct audit_log *a)
{
	obs_sink_clear();
	audit_close(a);
}

static void expect(const struct audit_report *rep, enum audit_damage d, const char *what)
{
	if (rep->damage != d || (what != NULL && strstr(rep->what, what) == NULL)) {
		tu_notes_print();
		fail_msg("expected %s (\"%s\"), got %s: %s: %s", audit_damage_name(d),
			 what ? what : "", audit_damage_name(rep->damage), rep->where, rep->what);
	}
}

static void free_imgs(struct tu_img *imgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tu_img_free(&imgs[i]);
}

/* Loads the audit directory (at most cap files) and verifies it; returns the file count. */
static size_t verify_dir(struct tu_img *imgs, size_t cap, const struct audit_verify_opts *o,
			 struct audit_report *rep)
{
	size_t n = tu_load_dir(adir, imgs, cap);
	tu_verify(imgs, n, o, rep);
	return n;
}

/* ---- tests ---- */

/* Two runs (a restart continues the chain in a new file), then damage to what they wrote. */
static void test_runs_and_tampering(void **state)
{
	struct tu_img imgs[8];
	struct audit_report rep;
	struct audit_counters c;
	(void)state;
	struct cfg *cfg = config("batch_records = 8; checkpoint_every = 50;", 0);
	struct audit_log *a = start(cfg, NULL);
	assert_true(audit_dir_live(adir, NULL));
	emit(120);
	audit_counters_get(a, &c);
	stop(a);
	assert_false(audit_dir_live(adir, NULL));
	a = start(cfg, NULL);
	struct audit_log *b = NULL;
	assert_int_equal(audit_start(cfg, NULL, &b), KMS_ERR_LOCKED); /* one writer per directory */
	stop(a);
	a = start(cfg, NULL);
	emit(30);
	stop(a);
	cfg_free(cfg);

	size_t n = verify_dir(imgs, 8, NULL, &rep);
	assert_int_equal(n, 3);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_int_equal(rep.starts, 3);
	assert_int_equal(rep.signed_ + rep.stored + rep.refused, 150);
	assert_int_equal(rep.refused, 17 + 4);
	assert_true(rep.clean_end);
	assert_int_equal(c.queued, 120);

	/* flip one byte in the middle of the first file */
	imgs[0].p[imgs[0].n / 2] ^= 0x01;
	tu_verify(imgs, n, NULL, &rep);
	expect(&rep, AUDIT_EDITED, NULL);
	imgs[0].p[imgs[0].n / 2] ^= 0x01;
	/* delete a record, swap two */
	struct tu_img copy = imgs[2];
	copy.p = malloc(imgs[2].n);
	assert_non_null(copy.p);
	memcpy(copy.p, imgs[2].p, imgs[2].n);
	tu_delete_frame(&imgs[2], 5);
	tu_verify(imgs, n, NULL, &rep);
	expect(&rep, AUDIT_MISSING, "are not in the log");
	memcpy(imgs[2].p, copy.p, copy.n);
	imgs[2].n = copy.n;
	tu_swap_frames(&imgs[2], 10);
	tu_verify(imgs, n, NULL, &rep);
	expect(&rep, AUDIT_REORDERED, "comes after");
	/* cut the tail off the last file */
	memcpy(imgs[2].p, copy.p, copy.n);
	imgs[2].n = copy.n - 40;
	tu_verify(imgs, n, NULL, &rep);
	expect(&rep, AUDIT_TRUNCATED, "without a shutdown checkpoint");
	imgs[2].n = copy.n;
	/* splice: the first two files in the wrong order, the middle one missing */
	struct tu_img two[2] = { imgs[1], imgs[0] };
	tu_verify(two, 2, NULL, &rep);
	expect(&rep, AUDIT_REORDERED, "file #0 comes after file #1");
	two[0] = imgs[0];
	two[1] = imgs[2];
	tu_verify(two, 2, NULL, &rep);
	expect(&rep, AUDIT_MISSING, "files #1..#1");
	tu_img_free(&copy);
	free_imgs(imgs, n);
}

/* Checkpoints signed through the identity key's slot (softsign), checked without the node. */
static void test_signed_checkpoints(void **state)
{
	struct tu_img imgs[4];
	struct audit_report rep;
	struct slot *id = NULL;
	uint8_t seed[32], pub[32], other[32];
	(void)state;
	memset(seed, 0x3c, sizeof(seed));
	char *kp = tu_path(dir, "id.key");
	assert_int_equal(keyfile_write_seed(kp, seed), KMS_OK);
	assert_int_equal(slot_open_softsign(kp, NULL, &id), KMS_OK);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, pub), KMS_OK);
	struct cfg *cfg = config("sign_checkpoints = true; checkpoint_every = 20;", 1);
	struct audit_log *a = start(cfg, id);
	emit(70);
	stop(a);
	struct audit_verify_opts o = { .pin_key = pub };
	size_t n = verify_dir(imgs, 4, &o, &rep);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_true(rep.checkpoints >= 4);
	assert_int_equal(rep.checkpoints_signed, rep.checkpoints);
	assert_int_equal(rep.signed_cp_seq, rep.last_seq);
	assert_memory_equal(rep.key, pub, 32);
	memcpy(other, pub, 32);
	other[5] ^= 0x80;
	o.pin_key = other;
	tu_verify(imgs, n, &o, &rep);
	expect(&rep, AUDIT_CHECKPOINT_SIG, "pinned");
	free_imgs(imgs, n);
	/* a config asking for signatures without an identity is refused at start */
	struct audit_log *b = NULL;
	assert_int_equal(audit_start(cfg, NULL, &b), KMS_ERR_CONFIG);
	cfg_free(cfg);
	slot_free(id);
	slot_shutdown();
	free(kp);
}

static int file_count_at_least_2(void *ctx)
{
	(void)ctx;
	char **p = NULL;
	size_t n = 0;
	if (audit_dir_list(adir, &p, &n) != KMS_OK)
		return 0;
	audit_paths_free(p, n);
	return n >= 2;
}

static struct audit_log *cur;

static int all_written(void *ctx)
{
	struct audit_counters c;
	(void)ctx;
	audit_counters_get(cur, &c);
	return c.written == c.queued;
}

static int all_durable_or_lost(void *ctx)
{
	struct audit_counters c;
	(void)ctx;
	audit_counters_get(cur, &c);
	return c.durable + c.lost == c.queued;
}

static int all_durable(void *ctx)
{
	struct audit_counters c;
	(void)ctx;
	audit_counters_get(cur, &c);
	return c.durable == c.queued;
}

static void gzip_file(const char *path)
{
	struct tu_img img;
	char gz[4096];
	memset(&img, 0, sizeof(img));
	assert_int_equal(audit_file_load(path, (size_t)1 << 30, &img.p, &img.n), KMS_OK);
	(void)snprintf(gz, sizeof(gz), "%s.gz", path);
	gzFile f = gzopen(gz, "wb");
	assert_non_null(f);
	assert_int_equal(gzwrite(f, img.p, (unsigned)img.n), (int)img.n);
	assert_int_equal(gzclose(f), Z_OK);
	assert_int_equal(unlink(path), 0);
	tu_img_free(&img);
}

/* Rotation by size; the old file compressed; the chain still verifies, and continues. */
static void test_rotation_and_gzip(void **state)
{
	struct tu_img imgs[8];
	struct audit_report rep;
	char **paths = NULL;
	size_t np = 0;
	(void)state;
	struct cfg *cfg = config("queue = 8192;", 0);
	cfg->audit.rotate_bytes = 48 << 10; /* the config counts MiB; 48 KiB keeps this quick */
	cur = start(cfg, NULL);
	for (int i = 0; i < 50 && !file_count_at_least_2(NULL); i++) {
		emit(100);
		assert_true(wait_for(all_written, NULL)); /* keeps the queue short: no drops */
	}
	assert_true(file_count_at_least_2(NULL));
	stop(cur);
	struct audit_log *a;
	assert_int_equal(audit_dir_list(adir, &paths, &np), KMS_OK);
	assert_true(np >= 2);
	gzip_file(paths[0]);
	audit_paths_free(paths, np);
	a = start(cfg, NULL); /* resumes after the newest file, not the compressed one */
	emit(10);
	stop(a);
	cfg_free(cfg);
	size_t n = verify_dir(imgs, 8, NULL, &rep);
	assert_true(n >= 3);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_int_equal(rep.starts, 2);
	assert_int_equal(rep.dropped, 0);
	assert_int_equal(audit_dir_list(adir, &paths, &np), KMS_OK);
	assert_non_null(strstr(paths[0], ".log.gz"));
	audit_paths_free(paths, np);
	free_imgs(imgs, n);
}

static int writer_held(void *ctx)
{
	(void)ctx;
	return atomic_load(&in_sync);
}

/* A full queue drops (never blocks) and the log says which signatures it lost. */
static void test_queue_full_drops(void **state)
{
	struct tu_img imgs[4];
	struct audit_report rep;
	struct audit_counters c;
	(void)state;
	struct cfg *cfg = config("queue = 16; batch_records = 4; batch_ms = 60000;", 0);
	struct audit_log *a = start(cfg, NULL);
	atomic_store(&hold_sync, 1);
	emit(4); /* the writer syncs after 4 records and waits there */
	assert_true(wait_for(writer_held, NULL));
	emit(100);
	audit_counters_get(a, &c);
	assert_true(c.dropped >= 100 - 16);
	release_sync();
	stop(a);
	cfg_free(cfg);
	/* the dropped ones are the newest: the state file's sequence is what counts them */
	struct audit_state_seq st = { "c-1", gseq - 1 };
	struct audit_verify_opts so = { .state = &st, .n_state = 1 };
	size_t n = verify_dir(imgs, 4, &so, &rep);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_int_equal(rep.dropped, c.dropped);
	assert_true(tu_note_has("because the queue was full"));
	assert_int_equal(rep.signed_ + rep.stored + rep.refused + c.dropped, 104);
	/* without the note, the state's sequence shows signatures that are not recorded */
	size_t off[512], size[512], k = tu_frames(&imgs[0], off, size, 512), note = k;
	for (size_t i = 0; i < k; i++) {
		size_t len;
		if (tu_frame_body(&imgs[0], i, &len)[0] == AUDIT_REC_NOTE)
			note = i;
	}
	assert_true(note < k);
	tu_delete_frame(&imgs[0], note);
	/* renumber and rehash: a full rewrite, as someone hiding the note would have to do */
	for (size_t i = note; i < k - 1; i++) {
		uint8_t *b = tu_frame_body(&imgs[0], i, &(size_t){ 0 });
		uint64_t s = 0;
		for (int j = 7; j >= 0; j--)
			s = (s << 8) | b[4 + j];
		s--;
		for (int j = 0; j < 8; j++)
			b[4 + j] = (uint8_t)(s >> (8 * j));
	}
	tu_rechain(&imgs[0], note > 0 ? note - 1 : 0);
	tu_verify(imgs, n, &so, &rep);
	expect(&rep, AUDIT_MISSING, "not in the log");
	free_imgs(imgs, n);
}

static atomic_int audit_errors;

static void count_status(void *ctx, const struct obs_status *st)
{
	(void)ctx;
	if (st->kind == OBS_ST_AUDIT_ERROR)
		atomic_fetch_add(&audit_errors, 1);
}

static int is_failed(void *ctx)
{
	struct audit_counters c;
	audit_counters_get(cur, &c);
	return c.failed == *(int *)ctx;
}

struct lines {
	char text[4096];
	int worst;
	const struct cfg *cfg; /* for doctor_says_cannot_write */
};

static void doctor_line(void *ctx, int code, const char *line)
{
	struct lines *l = ctx;
	size_t n = strlen(l->text);
	(void)snprintf(l->text + n, sizeof(l->text) - n, "%d %s\n", code, line);
	if (code != 0)
		l->worst = code;
}

/* doctor reads audit.status, which the writer updates just after it marks itself failed
 * (the flag audit_admit reads comes first): a fresh doctor report, until it shows it. */
static int doctor_says_cannot_write(void *ctx)
{
	struct lines *l = ctx;
	l->text[0] = '\0';
	l->worst = 0;
	audit_doctor(l->cfg, doctor_line, l);
	return l->worst == CMD_EXIT_FAIL && strstr(l->text, "cannot write it") != NULL;
}

/* Writes fail (a full disk): signing is told, doctor shows it, the log recovers and says what it lost. */
static void test_write_failure(void **state)
{
	struct tu_img imgs[8];
	struct audit_report rep;
	struct audit_counters c;
	struct lines dl = { "", 0, NULL };
	char why[256];
	int one = 1, zero = 0;
	(void)state;
	struct cfg *cfg = config("fail_closed = true; batch_records = 2;", 0);
	cur = start(cfg, NULL);
	assert_int_equal(obs_status_sink_add(count_status, NULL), KMS_OK);
	atomic_store(&audit_errors, 0);
	emit(5);
	assert_true(wait_for(all_durable, NULL));
	assert_int_equal(audit_admit(cur, why, sizeof(why)), KMS_OK);
	atomic_store(&fail_writes, 1);
	emit(5);
	assert_true(wait_for(is_failed, &one));
	assert_true(atomic_load(&audit_errors) >= 1);
	assert_int_equal(audit_admit(cur, why, sizeof(why)), KMS_ERR_REFUSED);
	assert_non_null(strstr(why, "cannot be written"));
	dl.cfg = cfg;
	if (!wait_for(doctor_says_cannot_write, &dl))
		fail_msg("doctor said:\n%s", dl.text);
	emit(5); /* lost while failing */
	atomic_store(&fail_writes, 0);
	assert_true(wait_for(is_failed, &zero));
	assert_true(wait_for(all_durable_or_lost, NULL));
	assert_int_equal(audit_admit(cur, why, sizeof(why)), KMS_OK);
	emit(5);
	audit_counters_get(cur, &c);
	stop(cur);
	cfg_free(cfg);
	assert_true(c.lost >= 5);
	assert_true(c.write_errors >= 1);
	size_t n = verify_dir(imgs, 8, NULL, &rep);
	assert_true(n >= 2);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_int_equal(rep.lost, c.lost);
	assert_true(tu_note_has("because writing the log failed"));
	free_imgs(imgs, n);
}

/* fail_closed: a writer that cannot keep up stops new signatures; nothing signed is dropped. */
static void test_fail_closed_bounds(void **state)
{
	struct tu_img imgs[4];
	struct audit_report rep;
	struct audit_counters c;
	char why[256];
	size_t admitted = 0, refused = 0;
	(void)state;
	struct cfg *cfg = config("fail_closed = true; queue = 32; batch_records = 4;", 0);
	struct audit_log *a = start(cfg, NULL);
	atomic_store(&hold_sync, 1);
	for (int i = 0; i < 200; i++) {
		if (audit_admit(a, why, sizeof(why)) == KMS_OK) {
			struct obs_event ev = { .wall_ns = obs_wall_ns(),
						.chain_id = "c-1",
						.msg = OBS_MSG_PREVOTE,
						.step = 2,
						.decision = OBS_DEC_SIGNED,
						.guard_seq = gseq++ };
			obs_emit(&ev);
			admitted++;
		} else {
			struct obs_event ev = { .wall_ns = obs_wall_ns(),
						.chain_id = "c-1",
						.msg = OBS_MSG_PREVOTE,
						.step = 2,
						.decision = OBS_DEC_REFUSED,
						.why = OBS_WHY_AUDIT,
						.code = 6 };
			(void)snprintf(ev.detail, sizeof(ev.detail), "%s", why);
			obs_emit(&ev);
			refused++;
		}
	}
	/* nothing is synced while the writer is held: 2 x batch_records + one connection */
	assert_int_equal(admitted, 2 * 4 + 1);
	assert_int_equal(refused, 200 - admitted);
	release_sync();
	audit_counters_get(a, &c);
	stop(a);
	cfg_free(cfg);
	size_t n = verify_dir(imgs, 4, NULL, &rep);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_int_equal(rep.signed_, admitted);
	/* what the queue dropped were refusals, never a released signature */
	assert_false(tu_note_has("new signatures, guard sequence"));
	free_imgs(imgs, n);
}

/* A crash: the newest file ends in part of a record, another is empty; the log goes on. */
static void test_resume_after_crash(void **state)
{
	struct tu_img imgs[8];
	struct audit_report rep;
	char **paths = NULL, empty[4096];
	size_t np = 0;
	(void)state;
	struct cfg *cfg = config("", 0);
	struct audit_log *a = start(cfg, NULL);
	emit(20);
	stop(a);
	assert_int_equal(audit_dir_list(adir, &paths, &np), KMS_OK);
	assert_int_equal(np, 1);
	/* the shutdown checkpoint never made it, part of a record did */
	struct tu_img f;
	memset(&f, 0, sizeof(f));
	assert_int_equal(audit_file_load(paths[0], (size_t)1 << 20, &f.p, &f.n), KMS_OK);
	size_t off[64], size[64], k = tu_frames(&f, off, size, 64);
	tu_write_file(paths[0], f.p, off[k - 1] + 13, 0600);
	(void)snprintf(empty, sizeof(empty), "%s/audit-0000000001-20200101.log", adir);
	tu_write_file(empty, "", 0, 0600);
	audit_paths_free(paths, np);
	tu_img_free(&f);
	a = start(cfg, NULL);
	emit(3);
	stop(a);
	cfg_free(cfg);
	size_t n = verify_dir(imgs, 8, NULL, &rep);
	assert_int_equal(n, 3);
	expect(&rep, AUDIT_INTACT, NULL);
	assert_true(tu_note_has("13 bytes of an incomplete record"));
	assert_true(tu_note_has("no complete header"));
	assert_int_equal(rep.starts, 2);
	free_imgs(imgs, n);
}

/* A clock standing one second before midnight UTC until the test moves it on. */
static atomic_llong fake_now;

static int64_t fake_clock(void)
{
	return atomic_load(&fake_now);
}

/* Daily rotation: the first record of a new UTC day goes into a new file. */
static void test_daily_rotation(void **state)
{
	struct tu_img imgs[4];
	struct audit_report rep;
	(void)state;
	atomic_store(&fake_now, 1735689599000000000ll); /* 2024-12-31T23:59:59Z */
	audit_set_wall_clock(fake_clock);
	struct cfg *cfg = config("rotate_daily = true;", 0);
	cur = start(cfg, NULL);
	emit(5);
	assert_true(wait_for(all_written, NULL));
	atomic_store(&fake_now, 1735689601000000000ll); /* 2025-01-01T00:00:01Z */
	emit(5);
	assert_true(wait_for(all_written, NULL));
	stop(cur);
	audit_set_wall_clock(NULL);
	cfg_free(cfg);
	size_t n = verify_dir(imgs, 4, NULL, &rep);
	assert_int_equal(n, 2);
	assert_string_equal(imgs[0].name, "audit-0000000000-20241231.log");
	assert_string_equal(imgs[1].name, "audit-0000000001-20250101.log");
	expect(&rep, AUDIT_INTACT, NULL);
	assert_int_equal(rep.signed_ + rep.stored + rep.refused, 10);
	free_imgs(imgs, n);
}

static void test_doctor(void **state)
{
	struct lines dl = { "", 0, NULL };
	(void)state;
	struct cfg *cfg = config("", 0);
	audit_doctor(cfg, doctor_line, &dl);
	assert_non_null(strstr(dl.text, "not there yet"));
	struct audit_log *a = start(cfg, NULL);
	emit(3);
	memset(&dl, 0, sizeof(dl));
	audit_doctor(cfg, doctor_line, &dl);
	if (dl.worst != 0 || strstr(dl.text, "written by the running daemon") == NULL)
		fail_msg("doctor said:\n%s", dl.text);
	stop(a);
	memset(&dl, 0, sizeof(dl));
	audit_doctor(cfg, doctor_line, &dl);
	if (dl.worst != 0 || strstr(dl.text, "ended by a clean stop") == NULL)
		fail_msg("doctor said:\n%s", dl.text);
	assert_int_equal(chmod(adir, 0770), 0);
	memset(&dl, 0, sizeof(dl));
	audit_doctor(cfg, doctor_line, &dl);
	assert_int_equal(dl.worst, CMD_EXIT_PERM);
	struct audit_log *b = NULL;
	assert_int_equal(audit_start(cfg, NULL, &b), KMS_ERR_PERM);
	cfg_free(cfg);
	cfg = config("", 0);
	cfg->audit.enabled = 0;
	memset(&dl, 0, sizeof(dl));
	audit_doctor(cfg, doctor_line, &dl);
	assert_non_null(strstr(dl.text, "not configured"));
	cfg_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_runs_and_tampering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signed_checkpoints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_and_gzip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_full_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_closed_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daily_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doctor, setup, teardown),
	};
	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
