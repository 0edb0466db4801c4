/* SPDX-License-Identifier: Apache-2.0 */
/* dfile_: permission refusals, reads, atomic writes and injected I/O failures. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/dfile.h"
#include "testutil.h"

struct fx {
	char *dir;
	char *path;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = tu_mkdtemp();
	f->path = tu_path(f->dir, "key.json");
	tu_log_capture_start();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dfile_set_ops(NULL);
	tu_log_capture_stop();
	tu_rmrf(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

/* Number of entries in dir other than . and .. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static void assert_file(const char *path, const char *want)
{
	struct kbuf *b = NULL;

	assert_int_equal(dfile_read(path, 1 << 20, &b), KMS_OK);
	assert_int_equal(kbuf_len(b), strlen(want));
	assert_memory_equal(kbuf_ptr(b), want, strlen(want));
	kbuf_free(b);
}

static void test_perm_refusals(void **state)
{
	struct fx *f = *state;
	static const unsigned modes[] = { 0644, 0640, 0604, 0660, 0606, 0610 };
	struct kbuf *b = (struct kbuf *)1;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		char want[64];

		tu_write_file(f->path, "secret", 6, modes[i]);
		snprintf(want, sizeof(want), "has mode %04o", modes[i]);
		assert_int_equal(dfile_check_private(f->path), KMS_ERR_PERM);
		assert_true(tu_log_contains(want));
		assert_true(tu_log_contains(f->path));
		assert_true(tu_log_contains("chmod 600"));
		assert_int_equal(dfile_read_private(f->path, 100, &b), KMS_ERR_PERM);
		assert_null(b);
		tu_log_capture_start();
	}
	tu_write_file(f->path, "secret", 6, 0600);
	assert_int_equal(dfile_check_private(f->path), KMS_OK);
	tu_write_file(f->path, "secret", 6, 0400);
	assert_int_equal(dfile_check_private(f->path), KMS_OK);
	assert_int_equal(dfile_read_private(f->path, 100, &b), KMS_OK);
	assert_int_equal(kbuf_len(b), 6);
	assert_memory_equal(kbuf_ptr(b), "secret", 6);
	kbuf_free(b);
	/* A directory is not a private file. */
	assert_int_equal(dfile_check_private(f->dir), KMS_ERR_PERM);
}

static void test_read_errors(void **state)
{
	struct fx *f = *state;
	struct kbuf *b = NULL;
	char *missing = tu_path(f->dir, "missing");
	uint8_t big[10000];

	assert_int_equal(dfile_check_private(missing), KMS_ERR_NOT_FOUND);
	assert_int_equal(dfile_read_private(missing, 10, &b), KMS_ERR_NOT_FOUND);
	assert_true(tu_log_contains(missing));
	free(missing);
	memset(big, 'x', sizeof(big));
	tu_write_file(f->path, big, sizeof(big), 0600);
	assert_int_equal(dfile_read(f->path, sizeof(big) - 1, &b), KMS_ERR_TOO_LARGE);
	assert_null(b);
	assert_true(tu_log_contains("size=10000"));
	assert_int_equal(dfile_read(f->path, sizeof(big), &b), KMS_OK);
	assert_int_equal(kbuf_len(b), sizeof(big));
	assert_memory_equal(kbuf_ptr(b), big, sizeof(big));
	kbuf_free(b);
	tu_write_file(f->path, "", 0, 0600);
	assert_int_equal(dfile_read(f->path, 0, &b), KMS_OK);
	assert_int_equal(kbuf_len(b), 0);
	kbuf_free(b);
}

static void test_write_atomic(void **state)
{
	struct fx *f = *state;
	struct stat st;

	assert_int_equal(dfile_write_atomic(f->path, "one", 3, 0600), KMS_OK);
	assert_file(f->path, "one");
	assert_int_equal(dfile_write_atomic(f->path, "second", 6, 0600), KMS_OK);
	assert_file(f->path, "second");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(count_entries(f->dir), 1);
	/* Mode is exactly what was asked for, whatever the umask. */
	assert_int_equal(dfile_write_atomic(f->path, "pub", 3, 0644), KMS_OK);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	/* Empty content is a valid file. */
	assert_int_equal(dfile_write_atomic(f->path, NULL, 0, 0600), KMS_OK);
	assert_file(f->path, "");
	/* A missing directory fails and names the path. */
	{
		char *bad = tu_path(f->dir, "nodir/file");

		assert_int_equal(dfile_write_atomic(bad, "x", 1, 0600), KMS_ERR_NOT_FOUND);
		assert_true(tu_log_contains("nodir/file.tmp-"));
		free(bad);
	}
}

