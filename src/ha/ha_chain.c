/* SPDX-License-Identifier: Apache-2.0 */
/* One chain's cluster mark in the daemon: the guard's CLUSTER_CHECK/COMMIT/RESOLVE, watch, presence. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ha_int.h"
#include "p11kms/kms_log.h"
#include "p11kms/obs.h"

#define HA_LEASE_TTL_S 10
#define HA_PRESENCE_PERIOD_MS 3000
#define HA_WATCH_STREAM_MS 30000 /* a watch stream is re-opened this often */

struct ha_chain {
	const struct cfg_chain *cc;
	const struct cfg_ha *c;
	struct guard *g;
	char key[512], hosts_key[512], host[64];
	/* the signing path (called under the guard's mutex: one request at a time) */
	struct ha_client *cl;
	struct ha_share *share; /* connections shared with the presence thread (which opens them) */
	struct kbuf *val, *cur;
	int64_t dec_rev; /* revision of the mark last handed to the guard: COMMIT compares it */
	struct guard_mark *tmp;
	/* the cached mark, shared with the watch thread */
	pthread_mutex_t mu;
	int cache_ok;
	int64_t cache_rev;
	struct guard_mark *cache;
	/* threads */
	atomic_int stop;
	atomic_int synced; /* the cluster is known not to be behind the local state */
	pthread_t watch_t, pres_t;
	int watch_started, pres_started;
};

static void cluster_error(struct ha_chain *hc, int err)
{
	obs_status(&(struct obs_status){
		.kind = OBS_ST_CLUSTER_ERROR, .chain_id = hc->cc->id, .err = err });
}

/* Stores (m, rev) as the cached mark unless the cache already holds something newer. */
static void cache_put(struct ha_chain *hc, const struct guard_mark *m, int64_t rev)
{
	pthread_mutex_lock(&hc->mu);
	if (!hc->cache_ok || rev >= hc->cache_rev) {
		*hc->cache = *m;
		hc->cache_rev = rev;
		hc->cache_ok = 1;
	}
	pthread_mutex_unlock(&hc->mu);
}

static void cache_drop(struct ha_chain *hc)
{
	pthread_mutex_lock(&hc->mu);
	hc->cache_ok = 0;
	pthread_mutex_unlock(&hc->mu);
}

/* Decodes a value read from etcd (absent: no mark). */
static int take_mark(const struct ha_kv *kv, const struct kbuf *v, struct guard_mark *m)
{
	if (!kv->present) {
		memset(m, 0, sizeof(*m));
		return KMS_OK;
	}
	return ha_mark_decode(kbuf_ptr(v), kbuf_len(v), m, NULL, 0, NULL);
}

/* A linearizable read of the mark into m; on success also the cache and dec_rev. */
static int read_mark(struct ha_chain *hc, struct guard_mark *m)
{
	struct ha_kv kv;
	kbuf_reset(hc->cur);
	int r = ha_get(hc->cl, hc->key, hc->cur, &kv);
	if (r == KMS_OK)
		r = take_mark(&kv, hc->cur, m);
	if (r != KMS_OK) {
		cache_drop(hc);
		cluster_error(hc, r);
		return r;
	}
	hc->dec_rev = kv.present ? kv.mod_revision : 0;
	cache_put(hc, m, hc->dec_rev);
	return KMS_OK;
}

/* guard_cluster_ops.mark: CLUSTER_CHECK's input. */
static int op_mark(void *ctx, struct guard_mark *m)
{
	struct ha_chain *hc = ctx;
	pthread_mutex_lock(&hc->mu);
	if (hc->cache_ok) {
		*m = *hc->cache;
		hc->dec_rev = hc->cache_rev;
		pthread_mutex_unlock(&hc->mu);
		return KMS_OK;
	}
	pthread_mutex_unlock(&hc->mu);
	return read_mark(hc, m);
}

static int same_mark(const struct guard_mark *a, const struct guard_mark *b)
{
	return a->present && b->present && guard_hrs_cmp(&a->hrs, &b->hrs) == 0 &&
	       a->has_sig && b->has_sig && a->sign_bytes_len == b->sign_bytes_len &&
	       memcmp(a->sign_bytes, b->sign_bytes, a->sign_bytes_len) == 0 &&
	       memcmp(a->signature, b->signature, GUARD_SIG_LEN) == 0;
}

