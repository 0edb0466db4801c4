/* SPDX-License-Identifier: Apache-2.0 */
/* audit_: the hash-chained, tamper-evident log of every signing decision (docs/audit.md). */
#ifndef P11KMS_AUDIT_H
#define P11KMS_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"
#include "p11kms/obs.h"

struct cfg;
struct cfg_audit;
struct slot;

/*
 * The daemon side. One struct audit_log per daemon: a bounded queue that the
 * connection threads fill after each reply (the obs sink), and a writer
 * thread that appends the records to the current file and syncs them in
 * batches (every batch_records records or batch_ms ms), signs a checkpoint
 * every checkpoint_every records, rotates by size and by UTC day, and keeps
 * the hash chain going across files and restarts. Each start opens a new
 * file. The connection threads never wait for audit I/O: a full queue drops
 * the record and counts it (written later as a "dropped" note naming the
 * chains and guard sequence numbers); a failed write or sync is logged,
 * emitted as OBS_ST_AUDIT_ERROR, shown by doctor (the status file), retried
 * every second in a new file, and the records lost meanwhile are written as
 * an "error" note once the log works again.
 */
struct audit_log;

/*
 * Opens the audit log of cfg->audit for the daemon and registers its obs
 * sink (call before the connection threads start). Reads each served chain's
 * state file for its current sequence (the start record), takes the
 * directory's lock (<dir>/audit.status: a second daemon gets KMS_ERR_LOCKED),
 * reads the newest file to continue the chain, and starts the writer.
 * ident: the Secret Connection identity key that signs checkpoints when
 * sign_checkpoints is set (borrowed: keep it open until audit_close).
 * A disk error (full, I/O) does not fail the open: the log starts in the
 * failed state and retries (fail_closed then refuses signatures until it
 * works). Errors: KMS_ERR_CONFIG (no identity for sign_checkpoints, queue
 * smaller than the connections), KMS_ERR_PERM (directory group/world
 * writable), KMS_ERR_LOCKED, KMS_ERR_NOT_FOUND (parent directory missing),
 * KMS_ERR_SYSTEM. Every failure is logged. *out: caller audit_close()s.
 */
KMS_MUST_CHECK int audit_start(const struct cfg *cfg, struct slot *ident, struct audit_log **out);

/*
 * fail_closed admission, called by the request handler before the guard
 * signs: KMS_OK when the log is healthy, has queue room for every
 * connection's in-flight record and is at most 2 x batch_records records
 * behind its last sync; else KMS_ERR_REFUSED with the reason in why.
 * Always KMS_OK when fail_closed is off or a is NULL. Never blocks on I/O
 * (one short mutex section).
 */
KMS_MUST_CHECK int audit_admit(struct audit_log *a, char *why, size_t cap);

/*
 * Stops the writer after it has written every queued record, a final
 * checkpoint (reason shutdown, signed when configured) and synced; releases
 * the lock and frees. Accepts NULL. Call after the connection threads ended
 * and obs_sink_clear().
 */
void audit_close(struct audit_log *a);

/* Counters since audit_start (atomics; any thread). */
struct audit_counters {
	uint64_t queued, written, durable, dropped, lost, write_errors;
	int failed; /* 1 while writes fail */
};
void audit_counters_get(struct audit_log *a, struct audit_counters *out);

/* ---- Reading and verifying (offline: `p11kms audit`, doctor, tests, fuzzing) ---- */

enum audit_damage {
	AUDIT_INTACT = 0,
	AUDIT_EDITED,	      /* a record's bytes differ from what was written */
	AUDIT_MISSING,	      /* records (or files) deleted, or signatures never recorded */
	AUDIT_REORDERED,      /* records or files out of order, or repeated */
	AUDIT_TRUNCATED,      /* the log or a file ends early */
	AUDIT_CHECKPOINT_SIG, /* a checkpoint signature is missing, bad or by another key */
	AUDIT_SPLICED,	      /* a file does not continue the log before it */
	AUDIT_UNREADABLE,     /* not an audit file, or a format version this build cannot read */
};
/* "intact", "edited", "missing", "reordered", "truncated", "checkpoint signature bad",
 * "spliced", "unreadable". */
const char *audit_damage_name(enum audit_damage d);

/* One chain's double-sign state sequence, for the gap check at the end of the log. */
struct audit_state_seq {
	const char *chain_id;
	uint64_t seq;
};

struct audit_verify_opts {
	/* Explanations (gaps, tails, file boundaries), one line each; may be NULL. */
	void (*note)(void *ctx, const char *line);
	void *note_ctx;
	const uint8_t *pin_key; /* [32]: checkpoints must be signed by this key; NULL: any */
	int has_anchor; /* the log must continue record anchor_seq whose hash is anchor_hash */
	uint64_t anchor_seq;
	uint8_t anchor_hash[32];
	int live; /* a daemon is writing the last file (audit_dir_live) */
	const struct audit_state_seq *state; /* current state sequences (may be NULL) */
	size_t n_state;
};

