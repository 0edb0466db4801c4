/* SPDX-License-Identifier: Apache-2.0 */
/* Repeated identical log lines: the first in full, then one summary with a count per minute. */
#include "daemon_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "p11kms/kms_log.h"

void d_logrl_init(struct d_logrl *rl, int64_t period_ms)
{
	memset(rl, 0, sizeof(*rl));
	rl->period_ms = period_ms > 0 ? period_ms : D_LOGRL_PERIOD_MS;
}

/* The summary of what was folded into the count since the last line of rl->key. */
static void summary(struct d_logrl *rl, int64_t now)
{
	if (rl->folded == 0)
		return;
	kms_log(rl->level, "%s (repeated %llu time%s in the last %lld s)", rl->last,
		(unsigned long long)rl->folded, rl->folded == 1 ? "" : "s",
		(long long)((now - rl->since_ms + 999) / 1000));
	rl->folded = 0;
}

void d_logrl_flush(struct d_logrl *rl, int64_t now)
{
	summary(rl, now);
	rl->key[0] = '\0';
}

int d_logrl_log(struct d_logrl *rl, int64_t now, enum kms_log_level level, const char *key,
		const char *fmt, ...)
{
	char line[sizeof(rl->last)];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(line, sizeof(line), fmt, ap) < 0)
		line[0] = '\0';
	va_end(ap);
	if (strncmp(rl->key, key, sizeof(rl->key) - 1) != 0) {
		/* something else happened: say how often the previous thing did, then this */
		summary(rl, now);
		(void)snprintf(rl->key, sizeof(rl->key), "%s", key);
		rl->line_ms = now;
		kms_log(level, "%s", line);
		return 1;
	}
	if (rl->folded == 0)
		rl->since_ms = now;
	rl->folded++;
	rl->level = level;
	(void)snprintf(rl->last, sizeof(rl->last), "%s", line);
	if (now - rl->line_ms < rl->period_ms)
		return 0;
	summary(rl, now);
	rl->line_ms = now;
	return 1;
}
