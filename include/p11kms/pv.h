/* SPDX-License-Identifier: Apache-2.0 */
/* pv_: privval messages for every protocol version, canonical sign bytes, framing. */
#ifndef P11KMS_PV_H
#define P11KMS_PV_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"

/*
 * Protocol versions (spec §0). v0.34 and v0.37 share one wire format (family
 * A); v0.38 (family B, also v0.39/v0.40) adds vote extensions; v1 (family C)
 * changes PubKeyResponse, adds skip_extension_signing and SignBytesRequest.
 * PV_AUTO is the signer's default: it decodes what any family sends and
 * answers in one form that every family's decoder accepts (docs/privval.md
 * gives the reasoning, with upstream file/line references). The differences
 * live in one table (pv_version_info), never in copied code.
 */
enum pv_version { PV_V0_34, PV_V0_37, PV_V0_38, PV_V1, PV_AUTO };
#define PV_VERSION_COUNT 5

/* Node families (bit mask): which wire dialect a node speaks. */
enum pv_family {
	PV_FAM_A = 1, /* Tendermint/CometBFT v0.34, v0.37 */
	PV_FAM_B = 2, /* CometBFT v0.38, v0.39, v0.40: vote extensions */
	PV_FAM_C = 4, /* CometBFT v1: PubKeyResponse fields 3/4, skip_extension_signing */
};
#define PV_FAM_ALL (PV_FAM_A | PV_FAM_B | PV_FAM_C)

/*
 * Parses "v0.34", "v0.37", "v0.38", "v1" (also "v1.0"), "auto". Returns KMS_OK,
 * KMS_ERR_UNSUPPORTED for tmkms's legacy values ("v0.33", "legacy": amino
 * framing, never supported here) and KMS_ERR_FORMAT for anything else.
 * pv_version_parse_why() also writes a one-line reason naming the bad value
 * and the accepted ones into why (when not NULL).
 */
KMS_MUST_CHECK int pv_version_parse(const char *s, enum pv_version *out);
KMS_MUST_CHECK int pv_version_parse_why(const char *s, enum pv_version *out, char *why, size_t whycap);
/* "v0.34", "v0.37", "v0.38", "v1", "auto"; "?" for an out-of-range value. */
const char *pv_version_name(enum pv_version v);

enum pv_pubkey_layout {
	PV_PUBKEY_PUBLICKEY = 1, /* A/B: PubKeyResponse.pub_key (field 1) = PublicKey{ed25519} */
	PV_PUBKEY_BYTES_TYPE = 2, /* C: pub_key_bytes = 3, pub_key_type = 4 ("ed25519") */
	PV_PUBKEY_BOTH = 3,	  /* auto: field 1 and fields 3/4; each family skips the other */
};

/* How a version differs; one row per version (src/privval/pv_version.c). */
struct pv_version_info {
	enum pv_version version;
	const char *name;
	int has_extensions;             /* Vote.extension = 9, extension_signature = 10 */
	int has_skip_extension_signing; /* SignVoteRequest.skip_extension_signing = 3 */
	enum pv_pubkey_layout pubkey_layout;
	int tag9_is_sign_bytes;         /* 1: v1 SignBytesRequest; 0: Celestia raw bytes */
	size_t node_max_response;       /* the node's read limit for our replies (10 240) */
	unsigned families;              /* PV_FAM_* this version serves */
};
/* Never NULL for a valid enum value; NULL otherwise. */
const struct pv_version_info *pv_version_info(enum pv_version v);

/* ---- the version-free model (plain values) ---- */

#define PV_CHAIN_ID_MAX 50 /* MaxChainIDLen */
#define PV_HASH_LEN 32
#define PV_SIG_LEN 64
#define PV_ADDR_LEN 20
#define PV_PUBKEY_LEN 32
#define PV_ERRDESC_MAX 255
/* Go's zero time.Time, 0001-01-01T00:00:00Z: what an absent timestamp means. */
#define PV_GO_ZERO_TIME_SECONDS (-62135596800LL)
/* 9999-12-31T23:59:59Z, the last second Go's timestamp decoder accepts. */
#define PV_MAX_TIME_SECONDS 253402300799LL

