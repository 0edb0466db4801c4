/* SPDX-License-Identifier: Apache-2.0 */
/* p11shim: a fault-injecting PKCS#11 module for tests (internal declarations). */
#ifndef P11SHIM_H
#define P11SHIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

/*
 * The shim forwards every call of the PKCS#11 2.40 function list to a real
 * module ($P11SHIM_MODULE) and, before forwarding, applies the rules of a
 * control file ($P11SHIM_CONTROL) that tests rewrite while the caller runs.
 * docs/hsm.md ("Testing token faults") describes the file; shim_ctl.c parses it.
 *
 * Session handles are the shim's own (never reused), mapped to the real
 * module's, so a handle that died in a "reset" or a "vanish" stays dead even if
 * the real module hands the same number to a new session.
 */

/* Every function the shim can name in a rule ("C_Sign"), plus SHIM_FN_ANY ("*"). */
enum shim_fn {
	SHIM_FN_ANY = 0,
#define SHIM_FN_ENUM(name) SHIM_##name,
#include "shim_fns.h"
#undef SHIM_FN_ENUM
	SHIM_FN_COUNT
};

const char *shim_fn_name(enum shim_fn fn);
/* SHIM_FN_COUNT if name is not a function the shim knows. */
enum shim_fn shim_fn_parse(const char *name);

/* ---- rules (shim_ctl.c) ---- */

enum shim_act { SHIM_ACT_FAIL = 1, SHIM_ACT_DELAY, SHIM_ACT_HANG };

#define SHIM_LABEL_MAX 33

struct shim_rule {
	enum shim_act act;
	enum shim_fn fn;
	char token[SHIM_LABEL_MAX]; /* "" = any token (and calls tied to none) */
	CK_RV rv;		    /* SHIM_ACT_FAIL */
	unsigned long ms;	    /* DELAY, HANG (0 for HANG: until the control file changes) */
	unsigned long nth, from, times;
	double prob; /* 0 = always */
	uint64_t rng;
	unsigned long after_ms, for_ms; /* window from the load of the file; for_ms 0 = open */
	unsigned long calls, fired;	/* counters since the load */
	int line;
};

struct shim_vanish {
	char token[SHIM_LABEL_MAX]; /* "" = every token */
	int rescan_live;	    /* 0: hidden until the next C_Initialize after the rule goes */
};

struct shim_reset {
	char token[SHIM_LABEL_MAX];
	unsigned long id;
};

#define SHIM_MAX_RULES 64

struct shim_ctl {
	struct shim_rule rules[SHIM_MAX_RULES];
	size_t n_rules;
	struct shim_vanish vanish[8];
	size_t n_vanish;
	struct shim_reset resets[8];
	size_t n_resets;
};

/*
 * Parses control text (len bytes). KMS-style: 0 on success, else -1 with a
 * message "line N: what" in err.
 */
int shim_ctl_parse(const char *text, size_t len, struct shim_ctl *out, char *err, size_t cap);

/* What the matching rules ask for one call: the sum of delays, a hang, a failure. */
struct shim_verdict {
	unsigned long delay_ms;
	int hang;	       /* 1: hang */
	unsigned long hang_ms; /* 0: until the control file changes */
	CK_RV rv;	       /* CKR_OK: forward the call */
	int rule_line;	       /* the failing rule, for the trace */
};

/* Applies every rule to one call of fn on token label ("" for no token). now_ms
 * counts from the load of the rules. Updates the rules' counters. */
void shim_ctl_match(struct shim_ctl *c, enum shim_fn fn, const char *label, unsigned long now_ms,
		    struct shim_verdict *v);

/* "CKR_DEVICE_REMOVED" or a number; 0 on success. */
int shim_rv_parse(const char *s, CK_RV *out);
const char *shim_rv_name(CK_RV rv);

/* ---- the YubiHSM 2 emulation (shim_yh.c) ---- */

struct shim_yh {
	int on;
	unsigned auth_key_id;  /* the PIN's 4 hex digits must name this key (default 0x0001) */
	unsigned long sign_ms; /* time per EdDSA signature (default 120) */
};

#define SHIM_YH_MAX_EDDSA_INPUT 3134 /* YH_MSG_BUF_SIZE - 2 */

/* Checks a YubiHSM PIN ("0001password") as yubihsm_pkcs11 does; on CKR_OK,
 * pw and pwlen point at the password part (forwarded to the real module). */
CK_RV shim_yh_pin(const struct shim_yh *yh, const CK_UTF8CHAR *pin, CK_ULONG len,
		  const CK_UTF8CHAR **pw, CK_ULONG *pwlen);
/* The token info the YubiHSM module reports, built from the real one. */
void shim_yh_token_info(CK_TOKEN_INFO *ti);
/*
 * Templates for C_GenerateKeyPair/C_CreateObject: a CKA_ID that is not 2
 * bytes is refused (CKR_ATTRIBUTE_VALUE_INVALID); a missing one is given the
 * object id id2 (the caller picks a free one). *out (n or n + 1 entries) is
 * malloc'd; the caller frees it.
 */
CK_RV shim_yh_template(const CK_ATTRIBUTE *t, CK_ULONG n, const uint8_t id2[2], CK_ATTRIBUTE **out,
		       CK_ULONG *nout);
/* 1 if t creates an Ed25519 key of class want (CKO_PRIVATE_KEY, CKO_PUBLIC_KEY). */
int shim_yh_is_ed25519_import(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS want);
/*
 * The device keeps one object per asymmetric key and shows its public half by
 * itself; yubihsm_pkcs11 cannot create an EdDSA public key object. Over SoftHSM2
 * the shim creates that public half next to an imported private key: the
 * template for it, derived from the private template (CKA_VALUE = the seed).
 */
struct shim_yh_twin {
	CK_ATTRIBUTE t[9];
	CK_ULONG n;
	CK_BYTE point[34];
};
CK_RV shim_yh_public_twin(const CK_ATTRIBUTE *priv, CK_ULONG n, struct shim_yh_twin *tw);
/* 1 if the template sets CKA_ID (object ids are fixed: C_SetAttributeValue refuses). */
int shim_yh_sets_id(const CK_ATTRIBUTE *t, CK_ULONG n);

#endif
