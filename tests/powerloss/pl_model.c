/* SPDX-License-Identifier: Apache-2.0 */
/* The power-cut model of one file (pl_model.h). Test code: aborts when out of memory. */
#include "pl_model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One version of a sector: what the writer asked for, and what the cache really holds. */
struct pl_ver {
	uint8_t want[PL_SECTOR];
	uint8_t have[PL_SECTOR];
	uint32_t wid; /* the write that made it */
	int limbo;    /* its sync failed: no later sync writes it unless re-dirtied */
};

struct pl_sec {
	struct pl_ver *v;
	size_t n, cap;
};

/* A file: durable bytes and the sector versions since. */
struct pl_ino {
	int exists;
	uint8_t *dur;
	size_t dur_len;
	size_t len; /* as the writes left it */
	struct pl_sec *sec;
	size_t nsec;
};

struct pl_disk {
	char *path;
	struct pl_ino cur; /* what the name refers to now */
	int ns_pending;	   /* the name changed since its directory was last synced */
	struct pl_ino old; /* what it durably refers to meanwhile */
	uint32_t next_wid;
};

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);
	if (p == NULL)
		abort();
	return p;
}

static void ino_clear(struct pl_ino *f)
{
	for (size_t i = 0; i < f->nsec; i++)
		free(f->sec[i].v);
	free(f->sec);
	free(f->dur);
	memset(f, 0, sizeof(*f));
}

/* The file at path as it is now, all durable. */
static int ino_load(struct pl_ino *f, const char *path)
{
	struct stat st;
	ino_clear(f);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	f->exists = 1;
	f->dur_len = f->len = (size_t)st.st_size;
	f->dur = xcalloc(f->dur_len, 1);
	ssize_t n = pread(fd, f->dur, f->dur_len, 0);
	close(fd);
	return n == (ssize_t)f->dur_len ? 0 : -1;
}

static struct pl_sec *sec_at(struct pl_ino *f, size_t s)
{
	if (s >= f->nsec) {
		size_t n = s + 8;
		f->sec = realloc(f->sec, n * sizeof(*f->sec));
		if (f->sec == NULL)
			abort();
		memset(f->sec + f->nsec, 0, (n - f->nsec) * sizeof(*f->sec));
		f->nsec = n;
	}
	return &f->sec[s];
}

/* Sector s of the durable image (zeros past its end). */
static void dur_sector(const struct pl_ino *f, size_t s, uint8_t out[PL_SECTOR])
{
	size_t off = s * PL_SECTOR;
	memset(out, 0, PL_SECTOR);
	if (off < f->dur_len)
		memcpy(out, f->dur + off,
		       f->dur_len - off < PL_SECTOR ? f->dur_len - off : PL_SECTOR);
}

static void ino_write(struct pl_ino *f, uint32_t wid, uint64_t off, const uint8_t *data, size_t len)
{
	if (len == 0)
		return;
	for (size_t s = (size_t)(off / PL_SECTOR); s <= (size_t)((off + len - 1) / PL_SECTOR);
	     s++) {
		struct pl_sec *sc = sec_at(f, s);
		if (sc->n == sc->cap) {
			sc->cap = sc->cap ? 2 * sc->cap : 4;
			sc->v = realloc(sc->v, sc->cap * sizeof(*sc->v));
			if (sc->v == NULL)
				abort();
		}
		struct pl_ver *v = &sc->v[sc->n];
		if (sc->n > 0)
			memcpy(v->want, sc->v[sc->n - 1].want, PL_SECTOR);
		else
			dur_sector(f, s, v->want);
		uint64_t lo = s * (uint64_t)PL_SECTOR, hi = lo + PL_SECTOR;
		uint64_t a = off > lo ? off : lo, b = off + len < hi ? off + len : hi;
		memcpy(v->want + (a - lo), data + (a - off), (size_t)(b - a));
		memcpy(v->have, v->want, PL_SECTOR);
		v->wid = wid;
		v->limbo = 0;
		sc->n++;
	}
	if (off + len > f->len)
		f->len = (size_t)(off + len);
}

