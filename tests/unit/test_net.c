/* SPDX-License-Identifier: Apache-2.0 */
/* net_: address parsing table, dial/listen/accept over loopback TCP and Unix sockets, timeouts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <netinet/in.h>

#include "p11kms/kms_err.h"
#include "p11kms/kms_log.h"
#include "p11kms/net.h"
#include "testutil.h"

#define TMO 5000

struct addr_case {
	const char *in;
	int ok;
	enum net_scheme scheme;
	const char *host;
	const char *port;
	const char *path;
	const char *node_id_hex; /* NULL: none */
	const char *why;	 /* substring of the reason, for bad cases */
};

static const struct addr_case cases[] = {
	{ "tcp://127.0.0.1:26659", 1, NET_TCP, "127.0.0.1", "26659", NULL, NULL, NULL },
	{ "127.0.0.1:26659", 1, NET_TCP, "127.0.0.1", "26659", NULL, NULL, NULL },
	{ "tcp://0.0.0.0:0", 1, NET_TCP, "0.0.0.0", "0", NULL, NULL, NULL },
	{ "tcp://validator-1.example.com:1234", 1, NET_TCP, "validator-1.example.com", "1234", NULL,
	  NULL, NULL },
	{ "tcp://f88883b673fc69d7869cab098de3bafc2ff76eb8@10.0.0.5:26658", 1, NET_TCP, "10.0.0.5",
	  "26658", NULL, "f88883b673fc69d7869cab098de3bafc2ff76eb8", NULL },
	{ "tcp://F88883B673FC69D7869CAB098DE3BAFC2FF76EB8@host:1", 1, NET_TCP, "host", "1", NULL,
	  "f88883b673fc69d7869cab098de3bafc2ff76eb8", NULL },
	{ "tcp://[::1]:26659", 1, NET_TCP, "::1", "26659", NULL, NULL, NULL },
	{ "tcp://[2001:db8::7]:65535", 1, NET_TCP, "2001:db8::7", "65535", NULL, NULL, NULL },
	{ "tcp://00000000000000000000000000000000000000ff@[fe80::1]:80", 1, NET_TCP, "fe80::1",
	  "80", NULL, "00000000000000000000000000000000000000ff", NULL },
	{ "tcp://host:00080", 1, NET_TCP, "host", "80", NULL, NULL, NULL },
	{ "unix:///run/p11kms/priv.sock", 1, NET_UNIX, NULL, NULL, "/run/p11kms/priv.sock", NULL,
	  NULL },
	{ "unix://rel/priv.sock", 1, NET_UNIX, NULL, NULL, "rel/priv.sock", NULL, NULL },
	/* bad */
	{ "", 0, 0, NULL, NULL, NULL, NULL, "empty" },
	{ "tcp://127.0.0.1", 0, 0, NULL, NULL, NULL, NULL, "missing port" },
	{ "tcp://127.0.0.1:", 0, 0, NULL, NULL, NULL, NULL, "missing port" },
	{ "tcp://:26659", 0, 0, NULL, NULL, NULL, NULL, "missing host" },
	{ "tcp://127.0.0.1:70000", 0, 0, NULL, NULL, NULL, NULL, "port" },
	{ "tcp://127.0.0.1:-1", 0, 0, NULL, NULL, NULL, NULL, "port" },
	{ "tcp://127.0.0.1:26659x", 0, 0, NULL, NULL, NULL, NULL, "port" },
	{ "tcp://127.0.0.1:123456", 0, 0, NULL, NULL, NULL, NULL, "port" },
	{ "tcp://127.0.0.1:26659/path", 0, 0, NULL, NULL, NULL, NULL, "port" },
	{ "tcp://xyz@127.0.0.1:26659", 0, 0, NULL, NULL, NULL, NULL, "node id" },
	{ "tcp://g88883b673fc69d7869cab098de3bafc2ff76eb8@127.0.0.1:26659", 0, 0, NULL, NULL, NULL,
	  NULL, "node id" },
	{ "tcp://f88883b673fc69d7869cab098de3bafc2ff76eb80@127.0.0.1:1", 0, 0, NULL, NULL, NULL,
	  NULL, "node id" },
	{ "tcp://@127.0.0.1:1", 0, 0, NULL, NULL, NULL, NULL, "node id" },
	{ "tcp://::1:26659", 0, 0, NULL, NULL, NULL, NULL, "brackets" },
	{ "tcp://[::1:26659", 0, 0, NULL, NULL, NULL, NULL, "']'" },
	{ "tcp://[::1]26659", 0, 0, NULL, NULL, NULL, NULL, "missing port" },
	{ "tcp://[not-v6]:1", 0, 0, NULL, NULL, NULL, NULL, "IPv6" },
	{ "tcp://ho st:1", 0, 0, NULL, NULL, NULL, NULL, "bad character" },
	{ "unix://", 0, 0, NULL, NULL, NULL, NULL, "empty unix" },
	{ "noise://abc@host:1", 0, 0, NULL, NULL, NULL, NULL, "scheme" },
	{ "http://host:1", 0, 0, NULL, NULL, NULL, NULL, "scheme" },
};

