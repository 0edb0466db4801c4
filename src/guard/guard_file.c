/* SPDX-License-Identifier: Apache-2.0 */
/* The guard's state file: two checksummed, sequence-numbered record slots (docs/state.md). */
#include "guard_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "p11kms/dfile.h"
#include "p11kms/kms_log.h"

/*
 * Record layout (little-endian), GUARD_REC_LEN bytes at the start of a slot:
 *   0 magic[8]  8 version u32  12 record length u32  16 sequence u64
 *  24 written_at i64  32 height i64  40 round i32  44 step u8  45 flags u8
 *  46 chain-id length u16  48 chain-id[64]  112 sign-bytes length u32
 * 116 signature[64]  180 sign-bytes[4096]  4276 SHA-256 of bytes [0, 4276)
 * Unused bytes are zero, so the checksum covers a fully defined image.
 */
enum {
	O_MAGIC = 0,
	O_VERSION = 8,
	O_RECLEN = 12,
	O_SEQ = 16,
	O_WHEN = 24,
	O_HEIGHT = 32,
	O_ROUND = 40,
	O_STEP = 44,
	O_FLAGS = 45,
	O_CHAINLEN = 46,
	O_CHAIN = 48,
	O_SBLEN = 112,
	O_SIG = 116,
	O_SB = 180,
	O_SUM = 4276,
};
_Static_assert(O_SB + GUARD_MAX_SIGN_BYTES == O_SUM, "record layout");
_Static_assert(O_SUM + 32 == GUARD_REC_LEN, "record length");
_Static_assert(GUARD_REC_LEN <= GUARD_SLOT_SIZE, "slot size");

#define FLAG_HAS_SIG 0x01u

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)(v & 0xff);
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = n; i > 0; i--)
		v = (v << 8) | p[i - 1];
	return v;
}

static void checksum(const uint8_t *p, size_t n, uint8_t out[32])
{
	unsigned int len = 32;
	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
		memset(out, 0xff, 32); /* never matches a stored sum: the record reads as corrupt */
}

void guard_rec_encode(const struct guard_rec *rec, uint8_t out[static GUARD_REC_LEN])
{
	size_t clen = strnlen(rec->chain_id, GUARD_MAX_CHAIN_ID);
	memset(out, 0, GUARD_REC_LEN);
	memcpy(out + O_MAGIC, GUARD_FILE_MAGIC, 8);
	put_le(out + O_VERSION, GUARD_FILE_VERSION, 4);
	put_le(out + O_RECLEN, GUARD_REC_LEN, 4);
	put_le(out + O_SEQ, rec->seq, 8);
	put_le(out + O_WHEN, (uint64_t)rec->written_at, 8);
	put_le(out + O_HEIGHT, (uint64_t)rec->hrs.height, 8);
	put_le(out + O_ROUND, (uint32_t)rec->hrs.round, 4);
	out[O_STEP] = (uint8_t)rec->hrs.step;
	out[O_FLAGS] = rec->has_sig ? FLAG_HAS_SIG : 0;
	put_le(out + O_CHAINLEN, clen, 2);
	memcpy(out + O_CHAIN, rec->chain_id, clen);
	put_le(out + O_SBLEN, rec->sign_bytes_len, 4);
	if (rec->has_sig)
		memcpy(out + O_SIG, rec->signature, GUARD_SIG_LEN);
	memcpy(out + O_SB, rec->sign_bytes, rec->sign_bytes_len);
	checksum(out, O_SUM, out + O_SUM);
}

static int zero_from(const uint8_t *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (p[i])
			return 0;
	return 1;
}

