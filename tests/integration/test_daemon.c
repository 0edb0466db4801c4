/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon end to end over real sockets: test nodes listen (the node side of
 * Secret Connection, or a Unix socket), daemon_run() dials them with softsign
 * keys, and every answer is decoded and its signature verified with OpenSSL.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/daemon.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"
#include "testutil.h"
#include "tnode.h"

#define CHAIN_A "haqq_11235-1"
#define CHAIN_B "haqq_53211-1"
#define TS 1700000000

struct fx {
	char *dir;
	uint8_t seed_a[32], pub_a[32];
	uint8_t seed_b[32], pub_b[32];
	char *conf;
	struct cfg *cfg;
	pthread_t th;
	int ec;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready;
	int64_t started_ms;
};

static void write_seed(const char *dir, const char *name, const uint8_t seed[32])
{
	char b64[64];
	char *p = tu_path(dir, name);
	assert_int_equal(enc_base64_encode(seed, 32, b64, sizeof(b64)), KMS_OK);
	tu_write_file(p, b64, strlen(b64), 0600);
	free(p);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t id_seed[32];
	assert_non_null(f);
	f->dir = tu_mkdtemp();
	memset(f->seed_a, 0x11, 32);
	memset(f->seed_b, 0x22, 32);
	memset(id_seed, 0x33, 32);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(f->seed_a, f->pub_a), KMS_OK);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(f->seed_b, f->pub_b), KMS_OK);
	write_seed(f->dir, "a.key", f->seed_a);
	write_seed(f->dir, "b.key", f->seed_b);
	write_seed(f->dir, "id.key", id_seed);
	char *sa = tu_path(f->dir, "a.state"), *sb = tu_path(f->dir, "b.state");
	assert_int_equal(guard_state_init(sa, CHAIN_A, 0, 0, GUARD_STEP_NONE), KMS_OK);
	assert_int_equal(guard_state_init(sb, CHAIN_B, 0, 0, GUARD_STEP_NONE), KMS_OK);
	free(sa);
	free(sb);
	f->conf = tu_path(f->dir, "p11kms.conf");
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	*state = f;
	return 0;
}

/* A signer forked by a test: killed by the teardown if a failed assertion left it running
 * (it would keep ctest's output pipe open until ctest's timeout). */
static pid_t fx_child = -1;

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	if (fx_child > 0) {
		(void)kill(fx_child, SIGKILL);
		(void)waitpid(fx_child, NULL, 0);
		fx_child = -1;
	}
	tu_rmrf(f->dir);
	free(f->dir);
	free(f->conf);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f);
	return 0;
}

/* Writes the config: both chains and keys, plus the validators given. */
static void fx_conf(struct fx *f, const char *chain_b_extra, const char *validators)
{
	char text[8192];
	int n = snprintf(text, sizeof(text),
			 "chains = (\n"
			 "  { id = \"" CHAIN_A
			 "\"; key_format = \"bech32\"; consensus_key_prefix = \"haqqvalconspub\";\n"
			 "    state_file = \"a.state\"; sign_extensions = false;"
			 " allow_volatile_state = true; },\n"
			 "  { id = \"" CHAIN_B "\"; key_format = \"hex\"; state_file = \"b.state\";"
			 " allow_volatile_state = true; %s }\n"
			 ");\n"
			 "keys = (\n"
			 "  { chain_ids = [ \"" CHAIN_A "\" ]; softsign = \"a.key\"; },\n"
			 "  { chain_ids = [ \"" CHAIN_B "\" ]; softsign = \"b.key\"; }\n"
			 ");\n"
			 "validators = (\n%s\n);\n",
			 chain_b_extra != NULL ? chain_b_extra : "", validators);
	assert_true(n > 0 && (size_t)n < sizeof(text));
	tu_write_file(f->conf, text, (size_t)n, 0600);
}

/* One validators entry. */
static char *val(char *buf, size_t cap, const char *chain, const char *addr, const char *proto,
		 const char *extra)
{
	(void)snprintf(
		buf, cap,
		"  { chain_id = \"%s\"; addr = \"%s\"; secret_key = \"id.key\"; protocol_version = \"%s\";"
		" backoff_min_ms = 20; backoff_max_ms = 200; %s }",
		chain, addr, proto, extra != NULL ? extra : "");
	return buf;
}

