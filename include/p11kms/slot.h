/* SPDX-License-Identifier: Apache-2.0 */
/* slot_: keys reached through PKCS#11 (URIs, modules, sessions, sign, keygen/import, hygiene). */
#ifndef P11KMS_SLOT_H
#define P11KMS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"

/*
 * A slot is one signing key on one token, named by an RFC 7512 URI:
 *
 *   pkcs11:token=validator;object=haqq-cons;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so
 *          &pin-source=/etc/p11kms/token.pin
 *
 * module-path loads that file; module-name loads the p11-kit registered module of that
 * name, else lib<name>.so from the profile's module_paths and the usual PKCS#11
 * directories. pin-value is refused (PINs never live in configs or argv): use
 * pin-source (a file, mode 0600 or stricter) or slot_opts.pin_env, or a prompt.
 * Nothing above this layer knows which token family is behind a slot; what differs
 * lives in hsm-profiles/<name>.conf (see docs/hsm.md).
 */
struct slot;

struct slot_opts {
	const char *profile; /* profile name; NULL = detect from token manufacturer/model */
	const char *pin_env; /* name of an environment variable holding the PIN, or NULL */
	int allow_prompt;    /* interactive commands: read the PIN from the tty, no echo */
	const char
		*profiles_dir; /* NULL = $P11KMS_PROFILES_DIR, <exe>/../share/p11kms/hsm-profiles,
				     then the source tree's hsm-profiles */
	unsigned timeout_ms;   /* deadline of each token call (slot_set_timeout); 0 = none.
				 Opening allows at least 10 s per token (nobody waits on it). */
	const char *chain_id;  /* for logs and status events; borrowed for the slot's life */
};

enum slot_key_type {
	SLOT_KEY_ED25519 = 1, /* CKK_EC_EDWARDS on edwards25519, signed with CKM_EDDSA */
};

/*
 * Opens the key named by uri: loads the module, finds exactly one token matching
 * the URI's token attributes, logs in (PIN from pin-source, else o->pin_env,
 * else a prompt if o->allow_prompt), finds exactly one private key matching
 * id/object, detects its type from CKA_KEY_TYPE, reads its public key
 * (CKA_EC_POINT, DER OCTET STRING or raw, from the private or the public
 * object) and signs and verifies a test message.
 * Returns KMS_OK and *out (caller slot_free()s), or: KMS_ERR_FORMAT (bad URI),
 * KMS_ERR_NOT_FOUND (module, token or key), KMS_ERR_AMBIGUOUS (several
 * tokens/keys; the candidates are logged), KMS_ERR_PERM (PIN file mode),
 * KMS_ERR_PIN_INCORRECT, KMS_ERR_PIN_LOCKED, KMS_ERR_UNSUPPORTED (key type),
 * KMS_ERR_AUTH (test signature did not verify), KMS_ERR_PKCS11, KMS_ERR_CONFIG
 * (profile). Every failure is logged once with the URI (without PIN material).
 * o may be NULL (all defaults). Not thread-safe against slot_shutdown().
 */
KMS_MUST_CHECK int slot_open(const char *uri, const struct slot_opts *o, struct slot **out);

/*
 * Failover: one key reached through n URIs (1 <= n <= 8), the primary first,
 * then backups that hold the same key (a second HSM with the key imported, a
 * SoftHSM2 or softsign token as a last resort). Each is opened as slot_open
 * does, in order. The primary must open; a backup that is unreachable at
 * start is logged as a warning and retried in the background
 * (slot_backups_unreachable tells doctor). Every member that opens must show
 * the primary's public key, else KMS_ERR_AUTH with both keys logged. Errors
 * as slot_open's.
 *
 * slot_sign then tries the members that are up, in order, then those that
 * are down, within one call: the caller sees no failure while any member
 * signs. A member that fails is marked down (logged once, OBS_ST_SLOT_DOWN)
 * and probed by a background thread until it signs again (OBS_ST_SLOT_UP);
 * members up are always preferred in their order, so a primary that answers
 * again is taken back from the next request on (OBS_ST_FAILOVER for each
 * request a backup signs; the log says it once per change of member). A member failing with a fault no retry can fix (a
 * wrong or locked PIN, a PIN of the wrong format, another public key, a
 * profile error) gets no more calls until restart.
 */
KMS_MUST_CHECK int slot_open_set(const char *const *uris, size_t n, const struct slot_opts *o,
				 struct slot **out);

