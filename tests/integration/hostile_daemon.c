/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bad-input suite against a running `p11kms start` (docs/hostile-input.md).
 *
 * One chain, two validator entries: a hostile node (this file's own peer, built
 * on sc_/pv_/net_) and a well-behaved node (a thread signing votes with
 * tnode_* and verifying every signature). For each hostile mode the test
 * checks what the daemon did on the wire (dropped the connection, or answered
 * with the RemoteSignerError docs/privval.md requires and kept it), that its
 * log names what was wrong, and that the well-behaved node kept getting valid
 * signatures meanwhile. Then HOSTILE_BAD_CONNS bad connections (default 2000)
 * while VmRSS of the daemon is sampled, then SIGTERM: exit 0, and
 * `p11kms state show` reports the last H/R/S the good node got signed.
 *
 * The same 13 modes are then driven once more by `p11kms-sim --hostile all`.
 *
 * Environment: P11KMS_BIN (the p11kms executable), P11KMS_SIM (p11kms-sim;
 * optional), HOSTILE_BAD_CONNS, HOSTILE_RSS_MAX_KB (allowed VmRSS growth;
 * default 2048, not checked under ASan, whose quarantine keeps freed memory
 * resident). HOSTILE_KEEP=1 keeps the temporary directory (config, log).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/net/sc_int.h"
#include "p11kms/enc.h"
#include "p11kms/guard.h"
#include "p11kms/kbuf.h"
#include "p11kms/kcrypto.h"
#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "p11kms/pv.h"
#include "p11kms/sc.h"
#include "testutil.h"
#include "tnode.h"

#define CHAIN "haqq_11235-1"
#define TS 1700000000
#define HOSTILE_TIMEOUT_MS 1500 /* the hostile validator's timeout (slowloris, never-reads) */
#define HOSTILE_MAX_MSG 65536	/* its max_msg_size: the oversized vote extension exceeds it */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static struct {
	char *dir, *conf, *log, *state;
	const char *bin;
	pid_t pid;
	uint8_t pub[32];
	/* the hostile node */
	int hlfd;
	uint16_t hport;
	int ulfd;	     /* the hostile node's Unix-socket listener (third validator entry) */
	int unix_mode;	     /* the privval modes run over the Unix socket instead of tcp */
	char peer_tcp[64];   /* "peer=tcp://127.0.0.1:PORT": the hostile tcp node in log lines */
	char peer_unix[300]; /* "peer=unix://...": the hostile unix node */
	struct sc_soft_identity *hsi;
	/* the well-behaved node */
	struct tnode good;
	pthread_t good_th;
	atomic_int good_stop;
	atomic_long good_ok, good_bad, good_drops;
	atomic_long good_last_h; /* last height whose precommit verified */
} G;

/* ---- helpers ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void write_seed(const char *name, uint8_t seed_byte, uint8_t pub[32])
{
	uint8_t seed[32];
	char b64[64];
	char *p = tu_path(G.dir, name);

	memset(seed, seed_byte, sizeof(seed));
	assert_int_equal(enc_base64_encode(seed, 32, b64, sizeof(b64)), KMS_OK);
	tu_write_file(p, b64, strlen(b64), 0600);
	if (pub != NULL)
		assert_int_equal(kcrypto_ed25519_pub_from_seed(seed, pub), KMS_OK);
	free(p);
}

static long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Reads the daemon log from offset off into a NUL-terminated malloc'd string. */
static char *log_since(long off)
{
	FILE *fp = fopen(G.log, "rb");
	long end;
	char *s;
	size_t n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	end = ftell(fp);
	if (off > end)
		off = end;
	assert_int_equal(fseek(fp, off, SEEK_SET), 0);
	s = malloc((size_t)(end - off) + 1);
	assert_non_null(s);
	n = fread(s, 1, (size_t)(end - off), fp);
	s[n] = '\0';
	fclose(fp);
	return s;
}

/*
 * Waits (up to 10 s) for a log line after off containing every needle
 * (NULL-terminated list); prints the line. Fails the test otherwise.
 */
static void expect_log(long off, const char *first, ...)
{
	const char *needles[8];
	size_t nn = 0;
	va_list ap;
	int64_t deadline = net_now_ms() + 10000;

	va_start(ap, first);
	for (const char *s = first; s != NULL && nn < 8; s = va_arg(ap, const char *))
		needles[nn++] = s;
	va_end(ap);
	for (;;) {
		char *text = log_since(off), *line = text, *nl;

		for (; *line != '\0'; line = nl + 1) {
			size_t i;

			nl = strchr(line, '\n');
			if (nl == NULL)
				break; /* a line being written */
			*nl = '\0';
			for (i = 0; i < nn && strstr(line, needles[i]) != NULL; i++)
				;
			if (i == nn) {
				printf("    log: %s\n", line);
				free(text);
				return;
			}
		}
		free(text);
		if (net_now_ms() > deadline)
			break;
		sleep_ms(20);
	}
	{
		char *text = log_since(off);

		fprintf(stderr, "log since the mode started:\n%s\n", text);
		free(text);
	}
	fail_msg("no daemon log line containing \"%s\"%s", first, nn > 1 ? " (and more)" : "");
}

