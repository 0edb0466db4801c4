/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pl_: a model of what a power cut leaves of one file (the guard's state file),
 * independent of what the file holds. It sees the writes and syncs the signer
 * issues (through the dfile ops table in process, or the LD_PRELOAD
 * interposer's journal across processes) and keeps, per 512-byte sector, the
 * durable content and every version written since.
 *
 *   - a successful fdatasync/fsync makes the file's pending sectors durable;
 *   - a failed one (EIO) leaves them in the page cache, marked clean: a later
 *     sync does not write them ("fsyncgate"), unless their 4 KiB page is
 *     dirtied again; until then a power cut may lose or tear them;
 *   - a link/rename onto the name is durable once its directory is synced;
 *   - a process kill changes nothing (the page cache survives it);
 *   - a power cut keeps, for each sector written since it was last durable,
 *     any one of its versions (the durable one = lost, the newest = kept, or
 *     one in between), in any combination across sectors: a write of several
 *     sectors may come back torn.
 *
 * pl_cut() then rewrites the real file with the outcome and classifies every
 * write whose sectors are still the newest: kept, lost, or torn (some of its
 * changed sectors new, others not). The test's claim is checked against
 * that: a torn write must never be accepted by the next start.
 */
#ifndef P11KMS_PL_MODEL_H
#define P11KMS_PL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define PL_SECTOR 512u
#define PL_PAGE 4096u

/* How a power cut treats sectors that are not durable. */
enum pl_keep {
	PL_KEEP_LOST,	/* every one reverts to its durable content */
	PL_KEEP_KEPT,	/* every one keeps what the page cache holds */
	PL_KEEP_RANDOM, /* each sector independently: any of its versions */
	PL_KEEP_TEAR,	/* each write keeps its first changed sector and loses the rest */
};

/* What became of the writes since the last sync, taken together. */
enum pl_outcome {
	PL_OUT_NONE,  /* nothing was pending: the cut changed nothing */
	PL_OUT_LOST,  /* every pending write lost */
	PL_OUT_KEPT,  /* every pending write kept */
	PL_OUT_MIXED, /* some writes kept, others lost, none torn */
	PL_OUT_TORN,  /* at least one write torn */
};
#define PL_OUT_COUNT (PL_OUT_TORN + 1)

struct pl_cut_report {
	enum pl_outcome outcome;
	unsigned writes_kept, writes_lost, writes_torn;
	int name_lost; /* a link/rename onto the name was undone */
	int exists;    /* the name exists after the cut */
};

struct pl_disk;

/* Tracks path; its current content (or absence) is taken as durable. NULL on error. */
struct pl_disk *pl_new(const char *path);
void pl_free(struct pl_disk *d);
const char *pl_path(const struct pl_disk *d);
/* Drops the history and takes the file as it is now as durable (after a test's own reset). */
int pl_reset(struct pl_disk *d);

/* len bytes of data were written at off (what the writer asked for; it may have
 * landed only in part: the cut reads what the file really holds). */
void pl_write(struct pl_disk *d, uint64_t off, const void *data, size_t len);
/* A sync of the file returned: ok, or failed (EIO semantics above). */
void pl_sync(struct pl_disk *d, int ok);
/* The name now names a new file holding data[0..len) (link or rename onto it);
 * synced: that file's data was made durable before (dfile syncs its temp file). */
void pl_link(struct pl_disk *d, const void *data, size_t len, int synced);
/* The directory holding the name was synced: the name's current target is durable. */
void pl_dirsync(struct pl_disk *d);
/* The writer died (a kill, or the shim's crash): its last write landed as the
 * file now shows, perhaps only in part. Call before the next writer starts. */
int pl_settle(struct pl_disk *d);
/* What a restart without a power cut sees: pending writes classified as the page
 * cache holds them (a write cut short by the crash shows as torn). No change. */
int pl_inspect(struct pl_disk *d, struct pl_cut_report *rep);
/* Writes not yet durable (sectors), 0 when a cut could change nothing. */
size_t pl_pending(const struct pl_disk *d);

/* The power cut: the real file is rewritten (or removed) as the cut leaves it. */
int pl_cut(struct pl_disk *d, uint64_t *rng, enum pl_keep how, struct pl_cut_report *rep);

/* splitmix64: the seeded generator of every random choice of this layer. */
static inline uint64_t pl_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

const char *pl_outcome_name(enum pl_outcome o);
const char *pl_keep_name(enum pl_keep k);

#endif
