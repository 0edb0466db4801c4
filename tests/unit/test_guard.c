/* SPDX-License-Identifier: Apache-2.0 */
/* guard_: FilePV rules, scenarios, fail-closed start, injected I/O faults, flock, reload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "guard_int.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "test_guard_util.h"
#include "testutil.h"

#define CHAIN "haqq_11235-1"

struct fx {
	char *dir;
	char *path;
	struct guard *g;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	kms_log_set_quiet(1);
	f->dir = tu_mkdtemp();
	f->path = tu_path(f->dir, "state.bin");
	assert_int_equal(guard_state_init(f->path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(tg_open(f->path, CHAIN, &f->g), KMS_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	dfile_set_ops(NULL);
	guard_free(f->g);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	guard_free(f->g);
	f->g = NULL;
	assert_int_equal(tg_open(f->path, CHAIN, &f->g), KMS_OK);
}

static struct tg_msg msg(enum guard_step s, int64_t h, int64_t r, int block, int64_t ts)
{
	struct tg_msg m = { s, h, r, s == GUARD_STEP_PROPOSE ? -1 : 0, block, ts, 0, CHAIN };
	return m;
}

static int sign_msg(struct guard *g, const struct tg_msg *m, struct guard_result *res)
{
	uint8_t sb[1024];
	size_t n = tg_sign_bytes(m, sb, sizeof(sb));
	assert_true(n > 0);
	struct guard_request req = { { m->h, (int32_t)m->r, m->step }, sb, n };
	return guard_sign(g, &req, tg_fake_sign, NULL, res);
}

static void expect_sig_of(const struct tg_msg *m, const struct guard_result *res)
{
	uint8_t sb[1024], sig[64];
	size_t n = tg_sign_bytes(m, sb, sizeof(sb));
	tg_fake_sign(NULL, sb, n, sig);
	assert_memory_equal(res->signature, sig, 64);
}

/* ---- the protobuf walker against sign_bytes.json ---- */

static void test_pb_vectors(void **state)
{
	(void)state;
	json_t *v = tu_load_vector("sign_bytes.json");
	json_t *arr = json_object_get(v, "vectors"), *e;
	size_t i, nvote = 0, nprop = 0, nbad = 0;
	json_array_foreach(arr, i, e) {
		size_t n;
		uint8_t *sb = tu_hex_alloc(tu_json_str(e, "sign_bytes"), &n);
		struct guard_canon c;
		const char *kind = tu_json_str(e, "kind");
		int r = guard_pb_decode(sb, n, &c);
		long long type = strcmp(kind, "vote") == 0 ? tu_json_int(e, "type") : 32;
		if (strcmp(kind, "vote_extension") == 0 || type == 0) {
			assert_int_equal(r, KMS_ERR_FORMAT); /* not a vote or proposal */
			nbad++;
		} else {
			assert_int_equal(r, KMS_OK);
			assert_int_equal(c.height, tu_json_int(e, "height"));
			assert_int_equal(c.round, tu_json_int(e, "round"));
			assert_int_equal(c.step, type == 32 ? GUARD_STEP_PROPOSE :
						 type == 1  ? GUARD_STEP_PREVOTE :
							      GUARD_STEP_PRECOMMIT);
			json_t *ts = json_object_get(e, "timestamp");
			assert_int_equal(c.ts_seconds, tu_json_int(ts, "seconds"));
			assert_int_equal(c.ts_nanos, tu_json_int(ts, "nanos"));
			const char *chain = tu_json_str(e, "chain_id");
			assert_int_equal(c.chain_id_len, strlen(chain));
			assert_memory_equal(c.chain_id, chain, c.chain_id_len);
			assert_int_equal(c.block_id == NULL,
					 json_is_null(json_object_get(e, "block_id")));
			type == 32 ? nprop++ : nvote++;
			/* every truncation and a bad length prefix are rejected */
			for (size_t k = 0; k < n; k++)
				assert_int_equal(guard_pb_decode(sb, k, &c), KMS_ERR_FORMAT);
			sb[0]++;
			assert_int_equal(guard_pb_decode(sb, n, &c), KMS_ERR_FORMAT);
		}
		free(sb);
	}
	assert_true(nvote >= 10 && nprop >= 4 && nbad >= 4);
	json_decref(v);
}

