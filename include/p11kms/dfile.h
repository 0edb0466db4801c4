/* SPDX-License-Identifier: Apache-2.0 */
/* dfile_: private-file reads, atomic durable writes, and an injectable ops table. */
#ifndef P11KMS_DFILE_H
#define P11KMS_DFILE_H

#include <stddef.h>
#include <sys/statfs.h>
#include <sys/types.h>

#include "p11kms/kbuf.h"
#include "p11kms/kms_err.h"

/*
 * Every durable-I/O system call goes through this table so that tests can
 * inject failures (the sqlite SimulateIOError idea). The default table calls
 * the real functions. Used by dfile_ and by the guard's state file.
 */
struct dfile_ops {
	int (*fsync)(int fd);
	int (*fdatasync)(int fd);
	int (*rename)(const char *from, const char *to);
	ssize_t (*write)(int fd, const void *p, size_t n);
	ssize_t (*pwrite)(int fd, const void *p, size_t n, off_t off);
	/* appended: tests that copy *dfile_ops() and override a few keep working */
	int (*link)(const char *from, const char *to);
	int (*fstatfs)(int fd, struct statfs *st);
};

/* The table in force. Never NULL. */
const struct dfile_ops *dfile_ops(void);
/* Tests only: replace the table (NULL restores the default). Not thread-safe. */
void dfile_set_ops(const struct dfile_ops *ops);

/*
 * Refuses a file that is group- or world-readable/writable (KMS_ERR_PERM, and
 * an ERR log naming the path and the mode found, e.g. "0644, expected 0600 or
 * stricter"), or that is not a regular file. KMS_ERR_NOT_FOUND if missing.
 */
KMS_MUST_CHECK int dfile_check_private(const char *path);
/*
 * The same check on a file already open: fstat of fd, so the mode checked is
 * the opened file's even if path is renamed over in between (path only names
 * it in the log). Use this whenever the file is opened before it is checked.
 */
KMS_MUST_CHECK int dfile_check_private_fd(int fd, const char *path);

/*
 * Reads a whole file of at most max bytes into a new kbuf (*out, owned by the
 * caller, wiped on free). dfile_read_private checks permissions first (see
 * dfile_check_private). KMS_ERR_TOO_LARGE names the path and size.
 */
KMS_MUST_CHECK int dfile_read_private(const char *path, size_t max, struct kbuf **out);
KMS_MUST_CHECK int dfile_read(const char *path, size_t max, struct kbuf **out);

/*
 * Atomically replaces path with len bytes of data: temp file in the same
 * directory (O_CREAT|O_EXCL, mode), write all, fsync, close, rename over
 * path, fsync the directory. On any failure the temp file is removed, path is
 * untouched, and the failing step is logged. KMS_ERR_STATE_IO or
 * KMS_ERR_SYSTEM on I/O errors.
 */
KMS_MUST_CHECK int dfile_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* As dfile_write_atomic but fails with KMS_ERR_EXISTS if path exists. */
KMS_MUST_CHECK int dfile_create_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * The filesystem an open file lives on (fstatfs through the ops table), and
 * whether it can give the guarantees the double-sign state needs: an
 * fdatasync that reaches stable storage, a file that outlives a reboot, and a
 * flock that keeps every other signer out. Refused (durable = 0): tmpfs and
 * ramfs (memory only), overlayfs and aufs (container layers, often thrown
 * away with the container), NFS, SMB/CIFS, 9p, Ceph, AFS, Lustre (network:
 * flock does not exclude other hosts, sync depends on the server), and FUSE
 * (whatever the implementation does). Other types are accepted; name is then
 * the known name ("ext4", "xfs", ...) or "0x<magic>". docs/state.md.
 */
struct dfile_fs {
	unsigned long magic;
	const char *name; /* static */
	int durable;
	const char *why; /* static, for a refused type: what it cannot guarantee */
};
KMS_MUST_CHECK int dfile_fs_probe(int fd, struct dfile_fs *out);

/* fsync of the directory holding path (after a rename or create). */
KMS_MUST_CHECK int dfile_fsync_dir(const char *path);

/* Writes all n bytes at fd (retrying partial writes and EINTR) through the ops table. */
KMS_MUST_CHECK int dfile_write_full(int fd, const void *p, size_t n);

#endif