/*
 * The `softsign = "path"` shorthand: registers key_path (made absolute) with the
 * softsign PKCS#11 module (slot_softsign_module_path()), re-initialising the
 * module if it was already initialised without that path, and opens the key
 * in it as slot_open would. Existing softsign slots recover their sessions
 * transparently. Same errors as slot_open.
 */
KMS_MUST_CHECK int slot_open_softsign(const char *key_path, const struct slot_opts *o,
				      struct slot **out);

/*
 * Registers softsign key files before any is opened, so the module is
 * initialised once with all of them (the daemon calls this with every
 * softsign path in the config). Paths are made absolute. Idempotent.
 */
KMS_MUST_CHECK int slot_softsign_preload(const char *const *paths, size_t n);

/* The module path: $P11KMS_SOFTSIGN_MODULE, else beside the running binary
 * (<dir of /proc/self/exe>/P11KMS_SOFTSIGN_RELATIVE_PATH, the install's bindir to
 * libdir/p11kms path, then <dir>/../lib/libp11kms-softsign.so, the build tree) if
 * it exists, else P11KMS_SOFTSIGN_INSTALL_PATH. KMS_ERR_NO_SPACE if cap is too small. */
KMS_MUST_CHECK int slot_softsign_module_path(char *out, size_t cap);

/* The 32-byte Ed25519 public key (read at slot_open; never changes). */
void slot_pubkey(const struct slot *s, uint8_t pub[static 32]);
enum slot_key_type slot_key_type(const struct slot *s);

/*
 * Signs msg with CKM_EDDSA. Thread-safe. Every token call runs on a worker
 * thread with its own logged-in session (watchdog.c); with a timeout set, the
 * caller waits for each member at most timeout_ms and holds no lock meanwhile.
 * A session the token has lost (SESSION_HANDLE_INVALID, SESSION_CLOSED,
 * USER_NOT_LOGGED_IN, DEVICE_REMOVED, TOKEN_NOT_PRESENT, ...) is re-opened
 * and logged in again (logging out first, for modules that keep claiming a
 * login the device lost), and a module that reports the token missing is
 * finalised and initialised again (backing off while it stays missing), so a
 * token that returns signs again without a restart. The first signature of
 * each session is verified against the public key (KMS_ERR_AUTH if it does
 * not verify). KMS_ERR_TOO_LARGE (before calling any token) when len is over
 * every member's profile limit. KMS_ERR_TIMEOUT at the deadline, or at once
 * when SLOT_HUNG_MAX (4) calls into a member are still stuck. On any error
 * sig is wiped. With several URIs: see slot_open_set.
 */
KMS_MUST_CHECK int slot_sign(struct slot *s, const uint8_t *msg, size_t len,
			     uint8_t sig[static 64]);

/*
 * Bounds every token call on s (one member's share of a slot_sign, a probe,
 * slot_hygiene) to timeout_ms (0: no bound); slot_opts.timeout_ms sets it from
 * the start, open included. PKCS#11 has no timeout and a USB token can hang in
 * any call; at the deadline the caller gets KMS_ERR_TIMEOUT and the worker is
 * abandoned (its late result is wiped and dropped; at most SLOT_HUNG_MAX per
 * member). A hand-off costs tens of microseconds per call.
 */
void slot_set_timeout(struct slot *s, unsigned timeout_ms);

/* The largest message some member's sign mechanism accepts (profile max_sign_input). */
size_t slot_max_input(const struct slot *s);

/*
 * The URI (without PIN material) of the member that made the calling thread's
 * latest signature with s, else the primary's: after slot_sign, the slot that
 * actually signed (the request handler puts it in its obs_event). Borrowed;
 * lives as long as s.
 */
const char *slot_describe(const struct slot *s);

/* Name of the primary's hsm-profile (e.g. "softhsm2"). Borrowed. */
const char *slot_profile_name(const struct slot *s);

/* Members (URIs) of s, and the state of member i (0 = primary). */
struct slot_member_info {
	const char *uri;   /* borrowed, without PIN material */
	int up;		   /* signed or probed fine last time */
	int disabled;	   /* failed in a way no retry fixes: not used until restart */
	int err;	   /* why it is down (kms_err), KMS_OK when up */
	unsigned long ckr; /* and the CK_RV behind it, if any */
	int stuck_calls;   /* timed-out calls that have not returned */
};
size_t slot_count(const struct slot *s);
KMS_MUST_CHECK int slot_member_info(const struct slot *s, size_t i, struct slot_member_info *out);

