/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret Connection micro-benchmark: handshake latency over a socketpair
 * (both roles in this process, software Ed25519 identities), in-memory frame
 * seal/open throughput, and sc_write/sc_read throughput over a socketpair.
 * Prints figures only; never asserts on time. Usage: bench_sc [handshakes] [MiB]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "p11kms/sc.h"
#include "sc_int.h"

#define TMO 10000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct peer {
	int fd;
	const struct sc_identity *id;
	size_t sink; /* bytes to read after the handshake */
	int rc;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	struct sc_conn *c = NULL;
	static uint8_t buf[65536];

	p->rc = sc_handshake(p->fd, p->id, NULL, TMO, &c);
	while (p->rc == KMS_OK && p->sink > 0) {
		size_t got = 0;

		p->rc = sc_read(c, buf, sizeof(buf), &got, TMO);
		p->sink -= got;
	}
	sc_conn_free(c);
	return NULL;
}

static int bench_handshakes(int n, const struct sc_identity *a, const struct sc_identity *b)
{
	double *t = calloc((size_t)n, sizeof(double));

	if (t == NULL)
		return 1;
	for (int i = 0; i < n; i++) {
		struct peer p = { .id = b };
		struct sc_conn *c = NULL;
		pthread_t th;
		int sp[2], r;
		double t0;

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
			return 1;
		p.fd = sp[1];
		if (pthread_create(&th, NULL, peer_main, &p) != 0)
			return 1;
		t0 = now_s();
		r = sc_handshake(sp[0], a, NULL, TMO, &c);
		t[i] = (now_s() - t0) * 1e3;
		pthread_join(th, NULL);
		sc_conn_free(c);
		close(sp[0]);
		close(sp[1]);
		if (r != KMS_OK || p.rc != KMS_OK) {
			fprintf(stderr, "handshake %d failed: %s / %s\n", i, kms_strerror(r),
				kms_strerror(p.rc));
			return 1;
		}
	}
	qsort(t, (size_t)n, sizeof(double), cmp_d);
	printf("handshake (socketpair, soft ed25519, both roles in-process): n=%d p50=%.3f ms p99=%.3f ms "
	       "max=%.3f ms => %.0f handshakes/s\n",
	       n, t[n / 2], t[(n * 99) / 100], t[n - 1], 1e3 / t[n / 2]);
	free(t);
	return 0;
}

static int bench_frames(size_t mib)
{
	uint8_t key1[32] = { 1 }, key2[32] = { 2 }, data[SC_DATA_MAX], out[SC_DATA_MAX];
	size_t frames = mib * 1024, batch = 4096, n;
	uint8_t *sealed = malloc(batch * SC_FRAME_SEALED);
	struct sc_conn *tx = NULL, *rx = NULL;
	double seal_t = 0, open_t = 0;

	if (sealed == NULL || sc_conn_new_keys(-1, key1, key2, &tx) != KMS_OK ||
	    sc_conn_new_keys(-1, key2, key1, &rx) != KMS_OK)
		return 1;
	memset(data, 0xa5, sizeof(data));
	for (size_t done = 0; done < frames; done += batch) {
		double t0 = now_s();

		for (size_t i = 0; i < batch; i++)
			if (sc_seal_frame(tx, data, sizeof(data), sealed + i * SC_FRAME_SEALED) !=
			    KMS_OK)
				return 1;
		seal_t += now_s() - t0;
		t0 = now_s();
		for (size_t i = 0; i < batch; i++)
			if (sc_open_frame(rx, sealed + i * SC_FRAME_SEALED, out, &n) != KMS_OK ||
			    n != SC_DATA_MAX)
				return 1;
		open_t += now_s() - t0;
	}
	printf("frame seal (1024-byte chunks, ChaCha20-Poly1305): %.1f MB/s (%.2f us/frame)\n",
	       (double)frames * SC_DATA_MAX / seal_t / 1e6, seal_t / (double)frames * 1e6);
	printf("frame open: %.1f MB/s (%.2f us/frame)\n",
	       (double)frames * SC_DATA_MAX / open_t / 1e6, open_t / (double)frames * 1e6);
	sc_conn_free(tx);
	sc_conn_free(rx);
	free(sealed);
	return 0;
}

static int bench_stream(size_t mib, const struct sc_identity *a, const struct sc_identity *b)
{
	size_t total = mib << 20, chunk = 64 * 1024;
	uint8_t *buf = calloc(1, chunk);
	struct peer p = { .id = b, .sink = total };
	struct sc_conn *c = NULL;
	pthread_t th;
	int sp[2];
	double t0, dt;

	if (buf == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		return 1;
	p.fd = sp[1];
	if (pthread_create(&th, NULL, peer_main, &p) != 0 ||
	    sc_handshake(sp[0], a, NULL, TMO, &c) != KMS_OK)
		return 1;
	t0 = now_s();
	for (size_t off = 0; off < total; off += chunk)
		if (sc_write(c, buf, chunk, TMO) != KMS_OK)
			return 1;
	pthread_join(th, NULL);
	dt = now_s() - t0;
	if (p.rc != KMS_OK)
		return 1;
	printf("sc_write -> sc_read over a socketpair (2 threads): %zu MiB in %.3f s = %.1f MB/s\n",
	       mib, dt, (double)total / dt / 1e6);
	sc_conn_free(c);
	close(sp[0]);
	close(sp[1]);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 300;
	size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 64;
	struct sc_soft_identity *sa = NULL, *sb = NULL;
	struct sc_identity a, b;
	int rc;

	kms_log_set_level(KMS_LOG_WARN);
	if (n < 1 || mib < 1 || sc_soft_identity_new(NULL, &sa) != KMS_OK ||
	    sc_soft_identity_new(NULL, &sb) != KMS_OK)
		return 2;
	sc_soft_identity_get(sa, &a);
	sc_soft_identity_get(sb, &b);
	rc = bench_handshakes(n, &a, &b) || bench_frames(mib) || bench_stream(mib, &a, &b);
	sc_soft_identity_free(sa);
	sc_soft_identity_free(sb);
	return rc;
}