static void on_ready(void *ctx)
{
	struct fx *f = ctx;
	pthread_mutex_lock(&f->mu);
	f->ready = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void *run_thread(void *arg)
{
	struct fx *f = arg;
	struct daemon_opts o = { .verbose = 1, .on_ready = on_ready, .ready_ctx = f };
	f->ec = daemon_run(f->cfg, &o);
	on_ready(f); /* a start-up failure must not leave fx_start waiting */
	return NULL;
}

static void fx_start(struct fx *f)
{
	char err[CFG_ERR_MAX];
	f->cfg = NULL;
	if (cfg_load(f->conf, &f->cfg, err, sizeof(err)) != KMS_OK)
		fail_msg("config: %s", err);
	daemon_reset_stop();
	f->ready = 0;
	f->ec = -1;
	f->started_ms = net_now_ms();
	assert_int_equal(pthread_create(&f->th, NULL, run_thread, f), 0);
	pthread_mutex_lock(&f->mu);
	while (!f->ready)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

static int fx_stop(struct fx *f)
{
	daemon_request_stop();
	assert_int_equal(pthread_join(f->th, NULL), 0);
	cfg_free(f->cfg);
	f->cfg = NULL;
	return f->ec;
}

static void accept_ok(struct tnode *n)
{
	int r = tnode_accept(n, 5000);
	if (r != KMS_OK)
		fail_msg("accept on %s: %s", n->addr, kms_strerror(r));
}

static void ping_ok(struct tnode *n)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	tnode_req_ping(&req);
	assert_int_equal(tnode_call(n, &req, &resp), KMS_OK);
	assert_int_equal(resp->kind, PV_REQ_PING);
	assert_int_equal(resp->has_error, 0);
	pv_response_free(resp);
}

/* Signs a vote through n and verifies the signature against pub; returns the response. */
static struct pv_response *vote_ok(struct tnode *n, const char *chain, const uint8_t pub[32],
				   int32_t type, int64_t h, int32_t round, uint8_t blk)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	struct kbuf *sb = kbuf_new(4096);
	tnode_req_vote(&req, chain, type, h, round, blk, TS + h);
	assert_int_equal(tnode_call(n, &req, &resp), KMS_OK);
	if (resp->has_error)
		fail_msg("vote h=%lld refused: %d %s", (long long)h, resp->error_code,
			 resp->error_description);
	assert_int_equal(resp->kind, PV_REQ_SIGN_VOTE);
	assert_int_equal(resp->vote.signature_len, 64);
	assert_int_equal(resp->vote.height, h);
	assert_int_equal(resp->vote.validator_index, 3);
	assert_int_equal(pv_vote_sign_bytes(chain, &resp->vote, sb), KMS_OK);
	assert_int_equal(
		kcrypto_ed25519_verify(pub, kbuf_ptr(sb), kbuf_len(sb), resp->vote.signature),
		KMS_OK);
	kbuf_free(sb);
	return resp;
}

static void expect_refusal(struct tnode *n, const struct pv_request *req, int32_t code)
{
	struct pv_response *resp = NULL;
	assert_int_equal(tnode_call(n, req, &resp), KMS_OK);
	if (!resp->has_error || resp->error_code != code)
		fail_msg("want error code %d, got has_error=%d code=%d (%s)", code, resp->has_error,
			 resp->error_code, resp->error_description);
	assert_int_equal(resp->vote.signature_len, 0);
	pv_response_free(resp);
	ping_ok(n); /* a refusal keeps the connection */
}

/* The first occurrence of needle in the bytes of b, or NULL. */
static const char *memmem_str(const struct kbuf *b, const char *needle)
{
	size_t n = strlen(needle), len = kbuf_len(b);
	const char *p = (const char *)kbuf_ptr(b);
	for (size_t i = 0; n <= len && i <= len - n; i++)
		if (memcmp(p + i, needle, n) == 0)
			return p + i;
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* ---- tests ----------------------------------------------------------------------------- */

/*
 * Every derived exchange of privval_messages.json through the running daemon:
 * the request bytes go in exactly as a CometBFT node sends them, and the
 * response must equal the vector byte for byte (signatures, echoed fields,
 * extension signatures, v1 pubkey layout, the reference refusals). Each
 * exchange gets a fresh state, since the list reuses one height; family A
 * runs as both v0.34 and v0.37.
 */
static void run_golden(struct fx *f, const json_t *e, size_t idx, const char *proto,
		       enum pv_version v, char view)
{
	char conf[1024], st[64], addr_val[512];
	struct tnode n;
	size_t rl = 0, wl = 0, hdr = 0, body = 0;
	uint8_t *rq = tu_hex_alloc(tu_json_str(e, "request_delimited_hex"), &rl);
	uint8_t *want = tu_hex_alloc(tu_json_str(e, "response_delimited_hex"), &wl);
	struct kbuf *got = NULL;

	(void)snprintf(st, sizeof(st), "golden-%zu-%s.state", idx, proto);
	char *sp = tu_path(f->dir, st);
	assert_int_equal(guard_state_init(sp, CHAIN_A, 1, 0, GUARD_STEP_NONE), KMS_OK);
	free(sp);
	tnode_listen(&n, v, 0, NULL, 0);
	int len = snprintf(conf, sizeof(conf),
			   "chains = ( { id = \"" CHAIN_A "\"; state_file = \"%s\";"
			   " allow_volatile_state = true; } );\n"
			   "keys = ( { chain_ids = [ \"" CHAIN_A "\" ]; softsign = \"golden.key\"; } );\n"
			   "validators = (\n%s\n);\n",
			   st, val(addr_val, sizeof(addr_val), CHAIN_A, n.addr, proto, NULL));
	assert_true(len > 0 && (size_t)len < sizeof(conf));
	tu_write_file(f->conf, conf, (size_t)len, 0600);
	fx_start(f);
	accept_ok(&n);
	assert_int_equal(pv_frame_parse(rq, rl, rl, &hdr, &body), KMS_OK);
	struct kbuf *msg = kbuf_from(rq + hdr, body);
	assert_int_equal(pv_write_msg(n.st.write, n.st.ctx, msg, net_deadline(5000)), KMS_OK);
	assert_int_equal(pv_read_msg(n.st.read, n.st.ctx, 1 << 20, net_deadline(5000), &got), KMS_OK);
	assert_int_equal(pv_frame_parse(want, wl, wl, &hdr, &body), KMS_OK);
	/* auto: what a node of the exchange's family keeps (it skips unknown fields) */
	size_t gl = kbuf_len(got);
	uint8_t *gp = view ? tu_pb_family_view(view, kbuf_ptr(got), kbuf_len(got), &gl) : NULL;
	const uint8_t *cmp = gp != NULL ? gp : kbuf_ptr(got);
	if (gl != body || memcmp(cmp, want + hdr, body) != 0) {
		char *h = tu_to_hex(kbuf_ptr(got), kbuf_len(got));
		fail_msg("%s as %s: response differs from the vector\n got %s", tu_json_str(e, "name"),
			 proto, h);
	}
	free(gp);
	kbuf_free(got);
	kbuf_free(msg);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&n);
	free(rq);
	free(want);
}

