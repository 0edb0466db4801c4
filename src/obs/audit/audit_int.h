/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log's on-disk format (version 1) and the helpers shared inside src/obs/audit. */
#ifndef P11KMS_AUDIT_INT_H
#define P11KMS_AUDIT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/audit.h"
#include "p11kms/kbuf.h"

/* Queue entries the writer takes per lock hold: the copy (about 0.5 KiB each) is what a
 * connection thread may wait for when it queues at the same moment, so it stays short.
 * The verifier's crash bound counts them (taken, not yet written). */
#define AUDIT_TAKE_MAX 32

/*
 * A file: the 8-byte preamble "P11KAUD" 0x01, then frames. A frame:
 *   u32 len ‖ u32 ~len ‖ body[len] ‖ hash[32] = SHA-256(len ‖ ~len ‖ body)
 * The doubled length lets a reader tell a damaged length (the two disagree)
 * from a frame that is only partly on disk (they agree; the file ends first).
 * Every body starts with the common part:
 *   u8 type ‖ u8 version (1) ‖ u16 flags ‖ u64 seq ‖ prev[32]
 * seq counts records from 0 (the first file's header) across files; prev is
 * the hash of the record before (zeros for record 0). All integers are
 * little-endian. docs/audit.md has the layout of every record type.
 */
#define AUDIT_MAGIC "P11KAUD\x01"
#define AUDIT_MAGIC_LEN 8
#define AUDIT_FRAME_PREFIX 8
#define AUDIT_HASH_LEN 32
#define AUDIT_BODY_MIN 44
#define AUDIT_BODY_MAX 65536
#define AUDIT_STR_MAX 1024
#define AUDIT_BODY_VERSION 1
#define AUDIT_LOG_ID_LEN 16
#define AUDIT_SIG_LEN 64
#define AUDIT_MAX_CHAINS 256 /* in one start or note record */

/* The message a checkpoint signature covers: this domain, the log id, the body before the signature. */
#define AUDIT_CP_DOMAIN "p11kms audit checkpoint v1\n"

enum audit_type {
	AUDIT_REC_HEADER = 1,
	AUDIT_REC_DECISION = 2,
	AUDIT_REC_CHECKPOINT = 3,
	AUDIT_REC_START = 4,
	AUDIT_REC_NOTE = 5,
};

/* Decision flags. */
#define AUDIT_F_SIGN_BYTES 0x1
#define AUDIT_F_EXT_SIGNED 0x2
/* Checkpoint flags: signed (64 signature bytes end the body), or signing failed. */
#define AUDIT_F_CP_SIGNED 0x1
#define AUDIT_F_CP_SIGN_FAILED 0x2

enum audit_cp_reason {
	AUDIT_CP_PERIODIC = 1,
	AUDIT_CP_ROTATE = 2,   /* the last record of a file that was rotated */
	AUDIT_CP_SHUTDOWN = 3, /* the last record of a clean stop */
};

enum audit_note_kind {
	AUDIT_NOTE_DROPPED = 1, /* the queue was full: these decisions were not recorded */
	AUDIT_NOTE_LOST = 2,	/* writes failed: these decisions were not recorded */
};

/* A string inside a body (borrowed). */
struct audit_str {
	const uint8_t *p;
	size_t n;
};

struct audit_hdr {
	uint8_t log_id[AUDIT_LOG_ID_LEN];
	uint64_t file_index;
	int64_t wall_ns;
	uint32_t prev_torn; /* bytes of an incomplete record that end the previous file */
	uint32_t batch_records, batch_ms, queue_cap, checkpoint_every;
	uint8_t key_alg; /* 0 none, 1 Ed25519 */
	uint8_t key[32];
	struct audit_str host, version;
};

struct audit_dec {
	int64_t wall_ns, mono_ns, height;
	int32_t round, code;
	uint64_t guard_seq;
	int64_t latency_ns, sign_ns, sync_ns;
	uint8_t msg, decision, why, step;
	uint8_t block_hash_len;
	uint8_t block_hash[32];
	uint8_t sign_bytes_sha256[32];
	struct audit_str chain_id, peer, slot, detail;
};

struct audit_cp {
	int64_t wall_ns;
	uint8_t reason;
	const uint8_t *sig; /* [64] when AUDIT_F_CP_SIGNED */
};

/* One chain of a start record. */
struct audit_start_chain {
	struct audit_str chain_id;
	uint64_t guard_seq;
	int64_t height;
	int32_t round;
	uint8_t step;
	uint32_t n_conns;
};

struct audit_start {
	int64_t wall_ns;
	uint32_t pid;
	uint32_t n_chains;
	const uint8_t *list; /* the chains, validated; read with audit_start_chain_at() */
	size_t list_len;
};

/* One chain of a note: decisions with new signatures that were not recorded. */
struct audit_note_chain {
	struct audit_str chain_id;
	uint64_t n_signed, first_seq, last_seq;
};

struct audit_note {
	uint8_t kind;
	int32_t err, sys_errno;
	int64_t first_ns, last_ns;
	uint64_t total, n_signed, n_stored, n_refused;
	uint32_t n_chains;
	const uint8_t *list;
	size_t list_len;
};

/* A parsed record (strings and lists borrow the file image). */
struct audit_rec {
	uint8_t type, version;
	uint16_t flags;
	uint64_t seq;
	uint8_t prev[32];
	const uint8_t *body;
	size_t body_len;
	union {
		struct audit_hdr hdr;
		struct audit_dec dec;
		struct audit_cp cp;
		struct audit_start st;
		struct audit_note note;
	} u;
};