static void test_pb_encoder_and_ts(void **state)
{
	(void)state;
	uint8_t a[512], b[512];
	struct guard_canon ca, cb;
	struct tg_msg m = msg(GUARD_STEP_PRECOMMIT, 77, 3, 5, 1700000000);
	size_t na = tg_sign_bytes(&m, a, sizeof(a));
	m.ts_n = 123456789;
	size_t nb = tg_sign_bytes(&m, b, sizeof(b));
	assert_int_equal(guard_pb_decode(a, na, &ca), KMS_OK);
	assert_int_equal(guard_pb_decode(b, nb, &cb), KMS_OK);
	assert_int_equal(cb.ts_nanos, 123456789);
	assert_true(guard_pb_equal_but_ts(&ca, &cb));
	m.block = 6;
	nb = tg_sign_bytes(&m, b, sizeof(b));
	assert_int_equal(guard_pb_decode(b, nb, &cb), KMS_OK);
	assert_false(guard_pb_equal_but_ts(&ca, &cb));
	/* block id content */
	const uint8_t *h, *ph;
	size_t hl, phl;
	uint32_t total;
	assert_int_equal(
		guard_pb_block_id(cb.block_id, cb.block_id_len, &h, &hl, &total, &ph, &phl),
		KMS_OK);
	assert_int_equal(hl, 32);
	assert_int_equal(h[5], 6);
	assert_int_equal(total, 1);
	assert_int_equal(phl, 32);
}

/* ---- double_sign_scenarios.json ---- */

static enum guard_step step_of(const char *t)
{
	if (t == NULL)
		return GUARD_STEP_NONE;
	if (strcmp(t, "proposal") == 0)
		return GUARD_STEP_PROPOSE;
	if (strcmp(t, "prevote") == 0)
		return GUARD_STEP_PREVOTE;
	assert_string_equal(t, "precommit");
	return GUARD_STEP_PRECOMMIT;
}

static struct tg_msg scen_msg(const json_t *o)
{
	const json_t *type = json_object_get(o, "type"), *blk = json_object_get(o, "block");
	const json_t *ts = json_object_get(o, "ts");
	struct tg_msg m =
		msg(step_of(json_string_value(type)), json_integer_value(json_object_get(o, "h")),
		    json_integer_value(json_object_get(o, "r")), 0, 1514170801);
	if (json_is_string(blk))
		m.block = json_string_value(blk)[6] - 'A' + 1; /* "block A" → 1 */
	if (json_is_string(ts) && strcmp(json_string_value(ts), "T+1ms") == 0)
		m.ts_n = 1000000;
	return m;
}