static long vmrss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *fp;

	(void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "r");
	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = strtol(line + 6, NULL, 10);
	fclose(fp);
	return kb;
}

/* Open descriptors of pid (entries of /proc/pid/fd), -1 if unreadable. */
static long fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	long n = 0;
	DIR *d;

	(void)snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* "tcp://127.0.0.1:PORT" in a static buffer (the hostile node's address). */
static const char *hostile_addr(const char *port)
{
	static char buf[64];

	(void)snprintf(buf, sizeof(buf), "tcp://127.0.0.1:%s", port);
	return buf;
}

static long env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return dflt;
	v = strtol(s, &end, 10);
	return (*end == '\0' && v >= 0) ? v : dflt;
}

/* ---- the well-behaved node ---- */

static int good_vote(int32_t type, int64_t h)
{
	struct pv_request req;
	struct pv_response *resp = NULL;
	struct kbuf *sb = kbuf_new(1024);
	int ok = 0;

	tnode_req_vote(&req, CHAIN, type, h, 0, (uint8_t)(1 + h % 250), TS + h);
	if (sb != NULL && tnode_call(&G.good, &req, &resp) == KMS_OK) {
		ok = resp->kind == PV_REQ_SIGN_VOTE && !resp->has_error &&
		     resp->vote.signature_len == PV_SIG_LEN && resp->vote.height == h &&
		     resp->vote.type == type &&
		     pv_vote_sign_bytes(CHAIN, &resp->vote, sb) == KMS_OK &&
		     kcrypto_ed25519_verify(G.pub, kbuf_ptr(sb), kbuf_len(sb),
					    resp->vote.signature) == KMS_OK;
		if (!ok)
			atomic_fetch_add(&G.good_bad, 1);
	} else {
		ok = -1; /* transport */
	}
	pv_response_free(resp);
	kbuf_free(sb);
	return ok;
}

static void *good_main(void *arg)
{
	int64_t h = 1;
	int connected = 0;

	(void)arg;
	while (!atomic_load(&G.good_stop)) {
		if (!connected) {
			if (tnode_accept(&G.good, 1000) != KMS_OK)
				continue;
			connected = 1;
		}
		int a = good_vote(PV_TYPE_PREVOTE, h);
		int b = a == 1 ? good_vote(PV_TYPE_PRECOMMIT, h) : a;

		if (a < 0 || b < 0) {
			atomic_fetch_add(&G.good_drops, 1);
			tnode_drop(&G.good);
			connected = 0;
			continue;
		}
		if (a == 1 && b == 1) {
			atomic_fetch_add(&G.good_ok, 2);
			atomic_store(&G.good_last_h, (long)h);
		}
		h++;
		sleep_ms(5);
	}
	tnode_drop(&G.good);
	return NULL;
}

/* ---- the hostile node: one accepted connection ---- */

struct hconn {
	int fd;
	struct sc_conn *sc;
	struct net_stream st;
};

static void hconn_close(struct hconn *c)
{
	sc_conn_free(c->sc);
	c->sc = NULL;
	net_close(&c->fd);
}

/*
 * Accepts the daemon's next dial. A dial that waited in the backlog may have
 * given up already: with read_eph the daemon's ephemeral message is read here
 * (proving the connection is live); otherwise the caller handshakes.
 */
static void h_accept(struct hconn *c, uint8_t eph[SC_EPH_MSG_LEN])
{
	for (int tries = 0; tries < 5; tries++) {
		memset(c, 0, sizeof(*c));
		c->fd = -1;
		assert_int_equal(net_accept(G.hlfd, 10000, &c->fd), KMS_OK);
		if (eph == NULL || net_read_full(c->fd, eph, SC_EPH_MSG_LEN, 5000) == KMS_OK)
			return;
		net_close(&c->fd);
	}
	fail_msg("no live connection from the daemon");
}

static int bad_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	const struct sc_identity *real = ctx;
	int r = real->sign(real->sign_ctx, msg, len, sig);

	sig[10] ^= 0x04; /* a valid-looking but wrong AuthSig signature */
	return r;
}

/* The hostile node's name in the daemon's log lines. */
static const char *hpeer(void)
{
	return G.unix_mode ? G.peer_unix : G.peer_tcp;
}

/*
 * Unix socket: the daemon dialled (and gave up on) the listener while nobody
 * accepted, so drop whatever waits in the backlog; its current connection ends
 * with them and it redials at once: that fresh connection is the one used.
 */