/* guard_cluster_ops.commit: COMMIT, and RESOLVE after an unknown outcome. */
static int op_commit(void *ctx, const struct guard_mark *n, struct guard_mark *m)
{
	struct ha_chain *hc = ctx;
	struct ha_kv kv;
	int64_t nrev = 0;
	int ok = 0, r;

	kbuf_reset(hc->val);
	kbuf_reset(hc->cur);
	if ((r = ha_mark_encode(n, hc->host, hc->val)) != KMS_OK)
		return r;
	r = ha_cas(hc->cl, hc->key, hc->dec_rev, kbuf_ptr(hc->val), kbuf_len(hc->val), &ok, &nrev,
		   hc->cur, &kv);
	if (r == KMS_OK && ok) {
		hc->dec_rev = nrev;
		cache_put(hc, n, nrev);
		return KMS_OK;
	}
	if (r == KMS_OK) {
		/* compare failure: the failure branch's range is the mark now */
		if ((r = take_mark(&kv, hc->cur, m)) != KMS_OK) {
			cache_drop(hc);
			return r;
		}
		hc->dec_rev = kv.present ? kv.mod_revision : 0;
		cache_put(hc, m, hc->dec_rev);
		return KMS_ERR_EXISTS;
	}
	/* Unknown outcome. RESOLVE: does the mark hold exactly n now? */
	int err = r;
	cache_drop(hc);
	cluster_error(hc, err);
	if (read_mark(hc, hc->tmp) == KMS_OK && same_mark(hc->tmp, n)) {
		kms_log_warn("etcd: the transaction at h/r/s=%lld/%d/%d timed out but the mark "
			     "holds it (resolved as applied) chain=%s",
			     (long long)n->hrs.height, n->hrs.round, (int)n->hrs.step, hc->cc->id);
		return KMS_OK;
	}
	return err;
}

static const struct guard_cluster_ops g_ops = { op_mark, op_commit };

const struct guard_cluster_ops *ha_guard_ops(void)
{
	return &g_ops;
}

/* ---- the watch thread: keeps the cached mark fresh (an optimisation only) ---- */

struct watch_ctx {
	struct ha_chain *hc;
	struct kbuf *line;
	struct guard_mark *m;
	struct kbuf *v;
};

static void watch_line(struct watch_ctx *w, const char *s, size_t n)
{
	json_error_t je;
	json_t *o = json_loadb(s, n, 0, &je);
	const json_t *ev = json_object_get(json_object_get(o, "result"), "events");
	for (size_t i = 0; i < json_array_size(ev); i++) {
		const json_t *e = json_array_get(ev, i);
		const json_t *kvj = json_object_get(e, "kv");
		const json_t *type = json_object_get(e, "type");
		if (json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0) {
			cache_drop(w->hc); /* never written by p11kms: read again */
			continue;
		}
		kbuf_reset(w->v);
		if (ha_json_unb64(kvj, "value", w->v) != KMS_OK ||
		    ha_mark_decode(kbuf_ptr(w->v), kbuf_len(w->v), w->m, NULL, 0, NULL) != KMS_OK)
			continue;
		cache_put(w->hc, w->m, ha_json_i64(kvj, "mod_revision"));
	}
	json_decref(o);
}

static size_t watch_data(char *p, size_t size, size_t nm, void *ctx)
{
	struct watch_ctx *w = ctx;
	size_t n = size * nm;
	if (kbuf_put(w->line, p, n) != KMS_OK)
		return 0;
	for (;;) {
		const uint8_t *b = kbuf_ptr(w->line);
		const uint8_t *nl = memchr(b, '\n', kbuf_len(w->line));
		if (nl == NULL)
			break;
		size_t len = (size_t)(nl - b);
		watch_line(w, (const char *)b, len);
		if (kbuf_consume(w->line, len + 1) != KMS_OK)
			return 0;
	}
	return n;
}

static int watch_progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a;
	(void)b;
	(void)c;
	(void)d;
	return atomic_load(&((struct ha_chain *)ctx)->stop) ? 1 : 0;
}

static void sleep_ms(struct ha_chain *hc, int ms)
{
	for (int t = 0; t < ms && !atomic_load(&hc->stop); t += 50) {
		struct timespec ts = { 0, 50 * 1000000L };
		(void)nanosleep(&ts, NULL);
	}
}

