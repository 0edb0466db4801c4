/* SPDX-License-Identifier: Apache-2.0 */
/* dfile_: private-file reads, atomic durable writes through an injectable ops table. */
#include "p11kms/dfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "p11kms/kms_log.h"

static int real_fsync(int fd)
{
	return fsync(fd);
}

static int real_fdatasync(int fd)
{
	return fdatasync(fd);
}

static int real_rename(const char *from, const char *to)
{
	return rename(from, to);
}

static ssize_t real_write(int fd, const void *p, size_t n)
{
	return write(fd, p, n);
}

static ssize_t real_pwrite(int fd, const void *p, size_t n, off_t off)
{
	return pwrite(fd, p, n, off);
}

static int real_link(const char *from, const char *to)
{
	return link(from, to);
}

static int real_fstatfs(int fd, struct statfs *st)
{
	return fstatfs(fd, st);
}

static const struct dfile_ops default_ops = {
	.fsync = real_fsync,
	.fdatasync = real_fdatasync,
	.rename = real_rename,
	.write = real_write,
	.pwrite = real_pwrite,
	.link = real_link,
	.fstatfs = real_fstatfs,
};

static const struct dfile_ops *cur_ops = &default_ops;

const struct dfile_ops *dfile_ops(void)
{
	return cur_ops;
}

void dfile_set_ops(const struct dfile_ops *ops)
{
	cur_ops = ops != NULL ? ops : &default_ops;
}

/* Filesystem types by statfs f_type (linux/magic.h; zfs, lustre, bcachefs from their sources). */
static const struct {
	unsigned long magic;
	const char *name;
	const char *why; /* NULL: durable */
} fs_types[] = {
	{ 0xEF53, "ext4", NULL },
	{ 0x58465342, "xfs", NULL },
	{ 0x9123683E, "btrfs", NULL },
	{ 0x2FC12FC1, "zfs", NULL },
	{ 0xF2F52010, "f2fs", NULL },
	{ 0xCA451A4E, "bcachefs", NULL },
	{ 0x3153464A, "jfs", NULL },
	{ 0x52654973, "reiserfs", NULL },
	{ 0x01021994, "tmpfs", "it lives in memory: a reboot or power cut erases it" },
	{ 0x858458F6, "ramfs", "it lives in memory: a reboot or power cut erases it" },
	{ 0x794C7630, "overlayfs",
	  "a container layer: it is often thrown away with the container, and its "
	  "durability is the upper layer's (mount a volume on a disk filesystem)" },
	{ 0x61756673, "aufs", "a container layer (mount a volume on a disk filesystem)" },
	{ 0x6969, "nfs",
	  "a network filesystem: flock does not keep a signer on another host out, and "
	  "fdatasync is only as durable as the server makes it" },
	{ 0xFF534D42, "cifs", "a network filesystem: flock does not keep other hosts out" },
	{ 0xFE534D42, "smb2", "a network filesystem: flock does not keep other hosts out" },
	{ 0x517B, "smb", "a network filesystem: flock does not keep other hosts out" },
	{ 0x01021997, "9p",
	  "a host/guest or network share: no durable fdatasync, no flock "
	  "across hosts" },
	{ 0x00C36400, "ceph", "a network filesystem: flock does not keep other hosts out" },
	{ 0x5346414F, "afs", "a network filesystem: flock does not keep other hosts out" },
	{ 0x6B414653, "afs", "a network filesystem: flock does not keep other hosts out" },
	{ 0x0BD00BD0, "lustre", "a network filesystem: flock does not keep other hosts out" },
	{ 0x65735546, "fuse",
	  "a FUSE filesystem (sshfs, s3fs, ...): whether fdatasync reaches stable storage "
	  "and flock keeps other hosts out is up to its implementation" },
};

int dfile_fs_probe(int fd, struct dfile_fs *out)
{
	struct statfs st;

	memset(out, 0, sizeof(*out));
	if (cur_ops->fstatfs(fd, &st) != 0) {
		kms_log_err("fstatfs failed err=\"%s\"", strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	out->magic = (unsigned long)st.f_type & 0xFFFFFFFFul;
	out->name = "unknown";
	out->durable = 1;
	for (size_t i = 0; i < sizeof(fs_types) / sizeof(fs_types[0]); i++) {
		if (fs_types[i].magic == out->magic) {
			out->name = fs_types[i].name;
			out->durable = fs_types[i].why == NULL;
			out->why = fs_types[i].why;
		}
	}
	return KMS_OK;
}

/* Read side errors: map the common errnos callers want to tell apart. */
static int errno_to_err(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return KMS_ERR_NOT_FOUND;
	case EACCES:
	case EPERM:
		return KMS_ERR_PERM;
	default:
		return KMS_ERR_SYSTEM;
	}
}

static int check_private_st(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode)) {
		kms_log_err("not a regular file path=%s", path);
		return KMS_ERR_PERM;
	}
	if ((st->st_mode & 077) != 0) {
		/* Name the mode found so the operator knows what to fix. */
		kms_log_err("private file %s has mode %04o; it must not be readable, writable or "
			    "executable by group or others (chmod 600)",
			    path, (unsigned)(st->st_mode & 07777));
		return KMS_ERR_PERM;
	}
	return KMS_OK;
}