static void test_scenarios(void **state)
{
	struct fx *f = *state;
	json_t *v = tu_load_vector("double_sign_scenarios.json");
	json_t *arr = json_object_get(v, "scenarios"), *e;
	size_t i;
	json_array_foreach(arr, i, e) {
		char name[32];
		snprintf(name, sizeof(name), "s%zu.bin", i);
		char *path = tu_path(f->dir, name);
		struct guard *g;
		struct guard_result res;
		struct tg_msg last = scen_msg(json_object_get(e, "last"));
		struct tg_msg req = scen_msg(json_object_get(e, "request"));
		const char *want = tu_json_str(e, "expect_cometbft_filepv");
		const char *sname = tu_json_str(e, "name");
		assert_int_equal(guard_state_init(path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
		assert_int_equal(tg_open(path, CHAIN, &g), KMS_OK);
		if (last.step != GUARD_STEP_NONE)
			assert_int_equal(sign_msg(g, &last, &res), KMS_OK);
		int r = sign_msg(g, &req, &res);
		print_message("scenario %-50s → %d %s\n", sname, r, res.reason);
		if (strncmp(want, "sign", 4) == 0) {
			assert_int_equal(r, KMS_OK);
			assert_int_equal(res.reused, 0);
			expect_sig_of(&req, &res);
		} else if (strncmp(want, "error '", 7) == 0) {
			char needle[64];
			const char *q = strchr(want + 7, '\'');
			snprintf(needle, sizeof(needle), "%.*s", (int)(q - want - 7), want + 7);
			assert_int_equal(r, KMS_ERR_DOUBLE_SIGN);
			assert_non_null(strstr(res.reason, needle));
			assert_non_null(strstr(res.reason, "chain=" CHAIN));
		} else if (strstr(want, "AND stored timestamp") != NULL &&
			   req.step == GUARD_STEP_PROPOSE) {
			/* deliberate difference (docs/state.md): FilePV's answer is an invalid proposal */
			assert_int_equal(r, KMS_ERR_DOUBLE_SIGN);
			assert_non_null(strstr(res.reason, "timestamp"));
		} else if (strstr(want, "AND stored timestamp") != NULL) {
			assert_int_equal(r, KMS_OK);
			assert_int_equal(res.reused, 1);
			assert_int_equal(res.timestamp_replaced, 1);
			assert_int_equal(res.ts_seconds, last.ts_s);
			assert_int_equal(res.ts_nanos, last.ts_n);
			expect_sig_of(&last, &res);
		} else {
			assert_non_null(strstr(want, "stored"));
			assert_int_equal(r, KMS_OK);
			assert_int_equal(res.reused, 1);
			assert_int_equal(res.timestamp_replaced, 0);
			expect_sig_of(&last, &res);
		}
		guard_free(g);
		free(path);
	}
	assert_true(i >= 14);
	json_decref(v);
}

/* The upstream tmkms unit cases, with OUR (FilePV) outcome: only same-H/R/S conflicts refuse. */
static void test_tmkms_cases(void **state)
{
	struct fx *f = *state;
	json_t *v = tu_load_vector("double_sign_scenarios.json");
	json_t *arr = json_object_get(json_object_get(v, "upstream_tmkms_tests"), "cases"), *e;
	size_t i;
	json_array_foreach(arr, i, e) {
		struct tg_msg m[2];
		for (int k = 0; k < 2; k++) {
			json_t *t = json_object_get(e, k ? "new" : "old");
			const char *b = json_string_value(json_array_get(t, 3));
			m[k] = msg((enum guard_step)(json_integer_value(json_array_get(t, 2)) + 1),
				   json_integer_value(json_array_get(t, 0)),
				   json_integer_value(json_array_get(t, 1)),
				   b == NULL	       ? 0 :
				   strstr(b, "DOUBLE") ? 2 :
							 1,
				   100);
		}
		char name[32];
		snprintf(name, sizeof(name), "t%zu.bin", i);
		char *path = tu_path(f->dir, name);
		struct guard *g;
		struct guard_result res;
		assert_int_equal(guard_state_init(path, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
		assert_int_equal(tg_open(path, CHAIN, &g), KMS_OK);
		assert_int_equal(sign_msg(g, &m[0], &res), KMS_OK);
		int same = m[0].h == m[1].h && m[0].r == m[1].r && m[0].step == m[1].step;
		assert_int_equal(sign_msg(g, &m[1], &res), same ? KMS_ERR_DOUBLE_SIGN : KMS_OK);
		if (strcmp(tu_json_str(e, "expect"), "ok") == 0)
			assert_int_equal(res.reason[0], '\0');
		guard_free(g);
		free(path);
	}
	json_decref(v);
}

/* ---- request validation ---- */

static void test_request_checks(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	uint8_t sb[512];
	struct tg_msg m = msg(GUARD_STEP_PREVOTE, 5, 0, 1, 100);
	size_t n = tg_sign_bytes(&m, sb, sizeof(sb));
	struct guard_request req = { { 5, 1, GUARD_STEP_PREVOTE }, sb, n }; /* round disagrees */
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_REFUSED);
	req.hrs.round = 0;
	req.hrs.step = GUARD_STEP_PRECOMMIT; /* step disagrees with the type */
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_REFUSED);
	req.hrs.step = GUARD_STEP_NONE;
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_FORMAT);
	req.hrs.step = GUARD_STEP_PREVOTE;
	m.chain = "other-chain";
	req.sign_bytes_len = tg_sign_bytes(&m, sb, sizeof(sb));
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_REFUSED);
	assert_non_null(strstr(res.reason, "chain-id"));
	req.sign_bytes_len = 3;
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_FORMAT);
	req.sign_bytes_len = GUARD_MAX_SIGN_BYTES + 1;
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_TOO_LARGE);
	req.hrs.height = -1;
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_ERR_FORMAT);
	struct guard_hrs last;
	guard_last(f->g, &last);
	assert_int_equal(last.height, 0);
	assert_string_equal(guard_chain_id(f->g), CHAIN);
	/* nothing was signed: a valid request still works */
	m.chain = CHAIN;
	assert_int_equal(sign_msg(f->g, &m, &res), KMS_OK);
}

static int fail_sign(void *ctx, const uint8_t *msg_, size_t len, uint8_t sig[static 64])
{
	(void)ctx, (void)msg_, (void)len;
	memset(sig, 0xAA, 64);
	return KMS_ERR_PKCS11;
}

