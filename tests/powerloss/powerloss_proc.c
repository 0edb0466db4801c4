/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The power-loss run across processes, around the real p11kms binary: each
 * cycle runs `p11kms start` (or `p11kms state import`) under the LD_PRELOAD
 * interposer pl_preload.so, which journals every write and sync of the state
 * file and kills the process at the chosen point (mid-pwrite, between pwrite
 * and fdatasync, during the start-up re-persist, during import) or fails an
 * fdatasync with EIO. The test is the node (tnode, a Unix socket): it sends
 * signing requests and verifies every signature that comes back. After the
 * kill, the journal is replayed into the pl_ model and a power cut is applied
 * (or not), then the restart must satisfy the properties of pl_check.h; a
 * refused state must make `p11kms start` name `p11kms state repair`, and is
 * then repaired with the real `p11kms state repair` as an operator would.
 *
 *   PL_CYCLES (default 60), PL_SEED, PL_BUDGET_S (stop after that many
 *   seconds), P11KMS_BIN_DIR / P11KMS_PRELOAD (set by ctest).
 */
/* realpath() is XSI: the state path must be canonical to match /proc/self/fd links. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/pv.h"
#include "pl_check.h"
#include "pl_journal.h"
#include "pl_model.h"
#include "tnode.h"

#define CHAIN "haqq_11235-1"

struct run {
	char dir[PATH_MAX], path[PATH_MAX], conf[PATH_MAX], journal[PATH_MAX], sock[PATH_MAX];
	char out[PATH_MAX]; /* the last command's stdout+stderr */
	const char *bin, *preload;
	struct pl_disk *d;
	off_t jpos;
	uint64_t rng;
	struct pl_check ck;
	struct tnode node;
	uint8_t pub[32];
	struct guard_hrs at; /* the chain's position: requests are made from it */
	int64_t max_req_h;
	unsigned long starts;
};

static const struct guard_opts any_fs = { .allow_volatile_state = 1 };

static uint64_t rnd(struct run *R, uint64_t n)
{
	return pl_rand(&R->rng) % n;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
}

static void join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < cap);
}

/* ---- processes ---- */

/* Starts `p11kms ARGS...` under the interposer with fault (NULL: journal only). */
static pid_t spawn(struct run *R, const char *fault, char *const argv[])
{
	char seed[32], asan[512];
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)pl_rand(&R->rng));
	const char *prev = getenv("ASAN_OPTIONS");
	/* our interposer comes before the ASan runtime in the library list */
	snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", prev ? prev : "",
		 prev && *prev ? ":" : "");
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(R->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(120);
		setenv("LD_PRELOAD", R->preload, 1);
		setenv("PL_TARGET", R->path, 1);
		setenv("PL_JOURNAL", R->journal, 1);
		setenv("PL_SEED", seed, 1);
		setenv("ASAN_OPTIONS", asan, 1);
		if (fault != NULL)
			setenv("PL_FAULT", fault, 1);
		else
			unsetenv("PL_FAULT");
		execv(R->bin, argv);
		_exit(121);
	}
	return pid;
}

/* Exit code, or 128+signal. */
static int reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int out_has(const struct run *R, const char *needle)
{
	char buf[65536];
	int fd = open(R->out, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 0)
		return 0;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* ---- the journal into the model ---- */

static void replay(struct run *R)
{
	int fd = open(R->journal, O_RDONLY | O_CLOEXEC);
	struct stat st;
	assert_true(fd >= 0 && fstat(fd, &st) == 0);
	size_t n = (size_t)(st.st_size - R->jpos);
	uint8_t *buf = malloc(n + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, n, R->jpos), (ssize_t)n);
	close(fd);
	size_t i = 0;
	while (n - i >= sizeof(struct pl_jrec)) {
		struct pl_jrec h;
		memcpy(&h, buf + i, sizeof(h));
		assert_int_equal(h.magic, PL_J_MAGIC);
		size_t data = h.type == PL_J_WRITE || h.type == PL_J_LINK ? (size_t)h.len : 0;
		if (n - i - sizeof(h) < data)
			break; /* cut short by a kill: its operation had not started */
		const uint8_t *p = buf + i + sizeof(h);
		if (h.type == PL_J_WRITE)
			pl_write(R->d, h.off, p, data);
		else if (h.type == PL_J_SYNC)
			pl_sync(R->d, h.res == 0);
		else if (h.type == PL_J_LINK)
			pl_link(R->d, p, data, h.res == 1);
		else if (h.type == PL_J_DIRSYNC)
			pl_dirsync(R->d);
		i += sizeof(h) + data;
	}
	R->jpos += (off_t)i;
	free(buf);
	assert_int_equal(pl_settle(R->d), 0); /* the process is gone; what it left is there */
}