/*
 * The backups that are down (unreachable at start, or since): how many, and
 * one line naming each and why in msg (for doctor and the start-up log).
 */
size_t slot_backups_unreachable(const struct slot *s, char *msg, size_t cap);

/*
 * Key hygiene: the private key's attributes (1 true, 0 false, -1 unknown) and a
 * one-line verdict an operator can show delegators, e.g.
 *   "generated on token, never extractable"
 *   "imported: sensitive and non-extractable now, but existed outside the token"
 *   "softsign file key: plaintext on disk"
 *   "WARNING: extractable" / "WARNING: not sensitive"
 */
struct slot_hygiene {
	int sensitive, always_sensitive, extractable, never_extractable, local;
	char verdict[160];
	const char *slot; /* the member reported on: the one that signed last on this thread,
			     else the one in use (borrowed, like slot_describe) */
};
KMS_MUST_CHECK int slot_hygiene(struct slot *s, struct slot_hygiene *out);

/* Stops the prober, closes the slot's sessions and frees it. Accepts NULL. Not
 * concurrently with slot_sign on s. If a timed-out call is still stuck in a
 * token, the memory is released when (if) that call returns. */
void slot_free(struct slot *s);

/*
 * Generates an Ed25519 key pair on the token named by token_uri
 * (C_GenerateKeyPair, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKA_EC_PARAMS = the DER
 * printable string "edwards25519", falling back to OID 1.3.101.112), private
 * key CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE=false, CKA_SIGN.
 * CKA_LABEL = label; CKA_ID = the URI's id= if given, else the first 8 bytes
 * of SHA-256(public key). Refused with KMS_ERR_REFUSED if the profile has
 * allow_keygen = false, KMS_ERR_EXISTS if a key with that label or id exists.
 * On success *key_uri_out (caller free()s) is a URI for slot_open (token,
 * object, id, type=private and the module/pin-source query of token_uri) and
 * pub holds the public key.
 */
KMS_MUST_CHECK int slot_keygen(const char *token_uri, const char *label, const struct slot_opts *o,
			       char **key_uri_out, uint8_t pub[static 32]);

/*
 * Imports an Ed25519 seed (RFC 8032 private key) as a sensitive, non-extractable
 * CKK_EC_EDWARDS private object (C_CreateObject, CKA_VALUE = seed) plus its public
 * object. The caller wipes seed; every copy made here is wiped. CKA_ID as for
 * slot_keygen. KMS_ERR_REFUSED if the profile has allow_import = false.
 */
KMS_MUST_CHECK int slot_import_ed25519(const char *token_uri, const char *label,
				       const uint8_t seed[static 32], const struct slot_opts *o,
				       char **key_uri_out, uint8_t pub[static 32]);

/*
 * Calls cb once per Ed25519 private key on every token matching the URI (a
 * token URI, or a module-only URI such as "pkcs11:?module-path=..."). key_uri
 * (token label and serial, object, id, and the URI's module and pin-source)
 * and label are borrowed for the call. Logs in only if the URI carries a
 * pin-source, o->pin_env is set or o->allow_prompt (else lists what is visible
 * without login: on most tokens, no private keys). The same PIN is used for
 * every matching token.
 */
KMS_MUST_CHECK int slot_list_keys(const char *token_or_module_uri, const struct slot_opts *o,
				  void (*cb)(void *ctx, const char *key_uri, const char *label,
					     const uint8_t pub[32]),
				  void *ctx);

/*
 * Checks that uri parses, has no pin-value and names a module (config
 * validation). KMS_ERR_FORMAT with a log line naming the problem.
 */
KMS_MUST_CHECK int slot_uri_validate(const char *uri);

/*
 * tmkms/YubiHSM key number -> CKA_ID per the profile's key_id_map ("u16be":
 * 2 bytes big-endian; "none": KMS_ERR_UNSUPPORTED). *idlen set. For migration.
 */
KMS_MUST_CHECK int slot_profile_key_id(const char *profile, const char *profiles_dir,
				       unsigned long key_number, uint8_t *id, size_t cap,
				       size_t *idlen);

/* Finalizes and releases every loaded module (at exit, after all slot_free()). */
void slot_shutdown(void);

#endif