int guard_rec_decode(const uint8_t *p, size_t n, struct guard_rec *rec, const char **why)
{
	uint8_t sum[32];
	*why = NULL;
	if (n < GUARD_REC_LEN) {
		*why = "short slot";
		return KMS_ERR_FORMAT;
	}
	if (memcmp(p + O_MAGIC, GUARD_FILE_MAGIC, 8) != 0) {
		*why = zero_from(p, 0, GUARD_REC_LEN) ? "empty slot" : "bad magic";
		return KMS_ERR_FORMAT;
	}
	checksum(p, O_SUM, sum);
	if (memcmp(sum, p + O_SUM, 32) != 0) {
		*why = "checksum mismatch (torn or corrupted write)";
		return KMS_ERR_FORMAT;
	}
	if (get_le(p + O_VERSION, 4) != GUARD_FILE_VERSION ||
	    get_le(p + O_RECLEN, 4) != GUARD_REC_LEN) {
		*why = "unsupported record version";
		return KMS_ERR_FORMAT;
	}
	size_t clen = (size_t)get_le(p + O_CHAINLEN, 2);
	size_t sblen = (size_t)get_le(p + O_SBLEN, 4);
	uint8_t flags = p[O_FLAGS];
	memset(rec, 0, sizeof(*rec));
	rec->seq = get_le(p + O_SEQ, 8);
	rec->written_at = (int64_t)get_le(p + O_WHEN, 8);
	rec->hrs.height = (int64_t)get_le(p + O_HEIGHT, 8);
	rec->hrs.round = (int32_t)(uint32_t)get_le(p + O_ROUND, 4);
	rec->hrs.step = (enum guard_step)p[O_STEP];
	if (clen == 0 || clen > GUARD_MAX_CHAIN_ID || sblen > GUARD_MAX_SIGN_BYTES ||
	    (flags & ~FLAG_HAS_SIG) != 0 || p[O_STEP] > GUARD_STEP_PRECOMMIT ||
	    guard_hrs_valid(&rec->hrs) != KMS_OK || ((flags & FLAG_HAS_SIG) != 0) != (sblen != 0)) {
		*why = "invalid field values";
		return KMS_ERR_FORMAT;
	}
	memcpy(rec->chain_id, p + O_CHAIN, clen);
	rec->chain_id[clen] = '\0';
	if (strlen(rec->chain_id) != clen) {
		*why = "invalid chain-id";
		return KMS_ERR_FORMAT;
	}
	rec->has_sig = (flags & FLAG_HAS_SIG) != 0;
	if (rec->has_sig)
		memcpy(rec->signature, p + O_SIG, GUARD_SIG_LEN);
	rec->sign_bytes_len = sblen;
	memcpy(rec->sign_bytes, p + O_SB, sblen);
	return KMS_OK;
}

int guard_hrs_valid(const struct guard_hrs *h)
{
	if (h->height < 0 || h->round < 0 || (int)h->step < GUARD_STEP_NONE ||
	    (int)h->step > GUARD_STEP_PRECOMMIT)
		return KMS_ERR_FORMAT;
	return KMS_OK;
}

int guard_hrs_cmp(const struct guard_hrs *a, const struct guard_hrs *b)
{
	if (a->height != b->height)
		return a->height < b->height ? -1 : 1;
	if (a->round != b->round)
		return a->round < b->round ? -1 : 1;
	if (a->step != b->step)
		return a->step < b->step ? -1 : 1;
	return 0;
}

static char *str_cat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, a, la);
	memcpy(s + la, b, lb + 1);
	return s;
}

/* The pid recorded by the lock holder in the sidecar, or 0. */
static long holder_pid(const char *pid_path)
{
	char buf[32];
	long pid = 0;
	int fd = open(pid_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *end;
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || pid <= 0)
		return 0;
	return pid;
}

/* Informational only (not durable): who holds the lock, for the next opener's message. */
static void write_pid(const char *pid_path)
{
	char buf[32];
	int fd = open(pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (n > 0 && write(fd, buf, (size_t)n) != n)
		kms_log_warn("could not record the lock holder pid path=%s", pid_path);
	close(fd);
}

/*
 * dfile_write_atomic/dfile_create_atomic leave "<name>.tmp-XXXXXX" behind when
 * killed between create and rename. Such a file never held state that was
 * acted on (the rename is the commit point), so removing it is safe; we only
 * do it while holding the flock.
 */
static void remove_stale_temps(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
	const char *base = slash ? slash + 1 : path;
	char *prefix = str_cat(base, ".tmp-");
	DIR *d = dir ? opendir(dir) : NULL;
	if (d != NULL && prefix != NULL) {
		size_t pl = strlen(prefix);
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, prefix, pl) != 0)
				continue;
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				kms_log_warn("removed stale temp file dir=%s name=%s", dir,
					     e->d_name);
		}
	}
	if (d != NULL)
		closedir(d);
	free(prefix);
	free(dir);
}

