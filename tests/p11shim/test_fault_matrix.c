/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every fault kind x every token call, with the daemon serving two test nodes (label
 * slow): chain s has one token, chain f a primary token and a backup on another module
 * (a softsign file of the same key). For each case the fault is injected for 600 ms
 * after a USB reset (or, for C_GetSlotList/C_Initialize/C_Finalize, while the tokens
 * are gone), then cleared. Checked: every request is answered (no node timeout), every
 * signature verifies, chain f fails no request, chain s signs again after the fault.
 * Printed: one line per case (refusals, ms to the first signature after the fault).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "p11kms/kms_log.h"
#include "p11kms/keyfile.h"
#include "p11kms/slot.h"
#include "testutil.h"
#include "tu_dnode.h"

#define PIN "87654321"

static struct tu_shim sh;
static char *dir, *key_s, *key_f, *backup_uri, *backup_file;
static uint8_t pub_s[32], pub_f[32];

static int group_setup(void **state)
{
	uint8_t seed[32];
	char *file;
	struct slot *one = NULL;
	(void)state;
	tu_shim_setup(&sh, NULL);
	tu_shim_add_token(&sh, "m-s", PIN);
	tu_shim_add_token(&sh, "m-f", PIN);
	tu_import(&sh, "m-s", 0x51, &key_s, pub_s);
	tu_import(&sh, "m-f", 0xf1, &key_f, pub_f);
	dir = tu_mkdtemp();
	file = tu_path(dir, "backup.key");
	memset(seed, 0xf1, sizeof(seed));
	assert_int_equal(keyfile_write_seed(file, seed), KMS_OK);
	assert_int_equal(slot_open_softsign(file, NULL, &one), KMS_OK);
	backup_uri = strdup(slot_describe(one));
	slot_free(one);
	slot_shutdown();
	backup_file = file;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_shim_teardown(&sh);
	tu_rmrf(dir);
	free(dir), free(key_s), free(key_f), free(backup_uri), free(backup_file);
	return 0;
}

struct loop {
	struct tu_node *n;
	atomic_int stop, cleared;
	double t_clear, first_after; /* ms */
	int refused, failed, signed_ok;
	pthread_mutex_t mu;
};

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	while (!atomic_load(&l->stop)) {
		int v = tu_vote(l->n, NULL);
		pthread_mutex_lock(&l->mu);
		if (v < 0)
			l->failed++;
		else if (v == 0)
			l->refused++;
		else {
			l->signed_ok++;
			if (atomic_load(&l->cleared) && l->first_after < 0)
				l->first_after = tu_now_ms() - l->t_clear;
		}
		pthread_mutex_unlock(&l->mu);
	}
	return NULL;
}

static const char *const fns[] = {
	"C_GetSlotList", "C_GetTokenInfo",	"C_OpenSession",
	"C_Login",	 "C_GetSessionInfo",	"C_FindObjectsInit",
	"C_FindObjects", "C_GetAttributeValue", "C_SignInit",
	"C_Sign",	 "C_CloseSession",	"C_Logout",
	"C_Initialize",	 "C_Finalize",
};

static const char *const kinds[] = {
	"fail rv=CKR_DEVICE_REMOVED",
	"fail rv=CKR_TOKEN_NOT_PRESENT",
	"fail rv=CKR_SESSION_HANDLE_INVALID",
	"fail rv=CKR_USER_NOT_LOGGED_IN",
	"fail rv=CKR_DEVICE_ERROR",
	"fail rv=CKR_GENERAL_ERROR",
	"delay ms=100",
	"hang ms=600",
	"hang",
};

/* Calls tied to no token (a token= filter would never match them). */
static int global_fn(const char *fn)
{
	return strcmp(fn, "C_GetSlotList") == 0 || strcmp(fn, "C_Initialize") == 0 ||
	       strcmp(fn, "C_Finalize") == 0;
}

/* "<action> <fn> <args>" from a kind "<action> <args>". */
static void rule(char *out, size_t cap, const char *kind, const char *fn, const char *token)
{
	const char *sp = strchr(kind, ' ');
	int act = sp ? (int)(sp - kind) : (int)strlen(kind);
	snprintf(out, cap, "%.*s %s%s%s%s%s\n", act, kind, fn, sp ? sp : "", token ? " token=" : "",
		 token ? token : "", "");
}