static void test_addr_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct addr_case *c = &cases[i];
		struct net_addr a;
		char why[160];
		int r = net_addr_parse(c->in, &a, why, sizeof(why));

		if (!c->ok) {
			if (r != KMS_ERR_FORMAT)
				fail_msg("accepted bad address %s", c->in);
			if (strstr(why, c->why) == NULL)
				fail_msg("reason for %s is \"%s\", expected to mention %s", c->in,
					 why, c->why);
			assert_int_equal(a.scheme, 0); /* cleared on failure */
			continue;
		}
		if (r != KMS_OK)
			fail_msg("rejected %s: %s", c->in, why);
		assert_int_equal(a.scheme, c->scheme);
		if (c->host != NULL)
			assert_string_equal(a.host, c->host);
		if (c->port != NULL)
			assert_string_equal(a.port, c->port);
		if (c->path != NULL)
			assert_string_equal(a.path, c->path);
		assert_int_equal(a.has_node_id, c->node_id_hex != NULL);
		if (c->node_id_hex != NULL) {
			uint8_t id[20];

			tu_hex(c->node_id_hex, id, sizeof(id));
			assert_memory_equal(a.node_id, id, 20);
		}
	}
}

static void test_addr_limits(void **state)
{
	char s[400], why[128];
	struct net_addr a;

	(void)state;
	/* a 107-byte unix path fits sun_path, 108 does not */
	memcpy(s, "unix:///", 8);
	memset(s + 8, 'p', 106);
	s[8 + 106] = '\0';
	assert_int_equal(net_addr_parse(s, &a, why, sizeof(why)), KMS_OK);
	assert_int_equal(strlen(a.path), 107);
	s[8 + 106] = 'p';
	s[8 + 107] = '\0';
	assert_int_equal(net_addr_parse(s, &a, why, sizeof(why)), KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "longer than 107"));
	/* a 256-byte host name */
	memcpy(s, "tcp://", 6);
	memset(s + 6, 'h', 256);
	memcpy(s + 262, ":1", 3);
	assert_int_equal(net_addr_parse(s, &a, why, sizeof(why)), KMS_ERR_FORMAT);
	assert_non_null(strstr(why, "too long"));
	/* NULL reason buffer is allowed */
	assert_int_equal(net_addr_parse("tcp://h", &a, NULL, 0), KMS_ERR_FORMAT);
	assert_int_equal(net_addr_parse(NULL, &a, why, sizeof(why)), KMS_ERR_FORMAT);
}

static void test_addr_format(void **state)
{
	struct net_addr a;
	char out[300];

	(void)state;
	assert_int_equal(net_addr_parse("tcp://f88883b673fc69d7869cab098de3bafc2ff76eb8@1.2.3.4:5",
					&a, NULL, 0),
			 KMS_OK);
	net_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "tcp://1.2.3.4:5");
	assert_int_equal(net_addr_parse("[::1]:7", &a, NULL, 0), KMS_OK);
	net_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "tcp://[::1]:7");
	assert_int_equal(net_addr_parse("unix:///tmp/x.sock", &a, NULL, 0), KMS_OK);
	net_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "unix:///tmp/x.sock");
	net_addr_format(&a, out, 8);
	assert_string_equal(out, "unix://");
}

