/* SPDX-License-Identifier: Apache-2.0 */
/* guard_ state formats: CometBFT/tmkms/horcrux import and export against state_files.json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/guard.h"
#include "p11kms/enc.h"
#include "p11kms/kbuf.h"
#include "p11kms/kms_log.h"
#include "test_guard_util.h"
#include "testutil.h"

struct fx {
	char *dir;
	int n;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	kms_log_set_quiet(1);
	f->dir = tu_mkdtemp();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	tu_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static char *fresh(struct fx *f)
{
	char name[32];
	snprintf(name, sizeof(name), "st%d.bin", f->n++);
	return tu_path(f->dir, name);
}

static json_t *section(json_t *v, const char *name)
{
	json_t *s = json_object_get(json_object_get(v, name), "examples");
	assert_true(json_is_array(s));
	return s;
}

/* cmtjson.MarshalIndent of the example, written independently of the exporter. */
static char *cometbft_text(const json_t *j)
{
	char *out = malloc(1024);
	int n = snprintf(out, 1024,
			 "{\n  \"height\": \"%s\",\n  \"round\": %lld,\n  \"step\": %lld",
			 tu_json_str(j, "height"),
			 (long long)json_integer_value(json_object_get(j, "round")),
			 (long long)json_integer_value(json_object_get(j, "step")));
	if (json_object_get(j, "signature") != NULL)
		n += snprintf(out + n, 1024 - (size_t)n, ",\n  \"signature\": \"%s\"",
			      tu_json_str(j, "signature"));
	if (json_object_get(j, "signbytes") != NULL)
		n += snprintf(out + n, 1024 - (size_t)n, ",\n  \"signbytes\": \"%s\"",
			      tu_json_str(j, "signbytes"));
	snprintf(out + n, 1024 - (size_t)n, "\n}");
	return out;
}

static char *export_str(const char *path, enum guard_fmt fmt)
{
	struct kbuf *b = kbuf_new(16384);
	assert_int_equal(guard_state_export(path, fmt, b), KMS_OK);
	char *s = strndup((const char *)kbuf_ptr(b), kbuf_len(b));
	kbuf_free(b);
	return s;
}

static void import_json(const char *path, const char *chain, const json_t *j, enum guard_fmt fmt,
			int want)
{
	char *text = json_dumps(j, JSON_COMPACT);
	assert_int_equal(
		guard_state_import(path, chain, (const uint8_t *)text, strlen(text), fmt, 0), want);
	free(text);
}

static void test_cometbft_roundtrip(void **state)
{
	struct fx *f = *state;
	json_t *v = tu_load_vector("state_files.json"), *e;
	size_t i;
	json_array_foreach(section(v, "cometbft_priv_validator_state"), i, e) {
		json_t *j = json_object_get(e, "json");
		char *path = fresh(f);
		import_json(path, "test_chain_id", j, GUARD_FMT_AUTO, KMS_OK);
		char *got = export_str(path, GUARD_FMT_COMETBFT), *want = cometbft_text(j);
		assert_string_equal(got, want); /* byte-exact cmtjson */
		/* the parse of our own export gives the same state */
		struct guard_state *st = malloc(sizeof(*st));
		assert_int_equal(guard_state_parse_json((const uint8_t *)got, strlen(got),
							GUARD_FMT_AUTO, st),
				 KMS_OK);
		assert_int_equal(st->fmt, GUARD_FMT_COMETBFT);
		assert_int_equal(st->hrs.height, atoll(tu_json_str(j, "height")));
		free(st);
		free(got);
		free(want);
		free(path);
	}
	json_decref(v);
}

