/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: one write(2) per line to stderr or a file, journald-aware, with a test sink. */
#include "p11kms/kms_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p11kms/kms_err.h"

/* Longest line we write; longer messages are cut and end in "...". */
#define LOG_LINE_MAX 4096

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_level = KMS_LOG_INFO;
static atomic_int log_quiet;
/* Set from a signal handler; the next line (under the lock) reopens the file. */
/* Set from a signal handler, read by logging threads: a lock-free atomic is
 * both async-signal-safe and race-free (a plain sig_atomic_t is not the latter). */
static atomic_int log_reopen_pending;
/* Protected by log_lock. */
static int log_fd = -1; /* -1: stderr */
static char *log_path;
static kms_log_sink_fn log_sink;
static void *log_sink_ctx;

static const char *level_word(enum kms_log_level level)
{
	switch (level) {
	case KMS_LOG_ERR:
		return "ERROR";
	case KMS_LOG_WARN:
		return "WARN";
	case KMS_LOG_INFO:
		return "INFO";
	case KMS_LOG_DEBUG:
		return "DEBUG";
	}
	return "LOG";
}

void kms_log_set_level(enum kms_log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum kms_log_level kms_log_get_level(void)
{
	return (enum kms_log_level)atomic_load(&log_level);
}

int kms_log_level_parse(const char *s, enum kms_log_level *out)
{
	static const struct {
		const char *name;
		enum kms_log_level level;
	} names[] = {
		{ "error", KMS_LOG_ERR },    { "err", KMS_LOG_ERR },   { "warn", KMS_LOG_WARN },
		{ "warning", KMS_LOG_WARN }, { "info", KMS_LOG_INFO }, { "debug", KMS_LOG_DEBUG },
	};

	if (s == NULL || out == NULL)
		return KMS_ERR_FORMAT;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return KMS_OK;
		}
	}
	return KMS_ERR_FORMAT;
}

static int open_log_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
}

int kms_log_open(const char *path)
{
	int fd = -1;
	char *copy = NULL;

	if (path != NULL) {
		copy = strdup(path);
		if (copy == NULL)
			return KMS_ERR_ALLOC;
		fd = open_log_file(path);
		if (fd < 0) {
			int e = errno;

			free(copy);
			kms_log_err("cannot open log file path=%s err=\"%s\"", path, strerror(e));
			return KMS_ERR_SYSTEM;
		}
	}
	pthread_mutex_lock(&log_lock);
	if (log_fd >= 0)
		close(log_fd);
	free(log_path);
	log_fd = fd;
	log_path = copy;
	atomic_store(&log_reopen_pending, 0);
	pthread_mutex_unlock(&log_lock);
	return KMS_OK;
}

void kms_log_reopen(void)
{
	atomic_store(&log_reopen_pending, 1);
}

void kms_log_set_sink(kms_log_sink_fn sink, void *ctx)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_sink_ctx = ctx;
	pthread_mutex_unlock(&log_lock);
}

void kms_log_set_quiet(int quiet)
{
	atomic_store(&log_quiet, quiet ? 1 : 0);
}

/* Called with log_lock held. A failed reopen keeps the old descriptor. */
static void maybe_reopen(void)
{
	int fd;

	if (atomic_exchange(&log_reopen_pending, 0) == 0)
		return;
	if (log_path == NULL)
		return;
	fd = open_log_file(log_path);
	if (fd < 0)
		return;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
}

/*
 * journald sets JOURNAL_STREAM=<dev>:<ino> for the stream it reads; only use
 * the "<N>" prefix when stderr really is that stream (not a redirect).
 */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	char *end;

	if (js == NULL || *js == '\0')
		return 0;
	errno = 0;
	dev = strtoumax(js, &end, 10);
	if (errno != 0 || end == js || *end != ':')
		return 0;
	js = end + 1;
	ino = strtoumax(js, &end, 10);
	if (errno != 0 || end == js || *end != '\0')
		return 0;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

static size_t format_time(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	int m;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL)
		return 0;
	n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0)
		return 0;
	m = snprintf(out + n, cap - n, ".%03ldZ ", ts.tv_nsec / 1000000L);
	if (m < 0 || (size_t)m >= cap - n)
		return 0;
	return n + (size_t)m;
}

