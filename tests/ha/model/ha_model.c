/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ha_model: an explicit-state model of the HA protocol of docs/ha.md, explored
 * exhaustively (breadth first, every interleaving) at small scope.
 *
 * Two signer hosts share one etcd key (the cluster mark). They serve -r requests
 * in all (default 3, any split between the hosts), each at one of two H/R/S values with sign bytes A, A' (A with
 * another timestamp, a vote) or B (another block). The host actions carry the
 * step names of docs/ha.md: LOCAL_CHECK, CLUSTER_CHECK, SIGN, COMMIT, RESOLVE,
 * ADOPT, PERSIST, RELEASE, and CRASH at every step. etcd answers COMMIT with
 * success, compare failure, or an unknown outcome (applied, not applied, or
 * left in flight and applied or dropped at any later point: GHOST_APPLY /
 * GHOST_DROP). WATCH refreshes a host's cached mark at any moment.
 *
 * Invariants, checked in every reachable state:
 *   I1 no two different sign bytes are released for one H/R/S;
 *   I2 every released signature is one the cluster mark has held;
 *   I3 every host's local state is a mark the cluster has held.
 * Mutations (-m NAME) remove one safety step; docs/ha.md lists what each must give.
 *
 * Usage: ha_model [-m MUTATION] [-e expect] [-v]
 *   -e violation  exit 0 only if I1 is violated (a mutation test)
 *   -e safe       exit 0 only if every invariant holds (default)
 *   -v            print the counterexample trace
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_HOSTS 2
#define MAX_REQ 4    /* requests in all (both hosts), at most (-r) */
#define MAX_ROUNDS 4 /* CLUSTER_CHECK rounds after compare failures (as src/ha) */
#define N_HRS 2	     /* H/R/S values 1..N_HRS (0: nothing signed) */

/* A mark (or a request, or a signature): H/R/S 0..2 and sign bytes 1..3; 0 = none. */
enum { BYTES_A = 1, BYTES_A2 = 2, BYTES_B = 3 };
#define MARK(h, b) ((uint8_t)((h) * 4 + (b)))
#define M_HRS(m) ((m) / 4)
#define M_BYTES(m) ((m) % 4)
#define M_BIT(m) (1u << ((M_HRS(m) - 1) * 4 + M_BYTES(m)))

enum pc {
	PC_IDLE = 0,
	PC_LOCAL_CHECK,
	PC_CLUSTER_CHECK,
	PC_SIGN,
	PC_COMMIT,
	PC_RESOLVE,
	PC_ADOPT,
	PC_PERSIST,
	PC_RELEASE,
};
static const char *const pc_name[] = { "IDLE",	 "LOCAL_CHECK", "CLUSTER_CHECK",
				       "SIGN",	 "COMMIT",	"RESOLVE",
				       "ADOPT",	 "PERSIST",	"RELEASE" };

enum mutation {
	MUT_NONE = 0,
	MUT_RELEASE_BEFORE_COMMIT,
	MUT_TIMEOUT_AS_SUCCESS,
	MUT_PERSIST_BEFORE_COMMIT,
	MUT_NO_COMPARE,
	MUT_TIMEOUT_AS_NOT_APPLIED,
};
static const char *const mut_name[] = { "none",		     "release_before_commit",
					"timeout_as_success",	     "persist_before_commit",
					"no_compare",		     "timeout_as_not_applied" };

struct host {
	uint8_t pc;
	uint8_t req;	    /* the request being served (a mark value) */
	uint8_t local;	    /* the local guard's durable record */
	uint8_t cache;	    /* cached mark ... */
	uint8_t cache_rev;  /* ... its mod_revision ... */
	uint8_t cache_ok;   /* ... valid (0 after an error / unknown outcome / crash) */
	uint8_t dec_rev;    /* the revision CLUSTER_CHECK decided against (COMMIT compares it) */
	uint8_t sig;	    /* the signature in memory (the mark it would be), 0 none */
	uint8_t out;	    /* what RELEASE hands out (a mark value) */
	uint8_t rounds;	    /* CLUSTER_CHECK rounds of this request */
	uint8_t released_early; /* mutation release_before_commit: already released */
	uint8_t ghost_ok;   /* a transaction of this host in flight ... */
	uint8_t ghost_rev;  /* ... comparing this revision ... */
	uint8_t ghost_val;  /* ... putting this mark */
};