/* An imported FilePV state with sign bytes answers an identical retry with its signature. */
static void test_imported_signbytes_reused(void **state)
{
	struct fx *f = *state;
	json_t *v = tu_load_vector("state_files.json");
	json_t *j = json_object_get(json_array_get(section(v, "cometbft_priv_validator_state"), 2),
				    "json");
	char *path = fresh(f);
	struct guard *g;
	struct guard_result res;
	size_t n;
	uint8_t *sb = tu_hex_alloc(tu_json_str(j, "signbytes"), &n);
	import_json(path, "test_chain_id", j, GUARD_FMT_COMETBFT, KMS_OK);
	assert_int_equal(tg_open(path, "test_chain_id", &g), KMS_OK);
	struct guard_request req = { { 12345, 2, GUARD_STEP_PRECOMMIT }, sb, n };
	assert_int_equal(guard_sign(g, &req, tg_fake_sign, NULL, &res), KMS_OK);
	assert_int_equal(res.reused, 1);
	uint8_t sig[64];
	size_t sl = 0;
	const char *b64 = tu_json_str(j, "signature");
	assert_int_equal(enc_base64_decode(b64, strlen(b64), sig, sizeof(sig), &sl), KMS_OK);
	assert_memory_equal(res.signature, sig, 64);
	guard_free(g);
	/* importing it for another chain is refused: its sign bytes name test_chain_id */
	char *p2 = fresh(f);
	import_json(p2, "haqq_11235-1", j, GUARD_FMT_AUTO, KMS_ERR_REFUSED);
	free(p2);
	free(sb);
	free(path);
	json_decref(v);
}

