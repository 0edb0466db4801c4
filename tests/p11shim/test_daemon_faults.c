/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon serving test nodes while its tokens (SoftHSM2 behind p11shim) fail: time
 * to the first signature after a token returns, requests failed during a failover
 * with a backup present, a token hung for good in C_Login / C_OpenSession / C_Sign
 * (the other chain keeps signing, this one answers within the timeout, threads and
 * memory stay flat), and an identity key (secret_key = "pkcs11:...") that hangs.
 *
 * P11KMS_HANG_REQUESTS sets the requests per hang case (default 30; the slow
 * soak runs 1000).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "p11kms/obs.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tnode.h"
#include "tu_dnode.h"
#include "tu_shim.h"

#define PIN "87654321"
#define CA "chain-a"
#define CB "chain-b"
#define CE "chain-e"

static struct tu_shim sh;
static char *key_a, *key_b, *key_bb, *key_e, *key_i;
static uint8_t pub_a[32], pub_b[32], pub_e[32], pub_i[32];
static char *dir;

/* obs events of signed requests: which slot signed (the handler's obs_event.slot). */
static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static int ev_signed, ev_by_backup;

static void on_event(void *ctx, const struct obs_event *ev)
{
	(void)ctx;
	if (ev->decision != OBS_DEC_SIGNED || !ev->slot || !key_bb)
		return;
	pthread_mutex_lock(&ev_mu);
	ev_signed++;
	ev_by_backup += strcmp(ev->slot, key_bb) == 0;
	pthread_mutex_unlock(&ev_mu);
}

static int group_setup(void **state)
{
	uint8_t pub[32];
	(void)state;
	tu_shim_setup(&sh, NULL);
	tu_shim_add_token(&sh, "d-a", PIN);
	tu_shim_add_token(&sh, "d-b", PIN);
	tu_shim_add_token(&sh, "d-bb", PIN);
	tu_shim_add_token(&sh, "d-e", PIN);
	tu_shim_add_token(&sh, "d-i", PIN);
	tu_import(&sh, "d-a", 0xa1, &key_a, pub_a);
	tu_import(&sh, "d-b", 0xb2, &key_b, pub_b);
	tu_import(&sh, "d-bb", 0xb2, &key_bb, pub); /* the same key: chain b's backup */
	assert_memory_equal(pub, pub_b, 32);
	tu_import(&sh, "d-e", 0xe5, &key_e, pub_e);
	tu_import(&sh, "d-i", 0x1d, &key_i, pub_i);
	slot_shutdown();
	dir = tu_mkdtemp();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	obs_sink_clear();
	tu_shim_teardown(&sh);
	tu_rmrf(dir);
	free(dir);
	free(key_a), free(key_b), free(key_bb), free(key_e), free(key_i);
	return 0;
}

/* Votes until one is signed (15 s at most): the token answers again. */
static void until_signed(struct tu_node *n)
{
	double t0 = tu_now_ms();
	int got;
	while ((got = tu_vote(n, NULL)) == 0 && tu_now_ms() - t0 < 15000)
		;
	assert_int_equal(got, 1);
}

static int hang_requests(void)
{
	const char *v = getenv("P11KMS_HANG_REQUESTS");
	int n = v ? atoi(v) : 30;
	return n > 0 ? n : 30;
}

/*
 * The token of chain a vanishes for a while, then comes back (visible to the module
 * only after C_Initialize). Measured: ms from its return to the first signature.
 * Before this fix the daemon refused every request until a restart.
 */
