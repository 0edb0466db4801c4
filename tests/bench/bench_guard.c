/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_guard [--dir D] [--n N]: the guard alone (guard_sign with a no-cost
 * signer, every call a state advance = one pwrite + fdatasync) against a bare
 * pwrite+fdatasync of the same record size on the same disk. Prints p50/p99
 * latencies and operations per second. Not a test: no thresholds.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/guard.h"
#include "p11kms/kms_log.h"
#include "test_guard_util.h"

#define REC_BYTES 4308 /* the guard's record size (docs/state.md) */

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

static void report(const char *what, double *lat, size_t n, double total_us)
{
	qsort(lat, n, sizeof(double), cmp_d);
	printf("%-34s n=%-6zu p50=%8.1f us  p99=%8.1f us  max=%8.1f us  %9.0f ops/s\n", what, n,
	       lat[n / 2], lat[(n * 99) / 100], lat[n - 1], (double)n * 1e6 / total_us);
}

static int bench_bare(const char *dir, size_t n, double *lat)
{
	char path[4096];
	uint8_t buf[REC_BYTES];
	snprintf(path, sizeof(path), "%s/bench_guard_bare.bin", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	memset(buf, 0, sizeof(buf));
	for (int i = 0; i < 4; i++)
		if (pwrite(fd, buf, sizeof(buf), (off_t)i * 8192) != (ssize_t)sizeof(buf))
			return 1;
	fsync(fd);
	double t0 = now_us();
	for (size_t i = 0; i < n; i++) {
		double a = now_us();
		buf[0] = (uint8_t)i;
		if (pwrite(fd, buf, sizeof(buf), (off_t)(i % 2) * 8192) != (ssize_t)sizeof(buf) ||
		    fdatasync(fd) != 0) {
			perror("pwrite/fdatasync");
			return 1;
		}
		lat[i] = now_us() - a;
	}
	report("bare pwrite(4308 B)+fdatasync", lat, n, now_us() - t0);
	close(fd);
	unlink(path);
	return 0;
}

static int bench_guard(const char *dir, size_t n, double *lat)
{
	char path[4096], pid[4200];
	struct guard *g;
	snprintf(path, sizeof(path), "%s/bench_guard_state.bin", dir);
	snprintf(pid, sizeof(pid), "%s.pid", path);
	unlink(path);
	/* --dir picks the disk (a tmpfs for the CPU-only figure): any filesystem goes */
	if (guard_state_init(path, "bench-1", 0, 0, GUARD_STEP_NONE) != KMS_OK ||
	    tg_open(path, "bench-1", &g) != KMS_OK || guard_make_durable(g) != KMS_OK)
		return 1;
	uint8_t sb[512];
	struct guard_result res;
	struct tg_msg m = { GUARD_STEP_PRECOMMIT, 0, 0, 0, 1, 1700000000, 0, "bench-1" };
	double t0 = now_us();
	for (size_t i = 0; i < n; i++) {
		m.h = (int64_t)i + 1;
		size_t len = tg_sign_bytes(&m, sb, sizeof(sb));
		struct guard_request req = { { m.h, 0, GUARD_STEP_PRECOMMIT }, sb, len };
		double a = now_us();
		if (guard_sign(g, &req, tg_fake_sign, NULL, &res) != KMS_OK)
			return 1;
		lat[i] = now_us() - a;
	}
	report("guard_sign, state advance", lat, n, now_us() - t0);
	/* the same request again: the stored signature, no disk */
	size_t len = tg_sign_bytes(&m, sb, sizeof(sb));
	struct guard_request req = { { m.h, 0, GUARD_STEP_PRECOMMIT }, sb, len };
	t0 = now_us();
	for (size_t i = 0; i < n; i++) {
		double a = now_us();
		if (guard_sign(g, &req, tg_fake_sign, NULL, &res) != KMS_OK || !res.reused)
			return 1;
		lat[i] = now_us() - a;
	}
	report("guard_sign, identical retry", lat, n, now_us() - t0);
	guard_free(g);
	unlink(path);
	unlink(pid);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = ".";
	size_t n = 2000;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || v < 10 || v > 10000000) {
				fprintf(stderr, "bad --n\n");
				return 2;
			}
			n = v;
		} else {
			fprintf(stderr, "usage: bench_guard [--dir D] [--n N]\n");
			return 2;
		}
	}
	kms_log_set_quiet(1);
	double *lat = calloc(n, sizeof(double));
	if (lat == NULL)
		return 1;
	printf("bench_guard: dir=%s n=%zu\n", dir, n);
	int r = bench_bare(dir, n, lat) || bench_guard(dir, n, lat) || bench_bare(dir, n, lat);
	free(lat);
	return r;
}
