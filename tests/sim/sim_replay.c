/* SPDX-License-Identifier: Apache-2.0 */
/* --replay: drives tests/vectors/double_sign_scenarios.json through a live signer. */
#include "sim.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "p11kms/kcrypto.h"

/* Scenario i runs at heights 1000 * (i + 1) + h, so one state file serves them all. */
#define REPLAY_HEIGHT_STRIDE 1000
#define REPLAY_TS 1700000000LL

struct replay_step {
	int present;
	int64_t h;
	int32_t r;
	int32_t type;	   /* PV_TYPE_*; 0 = nothing signed yet */
	const char *block; /* NULL = nil */
	const char *ts;	   /* "T", "T+1ms" */
	const char *ext;
};

static int32_t type_of(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "prevote") == 0)
		return PV_TYPE_PREVOTE;
	if (strcmp(s, "precommit") == 0)
		return PV_TYPE_PRECOMMIT;
	if (strcmp(s, "proposal") == 0)
		return PV_TYPE_PROPOSAL;
	return -1;
}

static int parse_step(json_t *o, int64_t base, struct replay_step *s)
{
	json_t *t = json_object_get(o, "type");
	memset(s, 0, sizeof(*s));
	if (!json_is_object(o) || !json_is_integer(json_object_get(o, "h")) ||
	    !json_is_integer(json_object_get(o, "r")))
		return -1;
	s->type = type_of(json_is_string(t) ? json_string_value(t) : NULL);
	if (s->type < 0)
		return -1;
	s->present = s->type != 0;
	s->h = base + (int64_t)json_integer_value(json_object_get(o, "h"));
	s->r = (int32_t)json_integer_value(json_object_get(o, "r"));
	s->block = json_string_value(json_object_get(o, "block"));
	s->ts = json_string_value(json_object_get(o, "ts"));
	s->ext = json_string_value(json_object_get(o, "ext"));
	return 0;
}

/* "block A" -> hash SHA-256("block A"), one part with hash SHA-256("parts/block A"). */
static int block_of(const char *label, struct pv_block_id *b)
{
	char tmp[200];
	memset(b, 0, sizeof(*b));
	if (label == NULL)
		return 0;
	(void)snprintf(tmp, sizeof(tmp), "parts/%s", label);
	if (kcrypto_sha256((const uint8_t *)label, strlen(label), b->hash) != KMS_OK ||
	    kcrypto_sha256((const uint8_t *)tmp, strlen(tmp), b->psh_hash) != KMS_OK)
		return -1;
	b->hash_len = PV_HASH_LEN;
	b->psh_hash_len = PV_HASH_LEN;
	b->psh_total = 1;
	return 0;
}

static void build(const struct sim_cfg *cfg, const struct replay_step *s, struct pv_request *req)
{
	struct pv_timestamp ts = { REPLAY_TS, 100 };
	if (s->ts != NULL && strcmp(s->ts, "T+1ms") == 0)
		ts.nanos += 1000000;
	memset(req, 0, sizeof(*req));
	(void)snprintf(req->chain_id, sizeof(req->chain_id), "%s", cfg->chain_id);
	if (s->type == PV_TYPE_PROPOSAL) {
		req->kind = PV_REQ_SIGN_PROPOSAL;
		req->proposal.type = PV_TYPE_PROPOSAL;
		req->proposal.height = s->h;
		req->proposal.round = s->r;
		req->proposal.pol_round = -1;
		(void)block_of(s->block, &req->proposal.block_id);
		req->proposal.timestamp = ts;
		return;
	}
	req->kind = PV_REQ_SIGN_VOTE;
	req->vote.type = s->type;
	req->vote.height = s->h;
	req->vote.round = s->r;
	(void)block_of(s->block, &req->vote.block_id);
	req->vote.timestamp = ts;
	memset(req->vote.validator_address, 0x42, PV_ADDR_LEN);
	req->vote.validator_address_len = PV_ADDR_LEN;
	if (s->type == PV_TYPE_PRECOMMIT && s->block != NULL &&
	    pv_version_info(cfg->version)->has_extensions && s->ext != NULL) {
		req->vote.extension = (const uint8_t *)s->ext;
		req->vote.extension_len = strlen(s->ext);
	}
	if (cfg->version == PV_V1)
		req->skip_extension_signing = s->type == PV_TYPE_PREVOTE;
}