static void run_case(const char *fn, const char *kind, unsigned id, struct loop *s, struct loop *f)
{
	char ctl[512], r1[160], r2[160];
	struct timespec p = { 0, 600 * 1000000L };
	double t0;
	int rs0, ff0, sf0, fs0;
	if (global_fn(fn)) {
		rule(r1, sizeof(r1), kind, fn, NULL);
		snprintf(ctl, sizeof(ctl), "vanish token=m-s\nvanish token=m-f\n%s", r1);
	} else {
		rule(r1, sizeof(r1), kind, fn, "m-s");
		rule(r2, sizeof(r2), kind, fn, "m-f");
		snprintf(ctl, sizeof(ctl), "reset token=m-s id=%u\nreset token=m-f id=%u\n%s%s", id,
			 id, r1, r2);
	}
	pthread_mutex_lock(&s->mu);
	rs0 = s->refused, sf0 = s->failed;
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&f->mu);
	ff0 = f->refused + f->failed, fs0 = f->failed;
	pthread_mutex_unlock(&f->mu);
	tu_shim_ctl(&sh, ctl);
	nanosleep(&p, NULL);
	pthread_mutex_lock(&s->mu);
	s->first_after = -1;
	s->t_clear = tu_now_ms();
	atomic_store(&s->cleared, 1);
	pthread_mutex_unlock(&s->mu);
	tu_shim_ctl(&sh, "");
	t0 = tu_now_ms();
	for (;;) {
		double fa;
		pthread_mutex_lock(&s->mu);
		fa = s->first_after;
		pthread_mutex_unlock(&s->mu);
		if (fa >= 0 || tu_now_ms() - t0 > 15000)
			break;
		p.tv_nsec = 10 * 1000000L;
		nanosleep(&p, NULL);
	}
	atomic_store(&s->cleared, 0);
	printf("# %-20s %-36s single: %3d refused, signs %6.0f ms after; failover: %d "
	       "failed\n",
	       fn, kind, s->refused - rs0, s->first_after, f->refused + f->failed - ff0);
	fflush(stdout);
	if (s->first_after < 0)
		fail_msg("%s %s: chain s did not sign again", fn, kind);
	if (s->failed != sf0 || f->failed != fs0)
		fail_msg("%s %s: a request went unanswered", fn, kind);
	if (f->refused + f->failed != ff0)
		fail_msg("%s %s: chain f (with a backup) failed a request", fn, kind);
}

static void test_matrix(void **state)
{
	struct tu_run r;
	struct tu_node ns, nf;
	struct loop s = { 0 }, f = { 0 };
	pthread_t ts, tf;
	char *ks = tu_keyline(key_s, NULL, 300), *kf = tu_keyline(key_f, backup_uri, 300);
	const char *chains[] = { "chain-s", ks, "chain-f", kf };
	const char *vals[6] = { "chain-s", NULL, "", "chain-f", NULL, "" };
	unsigned id = 1;
	(void)state;
	tu_node_up(&ns, dir, "chain-s", pub_s, 0);
	tu_node_up(&nf, dir, "chain-f", pub_f, 0);
	vals[1] = ns.t.addr;
	vals[4] = nf.t.addr;
	/* The backup is a softsign token (another module, untouched by the faults); the
	 * module serves the files registered before it starts (the daemon registers only
	 * softsign = entries). */
	{
		const char *one[1] = { backup_file };
		assert_int_equal(slot_softsign_preload(one, 1), KMS_OK);
	}
	tu_daemon_start(&r, dir, chains, 4, vals, 6);
	tu_accept_ok(&ns);
	tu_accept_ok(&nf);
	s.n = &ns;
	f.n = &nf;
	s.first_after = -1;
	pthread_mutex_init(&s.mu, NULL);
	pthread_mutex_init(&f.mu, NULL);
	assert_int_equal(pthread_create(&ts, NULL, loop_main, &s), 0);
	assert_int_equal(pthread_create(&tf, NULL, loop_main, &f), 0);
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			run_case(fns[i], kinds[k], id++, &s, &f);
	atomic_store(&s.stop, 1);
	atomic_store(&f.stop, 1);
	pthread_join(ts, NULL);
	pthread_join(tf, NULL);
	printf("# %u cases: chain s signed %d, chain f signed %d (failed %d)\n", id - 1,
	       s.signed_ok, f.signed_ok, f.refused + f.failed);
	tu_daemon_stop(&r);
	tnode_close(&ns.t);
	tnode_close(&nf.t);
	free(ks);
	free(kf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matrix),
	};
	tu_softhsm_require();
	kms_log_set_level(getenv("P11KMS_TEST_VERBOSE") ? KMS_LOG_DEBUG : KMS_LOG_ERR);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
