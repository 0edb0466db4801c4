/* SPDX-License-Identifier: Apache-2.0 */
/* cfg_: the p11kms configuration file (libconfig), parsed and validated into plain structs. */
#ifndef P11KMS_CFG_H
#define P11KMS_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "p11kms/kms_err.h"
#include "p11kms/kms_log.h"
#include "p11kms/net.h"

/*
 * The schema is documented in docs/config.md (the one reference: the daemon,
 * `keys`, `state`, `doctor`, `init` and `migrate` all read or write it).
 * Everything below is owned by struct cfg and freed by cfg_free(). Every path
 * is absolute: relative paths in the file are resolved against the
 * directory of the config file. `line` fields hold the line of the entry in
 * the file (0 if unknown) for later error messages.
 */

enum cfg_key_format {
	CFG_KEY_FORMAT_BECH32 = 1,	/* bech32(consensus_key_prefix, amino-prefixed key) */
	CFG_KEY_FORMAT_COSMOS_JSON = 2, /* {"@type":"/cosmos.crypto.ed25519.PubKey","key":"…"} */
	CFG_KEY_FORMAT_HEX = 3,		/* upper-case hex of the raw key */
};

/* The node's privval wire family (spec §0): v0.34 and v0.37 are the same wire format. */
enum cfg_proto {
	CFG_PROTO_V0_34 = 1,
	CFG_PROTO_V0_37 = 2,
	CFG_PROTO_V0_38 = 3,
	CFG_PROTO_V1 = 4,
	CFG_PROTO_AUTO = 5, /* the default: one response form every version reads (docs/privval.md) */
};

/* #20 HA: the chain's cluster high-water mark in etcd (docs/ha.md). */
struct cfg_ha {
	char **etcd;	/* n_etcd >= 1 endpoints, "http(s)://host:port" */
	size_t n_etcd;
	char *prefix;	/* key prefix, default "/p11kms" */
	char *ca;	/* CA bundle (absolute path), NULL: system default */
	char *cert;	/* client certificate, NULL: none */
	char *key;	/* client key (0600), NULL: none */
	int timeout_ms; /* bound on every etcd call, default 500 */
	char *host;	/* this host's name in the mark, NULL: gethostname() */
};
#define CFG_HA_DEFAULT_PREFIX "/p11kms"
#define CFG_HA_DEFAULT_TIMEOUT_MS 500

struct cfg_chain {
	char *id; /* chain-id, 1..50 bytes */
	enum cfg_key_format key_format;
	char *account_key_prefix;   /* e.g. "haqq" (NULL if not set) */
	char *consensus_key_prefix; /* e.g. "haqqvalconspub" (NULL if not set; set for bech32) */
	char *state_file;	    /* double-sign state (absolute path) */
	int sign_extensions;	    /* v0.38: sign vote extensions of non-nil precommits (default 1) */
	int line;
	/* Accept a state_file on a filesystem that cannot keep it (tmpfs, overlayfs, NFS, ...;
	 * dfile_fs_probe): tests and benchmarks only. Default 0. */
	int allow_volatile_state;
	struct cfg_ha *ha; /* #20: NULL = one host, no cluster */
};

enum cfg_key_kind {
	CFG_KEY_PKCS11 = 1,   /* uri (+ profile, pin_env) */
	CFG_KEY_SOFTSIGN = 2, /* softsign key file */
};

struct cfg_key {
	char **chain_ids; /* n_chain_ids >= 1 entries, each naming a chain in cfg.chains */
	size_t n_chain_ids;
	enum cfg_key_kind kind;
	char *uri;	/* CFG_KEY_PKCS11: "pkcs11:…" (RFC 7512); NULL for softsign */
	char *profile;	/* CFG_KEY_PKCS11: hsm-profiles/<profile>.conf name; NULL = detect */
	char *pin_env;	/* CFG_KEY_PKCS11: environment variable holding the PIN; NULL if not set */
	char *softsign; /* CFG_KEY_SOFTSIGN: key file (absolute path); NULL for pkcs11 */
	int line;
	/* #16 failover and token deadlines (CFG_KEY_PKCS11 only): */
	char **uris;	     /* uri as a list: primary first, then backups; uris[0] equals uri */
	size_t n_uris;	     /* 1..CFG_KEY_MAX_URIS; 0 for softsign */
	unsigned timeout_ms; /* deadline of each token call; default CFG_DEFAULT_TOKEN_TIMEOUT_MS */
};

struct cfg_validator {
	char *chain_id;		  /* names a chain in cfg.chains */
	char *addr;		  /* as written, e.g. "tcp://<id>@10.0.0.1:26659" */
	struct net_addr net;	  /* addr parsed (net_addr_parse) */
	char *secret_key;	  /* identity key: absolute file path (softsign) or "pkcs11:" URI;
				    NULL only for unix:// addresses */
	char *secret_key_pin_env; /* PIN variable when secret_key is a pkcs11: URI; else NULL */
	enum cfg_proto protocol_version;
	int reconnect;		 /* default 1 */
	int timeout_ms;		 /* I/O and dial timeout; default 10000 ("timeout" is in seconds) */
	uint64_t max_height;	 /* refuse to sign above this height; 0 = no limit */
	uint32_t backoff_min_ms; /* first redial delay; default 100 */
	uint32_t backoff_max_ms; /* redial delay cap; default 5000 */
	size_t max_msg_size; /* largest request accepted (varint value); default 1 MiB + 64 KiB */
	int line;
	/* #17: while there is no connection (dial failed, session ended), redial at least
	 * this often, jittered (default 500; the node waits ~3 s for its signer at start) */
	uint32_t redial_ms;
};