/* Listens, dials, accepts; checks both directions with full reads and a stream. */
static void exchange(const struct net_addr *la, struct net_addr *da)
{
	int lfd = -1, cfd = -1, sfd = -1;
	uint8_t big[200000], back[200000];
	struct net_stream st;
	size_t got;

	assert_int_equal(net_listen(la, &lfd), KMS_OK);
	if (la->scheme == NET_TCP) {
		uint16_t port = 0;

		assert_int_equal(net_local_port(lfd, &port), KMS_OK);
		assert_true(port != 0);
		snprintf(da->port, sizeof(da->port), "%u", port);
	}
	assert_int_equal(net_dial(da, TMO, &cfd), KMS_OK);
	assert_int_equal(net_accept(lfd, TMO, &sfd), KMS_OK);
	assert_int_equal(net_write_full(cfd, "ping", 4, TMO), KMS_OK);
	assert_int_equal(net_read_full(sfd, back, 4, TMO), KMS_OK);
	assert_memory_equal(back, "ping", 4);
	/* larger than the socket buffers: the writer must wait for the reader, so use a stream in turns */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i ^ (i >> 8));
	net_stream_fd(&sfd, &st);
	{
		size_t off = 0, woff = 0;

		while (off < sizeof(big)) {
			if (woff < sizeof(big)) {
				size_t k = sizeof(big) - woff < 4096 ? sizeof(big) - woff : 4096;

				assert_int_equal(st.write(st.ctx, big + woff, k, net_deadline(TMO)), KMS_OK);
				woff += k;
			}
			assert_int_equal(
				net_read_some(cfd, back + off, sizeof(back) - off, &got, TMO),
				KMS_OK);
			assert_true(got >= 1);
			off += got;
		}
	}
	assert_memory_equal(big, back, sizeof(big));
	{
		/* read-ahead: one recv holds two writes; reads of 1 byte, then the rest */
		struct net_fd_reader rb;
		struct net_stream ra;
		uint8_t one[1];

		net_stream_fd_readahead(&rb, &sfd, &ra);
		assert_int_equal(net_write_full(cfd, "\x05hello\x03" "abc", 10, TMO), KMS_OK);
		for (int waited = 0, avail = 0; avail < 10; waited++) { /* all 10 bytes arrived */
			assert_true(waited < TMO);
			assert_int_equal(ioctl(sfd, FIONREAD, &avail), 0);
			if (avail < 10)
				nanosleep(&(struct timespec){ 0, 1000000L }, NULL);
		}
		assert_int_equal(ra.read(ra.ctx, one, 1, &got, net_deadline(TMO)), KMS_OK);
		assert_int_equal(got, 1);
		assert_int_equal(one[0], 5);
		assert_int_equal(rb.len, 10); /* both messages arrived in the first recv */
		assert_int_equal(ra.read(ra.ctx, back, 5, &got, net_deadline(TMO)), KMS_OK);
		assert_int_equal(got, 5);
		assert_memory_equal(back, "hello", 5);
		assert_int_equal(ra.read(ra.ctx, back, sizeof(back), &got, net_deadline(TMO)),
				 KMS_OK);
		assert_int_equal(got, 4); /* what is buffered, never more */
		assert_memory_equal(back, "\x03" "abc", 4);
		/* empty again: a big read goes straight to the socket; writes pass through */
		assert_int_equal(ra.write(ra.ctx, (const uint8_t *)"pong", 4, net_deadline(TMO)),
				 KMS_OK);
		assert_int_equal(net_read_full(cfd, back, 4, TMO), KMS_OK);
		assert_memory_equal(back, "pong", 4);
		assert_int_equal(ra.read(ra.ctx, back, 1, &got, net_deadline(50)), KMS_ERR_TIMEOUT);
	}
	/* orderly close is KMS_ERR_CONN_CLOSED */
	net_close(&sfd);
	assert_int_equal(sfd, -1);
	assert_int_equal(net_read_some(cfd, back, 10, &got, TMO), KMS_ERR_CONN_CLOSED);
	net_close(&cfd);
	net_close(&lfd);
	net_close(&lfd); /* idempotent */
}

static void test_tcp_loopback(void **state)
{
	struct net_addr la, da;

	(void)state;
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:0", &la, NULL, 0), KMS_OK);
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:1", &da, NULL, 0), KMS_OK);
	exchange(&la, &da);
}

static void test_tcp6_loopback(void **state)
{
	struct net_addr la, da;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 sa;

	(void)state;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = in6addr_loopback;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		skip(); /* no IPv6 loopback in this environment */
	}
	close(fd);
	assert_int_equal(net_addr_parse("tcp://[::1]:0", &la, NULL, 0), KMS_OK);
	assert_int_equal(net_addr_parse("tcp://[::1]:1", &da, NULL, 0), KMS_OK);
	exchange(&la, &da);
}

