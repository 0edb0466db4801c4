/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guard's cluster path (docs/ha.md) against a scripted cluster: an in-memory mark
 * with a revision, whose commit can succeed, fail its compare, or fail with an unknown
 * outcome (applied or not). Also the mark's JSON and the `ha` config block.
 * Real etcd is in ha_faults.sh / ha_tls3.sh; this pins the guard's decisions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/cfg.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/ha.h"
#include "p11kms/kbuf.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"
#include "test_guard_util.h"
#include "testutil.h"

#define CHAIN "ha-test-1"

enum outcome { OUT_OK = 0, OUT_UNKNOWN_LOST, OUT_UNKNOWN_APPLIED, OUT_READ_FAILS };

struct cluster {
	struct guard_mark mark;
	int64_t rev;
	int64_t decided; /* revision handed out by the last mark()/commit() */
	enum outcome next; /* what the next commit does (then back to OUT_OK) */
	struct guard_mark *other; /* if set: another host commits this first (compare fails) */
	int commits, marks;
};

static int c_mark(void *ctx, struct guard_mark *m)
{
	struct cluster *c = ctx;
	c->marks++;
	if (c->next == OUT_READ_FAILS)
		return KMS_ERR_TIMEOUT;
	*m = c->mark;
	c->decided = c->rev;
	return KMS_OK;
}

static int c_commit(void *ctx, const struct guard_mark *n, struct guard_mark *m)
{
	struct cluster *c = ctx;
	enum outcome o = c->next;
	c->commits++;
	c->next = OUT_OK;
	if (c->other != NULL) { /* another host moved first */
		c->mark = *c->other;
		c->rev++;
		c->other = NULL;
	}
	if (c->decided != c->rev) {
		*m = c->mark;
		c->decided = c->rev;
		return KMS_ERR_EXISTS;
	}
	if (o == OUT_UNKNOWN_LOST)
		return KMS_ERR_TIMEOUT;
	c->mark = *n;
	c->rev++;
	c->decided = c->rev;
	return o == OUT_UNKNOWN_APPLIED ? KMS_ERR_TIMEOUT : KMS_OK;
}

static const struct guard_cluster_ops ops = { c_mark, c_commit };

struct fx {
	char *dir, *path;
	struct guard *g;
	struct cluster c;
	int signs;
};