/* Makes sector s durable with its newest content. */
static void make_durable(struct pl_ino *f, size_t s)
{
	struct pl_sec *sc = &f->sec[s];
	size_t off = s * PL_SECTOR, end = off + PL_SECTOR;
	if (sc->n == 0)
		return;
	if (end > f->dur_len) {
		f->dur = realloc(f->dur, end);
		if (f->dur == NULL)
			abort();
		memset(f->dur + f->dur_len, 0, end - f->dur_len);
	}
	memcpy(f->dur + off, sc->v[sc->n - 1].have, PL_SECTOR);
	if (end > f->dur_len)
		f->dur_len = end;
	sc->n = 0;
}

struct pl_disk *pl_new(const char *path)
{
	struct pl_disk *d = xcalloc(1, sizeof(*d));
	d->path = strdup(path);
	if (d->path == NULL || ino_load(&d->cur, path) != 0) {
		pl_free(d);
		return NULL;
	}
	return d;
}

void pl_free(struct pl_disk *d)
{
	if (d == NULL)
		return;
	ino_clear(&d->cur);
	ino_clear(&d->old);
	free(d->path);
	free(d);
}

const char *pl_path(const struct pl_disk *d)
{
	return d->path;
}

int pl_reset(struct pl_disk *d)
{
	ino_clear(&d->old);
	d->ns_pending = 0;
	return ino_load(&d->cur, d->path);
}

void pl_write(struct pl_disk *d, uint64_t off, const void *data, size_t len)
{
	ino_write(&d->cur, ++d->next_wid, off, data, len);
}

void pl_sync(struct pl_disk *d, int ok)
{
	struct pl_ino *f = &d->cur;
	const size_t per_page = PL_PAGE / PL_SECTOR;
	for (size_t p = 0; p * per_page < f->nsec; p++) {
		size_t lo = p * per_page, hi = lo + per_page < f->nsec ? lo + per_page : f->nsec;
		int dirty = 0;
		for (size_t s = lo; s < hi; s++)
			for (size_t i = 0; i < f->sec[s].n; i++)
				dirty |= !f->sec[s].v[i].limbo;
		if (!dirty)
			continue;
		for (size_t s = lo; s < hi; s++) {
			if (ok) {
				/* the whole page goes out, a clean-but-unwritten sector too */
				make_durable(f, s);
				continue;
			}
			for (size_t i = 0; i < f->sec[s].n; i++)
				f->sec[s].v[i].limbo = 1;
		}
	}
	if (ok && f->len > f->dur_len) {
		f->dur = realloc(f->dur, f->len);
		if (f->dur == NULL)
			abort();
		memset(f->dur + f->dur_len, 0, f->len - f->dur_len);
		f->dur_len = f->len;
	}
}

void pl_link(struct pl_disk *d, const void *data, size_t len, int synced)
{
	if (!d->ns_pending) {
		d->old = d->cur;
		d->ns_pending = 1;
	} else {
		ino_clear(&d->cur);
	}
	memset(&d->cur, 0, sizeof(d->cur));
	d->cur.exists = 1;
	if (synced) {
		d->cur.dur = xcalloc(len, 1);
		memcpy(d->cur.dur, data, len);
		d->cur.dur_len = d->cur.len = len;
	} else {
		ino_write(&d->cur, ++d->next_wid, 0, data, len);
	}
}

void pl_dirsync(struct pl_disk *d)
{
	if (d->ns_pending)
		ino_clear(&d->old);
	d->ns_pending = 0;
}

size_t pl_pending(const struct pl_disk *d)
{
	size_t n = d->ns_pending ? 1 : 0;
	for (size_t s = 0; s < d->cur.nsec; s++)
		n += d->cur.sec[s].n != 0;
	return n;
}

