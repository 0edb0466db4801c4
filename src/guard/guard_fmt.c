/* SPDX-License-Identifier: Apache-2.0 */
/* State formats: CometBFT/tmkms/horcrux JSON parse and export, init, import, show (docs/state.md). */
#include "p11kms/guard.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "guard_int.h"
#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

#define JSON_MAX (64u * 1024u)

/* ---- the formats' shapes ---- */

/*
 * The members each format's writer produces (tests/vectors/state_files.json,
 * shared/research/peers.md §3). A file is read only with the format whose shape
 * it has: a tmkms file read as CometBFT would shift its step back by one
 * (tmkms 2 = precommit, CometBFT 2 = prevote).
 *   cometbft  FilePVLastSignState (cmtjson): height a string, round a NUMBER,
 *             step, signature, signbytes. CometBFT, cosmos/kms, horcrux single.
 *   p11kms    cometbft's members plus chain_id (our export).
 *   horcrux   threshold SignState (cometjson): height and round STRINGS, step,
 *             nonce_public (ephemeral_public before v3), signature, signbytes,
 *             vote_ext_signature.
 *   tmkms     consensus::State (serde): height and round STRINGS, step 0/1/2,
 *             block_id (an object, or null).
 */
struct shape {
	enum guard_fmt fmt;
	const char *name;
	int round_string;
	int max_step;
	const char *const *members;
};

static const char *const cometbft_members[] = { "height",    "round",	  "step",
						"signature", "signbytes", NULL };
static const char *const p11kms_members[] = { "chain_id",  "height",	"round", "step",
					      "signature", "signbytes", NULL };
static const char *const horcrux_members[] = { "height",
					       "round",
					       "step",
					       "nonce_public",
					       "ephemeral_public",
					       "signature",
					       "signbytes",
					       "vote_ext_signature",
					       NULL };
static const char *const tmkms_members[] = { "height", "round", "step", "block_id", NULL };

static const struct shape shapes[] = {
	{ GUARD_FMT_COMETBFT, "cometbft", 0, 3, cometbft_members },
	{ GUARD_FMT_TMKMS, "tmkms", 1, 2, tmkms_members },
	{ GUARD_FMT_HORCRUX, "horcrux", 1, 3, horcrux_members },
	{ GUARD_FMT_P11KMS, "p11kms", 0, 3, p11kms_members },
};

static const struct shape *shape_of(enum guard_fmt fmt)
{
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		if (shapes[i].fmt == fmt)
			return &shapes[i];
	return NULL;
}

const char *guard_fmt_name(enum guard_fmt fmt)
{
	const struct shape *sh = shape_of(fmt);
	return sh != NULL ? sh->name : "auto";
}

/* A member name from the file, made safe for one log line. */
static void safe_name(const char *key, char *out, size_t cap)
{
	size_t i = 0;
	for (; key[i] != '\0' && i + 1 < cap; i++)
		out[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?';
	out[i] = '\0';
}

static int has(const json_t *root, const char *key)
{
	return json_object_get(root, key) != NULL;
}

/* The horcrux-only member present, or NULL. */
static const char *horcrux_marker(const json_t *root)
{
	static const char *const marks[] = { "nonce_public", "ephemeral_public",
					     "vote_ext_signature" };
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		if (has(root, marks[i]))
			return marks[i];
	return NULL;
}

/* The format whose shape root has, and why; GUARD_FMT_AUTO when none or several. */
static enum guard_fmt detect(const json_t *root, char *why, size_t cap)
{
	const char *hx = horcrux_marker(root);
	int tm = has(root, "block_id"), p11 = has(root, "chain_id");
	const json_t *round = json_object_get(root, "round");
	if (tm + p11 + (hx != NULL) > 1) {
		snprintf(why, cap, "it mixes members of different formats (%s%s%s)",
			 tm ? "block_id " : "", p11 ? "chain_id " : "", hx ? hx : "");
		return GUARD_FMT_AUTO;
	}
	if (tm) {
		snprintf(why, cap, "it has a block_id member");
		return GUARD_FMT_TMKMS;
	}
	if (p11) {
		snprintf(why, cap, "it has a chain_id member");
		return GUARD_FMT_P11KMS;
	}
	if (hx != NULL) {
		snprintf(why, cap, "it has a %s member", hx);
		return GUARD_FMT_HORCRUX;
	}
	if (json_is_string(round)) {
		snprintf(why, cap, "round is a string and there is no block_id");
		return GUARD_FMT_HORCRUX;
	}
	if (json_is_integer(round)) {
		snprintf(why, cap, "round is a number and there is no block_id");
		return GUARD_FMT_COMETBFT;
	}
	snprintf(why, cap, "round is missing or neither a number nor a string");
	return GUARD_FMT_AUTO;
}

enum guard_fmt guard_state_detect(const uint8_t *p, size_t n, char *why, size_t cap)
{
	json_error_t err;
	json_t *root =
		n <= JSON_MAX ? json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &err) : NULL;
	enum guard_fmt fmt = GUARD_FMT_AUTO;
	if (root == NULL || !json_is_object(root))
		snprintf(why, cap, "%s", n > JSON_MAX ? "larger than 64 KiB" : "not a JSON object");
	else
		fmt = detect(root, why, cap);
	json_decref(root);
	return fmt;
}