static void test_unix_socket(void **state)
{
	char *dir = tu_mkdtemp(), *path = tu_path(dir, "s.sock"), spec[256];
	struct net_addr a;
	struct stat st;
	int lfd = -1;

	(void)state;
	snprintf(spec, sizeof(spec), "unix://%s", path);
	assert_int_equal(net_addr_parse(spec, &a, NULL, 0), KMS_OK);
	exchange(&a, &a);
	/* the stale socket file left behind is replaced on the next listen */
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	exchange(&a, &a);
	/* a regular file is never removed */
	assert_int_equal(unlink(path), 0);
	tu_write_file(path, "keep", 4, 0600);
	assert_int_equal(net_listen(&a, &lfd), KMS_ERR_EXISTS);
	assert_int_equal(lfd, -1);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	/* nothing listening */
	assert_int_equal(unlink(path), 0);
	{
		int fd = -1;

		assert_int_equal(net_dial(&a, TMO, &fd), KMS_ERR_CONN_CLOSED);
		assert_int_equal(fd, -1);
	}
	tu_rmrf(dir);
	free(path);
	free(dir);
}

static void test_dial_refused(void **state)
{
	struct net_addr a;
	int lfd = -1, fd = -1;
	uint16_t port = 0;

	(void)state;
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:0", &a, NULL, 0), KMS_OK);
	assert_int_equal(net_listen(&a, &lfd), KMS_OK);
	assert_int_equal(net_local_port(lfd, &port), KMS_OK);
	net_close(&lfd);
	snprintf(a.port, sizeof(a.port), "%u", port);
	assert_int_equal(net_dial(&a, TMO, &fd), KMS_ERR_CONN_CLOSED);
	assert_int_equal(fd, -1);
	/* port 0 cannot be dialled */
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:0", &a, NULL, 0), KMS_OK);
	assert_int_equal(net_dial(&a, TMO, &fd), KMS_ERR_FORMAT);
}

static void test_timeouts(void **state)
{
	struct net_addr a;
	int lfd = -1, sp[2];
	uint8_t b[64];
	size_t got = 5;
	int fd = -1;

	(void)state;
	/* accept with nobody dialling */
	assert_int_equal(net_addr_parse("tcp://127.0.0.1:0", &a, NULL, 0), KMS_OK);
	assert_int_equal(net_listen(&a, &lfd), KMS_OK);
	assert_int_equal(net_accept(lfd, 100, &fd), KMS_ERR_TIMEOUT);
	assert_int_equal(fd, -1);
	net_close(&lfd);
	/* a silent peer */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(net_read_some(sp[0], b, sizeof(b), &got, 100), KMS_ERR_TIMEOUT);
	assert_int_equal(got, 0);
	assert_int_equal(net_read_full(sp[0], b, 1, 0), KMS_ERR_TIMEOUT);
	/* a partial message, then silence */
	assert_int_equal(net_write_full(sp[1], "abc", 3, TMO), KMS_OK);
	assert_int_equal(net_read_full(sp[0], b, 10, 100), KMS_ERR_TIMEOUT);
	/* a peer that does not read: the writer stops when the buffer is full */
	{
		static uint8_t chunk[65536];
		int r = KMS_OK;

		for (int i = 0; i < 1000 && r == KMS_OK; i++)
			r = net_write_full(sp[0], chunk, sizeof(chunk), 100);
		assert_int_equal(r, KMS_ERR_TIMEOUT);
	}
	/* writing to a closed peer is CONN_CLOSED (no SIGPIPE) */
	net_close(&sp[1]);
	assert_int_equal(net_write_full(sp[0], "x", 1, TMO), KMS_ERR_CONN_CLOSED);
	net_close(&sp[0]);
}

static void test_now_monotonic(void **state)
{
	int64_t a = net_now_ms(), b;

	(void)state;
	b = net_now_ms();
	assert_true(a > 0);
	assert_true(b >= a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_table),    cmocka_unit_test(test_addr_limits),
		cmocka_unit_test(test_addr_format),   cmocka_unit_test(test_tcp_loopback),
		cmocka_unit_test(test_tcp6_loopback), cmocka_unit_test(test_unix_socket),
		cmocka_unit_test(test_dial_refused),  cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_now_monotonic),
	};
	kms_log_set_quiet(1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
