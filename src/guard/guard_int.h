/* SPDX-License-Identifier: Apache-2.0 */
/* Private declarations shared by the guard_ sources (walker, state file, formats). */
#ifndef P11KMS_GUARD_INT_H
#define P11KMS_GUARD_INT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/guard.h"

/* ---- guard_pb.c: minimal protobuf walker of canonical sign bytes (spec §4) ---- */

struct guard_canon {
	int is_proposal;
	enum guard_step step; /* from the type field: 32 → propose, 1 → prevote, 2 → precommit */
	int64_t height;
	int64_t round;
	const uint8_t *body; /* the message after the uvarint length prefix */
	size_t body_len;
	size_t ts_off; /* the whole timestamp field (key, length, value) within body */
	size_t ts_len;
	int64_t ts_seconds;
	int32_t ts_nanos;
	const uint8_t *chain_id;
	size_t chain_id_len;
	const uint8_t *block_id; /* CanonicalBlockID value; NULL when nil (omitted) */
	size_t block_id_len;
};

/*
 * Decodes uvarint(len) ‖ CanonicalVote/CanonicalProposal strictly: the length
 * must cover the rest exactly, only the known fields with their wire types,
 * no duplicates, a type of 1, 2 or 32, a timestamp present. Pointers in c
 * borrow p. KMS_ERR_FORMAT otherwise.
 */
KMS_MUST_CHECK int guard_pb_decode(const uint8_t *p, size_t n, struct guard_canon *c);

/* 1 if a and b are equal except for their timestamp fields. */
int guard_pb_equal_but_ts(const struct guard_canon *a, const struct guard_canon *b);

/* Decodes a CanonicalBlockID value {hash=1, part_set_header=2{total=1, hash=2}}. */
KMS_MUST_CHECK int guard_pb_block_id(const uint8_t *p, size_t n, const uint8_t **hash,
				     size_t *hash_len, uint32_t *total, const uint8_t **parts_hash,
				     size_t *parts_hash_len);

/* ---- guard_file.c: the two-slot state file (docs/state.md) ---- */

#define GUARD_FILE_MAGIC "P11KGST1"
#define GUARD_FILE_VERSION 2u /* written; format 1 records are still read */
#define GUARD_SLOT_SIZE 8192u
#define GUARD_FILE_SIZE (2u * GUARD_SLOT_SIZE)
/* One record's image, at the start of its slot (layout: guard_file.c, docs/state.md):
 * format 1 is always GUARD_REC_LEN bytes; format 2 is only the bytes it uses, at
 * most GUARD_REC_LEN (a vote or a proposal fits the slot's first 512-byte block). */
#define GUARD_REC_LEN 4308u

/* One record, in memory. */
struct guard_rec {
	uint64_t seq;
	int64_t written_at; /* unix seconds */
	struct guard_hrs hrs;
	int has_sig;
	char chain_id[GUARD_MAX_CHAIN_ID + 1];
	uint8_t signature[GUARD_SIG_LEN];
	size_t sign_bytes_len;
	uint8_t sign_bytes[GUARD_MAX_SIGN_BYTES];
};

/* What one slot holds, as far as it can be read (for messages, `state show` and repair). */
struct guard_slot_info {
	int ok;	      /* a valid record: magic, checksum, field ranges */
	int readable; /* the header's magic is there: seq and hrs below read from it */
	uint64_t seq; /* when !ok: UNVERIFIED (from a record that fails its checksum) */
	struct guard_hrs hrs;
	const char *why; /* why it is invalid (static text), NULL when ok */
};

/* How much doubt a load accepts. */
enum guard_load {
	GUARD_LOAD_STRICT, /* both records valid (start, import, export): else KMS_ERR_FORMAT */
	GUARD_LOAD_ANY,	   /* the newest valid record (show): one may be invalid */
	GUARD_LOAD_REPAIR, /* any 16 KiB image (repair): gf->slot[] says what is valid */
};

