/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal the LD_PRELOAD interposer (pl_preload.c) appends to, one record
 * per operation on the watched state file, written before the operation takes
 * effect (a write's intent) or once it has (a sync's result), each with a
 * single write() to an O_APPEND file. The harness (powerloss_proc.c) replays
 * it into the pl_ model after each process; a record cut short by a kill is
 * the last one and is ignored (its operation had not started).
 */
#ifndef P11KMS_PL_JOURNAL_H
#define P11KMS_PL_JOURNAL_H

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define PL_J_MAGIC 0x504c4a31u /* "PLJ1" */

enum pl_jtype {
	PL_J_WRITE = 1,	  /* off, len, data: a pwrite/write of the file, as asked */
	PL_J_SYNC = 2,	  /* res: 0, or -EIO (the pages stay in the cache, clean) */
	PL_J_LINK = 3,	  /* len, data: the file now named; res: 1 if its data was synced */
	PL_J_DIRSYNC = 4, /* the directory was synced */
	PL_J_CRASH = 5,	  /* off: the event kind, len: its index: the process kills itself */
};

struct pl_jrec {
	uint32_t magic;
	uint32_t type;
	uint64_t off;
	uint64_t len;
	int64_t res;
};

/* What a path is to the layer: the watched file, one of its dfile temp files
 * ("<file>.tmp-XXXXXX"), its directory, or something else. */
enum pl_target { PL_T_OTHER, PL_T_FILE, PL_T_TEMP, PL_T_DIR };

static inline enum pl_target pl_target_of(const char *target, const char *p)
{
	size_t n = strlen(target);
	const char *slash = strrchr(target, '/');
	if (strcmp(p, target) == 0)
		return PL_T_FILE;
	if (strncmp(p, target, n) == 0 && strncmp(p + n, ".tmp-", 5) == 0)
		return PL_T_TEMP;
	if (slash != NULL && slash != target && strlen(p) == (size_t)(slash - target) &&
	    strncmp(p, target, (size_t)(slash - target)) == 0)
		return PL_T_DIR;
	return PL_T_OTHER;
}

/* The first cap bytes of the file at path (a temp file about to be linked), or -1. */
static inline ssize_t pl_read_head(const char *path, uint8_t *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, buf, cap, 0) : -1;
	if (fd >= 0)
		close(fd);
	return n;
}

/* PL_FAULT="<event>:<n>:<how>", event write|sync|link|dirsync, how mid|before|eio. */

#endif
