/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the audit log costs the connection thread, and what its writer keeps up with:
 * obs_emit() of one decision with no sink and with the audit sink (a copy into the
 * queue, a wake-up of the writer), p50/p99 in ns; then how long the writer takes until
 * every record is synced (records/s). Prints one JSON line. Never asserts on time.
 *   bench_audit --dir DIR [--n N]      (DIR: where the log goes: the disk measured)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11kms/audit.h"
#include "p11kms/cfg.h"
#include "p11kms/kms_log.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, int p)
{
	qsort(v, n, sizeof(*v), cmp_i64);
	return v[(n - 1) * (size_t)p / 100];
}

/* n emits, one every 20 µs (a busy signer answers one request per ~0.2 ms or more). */
static void emits(int64_t *dt, size_t n)
{
	struct obs_event ev = {
		.chain_id = "bench-0",
		.peer = "tcp://127.0.0.1:26659",
		.msg = OBS_MSG_PRECOMMIT,
		.step = 3,
		.decision = OBS_DEC_SIGNED,
		.has_sign_bytes = 1,
		.block_hash_len = 32,
		.slot = "pkcs11:token=bench;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so",
		.latency_ns = 300000
	};
	for (size_t i = 0; i < n; i++) {
		ev.height = (int64_t)i + 1;
		ev.guard_seq = i + 1;
		ev.wall_ns = obs_wall_ns();
		int64_t t0 = obs_mono_ns();
		obs_emit(&ev);
		dt[i] = obs_mono_ns() - t0;
		int64_t until = t0 + 20000;
		while (obs_mono_ns() < until)
			;
	}
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	size_t n = 20000;
	char text[1024], err[CFG_ERR_MAX];
	struct cfg *cfg = NULL;
	struct audit_log *a = NULL;
	struct audit_counters c;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--dir") == 0)
			dir = argv[i + 1];
		else if (strcmp(argv[i], "--n") == 0)
			n = (size_t)strtoul(argv[i + 1], NULL, 10);
	}
	if (dir == NULL || n == 0 || n > 10000000) {
		fprintf(stderr, "usage: bench_audit --dir DIR [--n N]\n");
		return 2;
	}
	kms_log_set_quiet(1); /* no state file here: the start record says sequence 0 */
	(void)snprintf(text, sizeof(text),
		       "chains = ( { id = \"bench-0\"; state_file = \"none.state\"; } );\n"
		       "keys = ( { chain_ids = [ \"bench-0\" ]; softsign = \"k.key\"; } );\n"
		       "validators = ( { chain_id = \"bench-0\"; addr = \"unix:///tmp/x.sock\";"
		       " protocol_version = \"v0.37\"; } );\n"
		       "audit = { dir = \"audit-bench\"; queue = 1048576; };\n");
	if (cfg_parse_string((const uint8_t *)text, strlen(text), "bench", dir, &cfg, err,
			     sizeof(err)) != KMS_OK) {
		fprintf(stderr, "bench_audit: %s\n", err);
		return 1;
	}
	int64_t *off = calloc(n, sizeof(int64_t)), *on = calloc(n, sizeof(int64_t));
	if (off == NULL || on == NULL)
		return 1;
	emits(off, n); /* no sink registered */
	if (audit_start(cfg, NULL, &a) != KMS_OK) {
		fprintf(stderr, "bench_audit: cannot start the audit log in %s\n", dir);
		return 1;
	}
	int64_t t0 = obs_mono_ns();
	emits(on, n);
	do {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
		audit_counters_get(a, &c);
	} while (c.durable + c.dropped + c.lost < c.queued + c.dropped && c.durable < n);
	double secs = (double)(obs_mono_ns() - t0) / 1e9;
	obs_sink_clear();
	audit_close(a);
	printf("{\"n\":%zu,\"emit_no_sink_ns\":{\"p50\":%lld,\"p99\":%lld},"
	       "\"emit_audit_ns\":{\"p50\":%lld,\"p99\":%lld},\"durable\":%llu,\"dropped\":%llu,"
	       "\"seconds_to_durable\":%.3f}\n",
	       n, (long long)pct(off, n, 50), (long long)pct(off, n, 99), (long long)pct(on, n, 50),
	       (long long)pct(on, n, 99), (unsigned long long)c.durable,
	       (unsigned long long)c.dropped, secs);
	free(off);
	free(on);
	cfg_free(cfg);
	return 0;
}
