/* SPDX-License-Identifier: Apache-2.0 */
/*
 * slot_ against SoftHSM2 tokens behind p11shim: a token that vanishes and comes back
 * (recovery without restart), hangs in every kind of token call (the watchdog), the
 * cap on abandoned calls, re-initialisation under a timed write lock, and failover to
 * a backup token (same request, no failure, primary taken back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11kms/kcrypto.h"
#include "p11kms/keyfile.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tu_shim.h"
#include "slot_int.h" /* test_reinit_lock_timeout holds a module lock */

#define PIN "87654321"

static struct tu_shim sh;
static char *uri_a, *uri_b, *uri_c, *uri_d, *ss_file;
static char *key_a, *key_b, *key_c, *key_d;
static uint8_t pub_a[32], pub_b[32], pub_c[32];
static const uint8_t msg[] = "a vote to sign: height 7, round 0, step prevote";

/* Status events, counted per kind (the sink runs on worker threads). */
static atomic_int events[OBS_ST_CLUSTER_ERROR + 1];

static void count_event(void *ctx, const struct obs_status *st)
{
	(void)ctx;
	if (st->kind > 0 && st->kind <= OBS_ST_CLUSTER_ERROR)
		atomic_fetch_add(&events[st->kind], 1);
}

static int group_setup(void **state)
{
	uint8_t seed[32];
	(void)state;
	tu_shim_setup(&sh, NULL);
	tu_shim_add_token(&sh, "fault-a", PIN);
	tu_shim_add_token(&sh, "fault-b", PIN);
	tu_shim_add_token(&sh, "fault-c", PIN);
	tu_shim_add_token(&sh, "fault-d", PIN);
	uri_a = tu_shim_uri(&sh, "fault-a", NULL);
	uri_b = tu_shim_uri(&sh, "fault-b", NULL);
	uri_c = tu_shim_uri(&sh, "fault-c", NULL);
	uri_d = tu_shim_uri(&sh, "fault-d", NULL);
	/* The same key on a and d (and in a softsign file): a primary and its backups. */
	memset(seed, 0x3c, sizeof(seed));
	assert_int_equal(slot_import_ed25519(uri_a, "val", seed, NULL, &key_a, pub_a), KMS_OK);
	assert_int_equal(slot_import_ed25519(uri_d, "val", seed, NULL, &key_d, pub_c), KMS_OK);
	assert_memory_equal(pub_a, pub_c, 32);
	ss_file = tu_path(sh.hsm.dir, "backup.key");
	assert_int_equal(keyfile_write_seed(ss_file, seed), KMS_OK);
	kms_wipe(seed, sizeof(seed));
	assert_int_equal(slot_keygen(uri_b, "other", NULL, &key_b, pub_b), KMS_OK);
	assert_int_equal(slot_keygen(uri_c, "third", NULL, &key_c, pub_c), KMS_OK);
	assert_int_equal(obs_status_sink_add(count_event, NULL), KMS_OK);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, "");
	slot_shutdown();
	obs_sink_clear();
	free(uri_a), free(uri_b), free(uri_c), free(uri_d), free(ss_file);
	free(key_a), free(key_b), free(key_c), free(key_d);
	tu_shim_teardown(&sh);
	return 0;
}

static int case_teardown(void **state)
{
	(void)state;
	tu_shim_ctl(&sh, ""); /* every hang ends, every token is back */
	tu_log_stop();
	return 0;
}

/* Opened and test-signed with room to spare (sanitizer builds on a loaded machine are
 * slow), then given the deadline under test. */
static struct slot *open_one(const char *uri, const uint8_t *pub, unsigned timeout_ms)
{
	struct slot *s = NULL;
	uint8_t sig[64];
	assert_int_equal(slot_open(uri, NULL, &s), KMS_OK);
	slot_set_timeout(s, 10000);
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig), KMS_OK);
	slot_set_timeout(s, timeout_ms);
	return s;
}