struct state {
	uint8_t mark, rev; /* etcd: the cluster mark and its mod_revision */
	uint16_t held;	   /* every mark the cluster has ever held (bit per mark) */
	uint8_t released[N_HRS + 1]; /* per H/R/S: bit per sign bytes released */
	uint8_t nreq; /* requests begun, all hosts together (at most -r) */
	struct host h[N_HOSTS];
};

static enum mutation g_mut;
static int g_max_req = 3;

/* ---- the FilePV decision (docs/state.md), on a stored mark ---- */

enum verdict { V_REGRESSION, V_CONFLICT, V_STORED, V_AHEAD };

static enum verdict decide(uint8_t stored, uint8_t req)
{
	if (M_HRS(req) < M_HRS(stored))
		return V_REGRESSION;
	if (M_HRS(req) > M_HRS(stored))
		return V_AHEAD;
	if (M_BYTES(stored) == M_BYTES(req))
		return V_STORED;
	/* A and A' differ only in the vote timestamp: the stored signature and timestamp. */
	if ((M_BYTES(stored) == BYTES_A || M_BYTES(stored) == BYTES_A2) &&
	    (M_BYTES(req) == BYTES_A || M_BYTES(req) == BYTES_A2))
		return V_STORED;
	return V_CONFLICT;
}

/* ---- the explored graph ---- */

struct node {
	struct state s;
	uint32_t parent;
	char what[48];
};

static struct node *g_nodes;
static size_t g_n, g_cap;
static uint32_t *g_table; /* open addressing: node index + 1, 0 = empty */
static size_t g_tcap;

