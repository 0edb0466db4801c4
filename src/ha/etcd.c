/* SPDX-License-Identifier: Apache-2.0 */
/* The etcd v3 JSON gateway client: libcurl (keep-alive, TLS client certs, failover) + jansson. */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ha_int.h"
#include "p11kms/dfile.h"
#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

/* The largest answer accepted (a mark is < 12 KiB; a host list a few KiB). */
#define HA_MAX_REPLY (1024 * 1024)

struct ha_client {
	CURL *curl;
	const struct cfg_ha *c;
	size_t cur; /* the endpoint that answered last: tried first */
	int timeout_ms; /* c->timeout_ms, or an operator command's longer bound */
	struct kbuf *reply;
	char errbuf[CURL_ERROR_SIZE];
	char last_err[320]; /* why the last call failed (endpoint: reason) */
};

int ha_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		kms_log_err("curl_global_init failed");
		return KMS_ERR_SYSTEM;
	}
	return KMS_OK;
}

int64_t ha_now_ms(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct kbuf *b = ctx;
	size_t len = size * n;
	if (kbuf_len(b) + len > HA_MAX_REPLY || kbuf_put(b, p, len) != KMS_OK)
		return 0; /* aborts the transfer */
	return len;
}

/* The curl options every handle shares: TLS files, keep-alive, no signals. */
int ha_curl_setup(CURL *h, const struct cfg_ha *c, char *errbuf)
{
	CURLcode e = CURLE_OK;
#define SET(opt, val)                                             \
	do {                                                      \
		if (e == CURLE_OK)                                \
			e = curl_easy_setopt(h, opt, val);        \
	} while (0)
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_NODELAY, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	if (c->ca != NULL)
		SET(CURLOPT_CAINFO, c->ca);
	if (c->cert != NULL) {
		SET(CURLOPT_SSLCERT, c->cert);
		SET(CURLOPT_SSLKEY, c->key);
	}
#undef SET
	if (e != CURLE_OK) {
		kms_log_err("etcd client: curl setup failed: %s", curl_easy_strerror(e));
		return KMS_ERR_SYSTEM;
	}
	return KMS_OK;
}

int ha_client_new(const struct cfg_ha *c, struct ha_client **out)
{
	struct ha_client *cl;
	int r;
	*out = NULL;
	if (c == NULL || c->n_etcd == 0)
		return KMS_ERR_CONFIG;
	if (c->key != NULL && (r = dfile_check_private(c->key)) != KMS_OK) {
		kms_log_err("etcd client key %s: %s", c->key, kms_strerror(r));
		return r;
	}
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return KMS_ERR_ALLOC;
	cl->c = c;
	cl->timeout_ms = c->timeout_ms;
	cl->reply = kbuf_new(HA_MAX_REPLY);
	cl->curl = curl_easy_init();
	if (cl->reply == NULL || cl->curl == NULL) {
		ha_client_free(cl);
		return KMS_ERR_ALLOC;
	}
	if ((r = ha_curl_setup(cl->curl, c, cl->errbuf)) != KMS_OK) {
		ha_client_free(cl);
		return r;
	}
	*out = cl;
	return KMS_OK;
}

/* ---- a connection pool shared by a chain's clients (struct ha_share) ---- */