static void test_golden_exchanges(void **state)
{
	struct fx *f = *state;
	json_t *root = tu_load_vector("privval_messages.json");
	const json_t *in = json_object_get(json_object_get(root, "inputs"), "pubkey");
	const json_t *ex = json_object_get(json_object_get(root, "derived_exchanges"), "exchanges");
	uint8_t seed[32];
	size_t i, ran = 0;
	json_t *e;

	assert_int_equal(tu_hex(tu_json_str(in, "seed"), seed, sizeof(seed)), 32);
	write_seed(f->dir, "golden.key", seed);
	json_array_foreach(ex, i, e) {
		const char *fam = tu_json_str(e, "family");
		if (fam[0] == 'A') {
			run_golden(f, e, i, "v0.34", PV_V0_34, 0);
			run_golden(f, e, i, "v0.37", PV_V0_37, 0);
			ran += 2;
		} else if (fam[0] == 'B') {
			run_golden(f, e, i, "v0.38", PV_V0_38, 0);
			ran++;
		} else if (fam[0] == 'C') {
			run_golden(f, e, i, "v1", PV_V1, 0);
			ran++;
		} else {
			fail_msg("unknown family %s", fam);
		}
		/* #17: the same exchange through protocol_version = "auto", read as that family */
		run_golden(f, e, i, "auto", PV_AUTO, fam[0]);
		ran++;
	}
	assert_true(ran >= 18);
	json_decref(root);
}

static void test_pubkey_each_version(void **state)
{
	struct fx *f = *state;
	static const enum pv_version vs[] = { PV_V0_34, PV_V0_37, PV_V0_38, PV_V1 };
	struct tnode n[4];
	char vals[4096] = "", one[512];

	for (int i = 0; i < 4; i++) {
		/* The first two pin the node id in addr, the others log "peer unverified". */
		tnode_listen(&n[i], vs[i], 0, NULL, i < 2);
		strcat(vals,
		       val(one, sizeof(one), CHAIN_A, n[i].addr, pv_version_name(vs[i]), NULL));
		strcat(vals, i < 3 ? ",\n" : "\n");
	}
	fx_conf(f, NULL, vals);
	tu_log_capture_start();
	fx_start(f);
	for (int i = 0; i < 4; i++) {
		struct pv_request req;
		struct pv_response *resp = NULL;
		accept_ok(&n[i]);
		printf("# %s: connected %lld ms after daemon_run()\n", pv_version_name(vs[i]),
		       (long long)(n[i].accepted_at_ms - f->started_ms));
		tnode_req_pubkey(&req, CHAIN_A);
		assert_int_equal(tnode_call(&n[i], &req, &resp), KMS_OK);
		assert_int_equal(resp->kind, PV_REQ_PUBKEY);
		assert_int_equal(resp->has_error, 0);
		assert_int_equal(resp->has_pub_key, 1);
		assert_memory_equal(resp->pub_key, f->pub_a, 32);
		pv_response_free(resp);
	}
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	assert_true(tu_log_contains("peer unverified"));
	assert_true(tu_log_contains("connected chain=" CHAIN_A));
	assert_true(tu_log_contains("request PubKey")); /* -v summaries */
	tu_log_capture_stop();
	for (int i = 0; i < 4; i++)
		tnode_close(&n[i]);
}

static void test_wrong_node_id(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512], addr[200];
	tnode_listen(&n, PV_V0_37, 0, NULL, 0);
	/* A node id that is not the node's: the handshake must fail on our side. */
	(void)snprintf(addr, sizeof(addr), "tcp://%s@127.0.0.1:%u",
		       "0000000000000000000000000000000000000001", (unsigned)n.port);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, addr, "v0.37", NULL));
	tu_log_capture_start();
	fx_start(f);
	/* Our side completes its half; the signer aborts, so no request gets an answer. */
	int r = tnode_accept(&n, 5000);
	if (r == KMS_OK) {
		struct pv_request req;
		struct pv_response *resp = NULL;
		tnode_req_ping(&req);
		assert_int_not_equal(tnode_call(&n, &req, &resp), KMS_OK);
		tnode_drop(&n);
	}
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	assert_true(tu_log_contains("handshake failed"));
	assert_true(tu_log_contains("not the one in addr")); /* #17: the cause, named */
	tu_log_capture_stop();
	tnode_close(&n);
}