static void test_create_atomic(void **state)
{
	struct fx *f = *state;

	assert_int_equal(dfile_create_atomic(f->path, "first", 5, 0600), KMS_OK);
	assert_file(f->path, "first");
	assert_int_equal(dfile_create_atomic(f->path, "other", 5, 0600), KMS_ERR_EXISTS);
	assert_true(tu_log_contains(f->path));
	assert_file(f->path, "first");
	assert_int_equal(count_entries(f->dir), 1);
}

/* Injected failures (the sqlite SimulateIOError idea). */
static int fail_fsync_calls;
static int fail_fsync(int fd)
{
	(void)fd;
	fail_fsync_calls++;
	errno = EIO;
	return -1;
}

static int fail_rename(const char *a, const char *b)
{
	(void)a;
	(void)b;
	errno = EXDEV;
	return -1;
}

static ssize_t fail_write(int fd, const void *p, size_t n)
{
	(void)fd;
	(void)p;
	(void)n;
	errno = ENOSPC;
	return -1;
}

/* Writes one byte at a time and EINTR every other call: write_full must cope. */
static int short_calls;
static ssize_t short_write(int fd, const void *p, size_t n)
{
	if (short_calls++ % 2 == 0) {
		errno = EINTR;
		return -1;
	}
	return write(fd, p, n > 0 ? 1 : 0);
}

static void check_injected(struct fx *f, const struct dfile_ops *ops, const char *logword)
{
	assert_int_equal(dfile_write_atomic(f->path, "old", 3, 0600), KMS_OK);
	tu_log_capture_start();
	dfile_set_ops(ops);
	assert_int_not_equal(dfile_write_atomic(f->path, "new content", 11, 0600), KMS_OK);
	dfile_set_ops(NULL);
	/* Target untouched, temp file gone, the step logged with the path. */
	assert_file(f->path, "old");
	assert_int_equal(count_entries(f->dir), 1);
	if (!tu_log_contains(logword))
		fail_msg("no log line containing \"%s\"", logword);
	assert_true(tu_log_contains(f->path));
}

static void test_injected_failures(void **state)
{
	struct fx *f = *state;
	struct dfile_ops ops;

	ops = *dfile_ops();
	ops.fsync = fail_fsync;
	fail_fsync_calls = 0;
	check_injected(f, &ops, "fsync failed");
	assert_int_equal(fail_fsync_calls, 1);

	ops = *dfile_ops();
	ops.rename = fail_rename;
	check_injected(f, &ops, "rename failed");

	ops = *dfile_ops();
	ops.write = fail_write;
	check_injected(f, &ops, "write failed");
	assert_true(tu_log_contains("No space left on device"));

	/* create_atomic cleans up too. */
	ops = *dfile_ops();
	ops.write = fail_write;
	dfile_set_ops(&ops);
	{
		char *p2 = tu_path(f->dir, "new.json");

		assert_int_not_equal(dfile_create_atomic(p2, "x", 1, 0600), KMS_OK);
		assert_int_equal(access(p2, F_OK), -1);
		free(p2);
	}
	dfile_set_ops(NULL);
	assert_int_equal(count_entries(f->dir), 1);
}

static void test_write_full_partial(void **state)
{
	struct fx *f = *state;
	struct dfile_ops ops = *dfile_ops();

	(void)state;
	ops.write = short_write;
	short_calls = 0;
	dfile_set_ops(&ops);
	assert_int_equal(dfile_write_atomic(f->path, "partial writes", 14, 0600), KMS_OK);
	dfile_set_ops(NULL);
	assert_file(f->path, "partial writes");
	assert_int_equal(short_calls, 28);
	assert_ptr_not_equal(dfile_ops(), &ops);
}

static void test_fsync_dir(void **state)
{
	struct fx *f = *state;
	char *missing = tu_path(f->dir, "no/such/file");

	assert_int_equal(dfile_fsync_dir(f->path), KMS_OK);
	assert_int_equal(dfile_fsync_dir("relative-name"), KMS_OK);
	assert_int_equal(dfile_fsync_dir(missing), KMS_ERR_SYSTEM);
	free(missing);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_perm_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_injected_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_full_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync_dir, setup, teardown),
	};

	/* Tests check modes exactly: a restrictive umask must not interfere. */
	umask(022);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
