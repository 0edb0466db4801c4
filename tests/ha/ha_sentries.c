/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ha_sentries: several simulated sentries of one validator, asking the same
 * H/R/S sequence on a shared clock, each to whichever signer host is connected
 * to it (docs/ha.md). Every signature any sentry receives is verified and
 * recorded; at the end (and live) the check is: at one H/R/S, never two
 * different sign bytes, and every answer at one H/R/S byte-identical.
 *
 * A sentry whose signer connection drops (kill -9 of a host) accepts the next
 * signer; requests scheduled while it has none are "unserved". Counters go to
 * --stats FILE every 50 ms (one JSON line: wall ms and cumulative counts), so a
 * test can count answered/refused during each fault and the time to resume.
 *
 * Usage: ha_sentries --listen ADDR [--listen ADDR ...] --expect-pubkey HEX
 *          [--chain-id ID] [--version V] [--interval-ms 20] [--duration-ms 10000]
 *          [--stats FILE] [--addr-file FILE] [--seed S] [--start-height H]
 * SIGTERM ends the run early (the summary is still printed).
 * Exit: 0 no violation, 1 violations or bad signatures, 2 usage, 3 setup.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11kms/enc.h"
#include "p11kms/kbuf.h"
#include "p11kms/net.h"
#include "sim.h"

#define MAX_SENTRIES 8
#define TABLE_SIZE (1u << 16)

struct entry { /* one H/R/S seen: what was signed there, first answer */
	int used;
	int64_t h;
	int32_t r;
	int s;
	uint8_t sb[512];
	size_t sb_len;
	uint8_t sig[64];
	uint32_t answers;
};

static struct {
	struct sim_cfg cfg;
	uint8_t pub[32];
	const char *listen[MAX_SENTRIES];
	int n;
	int interval_ms, duration_ms;
	const char *stats, *addr_file;
	int64_t t0;
	pthread_mutex_t mu;
	struct entry *table;
	/* counters (under mu) */
	uint64_t answered, stored_same, refused, unserved, lost, bad_sig, violations,
		mismatched_answers, by_code[16];
	int64_t last_answer_wall_ms;
	uint64_t hrs_signed;			 /* distinct H/R/S with a signature */
	uint64_t s_answered[MAX_SENTRIES];	 /* per sentry */
	int64_t s_last_ms[MAX_SENTRIES];	 /* per sentry: wall ms of its last answer */
	char first_violation[512];
	atomic_int done;
} G;

static volatile sig_atomic_t g_term;

static void on_term(int sig)
{
	(void)sig;
	g_term = 1;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the signature covers: the vote with the timestamp the signer returned. */
static int signed_bytes(const struct pv_request *req, const struct pv_response *resp,
			struct kbuf *out)
{
	if (req->kind == PV_REQ_SIGN_VOTE) {
		struct pv_vote v = req->vote;
		v.timestamp = resp->vote.timestamp;
		return pv_vote_sign_bytes(G.cfg.chain_id, &v, out);
	}
	return pv_proposal_sign_bytes(G.cfg.chain_id, &req->proposal, out);
}

/* Records one verified signature at its H/R/S (under G.mu). */
static void record(int idx, const struct pv_request *req, const struct pv_response *resp)
{
	struct kbuf *sb = kbuf_new(4096);
	int64_t h = req->kind == PV_REQ_SIGN_VOTE ? req->vote.height : req->proposal.height;
	int32_t r = req->kind == PV_REQ_SIGN_VOTE ? req->vote.round : req->proposal.round;
	int s = req->kind == PV_REQ_SIGN_PROPOSAL ? 1 : req->vote.type == PV_TYPE_PREVOTE ? 2 : 3;
	const uint8_t *sig = req->kind == PV_REQ_SIGN_VOTE ? resp->vote.signature :
							     resp->proposal.signature;
	if (sb == NULL || signed_bytes(req, resp, sb) != KMS_OK || kbuf_len(sb) > 512) {
		G.bad_sig++;
		kbuf_free(sb);
		return;
	}
	uint64_t k = sim_mix((uint64_t)h * 1000003u + (uint64_t)r * 7u + (uint64_t)s);
	for (uint32_t i = 0; i < TABLE_SIZE; i++) {
		struct entry *e = &G.table[(k + i) % TABLE_SIZE];
		if (!e->used) {
			e->used = 1;
			G.hrs_signed++;
			e->h = h;
			e->r = r;
			e->s = s;
			memcpy(e->sb, kbuf_ptr(sb), kbuf_len(sb));
			e->sb_len = kbuf_len(sb);
			memcpy(e->sig, sig, 64);
			e->answers = 1;
			break;
		}
		if (e->h != h || e->r != r || e->s != s)
			continue;
		e->answers++;
		if (e->sb_len != kbuf_len(sb) || memcmp(e->sb, kbuf_ptr(sb), e->sb_len) != 0) {
			G.violations++;
			if (G.first_violation[0] == '\0')
				(void)snprintf(G.first_violation, sizeof(G.first_violation),
					       "sentry %d: h/r/s=%lld/%d/%d: two different sign bytes "
					       "signed",
					       idx, (long long)h, r, s);
		} else if (memcmp(e->sig, sig, 64) != 0) {
			G.mismatched_answers++;
		} else {
			G.stored_same++;
		}
		break;
	}
	kbuf_free(sb);
}

static void note(int idx, const struct pv_request *req, const struct pv_response *resp)
{
	char why[300];
	enum sim_verdict v = sim_verify(G.cfg.version, G.pub, req, resp, 0, -1, why, sizeof(why));
	pthread_mutex_lock(&G.mu);
	if (v == SIM_REFUSED) {
		G.refused++;
		if (resp->error_code >= 0 && resp->error_code < 16)
			G.by_code[resp->error_code]++;
	} else if (v != SIM_OK) {
		G.bad_sig++;
		if (G.first_violation[0] == '\0')
			(void)snprintf(G.first_violation, sizeof(G.first_violation),
				       "sentry %d: %s", idx, why);
	} else {
		G.answered++;
		G.last_answer_wall_ms = wall_ms();
		G.s_answered[idx]++;
		G.s_last_ms[idx] = G.last_answer_wall_ms;
		record(idx, req, resp);
	}
	pthread_mutex_unlock(&G.mu);
}

static int pubkey(struct sim_conn *c)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	double ms;
	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PUBKEY;
	(void)snprintf(req.chain_id, sizeof(req.chain_id), "%s", G.cfg.chain_id);
	int r = sim_call(c, G.cfg.version, &req, G.cfg.timeout_ms, &resp, &ms);
	int ok = r == KMS_OK && resp->has_pub_key && memcmp(resp->pub_key, G.pub, 32) == 0;
	pv_response_free(resp);
	return ok ? 0 : -1;
}