static void test_1000_votes(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512];
	enum { N = 1000 };
	int64_t *lat = calloc(N, sizeof(int64_t));
	assert_non_null(lat);

	tnode_listen(&n, PV_V0_37, 0, NULL, 1);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, n.addr, "v0.37", NULL));
	fx_start(f);
	accept_ok(&n);
	kms_log_set_quiet(1);
	int64_t t0 = net_now_ms();
	for (int i = 0; i < N; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		struct pv_response *resp =
			vote_ok(&n, CHAIN_A, f->pub_a, i % 2 ? PV_TYPE_PRECOMMIT : PV_TYPE_PREVOTE,
				1 + i / 2, 0, (uint8_t)(1 + i % 200));
		clock_gettime(CLOCK_MONOTONIC, &b);
		lat[i] = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
		pv_response_free(resp);
	}
	int64_t total = net_now_ms() - t0;
	kms_log_set_quiet(0);
	qsort(lat, N, sizeof(int64_t), cmp_i64);
	printf("# 1000 votes (softsign, Secret Connection, durable state): %lld ms, %.0f sig/s, "
	       "p50 %.3f ms, p99 %.3f ms\n",
	       (long long)total, total > 0 ? 1000.0 * N / (double)total : 0.0,
	       (double)lat[N / 2] / 1e6, (double)lat[N * 99 / 100] / 1e6);
	free(lat);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&n);
	/* The state file advanced to the last vote. */
	struct guard_hrs last;
	char *sp = tu_path(f->dir, "a.state");
	static const struct guard_opts look = { .skip_fs_check = 1 }; /* $TMPDIR: any fs */
	assert_int_equal(guard_state_check(sp, CHAIN_A, &look, &last), KMS_OK);
	assert_int_equal(last.height, N / 2);
	assert_int_equal(last.step, GUARD_STEP_PRECOMMIT);
	free(sp);
}

static void test_sentries_share_guard(void **state)
{
	struct fx *f = *state;
	struct tnode a, b;
	char vals[1024], one[512];
	struct pv_request req;

	tnode_listen(&a, PV_V0_37, 0, NULL, 1);
	tnode_listen(&b, PV_V0_37, 0, NULL, 1);
	(void)snprintf(vals, sizeof(vals), "%s,\n",
		       val(one, sizeof(one), CHAIN_A, a.addr, "v0.37", NULL));
	strcat(vals, val(one, sizeof(one), CHAIN_A, b.addr, "v0.37", NULL));
	fx_conf(f, NULL, vals);
	fx_start(f);
	accept_ok(&a);
	accept_ok(&b);
	struct pv_response *ra = vote_ok(&a, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 5, 0, 7);
	/* The same H/R/S and bytes from the other sentry: the stored signature. */
	struct pv_response *rb = vote_ok(&b, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 5, 0, 7);
	assert_memory_equal(ra->vote.signature, rb->vote.signature, 64);
	pv_response_free(ra);
	pv_response_free(rb);
	/* A different block at the same H/R/S from the other sentry: refused (code 2). */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 5, 0, 8, TS + 5);
	expect_refusal(&b, &req, PV_CODE_DOUBLE_SIGN);
	/* Only the timestamp differs: the stored signature and the stored timestamp. */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 5, 0, 7, TS + 999);
	struct pv_response *rt = NULL;
	assert_int_equal(tnode_call(&b, &req, &rt), KMS_OK);
	assert_int_equal(rt->has_error, 0);
	assert_int_equal(rt->vote.timestamp.seconds, TS + 5);
	pv_response_free(rt);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&a);
	tnode_close(&b);
}

static void test_two_chains(void **state)
{
	struct fx *f = *state;
	struct tnode a, b;
	char vals[1024], one[512];
	struct pv_request req;
	struct pv_response *resp = NULL;

	tnode_listen(&a, PV_V0_37, 0, NULL, 0);
	tnode_listen(&b, PV_V0_38, 0, NULL, 0);
	(void)snprintf(vals, sizeof(vals), "%s,\n",
		       val(one, sizeof(one), CHAIN_A, a.addr, "v0.37", NULL));
	strcat(vals, val(one, sizeof(one), CHAIN_B, b.addr, "v0.38", NULL));
	fx_conf(f, NULL, vals);
	fx_start(f);
	accept_ok(&a);
	accept_ok(&b);
	tnode_req_pubkey(&req, CHAIN_B);
	assert_int_equal(tnode_call(&b, &req, &resp), KMS_OK);
	assert_memory_equal(resp->pub_key, f->pub_b, 32);
	pv_response_free(resp);
	pv_response_free(vote_ok(&a, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 10, 0, 1));
	pv_response_free(vote_ok(&b, CHAIN_B, f->pub_b, PV_TYPE_PREVOTE, 10, 0, 1));
	/* Each connection only signs for its own chain. */
	tnode_req_vote(&req, CHAIN_B, PV_TYPE_PRECOMMIT, 11, 0, 1, TS);
	expect_refusal(&a, &req, PV_CODE_UNKNOWN);
	tnode_req_pubkey(&req, CHAIN_A);
	expect_refusal(&b, &req, PV_CODE_UNKNOWN);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&a);
	tnode_close(&b);
}