/* Control characters (newlines from a peer's string) would forge extra lines. */
static void sanitize(char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
	}
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* ---- JSON lines (log.format = "json") ----------------------------------------------- */

/* Room for a message of LOG_LINE_MAX bytes escaped twice (msg and its fields) at 6 bytes each. */
#define JSON_LINE_MAX (LOG_LINE_MAX * 13)

struct jline {
	char *p;
	size_t len, cap;
	int full; /* sticky: something did not fit (the line is still closed properly) */
};

static void jput(struct jline *j, const char *s, size_t n)
{
	/* Keep 3 bytes for the closing "}\n" and the NUL. */
	if (j->full || n > j->cap - 3 - j->len) {
		j->full = 1;
		return;
	}
	memcpy(j->p + j->len, s, n);
	j->len += n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t need;
	unsigned min;
	unsigned cp;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		need = 2, min = 0x80, cp = s[0] & 0x1fu;
	else if ((s[0] & 0xf0) == 0xe0)
		need = 3, min = 0x800, cp = s[0] & 0x0fu;
	else if ((s[0] & 0xf8) == 0xf0)
		need = 4, min = 0x10000, cp = s[0] & 0x07u;
	else
		return 0;
	if (need > n)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

/* A JSON string: quotes, backslashes and control bytes escaped, invalid UTF-8 as U+FFFD. */
static void jstr(struct jline *j, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	jput(j, "\"", 1);
	while (i < n && !j->full) {
		size_t k = utf8_len(u + i, n - i);
		char esc[8];
		if (k == 0) {
			jput(j, "\\ufffd", 6);
			i++;
		} else if (u[i] == '"' || u[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)u[i];
			jput(j, esc, 2);
			i++;
		} else if (u[i] < 0x20 || u[i] == 0x7f) {
			(void)snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
			jput(j, esc, 6);
			i++;
		} else {
			jput(j, s + i, k);
			i += k;
		}
	}
	jput(j, "\"", 1);
}

/* A decimal that JSON takes as a number as written (no leading zeros, no exponent). */
static int is_json_number(const char *v, size_t n)
{
	size_t i = 0, digits = 0;
	if (i < n && v[i] == '-')
		i++;
	if (i < n && v[i] == '0' && i + 1 < n && v[i + 1] != '.')
		return 0;
	for (; i < n && v[i] >= '0' && v[i] <= '9'; i++)
		digits++;
	if (digits == 0 || digits > 15) /* beyond 15 digits a double may not hold it exactly */
		return 0;
	if (i < n && v[i] == '.') {
		size_t frac = 0;
		for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++)
			frac++;
		if (frac == 0)
			return 0;
	}
	return i == n;
}

static int is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

#define JSON_MAX_FIELDS 32

/*
 * The key=value fields of msg (key: [A-Za-z0-9_]+ at the start or after a
 * space; value: "quoted" up to the next quote, else up to the next space
 * without a trailing ':' ',' or ';'), each once, as members.
 */
static void jfields(struct jline *j, const char *msg)
{
	static const char *const reserved[] = { "time", "level", "msg" };
	const char *seen[JSON_MAX_FIELDS];
	size_t seen_len[JSON_MAX_FIELDS], n_seen = 0;
	for (const char *p = msg; *p != '\0' && n_seen < JSON_MAX_FIELDS; p++) {
		if (p != msg && p[-1] != ' ')
			continue;
		const char *k = p, *v, *e;
		while (is_key_char(*p))
			p++;
		if (p == k || *p != '=') {
			p = k;
			continue;
		}
		size_t kl = (size_t)(p - k);
		v = ++p;
		if (*v == '"') {
			v++;
			e = strchr(v, '"');
			if (e == NULL)
				e = v + strlen(v);
			p = *e != '\0' ? e : e - 1;
		} else {
			for (e = v; *e != '\0' && *e != ' '; e++)
				;
			p = e - 1;
			while (e > v && (e[-1] == ':' || e[-1] == ',' || e[-1] == ';'))
				e--;
		}
		int dup = 0;
		for (size_t i = 0; i < n_seen; i++)
			dup |= seen_len[i] == kl && memcmp(seen[i], k, kl) == 0;
		for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
			dup |= strlen(reserved[i]) == kl && memcmp(reserved[i], k, kl) == 0;
		if (dup)
			continue;
		seen[n_seen] = k;
		seen_len[n_seen++] = kl;
		jput(j, ",", 1);
		jstr(j, k, kl);
		jput(j, ":", 1);
		if (v[-1] != '"' && is_json_number(v, (size_t)(e - v)))
			jput(j, v, (size_t)(e - v));
		else
			jstr(j, v, (size_t)(e - v));
	}
}