static void test_recovery_time(void **state)
{
	struct tu_run r;
	struct tu_node a;
	char *ka = tu_keyline(key_a, NULL, 3000);
	const char *chains[] = { CA, ka };
	const char *vals[3] = { CA, NULL, "" };
	int refused = 0, got;
	double t_back, first_ms = -1, worst = 0, ms;
	(void)state;
	tu_node_up(&a, dir, CA, pub_a, 0);
	vals[1] = a.t.addr;
	tu_daemon_start(&r, dir, chains, 2, vals, 3);
	tu_accept_ok(&a);
	for (int i = 0; i < 10; i++)
		assert_int_equal(tu_vote(&a, NULL), 1);
	tu_shim_ctl(&sh, "vanish token=d-a\n");
	for (double t0 = tu_now_ms(); tu_now_ms() - t0 < 400;) {
		assert_int_equal(tu_vote(&a, &ms), 0); /* refused, the connection stays */
		refused++;
		if (ms > worst)
			worst = ms;
	}
	tu_shim_ctl(&sh, "");
	t_back = tu_now_ms();
	while ((got = tu_vote(&a, NULL)) == 0 && tu_now_ms() - t_back < 20000)
		;
	assert_int_equal(got, 1);
	first_ms = tu_now_ms() - t_back;
	printf("# token gone 0.4 s: %d requests refused (slowest answer %.1f ms); first signature "
	       "%.0f ms after the token returned, no restart\n",
	       refused, worst, first_ms);
	for (int i = 0; i < 10; i++)
		assert_int_equal(tu_vote(&a, NULL), 1);
	tu_daemon_stop(&r);
	tnode_close(&a.t);
	free(ka);
}

/*
 * Chain b has a backup token: its primary vanishes, then hangs in C_Sign, then comes
 * back. No request fails; the handler's obs_event names the slot that signed.
 */
static void test_failover_no_failed_request(void **state)
{
	struct tu_run r;
	struct tu_node b;
	char *kb = tu_keyline(key_b, key_bb, 3000); /* the default (see test_slot_faults) */
	const char *chains[] = { CB, kb };
	const char *vals[3] = { CB, NULL, "" };
	int failed = 0, total = 0, by_backup;
	(void)state;
	tu_node_up(&b, dir, CB, pub_b, 0);
	vals[1] = b.t.addr;
	/* The daemon clears the sinks when it stops: registered for this run. */
	assert_int_equal(obs_sink_add(on_event, NULL, 0), KMS_OK);
	tu_daemon_start(&r, dir, chains, 2, vals, 3);
	tu_accept_ok(&b);
	pthread_mutex_lock(&ev_mu);
	ev_signed = ev_by_backup = 0;
	pthread_mutex_unlock(&ev_mu);
	for (int phase = 0; phase < 4; phase++) {
		static const char *const ctl[] = { "", "vanish token=d-b\n",
						   "hang C_Sign token=d-b\n", "" };
		tu_shim_ctl(&sh, ctl[phase]);
		for (int i = 0; i < 30; i++, total++)
			failed += tu_vote(&b, NULL) != 1;
	}
	pthread_mutex_lock(&ev_mu);
	by_backup = ev_by_backup;
	pthread_mutex_unlock(&ev_mu);
	printf("# failover with a backup: %d of %d requests failed; %d signed by the backup "
	       "(obs_event.slot)\n",
	       failed, total, by_backup);
	assert_int_equal(failed, 0);
	assert_true(by_backup >= 60);
	tu_daemon_stop(&r);
	tnode_close(&b.t);
	free(kb);
}

struct bg_node {
	struct tu_node *n;
	atomic_int stop;
	int signed_ok, failed;
	double worst_ms;
};

static void *bg_node_main(void *arg)
{
	struct bg_node *b = arg;
	while (!atomic_load(&b->stop)) {
		double ms;
		if (tu_vote(b->n, &ms) == 1)
			b->signed_ok++;
		else
			b->failed++;
		if (ms > b->worst_ms)
			b->worst_ms = ms;
	}
	return NULL;
}

/*
 * Chain a's token hangs for good in fn (after a USB reset, for the calls that open
 * a session) while chain e signs on another token of the same module: e keeps
 * signing, a answers every request with an error within its timeout, and threads
 * and memory stay flat over the requests. Before this fix the first such request
 * held chain a's guard lock for as long as the token hung.
 */