/* A CLI command under the interposer (journal only, or a fault): its exit code. */
static int cli(struct run *R, const char *fault, const char *const *args)
{
	char *argv[16];
	size_t k = 0;
	argv[k++] = (char *)"p11kms";
	for (; *args != NULL && k < 14; args++)
		argv[k++] = (char *)*args;
	argv[k] = NULL;
	int ec = reap(spawn(R, fault, argv));
	replay(R);
	return ec;
}

/* ---- the node's side ---- */

/* The next request as the node sends it: the same H/R/S varies block and timestamp. */
static struct guard_hrs request(struct run *R, struct pv_request *req)
{
	struct guard_hrs q = pl_next_hrs(&R->rng, &R->at, &R->max_req_h);
	int64_t ts = 1700000000 + q.height * 10 + (int64_t)rnd(R, 2);
	if (q.step == GUARD_STEP_PROPOSE)
		tnode_req_proposal(req, CHAIN, q.height, q.round, (uint8_t)(1 + rnd(R, 2)), ts);
	else
		tnode_req_vote(req, CHAIN,
			       q.step == GUARD_STEP_PREVOTE ? PV_TYPE_PREVOTE : PV_TYPE_PRECOMMIT,
			       q.height, q.round, (uint8_t)rnd(R, 3), ts);
	return q;
}

/* A signed response: its signature must verify over its sign bytes; then it is a release. */
static void released(struct run *R, const struct guard_hrs *q, const struct pv_response *resp)
{
	struct kbuf *sb = kbuf_new(4096);
	const uint8_t *sig;
	assert_non_null(sb);
	if (q->step == GUARD_STEP_PROPOSE) {
		assert_int_equal(pv_proposal_sign_bytes(CHAIN, &resp->proposal, sb), KMS_OK);
		sig = resp->proposal.signature;
	} else {
		assert_int_equal(pv_vote_sign_bytes(CHAIN, &resp->vote, sb), KMS_OK);
		sig = resp->vote.signature;
	}
	if (kcrypto_ed25519_verify(R->pub, kbuf_ptr(sb), kbuf_len(sb), sig) != KMS_OK)
		pl_violation(&R->ck, "a released signature does not verify");
	(void)pl_check_release(&R->ck, q, kbuf_ptr(sb), kbuf_len(sb));
	kbuf_free(sb);
}

/* Accepts the signer's connection unless the process dies first. 1: connected. */
static int wait_connect(struct run *R, pid_t pid, int *ec)
{
	double t0 = now_s();
	while (now_s() - t0 < 60) {
		if (tnode_accept(&R->node, 100) == KMS_OK)
			return 1;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			*ec = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return 0;
		}
	}
	fail_msg("p11kms start did not connect within 60 s");
	return 0;
}

/* ---- one cycle ---- */

