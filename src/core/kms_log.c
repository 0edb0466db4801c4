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

void kms_vlog(enum kms_log_level level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t prefix, body, word;
	int n, saved_errno = errno;
	int fd;

	if ((int)level > atomic_load(&log_level))
		return;

	pthread_mutex_lock(&log_lock);
	maybe_reopen();
	fd = log_fd >= 0 ? log_fd : STDERR_FILENO;
	if (log_fd < 0 && stderr_is_journal()) {
		n = snprintf(line, sizeof(line), "<%d>", (int)level);
		prefix = n > 0 ? (size_t)n : 0;
	} else {
		prefix = format_time(line, sizeof(line));
	}
	n = snprintf(line + prefix, sizeof(line) - prefix, "%s ", level_word(level));
	word = n > 0 ? (size_t)n : 0;
	n = vsnprintf(line + prefix + word, sizeof(line) - prefix - word, fmt, ap);
	body = prefix + word;
	if (n > 0) {
		if ((size_t)n >= sizeof(line) - body - 1) {
			/* Truncated: mark it, keep room for the newline. */
			body = sizeof(line) - 2;
			memcpy(line + body - 3, "...", 3);
		} else {
			body += (size_t)n;
		}
	}
	line[body] = '\0';
	sanitize(line + prefix);
	if (log_sink != NULL)
		log_sink(level, line + prefix, log_sink_ctx);
	if (!atomic_load(&log_quiet)) {
		line[body] = '\n';
		write_all(fd, line, body + 1);
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