/* Every member of root is one the format's writer produces. */
static int check_members(json_t *root, const struct shape *sh)
{
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		size_t i = 0;
		while (sh->members[i] != NULL && strcmp(sh->members[i], key) != 0)
			i++;
		if (sh->members[i] == NULL) {
			char name[64];
			safe_name(key, name, sizeof(name));
			kms_log_err("state JSON: \"%s\" is not a member of a %s state file", name,
				    sh->name);
			return KMS_ERR_FORMAT;
		}
	}
	return KMS_OK;
}

static const char *json_kind(const json_t *v)
{
	if (v == NULL)
		return "missing";
	if (json_is_string(v))
		return "a string";
	if (json_is_integer(v))
		return "a whole number";
	if (json_is_number(v))
		return "a fractional number";
	return "neither a number nor a string";
}

/* A non-negative decimal integer in a JSON string (cmtjson int64, serde u64). */
static int dec_string(const json_t *v, int64_t max, int64_t *out)
{
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (s == NULL || len == 0 || len > 19 || strlen(s) != len)
		return KMS_ERR_FORMAT;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return KMS_ERR_FORMAT;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno == ERANGE || *end != '\0' || x < 0 || x > max)
		return KMS_ERR_FORMAT;
	*out = (int64_t)x;
	return KMS_OK;
}

/* A non-negative integer member, typed as the format writes it (string or number). */
static int get_num(const json_t *root, const char *name, int as_string, int64_t max,
		   const struct shape *sh, int64_t *out)
{
	const json_t *v = json_object_get(root, name);
	if (as_string && json_is_string(v) && dec_string(v, max, out) == KMS_OK)
		return KMS_OK;
	if (!as_string && json_is_integer(v) && json_integer_value(v) >= 0 &&
	    json_integer_value(v) <= max) {
		*out = (int64_t)json_integer_value(v);
		return KMS_OK;
	}
	kms_log_err("state JSON (%s): %s must be %s from 0 to %lld; found %s", sh->name, name,
		    as_string ? "a decimal string" : "a JSON number", (long long)max, json_kind(v));
	return KMS_ERR_FORMAT;
}

/* Optional string member: NULL/absent/"" → *s = NULL. */
static int get_opt_str(const json_t *obj, const char *key, const char **s, size_t *len)
{
	const json_t *v = json_object_get(obj, key);
	*s = NULL, *len = 0;
	if (v == NULL || json_is_null(v))
		return KMS_OK;
	if (!json_is_string(v)) {
		kms_log_err("state JSON: %s is not a string", key);
		return KMS_ERR_FORMAT;
	}
	if (json_string_length(v) > 0) {
		*s = json_string_value(v);
		*len = json_string_length(v);
	}
	return KMS_OK;
}

static int get_hex(const json_t *obj, const char *key, uint8_t *out, size_t cap, size_t *outlen)
{
	const char *s;
	size_t len;
	*outlen = 0;
	int r = get_opt_str(obj, key, &s, &len);
	if (r != KMS_OK || s == NULL)
		return r;
	if (len / 2 > cap) {
		kms_log_err("state JSON: %s is too long (%zu hex digits, at most %zu bytes)", key,
			    len, cap);
		return KMS_ERR_TOO_LARGE;
	}
	if (enc_hex_decode(s, len, out, cap, outlen) != KMS_OK) {
		kms_log_err("state JSON: %s is not valid hex", key);
		return KMS_ERR_FORMAT;
	}
	return KMS_OK;
}