/* One keys entry serving two chains: one slot, the right guard per chain. */
static void test_one_key_two_chains(void **state)
{
	struct fx *f = *state;
	struct tnode a, b;
	char text[4096];
	tnode_listen(&a, PV_V0_37, 0, NULL, 0);
	tnode_listen(&b, PV_V0_37, 0, NULL, 0);
	int n = snprintf(
		text, sizeof(text),
		"chains = ( { id = \"" CHAIN_A "\"; state_file = \"a.state\";"
		" allow_volatile_state = true; },\n"
		"  { id = \"" CHAIN_B
		"\"; state_file = \"b.state\"; allow_volatile_state = true; } );\n"
		"keys = ( { chain_ids = [ \"" CHAIN_A "\", \"" CHAIN_B
		"\" ]; softsign = \"a.key\"; } );\n"
		"validators = ( { chain_id = \"" CHAIN_A
		"\"; addr = \"%s\"; secret_key = \"id.key\"; protocol_version = \"v0.37\"; },\n"
		"  { chain_id = \"" CHAIN_B
		"\"; addr = \"%s\"; secret_key = \"id.key\"; protocol_version = \"v0.37\"; } );\n",
		a.addr, b.addr);
	tu_write_file(f->conf, text, (size_t)n, 0600);
	fx_start(f);
	accept_ok(&a);
	accept_ok(&b);
	/* The same H/R/S on both chains: separate guards, so both are signed. */
	pv_response_free(vote_ok(&a, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 7, 0, 1));
	pv_response_free(vote_ok(&b, CHAIN_B, f->pub_a, PV_TYPE_PREVOTE, 7, 0, 2));
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&a);
	tnode_close(&b);
}

/* A state write that cannot be made durable: refused (code 6), fail-closed, connection kept. */
static atomic_int fail_sync;

static int flaky_fdatasync(int fd)
{
	if (atomic_load(&fail_sync)) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static void test_state_io_fail_closed(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512];
	struct pv_request req;
	struct dfile_ops ops = *dfile_ops();
	ops.fdatasync = flaky_fdatasync;

	tnode_listen(&n, PV_V0_37, 0, NULL, 0);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, n.addr, "v0.37", NULL));
	atomic_store(&fail_sync, 0);
	dfile_set_ops(&ops);
	tu_log_capture_start();
	fx_start(f);
	accept_ok(&n);
	pv_response_free(vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 1, 0, 1));
	atomic_store(&fail_sync, 1);
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 2, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_STATE_UNAVAILABLE);
	/* Fail-closed: the disk is back, but the guard refuses until restarted. */
	atomic_store(&fail_sync, 0);
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 3, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_STATE_UNAVAILABLE);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	dfile_set_ops(NULL);
	assert_true(tu_log_contains("cannot be made durable"));
	tu_log_capture_stop();
	tnode_close(&n);
}

static void test_refusals_keep_connection(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512];
	struct pv_request req;

	tnode_listen(&n, PV_V1, 0, NULL, 1);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, n.addr, "v1", "max_height = 100;"));
	tu_log_capture_start();
	fx_start(f);
	accept_ok(&n);
	pv_response_free(vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PRECOMMIT, 50, 0, 1));
	/* regression */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 49, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_DOUBLE_SIGN);
	/* conflicting block at the same H/R/S */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PRECOMMIT, 50, 0, 2, TS + 50);
	expect_refusal(&n, &req, PV_CODE_DOUBLE_SIGN);
	/* wrong chain-id */
	tnode_req_vote(&req, "other-chain", PV_TYPE_PREVOTE, 60, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_UNKNOWN);
	/* max_height */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 101, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_MAX_HEIGHT);
	tnode_req_proposal(&req, CHAIN_A, 101, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_MAX_HEIGHT);
	/* invalid: a prevote at height 0 (decodes, fails validation) */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, 0, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_INVALID_REQUEST);
	/* negative height and round: well-formed protobuf, so an error reply, not a drop */
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, -5, 0, 1, TS);
	expect_refusal(&n, &req, PV_CODE_INVALID_REQUEST);
	tnode_req_proposal(&req, CHAIN_A, 70, -1, 1, TS);
	expect_refusal(&n, &req, PV_CODE_INVALID_REQUEST);
	/* v1 SignBytes: an arbitrary-signing oracle, refused */
	static const uint8_t raw[] = "anything";
	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_SIGN_BYTES;
	req.sign_bytes_value = raw;
	req.sign_bytes_len = sizeof(raw);
	expect_refusal(&n, &req, PV_CODE_UNKNOWN);
	/* Still signing at the limit, and a proposal. */
	pv_response_free(vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 100, 0, 3));
	struct pv_response *resp = NULL;
	struct kbuf *sb = kbuf_new(4096);
	tnode_req_proposal(&req, CHAIN_A, 100, 1, 4, TS);
	assert_int_equal(tnode_call(&n, &req, &resp), KMS_OK);
	assert_int_equal(resp->has_error, 0);
	assert_int_equal(pv_proposal_sign_bytes(CHAIN_A, &resp->proposal, sb), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(f->pub_a, kbuf_ptr(sb), kbuf_len(sb),
						resp->proposal.signature),
			 KMS_OK);
	kbuf_free(sb);
	pv_response_free(resp);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	assert_true(tu_log_contains("refused SignVote"));
	assert_true(tu_log_contains("signed PreCommit chain=" CHAIN_A " h=50 r=0 s=3"));
	tu_log_capture_stop();
	tnode_close(&n);
}

