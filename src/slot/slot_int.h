/* SPDX-License-Identifier: Apache-2.0 */
/* Private declarations shared by the slot_ sources: profiles, URIs, modules, pk11_ helpers. */
#ifndef P11KMS_SLOT_INT_H
#define P11KMS_SLOT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "p11kms/kms_err.h"
#include "p11kms/slot.h"

/* ---- hsm-profiles (profile.c) ---- */

#define SLOT_PROFILE_MAX_PATHS 12
#define SLOT_PROFILE_STR 256

enum slot_key_id_map { SLOT_KEYID_NONE = 0, SLOT_KEYID_U16BE = 1 };
enum slot_ec_point { SLOT_ECPOINT_EITHER = 0, SLOT_ECPOINT_DER = 1, SLOT_ECPOINT_RAW = 2 };

/* Quirk bits (profile "quirks" list). */
#define SLOT_QUIRK_NO_DEINIT 0x1u     /* "no-deinit": never C_Finalize (SoftHSM2 under ASan) */
#define SLOT_QUIRK_EC_PARAMS_OID 0x2u /* "ec-params-oid": keygen tries the OID first */
#define SLOT_QUIRK_NO_PUBLIC_OBJ 0x4u /* "no-public-object": import creates no public object */

struct slot_profile {
	char name[64];
	char match_manufacturer
		[SLOT_PROFILE_STR];	     /* prefix of CK_TOKEN_INFO manufacturerID, "" = any */
	char match_model[SLOT_PROFILE_STR];  /* prefix of CK_TOKEN_INFO model, "" = any */
	char match_module[SLOT_PROFILE_STR]; /* basename of the module file, "" = any */
	char module_paths[SLOT_PROFILE_MAX_PATHS][SLOT_PROFILE_STR];
	size_t n_module_paths;
	char pin_format[SLOT_PROFILE_STR];
	unsigned pin_id_hex;	   /* the PIN starts with this many hex digits (YubiHSM: 4) */
	unsigned pin_min, pin_max; /* PIN length bounds, 0 = none */
	enum slot_key_id_map key_id_map;
	size_t max_sign_input;
	enum slot_ec_point ec_point;
	int allow_keygen, allow_import;
	unsigned quirks;
};

/* The profile used when none matches: generous limits, either EC_POINT form. */
void slot_profile_generic(struct slot_profile *p);

/*
 * Parses one profile (libconfig text, len bytes, need not be NUL-terminated).
 * No global state, no file access (@include is refused). KMS_ERR_FORMAT with
 * one log line naming the field on bad input.
 */
KMS_MUST_CHECK int slot_profile_parse(const uint8_t *p, size_t len, struct slot_profile *out);

/* Loads <dir>/<name>.conf from the profiles search path. */
KMS_MUST_CHECK int slot_profile_load(const char *name, const char *profiles_dir,
				     struct slot_profile *out);

/*
 * Picks the first profile (sorted by file name) whose match block fits the token
 * info and module basename; the generic profile (and a WARN) when none does.
 */
KMS_MUST_CHECK int slot_profile_detect(const char *profiles_dir, const CK_TOKEN_INFO *ti,
				       const char *module_path, struct slot_profile *out);

/* 1 if the profile's match block fits. */
int slot_profile_matches(const struct slot_profile *p, const CK_TOKEN_INFO *ti,
			 const char *module_path);

/* ---- URIs (uri.c) ---- */

struct slot_uri {
	P11KitUri *u;
	char *text;		 /* formatted without pin-value: slot_describe() */
	char *pin_file;		 /* pin-source as a path ("file:" stripped), or NULL */
	const char *module_path; /* borrowed from u */
	const char *module_name; /* borrowed from u */
	int has_id, has_label;
};

/*
 * Parses an RFC 7512 URI of len bytes (need not be NUL-terminated). Refuses
 * pin-value, unknown path attributes, a type other than "private" and
 * pin-source schemes other than a path or file:. No global state.
 */
KMS_MUST_CHECK int slot_uri_parse(const uint8_t *p, size_t len, struct slot_uri *out);
void slot_uri_clear(struct slot_uri *su);

