/* SPDX-License-Identifier: Apache-2.0 */
/* Audit files on disk: listing, loading (.gz too), the liveness probe, state sequences. */
#define _GNU_SOURCE /* F_OFD_GETLK: test the daemon's lock without taking it */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "audit_int.h"
#include "p11kms/dfile.h"
#include "p11kms/guard.h"
#include "p11kms/kms_log.h"

struct entry {
	uint64_t idx;
	int gz;
	char *path;
};

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->idx != y->idx)
		return x->idx < y->idx ? -1 : 1;
	return x->gz - y->gz; /* the plain file first: a .gz beside it may be half written */
}

static char *join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (p == NULL)
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

static int push_entry(struct entry **v, size_t *n, size_t *cap, const char *dir, const char *name,
		      uint64_t idx)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct entry *nv = realloc(*v, nc * sizeof(*nv));
		if (nv == NULL)
			return KMS_ERR_ALLOC;
		*v = nv;
		*cap = nc;
	}
	struct entry *e = &(*v)[*n];
	e->idx = idx;
	e->gz = strlen(name) > 4 && strcmp(name + strlen(name) - 3, ".gz") == 0;
	e->path = join(dir, name);
	if (e->path == NULL)
		return KMS_ERR_ALLOC;
	(*n)++;
	return KMS_OK;
}

int audit_dir_list(const char *dir, char ***paths, size_t *np)
{
	struct entry *v = NULL;
	size_t n = 0, cap = 0, out = 0;
	struct dirent *de;
	int r = KMS_OK;
	*paths = NULL;
	*np = 0;
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT || errno == ENOTDIR ? KMS_ERR_NOT_FOUND : KMS_ERR_SYSTEM;
	while (r == KMS_OK && (de = readdir(d)) != NULL) {
		uint64_t idx;
		if (audit_file_index(de->d_name, &idx) == 0)
			r = push_entry(&v, &n, &cap, dir, de->d_name, idx);
	}
	closedir(d);
	if (r == KMS_OK && n > 0) {
		qsort(v, n, sizeof(*v), cmp_entry);
		*paths = calloc(n, sizeof(char *));
		if (*paths == NULL)
			r = KMS_ERR_ALLOC;
	}
	for (size_t i = 0; i < n; i++) {
		if (r == KMS_OK && (out == 0 || v[i].idx != v[i - 1].idx))
			(*paths)[out++] = v[i].path;
		else
			free(v[i].path);
	}
	free(v);
	if (r != KMS_OK) {
		audit_paths_free(*paths, out);
		*paths = NULL;
		return r;
	}
	*np = out;
	return KMS_OK;
}

void audit_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; paths != NULL && i < n; i++)
		free(paths[i]);
	free(paths);
}

int audit_file_load(const char *path, size_t max, uint8_t **out, size_t *outn)
{
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	int r = KMS_ERR_SYSTEM;
	*out = NULL;
	*outn = 0;
	/* gzread passes a file that is not gzip through unchanged (zlib's transparent mode) */
	gzFile gz = gzopen(path, "rb");
	if (gz == NULL) {
		int e = errno;
		kms_log_err("cannot open audit file %s: %s", path, strerror(e));
		return e == ENOENT ? KMS_ERR_NOT_FOUND :
		       e == EACCES ? KMS_ERR_PERM :
				     KMS_ERR_SYSTEM;
	}
	for (;;) {
		if (cap - n < 65536) {
			if (cap >= max) {
				kms_log_err("audit file %s is over %zu bytes", path, max);
				r = KMS_ERR_TOO_LARGE;
				goto out;
			}
			size_t nc = cap ? cap * 2 : 65536;
			if (nc > max)
				nc = max;
			uint8_t *nb = realloc(buf, nc + 65536);
			if (nb == NULL) {
				r = KMS_ERR_ALLOC;
				goto out;
			}
			buf = nb;
			cap = nc + 65536;
		}
		int k = gzread(gz, buf + n, 65536);
		if (k < 0) {
			int zerr = 0;
			kms_log_err("cannot read audit file %s: %s", path, gzerror(gz, &zerr));
			r = KMS_ERR_SYSTEM;
			goto out;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	if (n > max) {
		kms_log_err("audit file %s is over %zu bytes", path, max);
		r = KMS_ERR_TOO_LARGE;
		goto out;
	}
	*out = buf;
	*outn = n;
	buf = NULL;
	r = KMS_OK;
out:
	(void)gzclose(gz);
	free(buf);
	return r;
}

/* pid=N from the status text, or -1. */
static long status_pid(int fd)
{
	char txt[AUDIT_STATUS_SIZE + 1];
	ssize_t k = pread(fd, txt, AUDIT_STATUS_SIZE, 0);
	if (k <= 0)
		return -1;
	txt[k] = '\0';
	const char *p = strstr(txt, "\npid=");
	if (p == NULL)
		return -1;
	char *end = NULL;
	long v = strtol(p + 5, &end, 10);
	return end != p + 5 && v > 0 ? v : -1;
}

int audit_dir_live(const char *dir, long *pid)
{
	char *path = join(dir, AUDIT_STATUS_FILE);
	int live = 0;
	if (pid != NULL)
		*pid = -1;
	if (path == NULL)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	free(path);
	if (fd < 0)
		return 0;
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	/* GETLK reports a conflicting lock and takes none: the daemon is never disturbed */
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
		live = 1;
		if (pid != NULL)
			*pid = status_pid(fd);
	}
	close(fd);
	return live;
}

int audit_lock_dir(const char *dir, int *fdp)
{
	char *path = join(dir, AUDIT_STATUS_FILE);
	*fdp = -1;
	if (path == NULL)
		return KMS_ERR_ALLOC;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		kms_log_err("cannot open %s: %s", path, strerror(errno));
		free(path);
		return errno == EACCES ? KMS_ERR_PERM : KMS_ERR_SYSTEM;
	}
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		int e = errno;
		long holder = status_pid(fd);
		kms_log_err("audit directory %s is in use by another p11kms (pid %ld): %s", dir,
			    holder, strerror(e));
		close(fd);
		free(path);
		return e == EAGAIN || e == EACCES ? KMS_ERR_LOCKED : KMS_ERR_SYSTEM;
	}
	/* room for the status text now, so that a full disk later cannot refuse it */
	(void)posix_fallocate(fd, 0, AUDIT_STATUS_SIZE);
	free(path);
	*fdp = fd;
	return KMS_OK;
}

int audit_state_read(const char *state_file, uint64_t *seq, int64_t *height, int32_t *round,
		     uint8_t *step)
{
	struct kbuf *b = NULL;
	struct guard_state *st = calloc(1, sizeof(*st));
	*seq = 0;
	if (st == NULL)
		return KMS_ERR_ALLOC;
	/* no lock: the daemon keeps it; a slot being rewritten fails its checksum and the
	 * other (at most one signature older) is read, as `state show` does */
	int r = dfile_read(state_file, 65536, &b);
	if (r == KMS_OK)
		r = guard_state_parse_file(kbuf_ptr(b), kbuf_len(b), st, seq);
	if (r == KMS_OK) {
		if (height != NULL)
			*height = st->hrs.height;
		if (round != NULL)
			*round = st->hrs.round;
		if (step != NULL)
			*step = (uint8_t)st->hrs.step;
	}
	kbuf_free(b);
	free(st);
	return r;
}

int audit_state_seq_read(const char *state_file, uint64_t *seq)
{
	return audit_state_read(state_file, seq, NULL, NULL, NULL);
}
