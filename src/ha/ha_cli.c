/* SPDX-License-Identifier: Apache-2.0 */
/* What the operator commands show and do with the cluster: state init/import/show, ha status. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "ha_int.h"
#include "p11kms/enc.h"

static int client(const struct cfg_chain *cc, struct ha_client **cl)
{
	int r = ha_global_init();
	if (r == KMS_OK)
		r = ha_client_new(cc->ha, cl);
	if (r == KMS_OK && cc->ha->timeout_ms < HA_CLI_TIMEOUT_MS)
		ha_client_set_timeout(*cl, HA_CLI_TIMEOUT_MS);
	return r;
}

int ha_state_forward(const struct cfg_chain *cc, struct kbuf *out)
{
	struct ha_client *cl = NULL;
	struct guard *g = NULL;
	struct guard_mark *local = calloc(1, sizeof(*local)), *cm = calloc(1, sizeof(*cm));
	struct guard_opts go = { .allow_volatile_state = cc->allow_volatile_state };
	int moved = 0, r;
	if (local == NULL || cm == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if ((r = guard_open_opts(cc->state_file, cc->id, &go, &g)) != KMS_OK)
		goto out;
	guard_last_mark(g, local);
	if ((r = client(cc, &cl)) != KMS_OK ||
	    (r = ha_mark_forward(cl, cc->ha, cc->id, local, &moved, cm)) != KMS_OK)
		goto out;
	if (moved)
		r = kbuf_putf(out, "Cluster mark of %s moved forward to %lld/%d/%s (etcd %s)\n", cc->id,
			 (long long)local->hrs.height, local->hrs.round,
			 guard_step_name(local->hrs.step), cc->ha->etcd[0]);
	else
		r = kbuf_putf(out,
			 "Cluster mark of %s left at %lld/%d/%s: it is not behind %lld/%d/%s "
			 "(never moved backwards)\n",
			 cc->id, (long long)cm->hrs.height, cm->hrs.round,
			 guard_step_name(cm->hrs.step), (long long)local->hrs.height,
			 local->hrs.round, guard_step_name(local->hrs.step));
out:
	guard_free(g);
	ha_client_free(cl);
	free(local);
	free(cm);
	return r;
}

/* Appends the mark described, or "none yet". */
static int describe_mark(const struct cfg_chain *cc, struct ha_client *cl, struct kbuf *out)
{
	char key[512], host[64], hex[17] = "";
	struct kbuf *v = kbuf_new(64 * 1024);
	struct guard_mark *m = calloc(1, sizeof(*m));
	struct ha_kv kv;
	int64_t at = 0;
	int r;
	if (v == NULL || m == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if ((r = ha_key_mark(cc->ha, cc->id, key, sizeof(key))) != KMS_OK ||
	    (r = ha_get(cl, key, v, &kv)) != KMS_OK)
		goto out;
	if (!kv.present) {
		r = kbuf_putf(out, "cluster mark:  none yet at %s (nothing signed through the cluster)\n",
			 key);
		goto out;
	}
	if ((r = ha_mark_decode(kbuf_ptr(v), kbuf_len(v), m, host, sizeof(host), &at)) != KMS_OK)
		goto out;
	if (m->sign_bytes_len > 0) {
		uint8_t d[32];
		(void)SHA256(m->sign_bytes, m->sign_bytes_len, d);
		if (enc_hex_encode(d, 8, hex, sizeof(hex)) != KMS_OK)
			hex[0] = '\0';
	}
	char when[64] = "?";
	time_t t = (time_t)at;
	struct tm tm;
	if (at > 0 && gmtime_r(&t, &tm) != NULL)
		(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	r = kbuf_putf(out,
		 "cluster mark:  %lld/%d/%s  host=%s  written=%s  sign bytes=%zu (sha256 %s...)  "
		 "signature=%s  key=%s mod_revision=%" PRId64 "\n",
		 (long long)m->hrs.height, m->hrs.round, guard_step_name(m->hrs.step),
		 host[0] ? host : "?", when, m->sign_bytes_len, hex[0] ? hex : "-",
		 m->has_sig ? "yes" : "no", key, kv.mod_revision);
out:
	kbuf_free(v);
	free(m);
	return r;
}

int ha_mark_show(const struct cfg_chain *cc, struct kbuf *out)
{
	struct ha_client *cl = NULL;
	int r = client(cc, &cl);
	if (r == KMS_OK)
		r = describe_mark(cc, cl, out);
	if (r != KMS_OK)
		r = kbuf_putf(out, "cluster mark:  unavailable: %s (etcd %s, ...)\n", kms_strerror(r),
			 cc->ha->etcd[0]) == KMS_OK ?
			    r :
			    KMS_ERR_NO_SPACE;
	ha_client_free(cl);
	return r;
}

struct host_list {
	struct kbuf *out;
	size_t n;
	size_t prefix_len;
};

static int one_host(void *ctx, const char *key, const uint8_t *val, size_t len,
		    const struct ha_kv *kv)
{
	struct host_list *hl = ctx;
	json_error_t je;
	json_t *o = json_loadb((const char *)val, len, 0, &je);
	const json_t *last = json_object_get(o, "last");
	int64_t seen = ha_json_i64(o, "seen"), now = (int64_t)time(NULL);
	(void)kv;
	hl->n++;
	int r = kbuf_putf(hl->out, "  %-20s pid %-8" PRId64 " last released %-14s seen %" PRId64 " s ago\n",
		     key + hl->prefix_len, ha_json_i64(o, "pid"),
		     json_is_string(last) ? json_string_value(last) : "?",
		     seen > 0 && now >= seen ? now - seen : (int64_t)-1);
	json_decref(o);
	return r == KMS_OK ? 0 : 1;
}

int ha_status(const struct cfg_chain *cc, struct kbuf *out)
{
	struct ha_client *cl = NULL;
	struct ha_member_status st[16];
	char prefix[512];
	int r = client(cc, &cl);
	if (r != KMS_OK)
		goto out;
	size_t n = ha_members(cl, st, sizeof(st) / sizeof(st[0]));
	if ((r = kbuf_putf(out, "chain %s: etcd prefix %s, timeout_ms %d\n", cc->id, cc->ha->prefix,
		      cc->ha->timeout_ms)) != KMS_OK)
		goto out;
	for (size_t i = 0; i < n && r == KMS_OK; i++) {
		if (st[i].ok)
			r = kbuf_putf(out, "  member %-32s up    etcd %s  id %" PRIx64 "%s  raft term %" PRId64 "\n",
				 st[i].endpoint, st[i].version, st[i].member_id,
				 st[i].member_id == st[i].leader ? " (leader)" : "", st[i].raft_term);
		else
			r = kbuf_putf(out, "  member %-32s DOWN  %s\n", st[i].endpoint, st[i].err);
	}
	if (r != KMS_OK || (r = describe_mark(cc, cl, out)) != KMS_OK)
		goto out;
	struct host_list hl = { out, 0, 0 };
	if ((r = ha_key_hosts(cc->ha, cc->id, prefix, sizeof(prefix))) != KMS_OK ||
	    (r = kbuf_putf(out, "hosts seen in the last ~10 s (%s*):\n", prefix)) != KMS_OK)
		goto out;
	hl.prefix_len = strlen(prefix);
	if ((r = ha_list(cl, prefix, one_host, &hl)) == KMS_OK && hl.n == 0)
		r = kbuf_putf(out, "  none\n");
out:
	ha_client_free(cl);
	return r;
}
