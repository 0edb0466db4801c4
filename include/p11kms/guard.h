/* SPDX-License-Identifier: Apache-2.0 */
/* guard_: the per-chain double-sign guard, its durable state file and the state formats. */
#ifndef P11KMS_GUARD_H
#define P11KMS_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"

/*
 * Rules: CometBFT FilePV (spec §5.2) with the p11kms policy of spec §5.4; the
 * file format, conversions and the crash-safety argument are in docs/state.md.
 */

/* CometBFT step numbers (tmkms's 0/1/2 are converted on import/export only). */
enum guard_step {
	GUARD_STEP_NONE = 0,
	GUARD_STEP_PROPOSE = 1,
	GUARD_STEP_PREVOTE = 2,
	GUARD_STEP_PRECOMMIT = 3,
};

struct guard_hrs {
	int64_t height;
	int32_t round;
	enum guard_step step;
};

/* Largest sign bytes the guard stores (and therefore signs). Larger is KMS_ERR_TOO_LARGE. */
#define GUARD_MAX_SIGN_BYTES 4096
/* Longest chain-id (CometBFT MaxChainIDLen is 50). */
#define GUARD_MAX_CHAIN_ID 64
#define GUARD_SIG_LEN 64

/* One per chain-id, shared by every connection for that chain. Opaque. */
struct guard;

/* Options of guard_open_opts; NULL means all zero. */
struct guard_opts {
	/* The chain's allow_volatile_state: a state file on a filesystem that cannot
	 * make it durable (tmpfs, overlayfs, NFS, ...) is accepted, with a warning. */
	int allow_volatile_state;
	/* guard_state_check only: leave the filesystem to guard_check_fs (doctor). */
	int skip_fs_check;
};

/*
 * Opens the state file of one chain for signing: takes an exclusive flock on
 * it (a second opener, in this or another process, gets KMS_ERR_LOCKED and a
 * log line naming the holder's pid, recorded in the sidecar "<path>.pid"),
 * checks its mode on the opened descriptor, removes stale dfile temp files
 * next to it, loads the newest record (both records must be valid), and
 * checks the filesystem under it (dfile_fs_probe: tmpfs, overlayfs, NFS, ...
 * are refused unless opts->allow_volatile_state, which is logged as a WARN).
 * Nothing is written yet: see guard_make_durable.
 *   KMS_ERR_NOT_FOUND  no state file: the log tells the operator to run
 *                      `p11kms state init -c <conf> --chain <id> --height H`
 *                      or `p11kms state import`;
 *   KMS_ERR_FORMAT     empty, truncated or corrupt, or ONE record invalid
 *                      (its checksum fails: torn or rotten; it may be the
 *                      newest): refused, both records named in the log with
 *                      the `p11kms state repair` command; never reset or
 *                      fallen back silently;
 *   KMS_ERR_REFUSED    the chain-id recorded in the file is not chain_id;
 *   KMS_ERR_PERM       the file is group/world accessible;
 *   KMS_ERR_UNSUPPORTED  its filesystem cannot keep it (logged with the reason
 *                      and the fix);
 *   KMS_ERR_STATE_IO   read error.
 * *out is owned by the caller (guard_free). Thread-safe after open.
 * guard_open is guard_open_opts with opts NULL.
 */
KMS_MUST_CHECK int guard_open(const char *state_path, const char *chain_id, struct guard **out);
KMS_MUST_CHECK int guard_open_opts(const char *state_path, const char *chain_id,
				   const struct guard_opts *opts, struct guard **out);

/*
 * Makes the loaded record durable before anything is served: the directory
 * is synced, the record's own bytes are written back into its own slot and
 * synced, then the record goes into the other slot as sequence + 1 (sign
 * bytes and signature included, so that a repeated request still gets the
 * stored signature) and is synced. The record may only have been in the page
 * cache: the previous process was killed between its pwrite and its
 * fdatasync, or its fdatasync failed and the kernel marked the pages clean.
 * The order keeps the other slot's record (the last one durable before)
 * untouched until the loaded one is on disk (docs/state.md). `p11kms start`
 * calls it once every state, key and identity has opened, before serving,
 * and refuses to start on failure (so a start that fails earlier writes
 * nothing). guard_sign does it first if it was not done. Idempotent.
 * KMS_ERR_STATE_IO: the guard is fail-closed (OBS_ST_GUARD_FAILED emitted).
 */