/* parts.total: tmkms's deserializer takes a number or a decimal string. */
static int get_total(const json_t *t, int64_t *out)
{
	if (t == NULL)
		return KMS_OK;
	if (json_is_integer(t) && json_integer_value(t) >= 0 &&
	    json_integer_value(t) <= UINT32_MAX) {
		*out = (int64_t)json_integer_value(t);
		return KMS_OK;
	}
	return json_is_string(t) ? dec_string(t, UINT32_MAX, out) : KMS_ERR_FORMAT;
}

static int parse_tmkms_block_id(const json_t *root, struct guard_state *st)
{
	const json_t *b = json_object_get(root, "block_id");
	if (b == NULL || json_is_null(b))
		return KMS_OK;
	if (!json_is_object(b))
		goto bad;
	const json_t *parts = json_object_get(b, "parts");
	if (parts == NULL)
		parts = json_object_get(b, "part_set_header");
	if (get_hex(b, "hash", st->block_hash, sizeof(st->block_hash), &st->block_hash_len) !=
	    KMS_OK)
		goto bad;
	if (parts != NULL && !json_is_null(parts)) {
		int64_t total = 0;
		if (!json_is_object(parts) ||
		    get_total(json_object_get(parts, "total"), &total) != KMS_OK ||
		    get_hex(parts, "hash", st->parts_hash, sizeof(st->parts_hash),
			    &st->parts_hash_len) != KMS_OK)
			goto bad;
		st->parts_total = (uint32_t)total;
	}
	/* the default object {hash:"", parts:{0, ""}} is tmkms's nil block id */
	st->has_block_id =
		st->block_hash_len != 0 || st->parts_total != 0 || st->parts_hash_len != 0;
	return KMS_OK;
bad:
	kms_log_err("state JSON: invalid tmkms block_id");
	return KMS_ERR_FORMAT;
}

/* Step numbers: tmkms 0/1/2 = proposal/prevote/precommit (peers.md §3.4), others CometBFT's. */
static enum guard_step map_step(enum guard_fmt fmt, int64_t step, int has_block)
{
	if (fmt != GUARD_FMT_TMKMS)
		return (enum guard_step)step;
	/* {h, r, 0, nil} is tmkms's initial / state_hook state: nothing signed at (h, r) */
	return step == 0 && !has_block ? GUARD_STEP_NONE : (enum guard_step)(step + 1);
}

const char *guard_fmt_step_name(enum guard_fmt fmt, int step)
{
	static const char *const tm[] = { "proposal", "prevote", "precommit" };
	if (fmt == GUARD_FMT_TMKMS)
		return step >= 0 && step <= 2 ? tm[step] : "invalid";
	return guard_step_name((enum guard_step)step);
}

/* Members of another signer's state that are not part of ours: only their type is checked. */
static int check_ignored(const json_t *root)
{
	static const char *const ign[] = { "nonce_public", "ephemeral_public",
					   "vote_ext_signature" };
	for (size_t i = 0; i < sizeof(ign) / sizeof(ign[0]); i++) {
		const json_t *v = json_object_get(root, ign[i]);
		if (v != NULL && !json_is_null(v) && !json_is_string(v)) {
			kms_log_err("state JSON (horcrux): %s must be null or a base64 string",
				    ign[i]);
			return KMS_ERR_FORMAT;
		}
	}
	return KMS_OK;
}

static int parse_sig_and_bytes(const json_t *root, struct guard_state *st)
{
	const char *s;
	size_t len, siglen = 0;
	uint8_t sig[96];
	int r = get_hex(root, "signbytes", st->sign_bytes, sizeof(st->sign_bytes),
			&st->sign_bytes_len);
	if (r != KMS_OK)
		return r;
	r = get_opt_str(root, "signature", &s, &len);
	if (r != KMS_OK)
		return r;
	if (s != NULL &&
	    (len > 128 || enc_base64_decode(s, len, sig, sizeof(sig), &siglen) != KMS_OK ||
	     siglen != GUARD_SIG_LEN)) {
		kms_log_err("state JSON: signature is not base64 of 64 bytes");
		return KMS_ERR_FORMAT;
	}
	if (siglen == GUARD_SIG_LEN) {
		memcpy(st->signature, sig, GUARD_SIG_LEN);
		st->has_signature = 1;
	}
	if ((st->sign_bytes_len != 0) != st->has_signature) {
		kms_log_warn(
			"state JSON: signbytes without signature (or the reverse) ignored; the same "
			"height/round/step will be refused");
		st->sign_bytes_len = 0;
		st->has_signature = 0;
		memset(st->signature, 0, sizeof(st->signature));
	}
	if (st->sign_bytes_len != 0) {
		struct guard_canon c;
		if (guard_pb_decode(st->sign_bytes, st->sign_bytes_len, &c) != KMS_OK ||
		    c.height != st->hrs.height || c.round != st->hrs.round ||
		    c.step != st->hrs.step) {
			kms_log_err(
				"state JSON: signbytes are not a canonical vote/proposal at the "
				"state's height/round/step");
			return KMS_ERR_FORMAT;
		}
	}
	return KMS_OK;
}