static void test_sign_failure(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = msg(GUARD_STEP_PREVOTE, 9, 0, 1, 100);
	uint8_t sb[512];
	size_t n = tg_sign_bytes(&m, sb, sizeof(sb));
	struct guard_request req = { { 9, 0, GUARD_STEP_PREVOTE }, sb, n };
	assert_int_equal(guard_sign(f->g, &req, fail_sign, NULL, &res), KMS_ERR_PKCS11);
	uint8_t zero[64] = { 0 };
	assert_memory_equal(res.signature, zero, 64);
	struct guard_hrs last;
	guard_last(f->g, &last);
	assert_int_equal(last.height, 0);
	reopen(f);
	guard_last(f->g, &last);
	assert_int_equal(last.height, 0);
	assert_int_equal(guard_sign(f->g, &req, tg_fake_sign, NULL, &res), KMS_OK);
	assert_int_equal(res.reused, 0);
}

/* ---- reload after every write gives the same state ---- */

static void test_reload_every_write(void **state)
{
	struct fx *f = *state;
	struct guard_result res, res2;
	for (int64_t h = 1; h <= 30; h++) {
		for (int s = 1; s <= 3; s++) {
			struct tg_msg m = msg((enum guard_step)s, h, h % 3, (int)(h % 4), 1000 + h);
			assert_int_equal(sign_msg(f->g, &m, &res), KMS_OK);
			reopen(f);
			struct guard_hrs last;
			guard_last(f->g, &last);
			assert_int_equal(last.height, h);
			assert_int_equal(last.round, h % 3);
			assert_int_equal(last.step, s);
			/* the stored record survives: an identical retry returns the same signature */
			assert_int_equal(sign_msg(f->g, &m, &res2), KMS_OK);
			assert_int_equal(res2.reused, 1);
			assert_memory_equal(res.signature, res2.signature, 64);
		}
	}
}

/* ---- fail-closed start ---- */

static void test_missing(void **state)
{
	struct fx *f = *state;
	struct guard *g = NULL;
	char *p = tu_path(f->dir, "nope.bin");
	tu_log_capture_start();
	assert_int_equal(tg_open(p, CHAIN, &g), KMS_ERR_NOT_FOUND);
	assert_true(tu_log_contains("state init"));
	assert_true(tu_log_contains("state import"));
	tu_log_capture_stop();
	assert_null(g);
	free(p);
}

static void corrupt_byte(const char *path, off_t off)
{
	FILE *fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseeko(fp, off, SEEK_SET), 0);
	int c = fgetc(fp);
	assert_int_equal(fseeko(fp, off, SEEK_SET), 0);
	fputc(c ^ 0x01, fp);
	fclose(fp);
}

static void test_bad_files(void **state)
{
	struct fx *f = *state;
	struct guard *g = NULL;
	struct guard_result res;
	struct tg_msg m = msg(GUARD_STEP_PRECOMMIT, 4, 0, 1, 100);
	assert_int_equal(sign_msg(f->g, &m, &res), KMS_OK);
	guard_free(f->g);
	f->g = NULL;

	/* wrong chain-id */
	assert_int_equal(tg_open(f->path, "cosmoshub-4", &g), KMS_ERR_REFUSED);
	/*
	 * One slot corrupt: refused. It holds the newest record here (the re-persist
	 * wrote sequence 2 into slot 1, the precommit 3 went to slot 0), and a torn
	 * write cannot be told from bit rot in a record whose signature has left, so
	 * the older record must not quietly stand in for it (it did before issue 15).
	 */
	corrupt_byte(f->path, 100);
	tu_log_capture_start();
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("slot 1 holds sequence 2, h/r/s 0/0/0"));
	assert_true(tu_log_contains("slot 0 is INVALID (checksum mismatch"));
	assert_true(tu_log_contains("claims sequence 3, h/r/s 4/0/3 (unverified)"));
	assert_true(tu_log_contains("p11kms state repair -c <config> --chain " CHAIN));
	tu_log_capture_stop();
	/* the older one corrupt instead: refused the same way (which is newer is a guess) */
	corrupt_byte(f->path, 100);
	corrupt_byte(f->path, 100 + GUARD_SLOT_SIZE);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_ERR_FORMAT);
	corrupt_byte(f->path, 100 + GUARD_SLOT_SIZE);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	struct guard_hrs last;
	guard_last(g, &last);
	assert_int_equal(last.height, 4);
	guard_free(g);
	/* both corrupt: refuse */
	corrupt_byte(f->path, 40);
	corrupt_byte(f->path, 40 + GUARD_SLOT_SIZE);
	tu_log_capture_start();
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("slot 0 is INVALID"));
	assert_true(tu_log_contains("slot 1 is INVALID"));
	tu_log_capture_stop();
	/* truncated, empty, JSON, too open */
	char *p = tu_path(f->dir, "t.bin");
	uint8_t junk[100] = { 0 };
	tu_write_file(p, junk, 100, 0600);
	assert_int_equal(tg_open(p, CHAIN, &g), KMS_ERR_FORMAT);
	tu_write_file(p, junk, 0, 0600);
	assert_int_equal(tg_open(p, CHAIN, &g), KMS_ERR_FORMAT);
	tu_log_capture_start();
	tu_write_file(p, "{\"height\":\"1\"}", 14, 0600);
	assert_int_equal(tg_open(p, CHAIN, &g), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("JSON"));
	tu_log_capture_stop();
	uint8_t *big = calloc(1, GUARD_FILE_SIZE);
	tu_write_file(p, big, GUARD_FILE_SIZE, 0600); /* right size, all zeros */
	assert_int_equal(tg_open(p, CHAIN, &g), KMS_ERR_FORMAT);
	free(big);
	unlink(p);
	assert_int_equal(guard_state_init(p, CHAIN, 1, 0, GUARD_STEP_NONE), KMS_OK);
	chmod(p, 0644);
	assert_int_equal(tg_open(p, CHAIN, &g), KMS_ERR_PERM);
	chmod(p, 0600);
	char *link = tu_path(f->dir, "link.bin");
	assert_int_equal(symlink(p, link), 0);
	assert_int_equal(tg_open(link, CHAIN, &g), KMS_ERR_PERM); /* O_NOFOLLOW */
	free(link);
	assert_null(g);
	free(p);
	/* init never overwrites */
	assert_int_equal(guard_state_init(f->path, CHAIN, 5, 0, GUARD_STEP_NONE), KMS_ERR_EXISTS);
}

