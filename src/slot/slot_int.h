/* SPDX-License-Identifier: Apache-2.0 */
/* Private declarations shared by the slot_ sources: profiles, URIs, modules, pk11_ helpers. */
#ifndef P11KMS_SLOT_INT_H
#define P11KMS_SLOT_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

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

struct pk11_module {
	char *path;
	CK_FUNCTION_LIST *f;
	int refs;
	int softsign;
	unsigned quirks;
	char *init_args; /* softsign pReserved string; kept while initialised */
	/* Readers: any call with session or object handles. Writer: re-initialisation. */
	pthread_rwlock_t lock;
	unsigned long gen; /* bumped on every re-initialisation: handles of older gens are dead */
	struct pk11_module *next;
};

/* Loads and initialises (once) the module at path; takes a reference. */
KMS_MUST_CHECK int pk11_module_get(const char *path, struct pk11_module **out);
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

/* Logs in as CKU_USER if the session is not logged in yet and the token needs it. */
KMS_MUST_CHECK int pk11_login(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, const CK_TOKEN_INFO *ti,
			      const char *pin_file, const char *pin_env, int allow_prompt,
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

/* ---- slot.c internals shared with watchdog.c ---- */

struct slot_sess {
	pthread_t tid;
	CK_SESSION_HANDLE h;
	unsigned long gen; /* module generation the handle belongs to; 0 = none */
	int verified;	   /* first signature of this session checked */
};

struct slot {
	struct slot_uri su;
	struct pk11_module *m;
	struct slot_profile prof;
	char *pin_env;
	int allow_prompt;
	CK_SLOT_ID slot_id;
	CK_TOKEN_INFO ti;
	CK_OBJECT_HANDLE key;
	unsigned long res_gen; /* generation slot_id and key were found in; 0 = find again */
	uint8_t pub[32];
	enum slot_key_type type;
	pthread_mutex_t mu; /* guards sess, nsess, slot_id, key, res_gen, refs, workers */
	struct slot_sess *sess;
	size_t nsess;
	int refs; /* the owner, plus one per watchdog worker (watchdog.c) */
	unsigned timeout_ms;
	struct slot_worker *workers;
};

struct slot_worker;
/* slot_sign without the watchdog: runs on the calling thread. */
KMS_MUST_CHECK int slot_sign_direct(struct slot *s, const uint8_t *msg, size_t len,
				    uint8_t sig[static 64]);
/* Drops a reference; the last one closes the sessions and frees s. */
void slot_unref(struct slot *s);
/* watchdog.c: sign on the caller's worker thread, give up after s->timeout_ms. */
KMS_MUST_CHECK int slot_wd_sign(struct slot *s, const uint8_t *msg, size_t len,
				uint8_t sig[static 64]);
/* Stops and joins the idle workers (slot_free). */
void slot_wd_stop(struct slot *s);

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
