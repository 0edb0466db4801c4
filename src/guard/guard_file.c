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
 * Record layout (little-endian) at the start of a slot. Format 2 (written):
 *   0 magic[8]  8 format u32 (2)  12 record length L u32  16 sequence u64
 *  24 written_at i64  32 height i64  40 round i32  44 step u8  45 flags u8
 *  46 chain-id length u16  48 chain-id[64]  112 sign-bytes length n u32
 * 116 signature[64]  180 sign-bytes[n]  180+n SHA-256 of bytes [0, 180+n)
 * so L = 212 + n, and only these L bytes are written: a vote or a proposal
 * (n < 300) stays inside the slot's first 512-byte block, one sector of the
 * disk. Bytes of the slot after L are not part of the record (an older,
 * longer record may have left bytes there); writing them too would only give
 * a power cut more to tear.
 * Format 1 (read, for state files written before format 2): the same fields
 * up to 180, sign-bytes[4096] zero-padded, the SHA-256 of [0, 4276) at 4276,
 * L = 4308 always.
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
	O_SUM = 4276, /* format 1 */
	SUM_LEN = 32,
	REC_MIN = O_SB + SUM_LEN, /* format 2 without sign bytes */
};
_Static_assert(O_SB + GUARD_MAX_SIGN_BYTES == O_SUM, "record layout");
_Static_assert(O_SUM + SUM_LEN == GUARD_REC_LEN, "record length");
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

size_t guard_rec_encode(const struct guard_rec *rec, uint8_t out[static GUARD_REC_LEN])
{
	size_t clen = strnlen(rec->chain_id, GUARD_MAX_CHAIN_ID);
	size_t sblen = rec->sign_bytes_len <= GUARD_MAX_SIGN_BYTES ? rec->sign_bytes_len : 0;
	size_t len = REC_MIN + sblen;
	memset(out, 0, len);
	memcpy(out + O_MAGIC, GUARD_FILE_MAGIC, 8);
	put_le(out + O_VERSION, GUARD_FILE_VERSION, 4);
	put_le(out + O_RECLEN, len, 4);
	put_le(out + O_SEQ, rec->seq, 8);
	put_le(out + O_WHEN, (uint64_t)rec->written_at, 8);
	put_le(out + O_HEIGHT, (uint64_t)rec->hrs.height, 8);
	put_le(out + O_ROUND, (uint32_t)rec->hrs.round, 4);
	out[O_STEP] = (uint8_t)rec->hrs.step;
	out[O_FLAGS] = rec->has_sig ? FLAG_HAS_SIG : 0;
	put_le(out + O_CHAINLEN, clen, 2);
	memcpy(out + O_CHAIN, rec->chain_id, clen);
	put_le(out + O_SBLEN, sblen, 4);
	if (rec->has_sig)
		memcpy(out + O_SIG, rec->signature, GUARD_SIG_LEN);
	memcpy(out + O_SB, rec->sign_bytes, sblen);
	checksum(out, len - SUM_LEN, out + len - SUM_LEN);
	return len;
}

