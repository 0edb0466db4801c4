/* SPDX-License-Identifier: Apache-2.0 */
/*
 * guard_ at start-up: the permission check on the opened descriptor, the
 * filesystem check, the re-persist of the loaded record, and the fail-closed
 * signal (guard_failed without the chain mutex, OBS_ST_GUARD_FAILED).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard_int.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"
#include "test_guard_util.h"
#include "testutil.h"

#define CHAIN "haqq_11235-1"

struct fx {
	char *dir;
	char *path;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	kms_log_set_quiet(1);
	f->dir = tu_mkdtemp();
	f->path = tu_path(f->dir, "state.bin");
	assert_int_equal(guard_state_init(f->path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	dfile_set_ops(NULL);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

/*
 * A stat() that, once armed, first renames a private decoy over the path it is
 * asked about: the race an attacker with write access to the directory wins
 * against a check by path after open(). Everything else is the real stat.
 */
static const char *swap_from, *swap_to;
int stat(const char *restrict path, struct stat *restrict st)
{
	if (swap_from != NULL && swap_to != NULL && strcmp(path, swap_to) == 0) {
		if (rename(swap_from, swap_to) != 0)
			fail_msg("rename decoy: %s", strerror(errno));
		swap_from = swap_to = NULL;
	}
	return fstatat(AT_FDCWD, path, st, 0);
}