/* What stat/fstat of path returned (r, errno): the error logged, or the private check. */
static int checked_private(int r, const char *path, const struct stat *st)
{
	if (r != 0) {
		int e = errno;

		kms_log_err("cannot stat file path=%s err=\"%s\"", path, strerror(e));
		return errno_to_err(e);
	}
	return check_private_st(path, st);
}

int dfile_check_private(const char *path)
{
	struct stat st;

	if (path == NULL)
		return KMS_ERR_INTERNAL;
	return checked_private(stat(path, &st), path, &st);
}

int dfile_check_private_fd(int fd, const char *path)
{
	struct stat st;

	if (fd < 0 || path == NULL)
		return KMS_ERR_INTERNAL;
	return checked_private(fstat(fd, &st), path, &st);
}

/* Reads fd to EOF into a new kbuf of at most max bytes. */
static int read_fd(int fd, const char *path, size_t max, struct kbuf **out)
{
	struct kbuf *b = kbuf_new(max);
	uint8_t *dst, extra;
	ssize_t n;
	int r = KMS_ERR_INTERNAL;

	if (b == NULL)
		return KMS_ERR_ALLOC;
	for (;;) {
		size_t room = max - kbuf_len(b), chunk = room < 4096 ? room : 4096;

		if (chunk == 0) {
			/* Full: one more byte means the file is over max. */
			do
				n = read(fd, &extra, 1);
			while (n < 0 && errno == EINTR);
			if (n > 0) {
				kms_log_err("file too large path=%s max=%zu", path, max);
				r = KMS_ERR_TOO_LARGE;
				goto out;
			}
			if (n < 0)
				goto read_err;
			break;
		}
		if ((r = kbuf_reserve(b, chunk, &dst)) != KMS_OK)
			goto out;
		do
			n = read(fd, dst, chunk);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			kms_wipe(dst, chunk);
			if (kbuf_consume_end(b, chunk) != KMS_OK)
				r = KMS_ERR_INTERNAL;
			goto read_err;
		}
		if (kbuf_consume_end(b, chunk - (size_t)n) != KMS_OK) {
			r = KMS_ERR_INTERNAL;
			goto out;
		}
		if (n == 0)
			break;
	}
	*out = b;
	b = NULL;
	r = KMS_OK;
	goto out;
read_err:
	kms_log_err("cannot read file path=%s err=\"%s\"", path, strerror(errno));
	r = KMS_ERR_SYSTEM;
out:
	kbuf_free(b);
	return r;
}

static int read_file(const char *path, size_t max, struct kbuf **out, int private_only)
{
	struct stat st;
	int fd, r;

	if (out != NULL)
		*out = NULL;
	if (path == NULL || out == NULL)
		return KMS_ERR_INTERNAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int e = errno;

		kms_log_err("cannot open file path=%s err=\"%s\"", path, strerror(e));
		return errno_to_err(e);
	}
	/* fstat of the opened file, not stat of the path: no swap in between. */
	if (fstat(fd, &st) != 0) {
		kms_log_err("cannot stat file path=%s err=\"%s\"", path, strerror(errno));
		r = KMS_ERR_SYSTEM;
		goto out;
	}
	if (private_only && (r = check_private_st(path, &st)) != KMS_OK)
		goto out;
	if (S_ISREG(st.st_mode) && st.st_size > 0 && (unsigned long long)st.st_size > max) {
		kms_log_err("file too large path=%s size=%lld max=%zu", path, (long long)st.st_size,
			    max);
		r = KMS_ERR_TOO_LARGE;
		goto out;
	}
	r = read_fd(fd, path, max, out);
out:
	close(fd);
	return r;
}

int dfile_read_private(const char *path, size_t max, struct kbuf **out)
{
	return read_file(path, max, out, 1);
}

int dfile_read(const char *path, size_t max, struct kbuf **out)
{
	return read_file(path, max, out, 0);
}

int dfile_write_full(int fd, const void *p, size_t n)
{
	const uint8_t *q = p;

	if (q == NULL && n != 0)
		return KMS_ERR_INTERNAL;
	while (n > 0) {
		ssize_t w = cur_ops->write(fd, q, n);

		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return KMS_ERR_SYSTEM;
		}
		if (w == 0) {
			/* No progress and no errno: call it a full disk rather than spin. */
			errno = ENOSPC;
			return KMS_ERR_SYSTEM;
		}
		q += w;
		n -= (size_t)w;
	}
	return KMS_OK;
}