/* The writer is gone: the newest version of each sector is what the file holds. */
static int settle(struct pl_ino *f, const char *path)
{
	uint8_t buf[PL_SECTOR];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (size_t s = 0; s < f->nsec; s++) {
		struct pl_sec *sc = &f->sec[s];
		if (sc->n == 0)
			continue;
		memset(buf, 0, sizeof(buf));
		if (pread(fd, buf, PL_SECTOR, (off_t)(s * PL_SECTOR)) < 0) {
			close(fd);
			return -1;
		}
		memcpy(sc->v[sc->n - 1].have, buf, PL_SECTOR);
	}
	close(fd);
	return 0;
}

struct tally {
	unsigned kept, lost, other;
};

/* Version i of sector s as written (0: the durable content). */
static const uint8_t *want_at(const struct pl_ino *f, size_t s, size_t i, uint8_t durs[PL_SECTOR])
{
	if (i == 0) {
		dur_sector(f, s, durs);
		return durs;
	}
	return f->sec[s].v[i - 1].want;
}

/*
 * The write that last changed sector s (a later write of the same bytes, such
 * as a record written back over itself, changes nothing): its version index
 * (1-based), or 0 if no pending version differs from the one before it.
 */
static size_t last_change(const struct pl_ino *f, size_t s)
{
	uint8_t d[PL_SECTOR];
	for (size_t i = f->sec[s].n; i > 0; i--)
		if (memcmp(want_at(f, s, i, d), want_at(f, s, i - 1, d), PL_SECTOR) != 0)
			return i;
	return 0;
}

/* PL_KEEP_TEAR: keep sector s only if it is the first one its last changer changed. */
static int tear_keeps(const struct pl_ino *f, size_t s)
{
	size_t i = last_change(f, s);
	if (i == 0)
		return 0;
	uint32_t w = f->sec[s].v[i - 1].wid;
	for (size_t k = 0; k < s; k++) {
		size_t j = f->sec[k].n ? last_change(f, k) : 0;
		if (j != 0 && f->sec[k].v[j - 1].wid == w)
			return 0;
	}
	return 1;
}

static size_t pick_version(const struct pl_ino *f, size_t s, uint64_t *rng, enum pl_keep how)
{
	size_t n = f->sec[s].n;
	switch (how) {
	case PL_KEEP_LOST:
		return 0;
	case PL_KEEP_KEPT:
		return n;
	case PL_KEEP_TEAR:
		return tear_keeps(f, s) ? n : 0;
	case PL_KEEP_RANDOM:
		break;
	}
	return (size_t)(pl_rand(rng) % (n + 1));
}

/* Picks each sector's surviving version into img; tallies the newest writes. */
static size_t choose(struct pl_ino *f, uint64_t *rng, enum pl_keep how, uint8_t *img, size_t cap,
		     struct tally *t, size_t nt)
{
	uint8_t prev[PL_SECTOR], durs[PL_SECTOR];
	size_t out_len = f->dur_len;
	memcpy(img, f->dur, f->dur_len);
	for (size_t s = 0; s < f->nsec && (s + 1) * PL_SECTOR <= cap; s++) {
		struct pl_sec *sc = &f->sec[s];
		if (sc->n == 0)
			continue;
		dur_sector(f, s, durs);
		size_t pick = pick_version(f, s, rng, how);
		const uint8_t *got = pick == 0 ? durs : sc->v[pick - 1].have;
		memcpy(img + s * PL_SECTOR, got, PL_SECTOR);
		if (pick != 0) {
			size_t end = (s + 1) * PL_SECTOR < f->len ? (s + 1) * PL_SECTOR : f->len;
			if (end > out_len)
				out_len = end;
		}
		size_t i = last_change(f, s);
		if (i == 0 || sc->v[i - 1].wid >= nt)
			continue; /* no pending write changed this sector */
		const struct pl_ver *w = &sc->v[i - 1];
		memcpy(prev, want_at(f, s, i - 1, durs), PL_SECTOR);
		struct tally *t_w = &t[w->wid];
		if (memcmp(got, w->want, PL_SECTOR) == 0)
			t_w->kept++;
		else if (memcmp(got, prev, PL_SECTOR) == 0)
			t_w->lost++;
		else
			t_w->other++;
	}
	return out_len;
}