KMS_MUST_CHECK int guard_make_durable(struct guard *g);

/*
 * The start-up filesystem check on its own (doctor): the filesystem of the
 * state file, or of its directory when the file does not exist yet. KMS_OK
 * if it can keep the state (or allow_volatile_state accepts it), else
 * KMS_ERR_UNSUPPORTED; KMS_ERR_NOT_FOUND without a directory. msg (cap
 * bytes): "on ext4", or the filesystem, what it cannot guarantee and the fix.
 */
KMS_MUST_CHECK int guard_check_fs(const char *state_path, int allow_volatile_state, char *msg,
				  size_t cap);
/*
 * What `doctor` asks: would guard_open_opts accept this state? The same lock
 * and checks, without the re-persist (nothing is written); the filesystem too
 * unless opts->skip_fs_check (doctor reports it on its own line). *last: the
 * newest record's H/R/S. Errors as guard_open_opts (KMS_ERR_LOCKED while a
 * signer runs).
 */
KMS_MUST_CHECK int guard_state_check(const char *state_path, const char *chain_id,
				     const struct guard_opts *opts, struct guard_hrs *last);
/*
 * guard_state_check's verdict on the records (both valid, this chain's)
 * without taking the lock or writing anything, so that a probe (`doctor`
 * beside a running signer, #17) never makes a starting signer find the lock
 * taken. The filesystem is guard_check_fs's. A record being rewritten by a
 * running signer at that instant can fail its checksum: the caller reads it
 * again (a running signer accepted the file when it opened it).
 */
KMS_MUST_CHECK int guard_state_check_ro(const char *state_path, const char *chain_id,
					struct guard_hrs *last);

/* Signs msg[0..len) into sig: the slot (or a test) provides it. Returns a kms_err. */
typedef int (*guard_sign_fn)(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64]);

struct guard_request {
	struct guard_hrs hrs;
	/* The canonical sign bytes (uvarint length ‖ CanonicalVote/CanonicalProposal). */
	const uint8_t *sign_bytes;
	size_t sign_bytes_len;
};

struct guard_result {
	uint8_t signature[GUARD_SIG_LEN];
	int reused;		/* 1: the stored signature was returned (same H/R/S) */
	int timestamp_replaced; /* 1: votes only: put ts_seconds/ts_nanos into the response vote */
	int64_t ts_seconds;
	int32_t ts_nanos;
	/* On a refusal: "chain=<id> requested h/r/s=... last h/r/s=...: <why>". */
	char reason[256];
	int regression;	 /* 1: refused as a height, round or step regression */
	uint64_t seq;	 /* the state record sequence after this decision */
	int64_t sign_ns; /* time in the sign callback (a new signature only) */
	int64_t sync_ns; /* time in the record's write + fdatasync (a new signature only) */
	/* HA (guard_set_cluster): 1 when the cluster mark refused the request or the cluster
	 * could not be reached (then the error is KMS_ERR_DOUBLE_SIGN for a regression or
	 * conflict with the mark, anything else for an etcd failure). */
	int cluster;
	int64_t cluster_ns; /* time in the cluster calls (reads and the transaction) */
};

/*
 * The check-sign-persist-release sequence, atomic under the chain's mutex.
 * The sign bytes are decoded (a minimal protobuf walker of the guard's own)
 * and must agree with req->hrs (type ↔ step, height, round) and with the
 * guard's chain-id: otherwise KMS_ERR_REFUSED (a bug upstream must not let a
 * message bypass the rules). Then, against the last signed H/R/S:
 *   - regression → KMS_ERR_DOUBLE_SIGN, reason contains "height regression",
 *     "round regression" or "step regression";
 *   - same H/R/S, identical sign bytes → the stored signature (reused=1, no
 *     state write);
 *   - same H/R/S, a VOTE differing only in the timestamp → the stored
 *     signature and the stored timestamp (reused=1, timestamp_replaced=1);
 *   - same H/R/S, a PROPOSAL differing only in the timestamp → refused with
 *     KMS_ERR_DOUBLE_SIGN (the node ignores a returned proposal timestamp, so
 *     the stored signature would make an invalid proposal; docs/state.md);
 *   - same H/R/S with no stored sign bytes (imported tmkms state) or anything
 *     else different → KMS_ERR_DOUBLE_SIGN.
 * Otherwise it signs through sign() (the signature stays in memory), writes
 * the new record durably (pwrite + exactly one fdatasync) and only then
 * copies the signature into res and returns KMS_OK.
 *   KMS_ERR_STATE_IO  the record could not be made durable: nothing is
 *                     returned and the guard is FAIL-CLOSED (every later call
 *                     returns KMS_ERR_STATE_IO) until it is freed and reopened;
 *   other errors      from sign(): returned as is, state not advanced.
 * res->reason is set on every refusal. Blocks on the chain's mutex and on disk.
 */