static void test_tmkms(void **state)
{
	struct fx *f = *state;
	json_t *v = tu_load_vector("state_files.json");
	json_t *ex = section(v, "tmkms_state_file");
	json_t *init = json_object_get(json_array_get(ex, 0), "json");
	json_t *pc = json_object_get(json_array_get(ex, 1), "json");
	struct guard_state *st = malloc(sizeof(*st));
	char *t = json_dumps(pc, JSON_COMPACT);
	assert_int_equal(guard_state_parse_json((const uint8_t *)t, strlen(t), GUARD_FMT_AUTO, st),
			 KMS_OK);
	assert_int_equal(st->fmt, GUARD_FMT_TMKMS);
	assert_int_equal(st->hrs.height, 12345);
	assert_int_equal(st->hrs.round, 2);
	assert_int_equal(st->hrs.step, GUARD_STEP_PRECOMMIT); /* tmkms 2 → 3 */
	assert_true(st->has_block_id);
	assert_int_equal(st->parts_total, 1000000);
	assert_int_equal(st->sign_bytes_len, 0);
	free(t);
	t = json_dumps(init, JSON_COMPACT);
	assert_int_equal(guard_state_parse_json((const uint8_t *)t, strlen(t), GUARD_FMT_TMKMS, st),
			 KMS_OK);
	assert_int_equal(st->hrs.step, GUARD_STEP_NONE); /* {0,0,0,nil}: nothing signed */
	assert_false(st->has_block_id);
	free(t);

	/* tmkms export of the FilePV precommit example equals the tmkms example (compact, byte-exact) */
	json_t *cj = json_object_get(json_array_get(section(v, "cometbft_priv_validator_state"), 2),
				     "json");
	char *path = fresh(f);
	import_json(path, "test_chain_id", cj, GUARD_FMT_COMETBFT, KMS_OK);
	char *got = export_str(path, GUARD_FMT_TMKMS);
	char *want = json_dumps(pc, JSON_COMPACT);
	assert_string_equal(got, want);
	free(got);
	free(want);
	free(path);
	/* and the initial state exports as tmkms's initial file */
	path = fresh(f);
	assert_int_equal(guard_state_init(path, "c", 0, 0, GUARD_STEP_NONE), KMS_OK);
	got = export_str(path, GUARD_FMT_TMKMS);
	want = json_dumps(init, JSON_COMPACT);
	assert_string_equal(got, want);
	free(got);
	free(want);
	free(path);

	/* a tmkms state has no sign bytes: the same H/R/S is refused, the next step signs */
	path = fresh(f);
	import_json(path, "test_chain_id", pc, GUARD_FMT_AUTO, KMS_OK);
	struct guard *g;
	struct guard_result res;
	assert_int_equal(tg_open(path, "test_chain_id", &g), KMS_OK);
	struct tg_msg m = { GUARD_STEP_PRECOMMIT, 12345, 2, 0, 1, 5, 0, "test_chain_id" };
	uint8_t sb[512];
	size_t n = tg_sign_bytes(&m, sb, sizeof(sb));
	struct guard_request req = { { 12345, 2, GUARD_STEP_PRECOMMIT }, sb, n };
	assert_int_equal(guard_sign(g, &req, tg_fake_sign, NULL, &res), KMS_ERR_DOUBLE_SIGN);
	assert_non_null(strstr(res.reason, "no sign bytes"));
	m.h = req.hrs.height = 12346;
	m.r = req.hrs.round = 0;
	req.sign_bytes_len = tg_sign_bytes(&m, sb, sizeof(sb));
	assert_int_equal(guard_sign(g, &req, tg_fake_sign, NULL, &res), KMS_OK);
	guard_free(g);
	free(path);

	/* a state_hook state {h, 0, 0, nil} does not block the proposal at (h, 0) (peers.md §3.4) */
	path = fresh(f);
	const char *hook = "{\"height\":\"500\",\"round\":\"0\",\"step\":0,\"block_id\":null}";
	assert_int_equal(guard_state_import(path, "test_chain_id", (const uint8_t *)hook,
					    strlen(hook), GUARD_FMT_AUTO, 0),
			 KMS_OK);
	assert_int_equal(tg_open(path, "test_chain_id", &g), KMS_OK);
	struct tg_msg p = { GUARD_STEP_PROPOSE, 500, 0, -1, 1, 5, 0, "test_chain_id" };
	struct guard_request preq = { { 500, 0, GUARD_STEP_PROPOSE },
				      sb,
				      tg_sign_bytes(&p, sb, sizeof(sb)) };
	assert_int_equal(guard_sign(g, &preq, tg_fake_sign, NULL, &res), KMS_OK);
	guard_free(g);
	free(path);
	/* aliases: part_set_header and a string total; steps over 2 refused */
	const char *alias =
		"{\"height\":\"7\",\"round\":\"1\",\"step\":1,\"block_id\":{\"hash\":\"AB\","
		"\"part_set_header\":{\"total\":\"3\",\"hash\":\"cd\"}}}";
	assert_int_equal(
		guard_state_parse_json((const uint8_t *)alias, strlen(alias), GUARD_FMT_AUTO, st),
		KMS_OK);
	assert_int_equal(st->hrs.step, GUARD_STEP_PREVOTE);
	assert_int_equal(st->parts_total, 3);
	const char *bad = "{\"height\":\"7\",\"round\":\"1\",\"step\":3,\"block_id\":null}";
	assert_int_equal(
		guard_state_parse_json((const uint8_t *)bad, strlen(bad), GUARD_FMT_AUTO, st),
		KMS_ERR_FORMAT);
	free(st);
	json_decref(v);
}

