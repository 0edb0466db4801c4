/* SPDX-License-Identifier: Apache-2.0 */
/* p11kms-sim: listens like a CometBFT node's priv_validator_laddr and drives a signer. */
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

#define EXIT_FAILURES 1
#define EXIT_USAGE 2
#define EXIT_SETUP 3

struct sim_opts {
	struct sim_cfg cfg;
	const char *listen[SIM_MAX_CONN];
	int n_listen;
	int concurrency;
	int json;
	int verbose;
	const char *addr_file;
	int addr_with_id; /* addr-file lines carry the node ID: tcp://<id>@host:port */
	const char *replay;
	const char *hostile;
	int connections; /* hostile: how many signer connections to handle */
	int accept_timeout_ms;
	int has_expect_pub;
	uint8_t expect_pub[32];
	const char *bech32_prefix;
	struct sim_restart_opts restart; /* --restarts N (restart.restarts > 0) */
	int hold_ms; /* keep each connection open this long after its requests, pinging */
};

/* Shared by the connection threads of one run. */
struct sim_run {
	struct sim_opts *o;
	struct sim_listener l[SIM_MAX_CONN];
	struct sim_stats st;
	pthread_barrier_t bar;
	pthread_mutex_t pub_mu;
	int have_pub;
	uint8_t pub[32];
	int setup_failed;
};

struct sim_thread {
	struct sim_run *run;
	int idx;
	pthread_t tid;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: p11kms-sim --listen ADDR [options]\n"
		"  --listen ADDR         tcp://127.0.0.1:PORT (Secret Connection, ephemeral identity)\n"
		"                        or unix:///path (plain); repeat for several sentries\n"
		"  --version V           v0.34 | v0.37 | v0.38 | v1 (default v0.37)\n"
		"  --chain-id ID         (default sim-chain)\n"
		"  --expect-pubkey K     the signer's key: 64 hex digits or bech32 (…valconspub1…)\n"
		"  --bech32-prefix P     show the key as bech32 with prefix P (e.g. haqqvalconspub)\n"
		"  --mode M              votes | proposals | mixed (default mixed)\n"
		"  --n N                 signing requests per connection (default 1000)\n"
		"  --start-height H      first height (default 1)\n"
		"  --concurrency K       K sentries for one chain: K listeners (ports PORT..PORT+K-1,\n"
		"                        or port 0 each; unix paths get .1 .. .K-1), in lockstep\n"
		"  --ping-every N        a PingRequest after every N signing requests (default 50)\n"
		"  --ext-max N           largest generated vote extension, bytes (default 64, max 256)\n"
		"  --no-ext-sig          v0.38: the signer has sign_extensions off (expect none)\n"
		"  --seed S              consensus walk seed (default 1)\n"
		"  --timeout MS          per response (default 5000)\n"
		"  --accept-timeout S    wait for the signer to connect (default 30)\n"
		"  --addr-file FILE      write the listening addresses there, one per line\n"
		"  --addr-with-node-id   ... as tcp://<node-id>@host:port (this run's identity)\n"
		"  --json                JSON summary on stdout\n"
		"  --replay FILE         replay double_sign_scenarios.json, check refusals\n"
		"  --hostile NAME        misbehave once per accepted connection (--hostile list;\n"
		"                        all = each mode once, on successive connections)\n"
		"  --connections N       hostile: connections to handle (default 1)\n"
		"  --corrupt-check       flip one bit of every received signature: verification must fail\n"
		"  --strict              act as the real node of --version does on a reply it cannot\n"
		"                        use (an unreadable public key, a missing or unexpected\n"
		"                        extension signature): hang up at once (the node exits or panics)\n"
		"  --restarts N          the node restarts N times on the same address: each start it\n"
		"                        waits --accept-deadline for the signer (then counts a miss),\n"
		"                        asks PubKey and --n signatures, then is down for --down-ms\n"
		"  --accept-deadline MS  the node's start-up window (default 3000, CometBFT's)\n"
		"  --down-ms A[-B]       how long the node stays down between starts (default 1000)\n"
		"  --flood-s S           hostile refusal-flood: seconds of back-to-back refused requests\n"
		"  --hold S              after the requests keep each connection open for S seconds\n"
		"                        (a Ping every second, as an idle node); SIGTERM/SIGINT end\n"
		"                        the hold: connections close, the summary is printed\n"
		"  -v                    one line per request\n"
		"exit: 0 all verified, 1 failures, 2 usage, 3 no signer / setup error\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;
	errno = 0;
	if (s[0] == '-' || s[0] == '\0')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_pubkey(const char *s, uint8_t pub[32])
{
	char hrp[100];
	uint8_t data[64];
	size_t n = 0;
	if (strlen(s) == 64 && enc_hex_decode(s, 64, pub, 32, &n) == KMS_OK && n == 32)
		return 0;
	if (enc_bech32_decode(s, hrp, sizeof(hrp), data, sizeof(data), &n) != KMS_OK)
		return -1;
	/* amino prefix 16 24 de 64 20 then the key, as Cosmos shows consensus keys */
	static const uint8_t amino[5] = { 0x16, 0x24, 0xde, 0x64, 0x20 };
	if (n == 37 && memcmp(data, amino, 5) == 0) {
		memcpy(pub, data + 5, 32);
		return 0;
	}
	if (n == 32) {
		memcpy(pub, data, 32);
		return 0;
	}
	return -1;
}

enum {
	OPT_LISTEN = 256,
	OPT_VERSION,
	OPT_CHAIN,
	OPT_EXPECT,
	OPT_PREFIX,
	OPT_MODE,
	OPT_N,
	OPT_START,
	OPT_CONC,
	OPT_PING,
	OPT_EXTMAX,
	OPT_NOEXT,
	OPT_SEED,
	OPT_TIMEOUT,
	OPT_ACCEPT,
	OPT_ADDRFILE,
	OPT_ADDRID,
	OPT_JSON,
	OPT_REPLAY,
	OPT_HOSTILE,
	OPT_CONNS,
	OPT_CORRUPT,
	OPT_HOLD,
	OPT_HELP,
	OPT_STRICT,
	OPT_RESTARTS,
	OPT_ACCEPT_DL,
	OPT_DOWN,
	OPT_FLOOD,
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "version", required_argument, NULL, OPT_VERSION },
	{ "chain-id", required_argument, NULL, OPT_CHAIN },
	{ "expect-pubkey", required_argument, NULL, OPT_EXPECT },
	{ "bech32-prefix", required_argument, NULL, OPT_PREFIX },
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "n", required_argument, NULL, OPT_N },
	{ "start-height", required_argument, NULL, OPT_START },
	{ "concurrency", required_argument, NULL, OPT_CONC },
	{ "ping-every", required_argument, NULL, OPT_PING },
	{ "ext-max", required_argument, NULL, OPT_EXTMAX },
	{ "no-ext-sig", no_argument, NULL, OPT_NOEXT },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "accept-timeout", required_argument, NULL, OPT_ACCEPT },
	{ "addr-file", required_argument, NULL, OPT_ADDRFILE },
	{ "addr-with-node-id", no_argument, NULL, OPT_ADDRID },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "replay", required_argument, NULL, OPT_REPLAY },
	{ "hostile", required_argument, NULL, OPT_HOSTILE },
	{ "connections", required_argument, NULL, OPT_CONNS },
	{ "corrupt-check", no_argument, NULL, OPT_CORRUPT },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "strict", no_argument, NULL, OPT_STRICT },
	{ "restarts", required_argument, NULL, OPT_RESTARTS },
	{ "accept-deadline", required_argument, NULL, OPT_ACCEPT_DL },
	{ "down-ms", required_argument, NULL, OPT_DOWN },
	{ "flood-s", required_argument, NULL, OPT_FLOOD },
	{ NULL, 0, NULL, 0 },
};