static enum pl_point start_and_sign(struct run *R, enum pl_point want)
{
	char fault[64] = "";
	unsigned at = 1 + (unsigned)rnd(R, 4);
	/* the start-up writes: the record's own bytes back (write/sync 1), then seq+1 (2) */
	switch (want) {
	case PL_PT_REPERSIST_MID:
		snprintf(fault, sizeof(fault), "write:%u:mid", 1 + (unsigned)rnd(R, 2));
		break;
	case PL_PT_REPERSIST_PRESYNC:
		snprintf(fault, sizeof(fault), "sync:%u:before", 1 + (unsigned)rnd(R, 2));
		break;
	case PL_PT_SIGN_MID:
		snprintf(fault, sizeof(fault), "write:%u:mid", 2 + at);
		break;
	case PL_PT_SIGN_PRESYNC:
		snprintf(fault, sizeof(fault), "sync:%u:before", 2 + at);
		break;
	case PL_PT_EIO:
		snprintf(fault, sizeof(fault), "sync:%u:eio", 2 + at);
		break;
	default:
		break;
	}
	char *argv[] = { (char *)"p11kms", (char *)"start", (char *)"-c", R->conf, NULL };
	pid_t pid = spawn(R, fault[0] ? fault : NULL, argv);
	int ec = -1, stopped = 0;
	R->starts++;
	if (!wait_connect(R, pid, &ec)) {
		replay(R);
		if (ec != 128 + SIGKILL)
			pl_violation(&R->ck, "p11kms start exited %d before serving", ec);
		return ec == 128 + SIGKILL ? want : PL_PT_IDLE;
	}
	int n = 1 + (int)rnd(R, 16), dead = 0;
	for (int i = 0; i < n && !dead; i++) {
		struct pv_request req;
		struct pv_response *resp = NULL;
		struct guard_hrs q = request(R, &req);
		if (tnode_call(&R->node, &req, &resp) != KMS_OK) {
			dead = 1;
			break;
		}
		if (!resp->has_error && stopped)
			pl_violation(&R->ck, "a signature left after an fdatasync EIO");
		else if (!resp->has_error)
			released(R, &q, resp);
		else if (resp->error_code == PV_CODE_STATE_UNAVAILABLE && !stopped) {
			stopped = 1;
			R->ck.eio_stops++;
		}
		pv_response_free(resp);
	}
	tnode_drop(&R->node);
	if (!dead)
		kill(pid, SIGKILL);
	ec = reap(pid);
	replay(R);
	if (stopped && want != PL_PT_EIO)
		pl_violation(&R->ck, "the state became unavailable with no EIO injected");
	if (stopped)
		return PL_PT_EIO;
	return dead && ec == 128 + SIGKILL && want != PL_PT_IDLE ? want : PL_PT_IDLE;
}

static enum pl_point import(struct run *R, enum pl_point want)
{
	char json[128], file[PATH_MAX + 16], fault[64];
	int64_t h = R->max_req_h + 1 + (int64_t)rnd(R, 3);
	R->max_req_h = h;
	snprintf(json, sizeof(json), "{\"height\":\"%lld\",\"round\":0,\"step\":0}", (long long)h);
	join(file, sizeof(file), R->dir, "import.json");
	write_text(file, json);
	if (want == PL_PT_IMPORT_NEW) {
		/* the operator removes the state and imports one above every height asked for */
		assert_int_equal(unlink(R->path), 0);
		assert_int_equal(pl_reset(R->d), 0);
		static const char *const ev[] = { "write:1:mid", "sync:1:before", "link:1:before",
						  "dirsync:1:before" };
		snprintf(fault, sizeof(fault), "%s", ev[rnd(R, 4)]);
	} else if (want == PL_PT_IDLE) {
		fault[0] = '\0'; /* a plain import, nothing injected */
	} else {
		/* import's first write is the current record's bytes back (1), then its own (2) */
		snprintf(fault, sizeof(fault), "%s:%u:%s",
			 want == PL_PT_IMPORT_MID ? "write" : "sync", 1 + (unsigned)rnd(R, 2),
			 want == PL_PT_IMPORT_MID ? "mid" : "before");
	}
	const char *args[] = { "state", "import",  "-c", R->conf, "--chain",
			       CHAIN,	"--force", file, NULL };
	if (want == PL_PT_IMPORT_NEW)
		args[6] = file, args[7] = NULL;
	int ec = cli(R, fault[0] ? fault : NULL, args);
	if (want == PL_PT_IDLE && ec != 0)
		pl_violation(&R->ck, "a plain state import failed: exit %d", ec);
	return ec == 128 + SIGKILL ? want : PL_PT_IDLE;
}