static void sign_ok(struct slot *s, const uint8_t pub[32])
{
	uint8_t sig[64];
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(pub, msg, sizeof(msg) - 1, sig), KMS_OK);
}

/* Signs until it works (or limit_ms passes); returns the ms it took, -1 if never. */
static double sign_until_ok(struct slot *s, double limit_ms)
{
	double t0 = tu_now_ms();
	uint8_t sig[64];
	struct timespec pause = { 0, 10 * 1000000L };
	while (tu_now_ms() - t0 < limit_ms) {
		if (slot_sign(s, msg, sizeof(msg) - 1, sig) == KMS_OK)
			return tu_now_ms() - t0;
		nanosleep(&pause, NULL);
	}
	return -1;
}

/*
 * The token vanishes and comes back, visible to the module only after
 * C_Initialize (as with SoftHSM2's token directory moved away and back). Before
 * this fix: p11kms re-ran C_GetSlotList but never re-initialised the module and
 * refused every request until a restart.
 */
static void test_vanish_and_return(void **state)
{
	struct slot *s = open_one(key_a, pub_a, 10000);
	uint8_t sig[64];
	double t0, ms;
	int reinit0 = tu_shim_trace_count(&sh, "C_Initialize");
	(void)state;
	tu_log_start();
	tu_shim_ctl(&sh, "vanish token=fault-a\n");
	for (int i = 0; i < 20; i++) /* refused, quickly, and logged once */
		assert_int_not_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(tu_log_lines_with("is down"), 1);
	tu_shim_ctl(&sh, ""); /* back, but only for a module that initialises again */
	t0 = tu_now_ms();
	ms = sign_until_ok(s, 15000);
	assert_true(ms >= 0);
	printf("# first signature %.0f ms after the token returned (re-initialisations: %d)\n",
	       tu_now_ms() - t0, tu_shim_trace_count(&sh, "C_Initialize") - reinit0);
	assert_true(tu_shim_trace_count(&sh, "C_Initialize") > reinit0);
	assert_true(tu_log_has("signs again"));
	sign_ok(s, pub_a);
	slot_free(s);
}

struct bg_sign {
	struct slot *s;
	int r;
	double ms;
};

static void *bg_sign_main(void *arg)
{
	struct bg_sign *b = arg;
	uint8_t sig[64];
	double t0 = tu_now_ms();
	b->r = slot_sign(b->s, msg, sizeof(msg) - 1, sig);
	b->ms = tu_now_ms() - t0;
	return NULL;
}

/*
 * A token that hangs in `fn` (after a USB reset forces a new session, for the
 * calls that make one): two callers of that slot get an error by the deadline,
 * a slot on another token of the same module keeps signing meanwhile, and the
 * slot signs again once the token answers. Before this fix, C_OpenSession,
 * C_Login, C_FindObjects and C_GetSlotList ran under the slot mutex, which the
 * caller then needed after its timeout: it blocked for as long as the token hung.
 */
static void hang_in(const char *fn, int with_reset, int token_call)
{
	struct slot *a = open_one(key_a, pub_a, 400), *b = open_one(key_b, pub_b, 10000);
	struct bg_sign x = { a, 0, 0 }, y = { a, 0, 0 };
	pthread_t tx, ty;
	char ctl[200];
	static unsigned reset_id = 100;
	tu_log_start();
	/* C_GetSlotList names no token: that rule hangs it for every caller. */
	if (with_reset)
		snprintf(ctl, sizeof(ctl), "reset token=fault-a id=%u\nhang %s%s\n", ++reset_id, fn,
			 token_call ? " token=fault-a" : "");
	else
		snprintf(ctl, sizeof(ctl), "hang %s%s\n", fn, token_call ? " token=fault-a" : "");
	tu_shim_ctl(&sh, ctl);
	assert_int_equal(pthread_create(&tx, NULL, bg_sign_main, &x), 0);
	assert_int_equal(pthread_create(&ty, NULL, bg_sign_main, &y), 0);
	sign_ok(b, pub_b); /* another token of the same module is not held up */
	pthread_join(tx, NULL);
	pthread_join(ty, NULL);
	printf("# hang in %s: both callers answered in %.0f and %.0f ms (deadline 400 ms)\n", fn,
	       x.ms, y.ms);
	assert_int_equal(x.r, KMS_ERR_TIMEOUT);
	assert_int_not_equal(y.r, KMS_OK);
	sign_ok(b, pub_b);
	tu_shim_ctl(&sh, "");
	slot_set_timeout(a, 10000); /* recovery itself is not what is timed here */
	assert_true(sign_until_ok(a, 15000) >= 0);
	slot_free(a);
	slot_free(b);
}