static const uint8_t *sig_of(const struct pv_response *resp)
{
	return resp->kind == PV_REQ_SIGN_VOTE ? resp->vote.signature : resp->proposal.signature;
}

static int ping_ok(struct sim_conn *c, const struct sim_cfg *cfg)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	double ms;
	int ok;
	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PING;
	ok = sim_call(c, cfg->version, &req, cfg->timeout_ms, &resp, &ms) == KMS_OK &&
	     resp->kind == PV_REQ_PING && !resp->has_error;
	pv_response_free(resp);
	return ok;
}

/*
 * Checks the answer to the scenario's request against expect_cometbft_filepv
 * (p11kms follows FilePV): "sign", "error ..." (RemoteSignerError code 2,
 * connection up), "return stored signature ..." (byte-identical to the first
 * signature, and valid for the stored timestamp).
 */
static int judge(const struct sim_cfg *cfg, const uint8_t pub[static 32], const char *expect,
		 const struct pv_request *first, const struct pv_response *first_resp,
		 const struct pv_request *req, const struct pv_response *resp, char *why,
		 size_t cap)
{
	enum sim_verdict v;
	if (strncmp(expect, "error", 5) == 0) {
		if (!resp->has_error) {
			(void)snprintf(why, cap, "signed, but FilePV refuses (%s)", expect);
			return -1;
		}
		if (resp->error_code != PV_CODE_DOUBLE_SIGN) {
			(void)snprintf(why, cap, "refused with code %d, want %d: %s",
				       (int)resp->error_code, PV_CODE_DOUBLE_SIGN,
				       resp->error_description);
			return -1;
		}
		(void)snprintf(why, cap, "refused code=2 (%s)", resp->error_description);
		return 0;
	}
	v = sim_verify(cfg->version, pub, req, resp, cfg->expect_ext_sig, -1, why, cap);
	if (strncmp(expect, "return stored signature", 23) == 0) {
		if (first_resp == NULL || resp->has_error) {
			if (!why[0])
				(void)snprintf(why, cap, "no stored signature to compare");
			return -1;
		}
		if (memcmp(sig_of(resp), sig_of(first_resp), PV_SIG_LEN) != 0) {
			(void)snprintf(why, cap, "a new signature, want the stored one");
			return -1;
		}
		/* A proposal's stored signature covers the stored timestamp (the first request's). */
		if (req->kind == PV_REQ_SIGN_PROPOSAL)
			v = sim_verify(cfg->version, pub, first, resp, cfg->expect_ext_sig, -1, why,
				       cap);
		if (v != SIM_OK)
			return -1;
		if (req->kind == PV_REQ_SIGN_VOTE &&
		    (resp->vote.timestamp.seconds != first->vote.timestamp.seconds ||
		     resp->vote.timestamp.nanos != first->vote.timestamp.nanos)) {
			(void)snprintf(why, cap, "stored signature but not the stored timestamp");
			return -1;
		}
		(void)snprintf(why, cap, "stored signature returned, verifies");
		return 0;
	}
	if (v != SIM_OK)
		return -1;
	(void)snprintf(why, cap, "signed, verifies");
	return 0;
}