static enum pl_outcome classify(const struct tally *t, size_t nt, struct pl_cut_report *rep)
{
	for (size_t i = 0; i < nt; i++) {
		if (t[i].kept + t[i].lost + t[i].other == 0)
			continue;
		if (t[i].other != 0 || (t[i].kept != 0 && t[i].lost != 0))
			rep->writes_torn++;
		else if (t[i].kept != 0)
			rep->writes_kept++;
		else
			rep->writes_lost++;
	}
	if (rep->writes_torn)
		return PL_OUT_TORN;
	if (rep->writes_kept && rep->writes_lost)
		return PL_OUT_MIXED;
	return rep->writes_kept ? PL_OUT_KEPT : rep->writes_lost ? PL_OUT_LOST : PL_OUT_NONE;
}

static int put_file(const char *path, const uint8_t *img, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int ok = pwrite(fd, img, len, 0) == (ssize_t)len && ftruncate(fd, (off_t)len) == 0;
	return close(fd) == 0 && ok ? 0 : -1;
}

int pl_settle(struct pl_disk *d)
{
	return d->cur.exists ? settle(&d->cur, d->path) : 0;
}

int pl_inspect(struct pl_disk *d, struct pl_cut_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	rep->exists = d->cur.exists;
	if (!d->cur.exists)
		return 0;
	if (settle(&d->cur, d->path) != 0)
		return -1;
	size_t cap = (d->cur.nsec + 1) * PL_SECTOR + d->cur.dur_len + d->cur.len;
	uint8_t *img = xcalloc(cap, 1);
	struct tally *t = xcalloc(d->next_wid + 1, sizeof(*t));
	(void)choose(&d->cur, NULL, PL_KEEP_KEPT, img, cap, t, d->next_wid + 1);
	rep->outcome = classify(t, d->next_wid + 1, rep);
	free(t);
	free(img);
	return 0;
}

int pl_cut(struct pl_disk *d, uint64_t *rng, enum pl_keep how, struct pl_cut_report *rep)
{
	memset(rep, 0, sizeof(*rep));
	if (d->ns_pending) {
		int lost = how == PL_KEEP_LOST || (how == PL_KEEP_RANDOM && (pl_rand(rng) & 1));
		if (lost) {
			ino_clear(&d->cur);
			d->cur = d->old;
			memset(&d->old, 0, sizeof(d->old));
			rep->name_lost = 1;
		} else {
			ino_clear(&d->old);
			if (settle(&d->cur, d->path) != 0)
				return -1;
		}
		d->ns_pending = 0;
	} else if (d->cur.exists && settle(&d->cur, d->path) != 0) {
		return -1;
	}
	rep->exists = d->cur.exists;
	if (rep->name_lost)
		rep->outcome = PL_OUT_LOST; /* the link onto the name was the write lost */
	if (!d->cur.exists) {
		ino_clear(&d->cur);
		return unlink(d->path) == 0 || errno == ENOENT ? 0 : -1;
	}
	size_t cap = (d->cur.nsec + 1) * PL_SECTOR + d->cur.dur_len + d->cur.len;
	uint8_t *img = xcalloc(cap, 1);
	struct tally *t = xcalloc(d->next_wid + 1, sizeof(*t));
	size_t len = choose(&d->cur, rng, how, img, cap, t, d->next_wid + 1);
	enum pl_outcome o = classify(t, d->next_wid + 1, rep);
	if (!rep->name_lost || o != PL_OUT_NONE)
		rep->outcome = o;
	int r = put_file(d->path, img, len);
	free(t);
	free(img);
	return r == 0 ? pl_reset(d) : -1;
}

const char *pl_outcome_name(enum pl_outcome o)
{
	static const char *const names[] = { "none", "lost", "kept", "mixed", "torn" };
	return (unsigned)o < PL_OUT_COUNT ? names[o] : "?";
}

const char *pl_keep_name(enum pl_keep k)
{
	static const char *const names[] = { "all-lost", "all-kept", "per-sector", "tear" };
	return (unsigned)k <= PL_KEEP_TEAR ? names[k] : "?";
}