static void hang_forever(const char *fn, int reset)
{
	static unsigned reset_id = 500;
	struct tu_run r;
	struct tu_node a, e;
	struct bg_node be = { 0 };
	pthread_t th;
	char *ka = tu_keyline(key_a, NULL, 500), *ke = tu_keyline(key_e, NULL, 3000), ctl[128];
	const char *chains[] = { CA, ka, CE, ke };
	const char *vals[6] = { CA, NULL, "", CE, NULL, "" };
	int n = hang_requests(), threads0, threads_max = 0, refused = 0;
	long rss0, rss1;
	double worst = 0, ms;
	tu_node_up(&a, dir, CA, pub_a, 0);
	tu_node_up(&e, dir, CE, pub_e, 0);
	vals[1] = a.t.addr;
	vals[4] = e.t.addr;
	tu_daemon_start(&r, dir, chains, 4, vals, 6);
	tu_accept_ok(&a);
	tu_accept_ok(&e);
	until_signed(&a); /* 500 ms: a slow machine may refuse the first */
	assert_int_equal(tu_vote(&e, NULL), 1);
	be.n = &e;
	assert_int_equal(pthread_create(&th, NULL, bg_node_main, &be), 0);
	if (reset)
		snprintf(ctl, sizeof(ctl), "reset token=d-a id=%u\nhang %s token=d-a\n", ++reset_id,
			 fn);
	else
		snprintf(ctl, sizeof(ctl), "hang %s token=d-a\n", fn);
	tu_shim_ctl(&sh, ctl);
	assert_int_equal(tu_vote(&a, &ms), 0); /* the first one waits for the timeout */
	threads0 = tu_threads();
	rss0 = tu_rss_kib();
	for (int i = 0; i < n; i++) {
		int t;
		assert_int_equal(tu_vote(&a, &ms), 0);
		refused++;
		if (ms > worst)
			worst = ms;
		if ((t = tu_threads()) > threads_max)
			threads_max = t;
	}
	rss1 = tu_rss_kib();
	atomic_store(&be.stop, 1);
	pthread_join(th, NULL);
	printf("# hung for good in %s: %d requests refused, slowest answer %.1f ms (timeout 500 "
	       "ms); threads %d -> max %d; RSS %ld -> %ld KiB; other chain: %d signed, %d "
	       "failed, slowest %.1f ms\n",
	       fn, refused + 1, worst, threads0, threads_max, rss0, rss1, be.signed_ok, be.failed,
	       be.worst_ms);
	assert_true(worst < 5000); /* the node's own limit */
	assert_true(threads_max <= threads0 + 4);
	assert_true(be.signed_ok > 0);
	assert_int_equal(be.failed, 0);
	tu_shim_ctl(&sh, ""); /* the token answers again */
	until_signed(&a);
	tu_daemon_stop(&r);
	tnode_close(&a.t);
	tnode_close(&e.t);
	free(ka);
	free(ke);
}

static void test_hang_forever_login(void **state)
{
	(void)state;
	hang_forever("C_Login", 1);
}

static void test_hang_forever_open_session(void **state)
{
	(void)state;
	hang_forever("C_OpenSession", 1);
}

static void test_hang_forever_sign(void **state)
{
	(void)state;
	hang_forever("C_Sign", 0);
}

/*
 * Hangs that end: every request's C_Sign hangs 150 ms against a 100 ms deadline, so
 * each one abandons a worker that returns a little later. Over N requests (1000 in
 * the soak) threads and memory must not grow with N.
 */
