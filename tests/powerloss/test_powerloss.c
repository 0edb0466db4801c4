/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The power-loss scenarios of issue 15, deterministic, through the dfile ops
 * table and the pl_ model (in process):
 *   - the double sign an independent simulation found: a signer killed
 *     between its pwrite and its fdatasync; the restarted one re-releases the
 *     stored signature without writing; a power cut tears the record; a
 *     prevote for another block is then signed at the same height and round;
 *   - an fdatasync EIO: signing stops, and the next start re-persists;
 *   - a torn newest record is refused, naming both records and the repair.
 */
/* realpath() is XSI: the state path must be canonical to match /proc/self/fd links. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "pl_model.h"
#include "pl_shim.h"
#include "test_guard_util.h"
#include "testutil.h"

#define CHAIN "haqq_11235-1"

struct fx {
	char *dir;
	char path[PATH_MAX];
	struct pl_disk *d;
	uint64_t rng;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char real[PATH_MAX];
	kms_log_set_quiet(1);
	f->dir = tu_mkdtemp();
	assert_non_null(realpath(f->dir, real));
	int n = snprintf(f->path, sizeof(f->path), "%s/state.bin", real);
	assert_true(n > 0 && (size_t)n < sizeof(f->path));
	assert_int_equal(guard_state_init(f->path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	f->d = pl_new(f->path);
	assert_non_null(f->d);
	f->rng = 15;
	pl_shim_install(f->d, &f->rng);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pl_shim_uninstall();
	pl_free(f->d);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct tg_msg prevote(int64_t h, int block)
{
	struct tg_msg m = { GUARD_STEP_PREVOTE, h, 0, 0, block, 1700000000 + h, 0, CHAIN };
	return m;
}

static int sign(struct guard *g, const struct tg_msg *m, struct guard_result *res)
{
	uint8_t sb[512];
	size_t n = tg_sign_bytes(m, sb, sizeof(sb));
	assert_true(n > 0);
	struct guard_request req = { { m->h, (int32_t)m->r, m->step }, sb, n };
	return guard_sign(g, &req, tg_fake_sign, NULL, res);
}

/* A process ends (killed, or after its crash): its guard goes, the page cache stays. */
static void end_process(struct guard *g)
{
	guard_free(g);
	pl_shim_restart();
}

/*
 * What a start after the power cut may do: open with at least the released
 * record, or refuse (pointing at `state repair`). *behind: it opened behind it.
 */
static struct guard *start_after_cut(struct fx *f, const struct guard_hrs *released, int *behind)
{
	struct guard *g = NULL;
	tu_log_capture_start();
	int r = tg_open(f->path, CHAIN, &g);
	int names_repair = tu_log_contains("state repair");
	tu_log_capture_stop();
	if (r != KMS_OK) {
		assert_true(names_repair);
		return NULL;
	}
	struct guard_hrs last;
	guard_last(g, &last);
	*behind = last.height < released->height ||
		  (last.height == released->height && last.round < released->round) ||
		  (last.height == released->height && last.round == released->round &&
		   last.step < released->step);
	if (*behind)
		print_message("the state %lld/%d/%d is BEHIND the released %lld/%d/%d\n",
			      (long long)last.height, last.round, (int)last.step,
			      (long long)released->height, released->round, (int)released->step);
	return g;
}

/* The double-sign sequence of the issue (5 in 50 cycles before the fix). */
static void test_issue_double_sign(void **state)
{
	struct fx *f = *state;
	struct guard *g = NULL;
	struct guard_result res, x;
	struct tg_msg mx = prevote(10, 1), my = prevote(10, 2);

	/* A: killed after the pwrite of X's record, before its fdatasync */
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	assert_int_equal(guard_make_durable(g), KMS_OK); /* as `p11kms start` does */
	pl_shim_arm(PL_EV_SYNC, 1, PL_FAULT_CRASH_BEFORE);
	assert_int_not_equal(sign(g, &mx, &res), KMS_OK); /* never released */
	assert_true(pl_shim_dead());
	end_process(g);

	/* B: the node asks again for X: the stored signature goes out */
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	assert_int_equal(sign(g, &mx, &x), KMS_OK);
	assert_int_equal(x.reused, 1);
	struct guard_hrs released = { 10, 0, GUARD_STEP_PREVOTE };
	end_process(g);

	/* the power cut tears whatever was not durable */
	struct pl_cut_report rep;
	assert_int_equal(pl_cut(f->d, &f->rng, PL_KEEP_TEAR, &rep), 0);
	print_message("power cut: %s (kept %u, lost %u, torn %u)\n", pl_outcome_name(rep.outcome),
		      rep.writes_kept, rep.writes_lost, rep.writes_torn);

	/* C: a prevote for another block at the same height and round */
	int behind = 0;
	g = start_after_cut(f, &released, &behind);
	if (g == NULL)
		return; /* refused: nothing can be signed until the operator repairs it */
	int r = sign(g, &my, &res);
	if (r == KMS_OK)
		fail_msg("DOUBLE SIGN: prevote 10/0 released for block 1 and then block 2");
	assert_int_equal(r, KMS_ERR_DOUBLE_SIGN);
	assert_false(behind);
	/* and the released X is still answered with its signature */
	assert_int_equal(sign(g, &mx, &res), KMS_OK);
	assert_memory_equal(res.signature, x.signature, 64);
	guard_free(g);
}

/* An fdatasync EIO: signing stops at once; the next start makes the state durable again. */
static void test_fdatasync_eio(void **state)
{
	struct fx *f = *state;
	struct guard *g = NULL;
	struct guard_result res, y;
	struct tg_msg mx = prevote(5, 1), my = prevote(6, 1), mz = prevote(7, 1);

	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	assert_int_equal(sign(g, &mx, &res), KMS_OK);
	pl_shim_arm(PL_EV_SYNC, 1, PL_FAULT_EIO);
	assert_int_equal(sign(g, &my, &res), KMS_ERR_STATE_IO);
	assert_true(pl_shim_eio_fired());
	assert_true(guard_failed(g));
	/* fail-closed: nothing more is signed, a later height neither */
	assert_int_equal(sign(g, &mz, &res), KMS_ERR_STATE_IO);
	assert_int_equal(sign(g, &my, &res), KMS_ERR_STATE_IO);
	end_process(g);

	/* the restart sees Y in the page cache, and must write it out before serving it */
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	assert_int_equal(sign(g, &my, &y), KMS_OK);
	assert_int_equal(y.reused, 1);
	if (pl_shim_count(PL_EV_WRITE) == 0 || pl_shim_count(PL_EV_SYNC) == 0)
		fail_msg("the start served a state it had not made durable (%u writes, %u syncs)",
			 pl_shim_count(PL_EV_WRITE), pl_shim_count(PL_EV_SYNC));
	struct guard_hrs released = { 6, 0, GUARD_STEP_PREVOTE };
	end_process(g);

	for (int how = PL_KEEP_LOST; how <= PL_KEEP_TEAR; how++) {
		struct pl_cut_report rep;
		assert_int_equal(pl_cut(f->d, &f->rng, (enum pl_keep)how, &rep), 0);
		int behind = 0;
		g = start_after_cut(f, &released, &behind);
		assert_non_null(g); /* nothing was left to tear */
		assert_false(behind);
		end_process(g);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_issue_double_sign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fdatasync_eio, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
