/* SPDX-License-Identifier: Apache-2.0 */
/* The in-process power-loss layer: a dfile ops table in front of the pl_ model (pl_shim.h). */
#include "pl_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11kms/dfile.h"
#include "pl_journal.h"

static struct {
	struct pl_disk *d;
	uint64_t *rng;
	struct dfile_ops ops;
	const struct dfile_ops *real;
	unsigned count[PL_EV_COUNT];
	enum pl_event arm_ev;
	unsigned arm_at;
	enum pl_fault arm;
	int dead, eio_fired;
	char temp_synced[PATH_MAX]; /* the temp file last synced (its data is durable) */
} S;

static enum pl_target fd_target(int fd, char *buf, size_t cap)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, cap - 1);
	if (n <= 0)
		return PL_T_OTHER;
	buf[n] = '\0';
	return pl_target_of(pl_path(S.d), buf);
}

/* Counts an event; returns the fault to apply to it (NONE if it just happens). */
static enum pl_fault event(enum pl_event ev)
{
	S.count[ev]++;
	if (S.arm != PL_FAULT_NONE && ev == S.arm_ev && S.count[ev] == S.arm_at) {
		enum pl_fault f = S.arm;
		S.arm = PL_FAULT_NONE;
		if (f != PL_FAULT_EIO)
			S.dead = 1;
		else
			S.eio_fired = 1;
		return f;
	}
	return PL_FAULT_NONE;
}

static int died(void)
{
	errno = EIO;
	return -1;
}

/* A write of the file or a temp file: real, reported, maybe cut short by the crash. */
static ssize_t do_write(int fd, const void *p, size_t n, off_t off, int positional)
{
	char path[PATH_MAX];
	enum pl_target t = fd_target(fd, path, sizeof(path));
	if (t != PL_T_FILE && t != PL_T_TEMP)
		return positional ? S.real->pwrite(fd, p, n, off) : S.real->write(fd, p, n);
	if (S.dead)
		return died();
	if (!positional)
		off = lseek(fd, 0, SEEK_CUR);
	enum pl_fault f = event(PL_EV_WRITE);
	size_t land = n;
	if (f == PL_FAULT_CRASH_BEFORE)
		return died();
	if (f == PL_FAULT_CRASH_MID)
		land = n > 1 ? 1 + (size_t)(pl_rand(S.rng) % (n - 1)) : 0;
	ssize_t w = land == 0 ? 0 : S.real->pwrite(fd, p, land, off);
	if (w < 0)
		return w;
	if (t == PL_T_FILE)
		pl_write(S.d, (uint64_t)off, p, n); /* what was asked; the cut reads what landed */
	if (f == PL_FAULT_CRASH_MID)
		return died();
	if (!positional)
		(void)lseek(fd, off + w, SEEK_SET);
	return w;
}

static ssize_t shim_pwrite(int fd, const void *p, size_t n, off_t off)
{
	return do_write(fd, p, n, off, 1);
}

static ssize_t shim_write(int fd, const void *p, size_t n)
{
	return do_write(fd, p, n, 0, 0);
}

static int do_sync(int fd, int (*real)(int))
{
	char path[PATH_MAX];
	enum pl_target t = fd_target(fd, path, sizeof(path));
	if (t == PL_T_OTHER)
		return real(fd);
	if (S.dead)
		return died();
	enum pl_fault f = event(t == PL_T_DIR ? PL_EV_DIRSYNC : PL_EV_SYNC);
	if (f == PL_FAULT_CRASH_BEFORE || f == PL_FAULT_CRASH_MID)
		return died();
	if (t == PL_T_DIR) {
		pl_dirsync(S.d);
		return 0;
	}
	if (t == PL_T_TEMP) {
		if (f == PL_FAULT_EIO)
			return died();
		snprintf(S.temp_synced, sizeof(S.temp_synced), "%s", path);
		return 0;
	}
	pl_sync(S.d, f != PL_FAULT_EIO);
	return f == PL_FAULT_EIO ? died() : 0;
}

static int shim_fdatasync(int fd)
{
	return do_sync(fd, S.real->fdatasync);
}

static int shim_fsync(int fd)
{
	return do_sync(fd, S.real->fsync);
}

/* link/rename of a temp file onto the name: the name now holds that file. */
static int do_link(const char *from, const char *to, int (*real)(const char *, const char *))
{
	if (pl_target_of(pl_path(S.d), to) != PL_T_FILE)
		return real(from, to);
	if (S.dead)
		return died();
	enum pl_fault f = event(PL_EV_LINK);
	if (f != PL_FAULT_NONE && f != PL_FAULT_EIO)
		return died();
	int synced = strcmp(from, S.temp_synced) == 0;
	uint8_t buf[65536];
	ssize_t n = pl_read_head(from, buf, sizeof(buf));
	int r = real(from, to);
	if (r == 0 && n >= 0)
		pl_link(S.d, buf, (size_t)n, synced);
	return r;
}

static int shim_link(const char *from, const char *to)
{
	return do_link(from, to, S.real->link);
}

static int shim_rename(const char *from, const char *to)
{
	return do_link(from, to, S.real->rename);
}

void pl_shim_install(struct pl_disk *d, uint64_t *rng)
{
	memset(&S, 0, sizeof(S));
	S.d = d;
	S.rng = rng;
	dfile_set_ops(NULL);
	S.real = dfile_ops();
	S.ops = *S.real;
	S.ops.pwrite = shim_pwrite;
	S.ops.write = shim_write;
	S.ops.fdatasync = shim_fdatasync;
	S.ops.fsync = shim_fsync;
	S.ops.link = shim_link;
	S.ops.rename = shim_rename;
	dfile_set_ops(&S.ops);
}

void pl_shim_uninstall(void)
{
	dfile_set_ops(NULL);
	memset(&S, 0, sizeof(S));
}

void pl_shim_arm(enum pl_event ev, unsigned at, enum pl_fault fault)
{
	S.arm_ev = ev;
	S.arm_at = S.count[ev] + at;
	S.arm = fault;
}

void pl_shim_disarm(void)
{
	S.arm = PL_FAULT_NONE;
}

int pl_shim_dead(void)
{
	return S.dead;
}

int pl_shim_eio_fired(void)
{
	return S.eio_fired;
}

void pl_shim_restart(void)
{
	(void)pl_settle(S.d);
	memset(S.count, 0, sizeof(S.count));
	S.arm = PL_FAULT_NONE;
	S.dead = 0;
	S.eio_fired = 0;
	S.temp_synced[0] = '\0';
}

unsigned pl_shim_count(enum pl_event ev)
{
	return S.count[ev];
}