static void test_horcrux_and_p11kms(void **state)
{
	struct fx *f = *state;
	json_t *v = tu_load_vector("state_files.json");
	json_t *cj = json_object_get(json_array_get(section(v, "cometbft_priv_validator_state"), 2),
				     "json");
	char *path = fresh(f), *p2 = fresh(f), *p3 = fresh(f);
	import_json(path, "test_chain_id", cj, GUARD_FMT_COMETBFT, KMS_OK);
	char *hx = export_str(path, GUARD_FMT_HORCRUX);
	assert_non_null(strstr(hx, "\"round\": \"2\""));
	struct guard_state *st = malloc(sizeof(*st));
	assert_int_equal(
		guard_state_parse_json((const uint8_t *)hx, strlen(hx), GUARD_FMT_AUTO, st),
		KMS_OK);
	assert_int_equal(st->fmt, GUARD_FMT_HORCRUX);
	assert_int_equal(st->sign_bytes_len, 125);
	assert_true(st->has_signature);
	/* round trip through horcrux gives a byte-identical CometBFT export */
	assert_int_equal(guard_state_import(p2, "test_chain_id", (const uint8_t *)hx, strlen(hx),
					    GUARD_FMT_AUTO, 0),
			 KMS_OK);
	char *a = export_str(path, GUARD_FMT_COMETBFT), *b = export_str(p2, GUARD_FMT_COMETBFT);
	assert_string_equal(a, b);
	char *px = export_str(path, GUARD_FMT_P11KMS);
	assert_non_null(strstr(px, "\"chain_id\": \"test_chain_id\""));
	assert_int_equal(
		guard_state_import(p3, "other", (const uint8_t *)px, strlen(px), GUARD_FMT_AUTO, 0),
		KMS_ERR_REFUSED);
	assert_int_equal(guard_state_import(p3, "test_chain_id", (const uint8_t *)px, strlen(px),
					    GUARD_FMT_AUTO, 0),
			 KMS_OK);
	struct kbuf *kb = kbuf_new(4096);
	assert_int_equal(guard_state_export(p3, GUARD_FMT_AUTO, kb), KMS_ERR_UNSUPPORTED);
	kbuf_free(kb);
	free(hx);
	free(a);
	free(b);
	free(px);
	free(st);
	free(path);
	free(p2);
	free(p3);
	json_decref(v);
}

static void test_import_overwrite_rules(void **state)
{
	struct fx *f = *state;
	char *path = fresh(f);
	const char *s10 = "{\"height\":\"10\",\"round\":0,\"step\":2}";
	const char *s9 = "{\"height\":\"9\",\"round\":5,\"step\":3}";
	const char *s11 = "{\"height\":\"11\",\"round\":0,\"step\":0}";
	assert_int_equal(guard_state_import(path, "c1", (const uint8_t *)s10, strlen(s10),
					    GUARD_FMT_AUTO, 0),
			 KMS_OK);
	assert_int_equal(guard_state_import(path, "c1", (const uint8_t *)s11, strlen(s11),
					    GUARD_FMT_AUTO, 0),
			 KMS_ERR_EXISTS);
	assert_int_equal(
		guard_state_import(path, "c1", (const uint8_t *)s9, strlen(s9), GUARD_FMT_AUTO, 1),
		KMS_ERR_REFUSED);
	assert_int_equal(guard_state_import(path, "c2", (const uint8_t *)s11, strlen(s11),
					    GUARD_FMT_AUTO, 1),
			 KMS_ERR_REFUSED);
	assert_int_equal(guard_state_import(path, "c1", (const uint8_t *)s11, strlen(s11),
					    GUARD_FMT_AUTO, 1),
			 KMS_OK);
	struct guard *g;
	struct guard_hrs last;
	assert_int_equal(tg_open(path, "c1", &g), KMS_OK);
	guard_last(g, &last);
	assert_int_equal(last.height, 11);
	assert_int_equal(last.step, GUARD_STEP_NONE);
	guard_free(g);
	/* show */
	struct kbuf *b = kbuf_new(4096);
	assert_int_equal(guard_state_show(path, b), KMS_OK);
	char *s = strndup((const char *)kbuf_ptr(b), kbuf_len(b));
	assert_non_null(strstr(s, "chain:      c1"));
	assert_non_null(strstr(s, "height:     11"));
	assert_non_null(strstr(s, "(none)"));
	/* the import wrote sequence 2; opening for signing does not write */
	assert_non_null(strstr(s, "sequence:   2"));
	assert_non_null(strstr(s, "(current)"));
	free(s);
	/* show is a read-only snapshot: it works while a signer holds the lock,
	 * while export (which could hand out stale state) is refused */
	assert_int_equal(tg_open(path, "c1", &g), KMS_OK);
	kbuf_reset(b);
	assert_int_equal(guard_state_show(path, b), KMS_OK);
	s = strndup((const char *)kbuf_ptr(b), kbuf_len(b));
	assert_non_null(strstr(s, "height:     11"));
	free(s);
	kbuf_reset(b);
	assert_int_equal(guard_state_export(path, GUARD_FMT_COMETBFT, b), KMS_ERR_LOCKED);
	guard_free(g);
	/* a long path (over the 256-byte format buffer) still shows */
	char name[240];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	char *lp = tu_path(f->dir, name);
	assert_int_equal(guard_state_init(lp, "c1", 3, 0, GUARD_STEP_NONE), KMS_OK);
	kbuf_reset(b);
	assert_int_equal(guard_state_show(lp, b), KMS_OK);
	assert_true(kbuf_len(b) > strlen(lp));
	free(lp);
	kbuf_free(b);
	free(path);
}