KMS_MUST_CHECK int guard_sign(struct guard *g, const struct guard_request *req, guard_sign_fn sign,
			      void *sign_ctx, struct guard_result *res);

/* ---- HA: the cluster high-water mark (docs/ha.md; provided by src/ha) ----
 * With a cluster attached, a request that is ahead of the local state is checked
 * against the cluster mark by the same rules (CLUSTER_CHECK); the same H/R/S
 * there is answered with the mark's signature after writing the mark into the
 * local state (ADOPT); otherwise the guard signs, commits the new mark (COMMIT,
 * with RESOLVE inside the provider) and only then persists and releases.
 */
struct guard_mark {
	int present; /* 0: the cluster has no mark for this chain yet (nothing signed) */
	struct guard_hrs hrs;
	uint8_t sign_bytes[GUARD_MAX_SIGN_BYTES];
	size_t sign_bytes_len; /* 0: none (a mark written by state init/import) */
	uint8_t signature[GUARD_SIG_LEN];
	int has_sig;
};

struct guard_cluster_ops {
	/*
	 * The mark to decide against: the one last read or watched, or a
	 * linearizable read when none is held. KMS_OK, or an error (the request is
	 * refused: never sign on local knowledge alone).
	 */
	int (*mark)(void *ctx, struct guard_mark *m);
	/*
	 * One compare-and-swap against the mark last returned by mark() or commit():
	 *   KMS_OK          the mark now holds n (committed, or resolved as applied);
	 *   KMS_ERR_EXISTS  the compare failed: *m is the mark now (decide again);
	 *   anything else   not committed, or the outcome is unknown: n must never
	 *                   be released.
	 */
	int (*commit)(void *ctx, const struct guard_mark *n, struct guard_mark *m);
};

/* The last record as a mark (present=1; sign bytes and signature if stored). Takes the mutex. */
void guard_last_mark(struct guard *g, struct guard_mark *out);
/* -1, 0, 1 comparing H/R/S lexicographically. */
int guard_hrs_cmp(const struct guard_hrs *a, const struct guard_hrs *b);

/* Attaches the cluster to g (before any guard_sign; ops/ctx outlive g). NULL detaches. */
void guard_set_cluster(struct guard *g, const struct guard_cluster_ops *ops, void *ctx);

/* Last signed H/R/S (takes the mutex). */
void guard_last(struct guard *g, struct guard_hrs *out);
/* The chain-id the guard was opened for (borrowed, lives as long as g). */
const char *guard_chain_id(const struct guard *g);
/*
 * 1 once a persist failure has made the guard refuse everything (then
 * OBS_ST_GUARD_FAILED was emitted once, with the chain-id). An atomic read:
 * never waits for the chain's mutex, so readiness and metrics may poll it
 * while a signature is in progress.
 */
int guard_failed(struct guard *g);
/* Releases the flock and frees; accepts NULL. */
void guard_free(struct guard *g);

/* Text name of a step: "none", "proposal", "prevote", "precommit". */
const char *guard_step_name(enum guard_step s);

/* ---- Offline state management (CLI `state init|import|export|show`) ----
 * Each takes the file's flock for its duration and fails with KMS_ERR_LOCKED
 * while a running signer (or another command) holds it, except
 * guard_state_show, which reads an unlocked snapshot (see below).
 */

/*
 * Creates a new state file at H/R/S with no sign bytes (dfile_create_atomic:
 * temp file, fsync, rename, directory fsync). KMS_ERR_EXISTS if the file
 * exists: never overwrites.
 */