struct pv_timestamp {
	int64_t seconds;
	int32_t nanos;
};

struct pv_block_id {
	uint8_t hash[PV_HASH_LEN];
	size_t hash_len; /* 0 or 32 */
	uint32_t psh_total;
	uint8_t psh_hash[PV_HASH_LEN];
	size_t psh_hash_len; /* 0 or 32 */
};

/* 1 when hash is empty, psh_total is 0 and psh hash is empty (spec §4). */
int pv_block_id_is_nil(const struct pv_block_id *b);
/* 1 when hash and psh hash are 32 bytes and psh_total > 0. */
int pv_block_id_is_complete(const struct pv_block_id *b);

enum pv_msg_type { PV_TYPE_PREVOTE = 1, PV_TYPE_PRECOMMIT = 2, PV_TYPE_PROPOSAL = 32 };

/*
 * A Vote. extension is borrowed: when the vote comes from pv_decode_request
 * or pv_decode_response it points into the pv_request/pv_response and lives
 * as long as it; a caller building a vote points it at its own memory.
 * Families B/C only: A never decodes nor emits extension fields.
 */
struct pv_vote {
	int32_t type;
	int64_t height;
	int32_t round;
	struct pv_block_id block_id;
	struct pv_timestamp timestamp;
	uint8_t validator_address[PV_ADDR_LEN];
	size_t validator_address_len; /* 0 or 20 */
	int32_t validator_index;
	uint8_t signature[PV_SIG_LEN];
	size_t signature_len; /* <= 64 (64 once signed) */
	const uint8_t *extension;
	size_t extension_len;
	uint8_t extension_signature[PV_SIG_LEN];
	size_t extension_signature_len; /* <= 64 (64 once signed) */
};

struct pv_proposal {
	int32_t type;
	int64_t height;
	int32_t round;
	int32_t pol_round;
	struct pv_block_id block_id;
	struct pv_timestamp timestamp;
	uint8_t signature[PV_SIG_LEN];
	size_t signature_len; /* <= 64 (64 once signed) */
};

enum pv_req_kind {
	PV_REQ_PUBKEY = 1,
	PV_REQ_SIGN_VOTE = 2,
	PV_REQ_SIGN_PROPOSAL = 3,
	PV_REQ_PING = 4,
	/* v1 SignBytesRequest, and oneof tag 9 on other versions (Celestia's raw bytes) */
	PV_REQ_SIGN_BYTES = 5,
};
const char *pv_req_kind_name(enum pv_req_kind k);

struct pv_request {
	enum pv_req_kind kind;
	char chain_id[PV_CHAIN_ID_MAX + 1]; /* NUL-terminated; "" for ping and sign-bytes */
	int skip_extension_signing;          /* v1 only; always 0 on other versions */
	struct pv_vote vote;                 /* PV_REQ_SIGN_VOTE */
	struct pv_proposal proposal;         /* PV_REQ_SIGN_PROPOSAL */
	const uint8_t *sign_bytes_value;     /* PV_REQ_SIGN_BYTES (v1 value; borrowed from the request) */
	size_t sign_bytes_len;
	unsigned wire; /* PV_WIRE_*: what the bytes carried, whatever the decoding version */
};

/*
 * Fields seen on the wire even when the decoding version ignores them: the
 * evidence of which family the node speaks (pv_request_families).
 */
enum pv_wire {
	PV_WIRE_VOTE_EXT = 1, /* Vote.extension (9) or extension_signature (10) non-empty */
	PV_WIRE_SKIP_EXT = 2, /* SignVoteRequest.skip_extension_signing (3) = true */
};

/*
 * The node families (PV_FAM_*) a decoded request is consistent with:
 * skip_extension_signing only comes from v1 nodes, and a v1 node sets it on
 * every prevote (upstream v1.0.1 internal/consensus/state.go:2552,
 * privval/signer_client.go:96), so a prevote without it is not from v1;
 * vote extension fields only come from v0.38 and later. Everything else is
 * PV_FAM_ALL. Pure.
 */