/* ---- state files written before format 2 (issue #22) ---- */

/* A format 1 record, built here from docs/state.md's table, not by guard_file.c. */
static void v1_record(uint8_t *slot, uint64_t seq, int64_t h, int32_t r, enum guard_step st,
		      const uint8_t *sb, size_t sblen, const uint8_t sig[64])
{
	unsigned int len = 32;
	size_t clen = strlen(CHAIN);
	memset(slot, 0, GUARD_REC_LEN);
	memcpy(slot, "P11KGST1", 8);
	for (int i = 0; i < 4; i++) {
		slot[8 + i] = (uint8_t)(1u >> (8 * i));
		slot[12 + i] = (uint8_t)(4308u >> (8 * i));
		slot[40 + i] = (uint8_t)((uint32_t)r >> (8 * i));
		slot[112 + i] = (uint8_t)(sblen >> (8 * i));
	}
	for (int i = 0; i < 8; i++) {
		slot[16 + i] = (uint8_t)(seq >> (8 * i));
		slot[24 + i] = (uint8_t)((uint64_t)1700000000 >> (8 * i));
		slot[32 + i] = (uint8_t)((uint64_t)h >> (8 * i));
	}
	slot[44] = (uint8_t)st;
	slot[45] = sblen ? 1 : 0;
	slot[46] = (uint8_t)clen;
	memcpy(slot + 48, CHAIN, clen);
	if (sblen) {
		memcpy(slot + 116, sig, 64);
		memcpy(slot + 180, sb, sblen);
	}
	assert_int_equal(EVP_Digest(slot, 4276, slot + 4276, &len, EVP_sha256(), NULL), 1);
}

static uint32_t slot_u32(const uint8_t *img, int slot, size_t off)
{
	const uint8_t *p = img + (size_t)slot * GUARD_SLOT_SIZE + off;
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void read_state(const char *path, uint8_t *img)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(img, 1, GUARD_FILE_SIZE, fp), GUARD_FILE_SIZE);
	fclose(fp);
}

/* After a restart the last record is m's, and m gets its stored signature back. */
static void restart_returns_stored(struct fx *f, const struct tg_msg *m)
{
	struct guard_result res;
	struct guard_hrs last;
	reopen(f);
	guard_last(f->g, &last);
	assert_int_equal(last.height, m->h);
	assert_int_equal(last.step, m->step);
	assert_int_equal(sign_msg(f->g, m, &res), KMS_OK);
	assert_true(res.reused);
	expect_sig_of(m, &res);
}