/* ---- PINs (pin.c) ---- */

/*
 * Gets the PIN for a login: the URI's pin-source file (must be 0600 or
 * stricter, trailing newline trimmed), else the env variable pin_env, else the
 * terminal if allow_prompt. *pin (NUL-terminated, *len bytes) is freed by the
 * caller with kms_free_secret(pin, len + 1). KMS_ERR_NOT_FOUND when no source
 * is configured.
 */
KMS_MUST_CHECK int slot_pin_get(const char *pin_file, const char *pin_env, int allow_prompt,
				const char *what, char **pin, size_t *len);

/* ---- modules (module.c) ---- */

enum pk11_mod_state { PK11_MOD_LOADING = 0, PK11_MOD_READY, PK11_MOD_FAILED };

/* Re-initialisation of a module that lost a token: at most one attempt per
 * backoff period (doubling MIN..MAX while the token stays away); the writer
 * lock is waited for at most LOCK_MS, and after a lock timeout (a call stuck
 * in the module) the next attempt waits STUCK_MS. While the watchdog knows of a
 * call stuck in the module (stuck > 0) no attempt is made at all: the writer
 * would only stall every other caller of the module for LOCK_MS. */
#define PK11_REINIT_MIN_MS 100
#define PK11_REINIT_MAX_MS 500
#define PK11_REINIT_LOCK_MS 500
#define PK11_REINIT_STUCK_MS 1000

struct pk11_module {
	char *path;
	CK_FUNCTION_LIST *f;
	int refs;		   /* under reg_mu */
	enum pk11_mod_state state; /* under reg_mu */
	int softsign;
	unsigned quirks;
	char *init_args; /* softsign pReserved string; kept while initialised */
	/* Readers: any call with session or object handles. Writer: re-initialisation.
	 * Writer-preferring; readers and writers wait with deadlines. */
	pthread_rwlock_t lock;
	int live;	     /* C_Initialize succeeded (written under the write lock) */
	atomic_int stuck;    /* calls abandoned by the watchdog that have not returned */
	atomic_ulong gen;    /* bumped on every re-initialisation: older handles are dead */
	pthread_mutex_t rmu; /* re-initialisation backoff: */
	int64_t reinit_next;
	unsigned reinit_ms, reinit_streak;
	struct pk11_module *next;
};

/*
 * Loads and initialises (once) the module at path; takes a reference. The
 * registry lock is not held while C_Initialize runs: a caller of a module that
 * another thread is still loading waits until deadline_ms (CLOCK_MONOTONIC ms,
 * 0 = no deadline) and gets KMS_ERR_TIMEOUT then.
 */
KMS_MUST_CHECK int pk11_module_get(const char *path, int64_t deadline_ms, struct pk11_module **out);
/* Softsign: registers paths (absolute) and (re)initialises the module with all of them. */
KMS_MUST_CHECK int pk11_softsign_get(const char *const *paths, size_t n, struct pk11_module **out);
void pk11_module_put(struct pk11_module *m);
/* Resolves a module-name (p11-kit registry, then lib<name>.so in known dirs). */
KMS_MUST_CHECK int pk11_module_by_name(const char *name, const struct slot_profile *prof,
				       char **path_out);
/* First existing file of the profile's module_paths. */
KMS_MUST_CHECK int pk11_module_from_profile(const struct slot_profile *prof, char **path_out);
/* Token serial the softsign module gives a file: first 16 hex of SHA-256(path). */
KMS_MUST_CHECK int pk11_softsign_serial(const char *abs_path, char serial[17]);

/* The module lock with a deadline (0 = none): KMS_OK or KMS_ERR_TIMEOUT. Never nested. */
KMS_MUST_CHECK int pk11_module_rdlock(struct pk11_module *m, int64_t deadline_ms);
KMS_MUST_CHECK int pk11_module_wrlock(struct pk11_module *m, int64_t deadline_ms);
void pk11_module_unlock(struct pk11_module *m);
unsigned long pk11_module_gen(const struct pk11_module *m);