/* The format to read root with: fmt itself if root has its shape, the detected one for AUTO. */
static const struct shape *choose_shape(const json_t *root, enum guard_fmt fmt)
{
	char why[160];
	enum guard_fmt found = detect(root, why, sizeof(why));
	const struct shape *want = shape_of(fmt == GUARD_FMT_AUTO ? found : fmt);
	if (fmt == GUARD_FMT_AUTO && want == NULL)
		kms_log_err("state JSON is not a CometBFT, tmkms, horcrux or p11kms state file: %s",
			    why);
	else if (want == NULL)
		kms_log_err("state JSON: unknown format %d", (int)fmt);
	else if (found != want->fmt && found == GUARD_FMT_AUTO)
		kms_log_err("state JSON is not a %s state file: %s", want->name, why);
	else if (found != want->fmt)
		kms_log_err("state JSON has the shape of a %s state file (%s), not of a %s one: "
			    "refusing to read it with %s's fields and step numbering",
			    shape_of(found)->name, why, want->name, want->name);
	return want != NULL && found == want->fmt ? want : NULL;
}

static int parse_root(json_t *root, const struct shape *sh, struct guard_state *st)
{
	int64_t h, rd, step;
	int r = check_members(root, sh);
	if (r != KMS_OK)
		return r;
	if (get_num(root, "height", 1, INT64_MAX, sh, &h) != KMS_OK ||
	    get_num(root, "round", sh->round_string, INT32_MAX, sh, &rd) != KMS_OK ||
	    get_num(root, "step", 0, sh->max_step, sh, &step) != KMS_OK)
		return KMS_ERR_FORMAT;
	st->fmt = sh->fmt;
	st->src_step = (int)step;
	st->hrs.height = h;
	st->hrs.round = (int32_t)rd;
	if (sh->fmt == GUARD_FMT_TMKMS) {
		r = parse_tmkms_block_id(root, st);
		st->hrs.step = map_step(sh->fmt, step, st->has_block_id);
		return r;
	}
	st->hrs.step = map_step(sh->fmt, step, 0);
	if (sh->fmt == GUARD_FMT_P11KMS) {
		const char *cid;
		size_t clen;
		if (get_opt_str(root, "chain_id", &cid, &clen) != KMS_OK || cid == NULL ||
		    clen > GUARD_MAX_CHAIN_ID || strlen(cid) != clen) {
			kms_log_err("state JSON: invalid chain_id");
			return KMS_ERR_FORMAT;
		}
		memcpy(st->chain_id, cid, clen + 1);
	}
	if (sh->fmt == GUARD_FMT_HORCRUX && (r = check_ignored(root)) != KMS_OK)
		return r;
	return parse_sig_and_bytes(root, st);
}

int guard_state_parse_json(const uint8_t *p, size_t n, enum guard_fmt fmt, struct guard_state *st)
{
	json_error_t err;
	json_t *root = NULL;
	const struct shape *sh;
	int r = KMS_ERR_FORMAT;
	memset(st, 0, sizeof(*st));
	if (n > JSON_MAX)
		return KMS_ERR_TOO_LARGE;
	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL || !json_is_object(root)) {
		kms_log_err("state JSON does not parse: %s (line %d)",
			    root ? "not an object" : err.text, err.line);
		goto out;
	}
	if ((sh = choose_shape(root, fmt)) == NULL)
		goto out;
	r = parse_root(root, sh, st);
out:
	json_decref(root);
	if (r != KMS_OK)
		kms_wipe(st, sizeof(*st));
	return r;
}

/* ---- init and import ---- */