static void *watch_main(void *arg)
{
	struct ha_chain *hc = arg;
	char errbuf[CURL_ERROR_SIZE];
	struct watch_ctx w = { hc, kbuf_new(4 * 1024 * 1024), calloc(1, sizeof(struct guard_mark)),
			       kbuf_new(64 * 1024) };
	CURL *h = curl_easy_init();
	size_t ep = 0;
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	if (h == NULL || w.line == NULL || w.m == NULL || w.v == NULL || hdr == NULL ||
	    ha_curl_setup(h, hc->c, errbuf) != KMS_OK)
		goto out;
	while (!atomic_load(&hc->stop)) {
		int64_t from;
		char url[512], body[1024], rev[32];
		pthread_mutex_lock(&hc->mu);
		from = hc->cache_ok ? hc->cache_rev + 1 : 0;
		pthread_mutex_unlock(&hc->mu);
		json_t *k = ha_json_b64((const uint8_t *)hc->key, strlen(hc->key));
		(void)snprintf(rev, sizeof(rev), "%" PRId64, from);
		(void)snprintf(body, sizeof(body),
			       "{\"create_request\":{\"key\":\"%s\",\"start_revision\":\"%s\"}}",
			       json_is_string(k) ? json_string_value(k) : "", rev);
		json_decref(k);
		(void)snprintf(url, sizeof(url), "%s/v3/watch", hc->c->etcd[ep % hc->c->n_etcd]);
		kbuf_reset(w.line);
		(void)curl_easy_setopt(h, CURLOPT_URL, url);
		(void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
		(void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, watch_data);
		(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
		(void)curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		(void)curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, watch_progress);
		(void)curl_easy_setopt(h, CURLOPT_XFERINFODATA, hc);
		(void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)HA_WATCH_STREAM_MS);
		(void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)hc->c->timeout_ms);
		CURLcode e = curl_easy_perform(h);
		if (e != CURLE_OK && e != CURLE_OPERATION_TIMEDOUT && !atomic_load(&hc->stop)) {
			kms_log_debug("etcd watch %s: %s", url, curl_easy_strerror(e));
			ep++;
			sleep_ms(hc, 500);
		}
	}
out:
	if (h != NULL)
		curl_easy_cleanup(h);
	curl_slist_free_all(hdr);
	kbuf_free(w.line);
	kbuf_free(w.v);
	free(w.m);
	return NULL;
}

/* ---- presence: <prefix>/<chain>/hosts/<host> under a lease; and the start-up sync ---- */

/* Moves the mark forward to the local state if the cluster is behind (new or wiped etcd). */
static int sync_local(struct ha_chain *hc, struct ha_client *cl)
{
	struct guard_mark *local = calloc(1, sizeof(*local));
	int moved = 0, r;
	if (local == NULL)
		return KMS_ERR_ALLOC;
	guard_last_mark(hc->g, local);
	r = ha_mark_forward(cl, hc->c, hc->cc->id, local, &moved, NULL);
	if (r == KMS_OK && moved)
		kms_log_warn("cluster mark of chain %s was behind this host's state: moved forward to "
			     "h/r/s=%lld/%d/%d (a new or wiped etcd?)",
			     hc->cc->id, (long long)local->hrs.height, local->hrs.round,
			     (int)local->hrs.step);
	if (r == KMS_OK) {
		atomic_store(&hc->synced, 1);
		cache_drop(hc); /* read again, linearizably */
	}
	kms_free_secret(local, sizeof(*local));
	return r;
}

static void *presence_main(void *arg)
{
	struct ha_chain *hc = arg;
	struct ha_client *cl = NULL;
	char key[600], val[512];
	int64_t lease = 0, started = (int64_t)time(NULL);
	if (ha_client_new(hc->c, &cl) != KMS_OK)
		return NULL;
	/* connect with room to spare, so the signing path finds warm connections */
	if (hc->c->timeout_ms < HA_CLI_TIMEOUT_MS)
		ha_client_set_timeout(cl, HA_CLI_TIMEOUT_MS);
	if (ha_client_share(cl, hc->share) != KMS_OK)
		kms_log_warn("etcd: presence client does not share connections");
	(void)snprintf(key, sizeof(key), "%s%s", hc->hosts_key, hc->host);
	while (!atomic_load(&hc->stop)) {
		struct guard_hrs last;
		int64_t ttl = 0;
		if (!atomic_load(&hc->synced) && sync_local(hc, cl) != KMS_OK)
			cluster_error(hc, KMS_ERR_SYSTEM);
		if (lease != 0 && (ha_lease_keepalive(cl, lease, &ttl) != KMS_OK || ttl <= 0))
			lease = 0;
		if (lease == 0 && ha_lease_grant(cl, HA_LEASE_TTL_S, &lease) != KMS_OK)
			lease = 0;
		guard_last(hc->g, &last);
		int n = snprintf(val, sizeof(val),
				 "{\"host\":\"%s\",\"pid\":%ld,\"started\":%lld,\"seen\":%lld,"
				 "\"last\":\"%lld/%d/%d\"}",
				 hc->host, (long)getpid(), (long long)started,
				 (long long)time(NULL), (long long)last.height, last.round,
				 (int)last.step);
		if (lease != 0 && n > 0 && (size_t)n < sizeof(val) &&
		    ha_put(cl, key, (const uint8_t *)val, (size_t)n, lease) != KMS_OK)
			lease = 0; /* grant a new one next time */
		sleep_ms(hc, HA_PRESENCE_PERIOD_MS);
	}
	ha_client_free(cl);
	return NULL;
}