static void test_hang_sign(void **state)
{
	(void)state;
	hang_in("C_Sign", 0, 1);
}

static void test_hang_open_session(void **state)
{
	(void)state;
	hang_in("C_OpenSession", 1, 1);
}

static void test_hang_login(void **state)
{
	(void)state;
	hang_in("C_Login", 1, 1);
}

static void test_hang_find_objects(void **state)
{
	(void)state;
	hang_in("C_FindObjectsInit", 1, 1);
}

static void test_hang_slot_list(void **state)
{
	(void)state;
	hang_in("C_GetSlotList", 1, 0);
}

/*
 * Hung for good: after SLOT_HUNG_MAX abandoned calls the slot fails closed at
 * once, with one clear log line, and the thread count stops growing. Before this
 * fix every timeout left one more thread behind, without limit.
 */
static void test_hung_calls_capped(void **state)
{
	struct slot *s = open_one(key_a, pub_a, 150);
	uint8_t sig[64];
	int base, peak = 0;
	double t0, slowest_late = 0;
	(void)state;
	base = tu_threads();
	tu_log_start();
	tu_shim_ctl(&sh, "hang C_Sign token=fault-a\n");
	for (int i = 0; i < 40; i++) {
		int n;
		t0 = tu_now_ms();
		assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_ERR_TIMEOUT);
		if (i >= 4 && tu_now_ms() - t0 > slowest_late)
			slowest_late = tu_now_ms() - t0;
		if ((n = tu_threads()) > peak)
			peak = n;
		if (getenv("P11KMS_TEST_VERBOSE"))
			printf("# request %d: %.1f ms, %d threads\n", i, tu_now_ms() - t0, n);
	}
	printf("# 40 requests on a token hung for good: threads %d -> peak %d; after the cap "
	       "each answered in <= %.1f ms\n",
	       base, peak, slowest_late);
	assert_true(peak <= base + 4 + 1);
	assert_int_equal(tu_log_lines_with("have not returned"), 1);
	tu_shim_ctl(&sh, ""); /* the token answers: the stuck calls come back */
	slot_set_timeout(s, 10000);
	assert_true(sign_until_ok(s, 15000) >= 0);
	slot_free(s);
}

/*
 * A module re-initialisation while a call is stuck in the module: the writer
 * lock is given up after a bounded wait (the caller gets its answer by its
 * deadline), and the token is found again once the stuck call returns.
 */
static void test_reinit_with_stuck_reader(void **state)
{
	struct slot *a = open_one(key_a, pub_a, 300), *c = open_one(key_c, pub_c, 3000);
	uint8_t sig[64];
	double t0, ms;
	(void)state;
	tu_log_start();
	tu_shim_ctl(&sh, "hang C_Sign token=fault-a\nvanish token=fault-c\n");
	assert_int_equal(slot_sign(a, msg, sizeof(msg) - 1, sig), KMS_ERR_TIMEOUT);
	t0 = tu_now_ms();
	assert_int_not_equal(slot_sign(c, msg, sizeof(msg) - 1, sig), KMS_OK);
	ms = tu_now_ms() - t0;
	printf("# re-initialisation blocked by a stuck C_Sign: caller answered in %.0f ms\n", ms);
	assert_true(ms < 3000);
	tu_shim_ctl(&sh, "hang C_Sign token=fault-a\n"); /* c is back, a still stuck */
	tu_shim_ctl(&sh, "");
	slot_set_timeout(a, 10000);
	slot_set_timeout(c, 10000);
	assert_true(sign_until_ok(c, 15000) >= 0);
	assert_true(sign_until_ok(a, 15000) >= 0);
	slot_free(a);
	slot_free(c);
}

