/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD interposer for the power-loss run across processes: around the
 * real p11kms binary, it journals every write, sync and link of one file
 * (PL_TARGET, absolute and canonical; its dfile temp files and directory
 * count as events of the same file) to PL_JOURNAL (pl_journal.h), and can
 * kill the process at a chosen event or fail a sync with EIO (PL_FAULT).
 * Syncs of the file are not passed to the disk: the harness's model decides
 * what a power cut keeps. Everything else goes to libc unchanged.
 */
/* RTLD_NEXT (dlfcn.h) is a GNU extension: this file is Linux test code. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "pl_journal.h"

enum ev { EV_WRITE, EV_SYNC, EV_LINK, EV_DIRSYNC, EV_COUNT };
enum how { HOW_NONE, HOW_MID, HOW_BEFORE, HOW_EIO };

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*sync_fn)(int);
typedef int (*link_fn)(const char *, const char *);

static struct {
	pwrite_fn pwrite, pwrite64;
	write_fn write;
	sync_fn fdatasync, fsync;
	link_fn link, rename;
	char target[PATH_MAX];
	int jfd;
	enum ev fault_ev;
	unsigned fault_at;
	enum how fault_how;
	unsigned count[EV_COUNT];
	uint64_t rng;
	char temp_synced[PATH_MAX];
	pthread_mutex_t mu;
} P = { .jfd = -1, .mu = PTHREAD_MUTEX_INITIALIZER };

static void *next_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p == NULL)
		abort();
	return p;
}

static void parse_fault(const char *s)
{
	static const char *const evs[] = { "write", "sync", "link", "dirsync" };
	char ev[16], how[16];
	unsigned at;
	if (s == NULL || sscanf(s, "%15[a-z]:%u:%15[a-z]", ev, &at, how) != 3)
		return;
	for (int i = 0; i < EV_COUNT; i++)
		if (strcmp(ev, evs[i]) == 0)
			P.fault_ev = (enum ev)i;
	P.fault_at = at;
	P.fault_how = strcmp(how, "mid") == 0	 ? HOW_MID :
		      strcmp(how, "before") == 0 ? HOW_BEFORE :
		      strcmp(how, "eio") == 0	 ? HOW_EIO :
						   HOW_NONE;
}

__attribute__((constructor)) static void pl_init(void)
{
	if (P.write != NULL)
		return;
	P.pwrite = (pwrite_fn)next_sym("pwrite");
	P.pwrite64 = (pwrite_fn)next_sym("pwrite64");
	P.write = (write_fn)next_sym("write");
	P.fdatasync = (sync_fn)next_sym("fdatasync");
	P.fsync = (sync_fn)next_sym("fsync");
	P.link = (link_fn)next_sym("link");
	P.rename = (link_fn)next_sym("rename");
	const char *t = getenv("PL_TARGET"), *j = getenv("PL_JOURNAL"), *sd = getenv("PL_SEED");
	if (t == NULL || j == NULL || strlen(t) >= sizeof(P.target))
		return;
	strcpy(P.target, t);
	P.jfd = open(j, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	P.rng = sd != NULL ? strtoull(sd, NULL, 10) : 1;
	parse_fault(getenv("PL_FAULT"));
}

static enum pl_target target_of(const char *p)
{
	return P.jfd < 0 ? PL_T_OTHER : pl_target_of(P.target, p);
}

static enum pl_target fd_target(int fd, char *buf, size_t cap)
{
	char link[64];
	pl_init(); /* a call before the constructor ran: resolve now */
	if (P.jfd < 0 || fd == P.jfd)
		return PL_T_OTHER;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, cap - 1);
	if (n <= 0)
		return PL_T_OTHER;
	buf[n] = '\0';
	return target_of(buf);
}

/* One journal record, header and data in one write(). */
static void journal(enum pl_jtype type, uint64_t off, const void *data, uint64_t len, int64_t res)
{
	struct pl_jrec h = { PL_J_MAGIC, (uint32_t)type, off, len, res };
	size_t n = sizeof(h) + (data != NULL ? (size_t)len : 0);
	uint8_t *buf = malloc(n);
	if (buf == NULL)
		abort();
	memcpy(buf, &h, sizeof(h));
	if (data != NULL)
		memcpy(buf + sizeof(h), data, (size_t)len);
	if (P.write(P.jfd, buf, n) != (ssize_t)n)
		abort();
	free(buf);
}