/* The audit log (docs/audit.md): enabled by an `audit = { dir = "..."; }` block. */
struct cfg_audit {
	int enabled;
	char *dir;		   /* absolute */
	uint32_t batch_records;	   /* sync after this many records (default 64) */
	uint32_t batch_ms;	   /* ... or this long after the oldest unsynced (default 200) */
	uint32_t queue;		   /* records waiting for the writer (default 1024) */
	uint32_t checkpoint_every; /* records between checkpoints (default 1000) */
	int sign_checkpoints;	   /* signed with the Secret Connection identity (default 0) */
	uint64_t rotate_bytes;	   /* rotate_size_mb in bytes (default 64 MiB; 0: never) */
	int rotate_daily;	   /* a new file each UTC day (default true) */
	int fail_closed;	   /* refuse signatures while the log fails (default false) */
	int line;
};

struct cfg {
	char *path; /* the config file as given (or the name given to cfg_parse_string) */
	char *dir;  /* absolute directory relative paths were resolved against */
	struct cfg_chain *chains;
	size_t n_chains;
	struct cfg_key *keys;
	size_t n_keys;
	struct cfg_validator *validators;
	size_t n_validators;
	int has_log_level;
	enum kms_log_level log_level; /* log.level, if has_log_level */
	char *log_file;		      /* log.file (absolute), NULL = stderr */
	struct cfg_audit audit;	      /* audit = { ... } (#19) */
	/* metrics = { listen; allow_remote; } and log.format (docs/config.md) */
	char *metrics_listen;	   /* "host:port" of /metrics /healthz /readyz; NULL = off */
	int metrics_allow_remote;  /* a non-loopback metrics.listen was allowed explicitly */
	enum kms_log_format log_format; /* log.format, default KMS_LOG_FORMAT_TEXT */
};

#define CFG_DEFAULT_TIMEOUT_MS 10000
#define CFG_DEFAULT_BACKOFF_MIN_MS 100u
#define CFG_DEFAULT_BACKOFF_MAX_MS 5000u
#define CFG_DEFAULT_MAX_MSG_SIZE ((size_t)(1024 * 1024 + 64 * 1024))
#define CFG_DEFAULT_TOKEN_TIMEOUT_MS 3000u /* keys.timeout_ms */
#define CFG_KEY_MAX_URIS 8		   /* keys.uri as a list */
#define CFG_DEFAULT_REDIAL_MS 500u
#define CFG_CHAIN_ID_MAX 50
#define CFG_DEFAULT_METRICS_LISTEN "127.0.0.1:26661"
#define CFG_ERR_MAX 512 /* a comfortable size for the err buffer below */

/*
 * Reads and validates the config file at path. On success *out is a new
 * struct cfg (caller cfg_free()s). On failure *out is NULL, err (if not NULL)
 * holds one line "file:line: key: what is wrong" (e.g.
 * "/etc/p11kms.conf:12: validators[0].chain_id: no chain \"haqq_1\" in chains"),
 * and the return is KMS_ERR_CONFIG (also for libconfig syntax errors),
 * KMS_ERR_NOT_FOUND (no such file) or KMS_ERR_ALLOC. Nothing is logged: the
 * caller prints err. The file's permissions are not checked here.
 */
KMS_MUST_CHECK int cfg_load(const char *path, struct cfg **out, char *err, size_t errcap);

/*
 * As cfg_load, from len bytes at p (need not be NUL-terminated). name is used
 * in messages (NULL = "<string>"); base_dir resolves relative paths (NULL =
 * the current directory). Pure apart from getcwd(): no file is opened
 * (libconfig's @include is refused). Fuzzed.
 */
KMS_MUST_CHECK int cfg_parse_string(const uint8_t *p, size_t len, const char *name,
				    const char *base_dir, struct cfg **out, char *err,
				    size_t errcap);

/* Frees everything; accepts NULL. */
void cfg_free(struct cfg *cfg);

/* The chain with this id, or NULL. Borrowed from cfg. */
const struct cfg_chain *cfg_chain_find(const struct cfg *cfg, const char *id);
/* The (only) key serving chain id, or NULL. Borrowed from cfg. */
const struct cfg_key *cfg_key_for_chain(const struct cfg *cfg, const char *id);

/*
 * The config path to use: cli_path if not NULL, else $P11KMS_CONFIG if set
 * and non-empty, else "./p11kms.conf". Copied into out; KMS_ERR_NO_SPACE if
 * it does not fit.
 */
KMS_MUST_CHECK int cfg_default_path(const char *cli_path, char *out, size_t cap);

/* "v0.34", "v0.37", "v0.38", "v1", "auto" / "bech32", "cosmos-json", "hex" ("?" if unknown). */
const char *cfg_proto_name(enum cfg_proto v);
const char *cfg_key_format_name(enum cfg_key_format f);
/* Parses the names above; KMS_ERR_FORMAT if not one of them. */
KMS_MUST_CHECK int cfg_proto_parse(const char *s, enum cfg_proto *out);
KMS_MUST_CHECK int cfg_key_format_parse(const char *s, enum cfg_key_format *out);

#endif
