/* SPDX-License-Identifier: Apache-2.0 */
/* sc_ internals: the pure steps of the handshake and hooks for tests, fuzzers and the benchmark. */
#ifndef P11KMS_SC_INT_H
#define P11KMS_SC_INT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"
#include "p11kms/sc.h"

#define SC_EPH_MSG_LEN 35      /* 22 0a 20 <32> */
#define SC_AUTHSIG_MSG_LEN 103 /* 66 0a 22 0a 20 <pub32> 12 40 <sig64> */
#define SC_AUTHSIG_MAX 1024    /* refuse longer AuthSig length prefixes before reading */

/*
 * sc_handshake with a fixed ephemeral X25519 private key (eph_priv NULL =
 * random, as in sc_handshake). Only tests use a fixed key: reusing an
 * ephemeral key breaks forward secrecy.
 */
KMS_MUST_CHECK int sc_handshake_eph(int fd, const struct sc_identity *id,
				    const uint8_t *expected_peer_id, int timeout_ms,
				    const uint8_t *eph_priv, struct sc_conn **out);

/*
 * Parses the 35-byte ephemeral key message. KMS_ERR_FORMAT with a static
 * reason in *why when malformed. Pure.
 */
KMS_MUST_CHECK int sc_parse_eph_msg(const uint8_t *p, size_t len, uint8_t pub[static 32],
				    const char **why);
/*
 * Parses a delimited AuthSigMessage (length prefix included). KMS_ERR_FORMAT
 * (malformed, trailing bytes), KMS_ERR_TOO_LARGE (length over SC_AUTHSIG_MAX),
 * KMS_ERR_AUTH (a non-ed25519 key, or a signature that is not 64 bytes),
 * with a static reason in *why. Pure.
 */
KMS_MUST_CHECK int sc_parse_authsig(const uint8_t *p, size_t len, uint8_t pub[static 32],
				    uint8_t sig[static 64], const char **why);

/* 1 if pub is one of the seven low-order X25519 encodings (constant time). */
int sc_is_low_order(const uint8_t pub[static 32]);

/* okm = HKDF-SHA256(salt none, ikm dh, info KEY_AND_CHALLENGE_GEN, 96 bytes). */
KMS_MUST_CHECK int sc_hkdf(const uint8_t dh[static 32], uint8_t okm[static 96]);
/* recv/send keys from dh and loc_is_least (spec §2.1 step 7). */
KMS_MUST_CHECK int sc_derive_keys(const uint8_t dh[static 32], int loc_is_least,
				  uint8_t recv[static 32], uint8_t send[static 32]);
/* The Merlin challenge of lo, hi (sorted ephemeral keys) and dh (step 6 and 8). */
KMS_MUST_CHECK int sc_challenge(const uint8_t lo[static 32], const uint8_t hi[static 32],
				const uint8_t dh[static 32], uint8_t challenge[static 32]);

/*
 * A connection on fd with the given keys and counters at 0, without a
 * handshake (remote key all zero). For the fuzzer, tests and the benchmark.
 */
KMS_MUST_CHECK int sc_conn_new_keys(int fd, const uint8_t send_key[static 32],
				    const uint8_t recv_key[static 32], struct sc_conn **out);
/* Sets the frame counters (tests: counter exhaustion). */
void sc_conn_set_counters(struct sc_conn *c, uint64_t send_ctr, uint64_t recv_ctr);
void sc_conn_get_counters(const struct sc_conn *c, uint64_t *send_ctr, uint64_t *recv_ctr);

/* Seals one frame of n <= 1024 bytes with the send key at the send counter (which then advances). */
KMS_MUST_CHECK int sc_seal_frame(struct sc_conn *c, const uint8_t *p, size_t n,
				 uint8_t out[static SC_FRAME_SEALED]);
/*
 * Opens one sealed frame with the receive key at the receive counter (which
 * then advances); the data (*n <= 1024 bytes) is copied to data.
 * KMS_ERR_MAC_INVALID, KMS_ERR_FORMAT (chunk length > 1024), KMS_ERR_TOO_LARGE.
 */
KMS_MUST_CHECK int sc_open_frame(struct sc_conn *c, const uint8_t in[static SC_FRAME_SEALED],
				 uint8_t data[static SC_DATA_MAX], size_t *n);

#endif