static void test_format1_still_read(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct guard_hrs last;
	struct tg_msg m = msg(GUARD_STEP_PREVOTE, 9, 0, 1, 100);
	uint8_t sb[1024], sig[64], *img = calloc(1, GUARD_FILE_SIZE);
	size_t n = tg_sign_bytes(&m, sb, sizeof(sb));
	assert_non_null(img);
	tg_fake_sign(NULL, sb, n, sig);
	guard_free(f->g);
	f->g = NULL;
	/* an operator's file from before: slot 0 seq 5 = prevote 9/0 with its signature */
	v1_record(img, 5, 9, 0, GUARD_STEP_PREVOTE, sb, n, sig);
	v1_record(img + GUARD_SLOT_SIZE, 4, 9, 0, GUARD_STEP_PROPOSE, NULL, 0, NULL);
	tu_write_file(f->path, img, GUARD_FILE_SIZE, 0600);
	assert_int_equal(tg_open(f->path, CHAIN, &f->g), KMS_OK);
	guard_last(f->g, &last);
	assert_int_equal(last.height, 9);
	assert_int_equal(last.step, GUARD_STEP_PREVOTE);
	/* the same request gets the signature stored in the format 1 record */
	assert_int_equal(sign_msg(f->g, &m, &res), KMS_OK);
	assert_true(res.reused);
	expect_sig_of(&m, &res);
	/* start's re-persist: slot 0 written back as it was (format 1), its record copied
	 * into slot 1 as format 2, only its own bytes: the rest of slot 1 is untouched */
	uint8_t *old = malloc(GUARD_FILE_SIZE);
	assert_non_null(old);
	memcpy(old, img, GUARD_FILE_SIZE);
	read_state(f->path, img);
	assert_int_equal(slot_u32(img, 0, 8), 1);
	assert_int_equal(slot_u32(img, 0, 12), 4308);
	assert_memory_equal(img, old, GUARD_SLOT_SIZE);
	assert_int_equal(slot_u32(img, 1, 8), 2);
	assert_int_equal(slot_u32(img, 1, 12), 212 + n); /* header, sign bytes, checksum */
	assert_true(212 + n <= 512);			 /* inside one 512-byte block */
	assert_memory_equal(img + GUARD_SLOT_SIZE + 212 + n, old + GUARD_SLOT_SIZE + 212 + n,
			    GUARD_SLOT_SIZE - 212 - n); /* format 1's old checksum is still there */
	free(old);
	/* one format 1 and one format 2 record: a restart reads both */
	restart_returns_stored(f, &m);
	/* a different block at 9/0/prevote is refused */
	struct tg_msg other = msg(GUARD_STEP_PREVOTE, 9, 0, 2, 100);
	assert_int_equal(sign_msg(f->g, &other, &res), KMS_ERR_DOUBLE_SIGN);
	/* the next step, then a restart: format 2 over format 1 in slot 0 */
	struct tg_msg pc = msg(GUARD_STEP_PRECOMMIT, 9, 0, 1, 100);
	assert_int_equal(sign_msg(f->g, &pc, &res), KMS_OK);
	assert_false(res.reused);
	restart_returns_stored(f, &pc);
	read_state(f->path, img);
	assert_int_equal(slot_u32(img, 0, 8), 2);
	/* and a format 1 record whose header is torn is still named as torn */
	guard_free(f->g);
	f->g = NULL;
	read_state(f->path, img);
	v1_record(img, 9, 10, 0, GUARD_STEP_PREVOTE, sb, n, sig);
	img[12] ^= 0x40; /* slot 0's record length */
	tu_write_file(f->path, img, GUARD_FILE_SIZE, 0600);
	tu_log_capture_start();
	assert_int_equal(tg_open(f->path, CHAIN, &f->g), KMS_ERR_FORMAT);
	assert_true(tu_log_contains("slot 0 is INVALID (checksum mismatch"));
	tu_log_capture_stop();
	free(img);
}

/* ---- state repair ---- */

