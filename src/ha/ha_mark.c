/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster mark: its keys, its JSON value, and moving it forward (never backwards). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ha_int.h"
#include "p11kms/kms_log.h"

int ha_key_mark(const struct cfg_ha *c, const char *chain_id, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s/hwm", c->prefix, chain_id);
	return n > 0 && (size_t)n < cap ? KMS_OK : KMS_ERR_NO_SPACE;
}

int ha_key_hosts(const struct cfg_ha *c, const char *chain_id, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s/hosts/", c->prefix, chain_id);
	return n > 0 && (size_t)n < cap ? KMS_OK : KMS_ERR_NO_SPACE;
}

void ha_host_name(const struct cfg_ha *c, char *out, size_t cap)
{
	if (c != NULL && c->host != NULL) {
		(void)snprintf(out, cap, "%s", c->host);
		return;
	}
	if (gethostname(out, cap) != 0 || out[0] == '\0')
		(void)snprintf(out, cap, "unknown");
	out[cap - 1] = '\0';
}

int ha_mark_encode(const struct guard_mark *m, const char *host, struct kbuf *out)
{
	char h[32];
	json_t *o = json_object();
	int r = KMS_ERR_ALLOC;
	(void)snprintf(h, sizeof(h), "%" PRId64, m->hrs.height);
	if (o == NULL || json_object_set_new(o, "v", json_integer(1)) != 0 ||
	    json_object_set_new(o, "height", json_string(h)) != 0 ||
	    json_object_set_new(o, "round", json_integer(m->hrs.round)) != 0 ||
	    json_object_set_new(o, "step", json_integer((int)m->hrs.step)) != 0 ||
	    json_object_set_new(o, "at", json_integer((json_int_t)time(NULL))) != 0)
		goto out;
	if (m->sign_bytes_len > 0 && m->has_sig &&
	    (json_object_set_new(o, "sign_bytes",
				 ha_json_b64(m->sign_bytes, m->sign_bytes_len)) != 0 ||
	     json_object_set_new(o, "signature", ha_json_b64(m->signature, GUARD_SIG_LEN)) != 0))
		goto out;
	if (host != NULL && json_object_set_new(o, "host", json_string(host)) != 0)
		goto out;
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (s != NULL) {
		r = kbuf_put(out, s, strlen(s));
		free(s);
	}
out:
	json_decref(o);
	return r;
}

int ha_mark_decode(const uint8_t *p, size_t n, struct guard_mark *m, char *host, size_t host_cap,
		   int64_t *at)
{
	json_error_t je;
	json_t *o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je);
	struct kbuf *b = kbuf_new(GUARD_MAX_SIGN_BYTES);
	int r = KMS_ERR_FORMAT;
	memset(m, 0, sizeof(*m));
	if (host != NULL && host_cap > 0)
		host[0] = '\0';
	if (at != NULL)
		*at = 0;
	if (b == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if (!json_is_object(o) || ha_json_i64(o, "v") != 1)
		goto out;
	const json_t *rd = json_object_get(o, "round"), *st = json_object_get(o, "step");
	m->hrs.height = ha_json_i64(o, "height");
	if (!json_is_integer(rd) || !json_is_integer(st) || m->hrs.height < 0 ||
	    json_integer_value(rd) < 0 || json_integer_value(rd) > INT32_MAX ||
	    json_integer_value(st) < 0 || json_integer_value(st) > GUARD_STEP_PRECOMMIT)
		goto out;
	m->hrs.round = (int32_t)json_integer_value(rd);
	m->hrs.step = (enum guard_step)json_integer_value(st);
	if (json_object_get(o, "sign_bytes") != NULL) {
		if (ha_json_unb64(o, "sign_bytes", b) != KMS_OK || kbuf_len(b) == 0 ||
		    kbuf_len(b) > GUARD_MAX_SIGN_BYTES)
			goto out;
		memcpy(m->sign_bytes, kbuf_ptr(b), kbuf_len(b));
		m->sign_bytes_len = kbuf_len(b);
		kbuf_reset(b);
		if (ha_json_unb64(o, "signature", b) != KMS_OK || kbuf_len(b) != GUARD_SIG_LEN)
			goto out;
		memcpy(m->signature, kbuf_ptr(b), GUARD_SIG_LEN);
		m->has_sig = 1;
	}
	const json_t *hs = json_object_get(o, "host");
	if (host != NULL && json_is_string(hs))
		(void)snprintf(host, host_cap, "%s", json_string_value(hs));
	if (at != NULL)
		*at = ha_json_i64(o, "at");
	m->present = 1;
	r = KMS_OK;
out:
	if (r == KMS_ERR_FORMAT)
		kms_log_warn("the cluster mark in etcd does not parse (not written by p11kms?)");
	json_decref(o);
	kbuf_free(b);
	return r;
}

int ha_mark_forward(struct ha_client *cl, const struct cfg_ha *c, const char *chain_id,
		    const struct guard_mark *m, int *moved, struct guard_mark *cluster)
{
	char key[512], host[64];
	struct kbuf *cur = kbuf_new(64 * 1024), *val = kbuf_new(64 * 1024);
	struct guard_mark *seen = calloc(1, sizeof(*seen));
	struct ha_kv kv;
	int r;
	*moved = 0;
	if (cur == NULL || val == NULL || seen == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	ha_host_name(c, host, sizeof(host));
	if ((r = ha_key_mark(c, chain_id, key, sizeof(key))) != KMS_OK ||
	    (r = ha_mark_encode(m, host, val)) != KMS_OK || (r = ha_get(cl, key, cur, &kv)) != KMS_OK)
		goto out;
	for (int round = 0; round < 8; round++) {
		int ok = 0;
		int64_t nrev;
		if (kv.present) {
			if ((r = ha_mark_decode(kbuf_ptr(cur), kbuf_len(cur), seen, NULL, 0, NULL)) !=
			    KMS_OK)
				goto out;
			if (guard_hrs_cmp(&m->hrs, &seen->hrs) <= 0) {
				r = KMS_OK; /* at or past m already: never backwards */
				goto out;
			}
		}
		kbuf_reset(cur);
		if ((r = ha_cas(cl, key, kv.present ? kv.mod_revision : 0, kbuf_ptr(val),
				kbuf_len(val), &ok, &nrev, cur, &kv)) != KMS_OK)
			goto out;
		if (ok) {
			*moved = 1;
			*seen = *m;
			goto out;
		}
	}
	r = KMS_ERR_TIMEOUT; /* the mark kept moving */
out:
	if (cluster != NULL && seen != NULL)
		*cluster = *seen;
	kbuf_free(cur);
	kbuf_free(val);
	if (seen != NULL)
		kms_free_secret(seen, sizeof(*seen));
	return r;
}