static void u_accept(struct hconn *c)
{
	int fd = -1;

	while (net_accept(G.ulfd, 0, &fd) == KMS_OK)
		net_close(&fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	assert_int_equal(net_accept(G.ulfd, 10000, &c->fd), KMS_OK);
	net_stream_fd(&c->fd, &c->st);
}

/* Accepts and completes the handshake as the node (optionally signing AuthSig wrongly). */
static void h_accept_sc(struct hconn *c, int corrupt_sig)
{
	struct sc_identity id, bad;

	if (G.unix_mode) {
		u_accept(c);
		return;
	}
	sc_soft_identity_get(G.hsi, &id);
	bad = id;
	bad.sign = bad_sign;
	bad.sign_ctx = &id;
	for (int tries = 0; tries < 5; tries++) {
		int r;

		h_accept(c, NULL);
		r = sc_handshake(c->fd, corrupt_sig ? &bad : &id, NULL, 5000, &c->sc);
		if (r == KMS_OK) {
			sc_stream(c->sc, &c->st);
			return;
		}
		if (corrupt_sig && r != KMS_ERR_CONN_CLOSED)
			return; /* our side saw the failure (the daemon dropped us) */
		net_close(&c->fd);
	}
	fail_msg("no handshake with the daemon");
}

/* 1 when the daemon closed the connection within 10 s (reads and discards what it sends). */
static int raw_closed(int fd)
{
	uint8_t buf[4096];
	int64_t deadline = net_now_ms() + 10000;

	while (net_now_ms() < deadline) {
		size_t got = 0;
		int r = net_read_some(fd, buf, sizeof(buf), &got, 500);

		if (r == KMS_ERR_CONN_CLOSED || r == KMS_ERR_SYSTEM)
			return 1;
		if (r != KMS_OK && r != KMS_ERR_TIMEOUT)
			return 1;
	}
	return 0;
}

/* 1 when the Secret Connection was closed by the daemon (no reply, then EOF). */
static int sc_closed(struct hconn *c)
{
	struct kbuf *msg = NULL;
	int r = pv_read_msg(c->st.read, c->st.ctx, 1 << 20, net_deadline(10000), &msg);

	kbuf_free(msg);
	return r == KMS_ERR_CONN_CLOSED || r == KMS_ERR_SYSTEM || r == KMS_ERR_FORMAT;
}

/* Sends one length-prefixed privval message whose body is p[0..n). */
static void send_body(struct hconn *c, const uint8_t *p, size_t n)
{
	struct kbuf *b = kbuf_from(p, n);

	assert_non_null(b);
	assert_int_equal(pv_write_msg(c->st.write, c->st.ctx, b, net_deadline(5000)), KMS_OK);
	kbuf_free(b);
}

/* Encodes and sends req; returns pv_write_msg's result (the daemon may drop us mid-write). */
static int send_req_r(struct hconn *c, const struct pv_request *req)
{
	struct kbuf *b = kbuf_new(1 << 20);
	int r;

	assert_non_null(b);
	assert_int_equal(pv_encode_request(PV_V1, req, b), KMS_OK);
	r = pv_write_msg(c->st.write, c->st.ctx, b, net_deadline(5000));
	kbuf_free(b);
	return r;
}

static void send_req(struct hconn *c, const struct pv_request *req)
{
	assert_int_equal(send_req_r(c, req), KMS_OK);
}

/* Reads one reply; returns it decoded (caller frees) or NULL if the connection ended. */
static struct pv_response *read_reply(struct hconn *c)
{
	struct kbuf *msg = NULL;
	struct pv_response *resp = NULL;

	if (pv_read_msg(c->st.read, c->st.ctx, 1 << 20, net_deadline(10000), &msg) == KMS_OK)
		assert_int_equal(pv_decode_response(PV_V1, kbuf_ptr(msg), kbuf_len(msg), &resp),
				 KMS_OK);
	kbuf_free(msg);
	return resp;
}

/* The connection is still served: a ping gets its pong. */
static void expect_pong(struct hconn *c)
{
	struct pv_request ping;
	struct pv_response *resp;

	tnode_req_ping(&ping);
	send_req(c, &ping);
	resp = read_reply(c);
	assert_non_null(resp);
	assert_int_equal(resp->kind, PV_REQ_PING);
	assert_false(resp->has_error);
	pv_response_free(resp);
}

/* The good node's progress must move while hostile connections come and go. */
static long good_mark(void)
{
	return atomic_load(&G.good_ok);
}

static void expect_good_progress(long before)
{
	int64_t deadline = net_now_ms() + 10000;

	while (atomic_load(&G.good_ok) <= before + 2 && net_now_ms() < deadline)
		sleep_ms(10);
	assert_true(atomic_load(&G.good_ok) > before + 2);
	assert_int_equal(atomic_load(&G.good_bad), 0);
}

/* ---- group setup / teardown: the daemon ---- */

static int suite_setup(void **state)
{
	struct net_addr a;
	char why[128], text[4096], uaddr[256];
	int n;
	uint8_t idpub[32];

	(void)state;
	kms_log_set_quiet(1);
	signal(SIGPIPE, SIG_IGN);
	G.bin = getenv("P11KMS_BIN");
	if (G.bin == NULL || access(G.bin, X_OK) != 0) {
		fprintf(stderr, "P11KMS_BIN is not set to the p11kms executable: skipped\n");
		exit(77);
	}
	G.dir = tu_mkdtemp();
	G.conf = tu_path(G.dir, "p11kms.conf");
	G.log = tu_path(G.dir, "daemon.log");
	G.state = tu_path(G.dir, "c.state");
	write_seed("cons.key", 0x41, G.pub);
	write_seed("id.key", 0x42, idpub);
	assert_int_equal(guard_state_init(G.state, CHAIN, 0, 0, GUARD_STEP_NONE), KMS_OK);

	/* the hostile node: a plain listener (its modes run their own handshakes) */
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:0", &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(net_listen(&a, &G.hlfd), KMS_OK);
	assert_int_equal(net_local_port(G.hlfd, &G.hport), KMS_OK);
	assert_int_equal(sc_soft_identity_new(NULL, &G.hsi), KMS_OK);
	(void)snprintf(G.peer_tcp, sizeof(G.peer_tcp), "peer=tcp://127.0.0.1:%u",
		       (unsigned)G.hport);
	/* the hostile node on a Unix socket (plain privval, no Secret Connection) */
	n = snprintf(uaddr, sizeof(uaddr), "unix://%s/h.sock", G.dir);
	assert_true(n > 0 && (size_t)n < sizeof(uaddr));
	assert_int_equal(net_addr_parse(uaddr, &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(net_listen(&a, &G.ulfd), KMS_OK);
	(void)snprintf(G.peer_unix, sizeof(G.peer_unix), "peer=%s", uaddr);
	/* the well-behaved node */
	tnode_listen(&G.good, PV_V0_37, 0, NULL, 0);

	n = snprintf(text, sizeof(text),
		     "chains = ( { id = \"" CHAIN "\"; state_file = \"c.state\";"
		     " allow_volatile_state = true; } );\n"
		     "keys = ( { chain_ids = [ \"" CHAIN "\" ]; softsign = \"cons.key\"; } );\n"
		     "validators = (\n"
		     "  { chain_id = \"" CHAIN "\"; addr = \"tcp://127.0.0.1:%u\";"
		     " secret_key = \"id.key\"; protocol_version = \"v1\"; timeout_ms = %d;"
		     " backoff_min_ms = 1; backoff_max_ms = 4; max_msg_size = %d; },\n"
		     "  { chain_id = \"" CHAIN "\"; addr = \"unix://%s/h.sock\";"
		     " protocol_version = \"v1\"; timeout_ms = %d;"
		     " backoff_min_ms = 1; backoff_max_ms = 4; max_msg_size = %d; },\n"
		     "  { chain_id = \"" CHAIN "\"; addr = \"%s\"; secret_key = \"id.key\";"
		     " protocol_version = \"v0.37\"; backoff_min_ms = 20; backoff_max_ms = 200; }\n"
		     ");\n"
		     "log = { level = \"info\"; };\n",
		     (unsigned)G.hport, HOSTILE_TIMEOUT_MS, HOSTILE_MAX_MSG, G.dir,
		     HOSTILE_TIMEOUT_MS, HOSTILE_MAX_MSG, G.good.addr);
	assert_true(n > 0 && (size_t)n < sizeof(text));
	tu_write_file(G.conf, text, (size_t)n, 0600);

	G.pid = fork();
	assert_true(G.pid >= 0);
	if (G.pid == 0) {
		int fd = open(G.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0)
			_exit(127);
		close(G.hlfd);
		close(G.ulfd);
		close(G.good.lfd);
		execl(G.bin, "p11kms", "start", "-c", G.conf, (char *)NULL);
		_exit(127);
	}
	atomic_store(&G.good_stop, 0);
	assert_int_equal(pthread_create(&G.good_th, NULL, good_main, NULL), 0);
	/* up: the good node gets signatures */
	{
		int64_t deadline = net_now_ms() + 20000;

		while (atomic_load(&G.good_ok) < 4 && net_now_ms() < deadline)
			sleep_ms(20);
		if (atomic_load(&G.good_ok) < 4) {
			char *t = log_since(0);

			fprintf(stderr, "daemon log:\n%s\n", t);
			free(t);
			fail_msg("the daemon never served the well-behaved node");
		}
	}
	return 0;
}

static int suite_teardown(void **state)
{
	int st = 0;

	(void)state;
	atomic_store(&G.good_stop, 1);
	pthread_join(G.good_th, NULL);
	if (G.pid > 0) {
		kill(G.pid, SIGKILL);
		(void)waitpid(G.pid, &st, 0);
	}
	tnode_close(&G.good);
	net_close(&G.hlfd);
	net_close(&G.ulfd);
	sc_soft_identity_free(G.hsi);
	if (getenv("HOSTILE_KEEP") == NULL)
		tu_rmrf(G.dir);
	else
		fprintf(stderr, "kept %s\n", G.dir);
	free(G.dir);
	free(G.conf);
	free(G.log);
	free(G.state);
	return 0;
}

/* ---- the modes ---- */

/* 1. The ephemeral message cut short, then EOF. */
static void test_truncated_handshake(void **state)
{
	static const uint8_t part[10] = { 0x22, 0x0a, 0x20, 1, 2, 3, 4, 5, 6, 7 };
	uint8_t eph[SC_EPH_MSG_LEN];
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	h_accept(&c, eph);
	assert_int_equal(net_write_full(c.fd, part, sizeof(part), 1000), KMS_OK);
	assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
	assert_true(raw_closed(c.fd));
	hconn_close(&c);
	expect_log(off, "handshake failed", "chain=" CHAIN, hpeer(), NULL);
	expect_good_progress(g);
}

/* 2. 35 bytes that are not an ephemeral-key message. */
static void test_garbage_handshake(void **state)
{
	uint8_t eph[SC_EPH_MSG_LEN], junk[SC_EPH_MSG_LEN];
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0xA5 ^ (i * 7));
	h_accept(&c, eph);
	assert_int_equal(net_write_full(c.fd, junk, sizeof(junk), 1000), KMS_OK);
	assert_true(raw_closed(c.fd));
	hconn_close(&c);
	expect_log(off, "handshake failed", "chain=" CHAIN, hpeer(), NULL);
	expect_good_progress(g);
}

/* 3. A complete handshake whose AuthSig signature does not verify. */
static void test_bad_auth_signature(void **state)
{
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	h_accept_sc(&c, 1);
	if (c.sc != NULL)
		assert_true(sc_closed(&c));
	hconn_close(&c);
	expect_log(off, "handshake failed", "chain=" CHAIN, hpeer(), "authentication", NULL);
	expect_good_progress(g);
}

/* 4. A low-order X25519 ephemeral key (order 8): the shared secret would be known. */
static void test_low_order_ephemeral(void **state)
{
	static const uint8_t low[32] = {
		0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
		0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
		0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
	};
	uint8_t eph[SC_EPH_MSG_LEN], msg[SC_EPH_MSG_LEN] = { 0x22, 0x0a, 0x20 };
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	memcpy(msg + 3, low, 32);
	h_accept(&c, eph);
	assert_int_equal(net_write_full(c.fd, msg, sizeof(msg), 1000), KMS_OK);
	assert_true(raw_closed(c.fd));
	hconn_close(&c);
	expect_log(off, "handshake failed", "chain=" CHAIN, hpeer(), NULL);
	expect_log(off, "low-order", NULL);
	expect_good_progress(g);
}

/* 5. A privval length prefix of 2^40: refused before anything is allocated. */
static void test_oversized_length_prefix(void **state)
{
	static const uint8_t prefix[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x20 };
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	h_accept_sc(&c, 0);
	assert_int_equal(c.st.write(c.st.ctx, prefix, sizeof(prefix), net_deadline(1000)), KMS_OK);
	assert_true(sc_closed(&c));
	hconn_close(&c);
	expect_log(off, "disconnected", "chain=" CHAIN, hpeer(), "max_msg_size", NULL);
	expect_good_progress(g);
}

/* 6. A sealed frame with one bit of its Poly1305 tag flipped. */
static void test_flipped_tag_bit(void **state)
{
	uint8_t frame[SC_FRAME_SEALED];
	static const uint8_t ping[] = { 0x02, 0x3a, 0x00 }; /* a PingRequest */
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	h_accept_sc(&c, 0);
	expect_pong(&c);
	assert_int_equal(sc_seal_frame(c.sc, ping, sizeof(ping), frame), KMS_OK);
	frame[SC_FRAME_SEALED - 3] ^= 0x10;
	assert_int_equal(net_write_full(c.fd, frame, sizeof(frame), 1000), KMS_OK);
	assert_true(sc_closed(&c));
	hconn_close(&c);
	expect_log(off, "disconnected", "chain=" CHAIN, hpeer(), NULL);
	expect_log(off, "message authentication failed", NULL);
	expect_good_progress(g);
}

/* 7. Valid frames carrying a length-prefixed body that is not protobuf. */
static void test_junk_protobuf(void **state)
{
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x13, 0x37, 0x00 };
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	h_accept_sc(&c, 0);
	send_body(&c, junk, sizeof(junk));
	assert_true(sc_closed(&c));
	hconn_close(&c);
	expect_log(off, "undecodable request", "chain=" CHAIN, hpeer(), NULL);
	expect_good_progress(g);
}

/* 8. A well-formed Message whose oneof (field 15) no version defines: closed (spec §7.3). */
static void test_unknown_oneof(void **state)
{
	static const uint8_t unk[] = { 0x7a, 0x02, 0x08, 0x01 };
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	h_accept_sc(&c, 0);
	send_body(&c, unk, sizeof(unk));
	assert_true(sc_closed(&c));
	hconn_close(&c);
	expect_log(off, "undecodable request", "chain=" CHAIN, hpeer(), "unsupported", NULL);
	expect_log(off, "not a request", NULL);
	expect_good_progress(g);
}

/*
 * 9. A SignVoteRequest with height -5. Hand-encoded: Message{sign_vote_request(3) {
 * vote(1) { type(1)=1, height(2)=-5 (10-byte varint), round(3)=0 }, chain_id(2) }}.
 * docs/privval.md: well-formed protobuf, so validation refuses it with an error
 * reply (code 1, invalid request) and the connection is kept, as Go's signer does.
 */
static void test_negative_height(void **state)
{
	uint8_t vote[32], body[96], msg[128];
	size_t nv = 0, nb = 0, nm = 0;
	struct hconn c;
	long off = file_size(G.log), g = good_mark();
	uint64_t h = (uint64_t)-5;

	(void)state;
	vote[nv++] = 0x08, vote[nv++] = 0x01;
	vote[nv++] = 0x10;
	for (int i = 0; i < 10; i++, h >>= 7)
		vote[nv++] = (uint8_t)((h & 0x7f) | (i < 9 ? 0x80 : 0));
	body[nb++] = 0x0a, body[nb++] = (uint8_t)nv;
	memcpy(body + nb, vote, nv), nb += nv;
	body[nb++] = 0x12, body[nb++] = (uint8_t)strlen(CHAIN);
	memcpy(body + nb, CHAIN, strlen(CHAIN)), nb += strlen(CHAIN);
	msg[nm++] = 0x1a, msg[nm++] = (uint8_t)nb;
	memcpy(msg + nm, body, nb), nm += nb;
	h_accept_sc(&c, 0);
	send_body(&c, msg, nm);
	struct pv_response *resp = read_reply(&c);
	assert_non_null(resp);
	assert_int_equal(resp->kind, PV_REQ_SIGN_VOTE);
	assert_true(resp->has_error);
	assert_int_equal(resp->error_code, PV_CODE_INVALID_REQUEST);
	assert_int_equal(resp->vote.signature_len, 0);
	pv_response_free(resp);
	expect_pong(&c); /* still served */
	hconn_close(&c);
	expect_log(off, "refused SignVote", "code=1", hpeer(), "height must be > 0", NULL);
	expect_good_progress(g);
}

/* 10. A precommit whose vote extension makes the request larger than max_msg_size. */
static void test_oversized_vote_extension(void **state)
{
	struct pv_request req;
	uint8_t *ext = malloc(HOSTILE_MAX_MSG + 1000);
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	assert_non_null(ext);
	memset(ext, 0x5e, HOSTILE_MAX_MSG + 1000);
	/* far above the good node's heights: it must not be signed (state unchanged) */
	tnode_req_vote(&req, CHAIN, PV_TYPE_PRECOMMIT, 1000000000, 0, 7, TS);
	req.vote.extension = ext;
	req.vote.extension_len = HOSTILE_MAX_MSG + 1000;
	h_accept_sc(&c, 0);
	/* the daemon refuses on the length prefix, so our write may fail half-way */
	if (send_req_r(&c, &req) == KMS_OK)
		assert_true(sc_closed(&c));
	hconn_close(&c);
	free(ext);
	expect_log(off, "disconnected", "chain=" CHAIN, hpeer(), "max_msg_size", NULL);
	expect_good_progress(g);
}

/*
 * 11. A vote for another chain: the reference signer's reply (code 0, "unable to
 * sign vote"), the connection is kept, and the log names both chain-ids.
 */
static void test_wrong_chain_id(void **state)
{
	struct pv_request req;
	struct pv_response *resp;
	struct hconn c;
	long off = file_size(G.log), g = good_mark();

	(void)state;
	tnode_req_vote(&req, "cosmoshub-4", PV_TYPE_PREVOTE, 1000000000, 0, 7, TS);
	h_accept_sc(&c, 0);
	send_req(&c, &req);
	resp = read_reply(&c);
	assert_non_null(resp);
	assert_int_equal(resp->kind, PV_REQ_SIGN_VOTE);
	assert_true(resp->has_error);
	assert_int_equal(resp->error_code, PV_CODE_UNKNOWN);
	assert_string_equal(resp->error_description, "unable to sign vote");
	assert_int_equal(resp->vote.signature_len, 0);
	pv_response_free(resp);
	expect_pong(&c); /* still served */
	/* also a PubKeyRequest for the wrong chain */
	tnode_req_pubkey(&req, "cosmoshub-4");
	send_req(&c, &req);
	resp = read_reply(&c);
	assert_non_null(resp);
	assert_true(resp->has_error);
	assert_int_equal(resp->error_code, PV_CODE_UNKNOWN);
	/* v0.34-v0.38: "unable to provide pubkey"; v1: "... type and bytes" */
	assert_non_null(strstr(resp->error_description, "unable to provide pubkey"));
	pv_response_free(resp);
	hconn_close(&c);
	expect_log(off, "refused SignVote", "code=0", "cosmoshub-4", hpeer(), NULL);
	expect_good_progress(g);
}

/* 12. Slowloris: half a frame, then silence: dropped at the validator's timeout. */
static void test_slowloris(void **state)
{
	uint8_t frame[SC_FRAME_SEALED];
	static const uint8_t ping[] = { 0x02, 0x3a, 0x00 };
	struct hconn c;
	long off = file_size(G.log), g = good_mark();
	int64_t t0;

	(void)state;
	h_accept_sc(&c, 0);
	if (c.sc != NULL) {
		assert_int_equal(sc_seal_frame(c.sc, ping, sizeof(ping), frame), KMS_OK);
		assert_int_equal(net_write_full(c.fd, frame, SC_FRAME_SEALED / 2, 1000), KMS_OK);
	} else {
		/* unix: a 64-byte length prefix and 2 bytes of the body */
		static const uint8_t part[] = { 0x40, 0x1a, 0x3e };

		assert_int_equal(net_write_full(c.fd, part, sizeof(part), 1000), KMS_OK);
	}
	t0 = net_now_ms();
	assert_true(raw_closed(c.fd));
	printf("    slowloris dropped after %lld ms (timeout_ms = %d)\n",
	       (long long)(net_now_ms() - t0), HOSTILE_TIMEOUT_MS);
	hconn_close(&c);
	expect_log(off, "disconnected", "chain=" CHAIN, hpeer(), "timeout", NULL);
	expect_good_progress(g);
}

/* 13. A node that sends requests and never reads a reply: dropped when writes stall. */
static void test_never_reads(void **state)
{
	struct pv_request ping;
	struct kbuf *b = kbuf_new(64);
	struct hconn c;
	int small = 4096, sent = 0;
	long off = file_size(G.log), g = good_mark();
	int64_t t0;

	(void)state;
	assert_non_null(b);
	tnode_req_ping(&ping);
	assert_int_equal(pv_encode_request(PV_V1, &ping, b), KMS_OK);
	h_accept_sc(&c, 0);
	(void)setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	t0 = net_now_ms();
	/* Each ping is answered by a 1044-byte frame we never read; our own sends stop
	 * once the daemon stops reading (blocked writing to us) or drops us. */
	while (sent < 200000 && net_now_ms() - t0 < 20000) {
		if (pv_write_msg(c.st.write, c.st.ctx, b, net_deadline(3 * HOSTILE_TIMEOUT_MS)) != KMS_OK)
			break;
		sent++;
	}
	printf("    never-reads: %d pings sent before our writes stopped (%lld ms)\n", sent,
	       (long long)(net_now_ms() - t0));
	hconn_close(&c);
	kbuf_free(b);
	expect_log(off, "disconnected", "chain=" CHAIN, hpeer(), "timeout", NULL);
	expect_good_progress(g);
}

/* ---- the privval modes again over the Unix-socket validator ---- */

static void test_unix_privval_modes(void **state)
{
	G.unix_mode = 1;
	printf("    over %s:\n", G.peer_unix);
	test_oversized_length_prefix(state);
	test_junk_protobuf(state);
	test_unknown_oneof(state);
	test_negative_height(state);
	test_oversized_vote_extension(state);
	test_wrong_chain_id(state);
	test_slowloris(state);
	test_never_reads(state);
	G.unix_mode = 0;
}

/* ---- the same modes from p11kms-sim --hostile all (tests/sim), when built ---- */

static void test_sim_hostile_modes(void **state)
{
	const char *sim = getenv("P11KMS_SIM");
	char port[16], out_path[512], line[512];
	struct net_addr a;
	char why[128];
	long off = file_size(G.log), g = good_mark();
	int st = 0, lines = 0;
	pid_t pid;
	FILE *fp;

	(void)state;
	if (sim == NULL || access(sim, X_OK) != 0) {
		printf("    P11KMS_SIM not set: p11kms-sim modes skipped\n");
		return;
	}
	(void)snprintf(port, sizeof(port), "%u", (unsigned)G.hport);
	(void)snprintf(out_path, sizeof(out_path), "%s/sim.out", G.dir);
	/* hand the hostile node's port to the simulator (the daemon redials meanwhile) */
	net_close(&G.hlfd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char addr[64];
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		(void)snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%s", port);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execl(sim, "p11kms-sim", "--listen", addr, "--hostile", "all", "--connections",
		      "13", "--version", "v1", "--chain-id", CHAIN, "--timeout", "5000",
		      "--accept-timeout", "20", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(net_addr_parse(hostile_addr(port), &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(net_listen(&a, &G.hlfd), KMS_OK);
	fp = fopen(out_path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		printf("    sim: %s", line);
		if (strncmp(line, "hostile ", 8) != 0)
			continue;
		lines++;
		assert_null(strstr(line, "still open"));
		if (strstr(line, "wrong-chain-id") != NULL) {
			/* the reference reply (code 0), and the connection still answers a ping */
			assert_non_null(strstr(line, "error-reply code=0"));
			assert_non_null(strstr(line, "answered ping"));
		} else if (strstr(line, "negative-height") != NULL) {
			/* invalid request (code 1), connection kept */
			assert_non_null(strstr(line, "error-reply code=1"));
			assert_non_null(strstr(line, "answered ping"));
		} else {
			assert_null(strstr(line, "answered"));
			assert_non_null(strstr(line, "closed"));
		}
	}
	fclose(fp);
	assert_true(WIFEXITED(st));
	assert_int_equal(lines, 13);
	expect_log(off, "low-order remote ephemeral key", NULL);
	expect_log(off, "verify-authsig", NULL);
	expect_log(off, "message over max_msg_size", NULL);
	expect_log(off, "code=0", "chain_id mismatch", NULL);
	expect_good_progress(g);
}

/* ---- many bad connections: memory ---- */

static void one_bad(int i)
{
	struct hconn c;

	if (i % 2 == 0) {
		uint8_t eph[SC_EPH_MSG_LEN], junk[SC_EPH_MSG_LEN];

		memset(junk, 0x5a ^ i, sizeof(junk));
		h_accept(&c, eph);
		if (net_write_full(c.fd, junk, sizeof(junk), 1000) != KMS_OK)
			fail_msg("cannot write to the daemon");
		assert_true(raw_closed(c.fd));
	} else {
		static const uint8_t junk[] = { 0x0a, 0x05, 0xff, 0xff, 0xff };

		h_accept_sc(&c, 0);
		send_body(&c, junk, sizeof(junk));
		assert_true(sc_closed(&c));
	}
	hconn_close(&c);
}

static void test_many_bad_connections(void **state)
{
	long n = env_long("HOSTILE_BAD_CONNS", 2000), warm = n / 10 < 200 ? n / 10 : 200;
	long max_kb = env_long("HOSTILE_RSS_MAX_KB", 2048);
	long rss0, rss1, rss_warm, fd0, fd1, g = good_mark(), drops0 = atomic_load(&G.good_drops);
	int64_t t0 = net_now_ms();

	(void)state;
	long log0 = file_size(G.log);

	rss0 = vmrss_kb(G.pid);
	fd0 = fd_count(G.pid);
	for (long i = 0; i < warm; i++)
		one_bad((int)i);
	rss_warm = vmrss_kb(G.pid);
	for (long i = warm; i < n; i++)
		one_bad((int)i);
	rss1 = vmrss_kb(G.pid);
	fd1 = fd_count(G.pid);
	printf("    open descriptors of the daemon: %ld before, %ld after; log grew %ld bytes "
	       "(%.0f bytes per bad connection, good node's lines included)\n",
	       fd0, fd1, file_size(G.log) - log0, (double)(file_size(G.log) - log0) / (double)n);
	/* at either sample the daemon may hold its next dial to the tcp and the unix node */
	assert_true(fd0 > 0 && fd1 > 0 && fd1 <= fd0 + 2);
	printf("    %ld bad connections in %.1f s: VmRSS %ld kB at start, %ld kB after %ld, "
	       "%ld kB at the end (growth after warm-up %+ld kB)%s\n",
	       n, (double)(net_now_ms() - t0) / 1000.0, rss0, rss_warm, warm, rss1, rss1 - rss_warm,
	       UNDER_ASAN ? " [ASan build: growth not checked]" : "");
	printf("    well-behaved node meanwhile: %ld signatures verified, %ld drops\n",
	       atomic_load(&G.good_ok) - g, atomic_load(&G.good_drops) - drops0);
	assert_true(rss0 > 0 && rss1 > 0);
	if (!UNDER_ASAN)
		assert_true(rss1 - rss_warm <= max_kb);
	assert_int_equal(atomic_load(&G.good_drops), drops0);
	expect_good_progress(g);
}

/* ---- the end: orderly stop, state intact ---- */

static void test_stop_and_state(void **state)
{
	int st = 0;
	long last_h;
	char cmd[1024], out[4096];
	FILE *fp;
	size_t n;

	(void)state;
	atomic_store(&G.good_stop, 1);
	pthread_join(G.good_th, NULL);
	last_h = atomic_load(&G.good_last_h);
	assert_int_equal(kill(G.pid, SIGTERM), 0);
	assert_int_equal(waitpid(G.pid, &st, 0), G.pid);
	G.pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	printf("    good node: %ld signatures verified, %ld bad, %ld drops; last height %ld\n",
	       atomic_load(&G.good_ok), atomic_load(&G.good_bad), atomic_load(&G.good_drops),
	       last_h);
	assert_int_equal(atomic_load(&G.good_bad), 0);
	assert_int_equal(atomic_load(&G.good_drops), 0);
	(void)snprintf(cmd, sizeof(cmd), "'%s' state show -c '%s' --chain %s 2>&1", G.bin, G.conf,
		       CHAIN);
	fp = popen(cmd, "r");
	assert_non_null(fp);
	n = fread(out, 1, sizeof(out) - 1, fp);
	out[n] = '\0';
	assert_int_equal(pclose(fp), 0);
	printf("    state show:\n%s", out);
	/* the good node's thread was joined before SIGTERM: the last signature is its
	 * precommit at last_h */
	{
		const char *hl = strstr(out, "\nheight:"), *sl = strstr(out, "\nstep:");

		assert_non_null(hl);
		assert_non_null(sl);
		assert_int_equal(strtoll(hl + 8, NULL, 10), last_h);
		assert_int_equal(strtol(sl + 6, NULL, 10), GUARD_STEP_PRECOMMIT);
	}
	/* nothing the hostile node sent was signed */
	assert_null(strstr(out, "1000000000"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncated_handshake),
		cmocka_unit_test(test_garbage_handshake),
		cmocka_unit_test(test_bad_auth_signature),
		cmocka_unit_test(test_low_order_ephemeral),
		cmocka_unit_test(test_oversized_length_prefix),
		cmocka_unit_test(test_flipped_tag_bit),
		cmocka_unit_test(test_junk_protobuf),
		cmocka_unit_test(test_unknown_oneof),
		cmocka_unit_test(test_negative_height),
		cmocka_unit_test(test_oversized_vote_extension),
		cmocka_unit_test(test_wrong_chain_id),
		cmocka_unit_test(test_slowloris),
		cmocka_unit_test(test_never_reads),
		cmocka_unit_test(test_unix_privval_modes),
		cmocka_unit_test(test_sim_hostile_modes),
		cmocka_unit_test(test_many_bad_connections),
		cmocka_unit_test(test_stop_and_state),
	};

	return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