static __attribute__((noreturn)) void die(enum ev ev)
{
	journal(PL_J_CRASH, (uint64_t)ev, NULL, P.count[ev], 0);
	kill(getpid(), SIGKILL);
	abort();
}

/* Counts an event (under P.mu); the fault to apply to it, if this is the one. */
static enum how event(enum ev ev)
{
	P.count[ev]++;
	if (P.fault_how != HOW_NONE && ev == P.fault_ev && P.count[ev] == P.fault_at) {
		enum how h = P.fault_how;
		P.fault_how = HOW_NONE;
		return h;
	}
	return HOW_NONE;
}

static ssize_t do_write(int fd, const void *p, size_t n, off_t off, int positional, pwrite_fn real)
{
	char path[PATH_MAX];
	enum pl_target t = fd_target(fd, path, sizeof(path));
	if (t != PL_T_FILE && t != PL_T_TEMP)
		return positional ? real(fd, p, n, off) : P.write(fd, p, n);
	pthread_mutex_lock(&P.mu);
	if (!positional)
		off = lseek(fd, 0, SEEK_CUR);
	enum how h = event(EV_WRITE);
	if (h == HOW_BEFORE)
		die(EV_WRITE);
	if (t == PL_T_FILE)
		journal(PL_J_WRITE, (uint64_t)off, p, n, 0); /* the intent, before it lands */
	if (h == HOW_MID) {
		P.rng = P.rng * 6364136223846793005ull + 1442695040888963407ull;
		size_t land = n > 1 ? 1 + (size_t)((P.rng >> 33) % (n - 1)) : 0;
		if (land > 0 && real(fd, p, land, off) < 0)
			abort();
		die(EV_WRITE);
	}
	ssize_t w = real(fd, p, n, off);
	if (w > 0 && !positional)
		(void)lseek(fd, off + w, SEEK_SET);
	pthread_mutex_unlock(&P.mu);
	return w;
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
	pl_init();
	return do_write(fd, p, n, off, 1, P.pwrite);
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off)
{
	pl_init();
	return do_write(fd, p, n, off, 1, P.pwrite64);
}

ssize_t write(int fd, const void *p, size_t n)
{
	pl_init();
	return do_write(fd, p, n, 0, 0, P.pwrite);
}

static int do_sync(int fd, sync_fn real)
{
	char path[PATH_MAX];
	enum pl_target t = fd_target(fd, path, sizeof(path));
	if (t == PL_T_OTHER)
		return real(fd);
	pthread_mutex_lock(&P.mu);
	enum how h = event(t == PL_T_DIR ? EV_DIRSYNC : EV_SYNC);
	if (h == HOW_BEFORE || h == HOW_MID)
		die(t == PL_T_DIR ? EV_DIRSYNC : EV_SYNC);
	int r = 0;
	if (h == HOW_EIO)
		r = -EIO;
	if (t == PL_T_DIR)
		journal(PL_J_DIRSYNC, 0, NULL, 0, 0);
	else if (t == PL_T_FILE)
		journal(PL_J_SYNC, 0, NULL, 0, r);
	else if (r == 0)
		snprintf(P.temp_synced, sizeof(P.temp_synced), "%s", path);
	pthread_mutex_unlock(&P.mu);
	if (r != 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

int fdatasync(int fd)
{
	pl_init();
	return do_sync(fd, P.fdatasync);
}

int fsync(int fd)
{
	pl_init();
	return do_sync(fd, P.fsync);
}

static int do_link(const char *from, const char *to, link_fn real)
{
	pl_init();
	if (target_of(to) != PL_T_FILE)
		return real(from, to);
	pthread_mutex_lock(&P.mu);
	if (event(EV_LINK) != HOW_NONE)
		die(EV_LINK);
	static uint8_t buf[65536];
	ssize_t n = pl_read_head(from, buf, sizeof(buf));
	int r = real(from, to);
	if (r == 0 && n >= 0)
		journal(PL_J_LINK, 0, buf, (uint64_t)n, strcmp(from, P.temp_synced) == 0);
	pthread_mutex_unlock(&P.mu);
	return r;
}

int link(const char *from, const char *to)
{
	pl_init();
	return do_link(from, to, P.link);
}

int rename(const char *from, const char *to)
{
	pl_init();
	return do_link(from, to, P.rename);
}