int ha_chain_start(const struct cfg_chain *cc, struct guard *g, struct ha_chain **out)
{
	struct ha_chain *hc;
	int r = KMS_ERR_ALLOC;
	*out = NULL;
	if (cc->ha == NULL)
		return KMS_ERR_CONFIG;
	if ((hc = calloc(1, sizeof(*hc))) == NULL)
		return KMS_ERR_ALLOC;
	hc->cc = cc;
	hc->c = cc->ha;
	hc->g = g;
	(void)pthread_mutex_init(&hc->mu, NULL);
	ha_host_name(hc->c, hc->host, sizeof(hc->host));
	hc->val = kbuf_new(64 * 1024);
	hc->cur = kbuf_new(64 * 1024);
	hc->cache = calloc(1, sizeof(*hc->cache));
	hc->tmp = calloc(1, sizeof(*hc->tmp));
	if (hc->val == NULL || hc->cur == NULL || hc->cache == NULL || hc->tmp == NULL)
		goto fail;
	if ((r = ha_key_mark(hc->c, cc->id, hc->key, sizeof(hc->key))) != KMS_OK ||
	    (r = ha_key_hosts(hc->c, cc->id, hc->hosts_key, sizeof(hc->hosts_key))) != KMS_OK ||
	    (r = ha_share_new(&hc->share)) != KMS_OK || (r = ha_client_new(hc->c, &hc->cl)) != KMS_OK ||
	    (r = ha_client_share(hc->cl, hc->share)) != KMS_OK)
		goto fail;
	/* Best effort now; the presence thread retries until it has worked. */
	if (sync_local(hc, hc->cl) != KMS_OK)
		kms_log_warn("chain %s: etcd not reachable at start-up: every new signature is "
			     "refused until it is",
			     cc->id);
	guard_set_cluster(g, &g_ops, hc);
	if (pthread_create(&hc->watch_t, NULL, watch_main, hc) == 0)
		hc->watch_started = 1;
	if (pthread_create(&hc->pres_t, NULL, presence_main, hc) == 0)
		hc->pres_started = 1;
	kms_log_info("ha chain=%s host=%s etcd=%s (+%zu more) key=%s timeout_ms=%d", cc->id,
		     hc->host, hc->c->etcd[0], hc->c->n_etcd - 1, hc->key, hc->c->timeout_ms);
	*out = hc;
	return KMS_OK;
fail:
	hc->g = NULL;
	ha_chain_stop(hc);
	return r;
}

void ha_chain_stop(struct ha_chain *hc)
{
	if (hc == NULL)
		return;
	atomic_store(&hc->stop, 1);
	if (hc->watch_started)
		(void)pthread_join(hc->watch_t, NULL);
	if (hc->pres_started)
		(void)pthread_join(hc->pres_t, NULL);
	if (hc->g != NULL)
		guard_set_cluster(hc->g, NULL, NULL);
	ha_client_free(hc->cl);
	ha_share_free(hc->share);
	kbuf_free(hc->val);
	kbuf_free(hc->cur);
	if (hc->cache != NULL)
		kms_free_secret(hc->cache, sizeof(*hc->cache));
	if (hc->tmp != NULL)
		kms_free_secret(hc->tmp, sizeof(*hc->tmp));
	pthread_mutex_destroy(&hc->mu);
	free(hc);
}

/* ---- preflight (doctor, start) ---- */

