/* SPDX-License-Identifier: Apache-2.0 */
/* Test fixture: the daemon in a thread, with test nodes (tnode) that send votes. */
#include "tu_dnode.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "p11kms/cmd.h"
#include "p11kms/daemon.h"
#include "p11kms/guard.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "testutil.h"

#define TS 1700000000

void tu_import(struct tu_shim *sh, const char *label, uint8_t fill, char **key, uint8_t pub[32])
{
	uint8_t seed[32];
	char *tok = tu_shim_uri(sh, label, NULL);
	memset(seed, fill, sizeof(seed));
	assert_int_equal(slot_import_ed25519(tok, "val", seed, NULL, key, pub), KMS_OK);
	kms_wipe(seed, sizeof(seed));
	free(tok);
}

static void on_ready(void *ctx)
{
	struct tu_run *r = ctx;
	pthread_mutex_lock(&r->mu);
	r->ready = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void *run_main(void *arg)
{
	struct tu_run *r = arg;
	struct daemon_opts o = { .on_ready = on_ready, .ready_ctx = r };
	r->ec = daemon_run(r->cfg, &o);
	on_ready(r);
	return NULL;
}

static char *state_file(const char *dir, const char *chain)
{
	char name[64], *p;
	snprintf(name, sizeof(name), "%s.state", chain);
	p = tu_path(dir, name);
	(void)remove(p);
	assert_int_equal(guard_state_init(p, chain, 0, 0, GUARD_STEP_NONE), KMS_OK);
	return p;
}

void tu_daemon_start(struct tu_run *r, const char *dir, const char *const *chains, size_t nc,
		     const char *const *vals, size_t nv)
{
	char text[16384], err[CFG_ERR_MAX], *conf = tu_path(dir, "p11kms.conf");
	size_t used = 0;
	used += (size_t)snprintf(text + used, sizeof(text) - used, "chains = (\n");
	for (size_t i = 0; i < nc; i += 2) {
		char *sp = state_file(dir, chains[i]);
		used += (size_t)snprintf(text + used, sizeof(text) - used,
					 "%s  { id = \"%s\"; key_format = \"hex\"; state_file = "
					 "\"%s\"; }\n",
					 i ? "," : "", chains[i], sp);
		free(sp);
	}
	used += (size_t)snprintf(text + used, sizeof(text) - used, ");\nkeys = (\n");
	for (size_t i = 0; i < nc; i += 2)
		used += (size_t)snprintf(text + used, sizeof(text) - used,
					 "%s  { chain_ids = [ \"%s\" ]; %s }\n", i ? "," : "",
					 chains[i], chains[i + 1]);
	used += (size_t)snprintf(text + used, sizeof(text) - used, ");\nvalidators = (\n");
	for (size_t i = 0; i < nv; i += 3)
		used += (size_t)snprintf(text + used, sizeof(text) - used,
					 "%s  { chain_id = \"%s\"; addr = \"%s\"; protocol_version "
					 "= \"v0.37\"; backoff_min_ms = 20; backoff_max_ms = 200; "
					 "%s }\n",
					 i ? "," : "", vals[i], vals[i + 1], vals[i + 2]);
	used += (size_t)snprintf(text + used, sizeof(text) - used, ");\n");
	assert_true(used < sizeof(text));
	tu_write_file(conf, text, used, 0600);
	memset(r, 0, sizeof(*r));
	r->ec = -1;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (cfg_load(conf, &r->cfg, err, sizeof(err)) != KMS_OK)
		fail_msg("config: %s", err);
	free(conf);
	daemon_reset_stop();
	assert_int_equal(pthread_create(&r->th, NULL, run_main, r), 0);
	pthread_mutex_lock(&r->mu);
	while (!r->ready)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	assert_int_equal(r->ec, -1); /* started */
}

void tu_daemon_stop(struct tu_run *r)
{
	daemon_request_stop();
	assert_int_equal(pthread_join(r->th, NULL), 0);
	assert_int_equal(r->ec, CMD_EXIT_OK);
	cfg_free(r->cfg);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

/* ---- the node side ---- */

void tu_node_up(struct tu_node *n, const char *dir, const char *chain, const uint8_t *pub, int tcp)
{
	char name[64], *path;
	memset(n, 0, sizeof(*n));
	snprintf(name, sizeof(name), "%s.sock", chain);
	path = tu_path(dir, name);
	(void)remove(path);
	tnode_listen(&n->t, PV_V0_37, 0, tcp ? NULL : path, 0);
	free(path);
	n->chain = chain;
	n->pub = pub;
}

int tu_vote(struct tu_node *n, double *ms)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	struct kbuf *sb;
	double t0 = tu_now_ms();
	int r, ok;
	n->h++;
	tnode_req_vote(&req, n->chain, PV_TYPE_PREVOTE, n->h, 0, (uint8_t)(1 + n->h % 200),
		       TS + n->h);
	r = tnode_call(&n->t, &req, &resp);
	if (ms)
		*ms = tu_now_ms() - t0;
	if (r != KMS_OK)
		return -1;
	if (resp->has_error) {
		pv_response_free(resp);
		return 0;
	}
	sb = kbuf_new(4096);
	assert_int_equal(pv_vote_sign_bytes(n->chain, &resp->vote, sb), KMS_OK);
	ok = kcrypto_ed25519_verify(n->pub, kbuf_ptr(sb), kbuf_len(sb), resp->vote.signature) ==
	     KMS_OK;
	kbuf_free(sb);
	pv_response_free(resp);
	assert_true(ok);
	return 1;
}

void tu_accept_ok(struct tu_node *n)
{
	int r = tnode_accept(&n->t, 10000);
	if (r != KMS_OK)
		fail_msg("accept for %s: %s", n->chain, kms_strerror(r));
}

char *tu_keyline(const char *uri, const char *backup, unsigned timeout_ms)
{
	size_t cap = strlen(uri) + (backup ? strlen(backup) : 0) + 128;
	char *l = malloc(cap);
	assert_non_null(l);
	if (backup)
		snprintf(l, cap, "uri = [ \"%s\", \"%s\" ]; timeout_ms = %u;", uri, backup,
			 timeout_ms);
	else
		snprintf(l, cap, "uri = \"%s\"; timeout_ms = %u;", uri, timeout_ms);
	return l;
}