static uint64_t hash_state(const struct state *s)
{
	const uint8_t *p = (const uint8_t *)s;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof(*s); i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static void grow_table(void)
{
	size_t ncap = g_tcap ? g_tcap * 2 : (1u << 20);
	uint32_t *nt = calloc(ncap, sizeof(*nt));
	if (nt == NULL) {
		fprintf(stderr, "ha_model: out of memory\n");
		exit(2);
	}
	for (size_t i = 0; i < g_tcap; i++) {
		if (g_table[i] == 0)
			continue;
		size_t j = hash_state(&g_nodes[g_table[i] - 1].s) & (ncap - 1);
		while (nt[j] != 0)
			j = (j + 1) & (ncap - 1);
		nt[j] = g_table[i];
	}
	free(g_table);
	g_table = nt;
	g_tcap = ncap;
}

/* Adds s if new; returns 1 when added. */
static int visit(const struct state *s, uint32_t parent, const char *what)
{
	if ((g_n + 1) * 2 > g_tcap)
		grow_table();
	size_t j = hash_state(s) & (g_tcap - 1);
	while (g_table[j] != 0) {
		if (memcmp(&g_nodes[g_table[j] - 1].s, s, sizeof(*s)) == 0)
			return 0;
		j = (j + 1) & (g_tcap - 1);
	}
	if (g_n == g_cap) {
		g_cap = g_cap ? g_cap * 2 : (1u << 20);
		g_nodes = realloc(g_nodes, g_cap * sizeof(*g_nodes));
		if (g_nodes == NULL) {
			fprintf(stderr, "ha_model: out of memory\n");
			exit(2);
		}
	}
	g_nodes[g_n].s = *s;
	g_nodes[g_n].parent = parent;
	(void)snprintf(g_nodes[g_n].what, sizeof(g_nodes[g_n].what), "%s", what);
	g_table[j] = (uint32_t)(g_n + 1);
	g_n++;
	return 1;
}

/* ---- invariants ---- */

/* 0 if fine; else 1 (I1), 2 (I2), 3 (I3). */
static int check(const struct state *s)
{
	for (int x = 1; x <= N_HRS; x++) {
		uint8_t b = s->released[x];
		if (b & (uint8_t)(b - 1))
			return 1;
		for (int y = 1; y <= 3; y++)
			if ((b & (1u << y)) && !(s->held & M_BIT(MARK(x, y))))
				return 2;
	}
	for (int i = 0; i < N_HOSTS; i++)
		if (s->h[i].local != 0 && !(s->held & M_BIT(s->h[i].local)))
			return 3;
	return 0;
}

/* ---- actions ---- */

static uint32_t g_cur; /* the node being expanded */

static void emit(const struct state *s, int host, const char *action)
{
	char what[48];
	(void)snprintf(what, sizeof(what), "host%d %.36s", host, action);
	(void)visit(s, g_cur, what);
}

/* Back to IDLE: the fields of the request are cleared (fewer distinct states). */
static void end_request(struct host *h)
{
	h->pc = PC_IDLE;
	h->req = 0;
	h->sig = 0;
	h->out = 0;
	h->dec_rev = 0;
	h->rounds = 0;
	h->released_early = 0;
}

/* etcd applies a put of m (a compare already passed). */
static void release(struct state *s, struct host *h, uint8_t m)
{
	s->released[M_HRS(m)] |= (uint8_t)(1u << M_BYTES(m));
	end_request(h);
}

static void etcd_put(struct state *s, uint8_t m)
{
	s->mark = m;
	s->rev++;
	s->held |= (uint16_t)M_BIT(m);
}

/* CLUSTER_CHECK's decision on the cached mark. */
static void cluster_decide(struct state *s, struct host *h)
{
	switch (decide(h->cache, h->req)) {
	case V_REGRESSION:
	case V_CONFLICT:
		end_request(h);
		break;
	case V_STORED:
		h->out = h->cache;
		h->pc = PC_ADOPT;
		break;
	case V_AHEAD:
		h->dec_rev = h->cache_rev;
		h->pc = PC_SIGN;
		break;
	}
	(void)s;
}

static void after_unknown(struct host *h)
{
	h->cache_ok = 0;
	h->pc = PC_RESOLVE;
	if (g_mut == MUT_TIMEOUT_AS_SUCCESS) {
		h->out = h->sig;
		h->pc = PC_PERSIST;
	} else if (g_mut == MUT_TIMEOUT_AS_NOT_APPLIED) {
		/* keep the old cached mark as if nothing happened; no RESOLVE */
		h->cache_ok = 1;
		end_request(h);
	}
}

static void step_host(const struct state *cur, int i)
{
	struct state s;
	struct host *h;
	const struct host *ch = &cur->h[i];

	/* CRASH at any step: memory lost, the local record and in-flight txns stay. */
	if (ch->pc != PC_IDLE || ch->cache_ok) {
		s = *cur;
		h = &s.h[i];
		end_request(h);
		h->cache_ok = 0;
		h->cache = 0;
		h->cache_rev = 0;
		emit(&s, i, "CRASH");
	}
	/*
	 * WATCH: the watch thread refreshes the cache. Only CLUSTER_CHECK reads the
	 * cache, so a refresh is explored right before it: the cache there is the
	 * current mark or any older value this host saw.
	 */
	if (ch->pc == PC_CLUSTER_CHECK &&
	    (!ch->cache_ok || ch->cache != cur->mark || ch->cache_rev != cur->rev)) {
		s = *cur;
		h = &s.h[i];
		h->cache = s.mark;
		h->cache_rev = s.rev;
		h->cache_ok = 1;
		emit(&s, i, "WATCH");
	}
	/* A transaction in flight lands or is dropped at any later point. */
	if (ch->ghost_ok) {
		s = *cur;
		h = &s.h[i];
		h->ghost_ok = 0;
		if (g_mut == MUT_NO_COMPARE || h->ghost_rev == s.rev)
			etcd_put(&s, h->ghost_val);
		emit(&s, i, "GHOST_APPLY");
		s = *cur;
		s.h[i].ghost_ok = 0;
		emit(&s, i, "GHOST_DROP");
	}

	switch (ch->pc) {
	case PC_IDLE:
		if (cur->nreq >= g_max_req)
			return;
		for (int x = 1; x <= N_HRS; x++) {
			for (int y = 1; y <= 3; y++) {
				char label[48];
				s = *cur;
				h = &s.h[i];
				s.nreq++;
				h->req = MARK(x, y);
				h->pc = PC_LOCAL_CHECK;
				(void)snprintf(label, sizeof(label), "REQUEST hrs=%d bytes=%c", x,
					       "?AaB"[y]);
				emit(&s, i, label);
			}
		}
		return;
	case PC_LOCAL_CHECK:
		s = *cur;
		h = &s.h[i];
		switch (decide(h->local, h->req)) {
		case V_REGRESSION:
		case V_CONFLICT:
			end_request(h);
			break;
		case V_STORED:
			release(&s, h, h->local);
			break;
		case V_AHEAD:
			h->pc = PC_CLUSTER_CHECK;
			break;
		}
		emit(&s, i, "LOCAL_CHECK");
		return;
	case PC_CLUSTER_CHECK:
		/* the read fails (no quorum, timeout): refuse */
		s = *cur;
		h = &s.h[i];
		if (!h->cache_ok) {
			end_request(h);
			emit(&s, i, "CLUSTER_CHECK read fails");
			s = *cur;
			h = &s.h[i];
			h->cache = s.mark; /* linearizable read */
			h->cache_rev = s.rev;
			h->cache_ok = 1;
		}
		cluster_decide(&s, h);
		emit(&s, i, "CLUSTER_CHECK");
		return;
	case PC_SIGN:
		s = *cur;
		h = &s.h[i];
		h->sig = h->req;
		h->pc = PC_COMMIT;
		if (g_mut == MUT_RELEASE_BEFORE_COMMIT) {
			s.released[M_HRS(h->sig)] |= (uint8_t)(1u << M_BYTES(h->sig));
			h->released_early = 1;
		}
		if (g_mut == MUT_PERSIST_BEFORE_COMMIT)
			h->local = h->sig;
		emit(&s, i, "SIGN");
		return;
	case PC_COMMIT: {
		int passes = g_mut == MUT_NO_COMPARE || cur->rev == ch->dec_rev;
		if (passes) {
			/* success */
			s = *cur;
			h = &s.h[i];
			etcd_put(&s, h->sig);
			h->cache = s.mark;
			h->cache_rev = s.rev;
			h->cache_ok = 1;
			h->out = h->sig;
			h->pc = PC_PERSIST;
			emit(&s, i, "COMMIT success");
			/* applied, but the reply is lost (timeout) */
			s = *cur;
			h = &s.h[i];
			etcd_put(&s, h->sig);
			after_unknown(h);
			emit(&s, i, "COMMIT timeout (applied)");
		} else {
			/* compare failure: the failure branch returns the mark */
			s = *cur;
			h = &s.h[i];
			h->cache = s.mark;
			h->cache_rev = s.rev;
			h->cache_ok = 1;
			h->sig = 0;
			if (++h->rounds >= MAX_ROUNDS)
				end_request(h);
			else
				h->pc = PC_CLUSTER_CHECK;
			emit(&s, i, "COMMIT compare failure");
		}
		/* not applied (lost before etcd, or rejected and the reply lost) */
		s = *cur;
		h = &s.h[i];
		after_unknown(h);
		emit(&s, i, "COMMIT timeout (not applied)");
		/* still in flight: applied or dropped later (GHOST_*) */
		if (!ch->ghost_ok) {
			s = *cur;
			h = &s.h[i];
			h->ghost_ok = 1;
			h->ghost_rev = h->dec_rev;
			h->ghost_val = h->sig;
			after_unknown(h);
			emit(&s, i, "COMMIT timeout (in flight)");
		}
		return;
	}
	case PC_RESOLVE:
		s = *cur;
		h = &s.h[i];
		end_request(h);
		emit(&s, i, "RESOLVE read fails");
		s = *cur;
		h = &s.h[i];
		h->cache = s.mark;
		h->cache_rev = s.rev;
		h->cache_ok = 1;
		if (s.mark == h->sig) {
			h->out = h->sig;
			h->pc = PC_PERSIST;
		} else {
			end_request(h);
		}
		emit(&s, i, "RESOLVE");
		return;
	case PC_ADOPT:
		s = *cur;
		h = &s.h[i];
		if (M_HRS(h->local) < M_HRS(h->out))
			h->local = h->out;
		h->pc = PC_RELEASE;
		emit(&s, i, "ADOPT");
		return;
	case PC_PERSIST:
		s = *cur;
		h = &s.h[i];
		h->local = h->out;
		h->pc = PC_RELEASE;
		emit(&s, i, "PERSIST");
		return;
	case PC_RELEASE:
		s = *cur;
		h = &s.h[i];
		if (h->released_early)
			end_request(h);
		else
			release(&s, h, h->out);
		emit(&s, i, "RELEASE");
		return;
	}
}

static void print_mark(uint8_t m)
{
	if (m == 0)
		printf("-");
	else
		printf("%d%c", M_HRS(m), "?AaB"[M_BYTES(m)]);
}

static void print_trace(uint32_t idx)
{
	uint32_t path[4096];
	size_t n = 0;
	for (uint32_t k = idx; n < 4096; k = g_nodes[k].parent) {
		path[n++] = k;
		if (k == 0)
			break;
	}
	while (n-- > 0) {
		const struct state *s = &g_nodes[path[n]].s;
		printf("  %-36s etcd=", g_nodes[path[n]].what);
		print_mark(s->mark);
		printf("@%d", s->rev);
		for (int i = 0; i < N_HOSTS; i++) {
			printf("  h%d:%s local=", i, pc_name[s->h[i].pc]);
			print_mark(s->h[i].local);
			printf(" sig=");
			print_mark(s->h[i].sig);
		}
		printf("  released=");
		for (int x = 1; x <= N_HRS; x++)
			for (int y = 1; y <= 3; y++)
				if (s->released[x] & (1u << y))
					printf("%d%c ", x, "?AaB"[y]);
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	int verbose = 0, want_violation = 0;
	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "-v") == 0) {
			verbose = 1;
		} else if (strcmp(argv[a], "-m") == 0 && a + 1 < argc) {
			const char *m = argv[++a];
			size_t k;
			for (k = 0; k < sizeof(mut_name) / sizeof(mut_name[0]); k++)
				if (strcmp(m, mut_name[k]) == 0)
					break;
			if (k == sizeof(mut_name) / sizeof(mut_name[0])) {
				fprintf(stderr, "ha_model: unknown mutation %s\n", m);
				return 2;
			}
			g_mut = (enum mutation)k;
		} else if (strcmp(argv[a], "-r") == 0 && a + 1 < argc) {
			g_max_req = atoi(argv[++a]);
			if (g_max_req < 1 || g_max_req > MAX_REQ) {
				fprintf(stderr, "ha_model: -r 1..%d\n", MAX_REQ);
				return 2;
			}
		} else if (strcmp(argv[a], "-e") == 0 && a + 1 < argc) {
			want_violation = strcmp(argv[++a], "violation") == 0;
		} else {
			fprintf(stderr, "usage: ha_model [-m MUTATION] [-r REQS] [-e safe|violation] [-v]\n");
			return 2;
		}
	}
	struct state init;
	memset(&init, 0, sizeof(init));
	(void)visit(&init, 0, "start");
	/*
	 * Breadth first, so the first violation found has a shortest trace. Without
	 * -e violation the search stops at the first violation of any invariant; with
	 * it, the search goes on until I1 (the damage itself: two different sign bytes
	 * out for one H/R/S) and reports that trace.
	 */
	uint32_t bad = 0;
	int bad_kind = 0, first_kind = 0;
	size_t expanded = 0;
	for (g_cur = 0; g_cur < g_n; g_cur++) {
		struct state cur = g_nodes[g_cur].s;
		int c = check(&cur);
		if (c != 0 && first_kind == 0)
			first_kind = c;
		if (c != 0 && (!want_violation || c == 1)) {
			bad = g_cur;
			bad_kind = c;
			break;
		}
		expanded++;
		for (int i = 0; i < N_HOSTS; i++)
			step_host(&cur, i);
	}
	static const char *const inv[] = {
		"",
		"I1: two different sign bytes released for one H/R/S",
		"I2: a released signature the cluster mark never held",
		"I3: a local state the cluster mark never held",
	};
	printf("ha_model: mutation=%s states=%zu expanded=%zu hosts=%d requests=%d\n",
	       mut_name[g_mut], g_n, expanded, N_HOSTS, g_max_req);
	if (first_kind != 0 && first_kind != bad_kind)
		printf("ha_model: first violation seen: %s\n", inv[first_kind]);
	if (bad_kind) {
		printf("ha_model: counterexample (%s), %s\n", inv[bad_kind],
		       verbose ? "trace:" : "run with -v for the trace");
		if (verbose)
			print_trace(bad);
	} else {
		printf("ha_model: all invariants hold in every reachable state\n");
	}
	int ok = want_violation ? bad_kind == 1 : first_kind == 0;
	printf("ha_model: %s (expected %s)\n", ok ? "PASS" : "FAIL",
	       want_violation ? "a counterexample" : "no counterexample");
	free(g_nodes);
	free(g_table);
	return ok ? 0 : 1;
}
