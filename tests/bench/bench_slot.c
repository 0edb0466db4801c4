/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark: C_Sign latency (p50/p99) and signatures/s through slot_sign on SoftHSM2 (and softsign). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"
#include "tu_softhsm.h"
#include "testutil.h"

#define N_SIGN 2000
#define N_THREADS 4
#define MSG_LEN 150 /* a typical prevote sign-bytes length */

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct worker {
	struct slot *s;
	int n, fails;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	uint8_t msg[MSG_LEN], sig[64];
	int i;
	memset(msg, 0x42, sizeof(msg));
	for (i = 0; i < w->n; i++) {
		msg[0] = (uint8_t)i;
		if (slot_sign(w->s, msg, sizeof(msg), sig) != KMS_OK)
			w->fails++;
	}
	return NULL;
}

static int bench(const char *name, struct slot *s)
{
	static double lat[N_SIGN];
	uint8_t msg[MSG_LEN], sig[64];
	struct worker w[N_THREADS];
	pthread_t th[N_THREADS];
	double t0, total = 0;
	int i, fails = 0;

	memset(msg, 0x42, sizeof(msg));
	for (i = 0; i < 50; i++) /* warm-up: sessions open, caches warm */
		if (slot_sign(s, msg, sizeof(msg), sig) != KMS_OK)
			return 1;
	for (i = 0; i < N_SIGN; i++) {
		msg[0] = (uint8_t)i;
		t0 = now_us();
		if (slot_sign(s, msg, sizeof(msg), sig) != KMS_OK)
			fails++;
		lat[i] = now_us() - t0;
		total += lat[i];
	}
	qsort(lat, N_SIGN, sizeof(lat[0]), cmp_d);
	printf("%-9s 1 thread : C_Sign p50 %.1f us  p99 %.1f us  max %.1f us  %.0f signatures/s "
	       "(%d signatures of %d bytes)\n",
	       name, lat[N_SIGN / 2], lat[N_SIGN * 99 / 100], lat[N_SIGN - 1], 1e6 * N_SIGN / total,
	       N_SIGN, MSG_LEN);
	t0 = now_us();
	for (i = 0; i < N_THREADS; i++) {
		w[i].s = s;
		w[i].n = N_SIGN / N_THREADS;
		w[i].fails = 0;
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	for (i = 0; i < N_THREADS; i++) {
		pthread_join(th[i], NULL);
		fails += w[i].fails;
	}
	printf("%-9s %d threads: %.0f signatures/s\n", name, N_THREADS,
	       1e6 * N_SIGN / (now_us() - t0));
	return fails ? 1 : 0;
}

/* One softsign key file (tmkms format, base64 in content) benchmarked under name. */
static int bench_softsign(const char *name, const char *content)
{
	char *dir, *path;
	FILE *fp;
	struct slot *s = NULL;
	int r;
	if (!getenv("P11KMS_SOFTSIGN_MODULE"))
		return 0;
	dir = tu_mkdtemp();
	path = tu_path(dir, "bench.key");
	fp = fopen(path, "w");
	fputs(content, fp);
	fclose(fp);
	if (chmod(path, 0600) != 0)
		return 1;
	r = slot_open_softsign(path, NULL, &s);
	if (r == KMS_OK) {
		r = bench(name, s);
		slot_free(s);
	}
	tu_rmrf(dir);
	free(path);
	free(dir);
	return r;
}

int main(void)
{
	struct tu_softhsm hsm;
	struct slot *s = NULL;
	char *uri, *key_uri = NULL;
	uint8_t pub[32];
	int r;

	kms_log_set_level(KMS_LOG_WARN);
	tu_softhsm_setup(&hsm);
	tu_softhsm_add_token(&hsm, "bench", "so-bench", "1234");
	uri = tu_softhsm_uri(&hsm, "bench", NULL);
	if ((r = slot_keygen(uri, "bench-key", NULL, &key_uri, pub)) ||
	    (r = slot_open(key_uri, NULL, &s))) {
		fprintf(stderr, "bench_slot: setup failed: %s\n", kms_strerror(r));
		return 1;
	}
	r = bench("softhsm2", s);
	slot_set_timeout(s, 3000); /* the watchdog's thread hand-off, measured */
	r |= bench("+watchdog", s);
	slot_free(s);
	/* The 32-byte seed 07..07 (OpenSSL signs), then its 64-byte expansion SHA-512(seed)
	 * (the expanded-key signer, as for tmkms 64/96-byte keys). */
	r |= bench_softsign("softsign", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n");
	r |= bench_softsign("sftsg-exp", "L605/v1/o+IAqcYm7vWZ5hotBVxIqCiKTn5MS8o5KPicfW2zUG1l26x8"
					  "BSqu5IV0JSEMm8VAMMgm5UBVmDRSpQ==\n");
	slot_shutdown();
	tu_softhsm_teardown(&hsm);
	free(uri);
	free(key_uri);
	return r ? 1 : 0;
}