/*
 * The token of `why` (a slot description, for logs) is missing although it
 * may be back: C_Finalize + C_Initialize, so that a module which looks for
 * tokens only in C_Initialize (SoftHSM2, many vendor modules) finds it again.
 * Call without the module lock. Nothing is done if the module's generation is
 * no longer seen_gen (another thread did it: KMS_OK). KMS_ERR_NOT_FOUND while
 * backing off, KMS_ERR_TIMEOUT if a call stuck in the module kept the writer
 * lock away, KMS_ERR_PKCS11 if C_Initialize failed. Logged once per streak;
 * emits OBS_ST_MODULE_REINIT.
 */
KMS_MUST_CHECK int pk11_module_reinit(struct pk11_module *m, unsigned long seen_gen,
				      int64_t deadline_ms, const char *why);
/* A token of m was found: ends a re-initialisation streak (logged once). */
void pk11_module_healthy(struct pk11_module *m);
/* The watchdog abandoned a call into m (+1), or one came back (-1). */
void pk11_module_stuck(struct pk11_module *m, int delta);

/* ---- thin PKCS#11 helpers (pk11.c) ---- */

/* Logs "<fn> failed: <p11_kit_strerror> (what)" and maps rv to a kms_err. */
int pk11_err(CK_RV rv, const char *fn, const char *what);
/* Maps rv without logging (CKR_OK -> KMS_OK). */
int pk11_rv_to_err(CK_RV rv);
/* 1 if rv means the session or login is gone and a fresh session may work. */
int pk11_rv_recoverable(CK_RV rv);

/* Blank-padded token field -> NUL-terminated string (out has cap >= n + 1). */
void pk11_field(const unsigned char *field, size_t n, char *out, size_t cap);

/*
 * Finds the single slot whose token matches the URI. KMS_ERR_NOT_FOUND (the
 * available tokens are logged), KMS_ERR_AMBIGUOUS (the candidates are logged).
 */
KMS_MUST_CHECK int pk11_find_token(CK_FUNCTION_LIST *f, P11KitUri *u, const char *desc,
				   CK_SLOT_ID *slot, CK_TOKEN_INFO *ti);
/* As pk11_find_token; report 0 logs nothing when no token matches (*rv: C_GetSlotList's). */
KMS_MUST_CHECK int pk11_find_token_q(CK_FUNCTION_LIST *f, P11KitUri *u, const char *desc,
				     CK_SLOT_ID *slot, CK_TOKEN_INFO *ti, int report, CK_RV *rv);

/* Logs in as CKU_USER if the session is not logged in yet and the token needs it. */
KMS_MUST_CHECK int pk11_login(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, const CK_TOKEN_INFO *ti,
			      const char *pin_file, const char *pin_env, int allow_prompt,
			      const char *desc);

/* Where a login gets its PIN and what it must look like. */
struct pk11_login_src {
	const char *pin_file, *pin_env;
	int allow_prompt;
	const struct slot_profile *prof; /* the PIN format is checked before C_Login; NULL: none */
	int force; /* C_Logout first if the token says the session is logged in: some modules
		      (yubihsm_pkcs11 after a USB reset) say so while their login is gone */
};
KMS_MUST_CHECK int pk11_login_with(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h,
				   const CK_TOKEN_INFO *ti, const struct pk11_login_src *src,
				   const char *desc);
/*
 * A PIN against the profile's pin_id_hex/pin_min/pin_max: KMS_ERR_FORMAT with a
 * message naming what is wrong (never the PIN) and the profile's pin_format.
 */
KMS_MUST_CHECK int slot_pin_check(const struct slot_profile *p, const char *pin, size_t len,
				  const char *desc);

/*
 * Finds objects of class cls matching the template extra (n attributes).
 * Up to cap handles in out, *found = total number found (may exceed cap).
 */
KMS_MUST_CHECK int pk11_find(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
			     const CK_ATTRIBUTE *extra, size_t n, CK_OBJECT_HANDLE *out, size_t cap,
			     size_t *found);

/* Reads a variable-length attribute into a new buffer (*val, *len); caller free()s. */
KMS_MUST_CHECK int pk11_get_attr(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
				 CK_ATTRIBUTE_TYPE type, uint8_t **val, size_t *len);