static int bad(const char *opt, const char *val)
{
	fprintf(stderr, "p11kms-sim: %s: invalid value \"%s\"\n", opt, val);
	return EXIT_USAGE;
}

/* "A" or "A-B" milliseconds. */
static int parse_range(const char *a, int *lo, int *hi)
{
	char buf[64];
	char *dash;
	uint64_t x = 0, y = 0;

	if (strlen(a) >= sizeof(buf))
		return -1;
	(void)snprintf(buf, sizeof(buf), "%s", a);
	dash = strchr(buf, '-');
	if (dash != NULL)
		*dash = '\0';
	if (parse_u64(buf, 0, 3600000, &x) != 0 ||
	    (dash != NULL && parse_u64(dash + 1, x, 3600000, &y) != 0))
		return -1;
	*lo = (int)x;
	*hi = dash != NULL ? (int)y : (int)x;
	return 0;
}

/* The options that are not about the consensus walk itself. */
static int parse_node_opt(struct sim_opts *o, int c, const char *a)
{
	uint64_t u = 0;
	switch (c) {
	case OPT_STRICT:
		o->cfg.strict = 1;
		return 0;
	case OPT_RESTARTS:
		if (parse_u64(a, 1, 100000, &u) != 0)
			return bad("--restarts", a);
		o->restart.restarts = (int)u;
		return 0;
	case OPT_ACCEPT_DL:
		if (parse_u64(a, 1, 600000, &u) != 0)
			return bad("--accept-deadline", a);
		o->restart.accept_deadline_ms = (int)u;
		return 0;
	case OPT_DOWN:
		return parse_range(a, &o->restart.down_min_ms, &o->restart.down_max_ms) == 0 ?
			       0 :
			       bad("--down-ms", a);
	case OPT_FLOOD:
		if (parse_u64(a, 1, 3600, &u) != 0)
			return bad("--flood-s", a);
		o->cfg.flood_ms = (int)u * 1000;
		return 0;
	default:
		usage(stderr);
		return EXIT_USAGE;
	}
}