/*
 * A reader the watchdog does not know about holds the module (here: this thread):
 * the re-initialisation waits for the writer lock only PK11_REINIT_LOCK_MS, so the
 * caller is answered long before its deadline, and the token is found once the
 * reader lets go.
 */
static void test_reinit_lock_timeout(void **state)
{
	struct slot *c = open_one(key_c, pub_c, 5000);
	struct bg_sign x = { c, 0, 0 };
	pthread_t tx;
	double ms;
	(void)state;
	tu_log_start();
	pthread_rwlock_rdlock(&c->mb[0].m->lock);
	tu_shim_ctl(&sh, "vanish token=fault-c\n");
	assert_int_equal(pthread_create(&tx, NULL, bg_sign_main, &x), 0);
	pthread_join(tx, NULL);
	pthread_rwlock_unlock(&c->mb[0].m->lock);
	printf("# re-initialisation behind a held reader lock: caller answered in %.0f ms "
	       "(deadline 5000 ms, writer waits %d ms)\n",
	       x.ms, PK11_REINIT_LOCK_MS);
	assert_int_not_equal(x.r, KMS_OK);
	assert_true(x.ms < 5000);
	assert_true(tu_log_has("a call into it has not returned"));
	tu_shim_ctl(&sh, "");
	ms = sign_until_ok(c, 15000);
	printf("# ... and signed again %.0f ms after the token and the lock were back\n", ms);
	assert_true(ms >= 0);
	slot_free(c);
}

/* Every CK_RV the issue names, once on C_Sign: a lost session is re-opened within
 * the same call; a device error fails that call only. */
static void test_sign_errors(void **state)
{
	static const struct {
		const char *rv;
		int same_call;
	} cases[] = {
		{ "CKR_DEVICE_REMOVED", 1 },	     { "CKR_TOKEN_NOT_PRESENT", 1 },
		{ "CKR_SESSION_HANDLE_INVALID", 1 }, { "CKR_USER_NOT_LOGGED_IN", 1 },
		{ "CKR_DEVICE_ERROR", 0 },	     { "CKR_GENERAL_ERROR", 0 },
	};
	struct slot *s = open_one(key_a, pub_a, 10000);
	uint8_t sig[64];
	char ctl[200];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(ctl, sizeof(ctl), "fail C_Sign rv=%s token=fault-a times=1\n",
			 cases[i].rv);
		tu_shim_ctl(&sh, ctl);
		printf("# C_Sign -> %s once\n", cases[i].rv);
		if (cases[i].same_call) {
			sign_ok(s, pub_a);
		} else {
			assert_int_not_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
			sign_ok(s, pub_a);
		}
	}
	slot_free(s);
}

/* ---- failover ---- */

static struct slot *open_set(const char *const *uris, size_t n, unsigned timeout_ms)
{
	struct slot_opts o = { .timeout_ms = timeout_ms, .chain_id = "test-chain" };
	struct slot *s = NULL;
	assert_int_equal(slot_open_set(uris, n, &o, &s), KMS_OK);
	return s;
}

/* The primary vanishes, then hangs: every request is signed (by the backup, in the
 * same call), slot_describe names the slot that signed, and the primary is taken
 * back once it answers again. */
