/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka tests: vectors, hex, temporary directories, log capture. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/enc.h"
#include "p11kms/kms_log.h"

#ifndef P11KMS_VECTORS_DIR
#define P11KMS_VECTORS_DIR "tests/vectors"
#endif

static const char *vectors_dir(void)
{
	const char *d = getenv("P11KMS_VECTORS_DIR");

	return d != NULL && *d != '\0' ? d : P11KMS_VECTORS_DIR;
}

const char *tu_vector_path(const char *name)
{
	static char path[4096];
	int n = snprintf(path, sizeof(path), "%s/%s", vectors_dir(), name);

	if (n < 0 || (size_t)n >= sizeof(path))
		fail_msg("vector path too long: %s", name);
	return path;
}

json_t *tu_load_vector(const char *name)
{
	const char *path = tu_vector_path(name);
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);

	if (j == NULL)
		fail_msg("cannot load vector %s: %s (line %d)", path, err.text, err.line);
	return j;
}

size_t tu_hex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int r = enc_hex_decode(hex, strlen(hex), out, cap, &n);

	if (r != 0)
		fail_msg("bad hex (%d): %.80s", r, hex);
	return n;
}

uint8_t *tu_hex_alloc(const char *hex, size_t *len)
{
	size_t cap = strlen(hex) / 2 + 1;
	uint8_t *p = malloc(cap);

	if (p == NULL)
		fail_msg("out of memory");
	*len = tu_hex(hex, p, cap);
	return p;
}

char *tu_to_hex(const uint8_t *p, size_t len)
{
	char *s = malloc(2 * len + 1);

	if (s == NULL)
		fail_msg("out of memory");
	if (enc_hex_encode(p, len, s, 2 * len + 1) != 0)
		fail_msg("hex encode failed");
	return s;
}

const char *tu_json_str(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		fail_msg("JSON member \"%s\" missing or not a string", key);
	return json_string_value(v);
}

long long tu_json_int(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		return (long long)json_integer_value(v);
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		long long x;

		errno = 0;
		x = strtoll(s, &end, 10);
		if (errno == 0 && end != s && *end == '\0')
			return x;
	}
	fail_msg("JSON member \"%s\" missing or not an integer", key);
	return 0;
}

char *tu_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[4096];
	int n;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	n = snprintf(tmpl, sizeof(tmpl), "%s/p11kms-test-XXXXXX", base);
	if (n < 0 || (size_t)n >= sizeof(tmpl))
		fail_msg("TMPDIR too long");
	if (mkdtemp(tmpl) == NULL)
		fail_msg("mkdtemp %s: %s", tmpl, strerror(errno));
	if (chmod(tmpl, 0700) != 0)
		fail_msg("chmod %s: %s", tmpl, strerror(errno));
	return strdup(tmpl);
}

void tu_rmrf(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *e;

	if (path == NULL || lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	d = opendir(path);
	if (d != NULL) {
		while ((e = readdir(d)) != NULL) {
			char *sub;

			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			sub = tu_path(path, e->d_name);
			tu_rmrf(sub);
			free(sub);
		}
		closedir(d);
	}
	rmdir(path);
}

void tu_write_file(const char *path, const void *data, size_t len, unsigned mode)
{
	const char *p = data;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail_msg("write %s: %s", path, strerror(errno));
		p += w;
		len -= (size_t)w;
	}
	/* Explicit chmod: the umask must not change what the test asked for. */
	if (fchmod(fd, (mode_t)mode) != 0)
		fail_msg("chmod %s: %s", path, strerror(errno));
	if (close(fd) != 0)
		fail_msg("close %s: %s", path, strerror(errno));
}

