/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The in-process power-loss layer: a dfile ops table that forwards the state
 * file's writes to the real file and reports every write, sync and link to a
 * pl_ model, and that can "crash" the process at a chosen event: from then
 * on every operation on the file fails and changes nothing, as if the process
 * had died there (the caller sees an I/O error; the test then drops the
 * guard, which does no I/O of its own on close, and restarts).
 *
 * Syncs are not passed to the disk: the model decides what is durable, so the
 * run costs no disk flushes and does not depend on the filesystem under it.
 */
#ifndef P11KMS_PL_SHIM_H
#define P11KMS_PL_SHIM_H

#include "pl_model.h"

enum pl_event {
	PL_EV_WRITE, /* pwrite/write of the file or of its dfile temp file */
	PL_EV_SYNC,  /* fdatasync/fsync of the file or its temp file */
	PL_EV_LINK,  /* link/rename onto the file's name */
	PL_EV_DIRSYNC,
	PL_EV_COUNT,
};

enum pl_fault {
	PL_FAULT_NONE,
	PL_FAULT_CRASH_MID,    /* at the event: a WRITE lands in part (a random prefix), then death;
			       any other event: death before it happens */
	PL_FAULT_CRASH_BEFORE, /* death just before the event */
	PL_FAULT_EIO,	       /* a SYNC fails with EIO (the pages stay in the cache, clean) */
};

/* Installs the ops table for d's file (whose path must be absolute and canonical). */
void pl_shim_install(struct pl_disk *d, uint64_t *rng);
void pl_shim_uninstall(void);
/* From now on, fault at the at-th (1-based) event of kind ev. */
void pl_shim_arm(enum pl_event ev, unsigned at, enum pl_fault fault);
void pl_shim_disarm(void);
/* 1 once the armed crash happened (the "process" is dead); 1 once the EIO fired. */
int pl_shim_dead(void);
int pl_shim_eio_fired(void);
/* A new process: alive, nothing armed, event counters from zero. The model is told
 * the dead writer's last write landed as the file now shows (pl_settle). */
void pl_shim_restart(void);
/* Events of each kind since the last restart. */
unsigned pl_shim_count(enum pl_event ev);

#endif
