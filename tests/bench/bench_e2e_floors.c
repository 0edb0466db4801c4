/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_e2e_floors --dir DIR [--n N] [--sync-only] [--softhsm-uri URI] [--softsign KEYFILE]
 *
 * The floors ci/bench.sh prints beside the end-to-end figures, measured on the same
 * machine in the same run: a bare pwrite + fdatasync of one guard record in DIR (the
 * state disk), a bare Ed25519 signature with OpenSSL (key already loaded), and a bare
 * C_Sign through slot_sign on each given key. Also one 512-byte block synced by
 * fdatasync, O_DSYNC and O_DIRECT|O_DSYNC, and Ed25519 with libsodium. --sync-only: the
 * first floor alone (ci/bench.sh's floor next to each run). One JSON object on stdout.
 * No thresholds.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/slot.h"

#define REC_BYTES 4308 /* one guard state record of format 1 (docs/state.md) */
#define SLOT_BYTES 8192 /* the distance between the state file's two slots */
#define MSG_LEN 150    /* a typical vote's sign bytes */

static double now_ms(void)
{
	struct timespec ts;
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int first = 1;

static void report(const char *name, double *lat, size_t n, double total_ms)
{
	qsort(lat, n, sizeof(double), cmp_d);
	printf("%s\"%s\":{\"n\":%zu,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"ops_s\":%.1f}",
	       first ? "" : ",", name, n, lat[n / 2], lat[(n * 99) / 100], lat[n - 1],
	       (double)n * 1e3 / total_ms);
	first = 0;
}

/* How a record reaches the disk: pwrite + fdatasync, or a write on an O_DSYNC/O_DIRECT fd. */
enum sync_kind { SYNC_FDATASYNC, SYNC_ODSYNC, SYNC_ODIRECT };

/*
 * One record of rec_len bytes written in turn into two slots of a preallocated file,
 * slot_size apart (the guard's layout: two slots 8 KiB apart), made durable each time.
 */
static int bench_sync(const char *name, const char *dir, size_t rec_len, size_t slot_size,
		      enum sync_kind kind, double *lat, size_t n)
{
	char path[4096];
	uint8_t *rec = NULL;
	double t0;
	int fd, flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
	(void)snprintf(path, sizeof(path), "%s/bench_e2e_fdatasync.bin", dir);
	if (kind == SYNC_ODSYNC)
		flags |= O_DSYNC;
	if (kind == SYNC_ODIRECT)
		flags |= O_DSYNC | O_DIRECT;
	if (posix_memalign((void **)&rec, 4096, slot_size) != 0)
		return -1;
	memset(rec, 0xA5, slot_size);
	fd = open(path, flags, 0600);
	if (fd < 0) {
		/* O_DIRECT is refused by some filesystems (tmpfs): not a floor there */
		if (kind == SYNC_ODIRECT && errno == EINVAL) {
			free(rec);
			return 0;
		}
		perror(path);
		free(rec);
		return -1;
	}
	/* preallocated and synced once, like the guard's two-slot file */
	if (pwrite(fd, rec, slot_size, 0) != (ssize_t)slot_size ||
	    pwrite(fd, rec, slot_size, (off_t)slot_size) != (ssize_t)slot_size || fsync(fd) != 0) {
		perror(path);
		close(fd);
		free(rec);
		return -1;
	}
	t0 = now_ms();
	for (size_t i = 0; i < n; i++) {
		double t = now_ms();
		rec[0] = (uint8_t)i;
		if (pwrite(fd, rec, rec_len, (off_t)((i % 2) * slot_size)) != (ssize_t)rec_len ||
		    (kind == SYNC_FDATASYNC && fdatasync(fd) != 0)) {
			perror("pwrite/fdatasync");
			close(fd);
			free(rec);
			return -1;
		}
		lat[i] = now_ms() - t;
	}
	report(name, lat, n, now_ms() - t0);
	close(fd);
	free(rec);
	(void)unlink(path);
	return 0;
}

static int bench_openssl(double *lat, size_t n)
{
	uint8_t seed[32], msg[MSG_LEN], sig[64];
	EVP_PKEY *pk;
	double t0;
	if (kcrypto_random(seed, sizeof(seed)) != KMS_OK)
		return -1;
	memset(msg, 0x5A, sizeof(msg));
	pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
	if (pk == NULL)
		return -1;
	t0 = now_ms();
	for (size_t i = 0; i < n; i++) {
		double t = now_ms();
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		size_t sl = sizeof(sig);
		msg[0] = (uint8_t)i;
		if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk) != 1 ||
		    EVP_DigestSign(ctx, sig, &sl, msg, sizeof(msg)) != 1) {
			EVP_MD_CTX_free(ctx);
			EVP_PKEY_free(pk);
			return -1;
		}
		EVP_MD_CTX_free(ctx);
		lat[i] = now_ms() - t;
	}
	report("ed25519_openssl", lat, n, now_ms() - t0);
	EVP_PKEY_free(pk);
	return 0;
}