static void report_missing(const char *path, const char *chain_id)
{
	kms_log_err(
		"double-sign state missing path=%s chain=%s: refusing to sign. Create it with "
		"`p11kms state init -c <conf> --chain %s --height H` (H = the chain's current "
		"height) or `p11kms state import` from priv_validator_state.json or tmkms state",
		path, chain_id ? chain_id : "?", chain_id ? chain_id : "<id>");
}

/*
 * The newest valid record of a whole file image: the higher sequence wins; a
 * slot failing its checksum is skipped (a torn write: its signature was never
 * released). Two valid slots with one sequence cannot come from our writer.
 */
static int parse_image(const uint8_t *p, size_t n, struct guard_rec *best, int ok[2],
		       uint64_t seq[2], int *cur, const char *why[2])
{
	struct guard_rec *tmp = malloc(sizeof(*tmp));
	int b = -1;
	ok[0] = ok[1] = 0;
	why[0] = why[1] = "out of memory";
	if (tmp == NULL)
		return KMS_ERR_ALLOC;
	for (int i = 0; i < 2; i++) {
		size_t off = (size_t)i * GUARD_SLOT_SIZE;
		why[i] = NULL;
		ok[i] = n == GUARD_FILE_SIZE &&
			guard_rec_decode(p + off, GUARD_SLOT_SIZE, tmp, &why[i]) == KMS_OK;
		if (n != GUARD_FILE_SIZE)
			why[i] = "file size";
		if (!ok[i])
			continue;
		seq[i] = tmp->seq;
		if (b < 0 || tmp->seq > best->seq) {
			b = i;
			*best = *tmp;
		}
	}
	kms_wipe(tmp, sizeof(*tmp));
	free(tmp);
	if (b < 0 || (ok[0] && ok[1] && seq[0] == seq[1]))
		return KMS_ERR_FORMAT;
	*cur = b;
	return KMS_OK;
}

int guard_state_parse_file(const uint8_t *p, size_t n, struct guard_state *st, uint64_t *seq)
{
	struct guard_rec *rec = malloc(sizeof(*rec));
	int ok[2], cur;
	uint64_t seqs[2];
	const char *why[2];
	memset(st, 0, sizeof(*st));
	*seq = 0;
	if (rec == NULL)
		return KMS_ERR_ALLOC;
	int r = parse_image(p, n, rec, ok, seqs, &cur, why);
	if (r == KMS_OK) {
		st->hrs = rec->hrs;
		st->fmt = GUARD_FMT_P11KMS;
		memcpy(st->chain_id, rec->chain_id, sizeof(st->chain_id));
		st->sign_bytes_len = rec->sign_bytes_len;
		memcpy(st->sign_bytes, rec->sign_bytes, rec->sign_bytes_len);
		st->has_signature = rec->has_sig;
		memcpy(st->signature, rec->signature, GUARD_SIG_LEN);
		*seq = rec->seq;
	}
	kms_wipe(rec, sizeof(*rec));
	free(rec);
	return r;
}

