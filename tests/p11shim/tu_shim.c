/* SPDX-License-Identifier: Apache-2.0 */
/* Test fixture: SoftHSM2 tokens reached through p11shim, a control file, and measurements. */
#include "tu_shim.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/kms_log.h"
#include "testutil.h"

static void die(const char *what)
{
	fprintf(stderr, "tu_shim: %s\n", what);
	exit(1);
}

void tu_shim_setup(struct tu_shim *t, const char *emulate)
{
	const char *lib = getenv("P11KMS_P11SHIM");
	struct stat st;
	memset(t, 0, sizeof(*t));
	tu_softhsm_setup(&t->hsm);
	if (!lib || stat(lib, &st) != 0)
		die("P11KMS_P11SHIM does not name the built libp11shim.so");
	t->lib = strdup(lib);
	t->ctl = tu_path(t->hsm.dir, "shim.ctl");
	t->trace = tu_path(t->hsm.dir, "shim.trace");
	tu_write_file(t->ctl, "", 0, 0600);
	if (setenv("P11SHIM_MODULE", t->hsm.module, 1) || setenv("P11SHIM_CONTROL", t->ctl, 1) ||
	    setenv("P11SHIM_TRACE", t->trace, 1) ||
	    (emulate ? setenv("P11SHIM_EMULATE", emulate, 1) : unsetenv("P11SHIM_EMULATE")))
		die("setenv");
}

void tu_shim_add_token(struct tu_shim *t, const char *label, const char *pin)
{
	char name[128], *p;
	tu_softhsm_add_token(&t->hsm, label, "so-1234", pin);
	snprintf(name, sizeof(name), "%s.pin", label);
	p = tu_path(t->hsm.dir, name);
	tu_write_file(p, pin, strlen(pin), 0600);
	free(p);
}

char *tu_shim_uri(const struct tu_shim *t, const char *label, const char *extra)
{
	size_t cap = strlen(label) + strlen(t->lib) + strlen(t->hsm.dir) * 2 + 256 +
		     (extra ? strlen(extra) : 0);
	char *u = malloc(cap);
	if (!u)
		die("malloc");
	snprintf(u, cap, "pkcs11:token=%s%s%s?module-path=%s&pin-source=%s/%s.pin", label,
		 extra ? ";" : "", extra ? extra : "", t->lib, t->hsm.dir, label);
	return u;
}

void tu_shim_ctl(struct tu_shim *t, const char *text)
{
	char name[64], *tmp;
	snprintf(name, sizeof(name), "shim.ctl.%u", t->seq++);
	tmp = tu_path(t->hsm.dir, name);
	tu_write_file(tmp, text, strlen(text), 0600);
	/* rename: a new inode, so the shim sees a change even within one mtime tick */
	if (rename(tmp, t->ctl) != 0)
		die("rename control file");
	free(tmp);
}

int tu_shim_trace_count(const struct tu_shim *t, const char *needle)
{
	char line[512];
	int n = 0;
	FILE *f = fopen(t->trace, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

void tu_shim_teardown(struct tu_shim *t)
{
	tu_softhsm_teardown(&t->hsm);
	free(t->lib);
	free(t->ctl);
	free(t->trace);
	memset(t, 0, sizeof(*t));
}

double tu_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int tu_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

long tu_rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* ---- log capture safe against other threads ---- */

static pthread_mutex_t cap_mu = PTHREAD_MUTEX_INITIALIZER;
static char **cap;
static size_t cap_n, cap_max;

static void sink(enum kms_log_level level, const char *line, void *ctx)
{
	(void)level;
	(void)ctx;
	pthread_mutex_lock(&cap_mu);
	if (cap_n == cap_max) {
		size_t m = cap_max ? cap_max * 2 : 64;
		char **g = realloc(cap, m * sizeof(*g));
		if (g) {
			cap = g;
			cap_max = m;
		}
	}
	if (cap_n < cap_max && (cap[cap_n] = strdup(line)))
		cap_n++;
	pthread_mutex_unlock(&cap_mu);
}

static void cap_free(void)
{
	for (size_t i = 0; i < cap_n; i++)
		free(cap[i]);
	free(cap);
	cap = NULL;
	cap_n = cap_max = 0;
}

void tu_log_start(void)
{
	pthread_mutex_lock(&cap_mu);
	cap_free();
	pthread_mutex_unlock(&cap_mu);
	kms_log_set_sink(sink, NULL);
	if (!getenv("P11KMS_TEST_VERBOSE"))
		kms_log_set_quiet(1);
}

int tu_log_lines_with(const char *needle)
{
	int n = 0;
	pthread_mutex_lock(&cap_mu);
	for (size_t i = 0; i < cap_n; i++)
		n += strstr(cap[i], needle) != NULL;
	pthread_mutex_unlock(&cap_mu);
	return n;
}

int tu_log_has(const char *needle)
{
	return tu_log_lines_with(needle) > 0;
}

void tu_log_stop(void)
{
	kms_log_set_sink(NULL, NULL);
	kms_log_set_quiet(0);
	pthread_mutex_lock(&cap_mu);
	cap_free();
	pthread_mutex_unlock(&cap_mu);
}