static void test_parse_rejects(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"[]",
		"{",
		"{\"height\":\"-1\",\"round\":0,\"step\":0}",
		"{\"height\":\"1x\",\"round\":0,\"step\":0}",
		"{\"height\":\"1\",\"round\":0,\"step\":4}",
		"{\"height\":\"1\",\"round\":-1,\"step\":0}",
		"{\"height\":1.5,\"round\":0,\"step\":0}",
		"{\"round\":0,\"step\":0}",
		"{\"height\":\"1\",\"round\":0}",
		"{\"height\":\"99999999999999999999\",\"round\":0,\"step\":0}",
		"{\"height\":\"1\",\"round\":2147483648,\"step\":0}",
		"{\"height\":\"1\",\"round\":0,\"step\":1,\"signature\":\"AAAA\",\"signbytes\":\"00\"}",
		"{\"height\":\"1\",\"round\":0,\"step\":1,\"signbytes\":\"0G\"}",
		"{\"height\":\"1\",\"height\":\"2\",\"round\":0,\"step\":0}",
		"{\"chain_id\":5,\"height\":\"1\",\"round\":0,\"step\":0}",
	};
	struct guard_state *st = malloc(sizeof(*st));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = guard_state_parse_json((const uint8_t *)bad[i], strlen(bad[i]),
					       GUARD_FMT_AUTO, st);
		if (r == KMS_OK)
			fail_msg("accepted: %s", bad[i]);
	}
	/* a signature without sign bytes is dropped, not trusted */
	const char *half =
		"{\"height\":\"1\",\"round\":0,\"step\":1,\"signature\":"
		"\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\"}";
	assert_int_equal(
		guard_state_parse_json((const uint8_t *)half, strlen(half), GUARD_FMT_AUTO, st),
		KMS_OK);
	assert_false(st->has_signature);
	free(st);
}

/* ---- each reader accepts only its own format's shape ---- */

/* The issue's tmkms file: step 2 is tmkms's PRECOMMIT (CometBFT's 2 would be prevote). */
static const char tmkms_issue[] = "{\"height\":\"3399911\",\"round\":\"0\",\"step\":2,"
				  "\"block_id\":null}";

struct sample {
	enum guard_fmt fmt;
	char *json;
};

/* One file per format: the vectors' CometBFT and tmkms examples, a horcrux threshold
 * SignState as horcrux v3 writes it, the issue's tmkms file and a p11kms export. */
