/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon with keys on a SoftHSM2 token: the consensus key imported from a
 * known seed, the Secret Connection identity generated on the token and named
 * by a pkcs11: URI in secret_key. Votes are verified with OpenSSL.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "p11kms/cfg.h"
#include "p11kms/cmd.h"
#include "p11kms/daemon.h"
#include "p11kms/guard.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tnode.h"
#include "tu_softhsm.h"

#define CHAIN "haqq_53211-1"

/*
 * SoftHSM2 leaks in its EdDSA path (tests/lsan.supp). The daemon releases the
 * module at stop (slot_shutdown), and a leak report from an unmapped module
 * has no frames to match the suppression, so this test keeps modules mapped:
 * pkcs11-provider's fake_dlclose, linked in instead of preloaded.
 */
int dlclose(void *handle);
int dlclose(void *handle)
{
	(void)handle;
	return 0;
}

static struct tu_softhsm hsm;
static char *key_uri, *id_uri;
static uint8_t pub[32], id_pub[32];

static int group_setup(void **state)
{
	(void)state;
	uint8_t seed[32];
	tu_softhsm_setup(&hsm);
	tu_softhsm_add_token(&hsm, "p11kms-daemon", "so-pin-1234", "user-1234");
	char *token = tu_softhsm_uri(&hsm, "p11kms-daemon", NULL);
	memset(seed, 0x5a, sizeof(seed));
	assert_int_equal(slot_import_ed25519(token, "haqq-consensus", seed, NULL, &key_uri, pub),
			 KMS_OK);
	uint8_t want[32];
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, want), KMS_OK);
	assert_memory_equal(pub, want, 32);
	assert_int_equal(slot_keygen(token, "kms-identity", NULL, &id_uri, id_pub), KMS_OK);
	slot_shutdown();
	free(token);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_softhsm_teardown(&hsm);
	free(key_uri);
	free(id_uri);
	return 0;
}

struct run {
	struct cfg *cfg;
	int ec;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready;
};

static void on_ready(void *ctx)
{
	struct run *r = ctx;
	pthread_mutex_lock(&r->mu);
	r->ready = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void *run_thread(void *arg)
{
	struct run *r = arg;
	struct daemon_opts o = { .on_ready = on_ready, .ready_ctx = r };
	r->ec = daemon_run(r->cfg, &o);
	on_ready(r);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void test_softhsm_keys(void **state)
{
	(void)state;
	char *dir = tu_mkdtemp();
	char *conf = tu_path(dir, "p11kms.conf"), *sp = tu_path(dir, "t.state");
	char text[8192], err[CFG_ERR_MAX];
	struct tnode n;
	struct run r = { .ec = -1 };
	pthread_t th;
	enum { N = 300 };
	int64_t lat[N];

	assert_int_equal(guard_state_init(sp, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);
	tnode_listen(&n, PV_V0_37, 0, NULL, 1);
	int len = snprintf(text, sizeof(text),
			   "chains = ( { id = \"" CHAIN
			   "\"; key_format = \"cosmos-json\"; state_file = \"t.state\";"
			   " allow_volatile_state = true; } );\n"
			   "keys = ( { chain_ids = [ \"" CHAIN
			   "\" ]; uri = \"%s\"; profile = \"softhsm2\"; } );\n"
			   "validators = ( { chain_id = \"" CHAIN
			   "\"; addr = \"%s\"; secret_key = \"%s\";\n"
			   "  protocol_version = \"v0.37\"; } );\n",
			   key_uri, n.addr, id_uri);
	assert_true(len > 0 && (size_t)len < sizeof(text));
	tu_write_file(conf, text, (size_t)len, 0600);
	if (cfg_load(conf, &r.cfg, err, sizeof(err)) != KMS_OK)
		fail_msg("%s", err);
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	daemon_reset_stop();
	assert_int_equal(pthread_create(&th, NULL, run_thread, &r), 0);
	pthread_mutex_lock(&r.mu);
	while (!r.ready)
		pthread_cond_wait(&r.cv, &r.mu);
	pthread_mutex_unlock(&r.mu);
	assert_int_equal(r.ec, -1); /* still running: start-up passed */

	assert_int_equal(tnode_accept(&n, 5000), KMS_OK);
	/* The signer authenticated with the identity key that lives on the token. */
	uint8_t remote[32];
	sc_remote_pubkey(n.sc, remote);
	assert_memory_equal(remote, id_pub, 32);

	struct pv_request req;
	struct pv_response *resp = NULL;
	tnode_req_pubkey(&req, CHAIN);
	assert_int_equal(tnode_call(&n, &req, &resp), KMS_OK);
	assert_int_equal(resp->has_pub_key, 1);
	assert_memory_equal(resp->pub_key, pub, 32);
	pv_response_free(resp);

	kms_log_set_quiet(1);
	struct kbuf *sb = kbuf_new(4096);
	for (int i = 0; i < N; i++) {
		struct timespec a, b;
		tnode_req_vote(&req, CHAIN, i % 2 ? PV_TYPE_PRECOMMIT : PV_TYPE_PREVOTE, 1 + i / 2,
			       0, (uint8_t)(1 + i % 100), 1700000000 + i);
		clock_gettime(CLOCK_MONOTONIC, &a);
		assert_int_equal(tnode_call(&n, &req, &resp), KMS_OK);
		clock_gettime(CLOCK_MONOTONIC, &b);
		lat[i] = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
		if (resp->has_error)
			fail_msg("vote %d refused: %s", i, resp->error_description);
		kbuf_reset(sb);
		assert_int_equal(pv_vote_sign_bytes(CHAIN, &resp->vote, sb), KMS_OK);
		assert_int_equal(kcrypto_ed25519_verify(pub, kbuf_ptr(sb), kbuf_len(sb),
							resp->vote.signature),
				 KMS_OK);
		pv_response_free(resp);
	}
	kbuf_free(sb);
	kms_log_set_quiet(0);
	qsort(lat, N, sizeof(int64_t), cmp_i64);
	printf("# %d votes through SoftHSM2 (durable state included): p50 %.3f ms, p99 %.3f ms\n",
	       N, (double)lat[N / 2] / 1e6, (double)lat[N * 99 / 100] / 1e6);

	daemon_request_stop();
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(r.ec, CMD_EXIT_OK);
	tnode_close(&n);
	cfg_free(r.cfg);
	pthread_mutex_destroy(&r.mu);
	pthread_cond_destroy(&r.cv);
	tu_rmrf(dir);
	free(dir);
	free(conf);
	free(sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softhsm_keys),
	};
	signal(SIGPIPE, SIG_IGN);
	tu_softhsm_require();
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