unsigned pv_request_families(const struct pv_request *r);
/*
 * What a family mask means to an operator: "v1", "v0.38 or later", "v0.34,
 * v0.37 or v0.38", ... (static text).
 */
const char *pv_families_name(unsigned families);
/* The protocol_version value to suggest for a family mask ("v1", "v0.38", ...; "auto" if several). */
const char *pv_families_suggest(unsigned families);

/* Stable RemoteSignerError codes (docs/privval.md). Only ever appended. */
enum pv_code {
	PV_CODE_UNKNOWN = 0,           /* generic (CometBFT's reference signer uses 0 for everything) */
	PV_CODE_INVALID_REQUEST = 1,   /* validation failed */
	PV_CODE_DOUBLE_SIGN = 2,       /* guard refusal: conflicting data or H/R/S regression (tmkms: 2) */
	PV_CODE_CHAIN_ID_MISMATCH = 3, /* reserved, never sent: see pv_reference_refusal() */
	PV_CODE_MAX_HEIGHT = 4,
	PV_CODE_SIGN_FAILED = 5,       /* token/HSM error */
	PV_CODE_STATE_UNAVAILABLE = 6, /* state could not be made durable */
	PV_CODE_UNSUPPORTED = 7,       /* reserved, never sent: see pv_reference_refusal() */
	PV_CODE_TOO_LARGE = 8,         /* sign input over the token's limit */
};

/* ---- signer side ---- */

/*
 * Decodes one Message (no length prefix) for version v into a new request.
 * Checks: protobuf well-formed; the oneof is a request (1, 3, 5, 7, 9);
 * SignVoteRequest.vote / SignProposalRequest.proposal present; hash lengths
 * 0 or 32; signature lengths <= 64; validator address 0 or 20 bytes;
 * height and round >= 0; nanos in [0, 999999999]; seconds within
 * 0001-01-01..9999-12-31; chain_id <= 50 bytes without NUL or control
 * characters (it ends up in log lines). Absent timestamp
 * = Go zero time; absent block_id = nil. For family A, fields 9/10 of Vote are
 * ignored as a family-A node would (unknown fields).
 * Returns KMS_OK, KMS_ERR_FORMAT (undecodable: close the connection),
 * KMS_ERR_UNSUPPORTED (a well-formed Message whose oneof is not a request,
 * or no oneof at all), KMS_ERR_ALLOC. On failure *out is NULL and a reason is
 * logged at WARN (never the whole message). Pure apart from logging (fuzzed).
 */
KMS_MUST_CHECK int pv_decode_request(enum pv_version v, const uint8_t *p, size_t n, struct pv_request **out);
void pv_request_free(struct pv_request *r);

/*
 * Semantic checks before the guard (spec §3.6): chain_id equals
 * configured_chain_id (for pubkey, vote and proposal; ping and sign-bytes
 * carry none); vote type 1 or 2; height > 0; round >= 0; BlockID nil or
 * complete; a non-empty extension only on a non-nil precommit; proposal type
 * 32, pol_round >= -1 and < round when >= 0, BlockID complete.
 * Returns KMS_OK, KMS_ERR_REFUSED for a chain-id mismatch, KMS_ERR_FORMAT
 * for anything else; why gets a one-line reason (H/R, both chain ids...).
 * Use pv_code_for_err() to turn the result into a RemoteSignerError code.
 */
KMS_MUST_CHECK int pv_validate_request(const struct pv_request *r, const char *configured_chain_id, char *why,
				       size_t whycap);

/* For results of pv_validate_request and the layers after it:
 * KMS_ERR_FORMAT -> INVALID_REQUEST, KMS_ERR_DOUBLE_SIGN -> DOUBLE_SIGN,
 * KMS_ERR_STATE_IO -> STATE_UNAVAILABLE, KMS_ERR_PKCS11/KMS_ERR_CRYPTO ->
 * SIGN_FAILED, KMS_ERR_TOO_LARGE -> TOO_LARGE (max_height refusals: use
 * PV_CODE_MAX_HEIGHT directly), else UNKNOWN — including KMS_ERR_REFUSED
 * (chain-id mismatch) and KMS_ERR_UNSUPPORTED (SignBytes), which are answered
 * with code 0 and pv_reference_refusal()'s text. */