static size_t samples(struct fx *f, struct sample *out)
{
	json_t *v = tu_load_vector("state_files.json");
	json_t *cj = json_object_get(json_array_get(section(v, "cometbft_priv_validator_state"), 2),
				     "json");
	json_t *tj = json_object_get(json_array_get(section(v, "tmkms_state_file"), 1), "json");
	size_t n = 0;
	out[n++] = (struct sample){ GUARD_FMT_COMETBFT, json_dumps(cj, JSON_INDENT(2)) };
	out[n++] = (struct sample){ GUARD_FMT_TMKMS, json_dumps(tj, JSON_COMPACT) };
	out[n++] = (struct sample){ GUARD_FMT_TMKMS, strdup(tmkms_issue) };
	char hx[1024];
	snprintf(hx, sizeof(hx),
		 "{\n  \"height\": \"12345\",\n  \"round\": \"2\",\n  \"step\": 3,\n"
		 "  \"nonce_public\": null,\n  \"signature\": \"%s\",\n  \"signbytes\": \"%s\"\n}",
		 tu_json_str(cj, "signature"), tu_json_str(cj, "signbytes"));
	out[n++] = (struct sample){ GUARD_FMT_HORCRUX, strdup(hx) };
	char *path = fresh(f);
	import_json(path, "test_chain_id", cj, GUARD_FMT_COMETBFT, KMS_OK);
	out[n++] = (struct sample){ GUARD_FMT_P11KMS, export_str(path, GUARD_FMT_P11KMS) };
	free(path);
	json_decref(v);
	return n;
}

/*
 * Every format's file under every other format is refused (a tmkms file read
 * as CometBFT would shift its step back by one: precommit → prevote), and
 * nothing is written; under its own format or auto it parses.
 */
static void test_wrong_format_refused(void **state)
{
	struct fx *f = *state;
	struct sample s[8];
	size_t n = samples(f, s);
	static const enum guard_fmt fmts[] = { GUARD_FMT_COMETBFT, GUARD_FMT_TMKMS,
					       GUARD_FMT_HORCRUX, GUARD_FMT_P11KMS };
	struct guard_state *st = malloc(sizeof(*st));
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = (const uint8_t *)s[i].json;
		size_t len = strlen(s[i].json);
		assert_int_equal(guard_state_parse_json(p, len, GUARD_FMT_AUTO, st), KMS_OK);
		assert_int_equal(st->fmt, s[i].fmt);
		for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
			int r = guard_state_parse_json(p, len, fmts[k], st);
			if (fmts[k] == s[i].fmt) {
				assert_int_equal(r, KMS_OK);
				continue;
			}
			if (r == KMS_OK)
				fail_msg("a %d-format file was accepted as format %d: %s",
					 (int)s[i].fmt, (int)fmts[k], s[i].json);
			char *path = fresh(f);
			assert_int_not_equal(
				guard_state_import(path, "test_chain_id", p, len, fmts[k], 0),
				KMS_OK);
			assert_int_equal(access(path, F_OK), -1); /* nothing written */
			free(path);
		}
	}
	/* the issue's file: precommit under auto and tmkms, never prevote */
	assert_int_equal(guard_state_parse_json((const uint8_t *)tmkms_issue, strlen(tmkms_issue),
						GUARD_FMT_AUTO, st),
			 KMS_OK);
	assert_int_equal(st->hrs.height, 3399911);
	assert_int_equal(st->hrs.round, 0);
	assert_int_equal(st->hrs.step, GUARD_STEP_PRECOMMIT);
	for (size_t i = 0; i < n; i++)
		free(s[i].json);
	free(st);
}