/* Formats one JSON line (with "\n") into j from the sanitised message. */
static void json_line(struct jline *j, const char *prefix, enum kms_log_level level,
		      const char *msg)
{
	char ts[40], lvl[8];
	size_t tn = format_time(ts, sizeof(ts)), ln;
	/* The text form's level word in lower case ("error", "warn", "info", "debug"). */
	for (ln = 0; level_word(level)[ln] != '\0' && ln + 1 < sizeof(lvl); ln++)
		lvl[ln] = (char)(level_word(level)[ln] | 0x20);
	jput(j, prefix, strlen(prefix));
	jput(j, "{\"time\":", 8);
	/* format_time ends in a space for the text form. */
	jstr(j, ts, tn > 0 ? tn - 1 : 0);
	jput(j, ",\"level\":\"", 10);
	jput(j, lvl, ln);
	jput(j, "\",\"msg\":", 8);
	jstr(j, msg, strlen(msg));
	jfields(j, msg);
	/* jput kept room for these even when the line was cut. */
	memcpy(j->p + j->len, "}\n", 2);
	j->len += 2;
}

static atomic_int log_format = KMS_LOG_FORMAT_TEXT;
/* Protected by log_lock. */
static char json_buf[JSON_LINE_MAX];

void kms_log_set_format(enum kms_log_format f)
{
	atomic_store(&log_format, (int)f);
}

int kms_log_format_parse(const char *s, enum kms_log_format *out)
{
	if (s == NULL || out == NULL)
		return KMS_ERR_FORMAT;
	if (strcmp(s, "text") == 0)
		*out = KMS_LOG_FORMAT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = KMS_LOG_FORMAT_JSON;
	else
		return KMS_ERR_FORMAT;
	return KMS_OK;
}

/* The message alone, cut with "..." if over LOG_LINE_MAX, control characters replaced. */
static void format_msg(char *msg, size_t cap, const char *fmt, va_list ap)
{
	int n = vsnprintf(msg, cap, fmt, ap);
	if (n < 0)
		msg[0] = '\0';
	else if ((size_t)n >= cap)
		memcpy(msg + cap - 4, "...", 4);
	sanitize(msg);
}

void kms_vlog(enum kms_log_level level, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX - 16]; /* with the level word, a line stays under LOG_LINE_MAX */
	char line[LOG_LINE_MAX + 64];
	char jprefix[8] = "";
	size_t prefix, n;
	int saved_errno = errno;
	int fd, m;

	if ((int)level > atomic_load(&log_level))
		return;
	format_msg(msg, sizeof(msg), fmt, ap);

	pthread_mutex_lock(&log_lock);
	maybe_reopen();
	fd = log_fd >= 0 ? log_fd : STDERR_FILENO;
	if (log_fd < 0 && stderr_is_journal()) {
		m = snprintf(line, sizeof(line), "<%d>", (int)level);
		prefix = m > 0 ? (size_t)m : 0;
		memcpy(jprefix, line, prefix + 1);
	} else {
		prefix = format_time(line, sizeof(line));
	}
	m = snprintf(line + prefix, sizeof(line) - prefix, "%s %s", level_word(level), msg);
	n = m > 0 && (size_t)m < sizeof(line) - prefix ? prefix + (size_t)m : prefix;
	if (log_sink != NULL)
		log_sink(level, line + prefix, log_sink_ctx);
	if (!atomic_load(&log_quiet)) {
		if (atomic_load(&log_format) == KMS_LOG_FORMAT_JSON) {
			struct jline j = { .p = json_buf, .cap = sizeof(json_buf) };
			json_line(&j, jprefix, level, msg);
			write_all(fd, j.p, j.len);
		} else {
			line[n] = '\n';
			write_all(fd, line, n + 1);
		}
	}
	pthread_mutex_unlock(&log_lock);
	errno = saved_errno;
}

void kms_log(enum kms_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kms_vlog(level, fmt, ap);
	va_end(ap);
}