enum pv_code pv_code_for_err(int kms_err);

/*
 * The description CometBFT's reference signer (privval/signer_requestHandler.go)
 * sends, with code 0, when it refuses a request for another chain-id: "unable
 * to provide pubkey" (v1: "unable to provide pubkey type and bytes"), "unable
 * to sign vote", "unable to sign proposal"; and the recommended SignBytes
 * refusal "sign_bytes disabled" (spec §7.2, §7.4). p11kms answers those two
 * refusals with exactly these bytes, as the golden exchanges in
 * privval_messages.json do, and logs the details (both chain-ids) instead.
 * Empty string for PV_REQ_PING.
 */
const char *pv_reference_refusal(enum pv_version v, enum pv_req_kind k);

/*
 * Whether the signer must produce Vote.extension_signature for this
 * (validated) vote request: family B: every non-nil precommit (even with an
 * empty extension; the node panics otherwise); family C: non-nil precommit
 * and !skip_extension_signing; family A: never.
 */
int pv_wants_extension_signature(enum pv_version v, const struct pv_request *r);

/*
 * Encoders append one Message (no length prefix) to out; on error out is
 * left as it was. Byte-exact with upstream (gogoproto):
 * non-nullable fields always emitted, zero scalars omitted.
 *   pubkey:   A/B pub_key{ed25519}; C pub_key_bytes + pub_key_type "ed25519".
 *   vote:     the request vote echoed with signature, possibly replaced
 *             timestamp, and (B/C) extension + extension_signature.
 *   error:    the response type matching for_kind, with RemoteSignerError
 *             {code, description} and, as Go does, the empty non-nullable
 *             vote/proposal/pub_key; SignBytesResponse for PV_REQ_SIGN_BYTES.
 *             description may be NULL or "" (then omitted).
 * KMS_ERR_NO_SPACE when out's cap is too small, KMS_ERR_INTERNAL for a bad
 * argument (e.g. an error for PV_REQ_PING, which has no error field).
 */
KMS_MUST_CHECK int pv_encode_pubkey_response(enum pv_version v, const uint8_t pub[static PV_PUBKEY_LEN],
					     struct kbuf *out);
KMS_MUST_CHECK int pv_encode_signed_vote_response(enum pv_version v, const struct pv_vote *signed_vote,
						  struct kbuf *out);
KMS_MUST_CHECK int pv_encode_signed_proposal_response(enum pv_version v, const struct pv_proposal *signed_proposal,
						      struct kbuf *out);
KMS_MUST_CHECK int pv_encode_ping_response(enum pv_version v, struct kbuf *out);
KMS_MUST_CHECK int pv_encode_error_response(enum pv_version v, enum pv_req_kind for_kind, int32_t code,
					    const char *description, struct kbuf *out);

/* ---- node side (simulator, tests) ---- */

/* Encodes a request (kind, chain_id, vote/proposal, skip_extension_signing on
 * v1, sign_bytes_value for PV_REQ_SIGN_BYTES on v1). */
KMS_MUST_CHECK int pv_encode_request(enum pv_version v, const struct pv_request *r, struct kbuf *out);

struct pv_response {
	enum pv_req_kind kind; /* the request kind this answers */
	struct pv_vote vote;   /* PV_REQ_SIGN_VOTE; extension borrowed from this struct */
	struct pv_proposal proposal;
	int has_pub_key;       /* PV_REQ_PUBKEY: an ed25519 key was present */
	uint8_t pub_key[PV_PUBKEY_LEN];
	uint8_t signature[PV_SIG_LEN]; /* PV_REQ_SIGN_BYTES */
	size_t signature_len;
	int has_error;
	int32_t error_code;
	char error_description[PV_ERRDESC_MAX + 1]; /* truncated, NUL-terminated */
};