static int load_slots(struct guard_file *gf)
{
	uint8_t *buf = malloc(GUARD_FILE_SIZE);
	int r = KMS_ERR_INTERNAL;
	struct stat st;
	if (buf == NULL) {
		r = KMS_ERR_ALLOC;
		goto out;
	}
	if (fstat(gf->fd, &st) != 0) {
		kms_log_err("fstat failed path=%s: %s", gf->path, strerror(errno));
		r = KMS_ERR_STATE_IO;
		goto out;
	}
	if (st.st_size != GUARD_FILE_SIZE) {
		const char *what =
			st.st_size == 0 ? "empty" : "truncated or not a p11kms state file";
		if (st.st_size > 0 && st.st_size < 4096 && pread(gf->fd, buf, 1, 0) == 1 &&
		    buf[0] == '{')
			what = "a JSON state file (import it with `p11kms state import`)";
		kms_log_err(
			"double-sign state is %s path=%s size=%lld expected=%u: refusing to sign "
			"(never reset silently; restore it or `p11kms state import`)",
			what, gf->path, (long long)st.st_size, GUARD_FILE_SIZE);
		r = KMS_ERR_FORMAT;
		goto out;
	}
	size_t got = 0;
	while (got < GUARD_FILE_SIZE) {
		ssize_t n = pread(gf->fd, buf + got, GUARD_FILE_SIZE - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kms_log_err("read failed path=%s: %s", gf->path,
				    n < 0 ? strerror(errno) : "short");
			r = KMS_ERR_STATE_IO;
			goto out;
		}
		got += (size_t)n;
	}
	const char *why[2];
	r = parse_image(buf, GUARD_FILE_SIZE, &gf->rec, gf->slot_ok, gf->slot_seq, &gf->cur_slot,
			why);
	for (int i = 0; i < 2; i++)
		if (!gf->slot_ok[i])
			kms_log_warn("state record invalid path=%s slot=%d: %s", gf->path, i,
				     why[i]);
	if (r != KMS_OK) {
		if (gf->slot_ok[0] && gf->slot_ok[1])
			kms_log_err(
				"double-sign state corrupt path=%s: both slots hold sequence %llu",
				gf->path, (unsigned long long)gf->slot_seq[0]);
		else
			kms_log_err(
				"double-sign state corrupt path=%s: no valid record in either slot; "
				"refusing to sign (restore it or `p11kms state import`)",
				gf->path);
		goto out;
	}
	r = KMS_OK;
out:
	free(buf);
	return r;
}

/* A closed guard_file for path (fd -1), or NULL when out of memory. */
static struct guard_file *gf_new(const char *path)
{
	struct guard_file *gf = calloc(1, sizeof(*gf));
	if (gf == NULL)
		return NULL;
	gf->fd = -1;
	gf->path = strdup(path);
	gf->pid_path = str_cat(path, ".pid");
	if (gf->path == NULL || gf->pid_path == NULL) {
		guard_file_close(gf);
		return NULL;
	}
	return gf;
}