/* The mode checked is the opened file's, not whatever the path names a moment later. */
static void test_perm_checked_on_descriptor(void **state)
{
	struct fx *f = *state;
	struct guard *g = NULL;
	char *decoy = tu_path(f->dir, "decoy.bin");
	assert_int_equal(guard_state_init(decoy, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(chmod(f->path, 0644), 0);
	swap_from = decoy;
	swap_to = f->path;
	tu_log_capture_start();
	int r = guard_open(f->path, CHAIN, &g);
	swap_from = swap_to = NULL;
	assert_true(tu_log_contains("0644"));
	tu_log_capture_stop();
	guard_free(g);
	assert_int_equal(r, KMS_ERR_PERM);
	free(decoy);
}

static struct tg_msg vote(int64_t h, int block)
{
	struct tg_msg m = { GUARD_STEP_PREVOTE, h, 0, 0, block, 1700000000 + h, 0, CHAIN };
	return m;
}

static int sign_with(struct guard *g, const struct tg_msg *m, guard_sign_fn fn, void *ctx,
		     struct guard_result *res)
{
	uint8_t sb[512];
	size_t n = tg_sign_bytes(m, sb, sizeof(sb));
	assert_true(n > 0);
	struct guard_request req = { { m->h, (int32_t)m->r, m->step }, sb, n };
	return guard_sign(g, &req, fn, ctx, res);
}

/* ---- guard_failed() and OBS_ST_GUARD_FAILED ---- */

/* A signer that blocks (holding the chain's mutex, as a hung token would) until released. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int signing, release, polled, failed_seen;
	struct guard *g;
};

static int gated_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	struct gate *gt = ctx;
	pthread_mutex_lock(&gt->mu);
	gt->signing = 1;
	pthread_cond_broadcast(&gt->cv);
	while (!gt->release)
		pthread_cond_wait(&gt->cv, &gt->mu);
	pthread_mutex_unlock(&gt->mu);
	return tg_fake_sign(NULL, msg, len, sig);
}

static void *sign_thread(void *arg)
{
	struct gate *gt = arg;
	struct guard_result res;
	struct tg_msg m = vote(5, 1);
	int r = sign_with(gt->g, &m, gated_sign, gt, &res);
	return (void *)(intptr_t)r;
}

static void *poll_thread(void *arg)
{
	struct gate *gt = arg;
	int f = guard_failed(gt->g);
	pthread_mutex_lock(&gt->mu);
	gt->polled = 1;
	gt->failed_seen = f;
	pthread_cond_broadcast(&gt->cv);
	pthread_mutex_unlock(&gt->mu);
	return NULL;
}

/*
 * Readiness and metrics poll guard_failed() from their own threads: it must
 * answer while a signature is in progress (the chain's mutex held, possibly
 * for the token's whole timeout), never wait for it.
 */
static void test_failed_readable_while_signing(void **state)
{
	struct fx *f = *state;
	struct gate gt = { .signing = 0 };
	pthread_t ts, tp;
	pthread_mutex_init(&gt.mu, NULL);
	pthread_cond_init(&gt.cv, NULL);
	assert_int_equal(tg_open(f->path, CHAIN, &gt.g), KMS_OK);
	assert_int_equal(pthread_create(&ts, NULL, sign_thread, &gt), 0);
	pthread_mutex_lock(&gt.mu);
	while (!gt.signing)
		pthread_cond_wait(&gt.cv, &gt.mu);
	pthread_mutex_unlock(&gt.mu);
	assert_int_equal(pthread_create(&tp, NULL, poll_thread, &gt), 0);
	/* generous: a deadlock detector, not a timing assertion */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	pthread_mutex_lock(&gt.mu);
	int rc = 0;
	while (!gt.polled && rc == 0)
		rc = pthread_cond_timedwait(&gt.cv, &gt.mu, &until);
	int polled = gt.polled;
	gt.release = 1;
	pthread_cond_broadcast(&gt.cv);
	pthread_mutex_unlock(&gt.mu);
	void *ret;
	pthread_join(ts, &ret);
	pthread_join(tp, NULL);
	assert_int_equal((int)(intptr_t)ret, KMS_OK);
	assert_true(polled); /* answered while the signature was in progress */
	assert_int_equal(gt.failed_seen, 0);
	guard_free(gt.g);
	pthread_mutex_destroy(&gt.mu);
	pthread_cond_destroy(&gt.cv);
}

struct seen_status {
	int n_failed;
	char chain[GUARD_MAX_CHAIN_ID + 1];
	int err;
};

static void status_sink(void *ctx, const struct obs_status *st)
{
	struct seen_status *s = ctx;
	if (st->kind != OBS_ST_GUARD_FAILED)
		return;
	s->n_failed++;
	snprintf(s->chain, sizeof(s->chain), "%s", st->chain_id ? st->chain_id : "");
	s->err = st->err;
}

/* A failed persist emits OBS_ST_GUARD_FAILED once, and guard_failed() reports it. */
static void test_failed_status_emitted(void **state)
{
	struct fx *f = *state;
	struct seen_status seen = { 0 };
	struct guard *g = NULL;
	struct guard_result res;
	struct dfile_ops ops = *dfile_ops();
	ops.fdatasync = tg_eio_fdatasync;
	assert_int_equal(obs_status_sink_add(status_sink, &seen), KMS_OK);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	struct tg_msg m = vote(1, 1);
	assert_int_equal(sign_with(g, &m, tg_fake_sign, NULL, &res), KMS_OK);
	assert_int_equal(seen.n_failed, 0);
	assert_false(guard_failed(g));
	*tg_eio_flag() = 1;
	dfile_set_ops(&ops);
	m = vote(2, 1);
	assert_int_equal(sign_with(g, &m, tg_fake_sign, NULL, &res), KMS_ERR_STATE_IO);
	*tg_eio_flag() = 0;
	assert_true(guard_failed(g));
	assert_int_equal(seen.n_failed, 1);
	assert_string_equal(seen.chain, CHAIN);
	assert_int_equal(seen.err, KMS_ERR_STATE_IO);
	/* refusals while fail-closed are not new failures */
	m = vote(3, 1);
	assert_int_equal(sign_with(g, &m, tg_fake_sign, NULL, &res), KMS_ERR_STATE_IO);
	assert_int_equal(seen.n_failed, 1);
	dfile_set_ops(NULL);
	guard_free(g);
	obs_sink_clear();
}

/* The start-up write-back failing: start refuses (the daemon exits), the guard is closed. */
static void test_make_durable_fails_closed(void **state)
{
	struct fx *f = *state;
	struct seen_status seen = { 0 };
	struct guard *g = NULL;
	struct guard_result res;
	struct dfile_ops ops = *dfile_ops();
	ops.fdatasync = tg_eio_fdatasync;
	assert_int_equal(obs_status_sink_add(status_sink, &seen), KMS_OK);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	*tg_eio_flag() = 1;
	dfile_set_ops(&ops);
	tu_log_capture_start();
	assert_int_equal(guard_make_durable(g), KMS_ERR_STATE_IO);
	assert_true(tu_log_contains("could not be made durable before serving"));
	tu_log_capture_stop();
	*tg_eio_flag() = 0;
	dfile_set_ops(NULL);
	assert_true(guard_failed(g));
	assert_int_equal(seen.n_failed, 1);
	struct tg_msg m = vote(1, 1);
	assert_int_equal(sign_with(g, &m, tg_fake_sign, NULL, &res), KMS_ERR_STATE_IO);
	assert_int_equal(guard_make_durable(g), KMS_ERR_STATE_IO);
	assert_int_equal(seen.n_failed, 1);
	guard_free(g);
	obs_sink_clear();
	/* the next start makes it durable (the disk is back) and serves */
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	assert_int_equal(guard_make_durable(g), KMS_OK);
	assert_int_equal(guard_make_durable(g), KMS_OK); /* idempotent */
	assert_int_equal(sign_with(g, &m, tg_fake_sign, NULL, &res), KMS_OK);
	guard_free(g);
}

/* ---- the filesystem under the state file ---- */

static long fake_fs_type;
static int fake_fstatfs(int fd, struct statfs *st)
{
	int r = fstatfs(fd, st);
	if (r == 0)
		st->f_type = fake_fs_type;
	return r;
}

/*
 * A filesystem that cannot keep the state across a power cut (tmpfs), or keep
 * a second host out (NFS), or outlive its container (overlayfs): start
 * refuses, explaining; allow_volatile_state lets tests and benchmarks use it,
 * with a warning. Injected through the ops table: the test does not depend on
 * what /tmp is on this machine.
 */
static void test_volatile_fs_refused(void **state)
{
	struct fx *f = *state;
	static const struct {
		long type;
		const char *name;
	} bad[] = {
		{ 0x01021994, "tmpfs" }, { 0x858458f6, "ramfs" }, { 0x794c7630, "overlayfs" },
		{ 0x6969, "nfs" },	 { 0xFF534D42, "cifs" },  { 0x65735546, "fuse" },
		{ 0x01021997, "9p" },
	};
	struct dfile_ops ops = *dfile_ops();
	ops.fstatfs = fake_fstatfs;
	dfile_set_ops(&ops);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct guard *g = NULL;
		fake_fs_type = bad[i].type;
		tu_log_capture_start();
		assert_int_equal(guard_open(f->path, CHAIN, &g), KMS_ERR_UNSUPPORTED);
		assert_null(g);
		assert_true(tu_log_contains(bad[i].name));
		assert_true(tu_log_contains("allow_volatile_state"));
		tu_log_capture_stop();
		/* allowed: opens, says so */
		struct guard_opts o = { .allow_volatile_state = 1 };
		tu_log_capture_start();
		assert_int_equal(guard_open_opts(f->path, CHAIN, &o, &g), KMS_OK);
		assert_true(tu_log_contains("allow_volatile_state = true"));
		tu_log_capture_stop();
		guard_free(g);
	}
	/* doctor's check: the same verdict, for a file or (not there yet) its directory */
	char msg[512], *missing = tu_path(f->dir, "none.state");
	fake_fs_type = 0x01021994;
	assert_int_equal(guard_check_fs(f->path, 0, msg, sizeof(msg)), KMS_ERR_UNSUPPORTED);
	assert_non_null(strstr(msg, "on tmpfs: it lives in memory"));
	assert_int_equal(guard_check_fs(missing, 0, msg, sizeof(msg)), KMS_ERR_UNSUPPORTED);
	assert_int_equal(guard_check_fs(missing, 1, msg, sizeof(msg)), KMS_OK);
	assert_non_null(strstr(msg, "accepted: allow_volatile_state = true"));
	fake_fs_type = 0xEF53;
	assert_int_equal(guard_check_fs(missing, 0, msg, sizeof(msg)), KMS_OK);
	assert_string_equal(msg, "on ext4");
	free(missing);
	assert_int_equal(guard_check_fs("/nonexistent-dir/x.state", 0, msg, sizeof(msg)),
			 KMS_ERR_NOT_FOUND);
	/* ext4, xfs, btrfs: accepted */
	static const long good[] = { 0xEF53, 0x58465342, 0x9123683E };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct guard *g = NULL;
		fake_fs_type = good[i];
		assert_int_equal(guard_open(f->path, CHAIN, &g), KMS_OK);
		guard_free(g);
	}
	dfile_set_ops(NULL);
}

/* The real thing, where this machine has it: a state file on /dev/shm when that is a tmpfs. */
static void test_real_tmpfs(void **state)
{
	(void)state;
	struct statfs sf;
	if (statfs("/dev/shm", &sf) != 0 || (unsigned long)sf.f_type != 0x01021994ul ||
	    access("/dev/shm", W_OK) != 0) {
		print_message(
			"no writable tmpfs at /dev/shm here: covered by the injected cases\n");
		return;
	}
	char dir[] = "/dev/shm/p11kms-fs-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *p = tu_path(dir, "s.state");
	struct guard *g = NULL;
	struct guard_opts allow = { .allow_volatile_state = 1 };
	assert_int_equal(guard_state_init(p, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(guard_open(p, CHAIN, &g), KMS_ERR_UNSUPPORTED);
	assert_int_equal(guard_open_opts(p, CHAIN, &allow, &g), KMS_OK);
	guard_free(g);
	tu_rmrf(dir);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_perm_checked_on_descriptor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_readable_while_signing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_status_emitted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_make_durable_fails_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_volatile_fs_refused, setup, teardown),
		cmocka_unit_test(test_real_tmpfs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