struct ha_share {
	CURLSH *sh;
	pthread_mutex_t mu[CURL_LOCK_DATA_LAST];
};

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ctx)
{
	(void)h;
	(void)a;
	pthread_mutex_lock(&((struct ha_share *)ctx)->mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ctx)
{
	(void)h;
	pthread_mutex_unlock(&((struct ha_share *)ctx)->mu[d]);
}

int ha_share_new(struct ha_share **out)
{
	struct ha_share *s = calloc(1, sizeof(*s));
	*out = NULL;
	if (s == NULL || (s->sh = curl_share_init()) == NULL) {
		free(s);
		return KMS_ERR_ALLOC;
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		(void)pthread_mutex_init(&s->mu[i], NULL);
	if (curl_share_setopt(s->sh, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
	    curl_share_setopt(s->sh, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
	    curl_share_setopt(s->sh, CURLSHOPT_USERDATA, s) != CURLSHE_OK ||
	    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
	    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
	    curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
		ha_share_free(s);
		return KMS_ERR_SYSTEM;
	}
	*out = s;
	return KMS_OK;
}

void ha_share_free(struct ha_share *s)
{
	if (s == NULL)
		return;
	(void)curl_share_cleanup(s->sh);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s->mu[i]);
	free(s);
}

int ha_client_share(struct ha_client *cl, struct ha_share *s)
{
	return curl_easy_setopt(cl->curl, CURLOPT_SHARE, s->sh) == CURLE_OK ? KMS_OK :
									       KMS_ERR_SYSTEM;
}

void ha_client_set_timeout(struct ha_client *cl, int timeout_ms)
{
	cl->timeout_ms = timeout_ms;
}

void ha_client_free(struct ha_client *cl)
{
	if (cl == NULL)
		return;
	if (cl->curl != NULL)
		curl_easy_cleanup(cl->curl);
	kbuf_free(cl->reply);
	free(cl);
}

/* A gateway int64 ("123" or 123); 0 when absent (the gateway omits zero values). */
int64_t ha_json_i64(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_string(v)) {
		char *end = NULL;
		long long x = strtoll(json_string_value(v), &end, 10);
		return end != NULL && *end == '\0' ? (int64_t)x : 0;
	}
	return 0;
}

/* Base64 of n bytes as a new JSON string. */
json_t *ha_json_b64(const uint8_t *p, size_t n)
{
	size_t cap = (n + 2) / 3 * 4 + 1;
	char *s = malloc(cap);
	json_t *j = NULL;
	if (s != NULL && enc_base64_encode(p, n, s, cap) == KMS_OK)
		j = json_string(s);
	free(s);
	return j;
}

/* Decodes a base64 JSON string member into out (appended). Absent: nothing appended. */
int ha_json_unb64(const json_t *o, const char *name, struct kbuf *out)
{
	const json_t *v = json_object_get(o, name);
	size_t n = 0;
	if (v == NULL)
		return KMS_OK;
	if (!json_is_string(v))
		return KMS_ERR_FORMAT;
	size_t len = json_string_length(v);
	uint8_t *tmp = malloc(len / 4 * 3 + 3);
	if (tmp == NULL)
		return KMS_ERR_ALLOC;
	int r = enc_base64_decode(json_string_value(v), len, tmp, len / 4 * 3 + 3, &n);
	if (r == KMS_OK)
		r = kbuf_put(out, tmp, n);
	free(tmp);
	return r;
}

/*
 * POSTs req to path on the endpoints, starting with the last good one, until
 * one answers or timeout_ms has passed. Any endpoint failure (refused, TLS,
 * timeout, reset, an HTTP error) moves on to the next endpoint: even for a
 * transaction this is safe, because every write we make is a compare-and-swap
 * (docs/ha.md). *resp is the parsed answer (caller json_decref()s).
 */
static int call(struct ha_client *cl, const char *path, json_t *req, json_t **resp)
{
	const struct cfg_ha *c = cl->c;
	char *body = json_dumps(req, JSON_COMPACT);
	int64_t deadline = ha_now_ms() + cl->timeout_ms;
	int r = KMS_ERR_SYSTEM, timed_out = 0;
	char last[320] = "";
	struct curl_slist *hdr = NULL;

	*resp = NULL;
	if (body == NULL)
		return KMS_ERR_ALLOC;
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	for (size_t tries = 0; tries < c->n_etcd * 2; tries++) {
		int64_t left = deadline - ha_now_ms();
		size_t ep = (cl->cur + tries) % c->n_etcd;
		char url[512];
		long status = 0;
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		(void)snprintf(url, sizeof(url), "%s%s", c->etcd[ep], path);
		kbuf_reset(cl->reply);
		cl->errbuf[0] = '\0';
		(void)curl_easy_setopt(cl->curl, CURLOPT_URL, url);
		(void)curl_easy_setopt(cl->curl, CURLOPT_HTTPHEADER, hdr);
		(void)curl_easy_setopt(cl->curl, CURLOPT_POSTFIELDS, body);
		(void)curl_easy_setopt(cl->curl, CURLOPT_WRITEFUNCTION, on_data);
		(void)curl_easy_setopt(cl->curl, CURLOPT_WRITEDATA, cl->reply);
		(void)curl_easy_setopt(cl->curl, CURLOPT_TIMEOUT_MS, (long)left);
		(void)curl_easy_setopt(cl->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)left);
		CURLcode e = curl_easy_perform(cl->curl);
		(void)curl_easy_getinfo(cl->curl, CURLINFO_RESPONSE_CODE, &status);
		if (e != CURLE_OK) {
			(void)snprintf(last, sizeof(last), "%s: %s", c->etcd[ep],
				       cl->errbuf[0] ? cl->errbuf : curl_easy_strerror(e));
			if (e == CURLE_OPERATION_TIMEDOUT)
				timed_out = 1;
			continue;
		}
		json_error_t je;
		json_t *j = json_loadb((const char *)kbuf_ptr(cl->reply), kbuf_len(cl->reply),
				       JSON_REJECT_DUPLICATES, &je);
		const json_t *err = j != NULL ? json_object_get(j, "error") : NULL;
		if (status != 200 || j == NULL || err != NULL) {
			(void)snprintf(last, sizeof(last), "%s: HTTP %ld%s%s", c->etcd[ep], status,
				       json_is_string(err) ? ": " : "",
				       json_is_string(err) ? json_string_value(err) : "");
			json_decref(j);
			timed_out = 0;
			continue;
		}
		cl->cur = ep;
		*resp = j;
		r = KMS_OK;
		goto out;
	}
	r = timed_out ? KMS_ERR_TIMEOUT : KMS_ERR_SYSTEM;
	(void)snprintf(cl->last_err, sizeof(cl->last_err), "%s", last[0] ? last : "no time left");
	kms_log_warn("etcd %s failed within %d ms: %s", path, cl->timeout_ms,
		     last[0] ? last : "no time left");
	cl->cur = (cl->cur + 1) % c->n_etcd; /* the next call starts elsewhere */
out:
	curl_slist_free_all(hdr);
	free(body);
	return r;
}

/* Reads kvs[0] of a range response into val/kv. */
static int take_kv(const json_t *range, struct kbuf *val, struct ha_kv *kv)
{
	const json_t *kvs = json_object_get(range, "kvs");
	memset(kv, 0, sizeof(*kv));
	if (kvs == NULL || json_array_size(kvs) == 0)
		return KMS_OK;
	const json_t *e = json_array_get(kvs, 0);
	if (!json_is_object(e))
		return KMS_ERR_FORMAT;
	kv->present = 1;
	kv->mod_revision = ha_json_i64(e, "mod_revision");
	kv->lease = ha_json_i64(e, "lease");
	return ha_json_unb64(e, "value", val);
}

static int put_key(json_t *o, const char *name, const char *key)
{
	json_t *k = ha_json_b64((const uint8_t *)key, strlen(key));
	if (k == NULL || json_object_set_new(o, name, k) != 0)
		return KMS_ERR_ALLOC;
	return KMS_OK;
}

static int put_i64(json_t *o, const char *name, int64_t v)
{
	char s[32];
	(void)snprintf(s, sizeof(s), "%" PRId64, v);
	return json_object_set_new(o, name, json_string(s)) == 0 ? KMS_OK : KMS_ERR_ALLOC;
}

int ha_get(struct ha_client *cl, const char *key, struct kbuf *val, struct ha_kv *kv)
{
	json_t *req = json_object(), *resp = NULL;
	int r = req != NULL ? put_key(req, "key", key) : KMS_ERR_ALLOC;
	memset(kv, 0, sizeof(*kv));
	if (r == KMS_OK)
		r = call(cl, "/v3/kv/range", req, &resp);
	if (r == KMS_OK && (r = take_kv(resp, val, kv)) != KMS_OK)
		kms_log_warn("etcd range %s: unexpected answer", key);
	json_decref(req);
	json_decref(resp);
	return r;
}

int ha_cas(struct ha_client *cl, const char *key, int64_t cmp_rev, const uint8_t *val, size_t len,
	   int *succeeded, int64_t *new_rev, struct kbuf *cur, struct ha_kv *cur_kv)
{
	json_t *req = json_object(), *cmp = json_object(), *put = json_object(),
	       *rng = json_object(), *resp = NULL;
	json_t *v = ha_json_b64(val, len);
	int r = KMS_ERR_ALLOC;

	*succeeded = 0;
	*new_rev = 0;
	memset(cur_kv, 0, sizeof(*cur_kv));
	if (req == NULL || cmp == NULL || put == NULL || rng == NULL || v == NULL)
		goto out;
	if (put_key(cmp, "key", key) != KMS_OK || put_i64(cmp, "mod_revision", cmp_rev) != KMS_OK ||
	    json_object_set_new(cmp, "result", json_string("EQUAL")) != 0 ||
	    json_object_set_new(cmp, "target", json_string("MOD")) != 0 ||
	    put_key(put, "key", key) != KMS_OK || json_object_set_new(put, "value", v) != 0)
		goto out;
	v = NULL;
	if (put_key(rng, "key", key) != KMS_OK ||
	    json_object_set_new(req, "compare", json_pack("[o]", cmp)) != 0 ||
	    json_object_set_new(req, "success", json_pack("[{s:o}]", "request_put", put)) != 0 ||
	    json_object_set_new(req, "failure", json_pack("[{s:o}]", "request_range", rng)) != 0) {
		cmp = put = rng = NULL; /* json_pack "o" took them, even on failure */
		goto out;
	}
	cmp = put = rng = NULL;
	if ((r = call(cl, "/v3/kv/txn", req, &resp)) != KMS_OK)
		goto out;
	*succeeded = json_is_true(json_object_get(resp, "succeeded"));
	if (*succeeded) {
		/* our put is the transaction: the key's mod_revision is the header revision */
		*new_rev = ha_json_i64(json_object_get(resp, "header"), "revision");
		r = *new_rev > 0 ? KMS_OK : KMS_ERR_FORMAT;
		goto out;
	}
	const json_t *rs = json_array_get(json_object_get(resp, "responses"), 0);
	const json_t *rr = json_object_get(rs, "response_range");
	r = rr != NULL ? take_kv(rr, cur, cur_kv) : KMS_ERR_FORMAT;
out:
	if (r == KMS_ERR_FORMAT)
		kms_log_warn("etcd txn %s: unexpected answer", key);
	json_decref(v);
	json_decref(cmp);
	json_decref(put);
	json_decref(rng);
	json_decref(req);
	json_decref(resp);
	return r;
}

int ha_list(struct ha_client *cl, const char *prefix, ha_each_fn fn, void *ctx)
{
	json_t *req = json_object(), *resp = NULL;
	size_t n = strlen(prefix);
	char *end = strdup(prefix);
	struct kbuf *val = kbuf_new(HA_MAX_REPLY);
	struct kbuf *key = kbuf_new(4096);
	int r = KMS_ERR_ALLOC;
	if (req == NULL || end == NULL || val == NULL || key == NULL || n == 0)
		goto out;
	end[n - 1] = (char)(end[n - 1] + 1); /* the range [prefix, prefix+1) */
	if (put_key(req, "key", prefix) != KMS_OK || put_key(req, "range_end", end) != KMS_OK)
		goto out;
	if ((r = call(cl, "/v3/kv/range", req, &resp)) != KMS_OK)
		goto out;
	const json_t *kvs = json_object_get(resp, "kvs");
	for (size_t i = 0; i < json_array_size(kvs); i++) {
		const json_t *e = json_array_get(kvs, i);
		struct ha_kv kv = { 1, ha_json_i64(e, "mod_revision"), ha_json_i64(e, "lease") };
		kbuf_reset(val);
		kbuf_reset(key);
		if ((r = ha_json_unb64(e, "value", val)) != KMS_OK ||
		    (r = ha_json_unb64(e, "key", key)) != KMS_OK || (r = kbuf_put_u8(key, 0)) != KMS_OK)
			goto out;
		if (fn(ctx, (const char *)kbuf_ptr(key), kbuf_ptr(val), kbuf_len(val), &kv) != 0)
			break;
	}
	r = KMS_OK;
out:
	json_decref(req);
	json_decref(resp);
	free(end);
	kbuf_free(val);
	kbuf_free(key);
	return r;
}

/* POSTs {name: v} to path; *resp is the answer (caller json_decref()s). */
static int call_with_i64(struct ha_client *cl, const char *path, const char *name, int64_t v,
			 json_t **resp)
{
	json_t *req = json_object();
	int r = req != NULL ? put_i64(req, name, v) : KMS_ERR_ALLOC;
	*resp = NULL;
	if (r == KMS_OK)
		r = call(cl, path, req, resp);
	json_decref(req);
	return r;
}

int ha_lease_grant(struct ha_client *cl, int ttl, int64_t *id)
{
	json_t *resp = NULL;
	int r = call_with_i64(cl, "/v3/lease/grant", "TTL", ttl, &resp);
	*id = r == KMS_OK ? ha_json_i64(resp, "ID") : 0;
	if (r == KMS_OK && *id == 0)
		r = KMS_ERR_FORMAT;
	json_decref(resp);
	return r;
}

int ha_lease_keepalive(struct ha_client *cl, int64_t id, int64_t *ttl)
{
	json_t *resp = NULL;
	int r = call_with_i64(cl, "/v3/lease/keepalive", "ID", id, &resp);
	/* a stream of one answer: {"result":{..., "TTL":"10"}}; TTL 0: the lease expired */
	*ttl = r == KMS_OK ? ha_json_i64(json_object_get(resp, "result"), "TTL") : 0;
	json_decref(resp);
	return r;
}

int ha_put(struct ha_client *cl, const char *key, const uint8_t *val, size_t len, int64_t lease)
{
	json_t *req = json_object(), *resp = NULL;
	json_t *v = ha_json_b64(val, len);
	int r = KMS_ERR_ALLOC;
	if (req != NULL && v != NULL && put_key(req, "key", key) == KMS_OK &&
	    json_object_set_new(req, "value", v) == 0) {
		v = NULL;
		r = lease != 0 ? put_i64(req, "lease", lease) : KMS_OK;
		if (r == KMS_OK)
			r = call(cl, "/v3/kv/put", req, &resp);
	}
	json_decref(v);
	json_decref(req);
	json_decref(resp);
	return r;
}

size_t ha_members(struct ha_client *cl, struct ha_member_status *st, size_t cap)
{
	const struct cfg_ha *c = cl->c;
	size_t n = 0;
	for (size_t i = 0; i < c->n_etcd && n < cap; i++, n++) {
		/* one endpoint at a time: a client restricted to endpoint i */
		struct cfg_ha one = *c;
		struct ha_client sub = *cl;
		json_t *req = json_object(), *resp = NULL;
		struct ha_member_status *m = &st[n];
		memset(m, 0, sizeof(*m));
		(void)snprintf(m->endpoint, sizeof(m->endpoint), "%s", c->etcd[i]);
		one.etcd = &c->etcd[i];
		one.n_etcd = 1;
		sub.c = &one;
		sub.cur = 0;
		int r = req != NULL ? call(&sub, "/v3/maintenance/status", req, &resp) : KMS_ERR_ALLOC;
		if (r == KMS_OK) {
			const json_t *h = json_object_get(resp, "header");
			const json_t *ver = json_object_get(resp, "version");
			m->ok = 1;
			m->member_id = (uint64_t)ha_json_i64(h, "member_id");
			/* ids are uint64 written as decimal strings: re-read unsigned */
			const json_t *mid = json_object_get(h, "member_id");
			const json_t *lid = json_object_get(resp, "leader");
			if (json_is_string(mid))
				m->member_id = strtoull(json_string_value(mid), NULL, 10);
			if (json_is_string(lid))
				m->leader = strtoull(json_string_value(lid), NULL, 10);
			m->raft_term = ha_json_i64(resp, "raftTerm");
			m->raft_index = ha_json_i64(resp, "raftIndex");
			(void)snprintf(m->version, sizeof(m->version), "%s",
				       json_is_string(ver) ? json_string_value(ver) : "?");
		} else {
			(void)snprintf(m->err, sizeof(m->err), "%s: %s", kms_strerror(r),
				       sub.last_err);
		}
		json_decref(req);
		json_decref(resp);
	}
	return n;
}