/* The operator: `state repair` shows, then accepts the valid record or sets a height. */
static int repair(struct run *R)
{
	const char *show[] = { "state", "repair", "-c", R->conf, "--chain", CHAIN, NULL };
	if (cli(R, NULL, show) != 0)
		return -1;
	char buf[65536], arg[32];
	int fd = open(R->out, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	const char *v = strstr(buf, ": valid: sequence ");
	const char *choice[] = {
		"state", "repair", "-c", R->conf, "--chain", CHAIN, NULL, arg, NULL
	};
	if (v != NULL) {
		snprintf(arg, sizeof(arg), "%llu",
			 strtoull(v + strlen(": valid: sequence "), NULL, 10));
		choice[6] = "--accept-record";
		R->ck.repaired_accept++;
	} else {
		R->max_req_h++;
		snprintf(arg, sizeof(arg), "%lld", (long long)R->max_req_h);
		choice[6] = "--set-height";
		R->ck.repaired_height++;
	}
	return cli(R, NULL, choice) == 0 ? 0 : -1;
}

static int restart(struct run *R, enum pl_point pt, const struct pl_cut_report *rep)
{
	struct guard_hrs last;
	int r = guard_state_check(R->path, CHAIN, &any_fs, &last);
	if (r == KMS_ERR_NOT_FOUND) {
		if (pt != PL_PT_IMPORT_NEW || rep->exists)
			pl_violation(&R->ck, "the state vanished after %s", pl_point_name(pt));
		R->ck.reimported++;
		(void)import(R, PL_PT_IDLE); /* no fault: a plain create */
		r = guard_state_check(R->path, CHAIN, &any_fs, &last);
	}
	if (rep->outcome == PL_OUT_TORN && r == KMS_OK)
		pl_violation(&R->ck, "a torn record was accepted after %s", pl_point_name(pt));
	if (r == KMS_ERR_FORMAT) {
		char need[PATH_MAX + 64];
		const char *start[] = { "start", "-c", R->conf, NULL };
		R->ck.refused++;
		if (rep->outcome != PL_OUT_TORN)
			pl_violation(&R->ck, "refused though the model tore nothing (%s, %s)",
				     pl_point_name(pt), pl_outcome_name(rep->outcome));
		int ec = cli(R, NULL, start);
		snprintf(need, sizeof(need), "p11kms state repair -c %s --chain %s", R->conf,
			 CHAIN);
		if (ec != 5 || !out_has(R, need))
			pl_violation(&R->ck, "p11kms start on a torn state: exit %d, without `%s`",
				     ec, need);
		if (repair(R) != 0)
			pl_violation(&R->ck, "p11kms state repair failed");
		r = guard_state_check(R->path, CHAIN, &any_fs, &last);
	}
	if (r != KMS_OK) {
		pl_violation(&R->ck, "the state does not open after %s: %s", pl_point_name(pt),
			     kms_strerror(r));
		return -1;
	}
	if (last.height > R->at.height)
		R->at = last;
	return pl_check_not_behind(&R->ck, &last, pl_point_name(pt));
}

static int cycle(struct run *R)
{
	enum pl_point want = pl_pick_point(&R->rng);
	struct pl_cut_report rep;
	int cut;
	enum pl_point pt = pl_point_is_import(want) ? import(R, want) : start_and_sign(R, want);
	assert_int_equal(pl_cut_or_kill(R->d, &R->rng, &cut, &rep), 0);
	pl_check_count(&R->ck, pt, cut, rep.outcome);
	R->ck.cycles++;
	return restart(R, pt, &rep);
}

/* ---- set-up ---- */

static void setup_run(struct run *R)
{
	const char *t = getenv("TMPDIR"), *bd = getenv("P11KMS_BIN_DIR");
	char tmpl[PATH_MAX], text[2048], b64[64];
	uint8_t seed[32];
	snprintf(tmpl, sizeof(tmpl), "%s/p11kms-plproc-XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(tmpl));
	assert_non_null(realpath(tmpl, R->dir));
	join(R->path, sizeof(R->path), R->dir, "state.bin");
	join(R->conf, sizeof(R->conf), R->dir, "p11kms.conf");
	join(R->journal, sizeof(R->journal), R->dir, "journal");
	join(R->sock, sizeof(R->sock), R->dir, "node.sock");
	join(R->out, sizeof(R->out), R->dir, "out.txt");
	R->preload = getenv("P11KMS_PRELOAD");
	assert_non_null(bd);
	assert_non_null(R->preload);
	static char bin[PATH_MAX];
	snprintf(bin, sizeof(bin), "%s/p11kms", bd);
	R->bin = bin;
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(pl_rand(&R->rng) >> 24);
	assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, R->pub), KMS_OK);
	assert_int_equal(enc_base64_encode(seed, 32, b64, sizeof(b64)), KMS_OK);
	char keypath[PATH_MAX];
	join(keypath, sizeof(keypath), R->dir, "cons.key");
	write_text(keypath, b64);
	tnode_listen(&R->node, PV_V0_37, 0, R->sock, 0);
	/* a tmpfs $TMPDIR is fine here: the model is the disk */
	snprintf(text, sizeof(text),
		 "chains = ( { id = \"%s\"; key_format = \"hex\"; state_file = \"state.bin\";"
		 " allow_volatile_state = true; } );\n"
		 "keys = ( { chain_ids = [ \"%s\" ]; softsign = \"cons.key\"; } );\n"
		 "validators = ( { chain_id = \"%s\"; addr = \"%s\"; protocol_version = \"v0.37\";"
		 " backoff_min_ms = 10; backoff_max_ms = 50; } );\n"
		 "log = { level = \"warn\"; };\n",
		 CHAIN, CHAIN, CHAIN, R->node.addr);
	write_text(R->conf, text);
	write_text(R->journal, "");
	const char *init[] = { "state", "init",	    "-c", R->conf, "--chain",
			       CHAIN,	"--height", "1",  NULL };
	R->d = pl_new(R->path); /* absent: the init's create is journaled */
	assert_non_null(R->d);
	assert_int_equal(cli(R, NULL, init), 0);
}