/* Signs until the primary signs again (the prober found it); ms it took, -1 if never. */
static double until_primary(struct slot *s, const char *primary)
{
	double t0 = tu_now_ms();
	uint8_t sig[64];
	struct timespec p = { 0, 20 * 1000000L };
	while (tu_now_ms() - t0 < 15000) {
		assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
		if (strcmp(slot_describe(s), primary) == 0)
			return tu_now_ms() - t0;
		nanosleep(&p, NULL);
	}
	return -1;
}

/* Requests while the primary is in trouble: how many failed, how many the backup signed. */
static void run_requests(struct slot *s, int n, int *failed, int *on_backup, const char *backup)
{
	uint8_t sig[64];
	for (int i = 0; i < n; i++) {
		if (slot_sign(s, msg, sizeof(msg) - 1, sig) != KMS_OK)
			(*failed)++;
		else
			*on_backup += strcmp(slot_describe(s), backup) == 0;
	}
}

/* The primary vanishes, then hangs in C_Sign: every request is signed (by the backup,
 * in the same call), slot_describe names the slot that signed, and the primary is
 * taken back once it answers again. */
static void test_failover(void **state)
{
	const char *uris[2] = { key_a, key_d };
	/* The default deadline: the backup shares the module, and a re-initialisation for the
	 * returning primary re-opens its sessions too; a sanitizer build on a loaded machine
	 * needs the room. */
	struct slot *s = open_set(uris, 2, 3000);
	int failed = 0, on_backup = 0, fo0 = atomic_load(&events[OBS_ST_FAILOVER]);
	double back1, back2;
	(void)state;
	sign_ok(s, pub_a);
	assert_string_equal(slot_describe(s), key_a);
	tu_log_start();
	tu_shim_ctl(&sh, "vanish token=fault-a\n");
	run_requests(s, 30, &failed, &on_backup, key_d);
	tu_shim_ctl(&sh, "");
	back1 = until_primary(s, key_a);
	tu_shim_ctl(&sh, "hang C_Sign token=fault-a\n");
	run_requests(s, 10, &failed, &on_backup, key_d);
	tu_shim_ctl(&sh, "");
	back2 = until_primary(s, key_a);
	printf("# failover: %d of 40 requests failed, %d signed by the backup; primary taken "
	       "back %.0f / %.0f ms after it answered again\n",
	       failed, on_backup, back1, back2);
	assert_int_equal(failed, 0);
	assert_int_equal(on_backup, 40);
	assert_true(back1 >= 0 && back2 >= 0);
	assert_true(tu_log_has("signing with backup slot"));
	assert_true(tu_log_has("signing with the primary slot"));
	assert_true(atomic_load(&events[OBS_ST_FAILOVER]) >= fo0 + 4);
	slot_free(s);
}