struct sentry {
	int idx;
	struct sim_listener l;
	pthread_t t;
};

static void *sentry_main(void *arg)
{
	struct sentry *s = arg;
	struct sim_conn c;
	struct sim_gen g;
	struct pv_request req;
	uint64_t k = 0; /* requests generated so far */
	int up = 0;
	sim_gen_init(&g, &G.cfg, s->idx);
	memset(&c, 0, sizeof(c));
	c.fd = -1;
	while (!atomic_load(&G.done)) {
		int64_t now = net_now_ms();
		uint64_t due = (uint64_t)((now - G.t0) / G.interval_ms);
		if (!up) {
			if (sim_accept(&s->l, 100, &c) != KMS_OK)
				continue;
			if (pubkey(&c) != 0) {
				sim_conn_close(&c);
				continue;
			}
			up = 1;
		}
		if (k > due) {
			struct timespec ts = { 0, 1000000L };
			(void)nanosleep(&ts, NULL);
			continue;
		}
		/* requests scheduled while no signer answered are skipped, as consensus moves on */
		while (k < due) {
			sim_gen_next(&g, &req);
			k++;
			pthread_mutex_lock(&G.mu);
			G.unserved++;
			pthread_mutex_unlock(&G.mu);
		}
		sim_gen_next(&g, &req);
		k++;
		struct pv_response *resp = NULL;
		double ms;
		int r = sim_call(&c, G.cfg.version, &req, G.cfg.timeout_ms, &resp, &ms);
		if (r != KMS_OK) {
			pthread_mutex_lock(&G.mu);
			G.lost++;
			pthread_mutex_unlock(&G.mu);
			sim_conn_close(&c);
			up = 0;
		} else {
			note(s->idx, &req, resp);
		}
		pv_response_free(resp);
	}
	if (up)
		sim_conn_close(&c);
	return NULL;
}

