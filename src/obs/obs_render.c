/* SPDX-License-Identifier: Apache-2.0 */
/* The registry's views: Prometheus text, /healthz and /readyz JSON, the systemd STATUS line. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "obs_int.h"

#ifndef P11KMS_VERSION
#define P11KMS_VERSION "unknown"
#endif
#ifndef P11KMS_P11KIT_VERSION
#define P11KMS_P11KIT_VERSION "unknown"
#endif

/* printf output is appended with kbuf_putf; label values never go through it (see
 * put_label). */

/* name="value" with the exposition format's escapes (backslash, quote, newline). */
static int put_label(struct kbuf *b, const char *sep, const char *name, const char *v)
{
	int r = kbuf_putf(b, "%s%s=\"", sep, name);
	for (const char *p = v; r == KMS_OK && *p != '\0'; p++) {
		if (*p == '\\' || *p == '"')
			r = kbuf_putf(b, "\\%c", *p);
		else if (*p == '\n')
			r = kbuf_putf(b, "\\n");
		else
			r = kbuf_put_u8(b, (uint8_t)*p);
	}
	return r == KMS_OK ? kbuf_put_u8(b, '"') : r;
}

static int family(struct kbuf *b, const char *name, const char *type, const char *help)
{
	return kbuf_putf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: name{l1="v1",l2="v2"} value (labels NULL-terminated name/value pairs). */
static int sample(struct kbuf *b, const char *name, const char *const *labels, const char *value)
{
	int r = kbuf_putf(b, "%s", name);
	for (size_t i = 0; r == KMS_OK && labels != NULL && labels[i] != NULL; i += 2)
		r = put_label(b, i == 0 ? "{" : ",", labels[i], labels[i + 1]);
	if (r == KMS_OK && labels != NULL && labels[0] != NULL)
		r = kbuf_put_u8(b, '}');
	return r == KMS_OK ? kbuf_putf(b, " %s\n", value) : r;
}

static int sample_u(struct kbuf *b, const char *name, const char *const *labels, uint64_t v)
{
	char s[32];
	(void)snprintf(s, sizeof(s), "%" PRIu64, v);
	return sample(b, name, labels, s);
}

static int sample_i(struct kbuf *b, const char *name, const char *const *labels, int64_t v)
{
	char s[32];
	(void)snprintf(s, sizeof(s), "%" PRId64, v);
	return sample(b, name, labels, s);
}

static int sample_f(struct kbuf *b, const char *name, const char *const *labels, double v)
{
	char s[48];
	(void)snprintf(s, sizeof(s), "%.9g", v);
	return sample(b, name, labels, s);
}

/* Unix time in seconds with milliseconds (%g would round it to 10 s). */
static int sample_time(struct kbuf *b, const char *name, const char *const *labels, int64_t ns)
{
	char s[48];
	(void)snprintf(s, sizeof(s), "%" PRId64 ".%03d", ns / 1000000000,
		       (int)((ns % 1000000000) / 1000000));
	return sample(b, name, labels, s);
}

static uint64_t ld(obs_ctr *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/*
 * name_bucket (cumulative, le=...), name_sum (seconds), name_count. The
 * count is the +Inf bucket by construction, so a scrape is self-consistent
 * even while observations land.
 */
static int histogram(struct kbuf *b, const char *name, const char *l1, const char *v1,
		     const char *l2, const char *v2, struct obs_hist *h)
{
	char n[96];
	uint64_t cum = 0;
	int r = KMS_OK;
	const char *lb[7] = { l1, v1, l2, v2, NULL, NULL, NULL };
	size_t at = l2 != NULL ? 4 : 2;

	(void)snprintf(n, sizeof(n), "%s_bucket", name);
	for (size_t i = 0; r == KMS_OK && i <= OBS_N_BUCKETS; i++) {
		cum += ld(&h->b[i]);
		lb[at] = "le";
		lb[at + 1] = i < OBS_N_BUCKETS ? obs_bucket_le[i] : "+Inf";
		r = sample_u(b, n, lb, cum);
	}
	lb[at] = NULL;
	(void)snprintf(n, sizeof(n), "%s_sum", name);
	if (r == KMS_OK)
		r = sample_f(b, n, lb, (double)ld(&h->sum_ns) / 1e9);
	(void)snprintf(n, sizeof(n), "%s_count", name);
	if (r == KMS_OK)
		r = sample_u(b, n, lb, cum);
	return r;
}

static const char *slot_name(struct obs_reg *r, size_t i)
{
	return atomic_load_explicit(&r->slots[i].name, memory_order_acquire);
}

static size_t n_slots(struct obs_reg *r)
{
	return atomic_load_explicit(&r->n_slots, memory_order_acquire);
}

static int render_signatures(struct obs_reg *r, struct kbuf *b)
{
	int e = family(b, "p11kms_signatures_total", "counter",
		       "New signatures made, by chain, message type and slot (extension: "
		       "vote-extension signatures).");
	for (size_t c = 0; e == KMS_OK && c < r->n_chains; c++) {
		struct obs_chain *ch = &r->chains[c];
		uint32_t mask = atomic_load(&ch->slots);
		for (size_t s = 0; e == KMS_OK && s < n_slots(r); s++) {
			const char *sn = slot_name(r, s);
			if (sn == NULL || !(mask & (UINT32_C(1) << s)))
				continue;
			for (int t = 0; e == KMS_OK && t < OBS_T_N; t++) {
				const char *lb[] = { "chain", ch->id, "type", obs_sig_type_name[t],
						     "slot",  sn,     NULL };
				e = sample_u(b, "p11kms_signatures_total", lb, ld(&ch->sigs[s][t]));
			}
		}
	}
	if (e == KMS_OK)
		e = family(b, "p11kms_stored_signatures_total", "counter",
			   "Repeated requests answered with the stored signature (same "
			   "height/round/step and sign bytes, or a timestamp-only difference).");
	for (size_t c = 0; e == KMS_OK && c < r->n_chains; c++)
		for (int t = 0; e == KMS_OK && t < OBS_T_EXTENSION; t++) {
			const char *lb[] = { "chain", r->chains[c].id, "type", obs_sig_type_name[t],
					     NULL };
			e = sample_u(b, "p11kms_stored_signatures_total", lb,
				     ld(&r->chains[c].stored[t]));
		}
	if (e == KMS_OK)
		e = family(b, "p11kms_refusals_total", "counter",
			   "Requests answered with a RemoteSignerError, by chain and reason.");
	for (size_t c = 0; e == KMS_OK && c < r->n_chains; c++)
		for (int w = OBS_WHY_REGRESSION; e == KMS_OK && w < OBS_WHY_COUNT; w++) {
			const char *lb[] = { "chain", r->chains[c].id, "reason",
					     obs_why_name((enum obs_why)w), NULL };
			e = sample_u(b, "p11kms_refusals_total", lb, ld(&r->chains[c].refusals[w]));
		}
	return e;
}

static int render_chains(struct obs_reg *r, struct kbuf *b)
{
	static const char *const fams[][3] = {
		{ "p11kms_last_signed_height", "gauge", "Height of the last new signature." },
		{ "p11kms_last_signed_round", "gauge", "Round of the last new signature." },
		{ "p11kms_last_signed_step", "gauge",
		  "Step of the last new signature (1 proposal, 2 prevote, 3 precommit)." },
		{ "p11kms_last_signed_timestamp_seconds", "gauge",
		  "When the last new signature was made (Unix time; 0: none since start)." },
		{ "p11kms_last_request_height", "gauge",
		  "Highest height a node asked to sign (0: none since start)." },
		{ "p11kms_state_sequence", "gauge",
		  "Sequence number of the double-sign state record (one per durable write)." },
		{ "p11kms_state_failed", "gauge",
		  "1 when the double-sign state could not be made durable and the chain "
		  "refuses every signature until restart." },
		{ "p11kms_chain_ready", "gauge",
		  "1 while the chain has a working slot, a connected validator entry and a "
		  "state that has not failed (as /readyz)." },
		{ "p11kms_cluster_errors_total", "counter",
		  "HA: the cluster high-water mark could not be read or written." },
	};
	int e = KMS_OK;
	for (size_t f = 0; e == KMS_OK && f < sizeof(fams) / sizeof(fams[0]); f++) {
		e = family(b, fams[f][0], fams[f][1], fams[f][2]);
		for (size_t c = 0; e == KMS_OK && c < r->n_chains; c++) {
			struct obs_chain *ch = &r->chains[c];
			const char *lb[] = { "chain", ch->id, NULL };
			int64_t h;
			int rd, st;
			obs_chain_hrs(ch, &h, &rd, &st);
			switch (f) {
			case 0:
				e = sample_i(b, fams[f][0], lb, h);
				break;
			case 1:
				e = sample_i(b, fams[f][0], lb, rd);
				break;
			case 2:
				e = sample_i(b, fams[f][0], lb, st);
				break;
			case 3:
				e = sample_time(b, fams[f][0], lb,
						atomic_load(&ch->signed_wall_ns));
				break;
			case 4:
				e = sample_i(b, fams[f][0], lb, atomic_load(&ch->request_height));
				break;
			case 5:
				e = sample_u(b, fams[f][0], lb, ld(&ch->rec_seq));
				break;
			case 6:
				e = sample_i(b, fams[f][0], lb, atomic_load(&ch->guard_failed));
				break;
			case 7:
				e = sample_i(b, fams[f][0], lb, obs_chain_not_ready(r, c) == NULL);
				break;
			default:
				e = sample_u(b, fams[f][0], lb, ld(&ch->cluster_errors));
				break;
			}
		}
	}
	return e;
}

static int render_peers(struct obs_reg *r, struct kbuf *b)
{
	static const char *const fams[][3] = {
		{ "p11kms_validator_connected", "gauge",
		  "1 while a session with this validator entry is established." },
		{ "p11kms_connections_total", "counter",
		  "Sessions established (after the handshake) with this validator entry." },
		{ "p11kms_disconnections_total", "counter", "Established sessions that ended." },
		{ "p11kms_reconnects_total", "counter",
		  "Sessions established after an earlier one ended." },
		{ "p11kms_dial_failures_total", "counter", "Dials that did not connect." },
		{ "p11kms_handshake_failures_total", "counter",
		  "Secret Connection handshakes that failed." },
	};
	int e = KMS_OK;
	for (size_t f = 0; e == KMS_OK && f < sizeof(fams) / sizeof(fams[0]); f++) {
		e = family(b, fams[f][0], fams[f][1], fams[f][2]);
		for (size_t i = 0; e == KMS_OK && i < r->n_peers; i++) {
			struct obs_peer *p = &r->peers[i];
			const char *lb[] = { "chain", r->chains[p->chain].id, "peer", p->name,
					     NULL };
			obs_ctr *v[] = {
				NULL,		&p->ups,	   &p->downs,
				&p->reconnects, &p->dial_failures, &p->handshake_failures
			};
			e = f == 0 ? sample_i(b, fams[f][0], lb, atomic_load(&p->connected)) :
				     sample_u(b, fams[f][0], lb, ld(v[f]));
		}
	}
	if (e == KMS_OK)
		e = family(b, "p11kms_requests_total", "counter",
			   "Requests received from each validator entry, by message type.");
	for (size_t i = 0; e == KMS_OK && i < r->n_peers; i++) {
		struct obs_peer *p = &r->peers[i];
		for (int m = OBS_MSG_PREVOTE; e == KMS_OK && m <= OBS_MSG_UNKNOWN; m++) {
			const char *lb[] = { "chain", r->chains[p->chain].id,
					     "peer",  p->name,
					     "type",  obs_msg_name((enum obs_msg)m),
					     NULL };
			e = sample_u(b, "p11kms_requests_total", lb, ld(&p->requests[m]));
		}
	}
	if (e == KMS_OK)
		e = family(b, "p11kms_request_duration_seconds", "histogram",
			   "Signing requests (votes, proposals), from decoding the request to "
			   "writing the reply, by validator entry.");
	for (size_t i = 0; e == KMS_OK && i < r->n_peers; i++)
		e = histogram(b, "p11kms_request_duration_seconds", "chain",
			      r->chains[r->peers[i].chain].id, "peer", r->peers[i].name,
			      &r->peers[i].latency);
	if (e == KMS_OK)
		e = family(b, "p11kms_state_sync_duration_seconds", "histogram",
			   "Writing one double-sign state record: pwrite and fdatasync.");
	for (size_t c = 0; e == KMS_OK && c < r->n_chains; c++)
		e = histogram(b, "p11kms_state_sync_duration_seconds", "chain", r->chains[c].id,
			      NULL, NULL, &r->chains[c].sync);
	return e;
}

static int render_slot_ckr(struct obs_reg *r, struct kbuf *b)
{
	int e = family(b, "p11kms_token_errors_by_ckr_total", "counter",
		       "Token errors by the CK_RV the token returned (a series appears with "
		       "its first error).");
	for (size_t i = 0; e == KMS_OK && i < n_slots(r); i++) {
		struct obs_slot *s = &r->slots[i];
		const char *sn = slot_name(r, i);
		for (size_t k = 0; e == KMS_OK && sn != NULL && k < OBS_CKR_KINDS; k++) {
			unsigned long code = atomic_load(&s->ckr[k]);
			if (code == 0)
				continue;
			const char *lb[] = { "slot", sn, "ckr", obs_ckr_name(code - 1), NULL };
			e = sample_u(b, "p11kms_token_errors_by_ckr_total", lb, ld(&s->ckr_n[k]));
		}
	}
	return e;
}

static int render_slots(struct obs_reg *r, struct kbuf *b)
{
	static const char *const fams[][3] = {
		{ "p11kms_slot_up", "gauge",
		  "0 after a token call passed its deadline or the slot was marked down, 1 "
		  "again once it signs." },
		{ "p11kms_token_errors_total", "counter", "Token calls that returned an error." },
		{ "p11kms_token_session_reopens_total", "counter",
		  "Sessions the token lost, re-opened and logged in again." },
		{ "p11kms_token_module_reinits_total", "counter",
		  "Times the PKCS#11 module was finalised and initialised again." },
		{ "p11kms_token_watchdog_timeouts_total", "counter",
		  "Token calls abandoned at their deadline (a hung token)." },
		{ "p11kms_token_failovers_total", "counter",
		  "Requests this slot took over from a slot that failed." },
	};
	int e = KMS_OK;
	for (size_t f = 0; e == KMS_OK && f < sizeof(fams) / sizeof(fams[0]); f++) {
		e = family(b, fams[f][0], fams[f][1], fams[f][2]);
		for (size_t i = 0; e == KMS_OK && i < n_slots(r); i++) {
			struct obs_slot *s = &r->slots[i];
			const char *sn = slot_name(r, i);
			const char *lb[] = { "slot", sn, NULL };
			obs_ctr *v[] = { NULL,	      &s->token_errors, &s->reopens,
					 &s->reinits, &s->timeouts,	&s->failovers };
			if (sn == NULL)
				continue;
			e = f == 0 ? sample_i(b, fams[f][0], lb, !atomic_load(&s->down)) :
				     sample_u(b, fams[f][0], lb, ld(v[f]));
		}
	}
	if (e == KMS_OK)
		e = render_slot_ckr(r, b);
	if (e == KMS_OK)
		e = family(b, "p11kms_token_sign_duration_seconds", "histogram",
			   "Time in the token's C_Sign for a new signature, by slot.");
	for (size_t i = 0; e == KMS_OK && i < n_slots(r); i++)
		if (slot_name(r, i) != NULL)
			e = histogram(b, "p11kms_token_sign_duration_seconds", "slot",
				      slot_name(r, i), NULL, NULL, &r->slots[i].sign);
	return e;
}

static int render_process(struct obs_reg *r, struct kbuf *b)
{
	const char *lb[] = { "version",
			     P11KMS_VERSION,
			     "protocol_versions",
			     "v0.34,v0.37,v0.38,v1",
			     "openssl",
			     OpenSSL_version(OPENSSL_VERSION_STRING),
			     "p11kit",
			     P11KMS_P11KIT_VERSION,
			     NULL };
	int e = family(b, "p11kms_build_info", "gauge",
		       "Always 1; the labels say what this signer is built from.");
	if (e == KMS_OK)
		e = sample(b, "p11kms_build_info", lb, "1");
	if (e == KMS_OK)
		e = family(b, "p11kms_start_time_seconds", "gauge",
			   "When the signer started (Unix time).");
	if (e == KMS_OK)
		e = sample_time(b, "p11kms_start_time_seconds", NULL, r->start_wall_ns);
	if (e == KMS_OK)
		e = family(b, "p11kms_audit_errors_total", "counter",
			   "Audit records that could not be written or synced.");
	if (e == KMS_OK)
		e = sample_u(b, "p11kms_audit_errors_total", NULL, ld(&r->audit_errors));
	return e;
}

int obs_reg_render(struct obs_reg *r, struct kbuf *out)
{
	int e;
	if (r == NULL || out == NULL)
		return KMS_ERR_INTERNAL;
	if ((e = render_signatures(r, out)) != KMS_OK || (e = render_chains(r, out)) != KMS_OK ||
	    (e = render_peers(r, out)) != KMS_OK || (e = render_slots(r, out)) != KMS_OK)
		return e;
	return render_process(r, out);
}

/* ---- health and readiness ------------------------------------------------------------ */

int obs_chain_slot_ok(struct obs_reg *r, size_t i)
{
	struct obs_chain *c = &r->chains[i];
	uint32_t mask = atomic_load(&c->slots);
	int any = 0;
	if (atomic_load(&c->token_failed))
		return 0;
	for (size_t s = 0; s < OBS_MAX_SLOTS; s++)
		if ((mask & (UINT32_C(1) << s)) && !atomic_load(&r->slots[s].down))
			any = 1;
	/* A chain with no slot registered yet (none opened) counts on the token result. */
	return any || mask == 0;
}

size_t obs_chain_connected(struct obs_reg *r, size_t i)
{
	size_t n = 0;
	for (size_t p = 0; p < r->n_peers; p++)
		if (r->peers[p].chain == i && atomic_load(&r->peers[p].connected))
			n++;
	return n;
}

const char *obs_chain_not_ready(struct obs_reg *r, size_t i)
{
	if (atomic_load(&r->chains[i].guard_failed))
		return "the double-sign state failed (restart after fixing the disk)";
	if (!obs_chain_slot_ok(r, i))
		return "no working slot (the token failed or hangs)";
	if (obs_chain_connected(r, i) == 0)
		return "no validator entry connected";
	return NULL;
}

/* Appends the compact JSON of o to out and releases o. */
static int put_json(struct kbuf *out, json_t *o)
{
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	int r = s != NULL ? kbuf_put(out, s, strlen(s)) : KMS_ERR_ALLOC;
	if (r == KMS_OK)
		r = kbuf_put_u8(out, '\n');
	free(s);
	json_decref(o);
	return r;
}

/* 1 when every thread answers at now_ns; each one that does not is added to problems (if not NULL). */
static int threads_answer(struct obs_reg *r, int64_t now_ns, json_t *problems)
{
	int64_t age_ms = (now_ns - atomic_load(&r->tick_ns)) / 1000000;
	int ok = 1;
	if (age_ms > OBS_SUPERVISOR_LIMIT_MS) {
		ok = 0;
		if (problems != NULL)
			json_array_append_new(problems,
					      json_pack("{s:s,s:I}", "thread", "supervisor",
							"silent_ms", (json_int_t)age_ms));
	}
	for (size_t i = 0; i < r->n_peers; i++) {
		int64_t since = atomic_load(&r->peers[i].busy_since_ns);
		int64_t busy_ms = since != 0 ? (now_ns - since) / 1000000 : 0;
		if (busy_ms <= OBS_BUSY_LIMIT_MS)
			continue;
		ok = 0;
		if (problems != NULL)
			json_array_append_new(problems,
					      json_pack("{s:s,s:s,s:s,s:I}", "thread", "connection",
							"chain", r->chains[r->peers[i].chain].id,
							"peer", r->peers[i].name, "busy_ms",
							(json_int_t)busy_ms));
	}
	return ok;
}

int obs_reg_health(struct obs_reg *r, int64_t now_ns, struct kbuf *out, int *ok)
{
	json_t *o = json_object(), *problems = json_array();
	*ok = threads_answer(r, now_ns, problems);
	json_object_set_new(o, "healthy", json_boolean(*ok));
	json_object_set_new(
		o, "supervisor_tick_ms_ago",
		json_integer((json_int_t)((now_ns - atomic_load(&r->tick_ns)) / 1000000)));
	json_object_set_new(o, "connection_threads", json_integer((json_int_t)r->n_peers));
	json_object_set_new(o, "problems", problems);
	return put_json(out, o);
}

int obs_reg_ready(struct obs_reg *r, int64_t now_ns, struct kbuf *out, int *ok)
{
	(void)now_ns;
	json_t *o = json_object(), *chains = json_array();
	*ok = r->n_chains > 0;
	for (size_t i = 0; i < r->n_chains; i++) {
		const char *why = obs_chain_not_ready(r, i);
		size_t total = 0;
		for (size_t p = 0; p < r->n_peers; p++)
			total += r->peers[p].chain == i;
		if (why != NULL)
			*ok = 0;
		json_t *c =
			json_pack("{s:s,s:b,s:s,s:I,s:I,s:s}", "chain_id", r->chains[i].id, "ready",
				  why == NULL, "slot", obs_chain_slot_ok(r, i) ? "ok" : "failed",
				  "connected_validators", (json_int_t)obs_chain_connected(r, i),
				  "validators", (json_int_t)total, "state",
				  atomic_load(&r->chains[i].guard_failed) ? "failed" : "ok");
		if (c != NULL && why != NULL)
			json_object_set_new(c, "not_ready", json_string(why));
		json_array_append_new(chains, c);
	}
	json_object_set_new(o, "ready", json_boolean(*ok));
	json_object_set_new(o, "chains", chains);
	return put_json(out, o);
}

int obs_reg_signing_ok(struct obs_reg *r, int64_t now_ns)
{
	int ok = threads_answer(r, now_ns, NULL);
	for (size_t i = 0; ok && i < r->n_chains; i++)
		if (atomic_load(&r->chains[i].guard_failed) || !obs_chain_slot_ok(r, i))
			ok = 0;
	return ok;
}

void obs_reg_status_line(struct obs_reg *r, char *out, size_t cap)
{
	size_t conn = 0, used;
	int n;
	for (size_t i = 0; i < r->n_peers; i++)
		conn += atomic_load(&r->peers[i].connected) != 0;
	n = snprintf(out, cap, "%zu/%zu validators connected", conn, r->n_peers);
	used = n > 0 && (size_t)n < cap ? (size_t)n : cap;
	for (size_t i = 0; i < r->n_chains && used + 1 < cap; i++) {
		int64_t h;
		int rd, st;
		obs_chain_hrs(&r->chains[i], &h, &rd, &st);
		n = snprintf(out + used, cap - used, "; %s h=%" PRId64 " r=%d s=%d%s",
			     r->chains[i].id, h, rd, st,
			     obs_chain_not_ready(r, i) != NULL ? " (not ready)" : "");
		if (n < 0 || (size_t)n >= cap - used)
			break;
		used += (size_t)n;
	}
}