static void test_powerloss_proc(void **state)
{
	static struct run R;
	(void)state;
	const char *cy = getenv("PL_CYCLES"), *sd = getenv("PL_SEED"), *bu = getenv("PL_BUDGET_S");
	unsigned long cycles = cy ? strtoul(cy, NULL, 10) : 60;
	double budget = bu ? strtod(bu, NULL) : 0;
	uint64_t seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	R.rng = seed;
	signal(SIGPIPE, SIG_IGN); /* a killed signer's socket */
	kms_log_set_quiet(1);
	pl_check_init(&R.ck);
	setup_run(&R);
	double t0 = now_s();
	while (R.ck.cycles < cycles && !(budget > 0 && now_s() - t0 > budget))
		if (cycle(&R) != 0 && R.ck.violations > 10)
			break;
	R.ck.seconds = now_s() - t0;
	pl_check_report(&R.ck, "p11kms binary + LD_PRELOAD", seed);
	printf("  p11kms starts=%lu\n", R.starts);
	tnode_close(&R.node);
	pl_free(R.d);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", R.dir);
	if (R.ck.violations == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", R.dir);
	else if (R.ck.violations != 0)
		fprintf(stderr, "kept %s for inspection\n", R.dir);
	assert_int_equal(R.ck.violations, 0);
	if (R.ck.cycles >= 50)
		assert_true(R.ck.releases > 0 && R.ck.refused > 0);
	pl_check_free(&R.ck);
}

/* `p11kms start` whose start-up write-back hits an fdatasync EIO refuses to start (exit 5). */
static void test_start_refuses_when_not_durable(void **state)
{
	static struct run R;
	(void)state;
	R.rng = 15;
	signal(SIGPIPE, SIG_IGN);
	kms_log_set_quiet(1);
	pl_check_init(&R.ck);
	setup_run(&R);
	const char *start[] = { "start", "-c", R.conf, NULL };
	for (unsigned at = 1; at <= 2; at++) {
		char fault[32];
		snprintf(fault, sizeof(fault), "sync:%u:eio", at);
		int ec = cli(&R, fault, start);
		if (ec != 5 || !out_has(&R, "could not be made durable before serving"))
			fail_msg("start with %s: exit %d (expected 5, refusing)", fault, ec);
	}
	/* the disk is back: it starts and serves */
	char *argv[] = { (char *)"p11kms", (char *)"start", (char *)"-c", R.conf, NULL };
	pid_t pid = spawn(&R, NULL, argv);
	int ec = -1;
	assert_true(wait_connect(&R, pid, &ec));
	tnode_drop(&R.node);
	kill(pid, SIGKILL);
	(void)reap(pid);
	tnode_close(&R.node);
	pl_free(R.d);
	pl_check_free(&R.ck);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", R.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", R.dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_refuses_when_not_durable),
		cmocka_unit_test(test_powerloss_proc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