/* An open, locked state file and its newest record. */
struct guard_file {
	int fd;
	int locked; /* we hold the flock (and wrote the pid sidecar) */
	char *path;
	char *pid_path;
	int cur_slot; /* the slot holding rec; the next write goes to 1 - cur_slot */
	struct guard_slot_info slot[2];
	struct guard_rec rec;
	uint8_t cur_img[GUARD_REC_LEN]; /* the current slot's record as it is in the file */
	size_t cur_len;			/* its length there (what settle_current writes back) */
	int settled; /* the name and the current record were made durable by this open */
};

/* Serialises rec into a format 2 record image (checksummed); returns its length,
 * the bytes to write (nothing after them is part of the record). */
size_t guard_rec_encode(const struct guard_rec *rec, uint8_t out[static GUARD_REC_LEN]);
/* The length of the record image at p (format 1 or 2) from its header, 0 if its
 * format or length is not one this build writes or reads (not a validity check). */
size_t guard_rec_extent(const uint8_t *p);
/* Checks and decodes one slot image: KMS_ERR_FORMAT with *why set if invalid. */
KMS_MUST_CHECK int guard_rec_decode(const uint8_t *p, size_t n, struct guard_rec *rec,
				    const char **why);
/* The sequence and H/R/S a slot image's header claims, without any check of the
 * checksum: 1 if the magic is there (the values may be torn or rotten), else 0. */
int guard_rec_peek(const uint8_t *p, size_t n, uint64_t *seq, struct guard_hrs *hrs);

/*
 * Opens path read-write, checks its permissions (on the descriptor), takes
 * the flock (LOCKED naming the holder), records our pid in the sidecar,
 * removes stale temp files, and loads the newest valid record. STRICT
 * refuses (KMS_ERR_FORMAT, logged naming both records and `state repair`)
 * unless both records are valid with distinct sequences: an invalid one may
 * be the newest, whose signature may have left (bit rot looks like a torn
 * write). chain_id may be NULL (no check). On success *gf is owned by the
 * caller (guard_file_close).
 */
KMS_MUST_CHECK int guard_file_open(const char *path, const char *chain_id, enum guard_load how,
				   struct guard_file **gf);
/* Read-only, unlocked snapshot (state show while the daemon runs): GUARD_LOAD_ANY. */
KMS_MUST_CHECK int guard_file_open_ro(const char *path, struct guard_file **gf);
/* The same with another load rule and a chain check (chain_id NULL: none): doctor (#17). */
KMS_MUST_CHECK int guard_file_open_ro_as(const char *path, const char *chain_id,
					 enum guard_load how, struct guard_file **gf);
/*
 * Writes rec into the slot not holding the current record (the older one, or
 * an invalid one during repair): pwrite + one fdatasync; rec becomes the
 * current one. The first write of an open first syncs the directory and
 * writes the current record's own bytes back into its own slot (+ fdatasync),
 * so that the record the other slot is about to lose is never the only one
 * on disk (guard_file.c, settle_current).
 */
KMS_MUST_CHECK int guard_file_write(struct guard_file *gf, const struct guard_rec *rec);
void guard_file_close(struct guard_file *gf);
/* Creates a new file holding rec in both slots (sequences 1 and 0). KMS_ERR_EXISTS if present. */
KMS_MUST_CHECK int guard_file_create(const char *path, const struct guard_rec *rec);

/* One line on a slot: "holds sequence N, h/r/s ..." or "is INVALID (why); its header
 * claims ... (unverified)". */
void guard_slot_describe(const struct guard_slot_info *si, char *buf, size_t cap);

/* Checks H/R/S and chain-id values (steps 0..3, height/round >= 0). */
KMS_MUST_CHECK int guard_hrs_valid(const struct guard_hrs *h);
/* -1, 0, 1 comparing H/R/S lexicographically. */
int guard_hrs_cmp(const struct guard_hrs *a, const struct guard_hrs *b);

#endif