static void stats_line(FILE *f)
{
	pthread_mutex_lock(&G.mu);
	fprintf(f,
		"{\"wall_ms\":%" PRId64 ",\"answered\":%" PRIu64 ",\"refused\":%" PRIu64
		",\"unserved\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"violations\":%" PRIu64
		",\"bad\":%" PRIu64 ",\"last_answer_ms\":%" PRId64 ",\"hrs\":%" PRIu64,
		wall_ms(), G.answered, G.refused, G.unserved, G.lost, G.violations, G.bad_sig,
		G.last_answer_wall_ms, G.hrs_signed);
	fprintf(f, ",\"n\":[");
	for (int i = 0; i < G.n; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", G.s_answered[i]);
	fprintf(f, "],\"t\":[");
	for (int i = 0; i < G.n; i++)
		fprintf(f, "%s%" PRId64, i ? "," : "", G.s_last_ms[i]);
	fprintf(f, "]}\n");
	pthread_mutex_unlock(&G.mu);
	fflush(f);
}

static int usage(void)
{
	fprintf(stderr, "usage: ha_sentries --listen ADDR [...] --expect-pubkey HEX [--chain-id ID]\n"
			"  [--version V] [--interval-ms MS] [--duration-ms MS] [--stats FILE]\n"
			"  [--addr-file FILE] [--seed S] [--start-height H]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "expect-pubkey", required_argument, NULL, 'p' },
		{ "chain-id", required_argument, NULL, 'c' },
		{ "version", required_argument, NULL, 'V' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "duration-ms", required_argument, NULL, 'd' },
		{ "stats", required_argument, NULL, 's' },
		{ "addr-file", required_argument, NULL, 'a' },
		{ "seed", required_argument, NULL, 'S' },
		{ "start-height", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	struct sentry s[MAX_SENTRIES];
	size_t n = 0;
	int c, has_pub = 0;

	memset(&G, 0, sizeof(G));
	G.cfg.version = PV_V0_37;
	(void)snprintf(G.cfg.chain_id, sizeof(G.cfg.chain_id), "ha-chain");
	G.cfg.mode = SIM_MODE_MIXED;
	G.cfg.n = UINT64_MAX;
	G.cfg.start_height = 1;
	G.cfg.seed = 1;
	G.cfg.timeout_ms = 5000;
	G.cfg.ext_len_max = 0;
	G.interval_ms = 20;
	G.duration_ms = 10000;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (G.n >= MAX_SENTRIES)
				return usage();
			G.listen[G.n++] = optarg;
			break;
		case 'p':
			if (strlen(optarg) != 64 ||
			    enc_hex_decode(optarg, 64, G.pub, 32, &n) != KMS_OK || n != 32)
				return usage();
			has_pub = 1;
			break;
		case 'c':
			(void)snprintf(G.cfg.chain_id, sizeof(G.cfg.chain_id), "%s", optarg);
			break;
		case 'V':
			if (pv_version_parse(optarg, &G.cfg.version) != KMS_OK)
				return usage();
			break;
		case 'i':
			G.interval_ms = atoi(optarg);
			break;
		case 'd':
			G.duration_ms = atoi(optarg);
			break;
		case 's':
			G.stats = optarg;
			break;
		case 'a':
			G.addr_file = optarg;
			break;
		case 'S':
			G.cfg.seed = strtoull(optarg, NULL, 10);
			break;
		case 'H':
			G.cfg.start_height = strtoll(optarg, NULL, 10);
			break;
		default:
			return usage();
		}
	}
	if (G.n == 0 || !has_pub || G.interval_ms < 1 || G.duration_ms < 1 ||
	    G.cfg.start_height < 1)
		return usage();
	(void)pthread_mutex_init(&G.mu, NULL);
	G.table = calloc(TABLE_SIZE, sizeof(*G.table));
	if (G.table == NULL)
		return 3;
	FILE *af = G.addr_file ? fopen(G.addr_file, "w") : NULL;
	for (int i = 0; i < G.n; i++) {
		s[i].idx = i;
		if (sim_listen(G.listen[i], &s[i].l) != KMS_OK) {
			fprintf(stderr, "ha_sentries: cannot listen on %s\n", G.listen[i]);
			return 3;
		}
		if (af != NULL)
			fprintf(af, "%s\n", s[i].l.addr_str);
	}
	if (af != NULL && fclose(af) != 0)
		return 3;
	FILE *sf = G.stats ? fopen(G.stats, "w") : NULL;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	(void)sigaction(SIGTERM, &sa, NULL);
	G.t0 = net_now_ms();
	for (int i = 0; i < G.n; i++)
		if (pthread_create(&s[i].t, NULL, sentry_main, &s[i]) != 0)
			return 3;
	while (net_now_ms() - G.t0 < G.duration_ms && !g_term) {
		struct timespec ts = { 0, 50 * 1000000L };
		(void)nanosleep(&ts, NULL);
		if (sf != NULL)
			stats_line(sf);
	}
	atomic_store(&G.done, 1);
	for (int i = 0; i < G.n; i++) {
		(void)pthread_join(s[i].t, NULL);
		sim_listener_close(&s[i].l);
	}
	if (sf != NULL) {
		stats_line(sf);
		(void)fclose(sf);
	}
	uint64_t hrs = 0, multi = 0;
	for (uint32_t i = 0; i < TABLE_SIZE; i++) {
		if (G.table[i].used) {
			hrs++;
			multi += G.table[i].answers > 1;
		}
	}
	printf("{\"answered\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"unserved\":%" PRIu64
	       ",\"lost\":%" PRIu64 ",\"hrs_signed\":%" PRIu64 ",\"hrs_answered_twice\":%" PRIu64
	       ",\"stored_answers_identical\":%" PRIu64 ",\"answers_differing\":%" PRIu64
	       ",\"violations\":%" PRIu64 ",\"bad_signatures\":%" PRIu64
	       ",\"refused_code2\":%" PRIu64 ",\"refused_code6\":%" PRIu64 "}\n",
	       G.answered, G.refused, G.unserved, G.lost, hrs, multi, G.stored_same,
	       G.mismatched_answers, G.violations, G.bad_sig, G.by_code[2], G.by_code[6]);
	if (G.first_violation[0] != '\0')
		fprintf(stderr, "ha_sentries: %s\n", G.first_violation);
	free(G.table);
	return G.violations == 0 && G.bad_sig == 0 && G.mismatched_answers == 0 ? 0 : 1;
}
