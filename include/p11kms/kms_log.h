/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: levels, key=value fields, stderr or a file, journald-friendly. */
#ifndef P11KMS_KMS_LOG_H
#define P11KMS_KMS_LOG_H

#include <stdarg.h>

enum kms_log_level {
	KMS_LOG_ERR = 3, /* syslog priorities, so journald's <N> prefix is the level */
	KMS_LOG_WARN = 4,
	KMS_LOG_INFO = 6,
	KMS_LOG_DEBUG = 7,
};

/*
 * Lines look like
 *   2026-11-25T16:30:00.123Z INFO signed vote chain=haqq_11235-1 h=12 r=0 s=2 ms=0.31
 * When stderr is connected to journald (JOURNAL_STREAM set) the timestamp is
 * dropped and the line starts with "<6>" so journald keeps the priority.
 * Messages are "what happened" followed by key=value fields. Never pass
 * secrets or whole sign bytes. Thread-safe: one write(2) per line.
 */
void kms_log(enum kms_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kms_vlog(enum kms_log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define kms_log_err(...) kms_log(KMS_LOG_ERR, __VA_ARGS__)
#define kms_log_warn(...) kms_log(KMS_LOG_WARN, __VA_ARGS__)
#define kms_log_info(...) kms_log(KMS_LOG_INFO, __VA_ARGS__)
#define kms_log_debug(...) kms_log(KMS_LOG_DEBUG, __VA_ARGS__)

/*
 * Line format. TEXT (the default) is the line above. JSON writes one object
 * per line for log shippers, with the same content:
 *   {"time":"2026-11-25T16:30:00.123Z","level":"info","msg":"signed vote chain=… h=12 …",
 *    "chain":"haqq_11235-1","h":12,…}
 * "msg" is the whole text message; every key=value field in it is repeated as
 * a member (numbers as JSON numbers, "quoted" values unquoted; a key already
 * present keeps its first value; time, level and msg are never overwritten).
 * Under journald (JOURNAL_STREAM) the "<N>" priority prefix stays in front.
 */
enum kms_log_format {
	KMS_LOG_FORMAT_TEXT = 0,
	KMS_LOG_FORMAT_JSON = 1,
};
void kms_log_set_format(enum kms_log_format f);
/* Parses "text" or "json". Returns 0 or KMS_ERR_FORMAT. */
int kms_log_format_parse(const char *s, enum kms_log_format *out);

/* Lines above this level are dropped. Default KMS_LOG_INFO. */
void kms_log_set_level(enum kms_log_level level);
enum kms_log_level kms_log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns 0 or KMS_ERR_FORMAT. */
int kms_log_level_parse(const char *s, enum kms_log_level *out);

/*
 * Logs to the file at path (appending, 0600) instead of stderr; NULL means
 * stderr. kms_log_reopen() reopens the same path (SIGHUP, after logrotate);
 * it only sets a flag, so it is async-signal-safe; the next line reopens.
 */
int kms_log_open(const char *path);
void kms_log_reopen(void);

/*
 * Tests: every formatted line (without timestamp and newline) also goes to
 * sink(level, line, ctx). NULL removes the sink.
 */
typedef void (*kms_log_sink_fn)(enum kms_log_level level, const char *line, void *ctx);
void kms_log_set_sink(kms_log_sink_fn sink, void *ctx);
/* Tests: 1 silences stderr/file output (the sink still gets lines). */
void kms_log_set_quiet(int quiet);

#endif
