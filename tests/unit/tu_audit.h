/* SPDX-License-Identifier: Apache-2.0 */
/* Audit-log test support: build logs record by record, tamper with images, verify them. */
#ifndef P11KMS_TU_AUDIT_H
#define P11KMS_TU_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/audit.h"

/* One file image (owned). */
struct tu_img {
	char name[64];
	uint8_t *p;
	size_t n;
};

/* A log written record by record with the format's own encoders (no writer thread). */
struct tu_log {
	struct tu_img *img; /* the file being built */
	uint64_t seq;
	uint8_t hash[32];
	uint8_t log_id[16];
	uint64_t file_index;
	int has_key;
	uint8_t seed[32], pub[32]; /* checkpoint key when has_key */
};

/* Starts a log (random id); key_seed NULL: unsigned checkpoints. */
void tu_log_init(struct tu_log *l, const uint8_t *key_seed);
/* Starts file number l->file_index into img (preamble + header; batch_records given). */
void tu_log_file(struct tu_log *l, struct tu_img *img, uint32_t batch_records, uint32_t prev_torn);
/* A start record: chain with state sequence base and n_conns connections. */
void tu_log_start(struct tu_log *l, const char *chain, uint64_t base, uint32_t n_conns);
/* A decision record (obs decision) for chain at guard sequence seq. */
void tu_log_dec(struct tu_log *l, const char *chain, int decision, uint64_t guard_seq,
		int64_t height);
/* A checkpoint (signed when the log has a key). */
void tu_log_cp(struct tu_log *l, int reason);
/* A note of n signed decisions of chain at first..last not recorded (kind 1 dropped, 2 lost). */
void tu_log_note(struct tu_log *l, int kind, const char *chain, uint64_t n, uint64_t first,
		 uint64_t last);
void tu_img_free(struct tu_img *img);

/* Frames of an image: offsets and sizes (at most cap), returns the count. */
size_t tu_frames(const struct tu_img *img, size_t *off, size_t *size, size_t cap);
/* Removes frame k / swaps frames k and k+1 / cuts the image to n bytes. */
void tu_delete_frame(struct tu_img *img, size_t k);
void tu_swap_frames(struct tu_img *img, size_t k);
/* Recomputes frame k's hash and, from k+1 on, every prev link and hash (a rewrite). */
void tu_rechain(struct tu_img *img, size_t k);
/* The body of frame k (writable), and its length. */
uint8_t *tu_frame_body(struct tu_img *img, size_t k, size_t *len);

/* Verifies images in order; notes collected (tu_note_has). */
void tu_verify(const struct tu_img *imgs, size_t n, const struct audit_verify_opts *o,
	       struct audit_report *rep);
int tu_note_has(const char *needle);
void tu_notes_print(void);

/* Loads every audit file of dir into imgs (at most cap); returns the count. */
size_t tu_load_dir(const char *dir, struct tu_img *imgs, size_t cap);

#endif