static int parse_one(struct sim_opts *o, int c, const char *a)
{
	uint64_t u = 0;
	switch (c) {
	case OPT_LISTEN:
		if (o->n_listen >= SIM_MAX_CONN)
			return bad("--listen", a);
		o->listen[o->n_listen++] = a;
		return 0;
	case OPT_VERSION:
		return pv_version_parse(a, &o->cfg.version) == KMS_OK ? 0 : bad("--version", a);
	case OPT_CHAIN:
		if (strlen(a) == 0 || strlen(a) > PV_CHAIN_ID_MAX)
			return bad("--chain-id", a);
		(void)snprintf(o->cfg.chain_id, sizeof(o->cfg.chain_id), "%s", a);
		return 0;
	case OPT_EXPECT:
		o->has_expect_pub = 1;
		return parse_pubkey(a, o->expect_pub) == 0 ? 0 : bad("--expect-pubkey", a);
	case OPT_PREFIX:
		o->bech32_prefix = a;
		return 0;
	case OPT_MODE:
		if (strcmp(a, "votes") == 0)
			o->cfg.mode = SIM_MODE_VOTES;
		else if (strcmp(a, "proposals") == 0)
			o->cfg.mode = SIM_MODE_PROPOSALS;
		else if (strcmp(a, "mixed") == 0)
			o->cfg.mode = SIM_MODE_MIXED;
		else
			return bad("--mode", a);
		return 0;
	case OPT_N:
		if (parse_u64(a, 0, UINT64_C(1) << 40, &u) != 0)
			return bad("--n", a);
		o->cfg.n = u;
		return 0;
	case OPT_START:
		if (parse_u64(a, 1, UINT64_C(1) << 62, &u) != 0)
			return bad("--start-height", a);
		o->cfg.start_height = (int64_t)u;
		return 0;
	case OPT_CONC:
		if (parse_u64(a, 1, SIM_MAX_CONN, &u) != 0)
			return bad("--concurrency", a);
		o->concurrency = (int)u;
		return 0;
	case OPT_PING:
		if (parse_u64(a, 0, 1000000, &u) != 0)
			return bad("--ping-every", a);
		o->cfg.ping_every = (int)u;
		return 0;
	case OPT_EXTMAX:
		if (parse_u64(a, 0, 256, &u) != 0)
			return bad("--ext-max", a);
		o->cfg.ext_len_max = (int)u;
		return 0;
	case OPT_NOEXT:
		o->cfg.expect_ext_sig = 0;
		return 0;
	case OPT_SEED:
		if (parse_u64(a, 0, UINT64_MAX, &u) != 0)
			return bad("--seed", a);
		o->cfg.seed = u;
		return 0;
	case OPT_TIMEOUT:
		if (parse_u64(a, 1, 3600000, &u) != 0)
			return bad("--timeout", a);
		o->cfg.timeout_ms = (int)u;
		return 0;
	case OPT_ACCEPT:
		if (parse_u64(a, 1, 86400, &u) != 0)
			return bad("--accept-timeout", a);
		o->accept_timeout_ms = (int)u * 1000;
		return 0;
	case OPT_ADDRID:
		o->addr_with_id = 1;
		return 0;
	case OPT_ADDRFILE:
		o->addr_file = a;
		return 0;
	case OPT_JSON:
		o->json = 1;
		return 0;
	case OPT_REPLAY:
		o->replay = a;
		return 0;
	case OPT_HOSTILE:
		o->hostile = a;
		return 0;
	case OPT_CONNS:
		if (parse_u64(a, 1, 1000000, &u) != 0)
			return bad("--connections", a);
		o->connections = (int)u;
		return 0;
	case OPT_CORRUPT:
		o->cfg.corrupt_check = 1;
		return 0;
	case OPT_HOLD:
		if (parse_u64(a, 1, 86400, &u) != 0)
			return bad("--hold", a);
		o->hold_ms = (int)u * 1000;
		return 0;
	case 'v':
		o->verbose = 1;
		return 0;
	case OPT_HELP:
		usage(stdout);
		exit(0);
	default:
		return parse_node_opt(o, c, a);
	}
}

