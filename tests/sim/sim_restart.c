/* SPDX-License-Identifier: Apache-2.0 */
/* --restarts: a node that restarts again and again, each time giving its signer a short window. */
#include "sim.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11kms/enc.h"

struct restart_run {
	const struct sim_cfg *cfg;
	const struct sim_restart_opts *ro;
	struct sim_stats st; /* latencies here are connect delays, not request latencies */
	int connected, missed;
	int have_pub;
	uint8_t pub[32];
	char first_miss[200];
};

static void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&t, &t) != 0)
		;
}

/* One node life: accept within the window, PubKey, n signatures. 0 = served. */
static int one_life(struct restart_run *rr, struct sim_listener *l, struct sim_gen *g, int i)
{
	const struct sim_cfg *cfg = rr->cfg;
	struct pv_request req;
	struct pv_response *resp = NULL;
	struct sim_conn c;
	char why[300];
	double ms = 0;
	int64_t t0 = net_now_ms();
	int r = sim_accept(l, rr->ro->accept_deadline_ms, &c);
	int64_t delay = net_now_ms() - t0;

	if (r != KMS_OK) {
		/* CometBFT: "can't get pubkey" within the accept deadline, and the node exits */
		rr->missed++;
		if (rr->first_miss[0] == '\0')
			(void)snprintf(rr->first_miss, sizeof(rr->first_miss),
				       "restart %d: no signer within %d ms (%s)", i,
				       rr->ro->accept_deadline_ms, kms_strerror(r));
		return -1;
	}
	rr->connected++;
	sim_stats_latency(&rr->st, (double)delay);
	fprintf(stderr, "p11kms-sim: restart %d: signer connected %lld ms after listen\n", i,
		(long long)delay);
	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PUBKEY;
	(void)snprintf(req.chain_id, sizeof(req.chain_id), "%s", cfg->chain_id);
	r = sim_call(&c, cfg->version, &req, cfg->timeout_ms, &resp, &ms);
	if (r != KMS_OK || !resp->has_pub_key ||
	    (rr->ro->has_expect_pub && memcmp(resp->pub_key, rr->ro->expect_pub, 32) != 0)) {
		sim_stats_fail(&rr->st, "restart %d: PubKeyRequest: %s", i,
			       r != KMS_OK ? kms_strerror(r) : "no key, or not the expected one");
		goto out;
	}
	memcpy(rr->pub, resp->pub_key, 32);
	rr->have_pub = 1;
	for (uint64_t k = 0; k < cfg->n; k++) {
		pv_response_free(resp);
		resp = NULL;
		sim_gen_next(g, &req);
		r = sim_call(&c, cfg->version, &req, cfg->timeout_ms, &resp, &ms);
		rr->st.requests++;
		if (r != KMS_OK) {
			sim_stats_fail(&rr->st, "restart %d: request %" PRIu64 ": %s", i, k,
				       kms_strerror(r));
			break;
		}
		if (sim_verify(cfg->version, rr->pub, &req, resp, cfg->expect_ext_sig, -1, why,
			       sizeof(why)) != SIM_OK) {
			sim_stats_fail(&rr->st, "restart %d: %s", i, why);
			break;
		}
		rr->st.signed_ok++;
	}
out:
	pv_response_free(resp);
	sim_conn_close(&c);
	return 0;
}

static void print_result(struct restart_run *rr, const char *addr)
{
	const struct sim_restart_opts *ro = rr->ro;
	double p50 = sim_stats_pct(&rr->st, 50), mx = sim_stats_max(&rr->st);

	if (ro->json) {
		json_t *j = json_pack(
			"{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:I,s:I,s:I}", "mode", "restarts", "version",
			pv_version_name(rr->cfg->version), "addr", addr, "restarts", ro->restarts,
			"accept_deadline_ms", ro->accept_deadline_ms, "connected", rr->connected,
			"missed", rr->missed, "requests", (json_int_t)rr->st.requests, "signed",
			(json_int_t)rr->st.signed_ok, "failures", (json_int_t)rr->st.failures);
		if (j == NULL)
			return;
		(void)json_object_set_new(j, "connect_ms",
					  json_pack("{s:f,s:f}", "p50", p50, "max", mx));
		if (rr->first_miss[0])
			(void)json_object_set_new(j, "first_miss", json_string(rr->first_miss));
		if (rr->st.first_failure[0])
			(void)json_object_set_new(j, "first_failure",
						  json_string(rr->st.first_failure));
		sim_json_print(j);
		return;
	}
	printf("p11kms-sim restarts: %s on %s, window %d ms\n", pv_version_name(rr->cfg->version),
	       addr, ro->accept_deadline_ms);
	printf("  node starts:    %d, signer connected %d, missed %d%s%s\n", ro->restarts,
	       rr->connected, rr->missed, rr->first_miss[0] ? " (first: " : "",
	       rr->first_miss[0] ? rr->first_miss : "");
	if (rr->first_miss[0])
		printf(")\n");
	printf("  connect delay:  p50 %.0f ms, worst %.0f ms\n", p50, mx);
	printf("  signed:         %" PRIu64 " of %" PRIu64 ", failures %" PRIu64 "%s%s\n",
	       rr->st.signed_ok, rr->st.requests, rr->st.failures,
	       rr->st.first_failure[0] ? ", first: " : "", rr->st.first_failure);
}

int sim_restarts(const char *listen_addr, const struct sim_cfg *cfg,
		 const struct sim_restart_opts *ro)
{
	struct restart_run rr = { .cfg = cfg, .ro = ro };
	struct sim_listener l;
	struct sim_gen g;
	char addr[300];
	uint64_t rng = cfg->seed ^ 0x7265737461727473ULL;
	int rc;

	sim_stats_init(&rr.st);
	sim_gen_init(&g, cfg, 0);
	(void)snprintf(addr, sizeof(addr), "%s", listen_addr);
	for (int i = 0; i < ro->restarts; i++) {
		if (sim_listen(addr, &l) != KMS_OK) {
			sim_stats_free(&rr.st);
			return 3;
		}
		/* later starts come back on the same address, as a restarted node does */
		(void)snprintf(addr, sizeof(addr), "%s", l.addr_str);
		if (i == 0) {
			fprintf(stderr, "p11kms-sim: listening on %s (%s, %d restarts)\n",
				l.addr_str, pv_version_name(cfg->version), ro->restarts);
			const char *line = l.addr_str;
			if (ro->addr_file != NULL &&
			    sim_write_addr_file(ro->addr_file, &line, 1) != 0) {
				sim_listener_close(&l);
				sim_stats_free(&rr.st);
				return 3;
			}
		}
		(void)one_life(&rr, &l, &g, i);
		sim_listener_close(&l);
		if (i + 1 < ro->restarts) {
			int span = ro->down_max_ms - ro->down_min_ms;
			rng = sim_mix(rng + (uint64_t)i);
			sleep_ms(ro->down_min_ms +
				 (span > 0 ? (int)(rng % (uint64_t)(span + 1)) : 0));
		}
	}
	print_result(&rr, addr);
	rc = rr.missed == 0 && rr.st.failures == 0 ? 0 : 1;
	sim_stats_free(&rr.st);
	return rc;
}