int ha_preflight(const struct cfg_chain *cc, const struct guard_hrs *local, ha_report_fn report,
		 void *ctx)
{
	struct ha_client *cl = NULL;
	struct ha_member_status st[16];
	struct guard_mark *m = calloc(1, sizeof(*m));
	struct kbuf *v = kbuf_new(64 * 1024);
	char line[1024], key[512];
	int r, fails = 0;
	size_t n, up = 0;
	uint64_t leader = 0;

	if (m == NULL || v == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if ((r = ha_client_new(cc->ha, &cl)) == KMS_OK && cc->ha->timeout_ms < HA_CLI_TIMEOUT_MS)
		ha_client_set_timeout(cl, HA_CLI_TIMEOUT_MS); /* a check, not the signing path */
	if (r != KMS_OK) {
		(void)snprintf(line, sizeof(line), "ha for %s: etcd client: %s%s", cc->id,
			       kms_strerror(r),
			       r == KMS_ERR_PERM ? " (chmod 600 the ha.key file)" : "");
		report(ctx, HA_FIND_LOCAL, r, line);
		goto out;
	}
	n = ha_members(cl, st, sizeof(st) / sizeof(st[0]));
	for (size_t i = 0; i < n; i++) {
		if (st[i].ok) {
			up++;
			if (st[i].leader != 0)
				leader = st[i].leader;
			(void)snprintf(line, sizeof(line),
				       "ha for %s: etcd %.200s answers (%s, etcd %.30s, member %" PRIx64
				       ", leader %" PRIx64 ")",
				       cc->id, st[i].endpoint,
				       strncmp(st[i].endpoint, "https", 5) == 0 ?
					       (cc->ha->cert ? "TLS with client certificate" :
							       "TLS") :
					       "plain HTTP",
				       st[i].version, st[i].member_id, st[i].leader);
		} else {
			fails++;
			(void)snprintf(line, sizeof(line),
				       "ha for %s: etcd %.200s does not answer (%.300s): check the address, "
				       "TLS files (ca/cert/key) and that the member runs",
				       cc->id, st[i].endpoint, st[i].err);
		}
		report(ctx, st[i].ok ? HA_FIND_OK : HA_FIND_ETCD, st[i].ok ? KMS_OK : KMS_ERR_SYSTEM,
		       line);
	}
	kbuf_reset(v);
	struct ha_kv kv = { 0 };
	r = ha_key_mark(cc->ha, cc->id, key, sizeof(key));
	if (r == KMS_OK)
		r = ha_get(cl, key, v, &kv); /* linearizable: needs a leader and a quorum */
	if (r != KMS_OK) {
		fails++;
		(void)snprintf(line, sizeof(line),
			       "ha for %s: no quorum: a linearizable read fails (%s; %zu of %zu "
			       "endpoints answer%s): every new signature would be refused",
			       cc->id, kms_strerror(r), up, n, leader ? "" : ", no leader");
		report(ctx, HA_FIND_ETCD, r, line);
		goto out;
	}
	(void)snprintf(line, sizeof(line), "ha for %s: quorum (linearizable read of %.300s works)",
		       cc->id, key);
	report(ctx, HA_FIND_OK, KMS_OK, line);
	if (kv.present && (r = ha_mark_decode(kbuf_ptr(v), kbuf_len(v), m, NULL, 0, NULL)) != KMS_OK) {
		fails++;
		(void)snprintf(line, sizeof(line), "ha for %s: the cluster mark at %.300s does not parse",
			       cc->id, key);
		report(ctx, HA_FIND_ETCD, KMS_ERR_FORMAT, line);
		goto out;
	}
	if (local != NULL) {
		int behind = !kv.present || guard_hrs_cmp(&m->hrs, local) < 0;
		if (behind) {
			fails++;
			(void)snprintf(line, sizeof(line),
				       "ha for %s: the cluster mark (%s) is behind the local state "
				       "%lld/%d/%d: `p11kms start` moves it forward, or run `state "
				       "import`; never run signers against a wiped etcd",
				       cc->id, kv.present ? "older" : "absent",
				       (long long)local->height, local->round,
				       (int)local->step);
		} else {
			(void)snprintf(line, sizeof(line),
				       "ha for %s: cluster mark %lld/%d/%d is not behind the local "
				       "state %lld/%d/%d",
				       cc->id, (long long)m->hrs.height, m->hrs.round,
				       (int)m->hrs.step, (long long)local->height,
				       local->round, (int)local->step);
		}
		report(ctx, behind ? HA_FIND_ETCD : HA_FIND_OK, behind ? KMS_ERR_REFUSED : KMS_OK,
		       line);
	}
	r = KMS_OK;
out:
	ha_client_free(cl);
	kbuf_free(v);
	free(m);
	if (r == KMS_OK && fails > 0)
		r = KMS_ERR_SYSTEM;
	return r;
}
