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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard_int.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_perm_checked_on_descriptor, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