/* Ed25519 from a seed with libsodium, as the softsign module signs a seed key. */
static int bench_sodium(double *lat, size_t n)
{
	uint8_t seed[32], pk[32], sk[64], msg[MSG_LEN], sig[64];
	double t0;
	if (sodium_init() < 0 || kcrypto_random(seed, sizeof(seed)) != KMS_OK ||
	    crypto_sign_ed25519_seed_keypair(pk, sk, seed) != 0)
		return -1;
	memset(msg, 0x5A, sizeof(msg));
	t0 = now_ms();
	for (size_t i = 0; i < n; i++) {
		double t = now_ms();
		msg[0] = (uint8_t)i;
		if (crypto_sign_ed25519_detached(sig, NULL, msg, sizeof(msg), sk) != 0)
			return -1;
		lat[i] = now_ms() - t;
	}
	report("ed25519_libsodium", lat, n, now_ms() - t0);
	sodium_memzero(sk, sizeof(sk));
	return 0;
}

static int bench_slot(const char *name, const char *uri, const char *softsign, double *lat,
		      size_t n)
{
	struct slot *s = NULL;
	uint8_t msg[MSG_LEN], sig[64];
	double t0;
	int r = softsign ? slot_open_softsign(softsign, NULL, &s) : slot_open(uri, NULL, &s);
	if (r != KMS_OK) {
		fprintf(stderr, "bench_e2e_floors: %s: %s\n", name, kms_strerror(r));
		return -1;
	}
	memset(msg, 0x3C, sizeof(msg));
	/* warm-up: the first signature of a session is verified by slot_sign */
	if (slot_sign(s, msg, sizeof(msg), sig) != KMS_OK) {
		slot_free(s);
		return -1;
	}
	t0 = now_ms();
	for (size_t i = 0; i < n; i++) {
		double t = now_ms();
		msg[0] = (uint8_t)i;
		if (slot_sign(s, msg, sizeof(msg), sig) != KMS_OK) {
			slot_free(s);
			return -1;
		}
		lat[i] = now_ms() - t;
	}
	report(name, lat, n, now_ms() - t0);
	slot_free(s);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = ".", *hsm = NULL, *soft = NULL;
	size_t n = 1000;
	int sync_only = 0;
	double *lat;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--softhsm-uri") == 0 && i + 1 < argc) {
			hsm = argv[++i];
		} else if (strcmp(argv[i], "--softsign") == 0 && i + 1 < argc) {
			soft = argv[++i];
		} else if (strcmp(argv[i], "--sync-only") == 0) {
			sync_only = 1;
		} else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
			char *end = NULL;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || v < 10 || v > 10000000) {
				fprintf(stderr, "bench_e2e_floors: bad --n\n");
				return 2;
			}
			n = v;
		} else {
			fprintf(stderr,
				"usage: bench_e2e_floors --dir DIR [--n N] [--sync-only] [--softhsm-uri URI] [--softsign KEY]\n");
			return 2;
		}
	}
	kms_log_set_level(KMS_LOG_WARN);
	lat = calloc(n * 5, sizeof(double)); /* the OpenSSL floor runs 5n signatures */
	if (lat == NULL)
		return 1;
	printf("{");
	/* "fdatasync" is the guard's write before #22 (4308 bytes over two pages); the
	 * others are one 512-byte block, synced three ways. */
	if (bench_sync("fdatasync", dir, REC_BYTES, REC_BYTES, SYNC_FDATASYNC, lat, n) != 0 ||
	    (!sync_only &&
	     (bench_sync("fdatasync_512", dir, 512, SLOT_BYTES, SYNC_FDATASYNC, lat, n) != 0 ||
	      bench_sync("o_dsync_512", dir, 512, SLOT_BYTES, SYNC_ODSYNC, lat, n) != 0 ||
	      bench_sync("o_direct_512", dir, 512, SLOT_BYTES, SYNC_ODIRECT, lat, n) != 0 ||
	      bench_openssl(lat, n * 5) != 0 || bench_sodium(lat, n * 5) != 0)))
		rc = 1;
	if (rc == 0 && soft != NULL && bench_slot("c_sign_softsign", NULL, soft, lat, n) != 0)
		rc = 1;
	if (rc == 0 && hsm != NULL && bench_slot("c_sign_softhsm2", hsm, NULL, lat, n) != 0)
		rc = 1;
	printf("}\n");
	free(lat);
	slot_shutdown();
	return rc;
}
