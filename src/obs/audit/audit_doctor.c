/* SPDX-License-Identifier: Apache-2.0 */
/* audit_doctor: the audit log's configuration and condition, for doctor and start-up. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "audit_int.h"
#include "p11kms/cfg.h"
#include "p11kms/cmd.h"

#define LOW_SPACE (16ull << 20) /* below this, the next rotation may already fail */

struct rep {
	void (*fn)(void *ctx, int exit_code, const char *line);
	void *ctx;
};

static void say(const struct rep *r, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(const struct rep *r, int code, const char *fmt, ...)
{
	char line[700];
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	r->fn(r->ctx, code, line);
}

/* The value of "key=" in the status text, into out ("" if absent). */
static void status_get(const char *txt, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	out[0] = '\0';
	for (const char *p = txt; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			size_t n = strcspn(p + kl + 1, "\n");
			if (n >= cap)
				n = cap - 1;
			memcpy(out, p + kl + 1, n);
			out[n] = '\0';
			return;
		}
	}
}

static int dir_checks(const struct rep *r, const struct cfg_audit *ac)
{
	struct stat st;
	struct statvfs vfs;
	if (stat(ac->dir, &st) != 0) {
		if (errno != ENOENT) {
			say(r, CMD_EXIT_CONFIG, "audit dir %s: %s", ac->dir, strerror(errno));
			return -1;
		}
		say(r, CMD_EXIT_OK, "audit dir %s: not there yet (`p11kms start` creates it)",
		    ac->dir);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		say(r, CMD_EXIT_CONFIG, "audit dir %s: not a directory (audit.dir)", ac->dir);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		say(r, CMD_EXIT_PERM, "audit dir %s: writable by group or others: chmod go-w %s",
		    ac->dir, ac->dir);
		return -1;
	}
	if (access(ac->dir, W_OK | X_OK) != 0) {
		say(r, CMD_EXIT_PERM, "audit dir %s: not writable by this user: %s", ac->dir,
		    strerror(errno));
		return -1;
	}
	if (statvfs(ac->dir, &vfs) == 0) {
		unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
		say(r, avail < LOW_SPACE ? CMD_EXIT_FAIL : CMD_EXIT_OK,
		    "audit dir %s: private, writable, %llu MiB free%s", ac->dir, avail >> 20,
		    avail < LOW_SPACE ? ": audit writes will soon fail (free space, or move "
					"old files off-host)" :
					"");
	}
	return 0;
}

/* The running daemon's view, from its status file. */
static void live_checks(const struct rep *r, const struct cfg_audit *ac, long pid)
{
	char path[4096], txt[AUDIT_STATUS_SIZE + 1], state[32], since[48], err[128], en[128];
	char w[24], d[24], dr[24], lo[24];
	int fd;
	ssize_t k = -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", ac->dir, AUDIT_STATUS_FILE) <
		    sizeof(path) &&
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		k = pread(fd, txt, AUDIT_STATUS_SIZE, 0);
		close(fd);
	}
	txt[k > 0 ? k : 0] = '\0';
	status_get(txt, "state", state, sizeof(state));
	status_get(txt, "since", since, sizeof(since));
	status_get(txt, "error", err, sizeof(err));
	status_get(txt, "errno", en, sizeof(en));
	status_get(txt, "written", w, sizeof(w));
	status_get(txt, "durable", d, sizeof(d));
	status_get(txt, "dropped", dr, sizeof(dr));
	status_get(txt, "lost", lo, sizeof(lo));
	if (strcmp(state, "failed") == 0)
		say(r, CMD_EXIT_FAIL,
		    "audit log: the running daemon (pid %ld) cannot write it since %s: %s%s%s; %s "
		    "(fix the disk; it retries every second)",
		    pid, since, err, en[0] ? ": " : "", en,
		    ac->fail_closed ? "new signatures are refused (fail_closed = true)" :
				      "signing goes on without audit records");
	else
		say(r, CMD_EXIT_OK,
		    "audit log: written by the running daemon (pid %ld): %s decisions written, %s "
		    "synced, %s dropped (queue full), %s lost to write errors",
		    pid, w[0] ? w : "?", d[0] ? d : "?", dr[0] ? dr : "0", lo[0] ? lo : "0");
}

/* With no daemon: what the newest file says about how it ended. */
static void file_checks(const struct rep *r, const struct cfg_audit *ac)
{
	char **paths = NULL, t[40];
	size_t n = 0, len = 0;
	uint8_t *img = NULL;
	struct audit_scan s;
	if (audit_dir_list(ac->dir, &paths, &n) != KMS_OK || n == 0) {
		say(r, CMD_EXIT_OK, "audit log: no files yet");
		audit_paths_free(paths, n);
		return;
	}
	const char *newest = paths[n - 1];
	if (audit_file_load(newest, (size_t)1 << 30, &img, &len) != KMS_OK ||
	    audit_scan_file(img, len, &s) != KMS_OK || !s.has_header) {
		say(r, CMD_EXIT_FAIL,
		    "audit log: newest file %s is unreadable: run `p11kms audit "
		    "verify`",
		    newest);
		goto out;
	}
	audit_fmt_time(s.last_wall_ns, t);
	int clean = s.last_type == AUDIT_REC_CHECKPOINT && s.last_reason == AUDIT_CP_SHUTDOWN;
	say(r, s.damaged ? CMD_EXIT_FAIL : CMD_EXIT_OK,
	    "audit log: %zu files; newest %s: %llu records up to #%llu at %s, %s%s", n, newest,
	    (unsigned long long)s.frames, (unsigned long long)s.last_seq, t,
	    clean ? "ended by a clean stop" :
		    "ended without a shutdown checkpoint (a crash; the next start records the gap)",
	    s.damaged ? "; DAMAGED: run `p11kms audit verify`" : "");
	if (s.lost_notes > 0) {
		audit_fmt_time(s.last_error_ns, t);
		say(r, CMD_EXIT_OK,
		    "audit log: records %llu decisions lost to write errors (last at %s); "
		    "`p11kms audit verify` names them",
		    (unsigned long long)s.lost, t);
	}
out:
	free(img);
	audit_paths_free(paths, n);
}

void audit_doctor(const struct cfg *cfg, void (*report)(void *ctx, int exit_code, const char *line),
		  void *ctx)
{
	const struct cfg_audit *ac = &cfg->audit;
	struct rep r = { report, ctx };
	long pid = -1;
	if (!ac->enabled) {
		say(&r, CMD_EXIT_OK,
		    "audit log: not configured (audit = { dir = \"audit\"; } keeps one)");
		return;
	}
	if (dir_checks(&r, ac) != 0)
		return;
	if (ac->sign_checkpoints)
		say(&r, CMD_EXIT_OK,
		    "audit log: checkpoints signed with the first validator's "
		    "Secret Connection identity key");
	if (audit_dir_live(ac->dir, &pid))
		live_checks(&r, ac, pid);
	else
		file_checks(&r, ac);
}