char *tu_path(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (p == NULL)
		fail_msg("out of memory");
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

/* Captured lines: a simple growing array, reset by tu_log_capture_start(). */
static char **cap_lines;
static size_t cap_n, cap_alloc;

static void cap_clear(void)
{
	for (size_t i = 0; i < cap_n; i++)
		free(cap_lines[i]);
	free(cap_lines);
	cap_lines = NULL;
	cap_n = cap_alloc = 0;
}

static void cap_sink(enum kms_log_level level, const char *line, void *ctx)
{
	(void)level;
	(void)ctx;
	if (cap_n == cap_alloc) {
		size_t na = cap_alloc ? cap_alloc * 2 : 32;
		char **nl = realloc(cap_lines, na * sizeof(*nl));

		if (nl == NULL)
			return;
		cap_lines = nl;
		cap_alloc = na;
	}
	cap_lines[cap_n] = strdup(line);
	if (cap_lines[cap_n] != NULL)
		cap_n++;
}

void tu_log_capture_start(void)
{
	cap_clear();
	kms_log_set_sink(cap_sink, NULL);
	if (getenv("P11KMS_TEST_VERBOSE") == NULL)
		kms_log_set_quiet(1);
}

int tu_log_contains(const char *needle)
{
	for (size_t i = 0; i < cap_n; i++) {
		if (strstr(cap_lines[i], needle) != NULL)
			return 1;
	}
	return 0;
}

void tu_log_capture_stop(void)
{
	kms_log_set_sink(NULL, NULL);
	kms_log_set_quiet(0);
	cap_clear();
}

size_t tu_log_count(void)
{
	return cap_n;
}

const char *tu_log_line(size_t i)
{
	if (i >= cap_n)
		fail_msg("log line %zu requested, %zu captured", i, cap_n);
	return cap_lines[i];
}

/* ---- a minimal protobuf walker for tu_pb_family_view ---- */

struct pb_out {
	uint8_t *p;
	size_t len, cap;
};

static void pb_put(struct pb_out *o, const uint8_t *p, size_t n)
{
	if (o->len + n > o->cap) {
		size_t cap = (o->cap + n) * 2 + 16;
		uint8_t *q = realloc(o->p, cap);
		assert_non_null(q);
		o->p = q;
		o->cap = cap;
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
}

static uint64_t pb_varint(const uint8_t *p, size_t n, size_t *pos)
{
	uint64_t v = 0;

	for (unsigned sh = 0; sh < 64; sh += 7) {
		if (*pos >= n)
			fail_msg("protobuf: truncated varint");
		uint8_t b = p[(*pos)++];
		v |= (uint64_t)(b & 0x7f) << sh;
		if (!(b & 0x80))
			return v;
	}
	fail_msg("protobuf: varint too long");
	return 0;
}

static void pb_put_varint(struct pb_out *o, uint64_t v)
{
	uint8_t b[10];
	size_t k = 0;

	do {
		b[k] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			b[k] |= 0x80;
		k++;
	} while (v);
	pb_put(o, b, k);
}

/*
 * Copies the message at p[0..n) into o, dropping fields listed in drop (a
 * list of paths, each a 0-terminated list of field numbers, ending with an
 * empty path) at depth "depth" whose prefix matches "at".
 */
static void pb_filter(const uint8_t *p, size_t n, const unsigned (*drop)[5], const unsigned *at,
		      size_t depth, struct pb_out *o)
{
	size_t pos = 0;

	while (pos < n) {
		size_t start = pos;
		uint64_t key = pb_varint(p, n, &pos);
		unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
		size_t body = pos, blen = 0;
		int dropped = 0, descend = 0;
		unsigned path[5] = { 0 };

		if (wt == 0)
			(void)pb_varint(p, n, &pos);
		else if (wt == 1 || wt == 5)
			pos += wt == 1 ? 8 : 4;
		else if (wt == 2) {
			blen = (size_t)pb_varint(p, n, &pos);
			body = pos;
			pos += blen;
		} else
			fail_msg("protobuf: wire type %u", wt);
		if (pos > n)
			fail_msg("protobuf: field %u runs past the end", field);
		memcpy(path, at, depth * sizeof(unsigned));
		path[depth] = field;
		for (size_t i = 0; drop[i][0] != 0; i++) {
			if (memcmp(drop[i], path, (depth + 1) * sizeof(unsigned)) != 0)
				continue;
			if (drop[i][depth + 1] == 0)
				dropped = 1;
			else if (wt == 2)
				descend = 1;
		}
		if (dropped)
			continue;
		if (!descend) {
			pb_put(o, p + start, pos - start);
			continue;
		}
		struct pb_out sub = { 0 };
		pb_filter(p + body, blen, drop, path, depth + 1, &sub);
		pb_put_varint(o, key);
		pb_put_varint(o, sub.len);
		if (sub.len)
			pb_put(o, sub.p, sub.len);
		free(sub.p);
	}
}

uint8_t *tu_pb_family_view(char family, const uint8_t *p, size_t n, size_t *outlen)
{
	/* Message oneof tags: 2 pub_key_response, 4 signed_vote_response (.vote = 1) */
	static const unsigned drop_a[][5] = { { 2, 3 }, { 2, 4 }, { 4, 1, 9 }, { 4, 1, 10 }, { 0 } };
	static const unsigned drop_b[][5] = { { 2, 3 }, { 2, 4 }, { 0 } };
	static const unsigned drop_c[][5] = { { 2, 1 }, { 0 } };
	const unsigned(*drop)[5] = family == 'A' ? drop_a : family == 'B' ? drop_b : drop_c;
	unsigned at[5] = { 0 };
	struct pb_out o = { 0 };

	assert_true(family == 'A' || family == 'B' || family == 'C');
	pb_filter(p, n, drop, at, 0, &o);
	*outlen = o.len;
	if (o.p == NULL)
		o.p = calloc(1, 1);
	return o.p;
}