/* Signs "last" (when there is one) then sends "request"; returns 0 when the outcome matches. */
static int run_scenario(struct sim_conn *c, const struct sim_cfg *cfg, const uint8_t pub[static 32],
			const struct replay_step *last, const struct replay_step *reqs,
			const char *expect, struct sim_stats *st, char *why, size_t cap)
{
	struct pv_request first, req;
	struct pv_response *first_resp = NULL, *resp = NULL;
	double ms = 0;
	int rc = -1;

	why[0] = '\0';
	memset(&first, 0, sizeof(first));
	if (last->present) {
		build(cfg, last, &first);
		if (sim_call(c, cfg->version, &first, cfg->timeout_ms, &first_resp, &ms) !=
		    KMS_OK) {
			(void)snprintf(why, cap, "no answer to the first request");
			goto out;
		}
		st->requests++;
		sim_stats_latency(st, ms);
		if (sim_verify(cfg->version, pub, &first, first_resp, cfg->expect_ext_sig, -1, why,
			       cap) != SIM_OK)
			goto out;
		st->signed_ok++;
	}
	build(cfg, reqs, &req);
	if (sim_call(c, cfg->version, &req, cfg->timeout_ms, &resp, &ms) != KMS_OK) {
		(void)snprintf(why, cap, "no answer to the request (connection dropped?)");
		goto out;
	}
	st->requests++;
	sim_stats_latency(st, ms);
	if (resp->has_error) {
		st->refused++;
		if (resp->error_code >= 0 && resp->error_code < 16)
			st->refused_by_code[resp->error_code]++;
	}
	if (judge(cfg, pub, expect, &first, first_resp, &req, resp, why, cap) != 0)
		goto out;
	if (!resp->has_error)
		st->signed_ok++;
	/* The connection must survive a refusal (and everything else). */
	if (!ping_ok(c, cfg)) {
		(void)snprintf(why + strlen(why), cap - strlen(why),
			       "; but the ping after it failed");
		goto out;
	}
	st->pings++;
	rc = 0;
out:
	pv_response_free(first_resp);
	pv_response_free(resp);
	return rc;
}

int sim_replay(struct sim_conn *c, const struct sim_cfg *cfg, const uint8_t pub[static 32],
	       const char *path, struct sim_stats *st, int verbose)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, 0, &jerr);
	json_t *arr = json_object_get(root, "scenarios");
	size_t i;
	json_t *sc;
	int fails = 0;

	(void)verbose;
	if (!json_is_array(arr)) {
		fprintf(stderr, "p11kms-sim: --replay %s: %s\n", path,
			root ? "no \"scenarios\" array" : jerr.text);
		json_decref(root);
		return 1;
	}
	json_array_foreach(arr, i, sc) {
		struct replay_step last, reqs;
		const char *name = json_string_value(json_object_get(sc, "name"));
		const char *expect =
			json_string_value(json_object_get(sc, "expect_cometbft_filepv"));
		int64_t base = (int64_t)(REPLAY_HEIGHT_STRIDE * (i + 1));
		char why[400];

		if (name == NULL || expect == NULL ||
		    parse_step(json_object_get(sc, "last"), base, &last) != 0 ||
		    parse_step(json_object_get(sc, "request"), base, &reqs) != 0 || !reqs.present) {
			fprintf(stderr, "FAIL %-55s malformed scenario\n", name ? name : "?");
			fails++;
			continue;
		}
		if ((last.ext != NULL || reqs.ext != NULL) &&
		    !pv_version_info(cfg->version)->has_extensions) {
			fprintf(stderr, "skip %-55s (no vote extensions in %s)\n", name,
				pv_version_name(cfg->version));
			continue;
		}
		/* p11kms's one deliberate difference from FilePV (docs/state.md): a proposal that
		 * differs only in its timestamp is refused, since the node would keep its own
		 * timestamp next to the stored signature and the proposal would not verify. */
		if (reqs.type == PV_TYPE_PROPOSAL &&
		    strncmp(expect, "return stored signature", 23) == 0 && last.ts != NULL &&
		    reqs.ts != NULL && strcmp(last.ts, reqs.ts) != 0)
			expect = "error (p11kms policy: proposal timestamp-only change refused)";
		if (run_scenario(c, cfg, pub, &last, &reqs, expect, st, why, sizeof(why)) != 0) {
			fprintf(stderr, "FAIL %-55s %s [expected: %s]\n", name, why, expect);
			sim_stats_fail(st, "%s: %s", name, why);
			fails++;
			continue;
		}
		fprintf(stderr, "ok   %-55s %s\n", name, why);
	}
	json_decref(root);
	return fails;
}