static int check_chain_id(const char *chain_id)
{
	if (chain_id == NULL || chain_id[0] == '\0' || strlen(chain_id) > GUARD_MAX_CHAIN_ID) {
		kms_log_err("invalid chain-id \"%s\" (1..%d characters)", chain_id ? chain_id : "",
			    GUARD_MAX_CHAIN_ID);
		return KMS_ERR_CONFIG;
	}
	return KMS_OK;
}

int guard_state_init(const char *path, const char *chain_id, int64_t height, int32_t round,
		     enum guard_step step)
{
	struct guard_rec *rec;
	struct guard_hrs hrs = { height, round, step };
	int r = check_chain_id(chain_id);
	if (r != KMS_OK)
		return r;
	if (guard_hrs_valid(&hrs) != KMS_OK) {
		kms_log_err("invalid initial height/round/step h=%lld r=%d s=%d", (long long)height,
			    round, (int)step);
		return KMS_ERR_FORMAT;
	}
	rec = calloc(1, sizeof(*rec));
	if (rec == NULL)
		return KMS_ERR_ALLOC;
	rec->hrs = hrs;
	rec->written_at = (int64_t)time(NULL);
	memcpy(rec->chain_id, chain_id, strlen(chain_id) + 1);
	r = guard_file_create(path, rec);
	if (r == KMS_OK)
		kms_log_info("double-sign state created chain=%s path=%s h=%lld r=%d s=%d",
			     chain_id, path, (long long)height, round, (int)step);
	free(rec);
	return r;
}

static void rec_from_state(struct guard_rec *rec, const struct guard_state *st,
			   const char *chain_id)
{
	memset(rec, 0, sizeof(*rec));
	rec->hrs = st->hrs;
	rec->written_at = (int64_t)time(NULL);
	memcpy(rec->chain_id, chain_id, strlen(chain_id) + 1);
	if (st->has_signature && st->sign_bytes_len != 0) {
		rec->has_sig = 1;
		memcpy(rec->signature, st->signature, GUARD_SIG_LEN);
		rec->sign_bytes_len = st->sign_bytes_len;
		memcpy(rec->sign_bytes, st->sign_bytes, st->sign_bytes_len);
	}
}

static int import_over(const char *path, const char *chain_id, struct guard_rec *rec)
{
	struct guard_file *gf = NULL;
	int r = guard_file_open(path, chain_id, GUARD_LOAD_STRICT, &gf);
	if (r != KMS_OK)
		return r;
	if (strcmp(gf->rec.chain_id, chain_id) != 0) {
		kms_log_err("state import refused path=%s: the file belongs to chain %s, not %s",
			    path, gf->rec.chain_id, chain_id);
		r = KMS_ERR_REFUSED;
	} else if (guard_hrs_cmp(&rec->hrs, &gf->rec.hrs) < 0) {
		kms_log_err("state import refused path=%s: imported h/r/s=%lld/%d/%d is behind the "
			    "existing %lld/%d/%d (that could allow a double sign)",
			    path, (long long)rec->hrs.height, rec->hrs.round, (int)rec->hrs.step,
			    (long long)gf->rec.hrs.height, gf->rec.hrs.round,
			    (int)gf->rec.hrs.step);
		r = KMS_ERR_REFUSED;
	} else {
		rec->seq = gf->rec.seq + 1;
		r = guard_file_write(gf, rec);
	}
	guard_file_close(gf);
	return r;
}

int guard_state_import(const char *path, const char *chain_id, const uint8_t *json, size_t len,
		       enum guard_fmt fmt, int allow_overwrite)
{
	struct guard_state *st = calloc(1, sizeof(*st));
	struct guard_rec *rec = calloc(1, sizeof(*rec));
	int r = KMS_ERR_ALLOC;
	if (st == NULL || rec == NULL)
		goto out;
	r = check_chain_id(chain_id);
	if (r != KMS_OK)
		goto out;
	r = guard_state_parse_json(json, len, fmt, st);
	if (r != KMS_OK)
		goto out;
	if (st->chain_id[0] != '\0' && strcmp(st->chain_id, chain_id) != 0) {
		kms_log_err("state import refused: the JSON is for chain %s, not %s", st->chain_id,
			    chain_id);
		r = KMS_ERR_REFUSED;
		goto out;
	}
	if (st->sign_bytes_len != 0) {
		struct guard_canon c;
		if (guard_pb_decode(st->sign_bytes, st->sign_bytes_len, &c) != KMS_OK ||
		    c.chain_id_len != strlen(chain_id) ||
		    memcmp(c.chain_id, chain_id, c.chain_id_len) != 0) {
			kms_log_err(
				"state import refused: the stored sign bytes are for another chain "
				"than %s",
				chain_id);
			r = KMS_ERR_REFUSED;
			goto out;
		}
	}
	rec_from_state(rec, st, chain_id);
	/* Overwrite goes straight to the locked in-place update, so that a
	 * successful import does not first log a refused create. */
	struct stat sb;
	if (allow_overwrite && lstat(path, &sb) == 0)
		r = import_over(path, chain_id, rec);
	else
		r = guard_file_create(path, rec);
	if (r == KMS_OK)
		kms_log_info(
			"double-sign state imported chain=%s path=%s h=%lld r=%d s=%d signbytes=%zu",
			chain_id, path, (long long)rec->hrs.height, rec->hrs.round,
			(int)rec->hrs.step, rec->sign_bytes_len);
out:
	if (st != NULL)
		kms_wipe(st, sizeof(*st));
	free(st);
	free(rec);
	return r;
}