/* Vote extensions: v0.38 with sign_extensions, v1 with skip_extension_signing. */
static void check_ext(struct tnode *n, const char *chain, const uint8_t pub[32], int32_t type,
		      int64_t h, uint8_t blk, int skip, int want_sig)
{
	static const uint8_t ext[] = "vote-extension";
	struct pv_request req;
	struct pv_response *resp = NULL;
	tnode_req_vote(&req, chain, type, h, 0, blk, TS);
	if (type == PV_TYPE_PRECOMMIT && blk != 0) {
		req.vote.extension = ext;
		req.vote.extension_len = sizeof(ext) - 1;
	}
	req.skip_extension_signing = skip;
	assert_int_equal(tnode_call(n, &req, &resp), KMS_OK);
	if (resp->has_error)
		fail_msg("h=%lld: %s", (long long)h, resp->error_description);
	assert_int_equal(resp->vote.extension_signature_len, want_sig ? 64 : 0);
	if (want_sig) {
		struct kbuf *eb = kbuf_new(4096);
		assert_int_equal(pv_vote_extension_sign_bytes(chain, &resp->vote, eb), KMS_OK);
		assert_int_equal(kcrypto_ed25519_verify(pub, kbuf_ptr(eb), kbuf_len(eb),
							resp->vote.extension_signature),
				 KMS_OK);
		kbuf_free(eb);
	}
	pv_response_free(resp);
}

static void test_vote_extensions(void **state)
{
	struct fx *f = *state;
	struct tnode a, b, c;
	char vals[2048], one[512];

	tnode_listen(&a, PV_V0_38, 0, NULL, 0); /* chain B: sign_extensions = true */
	tnode_listen(&b, PV_V1, 0, NULL, 0);	/* chain B too, follows skip_extension_signing */
	tnode_listen(&c, PV_V0_38, 0, NULL, 0); /* chain A: sign_extensions = false */
	(void)snprintf(vals, sizeof(vals), "%s,\n",
		       val(one, sizeof(one), CHAIN_B, a.addr, "v0.38", NULL));
	strcat(vals, val(one, sizeof(one), CHAIN_B, b.addr, "v1", NULL));
	strcat(vals, ",\n");
	strcat(vals, val(one, sizeof(one), CHAIN_A, c.addr, "v0.38", NULL));
	fx_conf(f, "sign_extensions = true;", vals);
	fx_start(f);
	accept_ok(&a);
	accept_ok(&b);
	accept_ok(&c);
	check_ext(&a, CHAIN_B, f->pub_b, PV_TYPE_PREVOTE, 1, 1, 0, 0);
	check_ext(&a, CHAIN_B, f->pub_b, PV_TYPE_PRECOMMIT, 1, 1, 0, 1);
	/* A repeat (same H/R/S, same bytes) still gets a fresh extension signature. */
	check_ext(&a, CHAIN_B, f->pub_b, PV_TYPE_PRECOMMIT, 1, 1, 0, 1);
	check_ext(&a, CHAIN_B, f->pub_b, PV_TYPE_PRECOMMIT, 2, 0, 0, 0); /* nil precommit */
	check_ext(&b, CHAIN_B, f->pub_b, PV_TYPE_PRECOMMIT, 3, 1, 0, 1);
	check_ext(&b, CHAIN_B, f->pub_b, PV_TYPE_PRECOMMIT, 4, 1, 1, 0); /* skip */
	check_ext(&b, CHAIN_B, f->pub_b, PV_TYPE_PREVOTE, 5, 1, 0, 0);
	check_ext(&c, CHAIN_A, f->pub_a, PV_TYPE_PRECOMMIT, 1, 1, 0, 0); /* disabled */
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&a);
	tnode_close(&b);
	tnode_close(&c);
}

static void test_node_restart_reconnect(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512];

	tnode_listen(&n, PV_V0_37, 0, NULL, 0);
	uint16_t port = n.port;
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, n.addr, "v0.37", NULL));
	tu_log_capture_start();
	fx_start(f);
	accept_ok(&n);
	pv_response_free(vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 1, 0, 1));
	for (int round = 0; round < 3; round++) {
		/* The node goes away (listener and connection) and comes back on the same port. */
		tnode_close(&n);
		struct timespec down = { 0, 200 * 1000000L };
		nanosleep(&down, NULL);
		tnode_listen(&n, PV_V0_37, port, NULL, 0);
		int64_t up = net_now_ms();
		accept_ok(&n);
		printf("# node restart %d: signer back %lld ms after the node listened again\n",
		       round, (long long)(n.accepted_at_ms - up));
		ping_ok(&n);
		pv_response_free(vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, 2 + round, 0, 1));
	}
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	assert_true(tu_log_contains("disconnected chain=" CHAIN_A));
	tu_log_capture_stop();
	tnode_close(&n);
}

/* The connection status events (obs.h) the metrics and readiness sinks rely on. */
struct st_rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n[OBS_ST_CLUSTER_ERROR + 1];
	int last_err[OBS_ST_CLUSTER_ERROR + 1];
	int bad_chain; /* an event without this entry's chain/peer */
};

static void st_sink(void *ctx, const struct obs_status *st)
{
	struct st_rec *r = ctx;
	pthread_mutex_lock(&r->mu);
	if (st->kind >= OBS_ST_CONN_UP && st->kind <= OBS_ST_HANDSHAKE_FAILED) {
		r->n[st->kind]++;
		r->last_err[st->kind] = st->err;
		if (st->chain_id == NULL || strcmp(st->chain_id, CHAIN_A) != 0 || st->peer == NULL)
			r->bad_chain = 1;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Waits (10 s at most) until at least n events of kind were seen. */
static void st_wait(struct st_rec *r, enum obs_status_kind kind, int n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&r->mu);
	while (r->n[kind] < n)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until) != 0)
			break;
	int got = r->n[kind];
	pthread_mutex_unlock(&r->mu);
	if (got < n)
		fail_msg("status %s: %d events, want %d", obs_status_name(kind), got, n);
}