/* Directory part of path in a new string ("." when there is none). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t n;
	char *d;

	if (slash == NULL)
		return strdup(".");
	n = slash == path ? 1 : (size_t)(slash - path);
	d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, path, n);
	d[n] = '\0';
	return d;
}

int dfile_fsync_dir(const char *path)
{
	char *dir;
	int fd, r = KMS_ERR_INTERNAL;

	if (path == NULL)
		return KMS_ERR_INTERNAL;
	if ((dir = dir_of(path)) == NULL)
		return KMS_ERR_ALLOC;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		kms_log_err("cannot open directory path=%s err=\"%s\"", dir, strerror(errno));
		r = KMS_ERR_SYSTEM;
		goto out;
	}
	/*
	 * Without this, a power loss after rename() can leave the directory
	 * pointing at the old file (or at nothing, on a create).
	 */
	if (cur_ops->fsync(fd) != 0 && errno != EINVAL) {
		kms_log_err("fsync of directory failed path=%s err=\"%s\"", dir, strerror(errno));
		r = KMS_ERR_SYSTEM;
		close(fd);
		goto out;
	}
	close(fd);
	r = KMS_OK;
out:
	free(dir);
	return r;
}

/* Creates "<path>.tmp-XXXXXX" exclusively; *tmp is the new name (caller frees). */
static int open_temp(const char *path, mode_t mode, char **tmp, int *fdp)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	size_t plen = strlen(path);
	char *name;

	if (plen > SIZE_MAX - 16)
		return KMS_ERR_TOO_LARGE;
	if ((name = malloc(plen + 12)) == NULL)
		return KMS_ERR_ALLOC;
	memcpy(name, path, plen);
	memcpy(name + plen, ".tmp-", 5);
	for (int tries = 0; tries < 100; tries++) {
		unsigned char rnd[6];
		int fd;

		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			free(name);
			return kms_crypto_err("RAND_bytes");
		}
		for (size_t i = 0; i < 6; i++)
			name[plen + 5 + i] = chars[rnd[i] % (sizeof(chars) - 1)];
		name[plen + 11] = '\0';
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
		if (fd >= 0) {
			*tmp = name;
			*fdp = fd;
			return KMS_OK;
		}
		if (errno != EEXIST) {
			int e = errno;

			kms_log_err("cannot create temporary file path=%s err=\"%s\"", name,
				    strerror(e));
			free(name);
			return errno_to_err(e);
		}
	}
	kms_log_err("cannot create temporary file path=%s.tmp-* err=\"too many collisions\"", path);
	free(name);
	return KMS_ERR_SYSTEM;
}

/* Writes, syncs and closes the temp file; on failure fd is closed too. */
static int fill_temp(int fd, const char *tmp, const void *data, size_t len, mode_t mode)
{
	int r = KMS_ERR_SYSTEM;

	/* The umask may have cut the mode; the caller asked for exactly this one. */
	if (fchmod(fd, mode) != 0) {
		kms_log_err("chmod of temporary file failed path=%s err=\"%s\"", tmp,
			    strerror(errno));
		goto fail;
	}
	if (dfile_write_full(fd, data, len) != KMS_OK) {
		kms_log_err("write failed path=%s err=\"%s\"", tmp, strerror(errno));
		goto fail;
	}
	if (cur_ops->fsync(fd) != 0) {
		kms_log_err("fsync failed path=%s err=\"%s\"", tmp, strerror(errno));
		goto fail;
	}
	/* close() can report a deferred write error (NFS); never retry it. */
	if (close(fd) != 0) {
		kms_log_err("close failed path=%s err=\"%s\"", tmp, strerror(errno));
		return KMS_ERR_SYSTEM;
	}
	return KMS_OK;
fail:
	close(fd);
	return r;
}

static int write_atomic(const char *path, const void *data, size_t len, mode_t mode, int excl)
{
	char *tmp = NULL;
	int fd = -1, r;

	if (path == NULL || (data == NULL && len != 0))
		return KMS_ERR_INTERNAL;
	if (excl && access(path, F_OK) == 0) {
		kms_log_err("refusing to overwrite existing file path=%s", path);
		return KMS_ERR_EXISTS;
	}
	if ((r = open_temp(path, mode, &tmp, &fd)) != KMS_OK)
		return r;
	if ((r = fill_temp(fd, tmp, data, len, mode)) != KMS_OK)
		goto fail;
	if (excl) {
		/* link() fails with EEXIST, so a file created meanwhile is never replaced. */
		if (cur_ops->link(tmp, path) != 0) {
			int e = errno;

			kms_log_err("cannot create file path=%s err=\"%s\"", path, strerror(e));
			r = e == EEXIST ? KMS_ERR_EXISTS : KMS_ERR_SYSTEM;
			goto fail;
		}
		if (unlink(tmp) != 0)
			kms_log_warn("cannot remove temporary file path=%s err=\"%s\"", tmp,
				     strerror(errno));
	} else if (cur_ops->rename(tmp, path) != 0) {
		kms_log_err("rename failed from=%s to=%s err=\"%s\"", tmp, path, strerror(errno));
		r = KMS_ERR_SYSTEM;
		goto fail;
	}
	free(tmp);
	return dfile_fsync_dir(path);
fail:
	if (unlink(tmp) != 0 && errno != ENOENT)
		kms_log_warn("cannot remove temporary file path=%s err=\"%s\"", tmp,
			     strerror(errno));
	free(tmp);
	return r;
}

int dfile_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_atomic(path, data, len, mode, 0);
}

int dfile_create_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_atomic(path, data, len, mode, 1);
}