/* A backup on another module (a softsign key file of the same key). */
static void test_failover_other_module(void **state)
{
	char ss_uri[1024];
	struct slot *one = NULL, *s;
	const char *uris[2];
	uint8_t sig[64];
	struct slot_hygiene hy;
	(void)state;
	assert_int_equal(slot_open_softsign(ss_file, NULL, &one), KMS_OK);
	snprintf(ss_uri, sizeof(ss_uri), "%s", slot_describe(one));
	slot_free(one);
	uris[0] = key_a;
	uris[1] = ss_uri;
	s = open_set(uris, 2, 2000);
	tu_shim_ctl(&sh, "fail C_Sign rv=CKR_DEVICE_ERROR token=fault-a\n");
	assert_int_equal(slot_sign(s, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_int_equal(kcrypto_ed25519_verify(pub_a, msg, sizeof(msg) - 1, sig), KMS_OK);
	assert_string_equal(slot_describe(s), ss_uri);
	/* The hygiene report is about the slot that signed. */
	assert_int_equal(slot_hygiene(s, &hy), KMS_OK);
	assert_string_equal(hy.slot, ss_uri);
	assert_string_equal(hy.verdict, "softsign file key: plaintext on disk");
	slot_free(s);
}

/* At start every reachable URI must show the same key, naming both when not. */
static void test_start_key_mismatch(void **state)
{
	const char *uris[2] = { key_a, key_b };
	struct slot_opts o = { .timeout_ms = 2000 };
	struct slot *s = NULL;
	char *ha = tu_to_hex(pub_a, 32), *hb = tu_to_hex(pub_b, 32);
	(void)state;
	tu_log_start();
	assert_int_equal(slot_open_set(uris, 2, &o, &s), KMS_ERR_AUTH);
	assert_null(s);
	assert_true(tu_log_has(ha));
	assert_true(tu_log_has(hb));
	assert_true(tu_log_has("must hold the same key"));
	free(ha);
	free(hb);
}

/* A backup unreachable at start: a warning, reported for doctor, and probed until up. */
static void test_backup_unreachable(void **state)
{
	const char *uris[2] = { key_a, key_d };
	struct slot *s;
	struct slot_member_info mi;
	char line[512];
	double t0;
	(void)state;
	tu_log_start();
	tu_shim_ctl(&sh, "vanish token=fault-d\n");
	s = open_set(uris, 2, 1000);
	assert_true(tu_log_has("unreachable at start"));
	assert_int_equal(slot_backups_unreachable(s, line, sizeof(line)), 1);
	assert_non_null(strstr(line, key_d));
	tu_shim_ctl(&sh, "");
	t0 = tu_now_ms();
	do {
		struct timespec p = { 0, 20 * 1000000L };
		nanosleep(&p, NULL);
		assert_int_equal(slot_member_info(s, 1, &mi), KMS_OK);
	} while (!mi.up && tu_now_ms() - t0 < 15000);
	assert_true(mi.up);
	assert_int_equal(slot_backups_unreachable(s, line, sizeof(line)), 0);
	slot_free(s);
}

static void test_status_events(void **state)
{
	(void)state;
	/* Emitted by the cases above (the sink counts from the start of the run). */
	assert_true(atomic_load(&events[OBS_ST_TOKEN_ERROR]) > 0);
	assert_true(atomic_load(&events[OBS_ST_SESSION_REOPEN]) > 0);
	assert_true(atomic_load(&events[OBS_ST_MODULE_REINIT]) > 0);
	assert_true(atomic_load(&events[OBS_ST_WATCHDOG_TIMEOUT]) > 0);
	assert_true(atomic_load(&events[OBS_ST_SLOT_DOWN]) > 0);
	assert_true(atomic_load(&events[OBS_ST_SLOT_UP]) > 0);
	assert_true(atomic_load(&events[OBS_ST_FAILOVER]) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_vanish_and_return, case_teardown),
		cmocka_unit_test_teardown(test_hang_sign, case_teardown),
		cmocka_unit_test_teardown(test_hang_open_session, case_teardown),
		cmocka_unit_test_teardown(test_hang_login, case_teardown),
		cmocka_unit_test_teardown(test_hang_find_objects, case_teardown),
		cmocka_unit_test_teardown(test_hang_slot_list, case_teardown),
		cmocka_unit_test_teardown(test_hung_calls_capped, case_teardown),
		cmocka_unit_test_teardown(test_reinit_with_stuck_reader, case_teardown),
		cmocka_unit_test_teardown(test_reinit_lock_timeout, case_teardown),
		cmocka_unit_test_teardown(test_sign_errors, case_teardown),
		cmocka_unit_test_teardown(test_failover, case_teardown),
		cmocka_unit_test_teardown(test_failover_other_module, case_teardown),
		cmocka_unit_test_teardown(test_start_key_mismatch, case_teardown),
		cmocka_unit_test_teardown(test_backup_unreachable, case_teardown),
		cmocka_unit_test(test_status_events),
	};
	tu_softhsm_require();
	if (getenv("P11KMS_TEST_FILTER")) /* one case per process: a broken module stays broken */
		cmocka_set_test_filter(getenv("P11KMS_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