static void test_repair(void **state)
{
	struct fx *f = *state;
	struct guard *g = NULL;
	struct guard_result res;
	struct guard_repair_view v;
	struct guard_hrs last;
	struct tg_msg m = msg(GUARD_STEP_PREVOTE, 7, 1, 1, 100);
	assert_int_equal(sign_msg(f->g, &m, &res), KMS_OK); /* seq 2 (re-persist), 3 */
	/* while the signer holds the lock, nothing is repaired */
	assert_int_equal(guard_state_repair_view(f->path, &v), KMS_ERR_LOCKED);
	assert_int_equal(guard_state_repair_accept(f->path, CHAIN, 2), KMS_ERR_LOCKED);
	guard_free(f->g);
	f->g = NULL;
	/* a healthy file: nothing to repair, both choices refused */
	assert_int_equal(guard_state_repair_view(f->path, &v), KMS_OK);
	assert_true(v.healthy);
	assert_int_equal(guard_state_repair_accept(f->path, CHAIN, 3), KMS_ERR_REFUSED);
	assert_int_equal(guard_state_repair_height(f->path, CHAIN, 100), KMS_ERR_REFUSED);

	/* the newest record (slot 0, seq 3) torn: the view names both (byte 150 is in the
	 * signature, inside a record of either format; format 2 ends before byte 2000) */
	corrupt_byte(f->path, 150);
	assert_int_equal(guard_state_repair_view(f->path, &v), KMS_OK);
	assert_false(v.healthy);
	assert_int_equal(v.accept_slot, 1);
	assert_true(v.rec[1].valid);
	assert_int_equal(v.rec[1].seq, 2);
	assert_int_equal(v.rec[1].hrs.height, 0);
	assert_false(v.rec[0].valid);
	assert_true(v.rec[0].readable);
	assert_int_equal(v.rec[0].seq, 3);
	assert_int_equal(v.rec[0].hrs.height, 7);
	assert_int_equal(v.rec[0].hrs.step, GUARD_STEP_PREVOTE);
	assert_non_null(strstr(v.rec[0].why, "checksum"));
	assert_int_equal(v.floor_height, 7);
	assert_string_equal(v.chain_id, CHAIN);
	/* the wrong sequence, another chain, a height not above 7: refused, nothing written */
	assert_int_equal(guard_state_repair_accept(f->path, CHAIN, 3), KMS_ERR_REFUSED);
	assert_int_equal(guard_state_repair_accept(f->path, "cosmoshub-4", 2), KMS_ERR_REFUSED);
	assert_int_equal(guard_state_repair_height(f->path, CHAIN, 7), KMS_ERR_REFUSED);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_ERR_FORMAT);
	/* accepting the valid record: both slots hold it, start accepts it */
	assert_int_equal(guard_state_repair_accept(f->path, CHAIN, 2), KMS_OK);
	assert_int_equal(guard_state_repair_view(f->path, &v), KMS_OK);
	assert_true(v.healthy);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	guard_last(g, &last);
	assert_int_equal(last.height, 0);
	guard_free(g);

	/* both records rotten: only a height will do, and it must be above both */
	corrupt_byte(f->path, 150);
	corrupt_byte(f->path, 150 + GUARD_SLOT_SIZE);
	assert_int_equal(guard_state_repair_view(f->path, &v), KMS_OK);
	assert_int_equal(v.accept_slot, -1);
	assert_int_equal(guard_state_repair_accept(f->path, CHAIN, 5), KMS_ERR_REFUSED);
	assert_int_equal(guard_state_repair_height(f->path, CHAIN, 0), KMS_ERR_REFUSED);
	assert_int_equal(guard_state_repair_height(f->path, CHAIN, 50), KMS_OK);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	guard_last(g, &last);
	assert_int_equal(last.height, 50);
	assert_int_equal(last.round, 0);
	assert_int_equal(last.step, GUARD_STEP_NONE);
	/* a proposal at 50/0 signs: nothing was signed there */
	struct tg_msg p = msg(GUARD_STEP_PROPOSE, 50, 0, 1, 100);
	assert_int_equal(sign_msg(g, &p, &res), KMS_OK);
	f->g = g;
	/* twin sequences (slot 0 copied over slot 1: no writer of ours does that): a height */
	guard_free(f->g);
	f->g = NULL;
	FILE *fp = fopen(f->path, "r+b");
	assert_non_null(fp);
	uint8_t *img = malloc(GUARD_FILE_SIZE);
	assert_int_equal(fread(img, 1, GUARD_FILE_SIZE, fp), GUARD_FILE_SIZE);
	memcpy(img + GUARD_SLOT_SIZE, img, GUARD_SLOT_SIZE);
	assert_int_equal(fseeko(fp, 0, SEEK_SET), 0);
	assert_int_equal(fwrite(img, 1, GUARD_FILE_SIZE, fp), GUARD_FILE_SIZE);
	fclose(fp);
	free(img);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_ERR_FORMAT);
	assert_int_equal(guard_state_repair_view(f->path, &v), KMS_OK);
	assert_true(v.rec[0].valid && v.rec[1].valid);
	assert_false(v.healthy);
	assert_int_equal(v.accept_slot, -1);
	assert_int_equal(guard_state_repair_height(f->path, CHAIN, 60), KMS_OK);
	assert_int_equal(tg_open(f->path, CHAIN, &g), KMS_OK);
	guard_last(g, &last);
	assert_int_equal(last.height, 60);
	f->g = g;
	/* a file of the wrong size is not repairable */
	char *t = tu_path(f->dir, "short.bin");
	tu_write_file(t, "x", 1, 0600);
	assert_int_equal(guard_state_repair_view(t, &v), KMS_ERR_FORMAT);
	free(t);
}