static int counting_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	((struct fx *)ctx)->signs++;
	return tg_fake_sign(NULL, msg, len, sig);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	kms_log_set_quiet(1);
	f->dir = tu_mkdtemp();
	f->path = tu_path(f->dir, "state.bin");
	assert_int_equal(guard_state_init(f->path, CHAIN, 1, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(guard_open(f->path, CHAIN, &f->g), KMS_OK);
	guard_set_cluster(f->g, &ops, &f->c);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	guard_free(f->g);
	tu_rmrf(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

static struct tg_msg vote(int64_t h, int block, int64_t ts)
{
	struct tg_msg m = { GUARD_STEP_PREVOTE, h, 0, 0, block, ts, 0, CHAIN };
	return m;
}

static int ask(struct fx *f, const struct tg_msg *m, struct guard_result *res)
{
	return tg_request_sign(f->g, m, counting_sign, f, res);
}

/* The mark another host would commit for m. */
static struct guard_mark mark_of(const struct tg_msg *m)
{
	struct guard_mark k;
	memset(&k, 0, sizeof(k));
	k.present = 1;
	k.hrs = (struct guard_hrs){ m->h, (int32_t)m->r, m->step };
	k.sign_bytes_len = tg_sign_bytes(m, k.sign_bytes, sizeof(k.sign_bytes));
	assert_int_equal(tg_fake_sign(NULL, k.sign_bytes, k.sign_bytes_len, k.signature), 0);
	/* a recognisably different signature than ours would be */
	k.signature[0] ^= 0x5a;
	k.has_sig = 1;
	return k;
}

static void local_height(struct fx *f, int64_t h)
{
	struct guard_hrs last;
	guard_last(f->g, &last);
	assert_int_equal(last.height, h);
}

/* Ahead of everything: sign, commit, persist, release. */
static void test_commit_then_release(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = vote(5, 1, 100);
	assert_int_equal(ask(f, &m, &res), KMS_OK);
	assert_int_equal(res.reused, 0);
	assert_int_equal(f->c.commits, 1);
	assert_int_equal(f->c.mark.hrs.height, 5);
	assert_memory_equal(f->c.mark.signature, res.signature, 64);
	local_height(f, 5);
	/* the repeat is answered locally, without the cluster */
	assert_int_equal(ask(f, &m, &res), KMS_OK);
	assert_int_equal(res.reused, 1);
	assert_int_equal(f->c.commits, 1);
}

/* Another host signed this H/R/S: its signature, adopted locally, ours never made. */
static void test_adopt_other_hosts_signature(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = vote(7, 2, 100);
	f->c.mark = mark_of(&m);
	f->c.rev = 3;
	assert_int_equal(ask(f, &m, &res), KMS_OK);
	assert_int_equal(res.reused, 1);
	assert_int_equal(f->signs, 0);
	assert_memory_equal(res.signature, f->c.mark.signature, 64);
	local_height(f, 7);
	/* a vote differing only in its timestamp gets the stored signature and timestamp */
	struct tg_msg later = vote(7, 2, 250);
	assert_int_equal(ask(f, &later, &res), KMS_OK);
	assert_int_equal(res.timestamp_replaced, 1);
	assert_int_equal(res.ts_seconds, 100);
}

static void test_cluster_regression_and_conflict(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = vote(9, 1, 100);
	f->c.mark = mark_of(&m);
	f->c.rev = 4;
	struct tg_msg old = vote(8, 1, 100);
	assert_int_equal(ask(f, &old, &res), KMS_ERR_DOUBLE_SIGN);
	assert_int_equal(res.cluster, 1);
	assert_int_equal(res.regression, 1);
	struct tg_msg other = vote(9, 3, 100); /* another block at the mark's H/R/S */
	assert_int_equal(ask(f, &other, &res), KMS_ERR_DOUBLE_SIGN);
	assert_int_equal(res.cluster, 1);
	assert_int_equal(f->signs, 0);
	local_height(f, 1);
}

/* The compare fails: another host committed the same request meanwhile -> its signature. */
static void test_compare_failure_decides_again(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = vote(11, 1, 100);
	struct guard_mark theirs = mark_of(&m);
	f->c.other = &theirs;
	assert_int_equal(ask(f, &m, &res), KMS_OK);
	assert_int_equal(f->signs, 1); /* we signed, lost the race */
	assert_memory_equal(res.signature, theirs.signature, 64);
	local_height(f, 11);
	/* different sign bytes committed first: refused */
	struct tg_msg a = vote(12, 1, 100), b = vote(12, 2, 100);
	struct guard_mark tb = mark_of(&b);
	f->c.other = &tb;
	assert_int_equal(ask(f, &a, &res), KMS_ERR_DOUBLE_SIGN);
	assert_int_equal(res.cluster, 1);
	local_height(f, 11);
}

/* Unknown outcome: the signature never leaves, the local state does not move. */
static void test_unknown_outcome_refuses(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = vote(13, 1, 100);
	static const uint8_t zero[64];
	f->c.next = OUT_UNKNOWN_APPLIED;
	assert_int_equal(ask(f, &m, &res), KMS_ERR_TIMEOUT);
	assert_int_equal(res.cluster, 1);
	assert_memory_equal(res.signature, zero, 64);
	local_height(f, 1);
	/* the next read finds the mark holding it: the retry gets it (safe now) */
	assert_int_equal(ask(f, &m, &res), KMS_OK);
	assert_int_equal(res.reused, 1);
	local_height(f, 13);
	/* lost: refused, then the retry signs and commits normally */
	struct tg_msg n = vote(14, 1, 100);
	f->c.next = OUT_UNKNOWN_LOST;
	assert_int_equal(ask(f, &n, &res), KMS_ERR_TIMEOUT);
	assert_memory_equal(res.signature, zero, 64);
	local_height(f, 13);
	assert_int_equal(ask(f, &n, &res), KMS_OK);
	assert_int_equal(res.reused, 0);
	local_height(f, 14);
}

/* No cluster answer: never sign on local knowledge alone. */
static void test_no_cluster_no_signature(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	struct tg_msg m = vote(15, 1, 100);
	f->c.next = OUT_READ_FAILS;
	assert_int_equal(ask(f, &m, &res), KMS_ERR_TIMEOUT);
	assert_int_equal(res.cluster, 1);
	assert_int_equal(f->signs, 0);
	local_height(f, 1);
}

/* ---- the local persist failing after the cluster decided (#15's fail-closed) ---- */

static int n_guard_failed;
static void failed_sink(void *ctx, const struct obs_status *st)
{
	(void)ctx;
	if (st->kind == OBS_ST_GUARD_FAILED && st->err == KMS_ERR_STATE_IO &&
	    strcmp(st->chain_id, CHAIN) == 0)
		n_guard_failed++;
}

/* From here every fdatasync of the state fails with EIO (until disk_back). */
static void disk_fails(void)
{
	static struct dfile_ops o;
	o = *dfile_ops();
	o.fdatasync = tg_eio_fdatasync;
	n_guard_failed = 0;
	assert_int_equal(obs_status_sink_add(failed_sink, NULL), KMS_OK);
	*tg_eio_flag() = 1;
	dfile_set_ops(&o);
}

static void disk_back(void)
{
	*tg_eio_flag() = 0;
	dfile_set_ops(NULL);
	obs_sink_clear();
}

/*
 * Committed to the mark, then the local write fails: the signature does not leave,
 * the guard fails closed (guard_failed, one OBS_ST_GUARD_FAILED) and asks the
 * cluster nothing more. The mark holding an unreleased signature is safe: another
 * host releases those same bytes (ADOPT).
 */
static void test_commit_then_persist_fails(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	static const uint8_t zero[64];
	struct tg_msg a = vote(20, 1, 100), b = vote(21, 1, 100), c = vote(22, 1, 100);
	assert_int_equal(ask(f, &a, &res), KMS_OK); /* the loaded record re-persisted, then a */
	disk_fails();
	assert_int_equal(ask(f, &b, &res), KMS_ERR_STATE_IO);
	assert_memory_equal(res.signature, zero, 64);
	assert_int_equal(f->c.commits, 2);
	assert_int_equal(f->c.mark.hrs.height, 21);
	assert_true(guard_failed(f->g));
	assert_int_equal(n_guard_failed, 1);
	/* fail-closed: no read, no commit, no signature, no second event */
	int marks = f->c.marks, signs = f->signs;
	assert_int_equal(ask(f, &c, &res), KMS_ERR_STATE_IO);
	assert_int_equal(f->c.marks, marks);
	assert_int_equal(f->c.commits, 2);
	assert_int_equal(f->signs, signs);
	assert_int_equal(n_guard_failed, 1);
	disk_back();
	local_height(f, 20);
}

/* ADOPT whose local write fails: the mark's signature does not leave either. */
static void test_adopt_persist_fails(void **state)
{
	struct fx *f = *state;
	struct guard_result res;
	static const uint8_t zero[64];
	struct tg_msg w = vote(2, 1, 100), m = vote(30, 1, 100);
	assert_int_equal(ask(f, &w, &res), KMS_OK); /* re-persisted while the disk works */
	f->c.mark = mark_of(&m);
	f->c.rev = 9;
	disk_fails();
	assert_int_equal(ask(f, &m, &res), KMS_ERR_STATE_IO);
	assert_memory_equal(res.signature, zero, 64);
	assert_int_equal(f->signs, 1); /* only w's */
	assert_true(guard_failed(f->g));
	assert_int_equal(n_guard_failed, 1);
	disk_back();
	local_height(f, 2);
}

static void test_mark_json(void **state)
{
	(void)state;
	struct tg_msg m = vote(21, 1, 100);
	struct guard_mark a = mark_of(&m), b;
	struct kbuf *out = kbuf_new(16384);
	char host[64];
	int64_t at;
	assert_int_equal(ha_mark_encode(&a, "signer-a", out), KMS_OK);
	assert_int_equal(ha_mark_decode(kbuf_ptr(out), kbuf_len(out), &b, host, sizeof(host), &at),
			 KMS_OK);
	assert_string_equal(host, "signer-a");
	assert_int_equal(b.hrs.height, 21);
	assert_int_equal(b.sign_bytes_len, a.sign_bytes_len);
	assert_memory_equal(b.sign_bytes, a.sign_bytes, a.sign_bytes_len);
	assert_memory_equal(b.signature, a.signature, 64);
	static const char bad[] = "{\"v\":1,\"height\":\"5\",\"round\":0,\"step\":9}";
	assert_int_equal(ha_mark_decode((const uint8_t *)bad, strlen(bad), &b, NULL, 0, NULL),
			 KMS_ERR_FORMAT);
	kbuf_free(out);
}

static void test_ha_config(void **state)
{
	(void)state;
	static const char good[] =
		"chains = ( { id = \"c\"; state_file = \"s\"; ha = { etcd = [ \"https://a:2379\", "
		"\"http://b:2379\" ]; ca = \"ca.pem\"; cert = \"c.pem\"; key = \"c.key\"; }; } );\n"
		"keys = ( { chain_ids = [ \"c\" ]; softsign = \"k\"; } );\n";
	static const char nocert[] =
		"chains = ( { id = \"c\"; state_file = \"s\"; ha = { etcd = [ \"http://a:1\" ]; "
		"key = \"c.key\"; }; } );\nkeys = ( { chain_ids = [ \"c\" ]; softsign = \"k\"; } );\n";
	static const char badurl[] =
		"chains = ( { id = \"c\"; state_file = \"s\"; ha = { etcd = [ \"a:1\" ]; }; } );\n"
		"keys = ( { chain_ids = [ \"c\" ]; softsign = \"k\"; } );\n";
	struct cfg *cfg = NULL;
	char err[512];
	assert_int_equal(cfg_parse_string((const uint8_t *)good, strlen(good), "t", "/etc", &cfg,
					  err, sizeof(err)),
			 KMS_OK);
	const struct cfg_ha *h = cfg->chains[0].ha;
	assert_non_null(h);
	assert_int_equal(h->n_etcd, 2);
	assert_string_equal(h->prefix, "/p11kms");
	assert_int_equal(h->timeout_ms, 500);
	assert_string_equal(h->ca, "/etc/ca.pem");
	cfg_free(cfg);
	assert_int_equal(cfg_parse_string((const uint8_t *)nocert, strlen(nocert), "t", "/etc",
					  &cfg, err, sizeof(err)),
			 KMS_ERR_CONFIG);
	assert_non_null(strstr(err, "cert and key go together"));
	assert_int_equal(cfg_parse_string((const uint8_t *)badurl, strlen(badurl), "t", "/etc",
					  &cfg, err, sizeof(err)),
			 KMS_ERR_CONFIG);
	assert_non_null(strstr(err, "ha.etcd"));
}

static int g_cluster_errors;

static void count_status(void *ctx, const struct obs_status *st)
{
	(void)ctx;
	if (st->kind == OBS_ST_CLUSTER_ERROR)
		g_cluster_errors++;
}

/* etcd unreachable (a real refused connection): refused, a cluster_error status event. */
static void test_unreachable_etcd_refuses(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp(), *path = tu_path(dir, "state.bin");
	char ep[] = "http://127.0.0.1:1";
	char *eps[] = { ep };
	struct cfg_ha ha = { eps, 1, (char *)"/p11kms", NULL, NULL, NULL, 200, (char *)"t" };
	struct cfg_chain cc = { 0 };
	struct guard *g = NULL;
	struct ha_chain *hc = NULL;
	struct guard_result res;
	struct tg_msg m = vote(3, 1, 100);
	uint8_t sb[1024];
	size_t n = tg_sign_bytes(&m, sb, sizeof(sb));
	struct guard_request req = { { 3, 0, GUARD_STEP_PREVOTE }, sb, n };
	cc.id = (char *)CHAIN;
	cc.state_file = path;
	cc.ha = &ha;
	assert_int_equal(ha_global_init(), KMS_OK);
	assert_int_equal(obs_status_sink_add(count_status, NULL), KMS_OK);
	assert_int_equal(guard_state_init(path, CHAIN, 1, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(guard_open(path, CHAIN, &g), KMS_OK);
	assert_int_equal(ha_chain_start(&cc, g, &hc), KMS_OK); /* starts; refuses until etcd is up */
	int before = g_cluster_errors;
	assert_int_not_equal(guard_sign(g, &req, tg_fake_sign, NULL, &res), KMS_OK);
	assert_int_equal(res.cluster, 1);
	assert_true(g_cluster_errors > before);
	struct guard_hrs last;
	guard_last(g, &last);
	assert_int_equal(last.height, 1);
	ha_chain_stop(hc);
	guard_free(g);
	obs_sink_clear();
	tu_rmrf(dir);
	free(dir);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_then_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_other_hosts_signature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_regression_and_conflict, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compare_failure_decides_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_outcome_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_cluster_no_signature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_then_persist_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_persist_fails, setup, teardown),
		cmocka_unit_test(test_mark_json),
		cmocka_unit_test(test_ha_config),
		cmocka_unit_test(test_unreachable_etcd_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