/* ---- export ---- */

static int put_json_str(struct kbuf *b, const char *s)
{
	int r = kbuf_put_u8(b, '"');
	for (; r == KMS_OK && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			r = kbuf_putf(b, "\\%c", ch);
		else if (ch < 0x20)
			r = kbuf_putf(b, "\\u%04x", ch);
		else
			r = kbuf_put_u8(b, ch);
	}
	return r == KMS_OK ? kbuf_put_u8(b, '"') : r;
}

static int put_hex_upper(struct kbuf *b, const uint8_t *p, size_t n)
{
	if (n == 0)
		return KMS_OK;
	char *h = malloc(2 * n + 1);
	if (h == NULL)
		return KMS_ERR_ALLOC;
	int r = enc_hex_encode_upper(p, n, h, 2 * n + 1);
	if (r == KMS_OK)
		r = kbuf_put(b, h, 2 * n);
	free(h);
	return r;
}

/* cmtjson.MarshalIndent of FilePVLastSignState (HORCRUX: round as a string; P11KMS: +chain_id). */
static int export_cometbft(const struct guard_rec *rec, enum guard_fmt fmt, struct kbuf *out)
{
	char b64[96];
	int r = kbuf_put(out, "{\n", 2);
	if (r == KMS_OK && fmt == GUARD_FMT_P11KMS) {
		static const char key[] = "  \"chain_id\": ";
		r = kbuf_put(out, key, sizeof(key) - 1);
		if (r == KMS_OK)
			r = put_json_str(out, rec->chain_id);
		if (r == KMS_OK)
			r = kbuf_put(out, ",\n", 2);
	}
	if (r == KMS_OK)
		r = kbuf_putf(out, "  \"height\": \"%" PRId64 "\",\n", rec->hrs.height);
	if (r == KMS_OK)
		r = fmt == GUARD_FMT_HORCRUX ?
			    kbuf_putf(out, "  \"round\": \"%d\",\n", (int)rec->hrs.round) :
			    kbuf_putf(out, "  \"round\": %d,\n", (int)rec->hrs.round);
	if (r == KMS_OK)
		r = kbuf_putf(out, "  \"step\": %d", (int)rec->hrs.step);
	if (r == KMS_OK && rec->has_sig) {
		r = enc_base64_encode(rec->signature, GUARD_SIG_LEN, b64, sizeof(b64));
		if (r == KMS_OK)
			r = kbuf_putf(out, ",\n  \"signature\": \"%s\"", b64);
	}
	if (r == KMS_OK && rec->sign_bytes_len != 0) {
		static const char key[] = ",\n  \"signbytes\": \"";
		r = kbuf_put(out, key, sizeof(key) - 1);
		if (r == KMS_OK)
			r = put_hex_upper(out, rec->sign_bytes, rec->sign_bytes_len);
		if (r == KMS_OK)
			r = kbuf_put_u8(out, '"');
	}
	if (r == KMS_OK)
		r = kbuf_put(out, "\n}", 2);
	return r;
}