/* Reads a CK_BBOOL attribute: 1, 0, or -1 if the token does not say. */
int pk11_get_bool(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
		  CK_ATTRIBUTE_TYPE type);
KMS_MUST_CHECK int pk11_get_ulong(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
				  CK_ATTRIBUTE_TYPE type, CK_ULONG *out);

/* Decodes CKA_EC_POINT of an Ed25519 key: raw 32 bytes or DER OCTET STRING (04 20 ...). */
KMS_MUST_CHECK int pk11_ec_point_decode(const uint8_t *p, size_t len, enum slot_ec_point form,
					uint8_t pub[static 32]);
/* 1 if CKA_EC_PARAMS names edwards25519 (printable string or OID 1.3.101.112). */
int pk11_ec_params_is_ed25519(const uint8_t *p, size_t len);

/*
 * Reads the Ed25519 public key of private key priv: CKA_EC_POINT on priv, else
 * on the public object with the same CKA_ID (and label). Checks the key type.
 */
KMS_MUST_CHECK int pk11_read_pub(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv,
				 enum slot_ec_point form, uint8_t pub[static 32]);

/* C_SignInit + C_Sign with CKM_EDDSA; returns the raw CK_RV. */
CK_RV pk11_sign_raw(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key,
		    const uint8_t *msg, size_t len, uint8_t sig[static 64]);

/* Hex of an id into out (truncated with "..." if needed). */
void pk11_hex(const uint8_t *p, size_t len, char *out, size_t cap);

/* Profiles directory resolution (profile.c): fills out, KMS_ERR_NOT_FOUND if none exists. */
KMS_MUST_CHECK int slot_profiles_dir(const char *override, char *out, size_t cap);

/* ---- slots: members, workers (slot.c, member.c, watchdog.c) ---- */

/* CLOCK_MONOTONIC in ms; an absolute CLOCK_MONOTONIC timespec for ms. */
int64_t slot_now_ms(void);
void slot_abstime(int64_t ms, struct timespec *ts);

#define SLOT_MAX_MEMBERS 8
/* Token calls that passed their deadline and have not returned, per member: beyond
 * this the member gets no more calls (fails closed) until one comes back. */
#define SLOT_HUNG_MAX 4
/* A member that is down is probed (by the prober thread, when there are backups)
 * after PROBE_MIN_MS, doubling to PROBE_MAX_MS while it stays down. */
#define SLOT_PROBE_MIN_MS 200
#define SLOT_PROBE_MAX_MS 5000
/* Opening (module load, login, key lookup, test signature) may take this long per token
 * even when the runtime deadline is shorter: nobody waits on a start-up. */
#define SLOT_OPEN_TIMEOUT_MS 10000

enum slot_mb_state { SLOT_MB_UP = 0, SLOT_MB_DOWN = 1 };

/*
 * One token reached through one URI of a keys entry (the primary is member 0).
 * Token calls for it run on worker threads only (member.c). Fields after the
 * marker are shared between workers and guarded by s->mu, which is never held
 * across a token call.
 */
struct slot_member {
	struct slot *s;
	size_t idx;
	struct slot_uri su;
	char *modpath;
	/* -- under s->mu -- */
	struct pk11_module *m;	  /* NULL until the module is loaded */
	struct slot_profile prof; /* detected when the token is first reached */
	int known;		  /* the token was reached once: ti and prof are its own */
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot_id;
	CK_OBJECT_HANDLE key;
	unsigned long res_gen;	   /* module generation slot_id and key were found in; 0 = find */
	unsigned long login_epoch; /* bumped by each forced re-login (member.c) */
	enum slot_mb_state state;
	int down_err;		/* why it is down (kms_err) */
	unsigned long down_ckr; /* and the CK_RV, if a token call said so */
	int64_t down_since, next_probe;
	unsigned probe_ms;
	int disabled;	/* a fault no retry can fix (PIN, key, config): no more calls */
	int hung;	/* abandoned workers still inside a call for this member */
	int cap_logged; /* the fail-closed message was logged for this streak */
	int listed;	/* the tokens present were logged once when this one was missing */
};