static int zero_from(const uint8_t *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Where the record's checksum ends (its length L), from its format and length fields;
 * 0 for an unknown format or a length that format cannot have. */
size_t guard_rec_extent(const uint8_t *p)
{
	uint64_t version = get_le(p + O_VERSION, 4), len = get_le(p + O_RECLEN, 4);
	if (version == 1 && len == GUARD_REC_LEN)
		return GUARD_REC_LEN;
	if (version == 2 && len >= REC_MIN && len <= GUARD_REC_LEN &&
	    get_le(p + O_SBLEN, 4) == len - REC_MIN)
		return (size_t)len;
	return 0;
}

int guard_rec_decode(const uint8_t *p, size_t n, struct guard_rec *rec, const char **why)
{
	uint8_t sum[32];
	size_t len;
	*why = NULL;
	if (n < GUARD_REC_LEN) {
		*why = "short slot";
		return KMS_ERR_FORMAT;
	}
	if (memcmp(p + O_MAGIC, GUARD_FILE_MAGIC, 8) != 0) {
		*why = zero_from(p, 0, GUARD_REC_LEN) ? "empty slot" : "bad magic";
		return KMS_ERR_FORMAT;
	}
	len = guard_rec_extent(p);
	if (len == 0) {
		/* Only a checksum in format 1's place tells an intact record of a format
		 * this build does not know from a torn or corrupted header. */
		checksum(p, O_SUM, sum);
		*why = memcmp(sum, p + O_SUM, 32) == 0 ? "unsupported record version"
						       : "checksum mismatch (torn or corrupted write)";
		return KMS_ERR_FORMAT;
	}
	checksum(p, len - SUM_LEN, sum);
	if (memcmp(sum, p + len - SUM_LEN, 32) != 0) {
		*why = "checksum mismatch (torn or corrupted write)";
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

int guard_rec_peek(const uint8_t *p, size_t n, uint64_t *seq, struct guard_hrs *hrs)
{
	*seq = 0;
	memset(hrs, 0, sizeof(*hrs));
	if (n < O_SB || memcmp(p + O_MAGIC, GUARD_FILE_MAGIC, 8) != 0)
		return 0;
	*seq = get_le(p + O_SEQ, 8);
	hrs->height = (int64_t)get_le(p + O_HEIGHT, 8);
	hrs->round = (int32_t)(uint32_t)get_le(p + O_ROUND, 4);
	hrs->step = (enum guard_step)p[O_STEP];
	return 1;
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
 * Every slot of a whole file image, and the newest valid record into best
 * (*cur: its slot). KMS_ERR_FORMAT when no slot is valid, or both are valid
 * with one sequence (our writer never does that). Whether one invalid slot
 * is acceptable is the caller's decision (enum guard_load).
 */
static int parse_image(const uint8_t *p, size_t n, struct guard_rec *best,
		       struct guard_slot_info slot[2], int *cur)
{
	struct guard_rec *tmp = malloc(sizeof(*tmp));
	int b = -1;
	memset(slot, 0, 2 * sizeof(*slot));
	slot[0].why = slot[1].why = "out of memory";
	if (tmp == NULL)
		return KMS_ERR_ALLOC;
	for (int i = 0; i < 2; i++) {
		struct guard_slot_info *si = &slot[i];
		const uint8_t *img = p + (size_t)i * GUARD_SLOT_SIZE;
		si->why = "file size";
		if (n != GUARD_FILE_SIZE)
			continue;
		si->ok = guard_rec_decode(img, GUARD_SLOT_SIZE, tmp, &si->why) == KMS_OK;
		si->readable = guard_rec_peek(img, GUARD_SLOT_SIZE, &si->seq, &si->hrs);
		if (!si->ok)
			continue;
		si->why = NULL;
		if (b < 0 || tmp->seq > best->seq) {
			b = i;
			*best = *tmp;
		}
	}
	kms_wipe(tmp, sizeof(*tmp));
	free(tmp);
	if (b < 0 || (slot[0].ok && slot[1].ok && slot[0].seq == slot[1].seq))
		return KMS_ERR_FORMAT;
	*cur = b;
	return KMS_OK;
}

int guard_state_parse_file(const uint8_t *p, size_t n, struct guard_state *st, uint64_t *seq)
{
	struct guard_rec *rec = malloc(sizeof(*rec));
	struct guard_slot_info slot[2];
	int cur;
	memset(st, 0, sizeof(*st));
	*seq = 0;
	if (rec == NULL)
		return KMS_ERR_ALLOC;
	int r = parse_image(p, n, rec, slot, &cur);
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

void guard_slot_describe(const struct guard_slot_info *si, char *buf, size_t cap)
{
	if (si->ok)
		snprintf(buf, cap, "holds sequence %llu, h/r/s %lld/%d/%d",
			 (unsigned long long)si->seq, (long long)si->hrs.height, si->hrs.round,
			 (int)si->hrs.step);
	else if (si->readable)
		snprintf(buf, cap,
			 "is INVALID (%s); its header claims sequence %llu, h/r/s %lld/%d/%d "
			 "(unverified)",
			 si->why, (unsigned long long)si->seq, (long long)si->hrs.height,
			 si->hrs.round, (int)si->hrs.step);
	else
		snprintf(buf, cap, "is INVALID (%s); nothing in it can be read", si->why);
}

/* The refusal of a state with an invalid record (or twin sequences): both named. */
static void report_doubt(const struct guard_file *gf, const char *chain_id)
{
	char d0[200], d1[200];
	guard_slot_describe(&gf->slot[0], d0, sizeof(d0));
	guard_slot_describe(&gf->slot[1], d1, sizeof(d1));
	kms_log_err("double-sign state in doubt path=%s: slot 0 %s; slot 1 %s. Refusing to sign: "
		    "%s. See both records and what accepting one would lose with "
		    "`p11kms state repair -c <config> --chain %s`",
		    gf->path, d0, d1,
		    gf->slot[0].ok && gf->slot[1].ok ?
			    "two records with one sequence cannot come from p11kms" :
		    !gf->slot[0].ok && !gf->slot[1].ok ?
			    "no record in it is valid" :
			    "the invalid record may be the newest one, and its signature may "
			    "have been released (a torn write and bit rot look alike)",
		    chain_id != NULL	? chain_id :
		    gf->rec.chain_id[0] ? gf->rec.chain_id :
					  "<id>");
}

/* Reads the whole image into buf: KMS_ERR_FORMAT (logged) if the file has the wrong size. */
static int read_image(struct guard_file *gf, uint8_t *buf)
{
	struct stat st;
	if (fstat(gf->fd, &st) != 0) {
		kms_log_err("fstat failed path=%s: %s", gf->path, strerror(errno));
		return KMS_ERR_STATE_IO;
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
		return KMS_ERR_FORMAT;
	}
	size_t got = 0;
	while (got < GUARD_FILE_SIZE) {
		ssize_t n = pread(gf->fd, buf + got, GUARD_FILE_SIZE - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kms_log_err("read failed path=%s: %s", gf->path,
				    n < 0 ? strerror(errno) : "short");
			return KMS_ERR_STATE_IO;
		}
		got += (size_t)n;
	}
	return KMS_OK;
}

static int load_slots(struct guard_file *gf, const char *chain_id, enum guard_load how)
{
	uint8_t *buf = malloc(GUARD_FILE_SIZE);
	int r = KMS_ERR_ALLOC;
	if (buf == NULL)
		goto out;
	if ((r = read_image(gf, buf)) != KMS_OK)
		goto out;
	r = parse_image(buf, GUARD_FILE_SIZE, &gf->rec, gf->slot, &gf->cur_slot);
	if (how == GUARD_LOAD_REPAIR && r != KMS_ERR_ALLOC) {
		/* the first write of a repair goes to the slot not holding a valid record */
		if (r != KMS_OK)
			gf->cur_slot = 1;
		if (r != KMS_OK && !gf->slot[0].ok && !gf->slot[1].ok)
			memset(&gf->rec, 0, sizeof(gf->rec));
		r = KMS_OK;
	} else if (r == KMS_OK && how == GUARD_LOAD_ANY) {
		for (int i = 0; i < 2; i++)
			if (!gf->slot[i].ok)
				kms_log_warn("state record invalid path=%s slot=%d: %s", gf->path,
					     i, gf->slot[i].why);
	} else if (r == KMS_OK && (!gf->slot[0].ok || !gf->slot[1].ok)) {
		report_doubt(gf, chain_id);
		r = KMS_ERR_FORMAT;
	} else if (r != KMS_OK && r != KMS_ERR_ALLOC) {
		report_doubt(gf, chain_id);
	}
	/* the current record's bytes as they are, for the write-back before the first write */
	if (r == KMS_OK && gf->slot[gf->cur_slot].ok) {
		const uint8_t *cur = buf + (size_t)gf->cur_slot * GUARD_SLOT_SIZE;
		gf->cur_len = guard_rec_extent(cur); /* a valid record: format 1 or 2 */
		memcpy(gf->cur_img, cur, gf->cur_len);
	}
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

int guard_file_open(const char *path, const char *chain_id, enum guard_load how,
		    struct guard_file **out)
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
	r = load_slots(gf, chain_id, how);
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
	return guard_file_open_ro_as(path, NULL, GUARD_LOAD_ANY, out);
}

int guard_file_open_ro_as(const char *path, const char *chain_id, enum guard_load how,
			  struct guard_file **out)
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
	r = load_slots(gf, chain_id, how);
	if (r != KMS_OK)
		goto out;
	*out = gf;
	gf = NULL;
	r = KMS_OK;
out:
	guard_file_close(gf);
	return r;
}

/* pwrite of one record image into slot + one fdatasync (the file is preallocated: data is enough). */
static int put_image(struct guard_file *gf, int slot, const uint8_t *img, size_t len)
{
	const struct dfile_ops *ops = dfile_ops();
	off_t off = (off_t)slot * GUARD_SLOT_SIZE;
	size_t done = 0;
	while (done < len) {
		ssize_t n = ops->pwrite(gf->fd, img + done, len - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kms_log_err("pwrite of double-sign state failed path=%s slot=%d: %s",
				    gf->path, slot, n < 0 ? strerror(errno) : "wrote nothing");
			return KMS_ERR_STATE_IO;
		}
		done += (size_t)n;
	}
	if (ops->fdatasync(gf->fd) != 0) {
		kms_log_err("fdatasync of double-sign state failed path=%s slot=%d: %s", gf->path,
			    slot, strerror(errno));
		return KMS_ERR_STATE_IO;
	}
	return KMS_OK;
}

/*
 * Before the first write of an open, whoever writes (start's re-persist, a
 * signature, import, repair): the name and the current record made durable.
 * The current record may only be in the page cache (its writer was killed
 * before its fdatasync, or that fdatasync failed and the kernel marked the
 * pages clean, so no later sync writes them). Its own bytes are written back
 * into its own slot and synced: that cannot change a record already on disk
 * (same bytes), and the other slot, which holds the last record that was
 * durable before it, is not touched until this is done. Writing the other
 * slot first would overwrite that record while the current one may not be on
 * disk: the power-loss run found states behind a released signature that way.
 */
static int settle_current(struct guard_file *gf)
{
	if (gf->settled)
		return KMS_OK;
	int r = dfile_fsync_dir(gf->path);
	if (r != KMS_OK)
		return KMS_ERR_STATE_IO;
	if (gf->slot[gf->cur_slot].ok &&
	    (r = put_image(gf, gf->cur_slot, gf->cur_img, gf->cur_len)) != KMS_OK)
		return r;
	gf->settled = 1;
	return KMS_OK;
}

int guard_file_write(struct guard_file *gf, const struct guard_rec *rec)
{
	uint8_t img[GUARD_REC_LEN];
	size_t len;
	int slot = 1 - gf->cur_slot;
	int r = settle_current(gf);
	if (r != KMS_OK)
		return r;
	len = guard_rec_encode(rec, img);
	r = put_image(gf, slot, img, len);
	if (r == KMS_OK) {
		gf->cur_slot = slot;
		gf->slot[slot] = (struct guard_slot_info){
			.ok = 1, .readable = 1, .seq = rec->seq, .hrs = rec->hrs
		};
		gf->rec = *rec;
		memcpy(gf->cur_img, img, len);
		gf->cur_len = len;
	}
	kms_wipe(img, len);
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
	(void)guard_rec_encode(r0, img);
	r0->seq = 0;
	(void)guard_rec_encode(r0, img + GUARD_SLOT_SIZE);
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