static void test_status_events(void **state)
{
	struct fx *f = *state;
	struct st_rec rec = { 0 };
	struct tnode n;
	char one[512];
	struct net_addr a;
	int lfd = -1, cfd = -1;

	pthread_mutex_init(&rec.mu, NULL);
	pthread_cond_init(&rec.cv, NULL);
	obs_sink_clear();
	assert_int_equal(obs_status_sink_add(st_sink, &rec), KMS_OK);
	/* nobody listens yet: dial failures */
	tnode_listen(&n, PV_V0_37, 0, NULL, 0);
	uint16_t port = n.port;
	tnode_close(&n);
	char addr[64];
	(void)snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%u", (unsigned)port);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, addr, "v0.37", "redial_ms = 20;"));
	fx_start(f);
	st_wait(&rec, OBS_ST_DIAL_FAILED, 2);
	assert_int_equal(rec.last_err[OBS_ST_DIAL_FAILED], KMS_ERR_CONN_CLOSED);
	/* something that accepts and hangs up: a failed handshake */
	char why[64];
	assert_int_equal(net_addr_parse(addr, &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(net_listen(&a, &lfd), KMS_OK);
	assert_int_equal(net_accept(lfd, 10000, &cfd), KMS_OK);
	net_close(&cfd);
	net_close(&lfd);
	st_wait(&rec, OBS_ST_HANDSHAKE_FAILED, 1);
	/* the node: up, then gone */
	tnode_listen(&n, PV_V0_37, port, NULL, 0);
	accept_ok(&n);
	st_wait(&rec, OBS_ST_CONN_UP, 1);
	ping_ok(&n);
	tnode_drop(&n);
	st_wait(&rec, OBS_ST_CONN_DOWN, 1);
	assert_int_equal(rec.last_err[OBS_ST_CONN_DOWN], KMS_ERR_CONN_CLOSED);
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&n);
	obs_sink_clear();
	assert_int_equal(rec.bad_chain, 0);
	assert_int_equal(rec.n[OBS_ST_CONN_UP], rec.n[OBS_ST_CONN_DOWN]);
	pthread_mutex_destroy(&rec.mu);
	pthread_cond_destroy(&rec.cv);
}

static void test_unix_socket(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512];
	char *sock = tu_path(f->dir, "node.sock");
	struct pv_request req;
	struct pv_response *resp = NULL;

	tnode_listen(&n, PV_V0_37, 0, sock, 0);
	/* A Unix socket carries no Secret Connection: a secret_key (here one that
	 * does not even exist, as a migrated tmkms.toml may have) is ignored. */
	(void)snprintf(one, sizeof(one),
		       "  { chain_id = \"" CHAIN_A
		       "\"; addr = \"%s\"; protocol_version = \"v0.37\";"
		       " secret_key = \"missing.key\"; }",
		       n.addr);
	fx_conf(f, NULL, one);
	fx_start(f);
	accept_ok(&n);
	tnode_req_pubkey(&req, CHAIN_A);
	assert_int_equal(tnode_call(&n, &req, &resp), KMS_OK);
	assert_memory_equal(resp->pub_key, f->pub_a, 32);
	pv_response_free(resp);
	pv_response_free(vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PRECOMMIT, 3, 0, 9));
	assert_int_equal(fx_stop(f), CMD_EXIT_OK);
	tnode_close(&n);
	free(sock);
}

static void test_startup_faults(void **state)
{
	struct fx *f = *state;
	char one[512];
	struct daemon_opts o = { 0 };
	struct cfg *cfg = NULL;
	char err[CFG_ERR_MAX];

	/* Missing state file: exit 5, nothing dialled. */
	char *sa = tu_path(f->dir, "a.state");
	char *sa2 = tu_path(f->dir, "a.state.moved");
	assert_int_equal(rename(sa, sa2), 0);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, "tcp://127.0.0.1:1", "v0.37", NULL));
	assert_int_equal(cfg_load(f->conf, &cfg, err, sizeof(err)), KMS_OK);
	tu_log_capture_start();
	daemon_reset_stop();
	assert_int_equal(daemon_run(cfg, &o), CMD_EXIT_STATE);
	assert_true(tu_log_contains("p11kms state init"));
	assert_int_equal(rename(sa2, sa), 0);

	/* A key file readable by others: exit 6. */
	char *ka = tu_path(f->dir, "a.key");
	assert_int_equal(chmod(ka, 0644), 0);
	assert_int_not_equal(daemon_run(cfg, &o), CMD_EXIT_OK);
	assert_int_equal(chmod(ka, 0600), 0);

	/* Missing identity key: exit 4 with the keygen hint. */
	char *id = tu_path(f->dir, "id.key"), *id2 = tu_path(f->dir, "id.key.moved");
	assert_int_equal(rename(id, id2), 0);
	assert_int_equal(daemon_run(cfg, &o), CMD_EXIT_KEY);
	assert_int_equal(rename(id2, id), 0);
	tu_log_capture_stop();
	/* Process hygiene was applied before anything else (STYLE.md §2.5). */
	struct rlimit rl;
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
	assert_int_equal(rl.rlim_cur, 0);
	mode_t old = umask(022);
	assert_int_equal(old, 077);
	umask(old);
	cfg_free(cfg);
	free(sa);
	free(sa2);
	free(ka);
	free(id);
	free(id2);
}

