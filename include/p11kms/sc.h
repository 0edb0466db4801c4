/* SPDX-License-Identifier: Apache-2.0 */
/* sc_: CometBFT Secret Connection (STS handshake, 1044-byte ChaCha20-Poly1305 frames). */
#ifndef P11KMS_SC_H
#define P11KMS_SC_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"
#include "p11kms/net.h"

#define SC_DATA_MAX 1024     /* data bytes per frame */
#define SC_FRAME_PLAIN 1028  /* u32le length + 1024 data */
#define SC_FRAME_SEALED 1044 /* plaintext + 16-byte Poly1305 tag */
#define SC_NODE_ID_LEN 20

/*
 * Signs msg with the long-term Ed25519 identity key (64-byte signature).
 * Returns KMS_OK or a kms_err (logged by the callee). Called once per
 * handshake, from the thread running sc_handshake(), with the 32-byte
 * challenge. It can be a PKCS#11 key (slot_) or a software seed.
 */
typedef int (*sc_sign_fn)(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64]);

struct sc_identity {
	uint8_t pub[32]; /* Ed25519 public key sent in AuthSigMessage */
	sc_sign_fn sign;
	void *sign_ctx; /* borrowed; passed to sign */
};

/* An established Secret Connection (opaque). Not thread-safe: one reader and
 * one writer must not run concurrently without external locking. */
struct sc_conn;

/*
 * Runs the Secret Connection handshake on the connected socket fd
 * (spec §2.1). Symmetric: the same call serves the dialer (signer) and
 * the listener (node). The whole handshake is bounded by one deadline,
 * timeout_ms from the call (-1 = none): a peer trickling bytes cannot
 * stretch it.
 * expected_peer_id: 20 bytes (SHA-256(peer_pub)[0..20]) or NULL to accept
 * any peer; compared in constant time.
 * Returns KMS_OK and a new *out (caller frees with sc_conn_free), or:
 *   KMS_ERR_TIMEOUT, KMS_ERR_CONN_CLOSED, KMS_ERR_SYSTEM (I/O),
 *   KMS_ERR_FORMAT (malformed ephemeral or AuthSig message),
 *   KMS_ERR_AUTH (low-order/reflected key, zero DH, non-ed25519 key,
 *                 bad signature, peer id mismatch),
 *   KMS_ERR_MAC_INVALID (AuthSig frame failed to decrypt),
 *   KMS_ERR_CRYPTO, KMS_ERR_ALLOC, or the sign callback's error.
 * The reason is logged once. fd is not closed on failure.
 */
KMS_MUST_CHECK int sc_handshake(int fd, const struct sc_identity *id,
				const uint8_t *expected_peer_id, int timeout_ms,
				struct sc_conn **out);

/* Where and why a handshake failed (sc_handshake_ex). */
struct sc_hs_fail {
	const char *step;   /* "send-ephemeral", "recv-ephemeral", "check-ephemeral", "dh",
			       "derive", "sign-challenge", "send-authsig", "recv-authsig",
			       "verify-authsig", "node-id", "peer-id"; static */
	const char *reason; /* static text, or NULL (then the error code says it) */
	int not_sc;	    /* the peer's first bytes are no Secret Connection handshake
			       (an HTTP server, TLS, ...): first[] holds them */
	uint8_t first[16];
	size_t first_len;
	int has_peer_id; /* step "peer-id": the id the peer has */
	uint8_t peer_id[SC_NODE_ID_LEN];
};

/*
 * sc_handshake, but silent: on failure *fail says which step failed and why,
 * and the caller (which knows the validator entry) logs it once.
 */
KMS_MUST_CHECK int sc_handshake_ex(int fd, const struct sc_identity *id,
				   const uint8_t *expected_peer_id, int timeout_ms,
				   struct sc_hs_fail *fail, struct sc_conn **out);

/*
 * Writes all n bytes as ceil(n/1024) frames (n == 0 sends nothing).
 * timeout_ms bounds the whole write, every frame of it. Any error is fatal for the
 * connection (the send counter may have advanced): close it.
 * KMS_ERR_TIMEOUT, KMS_ERR_CONN_CLOSED, KMS_ERR_SYSTEM, KMS_ERR_CRYPTO,
 * KMS_ERR_TOO_LARGE (send counter would wrap).
 */
KMS_MUST_CHECK int sc_write(struct sc_conn *c, const uint8_t *p, size_t n, int timeout_ms);
/* sc_write with one absolute deadline (net_deadline()) for all its frames. */
KMS_MUST_CHECK int sc_write_by(struct sc_conn *c, const uint8_t *p, size_t n, int64_t deadline);

/*
 * Reads at least 1 and at most cap bytes into p (*got set): data left over
 * from the last frame first, otherwise one or more frames (empty frames are
 * skipped). timeout_ms bounds the whole call (-1 = none).
 * Fatal (every later call returns the same error): KMS_ERR_MAC_INVALID (tag
 * failed), KMS_ERR_FORMAT (chunk length > 1024 after decryption, or the peer
 * closed mid-frame), KMS_ERR_TOO_LARGE (receive counter would wrap),
 * KMS_ERR_CONN_CLOSED (peer closed at a frame boundary), KMS_ERR_SYSTEM.
 * KMS_ERR_TIMEOUT is not fatal: a partly received frame is kept and the next
 * call resumes it.
 */
KMS_MUST_CHECK int sc_read(struct sc_conn *c, uint8_t *p, size_t cap, size_t *got, int timeout_ms);
/* sc_read with an absolute deadline (net_deadline()). */
KMS_MUST_CHECK int sc_read_by(struct sc_conn *c, uint8_t *p, size_t cap, size_t *got,
			      int64_t deadline);

/* A net_stream reading/writing through c (c borrowed; must outlive the stream). */
void sc_stream(struct sc_conn *c, struct net_stream *out);

/* The peer's Ed25519 identity key. */
void sc_remote_pubkey(const struct sc_conn *c, uint8_t pub[static 32]);
/* The peer's node ID: lowercase hex of SHA-256(pub)[0..20], NUL-terminated. */
void sc_remote_id_hex(const struct sc_conn *c, char out[static 41]);
/* Node ID (20 bytes) of an Ed25519 public key. */
KMS_MUST_CHECK int sc_node_id(const uint8_t pub[static 32], uint8_t id[static 20]);

/* Wipes keys and frees; accepts NULL. Does not close the socket. */
void sc_conn_free(struct sc_conn *c);

/*
 * A software identity (node side, simulator, tests): an Ed25519 seed held in
 * memory, signing with kcrypto_ed25519_sign. seed NULL = random.
 * KMS_ERR_ALLOC, KMS_ERR_CRYPTO.
 */
struct sc_soft_identity;
KMS_MUST_CHECK int sc_soft_identity_new(const uint8_t *seed /* 32 bytes or NULL */,
					struct sc_soft_identity **out);
/* Fills *out with the public key and a sign callback borrowing si. */
void sc_soft_identity_get(const struct sc_soft_identity *si, struct sc_identity *out);
/* Wipes the seed and frees; accepts NULL. */
void sc_soft_identity_free(struct sc_soft_identity *si);

#endif