KMS_MUST_CHECK int guard_state_init(const char *path, const char *chain_id, int64_t height,
				    int32_t round, enum guard_step step);

enum guard_fmt {
	GUARD_FMT_AUTO,	    /* import only: detected from the JSON */
	GUARD_FMT_COMETBFT, /* priv_validator_state.json (FilePV, cosmos/kms, horcrux single) */
	GUARD_FMT_TMKMS,    /* tmkms state file: steps 0/1/2, block_id */
	GUARD_FMT_HORCRUX,  /* horcrux threshold {chain}_priv_validator_state.json */
	GUARD_FMT_P11KMS,   /* CometBFT's fields plus "chain_id" (our own export) */
};

/* The parsed content of a JSON state file (any format). */
struct guard_state {
	struct guard_hrs hrs; /* CometBFT step numbers, tmkms converted (docs/state.md) */
	enum guard_fmt fmt;   /* the format parsed (AUTO resolved) */
	int src_step;	      /* the step as the source numbers it (tmkms: 0/1/2) */
	uint8_t sign_bytes[GUARD_MAX_SIGN_BYTES];
	size_t sign_bytes_len; /* 0: none */
	uint8_t signature[GUARD_SIG_LEN];
	int has_signature;
	char chain_id[GUARD_MAX_CHAIN_ID + 1]; /* P11KMS format only; "" otherwise */
	/* tmkms only: its block_id (informational; no sign bytes exist). */
	int has_block_id;
	uint8_t block_hash[64];
	size_t block_hash_len;
	uint32_t parts_total;
	uint8_t parts_hash[64];
	size_t parts_hash_len;
};

/* "cometbft", "tmkms", "horcrux", "p11kms" ("auto" for GUARD_FMT_AUTO). */
const char *guard_fmt_name(enum guard_fmt fmt);
/* What step number step means in fmt: tmkms 0/1/2 proposal/prevote/precommit, else as
 * guard_step_name. */
const char *guard_fmt_step_name(enum guard_fmt fmt, int step);

/*
 * The format whose shape the JSON text has (docs/state.md, "Formats"): a
 * block_id member → tmkms; chain_id → p11kms; nonce_public, ephemeral_public
 * or vote_ext_signature, or else round a string → horcrux; round a number →
 * CometBFT. GUARD_FMT_AUTO when it has none of these shapes or mixes them;
 * why (cap bytes) says what decided. Pure, no logging.
 */
enum guard_fmt guard_state_detect(const uint8_t *p, size_t n, char *why, size_t cap);

/*
 * The pure parser of the JSON formats: no I/O, no global state (fuzzed).
 * Each format is read only from a file of its own shape: with an explicit
 * fmt, a file that has another format's shape (guard_state_detect) is
 * KMS_ERR_FORMAT, logged naming the shape found; GUARD_FMT_AUTO uses the
 * detected format. Members the format's writer does not produce are refused;
 * height must be a decimal string, round a string (tmkms, horcrux) or a JSON
 * number (cometbft, p11kms). KMS_ERR_FORMAT (with a log line naming the
 * field) on anything invalid: negative or out-of-range numbers, unknown
 * steps, bad hex/base64, a signature that is not 64 bytes. Sign bytes
 * without a signature (or the reverse) are dropped with a warning: the same
 * H/R/S is then refused. KMS_ERR_TOO_LARGE if n > 64 KiB or sign bytes >
 * GUARD_MAX_SIGN_BYTES.
 */
KMS_MUST_CHECK int guard_state_parse_json(const uint8_t *p, size_t n, enum guard_fmt fmt,
					  struct guard_state *out);

/*
 * The pure parser of a p11kms state file image (both slots, GUARD_FILE_SIZE
 * bytes = 16384): the newest valid record into st (fmt P11KMS, chain_id set)
 * and its sequence into *seq. KMS_ERR_FORMAT if no slot is valid or the size
 * is wrong. No I/O (fuzzed; guard_open uses the same code).
 */
KMS_MUST_CHECK int guard_state_parse_file(const uint8_t *p, size_t n, struct guard_state *st,
					  uint64_t *seq);