/* SIGTERM while a request is in flight: the child exits 0, the state is consistent and unlocked. */
static void test_sigterm_consistent_state(void **state)
{
	struct fx *f = *state;
	struct tnode n;
	char one[512];
	int status = 0;

	tnode_listen(&n, PV_V0_37, 0, NULL, 0);
	fx_conf(f, NULL, val(one, sizeof(one), CHAIN_A, n.addr, "v0.37", NULL));
	/* Log to a file (relative: next to the config) to check SIGHUP reopens it. */
	FILE *cf = fopen(f->conf, "a");
	assert_non_null(cf);
	fputs("log = { file = \"p11kms.log\"; };\n", cf);
	assert_int_equal(fclose(cf), 0);
	char *logp = tu_path(f->dir, "p11kms.log"), *logp1 = tu_path(f->dir, "p11kms.log.1");
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { (char *)"start", (char *)"-c", f->conf, NULL };
		net_close(&n.lfd);
		_exit(cmd_start(3, argv));
	}
	fx_child = pid;
	accept_ok(&n);
	int64_t answered = 0;
	for (int64_t h = 1; h <= 15; h++)
		pv_response_free(
			vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, (answered = h), 0, 1));
	/* logrotate: move the file away, SIGHUP; the signer keeps serving into a new file.
	 * The main thread takes the signal when it is next scheduled and the line after
	 * that reopens: on a loaded machine several votes may still go to the old file, so
	 * vote until the new file appears (bounded), then 15 more that must all go there. */
	assert_int_equal(rename(logp, logp1), 0);
	assert_int_equal(kill(pid, SIGHUP), 0);
	int64_t h = 16;
	for (int64_t until = net_now_ms() + 20000; access(logp, F_OK) != 0; h++) {
		assert_true(net_now_ms() < until); /* no new log file 20 s after SIGHUP */
		pv_response_free(
			vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, (answered = h), 0, 1));
	}
	for (int64_t end = h + 15; h < end; h++)
		pv_response_free(
			vote_ok(&n, CHAIN_A, f->pub_a, PV_TYPE_PREVOTE, (answered = h), 0, 1));
	char want[96];
	snprintf(want, sizeof(want), "signed PreVote chain=" CHAIN_A " h=%lld ", (long long)answered);
	struct kbuf *lb = NULL;
	assert_int_equal(dfile_read(logp, 1 << 20, &lb), KMS_OK);
	assert_non_null(memmem_str(lb, want));
	kbuf_free(lb);
	assert_int_equal(dfile_read(logp1, 1 << 20, &lb), KMS_OK);
	assert_non_null(memmem_str(lb, "h=15 "));
	assert_null(memmem_str(lb, want));
	kbuf_free(lb);
	free(logp);
	free(logp1);
	/* One more request, and SIGTERM right behind it. */
	struct pv_request req;
	struct kbuf *out = kbuf_new(4096), *in = NULL;
	const int64_t in_flight = answered + 1;
	tnode_req_vote(&req, CHAIN_A, PV_TYPE_PREVOTE, in_flight, 0, 1, TS);
	assert_int_equal(pv_encode_request(n.version, &req, out), KMS_OK);
	assert_int_equal(pv_write_msg(n.st.write, n.st.ctx, out, net_deadline(5000)), KMS_OK);
	assert_int_equal(kill(pid, SIGTERM), 0);
	int got = pv_read_msg(n.st.read, n.st.ctx, 1 << 20, net_deadline(5000), &in) == KMS_OK;
	if (got) {
		struct pv_response *resp = NULL;
		assert_int_equal(pv_decode_response(n.version, kbuf_ptr(in), kbuf_len(in), &resp),
				 KMS_OK);
		assert_int_equal(resp->has_error, 0);
		pv_response_free(resp);
		answered = in_flight;
	}
	kbuf_free(in);
	kbuf_free(out);
	/* The child exits on its own (bounded: a hung child fails the test). */
	int64_t deadline = net_now_ms() + 15000;
	pid_t w;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && net_now_ms() < deadline) {
		struct timespec t = { 0, 10 * 1000000L };
		nanosleep(&t, NULL);
	}
	if (w == 0) {
		kill(pid, SIGKILL);
		(void)waitpid(pid, &status, 0);
		fx_child = -1;
		fail_msg("the signer did not exit within 15 s of SIGTERM");
	}
	fx_child = -1; /* reaped */
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), CMD_EXIT_OK);
	printf("# SIGTERM with a request in flight: reply %s\n", got ? "delivered" : "not started");
	/* The lock is released and the state is the last answered vote (or, had the reply
	 * been lost after persisting, one further: never behind what was answered). */
	struct guard_hrs last;
	char *sp = tu_path(f->dir, "a.state");
	static const struct guard_opts look = { .skip_fs_check = 1 }; /* $TMPDIR: any fs */
	assert_int_equal(guard_state_check(sp, CHAIN_A, &look, &last), KMS_OK);
	assert_true(last.height == answered || (!got && last.height == in_flight));
	free(sp);
	tnode_close(&n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pubkey_each_version, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_golden_exchanges, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_wrong_node_id, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_1000_votes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sentries_share_guard, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_two_chains, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_one_key_two_chains, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_refusals_keep_connection, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_state_io_fail_closed, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_vote_extensions, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_node_restart_reconnect, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_unix_socket, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_status_events, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_startup_faults, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_consistent_state, fx_setup,
						fx_teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