static void test_stale_temp_removed(void **state)
{
	struct fx *f = *state;
	size_t cap = strlen(f->path) + 16;
	char *tmp = malloc(cap);
	snprintf(tmp, cap, "%s.tmp-AbC123", f->path);
	tu_write_file(tmp, "x", 1, 0600);
	reopen(f);
	assert_int_equal(access(tmp, F_OK), -1);
	free(tmp);
}

/* ---- injected I/O faults ---- */

static int
	fail_mode; /* 1 pwrite error, 2 fdatasync error, 3 short pwrites (must succeed), 4 pwrite 0 */
static ssize_t inj_pwrite(int fd, const void *p, size_t n, off_t off)
{
	if (fail_mode == 1) {
		errno = EIO;
		return -1;
	}
	if (fail_mode == 4)
		return 0;
	if (fail_mode == 3 && n > 100)
		n = 100;
	return pwrite(fd, p, n, off);
}
static int inj_fdatasync(int fd)
{
	if (fail_mode == 2) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static void test_io_faults(void **state)
{
	struct fx *f = *state;
	struct dfile_ops ops = *dfile_ops();
	ops.pwrite = inj_pwrite;
	ops.fdatasync = inj_fdatasync;
	uint8_t zero[64] = { 0 };
	int64_t h = 1, prev = 0;
	for (int mode = 1; mode <= 4; mode++, h += 2) {
		struct guard_result res;
		struct tg_msg m = msg(GUARD_STEP_PREVOTE, h, 0, 1, 100);
		fail_mode = mode;
		dfile_set_ops(&ops);
		int r = sign_msg(f->g, &m, &res);
		dfile_set_ops(NULL);
		if (mode == 3) {
			assert_int_equal(r, KMS_OK); /* partial writes are retried */
			reopen(f);
			struct guard_hrs last;
			guard_last(f->g, &last);
			assert_int_equal(last.height, h);
			prev = h;
			continue;
		}
		assert_int_equal(r, KMS_ERR_STATE_IO);
		assert_memory_equal(res.signature, zero, 64);
		assert_true(guard_failed(f->g));
		/* fail-closed: refuses everything, even a later height, until reopened */
		struct tg_msg later = msg(GUARD_STEP_PREVOTE, h + 1, 0, 1, 100);
		assert_int_equal(sign_msg(f->g, &later, &res), KMS_ERR_STATE_IO);
		assert_non_null(strstr(res.reason, "fail-closed"));
		assert_int_equal(sign_msg(f->g, &m, &res), KMS_ERR_STATE_IO);
		reopen(f);
		struct guard_hrs last;
		guard_last(f->g, &last);
		/* the write may or may not have landed; either way it is never a regression */
		assert_true(last.height == h || last.height == prev);
		if (mode == 1 || mode == 4)
			assert_int_equal(last.height, prev); /* nothing reached the file */
		assert_int_equal(sign_msg(f->g, &later, &res), KMS_OK);
		prev = h + 1;
	}
}

/* ---- flock ---- */

static void test_flock(void **state)
{
	struct fx *f = *state;
	struct guard *g2 = NULL;
	/* same process, second open file description: refused too */
	assert_int_equal(tg_open(f->path, CHAIN, &g2), KMS_ERR_LOCKED);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct guard *g = NULL;
		tu_log_capture_start();
		int r = tg_open(f->path, CHAIN, &g);
		char want[64];
		snprintf(want, sizeof(want), "holder_pid=%ld", (long)getppid());
		int named = tu_log_contains(want);
		struct kbuf *b = kbuf_new(4096);
		int r2 = guard_state_show(f->path, b);
		const char *js = "{\"height\":\"9\",\"round\":0,\"step\":0}";
		int r3 = guard_state_import(f->path, CHAIN, (const uint8_t *)js, strlen(js),
					    GUARD_FMT_AUTO, 1);
		kbuf_free(b);
		/* show is the read-only snapshot (works while locked); import writes (refused) */
		_exit(r == KMS_ERR_LOCKED && named && r2 == KMS_OK && r3 == KMS_ERR_LOCKED ?
			      0 :
			      1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* released on free: another open succeeds */
	guard_free(f->g);
	f->g = NULL;
	assert_int_equal(tg_open(f->path, CHAIN, &f->g), KMS_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pb_vectors),
		cmocka_unit_test(test_pb_encoder_and_ts),
		cmocka_unit_test_setup_teardown(test_scenarios, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmkms_cases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_every_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format1_still_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_temp_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flock, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