/*
 * Imports a JSON state into path for chain_id, read as guard_state_parse_json
 * reads it (an explicit fmt must match the file's shape: KMS_ERR_FORMAT). A
 * missing file is created (as guard_state_init). An existing one is refused
 * with KMS_ERR_EXISTS unless allow_overwrite, and even then only if it is not
 * in doubt (KMS_ERR_FORMAT: `state repair` first) and the imported H/R/S is
 * not behind it (else KMS_ERR_REFUSED); the new record is then written like a
 * signature (sequence + 1, fdatasync, after the write-back of the current
 * record). A P11KMS-format chain_id that differs from chain_id is
 * KMS_ERR_REFUSED. Sign bytes in the JSON must decode as a canonical
 * vote/proposal matching its H/R/S.
 */
KMS_MUST_CHECK int guard_state_import(const char *path, const char *chain_id, const uint8_t *json,
				      size_t len, enum guard_fmt fmt, int allow_overwrite);

/*
 * Appends the state at path to out in the given format:
 *   COMETBFT  exactly as cmtjson.MarshalIndent writes priv_validator_state.json
 *             (height string, round and step numbers, signature base64,
 *             signbytes UPPERCASE hex, empty values omitted, 2-space indent,
 *             no trailing newline);
 *   TMKMS     compact, steps 0/1/2, height/round strings, block_id from the
 *             stored sign bytes (nil → the empty default object);
 *   HORCRUX   as COMETBFT with round as a string;
 *   P11KMS    as COMETBFT plus "chain_id".
 * GUARD_FMT_AUTO is KMS_ERR_UNSUPPORTED. Errors as guard_open (without the
 * chain-id check), KMS_ERR_NO_SPACE if out's cap is too small.
 */
KMS_MUST_CHECK int guard_state_export(const char *path, enum guard_fmt fmt, struct kbuf *out);

/*
 * Appends a human-readable description: chain, H/R/S with the step name,
 * sequence, sign-bytes length and SHA-256 prefix, signature presence, when
 * the record was written, and both slots (an invalid one with what its header
 * claims, and a note that start refuses it). Takes no lock, so it works while
 * the daemon runs: a record being rewritten fails its checksum and the other
 * slot is shown (consistent, at most one state behind).
 */
KMS_MUST_CHECK int guard_state_show(const char *path, struct kbuf *out);

/* ---- `state repair`: a state that start refuses because a record is in doubt ---- */

/* One slot as repair sees it. */
struct guard_record_view {
	int valid;	      /* magic, checksum and fields verified */
	int readable;	      /* the header's magic is there: seq and hrs read from it */
	uint64_t seq;	      /* UNVERIFIED when !valid */
	struct guard_hrs hrs; /* UNVERIFIED when !valid */
	int has_sig;	      /* the record to accept stores sign bytes and a signature */
	char why[96];	      /* why it is invalid ("" when valid) */
};

struct guard_repair_view {
	struct guard_record_view rec[2];
	int healthy;	      /* both valid, distinct sequences: start accepts it */
	int accept_slot;      /* the one valid record (when exactly one is), else -1 */
	int unreadable;	      /* slots whose header cannot be read at all */
	int64_t floor_height; /* the highest height either record names, verified or not */
	char chain_id[GUARD_MAX_CHAIN_ID + 1]; /* of the valid record(s), "" if none */
};

/*
 * What the state file at path holds, slot by slot, under its lock
 * (KMS_ERR_LOCKED while a signer runs). KMS_ERR_FORMAT only if the file is
 * not a 16 KiB state file at all (restore it or import).
 */
KMS_MUST_CHECK int guard_state_repair_view(const char *path, struct guard_repair_view *out);

/*
 * The operator's two choices, each refused (KMS_ERR_REFUSED, logged) on a
 * healthy file or another chain's, and while a signer holds the lock:
 *   accept  keep the one valid record, whose sequence must be seq (the one
 *           the operator saw), written into both slots; the invalid record is
 *           lost: if its signature had been released, the next request at its
 *           H/R/S may be signed again (the operator's call: after a crash or a
 *           power cut it was never released);
 *   height  start over at (height, 0, none), written into both slots; height
 *           must be above floor_height (every height either record names), so
 *           nothing either record may have signed can be signed again.
 */
KMS_MUST_CHECK int guard_state_repair_accept(const char *path, const char *chain_id, uint64_t seq);
KMS_MUST_CHECK int guard_state_repair_height(const char *path, const char *chain_id,
					     int64_t height);

#endif