/* tmkms consensus::State, compact serde_json; block_id from the stored canonical sign bytes. */
static int export_tmkms(const struct guard_rec *rec, struct kbuf *out)
{
	const uint8_t *hash = NULL, *phash = NULL;
	size_t hlen = 0, plen = 0;
	uint32_t total = 0;
	int step = rec->hrs.step == GUARD_STEP_NONE ? 0 : (int)rec->hrs.step - 1;
	if (rec->sign_bytes_len != 0) {
		struct guard_canon c;
		if (guard_pb_decode(rec->sign_bytes, rec->sign_bytes_len, &c) != KMS_OK ||
		    (c.block_id != NULL &&
		     guard_pb_block_id(c.block_id, c.block_id_len, &hash, &hlen, &total, &phash,
				       &plen) != KMS_OK)) {
			kms_log_err("stored sign bytes do not decode; cannot export a block_id");
			return KMS_ERR_FORMAT;
		}
	}
	int r = kbuf_putf(out, "{\"height\":\"%" PRId64 "\",\"round\":\"%d\",\"step\":%d,",
			rec->hrs.height, (int)rec->hrs.round, step);
	if (r == KMS_OK)
		r = kbuf_putf(out, "\"block_id\":{\"hash\":\"");
	if (r == KMS_OK)
		r = put_hex_upper(out, hash, hlen);
	if (r == KMS_OK)
		r = kbuf_putf(out, "\",\"parts\":{\"total\":%u,\"hash\":\"", (unsigned)total);
	if (r == KMS_OK)
		r = put_hex_upper(out, phash, plen);
	if (r == KMS_OK)
		r = kbuf_putf(out, "\"}}}");
	return r;
}

int guard_state_export(const char *path, enum guard_fmt fmt, struct kbuf *out)
{
	struct guard_file *gf = NULL;
	if (fmt == GUARD_FMT_AUTO || (unsigned)fmt > GUARD_FMT_P11KMS)
		return KMS_ERR_UNSUPPORTED;
	int r = guard_file_open(path, NULL, GUARD_LOAD_STRICT, &gf);
	if (r != KMS_OK)
		return r;
	r = fmt == GUARD_FMT_TMKMS ? export_tmkms(&gf->rec, out) :
				     export_cometbft(&gf->rec, fmt, out);
	guard_file_close(gf);
	return r;
}

/* ---- show ---- */

int guard_state_show(const char *path, struct kbuf *out)
{
	struct guard_file *gf = NULL;
	char when[32] = "unknown";
	uint8_t sum[32];
	unsigned int sl = 32;
	int r = guard_file_open_ro(path, &gf);
	if (r != KMS_OK)
		return r;
	const struct guard_rec *rec = &gf->rec;
	time_t t = (time_t)rec->written_at;
	struct tm tm;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	r = kbuf_putf(out,
		    "path:       %s\nchain:      %s\nheight:     %" PRId64 "\nround:      %d\n"
		    "step:       %d (%s)\nsequence:   %llu\n",
		    gf->path, rec->chain_id, rec->hrs.height, (int)rec->hrs.round,
		    (int)rec->hrs.step, guard_step_name(rec->hrs.step),
		    (unsigned long long)rec->seq);
	if (r == KMS_OK && rec->sign_bytes_len != 0 &&
	    EVP_Digest(rec->sign_bytes, rec->sign_bytes_len, sum, &sl, EVP_sha256(), NULL) == 1)
		r = kbuf_putf(out,
			    "sign bytes: %zu bytes, sha256 %02x%02x%02x%02x%02x%02x%02x%02x...\n",
			    rec->sign_bytes_len, sum[0], sum[1], sum[2], sum[3], sum[4], sum[5],
			    sum[6], sum[7]);
	else if (r == KMS_OK)
		r = kbuf_putf(out, "sign bytes: none (the same height/round/step will be refused)\n");
	if (r == KMS_OK)
		r = kbuf_putf(out, "signature:  %s\nwritten:    %s\n",
			    rec->has_sig ? "stored" : "none", when);
	int doubt = 0;
	for (int i = 0; r == KMS_OK && i < 2; i++) {
		char d[200];
		guard_slot_describe(&gf->slot[i], d, sizeof(d));
		doubt |= !gf->slot[i].ok;
		r = kbuf_putf(out, "slot %d:     %s%s\n", i, d,
			    i == gf->cur_slot ? " (current)" : "");
	}
	if (r == KMS_OK && doubt)
		r = kbuf_putf(out,
			    "note:       a record is invalid: `p11kms start` refuses this state "
			    "(unless it is a record being rewritten by a running signer); see "
			    "`p11kms state repair -c <config> --chain %s`\n",
			    rec->chain_id);
	guard_file_close(gf);
	return r;
}
