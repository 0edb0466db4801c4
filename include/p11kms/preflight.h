/* SPDX-License-Identifier: Apache-2.0 */
/* pf_: the one list of start-up checks that `p11kms start` and `p11kms doctor` both run. */
#ifndef P11KMS_PREFLIGHT_H
#define P11KMS_PREFLIGHT_H

#include <stddef.h>

#include "p11kms/kms_err.h"

struct cfg;

enum pf_status {
	PF_OK = 0,   /* fine (doctor: ✔) */
	PF_WARN = 1, /* works, but worth knowing (doctor: !) */
	PF_FAIL = 2, /* start refuses to run (doctor: ✘); exit_code says which kind */
};

/* Which command runs the list. */
enum pf_mode {
	PF_START = 1,  /* before `start` opens anything it keeps */
	PF_DOCTOR = 2, /* read-only, also beside a running daemon (it takes no lock) */
};

/* One finding. Strings are copies, valid during the emit callback. */
struct pf_result {
	const char *check; /* the table entry's id ("config_file", "state_file", ...): stable */
	enum pf_status status;
	int exit_code;	    /* enum cmd_exit (cmd.h) for PF_FAIL, 0 otherwise */
	char subject[320];  /* what was looked at: a path, a chain-id, an address */
	char message[1024]; /* one line: what was found, and on failure the fix */
};

typedef void (*pf_emit_fn)(void *ctx, const struct pf_result *r);

/* The run: what is checked, where findings go, the tally. */
struct pf_ctx {
	enum pf_mode mode;
	const char *conf_path;	  /* the config file, as given */
	struct cfg *cfg;	  /* loaded by pf_run (NULL when it did not load) */
	const char *profiles_dir; /* hsm-profiles directory for opening keys (NULL = default) */
	pf_emit_fn emit;
	void *emit_ctx;
	int first_fail; /* exit code of the first PF_FAIL, 0 if none */
	int n_ok, n_warn, n_fail;
	char load_err[512]; /* why the config did not load ("" when it did) */
};

/*
 * A check: one table entry in src/daemon/preflight.c. It looks at pf->cfg
 * (never NULL when needs_config) and reports each finding with pf_report().
 * It must not change anything on disk, and must take no lock a running
 * signer holds: doctor runs the list beside a running daemon.
 */
typedef void (*pf_check_fn)(struct pf_ctx *pf);
struct pf_check {
	const char *id;
	const char *what; /* for `doctor --help` and docs/cli.md */
	unsigned modes;	  /* PF_START | PF_DOCTOR */
	int needs_config; /* skipped when the config did not load */
	pf_check_fn fn;
};

/* The list, in the order it runs; ends with an entry whose id is NULL. */
extern const struct pf_check pf_checks[];

/* Records one finding and hands it to pf->emit. */
void pf_report(struct pf_ctx *pf, const char *check, enum pf_status status, int exit_code,
	       const char *subject, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/*
 * Loads the config at pf->conf_path into pf->cfg (the caller cfg_free()s it)
 * and runs every check of pf->mode in table order, all of them even after a
 * failure, so one run names every problem. Returns pf->first_fail (0 when
 * nothing failed). Nothing is logged: findings go to pf->emit.
 */
int pf_run(struct pf_ctx *pf);

/* "ok", "warn", "fail". */
const char *pf_status_name(enum pf_status s);

/*
 * The process holding an flock on path, from /proc/locks: its pid (0 when
 * the file is not locked or it cannot be told) and its command name
 * (/proc/PID/comm, "" if unknown). Read-only: takes no lock itself, so a
 * probe never gets in a starting signer's way.
 */
void pf_lock_holder(const char *path, long *pid, char *comm, size_t cap);

#endif