/* A worker's session on one member. Owned by the worker: no lock. */
struct slot_wsess {
	CK_SESSION_HANDLE h;
	unsigned long gen;	   /* module generation of h; 0 = no session */
	unsigned long login_epoch; /* the member's login_epoch when h logged in */
	int verified;		   /* first signature of h checked */
	int lost;		   /* the last session was lost: the next one counts as a re-open */
	CK_RV lost_rv;		   /* what the token said then (0: the module was re-initialised) */
};

enum slot_op { SLOT_OP_SIGN = 1, SLOT_OP_HYGIENE };

struct slot {
	struct slot_member mb[SLOT_MAX_MEMBERS];
	size_t n;
	uint64_t uid; /* tells slots apart in the thread-local "who signed" record */
	uint8_t pub[32];
	int have_pub;
	enum slot_key_type type;
	char *pin_env, *profile, *profiles_dir;
	int allow_prompt;
	const char *chain_id; /* borrowed (obs events) */
	pthread_mutex_t mu;   /* members' shared fields, workers, refs, active */
	pthread_cond_t cv;    /* the prober's sleep (CLOCK_MONOTONIC) */
	int refs;	      /* the owner, plus one per worker thread */
	unsigned timeout_ms;
	struct slot_worker *idle; /* workers waiting for a job */
	size_t active;		  /* the member that signed the latest request */
	int quit;
	int has_prober;
	pthread_t prober;
};

struct slot_worker;

/* watchdog.c: runs op on member mbi on a worker thread and waits until the
 * deadline (s->timeout_ms; 0 = none). KMS_ERR_TIMEOUT abandons the worker (its
 * late result is wiped and dropped). *ckr: the CK_RV behind a failure, or 0. */
KMS_MUST_CHECK int slot_run(struct slot *s, enum slot_op op, size_t mbi, const uint8_t *msg,
			    size_t len, uint8_t sig[static 64], struct slot_hygiene *hy,
			    unsigned long *ckr);
/* Stops and joins the idle workers (slot_free). */
void slot_wd_stop(struct slot *s);
/* Waits until deadline_ms for abandoned workers (of every slot) to finish; 1 if none is
 * left. slot_shutdown calls it: a process must not exit under a thread in a module. */
int slot_wd_drain(int64_t deadline_ms);
/* Drops a reference; the last one frees s. */
void slot_unref(struct slot *s);

/* member.c, on a worker: sign (establishing the session as needed) / hygiene. The
 * worker's deadline bounds the lock waits; ws is the worker's session on mb. */
KMS_MUST_CHECK int slot_mb_sign(struct slot_member *mb, struct slot_wsess *ws, int64_t deadline_ms,
				const uint8_t *msg, size_t len, uint8_t sig[static 64],
				unsigned long *ckr);
KMS_MUST_CHECK int slot_mb_hygiene(struct slot_member *mb, struct slot_wsess *ws,
				   int64_t deadline_ms, struct slot_hygiene *hy,
				   unsigned long *ckr);
/* Closes the worker's session on mb if it is still valid (worker exit). */
void slot_mb_close(struct slot_member *mb, struct slot_wsess *ws);
/* Status event about a member (or the slot, mb NULL). */
void slot_emit(const struct slot *s, int kind, const struct slot_member *mb, unsigned long ckr,
	       int err);

/* ---- slot.c helpers used by keygen.c ---- */

/* A token opened for keygen/import/list: module, slot, logged-in session. */
struct slot_tok {
	struct slot_uri su;
	struct pk11_module *m;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;
	int have_session;
	struct slot_profile prof;
};
KMS_MUST_CHECK int slot_tok_open(const char *uri, const struct slot_opts *o, int rw, int login,
				 struct slot_tok *t);
void slot_tok_close(struct slot_tok *t);
/* Module path for a parsed URI (module-path, module-name, or the named profile). */
KMS_MUST_CHECK int slot_uri_module(const struct slot_uri *su, const struct slot_opts *o,
				   char **path_out);

#endif