static void test_hang_cycles(void **state)
{
	struct tu_run r;
	struct tu_node a;
	char *ka = tu_keyline(key_a, NULL, 100);
	const char *chains[] = { CA, ka };
	const char *vals[3] = { CA, NULL, "" };
	int n = hang_requests(), threads0, threads_max = 0, refused = 0, t;
	long rss0, rss_half = 0, rss1;
	(void)state;
	tu_node_up(&a, dir, CA, pub_a, 0);
	vals[1] = a.t.addr;
	tu_daemon_start(&r, dir, chains, 2, vals, 3);
	tu_accept_ok(&a);
	until_signed(&a); /* a 100 ms deadline: a slow machine may refuse the first */
	tu_shim_ctl(&sh, "hang C_Sign token=d-a ms=150\n");
	for (int i = 0; i < 10; i++) /* warm up: the pool and the allocator settle */
		(void)tu_vote(&a, NULL);
	threads0 = tu_threads();
	rss0 = tu_rss_kib();
	for (int i = 0; i < n; i++) {
		refused += tu_vote(&a, NULL) == 0;
		if ((t = tu_threads()) > threads_max)
			threads_max = t;
		if (i == n / 2)
			rss_half = tu_rss_kib();
	}
	rss1 = tu_rss_kib();
	printf("# %d hangs of 150 ms against a 100 ms deadline: %d refused; threads %d -> max "
	       "%d; RSS %ld -> %ld (half-way) -> %ld KiB\n",
	       n, refused, threads0, threads_max, rss0, rss_half, rss1);
	assert_true(refused > n / 2);
	assert_true(threads_max <= threads0 + 4);
	tu_shim_ctl(&sh, "");
	until_signed(&a);
	tu_daemon_stop(&r);
	tnode_close(&a.t);
	free(ka);
}

/*
 * secret_key = "pkcs11:..." on a token that hangs in C_Sign: the handshake fails at
 * the identity's deadline and the connection thread dials again (a second connection
 * arrives while the token still hangs); the other chain keeps signing. Before this
 * fix the identity key had no timeout: the connection thread waited for the token.
 */
static void test_identity_key_hangs(void **state)
{
	struct tu_run r;
	struct tu_node a, e;
	char *ka = tu_keyline(key_a, NULL, 1000), *ke = tu_keyline(key_e, NULL, 3000);
	char extra[1200];
	const char *chains[] = { CA, ka, CE, ke };
	const char *vals[6] = { CA, NULL, NULL, CE, NULL, "" };
	double t0, redial_ms;
	int rr;
	(void)state;
	tu_node_up(&a, dir, CA, pub_a, 1);
	tu_node_up(&e, dir, CE, pub_e, 0);
	snprintf(extra, sizeof(extra), "secret_key = \"%s\";", key_i);
	vals[1] = a.t.addr;
	vals[2] = extra;
	vals[4] = e.t.addr;
	tu_shim_ctl(&sh, "hang C_Sign token=d-i from=2\n"); /* the open's self-test signs */
	tu_daemon_start(&r, dir, chains, 4, vals, 6);
	tu_accept_ok(&e);
	t0 = tu_now_ms();
	/* The signer connects, but its identity never signs: it closes at its deadline
	 * (not the node: the node would give up after 5 s with KMS_ERR_TIMEOUT) ... */
	rr = tnode_accept(&a.t, 10000);
	assert_int_equal(rr, KMS_ERR_CONN_CLOSED);
	assert_int_equal(tu_vote(&e, NULL), 1);
	/* ... and dials again, its connection thread free. */
	rr = tnode_accept(&a.t, 10000);
	redial_ms = tu_now_ms() - t0;
	assert_int_equal(rr, KMS_ERR_CONN_CLOSED);
	printf("# identity key hung in C_Sign: the signer closed two handshakes at its 3 s "
	       "deadline, %.0f ms in all\n",
	       redial_ms);
	assert_int_equal(tu_vote(&e, NULL), 1);
	tu_shim_ctl(&sh, "");
	tu_accept_ok(&a);
	assert_int_equal(tu_vote(&a, NULL), 1);
	tu_daemon_stop(&r);
	tnode_close(&a.t);
	tnode_close(&e.t);
	free(ka);
	free(ke);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recovery_time),
		cmocka_unit_test(test_failover_no_failed_request),
		cmocka_unit_test(test_hang_forever_login),
		cmocka_unit_test(test_hang_forever_open_session),
		cmocka_unit_test(test_hang_forever_sign),
		cmocka_unit_test(test_hang_cycles),
		cmocka_unit_test(test_identity_key_hangs),
	};
	signal(SIGPIPE, SIG_IGN);
	tu_softhsm_require();
	if (getenv("P11KMS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("P11KMS_TEST_FILTER"));
	kms_log_set_level(getenv("P11KMS_TEST_VERBOSE") ? KMS_LOG_DEBUG : KMS_LOG_ERR);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