/*
 * Decodes one response Message (no prefix). KMS_ERR_FORMAT when undecodable
 * or when a field is out of range (same checks as requests, but heights are
 * not required positive); KMS_ERR_UNSUPPORTED when the oneof is not a
 * response. A PubKeyResponse carrying a non-ed25519 key is KMS_ERR_FORMAT.
 */
KMS_MUST_CHECK int pv_decode_response(enum pv_version v, const uint8_t *p, size_t n, struct pv_response **out);
void pv_response_free(struct pv_response *r);

/* ---- sign bytes (spec §4): uvarint(len) || canonical message, appended ---- */

/* CanonicalVote: nil BlockID omitted, sfixed64 height/round omitted when 0. */
KMS_MUST_CHECK int pv_vote_sign_bytes(const char *chain_id, const struct pv_vote *vote, struct kbuf *out);
/* CanonicalProposal: type always 32, pol_round int64 varint. */
KMS_MUST_CHECK int pv_proposal_sign_bytes(const char *chain_id, const struct pv_proposal *prop, struct kbuf *out);
/* CanonicalVoteExtension {extension, height, round, chain_id} (families B/C). */
KMS_MUST_CHECK int pv_vote_extension_sign_bytes(const char *chain_id, const struct pv_vote *vote,
						struct kbuf *out);

/* ---- framing (spec §1.2-1.3) ---- */

/* Default largest message body we accept (1 MiB: large vote extensions). */
#define PV_MAX_MSG_DEFAULT ((size_t)1024 * 1024)

/*
 * Pure framing check on the first n bytes of a stream: on KMS_OK, the message
 * body starts at p + *hdr_len and is *body_len bytes long (all present).
 * KMS_ERR_INCOMPLETE: more bytes needed (varint or body not complete);
 * KMS_ERR_TOO_LARGE: the prefix announces more than max (checked as soon as
 * the varint is complete); KMS_ERR_FORMAT: varint longer than 10 bytes or
 * over 2^64-1.
 */
KMS_MUST_CHECK int pv_frame_parse(const uint8_t *p, size_t n, size_t max, size_t *hdr_len, size_t *body_len);

/*
 * Where framed bytes come from and go to: the caller's callbacks (a Secret
 * Connection or a plain socket in the daemon, memory in tests). Framing
 * knows no sockets and keeps no clock: it hands the caller's absolute
 * deadline to every call unchanged, so one deadline covers a whole message.
 *   read:  at least 1 and at most cap bytes into p, *got set, before
 *          deadline; errors pass through (KMS_ERR_CONN_CLOSED, _TIMEOUT...).
 *   write: all n bytes before deadline.
 * net_stream (net.h) has callbacks of exactly these types.
 */
typedef int (*pv_read_fn)(void *ctx, uint8_t *p, size_t cap, size_t *got, int64_t deadline);
typedef int (*pv_write_fn)(void *ctx, const uint8_t *p, size_t n, int64_t deadline);

/* Largest uvarint length prefix (10 bytes). */
#define PV_FRAME_PREFIX_MAX 10

/*
 * Reads one length-prefixed message through read/ctx: the uvarint byte by
 * byte (never past this message), the length checked against max BEFORE
 * allocating, then the body. *msg is a new kbuf holding the body (caller
 * kbuf_free()s). Every read gets the same deadline: a peer that trickles
 * bytes gets KMS_ERR_TIMEOUT when the message's deadline passes. Returns the
 * source's errors (KMS_ERR_CONN_CLOSED, KMS_ERR_TIMEOUT, ...),
 * KMS_ERR_TOO_LARGE, KMS_ERR_FORMAT, KMS_ERR_ALLOC. Blocks in read.
 */
KMS_MUST_CHECK int pv_read_msg(pv_read_fn read, void *ctx, size_t max, int64_t deadline,
			       struct kbuf **msg);
/* Writes uvarint(len) || msg with ONE write call (as Go does), before deadline. */
KMS_MUST_CHECK int pv_write_msg(pv_write_fn write, void *ctx, const struct kbuf *msg,
				int64_t deadline);

#endif