/* guard_state_detect names each sample's format and why; shapes that fit none are AUTO. */
static void test_detect(void **state)
{
	struct fx *f = *state;
	struct sample s[8];
	char why[160];
	size_t n = samples(f, s);
	for (size_t i = 0; i < n; i++) {
		enum guard_fmt d = guard_state_detect((const uint8_t *)s[i].json, strlen(s[i].json),
						      why, sizeof(why));
		assert_int_equal(d, s[i].fmt);
		assert_true(why[0] != '\0');
		free(s[i].json);
	}
	assert_string_equal(guard_fmt_name(GUARD_FMT_TMKMS), "tmkms");
	assert_string_equal(guard_fmt_step_name(GUARD_FMT_TMKMS, 2), "precommit");
	assert_string_equal(guard_fmt_step_name(GUARD_FMT_COMETBFT, 2), "prevote");
	static const char *none[] = {
		"[1]",
		"{",
		"{\"height\":\"5\",\"step\":1}",
		"{\"height\":\"5\",\"round\":null,\"step\":1}",
		"{\"height\":\"5\",\"round\":\"0\",\"step\":1,\"block_id\":null,"
		"\"nonce_public\":null}",
		"{\"height\":\"5\",\"round\":0,\"step\":1,\"block_id\":null,\"chain_id\":\"c\"}",
	};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		assert_int_equal(guard_state_detect((const uint8_t *)none[i], strlen(none[i]), why,
						    sizeof(why)),
				 GUARD_FMT_AUTO);
	const char *old = "{\"height\":\"5\",\"round\":\"1\",\"step\":2,\"ephemeral_public\":null}";
	assert_int_equal(guard_state_detect((const uint8_t *)old, strlen(old), why, sizeof(why)),
			 GUARD_FMT_HORCRUX);
	assert_non_null(strstr(why, "ephemeral_public"));
}

/* Each reader takes only its writer's members and types. */
static void test_strict_members(void **state)
{
	(void)state;
	static const struct {
		enum guard_fmt fmt;
		const char *json;
	} bad[] = {
		/* CometBFT writes height as a string (cmtjson int64) */
		{ GUARD_FMT_COMETBFT, "{\"height\":5,\"round\":0,\"step\":1}" },
		{ GUARD_FMT_COMETBFT, "{\"height\":\"5\",\"round\":0,\"step\":1,\"extra\":1}" },
		{ GUARD_FMT_COMETBFT, "{\"height\":\"5\",\"round\":0,\"step\":\"1\"}" },
		{ GUARD_FMT_TMKMS, "{\"height\":\"5\",\"round\":0,\"step\":1,\"block_id\":null}" },
		{ GUARD_FMT_TMKMS, "{\"height\":5,\"round\":\"0\",\"step\":1,\"block_id\":null}" },
		{ GUARD_FMT_TMKMS,
		  "{\"height\":\"5\",\"round\":\"0\",\"step\":1,\"block_id\":null,\"signature\":\"\"}" },
		{ GUARD_FMT_HORCRUX,
		  "{\"height\":\"5\",\"round\":\"0\",\"step\":1,\"nonce_public\":7}" },
		{ GUARD_FMT_HORCRUX,
		  "{\"height\":\"5\",\"round\":\"0\",\"step\":1,\"chain\":\"x\"}" },
		{ GUARD_FMT_P11KMS,
		  "{\"chain_id\":\"c\",\"height\":\"5\",\"round\":\"0\",\"step\":1}" },
	};
	struct guard_state *st = malloc(sizeof(*st));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const uint8_t *p = (const uint8_t *)bad[i].json;
		if (guard_state_parse_json(p, strlen(bad[i].json), bad[i].fmt, st) == KMS_OK ||
		    guard_state_parse_json(p, strlen(bad[i].json), GUARD_FMT_AUTO, st) == KMS_OK)
			fail_msg("accepted: %s", bad[i].json);
	}
	/* what each writer produces is accepted */
	const char *hx = "{\"height\":\"5\",\"round\":\"0\",\"step\":2,\"nonce_public\":\"AAEC\","
			 "\"vote_ext_signature\":null}";
	assert_int_equal(
		guard_state_parse_json((const uint8_t *)hx, strlen(hx), GUARD_FMT_HORCRUX, st),
		KMS_OK);
	assert_int_equal(st->hrs.step, GUARD_STEP_PREVOTE);
	assert_int_equal(st->src_step, 2);
	free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cometbft_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_imported_signbytes_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmkms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_horcrux_and_p11kms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_overwrite_rules, setup, teardown),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test_setup_teardown(test_wrong_format_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detect, setup, teardown),
		cmocka_unit_test(test_strict_members),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