/* One frame located in a file image. */
struct audit_frame {
	size_t off, size; /* whole frame: prefix + body + hash */
	const uint8_t *body;
	size_t body_len;
	uint8_t hash[32]; /* SHA-256 of the frame's bytes, computed */
	int hash_ok;	  /* the stored hash equals it */
};

/*
 * The frame at p[off..n): KMS_OK (fr filled), KMS_ERR_INCOMPLETE (the file
 * ends inside a frame whose length is intact, or inside the length itself:
 * the tail), KMS_ERR_FORMAT (the length is damaged or out of range).
 */
KMS_MUST_CHECK int audit_frame_at(const uint8_t *p, size_t n, size_t off, struct audit_frame *fr);
/* Appends a frame around body (prefix, body, hash); *hash gets the record hash. */
KMS_MUST_CHECK int audit_frame_put(struct kbuf *out, const uint8_t *body, size_t len,
				   uint8_t hash[static 32]);

/*
 * Parses a body. KMS_ERR_UNSUPPORTED: a type or version this build does not
 * know; KMS_ERR_FORMAT: anything malformed (lengths, non-zero padding,
 * trailing bytes, out-of-range values).
 */
KMS_MUST_CHECK int audit_body_parse(const uint8_t *body, size_t len, struct audit_rec *rec);
/* Entry i of a validated list (i < n_chains). */
void audit_start_chain_at(const struct audit_start *st, uint32_t i, struct audit_start_chain *c);
void audit_note_chain_at(const struct audit_note *nt, uint32_t i, struct audit_note_chain *c);

/* ---- encoding (the writer, tests) ---- */

/* Each encoder writes a whole body (common part first) for record seq after prev. */
KMS_MUST_CHECK int audit_enc_header(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
				    const struct audit_hdr *h, const char *host,
				    const char *version);
KMS_MUST_CHECK int audit_enc_decision(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
				      const struct obs_event *ev);
/* flags AUDIT_F_CP_SIGNED: the caller appends the 64 signature bytes after signing. */
KMS_MUST_CHECK int audit_enc_checkpoint(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
					uint16_t flags, int64_t wall_ns, uint8_t reason);
/* The start record's fixed part; then audit_enc_start_chain n times. */
KMS_MUST_CHECK int audit_enc_start(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
				   int64_t wall_ns, uint32_t pid, uint32_t n);
KMS_MUST_CHECK int audit_enc_start_chain(struct kbuf *b, const char *chain_id, uint64_t seq,
					 int64_t height, int32_t round, uint8_t step,
					 uint32_t n_conns);
/* The note's fixed part (nt->list ignored); then audit_enc_note_chain nt->n_chains times. */
KMS_MUST_CHECK int audit_enc_note(struct kbuf *b, uint64_t seq, const uint8_t prev[static 32],
				  const struct audit_note *nt);
KMS_MUST_CHECK int audit_enc_note_chain(struct kbuf *b, const char *chain_id, uint64_t n_signed,
					uint64_t first, uint64_t last);

/* The message a checkpoint signature signs, into out (cap >= body_len + 64). */
KMS_MUST_CHECK int audit_cp_message(const uint8_t log_id[static 16], const uint8_t *body,
				    size_t body_len_without_sig, uint8_t *out, size_t cap,
				    size_t *len);

/* "prevote", "signed", ... for the numeric fields of a decision (bounds-checked). */
const char *audit_msg_name(uint8_t m);
const char *audit_decision_name(uint8_t d);
const char *audit_why_name(uint8_t w);
const char *audit_cp_reason_name(uint8_t r);
const char *audit_type_name(uint8_t t);

/* "2025-03-01T12:00:00.123456Z" from ns since the epoch. */
void audit_fmt_time(int64_t ns, char out[static 40]);

/* Tests: the writer's wall clock (record times, file names, daily rotation); NULL restores. */
void audit_set_wall_clock(int64_t (*now)(void));

/* ---- files ---- */

/* "audit-0000000012-20250301.log" for file number idx created at wall_ns. */
void audit_file_name(uint64_t idx, int64_t wall_ns, char out[static 64]);
/* The file number in a name made by audit_file_name (optionally ".gz"); -1 if not one. */
int audit_file_index(const char *name, uint64_t *idx);

#define AUDIT_STATUS_FILE "audit.status"
#define AUDIT_STATUS_SIZE 1024

/* Creates/opens <dir>/audit.status and takes its OFD write lock (KMS_ERR_LOCKED if held). */
KMS_MUST_CHECK int audit_lock_dir(const char *dir, int *fd);
/* A state file's sequence and H/R/S, read without its lock (audit_state_seq_read). */
KMS_MUST_CHECK int audit_state_read(const char *state_file, uint64_t *seq, int64_t *height,
				    int32_t *round, uint8_t *step);

/* What one file holds, found by walking its frames (the writer's restart, doctor). */
struct audit_scan {
	int has_header; /* the first frame is a readable header */
	uint8_t log_id[AUDIT_LOG_ID_LEN];
	uint64_t file_index;
	uint64_t frames;     /* complete frames */
	int has_last;	     /* at least one complete frame */
	uint64_t last_seq;   /* seq of the last frame whose body parsed */
	uint64_t after_last; /* complete frames after that one (body unreadable) */
	uint8_t last_hash[32];
	uint8_t last_type, last_reason;
	int64_t last_wall_ns;
	size_t torn;		/* bytes after the last complete frame */
	int damaged;		/* a hash or body did not check, or the framing broke */
	uint64_t lost, dropped; /* decisions the notes of this file say were not recorded */
	uint64_t lost_notes;
	int64_t last_error_ns;
};
/* Never fails on content: damage is reported in s. KMS_ERR_FORMAT: no preamble. */
KMS_MUST_CHECK int audit_scan_file(const uint8_t *p, size_t n, struct audit_scan *s);

#endif