int guard_file_open(const char *path, const char *chain_id, struct guard_file **out)
{
	struct guard_file *gf = NULL;
	int r = KMS_ERR_INTERNAL;
	*out = NULL;
	gf = gf_new(path);
	if (gf == NULL)
		return KMS_ERR_ALLOC;
	gf->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (gf->fd < 0) {
		int e = errno;
		if (e == ENOENT) {
			report_missing(path, chain_id);
			r = KMS_ERR_NOT_FOUND;
		} else if (e == ELOOP) {
			kms_log_err(
				"double-sign state path=%s is a symlink: point state_file at the "
				"real file",
				path);
			r = KMS_ERR_PERM;
		} else {
			kms_log_err("cannot open double-sign state path=%s: %s", path, strerror(e));
			r = e == EACCES ? KMS_ERR_PERM : KMS_ERR_STATE_IO;
		}
		goto out;
	}
	/* the descriptor's mode, not the path's: a rename in between must not pass */
	r = dfile_check_private_fd(gf->fd, path);
	if (r != KMS_OK)
		goto out;
	if (flock(gf->fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		if (e == EWOULDBLOCK) {
			long pid = holder_pid(gf->pid_path);
			if (pid > 0)
				kms_log_err(
					"double-sign state is locked by another process path=%s "
					"holder_pid=%ld (is p11kms already running for this chain?)",
					path, pid);
			else
				kms_log_err(
					"double-sign state is locked by another process path=%s",
					path);
			r = KMS_ERR_LOCKED;
		} else {
			kms_log_err("flock failed path=%s: %s", path, strerror(e));
			r = KMS_ERR_STATE_IO;
		}
		goto out;
	}
	gf->locked = 1;
	write_pid(gf->pid_path);
	remove_stale_temps(path);
	r = load_slots(gf);
	if (r != KMS_OK)
		goto out;
	if (chain_id != NULL && strcmp(chain_id, gf->rec.chain_id) != 0) {
		kms_log_err("double-sign state belongs to another chain path=%s file_chain=%s "
			    "configured_chain=%s: refusing to sign",
			    path, gf->rec.chain_id, chain_id);
		r = KMS_ERR_REFUSED;
		goto out;
	}
	*out = gf;
	gf = NULL;
	r = KMS_OK;
out:
	guard_file_close(gf);
	return r;
}

/*
 * Read-only snapshot for `state show` while a signer may be running: no flock,
 * no pid file, no temp cleanup. A record being rewritten concurrently fails its
 * checksum and the other slot stands, so the view is consistent, at worst one
 * state behind. Never used for anything that writes or exports state.
 */
int guard_file_open_ro(const char *path, struct guard_file **out)
{
	struct guard_file *gf = NULL;
	int r = KMS_ERR_INTERNAL;
	*out = NULL;
	gf = gf_new(path);
	if (gf == NULL)
		return KMS_ERR_ALLOC;
	gf->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (gf->fd < 0) {
		int e = errno;
		if (e == ENOENT) {
			report_missing(path, NULL);
			r = KMS_ERR_NOT_FOUND;
		} else {
			kms_log_err("cannot open double-sign state path=%s: %s", path, strerror(e));
			r = (e == EACCES || e == ELOOP) ? KMS_ERR_PERM : KMS_ERR_STATE_IO;
		}
		goto out;
	}
	r = load_slots(gf);
	if (r != KMS_OK)
		goto out;
	*out = gf;
	gf = NULL;
	r = KMS_OK;
out:
	guard_file_close(gf);
	return r;
}

int guard_file_write(struct guard_file *gf, const struct guard_rec *rec)
{
	uint8_t img[GUARD_REC_LEN];
	const struct dfile_ops *ops = dfile_ops();
	int slot = 1 - gf->cur_slot;
	off_t off = (off_t)slot * GUARD_SLOT_SIZE;
	size_t done = 0;
	int r = KMS_ERR_STATE_IO;
	guard_rec_encode(rec, img);
	while (done < GUARD_REC_LEN) {
		ssize_t n =
			ops->pwrite(gf->fd, img + done, GUARD_REC_LEN - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kms_log_err("pwrite of double-sign state failed path=%s slot=%d: %s",
				    gf->path, slot, n < 0 ? strerror(errno) : "wrote nothing");
			goto out;
		}
		done += (size_t)n;
	}
	/* the one sync per state advance: the file is preallocated, so data is enough */
	if (ops->fdatasync(gf->fd) != 0) {
		kms_log_err("fdatasync of double-sign state failed path=%s slot=%d: %s", gf->path,
			    slot, strerror(errno));
		goto out;
	}
	gf->cur_slot = slot;
	gf->slot_ok[slot] = 1;
	gf->slot_seq[slot] = rec->seq;
	gf->rec = *rec;
	r = KMS_OK;
out:
	kms_wipe(img, sizeof(img));
	return r;
}

void guard_file_close(struct guard_file *gf)
{
	if (gf == NULL)
		return;
	if (gf->fd >= 0) {
		if (gf->locked && holder_pid(gf->pid_path) == (long)getpid())
			unlink(gf->pid_path);
		close(gf->fd); /* releases the flock */
	}
	free(gf->path);
	free(gf->pid_path);
	kms_wipe(&gf->rec, sizeof(gf->rec));
	free(gf);
}

int guard_file_create(const char *path, const struct guard_rec *rec)
{
	uint8_t *img = calloc(1, GUARD_FILE_SIZE);
	struct guard_rec *r0 = malloc(sizeof(*r0));
	int r = KMS_ERR_ALLOC;
	if (img == NULL || r0 == NULL)
		goto out;
	/* slot 0 holds sequence 1, slot 1 the same state as sequence 0: both valid */
	*r0 = *rec;
	r0->seq = 1;
	guard_rec_encode(r0, img);
	r0->seq = 0;
	guard_rec_encode(r0, img + GUARD_SLOT_SIZE);
	r = dfile_create_atomic(path, img, GUARD_FILE_SIZE, 0600);
	if (r == KMS_ERR_EXISTS)
		kms_log_err("double-sign state already exists path=%s: not overwriting", path);
out:
	free(img);
	if (r0 != NULL)
		kms_wipe(r0, sizeof(*r0));
	free(r0);
	return r;
}