struct audit_report {
	enum audit_damage damage; /* the first damage found (verification stops there) */
	char where[300];	  /* "record #57 (file F, offset 1234)" */
	char what[600];		  /* what is wrong, in words */
	uint64_t files, records, signed_, stored, refused, other, starts;
	uint64_t checkpoints, checkpoints_signed, dropped, lost, gaps_explained;
	int has_first;
	uint64_t first_seq, last_seq;
	uint8_t head[32]; /* hash of the last complete record */
	uint8_t log_id[16];
	int has_key;
	uint8_t key[32]; /* checkpoint key of the last header */
	int has_signed_cp;
	uint64_t signed_cp_seq; /* the last record covered by a valid checkpoint signature */
	size_t tail_bytes;	/* bytes of an incomplete record at the end of the last file */
	int clean_end;		/* the log ends with a shutdown checkpoint */
};

struct audit_verify;

/* A verifier for one log given as a sequence of files, in order. Caller audit_verify_free()s. */
KMS_MUST_CHECK int audit_verify_new(const struct audit_verify_opts *o, struct audit_verify **out);
/*
 * Feeds the next file's whole (decompressed) image. Returns 1 once damage has
 * been found (further files are ignored), 0 otherwise. Pure: no I/O; name is
 * used in messages. Fuzzed.
 */
int audit_verify_file(struct audit_verify *v, const char *name, const uint8_t *p, size_t n);
/* Ends the set (tail, gaps against opts.state) and fills rep. */
void audit_verify_end(struct audit_verify *v, struct audit_report *rep);
void audit_verify_free(struct audit_verify *v);

/* Whole-file readers for `audit show|export`: one callback per parsed record. */
enum audit_out_fmt {
	AUDIT_OUT_JSONL = 1, /* one JSON object per record (export) */
	AUDIT_OUT_TABLE,     /* decisions as a readable table (show) */
};
struct audit_filter {
	const char *chain_id; /* NULL: every chain */
	int64_t since, until; /* heights, inclusive; until 0: no upper bound */
};
/*
 * Appends the records of one file image to out (a FILE *), JSON lines or
 * table rows. Stops at the first record whose framing is unreadable
 * (KMS_ERR_FORMAT, with the offset in a final message). Records whose hash
 * does not match are printed with "hash_ok":false / a "!" mark: `audit
 * verify` says what that means. Strings are escaped (JSON) or stripped of
 * control characters (table).
 */
KMS_MUST_CHECK int audit_render_file(const char *name, const uint8_t *p, size_t n,
				     enum audit_out_fmt fmt, const struct audit_filter *f,
				     void *out_file);
/* The table's column header line (for show). */
void audit_render_table_header(void *out_file);

/* ---- Files on disk ---- */

/*
 * The audit files in dir, oldest first (by file number; .log and .log.gz),
 * as new strings in *paths (caller audit_paths_free()s). KMS_ERR_NOT_FOUND
 * if dir does not exist.
 */
KMS_MUST_CHECK int audit_dir_list(const char *dir, char ***paths, size_t *n);
void audit_paths_free(char **paths, size_t n);
/* Reads a whole audit file, gunzipping .gz, at most max bytes. Caller free()s *p. */
KMS_MUST_CHECK int audit_file_load(const char *path, size_t max, uint8_t **p, size_t *n);
/*
 * 1 when a daemon holds dir's lock (it is writing the log), 0 when not (or
 * there is no status file). Tests the lock (F_OFD_GETLK) without taking it,
 * so it never disturbs a running daemon. *pid (may be NULL) gets the
 * holder's pid.
 */
int audit_dir_live(const char *dir, long *pid);
/*
 * The current sequence of a double-sign state file, read without its lock
 * (the daemon keeps running; the value is at most one signature behind).
 */
KMS_MUST_CHECK int audit_state_seq_read(const char *state_file, uint64_t *seq);

/*
 * doctor and start-up: the audit configuration and the log's condition, one
 * line per check through report(ctx, exit_code, line) where exit_code is 0
 * (fine) or a CMD_EXIT_* code. Lines: directory (present, private, writable,
 * free space), whether a daemon is writing and its state (a write failure
 * since when, records dropped or lost), the newest file (records, how it
 * ended, write errors it records).
 */
void audit_doctor(const struct cfg *cfg, void (*report)(void *ctx, int exit_code, const char *line),
		  void *ctx);

#endif