static int parse_args(int argc, char **argv, struct sim_opts *o)
{
	int c, r;
	memset(o, 0, sizeof(*o));
	o->cfg.version = PV_V0_37;
	(void)snprintf(o->cfg.chain_id, sizeof(o->cfg.chain_id), "sim-chain");
	o->cfg.mode = SIM_MODE_MIXED;
	o->cfg.n = 1000;
	o->cfg.start_height = 1;
	o->cfg.seed = 1;
	o->cfg.ping_every = 50;
	o->cfg.timeout_ms = 5000;
	o->cfg.ext_len_max = 64;
	o->cfg.expect_ext_sig = 1;
	o->concurrency = 1;
	o->connections = 1;
	o->accept_timeout_ms = 30000;
	o->cfg.flood_ms = 20000;
	o->restart.accept_deadline_ms = 3000;
	o->restart.down_min_ms = o->restart.down_max_ms = 1000;
	while ((c = getopt_long(argc, argv, "v", long_opts, NULL)) != -1) {
		r = parse_one(o, c, optarg);
		if (r != 0)
			return r;
	}
	if (optind != argc) {
		fprintf(stderr, "p11kms-sim: unexpected argument \"%s\"\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (o->hostile != NULL && strcmp(o->hostile, "list") == 0) {
		for (const char *const *n = sim_hostile_names(); *n != NULL; n++)
			printf("%s\n", *n);
		exit(0);
	}
	if (o->hostile != NULL && strcmp(o->hostile, "all") == 0) {
		size_t k = 0;
		while (sim_hostile_names()[k] != NULL)
			k++;
		if (o->connections == 1)
			o->connections = (int)k; /* each mode once */
	} else if (o->hostile != NULL && !sim_hostile_known(o->hostile)) {
		fprintf(stderr, "p11kms-sim: unknown hostile mode \"%s\" (--hostile list)\n",
			o->hostile);
		return EXIT_USAGE;
	}
	if (o->n_listen == 0) {
		fprintf(stderr, "p11kms-sim: --listen is required\n");
		return EXIT_USAGE;
	}
	if (o->n_listen > 1 && o->concurrency == 1)
		o->concurrency = o->n_listen;
	if (o->n_listen > 1 && o->n_listen != o->concurrency) {
		fprintf(stderr, "p11kms-sim: %d --listen addresses but --concurrency %d\n",
			o->n_listen, o->concurrency);
		return EXIT_USAGE;
	}
	if ((o->replay != NULL || o->hostile != NULL || o->restart.restarts > 0) &&
	    o->concurrency != 1) {
		fprintf(stderr, "p11kms-sim: --replay, --hostile and --restarts use one listener\n");
		return EXIT_USAGE;
	}
	if (o->cfg.version == PV_AUTO) {
		fprintf(stderr, "p11kms-sim: --version auto: a node speaks one version (the signer "
				"chooses auto)\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* The i-th sentry's address derived from the first: PORT+i (port 0 stays 0), or path.i. */
static void derive_addr(const char *base, int i, char *out, size_t cap)
{
	const char *colon = strrchr(base, ':');
	if (strncmp(base, "unix://", 7) == 0) {
		(void)snprintf(out, cap, "%s.%d", base, i);
		return;
	}
	if (colon != NULL) {
		uint64_t port = 0;
		if (parse_u64(colon + 1, 0, 65535, &port) == 0 && port != 0 &&
		    port + (uint64_t)i <= 65535) {
			(void)snprintf(out, cap, "%.*s:%u", (int)(colon - base), base,
				       (unsigned)(port + (uint64_t)i));
			return;
		}
	}
	(void)snprintf(out, cap, "%s", base);
}

static int open_listeners(struct sim_run *run)
{
	struct sim_opts *o = run->o;
	char a[400];
	for (int i = 0; i < o->concurrency; i++) {
		if (i < o->n_listen)
			(void)snprintf(a, sizeof(a), "%s", o->listen[i]);
		else
			derive_addr(o->listen[0], i, a, sizeof(a));
		if (sim_listen(a, &run->l[i]) != KMS_OK)
			return -1;
	}
	if (o->addr_file != NULL) {
		const char *lines[SIM_MAX_CONN];
		for (int i = 0; i < o->concurrency; i++)
			lines[i] = o->addr_with_id ? run->l[i].id_addr_str : run->l[i].addr_str;
		if (sim_write_addr_file(o->addr_file, lines, o->concurrency) != 0)
			return -1;
	}
	for (int i = 0; i < o->concurrency; i++)
		fprintf(stderr, "p11kms-sim: listening on %s (%s, %s)\n", run->l[i].id_addr_str,
			run->l[i].addr.scheme == NET_TCP ? "Secret Connection" : "plain",
			pv_version_name(o->cfg.version));
	return 0;
}

/* PubKeyRequest first, as the node does; all sentries must see the same key. */
static int get_pubkey(struct sim_run *run, struct sim_conn *c, int idx)
{
	struct sim_opts *o = run->o;
	struct pv_request req;
	struct pv_response *resp = NULL;
	double ms = 0;
	char why[256];
	char hex[65];
	int r, ok = 0;

	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PUBKEY;
	(void)snprintf(req.chain_id, sizeof(req.chain_id), "%s", o->cfg.chain_id);
	r = sim_call(c, o->cfg.version, &req, o->cfg.timeout_ms, &resp, &ms);
	pthread_mutex_lock(&run->st.mu);
	if (r != KMS_OK) {
		sim_stats_fail(&run->st, "sentry %d: PubKeyRequest: %s", idx, kms_strerror(r));
	} else if (sim_verify(o->cfg.version, run->pub, &req, resp, 1, -1, why, sizeof(why)) !=
		   SIM_OK) {
		sim_stats_fail(&run->st, "sentry %d: PubKeyRequest: %s", idx, why);
	} else if (o->has_expect_pub && memcmp(resp->pub_key, o->expect_pub, 32) != 0) {
		if (enc_hex_encode(resp->pub_key, 32, hex, sizeof(hex)) != KMS_OK)
			hex[0] = '\0';
		sim_stats_fail(&run->st, "sentry %d: signer's key %s is not the expected one", idx,
			       hex);
	} else if (run->have_pub && memcmp(resp->pub_key, run->pub, 32) != 0) {
		sim_stats_fail(&run->st, "sentry %d: a different key than sentry 0", idx);
	} else {
		memcpy(run->pub, resp->pub_key, 32);
		run->have_pub = 1;
		ok = 1;
	}
	pthread_mutex_unlock(&run->st.mu);
	pv_response_free(resp);
	return ok ? 0 : -1;
}

static enum sim_verdict note_result(struct sim_run *run, int idx, const struct pv_request *req,
				    const struct pv_response *resp, double ms, uint64_t *rng)
{
	const struct sim_cfg *cfg = &run->o->cfg;
	char why[300];
	enum sim_verdict v = sim_verify(cfg->version, run->pub, req, resp, cfg->expect_ext_sig, -1,
					why, sizeof(why));
	long long h = req->kind == PV_REQ_SIGN_VOTE ? (long long)req->vote.height :
						      (long long)req->proposal.height;
	int rd = req->kind == PV_REQ_SIGN_VOTE ? (int)req->vote.round : (int)req->proposal.round;

	if (run->o->verbose)
		fprintf(stderr, "sentry %d: %s h=%lld r=%d %.3f ms: %s%s%s\n", idx,
			pv_req_kind_name(req->kind), h, rd, ms, sim_verdict_name(v),
			why[0] ? ": " : "", why);
	sim_stats_latency(&run->st, ms);
	run->st.requests++;
	if (req->kind == PV_REQ_SIGN_VOTE)
		run->st.votes++;
	else
		run->st.proposals++;
	if (v == SIM_REFUSED) {
		run->st.refused++;
		if (resp->error_code >= 0 && resp->error_code < 16)
			run->st.refused_by_code[resp->error_code]++;
		sim_stats_fail(&run->st, "sentry %d: h=%lld r=%d refused: %s", idx, h, rd, why);
		return v;
	}
	if (v != SIM_OK) {
		run->st.verify_failures++;
		sim_stats_fail(&run->st, "sentry %d: %s", idx, why);
		return v;
	}
	run->st.signed_ok++;
	if (resp->kind == PV_REQ_SIGN_VOTE && resp->vote.extension_signature_len == PV_SIG_LEN)
		run->st.ext_sigs++;
	if (!cfg->corrupt_check)
		return v;
	/* Self-test: the same response with one bit of a signature flipped must fail. */
	*rng = sim_mix(*rng);
	v = sim_verify(cfg->version, run->pub, req, resp, cfg->expect_ext_sig, (int)(*rng % 512),
		       why, sizeof(why));
	if (v == SIM_BAD_SIG || v == SIM_BAD_EXT_SIG)
		run->st.corrupt_detected++;
	else
		run->st.corrupt_missed++;
	return SIM_OK;
}

/*
 * --strict: the real node does not carry on after a reply it cannot use. A
 * key it cannot read makes it exit ("can't get pubkey"); a v0.38+ node
 * panics on a precommit without the extension signature it needs, or with one
 * where none may be. Hang up at once, as the node's process would.
 */
static void node_gives_up(struct sim_run *run, struct sim_conn *c, int idx, int *alive)
{
	if (!run->o->cfg.strict || !*alive)
		return;
	fprintf(stderr, "p11kms-sim: sentry %d: a real %s node would stop here: hanging up\n", idx,
		pv_version_name(run->o->cfg.version));
	sim_conn_close(c);
	*alive = 0;
}

static int do_ping(struct sim_run *run, struct sim_conn *c, int idx)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	double ms = 0;
	int r;
	memset(&req, 0, sizeof(req));
	req.kind = PV_REQ_PING;
	r = sim_call(c, run->o->cfg.version, &req, run->o->cfg.timeout_ms, &resp, &ms);
	pthread_mutex_lock(&run->st.mu);
	if (r != KMS_OK || resp->kind != PV_REQ_PING) {
		sim_stats_fail(&run->st, "sentry %d: ping: %s", idx,
			       r != KMS_OK ? kms_strerror(r) : "wrong response");
		r = -1;
	} else {
		run->st.pings++;
	}
	pthread_mutex_unlock(&run->st.mu);
	pv_response_free(resp);
	return r == KMS_OK ? 0 : -1;
}

static int64_t wall_ms(void)
{
	return net_now_ms();
}

/* Set by SIGTERM/SIGINT during --hold (lock-free: read by the connection threads). */
static atomic_int hold_end;

static void on_hold_signal(int sig)
{
	(void)sig;
	atomic_store(&hold_end, 1);
}

/*
 * --hold: the connection stays up after the run, with a Ping every second
 * (the signer's read timeout must not end it), until the hold time passes or
 * a signal asks to end it; a test then sees "node disconnected" on cue.
 */
static void hold(struct sim_run *run, struct sim_conn *c, int idx, int alive)
{
	int64_t end = wall_ms() + run->o->hold_ms;
	int ticks = 0;
	while (alive && !atomic_load(&hold_end) && wall_ms() < end) {
		struct timespec ts = { 0, 100 * 1000000L };
		(void)nanosleep(&ts, NULL);
		if (++ticks % 10 == 0)
			alive = do_ping(run, c, idx) == 0;
	}
}

static void *stream_thread(void *arg)
{
	struct sim_thread *t = arg;
	struct sim_run *run = t->run;
	struct sim_opts *o = run->o;
	struct sim_conn c;
	struct sim_gen g;
	struct pv_request req;
	uint64_t rng = o->cfg.seed ^ (uint64_t)t->idx;
	int alive = 0;
	int r = sim_accept(&run->l[t->idx], o->accept_timeout_ms, &c);

	if (r != KMS_OK) {
		pthread_mutex_lock(&run->st.mu);
		run->setup_failed = 1;
		sim_stats_fail(&run->st, "sentry %d: no signer on %s: %s", t->idx,
			       run->l[t->idx].addr_str, kms_strerror(r));
		pthread_mutex_unlock(&run->st.mu);
	} else {
		fprintf(stderr, "p11kms-sim: signer connected on %s\n", run->l[t->idx].addr_str);
		alive = 1;
		if (get_pubkey(run, &c, t->idx) != 0) {
			node_gives_up(run, &c, t->idx, &alive); /* --strict: exits */
			alive = 0;
		}
	}
	if (o->concurrency > 1)
		(void)pthread_barrier_wait(&run->bar);
	pthread_mutex_lock(&run->st.mu);
	if (run->st.t_first_ms == 0)
		run->st.t_first_ms = wall_ms();
	pthread_mutex_unlock(&run->st.mu);
	sim_gen_init(&g, &o->cfg, t->idx);
	for (uint64_t i = 0; i < o->cfg.n; i++) {
		sim_gen_next(&g, &req);
		if (alive) {
			struct pv_response *resp = NULL;
			double ms = 0;
			r = sim_call(&c, o->cfg.version, &req, o->cfg.timeout_ms, &resp, &ms);
			pthread_mutex_lock(&run->st.mu);
			if (r != KMS_OK) {
				sim_stats_fail(&run->st,
					       "sentry %d: request %" PRIu64
					       ": %s (connection dropped)",
					       t->idx, i, kms_strerror(r));
				alive = 0;
			} else {
				enum sim_verdict v = note_result(run, t->idx, &req, resp, ms, &rng);
				if (v != SIM_OK && v != SIM_REFUSED)
					node_gives_up(run, &c, t->idx, &alive);
			}
			pthread_mutex_unlock(&run->st.mu);
			pv_response_free(resp);
			if (alive && o->cfg.ping_every > 0 &&
			    (i + 1) % (uint64_t)o->cfg.ping_every == 0)
				alive = do_ping(run, &c, t->idx) == 0;
		}
		/* Lockstep: every sentry asks for the same H/R/S before anyone moves on. */
		if (o->concurrency > 1)
			(void)pthread_barrier_wait(&run->bar);
	}
	pthread_mutex_lock(&run->st.mu);
	run->st.t_last_ms = wall_ms();
	pthread_mutex_unlock(&run->st.mu);
	hold(run, &c, t->idx, alive);
	sim_conn_close(&c);
	return NULL;
}

static void print_summary(struct sim_run *run, const char *what)
{
	struct sim_opts *o = run->o;
	struct sim_stats *s = &run->st;
	double secs = (double)(s->t_last_ms - s->t_first_ms) / 1000.0;
	double rps = secs > 0 ? (double)s->requests / secs : 0.0;
	double p50 = sim_stats_pct(s, 50), p90 = sim_stats_pct(s, 90), p99 = sim_stats_pct(s, 99);
	double mx = sim_stats_max(s);
	char hex[65] = "", b32[120] = "";

	if (run->have_pub) {
		if (enc_hex_encode_upper(run->pub, 32, hex, sizeof(hex)) != KMS_OK)
			hex[0] = '\0';
		if (o->bech32_prefix != NULL &&
		    enc_ed25519_bech32_pub(o->bech32_prefix, run->pub, b32, sizeof(b32)) != KMS_OK)
			b32[0] = '\0';
	}
	if (o->json) {
		json_t *j = json_pack(
			"{s:s,s:s,s:s,s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "mode",
			what, "version", pv_version_name(o->cfg.version), "chain_id",
			o->cfg.chain_id, "pubkey", hex, "connections", o->concurrency, "requests",
			(json_int_t)s->requests, "signed", (json_int_t)s->signed_ok, "votes",
			(json_int_t)s->votes, "proposals", (json_int_t)s->proposals,
			"extension_signatures", (json_int_t)s->ext_sigs, "pings",
			(json_int_t)s->pings, "refused", (json_int_t)s->refused, "failures",
			(json_int_t)s->failures, "verify_failures", (json_int_t)s->verify_failures,
			"double_sign_refusals",
			(json_int_t)s->refused_by_code[PV_CODE_DOUBLE_SIGN]);
		if (j == NULL)
			return;
		(void)json_object_set_new(j, "latency_ms",
					  json_pack("{s:f,s:f,s:f,s:f}", "p50", p50, "p90", p90,
						    "p99", p99, "max", mx));
		(void)json_object_set_new(j, "requests_per_s", json_real(rps));
		(void)json_object_set_new(j, "elapsed_s", json_real(secs));
		if (b32[0])
			(void)json_object_set_new(j, "pubkey_bech32", json_string(b32));
		if (o->cfg.corrupt_check) {
			(void)json_object_set_new(j, "corrupt_detected",
						  json_integer((json_int_t)s->corrupt_detected));
			(void)json_object_set_new(j, "corrupt_missed",
						  json_integer((json_int_t)s->corrupt_missed));
		}
		if (s->first_failure[0])
			(void)json_object_set_new(j, "first_failure",
						  json_string(s->first_failure));
		sim_json_print(j);
		return;
	}
	printf("p11kms-sim %s: %s chain=%s sentries=%d\n", what, pv_version_name(o->cfg.version),
	       o->cfg.chain_id, o->concurrency);
	if (hex[0])
		printf("  signer key:     %s%s%s\n", hex, b32[0] ? "\n                  " : "",
		       b32);
	printf("  requests:       %" PRIu64 " (%" PRIu64 " votes, %" PRIu64 " proposals), %" PRIu64
	       " pings\n",
	       s->requests, s->votes, s->proposals, s->pings);
	printf("  verified:       %" PRIu64 " signatures + %" PRIu64
	       " extension signatures (OpenSSL Ed25519)\n",
	       s->signed_ok, s->ext_sigs);
	printf("  refused:        %" PRIu64 " (double-sign code 2: %" PRIu64 ")\n", s->refused,
	       s->refused_by_code[PV_CODE_DOUBLE_SIGN]);
	printf("  failures:       %" PRIu64 "%s%s\n", s->failures,
	       s->first_failure[0] ? ", first: " : "", s->first_failure);
	printf("  latency ms:     p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", p50, p90, p99, mx);
	printf("  throughput:     %.0f requests/s over %.2f s\n", rps, secs);
	if (o->cfg.corrupt_check)
		printf("  corrupt-check:  %" PRIu64 " flipped signatures rejected, %" PRIu64
		       " accepted\n",
		       s->corrupt_detected, s->corrupt_missed);
}

static int run_stream(struct sim_run *run)
{
	struct sim_opts *o = run->o;
	struct sim_thread t[SIM_MAX_CONN];
	int k = o->concurrency;

	if (k > 1 && pthread_barrier_init(&run->bar, NULL, (unsigned)k) != 0)
		return EXIT_SETUP;
	for (int i = 0; i < k; i++) {
		t[i].run = run;
		t[i].idx = i;
		if (pthread_create(&t[i].tid, NULL, stream_thread, &t[i]) != 0) {
			fprintf(stderr, "p11kms-sim: pthread_create failed\n");
			exit(EXIT_SETUP);
		}
	}
	for (int i = 0; i < k; i++)
		(void)pthread_join(t[i].tid, NULL);
	if (k > 1)
		(void)pthread_barrier_destroy(&run->bar);
	print_summary(run, o->cfg.corrupt_check ? "corrupt-check" : "stream");
	if (run->setup_failed)
		return EXIT_SETUP;
	if (o->cfg.corrupt_check)
		return run->st.failures == 0 && run->st.corrupt_missed == 0 &&
				       run->st.corrupt_detected > 0 ?
			       0 :
			       EXIT_FAILURES;
	return run->st.failures == 0 ? 0 : EXIT_FAILURES;
}

static int run_replay(struct sim_run *run)
{
	struct sim_conn c;
	int r = sim_accept(&run->l[0], run->o->accept_timeout_ms, &c);
	int fails;
	if (r != KMS_OK) {
		fprintf(stderr, "p11kms-sim: no signer on %s: %s\n", run->l[0].addr_str,
			kms_strerror(r));
		return EXIT_SETUP;
	}
	if (get_pubkey(run, &c, 0) != 0) {
		fprintf(stderr, "p11kms-sim: %s\n", run->st.first_failure);
		sim_conn_close(&c);
		return EXIT_FAILURES;
	}
	run->st.t_first_ms = wall_ms();
	fails = sim_replay(&c, &run->o->cfg, run->pub, run->o->replay, &run->st, run->o->verbose);
	run->st.t_last_ms = wall_ms();
	sim_conn_close(&c);
	print_summary(run, "replay");
	return fails == 0 && run->st.failures == 0 ? 0 : EXIT_FAILURES;
}

static int run_hostile(struct sim_run *run)
{
	struct sim_opts *o = run->o;
	char outcome[200];
	json_t *arr = json_array();
	int r = 0;

	for (int i = 0; i < o->connections; i++) {
		int fd = -1;
		int ar = net_accept(run->l[0].lfd, o->accept_timeout_ms, &fd);
		if (ar != KMS_OK) {
			fprintf(stderr, "p11kms-sim: hostile %s: no signer connection %d: %s\n",
				o->hostile, i, kms_strerror(ar));
			r = EXIT_SETUP;
			break;
		}
		const char *mode = o->hostile;
		if (strcmp(mode, "all") == 0) {
			size_t k = 0;
			while (sim_hostile_names()[k] != NULL)
				k++;
			mode = sim_hostile_names()[(size_t)i % k];
		}
		sim_hostile_run(mode, &run->l[0], fd, &o->cfg, outcome, sizeof(outcome));
		net_close(&fd);
		if (o->json)
			(void)json_array_append_new(
				arr, json_pack("{s:s,s:s}", "mode", mode, "outcome", outcome));
		else
			printf("hostile %-20s connection %d: %s\n", mode, i, outcome);
	}
	if (o->json) {
		json_t *j = json_pack("{s:s,s:s,s:o}", "hostile", o->hostile, "version",
				      pv_version_name(o->cfg.version), "outcomes", arr);
		sim_json_print(j);
	} else {
		json_decref(arr);
	}
	return r;
}

int main(int argc, char **argv)
{
	static struct sim_opts o;
	static struct sim_run run;
	int r;

	r = parse_args(argc, argv, &o);
	if (r != 0)
		return r;
	(void)signal(SIGPIPE, SIG_IGN);
	if (o.hold_ms > 0) {
		(void)signal(SIGTERM, on_hold_signal);
		(void)signal(SIGINT, on_hold_signal);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	kms_log_set_level(KMS_LOG_WARN);
	run.o = &o;
	sim_stats_init(&run.st);
	for (int i = 0; i < SIM_MAX_CONN; i++)
		run.l[i].lfd = -1;
	if (o.restart.restarts > 0) {
		o.restart.json = o.json;
		o.restart.addr_file = o.addr_file;
		o.restart.has_expect_pub = o.has_expect_pub;
		memcpy(o.restart.expect_pub, o.expect_pub, 32);
		r = sim_restarts(o.listen[0], &o.cfg, &o.restart);
		goto out;
	}
	if (open_listeners(&run) != 0) {
		r = EXIT_SETUP;
		goto out;
	}
	if (o.hostile != NULL)
		r = run_hostile(&run);
	else if (o.replay != NULL)
		r = run_replay(&run);
	else
		r = run_stream(&run);
out:
	for (int i = 0; i < SIM_MAX_CONN; i++)
		sim_listener_close(&run.l[i]);
	sim_stats_free(&run.st);
	return r;
}
